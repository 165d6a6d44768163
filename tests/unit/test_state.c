/* Unit tests of the container state directory (src/oci/state.c). */
#include "helpers.h"

#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#include "common/proc.h"
#include "oci/state.h"
#include "build_config.h"

struct fix {
    char *path; /* the temp dir; the runtime root is <path>/root */
    int rootfd;
};

static int setup(void **state)
{
    struct fix *f = xcalloc(1, sizeof(*f));
    f->path = make_tmpdir("state");
    char *root = xasprintf("%s/root", f->path);
    struct err *err = NULL;
    f->rootfd = state_root_open(root, true, &err);
    free(root);
    if (f->rootfd < 0)
        fail_msg("state_root_open: %s", err->msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    close(f->rootfd);
    rm_rf(f->path);
    free(f->path);
    free(f);
    return 0;
}

/* ---- ids ---- */

static void test_check_id_accepts(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "a", "abc", "ABC", "0", "container-1", "my_container", "v1.2.3", "a+b", "...",
        ".hidden", "a..b", "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_.+-",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct err *err = NULL;
        if (state_check_id(ok[i], &err) != 0)
            fail_msg("id `%s` refused: %s", ok[i], err ? err->msg : "?");
        assert_null(err);
    }
    char id[1025];
    memset(id, 'x', 1024);
    id[1024] = '\0';
    assert_int_equal(state_check_id(id, NULL), 0);
}

static void test_check_id_rejects(void **state)
{
    (void)state;
    static const struct {
        const char *id;
        const char *want;
    } bad[] = {
        {"", "container id must not be empty"},
        {".", "invalid container id `.`"},
        {"..", "invalid container id `..`"},
        {"a/b", "invalid container id `a/b`: only letters, digits and _ . + - allowed"},
        {"../etc", "invalid container id `../etc`"},
        {"/abs", "invalid container id"},
        {"a b", "invalid container id"},
        {"a\nb", "invalid container id"},
        {"a\tb", "invalid container id"},
        {"caf\xc3\xa9", "invalid container id"},
        {"a:b", "invalid container id"},
        {"a*", "invalid container id"},
        {"$(id)", "invalid container id"},
        {"a\\b", "invalid container id"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct err *err = NULL;
        assert_int_equal(state_check_id(bad[i].id, &err), -1);
        assert_err_contains(err, bad[i].want);
        assert_int_equal(err_code(err), EINVAL);
        err_free(&err);
    }
    char id[1026];
    memset(id, 'x', 1025);
    id[1025] = '\0';
    struct err *err = NULL;
    assert_int_equal(state_check_id(id, &err), -1);
    assert_err_contains(err, "container id is longer than 1024 bytes");
    err_free(&err);
    /* err may be NULL. */
    assert_int_equal(state_check_id("a/b", NULL), -1);
}

/* ---- state.json ---- */

static void test_root_open(void **state)
{
    struct fix *f = *state;
    struct err *err = NULL;
    char *deep = xasprintf("%s/x/y/z", f->path);
    assert_int_equal(state_root_open(deep, false, &err), -1);
    assert_int_equal(err_code(err), ENOENT);
    assert_err_contains(err, "open state root `");
    err_free(&err);
    int fd = state_root_open(deep, true, &err);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0711);
    close(fd);
    /* Existing: just opened. */
    fd = state_root_open(deep, true, &err);
    assert_true(fd >= 0);
    close(fd);
    free(deep);
}

