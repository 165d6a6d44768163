/* vCPUs: creation, CPUID, boot registers, and the thread that only runs
 * KVM_RUN and handles register-level exits (port I/O, MMIO). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/boot_layout.h"
#include "vmm/vm_internal.h"

#define VCPU_KICK_SIGNAL SIGUSR1

static void kick_handler(int sig)
{
    (void)sig; /* only interrupts KVM_RUN */
}

/* CPUID as KVM supports it, with the hypervisor bit set and each vCPU's
 * APIC id filled in. */
static int setup_cpuid(struct vm *vm, struct vcpu *v, struct err **err)
{
    struct kvm_cpuid2 *c = vm->cpuid;
    size_t sz = sizeof(*c) + c->nent * sizeof(c->entries[0]);
    struct kvm_cpuid2 *mine = xmalloc(sz);
    memcpy(mine, c, sz);
    for (uint32_t i = 0; i < mine->nent; i++) {
        struct kvm_cpuid_entry2 *e = &mine->entries[i];
        switch (e->function) {
        case 1:
            e->ecx |= 1u << 31; /* running under a hypervisor */
            e->ebx = (e->ebx & 0x00ffffff) | ((uint32_t)v->index << 24);
            break;
        case 0xb:
        case 0x1f:
            e->edx = (uint32_t)v->index;
            break;
        }
    }
    int r = ioctl(v->fd, KVM_SET_CPUID2, mine);
    int e = errno;
    free(mine);
    if (r < 0)
        return err_make(err, e, "KVM_SET_CPUID2 on vcpu %d", v->index);
    return 0;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
    *s = (struct kvm_segment){.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
                              .present = 1, .dpl = 0, .db = code64 ? 0 : 1, .s = 1,
                              .l = code64, .g = 1};
}

/* Identity page tables (4 GiB, 2 MiB pages) and a GDT for the 64-bit boot
 * protocol: the VMM sets up long mode, the kernel starts at startup_64. */
static void build_long_mode_tables(struct vm *vm)
{
    uint64_t *pml4 = guest_mem_ptr(&vm->mem, PML4_ADDR, 4096);
    uint64_t *pdpt = guest_mem_ptr(&vm->mem, PDPT_ADDR, 4096);
    uint64_t *pd = guest_mem_ptr(&vm->mem, PD_ADDR, 4 * 4096);
    memset(pml4, 0, 4096);
    memset(pdpt, 0, 4096);
    pml4[0] = PDPT_ADDR | 0x3;
    for (int i = 0; i < 4; i++)
        pdpt[i] = (PD_ADDR + (uint64_t)i * 4096) | 0x3;
    for (uint64_t i = 0; i < 4 * 512; i++)
        pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB */
    uint64_t *gdt = guest_mem_ptr(&vm->mem, BOOT_GDT_ADDR, 4 * 8);
    gdt[0] = 0;
    gdt[1] = 0;
    gdt[2] = 0x00af9b000000ffffull; /* 0x10: code, 64-bit */
    gdt[3] = 0x00cf93000000ffffull; /* 0x18: data */
}

int vm_setup_boot_regs(struct vm *vm, struct vcpu *v, struct err **err)
{
    struct kvm_sregs sregs;
    if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
        return err_make(err, errno, "KVM_GET_SREGS");
    struct kvm_regs regs = {.rflags = 0x2, .rip = vm->entry};
    if (vm->entry_64) {
        build_long_mode_tables(vm);
        seg(&sregs.cs, 0x10, 0xb, true);
        seg(&sregs.ds, 0x18, 0x3, false);
        sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
        sregs.gdt.base = BOOT_GDT_ADDR;
        sregs.gdt.limit = 4 * 8 - 1;
        sregs.cr3 = PML4_ADDR;
        sregs.cr4 = 0x20;                  /* PAE */
        sregs.cr0 = 0x80000011;            /* PG | ET | PE */
        sregs.efer = 0x500;                /* LME | LMA */
        regs.rsi = vm->boot_arg;
    } else {
        /* PVH: 32-bit protected mode, paging off, flat segments */
        seg(&sregs.cs, 0x8, 0xb, false);
        seg(&sregs.ds, 0x10, 0x3, false);
        sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
        sregs.cr0 = 0x11; /* ET | PE */
        sregs.cr4 = 0;
        sregs.efer = 0;
        regs.rbx = vm->boot_arg;
    }
    sregs.tr = (struct kvm_segment){.limit = 0x67, .type = 0xb, .present = 1};
    if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
        return err_make(err, errno, "KVM_SET_SREGS");
    if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
        return err_make(err, errno, "KVM_SET_REGS");
    return 0;
}

