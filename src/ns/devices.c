/* Device nodes and /dev symlinks of a namespace container. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "ns/mount_api.h"
#include "ns/ns.h"
#include "ns/path.h"

struct default_dev {
    const char *path;
    unsigned major, minor;
};

/* The devices every OCI container gets (runtime spec, "Default Devices"). */
static const struct default_dev default_devs[] = {
    {"/dev/null", 1, 3}, {"/dev/zero", 1, 5}, {"/dev/full", 1, 7},
    {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0},
};

static const struct {
    const char *target, *link;
} default_links[] = {
    {"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
    {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
    {"pts/ptmx", "/dev/ptmx"}, {"/proc/kcore", "/dev/core"},
};

/* Create one device node at `path` in the rootfs, by mknod or, where that is
 * not allowed (user namespaces), by bind-mounting the host's node. */
static int make_device(int rootfd, const char *path, char type, unsigned major, unsigned minor,
                       mode_t mode, uid_t uid, gid_t gid, bool bind, struct err **err)
{
    const char *leaf;
    cleanup_close int dir = path_resolve_parent(rootfd, path, &leaf, "device", err);
    if (dir < 0)
        return -1;
    mode_t fmt = type == 'b' ? S_IFBLK : type == 'p' ? S_IFIFO : S_IFCHR;
    struct stat st;
    if (fstatat(dir, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if ((st.st_mode & S_IFMT) == fmt && st.st_rdev == makedev(major, minor))
            return 0;
        if (S_ISDIR(st.st_mode))
            return err_make(err, EISDIR, "device `%s`", path);
        if (unlinkat(dir, leaf, 0) < 0)
            return err_make(err, errno, "replace `%s`", path);
    }
    if (!bind) {
        if (mknodat(dir, leaf, fmt | (mode & 07777), makedev(major, minor)) == 0) {
            if (fchownat(dir, leaf, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                return err_make(err, errno, "chown device `%s`", path);
            /* mknod honours the umask; the spec's mode is exact. */
            if (fchmodat(dir, leaf, mode & 07777, 0) < 0)
                return err_make(err, errno, "chmod device `%s`", path);
            return 0;
        }
        if (errno != EPERM)
            return err_make(err, errno, "mknod `%s`", path);
    }
    /* Bind the host's node over an empty file. */
    cleanup_close int f = openat(dir, leaf, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC,
                                 0600);
    if (f < 0)
        return err_make(err, errno, "create `%s`", path);
    cleanup_close int t = openat(dir, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (t < 0)
        return err_make(err, errno, "open `%s`", path);
    cleanup_close int tree = sys_open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return err_make(err, errno, "bind host device `%s`", path);
    if (sys_move_mount(tree, "", t, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return err_make(err, errno, "bind host device `%s`", path);
    return 0;
}

int ns_devices_setup(const struct oci_config *cfg, int rootfd, bool bind_from_host,
                     struct err **err)
{
    mode_t old = umask(0);
    int r = 0;
    for (size_t i = 0; r == 0 && i < sizeof(default_devs) / sizeof(default_devs[0]); i++) {
        const struct default_dev *d = &default_devs[i];
        bool overridden = false;
        for (size_t k = 0; k < cfg->linux_.n_devices; k++)
            if (strcmp(cfg->linux_.devices[k].path, d->path) == 0)
                overridden = true;
        if (!overridden)
            r = make_device(rootfd, d->path, 'c', d->major, d->minor, 0666, 0, 0,
                            bind_from_host, err);
    }
    for (size_t k = 0; r == 0 && k < cfg->linux_.n_devices; k++) {
        const struct oci_device *d = &cfg->linux_.devices[k];
        r = make_device(rootfd, d->path, d->type == 'u' ? 'c' : d->type, (unsigned)d->major,
                        (unsigned)d->minor, d->has_mode ? d->mode : 0666,
                        d->has_uid ? d->uid : 0, d->has_gid ? d->gid : 0, bind_from_host, err);
    }
    umask(old);
    if (r < 0)
        return -1;
    for (size_t i = 0; i < sizeof(default_links) / sizeof(default_links[0]); i++) {
        const char *leaf;
        cleanup_close int dir =
            path_resolve_parent(rootfd, default_links[i].link, &leaf, "device symlink", err);
        if (dir < 0)
            return -1;
        if (symlinkat(default_links[i].target, dir, leaf) < 0 && errno != EEXIST)
            return err_make(err, errno, "symlink `%s`", default_links[i].link);
    }
    return 0;
}
