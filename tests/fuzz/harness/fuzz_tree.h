/* Scratch directory trees of the harnesses that serve files (FUSE,
 * virtio-fs, vhost-user). */
#pragma once
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static int fuzz_tree_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    if (f->level > 0)
        remove(p);
    return 0;
}

/* Remove everything under dir (not dir itself: a server may hold it open). */
static inline void fuzz_tree_empty(const char *dir)
{
    nftw(dir, fuzz_tree_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}
