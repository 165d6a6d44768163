/* The /dev/fuse transport: mount(2) a "fuse.cocoon" filesystem on a
 * directory and serve it with a pool of workers, each reading its own clone
 * of the /dev/fuse fd (FUSE_DEV_IOC_CLONE). SIGTERM/SIGINT unmount; the
 * mount going away (read fails with ENODEV) ends the server. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "fs/dev_uring.h"
#include "fs/fs_internal.h"

#define FUSE_SUPER_MAGIC 0x65735546
#define MAX_WORKERS 64

struct server {
    struct fs_session *s;
    int devfd;
    int donefd; /* eventfd: a worker saw the mount go away */
    pthread_mutex_t lock;
    unsigned workers, idle;
    int fatal; /* first unexpected errno of a worker */
    atomic_bool spinning; /* one idle worker polls before sleeping */
    unsigned spin_us;
    bool uring_wanted;          /* serve over io_uring once INIT is done */
    atomic_bool uring_started;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Clone the session's /dev/fuse fd (FUSE_DEV_IOC_CLONE): -1 on failure. */
static int clone_dev(const struct server *sv, bool nonblock)
{
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC | (nonblock ? O_NONBLOCK : 0));
    uint32_t master = (uint32_t)sv->devfd;
    if (fd >= 0 && ioctl(fd, FUSE_DEV_IOC_CLONE, &master) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Read one request; *from gets the fd it came from (replies must go to the
 * same clone: each has its own list of requests in processing). A wake-up costs tens of microseconds on a virtualized
 * host, so one idle worker at a time polls its non-blocking fd for spin_us
 * before the workers sleep in read(2). */
static ssize_t read_request(struct server *sv, int bfd, int nfd, void *buf, size_t len,
                            int *from)
{
    *from = nfd;
    if (nfd >= 0 && sv->spin_us > 0) {
        ssize_t n = read(nfd, buf, len);
        if (n >= 0 || errno != EAGAIN)
            return n;
        if (!atomic_exchange(&sv->spinning, true)) {
            uint64_t end = now_ns() + sv->spin_us * 1000ull;
            do {
                n = read(nfd, buf, len);
                if (n >= 0 || errno != EAGAIN)
                    break;
                __builtin_ia32_pause();
            } while (now_ns() < end);
            atomic_store(&sv->spinning, false);
            if (n >= 0 || errno != EAGAIN)
                return n;
        }
    }
    *from = bfd;
    return read(bfd, buf, len);
}

static int backing_open(void *ctx, int fd)
{
    struct server *sv = ctx;
    struct fs_backing_map map = {.fd = fd};
    int id = ioctl(sv->devfd, FS_DEV_IOC_BACKING_OPEN, &map);
    return id < 0 ? -errno : id;
}

static void backing_close(void *ctx, int id)
{
    struct server *sv = ctx;
    uint32_t v = (uint32_t)id;
    ioctl(sv->devfd, FS_DEV_IOC_BACKING_CLOSE, &v);
}

static int spawn_worker(struct server *sv);

/* A worker or io_uring queue thread has stopped: serve() counts it. */
static void worker_ended(void *ctx)
{
    struct server *sv = ctx;
    uint64_t one = 1;
    if (write(sv->donefd, &one, sizeof(one)) < 0) {
        /* the eventfd cannot fail to count one */
    }
}

/* After INIT: the io_uring queues, counted as workers. */
static void start_uring(struct server *sv)
{
    unsigned n = fs_uring_queues();
    pthread_mutex_lock(&sv->lock);
    sv->workers += n;
    pthread_mutex_unlock(&sv->lock);
    unsigned got = fs_uring_start(sv->s, sv->devfd, worker_ended, sv);
    pthread_mutex_lock(&sv->lock);
    sv->workers -= n - got;
    pthread_mutex_unlock(&sv->lock);
    log_debug("fs: %u of %u io_uring queues started", got, n);
}

/* One worker: read a request, handle it, write the reply, until ENODEV. */
static void *worker_main(void *arg)
{
    struct server *sv = arg;
    int fd = clone_dev(sv, false);
    int nfd = sv->spin_us ? clone_dev(sv, true) : -1;
    if (fd < 0)
        fd = sv->devfd; /* share the master fd: still correct, less parallel */
    size_t insize = fs_session_bufsize(sv->s);
    size_t outsize = insize + 4096;
    char *in = malloc(insize), *out = malloc(outsize);
    int err = 0;
    while (in && out) {
        int from;
        ssize_t n = read_request(sv, fd, nfd, in, insize, &from);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ENOENT)
                continue;
            if (errno != ENODEV)
                err = errno;
            break;
        }
        /* No idle worker left: start one, so that a blocked request (a
         * lock wait) never stalls the whole mount. */
        pthread_mutex_lock(&sv->lock);
        bool more = --sv->idle == 0 && sv->workers < MAX_WORKERS;
        pthread_mutex_unlock(&sv->lock);
        if (more)
            spawn_worker(sv);
        struct iovec iov = {out, outsize};
        ssize_t len = fs_session_handle(sv->s, in, (size_t)n, &iov, 1);
        if (len > 0 && write(from, out, (size_t)len) < 0 && errno != ENOENT && errno != ENODEV)
            log_debug("fs: reply: %s", strerror(errno));
        /* The INIT reply is in: the ring may register now. */
        if (sv->uring_wanted && atomic_load(&sv->s->initialized) &&
            !atomic_exchange(&sv->uring_started, true))
            start_uring(sv);
        pthread_mutex_lock(&sv->lock);
        sv->idle++;
        pthread_mutex_unlock(&sv->lock);
    }
    free(in);
    free(out);
    if (fd != sv->devfd)
        close(fd);
    if (nfd >= 0)
        close(nfd);
    pthread_mutex_lock(&sv->lock);
    if (err && !sv->fatal)
        sv->fatal = err;
    sv->idle--;
    pthread_mutex_unlock(&sv->lock);
    worker_ended(sv);
    return NULL;
}

