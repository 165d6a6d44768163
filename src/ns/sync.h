/* The parent <-> container-init channel: a SOCK_SEQPACKET socketpair that
 * carries one fixed-size message per send (errors travel back this way). */
#pragma once
#include <stdint.h>
#include <sys/types.h>

struct err;

enum sync_type {
    SYNC_READY = 1, /* init: setup done, waiting for start */
    SYNC_ERROR,     /* init: setup failed; code + msg */
    SYNC_PID,       /* init: the real init is pid (after a late pid-ns fork) */
    SYNC_MAPPED,    /* parent: uid/gid maps written */
    SYNC_START,     /* parent: exec the user process now (run mode) */
    SYNC_HOOKS,     /* init: namespaces ready; run prestart/createRuntime hooks */
    SYNC_HOOKS_DONE, /* parent: those hooks succeeded, go on */
};

struct sync_msg {
    uint32_t type;
    int32_t code;
    int32_t pid;
    char msg[2048];
};

/* Send a message of `type` (with optional pid). */
int sync_send(int fd, enum sync_type type, pid_t pid);

/* Send an error message built from *err (child side). */
void sync_send_error(int fd, struct err *e);

/* Receive one message; returns 0, or -1 with *err (EOF -> "exited during setup"). */
int sync_recv(int fd, struct sync_msg *m, struct err **err);

/* Receive and check the message type; a SYNC_ERROR becomes *err. */
int sync_expect(int fd, enum sync_type type, struct sync_msg *m, struct err **err);
