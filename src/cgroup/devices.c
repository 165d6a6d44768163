/* Device access rules (linux.resources.devices): v1 devices.allow/deny, v2
 * a BPF_PROG_TYPE_CGROUP_DEVICE program assembled here (no libbpf). */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"

struct dev_rule {
    bool allow;
    char type;           /* 'a', 'c', 'b' */
    int64_t major, minor; /* -1: any */
    unsigned access;     /* bits: 1 mknod, 2 read, 4 write (BPF_DEVCG_ACC_*) */
};

/* What every container may use whatever the rules say (runc's list). */
static const struct dev_rule default_allow[] = {
    {true, 'c', -1, -1, 1}, {true, 'b', -1, -1, 1}, /* mknod of anything */
    {true, 'c', 1, 3, 7},   {true, 'c', 1, 5, 7},   {true, 'c', 1, 7, 7},
    {true, 'c', 1, 8, 7},   {true, 'c', 1, 9, 7},   {true, 'c', 5, 0, 7},
    {true, 'c', 5, 1, 7},   {true, 'c', 5, 2, 7},   {true, 'c', 136, -1, 7},
};

static int parse_rule(struct json_object *e, size_t i, struct dev_rule *r, struct err **err)
{
    char b[64];
    snprintf(b, sizeof(b), "linux.resources.devices[%zu]", i);
    if (json_object_get_type(e) != json_type_object)
        return err_input(err, "config.json: `%s` must be an object", b);
    struct json_object *v;
    if (!json_object_object_get_ex(e, "allow", &v) || json_object_get_type(v) != json_type_boolean)
        return err_input(err, "config.json: `%s.allow` must be a boolean", b);
    r->allow = json_object_get_boolean(v);
    r->type = 'a';
    if (json_object_object_get_ex(e, "type", &v) && v) {
        const char *t = json_object_get_string(v);
        if (json_object_get_type(v) != json_type_string || strlen(t) != 1 || !strchr("acb", t[0]))
            return err_input(err, "config.json: `%s.type` must be a, c or b", b);
        r->type = t[0];
    }
    r->major = r->minor = -1;
    const char *keys[2] = {"major", "minor"};
    int64_t *dst[2] = {&r->major, &r->minor};
    for (int k = 0; k < 2; k++) {
        if (json_object_object_get_ex(e, keys[k], &v) && v) {
            if (json_object_get_type(v) != json_type_int || json_object_get_int64(v) < -1 ||
                json_object_get_int64(v) > UINT32_MAX)
                return err_input(err, "config.json: `%s.%s` must be a number (-1: any)", b,
                                 keys[k]);
            *dst[k] = json_object_get_int64(v);
        }
    }
    r->access = 7;
    if (json_object_object_get_ex(e, "access", &v) && v) {
        const char *a = json_object_get_string(v);
        if (json_object_get_type(v) != json_type_string)
            return err_input(err, "config.json: `%s.access` must be a string", b);
        r->access = 0;
        for (; *a; a++) {
            if (*a == 'm') r->access |= 1;
            else if (*a == 'r') r->access |= 2;
            else if (*a == 'w') r->access |= 4;
            else
                return err_input(err, "config.json: `%s.access`: unknown access `%c`", b, *a);
        }
    }
    return 0;
}

/* Write one rule to devices.allow or devices.deny; fds[0] and fds[1] keep
 * those files open across rules (each write(2) is one rule). */
static int write_v1(int dfd, int fds[2], const struct dev_rule *r, struct err **err)
{
    char line[64], maj[24], min[24], acc[4];
    size_t n = 0;
    if (r->major < 0) snprintf(maj, sizeof(maj), "*"); else snprintf(maj, sizeof(maj), "%lld", (long long)r->major);
    if (r->minor < 0) snprintf(min, sizeof(min), "*"); else snprintf(min, sizeof(min), "%lld", (long long)r->minor);
    if (r->access & 2) acc[n++] = 'r';
    if (r->access & 4) acc[n++] = 'w';
    if (r->access & 1) acc[n++] = 'm';
    acc[n] = '\0';
    if (r->type == 'a')
        snprintf(line, sizeof(line), "a");
    else
        snprintf(line, sizeof(line), "%c %s:%s %s", r->type, maj, min, acc);
    const char *file = r->allow ? "devices.allow" : "devices.deny";
    int *fd = &fds[r->allow ? 0 : 1];
    if (*fd < 0)
        *fd = openat(dfd, file, O_WRONLY | O_CLOEXEC);
    if (*fd < 0 || write(*fd, line, strlen(line)) < 0)
        return err_make(err, errno, "linux.resources.devices: write `%s` to %s", line, file);
    return 0;
}

/* ---- v2: the device program ---- */

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

struct prog {
    struct bpf_insn *insn;
    size_t n, cap;
};

static void emit(struct prog *p, struct bpf_insn i)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->insn = realloc(p->insn, p->cap * sizeof(*p->insn));
        if (p->insn == NULL)
            abort();
    }
    p->insn[p->n++] = i;
}

