#include "oci/config.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"

#define PATHLEN 256

/* The parse context: which document we read, for error messages. */
struct pctx {
    const char *name;
    struct err **err;
};

static const char *json_kind(struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_null: return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double: return "a fractional number";
    case json_type_int: return "a number";
    case json_type_object: return "an object";
    case json_type_array: return "an array";
    case json_type_string: return "a string";
    }
    return "unknown";
}

static int type_error(struct pctx *p, const char *path, const char *want, struct json_object *o)
{
    return err_input(p->err, "%s: `%s` must be %s, not %s", p->name, path, want,
                    json_kind(o));
}

static int value_error(struct pctx *p, const char *path, const char *why)
{
    return err_input(p->err, "%s: `%s` %s", p->name, path, why);
}

static void join_path(char *out, const char *base, const char *key)
{
    if (base[0])
        snprintf(out, PATHLEN, "%s.%s", base, key);
    else
        snprintf(out, PATHLEN, "%s", key);
}

/* Look up obj[key]. Returns 0 and *out=NULL if absent or null, 1 if present
 * with type t, <0 (error) if present with another type. */
static int member(struct pctx *p, struct json_object *obj, const char *base, const char *key,
                  json_type t, struct json_object **out)
{
    struct json_object *v = NULL;
    *out = NULL;
    if (!json_object_object_get_ex(obj, key, &v) || v == NULL)
        return 0;
    if (json_object_get_type(v) != t) {
        char path[PATHLEN];
        join_path(path, base, key);
        static const char *const names[] = {
            [json_type_null] = "null", [json_type_boolean] = "a boolean",
            [json_type_double] = "a number", [json_type_int] = "an integer",
            [json_type_object] = "an object", [json_type_array] = "an array",
            [json_type_string] = "a string",
        };
        return type_error(p, path, names[t], v);
    }
    *out = v;
    return 1;
}

static int get_string(struct pctx *p, struct json_object *obj, const char *base,
                      const char *key, bool required, char **out)
{
    struct json_object *v;
    int r = member(p, obj, base, key, json_type_string, &v);
    if (r < 0)
        return r;
    if (r == 0) {
        if (required) {
            char path[PATHLEN];
            join_path(path, base, key);
            return value_error(p, path, "is required");
        }
        return 0;
    }
    free(*out);
    *out = xstrdup(json_object_get_string(v));
    return 1;
}

static int get_bool(struct pctx *p, struct json_object *obj, const char *base, const char *key,
                    bool *out)
{
    struct json_object *v;
    int r = member(p, obj, base, key, json_type_boolean, &v);
    if (r > 0)
        *out = json_object_get_boolean(v);
    return r;
}

static int get_int64(struct pctx *p, struct json_object *obj, const char *base,
                     const char *key, int64_t min, int64_t max, int64_t *out)
{
    struct json_object *v;
    int r = member(p, obj, base, key, json_type_int, &v);
    if (r <= 0)
        return r;
    char path[PATHLEN];
    join_path(path, base, key);
    /* json-c saturates integers that do not fit: the extremes mean overflow. */
    int64_t x = json_object_get_int64(v);
    if (x < min || x > max || x == INT64_MAX || x == INT64_MIN)
        return err_input(p->err, "%s: `%s` is out of range [%lld, %lld]", p->name, path,
                        (long long)min, (long long)max);
    *out = x;
    return 1;
}

static int get_uint32(struct pctx *p, struct json_object *obj, const char *base,
                      const char *key, uint32_t *out)
{
    int64_t x;
    int r = get_int64(p, obj, base, key, 0, UINT32_MAX, &x);
    if (r > 0)
        *out = (uint32_t)x;
    return r;
}

static int get_uint64(struct pctx *p, struct json_object *obj, const char *base,
                      const char *key, uint64_t *out)
{
    struct json_object *v;
    int r = member(p, obj, base, key, json_type_int, &v);
    if (r <= 0)
        return r;
    if (json_object_get_int64(v) < 0) {
        char path[PATHLEN];
        join_path(path, base, key);
        return value_error(p, path, "must not be negative");
    }
    *out = json_object_get_uint64(v);
    return 1;
}

/* Read an array of strings into a NULL-terminated vector. */
static int get_strv(struct pctx *p, struct json_object *obj, const char *base, const char *key,
                    char ***out)
{
    struct json_object *v;
    int r = member(p, obj, base, key, json_type_array, &v);
    if (r <= 0)
        return r;
    size_t n = json_object_array_length(v);
    char **vec = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        struct json_object *e = json_object_array_get_idx(v, i);
        if (json_object_get_type(e) != json_type_string) {
            char path[PATHLEN], ip[PATHLEN + 24];
            join_path(path, base, key);
            snprintf(ip, sizeof(ip), "%s[%zu]", path, i);
            strv_free(vec);
            return type_error(p, ip, "a string", e);
        }
        vec[i] = xstrdup(json_object_get_string(e));
    }
    strv_free(*out);
    *out = vec;
    return 1;
}

