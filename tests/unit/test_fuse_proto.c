/* Unit tests of the FUSE protocol core (src/fs): the dispatcher fed
 * hand-built requests, hostile ones included, serving a temp directory. */
#include "helpers.h"

#include <limits.h>
#include <sys/uio.h>

#include "fs/fs.h"
#include "fs/fuse_abi.h"

#define OUTSZ (1u << 20) + 8192

struct t {
    char *dir;
    int dirfd;
    struct fs_session *s;
    uint8_t *out;
    uint64_t unique;
};

/* Send one request with `body`; returns the reply length; *err gets the
 * reply's error (0 on success). */
static ssize_t call_full(struct t *t, uint32_t opcode, uint64_t nodeid, const void *body,
                         size_t blen, size_t outcap, int *err)
{
    uint8_t *in = malloc(sizeof(struct fuse_in_header) + blen);
    struct fuse_in_header h = {.len = (uint32_t)(sizeof(h) + blen), .opcode = opcode,
                               .unique = ++t->unique, .nodeid = nodeid};
    memcpy(in, &h, sizeof(h));
    if (blen)
        memcpy(in + sizeof(h), body, blen);
    memset(t->out, 0xa5, OUTSZ);
    struct iovec iov = {t->out, outcap};
    ssize_t n = fs_session_handle(t->s, in, sizeof(h) + blen, &iov, 1);
    free(in);
    if (n > 0) {
        struct fuse_out_header oh;
        memcpy(&oh, t->out, sizeof(oh));
        assert_int_equal(oh.len, n);
        assert_true(oh.unique == h.unique);
        assert_true(oh.error <= 0 && oh.error > -4096);
        if (oh.error)
            assert_int_equal(n, sizeof(oh)); /* an error carries no body */
        *err = oh.error;
    } else {
        *err = 1; /* no reply */
    }
    return n;
}

static ssize_t call(struct t *t, uint32_t opcode, uint64_t nodeid, const void *body,
                    size_t blen, int *err)
{
    return call_full(t, opcode, nodeid, body, blen, OUTSZ, err);
}

static const void *reply_body(const struct t *t)
{
    return t->out + sizeof(struct fuse_out_header);
}

static void do_init(struct t *t)
{
    struct fuse_init_in in = {.major = 7, .minor = 38, .max_readahead = 65536,
                              .flags = FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_POSIX_LOCKS |
                                       FUSE_INIT_EXT | FUSE_DO_READDIRPLUS};
    int e;
    ssize_t n = call(t, FUSE_INIT, 0, &in, sizeof(in), &e);
    assert_int_equal(e, 0);
    assert_int_equal(n, sizeof(struct fuse_out_header) + sizeof(struct fuse_init_out));
}

static int setup(void **state)
{
    struct t *t = xcalloc(1, sizeof(*t));
    t->dir = make_tmpdir("fuseproto");
    t->dirfd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(t->dirfd >= 0);
    put_file(t->dirfd, "a", "hello");
    assert_int_equal(mkdirat(t->dirfd, "sub", 0755), 0);
    put_file(t->dirfd, "sub/b", "bee");
    assert_int_equal(symlinkat("/", t->dirfd, "esc"), 0);
    assert_int_equal(symlinkat("../..", t->dirfd, "up"), 0);
    t->out = malloc(OUTSZ);
    struct fs_options o;
    fs_options_default(&o);
    struct err *err = NULL;
    assert_int_equal(fs_session_new(t->dirfd, &o, NULL, &t->s, &err), 0);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct t *t = *state;
    fs_session_free(t->s);
    close(t->dirfd);
    rm_rf(t->dir);
    free(t->dir);
    free(t->out);
    free(t);
    return 0;
}

/* LOOKUP name in parent; returns nodeid (0 for none) and the error. */
static uint64_t lookup(struct t *t, uint64_t parent, const char *name, int *err)
{
    ssize_t n = call(t, FUSE_LOOKUP, parent, name, strlen(name) + 1, err);
    if (*err || n < (ssize_t)(sizeof(struct fuse_out_header) + sizeof(struct fuse_entry_out)))
        return 0;
    struct fuse_entry_out e;
    memcpy(&e, reply_body(t), sizeof(e));
    return e.nodeid;
}

