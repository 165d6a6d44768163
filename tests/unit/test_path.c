/* Unit tests of path resolution inside a rootfs (src/ns/path.c). */
#include "helpers.h"

#include <limits.h>

#include "ns/path.h"

/*
 * The tree (<tmp> is a fresh temp dir):
 *   <tmp>/outside/                 a host directory next to the rootfs
 *   <tmp>/root/                    the rootfs
 *     a/b/file
 *     a/c -> b                     relative, inside
 *     a/evil -> ../../..           relative, escapes
 *     a/evil2 -> ../../newthing    relative, dangling, escapes
 *     afile                        a regular file
 *     etc/passwd                   a file that exists on the host too
 *     pw -> /etc/passwd            absolute, target inside the root
 *     etclink -> /etc              absolute, target inside the root
 *     run/                         and
 *     varrun -> /run               (as on Debian: /var/run -> /run)
 *     hostabs -> <tmp>/outside     absolute, target only on the host
 *     hostmissing -> /<unique>/dir absolute, target nowhere
 *     loop1 -> loop2, loop2 -> loop1, self -> self, grow -> /grow/x
 *     dang -> newfile              relative, dangling, inside
 *     chain1 -> chain2 -> a/b      relative chain
 */
struct tree {
    char *tmp, *root, *outside, *unique;
    int tmpfd, rootfd;
};

static void mklink(int dirfd, const char *target, const char *name)
{
    if (symlinkat(target, dirfd, name) < 0)
        fail_msg("symlink %s -> %s: %s", name, target, strerror(errno));
}

static int setup(void **state)
{
    struct tree *t = xcalloc(1, sizeof(*t));
    t->tmp = make_tmpdir("path");
    t->root = xasprintf("%s/root", t->tmp);
    t->outside = xasprintf("%s/outside", t->tmp);
    t->unique = xasprintf("/cocoon-test-missing-%d", (int)getpid());
    t->tmpfd = open(t->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(t->tmpfd >= 0);
    assert_int_equal(mkdirat(t->tmpfd, "outside", 0755), 0);
    assert_int_equal(mkdirat(t->tmpfd, "root", 0755), 0);
    t->rootfd = open(t->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(t->rootfd >= 0);
    int r = t->rootfd;
    assert_int_equal(mkdirat(r, "a", 0755), 0);
    assert_int_equal(mkdirat(r, "a/b", 0755), 0);
    put_file(r, "a/b/file", "in the tree");
    mklink(r, "b", "a/c");
    mklink(r, "../../..", "a/evil");
    mklink(r, "../../newthing", "a/evil2");
    put_file(r, "afile", "plain");
    assert_int_equal(mkdirat(r, "etc", 0755), 0);
    put_file(r, "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    mklink(r, "/etc/passwd", "pw");
    mklink(r, "/etc", "etclink");
    assert_int_equal(mkdirat(r, "run", 0755), 0);
    mklink(r, "/run", "varrun");
    mklink(r, t->outside, "hostabs");
    char *missing = xasprintf("%s/dir", t->unique);
    mklink(r, missing, "hostmissing");
    free(missing);
    mklink(r, "loop2", "loop1");
    mklink(r, "loop1", "loop2");
    mklink(r, "self", "self");
    mklink(r, "/grow/x", "grow");
    mklink(r, "newfile", "dang");
    mklink(r, "chain2", "chain1");
    mklink(r, "a/b", "chain2");
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tree *t = *state;
    close(t->rootfd);
    close(t->tmpfd);
    rm_rf(t->tmp);
    free(t->tmp);
    free(t->root);
    free(t->outside);
    free(t->unique);
    free(t);
    return 0;
}

/* The fd refers to <root>/<rel> (same inode and device). */
static void assert_fd_is(int fd, int rootfd, const char *rel)
{
    struct stat a, b;
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &a), 0);
    if (fstatat(rootfd, rel, &b, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) < 0)
        fail_msg("stat %s: %s", rel, strerror(errno));
    if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
        fail_msg("the fd is not `%s` inside the root", rel);
    assert_true((fcntl(fd, F_GETFL) & O_PATH) != 0);
}

/* Nothing appeared in <tmp> or <tmp>/outside. */
static void assert_outside_untouched(const struct tree *t)
{
    DIR *d = opendir(t->outside);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            fail_msg("`%s` was created outside the root", de->d_name);
    closedir(d);
    d = opendir(t->tmp);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
            strcmp(de->d_name, "root") != 0 && strcmp(de->d_name, "outside") != 0)
            fail_msg("`%s` was created next to the root", de->d_name);
    closedir(d);
}

