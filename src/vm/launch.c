/* Starting a VM container's VM on one of three hypervisors: cocoon's own
 * VMM, qemu (-M microvm), or the sandbox (cocoon-init in namespaces on the
 * host: no VM at all, for tests and hosts without KVM). Each gives the
 * monitor a process to wait for and one stream socket to the agent. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/proc.h"
#include "common/util.h"
#include "oci/config.h"
#include "agent/proto.h"
#include "vm/vm_internal.h"
#include "vm/vmc.h"
#include "vmm/probe.h"
#include "vmm/vm.h"

int vmc_hypervisor_parse(const char *name)
{
    if (name == NULL || strcmp(name, "cocoon") == 0)
        return VMC_HV_COCOON;
    if (strcmp(name, "qemu") == 0)
        return VMC_HV_QEMU;
    if (strcmp(name, "sandbox") == 0)
        return VMC_HV_SANDBOX;
    return -1;
}

/* In the child: stdin from /dev/null, stdout and stderr to the log, fd 3
 * the agent channel; die with the monitor. */
static void child_stdio(int log_fd, int channel)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0)
        dup2(null, 0);
    if (log_fd >= 0) {
        dup2(log_fd, 1);
        dup2(log_fd, 2);
    }
    if (channel >= 0)
        dup2(channel, 3); /* dup2 clears close-on-exec */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Run a helper program (mkfs.erofs), its output to the log. */
