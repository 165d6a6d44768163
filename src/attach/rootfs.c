/* The session's root: the tool set as `/`, the container's root at
 * /var/lib/cntr, and the container's /proc, /dev, /sys and a few /etc files
 * over the tools' own, built with the new mount API in a mount namespace of
 * the session's own. Neither the container nor the tools directory change:
 *
 * - both trees are detached recursive clones (open_tree OPEN_TREE_CLONE),
 *   the container's taken from inside its mount namespace, made slaves so
 *   that nothing done here can propagate back;
 * - a mount point missing in the tools (/var/lib/cntr, usually) is never
 *   created there: the deepest existing ancestor gets a tmpfs on top of it
 *   holding bind mounts of that directory's entries (and copies of its
 *   symlinks), and the missing directories are made in the tmpfs;
 * - every path inside the container's tree is resolved with the
 *   symlink-safe resolver (ns/path.c), with the container's root as `/`. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <dirent.h>

#include "attach/internal.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "ns/mount_api.h"
#include "ns/path.h"

/* Files of the container shown over the tools' ones so that tools name the
 * container's users, hosts and resolver. */
static const char *const etc_files[] = {"/etc/hosts", "/etc/resolv.conf", "/etc/passwd",
                                        "/etc/group", "/etc/hostname"};

static int sys_fsopen(const char *fs, unsigned flags)
{
    return (int)syscall(SYS_fsopen, fs, flags);
}

static int sys_fsconfig(int fd, unsigned cmd, const char *key, const void *value, int aux)
{
    return (int)syscall(SYS_fsconfig, fd, cmd, key, value, aux);
}

static int sys_fsmount(int fd, unsigned flags, unsigned attrs)
{
    return (int)syscall(SYS_fsmount, fd, flags, attrs);
}

/* A new detached mount of filesystem `type` with string options `opts`
 * ("key=value" pairs, NULL-terminated). */
static int fs_new(const char *type, const char *const *opts, unsigned attrs, struct err **err)
{
    cleanup_close int fs = sys_fsopen(type, FSOPEN_CLOEXEC);
    if (fs < 0)
        return err_make(err, errno, "fsopen %s", type);
    for (size_t i = 0; opts && opts[i]; i++) {
        cleanup_free char *k = xstrdup(opts[i]);
        char *v = strchr(k, '=');
        if (v)
            *v++ = '\0';
        if (sys_fsconfig(fs, FSCONFIG_SET_STRING, k, v, 0) < 0)
            return err_make(err, errno, "%s option `%s`", type, opts[i]);
    }
    if (sys_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return err_make(err, errno, "create a %s", type);
    int m = sys_fsmount(fs, FSMOUNT_CLOEXEC, attrs);
    if (m < 0)
        return err_make(err, errno, "fsmount %s", type);
    return m;
}

/* Make every mount of the detached tree at fd a slave (or private): mounts
 * made here never propagate to the host or the container. */
static int make_slave(int fd, const char *what, struct err **err)
{
    struct mount_attr a = {.propagation = MS_SLAVE};
    if (sys_mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &a) < 0)
        return err_make(err, errno, "make %s a slave tree", what);
    return 0;
}

