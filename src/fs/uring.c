/* A minimal io_uring (uring.h). The kernel's memory ordering contract: the
 * application publishes the SQ tail with a release store after writing the
 * entries, reads the CQ tail with an acquire load, and releases entries by
 * a release store of the CQ head. */
#include "fs/uring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SQE_SIZE 128 /* IORING_SETUP_SQE128 */

static void *map_at(int fd, size_t len, uint64_t off)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, (off_t)off);
    return p == MAP_FAILED ? NULL : p;
}

int uring_init(struct uring *u, unsigned entries)
{
    memset(u, 0, sizeof(*u));
    u->fd = -1;
    unsigned base = IORING_SETUP_SQE128 | IORING_SETUP_R_DISABLED;
    struct io_uring_params p = {
        .flags = base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
    u->fd = (int)syscall(SYS_io_uring_setup, entries, &p);
    if (u->fd < 0 && errno == EINVAL) {
        /* Before Linux 6.1: task work the classic way. */
        p = (struct io_uring_params){.flags = base};
        u->fd = (int)syscall(SYS_io_uring_setup, entries, &p);
    }
    if (u->fd < 0)
        return -errno;
    u->sq_entries = p.sq_entries;
    u->cq_entries = p.cq_entries;
    u->sq_map_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    u->cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    u->sqes_len = (size_t)p.sq_entries * SQE_SIZE;
    u->sq_map = map_at(u->fd, u->sq_map_len, IORING_OFF_SQ_RING);
    u->cq_map = map_at(u->fd, u->cq_map_len, IORING_OFF_CQ_RING);
    u->sqes = map_at(u->fd, u->sqes_len, IORING_OFF_SQES);
    if (u->sq_map == NULL || u->cq_map == NULL || u->sqes == NULL) {
        int e = errno;
        uring_free(u);
        return -e;
    }
    char *sq = u->sq_map, *cq = u->cq_map;
    u->sq_head = (unsigned *)(sq + p.sq_off.head);
    u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    u->sq_array = (unsigned *)(sq + p.sq_off.array);
    u->cq_head = (unsigned *)(cq + p.cq_off.head);
    u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    /* Slot i of the array always names SQE i. */
    for (unsigned i = 0; i < p.sq_entries; i++)
        u->sq_array[i] = i;
    u->sq_local_tail = *u->sq_tail;
    return 0;
}

int uring_enable(struct uring *u)
{
    if (syscall(SYS_io_uring_register, u->fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0)
        return -errno;
    return 0;
}

void uring_free(struct uring *u)
{
    if (u->sq_map)
        munmap(u->sq_map, u->sq_map_len);
    if (u->cq_map)
        munmap(u->cq_map, u->cq_map_len);
    if (u->sqes)
        munmap(u->sqes, u->sqes_len);
    if (u->fd >= 0)
        close(u->fd);
    memset(u, 0, sizeof(*u));
    u->fd = -1;
}

struct io_uring_sqe *uring_get_sqe(struct uring *u)
{
    unsigned head = __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE);
    if (u->sq_local_tail - head >= u->sq_entries)
        return NULL;
    unsigned i = u->sq_local_tail++ & *u->sq_mask;
    struct io_uring_sqe *sqe = (struct io_uring_sqe *)((char *)u->sqes + (size_t)i * SQE_SIZE);
    memset(sqe, 0, SQE_SIZE);
    return sqe;
}

int uring_submit(struct uring *u, bool wait)
{
    __atomic_store_n(u->sq_tail, u->sq_local_tail, __ATOMIC_RELEASE);
    /* Everything the kernel has not taken yet, including what an earlier
     * call left behind (it may take fewer than asked, e.g. with -EBUSY). */
    unsigned n = u->sq_local_tail - __atomic_load_n(u->sq_head, __ATOMIC_ACQUIRE);
    if (n == 0 && !wait)
        return 0;
    long r = syscall(SYS_io_uring_enter, u->fd, n, wait ? 1u : 0u,
                     wait ? IORING_ENTER_GETEVENTS : 0u, NULL, 0);
    return r < 0 ? -errno : (int)r;
}

struct io_uring_cqe *uring_peek_cqe(struct uring *u)
{
    unsigned head = *u->cq_head;
    if (head == __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE))
        return NULL;
    return &u->cqes[head & *u->cq_mask];
}

void uring_cqe_seen(struct uring *u)
{
    __atomic_store_n(u->cq_head, *u->cq_head + 1, __ATOMIC_RELEASE);
}