/* Read an object of string values into key/value pairs. */
static int get_kv(struct pctx *p, struct json_object *obj, const char *base, const char *key,
                  struct oci_kv **out, size_t *n_out)
{
    struct json_object *v;
    int r = member(p, obj, base, key, json_type_object, &v);
    if (r <= 0)
        return r;
    size_t n = (size_t)json_object_object_length(v), i = 0;
    struct oci_kv *kv = xcalloc(n, sizeof(*kv));
    json_object_object_foreach(v, k, val)
    {
        if (json_object_get_type(val) != json_type_string) {
            char path[PATHLEN], kp[PATHLEN * 2];
            join_path(path, base, key);
            snprintf(kp, sizeof(kp), "%s.%s", path, k);
            for (size_t j = 0; j < i; j++) {
                free(kv[j].key);
                free(kv[j].value);
            }
            free(kv);
            return type_error(p, kp, "a string", val);
        }
        kv[i].key = xstrdup(k);
        kv[i].value = xstrdup(json_object_get_string(val));
        i++;
    }
    *out = kv;
    *n_out = i;
    return 1;
}

/* ---- namespaces ---- */

static const char *const ns_names[OCI_NS_COUNT] = {
    [OCI_NS_PID] = "pid", [OCI_NS_NET] = "network", [OCI_NS_MNT] = "mount",
    [OCI_NS_IPC] = "ipc", [OCI_NS_UTS] = "uts", [OCI_NS_USER] = "user",
    [OCI_NS_CGROUP] = "cgroup", [OCI_NS_TIME] = "time",
};

static const int ns_flags[OCI_NS_COUNT] = {
    [OCI_NS_PID] = CLONE_NEWPID, [OCI_NS_NET] = CLONE_NEWNET, [OCI_NS_MNT] = CLONE_NEWNS,
    [OCI_NS_IPC] = CLONE_NEWIPC, [OCI_NS_UTS] = CLONE_NEWUTS, [OCI_NS_USER] = CLONE_NEWUSER,
    [OCI_NS_CGROUP] = CLONE_NEWCGROUP, [OCI_NS_TIME] = CLONE_NEWTIME,
};

const char *oci_ns_name(enum oci_ns_type type)
{
    return (unsigned)type < OCI_NS_COUNT ? ns_names[type] : "?";
}

int oci_ns_clone_flag(enum oci_ns_type type)
{
    return (unsigned)type < OCI_NS_COUNT ? ns_flags[type] : 0;
}

static int parse_namespaces(struct pctx *p, struct json_object *lx, struct oci_linux *l)
{
    struct json_object *arr;
    int r = member(p, lx, "linux", "namespaces", json_type_array, &arr);
    if (r <= 0)
        return r;
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n; i++) {
        char base[PATHLEN];
        snprintf(base, sizeof(base), "linux.namespaces[%zu]", i);
        struct json_object *e = json_object_array_get_idx(arr, i);
        if (json_object_get_type(e) != json_type_object)
            return type_error(p, base, "an object", e);
        cleanup_free char *type = NULL, *path = NULL;
        if (get_string(p, e, base, "type", true, &type) < 0 ||
            get_string(p, e, base, "path", false, &path) < 0)
            return -1;
        int t = -1;
        for (int k = 0; k < OCI_NS_COUNT; k++)
            if (strcmp(type, ns_names[k]) == 0)
                t = k;
        if (t < 0)
            return err_input(p->err, "%s: `%s.type`: unknown namespace type `%s`",
                            p->name, base, type);
        for (size_t k = 0; k < l->n_namespaces; k++)
            if ((int)l->namespaces[k].type == t)
                return err_input(p->err, "%s: `%s`: duplicate namespace `%s`", p->name,
                                base, type);
        if (path && path[0] == '\0') {
            free(path);
            path = NULL;
        }
        l->namespaces[l->n_namespaces].type = (enum oci_ns_type)t;
        l->namespaces[l->n_namespaces].path = steal_pointer(&path);
        l->n_namespaces++;
    }
    return 0;
}

static int parse_id_mappings(struct pctx *p, struct json_object *lx, const char *key,
                             struct oci_id_mapping **out, size_t *n_out)
{
    struct json_object *arr;
    int r = member(p, lx, "linux", key, json_type_array, &arr);
    if (r <= 0)
        return r;
    size_t n = json_object_array_length(arr);
    struct oci_id_mapping *m = xcalloc(n, sizeof(*m));
    *out = m;
    for (size_t i = 0; i < n; i++) {
        char base[PATHLEN];
        snprintf(base, sizeof(base), "linux.%s[%zu]", key, i);
        struct json_object *e = json_object_array_get_idx(arr, i);
        if (json_object_get_type(e) != json_type_object)
            return type_error(p, base, "an object", e);
        if (get_uint32(p, e, base, "containerID", &m[i].container_id) <= 0 ||
            get_uint32(p, e, base, "hostID", &m[i].host_id) <= 0 ||
            get_uint32(p, e, base, "size", &m[i].size) <= 0) {
            if (p->err && *p->err)
                return -1;
            return value_error(p, base, "needs containerID, hostID and size");
        }
        *n_out = i + 1;
    }
    return 0;
}

