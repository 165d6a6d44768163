/* Internals of the VMM shared by its files (not an API). */
#pragma once
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>

#include "vmm/evloop.h"
#include "vmm/serial.h"
#include "vmm/vm.h"

struct vcpu {
    struct vm *vm;
    int index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool started;
};

struct vm {
    struct vm_config cfg;
    int kvm_fd, vm_fd;
    size_t run_size;
    struct guest_mem mem;
    struct vcpu vcpus[VM_MAX_CPUS];
    struct serial serial;
    int exit_efd;                 /* written when the VM should end */
    atomic_int exiting;
    pthread_mutex_t exit_lock;
    struct vm_exit exit;          /* the first exit reason wins */
    struct kvm_cpuid2 *cpuid;
    struct evloop *loop;          /* the event thread's loop */
    struct virtio_dev *devs[VM_MAX_DEVICES];
    unsigned n_devs;
    uint64_t pmem_next;           /* guest-physical address for the next pmem region */
    char *cmdline;                /* cfg.cmdline plus the virtio_mmio.device= entries */
    /* boot state computed by the loader */
    bool entry_64;                /* Linux boot protocol: enter in long mode */
    uint64_t entry;               /* guest-physical entry point */
    uint64_t boot_arg;            /* PVH: start_info in %ebx; Linux: boot_params in %rsi */
};

/* Record how the VM ends (first caller wins) and wake the event loop. */
void vm_request_exit(struct vm *vm, enum vm_exit_kind kind, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Port I/O from a vCPU: serial, i8042, debug port; unknown ports read 0xff. */
void vm_pio(struct vm *vm, struct vcpu *vcpu, uint16_t port, bool out, uint8_t *data,
            uint32_t size);

/* The guest-physical page of the debug channel (ucalls over MMIO). */
#define DEBUG_MMIO_ADDR 0xf0000000u
#define DEBUG_MMIO_SIZE 0x1000u

/* A write to the debug channel (port 0x0cc0 or the debug MMIO page):
 * 4 bytes at offset 0 = a ucall's address, 1 byte = a boot marker,
 * offset 4 = the test guest's main returned. */
void vm_debug_write(struct vm *vm, struct vcpu *vcpu, uint64_t offset, uint8_t *data,
                    uint32_t size);

/* Create the configured virtio devices, wire them into the VM and append
 * their virtio_mmio.device= entries to the command line. */
int vm_devices_create(struct vm *vm, struct err **err);

/* A vCPU's MMIO access outside RAM: a device, the debug page, or nothing. */
void vm_mmio(struct vm *vm, struct vcpu *vcpu, uint64_t addr, uint8_t *data, uint32_t len,
             bool is_write);

/* Free the devices (after the vCPUs stopped). */
void vm_devices_destroy(struct vm *vm);

/* Load the kernel (and initrd, cmdline) into guest memory; sets entry. */
int vm_load_kernel(struct vm *vm, struct err **err);

/* Set a vCPU's registers for the boot path chosen by the loader. */
int vm_setup_boot_regs(struct vm *vm, struct vcpu *vcpu, struct err **err);

/* Create, configure and start the vCPU threads. */
int vm_start_vcpus(struct vm *vm, struct err **err);

/* Stop every vCPU thread (kick out of KVM_RUN) and join them. */
void vm_stop_vcpus(struct vm *vm);
