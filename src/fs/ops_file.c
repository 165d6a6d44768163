/* File ops: OPEN, CREATE, TMPFILE, READ, WRITE, RELEASE, FLUSH, FSYNC,
 * FALLOCATE, LSEEK, COPY_FILE_RANGE, and passthrough backing files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "fs/fs_internal.h"
#include "ns/mount_api.h"

/* Reply segments a READ fills directly (preadv into the caller's buffers). */
#define READ_SEGS 256

/* Open flags a request may ask for; the rest (O_CREAT, O_DIRECT with its
 * alignment rules, O_PATH, O_TMPFILE...) are ours to decide. */
static int open_flags(const struct fs_session *s, uint32_t f, int *out)
{
    int acc = (int)(f & O_ACCMODE);
    /* Linux's access mode 3 (ioctl only) needs read and write permission,
     * which the kernel has checked; the kernel's file refuses read(2) and
     * write(2) itself. */
    if (acc == O_ACCMODE)
        acc = O_RDWR;
    int fl = (int)(f & (uint32_t)(O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC | O_NOATIME | O_TRUNC));
    if (atomic_load(&s->writeback_on)) {
        /* The kernel's cache reads whole pages and keeps the file size. */
        if (acc == O_WRONLY)
            acc = O_RDWR;
        fl &= ~O_APPEND;
    }
    *out = acc | fl | O_CLOEXEC | O_LARGEFILE;
    return 0;
}

static bool passthrough_possible(const struct fs_session *s, const struct fs_inode *ino)
{
    return atomic_load(&s->passthrough_on) && s->tr.backing_open && ino->type == S_IFREG;
}

/* The passthrough backing id for ino (registered once per inode while files
 * are open, as the kernel wants every open of an inode to share one), 0 to
 * serve I/O ourselves, or -ETXTBSY when a read-only backing file is in use
 * and a writer comes. A new backing file is `fd`, the handle's own fd,
 * which is read-write when `fd_rw` (see open_fd); `st` is its stat if the
 * caller has it, else NULL. */
static int backing_get(struct fs_session *s, struct fs_inode *ino, int fd, bool fd_rw,
                       bool want_write, const struct stat *st)
{
    if (!passthrough_possible(s, ino))
        return 0;
    pthread_mutex_lock(&s->inode_lock);
    int id = ino->backing_id;
    if (id > 0) {
        if (want_write && !ino->backing_rw)
            id = -ETXTBSY;
        else
            ino->backing_refs++;
    }
    bool cached = ino->cached_refs > 0;
    pthread_mutex_unlock(&s->inode_lock);
    if (id != 0 || cached)
        return id;
    /* Set-id files are served by us: a WRITE by another user must clear
     * the bits (FUSE_WRITE_KILL_SUIDGID), which passthrough writes skip. */
    struct stat own;
    if (st == NULL && fstat(fd, &own) < 0)
        return 0;
    if ((st ? st : &own)->st_mode & (S_ISUID | S_ISGID))
        return 0;
    id = s->tr.backing_open(s->tr.ctx, fd);
    if (id == -EPERM || id == -ENOTTY || id == -EOPNOTSUPP || id == -EINVAL)
        atomic_store(&s->passthrough_on, false); /* refused: serve I/O ourselves */
    if (id <= 0)
        return 0;
    pthread_mutex_lock(&s->inode_lock);
    int other = ino->backing_id;
    if (other > 0) {
        if (want_write && !ino->backing_rw)
            other = -ETXTBSY;
        else
            ino->backing_refs++;
    } else {
        ino->backing_id = id;
        ino->backing_refs = 1;
        ino->backing_rw = fd_rw;
    }
    pthread_mutex_unlock(&s->inode_lock);
    if (other != 0) {
        s->tr.backing_close(s->tr.ctx, id);
        return other;
    }
    return id;
}

/* Make a handle for fd on ino and fill the open reply; fd moves in. `st`
 * is fd's stat if the caller has it, else NULL. */
