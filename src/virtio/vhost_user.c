/* The vhost-user backend (see vhost_user.h). Everything the frontend sends
 * is checked before use: sizes per message type, queue indices, ring
 * addresses (translated from the frontend's virtual addresses through the
 * memory table, then checked against guest memory like any driver's),
 * region layout (no overlap, page-aligned, a bounded span). */
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "virtio/vhost_user.h"
#include "virtio/virtio.h"
#include "vmm/evloop.h"
#include "vmm/guest_mem.h"

enum {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4,
    VU_SET_MEM_TABLE = 5,
    VU_SET_LOG_BASE = 6,
    VU_SET_LOG_FD = 7,
    VU_SET_VRING_NUM = 8,
    VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10,
    VU_GET_VRING_BASE = 11,
    VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13,
    VU_SET_VRING_ERR = 14,
    VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18,
};

/* The feature bit that says GET/SET_PROTOCOL_FEATURES exist (offered: qemu
 * wants it to learn the backend's memory slot limit; no protocol feature
 * is offered through it). */
#define VU_F_PROTOCOL_FEATURES 30
#define VU_VERSION 1u
#define VU_FLAG_REPLY (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)
/* SET_VRING_KICK/CALL/ERR: the queue index, and "no fd" */
#define VU_VRING_IDX_MASK 0xffu
#define VU_VRING_NOFD (1u << 8)
#define VU_MAX_REGIONS 8
/* Guest-physical memory served: at most this span (the mapping reserves it). */
#define VU_SPAN_MAX (1ull << 40)

struct vu_region {
    uint64_t gpa, size, uaddr, mmap_offset;
};

struct vu_memory {
    uint32_t nregions, padding;
    struct vu_region regions[VU_MAX_REGIONS];
};

struct vu_vring_state {
    uint32_t index, num;
};

struct vu_vring_addr {
    uint32_t index, flags;
    uint64_t desc, used, avail, log;
};

struct vhost_user {
    struct virtio_dev *d;
    int sock;
    struct evloop *loop;
    struct guest_mem mem;
    struct vu_region regions[VU_MAX_REGIONS];
    unsigned n_regions;
    struct guest_mem_hole holes[VU_MAX_REGIONS];
    /* the frontend's ring addresses, as it gave them (its virtual ones) */
    struct vu_vring_addr addr[VIRTIO_MAX_QUEUES];
    bool addr_set[VIRTIO_MAX_QUEUES];
    /* With protocol features acked, rings start disabled until
     * SET_VRING_ENABLE; a ring is served when started and enabled. */
    bool protocol;
    bool enabled[VIRTIO_MAX_QUEUES];
    bool done;
    struct err *error;     /* why the session ended, if it broke */
};

int vhost_user_new(struct virtio_dev *d, int sock, struct vhost_user **out, struct err **err)
{
    struct vhost_user *vu = xcalloc(1, sizeof(*vu));
    vu->d = d;
    vu->sock = sock;
    vu->mem.memfd = -1;
    if (evloop_create(&vu->loop, err) < 0) {
        free(vu);
        return -1;
    }
    d->mem = &vu->mem;
    d->loop = vu->loop;
    *out = vu;
    return 0;
}

static int reply(struct vhost_user *vu, const struct vhost_user_msg *m, const void *p,
                 uint32_t len, struct err **err)
{
    uint8_t buf[sizeof(struct vhost_user_hdr) + 16];
    struct vhost_user_hdr h = {.request = m->hdr.request, .flags = VU_VERSION | VU_FLAG_REPLY,
                               .size = len};
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), p, len);
    if (write_all(vu->sock, buf, sizeof(h) + len) < 0)
        return err_make(err, errno, "vhost-user: reply to request %u", m->hdr.request);
    return 0;
}

static int reply_u64(struct vhost_user *vu, const struct vhost_user_msg *m, uint64_t v,
                     struct err **err)
{
    return reply(vu, m, &v, sizeof(v), err);
}

