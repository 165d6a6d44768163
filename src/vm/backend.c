/* The VM backend's lifecycle: spawning the monitor at `create`, and the
 * commands (start, kill, delete) that reach it over its control socket. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <json-c/json.h>

#include "agent/proto.h"
#include "cgroup/cgroup.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/proc.h"
#include "common/terminal.h"
#include "common/util.h"
#include "ns/seccomp.h"
#include "runtime/lifecycle.h"
#include "vm/vm_internal.h"

#define CTL_TIMEOUT_MS 30000

bool vmc_wanted(const struct runtime *rt, const struct oci_config *cfg)
{
    const char *h = oci_config_annotation(cfg, "run.oci.handler");
    return rt->vm || (h && strcmp(h, "vm") == 0);
}

/* linux.seccomp as the agent takes it: {"flags": N, "bpf": HEX}. */
static struct json_object *seccomp_json(const struct seccomp_prog *sp)
{
    size_t n = sp->n * sizeof(struct sock_filter);
    const uint8_t *b = (const uint8_t *)sp->insns;
    char *hex = xmalloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", b[i]);
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "flags", json_object_new_int64(sp->flags));
    json_object_object_add(o, "bpf", json_object_new_string_len(hex, (int)(2 * n)));
    free(hex);
    return o;
}

/* The agent's CREATE request (agent/request.h): the bundle's process,
 * hostname, root.readonly, maskedPaths, readonlyPaths, sysctl, the compiled
 * seccomp filter, and the mounts for the guest (vmc_volumes_prepare's;
 * taken over). */
static char *create_request(const struct prepared *p, struct json_object *mounts)
{
    const struct oci_config *cfg = p->cfg;
    struct json_object *req = json_object_new_object(), *v, *lx = NULL;
    if (json_object_object_get_ex(cfg->json, "process", &v))
        json_object_object_add(req, "process", json_object_get(v));
    if (cfg->hostname)
        json_object_object_add(req, "hostname", json_object_new_string(cfg->hostname));
    if (cfg->root_readonly)
        json_object_object_add(req, "readonly", json_object_new_boolean(true));
    /* Checked by oci_config_load: passed on as they are. */
    json_object_object_get_ex(cfg->json, "linux", &lx);
    static const char *const keep[] = {"maskedPaths", "readonlyPaths", "sysctl"};
    for (size_t i = 0; lx && i < sizeof(keep) / sizeof(keep[0]); i++)
        if (json_object_object_get_ex(lx, keep[i], &v) && v)
            json_object_object_add(req, keep[i], json_object_get(v));
    if (p->seccomp)
        json_object_object_add(req, "seccomp", seccomp_json(p->seccomp));
    if (mounts && json_object_array_length(mounts))
        json_object_object_add(req, "mounts", mounts);
    else if (mounts)
        json_object_put(mounts);
    char *s = xstrdup(json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN));
    json_object_put(req);
    return s;
}

int vmc_console_pty(int console_sock, unsigned rows, unsigned cols, struct err **err)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
        return err_make(err, errno, "allocate a pty");
    char name[64];
    if (ptsname_r(master, name, sizeof(name)) != 0) {
        close(master);
        return err_make(err, errno, "allocate a pty");
    }
    int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) {
        close(master);
        return err_make(err, errno, "open %s", name);
    }
    struct termios t;
    if (tcgetattr(slave, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(slave, TCSANOW, &t);
    }
    if (rows && cols) {
        struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
        ioctl(master, TIOCSWINSZ, &ws);
    }
    int r = terminal_send_fd(console_sock, master, name, err);
    close(master);
    if (r < 0) {
        close(slave);
        return err_wrap(err, "--console-socket");
    }
    return slave;
}

/* How long the agent may take to say HELLO. */
static unsigned hello_timeout(enum vmc_hypervisor hv)
{
    const char *env = getenv("COCOON_VM_TIMEOUT_MS");
    int v;
    if (env && parse_int(env, &v) == 0 && v > 0)
        return (unsigned)v;
    return hv == VMC_HV_QEMU ? 60000 : 10000;
}

