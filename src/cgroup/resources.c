/* linux.resources -> cgroup files, for v1 and v2. Each value is checked for
 * type and range; an error names the field and the file. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "oci/config.h"

/* The fd of hierarchy `ctrl` (v1) or the single v2 directory; -1 if absent. */
static int ctrl_fd(const struct cgroup *cg, const char *ctrl)
{
    for (size_t i = 0; i < cg->n; i++) {
        if (cg->mode == CGROUP_V2)
            return cg->dirfds[i];
        /* v1 hierarchies may be co-mounted: "cpu,cpuacct" holds cpu */
        const char *n = cg->names[i];
        size_t l = strlen(ctrl);
        for (const char *p = n; (p = strstr(p, ctrl)) != NULL; p += l)
            if ((p == n || p[-1] == ',') && (p[l] == '\0' || p[l] == ','))
                return cg->dirfds[i];
    }
    return -1;
}

static int write_ctrl(const struct cgroup *cg, const char *ctrl, const char *file,
                      const char *value, const char *field, struct err **err)
{
    int dfd = ctrl_fd(cg, ctrl);
    if (dfd < 0)
        return err_make(err, ENOTSUP, "%s: the %s controller is not available on this host",
                        field, ctrl);
    cleanup_close int fd = openat(dfd, file, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return err_make(err, errno, "%s: open %s", field, file);
    if (write(fd, value, strlen(value)) < 0)
        return err_make(err, errno, "%s: write `%s` to %s", field, value, file);
    return 0;
}

/* Read obj[key] as an int64; 0 if absent, 1 if present, <0 on a bad type. */
static int get_i64(struct json_object *obj, const char *key, const char *base, int64_t *out,
                   struct err **err)
{
    struct json_object *v;
    if (obj == NULL || !json_object_object_get_ex(obj, key, &v) || v == NULL)
        return 0;
    if (json_object_get_type(v) != json_type_int)
        return err_input(err, "config.json: `%s.%s` must be an integer", base, key);
    *out = json_object_get_int64(v);
    return 1;
}

static int get_str(struct json_object *obj, const char *key, const char *base, const char **out,
                   struct err **err)
{
    struct json_object *v;
    if (obj == NULL || !json_object_object_get_ex(obj, key, &v) || v == NULL)
        return 0;
    if (json_object_get_type(v) != json_type_string)
        return err_input(err, "config.json: `%s.%s` must be a string", base, key);
    *out = json_object_get_string(v);
    return 1;
}

static struct json_object *get_obj(struct json_object *obj, const char *key, const char *base,
                                   struct err **err, int *r)
{
    struct json_object *v;
    *r = 0;
    if (obj == NULL || !json_object_object_get_ex(obj, key, &v) || v == NULL)
        return NULL;
    if (json_object_get_type(v) != json_type_object) {
        *r = err_input(err, "config.json: `%s.%s` must be an object", base, key);
        return NULL;
    }
    return v;
}

static void fmt_limit(char *buf, size_t n, int64_t v, bool v2)
{
    if (v < 0)
        snprintf(buf, n, "%s", v2 ? "max" : "-1");
    else
        snprintf(buf, n, "%" PRId64, v);
}

static int apply_memory(struct json_object *mem, struct cgroup *cg, struct err **err)
{
    const char *b = "linux.resources.memory";
    bool v2 = cg->mode == CGROUP_V2;
    int64_t limit = 0, resv = 0, swap = 0;
    int hl = get_i64(mem, "limit", b, &limit, err);
    int hr = get_i64(mem, "reservation", b, &resv, err);
    int hs = get_i64(mem, "swap", b, &swap, err);
    if (hl < 0 || hr < 0 || hs < 0)
        return -1;
    char buf[32];
    if (hl) {
        fmt_limit(buf, sizeof(buf), limit, v2);
        if (write_ctrl(cg, "memory", v2 ? "memory.max" : "memory.limit_in_bytes", buf,
                       "linux.resources.memory.limit", err) < 0)
            return -1;
    }
    if (hr) {
        fmt_limit(buf, sizeof(buf), resv, v2);
        if (write_ctrl(cg, "memory", v2 ? "memory.low" : "memory.soft_limit_in_bytes", buf,
                       "linux.resources.memory.reservation", err) < 0)
            return -1;
    }
    if (hs) {
        /* The spec's swap is memory+swap (v1 memsw); v2 wants swap alone. */
        if (v2 && swap > 0 && hl && limit > 0) {
            if (swap < limit)
                return err_input(err, "linux.resources.memory.swap (%" PRId64
                                ") is below memory.limit (%" PRId64 ")",
                                swap, limit);
            swap -= limit;
        }
        fmt_limit(buf, sizeof(buf), swap, v2);
        if (write_ctrl(cg, "memory", v2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes",
                       buf, "linux.resources.memory.swap", err) < 0)
            return err_wrap(err, "swap limits need swap accounting in the kernel");
    }
    struct json_object *v;
    if (json_object_object_get_ex(mem, "disableOOMKiller", &v) && json_object_get_boolean(v)) {
        if (v2)
            return err_make(err, ENOTSUP,
                            "linux.resources.memory.disableOOMKiller is not supported on "
                            "cgroup v2");
        if (write_ctrl(cg, "memory", "memory.oom_control", "1",
                       "linux.resources.memory.disableOOMKiller", err) < 0)
            return -1;
    }
    return 0;
}

static int apply_cpu(struct json_object *cpu, struct cgroup *cg, struct err **err)
{
    const char *b = "linux.resources.cpu";
    bool v2 = cg->mode == CGROUP_V2;
    int64_t shares = 0, quota = 0, period = 0;
    const char *cpus = NULL, *mems = NULL;
    int hs = get_i64(cpu, "shares", b, &shares, err);
    int hq = get_i64(cpu, "quota", b, &quota, err);
    int hp = get_i64(cpu, "period", b, &period, err);
    int hc = get_str(cpu, "cpus", b, &cpus, err);
    int hm = get_str(cpu, "mems", b, &mems, err);
    if (hs < 0 || hq < 0 || hp < 0 || hc < 0 || hm < 0)
        return -1;
    char buf[64];
    if (hs && shares > 0) {
        if (v2) /* the conversion runc and crun use */
            snprintf(buf, sizeof(buf), "%" PRId64, 1 + ((shares - 2) * 9999) / 262142);
        else
            snprintf(buf, sizeof(buf), "%" PRId64, shares);
        if (write_ctrl(cg, "cpu", v2 ? "cpu.weight" : "cpu.shares", buf,
                       "linux.resources.cpu.shares", err) < 0)
            return -1;
    }
    if (v2 && (hq || hp)) {
        if (quota > 0)
            snprintf(buf, sizeof(buf), "%" PRId64 " %" PRId64, quota, period > 0 ? period : 100000);
        else
            snprintf(buf, sizeof(buf), "max %" PRId64, period > 0 ? period : 100000);
        if (write_ctrl(cg, "cpu", "cpu.max", buf, "linux.resources.cpu.quota", err) < 0)
            return -1;
    } else {
        if (hp && period > 0) {
            snprintf(buf, sizeof(buf), "%" PRId64, period);
            if (write_ctrl(cg, "cpu", "cpu.cfs_period_us", buf, "linux.resources.cpu.period",
                           err) < 0)
                return -1;
        }
        if (hq) {
            snprintf(buf, sizeof(buf), "%" PRId64, quota > 0 ? quota : -1);
            if (write_ctrl(cg, "cpu", "cpu.cfs_quota_us", buf, "linux.resources.cpu.quota",
                           err) < 0)
                return -1;
        }
    }
    if (hc && cpus[0] &&
        write_ctrl(cg, "cpuset", "cpuset.cpus", cpus, "linux.resources.cpu.cpus", err) < 0)
        return -1;
    if (hm && mems[0] &&
        write_ctrl(cg, "cpuset", "cpuset.mems", mems, "linux.resources.cpu.mems", err) < 0)
        return -1;
    return 0;
}

int cgroup_apply_resources(const struct oci_config *cfg, struct cgroup *cg, struct err **err)
{
    struct json_object *res = cfg->linux_.resources;
    if (res == NULL)
        return 0;
    const char *b = "linux.resources";
    int r;
    struct json_object *mem = get_obj(res, "memory", b, err, &r);
    if (r < 0 || (mem && apply_memory(mem, cg, err) < 0))
        return -1;
    struct json_object *cpu = get_obj(res, "cpu", b, err, &r);
    if (r < 0 || (cpu && apply_cpu(cpu, cg, err) < 0))
        return -1;
    struct json_object *pids = get_obj(res, "pids", b, err, &r);
    if (r < 0)
        return -1;
    int64_t limit = 0;
    int hl = get_i64(pids, "limit", "linux.resources.pids", &limit, err);
    if (hl < 0)
        return -1;
    if (hl) {
        char buf[32];
        fmt_limit(buf, sizeof(buf), limit > 0 ? limit : -1, true);
        if (write_ctrl(cg, "pids", "pids.max", buf, "linux.resources.pids.limit", err) < 0)
            return -1;
    }
    return 0;
}
