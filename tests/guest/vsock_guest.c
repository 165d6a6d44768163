/* A test guest that drives cocoon's virtio-vsock at CPL3; the host side is
 * played by tests/guest/test_vsock.py through the device's Unix sockets.
 * It negotiates (VIRTIO_VSOCK_F_STREAM), checks guest_cid in config space
 * (cid=N), sets up rx, tx and event queues, then by mode=:
 *   server  port=P conns=K win=W: accept K host connections to port P, one
 *           at a time, and echo every byte back; REQUESTs to other ports
 *           get RST. Our buf_alloc is W and consumed bytes are advertised
 *           only when the window is full, so the device has to stop at
 *           exactly W every time (a byte past it fails the check).
 *           reset_after=B: reset the device once the first connection has
 *           brought B bytes (the host client must see its socket close).
 *   client  port=P bytes=N seed=S win=W [refused=Q]: connect to host port
 *           Q first (nobody listens: RST expected), then to P; send N
 *           pattern bytes within the device's credit and check, byte for
 *           byte, that the host echoes them back.
 *   hostile [overrun=Q]: malformed packets (short, wrong cid, wrong type,
 *           unknown op, bad length, data for no connection) must be
 *           dropped or answered with RST and nothing else; with overrun=Q,
 *           data sent past the device's credit to a host that never reads
 *           must end in RST, not before the credit ran out.
 * Options: split=1 (header and payload in separate descriptors),
 * indirect=1, event_idx=1, delay=T (T TSC ticks before the driver starts).
 * Every wait is bounded. */
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_vsock.h>

#include "libguest.h"
#include "virtio_drv.h"

#define Q_RX 0
#define Q_TX 1
#define Q_EV 2
#define HDR ((uint32_t)sizeof(struct virtio_vsock_hdr))
#define NSLOT 4           /* chains in flight per queue: gv_submit rotates 16-descriptor slots */
#define RXDATA 8192
#define TXDATA 16384
#define HOST_CID 2
#define SHUT_BOTH (VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND)
/* waits are bounded in TSC ticks (~20 s at 3 GHz), whatever a pause costs */
#define WAIT_TSC (60ull * 1000 * 1000 * 1000)

static const char *cmdline;
static struct gv_dev *dev;
static uint64_t cid;
static int split, use_indirect;

static uint8_t rxbuf[NSLOT][HDR + RXDATA] __attribute__((aligned(64)));
static uint8_t txbuf[NSLOT][HDR + TXDATA] __attribute__((aligned(64)));
static struct virtio_vsock_event evbuf __attribute__((aligned(8)));
static unsigned tx_inflight;

static uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}

static uint64_t opt(const char *key, uint64_t dflt)
{
    char v[64];
    return g_cmdline_get(cmdline, key, v, sizeof(v)) ? g_parse_u64(v) : dflt;
}

/* ---- queues ---- */

static void rx_post(unsigned slot)
{
    struct gv_buf two[2] = {{rxbuf[slot], HDR, 1}, {rxbuf[slot] + HDR, RXDATA, 1}};
    struct gv_buf one = {rxbuf[slot], HDR + RXDATA, 1};
    uint16_t head = split ? gv_submit(dev, Q_RX, two, 2, use_indirect)
                          : gv_submit(dev, Q_RX, &one, 1, use_indirect);
    G_CHECK(head == slot * 16, "rx buffer %u posted at head %u", slot, head);
}

/* Reset the device and set it up again: features, config, three queues,
 * receive and event buffers posted. */
static void vsock_init(void)
{
    uint64_t want = 1ull << 0; /* VIRTIO_VSOCK_F_STREAM */
    if (use_indirect)
        want |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
    if (opt("event_idx", 0))
        want |= 1ull << VIRTIO_RING_F_EVENT_IDX;
    gv_init(dev, want, 3);
    G_CHECK(dev->features & 1, "the device does not offer VIRTIO_VSOCK_F_STREAM");
    uint64_t c = gv_config64(dev, 0);
    G_CHECK(c == cid, "guest_cid %lu in config space, expected %lu", c, cid);
    for (unsigned i = 0; i < NSLOT; i++)
        rx_post(i);
    struct gv_buf e = {&evbuf, sizeof(evbuf), 1};
    gv_submit(dev, Q_EV, &e, 1, 0);
    tx_inflight = 0;
}

