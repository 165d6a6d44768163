/* CREATE and EXEC request payloads: a small JSON envelope around an OCI
 * process object, which oci_process_parse checks field by field. */
#include "agent/request.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/proto.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/seccomp.h"
#include "oci/config.h"

#define HOSTNAME_MAX 64 /* HOST_NAME_MAX */

/* Parse the whole of data as one JSON value; NULL with *err on failure. */
static struct json_object *parse_json(const uint8_t *data, size_t len, const char *name,
                                      struct err **err)
{
    if (len > AGENT_PAYLOAD_MAX || len > INT_MAX) {
        err_make(err, EFBIG, "%s: too large", name);
        return NULL;
    }
    struct json_tokener *tok = json_tokener_new_ex(64);
    if (tok == NULL) {
        err_make(err, ENOMEM, "%s: parser", name);
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    struct json_object *obj = json_tokener_parse_ex(tok, (const char *)data, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = jerr == json_tokener_success ? json_tokener_get_parse_end(tok) : len;
    if (obj == NULL && jerr == json_tokener_continue) {
        /* A bare number at the end waits for more input: end it. */
        obj = json_tokener_parse_ex(tok, "", 1);
        jerr = json_tokener_get_error(tok);
    }
    json_tokener_free(tok);
    if (obj != NULL && jerr == json_tokener_success && used < len) {
        /* Only white space may follow the value. */
        for (size_t i = used; i < len; i++)
            if (data[i] != ' ' && data[i] != '\t' && data[i] != '\n' && data[i] != '\r' &&
                !(data[i] == '\0' && i + 1 == len)) {
                json_object_put(obj);
                err_input(err, "%s: malformed JSON: data after the value", name);
                return NULL;
            }
    }
    if (obj == NULL || jerr != json_tokener_success) {
        if (obj)
            json_object_put(obj);
        err_input(err, "%s: malformed JSON: %s", name,
                  jerr == json_tokener_success ? "null is not a request"
                  : jerr == json_tokener_continue || jerr == json_tokener_error_parse_eof
                      ? "unexpected end of input"
                      : json_tokener_error_desc(jerr));
        return NULL;
    }
    return obj;
}

/* The CREATE-only member `key` of root: 1 with *v, 0 if it is absent, or -1
 * with *err if another request carries it. */
static int create_member(struct json_object *root, const char *name, const char *key,
                         bool create, struct json_object **v, struct err **err)
{
    if (!json_object_object_get_ex(root, key, v) || *v == NULL)
        return 0;
    if (!create)
        return err_input(err, "%s: `%s` is only for CREATE", name, key);
    return 1;
}

/* The optional "hostname" member; 0 or -1 with *err. */
static int parse_hostname(struct json_object *root, const char *name, bool create, char **out,
                          struct err **err)
{
    struct json_object *h;
    int present = create_member(root, name, "hostname", create, &h, err);
    if (present <= 0)
        return present;
    if (!json_object_is_type(h, json_type_string))
        return err_input(err, "%s: `hostname` must be a string", name);
    const char *s = json_object_get_string(h);
    size_t n = (size_t)json_object_get_string_len(h);
    if (n == 0)
        return 0;
    if (n > HOSTNAME_MAX || strlen(s) != n || strchr(s, '/'))
        return err_input(err, "%s: `hostname` must be 1 to %d bytes, without NUL or '/'", name,
                          HOSTNAME_MAX);
    *out = xstrdup(s);
    return 0;
}

/* The optional "readonly" member of CREATE (config.json's root.readonly);
 * 0 or -1 with *err. */
static int parse_readonly(struct json_object *root, const char *name, bool create, bool *out,
                          struct err **err)
{
    struct json_object *r;
    int present = create_member(root, name, "readonly", create, &r, err);
    if (present <= 0)
        return present;
    if (!json_object_is_type(r, json_type_boolean))
        return err_input(err, "%s: `readonly` must be true or false", name);
    *out = json_object_get_boolean(r);
    return 0;
}

/* The optional "attach" member: {"tools": NAME}; 0 or -1 with *err. */
static int parse_attach(struct json_object *root, const char *name, bool create, char **out,
                        struct err **err)
{
    struct json_object *at, *t;
    if (!json_object_object_get_ex(root, "attach", &at) || at == NULL)
        return 0;
    if (create)
        return err_input(err, "%s: `attach` is only for EXEC", name);
    if (!json_object_is_type(at, json_type_object) ||
        !json_object_object_get_ex(at, "tools", &t) || !json_object_is_type(t, json_type_string))
        return err_input(err, "%s: `attach` must be {\"tools\": NAME}", name);
    const char *s = json_object_get_string(t);
    size_t n = (size_t)json_object_get_string_len(t);
    if (n == 0 || n > 255 || strlen(s) != n || strchr(s, '/') || strcmp(s, ".") == 0 ||
        strcmp(s, "..") == 0)
        return err_input(err, "%s: `attach.tools` must be a plain name of 1 to 255 bytes", name);
    *out = xstrdup(s);
    return 0;
}

/* A string member of at most max bytes without NUL; NULL if absent. */
static int opt_string(struct json_object *o, const char *key, size_t max, const char *what,
                      char **out, struct err **err)
{
    struct json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v) || v == NULL)
        return 0;
    if (!json_object_is_type(v, json_type_string))
        return err_input(err, "%s.%s must be a string", what, key);
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (n > max || strlen(s) != n)
        return err_input(err, "%s.%s must be at most %zu bytes, without NUL", what, key, max);
    *out = xstrdup(s);
    return 0;
}

