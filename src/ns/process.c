/* The container process's identity and attributes: rlimits, capabilities,
 * user and groups, umask, working directory, and the program to exec. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <linux/close_range.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/apparmor.h"
#include "ns/caps.h"
#include "ns/seccomp.h"
#include "ns/ns.h"

static int set_rlimits(const struct oci_process *p, struct err **err)
{
    for (size_t i = 0; i < p->n_rlimits; i++) {
        const struct oci_rlimit *r = &p->rlimits[i];
        struct rlimit rl = {.rlim_cur = r->soft, .rlim_max = r->hard};
        if (setrlimit(r->resource, &rl) < 0) {
            int e = errno;
            struct rlimit cur;
            getrlimit(r->resource, &cur);
            if (e == EPERM && r->hard > cur.rlim_max)
                return err_make(err, e,
                                "process.rlimits[%zu]: cannot raise the hard limit from %llu to "
                                "%llu (that needs CAP_SYS_RESOURCE)",
                                i, (unsigned long long)cur.rlim_max,
                                (unsigned long long)r->hard);
            return err_make(err, e, "process.rlimits[%zu]: setrlimit", i);
        }
    }
    return 0;
}

/* mkdir -p for the working directory (runc creates a missing cwd). */
static int ensure_dir(const char *path, struct err **err)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : err_make(err, ENOTDIR, "process.cwd `%s`", path);
    cleanup_free char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return err_make(err, errno, "create process.cwd `%s`", path);
        *s = '/';
    }
    if (mkdir(p, 0755) < 0 && errno != EEXIST)
        return err_make(err, errno, "create process.cwd `%s`", path);
    return 0;
}

int ns_process_setup(const struct oci_process *p, struct err **err)
{
    if (set_rlimits(p, err) < 0)
        return -1;
    if (ensure_dir(p->cwd, err) < 0)
        return -1;
    if (p->terminal && fchown(0, p->uid, p->gid) < 0 && errno != EPERM && errno != EINVAL)
        return err_make(err, errno, "chown the terminal");
    /* No process.capabilities means no capabilities (as runc): the empty
     * sets, not whatever the runtime had. */
    if (caps_drop_bounding(&p->caps, err) < 0)
        return -1;
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        return err_make(err, errno, "keep capabilities");
    gid_t *groups = NULL;
    if (p->n_additional_gids) {
        groups = xcalloc(p->n_additional_gids, sizeof(gid_t));
        for (size_t i = 0; i < p->n_additional_gids; i++)
            groups[i] = p->additional_gids[i];
    }
    int r = setgroups(p->n_additional_gids, groups);
    int e = errno;
    free(groups);
    /* setgroups is denied in user namespaces set up with "setgroups deny". */
    if (r < 0 && !(e == EPERM && p->n_additional_gids == 0))
        return err_make(err, e, "process.user.additionalGids: setgroups");
    if (setresgid(p->gid, p->gid, p->gid) < 0)
        return err_make(err, errno, "process.user.gid %u: setgid", p->gid);
    if (setresuid(p->uid, p->uid, p->uid) < 0)
        return err_make(err, errno, "process.user.uid %u: setuid", p->uid);
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
    if (caps_apply(&p->caps, err) < 0)
        return -1;
    umask(p->has_umask ? p->umask : 0022);
    if (chdir(p->cwd) < 0)
        return err_make(err, errno, "process.cwd `%s`", p->cwd);
    return 0;
}

int ns_find_executable(const char *arg0, char *const *env, char **out, struct err **err)
{
    if (strchr(arg0, '/')) {
        struct stat st;
        if (stat(arg0, &st) < 0)
            return err_make(err, errno, "process.args[0] `%s`", arg0);
        if (!S_ISREG(st.st_mode))
            return err_input(err, "process.args[0] `%s` is not a regular file", arg0);
        if (access(arg0, X_OK) < 0)
            return err_make(err, errno, "process.args[0] `%s`", arg0);
        *out = xstrdup(arg0);
        return 0;
    }
    const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (char *const *e = env; e && *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            path = *e + 5;
    int last = ENOENT;
    for (const char *s = path;;) {
        const char *colon = strchr(s, ':');
        size_t n = colon ? (size_t)(colon - s) : strlen(s);
        char cand[PATH_MAX];
        if (n == 0)
            snprintf(cand, sizeof(cand), "./%s", arg0);
        else
            snprintf(cand, sizeof(cand), "%.*s/%s", (int)n, s, arg0);
        struct stat st;
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(cand, X_OK) == 0) {
                *out = xstrdup(cand);
                return 0;
            }
            last = EACCES;
        }
        if (colon == NULL)
            break;
        s = colon + 1;
    }
    if (last == EACCES)
        return err_make(err, EACCES, "process.args[0] `%s`", arg0);
    return err_make(err, 0, "process.args[0]: executable `%s` not found in $PATH (%s)", arg0,
                    path);
}

void ns_exec(const char *exe, const struct oci_process *p, int preserve_fds)
{
    unsigned first = 3u + (unsigned)preserve_fds;
    if (syscall(SYS_close_range, first, ~0u, CLOSE_RANGE_CLOEXEC) < 0) {
        for (int fd = (int)first; fd < 1024; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    /* `cocoon run` blocks the signals it forwards; the program starts clean. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    execve(exe, p->args, p->env);
}

int ns_secure_and_find(const struct oci_process *p, const struct seccomp_prog *seccomp,
                       const char *state_json, char **exe, struct err **err)
{
    /* The profile first: no_new_privs would restrict the transition. */
    if (ns_apparmor_on_exec(p->apparmor_profile, err) < 0)
        return -1;
    /* Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it
     * before the capabilities are dropped (runc's order). */
    if (!p->no_new_privileges && ns_seccomp_install(seccomp, state_json, err) < 0)
        return -1;
    if (ns_process_setup(p, err) < 0 || ns_find_executable(p->args[0], p->env, exe, err) < 0)
        return -1;
    if (p->no_new_privileges) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            return err_make(err, errno, "set no_new_privs");
        if (ns_seccomp_install(seccomp, state_json, err) < 0)
            return -1;
    }
    return 0;
}