static int run_tool(char *const argv[], int log_fd, struct err **err)
{
    pid_t pid = fork();
    if (pid < 0)
        return err_make(err, errno, "fork");
    if (pid == 0) {
        child_stdio(log_fd, -1);
        execvp(argv[0], argv);
        dprintf(2, "cocoon: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        return err_make(err, ENOENT, "%s not found (install erofs-utils)", argv[0]);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return err_make(err, 0, "%s failed (see vm.log in the state directory)", argv[0]);
    return 0;
}

/* The container's root as a read-only erofs image in the state directory
 * (the guest puts a tmpfs overlay on top). */
static int make_rootfs_image(const struct vmc_launch *l, char **image, struct err **err)
{
    *image = xasprintf("%s/rootfs.erofs", l->state_dir);
    char *argv[] = {"mkfs.erofs", "--quiet", *image, (char *)l->rootfs, NULL};
    if (run_tool(argv, l->log_fd, err) < 0)
        return err_wrap(err, "build the root filesystem image of `%s`", l->rootfs);
    return 0;
}

/* What a real guest boots from: kernel, initramfs (cocoon-init as /init)
 * and, for an erofs root, the rootfs image. */
struct guest_files {
    char *kernel, *initrd, *image;
};

static void guest_files_free(struct guest_files *g)
{
    free(g->kernel);
    free(g->initrd);
    free(g->image);
}
#define cleanup_guest_files __attribute__((cleanup(guest_files_free)))

static int guest_files(const struct vmc_launch *l, struct guest_files *g, struct err **err)
{
    cleanup_free char *agent = NULL;
    cleanup_close int rootfd = open(l->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return err_make(err, errno, "state root `%s`", l->root);
    if (vmc_find_agent(&agent, err) < 0 || vmc_find_kernel(&g->kernel, err) < 0 ||
        vmc_initramfs(rootfd, l->root, agent, &g->initrd, err) < 0)
        return -1;
    if (l->rootfs_mode == VMC_ROOTFS_EROFS && make_rootfs_image(l, &g->image, err) < 0)
        return -1;
    return 0;
}

/* Whether guest kernel mode runs natively, probed once per state root. */
static int guest_native(const struct vmc_launch *l, bool *native, double *mips,
                        struct err **err)
{
    cleanup_free char *path = xasprintf("%s/.vm/probe", l->root);
    FILE *f = fopen(path, "re");
    if (f) {
        int n = 0;
        int r = fscanf(f, "%d %lf", &n, mips);
        fclose(f);
        if (r == 2) {
            *native = n != 0;
            return 0;
        }
    }
    struct vm_probe p;
    if (vm_probe_host(&p, err) < 0)
        return err_wrap(err, "probe this host's virtualization");
    *native = p.cpl0_native;
    *mips = p.cpl0_mips;
    cleanup_free char *dir = xasprintf("%s/.vm", l->root);
    mkdir(dir, 0700);
    f = fopen(path, "we");
    if (f) {
        fprintf(f, "%d %.1f\n", p.cpl0_native ? 1 : 0, p.cpl0_mips);
        fclose(f);
    }
    return 0;
}

static int launch_sandbox(const struct vmc_launch *l, int sp[2], pid_t *child,
                          struct err **err)
{
    cleanup_free char *agent = NULL;
    if (vmc_find_agent(&agent, err) < 0)
        return -1;
    /* A pid namespace makes cocoon-init PID 1 there, as in a guest; the
     * mount, UTS, IPC and network namespaces stand in for the VM's own. */
    long pid = syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
                                      CLONE_NEWNET | SIGCHLD,
                       NULL, NULL, NULL, 0);
    if (pid < 0)
        return err_make(err, errno, "start the sandbox for cocoon-init");
    if (pid == 0) {
        child_stdio(l->log_fd, sp[1]);
        char *volumes = l->volumes ? xasprintf("%s/" VMC_VOLUMES_DIR, l->state_dir) : NULL;
        char *argv[] = {"cocoon-init", "--channel-fd", "3", "--root", (char *)l->rootfs,
                        "--hostname", (char *)(l->hostname ? l->hostname : ""),
                        volumes ? "--volumes" : NULL, volumes, NULL};
        execv(agent, argv);
        dprintf(2, "cocoon: exec %s: %s\n", agent, strerror(errno));
        _exit(127);
    }
    *child = (pid_t)pid;
    return 0;
}

/* A virtio-fs backend for qemu: `cocoon fs vhost-user --fd 3 DIR`, a child
 * of the monitor (it ends when qemu hangs up, or with the monitor).
 * *qemu_end gets qemu's end of its socket. */
static int start_vhost_fs(const struct vmc_launch *l, const char *dir, bool readonly,
                          int *qemu_end, struct vmc_started *s, struct err **err)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        return err_make(err, errno, "socketpair");
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sp[0]);
        close(sp[1]);
        return err_make(err, e, "fork");
    }
    if (pid == 0) {
        child_stdio(l->log_fd, sp[1]);
        char *argv[] = {"cocoon", "fs", "vhost-user", "--fd", "3", "-o", readonly ? "ro" : "rw",
                        (char *)dir, NULL};
        execv("/proc/self/exe", argv);
        dprintf(2, "cocoon: exec cocoon fs vhost-user: %s\n", strerror(errno));
        _exit(127);
    }
    close(sp[1]);
    *qemu_end = sp[0];
    s->helpers[s->n_helpers++] = pid;
    return 0;
}

/* qemu's virtio-fs shares: the root (virtiofs mode) and the volumes. */
struct qemu_shares {
    int fd[2];
    const char *tag[2];
    unsigned n;
};

static void qemu_shares_close(struct qemu_shares *s)
{
    for (unsigned i = 0; i < s->n; i++)
        close(s->fd[i]);
    s->n = 0;
}

static int qemu_shares_start(const struct vmc_launch *l, struct qemu_shares *s,
                             struct vmc_started *st, struct err **err)
{
    cleanup_free char *volumes = xasprintf("%s/" VMC_VOLUMES_DIR, l->state_dir);
    if (l->rootfs_mode == VMC_ROOTFS_VIRTIOFS) {
        if (start_vhost_fs(l, l->rootfs, false, &s->fd[s->n], st, err) < 0)
            return -1;
        s->tag[s->n++] = VMC_ROOT_TAG;
    }
    if (l->volumes) {
        if (start_vhost_fs(l, volumes, false, &s->fd[s->n], st, err) < 0) {
            qemu_shares_close(s);
            return -1;
        }
        s->tag[s->n++] = VMC_VOLUMES_TAG;
    }
    return 0;
}

/* qemu's fds from 4 on: the shares' sockets (fd 3 is the agent's). */
#define QEMU_SHARE_FD0 4

