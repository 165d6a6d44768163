/* The JSON payload of CREATE and EXEC requests (proto.h):
 * {"process": <OCI process object>, "hostname": "...", "mounts": [...],
 *  "readonly": true, "maskedPaths": [...], "readonlyPaths": [...],
 *  "sysctl": {...}, "seccomp": {"flags": N, "bpf": HEX}};
 * all but process only in CREATE; "attach": {"tools": NAME} only in EXEC.
 * seccomp is config.json's linux.seccomp compiled by the host: `bpf` is the
 * bytes of its struct sock_filter array in memory order (x86-64, host and
 * guest alike) as lowercase hex, `flags` SECCOMP_FILTER_FLAG_* bits.
 * A mount is an OCI mount object; a bind's source is the plain name of an
 * entry of the guest's volume share (the host put the bind's tree there). Kept apart from the agent's loop so the fuzzer can call it. */
#pragma once
#include <linux/seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "oci/config.h"

struct err;

#define AGENT_MOUNTS_MAX 256
#define AGENT_PATHS_MAX 256  /* maskedPaths, readonlyPaths */
#define AGENT_SYSCTL_MAX 256
/* The filter flags a guest may be asked for: LOG, SPEC_ALLOW, TSYNC (a
 * listener cannot reach the host). */
#define AGENT_SECCOMP_FLAGS \
    (SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW | SECCOMP_FILTER_FLAG_TSYNC)

struct seccomp_prog;

struct agent_request {
    struct oci_process *process; /* checked by oci_process_parse */
    char *hostname;              /* NULL if absent; 1..64 bytes, no NUL or '/' */
    char *attach_tools;          /* EXEC only, "attach": {"tools": NAME}: NAME in the
                                  * shared directory; 1..255 bytes, not . or .., no '/' */
    struct oci_mount *mounts;    /* CREATE only; options parsed (flags, data, bind) */
    size_t n_mounts;
    bool readonly;               /* CREATE only: root.readonly */
    char **masked_paths;         /* CREATE only: NULL-terminated absolute paths, or NULL */
    char **readonly_paths;
    struct oci_kv *sysctl;       /* CREATE only: linux.sysctl */
    size_t n_sysctl;
    struct seccomp_prog *seccomp; /* CREATE only: the compiled linux.seccomp, or NULL */
};

/* Parse a CREATE (create = true) or EXEC request of len bytes. Returns 0 with
 * *out filled (free with agent_request_free), or -1 with *err naming the
 * field at fault. */
int agent_request_parse(const uint8_t *data, size_t len, bool create, struct agent_request *out,
                        struct err **err);

/* Free what agent_request_parse filled; safe on a zeroed request. */
void agent_request_free(struct agent_request *r);
