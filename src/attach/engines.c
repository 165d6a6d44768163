/* Containers of podman and containerd, found by id in the state their OCI
 * runtime keeps — the place the engines themselves read the pid from (podman
 * runs `RUNTIME state ID`, containerd's shim reads the runtime's state too):
 *
 *   /run/cocoon/ID/state.json              cocoon (podman --runtime cocoon)
 *   /run/runc/ID/state.json                runc (podman's default here)
 *   /run/crun/ID/status                    crun (podman)
 *   /run/containerd/runc/NS/ID/...         containerd's runc v2 shim, for
 *                                          every namespace NS; the runtime
 *                                          binary may be runc, crun or
 *                                          cocoon (state in its own format)
 *
 * The format says the runtime: runc's state.json has init_process_pid and
 * init_process_start, cocoon's pid and start_time, crun's status file pid
 * and process-start-time. The start time (clock ticks since boot, field 22
 * of /proc/PID/stat) lets the caller open the pidfd only if that pid is
 * still the container's init. An engine's hex id may be given by a unique
 * prefix (podman's 12-character short ids). Nothing is written or locked
 * here (cocoon's own format is then opened as a cocoon container is). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attach/internal.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "runtime/container.h"

#define STATE_MAX (8 * 1024 * 1024)
#define MIN_PREFIX 3

static const struct {
    const char *dir;
    bool per_namespace; /* one subdirectory per containerd namespace */
} roots[] = {
    {COCOON_DEFAULT_ROOT, false},
    {"/run/runc", false},
    {"/run/crun", false},
    {"/run/containerd/runc", true},
};

struct found {
    struct attach_engine_hit *v;
    size_t n;
};

