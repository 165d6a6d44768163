/* Root filesystem of a namespace container: config mounts resolved safely
 * inside the rootfs, pivot_root, then masked/read-only paths and sysctls. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/mount_api.h"
#include "ns/ns.h"
#include "ns/path.h"
#include "ns/protect.h"

#define FD_PATH_LEN 32

static void fd_path(char *buf, int fd)
{
    snprintf(buf, FD_PATH_LEN, "/proc/self/fd/%d", fd);
}

/* Bind `src` (a host path, already opened or by name) onto the O_PATH fd
 * `target` with the mount's flags, through a detached clone of the tree. */
static int bind_mount(int srcdir, const char *src, int target, unsigned long flags,
                      unsigned long clear, unsigned long propagation, bool recursive,
                      struct err **err)
{
    unsigned rec = recursive ? AT_RECURSIVE : 0;
    cleanup_close int tree = sys_open_tree(srcdir, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
                                                            rec | (src[0] ? 0 : AT_EMPTY_PATH));
    if (tree < 0)
        return err_make(err, errno, "bind `%s`", src[0] ? src : "(fd)");
    struct mount_attr attr = mount_attr_from_ms(flags, clear);
    if ((attr.attr_set || attr.attr_clr) &&
        sys_mount_setattr(tree, "", AT_EMPTY_PATH | rec, &attr) < 0)
        return err_make(err, errno, "set mount options of `%s`", src);
    if (sys_move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) <
        0)
        return err_make(err, errno, "attach bind mount of `%s`", src);
    if (propagation) {
        struct mount_attr p = {.propagation = propagation & ~(unsigned long)MS_REC};
        if (sys_mount_setattr(tree, "", AT_EMPTY_PATH | ((propagation & MS_REC) ? AT_RECURSIVE
                                                                                 : 0),
                              &p) < 0)
            return err_make(err, errno, "set propagation of `%s`", src);
    }
    return 0;
}

static int set_propagation_at(int rootfd, const char *dest, unsigned long prop,
                              struct err **err)
{
    cleanup_close int fd = path_resolve_in_root(rootfd, dest, PATH_NO_CREATE,
                                                "mount destination", err);
    if (fd < 0)
        return -1;
    char p[FD_PATH_LEN];
    fd_path(p, fd);
    if (mount(NULL, p, NULL, prop, NULL) < 0)
        return err_make(err, errno, "set propagation of `%s`", dest);
    return 0;
}

/* A "cgroup" mount: cgroup2 on a unified host; on v1/hybrid hosts a tmpfs
 * with the container's own cgroup of each hierarchy bound into it. */
