/* The FUSE protocol core: session lifetime, the request cursor, INIT
 * negotiation and the dispatcher. Transport-independent: a request buffer
 * in, a reply written into iovecs out. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "fs/fs_internal.h"

#define PAGE 4096u

/* ---- request cursor ---- */

int req_get(struct fs_req *r, void *dst, size_t len)
{
    if (r->left < len)
        return -EINVAL;
    memcpy(dst, r->p, len);
    r->p += len;
    r->left -= len;
    return 0;
}

int req_str(struct fs_req *r, const char **str, size_t max)
{
    const uint8_t *nul = memchr(r->p, '\0', r->left);
    if (nul == NULL)
        return -EINVAL;
    size_t n = (size_t)(nul - r->p);
    if (n > max)
        return -ENAMETOOLONG;
    *str = (const char *)r->p;
    r->p += n + 1;
    r->left -= n + 1;
    return 0;
}

int req_name(struct fs_req *r, const char **name, bool allow_dots)
{
    const char *n;
    int e = req_str(r, &n, NAME_MAX);
    if (e < 0)
        return e;
    if (n[0] == '\0' || strchr(n, '/'))
        return -EINVAL;
    if (!allow_dots && (strcmp(n, ".") == 0 || strcmp(n, "..") == 0))
        return -EINVAL;
    *name = n;
    return 0;
}

size_t reply_room(const struct fs_req *r)
{
    return r->out_cap - sizeof(struct fuse_out_header) - r->out_len;
}

/* Walk to byte `off` of the out iovecs: index and offset inside it. */
static void out_seek(const struct fs_req *r, size_t off, int *idx, size_t *in)
{
    int i = 0;
    while (i < r->out_cnt && off >= r->out[i].iov_len) {
        off -= r->out[i].iov_len;
        i++;
    }
    *idx = i;
    *in = off;
}

static void out_copy(const struct fs_req *r, size_t off, const void *data, size_t len)
{
    int i;
    size_t in;
    out_seek(r, off, &i, &in);
    const uint8_t *src = data;
    while (len > 0 && i < r->out_cnt) {
        size_t n = r->out[i].iov_len - in;
        if (n > len)
            n = len;
        memcpy((uint8_t *)r->out[i].iov_base + in, src, n);
        src += n;
        len -= n;
        in = 0;
        i++;
    }
}

int reply_put(struct fs_req *r, const void *data, size_t len)
{
    if (len > reply_room(r))
        return -ERANGE;
    out_copy(r, sizeof(struct fuse_out_header) + r->out_len, data, len);
    r->out_len += len;
    return 0;
}

int reply_space(struct fs_req *r, size_t len, struct iovec *dst, int max)
{
    if (len > reply_room(r))
        len = reply_room(r);
    int i, n = 0;
    size_t in;
    out_seek(r, sizeof(struct fuse_out_header) + r->out_len, &i, &in);
    while (len > 0 && i < r->out_cnt && n < max) {
        size_t k = r->out[i].iov_len - in;
        if (k > len)
            k = len;
        if (k > 0) {
            dst[n].iov_base = (uint8_t *)r->out[i].iov_base + in;
            dst[n].iov_len = k;
            n++;
        }
        len -= k;
        in = 0;
        i++;
    }
    return n;
}

/* ---- INIT ---- */

static int op_init(struct fs_req *r)
{
    struct fs_session *s = r->s;
    struct fuse_init_in in = {0};
    /* Kernels before 7.36 send only the first four fields. */
    size_t want = r->left < sizeof(in) ? 16 : sizeof(in);
    if (req_get(r, &in, want) < 0)
        return -EINVAL;
    struct fs_init_out out = {.major = FUSE_KERNEL_VERSION, .minor = FUSE_KERNEL_MINOR_VERSION};
    if (in.major > FUSE_KERNEL_VERSION)
        return reply_put(r, &out, 8); /* the kernel retries with our major */
    if (in.major < FUSE_KERNEL_VERSION || in.minor < FS_MIN_MINOR)
        return -EPROTO;
    if (atomic_load(&s->initialized))
        return -EPROTO;
    uint64_t kflags = in.flags;
    if (in.flags & FUSE_INIT_EXT)
        kflags |= (uint64_t)in.flags2 << 32;
    uint64_t want_flags = FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC |
                          FUSE_BIG_WRITES | FUSE_AUTO_INVAL_DATA | FUSE_DO_READDIRPLUS |
                          FUSE_READDIRPLUS_AUTO | FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS |
                          FUSE_MAX_PAGES | FUSE_CACHE_SYMLINKS | FUSE_INIT_EXT |
                          FUSE_HANDLE_KILLPRIV_V2;
    if (!s->opt.local_locks)
        want_flags |= FUSE_POSIX_LOCKS; /* else the kernel keeps them, per mount */
    if (s->opt.writeback)
        want_flags |= FUSE_WRITEBACK_CACHE;
    else if (s->opt.passthrough && s->tr.backing_open && s->am_root)
        want_flags |= FUSE_PASSTHROUGH; /* the kernel refuses it with writeback */
    if (s->tr.map)
        want_flags |= FUSE_MAP_ALIGNMENT; /* a DAX window: mappings page-aligned */
    uint64_t flags = kflags & want_flags;
    if (in.minor < 36)
        flags &= 0xffffffffu & ~(uint64_t)FUSE_INIT_EXT;
    uint32_t pages = s->opt.max_pages;
    if (!(flags & FUSE_MAX_PAGES))
        pages = 32; /* the kernel's default of 128 KiB */
    s->max_write = pages * PAGE;
    s->max_read = pages * PAGE;
    out.max_readahead = in.max_readahead;
    out.flags = (uint32_t)flags;
    out.flags2 = (uint32_t)(flags >> 32);
    out.max_background = 64;
    out.congestion_threshold = 48;
    out.max_write = s->max_write;
    out.time_gran = 1;
    out.max_pages = (uint16_t)pages;
    if (flags & FUSE_PASSTHROUGH)
        out.max_stack_depth = 1; /* backing files are on non-stacking filesystems */
    if (flags & FUSE_MAP_ALIGNMENT)
        out.map_alignment = FS_MAP_SHIFT;
    s->proto_minor = in.minor;
    atomic_store(&s->passthrough_on, (flags & FUSE_PASSTHROUGH) != 0);
    atomic_store(&s->writeback_on, (flags & FUSE_WRITEBACK_CACHE) != 0);
    atomic_store(&s->initialized, true);
    /* Older minors have a shorter reply; 7.23+ (all we serve) take 64 bytes. */
    return reply_put(r, &out, sizeof(out));
}