/* ---- mounts ---- */

struct mount_opt {
    const char *name;
    bool clear;
    unsigned long flag;
};

static const struct mount_opt mount_opts[] = {
    {"defaults", false, 0},
    {"ro", false, MS_RDONLY}, {"rw", true, MS_RDONLY},
    {"nosuid", false, MS_NOSUID}, {"suid", true, MS_NOSUID},
    {"nodev", false, MS_NODEV}, {"dev", true, MS_NODEV},
    {"noexec", false, MS_NOEXEC}, {"exec", true, MS_NOEXEC},
    {"sync", false, MS_SYNCHRONOUS}, {"async", true, MS_SYNCHRONOUS},
    {"dirsync", false, MS_DIRSYNC},
    {"remount", false, MS_REMOUNT},
    {"mand", false, MS_MANDLOCK}, {"nomand", true, MS_MANDLOCK},
    {"atime", true, MS_NOATIME}, {"noatime", false, MS_NOATIME},
    {"diratime", true, MS_NODIRATIME}, {"nodiratime", false, MS_NODIRATIME},
    {"relatime", false, MS_RELATIME}, {"norelatime", true, MS_RELATIME},
    {"strictatime", false, MS_STRICTATIME}, {"nostrictatime", true, MS_STRICTATIME},
    {"lazytime", false, MS_LAZYTIME}, {"nolazytime", true, MS_LAZYTIME},
    {"silent", false, MS_SILENT}, {"loud", true, MS_SILENT},
    {"nosymfollow", false, MS_NOSYMFOLLOW}, {"symfollow", true, MS_NOSYMFOLLOW},
};

static const struct mount_opt prop_opts[] = {
    {"shared", false, MS_SHARED}, {"rshared", false, MS_SHARED | MS_REC},
    {"slave", false, MS_SLAVE}, {"rslave", false, MS_SLAVE | MS_REC},
    {"private", false, MS_PRIVATE}, {"rprivate", false, MS_PRIVATE | MS_REC},
    {"unbindable", false, MS_UNBINDABLE}, {"runbindable", false, MS_UNBINDABLE | MS_REC},
};

int oci_mount_parse_options(struct oci_mount *m, struct err **err)
{
    size_t datalen = 0;
    cleanup_free char *data = NULL;
    m->flags = m->clear = m->propagation = 0;
    m->bind = m->type && strcmp(m->type, "bind") == 0;
    m->recursive = false;
    for (char **o = m->options; o && *o; o++) {
        const char *opt = *o;
        bool found = false;
        if (strcmp(opt, "bind") == 0) {
            m->bind = true;
            continue;
        }
        if (strcmp(opt, "rbind") == 0) {
            m->bind = m->recursive = true;
            continue;
        }
        for (size_t i = 0; i < sizeof(mount_opts) / sizeof(mount_opts[0]); i++) {
            if (strcmp(opt, mount_opts[i].name) == 0) {
                if (mount_opts[i].clear) {
                    m->flags &= ~mount_opts[i].flag;
                    m->clear |= mount_opts[i].flag;
                } else {
                    m->flags |= mount_opts[i].flag;
                    m->clear &= ~mount_opts[i].flag;
                }
                found = true;
                break;
            }
        }
        for (size_t i = 0; !found && i < sizeof(prop_opts) / sizeof(prop_opts[0]); i++) {
            if (strcmp(opt, prop_opts[i].name) == 0) {
                m->propagation = prop_opts[i].flag;
                found = true;
            }
        }
        if (found)
            continue;
        /* Anything else is filesystem data (size=, mode=, gid=, ...). */
        size_t l = strlen(opt);
        char *nd = realloc(data, datalen + l + 2);
        if (nd == NULL)
            return err_make(err, ENOMEM, "mount options");
        data = nd;
        if (datalen)
            data[datalen++] = ',';
        memcpy(data + datalen, opt, l + 1);
        datalen += l;
    }
    free(m->data);
    m->data = steal_pointer(&data);
    return 0;
}

