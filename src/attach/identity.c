/* The target's identity: read from /proc/PID on the host, applied in the
 * session child after it joined the container's user namespace. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attach/internal.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "ns/caps.h"
#include "ns/seccomp.h"
#include "oci/config.h"

#define STATUS_MAX (64 * 1024)
#define ENVIRON_MAX (4 * 1024 * 1024)

/* The value of "Name:\t..." in a /proc status file, or NULL. */
static const char *status_field(const char *status, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = status; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, name, n) == 0 && l[n] == ':')
            return l + n + 1;
    return NULL;
}

static int parse_hex_field(const char *status, const char *name, uint64_t *out)
{
    const char *v = status_field(status, name);
    char *end;
    if (v == NULL)
        return -1;
    errno = 0;
    *out = strtoull(v, &end, 16);
    return errno || end == v ? -1 : 0;
}

/* The n-th (0-based) number of a field such as "Uid:\t0\t0\t0\t0". */
static int parse_num_field(const char *status, const char *name, int nth, unsigned long *out)
{
    const char *v = status_field(status, name);
    if (v == NULL)
        return -1;
    for (int i = 0;; i++) {
        char *end;
        while (*v == ' ' || *v == '\t')
            v++;
        errno = 0;
        unsigned long x = strtoul(v, &end, 10);
        if (errno || end == v)
            return -1;
        if (i == nth) {
            *out = x;
            return 0;
        }
        v = end;
    }
}

/* Translate a host id into the target's user namespace with its id map as
 * the host reads it ("inside outside count" lines); unmapped ids become the
 * overflow id 65534, as the kernel shows them. */
static uint32_t map_id(const char *map, uint32_t host)
{
    for (const char *l = map; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        unsigned long in, out, count;
        if (sscanf(l, "%lu %lu %lu", &in, &out, &count) != 3)
            continue;
        if (host >= out && host - out < count)
            return (uint32_t)(in + (host - out));
    }
    return 65534;
}

static char **parse_environ(const char *data, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (data[i] == '\0')
            n++;
    char **env = xcalloc(n + 2, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        size_t l = strnlen(data + i, len - i);
        if (l > 0 && memchr(data + i, '=', l))
            env[k++] = strndup(data + i, l);
        i += l + 1;
    }
    env[k] = NULL;
    return env;
}

/* /proc/PID/limits: "Max cpu time  unlimited  unlimited  seconds", one line
 * per resource in RLIMIT_* order after a header; soft and hard values start
 * at columns 26 and 47 (the kernel prints them with %-25s %-20s %-20s). */
static void parse_limits(const char *data, struct attach_identity *id)
{
    const char *l = strchr(data, '\n');
    for (int r = 0; l && r < RLIM_NLIMITS; r++) {
        l++;
        const char *next = strchr(l, '\n');
        size_t len = next ? (size_t)(next - l) : strlen(l);
        if (len > 47) {
            rlim_t v[2];
            bool ok = true;
            const char *cols[2] = {l + 26, l + 47};
            for (int c = 0; c < 2; c++) {
                if (strncmp(cols[c], "unlimited", 9) == 0) {
                    v[c] = RLIM_INFINITY;
                } else {
                    char *end;
                    errno = 0;
                    v[c] = strtoull(cols[c], &end, 10);
                    ok = ok && errno == 0 && end != cols[c];
                }
            }
            if (ok) {
                id->rlimits[r].rlim_cur = v[0];
                id->rlimits[r].rlim_max = v[1];
                id->has_rlimit[r] = true;
            }
        }
        l = next;
    }
}

/* AppArmor profile or SELinux context of the target, when it is confined. */
static void read_lsm(int procfd, struct attach_identity *id)
{
    cleanup_err struct err *e = NULL;
    cleanup_free char *label = NULL;
    size_t len;
    if (read_file_at(procfd, "attr/apparmor/current", 4096, &label, &len, &e) == 0) {
        label[strcspn(label, "\n")] = '\0';
        char *mode = strstr(label, " (");
        if (mode)
            *mode = '\0';
        if (label[0] && strcmp(label, "unconfined") != 0) {
            id->lsm = xstrdup("apparmor");
            id->lsm_label = steal_pointer(&label);
        }
        return;
    }
    err_free(&e);
    if (access("/sys/fs/selinux/enforce", F_OK) != 0)
        return;
    if (read_file_at(procfd, "attr/current", 4096, &label, &len, &e) == 0) {
        label[strcspn(label, "\n")] = '\0';
        if (label[0] && strcmp(label, "unconfined") != 0 && strcmp(label, "kernel") != 0) {
            id->lsm = xstrdup("selinux");
            id->lsm_label = steal_pointer(&label);
        }
    }
}

