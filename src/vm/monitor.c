/* The monitor of a VM container: the process `create` leaves behind as the
 * container's pid. One poll loop, no threads: the agent channel, the
 * caller's stdio (the init's stdin/stdout/stderr, with the agent's credit
 * flow control), the control socket the other commands connect to, and
 * signals (forwarded into the guest; SIGCHLD when the VM is down). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/proto.h"
#include "common/err.h"
#include "common/proc.h"
#include "common/util.h"
#include "vm/vm_internal.h"

#define MAX_CONNS 32
#define MAX_PENDING 64
#define SHUTDOWN_GRACE_MS 10000
#define OUT_CHUNK 4096 /* POLLOUT on a pipe promises PIPE_BUF bytes */

/* A command connected to the control socket. */
struct conn {
    int fd;
    struct agent_buf in, out;
};

/* A request forwarded to the agent, waiting for its REPLY. */
struct pending {
    bool used;
    uint32_t seq;        /* ours, toward the agent */
    uint32_t client_seq; /* the client's */
    uint32_t proc;
    bool exec;           /* an EXEC: its route goes if the agent refuses it */
    struct conn *c;      /* NULL: the monitor's own (CREATE, SHUTDOWN) */
};

/* A guest process started by EXEC: whose connection gets its frames. */
struct route {
    uint32_t proc;
    struct conn *c; /* NULL once the client went away: output is discarded */
};

struct mon {
    const struct vmc_monitor_opts *o;
    int chan;
    struct agent_buf cin, cout;
    struct vmc_started vm;     /* the hypervisor; helpers[i] is -1 once reaped */
    bool child_gone;
    int sfd, lfd;
    struct conn conns[MAX_CONNS];
    struct pending pend[MAX_PENDING];
    struct route *routes;
    size_t n_routes;
    uint32_t next_seq, next_proc, create_seq;
    /* the init's stdio on the monitor's side */
    int in_fd;                 /* -1 once stdin ended */
    int out_fd[3];             /* [1] stdout, [2] stderr */
    struct agent_buf obuf[3];  /* output waiting for its fd */
    uint64_t in_sent, in_credited;
    bool hello, ready, exited, shutting_down;
    int status;
    long long deadline;        /* ms on CLOCK_MONOTONIC, or 0 */
};

/* Append a line to vm.log in the state directory. */
static void mon_log(struct mon *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mon_log(struct mon *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dprintf(m->o->launch->log_fd, "cocoon monitor: ");
    vdprintf(m->o->launch->log_fd, fmt, ap);
    dprintf(m->o->launch->log_fd, "\n");
    va_end(ap);
}

/* Tell `create` how it went (once). */
static void ready_say(struct mon *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ready_say(struct mon *m, const char *fmt, ...)
{
    if (m->o->ready_fd < 0 || m->ready)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 1)
        n = sizeof(buf) - 1;
    write_all(m->o->ready_fd, buf, (size_t)n);
    close(m->o->ready_fd);
    m->ready = true;
}

static void to_agent(struct mon *m, uint16_t type, uint32_t proc, uint32_t seq, const void *p,
                     size_t len)
{
    agent_buf_put_frame(&m->cout, type, proc, seq, p, len);
}

static void send_credit(struct mon *m, uint32_t proc, uint32_t stream, uint32_t bytes)
{
    uint8_t b[AGENT_CREDIT_SIZE];
    agent_credit_encode(&(struct agent_credit){.stream = stream, .bytes = bytes}, b);
    to_agent(m, AGENT_CREDIT, proc, 0, b, sizeof(b));
}

static struct pending *pend_add(struct mon *m, struct conn *c, uint32_t client_seq,
                                uint32_t proc)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (!m->pend[i].used) {
            m->pend[i] = (struct pending){.used = true, .seq = ++m->next_seq,
                                          .client_seq = client_seq, .proc = proc, .c = c};
            return &m->pend[i];
        }
    return NULL;
}

static struct route *route_find(struct mon *m, uint32_t proc)
{
    for (size_t i = 0; i < m->n_routes; i++)
        if (m->routes[i].proc == proc)
            return &m->routes[i];
    return NULL;
}

static void route_drop(struct mon *m, uint32_t proc)
{
    struct route *r = route_find(m, proc);
    if (r)
        *r = m->routes[--m->n_routes];
}

