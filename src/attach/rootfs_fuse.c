/* The session's root on the --fuse path (the seed's CntrFS): for kernels or
 * setups where the mount API path cannot work (no open_tree/move_mount, a
 * seccomp profile that forbids them, a tools mount that cannot be cloned),
 * the tools come from cocoon's FUSE server on the host (fuse_server.c) and
 * everything here is plain mount(2) and pivot_root(2):
 *
 * 1. enter the container's mount namespace and root, and unshare a private
 *    copy of it whose mounts are slaves (nothing propagates back);
 * 2. mount the FUSE file system on some directory of the container's root
 *    in that copy (the container's own directory is untouched: the copy's
 *    mount table is ours alone, and the FUSE mount moves away in 4.);
 * 3. make the mount points in it as the default path does (tmpfs shadows,
 *    rootfs.c);
 * 4. pivot_root into the FUSE mount with the old root, the container's root
 *    and all its mounts, going to /var/lib/cntr;
 * 5. show the container's /proc, /dev, /sys and /etc files (rootfs.c),
 *    resolved before anything was mounted.
 *
 * The FUSE mount lives only in the session's mount namespace; the server
 * holds the only /dev/fuse fd once it is mounted, so the connection ends
 * with the server. */
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
#include "common/util.h"
#include "ns/path.h"

#define FUSE_SUPER_MAGIC 0x65735546

int attach_fuse_grab(const struct attach_plan *p, struct attach_trees *tr, int *proc,
                     struct err **err)
{
    tr->tools = tr->ctree = -1;
    tr->cwd = NULL;
    /* The host's /proc: mount(2) names fds through it (the container may
     * have no procfs at /proc). */
    *proc = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct statfs sf;
    if (*proc < 0 || fstatfs(*proc, &sf) < 0 || sf.f_type != PROC_SUPER_MAGIC)
        return err_make(err, *proc < 0 ? errno : 0, "--fuse needs the host's /proc");
    /* The tools as the host sees them: the shell is looked up there. */
    tr->tools = fcntl(p->toolsfd, F_DUPFD_CLOEXEC, 0);
    if (tr->tools < 0)
        return err_make(err, errno, "dup");
    if (setns(p->t->pidfd, CLONE_NEWNS) < 0)
        return err_make(err, errno, "join the mount namespace of %s", p->t->what);
    if (fchdir(p->t->rootfd) < 0 || chroot(".") < 0)
        return err_make(err, errno, "enter the root of %s", p->t->what);
    char cwd[4096];
    ssize_t n = readlinkat(p->t->procfd, "cwd", cwd, sizeof(cwd) - 1);
    if (n > 0 && cwd[0] == '/') {
        cwd[n] = '\0';
        tr->cwd = xstrdup(cwd);
    }
    if (unshare(CLONE_NEWNS) < 0)
        return err_make(err, errno, "new mount namespace");
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
        return err_make(err, errno, "make our mounts slaves");
    tr->ctree = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (tr->ctree < 0)
        return err_make(err, errno, "open the root of %s", p->t->what);
    return 0;
}

/* A directory of the container's root to mount the tools on for a moment
 * (a new string): a usual one, else the first directory found. */