/* ---- tests ---- */

static void test_requests_before_init(void **state)
{
    struct t *t = *state;
    struct fuse_getattr_in g = {0};
    int e;
    call(t, FUSE_GETATTR, FUSE_ROOT_ID, &g, sizeof(g), &e);
    assert_int_equal(e, -EIO);
    lookup(t, FUSE_ROOT_ID, "a", &e);
    assert_int_equal(e, -EIO);
}

static void test_init_negotiation(void **state)
{
    struct t *t = *state;
    int e;
    /* Truncated INIT. */
    uint32_t half[2] = {7, 38};
    call(t, FUSE_INIT, 0, half, sizeof(half), &e);
    assert_int_equal(e, -EINVAL);
    /* A newer major: the reply carries only our version, and INIT stays open. */
    struct fuse_init_in in = {.major = 8, .minor = 0};
    ssize_t n = call(t, FUSE_INIT, 0, &in, sizeof(in), &e);
    assert_int_equal(e, 0);
    assert_int_equal(n, sizeof(struct fuse_out_header) + 8);
    /* Too old. */
    in = (struct fuse_init_in){.major = 7, .minor = 20};
    call(t, FUSE_INIT, 0, &in, sizeof(in), &e);
    assert_int_equal(e, -EPROTO);
    /* A pre-7.36 kernel sends 16 bytes. */
    struct {
        uint32_t major, minor, max_readahead, flags;
    } old = {7, 31, 4096, FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_WRITEBACK_CACHE};
    n = call(t, FUSE_INIT, 0, &old, sizeof(old), &e);
    assert_int_equal(e, 0);
    struct fs_init_out out;
    memcpy(&out, reply_body(t), sizeof(out));
    assert_int_equal(out.major, 7);
    assert_int_equal(out.minor, FUSE_KERNEL_MINOR_VERSION);
    assert_int_equal(out.flags & FUSE_WRITEBACK_CACHE, 0); /* not asked for */
    assert_int_equal(out.flags & ~old.flags, 0);          /* nothing the kernel lacks */
    assert_int_equal(out.max_pages, 256);
    assert_int_equal(out.max_write, 256 * 4096);
    assert_int_equal(out.flags2, 0);
    /* Twice is a protocol error. */
    call(t, FUSE_INIT, 0, &old, sizeof(old), &e);
    assert_int_equal(e, -EPROTO);
}