/* The monitor process, forked from `create`: never returns. */
static void __attribute__((noreturn))
monitor_main(const struct runtime *rt, struct prepared *p, int console_sock, int ready_fd,
             struct vmc_launch *l, struct json_object *mounts)
{
    setsid();
    struct err *e = NULL;
    /* The container's cgroup holds the monitor and, through it, the VMM. */
    if (p->cg.path && cgroup_enter(&p->cg, 0, false, &e) < 0) {
        dprintf(ready_fd, "1 %s", e->msg);
        _exit(255);
    }
    /* The locked state directory fd stays with `create`: a new one here
     * (flock belongs to the open file), so later commands can lock it. */
    int dirfd = open(l->state_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    close(p->dirfd);
    close(p->rootfd);
    int log_fd = openat(dirfd, "vm.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    int console = -1;
    if (console_sock >= 0) {
        const struct oci_process *proc = p->cfg->process;
        console = vmc_console_pty(console_sock, proc->has_console_size ? proc->console_height : 0,
                                  proc->has_console_size ? proc->console_width : 0, &e);
        close(console_sock);
        if (console < 0) {
            dprintf(ready_fd, "1 %s", e->msg);
            _exit(255);
        }
        /* The monitor's controlling terminal: a resize arrives as SIGWINCH. */
        ioctl(console, TIOCSCTTY, 0);
    }
    if (chdir("/") < 0)
        _exit(255);
    l->rootfs = p->rootfs;
    l->hostname = p->cfg->hostname;
    l->log_fd = log_fd;
    char root[PATH_MAX];
    l->root = realpath(rt->root, root) ? root : rt->root;
    l->timeout_ms = hello_timeout(l->hv);
    l->volumes = faccessat(dirfd, VMC_VOLUMES_DIR, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    char *req = create_request(p, mounts);
    struct vmc_monitor_opts mo = {
        .launch = l, .create_json = req, .ready_fd = ready_fd, .dirfd = dirfd,
        .console_fd = console, .hello_timeout_ms = l->timeout_ms,
    };
    _exit(vmc_monitor(&mo));
}

int vmc_spawn(const struct runtime *rt, struct prepared *p, const struct create_opts *o,
              int console_sock, pid_t *monitor, struct err **err)
{
    char root[PATH_MAX];
    if (realpath(rt->root, root) == NULL)
        return err_make(err, errno, "state root `%s`", rt->root);
    cleanup_free char *state_dir = xasprintf("%s/%s", root, o->id);
    struct vmc_launch l = {
        .hv = vmc_hypervisor_parse(rt->hypervisor), .state_dir = state_dir,
    };
    if (vmc_size(p->cfg, l.hv, &l.cpus, &l.memory_mib, err) < 0 ||
        vmc_rootfs_choose(p->cfg, l.hv, &l.rootfs_mode, err) < 0 ||
        vmc_root_dax(p->cfg, l.hv, l.rootfs_mode, &l.root_dax_mib, err) < 0)
        return err_wrap(err, "VM container `%s`", o->id);
    int fd = openat(p->dirfd, VMC_CREATED, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_make(err, errno, "create %s/%s", state_dir, VMC_CREATED);
    close(fd);
    const char *hv = rt->hypervisor ? rt->hypervisor : "cocoon";
    fd = openat(p->dirfd, VMC_HYPERVISOR_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, hv, strlen(hv)) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return err_make(err, e, "write %s/%s", state_dir, VMC_HYPERVISOR_FILE);
    }
    close(fd);
    struct json_object *mounts = NULL;
    if (vmc_volumes_prepare(p->dirfd, p->cfg, p->bundle, l.hv, &mounts, err) < 0)
        return err_wrap(err, "VM container `%s`", o->id);
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0) {
        json_object_put(mounts);
        vmc_volumes_cleanup(p->dirfd);
        return err_make(err, errno, "pipe");
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(ready[0]);
        close(ready[1]);
        json_object_put(mounts);
        vmc_volumes_cleanup(p->dirfd);
        return err_make(err, errno, "fork the VM monitor");
    }
    if (pid == 0) {
        close(ready[0]);
        monitor_main(rt, p, console_sock, ready[1], &l, mounts);
    }
    json_object_put(mounts);
    close(ready[1]);
    char buf[1024];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(ready[0], buf + have, sizeof(buf) - 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    close(ready[0]);
    buf[have] = '\0';
    if (have >= 2 && buf[0] == '0') {
        *monitor = pid;
        return 0;
    }
    /* The monitor stops its VM and exits by itself: wait, leave nothing. */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    vmc_volumes_cleanup(p->dirfd);
    if (have >= 2 && buf[0] == '1')
        return err_make(err, 0, "VM container `%s`: %s", o->id, buf + 2);
    return err_make(err, 0, "VM container `%s`: the VM monitor failed (see %s/vm.log)", o->id,
                    state_dir);
}

int vmc_ctl_connect(int dirfd, struct err **err)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_make(err, errno, "socket");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/" VMC_CTL_SOCK, dirfd);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return err_make(err, e, "connect to the container's VM monitor");
    }
    return fd;
}

/* Read frames until a whole one is there (blocking, bounded by a timeout). */
static int read_frame(int fd, struct agent_buf *b, struct agent_hdr *h, const uint8_t **p,
                      int timeout_ms, struct err **err)
{
    for (;;) {
        const char *why = NULL;
        int r = agent_buf_frame(b, h, p, &why);
        if (r < 0)
            return err_make(err, EPROTO, "the VM monitor sent a bad frame (%s)", why);
        if (r == 1)
            return 0;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = poll(&pf, 1, timeout_ms);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return err_make(err, ETIMEDOUT, "no answer from the container's VM");
        long n = agent_buf_fill(b, fd);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return err_make(err, n < 0 ? errno : 0, "the container's VM monitor went away");
    }
}

int vmc_ctl_call(int fd, uint16_t type, uint32_t proc, const void *payload, size_t len,
                 uint32_t *pid, struct err **err)
{
    if (agent_send(fd, type, proc, 1, payload, len) < 0)
        return err_make(err, errno, "send %s to the VM monitor", agent_msg_name(type));
    struct agent_buf b = {0};
    int r = 0;
    for (;;) {
        struct agent_hdr h;
        const uint8_t *p;
        if (read_frame(fd, &b, &h, &p, CTL_TIMEOUT_MS, err) < 0) {
            r = -1;
            break;
        }
        if (h.type == AGENT_REPLY && h.seq == 1) {
            struct agent_reply rep;
            if (agent_reply_decode(p, h.len, &rep) < 0) {
                r = err_make(err, EPROTO, "bad REPLY from the VM monitor");
            } else if (rep.error) {
                r = err_make(err, rep.error, "%s: %.*s", agent_msg_name(type),
                             (int)(h.len - AGENT_REPLY_SIZE), (const char *)p + AGENT_REPLY_SIZE);
            } else if (pid) {
                *pid = rep.pid;
            }
            break;
        }
        agent_buf_consume(&b, &h);
    }
    agent_buf_free(&b);
    return r;
}

int vmc_start(int dirfd, const struct container_state *st, struct err **err)
{
    cleanup_close int fd = vmc_ctl_connect(dirfd, err);
    if (fd < 0 || vmc_ctl_call(fd, AGENT_START, 0, NULL, 0, NULL, err) < 0)
        return err_wrap(err, "start container `%s`", st->id);
    unlinkat(dirfd, VMC_CREATED, 0);
    return 0;
}

int vmc_kill(int dirfd, const struct container_state *st, int sig, bool all,
             struct err **err)
{
    uint8_t b[AGENT_SIGNAL_SIZE];
    agent_signal_encode(&(struct agent_signal){.signo = (uint32_t)sig, .all = all}, b);
    cleanup_close int fd = vmc_ctl_connect(dirfd, err);
    if (fd >= 0 && vmc_ctl_call(fd, AGENT_SIGNAL, 0, b, sizeof(b), NULL, err) == 0)
        return 0;
    if (sig == SIGKILL) {
        /* No agent to ask: the VM goes with its monitor. */
        err_free(err);
        cleanup_close int pidfd = proc_pidfd_open_checked(st->pid, st->start_time);
        if (pidfd >= 0 && proc_pidfd_signal(pidfd, SIGKILL) == 0)
            return 0;
    }
    return err_wrap(err, "send signal %d to container `%s`", sig, st->id);
}

/* Shut the VM down through its monitor; SIGKILL if it does not go. */
static int stop_monitor(int dirfd, const struct container_state *st, struct err **err)
{
    cleanup_close int pidfd = proc_pidfd_open_checked(st->pid, st->start_time);
    if (pidfd < 0)
        return 0;
    struct err *e = NULL;
    int fd = vmc_ctl_connect(dirfd, &e);
    if (fd >= 0) {
        agent_send(fd, AGENT_SHUTDOWN, 0, 1, NULL, 0);
        close(fd);
    }
    err_free(&e);
    if (proc_pidfd_wait(pidfd, 15000))
        return 0;
    proc_pidfd_signal(pidfd, SIGKILL);
    if (!proc_pidfd_wait(pidfd, 10000))
        return err_make(err, ETIMEDOUT, "the VM of container `%s` did not stop", st->id);
    return 0;
}

void vmc_subdir_clear(int dirfd, const char *sub, const char *prefix)
{
    int fd = openat(dirfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return;
    }
    struct dirent *de;
    char path[PATH_MAX];
    size_t plen = strlen(prefix);
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, plen) != 0)
            continue;
        snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", fd, de->d_name);
        umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
        if (unlinkat(fd, de->d_name, 0) < 0 && errno == EISDIR)
            unlinkat(fd, de->d_name, AT_REMOVEDIR);
    }
    closedir(d);
}

void vmc_host_cleanup(int dirfd)
{
    vmc_shared_cleanup(dirfd);
    vmc_volumes_cleanup(dirfd);
}

int vmc_stop(int dirfd, const struct container_state *st, struct err **err)
{
    int r = stop_monitor(dirfd, st, err);
    if (r == 0)
        vmc_host_cleanup(dirfd);
    return r;
}
