/* Unit tests of src/common (util, err) and signal_parse. */
#include "helpers.h"

#include <json-c/json.h>
#include <limits.h>
#include <signal.h>

#include "common/cleanup.h"
#include "runtime/container.h"

/* ---- signal_parse ---- */

static void test_signal_names(void **state)
{
    (void)state;
    assert_int_equal(signal_parse("KILL"), SIGKILL);
    assert_int_equal(signal_parse("SIGKILL"), SIGKILL);
    assert_int_equal(signal_parse("sigkill"), SIGKILL);
    assert_int_equal(signal_parse("kill"), SIGKILL);
    assert_int_equal(signal_parse("SigTerm"), SIGTERM);
    assert_int_equal(signal_parse("TERM"), SIGTERM);
    assert_int_equal(signal_parse("HUP"), SIGHUP);
    assert_int_equal(signal_parse("SIGUSR1"), SIGUSR1);
    assert_int_equal(signal_parse("usr2"), SIGUSR2);
    assert_int_equal(signal_parse("WINCH"), SIGWINCH);
    assert_int_equal(signal_parse("IOT"), SIGABRT);
    assert_int_equal(signal_parse("SIGCHLD"), SIGCHLD);
    assert_int_equal(signal_parse("STOP"), SIGSTOP);
    assert_int_equal(signal_parse("SIGSYS"), SIGSYS);
}

static void test_signal_numbers(void **state)
{
    (void)state;
    assert_int_equal(signal_parse("9"), 9);
    assert_int_equal(signal_parse("1"), 1);
    assert_int_equal(signal_parse("15"), 15);
    assert_int_equal(signal_parse("09"), 9);
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", SIGRTMAX);
    assert_int_equal(signal_parse(buf), SIGRTMAX);
    snprintf(buf, sizeof(buf), "%d", SIGRTMAX + 1);
    assert_int_equal(signal_parse(buf), -1);
    assert_int_equal(signal_parse("0"), -1);
    assert_int_equal(signal_parse("-9"), -1);
    assert_int_equal(signal_parse("+9"), -1);
    assert_int_equal(signal_parse(" 9"), -1);
    assert_int_equal(signal_parse("9 "), -1);
    assert_int_equal(signal_parse("0x9"), -1);
    assert_int_equal(signal_parse("1.5"), -1);
    assert_int_equal(signal_parse("99999999999999999999999"), -1);
}

static void test_signal_realtime(void **state)
{
    (void)state;
    char buf[32];
    assert_int_equal(signal_parse("RTMIN"), SIGRTMIN);
    assert_int_equal(signal_parse("SIGRTMIN"), SIGRTMIN);
    assert_int_equal(signal_parse("rtmin"), SIGRTMIN);
    assert_int_equal(signal_parse("RTMIN+1"), SIGRTMIN + 1);
    assert_int_equal(signal_parse("SIGRTMIN+3"), SIGRTMIN + 3);
    assert_int_equal(signal_parse("sigrtmin+2"), SIGRTMIN + 2);
    assert_int_equal(signal_parse("RTMIN+0"), SIGRTMIN);
    assert_int_equal(signal_parse("RTMAX"), SIGRTMAX);
    assert_int_equal(signal_parse("SIGRTMAX-1"), SIGRTMAX - 1);
    assert_int_equal(signal_parse("rtmax-2"), SIGRTMAX - 2);
    snprintf(buf, sizeof(buf), "RTMIN+%d", SIGRTMAX - SIGRTMIN);
    assert_int_equal(signal_parse(buf), SIGRTMAX);
    snprintf(buf, sizeof(buf), "RTMIN+%d", SIGRTMAX - SIGRTMIN + 1);
    assert_int_equal(signal_parse(buf), -1);
    snprintf(buf, sizeof(buf), "RTMAX-%d", SIGRTMAX - SIGRTMIN);
    assert_int_equal(signal_parse(buf), SIGRTMIN);
    snprintf(buf, sizeof(buf), "RTMAX-%d", SIGRTMAX - SIGRTMIN + 1);
    assert_int_equal(signal_parse(buf), -1);
    assert_int_equal(signal_parse("RTMIN-1"), -1);
    assert_int_equal(signal_parse("RTMAX+1"), -1);
    assert_int_equal(signal_parse("RTMIN+"), -1);
    assert_int_equal(signal_parse("RTMIN+x"), -1);
    assert_int_equal(signal_parse("RTMIN+-1"), -1);
    assert_int_equal(signal_parse("RTMIN1"), -1);
    assert_int_equal(signal_parse("RTMINX"), -1);
    assert_int_equal(signal_parse("RTMIN+99999999999999999999"), -1);
}

