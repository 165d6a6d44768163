/* virtio-vsock (virtio 1.2 section 5.10) in userspace, on Unix sockets, in
 * Firecracker's model (there is no /dev/vhost-vsock to lean on):
 *
 * - host-initiated: the device listens on PATH; a host client connects and
 *   writes "CONNECT <port>\n"; the device sends REQUEST to the guest's port;
 *   on RESPONSE it writes "OK <host-side port>\n" to the client and the
 *   socket carries the stream from then on; on RST it closes the client.
 * - guest-initiated: a REQUEST to cid 2 port P connects to the Unix socket
 *   PATH_P; if nothing listens there, the guest gets RST.
 *
 * Credit-based flow control both ways: the device never sends the guest
 * more than its buf_alloc minus what it has not yet consumed (tx_cnt -
 * fwd_cnt), and reads from a host socket only while the guest has credit
 * and receive buffers posted, so data waits in the host socket, not here.
 * The other way, the device advertises BUF_ALLOC per connection; bytes the
 * guest sends that the host socket cannot take at once wait in a
 * per-connection ring of that size (allocated the first time a host socket
 * blocks), and fwd_cnt only moves as they reach the host socket.
 *
 * Everything runs on the event thread: epoll on the listener and on every
 * host socket (EPOLLIN only while the device wants to read, EPOLLOUT only
 * while bytes wait for the host), never blocking and never spinning. The
 * state is one struct with a fixed table of connections. A device reset by
 * the driver (a vCPU thread) only marks the device; the event thread closes
 * the connections the guest knew about before it does anything else. */
#include <endian.h>
#include <errno.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_vsock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/evloop.h"
#include "virtio/devices.h"

#define Q_RX 0
#define Q_TX 1
#define Q_EVENT 2
#define HDR ((uint32_t)sizeof(struct virtio_vsock_hdr))
#define VSOCK_F_STREAM 0          /* virtio 1.2: stream sockets (implied if not offered) */
#define HOST_CID 2
#define MAX_CONNS 64
#define BUF_ALLOC (256u << 10)    /* what the device advertises per connection */
#define PKT_MAX (64u << 10)       /* largest payload in one packet, either way */
#define RST_MAX 128               /* RSTs waiting for a receive buffer */
#define CONNECT_LINE_MAX 32       /* "CONNECT 4294967295\n" is 19 bytes */
#define PUMP_BUDGET 256           /* receive buffers filled per turn of the event loop */
#define LOCAL_PORT_BASE (1u << 30) /* host-side ports of host-initiated connections */
#define SHUT_BOTH (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND)

enum conn_state {
    CONN_FREE = 0,
    CONN_HANDSHAKE,   /* a host client, its CONNECT line not complete yet */
    CONN_REQUESTING,  /* REQUEST owed or sent to the guest, waiting for RESPONSE */
    CONN_ESTABLISHED,
    CONN_CLOSING,     /* the host side is gone (fd closed): SHUTDOWN sent, waiting for RST */
};

/* Control packets a connection owes the guest. */
#define PEND_REQUEST 1u
#define PEND_RESPONSE 2u
#define PEND_SHUTDOWN 4u
#define PEND_CREDIT 8u

struct vsock;

struct vsock_conn {
    struct vsock *vs;
    uint8_t state;            /* enum conn_state */
    uint8_t pending;          /* PEND_* */
    uint8_t shut_to_guest;    /* SHUTDOWN flags the device sends (cumulative) */
    uint8_t guest_shut;       /* SHUTDOWN flags the guest sent (cumulative) */
    bool host_ready;          /* the host socket may have data: read it (EPOLLIN off) */
    bool host_eof;            /* the host socket said EOF: nothing more to read */
    bool host_hup;            /* the host peer is gone (HUP/ERR): out of epoll */
    bool host_shut_wr;        /* shutdown(SHUT_WR) done after the guest's SEND shutdown */
    bool watched;             /* fd is in the event loop, with `events` */
    int fd;
    uint32_t events;
    uint32_t local_port;      /* the host side's port */
    uint32_t peer_port;       /* the guest's port */
    /* host -> guest */
    uint32_t tx_cnt;          /* payload bytes sent to the guest */
    uint32_t peer_buf_alloc, peer_fwd_cnt;
    /* guest -> host */
    uint32_t rx_cnt;          /* payload bytes taken from the guest */
    uint32_t fwd_cnt;         /* of those, written to the host socket */
    uint32_t fwd_told;        /* fwd_cnt in the last packet to the guest */
    uint8_t *ring;            /* rx_cnt - fwd_cnt bytes for the host, from ring_head */
    uint32_t ring_head;
    /* the CONNECT line while in CONN_HANDSHAKE */
    uint8_t line_len;
    char line[CONNECT_LINE_MAX];
};

