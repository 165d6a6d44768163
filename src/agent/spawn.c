/* Container processes: fork, wire stdio (pipes or a pty of the container's
 * devpts), chroot into the container root, apply the OCI process's
 * identity, and exec — at once (EXEC) or when START says so (CREATE).
 * Errors before exec come back over a close-on-exec pipe: a 4-byte errno
 * and a message; its end of file means the program runs. */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/ns.h"
#include "oci/config.h"

#define SYNC_MSG_MAX 2048
#define SYNC_TIMEOUT_MS 10000 /* set-up or exec that takes longer is killed */

/* What the child needs; all descriptors are the child's ends. */
struct child_args {
    const struct oci_process *p;
    const struct seccomp_prog *seccomp; /* or NULL */
    int root_fd;
    int tools_fd; /* an attach session's tools, or -1 */
    int stdio[3];
    int sync_fd;  /* write end */
    int start_fd; /* read end, or -1: exec at once */
};

/* Send an error to the agent and die (child side). */
__attribute__((noreturn)) static void child_fail(int fd, struct err *e)
{
    uint8_t buf[4 + SYNC_MSG_MAX];
    int32_t code = e && e->code ? e->code : EINVAL;
    const char *msg = e && e->msg ? e->msg : "set-up failed";
    size_t n = strlen(msg);
    if (n > SYNC_MSG_MAX)
        n = SYNC_MSG_MAX;
    memcpy(buf, &code, 4);
    memcpy(buf + 4, msg, n);
    /* One write below PIPE_BUF: the agent reads it whole. */
    if (write(fd, buf, 4 + n) < 0)
        _exit(126);
    _exit(127);
}

/* Close every descriptor from 3 up but a and b (either may be -1). */
static void close_others(int a, int b)
{
    int lo = a < b ? a : b, hi = a < b ? b : a;
    int keep[2] = {lo, hi};
    unsigned from = 3;
    for (int i = 0; i < 2; i++) {
        if (keep[i] < 3)
            continue;
        if ((unsigned)keep[i] > from)
            syscall(SYS_close_range, from, (unsigned)keep[i] - 1, 0);
        from = (unsigned)keep[i] + 1;
    }
    syscall(SYS_close_range, from, ~0u, 0);
}

__attribute__((noreturn)) static void child_main(const struct child_args *c)
{
    struct err *err = NULL;
    const struct oci_process *p = c->p;
    if (setsid() < 0) {
        err_make(&err, errno, "setsid");
        child_fail(c->sync_fd, err);
    }
    if (p->terminal && ioctl(c->stdio[0], TIOCSCTTY, 0) < 0) {
        err_make(&err, errno, "make the pty the controlling terminal");
        child_fail(c->sync_fd, err);
    }
    for (int fd = 0; fd < 3; fd++)
        if (dup2(c->stdio[fd], fd) < 0) {
            err_make(&err, errno, "set up fd %d", fd);
            child_fail(c->sync_fd, err);
        }
    if (p->has_oom_score_adj) {
        char v[16];
        int n = snprintf(v, sizeof(v), "%d", p->oom_score_adj);
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, v, (size_t)n) != n) {
            err_make(&err, errno, "process.oomScoreAdj %d", p->oom_score_adj);
            child_fail(c->sync_fd, err);
        }
        close(fd);
    }
    if (c->tools_fd >= 0) {
        if (agent_attach_enter(c->root_fd, c->tools_fd, &err) < 0)
            child_fail(c->sync_fd, err);
    } else if (fchdir(c->root_fd) < 0 || chroot(".") < 0 || chdir("/") < 0) {
        err_make(&err, errno, "enter the container root");
        child_fail(c->sync_fd, err);
    }
    close_others(c->sync_fd, c->start_fd);
    cleanup_free char *exe = NULL;
    if (ns_secure_and_find(p, c->seccomp, NULL, &exe, &err) < 0)
        child_fail(c->sync_fd, err);
    if (c->start_fd >= 0) {
        int32_t ready = 0;
        if (write(c->sync_fd, &ready, sizeof(ready)) != sizeof(ready))
            _exit(127);
        char b;
        ssize_t n;
        do
            n = read(c->start_fd, &b, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1)
            _exit(127); /* the agent gave it up */
        close(c->start_fd);
    }
    ns_exec(exe, p, 0);
    err_make(&err, errno, "exec `%s`", exe);
    child_fail(c->sync_fd, err);
}

/* Wait for the child's word on sync_fd: want_ready: the 4-byte "set up"
 * (0); else end of file (it exec'd). 0, or -1 with the child's error. */
static int sync_wait(int fd, bool want_ready, struct err **err)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&pfd, 1, SYNC_TIMEOUT_MS);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return err_make(err, errno, "wait for the process");
    if (r == 0)
        return err_make(err, ETIMEDOUT, "the process did not finish its set-up in %d s",
                        SYNC_TIMEOUT_MS / 1000);
    uint8_t buf[4 + SYNC_MSG_MAX + 1];
    ssize_t n;
    do
        n = read(fd, buf, sizeof(buf) - 1);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return err_make(err, errno, "read the process's set-up status");
    if (n == 0)
        return want_ready ? err_make(err, ECHILD, "the process died during its set-up") : 0;
    if (n < 4)
        return err_make(err, EPROTO, "short set-up status from the process");
    int32_t code;
    memcpy(&code, buf, 4);
    if (code == 0 && n == 4 && want_ready)
        return 0;
    buf[n] = '\0';
    err_make(err, 0, "%s", n > 4 ? (char *)buf + 4 : "set-up failed");
    if (*err)
        (*err)->code = code > 0 && code < 4096 ? code : EINVAL;
    return -1;
}

