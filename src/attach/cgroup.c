/* The target's cgroups, found for any process (not only cocoon's): each
 * line of /proc/PID/cgroup ("ID:controllers:/path") is matched with the
 * cgroup mount of that hierarchy in our mountinfo. v1 hierarchies are
 * joined by writing "0" to `tasks` (a single-thread move, see cgroup.h),
 * the v2 one by clone3(CLONE_INTO_CGROUP). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attach/internal.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"

#define MOUNTINFO_MAX (4 * 1024 * 1024)

/* True if every comma-separated item of `want` is among those of `have`. */
static bool all_in(const char *want, const char *have)
{
    cleanup_free char *w = xstrdup(want);
    char *save = NULL;
    for (char *item = strtok_r(w, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        size_t n = strlen(item);
        bool found = false;
        for (const char *h = have; h && *h;) {
            const char *comma = strchr(h, ',');
            size_t hl = comma ? (size_t)(comma - h) : strlen(h);
            if (hl == n && strncmp(h, item, n) == 0)
                found = true;
            h = comma ? comma + 1 : NULL;
        }
        if (!found)
            return false;
    }
    return true;
}

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
    char *d = s;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            *d++ = *s++;
        }
    }
    *d = '\0';
}

/* The directory of cgroup `path` in the hierarchy named by `ctrls` ("" for
 * v2): the first matching cgroup mount whose root contains path. */
static int open_in_mounts(char *mountinfo, const char *ctrls, const char *path)
{
    bool v2 = ctrls[0] == '\0';
    for (char *save = NULL, *l = strtok_r(mountinfo, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        /* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
        char *sep = strstr(l, " - ");
        if (sep == NULL)
            continue;
        char fstype[32], superopts[1024];
        if (sscanf(sep + 3, "%31s %*s %1023s", fstype, superopts) != 2)
            continue;
        if (strcmp(fstype, v2 ? "cgroup2" : "cgroup") != 0 || (!v2 && !all_in(ctrls, superopts)))
            continue;
        char root[4096], mnt[4096];
        if (sscanf(l, "%*s %*s %*s %4095s %4095s", root, mnt) != 2)
            continue;
        unescape(root);
        unescape(mnt);
        size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
        if (strncmp(path, root, rl) != 0 || (path[rl] != '/' && path[rl] != '\0'))
            continue;
        cleanup_free char *dir = xasprintf("%s%s", mnt, path + rl);
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0)
            return fd;
    }
    return -1;
}

int attach_cgroups_find(int procfd, struct attach_cgroups *cg, struct err **err)
{
    cg->n_v1 = 0;
    cg->v2 = -1;
    cleanup_free char *lines = NULL, *mi = NULL;
    size_t len;
    if (read_file_at(procfd, "cgroup", 1024 * 1024, &lines, &len, err) < 0 ||
        read_file_at(AT_FDCWD, "/proc/self/mountinfo", MOUNTINFO_MAX, &mi, &len, err) < 0)
        return err_wrap(err, "find the cgroups of the target");
    for (char *save = NULL, *l = strtok_r(lines, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(l, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1, *path = c2 + 1;
        bool v2 = strncmp(l, "0:", 2) == 0 && ctrls[0] == '\0';
        if (!v2 && ctrls[0] == '\0')
            continue;
        cleanup_free char *copy = xstrdup(mi);
        int fd = open_in_mounts(copy, ctrls, path);
        if (fd < 0) {
            log_debug("attach: cgroup `%s` of hierarchy `%s` is not mounted here", path,
                      v2 ? "cgroup2" : ctrls);
            continue;
        }
        if (v2) {
            if (cg->v2 >= 0)
                close(cg->v2);
            cg->v2 = fd;
        } else if (cg->n_v1 < ATTACH_MAX_CGROUPS) {
            cg->v1[cg->n_v1++] = fd;
        } else {
            close(fd);
        }
    }
    return 0;
}

int attach_cgroups_enter_v1(const struct attach_cgroups *cg, struct err **err)
{
    for (size_t i = 0; i < cg->n_v1; i++) {
        int fd = openat(cg->v1[i], "tasks", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return err_make(err, e, "join the container's cgroup");
        }
        close(fd);
    }
    return 0;
}

/* File `name` in directory dirfd contains `what`. */
static bool file_has(int dirfd, const char *name, const char *what)
{
    cleanup_err struct err *e = NULL;
    cleanup_free char *text = NULL;
    size_t len;
    return read_file_at(dirfd, name, 4096, &text, &len, &e) == 0 && strstr(text, what);
}

bool attach_cgroups_frozen(const struct attach_cgroups *cg)
{
    /* v1: the freezer hierarchy's state (FROZEN, or FREEZING on the way);
     * v2: cgroup.events says "frozen 1" (its own or an ancestor's). */
    for (size_t i = 0; i < cg->n_v1; i++)
        if (file_has(cg->v1[i], "freezer.state", "FROZEN") ||
            file_has(cg->v1[i], "freezer.state", "FREEZING"))
            return true;
    return cg->v2 >= 0 && file_has(cg->v2, "cgroup.events", "frozen 1");
}

void attach_cgroups_close(struct attach_cgroups *cg)
{
    for (size_t i = 0; i < cg->n_v1; i++)
        close(cg->v1[i]);
    cg->n_v1 = 0;
    if (cg->v2 >= 0)
        close(cg->v2);
    cg->v2 = -1;
}