static void close_fds(struct vhost_user_msg *m)
{
    for (unsigned i = 0; i < m->n_fds; i++)
        if (m->fds[i] >= 0)
            close(m->fds[i]);
    m->n_fds = 0;
}

/* The payload must be exactly `want` bytes. */
static int want_size(const struct vhost_user_msg *m, uint32_t want, const char *name,
                     struct err **err)
{
    if (m->hdr.size != want)
        return err_make(err, EPROTO, "vhost-user: %s with a %u-byte payload (want %u)", name,
                        m->hdr.size, want);
    return 0;
}

static uint64_t payload_u64(const struct vhost_user_msg *m)
{
    uint64_t v;
    memcpy(&v, m->payload, sizeof(v));
    return v;
}

static int queue_index(struct vhost_user *vu, uint32_t idx, const char *name, struct err **err)
{
    if (idx >= vu->d->num_queues)
        return err_make(err, EPROTO, "vhost-user: %s for queue %u (the device has %u)", name,
                        idx, vu->d->num_queues);
    return 0;
}

/* A ring is stopped: no kick watched, nothing served. */
static void ring_stop(struct vhost_user *vu, unsigned q)
{
    struct virtio_dev *d = vu->d;
    if (d->kick_fd[q] >= 0) {
        if (vu->loop)
            evloop_del(vu->loop, d->kick_fd[q]);
        close(d->kick_fd[q]);
        d->kick_fd[q] = -1;
    }
    d->queues[q].ready = false;
}

/* The frontend's virtual address ua of len bytes as a guest-physical one. */
static int translate(const struct vhost_user *vu, uint64_t ua, uint64_t len, uint64_t *gpa)
{
    for (unsigned i = 0; i < vu->n_regions; i++) {
        const struct vu_region *r = &vu->regions[i];
        if (ua >= r->uaddr && ua - r->uaddr < r->size && len <= r->size - (ua - r->uaddr)) {
            *gpa = r->gpa + (ua - r->uaddr);
            return 0;
        }
    }
    return -1;
}

/* Resolve queue q's rings in guest memory and run it from the ring base
 * the frontend set (the used index is the ring's own). */
static int ring_start(struct vhost_user *vu, unsigned q, struct err **err)
{
    struct virtio_dev *d = vu->d;
    struct virtq *vq = &d->queues[q];
    const struct vu_vring_addr *a = &vu->addr[q];
    uint16_t n = vq->size;
    if (!vu->addr_set[q])
        return err_make(err, EPROTO, "vhost-user: queue %u kicked before its addresses", q);
    if (translate(vu, a->desc, 16ull * n, &vq->desc_gpa) < 0 ||
        translate(vu, a->avail, 6 + 2ull * n, &vq->avail_gpa) < 0 ||
        translate(vu, a->used, 6 + 8ull * n, &vq->used_gpa) < 0)
        return err_make(err, EPROTO, "vhost-user: queue %u's rings are outside the memory table",
                        q);
    uint16_t base = vq->last_avail;
    if (virtq_enable(vq, &vu->mem) < 0)
        return err_make(err, EPROTO, "vhost-user: queue %u: size %u or its ring addresses are "
                                     "invalid", q, n);
    vq->last_avail = base;
    vq->used_idx = vq->signalled_used = __atomic_load_n(&vq->used->idx, __ATOMIC_ACQUIRE);
    virtq_set_features(vq, d->driver_features);
    vq->ready = vu->enabled[q] || !vu->protocol;
    if (!(d->status & VIRTIO_CONFIG_S_DRIVER_OK)) {
        /* The frontend's driver negotiated with it; to the device, a
         * kicked ring means a running driver. */
        d->status |= VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
        if (d->ops->activate)
            d->ops->activate(d);
    }
    return 0;
}

static void unmap_memory(struct vhost_user *vu)
{
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
        vu->d->queues[q].ready = false;
    if (vu->mem.host)
        munmap(vu->mem.host, vu->mem.size);
    vu->mem = (struct guest_mem){.memfd = -1};
    vu->n_regions = 0;
}

