/* cocoon-init's parts: start-up (a VM's PID 1, or the host sandbox), the
 * container root, the processes, and the loop that serves the host over
 * the agent protocol (proto.h). Not for the host side. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/proto.h"

struct agent_request;
struct err;
struct oci_mount;
struct oci_process;
struct pollfd;

/* A process the host knows by number (0: the container's init). */
struct agent_proc {
    struct agent_proc *next;
    uint32_t id;
    pid_t pid;
    bool terminal;
    bool reaped;             /* exited: status is known */
    int status;              /* 0..255, or 128+signal */
    int start_fd;            /* created init: one byte runs it; else -1 */
    int sync_fd;             /* created init: set-up and exec errors; else -1 */
    int in_fd;               /* stdin pipe (or a dup of the pty master); -1 closed */
    struct agent_buf in_q;   /* stdin not yet written (raw bytes) */
    uint32_t in_uncredited;  /* stdin bytes taken, not yet credited back */
    bool in_end;             /* the host ended stdin: close once in_q is out */
    int out_fd[2];           /* stdout, stderr (pty: the master, -1); -1 after EOF */
    uint32_t out_unacked[2]; /* bytes sent and not yet credited by the host */
    bool out_done[2];        /* end of stream sent (or there is no such stream) */
};

struct agent {
    bool vm;                     /* PID 1 of a VM (else the host sandbox) */
    int listen_fd;               /* vsock listener (one host at a time, the next may come),
                                    or -1: the channel is a given socket or a tty */
    int chan;                    /* the host connection, or -1 */
    bool greeted;                /* HELLO sent on this connection */
    struct agent_buf in, out;    /* frames from and to the host */
    int sig_fd;                  /* signalfd for SIGCHLD */
    int root_fd;                 /* the container's root directory */
    int shared_fd;               /* where the host puts tools for attach, or -1 */
    int volumes_fd;              /* the host's clones of bind mounts' sources, or -1 */
    int pts_fd;                  /* ROOT/dev/pts once the root is set up, or -1 */
    bool root_ready;
    bool created;                /* CREATE succeeded */
    bool init_exited;            /* the container's init is gone: wind down */
    bool shutdown;               /* SHUTDOWN received */
    bool trim_due;               /* work since the last malloc_trim */
    int64_t init_exit_ms;        /* when init exited (CLOCK_MONOTONIC) */
    int64_t settle_ms;           /* all reported: power off at this time */
    struct seccomp_prog *seccomp; /* the container's filter (CREATE), for every process, or NULL */
    struct agent_proc *procs;
    unsigned n_procs;
    struct pollfd *pfds;         /* the poll set, rebuilt every round */
    struct agent_proc **pfd_proc;
    unsigned pfd_cap;
};

/* A zeroed agent with every descriptor -1. */
void agent_init(struct agent *a);

/* In a VM, as PID 1: mount what the guest needs, read cocoon.* from the
 * kernel command line, mount the container root and open the channel. */
int agent_boot_vm(struct agent *a, struct err **err);

/* On a host, as PID 1 of new mount/pid/uts/ipc namespaces: make the mount
 * tree private, pivot into a tmpfs of its own with `root` bound at
 * /run/cocoon/rootfs (and `volumes`, the bind mounts' sources, at
 * /run/cocoon/volumes) and a fresh /proc, and serve fd chan_fd. hostname
 * and volumes may be NULL or empty. */
int agent_boot_host(struct agent *a, int chan_fd, const char *root, const char *hostname,
                    const char *volumes, struct err **err);

/* Kill every process, sync and power the VM off (on a host: exit with
 * status). Returns only if the power-off failed (-1, errno). */
int agent_power_off(const struct agent *a, int status);

/* The device nodes of the container's /dev, bound from the agent's. */
#define AGENT_N_DEV_NODES 6
extern const char *const agent_dev_nodes[AGENT_N_DEV_NODES];

/* Mount proc, sys and a fresh dev (nodes, devpts, shm) in the container
 * root, once; a->pts_fd gets ROOT/dev/pts. */
int agent_root_setup(struct agent *a, struct err **err);

/* config.json's mounts in the container root, in order (mounts.c): binds
 * of entries of the volume share, mount(2) for any other type. */
int agent_mounts_apply(struct agent *a, const struct oci_mount *mounts, size_t n,
                       struct err **err);

/* root.readonly: the container root's own mount becomes read-only (the
 * mounts on it keep their own flags), as a namespace container's. */
int agent_root_readonly(struct agent *a, struct err **err);

/* linux.sysctl, linux.maskedPaths and linux.readonlyPaths of a CREATE
 * request, in the container root (protect.c). A host sandbox may set only
 * the sysctls of its own IPC, UTS and network namespaces. */
int agent_root_protect(struct agent *a, const struct agent_request *rq, struct err **err);

/* Fork the process of p into the container root with its stdio (pipes or a
 * pty) wired to pr, under the container's seccomp filter. hold: it waits, set up, for agent_proc_start (CREATE);
 * else it runs at once (EXEC). Returns once it is set up (hold) or has
 * exec'd; on failure nothing of it is left. attach_tools: the name of a
 * tools directory in the shared directory: the process is an attach
 * session (agent_attach_enter) instead of a chroot into the container. */
int agent_proc_spawn(struct agent *a, struct agent_proc *pr, const struct oci_process *p,
                     bool hold, const char *attach_tools, struct err **err);

/* In a process about to run an attach command: a mount namespace of its
 * own with the tools at tools_fd as `/` and the container's root (root_fd)
 * at /var/lib/cntr, with its /proc, /dev, /sys and /etc files. */
int agent_attach_enter(int root_fd, int tools_fd, struct err **err);

/* An O_PATH fd of the tools directory `name` in the shared directory. */
int agent_attach_tools(const struct agent *a, const char *name, struct err **err);

/* Run a held process (START); errors up to its exec come back in *err. */
int agent_proc_start(struct agent_proc *pr, struct err **err);

/* Serve the host until it is time to power off (0), a connection was
 * dropped for a protocol or I/O error and the next may be served (1, *err
 * says why), or the agent cannot go on (-1, *err). */
int agent_serve(struct agent *a, struct err **err);
