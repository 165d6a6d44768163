/* The inode table: every host inode the kernel knows, found by FUSE nodeid
 * or by (st_dev, st_ino). Nodeids are table keys, never pointers, and never
 * reused. No path strings are kept.
 *
 * An inode is held by an O_PATH fd while it is in use, and by its file
 * handle (name_to_handle_at) otherwise: when more inode fds are open than
 * the budget (from RLIMIT_NOFILE), the least recently used idle ones are
 * closed, and open_by_handle_at opens them again on demand. Only handles the
 * server made itself for inodes of the table are ever opened, and the
 * result must still be the same (st_dev, st_ino, type), else ESTALE. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fs/fs_internal.h"

#define GOLDEN 0x9e3779b97f4a7c15ull
#define MAX_MOUNTS 1024 /* inodes on further mounts keep their fd */
#define EVICT_BATCH 8   /* fds closed per call, outside the lock */

/* A file handle with room for the largest one. */
union fh_buf {
    struct file_handle h;
    char space[sizeof(struct file_handle) + MAX_HANDLE_SZ];
};

/* Fds taken out of the table under the lock, closed after it. */
struct victims {
    int fd[EVICT_BATCH + 1];
    int n;
};

static void victims_close(struct victims *v)
{
    for (int i = 0; i < v->n; i++)
        close(v->fd[i]);
    v->n = 0;
}

static size_t hash_id(const struct fs_session *s, uint64_t id)
{
    return (size_t)((id * GOLDEN) >> 32) & (s->nbuckets - 1);
}

static size_t hash_key(const struct fs_session *s, dev_t dev, ino_t ino)
{
    uint64_t k = (uint64_t)ino * GOLDEN ^ ((uint64_t)dev * 0xc2b2ae3d27d4eb4full);
    return (size_t)(k >> 29) & (s->nbuckets - 1);
}

static void insert_id(struct fs_session *s, struct fs_inode *ino)
{
    size_t a = hash_id(s, ino->nodeid);
    ino->next_id = s->by_id[a];
    s->by_id[a] = ino;
}

static void insert_key(struct fs_session *s, struct fs_inode *ino)
{
    size_t b = hash_key(s, ino->dev, ino->ino);
    ino->next_key = s->by_key[b];
    s->by_key[b] = ino;
}

/* Double the buckets when the table is full; on ENOMEM keep the old ones. */
static void maybe_grow(struct fs_session *s)
{
    if (s->ninodes < s->nbuckets)
        return;
    size_t old_n = s->nbuckets;
    struct fs_inode **a = calloc(old_n * 2, sizeof(*a));
    struct fs_inode **b = calloc(old_n * 2, sizeof(*b));
    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return;
    }
    struct fs_inode **old = s->by_id;
    free(s->by_key);
    s->by_id = a;
    s->by_key = b;
    s->nbuckets = old_n * 2;
    for (size_t i = 0; i < old_n; i++) {
        struct fs_inode *n = old[i];
        while (n) {
            struct fs_inode *next = n->next_id;
            insert_id(s, n);
            if (n->keyed)
                insert_key(s, n);
            n = next;
        }
    }
    free(old);
}

static struct fs_inode *find_id(struct fs_session *s, uint64_t id)
{
    for (struct fs_inode *n = s->by_id[hash_id(s, id)]; n; n = n->next_id)
        if (n->nodeid == id)
            return n;
    return NULL;
}

static struct fs_inode *find_key(struct fs_session *s, dev_t dev, ino_t ino)
{
    for (struct fs_inode *n = s->by_key[hash_key(s, dev, ino)]; n; n = n->next_key)
        if (n->dev == dev && n->ino == ino)
            return n;
    return NULL;
}

/* Take ino out of by_key (its inode number now names another file). */
static void unkey(struct fs_session *s, struct fs_inode *ino)
{
    struct fs_inode **pp = &s->by_key[hash_key(s, ino->dev, ino->ino)];
    while (*pp != ino)
        pp = &(*pp)->next_key;
    *pp = ino->next_key;
    ino->keyed = false;
}

/* ---- the idle list: inodes with a handle and an fd no request holds ---- */

static bool on_lru(const struct fs_inode *ino)
{
    return ino->fh_len > 0 && ino->fd >= 0 && ino->fd_users == 0;
}