static void conn_close(struct mon *m, struct conn *c)
{
    close(c->fd);
    c->fd = -1;
    agent_buf_free(&c->in);
    agent_buf_free(&c->out);
    for (int i = 0; i < MAX_PENDING; i++)
        if (m->pend[i].used && m->pend[i].c == c)
            m->pend[i].c = NULL;
    /* Its processes keep running (a detached exec); their stdin ends and
     * their output is discarded from now on. */
    for (size_t i = 0; i < m->n_routes; i++)
        if (m->routes[i].c == c) {
            m->routes[i].c = NULL;
            to_agent(m, AGENT_STDIN, m->routes[i].proc, 0, NULL, 0);
        }
}

/* Start shutting the VM down: ask the agent, then wait a bounded time. */
static void begin_shutdown(struct mon *m)
{
    if (m->shutting_down)
        return;
    m->shutting_down = true;
    struct pending *p = pend_add(m, NULL, 0, 0);
    to_agent(m, AGENT_SHUTDOWN, 0, p ? p->seq : 0, NULL, 0);
    m->deadline = mono_ms() + SHUTDOWN_GRACE_MS;
}

/* A frame from a command on the control socket. */
static int conn_frame(struct mon *m, struct conn *c, const struct agent_hdr *h,
                      const uint8_t *p)
{
    struct route *r;
    struct pending *pe;
    switch (h->type) {
    case AGENT_START:
    case AGENT_SIGNAL:
        if (h->proc != 0 && route_find(m, h->proc) == NULL)
            return -1;
        if ((pe = pend_add(m, c, h->seq, h->proc)) == NULL)
            return -1;
        to_agent(m, (uint16_t)h->type, h->proc, pe->seq, p, h->len);
        return 0;
    case AGENT_EXEC: {
        if (m->exited || m->shutting_down)
            return -1;
        uint32_t proc = ++m->next_proc;
        if ((pe = pend_add(m, c, h->seq, proc)) == NULL)
            return -1;
        pe->exec = true;
        m->routes = xrealloc(m->routes, (m->n_routes + 1) * sizeof(*m->routes));
        m->routes[m->n_routes++] = (struct route){.proc = proc, .c = c};
        to_agent(m, AGENT_EXEC, proc, pe->seq, p, h->len);
        return 0;
    }
    case AGENT_STDIN:
    case AGENT_CREDIT:
    case AGENT_RESIZE:
        if ((r = route_find(m, h->proc)) == NULL)
            return h->proc && h->proc <= m->next_proc ? 0 : -1; /* it just ended */
        if (r->c != c)
            return -1;
        to_agent(m, (uint16_t)h->type, h->proc, 0, p, h->len);
        return 0;
    case AGENT_SHUTDOWN:
        begin_shutdown(m);
        return 0;
    default:
        return -1;
    }
}

/* The init's output from the agent: queue it for our stdout/stderr. */
static void init_output(struct mon *m, unsigned stream, const uint8_t *p, uint32_t len)
{
    if (m->out_fd[stream] < 0) {
        if (len)
            send_credit(m, 0, stream, len); /* nobody to give it to */
        return;
    }
    agent_buf_put(&m->obuf[stream], p, len);
}

