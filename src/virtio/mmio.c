/* The virtio-mmio transport, version 2 (virtio 1.x section 4.2): the
 * register page a driver programs, ioeventfds for queue notifications and
 * an irqfd for interrupts. Register accesses run on vCPU threads under the
 * device lock; queue work runs on the event thread under the same lock. */
#include <errno.h>
#include <linux/kvm.h>
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "vmm/evloop.h"
#include "vmm/guest_mem.h"
#include "virtio/virtio.h"

#define VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" */
#define COCOON_VENDOR_ID 0x4e4f4343u  /* "CCON" */

void virtio_dev_init(struct virtio_dev *d, const struct virtio_dev_ops *ops, void *priv,
                     uint32_t device_id, uint64_t features, unsigned num_queues,
                     uint16_t queue_max)
{
    memset(d, 0, sizeof(*d));
    d->ops = ops;
    d->priv = priv;
    d->device_id = device_id;
    d->host_features = features | VIRTIO_COMMON_FEATURES;
    d->num_queues = num_queues < VIRTIO_MAX_QUEUES ? num_queues : VIRTIO_MAX_QUEUES;
    d->queue_max = queue_max;
    d->irq_fd = -1;
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
        d->kick_fd[i] = d->call_fd[i] = -1;
    pthread_mutex_init(&d->lock, NULL);
}

bool virtio_dev_running(const struct virtio_dev *d)
{
    return (d->status & VIRTIO_CONFIG_S_DRIVER_OK) && !(d->status & VIRTIO_CONFIG_S_NEEDS_RESET);
}

/* Interrupt the driver: through queue q's own call eventfd if it has one
 * (vhost-user), else the device's irqfd. */
static void raise_irq(struct virtio_dev *d, unsigned bit, unsigned q)
{
    atomic_fetch_or(&d->interrupt_status, bit);
    int fd = q < VIRTIO_MAX_QUEUES && d->call_fd[q] >= 0 ? d->call_fd[q] : d->irq_fd;
    uint64_t one = 1;
    if (fd >= 0 && write(fd, &one, sizeof(one)) < 0)
        log_debug("virtio-%s: interrupt: %s", d->ops->name, strerror(errno));
}

void virtio_dev_signal_used(struct virtio_dev *d, unsigned q)
{
    if (q < d->num_queues && virtq_should_signal(&d->queues[q]))
        raise_irq(d, VIRTIO_MMIO_INT_VRING, q);
}

void virtio_queue_serve(struct virtio_dev *d, unsigned qi, struct virtq_chain *c,
                        virtio_serve_fn fn)
{
    struct virtq *q = &d->queues[qi];
    const char *why = NULL;
    int got;
    bool pushed = false;
    while ((got = virtq_pop(q, d->mem, c, &why)) > 0) {
        virtq_push(q, c->head, fn(d, c));
        pushed = true;
    }
    if (got < 0)
        virtio_dev_needs_reset(d, why);
    if (pushed)
        virtio_dev_signal_used(d, qi);
}

void virtio_dev_needs_reset(struct virtio_dev *d, const char *why)
{
    if (d->status & VIRTIO_CONFIG_S_NEEDS_RESET)
        return;
    log_warn("virtio-%s at %#llx: %s; the device needs a reset", d->ops->name,
             (unsigned long long)d->base, why);
    d->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    if (d->status & VIRTIO_CONFIG_S_DRIVER_OK)
        raise_irq(d, VIRTIO_MMIO_INT_CONFIG, VIRTIO_MAX_QUEUES);
}

void virtio_dev_config_changed(struct virtio_dev *d)
{
    d->config_generation++;
    if (d->status & VIRTIO_CONFIG_S_DRIVER_OK)
        raise_irq(d, VIRTIO_MMIO_INT_CONFIG, VIRTIO_MAX_QUEUES);
}

static void device_reset(struct virtio_dev *d)
{
    if (d->ops->reset)
        d->ops->reset(d);
    d->status = 0;
    d->driver_features = 0;
    d->dev_features_sel = d->drv_features_sel = d->queue_sel = 0;
    atomic_store(&d->interrupt_status, 0);
    for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
        virtq_reset(&d->queues[i]);
}

static void set_status(struct virtio_dev *d, uint32_t v)
{
    if (v == 0) {
        device_reset(d);
        return;
    }
    uint32_t old = d->status;
    if ((v & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK)) {
        /* Only what we offered, and only the virtio 1.x interface. */
        if ((d->driver_features & ~d->host_features) ||
            !(d->driver_features & (1ull << VIRTIO_F_VERSION_1_BIT)))
            v &= ~(uint32_t)VIRTIO_CONFIG_S_FEATURES_OK;
        for (unsigned i = 0; i < d->num_queues; i++)
            virtq_set_features(&d->queues[i], d->driver_features);
    }
    /* The device keeps NEEDS_RESET until a reset. */
    d->status = v | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
    if ((v & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK) &&
        d->ops->activate)
        d->ops->activate(d);
}