/* O_NONBLOCK on the agent's ends. */
static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* A pty of the container's devpts: the master (non-blocking) and the
 * slave, with the window size of process.consoleSize. */
static int open_pty(struct agent *a, const struct oci_process *p, int *master, int *slave,
                    struct err **err)
{
    if (a->pts_fd < 0)
        return err_make(err, ENOTTY, "no devpts in the container root");
    cleanup_close int m = openat(a->pts_fd, "ptmx", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (m < 0)
        return err_make(err, errno, "open the container's /dev/pts/ptmx");
    int unlock = 0;
    if (ioctl(m, TIOCSPTLCK, &unlock) < 0)
        return err_make(err, errno, "unlock the pty");
    int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0)
        return err_make(err, errno, "open the pty's slave");
    if (p->has_console_size) {
        struct winsize ws = {.ws_row = (unsigned short)p->console_height,
                             .ws_col = (unsigned short)p->console_width};
        ioctl(m, TIOCSWINSZ, &ws);
    }
    *master = steal_fd(&m);
    *slave = s;
    return 0;
}

int agent_proc_spawn(struct agent *a, struct agent_proc *pr, const struct oci_process *p,
                     bool hold, const char *attach_tools, struct err **err)
{
    /* Agent ends (ours) and child ends (theirs), closed on every return. */
    cleanup_close int sync_r = -1, sync_w = -1, start_r = -1, start_w = -1;
    cleanup_close int in_w = -1, out_r = -1, err_r = -1, master = -1, in_dup = -1;
    cleanup_close int c_in = -1, c_out = -1, c_err = -1, slave = -1;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return err_make(err, errno, "pipe");
    sync_r = fds[0], sync_w = fds[1];
    if (hold) {
        if (pipe2(fds, O_CLOEXEC) < 0)
            return err_make(err, errno, "pipe");
        start_r = fds[0], start_w = fds[1];
    }
    cleanup_close int tools = -1;
    if (attach_tools && (tools = agent_attach_tools(a, attach_tools, err)) < 0)
        return -1;
    struct child_args c = {.p = p, .seccomp = a->seccomp, .root_fd = a->root_fd, .tools_fd = tools, .sync_fd = sync_w,
                           .start_fd = start_r};
    if (p->terminal) {
        if (open_pty(a, p, &master, &slave, err) < 0)
            return -1;
        in_dup = fcntl(master, F_DUPFD_CLOEXEC, 3);
        if (in_dup < 0)
            return err_make(err, errno, "dup the pty");
        c.stdio[0] = c.stdio[1] = c.stdio[2] = slave;
    } else {
        int *ours[3] = {&in_w, &out_r, &err_r}, *theirs[3] = {&c_in, &c_out, &c_err};
        for (int i = 0; i < 3; i++) {
            if (pipe2(fds, O_CLOEXEC) < 0)
                return err_make(err, errno, "pipe");
            *ours[i] = fds[i == 0 ? 1 : 0];
            *theirs[i] = fds[i == 0 ? 0 : 1];
            if (set_nonblock(*ours[i]) < 0)
                return err_make(err, errno, "set up stdio");
            c.stdio[i] = *theirs[i];
        }
    }
    pid_t pid = fork();
    if (pid < 0)
        return err_make(err, errno, "fork");
    if (pid == 0)
        child_main(&c);
    /* The child's ends are its own now: our copies would hold EOF off. */
    close_and_reset(&sync_w);
    close_and_reset(&start_r);
    close_and_reset(&c_in);
    close_and_reset(&c_out);
    close_and_reset(&c_err);
    close_and_reset(&slave);
    if (sync_wait(sync_r, hold, err) < 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return -1;
    }
    pr->pid = pid;
    pr->terminal = p->terminal;
    if (p->terminal) {
        pr->out_fd[0] = steal_fd(&master);
        pr->in_fd = steal_fd(&in_dup);
        pr->out_fd[1] = -1;
        pr->out_done[1] = true;
    } else {
        pr->in_fd = steal_fd(&in_w);
        pr->out_fd[0] = steal_fd(&out_r);
        pr->out_fd[1] = steal_fd(&err_r);
    }
    if (hold) {
        pr->start_fd = steal_fd(&start_w);
        pr->sync_fd = steal_fd(&sync_r);
    }
    return 0;
}

int agent_proc_start(struct agent_proc *pr, struct err **err)
{
    if (pr->start_fd < 0)
        return err_make(err, EALREADY, "the process was started already");
    ssize_t n;
    do
        n = write(pr->start_fd, "x", 1);
    while (n < 0 && errno == EINTR);
    int e = errno;
    close_and_reset(&pr->start_fd);
    int r = n == 1 ? sync_wait(pr->sync_fd, false, err)
                   : err_make(err, e == EPIPE ? ESRCH : e, "start the process");
    close_and_reset(&pr->sync_fd);
    return r;
}