/* SET_MEM_TABLE: map every region at its guest-physical offset in one
 * reserved span; what lies between regions is a PROT_NONE hole. */
static int set_mem_table(struct vhost_user *vu, struct vhost_user_msg *m, struct err **err)
{
    struct vu_memory t = {0};
    if (m->hdr.size < 8 || m->hdr.size > sizeof(t))
        return err_make(err, EPROTO, "vhost-user: SET_MEM_TABLE with a %u-byte payload",
                        m->hdr.size);
    memcpy(&t, m->payload, m->hdr.size);
    if (t.nregions == 0 || t.nregions > VU_MAX_REGIONS ||
        m->hdr.size != 8 + t.nregions * sizeof(struct vu_region) || m->n_fds != t.nregions)
        return err_make(err, EPROTO, "vhost-user: SET_MEM_TABLE: %u regions, %u fds, %u bytes",
                        t.nregions, m->n_fds, m->hdr.size);
    long page = sysconf(_SC_PAGESIZE);
    /* Regions by guest-physical address, each with its fd. */
    struct vu_region r[VU_MAX_REGIONS];
    int fd_of[VU_MAX_REGIONS];
    for (unsigned i = 0; i < t.nregions; i++) {
        unsigned j = i;
        for (; j > 0 && r[j - 1].gpa > t.regions[i].gpa; j--) {
            r[j] = r[j - 1];
            fd_of[j] = fd_of[j - 1];
        }
        r[j] = t.regions[i];
        fd_of[j] = m->fds[i];
    }
    uint64_t end = 0;
    for (unsigned i = 0; i < t.nregions; i++) {
        if (r[i].size == 0 || r[i].gpa % (uint64_t)page || r[i].size % (uint64_t)page ||
            r[i].mmap_offset % (uint64_t)page || r[i].gpa > VU_SPAN_MAX ||
            r[i].size > VU_SPAN_MAX - r[i].gpa || r[i].gpa < end)
            return err_make(err, EPROTO, "vhost-user: SET_MEM_TABLE: region %#llx+%#llx is "
                                         "unaligned, overlapping or beyond %llu GiB",
                            (unsigned long long)r[i].gpa, (unsigned long long)r[i].size,
                            VU_SPAN_MAX >> 30);
        /* Pages past the end of the file would fault (SIGBUS) on access. */
        struct stat st;
        if (fstat(fd_of[i], &st) < 0 || st.st_size < 0 ||
            r[i].mmap_offset > (uint64_t)st.st_size ||
            r[i].size > (uint64_t)st.st_size - r[i].mmap_offset)
            return err_make(err, EPROTO, "vhost-user: SET_MEM_TABLE: region %#llx+%#llx lies "
                                         "beyond its file",
                            (unsigned long long)r[i].gpa, (unsigned long long)r[i].size);
        end = r[i].gpa + r[i].size;
    }
    unmap_memory(vu);
    uint8_t *host = mmap(NULL, end, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (host == MAP_FAILED)
        return err_make(err, errno, "vhost-user: reserve %llu MiB for guest memory",
                        (unsigned long long)(end >> 20));
    unsigned holes = 0;
    uint64_t at = 0;
    for (unsigned i = 0; i < t.nregions; i++) {
        if (mmap(host + r[i].gpa, r[i].size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                 fd_of[i], (off_t)r[i].mmap_offset) == MAP_FAILED) {
            int e = errno;
            munmap(host, end);
            return err_make(err, e, "vhost-user: map guest memory %#llx+%#llx",
                            (unsigned long long)r[i].gpa, (unsigned long long)r[i].size);
        }
        if (r[i].gpa > at)
            vu->holes[holes++] = (struct guest_mem_hole){at, r[i].gpa};
        at = r[i].gpa + r[i].size;
    }
    memcpy(vu->regions, r, t.nregions * sizeof(r[0]));
    vu->n_regions = t.nregions;
    vu->mem = (struct guest_mem){.host = host, .size = end, .memfd = -1, .holes = vu->holes,
                                 .n_holes = holes};
    close_fds(m);
    /* Rings that ran go on in the new mapping. */
    for (unsigned q = 0; q < vu->d->num_queues; q++)
        if (vu->d->kick_fd[q] >= 0 && ring_start(vu, q, err) < 0)
            return -1;
    return 0;
}

/* SET_VRING_KICK / CALL / ERR: a queue index and maybe one fd (taken). */
static int vring_fd(struct vhost_user *vu, struct vhost_user_msg *m, const char *name,
                    unsigned *q, int *fd, struct err **err)
{
    if (want_size(m, 8, name, err) < 0)
        return -1;
    uint64_t v = payload_u64(m);
    *q = (unsigned)(v & VU_VRING_IDX_MASK);
    bool nofd = v & VU_VRING_NOFD;
    if (m->n_fds != (nofd ? 0u : 1u))
        return err_make(err, EPROTO, "vhost-user: %s with %u fds", name, m->n_fds);
    if (queue_index(vu, *q, name, err) < 0)
        return -1;
    *fd = nofd ? -1 : m->fds[0];
    m->n_fds = 0;
    return 0;
}

static int vring_state(struct vhost_user *vu, const struct vhost_user_msg *m, const char *name,
                       struct vu_vring_state *s, struct err **err)
{
    if (want_size(m, sizeof(*s), name, err) < 0)
        return -1;
    memcpy(s, m->payload, sizeof(*s));
    return queue_index(vu, s->index, name, err);
}

static int handle(struct vhost_user *vu, struct vhost_user_msg *m, struct err **err)
{
    struct virtio_dev *d = vu->d;
    struct vu_vring_state s;
    unsigned q;
    int fd;
    switch (m->hdr.request) {
    case VU_GET_FEATURES:
        return reply_u64(vu, m, d->host_features | 1ull << VU_F_PROTOCOL_FEATURES, err);
    case VU_SET_FEATURES: {
        if (want_size(m, 8, "SET_FEATURES", err) < 0)
            return -1;
        uint64_t f = payload_u64(m), offered = d->host_features | 1ull << VU_F_PROTOCOL_FEATURES;
        if (f & ~offered)
            return err_make(err, EPROTO, "vhost-user: SET_FEATURES %#llx: not offered",
                            (unsigned long long)(f & ~offered));
        vu->protocol = f & 1ull << VU_F_PROTOCOL_FEATURES;
        d->driver_features = f & ~(1ull << VU_F_PROTOCOL_FEATURES);
        return 0;
    }
    case VU_GET_PROTOCOL_FEATURES:
        return reply_u64(vu, m, 0, err);
    case VU_SET_PROTOCOL_FEATURES:
        if (want_size(m, 8, "SET_PROTOCOL_FEATURES", err) < 0)
            return -1;
        if (payload_u64(m) != 0)
            return err_make(err, EPROTO, "vhost-user: SET_PROTOCOL_FEATURES %#llx: none offered",
                            (unsigned long long)payload_u64(m));
        /* GET_FEATURES offered the bit: the rings follow its rules. */
        vu->protocol = true;
        return 0;
    case VU_SET_OWNER:
        return 0;
    case VU_RESET_OWNER:
        for (q = 0; q < d->num_queues; q++)
            ring_stop(vu, q);
        if (d->ops->reset)
            d->ops->reset(d);
        d->status = 0;
        return 0;
    case VU_SET_MEM_TABLE:
        return set_mem_table(vu, m, err);
    case VU_SET_VRING_NUM:
        if (vring_state(vu, m, "SET_VRING_NUM", &s, err) < 0)
            return -1;
        /* The frontend sizes the rings (qemu: its device's queue-size). */
        if (s.num == 0 || s.num > VIRTQ_SIZE_MAX || (s.num & (s.num - 1)))
            return err_make(err, EPROTO, "vhost-user: queue %u of size %u (a power of 2 up to %u)",
                            s.index, s.num, VIRTQ_SIZE_MAX);
        d->queues[s.index].size = (uint16_t)s.num;
        return 0;
    case VU_SET_VRING_ADDR: {
        struct vu_vring_addr a;
        if (want_size(m, sizeof(a), "SET_VRING_ADDR", err) < 0)
            return -1;
        memcpy(&a, m->payload, sizeof(a));
        if (queue_index(vu, a.index, "SET_VRING_ADDR", err) < 0)
            return -1;
        if (a.flags & 1u /* VHOST_VRING_F_LOG */)
            return err_make(err, EPROTO, "vhost-user: queue %u asks for dirty logging (not "
                                         "offered)", a.index);
        vu->addr[a.index] = a;
        vu->addr_set[a.index] = true;
        return d->kick_fd[a.index] >= 0 ? ring_start(vu, a.index, err) : 0;
    }
    case VU_SET_VRING_BASE:
        if (vring_state(vu, m, "SET_VRING_BASE", &s, err) < 0)
            return -1;
        if (s.num > 0xffff)
            return err_make(err, EPROTO, "vhost-user: queue %u base %u", s.index, s.num);
        d->queues[s.index].last_avail = (uint16_t)s.num;
        return 0;
    case VU_GET_VRING_BASE:
        if (vring_state(vu, m, "GET_VRING_BASE", &s, err) < 0)
            return -1;
        ring_stop(vu, s.index);
        s.num = d->queues[s.index].last_avail;
        return reply(vu, m, &s, sizeof(s), err);
    case VU_SET_VRING_KICK:
        if (vring_fd(vu, m, "SET_VRING_KICK", &q, &fd, err) < 0)
            return -1;
        ring_stop(vu, q);
        if (fd < 0)
            return err_make(err, EPROTO, "vhost-user: queue %u without a kick fd (polling is not "
                                         "offered)", q);
        d->kick_fd[q] = fd;
        d->kicks[q] = (struct virtio_kick){d, q};
        if (evloop_add(vu->loop, fd, EPOLLIN, virtio_dev_kicked, &d->kicks[q], err) < 0) {
            close(fd);
            d->kick_fd[q] = -1;
            return -1;
        }
        if (ring_start(vu, q, err) < 0)
            return -1;
        /* Buffers may be waiting since before the kick fd came. */
        if (d->ops->notify && virtio_dev_running(d) && d->queues[q].ready)
            d->ops->notify(d, q);
        return 0;
    case VU_SET_VRING_CALL:
        if (vring_fd(vu, m, "SET_VRING_CALL", &q, &fd, err) < 0)
            return -1;
        if (d->call_fd[q] >= 0)
            close(d->call_fd[q]);
        d->call_fd[q] = fd;
        return 0;
    case VU_SET_VRING_ERR:
        if (vring_fd(vu, m, "SET_VRING_ERR", &q, &fd, err) < 0)
            return -1;
        if (fd >= 0)
            close(fd); /* errors end the session instead */
        return 0;
    case VU_GET_QUEUE_NUM:
        return reply_u64(vu, m, d->num_queues, err);
    case VU_SET_VRING_ENABLE:
        if (vring_state(vu, m, "SET_VRING_ENABLE", &s, err) < 0)
            return -1;
        if (s.num > 1)
            return err_make(err, EPROTO, "vhost-user: SET_VRING_ENABLE %u for queue %u", s.num,
                            s.index);
        vu->enabled[s.index] = s.num;
        if (d->kick_fd[s.index] < 0)
            return 0;
        d->queues[s.index].ready = s.num;
        if (s.num && d->ops->notify && virtio_dev_running(d))
            d->ops->notify(d, s.index);
        return 0;
    default:
        return err_make(err, EPROTO, "vhost-user: request %u is not offered by this backend",
                        m->hdr.request);
    }
}

int vhost_user_handle(struct vhost_user *vu, struct vhost_user_msg *m, struct err **err)
{
    int r;
    if ((m->hdr.flags & 3u) != VU_VERSION)
        r = err_make(err, EPROTO, "vhost-user: message version %u (want %u)", m->hdr.flags & 3u,
                     VU_VERSION);
    else if (m->hdr.size > VHOST_USER_PAYLOAD_MAX)
        r = err_make(err, EPROTO, "vhost-user: a %u-byte payload", m->hdr.size);
    else
        r = handle(vu, m, err);
    close_fds(m);
    if (r < 0)
        return -1;
    /* Without REPLY_ACK negotiated nobody waits for this, but answer anyway
     * when asked (0: success). */
    if ((m->hdr.flags & VU_FLAG_NEED_REPLY) && m->hdr.request != VU_GET_FEATURES &&
        m->hdr.request != VU_GET_VRING_BASE && m->hdr.request != VU_GET_QUEUE_NUM)
        return reply_u64(vu, m, 0, err);
    return 0;
}

/* Read exactly len bytes (after the first part came); 0 at a clean EOF
 * before any byte, 1 when complete, -1 on error. */
static int read_exact(int fd, uint8_t *p, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n == 0 && got == 0 ? 0 : -1;
        got += (size_t)n;
    }
    return 1;
}

