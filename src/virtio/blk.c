/* virtio-blk (virtio 1.x section 5.2) backed by a raw file: read, write,
 * flush, discard (hole punching), serial id; read-only and O_DIRECT
 * options. Requests are served synchronously on the event thread straight
 * between the file and guest memory (preadv/pwritev on the guest's
 * buffers, no copy). */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"
#include "virtio/devices.h"

#define SECTOR 512ull
#define BLK_SEG_MAX (VIRTQ_CHAIN_MAX - 2)
#define BLK_DISCARD_SEG_MAX 32

struct blk {
    struct virtio_dev dev;
    int fd;
    bool readonly;
    uint64_t sectors;
    char serial[VIRTIO_BLK_ID_BYTES];
    struct virtq_chain chain;
    struct iovec data[VIRTQ_CHAIN_MAX];
};

/* The data segments of a request: the readable ones after the 16-byte
 * header (writes) or the writable ones before the status byte (reads). */
static unsigned data_iov(struct blk *b, bool from_in, uint64_t *len)
{
    const struct virtq_chain *c = &b->chain;
    unsigned n = 0;
    *len = 0;
    if (from_in) {
        uint64_t want = c->in_len - 1;
        for (unsigned i = 0; i < c->n_in && *len < want; i++) {
            size_t k = c->in[i].iov_len;
            if (k > want - *len)
                k = want - *len;
            b->data[n++] = (struct iovec){c->in[i].iov_base, k};
            *len += k;
        }
    } else {
        uint64_t skip = sizeof(struct virtio_blk_outhdr);
        for (unsigned i = 0; i < c->n_out; i++) {
            size_t k = c->out[i].iov_len;
            if (skip >= k) {
                skip -= k;
                continue;
            }
            b->data[n++] = (struct iovec){(uint8_t *)c->out[i].iov_base + skip, k - skip};
            *len += k - skip;
            skip = 0;
        }
    }
    return n;
}

static int do_rw(struct blk *b, bool write, uint64_t sector, uint32_t *written)
{
    uint64_t len;
    unsigned n = data_iov(b, !write, &len);
    if (len % SECTOR || sector > b->sectors || len / SECTOR > b->sectors - sector)
        return VIRTIO_BLK_S_IOERR;
    if (write && b->readonly)
        return VIRTIO_BLK_S_IOERR;
    uint64_t off = sector * SECTOR;
    struct iovec *v = b->data;
    while (len) {
        ssize_t r = write ? pwritev(b->fd, v, (int)n, (off_t)off)
                          : preadv(b->fd, v, (int)n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return VIRTIO_BLK_S_IOERR;
        if (r == 0) {
            if (write)
                return VIRTIO_BLK_S_IOERR;
            /* past the end of a file that shrank: the rest reads as zeros */
            for (unsigned i = 0; i < n; i++)
                memset(v[i].iov_base, 0, v[i].iov_len);
            r = (ssize_t)len;
        }
        if (!write)
            *written += (uint32_t)r;
        len -= (uint64_t)r;
        off += (uint64_t)r;
        while (n && (size_t)r >= v->iov_len) {
            r -= (ssize_t)v->iov_len;
            v++;
            n--;
        }
        if (n && r) {
            v->iov_base = (uint8_t *)v->iov_base + r;
            v->iov_len -= (size_t)r;
        }
    }
    return VIRTIO_BLK_S_OK;
}

static int do_discard(struct blk *b)
{
    if (b->readonly)
        return VIRTIO_BLK_S_IOERR;
    uint64_t len = b->chain.out_len - sizeof(struct virtio_blk_outhdr);
    if (len == 0 || len % sizeof(struct virtio_blk_discard_write_zeroes) ||
        len / sizeof(struct virtio_blk_discard_write_zeroes) > BLK_DISCARD_SEG_MAX)
        return VIRTIO_BLK_S_IOERR;
    for (uint64_t off = 0; off < len; off += sizeof(struct virtio_blk_discard_write_zeroes)) {
        struct virtio_blk_discard_write_zeroes s;
        virtq_read(&b->chain, sizeof(struct virtio_blk_outhdr) + off, &s, sizeof(s));
        if (s.flags || s.sector > b->sectors || s.num_sectors > b->sectors - s.sector)
            return VIRTIO_BLK_S_UNSUPP;
        if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(s.sector * SECTOR), (off_t)(s.num_sectors * SECTOR)) < 0)
            return VIRTIO_BLK_S_IOERR;
    }
    return VIRTIO_BLK_S_OK;
}

