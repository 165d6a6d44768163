/* The JSON payload of CREATE and EXEC requests (proto.h):
 * {"process": <OCI process object>, "hostname": "...", "mounts": [...]};
 * hostname and mounts only in CREATE; "attach": {"tools": NAME} only in EXEC.
 * A mount is an OCI mount object; a bind's source is the plain name of an
 * entry of the guest's volume share (the host put the bind's tree there). Kept apart from the agent's loop so the fuzzer can call it. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "oci/config.h"

struct err;

#define AGENT_MOUNTS_MAX 256

struct agent_request {
    struct oci_process *process; /* checked by oci_process_parse */
    char *hostname;              /* NULL if absent; 1..64 bytes, no NUL or '/' */
    char *attach_tools;          /* EXEC only, "attach": {"tools": NAME}: NAME in the
                                  * shared directory; 1..255 bytes, not . or .., no '/' */
    struct oci_mount *mounts;    /* CREATE only; options parsed (flags, data, bind) */
    size_t n_mounts;
    bool readonly;               /* CREATE only: root.readonly */
};

/* Parse a CREATE (create = true) or EXEC request of len bytes. Returns 0 with
 * *out filled (free with agent_request_free), or -1 with *err naming the
 * field at fault. */
int agent_request_parse(const uint8_t *data, size_t len, bool create, struct agent_request *out,
                        struct err **err);

/* Free what agent_request_parse filled; safe on a zeroed request. */
void agent_request_free(struct agent_request *r);
