/* Frame encoding, checking and buffering of the agent protocol (proto.h),
 * shared by cocoon-init and the host's VM backend. */
#include "agent/proto.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/util.h"

#define AGENT_REPLY_MSG_MAX 4096u

static const char *const msg_names[AGENT_MSG_END] = {
    [AGENT_HELLO] = "HELLO",   [AGENT_CREATE] = "CREATE",     [AGENT_START] = "START",
    [AGENT_EXEC] = "EXEC",     [AGENT_SIGNAL] = "SIGNAL",     [AGENT_RESIZE] = "RESIZE",
    [AGENT_STDIN] = "STDIN",   [AGENT_STDOUT] = "STDOUT",     [AGENT_STDERR] = "STDERR",
    [AGENT_CREDIT] = "CREDIT", [AGENT_EXIT] = "EXIT",         [AGENT_REPLY] = "REPLY",
    [AGENT_SHUTDOWN] = "SHUTDOWN",
};

const char *agent_msg_name(uint32_t type)
{
    return type > 0 && type < AGENT_MSG_END ? msg_names[type] : "?";
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void agent_hdr_encode(const struct agent_hdr *h, uint8_t *out)
{
    put32(out, h->len);
    put16(out + 4, h->type);
    put16(out + 6, h->flags);
    put32(out + 8, h->proc);
    put32(out + 12, h->seq);
}

/* The largest payload a frame of this type may carry. */
static uint32_t max_len(uint16_t type)
{
    switch (type) {
    case AGENT_CREATE:
    case AGENT_EXEC:
        return AGENT_PAYLOAD_MAX;
    case AGENT_STDIN:
    case AGENT_STDOUT:
    case AGENT_STDERR:
        return AGENT_DATA_MAX;
    case AGENT_REPLY:
        return AGENT_REPLY_SIZE + AGENT_REPLY_MSG_MAX;
    case AGENT_HELLO:
        return AGENT_HELLO_SIZE;
    case AGENT_SIGNAL:
        return AGENT_SIGNAL_SIZE;
    case AGENT_RESIZE:
        return AGENT_WINSIZE_SIZE;
    case AGENT_CREDIT:
        return AGENT_CREDIT_SIZE;
    case AGENT_EXIT:
        return AGENT_EXIT_SIZE;
    default:
        return 0;
    }
}

int agent_hdr_decode(const uint8_t *in, struct agent_hdr *h, const char **why)
{
    h->len = get32(in);
    h->type = get16(in + 4);
    h->flags = get16(in + 6);
    h->proc = get32(in + 8);
    h->seq = get32(in + 12);
    if (h->type == 0 || h->type >= AGENT_MSG_END) {
        *why = "unknown message type";
        return -1;
    }
    if (h->flags != 0) {
        *why = "nonzero flags";
        return -1;
    }
    if (h->len > max_len(h->type)) {
        *why = "payload too long for its type";
        return -1;
    }
    return 0;
}

int agent_hello_decode(const uint8_t *p, size_t len, struct agent_hello *out)
{
    if (len != AGENT_HELLO_SIZE)
        return -1;
    out->magic = get32(p);
    out->version = get32(p + 4);
    return out->magic == AGENT_MAGIC ? 0 : -1;
}

int agent_signal_decode(const uint8_t *p, size_t len, struct agent_signal *out)
{
    if (len != AGENT_SIGNAL_SIZE)
        return -1;
    out->signo = get32(p);
    out->all = get32(p + 4);
    return out->signo >= 1 && out->signo <= 64 && out->all <= 1 ? 0 : -1;
}

int agent_winsize_decode(const uint8_t *p, size_t len, struct agent_winsize *out)
{
    if (len != AGENT_WINSIZE_SIZE)
        return -1;
    out->rows = get16(p);
    out->cols = get16(p + 2);
    return 0;
}

int agent_credit_decode(const uint8_t *p, size_t len, struct agent_credit *out)
{
    if (len != AGENT_CREDIT_SIZE)
        return -1;
    out->stream = get32(p);
    out->bytes = get32(p + 4);
    return out->stream <= AGENT_STREAM_STDERR && out->bytes <= AGENT_WINDOW ? 0 : -1;
}

int agent_exit_decode(const uint8_t *p, size_t len, struct agent_exit *out)
{
    if (len != AGENT_EXIT_SIZE)
        return -1;
    out->status = (int32_t)get32(p);
    return out->status >= 0 && out->status <= 255 ? 0 : -1;
}

int agent_reply_decode(const uint8_t *p, size_t len, struct agent_reply *out)
{
    if (len < AGENT_REPLY_SIZE)
        return -1;
    out->error = (int32_t)get32(p);
    out->pid = get32(p + 4);
    return out->error >= 0 && out->error < 4096 ? 0 : -1;
}

void agent_hello_encode(const struct agent_hello *v, uint8_t *out)
{
    put32(out, v->magic);
    put32(out + 4, v->version);
}

void agent_signal_encode(const struct agent_signal *v, uint8_t *out)
{
    put32(out, v->signo);
    put32(out + 4, v->all);
}

void agent_winsize_encode(const struct agent_winsize *v, uint8_t *out)
{
    put16(out, v->rows);
    put16(out + 2, v->cols);
}

void agent_credit_encode(const struct agent_credit *v, uint8_t *out)
{
    put32(out, v->stream);
    put32(out + 4, v->bytes);
}

void agent_exit_encode(const struct agent_exit *v, uint8_t *out)
{
    put32(out, (uint32_t)v->status);
}

void agent_reply_encode(const struct agent_reply *v, uint8_t *out)
{
    put32(out, (uint32_t)v->error);
    put32(out + 4, v->pid);
}

void agent_buf_free(struct agent_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* Make room for n more bytes at the end (moving the content down first). */
static void buf_reserve(struct agent_buf *b, size_t n)
{
    if (b->start > 0 && b->cap - b->end < n) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    if (b->cap - b->end >= n)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->end < n)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void agent_buf_put(struct agent_buf *b, const void *data, size_t len)
{
    if (len == 0)
        return;
    buf_reserve(b, len);
    memcpy(b->data + b->end, data, len);
    b->end += len;
}

void agent_buf_put_frame(struct agent_buf *b, uint16_t type, uint32_t proc, uint32_t seq,
                         const void *payload, size_t len)
{
    struct agent_hdr h = {.len = (uint32_t)len, .type = type, .proc = proc, .seq = seq};
    buf_reserve(b, AGENT_HDR_SIZE + len);
    agent_hdr_encode(&h, b->data + b->end);
    if (len)
        memcpy(b->data + b->end + AGENT_HDR_SIZE, payload, len);
    b->end += AGENT_HDR_SIZE + len;
}

int agent_buf_flush(struct agent_buf *b, int fd)
{
    while (b->end > b->start) {
        ssize_t n = write(fd, b->data + b->start, b->end - b->start);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 1 : -1;
        }
        b->start += (size_t)n;
    }
    b->start = b->end = 0;
    return 0;
}

long agent_buf_fill(struct agent_buf *b, int fd)
{
    buf_reserve(b, 64u << 10);
    ssize_t n;
    do
        n = read(fd, b->data + b->end, b->cap - b->end);
    while (n < 0 && errno == EINTR);
    if (n > 0)
        b->end += (size_t)n;
    return (long)n;
}

int agent_buf_frame(struct agent_buf *b, struct agent_hdr *h, const uint8_t **payload,
                    const char **why)
{
    if (agent_buf_len(b) < AGENT_HDR_SIZE)
        return 0;
    if (agent_hdr_decode(b->data + b->start, h, why) < 0)
        return -1;
    if (agent_buf_len(b) < AGENT_HDR_SIZE + (size_t)h->len) {
        /* Make sure the whole frame will fit, so the next fill can finish it. */
        buf_reserve(b, AGENT_HDR_SIZE + (size_t)h->len - agent_buf_len(b));
        return 0;
    }
    *payload = b->data + b->start + AGENT_HDR_SIZE;
    return 1;
}

void agent_buf_consume(struct agent_buf *b, const struct agent_hdr *h)
{
    b->start += AGENT_HDR_SIZE + (size_t)h->len;
    if (b->start == b->end)
        b->start = b->end = 0;
}

int agent_send(int fd, uint16_t type, uint32_t proc, uint32_t seq, const void *payload,
               size_t len)
{
    uint8_t hdr[AGENT_HDR_SIZE];
    struct agent_hdr h = {.len = (uint32_t)len, .type = type, .proc = proc, .seq = seq};
    agent_hdr_encode(&h, hdr);
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)payload, len}};
    size_t total = sizeof(hdr) + len, done = 0;
    while (done < total) {
        struct iovec v[2];
        int n = 0;
        size_t skip = done;
        for (int i = 0; i < 2; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            v[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
            v[n].iov_len = iov[i].iov_len - skip;
            skip = 0;
            n++;
        }
        ssize_t w = writev(fd, v, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                poll(&p, 1, -1);
                continue;
            }
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}