static uint32_t reg_read(struct virtio_dev *d, uint64_t off)
{
    struct virtq *q = d->queue_sel < d->num_queues ? &d->queues[d->queue_sel] : NULL;
    bool shm = d->shm_sel == 0 && d->shm_len > 0;
    switch (off) {
    case VIRTIO_MMIO_MAGIC_VALUE: return VIRTIO_MMIO_MAGIC;
    case VIRTIO_MMIO_VERSION: return 2;
    case VIRTIO_MMIO_DEVICE_ID: return d->device_id;
    case VIRTIO_MMIO_VENDOR_ID: return COCOON_VENDOR_ID;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        return d->dev_features_sel < 2 ? (uint32_t)(d->host_features >> (32 * d->dev_features_sel))
                                       : 0;
    case VIRTIO_MMIO_QUEUE_NUM_MAX: return q ? d->queue_max : 0;
    case VIRTIO_MMIO_QUEUE_READY: return q ? q->ready : 0;
    case VIRTIO_MMIO_INTERRUPT_STATUS: return atomic_load(&d->interrupt_status);
    case VIRTIO_MMIO_STATUS: return d->status;
    case VIRTIO_MMIO_CONFIG_GENERATION: return d->config_generation;
    /* Shared memory region d->shm_sel: -1 as its length if there is none. */
    case VIRTIO_MMIO_SHM_LEN_LOW: return shm ? (uint32_t)d->shm_len : 0xffffffff;
    case VIRTIO_MMIO_SHM_LEN_HIGH: return shm ? (uint32_t)(d->shm_len >> 32) : 0xffffffff;
    case VIRTIO_MMIO_SHM_BASE_LOW: return shm ? (uint32_t)d->shm_base : 0xffffffff;
    case VIRTIO_MMIO_SHM_BASE_HIGH: return shm ? (uint32_t)(d->shm_base >> 32) : 0xffffffff;
    default: return 0;
    }
}

static void set_addr(uint64_t *a, bool high, uint32_t v)
{
    *a = high ? (*a & 0xffffffffull) | (uint64_t)v << 32 : (*a & ~0xffffffffull) | v;
}

static void reg_write(struct virtio_dev *d, uint64_t off, uint32_t v)
{
    struct virtq *q = d->queue_sel < d->num_queues ? &d->queues[d->queue_sel] : NULL;
    /* queue layout may only change while the queue is not ready */
    bool q_setup = q && !q->ready && (d->status & VIRTIO_CONFIG_S_FEATURES_OK) &&
                   !(d->status & VIRTIO_CONFIG_S_DRIVER_OK);
    switch (off) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL: d->dev_features_sel = v; break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL: d->drv_features_sel = v; break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        if (d->drv_features_sel < 2 && !(d->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
            unsigned sh = 32 * d->drv_features_sel;
            d->driver_features = (d->driver_features & ~(0xffffffffull << sh)) | (uint64_t)v << sh;
        }
        break;
    case VIRTIO_MMIO_QUEUE_SEL: d->queue_sel = v; break;
    case VIRTIO_MMIO_SHM_SEL: d->shm_sel = v; break;
    case VIRTIO_MMIO_QUEUE_NUM:
        if (q_setup)
            q->size = v <= d->queue_max ? (uint16_t)v : 0;
        break;
    case VIRTIO_MMIO_QUEUE_READY:
        if (q && v == 1 && q_setup) {
            if (virtq_enable(q, d->mem) < 0)
                virtio_dev_needs_reset(d, "a queue's size or ring addresses are invalid");
        } else if (q && v == 0) {
            q->ready = false;
        }
        break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        if (q_setup)
            set_addr(&q->desc_gpa, off == VIRTIO_MMIO_QUEUE_DESC_HIGH, v);
        break;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
        if (q_setup)
            set_addr(&q->avail_gpa, off == VIRTIO_MMIO_QUEUE_AVAIL_HIGH, v);
        break;
    case VIRTIO_MMIO_QUEUE_USED_LOW:
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
        if (q_setup)
            set_addr(&q->used_gpa, off == VIRTIO_MMIO_QUEUE_USED_HIGH, v);
        break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        /* Normally caught by the ioeventfd; a write the eventfd's datamatch
         * missed (another width) lands here: kick the event thread. */
        if (v < d->num_queues && d->kick_fd[v] >= 0) {
            uint64_t one = 1;
            if (write(d->kick_fd[v], &one, sizeof(one)) < 0)
                log_debug("virtio-%s: kick: %s", d->ops->name, strerror(errno));
        }
        break;
    case VIRTIO_MMIO_INTERRUPT_ACK: atomic_fetch_and(&d->interrupt_status, ~v); break;
    case VIRTIO_MMIO_STATUS: set_status(d, v); break;
    default: break; /* read-only or unknown: ignored */
    }
}

