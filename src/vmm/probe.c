/* Host probe: run `mov ecx, N; 1: dec ecx; jnz 1b; out` at guest CPL0 in a
 * throwaway VM for two values of N and time the difference. Hardware runs
 * hundreds of millions of loop instructions per second; a software
 * emulator of guest kernel mode runs a few million. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "vmm/probe.h"

#define PROBE_MEM 0x10000
#define PROBE_CODE 0x1000
#define PROBE_PORT 0x0cc2
/* Natively the loop runs at >100 M instructions/s even on slow hosts;
 * emulated CPL0 runs at about 2 M/s. */
#define PROBE_NATIVE_MIPS 50.0

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void flat32(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
    *s = (struct kvm_segment){.limit = 0xffffffff, .selector = sel, .type = type,
                              .present = 1, .db = 1, .s = 1, .g = 1};
}

/* Run the loop with `iters` iterations; the seconds KVM_RUN took. */
static int run_loop(int vcpu_fd, struct kvm_run *run, uint8_t *mem, uint32_t iters,
                    double *secs, struct err **err)
{
    static const uint8_t tail[] = {
        0x49,                   /* 1: dec ecx */
        0x75, 0xfd,             /* jnz 1b */
        0x66, 0xba, PROBE_PORT & 0xff, PROBE_PORT >> 8, /* mov dx, port */
        0xee,                   /* out dx, al */
        0xf4,                   /* hlt */
    };
    uint8_t *code = mem + PROBE_CODE;
    code[0] = 0xb9; /* mov ecx, imm32 */
    memcpy(code + 1, &iters, 4);
    memcpy(code + 5, tail, sizeof(tail));
    struct kvm_sregs sregs;
    if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
        return err_make(err, errno, "KVM_GET_SREGS");
    flat32(&sregs.cs, 0x8, 0xb);
    flat32(&sregs.ds, 0x10, 0x3);
    sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
    sregs.cr0 = 0x11; /* protected mode, CPL0, no paging */
    if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
        return err_make(err, errno, "KVM_SET_SREGS");
    struct kvm_regs regs = {.rflags = 0x2, .rip = PROBE_CODE};
    if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
        return err_make(err, errno, "KVM_SET_REGS");
    double t0 = now_s();
    for (;;) {
        if (ioctl(vcpu_fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR)
                continue;
            return err_make(err, errno, "KVM_RUN");
        }
        if (run->exit_reason == KVM_EXIT_IO && run->io.port == PROBE_PORT)
            break;
        if (run->exit_reason != KVM_EXIT_INTR)
            return err_make(err, 0, "probe guest: unexpected exit %u", run->exit_reason);
    }
    *secs = now_s() - t0;
    return 0;
}

int vm_probe_host(struct vm_probe *out, struct err **err)
{
    cleanup_close int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        return err_make(err, errno, "open /dev/kvm");
    cleanup_close int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        return err_make(err, errno, "KVM_CREATE_VM");
    uint8_t *mem = mmap(NULL, PROBE_MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return err_make(err, errno, "probe memory");
    struct kvm_userspace_memory_region r = {.memory_size = PROBE_MEM,
                                            .userspace_addr = (uint64_t)(uintptr_t)mem};
    int ret = -1;
    int vcpu = -1;
    struct kvm_run *run = MAP_FAILED;
    int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
        err_make(err, errno, "KVM_SET_USER_MEMORY_REGION");
        goto out;
    }
    vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0 || sz <= 0) {
        err_make(err, errno, "KVM_CREATE_VCPU");
        goto out;
    }
    run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) {
        err_make(err, errno, "map kvm_run");
        goto out;
    }
    /* Short first (entry costs), then long enough to dominate them; the
     * best of three of each, as the host is noisy. */
    const uint32_t small = 1000, big = 201000;
    double ts = 1e9, tb = 1e9;
    for (int i = 0; i < 3; i++) {
        double a, b;
        if (run_loop(vcpu, run, mem, small, &a, err) < 0 ||
            run_loop(vcpu, run, mem, big, &b, err) < 0)
            goto out;
        ts = a < ts ? a : ts;
        tb = b < tb ? b : tb;
    }
    double dt = tb - ts;
    double instrs = 2.0 * (big - small);
    out->cpl0_mips = dt > 1e-7 ? instrs / dt / 1e6 : 1e4;
    out->cpl0_native = out->cpl0_mips >= PROBE_NATIVE_MIPS;
    ret = 0;
out:
    if (run != MAP_FAILED)
        munmap(run, (size_t)sz);
    if (vcpu >= 0)
        close(vcpu);
    munmap(mem, PROBE_MEM);
    return ret;
}
