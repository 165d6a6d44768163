/* FUSE over io_uring (Linux 6.14+, the fuse module's enable_uring=Y): one
 * queue per possible CPU, each served by a thread pinned to that CPU, so a
 * request is answered on the CPU that made it. Cross-CPU wake-ups are what
 * a FUSE round trip costs most on a virtualized host; /dev/fuse reads keep
 * serving what the ring does not carry (FORGET, INTERRUPT) and everything
 * until every queue has registered. */
#pragma once
#include <stdbool.h>

struct fs_session;

/* Whether this kernel lets a server use FUSE over io_uring now. */
bool fs_uring_available(void);

/* The number of queues (possible CPUs) fs_uring_start will serve. */
unsigned fs_uring_queues(void);

/* Start the queue threads for the initialized session on devfd (any fd of
 * the connection). Each started queue calls ended(ctx) once when it and
 * its SETLKW threads are done with the session (the mount went away, or the
 * kernel refused the ring). Returns how many were started. */
unsigned fs_uring_start(struct fs_session *s, int devfd, void (*ended)(void *), void *ctx);