static int parse_mounts(struct pctx *p, struct json_object *root, struct oci_config *c)
{
    struct json_object *arr;
    int r = member(p, root, "", "mounts", json_type_array, &arr);
    if (r <= 0)
        return r;
    size_t n = json_object_array_length(arr);
    c->mounts = xcalloc(n, sizeof(*c->mounts));
    for (size_t i = 0; i < n; i++) {
        char base[PATHLEN];
        snprintf(base, sizeof(base), "mounts[%zu]", i);
        struct json_object *e = json_object_array_get_idx(arr, i);
        if (json_object_get_type(e) != json_type_object)
            return type_error(p, base, "an object", e);
        struct oci_mount *m = &c->mounts[i];
        c->n_mounts = i + 1;
        if (get_string(p, e, base, "destination", true, &m->destination) < 0 ||
            get_string(p, e, base, "source", false, &m->source) < 0 ||
            get_string(p, e, base, "type", false, &m->type) < 0 ||
            get_strv(p, e, base, "options", &m->options) < 0)
            return -1;
        if (m->destination[0] == '\0')
            return value_error(p, base, "has an empty destination");
        if (m->destination[0] != '/') {
            char *abs = xasprintf("/%s", m->destination);
            free(m->destination);
            m->destination = abs;
        }
        if (oci_mount_parse_options(m, p->err) < 0)
            return err_wrap(p->err, "%s: `%s.options`", p->name, base);
        if (m->bind && (m->source == NULL || m->source[0] == '\0'))
            return value_error(p, base, "is a bind mount without a source");
        if (!m->bind && (m->type == NULL || m->type[0] == '\0'))
            return value_error(p, base, "needs a type (or a bind option)");
    }
    return 0;
}

/* ---- process ---- */

static const struct {
    const char *name;
    int res;
} rlimit_names[] = {
    {"RLIMIT_AS", RLIMIT_AS}, {"RLIMIT_CORE", RLIMIT_CORE}, {"RLIMIT_CPU", RLIMIT_CPU},
    {"RLIMIT_DATA", RLIMIT_DATA}, {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS}, {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_NOFILE", RLIMIT_NOFILE}, {"RLIMIT_NPROC", RLIMIT_NPROC},
    {"RLIMIT_RSS", RLIMIT_RSS}, {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME}, {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_STACK", RLIMIT_STACK},
};

int oci_rlimit_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(rlimit_names) / sizeof(rlimit_names[0]); i++)
        if (strcmp(name, rlimit_names[i].name) == 0)
            return rlimit_names[i].res;
    return -1;
}

const char *oci_rlimit_name(int resource)
{
    for (size_t i = 0; i < sizeof(rlimit_names) / sizeof(rlimit_names[0]); i++)
        if (rlimit_names[i].res == resource)
            return rlimit_names[i].name;
    return NULL;
}

static int parse_rlimits(struct pctx *p, struct json_object *proc, struct oci_process *pr)
{
    struct json_object *arr;
    int r = member(p, proc, "process", "rlimits", json_type_array, &arr);
    if (r <= 0)
        return r;
    size_t n = json_object_array_length(arr);
    pr->rlimits = xcalloc(n, sizeof(*pr->rlimits));
    for (size_t i = 0; i < n; i++) {
        char base[PATHLEN];
        snprintf(base, sizeof(base), "process.rlimits[%zu]", i);
        struct json_object *e = json_object_array_get_idx(arr, i);
        if (json_object_get_type(e) != json_type_object)
            return type_error(p, base, "an object", e);
        cleanup_free char *type = NULL;
        struct oci_rlimit *rl = &pr->rlimits[i];
        if (get_string(p, e, base, "type", true, &type) < 0)
            return -1;
        rl->resource = oci_rlimit_from_name(type);
        if (rl->resource < 0)
            return err_input(p->err, "%s: `%s.type`: unknown rlimit `%s`", p->name,
                            base, type);
        for (size_t k = 0; k < i; k++)
            if (pr->rlimits[k].resource == rl->resource)
                return err_input(p->err, "%s: `%s`: duplicate rlimit `%s`", p->name,
                                base, type);
        int rs = get_uint64(p, e, base, "soft", &rl->soft);
        if (rs < 0)
            return -1;
        int rh = get_uint64(p, e, base, "hard", &rl->hard);
        if (rh < 0)
            return -1;
        if (rs == 0 || rh == 0)
            return value_error(p, base, "needs both soft and hard");
        if (rl->soft > rl->hard)
            return value_error(p, base, "has soft above hard");
        pr->n_rlimits = i + 1;
    }
    return 0;
}

static int parse_user(struct pctx *p, struct json_object *proc, struct oci_process *pr)
{
    struct json_object *u;
    int r = member(p, proc, "process", "user", json_type_object, &u);
    if (r <= 0)
        return r;
    const char *b = "process.user";
    if (get_uint32(p, u, b, "uid", &pr->uid) < 0 || get_uint32(p, u, b, "gid", &pr->gid) < 0)
        return -1;
    int64_t um;
    r = get_int64(p, u, b, "umask", 0, 0777, &um);
    if (r < 0)
        return -1;
    if (r > 0) {
        pr->has_umask = true;
        pr->umask = (mode_t)um;
    }
    struct json_object *arr;
    r = member(p, u, b, "additionalGids", json_type_array, &arr);
    if (r < 0)
        return -1;
    if (r > 0) {
        size_t n = json_object_array_length(arr);
        pr->additional_gids = xcalloc(n, sizeof(uint32_t));
        for (size_t i = 0; i < n; i++) {
            struct json_object *e = json_object_array_get_idx(arr, i);
            int64_t g = json_object_get_int64(e);
            if (json_object_get_type(e) != json_type_int || g < 0 || g > UINT32_MAX) {
                char ip[PATHLEN];
                snprintf(ip, sizeof(ip), "process.user.additionalGids[%zu]", i);
                return type_error(p, ip, "a gid (0..4294967295)", e);
            }
            pr->additional_gids[i] = (uint32_t)g;
        }
        pr->n_additional_gids = n;
    }
    return 0;
}