struct vsock_rst {
    uint32_t local_port, peer_port;
};

struct vsock {
    struct virtio_dev dev;
    uint64_t guest_cid;
    char *path;                     /* the listening socket; PATH_P for guest connections */
    int listen_fd, wake_fd;
    bool reset_pending;             /* the driver reset the device: drop its connections */
    uint32_t next_port;
    unsigned cursor;                /* round robin over connections when filling buffers */
    struct vsock_conn conns[MAX_CONNS];
    struct vsock_rst rst[RST_MAX];  /* a FIFO */
    unsigned rst_head, n_rst;
    struct virtq_chain rx_chain, tx_chain;
    struct iovec iov[VIRTQ_CHAIN_MAX];
};

static void conn_watch(struct vsock *vs, struct vsock_conn *c);
static void rx_pump(struct vsock *vs);

static void wake(struct vsock *vs)
{
    uint64_t one = 1;
    if (vs->wake_fd >= 0 && write(vs->wake_fd, &one, sizeof(one)) < 0)
        log_debug("virtio-vsock: wake: %s", strerror(errno));
}

/* The part [off, off+len) of an iovec array as iovecs in out; returns how many. */
static unsigned iov_slice(const struct iovec *iov, unsigned n, uint64_t off, uint64_t len,
                          struct iovec *out)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n && len; i++) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        uint64_t take = iov[i].iov_len - off;
        if (take > len)
            take = len;
        out[k++] = (struct iovec){(uint8_t *)iov[i].iov_base + off, take};
        len -= take;
        off = 0;
    }
    return k;
}

/* ---- connections ---- */

static struct vsock_conn *conn_find(struct vsock *vs, uint32_t local, uint32_t peer)
{
    for (unsigned i = 0; i < MAX_CONNS; i++) {
        struct vsock_conn *c = &vs->conns[i];
        if (c->state > CONN_HANDSHAKE && c->local_port == local && c->peer_port == peer)
            return c;
    }
    return NULL;
}

/* Whether the guest has heard of the connection (and must hear of its end). */
static bool conn_known(const struct vsock_conn *c)
{
    return c->state > CONN_HANDSHAKE &&
           !(c->state == CONN_REQUESTING && (c->pending & PEND_REQUEST));
}

/* Forget a connection: out of the loop, host socket closed, no packet. */
static void conn_free(struct vsock *vs, struct vsock_conn *c)
{
    if (c->watched && vs->dev.loop)
        evloop_del(vs->dev.loop, c->fd);
    if (c->fd >= 0)
        close(c->fd);
    free(c->ring);
    memset(c, 0, sizeof(*c));
    c->vs = vs;
    c->fd = -1;
}

static void rst_queue(struct vsock *vs, uint32_t local, uint32_t peer)
{
    if (vs->n_rst == RST_MAX) {
        log_debug("virtio-vsock: too many RSTs waiting for receive buffers; one dropped");
        return;
    }
    vs->rst[(vs->rst_head + vs->n_rst++) % RST_MAX] = (struct vsock_rst){local, peer};
}

/* A new connection takes this (local, peer) pair: an RST still waiting
 * for the pair's previous life must not reach it. */
static void rst_forget(struct vsock *vs, uint32_t local, uint32_t peer)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < vs->n_rst; i++) {
        struct vsock_rst r = vs->rst[(vs->rst_head + i) % RST_MAX];
        if (r.local_port != local || r.peer_port != peer)
            vs->rst[(vs->rst_head + kept++) % RST_MAX] = r;
    }
    vs->n_rst = kept;
}

/* End a connection abruptly: RST to the guest (if it knows it), close the host side. */
static void conn_reset(struct vsock *vs, struct vsock_conn *c)
{
    if (conn_known(c))
        rst_queue(vs, c->local_port, c->peer_port);
    conn_free(vs, c);
}

/* A free slot, or the oldest-looking closing connection (reset), or NULL. */
static struct vsock_conn *conn_alloc(struct vsock *vs)
{
    struct vsock_conn *closing = NULL;
    for (unsigned i = 0; i < MAX_CONNS; i++) {
        struct vsock_conn *c = &vs->conns[i];
        if (c->state == CONN_FREE)
            return c;
        if (c->state == CONN_CLOSING && closing == NULL)
            closing = c;
    }
    if (closing)
        conn_reset(vs, closing); /* the guest never answered its SHUTDOWN */
    return closing;
}

