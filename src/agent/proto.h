/* The agent protocol: frames between cocoon's VM backend on the host and
 * cocoon-init (the guest's PID 1) over one byte stream — vsock, a
 * virtio-console port, or a Unix socket when the agent runs on the host for
 * tests. Both sides include this header; both treat the other's frames as
 * hostile: every length is checked before use.
 *
 * A frame is a 16-byte header (all fields little-endian) and `len` payload
 * bytes. The guest speaks first (HELLO). Requests carry a sequence number
 * that the REPLY echoes. Processes are numbered by the host: 0 is the
 * container's init, exec'd processes get 1, 2, ...
 *
 * Stdio streams (0 stdin, 1 stdout, 2 stderr; with a terminal all output is
 * stdout) use credit-based flow control: a sender may have at most
 * AGENT_WINDOW bytes of a stream sent and not yet credited; the receiver
 * returns CREDIT once it has written bytes on to their destination. An
 * empty STDIN/STDOUT/STDERR frame ends that stream. EXIT follows the end of
 * the process's output streams, so the host has all output first. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bumped on any incompatible change; HELLO carries it. */
#define AGENT_PROTO_VERSION 1
#define AGENT_MAGIC 0x636f636fu /* "coco" */

#define AGENT_HDR_SIZE 16u
#define AGENT_PAYLOAD_MAX (1u << 20) /* a control frame (process JSON) */
#define AGENT_DATA_MAX (32u << 10)   /* one stdio frame */
#define AGENT_WINDOW (256u << 10)    /* credit of every stdio stream */
#define AGENT_VSOCK_PORT 1024u        /* where the agent listens on vsock */
#define AGENT_MAX_PROCS 1024u         /* live processes the agent tracks */

enum agent_msg {
    AGENT_HELLO = 1, /* g->h, first frame: struct agent_hello */
    AGENT_CREATE,    /* h->g, proc 0: JSON {"process":{..},"hostname":".."} -> REPLY(pid) */
    AGENT_START,     /* h->g, proc 0: run the created init -> REPLY */
    AGENT_EXEC,      /* h->g, proc N>0: JSON {"process":{..}} -> REPLY(pid), runs at once */
    AGENT_SIGNAL,    /* h->g: struct agent_signal -> REPLY */
    AGENT_RESIZE,    /* h->g: struct agent_winsize (no reply) */
    AGENT_STDIN,     /* h->g: bytes; empty: close the process's stdin */
    AGENT_STDOUT,    /* g->h: bytes; empty: end of stream */
    AGENT_STDERR,    /* g->h: bytes; empty: end of stream */
    AGENT_CREDIT,    /* both: struct agent_credit */
    AGENT_EXIT,      /* g->h: struct agent_exit */
    AGENT_REPLY,     /* g->h: struct agent_reply, then a message (no NUL) */
    AGENT_SHUTDOWN,  /* h->g: kill every process, sync, power off -> REPLY first */
    AGENT_MSG_END
};

enum agent_stream { AGENT_STREAM_STDIN, AGENT_STREAM_STDOUT, AGENT_STREAM_STDERR };

struct agent_hdr {
    uint32_t len;   /* payload bytes after the header */
    uint16_t type;  /* enum agent_msg */
    uint16_t flags; /* 0 in version 1 */
    uint32_t proc;  /* process number */
    uint32_t seq;   /* request number; a REPLY carries its request's */
};

struct agent_hello {
    uint32_t magic;   /* AGENT_MAGIC */
    uint32_t version; /* AGENT_PROTO_VERSION */
};
struct agent_signal {
    uint32_t signo;
    uint32_t all;     /* 1: every process of the container */
};
struct agent_winsize {
    uint16_t rows, cols;
};
struct agent_credit {
    uint32_t stream;  /* enum agent_stream */
    uint32_t bytes;
};
struct agent_exit {
    int32_t status;   /* 0..255, or 128+signal when killed */
};
struct agent_reply {
    int32_t error;    /* 0 or an errno value */
    uint32_t pid;     /* the process's pid in the guest, or 0 */
};