static int parse_process(struct pctx *p, struct json_object *root, struct oci_config *c)
{
    struct json_object *proc;
    int r = member(p, root, "", "process", json_type_object, &proc);
    if (r <= 0)
        return r;
    struct oci_process *pr = c->process = xcalloc(1, sizeof(*pr));
    const char *b = "process";
    if (get_bool(p, proc, b, "terminal", &pr->terminal) < 0 ||
        get_strv(p, proc, b, "args", &pr->args) < 0 ||
        get_strv(p, proc, b, "env", &pr->env) < 0 ||
        get_string(p, proc, b, "cwd", false, &pr->cwd) < 0 ||
        get_bool(p, proc, b, "noNewPrivileges", &pr->no_new_privileges) < 0 ||
        get_string(p, proc, b, "apparmorProfile", false, &pr->apparmor_profile) < 0 ||
        get_string(p, proc, b, "selinuxLabel", false, &pr->selinux_label) < 0)
        return -1;
    if (pr->args == NULL || pr->args[0] == NULL)
        return value_error(p, "process.args", "must name the program to run");
    if (pr->args[0][0] == '\0')
        return value_error(p, "process.args[0]", "must not be empty");
    if (pr->env == NULL)
        pr->env = xcalloc(1, sizeof(char *));
    if (pr->cwd == NULL)
        pr->cwd = xstrdup("/");
    if (pr->cwd[0] != '/')
        return value_error(p, "process.cwd", "must be an absolute path");
    struct json_object *cs;
    r = member(p, proc, b, "consoleSize", json_type_object, &cs);
    if (r < 0)
        return -1;
    if (r > 0) {
        uint32_t h = 0, w = 0;
        if (get_uint32(p, cs, "process.consoleSize", "height", &h) < 0 ||
            get_uint32(p, cs, "process.consoleSize", "width", &w) < 0)
            return -1;
        if (h > 65535 || w > 65535)
            return value_error(p, "process.consoleSize", "is larger than 65535");
        pr->has_console_size = true;
        pr->console_height = h;
        pr->console_width = w;
    }
    int64_t adj;
    r = get_int64(p, proc, b, "oomScoreAdj", -1000, 1000, &adj);
    if (r < 0)
        return -1;
    if (r > 0) {
        pr->has_oom_score_adj = true;
        pr->oom_score_adj = (int)adj;
    }
    struct json_object *caps;
    r = member(p, proc, b, "capabilities", json_type_object, &caps);
    if (r < 0)
        return -1;
    if (r > 0) {
        const char *cb = "process.capabilities";
        pr->has_caps = true;
        if (get_strv(p, caps, cb, "bounding", &pr->caps.bounding) < 0 ||
            get_strv(p, caps, cb, "effective", &pr->caps.effective) < 0 ||
            get_strv(p, caps, cb, "inheritable", &pr->caps.inheritable) < 0 ||
            get_strv(p, caps, cb, "permitted", &pr->caps.permitted) < 0 ||
            get_strv(p, caps, cb, "ambient", &pr->caps.ambient) < 0)
            return -1;
    }
    if (parse_user(p, proc, pr) < 0 || parse_rlimits(p, proc, pr) < 0)
        return -1;
    return 0;
}

/* ---- linux ---- */

