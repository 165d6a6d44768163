/* Options of the FUSE server (mount -o style) and uid/gid maps. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "fs/fs.h"

#define FS_OVERFLOW_ID 65534u
#define FS_MAX_PAGES_LIMIT 256 /* the kernel's FUSE_MAX_MAX_PAGES */

void fs_options_default(struct fs_options *o)
{
    *o = (struct fs_options){
        .attr_timeout = 1.0,
        .entry_timeout = 1.0,
        .threads = 4,
        .max_pages = FS_MAX_PAGES_LIMIT,
        .passthrough = true,
        .uring = true,
        .allow_other = true,
    };
}

static int parse_u32_field(const char **s, uint32_t *out)
{
    const char *p = *s;
    if (*p < '0' || *p > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    *s = end;
    return 0;
}

int fs_idmap_parse(struct fs_idmap *m, const char *s)
{
    struct fs_idmap tmp = {0};
    if (s == NULL || *s == '\0')
        return -1;
    for (;;) {
        if (tmp.n == FS_MAX_IDMAP)
            return -1;
        struct fs_idmap_range *r = &tmp.r[tmp.n];
        if (parse_u32_field(&s, &r->host) < 0 || *s++ != ':' ||
            parse_u32_field(&s, &r->guest) < 0 || *s++ != ':' ||
            parse_u32_field(&s, &r->count) < 0 || r->count == 0)
            return -1;
        /* Both ranges must fit in 32 bits. */
        if ((uint64_t)r->host + r->count - 1 > UINT32_MAX ||
            (uint64_t)r->guest + r->count - 1 > UINT32_MAX)
            return -1;
        tmp.n++;
        if (*s == '\0')
            break;
        if (*s++ != '/')
            return -1;
    }
    *m = tmp;
    return 0;
}

uint32_t fs_idmap_map(const struct fs_idmap *m, uint32_t id, bool to_guest)
{
    if (m->n == 0)
        return id;
    for (unsigned i = 0; i < m->n; i++) {
        const struct fs_idmap_range *r = &m->r[i];
        uint32_t from = to_guest ? r->host : r->guest;
        uint32_t to = to_guest ? r->guest : r->host;
        if (id >= from && id - from < r->count)
            return to + (id - from);
    }
    return FS_OVERFLOW_ID;
}

static int parse_seconds(const char *v, double *out)
{
    if (v == NULL || *v == '\0')
        return -1;
    errno = 0;
    char *end;
    double d = strtod(v, &end);
    if (errno || *end || !isfinite(d) || d < 0 || d > 86400.0 * 365)
        return -1;
    *out = d;
    return 0;
}

static int parse_one(struct fs_options *o, char *opt, struct err **err)
{
    char *val = strchr(opt, '=');
    if (val)
        *val++ = '\0';
    static const struct {
        const char *name;
        size_t off;
        bool value;
    } flags[] = {
        {"writeback", offsetof(struct fs_options, writeback), true},
        {"nowriteback", offsetof(struct fs_options, writeback), false},
        {"passthrough", offsetof(struct fs_options, passthrough), true},
        {"nopassthrough", offsetof(struct fs_options, passthrough), false},
        {"uring", offsetof(struct fs_options, uring), true},
        {"nouring", offsetof(struct fs_options, uring), false},
        {"ro", offsetof(struct fs_options, readonly), true},
        {"rw", offsetof(struct fs_options, readonly), false},
        {"allow_other", offsetof(struct fs_options, allow_other), true},
        {"noallow_other", offsetof(struct fs_options, allow_other), false},
        {"dev", offsetof(struct fs_options, dev), true},
        {"nodev", offsetof(struct fs_options, dev), false},
        {"suid", offsetof(struct fs_options, suid), true},
        {"nosuid", offsetof(struct fs_options, suid), false},
    };
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (strcmp(opt, flags[i].name) != 0)
            continue;
        if (val)
            return err_input(err, "fs option `%s` takes no value", opt);
        *(bool *)((char *)o + flags[i].off) = flags[i].value;
        return 0;
    }
    if (val == NULL)
        return err_input(err, "unknown fs option `%s`", opt);
    uint64_t n;
    if (strcmp(opt, "uidmap") == 0 || strcmp(opt, "gidmap") == 0) {
        if (fs_idmap_parse(opt[0] == 'u' ? &o->uidmap : &o->gidmap, val) < 0)
            return err_input(err, "fs option %s=`%s`: want HOST:GUEST:COUNT[/...]", opt, val);
    } else if (strcmp(opt, "attr_timeout") == 0 || strcmp(opt, "entry_timeout") == 0 ||
               strcmp(opt, "timeout") == 0) {
        double d;
        if (parse_seconds(val, &d) < 0)
            return err_input(err, "fs option %s=`%s`: want seconds", opt, val);
        if (opt[0] != 'e')
            o->attr_timeout = d;
        if (opt[0] != 'a')
            o->entry_timeout = d;
    } else if (strcmp(opt, "threads") == 0) {
        if (parse_u64(val, 64, &n) < 0 || n == 0)
            return err_input(err, "fs option threads=`%s`: want 1..64", val);
        o->threads = (unsigned)n;
    } else if (strcmp(opt, "locks") == 0) {
        if (strcmp(val, "host") != 0 && strcmp(val, "local") != 0)
            return err_input(err, "fs option locks=`%s`: want host or local", val);
        o->local_locks = val[0] == 'l';
    } else if (strcmp(opt, "spin_us") == 0) {
        if (parse_u64(val, 10000, &n) < 0)
            return err_input(err, "fs option spin_us=`%s`: want 0..10000", val);
        o->spin_us = (unsigned)n;
    } else if (strcmp(opt, "inode_fds") == 0) {
        if (parse_u64(val, 1u << 20, &n) < 0 || n == 0)
            return err_input(err, "fs option inode_fds=`%s`: want 1..1048576", val);
        o->inode_fds = (unsigned)n;
    } else if (strcmp(opt, "max_pages") == 0) {
        if (parse_u64(val, FS_MAX_PAGES_LIMIT, &n) < 0 || n == 0)
            return err_input(err, "fs option max_pages=`%s`: want 1..%d", val,
                             FS_MAX_PAGES_LIMIT);
        o->max_pages = (unsigned)n;
    } else {
        return err_input(err, "unknown fs option `%s`", opt);
    }
    return 0;
}

int fs_options_parse(struct fs_options *o, const char *list, struct err **err)
{
    cleanup_free char *copy = xstrdup(list);
    char *save = NULL;
    for (char *opt = strtok_r(copy, ",", &save); opt; opt = strtok_r(NULL, ",", &save))
        if (parse_one(o, opt, err) < 0)
            return -1;
    return 0;
}
