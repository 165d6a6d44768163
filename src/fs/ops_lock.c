/* POSIX record locks (GETLK, SETLK, SETLKW) on the host as OFD locks, so
 * that guest locks and host processes' locks see each other. Each FUSE lock
 * owner (a process's file table) gets its own open file description of the
 * inode, so two owners conflict and one owner's locks merge, as POSIX wants;
 * FLUSH (close) drops an owner's locks by closing its description. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs_internal.h"

#define LK_OFFSET_MAX 0x7fffffffffffffffull

/* Find the owner's record on p's inode (p holds its O_PATH fd), creating
 * it (with its own fd) if `create`. Returns a dup of its fd (the caller
 * closes it), or -errno / -ENOENT. */
static int owner_fd(struct fs_session *s, const struct iref *p, uint64_t owner, uint32_t pid,
                    bool create)
{
    struct fs_inode *ino = p->i;
    pthread_mutex_lock(&s->lock_lock);
    struct fs_lock_owner *o = ino->lock_owners;
    while (o && o->owner != owner)
        o = o->next;
    if (o == NULL && create) {
        int fd = inode_reopen(s, ino, p->fd, O_RDWR | O_NONBLOCK);
        if (fd < 0)
            fd = inode_reopen(s, ino, p->fd, O_RDONLY | O_NONBLOCK);
        if (fd < 0)
            fd = inode_reopen(s, ino, p->fd, O_WRONLY | O_NONBLOCK);
        if (fd < 0 || (o = calloc(1, sizeof(*o))) == NULL) {
            int e = fd < 0 ? neg_errno() : -ENOMEM;
            if (fd >= 0)
                close(fd);
            pthread_mutex_unlock(&s->lock_lock);
            return e;
        }
        o->owner = owner;
        o->fd = fd;
        o->next = ino->lock_owners;
        ino->lock_owners = o;
    }
    int d = o ? fcntl(o->fd, F_DUPFD_CLOEXEC, 0) : -ENOENT;
    if (o && d < 0)
        d = neg_errno();
    if (o && pid)
        o->pid = pid;
    pthread_mutex_unlock(&s->lock_lock);
    return d;
}

static void owner_mark(struct fs_session *s, struct fs_inode *ino, uint64_t owner)
{
    pthread_mutex_lock(&s->lock_lock);
    for (struct fs_lock_owner *o = ino->lock_owners; o; o = o->next)
        if (o->owner == owner)
            o->has_locks = true;
    pthread_mutex_unlock(&s->lock_lock);
}

void lock_owner_drop(struct fs_session *s, struct fs_inode *ino, uint64_t owner)
{
    pthread_mutex_lock(&s->lock_lock);
    struct fs_lock_owner **pp = &ino->lock_owners;
    while (*pp && (*pp)->owner != owner)
        pp = &(*pp)->next;
    struct fs_lock_owner *o = *pp;
    if (o)
        *pp = o->next;
    pthread_mutex_unlock(&s->lock_lock);
    if (o) {
        close(o->fd);
        free(o);
    }
}

void lock_owners_free(struct fs_inode *ino)
{
    while (ino->lock_owners) {
        struct fs_lock_owner *o = ino->lock_owners;
        ino->lock_owners = o->next;
        close(o->fd);
        free(o);
    }
}

static int lk_to_flock(const struct fuse_file_lock *lk, struct flock *fl)
{
    if (lk->type != F_RDLCK && lk->type != F_WRLCK && lk->type != F_UNLCK)
        return -EINVAL;
    if (lk->start > LK_OFFSET_MAX || lk->end > LK_OFFSET_MAX || lk->start > lk->end)
        return -EINVAL;
    *fl = (struct flock){.l_type = (short)lk->type, .l_whence = SEEK_SET,
                         .l_start = (off_t)lk->start};
    fl->l_len = lk->end == LK_OFFSET_MAX ? 0 : (off_t)(lk->end - lk->start + 1);
    return 0;
}

