/* Split virtqueues: the device's half of virtio 1.x section 2.7. The ring
 * memory is shared with a guest that may change it at any moment, so every
 * descriptor is copied before it is checked, and indices are read once. */
#include <linux/virtio_ring.h>
#include <string.h>

#include "vmm/guest_mem.h"
#include "virtio/queue.h"

static uint16_t load16(const volatile uint16_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

int virtq_enable(struct virtq *q, const struct guest_mem *mem)
{
    uint16_t n = q->size;
    if (n == 0 || n > VIRTQ_SIZE_MAX || (n & (n - 1)))
        return -1;
    if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3))
        return -1;
    /* avail: flags, idx, ring[n], used_event; used: flags, idx, ring[n], avail_event */
    q->desc = guest_mem_ptr(mem, q->desc_gpa, 16ull * n);
    q->avail = guest_mem_ptr(mem, q->avail_gpa, 6 + 2ull * n);
    q->used = guest_mem_ptr(mem, q->used_gpa, 6 + 8ull * n);
    if (!q->desc || !q->avail || !q->used) {
        q->desc = NULL;
        q->avail = NULL;
        q->used = NULL;
        return -1;
    }
    q->last_avail = 0;
    q->used_idx = 0;
    q->signalled_used = 0;
    q->ready = true;
    return 0;
}

void virtq_set_features(struct virtq *q, uint64_t features)
{
    q->event_idx = features & (1ull << VIRTIO_RING_F_EVENT_IDX);
    q->indirect = features & (1ull << VIRTIO_RING_F_INDIRECT_DESC);
}

void virtq_reset(struct virtq *q)
{
    memset(q, 0, sizeof(*q));
}

/* Add descriptor d's buffer to the chain; -1 if it is outside guest RAM,
 * too many, or readable after writable. */
static int add_segment(struct virtq_chain *c, const struct guest_mem *mem,
                       const struct vring_desc *d, const char **why)
{
    bool writable = d->flags & VRING_DESC_F_WRITE;
    if (d->len == 0)
        return 0;
    void *p = guest_mem_ptr(mem, d->addr, d->len);
    if (p == NULL) {
        *why = "a descriptor's buffer lies outside guest memory";
        return -1;
    }
    if (!writable && c->n_in) {
        *why = "a device-readable descriptor after a writable one";
        return -1;
    }
    if (c->n_out + c->n_in >= VIRTQ_CHAIN_MAX) {
        *why = "a descriptor chain longer than the device accepts";
        return -1;
    }
    if (writable) {
        c->in[c->n_in++] = (struct iovec){p, d->len};
        c->in_len += d->len;
    } else {
        c->out[c->n_out++] = (struct iovec){p, d->len};
        c->out_len += d->len;
    }
    return 0;
}

/* Walk an indirect table of `count` descriptors. */
static int walk_indirect(struct virtq_chain *c, const struct guest_mem *mem,
                         const struct vring_desc *ind, const char **why)
{
    if (ind->len == 0 || ind->len % sizeof(struct vring_desc) ||
        ind->len / sizeof(struct vring_desc) > VIRTQ_SIZE_MAX) {
        *why = "an indirect table with a bad length";
        return -1;
    }
    uint32_t count = ind->len / sizeof(struct vring_desc);
    const struct vring_desc *table = guest_mem_ptr(mem, ind->addr, ind->len);
    if (table == NULL) {
        *why = "an indirect table outside guest memory";
        return -1;
    }
    uint32_t i = 0;
    for (uint32_t steps = 0;; steps++) {
        if (steps >= count) {
            *why = "a loop in an indirect table";
            return -1;
        }
        struct vring_desc d;
        memcpy(&d, &table[i], sizeof(d));
        if (d.flags & VRING_DESC_F_INDIRECT) {
            *why = "an indirect descriptor inside an indirect table";
            return -1;
        }
        if (add_segment(c, mem, &d, why) < 0)
            return -1;
        if (!(d.flags & VRING_DESC_F_NEXT))
            return 0;
        if (d.next >= count) {
            *why = "an indirect descriptor's next is out of range";
            return -1;
        }
        i = d.next;
    }
}

