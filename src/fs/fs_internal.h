/* Internals of the FUSE protocol core shared by the src/fs sources: the session, the
 * inode and handle tables, and the request/reply cursor. */
#pragma once
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "fs/fs.h"
#include "fs/fuse_abi.h"

/* One POSIX lock owner of an inode: its locks live on an OFD of its own. */
struct fs_lock_owner {
    uint64_t owner;
    uint32_t pid;
    int fd;
    bool has_locks;
    struct fs_lock_owner *next;
};

/* A host inode the kernel knows. Never freed while refs > 0 or nlookup > 0.
 * Its O_PATH fd is kept while requests use it and closed when idle inodes
 * exceed the session's fd budget; the file handle (name_to_handle_at) opens
 * it again. Inodes without a handle (the root, filesystems that have none)
 * keep their fd. dev, ino, type, mnt and fh never change. */
struct fs_inode {
    uint64_t nodeid;
    dev_t dev;
    ino_t ino;
    uint64_t nlookup;
    struct fs_inode *next_id, *next_key;
    struct fs_inode *lru_prev, *lru_next; /* on the idle list (s->lru_head) */
    struct fs_lock_owner *lock_owners; /* under s->lock_lock */
    int fd;            /* O_PATH | O_NOFOLLOW, -1 while closed (only with a handle) */
    uint32_t refs;     /* requests and open handles using it */
    uint32_t fd_users; /* requests using fd (inode_get): it stays open */
    int backing_id, backing_refs; /* passthrough: under s->inode_lock */
    int cached_refs; /* open files served without passthrough (the kernel
                        refuses to mix the two on one inode) */
    mode_t type;     /* S_IFMT bits: an inode never changes type */
    int fh_type;     /* the handle: type, bytes and length (0: none) */
    uint16_t mnt;    /* s->mounts slot the handle is opened on */
    bool backing_rw;
    bool keyed;      /* in by_key; false once its inode number went to another file */
    uint8_t fh_len;
    unsigned char fh[];
};

/* A mount under the source that handles are opened on (open_by_handle_at
 * takes an fd of it; a handle opened on it gets its flags, ro or noexec). */
struct fs_mount {
    int id; /* mnt_id of name_to_handle_at: not reused while fd keeps it */
    int fd; /* O_RDONLY directory (open_by_handle_at refuses O_PATH fds);
               -1: handles do not open there (no CAP_DAC_READ_SEARCH) */
};

/* An open file or directory (the `fh` of a FUSE request). */
struct fs_handle {
    uint64_t fh;
    int fd;
    struct fs_inode *inode; /* holds a ref */
    bool is_dir;
    bool passthrough; /* holds one of inode->backing_refs */
    uint32_t refs;
    pthread_mutex_t dir_lock; /* directories: the getdents position */
    uint64_t dir_pos;         /* offset the host fd is at (0 = start) */
    struct fs_handle *next;
};

struct fs_session {
    struct fs_options opt;
    struct fs_transport tr;
    int proc_fd; /* /proc/self/fd, to reopen O_PATH fds */
    struct fs_inode *root;

    pthread_mutex_t inode_lock;
    struct fs_inode **by_id, **by_key;
    size_t nbuckets, ninodes;
    uint64_t next_nodeid;
    struct fs_inode *lru_head, *lru_tail; /* idle inodes with an fd, most recent first */
    size_t nfds;      /* inode fds open */
    size_t fd_budget; /* above this, idle inodes' fds are closed */
    struct fs_mount *mounts;
    size_t nmounts;

    pthread_mutex_t handle_lock;
    struct fs_handle **handles;
    size_t nhbuckets, nhandles;
    uint64_t next_fh;

    pthread_mutex_t lock_lock; /* lock owners and the interrupt list */
    struct fs_wait *waiters;

    /* Host filesystems (by st_dev) whose close(2) does nothing but what
     * the server's own bookkeeping does: FLUSH skips it there. */
    struct fs_plain_close {
        dev_t dev;
        bool plain;
    } closes[8];
    unsigned ncloses; /* under lock_lock */

    atomic_bool initialized, destroyed, passthrough_on, writeback_on;
    uint32_t proto_minor;
    uint32_t max_write, max_read;
    bool am_root;
};

/* A blocked SETLKW, so that FUSE_INTERRUPT can find it. */
struct fs_wait {
    uint64_t unique;
    bool interrupted;
    struct fs_wait *next;
};

/* One request being served: the input cursor and the reply under way. */
struct fs_req {
    struct fs_session *s;
    struct fuse_in_header h;
    const uint8_t *p; /* unread body */
    size_t left;
    const struct iovec *out;
    int out_cnt;
    size_t out_cap; /* total bytes of out */
    size_t out_len; /* reply body bytes written after the header */
};

