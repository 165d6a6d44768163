/* virtio-console (virtio 1.2 section 5.3). Port 0 is the console; with
 * extra ports the device offers VIRTIO_CONSOLE_F_MULTIPORT and speaks the
 * control protocol on queues 2 (to the driver) and 3 (from it): the driver
 * says DEVICE_READY, the device announces every port (DEVICE_ADD), the
 * driver answers PORT_READY for each, and the device then tells it which
 * port is the console (CONSOLE_PORT, port 0), each port's name (PORT_NAME)
 * and whether the port's host side is connected (PORT_OPEN, again whenever
 * that changes). Port N's data queues are 0/1 for port 0, 2N+2/2N+3 after.
 *
 * A port's host side is an fd pair, a file, or a Unix socket (one client at
 * a time). Host input is read only while the guest has receive buffers
 * posted on the port, so it waits in the host fd, never in cocoon; output a
 * socket client cannot take yet stays in the guest's ring (EPOLLOUT brings
 * it back), and output for a socket nobody is connected to waits there too.
 * What the device still owes the driver is a few flags per port, never a
 * growing queue of messages. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_console.h>
#include <linux/virtio_ids.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/evloop.h"
#include "virtio/devices.h"

#define Q_CTRL_RX 2 /* control messages to the driver */
#define Q_CTRL_TX 3 /* control messages from the driver */

/* Control messages the device still owes a port, sent lowest bit first. */
enum {
    OWE_ADD = 1u << 0,
    OWE_CONSOLE = 1u << 1,
    OWE_NAME = 1u << 2,
    OWE_OPEN = 1u << 3,
};

struct console;

struct cport {
    struct console *c;
    unsigned id;
    int in_fd, out_fd;          /* host side; with a socket: the client, both ways */
    int listen_fd;              /* -1 unless listening on a Unix socket */
    bool own_out;               /* out_fd is a file the device opened */
    bool want_in, want_out;     /* guest buffers posted / guest output waiting */
    int wfd[2];                 /* what the event loop watches for this port */
    uint32_t wev[2];
    uint64_t tx_off;            /* bytes of the head tx chain already sent */
    char name[VIRTIO_CONSOLE_NAME_MAX + 1];
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    /* MULTIPORT: the driver's view, reset with the device */
    unsigned owe;
    bool ready;                 /* the driver answered PORT_READY */
    bool guest_open;            /* the driver's last PORT_OPEN */
    bool told_open;             /* the last PORT_OPEN value the driver got */
};

struct console {
    struct virtio_dev dev;
    unsigned n_ports;           /* port 0 and the extra ones */
    struct cport ports[VIRTIO_CONSOLE_MAX_PORTS];
    struct virtq_chain chain;   /* data queues */
    struct virtq_chain ctl;     /* control queues */
};

static unsigned rx_queue(unsigned port)
{
    return port == 0 ? 0 : 2 + 2 * port;
}

static bool host_open(const struct cport *p)
{
    return p->in_fd >= 0 || p->out_fd >= 0;
}

/* MULTIPORT is offered and the driver took it. */
static bool multiport(const struct console *c)
{
    return c->n_ports > 1 && (c->dev.driver_features & (1ull << VIRTIO_CONSOLE_F_MULTIPORT));
}

static void on_host(void *arg, uint32_t events);

static void set_watch(struct cport *p, int i, int fd, uint32_t ev)
{
    struct evloop *l = p->c->dev.loop;
    if (p->wfd[i] == fd && p->wev[i] == ev)
        return;
    if (p->wfd[i] == fd) {
        evloop_mod(l, fd, ev);
        p->wev[i] = ev;
        return;
    }
    struct err *e = NULL;
    if (evloop_add(l, fd, ev, on_host, p, &e) < 0) {
        /* a regular file cannot be polled: it is read when buffers come */
        err_free(&e);
        return;
    }
    p->wfd[i] = fd;
    p->wev[i] = ev;
}

/* Make the event loop watch what the port needs now: its input while the
 * guest has receive buffers posted, its output while guest bytes wait. */