/* Fixed payload sizes on the wire. */
#define AGENT_HELLO_SIZE 8u
#define AGENT_SIGNAL_SIZE 8u
#define AGENT_WINSIZE_SIZE 4u
#define AGENT_CREDIT_SIZE 8u
#define AGENT_EXIT_SIZE 4u
#define AGENT_REPLY_SIZE 8u

/* The name of a message type, for errors ("?" if unknown). */
const char *agent_msg_name(uint32_t type);

/* Encode h into out[AGENT_HDR_SIZE]. */
void agent_hdr_encode(const struct agent_hdr *h, uint8_t *out);

/* Decode and check a header: a known type, zero flags, a length within
 * the type's limit. Returns 0, or -1 with *why set. */
int agent_hdr_decode(const uint8_t *in, struct agent_hdr *h, const char **why);

/* Decoders of the fixed payloads: 0, or -1 if len is wrong or a field is
 * out of range. */
int agent_hello_decode(const uint8_t *p, size_t len, struct agent_hello *out);
int agent_signal_decode(const uint8_t *p, size_t len, struct agent_signal *out);
int agent_winsize_decode(const uint8_t *p, size_t len, struct agent_winsize *out);
int agent_credit_decode(const uint8_t *p, size_t len, struct agent_credit *out);
int agent_exit_decode(const uint8_t *p, size_t len, struct agent_exit *out);
int agent_reply_decode(const uint8_t *p, size_t len, struct agent_reply *out);

/* Encoders of the fixed payloads into out (of the matching _SIZE). */
void agent_hello_encode(const struct agent_hello *v, uint8_t *out);
void agent_signal_encode(const struct agent_signal *v, uint8_t *out);
void agent_winsize_encode(const struct agent_winsize *v, uint8_t *out);
void agent_credit_encode(const struct agent_credit *v, uint8_t *out);
void agent_exit_encode(const struct agent_exit *v, uint8_t *out);
void agent_reply_encode(const struct agent_reply *v, uint8_t *out);

/* A growable byte queue: frames in (reader) or out (writer). */
struct agent_buf {
    uint8_t *data;
    size_t start, end, cap;
};

/* Free the buffer's memory. */
void agent_buf_free(struct agent_buf *b);

/* Bytes waiting in the buffer. */
static inline size_t agent_buf_len(const struct agent_buf *b) { return b->end - b->start; }

/* Append raw bytes. */
void agent_buf_put(struct agent_buf *b, const void *data, size_t len);

/* Queue one frame (header + payload) for sending. */
void agent_buf_put_frame(struct agent_buf *b, uint16_t type, uint32_t proc, uint32_t seq,
                         const void *payload, size_t len);

/* Write what the buffer holds to a (non-blocking) fd. Returns 0 when all
 * is written, 1 if some remains (wait for POLLOUT), -1 on error (errno). */
int agent_buf_flush(struct agent_buf *b, int fd);

/* Read what a (non-blocking) fd has into the buffer, at most up to one
 * maximal frame beyond what it holds. Returns the bytes read, 0 at EOF, -1
 * on error (errno; EAGAIN when nothing is there). */
long agent_buf_fill(struct agent_buf *b, int fd);

/* The next complete frame in b: 1 with *h and *payload set (valid until the
 * next agent_buf call; call agent_buf_consume after use), 0 if incomplete,
 * -1 if the stream is malformed (*why says how). */
int agent_buf_frame(struct agent_buf *b, struct agent_hdr *h, const uint8_t **payload,
                    const char **why);

/* Drop the frame agent_buf_frame returned. */
void agent_buf_consume(struct agent_buf *b, const struct agent_hdr *h);

/* Blocking: send one frame on fd (waits out EAGAIN). 0 or -1 (errno). */
int agent_send(int fd, uint16_t type, uint32_t proc, uint32_t seq, const void *payload,
               size_t len);
