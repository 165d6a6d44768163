/* The session's root: the tool set as `/`, the container's root at
 * /var/lib/cntr, and the container's /proc, /dev, /sys and a few /etc files
 * over the tools' own, in a mount namespace of the session's own. Neither
 * the container nor the tools directory change.
 *
 * Mounts are made two ways behind one interface (struct attach_newroot):
 * - with the new mount API on the default path (and in the VM agent):
 *   new filesystems with fsopen/fsmount, binds with open_tree
 *   (OPEN_TREE_CLONE), both attached with move_mount to an fd; the two
 *   trees are detached recursive clones, the container's taken from inside
 *   its mount namespace, made slaves so that nothing done here can
 *   propagate back (attach_rootfs_grab/build below);
 * - with plain mount(2) on the --fuse path (rootfs_fuse.c), which must work
 *   where the mount API cannot: mount(2) takes paths, so fds are named
 *   /proc/self/fd/N, looked up from the host's /proc (the working directory
 *   during the call: the container's /proc may be missing or no procfs).
 *
 * A mount point missing in the tools (/var/lib/cntr, usually) is never
 * created there: the deepest existing ancestor gets a tmpfs on top of it
 * holding bind mounts of that directory's entries (and copies of its
 * symlinks), and the missing directories are made in the tmpfs.
 *
 * Every path inside the container's tree is resolved with the symlink-safe
 * resolver (ns/path.c), with the container's root as `/`; the host's /proc,
 * /dev or /sys never show.
 *
 * (The VM agent links this file alone: it must not need the other files of
 * attach.) */
#include <dirent.h>
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

#include "attach/internal.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "ns/mount_api.h"
#include "ns/path.h"

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

/* A new detached mount of filesystem `type` with string options `opts`. */
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

static unsigned mount_attrs(unsigned long flags)
{
    return ((flags & MS_RDONLY) ? MOUNT_ATTR_RDONLY : 0) |
           ((flags & MS_NOSUID) ? MOUNT_ATTR_NOSUID : 0) |
           ((flags & MS_NODEV) ? MOUNT_ATTR_NODEV : 0) |
           ((flags & MS_NOEXEC) ? MOUNT_ATTR_NOEXEC : 0);
}

/* mount(2) with fds for the source (if src >= 0, else `source`) and the
 * target, named through the host's /proc. */
static int fd_mount(const struct attach_newroot *nr, int src, const char *source, int dst,
                    const char *type, unsigned long flags, const char *data)
{
    char s[32], d[32];
    snprintf(s, sizeof(s), "self/fd/%d", src);
    snprintf(d, sizeof(d), "self/fd/%d", dst);
    if (fchdir(nr->proc) < 0)
        return -1;
    return mount(src >= 0 ? s : source, d, type, flags, data);
}

/* mount(2) only: an fd of the topmost mount at `path` of the new root (a
 * lookup from the parent crosses every mount stacked there). */
