/* Small I/O and string helpers shared by every layer. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct err;

/* Write all of buf to fd, retrying on EINTR/short writes; <0 with errno set. */
int write_all(int fd, const void *buf, size_t len);

/* Read up to `max` bytes of file `path` (relative to dirfd) into a new
 * NUL-terminated buffer; *len gets the length. Fails with EFBIG past max. */
int read_file_at(int dirfd, const char *path, size_t max, char **out, size_t *len,
                 struct err **err);

/* Write data to path (relative to dirfd), create/truncate, no symlink follow. */
int write_file_at(int dirfd, const char *path, const void *data, size_t len, struct err **err);

/* Atomically replace `name` in dirfd: write a temp file then rename(2). */
int write_file_atomic(int dirfd, const char *name, const void *data, size_t len,
                      struct err **err);

/* Escape s as JSON string content into out (always NUL-terminated). */
void json_escape(const char *s, char *out, size_t outlen);

/* Parse a whole decimal string as an unsigned value in [0, max]. */
int parse_u64(const char *s, uint64_t max, uint64_t *out);

/* Parse a whole decimal string as a signed int. */
int parse_int(const char *s, int *out);

/* Number of entries in a NULL-terminated string vector (0 for NULL). */
size_t strv_len(char *const *v);

/* Milliseconds on CLOCK_MONOTONIC (for deadlines). */
int64_t mono_ms(void);

/* True if s starts with prefix. */
static inline bool str_has_prefix(const char *s, const char *prefix)
{
    while (*prefix)
        if (*s++ != *prefix++)
            return false;
    return true;
}

/* malloc that aborts on out-of-memory (a runtime cannot continue sanely). */
void *xmalloc(size_t n);
/* calloc that aborts on out-of-memory. */
void *xcalloc(size_t n, size_t size);
/* realloc() that aborts on exhaustion. */
void *xrealloc(void *p, size_t n);
/* strdup that aborts on out-of-memory; NULL in, NULL out. */
char *xstrdup(const char *s);
/* asprintf that aborts on out-of-memory and returns the string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
