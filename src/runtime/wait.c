/* Waiting for a foreground container process: signal forwarding, pty
 * proxying, reaping. Shared by `run` and `exec`. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"
#include "runtime/lifecycle.h"

static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH,
                                SIGCONT, SIGALRM, SIGPIPE};

/* Copy what is readable on `from` to `to`; returns false on EOF or error. */
static bool pump(int from, int to)
{
    char buf[8192];
    ssize_t n = read(from, buf, sizeof(buf));
    if (n <= 0)
        return n < 0 && (errno == EINTR || errno == EAGAIN);
    return write_all(to, buf, (size_t)n) == 0;
}

static void copy_winsize(int from, int to)
{
    struct winsize ws;
    if (ioctl(from, TIOCGWINSZ, &ws) == 0)
        ioctl(to, TIOCSWINSZ, &ws);
}

int lifecycle_wait(pid_t pid, int sfd, int master, int *status, struct err **err)
{
    bool in_open = master >= 0, out_open = master >= 0;
    for (;;) {
        struct pollfd fds[3] = {{.fd = sfd, .events = POLLIN},
                                {.fd = out_open ? master : -1, .events = POLLIN},
                                {.fd = in_open ? 0 : -1, .events = POLLIN}};
        int r = poll(fds, 3, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return err_make(err, errno, "poll");
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR))
            out_open = pump(master, 1);
        if (fds[2].revents & (POLLIN | POLLHUP | POLLERR))
            in_open = pump(0, master);
        if (!(fds[0].revents & POLLIN))
            continue;
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof(si)) != sizeof(si))
            continue;
        if ((int)si.ssi_signo == SIGWINCH && master >= 0) {
            copy_winsize(0, master);
            continue;
        }
        if ((int)si.ssi_signo != SIGCHLD) {
            kill(pid, (int)si.ssi_signo);
            continue;
        }
        /* Reap everything (we are a subreaper); stop when the init is gone. */
        int ws;
        pid_t w;
        while ((w = waitpid(-1, &ws, WNOHANG)) > 0) {
            if (w != pid)
                continue;
            while (out_open && master >= 0 && pump(master, 1))
                ;
            *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
            return 0;
        }
    }
}

void lifecycle_forward_mask(sigset_t *mask)
{
    sigemptyset(mask);
    sigaddset(mask, SIGCHLD);
    for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
        sigaddset(mask, forwarded[i]);
}

void lifecycle_copy_winsize(int from, int to)
{
    copy_winsize(from, to);
}