static uint32_t local_port_alloc(struct vsock *vs, uint32_t peer)
{
    for (;;) {
        uint32_t p = vs->next_port++;
        if (vs->next_port == 0)
            vs->next_port = LOCAL_PORT_BASE;
        if (conn_find(vs, p, peer) == NULL)
            return p;
    }
}

/* Bytes the guest can take on c now. */
static uint32_t conn_credit(const struct vsock_conn *c)
{
    uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static uint32_t conn_waiting(const struct vsock_conn *c)
{
    return c->rx_cnt - c->fwd_cnt;
}

/* Whether the device should read from the host socket into the guest. */
static bool conn_wants_data(const struct vsock_conn *c)
{
    return c->state == CONN_ESTABLISHED && c->host_ready && !c->host_eof &&
           !(c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_RCV) && conn_credit(c) > 0;
}

static bool conn_has_rx_work(const struct vsock_conn *c)
{
    if (c->state <= CONN_HANDSHAKE)
        return false;
    return c->pending || conn_wants_data(c);
}

/* The guest has used up half of the window it knows about: tell it. */
static void credit_check(struct vsock_conn *c)
{
    if (c->fwd_cnt - c->fwd_told >= BUF_ALLOC / 2)
        c->pending |= PEND_CREDIT;
}

/* Write waiting guest bytes to the host socket. Returns -1 if the host side
 * is broken, 0 otherwise (the rest waits for EPOLLOUT). */
static int host_flush(struct vsock_conn *c)
{
    while (conn_waiting(c)) {
        uint32_t n = conn_waiting(c);
        uint32_t first = BUF_ALLOC - c->ring_head < n ? BUF_ALLOC - c->ring_head : n;
        struct iovec iov[2] = {{c->ring + c->ring_head, first}, {c->ring, n - first}};
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = n > first ? 2 : 1};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        if (w <= 0)
            return -1;
        c->ring_head = (c->ring_head + (uint32_t)w) % BUF_ALLOC;
        c->fwd_cnt += (uint32_t)w;
    }
    if (conn_waiting(c) == 0)
        c->ring_head = 0;
    credit_check(c);
    return 0;
}

/* After any change: shut down or close what both sides are done with. */
static void conn_settle(struct vsock *vs, struct vsock_conn *c)
{
    if (c->state != CONN_ESTABLISHED)
        return;
    bool drained = conn_waiting(c) == 0;
    if (c->host_hup && !drained) {
        conn_reset(vs, c); /* bytes owed to a host peer that is gone */
        return;
    }
    if (c->guest_shut == SHUT_BOTH && drained) {
        conn_reset(vs, c); /* the guest's clean close: RST answers it */
        return;
    }
    if ((c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_SEND) && drained && !c->host_shut_wr) {
        shutdown(c->fd, SHUT_WR);
        c->host_shut_wr = true;
    }
    bool host_done = c->host_eof || (c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_RCV);
    if (c->host_hup && host_done) {
        /* the host side is finished both ways: tell the guest, wait for its RST */
        if (c->watched && vs->dev.loop)
            evloop_del(vs->dev.loop, c->fd);
        c->watched = false;
        close(c->fd);
        c->fd = -1;
        free(c->ring);
        c->ring = NULL;
        c->state = CONN_CLOSING;
        c->shut_to_guest = SHUT_BOTH;
        c->pending = (uint8_t)((c->pending & PEND_RESPONSE) | PEND_SHUTDOWN);
    }
}

static uint32_t conn_events(const struct vsock_conn *c)
{
    switch (c->state) {
    case CONN_HANDSHAKE: return EPOLLIN;
    case CONN_ESTABLISHED:
        return (!c->host_ready && !c->host_eof && !(c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_RCV)
                    ? EPOLLIN : 0) |
               (conn_waiting(c) ? EPOLLOUT : 0);
    default: return 0; /* HUP and ERR still arrive */
    }
}

static void on_conn(void *arg, uint32_t events);

/* Make the loop watch what the connection needs now (nothing once the
 * host peer hung up: HUP would fire for ever). */