static int op_destroy(struct fs_req *r)
{
    atomic_store(&r->s->destroyed, true);
    return 0;
}

/* ---- dispatch ---- */

typedef int (*op_fn)(struct fs_req *r);

static op_fn op_table(uint32_t opcode)
{
    switch (opcode) {
    case FUSE_LOOKUP: return op_lookup;
    case FUSE_FORGET: return op_forget;
    case FUSE_BATCH_FORGET: return op_batch_forget;
    case FUSE_GETATTR: return op_getattr;
    case FUSE_SETATTR: return op_setattr;
    case FUSE_READLINK: return op_readlink;
    case FUSE_SYMLINK: return op_symlink;
    case FUSE_MKNOD: return op_mknod;
    case FUSE_MKDIR: return op_mkdir;
    case FUSE_UNLINK: return op_unlink;
    case FUSE_RMDIR: return op_rmdir;
    case FUSE_RENAME: return op_rename;
    case FUSE_RENAME2: return op_rename2;
    case FUSE_LINK: return op_link;
    case FUSE_OPEN: return op_open;
    case FUSE_CREATE: return op_create;
    case FUSE_TMPFILE: return op_tmpfile;
    case FUSE_READ: return op_read;
    case FUSE_WRITE: return op_write;
    case FUSE_STATFS: return op_statfs;
    case FUSE_RELEASE: return op_release;
    case FUSE_FSYNC: return op_fsync;
    case FUSE_SETXATTR: return op_setxattr;
    case FUSE_GETXATTR: return op_getxattr;
    case FUSE_LISTXATTR: return op_listxattr;
    case FUSE_REMOVEXATTR: return op_removexattr;
    case FUSE_FLUSH: return op_flush;
    case FUSE_OPENDIR: return op_opendir;
    case FUSE_READDIR: return op_readdir;
    case FUSE_READDIRPLUS: return op_readdirplus;
    case FUSE_RELEASEDIR: return op_releasedir;
    case FUSE_FSYNCDIR: return op_fsyncdir;
    case FUSE_ACCESS: return op_access;
    case FUSE_FALLOCATE: return op_fallocate;
    case FUSE_LSEEK: return op_lseek;
    case FUSE_COPY_FILE_RANGE: return op_copy_file_range;
    case FUSE_SETUPMAPPING: return op_setupmapping;
    case FUSE_REMOVEMAPPING: return op_removemapping;
    case FUSE_GETLK: return op_getlk;
    case FUSE_SETLK: return op_setlk;
    case FUSE_SETLKW: return op_setlkw;
    case FUSE_INTERRUPT: return op_interrupt;
    case FUSE_SYNCFS: return op_syncfs;
    case FUSE_DESTROY: return op_destroy;
    default: return NULL;
    }
}

/* Ops that change the source tree: refused with EROFS in read-only mode. */
static bool op_writes(uint32_t opcode)
{
    switch (opcode) {
    case FUSE_SETATTR: case FUSE_SYMLINK: case FUSE_MKNOD: case FUSE_MKDIR:
    case FUSE_UNLINK: case FUSE_RMDIR: case FUSE_RENAME: case FUSE_RENAME2:
    case FUSE_LINK: case FUSE_CREATE: case FUSE_TMPFILE: case FUSE_WRITE:
    case FUSE_SETXATTR: case FUSE_REMOVEXATTR: case FUSE_FALLOCATE:
    case FUSE_COPY_FILE_RANGE:
        return true;
    default:
        return false;
    }
}

