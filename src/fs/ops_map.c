/* DAX window ops (virtio-fs): SETUPMAPPING maps part of an open file into
 * the device's shared memory window, where the guest reads and writes the
 * host's page cache directly; REMOVEMAPPING takes ranges out again. The
 * window itself belongs to the transport (s->tr.map / s->tr.unmap), which
 * checks moffset and len against its size; here the handle, the access mode
 * and the file range are checked. Without a window both are ENOSYS, and a
 * kernel then never asks again. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "fs/fs_internal.h"

#define MAP_PAGE ((uint64_t)1 << FS_MAP_SHIFT)

static bool page_aligned(uint64_t v)
{
    return (v & (MAP_PAGE - 1)) == 0;
}

/* The fd to map for handle h: its own if its access mode allows the
 * mapping (every mapping is readable; a writable one needs O_RDWR), else
 * the same file opened again read-write (an O_WRONLY handle: the guest's
 * page cache reads whole pages, as with the writeback cache). *own says
 * which; -errno if the handle may not be mapped that way. */
static int map_fd(struct fs_session *s, const struct fs_handle *h, bool write, bool *own)
{
    int fl = fcntl(h->fd, F_GETFL);
    if (fl < 0)
        return neg_errno();
    int acc = fl & O_ACCMODE;
    if (write && acc == O_RDONLY)
        return -EACCES; /* opened for reading: the guest may not write */
    *own = acc == O_RDWR || (acc == O_RDONLY && !write);
    if (*own)
        return h->fd;
    int fd = inode_reopen(s, h->inode, h->fd, O_RDWR);
    return fd < 0 ? neg_errno() : fd;
}

int op_setupmapping(struct fs_req *r)
{
    struct fuse_setupmapping_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    struct fs_session *s = r->s;
    if (s->tr.map == NULL)
        return -ENOSYS;
    const uint64_t known = FUSE_SETUPMAPPING_FLAG_WRITE | FUSE_SETUPMAPPING_FLAG_READ;
    if (in.flags & ~known)
        return -EINVAL;
    bool write = (in.flags & FUSE_SETUPMAPPING_FLAG_WRITE) != 0;
    /* mmap's file offsets are off_t: the range must end below 2^63. */
    if (in.len == 0 || !page_aligned(in.foffset) || !page_aligned(in.len) ||
        !page_aligned(in.moffset) || in.foffset > (uint64_t)INT64_MAX ||
        in.len > (uint64_t)INT64_MAX - in.foffset)
        return -EINVAL;
    if (write && s->opt.readonly)
        return -EROFS;
    cleanup_href struct href h = href_get(r, in.fh);
    if (h.h == NULL || h.h->is_dir || h.h->inode->nodeid != r->h.nodeid)
        return -EBADF;
    bool own;
    int fd = map_fd(s, h.h, write, &own);
    if (fd < 0)
        return fd;
    int e = s->tr.map(s->tr.ctx, fd, in.foffset, in.len, in.moffset, write);
    if (!own)
        close(fd); /* the mapping keeps the file */
    return e;
}

int op_removemapping(struct fs_req *r)
{
    struct fuse_removemapping_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    struct fs_session *s = r->s;
    if (s->tr.unmap == NULL)
        return -ENOSYS;
    if (in.count == 0 || in.count > r->left / sizeof(struct fuse_removemapping_one))
        return -EINVAL;
    /* Every range is taken out even if one is refused; the first error
     * is the answer. */
    int first = 0;
    for (uint32_t i = 0; i < in.count; i++) {
        struct fuse_removemapping_one one;
        if (req_get(r, &one, sizeof(one)) < 0)
            return -EINVAL;
        int e = one.len == 0 || !page_aligned(one.moffset) || !page_aligned(one.len)
                    ? -EINVAL
                    : s->tr.unmap(s->tr.ctx, one.moffset, one.len);
        if (e < 0 && first == 0)
            first = e;
    }
    return first;
}