static void lru_push(struct fs_session *s, struct fs_inode *ino)
{
    ino->lru_prev = NULL;
    ino->lru_next = s->lru_head;
    if (s->lru_head)
        s->lru_head->lru_prev = ino;
    else
        s->lru_tail = ino;
    s->lru_head = ino;
}

static void lru_remove(struct fs_session *s, struct fs_inode *ino)
{
    if (ino->lru_prev)
        ino->lru_prev->lru_next = ino->lru_next;
    else
        s->lru_head = ino->lru_next;
    if (ino->lru_next)
        ino->lru_next->lru_prev = ino->lru_prev;
    else
        s->lru_tail = ino->lru_prev;
    ino->lru_prev = ino->lru_next = NULL;
}

/* Close idle fds (the least recently used first) while over the budget;
 * the fds go to v, to be closed after the lock. */
static void evict(struct fs_session *s, struct victims *v)
{
    while (s->nfds > s->fd_budget && s->lru_tail && v->n < EVICT_BATCH) {
        struct fs_inode *ino = s->lru_tail;
        lru_remove(s, ino);
        v->fd[v->n++] = ino->fd;
        ino->fd = -1;
        s->nfds--;
    }
}

/* Give ino the fd `fd` (it had none). */
static void attach_fd(struct fs_session *s, struct fs_inode *ino, int fd)
{
    ino->fd = fd;
    s->nfds++;
    if (on_lru(ino))
        lru_push(s, ino);
}

static void unlink_inode(struct fs_session *s, struct fs_inode *ino)
{
    struct fs_inode **pp = &s->by_id[hash_id(s, ino->nodeid)];
    while (*pp != ino)
        pp = &(*pp)->next_id;
    *pp = ino->next_id;
    if (ino->keyed)
        unkey(s, ino);
    if (on_lru(ino))
        lru_remove(s, ino);
    if (ino->fd >= 0)
        s->nfds--;
    s->ninodes--;
}

static void destroy(struct fs_inode *ino)
{
    lock_owners_free(ino);
    if (ino->fd >= 0)
        close(ino->fd);
    free(ino);
}

/* ---- file handles and mounts ---- */

/* The handle of the inode open at fd and the id of its mount; -errno
 * (EOPNOTSUPP: the filesystem has none). */
static int handle_of(int fd, union fh_buf *b, int *mnt_id)
{
    b->h.handle_bytes = MAX_HANDLE_SZ;
    b->h.handle_type = 0;
    if (name_to_handle_at(fd, "", &b->h, mnt_id, AT_EMPTY_PATH) < 0)
        return neg_errno();
    if (b->h.handle_bytes == 0 || b->h.handle_bytes > MAX_HANDLE_SZ)
        return -EOPNOTSUPP;
    return 0;
}

static bool same_handle(const struct fs_inode *ino, const union fh_buf *b)
{
    return ino->fh_len == b->h.handle_bytes && ino->fh_type == b->h.handle_type &&
           memcmp(ino->fh, b->h.f_handle, ino->fh_len) == 0;
}

static int find_mount(const struct fs_session *s, int mnt_id)
{
    for (size_t i = 0; i < s->nmounts; i++)
        if (s->mounts[i].id == mnt_id)
            return (int)i;
    return -1;
}

/* The slot of mount mnt_id, which the inode open at fd (of type `type`,
 * handle b) is on, or -1 if handles cannot be opened there. A new mount
 * gets a slot from a directory: opened O_RDONLY as the mount fd (which also
 * keeps the id from being reused), and kept if it opens the directory's own
 * handle (it needs CAP_DAC_READ_SEARCH); else the slot says "no handles"
 * and the mount's inodes keep their fds. */