/* A plain name: 1..255 bytes, no '/', not . or .. */
static bool plain_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 255 && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int parse_mount(struct json_object *o, const char *what, struct oci_mount *m,
                       struct err **err)
{
    if (!json_object_is_type(o, json_type_object))
        return err_input(err, "%s must be an object", what);
    if (opt_string(o, "destination", PATH_MAX - 1, what, &m->destination, err) < 0 ||
        opt_string(o, "type", 64, what, &m->type, err) < 0 ||
        opt_string(o, "source", PATH_MAX - 1, what, &m->source, err) < 0)
        return -1;
    if (m->destination == NULL || m->destination[0] != '/')
        return err_input(err, "%s.destination must be an absolute path", what);
    struct json_object *opts;
    if (json_object_object_get_ex(o, "options", &opts) && opts) {
        if (!json_object_is_type(opts, json_type_array) ||
            json_object_array_length(opts) > 64)
            return err_input(err, "%s.options must be an array of at most 64 strings", what);
        size_t n = json_object_array_length(opts);
        m->options = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++) {
            struct json_object *e = json_object_array_get_idx(opts, i);
            const char *s = json_object_is_type(e, json_type_string) ? json_object_get_string(e)
                                                                     : NULL;
            if (s == NULL || strlen(s) != (size_t)json_object_get_string_len(e) ||
                strlen(s) > 4096)
                return err_input(err, "%s.options[%zu] must be a string", what, i);
            m->options[i] = xstrdup(s);
        }
    }
    if (oci_mount_parse_options(m, err) < 0)
        return err_wrap(err, "%s", what);
    if (m->bind && (m->source == NULL || !plain_name(m->source)))
        return err_input(err, "%s: a bind's source must name an entry of the volume share", what);
    return 0;
}

