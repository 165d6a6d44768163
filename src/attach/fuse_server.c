/* The --fuse server, host side: cocoon's FUSE passthrough server (src/fs)
 * serving the tools directory, in a process of its own that stays in the
 * host's namespaces and cgroup (the container never sees it: not in its pid
 * namespace, not in its cgroup). It gets the /dev/fuse fd the session child
 * mounts, waits for that mount (reads of /dev/fuse fail before it), and
 * serves until the connection ends. It holds the only /dev/fuse fd once the
 * mount is made, so killing it aborts the connection; attach kills it when
 * the command ends, and it dies with attach (PR_SET_PDEATHSIG). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach/internal.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/proc.h"
#include "common/util.h"
#include "fs/fs.h"

#define FUSE_MAJOR 10
#define FUSE_MINOR 229

/* Keep only fds `keep` (moved to 3, 4, ...) and stdio on /dev/null: the
 * server must not hold the container's state lock, pidfd or the pty. */
static void keep_fds(int *keep, int n)
{
    int tmp[8];
    for (int i = 0; i < n; i++)
        tmp[i] = fcntl(keep[i], F_DUPFD_CLOEXEC, 3 + n);
    for (int i = 0; i < n; i++) {
        if (tmp[i] < 0 || dup3(tmp[i], 3 + i, O_CLOEXEC) < 0)
            _exit(1);
        keep[i] = 3 + i;
    }
    close_range(3 + (unsigned)n, ~0U, 0);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    for (int fd = 0; fd < 3; fd++) {
        if (null >= 0)
            dup2(null, fd);
        else
            close(fd);
    }
    if (null > 2)
        close(null);
}

static __attribute__((noreturn)) void server_main(int dev, int tools, int ready, int errw,
                                                  pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent)
        _exit(1);
    setsid(); /* no signals from the caller's terminal */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int keep[] = {dev, tools, ready, errw};
    keep_fds(keep, 4);
    dev = keep[0];
    tools = keep[1];
    ready = keep[2];
    errw = keep[3];
    char c;
    ssize_t n;
    do
        n = read(ready, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1)
        _exit(0); /* the session ended before mounting */
    close(ready);
    struct fs_options o; /* the session child makes the mount (flags there) */
    fs_options_default(&o);
    struct err *e = NULL;
    if (fs_serve_fd(dev, tools, &o, &e) < 0) {
        if (write(errw, e->msg, strlen(e->msg)) < 0) {
            /* attach is gone: nobody to tell */
        }
        _exit(1);
    }
    _exit(0);
}

int attach_fuse_start(int toolsfd, const char *tools_path, struct attach_fuse *f,
                      struct err **err)
{
    *f = (struct attach_fuse){.pidfd = -1, .pid = -1, .dev = -1, .ready = -1, .errfd = -1};
    f->dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (f->dev < 0)
        return err_make(err, errno, "--fuse: FUSE is not available here: open /dev/fuse");
    struct stat st;
    if (fstat(f->dev, &st) < 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != FUSE_MAJOR ||
        minor(st.st_rdev) != FUSE_MINOR)
        return err_make(err, 0, "--fuse: FUSE is not available here: /dev/fuse is not the FUSE "
                                "device (10:229)");
    int rp[2], ep[2];
    if (pipe2(rp, O_CLOEXEC) < 0)
        return err_make(err, errno, "pipe");
    if (pipe2(ep, O_CLOEXEC | O_NONBLOCK) < 0) {
        int e = errno;
        close(rp[0]);
        close(rp[1]);
        return err_make(err, e, "pipe");
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        server_main(f->dev, toolsfd, rp[0], ep[1], parent);
    int e = errno;
    close(rp[0]);
    close(ep[1]);
    f->ready = rp[1];
    f->errfd = ep[0];
    if (pid < 0)
        return err_make(err, e, "--fuse: start the FUSE server for `%s`", tools_path);
    f->pid = pid;
    f->pidfd = proc_pidfd_open(pid); /* our child, not reaped yet: it is ours */
    if (f->pidfd < 0) {
        e = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        f->pid = -1;
        return err_make(err, e, "--fuse: pidfd of the FUSE server");
    }
    return 0;
}

void attach_fuse_handed(struct attach_fuse *f)
{
    close_and_reset(&f->dev);
    close_and_reset(&f->ready);
}

void attach_fuse_stop(struct attach_fuse *f, struct err **err)
{
    close_and_reset(&f->dev);
    close_and_reset(&f->ready);
    if (f->pidfd >= 0) {
        /* Reaped already if it died while the command ran (lifecycle_wait
         * reaps every child): the pidfd then names no process. */
        proc_pidfd_signal(f->pidfd, SIGKILL);
        siginfo_t si;
        while (waitid(P_PIDFD, (id_t)f->pidfd, &si, WEXITED) < 0 && errno == EINTR)
            ;
        close_and_reset(&f->pidfd);
    }
    if (f->errfd >= 0 && err && *err) {
        char msg[1024];
        ssize_t n = read(f->errfd, msg, sizeof(msg) - 1);
        if (n > 0) {
            msg[n] = '\0';
            cleanup_free char *was = xstrdup((*err)->msg);
            err_free(err);
            err_make(err, 0, "%s (the FUSE server failed: %s)", was, msg);
        }
    }
    close_and_reset(&f->errfd);
}