static int parse_devices(struct pctx *p, struct json_object *lx, struct oci_linux *l)
{
    struct json_object *arr;
    int r = member(p, lx, "linux", "devices", json_type_array, &arr);
    if (r <= 0)
        return r;
    size_t n = json_object_array_length(arr);
    l->devices = xcalloc(n, sizeof(*l->devices));
    for (size_t i = 0; i < n; i++) {
        char base[PATHLEN];
        snprintf(base, sizeof(base), "linux.devices[%zu]", i);
        struct json_object *e = json_object_array_get_idx(arr, i);
        if (json_object_get_type(e) != json_type_object)
            return type_error(p, base, "an object", e);
        struct oci_device *d = &l->devices[i];
        l->n_devices = i + 1;
        cleanup_free char *type = NULL;
        if (get_string(p, e, base, "path", true, &d->path) < 0 ||
            get_string(p, e, base, "type", true, &type) < 0)
            return -1;
        if (d->path[0] != '/')
            return value_error(p, base, "path must be absolute");
        if (strlen(type) != 1 || !strchr("cbup", type[0]))
            return err_input(p->err, "%s: `%s.type`: unknown device type `%s`", p->name,
                            base, type);
        d->type = type[0];
        int rmaj = get_int64(p, e, base, "major", 0, (1 << 12) - 1, &d->major);
        int rmin = get_int64(p, e, base, "minor", 0, (1 << 20) - 1, &d->minor);
        if (rmaj < 0 || rmin < 0)
            return -1;
        if (d->type != 'p' && (rmaj == 0 || rmin == 0))
            return value_error(p, base, "needs major and minor");
        int64_t mode;
        r = get_int64(p, e, base, "fileMode", 0, 07777, &mode);
        if (r < 0)
            return -1;
        d->has_mode = r > 0;
        d->mode = (mode_t)mode;
        if ((r = get_uint32(p, e, base, "uid", &d->uid)) < 0)
            return -1;
        d->has_uid = r > 0;
        if ((r = get_uint32(p, e, base, "gid", &d->gid)) < 0)
            return -1;
        d->has_gid = r > 0;
    }
    return 0;
}

static int parse_time_offset(struct pctx *p, struct json_object *to, const char *key,
                             int64_t *secs, uint32_t *nsecs)
{
    struct json_object *o;
    char base[PATHLEN];
    snprintf(base, sizeof(base), "linux.timeOffsets.%s", key);
    int r = member(p, to, "linux.timeOffsets", key, json_type_object, &o);
    if (r <= 0)
        return r;
    if (get_int64(p, o, base, "secs", INT64_MIN, INT64_MAX, secs) < 0 ||
        get_uint32(p, o, base, "nanosecs", nsecs) < 0)
        return -1;
    if (*nsecs >= 1000000000u)
        return value_error(p, base, "nanosecs must be below 1000000000");
    return 0;
}

static int parse_linux(struct pctx *p, struct json_object *root, struct oci_config *c)
{
    struct json_object *lx;
    int r = member(p, root, "", "linux", json_type_object, &lx);
    if (r <= 0)
        return r;
    struct oci_linux *l = &c->linux_;
    cleanup_free char *prop = NULL;
    if (parse_namespaces(p, lx, l) < 0 ||
        parse_id_mappings(p, lx, "uidMappings", &l->uid_mappings, &l->n_uid_mappings) < 0 ||
        parse_id_mappings(p, lx, "gidMappings", &l->gid_mappings, &l->n_gid_mappings) < 0 ||
        parse_devices(p, lx, l) < 0 ||
        get_string(p, lx, "linux", "cgroupsPath", false, &l->cgroups_path) < 0 ||
        get_string(p, lx, "linux", "rootfsPropagation", false, &prop) < 0 ||
        get_strv(p, lx, "linux", "maskedPaths", &l->masked_paths) < 0 ||
        get_strv(p, lx, "linux", "readonlyPaths", &l->readonly_paths) < 0 ||
        get_kv(p, lx, "linux", "sysctl", &l->sysctl, &l->n_sysctl) < 0 ||
        get_string(p, lx, "linux", "mountLabel", false, &l->mount_label) < 0)
        return -1;
    if (prop && prop[0]) {
        bool ok = false;
        for (size_t i = 0; i < sizeof(prop_opts) / sizeof(prop_opts[0]); i++)
            if (strcmp(prop, prop_opts[i].name) == 0) {
                l->rootfs_propagation = prop_opts[i].flag;
                ok = true;
            }
        if (!ok)
            return err_input(p->err, "%s: `linux.rootfsPropagation`: unknown propagation `%s`", p->name,
                            prop);
    }
    struct json_object *to;
    r = member(p, lx, "linux", "timeOffsets", json_type_object, &to);
    if (r < 0)
        return -1;
    if (r > 0) {
        l->has_time_offsets = true;
        if (parse_time_offset(p, to, "monotonic", &l->monotonic_secs, &l->monotonic_nsecs) < 0 ||
            parse_time_offset(p, to, "boottime", &l->boottime_secs, &l->boottime_nsecs) < 0)
            return -1;
    }
    if (member(p, lx, "linux", "resources", json_type_object, &l->resources) < 0 ||
        member(p, lx, "linux", "seccomp", json_type_object, &l->seccomp) < 0)
        return -1;
    return 0;
}

/* ---- hooks ---- */

static const char *const hook_names[OCI_HOOK_KINDS] = {
    [OCI_HOOK_PRESTART] = "prestart", [OCI_HOOK_CREATE_RUNTIME] = "createRuntime",
    [OCI_HOOK_CREATE_CONTAINER] = "createContainer",
    [OCI_HOOK_START_CONTAINER] = "startContainer", [OCI_HOOK_POSTSTART] = "poststart",
    [OCI_HOOK_POSTSTOP] = "poststop",
};

