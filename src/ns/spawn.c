/* Parent side of the namespace backend: validate, clone3, map ids, wait for
 * the init to report ready. */
#include "ns/ns.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "cgroup/cgroup.h"
#include "ns/caps.h"
#include "ns/sync.h"
#include "oci/hooks.h"
#include "oci/state.h"

int ns_validate(const struct oci_config *cfg, struct err **err)
{
    if (cfg->process == NULL)
        return err_input(err, "config.json: `process` is required to run a container");
    if (cfg->process->has_caps && caps_validate(&cfg->process->caps, err) < 0)
        return -1;
    /* A mount namespace joined by path gets the rootfs set up in it, as
     * runc does: the mounts and the pivot_root land in that namespace. */
    if (oci_config_ns(cfg, OCI_NS_MNT) == NULL)
        return err_input(err, "config.json: `linux.namespaces` must have a mount namespace "
                              "(new, or joined by path): cocoon does not mount a container's "
                              "root in its own mount namespace");
    /* A joined uts namespace takes the names, as with runc. */
    const struct oci_namespace *uts = oci_config_ns(cfg, OCI_NS_UTS);
    if ((cfg->hostname && cfg->hostname[0]) && uts == NULL)
        return err_input(err, "config.json: `hostname` needs a uts namespace in `linux.namespaces`");
    if ((cfg->domainname && cfg->domainname[0]) && uts == NULL)
        return err_input(err, "config.json: `domainname` needs a uts namespace in `linux.namespaces`");
    const struct oci_namespace *user = oci_config_ns(cfg, OCI_NS_USER);
    bool new_user = user && !user->path;
    if (new_user && (cfg->linux_.n_uid_mappings == 0 || cfg->linux_.n_gid_mappings == 0))
        return err_input(err, "config.json: a new user namespace needs `linux.uidMappings` and "
                        "`linux.gidMappings`");
    if (!new_user && (cfg->linux_.n_uid_mappings || cfg->linux_.n_gid_mappings))
        return err_input(err, "config.json: `linux.uidMappings` need a new user namespace");
    const struct oci_namespace *time = oci_config_ns(cfg, OCI_NS_TIME);
    if (cfg->linux_.has_time_offsets && (time == NULL || time->path))
        return err_input(err, "config.json: `linux.timeOffsets` need a new time namespace");
    return 0;
}

static int open_ns_paths(const struct oci_config *cfg, int fds[OCI_NS_COUNT], struct err **err)
{
    for (int i = 0; i < OCI_NS_COUNT; i++)
        fds[i] = -1;
    for (size_t i = 0; i < cfg->linux_.n_namespaces; i++) {
        const struct oci_namespace *ns = &cfg->linux_.namespaces[i];
        if (ns->path == NULL)
            continue;
        int fd = open(ns->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return err_make(err, errno, "%s namespace `%s`", oci_ns_name(ns->type), ns->path);
        fds[ns->type] = fd;
        int type = ioctl(fd, NS_GET_NSTYPE);
        if (type >= 0 && type != oci_ns_clone_flag(ns->type))
            return err_input(err, "`%s` is not a %s namespace", ns->path,
                            oci_ns_name(ns->type));
        if (type < 0 && errno == ENOTTY)
            return err_input(err, "`%s` is not a namespace file", ns->path);
    }
    return 0;
}

static void close_ns_fds(int fds[OCI_NS_COUNT])
{
    for (int i = 0; i < OCI_NS_COUNT; i++)
        close_and_reset(&fds[i]);
}

static int write_id_map(pid_t pid, const char *file, const struct oci_id_mapping *m, size_t n,
                        struct err **err)
{
    char buf[4096], path[64];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(buf + len, sizeof(buf) - len, "%u %u %u\n", m[i].container_id,
                         m[i].host_id, m[i].size);
        if (w < 0 || (size_t)w >= sizeof(buf) - len)
            return err_make(err, E2BIG, "too many id mappings for `%s`", file);
        len += (size_t)w;
    }
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, buf, len) != (ssize_t)len)
        return err_make(err, errno, "write %s of the container (check linux.%s)", file,
                        strcmp(file, "uid_map") == 0 ? "uidMappings" : "gidMappings");
    return 0;
}

static int write_time_offsets(const struct oci_linux *l, struct err **err)
{
    char buf[128];
    int n = snprintf(buf, sizeof(buf), "monotonic %lld %u\nboottime %lld %u\n",
                     (long long)l->monotonic_secs, l->monotonic_nsecs,
                     (long long)l->boottime_secs, l->boottime_nsecs);
    cleanup_close int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, buf, (size_t)n) != n)
        return err_make(err, errno, "set linux.timeOffsets");
    return 0;
}

