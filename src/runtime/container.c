/* create, start, state, kill, delete and list on the namespace backend. */
#include "runtime/container.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/terminal.h"
#include "common/util.h"
#include "ns/ns.h"
#include "oci/hooks.h"
#include "runtime/lifecycle.h"
#include "vm/vmc.h"

int lifecycle_prepare(const struct runtime *rt, const struct create_opts *o, struct prepared *p,
                      struct err **err)
{
    memset(p, 0, sizeof(*p));
    p->rootfd = p->dirfd = -1;
    for (int i = 0; i < CGROUP_MAX_HIER; i++)
        p->cg.dirfds[i] = -1;
    if (state_check_id(o->id, err) < 0)
        return -1;
    const char *bundle = o->bundle ? o->bundle : ".";
    char abs[PATH_MAX];
    if (realpath(bundle, abs) == NULL)
        return err_make(err, errno, "bundle `%s`", bundle);
    p->bundle = xstrdup(abs);
    if (oci_config_load(p->bundle, &p->cfg, err) < 0)
        return -1;
    p->vm = vmc_wanted(rt, p->cfg);
    if (ns_validate(p->cfg, err) < 0 ||
        (!p->vm && lifecycle_protect_binary(p->cfg->process, err) < 0))
        return -1;
    cleanup_free char *root = p->cfg->root_path[0] == '/'
                                  ? xstrdup(p->cfg->root_path)
                                  : xasprintf("%s/%s", p->bundle, p->cfg->root_path);
    struct stat st;
    if (realpath(root, abs) == NULL || stat(abs, &st) < 0)
        return err_make(err, errno, "rootfs `%s` (root.path in config.json)", root);
    if (!S_ISDIR(st.st_mode))
        return err_make(err, ENOTDIR, "rootfs `%s` (root.path in config.json)", root);
    p->rootfs = xstrdup(abs);
    if (p->cfg->process->terminal && o->console_socket == NULL)
        return err_make(err, EINVAL,
                        "process.terminal is set: --console-socket is required (or use "
                        "`run` in the foreground)");
    p->rootfd = state_root_open(rt->root, true, err);
    if (p->rootfd < 0)
        return -1;
    p->dirfd = state_dir_create(p->rootfd, o->id, err);
    if (p->dirfd < 0)
        return -1;
    /* Containers of another --root may reuse ids: their default cgroups
     * must not meet ours ('@' is not allowed in ids, so "cocoon@<id>" and
     * "cocoon-<hash>@<id>" never meet either). */
    char scope[32] = "cocoon";
    if (strcmp(rt->root, COCOON_DEFAULT_ROOT) != 0) {
        uint32_t h = 2166136261u; /* FNV-1a */
        for (const char *c = rt->root; *c; c++)
            h = (h ^ (unsigned char)*c) * 16777619u;
        snprintf(scope, sizeof(scope), "cocoon-%08x", h);
    }
    cleanup_close int cache = lifecycle_seccomp_cache(p->rootfd);
    /* A VM container's filter is compiled here too: the agent installs it. */
    if (ns_seccomp_prepare(p->cfg->linux_.seccomp, cache, &p->seccomp, err) < 0)
        return -1;
    if (p->vm && p->seccomp && p->seccomp->listener_path)
        return err_input(err, "config.json: `linux.seccomp.listenerPath`: not for a VM container "
                              "(its filter runs in the guest's kernel, out of a host "
                              "listener's reach)");
    cleanup_free char *cgpath = cgroup_path_for(p->cfg->linux_.cgroups_path, o->id, scope);
    /* A VM container's host cgroup holds its monitor and VMM: only the
     * resources that apply to a whole VM (vm/resources.c). */
    struct oci_config host = *p->cfg;
    if (p->vm)
        host.linux_.resources = vmc_host_resources(p->cfg->linux_.resources);
    int r = cgroup_create(&host, cgpath, &p->cg, err);
    if (p->vm && host.linux_.resources)
        json_object_put(host.linux_.resources);
    return r;
}