static int mount_cgroup(const struct oci_mount *m, int rootfd, int target, bool new_cgroupns,
                        const struct cgroup *cg, struct err **err)
{
    char tp[FD_PATH_LEN];
    fd_path(tp, target);
    struct statfs sfs;
    if (statfs("/sys/fs/cgroup", &sfs) < 0)
        return err_make(err, errno, "statfs /sys/fs/cgroup");
    unsigned long flags = m->flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT);
    if (sfs.f_type == CGROUP2_SUPER_MAGIC) {
        if (new_cgroupns && mount("cgroup2", tp, "cgroup2", flags, NULL) == 0)
            return 0;
        return bind_mount(AT_FDCWD, "/sys/fs/cgroup", target, m->flags, m->clear, 0, true, err);
    }
    if (mount("tmpfs", tp, "tmpfs", flags & ~(unsigned long)MS_RDONLY, "mode=755") < 0)
        return err_make(err, errno, "mount tmpfs on `%s`", m->destination);
    cleanup_close int dir = path_resolve_in_root(rootfd, m->destination, PATH_NO_CREATE,
                                                 "mount destination", err);
    if (dir < 0)
        return -1;
    cleanup_free char *self = NULL;
    if (read_file_at(AT_FDCWD, "/proc/self/cgroup", 1 << 16, &self, NULL, err) < 0)
        return -1;
    cleanup_dir DIR *d = opendir("/sys/fs/cgroup");
    if (d == NULL)
        return err_make(err, errno, "open /sys/fs/cgroup");
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        cleanup_free char *hpath = xasprintf("/sys/fs/cgroup/%s", de->d_name);
        if (de->d_type == DT_LNK) {
            char link[256];
            ssize_t n = readlink(hpath, link, sizeof(link) - 1);
            if (n > 0) {
                link[n] = '\0';
                symlinkat(link, dir, de->d_name);
            }
            continue;
        }
        struct statfs hs;
        if (de->d_type != DT_DIR || statfs(hpath, &hs) < 0 ||
            (hs.f_type != CGROUP_SUPER_MAGIC && hs.f_type != CGROUP2_SUPER_MAGIC))
            continue; /* an empty mountpoint, not a hierarchy */
        /* Find this hierarchy's line in /proc/self/cgroup ("id:ctrls:path"). */
        const char *want = strcmp(de->d_name, "systemd") == 0 ? "name=systemd"
                           : strcmp(de->d_name, "unified") == 0 ? ""
                                                                : de->d_name;
        const char *sub = NULL;
        size_t sublen = 0;
        for (char *line = self; line && *line;) {
            char *nl = strchr(line, '\n');
            char *c1 = strchr(line, ':');
            char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (c2 && (!nl || c2 < nl) && (size_t)(c2 - c1 - 1) == strlen(want) &&
                strncmp(c1 + 1, want, strlen(want)) == 0) {
                sub = c2 + 1;
                sublen = nl ? (size_t)(nl - sub) : strlen(sub);
                break;
            }
            line = nl ? nl + 1 : NULL;
        }
        if (cg && cg->path) {
            /* /proc/self/cgroup is already namespaced: use the host path. */
            sub = cg->path;
            sublen = strlen(sub);
        }
        if (sub == NULL)
            continue;
        cleanup_free char *src = xasprintf("%s/%.*s", hpath, (int)sublen, sub);
        if (mkdirat(dir, de->d_name, 0755) < 0 && errno != EEXIST)
            return err_make(err, errno, "create `%s/%s`", m->destination, de->d_name);
        cleanup_close int t = openat(dir, de->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (t < 0)
            return err_make(err, errno, "open `%s/%s`", m->destination, de->d_name);
        if (bind_mount(AT_FDCWD, src, t, m->flags | MS_NOSUID | MS_NODEV | MS_NOEXEC, m->clear,
                       0, false, err) < 0)
            return -1;
    }
    if (m->flags & MS_RDONLY) {
        char dp[FD_PATH_LEN];
        fd_path(dp, dir);
        if (mount(NULL, dp, NULL, MS_REMOUNT | MS_RDONLY | flags, NULL) < 0)
            return err_make(err, errno, "make `%s` read-only", m->destination);
    }
    return 0;
}

static int mount_one(const struct ns_spawn_opts *o, int rootfd, const struct oci_mount *m,
                     bool in_userns, struct err **err)
{
    const char *type = m->type ? m->type : "";
    enum path_create create = PATH_MKDIR;
    cleanup_free char *src = NULL;
    if (m->bind) {
        src = m->source[0] == '/' ? xstrdup(m->source) : xasprintf("%s/%s", o->bundle, m->source);
        struct stat st;
        if (stat(src, &st) < 0)
            return err_make(err, errno, "mount source `%s`", m->source);
        if (!S_ISDIR(st.st_mode))
            create = PATH_MKFILE;
    }
    cleanup_close int target =
        path_resolve_in_root(rootfd, m->destination, create, "mount destination", err);
    if (target < 0)
        return -1;
    if (m->bind)
        return bind_mount(AT_FDCWD, src, target, m->flags, m->clear, m->propagation,
                          m->recursive, err);
    if (strcmp(type, "cgroup") == 0) {
        const struct oci_namespace *cg = oci_config_ns(o->cfg, OCI_NS_CGROUP);
        return mount_cgroup(m, rootfd, target, cg && !cg->path, o->cg, err);
    }
    char tp[FD_PATH_LEN];
    fd_path(tp, target);
    unsigned long flags = m->flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT);
    const char *source = m->source && m->source[0] ? m->source : type;
    if (mount(source, tp, type, flags, m->data) < 0) {
        int e = errno;
        /* In a user namespace the kernel refuses sysfs without a network
         * namespace of its own, and mqueue without an ipc one: bind instead. */
        if (in_userns && (e == EPERM || e == EINVAL) &&
            (strcmp(type, "sysfs") == 0 || strcmp(type, "mqueue") == 0)) {
            const char *host = strcmp(type, "sysfs") == 0 ? "/sys" : "/dev/mqueue";
            return bind_mount(AT_FDCWD, host, target, m->flags | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                              m->clear, 0, true, err);
        }
        return err_make(err, e, "mount %s on `%s`", type, m->destination);
    }
    if (m->propagation)
        return set_propagation_at(rootfd, m->destination, m->propagation, err);
    return 0;
}