static void tx_reap(void)
{
    while (tx_inflight && gv_used_pending(dev, Q_TX)) {
        gv_wait(dev, Q_TX, 0);
        tx_inflight--;
    }
}

/* Transmit a header and `len` bytes after it (in one or two descriptors);
 * `chain_len` is what the chain really holds after the header. */
static void tx_raw(const struct virtio_vsock_hdr *h, uint32_t hdr_len, const void *data,
                   uint32_t chain_len)
{
    while (tx_inflight == NSLOT) {
        gv_wait(dev, Q_TX, 0);
        tx_inflight--;
    }
    unsigned slot = dev->q[Q_TX].avail_idx % NSLOT;
    memcpy(txbuf[slot], h, HDR);
    if (chain_len)
        memcpy(txbuf[slot] + HDR, data, chain_len);
    struct gv_buf b[2] = {{txbuf[slot], hdr_len, 0}, {txbuf[slot] + HDR, chain_len, 0}};
    unsigned n = chain_len ? 2 : 1;
    if (!split && chain_len && hdr_len == HDR) {
        b[0].len = HDR + chain_len;
        n = 1;
    }
    gv_submit(dev, Q_TX, b, n, use_indirect);
    tx_inflight++;
}

static void tx_send(uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t flags,
                    const void *data, uint32_t len, uint32_t buf_alloc, uint32_t fwd_cnt)
{
    struct virtio_vsock_hdr h = {
        .src_cid = cid, .dst_cid = HOST_CID, .src_port = src_port, .dst_port = dst_port,
        .len = len, .type = VIRTIO_VSOCK_TYPE_STREAM, .op = op, .flags = flags,
        .buf_alloc = buf_alloc, .fwd_cnt = fwd_cnt,
    };
    tx_raw(&h, HDR, data, len);
}

struct pkt {
    struct virtio_vsock_hdr h;
    const uint8_t *data;
    unsigned slot;
};

/* The next packet from the device, if one is waiting; checks its header. */
static int rx_get(struct pkt *p)
{
    if (!gv_used_pending(dev, Q_RX))
        return 0;
    uint16_t id;
    uint32_t written = gv_wait(dev, Q_RX, &id);
    unsigned slot = id / 16;
    G_CHECK(id % 16 == 0 && slot < NSLOT, "rx used id %u is not one of our buffers", id);
    G_CHECK(written >= HDR && written <= HDR + RXDATA, "an rx packet of %u bytes", written);
    memcpy(&p->h, rxbuf[slot], HDR);
    G_CHECK(p->h.len == written - HDR, "rx header says %u bytes, the device wrote %u", p->h.len,
            written - HDR);
    G_CHECK(p->h.src_cid == HOST_CID && p->h.dst_cid == cid &&
                p->h.type == VIRTIO_VSOCK_TYPE_STREAM,
            "rx header: src_cid %lu dst_cid %lu type %u", (uint64_t)p->h.src_cid,
            (uint64_t)p->h.dst_cid, p->h.type);
    G_CHECK(p->h.op >= VIRTIO_VSOCK_OP_REQUEST && p->h.op <= VIRTIO_VSOCK_OP_CREDIT_REQUEST,
            "rx op %u", p->h.op);
    G_CHECK(p->h.op == VIRTIO_VSOCK_OP_RW || p->h.len == 0, "op %u with a %u-byte payload",
            p->h.op, p->h.len);
    p->data = rxbuf[slot] + HDR;
    p->slot = slot;
    return 1;
}

/* Give the packet's buffer back (in the order packets came). */
static void rx_done(const struct pkt *p)
{
    rx_post(p->slot);
}

static void rx_wait(struct pkt *p, const char *what)
{
    for (uint64_t t0 = rdtsc(); !rx_get(p);) {
        G_CHECK(rdtsc() - t0 < WAIT_TSC, "no packet from the device while %s", what);
        tx_reap();
        __asm__ volatile("pause");
    }
}

/* ---- one stream connection, the driver's side ---- */

struct conn {
    int live;
    uint32_t port, peer;              /* ours, the host's */
    uint32_t win;                     /* our buf_alloc */
    uint32_t rx_cnt, fwd_cnt, fwd_told;
    uint32_t tx_cnt, peer_buf_alloc, peer_fwd_cnt;
    uint32_t peer_shut;
    int asked_credit, closing;
    uint64_t windows;
};

static uint32_t peer_credit(const struct conn *c)
{
    uint32_t used = c->tx_cnt - c->peer_fwd_cnt;
    return used >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - used;
}

