/* The OCI lifecycle (create, start, state, kill, delete, run, list) on top of
 * a backend; the CLI calls only these. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct err;

/* The state root when --root is not given. */
#define COCOON_DEFAULT_ROOT "/run/cocoon"

/* Global options shared by every command. */
struct runtime {
    const char *root;       /* state directory root, default /run/cocoon */
    bool vm;                /* --vm or called as cocoon-vm: every container in a VM */
    const char *hypervisor; /* --hypervisor: cocoon (default), qemu or sandbox */
};

struct create_opts {
    const char *id;
    const char *bundle;         /* default "." */
    const char *pid_file;       /* or NULL */
    const char *console_socket; /* or NULL */
    int preserve_fds;
    bool no_pivot;
};

/* One row of `cocoon list`. */
struct container_info {
    char *id;
    pid_t pid;
    const char *status;
    char *bundle;
    char *created;
    char *owner;
};

/* Create a container held before its process runs (`cocoon create`). */
int container_create(const struct runtime *rt, const struct create_opts *o, struct err **err);

/* Release a created container's process (`cocoon start`). */
int container_start(const struct runtime *rt, const char *id, struct err **err);

/* The runtime-spec state JSON of a container; *out is a new string. */
int container_state(const struct runtime *rt, const char *id, char **out, struct err **err);

/* Send sig to the container's init (or to all its processes). */
int container_kill(const struct runtime *rt, const char *id, int sig, bool all,
                   struct err **err);

/* Remove a stopped container (running ones too with force). */
int container_delete(const struct runtime *rt, const char *id, bool force, struct err **err);

/* Create and start; unless detach, wait and return the exit status in
 * *status (128+signal if killed) and delete the container afterwards. */
int container_run(const struct runtime *rt, const struct create_opts *o, bool detach,
                  int *status, struct err **err);

/* All containers under rt->root. */
int container_list(const struct runtime *rt, struct container_info **out, size_t *n,
                   struct err **err);

/* Free what container_list returned. */
void container_list_free(struct container_info *list, size_t n);

/* Options of `cocoon exec`. */
struct exec_opts {
    const char *id;
    const char *process_file;   /* --process: a process.json; else args */
    char **args;                /* NULL-terminated */
    char **env;                 /* --env K=V (added to the container's env) */
    const char *cwd;            /* --cwd */
    const char *user;           /* --user UID[:GID] */
    char **caps;                /* --cap CAP_X (added to all sets) */
    int tty;                    /* --tty: 1, --tty=false: 0, unset: -1 */
    bool detach;
    bool no_new_privs;
    const char *apparmor;       /* --apparmor PROFILE */
    const char *pid_file;
    const char *console_socket;
    int preserve_fds;
};

/* Run another process in a running container; unless detach, wait and
 * return its exit status in *status. */
int container_exec(const struct runtime *rt, const struct exec_opts *o, int *status,
                   struct err **err);

/* Freeze (pause) or thaw (resume) a running container. */
int container_pause(const struct runtime *rt, const char *id, bool pause, struct err **err);

/* The host pids of every process in the container. */
int container_pids(const struct runtime *rt, const char *id, int **pids, size_t *n,
                   struct err **err);

/* Apply a linux.resources JSON object to a running container's cgroup. */
int container_update(const struct runtime *rt, const char *id, const char *resources_json,
                     struct err **err);

/* One runc-style stats event (JSON) of a container. */
int container_stats(const struct runtime *rt, const char *id, char **out, struct err **err);

/* Parse a signal name ("KILL", "SIGKILL", "sigterm") or number; <0 if bad. */
int signal_parse(const char *s);