/* Rules are checked last to first; the first that matches decides (a later
 * rule overrides an earlier one, as in v1); nothing matching denies. */
static void build_prog(struct prog *p, const struct dev_rule *rules, size_t n)
{
    /* r2 = access, r3 = type, r4 = major, r5 = minor */
    emit(p, INSN(BPF_LDX | BPF_W | BPF_MEM, BPF_REG_2, BPF_REG_1, 0, 0));
    emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, BPF_REG_2, 0, 0));
    emit(p, INSN(BPF_ALU64 | BPF_AND | BPF_K, BPF_REG_3, 0, 0, 0xffff));
    emit(p, INSN(BPF_ALU64 | BPF_RSH | BPF_K, BPF_REG_2, 0, 0, 16));
    emit(p, INSN(BPF_LDX | BPF_W | BPF_MEM, BPF_REG_4, BPF_REG_1, 4, 0));
    emit(p, INSN(BPF_LDX | BPF_W | BPF_MEM, BPF_REG_5, BPF_REG_1, 8, 0));
    for (size_t k = n; k-- > 0;) {
        const struct dev_rule *r = &rules[k];
        bool t = r->type != 'a', a = (r->access & 7) != 7;
        /* Each block: its checks jump to the next block on a mismatch. */
        int size = t + (a ? 3 : 0) + (r->major >= 0) + (r->minor >= 0) + 2, j = 0;
#define TO_NEXT ((short)(size - j - 1))
        if (t) {
            emit(p, INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_3, 0, TO_NEXT,
                         r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR));
            j++;
        }
        if (a) {
            emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_0, BPF_REG_2, 0, 0));
            j++;
            emit(p, INSN(BPF_ALU64 | BPF_AND | BPF_K, BPF_REG_0, 0, 0, (int)(~r->access & 7)));
            j++;
            emit(p, INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, TO_NEXT, 0));
            j++;
        }
        if (r->major >= 0) {
            emit(p, INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_4, 0, TO_NEXT, (int)r->major));
            j++;
        }
        if (r->minor >= 0) {
            emit(p, INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_5, 0, TO_NEXT, (int)r->minor));
            j++;
        }
#undef TO_NEXT
        emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, r->allow ? 1 : 0));
        emit(p, INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
        if (size == 2)
            return; /* matches everything: what follows is unreachable (the
                       verifier refuses unreachable code) */
    }
    emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0));
    emit(p, INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
}

static int attach_v2(int cgfd, const struct dev_rule *rules, size_t n, struct err **err)
{
    struct prog p = {0};
    build_prog(&p, rules, n);
    static char log[16384];
    log[0] = '\0';
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uint64_t)(uintptr_t)p.insn;
    attr.insn_cnt = (uint32_t)p.n;
    attr.license = (uint64_t)(uintptr_t)"Apache";
    int fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
    int e = errno;
    if (fd < 0 && (e == EINVAL || e == EACCES)) {
        /* Load again with the verifier's log, for the error message. */
        attr.log_buf = (uint64_t)(uintptr_t)log;
        attr.log_size = sizeof(log);
        attr.log_level = 1;
        if (syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr)) < 0 && errno == ENOSPC)
            log[0] = '\0';
    }
    free(p.insn);
    if (fd < 0)
        return err_make(err, e, "load the device cgroup program%s%s", log[0] ? ": " : "", log);
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = (uint32_t)cgfd;
    attr.attach_bpf_fd = (uint32_t)fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    int r = (int)syscall(SYS_bpf, BPF_PROG_ATTACH, &attr, sizeof(attr));
    e = errno;
    close(fd);
    if (r < 0)
        return err_make(err, e, "attach the device cgroup program");
    return 0;
}

int cgroup_apply_devices(struct json_object *arr, struct cgroup *cg, struct err **err)
{
    if (json_object_get_type(arr) != json_type_array)
        return err_input(err, "config.json: `linux.resources.devices` must be an array");
    size_t n = json_object_array_length(arr);
    size_t nd = sizeof(default_allow) / sizeof(default_allow[0]);
    struct dev_rule *rules = xcalloc(n + nd, sizeof(*rules));
    int r = -1;
    for (size_t i = 0; i < n; i++)
        if (parse_rule(json_object_array_get_idx(arr, i), i, &rules[i], err) < 0)
            goto out;
    memcpy(rules + n, default_allow, sizeof(default_allow));
    int v1 = cg->mode == CGROUP_V2 ? -1 : cgroup_controller_fd(cg, "devices");
    if (v1 >= 0) {
        int fds[2] = {-1, -1};
        r = 0;
        for (size_t i = 0; i < n + nd && r == 0; i++)
            r = write_v1(v1, fds, &rules[i], err);
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0)
                close(fds[i]);
    } else if (cg->mode == CGROUP_V2) {
        r = attach_v2(cgroup_v2_fd(cg), rules, n + nd, err);
    } else {
        r = err_make(err, ENOTSUP, "linux.resources.devices: no devices cgroup on this host");
    }
out:
    free(rules);
    return r;
}
