/* The guest half of bench/virtio.py's virtio-blk measurement, at CPL3:
 * read the whole first virtio-blk disk from start to end in requests of
 * req=BYTES (default 256 KiB, a multiple of 4 KiB, at most 1 MiB), depth=N
 * of them in flight (1..16, default 4), polling the used ring. The driver
 * negotiates VIRTIO_RING_F_EVENT_IDX, as Linux's does: it notifies the
 * device only when the device asked for it (avail_event: the device is not
 * already working through the ring) and sets used_event so that the device
 * raises no interrupt (this driver polls).
 *
 * Boot marker 1 (a byte written to the debug page: the VMM logs it with its
 * monotonic clock) goes out just before the first request, marker 2 just
 * after the last answer, so the host times the transfer alone, without the
 * VM's boot (the buffers are written once before marker 1, so that the
 * host has them mapped, as the host-side reader's are). The data is
 * checked, not just moved: the host wrote the 8-byte stamp
 * (offset / 4096) ^ 0x5a5a5a5a5a5a5a5a at the start of every 4 KiB block,
 * and every stamp is compared as its request comes back. */
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include "libguest.h"
#include "virtio_drv.h"

#define MAXREQ (1u << 20)
#define MAXDEPTH 16 /* 3 descriptors each in a 64-entry ring */
#define STAMP 0x5a5a5a5a5a5a5a5aull

static uint8_t bufs[MAXDEPTH][MAXREQ] __attribute__((aligned(4096)));
static struct virtio_blk_outhdr hdrs[MAXDEPTH] __attribute__((aligned(64)));
static uint8_t status[MAXDEPTH][64] __attribute__((aligned(64)));
static uint64_t slot_off[MAXDEPTH];

static void marker(uint8_t v)
{
    *(volatile uint8_t *)(uintptr_t)COCOON_DEBUG_MMIO = v;
}

static uint64_t opt(const char *cmdline, const char *key, uint64_t dflt)
{
    char v[32];
    return g_cmdline_get(cmdline, key, v, sizeof(v)) ? g_parse_u64(v) : dflt;
}

/* Put a read of len bytes at off in slot's descriptors (3 per slot) on the
 * available ring; the caller notifies. */
static void post(struct gv_queue *q, unsigned slot, uint64_t off, uint32_t len)
{
    hdrs[slot] = (struct virtio_blk_outhdr){.type = VIRTIO_BLK_T_IN, .sector = off / 512};
    status[slot][0] = 0xff;
    slot_off[slot] = off;
    uint16_t h = (uint16_t)(3 * slot);
    q->desc[h] = (struct vring_desc){(uintptr_t)&hdrs[slot], sizeof(hdrs[slot]),
                                     VRING_DESC_F_NEXT, (uint16_t)(h + 1)};
    q->desc[h + 1] = (struct vring_desc){(uintptr_t)bufs[slot], len,
                                         VRING_DESC_F_WRITE | VRING_DESC_F_NEXT,
                                         (uint16_t)(h + 2)};
    q->desc[h + 2] = (struct vring_desc){(uintptr_t)status[slot], 1, VRING_DESC_F_WRITE, 0};
    q->avail->ring[q->avail_idx % q->size] = h;
    q->avail_idx++;
}

/* Publish what post() queued since old_idx; notify only if the device asked. */
static void publish(struct gv_dev *d, struct gv_queue *q, uint16_t old_idx)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t avail_event = __atomic_load_n((volatile uint16_t *)&q->used->ring[q->size],
                                           __ATOMIC_ACQUIRE);
    if ((uint16_t)(q->avail_idx - avail_event - 1) < (uint16_t)(q->avail_idx - old_idx))
        gv_write32(d, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
}

void guest_main(const struct g_boot *b)
{
    static struct gv_dev devs[GV_MAX_DEVS];
    unsigned n = gv_find(b->cmdline, devs, GV_MAX_DEVS);
    struct gv_dev *d = 0;
    for (unsigned i = 0; i < n && !d; i++)
        if (devs[i].id == VIRTIO_ID_BLOCK)
            d = &devs[i];
    G_CHECK(d != 0, "no virtio-blk device");
    uint32_t req = (uint32_t)opt(b->cmdline, "req", 256 * 1024);
    unsigned depth = (unsigned)opt(b->cmdline, "depth", 4);
    G_CHECK(req && req % 4096 == 0 && req <= MAXREQ, "req=%u: a multiple of 4096 up to %u", req,
            MAXREQ);
    G_CHECK(depth >= 1 && depth <= MAXDEPTH, "depth=%u: 1..%u", depth, MAXDEPTH);
    gv_init(d, (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_RING_F_EVENT_IDX), 1);
    G_CHECK(d->features & (1ull << VIRTIO_RING_F_EVENT_IDX), "no EVENT_IDX");
    struct gv_queue *q = &d->q[0];
    uint64_t bytes = gv_config64(d, 0) * 512;
    G_CHECK(bytes % 4096 == 0 && bytes >= req, "a disk of %lu bytes", bytes);
    uint64_t next = 0, done = 0, requests = 0;
    unsigned free_slots[MAXDEPTH], n_free = depth;
    for (unsigned i = 0; i < depth; i++) {
        free_slots[i] = depth - 1 - i;
        memset(bufs[i], 0, req);
    }
    /* used_event far behind: the device never needs to interrupt */
    q->avail->ring[q->size] = (uint16_t)(q->last_used + 0x8000);
    marker(1);
    while (done < bytes) {
        uint16_t old = q->avail_idx;
        while (n_free && next < bytes) {
            uint32_t len = bytes - next < req ? (uint32_t)(bytes - next) : req;
            post(q, free_slots[--n_free], next, len);
            next += len;
        }
        if (q->avail_idx != old)
            publish(d, q, old);
        uint64_t spins = 0;
        while (__atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE) == q->last_used) {
            G_CHECK(spins++ < 4000000000ull, "the device never answered");
            __asm__ volatile("pause");
        }
        while (__atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE) != q->last_used) {
            struct vring_used_elem e = q->used->ring[q->last_used % q->size];
            q->last_used++;
            unsigned slot = e.id / 3;
            G_CHECK(e.id % 3 == 0 && slot < depth, "used head %u", e.id);
            uint64_t off = slot_off[slot];
            uint32_t len = bytes - off < req ? (uint32_t)(bytes - off) : req;
            G_CHECK(status[slot][0] == VIRTIO_BLK_S_OK && e.len == len + 1,
                    "read at %lu: status %u, %u bytes written", off, status[slot][0], e.len);
            for (uint32_t o = 0; o < len; o += 4096) {
                uint64_t s;
                memcpy(&s, bufs[slot] + o, 8);
                G_CHECK(s == (((off + o) / 4096) ^ STAMP), "block at %lu: stamp %lx", off + o, s);
            }
            done += len;
            requests++;
            free_slots[n_free++] = slot;
        }
        q->avail->ring[q->size] = (uint16_t)(q->last_used + 0x8000);
    }
    marker(2);
    g_print("blk bench: %lu bytes in %lu requests of %u bytes, %u in flight, checked", bytes,
            requests, req, depth);
    g_exit(0);
}
