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
#include "vmm/mptable.h"
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
    for (uint32_t n = 128; n <= 4096; n *= 2) {
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
    /* The in-kernel PIT costs a kernel thread (~15 ms to start and stop
     * here); guests with kvm-clock and the LAPIC timer can do without. */
    if (vm->cfg.pit && ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
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
    bool shares = false;
    for (unsigned i = 0; i < cfg->n_devices && i < VM_MAX_DEVICES; i++)
        shares |= cfg->devices[i].kind == VM_DEV_FS;
    if (shares && virtio_fs_drop_mknod(err) < 0)
        return -1;
    struct vm *vm = xcalloc(1, sizeof(*vm));
    vm->cfg = *cfg;
    vm->kvm_fd = vm->vm_fd = vm->exit_efd = -1;
    vm->mem.memfd = -1;
    pthread_mutex_init(&vm->exit_lock, NULL);
    struct guest_mem_opts mo = {.size = cfg->memory_mib << 20, .hugepages = cfg->hugepages,
                                .mergeable = cfg->mergeable};
    if (setup_kvm(vm, err) < 0 || guest_mem_create(&mo, &vm->mem, err) < 0 ||
        evloop_create(&vm->loop, err) < 0 || vm_devices_create(vm, err) < 0)
        goto fail;
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = vm->mem.size,
        .userspace_addr = (uint64_t)(uintptr_t)vm->mem.host,
    };
    if (vm_load_kernel(vm, err) < 0 || mptable_write(&vm->mem, cfg->cpus, err) < 0)
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

struct stop_sources {
    struct vm *vm;
    int sfd, tfd, in;
};

static void on_exit_request(void *arg, uint32_t events)
{
    (void)arg;
    (void)events; /* vm->exiting is set: the loop ends */
}

static void on_signal(void *arg, uint32_t events)
{
    (void)events;
    struct stop_sources *s = arg;
    struct signalfd_siginfo si;
    if (read(s->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        vm_request_exit(s->vm, VM_EXIT_SIGNAL, (int)si.ssi_signo, "stopped by signal %u",
                        si.ssi_signo);
}

static void on_timeout(void *arg, uint32_t events)
{
    (void)events;
    struct stop_sources *s = arg;
    vm_request_exit(s->vm, VM_EXIT_TIMEOUT, 0, "stopped after the %u ms timeout",
                    s->vm->cfg.timeout_ms);
}

static void on_serial_input(void *arg, uint32_t events)
{
    (void)events;
    struct stop_sources *s = arg;
    uint8_t buf[SERIAL_FIFO];
    ssize_t r = read(s->in, buf, sizeof(buf));
    if (r <= 0) {
        evloop_del(s->vm->loop, s->in);
        s->in = -1;
    } else {
        serial_input(&s->vm->serial, buf, (size_t)r);
    }
}

/* Stop signals (the set vm_run blocked), the timeout, the exit request and
 * the serial console's input join the event loop next to the devices. */
static void add_vm_sources(struct vm *vm, struct stop_sources *s, const sigset_t *stop)
{
    struct err *e = NULL;
    *s = (struct stop_sources){.vm = vm, .sfd = -1, .tfd = -1, .in = -1};
    evloop_add(vm->loop, vm->exit_efd, EPOLLIN, on_exit_request, s, &e);
    if (vm->cfg.handle_signals) {
        s->sfd = signalfd(-1, stop, SFD_CLOEXEC | SFD_NONBLOCK);
        if (s->sfd >= 0)
            evloop_add(vm->loop, s->sfd, EPOLLIN, on_signal, s, &e);
    }
    if (vm->cfg.timeout_ms) {
        s->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        struct itimerspec its = {.it_value = {.tv_sec = vm->cfg.timeout_ms / 1000,
                                              .tv_nsec = (vm->cfg.timeout_ms % 1000) * 1000000L}};
        if (s->tfd >= 0 && timerfd_settime(s->tfd, 0, &its, NULL) == 0)
            evloop_add(vm->loop, s->tfd, EPOLLIN, on_timeout, s, &e);
    }
    if (vm->cfg.console_in_fd >= 0 &&
        evloop_add(vm->loop, vm->cfg.console_in_fd, EPOLLIN, on_serial_input, s, &e) == 0)
        s->in = vm->cfg.console_in_fd; /* a regular file cannot be watched: no input */
    err_free(&e);
}

static void remove_vm_sources(struct vm *vm, struct stop_sources *s)
{
    evloop_del(vm->loop, vm->exit_efd);
    if (s->in >= 0)
        evloop_del(vm->loop, s->in);
    if (s->sfd >= 0) {
        evloop_del(vm->loop, s->sfd);
        close(s->sfd);
    }
    if (s->tfd >= 0) {
        evloop_del(vm->loop, s->tfd);
        close(s->tfd);
    }
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
    struct stop_sources src;
    add_vm_sources(vm, &src, &stop);
    /* This thread is the event thread from here on. */
    int r = vm_start_vcpus(vm, err);
    while (r == 0 && !atomic_load(&vm->exiting))
        evloop_run_once(vm->loop, -1);
    vm_stop_vcpus(vm);
    remove_vm_sources(vm, &src);
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
    vm_devices_destroy(vm);
    evloop_destroy(vm->loop);
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