/* Receive one message: 1, 0 at EOF, -1 (*err) if it is cut or too big. */
static int receive(struct vhost_user *vu, struct vhost_user_msg *m, struct err **err)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
    } cm;
    struct iovec iov = {.iov_base = &m->hdr, .iov_len = sizeof(m->hdr)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                        .msg_controllen = sizeof(cm.buf)};
    m->n_fds = 0;
    ssize_t n;
    do
        n = recvmsg(vu->sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return 0;
    if (n < 0)
        return err_make(err, errno, "vhost-user: receive");
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (m->n_fds < VHOST_USER_MAX_FDS)
                m->fds[m->n_fds++] = fd;
            else
                close(fd);
        }
    }
    int r = 1;
    if (mh.msg_flags & MSG_CTRUNC)
        r = err_make(err, EPROTO, "vhost-user: a message with too many fds");
    else if ((size_t)n < sizeof(m->hdr) &&
             read_exact(vu->sock, (uint8_t *)&m->hdr + n, sizeof(m->hdr) - (size_t)n) != 1)
        r = err_make(err, EPROTO, "vhost-user: a message header cut short");
    else if (m->hdr.size > VHOST_USER_PAYLOAD_MAX)
        r = err_make(err, EPROTO, "vhost-user: request %u with a %u-byte payload",
                     m->hdr.request, m->hdr.size);
    else if (m->hdr.size && read_exact(vu->sock, m->payload, m->hdr.size) != 1)
        r = err_make(err, EPROTO, "vhost-user: request %u cut short", m->hdr.request);
    if (r < 0)
        close_fds(m);
    return r;
}

static void on_sock(void *arg, uint32_t events)
{
    (void)events;
    struct vhost_user *vu = arg;
    struct vhost_user_msg m;
    int r = receive(vu, &m, &vu->error);
    if (r == 1)
        r = vhost_user_handle(vu, &m, &vu->error) < 0 ? -1 : 1;
    if (r <= 0)
        vu->done = true;
}

int vhost_user_serve(struct vhost_user *vu, struct err **err)
{
    if (evloop_add(vu->loop, vu->sock, EPOLLIN, on_sock, vu, err) < 0)
        return -1;
    while (!vu->done)
        evloop_run_once(vu->loop, -1);
    if (vu->error) {
        *err = vu->error;
        vu->error = NULL;
        return -1;
    }
    return 0;
}

void vhost_user_free(struct vhost_user *vu)
{
    if (vu == NULL)
        return;
    for (unsigned q = 0; q < VIRTIO_MAX_QUEUES; q++)
        ring_stop(vu, q);
    unmap_memory(vu);
    if (vu->loop)
        evloop_destroy(vu->loop);
    vu->d->loop = NULL;
    err_free(&vu->error);
    free(vu);
}