static void test_lookup_names(void **state)
{
    struct t *t = *state;
    do_init(t);
    int e;
    uint64_t a = lookup(t, FUSE_ROOT_ID, "a", &e);
    assert_int_equal(e, 0);
    assert_true(a > FUSE_ROOT_ID);
    assert_true(lookup(t, FUSE_ROOT_ID, "a", &e) == a); /* the same inode, the same id */
    lookup(t, FUSE_ROOT_ID, "sub/b", &e);
    assert_int_equal(e, -EINVAL);
    lookup(t, FUSE_ROOT_ID, "/a", &e);
    assert_int_equal(e, -EINVAL);
    lookup(t, FUSE_ROOT_ID, "", &e);
    assert_int_equal(e, -EINVAL);
    char longname[NAME_MAX + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    lookup(t, FUSE_ROOT_ID, longname, &e);
    assert_int_equal(e, -ENAMETOOLONG);
    /* No NUL inside the body. */
    call(t, FUSE_LOOKUP, FUSE_ROOT_ID, "abc", 3, &e);
    assert_int_equal(e, -EINVAL);
    /* ".." at the root is the root; "." is the directory itself. */
    assert_true(lookup(t, FUSE_ROOT_ID, "..", &e) == FUSE_ROOT_ID);
    assert_int_equal(e, 0);
    assert_true(lookup(t, FUSE_ROOT_ID, ".", &e) == FUSE_ROOT_ID);
    uint64_t sub = lookup(t, FUSE_ROOT_ID, "sub", &e);
    assert_true(lookup(t, sub, "..", &e) == FUSE_ROOT_ID);
    /* A missing name: a negative entry (nodeid 0) the kernel may cache. */
    assert_true(lookup(t, FUSE_ROOT_ID, "missing", &e) == 0);
    assert_int_equal(e, 0);
    /* LOOKUP in a file. */
    lookup(t, a, "x", &e);
    assert_int_equal(e, -ENOTDIR);
}

static void test_symlinks_are_never_followed(void **state)
{
    struct t *t = *state;
    do_init(t);
    int e;
    uint64_t esc = lookup(t, FUSE_ROOT_ID, "esc", &e);
    assert_int_equal(e, 0);
    uint64_t up = lookup(t, FUSE_ROOT_ID, "up", &e);
    assert_int_equal(e, 0);
    /* Names under a symlink node: ENOTDIR, never the target's entries. */
    lookup(t, esc, "etc", &e);
    assert_int_equal(e, -ENOTDIR);
    lookup(t, up, "tmp", &e);
    assert_int_equal(e, -ENOTDIR);
    lookup(t, esc, "..", &e);
    assert_int_equal(e, -ENOTDIR);
    struct {
        struct fuse_mkdir_in in;
        char name[8];
    } mk = {{0755, 0}, "newdir"};
    call(t, FUSE_MKDIR, esc, &mk, sizeof(mk), &e);
    assert_int_equal(e, -ENOTDIR);
    struct {
        struct fuse_create_in in;
        char name[8];
    } cr = {{O_WRONLY, 0644, 0, 0}, "pwned"};
    call(t, FUSE_CREATE, up, &cr, sizeof(cr), &e);
    assert_int_equal(e, -ENOTDIR);
    struct fuse_open_in op = {.flags = O_RDONLY};
    call(t, FUSE_OPEN, esc, &op, sizeof(op), &e);
    assert_int_equal(e, -ELOOP);
    call(t, FUSE_OPENDIR, esc, &op, sizeof(op), &e);
    assert_int_equal(e, -ENOTDIR);
    /* CREATE over the symlink's own name: O_NOFOLLOW refuses it. */
    struct {
        struct fuse_create_in in;
        char name[4];
    } over = {{O_WRONLY, 0644, 0, 0}, "esc"};
    call(t, FUSE_CREATE, FUSE_ROOT_ID, &over, sizeof(over), &e);
    assert_int_equal(e, -ELOOP);
    /* SETATTR size on the symlink node does not truncate the target. */
    struct fuse_setattr_in sa = {.valid = FATTR_SIZE, .size = 0};
    call(t, FUSE_SETATTR, esc, &sa, sizeof(sa), &e);
    assert_int_equal(e, -EINVAL);
    assert_false(exists_at(t->dirfd, "pwned"));
}

static void test_unknown_opcodes(void **state)
{
    struct t *t = *state;
    do_init(t);
    int e;
    call(t, 9999, FUSE_ROOT_ID, NULL, 0, &e);
    assert_int_equal(e, -ENOSYS);
    call(t, FUSE_IOCTL, FUSE_ROOT_ID, NULL, 0, &e);
    assert_int_equal(e, -ENOSYS);
    call(t, FUSE_BMAP, FUSE_ROOT_ID, NULL, 0, &e);
    assert_int_equal(e, -ENOSYS);
    call(t, CUSE_INIT, FUSE_ROOT_ID, NULL, 0, &e);
    assert_int_equal(e, -ENOSYS);
}

static void test_bad_nodeids_and_handles(void **state)
{
    struct t *t = *state;
    do_init(t);
    int e;
    struct fuse_getattr_in g = {0};
    uint64_t ids[] = {0, 2, 12345, UINT64_MAX, (uint64_t)(uintptr_t)t};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        call(t, FUSE_GETATTR, ids[i], &g, sizeof(g), &e);
        assert_int_equal(e, -ESTALE);
        lookup(t, ids[i], "a", &e);
        assert_int_equal(e, -ESTALE);
    }
    struct fuse_read_in rd = {.fh = 77, .size = 100};
    call(t, FUSE_READ, FUSE_ROOT_ID, &rd, sizeof(rd), &e);
    assert_int_equal(e, -EBADF);
    struct fuse_release_in rel = {.fh = 77};
    call(t, FUSE_RELEASE, FUSE_ROOT_ID, &rel, sizeof(rel), &e);
    assert_int_equal(e, -EBADF);
    struct fuse_link_in ln = {.oldnodeid = 4242};
    uint8_t body[sizeof(ln) + 4];
    memcpy(body, &ln, sizeof(ln));
    memcpy(body + sizeof(ln), "new", 4);
    call(t, FUSE_LINK, FUSE_ROOT_ID, body, sizeof(body), &e);
    assert_int_equal(e, -ESTALE);
    /* FORGET of unknown ids, of the root: no reply, no effect. */
    struct fuse_forget_in f = {.nlookup = 1000};
    assert_int_equal(call(t, FUSE_FORGET, 999, &f, sizeof(f), &e), 0);
    assert_int_equal(call(t, FUSE_FORGET, FUSE_ROOT_ID, &f, sizeof(f), &e), 0);
    call(t, FUSE_GETATTR, FUSE_ROOT_ID, &g, sizeof(g), &e);
    assert_int_equal(e, 0);
}

