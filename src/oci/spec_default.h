/* The default config.json written by `cocoon spec` (the shape of `runc spec`). */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

/* A new JSON document for a default container; rootless adds a user
 * namespace mapping `uid`/`gid` to root and drops what needs privilege. */
char *oci_spec_default(bool rootless, uid_t uid, gid_t gid);