/* The pid of the owner (other than `self`) holding the lock `fl` reports. */
static uint32_t holder_pid(struct fs_session *s, struct fs_inode *ino, uint64_t self,
                           const struct flock *want, const struct flock *got)
{
    uint32_t pid = 0;
    pthread_mutex_lock(&s->lock_lock);
    for (struct fs_lock_owner *o = ino->lock_owners; o; o = o->next) {
        if (o->owner == self || !o->has_locks)
            continue;
        /* Seen from the holder's own description, its lock is no conflict. */
        struct flock t = *want;
        if (fcntl(o->fd, F_OFD_GETLK, &t) == 0 &&
            (t.l_type == F_UNLCK || t.l_start != got->l_start || t.l_len != got->l_len)) {
            pid = o->pid;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock_lock);
    return pid;
}

int op_getlk(struct fs_req *r)
{
    struct fuse_lk_in in;
    struct flock fl;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    int e = lk_to_flock(&in.lk, &fl);
    if (e < 0)
        return e;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    if (p.i->type != S_IFREG)
        return -EINVAL;
    int fd = owner_fd(r->s, &p, in.owner, in.lk.pid, true);
    if (fd < 0)
        return fd;
    struct flock want = fl;
    int rc = fcntl(fd, F_OFD_GETLK, &fl);
    e = rc < 0 ? neg_errno() : 0;
    close(fd);
    if (e < 0)
        return e;
    struct fuse_lk_out out = {.lk = {.type = (uint32_t)fl.l_type}};
    if (fl.l_type != F_UNLCK) {
        out.lk.start = (uint64_t)fl.l_start;
        out.lk.end = fl.l_len == 0 ? LK_OFFSET_MAX : (uint64_t)(fl.l_start + fl.l_len - 1);
        out.lk.pid = holder_pid(r->s, p.i, in.owner, &want, &fl);
    }
    return reply_put(r, &out, sizeof(out));
}

/* Is the blocked SETLKW `unique` interrupted? Registers/unregisters it. */
static bool wait_interrupted(struct fs_session *s, struct fs_wait *w)
{
    pthread_mutex_lock(&s->lock_lock);
    bool i = w->interrupted;
    pthread_mutex_unlock(&s->lock_lock);
    return i;
}

static void wait_register(struct fs_session *s, struct fs_wait *w, bool add)
{
    pthread_mutex_lock(&s->lock_lock);
    if (add) {
        w->next = s->waiters;
        s->waiters = w;
    } else {
        struct fs_wait **pp = &s->waiters;
        while (*pp && *pp != w)
            pp = &(*pp)->next;
        if (*pp)
            *pp = w->next;
    }
    pthread_mutex_unlock(&s->lock_lock);
}

static int setlk_common(struct fs_req *r, bool wait)
{
    struct fuse_lk_in in;
    struct flock fl;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    if (in.lk_flags & FUSE_LK_FLOCK)
        return -EINVAL; /* flock(2) is not negotiated: the kernel keeps it local */
    int e = lk_to_flock(&in.lk, &fl);
    if (e < 0)
        return e;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    if (p.i->type != S_IFREG)
        return -EINVAL;
    bool unlock = fl.l_type == F_UNLCK;
    int fd = owner_fd(r->s, &p, in.owner, in.lk.pid, !unlock);
    if (fd == -ENOENT && unlock)
        return 0; /* this owner holds nothing here */
    if (fd < 0)
        return fd;
    if (!wait || unlock) {
        e = fcntl(fd, F_OFD_SETLK, &fl) < 0 ? neg_errno() : 0;
    } else {
        /* Poll rather than block in F_OFD_SETLKW, so that FUSE_INTERRUPT
         * (a signal to the waiting guest process) can end the wait. */
        struct fs_wait w = {.unique = r->h.unique};
        wait_register(r->s, &w, true);
        long ns = 1000000;
        for (;;) {
            if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
                e = 0;
                break;
            }
            if (errno != EAGAIN && errno != EACCES) {
                e = neg_errno();
                break;
            }
            if (wait_interrupted(r->s, &w)) {
                e = -EINTR;
                break;
            }
            struct timespec ts = {0, ns};
            nanosleep(&ts, NULL);
            if (ns < 32000000)
                ns *= 2;
        }
        wait_register(r->s, &w, false);
    }
    close(fd);
    if (e == 0 && !unlock)
        owner_mark(r->s, p.i, in.owner);
    return e;
}

int op_setlk(struct fs_req *r)
{
    return setlk_common(r, false);
}

int op_setlkw(struct fs_req *r)
{
    return setlk_common(r, true);
}

int op_interrupt(struct fs_req *r)
{
    struct fuse_interrupt_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return FS_NOREPLY;
    pthread_mutex_lock(&r->s->lock_lock);
    for (struct fs_wait *w = r->s->waiters; w; w = w->next)
        if (w->unique == in.unique)
            w->interrupted = true;
    pthread_mutex_unlock(&r->s->lock_lock);
    return FS_NOREPLY;
}
