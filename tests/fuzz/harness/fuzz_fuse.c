/* libFuzzer harness: bytes as a sequence of FUSE requests for the protocol
 * core (fs_session_handle), served from a small temp tree rebuilt for every
 * input. Input format: records of [u16 little-endian length][request bytes];
 * a record's bytes are the request as the kernel (or a guest) would send it,
 * header included, so lengths and fields are all the fuzzer's to break.
 * Byte 0 picks the session: bit 0 starts it initialized, bit 1 keeps one
 * inode fd, bit 2 gives it a DAX window (SETUPMAPPING maps tree files into
 * a real 4 MiB reservation). Checked: every reply is well-formed and inside
 * the buffer, and nothing outside the tree changes. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/err.h"
#include "fs/fs.h"
#include "fs/fuse_abi.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include "fuzz_check.h"
#include "fuzz_tree.h"

/* A DAX window as the virtio-fs device keeps one (a PROT_NONE reservation
 * that SETUPMAPPING maps files over), for inputs with bit 2 of byte 0. */
#define WINDOW (4u << 20)
static uint8_t *window;

static int window_map(void *ctx, int fd, uint64_t foffset, uint64_t len, uint64_t moffset,
                      bool write)
{
    (void)ctx;
    if (moffset > WINDOW || len > WINDOW - moffset)
        return -EINVAL;
    CHECK(foffset % 4096 == 0 && len % 4096 == 0 && moffset % 4096 == 0 && len > 0);
    void *p = mmap(window + moffset, len, PROT_READ | (write ? PROT_WRITE : 0),
                   MAP_SHARED | MAP_FIXED, fd, (off_t)foffset);
    return p == MAP_FAILED ? -errno : 0;
}