int lifecycle_seccomp_cache(int rootfd)
{
    if (mkdirat(rootfd, ".seccomp", 0700) < 0 && errno != EEXIST)
        return -1;
    return openat(rootfd, ".seccomp", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

void lifecycle_abort(const struct create_opts *o, struct prepared *p)
{
    if (p->cg.path) {
        struct err *e = NULL;
        cgroup_kill_all(p->cg.path, SIGKILL);
        cgroup_destroy(p->cg.path, &e);
        err_free(&e);
    }
    if (p->dirfd >= 0) {
        struct err *e = NULL;
        state_dir_remove(p->rootfd, o->id, &e);
        err_free(&e);
    }
}

void lifecycle_release(struct prepared *p)
{
    oci_config_free(p->cfg);
    ns_seccomp_prog_free(p->seccomp);
    free(p->bundle);
    free(p->rootfs);
    close_and_reset(&p->dirfd);
    close_and_reset(&p->rootfd);
    cgroup_close(&p->cg);
    memset(p, 0, sizeof(*p));
    p->rootfd = p->dirfd = -1;
    for (int i = 0; i < CGROUP_MAX_HIER; i++)
        p->cg.dirfds[i] = -1;
}

int lifecycle_write_pid_file(const char *path, pid_t pid, struct err **err)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d", (int)pid);
    cleanup_free char *copy = xstrdup(path);
    char *slash = strrchr(copy, '/');
    const char *dir = ".", *name = copy;
    if (slash) {
        *slash = '\0';
        dir = copy[0] ? copy : "/";
        name = slash + 1;
    }
    cleanup_close int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return err_make(err, errno, "pid file `%s`", path);
    if (write_file_atomic(dfd, name, buf, (size_t)n, err) < 0)
        return err_wrap(err, "pid file `%s`", path);
    return 0;
}

int lifecycle_record(const struct create_opts *o, struct prepared *p, pid_t pid,
                     struct err **err)
{
    struct container_state st = {
        .id = (char *)o->id, .bundle = p->bundle, .rootfs = p->rootfs,
        .backend = p->vm ? "vm" : "ns",
        .pid = pid, .owner = getuid(),
        .annotations = p->cfg->annotations, .n_annotations = p->cfg->n_annotations,
    };
    const struct oci_namespace *pidns = oci_config_ns(p->cfg, OCI_NS_PID);
    st.own_pidns = !p->vm && pidns && pidns->path == NULL;
    st.cgroup = p->cg.path;
    cleanup_free char *created = state_now_rfc3339();
    st.created = created;
    if (proc_stat(pid, NULL, &st.start_time) < 0)
        return err_make(err, errno, "read start time of the container init %d", (int)pid);
    if (state_write(p->dirfd, &st, err) < 0)
        return -1;
    if (o->pid_file && lifecycle_write_pid_file(o->pid_file, pid, err) < 0)
        return -1;
    return 0;
}

/* Run the hooks of `kind` from the bundle's config; failures only warn (the
 * spec's rule for poststart and poststop). */
static void run_late_hooks(const struct container_state *st, enum oci_hook_kind kind,
                           enum container_status s, const struct oci_config *have)
{
    struct oci_config *cfg = (struct oci_config *)have;
    struct err *e = NULL;
    if (cfg == NULL && oci_config_load(st->bundle, &cfg, &e) < 0) {
        err_free(&e);
        return;
    }
    if (cfg->hooks.n[kind]) {
        cleanup_free char *js = state_to_oci_json(st, s);
        if (hooks_run(cfg, kind, js, &e) < 0)
            log_warn("%s", e->msg);
        err_free(&e);
    }
    if (cfg != have)
        oci_config_free(cfg);
}

void lifecycle_poststart(const struct container_state *st)
{
    run_late_hooks(st, OCI_HOOK_POSTSTART, STATUS_RUNNING, NULL);
}

int lifecycle_destroy(int rootfd, int dirfd, const struct container_state *st,
                      const struct oci_config *cfg, struct err **err)
{
    (void)dirfd;
    if (st->cgroup) {
        /* With its own pid namespace, nothing outlives a dead init. */
        if (!st->own_pidns || proc_alive(st->pid, st->start_time))
            cgroup_kill_all(st->cgroup, SIGKILL);
        if (cgroup_destroy(st->cgroup, err) < 0)
            return err_wrap(err, "delete container `%s`", st->id);
    }
    if (state_dir_remove(rootfd, st->id, err) < 0)
        return -1;
    run_late_hooks(st, OCI_HOOK_POSTSTOP, STATUS_STOPPED, cfg);
    return 0;
}

/* `create` of a VM container, after lifecycle_prepare: the monitor's pid
 * is the container's. */
static int create_vm(const struct runtime *rt, const struct create_opts *o, struct prepared *p,
                     struct err **err)
{
    cleanup_close int console = -1;
    pid_t pid = -1;
    if (p->cfg->process->terminal) {
        console = unix_connect(o->console_socket, err);
        if (console < 0) {
            err_wrap(err, "--console-socket");
            goto fail;
        }
    }
    if (vmc_spawn(rt, p, o, console, &pid, err) < 0)
        goto fail;
    if (lifecycle_record(o, p, pid, err) < 0) {
        struct container_state st = {.id = (char *)o->id, .pid = pid};
        struct err *e = NULL;
        proc_stat(pid, NULL, &st.start_time);
        vmc_stop(p->dirfd, &st, &e);
        err_free(&e);
        goto fail;
    }
    lifecycle_release(p);
    return 0;
fail:
    lifecycle_abort(o, p);
    lifecycle_release(p);
    return -1;
}

int container_create(const struct runtime *rt, const struct create_opts *o, struct err **err)
{
    struct prepared p;
    cleanup_close int console = -1, fifo = -1, wait_fd = -1;
    struct ns_child child = {.pid = -1, .sync_fd = -1};
    if (lifecycle_prepare(rt, o, &p, err) < 0)
        goto fail;
    if (p.vm)
        return create_vm(rt, o, &p, err);
    if (mkfifoat(p.dirfd, STATE_EXEC_FIFO, 0600) < 0) {
        err_make(err, errno, "create exec fifo");
        goto fail;
    }
    /* O_RDWR never blocks on a FIFO; the init holds it and reads one byte. */
    fifo = openat(p.dirfd, STATE_EXEC_FIFO, O_RDWR | O_CLOEXEC);
    if (fifo < 0) {
        err_make(err, errno, "open exec fifo");
        goto fail;
    }
    /* The init also holds exec.wait open (close-on-exec, never written):
     * `start` reads it to EOF to know the program has been executed. */
    if (mkfifoat(p.dirfd, STATE_EXEC_WAIT, 0600) < 0 ||
        (wait_fd = openat(p.dirfd, STATE_EXEC_WAIT, O_RDWR | O_CLOEXEC)) < 0) {
        err_make(err, errno, "create exec wait fifo");
        goto fail;
    }
    if (p.cfg->process->terminal) {
        console = unix_connect(o->console_socket, err);
        if (console < 0) {
            err_wrap(err, "--console-socket");
            goto fail;
        }
    }
    struct ns_spawn_opts so = {
        .cfg = p.cfg, .id = o->id, .bundle = p.bundle, .rootfs = p.rootfs, .fifo_fd = fifo,
        .console_fd = console, .preserve_fds = o->preserve_fds, .no_pivot = o->no_pivot,
        .cg = &p.cg, .seccomp = p.seccomp, .exec_wait_fd = wait_fd,
    };
    if (ns_spawn(&so, &child, err) < 0)
        goto fail;
    close_and_reset(&child.sync_fd);
    if (lifecycle_record(o, &p, child.pid, err) < 0) {
        kill(child.pid, SIGKILL);
        goto fail;
    }
    lifecycle_release(&p);
    return 0;
fail:
    if (child.pid > 0)
        kill(child.pid, SIGKILL);
    close_and_reset(&child.sync_fd);
    lifecycle_abort(o, &p);
    lifecycle_release(&p);
    return -1;
}

int lifecycle_load(const struct runtime *rt, const char *id, int *rootfd,
                struct container_state **st, struct err **err)
{
    *rootfd = state_root_open(rt->root, false, err);
    if (*rootfd < 0) {
        if (err_code(*err) == ENOENT) {
            err_free(err);
            return err_make(err, 0, "container `%s` does not exist", id);
        }
        return -1;
    }
    int dirfd = state_dir_open(*rootfd, id, err);
    if (dirfd < 0)
        return -1;
    if (state_read(dirfd, st, err) < 0) {
        close(dirfd);
        return err_wrap(err, "container `%s`", id);
    }
    if (strcmp((*st)->id, id) != 0) {
        close(dirfd);
        state_free(*st);
        *st = NULL;
        return err_make(err, EINVAL, "container `%s`: its state names another id", id);
    }
    return dirfd;
}

int container_start(const struct runtime *rt, const char *id, struct err **err)
{
    cleanup_close int rootfd = -1;
    cleanup_state struct container_state *st = NULL;
    cleanup_close int dirfd = lifecycle_load(rt, id, &rootfd, &st, err);
    if (dirfd < 0)
        return -1;
    enum container_status s = state_status(dirfd, st);
    if (s != STATUS_CREATED)
        return err_make(err, 0, "cannot start container `%s`: it is %s, not created", id,
                        state_status_name(s));
    if (state_is_vm(st)) {
        if (vmc_start(dirfd, st, err) < 0)
            return -1;
        lifecycle_poststart(st);
        return 0;
    }
    cleanup_close int fifo = openat(dirfd, STATE_EXEC_FIFO, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fifo < 0) {
        if (errno == ENXIO)
            return err_make(err, 0, "cannot start container `%s`: its init process is gone", id);
        return err_make(err, errno, "open exec fifo of `%s`", id);
    }
    /* Open the wait FIFO before releasing the init: its only writer is the
     * init's close-on-exec descriptor, so EOF means the program runs. */
    cleanup_close int waitr = openat(dirfd, STATE_EXEC_WAIT, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (write(fifo, "0", 1) != 1)
        return err_make(err, errno, "start container `%s`", id);
    unlinkat(dirfd, STATE_EXEC_FIFO, 0);
    if (waitr >= 0) {
        int fl = fcntl(waitr, F_GETFL);
        fcntl(waitr, F_SETFL, fl & ~O_NONBLOCK);
        char c;
        while (read(waitr, &c, 1) < 0 && errno == EINTR)
            ;
        unlinkat(dirfd, STATE_EXEC_WAIT, 0);
    }
    lifecycle_poststart(st);
    return 0;
}

int container_state(const struct runtime *rt, const char *id, char **out, struct err **err)
{
    cleanup_close int rootfd = -1;
    cleanup_state struct container_state *st = NULL;
    cleanup_close int dirfd = lifecycle_load(rt, id, &rootfd, &st, err);
    if (dirfd < 0)
        return -1;
    *out = state_to_oci_json(st, state_status(dirfd, st));
    return 0;
}

/* Signal every process in the init's pid namespace. */
static int kill_pidns(const struct container_state *st, int sig)
{
    char path[64];
    struct stat ref;
    snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)st->pid);
    if (stat(path, &ref) < 0)
        return -1;
    cleanup_dir DIR *d = opendir("/proc");
    if (d == NULL)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int pid;
        if (parse_int(de->d_name, &pid) < 0 || pid == st->pid)
            continue;
        struct stat s;
        snprintf(path, sizeof(path), "/proc/%d/ns/pid", pid);
        if (stat(path, &s) == 0 && s.st_ino == ref.st_ino && s.st_dev == ref.st_dev)
            kill(pid, sig);
    }
    return 0;
}

