/* A test guest that drives cocoon's virtio-console with extra ports
 * (VIRTIO_CONSOLE_F_MULTIPORT) at CPL3; tests/guest/test_virtio_console.py plays
 * the host side on the ports' Unix sockets and files. Options:
 *   ports=N     max_nr_ports expected in config space; 1: MULTIPORT must not
 *               be offered, and the guest only greets on port 0
 *   nameK=S     port K must be named S (PORT_NAME); unnamed ports get none
 *   open=DIGITS one per port: 1 = its host side must be reported connected
 *               (PORT_OPEN) before data moves; 0 = must not be; - = either
 *   late=1      after port 1's greeting went out, wait until port 1 is
 *               reported connected (its client connects late)
 *   nomulti=1   do not take MULTIPORT although offered: port 0 still works
 *   hostile=1   first send malformed control messages (short, unknown
 *               event, bad port ids, DEVICE_READY 0, empty chains): ignored,
 *               no reply, no NEEDS_RESET
 *   reset=1     after the handshake, reset the device and do it again
 *   bytes=N seed=S  port 1 moves N bytes each way: host pattern in (checked
 *               here byte for byte), guest pattern out (checked by the host)
 *   console_echo=K  port 0 reads K bytes and writes "echo0:" and them back
 *   closed=1    at the end, wait until the device reports port 1's host
 *               side closed (PORT_OPEN 0)
 * Sequence: DEVICE_READY; DEVICE_ADD for every port answered with
 * PORT_READY once its receive buffers are posted; CONSOLE_PORT (port 0
 * only), PORT_NAME, PORT_OPEN as expected; PORT_OPEN 1 from the guest for
 * the extra ports; a greeting on port 0, then on port 1; the transfer on
 * port 1; a line on port 2 (if any); the echo on port 0. Any control
 * message not expected fails the guest. Every wait is bounded. */
#include <linux/virtio_config.h>
#include <linux/virtio_console.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include "libguest.h"
#include "virtio_drv.h"

#define MAXP 3                  /* ports this guest handles (8 queues) */
#define Q_CRX 2
#define Q_CTX 3
#define NSLOT 4                 /* chains in flight per queue (16-descriptor slots) */
#define CHUNK 4096
#define CTL_LEN 128
#define WAIT_TSC (60ull * 1000 * 1000 * 1000)

static const char *cmdline;
static struct gv_dev *dev;
static int use_indirect, multi;
static unsigned nports;

static uint8_t ctl_rx[NSLOT][CTL_LEN] __attribute__((aligned(64)));
static uint8_t ctl_tx[NSLOT][CTL_LEN] __attribute__((aligned(64)));
static unsigned ctl_tx_inflight;
static uint8_t port_rx[MAXP][NSLOT][CHUNK] __attribute__((aligned(64)));
static uint8_t port_tx[MAXP][NSLOT][CHUNK] __attribute__((aligned(64)));
static unsigned tx_inflight[MAXP];
/* the receive buffer being read on each port (NSLOT: none) */
static uint32_t rx_pos[MAXP], rx_len[MAXP];
static unsigned rx_slot[MAXP];

/* What the device told us about each port. */
static struct {
    int added, console, named, open;
} seen[MAXP];

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

static unsigned rxq(unsigned port)
{
    return port == 0 ? 0 : 2 + 2 * port;
}

static const char *event_name(uint16_t e)
{
    static const char *const names[] = {"DEVICE_READY", "DEVICE_ADD", "DEVICE_REMOVE",
                                        "PORT_READY", "CONSOLE_PORT", "RESIZE",
                                        "PORT_OPEN", "PORT_NAME"};
    return e < 8 ? names[e] : "?";
}

/* ---- control queues ---- */

static void ctl_tx_reap(void)
{
    while (ctl_tx_inflight && gv_used_pending(dev, Q_CTX)) {
        gv_wait(dev, Q_CTX, 0);
        ctl_tx_inflight--;
    }
}

