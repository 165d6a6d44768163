/* Internals of attach shared by its files (not for the CLI). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "attach/attach.h"

struct err;
struct seccomp_prog;

/* The cgroup directories of the target, one per mounted hierarchy. */
#define ATTACH_MAX_CGROUPS 16
struct attach_cgroups {
    int v1[ATTACH_MAX_CGROUPS]; /* O_DIRECTORY fds of v1 cgroups (write "0" to tasks) */
    size_t n_v1;
    int v2; /* the v2 cgroup dir (clone3 CLONE_INTO_CGROUP), or -1 */
};

/* What is copied from the target process, read from /proc/PID on the host. */
struct attach_identity {
    uid_t uid;          /* effective uid, as the container sees it */
    gid_t gid;          /* effective gid, as the container sees it */
    uid_t host_uid;     /* the same as the host sees it */
    gid_t host_gid;
    gid_t *groups;      /* supplementary groups, container view */
    size_t n_groups;
    uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
    bool no_new_privs;
    int seccomp_mode;   /* 0 none, 1 strict, 2 filter */
    mode_t umask;
    bool has_umask;
    char **env;         /* NULL-terminated */
    struct rlimit rlimits[RLIM_NLIMITS];
    bool has_rlimit[RLIM_NLIMITS];
    char *lsm;          /* "apparmor" or "selinux" when the target is confined */
    char *lsm_label;    /* its profile or context */
};

/* The process attached to, held by a pidfd and /proc directory fds. */
struct attach_target {
    pid_t pid;
    char *what;          /* "container `x`" or "process 123", for messages */
    int pidfd;
    int procfd;          /* O_DIRECTORY /proc/PID */
    int rootfd;          /* O_PATH of /proc/PID/root: the container's root */
    int join_ns;         /* CLONE_NEW* flags of its namespaces that differ from ours */
    struct attach_identity id;
    struct attach_cgroups cg;
    struct seccomp_prog *seccomp; /* a cocoon container's filter, or NULL */
    int lock_dirfd;      /* a cocoon container's locked state directory, or -1 */
};

/* Everything the session child needs (built by the parent before clone). */
struct attach_plan {
    const struct attach_opts *o;
    const struct attach_target *t;
    int toolsfd;         /* O_PATH of the tools directory (host mount namespace) */
    const char *tools_path; /* its path, for messages */
    int sync_fd;         /* child end of the error channel */
    int tty_slave;       /* the pty's slave for the command, or -1 */
    const char *caller_shell; /* $SHELL of the caller, or NULL */
};

/* Find the target (a cocoon container id or --pid), check it runs and that
 * we may attach, and read what is to be copied. */
int attach_target_open(const struct runtime *rt, const struct attach_opts *o,
                       struct attach_target *t, struct err **err);

/* Close and free what attach_target_open made; safe on a zeroed target. */
void attach_target_close(struct attach_target *t);

/* Read uid/gid/groups (mapped into the target's user namespace), caps,
 * no_new_privs, seccomp mode, umask (/proc/PID/status), environment,
 * rlimits and LSM label of the target through its /proc dir fd. */
int attach_identity_read(int procfd, pid_t pid, struct attach_identity *id, struct err **err);

/* Free the identity's allocations. */
void attach_identity_free(struct attach_identity *id);

/* In the session child, after it joined the user namespace: groups, gid,
 * uid, bounding/effective/permitted/inheritable/ambient capabilities,
 * umask, rlimits, no_new_privs and seccomp (when known) of the target. */
int attach_identity_apply(const struct attach_identity *id, const struct seccomp_prog *seccomp,
                          struct err **err);

/* The target's cgroup directories in every hierarchy mounted on the host
 * (from /proc/PID/cgroup and our mountinfo). */
int attach_cgroups_find(int procfd, struct attach_cgroups *cg, struct err **err);

/* Move the calling (single-threaded) process into the v1 cgroups of cg. */
int attach_cgroups_enter_v1(const struct attach_cgroups *cg, struct err **err);

/* Close the directories of cg. */
void attach_cgroups_close(struct attach_cgroups *cg);

/* The two trees the session's root is built from. */
struct attach_trees {
    int tools;  /* detached recursive clone of the tools directory */
    int ctree;  /* detached recursive clone of the container's root */
    char *cwd;  /* the target's working directory as it sees it, or NULL */
};

/* Session child, in the host's mount namespace: clone the tools and (from
 * inside the container's mount namespace) the container's root, as slave
 * trees that never propagate back. */
int attach_rootfs_grab(const struct attach_plan *p, struct attach_trees *tr, struct err **err);

/* Session child: in a new mount namespace, make the tools `/`, mount the
 * container's root at /var/lib/cntr and its /proc, /dev, /sys and /etc
 * files over the tools' ones, and pivot_root into it. */
int attach_rootfs_build(const struct attach_trees *tr, struct err **err);

/* Close the trees' fds. */
void attach_trees_close(struct attach_trees *tr);

/* --user in the container: NAME or UID, optionally :GROUP or :GID, names
 * looked up in the container's /etc/passwd and /etc/group (resolved inside
 * its root at rootfd). Sets uid and gid (the user's primary group, else 0
 * for root and 65534 for others). */
int attach_user_parse(int rootfd, const char *spec, uid_t *uid, gid_t *gid, struct err **err);

/* The shell to run: uid's login shell in the passwd file of the tree at
 * rootfd if it exists there, else fallback ($SHELL) if it exists there,
 * else /bin/sh. A new string. */
char *attach_user_shell(int rootfd, uid_t uid, const char *fallback);

/* The session child: never returns; errors go over p->sync_fd. */
__attribute__((noreturn)) void attach_child_main(const struct attach_plan *p);