/* The optional "mounts" member of CREATE; 0 or -1 with *err. */
static int parse_mounts(struct json_object *root, const char *name, bool create,
                        struct agent_request *out, struct err **err)
{
    struct json_object *a;
    int present = create_member(root, name, "mounts", create, &a, err);
    if (present <= 0)
        return present;
    if (!json_object_is_type(a, json_type_array) ||
        json_object_array_length(a) > AGENT_MOUNTS_MAX)
        return err_input(err, "%s: `mounts` must be an array of at most %d mounts", name,
                         AGENT_MOUNTS_MAX);
    size_t n = json_object_array_length(a);
    out->mounts = xcalloc(n ? n : 1, sizeof(*out->mounts));
    for (size_t i = 0; i < n; i++) {
        out->n_mounts = i + 1;
        char what[64];
        snprintf(what, sizeof(what), "%s: mounts[%zu]", name, i);
        if (parse_mount(json_object_array_get_idx(a, i), what, &out->mounts[i], err) < 0)
            return -1;
    }
    return 0;
}

/* An optional array of at most AGENT_PATHS_MAX absolute paths (a CREATE
 * member); *out is NULL-terminated. 0 or -1 with *err. */
static int parse_paths(struct json_object *root, const char *name, const char *key, bool create,
                       char ***out, struct err **err)
{
    struct json_object *a;
    int present = create_member(root, name, key, create, &a, err);
    if (present <= 0)
        return present;
    if (!json_object_is_type(a, json_type_array) || json_object_array_length(a) > AGENT_PATHS_MAX)
        return err_input(err, "%s: `%s` must be an array of at most %d paths", name, key,
                         AGENT_PATHS_MAX);
    size_t n = json_object_array_length(a);
    *out = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        struct json_object *e = json_object_array_get_idx(a, i);
        const char *s = json_object_is_type(e, json_type_string) ? json_object_get_string(e)
                                                                 : NULL;
        if (s == NULL || s[0] != '/' || strlen(s) != (size_t)json_object_get_string_len(e) ||
            strlen(s) >= PATH_MAX)
            return err_input(err, "%s: %s[%zu] must be an absolute path", name, key, i);
        (*out)[i] = xstrdup(s);
    }
    return 0;
}