/* Resolve expecting failure with errno `code` and a message naming the path. */
static void expect_fail(struct tree *t, const char *path, enum path_create create, int code)
{
    struct err *err = NULL;
    int fds = count_open_fds();
    int fd = path_resolve_in_root(t->rootfd, path, create, "mount destination", &err);
    if (fd >= 0) {
        close(fd);
        fail_msg("`%s` resolved, expected %s", path, strerror(code));
    }
    assert_int_equal(fd, -1);
    if (err_code(err) != code) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", err ? err->msg : "?");
        err_free(&err);
        fail_msg("`%s`: got `%s`, expected %s", path, msg, strerror(code));
    }
    char *want = xasprintf("mount destination `%s`", path);
    assert_err_contains(err, want);
    free(want);
    err_free(&err);
    assert_int_equal(count_open_fds(), fds);
}

static int resolve(struct tree *t, const char *path, enum path_create create)
{
    struct err *err = NULL;
    int fds = count_open_fds();
    int fd = path_resolve_in_root(t->rootfd, path, create, "test path", &err);
    if (fd < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", err ? err->msg : "?");
        err_free(&err);
        fail_msg("`%s`: %s", path, msg);
    }
    assert_null(err);
    assert_int_equal(count_open_fds(), fds + 1);
    return fd;
}

static void expect_resolves_to(struct tree *t, const char *path, enum path_create create,
                               const char *rel)
{
    int fd = resolve(t, path, create);
    assert_fd_is(fd, t->rootfd, rel);
    close(fd);
}

/* ---- plain paths ---- */

static void test_plain(void **state)
{
    struct tree *t = *state;
    expect_resolves_to(t, "/a/b/file", PATH_NO_CREATE, "a/b/file");
    expect_resolves_to(t, "a/b/file", PATH_NO_CREATE, "a/b/file");
    expect_resolves_to(t, "//a///b/./file", PATH_NO_CREATE, "a/b/file");
    expect_resolves_to(t, "/a/b/", PATH_NO_CREATE, "a/b");
    expect_resolves_to(t, "/a/b/file", PATH_MKDIR, "a/b/file");
    expect_resolves_to(t, "/", PATH_NO_CREATE, "");
    expect_resolves_to(t, "", PATH_NO_CREATE, "");
    expect_resolves_to(t, ".", PATH_NO_CREATE, "");
    expect_resolves_to(t, "/./.", PATH_NO_CREATE, "");
    expect_fail(t, "/a/missing", PATH_NO_CREATE, ENOENT);
    expect_fail(t, "/missing/deeper", PATH_NO_CREATE, ENOENT);
    assert_false(exists_at(t->rootfd, "missing"));
}

