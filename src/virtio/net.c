/* virtio-net (virtio 1.x section 5.1) on a tap device: created by cocoon
 * (it disappears with the VM) or an existing one given by name, opened in a
 * given network namespace. The tap speaks the same 12-byte virtio_net_hdr_v1
 * (IFF_VNET_HDR, TUNSETVNETHDRSZ), so transmit is one writev of the guest's
 * buffers. Receive reads a frame, then spreads it over as many of the
 * guest's buffers as it needs (VIRTIO_NET_F_MRG_RXBUF, num_buffers). No
 * checksum or segmentation offloads are offered: frames are at most 64 KiB. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_net.h>
#include <stddef.h>
#include <stdio.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/evloop.h"
#include "virtio/devices.h"

#define Q_RX 0
#define Q_TX 1
#define NET_HDR sizeof(struct virtio_net_hdr_v1)
#define FRAME_MAX (65536 + NET_HDR)

struct net {
    struct virtio_dev dev;
    int tap;
    bool watching;
    uint8_t frame[FRAME_MAX];   /* one received frame, header first */
    size_t frame_len;           /* 0: none waiting */
    struct virtq_chain chain;
};

static void net_watch(struct net *n, bool on);

/* Host address of byte `off` of a chain's writable part, or NULL. */
static uint8_t *byte_at(const struct virtq_chain *c, uint64_t off)
{
    for (unsigned i = 0; i < c->n_in; i++) {
        if (off < c->in[i].iov_len)
            return (uint8_t *)c->in[i].iov_base + off;
        off -= c->in[i].iov_len;
    }
    return NULL;
}

/* Spread the waiting frame over the guest's receive buffers. Returns false
 * if there were not enough buffers (the frame keeps waiting). */
static bool deliver(struct net *n)
{
    struct virtio_dev *d = &n->dev;
    struct virtq *q = &d->queues[Q_RX];
    uint16_t heads[64];
    uint32_t lens[64];
    uint8_t *num_buffers[2] = {NULL, NULL};
    unsigned used = 0;
    size_t off = 0;
    while (off < n->frame_len) {
        const char *why = NULL;
        int got = virtq_pop(q, d->mem, &n->chain, &why);
        if (got < 0) {
            virtio_dev_needs_reset(d, why);
            return false;
        }
        if (got == 0 || used == 64 || n->chain.in_len < (used ? 1 : NET_HDR)) {
            /* not enough room yet: give the buffers back, keep the frame */
            if (got > 0)
                virtq_unpop(q);
            while (used--)
                virtq_unpop(q);
            return false;
        }
        if (used == 0) {
            num_buffers[0] = byte_at(&n->chain, offsetof(struct virtio_net_hdr_v1, num_buffers));
            num_buffers[1] = byte_at(&n->chain, offsetof(struct virtio_net_hdr_v1, num_buffers) + 1);
        }
        uint64_t k = virtq_write(&n->chain, 0, n->frame + off, n->frame_len - off);
        heads[used] = n->chain.head;
        lens[used++] = (uint32_t)k;
        off += k;
    }
    if (num_buffers[0] && num_buffers[1]) {
        num_buffers[0][0] = (uint8_t)used;
        num_buffers[1][0] = (uint8_t)(used >> 8);
    }
    for (unsigned i = 0; i < used; i++)
        virtq_push(q, heads[i], lens[i]);
    n->frame_len = 0;
    return true;
}

/* Move frames from the tap to the guest while both last. */
static void net_rx(struct net *n)
{
    struct virtio_dev *d = &n->dev;
    bool pushed = false;
    while (virtio_dev_running(d) && d->queues[Q_RX].ready) {
        if (n->frame_len == 0) {
            ssize_t r = read(n->tap, n->frame, sizeof(n->frame));
            if (r < 0 && errno == EINTR)
                continue;
            if (r < (ssize_t)NET_HDR)
                break; /* EAGAIN (nothing waiting) or a runt: drop it */
            n->frame_len = (size_t)r;
        }
        if (!deliver(n)) {
            net_watch(n, false); /* until the guest posts buffers */
            break;
        }
        pushed = true;
    }
    if (pushed)
        virtio_dev_signal_used(d, Q_RX);
}

static void on_tap(void *arg, uint32_t events)
{
    (void)events;
    struct net *n = arg;
    pthread_mutex_lock(&n->dev.lock);
    net_rx(n);
    pthread_mutex_unlock(&n->dev.lock);
}

