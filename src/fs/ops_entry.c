/* Name and inode ops: LOOKUP, FORGET, GETATTR, SETATTR, READLINK, the
 * creators (SYMLINK, MKNOD, MKDIR, LINK), UNLINK, RMDIR, RENAME, STATFS,
 * ACCESS, SYNCFS. Every name is resolved with *at() relative to its parent's
 * O_PATH fd and O_NOFOLLOW: nothing follows a symlink. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "fs/fs_internal.h"

/* Look `name` up in the directory open at dirfd and reply its entry
 * (nlookup+1). */
static int lookup_child(struct fs_req *r, int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return neg_errno();
    struct stat st;
    if (inode_stat(fd, &st) < 0) {
        int e = neg_errno();
        close(fd);
        return e;
    }
    cleanup_iref struct iref c = iref_of(r->s, inode_found(r->s, fd, &st));
    if (c.i == NULL)
        return neg_errno();
    int e = reply_entry(r, c.i, &st);
    if (e < 0)
        inode_forget(r->s, c.i->nodeid, 1);
    return e;
}

/* "." and "..": the directory itself or its parent, but only inodes the
 * table knows (so never above the root: ".." of the root is the root). */
static int lookup_dots(struct fs_req *r, const struct iref *dir, const char *name)
{
    struct stat st;
    if (dir->i->type != S_IFDIR)
        return -ENOTDIR;
    if (name[1] == '\0' || dir->i == r->s->root) {
        if (inode_stat(dir->fd, &st) < 0)
            return neg_errno();
        inode_lookup_again(r->s, dir->i);
        int e = reply_entry(r, dir->i, &st);
        if (e < 0)
            inode_forget(r->s, dir->i->nodeid, 1);
        return e;
    }
    int fd = openat(dir->fd, "..", O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return neg_errno();
    if (inode_stat(fd, &st) < 0) {
        int e = neg_errno();
        close(fd);
        return e;
    }
    cleanup_iref struct iref c = iref_of(r->s, inode_known(r->s, fd, &st));
    if (c.i == NULL)
        return -ENOENT;
    int e = reply_entry(r, c.i, &st);
    if (e < 0)
        inode_forget(r->s, c.i->nodeid, 1);
    return e;
}

int op_lookup(struct fs_req *r)
{
    const char *name;
    int e = req_name(r, &name, true);
    if (e < 0)
        return e;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
        return lookup_dots(r, &p, name);
    if (p.i->type != S_IFDIR)
        return -ENOTDIR;
    e = lookup_child(r, p.fd, name);
    if (e == -ENOENT) {
        /* A negative entry the kernel may cache for entry_timeout. */
        struct fuse_entry_out neg = {0};
        timeout_split(r->s->opt.entry_timeout, &neg.entry_valid, &neg.entry_valid_nsec);
        return neg.entry_valid || neg.entry_valid_nsec ? reply_put(r, &neg, sizeof(neg)) : e;
    }
    return e;
}

int op_forget(struct fs_req *r)
{
    struct fuse_forget_in in;
    if (req_get(r, &in, sizeof(in)) == 0)
        inode_forget(r->s, r->h.nodeid, in.nlookup);
    return FS_NOREPLY;
}

int op_batch_forget(struct fs_req *r)
{
    struct fuse_batch_forget_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return FS_NOREPLY;
    struct fuse_forget_one one;
    for (uint32_t i = 0; i < in.count && req_get(r, &one, sizeof(one)) == 0; i++)
        inode_forget(r->s, one.nodeid, one.nlookup);
    return FS_NOREPLY;
}

static int reply_attr(struct fs_req *r, const struct stat *st)
{
    struct fuse_attr_out out = {0};
    timeout_split(attr_timeout_for(r->s, st), &out.attr_valid, &out.attr_valid_nsec);
    attr_fill(r->s, st, &out.attr);
    return reply_put(r, &out, sizeof(out));
}

int op_getattr(struct fs_req *r)
{
    struct fuse_getattr_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    struct stat st;
    if (inode_stat(p.fd, &st) < 0)
        return neg_errno();
    return reply_attr(r, &st);
}

/* The size change of SETATTR: on the open handle if given, else on a fresh
 * fd (regular files only). */
static int setattr_size(struct fs_req *r, const struct iref *p, const struct fuse_setattr_in *in)
{
    struct fs_inode *ino = p->i;
    if ((int64_t)in->size < 0)
        return -EINVAL;
    if (in->valid & FATTR_FH) {
        cleanup_href struct href h = href_get(r, in->fh);
        if (h.h && h.h->inode == ino && !h.h->is_dir)
            return ftruncate(h.h->fd, (off_t)in->size) < 0 ? neg_errno() : 0;
    }
    if (ino->type == S_IFDIR)
        return -EISDIR;
    if (ino->type != S_IFREG)
        return -EINVAL;
    cleanup_close int fd = inode_reopen(r->s, ino, p->fd, O_WRONLY | O_NONBLOCK);
    if (fd < 0)
        return neg_errno();
    return ftruncate(fd, (off_t)in->size) < 0 ? neg_errno() : 0;
}

static int setattr_times(int fd, const struct fuse_setattr_in *in)
{
    struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
    if (in->valid & FATTR_ATIME_NOW)
        ts[0].tv_nsec = UTIME_NOW;
    else if (in->valid & FATTR_ATIME)
        ts[0] = (struct timespec){(time_t)in->atime, in->atimensec};
    if (in->valid & FATTR_MTIME_NOW)
        ts[1].tv_nsec = UTIME_NOW;
    else if (in->valid & FATTR_MTIME)
        ts[1] = (struct timespec){(time_t)in->mtime, in->mtimensec};
    if ((ts[0].tv_nsec != UTIME_NOW && ts[0].tv_nsec != UTIME_OMIT && ts[0].tv_nsec >= 1000000000) ||
        (ts[1].tv_nsec != UTIME_NOW && ts[1].tv_nsec != UTIME_OMIT && ts[1].tv_nsec >= 1000000000))
        return -EINVAL;
    if (utimensat(fd, "", ts, AT_EMPTY_PATH) < 0)
        return neg_errno();
    return 0;
}

int op_setattr(struct fs_req *r)
{
    struct fuse_setattr_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    struct fs_inode *ino = p.i;
    char name[16];
    snprintf(name, sizeof(name), "%d", p.fd);
    /* chown(f, -1, -1) reaches us as a SETATTR that sets nothing (the
     * kernel drops its kill-set-id bits, which only an id change carries
     * under KILLPRIV_V2): the same call on the host updates ctime and
     * drops set-uid, set-gid (with group-exec) and file capabilities, as
     * the caller's own chown does natively. */
    if ((in.valid & ~(uint32_t)(FATTR_FH | FATTR_LOCKOWNER | FATTR_CTIME)) == 0 &&
        fchownat(p.fd, "", (uid_t)-1, (gid_t)-1, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        return neg_errno();
    if (in.valid & (FATTR_UID | FATTR_GID)) {
        uid_t uid = (in.valid & FATTR_UID) ? fs_idmap_map(&r->s->opt.uidmap, in.uid, false)
                                           : (uid_t)-1;
        gid_t gid = (in.valid & FATTR_GID) ? fs_idmap_map(&r->s->opt.gidmap, in.gid, false)
                                           : (gid_t)-1;
        if (fchownat(p.fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
            return neg_errno();
    }
    /* After chown: a root chown clears set-id bits that a mode change in
     * the same request sets again. */
    if (in.valid & FATTR_MODE) {
        if (ino->type == S_IFLNK)
            return -EOPNOTSUPP;
        if (fchmodat(r->s->proc_fd, name, in.mode & 07777, 0) < 0)
            return neg_errno();
    }
    if (in.valid & FATTR_SIZE) {
        int e = setattr_size(r, &p, &in);
        if (e < 0)
            return e;
    }
    if ((in.valid & FATTR_KILL_SUIDGID) && !(in.valid & FATTR_MODE)) {
        /* A chown by root keeps set-gid, as locally (the host's chown as
         * root already cleared set-uid); anything else clears both. */
        bool chown = in.valid & (FATTR_UID | FATTR_GID);
        int e = kill_suidgid(r->s, p.fd, !(chown && r->h.uid == 0));
        if (e < 0)
            return e;
    }
    if (in.valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)) {
        int e = setattr_times(p.fd, &in);
        if (e < 0)
            return e;
    }
    struct stat st;
    if (inode_stat(p.fd, &st) < 0)
        return neg_errno();
    return reply_attr(r, &st);
}

int op_readlink(struct fs_req *r)
{
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    if (p.i->type != S_IFLNK)
        return -EINVAL;
    char buf[PATH_MAX];
    ssize_t n = readlinkat(p.fd, "", buf, sizeof(buf));
    if (n < 0)
        return neg_errno();
    return reply_put(r, buf, (size_t)n);
}

/* The common end of the creators: look the new name up in the directory
 * open at dirfd. */
static int created(struct fs_req *r, int dirfd, const char *name, int rc)
{
    if (rc < 0)
        return rc;
    return lookup_child(r, dirfd, name);
}

int op_symlink(struct fs_req *r)
{
    const char *name, *target;
    int e = req_name(r, &name, false);
    if (e < 0 || (e = req_str(r, &target, PATH_MAX - 1)) < 0)
        return e;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    int tok = creds_enter(r);
    int rc = symlinkat(target, p.fd, name) < 0 ? neg_errno() : 0;
    creds_restore(tok);
    return created(r, p.fd, name, rc);
}

int op_mknod(struct fs_req *r)
{
    struct fuse_mknod_in in;
    const char *name;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    int e = req_name(r, &name, false);
    if (e < 0)
        return e;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    int tok = creds_enter(r);
    int rc = mknodat(p.fd, name, in.mode, in.rdev) < 0 ? neg_errno() : 0;
    creds_restore(tok);
    return created(r, p.fd, name, rc);
}

int op_mkdir(struct fs_req *r)
{
    struct fuse_mkdir_in in;
    const char *name;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    int e = req_name(r, &name, false);
    if (e < 0)
        return e;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    int tok = creds_enter(r);
    int rc = mkdirat(p.fd, name, in.mode & 07777) < 0 ? neg_errno() : 0;
    creds_restore(tok);
    return created(r, p.fd, name, rc);
}

int op_link(struct fs_req *r)
{
    struct fuse_link_in in;
    const char *name;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    int e = req_name(r, &name, false);
    if (e < 0)
        return e;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    cleanup_iref struct iref old = iref_get(r, in.oldnodeid);
    if (old.i == NULL)
        return old.err;
    if (old.i->type == S_IFDIR)
        return -EPERM;
    if (linkat(old.fd, "", p.fd, name, AT_EMPTY_PATH) < 0)
        return neg_errno();
    struct stat st;
    if (inode_stat(old.fd, &st) < 0)
        return neg_errno();
    e = reply_entry(r, old.i, &st);
    if (e == 0)
        inode_lookup_again(r->s, old.i);
    return e;
}

static int remove_name(struct fs_req *r, int flags)
{
    const char *name;
    int e = req_name(r, &name, false);
    if (e < 0)
        return e;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    return unlinkat(p.fd, name, flags) < 0 ? neg_errno() : 0;
}

int op_unlink(struct fs_req *r)
{
    return remove_name(r, 0);
}

int op_rmdir(struct fs_req *r)
{
    return remove_name(r, AT_REMOVEDIR);
}

static int do_rename(struct fs_req *r, uint64_t newdir, uint32_t flags)
{
    const char *old, *new;
    int e = req_name(r, &old, false);
    if (e < 0 || (e = req_name(r, &new, false)) < 0)
        return e;
    if (flags & ~(uint32_t)(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT))
        return -EINVAL;
    cleanup_iref struct iref a = iref_get(r, r->h.nodeid);
    if (a.i == NULL)
        return a.err;
    cleanup_iref struct iref b = iref_get(r, newdir);
    if (b.i == NULL)
        return b.err;
    if (renameat2(a.fd, old, b.fd, new, flags) < 0)
        return neg_errno();
    return 0;
}

int op_rename(struct fs_req *r)
{
    struct fuse_rename_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    return do_rename(r, in.newdir, 0);
}

int op_rename2(struct fs_req *r)
{
    struct fuse_rename2_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    return do_rename(r, in.newdir, in.flags);
}

int op_statfs(struct fs_req *r)
{
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    struct statfs sf;
    if (fstatfs(p.fd, &sf) < 0)
        return neg_errno();
    struct fuse_statfs_out out = {.st = {
        .blocks = sf.f_blocks, .bfree = sf.f_bfree, .bavail = sf.f_bavail,
        .files = sf.f_files, .ffree = sf.f_ffree, .bsize = (uint32_t)sf.f_bsize,
        .namelen = (uint32_t)sf.f_namelen, .frsize = (uint32_t)sf.f_frsize,
    }};
    return reply_put(r, &out, sizeof(out));
}

int op_access(struct fs_req *r)
{
    struct fuse_access_in in;
    if (req_get(r, &in, sizeof(in)) < 0)
        return -EINVAL;
    cleanup_iref struct iref p = iref_get(r, r->h.nodeid);
    if (p.i == NULL)
        return p.err;
    struct stat st;
    if (inode_stat(p.fd, &st) < 0)
        return neg_errno();
    uint32_t mask = in.mask & 7;
    if (mask == 0)
        return 0;
    /* The caller's view: its ids against the guest-side owner of the file. */
    uint32_t uid = fs_idmap_map(&r->s->opt.uidmap, st.st_uid, true);
    uint32_t gid = fs_idmap_map(&r->s->opt.gidmap, st.st_gid, true);
    unsigned bits;
    if (r->h.uid == 0) {
        bits = 6 | ((S_ISDIR(st.st_mode) || (st.st_mode & 0111)) ? 1 : 0);
    } else if (r->h.uid == uid) {
        bits = (st.st_mode >> 6) & 7;
    } else if (r->h.gid == gid) {
        bits = (st.st_mode >> 3) & 7;
    } else {
        bits = st.st_mode & 7;
    }
    return (mask & ~bits) ? -EACCES : 0;
}

int op_syncfs(struct fs_req *r)
{
    /* The root keeps its fd for the session's life (it has no handle). */
    cleanup_close int fd = openat(r->s->root->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return neg_errno();
    return syncfs(fd) < 0 ? neg_errno() : 0;
}