/* Returned by an op that sends no reply. */
#define FS_NOREPLY 1

/* ---- request cursor (session.c) ---- */
/* Copy the next `len` body bytes into dst; -EINVAL if the body is shorter. */
int req_get(struct fs_req *r, void *dst, size_t len);
/* Take a NUL-terminated name from the body: no '/', not empty, at most
 * NAME_MAX; "." and ".." only if allow_dots. -EINVAL otherwise. */
int req_name(struct fs_req *r, const char **name, bool allow_dots);
/* Take a NUL-terminated string (a symlink target, an xattr name). */
int req_str(struct fs_req *r, const char **str, size_t max);
/* Append len bytes to the reply body; -ERANGE if out cannot hold them. */
int reply_put(struct fs_req *r, const void *data, size_t len);
/* Describe up to `len` bytes of reply space after the body written so far
 * as iovecs in dst (at most max); returns the count. */
int reply_space(struct fs_req *r, size_t len, struct iovec *dst, int max);
/* Space left in the reply. */
size_t reply_room(const struct fs_req *r);

/* ---- inodes (inode.c) ---- */
/* Find nodeid, take a ref and hold its fd for the op (opened again from its
 * file handle if it was closed): *fd gets it. NULL with *fd = -errno:
 * -ESTALE for an unknown nodeid or an inode that is gone. Release with
 * inode_put_fd. */
struct fs_inode *inode_get(struct fs_session *s, uint64_t nodeid, int *fd);
/* Take one more ref on an inode the caller holds (no fd). */
void inode_ref(struct fs_session *s, struct fs_inode *ino);
/* Drop a ref taken by inode_ref/inode_found/inode_known. */
void inode_put(struct fs_session *s, struct fs_inode *ino);
/* Drop the ref and the fd taken by inode_get. */
void inode_put_fd(struct fs_session *s, struct fs_inode *ino);
/* Register fd (O_PATH, ownership moves in) with stat st as a kernel-visible
 * inode: an existing one gets nlookup+1 (fd kept if its own was closed,
 * else closed); a known inode number whose file handle differs (deleted and
 * reused on the host) gets a new inode. Returns it with a ref taken (no
 * fd), or NULL with errno set (ENOMEM...) and fd closed. */
struct fs_inode *inode_found(struct fs_session *s, int fd, const struct stat *st);
/* Like inode_found, but only an inode the table has: NULL (fd closed) if
 * it has none. */
struct fs_inode *inode_known(struct fs_session *s, int fd, const struct stat *st);
/* One more kernel lookup of an inode the caller holds (LINK, "."). */
void inode_lookup_again(struct fs_session *s, struct fs_inode *ino);
/* Drop n kernel lookups of nodeid (FORGET). */
void inode_forget(struct fs_session *s, uint64_t nodeid, uint64_t n);
/* Create the inode tables and the root from an O_PATH fd (moves in). */
int inode_table_init(struct fs_session *s, int rootfd);
/* Close and free every inode and mount fd. */
void inode_table_free(struct fs_session *s);
/* Open ino (whose fd the caller holds: `fd`) again as a real file. */
int inode_reopen(struct fs_session *s, const struct fs_inode *ino, int fd, int flags);
/* lstat an inode through its fd. */
int inode_stat(int fd, struct stat *st);

/* ---- handles (handle.c) ---- */
/* New handle for fd (moves in) on inode (a ref is taken); 0 or -errno. */
int handle_new(struct fs_session *s, int fd, struct fs_inode *ino, bool is_dir, bool passthrough,
               uint64_t *fh);
/* Find fh and take a ref; NULL if unknown. */
struct fs_handle *handle_get(struct fs_session *s, uint64_t fh);
/* Drop a ref taken by handle_get. */
void handle_put(struct fs_session *s, struct fs_handle *h);
/* Remove fh from the table (RELEASE); -EBADF if unknown. */
int handle_release(struct fs_session *s, uint64_t fh);
/* Close every handle. */
void handle_table_free(struct fs_session *s);

/* ---- helpers shared by the ops (attr.c) ---- */
/* Fill a fuse_attr from a host stat (ids mapped to the guest). */
void attr_fill(const struct fs_session *s, const struct stat *st, struct fuse_attr *a);
/* Reply a fuse_entry_out for ino (stat st). */
int reply_entry(struct fs_req *r, const struct fs_inode *ino, const struct stat *st);
/* The attribute timeout for st: 0 for set-id files (a write by another user
 * clears the bits behind the kernel's cache), else attr_timeout. */
double attr_timeout_for(const struct fs_session *s, const struct stat *st);
/* Split a timeout in seconds into the FUSE sec/nsec pair. */
void timeout_split(double t, uint64_t *sec, uint32_t *nsec);
/* Run creation syscalls as the caller (mapped) for ownership; returns a
 * token for creds_restore. */