/* A frame from the agent. Returns -1 if the agent broke the protocol. */
static int agent_frame(struct mon *m, const struct agent_hdr *h, const uint8_t *p)
{
    if (!m->hello) {
        struct agent_hello hello;
        if (h->type != AGENT_HELLO || agent_hello_decode(p, h->len, &hello) < 0)
            return -1;
        if (hello.version != AGENT_PROTO_VERSION) {
            ready_say(m, "1 the guest agent speaks protocol version %u, cocoon %u",
                      hello.version, AGENT_PROTO_VERSION);
            return -1;
        }
        m->hello = true;
        struct pending *pe = pend_add(m, NULL, 0, 0);
        m->create_seq = pe->seq;
        to_agent(m, AGENT_CREATE, 0, pe->seq, m->o->create_json, strlen(m->o->create_json));
        return 0;
    }
    struct route *r = h->proc ? route_find(m, h->proc) : NULL;
    if (h->proc && r == NULL && h->type != AGENT_REPLY)
        return 0; /* a process we no longer track: drop */
    switch (h->type) {
    case AGENT_REPLY: {
        struct agent_reply rep;
        if (agent_reply_decode(p, h->len, &rep) < 0)
            return -1;
        for (int i = 0; i < MAX_PENDING; i++) {
            struct pending *pe = &m->pend[i];
            if (!pe->used || pe->seq != h->seq)
                continue;
            pe->used = false;
            if (pe->seq == m->create_seq) {
                if (rep.error)
                    ready_say(m, "1 %.*s", (int)(h->len - AGENT_REPLY_SIZE),
                              (const char *)p + AGENT_REPLY_SIZE);
                else
                    ready_say(m, "0 %u", rep.pid);
                if (!rep.error)
                    m->deadline = 0;
                if (rep.error)
                    begin_shutdown(m);
            } else if (pe->c) {
                /* Only a refused EXEC ends a route: a refused SIGNAL to a
                 * process that has exited but not yet reported its EXIT
                 * must not lose that EXIT. */
                if (rep.error && pe->exec)
                    route_drop(m, pe->proc);
                agent_buf_put_frame(&pe->c->out, AGENT_REPLY, pe->proc, pe->client_seq, p,
                                    h->len);
            }
            return 0;
        }
        return 0;
    }
    case AGENT_STDOUT:
    case AGENT_STDERR:
        if (h->proc == 0) {
            init_output(m, h->type == AGENT_STDOUT ? 1 : 2, p, h->len);
        } else if (r->c) {
            agent_buf_put_frame(&r->c->out, (uint16_t)h->type, h->proc, 0, p, h->len);
        } else if (h->len) {
            send_credit(m, h->proc, h->type == AGENT_STDOUT ? 1 : 2, h->len);
        }
        return 0;
    case AGENT_CREDIT: {
        struct agent_credit cr;
        if (agent_credit_decode(p, h->len, &cr) < 0)
            return -1;
        if (h->proc == 0) {
            if (cr.stream != AGENT_STREAM_STDIN || m->in_credited + cr.bytes > m->in_sent)
                return -1;
            m->in_credited += cr.bytes;
        } else if (r->c) {
            agent_buf_put_frame(&r->c->out, AGENT_CREDIT, h->proc, 0, p, h->len);
        }
        return 0;
    }
    case AGENT_EXIT: {
        struct agent_exit ex;
        if (agent_exit_decode(p, h->len, &ex) < 0)
            return -1;
        if (h->proc == 0) {
            m->exited = true;
            m->status = ex.status;
            begin_shutdown(m);
        } else {
            if (r->c)
                agent_buf_put_frame(&r->c->out, AGENT_EXIT, h->proc, 0, p, h->len);
            route_drop(m, h->proc);
        }
        return 0;
    }
    default:
        return -1;
    }
}

/* Read our stdin into a STDIN frame, as far as the agent's credit goes. */
static void pump_stdin(struct mon *m)
{
    uint64_t window = AGENT_WINDOW - (m->in_sent - m->in_credited);
    uint8_t buf[AGENT_DATA_MAX];
    size_t want = window < sizeof(buf) ? (size_t)window : sizeof(buf);
    ssize_t n = read(m->in_fd, buf, want);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        to_agent(m, AGENT_STDIN, 0, 0, NULL, 0);
        if (m->in_fd != m->out_fd[1])
            close(m->in_fd);
        m->in_fd = -1;
        return;
    }
    m->in_sent += (uint64_t)n;
    to_agent(m, AGENT_STDIN, 0, 0, buf, (size_t)n);
}

/* Write queued init output to its fd; the agent gets the bytes back as credit. */
static void pump_out(struct mon *m, unsigned stream)
{
    struct agent_buf *b = &m->obuf[stream];
    size_t len = agent_buf_len(b);
    if (len > OUT_CHUNK)
        len = OUT_CHUNK;
    ssize_t n = write(m->out_fd[stream], b->data + b->start, len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n < 0) {
        /* The reader went away: drop what is queued, keep crediting. */
        m->out_fd[stream] = -1;
        n = (ssize_t)agent_buf_len(b);
    }
    b->start += (size_t)n;
    if (b->start == b->end)
        b->start = b->end = 0;
    send_credit(m, 0, stream, (uint32_t)n);
}

/* The window size of the init's terminal changed: tell the guest. */
static void send_winsize(struct mon *m)
{
    int fd = m->o->console_fd >= 0 ? m->o->console_fd : 0;
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) < 0)
        return;
    uint8_t b[AGENT_WINSIZE_SIZE];
    agent_winsize_encode(&(struct agent_winsize){.rows = ws.ws_row, .cols = ws.ws_col}, b);
    to_agent(m, AGENT_RESIZE, 0, 0, b, sizeof(b));
}

