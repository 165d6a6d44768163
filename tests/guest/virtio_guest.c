/* A test guest that drives cocoon's virtio-mmio devices at CPL3. It finds
 * them on its command line (virtio_mmio.device=, as Linux would), checks
 * the transport, then exercises each device by its id:
 *   rng      two reads: full length, not constant, not equal
 *   blk      blk_seed=S: sectors 0..7 hold byte (off*131+S)&255; read them,
 *            write sector 8..15 with (off*7+S+3)&255, flush, read back;
 *            blk_serial=ID (GET_ID), blk_ro=1 (writes must fail), a read
 *            past the end fails, discard answers OK
 *   pmem     pmem_seed=S pmem_bytes=N: the region holds the file, byte
 *            (off*13+S)&255, zeros to the 2 MiB boundary; a guest write
 *            reads back; a flush request answers 0
 *   net      net_peer=MAC (12 hex digits): pings 10.9.0.1 from 10.9.0.2
 *            through the tap until the echo reply comes back
 *   console  prints a greeting; console_echo=N: reads N bytes, writes
 *            "echo:" and them back
 * Options: indirect=1 (requests through indirect tables), event_idx=1,
 * bad=loop|range|dir|head|idx (a malformed queue must set NEEDS_RESET and
 * the device must work again after a reset), irq=1 (the device's interrupt
 * must reach the local APIC through the IOAPIC). */
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_net.h>

#include "libguest.h"
#include "virtio_drv.h"

static const char *cmdline;
static int use_indirect;

static uint64_t opt(const char *key, uint64_t dflt)
{
    char v[64];
    return g_cmdline_get(cmdline, key, v, sizeof(v)) ? g_parse_u64(v) : dflt;
}

static uint64_t want_features(uint64_t extra)
{
    uint64_t f = extra;
    if (opt("indirect", 0))
        f |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
    if (opt("event_idx", 0))
        f |= 1ull << VIRTIO_RING_F_EVENT_IDX;
    return f;
}

/* ---- interrupts: IOAPIC pin -> vector, seen pending in the LAPIC's IRR ---- */

#define LAPIC 0xfee00000ull
#define IOAPIC 0xfec00000ull

static void ioapic_write(uint32_t reg, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)IOAPIC = reg;
    *(volatile uint32_t *)(uintptr_t)(IOAPIC + 0x10) = v;
}

static void irq_route(unsigned pin, uint8_t vector)
{
    /* software-enable the LAPIC (SVR bit 8), route the pin to APIC 0 */
    volatile uint32_t *svr = (volatile uint32_t *)(uintptr_t)(LAPIC + 0xf0);
    *svr = 0x1ff;
    ioapic_write(0x10 + 2 * pin + 1, 0);       /* destination APIC id 0 */
    ioapic_write(0x10 + 2 * pin, vector);      /* fixed, edge, active high, unmasked */
}

static int irq_pending(uint8_t vector)
{
    volatile uint32_t *irr = (volatile uint32_t *)(uintptr_t)(LAPIC + 0x200 + (vector / 32) * 16);
    return (*irr >> (vector % 32)) & 1;
}

/* ---- rng ---- */

static uint8_t rbuf[2][4096] __attribute__((aligned(64)));

static void test_rng(struct gv_dev *d)
{
    gv_init(d, want_features(0), 1);
    for (int i = 0; i < 2; i++) {
        struct gv_buf b = {rbuf[i], 64, 1};
        gv_submit(d, 0, &b, 1, use_indirect);
        uint32_t len = gv_wait(d, 0, 0);
        G_CHECK(len == 64, "rng returned %u bytes, asked 64", len);
    }
    int same = 1, constant = 1;
    for (int i = 0; i < 64; i++) {
        same &= rbuf[0][i] == rbuf[1][i];
        constant &= rbuf[0][i] == rbuf[0][0];
    }
    G_CHECK(!same && !constant, "rng bytes are constant or repeat");
    g_print("virtio-rng: 2 x 64 random bytes");
}

/* ---- blk ---- */

static struct virtio_blk_outhdr hdr __attribute__((aligned(16)));
static uint8_t status;
static uint8_t data[4096] __attribute__((aligned(4096)));