int creds_enter(struct fs_req *r);
/* Undo creds_enter. */
void creds_restore(int token);
/* FUSE_HANDLE_KILLPRIV_V2: clear set-uid, and set-gid if group-executable,
 * of the regular file open at fd (any kind of fd), as a write/truncate/chown
 * by an unprivileged caller does locally (`sgid` false: set-uid only).
 * 0 or -errno. */
int kill_suidgid(struct fs_session *s, int fd, bool sgid);
/* -errno of the last syscall, never 0. */
int neg_errno(void);

/* ---- ops (ops_*.c): each returns 0 (reply built), FS_NOREPLY, or -errno ---- */
/* ---- DAX window mappings (ops_map.c, virtio-fs only) ---- */
#define FS_MAP_SHIFT 12 /* mappings are aligned to 4 KiB pages */
int op_setupmapping(struct fs_req *r);
int op_removemapping(struct fs_req *r);

int op_lookup(struct fs_req *r);
int op_forget(struct fs_req *r);
int op_batch_forget(struct fs_req *r);
int op_getattr(struct fs_req *r);
int op_setattr(struct fs_req *r);
int op_readlink(struct fs_req *r);
int op_symlink(struct fs_req *r);
int op_mknod(struct fs_req *r);
int op_mkdir(struct fs_req *r);
int op_unlink(struct fs_req *r);
int op_rmdir(struct fs_req *r);
int op_rename(struct fs_req *r);
int op_rename2(struct fs_req *r);
int op_link(struct fs_req *r);
int op_statfs(struct fs_req *r);
int op_access(struct fs_req *r);
int op_open(struct fs_req *r);
int op_create(struct fs_req *r);
int op_tmpfile(struct fs_req *r);
int op_read(struct fs_req *r);
int op_write(struct fs_req *r);
int op_release(struct fs_req *r);
int op_flush(struct fs_req *r);
int op_fsync(struct fs_req *r);
int op_fallocate(struct fs_req *r);
int op_lseek(struct fs_req *r);
int op_copy_file_range(struct fs_req *r);
int op_opendir(struct fs_req *r);
int op_readdir(struct fs_req *r);
int op_readdirplus(struct fs_req *r);
int op_releasedir(struct fs_req *r);
int op_fsyncdir(struct fs_req *r);
int op_setxattr(struct fs_req *r);
int op_getxattr(struct fs_req *r);
int op_listxattr(struct fs_req *r);
int op_removexattr(struct fs_req *r);
int op_getlk(struct fs_req *r);
int op_setlk(struct fs_req *r);
int op_setlkw(struct fs_req *r);
int op_interrupt(struct fs_req *r);
int op_syncfs(struct fs_req *r);
/* Drop the POSIX locks of one owner on ino (FLUSH: the owner closed it). */
void lock_owner_drop(struct fs_session *s, struct fs_inode *ino, uint64_t owner);
/* Drop every lock owner of ino (the inode is being freed). */
void lock_owners_free(struct fs_inode *ino);

/* Scope-bound references: `cleanup_iref struct iref p = iref_get(r, id);`
 * holds the inode and its fd (p.fd) until p goes out of scope; p.i is NULL
 * and p.err -errno if there is none (likewise href for fh, without err).
 * iref_of wraps a ref from inode_found/inode_known (no fd). */
struct iref {
    struct fs_session *s;
    struct fs_inode *i;
    int fd;  /* held for the op (iref_get), or -1 */
    int err; /* -errno when i is NULL */
};
struct href {
    struct fs_session *s;
    struct fs_handle *h;
};
static inline void iref_drop(struct iref *p)
{
    if (p->i && p->fd >= 0)
        inode_put_fd(p->s, p->i);
    else if (p->i)
        inode_put(p->s, p->i);
}
static inline void href_drop(struct href *p)
{
    if (p->h)
        handle_put(p->s, p->h);
}
static inline struct iref iref_get(struct fs_req *r, uint64_t nodeid)
{
    int fd = -ESTALE;
    struct fs_inode *i = inode_get(r->s, nodeid, &fd);
    return (struct iref){r->s, i, i ? fd : -1, i ? 0 : fd};
}
static inline struct iref iref_of(struct fs_session *s, struct fs_inode *i)
{
    return (struct iref){s, i, -1, i ? 0 : -ESTALE};
}
static inline struct href href_get(struct fs_req *r, uint64_t fh)
{
    return (struct href){r->s, handle_get(r->s, fh)};
}
#define cleanup_iref __attribute__((cleanup(iref_drop)))
#define cleanup_href __attribute__((cleanup(href_drop)))