static char *stage_dir(int ctree, struct err **err)
{
    static const char *const usual[] = {"tmp", "mnt", "run", "opt", "srv", "home", "media",
                                        "root", "var", "usr", "bin", "lib", "sbin"};
    struct stat st;
    for (size_t i = 0; i < sizeof(usual) / sizeof(usual[0]); i++)
        if (fstatat(ctree, usual[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
            return xstrdup(usual[i]);
    cleanup_dir DIR *d = fdopendir(openat(ctree, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (fstatat(ctree, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
            return xstrdup(de->d_name);
    }
    err_make(err, 0, "--fuse: the container's root has no directory to mount the tools on");
    return NULL;
}

/* Mount the FUSE connection of *dev on directory `stage` of the container's
 * root, then let the server serve: a byte on *ready. Both are closed then:
 * the server holds the only /dev/fuse fd, so that the connection ends with
 * it (a request of ours would otherwise wait for a dead server forever). */
static int mount_tools(const struct attach_plan *p, const struct attach_trees *tr, int proc,
                       const char *stage, int *dev, int *ready, struct err **err)
{
    cleanup_close int dir = openat(tr->ctree, stage, O_PATH | O_DIRECTORY | O_NOFOLLOW |
                                                         O_CLOEXEC);
    if (dir < 0)
        return err_make(err, errno, "open `/%s` of the container", stage);
    cleanup_free char *data = xasprintf("fd=%d,rootmode=%o,user_id=0,group_id=0,"
                                        "default_permissions,allow_other", *dev, S_IFDIR);
    char target[32];
    snprintf(target, sizeof(target), "self/fd/%d", dir);
    if (fchdir(proc) < 0 ||
        mount(p->tools_path, target, "fuse.cocoon", MS_NODEV, data) < 0) {
        if (errno == ENODEV)
            return err_make(err, errno, "--fuse: the kernel offers no FUSE file system");
        return err_make(err, errno, "mount the tools through FUSE");
    }
    close_and_reset(dev);
    /* The server may read /dev/fuse now (it cannot before the mount). */
    if (write(*ready, "m", 1) != 1)
        return err_make(err, errno, "start the FUSE server");
    close_and_reset(ready);
    return 0;
}

int attach_fuse_build(const struct attach_plan *p, const struct attach_trees *tr, int proc,
                      struct err **err)
{
    cleanup_close int dev = p->fuse_dev, ready = p->fuse_ready;
    struct attach_shown sh;
    attach_shown_resolve(tr->ctree, &sh);
    cleanup_free char *stage = stage_dir(tr->ctree, err);
    struct attach_newroot nr = {.root = -1, .proc = proc, .stage_parent = tr->ctree,
                                .stage = stage};
    int cntr = -1, r = -1;
    if (stage == NULL || mount_tools(p, tr, proc, stage, &dev, &ready, err) < 0)
        goto out;
    /* A lookup crosses the mounts stacked on the directory: the tools. */
    nr.root = openat(tr->ctree, stage, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct statfs sf;
    if (nr.root < 0 || fstatfs(nr.root, &sf) < 0) {
        err_make(err, errno, "open the tools through FUSE");
        goto out;
    }
    if (sf.f_type != FUSE_SUPER_MAGIC) {
        err_make(err, 0, "open the tools through FUSE: `/%s` is not the FUSE mount", stage);
        goto out;
    }
    cntr = attach_mountpoint(&nr, ATTACH_CNTR_DIR, true, err);
    if (cntr < 0 || attach_shown_mountpoints(&nr, &sh, err) < 0)
        goto out;
    /* Again: a shadow made for /proc, /dev... may cover the first one. */
    close(cntr);
    cntr = path_resolve_in_root(nr.root, ATTACH_CNTR_DIR, PATH_NO_CREATE, "mount point", err);
    if (cntr < 0)
        goto out;
    char newroot[32], putold[32];
    snprintf(newroot, sizeof(newroot), "self/fd/%d", nr.root);
    snprintf(putold, sizeof(putold), "self/fd/%d", cntr);
    if (fchdir(proc) < 0 || syscall(SYS_pivot_root, newroot, putold) < 0) {
        err_make(err, errno, "pivot_root into the tools (the container's root to %s)",
                 ATTACH_CNTR_DIR);
        goto out;
    }
    if (attach_shown_mount(&nr, &sh, err) < 0)
        goto out;
    if (chdir("/") < 0) {
        err_make(err, errno, "chdir /");
        goto out;
    }
    r = 0;
out:
    if (cntr >= 0)
        close(cntr);
    if (nr.root >= 0)
        close(nr.root);
    attach_shown_close(&sh);
    return r;
}