void virtio_mmio_access(struct virtio_dev *d, uint64_t off, uint8_t *data, uint32_t len,
                        bool is_write)
{
    pthread_mutex_lock(&d->lock);
    if (off >= VIRTIO_MMIO_CONFIG) {
        uint64_t c = off - VIRTIO_MMIO_CONFIG;
        bool inside = c < d->config_len && len <= d->config_len - c;
        if (!is_write)
            memset(data, 0, len);
        if (inside && !is_write)
            memcpy(data, d->config + c, len);
        else if (inside && d->ops->config_write)
            d->ops->config_write(d, (uint32_t)c, data, len);
    } else if (len == 4 && off % 4 == 0) {
        if (is_write) {
            uint32_t v;
            memcpy(&v, data, 4);
            reg_write(d, off, v);
        } else {
            uint32_t v = reg_read(d, off);
            memcpy(data, &v, 4);
        }
    } else if (!is_write) {
        memset(data, 0, len); /* registers are 32-bit only */
    }
    pthread_mutex_unlock(&d->lock);
}

void virtio_dev_kicked(void *arg, uint32_t events)
{
    (void)events;
    struct virtio_kick *k = arg;
    struct virtio_dev *d = k->d;
    uint64_t n;
    if (read(d->kick_fd[k->q], &n, sizeof(n)) < 0)
        return;
    pthread_mutex_lock(&d->lock);
    if (virtio_dev_running(d) && d->queues[k->q].ready && d->ops->notify)
        d->ops->notify(d, k->q);
    pthread_mutex_unlock(&d->lock);
}

int virtio_dev_add_memory(struct virtio_dev *d, unsigned slot, uint64_t gpa, uint64_t size,
                          void *host, const char *what, struct err **err)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot, .guest_phys_addr = gpa, .memory_size = size,
        .userspace_addr = (uint64_t)(uintptr_t)host,
    };
    if (ioctl(d->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return err_make(err, errno, "%s: KVM_SET_USER_MEMORY_REGION at %#llx", what,
                        (unsigned long long)gpa);
    return 0;
}

int virtio_mmio_attach(struct virtio_dev *d, int vm_fd, const struct guest_mem *mem,
                       struct evloop *loop, uint64_t base, unsigned irq, struct err **err)
{
    d->vm_fd = vm_fd;
    d->mem = mem;
    d->loop = loop;
    d->base = base;
    d->irq = irq;
    d->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (d->irq_fd < 0)
        return err_make(err, errno, "virtio-%s: eventfd", d->ops->name);
    struct kvm_irqfd irqfd = {.fd = (uint32_t)d->irq_fd, .gsi = irq};
    if (ioctl(vm_fd, KVM_IRQFD, &irqfd) < 0)
        return err_make(err, errno, "virtio-%s: KVM_IRQFD for irq %u", d->ops->name, irq);
    for (unsigned q = 0; q < d->num_queues; q++) {
        d->kick_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (d->kick_fd[q] < 0)
            return err_make(err, errno, "virtio-%s: eventfd", d->ops->name);
        struct kvm_ioeventfd io = {.datamatch = q, .addr = base + VIRTIO_MMIO_QUEUE_NOTIFY,
                                   .len = 4, .fd = d->kick_fd[q],
                                   .flags = KVM_IOEVENTFD_FLAG_DATAMATCH};
        if (ioctl(vm_fd, KVM_IOEVENTFD, &io) < 0)
            return err_make(err, errno, "virtio-%s: KVM_IOEVENTFD", d->ops->name);
        d->kicks[q] = (struct virtio_kick){d, q};
        if (evloop_add(loop, d->kick_fd[q], EPOLLIN, virtio_dev_kicked, &d->kicks[q], err) < 0)
            return -1;
    }
    return d->ops->attach ? d->ops->attach(d, err) : 0;
}

void virtio_dev_destroy(struct virtio_dev *d)
{
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        if (d->kick_fd[q] < 0)
            continue;
        if (d->loop)
            evloop_del(d->loop, d->kick_fd[q]);
        close(d->kick_fd[q]);
        d->kick_fd[q] = -1;
    }
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++) {
        if (d->call_fd[q] >= 0)
            close(d->call_fd[q]);
        d->call_fd[q] = -1;
    }
    if (d->irq_fd >= 0)
        close(d->irq_fd);
    d->irq_fd = -1;
    if (d->ops->destroy)
        d->ops->destroy(d);
    pthread_mutex_destroy(&d->lock);
}
