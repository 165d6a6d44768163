/* Directory ops: OPENDIR, READDIR, READDIRPLUS, RELEASEDIR, FSYNCDIR. The
 * FUSE offset of an entry is the host's getdents64 d_off, so a READDIR at
 * any offset the kernel got from us seeks the host directory there. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "fs/fs_internal.h"

struct host_dirent {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

int op_opendir(struct fs_req *r)
{
    struct fuse_open_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    if (p.i->type != S_IFDIR)
        return -ENOTDIR;
    int fd = inode_reopen(r->s, p.i, p.fd, O_RDONLY);
    if (fd < 0)
        return neg_errno();
    struct fuse_open_out out = {0};
    int e = handle_new(r->s, fd, p.i, true, false, &out.fh);
    if (e < 0)
        return e;
    return reply_put(r, &out, sizeof(out));
}

static bool is_dots(const char *n)
{
    return n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'));
}

/* READDIRPLUS: the entry of `name` in the directory open at dirfd (the
 * handle's fd; nlookup+1), or a zero entry (nodeid 0: "no attributes") if
 * it vanished or is "." / "..". */
static void plus_entry(struct fs_req *r, int dirfd, const char *name, struct fuse_entry_out *e)
{
    memset(e, 0, sizeof(*e));
    if (is_dots(name))
        return;
    int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat st;
    if (inode_stat(fd, &st) < 0) {
        close(fd);
        return;
    }
    struct fs_inode *ino = inode_found(r->s, fd, &st);
    if (ino == NULL)
        return;
    e->nodeid = ino->nodeid;
    timeout_split(r->s->opt.entry_timeout, &e->entry_valid, &e->entry_valid_nsec);
    timeout_split(attr_timeout_for(r->s, &st), &e->attr_valid, &e->attr_valid_nsec);
    attr_fill(r->s, &st, &e->attr);
    inode_put(r->s, ino);
}

static int readdir_common(struct fs_req *r, bool plus)
{
    struct fuse_read_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    if (in.offset > (uint64_t)INT64_MAX)
        return -EINVAL;
    cleanup_href struct href h = href_get(r, in.fh);
    if (h.h == NULL || !h.h->is_dir)
        return -EBADF;
    size_t limit = in.size < reply_room(r) ? in.size : reply_room(r);
    if (limit > r->s->max_read)
        limit = r->s->max_read;
    /* Host entries are smaller than FUSE ones (much smaller with plus). */
    size_t bufsize = plus ? limit / 4 : limit;
    if (bufsize < 1024)
        bufsize = 1024;
    cleanup_free char *buf = malloc(bufsize);
    if (buf == NULL)
        return -ENOMEM;

    pthread_mutex_lock(&h.h->dir_lock);
    int e = 0;
    if (h.h->dir_pos != in.offset) {
        if (lseek(h.h->fd, (off_t)in.offset, SEEK_SET) < 0) {
            e = neg_errno();
            goto out;
        }
        h.h->dir_pos = in.offset;
    }
    ssize_t n = getdents64(h.h->fd, buf, bufsize);
    if (n < 0) {
        e = neg_errno();
        goto out;
    }
    size_t used = 0;
    uint64_t pos = h.h->dir_pos;
    bool all = true;
    for (ssize_t off = 0; off < n;) {
        const struct host_dirent *d = (const struct host_dirent *)(buf + off);
        if (d->d_reclen == 0 || (size_t)off + d->d_reclen > (size_t)n)
            break;
        off += d->d_reclen;
        size_t namelen = strnlen(d->d_name, NAME_MAX + 1);
        size_t dsize = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen);
        size_t esize = plus ? sizeof(struct fuse_entry_out) + dsize : dsize;
        if (used + esize > limit) {
            all = false;
            break;
        }
        struct fuse_entry_out entry;
        struct fuse_dirent dh = {.ino = d->d_ino, .off = (uint64_t)d->d_off,
                                 .namelen = (uint32_t)namelen, .type = d->d_type};
        uint8_t dbuf[FUSE_NAME_OFFSET + NAME_MAX + 8] = {0};
        memcpy(dbuf, &dh, FUSE_NAME_OFFSET);
        memcpy(dbuf + FUSE_NAME_OFFSET, d->d_name, namelen);
        if (plus) {
            plus_entry(r, h.h->fd, d->d_name, &entry);
            reply_put(r, &entry, sizeof(entry));
        }
        reply_put(r, dbuf, dsize);
        used += esize;
        pos = (uint64_t)d->d_off;
    }
    /* Entries read but not sent are read again by the next READDIR. */
    if (!all && lseek(h.h->fd, (off_t)pos, SEEK_SET) < 0) {
        h.h->dir_pos = UINT64_MAX; /* position unknown: seek next time */
    } else {
        h.h->dir_pos = pos;
    }
out:
    pthread_mutex_unlock(&h.h->dir_lock);
    return e;
}

int op_readdir(struct fs_req *r)
{
    return readdir_common(r, false);
}

int op_readdirplus(struct fs_req *r)
{
    return readdir_common(r, true);
}

int op_releasedir(struct fs_req *r)
{
    struct fuse_release_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    return handle_release(r->s, in.fh);
}

int op_fsyncdir(struct fs_req *r)
{
    struct fuse_fsync_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    cleanup_href struct href h = href_get(r, in.fh);
    if (h.h == NULL || !h.h->is_dir)
        return -EBADF;
    int rc = (in.fsync_flags & FUSE_FSYNC_FDATASYNC) ? fdatasync(h.h->fd) : fsync(h.h->fd);
    return rc < 0 ? neg_errno() : 0;
}
