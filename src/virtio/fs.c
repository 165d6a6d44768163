/* virtio-fs (virtio 1.2 section 5.11, device id 26): cocoon's FUSE protocol
 * core (src/fs) served over virtqueues. Queue 0 is hiprio (FORGET,
 * BATCH_FORGET, INTERRUPT; anything else there is refused), queues 1..N
 * carry every request. A request is one descriptor chain: the
 * device-readable part holds struct fuse_in_header and the op's body (a
 * WRITE's data after it), the writable part receives struct
 * fuse_out_header and the reply.
 *
 * The readable part is copied out of guest memory before anything looks at
 * it (a guest could change a name between its check and its use); replies
 * go straight into the guest's buffers (READ data with preadv), except for
 * chains scattered over more segments than the core fills at once, which
 * are answered through a bounce buffer. The session has no transport hooks,
 * so the core never offers FUSE_PASSTHROUGH (there is no /dev/fuse to
 * register backing files with), and it always keeps POSIX locks in the
 * guest kernel: SETLKW is refused, since a wait would stall the event
 * thread. Everything runs on the event thread. A device reset or a
 * FUSE_DESTROY starts a fresh session (the next driver sends INIT again).
 *
 * The DAX window (optional: shared memory region 0, VIRTIO_FS_SHMCAP_ID_CACHE)
 * is a guest-physical range backed by a PROT_NONE reservation in the VMM;
 * FUSE_SETUPMAPPING lays a file range over part of it with mmap(MAP_SHARED |
 * MAP_FIXED), so the guest reads and writes the host's page cache, which
 * every VM and the host share; FUSE_REMOVEMAPPING puts PROT_NONE back. A
 * guest touching a part with nothing mapped, writing a read-only part, or
 * reading a page past the end of a file the host truncated gets KVM_RUN's
 * EFAULT: its VM stops, as under QEMU. A new session clears the window. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_fs.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "fs/fuse_abi.h"
#include "virtio/devices.h"

#define Q_HIPRIO 0
#define FS_TAG_MAX ((size_t)sizeof(((struct virtio_fs_config *)0)->tag))
/* A READ of max_pages pages is max_pages + a few segments (headers): it
 * must fit a chain (VIRTQ_CHAIN_MAX) or the queue would need a reset. */
#define FS_PAGES_MAX (VIRTQ_CHAIN_MAX - 8)
/* The core fills at most this many reply segments of one READ itself
 * (READ_SEGS in src/fs/ops_file.c). */
#define FS_DIRECT_SEGS 256
#define DAX_ALIGN (2ull << 20) /* the Linux driver maps 2 MiB ranges (FUSE_DAX_SZ) */
_Static_assert(VIRTIO_FS_MAX_QUEUES < VIRTIO_MAX_QUEUES, "hiprio + request queues");

struct vfs {
    struct virtio_dev dev;
    int rootfd;              /* O_PATH of the shared directory */
    struct fs_options opt;
    struct fs_session *s;    /* NULL if starting a new one failed */
    bool used;               /* s has seen a request */
    bool fresh;              /* the driver reset the device: the next request starts anew */
    size_t req_max;          /* the largest request (fs_session_bufsize) */
    uint8_t *req;            /* the request, copied out of the guest */
    uint8_t *bounce;         /* replies to very scattered chains (allocated when needed) */
    struct virtq_chain chain;
    struct fs_transport tr;  /* the DAX hooks (none without a window) */
    uint8_t *dax;            /* the window's host reservation, or NULL */
    uint64_t dax_size, dax_gpa;
    unsigned dax_slot;
};

/* ---- the DAX window ---- */

static bool dax_range_ok(const struct vfs *v, uint64_t moffset, uint64_t len)
{
    return moffset <= v->dax_size && len <= v->dax_size - moffset;
}

