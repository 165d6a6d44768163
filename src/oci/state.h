/* Container state on disk: one directory per container under the runtime
 * root (default /run/cocoon), state.json written atomically, an exclusive
 * flock(2) on the directory serializing commands on one id. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "oci/config.h"

struct err;

enum container_status {
    STATUS_CREATING, STATUS_CREATED, STATUS_RUNNING, STATUS_PAUSED, STATUS_STOPPED
};

/* What cocoon remembers about a container between commands. */
struct container_state {
    char *id;
    char *bundle;         /* absolute bundle path */
    char *rootfs;         /* absolute rootfs path */
    char *created;        /* RFC 3339 creation time */
    char *backend;        /* "ns" (namespaces) or "vm" */
    pid_t pid;            /* container init as seen from the host */
    uint64_t start_time;  /* its start time, to detect pid reuse */
    bool own_pidns;       /* the container has its own pid namespace */
    char *cgroup;         /* cgroup path relative to the hierarchy roots, or NULL */
    uid_t owner;
    struct oci_kv *annotations;
    size_t n_annotations;
};

/* The file that exists between create and start (a FIFO). */
#define STATE_EXEC_FIFO "exec.fifo"
#define STATE_FILE "state.json"
/* A FIFO the init holds open until exec: `start` waits for its EOF. */
#define STATE_EXEC_WAIT "exec.wait"
/* A VM container created but not yet started (its process waits in the guest). */
#define STATE_VM_CREATED "vm.created"

/* Check that id is a safe directory name ([A-Za-z0-9_.+-], not . or ..). */
int state_check_id(const char *id, struct err **err);

/* Open (creating if needed) the runtime root directory. Returns an fd. */
int state_root_open(const char *root, bool create, struct err **err);

/* Create and lock the directory of a new container; EEXIST -> clear error.
 * Returns the locked directory fd. */
int state_dir_create(int rootfd, const char *id, struct err **err);

/* Open and lock the directory of an existing container. Returns its fd. */
int state_dir_open(int rootfd, const char *id, struct err **err);

/* Let other commands act on the container while this one goes on (an exec
 * relaying a long-running process); the fd stays usable. */
void state_dir_unlock(int dirfd);

/* Remove a container's directory and all it holds. */
int state_dir_remove(int rootfd, const char *id, struct err **err);

/* Write st to state.json in dirfd atomically. */
int state_write(int dirfd, const struct container_state *st, struct err **err);

/* Read state.json from dirfd. */
int state_read(int dirfd, struct container_state **out, struct err **err);

/* Free a state; safe on NULL. */
void state_free(struct container_state *st);

/* Current status: stopped if the init is gone, a zombie, or its pid reused. */
enum container_status state_status(int dirfd, const struct container_state *st);

/* "created", "running", ... */
const char *state_status_name(enum container_status s);

/* The OCI runtime-spec state document (what `cocoon state` prints). */
char *state_to_oci_json(const struct container_state *st, enum container_status s);

/* The current time in RFC 3339 with nanoseconds, UTC. */
char *state_now_rfc3339(void);

/* Whether the container runs in a VM (the VM backend). */
static inline bool state_is_vm(const struct container_state *st)
{
    return st->backend && st->backend[0] == 'v' && st->backend[1] == 'm' && !st->backend[2];
}

static inline void cleanup_statep(struct container_state **s) { state_free(*s); }
#define cleanup_state __attribute__((cleanup(cleanup_statep)))
