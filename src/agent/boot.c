/* cocoon-init's start-up: as a VM's PID 1 (kernel file systems, cocoon.*
 * parameters of the kernel command line, the container root from
 * virtio-fs or an erofs/ext4 image, the vsock or virtio-console channel),
 * or as PID 1 of a namespace sandbox on a host (tests, the sandbox
 * "hypervisor"); and the way out of both: power off. */
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"

#define CMDLINE_MAX 4096
#define PARAM_MAX 256
#define DEVICE_WAIT_MS 2000 /* for the root device or channel tty to appear */

#define RUN_DIR "/run/cocoon"
#define ROOTFS_DIR RUN_DIR "/rootfs"
#define LOWER_DIR RUN_DIR "/lower"
#define SHARED_DIR RUN_DIR "/shared" /* tools for attach, put there by the host */
#define VOLUMES_DIR RUN_DIR "/volumes" /* bind mounts' sources, cloned there by the host */
#define RW_DIR RUN_DIR "/rw"

void agent_init(struct agent *a)
{
    memset(a, 0, sizeof(*a));
    a->listen_fd = a->chan = a->sig_fd = a->root_fd = a->pts_fd = a->shared_fd = -1;
    a->volumes_fd = -1;
}

/* The cocoon.* parameters of the kernel command line. */
struct boot_params {
    char channel[PARAM_MAX];   /* cocoon.channel: a tty path or vsock:PORT */
    char root[PARAM_MAX];      /* cocoon.root: a block device or virtio-fs tag */
    char fstype[PARAM_MAX];    /* cocoon.rootfstype: erofs, ext4 or virtiofs */
    char flags[PARAM_MAX];     /* cocoon.rootflags: mount data (e.g. dax) */
    bool overlay;              /* cocoon.overlay=1 */
    char shared[PARAM_MAX];    /* cocoon.shared: the virtio-fs tag of the host's share */
    char volumes[PARAM_MAX];   /* cocoon.volumes: the virtio-fs tag of bind mounts' sources */
};

static int mkdir_p(const char *path, mode_t mode, struct err **err)
{
    char buf[PARAM_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *s = buf + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return err_make(err, errno, "create %s", buf);
        if (c == '\0')
            return 0;
        *s = c;
    }
}

/* Mount a file system on dir (created if missing); EBUSY (the kernel
 * mounted it already, as devtmpfs may be) is fine. */
static int mount_at(const char *src, const char *dir, const char *type, unsigned long flags,
                    const char *data, struct err **err)
{
    if (mkdir_p(dir, 0755, err) < 0)
        return -1;
    if (mount(src, dir, type, flags, data) < 0 && errno != EBUSY)
        return err_make(err, errno, "mount %s on %s", type, dir);
    return 0;
}

/* Mount the virtio-fs share `tag` (named by boot parameter `param`) on dir
 * and keep an O_PATH fd of it in *fd. */
static int mount_share(const char *tag, const char *dir, const char *param, int *fd,
                       struct err **err)
{
    if (mount_at(tag, dir, "virtiofs", MS_NOSUID | MS_NODEV, NULL, err) < 0)
        return err_wrap(err, "%s=%s", param, tag);
    *fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0)
        return err_make(err, errno, "open %s", dir);
    return 0;
}

/* Make sure fds 0-2 are open (the kernel gives PID 1 /dev/console only if
 * it can open it), so that no later descriptor lands there. */
static void stdio_ensure(const char *dev)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0)
            continue;
        int f = open(dev, O_RDWR | O_NOCTTY);
        if (f < 0)
            f = open("/dev/null", O_RDWR);
        if (f >= 0 && f != fd) {
            dup2(f, fd);
            close(f);
        }
    }
}

/* Copy the value of `key` from a command line word, if the word is it. */
static bool param(const char *word, size_t len, const char *key, char *out)
{
    size_t k = strlen(key);
    if (len <= k || strncmp(word, key, k) != 0)
        return false;
    size_t n = len - k;
    if (n >= PARAM_MAX)
        n = PARAM_MAX - 1;
    memcpy(out, word + k, n);
    out[n] = '\0';
    return true;
}