int attach_identity_read(int procfd, pid_t pid, struct attach_identity *id, struct err **err)
{
    cleanup_free char *st = NULL, *uidmap = NULL, *gidmap = NULL, *env = NULL, *lim = NULL;
    size_t len, envlen;
    if (read_file_at(procfd, "status", STATUS_MAX, &st, &len, err) < 0)
        return -1;
    unsigned long uid, gid, umask_v;
    if (parse_num_field(st, "Uid", 1, &uid) < 0 || parse_num_field(st, "Gid", 1, &gid) < 0 ||
        parse_hex_field(st, "CapInh", &id->cap_inh) < 0 ||
        parse_hex_field(st, "CapPrm", &id->cap_prm) < 0 ||
        parse_hex_field(st, "CapEff", &id->cap_eff) < 0 ||
        parse_hex_field(st, "CapBnd", &id->cap_bnd) < 0)
        return err_make(err, EPROTO, "unexpected /proc/%d/status", (int)pid);
    if (parse_hex_field(st, "CapAmb", &id->cap_amb) < 0)
        id->cap_amb = 0;
    unsigned long v;
    id->no_new_privs = parse_num_field(st, "NoNewPrivs", 0, &v) == 0 && v != 0;
    id->seccomp_mode = parse_num_field(st, "Seccomp", 0, &v) == 0 ? (int)v : 0;
    const char *um = status_field(st, "Umask");
    if (um) {
        umask_v = strtoul(um, NULL, 8);
        id->umask = (mode_t)(umask_v & 0777);
        id->has_umask = true;
    }
    id->host_uid = (uid_t)uid;
    id->host_gid = (gid_t)gid;
    if (read_file_at(procfd, "uid_map", 64 * 1024, &uidmap, &len, err) < 0 ||
        read_file_at(procfd, "gid_map", 64 * 1024, &gidmap, &len, err) < 0)
        return -1;
    id->uid = map_id(uidmap, (uint32_t)uid);
    id->gid = map_id(gidmap, (uint32_t)gid);
    const char *g = status_field(st, "Groups");
    size_t cap = 0;
    while (g && *g && *g != '\n') {
        char *end;
        while (*g == ' ' || *g == '\t')
            g++;
        unsigned long x = strtoul(g, &end, 10);
        if (end == g)
            break;
        if (id->n_groups == cap) {
            cap = cap ? cap * 2 : 8;
            gid_t *ng = realloc(id->groups, cap * sizeof(gid_t));
            if (ng == NULL)
                abort();
            id->groups = ng;
        }
        id->groups[id->n_groups++] = map_id(gidmap, (uint32_t)x);
        g = end;
    }
    /* environ needs ptrace access (PTRACE_MODE_READ): the permission check. */
    if (read_file_at(procfd, "environ", ENVIRON_MAX, &env, &envlen, err) < 0) {
        if (err_code(*err) == EACCES || err_code(*err) == EPERM) {
            err_free(err);
            return err_make(err, EACCES, "no permission (attach needs root, or the owner of "
                                         "the process)");
        }
        return -1;
    }
    id->env = parse_environ(env, envlen);
    cleanup_err struct err *e = NULL;
    if (read_file_at(procfd, "limits", 64 * 1024, &lim, &len, &e) == 0)
        parse_limits(lim, id);
    read_lsm(procfd, id);
    return 0;
}

void attach_identity_free(struct attach_identity *id)
{
    free(id->groups);
    strv_free(id->env);
    free(id->lsm);
    free(id->lsm_label);
    memset(id, 0, sizeof(*id));
}

