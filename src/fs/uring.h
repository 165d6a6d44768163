/* A minimal io_uring (raw system calls, no liburing): one ring per thread,
 * 128-byte SQEs, for the FUSE-over-io_uring transport (dev_uring.c).
 *
 * A ring is made disabled and single-issuer with deferred task work
 * (IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN) where the kernel has them:
 * its completions are then posted only when its one thread asks for
 * events, instead of interrupting that thread with task work. The thread
 * that will submit enables it with uring_enable. */
#pragma once
#include <linux/io_uring.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct uring {
    int fd;
    unsigned sq_entries, cq_entries;
    /* Submission ring. */
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    struct io_uring_sqe *sqes; /* 128-byte entries: index with uring_sqe */
    unsigned sq_local_tail;    /* SQEs filled but not yet published */
    /* Completion ring. */
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_cqe *cqes;
    void *sq_map, *cq_map;
    size_t sq_map_len, cq_map_len, sqes_len;
};

/* Set up a ring of `entries` 128-byte SQEs, disabled; 0, or -errno. */
int uring_init(struct uring *u, unsigned entries);

/* Enable the ring; the calling thread becomes its only submitter. 0, or
 * -errno. */
int uring_enable(struct uring *u);

/* Unmap and close; safe on a ring whose init failed. */
void uring_free(struct uring *u);

/* A zeroed SQE to fill, or NULL when the submission ring is full. */
struct io_uring_sqe *uring_get_sqe(struct uring *u);

/* Publish the filled SQEs and submit them; with wait, also wait for at
 * least one completion. Returns >= 0, or -errno (-EINTR included). */
int uring_submit(struct uring *u, bool wait);

/* The next completion, or NULL; uring_cqe_seen releases it. */
struct io_uring_cqe *uring_peek_cqe(struct uring *u);
void uring_cqe_seen(struct uring *u);
