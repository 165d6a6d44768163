/* Open files and directories: the `fh` of FUSE requests, looked up in a
 * table (never cast to pointers) and reference-counted so that a RELEASE
 * racing a READ cannot close an fd under it. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "fs/fs_internal.h"

static size_t hash_fh(const struct fs_session *s, uint64_t fh)
{
    return (size_t)((fh * 0x9e3779b97f4a7c15ull) >> 32) & (s->nhbuckets - 1);
}

static void grow(struct fs_session *s)
{
    size_t n = s->nhbuckets ? s->nhbuckets * 2 : 64;
    struct fs_handle **t = calloc(n, sizeof(*t));
    if (t == NULL)
        return;
    struct fs_handle **old = s->handles;
    size_t old_n = s->nhbuckets;
    s->handles = t;
    s->nhbuckets = n;
    for (size_t i = 0; i < old_n; i++) {
        struct fs_handle *h = old[i];
        while (h) {
            struct fs_handle *next = h->next;
            size_t b = hash_fh(s, h->fh);
            h->next = t[b];
            t[b] = h;
            h = next;
        }
    }
    free(old);
}

/* Close a handle nobody uses any more. */
static void destroy(struct fs_session *s, struct fs_handle *h)
{
    close(h->fd);
    if (h->passthrough) {
        struct fs_inode *ino = h->inode;
        int id = 0;
        pthread_mutex_lock(&s->inode_lock);
        if (--ino->backing_refs == 0) {
            id = ino->backing_id;
            ino->backing_id = 0;
        }
        pthread_mutex_unlock(&s->inode_lock);
        if (id > 0 && s->tr.backing_close)
            s->tr.backing_close(s->tr.ctx, id);
    }
    if (!h->passthrough && !h->is_dir) {
        pthread_mutex_lock(&s->inode_lock);
        h->inode->cached_refs--;
        pthread_mutex_unlock(&s->inode_lock);
    }
    pthread_mutex_destroy(&h->dir_lock);
    inode_put(s, h->inode);
    free(h);
}

int handle_new(struct fs_session *s, int fd, struct fs_inode *ino, bool is_dir, bool passthrough,
               uint64_t *fh)
{
    struct fs_handle *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        close(fd);
        return -ENOMEM;
    }
    h->fd = fd;
    h->inode = ino;
    h->is_dir = is_dir;
    h->passthrough = passthrough;
    h->refs = 1;
    pthread_mutex_init(&h->dir_lock, NULL);
    inode_ref(s, ino);
    if (!passthrough && !is_dir) {
        pthread_mutex_lock(&s->inode_lock);
        ino->cached_refs++;
        pthread_mutex_unlock(&s->inode_lock);
    }
    pthread_mutex_lock(&s->handle_lock);
    if (s->nhandles >= s->nhbuckets)
        grow(s);
    if (s->nhbuckets == 0) {
        pthread_mutex_unlock(&s->handle_lock);
        /* The caller drops the backing ref it took for a passthrough open. */
        if (h->passthrough) {
            h->passthrough = false;
            pthread_mutex_lock(&s->inode_lock);
            ino->cached_refs++; /* balanced by destroy() */
            pthread_mutex_unlock(&s->inode_lock);
        }
        destroy(s, h);
        return -ENOMEM;
    }
    h->fh = ++s->next_fh;
    size_t b = hash_fh(s, h->fh);
    h->next = s->handles[b];
    s->handles[b] = h;
    s->nhandles++;
    pthread_mutex_unlock(&s->handle_lock);
    *fh = h->fh;
    return 0;
}

struct fs_handle *handle_get(struct fs_session *s, uint64_t fh)
{
    struct fs_handle *found = NULL;
    pthread_mutex_lock(&s->handle_lock);
    if (s->nhbuckets) {
        for (struct fs_handle *h = s->handles[hash_fh(s, fh)]; h; h = h->next) {
            if (h->fh == fh) {
                h->refs++;
                found = h;
                break;
            }
        }
    }
    pthread_mutex_unlock(&s->handle_lock);
    return found;
}

void handle_put(struct fs_session *s, struct fs_handle *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&s->handle_lock);
    bool dead = --h->refs == 0;
    pthread_mutex_unlock(&s->handle_lock);
    if (dead)
        destroy(s, h);
}

int handle_release(struct fs_session *s, uint64_t fh)
{
    pthread_mutex_lock(&s->handle_lock);
    struct fs_handle **pp = s->nhbuckets ? &s->handles[hash_fh(s, fh)] : NULL;
    while (pp && *pp && (*pp)->fh != fh)
        pp = &(*pp)->next;
    if (pp == NULL || *pp == NULL) {
        pthread_mutex_unlock(&s->handle_lock);
        return -EBADF;
    }
    struct fs_handle *h = *pp;
    *pp = h->next;
    s->nhandles--;
    bool dead = --h->refs == 0;
    pthread_mutex_unlock(&s->handle_lock);
    if (dead)
        destroy(s, h);
    return 0;
}

void handle_table_free(struct fs_session *s)
{
    for (size_t i = 0; i < s->nhbuckets; i++) {
        struct fs_handle *h = s->handles[i];
        while (h) {
            struct fs_handle *next = h->next;
            destroy(s, h);
            h = next;
        }
    }
    free(s->handles);
    s->handles = NULL;
    s->nhbuckets = s->nhandles = 0;
}
