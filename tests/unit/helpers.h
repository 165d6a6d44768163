/* Shared helpers of the cmocka unit tests: temp trees, error assertions,
 * fd accounting. Everything is static inline so each test binary only
 * keeps what it uses. */
#pragma once
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"

/* *err is set and its message contains `needle`. */
#define assert_err_contains(e, needle)                                                      \
    do {                                                                                    \
        const struct err *e_ = (e);                                                         \
        const char *n_ = (needle);                                                          \
        if (e_ == NULL)                                                                     \
            fail_msg("expected an error containing `%s`, got none", n_);                    \
        if (e_->msg == NULL || strstr(e_->msg, n_) == NULL)                                 \
            fail_msg("error `%s` does not contain `%s`", e_->msg ? e_->msg : "(null)", n_); \
    } while (0)

static inline int rm_rf_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* rm -rf path (never follows symlinks). */
static inline void rm_rf(const char *path)
{
    if (path)
        nftw(path, rm_rf_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A new empty directory under $TMPDIR (or /tmp); the caller frees the name. */
static inline char *make_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    char *dir = xasprintf("%s/cocoon-%s.XXXXXX", base, tag);
    if (mkdtemp(dir) == NULL)
        fail_msg("mkdtemp in %s: %s", base, strerror(errno));
    return dir;
}

/* Number of open fds of this process. */
static inline int count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the fd of d itself */
}

/* Create file `path` (relative to dirfd) with `content`. */
static inline void put_file(int dirfd, const char *path, const char *content)
{
    int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        fail_msg("create %s: %s", path, strerror(errno));
    size_t len = strlen(content);
    if (write(fd, content, len) != (ssize_t)len)
        fail_msg("write %s: %s", path, strerror(errno));
    close(fd);
}

/* True if `path` (relative to dirfd) exists, symlinks not followed. */
static inline bool exists_at(int dirfd, const char *path)
{
    struct stat st;
    return fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}