static void conn_watch(struct vsock *vs, struct vsock_conn *c)
{
    struct evloop *loop = vs->dev.loop;
    if (c->fd < 0 || loop == NULL)
        return;
    if (c->host_hup) {
        if (c->watched)
            evloop_del(loop, c->fd);
        c->watched = false;
        return;
    }
    uint32_t want = conn_events(c);
    if (!c->watched) {
        struct err *e = NULL;
        if (evloop_add(loop, c->fd, want, on_conn, c, &e) < 0) {
            log_debug("virtio-vsock: %s", e->msg);
            err_free(&e);
            conn_reset(vs, c);
            return;
        }
        c->watched = true;
        c->events = want;
    } else if (want != c->events && evloop_mod(loop, c->fd, want) == 0) {
        c->events = want;
    }
}

/* ---- guest -> host ---- */

/* An RW packet's payload: straight to the host socket if nothing waits
 * before it, the rest into the connection's ring. */
static void host_write(struct vsock *vs, struct vsock_conn *c, const struct virtq_chain *ch,
                       uint32_t len)
{
    uint32_t waiting = conn_waiting(c);
    if (len > BUF_ALLOC - waiting) {
        log_debug("virtio-vsock: port %u: the guest sent past its credit", c->peer_port);
        conn_reset(vs, c);
        return;
    }
    c->rx_cnt += len;
    uint64_t off = HDR;
    if (waiting == 0 && len) {
        unsigned n = iov_slice(ch->out, ch->n_out, HDR, len, vs->iov);
        struct msghdr m = {.msg_iov = vs->iov, .msg_iovlen = n};
        ssize_t w;
        do
            w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (w < 0 && errno == EINTR);
        if (w < 0 && errno != EAGAIN) {
            conn_reset(vs, c); /* the host peer is gone */
            return;
        }
        if (w > 0) {
            c->fwd_cnt += (uint32_t)w;
            off += (uint64_t)w;
            len -= (uint32_t)w;
        }
    }
    if (len) {
        if (c->ring == NULL)
            c->ring = xmalloc(BUF_ALLOC);
        uint32_t at = (c->ring_head + waiting) % BUF_ALLOC;
        uint32_t first = BUF_ALLOC - at < len ? BUF_ALLOC - at : len;
        virtq_read(ch, off, c->ring + at, first);
        virtq_read(ch, off + first, c->ring, len - first);
    }
    credit_check(c);
}

/* The guest's RESPONSE to a host client's CONNECT: "OK <port>\n", then data. */
static void host_established(struct vsock *vs, struct vsock_conn *c)
{
    char ok[32];
    int n = snprintf(ok, sizeof(ok), "OK %u\n", c->local_port);
    if (send(c->fd, ok, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
        conn_reset(vs, c);
        return;
    }
    c->state = CONN_ESTABLISHED;
    c->host_ready = true; /* the client may have written already */
}

/* A guest REQUEST to the host's port P: connect to PATH_P. */
static void guest_connect(struct vsock *vs, uint32_t port, uint32_t peer, uint32_t buf_alloc,
                          uint32_t fwd_cnt)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", vs->path, port);
    struct vsock_conn *c = conn_alloc(vs);
    int fd = c ? socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0) : -1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        /* nobody listens (or the table is full): refused */
        log_debug("virtio-vsock: guest port %u -> %s: %s", peer, sa.sun_path,
                  c ? strerror(errno) : "too many connections");
        if (fd >= 0)
            close(fd);
        rst_queue(vs, port, peer);
        return;
    }
    rst_forget(vs, port, peer);
    c->state = CONN_ESTABLISHED;
    c->fd = fd;
    c->local_port = port;
    c->peer_port = peer;
    c->peer_buf_alloc = buf_alloc;
    c->peer_fwd_cnt = fwd_cnt;
    c->pending = PEND_RESPONSE;
    conn_watch(vs, c);
}

/* One packet the guest transmitted. Anything malformed is answered with
 * RST (never an RST with an RST) or dropped; it is not a broken ring. */