/* Frozen processes cannot die: thaw a paused container after SIGKILL. */
static void thaw(const struct container_state *st)
{
    struct cgroup cg;
    struct err *e = NULL;
    if (st->cgroup && cgroup_open(st->cgroup, &cg, &e) == 0) {
        cgroup_freeze(&cg, false, &e);
        cgroup_close(&cg);
    }
    err_free(&e);
}

static int signal_container(const struct container_state *st, int sig, bool all,
                            struct err **err)
{
    cleanup_close int pidfd = proc_pidfd_open_checked(st->pid, st->start_time);
    if (pidfd < 0)
        return err_make(err, 0, "cannot signal container `%s`: container not running", st->id);
    if (all) {
        if (st->cgroup)
            cgroup_kill_all(st->cgroup, sig);
        else if (st->own_pidns && sig != SIGKILL)
            kill_pidns(st, sig);
    }
    if (proc_pidfd_signal(pidfd, sig) < 0 && errno != ESRCH)
        return err_make(err, errno, "send signal %d to container `%s`", sig, st->id);
    /* A paused container keeps the signal pending until `resume` (runc). */
    return 0;
}

int container_kill(const struct runtime *rt, const char *id, int sig, bool all,
                   struct err **err)
{
    cleanup_close int rootfd = -1;
    cleanup_state struct container_state *st = NULL;
    cleanup_close int dirfd = lifecycle_load(rt, id, &rootfd, &st, err);
    if (dirfd < 0)
        return -1;
    enum container_status s = state_status(dirfd, st);
    if (s == STATUS_STOPPED)
        return err_make(err, 0, "cannot kill container `%s`: container not running (it is stopped)",
                        id);
    if (state_is_vm(st))
        return vmc_kill(dirfd, st, sig, all, err);
    return signal_container(st, sig, all, err);
}

