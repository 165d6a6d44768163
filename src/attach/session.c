/* The attach session, parent side: find the target, open the tools, start
 * the FUSE server for --fuse, make a pty if wanted, clone the session child
 * into the container's pid (and time) namespace and v2 cgroup, then wait
 * for it as `exec` does: signals forwarded, the pty proxied with the window
 * size kept in sync, the exit status returned. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach/internal.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/terminal.h"
#include "common/util.h"
#include "ns/sync.h"
#include "oci/config.h"
#include "runtime/lifecycle.h"
#include "vm/vmc.h"

/* A pty on the host's devpts: the container's /dev/pts gets no new entry. */
static int open_pty(int *master, int *slave, struct err **err)
{
    *master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*master < 0)
        return err_make(err, errno, "open /dev/ptmx");
    char name[64];
    if (unlockpt(*master) < 0 || ptsname_r(*master, name, sizeof(name)) != 0)
        return err_make(err, errno, "unlock the pty");
    *slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*slave < 0)
        return err_make(err, errno, "open `%s`", name);
    return 0;
}

/* `exec` re-executes cocoon from a sealed copy when the container process
 * holds CAP_SYS_PTRACE (runtime/protect.c); the same applies here. */
static int protect_binary(const struct attach_identity *id, struct err **err)
{
    uint64_t bit = 1ULL << 19; /* CAP_SYS_PTRACE */
    if (!((id->cap_bnd | id->cap_eff | id->cap_prm | id->cap_amb) & bit))
        return 0;
    char *caps[] = {"CAP_SYS_PTRACE", NULL};
    struct oci_process p = {.has_caps = true, .caps = {.bounding = caps}};
    return lifecycle_protect_binary(&p, err);
}

/* A cocoon container of the VM backend (its agent builds the session). */
static bool runs_in_vm(const struct runtime *rt, const char *id)
{
    cleanup_close int rootfd = -1;
    cleanup_state struct container_state *st = NULL;
    cleanup_err struct err *e = NULL;
    cleanup_close int dirfd = lifecycle_load(rt, id, &rootfd, &st, &e);
    return dirfd >= 0 && state_is_vm(st);
}

int attach_run(const struct runtime *rt, const struct attach_opts *o, int *status,
               struct err **err)
{
    struct attach_target t;
    struct attach_fuse fuse = {.pidfd = -1, .pid = -1, .dev = -1, .ready = -1, .errfd = -1};
    cleanup_close int toolsfd = -1, master = -1, slave = -1, sfd = -1;
    cleanup_close int own_pidns = -1, own_timens = -1;
    int sp[2] = {-1, -1}, r = -1;
    pid_t pid = -1;
    void *saved_tty = NULL;
    sigset_t mask, old;
    if (o->fuse && o->id && runs_in_vm(rt, o->id))
        return err_input(err, "attach --fuse: container `%s` runs in a VM, whose agent gets the "
                              "tools through the VM's share; --fuse is for namespace containers "
                              "and --pid", o->id);
    /* A VM container: the agent in its VM builds the session. */
    int vr = o->id ? vmc_attach_id(rt, o, status, err) : 1;
    if (vr <= 0)
        return vr;
    lifecycle_forward_mask(&mask);
    sigprocmask(SIG_BLOCK, NULL, &old);
    if (attach_target_open(rt, o, &t, err) < 0)
        goto out;
    const char *tools = o->tools ? o->tools : "/";
    toolsfd = open(tools, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (toolsfd < 0) {
        err_make(err, errno, "tools directory `%s`", tools);
        goto out;
    }
    if (protect_binary(&t.id, err) < 0)
        goto out;
    /* Before joining the container's pid namespace: the server stays out. */
    if (o->fuse && attach_fuse_start(toolsfd, tools, &fuse, err) < 0)
        goto out;
    bool tty = o->tty >= 0 ? o->tty != 0 : isatty(0);
    if (tty) {
        if (open_pty(&master, &slave, err) < 0)
            goto out;
        if (isatty(0))
            lifecycle_copy_winsize(0, master);
        if (fchown(slave, t.id.host_uid, (gid_t)-1) < 0 && errno != EPERM) {
            err_make(err, errno, "chown the pty");
            goto out;
        }
    }
    /* Blocked (and read from a signalfd) from before the child exists. */
    sigprocmask(SIG_BLOCK, &mask, NULL);
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        err_make(err, errno, "socketpair");
        goto out;
    }
    /* Children of ours go into the container's pid (and time) namespace. */
    int ns = t.join_ns & (CLONE_NEWPID | CLONE_NEWTIME);
    if (ns) {
        own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
        own_timens = open("/proc/self/ns/time", O_RDONLY | O_CLOEXEC);
        if (setns(t.pidfd, ns) < 0) {
            err_make(err, errno, "join the pid namespace of %s", t.what);
            goto out;
        }
    }
    struct attach_plan plan = {
        .o = o, .t = &t, .toolsfd = toolsfd, .tools_path = tools, .sync_fd = sp[1],
        .tty_slave = slave, .caller_shell = getenv("SHELL"), .fuse_dev = fuse.dev,
        .fuse_ready = fuse.ready,
    };
    struct clone_args ca = {.exit_signal = SIGCHLD};
    if (t.cg.v2 >= 0) {
        ca.flags = CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)t.cg.v2;
    }
    pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid == 0) {
        close(sp[0]);
        attach_child_main(&plan);
    }
    int clone_errno = errno;
    if (own_pidns >= 0)
        setns(own_pidns, CLONE_NEWPID);
    if (own_timens >= 0)
        setns(own_timens, CLONE_NEWTIME);
    close_and_reset(&sp[1]);
    close_and_reset(&slave);
    attach_fuse_handed(&fuse);
    if (pid < 0) {
        err_make(err, clone_errno, "clone3 into the cgroup of %s", t.what);
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
        err_make(err, 0, "attach to %s: %s", t.what, m.msg);
        waitpid(pid, NULL, 0);
        pid = -1;
        goto out;
    }
    /* Others may act on the container while the command runs. */
    close_and_reset(&t.lock_dirfd);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) {
        err_make(err, errno, "signalfd");
        goto out;
    }
    if (master >= 0 && isatty(0))
        terminal_make_raw(0, &saved_tty);
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
    /* The command has ended: so does the server (with the session's error,
     * its own if it failed). */
    attach_fuse_stop(&fuse, r < 0 ? err : NULL);
    attach_target_close(&t);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return r;
}