static void on_signal(struct mon *m)
{
    struct signalfd_siginfo si;
    while (read(m->sfd, &si, sizeof(si)) == sizeof(si)) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGCHLD) {
            int st;
            pid_t pid;
            while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
                for (unsigned i = 0; i < m->vm.n_helpers; i++)
                    if (m->vm.helpers[i] == pid)
                        m->vm.helpers[i] = -1;
                if (pid == m->vm.child) {
                    m->child_gone = true;
                    if (!m->exited)
                        mon_log(m, "the VM ended before the container's process (status %d)",
                                WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
                }
            }
        } else if (sig == SIGWINCH) {
            send_winsize(m);
        } else if (m->hello && !m->shutting_down) {
            uint8_t b[AGENT_SIGNAL_SIZE];
            agent_signal_encode(&(struct agent_signal){.signo = (uint32_t)sig}, b);
            struct pending *pe = pend_add(m, NULL, 0, 0);
            to_agent(m, AGENT_SIGNAL, 0, pe ? pe->seq : 0, b, sizeof(b));
        }
    }
}

static int ctl_listen(int dirfd)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d/" VMC_CTL_SOCK, dirfd);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlinkat(dirfd, VMC_CTL_SOCK, 0);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void ctl_accept(struct mon *m)
{
    int fd = accept4(m->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    for (int i = 0; i < MAX_CONNS; i++)
        if (m->conns[i].fd < 0) {
            m->conns[i].fd = fd;
            return;
        }
    close(fd); /* too many at once: the command sees EOF */
}

/* Serve one readable control connection. */
static void conn_read(struct mon *m, struct conn *c)
{
    long n = agent_buf_fill(&c->in, c->fd);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        conn_close(m, c);
        return;
    }
    struct agent_hdr h;
    const uint8_t *p;
    const char *why = NULL;
    int r;
    while ((r = agent_buf_frame(&c->in, &h, &p, &why)) == 1) {
        if (conn_frame(m, c, &h, p) < 0) {
            conn_close(m, c);
            return;
        }
        agent_buf_consume(&c->in, &h);
    }
    if (r < 0)
        conn_close(m, c);
}

/* Serve the readable agent channel; false if it ended or broke the rules. */
static bool chan_read(struct mon *m)
{
    long n = agent_buf_fill(&m->cin, m->chan);
    if (n < 0 && errno == EAGAIN)
        return true;
    if (n <= 0)
        return false;
    struct agent_hdr h;
    const uint8_t *p;
    const char *why = "bad frame";
    int r;
    while ((r = agent_buf_frame(&m->cin, &h, &p, &why)) == 1) {
        if (agent_frame(m, &h, p) < 0) {
            mon_log(m, "the guest agent sent a bad %s frame: channel closed",
                    agent_msg_name(h.type));
            return false;
        }
        agent_buf_consume(&m->cin, &h);
    }
    if (r < 0) {
        mon_log(m, "the guest agent broke the protocol (%s): channel closed", why);
        return false;
    }
    return true;
}

static bool outputs_pending(const struct mon *m)
{
    return (m->out_fd[1] >= 0 && agent_buf_len(&m->obuf[1])) ||
           (m->out_fd[2] >= 0 && agent_buf_len(&m->obuf[2]));
}