/* Ops the kernel sends without expecting a reply. */
static bool op_noreply(uint32_t opcode)
{
    return opcode == FUSE_FORGET || opcode == FUSE_BATCH_FORGET ||
           opcode == FUSE_INTERRUPT || opcode == FUSE_NOTIFY_REPLY;
}

static ssize_t finish(struct fs_req *r, int e)
{
    if (e < 0)
        r->out_len = 0;
    struct fuse_out_header oh = {
        .len = (uint32_t)(sizeof(oh) + r->out_len),
        .error = e < 0 ? e : 0,
        .unique = r->h.unique,
    };
    out_copy(r, 0, &oh, sizeof(oh));
    return (ssize_t)oh.len;
}

ssize_t fs_session_handle(struct fs_session *s, const void *in, size_t in_len,
                          const struct iovec *out, int out_cnt)
{
    struct fs_req r = {.s = s, .out = out, .out_cnt = out_cnt};
    if (in == NULL || in_len < sizeof(r.h) || out_cnt < 0)
        return -EINVAL;
    memcpy(&r.h, in, sizeof(r.h));
    for (int i = 0; i < out_cnt; i++) {
        if (r.out_cap + out[i].iov_len < r.out_cap)
            return -EINVAL;
        r.out_cap += out[i].iov_len;
    }
    if (r.out_cap > UINT32_MAX)
        r.out_cap = UINT32_MAX;
    bool noreply = op_noreply(r.h.opcode);
    /* FORGET and friends take no reply: virtio-fs gives them no buffer. */
    if (r.out_cap < sizeof(struct fuse_out_header) && !noreply)
        return -EINVAL;
    /* The header says how long the request is; it must fit the buffer. */
    size_t ext = (size_t)r.h.total_extlen * 8;
    if (r.h.len < sizeof(r.h) || r.h.len > in_len || r.h.len - sizeof(r.h) < ext)
        return noreply ? 0 : finish(&r, -EINVAL);
    r.p = (const uint8_t *)in + sizeof(r.h);
    r.left = r.h.len - sizeof(r.h) - ext;

    int e;
    if (r.h.opcode == FUSE_INIT) {
        e = op_init(&r);
    } else if (!atomic_load(&s->initialized)) {
        e = -EIO;
    } else {
        op_fn fn = op_table(r.h.opcode);
        if (fn == NULL)
            e = -ENOSYS;
        else if (s->opt.readonly && op_writes(r.h.opcode))
            e = -EROFS;
        else
            e = fn(&r);
    }
    if (noreply || e == FS_NOREPLY)
        return 0;
    return finish(&r, e);
}

/* ---- lifetime ---- */

int fs_session_new(int rootfd, const struct fs_options *o, const struct fs_transport *tr,
                   struct fs_session **out, struct err **err)
{
    cleanup_close int fd = openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_make(err, errno, "fs: open source directory");
    cleanup_close int proc = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (proc < 0)
        return err_make(err, errno, "fs: open /proc/self/fd");
    struct fs_session *s = xcalloc(1, sizeof(*s));
    s->opt = *o;
    if (s->opt.max_pages == 0 || s->opt.max_pages > 256)
        s->opt.max_pages = 256;
    if (tr)
        s->tr = *tr;
    s->am_root = geteuid() == 0;
    s->proc_fd = steal_fd(&proc);
    s->max_write = s->max_read = 32 * PAGE;
    pthread_mutex_init(&s->inode_lock, NULL);
    pthread_mutex_init(&s->handle_lock, NULL);
    pthread_mutex_init(&s->lock_lock, NULL);
    if (inode_table_init(s, steal_fd(&fd)) < 0) {
        fs_session_free(s);
        return err_make(err, errno, "fs: root inode");
    }
    /* Modes arrive with the guest's umask applied (no FUSE_DONT_MASK); ours
     * must not strip more. umask is per process: the server owns it. */
    umask(0);
    *out = s;
    return 0;
}

void fs_session_free(struct fs_session *s)
{
    if (s == NULL)
        return;
    handle_table_free(s);
    inode_table_free(s);
    if (s->proc_fd >= 0)
        close(s->proc_fd);
    pthread_mutex_destroy(&s->inode_lock);
    pthread_mutex_destroy(&s->handle_lock);
    pthread_mutex_destroy(&s->lock_lock);
    free(s);
}

size_t fs_session_bufsize(const struct fs_session *s)
{
    /* The largest write or xattr value (64 KiB), plus a page for the
     * headers and names around it. */
    size_t n = s->opt.max_pages * (size_t)PAGE;
    if (n < 65536)
        n = 65536;
    return n + PAGE;
}

bool fs_session_destroyed(const struct fs_session *s)
{
    return atomic_load(&s->destroyed);
}

size_t fs_session_inodes(struct fs_session *s)
{
    pthread_mutex_lock(&s->inode_lock);
    size_t n = s->ninodes;
    pthread_mutex_unlock(&s->inode_lock);
    return n;
}
