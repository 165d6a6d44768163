/* config.json's mounts inside the guest, after the agent's own /proc, /sys
 * and /dev: file systems of any type the guest kernel has (tmpfs, mqueue,
 * cgroup2...), and binds of entries of the host's volume share, where the
 * host cloned each bind's source (a virtio-fs share in a VM, a bind of the
 * state directory's volumes/ in the sandbox). Destinations are resolved in
 * the untrusted root without following a symlink out of it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "ns/mount_api.h"
#include "ns/path.h"
#include "oci/config.h"

/* A bind: a clone of the share's entry, with the mount's flags. */
static int bind_from_share(struct agent *a, const struct oci_mount *m, struct err **err)
{
    if (a->volumes_fd < 0)
        return err_make(err, ENOENT, "this VM has no volume share for bind mounts");
    struct stat st;
    if (fstatat(a->volumes_fd, m->source, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return err_make(err, errno, "volume `%s`", m->source);
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        return err_make(err, EINVAL, "volume `%s` is neither a directory nor a file", m->source);
    cleanup_close int target = path_resolve_in_root(
        a->root_fd, m->destination, S_ISDIR(st.st_mode) ? PATH_MKDIR : PATH_MKFILE,
        "mount destination", err);
    if (target < 0)
        return -1;
    unsigned rec = m->recursive ? AT_RECURSIVE : 0;
    cleanup_close int tree =
        sys_open_tree(a->volumes_fd, m->source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | rec);
    if (tree < 0)
        return err_make(err, errno, "clone volume `%s`", m->source);
    struct mount_attr attr = mount_attr_from_ms(m->flags, m->clear);
    if ((attr.attr_set || attr.attr_clr) && sys_mount_setattr(tree, "", AT_EMPTY_PATH | rec, &attr) < 0)
        return err_make(err, errno, "set the mount options");
    if (sys_move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return err_make(err, errno, "attach the bind");
    return 0;
}

/* Any other type: mount(2) on the resolved destination. */
static int mount_fs(struct agent *a, const struct oci_mount *m, struct err **err)
{
    cleanup_close int target = path_resolve_in_root(a->root_fd, m->destination, PATH_MKDIR,
                                                    "mount destination", err);
    if (target < 0)
        return -1;
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", target);
    const char *type = m->type && m->type[0] ? m->type : "tmpfs";
    /* A guest has cgroup2 only: config.json's "cgroup" is that. */
    if (strcmp(type, "cgroup") == 0)
        type = "cgroup2";
    const char *source = m->source && m->source[0] ? m->source : type;
    unsigned long flags = m->flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT);
    if (mount(source, p, type, flags, m->data) < 0)
        return err_make(err, errno, "mount %s", type);
    return 0;
}

int agent_mounts_apply(struct agent *a, const struct oci_mount *mounts, size_t n,
                       struct err **err)
{
    for (size_t i = 0; i < n; i++) {
        const struct oci_mount *m = &mounts[i];
        int r = m->bind ? bind_from_share(a, m, err) : mount_fs(a, m, err);
        if (r == 0 && m->propagation) {
            cleanup_close int t = path_resolve_in_root(a->root_fd, m->destination,
                                                       PATH_NO_CREATE, "mount destination", err);
            char p[64];
            snprintf(p, sizeof(p), "/proc/self/fd/%d", t);
            if (t < 0 || mount(NULL, p, NULL, m->propagation, NULL) < 0)
                r = t < 0 ? -1 : err_make(err, errno, "set the propagation");
        }
        if (r < 0)
            return err_wrap(err, "mount on `%s`", m->destination);
    }
    return 0;
}

int agent_root_readonly(struct agent *a, struct err **err)
{
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
    if (sys_mount_setattr(a->root_fd, "", AT_EMPTY_PATH, &attr) < 0)
        return err_make(err, errno, "make the container root read-only (root.readonly)");
    return 0;
}