/* Send raw bytes on the control transmit queue (len 0: an empty chain). */
static void ctl_send_raw(const void *p, uint32_t len)
{
    while (ctl_tx_inflight == NSLOT) {
        gv_wait(dev, Q_CTX, 0);
        ctl_tx_inflight--;
    }
    unsigned slot = dev->q[Q_CTX].avail_idx % NSLOT;
    memcpy(ctl_tx[slot], p, len);
    struct gv_buf b = {ctl_tx[slot], len, 0};
    gv_submit(dev, Q_CTX, &b, 1, use_indirect);
    ctl_tx_inflight++;
}

static void ctl_send(uint32_t id, uint16_t event, uint16_t value)
{
    struct virtio_console_control m = {.id = id, .event = event, .value = value};
    ctl_send_raw(&m, sizeof(m));
}

static void ctl_post(unsigned slot)
{
    struct gv_buf b = {ctl_rx[slot], CTL_LEN, 1};
    uint16_t head = gv_submit(dev, Q_CRX, &b, 1, use_indirect);
    G_CHECK(head == slot * 16, "control buffer %u posted at head %u", slot, head);
}

static void post_port_rx(unsigned port, unsigned slot)
{
    struct gv_buf b = {port_rx[port][slot], CHUNK, 1};
    gv_submit(dev, rxq(port), &b, 1, use_indirect);
}

/* 1, 0, or -1 (either) */
static int expected_open(unsigned port)
{
    char bits[16];
    if (!g_cmdline_get(cmdline, "open", bits, sizeof(bits)) || port >= g_strlen(bits))
        return 0;
    return bits[port] == '-' ? -1 : bits[port] == '1';
}

/* One control message from the device, checked against the protocol. */
static void ctl_handle(const uint8_t *buf, uint32_t len)
{
    G_CHECK(len >= sizeof(struct virtio_console_control), "a %u-byte control message", len);
    struct virtio_console_control m;
    memcpy(&m, buf, sizeof(m));
    G_CHECK(m.id < nports, "%s for port %u of %u", event_name(m.event), m.id, nports);
    unsigned id = m.id;
    switch (m.event) {
    case VIRTIO_CONSOLE_PORT_ADD:
        G_CHECK(!seen[id].added && m.value == 1, "DEVICE_ADD %u twice or with value %u", id,
                m.value);
        G_CHECK(len == sizeof(m), "DEVICE_ADD with %u bytes", len);
        seen[id].added = 1;
        for (unsigned s = 0; s < NSLOT; s++)
            post_port_rx(id, s);
        ctl_send(id, VIRTIO_CONSOLE_PORT_READY, 1);
        break;
    case VIRTIO_CONSOLE_CONSOLE_PORT:
        G_CHECK(id == 0 && m.value == 1 && seen[0].added && !seen[0].console,
                "CONSOLE_PORT for port %u (value %u)", id, m.value);
        seen[0].console = 1;
        break;
    case VIRTIO_CONSOLE_PORT_NAME: {
        char key[8] = {'n', 'a', 'm', 'e', (char)('0' + id), 0};
        char want[80];
        G_CHECK(g_cmdline_get(cmdline, key, want, sizeof(want)), "PORT_NAME for unnamed port %u",
                id);
        uint32_t n = len - (uint32_t)sizeof(m);
        G_CHECK(n == g_strlen(want) && g_strncmp((const char *)buf + sizeof(m), want, n) == 0,
                "port %u: a %u-byte name, expected `%s`", id, n, want);
        G_CHECK(seen[id].added && !seen[id].named, "PORT_NAME %u before DEVICE_ADD or twice", id);
        seen[id].named = 1;
        break;
    }
    case VIRTIO_CONSOLE_PORT_OPEN:
        G_CHECK(seen[id].added, "PORT_OPEN for port %u before DEVICE_ADD", id);
        G_CHECK(m.value <= 1 && m.value != seen[id].open, "PORT_OPEN %u says %u again", id,
                m.value);
        seen[id].open = m.value;
        g_print("console: port %u host side %s", id, m.value ? "connected" : "closed");
        break;
    default:
        g_fail("unexpected control message %s (%u) for port %u", event_name(m.event), m.event, id);
    }
}

