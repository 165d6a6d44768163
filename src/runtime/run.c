/* `cocoon run`: create and start in one go; in the foreground, forward
 * signals (and a terminal) to the container and return its exit status. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/terminal.h"
#include "common/proc.h"
#include "common/util.h"
#include "ns/ns.h"
#include "runtime/container.h"
#include "runtime/lifecycle.h"
#include "vm/vmc.h"

int container_run(const struct runtime *rt, const struct create_opts *o, bool detach,
                  int *status, struct err **err)
{
    struct prepared p;
    cleanup_close int console = -1, console_peer = -1, master = -1, sfd = -1;
    struct ns_child child = {.pid = -1, .sync_fd = -1};
    void *saved_tty = NULL;
    sigset_t mask, old;
    lifecycle_forward_mask(&mask);
    /* Block forwarded signals from the start so none is lost or kills us. */
    if (!detach)
        sigprocmask(SIG_BLOCK, &mask, &old);

    struct create_opts co = *o;
    bool own_console = false;
    const char *console_socket = o->console_socket;
    if (!detach && console_socket == NULL)
        co.console_socket = "(internal)"; /* lets prepare accept process.terminal */
    if (lifecycle_prepare(rt, &co, &p, err) < 0)
        goto fail;
    if (p.cfg->process->terminal) {
        if (console_socket) {
            console = unix_connect(console_socket, err);
            if (console < 0) {
                err_wrap(err, "--console-socket");
                goto fail;
            }
        } else {
            int sp[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
                err_make(err, errno, "socketpair");
                goto fail;
            }
            console = sp[0];
            console_peer = sp[1];
            own_console = true;
        }
    }
    if (!detach && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
        err_make(err, errno, "become a subreaper");
        goto fail;
    }
    struct ns_spawn_opts so = {
        .cfg = p.cfg, .id = o->id, .bundle = p.bundle, .rootfs = p.rootfs, .fifo_fd = -1,
        .exec_wait_fd = -1,
        .console_fd = console, .preserve_fds = o->preserve_fds, .no_pivot = o->no_pivot,
        .cg = &p.cg, .seccomp = p.seccomp,
    };
    if (p.vm) {
        if (vmc_spawn(rt, &p, o, console, &child.pid, err) < 0)
            goto fail;
    } else if (ns_spawn(&so, &child, err) < 0) {
        goto fail;
    }
    if (own_console) {
        master = terminal_recv_fd(console_peer, err);
        if (master < 0)
            goto fail;
    }
    if (lifecycle_record(o, &p, child.pid, err) < 0)
        goto fail;
    if (!detach) {
        sfd = signalfd(-1, &mask, SFD_CLOEXEC);
        if (sfd < 0) {
            err_make(err, errno, "signalfd");
            goto fail;
        }
        if (master >= 0 && isatty(0)) {
            lifecycle_copy_winsize(0, master);
            terminal_make_raw(0, &saved_tty);
        }
    }
    if (p.vm) {
        struct container_state vst = {.id = (char *)o->id};
        if (vmc_start(p.dirfd, &vst, err) < 0)
            goto fail;
    } else if (ns_release(&child, err) < 0) {
        goto fail;
    }
    if (p.cfg->hooks.n[OCI_HOOK_POSTSTART] && child.sync_fd >= 0) {
        /* poststart runs once the program does: the init's end of the sync
         * socket closes on exec. */
        char c;
        while (recv(child.sync_fd, &c, 1, 0) < 0 && errno == EINTR)
            ;
    }
    close_and_reset(&child.sync_fd);
    if (p.cfg->hooks.n[OCI_HOOK_POSTSTART]) {
        struct container_state st = {.id = (char *)o->id, .bundle = p.bundle,
                                     .rootfs = p.rootfs, .pid = child.pid,
                                     .annotations = p.cfg->annotations,
                                     .n_annotations = p.cfg->n_annotations};
        lifecycle_poststart(&st);
    }
    if (detach) {
        lifecycle_release(&p);
        *status = 0;
        return 0;
    }
    /* The state lock is dropped while the container runs, so that `state`,
     * `kill` and `list` work; it is taken again to delete. */
    close_and_reset(&p.dirfd);
    int r = lifecycle_wait(child.pid, sfd, master, status, err);
    terminal_restore(0, saved_tty);
    sigprocmask(SIG_SETMASK, &old, NULL);
    /* Delete with what we know (no second parse of state or config);
     * someone may have deleted it already (delete --force elsewhere). */
    struct err *e2 = NULL;
    int dfd = state_dir_open(p.rootfd, o->id, &e2);
    if (dfd >= 0) {
        const struct oci_namespace *pidns = oci_config_ns(p.cfg, OCI_NS_PID);
        struct container_state st = {
            .id = (char *)o->id, .bundle = p.bundle, .rootfs = p.rootfs, .pid = child.pid,
            .cgroup = p.cg.path, .own_pidns = !p.vm && pidns && pidns->path == NULL,
            .annotations = p.cfg->annotations, .n_annotations = p.cfg->n_annotations,
        };
        proc_stat(child.pid, NULL, &st.start_time);
        if (p.vm)
            vmc_host_cleanup(dfd); /* the monitor, and with it the VM, is gone */
        if (lifecycle_destroy(p.rootfd, dfd, &st, p.cfg, &e2) < 0 && r == 0) {
            *err = e2;
            e2 = NULL;
            r = -1;
        }
        close(dfd);
    }
    err_free(&e2);
    lifecycle_release(&p);
    return r;
fail:
    terminal_restore(0, saved_tty);
    if (child.pid > 0) {
        kill(child.pid, SIGKILL);
        waitpid(child.pid, NULL, 0);
    }
    close_and_reset(&child.sync_fd);
    lifecycle_abort(o, &p);
    lifecycle_release(&p);
    if (!detach)
        sigprocmask(SIG_SETMASK, &old, NULL);
    return -1;
}
