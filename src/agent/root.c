/* The container root's kernel file systems, mounted once at CREATE: proc,
 * sysfs (read-only) and a fresh /dev (tmpfs with the usual nodes bound from
 * the agent's /dev, a new devpts instance, /dev/shm). The root is
 * untrusted: its mount points are opened without following symlinks and
 * mounted on through /proc/self/fd. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/err.h"

#define FD_PATH_MAX 64

static void fd_path(char *buf, int fd, const char *leaf)
{
    snprintf(buf, FD_PATH_MAX, "/proc/self/fd/%d%s%s", fd, leaf ? "/" : "", leaf ? leaf : "");
}

/* Make the directory `name` of the root (one component) and open it
 * without following a symlink. Returns an O_PATH fd. */
static int mount_point(int rootfd, const char *name, struct err **err)
{
    if (mkdirat(rootfd, name, 0755) < 0 && errno != EEXIST)
        return err_make(err, errno, "create /%s in the container root", name);
    int fd = openat(rootfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOTDIR || errno == ELOOP)
            return err_make(err, 0, "/%s in the container root is not a directory (symlinks are "
                                    "refused)", name);
        return err_make(err, errno, "open /%s in the container root", name);
    }
    return fd;
}

/* Mount a file system of `type` on the directory `name` of the root. */
static int mount_in_root(int rootfd, const char *name, const char *type, unsigned long flags,
                         const char *data, struct err **err)
{
    cleanup_close int fd = mount_point(rootfd, name, err);
    if (fd < 0)
        return -1;
    char p[FD_PATH_MAX];
    fd_path(p, fd, NULL);
    if (mount(type, p, type, flags, data) < 0)
        return err_make(err, errno, "mount %s on /%s in the container root", type, name);
    return 0;
}

/* Open what is now mounted at `name` and check it is a file system of
 * `magic` (what we just mounted, not something swapped in). */
static int open_mounted(int dirfd, const char *name, long magic, struct err **err)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return err_make(err, errno, "open the container's %s", name);
    struct statfs sf;
    if (fstatfs(fd, &sf) < 0 || sf.f_type != magic) {
        close(fd);
        return err_make(err, EXDEV, "the container's %s is not the file system mounted there",
                        name);
    }
    return fd;
}

const char *const agent_dev_nodes[AGENT_N_DEV_NODES] = {"null", "zero", "full", "random",
                                                         "urandom", "tty"};

static const struct {
    const char *link, *target;
} dev_links[] = {
    {"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
    {"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
};

/* Fill the fresh tmpfs at devfd. */
static int populate_dev(int devfd, struct err **err)
{
    char p[FD_PATH_MAX], src[32];
    for (size_t i = 0; i < AGENT_N_DEV_NODES; i++) {
        const char *name = agent_dev_nodes[i];
        int f = openat(devfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
        if (f < 0)
            return err_make(err, errno, "create /dev/%s in the container", name);
        close(f);
        snprintf(src, sizeof(src), "/dev/%s", name);
        fd_path(p, devfd, name);
        if (mount(src, p, NULL, MS_BIND, NULL) < 0)
            return err_make(err, errno, "bind %s into the container", src);
    }
    if (mkdirat(devfd, "pts", 0755) < 0 || mkdirat(devfd, "shm", 01777) < 0)
        return err_make(err, errno, "create /dev/pts and /dev/shm in the container");
    fd_path(p, devfd, "pts");
    if (mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0)
        return err_make(err, errno, "mount devpts on /dev/pts in the container");
    fd_path(p, devfd, "shm");
    if (mount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k") < 0)
        return err_make(err, errno, "mount tmpfs on /dev/shm in the container");
    for (size_t i = 0; i < sizeof(dev_links) / sizeof(dev_links[0]); i++)
        if (symlinkat(dev_links[i].target, devfd, dev_links[i].link) < 0)
            return err_make(err, errno, "symlink /dev/%s in the container", dev_links[i].link);
    return 0;
}

int agent_root_setup(struct agent *a, struct err **err)
{
    if (a->root_ready)
        return 0;
    int rootfd = a->root_fd;
    if (mount_in_root(rootfd, "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err) < 0 ||
        mount_in_root(rootfd, "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
                      err) < 0 ||
        mount_in_root(rootfd, "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k",
                      err) < 0)
        return -1;
    cleanup_close int devfd = open_mounted(rootfd, "dev", TMPFS_MAGIC, err);
    if (devfd < 0 || populate_dev(devfd, err) < 0)
        return -1;
    a->pts_fd = open_mounted(devfd, "pts", DEVPTS_SUPER_MAGIC, err);
    if (a->pts_fd < 0)
        return -1;
    a->root_ready = true;
    return 0;
}