static void update_watch(struct cport *p)
{
    if (p->c->dev.loop == NULL)
        return;
    int fd[2] = {-1, -1};
    uint32_t ev[2] = {0, 0};
    if (p->want_in && p->in_fd >= 0) {
        fd[0] = p->in_fd;
        ev[0] = EPOLLIN;
    }
    if (p->want_out && p->out_fd >= 0) {
        if (p->out_fd == fd[0]) {
            ev[0] |= EPOLLOUT;
        } else {
            fd[1] = p->out_fd;
            ev[1] = EPOLLOUT;
        }
    }
    /* first drop what is no longer wanted, so that an fd moving from one
     * slot to the other is never added twice */
    for (int i = 0; i < 2; i++) {
        if (p->wfd[i] >= 0 && p->wfd[i] != fd[i]) {
            evloop_del(p->c->dev.loop, p->wfd[i]);
            p->wfd[i] = -1;
            p->wev[i] = 0;
        }
    }
    for (int i = 0; i < 2; i++)
        if (fd[i] >= 0)
            set_watch(p, i, fd[i], ev[i]);
}

static void unwatch(struct cport *p)
{
    p->want_in = p->want_out = false;
    update_watch(p);
}

/* The driver should hear about the port's host side again. */
static void host_changed(struct cport *p)
{
    if (p->ready)
        p->owe |= OWE_OPEN;
}

/* A socket client went away: its port waits for the next one. */
static void drop_client(struct cport *p)
{
    unwatch(p);
    close(p->in_fd);
    p->in_fd = p->out_fd = -1;
    p->tx_off = 0;
    host_changed(p);
}

/* ---- control queues ---- */

/* Write one control message into the next control receive buffer. Returns
 * 1 when sent, 0 when the buffer was too small (returned empty; the message
 * stays owed), -1 when no buffer is posted or the queue is broken. */
static int ctrl_send(struct console *c, uint32_t id, uint16_t event, uint16_t value,
                     const char *extra, size_t extra_len)
{
    struct virtio_dev *d = &c->dev;
    struct virtq *q = &d->queues[Q_CTRL_RX];
    const char *why = NULL;
    int got = virtq_pop(q, d->mem, &c->ctl, &why);
    if (got < 0)
        virtio_dev_needs_reset(d, why);
    if (got <= 0)
        return -1;
    struct virtio_console_control m = {
        .id = htole32(id), .event = htole16(event), .value = htole16(value),
    };
    uint32_t n = 0;
    if (c->ctl.in_len >= sizeof(m) + extra_len) {
        n = (uint32_t)virtq_write(&c->ctl, 0, &m, sizeof(m));
        n += (uint32_t)virtq_write(&c->ctl, sizeof(m), extra, extra_len);
    }
    virtq_push(q, c->ctl.head, n);
    return n ? 1 : 0;
}

/* Send what the driver is owed, as far as it has posted buffers. */
static void ctrl_flush(struct console *c)
{
    struct virtio_dev *d = &c->dev;
    if (!multiport(c) || !virtio_dev_running(d) || !d->queues[Q_CTRL_RX].ready)
        return;
    bool pushed = false;
    for (unsigned i = 0; i < c->n_ports; i++) {
        struct cport *p = &c->ports[i];
        while (p->owe && virtio_dev_running(d)) {
            unsigned bit = p->owe & (~p->owe + 1);
            bool open = host_open(p);
            if (bit == OWE_OPEN && open == p->told_open) {
                p->owe &= ~bit; /* nothing new to say */
                continue;
            }
            int r;
            switch (bit) {
            case OWE_ADD: r = ctrl_send(c, i, VIRTIO_CONSOLE_PORT_ADD, 1, NULL, 0); break;
            case OWE_CONSOLE: r = ctrl_send(c, i, VIRTIO_CONSOLE_CONSOLE_PORT, 1, NULL, 0); break;
            case OWE_NAME:
                /* the name follows the header, without a NUL (5.3.6.2) */
                r = ctrl_send(c, i, VIRTIO_CONSOLE_PORT_NAME, 1, p->name, strlen(p->name));
                break;
            default: r = ctrl_send(c, i, VIRTIO_CONSOLE_PORT_OPEN, open, NULL, 0); break;
            }
            if (r < 0)
                goto out;
            pushed = true;
            if (r == 0)
                continue; /* too small a buffer: try the next one */
            p->owe &= ~bit;
            if (bit == OWE_OPEN)
                p->told_open = open;
        }
    }
out:
    if (pushed)
        virtio_dev_signal_used(d, Q_CTRL_RX);
}

/* One control message from the driver. Anything short, unknown or about a
 * port that does not exist is ignored: none of it can break the device. */
