/* Extended attributes: SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR, on the
 * inode itself through /proc/self/fd/N (an O_PATH fd takes no f*xattr). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/xattr.h>
#include <linux/limits.h>

#include "common/cleanup.h"
#include "fs/fs_internal.h"

static void fd_path(int fd, char *buf, size_t len)
{
    snprintf(buf, len, "/proc/self/fd/%d", fd);
}

int op_setxattr(struct fs_req *r)
{
    /* Without FUSE_SETXATTR_EXT the kernel sends the 8-byte form. */
    struct {
        uint32_t size, flags;
    } in;
    const char *name;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    int e = req_str(r, &name, XATTR_NAME_MAX);
    if (e < 0)
        return e == -ENAMETOOLONG ? -ERANGE : e;
    if (in.size > XATTR_SIZE_MAX)
        return -E2BIG;
    if (in.size > r->left)
        return -EINVAL;
    if (in.flags & ~(uint32_t)(XATTR_CREATE | XATTR_REPLACE))
        return -EINVAL;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    char path[40];
    fd_path(p.fd, path, sizeof(path));
    return setxattr(path, name, r->p, in.size, (int)in.flags) < 0 ? neg_errno() : 0;
}

/* GETXATTR and LISTXATTR: size 0 asks for the length only. */
static int get_or_list(struct fs_req *r, bool list)
{
    struct fuse_getxattr_in in;
    const char *name = NULL;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    if (!list) {
        int e = req_str(r, &name, XATTR_NAME_MAX);
        if (e < 0)
            return e == -ENAMETOOLONG ? -ERANGE : e;
    }
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    char path[40];
    fd_path(p.fd, path, sizeof(path));
    size_t size = in.size;
    if (size > XATTR_SIZE_MAX)
        size = XATTR_SIZE_MAX;
    if (size > reply_room(r))
        size = reply_room(r);
    cleanup_free char *buf = size ? malloc(size) : NULL;
    if (size && buf == NULL)
        return -ENOMEM;
    ssize_t n = list ? listxattr(path, buf, size) : getxattr(path, name, buf, size);
    if (n < 0)
        return neg_errno();
    if (in.size == 0) {
        struct fuse_getxattr_out out = {.size = (uint32_t)n};
        return reply_put(r, &out, sizeof(out));
    }
    return reply_put(r, buf, (size_t)n);
}

int op_getxattr(struct fs_req *r)
{
    return get_or_list(r, false);
}

int op_listxattr(struct fs_req *r)
{
    return get_or_list(r, true);
}

int op_removexattr(struct fs_req *r)
{
    const char *name;
    int e = req_str(r, &name, XATTR_NAME_MAX);
    if (e < 0)
        return e == -ENAMETOOLONG ? -ERANGE : e;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    char path[40];
    fd_path(p.fd, path, sizeof(path));
    return removexattr(path, name) < 0 ? neg_errno() : 0;
}