static int mount_on(int from, int to, const char *what, struct err **err)
{
    if (sys_move_mount(from, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return err_make(err, errno, "mount %s", what);
    return 0;
}

/* The root being built: `root` is the topmost mount at `/`. */
struct newroot {
    int root;
};

static bool same_inode(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* Copy one entry of `orig` into the tmpfs at mfd: a bind mount of it for
 * directories and files, a copy for symlinks. */
static int shadow_entry(int orig, int mfd, const char *name, struct err **err)
{
    struct stat st;
    if (fstatat(orig, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : err_make(err, errno, "stat `%s` in the tools", name);
    if (S_ISLNK(st.st_mode)) {
        char target[4096];
        ssize_t n = readlinkat(orig, name, target, sizeof(target) - 1);
        if (n < 0)
            return err_make(err, errno, "readlink `%s` in the tools", name);
        target[n] = '\0';
        if (symlinkat(target, mfd, name) < 0)
            return err_make(err, errno, "copy symlink `%s`", name);
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        if (mkdirat(mfd, name, st.st_mode & 07777) < 0)
            return err_make(err, errno, "mkdir `%s` in the shadow tmpfs", name);
    } else {
        int f = openat(mfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (f < 0)
            return err_make(err, errno, "create `%s` in the shadow tmpfs", name);
        close(f);
    }
    cleanup_close int c = sys_open_tree(orig, name, OPEN_TREE_CLONE | AT_RECURSIVE |
                                                         AT_SYMLINK_NOFOLLOW | OPEN_TREE_CLOEXEC);
    if (c < 0)
        return err_make(err, errno, "clone `%s` of the tools", name);
    if (sys_move_mount(c, "", mfd, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return err_make(err, errno, "bind `%s` of the tools", name);
    return 0;
}

/* Put a tmpfs over directory dirfd (of the tools) holding its entries but
 * `skip`; returns the tmpfs's fd. If dirfd is the root, the tmpfs becomes
 * the new root. */
static int shadow(struct newroot *nr, int dirfd, const char *skip, struct err **err)
{
    cleanup_close int orig = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (orig < 0 || fstat(orig, &st) < 0)
        return err_make(err, errno, "open a directory of the tools");
    char mode[32], uid[32], gid[32];
    snprintf(mode, sizeof(mode), "mode=%o", st.st_mode & 07777);
    snprintf(uid, sizeof(uid), "uid=%u", (unsigned)st.st_uid);
    snprintf(gid, sizeof(gid), "gid=%u", (unsigned)st.st_gid);
    const char *opts[] = {mode, uid, gid, "size=16m", NULL};
    cleanup_close int mfd = fs_new("tmpfs", opts, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, err);
    if (mfd < 0)
        return -1;
    bool is_root = same_inode(dirfd, nr->root);
    if (mount_on(mfd, dirfd, "the shadow tmpfs", err) < 0)
        return -1;
    cleanup_dir DIR *d = fdopendir(dup(orig));
    if (d == NULL)
        return err_make(err, errno, "read a directory of the tools");
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, skip) == 0)
            continue;
        if (shadow_entry(orig, mfd, de->d_name, err) < 0)
            return -1;
    }
    if (is_root) {
        close(nr->root);
        nr->root = dup(mfd);
        if (nr->root < 0)
            return err_make(err, errno, "dup");
    }
    return steal_fd(&mfd);
}

/* An O_PATH fd of mount point `path` (absolute, no `..`) in the new root:
 * resolved in the tools, or, if missing, made in a shadow tmpfs over its
 * deepest existing ancestor. */
static int mountpoint(struct newroot *nr, const char *path, bool dir, struct err **err)
{
    cleanup_err struct err *e = NULL;
    int fd = path_resolve_in_root(nr->root, path, PATH_NO_CREATE, "mount point", &e);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode) != dir) {
            close(fd);
            return err_make(err, dir ? ENOTDIR : EISDIR, "`%s` in the tools", path);
        }
        return fd;
    }
    if (err_code(e) != ENOENT) {
        *err = steal_pointer(&e);
        return -1;
    }
    err_free(&e);
    /* The deepest existing ancestor; `rest` is what to make under it. */
    cleanup_free char *anc = xstrdup(path);
    const char *rest = NULL;
    cleanup_close int afd = -1;
    for (;;) {
        char *slash = strrchr(anc, '/');
        rest = path + (slash - anc) + 1;
        if (slash == anc)
            anc[1] = '\0';
        else
            *slash = '\0';
        afd = path_resolve_in_root(nr->root, anc, PATH_NO_CREATE, "mount point", &e);
        if (afd >= 0)
            break;
        if (err_code(e) != ENOENT || strcmp(anc, "/") == 0) {
            *err = steal_pointer(&e);
            return -1;
        }
        err_free(&e);
    }
    struct stat st;
    if (fstat(afd, &st) < 0 || !S_ISDIR(st.st_mode))
        return err_make(err, ENOTDIR, "`%s` in the tools", anc);
    cleanup_free char *first = strndup(rest, strcspn(rest, "/"));
    int cur = shadow(nr, afd, first, err);
    if (cur < 0)
        return -1;
    /* Make the missing components in the tmpfs, following nothing. */
    cleanup_free char *todo = xstrdup(rest);
    char *save = NULL;
    for (char *c = strtok_r(todo, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        bool last = save == NULL || *save == '\0';
        int next;
        if (last && !dir) {
            next = openat(cur, c, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (next >= 0) {
                close(next);
                next = openat(cur, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
            }
        } else {
            if (mkdirat(cur, c, 0755) < 0 && errno != EEXIST) {
                close(cur);
                return err_make(err, errno, "make mount point `%s`", path);
            }
            next = openat(cur, c, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
        }
        int e2 = errno;
        close(cur);
        if (next < 0)
            return err_make(err, e2, "make mount point `%s`", path);
        cur = next;
    }
    return cur;
}

/* Resolve `path` in the container's tree; -1 (no error) if it is missing or
 * not of the wanted type. */
static int container_path(int ctree, const char *path, bool dir, struct err **err)
{
    cleanup_err struct err *e = NULL;
    int fd = path_resolve_in_root(ctree, path, PATH_NO_CREATE, "container path", &e);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))) {
        if (fd >= 0)
            close(fd);
        log_debug("attach: no %s `%s` in the container", dir ? "directory" : "file", path);
        return -1;
    }
    return fd;
}

/* Bind the container's `path` (recursively) over the same path of the new
 * root; a missing /proc gets a new procfs of the container's pid namespace
 * (this process is in it), a missing /dev or /sys an empty read-only tmpfs,
 * so that the host's never show. */
static int bind_container_dir(struct newroot *nr, int ctree, const char *path, struct err **err)
{
    cleanup_close int src = container_path(ctree, path, true, err);
    cleanup_close int tree = -1;
    bool is_proc = strcmp(path, "/proc") == 0;
    struct statfs sf;
    if (src >= 0 && (!is_proc || (fstatfs(src, &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC))) {
        tree = sys_open_tree(src, "", OPEN_TREE_CLONE | AT_RECURSIVE | AT_EMPTY_PATH |
                                          OPEN_TREE_CLOEXEC);
        if (tree < 0)
            return err_make(err, errno, "clone the container's %s", path);
    } else if (is_proc) {
        tree = fs_new("proc", NULL, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, err);
    } else {
        const char *opts[] = {"mode=755", "size=4k", NULL};
        tree = fs_new("tmpfs", opts, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, err);
    }
    if (tree < 0)
        return -1;
    cleanup_close int dst = mountpoint(nr, path, true, err);
    if (dst < 0)
        return -1;
    return mount_on(tree, dst, path, err);
}

/* The container's /etc file over the tools' one (if the container has it). */
static int bind_container_file(struct newroot *nr, int ctree, const char *path,
                               struct err **err)
{
    cleanup_close int src = container_path(ctree, path, false, err);
    if (src < 0)
        return 0;
    cleanup_close int tree = sys_open_tree(src, "", OPEN_TREE_CLONE | AT_EMPTY_PATH |
                                                        OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return err_make(err, errno, "clone the container's %s", path);
    cleanup_err struct err *e = NULL;
    cleanup_close int dst = mountpoint(nr, path, false, &e);
    if (dst < 0) {
        /* e.g. a dangling symlink in the tools: the tools' file stays */
        log_debug("attach: %s not shown: %s", path, e->msg);
        return 0;
    }
    return mount_on(tree, dst, path, err);
}

int attach_rootfs_grab(const struct attach_plan *p, struct attach_trees *tr, struct err **err)
{
    tr->tools = tr->ctree = -1;
    tr->cwd = NULL;
    tr->tools = sys_open_tree(p->toolsfd, "", OPEN_TREE_CLONE | AT_RECURSIVE | AT_EMPTY_PATH |
                                                  OPEN_TREE_CLOEXEC);
    if (tr->tools < 0)
        return err_make(err, errno, "clone the tools directory `%s`", p->tools_path);
    if (make_slave(tr->tools, "the tools", err) < 0)
        return -1;
    /* A mount of another namespace cannot be cloned from outside it: clone
     * the container's root from inside, then come back. */
    cleanup_close int own = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (own < 0)
        return err_make(err, errno, "open our mount namespace");
    if (setns(p->t->pidfd, CLONE_NEWNS) < 0)
        return err_make(err, errno, "join the mount namespace of %s", p->t->what);
    tr->ctree = sys_open_tree(p->t->rootfd, "", OPEN_TREE_CLONE | AT_RECURSIVE | AT_EMPTY_PATH |
                                                    OPEN_TREE_CLOEXEC);
    int e = errno;
    char cwd[4096];
    ssize_t n = readlinkat(p->t->procfd, "cwd", cwd, sizeof(cwd) - 1);
    if (n > 0 && cwd[0] == '/') {
        cwd[n] = '\0';
        tr->cwd = xstrdup(cwd);
    }
    if (setns(own, CLONE_NEWNS) < 0)
        return err_make(err, errno, "return to our mount namespace");
    if (tr->ctree < 0)
        return err_make(err, e, "clone the root of %s", p->t->what);
    return make_slave(tr->ctree, "the container's root", err);
}

int attach_rootfs_build(const struct attach_trees *tr, struct err **err)
{
    if (unshare(CLONE_NEWNS) < 0)
        return err_make(err, errno, "new mount namespace");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return err_make(err, errno, "make our mounts private");
    /* Attach the tools on top of our `/`: mounts can then be made in it. */
    if (sys_move_mount(tr->tools, "", AT_FDCWD, "/", MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return err_make(err, errno, "mount the tools");
    struct newroot nr = {.root = dup(tr->tools)};
    if (nr.root < 0)
        return err_make(err, errno, "dup");
    int r = -1;
    int cntr = mountpoint(&nr, ATTACH_CNTR_DIR, true, err);
    if (cntr < 0)
        goto out;
    r = mount_on(tr->ctree, cntr, "the container's root at " ATTACH_CNTR_DIR, err);
    close(cntr);
    if (r < 0)
        goto out;
    r = -1;
    if (bind_container_dir(&nr, tr->ctree, "/proc", err) < 0 ||
        bind_container_dir(&nr, tr->ctree, "/dev", err) < 0 ||
        bind_container_dir(&nr, tr->ctree, "/sys", err) < 0)
        goto out;
    for (size_t i = 0; i < sizeof(etc_files) / sizeof(etc_files[0]); i++)
        if (bind_container_file(&nr, tr->ctree, etc_files[i], err) < 0)
            goto out;
    /* pivot_root(".", ".") stacks the old root on the new one; detach it. */
    if (fchdir(nr.root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0) {
        err_make(err, errno, "pivot_root into the tools");
        goto out;
    }
    if (umount2(".", MNT_DETACH) < 0 || chdir("/") < 0) {
        err_make(err, errno, "detach the old root");
        goto out;
    }
    r = 0;
out:
    close(nr.root);
    return r;
}

void attach_trees_close(struct attach_trees *tr)
{
    close_and_reset(&tr->tools);
    close_and_reset(&tr->ctree);
    free(tr->cwd);
    tr->cwd = NULL;
}