static uint32_t serve_ctrl(struct virtio_dev *d, struct virtq_chain *ch)
{
    struct console *c = d->priv;
    struct virtio_console_control m;
    if (virtq_read(ch, 0, &m, sizeof(m)) < sizeof(m))
        return 0;
    uint32_t id = le32toh(m.id);
    uint16_t event = le16toh(m.event), value = le16toh(m.value);
    if (event == VIRTIO_CONSOLE_DEVICE_READY) {
        if (value != 1) {
            log_debug("virtio-console: the driver failed to set up (DEVICE_READY %u)", value);
            return 0;
        }
        for (unsigned i = 0; i < c->n_ports; i++)
            c->ports[i].owe |= OWE_ADD;
        return 0;
    }
    if (id >= c->n_ports)
        return 0;
    struct cport *p = &c->ports[id];
    switch (event) {
    case VIRTIO_CONSOLE_PORT_READY:
        p->ready = value == 1;
        if (!p->ready) {
            log_debug("virtio-console: the driver failed to add port %u", id);
            break;
        }
        p->told_open = false; /* a driver adding a port thinks it closed */
        p->owe |= (id == 0 ? OWE_CONSOLE : 0) | (p->name[0] ? OWE_NAME : 0) | OWE_OPEN;
        break;
    case VIRTIO_CONSOLE_PORT_OPEN: p->guest_open = value != 0; break;
    default: break; /* messages only a device sends */
    }
    return 0;
}

/* ---- data queues ---- */

/* Move host input into the port's receive buffers while both last. */
static void fill_rx(struct cport *p)
{
    struct virtio_dev *d = &p->c->dev;
    struct virtq_chain *ch = &p->c->chain;
    unsigned qi = rx_queue(p->id);
    struct virtq *q = &d->queues[qi];
    bool pushed = false, gone = false;
    /* only a queue the driver may use is filled; otherwise stop watching */
    p->want_in = virtio_dev_running(d) && q->ready && (p->id == 0 || multiport(p->c));
    while (p->want_in && p->in_fd >= 0) {
        /* never block the event thread on the host side */
        struct pollfd pf = {.fd = p->in_fd, .events = POLLIN};
        if (poll(&pf, 1, 0) <= 0) {
            p->want_in = true;
            break;
        }
        const char *why = NULL;
        int got = virtq_pop(q, d->mem, ch, &why);
        if (got < 0)
            virtio_dev_needs_reset(d, why);
        if (got <= 0) {
            p->want_in = false; /* no buffers: leave input in the host fd */
            break;
        }
        ssize_t n = ch->n_in ? readv(p->in_fd, ch->in, (int)ch->n_in) : 0;
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            /* nothing to read after all: the buffer stays for next time */
            virtq_unpop(q);
            p->want_in = true;
            break;
        }
        virtq_push(q, ch->head, n > 0 ? (uint32_t)n : 0);
        pushed = true;
        if (n <= 0) {
            gone = ch->n_in > 0; /* end of input or an error */
            break;
        }
    }
    if (gone && p->listen_fd >= 0) {
        drop_client(p);
    } else if (gone) {
        p->want_in = false;
        update_watch(p);
        p->in_fd = -1; /* the fd itself belongs to whoever passed it */
        update_watch(p);
    } else {
        update_watch(p);
    }
    if (pushed)
        virtio_dev_signal_used(d, qi);
}

/* Send a transmitted chain from byte p->tx_off on. Returns 1 if the host
 * side cannot take more now (p->tx_off says how far it got), else 0: all
 * sent, or dropped because the host side is gone. */
static int send_chain(struct cport *p, const struct virtq_chain *ch)
{
    uint64_t skip = p->tx_off;
    for (unsigned i = 0; i < ch->n_out && p->out_fd >= 0; i++) {
        const uint8_t *b = ch->out[i].iov_base;
        size_t left = ch->out[i].iov_len;
        if (skip >= left) {
            skip -= left;
            continue;
        }
        b += skip;
        left -= skip;
        skip = 0;
        while (left) {
            ssize_t n = send(p->out_fd, b, left, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == ENOTSOCK)
                n = write(p->out_fd, b, left);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN)
                return 1;
            if (n <= 0) {
                /* the host side is gone: a socket port waits for the next
                 * client, anything else drops the bytes */
                if (p->listen_fd >= 0)
                    drop_client(p);
                return 0;
            }
            p->tx_off += (uint64_t)n;
            b += n;
            left -= (size_t)n;
        }
    }
    return 0;
}

