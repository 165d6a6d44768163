/* `cocoon exec` into a VM container: the command asks the monitor to EXEC
 * a process in the guest and then relays its own stdio to it, with the
 * agent's credit flow control, forwarding signals and window sizes. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent/proto.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/terminal.h"
#include "common/util.h"
#include "oci/state.h"
#include "runtime/lifecycle.h"
#include "vm/vm_internal.h"

struct relay {
    int fd;             /* the monitor connection */
    uint32_t proc;
    struct agent_buf in;
    int in_fd;          /* our stdin, -1 once it ended */
    uint64_t in_sent, in_credited;
    bool done;
    int status;
};

static void send_resize(struct relay *r)
{
    struct winsize ws;
    if (ioctl(0, TIOCGWINSZ, &ws) < 0)
        return;
    uint8_t b[AGENT_WINSIZE_SIZE];
    agent_winsize_encode(&(struct agent_winsize){.rows = ws.ws_row, .cols = ws.ws_col}, b);
    agent_send(r->fd, AGENT_RESIZE, r->proc, 0, b, sizeof(b));
}

/* One frame from the monitor about our process. */
static int relay_frame(struct relay *r, const struct agent_hdr *h, const uint8_t *p,
                       struct err **err)
{
    if (h->proc != r->proc)
        return 0;
    switch (h->type) {
    case AGENT_STDOUT:
    case AGENT_STDERR: {
        uint32_t stream = h->type == AGENT_STDOUT ? 1 : 2;
        if (h->len == 0)
            return 0;
        write_all((int)stream, p, h->len); /* a closed stdout only loses output */
        uint8_t b[AGENT_CREDIT_SIZE];
        agent_credit_encode(&(struct agent_credit){.stream = stream, .bytes = h->len}, b);
        return agent_send(r->fd, AGENT_CREDIT, r->proc, 0, b, sizeof(b)) < 0
                   ? err_make(err, errno, "the VM monitor went away")
                   : 0;
    }
    case AGENT_CREDIT: {
        struct agent_credit c;
        if (agent_credit_decode(p, h->len, &c) < 0 || c.stream != AGENT_STREAM_STDIN ||
            r->in_credited + c.bytes > r->in_sent)
            return err_make(err, EPROTO, "bad CREDIT from the VM monitor");
        r->in_credited += c.bytes;
        return 0;
    }
    case AGENT_EXIT: {
        struct agent_exit ex;
        if (agent_exit_decode(p, h->len, &ex) < 0)
            return err_make(err, EPROTO, "bad EXIT from the VM monitor");
        r->status = ex.status;
        r->done = true;
        return 0;
    }
    default:
        return 0; /* replies to forwarded signals */
    }
}

static int relay_stdin(struct relay *r, struct err **err)
{
    uint8_t buf[AGENT_DATA_MAX];
    uint64_t window = AGENT_WINDOW - (r->in_sent - r->in_credited);
    ssize_t n = read(r->in_fd, buf, window < sizeof(buf) ? (size_t)window : sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        r->in_fd = -1;
        n = 0;
    }
    r->in_sent += (uint64_t)n;
    if (agent_send(r->fd, AGENT_STDIN, r->proc, 0, buf, (size_t)n) < 0)
        return err_make(err, errno, "the VM monitor went away");
    return 0;
}

/* Handle every complete frame the buffer holds. */
static int relay_frames(struct relay *r, struct err **err)
{
    struct agent_hdr h;
    const uint8_t *p;
    const char *why = NULL;
    int fr;
    while (!r->done && (fr = agent_buf_frame(&r->in, &h, &p, &why)) == 1) {
        if (relay_frame(r, &h, p, err) < 0)
            return -1;
        agent_buf_consume(&r->in, &h);
    }
    if (!r->done && fr < 0)
        return err_make(err, EPROTO, "the VM monitor sent a bad frame (%s)", why);
    return 0;
}