static void test_create(void **state)
{
    struct tree *t = *state;
    struct stat st;
    expect_resolves_to(t, "/x/y/z", PATH_MKDIR, "x/y/z");
    assert_int_equal(fstatat(t->rootfd, "x/y/z", &st, 0), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* Again: it exists now. */
    expect_resolves_to(t, "/x/y/z", PATH_MKDIR, "x/y/z");
    expect_resolves_to(t, "/x/y/z", PATH_NO_CREATE, "x/y/z");

    expect_resolves_to(t, "/m/n/f", PATH_MKFILE, "m/n/f");
    assert_int_equal(fstatat(t->rootfd, "m/n", &st, 0), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(fstatat(t->rootfd, "m/n/f", &st, 0), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 0);

    /* An existing file is returned as is, content kept. */
    expect_resolves_to(t, "/a/b/file", PATH_MKFILE, "a/b/file");
    assert_int_equal(fstatat(t->rootfd, "a/b/file", &st, 0), 0);
    assert_int_equal(st.st_size, 11);
    /* An existing directory as the last component of MKFILE. */
    expect_resolves_to(t, "/a/b", PATH_MKFILE, "a/b");

    /* A relative dangling symlink is completed inside the root. */
    expect_resolves_to(t, "/dang", PATH_MKFILE, "newfile");
    assert_int_equal(fstatat(t->rootfd, "newfile", &st, 0), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_outside_untouched(t);
}

/* ---- .. ---- */

static void test_dotdot_inside(void **state)
{
    struct tree *t = *state;
    expect_resolves_to(t, "/a/b/../b/file", PATH_NO_CREATE, "a/b/file");
    expect_resolves_to(t, "/a/../a/b/file", PATH_NO_CREATE, "a/b/file");
    expect_resolves_to(t, "/a/..", PATH_NO_CREATE, "");
    expect_resolves_to(t, "a/b/../..", PATH_NO_CREATE, "");
    /* .. after a symlink is taken from the symlink's target. */
    expect_resolves_to(t, "/a/c/../b/file", PATH_NO_CREATE, "a/b/file");
    expect_resolves_to(t, "/etclink/../a/b/file", PATH_NO_CREATE, "a/b/file");
    expect_resolves_to(t, "/new1/../new2", PATH_MKDIR, "new2");
    assert_true(exists_at(t->rootfd, "new1"));
    assert_outside_untouched(t);
}

static void test_dotdot_escape(void **state)
{
    struct tree *t = *state;
    expect_fail(t, "/..", PATH_NO_CREATE, EXDEV);
    expect_fail(t, "..", PATH_NO_CREATE, EXDEV);
    expect_fail(t, "/../outside", PATH_NO_CREATE, EXDEV);
    expect_fail(t, "/a/../../outside/x", PATH_MKDIR, EXDEV);
    expect_fail(t, "/a/b/../../../outside/f", PATH_MKFILE, EXDEV);
    expect_fail(t, "/newdir/../../outside/x", PATH_MKDIR, EXDEV);
    expect_fail(t, "/../../../../../../../../tmp", PATH_MKDIR, EXDEV);
    assert_outside_untouched(t);
    struct err *err = NULL;
    int fd = path_resolve_in_root(t->rootfd, "/a/../../x", PATH_NO_CREATE, "label", &err);
    assert_int_equal(fd, -1);
    assert_err_contains(err, "label `/a/../../x` escapes the rootfs through `..`");
    err_free(&err);
}

/* ---- symlinks ---- */

static void test_symlink_relative(void **state)
{
    struct tree *t = *state;
    expect_resolves_to(t, "/a/c/file", PATH_NO_CREATE, "a/b/file");
    expect_resolves_to(t, "/a/c", PATH_NO_CREATE, "a/b"); /* the last one followed too */
    expect_resolves_to(t, "/chain1/file", PATH_NO_CREATE, "a/b/file");
    expect_resolves_to(t, "/a/c/newdir", PATH_MKDIR, "a/b/newdir");
}

static void test_symlink_relative_escape(void **state)
{
    struct tree *t = *state;
    expect_fail(t, "/a/evil", PATH_NO_CREATE, EXDEV);
    expect_fail(t, "/a/evil/outside", PATH_NO_CREATE, EXDEV);
    expect_fail(t, "/a/evil/outside/newdir", PATH_MKDIR, EXDEV);
    expect_fail(t, "/a/evil/outside/newfile", PATH_MKFILE, EXDEV);
    expect_fail(t, "/a/evil2", PATH_MKFILE, EXDEV);
    expect_fail(t, "/a/evil2/x", PATH_MKDIR, EXDEV);
    assert_outside_untouched(t);
}

static void test_symlink_absolute_inside(void **state)
{
    struct tree *t = *state;
    /* The root's /etc/passwd, never the host's. */
    int fd = resolve(t, "/pw", PATH_NO_CREATE);
    assert_fd_is(fd, t->rootfd, "etc/passwd");
    struct stat host, got;
    if (stat("/etc/passwd", &host) == 0) {
        assert_int_equal(fstat(fd, &got), 0);
        assert_false(host.st_ino == got.st_ino && host.st_dev == got.st_dev);
    }
    close(fd);
    expect_resolves_to(t, "/etclink/passwd", PATH_NO_CREATE, "etc/passwd");
    expect_resolves_to(t, "/etclink", PATH_MKDIR, "etc");
    expect_resolves_to(t, "/etclink/passwd", PATH_MKFILE, "etc/passwd");
    expect_resolves_to(t, "/varrun", PATH_NO_CREATE, "run");
    assert_outside_untouched(t);
}

/* An absolute symlink whose target exists inside the root, with the rest
 * of the path still to be created (a bind mount on /var/run/secrets in a
 * Debian rootfs, where /var/run -> /run). Nothing here leaves the root. */
static void test_symlink_absolute_then_create(void **state)
{
    struct tree *t = *state;
    struct err *err = NULL;
    int fd = path_resolve_in_root(t->rootfd, "/varrun/secrets", PATH_MKDIR, "mount destination",
                                  &err);
    if (fd < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", err ? err->msg : "?");
        err_free(&err);
        fail_msg("`/varrun/secrets` (varrun -> /run, /run exists) refused: %s", msg);
    }
    assert_fd_is(fd, t->rootfd, "run/secrets");
    close(fd);
    fd = path_resolve_in_root(t->rootfd, "/etclink/cocoon/conf", PATH_MKFILE, "mount destination",
                              &err);
    if (fd < 0) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", err ? err->msg : "?");
        err_free(&err);
        fail_msg("`/etclink/cocoon/conf` refused: %s", msg);
    }
    assert_fd_is(fd, t->rootfd, "etc/cocoon/conf");
    close(fd);

    /* A relative link inside the absolute target: what follows the whole
     * target may be created, a missing part of the target may not. */
    mklink(t->rootfd, "/a/c", "abs_c");              /* a/c -> b */
    mklink(t->rootfd, "/a/c/missingdir", "abs_c_missing");
    expect_resolves_to(t, "/abs_c/newdir", PATH_MKDIR, "a/b/newdir");
    expect_fail(t, "/abs_c_missing", PATH_MKDIR, EXDEV);
    expect_fail(t, "/abs_c_missing/x", PATH_MKFILE, EXDEV);
    assert_false(exists_at(t->rootfd, "a/b/missingdir"));
    assert_outside_untouched(t);
}

static void test_symlink_absolute_missing(void **state)
{
    struct tree *t = *state;
    /* <tmp>/outside exists on the host but not inside the root. */
    expect_fail(t, "/hostabs", PATH_NO_CREATE, ENOENT);
    expect_fail(t, "/hostabs", PATH_MKDIR, EXDEV);
    expect_fail(t, "/hostabs/x", PATH_MKDIR, EXDEV);
    expect_fail(t, "/hostabs/f", PATH_MKFILE, EXDEV);
    expect_fail(t, "/hostmissing", PATH_MKDIR, EXDEV);
    expect_fail(t, "/hostmissing", PATH_MKFILE, EXDEV);
    assert_outside_untouched(t);
    /* Nothing created inside the root either, nor on the host. */
    char *first = xstrdup(t->tmp + 1);
    *strchrnul(first, '/') = '\0';
    assert_false(exists_at(t->rootfd, first));
    free(first);
    assert_false(exists_at(t->rootfd, t->unique + 1));
    assert_int_equal(access(t->unique, F_OK), -1);

    struct err *err = NULL;
    int fd = path_resolve_in_root(t->rootfd, "/hostmissing", PATH_MKDIR, "mount destination", &err);
    assert_int_equal(fd, -1);
    assert_err_contains(err, "escapes the rootfs through symlink `hostmissing -> ");
    err_free(&err);
}

static void test_symlink_loops(void **state)
{
    struct tree *t = *state;
    expect_fail(t, "/loop1", PATH_NO_CREATE, ELOOP);
    expect_fail(t, "/loop2/x", PATH_MKDIR, ELOOP);
    expect_fail(t, "/self", PATH_MKFILE, ELOOP);
    expect_fail(t, "/grow", PATH_NO_CREATE, ELOOP);
    assert_outside_untouched(t);
}

/* 40 links in a row are fine (as for the kernel), 41 are a loop. */
static void test_symlink_limit(void **state)
{
    struct tree *t = *state;
    char name[32], target[32];
    assert_int_equal(mkdirat(t->rootfd, "l", 0755), 0);
    for (int i = 0; i < 41; i++) {
        snprintf(name, sizeof(name), "l/%d", i);
        snprintf(target, sizeof(target), "%d", i + 1);
        if (i == 40)
            snprintf(target, sizeof(target), "../a");
        mklink(t->rootfd, target, name);
    }
    expect_resolves_to(t, "/l/1/b/file", PATH_NO_CREATE, "a/b/file");
    expect_fail(t, "/l/0/b/file", PATH_NO_CREATE, ELOOP);
}

static void test_not_a_directory(void **state)
{
    struct tree *t = *state;
    expect_fail(t, "/afile/x", PATH_NO_CREATE, ENOTDIR);
    expect_fail(t, "/afile/x", PATH_MKDIR, ENOTDIR);
    expect_fail(t, "/a/b/file/x/y", PATH_MKFILE, ENOTDIR);
    expect_fail(t, "/pw/x", PATH_MKDIR, ENOTDIR);
    struct stat st;
    assert_int_equal(fstatat(t->rootfd, "afile", &st, 0), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 5);
}

static void test_too_long(void **state)
{
    struct tree *t = *state;
    char *p = xmalloc(PATH_MAX + 2);
    memset(p, 'a', PATH_MAX + 1);
    for (int i = 0; i < PATH_MAX; i += 100)
        p[i] = '/';
    p[PATH_MAX + 1] = '\0';
    struct err *err = NULL;
    assert_int_equal(path_resolve_in_root(t->rootfd, p, PATH_MKDIR, "x", &err), -1);
    assert_int_equal(err_code(err), ENAMETOOLONG);
    err_free(&err);
    free(p);
    assert_false(exists_at(t->rootfd, "aaaaaaaaaa"));
}

/* ---- path_resolve_parent ---- */

static void test_parent(void **state)
{
    struct tree *t = *state;
    struct err *err = NULL;
    const char *leaf = NULL;
    static const char p1[] = "/a/b/newleaf";
    int fd = path_resolve_parent(t->rootfd, p1, &leaf, "device", &err);
    assert_fd_is(fd, t->rootfd, "a/b");
    assert_ptr_equal(leaf, p1 + 5);
    assert_string_equal(leaf, "newleaf");
    assert_false(exists_at(t->rootfd, "a/b/newleaf")); /* the leaf is not created */
    close(fd);

    fd = path_resolve_parent(t->rootfd, "/dev/net/tun", &leaf, "device", &err);
    assert_fd_is(fd, t->rootfd, "dev/net");
    assert_string_equal(leaf, "tun");
    close(fd);

    fd = path_resolve_parent(t->rootfd, "/leaf", &leaf, "device", &err);
    assert_fd_is(fd, t->rootfd, "");
    assert_string_equal(leaf, "leaf");
    close(fd);
    fd = path_resolve_parent(t->rootfd, "leaf", &leaf, "device", &err);
    assert_fd_is(fd, t->rootfd, "");
    assert_string_equal(leaf, "leaf");
    close(fd);

    /* Through a relative symlink. */
    fd = path_resolve_parent(t->rootfd, "/a/c/x", &leaf, "device", &err);
    assert_fd_is(fd, t->rootfd, "a/b");
    assert_string_equal(leaf, "x");
    close(fd);
    assert_null(err);
}

static void test_parent_errors(void **state)
{
    struct tree *t = *state;
    static const char *const not_names[] = {"/", "", "/a/..", "/a/.", "..", ".", "/a/b/", "//"};
    for (size_t i = 0; i < sizeof(not_names) / sizeof(not_names[0]); i++) {
        struct err *err = NULL;
        const char *leaf = NULL;
        int fd = path_resolve_parent(t->rootfd, not_names[i], &leaf, "device", &err);
        if (fd >= 0)
            fail_msg("`%s` resolved as a parent + leaf `%s`", not_names[i], leaf);
        assert_int_equal(err_code(err), EINVAL);
        assert_err_contains(err, "not a file name");
        err_free(&err);
    }
    static const struct {
        const char *path;
        int code;
    } bad[] = {
        {"/../x", EXDEV},
        {"/a/../../x", EXDEV},
        {"/a/evil/outside/x", EXDEV},
        {"/hostabs/x", EXDEV},
        {"/loop1/x", ELOOP},
        {"/a/b/file/x/y", ENOTDIR},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct err *err = NULL;
        const char *leaf = NULL;
        int fds = count_open_fds();
        int fd = path_resolve_parent(t->rootfd, bad[i].path, &leaf, "device", &err);
        if (fd >= 0)
            fail_msg("`%s` resolved", bad[i].path);
        if (err_code(err) != bad[i].code) {
            char msg[512];
            snprintf(msg, sizeof(msg), "%s", err ? err->msg : "?");
            err_free(&err);
            fail_msg("`%s`: got `%s`, expected %s", bad[i].path, msg, strerror(bad[i].code));
        }
        assert_err_contains(err, "device `");
        err_free(&err);
        assert_int_equal(count_open_fds(), fds);
    }
    assert_outside_untouched(t);
}

/* The parent returned is a directory: a regular file in its place is
 * ENOTDIR, as PATH_MKDIR means "a directory, the last one too". */
static void test_parent_not_dir(void **state)
{
    struct tree *t = *state;
    struct err *err = NULL;
    const char *leaf = NULL;
    int fd = path_resolve_parent(t->rootfd, "/afile/x", &leaf, "device", &err);
    if (fd >= 0) {
        struct stat st;
        assert_int_equal(fstat(fd, &st), 0);
        close(fd);
        fail_msg("parent of `/afile/x` resolved to a %s, not a directory",
                 S_ISREG(st.st_mode) ? "regular file" : "non-directory");
    }
    assert_int_equal(err_code(err), ENOTDIR);
    assert_err_contains(err, "device `/afile/x`");
    err_free(&err);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_plain),
        T(test_create),
        T(test_dotdot_inside),
        T(test_dotdot_escape),
        T(test_symlink_relative),
        T(test_symlink_relative_escape),
        T(test_symlink_absolute_inside),
        T(test_symlink_absolute_then_create),
        T(test_symlink_absolute_missing),
        T(test_symlink_loops),
        T(test_symlink_limit),
        T(test_not_a_directory),
        T(test_too_long),
        T(test_parent),
        T(test_parent_errors),
        T(test_parent_not_dir),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