static int open_reply_fill(struct fs_req *r, struct fs_inode *ino, int fd, bool fd_rw,
                           bool want_write, const struct stat *st, struct fs_open_out *o)
{
    int id = backing_get(r->s, ino, fd, fd_rw, want_write, st);
    if (id < 0) {
        close(fd);
        return id;
    }
    uint64_t fh;
    int e = handle_new(r->s, fd, ino, false, id > 0, &fh);
    if (e < 0) {
        if (id > 0) {
            pthread_mutex_lock(&r->s->inode_lock);
            bool last = --ino->backing_refs == 0;
            if (last)
                ino->backing_id = 0;
            pthread_mutex_unlock(&r->s->inode_lock);
            if (last)
                r->s->tr.backing_close(r->s->tr.ctx, id);
        }
        return e;
    }
    *o = (struct fs_open_out){.fh = fh};
    /* FLUSH only matters to drop host-side POSIX locks on close(2). */
    if (r->s->opt.local_locks && !atomic_load(&r->s->writeback_on))
        o->open_flags |= FOPEN_NOFLUSH;
    if (id > 0) {
        o->open_flags |= FOPEN_PASSTHROUGH;
        o->backing_id = id;
    } else {
        o->open_flags |= FOPEN_KEEP_CACHE;
    }
    return 0;
}

/* Open ino for a request with host `flags`. With passthrough the fd may
 * become the inode's backing file, which later opens share: make it
 * read-write, unless the request only reads an executable (a writable fd on
 * the host makes the host's own exec(2) of that file fail with ETXTBSY).
 * The kernel enforces the guest's access mode either way. */
static int open_fd(struct fs_session *s, const struct iref *p, int flags, bool *rw)
{
    *rw = (flags & O_ACCMODE) == O_RDWR;
    if (!passthrough_possible(s, p->i) || *rw)
        return inode_reopen(s, p->i, p->fd, flags);
    struct stat st;
    if ((flags & O_ACCMODE) != O_RDONLY || (inode_stat(p->fd, &st) == 0 && !(st.st_mode & 0111))) {
        int fd = inode_reopen(s, p->i, p->fd, (flags & ~O_ACCMODE) | O_RDWR);
        if (fd >= 0) {
            *rw = true;
            return fd;
        }
    }
    return inode_reopen(s, p->i, p->fd, flags);
}

int op_open(struct fs_req *r)
{
    struct fuse_open_in in;
    int flags;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    int e = open_flags(r->s, in.flags, &flags);
    if (e < 0)
        return e;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    if (p.i->type == S_IFDIR)
        return -EISDIR;
    if (r->s->opt.readonly && ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)))
        return -EROFS;
    bool rw;
    int fd = open_fd(r->s, &p, flags, &rw);
    if (fd < 0)
        return neg_errno();
    if ((in.open_flags & FUSE_OPEN_KILL_SUIDGID) && (flags & O_TRUNC))
        kill_suidgid(r->s, fd, true);
    struct fs_open_out out;
    e = open_reply_fill(r, p.i, fd, rw, (flags & O_ACCMODE) != O_RDONLY, NULL, &out);
    if (e < 0)
        return e;
    return reply_put(r, &out, sizeof(out));
}

/* CREATE and TMPFILE: reply entry + open for the new fd (read-write). */
static int create_reply(struct fs_req *r, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = neg_errno();
        close(fd);
        return e;
    }
    /* The inode's O_PATH fd for the very file created (not its name again,
     * which another process could have replaced by now). */
    int pfd = sys_open_tree(fd, "", AT_EMPTY_PATH | OPEN_TREE_CLOEXEC);
    if (pfd < 0) {
        int e = neg_errno();
        close(fd);
        return e;
    }
    cleanup_iref struct iref c = iref_of(r->s, inode_found(r->s, pfd, &st));
    if (c.i == NULL) {
        close(fd);
        return neg_errno();
    }
    struct fs_open_out o;
    int e = open_reply_fill(r, c.i, fd, true, true, &st, &o); /* fd moves in, even on failure */
    if (e < 0) {
        inode_forget(r->s, c.i->nodeid, 1);
        return e;
    }
    if ((e = reply_entry(r, c.i, &st)) == 0)
        e = reply_put(r, &o, sizeof(o));
    if (e < 0) {
        handle_release(r->s, o.fh);
        inode_forget(r->s, c.i->nodeid, 1);
    }
    return e;
}

