/* `cocoon attach` of a VM container (docs/attach.md): the tools directory
 * is cloned on the host (open_tree: no copy) and mounted into the agent's
 * shared directory, then the agent runs the command as an attach session
 * (src/agent/attach.c: the tools as `/`, the container's root at
 * /var/lib/cntr) and this process relays its stdio as `exec` does.
 *
 * How the tools reach the agent depends on the hypervisor:
 * - cocoon: the clone is mounted at shared/NAME of the state directory,
 *   which the VMM's virtio-fs device serves read-only to the guest
 *   (/run/cocoon/shared there);
 * - sandbox: the agent is a host process; a child of ours joins its mount
 *   namespace and moves the clone to /run/cocoon/shared/NAME;
 * - qemu: no share (it would need virtiofsd): attach says so.
 * The guest is not trusted: it sees the tools for the session's length, so
 * --tools is required (the host's `/` is not shared by default). */
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "attach/attach.h"
#include "attach/internal.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/mount_api.h"
#include "oci/config.h"
#include "oci/state.h"
#include "runtime/lifecycle.h"
#include "vm/vm_internal.h"

#define AGENT_SHARED_DIR "/run/cocoon/shared"

/* The sandbox's agent: the monitor's only child. */
static pid_t sandbox_agent(pid_t monitor)
{
    char path[64], buf[64] = "";
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)monitor, (int)monitor);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    int pid;
    return sscanf(buf, "%d", &pid) == 1 && pid > 0 ? (pid_t)pid : -1;
}

/* Mount the detached tree at path, a new directory (tree >= 0), or take
 * it away (tree < 0): 0, or an errno. */
static int tree_place(const char *path, int tree)
{
    if (tree < 0)
        return umount2(path, MNT_DETACH) < 0 || rmdir(path) < 0 ? errno : 0;
    if (mkdir(path, 0700) < 0)
        return errno;
    if (sys_move_mount(tree, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
        int e = errno;
        rmdir(path);
        return e;
    }
    return 0;
}

/* tree_place at AGENT_SHARED_DIR/name in a child that joins the mount
 * namespace of the sandbox's agent. */
static int in_agent_ns(pid_t agent, int tree, const char *name, struct err **err)
{
    int pidfd = (int)syscall(SYS_pidfd_open, agent, 0);
    if (pidfd < 0)
        return err_make(err, errno, "the VM's agent (pid %d)", (int)agent);
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        close(pidfd);
        return err_make(err, errno, "pipe");
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        char path[PATH_MAX];
        snprintf(path, sizeof(path), AGENT_SHARED_DIR "/%s", name);
        int e = setns(pidfd, CLONE_NEWNS) < 0 ? errno : tree_place(path, tree);
        if (write(pipefd[1], &e, sizeof(e)) != sizeof(e))
            _exit(1);
        _exit(0);
    }
    close(pidfd);
    close(pipefd[1]);
    if (pid < 0) {
        close(pipefd[0]);
        return err_make(err, errno, "fork");
    }
    int e = EPIPE;
    if (read(pipefd[0], &e, sizeof(e)) != sizeof(e))
        e = EPIPE;
    close(pipefd[0]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (e)
        return err_make(err, e, "%s the tools in the VM's shared directory",
                        tree >= 0 ? "mount" : "unmount");
    return 0;
}

/* tree_place at shared/name of the state directory (cocoon's VMM serves
 * it to the guest). */
static int in_share(int dirfd, int tree, const char *name, struct err **err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "/proc/self/fd/%d/" VMC_SHARED_DIR "/%s", dirfd, name);
    int e = tree_place(path, tree);
    if (e)
        return err_make(err, e, "%s the tools in the VM's share (%s)",
                        tree >= 0 ? "mount" : "unmount", VMC_SHARED_DIR);
    return 0;
}

void vmc_shared_cleanup(int dirfd)
{
    vmc_subdir_clear(dirfd, VMC_SHARED_DIR, "attach-");
}

/* A detached clone of the tools directory that never propagates back. */
static int clone_tools(const char *tools, struct err **err)
{
    int t = mount_clone_tree(AT_FDCWD, tools, 0, MS_PRIVATE);
    if (t < 0)
        return err_make(err, errno, "tools directory `%s`", tools);
    struct stat sb;
    int e = fstat(t, &sb) < 0 ? errno : S_ISDIR(sb.st_mode) ? 0 : ENOTDIR;
    if (e) {
        close(t);
        return err_make(err, e, "tools directory `%s`", tools);
    }
    return t;
}

/* The session's process: the container's, with the user and a terminal of
 * the attach options, in `/` (the tools); args are set by the caller. */
