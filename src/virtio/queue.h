/* Split virtqueues (virtio 1.x, 2.7): descriptor chains gathered into
 * host iovecs, with indirect descriptors and event index. Everything read
 * from guest memory is checked: a malformed queue is an error, never a
 * crash, a hang, or an access outside guest RAM. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct guest_mem;

/* Segments of one chain; longer chains are refused as malformed. */
#define VIRTQ_CHAIN_MAX 256
/* Largest queue a device offers. */
#define VIRTQ_SIZE_MAX 1024

struct virtq {
    /* set by the driver through the transport */
    uint16_t size;
    bool ready;
    uint64_t desc_gpa, avail_gpa, used_gpa;
    /* the device's side */
    uint16_t last_avail;        /* next available-ring slot to take */
    uint16_t used_idx;          /* next used-ring slot to fill */
    uint16_t signalled_used;    /* used_idx at the last interrupt (event index) */
    bool event_idx;             /* VIRTIO_RING_F_EVENT_IDX negotiated */
    bool indirect;              /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
    /* host pointers resolved once when the queue became ready */
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
};

/* A descriptor chain: device-readable segments first, then writable. */
struct virtq_chain {
    uint16_t head;
    unsigned n_out, n_in;       /* readable ("out") and writable ("in") segments */
    uint64_t out_len, in_len;   /* their total sizes */
    struct iovec out[VIRTQ_CHAIN_MAX];
    struct iovec in[VIRTQ_CHAIN_MAX];
};

/* Check the driver's ring addresses against guest memory and resolve them;
 * on success the queue is usable. Returns 0, or -1 if they do not fit. */
int virtq_enable(struct virtq *q, const struct guest_mem *mem);

/* The ring features the driver acked (EVENT_IDX, INDIRECT_DESC) among
 * its feature bits. */
void virtq_set_features(struct virtq *q, uint64_t features);

/* Forget everything (device reset). */
void virtq_reset(struct virtq *q);

/* Take the next available chain. Returns 1 with *c filled, 0 if the ring is
 * empty, -1 if the driver wrote something malformed (*why says what). */
int virtq_pop(struct virtq *q, const struct guest_mem *mem, struct virtq_chain *c,
              const char **why);

/* Put the chain just popped back (the device could not use it yet). */
void virtq_unpop(struct virtq *q);

/* Return chain `head` with `written` bytes written into its writable part. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t written);

/* After pushes: whether the driver asked to be interrupted now. */
bool virtq_should_signal(struct virtq *q);

/* Copy up to len bytes from a chain's readable segments, starting at byte
 * off; returns the bytes copied. */
uint64_t virtq_read(const struct virtq_chain *c, uint64_t off, void *buf, uint64_t len);

/* Copy up to len bytes into a chain's writable segments at byte off;
 * returns the bytes copied. */
uint64_t virtq_write(const struct virtq_chain *c, uint64_t off, const void *buf, uint64_t len);