int container_delete(const struct runtime *rt, const char *id, bool force, struct err **err)
{
    cleanup_close int rootfd = -1;
    cleanup_state struct container_state *st = NULL;
    cleanup_close int dirfd = lifecycle_load(rt, id, &rootfd, &st, err);
    if (dirfd < 0) {
        /* A directory with no state is a create that was killed midway. */
        if (force && rootfd >= 0 && state_check_id(id, NULL) == 0 &&
            faccessat(rootfd, id, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
            err_free(err);
            return state_dir_remove(rootfd, id, err);
        }
        return -1;
    }
    enum container_status s = state_status(dirfd, st);
    if (s != STATUS_STOPPED) {
        if (!force && s != STATUS_CREATED)
            return err_make(err, 0, "cannot delete container `%s`: it is %s (use --force)", id,
                            state_status_name(s));
        /* A created container has never run its process: deleting it is
         * allowed (runc and crun do the same). */
        if (state_is_vm(st)) {
            thaw(st); /* a paused VM's monitor must run to shut it down */
            if (vmc_stop(dirfd, st, err) < 0)
                return -1;
            return lifecycle_destroy(rootfd, dirfd, st, NULL, err);
        }
        cleanup_close int pidfd = proc_pidfd_open_checked(st->pid, st->start_time);
        if (pidfd >= 0) {
            if (st->cgroup)
                cgroup_kill_all(st->cgroup, SIGKILL);
            else if (!st->own_pidns)
                kill_pidns(st, SIGKILL);
            proc_pidfd_signal(pidfd, SIGKILL);
            thaw(st);
            if (!proc_pidfd_wait(pidfd, 10000))
                return err_make(err, ETIMEDOUT, "container `%s` did not exit after SIGKILL", id);
        }
    }
    if (state_is_vm(st))
        vmc_host_cleanup(dirfd); /* a VM that stopped by itself */
    return lifecycle_destroy(rootfd, dirfd, st, NULL, err);
}

int container_list(const struct runtime *rt, struct container_info **out, size_t *n,
                   struct err **err)
{
    *out = NULL;
    *n = 0;
    cleanup_close int rootfd = state_root_open(rt->root, false, err);
    if (rootfd < 0) {
        if (err_code(*err) == ENOENT) {
            err_free(err);
            return 0;
        }
        return -1;
    }
    int dfd = dup(rootfd);
    cleanup_dir DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL)
        return err_make(err, errno, "read `%s`", rt->root);
    size_t cap = 0;
    struct container_info *list = NULL;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        cleanup_close int dirfd =
            openat(rootfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dirfd < 0)
            continue;
        struct container_state *st = NULL;
        struct err *e = NULL;
        if (state_read(dirfd, &st, &e) < 0) {
            err_free(&e);
            continue;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            list = realloc(list, cap * sizeof(*list));
            if (list == NULL)
                abort();
        }
        enum container_status s = state_status(dirfd, st);
        list[*n] = (struct container_info){
            .id = steal_pointer(&st->id), .pid = s == STATUS_STOPPED ? 0 : st->pid,
            .status = state_status_name(s), .bundle = steal_pointer(&st->bundle),
            .created = steal_pointer(&st->created),
        };
        (*n)++;
        state_free(st);
    }
    *out = list;
    return 0;
}

void container_list_free(struct container_info *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i].id);
        free(list[i].bundle);
        free(list[i].created);
        free(list[i].owner);
    }
    free(list);
}
