/* Thin wrappers for the new mount API (open_tree, move_mount, mount_setattr),
 * which glibc 2.36 does not all declare. */
#pragma once
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mount.h>
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

/* The mount_setattr(2) form of MS_* flags set and cleared by mount options
 * (ro, nosuid, nodev, noexec, nodiratime, nosymfollow, the atime mode). */
static inline struct mount_attr mount_attr_from_ms(unsigned long set, unsigned long clear)
{
    static const struct {
        unsigned long ms;
        uint64_t attr;
    } map[] = {
        {MS_RDONLY, MOUNT_ATTR_RDONLY},         {MS_NOSUID, MOUNT_ATTR_NOSUID},
        {MS_NODEV, MOUNT_ATTR_NODEV},           {MS_NOEXEC, MOUNT_ATTR_NOEXEC},
        {MS_NODIRATIME, MOUNT_ATTR_NODIRATIME}, {MS_NOSYMFOLLOW, MOUNT_ATTR_NOSYMFOLLOW},
    };
    struct mount_attr a = {0};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (set & map[i].ms)
            a.attr_set |= map[i].attr;
        if (clear & map[i].ms)
            a.attr_clr |= map[i].attr;
    }
    uint64_t mode = 0;
    bool have = true;
    if (set & MS_NOATIME)
        mode = MOUNT_ATTR_NOATIME;
    else if (set & MS_STRICTATIME)
        mode = MOUNT_ATTR_STRICTATIME;
    else if (set & MS_RELATIME)
        mode = MOUNT_ATTR_RELATIME;
    else if (clear & (MS_NOATIME | MS_STRICTATIME | MS_RELATIME))
        mode = MOUNT_ATTR_RELATIME;
    else
        have = false;
    if (have) {
        a.attr_clr |= MOUNT_ATTR__ATIME;
        a.attr_set |= mode;
    }
    return a;
}