static int window_unmap(void *ctx, uint64_t moffset, uint64_t len)
{
    (void)ctx;
    if (moffset > WINDOW || len > WINDOW - moffset)
        return -EINVAL;
    void *p = mmap(window + moffset, len, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    return p == MAP_FAILED ? -errno : 0;
}

static char top[64];   /* <tmp>/fuzz_fuse.XXXXXX */
static char tree[96];  /* top/tree: what the session serves */
static char guard[96]; /* top/guard: a sibling that must never change */
static uint8_t *out;
#define OUTSZ ((256u * 4096u) + 8192u)

static void cleanup(void)
{
    if (top[0]) {
        fuzz_tree_empty(top);
        rmdir(top);
    }
}

static void make_tree(void)
{
    fuzz_tree_empty(tree);
    rmdir(tree);
    CHECK(mkdir(tree, 0755) == 0);
    int d = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(d >= 0);
    int f = openat(d, "file", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    CHECK(f >= 0 && write(f, "0123456789abcdef", 16) == 16);
    close(f);
    CHECK(mkdirat(d, "dir", 0755) == 0);
    f = openat(d, "dir/inner", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    CHECK(f >= 0);
    close(f);
    CHECK(symlinkat("/", d, "root") == 0);
    CHECK(symlinkat("../guard", d, "up") == 0);
    close(d);
}

/* Count entries of the guard directory and the size of its file. */
static long guard_state(void)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/g", guard);
    struct stat st;
    if (stat(p, &st) < 0)
        return -1;
    return (long)st.st_size * 1000 + (long)(st.st_mode & 07777) + (long)st.st_nlink * 100000;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(top, sizeof(top), "%s/fuzz_fuse.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    CHECK(mkdtemp(top) != NULL);
    atexit(cleanup);
    snprintf(tree, sizeof(tree), "%s/tree", top);
    snprintf(guard, sizeof(guard), "%s/guard", top);
    CHECK(mkdir(guard, 0755) == 0);
    char g[128];
    snprintf(g, sizeof(g), "%s/g", guard);
    int f = open(g, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    CHECK(f >= 0 && write(f, "guard", 5) == 5);
    close(f);
    /* Writes far past the end must fail (EFBIG), not fill the disk (SIGXFSZ
     * is ignored in the first input: libFuzzer installs its handler later). */
    struct rlimit rl = {64 << 20, 64 << 20};
    setrlimit(RLIMIT_FSIZE, &rl);
    out = malloc(OUTSZ);
    CHECK(out != NULL);
    return 0;
}

/* Make a request harmless for the harness (not for the server): no lock
 * waits that would hang, no huge preallocation. */
static void tame(uint8_t *req, size_t len)
{
    struct fuse_in_header h;
    if (len < sizeof(h))
        return;
    memcpy(&h, req, sizeof(h));
    if (h.opcode == FUSE_SETLKW)
        h.opcode = FUSE_SETLK;
    h.nodeid %= 16; /* live nodeids are small: hit them */
    memcpy(req, &h, sizeof(h));
    if (h.opcode == FUSE_FALLOCATE && len >= sizeof(h) + sizeof(struct fuse_fallocate_in)) {
        struct fuse_fallocate_in fa;
        memcpy(&fa, req + sizeof(h), sizeof(fa));
        fa.length %= 1 << 20;
        fa.offset %= 1 << 20;
        memcpy(req + sizeof(h), &fa, sizeof(fa));
    }
    if (h.opcode == FUSE_SETUPMAPPING &&
        len >= sizeof(h) + sizeof(struct fuse_setupmapping_in)) {
        /* Near the window and the tree's small files; half page-aligned. */
        struct fuse_setupmapping_in m;
        memcpy(&m, req + sizeof(h), sizeof(m));
        m.moffset %= 2 * WINDOW;
        m.foffset %= 1 << 22;
        m.len %= 2 * WINDOW;
        if (h.unique & 1) {
            m.moffset &= ~4095ull;
            m.foffset &= ~4095ull;
            m.len &= ~4095ull;
        }
        memcpy(req + sizeof(h), &m, sizeof(m));
    }
}

static void check_reply(const uint8_t *req, size_t len, ssize_t n, size_t cap)
{
    if (n == 0)
        return;
    if (n < 0) {
        CHECK(n == -EINVAL && len < sizeof(struct fuse_in_header));
        return;
    }
    CHECK((size_t)n >= sizeof(struct fuse_out_header) && (size_t)n <= cap);
    struct fuse_out_header oh;
    struct fuse_in_header h;
    memcpy(&oh, out, sizeof(oh));
    memcpy(&h, req, sizeof(h));
    CHECK(oh.len == (uint32_t)n);
    CHECK(oh.unique == h.unique);
    CHECK(oh.error <= 0 && oh.error > -4096);
    CHECK(oh.error == 0 || n == sizeof(oh));
}

static void init_session(struct fs_session *s)
{
    struct {
        struct fuse_in_header h;
        struct fuse_init_in in;
    } req = {{.len = sizeof(req), .opcode = FUSE_INIT, .unique = 1},
             {.major = 7, .minor = 38, .max_readahead = 1 << 20,
              .flags = FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_POSIX_LOCKS | FUSE_INIT_EXT |
                       FUSE_DO_READDIRPLUS | FUSE_ATOMIC_O_TRUNC}};
    struct iovec iov = {out, OUTSZ};
    CHECK(fs_session_handle(s, &req, sizeof(req), &iov, 1) > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool once;
    if (!once) {
        signal(SIGXFSZ, SIG_IGN);
        once = true;
    }
    make_tree();
    long before = guard_state();
    int d = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(d >= 0);
    struct fs_options o;
    fs_options_default(&o);
    /* Some inputs keep a single idle inode fd: the rest are closed and
     * reopened from their file handles. */
    if (size > 0 && (data[0] & 2))
        o.inode_fds = 1;
    struct fs_session *s = NULL;
    struct err *err = NULL;
    if (window == NULL) {
        window = mmap(NULL, WINDOW, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        CHECK(window != MAP_FAILED);
    }
    struct fs_transport dax = {.map = window_map, .unmap = window_unmap};
    bool with_window = size > 0 && (data[0] & 4);
    CHECK(fs_session_new(d, &o, with_window ? &dax : NULL, &s, &err) == 0);
    close(d);
    /* Half of the inputs start initialized, the rest must INIT themselves. */
    if (size > 0 && (data[0] & 1))
        init_session(s);
    size_t p = size > 0 ? 1 : 0;
    uint8_t *req = malloc(65536 + 64);
    CHECK(req != NULL);
    while (p + 2 <= size) {
        size_t len = (size_t)data[p] | ((size_t)data[p + 1] << 8);
        p += 2;
        if (len > size - p)
            len = size - p;
        memcpy(req, data + p, len);
        p += len;
        tame(req, len);
        /* Vary the reply buffer: sometimes tight, split in two. */
        size_t cap = (len & 1) ? 64 + (len % 512) : OUTSZ;
        struct iovec iov[2] = {{out, cap / 2}, {out + cap / 2, cap - cap / 2}};
        ssize_t n = fs_session_handle(s, req, len, iov, 2);
        check_reply(req, len, n, cap);
    }
    free(req);
    fs_session_free(s);
    if (with_window)
        CHECK(window_unmap(NULL, 0, WINDOW) == 0);
    CHECK(guard_state() == before);
    return 0;
}