static void send_ctl(struct conn *c, uint16_t op, uint32_t flags)
{
    tx_send(c->port, c->peer, op, flags, 0, 0, c->win, c->fwd_told);
}

/* Data arrived on c: it must fit the credit we advertised. */
static void check_credit(const struct conn *c, uint32_t len)
{
    G_CHECK(c->rx_cnt - c->fwd_told + len <= c->win,
            "the device sent %u bytes with %u of our credit left (buf_alloc %u)", len,
            c->win - (c->rx_cnt - c->fwd_told), c->win);
}

/* Send up to len bytes within the device's credit; returns how many went. */
static uint32_t send_data(struct conn *c, const uint8_t *p, uint32_t len)
{
    uint32_t cr = peer_credit(c);
    if (cr == 0) {
        if (!c->asked_credit)
            send_ctl(c, VIRTIO_VSOCK_OP_CREDIT_REQUEST, 0);
        c->asked_credit = 1;
        return 0;
    }
    if (len > cr)
        len = cr;
    if (len > TXDATA)
        len = TXDATA;
    tx_send(c->port, c->peer, VIRTIO_VSOCK_OP_RW, 0, p, len, c->win, c->fwd_told);
    c->tx_cnt += len;
    return len;
}

/* ---- server: echo host connections ---- */

static uint8_t echo[1 << 20];

static void echo_pump(struct conn *c)
{
    while (c->fwd_cnt != c->rx_cnt) {
        uint32_t off = c->fwd_cnt % c->win, n = c->rx_cnt - c->fwd_cnt;
        if (n > c->win - off)
            n = c->win - off;
        uint32_t sent = send_data(c, echo + off, n);
        if (sent == 0)
            return;
        c->fwd_cnt += sent;
    }
    /* all echoed and the window used up: now (only now) advertise it */
    if (c->rx_cnt - c->fwd_told == c->win) {
        c->fwd_told = c->fwd_cnt;
        c->windows++;
        send_ctl(c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0);
    }
}

static const char *op_name(uint16_t op)
{
    static const char *const names[] = {"INVALID", "REQUEST", "RESPONSE", "RST", "SHUTDOWN",
                                        "RW", "CREDIT_UPDATE", "CREDIT_REQUEST"};
    return op < 8 ? names[op] : "?";
}

static void run_server(void)
{
    uint32_t port = (uint32_t)opt("port", 1234), win = (uint32_t)opt("win", 65536);
    uint64_t conns = opt("conns", 1), reset_after = opt("reset_after", 0);
    G_CHECK(win >= 1 && win <= sizeof(echo), "win=%u is not in 1..%lu", win, sizeof(echo));
    static struct conn c;
    for (uint64_t served = 0; served < conns;) {
        struct pkt p;
        rx_wait(&p, "serving");
        const struct virtio_vsock_hdr *h = &p.h;
        if (!(c.live && h->dst_port == c.port && h->src_port == c.peer)) {
            if (h->op == VIRTIO_VSOCK_OP_REQUEST && !c.live && h->dst_port == port) {
                c = (struct conn){.live = 1, .port = port, .peer = h->src_port, .win = win,
                                  .peer_buf_alloc = h->buf_alloc, .peer_fwd_cnt = h->fwd_cnt};
                send_ctl(&c, VIRTIO_VSOCK_OP_RESPONSE, 0);
                g_print("vsock: connection %lu from host port %u accepted", served, c.peer);
            } else if (h->op != VIRTIO_VSOCK_OP_RST) {
                g_print("vsock: %s for port %u refused", op_name(h->op), h->dst_port);
                tx_send(h->dst_port, h->src_port, VIRTIO_VSOCK_OP_RST, 0, 0, 0, 0, 0);
            }
            rx_done(&p);
            continue;
        }
        if (h->buf_alloc != c.peer_buf_alloc || h->fwd_cnt != c.peer_fwd_cnt)
            c.asked_credit = 0; /* new credit: ask again when it runs out */
        c.peer_buf_alloc = h->buf_alloc;
        c.peer_fwd_cnt = h->fwd_cnt;
        const char *end = 0;
        switch (h->op) {
        case VIRTIO_VSOCK_OP_RW: {
            check_credit(&c, h->len);
            uint32_t at = c.rx_cnt % c.win, first = c.win - at < h->len ? c.win - at : h->len;
            memcpy(echo + at, p.data, first);
            memcpy(echo, p.data + first, h->len - first);
            c.rx_cnt += h->len;
            break;
        }
        case VIRTIO_VSOCK_OP_SHUTDOWN: c.peer_shut |= h->flags; break;
        case VIRTIO_VSOCK_OP_RST: end = "RST"; break;
        case VIRTIO_VSOCK_OP_CREDIT_UPDATE: break;
        case VIRTIO_VSOCK_OP_CREDIT_REQUEST: send_ctl(&c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0); break;
        default: g_fail("vsock: unexpected %s on an open connection", op_name(h->op));
        }
        rx_done(&p);
        if (!end && reset_after && served == 0 && c.rx_cnt >= reset_after) {
            g_print("vsock: resetting the device after %u bytes", c.rx_cnt);
            vsock_init();
            end = "a device reset";
        }
        if (!end && !c.closing) {
            if ((c.peer_shut & SHUT_BOTH) == SHUT_BOTH) {
                send_ctl(&c, VIRTIO_VSOCK_OP_RST, 0); /* the host is gone both ways */
                end = "SHUTDOWN";
            } else {
                echo_pump(&c);
                if ((c.peer_shut & VIRTIO_VSOCK_SHUTDOWN_SEND) && c.fwd_cnt == c.rx_cnt) {
                    send_ctl(&c, VIRTIO_VSOCK_OP_SHUTDOWN, SHUT_BOTH); /* done: close */
                    c.closing = 1;
                }
            }
        }
        if (end) {
            g_print("vsock: connection %lu ended by %s: %u bytes received, %u echoed, %lu full "
                    "windows", served, end, c.rx_cnt, c.tx_cnt, c.windows);
            c.live = 0;
            served++;
        }
    }
}

