/* Container-init side of the namespace backend: runs in the cloned child,
 * joins and creates namespaces, builds the root filesystem, becomes the
 * configured process and waits for `start` before exec. */
#include "ns/ns.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cgroup/cgroup.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/seccomp.h"
#include "ns/sync.h"
#include "oci/hooks.h"
#include "oci/state.h"

static const enum oci_ns_type join_order[] = {
    OCI_NS_IPC, OCI_NS_UTS, OCI_NS_NET, OCI_NS_CGROUP, OCI_NS_MNT,
};

static int join_namespaces(const struct oci_config *cfg, const int *ns_fds, struct err **err)
{
    if (ns_fds[OCI_NS_USER] >= 0 && setns(ns_fds[OCI_NS_USER], CLONE_NEWUSER) < 0)
        return err_make(err, errno, "join user namespace `%s`",
                        oci_config_ns(cfg, OCI_NS_USER)->path);
    for (size_t i = 0; i < sizeof(join_order) / sizeof(join_order[0]); i++) {
        enum oci_ns_type t = join_order[i];
        if (ns_fds[t] >= 0 && setns(ns_fds[t], oci_ns_clone_flag(t)) < 0)
            return err_make(err, errno, "join %s namespace `%s`", oci_ns_name(t),
                            oci_config_ns(cfg, t)->path);
    }
    return 0;
}

/* With a joined user namespace the other new namespaces are made here; a new
 * pid namespace needs one more fork (the child becomes its pid 1). */
static int unshare_late(const struct oci_config *cfg, int sync_fd, struct err **err)
{
    int flags = 0;
    for (size_t i = 0; i < cfg->linux_.n_namespaces; i++) {
        const struct oci_namespace *ns = &cfg->linux_.namespaces[i];
        if (ns->path == NULL && ns->type != OCI_NS_USER && ns->type != OCI_NS_TIME)
            flags |= oci_ns_clone_flag(ns->type);
    }
    if (flags & ~CLONE_NEWPID && unshare(flags & ~CLONE_NEWPID) < 0)
        return err_make(err, errno, "create namespaces");
    if (!(flags & CLONE_NEWPID))
        return 0;
    if (unshare(CLONE_NEWPID) < 0)
        return err_make(err, errno, "create pid namespace");
    pid_t pid = fork();
    if (pid < 0)
        return err_make(err, errno, "fork into the new pid namespace");
    if (pid > 0) {
        sync_send(sync_fd, SYNC_PID, pid);
        _exit(0);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    return 0;
}

static int become_root_in_userns(struct err **err)
{
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
        return err_make(err, errno,
                        "become root in the user namespace (do the mappings include id 0?)");
    return 0;
}

static int set_oom_score_adj(int adj, struct err **err)
{
    char buf[16];
    int n = snprintf(buf, sizeof(buf), "%d", adj);
    cleanup_close int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, buf, (size_t)n) != n)
        return err_make(err, errno, "set process.oomScoreAdj to %d%s", adj,
                        errno == EACCES ? " (lowering it needs CAP_SYS_RESOURCE)" : "");
    return 0;
}

