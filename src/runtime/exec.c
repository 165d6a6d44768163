/* `cocoon exec`: a new process in the namespaces and cgroup of a running
 * namespace container. The parent joins the container's pid namespace for
 * its children only, clones into the container's cgroup, and the child joins
 * the remaining namespaces at once with setns(pidfd). */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/proc.h"
#include "common/terminal.h"
#include "common/util.h"
#include "ns/caps.h"
#include "ns/ns.h"
#include "ns/seccomp.h"
#include "ns/sync.h"
#include "oci/config.h"
#include "oci/state.h"
#include "runtime/container.h"
#include "runtime/lifecycle.h"
#include "vm/vmc.h"

/* strv concatenation: a followed by b (both may be NULL). */
static char **strv_concat(char **a, char **b)
{
    size_t na = strv_len(a), nb = strv_len(b);
    char **v = xcalloc(na + nb + 1, sizeof(char *));
    for (size_t i = 0; i < na; i++)
        v[i] = xstrdup(a[i]);
    for (size_t i = 0; i < nb; i++)
        v[na + i] = xstrdup(b[i]);
    return v;
}

static int parse_user(const char *s, uint32_t *uid, uint32_t *gid, bool *has_gid)
{
    cleanup_free char *c = xstrdup(s);
    char *colon = strchr(c, ':');
    uint64_t v;
    *has_gid = false;
    if (colon) {
        *colon = '\0';
        if (parse_u64(colon + 1, UINT32_MAX, &v) < 0)
            return -1;
        *gid = (uint32_t)v;
        *has_gid = true;
    }
    if (parse_u64(c, UINT32_MAX, &v) < 0)
        return -1;
    *uid = (uint32_t)v;
    return 0;
}

/* dst = src, with `extra` (--cap) added to the bounding, effective and
 * permitted sets. */
static void caps_copy(struct oci_caps *dst, const struct oci_caps *src, char **extra)
{
    dst->bounding = strv_concat(src->bounding, extra);
    dst->effective = strv_concat(src->effective, extra);
    dst->permitted = strv_concat(src->permitted, extra);
    dst->inheritable = strv_concat(src->inheritable, NULL);
    dst->ambient = strv_concat(src->ambient, NULL);
}

/* The container's environment with --env entries replacing those of the
 * same name and the others added. */
static char **env_merge(char **base, char **add)
{
    char **v = strv_concat(base, NULL);
    size_t n = strv_len(v);
    for (size_t i = 0; add && add[i]; i++) {
        const char *eq = strchr(add[i], '=');
        size_t kl = eq ? (size_t)(eq - add[i]) : strlen(add[i]);
        bool replaced = false;
        for (size_t k = 0; k < n; k++) {
            if (strncmp(v[k], add[i], kl) == 0 && (v[k][kl] == '=' || v[k][kl] == '\0')) {
                free(v[k]);
                v[k] = xstrdup(add[i]);
                replaced = true;
                break;
            }
        }
        if (!replaced) {
            char **nv = realloc(v, (n + 2) * sizeof(char *));
            if (nv == NULL)
                abort();
            v = nv;
            v[n++] = xstrdup(add[i]);
            v[n] = NULL;
        }
    }
    return v;
}

/* Build the process to run: --process as given, or the container's process
 * with args, env, cwd, user, tty and caps overridden (runc's behaviour). */
static int build_process(const struct exec_opts *o, const struct oci_config *cfg,
                         struct oci_process **out, struct err **err)
{
    if (o->process_file) {
        cleanup_free char *data = NULL;
        size_t len;
        if (read_file_at(AT_FDCWD, o->process_file, OCI_CONFIG_MAX_SIZE, &data, &len, err) < 0)
            return err_wrap(err, "--process");
        if (oci_process_parse(data, len, o->process_file, out, err) < 0)
            return -1;
        /* A process.json without capabilities gets the container's. */
        if (!(*out)->has_caps && cfg->process && cfg->process->has_caps) {
            (*out)->has_caps = true;
            caps_copy(&(*out)->caps, &cfg->process->caps, NULL);
        }
        return 0;
    }
    if (o->args == NULL || o->args[0] == NULL)
        return err_input(err, "exec: no command given");
    const struct oci_process *base = cfg->process;
    struct oci_process *p = xcalloc(1, sizeof(*p));
    *out = p;
    if (base) {
        p->rlimits = xcalloc(base->n_rlimits, sizeof(*p->rlimits));
        memcpy(p->rlimits, base->rlimits, base->n_rlimits * sizeof(*p->rlimits));
        p->n_rlimits = base->n_rlimits;
        p->has_caps = base->has_caps;
        caps_copy(&p->caps, &base->caps, o->caps);
        p->no_new_privileges = base->no_new_privileges;
        p->uid = base->uid;
        p->gid = base->gid;
        p->has_umask = base->has_umask;
        p->umask = base->umask;
        if (base->n_additional_gids) {
            p->additional_gids = xcalloc(base->n_additional_gids, sizeof(uint32_t));
            memcpy(p->additional_gids, base->additional_gids,
                   base->n_additional_gids * sizeof(uint32_t));
            p->n_additional_gids = base->n_additional_gids;
        }
        p->terminal = base->terminal;
    }
    p->args = strv_concat(o->args, NULL);
    p->env = env_merge(base ? base->env : NULL, o->env);
    p->cwd = xstrdup(o->cwd ? o->cwd : base ? base->cwd : "/");
    if (p->cwd[0] != '/')
        return err_input(err, "exec: --cwd `%s` must be absolute", p->cwd);
    if (o->tty >= 0)
        p->terminal = o->tty;
    if (o->no_new_privs)
        p->no_new_privileges = true;
    /* The container's AppArmor profile unless --apparmor names one. */
    const char *aa = o->apparmor ? o->apparmor : base ? base->apparmor_profile : NULL;
    if (aa)
        p->apparmor_profile = xstrdup(aa);
    if (o->user) {
        bool has_gid;
        if (parse_user(o->user, &p->uid, &p->gid, &has_gid) < 0)
            return err_input(err, "exec: --user `%s` must be UID[:GID]", o->user);
        if (!has_gid)
            p->gid = 0;
        free(p->additional_gids);
        p->additional_gids = NULL;
        p->n_additional_gids = 0;
    }
    if (p->has_caps && caps_validate(&p->caps, err) < 0)
        return -1;
    return 0;
}