static void test_forget_counts(void **state)
{
    struct t *t = *state;
    do_init(t);
    int e;
    size_t base = fs_session_inodes(t->s);
    uint64_t a = 0;
    for (int i = 0; i < 3; i++)
        a = lookup(t, FUSE_ROOT_ID, "a", &e);
    assert_int_equal(fs_session_inodes(t->s), base + 1);
    struct fuse_forget_in f = {.nlookup = 2};
    call(t, FUSE_FORGET, a, &f, sizeof(f), &e);
    struct fuse_getattr_in g = {0};
    call(t, FUSE_GETATTR, a, &g, sizeof(g), &e);
    assert_int_equal(e, 0); /* one lookup left */
    /* BATCH_FORGET claiming more entries than it carries. */
    struct {
        struct fuse_batch_forget_in in;
        struct fuse_forget_one one;
    } bf = {{.count = 1000}, {.nodeid = a, .nlookup = 1}};
    assert_int_equal(call(t, FUSE_BATCH_FORGET, 0, &bf, sizeof(bf), &e), 0);
    call(t, FUSE_GETATTR, a, &g, sizeof(g), &e);
    assert_int_equal(e, -ESTALE);
    assert_int_equal(fs_session_inodes(t->s), base);
    /* A new lookup gets a new nodeid: ids are never reused. */
    assert_true(lookup(t, FUSE_ROOT_ID, "a", &e) > a);
}

static void test_truncated_bodies(void **state)
{
    struct t *t = *state;
    do_init(t);
    int e;
    uint32_t ops[] = {FUSE_GETATTR, FUSE_SETATTR, FUSE_MKNOD, FUSE_MKDIR, FUSE_RENAME,
                      FUSE_RENAME2, FUSE_LINK, FUSE_OPEN, FUSE_CREATE, FUSE_READ, FUSE_WRITE,
                      FUSE_RELEASE, FUSE_FSYNC, FUSE_SETXATTR, FUSE_GETXATTR, FUSE_LISTXATTR,
                      FUSE_FLUSH, FUSE_OPENDIR, FUSE_READDIR, FUSE_READDIRPLUS,
                      FUSE_RELEASEDIR, FUSE_ACCESS, FUSE_FALLOCATE, FUSE_LSEEK,
                      FUSE_COPY_FILE_RANGE, FUSE_GETLK, FUSE_SETLK, FUSE_SETLKW,
                      FUSE_LOOKUP, FUSE_UNLINK, FUSE_RMDIR, FUSE_SYMLINK, FUSE_REMOVEXATTR};
    uint8_t junk[7] = {1, 2, 3, 4, 5, 6, 7}; /* shorter than any op's struct, no NUL */
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        for (size_t len = 0; len <= sizeof(junk); len++) {
            call(t, ops[i], FUSE_ROOT_ID, junk, len, &e);
            assert_true(e < 0);
        }
    }
    /* A WRITE whose size claims more data than the request holds. */
    struct {
        struct fuse_write_in in;
        char data[4];
    } w = {{.fh = 1, .size = 5000}, "abc"};
    call(t, FUSE_WRITE, FUSE_ROOT_ID, &w, sizeof(w), &e);
    assert_int_equal(e, -EINVAL);
    /* SYMLINK with a name but no target. */
    call(t, FUSE_SYMLINK, FUSE_ROOT_ID, "ln", 3, &e);
    assert_int_equal(e, -EINVAL);
}