static int read_params(struct boot_params *bp, struct err **err)
{
    memset(bp, 0, sizeof(*bp));
    cleanup_free char *cmdline = NULL;
    size_t len = 0;
    if (read_file_at(AT_FDCWD, "/proc/cmdline", CMDLINE_MAX, &cmdline, &len, err) < 0)
        return -1;
    char overlay[PARAM_MAX] = "";
    for (char *s = cmdline; *s;) {
        while (*s == ' ' || *s == '\t' || *s == '\n')
            s++;
        size_t n = strcspn(s, " \t\n");
        if (n == 0)
            break;
        if (!param(s, n, "cocoon.channel=", bp->channel) &&
            !param(s, n, "cocoon.root=", bp->root) &&
            !param(s, n, "cocoon.rootfstype=", bp->fstype) &&
            !param(s, n, "cocoon.rootflags=", bp->flags) &&
            !param(s, n, "cocoon.shared=", bp->shared) &&
            !param(s, n, "cocoon.volumes=", bp->volumes))
            param(s, n, "cocoon.overlay=", overlay);
        s += n;
    }
    bp->overlay = strcmp(overlay, "1") == 0 || strcmp(overlay, "yes") == 0;
    if (bp->channel[0] == '\0')
        snprintf(bp->channel, sizeof(bp->channel), "vsock:%u", AGENT_VSOCK_PORT);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Wait a little for a device node that the kernel may still be probing. */
static void wait_for_node(const char *path)
{
    for (int t = 0; t < DEVICE_WAIT_MS && access(path, F_OK) < 0; t += 10)
        sleep_ms(10);
}

/* The container root at ROOTFS_DIR: the file system named by cocoon.root,
 * directly, or read-only under an overlay with a tmpfs upper layer. */
static int mount_root(const struct boot_params *bp, struct err **err)
{
    if (bp->root[0] == '\0')
        return err_make(err, 0, "no container root: the kernel command line has no "
                                "cocoon.root= (a block device or a virtio-fs tag)");
    bool dev = str_has_prefix(bp->root, "/dev/");
    const char *type = bp->fstype[0] ? bp->fstype : dev ? "ext4" : "virtiofs";
    if (strcmp(type, "erofs") != 0 && strcmp(type, "ext4") != 0 && strcmp(type, "virtiofs") != 0)
        return err_make(err, 0, "cocoon.rootfstype=%s: not erofs, ext4 or virtiofs", type);
    if (strcmp(type, "virtiofs") == 0 ? dev : !dev)
        return err_make(err, 0, "cocoon.root=%s does not suit cocoon.rootfstype=%s "
                                "(a /dev/ node for erofs and ext4, a tag for virtiofs)",
                        bp->root, type);
    bool overlay = bp->overlay || strcmp(type, "erofs") == 0;
    if (dev)
        wait_for_node(bp->root);
    const char *target = overlay ? LOWER_DIR : ROOTFS_DIR;
    if (mkdir_p(target, 0755, err) < 0)
        return -1;
    if (mount(bp->root, target, type, overlay ? MS_RDONLY : 0,
              bp->flags[0] ? bp->flags : NULL) < 0)
        return err_make(err, errno, "mount the container root %s (%s%s%s) on %s", bp->root,
                        type, bp->flags[0] ? ", " : "", bp->flags, target);
    if (!overlay)
        return 0;
    if (mount_at("cocoon-rw", RW_DIR, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755", err) < 0 ||
        mkdir_p(RW_DIR "/upper", 0755, err) < 0 || mkdir_p(RW_DIR "/work", 0755, err) < 0 ||
        mkdir_p(ROOTFS_DIR, 0755, err) < 0)
        return -1;
    if (mount("overlay", ROOTFS_DIR, "overlay", 0,
              "lowerdir=" LOWER_DIR ",upperdir=" RW_DIR "/upper,workdir=" RW_DIR "/work") < 0)
        return err_make(err, errno, "mount the overlay of the container root on " ROOTFS_DIR);
    return 0;
}

static int open_vsock(struct agent *a, const char *port_s, struct err **err)
{
    uint64_t port;
    if (parse_u64(port_s, UINT32_MAX, &port) < 0)
        return err_make(err, 0, "cocoon.channel=vsock:%s: not a port number", port_s);
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return err_make(err, errno, "vsock socket (is virtio-vsock in the guest kernel?)");
    struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
                             .svm_port = (unsigned)port};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
        int e = errno;
        close(fd);
        return err_make(err, e, "listen on vsock port %llu", (unsigned long long)port);
    }
    a->listen_fd = fd;
    return 0;
}

