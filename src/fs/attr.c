/* Helpers shared by the ops: attributes and entries in FUSE form, timeouts,
 * and running creation syscalls as the caller. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <linux/securebits.h>

#include "fs/fs_internal.h"

int kill_suidgid(struct fs_session *s, int fd, bool sgid)
{
    struct stat st;
    if (inode_stat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    mode_t m = st.st_mode & 07777;
    mode_t want = m & ~(mode_t)S_ISUID;
    if (sgid && (m & S_IXGRP))
        want &= ~(mode_t)S_ISGID;
    if (want == m)
        return 0;
    char name[16];
    snprintf(name, sizeof(name), "%d", fd);
    return fchmodat(s->proc_fd, name, want, 0) < 0 ? neg_errno() : 0;
}

int neg_errno(void)
{
    return errno > 0 ? -errno : -EIO;
}

void timeout_split(double t, uint64_t *sec, uint32_t *nsec)
{
    if (t <= 0) {
        *sec = 0;
        *nsec = 0;
        return;
    }
    *sec = (uint64_t)t;
    *nsec = (uint32_t)((t - (double)*sec) * 1e9);
    if (*nsec >= 1000000000u)
        *nsec = 999999999u;
}

double attr_timeout_for(const struct fs_session *s, const struct stat *st)
{
    if (S_ISREG(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)))
        return 0;
    return s->opt.attr_timeout;
}

void attr_fill(const struct fs_session *s, const struct stat *st, struct fuse_attr *a)
{
    memset(a, 0, sizeof(*a));
    a->ino = st->st_ino;
    a->size = (uint64_t)st->st_size;
    a->blocks = (uint64_t)st->st_blocks;
    a->atime = (uint64_t)st->st_atim.tv_sec;
    a->mtime = (uint64_t)st->st_mtim.tv_sec;
    a->ctime = (uint64_t)st->st_ctim.tv_sec;
    a->atimensec = (uint32_t)st->st_atim.tv_nsec;
    a->mtimensec = (uint32_t)st->st_mtim.tv_nsec;
    a->ctimensec = (uint32_t)st->st_ctim.tv_nsec;
    a->mode = st->st_mode;
    a->nlink = (uint32_t)st->st_nlink;
    a->uid = fs_idmap_map(&s->opt.uidmap, st->st_uid, true);
    a->gid = fs_idmap_map(&s->opt.gidmap, st->st_gid, true);
    a->rdev = (uint32_t)st->st_rdev;
    a->blksize = (uint32_t)st->st_blksize;
}

int reply_entry(struct fs_req *r, const struct fs_inode *ino, const struct stat *st)
{
    struct fuse_entry_out e = {.nodeid = ino->nodeid};
    timeout_split(r->s->opt.entry_timeout, &e.entry_valid, &e.entry_valid_nsec);
    timeout_split(attr_timeout_for(r->s, st), &e.attr_valid, &e.attr_valid_nsec);
    attr_fill(r->s, st, &e.attr);
    return reply_put(r, &e, sizeof(e));
}

/* Per thread: whether changing fsuid keeps our capabilities (securebit
 * NO_SETUID_FIXUP), 0 = not tried yet, -1 = impossible. */
static __thread int keep_caps;

int creds_enter(struct fs_req *r)
{
    struct fs_session *s = r->s;
    uint32_t uid = fs_idmap_map(&s->opt.uidmap, r->h.uid, false);
    uint32_t gid = fs_idmap_map(&s->opt.gidmap, r->h.gid, false);
    if (!s->am_root || (uid == 0 && gid == 0))
        return 0;
    if (keep_caps == 0) {
        int bits = prctl(PR_GET_SECUREBITS);
        keep_caps = bits >= 0 && prctl(PR_SET_SECUREBITS, bits | SECBIT_NO_SETUID_FIXUP) == 0
                        ? 1
                        : -1;
    }
    if (keep_caps < 0)
        return 0;
    /* New files get the caller's ids (or the directory's group under a
     * setgid directory), as on a local filesystem; our capabilities stay. */
    setfsgid(gid);
    setfsuid(uid);
    return 1;
}

void creds_restore(int token)
{
    if (token == 0)
        return;
    int e = errno;
    setfsuid(0);
    setfsgid(0);
    errno = e;
}