static void net_watch(struct net *n, bool on)
{
    if (n->watching == on || n->dev.loop == NULL)
        return;
    if (on) {
        struct err *e = NULL;
        if (evloop_add(n->dev.loop, n->tap, EPOLLIN, on_tap, n, &e) < 0) {
            err_free(&e);
            return;
        }
    } else {
        evloop_del(n->dev.loop, n->tap);
    }
    n->watching = on;
}

/* Header + frame, as the tap (IFF_VNET_HDR, 12 bytes) wants it. */
static uint32_t send_frame(struct virtio_dev *d, struct virtq_chain *c)
{
    struct net *n = d->priv;
    if (c->out_len > NET_HDR && c->out_len <= FRAME_MAX &&
        writev(n->tap, c->out, (int)c->n_out) < 0 && errno != EAGAIN)
        log_debug("virtio-net: tap write: %s", strerror(errno));
    return 0;
}

static void net_notify(struct virtio_dev *d, unsigned qi)
{
    struct net *n = d->priv;
    if (qi == Q_TX) {
        virtio_queue_serve(d, Q_TX, &n->chain, send_frame);
    } else {
        net_watch(n, true);
        net_rx(n);
    }
}

static void net_activate(struct virtio_dev *d)
{
    net_watch(d->priv, true);
}

static void net_reset(struct virtio_dev *d)
{
    struct net *n = d->priv;
    net_watch(n, false);
    n->frame_len = 0;
}

static void net_destroy(struct virtio_dev *d)
{
    struct net *n = d->priv;
    net_watch(n, false);
    close(n->tap);
    free(n);
}

static const struct virtio_dev_ops net_ops = {
    .name = "net", .notify = net_notify, .activate = net_activate, .reset = net_reset,
    .destroy = net_destroy,
};

struct tap_open {
    const char *name, *netns;
    int fd, err;
    const char *what;
};

/* In a thread of its own, so that setns(CLONE_NEWNET) changes only it. */
static void *tap_thread(void *arg)
{
    struct tap_open *t = arg;
    if (t->netns) {
        int ns = open(t->netns, O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) {
            t->err = errno;
            t->what = "network namespace";
            if (ns >= 0)
                close(ns);
            return NULL;
        }
        close(ns);
    }
    t->fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (t->fd < 0) {
        t->err = errno;
        t->what = "/dev/net/tun";
        return NULL;
    }
    struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR};
    strncpy(ifr.ifr_name, t->name, IFNAMSIZ - 1);
    int hdr = (int)NET_HDR;
    if (ioctl(t->fd, TUNSETIFF, &ifr) < 0 || ioctl(t->fd, TUNSETVNETHDRSZ, &hdr) < 0) {
        t->err = errno;
        t->what = "tap";
        close(t->fd);
        t->fd = -1;
    }
    return NULL;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char end;
    if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &end) != 6)
        return -1;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    return (mac[0] & 1) ? -1 : 0; /* not a multicast address */
}

int virtio_net_create(const struct virtio_net_opts *o, struct virtio_dev **out, struct err **err)
{
    uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
    if (o->tap == NULL || *o->tap == '\0' || strlen(o->tap) >= IFNAMSIZ)
        return err_input(err, "net: a tap name of 1..%d characters is required", IFNAMSIZ - 1);
    if (o->mac && parse_mac(o->mac, mac) < 0)
        return err_input(err, "net: mac `%s` is not a unicast xx:xx:xx:xx:xx:xx address", o->mac);
    struct tap_open t = {.name = o->tap, .netns = o->netns, .fd = -1};
    pthread_t th;
    if (pthread_create(&th, NULL, tap_thread, &t) != 0)
        return err_make(err, EAGAIN, "net: thread");
    pthread_join(th, NULL);
    if (t.fd < 0)
        return err_make(err, t.err, "net: %s `%s`", t.what,
                        strcmp(t.what, "network namespace") == 0 ? o->netns : o->tap);
    struct net *n = xcalloc(1, sizeof(*n));
    n->tap = t.fd;
    virtio_dev_init(&n->dev, &net_ops, n, VIRTIO_ID_NET,
                    (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_MRG_RXBUF), 2, 256);
    struct virtio_net_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    memcpy(cfg.mac, mac, 6);
    memcpy(n->dev.config, &cfg, sizeof(cfg));
    n->dev.config_len = sizeof(cfg);
    *out = &n->dev;
    return 0;
}