struct exec_child {
    const struct oci_process *proc;
    int pidfd, join_flags, sync_fd, console_fd, preserve_fds;
    const struct cgroup *cg;
    const struct seccomp_prog *seccomp;
    bool in_v2;
};

static int exec_child_run(const struct exec_child *c, char **exe, struct err **err)
{
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* see ns/init.c: CVE-2019-5736 */
    if (c->cg && cgroup_enter(c->cg, 0, c->in_v2, err) < 0)
        return -1;
    int flags = c->join_flags & ~(CLONE_NEWPID | CLONE_NEWTIME);
    if (flags && setns(c->pidfd, flags) < 0)
        return err_make(err, errno, "join the container's namespaces");
    if (c->proc->terminal) {
        if (ns_terminal_setup(c->proc, c->console_fd, err) < 0)
            return -1;
    } else if (setsid() < 0 && errno != EPERM) {
        return err_make(err, errno, "setsid");
    }
    return ns_secure_and_find(c->proc, c->seccomp, NULL, exe, err);
}

static __attribute__((noreturn)) void exec_child_main(const struct exec_child *c)
{
    struct err *err = NULL;
    char *exe = NULL;
    if (exec_child_run(c, &exe, &err) == 0) {
        ns_exec(exe, c->proc, c->preserve_fds);
        err_make(&err, errno, "exec `%s`", c->proc->args[0]);
    }
    sync_send_error(c->sync_fd, err);
    _exit(127);
}