int vmc_monitor(const struct vmc_monitor_opts *o)
{
    struct mon m = {.o = o, .chan = -1, .in_fd = -1, .out_fd = {-1, -1, -1}, .status = 255};
    struct err *e = NULL;
    for (int i = 0; i < MAX_CONNS; i++)
        m.conns[i].fd = -1;
    sigset_t mask;
    sigemptyset(&mask);
    int fwd[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
    for (size_t i = 0; i < sizeof(fwd) / sizeof(fwd[0]); i++)
        sigaddset(&mask, fwd[i]);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    m.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    m.lfd = ctl_listen(o->dirfd);
    if (m.sfd < 0 || m.lfd < 0) {
        ready_say(&m, "1 monitor set-up: %s", strerror(errno));
        return 255;
    }
    if (vmc_launch(o->launch, &m.vm, &e) < 0) {
        ready_say(&m, "1 %s", e->msg);
        err_free(&e);
        unlinkat(o->dirfd, VMC_CTL_SOCK, 0);
        return 255;
    }
    m.chan = m.vm.channel;
    fcntl(m.chan, F_SETFL, fcntl(m.chan, F_GETFL) | O_NONBLOCK);
    if (o->console_fd >= 0) {
        m.in_fd = m.out_fd[1] = m.out_fd[2] = o->console_fd;
    } else {
        m.in_fd = 0;
        m.out_fd[1] = 1;
        m.out_fd[2] = 2;
    }
    m.deadline = mono_ms() + (long long)o->hello_timeout_ms;
    bool chan_ok = true;
    for (;;) {
        if (!m.ready && m.child_gone) {
            ready_say(&m, "1 the VM stopped before its agent answered (see %s/vm.log)",
                      o->launch->state_dir);
            break;
        }
        if (m.child_gone && !outputs_pending(&m))
            break;
        if (m.deadline && mono_ms() >= m.deadline) {
            if (!m.ready)
                ready_say(&m, "1 the guest agent did not answer within %u ms (see %s/vm.log)",
                          o->hello_timeout_ms, o->launch->state_dir);
            if (!m.child_gone) {
                mon_log(&m, "stopping the VM (no answer)");
                kill(m.vm.child, SIGKILL);
            }
            m.deadline = 0;
        }
        if (m.chan >= 0) {
            int r = agent_buf_flush(&m.cout, m.chan);
            if (r < 0)
                chan_ok = false;
        }
        if (!chan_ok && m.chan >= 0) {
            close(m.chan);
            m.chan = -1;
            if (!m.child_gone && !m.shutting_down) {
                /* No agent, no container: stop the VM now. */
                kill(m.vm.child, SIGKILL);
            }
        }
        struct pollfd pf[8 + MAX_CONNS];
        int n = 0, i_chan = -1, i_in = -1, i_out[3] = {-1, -1, -1}, i_conn0;
        pf[n++] = (struct pollfd){.fd = m.sfd, .events = POLLIN};
        pf[n++] = (struct pollfd){.fd = m.lfd, .events = POLLIN};
        if (m.chan >= 0) {
            i_chan = n;
            pf[n++] = (struct pollfd){
                .fd = m.chan, .events = POLLIN | (agent_buf_len(&m.cout) ? POLLOUT : 0)};
        }
        if (m.ready && m.in_fd >= 0 && m.chan >= 0 && !m.exited &&
            m.in_sent - m.in_credited < AGENT_WINDOW) {
            i_in = n;
            pf[n++] = (struct pollfd){.fd = m.in_fd, .events = POLLIN};
        }
        for (unsigned s = 1; s <= 2; s++)
            if (m.out_fd[s] >= 0 && agent_buf_len(&m.obuf[s])) {
                i_out[s] = n;
                pf[n++] = (struct pollfd){.fd = m.out_fd[s], .events = POLLOUT};
            }
        i_conn0 = n;
        for (int i = 0; i < MAX_CONNS; i++)
            if (m.conns[i].fd >= 0)
                pf[n++] = (struct pollfd){
                    .fd = m.conns[i].fd,
                    .events = POLLIN | (agent_buf_len(&m.conns[i].out) ? POLLOUT : 0)};
        int timeout = -1;
        if (m.deadline)
            timeout = (int)(m.deadline - mono_ms() < 0 ? 0 : m.deadline - mono_ms());
        if (poll(pf, (nfds_t)n, timeout) < 0 && errno != EINTR)
            break;
        if (pf[0].revents)
            on_signal(&m);
        if (pf[1].revents & POLLIN)
            ctl_accept(&m);
        if (i_chan >= 0 && (pf[i_chan].revents & (POLLIN | POLLHUP | POLLERR)))
            chan_ok = chan_read(&m) && chan_ok;
        if (i_in >= 0 && pf[i_in].revents)
            pump_stdin(&m);
        for (unsigned s = 1; s <= 2; s++)
            if (i_out[s] >= 0 && pf[i_out[s]].revents)
                pump_out(&m, s);
        int k = i_conn0;
        for (int i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &m.conns[i];
            if (c->fd < 0 || k >= n || pf[k].fd != c->fd)
                continue;
            short re = pf[k++].revents;
            if (re & POLLOUT && agent_buf_flush(&c->out, c->fd) < 0)
                conn_close(&m, c);
            else if (re & (POLLIN | POLLHUP | POLLERR))
                conn_read(&m, c);
        }
    }
    if (!m.child_gone)
        proc_kill_reap(m.vm.child);
    /* The hypervisor's helpers serve nothing once it is gone: end them now,
     * so that the container's cgroup is empty when the monitor is. */
    for (unsigned i = 0; i < m.vm.n_helpers; i++)
        if (m.vm.helpers[i] > 0)
            proc_kill_reap(m.vm.helpers[i]);
    for (int i = 0; i < MAX_CONNS; i++)
        if (m.conns[i].fd >= 0) {
            agent_buf_flush(&m.conns[i].out, m.conns[i].fd);
            conn_close(&m, &m.conns[i]);
        }
    unlinkat(o->dirfd, VMC_CTL_SOCK, 0);
    return m.exited ? m.status : 255;
}