static int create_common(struct fs_req *r, bool tmpfile)
{
    struct fuse_create_in in;
    const char *name;
    int flags;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    int e = tmpfile ? req_str(r, &name, NAME_MAX) : req_name(r, &name, false);
    if (e < 0 || (e = open_flags(r->s, in.flags, &flags)) < 0)
        return e;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    if (p.i->type != S_IFDIR)
        return -ENOTDIR;
    /* Read-write whatever the guest asked: the fd may become the backing
     * file of later opens (the kernel enforces the guest's mode). */
    flags = (flags & ~O_ACCMODE) | O_RDWR;
    int tok = creds_enter(r);
    int fd;
    if (tmpfile)
        fd = openat(p.fd, ".", (flags & ~(O_TRUNC | O_APPEND)) | O_TMPFILE, in.mode & 07777);
    else
        fd = openat(p.fd, name, flags | O_CREAT | O_NOFOLLOW | (int)(in.flags & O_EXCL),
                    in.mode & 07777);
    creds_restore(tok);
    if (fd < 0)
        return neg_errno();
    return create_reply(r, fd);
}

int op_create(struct fs_req *r)
{
    return create_common(r, false);
}

int op_tmpfile(struct fs_req *r)
{
    return create_common(r, true);
}

/* The handle `fh` of a file (not a directory), or NULL. */
static struct href file_handle(struct fs_req *r, uint64_t fh)
{
    struct href h = href_get(r, fh);
    if (h.h && h.h->is_dir) {
        handle_put(r->s, h.h);
        h.h = NULL;
    }
    return h;
}

int op_read(struct fs_req *r)
{
    struct fuse_read_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    if (in.offset > (uint64_t)INT64_MAX)
        return -EINVAL;
    cleanup_href struct href h = file_handle(r, in.fh);
    if (h.h == NULL)
        return -EBADF;
    size_t size = in.size;
    if (size > r->s->max_read)
        size = r->s->max_read;
    /* A virtio-fs guest gives one segment per page: room for max_pages. */
    struct iovec iov[READ_SEGS];
    int n = reply_space(r, size, iov, READ_SEGS);
    if (n == 0)
        return 0;
    ssize_t got = preadv(h.h->fd, iov, n, (off_t)in.offset);
    if (got < 0)
        return neg_errno();
    r->out_len += (size_t)got;
    return 0;
}

