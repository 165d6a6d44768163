/* FUSE over io_uring (dev_uring.h). The kernel's ABI (Linux 6.14+,
 * Documentation/filesystems/fuse-io-uring.rst):
 *
 * - Each ring entry is two buffers, a 288-byte header (the request's
 *   struct fuse_in_header, its first argument, and commit_id/payload_sz)
 *   and a payload of at least the connection's largest READ/WRITE.
 * - REGISTER hands an entry to queue `qid`; the command completes when a
 *   request is in it. COMMIT_AND_FETCH puts the reply (struct
 *   fuse_out_header in the header, the reply's arguments in the payload)
 *   and waits for the next request in one go.
 * - The ring serves requests once every possible CPU's queue has an entry;
 *   until then, and always for FORGET and INTERRUPT, /dev/fuse does.
 *
 * The request is reassembled into one buffer (header, first argument,
 * payload) for the protocol core; the kernel is trusted, but its lengths
 * are still checked before use. SETLKW may wait for long: it runs on a
 * thread of its own and its reply is committed by the queue's thread when
 * an eventfd in the ring says so. */
#include "fs/dev_uring.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "fs/fs_internal.h"
#include "fs/uring.h"

#define DEPTH 4                  /* entries per queue */
#define POLL_TAG UINT64_MAX      /* user_data of the eventfd poll */
#define URING_CMD_REGISTER 1     /* enum fuse_uring_cmd */
#define URING_CMD_COMMIT_AND_FETCH 2
#define OP_IN_MAX 128            /* FUSE_URING_OP_IN_OUT_SZ */
#define PAGE 4096u

/* The kernel's struct fuse_uring_req_header (uapi 7.42). */
struct ring_header {
    char in_out[128];
    char op_in[OP_IN_MAX];
    struct {
        uint64_t flags, commit_id;
        uint32_t payload_sz, padding;
        uint64_t reserved;
    } ent;
};
_Static_assert(sizeof(struct ring_header) == 288, "fuse_uring_req_header");

/* struct fuse_uring_cmd_req, in the SQE's command area. */
struct ring_cmd {
    uint64_t flags, commit_id;
    uint16_t qid;
    uint8_t padding[6];
};

struct entry {
    struct ring_header *hdr;
    char *payload;
    struct iovec iov[2];
};

struct queue {
    struct fs_session *s;
    int devfd, efd;
    unsigned qid, live;
    size_t payload_len, in_size;
    char *in; /* the reassembled request */
    struct uring ring;
    struct entry ent[DEPTH];
    pthread_mutex_t lock;
    unsigned done[DEPTH], n_done; /* SETLKW replies ready to commit */
    unsigned refs;                /* the queue thread and SETLKW threads */
    void (*ended)(void *);
    void *ctx;
};

bool fs_uring_available(void)
{
    char c = 'N';
    int fd = open("/sys/module/fuse/parameters/enable_uring", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &c, 1) != 1)
            c = 'N';
        close(fd);
    }
    return c == 'Y';
}

unsigned fs_uring_queues(void)
{
    /* "0-3" or "0,2-5": the kernel's qids go up to the last possible CPU. */
    char buf[256] = "";
    int fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end = buf + strcspn(buf, "\n");
    while (end > buf && (end[-1] < '0' || end[-1] > '9'))
        end--;
    char *start = end;
    while (start > buf && start[-1] >= '0' && start[-1] <= '9')
        start--;
    unsigned long last = strtoul(start, NULL, 10);
    return start < end && last < 4096 ? (unsigned)last + 1 : 0;
}