static int relay_run(struct relay *r, int sfd, struct err **err)
{
    uint32_t seq = 1;
    if (relay_frames(r, err) < 0)
        return -1;
    while (!r->done) {
        struct pollfd pf[3] = {{.fd = r->fd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        int n = 2;
        if (r->in_fd >= 0 && r->in_sent - r->in_credited < AGENT_WINDOW)
            pf[n++] = (struct pollfd){.fd = r->in_fd, .events = POLLIN};
        if (poll(pf, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            return err_make(err, errno, "poll");
        }
        if (pf[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGCHLD)
                    continue;
                if (si.ssi_signo == SIGWINCH) {
                    send_resize(r);
                    continue;
                }
                uint8_t b[AGENT_SIGNAL_SIZE];
                agent_signal_encode(&(struct agent_signal){.signo = si.ssi_signo}, b);
                agent_send(r->fd, AGENT_SIGNAL, r->proc, ++seq, b, sizeof(b));
            }
        }
        if (n > 2 && pf[2].revents && relay_stdin(r, err) < 0)
            return -1;
        if (pf[0].revents) {
            long got = agent_buf_fill(&r->in, r->fd);
            if (got < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (got <= 0)
                return err_make(err, 0, "the container's VM went away before the process ended");
            if (relay_frames(r, err) < 0)
                return -1;
        }
    }
    return 0;
}

/* Ask the monitor to EXEC; r->proc gets the guest process's id. */
static int exec_request(struct relay *r, const struct container_state *st, const char *json,
                        struct err **err)
{
    if (agent_send(r->fd, AGENT_EXEC, 0, 1, json, strlen(json)) < 0)
        return err_make(err, errno, "exec in container `%s`", st->id);
    struct agent_hdr h;
    for (;;) {
        const uint8_t *p;
        const char *why = NULL;
        int fr = agent_buf_frame(&r->in, &h, &p, &why);
        if (fr < 0)
            return err_make(err, EPROTO, "the VM monitor sent a bad frame (%s)", why);
        if (fr == 1 && h.type == AGENT_REPLY && h.seq == 1) {
            struct agent_reply rep;
            int bad = agent_reply_decode(p, h.len, &rep);
            if (bad < 0 || rep.error)
                return err_make(err, bad < 0 ? EPROTO : rep.error, "exec in container `%s`: %.*s",
                                st->id, bad < 0 ? 0 : (int)(h.len - AGENT_REPLY_SIZE),
                                (const char *)p + AGENT_REPLY_SIZE);
            r->proc = h.proc;
            agent_buf_consume(&r->in, &h);
            return 0;
        }
        if (fr == 1) {
            agent_buf_consume(&r->in, &h);
            continue;
        }
        struct pollfd pf = {.fd = r->fd, .events = POLLIN};
        if (poll(&pf, 1, 30000) <= 0 || agent_buf_fill(&r->in, r->fd) <= 0)
            return err_make(err, 0, "exec in container `%s`: no answer from its VM", st->id);
    }
}

/* Relay until the guest process ends; *status gets its status. */
static int relay_main(struct relay *r, bool tty, int *status, struct err **err)
{
    sigset_t mask, old;
    lifecycle_forward_mask(&mask);
    sigaddset(&mask, SIGWINCH);
    sigprocmask(SIG_BLOCK, &mask, &old);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    void *saved = NULL;
    if (tty && isatty(0)) {
        terminal_make_raw(0, &saved);
        send_resize(r);
    }
    int ret = sfd < 0 ? err_make(err, errno, "signalfd") : relay_run(r, sfd, err);
    terminal_restore(0, saved);
    if (sfd >= 0)
        close(sfd);
    sigprocmask(SIG_SETMASK, &old, NULL);
    *status = r->status;
    return ret;
}

/* Make the console pty's slave our stdio and controlling terminal. */
static void take_terminal(int slave)
{
    ioctl(slave, TIOCSCTTY, 0);
    for (int i = 0; i < 3; i++)
        dup2(slave, i);
    close(slave);
}

int vmc_exec(int dirfd, const struct container_state *st, const struct vmc_exec_opts *o,
             int *status, struct err **err)
{
    if (o->tty && o->detach && !o->console_socket)
        return err_input(err, "exec: --tty with --detach needs --console-socket");
    cleanup_close int fd = vmc_ctl_connect(dirfd, err);
    if (fd < 0)
        return err_wrap(err, "exec in container `%s`", st->id);
    cleanup_close int sock = -1;
    if (o->tty && o->console_socket) {
        sock = unix_connect(o->console_socket, err);
        if (sock < 0)
            return err_wrap(err, "--console-socket");
    }
    struct relay r = {.fd = fd, .in_fd = 0};
    int ret = exec_request(&r, st, o->process_json, err);
    int slave = -1;
    if (ret == 0 && sock >= 0) {
        slave = vmc_console_pty(sock, o->rows, o->cols, err);
        ret = slave < 0 ? -1 : 0;
    }
    if (sock >= 0)
        close_and_reset(&sock); /* the engine has its master: done with the socket */
    if (ret < 0) {
        agent_buf_free(&r.in);
        return -1;
    }
    /* The process runs: others may act on the container while we relay (a
     * detached relay shares this open file, and with it the lock). */
    state_dir_unlock(dirfd);
    if (!o->detach) {
        if (slave >= 0) {
            setsid(); /* fails if we lead a group already: the pty is then just our stdio */
            take_terminal(slave);
        }
        if (o->pid_file && lifecycle_write_pid_file(o->pid_file, getpid(), err) < 0)
            ret = -1;
        else
            ret = relay_main(&r, o->tty, status, err);
        agent_buf_free(&r.in);
        return ret;
    }
    /* Detached: a child relays and ends with the guest process's status; an
     * engine (conmon, containerd's shim) waits for it as for runc's. */
    pid_t pid = fork();
    if (pid < 0) {
        agent_buf_free(&r.in);
        if (slave >= 0)
            close(slave);
        return err_make(err, errno, "fork");
    }
    if (pid == 0) {
        setsid();
        if (slave >= 0)
            take_terminal(slave);
        struct err *e = NULL;
        int st_code = 255;
        if (relay_main(&r, o->tty, &st_code, &e) < 0)
            err_free(&e);
        _exit(st_code & 0xff);
    }
    agent_buf_free(&r.in);
    if (slave >= 0)
        close(slave);
    *status = 0;
    if (o->pid_file && lifecycle_write_pid_file(o->pid_file, pid, err) < 0) {
        kill(pid, SIGKILL);
        return -1;
    }
    return 0;
}