/* Serve one request; returns the bytes written into guest buffers. */
static uint32_t serve(struct virtio_dev *d, struct virtq_chain *c)
{
    struct blk *b = d->priv;
    struct virtio_blk_outhdr h;
    uint32_t written = 0;
    uint8_t status;
    if (c->in_len < 1)
        return 0; /* no room for a status: nothing to answer */
    if (virtq_read(c, 0, &h, sizeof(h)) < sizeof(h)) {
        status = VIRTIO_BLK_S_IOERR;
    } else {
        switch (h.type) {
        case VIRTIO_BLK_T_IN: status = (uint8_t)do_rw(b, false, h.sector, &written); break;
        case VIRTIO_BLK_T_OUT: status = (uint8_t)do_rw(b, true, h.sector, &written); break;
        case VIRTIO_BLK_T_FLUSH:
            status = fdatasync(b->fd) == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
            break;
        case VIRTIO_BLK_T_GET_ID: {
            uint64_t n = c->in_len - 1 < sizeof(b->serial) ? c->in_len - 1 : sizeof(b->serial);
            written = (uint32_t)virtq_write(c, 0, b->serial, n);
            status = VIRTIO_BLK_S_OK;
            break;
        }
        case VIRTIO_BLK_T_DISCARD: status = (uint8_t)do_discard(b); break;
        default: status = VIRTIO_BLK_S_UNSUPP;
        }
    }
    virtq_write(c, c->in_len - 1, &status, 1);
    return written + 1;
}

static void blk_notify(struct virtio_dev *d, unsigned qi)
{
    struct blk *b = d->priv;
    virtio_queue_serve(d, qi, &b->chain, serve);
}

static void blk_destroy(struct virtio_dev *d)
{
    struct blk *b = d->priv;
    if (b->fd >= 0)
        close(b->fd);
    free(b);
}

static const struct virtio_dev_ops blk_ops = {
    .name = "blk", .notify = blk_notify, .destroy = blk_destroy,
};

int virtio_blk_create(const struct virtio_blk_opts *o, struct virtio_dev **out, struct err **err)
{
    if (o->serial && strlen(o->serial) > VIRTIO_BLK_ID_BYTES)
        return err_input(err, "disk serial `%s` is longer than %d bytes", o->serial,
                         VIRTIO_BLK_ID_BYTES);
    int flags = (o->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (o->direct ? O_DIRECT : 0);
    int fd = open(o->path, flags);
    if (fd < 0)
        return err_make(err, errno, "disk `%s`", o->path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_input(err, "disk `%s` is not a regular file", o->path);
    }
    struct blk *b = xcalloc(1, sizeof(*b));
    b->fd = fd;
    b->readonly = o->readonly;
    b->sectors = (uint64_t)st.st_size / SECTOR;
    if (o->serial)
        memcpy(b->serial, o->serial, strlen(o->serial));
    uint64_t f = (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |
                 (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_DISCARD);
    if (o->readonly)
        f |= 1ull << VIRTIO_BLK_F_RO;
    virtio_dev_init(&b->dev, &blk_ops, b, VIRTIO_ID_BLOCK, f, 1, 256);
    struct virtio_blk_config cfg = {
        .capacity = b->sectors,
        .seg_max = BLK_SEG_MAX,
        .blk_size = SECTOR,
        .max_discard_sectors = UINT32_MAX,
        .max_discard_seg = BLK_DISCARD_SEG_MAX,
        .discard_sector_alignment = 8,
    };
    memcpy(b->dev.config, &cfg, sizeof(cfg));
    b->dev.config_len = sizeof(cfg);
    *out = &b->dev;
    return 0;
}