static int do_pivot(const char *rootfs, bool no_pivot, struct err **err)
{
    if (no_pivot) {
        if (chdir(rootfs) < 0)
            return err_make(err, errno, "chdir to rootfs");
        if (mount(rootfs, "/", NULL, MS_MOVE, NULL) < 0)
            return err_make(err, errno, "move rootfs to /");
        if (chroot(".") < 0)
            return err_make(err, errno, "chroot");
        return chdir("/") < 0 ? err_make(err, errno, "chdir /") : 0;
    }
    cleanup_close int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    cleanup_close int newroot = open(rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (oldroot < 0 || newroot < 0)
        return err_make(err, errno, "open roots for pivot_root");
    if (fchdir(newroot) < 0)
        return err_make(err, errno, "chdir to rootfs");
    /* pivot_root(".", ".") stacks the old root on top of the new one; it is
     * then detached without ever needing a directory inside the rootfs. */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return err_make(err, errno, "pivot_root into `%s`", rootfs);
    if (fchdir(oldroot) < 0)
        return err_make(err, errno, "chdir to old root");
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return err_make(err, errno, "make old root a slave");
    if (umount2(".", MNT_DETACH) < 0)
        return err_make(err, errno, "detach old root");
    if (chdir("/") < 0)
        return err_make(err, errno, "chdir /");
    return 0;
}

int ns_rootfs_setup(const struct ns_spawn_opts *o, bool in_userns, struct err **err)
{
    const struct oci_config *cfg = o->cfg;
    /* Nothing done in here may propagate back to the host. */
    if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        return err_make(err, errno, "make / a slave mount");
    if (mount(o->rootfs, o->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        return err_make(err, errno, "bind rootfs `%s`", o->rootfs);
    if (mount(NULL, o->rootfs, NULL, MS_PRIVATE, NULL) < 0)
        return err_make(err, errno, "make rootfs private");
    cleanup_close int rootfd = open(o->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return err_make(err, errno, "open rootfs `%s`", o->rootfs);
    for (size_t i = 0; i < cfg->n_mounts; i++)
        if (mount_one(o, rootfd, &cfg->mounts[i], in_userns, err) < 0)
            return -1;
    if (ns_devices_setup(cfg, rootfd, in_userns, err) < 0)
        return -1;
    /* The working directory is created now, inside the rootfs, before a
     * read-only root would forbid it (runc does the same). */
    cleanup_close int cwd = path_resolve_in_root(rootfd, cfg->process->cwd, PATH_MKDIR,
                                                 "process.cwd", err);
    return cwd < 0 ? -1 : 0;
}

int ns_rootfs_pivot(const struct ns_spawn_opts *o, struct err **err)
{
    const struct oci_config *cfg = o->cfg;
    if (do_pivot(o->rootfs, o->no_pivot, err) < 0)
        return -1;
    if (cfg->linux_.rootfs_propagation &&
        mount(NULL, "/", NULL, cfg->linux_.rootfs_propagation, NULL) < 0)
        return err_make(err, errno, "set linux.rootfsPropagation");
    return 0;
}

/* Mask (ro false) or make read-only one path of the new root, its last
 * component not followed; a path that does not exist is skipped. */
static int protect_path(const char *path, bool ro, struct err **err)
{
    cleanup_close int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0
                               : err_make(err, errno, "%s `%s`",
                                          ro ? "readonly path" : "masked path", path);
    return ro ? ns_protect_readonly(fd, path, err) : ns_protect_mask(fd, path, err);
}

int ns_rootfs_finish(const struct ns_spawn_opts *o, struct err **err)
{
    const struct oci_linux *l = &o->cfg->linux_;
    for (size_t i = 0; i < l->n_sysctl; i++)
        if (ns_sysctl_write(&l->sysctl[i], err) < 0)
            return -1;
    for (char **p = l->masked_paths; p && *p; p++)
        if (protect_path(*p, false, err) < 0)
            return -1;
    for (char **p = l->readonly_paths; p && *p; p++)
        if (protect_path(*p, true, err) < 0)
            return -1;
    if (o->cfg->root_readonly) {
        struct statvfs sv;
        unsigned long keep = 0;
        if (statvfs("/", &sv) == 0) {
            if (sv.f_flag & ST_NOSUID) keep |= MS_NOSUID;
            if (sv.f_flag & ST_NODEV) keep |= MS_NODEV;
            if (sv.f_flag & ST_NOEXEC) keep |= MS_NOEXEC;
        }
        if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, NULL) < 0)
            return err_make(err, errno, "make the root filesystem read-only");
    }
    return 0;
}