static uint32_t tx_packet(struct virtio_dev *d, struct virtq_chain *ch)
{
    struct vsock *vs = d->priv;
    struct virtio_vsock_hdr h;
    if (ch->out_len < HDR || virtq_read(ch, 0, &h, HDR) != HDR)
        return 0; /* not even a header: dropped */
    uint32_t src_port = le32toh(h.src_port), dst_port = le32toh(h.dst_port);
    uint32_t len = le32toh(h.len), flags = le32toh(h.flags);
    uint16_t op = le16toh(h.op);
    if (le64toh(h.src_cid) != vs->guest_cid)
        return 0; /* not from this guest's address: dropped */
    struct vsock_conn *c = conn_find(vs, dst_port, src_port);
    if (op == VIRTIO_VSOCK_OP_RST) {
        if (c)
            conn_free(vs, c);
        return 0;
    }
    bool bad = le64toh(h.dst_cid) != HOST_CID || le16toh(h.type) != VIRTIO_VSOCK_TYPE_STREAM ||
               len > PKT_MAX || len > ch->out_len - HDR || (op != VIRTIO_VSOCK_OP_RW && len);
    if (bad || (c == NULL && op != VIRTIO_VSOCK_OP_REQUEST)) {
        if (c)
            conn_reset(vs, c);
        else
            rst_queue(vs, dst_port, src_port);
        return 0;
    }
    if (c == NULL) {
        guest_connect(vs, dst_port, src_port, le32toh(h.buf_alloc), le32toh(h.fwd_cnt));
        return 0;
    }
    /* every packet of a connection carries the guest's credit */
    c->peer_buf_alloc = le32toh(h.buf_alloc);
    c->peer_fwd_cnt = le32toh(h.fwd_cnt);
    switch (op) {
    case VIRTIO_VSOCK_OP_RESPONSE:
        if (c->state == CONN_REQUESTING && !(c->pending & PEND_REQUEST))
            host_established(vs, c);
        else
            conn_reset(vs, c);
        break;
    case VIRTIO_VSOCK_OP_RW:
        if (c->state == CONN_ESTABLISHED && !(c->guest_shut & VIRTIO_VSOCK_SHUTDOWN_SEND))
            host_write(vs, c, ch, len);
        else
            conn_reset(vs, c);
        break;
    case VIRTIO_VSOCK_OP_SHUTDOWN:
        if (c->state == CONN_ESTABLISHED)
            c->guest_shut |= (uint8_t)(flags & SHUT_BOTH);
        else
            conn_reset(vs, c); /* CLOSING: this is the guest's goodbye; REQUESTING: nonsense */
        break;
    case VIRTIO_VSOCK_OP_CREDIT_UPDATE: break; /* taken above */
    case VIRTIO_VSOCK_OP_CREDIT_REQUEST: c->pending |= PEND_CREDIT; break;
    default: conn_reset(vs, c); break; /* REQUEST on a live pair, or an unknown op */
    }
    if (c->state != CONN_FREE) {
        conn_settle(vs, c);
        conn_watch(vs, c);
    }
    return 0;
}

/* ---- host -> guest ---- */

static void hdr_fill(struct vsock *vs, struct virtio_vsock_hdr *h, uint32_t local, uint32_t peer,
                     uint16_t op, uint32_t flags, uint32_t len, const struct vsock_conn *c)
{
    memset(h, 0, sizeof(*h));
    h->src_cid = htole64(HOST_CID);
    h->dst_cid = htole64(vs->guest_cid);
    h->src_port = htole32(local);
    h->dst_port = htole32(peer);
    h->len = htole32(len);
    h->type = htole16(VIRTIO_VSOCK_TYPE_STREAM);
    h->op = htole16(op);
    h->flags = htole32(flags);
    if (c) {
        h->buf_alloc = htole32(BUF_ALLOC);
        h->fwd_cnt = htole32(c->fwd_cnt);
    }
}

/* A control packet of c into the chain. */
static uint32_t put_control(struct vsock *vs, struct vsock_conn *c, struct virtq_chain *ch,
                            uint16_t op, uint32_t flags)
{
    struct virtio_vsock_hdr h;
    hdr_fill(vs, &h, c->local_port, c->peer_port, op, flags, 0, c);
    c->fwd_told = c->fwd_cnt;
    virtq_write(ch, 0, &h, HDR);
    return HDR;
}

/* Fill one receive buffer for c: a control packet or data read from the
 * host socket. Returns the bytes written, 0 if nothing went in (the state
 * changed instead: the socket was empty, said EOF, or broke). */
