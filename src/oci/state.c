#include "oci/state.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/proc.h"
#include "common/util.h"
#include "build_config.h"

int state_check_id(const char *id, struct err **err)
{
    size_t n = strlen(id);
    if (n == 0)
        return err_input(err, "container id must not be empty");
    if (n > 1024)
        return err_input(err, "container id is longer than 1024 bytes");
    if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
        return err_input(err, "invalid container id `%s`", id);
    for (const char *p = id; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.' || c == '+'))
            return err_input(err, "invalid container id `%s`: only letters, digits and _ . + - allowed",
                            id);
    }
    return 0;
}

int state_root_open(const char *root, bool create, struct err **err)
{
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 || errno != ENOENT || !create) {
        if (fd < 0)
            return err_make(err, errno, "open state root `%s`", root);
        return fd;
    }
    /* mkdir -p */
    cleanup_free char *p = xstrdup(root);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0711) < 0 && errno != EEXIST)
            return err_make(err, errno, "create state root `%s`", p);
        *s = '/';
    }
    if (mkdir(p, 0711) < 0 && errno != EEXIST)
        return err_make(err, errno, "create state root `%s`", root);
    fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return err_make(err, errno, "open state root `%s`", root);
    return fd;
}

static int lock_dir(int fd, const char *id, struct err **err)
{
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR)
            return err_make(err, errno, "lock container `%s`", id);
    }
    return 0;
}

void state_dir_unlock(int dirfd)
{
    flock(dirfd, LOCK_UN);
}

int state_dir_create(int rootfd, const char *id, struct err **err)
{
    if (state_check_id(id, err) < 0)
        return -1;
    /* Made under a temporary name, locked, then renamed into place: nobody
     * can see (and delete) the directory of a create before it is locked. */
    char tmp[64];
    snprintf(tmp, sizeof(tmp), ".new-%d", (int)getpid());
    if (mkdirat(rootfd, tmp, 0700) < 0 && errno != EEXIST)
        return err_make(err, errno, "create state directory for `%s`", id);
    int fd = openat(rootfd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        unlinkat(rootfd, tmp, AT_REMOVEDIR);
        return err_make(err, e, "open state directory for `%s`", id);
    }
    if (lock_dir(fd, id, err) < 0) {
        close(fd);
        unlinkat(rootfd, tmp, AT_REMOVEDIR);
        return -1;
    }
    if (renameat2(rootfd, tmp, rootfd, id, RENAME_NOREPLACE) < 0) {
        int e = errno;
        close(fd);
        unlinkat(rootfd, tmp, AT_REMOVEDIR);
        if (e == EEXIST || e == ENOTEMPTY)
            return err_make(err, 0, "container `%s` already exists", id);
        return err_make(err, e, "create state directory for `%s`", id);
    }
    return fd;
}

int state_dir_open(int rootfd, const char *id, struct err **err)
{
    if (state_check_id(id, err) < 0)
        return -1;
    int fd = openat(rootfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return err_make(err, 0, "container `%s` does not exist", id);
        return err_make(err, errno, "open state of container `%s`", id);
    }
    if (lock_dir(fd, id, err) < 0) {
        close(fd);
        return -1;
    }
    /* A directory without state.json is one being created or removed. */
    if (faccessat(fd, STATE_FILE, F_OK, AT_SYMLINK_NOFOLLOW) < 0) {
        close(fd);
        return err_make(err, 0, "container `%s` does not exist", id);
    }
    return fd;
}

int state_dir_remove(int rootfd, const char *id, struct err **err)
{
    if (state_check_id(id, err) < 0)
        return -1;
    cleanup_close int fd = openat(rootfd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return err_make(err, errno, "open state directory of `%s`", id);
    }
    int dfd = dup(fd);
    if (dfd < 0)
        return err_make(err, errno, "dup");
    cleanup_dir DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return err_make(err, errno, "read state directory of `%s`", id);
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(fd, de->d_name, 0) < 0 && errno != ENOENT)
            return err_make(err, errno, "remove `%s` from the state of `%s`", de->d_name, id);
    }
    if (unlinkat(rootfd, id, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return err_make(err, errno, "remove state directory of `%s`", id);
    return 0;
}

static void add_str(struct json_object *o, const char *k, const char *v)
{
    if (v)
        json_object_object_add(o, k, json_object_new_string(v));
}

static struct json_object *annotations_json(const struct container_state *st)
{
    struct json_object *a = json_object_new_object();
    for (size_t i = 0; i < st->n_annotations; i++)
        json_object_object_add(a, st->annotations[i].key,
                               json_object_new_string(st->annotations[i].value));
    return a;
}

int state_write(int dirfd, const struct container_state *st, struct err **err)
{
    struct json_object *o = json_object_new_object();
    add_str(o, "id", st->id);
    add_str(o, "bundle", st->bundle);
    add_str(o, "rootfs", st->rootfs);
    add_str(o, "created", st->created);
    add_str(o, "backend", st->backend);
    add_str(o, "cgroup", st->cgroup);
    json_object_object_add(o, "pid", json_object_new_int(st->pid));
    json_object_object_add(o, "start_time", json_object_new_uint64(st->start_time));
    json_object_object_add(o, "own_pidns", json_object_new_boolean(st->own_pidns));
    json_object_object_add(o, "owner", json_object_new_int64(st->owner));
    json_object_object_add(o, "annotations", annotations_json(st));
    size_t len;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    int r = write_file_atomic(dirfd, STATE_FILE, s, len, err);
    json_object_put(o);
    return r < 0 ? err_wrap(err, "write state of `%s`", st->id) : 0;
}

static char *dup_member(struct json_object *o, const char *k)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, k, &v) || json_object_get_type(v) != json_type_string)
        return NULL;
    return xstrdup(json_object_get_string(v));
}

