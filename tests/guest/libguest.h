/* What a test guest has: no libc, a few string helpers, and ucalls. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "ucall.h"

size_t g_strlen(const char *s);
int g_strncmp(const char *a, const char *b, size_t n);
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);

/* Format into buf: %s %d %u %x %lu %lx (64-bit with l). */
void g_snprintf(char *buf, size_t n, const char *fmt, ...);

/* Value of `key=` in a kernel command line, copied into out; 0 if absent. */
int g_cmdline_get(const char *cmdline, const char *key, char *out, size_t n);

/* Parse an unsigned decimal or 0x hex number. */
uint64_t g_parse_u64(const char *s);

void g_print(const char *fmt, ...);
__attribute__((noreturn)) void g_fail(const char *fmt, ...);
__attribute__((noreturn)) void g_exit(uint64_t status);

#define G_CHECK(cond, ...) do { if (!(cond)) g_fail(__VA_ARGS__); } while (0)
