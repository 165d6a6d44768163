/* virtio devices on cocoon's VMM: a device is an ops table plus its state,
 * behind one virtio-mmio transport (version 2 registers). Register accesses
 * come from vCPU threads; all queue work runs on the VM's event thread
 * (ioeventfd in, irqfd out). A per-device lock orders the two. */
#pragma once
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "virtio/queue.h"

struct err;
struct guest_mem;
struct evloop;
struct virtio_dev;

/* 16: a virtio-console with 7 ports takes 2 per port plus 2 for control */
#define VIRTIO_MAX_QUEUES 16
#define VIRTIO_CONFIG_MAX 256
#define VIRTIO_MMIO_SIZE 0x1000u

/* Feature bits every cocoon device offers. */
#define VIRTIO_F_VERSION_1_BIT 32
#define VIRTIO_COMMON_FEATURES                                                          \
    ((1ull << VIRTIO_F_VERSION_1_BIT) | (1ull << 28 /* INDIRECT_DESC */) |              \
     (1ull << 29 /* EVENT_IDX */))

struct virtio_dev_ops {
    const char *name;
    /* The device is wired into the VM (optional): watch host fds. */
    int (*attach)(struct virtio_dev *d, struct err **err);
    /* Queue q has new buffers (event thread, device lock held). */
    void (*notify)(struct virtio_dev *d, unsigned q);
    /* The driver set DRIVER_OK (vCPU thread, lock held): start I/O. */
    void (*activate)(struct virtio_dev *d);
    /* The driver reset the device (lock held): drop in-flight state. */
    void (*reset)(struct virtio_dev *d);
    /* The driver wrote config space bytes [off, off+len) (lock held). */
    void (*config_write)(struct virtio_dev *d, uint32_t off, const uint8_t *data, uint32_t len);
    /* Free the device's own state (after the VM stopped). */
    void (*destroy)(struct virtio_dev *d);
};

/* What an ioeventfd's callback needs: which device, which queue. */
struct virtio_kick {
    struct virtio_dev *d;
    unsigned q;
};

struct virtio_dev {
    const struct virtio_dev_ops *ops;
    void *priv;                     /* the device's own state */
    uint32_t device_id;             /* VIRTIO_ID_* */
    uint64_t host_features;
    unsigned num_queues;
    uint16_t queue_max;             /* QueueNumMax of every queue */
    uint8_t config[VIRTIO_CONFIG_MAX];
    uint32_t config_len;
    /* One shared memory region (id 0), e.g. virtio-fs's DAX window: its
     * guest-physical base and length (0: none). */
    uint64_t shm_base, shm_len;

    /* transport state, under lock */
    pthread_mutex_t lock;
    uint64_t base;                  /* guest-physical base of the register page */
    unsigned irq;                   /* GSI */
    uint32_t status;
    uint64_t driver_features;
    uint32_t dev_features_sel, drv_features_sel, queue_sel, shm_sel;
    uint32_t config_generation;
    atomic_uint interrupt_status;
    struct virtq queues[VIRTIO_MAX_QUEUES];

    /* wiring into the VM */
    const struct guest_mem *mem;
    struct evloop *loop;
    int vm_fd;
    int irq_fd;                     /* irqfd: a write raises the device's interrupt */
    int kick_fd[VIRTIO_MAX_QUEUES]; /* ioeventfds on QueueNotify, one per queue */
    int call_fd[VIRTIO_MAX_QUEUES]; /* vhost-user: the frontend's per-queue interrupt
                                     * eventfds (-1: irq_fd) */
    struct virtio_kick kicks[VIRTIO_MAX_QUEUES];
};

/* Set up the common part of a device (before virtio_mmio_attach). */
void virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, void *priv,
                     uint32_t device_id, uint64_t features, unsigned num_queues,
                     uint16_t queue_max);

/* Place d at guest-physical base with interrupt irq on the VM: irqfd,
 * one ioeventfd per queue, watched by the event loop. */
int virtio_mmio_attach(struct virtio_dev *d, int vm_fd, const struct guest_mem *mem,
                       struct evloop *loop, uint64_t base, unsigned irq, struct err **err);

/* Event-loop callback of a queue's kick eventfd (arg: its struct
 * virtio_kick): serve the queue if the device runs. */
void virtio_dev_kicked(void *arg, uint32_t events);

/* Put `size` bytes of host memory at `host` into the guest's physical
 * address space at gpa, as KVM memory slot `slot` (a device's own region:
 * pmem's file, virtio-fs's DAX window); `what` names it in the error. */
int virtio_dev_add_memory(struct virtio_dev *d, unsigned slot, uint64_t gpa, uint64_t size,
                          void *host, const char *what, struct err **err);

/* A guest access to the device's register page (vCPU thread). */
void virtio_mmio_access(struct virtio_dev *d, uint64_t offset, uint8_t *data, uint32_t len,
                        bool is_write);

/* Answer one request chain; returns the bytes written into its writable part. */
typedef uint32_t (*virtio_serve_fn)(struct virtio_dev *d, struct virtq_chain *c);

/* Serve every available chain of queue q with fn (into the scratch chain c),
 * return them, then interrupt the driver if it wants; a malformed queue
 * sets NEEDS_RESET. */
void virtio_queue_serve(struct virtio_dev *d, unsigned q, struct virtq_chain *c,
                        virtio_serve_fn fn);

/* Tell the driver that queue q has used buffers, if it wants to know. */
void virtio_dev_signal_used(struct virtio_dev *d, unsigned q);

/* The guest broke the rules (a malformed queue): set DEVICE_NEEDS_RESET,
 * stop processing until the driver resets the device, and say why once. */
void virtio_dev_needs_reset(struct virtio_dev *d, const char *why);

/* The device's config space changed: bump the generation, interrupt. */
void virtio_dev_config_changed(struct virtio_dev *d);

/* Release the transport's fds and call the device's destroy. */
void virtio_dev_destroy(struct virtio_dev *d);

/* Whether the driver has set DRIVER_OK and not broken anything. */
bool virtio_dev_running(const struct virtio_dev *d);