/* The optional "sysctl" member of CREATE: {key: value} strings; 0 or -1. */
static int parse_sysctl(struct json_object *root, const char *name, bool create,
                        struct agent_request *out, struct err **err)
{
    struct json_object *o;
    int present = create_member(root, name, "sysctl", create, &o, err);
    if (present <= 0)
        return present;
    if (!json_object_is_type(o, json_type_object) ||
        json_object_object_length(o) > AGENT_SYSCTL_MAX)
        return err_input(err, "%s: `sysctl` must be an object of at most %d strings", name,
                         AGENT_SYSCTL_MAX);
    out->sysctl = xcalloc((size_t)json_object_object_length(o) + 1, sizeof(*out->sysctl));
    json_object_object_foreach(o, k, v)
    {
        const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                 : NULL;
        if (s == NULL || strlen(s) != (size_t)json_object_get_string_len(v) || strlen(s) > 4096 ||
            strlen(k) == 0 || strlen(k) > 255)
            return err_input(err, "%s: sysctl `%.64s` must be a key of 1 to 255 bytes with a "
                             "string value of at most 4096 bytes", name, k);
        struct oci_kv *kv = &out->sysctl[out->n_sysctl++];
        kv->key = xstrdup(k);
        kv->value = xstrdup(s);
    }
    return 0;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

/* The optional "seccomp" member of CREATE: {"flags": N, "bpf": HEX}, the
 * filter the host compiled; 0 or -1 with *err. */
static int parse_seccomp(struct json_object *root, const char *name, bool create,
                         struct seccomp_prog **out, struct err **err)
{
    struct json_object *o, *f, *b;
    int present = create_member(root, name, "seccomp", create, &o, err);
    if (present <= 0)
        return present;
    if (!json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "flags", &f) || !json_object_is_type(f, json_type_int) ||
        !json_object_object_get_ex(o, "bpf", &b) || !json_object_is_type(b, json_type_string))
        return err_input(err, "%s: `seccomp` must be {\"flags\": N, \"bpf\": HEX}", name);
    int64_t flags = json_object_get_int64(f);
    if (flags < 0 || (flags & ~(int64_t)AGENT_SECCOMP_FLAGS))
        return err_input(err, "%s: `seccomp.flags` %lld: only LOG, SPEC_ALLOW and TSYNC", name,
                         (long long)flags);
    const char *hex = json_object_get_string(b);
    size_t n = (size_t)json_object_get_string_len(b), isz = 2 * sizeof(struct sock_filter);
    if (n == 0 || n % isz || n / isz > BPF_MAXINSNS || strlen(hex) != n)
        return err_input(err, "%s: `seccomp.bpf` must be 1 to %d instructions in hex", name,
                         BPF_MAXINSNS);
    struct seccomp_prog *p = xcalloc(1, sizeof(*p));
    p->n = n / isz;
    p->insns = xcalloc(p->n, sizeof(struct sock_filter));
    p->flags = (unsigned)flags;
    *out = p;
    uint8_t *bytes = (uint8_t *)p->insns;
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return err_input(err, "%s: `seccomp.bpf` must be lowercase hex", name);
        bytes[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int agent_request_parse(const uint8_t *data, size_t len, bool create, struct agent_request *out,
                        struct err **err)
{
    const char *name = create ? "CREATE request" : "EXEC request";
    memset(out, 0, sizeof(*out));
    struct json_object *root = parse_json(data, len, name, err);
    if (root == NULL)
        return -1;
    int r = -1;
    struct json_object *proc;
    if (!json_object_is_type(root, json_type_object)) {
        err_input(err, "%s: must be a JSON object", name);
        goto out;
    }
    if (!json_object_object_get_ex(root, "process", &proc) ||
        !json_object_is_type(proc, json_type_object)) {
        err_input(err, "%s: `process` must be an object", name);
        goto out;
    }
    if (parse_hostname(root, name, create, &out->hostname, err) < 0 ||
        parse_attach(root, name, create, &out->attach_tools, err) < 0 ||
        parse_mounts(root, name, create, out, err) < 0 ||
        parse_readonly(root, name, create, &out->readonly, err) < 0 ||
        parse_paths(root, name, "maskedPaths", create, &out->masked_paths, err) < 0 ||
        parse_paths(root, name, "readonlyPaths", create, &out->readonly_paths, err) < 0 ||
        parse_sysctl(root, name, create, out, err) < 0 ||
        parse_seccomp(root, name, create, &out->seccomp, err) < 0)
        goto out;
    /* Hand the process object to the OCI parser as text: one parser, one
     * set of checks for config.json, `exec --process` and the agent. */
    size_t n = 0;
    const char *text = json_object_to_json_string_length(proc, JSON_C_TO_STRING_PLAIN, &n);
    if (text == NULL) {
        err_make(err, ENOMEM, "%s: re-encode `process`", name);
        goto out;
    }
    if (oci_process_parse(text, n, name, &out->process, err) < 0)
        goto out;
    r = 0;
out:
    json_object_put(root);
    if (r < 0)
        agent_request_free(out);
    return r;
}

void agent_request_free(struct agent_request *r)
{
    oci_process_free(r->process);
    free(r->hostname);
    free(r->attach_tools);
    for (size_t i = 0; i < r->n_mounts; i++) {
        struct oci_mount *m = &r->mounts[i];
        free(m->destination);
        free(m->type);
        free(m->source);
        free(m->data);
        for (char **o = m->options; o && *o; o++)
            free(*o);
        free(m->options);
    }
    free(r->mounts);
    for (int ro = 0; ro < 2; ro++) {
        char **v = ro ? r->readonly_paths : r->masked_paths;
        for (char **q = v; q && *q; q++)
            free(*q);
        free(v);
    }
    for (size_t i = 0; i < r->n_sysctl; i++) {
        free(r->sysctl[i].key);
        free(r->sysctl[i].value);
    }
    free(r->sysctl);
    ns_seccomp_prog_free(r->seccomp);
    memset(r, 0, sizeof(*r));
}
