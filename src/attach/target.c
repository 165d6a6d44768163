/* The process attach joins: the init of a running cocoon container (found
 * with the lifecycle loader, as `exec` does) or any process by pid (a
 * container of another runtime or engine). It is held by a pidfd opened
 * first; everything read from /proc/PID afterwards is checked against that
 * pidfd, so a pid reused meanwhile is never attached to. */
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
    if ((o->id ? open_cocoon(rt, o->id, t, err) : open_pid(o->pid, t, err)) < 0)
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
