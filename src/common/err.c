#include "common/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int err_makev(struct err **err, int code, const char *fmt, va_list ap)
{
    if (err == NULL)
        return -1;
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    if (msg != NULL && code != 0) {
        char *full = NULL;
        if (asprintf(&full, "%s: %s", msg, strerror(code)) >= 0) {
            free(msg);
            msg = full;
        }
    }
    err_free(err);
    struct err *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        free(msg);
        return -1;
    }
    e->code = code;
    e->msg = msg ? msg : strdup("out of memory");
    *err = e;
    return -1;
}

int err_make(struct err **err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_makev(err, code, fmt, ap);
    va_end(ap);
    return -1;
}

int err_input(struct err **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_makev(err, 0, fmt, ap);
    va_end(ap);
    if (err && *err)
        (*err)->code = EINVAL;
    return -1;
}

int err_wrap(struct err **err, const char *fmt, ...)
{
    if (err == NULL || *err == NULL)
        return -1;
    char *ctx = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&ctx, fmt, ap);
    va_end(ap);
    if (r < 0)
        return -1;
    char *full = NULL;
    if (asprintf(&full, "%s: %s", ctx, (*err)->msg ? (*err)->msg : "") >= 0) {
        free((*err)->msg);
        (*err)->msg = full;
    }
    free(ctx);
    return -1;
}

void err_free(struct err **err)
{
    if (err == NULL || *err == NULL)
        return;
    free((*err)->msg);
    free(*err);
    *err = NULL;
}
