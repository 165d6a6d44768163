/* Freezing a container's cgroup (pause/resume): v1 freezer.state, v2
 * cgroup.freeze, waiting until the kernel reports the new state. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"

static bool file_has(int dirfd, const char *file, const char *needle)
{
    cleanup_free char *data = NULL;
    if (read_file_at(dirfd, file, 4096, &data, NULL, NULL) < 0)
        return false;
    return strstr(data, needle) != NULL;
}

int cgroup_freeze(const struct cgroup *cg, bool freeze, struct err **err)
{
    bool v2 = cg->mode == CGROUP_V2;
    int dfd = cgroup_controller_fd(cg, "freezer");
    if (dfd < 0)
        return err_make(err, ENOTSUP, "no freezer cgroup for `%s`", cg->path);
    const char *file = v2 ? "cgroup.freeze" : "freezer.state";
    const char *value = v2 ? (freeze ? "1" : "0") : (freeze ? "FROZEN" : "THAWED");
    cleanup_close int fd = openat(dfd, file, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, strlen(value)) < 0)
        return err_make(err, errno, "write %s to %s of `%s`", value, file, cg->path);
    /* Freezing completes asynchronously: wait (up to 5 s) for the report. */
    const char *check = v2 ? "cgroup.events" : "freezer.state";
    const char *want = v2 ? (freeze ? "frozen 1" : "frozen 0") : (freeze ? "FROZEN" : "THAWED");
    for (int i = 0; i < 1000; i++) {
        if (file_has(dfd, check, want))
            return 0;
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return err_make(err, ETIMEDOUT, "%s `%s`", freeze ? "freeze" : "thaw", cg->path);
}