static uint8_t blk_request(struct gv_dev *d, uint32_t type, uint64_t sector, void *buf,
                           uint32_t len, int device_writes, uint32_t *written)
{
    hdr = (struct virtio_blk_outhdr){.type = type, .sector = sector};
    status = 0xff;
    struct gv_buf b[3] = {{&hdr, sizeof(hdr), 0}};
    unsigned n = 1;
    if (len)
        b[n++] = (struct gv_buf){buf, len, device_writes};
    b[n++] = (struct gv_buf){&status, 1, 1};
    gv_submit(d, 0, b, n, use_indirect);
    uint32_t w = gv_wait(d, 0, 0);
    if (written)
        *written = w;
    return status;
}

static void test_blk(struct gv_dev *d)
{
    uint64_t seed = opt("blk_seed", 0), ro = opt("blk_ro", 0);
    gv_init(d, want_features((1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_RO) |
                             (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
                             (1ull << VIRTIO_BLK_F_SEG_MAX)),
            1);
    uint64_t cap = gv_config64(d, 0);
    uint64_t want_cap = opt("blk_sectors", cap);
    G_CHECK(cap == want_cap, "blk capacity %lu sectors, expected %lu", cap, want_cap);
    G_CHECK(!!(d->features & (1ull << VIRTIO_BLK_F_RO)) == !!ro, "RO feature %d, expected %lu",
            !!(d->features & (1ull << VIRTIO_BLK_F_RO)), ro);
    uint32_t w;
    /* read sectors 0..7 and compare with the host's pattern */
    G_CHECK(blk_request(d, VIRTIO_BLK_T_IN, 0, data, 4096, 1, &w) == VIRTIO_BLK_S_OK,
            "read of sectors 0-7 failed: %u", status);
    G_CHECK(w == 4097, "read reported %u bytes written, expected 4097", w);
    for (uint32_t i = 0; i < 4096; i++)
        G_CHECK(data[i] == (uint8_t)(i * 131 + seed), "byte %u read %u, expected %u", i, data[i],
                (uint8_t)(i * 131 + seed));
    /* write sectors 8..15, flush, read back */
    for (uint32_t i = 0; i < 4096; i++)
        data[i] = (uint8_t)((4096 + i) * 7 + seed + 3);
    uint8_t s = blk_request(d, VIRTIO_BLK_T_OUT, 8, data, 4096, 0, 0);
    if (ro) {
        G_CHECK(s == VIRTIO_BLK_S_IOERR, "a write to a read-only disk answered %u", s);
    } else {
        G_CHECK(s == VIRTIO_BLK_S_OK, "write failed: %u", s);
        G_CHECK(blk_request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, 0) == VIRTIO_BLK_S_OK,
                "flush failed");
        memset(data, 0, sizeof(data));
        G_CHECK(blk_request(d, VIRTIO_BLK_T_IN, 8, data, 4096, 1, 0) == VIRTIO_BLK_S_OK,
                "read-back failed");
        for (uint32_t i = 0; i < 4096; i++)
            G_CHECK(data[i] == (uint8_t)((4096 + i) * 7 + seed + 3), "read-back byte %u is %u", i,
                    data[i]);
    }
    /* past the end */
    G_CHECK(blk_request(d, VIRTIO_BLK_T_IN, cap, data, 512, 1, 0) == VIRTIO_BLK_S_IOERR,
            "a read past the end did not fail");
    G_CHECK(blk_request(d, VIRTIO_BLK_T_IN, cap - 1, data, 1024, 1, 0) == VIRTIO_BLK_S_IOERR,
            "a read straddling the end did not fail");
    /* serial */
    char want[32];
    if (g_cmdline_get(cmdline, "blk_serial", want, sizeof(want))) {
        static char id[VIRTIO_BLK_ID_BYTES + 1];
        memset(id, 0, sizeof(id));
        G_CHECK(blk_request(d, VIRTIO_BLK_T_GET_ID, 0, id, VIRTIO_BLK_ID_BYTES, 1, 0) ==
                    VIRTIO_BLK_S_OK, "GET_ID failed");
        G_CHECK(g_strncmp(id, want, sizeof(want)) == 0, "serial `%s`, expected `%s`", id, want);
    }
    /* discard sectors 16..23 (the host checks the hole) */
    if (!ro) {
        static struct virtio_blk_discard_write_zeroes dz;
        dz = (struct virtio_blk_discard_write_zeroes){.sector = 16, .num_sectors = 8};
        G_CHECK(blk_request(d, VIRTIO_BLK_T_DISCARD, 0, &dz, sizeof(dz), 0, 0) == VIRTIO_BLK_S_OK,
                "discard failed");
    }
    /* an unknown request type */
    G_CHECK(blk_request(d, 0x7777, 0, 0, 0, 0, 0) == VIRTIO_BLK_S_UNSUPP,
            "an unknown request did not answer UNSUPP");
    g_print("virtio-blk: %lu sectors, read/write/flush/id/discard ok%s", cap,
            ro ? " (read-only)" : "");
}