static bool is_hex(const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static json_object *parse_at(int dirfd, const char *name)
{
    cleanup_err struct err *e = NULL;
    cleanup_free char *text = NULL;
    size_t len;
    if (read_file_at(dirfd, name, STATE_MAX, &text, &len, &e) < 0)
        return NULL;
    return json_tokener_parse(text);
}

/* The format of the container state in directory fd, or -1. */
static int detect(int fd)
{
    if (faccessat(fd, "status", F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return ENGINE_CRUN;
    json_object *o = parse_at(fd, "state.json");
    int fmt = -1;
    if (o && json_object_object_get_ex(o, "init_process_pid", NULL))
        fmt = ENGINE_RUNC;
    else if (o && json_object_object_get_ex(o, "start_time", NULL) &&
             json_object_object_get_ex(o, "pid", NULL))
        fmt = ENGINE_COCOON;
    json_object_put(o);
    return fmt;
}

static void add(struct found *f, const char *root, const char *name, int fmt)
{
    f->v = xrealloc(f->v, (f->n + 1) * sizeof(*f->v));
    f->v[f->n++] = (struct attach_engine_hit){
        .id = xstrdup(name), .root = xstrdup(root),
        .dir = xasprintf("%s/%s", root, name), .fmt = (enum attach_engine_fmt)fmt,
    };
}

static void check_entry(struct found *f, const char *root, int rfd, const char *name)
{
    cleanup_close int d = openat(rfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int fmt = d >= 0 ? detect(d) : -1;
    if (fmt >= 0)
        add(f, root, name, fmt);
}

/* `id` in one runtime root: the entry of that name, or (prefix) every
 * engine id (64 hex digits) that starts with it. */
static void scan(struct found *f, const char *root, const char *id, bool prefix)
{
    cleanup_close int rfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return;
    if (!prefix) {
        check_entry(f, root, rfd, id);
        return;
    }
    cleanup_dir DIR *d = fdopendir(dup(rfd));
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        if (is_hex(de->d_name, 64, 64) && str_has_prefix(de->d_name, id))
            check_entry(f, root, rfd, de->d_name);
}

static void scan_root(struct found *f, size_t i, const char *id, bool prefix)
{
    if (!roots[i].per_namespace) {
        scan(f, roots[i].dir, id, prefix);
        return;
    }
    cleanup_dir DIR *d = opendir(roots[i].dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        cleanup_free char *ns = xasprintf("%s/%s", roots[i].dir, de->d_name);
        scan(f, ns, id, prefix);
    }
}

static void found_free(struct found *f, size_t keep)
{
    for (size_t i = 0; i < f->n; i++)
        if (i != keep)
            attach_engine_hit_free(&f->v[i]);
    free(f->v);
    f->v = NULL;
    f->n = 0;
}

int attach_engine_find(const char *own_root, const char *id, struct attach_engine_hit *h,
                       char **where_looked, struct err **err)
{
    memset(h, 0, sizeof(*h));
    *where_looked = NULL;
    struct found f = {NULL, 0};
    for (int prefix = 0; prefix < 2; prefix++) {
        if (prefix && !is_hex(id, MIN_PREFIX, 63))
            break;
        for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
            if (prefix || strcmp(roots[i].dir, own_root) != 0)
                scan_root(&f, i, id, prefix);
        if (f.n == 1) {
            *h = f.v[0];
            found_free(&f, 0);
            return 1;
        }
        if (f.n > 1) {
            size_t len = 1;
            for (size_t i = 0; i < f.n; i++)
                len += strlen(f.v[i].dir) + 2;
            cleanup_free char *list = xcalloc(1, len);
            for (size_t i = 0; i < f.n; i++) {
                if (i)
                    strcat(list, ", ");
                strcat(list, f.v[i].dir);
            }
            found_free(&f, (size_t)-1);
            return err_input(err, "container id `%s` is ambiguous: it names %s (give the full "
                                  "id, or --pid)", id, list);
        }
    }
    bool own_default = strcmp(own_root, COCOON_DEFAULT_ROOT) == 0;
    *where_looked = xasprintf("%s (cocoon)%s, /run/runc (runc), /run/crun (crun), "
                              "/run/containerd/runc/* (containerd)",
                              own_root, own_default ? "" : ", " COCOON_DEFAULT_ROOT
                                                           " (cocoon under podman)");
    return 0;
}

/* A positive integer member of o, at most max; false if missing. */
static bool get_u64(json_object *o, const char *key, uint64_t max, uint64_t *v)
{
    json_object *m;
    if (!json_object_object_get_ex(o, key, &m) || !json_object_is_type(m, json_type_int) ||
        json_object_get_int64(m) <= 0)
        return false;
    uint64_t u = json_object_get_uint64(m);
    if (u > max)
        return false;
    *v = u;
    return true;
}

int attach_engine_read(const struct attach_engine_hit *h, pid_t *pid, uint64_t *start_time,
                       bool *created, struct err **err)
{
    bool runc = h->fmt == ENGINE_RUNC;
    const char *file = runc ? "state.json" : "status";
    cleanup_close int d = open(h->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d < 0)
        return err_make(err, errno, "container `%s`: open its state `%s`", h->id, h->dir);
    json_object *o = parse_at(d, file);
    uint64_t p = 0, st = 0;
    bool ok = o && get_u64(o, runc ? "init_process_pid" : "pid", INT_MAX, &p) &&
              get_u64(o, runc ? "init_process_start" : "process-start-time", UINT64_MAX, &st);
    json_object_put(o);
    if (!ok)
        return err_make(err, 0, "container `%s`: no init pid and start time in `%s/%s` (%s's "
                                "state)", h->id, h->dir, file, runc ? "runc" : "crun");
    *pid = (pid_t)p;
    *start_time = st;
    /* Both keep exec.fifo between create and start. */
    *created = faccessat(d, "exec.fifo", F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    return 0;
}

void attach_engine_hit_free(struct attach_engine_hit *h)
{
    free(h->id);
    free(h->root);
    free(h->dir);
    memset(h, 0, sizeof(*h));
}
