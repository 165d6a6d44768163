/* A minimal virtio-mmio driver for test guests, run at CPL3: it finds the
 * devices on the command line (virtio_mmio.device=4K@BASE:IRQ, as Linux
 * does), negotiates features, sets up split queues in guest memory and
 * moves buffers, polling the used ring. */
#pragma once
#include <linux/virtio_ring.h>
#include <stdint.h>

#define GV_MAX_DEVS 11
#define GV_MAX_QUEUES 8          /* a console with 3 ports needs 8 */
#define GV_QSIZE 64

struct gv_queue {
    uint16_t size;
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    uint16_t avail_idx, last_used;
};

struct gv_dev {
    uint64_t base;
    unsigned irq;
    uint32_t id;
    uint64_t features;           /* negotiated */
    struct gv_queue q[GV_MAX_QUEUES];
};

/* A buffer in a request: device-readable (writable = 0) or writable. */
struct gv_buf {
    void *addr;
    uint32_t len;
    int writable;
};

/* Find the devices announced on the command line; returns how many. */
unsigned gv_find(const char *cmdline, struct gv_dev *devs, unsigned max);

uint32_t gv_read32(const struct gv_dev *d, uint32_t off);
void gv_write32(const struct gv_dev *d, uint32_t off, uint32_t v);
uint8_t gv_config8(const struct gv_dev *d, uint32_t off);
uint32_t gv_config32(const struct gv_dev *d, uint32_t off);
uint64_t gv_config64(const struct gv_dev *d, uint32_t off);

/* Reset, acknowledge, negotiate (want & offered, plus VERSION_1), set up
 * nq queues, DRIVER_OK. Fails the test on any refusal. */
void gv_init(struct gv_dev *d, uint64_t want, unsigned nq);

/* Post a chain (through an indirect table if indirect) on queue qi and
 * notify; returns its head. */
uint16_t gv_submit(struct gv_dev *d, unsigned qi, const struct gv_buf *bufs, unsigned n,
                   int indirect);

/* Post raw descriptors as they are (for malformed-queue tests). */
void gv_submit_raw(struct gv_dev *d, unsigned qi, const struct vring_desc *descs, unsigned n,
                   uint16_t head);

/* Wait for the next used element on qi; fails the test after a long
 * spin. Returns the written length; *id gets the head. */
uint32_t gv_wait(struct gv_dev *d, unsigned qi, uint16_t *id);

/* Whether an element is waiting in qi's used ring. */
int gv_used_pending(const struct gv_dev *d, unsigned qi);

/* Nonzero: never move used_event (it stays 0: the first completion on each
 * queue interrupts, whatever the timing). */
extern int gv_hold_used_event;

/* Spin for roughly n iterations. */
void gv_spin(uint64_t n);