/* ---- client: connect to the host, send a pattern, check the echo ---- */

static uint8_t pattern(uint32_t i, uint32_t seed)
{
    return (uint8_t)(i * 7 + (i >> 8) * 131 + (i >> 16) * 17 + seed);
}

static void run_client(void)
{
    uint32_t port = (uint32_t)opt("port", 5000), win = (uint32_t)opt("win", 65536);
    uint32_t seed = (uint32_t)opt("seed", 1), refused = (uint32_t)opt("refused", 0);
    uint32_t bytes = (uint32_t)opt("bytes", 1 << 20);
    struct pkt p;
    if (refused) {
        tx_send(2000, refused, VIRTIO_VSOCK_OP_REQUEST, 0, 0, 0, win, 0);
        rx_wait(&p, "connecting to a port nobody listens on");
        G_CHECK(p.h.op == VIRTIO_VSOCK_OP_RST && p.h.src_port == refused && p.h.dst_port == 2000,
                "connect to host port %u answered %s (%u -> %u), expected RST", refused,
                op_name(p.h.op), p.h.src_port, p.h.dst_port);
        rx_done(&p);
        g_print("vsock: connect to host port %u refused (RST)", refused);
    }
    struct conn c = {.live = 1, .port = 1025, .peer = port, .win = win};
    send_ctl(&c, VIRTIO_VSOCK_OP_REQUEST, 0);
    rx_wait(&p, "connecting");
    G_CHECK(p.h.op == VIRTIO_VSOCK_OP_RESPONSE && p.h.src_port == port && p.h.dst_port == c.port,
            "connect to host port %u answered %s", port, op_name(p.h.op));
    c.peer_buf_alloc = p.h.buf_alloc;
    c.peer_fwd_cnt = p.h.fwd_cnt;
    rx_done(&p);
    g_print("vsock: connected to host port %u (device buf_alloc %u)", port, c.peer_buf_alloc);
    static uint8_t out[TXDATA];
    int shut_sent = 0;
    uint64_t last = rdtsc();
    while (c.live) {
        int progress = 0;
        if (c.tx_cnt < bytes) {
            uint32_t n = bytes - c.tx_cnt < TXDATA ? bytes - c.tx_cnt : TXDATA;
            for (uint32_t i = 0; i < n; i++)
                out[i] = pattern(c.tx_cnt + i, seed);
            progress |= send_data(&c, out, n) > 0;
        } else if (!shut_sent) {
            send_ctl(&c, VIRTIO_VSOCK_OP_SHUTDOWN, VIRTIO_VSOCK_SHUTDOWN_SEND);
            shut_sent = 1;
        }
        while (c.live && rx_get(&p)) {
            progress = 1;
            const struct virtio_vsock_hdr *h = &p.h;
            G_CHECK(h->src_port == c.peer && h->dst_port == c.port, "a packet for %u -> %u",
                    h->src_port, h->dst_port);
            if (h->buf_alloc != c.peer_buf_alloc || h->fwd_cnt != c.peer_fwd_cnt)
                c.asked_credit = 0;
            c.peer_buf_alloc = h->buf_alloc;
            c.peer_fwd_cnt = h->fwd_cnt;
            if (h->op == VIRTIO_VSOCK_OP_RW) {
                check_credit(&c, h->len);
                for (uint32_t i = 0; i < h->len; i++)
                    G_CHECK(p.data[i] == pattern(c.rx_cnt + i, seed),
                            "echoed byte %u is %u, expected %u", c.rx_cnt + i, p.data[i],
                            pattern(c.rx_cnt + i, seed));
                c.rx_cnt += h->len;
                c.fwd_cnt = c.rx_cnt; /* consumed at once */
                G_CHECK(c.rx_cnt <= bytes, "%u bytes echoed, only %u sent", c.rx_cnt, bytes);
            } else if (h->op == VIRTIO_VSOCK_OP_SHUTDOWN) {
                c.peer_shut |= h->flags;
            } else if (h->op == VIRTIO_VSOCK_OP_RST) {
                c.live = 0;
            } else if (h->op == VIRTIO_VSOCK_OP_CREDIT_REQUEST) {
                c.fwd_told = c.fwd_cnt;
                send_ctl(&c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0);
            } else {
                G_CHECK(h->op == VIRTIO_VSOCK_OP_CREDIT_UPDATE, "unexpected %s", op_name(h->op));
            }
            rx_done(&p);
            if (c.fwd_cnt - c.fwd_told >= c.win / 2) {
                c.fwd_told = c.fwd_cnt;
                send_ctl(&c, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 0);
            }
            if (c.live && (c.peer_shut & SHUT_BOTH) == SHUT_BOTH) {
                send_ctl(&c, VIRTIO_VSOCK_OP_RST, 0);
                c.live = 0;
            }
        }
        tx_reap();
        if (progress)
            last = rdtsc();
        G_CHECK(rdtsc() - last < WAIT_TSC, "client: stuck with %u sent, %u echoed, credit %u", c.tx_cnt,
                c.rx_cnt, peer_credit(&c));
        if (!progress)
            __asm__ volatile("pause");
    }
    G_CHECK(c.rx_cnt == bytes, "the connection ended with %u of %u bytes echoed", c.rx_cnt, bytes);
    g_print("vsock: client: %u bytes sent to host port %u and echoed back", bytes, port);
}

