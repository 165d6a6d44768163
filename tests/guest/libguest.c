#include "libguest.h"

#include <stdarg.h>

static struct ucall uc __attribute__((aligned(64)));

size_t g_strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

int g_strncmp(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i] || !a[i])
            return (unsigned char)a[i] - (unsigned char)b[i];
    }
    return 0;
}

void *memset(void *d, int c, size_t n)
{
    unsigned char *p = d;
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

static void put(char *buf, size_t n, size_t *o, char c)
{
    if (*o + 1 < n)
        buf[(*o)++] = c;
}

static void put_num(char *buf, size_t n, size_t *o, uint64_t v, unsigned base, int neg)
{
    char tmp[24];
    int i = 0;
    if (neg)
        put(buf, n, o, '-');
    do {
        unsigned d = (unsigned)(v % base);
        tmp[i++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    while (i--)
        put(buf, n, o, tmp[i]);
}

static void vfmt(char *buf, size_t n, const char *fmt, va_list ap)
{
    size_t o = 0;
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put(buf, n, &o, *f);
            continue;
        }
        int lng = 0;
        f++;
        while (*f == 'l') {
            lng = 1;
            f++;
        }
        switch (*f) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            while (s && *s)
                put(buf, n, &o, *s++);
            break;
        }
        case 'd': {
            int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            put_num(buf, n, &o, (uint64_t)(v < 0 ? -v : v), 10, v < 0);
            break;
        }
        case 'u': put_num(buf, n, &o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, 0); break;
        case 'x': put_num(buf, n, &o, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, 0); break;
        case '%': put(buf, n, &o, '%'); break;
        default: put(buf, n, &o, '?');
        }
    }
    if (n)
        buf[o < n ? o : n - 1] = '\0';
}

void g_snprintf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfmt(buf, n, fmt, ap);
    va_end(ap);
}

int g_cmdline_get(const char *cmdline, const char *key, char *out, size_t n)
{
    size_t kl = g_strlen(key);
    for (const char *p = cmdline; p && *p;) {
        while (*p == ' ')
            p++;
        if (g_strncmp(p, key, kl) == 0 && p[kl] == '=') {
            p += kl + 1;
            size_t i = 0;
            while (*p && *p != ' ' && i + 1 < n)
                out[i++] = *p++;
            out[i] = '\0';
            return 1;
        }
        while (*p && *p != ' ')
            p++;
    }
    return 0;
}

uint64_t g_parse_u64(const char *s)
{
    uint64_t v = 0;
    if (s[0] == '0' && s[1] == 'x') {
        for (s += 2; *s; s++)
            v = v * 16 + (uint64_t)(*s <= '9' ? *s - '0' : (*s | 0x20) - 'a' + 10);
        return v;
    }
    for (; *s >= '0' && *s <= '9'; s++)
        v = v * 10 + (uint64_t)(*s - '0');
    return v;
}

static void ucall(uint64_t cmd, uint64_t arg0, const char *fmt, va_list ap)
{
    uc.cmd = cmd;
    uc.args[0] = arg0;
    if (fmt)
        vfmt(uc.msg, sizeof(uc.msg), fmt, ap);
    else
        uc.msg[0] = '\0';
    /* identity mapped: the virtual address is the guest-physical one */
    *(volatile uint32_t *)(uintptr_t)COCOON_DEBUG_MMIO = (uint32_t)(uintptr_t)&uc;
}

void g_print(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ucall(UCALL_PRINT, 0, fmt, ap);
    va_end(ap);
}

void g_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ucall(UCALL_FAIL, 0, fmt, ap);
    va_end(ap);
    for (;;)
        ;
}

void g_exit(uint64_t status)
{
    va_list ap;
    memset(&ap, 0, sizeof(ap));
    ucall(UCALL_EXIT, status, NULL, ap);
    for (;;)
        ;
}
