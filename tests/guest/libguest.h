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

#define G_MEMMAP_MAX 16

struct g_memmap {
    uint64_t addr, size;
    uint32_t type;
};

/* What the VMM handed over, from hvm_start_info (kind 0) or boot_params
 * (kind 1). */
struct g_boot {
    int kind;
    int magic_ok;           /* the structure's magic and version are right */
    const char *cmdline;
    struct g_memmap memmap[G_MEMMAP_MAX];
    uint32_t memmap_n;
    uint32_t nr_modules;
    uint64_t initrd, initrd_size;
};

/* Each test guest's checks, run at CPL3; must end with g_exit or g_fail. */
void guest_main(const struct g_boot *b);

#define G_CHECK(cond, ...) do { if (!(cond)) g_fail(__VA_ARGS__); } while (0)
