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
    int fuse_dev;        /* --fuse: the /dev/fuse fd to mount the tools with, else -1 */
    int fuse_ready;      /* --fuse: a byte written here once mounted starts the server */
};

/* Find the target (a container id: cocoon's own, else one of podman or
 * containerd; or --pid), check it runs and that we may attach, and read
 * what is to be copied. */
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

/* True if any cgroup of cg is frozen (v1 freezer.state, v2 cgroup.events). */
bool attach_cgroups_frozen(const struct attach_cgroups *cg);

/* Where a container of another runtime or engine keeps its state. */
enum attach_engine_fmt {
    ENGINE_RUNC,   /* runc's state.json (podman, containerd's runc shim) */
    ENGINE_CRUN,   /* crun's status */
    ENGINE_COCOON, /* cocoon's own state directory (cocoon as their runtime) */
};

struct attach_engine_hit {
    char *id;      /* the container's full id (a unique prefix may be given) */
    char *root;    /* the runtime's state root (for ENGINE_COCOON: a cocoon --root) */
    char *dir;     /* the container's state directory under it */
    enum attach_engine_fmt fmt;
};

/* Look for container `id` (or a unique prefix of an engine's hex id) in
 * the state roots of the OCI runtimes podman and containerd drive: runc,
 * crun and cocoon itself (`own_root`, already searched, is skipped for
 * exact ids). Returns 1 and fills *h, 0 if nowhere (*where_looked gets the
 * list of places, a new string), or <0 with *err (an ambiguous id). */
int attach_engine_find(const char *own_root, const char *id, struct attach_engine_hit *h,
                       char **where_looked, struct err **err);

/* The init of a runc or crun container: its pid and start time (clock
 * ticks, /proc/PID/stat field 22); *created if it waits for `start`. */
int attach_engine_read(const struct attach_engine_hit *h, pid_t *pid, uint64_t *start_time,
                       bool *created, struct err **err);

/* Free what attach_engine_find allocated. */
void attach_engine_hit_free(struct attach_engine_hit *h);

/* The two trees the session's root is built from. */
struct attach_trees {
    int tools;  /* detached recursive clone of the tools directory (--fuse: the host's) */
    int ctree;  /* detached recursive clone of the container's root (--fuse: the root of
                 * our private copy of its mount namespace) */
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

/* Session child, --fuse: enter a private copy of the container's mount
 * namespace (a slave of it) rooted at the container's root; *proc gets the
 * host's /proc (mount(2) names fds through it). */
int attach_fuse_grab(const struct attach_plan *p, struct attach_trees *tr, int *proc,
                     struct err **err);

/* Session child, --fuse: mount the tools from the FUSE server on a
 * directory of that copy, make mount points in it, pivot_root into it with
 * the container's root going to /var/lib/cntr, then show the container's
 * /proc, /dev, /sys and /etc files; plain mount(2) only, no mount API. */
int attach_fuse_build(const struct attach_plan *p, const struct attach_trees *tr, int proc,
                      struct err **err);

/* The root being built and how mounts are made in it: with the mount API
 * (fsmount, open_tree, move_mount), or, for --fuse, with mount(2) naming
 * fds as /proc/self/fd/N through the host's /proc. */
struct attach_newroot {
    int root;          /* the topmost mount at the new root */
    int proc;          /* -1: the mount API; else the host's /proc (mount(2)) */
    int stage_parent;  /* mount(2): the new root is mounted on `stage` in this */
    const char *stage; /*   directory, where a lookup finds its topmost mount */
    dev_t shadows[8];  /* the shadow tmpfs made so far: missing mount points */
    unsigned n_shadows; /*  under one of them are made in it, not in another */
};

/* Mount a new filesystem `type` with options `opts` ("key=value", NULL-
 * terminated) and MS_RDONLY/NOSUID/NODEV/NOEXEC `flags` on the directory
 * dst (at `dst_path` of the new root). *newfd (if not NULL) gets an fd of
 * the new mount's root. */
int attach_mount_new(const struct attach_newroot *nr, const char *type, const char *const *opts,
                     unsigned long flags, int dst, const char *dst_path, int *newfd,
                     struct err **err);

/* Bind mount src on dst (recursively with rec); `what` names it in errors. */
int attach_mount_bind(const struct attach_newroot *nr, int src, int dst, bool rec,
                      const char *what, struct err **err);

/* An O_PATH fd of mount point `path` (absolute, no `..`) in the new root:
 * resolved in the tools, or, if missing, made in a tmpfs over its deepest
 * existing ancestor that holds binds of that directory's entries (the tools
 * directory is never written to). */
int attach_mountpoint(struct attach_newroot *nr, const char *path, bool dir, struct err **err);

/* What of the container is shown over the tools: its /proc, /dev, /sys and
 * a few /etc files; src resolved in the container's tree (-1: it has none),
 * dst the mount point in the new root (-1: not shown). */
#define ATTACH_N_SHOWN 8
struct attach_shown {
    int src[ATTACH_N_SHOWN];
    int dst[ATTACH_N_SHOWN];
};

/* Resolve the container's paths in its tree at ctree (symlink-safe). */
void attach_shown_resolve(int ctree, struct attach_shown *s);

/* Make the mount points in the new root (all of them before anything is
 * mounted on them: the --fuse path pivots in between). */
int attach_shown_mountpoints(struct attach_newroot *nr, struct attach_shown *s,
                             struct err **err);

/* Mount the container's paths on their mount points; a container without
 * a procfs at /proc gets a new one of its pid namespace (this process is in
 * it), one without /dev or /sys an empty read-only tmpfs. */
int attach_shown_mount(const struct attach_newroot *nr, const struct attach_shown *s,
                       struct err **err);

/* Close the fds of s. */
void attach_shown_close(struct attach_shown *s);

/* The --fuse server, host side: a process of cocoon's in the host's
 * namespaces serving the tools directory over /dev/fuse. */
struct attach_fuse {
    int pidfd;   /* the server process, or -1 */
    pid_t pid;
    int dev;     /* /dev/fuse, for the session child to mount (-1 once handed over) */
    int ready;   /* write end: the session child writes a byte once it mounted */
    int errfd;   /* read end: the server's error message, if it fails */
};

/* Open /dev/fuse and start the server on the tools directory (it waits for
 * the mount before it serves). f is reset first. */
int attach_fuse_start(int toolsfd, const char *tools_path, struct attach_fuse *f,
                      struct err **err);

/* Close the parent's copies of what the session child took (dev, ready). */
void attach_fuse_handed(struct attach_fuse *f);

/* Kill the server (SIGKILL: it holds the only /dev/fuse fd, so the
 * connection is aborted) and reap it. If err and *err are set (the session
 * failed), the server's own error, if any, is added to *err. Safe on a
 * reset f. */
void attach_fuse_stop(struct attach_fuse *f, struct err **err);

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