static int spawn_worker(struct server *sv)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 256 * 1024);
    pthread_mutex_lock(&sv->lock);
    sv->workers++;
    sv->idle++;
    pthread_mutex_unlock(&sv->lock);
    pthread_t t;
    int e = pthread_create(&t, &a, worker_main, sv);
    pthread_attr_destroy(&a);
    if (e) {
        pthread_mutex_lock(&sv->lock);
        sv->workers--;
        sv->idle--;
        pthread_mutex_unlock(&sv->lock);
        errno = e;
        return -1;
    }
    return 0;
}

/* Unmount dir: normally, else lazily (busy: served until its users go). */
static int unmount_dir(const char *dir)
{
    if (dir[0] == '\0')
        return 0; /* fs_serve_fd: another process made the mount */
    if (umount2(dir, UMOUNT_NOFOLLOW) == 0)
        return 0;
    if (errno == EBUSY)
        return umount2(dir, MNT_DETACH | UMOUNT_NOFOLLOW);
    return -1;
}

/* Serve until the mount is gone or a signal asks to unmount. */
static int serve(struct server *sv, const char *dir, unsigned threads, const sigset_t *sigs,
                 struct err **err)
{
    cleanup_close int sfd = signalfd(-1, sigs, SFD_CLOEXEC);
    if (sfd < 0)
        return err_make(err, errno, "fs: signalfd");
    for (unsigned i = 0; i < threads; i++) {
        if (spawn_worker(sv) < 0) {
            int e = errno;
            unmount_dir(dir);
            return err_make(err, e, "fs: start worker");
        }
    }
    bool unmounted = false;
    for (;;) {
        struct pollfd p[2] = {{sfd, POLLIN, 0}, {sv->donefd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return err_make(err, errno, "fs: poll");
        }
        if (p[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == sizeof(si) && !unmounted) {
                log_debug("fs: signal %u: unmounting %s", si.ssi_signo, dir);
                if (unmount_dir(dir) < 0 && errno != EINVAL && errno != ENOENT)
                    return err_make(err, errno, "fs: unmount `%s`", dir);
                unmounted = true;
            }
        }
        if (p[1].revents & POLLIN) {
            uint64_t v;
            if (read(sv->donefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                return err_make(err, errno, "fs: eventfd");
            pthread_mutex_lock(&sv->lock);
            sv->workers -= (unsigned)v;
            unsigned left = sv->workers;
            int fatal = sv->fatal;
            pthread_mutex_unlock(&sv->lock);
            if (fatal && !unmounted) {
                unmount_dir(dir);
                return err_make(err, fatal, "fs: read /dev/fuse");
            }
            /* One ENODEV means the connection is gone; the rest follow. */
            if (left == 0)
                return 0;
        }
    }
}

static int check_args(const char *src, const char *dir, int *srcfd, struct stat *st,
                      struct err **err)
{
    *srcfd = open(src, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*srcfd < 0)
        return err_make(err, errno, "fs mount: source `%s`", src);
    if (fstat(*srcfd, st) < 0)
        return err_make(err, errno, "fs mount: source `%s`", src);
    struct stat dst;
    if (stat(dir, &dst) < 0)
        return err_make(err, errno, "fs mount: mount point `%s`", dir);
    if (!S_ISDIR(dst.st_mode))
        return err_make(err, ENOTDIR, "fs mount: mount point `%s`", dir);
    return 0;
}

/* Raise the soft RLIMIT_NOFILE to the hard one: the session keeps the fds
 * of idle inodes within a budget derived from it (the rest is reopened from
 * file handles), so more fds mean fewer reopens. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* A server for the connection devfd, with a session on the directory rootfd. */
static int server_init(struct server *sv, int devfd, int rootfd, const struct fs_options *o,
                       struct err **err)
{
    *sv = (struct server){.devfd = devfd, .donefd = -1, .spin_us = o->spin_us,
                          .uring_wanted = o->uring && fs_uring_available()};
    pthread_mutex_init(&sv->lock, NULL);
    struct fs_transport tr = {sv, backing_open, backing_close};
    return fs_session_new(rootfd, o, &tr, &sv->s, err);
}

/* After serve(): free the session, unless workers still run (a fatal error
 * path: the process exits with them). */
static void server_release(struct server *sv)
{
    pthread_mutex_lock(&sv->lock);
    unsigned left = sv->workers;
    pthread_mutex_unlock(&sv->lock);
    if (left == 0) {
        fs_session_free(sv->s);
        if (sv->donefd >= 0)
            close(sv->donefd);
    }
}

int fs_mount_serve(const char *src, const char *dir, const struct fs_options *o, bool daemon,
                   struct err **err)
{
    cleanup_close int srcfd = -1;
    struct stat st;
    if (check_args(src, dir, &srcfd, &st, err) < 0)
        return -1;
    raise_nofile();
    cleanup_close int devfd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (devfd < 0)
        return err_make(err, errno, "fs mount: open /dev/fuse");
    struct server sv;
    if (server_init(&sv, devfd, srcfd, o, err) < 0)
        return err_wrap(err, "fs mount");
    cleanup_free char *data = xasprintf(
        "fd=%d,rootmode=%o,user_id=0,group_id=0,default_permissions%s", devfd,
        st.st_mode & S_IFMT, o->allow_other ? ",allow_other" : "");
    unsigned long flags = (o->dev ? 0 : MS_NODEV) | (o->suid ? 0 : MS_NOSUID) |
                          (o->readonly ? MS_RDONLY : 0);
    if (mount(src, dir, "fuse.cocoon", flags, data) < 0) {
        int e = errno;
        fs_session_free(sv.s);
        return err_make(err, e, "fs mount: mount `%s` on `%s`", src, dir);
    }
    /* Signals unmount; block them in every thread (the workers inherit). */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    if (daemon) {
        pid_t pid = fork();
        if (pid < 0) {
            int e = errno;
            unmount_dir(dir);
            fs_session_free(sv.s);
            return err_make(err, e, "fs mount: fork");
        }
        if (pid > 0) {
            fs_session_free(sv.s);
            return 0; /* the child serves; requests wait in the kernel */
        }
        setsid();
        /* /proc/self/fd was resolved to the parent's pid: open ours. */
        int proc = open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (proc < 0) {
            unmount_dir(dir);
            _exit(1);
        }
        dup3(proc, sv.s->proc_fd, O_CLOEXEC);
        close(proc);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            close(null);
        }
    }
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    sv.donefd = eventfd(0, EFD_CLOEXEC);
    int r;
    if (sv.donefd < 0) {
        unmount_dir(dir);
        r = err_make(err, errno, "fs: eventfd");
    } else {
        r = serve(&sv, dir, o->threads ? o->threads : 1, &sigs, err);
    }
    server_release(&sv);
    if (daemon)
        _exit(r < 0 ? 1 : 0);
    return r;
}

int fs_serve_fd(int devfd, int rootfd, const struct fs_options *o, struct err **err)
{
    raise_nofile();
    struct server sv;
    if (server_init(&sv, devfd, rootfd, o, err) < 0)
        return err_wrap(err, "fs");
    sigset_t none;
    sigemptyset(&none);
    sv.donefd = eventfd(0, EFD_CLOEXEC);
    int r = sv.donefd < 0 ? err_make(err, errno, "fs: eventfd")
                          : serve(&sv, "", o->threads ? o->threads : 1, &none, err);
    server_release(&sv);
    return r;
}

int fs_umount(const char *dir, struct err **err)
{
    struct statfs sf;
    if (statfs(dir, &sf) < 0)
        return err_make(err, errno, "fs umount: `%s`", dir);
    if (sf.f_type != FUSE_SUPER_MAGIC)
        return err_input(err, "fs umount: `%s` is not a FUSE mount", dir);
    if (unmount_dir(dir) < 0)
        return err_make(err, errno, "fs umount: `%s`", dir);
    return 0;
}
