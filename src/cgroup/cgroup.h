/* Container cgroups on cgroup v1, hybrid (v1 controllers + a cgroup2 mount)
 * and pure v2 hosts, detected at run time. The runtime creates the cgroup
 * at `create`, the container init joins it before anything else runs, and
 * `delete` removes it. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct err;
struct oci_config;

enum cgroup_mode { CGROUP_V1, CGROUP_HYBRID, CGROUP_V2 };

#define CGROUP_MAX_HIER 16

/* A container's cgroup: one directory per mounted hierarchy. */
struct cgroup {
    enum cgroup_mode mode;
    char *path;                     /* relative to each hierarchy root, no leading / */
    size_t n;                       /* number of hierarchies */
    char *names[CGROUP_MAX_HIER];   /* "memory", "cpu,cpuacct", "unified", ... */
    int dirfds[CGROUP_MAX_HIER];    /* O_DIRECTORY fds of the container's dirs, or -1 */
};

/* Detect the host's cgroup layout. */
int cgroup_detect(enum cgroup_mode *mode, struct err **err);

/* The cgroup path (relative, no leading /) for a container: cgroupsPath as
 * given (systemd "slice:prefix:name" becomes slice/prefix-name.scope), or
 * "<scope>@<id>" by default (scope NULL: "cocoon"), one level under each
 * hierarchy's root: no parent to create and remove with every container. */
char *cgroup_path_for(const char *cgroups_path, const char *id, const char *scope);

/* Create the container's cgroup in every hierarchy and apply
 * linux.resources. On failure nothing is left behind. */
int cgroup_create(const struct oci_config *cfg, const char *path, struct cgroup *cg,
                  struct err **err);

/* The directory fd holding controller `ctrl`: the v2 directory on a pure v2
 * host, else the v1 hierarchy that has it (co-mounted ones included, as
 * "cpu,cpuacct"); -1 if none. */
int cgroup_controller_fd(const struct cgroup *cg, const char *ctrl);

/* Open the directories of an existing container cgroup (for exec). */
int cgroup_open(const char *path, struct cgroup *cg, struct err **err);

/* The fd of the container's directory in the v2 hierarchy (pure v2, or the
 * unified mount of a hybrid host), for clone3(CLONE_INTO_CGROUP); -1 if none. */
int cgroup_v2_fd(const struct cgroup *cg);

/* Move process pid (0: the caller) into every v1 hierarchy of cg, and into
 * the v2 one too unless skip_v2 (the process was cloned into it). A caller
 * moving itself writes "0" to v1 `tasks`: a single-thread move that skips
 * the kernel's global threadgroup lock and its RCU grace period. */
int cgroup_enter(const struct cgroup *cg, pid_t pid, bool skip_v2, struct err **err);

/* Close the fds of cg and free it (the directories stay). */
void cgroup_close(struct cgroup *cg);

/* Remove the container's cgroup directories (after its processes are gone). */
int cgroup_destroy(const char *path, struct err **err);

/* Send sig to every process in the container's cgroup; returns how many. */
int cgroup_kill_all(const char *path, int sig);

/* Write linux.resources into an existing cgroup (create and update). */
int cgroup_apply_resources(const struct oci_config *cfg, struct cgroup *cg, struct err **err);

/* Freeze (pause) or thaw (resume) the cgroup and wait until it is done. */
int cgroup_freeze(const struct cgroup *cg, bool freeze, struct err **err);

/* runc-style statistics (cpu, memory, pids) of the cgroup as JSON. */
char *cgroup_stats_json(const struct cgroup *cg);

/* The pids in the cgroup; *out is a new array. */
int cgroup_pids(const struct cgroup *cg, int **out, size_t *n, struct err **err);

/* linux.resources.devices: v1 allow/deny lists, v2 an eBPF device program;
 * the default devices of every container are allowed after the rules. */
struct json_object;
int cgroup_apply_devices(struct json_object *rules, struct cgroup *cg, struct err **err);
