/* `cocoon attach`: bring a fat tool set into a slim running container (the
 * Cntr idea). The command runs in the container's namespaces (but mount),
 * cgroup and identity, in a new mount namespace whose `/` is the tool set
 * and where the container's root is at /var/lib/cntr. See docs/attach.md. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

struct err;
struct runtime;

/* Where the container's root appears in the session. */
#define ATTACH_CNTR_DIR "/var/lib/cntr"

/* Options of `cocoon attach`. */
struct attach_opts {
    const char *id;    /* a container id (cocoon's, or podman's / containerd's), or NULL */
    pid_t pid;         /* --pid: any process (a container of another runtime) */
    const char *tools; /* --tools: the tool set's root directory (default "/") */
    const char *user;  /* --user NAME|UID[:GROUP|GID] in the container, or NULL */
    int tty;           /* --tty: 1, --no-tty: 0, unset: -1 (a tty if stdin is one) */
    bool fuse;         /* --fuse: the tools through cocoon's FUSE server, not the mount API */
    char **args;       /* the command; NULL or empty: the user's shell */
};

/* Run the command of o attached to the container; wait for it and return
 * its exit status in *status (128+signal if killed). */
int attach_run(const struct runtime *rt, const struct attach_opts *o, int *status,
               struct err **err);