static void queue_put(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    bool last = --q->refs == 0;
    pthread_mutex_unlock(&q->lock);
    if (!last)
        return;
    /* Only now: a SETLKW thread still uses the session. */
    if (q->ended)
        q->ended(q->ctx);
    uring_free(&q->ring);
    for (unsigned i = 0; i < DEPTH; i++) {
        if (q->ent[i].payload)
            munmap(q->ent[i].payload, q->payload_len);
        free(q->ent[i].hdr);
    }
    if (q->efd >= 0)
        close(q->efd);
    free(q->in);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

/* Queue a REGISTER or COMMIT_AND_FETCH of entry i. */
static void prep_cmd(struct queue *q, unsigned i, uint32_t op)
{
    struct io_uring_sqe *sqe = uring_get_sqe(&q->ring);
    if (sqe == NULL)
        return; /* cannot happen: one command per entry, the ring has room for all */
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = q->devfd;
    sqe->cmd_op = op;
    sqe->user_data = i;
    if (op == URING_CMD_REGISTER) {
        sqe->addr = (uint64_t)(uintptr_t)q->ent[i].iov;
        sqe->len = 2;
    }
    struct ring_cmd c = {.commit_id = q->ent[i].hdr->ent.commit_id, .qid = (uint16_t)q->qid};
    memcpy(sqe->cmd, &c, sizeof(c));
}

static void prep_poll(struct queue *q)
{
    struct io_uring_sqe *sqe = uring_get_sqe(&q->ring);
    if (sqe == NULL)
        return;
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = q->efd;
    sqe->poll32_events = POLLIN;
    sqe->user_data = POLL_TAG;
}

/* Finish entry i's reply of n bytes (header and arguments, as the core
 * wrote them into the entry's buffers), or a bare EIO if there is none. */
static void put_reply(struct queue *q, unsigned i, uint64_t unique, ssize_t n)
{
    struct entry *e = &q->ent[i];
    if (n < (ssize_t)sizeof(struct fuse_out_header)) {
        struct fuse_out_header oh = {.len = sizeof(oh), .error = -EIO, .unique = unique};
        memcpy(e->hdr->in_out, &oh, sizeof(oh));
        n = sizeof(oh);
    }
    e->hdr->ent.payload_sz = (uint32_t)((size_t)n - sizeof(struct fuse_out_header));
}

/* Put the reply and commit it (the next request comes with it). */
static void commit(struct queue *q, unsigned i, uint64_t unique, ssize_t n)
{
    put_reply(q, i, unique, n);
    prep_cmd(q, i, URING_CMD_COMMIT_AND_FETCH);
}

/* Run a reassembled request of len bytes through the core into entry i. */
static ssize_t handle(struct queue *q, unsigned i, const void *in, size_t len)
{
    struct entry *e = &q->ent[i];
    struct iovec out[2] = {{e->hdr->in_out, sizeof(struct fuse_out_header)},
                           {e->payload, q->payload_len}};
    return fs_session_handle(q->s, in, len, out, 2);
}

struct slow {
    struct queue *q;
    unsigned i;
    size_t len;
    uint64_t unique;
    char req[];
};

/* A SETLKW on its own thread; the queue thread commits its reply. */
static void *slow_main(void *arg)
{
    struct slow *w = arg;
    struct queue *q = w->q;
    put_reply(q, w->i, w->unique, handle(q, w->i, w->req, w->len));
    pthread_mutex_lock(&q->lock);
    q->done[q->n_done++] = w->i;
    pthread_mutex_unlock(&q->lock);
    uint64_t one = 1;
    if (write(q->efd, &one, sizeof(one)) < 0) {
        /* an eventfd cannot fail to count one */
    }
    free(w);
    queue_put(q);
    return NULL;
}

static bool go_slow(struct queue *q, unsigned i, uint64_t unique)
{
    const struct fuse_in_header *h = (const void *)q->in;
    struct slow *w = malloc(sizeof(*w) + h->len);
    if (w == NULL)
        return false;
    *w = (struct slow){.q = q, .i = i, .len = h->len, .unique = unique};
    memcpy(w->req, q->in, h->len);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&q->lock);
    q->refs++;
    pthread_mutex_unlock(&q->lock);
    pthread_t t;
    int r = pthread_create(&t, &a, slow_main, w);
    pthread_attr_destroy(&a);
    if (r != 0) {
        pthread_mutex_lock(&q->lock);
        q->refs--;
        pthread_mutex_unlock(&q->lock);
        free(w);
        return false;
    }
    return true;
}

/* Entry i holds a request: reassemble it, serve it, commit the reply. */
static void serve_entry(struct queue *q, unsigned i)
{
    struct entry *e = &q->ent[i];
    struct fuse_in_header h;
    memcpy(&h, e->hdr->in_out, sizeof(h));
    size_t psz = e->hdr->ent.payload_sz;
    if (h.len < sizeof(h) || h.len > q->in_size || psz > q->payload_len ||
        h.len - sizeof(h) < psz || h.len - sizeof(h) - psz > OP_IN_MAX) {
        log_debug("fs: io_uring request %u of %u bytes (payload %zu) is malformed", h.opcode,
                  h.len, psz);
        commit(q, i, h.unique, 0);
        return;
    }
    size_t a0 = h.len - sizeof(h) - psz;
    memcpy(q->in, &h, sizeof(h));
    memcpy(q->in + sizeof(h), e->hdr->op_in, a0);
    memcpy(q->in + sizeof(h) + a0, e->payload, psz);
    if (h.opcode == FUSE_SETLKW && go_slow(q, i, h.unique))
        return;
    commit(q, i, h.unique, handle(q, i, q->in, h.len));
}