static int open_tty(struct agent *a, const char *path, struct err **err)
{
    wait_for_node(path);
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return err_make(err, errno, "cocoon.channel=%s", path);
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        t.c_cc[VMIN] = 1;
        t.c_cc[VTIME] = 0;
        if (tcsetattr(fd, TCSANOW, &t) < 0) {
            int e = errno;
            close(fd);
            return err_make(err, e, "raw mode on %s", path);
        }
    }
    a->chan = fd;
    return 0;
}

int agent_boot_vm(struct agent *a, struct err **err)
{
    a->vm = true;
    umask(022);
    /* /dev first: the console for our messages, before any other fd. */
    if (mount_at("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755", err) < 0)
        return -1;
    stdio_ensure("/dev/console");
    if (mount_at("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err) < 0 ||
        mount_at("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err) < 0 ||
        mount_at("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                 "newinstance,ptmxmode=0666,mode=0620,gid=5", err) < 0 ||
        mount_at("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", err) < 0 ||
        mount_at("run", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755", err) < 0)
        return err_wrap(err, "guest file systems");
    struct boot_params bp;
    if (read_params(&bp, err) < 0)
        return -1;
    if (mount_root(&bp, err) < 0)
        return -1;
    a->root_fd = open(ROOTFS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (a->root_fd < 0)
        return err_make(err, errno, "open the container root " ROOTFS_DIR);
    if (bp.shared[0] && mount_share(bp.shared, SHARED_DIR, "cocoon.shared", &a->shared_fd, err) < 0)
        return -1;
    if (bp.volumes[0] &&
        mount_share(bp.volumes, VOLUMES_DIR, "cocoon.volumes", &a->volumes_fd, err) < 0)
        return -1;
    if (str_has_prefix(bp.channel, "vsock:"))
        return open_vsock(a, bp.channel + 6, err);
    if (bp.channel[0] != '/')
        return err_make(err, 0, "cocoon.channel=%s: neither vsock:PORT nor a tty path",
                        bp.channel);
    return open_tty(a, bp.channel, err);
}

/* The mount namespace of a process, as an inode number of its ns file. */
static int mnt_ns_of(const char *path, ino_t *out)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    *out = st.st_ino;
    return 0;
}

/* Where the host mode builds its own small root before pivoting into it. */
#define STAGE_DIR "/tmp"

/* The host mode's world, as a VM's: a tmpfs root with /dev (the nodes the
 * container's /dev binds), a fresh /proc, and the container root bound at
 * ROOTFS_DIR. The host's tree is detached: a process that breaks out of
 * the container's chroot finds this tmpfs, not the host. */
static int host_world(int rootfd, int volfd, struct err **err)
{
    if (mount("cocoon-init", STAGE_DIR, "tmpfs", MS_NOSUID, "mode=755,size=1m") < 0)
        return err_make(err, errno, "mount a tmpfs on " STAGE_DIR);
    if (mkdir_p(STAGE_DIR "/dev", 0755, err) < 0 || mkdir_p(STAGE_DIR "/proc", 0555, err) < 0 ||
        mkdir_p(STAGE_DIR ROOTFS_DIR, 0755, err) < 0 ||
        mkdir_p(STAGE_DIR SHARED_DIR, 0700, err) < 0 ||
        mkdir_p(STAGE_DIR VOLUMES_DIR, 0700, err) < 0 ||
        mkdir_p(STAGE_DIR "/oldroot", 0700, err) < 0)
        return -1;
    char src[64], dst[64];
    for (size_t i = 0; i < AGENT_N_DEV_NODES; i++) {
        snprintf(src, sizeof(src), "/dev/%s", agent_dev_nodes[i]);
        snprintf(dst, sizeof(dst), STAGE_DIR "/dev/%s", agent_dev_nodes[i]);
        int f = open(dst, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
        if (f < 0)
            return err_make(err, errno, "create %s", dst);
        close(f);
        if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
            return err_make(err, errno, "bind %s", src);
    }
    snprintf(src, sizeof(src), "/proc/self/fd/%d", rootfd);
    if (mount(src, STAGE_DIR ROOTFS_DIR, NULL, MS_BIND | MS_REC, NULL) < 0)
        return err_make(err, errno, "bind the container root");
    snprintf(src, sizeof(src), "/proc/self/fd/%d", volfd);
    if (volfd >= 0 && mount(src, STAGE_DIR VOLUMES_DIR, NULL, MS_BIND | MS_REC, NULL) < 0)
        return err_make(err, errno, "bind the volume share");
    if (syscall(SYS_pivot_root, STAGE_DIR, STAGE_DIR "/oldroot") < 0)
        return err_make(err, errno, "pivot_root");
    if (chdir("/") < 0 || umount2("/oldroot", MNT_DETACH) < 0)
        return err_make(err, errno, "detach the host's tree");
    rmdir("/oldroot");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return err_make(err, errno, "mount a fresh /proc");
    return 0;
}

int agent_boot_host(struct agent *a, int chan_fd, const char *root, const char *hostname,
                    const char *volumes, struct err **err)
{
    a->vm = false;
    /* kill(-1) and mounts below are only harmless in our own namespaces. */
    if (getpid() != 1)
        return err_make(err, 0, "not PID 1 of its own pid namespace: run it under "
                                "`unshare --mount --pid --uts --ipc --fork`");
    /* Unless /proc is already ours (unshare --mount-proc), its 1 is the
     * host's init: we must not share its mount namespace. */
    char self_pid[16] = "";
    ino_t self, host;
    if (readlink("/proc/self", self_pid, sizeof(self_pid) - 1) > 0 && strcmp(self_pid, "1") != 0 &&
        mnt_ns_of("/proc/self/ns/mnt", &self) == 0 && mnt_ns_of("/proc/1/ns/mnt", &host) == 0 &&
        self == host)
        return err_make(err, 0, "in the host's mount namespace: run it with unshare --mount");
    if (fcntl(chan_fd, F_GETFD) < 0)
        return err_make(err, errno, "--channel-fd %d", chan_fd);
    stdio_ensure("/dev/null");
    umask(022);
    cleanup_close int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return err_make(err, errno, "--root `%s`", root);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return err_make(err, errno, "make the mount tree private");
    /* Opened before STAGE_DIR's tmpfs may hide it (the state is often in /tmp). */
    cleanup_close int volfd = -1;
    if (volumes && *volumes) {
        volfd = open(volumes, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (volfd < 0)
            return err_make(err, errno, "--volumes `%s`", volumes);
    }
    if (host_world(rootfd, volfd, err) < 0)
        return err_wrap(err, "the agent's own root");
    a->root_fd = open(ROOTFS_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (a->root_fd < 0)
        return err_make(err, errno, "open the container root " ROOTFS_DIR);
    /* The host mounts attach tools here from outside (setns into our mount
     * namespace: cocoon's sandbox hypervisor). */
    a->shared_fd = open(SHARED_DIR, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (a->shared_fd < 0)
        return err_make(err, errno, "open " SHARED_DIR);
    if (volfd >= 0) {
        a->volumes_fd = open(VOLUMES_DIR, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (a->volumes_fd < 0)
            return err_make(err, errno, "open " VOLUMES_DIR);
    }
    if (hostname && *hostname && sethostname(hostname, strlen(hostname)) < 0)
        return err_make(err, errno, "--hostname `%s`", hostname);
    int fl = fcntl(chan_fd, F_GETFL);
    if (fl < 0 || fcntl(chan_fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(chan_fd, F_SETFD, FD_CLOEXEC) < 0)
        return err_make(err, errno, "--channel-fd %d", chan_fd);
    a->chan = chan_fd;
    return 0;
}

int agent_power_off(const struct agent *a, int status)
{
    /* Only as PID 1 is kill(-1) confined to the container's processes. */
    if (getpid() == 1)
        kill(-1, SIGKILL);
    if (a->vm && getpid() == 1) {
        sync();
        /* Without ACPI (cocoon's VMM, qemu microvm) the kernel cannot power
         * off and would only halt: there a reboot (reboot=k) is what the
         * VMM turns into the VM's exit. */
        reboot(access("/sys/firmware/acpi", F_OK) == 0 ? RB_POWER_OFF : RB_AUTOBOOT);
        return -1;
    }
    exit(status);
}
