/* linux.resources -> cgroup files, for v1 and v2. Each value is checked for
 * type and range; an error names the field and the file. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "oci/config.h"

/* The directory of controller `ctrl`; on a hybrid host a controller that
 * no v1 hierarchy has may be on the cgroup2 mount (hugetlb is, on this
 * project's build machines). */
static int ctrl_fd(const struct cgroup *cg, const char *ctrl)
{
    int fd = cgroup_controller_fd(cg, ctrl);
    if (fd >= 0)
        return fd;
    if (cg->mode == CGROUP_HYBRID)
        return cgroup_v2_fd(cg);
    return -1;
}

/* The v2 directory, or -1 (v1-only hosts). */
static int v2_fd(const struct cgroup *cg)
{
    return cg->mode == CGROUP_V1 ? -1 : cgroup_v2_fd(cg);
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
    /* v1 wants memory <= memsw at every moment: when both grow, memsw goes
     * first (runc's rule); when they shrink, memory does. */
    bool swap_first = false;
    if (!v2 && hl && hs) {
        int dfd = ctrl_fd(cg, "memory");
        cleanup_free char *cur = NULL;
        if (dfd >= 0 && read_file_at(dfd, "memory.limit_in_bytes", 64, &cur, NULL, NULL) == 0 &&
            (limit < 0 || (uint64_t)limit > strtoull(cur, NULL, 10)))
            swap_first = true;
    }
    if (swap_first) {
        fmt_limit(buf, sizeof(buf), swap, v2);
        if (write_ctrl(cg, "memory", "memory.memsw.limit_in_bytes", buf,
                       "linux.resources.memory.swap", err) < 0)
            return err_wrap(err, "swap limits need swap accounting in the kernel");
        hs = 0;
    }
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
    int64_t swappiness = 0;
    int hw = get_i64(mem, "swappiness", b, &swappiness, err);
    if (hw < 0)
        return -1;
    if (hw) {
        if (swappiness < 0 || swappiness > 100)
            return err_input(err, "config.json: `linux.resources.memory.swappiness` (%" PRId64
                                  ") must be 0 to 100", swappiness);
        if (v2)
            return err_make(err, ENOTSUP,
                            "linux.resources.memory.swappiness is not supported on cgroup v2");
        snprintf(buf, sizeof(buf), "%" PRId64, swappiness);
        if (write_ctrl(cg, "memory", "memory.swappiness", buf,
                       "linux.resources.memory.swappiness", err) < 0)
            return -1;
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

/* Per-device entries of blockIO: "major:minor <value>" lines. */
static int apply_block_devices(struct json_object *bio, const char *key, const char *vkey,
                               const char *v1file, const char *v2file, const char *v2fmt,
                               struct cgroup *cg, struct err **err)
{
    struct json_object *arr;
    if (!json_object_object_get_ex(bio, key, &arr) || arr == NULL)
        return 0;
    char base[96];
    snprintf(base, sizeof(base), "linux.resources.blockIO.%s", key);
    if (json_object_get_type(arr) != json_type_array)
        return err_input(err, "config.json: `%s` must be an array", base);
    bool v2 = cg->mode == CGROUP_V2;
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *e = json_object_array_get_idx(arr, i);
        char eb[128];
        snprintf(eb, sizeof(eb), "%s[%zu]", base, i);
        int64_t major = -1, minor = -1, val = -1;
        if (json_object_get_type(e) != json_type_object || get_i64(e, "major", eb, &major, err) <= 0 ||
            get_i64(e, "minor", eb, &minor, err) <= 0 || get_i64(e, vkey, eb, &val, err) <= 0 ||
            major < 0 || minor < 0 || val < 0) {
            if (err && *err)
                return -1;
            return err_input(err, "config.json: `%s` needs major, minor and %s", eb, vkey);
        }
        char line[96];
        if (v2)
            snprintf(line, sizeof(line), v2fmt, major, minor, val);
        else
            snprintf(line, sizeof(line), "%" PRId64 ":%" PRId64 " %" PRId64, major, minor, val);
        if (write_ctrl(cg, v2 ? "io" : "blkio", v2 ? v2file : v1file, line, eb, err) < 0)
            return -1;
    }
    return 0;
}

static int apply_blkio(struct json_object *bio, struct cgroup *cg, struct err **err)
{
    const char *b = "linux.resources.blockIO";
    bool v2 = cg->mode == CGROUP_V2;
    int64_t w = 0;
    int hw = get_i64(bio, "weight", b, &w, err);
    if (hw < 0)
        return -1;
    if (hw) {
        if (w < 10 || w > 1000)
            return err_input(err, "config.json: `%s.weight` must be 10..1000", b);
        char buf[32];
        if (v2)
            snprintf(buf, sizeof(buf), "default %" PRId64, 1 + (w - 10) * 9999 / 990);
        else
            snprintf(buf, sizeof(buf), "%" PRId64, w);
        /* v1 with the bfq scheduler only has blkio.bfq.weight */
        if (write_ctrl(cg, v2 ? "io" : "blkio", v2 ? "io.weight" : "blkio.weight", buf,
                       "linux.resources.blockIO.weight", err) < 0) {
            if (v2)
                return -1;
            err_free(err);
            if (write_ctrl(cg, "blkio", "blkio.bfq.weight", buf + 0,
                           "linux.resources.blockIO.weight", err) < 0)
                return -1;
        }
    }
    return apply_block_devices(bio, "weightDevice", "weight", "blkio.weight_device",
                               "io.weight", "%" PRId64 ":%" PRId64 " %" PRId64, cg, err) < 0 ||
                   apply_block_devices(bio, "throttleReadBpsDevice", "rate",
                                       "blkio.throttle.read_bps_device", "io.max",
                                       "%" PRId64 ":%" PRId64 " rbps=%" PRId64, cg, err) < 0 ||
                   apply_block_devices(bio, "throttleWriteBpsDevice", "rate",
                                       "blkio.throttle.write_bps_device", "io.max",
                                       "%" PRId64 ":%" PRId64 " wbps=%" PRId64, cg, err) < 0 ||
                   apply_block_devices(bio, "throttleReadIOPSDevice", "rate",
                                       "blkio.throttle.read_iops_device", "io.max",
                                       "%" PRId64 ":%" PRId64 " riops=%" PRId64, cg, err) < 0 ||
                   apply_block_devices(bio, "throttleWriteIOPSDevice", "rate",
                                       "blkio.throttle.write_iops_device", "io.max",
                                       "%" PRId64 ":%" PRId64 " wiops=%" PRId64, cg, err) < 0
               ? -1
               : 0;
}

static int apply_hugetlb(struct json_object *arr, struct cgroup *cg, struct err **err)
{
    const char *b = "linux.resources.hugepageLimits";
    if (json_object_get_type(arr) != json_type_array)
        return err_input(err, "config.json: `%s` must be an array", b);
    bool v2 = cg->mode == CGROUP_V2 || ctrl_fd(cg, "hugetlb") == v2_fd(cg);
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *e = json_object_array_get_idx(arr, i);
        char eb[96];
        snprintf(eb, sizeof(eb), "%s[%zu]", b, i);
        const char *size = NULL;
        int64_t limit = 0;
        if (json_object_get_type(e) != json_type_object || get_str(e, "pageSize", eb, &size, err) <= 0 ||
            get_i64(e, "limit", eb, &limit, err) <= 0) {
            if (err && *err)
                return -1;
            return err_input(err, "config.json: `%s` needs pageSize and limit", eb);
        }
        for (const char *c = size; *c; c++)
            if (!((*c >= '0' && *c <= '9') || (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z')))
                return err_input(err, "config.json: `%s.pageSize` `%s` is not a page size", eb,
                                 size);
        char file[64], val[32];
        snprintf(file, sizeof(file), v2 ? "hugetlb.%s.max" : "hugetlb.%s.limit_in_bytes", size);
        snprintf(val, sizeof(val), "%" PRId64, limit);
        if (write_ctrl(cg, "hugetlb", file, val, eb, err) < 0)
            return -1;
    }
    return 0;
}

/* linux.resources.unified: cgroup v2 files by name. */
static int apply_unified(struct json_object *u, struct cgroup *cg, struct err **err)
{
    const char *b = "linux.resources.unified";
    if (json_object_get_type(u) != json_type_object)
        return err_input(err, "config.json: `%s` must be an object", b);
    int dfd = v2_fd(cg);
    if (json_object_object_length(u) > 0 && dfd < 0)
        return err_input(err, "config.json: `%s` needs cgroup v2", b);
    json_object_object_foreach(u, key, val)
    {
        if (json_object_get_type(val) != json_type_string)
            return err_input(err, "config.json: `%s.%s` must be a string", b, key);
        if (strchr(key, '/') || key[0] == '.' || key[0] == '\0')
            return err_input(err, "config.json: `%s`: invalid file name `%s`", b, key);
        cleanup_close int fd = openat(dfd, key, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        const char *v = json_object_get_string(val);
        if (fd < 0 || write(fd, v, strlen(v)) < 0)
            return err_make(err, errno, "%s.%s: write `%s`", b, key, v);
    }
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
    struct json_object *bio = get_obj(res, "blockIO", b, err, &r);
    if (r < 0 || (bio && apply_blkio(bio, cg, err) < 0))
        return -1;
    struct json_object *v;
    if (json_object_object_get_ex(res, "hugepageLimits", &v) && v && apply_hugetlb(v, cg, err) < 0)
        return -1;
    if (json_object_object_get_ex(res, "unified", &v) && v && apply_unified(v, cg, err) < 0)
        return -1;
    if (json_object_object_get_ex(res, "devices", &v) && v && cgroup_apply_devices(v, cg, err) < 0)
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