static void test_write_read_roundtrip(void **state)
{
    struct fix *f = *state;
    struct err *err = NULL;
    int dirfd = state_dir_create(f->rootfd, "round", &err);
    assert_true(dirfd >= 0);
    assert_null(err);

    struct oci_kv ann[] = {
        {"org.example.a", "1"},
        {"quote\"key", "line\nbreak \\ \xe2\x82\xac"},
        {"empty", ""},
    };
    struct container_state in = {
        .id = "round",
        .bundle = "/srv/bundles/with space/and\"quote",
        .rootfs = "/srv/bundles/rootfs",
        .created = "2024-01-02T03:04:05.123456789Z",
        .backend = "ns",
        .pid = 4242,
        .start_time = 123456789012345ull,
        .own_pidns = true,
        .cgroup = "/cocoon/round",
        .owner = 1000,
        .annotations = ann,
        .n_annotations = 3,
    };
    assert_int_equal(state_write(dirfd, &in, &err), 0);
    assert_null(err);
    assert_true(exists_at(dirfd, STATE_FILE));
    assert_false(exists_at(dirfd, "." STATE_FILE ".tmp"));

    struct container_state *out = NULL;
    assert_int_equal(state_read(dirfd, &out, &err), 0);
    assert_null(err);
    assert_string_equal(out->id, in.id);
    assert_string_equal(out->bundle, in.bundle);
    assert_string_equal(out->rootfs, in.rootfs);
    assert_string_equal(out->created, in.created);
    assert_string_equal(out->backend, in.backend);
    assert_string_equal(out->cgroup, in.cgroup);
    assert_int_equal(out->pid, 4242);
    assert_true(out->start_time == 123456789012345ull);
    assert_true(out->own_pidns);
    assert_int_equal(out->owner, 1000);
    assert_int_equal(out->n_annotations, 3);
    for (size_t i = 0; i < 3; i++) {
        bool found = false;
        for (size_t j = 0; j < out->n_annotations; j++)
            if (strcmp(out->annotations[j].key, ann[i].key) == 0) {
                assert_string_equal(out->annotations[j].value, ann[i].value);
                found = true;
            }
        assert_true(found);
    }
    state_free(out);

    /* Optional fields left out stay NULL / zero; rewriting replaces. */
    struct container_state min = {.id = "round", .bundle = "/b", .owner = 0};
    assert_int_equal(state_write(dirfd, &min, &err), 0);
    assert_int_equal(state_read(dirfd, &out, &err), 0);
    assert_string_equal(out->bundle, "/b");
    assert_null(out->rootfs);
    assert_null(out->cgroup);
    assert_null(out->created);
    assert_int_equal(out->pid, 0);
    assert_false(out->own_pidns);
    assert_int_equal(out->n_annotations, 0);
    state_free(out);
    state_free(NULL);
    close(dirfd);
}

static void test_read_errors(void **state)
{
    struct fix *f = *state;
    struct err *err = NULL;
    struct container_state *st = (struct container_state *)0x1;
    int dirfd = state_dir_create(f->rootfd, "bad", &err);
    assert_true(dirfd >= 0);

    assert_int_equal(state_read(dirfd, &st, &err), -1);
    assert_int_equal(err_code(err), ENOENT);
    assert_err_contains(err, "read container state: open `state.json`");
    err_free(&err);

    static const char *const corrupt[] = {
        "",
        "not json",
        "[]",
        "\"string\"",
        "{\"bundle\":\"/b\"}",                   /* no id */
        "{\"id\":\"x\"}",                        /* no bundle */
        "{\"id\":5,\"bundle\":\"/b\"}",          /* id of the wrong type */
        "{\"id\":\"x\",\"bundle\":\"/b\"",       /* truncated */
    };
    for (size_t i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
        put_file(dirfd, STATE_FILE, corrupt[i]);
        assert_int_equal(state_read(dirfd, &st, &err), -1);
        assert_err_contains(err, "corrupt container state file");
        err_free(&err);
    }
    assert_ptr_equal(st, (struct container_state *)0x1);

    /* Wrongly typed optional members are ignored, not fatal. */
    put_file(dirfd, STATE_FILE,
             "{\"id\":\"x\",\"bundle\":\"/b\",\"rootfs\":7,\"pid\":\"12\",\"annotations\":"
             "{\"a\":1,\"b\":\"ok\"},\"own_pidns\":true}");
    assert_int_equal(state_read(dirfd, &st, &err), 0);
    assert_null(st->rootfs);
    assert_int_equal(st->n_annotations, 1);
    assert_string_equal(st->annotations[0].key, "b");
    assert_true(st->own_pidns);
    state_free(st);

    /* Bigger than the 1 MiB limit. */
    size_t big = (1u << 20) + 16;
    char *doc = xmalloc(big + 1);
    memset(doc, ' ', big);
    doc[big] = '\0';
    memcpy(doc, "{\"id\":\"x\",\"bundle\":\"/b\"}", 24);
    put_file(dirfd, STATE_FILE, doc);
    free(doc);
    assert_int_equal(state_read(dirfd, &st, &err), -1);
    assert_int_equal(err_code(err), EFBIG);
    assert_err_contains(err, "read container state");
    err_free(&err);
    close(dirfd);
}

/* ---- directories ---- */