/* Put nothing (PROT_NONE, no memory) over [moffset, moffset + len). */
static int dax_clear(struct vfs *v, uint64_t moffset, uint64_t len)
{
    void *p = mmap(v->dax + moffset, len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    return p == MAP_FAILED ? -errno : 0;
}

static int dax_map(void *ctx, int fd, uint64_t foffset, uint64_t len, uint64_t moffset,
                   bool write)
{
    struct vfs *v = ctx;
    if (!dax_range_ok(v, moffset, len))
        return -EINVAL;
    int prot = PROT_READ | (write ? PROT_WRITE : 0);
    void *p = mmap(v->dax + moffset, len, prot, MAP_SHARED | MAP_FIXED, fd, (off_t)foffset);
    if (p == MAP_FAILED) {
        int e = -errno;
        dax_clear(v, moffset, len); /* whatever was there is gone either way */
        return e;
    }
    return 0;
}

static int dax_unmap(void *ctx, uint64_t moffset, uint64_t len)
{
    struct vfs *v = ctx;
    if (!dax_range_ok(v, moffset, len))
        return -EINVAL;
    return dax_clear(v, moffset, len);
}

/* Drop the session and start a new one on the same directory. */
static void session_restart(struct vfs *v)
{
    fs_session_free(v->s);
    v->s = NULL;
    v->used = false;
    /* The new driver knows none of the old mappings. */
    if (v->dax && dax_clear(v, 0, v->dax_size) < 0)
        log_warn("virtio-fs: clearing the DAX window: %s", strerror(errno));
    struct err *e = NULL;
    if (fs_session_new(v->rootfd, &v->opt, &v->tr, &v->s, &e) < 0) {
        log_warn("virtio-fs: %s; requests fail with EIO until a device reset", e->msg);
        err_free(&e);
    }
}

static bool op_noreply(uint32_t opcode)
{
    return opcode == FUSE_FORGET || opcode == FUSE_BATCH_FORGET || opcode == FUSE_INTERRUPT;
}

/* Answer with a bare error header, if the chain has room for one. */
static uint32_t reply_error(const struct virtq_chain *c, uint64_t unique, int e)
{
    struct fuse_out_header oh = {.len = sizeof(oh), .error = -e, .unique = unique};
    if (c->in_len < sizeof(oh))
        return 0;
    return (uint32_t)virtq_write(c, 0, &oh, sizeof(oh));
}

/* Run the copied request through the core; returns the used length. */
static uint32_t handle(struct vfs *v, const struct virtq_chain *c, size_t len, bool noreply)
{
    struct iovec one;
    const struct iovec *out = c->in; /* FORGET and friends: none, the core takes that */
    int cnt = (int)c->n_in;
    bool bounced = c->n_in > FS_DIRECT_SEGS;
    if (bounced) {
        if (v->bounce == NULL)
            v->bounce = xmalloc(v->req_max);
        one = (struct iovec){v->bounce, c->in_len < v->req_max ? (size_t)c->in_len : v->req_max};
        out = &one;
        cnt = 1;
    }
    v->used = true;
    ssize_t n = fs_session_handle(v->s, v->req, len, out, cnt);
    if (fs_session_destroyed(v->s))
        session_restart(v); /* the reply is written: the next mount sends INIT */
    if (n <= 0 || noreply || c->n_in == 0)
        return 0;
    if (bounced)
        virtq_write(c, 0, v->bounce, (uint64_t)n);
    return (uint32_t)n;
}

/* Serve one chain of queue `hiprio` or a request queue. */
static uint32_t serve(struct vfs *v, struct virtq_chain *c, bool hiprio)
{
    struct fuse_in_header h;
    if (c->out_len < sizeof(h))
        return 0; /* not even a header: nothing to answer */
    if (c->out_len > v->req_max) {
        /* Larger than any request the session takes: answered, not read. */
        virtq_read(c, 0, &h, sizeof(h));
        return op_noreply(h.opcode) ? 0 : reply_error(c, h.unique, EINVAL);
    }
    /* From here on only the device's own copy is looked at. */
    size_t len = (size_t)virtq_read(c, 0, v->req, c->out_len);
    memcpy(&h, v->req, sizeof(h));
    bool noreply = op_noreply(h.opcode);
    if (!noreply && c->in_len < sizeof(struct fuse_out_header))
        return 0; /* no room for an answer: not executed either */
    if (hiprio && !noreply)
        return reply_error(c, h.unique, EINVAL); /* hiprio is for FORGET and INTERRUPT only */
    if (h.opcode == FUSE_SETLKW)
        return reply_error(c, h.unique, ENOSYS); /* a wait would stall the event thread */
    if (v->fresh) {
        v->fresh = false;
        session_restart(v);
    }
    if (v->s == NULL)
        return noreply ? 0 : reply_error(c, h.unique, EIO);
    return handle(v, c, len, noreply);
}

static uint32_t serve_hiprio(struct virtio_dev *d, struct virtq_chain *c)
{
    return serve(d->priv, c, true);
}

static uint32_t serve_request(struct virtio_dev *d, struct virtq_chain *c)
{
    return serve(d->priv, c, false);
}

static void vfs_notify(struct virtio_dev *d, unsigned qi)
{
    struct vfs *v = d->priv;
    virtio_queue_serve(d, qi, &v->chain, qi == Q_HIPRIO ? serve_hiprio : serve_request);
}

static void vfs_reset(struct virtio_dev *d)
{
    struct vfs *v = d->priv;
    if (v->used || v->s == NULL)
        v->fresh = true; /* the new driver knows none of the old nodeids */
}

/* Put the DAX window into the guest's physical address space. */
static int vfs_attach(struct virtio_dev *d, struct err **err)
{
    struct vfs *v = d->priv;
    if (v->dax == NULL)
        return 0;
    return virtio_dev_add_memory(d, v->dax_slot, v->dax_gpa, v->dax_size, v->dax,
                                 "fs: DAX window", err);
}

static void vfs_destroy(struct virtio_dev *d)
{
    struct vfs *v = d->priv;
    fs_session_free(v->s);
    if (v->dax)
        munmap(v->dax, v->dax_size);
    if (v->rootfd >= 0)
        close(v->rootfd);
    free(v->req);
    free(v->bounce);
    free(v);
}

static const struct virtio_dev_ops vfs_ops = {
    .name = "fs", .attach = vfs_attach, .notify = vfs_notify, .reset = vfs_reset,
    .destroy = vfs_destroy,
};

/* More fds: fewer inode fds closed and reopened from file handles (src/fs/inode.c). */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int check_opts(const struct virtio_fs_opts *o, struct err **err)
{
    size_t n = o->tag ? strlen(o->tag) : 0;
    if (n == 0 || n > FS_TAG_MAX)
        return err_input(err, "fs: a tag of 1..%zu bytes is required", FS_TAG_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)o->tag[i] <= ' ' || o->tag[i] == 0x7f)
            return err_input(err, "fs: the tag `%s` has a space or control character", o->tag);
    if (o->queues > VIRTIO_FS_MAX_QUEUES)
        return err_input(err, "fs: at most %d request queues", VIRTIO_FS_MAX_QUEUES);
    if (o->dir == NULL || *o->dir == '\0')
        return err_input(err, "fs: a shared directory is required");
    if (o->dax_size % DAX_ALIGN || o->dax_size > VIRTIO_FS_DAX_MAX)
        return err_input(err, "fs: a DAX window of %llu MiB: want a multiple of 2 MiB, "
                              "at most %llu", (unsigned long long)(o->dax_size >> 20),
                         (unsigned long long)(VIRTIO_FS_DAX_MAX >> 20));
    if (o->dax_size && o->dax_gpa % DAX_ALIGN)
        return err_input(err, "fs: DAX window address %#llx is not 2 MiB aligned",
                         (unsigned long long)o->dax_gpa);
    return 0;
}

