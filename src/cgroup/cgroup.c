#include "cgroup/cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"

#define CGROUP_ROOT "/sys/fs/cgroup"

int cgroup_detect(enum cgroup_mode *mode, struct err **err)
{
    struct statfs s;
    if (statfs(CGROUP_ROOT, &s) < 0)
        return err_make(err, errno, "statfs " CGROUP_ROOT);
    if (s.f_type == CGROUP2_SUPER_MAGIC) {
        *mode = CGROUP_V2;
        return 0;
    }
    if (statfs(CGROUP_ROOT "/unified", &s) == 0 && s.f_type == CGROUP2_SUPER_MAGIC)
        *mode = CGROUP_HYBRID;
    else
        *mode = CGROUP_V1;
    return 0;
}

char *cgroup_path_for(const char *cgroups_path, const char *id, const char *scope)
{
    if (cgroups_path == NULL || cgroups_path[0] == '\0')
        return xasprintf("%s@%s", scope && scope[0] ? scope : "cocoon", id);
    /* systemd style "slice:prefix:name", as podman and containerd pass with
     * --systemd-cgroup: the same place systemd would put the scope. */
    const char *c1 = strchr(cgroups_path, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (cgroups_path[0] != '/' && c1 && c2 && !strchr(c2 + 1, ':')) {
        const char *slice = c1 == cgroups_path ? "system.slice" : NULL;
        cleanup_free char *s = slice ? xstrdup(slice)
                                     : strndup(cgroups_path, (size_t)(c1 - cgroups_path));
        cleanup_free char *prefix = strndup(c1 + 1, (size_t)(c2 - c1 - 1));
        if (s == NULL || prefix == NULL)
            abort();
        return xasprintf("%s/%s%s%s.scope", s, prefix, prefix[0] ? "-" : "", c2 + 1);
    }
    while (*cgroups_path == '/')
        cgroups_path++;
    return xstrdup(cgroups_path);
}

/* A path is usable only if no component is "." or ".." (no escaping the
 * hierarchy). */
static int check_path(const char *path, struct err **err)
{
    if (path[0] == '\0')
        return err_input(err, "linux.cgroupsPath: the root cgroup cannot be used");
    for (const char *p = path; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return err_input(err, "linux.cgroupsPath `%s` must not contain . or ..",
                            path);
        p += n;
        while (*p == '/')
            p++;
    }
    return 0;
}

/* The mounted hierarchies: names of directories under /sys/fs/cgroup that
 * are cgroup mounts ("" for a pure v2 host). */
static int list_hierarchies(enum cgroup_mode mode, char **names, size_t *n, struct err **err)
{
    *n = 0;
    if (mode == CGROUP_V2) {
        names[(*n)++] = xstrdup("");
        return 0;
    }
    cleanup_dir DIR *d = opendir(CGROUP_ROOT);
    if (d == NULL)
        return err_make(err, errno, "open " CGROUP_ROOT);
    struct dirent *de;
    while ((de = readdir(d)) != NULL && *n < CGROUP_MAX_HIER) {
        if (de->d_name[0] == '.' || de->d_type != DT_DIR)
            continue;
        cleanup_free char *p = xasprintf(CGROUP_ROOT "/%s", de->d_name);
        struct statfs s;
        if (statfs(p, &s) < 0 || (s.f_type != CGROUP_SUPER_MAGIC && s.f_type != CGROUP2_SUPER_MAGIC))
            continue;
        names[(*n)++] = xstrdup(de->d_name);
    }
    return 0;
}

static char *hier_dir(const char *name, const char *path)
{
    return name[0] ? xasprintf(CGROUP_ROOT "/%s/%s", name, path)
                   : xasprintf(CGROUP_ROOT "/%s", path);
}

/* Copy a v1 cpuset file from the parent if empty (a new cpuset cgroup has
 * no cpus or mems, and no process may join it until it has). */
static void cpuset_inherit(const char *dir, const char *file)
{
    char buf[4096];
    cleanup_free char *self = xasprintf("%s/%s", dir, file);
    cleanup_free char *parent_dir = xstrdup(dir);
    char *slash = strrchr(parent_dir, '/');
    if (slash == NULL)
        return;
    *slash = '\0';
    cleanup_free char *parent = xasprintf("%s/%s", parent_dir, file);
    int fd = open(self, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n > 1)
        return;
    fd = open(parent, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    n = read(fd, buf, sizeof(buf));
    close(fd);
    if (n <= 0)
        return;
    fd = open(self, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    if (write(fd, buf, (size_t)n) < 0) {
        /* leave it; joining will fail with a clear error */
    }
    close(fd);
}

/* mkdir -p of `path` under hierarchy `name`; records the first directory it
 * created in *created (to undo), NULL if all existed. */
static int make_dirs_once(const char *name, const char *path, char **created,
                          struct err **err);

/* A concurrent delete may remove an empty cocoon parent between our mkdir
 * of it and of the leaf: start over when that happens. */
static int make_dirs(const char *name, const char *path, char **created, struct err **err)
{
    for (int tries = 0;; tries++) {
        int r = make_dirs_once(name, path, created, err);
        if (r == 0 || err_code(*err) != ENOENT || tries == 20)
            return r;
        err_free(err);
        free(*created);
        *created = NULL;
    }
}

static int make_dirs_once(const char *name, const char *path, char **created,
                          struct err **err)
{
    cleanup_free char *full = hier_dir(name, path);
    size_t base = strlen(full) - strlen(path);
    *created = NULL;
    for (char *s = full + base;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        int r = mkdir(full, 0755);
        if (r < 0 && errno == EEXIST && saved == '\0')
            return err_make(err, 0,
                            "cgroup `%s` already exists (is another container using it? "
                            "check linux.cgroupsPath)",
                            full);
        if (r < 0 && errno != EEXIST) {
            int e = errno;
            return err_make(err, e, "create cgroup `%s`", full);
        }
        if (r == 0 && *created == NULL)
            *created = xstrdup(full);
        /* Every level, new or not: a parent made by a concurrent create may
         * not have its cpus and mems yet (idempotent). */
        if (strcmp(name, "cpuset") == 0) {
            cpuset_inherit(full, "cpuset.cpus");
            cpuset_inherit(full, "cpuset.mems");
        }
        *s = saved;
        if (saved == '\0')
            break;
    }
    return 0;
}

/* Remove `dir` and its parents up to and including `top`. */
static void remove_dirs(const char *dir, const char *top)
{
    cleanup_free char *p = xstrdup(dir);
    size_t toplen = strlen(top);
    for (;;) {
        rmdir(p);
        if (strlen(p) <= toplen)
            break;
        char *slash = strrchr(p, '/');
        if (slash == NULL)
            break;
        *slash = '\0';
    }
}

/* On v2, enable the controllers the parent offers along the path, so that
 * the container's cgroup gets memory.max, cpu.max, pids.max... */
static void v2_enable_controllers(const char *root, const char *path)
{
    cleanup_free char *p = xstrdup(path);
    cleanup_free char *dir = xstrdup(root);
    char *psave = NULL;
    for (char *tok = strtok_r(p, "/", &psave); tok; tok = strtok_r(NULL, "/", &psave)) {
        char ctrls[512];
        cleanup_free char *cf = xasprintf("%s/cgroup.controllers", dir);
        int fd = open(cf, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, ctrls, sizeof(ctrls) - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (n > 0) {
            ctrls[n] = '\0';
            char line[600];
            size_t l = 0;
            char *csave = NULL;
            for (char *c = strtok_r(ctrls, " \n", &csave); c && l < sizeof(line) - 64;
                 c = strtok_r(NULL, " \n", &csave))
                l += (size_t)snprintf(line + l, sizeof(line) - l, "+%s ", c);
            cleanup_free char *sc = xasprintf("%s/cgroup.subtree_control", dir);
            fd = open(sc, O_WRONLY | O_CLOEXEC);
            if (fd >= 0) {
                if (write(fd, line, l) < 0) {
                    /* best effort: a cgroup with processes cannot delegate */
                }
                close(fd);
            }
        }
        char *nd = xasprintf("%s/%s", dir, tok);
        free(dir);
        dir = nd;
    }
}

/* Fill cg for `path`: layout, hierarchies, no directory opened yet. */
static int cgroup_init(const char *path, struct cgroup *cg, struct err **err)
{
    memset(cg, 0, sizeof(*cg));
    for (int i = 0; i < CGROUP_MAX_HIER; i++)
        cg->dirfds[i] = -1;
    if (check_path(path, err) < 0 || cgroup_detect(&cg->mode, err) < 0 ||
        list_hierarchies(cg->mode, cg->names, &cg->n, err) < 0) {
        cgroup_close(cg);
        return -1;
    }
    cg->path = xstrdup(path);
    return 0;
}

int cgroup_create(const struct oci_config *cfg, const char *path, struct cgroup *cg,
                  struct err **err)
{
    if (cgroup_init(path, cg, err) < 0)
        return -1;
    char *created[CGROUP_MAX_HIER] = {0};
    if (cg->mode == CGROUP_V2)
        v2_enable_controllers(CGROUP_ROOT, path);
    else if (cg->mode == CGROUP_HYBRID)
        v2_enable_controllers(CGROUP_ROOT "/unified", path);
    for (size_t i = 0; i < cg->n; i++) {
        if (make_dirs(cg->names[i], path, &created[i], err) < 0)
            goto fail;
        cleanup_free char *dir = hier_dir(cg->names[i], path);
        cg->dirfds[i] = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cg->dirfds[i] < 0) {
            err_make(err, errno, "open cgroup `%s`", dir);
            goto fail;
        }
    }
    if (cgroup_apply_resources(cfg, cg, err) < 0)
        goto fail;
    for (size_t i = 0; i < cg->n; i++)
        free(created[i]);
    return 0;
fail:
    for (size_t i = 0; i < cg->n; i++) {
        if (created[i]) {
            cleanup_free char *dir = hier_dir(cg->names[i], path);
            remove_dirs(dir, created[i]);
            free(created[i]);
        }
    }
    cgroup_close(cg);
    return -1;
}

int cgroup_open(const char *path, struct cgroup *cg, struct err **err)
{
    if (cgroup_init(path, cg, err) < 0)
        return -1;
    for (size_t i = 0; i < cg->n; i++) {
        cleanup_free char *dir = hier_dir(cg->names[i], path);
        cg->dirfds[i] = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (cg->dirfds[i] < 0) {
            err_make(err, errno, "open cgroup `%s`", dir);
            cgroup_close(cg);
            return -1;
        }
    }
    return 0;
}

int cgroup_controller_fd(const struct cgroup *cg, const char *ctrl)
{
    size_t l = strlen(ctrl);
    for (size_t i = 0; i < cg->n; i++) {
        if (cg->mode == CGROUP_V2)
            return cg->dirfds[i];
        const char *n = cg->names[i];
        for (const char *p = n; (p = strstr(p, ctrl)) != NULL; p += l)
            if ((p == n || p[-1] == ',') && (p[l] == '\0' || p[l] == ','))
                return cg->dirfds[i];
    }
    return -1;
}

static bool is_v2_hier(const struct cgroup *cg, size_t i)
{
    return cg->mode == CGROUP_V2 || strcmp(cg->names[i], "unified") == 0;
}

int cgroup_v2_fd(const struct cgroup *cg)
{
    for (size_t i = 0; i < cg->n; i++)
        if (is_v2_hier(cg, i))
            return cg->dirfds[i];
    return -1;
}

int cgroup_enter(const struct cgroup *cg, pid_t pid, bool skip_v2, struct err **err)
{
    char buf[24];
    int len = snprintf(buf, sizeof(buf), "%d", (int)pid);
    for (size_t i = 0; i < cg->n; i++) {
        bool v2 = is_v2_hier(cg, i);
        if (v2 && skip_v2)
            continue;
        const char *file = pid == 0 && !v2 ? "tasks" : "cgroup.procs";
        cleanup_close int fd = openat(cg->dirfds[i], file, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, buf, (size_t)len) != len)
            return err_make(err, errno, "join cgroup `%s` of %s", cg->path,
                            cg->names[i][0] ? cg->names[i] : "cgroup2");
    }
    return 0;
}

void cgroup_close(struct cgroup *cg)
{
    for (size_t i = 0; i < cg->n; i++) {
        free(cg->names[i]);
        cg->names[i] = NULL;
        close_and_reset(&cg->dirfds[i]);
    }
    free(cg->path);
    cg->path = NULL;
    cg->n = 0;
}

int cgroup_destroy(const char *path, struct err **err)
{
    if (path == NULL || check_path(path, NULL) < 0)
        return 0;
    enum cgroup_mode mode;
    char *names[CGROUP_MAX_HIER];
    size_t n;
    if (cgroup_detect(&mode, err) < 0 || list_hierarchies(mode, names, &n, err) < 0)
        return -1;
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        /* Parents given by linux.cgroupsPath belong to whoever chose them. */
        cleanup_free char *dir = hier_dir(names[i], path);
        /* The last processes may still be exiting: retry briefly. */
        for (int tries = 0; tries < 200; tries++) {
            if (rmdir(dir) == 0 || errno == ENOENT)
                break;
            if (errno != EBUSY) {
                if (r == 0)
                    r = err_make(err, errno, "remove cgroup `%s`", dir);
                break;
            }
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
            if (tries == 199 && r == 0)
                r = err_make(err, EBUSY, "remove cgroup `%s`", dir);
        }
        free(names[i]);
    }
    return r;
}

int cgroup_kill_all(const char *path, int sig)
{
    if (path == NULL || check_path(path, NULL) < 0)
        return 0;
    enum cgroup_mode mode;
    char *names[CGROUP_MAX_HIER];
    size_t n;
    if (cgroup_detect(&mode, NULL) < 0 || list_hierarchies(mode, names, &n, NULL) < 0)
        return 0;
    /* Any hierarchy holds all the container's processes; prefer pids. */
    size_t pick = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], "pids") == 0)
            pick = i;
    int count = 0;
    cleanup_free char *procs = n ? hier_dir(names[pick], path) : NULL;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    if (procs == NULL)
        return 0;
    cleanup_free char *file = xasprintf("%s/cgroup.procs", procs);
    cleanup_free char *data = NULL;
    if (read_file_at(AT_FDCWD, file, 1 << 22, &data, NULL, NULL) < 0)
        return 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        int pid;
        if (parse_int(line, &pid) == 0 && pid > 0 && kill(pid, sig) == 0)
            count++;
    }
    return count;
}