/* ---- console ---- */

static char cbuf[512] __attribute__((aligned(64)));

static void console_send(struct gv_dev *d, const void *p, uint32_t len)
{
    memcpy(cbuf, p, len);
    struct gv_buf b = {cbuf, len, 0};
    gv_submit(d, 1, &b, 1, use_indirect);
    gv_wait(d, 1, 0);
}

static void test_console(struct gv_dev *d)
{
    gv_init(d, want_features(0), 2);
    static const char hello[] = "hello from virtio-console\n";
    console_send(d, hello, sizeof(hello) - 1);
    uint64_t n = opt("console_echo", 0);
    static char in[256];
    uint64_t got = 0;
    while (got < n && got < sizeof(in)) {
        struct gv_buf b = {in + got, (uint32_t)(sizeof(in) - got), 1};
        gv_submit(d, 0, &b, 1, use_indirect);
        got += gv_wait(d, 0, 0);
    }
    if (n) {
        static char out[300];
        memcpy(out, "echo:", 5);
        memcpy(out + 5, in, got);
        console_send(d, out, (uint32_t)(5 + got));
    }
    g_print("virtio-console: greeting sent, %lu bytes echoed", got);
}

/* ---- pmem ---- */

static void test_pmem(struct gv_dev *d)
{
    gv_init(d, want_features(0), 1);
    uint64_t start = gv_config64(d, 0), size = gv_config64(d, 8);
    uint64_t seed = opt("pmem_seed", 0), bytes = opt("pmem_bytes", size);
    G_CHECK(start >= 0x100000000ull && (start & 0x1fffff) == 0, "pmem at %lx", start);
    G_CHECK(size == ((bytes + 0x1fffff) & ~0x1fffffull), "pmem size %lu for a %lu-byte file",
            size, bytes);
    const volatile uint8_t *p = (const volatile uint8_t *)(uintptr_t)start;
    for (uint64_t i = 0; i < size; i++) {
        uint8_t want = i < bytes ? (uint8_t)(i * 13 + seed) : 0;
        G_CHECK(p[i] == want, "pmem byte %lu is %u, expected %u", i, p[i], want);
    }
    volatile uint8_t *w = (volatile uint8_t *)(uintptr_t)start;
    for (uint64_t i = 0; i < 4096; i++)
        w[i] = 0xa5;
    w[size - 1] = 0x5a;
    G_CHECK(w[0] == 0xa5 && w[4095] == 0xa5 && w[size - 1] == 0x5a, "pmem writes do not stick");
    static uint32_t req, resp;
    req = 0; /* VIRTIO_PMEM_REQ_TYPE_FLUSH */
    resp = 0xffffffff;
    struct gv_buf b[2] = {{&req, 4, 0}, {&resp, 4, 1}};
    gv_submit(d, 0, b, 2, use_indirect);
    G_CHECK(gv_wait(d, 0, 0) == 4 && resp == 0, "pmem flush answered %u", resp);
    g_print("virtio-pmem: %lu bytes at %lx, contents ok, flushed", size, start);
}

/* ---- net ---- */

static uint8_t rx[8][2048] __attribute__((aligned(64)));
static uint8_t tx[128] __attribute__((aligned(64)));

