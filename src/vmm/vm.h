/* A cocoon microVM: KVM VM + guest memory + vCPU threads + legacy devices
 * + an event thread, booted straight into a kernel (PVH or the Linux 64-bit
 * boot protocol). The library API the VM backend of the runtime calls. */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/guest_mem.h"
#include "virtio/devices.h"

struct err;

#define VM_MAX_CPUS 32

/* How a VM ended. `cocoon vm run` turns these into exit statuses. */
enum vm_exit_kind {
    VM_EXIT_NONE = 0,
    VM_EXIT_POWEROFF,     /* the guest powered off or wrote an exit status */
    VM_EXIT_REBOOT,       /* i8042 reset or KVM system event reset */
    VM_EXIT_TRIPLE_FAULT, /* KVM_EXIT_SHUTDOWN */
    VM_EXIT_GUEST_FAIL,   /* a test guest reported a failed check */
    VM_EXIT_ERROR,        /* the VMM could not go on (internal error, bad exit) */
    VM_EXIT_TIMEOUT,      /* the VMM stopped the guest after cfg.timeout_ms */
    VM_EXIT_SIGNAL,       /* the VMM was asked to stop by a signal (status: its number) */
};

struct vm_exit {
    enum vm_exit_kind kind;
    int status;          /* POWEROFF: the guest's exit status */
    char msg[256];       /* what happened, for the log */
};

/* Up to this many virtio-mmio devices (IRQs 5..15). */
#define VM_MAX_DEVICES 11

enum vm_device_kind {
    VM_DEV_RNG, VM_DEV_BLK, VM_DEV_CONSOLE, VM_DEV_PMEM, VM_DEV_NET, VM_DEV_VSOCK,
    VM_DEV_FS,
};

/* A virtio device to add; the kind says which options apply. */
struct vm_device {
    enum vm_device_kind kind;
    struct virtio_blk_opts blk;
    struct virtio_console_opts console;
    struct virtio_pmem_opts pmem;       /* gpa and slot are chosen by the VMM */
    struct virtio_net_opts net;
    struct virtio_vsock_opts vsock;
    struct virtio_fs_opts fs;
};

struct vm_config {
    const char *kernel;      /* ELF vmlinux with a PVH note, or a bzImage */
    const char *initrd;      /* or NULL */
    const char *cmdline;     /* or NULL */
    unsigned cpus;           /* 1..VM_MAX_CPUS */
    uint64_t memory_mib;
    int console_fd;          /* serial output goes here; -1: discarded */
    int console_in_fd;       /* serial input from here; -1: none */
    bool hugepages;
    bool mergeable;
    bool map_kernel;         /* map the kernel file MAP_PRIVATE where its layout allows */
    bool pit;                /* an in-kernel 8254 PIT (Linux's default timer check wants one) */
    unsigned timeout_ms;     /* stop the guest after this long; 0: never */
    bool handle_signals;     /* SIGTERM/SIGINT/SIGHUP stop the VM in order (the CLI) */
    struct vm_device devices[VM_MAX_DEVICES]; /* in MMIO slot order */
    unsigned n_devices;
};

/* Exit statuses of `cocoon vm run` (documented in docs/vmm.md). */
#define VM_STATUS_REBOOT 64
#define VM_STATUS_TRIPLE_FAULT 65
#define VM_STATUS_GUEST_FAIL 66
#define VM_STATUS_TIMEOUT 67
#define VM_STATUS_ERROR 70

struct vm;

/* Create a VM from cfg and load the kernel; nothing runs yet. With a
 * virtio-fs device the calling process drops CAP_MKNOD for good (a guest
 * never creates host device nodes in a share): call it in the VMM's own
 * process, before it starts threads. */
int vm_create(const struct vm_config *cfg, struct vm **out, struct err **err);

/* Run until the guest ends; fills *exit. */
int vm_run(struct vm *vm, struct vm_exit *exit, struct err **err);

/* Free everything of a VM (after vm_run returned, or instead of it). */
void vm_destroy(struct vm *vm);

/* The exit status `cocoon vm run` reports for an exit. */
int vm_exit_status(const struct vm_exit *e);