/* ---- hostile packets ---- */

static uint8_t junk[TXDATA];

static void run_hostile(void)
{
    struct virtio_vsock_hdr h;
    /* a packet shorter than a header: dropped */
    h = (struct virtio_vsock_hdr){.src_cid = cid, .dst_cid = HOST_CID, .src_port = 3001,
                                  .dst_port = 7001, .type = 1, .op = VIRTIO_VSOCK_OP_REQUEST};
    tx_raw(&h, 20, 0, 0);
    /* another guest's address: dropped */
    h.src_cid = cid + 1;
    h.src_port = 3002;
    h.dst_port = 7002;
    tx_raw(&h, HDR, 0, 0);
    h.src_cid = cid;
    /* RST expected for each of these (local port 3000+k) */
    static const uint16_t expect[] = {3003, 3004, 3005, 3006, 3007, 3008, 3010};
    h.dst_cid = 7; /* not the host */
    h.src_port = 3003;
    h.dst_port = 7003;
    tx_raw(&h, HDR, 0, 0);
    h.dst_cid = HOST_CID;
    h.type = VIRTIO_VSOCK_TYPE_SEQPACKET;
    h.src_port = 3004;
    h.dst_port = 7004;
    tx_raw(&h, HDR, 0, 0);
    h.type = VIRTIO_VSOCK_TYPE_STREAM;
    h.op = 99;
    h.src_port = 3005;
    h.dst_port = 7005;
    tx_raw(&h, HDR, 0, 0);
    h.op = VIRTIO_VSOCK_OP_RW; /* data for no connection */
    h.len = 100;
    h.src_port = 3006;
    h.dst_port = 7006;
    tx_raw(&h, HDR, junk, 100);
    h.len = 5000; /* more than the packet holds */
    h.src_port = 3007;
    h.dst_port = 7007;
    tx_raw(&h, HDR, junk, 100);
    h.op = VIRTIO_VSOCK_OP_CREDIT_REQUEST; /* a payload on a control packet, no connection */
    h.len = 10;
    h.src_port = 3008;
    h.dst_port = 7008;
    tx_raw(&h, HDR, junk, 10);
    h.op = VIRTIO_VSOCK_OP_RST; /* an RST is never answered */
    h.len = 0;
    h.src_port = 3009;
    h.dst_port = 7009;
    tx_raw(&h, HDR, 0, 0);
    h.op = VIRTIO_VSOCK_OP_REQUEST; /* nobody listens on PATH_7010 */
    h.src_port = 3010;
    h.dst_port = 7010;
    h.buf_alloc = 4096;
    tx_raw(&h, HDR, 0, 0);
    for (unsigned i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        struct pkt p;
        rx_wait(&p, "waiting for RSTs to hostile packets");
        G_CHECK(p.h.op == VIRTIO_VSOCK_OP_RST && p.h.dst_port == expect[i] &&
                    p.h.src_port == expect[i] + 4000u,
                "hostile packet %u: the device answered %s %u -> %u, expected RST to %u", i,
                op_name(p.h.op), p.h.src_port, p.h.dst_port, expect[i]);
        rx_done(&p);
    }
    G_CHECK(!(gv_read32(dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET),
            "hostile packets made the device need a reset");
    g_print("vsock: hostile packets dropped or answered with RST");

    uint32_t port = (uint32_t)opt("overrun", 0);
    if (port == 0)
        return;
    struct conn c = {.live = 1, .port = 1026, .peer = port, .win = 65536};
    send_ctl(&c, VIRTIO_VSOCK_OP_REQUEST, 0);
    struct pkt p;
    rx_wait(&p, "connecting for the overrun");
    G_CHECK(p.h.op == VIRTIO_VSOCK_OP_RESPONSE, "connect to %u answered %s", port,
            op_name(p.h.op));
    uint32_t credit = p.h.buf_alloc;
    rx_done(&p);
    /* send past the credit (the host never reads) until the device says RST */
    for (uint32_t sent = 0;;) {
        G_CHECK(sent < (16u << 20), "16 MiB past a %u-byte credit and no RST", credit);
        tx_send(c.port, c.peer, VIRTIO_VSOCK_OP_RW, 0, junk, TXDATA, c.win, 0);
        sent += TXDATA;
        int rst = 0;
        while (rx_get(&p)) {
            rst |= p.h.op == VIRTIO_VSOCK_OP_RST && p.h.dst_port == c.port;
            rx_done(&p);
        }
        if (rst) {
            G_CHECK(sent > credit, "RST after %u bytes, within the %u-byte credit", sent, credit);
            g_print("vsock: sending past the credit got RST after %u bytes (credit %u)", sent,
                    credit);
            break;
        }
    }
}

void guest_main(const struct g_boot *b)
{
    cmdline = b->cmdline;
    g_print("cmdline: %s", cmdline);
    use_indirect = (int)opt("indirect", 0);
    split = (int)opt("split", 0);
    cid = opt("cid", 3);
    static struct gv_dev devs[GV_MAX_DEVS];
    unsigned n = gv_find(cmdline, devs, GV_MAX_DEVS);
    for (unsigned i = 0; i < n && !dev; i++)
        if (devs[i].id == VIRTIO_ID_VSOCK)
            dev = &devs[i];
    G_CHECK(dev != 0, "no virtio-vsock device among %u", n);
    /* delay=T: wait T TSC ticks first (host clients connect before the driver) */
    for (uint64_t t0 = rdtsc(), t = opt("delay", 0); rdtsc() - t0 < t;)
        __asm__ volatile("pause");
    vsock_init();
    g_print("vsock: device ready, guest cid %lu", cid);
    char mode[16];
    if (!g_cmdline_get(cmdline, "mode", mode, sizeof(mode)))
        mode[0] = 0;
    if (g_strncmp(mode, "server", 7) == 0)
        run_server();
    else if (g_strncmp(mode, "client", 7) == 0)
        run_client();
    else if (g_strncmp(mode, "hostile", 8) == 0)
        run_hostile();
    else
        g_fail("mode=server|client|hostile expected, got `%s`", mode);
    tx_reap();
    g_exit(opt("exit", 0));
}