/* Commit the replies SETLKW threads finished. */
static void commit_done(struct queue *q)
{
    uint64_t v;
    if (read(q->efd, &v, sizeof(v)) < 0) {
        /* nothing counted: a spurious wake-up */
    }
    pthread_mutex_lock(&q->lock);
    unsigned idx[DEPTH], n = q->n_done;
    memcpy(idx, q->done, n * sizeof(idx[0]));
    q->n_done = 0;
    pthread_mutex_unlock(&q->lock);
    for (unsigned k = 0; k < n; k++)
        prep_cmd(q, idx[k], URING_CMD_COMMIT_AND_FETCH);
}

static void *queue_main(void *arg)
{
    struct queue *q = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(q->qid, &set);
    sched_setaffinity(0, sizeof(set), &set); /* an offline CPU: serve from anywhere */
    char name[16];
    snprintf(name, sizeof(name), "fs-uring-%u", q->qid % 1000);
    prctl(PR_SET_NAME, name);
    /* This thread is the ring's only submitter from here on. */
    int r0 = uring_enable(&q->ring);
    if (r0 < 0) {
        log_debug("fs: io_uring queue %u: enable: %s", q->qid, strerror(-r0));
        queue_put(q);
        return NULL;
    }
    for (unsigned i = 0; i < DEPTH; i++)
        prep_cmd(q, i, URING_CMD_REGISTER);
    prep_poll(q);
    bool registered[DEPTH] = {false};
    q->live = DEPTH;
    while (q->live > 0) {
        int r = uring_submit(&q->ring, true);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            log_debug("fs: io_uring queue %u: %s", q->qid, strerror(-r));
            break;
        }
        struct io_uring_cqe *c;
        while ((c = uring_peek_cqe(&q->ring)) != NULL) {
            uint64_t tag = c->user_data;
            int res = c->res;
            uring_cqe_seen(&q->ring);
            if (tag == POLL_TAG) {
                commit_done(q);
                prep_poll(q);
            } else if (tag >= DEPTH) {
                continue;
            } else if (res == -EAGAIN || res == -EINTR) {
                /* REGISTER before the INIT reply was taken: again. */
                prep_cmd(q, (unsigned)tag,
                         registered[tag] ? URING_CMD_COMMIT_AND_FETCH : URING_CMD_REGISTER);
            } else if (res < 0) {
                /* -ENOTCONN: the mount is gone; else the kernel refused the ring. */
                if (res != -ENOTCONN && res != -ECONNABORTED)
                    log_debug("fs: io_uring queue %u entry %u: %s", q->qid, (unsigned)tag,
                              strerror(-res));
                q->live--;
            } else {
                registered[tag] = true;
                serve_entry(q, (unsigned)tag);
            }
        }
    }
    queue_put(q);
    return NULL;
}

static struct queue *queue_new(struct fs_session *s, int devfd, unsigned qid)
{
    struct queue *q = xcalloc(1, sizeof(*q));
    q->s = s;
    q->devfd = devfd;
    q->qid = qid;
    q->refs = 1;
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&q->lock, NULL);
    /* The kernel wants room for the largest READ or WRITE. */
    size_t io = s->max_write > s->max_read ? s->max_write : s->max_read;
    q->payload_len = (io > 8192 ? io : 8192) + PAGE;
    q->in_size = sizeof(struct fuse_in_header) + OP_IN_MAX + q->payload_len;
    q->in = malloc(q->in_size);
    bool ok = q->efd >= 0 && q->in != NULL && uring_init(&q->ring, DEPTH + 2) == 0;
    for (unsigned i = 0; ok && i < DEPTH; i++) {
        struct entry *e = &q->ent[i];
        e->hdr = calloc(1, sizeof(*e->hdr));
        /* Mapped, not allocated: pages a request never touched cost nothing. */
        void *p = mmap(NULL, q->payload_len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        e->payload = p == MAP_FAILED ? NULL : p;
        ok = e->hdr != NULL && e->payload != NULL;
        e->iov[0] = (struct iovec){e->hdr, sizeof(*e->hdr)};
        e->iov[1] = (struct iovec){e->payload, q->payload_len};
    }
    if (!ok) {
        queue_put(q);
        return NULL;
    }
    return q;
}

unsigned fs_uring_start(struct fs_session *s, int devfd, void (*ended)(void *), void *ctx)
{
    unsigned n = fs_uring_queues(), started = 0;
    for (unsigned qid = 0; qid < n; qid++) {
        struct queue *q = queue_new(s, devfd, qid);
        if (q == NULL)
            break;
        q->ended = ended;
        q->ctx = ctx;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        int r = pthread_create(&t, &a, queue_main, q);
        pthread_attr_destroy(&a);
        if (r != 0) {
            q->ended = NULL; /* never started: not counted */
            queue_put(q);
            break;
        }
        started++;
    }
    return started;
}
