/* virtio-console (virtio 1.x section 5.3) with one port: what the guest
 * transmits goes to a host fd or a Unix socket client, host input fills the
 * guest's receive buffers. The host side is read only while the guest has
 * receive buffers posted, so input waits in the host fd, never in cocoon. */
#include <errno.h>
#include <linux/virtio_console.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/evloop.h"
#include "virtio/devices.h"

#define Q_RX 0
#define Q_TX 1

struct console {
    struct virtio_dev dev;
    int in_fd, out_fd;          /* host side; with a socket: the client, both ways */
    int listen_fd;              /* -1 unless listening on a Unix socket */
    char *socket_path;
    bool watching_in;
    struct virtq_chain chain;
};

static void watch_input(struct console *c, bool on);

/* Move host input into the guest's receive buffers while both last. */
static void fill_rx(struct console *c)
{
    struct virtio_dev *d = &c->dev;
    struct virtq *q = &d->queues[Q_RX];
    bool pushed = false;
    while (c->in_fd >= 0 && virtio_dev_running(d) && q->ready) {
        /* never block the event thread on the host side */
        struct pollfd p = {.fd = c->in_fd, .events = POLLIN};
        if (poll(&p, 1, 0) <= 0) {
            watch_input(c, true);
            break;
        }
        const char *why = NULL;
        int got = virtq_pop(q, d->mem, &c->chain, &why);
        if (got < 0) {
            virtio_dev_needs_reset(d, why);
            break;
        }
        if (got == 0) {
            watch_input(c, false); /* no buffers: leave input in the host fd */
            break;
        }
        ssize_t n = c->chain.n_in ? readv(c->in_fd, c->chain.in, (int)c->chain.n_in) : 0;
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            /* nothing to read after all: the buffer stays for next time */
            virtq_unpop(q);
            watch_input(c, true);
            break;
        }
        virtq_push(q, c->chain.head, n > 0 ? (uint32_t)n : 0);
        pushed = true;
        if (n <= 0) {
            /* end of input or an error: this host side is gone */
            watch_input(c, false);
            if (c->listen_fd >= 0) {
                close(c->in_fd);
                c->in_fd = c->out_fd = -1;
            } else {
                c->in_fd = -1;
            }
            break;
        }
    }
    if (pushed)
        virtio_dev_signal_used(d, Q_RX);
}

static void on_input(void *arg, uint32_t events)
{
    (void)events;
    struct console *c = arg;
    pthread_mutex_lock(&c->dev.lock);
    fill_rx(c);
    pthread_mutex_unlock(&c->dev.lock);
}

static void watch_input(struct console *c, bool on)
{
    if (c->in_fd < 0 || c->watching_in == on)
        return;
    if (on) {
        struct err *e = NULL;
        if (evloop_add(c->dev.loop, c->in_fd, EPOLLIN, on_input, c, &e) < 0) {
            /* a regular file cannot be polled: read it when buffers come */
            err_free(&e);
            return;
        }
    } else {
        evloop_del(c->dev.loop, c->in_fd);
    }
    c->watching_in = on;
}

/* Send a transmitted chain to the host side (dropped if it is gone). */
static uint32_t send_tx(struct virtio_dev *d, struct virtq_chain *ch)
{
    struct console *c = d->priv;
    for (unsigned i = 0; i < ch->n_out && c->out_fd >= 0; i++) {
        const uint8_t *p = ch->out[i].iov_base;
        size_t left = ch->out[i].iov_len;
        while (left) {
            ssize_t n = send(c->out_fd, p, left, MSG_NOSIGNAL);
            if (n < 0 && errno == ENOTSOCK)
                n = write(c->out_fd, p, left);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break; /* the host side is gone: the bytes are dropped */
            p += n;
            left -= (size_t)n;
        }
    }
    return 0;
}

static void drain_tx(struct console *c)
{
    /* A socket with no client yet: output waits in the ring (flow control),
     * it is not thrown away. */
    if (c->listen_fd >= 0 && c->out_fd < 0)
        return;
    virtio_queue_serve(&c->dev, Q_TX, &c->chain, send_tx);
}

static void console_notify(struct virtio_dev *d, unsigned qi)
{
    struct console *c = d->priv;
    if (qi == Q_TX) {
        drain_tx(c);
    } else {
        watch_input(c, true);
        fill_rx(c);
    }
}

static void console_activate(struct virtio_dev *d)
{
    struct console *c = d->priv;
    watch_input(c, true);
}

static void console_reset(struct virtio_dev *d)
{
    watch_input(d->priv, false);
}

static void on_accept(void *arg, uint32_t events)
{
    (void)events;
    struct console *c = arg;
    int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    pthread_mutex_lock(&c->dev.lock);
    if (c->in_fd >= 0) {
        watch_input(c, false);
        close(c->in_fd);
    }
    c->in_fd = c->out_fd = fd;
    if (virtio_dev_running(&c->dev)) {
        watch_input(c, true);
        if (c->dev.queues[Q_TX].ready)
            drain_tx(c); /* what the guest wrote while nobody listened */
    }
    pthread_mutex_unlock(&c->dev.lock);
}

static void console_destroy(struct virtio_dev *d)
{
    struct console *c = d->priv;
    if (c->listen_fd >= 0) {
        if (d->loop)
            evloop_del(d->loop, c->listen_fd);
        close(c->listen_fd);
        if (c->in_fd >= 0)
            close(c->in_fd);
        unlink(c->socket_path);
    }
    if (c->watching_in && d->loop && c->in_fd >= 0)
        evloop_del(d->loop, c->in_fd);
    free(c->socket_path);
    free(c);
}


/* Listening starts when the device is attached to the event loop. */
static int console_listen(struct console *c, struct err **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(c->socket_path) >= sizeof(sa.sun_path))
        return err_input(err, "console socket path `%s` is too long", c->socket_path);
    strcpy(sa.sun_path, c->socket_path);
    c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c->listen_fd < 0)
        return err_make(err, errno, "console socket");
    if (bind(c->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(c->listen_fd, 1) < 0) {
        int e = errno;
        close(c->listen_fd);
        c->listen_fd = -1;
        return err_make(err, e, "console socket `%s`", c->socket_path);
    }
    return 0;
}

static int console_attach(struct virtio_dev *d, struct err **err)
{
    struct console *c = d->priv;
    if (c->listen_fd < 0)
        return 0;
    return evloop_add(d->loop, c->listen_fd, EPOLLIN, on_accept, c, err);
}

static const struct virtio_dev_ops console_ops = {
    .name = "console", .attach = console_attach, .notify = console_notify,
    .activate = console_activate, .reset = console_reset, .destroy = console_destroy,
};

int virtio_console_create(const struct virtio_console_opts *o, struct virtio_dev **out,
                          struct err **err)
{
    struct console *c = xcalloc(1, sizeof(*c));
    c->in_fd = o->in_fd;
    c->out_fd = o->out_fd;
    c->listen_fd = -1;
    virtio_dev_init(&c->dev, &console_ops, c, VIRTIO_ID_CONSOLE, 0, 2, 256);
    struct virtio_console_config cfg = {.cols = 80, .rows = 25, .max_nr_ports = 1};
    memcpy(c->dev.config, &cfg, sizeof(cfg));
    c->dev.config_len = sizeof(cfg);
    if (o->socket) {
        c->socket_path = xstrdup(o->socket);
        c->in_fd = c->out_fd = -1;
        if (console_listen(c, err) < 0) {
            free(c->socket_path);
            free(c);
            return -1;
        }
    }
    *out = &c->dev;
    return 0;
}
