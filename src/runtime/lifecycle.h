/* Internals shared by the lifecycle commands (not for the CLI). */
#pragma once
#include <signal.h>
#include "cgroup/cgroup.h"
#include "ns/seccomp.h"
#include "oci/config.h"
#include "oci/state.h"
#include "runtime/container.h"

/* A container being created: its config, paths and state directory. */
struct prepared {
    struct oci_config *cfg;
    char *bundle;
    char *rootfs;
    int rootfd;  /* runtime root */
    int dirfd;   /* locked state directory */
    struct cgroup cg; /* cg.path set once the cgroup exists */
    struct seccomp_prog *seccomp; /* compiled linux.seccomp, or NULL */
    bool vm;                      /* the container runs in a VM (vm/vmc.h) */
};

/* The directory under the state root where compiled seccomp filters are
 * cached (created if needed); -1 if it cannot be had. */
int lifecycle_seccomp_cache(int rootfd);

/* Load and check the bundle, create the locked state directory. */
int lifecycle_prepare(const struct runtime *rt, const struct create_opts *o,
                      struct prepared *p, struct err **err);

/* Undo lifecycle_prepare after a failure: remove the state directory. */
void lifecycle_abort(const struct create_opts *o, struct prepared *p);

/* Free what lifecycle_prepare allocated (the state directory stays). */
void lifecycle_release(struct prepared *p);

/* Write the pid file atomically (as runc: the number, no newline). */
int lifecycle_write_pid_file(const char *path, pid_t pid, struct err **err);

/* Make state for a container whose init is pid. */
int lifecycle_record(const struct create_opts *o, struct prepared *p, pid_t pid,
                     struct err **err);

/* Remove everything the container left: state directory (caller holds lock). */
int lifecycle_destroy(int rootfd, int dirfd, const struct container_state *st,
                      const struct oci_config *cfg, struct err **err);

/* The signals a foreground `run`/`exec` forwards, plus SIGCHLD. */
void lifecycle_forward_mask(sigset_t *mask);

/* Wait for pid (a child; the caller is a subreaper) reading signals from the
 * signalfd sfd: forward them, proxy the pty master <-> stdio if master >= 0.
 * *status gets the exit status (128+signal if killed). */
int lifecycle_wait(pid_t pid, int sfd, int master, int *status, struct err **err);

/* Copy the window size of the terminal on `from` to `to`. */
void lifecycle_copy_winsize(int from, int to);

/* Run the poststart hooks of a container just started (failures warn). */
void lifecycle_poststart(const struct container_state *st);

/* main()'s argv, for re-executing the command. */
extern char **lifecycle_argv;

/* If the container process keeps CAP_SYS_PTRACE, re-execute this command
 * from a sealed memfd copy of cocoon (does not return then); 0 otherwise. */
int lifecycle_protect_binary(const struct oci_process *p, struct err **err);

/* Open, lock and read the state of container `id` (*rootfd gets the state
 * root); returns the locked directory fd. */
int lifecycle_load(const struct runtime *rt, const char *id, int *rootfd,
                   struct container_state **st, struct err **err);