int state_read(int dirfd, struct container_state **out, struct err **err)
{
    cleanup_free char *data = NULL;
    size_t len;
    if (read_file_at(dirfd, STATE_FILE, 1 << 20, &data, &len, err) < 0)
        return err_wrap(err, "read container state");
    struct json_object *o = json_tokener_parse(data);
    if (o == NULL || json_object_get_type(o) != json_type_object) {
        if (o)
            json_object_put(o);
        return err_input(err, "corrupt container state file");
    }
    struct container_state *st = xcalloc(1, sizeof(*st));
    st->id = dup_member(o, "id");
    st->bundle = dup_member(o, "bundle");
    st->rootfs = dup_member(o, "rootfs");
    st->created = dup_member(o, "created");
    st->backend = dup_member(o, "backend");
    st->cgroup = dup_member(o, "cgroup");
    struct json_object *v;
    if (json_object_object_get_ex(o, "pid", &v))
        st->pid = json_object_get_int(v);
    if (json_object_object_get_ex(o, "start_time", &v))
        st->start_time = json_object_get_uint64(v);
    if (json_object_object_get_ex(o, "own_pidns", &v))
        st->own_pidns = json_object_get_boolean(v);
    if (json_object_object_get_ex(o, "owner", &v))
        st->owner = (uid_t)json_object_get_int64(v);
    if (json_object_object_get_ex(o, "annotations", &v) &&
        json_object_get_type(v) == json_type_object) {
        size_t n = (size_t)json_object_object_length(v), i = 0;
        st->annotations = xcalloc(n, sizeof(struct oci_kv));
        json_object_object_foreach(v, k, val)
        {
            if (json_object_get_type(val) != json_type_string)
                continue;
            st->annotations[i].key = xstrdup(k);
            st->annotations[i].value = xstrdup(json_object_get_string(val));
            i++;
        }
        st->n_annotations = i;
    }
    json_object_put(o);
    if (st->id == NULL || st->bundle == NULL) {
        state_free(st);
        return err_input(err, "corrupt container state file");
    }
    *out = st;
    return 0;
}

void state_free(struct container_state *st)
{
    if (st == NULL)
        return;
    free(st->id);
    free(st->bundle);
    free(st->rootfs);
    free(st->created);
    free(st->backend);
    free(st->cgroup);
    for (size_t i = 0; i < st->n_annotations; i++) {
        free(st->annotations[i].key);
        free(st->annotations[i].value);
    }
    free(st->annotations);
    free(st);
}

enum container_status state_status(int dirfd, const struct container_state *st)
{
    char pst;
    uint64_t t;
    if (st->pid <= 0 || proc_stat(st->pid, &pst, &t) < 0 || t != st->start_time ||
        pst == 'Z' || pst == 'X')
        return STATUS_STOPPED;
    if (faccessat(dirfd, STATE_EXEC_FIFO, F_OK, AT_SYMLINK_NOFOLLOW) == 0 ||
        faccessat(dirfd, STATE_VM_CREATED, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return STATUS_CREATED;
    if (faccessat(dirfd, "paused", F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        return STATUS_PAUSED;
    return STATUS_RUNNING;
}

const char *state_status_name(enum container_status s)
{
    switch (s) {
    case STATUS_CREATING: return "creating";
    case STATUS_CREATED: return "created";
    case STATUS_RUNNING: return "running";
    case STATUS_PAUSED: return "paused";
    case STATUS_STOPPED: return "stopped";
    }
    return "unknown";
}

char *state_to_oci_json(const struct container_state *st, enum container_status s)
{
    struct json_object *o = json_object_new_object();
    add_str(o, "ociVersion", OCI_VERSION);
    add_str(o, "id", st->id);
    add_str(o, "status", state_status_name(s));
    json_object_object_add(o, "pid", json_object_new_int(s == STATUS_STOPPED ? 0 : st->pid));
    add_str(o, "bundle", st->bundle);
    add_str(o, "rootfs", st->rootfs);
    add_str(o, "created", st->created);
    json_object_object_add(o, "owner", json_object_new_string(""));
    json_object_object_add(o, "annotations", annotations_json(st));
    char *r = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                            JSON_C_TO_STRING_SPACED |
                                                            JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return r;
}

char *state_now_rfc3339(void)
{
    struct timespec ts;
    struct tm tm;
    char buf[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    return xasprintf("%s.%09ldZ", buf, ts.tv_nsec);
}