static int reopen(const struct attach_newroot *nr, const char *path, struct err **err)
{
    if (strcmp(path, "/") != 0)
        return path_resolve_in_root(nr->root, path, PATH_NO_CREATE, "mount point", err);
    int fd = openat(nr->stage_parent, nr->stage, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return err_make(err, errno, "open the new root");
    return fd;
}

int attach_mount_new(const struct attach_newroot *nr, const char *type, const char *const *opts,
                     unsigned long flags, int dst, const char *dst_path, int *newfd,
                     struct err **err)
{
    if (newfd)
        *newfd = -1;
    if (nr->proc < 0) {
        cleanup_close int m = fs_new(type, opts, mount_attrs(flags), err);
        if (m < 0)
            return -1;
        if (sys_move_mount(m, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
            return err_make(err, errno, "mount a %s on %s", type, dst_path);
        if (newfd)
            *newfd = steal_fd(&m);
        return 0;
    }
    size_t len = 1;
    for (size_t i = 0; opts && opts[i]; i++)
        len += strlen(opts[i]) + 1;
    cleanup_free char *data = xcalloc(1, len);
    for (size_t i = 0; opts && opts[i]; i++) {
        if (i)
            strcat(data, ",");
        strcat(data, opts[i]);
    }
    if (fd_mount(nr, -1, type, dst, type, flags, data[0] ? data : NULL) < 0)
        return err_make(err, errno, "mount a %s on %s", type, dst_path);
    if (newfd) {
        *newfd = reopen(nr, dst_path, err);
        if (*newfd < 0)
            return -1;
    }
    return 0;
}

int attach_mount_bind(const struct attach_newroot *nr, int src, int dst, bool rec,
                      const char *what, struct err **err)
{
    if (nr->proc >= 0) {
        if (fd_mount(nr, src, NULL, dst, NULL, MS_BIND | (rec ? MS_REC : 0), NULL) < 0)
            return err_make(err, errno, "bind %s", what);
        return 0;
    }
    cleanup_close int tree = sys_open_tree(src, "", OPEN_TREE_CLONE | AT_EMPTY_PATH |
                                                        OPEN_TREE_CLOEXEC |
                                                        (rec ? AT_RECURSIVE : 0));
    if (tree < 0)
        return err_make(err, errno, "clone %s", what);
    if (sys_move_mount(tree, "", dst, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return err_make(err, errno, "bind %s", what);
    return 0;
}

/* Copy one entry of `orig` into the tmpfs at mfd: a bind mount of it for
 * directories and files, a copy for symlinks. */
static int shadow_entry(const struct attach_newroot *nr, int orig, int mfd, const char *name,
                        struct err **err)
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
    cleanup_close int src = openat(orig, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (src < 0)
        return err_make(err, errno, "open `%s` of the tools", name);
    cleanup_close int dst = openat(mfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (dst < 0)
        return err_make(err, errno, "open `%s` in the shadow tmpfs", name);
    cleanup_free char *what = xasprintf("`%s` of the tools", name);
    return attach_mount_bind(nr, src, dst, true, what, err);
}

/* Put a tmpfs over directory dirfd (at `path` of the tools) holding its
 * entries but `skip`; returns the tmpfs's fd. If dirfd is the root, the
 * tmpfs becomes the new root. */
static int shadow(struct attach_newroot *nr, int dirfd, const char *path, const char *skip,
                  struct err **err)
{
    cleanup_close int orig = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (orig < 0 || fstat(orig, &st) < 0)
        return err_make(err, errno, "open `%s` of the tools", path);
    char mode[32], uid[32], gid[32];
    snprintf(mode, sizeof(mode), "mode=%o", st.st_mode & 07777);
    snprintf(uid, sizeof(uid), "uid=%u", (unsigned)st.st_uid);
    snprintf(gid, sizeof(gid), "gid=%u", (unsigned)st.st_gid);
    const char *opts[] = {mode, uid, gid, "size=16m", NULL};
    cleanup_close int mfd = -1;
    if (attach_mount_new(nr, "tmpfs", opts, MS_NOSUID | MS_NODEV, dirfd, path, &mfd, err) < 0)
        return err_wrap(err, "shadow tmpfs");
    cleanup_dir DIR *d = fdopendir(dup(orig));
    if (d == NULL)
        return err_make(err, errno, "read `%s` of the tools", path);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, skip) == 0)
            continue;
        if (shadow_entry(nr, orig, mfd, de->d_name, err) < 0)
            return -1;
    }
    if (fstat(mfd, &st) == 0 && nr->n_shadows < sizeof(nr->shadows) / sizeof(nr->shadows[0]))
        nr->shadows[nr->n_shadows++] = st.st_dev;
    if (strcmp(path, "/") == 0) {
        close(nr->root);
        nr->root = fcntl(mfd, F_DUPFD_CLOEXEC, 0);
        if (nr->root < 0)
            return err_make(err, errno, "dup");
    }
    return steal_fd(&mfd);
}

int attach_mountpoint(struct attach_newroot *nr, const char *path, bool dir, struct err **err)
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
    bool ours = false;
    for (unsigned i = 0; i < nr->n_shadows; i++)
        ours |= nr->shadows[i] == st.st_dev;
    int cur;
    if (ours) { /* already a tmpfs of ours: make the rest in it */
        cur = steal_fd(&afd);
    } else {
        cleanup_free char *first = strndup(rest, strcspn(rest, "/"));
        cur = shadow(nr, afd, anc, first, err);
        if (cur < 0)
            return -1;
    }
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
                int e2 = errno;
                close(cur);
                return err_make(err, e2, "make mount point `%s`", path);
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

static const struct {
    const char *path;
    bool dir;
} shown[ATTACH_N_SHOWN] = {
    {"/proc", true},
    {"/dev", true},
    {"/sys", true},
    /* the container's users, hosts and resolver, named by the tools */
    {"/etc/hosts", false},
    {"/etc/resolv.conf", false},
    {"/etc/passwd", false},
    {"/etc/group", false},
    {"/etc/hostname", false},
};

/* Resolve `path` in the container's tree; -1 if it is missing or not of the
 * wanted type (a FIFO or device posing as /etc/passwd is not shown). */
static int container_path(int ctree, const char *path, bool dir)
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

void attach_shown_resolve(int ctree, struct attach_shown *s)
{
    for (size_t i = 0; i < ATTACH_N_SHOWN; i++) {
        s->dst[i] = -1;
        s->src[i] = container_path(ctree, shown[i].path, shown[i].dir);
        struct statfs sf;
        if (s->src[i] >= 0 && strcmp(shown[i].path, "/proc") == 0 &&
            (fstatfs(s->src[i], &sf) < 0 || sf.f_type != PROC_SUPER_MAGIC))
            close_and_reset(&s->src[i]); /* not a procfs: a new one instead */
    }
}

int attach_shown_mountpoints(struct attach_newroot *nr, struct attach_shown *s,
                             struct err **err)
{
    /* Make them all, then look them up again: the shadow tmpfs made for a
     * later one may cover an earlier one (binding it in the tmpfs). */
    bool want[ATTACH_N_SHOWN];
    for (size_t i = 0; i < ATTACH_N_SHOWN; i++) {
        want[i] = shown[i].dir || s->src[i] >= 0;
        if (!want[i])
            continue;
        cleanup_err struct err *e = NULL;
        int fd = attach_mountpoint(nr, shown[i].path, shown[i].dir, &e);
        if (fd >= 0) {
            close(fd);
        } else if (shown[i].dir) {
            *err = steal_pointer(&e);
            return -1;
        } else { /* e.g. a dangling symlink in the tools: the tools' file stays */
            log_debug("attach: %s not shown: %s", shown[i].path, e->msg);
            want[i] = false;
        }
    }
    for (size_t i = 0; i < ATTACH_N_SHOWN; i++) {
        if (!want[i])
            continue;
        s->dst[i] = path_resolve_in_root(nr->root, shown[i].path, PATH_NO_CREATE, "mount point",
                                         err);
        if (s->dst[i] < 0)
            return -1;
    }
    return 0;
}

int attach_shown_mount(const struct attach_newroot *nr, const struct attach_shown *s,
                       struct err **err)
{
    for (size_t i = 0; i < ATTACH_N_SHOWN; i++) {
        const char *path = shown[i].path;
        if (s->dst[i] < 0)
            continue;
        int r;
        if (s->src[i] >= 0) {
            cleanup_free char *what = xasprintf("the container's %s", path);
            r = attach_mount_bind(nr, s->src[i], s->dst[i], shown[i].dir, what, err);
        } else if (strcmp(path, "/proc") == 0) {
            r = attach_mount_new(nr, "proc", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC, s->dst[i],
                                 path, NULL, err);
        } else {
            const char *opts[] = {"mode=755", "size=4k", NULL};
            r = attach_mount_new(nr, "tmpfs", opts, MS_RDONLY | MS_NOSUID, s->dst[i], path, NULL,
                                 err);
        }
        if (r < 0)
            return -1;
    }
    return 0;
}

void attach_shown_close(struct attach_shown *s)
{
    for (size_t i = 0; i < ATTACH_N_SHOWN; i++) {
        close_and_reset(&s->src[i]);
        close_and_reset(&s->dst[i]);
    }
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
    struct attach_newroot nr = {.root = fcntl(tr->tools, F_DUPFD_CLOEXEC, 0), .proc = -1,
                                .stage_parent = -1};
    if (nr.root < 0)
        return err_make(err, errno, "dup");
    struct attach_shown sh;
    attach_shown_resolve(tr->ctree, &sh);
    int r = -1;
    int cntr = attach_mountpoint(&nr, ATTACH_CNTR_DIR, true, err);
    if (cntr < 0)
        goto out;
    r = sys_move_mount(tr->ctree, "", cntr, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    if (r < 0)
        err_make(err, errno, "mount the container's root at " ATTACH_CNTR_DIR);
    close(cntr);
    if (r < 0)
        goto out;
    r = -1;
    if (attach_shown_mountpoints(&nr, &sh, err) < 0 || attach_shown_mount(&nr, &sh, err) < 0)
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
    attach_shown_close(&sh);
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
