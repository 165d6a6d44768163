/* libFuzzer harness: bytes as a container's state.json, read with
 * state_read. A state that reads back is then written, read again and
 * compared (the round trip must be exact), and rendered as OCI state JSON
 * (which must be valid JSON). */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"
#include "oci/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"

/* A temp dir made once: <dir>/in holds the input, <dir>/out the rewrite. */
static char dir[64];
static int infd = -1, outfd = -1, filefd = -1;

static void cleanup(void)
{
    if (infd >= 0) {
        unlinkat(infd, STATE_FILE, 0);
        close(infd);
    }
    if (outfd >= 0) {
        unlinkat(outfd, STATE_FILE, 0);
        unlinkat(outfd, "." STATE_FILE ".tmp", 0);
        close(outfd);
    }
    if (filefd >= 0)
        close(filefd);
    if (dir[0]) {
        char p[96];
        snprintf(p, sizeof(p), "%s/in", dir);
        rmdir(p);
        snprintf(p, sizeof(p), "%s/out", dir);
        rmdir(p);
        rmdir(dir);
    }
}

static void init_once(void)
{
    if (infd >= 0)
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/fuzz_state.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    atexit(cleanup);
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(d >= 0);
    CHECK(mkdirat(d, "in", 0700) == 0 && mkdirat(d, "out", 0700) == 0);
    infd = openat(d, "in", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    outfd = openat(d, "out", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(d);
    CHECK(infd >= 0 && outfd >= 0);
    filefd = openat(infd, STATE_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    CHECK(filefd >= 0);
}

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static const char *annotation(const struct container_state *st, const char *key)
{
    for (size_t i = 0; i < st->n_annotations; i++)
        if (strcmp(st->annotations[i].key, key) == 0)
            return st->annotations[i].value;
    return NULL;
}

static void roundtrip(const struct container_state *st)
{
    struct err *err = NULL;
    if (state_write(outfd, st, &err) < 0) {
        fprintf(stderr, "state_write: %s\n", err->msg);
        abort();
    }
    struct container_state *again = NULL;
    if (state_read(outfd, &again, &err) < 0) {
        /* Escaping may grow a big state past the 1 MiB read limit. */
        CHECK(err_code(err) == EFBIG);
        err_free(&err);
        return;
    }
    CHECK(same_str(st->id, again->id));
    CHECK(same_str(st->bundle, again->bundle));
    CHECK(same_str(st->rootfs, again->rootfs));
    CHECK(same_str(st->created, again->created));
    CHECK(same_str(st->backend, again->backend));
    CHECK(same_str(st->cgroup, again->cgroup));
    CHECK(st->pid == again->pid);
    CHECK(st->start_time == again->start_time);
    CHECK(st->own_pidns == again->own_pidns);
    CHECK(st->owner == again->owner);
    CHECK(st->n_annotations == again->n_annotations);
    for (size_t i = 0; i < st->n_annotations; i++)
        CHECK(same_str(st->annotations[i].value, annotation(again, st->annotations[i].key)));
    state_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    CHECK(ftruncate(filefd, 0) == 0);
    CHECK(size == 0 || pwrite(filefd, data, size, 0) == (ssize_t)size);

    struct container_state *st = NULL;
    struct err *err = NULL;
    if (state_read(infd, &st, &err) < 0) {
        CHECK(st == NULL);
        CHECK(err != NULL && err->msg != NULL);
        err_free(&err);
        return 0;
    }
    CHECK(st != NULL && err == NULL);
    CHECK(st->id != NULL && st->bundle != NULL);

    for (int s = STATUS_CREATING; s <= STATUS_STOPPED; s++) {
        char *doc = state_to_oci_json(st, (enum container_status)s);
        CHECK(doc != NULL);
        struct json_object *o = json_tokener_parse(doc);
        CHECK(o != NULL && json_object_get_type(o) == json_type_object);
        json_object_put(o);
        free(doc);
    }
    roundtrip(st);
    state_free(st);
    return 0;
}
