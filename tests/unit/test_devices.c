/* The cgroup v2 device program, tested for real: a child cgroup on a cgroup2
 * mount gets the program, a forked process moved into it opens devices. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/magic.h>

#include <cmocka.h>

#include "cgroup/cgroup.h"
#include "common/err.h"

static char cgdir[256];

/* A cgroup2 directory we may create children in, or skip. */
static const char *cgroup2_root(void)
{
    static const char *cands[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
    for (size_t i = 0; i < 2; i++) {
        struct statfs s;
        if (statfs(cands[i], &s) == 0 && s.f_type == CGROUP2_SUPER_MAGIC)
            return cands[i];
    }
    return NULL;
}

/* Open `dev` from a process inside the cgroup; returns its errno (0: opened). */
static int open_in_cgroup(const char *dev)
{
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        char procs[300];
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgdir);
        int fd = open(procs, O_WRONLY);
        int e = 0;
        if (fd < 0 || write(fd, "0", 1) != 1)
            e = 1000;
        else {
            int d = open(dev, O_RDONLY);
            e = d < 0 ? errno : 0;
        }
        if (write(pipefd[1], &e, sizeof(e)) < 0)
            _exit(2);
        _exit(0);
    }
    int e = -1;
    assert_int_equal(read(pipefd[0], &e, sizeof(e)), (ssize_t)sizeof(e));
    waitpid(pid, NULL, 0);
    close(pipefd[0]);
    close(pipefd[1]);
    return e;
}

static void test_v2_program(void **state)
{
    (void)state;
    const char *root = cgroup2_root();
    if (geteuid() != 0 || root == NULL) {
        print_message("skipped: needs root and a cgroup2 mount\n");
        skip();
    }
    snprintf(cgdir, sizeof(cgdir), "%s/cocoon-unit-dev-%d", root, (int)getpid());
    assert_int_equal(mkdir(cgdir, 0755), 0);
    struct cgroup cg = {.mode = CGROUP_V2, .n = 1};
    cg.names[0] = "";
    cg.dirfds[0] = open(cgdir, O_RDONLY | O_DIRECTORY);
    assert_true(cg.dirfds[0] >= 0);
    /* deny everything, then allow /dev/zero read-only; defaults add /dev/null */
    struct json_object *rules = json_tokener_parse(
        "[{\"allow\":false,\"access\":\"rwm\"},"
        "{\"allow\":true,\"type\":\"c\",\"major\":1,\"minor\":5,\"access\":\"r\"}]");
    struct err *err = NULL;
    int r = cgroup_apply_devices(rules, &cg, &err);
    if (r < 0)
        fail_msg("%s", err->msg);
    assert_int_equal(open_in_cgroup("/dev/null"), 0);      /* a default device */
    assert_int_equal(open_in_cgroup("/dev/zero"), 0);      /* allowed, read */
    assert_int_equal(open_in_cgroup("/dev/full"), 0);      /* a default device */
    int e = open_in_cgroup("/dev/kmsg");                    /* 1:11, denied */
    assert_int_equal(e, EPERM);
    json_object_put(rules);
    close(cg.dirfds[0]);
    rmdir(cgdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_v2_program)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
