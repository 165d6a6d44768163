#include "virtio_drv.h"

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>

#include "libguest.h"

/* Queue memory: per device, per queue: desc (16*N), avail, used, and one
 * indirect table per descriptor slot. Identity mapped: virtual = physical. */
struct gv_qmem {
    struct vring_desc desc[GV_QSIZE] __attribute__((aligned(4096)));
    uint16_t avail[3 + GV_QSIZE] __attribute__((aligned(4096)));
    uint8_t used[6 + 8 * GV_QSIZE + 2] __attribute__((aligned(4096)));
    struct vring_desc ind[GV_QSIZE][16] __attribute__((aligned(16)));
};
static struct gv_qmem qmem[GV_MAX_DEVS][GV_MAX_QUEUES];
int gv_hold_used_event;

static uint64_t parse_hex(const char **p)
{
    uint64_t v = 0;
    const char *s = *p;
    if (s[0] == '0' && s[1] == 'x')
        s += 2;
    for (;; s++) {
        char c = *s;
        if (c >= '0' && c <= '9')
            v = v * 16 + (uint64_t)(c - '0');
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            v = v * 16 + (uint64_t)((c | 0x20) - 'a' + 10);
        else
            break;
    }
    *p = s;
    return v;
}

unsigned gv_find(const char *cmdline, struct gv_dev *devs, unsigned max)
{
    static const char key[] = "virtio_mmio.device=";
    unsigned n = 0;
    for (const char *p = cmdline; *p && n < max; p++) {
        if ((p != cmdline && p[-1] != ' ') || g_strncmp(p, key, sizeof(key) - 1) != 0)
            continue;
        const char *s = p + sizeof(key) - 1;
        while (*s && *s != '@')
            s++;
        if (*s != '@')
            break;
        s++;
        uint64_t base = parse_hex(&s);
        if (*s != ':')
            break;
        s++;
        memset(&devs[n], 0, sizeof(devs[n]));
        devs[n].base = base;
        devs[n].irq = (unsigned)g_parse_u64(s);
        devs[n].id = gv_read32(&devs[n], VIRTIO_MMIO_DEVICE_ID);
        n++;
    }
    return n;
}

uint32_t gv_read32(const struct gv_dev *d, uint32_t off)
{
    return *(volatile uint32_t *)(uintptr_t)(d->base + off);
}

void gv_write32(const struct gv_dev *d, uint32_t off, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)(d->base + off) = v;
}

uint8_t gv_config8(const struct gv_dev *d, uint32_t off)
{
    return *(volatile uint8_t *)(uintptr_t)(d->base + VIRTIO_MMIO_CONFIG + off);
}

uint32_t gv_config32(const struct gv_dev *d, uint32_t off)
{
    return gv_read32(d, VIRTIO_MMIO_CONFIG + off);
}

uint64_t gv_config64(const struct gv_dev *d, uint32_t off)
{
    return gv_config32(d, off) | (uint64_t)gv_config32(d, off + 4) << 32;
}

static unsigned dev_index(const struct gv_dev *d)
{
    return (unsigned)((d->base - 0xd0000000ull) / 0x1000) % GV_MAX_DEVS;
}

void gv_init(struct gv_dev *d, uint64_t want, unsigned nq)
{
    G_CHECK(gv_read32(d, VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976, "no virtio magic at %lx",
            d->base);
    G_CHECK(gv_read32(d, VIRTIO_MMIO_VERSION) == 2, "virtio-mmio version %u",
            gv_read32(d, VIRTIO_MMIO_VERSION));
    gv_write32(d, VIRTIO_MMIO_STATUS, 0);
    G_CHECK(gv_read32(d, VIRTIO_MMIO_STATUS) == 0, "status not 0 after reset");
    gv_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    gv_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    uint64_t offered = 0;
    for (uint32_t sel = 0; sel < 2; sel++) {
        gv_write32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
        offered |= (uint64_t)gv_read32(d, VIRTIO_MMIO_DEVICE_FEATURES) << (32 * sel);
    }
    G_CHECK(offered & (1ull << VIRTIO_F_VERSION_1), "device offers no VERSION_1");
    d->features = (want & offered) | (1ull << VIRTIO_F_VERSION_1);
    for (uint32_t sel = 0; sel < 2; sel++) {
        gv_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
        gv_write32(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(d->features >> (32 * sel)));
    }
    uint32_t st = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
    gv_write32(d, VIRTIO_MMIO_STATUS, st);
    G_CHECK(gv_read32(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK,
            "device refused features %lx", d->features);
    G_CHECK(nq <= GV_MAX_QUEUES, "%u queues: the test driver has room for %u", nq, GV_MAX_QUEUES);
    for (unsigned qi = 0; qi < nq; qi++) {
        struct gv_qmem *m = &qmem[dev_index(d)][qi];
        struct gv_queue *q = &d->q[qi];
        memset(m, 0, sizeof(*m));
        gv_write32(d, VIRTIO_MMIO_QUEUE_SEL, qi);
        G_CHECK(gv_read32(d, VIRTIO_MMIO_QUEUE_READY) == 0, "queue %u ready before setup", qi);
        uint32_t max = gv_read32(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
        G_CHECK(max >= GV_QSIZE, "queue %u: max size %u", qi, max);
        q->size = GV_QSIZE;
        q->desc = m->desc;
        q->avail = (struct vring_avail *)m->avail;
        q->used = (struct vring_used *)m->used;
        q->avail_idx = q->last_used = 0;
        gv_write32(d, VIRTIO_MMIO_QUEUE_NUM, GV_QSIZE);
        gv_write32(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)(uintptr_t)m->desc);
        gv_write32(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, 0);
        gv_write32(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)(uintptr_t)m->avail);
        gv_write32(d, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, 0);
        gv_write32(d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)(uintptr_t)m->used);
        gv_write32(d, VIRTIO_MMIO_QUEUE_USED_HIGH, 0);
        gv_write32(d, VIRTIO_MMIO_QUEUE_READY, 1);
        G_CHECK(gv_read32(d, VIRTIO_MMIO_QUEUE_READY) == 1, "queue %u not ready", qi);
    }
    gv_write32(d, VIRTIO_MMIO_STATUS, st | VIRTIO_CONFIG_S_DRIVER_OK);
}