int op_write(struct fs_req *r)
{
    struct fuse_write_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    if (in.size > r->left || in.offset > (uint64_t)INT64_MAX ||
        in.offset + in.size > (uint64_t)INT64_MAX)
        return -EINVAL;
    cleanup_href struct href h = file_handle(r, in.fh);
    if (h.h == NULL)
        return -EBADF;
    size_t done = 0;
    while (done < in.size) {
        ssize_t n = pwrite(h.h->fd, r->p + done, in.size - done, (off_t)(in.offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (done == 0)
                return neg_errno();
            break;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    if (in.write_flags & FUSE_WRITE_KILL_SUIDGID)
        kill_suidgid(r->s, h.h->fd, true);
    struct fuse_write_out out = {.size = (uint32_t)done};
    return reply_put(r, &out, sizeof(out));
}

int op_release(struct fs_req *r)
{
    struct fuse_release_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    return handle_release(r->s, in.fh);
}

/* Whether close(2) of a file on fd's filesystem does nothing the server
 * must pass on: the local filesystems without a ->flush of their own
 * (ext2/3/4, XFS, Btrfs, tmpfs). NFS, CIFS, FUSE, overlayfs (its lower
 * layer's), F2FS and the rest get the close: it may write back data and
 * report an error. Known per device after the first FLUSH there. */
static bool close_is_plain(struct fs_session *s, dev_t dev, int fd)
{
    pthread_mutex_lock(&s->lock_lock);
    for (unsigned i = 0; i < s->ncloses; i++) {
        if (s->closes[i].dev == dev) {
            bool plain = s->closes[i].plain;
            pthread_mutex_unlock(&s->lock_lock);
            return plain;
        }
    }
    pthread_mutex_unlock(&s->lock_lock);
    struct statfs sf;
    if (fstatfs(fd, &sf) < 0)
        return false;
    bool plain = sf.f_type == EXT4_SUPER_MAGIC || sf.f_type == XFS_SUPER_MAGIC ||
                 sf.f_type == BTRFS_SUPER_MAGIC || sf.f_type == TMPFS_MAGIC;
    pthread_mutex_lock(&s->lock_lock);
    if (s->ncloses < sizeof(s->closes) / sizeof(s->closes[0]))
        s->closes[s->ncloses++] = (struct fs_plain_close){.dev = dev, .plain = plain};
    pthread_mutex_unlock(&s->lock_lock);
    return plain;
}

int op_flush(struct fs_req *r)
{
    struct fuse_flush_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    cleanup_href struct href h = href_get(r, in.fh);
    if (h.h == NULL)
        return -EBADF;
    /* close(2) semantics: the closing process loses its POSIX locks, and
     * the host filesystem sees a close (of a duplicate: the handle lives
     * on until RELEASE). */
    lock_owner_drop(r->s, h.h->inode, in.lock_owner);
    if (close_is_plain(r->s, h.h->inode->dev, h.h->fd))
        return 0;
    int d = dup(h.h->fd);
    if (d < 0)
        return neg_errno();
    return close(d) < 0 ? neg_errno() : 0;
}

int op_fsync(struct fs_req *r)
{
    struct fuse_fsync_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    cleanup_href struct href h = href_get(r, in.fh);
    if (h.h == NULL)
        return -EBADF;
    int rc = (in.fsync_flags & FUSE_FSYNC_FDATASYNC) ? fdatasync(h.h->fd) : fsync(h.h->fd);
    return rc < 0 ? neg_errno() : 0;
}

int op_fallocate(struct fs_req *r)
{
    struct fuse_fallocate_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    if (in.offset > (uint64_t)INT64_MAX || in.length > (uint64_t)INT64_MAX)
        return -EINVAL;
    cleanup_href struct href h = file_handle(r, in.fh);
    if (h.h == NULL)
        return -EBADF;
    if (fallocate(h.h->fd, (int)in.mode, (off_t)in.offset, (off_t)in.length) < 0)
        return neg_errno();
    return 0;
}

int op_lseek(struct fs_req *r)
{
    struct fuse_lseek_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    if (in.offset > (uint64_t)INT64_MAX || in.whence > SEEK_HOLE)
        return -EINVAL;
    cleanup_href struct href h = file_handle(r, in.fh);
    if (h.h == NULL)
        return -EBADF;
    off_t o = lseek(h.h->fd, (off_t)in.offset, (int)in.whence);
    if (o < 0)
        return neg_errno();
    struct fuse_lseek_out out = {.offset = (uint64_t)o};
    return reply_put(r, &out, sizeof(out));
}

int op_copy_file_range(struct fs_req *r)
{
    struct fuse_copy_file_range_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    if (in.flags != 0 || in.off_in > (uint64_t)INT64_MAX || in.off_out > (uint64_t)INT64_MAX)
        return -EINVAL;
    cleanup_href struct href a = file_handle(r, in.fh_in);
    cleanup_href struct href b = file_handle(r, in.fh_out);
    if (a.h == NULL || b.h == NULL)
        return -EBADF;
    loff_t oi = (loff_t)in.off_in, oo = (loff_t)in.off_out;
    size_t len = in.len > (uint64_t)SSIZE_MAX ? (size_t)SSIZE_MAX : (size_t)in.len;
    if (len > UINT32_MAX)
        len = UINT32_MAX; /* the reply counts in 32 bits */
    ssize_t n = copy_file_range(a.h->fd, &oi, b.h->fd, &oo, len, 0);
    if (n < 0)
        return neg_errno();
    struct fuse_write_out out = {.size = (uint32_t)n};
    return reply_put(r, &out, sizeof(out));
}