int container_exec(const struct runtime *rt, const struct exec_opts *o, int *status,
                   struct err **err)
{
    cleanup_close int rootfd = -1;
    cleanup_state struct container_state *st = NULL;
    cleanup_close int dirfd = lifecycle_load(rt, o->id, &rootfd, &st, err);
    if (dirfd < 0)
        return -1;
    enum container_status s = state_status(dirfd, st);
    if (s != STATUS_RUNNING && s != STATUS_CREATED)
        return err_make(err, 0, "cannot exec in container `%s`: it is %s", o->id,
                        state_status_name(s));
    cleanup_config struct oci_config *cfg = NULL;
    if (oci_config_load(st->bundle, &cfg, err) < 0)
        return -1;
    struct oci_process *proc = NULL;
    if (build_process(o, cfg, &proc, err) < 0) {
        oci_process_free(proc);
        return -1;
    }
    if (state_is_vm(st)) {
        cleanup_free char *req = vmc_process_json(proc, NULL);
        struct vmc_exec_opts vo = {
            .process_json = req, .tty = proc->terminal, .detach = o->detach,
            .pid_file = o->pid_file, .console_socket = o->console_socket,
            .rows = proc->has_console_size ? proc->console_height : 0,
            .cols = proc->has_console_size ? proc->console_width : 0,
        };
        oci_process_free(proc);
        return vmc_exec(dirfd, st, &vo, status, err);
    }
    if (lifecycle_protect_binary(proc, err) < 0) {
        oci_process_free(proc);
        return -1;
    }
    struct seccomp_prog *prog = NULL;
    {
        int cache = lifecycle_seccomp_cache(rootfd);
        int r0 = ns_seccomp_prepare(cfg->linux_.seccomp, cache, &prog, err);
        if (cache >= 0)
            close(cache);
        if (r0 < 0) {
            oci_process_free(proc);
            return -1;
        }
    }
    cleanup_close int pidfd = proc_pidfd_open_checked(st->pid, st->start_time);
    if (pidfd < 0) {
        oci_process_free(proc);
        ns_seccomp_prog_free(prog);
        return err_make(err, 0, "container `%s`: container not running", o->id);
    }
    char ns_dir[48];
    snprintf(ns_dir, sizeof(ns_dir), "/proc/%d/ns", (int)st->pid);
    int join = proc_ns_differing(AT_FDCWD, ns_dir);
    struct cgroup cg;
    bool have_cg = false;
    cleanup_close int console = -1, console_peer = -1, master = -1, sfd = -1;
    cleanup_close int own_pidns = -1, own_timens = -1;
    int sp[2] = {-1, -1}, r = -1;
    pid_t pid = -1;
    void *saved_tty = NULL;
    sigset_t mask, old;
    lifecycle_forward_mask(&mask);
    if (!o->detach)
        sigprocmask(SIG_BLOCK, &mask, &old);
    if (st->cgroup) {
        if (cgroup_open(st->cgroup, &cg, err) < 0)
            goto out;
        have_cg = true;
    }
    if (proc->terminal) {
        if (o->console_socket) {
            console = unix_connect(o->console_socket, err);
            if (console < 0) {
                err_wrap(err, "--console-socket");
                goto out;
            }
        } else if (o->detach) {
            err_input(err, "exec: --tty with --detach needs --console-socket");
            goto out;
        } else {
            int cp[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cp) < 0) {
                err_make(err, errno, "socketpair");
                goto out;
            }
            console = cp[0];
            console_peer = cp[1];
        }
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        err_make(err, errno, "socketpair");
        goto out;
    }
    if (!o->detach && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
        err_make(err, errno, "become a subreaper");
        goto out;
    }
    /* Children of ours go into the container's pid (and time) namespace. */
    if (join & (CLONE_NEWPID | CLONE_NEWTIME)) {
        own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
        own_timens = open("/proc/self/ns/time", O_RDONLY | O_CLOEXEC);
        if (setns(pidfd, join & (CLONE_NEWPID | CLONE_NEWTIME)) < 0) {
            err_make(err, errno, "join the pid namespace of container `%s`", o->id);
            goto out;
        }
    }
    struct exec_child c = {
        .proc = proc, .pidfd = pidfd, .join_flags = join, .sync_fd = sp[1],
        .console_fd = console, .preserve_fds = o->preserve_fds,
        .cg = have_cg ? &cg : NULL, .seccomp = prog,
    };
    int v2fd = have_cg ? cgroup_v2_fd(&cg) : -1;
    struct clone_args ca = {.exit_signal = SIGCHLD};
    if (v2fd >= 0) {
        ca.flags = CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)v2fd;
    }
    c.in_v2 = v2fd >= 0;
    fflush(NULL);
    pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
        close(sp[0]);
        exec_child_main(&c);
    }
    int clone_errno = errno;
    if (own_pidns >= 0)
        setns(own_pidns, CLONE_NEWPID);
    if (own_timens >= 0)
        setns(own_timens, CLONE_NEWTIME);
    close_and_reset(&sp[1]);
    if (pid < 0) {
        err_make(err, clone_errno, "clone3");
        goto out;
    }
    /* The child's end closes on a successful execve: EOF means it runs. */
    struct sync_msg m;
    ssize_t n;
    do
        n = recv(sp[0], &m, sizeof(m), 0);
    while (n < 0 && errno == EINTR);
    if (n > 0 && m.type == SYNC_ERROR) {
        m.msg[sizeof(m.msg) - 1] = '\0';
        err_make(err, 0, "exec in container `%s`: %s", o->id, m.msg);
        waitpid(pid, NULL, 0);
        pid = -1;
        goto out;
    }
    if (console_peer >= 0) {
        master = terminal_recv_fd(console_peer, err);
        if (master < 0)
            goto out;
    }
    if (o->pid_file && lifecycle_write_pid_file(o->pid_file, pid, err) < 0)
        goto out;
    /* Others may act on the container while this process runs. */
    close_and_reset(&dirfd);
    if (o->detach) {
        *status = 0;
        r = 0;
        pid = -1;
        goto out;
    }
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) {
        err_make(err, errno, "signalfd");
        goto out;
    }
    if (master >= 0 && isatty(0)) {
        lifecycle_copy_winsize(0, master);
        terminal_make_raw(0, &saved_tty);
    }
    r = lifecycle_wait(pid, sfd, master, status, err);
    pid = -1;
out:
    terminal_restore(0, saved_tty);
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    close_and_reset(&sp[0]);
    close_and_reset(&sp[1]);
    if (have_cg)
        cgroup_close(&cg);
    oci_process_free(proc);
    ns_seccomp_prog_free(prog);
    if (!o->detach)
        sigprocmask(SIG_SETMASK, &old, NULL);
    return r;
}
