/* cocoon's FUSE passthrough server: one transport-independent protocol core
 * (a request buffer in, a reply written into iovecs out) that serves a host
 * directory, and the /dev/fuse transport. The virtio-fs device feeds the same
 * core from virtqueues. Every request is treated as hostile. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct err;
struct fs_session;

#define FS_MAX_IDMAP 8

/* One range of an id map: guest ids [guest, guest+count) are host ids
 * [host, host+count). */
struct fs_idmap_range {
    uint32_t host, guest, count;
};

struct fs_idmap {
    struct fs_idmap_range r[FS_MAX_IDMAP];
    unsigned n; /* 0: identity */
};

struct fs_options {
    double attr_timeout;  /* seconds the kernel may cache attributes */
    double entry_timeout; /* seconds the kernel may cache names */
    unsigned threads;     /* workers of the /dev/fuse transport */
    unsigned max_pages;   /* largest READ/WRITE in pages (FUSE_MAX_PAGES) */
    unsigned spin_us;     /* /dev/fuse: an idle worker polls this long before sleeping */
    unsigned inode_fds;   /* most O_PATH fds kept open for idle inodes; 0: from RLIMIT_NOFILE */
    bool writeback;       /* FUSE_WRITEBACK_CACHE */
    bool passthrough;     /* FUSE_PASSTHROUGH to backing files, if the kernel agrees */
    bool uring;           /* /dev/fuse: FUSE over io_uring, if the kernel allows it */
    bool readonly;        /* refuse every change with EROFS */
    bool local_locks;     /* POSIX locks kept by the kernel (not on the host): no FLUSH */
    bool allow_other;     /* mount option: other users may use the mount */
    bool dev, suid;       /* mount options: honour device nodes / set-id bits */
    struct fs_idmap uidmap, gidmap;
};

/* Transport hooks (any may be NULL): register a host fd as a FUSE backing
 * file and return its id (>0) or -errno, and drop such an id (/dev/fuse
 * passthrough); map [foffset, foffset + len) of the file open at fd into
 * the DAX window at moffset (read-only unless `write`), and unmap a range
 * of the window again, each 0 or -errno (virtio-fs; offsets and lengths
 * are page-aligned and checked against the file, not the window). */
struct fs_transport {
    void *ctx;
    int (*backing_open)(void *ctx, int fd);
    void (*backing_close)(void *ctx, int id);
    int (*map)(void *ctx, int fd, uint64_t foffset, uint64_t len, uint64_t moffset, bool write);
    int (*unmap)(void *ctx, uint64_t moffset, uint64_t len);
};

/* Fill *o with the defaults (1 s timeouts, 4 workers, 256 pages, passthrough,
 * allow_other, nodev, nosuid). */
void fs_options_default(struct fs_options *o);

/* Parse one comma-separated option list (mount -o style) into *o:
 * uidmap=H:G:N[/H:G:N...], gidmap=..., attr_timeout=S, entry_timeout=S,
 * timeout=S, threads=N, max_pages=N, writeback, nowriteback, passthrough,
 * nopassthrough, uring, nouring, ro, rw, allow_other, noallow_other, dev, nodev,
 * suid, nosuid, locks=host|local, spin_us=N, inode_fds=N.
 * Returns <0 with *err set on an unknown or malformed option. */
int fs_options_parse(struct fs_options *o, const char *list, struct err **err);

/* Parse "H:G:N[/H:G:N...]" (host:guest:count) into *m; <0 on junk. */
int fs_idmap_parse(struct fs_idmap *m, const char *s);

/* Map an id between host and guest (to_guest selects the direction); ids
 * outside every range map to the overflow id 65534. */
uint32_t fs_idmap_map(const struct fs_idmap *m, uint32_t id, bool to_guest);

/* Create a session serving the directory open at `rootfd` (any fd of the
 * directory; the session keeps its own O_PATH copy). `tr` may be NULL.
 * Returns 0, or <0 with *err set. */
int fs_session_new(int rootfd, const struct fs_options *o, const struct fs_transport *tr,
                   struct fs_session **out, struct err **err);

/* Close every fd the session holds and free it; NULL is fine. */
void fs_session_free(struct fs_session *s);

/* Handle one FUSE request (struct fuse_in_header + body, `in_len` bytes) and
 * write the reply (struct fuse_out_header + body) into `out`. Returns the
 * reply length, 0 when the request takes no reply (FORGET, INTERRUPT...), or
 * -EINVAL when the buffer is too short to hold a header (nothing to reply to).
 * Safe to call from several threads at once. */
ssize_t fs_session_handle(struct fs_session *s, const void *in, size_t in_len,
                          const struct iovec *out, int out_cnt);

/* Bytes a reply buffer needs for any request of this session (header + the
 * largest READ), and a request buffer for the largest WRITE. */
size_t fs_session_bufsize(const struct fs_session *s);

/* True once FUSE_DESTROY was handled (the transport may stop). */
bool fs_session_destroyed(const struct fs_session *s);

/* Number of inodes the session currently knows (the root included). */
size_t fs_session_inodes(struct fs_session *s);

/* Mount `src` on `dir` through /dev/fuse and serve it until the mount goes
 * away or SIGTERM/SIGINT arrives (then unmount). With `daemon`, return in
 * the parent once the mount is ready and serve in a detached child.
 * Returns 0, or <0 with *err set (nothing is left mounted). */
int fs_mount_serve(const char *src, const char *dir, const struct fs_options *o, bool daemon,
                   struct err **err);

/* Serve the directory at `rootfd` on `devfd`, a /dev/fuse fd that another
 * process mounts (`cocoon attach --fuse`), until the connection ends: the
 * last mount is gone, or the connection is aborted. Call it once the mount
 * exists (reads fail before). Returns 0, or <0 with *err set. */
int fs_serve_fd(int devfd, int rootfd, const struct fs_options *o, struct err **err);

/* Unmount a FUSE mount at `dir` (lazy if busy). */
int fs_umount(const char *dir, struct err **err);
