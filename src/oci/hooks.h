/* OCI hooks: run a list of hooks with the container state on stdin, each
 * with its timeout; the caller decides what a failure means. */
#pragma once
#include <stddef.h>

#include "oci/config.h"

struct err;

/* Name of a hook kind as in config.json ("prestart", "poststop", ...). */
const char *hooks_kind_name(enum oci_hook_kind kind);

/* Run cfg's hooks of `kind` in order with state_json on stdin. Stops at the
 * first failure (nonzero exit, signal, timeout) and reports it. */
int hooks_run(const struct oci_config *cfg, enum oci_hook_kind kind, const char *state_json,
              struct err **err);