static int parse_hooks(struct pctx *p, struct json_object *root, struct oci_config *c)
{
    struct json_object *h;
    int r = member(p, root, "", "hooks", json_type_object, &h);
    if (r <= 0)
        return r;
    for (int k = 0; k < OCI_HOOK_KINDS; k++) {
        struct json_object *arr;
        char kb[PATHLEN];
        snprintf(kb, sizeof(kb), "hooks.%s", hook_names[k]);
        r = member(p, h, "hooks", hook_names[k], json_type_array, &arr);
        if (r < 0)
            return -1;
        if (r == 0)
            continue;
        size_t n = json_object_array_length(arr);
        c->hooks.list[k] = xcalloc(n, sizeof(struct oci_hook));
        for (size_t i = 0; i < n; i++) {
            char base[PATHLEN + 24];
            snprintf(base, sizeof(base), "%s[%zu]", kb, i);
            struct json_object *e = json_object_array_get_idx(arr, i);
            if (json_object_get_type(e) != json_type_object)
                return type_error(p, base, "an object", e);
            struct oci_hook *hk = &c->hooks.list[k][i];
            c->hooks.n[k] = i + 1;
            int64_t to = 0;
            if (get_string(p, e, base, "path", true, &hk->path) < 0 ||
                get_strv(p, e, base, "args", &hk->args) < 0 ||
                get_strv(p, e, base, "env", &hk->env) < 0 ||
                get_int64(p, e, base, "timeout", 1, INT32_MAX, &to) < 0)
                return -1;
            if (hk->path[0] != '/')
                return value_error(p, base, "path must be absolute");
            hk->timeout = (int)to;
        }
    }
    return 0;
}

/* ---- top level ---- */

static int parse_root(struct pctx *p, struct json_object *root, struct oci_config *c)
{
    if (get_string(p, root, "", "ociVersion", false, &c->oci_version) < 0 ||
        get_string(p, root, "", "hostname", false, &c->hostname) < 0 ||
        get_string(p, root, "", "domainname", false, &c->domainname) < 0)
        return -1;
    struct json_object *r;
    int rc = member(p, root, "", "root", json_type_object, &r);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return value_error(p, "root", "is required");
    if (get_string(p, r, "root", "path", true, &c->root_path) < 0 ||
        get_bool(p, r, "root", "readonly", &c->root_readonly) < 0)
        return -1;
    if (c->root_path[0] == '\0')
        return value_error(p, "root.path", "must not be empty");
    if (c->hostname && strlen(c->hostname) > 64)
        return value_error(p, "hostname", "is longer than 64 bytes");
    if (c->domainname && strlen(c->domainname) > 64)
        return value_error(p, "domainname", "is longer than 64 bytes");
    return 0;
}

