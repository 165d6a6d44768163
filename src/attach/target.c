/* The process attach joins: the init of a running cocoon container (found
 * with the lifecycle loader, as `exec` does), of a podman or containerd
 * container (found by id in its runtime's state, engines.c), or any process
 * by pid. It is held by a pidfd opened first — for a container, only if
 * the pid still has the start time its runtime recorded —; everything read
 * from /proc/PID afterwards is checked against that pidfd, so a pid reused
 * meanwhile is never attached to. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attach/internal.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/util.h"
#include "ns/seccomp.h"
#include "oci/config.h"
#include "oci/state.h"
#include "runtime/container.h"
#include "runtime/lifecycle.h"

/* A cocoon container: running, on the namespace backend; its seccomp
 * filter compiled from its config (the filter cannot be read back from the
 * kernel without ptrace). */
static int open_cocoon(const struct runtime *rt, const char *id, struct attach_target *t,
                       struct err **err)
{
    cleanup_close int rootfd = -1;
    cleanup_state struct container_state *st = NULL;
    cleanup_close int dirfd = lifecycle_load(rt, id, &rootfd, &st, err);
    if (dirfd < 0)
        return -1;
    if (st->backend && strcmp(st->backend, "ns") != 0)
        return err_input(err, "cannot attach to container `%s`: attach to %s containers is not "
                              "available yet (docs/attach.md)", id, st->backend);
    enum container_status s = state_status(dirfd, st);
    if (s != STATUS_RUNNING)
        return err_make(err, 0, "cannot attach to container `%s`: it is %s, not running", id,
                        state_status_name(s));
    t->pidfd = proc_pidfd_open_checked(st->pid, st->start_time);
    if (t->pidfd < 0)
        return err_make(err, 0, "cannot attach to container `%s`: it is stopped, not running",
                        id);
    t->pid = st->pid;
    t->what = xasprintf("container `%s`", id);
    cleanup_config struct oci_config *cfg = NULL;
    if (oci_config_load(st->bundle, &cfg, err) < 0)
        return err_wrap(err, "container `%s`", id);
    int cache = lifecycle_seccomp_cache(rootfd);
    int r = ns_seccomp_prepare(cfg->linux_.seccomp, cache, &t->seccomp, err);
    if (cache >= 0)
        close(cache);
    if (r < 0)
        return err_wrap(err, "container `%s`", id);
    /* Held (locked) until the command runs, as exec does. */
    t->lock_dirfd = steal_fd(&dirfd);
    return 0;
}

/* A container of runc or crun (under podman or containerd). */
static int open_engine(const struct attach_engine_hit *h, struct attach_target *t,
                       struct err **err)
{
    pid_t pid;
    uint64_t start;
    bool created;
    if (attach_engine_read(h, &pid, &start, &created, err) < 0)
        return -1;
    log_debug("attach: container `%s`: %s state in %s, init %d", h->id,
              h->fmt == ENGINE_RUNC ? "runc" : "crun", h->dir, (int)pid);
    t->pidfd = proc_pidfd_open_checked(pid, start);
    if (t->pidfd < 0)
        return err_make(err, 0, "cannot attach to container `%s`: it is stopped, not running",
                        h->id);
    if (created)
        return err_make(err, 0, "cannot attach to container `%s`: it is created, not running",
                        h->id);
    t->pid = pid;
    t->what = xasprintf("container `%s`", h->id);
    return 0;
}

/* A container id: cocoon's own first, then podman's and containerd's. */
static int open_id(const struct runtime *rt, const char *id, struct attach_target *t,
                   struct err **err)
{
    cleanup_free char *state = xasprintf("%s/%s/%s", rt->root, id, STATE_FILE);
    cleanup_err struct err *bad = NULL;
    if (state_check_id(id, &bad) < 0 || access(state, F_OK) == 0 || errno != ENOENT)
        return open_cocoon(rt, id, t, err); /* its own errors (no permission...) */
    struct attach_engine_hit h;
    cleanup_free char *where = NULL;
    int r = attach_engine_find(rt->root, id, &h, &where, err);
    if (r < 0)
        return -1;
    if (r == 0)
        return err_make(err, 0, "container `%s` does not exist (looked in %s)", id, where);
    if (h.fmt == ENGINE_COCOON) {
        struct runtime other = *rt;
        other.root = h.root;
        r = open_cocoon(&other, h.id, t, err);
    } else {
        r = open_engine(&h, t, err);
    }
    attach_engine_hit_free(&h);
    return r;
}

static int open_pid(pid_t pid, struct attach_target *t, struct err **err)
{
    if (pid <= 0)
        return err_input(err, "--pid %d: not a process id", (int)pid);
    t->pidfd = proc_pidfd_open(pid);
    if (t->pidfd < 0) {
        if (errno == ESRCH)
            return err_make(err, 0, "cannot attach to process %d: it does not exist", (int)pid);
        return err_make(err, errno, "cannot attach to process %d", (int)pid);
    }
    char state;
    if (proc_stat(pid, &state, NULL) < 0 || state == 'Z' || state == 'X')
        return err_make(err, 0, "cannot attach to process %d: it has exited", (int)pid);
    t->pid = pid;
    t->what = xasprintf("process %d", (int)pid);
    return 0;
}

int attach_target_open(const struct runtime *rt, const struct attach_opts *o,
                       struct attach_target *t, struct err **err)
{
    memset(t, 0, sizeof(*t));
    t->pidfd = t->procfd = t->rootfd = t->lock_dirfd = t->cg.v2 = -1;
    if ((o->id ? open_id(rt, o->id, t, err) : open_pid(o->pid, t, err)) < 0)
        return -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d", (int)t->pid);
    t->procfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (t->procfd < 0)
        return err_make(err, 0, "cannot attach to %s: it has exited", t->what);
    if (attach_identity_read(t->procfd, t->pid, &t->id, err) < 0)
        return err_wrap(err, "cannot attach to %s", t->what);
    t->rootfd = openat(t->procfd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (t->rootfd < 0)
        return err_make(err, errno, "cannot attach to %s: open its root", t->what);
    if (attach_cgroups_find(t->procfd, &t->cg, err) < 0)
        return err_wrap(err, "cannot attach to %s", t->what);
    t->join_ns = proc_ns_differing(t->procfd, "ns");
    /* Its children would freeze too (before exec: attach would hang). */
    if (attach_cgroups_frozen(&t->cg))
        return err_make(err, 0, "cannot attach to %s: it is paused (its cgroup is frozen)",
                        t->what);
    /* All of the above was read from the process the pidfd holds. */
    if (proc_pidfd_signal(t->pidfd, 0) < 0)
        return err_make(err, 0, "cannot attach to %s: it has exited", t->what);
    if (t->id.seccomp_mode == 2 && t->seccomp == NULL)
        log_warn("%s runs under a seccomp filter that attach cannot copy (reading it back "
                 "needs ptrace); the command runs without it", t->what);
    if (t->id.seccomp_mode != 2 && t->seccomp) {
        ns_seccomp_prog_free(t->seccomp);
        t->seccomp = NULL;
    }
    return 0;
}

void attach_target_close(struct attach_target *t)
{
    close_and_reset(&t->pidfd);
    close_and_reset(&t->procfd);
    close_and_reset(&t->rootfd);
    close_and_reset(&t->lock_dirfd);
    attach_cgroups_close(&t->cg);
    attach_identity_free(&t->id);
    ns_seccomp_prog_free(t->seccomp);
    t->seccomp = NULL;
    free(t->what);
    t->what = NULL;
}