static uint32_t conn_rx_packet(struct vsock *vs, struct vsock_conn *c, struct virtq_chain *ch)
{
    if (c->pending & PEND_REQUEST) {
        c->pending &= (uint8_t)~PEND_REQUEST;
        return put_control(vs, c, ch, VIRTIO_VSOCK_OP_REQUEST, 0);
    }
    if (c->pending & PEND_RESPONSE) {
        c->pending &= (uint8_t)~PEND_RESPONSE;
        return put_control(vs, c, ch, VIRTIO_VSOCK_OP_RESPONSE, 0);
    }
    if (conn_wants_data(c)) {
        uint64_t max = ch->in_len - HDR;
        if (max > conn_credit(c))
            max = conn_credit(c);
        if (max > PKT_MAX)
            max = PKT_MAX;
        if (max == 0) /* a header-only buffer: good for a credit update only */
            return put_control(vs, c, ch, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0);
        unsigned n = iov_slice(ch->in, ch->n_in, HDR, max, vs->iov);
        struct msghdr m = {.msg_iov = vs->iov, .msg_iovlen = n};
        ssize_t r = recvmsg(c->fd, &m, MSG_DONTWAIT);
        if (r > 0) {
            struct virtio_vsock_hdr h;
            hdr_fill(vs, &h, c->local_port, c->peer_port, VIRTIO_VSOCK_OP_RW, 0, (uint32_t)r, c);
            virtq_write(ch, 0, &h, HDR);
            c->tx_cnt += (uint32_t)r;
            c->fwd_told = c->fwd_cnt;
            c->pending &= (uint8_t)~PEND_CREDIT; /* the header carried it */
            if ((uint64_t)r < max)
                c->host_ready = false; /* most likely drained: wait for EPOLLIN */
            return HDR + (uint32_t)r;
        }
        c->host_ready = false;
        if (r == 0) {
            /* EOF: the host will send no more */
            c->host_eof = true;
            c->shut_to_guest |= VIRTIO_VSOCK_SHUTDOWN_SEND;
            c->pending |= PEND_SHUTDOWN;
            conn_settle(vs, c);
        } else if (errno != EAGAIN && errno != EINTR) {
            conn_reset(vs, c);
        }
        return 0;
    }
    if (c->pending & PEND_SHUTDOWN) {
        c->pending &= (uint8_t)~PEND_SHUTDOWN;
        return put_control(vs, c, ch, VIRTIO_VSOCK_OP_SHUTDOWN, c->shut_to_guest);
    }
    if (c->pending & PEND_CREDIT) {
        c->pending &= (uint8_t)~PEND_CREDIT;
        return put_control(vs, c, ch, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0);
    }
    return 0;
}

/* The next connection with something for the guest, round robin. */
static struct vsock_conn *rx_next(struct vsock *vs)
{
    for (unsigned k = 0; k < MAX_CONNS; k++) {
        struct vsock_conn *c = &vs->conns[(vs->cursor + k) % MAX_CONNS];
        if (conn_has_rx_work(c))
            return c;
    }
    return NULL;
}

/* Fill the guest's receive buffers with what is owed: RSTs first, then
 * the connections' control packets and data, while buffers last. */
static void rx_pump(struct vsock *vs)
{
    struct virtio_dev *d = &vs->dev;
    struct virtq *q = &d->queues[Q_RX];
    struct virtq_chain *ch = &vs->rx_chain;
    bool pushed = false;
    unsigned turn;
    for (turn = 0; turn < PUMP_BUDGET; turn++) {
        if (!virtio_dev_running(d) || !q->ready)
            break;
        struct vsock_conn *c = vs->n_rst ? NULL : rx_next(vs);
        if (vs->n_rst == 0 && c == NULL)
            break;
        const char *why = NULL;
        int got = virtq_pop(q, d->mem, ch, &why);
        if (got < 0) {
            virtio_dev_needs_reset(d, why);
            break;
        }
        if (got == 0)
            break; /* no buffers: the guest kicks the receive queue when it posts some */
        if (ch->in_len < HDR) {
            virtq_push(q, ch->head, 0); /* too small for a packet: returned empty */
            pushed = true;
            continue;
        }
        uint32_t written;
        if (c == NULL) {
            struct vsock_rst r = vs->rst[vs->rst_head];
            vs->rst_head = (vs->rst_head + 1) % RST_MAX;
            vs->n_rst--;
            struct virtio_vsock_hdr h;
            hdr_fill(vs, &h, r.local_port, r.peer_port, VIRTIO_VSOCK_OP_RST, 0, 0, NULL);
            written = (uint32_t)virtq_write(ch, 0, &h, HDR);
        } else {
            written = conn_rx_packet(vs, c, ch);
            vs->cursor = (unsigned)(c - vs->conns + 1) % MAX_CONNS;
            if (c->state != CONN_FREE)
                conn_watch(vs, c);
        }
        if (written == 0) {
            virtq_unpop(q);
            continue;
        }
        virtq_push(q, ch->head, written);
        pushed = true;
    }
    if (pushed)
        virtio_dev_signal_used(d, Q_RX);
    if (turn == PUMP_BUDGET)
        wake(vs); /* more to do: after the other work of this loop turn */
}

