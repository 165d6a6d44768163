/* Error values in crun's style: functions return a negative int on failure
 * and fill a `struct err **`; callers add context on the way up; only main()
 * prints. */
#pragma once
#include <stdarg.h>

struct err {
    int code;  /* errno value that caused the error, or 0 */
    char *msg; /* full message, context first */
};

/* Create *err from errno `code` (0 for none) and a message; returns -1.
 * If code != 0, ": strerror(code)" is appended. */
int err_make(struct err **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An error in what the user gave (config, options): code EINVAL, and no
 * strerror suffix since the message says it all. Returns -1. */
int err_input(struct err **err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like err_make with a va_list. */
int err_makev(struct err **err, int code, const char *fmt, va_list ap);

/* Prepend "context: " to an existing *err; returns -1. */
int err_wrap(struct err **err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Free *err and set it to NULL; safe on NULL. */
void err_free(struct err **err);

/* errno recorded in *err, or 0. */
static inline int err_code(struct err *e) { return e ? e->code : 0; }