/* The capabilities in mask as "CAP_X" names (what ns/caps.c takes). */
static char **caps_names(uint64_t mask)
{
    size_t n = 0;
    char **v = xcalloc(65, sizeof(char *));
    for (cap_value_t c = 0; c < 64; c++) {
        if (!(mask & (1ULL << c)))
            continue;
        char *name = cap_to_name(c);
        if (name == NULL)
            abort();
        char *up = xstrdup(name);
        cap_free(name);
        for (char *s = up; *s; s++)
            *s = (char)toupper((unsigned char)*s);
        v[n++] = up;
    }
    return v;
}

static void caps_from_masks(struct oci_caps *c, const struct attach_identity *id)
{
    c->bounding = caps_names(id->cap_bnd);
    c->effective = caps_names(id->cap_eff);
    c->permitted = caps_names(id->cap_prm);
    c->inheritable = caps_names(id->cap_inh);
    c->ambient = caps_names(id->cap_amb);
}

static void caps_free(struct oci_caps *c)
{
    strv_free(c->bounding);
    strv_free(c->effective);
    strv_free(c->permitted);
    strv_free(c->inheritable);
    strv_free(c->ambient);
}

/* The target's rlimits; one we may not set (a hard limit above ours needs
 * CAP_SYS_RESOURCE) keeps our value. */
static void apply_rlimits(const struct attach_identity *id)
{
    for (int r = 0; r < RLIM_NLIMITS; r++)
        if (id->has_rlimit[r] && setrlimit(r, &id->rlimits[r]) < 0)
            log_debug("attach: rlimit %d not copied: %s", r, strerror(errno));
}

/* Ask the LSM to put the command under the target's profile at exec. */
static int apply_lsm(const struct attach_identity *id, struct err **err)
{
    if (id->lsm == NULL)
        return 0;
    bool aa = strcmp(id->lsm, "apparmor") == 0;
    const char *file = aa ? "/proc/self/attr/apparmor/exec" : "/proc/self/attr/exec";
    cleanup_free char *v = aa ? xasprintf("exec %s", id->lsm_label) : xstrdup(id->lsm_label);
    cleanup_close int fd = open(file, O_WRONLY | O_CLOEXEC);
    if (fd < 0 && aa)
        fd = open(file = "/proc/self/attr/exec", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write_all(fd, v, strlen(v)) < 0)
        return err_make(err, errno, "set the %s label `%s` for exec", id->lsm, id->lsm_label);
    return 0;
}

int attach_identity_apply(const struct attach_identity *id, const struct seccomp_prog *seccomp,
                          struct err **err)
{
    apply_rlimits(id);
    /* A filter with a listener would hand our notify fd to the container's
     * supervisor: install it without (notified calls then fail ENOSYS). */
    struct seccomp_prog prog;
    if (seccomp) {
        prog = *seccomp;
        prog.listener_path = NULL;
        seccomp = &prog;
    }
    /* Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: before
     * the capabilities are dropped (as ns/process.c). */
    if (!id->no_new_privs && ns_seccomp_install(seccomp, NULL, err) < 0)
        return -1;
    struct oci_caps caps = {0};
    caps_from_masks(&caps, id);
    int r = -1;
    if (caps_drop_bounding(&caps, err) < 0)
        goto out;
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
        err_make(err, errno, "keep capabilities");
        goto out;
    }
    if (setgroups(id->n_groups, id->groups) < 0 && !(errno == EPERM && id->n_groups == 0)) {
        err_make(err, errno, "set the supplementary groups");
        goto out;
    }
    if (setresgid(id->gid, id->gid, id->gid) < 0) {
        err_make(err, errno, "set gid %u", (unsigned)id->gid);
        goto out;
    }
    if (setresuid(id->uid, id->uid, id->uid) < 0) {
        err_make(err, errno, "set uid %u", (unsigned)id->uid);
        goto out;
    }
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    if (caps_apply(&caps, err) < 0)
        goto out;
    if (id->has_umask)
        umask(id->umask);
    if (id->no_new_privs) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
            err_make(err, errno, "set no_new_privs");
            goto out;
        }
        if (ns_seccomp_install(seccomp, NULL, err) < 0)
            goto out;
    }
    r = apply_lsm(id, err);
out:
    caps_free(&caps);
    return r;
}