/* ---- event thread entry points ---- */

/* The driver reset the device: every connection the guest knew is gone
 * (host sockets closed); host clients it never heard of keep waiting. */
static void settle_reset(struct vsock *vs)
{
    if (!vs->reset_pending)
        return;
    vs->reset_pending = false;
    for (unsigned i = 0; i < MAX_CONNS; i++)
        if (conn_known(&vs->conns[i]))
            conn_free(vs, &vs->conns[i]);
    vs->n_rst = vs->rst_head = 0;
    vs->cursor = 0;
}

/* A CONNECT line from a host client, "CONNECT <decimal port>\n". */
static int parse_connect(const char *s, size_t len, uint32_t *port)
{
    static const char cmd[] = "CONNECT ";
    size_t k = sizeof(cmd) - 1;
    if (len < k + 2 || memcmp(s, cmd, k) != 0 || s[len - 1] != '\n')
        return -1;
    uint64_t v = 0;
    size_t digits = len - 1 - k;
    if (digits > 10)
        return -1;
    for (size_t i = k; i < len - 1; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX)
        return -1;
    *port = (uint32_t)v;
    return 0;
}

/* Read a host client's CONNECT line without taking a byte past it (what
 * follows is stream data for the guest). */
static void handshake_read(struct vsock *vs, struct vsock_conn *c)
{
    char buf[CONNECT_LINE_MAX];
    size_t room = CONNECT_LINE_MAX - c->line_len;
    ssize_t n = recv(c->fd, buf, room, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_free(vs, c); /* gone before a whole line */
        return;
    }
    const char *nl = memchr(buf, '\n', (size_t)n);
    size_t take = nl ? (size_t)(nl - buf) + 1 : (size_t)n;
    if (recv(c->fd, c->line + c->line_len, take, MSG_DONTWAIT) != (ssize_t)take) {
        conn_free(vs, c);
        return;
    }
    c->line_len = (uint8_t)(c->line_len + take);
    if (nl == NULL) {
        if (c->line_len == CONNECT_LINE_MAX) {
            log_debug("virtio-vsock: a host client sent no CONNECT line");
            conn_free(vs, c);
        }
        return;
    }
    uint32_t port;
    if (parse_connect(c->line, c->line_len, &port) < 0) {
        log_debug("virtio-vsock: a host client sent a malformed CONNECT line");
        conn_free(vs, c);
        return;
    }
    c->peer_port = port;
    c->local_port = local_port_alloc(vs, port);
    rst_forget(vs, c->local_port, port);
    c->state = CONN_REQUESTING;
    c->pending = PEND_REQUEST;
    c->peer_buf_alloc = c->peer_fwd_cnt = 0;
}

static void on_conn(void *arg, uint32_t events)
{
    struct vsock_conn *c = arg;
    struct vsock *vs = c->vs;
    pthread_mutex_lock(&vs->dev.lock);
    settle_reset(vs);
    if (c->state != CONN_FREE && c->fd >= 0) {
        if (events & (EPOLLHUP | EPOLLERR))
            c->host_hup = true;
        switch (c->state) {
        case CONN_HANDSHAKE:
            handshake_read(vs, c);
            /* gone before the guest heard of it: no RST owed */
            if (c->host_hup && (c->state == CONN_HANDSHAKE || c->state == CONN_REQUESTING))
                conn_reset(vs, c);
            break;
        case CONN_REQUESTING:
            if (c->host_hup)
                conn_reset(vs, c); /* the client gave up waiting */
            break;
        case CONN_ESTABLISHED:
            if ((events & EPOLLIN) || c->host_hup)
                c->host_ready = true; /* what is left is still read, up to EOF */
            if (((events & EPOLLOUT) || c->host_hup) && host_flush(c) < 0) {
                conn_reset(vs, c);
                break;
            }
            conn_settle(vs, c);
            break;
        default: break;
        }
        if (c->state != CONN_FREE)
            conn_watch(vs, c);
        rx_pump(vs);
    }
    pthread_mutex_unlock(&vs->dev.lock);
}

