/* The inode table: every host inode the kernel knows, held by an O_PATH fd
 * and found by FUSE nodeid or by (st_dev, st_ino). Nodeids are table keys,
 * never pointers, and never reused. No path strings are kept. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_internal.h"

#define GOLDEN 0x9e3779b97f4a7c15ull

static size_t hash_id(const struct fs_session *s, uint64_t id)
{
    return (size_t)((id * GOLDEN) >> 32) & (s->nbuckets - 1);
}

static size_t hash_key(const struct fs_session *s, dev_t dev, ino_t ino)
{
    uint64_t k = (uint64_t)ino * GOLDEN ^ ((uint64_t)dev * 0xc2b2ae3d27d4eb4full);
    return (size_t)(k >> 29) & (s->nbuckets - 1);
}

static void insert(struct fs_session *s, struct fs_inode *ino)
{
    size_t a = hash_id(s, ino->nodeid), b = hash_key(s, ino->dev, ino->ino);
    ino->next_id = s->by_id[a];
    s->by_id[a] = ino;
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
            insert(s, n);
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

static void unlink_inode(struct fs_session *s, struct fs_inode *ino)
{
    struct fs_inode **pp = &s->by_id[hash_id(s, ino->nodeid)];
    while (*pp != ino)
        pp = &(*pp)->next_id;
    *pp = ino->next_id;
    pp = &s->by_key[hash_key(s, ino->dev, ino->ino)];
    while (*pp != ino)
        pp = &(*pp)->next_key;
    *pp = ino->next_key;
    s->ninodes--;
}

static void destroy(struct fs_inode *ino)
{
    lock_owners_free(ino);
    close(ino->fd);
    free(ino);
}

struct fs_inode *inode_get(struct fs_session *s, uint64_t nodeid)
{
    pthread_mutex_lock(&s->inode_lock);
    struct fs_inode *ino = find_id(s, nodeid);
    if (ino)
        ino->refs++;
    pthread_mutex_unlock(&s->inode_lock);
    return ino;
}

void inode_ref(struct fs_session *s, struct fs_inode *ino)
{
    pthread_mutex_lock(&s->inode_lock);
    ino->refs++;
    pthread_mutex_unlock(&s->inode_lock);
}

void inode_put(struct fs_session *s, struct fs_inode *ino)
{
    if (ino == NULL)
        return;
    pthread_mutex_lock(&s->inode_lock);
    bool dead = --ino->refs == 0 && ino->nlookup == 0;
    if (dead)
        unlink_inode(s, ino);
    pthread_mutex_unlock(&s->inode_lock);
    if (dead)
        destroy(ino);
}

struct fs_inode *inode_found(struct fs_session *s, int fd, const struct stat *st)
{
    pthread_mutex_lock(&s->inode_lock);
    size_t b = hash_key(s, st->st_dev, st->st_ino);
    for (struct fs_inode *n = s->by_key[b]; n; n = n->next_key) {
        if (n->dev == st->st_dev && n->ino == st->st_ino) {
            n->nlookup++;
            n->refs++;
            pthread_mutex_unlock(&s->inode_lock);
            close(fd);
            return n;
        }
    }
    struct fs_inode *ino = calloc(1, sizeof(*ino));
    if (ino == NULL) {
        pthread_mutex_unlock(&s->inode_lock);
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    ino->nodeid = s->next_nodeid++;
    ino->dev = st->st_dev;
    ino->ino = st->st_ino;
    ino->fd = fd;
    ino->type = st->st_mode & S_IFMT;
    ino->nlookup = 1;
    ino->refs = 1;
    maybe_grow(s);
    insert(s, ino);
    s->ninodes++;
    pthread_mutex_unlock(&s->inode_lock);
    return ino;
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

int inode_table_init(struct fs_session *s, int rootfd)
{
    s->nbuckets = 256;
    s->by_id = calloc(s->nbuckets, sizeof(*s->by_id));
    s->by_key = calloc(s->nbuckets, sizeof(*s->by_key));
    struct stat st;
    if (s->by_id == NULL || s->by_key == NULL) {
        close(rootfd);
        errno = ENOMEM;
        return -1;
    }
    if (fstatat(rootfd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
        int e = errno;
        close(rootfd);
        errno = e;
        return -1;
    }
    s->next_nodeid = FUSE_ROOT_ID;
    s->root = inode_found(s, rootfd, &st);
    if (s->root == NULL)
        return -1;
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
}

int inode_reopen(struct fs_session *s, const struct fs_inode *ino, int flags)
{
    /* Only files and directories: reopening a symlink, a device or a FIFO
     * would follow it, open a host device, or block. */
    if (ino->type == S_IFDIR)
        return openat(ino->fd, ".", flags | O_DIRECTORY | O_CLOEXEC);
    if (ino->type != S_IFREG) {
        errno = ino->type == S_IFLNK ? ELOOP : EINVAL;
        return -1;
    }
    char name[16];
    snprintf(name, sizeof(name), "%d", ino->fd);
    return openat(s->proc_fd, name, (flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC);
}

int inode_stat(const struct fs_inode *ino, struct stat *st)
{
    return fstatat(ino->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
}

struct fs_inode *inode_known(struct fs_session *s, const struct stat *st)
{
    pthread_mutex_lock(&s->inode_lock);
    struct fs_inode *found = NULL;
    for (struct fs_inode *n = s->by_key[hash_key(s, st->st_dev, st->st_ino)]; n;
         n = n->next_key) {
        if (n->dev == st->st_dev && n->ino == st->st_ino) {
            n->nlookup++;
            n->refs++;
            found = n;
            break;
        }
    }
    pthread_mutex_unlock(&s->inode_lock);
    return found;
}

void inode_lookup_again(struct fs_session *s, struct fs_inode *ino)
{
    pthread_mutex_lock(&s->inode_lock);
    ino->nlookup++;
    pthread_mutex_unlock(&s->inode_lock);
}
