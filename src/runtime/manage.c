/* pause, resume, ps, update, events: commands on a container's cgroup. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "oci/state.h"
#include "runtime/container.h"
#include "runtime/lifecycle.h"
#include "vm/vmc.h"

/* Open and lock a container, check its status against `allowed` (a bit
 * mask of 1 << status), open its cgroup. Returns the locked dir fd. */
static int open_container(const struct runtime *rt, const char *id, unsigned allowed,
                          const char *what, struct container_state **st, struct cgroup *cg,
                          struct err **err)
{
    cleanup_close int rootfd = -1;
    int dirfd = lifecycle_load(rt, id, &rootfd, st, err);
    if (dirfd < 0)
        return -1;
    enum container_status s = state_status(dirfd, *st);
    if (!(allowed & (1u << s))) {
        close(dirfd);
        return err_make(err, 0, "cannot %s container `%s`: it is %s", what, id,
                        state_status_name(s));
    }
    if ((*st)->cgroup == NULL) {
        close(dirfd);
        return err_make(err, ENOTSUP, "container `%s` has no cgroup", id);
    }
    if (cgroup_open((*st)->cgroup, cg, err) < 0) {
        close(dirfd);
        return -1;
    }
    return dirfd;
}

#define ALIVE ((1u << STATUS_CREATED) | (1u << STATUS_RUNNING) | (1u << STATUS_PAUSED))

int container_pause(const struct runtime *rt, const char *id, bool pause, struct err **err)
{
    cleanup_state struct container_state *st = NULL;
    struct cgroup cg;
    unsigned allowed = pause ? (1u << STATUS_RUNNING) : (1u << STATUS_PAUSED);
    cleanup_close int dirfd =
        open_container(rt, id, allowed, pause ? "pause" : "resume", &st, &cg, err);
    if (dirfd < 0)
        return -1;
    int r = cgroup_freeze(&cg, pause, err);
    cgroup_close(&cg);
    if (r < 0)
        return -1;
    if (pause) {
        cleanup_close int fd = openat(dirfd, "paused", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        if (fd < 0)
            return err_make(err, errno, "record paused state");
    } else {
        unlinkat(dirfd, "paused", 0);
    }
    return 0;
}

int container_pids(const struct runtime *rt, const char *id, int **pids, size_t *n,
                   struct err **err)
{
    cleanup_state struct container_state *st = NULL;
    struct cgroup cg;
    cleanup_close int dirfd = open_container(rt, id, ALIVE, "list processes of", &st, &cg, err);
    if (dirfd < 0)
        return -1;
    int r = cgroup_pids(&cg, pids, n, err);
    cgroup_close(&cg);
    return r;
}

int container_update(const struct runtime *rt, const char *id, const char *resources_json,
                     struct err **err)
{
    struct json_object *res = json_tokener_parse(resources_json);
    if (res == NULL || json_object_get_type(res) != json_type_object) {
        if (res)
            json_object_put(res);
        return err_input(err, "update: the resources must be a JSON object (linux.resources)");
    }
    cleanup_state struct container_state *st = NULL;
    struct cgroup cg;
    cleanup_close int dirfd = open_container(rt, id, ALIVE, "update", &st, &cg, err);
    if (dirfd < 0) {
        json_object_put(res);
        return -1;
    }
    struct oci_config cfg = {0};
    cfg.linux_.resources = res;
    if (state_is_vm(st)) {
        cfg.linux_.resources = vmc_host_resources(res);
        json_object_put(res);
        res = cfg.linux_.resources;
    }
    int r = cgroup_apply_resources(&cfg, &cg, err);
    cgroup_close(&cg);
    json_object_put(res);
    return r < 0 ? err_wrap(err, "update container `%s`", id) : 0;
}

int container_stats(const struct runtime *rt, const char *id, char **out, struct err **err)
{
    cleanup_state struct container_state *st = NULL;
    struct cgroup cg;
    cleanup_close int dirfd = open_container(rt, id, ALIVE, "read statistics of", &st, &cg, err);
    if (dirfd < 0)
        return -1;
    cleanup_free char *data = cgroup_stats_json(&cg);
    cgroup_close(&cg);
    *out = xasprintf("{\"type\":\"stats\",\"id\":\"%s\",\"data\":%s}", id, data);
    return 0;
}