static void on_accept(void *arg, uint32_t events)
{
    (void)events;
    struct vsock *vs = arg;
    pthread_mutex_lock(&vs->dev.lock);
    settle_reset(vs);
    for (int i = 0; i < 16; i++) {
        int fd = accept4(vs->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            break;
        struct vsock_conn *c = conn_alloc(vs);
        if (c == NULL) {
            log_debug("virtio-vsock: too many connections; a host client refused");
            close(fd);
            continue;
        }
        c->state = CONN_HANDSHAKE;
        c->fd = fd;
        conn_watch(vs, c);
    }
    rx_pump(vs); /* a reclaimed connection may owe an RST */
    pthread_mutex_unlock(&vs->dev.lock);
}

static void on_wake(void *arg, uint32_t events)
{
    (void)events;
    struct vsock *vs = arg;
    uint64_t n;
    if (read(vs->wake_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        log_debug("virtio-vsock: wake: %s", strerror(errno));
    pthread_mutex_lock(&vs->dev.lock);
    settle_reset(vs);
    rx_pump(vs);
    pthread_mutex_unlock(&vs->dev.lock);
}

/* ---- virtio_dev_ops ---- */

static void vsock_notify(struct virtio_dev *d, unsigned qi)
{
    struct vsock *vs = d->priv;
    settle_reset(vs);
    if (qi == Q_TX)
        virtio_queue_serve(d, Q_TX, &vs->tx_chain, tx_packet);
    /* Q_RX: new buffers; Q_EVENT: the device has no events to post */
    if (qi != Q_EVENT)
        rx_pump(vs);
}

static void vsock_activate(struct virtio_dev *d)
{
    wake(d->priv); /* host clients may be waiting for the guest */
}

static void vsock_reset(struct virtio_dev *d)
{
    struct vsock *vs = d->priv;
    vs->reset_pending = true; /* vCPU thread: the event thread closes the sockets */
    wake(vs);
}

static int vsock_attach(struct virtio_dev *d, struct err **err)
{
    struct vsock *vs = d->priv;
    if (evloop_add(d->loop, vs->wake_fd, EPOLLIN, on_wake, vs, err) < 0)
        return -1;
    return evloop_add(d->loop, vs->listen_fd, EPOLLIN, on_accept, vs, err);
}

static void vsock_destroy(struct virtio_dev *d)
{
    struct vsock *vs = d->priv;
    for (unsigned i = 0; i < MAX_CONNS; i++)
        conn_free(vs, &vs->conns[i]);
    if (d->loop) {
        evloop_del(d->loop, vs->wake_fd);
        evloop_del(d->loop, vs->listen_fd);
    }
    close(vs->wake_fd);
    close(vs->listen_fd);
    unlink(vs->path);
    free(vs->path);
    free(vs);
}

static const struct virtio_dev_ops vsock_ops = {
    .name = "vsock", .attach = vsock_attach, .notify = vsock_notify,
    .activate = vsock_activate, .reset = vsock_reset, .destroy = vsock_destroy,
};

int virtio_vsock_create(const struct virtio_vsock_opts *o, struct virtio_dev **out,
                        struct err **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (o->guest_cid < 3 || o->guest_cid > 0xfffffffeull)
        return err_input(err, "vsock: the guest cid must be in 3..4294967294");
    /* PATH_4294967295 must fit too: guest connections go there */
    if (o->uds_path == NULL || *o->uds_path == '\0' ||
        strlen(o->uds_path) + 11 >= sizeof(sa.sun_path))
        return err_input(err, "vsock: a socket path of 1..%zu bytes is required",
                         sizeof(sa.sun_path) - 12);
    strcpy(sa.sun_path, o->uds_path);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (lfd < 0)
        return err_make(err, errno, "vsock: socket");
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0) {
        int e = errno;
        close(lfd);
        return err_make(err, e, "vsock: socket `%s`", o->uds_path);
    }
    int wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wfd < 0) {
        int e = errno;
        close(lfd);
        unlink(o->uds_path);
        return err_make(err, e, "vsock: eventfd");
    }
    struct vsock *vs = xcalloc(1, sizeof(*vs));
    vs->guest_cid = o->guest_cid;
    vs->path = xstrdup(o->uds_path);
    vs->listen_fd = lfd;
    vs->wake_fd = wfd;
    vs->next_port = LOCAL_PORT_BASE;
    for (unsigned i = 0; i < MAX_CONNS; i++) {
        vs->conns[i].vs = vs;
        vs->conns[i].fd = -1;
    }
    virtio_dev_init(&vs->dev, &vsock_ops, vs, VIRTIO_ID_VSOCK, 1ull << VSOCK_F_STREAM, 3, 256);
    uint64_t cid = htole64(o->guest_cid);
    memcpy(vs->dev.config, &cid, sizeof(cid));
    vs->dev.config_len = sizeof(cid);
    *out = &vs->dev;
    return 0;
}
