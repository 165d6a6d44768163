/* config.json (OCI runtime spec) parsed into typed structs with json-c.
 * Every field is type-checked; an error names the field's path. Unknown
 * fields are ignored, as the spec requires. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct err;
struct json_object;

/* Upper bound on config.json size (runc has none; 16 MiB is generous). */
#define OCI_CONFIG_MAX_SIZE (16u << 20)

enum oci_ns_type {
    OCI_NS_PID, OCI_NS_NET, OCI_NS_MNT, OCI_NS_IPC, OCI_NS_UTS,
    OCI_NS_USER, OCI_NS_CGROUP, OCI_NS_TIME, OCI_NS_COUNT
};

struct oci_namespace {
    enum oci_ns_type type;
    char *path; /* NULL: create a new one */
};

struct oci_mount {
    char *destination;
    char *source;
    char *type;
    char **options;        /* NULL-terminated, as given */
    unsigned long flags;   /* MS_* from options */
    unsigned long clear;   /* MS_* explicitly cleared (e.g. "dev") */
    unsigned long propagation; /* MS_SHARED/SLAVE/PRIVATE/UNBINDABLE [|MS_REC] */
    bool bind;             /* "bind" or "rbind" (or type "bind") */
    bool recursive;        /* "rbind" */
    char *data;            /* options that are not flags, joined with ',' */
};

struct oci_id_mapping {
    uint32_t container_id, host_id, size;
};

struct oci_rlimit {
    int resource;         /* RLIMIT_* */
    uint64_t soft, hard;
};

struct oci_caps {
    char **bounding, **effective, **inheritable, **permitted, **ambient;
};

struct oci_process {
    bool terminal;
    bool has_console_size;
    unsigned console_height, console_width;
    char **args; /* NULL-terminated, at least one entry */
    char **env;  /* NULL-terminated (may be empty) */
    char *cwd;
    uint32_t uid, gid;
    bool has_umask;
    mode_t umask;
    uint32_t *additional_gids;
    size_t n_additional_gids;
    struct oci_rlimit *rlimits;
    size_t n_rlimits;
    bool has_caps;
    struct oci_caps caps;
    bool no_new_privileges;
    bool has_oom_score_adj;
    int oom_score_adj;
    char *apparmor_profile;
    char *selinux_label;
};

struct oci_hook {
    char *path;
    char **args;
    char **env;
    int timeout; /* seconds; 0 = none */
};

enum oci_hook_kind {
    OCI_HOOK_PRESTART, OCI_HOOK_CREATE_RUNTIME, OCI_HOOK_CREATE_CONTAINER,
    OCI_HOOK_START_CONTAINER, OCI_HOOK_POSTSTART, OCI_HOOK_POSTSTOP, OCI_HOOK_KINDS
};

struct oci_hooks {
    struct oci_hook *list[OCI_HOOK_KINDS];
    size_t n[OCI_HOOK_KINDS];
};

struct oci_device {
    char *path;
    char type; /* 'c', 'b', 'u', 'p' */
    int64_t major, minor;
    bool has_mode, has_uid, has_gid;
    mode_t mode;
    uint32_t uid, gid;
};

struct oci_kv {
    char *key, *value;
};

struct oci_linux {
    struct oci_namespace namespaces[OCI_NS_COUNT];
    size_t n_namespaces;
    struct oci_id_mapping *uid_mappings, *gid_mappings;
    size_t n_uid_mappings, n_gid_mappings;
    struct oci_device *devices;
    size_t n_devices;
    char *cgroups_path;
    unsigned long rootfs_propagation; /* 0 = default */
    char **masked_paths;
    char **readonly_paths;
    struct oci_kv *sysctl;
    size_t n_sysctl;
    bool has_time_offsets;
    int64_t monotonic_secs, boottime_secs;
    uint32_t monotonic_nsecs, boottime_nsecs;
    char *mount_label;
    struct json_object *resources; /* kept for the cgroup layer */
    struct json_object *seccomp;   /* kept for the seccomp layer */
};

struct oci_config {
    char *oci_version;
    char *root_path;
    bool root_readonly;
    char *hostname;
    char *domainname;
    struct oci_mount *mounts;
    size_t n_mounts;
    struct oci_process *process; /* NULL if absent */
    struct oci_linux linux_;
    struct oci_hooks hooks;
    struct oci_kv *annotations;
    size_t n_annotations;
    struct json_object *json;    /* the whole document (owns resources/seccomp) */
};

/* Parse a config.json document held in memory; `name` labels errors. */
int oci_config_parse(const char *data, size_t len, const char *name,
                     struct oci_config **out, struct err **err);

/* Read and parse `<bundle>/config.json` (bundle may be relative). */
int oci_config_load(const char *bundle, struct oci_config **out, struct err **err);

/* Parse a standalone process object (`exec --process process.json`). */
int oci_process_parse(const char *data, size_t len, const char *name, struct oci_process **out,
                      struct err **err);

/* Free a process parsed by oci_process_parse; safe on NULL. */
void oci_process_free(struct oci_process *p);

/* Free a config; safe on NULL. */
void oci_config_free(struct oci_config *c);

/* The namespace entry of `type`, or NULL if the config does not ask for it. */
const struct oci_namespace *oci_config_ns(const struct oci_config *c, enum oci_ns_type type);

/* Value of annotation `key`, or NULL. */
const char *oci_config_annotation(const struct oci_config *c, const char *key);

/* Name of a namespace type as in config.json ("pid", "network", ...). */
const char *oci_ns_name(enum oci_ns_type type);

/* CLONE_NEW* flag of a namespace type. */
int oci_ns_clone_flag(enum oci_ns_type type);

/* Parse mount options into m->flags/clear/propagation/bind/recursive/data. */
int oci_mount_parse_options(struct oci_mount *m, struct err **err);

/* Map an RLIMIT_* name ("RLIMIT_NOFILE") to its number; <0 if unknown. */
int oci_rlimit_from_name(const char *name);

/* The spec's name of an RLIMIT_* resource ("RLIMIT_NOFILE"), or NULL. */
const char *oci_rlimit_name(int resource);

static inline void cleanup_oci_configp(struct oci_config **c) { oci_config_free(*c); }
#define cleanup_config __attribute__((cleanup(cleanup_oci_configp)))