static void test_header_lengths(void **state)
{
    struct t *t = *state;
    do_init(t);
    uint8_t out[256];
    struct iovec iov = {out, sizeof(out)};
    struct fuse_in_header h = {.len = 100, .opcode = FUSE_GETATTR, .unique = 5,
                               .nodeid = FUSE_ROOT_ID};
    /* Shorter than a header: nothing to reply to. */
    assert_int_equal(fs_session_handle(t->s, &h, 10, &iov, 1), -EINVAL);
    /* h.len beyond the buffer. */
    ssize_t n = fs_session_handle(t->s, &h, sizeof(h), &iov, 1);
    assert_int_equal(n, sizeof(struct fuse_out_header));
    struct fuse_out_header oh;
    memcpy(&oh, out, sizeof(oh));
    assert_int_equal(oh.error, -EINVAL);
    /* h.len below the header size. */
    h.len = 8;
    fs_session_handle(t->s, &h, sizeof(h), &iov, 1);
    memcpy(&oh, out, sizeof(oh));
    assert_int_equal(oh.error, -EINVAL);
    /* Extension length larger than the body. */
    h.len = sizeof(h);
    h.total_extlen = 3;
    fs_session_handle(t->s, &h, sizeof(h), &iov, 1);
    memcpy(&oh, out, sizeof(oh));
    assert_int_equal(oh.error, -EINVAL);
    /* An out buffer too small for a reply header. */
    struct iovec tiny = {out, 8};
    h.total_extlen = 0;
    assert_int_equal(fs_session_handle(t->s, &h, sizeof(h), &tiny, 1), -EINVAL);
    /* A reply bigger than the out buffer: an error, not an overflow. */
    struct fuse_getattr_in g = {0};
    uint8_t req[sizeof(h) + sizeof(g)];
    h.len = sizeof(req);
    memcpy(req, &h, sizeof(h));
    memcpy(req + sizeof(h), &g, sizeof(g));
    struct iovec small = {out, 40};
    memset(out, 0x5a, sizeof(out));
    n = fs_session_handle(t->s, req, sizeof(req), &small, 1);
    assert_int_equal(n, sizeof(oh));
    memcpy(&oh, out, sizeof(oh));
    assert_int_equal(oh.error, -ERANGE);
    assert_int_equal(out[40], 0x5a);
}

/* Create `name` in the root and return its fh; *nodeid gets the inode. */
static uint64_t create(struct t *t, const char *name, uint64_t *nodeid)
{
    uint8_t body[sizeof(struct fuse_create_in) + 64];
    struct fuse_create_in in = {.flags = O_RDWR, .mode = S_IFREG | 0644};
    memcpy(body, &in, sizeof(in));
    size_t n = strlen(name) + 1;
    memcpy(body + sizeof(in), name, n);
    int e;
    call(t, FUSE_CREATE, FUSE_ROOT_ID, body, sizeof(in) + n, &e);
    assert_int_equal(e, 0);
    struct fuse_entry_out ent;
    struct fs_open_out op;
    memcpy(&ent, reply_body(t), sizeof(ent));
    memcpy(&op, (const uint8_t *)reply_body(t) + sizeof(ent), sizeof(op));
    *nodeid = ent.nodeid;
    assert_int_equal(op.backing_id, 0); /* no transport: no passthrough */
    return op.fh;
}

