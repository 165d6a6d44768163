/* VM lifecycle: create (KVM VM, irqchip, PIT, memory, kernel), run (vCPU
 * threads + this thread as the event loop), destroy. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/boot_layout.h"
#include "vmm/vm_internal.h"

void vm_request_exit(struct vm *vm, enum vm_exit_kind kind, int status, const char *fmt, ...)
{
    pthread_mutex_lock(&vm->exit_lock);
    if (vm->exit.kind == VM_EXIT_NONE) {
        vm->exit.kind = kind;
        vm->exit.status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(vm->exit.msg, sizeof(vm->exit.msg), fmt, ap);
        va_end(ap);
        atomic_store(&vm->exiting, 1);
        uint64_t one = 1;
        if (write(vm->exit_efd, &one, sizeof(one)) < 0) {
            /* the counter cannot overflow with one write per VM */
        }
    }
    pthread_mutex_unlock(&vm->exit_lock);
}

int vm_exit_status(const struct vm_exit *e)
{
    switch (e->kind) {
    case VM_EXIT_POWEROFF: return e->status;
    case VM_EXIT_REBOOT: return VM_STATUS_REBOOT;
    case VM_EXIT_TRIPLE_FAULT: return VM_STATUS_TRIPLE_FAULT;
    case VM_EXIT_GUEST_FAIL: return VM_STATUS_GUEST_FAIL;
    case VM_EXIT_TIMEOUT: return VM_STATUS_TIMEOUT;
    case VM_EXIT_SIGNAL: return 128 + e->status;
    default: return VM_STATUS_ERROR;
    }
}

static int get_cpuid(struct vm *vm, struct err **err)
{
    for (uint32_t n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = xcalloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
        c->nent = n;
        if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            vm->cpuid = c;
            return 0;
        }
        int e = errno;
        free(c);
        if (e != E2BIG)
            return err_make(err, e, "KVM_GET_SUPPORTED_CPUID");
    }
    return err_make(err, E2BIG, "KVM_GET_SUPPORTED_CPUID");
}

static int setup_kvm(struct vm *vm, struct err **err)
{
    vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0)
        return err_make(err, errno, "open /dev/kvm");
    int v = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (v != KVM_API_VERSION)
        return err_make(err, 0, "/dev/kvm speaks API %d, cocoon needs %d", v, KVM_API_VERSION);
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0)
        return err_make(err, errno, "KVM_CREATE_VM");
    int sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (sz < (int)sizeof(struct kvm_run))
        return err_make(err, errno, "KVM_GET_VCPU_MMAP_SIZE");
    vm->run_size = (size_t)sz;
    /* Intel VMX needs these three pages below 4 GiB, out of the guest's way. */
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000) < 0)
        return err_make(err, errno, "KVM_SET_TSS_ADDR");
    uint64_t idmap = 0xfffbc000;
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
        return err_make(err, errno, "KVM_SET_IDENTITY_MAP_ADDR");
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return err_make(err, errno, "KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        return err_make(err, errno, "KVM_CREATE_PIT2");
    return get_cpuid(vm, err);
}

int vm_create(const struct vm_config *cfg, struct vm **out, struct err **err)
{
    if (cfg->kernel == NULL)
        return err_input(err, "a kernel is required (--kernel)");
    if (cfg->cpus < 1 || cfg->cpus > VM_MAX_CPUS)
        return err_input(err, "--cpus must be 1..%d", VM_MAX_CPUS);
    /* Guest RAM stays below 3 GiB: the space above is for MMIO devices. */
    if (cfg->memory_mib < MIN_MEMORY_MIB || cfg->memory_mib > 3072 || cfg->memory_mib % 2)
        return err_input(err, "--memory must be an even number of MiB in %d..3072",
                         MIN_MEMORY_MIB);
    struct vm *vm = xcalloc(1, sizeof(*vm));
    vm->cfg = *cfg;
    vm->kvm_fd = vm->vm_fd = vm->exit_efd = -1;
    vm->mem.memfd = -1;
    pthread_mutex_init(&vm->exit_lock, NULL);
    struct guest_mem_opts mo = {.size = cfg->memory_mib << 20, .hugepages = cfg->hugepages,
                                .mergeable = cfg->mergeable};
    if (setup_kvm(vm, err) < 0 || guest_mem_create(&mo, &vm->mem, err) < 0)
        goto fail;
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = vm->mem.size,
        .userspace_addr = (uint64_t)(uintptr_t)vm->mem.host,
    };
    if (vm_load_kernel(vm, err) < 0)
        goto fail;
    /* Registered after the kernel is mapped into it, so KVM sees those pages. */
    if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
        err_make(err, errno, "KVM_SET_USER_MEMORY_REGION");
        goto fail;
    }
    vm->exit_efd = eventfd(0, EFD_CLOEXEC);
    if (vm->exit_efd < 0) {
        err_make(err, errno, "eventfd");
        goto fail;
    }
    serial_init(&vm->serial, cfg->console_fd, vm->vm_fd);
    *out = vm;
    return 0;