static int wait_for_start(const struct ns_spawn_opts *o, int sync_fd, struct err **err)
{
    if (o->fifo_fd >= 0) {
        char c;
        ssize_t n;
        do
            n = read(o->fifo_fd, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1)
            return err_make(err, errno, "wait for start");
        return 0;
    }
    struct sync_msg m;
    return sync_expect(sync_fd, SYNC_START, &m, err);
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Close every inherited fd at or above `first` except those in keep: the
 * runtime's own (a locked state directory!) must not live on in the init. */
static void close_other_fds(int first, int *keep, size_t n)
{
    qsort(keep, n, sizeof(int), cmp_int);
    unsigned lo = (unsigned)first;
    for (size_t i = 0; i < n; i++) {
        if (keep[i] < first)
            continue;
        if ((unsigned)keep[i] > lo)
            syscall(SYS_close_range, lo, (unsigned)keep[i] - 1, 0);
        lo = (unsigned)keep[i] + 1;
    }
    syscall(SYS_close_range, lo, ~0u, 0);
}

/* The state document hooks get on stdin, as the init can build it. */
static char *hook_state(const struct ns_spawn_opts *o, pid_t host_pid, enum container_status s)
{
    struct container_state st = {
        .id = (char *)o->id, .bundle = (char *)o->bundle, .rootfs = (char *)o->rootfs,
        .pid = host_pid, .annotations = o->cfg->annotations,
        .n_annotations = o->cfg->n_annotations,
    };
    return state_to_oci_json(&st, s);
}

/* Our pid as the host sees it: the host's /proc is still mounted here. */
static pid_t host_pid(void)
{
    char buf[32];
    ssize_t n = readlink("/proc/self", buf, sizeof(buf) - 1);
    int pid;
    if (n <= 0)
        return getpid();
    buf[n] = '\0';
    return parse_int(buf, &pid) == 0 ? pid : getpid();
}

/* Set once the parent has been told READY: later errors have no reader. */
static bool init_ready;

static int init_run(const struct ns_spawn_opts *o, int sync_fd, const int *ns_fds,
                    int clone_flags, bool in_v2_cgroup, char **exe, struct err **err)
{
    const struct oci_config *cfg = o->cfg;
    const struct oci_process *proc = cfg->process;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(1); /* the parent is already gone */
    /* Until exec this process runs cocoon's binary: not dumpable, so that a
     * process in the container cannot open /proc/<pid>/exe and later write
     * the host's cocoon through it (the CVE-2019-5736 class). execve makes
     * the user's program dumpable again. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    int keep[OCI_NS_COUNT + 4 + CGROUP_MAX_HIER];
    size_t nkeep = 0;
    keep[nkeep++] = sync_fd;
    keep[nkeep++] = o->fifo_fd;
    keep[nkeep++] = o->exec_wait_fd;
    keep[nkeep++] = o->console_fd;
    for (int i = 0; i < OCI_NS_COUNT; i++)
        keep[nkeep++] = ns_fds[i];
    for (size_t i = 0; o->cg && i < o->cg->n; i++)
        keep[nkeep++] = o->cg->dirfds[i];
    close_other_fds(3 + o->preserve_fds, keep, nkeep);
    bool in_userns = oci_config_ns(cfg, OCI_NS_USER) != NULL;

    if (clone_flags & CLONE_NEWUSER) {
        struct sync_msg m; /* the parent has moved us into the cgroup too */
        if (sync_expect(sync_fd, SYNC_MAPPED, &m, err) < 0)
            return -1;
    } else if (o->cg && cgroup_enter(o->cg, 0, in_v2_cgroup, err) < 0) {
        return -1;
    }
    if (join_namespaces(cfg, ns_fds, err) < 0)
        return -1;
    if (ns_fds[OCI_NS_USER] >= 0) {
        if (unshare_late(cfg, sync_fd, err) < 0)
            return -1;
    } else if (o->cg) {
        const struct oci_namespace *cgns = oci_config_ns(cfg, OCI_NS_CGROUP);
        if (cgns && cgns->path == NULL && unshare(CLONE_NEWCGROUP) < 0)
            return err_make(err, errno, "create cgroup namespace");
    }
    if (in_userns && become_root_in_userns(err) < 0)
        return -1;
    if (proc->has_oom_score_adj && set_oom_score_adj(proc->oom_score_adj, err) < 0)
        return -1;
    if (cfg->hostname && cfg->hostname[0] &&
        sethostname(cfg->hostname, strlen(cfg->hostname)) < 0)
        return err_make(err, errno, "set hostname `%s`", cfg->hostname);
    if (cfg->domainname && cfg->domainname[0] &&
        setdomainname(cfg->domainname, strlen(cfg->domainname)) < 0)
        return err_make(err, errno, "set domainname `%s`", cfg->domainname);

    if (ns_rootfs_setup(o, in_userns, err) < 0)
        return -1;
    const struct oci_hooks *hk = &cfg->hooks;
    pid_t hpid = host_pid();
    if (hk->n[OCI_HOOK_PRESTART] || hk->n[OCI_HOOK_CREATE_RUNTIME]) {
        struct sync_msg m;
        if (sync_send(sync_fd, SYNC_HOOKS, hpid) < 0)
            return err_make(err, errno, "ask the runtime to run hooks");
        if (sync_expect(sync_fd, SYNC_HOOKS_DONE, &m, err) < 0)
            return -1;
    }
    if (hk->n[OCI_HOOK_CREATE_CONTAINER]) {
        cleanup_free char *js = hook_state(o, hpid, STATUS_CREATING);
        if (hooks_run(cfg, OCI_HOOK_CREATE_CONTAINER, js, err) < 0)
            return -1;
    }
    cleanup_free char *start_state =
        hk->n[OCI_HOOK_START_CONTAINER] ? hook_state(o, hpid, STATUS_CREATED) : NULL;
    if (ns_rootfs_pivot(o, err) < 0)
        return -1;
    if (proc->terminal) {
        if (ns_terminal_setup(proc, o->console_fd, err) < 0)
            return -1;
    } else if (setsid() < 0 && errno != EPERM) {
        return err_make(err, errno, "setsid");
    }
    if (ns_rootfs_finish(o, err) < 0)
        return -1;
    if (ns_secure_and_find(proc, o->seccomp, start_state, exe, err) < 0)
        return -1;
    /* From here on the init must survive its parent (`cocoon create` exits). */
    prctl(PR_SET_PDEATHSIG, 0);
    if (sync_send(sync_fd, SYNC_READY, 0) < 0)
        return err_make(err, errno, "report ready");
    init_ready = true;
    if (wait_for_start(o, sync_fd, err) < 0)
        return -1;
    if (start_state && hooks_run(cfg, OCI_HOOK_START_CONTAINER, start_state, err) < 0)
        return -1;
    return 0;
}

void ns_init_main(const struct ns_spawn_opts *o, int sync_fd, const int *ns_fds, int clone_flags,
                  bool in_v2_cgroup)
{
    struct err *err = NULL;
    char *exe = NULL;
    if (init_run(o, sync_fd, ns_fds, clone_flags, in_v2_cgroup, &exe, &err) < 0) {
        /* Before READY the parent reports it; after (a startContainer hook),
         * only the container's stderr is left. */
        if (init_ready)
            dprintf(2, "cocoon: %s\n", err && err->msg ? err->msg : "container setup failed");
        else
            sync_send_error(sync_fd, err);
        _exit(1);
    }
    const struct oci_process *proc = o->cfg->process;
    ns_exec(exe, proc, o->preserve_fds);
    /* The runtime has already returned; the container's stderr is all we have. */
    dprintf(2, "cocoon: exec `%s`: %s\n", proc->args[0], strerror(errno));
    _exit(127);
}
