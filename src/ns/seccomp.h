/* linux.seccomp (libseccomp): build the filter from config.json, load it as
 * the last step before exec, and hand a notify fd to listenerPath. */
#pragma once
#include <stdbool.h>

struct err;
struct json_object;

struct seccomp_plan; /* an opaque built filter */

/* Build a filter from the linux.seccomp object; *out NULL if none. */
int ns_seccomp_build(struct json_object *seccomp, struct seccomp_plan **out, struct err **err);

/* Load the filter into the calling thread; with a listenerPath, send the
 * notify fd and `state_json` over it. */
int ns_seccomp_load(struct seccomp_plan *plan, const char *state_json, struct err **err);

/* Free a plan; safe on NULL. */
void ns_seccomp_free(struct seccomp_plan *plan);