static pid_t do_clone3(uint64_t flags, int cgroup_fd)
{
    struct clone_args args = {.flags = flags, .exit_signal = SIGCHLD};
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

static void kill_and_reap(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

/* prestart and createRuntime hooks: in the runtime's namespaces, once the
 * container's exist (pid is the init's host pid). */
static int run_create_hooks(const struct ns_spawn_opts *o, pid_t pid, struct err **err)
{
    struct container_state st = {
        .id = (char *)o->id, .bundle = (char *)o->bundle, .rootfs = (char *)o->rootfs,
        .pid = pid, .annotations = o->cfg->annotations, .n_annotations = o->cfg->n_annotations,
    };
    cleanup_free char *js = state_to_oci_json(&st, STATUS_CREATING);
    if (hooks_run(o->cfg, OCI_HOOK_PRESTART, js, err) < 0 ||
        hooks_run(o->cfg, OCI_HOOK_CREATE_RUNTIME, js, err) < 0)
        return -1;
    return 0;
}

int ns_spawn(const struct ns_spawn_opts *o, struct ns_child *out, struct err **err)
{
    const struct oci_config *cfg = o->cfg;
    int ns_fds[OCI_NS_COUNT];
    if (open_ns_paths(cfg, ns_fds, err) < 0) {
        close_ns_fds(ns_fds);
        return -1;
    }
    uint64_t new_flags = 0;
    for (size_t i = 0; i < cfg->linux_.n_namespaces; i++)
        if (cfg->linux_.namespaces[i].path == NULL)
            new_flags |= (uint64_t)oci_ns_clone_flag(cfg->linux_.namespaces[i].type);
    bool user_join = ns_fds[OCI_NS_USER] >= 0;
    /* Without a joined user namespace every new namespace comes from clone3
     * directly. With one, the init joins it first and unshares the rest. */
    uint64_t clone_flags = user_join ? 0 : (new_flags & ~(uint64_t)CLONE_NEWTIME);
    /* A new cgroup namespace must be rooted at the container's cgroup: the
     * init unshares it after joining. */
    if (o->cg)
        clone_flags &= ~(uint64_t)CLONE_NEWCGROUP;

    cleanup_close int own_pidns = -1, own_timens = -1;
    if (ns_fds[OCI_NS_PID] >= 0) {
        own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
        if (setns(ns_fds[OCI_NS_PID], CLONE_NEWPID) < 0) {
            close_ns_fds(ns_fds);
            return err_make(err, errno, "join pid namespace `%s`",
                            oci_config_ns(cfg, OCI_NS_PID)->path);
        }
    }
    if ((new_flags & CLONE_NEWTIME) || ns_fds[OCI_NS_TIME] >= 0) {
        own_timens = open("/proc/self/ns/time", O_RDONLY | O_CLOEXEC);
        int r = ns_fds[OCI_NS_TIME] >= 0 ? setns(ns_fds[OCI_NS_TIME], CLONE_NEWTIME)
                                         : unshare(CLONE_NEWTIME);
        if (r < 0 || ((new_flags & CLONE_NEWTIME) && cfg->linux_.has_time_offsets &&
                      write_time_offsets(&cfg->linux_, err) < 0)) {
            if (r < 0)
                err_make(err, errno, "set up the time namespace");
            close_ns_fds(ns_fds);
            return -1;
        }
    }

    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        close_ns_fds(ns_fds);
        return err_make(err, errno, "socketpair");
    }
    fflush(NULL);
    /* Born in its v2 cgroup: no migration (and no global lock) needed. */
    int v2fd = o->cg ? cgroup_v2_fd(o->cg) : -1;
    pid_t pid = do_clone3(clone_flags, v2fd);
    if (pid < 0 && v2fd >= 0 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
        v2fd = -1; /* an older kernel: join by writing cgroup.procs instead */
        pid = do_clone3(clone_flags, -1);
    }
    if (pid == 0) {
        close(sp[0]);
        ns_init_main(o, sp[1], ns_fds, (int)clone_flags, v2fd >= 0);
    }
    int clone_errno = errno;
    close(sp[1]);
    close_ns_fds(ns_fds);
    /* Put the parent's children back where they were. */
    if (own_pidns >= 0)
        setns(own_pidns, CLONE_NEWPID);
    if (own_timens >= 0)
        setns(own_timens, CLONE_NEWTIME);
    cleanup_close int sync_fd = sp[0];
    if (pid < 0)
        return err_make(err, clone_errno, "clone3 the container init");

    struct sync_msg m;
    /* In a new user namespace the init cannot write to the host's cgroup
     * files: move it from here before it goes on. */
    if ((clone_flags & CLONE_NEWUSER) && o->cg && cgroup_enter(o->cg, pid, v2fd >= 0, err) < 0) {
        kill_and_reap(pid);
        return -1;
    }
    if ((clone_flags & CLONE_NEWUSER) &&
        (write_id_map(pid, "uid_map", cfg->linux_.uid_mappings, cfg->linux_.n_uid_mappings,
                      err) < 0 ||
         write_id_map(pid, "gid_map", cfg->linux_.gid_mappings, cfg->linux_.n_gid_mappings,
                      err) < 0 ||
         sync_send(sync_fd, SYNC_MAPPED, 0) < 0)) {
        if (err && *err == NULL)
            err_make(err, errno, "signal the container init");
        kill_and_reap(pid);
        return -1;
    }
    pid_t init_pid = pid;
    for (;;) {
        if (sync_recv(sync_fd, &m, err) < 0)
            goto fail;
        if (m.type == SYNC_ERROR) {
            /* The message is complete: keep the init's errno, add nothing. */
            err_make(err, 0, "%s", m.msg);
            (*err)->code = m.code;
            goto fail;
        }
        if (m.type == SYNC_PID) {
            /* The first child forked the real init into a new pid namespace
             * and exits. */
            init_pid = m.pid;
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            pid = init_pid;
            continue;
        }
        if (m.type == SYNC_HOOKS) {
            if (run_create_hooks(o, m.pid, err) < 0)
                goto fail;
            if (sync_send(sync_fd, SYNC_HOOKS_DONE, 0) < 0) {
                err_make(err, errno, "resume the container init");
                goto fail;
            }
            continue;
        }
        if (m.type == SYNC_READY)
            break;
        err_make(err, EPROTO, "unexpected message %u from container init", m.type);
        goto fail;
    }
    out->pid = init_pid;
    out->sync_fd = steal_fd(&sync_fd);
    return 0;

fail:
    if (init_pid != pid)
        kill(init_pid, SIGKILL);
    kill_and_reap(pid);
    return -1;
}

int ns_release(struct ns_child *c, struct err **err)
{
    if (sync_send(c->sync_fd, SYNC_START, 0) < 0)
        return err_make(err, errno, "start the container process");
    return 0;
}
