/* Thin wrappers for the new mount API (open_tree, move_mount, mount_setattr),
 * which glibc 2.36 does not all declare. */
#pragma once
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MOUNT_ATTR_SIZE_VER0
struct mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#endif

static inline int sys_open_tree(int dfd, const char *path, unsigned flags)
{
    return (int)syscall(SYS_open_tree, dfd, path, flags);
}

static inline int sys_move_mount(int from_dfd, const char *from, int to_dfd, const char *to,
                                 unsigned flags)
{
    return (int)syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags);
}

static inline int sys_mount_setattr(int dfd, const char *path, unsigned flags,
                                    struct mount_attr *attr)
{
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, attr, sizeof(*attr));
}

/* A detached recursive clone of the tree at dfd/path (open_tree flags may
 * add AT_EMPTY_PATH), with `propagation` (MS_PRIVATE, MS_SLAVE) set on every
 * mount of it so nothing done to it propagates back. An fd, or -1 (errno). */
static inline int mount_clone_tree(int dfd, const char *path, unsigned flags,
                                   uint64_t propagation)
{
    int t = sys_open_tree(dfd, path, OPEN_TREE_CLONE | AT_RECURSIVE | OPEN_TREE_CLOEXEC | flags);
    if (t < 0)
        return -1;
    struct mount_attr a = {.propagation = propagation};
    if (sys_mount_setattr(t, "", AT_EMPTY_PATH | AT_RECURSIVE, &a) < 0) {
        int e = errno;
        close(t);
        errno = e;
        return -1;
    }
    return t;
}
