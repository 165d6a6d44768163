/* linux.seccomp (libseccomp): the filter is compiled to BPF by the runtime
 * before the container exists (and cached under the state root, keyed by
 * the exact seccomp JSON: libseccomp's compile is the slow part), then the
 * container init installs it as the last step before exec and hands a
 * notify fd to listenerPath. */
#pragma once
#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>

struct err;
struct json_object;

/* A compiled filter, ready for seccomp(SECCOMP_SET_MODE_FILTER). */
struct seccomp_prog {
    struct sock_filter *insns;
    size_t n;
    unsigned flags;        /* SECCOMP_FILTER_FLAG_* */
    char *listener_path;   /* or NULL */
};

/* Compile linux.seccomp (or take it from the cache in cache_dirfd, -1 for
 * none); *out is NULL when the config has no seccomp. */
int ns_seccomp_prepare(struct json_object *seccomp, int cache_dirfd, struct seccomp_prog **out,
                       struct err **err);

/* Install the filter in the calling thread; with a listenerPath, send the
 * notify fd and `state_json` over it. */
int ns_seccomp_install(const struct seccomp_prog *p, const char *state_json, struct err **err);

/* Free a compiled filter; safe on NULL. */
void ns_seccomp_prog_free(struct seccomp_prog *p);
