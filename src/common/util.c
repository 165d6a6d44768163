#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"

int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int read_file_at(int dirfd, const char *path, size_t max, char **out, size_t *len,
                 struct err **err)
{
    cleanup_close int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return err_make(err, errno, "open `%s`", path);
    size_t cap = 4096, n = 0;
    cleanup_free char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        cap = (size_t)st.st_size + 1;
    /* One byte more than max lets a file of exactly max bytes be told
     * apart from a larger one, plus one for the NUL. */
    if (cap > max + 2)
        cap = max + 2;
    buf = xmalloc(cap);
    for (;;) {
        if (n > max)
            return err_make(err, EFBIG, "read `%s`", path);
        if (n + 1 >= cap) {
            cap = cap * 2 > max + 2 ? max + 2 : cap * 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL)
                return err_make(err, ENOMEM, "read `%s`", path);
            buf = nb;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return err_make(err, errno, "read `%s`", path);
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max)
        return err_make(err, EFBIG, "read `%s`", path);
    buf[n] = '\0';
    if (len)
        *len = n;
    *out = steal_pointer(&buf);
    return 0;
}

int write_file_at(int dirfd, const char *path, const void *data, size_t len, struct err **err)
{
    cleanup_close int fd =
        openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return err_make(err, errno, "open `%s`", path);
    if (write_all(fd, data, len) < 0)
        return err_make(err, errno, "write `%s`", path);
    return 0;
}

int write_file_atomic(int dirfd, const char *name, const void *data, size_t len,
                      struct err **err)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), ".%s.tmp", name) >= sizeof(tmp))
        return err_make(err, ENAMETOOLONG, "write `%s`", name);
    cleanup_close int fd =
        openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return err_make(err, errno, "create `%s`", tmp);
    if (write_all(fd, data, len) < 0) {
        int e = errno;
        unlinkat(dirfd, tmp, 0);
        return err_make(err, e, "write `%s`", tmp);
    }
    if (renameat(dirfd, tmp, dirfd, name) < 0) {
        int e = errno;
        unlinkat(dirfd, tmp, 0);
        return err_make(err, e, "rename `%s` to `%s`", tmp, name);
    }
    return 0;
}

void json_escape(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    if (outlen == 0)
        return;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        const char *rep = NULL;
        switch (c) {
        case '"': rep = "\\\""; break;
        case '\\': rep = "\\\\"; break;
        case '\n': rep = "\\n"; break;
        case '\r': rep = "\\r"; break;
        case '\t': rep = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof(tmp), "\\u%04x", c);
                rep = tmp;
            }
        }
        size_t need = rep ? strlen(rep) : 1;
        if (o + need >= outlen)
            break;
        if (rep) {
            memcpy(out + o, rep, need);
            o += need;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

int parse_int(const char *s, int *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < INT_MIN || v > INT_MAX)
        return -1;
    *out = (int)v;
    return 0;
}

size_t strv_len(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

char *xstrdup(const char *s)
{
    if (s == NULL)
        return NULL;
    char *p = strdup(s);
    if (p == NULL)
        abort();
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    char *p;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&p, fmt, ap);
    va_end(ap);
    if (r < 0)
        abort();
    return p;
}

int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