static int launch_qemu(const struct vmc_launch *l, int sp[2], struct vmc_started *st,
                       struct err **err)
{
    cleanup_guest_files struct guest_files g = {0};
    if (guest_files(l, &g, err) < 0)
        return -1;
    bool native = false;
    double mips = 0;
    const char *accel = getenv("COCOON_QEMU_ACCEL");
    if (accel == NULL || *accel == '\0') {
        if (guest_native(l, &native, &mips, err) < 0)
            return -1;
        accel = native ? "kvm" : "tcg";
    }
    /* An erofs root is on virtio-blk; virtio-fs shares are served by
     * `cocoon fs vhost-user` processes, over guest memory qemu shares. */
    struct vmc_guest_root root = {.mode = l->rootfs_mode, .source = VMC_ROOT_TAG};
    if (l->rootfs_mode == VMC_ROOTFS_EROFS)
        root.source = "/dev/vda";
    cleanup_free char *base = vmc_guest_cmdline("/dev/hvc0", &root, 't');
    cleanup_free char *cmdline = xasprintf("%s%s", base,
                                           l->volumes ? " cocoon.volumes=" VMC_VOLUMES_TAG : "");
    cleanup_free char *mem = xasprintf("%llu", (unsigned long long)l->memory_mib);
    cleanup_free char *smp = xasprintf("%u", l->cpus);
    cleanup_free char *drive = g.image ? xasprintf("id=root,file=%s,format=raw,if=none,"
                                                   "readonly=on", g.image)
                                       : NULL;
    struct qemu_shares sh = {0};
    if (qemu_shares_start(l, &sh, st, err) < 0)
        return -1;
    cleanup_free char *memobj = xasprintf("memory-backend-memfd,id=mem,size=%lluM,share=on",
                                          (unsigned long long)l->memory_mib);
    char *chardev[2] = {NULL, NULL}, *fsdev[2] = {NULL, NULL};
    /* acpi=off: qemu then lists its virtio-mmio devices on the command line
     * (cocoon's kernel has no ACPI); the RTC stays: without kvm-clock (TCG)
     * Linux would wait a second for a CMOS clock. */
    const char *argv[48] = {
        "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-accel", accel, "-M",
        sh.n ? "microvm,x-option-roms=off,isa-serial=on,acpi=off,memory-backend=mem"
             : "microvm,x-option-roms=off,isa-serial=on,acpi=off",
        "-m", mem, "-smp", smp,
        "-kernel", g.kernel, "-initrd", g.initrd, "-append", cmdline,
        "-serial", "stdio", "-monitor", "none",
        "-chardev", "socket,id=agent,fd=3",
        "-device", "virtio-serial-device,max_ports=1",
        "-device", "virtconsole,chardev=agent",
    };
    size_t n = 0;
    while (argv[n])
        n++;
    if (drive) {
        argv[n++] = "-drive";
        argv[n++] = drive;
        argv[n++] = "-device";
        argv[n++] = "virtio-blk-device,drive=root";
    }
    if (sh.n) {
        argv[n++] = "-object";
        argv[n++] = memobj;
    }
    for (unsigned i = 0; i < sh.n; i++) {
        chardev[i] = xasprintf("socket,id=fs%u,fd=%u", i, QEMU_SHARE_FD0 + i);
        fsdev[i] = xasprintf("vhost-user-fs-device,chardev=fs%u,tag=%s", i, sh.tag[i]);
        argv[n++] = "-chardev";
        argv[n++] = chardev[i];
        argv[n++] = "-device";
        argv[n++] = fsdev[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        /* The shares' sockets above any fd child_stdio moves, then in place. */
        int hi[2];
        for (unsigned i = 0; i < sh.n; i++)
            hi[i] = fcntl(sh.fd[i], F_DUPFD_CLOEXEC, 100);
        child_stdio(l->log_fd, sp[1]);
        for (unsigned i = 0; i < sh.n; i++)
            if (hi[i] < 0 || dup2(hi[i], QEMU_SHARE_FD0 + (int)i) < 0)
                _exit(127);
        execvp(argv[0], (char *const *)argv);
        dprintf(2, "cocoon: exec qemu-system-x86_64: %s\n", strerror(errno));
        _exit(127);
    }
    int e = errno;
    qemu_shares_close(&sh);
    for (unsigned i = 0; i < 2; i++) {
        free(chardev[i]);
        free(fsdev[i]);
    }
    if (pid < 0)
        return err_make(err, e, "fork");
    st->child = pid;
    return 0;
}

/* The agent's channel on cocoon's VMM: vsock, through the device's Unix
 * socket in the state directory. */
static int connect_agent(const struct vmc_launch *l, pid_t vmm, int *channel, struct err **err)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int dfd = -1;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", l->state_dir, VMC_VSOCK_SOCK) >= sizeof(path)) {
        dfd = open(l->state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return err_make(err, errno, "%s", l->state_dir);
        snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dfd, VMC_VSOCK_SOCK);
    }
    int r = vmc_vsock_connect(path, AGENT_VSOCK_PORT, l->timeout_ms, vmm, channel, err);
    if (dfd >= 0)
        close(dfd);
    return r < 0 ? err_wrap(err, "the guest agent (vsock port %u)", AGENT_VSOCK_PORT) : 0;
}

