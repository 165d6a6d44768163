/* libFuzzer harness: the agent protocol as cocoon-init and the VM backend
 * read it. The input's first byte sets a chunk size; the rest is a byte
 * stream from the other side, fed through a pipe in chunks into an
 * agent_buf (fill, frame, consume), each frame's payload through its
 * decoder, and CREATE/EXEC payloads through the request parser. The whole
 * input is also parsed as a request. Besides memory errors it checks what a
 * successful decode promises. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/proto.h"
#include "agent/request.h"
#include "common/err.h"
#include "ns/seccomp.h"
#include "oci/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"

static void check_request(const uint8_t *p, size_t len, bool create)
{
    struct agent_request rq;
    struct err *err = NULL;
    if (agent_request_parse(p, len, create, &rq, &err) == 0) {
        CHECK(err == NULL);
        CHECK(rq.process != NULL);
        CHECK(rq.process->args != NULL && rq.process->args[0] != NULL &&
              rq.process->args[0][0] != '\0');
        CHECK(rq.process->env != NULL && rq.process->cwd != NULL);
        CHECK(create || rq.hostname == NULL);
        if (rq.hostname) {
            size_t n = strlen(rq.hostname);
            CHECK(n >= 1 && n <= 64 && strchr(rq.hostname, '/') == NULL);
        }
        CHECK(create || (rq.masked_paths == NULL && rq.readonly_paths == NULL &&
                         rq.n_sysctl == 0 && rq.seccomp == NULL));
        for (int ro = 0; ro < 2; ro++)
            for (char **q = ro ? rq.readonly_paths : rq.masked_paths; q && *q; q++)
                CHECK((*q)[0] == '/' && strlen(*q) < PATH_MAX);
        for (size_t i = 0; i < rq.n_sysctl; i++)
            CHECK(rq.sysctl[i].key[0] != '\0' && rq.sysctl[i].value != NULL);
        if (rq.seccomp) {
            CHECK(rq.seccomp->n >= 1 && rq.seccomp->n <= BPF_MAXINSNS);
            CHECK((rq.seccomp->flags & ~AGENT_SECCOMP_FLAGS) == 0);
            CHECK(rq.seccomp->listener_path == NULL);
        }
        agent_request_free(&rq);
        CHECK(rq.process == NULL && rq.hostname == NULL && rq.seccomp == NULL);
    } else {
        CHECK(err != NULL && err->msg != NULL);
        CHECK(err->code != 0);
        CHECK(rq.process == NULL && rq.hostname == NULL);
        err_free(&err);
    }
}

/* A fixed payload: if it decodes, it encodes back to the same bytes. */
#define ROUND_TRIP(kind, KIND, p, len)                          \
    do {                                                        \
        struct agent_##kind rt_val;                             \
        if (agent_##kind##_decode(p, len, &rt_val) == 0) {      \
            uint8_t rt_buf[AGENT_##KIND##_SIZE];                \
            CHECK(len == AGENT_##KIND##_SIZE);                  \
            agent_##kind##_encode(&rt_val, rt_buf);             \
            CHECK(memcmp(rt_buf, p, AGENT_##KIND##_SIZE) == 0); \
        }                                                       \
    } while (0)

static void check_frame(const struct agent_hdr *h, const uint8_t *raw, const uint8_t *p)
{
    CHECK(h->type >= AGENT_HELLO && h->type < AGENT_MSG_END);
    CHECK(h->flags == 0);
    CHECK(h->len <= AGENT_PAYLOAD_MAX);
    CHECK(strcmp(agent_msg_name(h->type), "?") != 0);
    uint8_t again[AGENT_HDR_SIZE];
    agent_hdr_encode(h, again);
    CHECK(memcmp(again, raw, AGENT_HDR_SIZE) == 0);
    switch (h->type) {
    case AGENT_HELLO:
        ROUND_TRIP(hello, HELLO, p, h->len);
        break;
    case AGENT_SIGNAL: {
        ROUND_TRIP(signal, SIGNAL, p, h->len);
        struct agent_signal s;
        if (agent_signal_decode(p, h->len, &s) == 0)
            CHECK(s.signo >= 1 && s.signo <= 64 && s.all <= 1);
        break;
    }
    case AGENT_RESIZE:
        ROUND_TRIP(winsize, WINSIZE, p, h->len);
        break;
    case AGENT_CREDIT: {
        ROUND_TRIP(credit, CREDIT, p, h->len);
        struct agent_credit c;
        if (agent_credit_decode(p, h->len, &c) == 0)
            CHECK(c.stream <= AGENT_STREAM_STDERR && c.bytes <= AGENT_WINDOW);
        break;
    }
    case AGENT_EXIT: {
        ROUND_TRIP(exit, EXIT, p, h->len);
        struct agent_exit e;
        if (agent_exit_decode(p, h->len, &e) == 0)
            CHECK(e.status >= 0 && e.status <= 255);
        break;
    }
    case AGENT_REPLY: {
        struct agent_reply r;
        if (agent_reply_decode(p, h->len, &r) == 0) {
            uint8_t again_r[AGENT_REPLY_SIZE];
            CHECK(h->len >= AGENT_REPLY_SIZE);
            agent_reply_encode(&r, again_r);
            CHECK(memcmp(again_r, p, AGENT_REPLY_SIZE) == 0);
        }
        break;
    }
    case AGENT_STDIN:
    case AGENT_STDOUT:
    case AGENT_STDERR:
        CHECK(h->len <= AGENT_DATA_MAX);
        break;
    case AGENT_CREATE:
    case AGENT_EXEC:
        check_request(p, h->len, h->type == AGENT_CREATE);
        break;
    case AGENT_START:
    case AGENT_SHUTDOWN:
        CHECK(h->len == 0);
        break;
    default:
        break;
    }
}

/* Feed stream through a pipe in chunks; take frames as they complete. */
static void check_stream(const uint8_t *stream, size_t size, size_t chunk)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        abort();
    struct agent_buf b = {0};
    size_t fed = 0, taken = 0;
    bool broken = false;
    while (!broken && fed < size) {
        size_t n = size - fed < chunk ? size - fed : chunk;
        CHECK(write(fds[1], stream + fed, n) == (ssize_t)n);
        fed += n;
        long got;
        size_t in = 0;
        while ((got = agent_buf_fill(&b, fds[0])) > 0)
            in += (size_t)got;
        CHECK(got < 0 && errno == EAGAIN);
        CHECK(in == n);
        struct agent_hdr h;
        const uint8_t *payload;
        const char *why = NULL;
        int r;
        while ((r = agent_buf_frame(&b, &h, &payload, &why)) == 1) {
            /* The frame's bytes are the stream's, where we left off. */
            CHECK(taken + AGENT_HDR_SIZE + h.len <= fed);
            CHECK(payload == b.data + b.start + AGENT_HDR_SIZE);
            CHECK(memcmp(b.data + b.start, stream + taken, AGENT_HDR_SIZE + h.len) == 0);
            check_frame(&h, b.data + b.start, payload);
            agent_buf_consume(&b, &h);
            taken += AGENT_HDR_SIZE + h.len;
        }
        if (r < 0) {
            CHECK(why != NULL);
            broken = true;
        } else {
            CHECK(agent_buf_len(&b) == fed - taken);
        }
    }
    close(fds[0]);
    close(fds[1]);
    agent_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_request(data, size, true);
    check_request(data, size, false);
    if (size == 0)
        return 0;
    size_t chunk = data[0] ? data[0] : 4096;
    check_stream(data + 1, size - 1, chunk);
    return 0;
}