static void test_read_write_scatter(void **state)
{
    struct t *t = *state;
    do_init(t);
    uint64_t node;
    uint64_t fh = create(t, "rw", &node);
    struct {
        struct fuse_write_in in;
        char data[10];
    } w = {{.fh = fh, .offset = 0, .size = 10}, "0123456789"};
    int e;
    call(t, FUSE_WRITE, node, &w, sizeof(w), &e);
    assert_int_equal(e, 0);
    struct fuse_write_out wo;
    memcpy(&wo, reply_body(t), sizeof(wo));
    assert_int_equal(wo.size, 10);
    /* READ into a reply split over three iovecs (as a virtqueue gives it). */
    uint8_t a[20], b[3], c[100];
    struct iovec iov[3] = {{a, sizeof(a)}, {b, sizeof(b)}, {c, sizeof(c)}};
    struct fuse_read_in rd = {.fh = fh, .offset = 2, .size = 6};
    uint8_t req[sizeof(struct fuse_in_header) + sizeof(rd)];
    struct fuse_in_header h = {.len = sizeof(req), .opcode = FUSE_READ, .unique = 99,
                               .nodeid = node};
    memcpy(req, &h, sizeof(h));
    memcpy(req + sizeof(h), &rd, sizeof(rd));
    ssize_t n = fs_session_handle(t->s, req, sizeof(req), iov, 3);
    assert_int_equal(n, 16 + 6);
    assert_memory_equal(a + 16, "2345", 4);
    assert_memory_equal(b, "67", 2);
    /* A READ asking for more than the reply can hold gets what fits. */
    rd.offset = 0;
    rd.size = 1000;
    memcpy(req + sizeof(h), &rd, sizeof(rd));
    struct iovec one = {c, 16 + 4};
    n = fs_session_handle(t->s, req, sizeof(req), &one, 1);
    assert_int_equal(n, 20);
    assert_memory_equal(c + 16, "0123", 4);
    /* Offsets past INT64_MAX. */
    w.in.offset = UINT64_MAX - 4;
    call(t, FUSE_WRITE, node, &w, sizeof(w), &e);
    assert_int_equal(e, -EINVAL);
    /* The handle of a file is not a directory handle and vice versa. */
    struct fuse_read_in rdd = {.fh = fh, .size = 4096};
    call(t, FUSE_READDIR, FUSE_ROOT_ID, &rdd, sizeof(rdd), &e);
    assert_int_equal(e, -EBADF);
    struct fuse_release_in rel = {.fh = fh};
    call(t, FUSE_RELEASE, node, &rel, sizeof(rel), &e);
    assert_int_equal(e, 0);
    call(t, FUSE_RELEASE, node, &rel, sizeof(rel), &e);
    assert_int_equal(e, -EBADF);
}

static void test_readdir(void **state)
{
    struct t *t = *state;
    do_init(t);
    struct fuse_open_in op = {.flags = O_RDONLY};
    int e;
    call(t, FUSE_OPENDIR, FUSE_ROOT_ID, &op, sizeof(op), &e);
    assert_int_equal(e, 0);
    struct fuse_open_out oo;
    memcpy(&oo, reply_body(t), sizeof(oo));
    for (int plus = 0; plus < 2; plus++) {
        int seen = 0;
        uint64_t off = 0;
        for (;;) {
            /* A small size: several READDIRs, resuming at each d_off. */
            struct fuse_read_in rd = {.fh = oo.fh, .offset = off, .size = 200};
            ssize_t n = call(t, plus ? FUSE_READDIRPLUS : FUSE_READDIR, FUSE_ROOT_ID, &rd,
                             sizeof(rd), &e);
            assert_int_equal(e, 0);
            size_t len = (size_t)n - sizeof(struct fuse_out_header), p = 0;
            assert_true(len <= 200);
            if (len == 0)
                break;
            while (p < len) {
                const uint8_t *q = (const uint8_t *)reply_body(t) + p;
                struct fuse_entry_out ent = {0};
                if (plus) {
                    memcpy(&ent, q, sizeof(ent));
                    q += sizeof(ent);
                }
                struct fuse_dirent d;
                memcpy(&d, q, sizeof(d));
                char name[NAME_MAX + 1];
                memcpy(name, q + FUSE_NAME_OFFSET, d.namelen);
                name[d.namelen] = '\0';
                if (strcmp(name, ".") && strcmp(name, "..")) {
                    seen++;
                    if (plus)
                        assert_true(ent.nodeid > FUSE_ROOT_ID);
                } else if (plus) {
                    assert_true(ent.nodeid == 0);
                }
                off = d.off;
                p += (plus ? sizeof(ent) : 0) + FUSE_DIRENT_SIZE(&d);
            }
        }
        assert_int_equal(seen, 4); /* a, sub, esc, up */
    }
    struct fuse_release_in rel = {.fh = oo.fh};
    call(t, FUSE_RELEASEDIR, FUSE_ROOT_ID, &rel, sizeof(rel), &e);
    assert_int_equal(e, 0);
}