static int mount_slot(struct fs_session *s, int fd, mode_t type, const union fh_buf *b,
                      int mnt_id)
{
    pthread_mutex_lock(&s->inode_lock);
    int slot = find_mount(s, mnt_id);
    bool usable = slot >= 0 && s->mounts[slot].fd >= 0;
    pthread_mutex_unlock(&s->inode_lock);
    if (slot >= 0 || type != S_IFDIR)
        return usable ? slot : -1;
    /* Opened outside the lock: a directory of a slow filesystem may take
     * its time. fd holds the mount, so mnt_id cannot change meanwhile. */
    int mfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (mfd < 0)
        return -1;
    int probe = open_by_handle_at(mfd, (struct file_handle *)&b->h, O_PATH | O_CLOEXEC);
    if (probe >= 0) {
        close(probe);
    } else if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) {
        close(mfd);
        return -1; /* try again with a later inode */
    } else {
        close(mfd);
        mfd = -1;
    }
    pthread_mutex_lock(&s->inode_lock);
    slot = find_mount(s, mnt_id);
    if (slot < 0 && s->nmounts < MAX_MOUNTS) {
        struct fs_mount *m = realloc(s->mounts, (s->nmounts + 1) * sizeof(*m));
        if (m) {
            s->mounts = m;
            m[s->nmounts] = (struct fs_mount){.id = mnt_id, .fd = mfd};
            slot = (int)s->nmounts++;
            mfd = -1;
        }
    }
    usable = slot >= 0 && s->mounts[slot].fd >= 0;
    pthread_mutex_unlock(&s->inode_lock);
    if (mfd >= 0)
        close(mfd);
    return usable ? slot : -1;
}

/* Open ino again from its handle on the mount fd `mfd`, and check that it
 * is still the same inode (a handle without a generation could name a new
 * file with a reused number, and a filesystem may hand out anything).
 * Returns an O_PATH fd or -errno (-ESTALE: the inode is gone). */
