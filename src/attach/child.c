/* The session child: born in the container's pid (and time) namespace and
 * v2 cgroup, it joins the v1 cgroups, builds its own mount namespace (as
 * host root, before giving anything up; with the mount API, rootfs.c, or
 * over FUSE, rootfs_fuse.c), then joins the container's other namespaces,
 * takes on its identity and execs the command from the tools. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "attach/internal.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/ns.h"
#include "ns/path.h"
#include "ns/sync.h"
#include "oci/config.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static char **strv_dup(char **v)
{
    size_t n = strv_len(v);
    char **d = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        d[i] = xstrdup(v[i]);
    return d;
}

static bool env_has(char **env, const char *name)
{
    size_t n = strlen(name);
    for (char **e = env; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return true;
    return false;
}

/* The container's environment; a session without PATH gets the default one
 * (the tools need one), a terminal session without TERM the caller's. */
static char **session_env(char **base, bool tty)
{
    size_t n = strv_len(base);
    char **v = xcalloc(n + 3, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        v[i] = xstrdup(base[i]);
    if (!env_has(v, "PATH"))
        v[n++] = xstrdup("PATH=" DEFAULT_PATH);
    const char *term = getenv("TERM");
    if (tty && !env_has(v, "TERM"))
        v[n++] = xasprintf("TERM=%s", term ? term : "xterm");
    return v;
}

static int setup_terminal(int slave, struct err **err)
{
    if (slave < 0) {
        if (setsid() < 0 && errno != EPERM)
            return err_make(err, errno, "setsid");
        return 0;
    }
    if (setsid() < 0)
        return err_make(err, errno, "setsid");
    if (ioctl(slave, TIOCSCTTY, 0) < 0)
        return err_make(err, errno, "make the pty the controlling terminal");
    for (int fd = 0; fd < 3; fd++)
        if (dup2(slave, fd) < 0)
            return err_make(err, errno, "dup the pty to fd %d", fd);
    return 0;
}

/* Go to the target's working directory under /var/lib/cntr (resolved
 * inside the container's tree), or to /var/lib/cntr. */
static void enter_cwd(const struct attach_trees *tr)
{
    cleanup_err struct err *e = NULL;
    cleanup_close int fd = tr->cwd ? path_resolve_in_root(tr->ctree, tr->cwd, PATH_NO_CREATE,
                                                          "cwd", &e)
                                   : -1;
    if (fd < 0 || fchdir(fd) < 0)
        fchdir(tr->ctree);
}

/* Everything up to exec; *exe, *args and *env get what to exec. */
static int child_run(const struct attach_plan *p, char **exe, char ***args, char ***env,
                     struct err **err)
{
    const struct attach_target *t = p->t;
    if (attach_cgroups_enter_v1(&t->cg, err) < 0)
        return -1;
    if (setup_terminal(p->tty_slave, err) < 0)
        return -1;
    struct attach_trees tr;
    bool fuse = p->o->fuse;
    cleanup_close int proc = -1; /* --fuse: the host's /proc */
    if ((fuse ? attach_fuse_grab(p, &tr, &proc, err) : attach_rootfs_grab(p, &tr, err)) < 0) {
        attach_trees_close(&tr);
        return -1;
    }
    struct attach_identity id = t->id;
    int r = -1;
    if (p->o->user) {
        if (attach_user_parse(tr.ctree, p->o->user, &id.uid, &id.gid, err) < 0)
            goto out;
        id.n_groups = 0;
    }
    if (p->o->args && p->o->args[0]) {
        *args = strv_dup(p->o->args);
    } else {
        /* From the tools' /etc/passwd: read before the container's is shown. */
        *args = xcalloc(2, sizeof(char *));
        (*args)[0] = attach_user_shell(tr.tools, id.uid, p->caller_shell);
    }
    if ((fuse ? attach_fuse_build(p, &tr, proc, err) : attach_rootfs_build(&tr, err)) < 0)
        goto out;
    enter_cwd(&tr);
    int flags = t->join_ns & ~(CLONE_NEWPID | CLONE_NEWTIME | CLONE_NEWNS);
    if (flags && setns(t->pidfd, flags) < 0) {
        err_make(err, errno, "join the namespaces of %s", t->what);
        goto out;
    }
    if (attach_identity_apply(&id, t->seccomp, err) < 0)
        goto out;
    /* The session ends with cocoon (credential changes reset this). */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    *env = session_env(id.env, p->tty_slave >= 0);
    if (ns_find_executable((*args)[0], *env, exe, err) < 0) {
        int code = err_code(*err);
        err_free(err);
        const char *path = DEFAULT_PATH;
        for (char **e = *env; *e; e++)
            if (strncmp(*e, "PATH=", 5) == 0)
                path = *e + 5;
        if (code == 0)
            err_make(err, 0, "command `%s` not found in the tools (PATH=%s)", (*args)[0], path);
        else
            err_make(err, code, "command `%s`", (*args)[0]);
        goto out;
    }
    r = 0;
out:
    attach_trees_close(&tr);
    return r;
}

void attach_child_main(const struct attach_plan *p)
{
    /* Not dumpable until exec: the container cannot reach cocoon's binary
     * through /proc/<pid>/exe (see ns/init.c). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    struct err *err = NULL;
    char *exe = NULL, **args = NULL, **env = NULL;
    if (child_run(p, &exe, &args, &env, &err) == 0) {
        struct oci_process proc = {.args = args, .env = env};
        ns_exec(exe, &proc, 0);
        err_make(&err, errno, "exec `%s`", args[0]);
    }
    sync_send_error(p->sync_fd, err);
    _exit(127);
}