static uint16_t csum(const uint8_t *p, uint32_t n)
{
    uint32_t s = 0;
    for (uint32_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint32_t echo_request(const uint8_t *mac, const uint8_t *peer, uint16_t seq)
{
    memset(tx, 0, sizeof(tx));
    uint8_t *e = tx + 12; /* after the virtio_net_hdr_v1 */
    memcpy(e, peer, 6);
    memcpy(e + 6, mac, 6);
    put16(e + 12, 0x0800);
    uint8_t *ip = e + 14;
    ip[0] = 0x45;
    put16(ip + 2, 20 + 8 + 32);
    ip[8] = 64;
    ip[9] = 1; /* ICMP */
    static const uint8_t src[4] = {10, 9, 0, 2}, dst[4] = {10, 9, 0, 1};
    memcpy(ip + 12, src, 4);
    memcpy(ip + 16, dst, 4);
    put16(ip + 10, csum(ip, 20));
    uint8_t *icmp = ip + 20;
    icmp[0] = 8; /* echo request */
    put16(icmp + 4, 0xc0c0);
    put16(icmp + 6, seq);
    for (int i = 0; i < 32; i++)
        icmp[8 + i] = (uint8_t)('a' + i % 26);
    put16(icmp + 2, csum(icmp, 40));
    return 12 + 14 + 20 + 40;
}

static void test_net(struct gv_dev *d)
{
    char v[32];
    G_CHECK(g_cmdline_get(cmdline, "net_peer", v, sizeof(v)) && g_strlen(v) == 12,
            "net_peer=MAC (12 hex digits) missing");
    uint8_t peer[6], mac[6];
    for (int i = 0; i < 6; i++) {
        char h[5] = {'0', 'x', v[2 * i], v[2 * i + 1], 0};
        peer[i] = (uint8_t)g_parse_u64(h);
    }
    gv_init(d, want_features((1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_MRG_RXBUF)), 2);
    G_CHECK(d->features & (1ull << VIRTIO_NET_F_MRG_RXBUF), "no mergeable rx buffers");
    for (int i = 0; i < 6; i++)
        mac[i] = gv_config8(d, (uint32_t)i);
    for (int i = 0; i < 8; i++) {
        struct gv_buf b = {rx[i], sizeof(rx[i]), 1};
        gv_submit(d, 0, &b, 1, 0);
    }
    for (uint16_t seq = 1; seq < 200; seq++) {
        struct gv_buf b = {tx, echo_request(mac, peer, seq), 0};
        gv_submit(d, 1, &b, 1, use_indirect);
        gv_wait(d, 1, 0);
        for (uint64_t spins = 0; spins < 20000000ull; spins++) {
            if (!gv_used_pending(d, 0)) {
                __asm__ volatile("pause");
                continue;
            }
            uint16_t id;
            uint32_t len = gv_wait(d, 0, &id);
            /* slots rotate by 16 descriptors: find which buffer it was */
            uint8_t *f = 0;
            for (int i = 0; i < 8; i++)
                if ((uintptr_t)d->q[0].desc[id].addr == (uintptr_t)rx[i])
                    f = rx[i];
            G_CHECK(f != 0, "rx used id %u is not one of our buffers", id);
            G_CHECK(f[10] == 1 && f[11] == 0, "num_buffers %u for a small frame", f[10]);
            const uint8_t *e = f + 12, *ip = e + 14, *icmp = ip + 20;
            int reply = len >= 12 + 14 + 20 + 40 && e[12] == 0x08 && e[13] == 0 && ip[9] == 1 &&
                        icmp[0] == 0 && icmp[4] == 0xc0 && icmp[5] == 0xc0;
            if (reply) {
                G_CHECK(g_strncmp((const char *)e, (const char *)mac, 6) == 0,
                        "the reply is not addressed to our MAC");
                for (int i = 0; i < 32; i++)
                    G_CHECK(icmp[8 + i] == (uint8_t)('a' + i % 26), "echo payload byte %d", i);
                g_print("virtio-net: echo reply from 10.9.0.1 (seq %u, %u bytes)", seq, len);
                return;
            }
            struct gv_buf b2 = {f, sizeof(rx[0]), 1};
            gv_submit(d, 0, &b2, 1, 0); /* something else (IPv6, ARP): repost */
        }
    }
    g_fail("no echo reply from 10.9.0.1 through the tap");
}

/* ---- malformed queues ---- */

static void test_bad(struct gv_dev *d, const char *kind)
{
    gv_init(d, want_features(0), 1);
    static uint8_t buf[64];
    struct vring_desc ds[4];
    uint16_t head = 0;
    memset(ds, 0, sizeof(ds));
    if (g_strncmp(kind, "loop", 5) == 0) {
        ds[0] = (struct vring_desc){(uintptr_t)buf, 8, VRING_DESC_F_NEXT, 1};
        ds[1] = (struct vring_desc){(uintptr_t)buf, 8, VRING_DESC_F_NEXT, 0};
    } else if (g_strncmp(kind, "range", 6) == 0) {
        ds[0] = (struct vring_desc){0x7ffffffff000ull, 4096, VRING_DESC_F_WRITE, 0};
    } else if (g_strncmp(kind, "wrap", 5) == 0) {
        ds[0] = (struct vring_desc){0xfffffffffffff000ull, 0x2000, VRING_DESC_F_WRITE, 0};
    } else if (g_strncmp(kind, "dir", 4) == 0) {
        /* device-readable after device-writable */
        ds[0] = (struct vring_desc){(uintptr_t)buf, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1};
        ds[1] = (struct vring_desc){(uintptr_t)buf, 8, 0, 0};
    } else if (g_strncmp(kind, "head", 5) == 0) {
        ds[0] = (struct vring_desc){(uintptr_t)buf, 8, VRING_DESC_F_WRITE, 0};
        head = 999;
    } else if (g_strncmp(kind, "next", 5) == 0) {
        ds[0] = (struct vring_desc){(uintptr_t)buf, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 500};
    } else if (g_strncmp(kind, "indirect", 9) == 0) {
        /* an indirect table that lies outside guest memory */
        ds[0] = (struct vring_desc){0x7fff00000000ull, 16 * 4, VRING_DESC_F_INDIRECT, 0};
    } else {
        g_fail("unknown bad= kind %s", kind);
    }
    gv_submit_raw(d, 0, ds, 4, head);
    for (uint64_t spins = 0;; spins++) {
        if (gv_read32(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET)
            break;
        G_CHECK(spins < 400000000ull, "a malformed queue (%s) did not set NEEDS_RESET", kind);
        __asm__ volatile("pause");
    }
    G_CHECK(gv_read32(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG,
            "no configuration interrupt with NEEDS_RESET");
    g_print("bad queue (%s): device needs reset", kind);
}

void guest_main(const struct g_boot *b)
{
    cmdline = b->cmdline;
    g_print("cmdline: %s", cmdline);
    use_indirect = (int)opt("indirect", 0);
    static struct gv_dev devs[GV_MAX_DEVS];
    unsigned n = gv_find(cmdline, devs, GV_MAX_DEVS);
    G_CHECK(n == opt("devices", n), "%u devices on the command line, expected %lu", n,
            opt("devices", 0));
    char bad[16];
    int have_bad = g_cmdline_get(cmdline, "bad", bad, sizeof(bad));
    int irq = (int)opt("irq", 0);
    gv_hold_used_event = irq;
    for (unsigned i = 0; i < n; i++) {
        struct gv_dev *d = &devs[i];
        g_print("device %u: id %u at %lx irq %u", i, d->id, d->base, d->irq);
        uint8_t vector = (uint8_t)(0x40 + d->irq);
        if (irq)
            irq_route(d->irq, vector);
        if (have_bad) {
            test_bad(d, bad);
            /* a reset brings it back */
        }
        switch (d->id) {
        case VIRTIO_ID_RNG: test_rng(d); break;
        case VIRTIO_ID_BLOCK: test_blk(d); break;
        case VIRTIO_ID_CONSOLE: test_console(d); break;
        case VIRTIO_ID_PMEM: test_pmem(d); break;
        case VIRTIO_ID_NET: test_net(d); break;
        default: g_fail("device %u: unexpected id %u", i, d->id);
        }
        if (irq) {
            /* the device raises the interrupt just after it publishes the
             * used element the guest saw: give it a moment */
            uint64_t spins = 0;
            while (!(gv_read32(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING) &&
                   spins++ < 100000ull)
                __asm__ volatile("pause");
            G_CHECK(gv_read32(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING,
                    "device %u: no used-buffer interrupt status", i);
            for (spins = 0; !irq_pending(vector) && spins < 100000ull; spins++)
                __asm__ volatile("pause");
            G_CHECK(irq_pending(vector), "device %u: irq %u never reached the local APIC", i,
                    d->irq);
            gv_write32(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
            g_print("device %u: interrupt delivered", i);
        }
    }
    g_exit(opt("exit", 0));
}