static int handle_open(const struct fs_inode *ino, int mfd)
{
    union fh_buf b;
    b.h.handle_bytes = ino->fh_len;
    b.h.handle_type = ino->fh_type;
    memcpy(b.h.f_handle, ino->fh, ino->fh_len);
    int fd = open_by_handle_at(mfd, &b.h, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESTALE : neg_errno();
    struct stat st;
    if (inode_stat(fd, &st) < 0 || st.st_dev != ino->dev || st.st_ino != ino->ino ||
        (st.st_mode & S_IFMT) != ino->type) {
        close(fd);
        return -ESTALE;
    }
    return fd;
}

/* ---- refs ---- */

/* Drop one ref (and an fd use); true if ino must now be destroyed (it
 * was taken out of the table). Under the lock. */
static bool release_locked(struct fs_session *s, struct fs_inode *ino, bool fd_use,
                           struct victims *v)
{
    if (fd_use && --ino->fd_users == 0 && on_lru(ino))
        lru_push(s, ino);
    bool dead = --ino->refs == 0 && ino->nlookup == 0;
    if (dead)
        unlink_inode(s, ino);
    else if (s->nfds > s->fd_budget)
        evict(s, v);
    return dead;
}

struct fs_inode *inode_get(struct fs_session *s, uint64_t nodeid, int *fd)
{
    pthread_mutex_lock(&s->inode_lock);
    struct fs_inode *ino = find_id(s, nodeid);
    if (ino == NULL) {
        pthread_mutex_unlock(&s->inode_lock);
        *fd = -ESTALE;
        return NULL;
    }
    ino->refs++;
    if (ino->fd >= 0) {
        if (on_lru(ino))
            lru_remove(s, ino);
        ino->fd_users++;
        *fd = ino->fd;
        pthread_mutex_unlock(&s->inode_lock);
        return ino;
    }
    /* Closed while idle: open it from the handle, outside the lock (a use
     * is counted meanwhile; several racing requests keep the first fd). */
    ino->fd_users++;
    int mfd = s->mounts[ino->mnt].fd;
    pthread_mutex_unlock(&s->inode_lock);
    int nfd = handle_open(ino, mfd);
    struct victims v = {.n = 0};
    pthread_mutex_lock(&s->inode_lock);
    bool dead = false;
    if (nfd < 0) {
        dead = release_locked(s, ino, true, &v);
    } else if (ino->fd >= 0) {
        v.fd[v.n++] = nfd; /* another request was faster */
    } else {
        attach_fd(s, ino, nfd);
        evict(s, &v);
    }
    *fd = nfd < 0 ? nfd : ino->fd;
    pthread_mutex_unlock(&s->inode_lock);
    victims_close(&v);
    if (dead)
        destroy(ino);
    return nfd < 0 ? NULL : ino;
}

void inode_ref(struct fs_session *s, struct fs_inode *ino)
{
    pthread_mutex_lock(&s->inode_lock);
    ino->refs++;
    pthread_mutex_unlock(&s->inode_lock);
}

static void put(struct fs_session *s, struct fs_inode *ino, bool fd_use)
{
    struct victims v = {.n = 0};
    pthread_mutex_lock(&s->inode_lock);
    bool dead = release_locked(s, ino, fd_use, &v);
    pthread_mutex_unlock(&s->inode_lock);
    victims_close(&v);
    if (dead)
        destroy(ino);
}

void inode_put(struct fs_session *s, struct fs_inode *ino)
{
    if (ino)
        put(s, ino, false);
}

void inode_put_fd(struct fs_session *s, struct fs_inode *ino)
{
    if (ino)
        put(s, ino, true);
}

/* ---- registering inodes ---- */

/* A new table entry for fd/st with the handle b on mount slot `slot` (b
 * NULL or slot < 0: no handle, the fd stays). Under the lock. */
static struct fs_inode *add(struct fs_session *s, int fd, const struct stat *st,
                            const union fh_buf *b, int slot)
{
    size_t len = b && slot >= 0 ? b->h.handle_bytes : 0;
    struct fs_inode *ino = calloc(1, sizeof(*ino) + len);
    if (ino == NULL)
        return NULL;
    ino->nodeid = s->next_nodeid++;
    ino->dev = st->st_dev;
    ino->ino = st->st_ino;
    ino->type = st->st_mode & S_IFMT;
    ino->nlookup = 1;
    ino->refs = 1;
    ino->keyed = true;
    ino->fd = -1;
    if (len) {
        ino->fh_len = (uint8_t)len;
        ino->fh_type = b->h.handle_type;
        ino->mnt = (uint16_t)slot;
        memcpy(ino->fh, b->h.f_handle, len);
    }
    maybe_grow(s);
    insert_id(s, ino);
    insert_key(s, ino);
    s->ninodes++;
    attach_fd(s, ino, fd);
    return ino;
}

/* inode_found (create) and inode_known (!create). */
static struct fs_inode *lookup(struct fs_session *s, int fd, const struct stat *st, bool create)
{
    /* Known with an fd: that fd holds the host inode, so its number cannot
     * have gone to another file. The common case, without a syscall. */
    pthread_mutex_lock(&s->inode_lock);
    struct fs_inode *n = find_key(s, st->st_dev, st->st_ino);
    if (n && n->fd >= 0) {
        n->nlookup++;
        n->refs++;
        pthread_mutex_unlock(&s->inode_lock);
        close(fd);
        return n;
    }
    pthread_mutex_unlock(&s->inode_lock);
    if (n == NULL && !create) {
        close(fd);
        return NULL;
    }
    /* New, or known by a closed fd: the handle tells the same inode from a
     * new file that got a deleted one's number. */
    union fh_buf b;
    int mnt_id = -1;
    int herr = handle_of(fd, &b, &mnt_id);
    int slot = herr == 0 ? mount_slot(s, fd, st->st_mode & S_IFMT, &b, mnt_id) : -1;
    struct victims v = {.n = 0};
    pthread_mutex_lock(&s->inode_lock);
    n = find_key(s, st->st_dev, st->st_ino);
    if (n && n->fd < 0) {
        if (herr < 0) {
            /* Cannot tell: refuse rather than serve the wrong file. */
            n = NULL;
            errno = -herr;
            v.fd[v.n++] = fd;
            goto out;
        }
        if (!same_handle(n, &b)) {
            unkey(s, n); /* the old inode is gone: its nodeid gets ESTALE */
            n = NULL;
        }
    }
    if (n) {
        n->nlookup++;
        n->refs++;
        if (n->fd < 0 && slot == n->mnt)
            attach_fd(s, n, fd);
        else
            v.fd[v.n++] = fd;
    } else if (create) {
        n = add(s, fd, st, herr == 0 ? &b : NULL, slot);
        if (n == NULL) {
            v.fd[v.n++] = fd;
            errno = ENOMEM;
        }
    } else {
        v.fd[v.n++] = fd;
    }
    evict(s, &v);
out:
    pthread_mutex_unlock(&s->inode_lock);
    int e = errno;
    victims_close(&v);
    errno = e;
    return n;
}

struct fs_inode *inode_found(struct fs_session *s, int fd, const struct stat *st)
{
    return lookup(s, fd, st, true);
}

struct fs_inode *inode_known(struct fs_session *s, int fd, const struct stat *st)
{
    return lookup(s, fd, st, false);
}

void inode_forget(struct fs_session *s, uint64_t nodeid, uint64_t n)
{
    if (nodeid == FUSE_ROOT_ID)
        return; /* the root lives as long as the session */
    pthread_mutex_lock(&s->inode_lock);
    struct fs_inode *ino = find_id(s, nodeid);
    bool dead = false;
    if (ino) {
        ino->nlookup = n >= ino->nlookup ? 0 : ino->nlookup - n;
        dead = ino->nlookup == 0 && ino->refs == 0;
        if (dead)
            unlink_inode(s, ino);
    }
    pthread_mutex_unlock(&s->inode_lock);
    if (dead)
        destroy(ino);
}

void inode_lookup_again(struct fs_session *s, struct fs_inode *ino)
{
    pthread_mutex_lock(&s->inode_lock);
    ino->nlookup++;
    pthread_mutex_unlock(&s->inode_lock);
}

/* ---- the table ---- */

/* How many inode fds to keep: o->inode_fds, else the soft RLIMIT_NOFILE
 * less room for the transport (up to 64 workers with two /dev/fuse clones
 * each), open files, lock owners and the fds of requests under way. */
static size_t fd_budget(const struct fs_options *o)
{
    if (o->inode_fds)
        return o->inode_fds;
    struct rlimit rl;
    uint64_t n = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        n = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    if (n > (1u << 20))
        n = 1u << 20;
    uint64_t reserve = 128 + n / 4;
    return n > reserve + 16 ? (size_t)(n - reserve) : 16;
}

int inode_table_init(struct fs_session *s, int rootfd)
{
    s->nbuckets = 256;
    s->fd_budget = fd_budget(&s->opt);
    s->by_id = calloc(s->nbuckets, sizeof(*s->by_id));
    s->by_key = calloc(s->nbuckets, sizeof(*s->by_key));
    struct stat st;
    if (s->by_id == NULL || s->by_key == NULL) {
        close(rootfd);
        errno = ENOMEM;
        return -1;
    }
    if (inode_stat(rootfd, &st) < 0) {
        int e = errno;
        close(rootfd);
        errno = e;
        return -1;
    }
    /* The root keeps its fd (no handle); its mount gets the first slot. */
    union fh_buf b;
    int mnt_id = -1;
    if (handle_of(rootfd, &b, &mnt_id) == 0)
        mount_slot(s, rootfd, S_IFDIR, &b, mnt_id);
    s->next_nodeid = FUSE_ROOT_ID;
    pthread_mutex_lock(&s->inode_lock);
    s->root = add(s, rootfd, &st, NULL, -1);
    pthread_mutex_unlock(&s->inode_lock);
    if (s->root == NULL) {
        close(rootfd);
        errno = ENOMEM;
        return -1;
    }
    s->root->refs = 0; /* nlookup 1 keeps it; FORGET never drops it */
    return 0;
}

void inode_table_free(struct fs_session *s)
{
    for (size_t i = 0; s->by_id && i < s->nbuckets; i++) {
        struct fs_inode *n = s->by_id[i];
        while (n) {
            struct fs_inode *next = n->next_id;
            destroy(n);
            n = next;
        }
    }
    free(s->by_id);
    free(s->by_key);
    s->by_id = s->by_key = NULL;
    for (size_t i = 0; i < s->nmounts; i++)
        if (s->mounts[i].fd >= 0)
            close(s->mounts[i].fd);
    free(s->mounts);
    s->mounts = NULL;
    s->nmounts = 0;
    s->lru_head = s->lru_tail = NULL;
    s->nfds = 0;
}

int inode_reopen(struct fs_session *s, const struct fs_inode *ino, int fd, int flags)
{
    /* Only files and directories: reopening a symlink, a device or a FIFO
     * would follow it, open a host device, or block. */
    if (ino->type == S_IFDIR)
        return openat(fd, ".", flags | O_DIRECTORY | O_CLOEXEC);
    if (ino->type != S_IFREG) {
        errno = ino->type == S_IFLNK ? ELOOP : EINVAL;
        return -1;
    }
    char name[16];
    snprintf(name, sizeof(name), "%d", fd);
    return openat(s->proc_fd, name, (flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC);
}

int inode_stat(int fd, struct stat *st)
{
    return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
}
