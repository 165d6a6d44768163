#include "oci/hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/proc.h"
#include "common/util.h"

static const char *const kind_names[OCI_HOOK_KINDS] = {
    [OCI_HOOK_PRESTART] = "prestart", [OCI_HOOK_CREATE_RUNTIME] = "createRuntime",
    [OCI_HOOK_CREATE_CONTAINER] = "createContainer",
    [OCI_HOOK_START_CONTAINER] = "startContainer", [OCI_HOOK_POSTSTART] = "poststart",
    [OCI_HOOK_POSTSTOP] = "poststop",
};

const char *hooks_kind_name(enum oci_hook_kind kind)
{
    return (unsigned)kind < OCI_HOOK_KINDS ? kind_names[kind] : "?";
}

static int run_one(const struct oci_hook *h, const char *what, const char *state_json,
                   struct err **err)
{
    if (access(h->path, X_OK) < 0)
        return err_make(err, errno, "%s `%s`", what, h->path);
    int in[2];
    if (pipe2(in, O_CLOEXEC) < 0)
        return err_make(err, errno, "%s: pipe", what);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(in[0]);
        close(in[1]);
        return err_make(err, e, "%s: fork", what);
    }
    if (pid == 0) {
        dup2(in[0], 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        char *const dflt[] = {h->path, NULL};
        char *const noenv[] = {NULL};
        execve(h->path, h->args && h->args[0] ? h->args : dflt, h->env ? h->env : noenv);
        dprintf(2, "cocoon: %s: exec `%s`: %s\n", what, h->path, strerror(errno));
        _exit(127);
    }
    close(in[0]);
    /* The hook may not read its stdin: a full pipe or EPIPE is fine. */
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);
    if (write_all(in[1], state_json, strlen(state_json)) < 0) {
        /* ignored, see above */
    }
    close(in[1]);
    cleanup_close int pidfd = proc_pidfd_open(pid);
    if (h->timeout > 0 && pidfd >= 0) {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        int r;
        do
            r = poll(&p, 1, h->timeout * 1000);
        while (r < 0 && errno == EINTR);
        if (r == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return err_make(err, 0, "%s `%s` timed out after %d s", what, h->path, h->timeout);
        }
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return err_make(err, errno, "%s: wait", what);
    }
    if (WIFSIGNALED(st))
        return err_make(err, 0, "%s `%s` was killed by signal %d", what, h->path,
                        WTERMSIG(st));
    if (WEXITSTATUS(st) != 0)
        return err_make(err, 0, "%s `%s` exited with status %d", what, h->path,
                        WEXITSTATUS(st));
    return 0;
}

int hooks_run(const struct oci_config *cfg, enum oci_hook_kind kind, const char *state_json,
              struct err **err)
{
    for (size_t i = 0; i < cfg->hooks.n[kind]; i++) {
        char what[64];
        snprintf(what, sizeof(what), "hook %s[%zu]", kind_names[kind], i);
        if (run_one(&cfg->hooks.list[kind][i], what, state_json, err) < 0)
            return -1;
    }
    return 0;
}
