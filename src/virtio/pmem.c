/* virtio-pmem (virtio 1.x section 5.19): a host file mapped straight into
 * guest-physical memory, so the guest can mount it with DAX and keep no
 * page-cache copy of its own. MAP_PRIVATE (the default) shares the file's
 * clean pages between every VM through the host page cache and copies a
 * page only when a guest writes it: the file never changes. MAP_SHARED
 * writes go to the file; a flush request then syncs it. */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_pmem.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"
#include "virtio/devices.h"

#define PMEM_ALIGN (2ull << 20)

struct pmem {
    struct virtio_dev dev;
    int fd;
    bool shared;
    uint8_t *host;            /* the mapping: file, then zeros up to the 2 MiB boundary */
    uint64_t file_size, size, gpa;
    unsigned slot;
    struct virtq_chain chain;
};

/* A flush request: sync the file if guest writes reach it. */
static uint32_t pmem_flush(struct virtio_dev *d, struct virtq_chain *c)
{
    struct pmem *p = d->priv;
    struct virtio_pmem_req req;
    struct virtio_pmem_resp resp = {.ret = 0};
    if (virtq_read(c, 0, &req, sizeof(req)) < sizeof(req) ||
        req.type != VIRTIO_PMEM_REQ_TYPE_FLUSH)
        resp.ret = 1;
    else if (p->shared && (msync(p->host, p->file_size, MS_SYNC) < 0 || fsync(p->fd) < 0))
        resp.ret = 1;
    return (uint32_t)virtq_write(c, 0, &resp, sizeof(resp));
}

static void pmem_notify(struct virtio_dev *d, unsigned qi)
{
    struct pmem *p = d->priv;
    virtio_queue_serve(d, qi, &p->chain, pmem_flush);
}

/* Put the mapping into the guest's physical address space. */
static int pmem_attach(struct virtio_dev *d, struct err **err)
{
    struct pmem *p = d->priv;
    return virtio_dev_add_memory(d, p->slot, p->gpa, p->size, p->host, "pmem", err);
}

static void pmem_destroy(struct virtio_dev *d)
{
    struct pmem *p = d->priv;
    if (p->host)
        munmap(p->host, p->size);
    if (p->fd >= 0)
        close(p->fd);
    free(p);
}

static const struct virtio_dev_ops pmem_ops = {
    .name = "pmem", .attach = pmem_attach, .notify = pmem_notify, .destroy = pmem_destroy,
};

uint64_t virtio_pmem_size(const struct virtio_dev *d)
{
    return ((const struct pmem *)d->priv)->size;
}

int virtio_pmem_create(const struct virtio_pmem_opts *o, struct virtio_dev **out,
                       struct err **err)
{
    if (o->gpa % PMEM_ALIGN)
        return err_input(err, "pmem: guest address %#llx is not 2 MiB aligned",
                         (unsigned long long)o->gpa);
    int fd = open(o->path, (o->shared ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return err_make(err, errno, "pmem `%s`", o->path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        close(fd);
        return err_input(err, "pmem `%s` is not a non-empty regular file", o->path);
    }
    struct pmem *p = xcalloc(1, sizeof(*p));
    p->fd = fd;
    p->shared = o->shared;
    p->file_size = (uint64_t)st.st_size;
    p->size = (p->file_size + PMEM_ALIGN - 1) & ~(PMEM_ALIGN - 1);
    p->gpa = o->gpa;
    p->slot = o->slot;
    /* Reserve the whole 2 MiB-rounded range as zeros, then lay the file
     * over its start: the tail past the file's end reads as zeros instead
     * of faulting with SIGBUS. */
    void *m = mmap(NULL, p->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m != MAP_FAILED &&
        mmap(m, p->file_size, PROT_READ | PROT_WRITE,
             (o->shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED, fd, 0) == MAP_FAILED) {
        int e = errno;
        munmap(m, p->size);
        errno = e;
        m = MAP_FAILED;
    }
    if (m == MAP_FAILED) {
        int e = errno;
        close(fd);
        free(p);
        return err_make(err, e, "pmem `%s`: map", o->path);
    }
    p->host = m;
    virtio_dev_init(&p->dev, &pmem_ops, p, VIRTIO_ID_PMEM, 0, 1, 64);
    struct virtio_pmem_config cfg = {.start = p->gpa, .size = p->size};
    memcpy(p->dev.config, &cfg, sizeof(cfg));
    p->dev.config_len = sizeof(cfg);
    *out = &p->dev;
    return 0;
}