static void test_signal_junk(void **state)
{
    (void)state;
    assert_int_equal(signal_parse(""), -1);
    assert_int_equal(signal_parse("SIG"), -1);
    assert_int_equal(signal_parse("sig"), -1);
    assert_int_equal(signal_parse("SIGSIGKILL"), -1);
    assert_int_equal(signal_parse("KILLX"), -1);
    assert_int_equal(signal_parse("KIL"), -1);
    assert_int_equal(signal_parse(" KILL"), -1);
    assert_int_equal(signal_parse("KILL "), -1);
    assert_int_equal(signal_parse("SIG KILL"), -1);
    assert_int_equal(signal_parse("SIG9"), -1);
    assert_int_equal(signal_parse("BOGUS"), -1);
    assert_int_equal(signal_parse("RT"), -1);
}

/* ---- parse_u64 / parse_int ---- */

static void test_parse_u64(void **state)
{
    (void)state;
    uint64_t v = 12345;
    assert_int_equal(parse_u64("0", 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(parse_u64("42", 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(parse_u64("007", 100, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(parse_u64("9", 9, &v), 0);
    assert_int_equal(v, 9);
    assert_int_equal(parse_u64("18446744073709551615", UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);

    v = 777;
    assert_int_equal(parse_u64("10", 9, &v), -1);
    assert_int_equal(parse_u64("18446744073709551616", UINT64_MAX, &v), -1);
    assert_int_equal(parse_u64("99999999999999999999999", UINT64_MAX, &v), -1);
    assert_int_equal(parse_u64("", 10, &v), -1);
    assert_int_equal(parse_u64(NULL, 10, &v), -1);
    assert_int_equal(parse_u64("-1", UINT64_MAX, &v), -1);
    assert_int_equal(parse_u64("+1", 10, &v), -1);
    assert_int_equal(parse_u64(" 1", 10, &v), -1);
    assert_int_equal(parse_u64("1 ", 10, &v), -1);
    assert_int_equal(parse_u64("1a", 10, &v), -1);
    assert_int_equal(parse_u64("0x10", 100, &v), -1);
    assert_int_equal(parse_u64("1.0", 10, &v), -1);
    assert_int_equal(v, 777); /* untouched on failure */
}

static void test_parse_int(void **state)
{
    (void)state;
    int v = 5;
    assert_int_equal(parse_int("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(parse_int("-5", &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(parse_int("123", &v), 0);
    assert_int_equal(v, 123);
    assert_int_equal(parse_int("2147483647", &v), 0);
    assert_int_equal(v, INT_MAX);
    assert_int_equal(parse_int("-2147483648", &v), 0);
    assert_int_equal(v, INT_MIN);

    v = 99;
    assert_int_equal(parse_int("2147483648", &v), -1);
    assert_int_equal(parse_int("-2147483649", &v), -1);
    assert_int_equal(parse_int("99999999999999999999", &v), -1);
    assert_int_equal(parse_int("", &v), -1);
    assert_int_equal(parse_int(NULL, &v), -1);
    assert_int_equal(parse_int("1x", &v), -1);
    assert_int_equal(parse_int("1 ", &v), -1);
    assert_int_equal(parse_int("abc", &v), -1);
    assert_int_equal(parse_int("-", &v), -1);
    assert_int_equal(parse_int("0x10", &v), -1);
    assert_int_equal(v, 99);
}

/* ---- json_escape ---- */

static void test_json_escape_basic(void **state)
{
    (void)state;
    char out[128];
    json_escape("plain text", out, sizeof(out));
    assert_string_equal(out, "plain text");
    json_escape("", out, sizeof(out));
    assert_string_equal(out, "");
    json_escape("a\"b\\c", out, sizeof(out));
    assert_string_equal(out, "a\\\"b\\\\c");
    json_escape("l1\nl2\r\tend", out, sizeof(out));
    assert_string_equal(out, "l1\\nl2\\r\\tend");
    json_escape("\x01\x1f\x7f", out, sizeof(out));
    assert_string_equal(out, "\\u0001\\u001f\x7f");
    json_escape("/slash/", out, sizeof(out));
    assert_string_equal(out, "/slash/");
    json_escape("caf\xc3\xa9 \xe2\x82\xac", out, sizeof(out));
    assert_string_equal(out, "caf\xc3\xa9 \xe2\x82\xac");
}

static void test_json_escape_truncation(void **state)
{
    (void)state;
    char out[16];
    memset(out, 'X', sizeof(out));
    json_escape("abc", out, 0); /* nothing written at all */
    assert_int_equal(out[0], 'X');
    json_escape("abc", out, 1);
    assert_string_equal(out, "");
    json_escape("abc", out, 3);
    assert_string_equal(out, "ab");
    json_escape("abc", out, 4);
    assert_string_equal(out, "abc");
    /* An escape sequence is never cut in half. */
    json_escape("a\"b", out, 3);
    assert_string_equal(out, "a");
    json_escape("a\"b", out, 4);
    assert_string_equal(out, "a\\\"");
    json_escape("\x01", out, 6);
    assert_string_equal(out, "");
    json_escape("\x01", out, 7);
    assert_string_equal(out, "\\u0001");
    memset(out, 'X', sizeof(out));
    json_escape("0123456789abcdefghij", out, sizeof(out));
    assert_int_equal(strlen(out), sizeof(out) - 1);
}

/* Every ASCII character survives escape + a real JSON parser. */
static void test_json_escape_roundtrip(void **state)
{
    (void)state;
    char in[128], esc[1024], doc[1100];
    for (int c = 1; c < 128; c++)
        in[c - 1] = (char)c;
    in[127] = '\0';
    json_escape(in, esc, sizeof(esc));
    snprintf(doc, sizeof(doc), "\"%s\"", esc);
    struct json_object *o = json_tokener_parse(doc);
    assert_non_null(o);
    assert_int_equal(json_object_get_type(o), json_type_string);
    assert_string_equal(json_object_get_string(o), in);
    json_object_put(o);
}

/* ---- files ---- */

struct dirfix {
    char *path;
    int fd;
};

static int dir_setup(void **state)
{
    struct dirfix *f = xcalloc(1, sizeof(*f));
    f->path = make_tmpdir("util");
    f->fd = open(f->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(f->fd >= 0);
    *state = f;
    return 0;
}

static int dir_teardown(void **state)
{
    struct dirfix *f = *state;
    close(f->fd);
    rm_rf(f->path);
    free(f->path);
    free(f);
    return 0;
}

static void test_write_file_atomic(void **state)
{
    struct dirfix *f = *state;
    struct err *err = NULL;
    assert_int_equal(write_file_atomic(f->fd, "a.json", "first", 5, &err), 0);
    assert_null(err);
    struct stat st1, st2;
    assert_int_equal(fstatat(f->fd, "a.json", &st1, 0), 0);
    assert_int_equal(st1.st_size, 5);
    assert_int_equal(st1.st_mode & 0777, 0600);

    assert_int_equal(write_file_atomic(f->fd, "a.json", "second!", 7, &err), 0);
    assert_int_equal(fstatat(f->fd, "a.json", &st2, 0), 0);
    assert_int_not_equal(st1.st_ino, st2.st_ino); /* replaced by rename, not rewritten */
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(read_file_at(f->fd, "a.json", 100, &data, &len, &err), 0);
    assert_int_equal(len, 7);
    assert_string_equal(data, "second!");
    free(data);
    assert_false(exists_at(f->fd, ".a.json.tmp"));

    /* Empty content. */
    assert_int_equal(write_file_atomic(f->fd, "empty", "", 0, &err), 0);
    assert_int_equal(fstatat(f->fd, "empty", &st1, 0), 0);
    assert_int_equal(st1.st_size, 0);
    assert_null(err);
}

static void test_write_file_atomic_symlink(void **state)
{
    struct dirfix *f = *state;
    struct err *err = NULL;
    /* The name is a symlink: it is replaced, its target never written. */
    put_file(f->fd, "target", "precious");
    assert_int_equal(symlinkat("target", f->fd, "link"), 0);
    assert_int_equal(write_file_atomic(f->fd, "link", "new", 3, &err), 0);
    struct stat st;
    assert_int_equal(fstatat(f->fd, "link", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISREG(st.st_mode));
    char *data = NULL;
    assert_int_equal(read_file_at(f->fd, "target", 100, &data, NULL, &err), 0);
    assert_string_equal(data, "precious");
    free(data);

    /* A symlink squatting the temp name is not followed either. */
    assert_int_equal(symlinkat("target", f->fd, ".b.tmp"), 0);
    assert_int_equal(write_file_atomic(f->fd, "b", "x", 1, &err), -1);
    assert_err_contains(err, "create `.b.tmp`");
    assert_int_equal(err_code(err), ELOOP);
    err_free(&err);
    assert_int_equal(read_file_at(f->fd, "target", 100, &data, NULL, &err), 0);
    assert_string_equal(data, "precious");
    free(data);
}

static void test_write_file_atomic_errors(void **state)
{
    struct dirfix *f = *state;
    struct err *err = NULL;
    /* Target is a directory: rename fails, the temp file is cleaned up. */
    assert_int_equal(mkdirat(f->fd, "adir", 0755), 0);
    assert_int_equal(write_file_atomic(f->fd, "adir", "x", 1, &err), -1);
    assert_err_contains(err, "rename `.adir.tmp` to `adir`");
    assert_int_equal(err_code(err), EISDIR);
    err_free(&err);
    assert_false(exists_at(f->fd, ".adir.tmp"));

    /* A name too long for the temp name. */
    char longname[PATH_MAX + 10];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(write_file_atomic(f->fd, longname, "x", 1, &err), -1);
    assert_int_equal(err_code(err), ENAMETOOLONG);
    err_free(&err);

    /* A closed dirfd. */
    assert_int_equal(write_file_atomic(-1, "x", "x", 1, &err), -1);
    assert_int_equal(err_code(err), EBADF);
    err_free(&err);
}

static void test_write_file_at_nofollow(void **state)
{
    struct dirfix *f = *state;
    struct err *err = NULL;
    assert_int_equal(write_file_at(f->fd, "plain", "abc", 3, &err), 0);
    put_file(f->fd, "victim", "keep");
    assert_int_equal(symlinkat("victim", f->fd, "sl"), 0);
    assert_int_equal(write_file_at(f->fd, "sl", "evil", 4, &err), -1);
    assert_int_equal(err_code(err), ELOOP);
    assert_err_contains(err, "open `sl`");
    err_free(&err);
    char *data = NULL;
    assert_int_equal(read_file_at(f->fd, "victim", 100, &data, NULL, &err), 0);
    assert_string_equal(data, "keep");
    free(data);
}

static void test_read_file_at(void **state)
{
    struct dirfix *f = *state;
    struct err *err = NULL;
    char *data = NULL;
    size_t len = 99;

    put_file(f->fd, "empty", "");
    assert_int_equal(read_file_at(f->fd, "empty", 100, &data, &len, &err), 0);
    assert_int_equal(len, 0);
    assert_string_equal(data, "");
    free(data);

    put_file(f->fd, "hello", "hello world\n");
    assert_int_equal(read_file_at(f->fd, "hello", 100, &data, &len, &err), 0);
    assert_int_equal(len, 12);
    assert_string_equal(data, "hello world\n");
    free(data);

    assert_int_equal(read_file_at(f->fd, "missing", 100, &data, &len, &err), -1);
    assert_int_equal(err_code(err), ENOENT);
    assert_err_contains(err, "open `missing`: ");
    err_free(&err);
}

static void test_read_file_at_limit(void **state)
{
    struct dirfix *f = *state;
    struct err *err = NULL;
    char *data = NULL;
    size_t len = 0;
    put_file(f->fd, "ten", "0123456789");

    assert_int_equal(read_file_at(f->fd, "ten", 9, &data, &len, &err), -1);
    assert_int_equal(err_code(err), EFBIG);
    assert_err_contains(err, "read `ten`");
    err_free(&err);
    assert_int_equal(read_file_at(f->fd, "ten", 1, &data, &len, &err), -1);
    assert_int_equal(err_code(err), EFBIG);
    err_free(&err);

    assert_int_equal(read_file_at(f->fd, "ten", 11, &data, &len, &err), 0);
    assert_int_equal(len, 10);
    assert_string_equal(data, "0123456789");
    free(data);
    data = NULL;
}

/* "Fails with EFBIG past max": a file of exactly `max` bytes is not past it. */
static void test_read_file_at_exact_limit(void **state)
{
    struct dirfix *f = *state;
    struct err *err = NULL;
    char *data = NULL;
    size_t len = 0;
    put_file(f->fd, "ten", "0123456789");
    int r = read_file_at(f->fd, "ten", 10, &data, &len, &err);
    if (r < 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", err->msg);
        err_free(&err);
        fail_msg("a 10-byte file with max 10 was refused: %s", msg);
    }
    assert_int_equal(len, 10);
    assert_string_equal(data, "0123456789");
    free(data);
}

/* Files without a size (pipes, /proc) grow the buffer as they go. */
static void test_read_file_at_pipe(void **state)
{
    (void)state;
    struct err *err = NULL;
    static char big[10000];
    memset(big, 'p', sizeof(big));
    for (int round = 0; round < 2; round++) {
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(write(p[1], big, sizeof(big)), (ssize_t)sizeof(big));
        close(p[1]);
        char path[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", p[0]);
        char *data = NULL;
        size_t len = 0;
        if (round == 0) {
            assert_int_equal(read_file_at(AT_FDCWD, path, 1 << 20, &data, &len, &err), 0);
            assert_int_equal(len, sizeof(big));
            assert_int_equal(strspn(data, "p"), sizeof(big));
            free(data);
        } else {
            assert_int_equal(read_file_at(AT_FDCWD, path, 5000, &data, &len, &err), -1);
            assert_int_equal(err_code(err), EFBIG);
            err_free(&err);
        }
        close(p[0]);
    }
}

/* ---- err ---- */

static void test_err_make(void **state)
{
    (void)state;
    struct err *err = NULL;
    assert_int_equal(err_make(&err, 0, "plain %s %d", "message", 42), -1);
    assert_non_null(err);
    assert_string_equal(err->msg, "plain message 42");
    assert_int_equal(err_code(err), 0);
    err_free(&err);
    assert_null(err);

    assert_int_equal(err_make(&err, ENOENT, "open `%s`", "/x"), -1);
    char want[128];
    snprintf(want, sizeof(want), "open `/x`: %s", strerror(ENOENT));
    assert_string_equal(err->msg, want);
    assert_int_equal(err_code(err), ENOENT);

    /* A second err_make replaces the first (and frees it: ASan checks). */
    assert_int_equal(err_make(&err, EPERM, "second"), -1);
    snprintf(want, sizeof(want), "second: %s", strerror(EPERM));
    assert_string_equal(err->msg, want);
    assert_int_equal(err_code(err), EPERM);
    err_free(&err);

    /* NULL err pointer: just the return value. */
    assert_int_equal(err_make(NULL, EIO, "ignored"), -1);
    assert_int_equal(err_code(NULL), 0);
    err_free(NULL);
    err_free(&err);
}

static void test_err_wrap(void **state)
{
    (void)state;
    struct err *err = NULL;
    err_make(&err, EACCES, "open `%s`", "config.json");
    assert_int_equal(err_wrap(&err, "bundle `%s`", "/b"), -1);
    char want[160];
    snprintf(want, sizeof(want), "bundle `/b`: open `config.json`: %s", strerror(EACCES));
    assert_string_equal(err->msg, want);
    assert_int_equal(err_code(err), EACCES); /* the code survives wrapping */
    assert_int_equal(err_wrap(&err, "create %d", 7), -1);
    snprintf(want, sizeof(want), "create 7: bundle `/b`: open `config.json`: %s",
             strerror(EACCES));
    assert_string_equal(err->msg, want);
    err_free(&err);

    /* Nothing to wrap: no error appears out of nowhere. */
    assert_int_equal(err_wrap(&err, "context"), -1);
    assert_null(err);
    assert_int_equal(err_wrap(NULL, "context"), -1);
}

static void test_err_input(void **state)
{
    (void)state;
    struct err *err = NULL;
    assert_int_equal(err_input(&err, "`%s` must be %s", "process.args", "an array"), -1);
    assert_string_equal(err->msg, "`process.args` must be an array"); /* no strerror */
    assert_int_equal(err_code(err), EINVAL);
    /* Replaces an earlier error; wraps like any other. */
    assert_int_equal(err_input(&err, "second"), -1);
    assert_int_equal(err_wrap(&err, "config.json"), -1);
    assert_string_equal(err->msg, "config.json: second");
    assert_int_equal(err_code(err), EINVAL);
    err_free(&err);
    assert_int_equal(err_input(NULL, "ignored"), -1);
}

/* ---- small helpers ---- */

static void test_small_helpers(void **state)
{
    (void)state;
    char *v[] = {"a", "b", "c", NULL};
    assert_int_equal(strv_len(v), 3);
    assert_int_equal(strv_len(NULL), 0);
    assert_int_equal(strv_len(v + 3), 0);
    assert_true(str_has_prefix("SIGKILL", "SIG"));
    assert_true(str_has_prefix("abc", ""));
    assert_false(str_has_prefix("SI", "SIG"));
    assert_false(str_has_prefix("xSIG", "SIG"));
    char *s = xasprintf("%s-%d", "id", 5);
    assert_string_equal(s, "id-5");
    free(s);
    assert_null(xstrdup(NULL));
    s = xstrdup("dup");
    assert_string_equal(s, "dup");
    free(s);
    cleanup_strv char **vec = xcalloc(3, sizeof(char *));
    vec[0] = xstrdup("x");
    vec[1] = xstrdup("y");
    assert_int_equal(strv_len(vec), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signal_names),
        cmocka_unit_test(test_signal_numbers),
        cmocka_unit_test(test_signal_realtime),
        cmocka_unit_test(test_signal_junk),
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_parse_int),
        cmocka_unit_test(test_json_escape_basic),
        cmocka_unit_test(test_json_escape_truncation),
        cmocka_unit_test(test_json_escape_roundtrip),
        cmocka_unit_test_setup_teardown(test_write_file_atomic, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_write_file_atomic_symlink, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_write_file_atomic_errors, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_write_file_at_nofollow, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_read_file_at, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_read_file_at_limit, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_read_file_at_exact_limit, dir_setup, dir_teardown),
        cmocka_unit_test(test_read_file_at_pipe),
        cmocka_unit_test(test_err_make),
        cmocka_unit_test(test_err_wrap),
        cmocka_unit_test(test_err_input),
        cmocka_unit_test(test_small_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