static int launch_cocoon(const struct vmc_launch *l, pid_t *child, int *channel,
                         struct err **err)
{
    bool native = false;
    double mips = 0;
    if (guest_native(l, &native, &mips, err) < 0)
        return -1;
    if (!native)
        return err_make(err, 0,
                        "this host runs guest kernel mode in software (%.1f M instructions/s): "
                        "a Linux guest cannot boot on cocoon's VMM here; VM containers need "
                        "hardware virtualization (or use --hypervisor qemu or sandbox)",
                        mips);
    cleanup_guest_files struct guest_files g = {0};
    if (guest_files(l, &g, err) < 0)
        return -1;
    cleanup_free char *shared = xasprintf("%s/" VMC_SHARED_DIR, l->state_dir);
    if (mkdir(shared, 0700) < 0 && errno != EEXIST)
        return err_make(err, errno, "create %s", shared);
    cleanup_free char *volumes = xasprintf("%s/" VMC_VOLUMES_DIR, l->state_dir);
    struct vmc_cocoon_guest guest = {
        .launch = l, .kernel = g.kernel, .initrd = g.initrd, .image = g.image,
        .shared_dir = shared, .volumes_dir = volumes,
    };
    struct vm_config cfg;
    cleanup_free char *cmdline = NULL;
    if (vmc_cocoon_config(&guest, &cfg, &cmdline, err) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return err_make(err, errno, "fork");
    if (pid == 0) {
        /* The VMM runs in its own process: the monitor stays small and
         * single-threaded, and a VMM crash is a container exit. */
        child_stdio(l->log_fd, -1);
        struct vm *vm = NULL;
        struct vm_exit ex = {0};
        struct err *e = NULL;
        if (chdir(l->state_dir) < 0 || vm_create(&cfg, &vm, &e) < 0 || vm_run(vm, &ex, &e) < 0) {
            dprintf(2, "cocoon: VMM: %s\n", e ? e->msg : strerror(errno));
            _exit(VM_STATUS_ERROR);
        }
        vm_destroy(vm);
        _exit(vm_exit_status(&ex));
    }
    *child = pid;
    if (connect_agent(l, pid, channel, err) < 0) {
        proc_kill_reap(pid);
        return -1;
    }
    return 0;
}

int vmc_launch(const struct vmc_launch *l, struct vmc_started *s, struct err **err)
{
    *s = (struct vmc_started){.child = -1, .channel = -1};
    if (l->hv == VMC_HV_COCOON)
        return launch_cocoon(l, &s->child, &s->channel, err);
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
        return err_make(err, errno, "socketpair");
    int r = l->hv == VMC_HV_QEMU ? launch_qemu(l, sp, s, err)
                                 : launch_sandbox(l, sp, &s->child, err);
    close(sp[1]);
    if (r < 0) {
        close(sp[0]);
        return -1;
    }
    s->channel = sp[0];
    return 0;
}