int virtio_fs_create(const struct virtio_fs_opts *o, struct virtio_dev **out, struct err **err)
{
    if (check_opts(o, err) < 0)
        return -1;
    int fd = open(o->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_make(err, errno, "fs: shared directory `%s`", o->dir);
    raise_nofile();
    struct vfs *v = xcalloc(1, sizeof(*v));
    v->rootfd = fd;
    v->opt = o->fs;
    v->opt.passthrough = false;  /* no /dev/fuse: no backing files */
    v->opt.local_locks = true;   /* the guest kernel keeps POSIX locks (no SETLKW here) */
    if (v->opt.max_pages == 0 || v->opt.max_pages > FS_PAGES_MAX)
        v->opt.max_pages = FS_PAGES_MAX;
    if (o->dax_size) {
        void *p = mmap(NULL, o->dax_size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(v);
            return err_make(err, e, "fs: reserve a DAX window of %llu MiB",
                            (unsigned long long)(o->dax_size >> 20));
        }
        v->dax = p;
        v->dax_size = o->dax_size;
        v->dax_gpa = o->dax_gpa;
        v->dax_slot = o->dax_slot;
        v->tr = (struct fs_transport){.ctx = v, .map = dax_map, .unmap = dax_unmap};
    }
    if (fs_session_new(fd, &v->opt, &v->tr, &v->s, err) < 0) {
        if (v->dax)
            munmap(v->dax, v->dax_size);
        close(fd);
        free(v);
        return err_wrap(err, "fs: shared directory `%s`", o->dir);
    }
    v->req_max = fs_session_bufsize(v->s);
    v->req = xmalloc(v->req_max);
    unsigned queues = o->queues ? o->queues : 1;
    virtio_dev_init(&v->dev, &vfs_ops, v, VIRTIO_ID_FS, 0, 1 + queues, 256);
    struct virtio_fs_config cfg = {.num_request_queues = htole32(queues)};
    memcpy(cfg.tag, o->tag, strlen(o->tag));
    memcpy(v->dev.config, &cfg, sizeof(cfg));
    v->dev.config_len = sizeof(cfg);
    v->dev.shm_base = v->dax_gpa;
    v->dev.shm_len = v->dax_size;
    *out = &v->dev;
    return 0;
}

int virtio_fs_drop_mknod(struct err **err)
{
    cap_t c = cap_get_proc();
    if (c == NULL)
        return err_make(err, errno, "read this process's capabilities");
    cap_value_t v = CAP_MKNOD;
    int r = 0;
    for (cap_flag_t f = CAP_EFFECTIVE; f <= CAP_INHERITABLE && r == 0; f++)
        r = cap_set_flag(c, f, 1, &v, CAP_CLEAR);
    if (r == 0)
        r = cap_set_proc(c);
    int e = errno;
    cap_free(c);
    if (r < 0)
        return err_make(err, e, "drop CAP_MKNOD");
    /* Out of the bounding set too where we may (CAP_SETPCAP); without it
     * the permitted set already keeps it away until an exec. */
    if (prctl(PR_CAPBSET_DROP, CAP_MKNOD, 0, 0, 0) < 0 && errno != EPERM)
        return err_make(err, errno, "drop CAP_MKNOD from the bounding set");
    return 0;
}