static void test_rename_flags_and_names(void **state)
{
    struct t *t = *state;
    do_init(t);
    int e;
    struct {
        struct fuse_rename2_in in;
        char names[16];
    } r = {{.newdir = FUSE_ROOT_ID, .flags = 0x80}, "a\0b"};
    call(t, FUSE_RENAME2, FUSE_ROOT_ID, &r, sizeof(r), &e);
    assert_int_equal(e, -EINVAL);
    r.in.flags = 0;
    memcpy(r.names, "a\0..", 5);
    call(t, FUSE_RENAME2, FUSE_ROOT_ID, &r, sizeof(r.in) + 5, &e);
    assert_int_equal(e, -EINVAL);
    memcpy(r.names, "a\0c/d", 6);
    call(t, FUSE_RENAME2, FUSE_ROOT_ID, &r, sizeof(r.in) + 6, &e);
    assert_int_equal(e, -EINVAL);
    memcpy(r.names, "a\0c", 4);
    r.in.newdir = 5555;
    call(t, FUSE_RENAME2, FUSE_ROOT_ID, &r, sizeof(r.in) + 4, &e);
    assert_int_equal(e, -ESTALE);
    r.in.newdir = FUSE_ROOT_ID;
    call(t, FUSE_RENAME2, FUSE_ROOT_ID, &r, sizeof(r.in) + 4, &e);
    assert_int_equal(e, 0);
    assert_true(exists_at(t->dirfd, "c"));
    assert_false(exists_at(t->dirfd, "a"));
    /* UNLINK ".." must not reach the parent of the source. */
    call(t, FUSE_UNLINK, FUSE_ROOT_ID, "..", 3, &e);
    assert_int_equal(e, -EINVAL);
    call(t, FUSE_RMDIR, FUSE_ROOT_ID, "..", 3, &e);
    assert_int_equal(e, -EINVAL);
}

static void test_options(void **state)
{
    (void)state;
    struct fs_options o;
    fs_options_default(&o);
    struct err *err = NULL;
    assert_int_equal(fs_options_parse(&o, "uidmap=100000:0:65536,gidmap=1:2:3/10:20:5,"
                                          "timeout=2.5,threads=8,writeback,ro,max_pages=64,"
                                          "locks=local,spin_us=20",
                                      &err),
                     0);
    assert_int_equal(o.uidmap.n, 1);
    assert_int_equal(o.gidmap.n, 2);
    assert_true(o.attr_timeout == 2.5 && o.entry_timeout == 2.5);
    assert_true(o.writeback && o.readonly && o.threads == 8 && o.max_pages == 64);
    assert_true(o.local_locks && o.spin_us == 20);
    assert_int_equal(fs_idmap_map(&o.uidmap, 100005, true), 5);
    assert_int_equal(fs_idmap_map(&o.uidmap, 5, false), 100005);
    assert_int_equal(fs_idmap_map(&o.uidmap, 7, true), 65534);
    assert_int_equal(fs_idmap_map(&o.gidmap, 24, false), 14);
    const char *bad[] = {"bogus", "uidmap=1:2", "uidmap=1:2:0", "uidmap=4294967295:0:2",
                         "threads=0", "threads=65", "max_pages=257", "timeout=-1",
                         "timeout=nan", "writeback=1", "attr_timeout=", "uidmap=a:b:c",
                         "locks=remote", "spin_us=99999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(fs_options_parse(&o, bad[i], &err), -1);
        assert_non_null(err);
        err_free(&err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_requests_before_init, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_negotiation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lookup_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinks_are_never_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_opcodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_nodeids_and_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_lengths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_write_scatter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readdir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_flags_and_names, setup, teardown),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