static int session_process(const struct container_state *st, const struct oci_config *cfg,
                           const struct attach_opts *o, bool tty, struct oci_process *p,
                           struct err **err)
{
    *p = *cfg->process;
    p->terminal = tty;
    p->cwd = (char *)"/";
    if (o->user) {
        cleanup_free char *rootfs = cfg->root_path[0] == '/'
                                        ? xstrdup(cfg->root_path)
                                        : xasprintf("%s/%s", st->bundle, cfg->root_path);
        cleanup_close int rootfd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
            return err_make(err, errno, "the container's root `%s`", rootfs);
        if (attach_user_parse(rootfd, o->user, &p->uid, &p->gid, err) < 0)
            return -1;
        p->n_additional_gids = 0;
    }
    return 0;
}

int vmc_attach(int dirfd, const struct container_state *st, const struct attach_opts *o,
               int *status, struct err **err)
{
    char hv[32] = "";
    cleanup_free char *data = NULL;
    size_t len = 0;
    if (read_file_at(dirfd, VMC_HYPERVISOR_FILE, sizeof(hv) - 1, &data, &len, err) < 0)
        return err_wrap(err, "attach to container `%s`", st->id);
    snprintf(hv, sizeof(hv), "%.*s", (int)len, data);
    bool sandbox = strcmp(hv, "sandbox") == 0;
    if (!sandbox && strcmp(hv, "cocoon") != 0)
        return err_input(err, "cannot attach to container `%s`: its VM on %s has no virtio-fs "
                              "share for the tools (cocoon's VMM and the sandbox have one)",
                         st->id, hv);
    if (o->tools == NULL)
        return err_input(err, "attach to VM container `%s` needs --tools DIR: the guest sees "
                              "what is shared, and the host's / is not shared by default",
                         st->id);
    const char *tools = o->tools;
    cleanup_config struct oci_config *cfg = NULL;
    if (oci_config_load(st->bundle, &cfg, err) < 0)
        return err_wrap(err, "container `%s`", st->id);
    bool tty = o->tty >= 0 ? o->tty != 0 : isatty(0);
    struct oci_process p;
    if (session_process(st, cfg, o, tty, &p, err) < 0)
        return err_wrap(err, "attach to container `%s`", st->id);
    char *shell[2] = {NULL, NULL};
    if (o->args == NULL || o->args[0] == NULL) {
        cleanup_close int toolsfd = open(tools, O_PATH | O_DIRECTORY | O_CLOEXEC);
        shell[0] = attach_user_shell(toolsfd, p.uid, getenv("SHELL"));
        p.args = shell;
    } else {
        p.args = o->args;
    }
    cleanup_free char *name = xasprintf("attach-%d", (int)getpid());
    cleanup_free char *req = vmc_process_json(&p, name);
    free(shell[0]);
    cleanup_close int tree = clone_tools(tools, err);
    if (tree < 0)
        return err_wrap(err, "attach to container `%s`", st->id);
    pid_t agent = -1;
    if (sandbox) {
        agent = sandbox_agent(st->pid);
        if (agent < 0)
            return err_make(err, ESRCH, "attach to container `%s`: its VM is not running",
                            st->id);
        if (in_agent_ns(agent, tree, name, err) < 0)
            return err_wrap(err, "attach to container `%s`", st->id);
    } else if (in_share(dirfd, tree, name, err) < 0) {
        return err_wrap(err, "attach to container `%s`", st->id);
    }
    struct vmc_exec_opts eo = {.process_json = req, .tty = tty};
    int r = vmc_exec(dirfd, st, &eo, status, err);
    struct err *e2 = NULL;
    if (sandbox)
        in_agent_ns(agent, -1, name, &e2); /* gone with the sandbox anyway if this fails */
    else
        in_share(dirfd, -1, name, &e2);    /* else vmc_shared_cleanup at delete */
    err_free(&e2);
    return r;
}

int vmc_attach_id(const struct runtime *rt, const struct attach_opts *o, int *status,
                  struct err **err)
{
    cleanup_close int rootfd = -1;
    cleanup_state struct container_state *st = NULL;
    struct err *e = NULL;
    cleanup_close int dirfd = lifecycle_load(rt, o->id, &rootfd, &st, &e);
    if (dirfd < 0 || !state_is_vm(st)) {
        err_free(&e); /* not ours to report: the namespace path says it */
        return 1;
    }
    enum container_status s = state_status(dirfd, st);
    if (s != STATUS_RUNNING)
        return err_make(err, 0, "cannot attach to container `%s`: it is %s, not running", o->id,
                        state_status_name(s));
    return vmc_attach(dirfd, st, o, status, err);
}
