/* Resource statistics of a container's cgroup, as runc's `events --stats`. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup/cgroup.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"

/* A single number from a cgroup file ("max" -> 0). */
static uint64_t read_u64(int dfd, const char *file)
{
    cleanup_free char *d = NULL;
    if (dfd < 0 || read_file_at(dfd, file, 4096, &d, NULL, NULL) < 0)
        return 0;
    return strtoull(d, NULL, 10);
}

/* The value of `key` in a "key value" file such as memory.stat or cpu.stat. */
static uint64_t read_key(int dfd, const char *file, const char *key)
{
    cleanup_free char *d = NULL;
    if (dfd < 0 || read_file_at(dfd, file, 1 << 16, &d, NULL, NULL) < 0)
        return 0;
    size_t kl = strlen(key);
    for (char *line = d; line && *line;) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ' ')
            return strtoull(line + kl + 1, NULL, 10);
        char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    return 0;
}

static void add_u64(struct json_object *o, const char *k, uint64_t v)
{
    json_object_object_add(o, k, json_object_new_uint64(v));
}

char *cgroup_stats_json(const struct cgroup *cg)
{
    bool v2 = cg->mode == CGROUP_V2;
    struct json_object *data = json_object_new_object();
    struct json_object *cpu = json_object_new_object(), *usage = json_object_new_object();
    if (v2) {
        int d = cgroup_controller_fd(cg, "cpu");
        add_u64(usage, "total", read_key(d, "cpu.stat", "usage_usec") * 1000);
        add_u64(usage, "user", read_key(d, "cpu.stat", "user_usec") * 1000);
        add_u64(usage, "kernel", read_key(d, "cpu.stat", "system_usec") * 1000);
    } else {
        int d = cgroup_controller_fd(cg, "cpuacct");
        add_u64(usage, "total", read_u64(d, "cpuacct.usage"));
        add_u64(usage, "user", read_key(d, "cpuacct.stat", "user") * 10000000ull);
        add_u64(usage, "kernel", read_key(d, "cpuacct.stat", "system") * 10000000ull);
    }
    json_object_object_add(cpu, "usage", usage);
    json_object_object_add(data, "cpu", cpu);

    struct json_object *mem = json_object_new_object(), *mu = json_object_new_object();
    int md = cgroup_controller_fd(cg, "memory");
    add_u64(mu, "usage", read_u64(md, v2 ? "memory.current" : "memory.usage_in_bytes"));
    add_u64(mu, "max", read_u64(md, v2 ? "memory.peak" : "memory.max_usage_in_bytes"));
    add_u64(mu, "limit", read_u64(md, v2 ? "memory.max" : "memory.limit_in_bytes"));
    add_u64(mu, "failcnt", v2 ? read_key(md, "memory.events", "max")
                              : read_u64(md, "memory.failcnt"));
    json_object_object_add(mem, "usage", mu);
    add_u64(mem, "cache", read_key(md, "memory.stat", v2 ? "file" : "cache"));
    json_object_object_add(data, "memory", mem);

    struct json_object *pids = json_object_new_object();
    int pd = cgroup_controller_fd(cg, "pids");
    add_u64(pids, "current", read_u64(pd, "pids.current"));
    add_u64(pids, "limit", read_u64(pd, "pids.max"));
    json_object_object_add(data, "pids", pids);

    char *r = xstrdup(json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN));
    json_object_put(data);
    return r;
}

int cgroup_pids(const struct cgroup *cg, int **out, size_t *n, struct err **err)
{
    *out = NULL;
    *n = 0;
    int d = cgroup_controller_fd(cg, "pids");
    if (d < 0)
        d = cg->n ? cg->dirfds[0] : -1;
    if (d < 0)
        return err_make(err, ENOENT, "no cgroup for `%s`", cg->path);
    cleanup_free char *data = NULL;
    if (read_file_at(d, "cgroup.procs", 1 << 22, &data, NULL, err) < 0)
        return -1;
    size_t cap = 0;
    for (char *save = NULL, *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int pid;
        if (parse_int(l, &pid) < 0)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            int *nv = realloc(*out, cap * sizeof(int));
            if (nv == NULL)
                abort();
            *out = nv;
        }
        (*out)[(*n)++] = pid;
    }
    return 0;
}