static void publish(struct gv_dev *d, unsigned qi, uint16_t head)
{
    struct gv_queue *q = &d->q[qi];
    q->avail->ring[q->avail_idx % q->size] = head;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    q->avail_idx++;
    __atomic_store_n(&q->avail->idx, q->avail_idx, __ATOMIC_RELEASE);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    gv_write32(d, VIRTIO_MMIO_QUEUE_NOTIFY, qi);
}

uint16_t gv_submit(struct gv_dev *d, unsigned qi, const struct gv_buf *bufs, unsigned n,
                   int indirect)
{
    struct gv_queue *q = &d->q[qi];
    /* one request in flight per slot: slots rotate with the avail index */
    uint16_t head = (uint16_t)((q->avail_idx * 16u) % q->size);
    if (indirect) {
        struct vring_desc *t = qmem[dev_index(d)][qi].ind[head];
        G_CHECK(n <= 16, "too many buffers for an indirect table");
        for (unsigned i = 0; i < n; i++)
            t[i] = (struct vring_desc){(uint64_t)(uintptr_t)bufs[i].addr, bufs[i].len,
                                       (uint16_t)((bufs[i].writable ? VRING_DESC_F_WRITE : 0) |
                                                  (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
                                       (uint16_t)(i + 1)};
        q->desc[head] = (struct vring_desc){(uint64_t)(uintptr_t)t,
                                            (uint32_t)(n * sizeof(struct vring_desc)),
                                            VRING_DESC_F_INDIRECT, 0};
    } else {
        G_CHECK(n <= 16, "too many buffers for one slot");
        for (unsigned i = 0; i < n; i++)
            q->desc[head + i] = (struct vring_desc){
                (uint64_t)(uintptr_t)bufs[i].addr, bufs[i].len,
                (uint16_t)((bufs[i].writable ? VRING_DESC_F_WRITE : 0) |
                           (i + 1 < n ? VRING_DESC_F_NEXT : 0)),
                (uint16_t)(head + i + 1)};
    }
    publish(d, qi, head);
    return head;
}

void gv_submit_raw(struct gv_dev *d, unsigned qi, const struct vring_desc *descs, unsigned n,
                   uint16_t head)
{
    struct gv_queue *q = &d->q[qi];
    for (unsigned i = 0; i < n && i < q->size; i++)
        q->desc[i] = descs[i];
    publish(d, qi, head);
}

int gv_used_pending(const struct gv_dev *d, unsigned qi)
{
    const struct gv_queue *q = &d->q[qi];
    return __atomic_load_n(&q->used->idx, __ATOMIC_ACQUIRE) != q->last_used;
}

void gv_spin(uint64_t n)
{
    for (volatile uint64_t i = 0; i < n; i++)
        __asm__ volatile("pause");
}

uint32_t gv_wait(struct gv_dev *d, unsigned qi, uint16_t *id)
{
    struct gv_queue *q = &d->q[qi];
    for (uint64_t spins = 0; !gv_used_pending(d, qi); spins++) {
        G_CHECK(spins < 400000000ull, "device %u (id %u) queue %u never answered", d->irq,
                d->id, qi);
        __asm__ volatile("pause");
    }
    struct vring_used_elem e = q->used->ring[q->last_used % q->size];
    q->last_used++;
    /* with event index: interrupt me after this one (unless the test
     * wants the one interrupt of the first completion kept certain: a
     * used_event moved past an element before the device looked at it
     * rightly suppresses that element's interrupt) */
    if ((d->features & (1ull << VIRTIO_RING_F_EVENT_IDX)) && !gv_hold_used_event)
        q->avail->ring[q->size] = q->last_used;
    if (id)
        *id = (uint16_t)e.id;
    return e.len;
}