fail:
    vm_destroy(vm);
    return -1;
}

/* Stop signals and the timeout become fds in the event loop. Returns the
 * signalfd (or -1) and fills *tfd with the timerfd (or -1). */
static int event_sources(struct vm *vm, int *tfd)
{
    int sfd = -1;
    *tfd = -1;
    if (vm->cfg.handle_signals) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    }
    if (vm->cfg.timeout_ms) {
        *tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        struct itimerspec its = {.it_value = {.tv_sec = vm->cfg.timeout_ms / 1000,
                                              .tv_nsec = (vm->cfg.timeout_ms % 1000) * 1000000L}};
        if (*tfd >= 0)
            timerfd_settime(*tfd, 0, &its, NULL);
    }
    return sfd;
}

static void epoll_add(int ep, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (fd >= 0)
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* The event thread: console input, stop signals, the timeout and the exit
 * request (device queues join this loop through ioeventfds). */
static void event_loop(struct vm *vm, int sfd, int tfd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_add(ep, vm->exit_efd);
    epoll_add(ep, sfd);
    epoll_add(ep, tfd);
    int in = vm->cfg.console_in_fd;
    if (in >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = in};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, in, &ev) < 0)
            in = -1; /* e.g. a regular file: no input */
    }
    while (!atomic_load(&vm->exiting)) {
        struct epoll_event evs[8];
        int n = epoll_wait(ep, evs, 8, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == in) {
                uint8_t buf[SERIAL_FIFO];
                ssize_t r = read(in, buf, sizeof(buf));
                if (r <= 0) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, in, NULL);
                    in = -1;
                } else {
                    serial_input(&vm->serial, buf, (size_t)r);
                }
            } else if (fd == sfd) {
                struct signalfd_siginfo si;
                if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                    vm_request_exit(vm, VM_EXIT_SIGNAL, (int)si.ssi_signo,
                                    "stopped by signal %u", si.ssi_signo);
            } else if (fd == tfd) {
                vm_request_exit(vm, VM_EXIT_TIMEOUT, 0, "stopped after the %u ms timeout",
                                vm->cfg.timeout_ms);
            }
        }
    }
    close(ep);
}

int vm_run(struct vm *vm, struct vm_exit *exit, struct err **err)
{
    sigset_t stop, old;
    sigemptyset(&stop);
    if (vm->cfg.handle_signals) {
        /* blocked before the vCPU threads start, so they inherit it */
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGHUP);
    }
    pthread_sigmask(SIG_BLOCK, &stop, &old);
    int tfd, sfd = event_sources(vm, &tfd);
    int r = vm_start_vcpus(vm, err);
    if (r == 0)
        event_loop(vm, sfd, tfd);
    vm_stop_vcpus(vm);
    if (sfd >= 0)
        close(sfd);
    if (tfd >= 0)
        close(tfd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0)
        return -1;
    pthread_mutex_lock(&vm->exit_lock);
    *exit = vm->exit;
    pthread_mutex_unlock(&vm->exit_lock);
    return 0;
}

void vm_destroy(struct vm *vm)
{
    if (vm == NULL)
        return;
    vm_stop_vcpus(vm);
    for (unsigned i = 0; i < VM_MAX_CPUS; i++) {
        if (vm->vcpus[i].run)
            munmap(vm->vcpus[i].run, vm->run_size);
        if (vm->vcpus[i].fd > 0)
            close(vm->vcpus[i].fd);
    }
    guest_mem_destroy(&vm->mem);
    if (vm->exit_efd >= 0)
        close(vm->exit_efd);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    free(vm->cpuid);
    free(vm);
}