static void handle_io(struct vm *vm, struct vcpu *v)
{
    struct kvm_run *r = v->run;
    uint8_t *base = (uint8_t *)r + r->io.data_offset;
    /* data_offset and count come from KVM, not the guest, but stay careful */
    if (r->io.data_offset + (uint64_t)r->io.count * r->io.size > vm->run_size)
        return;
    for (uint32_t i = 0; i < r->io.count; i++)
        vm_pio(vm, v, r->io.port, r->io.direction == KVM_EXIT_IO_OUT,
               base + (size_t)i * r->io.size, r->io.size);
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct vm *vm = v->vm;
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &unblock, NULL);
    while (!atomic_load(&vm->exiting)) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            /* EFAULT: guest memory whose host pages cannot be had, e.g. a
             * part of a DAX window with nothing mapped. */
            vm_request_exit(vm, VM_EXIT_ERROR, 0, "vcpu%d: KVM_RUN: %s%s", v->index,
                            strerror(errno),
                            errno == EFAULT ? " (the guest touched guest-physical memory with "
                                              "nothing behind it, e.g. an unmapped part of a "
                                              "DAX window)"
                                            : "");
            break;
        }
        struct kvm_run *r = v->run;
        switch (r->exit_reason) {
        case KVM_EXIT_IO:
            handle_io(vm, v);
            break;
        case KVM_EXIT_MMIO:
            vm_mmio(vm, v, r->mmio.phys_addr, r->mmio.data, r->mmio.len, r->mmio.is_write);
            break;
        case KVM_EXIT_HLT:
            vm_request_exit(vm, VM_EXIT_POWEROFF, 0, "vcpu%d halted", v->index);
            break;
        case KVM_EXIT_SHUTDOWN: {
            struct kvm_regs rg = {0};
            struct kvm_sregs sr = {0};
            ioctl(v->fd, KVM_GET_REGS, &rg);
            ioctl(v->fd, KVM_GET_SREGS, &sr);
            vm_request_exit(vm, VM_EXIT_TRIPLE_FAULT, 0,
                            "vcpu%d: triple fault at rip %#llx rflags %#llx (cs %#x, cr0 %#llx, cr4 %#llx, "
                            "efer %#llx)",
                            v->index, (unsigned long long)rg.rip, (unsigned long long)rg.rflags, sr.cs.selector,
                            (unsigned long long)sr.cr0, (unsigned long long)sr.cr4,
                            (unsigned long long)sr.efer);
            break;
        }
        case KVM_EXIT_SYSTEM_EVENT:
            if (r->system_event.type == KVM_SYSTEM_EVENT_RESET)
                vm_request_exit(vm, VM_EXIT_REBOOT, 0, "vcpu%d: reset", v->index);
            else
                vm_request_exit(vm, VM_EXIT_POWEROFF, 0, "vcpu%d: power off", v->index);
            break;
        case KVM_EXIT_FAIL_ENTRY:
            vm_request_exit(vm, VM_EXIT_ERROR, 0, "vcpu%d: VM entry failed (reason %#llx)",
                            v->index,
                            (unsigned long long)r->fail_entry.hardware_entry_failure_reason);
            break;
        case KVM_EXIT_INTERNAL_ERROR:
            vm_request_exit(vm, VM_EXIT_ERROR, 0, "vcpu%d: KVM internal error %u", v->index,
                            r->internal.suberror);
            break;
        case KVM_EXIT_INTR:
            break;
        default:
            vm_request_exit(vm, VM_EXIT_ERROR, 0, "vcpu%d: unexpected exit %u", v->index,
                            r->exit_reason);
        }
    }
    return NULL;
}

int vm_start_vcpus(struct vm *vm, struct err **err)
{
    struct sigaction sa = {.sa_handler = kick_handler};
    sigemptyset(&sa.sa_mask);
    sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
    /* Only vCPU threads take the kick; everyone else blocks it. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    for (unsigned i = 0; i < vm->cfg.cpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        v->vm = vm;
        v->index = (int)i;
        v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
        if (v->fd < 0)
            return err_make(err, errno, "KVM_CREATE_VCPU %u", i);
        v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
        if (v->run == MAP_FAILED) {
            v->run = NULL;
            return err_make(err, errno, "map kvm_run of vcpu %u", i);
        }
        if (setup_cpuid(vm, v, err) < 0)
            return -1;
        /* The boot CPU starts at the kernel entry; the others wait for the
         * guest's INIT/SIPI in the in-kernel local APIC. */
        if (i == 0 && vm_setup_boot_regs(vm, v, err) < 0)
            return -1;
    }
    for (unsigned i = 0; i < vm->cfg.cpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        int r = pthread_create(&v->thread, NULL, vcpu_thread, v);
        if (r != 0)
            return err_make(err, r, "start vcpu thread %u", i);
        v->started = true;
    }
    return 0;
}

void vm_stop_vcpus(struct vm *vm)
{
    atomic_store(&vm->exiting, 1);
    for (unsigned i = 0; i < vm->cfg.cpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        if (!v->started)
            continue;
        if (v->run)
            v->run->immediate_exit = 1;
        pthread_kill(v->thread, VCPU_KICK_SIGNAL);
    }
    for (unsigned i = 0; i < vm->cfg.cpus; i++) {
        struct vcpu *v = &vm->vcpus[i];
        if (v->started) {
            pthread_join(v->thread, NULL);
            v->started = false;
        }
    }
}