/* Handle every control message waiting; returns how many. */
static unsigned ctl_poll(void)
{
    unsigned n = 0;
    if (!multi)
        return 0;
    ctl_tx_reap();
    while (gv_used_pending(dev, Q_CRX)) {
        uint16_t head;
        uint32_t len = gv_wait(dev, Q_CRX, &head);
        unsigned slot = head / 16;
        G_CHECK(head % 16 == 0 && slot < NSLOT, "control used id %u", head);
        G_CHECK(len <= CTL_LEN, "control message of %u bytes", len);
        static uint8_t copy[CTL_LEN];
        memcpy(copy, ctl_rx[slot], len);
        ctl_post(slot);
        ctl_handle(copy, len);
        n++;
    }
    return n;
}

static int handshake_done(void)
{
    for (unsigned i = 0; i < nports; i++) {
        char key[8] = {'n', 'a', 'm', 'e', (char)('0' + i), 0}, v[80];
        if (!seen[i].added || (expected_open(i) == 1 && !seen[i].open))
            return 0;
        if (g_cmdline_get(cmdline, key, v, sizeof(v)) && !seen[i].named)
            return 0;
    }
    return seen[0].console;
}

/* Malformed control messages: each must be ignored, none answered. */
static void hostile(void)
{
    static const uint8_t short_msg[4] = {0, 0, 0, 0};
    ctl_send_raw(short_msg, sizeof(short_msg));        /* shorter than a message */
    ctl_send_raw(short_msg, 0);                        /* an empty chain */
    ctl_send(99, VIRTIO_CONSOLE_PORT_READY, 1);        /* no such port */
    ctl_send(0xfffffffe, VIRTIO_CONSOLE_PORT_OPEN, 1); /* no such port */
    ctl_send(0, 77, 1);                                /* no such event */
    ctl_send(1, VIRTIO_CONSOLE_PORT_ADD, 1);           /* only the device adds ports */
    ctl_send(0xffffffff, VIRTIO_CONSOLE_DEVICE_READY, 0); /* the driver failed: nothing */
    uint64_t t0 = rdtsc();
    while (rdtsc() - t0 < 300000000ull) /* ~0.1 s: any answer would have come */
        G_CHECK(ctl_poll() == 0, "a malformed control message was answered");
    G_CHECK(!(gv_read32(dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET),
            "malformed control messages made the device need a reset");
    g_print("console: malformed control messages ignored");
}

/* Reset and set the device up; with MULTIPORT, the whole handshake. */
static void console_init(void)
{
    uint64_t want = multi ? 1ull << VIRTIO_CONSOLE_F_MULTIPORT : 0;
    if (use_indirect)
        want |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
    if (opt("event_idx", 0))
        want |= 1ull << VIRTIO_RING_F_EVENT_IDX;
    gv_init(dev, want, multi ? 2 * (nports + 1) : 2);
    memset(seen, 0, sizeof(seen));
    memset(tx_inflight, 0, sizeof(tx_inflight));
    for (unsigned i = 0; i < MAXP; i++) {
        rx_slot[i] = NSLOT;
        rx_pos[i] = rx_len[i] = 0;
    }
    ctl_tx_inflight = 0;
    if (!multi) {
        for (unsigned s = 0; s < NSLOT; s++)
            post_port_rx(0, s);
        return;
    }
    for (unsigned s = 0; s < NSLOT; s++)
        ctl_post(s);
    if (opt("hostile", 0))
        hostile();
    ctl_send(0xffffffff, VIRTIO_CONSOLE_DEVICE_READY, 1);
    for (uint64_t t0 = rdtsc(); !handshake_done();) {
        if (!ctl_poll())
            __asm__ volatile("pause");
        G_CHECK(rdtsc() - t0 < WAIT_TSC, "handshake: port 0 added %d console %d open %d",
                seen[0].added, seen[0].console, seen[0].open);
    }
    for (unsigned i = 0; i < nports; i++)
        G_CHECK(expected_open(i) < 0 || seen[i].open == expected_open(i),
                "port %u: host side open %d", i, seen[i].open);
    for (unsigned i = 1; i < nports; i++)
        ctl_send(i, VIRTIO_CONSOLE_PORT_OPEN, 1); /* as if a program opened /dev/vport0pN */
    g_print("console: %u ports added, named and open as expected", nports);
}

/* ---- data ---- */

static void port_send(unsigned port, const uint8_t *p, uint32_t len)
{
    unsigned q = rxq(port) + 1;
    for (uint32_t off = 0; off < len;) {
        uint64_t t0 = rdtsc();
        while (tx_inflight[port] == NSLOT) {
            if (gv_used_pending(dev, q)) {
                gv_wait(dev, q, 0);
                tx_inflight[port]--;
            }
            ctl_poll();
            G_CHECK(rdtsc() - t0 < WAIT_TSC, "port %u: transmit stuck at %u of %u", port, off,
                    len);
        }
        unsigned slot = dev->q[q].avail_idx % NSLOT;
        uint32_t n = len - off < CHUNK ? len - off : CHUNK;
        memcpy(port_tx[port][slot], p + off, n);
        struct gv_buf b = {port_tx[port][slot], n, 0};
        gv_submit(dev, q, &b, 1, use_indirect);
        tx_inflight[port]++;
        off += n;
    }
}

/* Wait until every transmitted chain of the port is back. */
static void port_flush(unsigned port)
{
    unsigned q = rxq(port) + 1;
    for (uint64_t t0 = rdtsc(); tx_inflight[port];) {
        if (gv_used_pending(dev, q)) {
            gv_wait(dev, q, 0);
            tx_inflight[port]--;
        }
        ctl_poll();
        G_CHECK(rdtsc() - t0 < WAIT_TSC, "port %u: the host never took the output", port);
    }
}


/* The next received byte of the port (buffers are used in posting order). */
static uint8_t port_getc(unsigned port)
{
    unsigned q = rxq(port);
    uint64_t t0 = rdtsc();
    while (rx_slot[port] == NSLOT || rx_pos[port] == rx_len[port]) {
        if (rx_slot[port] != NSLOT) {
            post_port_rx(port, rx_slot[port]);
            rx_slot[port] = NSLOT;
        }
        if (gv_used_pending(dev, q)) {
            uint16_t head;
            rx_len[port] = gv_wait(dev, q, &head);
            G_CHECK(head % 16 == 0 && head / 16 < NSLOT && rx_len[port] <= CHUNK,
                    "port %u: used id %u, %u bytes", port, head, rx_len[port]);
            rx_slot[port] = head / 16;
            rx_pos[port] = 0;
            t0 = rdtsc();
            continue;
        }
        ctl_poll();
        __asm__ volatile("pause");
        G_CHECK(rdtsc() - t0 < WAIT_TSC, "port %u: no input from the host", port);
    }
    return port_rx[port][rx_slot[port]][rx_pos[port]++];
}

static void port_puts(unsigned port, const char *s)
{
    port_send(port, (const uint8_t *)s, (uint32_t)g_strlen(s));
}

static uint8_t pattern_in(uint32_t i, uint32_t seed)
{
    return (uint8_t)(i * 7 + (i >> 8) * 131 + seed);
}

static uint8_t pattern_out(uint32_t i, uint32_t seed)
{
    return (uint8_t)(i * 13 + (i >> 9) + seed + 1);
}

static void transfer(uint32_t bytes, uint32_t seed)
{
    for (uint32_t i = 0; i < bytes; i++) {
        uint8_t b = port_getc(1);
        G_CHECK(b == pattern_in(i, seed), "port 1: byte %u is %u, expected %u", i, b,
                pattern_in(i, seed));
    }
    static uint8_t out[CHUNK * 4];
    for (uint32_t off = 0; off < bytes; off += sizeof(out)) {
        uint32_t n = bytes - off < sizeof(out) ? bytes - off : (uint32_t)sizeof(out);
        for (uint32_t i = 0; i < n; i++)
            out[i] = pattern_out(off + i, seed);
        port_send(1, out, n);
    }
    port_flush(1);
    g_print("console: port 1: %u bytes in (checked), %u bytes out", bytes, bytes);
}

void guest_main(const struct g_boot *b)
{
    cmdline = b->cmdline;
    g_print("cmdline: %s", cmdline);
    use_indirect = (int)opt("indirect", 0);
    static struct gv_dev devs[GV_MAX_DEVS];
    unsigned n = gv_find(cmdline, devs, GV_MAX_DEVS);
    for (unsigned i = 0; i < n && !dev; i++)
        if (devs[i].id == VIRTIO_ID_CONSOLE)
            dev = &devs[i];
    G_CHECK(dev != 0, "no virtio-console among %u devices", n);
    uint64_t offered = 0;
    for (uint32_t sel = 0; sel < 2; sel++) {
        gv_write32(dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
        offered |= (uint64_t)gv_read32(dev, VIRTIO_MMIO_DEVICE_FEATURES) << (32 * sel);
    }
    uint32_t max_ports = gv_config32(dev, 4);
    uint64_t want_ports = opt("ports", 1);
    G_CHECK(max_ports == want_ports, "max_nr_ports %u, expected %lu", max_ports, want_ports);
    int offers_multi = !!(offered & (1ull << VIRTIO_CONSOLE_F_MULTIPORT));
    G_CHECK(offers_multi == (max_ports > 1), "MULTIPORT offered: %d with %u ports", offers_multi,
            max_ports);
    G_CHECK(max_ports <= MAXP, "%u ports: this guest handles %u", max_ports, MAXP);
    nports = max_ports;
    multi = offers_multi && !opt("nomulti", 0);
    if (!multi)
        nports = 1;
    console_init();
    if (opt("reset", 0)) {
        console_init();
        g_print("console: the handshake again after a reset");
    }
    port_puts(0, "hello from port 0\n");
    port_flush(0);
    if (multi && nports > 1) {
        port_puts(1, "hello from port 1\n");
        port_flush(1);
        for (uint64_t t0 = rdtsc(); opt("late", 0) && !seen[1].open;) {
            if (!ctl_poll())
                __asm__ volatile("pause");
            G_CHECK(rdtsc() - t0 < WAIT_TSC, "port 1: a client connected, no PORT_OPEN 1");
        }
        transfer((uint32_t)opt("bytes", 0), (uint32_t)opt("seed", 0));
    }
    if (multi && nports > 2) {
        port_puts(2, "a line on port 2\n");
        port_flush(2);
    }
    uint64_t k = opt("console_echo", 0);
    if (k) {
        static char line[128];
        memcpy(line, "echo0:", 6);
        for (uint64_t i = 0; i < k && i < sizeof(line) - 6; i++)
            line[6 + i] = (char)port_getc(0);
        port_send(0, (const uint8_t *)line, (uint32_t)(6 + k));
        port_flush(0);
    }
    if (opt("closed", 0)) {
        for (uint64_t t0 = rdtsc(); seen[1].open;) {
            if (!ctl_poll())
                __asm__ volatile("pause");
            G_CHECK(rdtsc() - t0 < WAIT_TSC, "port 1: the host closed, no PORT_OPEN 0");
        }
        ctl_send(1, VIRTIO_CONSOLE_PORT_OPEN, 0);
    }
    ctl_tx_reap();
    G_CHECK(!(gv_read32(dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET),
            "the device needs a reset");
    g_print("console: done");
    g_exit(opt("exit", 0));
}