static void drain_tx(struct cport *p)
{
    struct virtio_dev *d = &p->c->dev;
    struct virtq_chain *ch = &p->c->chain;
    unsigned qi = rx_queue(p->id) + 1;
    struct virtq *q = &d->queues[qi];
    bool pushed = false;
    p->want_out = false;
    /* A socket with no client: output waits in the ring (flow control), it
     * is not thrown away. */
    while (q->ready && virtio_dev_running(d) && !(p->listen_fd >= 0 && p->out_fd < 0)) {
        const char *why = NULL;
        int got = virtq_pop(q, d->mem, ch, &why);
        if (got < 0)
            virtio_dev_needs_reset(d, why);
        if (got <= 0)
            break;
        if (send_chain(p, ch)) {
            virtq_unpop(q); /* the rest goes when the host side can take it */
            p->want_out = true;
            break;
        }
        virtq_push(q, ch->head, 0);
        p->tx_off = 0;
        pushed = true;
    }
    update_watch(p);
    if (pushed)
        virtio_dev_signal_used(d, qi);
}

static void on_host(void *arg, uint32_t events)
{
    struct cport *p = arg;
    struct console *c = p->c;
    pthread_mutex_lock(&c->dev.lock);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        fill_rx(p);
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        drain_tx(p);
    ctrl_flush(c);
    pthread_mutex_unlock(&c->dev.lock);
}

static void console_notify(struct virtio_dev *d, unsigned qi)
{
    struct console *c = d->priv;
    if (qi >= 2 && !multiport(c))
        return; /* without MULTIPORT there is only port 0 */
    if (qi == Q_CTRL_TX) {
        virtio_queue_serve(d, qi, &c->ctl, serve_ctrl);
    } else if (qi != Q_CTRL_RX) {
        struct cport *p = &c->ports[qi < 2 ? 0 : qi / 2 - 1];
        if (qi & 1) {
            drain_tx(p);
        } else {
            p->want_in = true;
            fill_rx(p);
        }
    }
    ctrl_flush(c);
}

/* DRIVER_OK, on the vCPU thread: kick the receive queues' ioeventfds, so
 * that the event thread fills buffers posted before (and starts watching
 * the host side) without this thread touching the event loop. */
static void console_activate(struct virtio_dev *d)
{
    struct console *c = d->priv;
    uint64_t one = 1;
    for (unsigned i = 0; i < c->n_ports; i++) {
        unsigned qi = rx_queue(i);
        if (qi < d->num_queues && d->kick_fd[qi] >= 0 && write(d->kick_fd[qi], &one, 8) < 0)
            log_debug("virtio-console: kick: %s", strerror(errno));
    }
}

/* On the vCPU thread: the event loop is left alone (it is the event
 * thread's); a watch no longer wanted goes the next time it fires. Host
 * input is watched again once the driver posts receive buffers. */
static void console_reset(struct virtio_dev *d)
{
    struct console *c = d->priv;
    for (unsigned i = 0; i < c->n_ports; i++) {
        struct cport *p = &c->ports[i];
        p->want_in = p->want_out = false;
        p->tx_off = 0;
        p->owe = 0;
        p->ready = p->guest_open = p->told_open = false;
    }
}

static void on_accept(void *arg, uint32_t events)
{
    (void)events;
    struct cport *p = arg;
    struct console *c = p->c;
    int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    pthread_mutex_lock(&c->dev.lock);
    if (p->in_fd >= 0) {
        unwatch(p);
        close(p->in_fd); /* one client at a time: the newest */
    }
    p->in_fd = p->out_fd = fd;
    host_changed(p);
    if (virtio_dev_running(&c->dev)) {
        fill_rx(p);
        drain_tx(p); /* what the guest wrote while nobody listened */
        ctrl_flush(c);
    }
    pthread_mutex_unlock(&c->dev.lock);
}

/* Close what the ports opened; the socket files are removed. */
static void close_ports(struct console *c)
{
    for (unsigned i = 0; i < c->n_ports; i++) {
        struct cport *p = &c->ports[i];
        unwatch(p);
        if (p->listen_fd >= 0) {
            if (c->dev.loop)
                evloop_del(c->dev.loop, p->listen_fd);
            close(p->listen_fd);
            if (p->in_fd >= 0)
                close(p->in_fd);
            unlink(p->socket_path);
        }
        if (p->own_out && p->out_fd >= 0)
            close(p->out_fd);
        p->listen_fd = p->in_fd = p->out_fd = -1;
    }
}

