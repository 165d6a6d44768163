/* The namespace backend: clone3 a container init into new or joined
 * namespaces, set up its root filesystem and process, and hold it until
 * start. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include "oci/config.h"

struct err;
struct cgroup;
struct json_object;
struct seccomp_prog;

struct ns_spawn_opts {
    const struct oci_config *cfg;
    const char *id;
    const char *bundle;   /* absolute */
    const char *rootfs;   /* absolute */
    int fifo_fd;          /* create: exec FIFO the init waits on; -1 in run mode */
    int exec_wait_fd;     /* create: held (close-on-exec) until exec; -1 in run mode */
    int console_fd;       /* connected --console-socket, or -1 */
    int preserve_fds;     /* fds 3 .. 3+n-1 pass into the container */
    const struct cgroup *cg; /* cgroup the init joins before anything else, or NULL */
    const struct seccomp_prog *seccomp; /* compiled linux.seccomp, or NULL */
    bool no_pivot;        /* MS_MOVE + chroot instead of pivot_root */
};

struct ns_child {
    pid_t pid;            /* the container init, host pid */
    int sync_fd;          /* parent end of the sync channel */
};

/* Check the parts of cfg the namespace backend needs before any work. */
int ns_validate(const struct oci_config *cfg, struct err **err);

/* Spawn the container init and wait until it is set up (or failed). On
 * failure nothing is left running. */
int ns_spawn(const struct ns_spawn_opts *o, struct ns_child *out, struct err **err);

/* Run mode: tell a spawned init to exec the user process now. */
int ns_release(struct ns_child *c, struct err **err);

/* Container-init side: the whole setup after clone; never returns. */
__attribute__((noreturn)) void ns_init_main(const struct ns_spawn_opts *o, int sync_fd,
                                            const int *ns_fds, int clone_flags,
                                            bool in_v2_cgroup);

/* Mount setup inside the new mount namespace (mounts, devices). */
int ns_rootfs_setup(const struct ns_spawn_opts *o, bool in_userns, struct err **err);

/* pivot_root into the prepared rootfs, then rootfs propagation. */
int ns_rootfs_pivot(const struct ns_spawn_opts *o, struct err **err);

/* After pivot_root: masked and read-only paths, read-only root, sysctls. */
int ns_rootfs_finish(const struct ns_spawn_opts *o, struct err **err);

/* Create the default and configured device nodes under rootfd/dev. */
int ns_devices_setup(const struct oci_config *cfg, int rootfd, bool bind_from_host,
                     struct err **err);

/* Create a pty inside the container, send its master over console_fd, and
 * make the slave the controlling terminal and stdio. */
int ns_terminal_setup(const struct oci_process *proc, int console_fd, struct err **err);

/* Find the program of args[0] in the container's PATH; returns a new path. */
int ns_find_executable(const char *arg0, char *const *env, char **out, struct err **err);

/* Apply process credentials and attributes (rlimits, user, umask, cwd...). */
int ns_process_setup(const struct oci_process *p, struct err **err);

/* Process setup, then the seccomp filter at the right moment, and the
 * program looked up: everything between namespaces and exec. */
int ns_secure_and_find(const struct oci_process *p, const struct seccomp_prog *seccomp,
                       const char *state_json, char **exe, struct err **err);

/* Exec the prepared program: reset the signal mask and dispositions, keep
 * only stdio and preserve_fds descriptors. Returns only on failure. */
void ns_exec(const char *exe, const struct oci_process *p, int preserve_fds);