int oci_config_parse(const char *data, size_t len, const char *name, struct oci_config **out,
                     struct err **err)
{
    struct pctx p = {.name = name, .err = err};
    if (len > OCI_CONFIG_MAX_SIZE)
        return err_make(err, EFBIG, "%s: larger than %u bytes", name, OCI_CONFIG_MAX_SIZE);
    if (len > INT_MAX)
        return err_make(err, EFBIG, "%s: too large", name);
    struct json_tokener *tok = json_tokener_new_ex(64);
    if (tok == NULL)
        return err_make(err, ENOMEM, "%s: parser", name);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *root = json_tokener_parse_ex(tok, data, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t off = json_tokener_get_parse_end(tok);
    if (root == NULL && jerr == json_tokener_continue && off >= len) {
        /* A bare scalar at the very end needs an end-of-input to finish. */
        root = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
    }
    if (root == NULL && jerr == json_tokener_success) {
        json_tokener_free(tok);
        return err_input(err, "%s: `(document)` must be an object, not null", name);
    }
    json_tokener_free(tok);
    if (root == NULL || jerr != json_tokener_success ||
        (off < len && strspn(data + off, " \t\r\n") != len - off)) {
        if (root)
            json_object_put(root);
        size_t line = 1, col = 1;
        for (size_t i = 0; i < off && i < len; i++) {
            if (data[i] == '\n')
                line++, col = 1;
            else
                col++;
        }
        const char *why = jerr == json_tokener_success ? "trailing data after the document"
                          : jerr == json_tokener_continue || jerr == json_tokener_error_parse_eof
                              ? "unexpected end of input"
                              : json_tokener_error_desc(jerr);
        return err_input(err, "%s: malformed JSON at line %zu, column %zu: %s", name,
                        line, col, why);
    }
    if (json_object_get_type(root) != json_type_object) {
        int r = type_error(&p, "(document)", "an object", root);
        json_object_put(root);
        return r;
    }
    struct oci_config *c = xcalloc(1, sizeof(*c));
    c->json = root;
    if (parse_root(&p, root, c) < 0 || parse_mounts(&p, root, c) < 0 ||
        parse_process(&p, root, c) < 0 || parse_linux(&p, root, c) < 0 ||
        parse_hooks(&p, root, c) < 0 ||
        get_kv(&p, root, "", "annotations", &c->annotations, &c->n_annotations) < 0) {
        oci_config_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void oci_process_free(struct oci_process *p)
{
    if (p == NULL)
        return;
    strv_free(p->args);
    strv_free(p->env);
    free(p->cwd);
    free(p->additional_gids);
    free(p->rlimits);
    strv_free(p->caps.bounding);
    strv_free(p->caps.effective);
    strv_free(p->caps.inheritable);
    strv_free(p->caps.permitted);
    strv_free(p->caps.ambient);
    free(p->apparmor_profile);
    free(p->selinux_label);
    free(p);
}

int oci_process_parse(const char *data, size_t len, const char *name, struct oci_process **out,
                      struct err **err)
{
    struct pctx p = {.name = name, .err = err};
    if (len > OCI_CONFIG_MAX_SIZE || len > INT_MAX)
        return err_make(err, EFBIG, "%s: too large", name);
    struct json_tokener *tok = json_tokener_new_ex(64);
    if (tok == NULL)
        return err_make(err, ENOMEM, "%s: parser", name);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *obj = json_tokener_parse_ex(tok, data, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    if (obj == NULL && jerr == json_tokener_continue) {
        obj = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
    }
    json_tokener_free(tok);
    if (obj == NULL && jerr == json_tokener_success)
        return err_input(err, "%s: `(document)` must be an object, not null", name);
    if (obj == NULL || jerr != json_tokener_success) {
        if (obj)
            json_object_put(obj);
        return err_input(err, "%s: malformed JSON: %s", name,
                         jerr == json_tokener_continue || jerr == json_tokener_error_parse_eof
                             ? "unexpected end of input"
                             : json_tokener_error_desc(jerr));
    }
    /* Parse it as the `process` member of a document, to share the checks. */
    struct json_object *root = json_object_new_object();
    json_object_object_add(root, "process", obj);
    struct oci_config c = {0};
    int r = parse_process(&p, root, &c);
    json_object_put(root);
    if (r < 0) {
        oci_process_free(c.process);
        return -1;
    }
    if (c.process == NULL)
        return type_error(&p, "(document)", "an object", NULL);
    *out = c.process;
    return 0;
}

int oci_config_load(const char *bundle, struct oci_config **out, struct err **err)
{
    cleanup_free char *path = xasprintf("%s/config.json", bundle);
    cleanup_free char *data = NULL;
    size_t len;
    if (read_file_at(AT_FDCWD, path, OCI_CONFIG_MAX_SIZE, &data, &len, err) < 0)
        return err_wrap(err, "bundle `%s`", bundle);
    return oci_config_parse(data, len, path, out, err);
}

const struct oci_namespace *oci_config_ns(const struct oci_config *c, enum oci_ns_type type)
{
    for (size_t i = 0; i < c->linux_.n_namespaces; i++)
        if (c->linux_.namespaces[i].type == type)
            return &c->linux_.namespaces[i];
    return NULL;
}

const char *oci_config_annotation(const struct oci_config *c, const char *key)
{
    for (size_t i = 0; i < c->n_annotations; i++)
        if (strcmp(c->annotations[i].key, key) == 0)
            return c->annotations[i].value;
    return NULL;
}

static void kv_free(struct oci_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

void oci_config_free(struct oci_config *c)
{
    if (c == NULL)
        return;
    free(c->oci_version);
    free(c->root_path);
    free(c->hostname);
    free(c->domainname);
    for (size_t i = 0; i < c->n_mounts; i++) {
        free(c->mounts[i].destination);
        free(c->mounts[i].source);
        free(c->mounts[i].type);
        free(c->mounts[i].data);
        strv_free(c->mounts[i].options);
    }
    free(c->mounts);
    oci_process_free(c->process);
    struct oci_linux *l = &c->linux_;
    for (size_t i = 0; i < l->n_namespaces; i++)
        free(l->namespaces[i].path);
    free(l->uid_mappings);
    free(l->gid_mappings);
    for (size_t i = 0; i < l->n_devices; i++)
        free(l->devices[i].path);
    free(l->devices);
    free(l->cgroups_path);
    strv_free(l->masked_paths);
    strv_free(l->readonly_paths);
    kv_free(l->sysctl, l->n_sysctl);
    free(l->mount_label);
    for (int k = 0; k < OCI_HOOK_KINDS; k++) {
        for (size_t i = 0; i < c->hooks.n[k]; i++) {
            free(c->hooks.list[k][i].path);
            strv_free(c->hooks.list[k][i].args);
            strv_free(c->hooks.list[k][i].env);
        }
        free(c->hooks.list[k]);
    }
    kv_free(c->annotations, c->n_annotations);
    if (c->json)
        json_object_put(c->json);
    free(c);
}