int virtq_pop(struct virtq *q, const struct guest_mem *mem, struct virtq_chain *c,
              const char **why)
{
    if (!q->ready)
        return 0;
    uint16_t avail_idx = load16(&q->avail->idx);
    uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending == 0)
        return 0;
    if (pending > q->size) {
        *why = "the available index ran more than a ring ahead";
        return -1;
    }
    uint16_t head = load16(&q->avail->ring[q->last_avail % q->size]);
    if (head >= q->size) {
        *why = "an available head out of range";
        return -1;
    }
    c->head = head;
    c->n_out = c->n_in = 0;
    c->out_len = c->in_len = 0;
    uint16_t i = head;
    for (unsigned steps = 0;; steps++) {
        if (steps >= q->size) {
            *why = "a loop in a descriptor chain";
            return -1;
        }
        struct vring_desc d;
        memcpy(&d, &q->desc[i], sizeof(d));
        if (d.flags & VRING_DESC_F_INDIRECT) {
            if (!q->indirect || (d.flags & VRING_DESC_F_NEXT) || steps > 0) {
                *why = "an indirect descriptor where none is allowed";
                return -1;
            }
            if (walk_indirect(c, mem, &d, why) < 0)
                return -1;
            break;
        }
        if (add_segment(c, mem, &d, why) < 0)
            return -1;
        if (!(d.flags & VRING_DESC_F_NEXT))
            break;
        if (d.next >= q->size) {
            *why = "a descriptor's next is out of range";
            return -1;
        }
        i = d.next;
    }
    q->last_avail++;
    if (q->event_idx) {
        /* avail_event: the driver kicks us again once it passes this */
        volatile uint16_t *avail_event = (volatile uint16_t *)&q->used->ring[q->size];
        __atomic_store_n(avail_event, q->last_avail, __ATOMIC_RELEASE);
    }
    return 1;
}

void virtq_unpop(struct virtq *q)
{
    q->last_avail--;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
    struct vring_used_elem *e = &q->used->ring[q->used_idx % q->size];
    e->id = head;
    e->len = written;
    q->used_idx++;
    __atomic_store_n(&q->used->idx, q->used_idx, __ATOMIC_RELEASE);
}

bool virtq_should_signal(struct virtq *q)
{
    /* the used index must be visible before we read what the driver wants */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!q->event_idx)
        return !(load16(&q->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
    uint16_t used_event = load16(&q->avail->ring[q->size]);
    uint16_t old = q->signalled_used, now = q->used_idx;
    q->signalled_used = now;
    /* vring_need_event: did we pass used_event since the last signal? */
    return (uint16_t)(now - used_event - 1) < (uint16_t)(now - old);
}

static uint64_t copy_iov(const struct iovec *iov, unsigned n, uint64_t off, void *buf,
                         uint64_t len, bool to_iov)
{
    uint64_t done = 0;
    for (unsigned i = 0; i < n && done < len; i++) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        uint64_t k = iov[i].iov_len - off;
        if (k > len - done)
            k = len - done;
        if (to_iov)
            memcpy((uint8_t *)iov[i].iov_base + off, (const uint8_t *)buf + done, k);
        else
            memcpy((uint8_t *)buf + done, (const uint8_t *)iov[i].iov_base + off, k);
        done += k;
        off = 0;
    }
    return done;
}

uint64_t virtq_read(const struct virtq_chain *c, uint64_t off, void *buf, uint64_t len)
{
    return copy_iov(c->out, c->n_out, off, buf, len, false);
}

uint64_t virtq_write(const struct virtq_chain *c, uint64_t off, const void *buf, uint64_t len)
{
    return copy_iov(c->in, c->n_in, off, (void *)buf, len, true);
}
