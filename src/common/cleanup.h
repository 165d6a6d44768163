/* Scope-bound cleanup (crun style): `cleanup_free char *p = ...;` frees p
 * when it goes out of scope; ownership moves out with steal_pointer(). */
#pragma once
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/err.h"

static inline void cleanup_freep(void *p)
{
    void **pp = (void **)p;
    free(*pp);
}

static inline void cleanup_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

static inline void cleanup_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

static inline void cleanup_closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

static inline void cleanup_errp(struct err **e)
{
    err_free(e);
}

/* Free a NULL-terminated vector of strings. */
static inline void strv_free(char **v)
{
    if (v == NULL)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static inline void cleanup_strvp(char ***v)
{
    strv_free(*v);
}

#define cleanup_free __attribute__((cleanup(cleanup_freep)))
#define cleanup_close __attribute__((cleanup(cleanup_closep)))
#define cleanup_fclose __attribute__((cleanup(cleanup_fclosep)))
#define cleanup_dir __attribute__((cleanup(cleanup_closedirp)))
#define cleanup_err __attribute__((cleanup(cleanup_errp)))
#define cleanup_strv __attribute__((cleanup(cleanup_strvp)))

/* Return *pp and set it to NULL: moves ownership out of a cleanup variable. */
static inline void *steal_ptr(void *pp)
{
    void **p = (void **)pp;
    void *v = *p;
    *p = NULL;
    return v;
}
#define steal_pointer(pp) ((__typeof__(*(pp)))steal_ptr(pp))

/* Return *fd and set it to -1. */
static inline int steal_fd(int *fd)
{
    int v = *fd;
    *fd = -1;
    return v;
}

/* Close *fd if open and set it to -1. */
static inline void close_and_reset(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}