static void test_dir_create_open(void **state)
{
    struct fix *f = *state;
    struct err *err = NULL;
    int dirfd = state_dir_create(f->rootfd, "c1", &err);
    assert_true(dirfd >= 0);
    struct stat st;
    assert_int_equal(fstatat(f->rootfd, "c1", &st, 0), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    assert_int_equal(state_dir_create(f->rootfd, "c1", &err), -1);
    assert_err_contains(err, "container `c1` already exists");
    err_free(&err);

    /* A directory without state.json (a create in progress or a crashed
     * one) counts as nonexistent. */
    close(dirfd);
    assert_int_equal(state_dir_open(f->rootfd, "c1", &err), -1);
    assert_err_contains(err, "container `c1` does not exist");
    err_free(&err);

    assert_int_equal(state_dir_open(f->rootfd, "nope", &err), -1);
    assert_err_contains(err, "container `nope` does not exist");
    err_free(&err);

    assert_int_equal(state_dir_open(f->rootfd, "../x", &err), -1);
    assert_err_contains(err, "invalid container id");
    err_free(&err);
    assert_int_equal(state_dir_create(f->rootfd, "a/b", &err), -1);
    assert_err_contains(err, "invalid container id");
    err_free(&err);
    assert_int_equal(state_dir_create(f->rootfd, "..", &err), -1);
    err_free(&err);

    /* With state.json it opens. */
    dirfd = openat(f->rootfd, "c1", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct container_state s = {.id = "c1", .bundle = "/b"};
    assert_int_equal(state_write(dirfd, &s, &err), 0);
    close(dirfd);
    dirfd = state_dir_open(f->rootfd, "c1", &err);
    assert_true(dirfd >= 0);
    assert_null(err);
    close(dirfd);

    /* A symlink in place of a container directory is not followed. */
    assert_int_equal(symlinkat("c1", f->rootfd, "c2"), 0);
    assert_int_equal(state_dir_open(f->rootfd, "c2", &err), -1);
    assert_true(err_code(err) == ENOTDIR || err_code(err) == ELOOP);
    assert_err_contains(err, "open state of container `c2`");
    err_free(&err);
}

static void test_dir_create_long_id(void **state)
{
    struct fix *f = *state;
    struct err *err = NULL;
    char id[300];
    memset(id, 'l', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    /* Valid as an id, too long as a file name: a clear error, no crash. */
    assert_int_equal(state_dir_create(f->rootfd, id, &err), -1);
    assert_int_equal(err_code(err), ENAMETOOLONG);
    assert_err_contains(err, "create state directory for `lll");
    err_free(&err);
}

static void test_dir_remove(void **state)
{
    struct fix *f = *state;
    struct err *err = NULL;
    int dirfd = state_dir_create(f->rootfd, "gone", &err);
    assert_true(dirfd >= 0);
    struct container_state s = {.id = "gone", .bundle = "/b"};
    assert_int_equal(state_write(dirfd, &s, &err), 0);
    assert_int_equal(mkfifoat(dirfd, STATE_EXEC_FIFO, 0600), 0);
    put_file(dirfd, "paused", "");
    assert_int_equal(symlinkat("/etc/passwd", dirfd, "link"), 0);
    close(dirfd);

    assert_int_equal(state_dir_remove(f->rootfd, "gone", &err), 0);
    assert_null(err);
    assert_false(exists_at(f->rootfd, "gone"));
    assert_int_equal(access("/etc/passwd", F_OK), 0);
    /* Removing what does not exist is not an error. */
    assert_int_equal(state_dir_remove(f->rootfd, "gone", &err), 0);
    assert_null(err);
    assert_int_equal(state_dir_open(f->rootfd, "gone", &err), -1);
    err_free(&err);
}

/* state_dir_remove gets ids from state.json (lifecycle_destroy passes
 * st->id), so it must not act on an id that is not a plain name. */
static void test_dir_remove_rejects_bad_id(void **state)
{
    struct fix *f = *state;
    struct err *err = NULL;
    /* <tmp>/victim sits next to the runtime root <tmp>/root. */
    int tmpfd = open(f->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(tmpfd >= 0);
    assert_int_equal(mkdirat(tmpfd, "victim", 0755), 0);
    put_file(tmpfd, "victim/precious", "data");

    int r = state_dir_remove(f->rootfd, "../victim", &err);
    bool survived = exists_at(tmpfd, "victim/precious");
    err_free(&err);
    close(tmpfd);
    if (!survived)
        fail_msg("state_dir_remove(\"../victim\") deleted a file outside the state root "
                 "(returned %d)",
                 r);
    assert_int_equal(r, -1);
}

/* ---- status ---- */

static pid_t unused_pid(void)
{
    /* pid_max itself is never a valid pid. */
    char *data = NULL;
    struct err *err = NULL;
    if (read_file_at(AT_FDCWD, "/proc/sys/kernel/pid_max", 64, &data, NULL, &err) < 0)
        fail_msg("pid_max: %s", err->msg);
    pid_t pid = (pid_t)strtol(data, NULL, 10);
    free(data);
    return pid;
}

static void test_status(void **state)
{
    struct fix *f = *state;
    struct err *err = NULL;
    int dirfd = state_dir_create(f->rootfd, "st", &err);
    assert_true(dirfd >= 0);
    char pst;
    uint64_t start;
    assert_int_equal(proc_stat(getpid(), &pst, &start), 0);

    struct container_state s = {.id = "st", .bundle = "/b", .pid = getpid(), .start_time = start};
    assert_int_equal(state_status(dirfd, &s), STATUS_RUNNING);

    /* Same pid, another start time: the pid was reused. */
    s.start_time = start + 1;
    assert_int_equal(state_status(dirfd, &s), STATUS_STOPPED);
    s.start_time = start;

    /* A pid that cannot exist, and no pid at all. */
    struct container_state gone = {.id = "st", .bundle = "/b", .pid = unused_pid(),
                                   .start_time = start};
    assert_int_equal(state_status(dirfd, &gone), STATUS_STOPPED);
    gone.pid = 0;
    assert_int_equal(state_status(dirfd, &gone), STATUS_STOPPED);
    gone.pid = -1;
    assert_int_equal(state_status(dirfd, &gone), STATUS_STOPPED);

    /* exec.fifo present: created (not yet started). */
    assert_int_equal(mkfifoat(dirfd, STATE_EXEC_FIFO, 0600), 0);
    assert_int_equal(state_status(dirfd, &s), STATUS_CREATED);
    /* ... but a dead init is stopped whatever files remain. */
    assert_int_equal(state_status(dirfd, &gone), STATUS_STOPPED);
    assert_int_equal(unlinkat(dirfd, STATE_EXEC_FIFO, 0), 0);
    assert_int_equal(state_status(dirfd, &s), STATUS_RUNNING);

    put_file(dirfd, "paused", "");
    assert_int_equal(state_status(dirfd, &s), STATUS_PAUSED);
    close(dirfd);
}

static void test_status_zombie(void **state)
{
    struct fix *f = *state;
    struct err *err = NULL;
    int dirfd = state_dir_create(f->rootfd, "z", &err);
    assert_true(dirfd >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    /* Wait for the exit without reaping: the child stays a zombie. */
    siginfo_t si;
    assert_int_equal(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
    char pst;
    uint64_t start;
    assert_int_equal(proc_stat(pid, &pst, &start), 0);
    assert_int_equal(pst, 'Z');
    struct container_state s = {.id = "z", .bundle = "/b", .pid = pid, .start_time = start};
    assert_int_equal(state_status(dirfd, &s), STATUS_STOPPED);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    close(dirfd);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(state_status_name(STATUS_CREATING), "creating");
    assert_string_equal(state_status_name(STATUS_CREATED), "created");
    assert_string_equal(state_status_name(STATUS_RUNNING), "running");
    assert_string_equal(state_status_name(STATUS_PAUSED), "paused");
    assert_string_equal(state_status_name(STATUS_STOPPED), "stopped");
    assert_string_equal(state_status_name((enum container_status)99), "unknown");
}

static const char *jstr(struct json_object *o, const char *k)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, k, &v))
        fail_msg("no `%s` in the state JSON", k);
    return json_object_get_string(v);
}

static void test_oci_json(void **state)
{
    (void)state;
    struct oci_kv ann[] = {{"org.example/key", "v\"1"}};
    struct container_state s = {
        .id = "j1", .bundle = "/srv/b", .rootfs = "/srv/b/rootfs",
        .created = "2024-01-02T03:04:05.000000001Z", .pid = 77, .annotations = ann,
        .n_annotations = 1,
    };
    char *doc = state_to_oci_json(&s, STATUS_RUNNING);
    assert_non_null(doc);
    assert_non_null(strstr(doc, "\"org.example/key\"")); /* no escaped slashes */
    struct json_object *o = json_tokener_parse(doc);
    assert_non_null(o);
    assert_string_equal(jstr(o, "ociVersion"), OCI_VERSION);
    assert_string_equal(jstr(o, "id"), "j1");
    assert_string_equal(jstr(o, "status"), "running");
    assert_string_equal(jstr(o, "bundle"), "/srv/b");
    assert_string_equal(jstr(o, "rootfs"), "/srv/b/rootfs");
    assert_string_equal(jstr(o, "created"), "2024-01-02T03:04:05.000000001Z");
    struct json_object *v;
    assert_true(json_object_object_get_ex(o, "pid", &v));
    assert_int_equal(json_object_get_type(v), json_type_int);
    assert_int_equal(json_object_get_int(v), 77);
    assert_true(json_object_object_get_ex(o, "annotations", &v));
    assert_int_equal(json_object_get_type(v), json_type_object);
    assert_string_equal(jstr(v, "org.example/key"), "v\"1");
    json_object_put(o);
    free(doc);

    /* A stopped container reports pid 0. */
    doc = state_to_oci_json(&s, STATUS_STOPPED);
    o = json_tokener_parse(doc);
    assert_non_null(o);
    assert_string_equal(jstr(o, "status"), "stopped");
    assert_true(json_object_object_get_ex(o, "pid", &v));
    assert_int_equal(json_object_get_int(v), 0);
    json_object_put(o);
    free(doc);

    doc = state_to_oci_json(&s, STATUS_CREATED);
    o = json_tokener_parse(doc);
    assert_string_equal(jstr(o, "status"), "created");
    assert_true(json_object_object_get_ex(o, "pid", &v));
    assert_int_equal(json_object_get_int(v), 77);
    json_object_put(o);
    free(doc);
}

static void test_now_rfc3339(void **state)
{
    (void)state;
    char *t = state_now_rfc3339();
    /* 2024-01-02T03:04:05.123456789Z */
    assert_int_equal(strlen(t), 30);
    for (int i = 0; i < 30; i++) {
        char c = t[i];
        switch (i) {
        case 4: case 7: assert_int_equal(c, '-'); break;
        case 10: assert_int_equal(c, 'T'); break;
        case 13: case 16: assert_int_equal(c, ':'); break;
        case 19: assert_int_equal(c, '.'); break;
        case 29: assert_int_equal(c, 'Z'); break;
        default: assert_true(c >= '0' && c <= '9');
        }
    }
    assert_true(strncmp(t, "20", 2) == 0);
    free(t);
}

/* ---- locking ---- */

/* Read one byte from fd within timeout_ms; 1 if read, 0 on timeout. */
static int read_byte(int fd, int timeout_ms, char *c)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r <= 0)
        return 0;
    return read(fd, c, 1) == 1;
}

static void test_lock_blocks(void **state)
{
    struct fix *f = *state;
    struct err *err = NULL;
    int dirfd = state_dir_create(f->rootfd, "locked", &err);
    assert_true(dirfd >= 0);
    struct container_state s = {.id = "locked", .bundle = "/b"};
    assert_int_equal(state_write(dirfd, &s, &err), 0);

    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Our copy of the parent's fd shares its lock: drop it. */
        close(dirfd);
        close(p[0]);
        alarm(20); /* never outlive a broken test */
        char c = 'a';
        if (write(p[1], &c, 1) != 1)
            _exit(2);
        struct err *e = NULL;
        int fd = state_dir_open(f->rootfd, "locked", &e);
        c = fd >= 0 ? 'L' : 'E';
        if (write(p[1], &c, 1) != 1)
            _exit(2);
        _exit(0);
    }
    close(p[1]);
    char c = 0;
    assert_int_equal(read_byte(p[0], 10000, &c), 1);
    assert_int_equal(c, 'a');
    /* The child is (about to be) stuck in flock: nothing comes. */
    assert_int_equal(read_byte(p[0], 300, &c), 0);
    /* Release the lock: the child gets it. */
    close(dirfd);
    assert_int_equal(read_byte(p[0], 10000, &c), 1);
    assert_int_equal(c, 'L');
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(p[0]);

    /* Without a holder, opening does not block. */
    dirfd = state_dir_open(f->rootfd, "locked", &err);
    assert_true(dirfd >= 0);
    close(dirfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_id_accepts),
        cmocka_unit_test(test_check_id_rejects),
        cmocka_unit_test_setup_teardown(test_root_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_read_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_create_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_create_long_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dir_remove_rejects_bad_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_zombie, setup, teardown),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_oci_json),
        cmocka_unit_test(test_now_rfc3339),
        cmocka_unit_test_setup_teardown(test_lock_blocks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
