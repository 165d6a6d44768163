/* The agent's one loop: poll the host channel, the processes' stdio and a
 * signalfd for SIGCHLD; turn frames from the host into processes, signals
 * and stdin, and the processes' output and ends into frames, with the
 * protocol's credit-based flow control both ways (proto.h). */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/request.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/caps.h"
#include "oci/config.h"

#define REPLY_MSG_MAX 1024      /* well below what a REPLY frame may carry */
#define OUT_HIGH (256u << 10)   /* host backlog at which process output pauses */
#define SETTLE_MS 10000         /* after init's end is reported: wait for SHUTDOWN */
#define WIND_DOWN_MS 30000      /* after init's end: power off at the latest */
#define FLUSH_MS 2000           /* last frames before power off */
#define ROUND_READS 16          /* channel reads per round, so nothing starves */
#define IDLE_BUF (64u << 10)    /* frame buffers larger than this are freed when empty */
#define TRIM_IDLE_MS 1000       /* idle this long after some work: malloc_trim */

/* Process output on its way into a frame; its pages go back when idle. */
static uint8_t io_buf[AGENT_DATA_MAX] __attribute__((aligned(4096)));

/* ------------------------------------------------------------ processes */

static struct agent_proc *proc_find(struct agent *a, uint32_t id)
{
    for (struct agent_proc *p = a->procs; p; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

static struct agent_proc *proc_by_pid(struct agent *a, pid_t pid)
{
    for (struct agent_proc *p = a->procs; p; p = p->next)
        if (!p->reaped && p->pid == pid)
            return p;
    return NULL;
}

static struct agent_proc *proc_new(struct agent *a, uint32_t id)
{
    struct agent_proc *p = xcalloc(1, sizeof(*p));
    p->id = id;
    p->start_fd = p->sync_fd = p->in_fd = p->out_fd[0] = p->out_fd[1] = -1;
    p->next = a->procs;
    a->procs = p;
    a->n_procs++;
    return p;
}

static void proc_free(struct agent *a, struct agent_proc *p)
{
    for (struct agent_proc **pp = &a->procs; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    close_and_reset(&p->start_fd);
    close_and_reset(&p->sync_fd);
    close_and_reset(&p->in_fd);
    close_and_reset(&p->out_fd[0]);
    close_and_reset(&p->out_fd[1]);
    agent_buf_free(&p->in_q);
    free(p);
    a->n_procs--;
}

/* ------------------------------------------------------------ frames out */

static void put(struct agent *a, uint16_t type, uint32_t proc, uint32_t seq, const void *payload,
                size_t len)
{
    if (a->chan >= 0)
        agent_buf_put_frame(&a->out, type, proc, seq, payload, len);
}

static void reply(struct agent *a, const struct agent_hdr *h, int error, uint32_t pid,
                  const char *msg)
{
    uint8_t buf[AGENT_REPLY_SIZE + REPLY_MSG_MAX];
    struct agent_reply r = {.error = error, .pid = pid};
    agent_reply_encode(&r, buf);
    size_t n = msg ? strlen(msg) : 0;
    if (n > REPLY_MSG_MAX)
        n = REPLY_MSG_MAX;
    if (n)
        memcpy(buf + AGENT_REPLY_SIZE, msg, n);
    put(a, AGENT_REPLY, h->proc, h->seq, buf, AGENT_REPLY_SIZE + n);
}

static void reply_err(struct agent *a, const struct agent_hdr *h, const struct err *e)
{
    int code = e && e->code > 0 && e->code < 4096 ? e->code : EINVAL;
    reply(a, h, code, 0, e && e->msg ? e->msg : "failed");
}

static void send_credit(struct agent *a, uint32_t proc, uint32_t stream, uint32_t bytes)
{
    uint8_t buf[AGENT_CREDIT_SIZE];
    struct agent_credit c = {.stream = stream, .bytes = bytes};
    agent_credit_encode(&c, buf);
    put(a, AGENT_CREDIT, proc, 0, buf, sizeof(buf));
}

static void send_hello(struct agent *a)
{
    uint8_t buf[AGENT_HELLO_SIZE];
    struct agent_hello h = {.magic = AGENT_MAGIC, .version = AGENT_PROTO_VERSION};
    agent_hello_encode(&h, buf);
    put(a, AGENT_HELLO, 0, 0, buf, sizeof(buf));
    a->greeted = true;
}

/* ------------------------------------------------------------ stdio */

/* End a process's stdin: close the pipe; on a pty, type the EOF character
 * (the master stays open for the output). */
static void stdin_close(struct agent_proc *p)
{
    if (p->terminal) {
        struct termios t;
        char eof = tcgetattr(p->in_fd, &t) == 0 && t.c_cc[VEOF] ? (char)t.c_cc[VEOF] : 4;
        if (write(p->in_fd, &eof, 1) < 0) {
            /* Nobody reads it any more: nothing to end. */
        }
    }
    close_and_reset(&p->in_fd);
}

/* Write queued stdin to the process, credit the host for what went out. */
static void pump_in(struct agent *a, struct agent_proc *p)
{
    struct agent_buf *q = &p->in_q;
    size_t before = agent_buf_len(q);
    if (p->in_fd >= 0 && before > 0 && agent_buf_flush(q, p->in_fd) < 0) {
        /* The reader is gone (EPIPE) or the pty hung up: drop the rest. */
        close_and_reset(&p->in_fd);
        agent_buf_free(q);
    }
    size_t done = before - agent_buf_len(q);
    if (agent_buf_len(q) == 0)
        agent_buf_free(q);
    if (done) {
        p->in_uncredited -= (uint32_t)done;
        send_credit(a, p->id, AGENT_STREAM_STDIN, (uint32_t)done);
    }
    if (p->in_end && agent_buf_len(q) == 0 && p->in_fd >= 0)
        stdin_close(p);
}

/* Read a process's output stream s (0 stdout, 1 stderr) into frames, as far
 * as the host's credit and the channel's backlog allow. */
static void pump_out(struct agent *a, struct agent_proc *p, int s)
{
    uint16_t type = s == 0 ? AGENT_STDOUT : AGENT_STDERR;
    for (int i = 0; i < 4 && p->out_fd[s] >= 0; i++) {
        size_t room = AGENT_WINDOW - p->out_unacked[s];
        if (room > AGENT_DATA_MAX)
            room = AGENT_DATA_MAX;
        if (room == 0 || agent_buf_len(&a->out) >= OUT_HIGH)
            return;
        ssize_t n = read(p->out_fd[s], io_buf, room);
        if (n > 0) {
            put(a, type, p->id, 0, io_buf, (size_t)n);
            p->out_unacked[s] += (uint32_t)n;
            if ((size_t)n < room)
                return;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        /* End of file, or EIO from a pty whose last slave is closed. */
        close_and_reset(&p->out_fd[s]);
        p->out_done[s] = true;
        put(a, type, p->id, 0, NULL, 0);
    }
}

/* ------------------------------------------------------------ requests */

/* CREATE (hold: the init, run by START) or EXEC (runs at once). */
static void do_spawn(struct agent *a, const struct agent_hdr *h, const uint8_t *payload,
                     bool create)
{
    cleanup_err struct err *e = NULL;
    struct agent_request rq;
    if (agent_request_parse(payload, h->len, create, &rq, &e) < 0) {
        reply_err(a, h, e);
        return;
    }
    int r = caps_validate(&rq.process->caps, &e);
    if (r == 0 && create)
        r = agent_root_setup(a, &e);
    if (r == 0 && create)
        r = agent_mounts_apply(a, rq.mounts, rq.n_mounts, &e);
    if (r == 0 && create)
        r = agent_root_protect(a, &rq, &e);
    if (r == 0 && create && rq.readonly)
        r = agent_root_readonly(a, &e);
    if (r == 0 && create) {
        /* Every process of the container runs under its filter. */
        a->seccomp = rq.seccomp;
        rq.seccomp = NULL;
    }
    if (r == 0 && rq.hostname && sethostname(rq.hostname, strlen(rq.hostname)) < 0)
        r = err_make(&e, errno, "set the hostname");
    struct agent_proc *p = NULL;
    if (r == 0) {
        p = proc_new(a, h->proc);
        r = agent_proc_spawn(a, p, rq.process, create, rq.attach_tools, &e);
        if (r < 0)
            proc_free(a, p);
    }
    agent_request_free(&rq);
    if (r < 0) {
        reply_err(a, h, e);
    } else {
        a->created |= create;
        reply(a, h, 0, (uint32_t)p->pid, NULL);
    }
    /* The request's JSON is gone: give its memory back. */
    malloc_trim(0);
}

static void on_create(struct agent *a, const struct agent_hdr *h, const uint8_t *payload)
{
    if (h->proc != 0)
        reply(a, h, EINVAL, 0, "CREATE is for process 0 (the container's init)");
    else if (a->created)
        reply(a, h, EEXIST, 0, "the container was created already");
    else
        do_spawn(a, h, payload, true);
}

static void on_start(struct agent *a, const struct agent_hdr *h)
{
    struct agent_proc *p = proc_find(a, 0);
    cleanup_err struct err *e = NULL;
    if (h->proc != 0)
        reply(a, h, EINVAL, 0, "START is for process 0 (the container's init)");
    else if (!a->created)
        reply(a, h, ENOENT, 0, "no container: CREATE it first");
    else if (p == NULL || p->reaped)
        reply(a, h, ESRCH, 0, "the container's init has exited");
    else if (agent_proc_start(p, &e) < 0)
        reply_err(a, h, e);
    else
        reply(a, h, 0, (uint32_t)p->pid, NULL);
}

static void on_exec(struct agent *a, const struct agent_hdr *h, const uint8_t *payload)
{
    if (h->proc == 0)
        reply(a, h, EINVAL, 0, "EXEC needs a process number above 0");
    else if (proc_find(a, h->proc))
        reply(a, h, EEXIST, 0, "that process number is in use");
    else if (!a->created || a->init_exited)
        reply(a, h, ESRCH, 0, "the container is not running");
    else if (a->n_procs >= AGENT_MAX_PROCS)
        reply(a, h, EAGAIN, 0, "too many processes");
    else
        do_spawn(a, h, payload, false);
}

static int on_signal(struct agent *a, const struct agent_hdr *h, const uint8_t *payload,
                     struct err **err)
{
    struct agent_signal s;
    if (agent_signal_decode(payload, h->len, &s) < 0)
        return err_input(err, "malformed SIGNAL from the host");
    if (s.all) {
        /* PID 1 is spared by kill(-1): every process but the agent. */
        int r = kill(-1, (int)s.signo);
        reply(a, h, r < 0 && errno != ESRCH ? errno : 0, 0, NULL);
        return 0;
    }
    struct agent_proc *p = proc_find(a, h->proc);
    if (p == NULL || p->reaped)
        reply(a, h, ESRCH, 0, "no such process");
    else if (kill(p->pid, (int)s.signo) < 0)
        reply(a, h, errno, 0, "kill");
    else
        reply(a, h, 0, (uint32_t)p->pid, NULL);
    return 0;
}

static int on_resize(struct agent *a, const struct agent_hdr *h, const uint8_t *payload,
                     struct err **err)
{
    struct agent_winsize w;
    if (agent_winsize_decode(payload, h->len, &w) < 0)
        return err_input(err, "malformed RESIZE from the host");
    struct agent_proc *p = proc_find(a, h->proc);
    if (p == NULL || !p->terminal)
        return 0;
    int fd = p->out_fd[0] >= 0 ? p->out_fd[0] : p->in_fd;
    struct winsize ws = {.ws_row = w.rows, .ws_col = w.cols};
    if (fd >= 0)
        ioctl(fd, TIOCSWINSZ, &ws);
    return 0;
}

static int on_stdin(struct agent *a, const struct agent_hdr *h, const uint8_t *payload,
                    struct err **err)
{
    struct agent_proc *p = proc_find(a, h->proc);
    if (p == NULL)
        return 0; /* it has ended: its EXIT is on the way */
    if (h->len == 0) {
        /* The end of stdin (again: harmless). */
        p->in_end = true;
        pump_in(a, p);
        return 0;
    }
    if (p->in_end)
        return err_input(err, "STDIN for process %u after the end of its stdin", h->proc);
    if ((uint64_t)p->in_uncredited + h->len > AGENT_WINDOW)
        return err_input(err, "STDIN for process %u beyond its credit (%u bytes uncredited, %u "
                              "more sent)", h->proc, p->in_uncredited, h->len);
    if (p->in_fd < 0) {
        /* Nobody reads it: drop it, and the credit goes straight back. */
        send_credit(a, p->id, AGENT_STREAM_STDIN, h->len);
        return 0;
    }
    p->in_uncredited += h->len;
    agent_buf_put(&p->in_q, payload, h->len);
    pump_in(a, p);
    return 0;
}

static int on_credit(struct agent *a, const struct agent_hdr *h, const uint8_t *payload,
                     struct err **err)
{
    struct agent_credit c;
    if (agent_credit_decode(payload, h->len, &c) < 0)
        return err_input(err, "malformed CREDIT from the host");
    if (c.stream == AGENT_STREAM_STDIN)
        return err_input(err, "CREDIT for a stdin stream from the host");
    struct agent_proc *p = proc_find(a, h->proc);
    if (p == NULL)
        return 0;
    int s = (int)c.stream - 1;
    if (c.bytes > p->out_unacked[s])
        return err_input(err, "CREDIT of %u bytes for process %u, which has %u uncredited",
                         c.bytes, h->proc, p->out_unacked[s]);
    p->out_unacked[s] -= c.bytes;
    return 0;
}

/* One frame from the host: 0, or -1 with *err if it breaks the protocol. */
static int on_frame(struct agent *a, const struct agent_hdr *h, const uint8_t *payload,
                    struct err **err)
{
    switch (h->type) {
    case AGENT_CREATE:
        on_create(a, h, payload);
        return 0;
    case AGENT_START:
        on_start(a, h);
        return 0;
    case AGENT_EXEC:
        on_exec(a, h, payload);
        return 0;
    case AGENT_SIGNAL:
        return on_signal(a, h, payload, err);
    case AGENT_RESIZE:
        return on_resize(a, h, payload, err);
    case AGENT_STDIN:
        return on_stdin(a, h, payload, err);
    case AGENT_CREDIT:
        return on_credit(a, h, payload, err);
    case AGENT_SHUTDOWN:
        reply(a, h, 0, 0, NULL);
        a->shutdown = true;
        return 0;
    default:
        return err_input(err, "%s is not a message the host sends", agent_msg_name(h->type));
    }
}

/* ------------------------------------------------------------ channel */

/* Forget the host connection; a new host starts with fresh credit. */
static void chan_close(struct agent *a)
{
    if (a->chan >= 0)
        close(a->chan);
    a->chan = -1;
    a->greeted = false;
    agent_buf_free(&a->in);
    agent_buf_free(&a->out);
    for (struct agent_proc *p = a->procs; p; p = p->next) {
        p->out_unacked[0] = p->out_unacked[1] = 0;
        p->in_uncredited = 0;
        agent_buf_free(&p->in_q);
    }
}

/* Read and handle what the host sent: 0 go on, 1 the host closed the
 * channel, -1 drop it (*err says why). */
static int chan_read(struct agent *a, struct err **err)
{
    for (int i = 0; i < ROUND_READS && !a->shutdown; i++) {
        long n = agent_buf_fill(&a->in, a->chan);
        if (n < 0)
            return errno == EAGAIN ? 0 : err_make(err, errno, "read from the host");
        if (n == 0)
            return 1;
        struct agent_hdr h;
        const uint8_t *payload;
        const char *why = "?";
        int r = 0;
        while (!a->shutdown && (r = agent_buf_frame(&a->in, &h, &payload, &why)) == 1) {
            if (on_frame(a, &h, payload, err) < 0)
                return -1;
            agent_buf_consume(&a->in, &h);
        }
        if (!a->shutdown && r < 0)
            return err_input(err, "malformed frame from the host: %s", why);
        if (agent_buf_len(&a->in) == 0 && a->in.cap > IDLE_BUF)
            agent_buf_free(&a->in);
    }
    return 0;
}

/* Write what is queued for the host; 0, or -1 (*err) if the channel broke. */
static int chan_write(struct agent *a, struct err **err)
{
    if (a->chan < 0 || agent_buf_len(&a->out) == 0)
        return 0;
    if (agent_buf_flush(&a->out, a->chan) < 0)
        return err_make(err, errno, "write to the host");
    if (agent_buf_len(&a->out) == 0 && a->out.cap > IDLE_BUF)
        agent_buf_free(&a->out);
    return 0;
}

/* Before power off: let the last frames (REPLY, EXIT) out, for a while. */
static void chan_drain(struct agent *a)
{
    int64_t end = mono_ms() + FLUSH_MS;
    while (a->chan >= 0 && agent_buf_len(&a->out) > 0) {
        if (agent_buf_flush(&a->out, a->chan) <= 0)
            break;
        int64_t left = end - mono_ms();
        if (left <= 0)
            break;
        struct pollfd pfd = {.fd = a->chan, .events = POLLOUT};
        poll(&pfd, 1, (int)left);
    }
}

/* ------------------------------------------------------------ the loop */

/* Reap every child (PID 1's duty) and note the ends of ours. */
static void reap(struct agent *a)
{
    struct signalfd_siginfo si;
    while (read(a->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        ;
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        struct agent_proc *p = proc_by_pid(a, pid);
        if (p == NULL)
            continue;
        p->reaped = true;
        p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        close_and_reset(&p->start_fd);
        close_and_reset(&p->sync_fd);
        if (p->id == 0 && !a->init_exited) {
            /* The container ends with its init: nothing else may outlive it. */
            a->init_exited = true;
            a->init_exit_ms = mono_ms();
            kill(-1, SIGKILL);
        }
    }
}

/* EXIT for every process that has exited and whose output is all sent. */
static void report(struct agent *a)
{
    if (a->chan < 0)
        return;
    for (struct agent_proc *p = a->procs, *next; p; p = next) {
        next = p->next;
        if (!p->reaped || !p->out_done[0] || !p->out_done[1])
            continue;
        uint8_t buf[AGENT_EXIT_SIZE];
        struct agent_exit ex = {.status = p->status};
        agent_exit_encode(&ex, buf);
        put(a, AGENT_EXIT, p->id, 0, buf, sizeof(buf));
        proc_free(a, p);
    }
    if (a->init_exited && a->procs == NULL && a->settle_ms == 0)
        a->settle_ms = mono_ms() + SETTLE_MS;
}

static void poll_add(struct agent *a, unsigned *n, int fd, short events, struct agent_proc *p)
{
    a->pfds[*n] = (struct pollfd){.fd = fd, .events = events};
    a->pfd_proc[*n] = p;
    (*n)++;
}

/* The poll set of this round: [0] signals, [1] channel or listener, then
 * the processes' streams that may move. */
static unsigned build_poll(struct agent *a)
{
    unsigned need = 2 + 3 * a->n_procs;
    if (need > a->pfd_cap) {
        a->pfd_cap = need + 16;
        a->pfds = xrealloc(a->pfds, a->pfd_cap * sizeof(*a->pfds));
        a->pfd_proc = xrealloc(a->pfd_proc, a->pfd_cap * sizeof(*a->pfd_proc));
    }
    unsigned n = 0;
    poll_add(a, &n, a->sig_fd, POLLIN, NULL);
    if (a->chan >= 0)
        poll_add(a, &n, a->chan, (short)(POLLIN | (agent_buf_len(&a->out) ? POLLOUT : 0)), NULL);
    else
        poll_add(a, &n, a->listen_fd, POLLIN, NULL);
    bool out_ok = a->chan >= 0 && agent_buf_len(&a->out) < OUT_HIGH;
    for (struct agent_proc *p = a->procs; p; p = p->next) {
        for (int s = 0; s < 2; s++)
            if (out_ok && p->out_fd[s] >= 0 && p->out_unacked[s] < AGENT_WINDOW)
                poll_add(a, &n, p->out_fd[s], POLLIN, p);
        if (p->in_fd >= 0 && agent_buf_len(&p->in_q) > 0)
            poll_add(a, &n, p->in_fd, POLLOUT, p);
    }
    return n;
}

static void accept_host(struct agent *a)
{
    int fd = accept4(a->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    a->chan = fd;
    send_hello(a);
}

/* The connection ended: 0 power off, 1 go on (a vsock host may come back). */
static int chan_lost(struct agent *a)
{
    chan_close(a);
    return a->listen_fd >= 0 && !a->init_exited;
}

int agent_serve(struct agent *a, struct err **err)
{
    if (a->chan >= 0 && !a->greeted)
        send_hello(a);
    for (;;) {
        if (a->shutdown) {
            chan_drain(a);
            return 0;
        }
        int timeout = -1;
        if (a->init_exited) {
            int64_t now = mono_ms(), end = a->init_exit_ms + WIND_DOWN_MS;
            if (a->settle_ms && a->settle_ms < end)
                end = a->settle_ms;
            if (now >= end || a->chan < 0) {
                chan_drain(a);
                return 0;
            }
            timeout = (int)(end - now);
        }
        if (a->trim_due && (timeout < 0 || timeout > TRIM_IDLE_MS))
            timeout = TRIM_IDLE_MS;
        unsigned n = build_poll(a);
        int r = poll(a->pfds, n, timeout);
        if (r < 0 && errno != EINTR)
            return err_make(err, errno, "poll");
        if (r == 0 && a->trim_due) {
            /* Idle after some work: give the buffers and the heap's free
             * pages back. */
            if (agent_buf_len(&a->in) == 0)
                agent_buf_free(&a->in);
            if (agent_buf_len(&a->out) == 0)
                agent_buf_free(&a->out);
            malloc_trim(0);
            madvise(io_buf, sizeof(io_buf), MADV_DONTNEED);
            a->trim_due = false;
        }
        if (r <= 0)
            continue;
        a->trim_due = true;
        if (a->pfds[0].revents)
            reap(a);
        for (unsigned i = 2; i < n; i++) {
            struct agent_proc *p = a->pfd_proc[i];
            if (a->pfds[i].revents == 0)
                continue;
            int fd = a->pfds[i].fd;
            if (fd == p->in_fd)
                pump_in(a, p);
            else if (fd == p->out_fd[0] || fd == p->out_fd[1])
                pump_out(a, p, fd == p->out_fd[0] ? 0 : 1);
        }
        if (a->chan < 0) {
            if (a->pfds[1].revents)
                accept_host(a);
            continue;
        }
        if (a->pfds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            int c = chan_read(a, err);
            if (c < 0) {
                chan_close(a);
                return a->listen_fd >= 0 ? 1 : -1;
            }
            if (c > 0) {
                if (chan_lost(a))
                    continue;
                return 0;
            }
        }
        report(a);
        if (chan_write(a, err) < 0) {
            chan_close(a);
            return a->listen_fd >= 0 ? 1 : -1;
        }
    }
}