static void console_destroy(struct virtio_dev *d)
{
    struct console *c = d->priv;
    close_ports(c);
    free(c);
}

static int console_attach(struct virtio_dev *d, struct err **err)
{
    struct console *c = d->priv;
    for (unsigned i = 0; i < c->n_ports; i++) {
        struct cport *p = &c->ports[i];
        if (p->listen_fd >= 0 && evloop_add(d->loop, p->listen_fd, EPOLLIN, on_accept, p, err) < 0)
            return -1;
    }
    return 0;
}

static const struct virtio_dev_ops console_ops = {
    .name = "console", .attach = console_attach, .notify = console_notify,
    .activate = console_activate, .reset = console_reset, .destroy = console_destroy,
};

/* ---- creation ---- */

/* Listen on path (listening starts when the device is attached). */
static int port_listen(struct cport *p, const char *path, struct err **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return err_input(err, "console socket path `%s` is too long", path);
    strcpy(sa.sun_path, path);
    strcpy(p->socket_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return err_make(err, errno, "console socket");
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
        int e = errno;
        close(fd);
        return err_make(err, e, "console socket `%s`", path);
    }
    p->listen_fd = fd;
    return 0;
}

/* A port name: 1..63 of letters, digits, '.', '_' and '-'. */
static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > VIRTIO_CONSOLE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static int extra_port(struct console *c, unsigned id, const struct virtio_console_port_opts *o,
                      struct err **err)
{
    struct cport *p = &c->ports[id];
    if (o->name == NULL || !name_ok(o->name))
        return err_input(err, "console port %u: the name `%s` is not 1..%d letters, digits, "
                              "'.', '_' or '-'", id, o->name ? o->name : "",
                         VIRTIO_CONSOLE_NAME_MAX);
    for (unsigned i = 1; i < id; i++)
        if (strcmp(c->ports[i].name, o->name) == 0)
            return err_input(err, "console port name `%s` is used twice", o->name);
    strcpy(p->name, o->name);
    if ((o->socket != NULL) + (o->file != NULL) + o->stdio > 1)
        return err_input(err, "console port `%s`: one of a socket, a file or stdio", o->name);
    if (o->stdio) {
        p->in_fd = 0;
        p->out_fd = 1;
    } else if (o->file) {
        p->out_fd = open(o->file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (p->out_fd < 0)
            return err_make(err, errno, "console port `%s`: file `%s`", o->name, o->file);
        p->own_out = true;
    } else if (o->socket && port_listen(p, o->socket, err) < 0) {
        return err_wrap(err, "console port `%s`", o->name);
    }
    return 0;
}

int virtio_console_create(const struct virtio_console_opts *o, struct virtio_dev **out,
                          struct err **err)
{
    if (o->n_ports > VIRTIO_CONSOLE_MAX_PORTS - 1)
        return err_input(err, "virtio-console: at most %d extra ports",
                         VIRTIO_CONSOLE_MAX_PORTS - 1);
    struct console *c = xcalloc(1, sizeof(*c));
    c->n_ports = 1 + o->n_ports;
    for (unsigned i = 0; i < c->n_ports; i++) {
        struct cport *p = &c->ports[i];
        *p = (struct cport){.c = c, .id = i, .in_fd = -1, .out_fd = -1, .listen_fd = -1,
                            .wfd = {-1, -1}};
    }
    int r = 0;
    if (o->socket) {
        r = port_listen(&c->ports[0], o->socket, err);
    } else {
        c->ports[0].in_fd = o->in_fd;
        c->ports[0].out_fd = o->out_fd;
    }
    for (unsigned i = 1; i < c->n_ports && r == 0; i++)
        r = extra_port(c, i, &o->ports[i - 1], err);
    if (r < 0) {
        close_ports(c);
        free(c);
        return -1;
    }
    bool multi = c->n_ports > 1;
    virtio_dev_init(&c->dev, &console_ops, c, VIRTIO_ID_CONSOLE,
                    multi ? 1ull << VIRTIO_CONSOLE_F_MULTIPORT : 0,
                    multi ? 2 * (c->n_ports + 1) : 2, 256);
    struct virtio_console_config cfg = {.cols = 80, .rows = 25, .max_nr_ports = c->n_ports};
    memcpy(c->dev.config, &cfg, sizeof(cfg));
    c->dev.config_len = sizeof(cfg);
    *out = &c->dev;
    return 0;
}
