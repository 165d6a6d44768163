/* A test guest that drives cocoon's virtio-fs device at CPL3 with real FUSE
 * requests; tests/guest/test_virtiofs.py prepares the shared directory and
 * checks the host side byte for byte. It negotiates VERSION_1, sets up
 * hiprio and the request queues in its memory, checks the config space
 * (tag=T, queues=N), then:
 *   INIT (no FUSE_PASSTHROUGH may come back), LOOKUP + GETATTR of hello.bin
 *   (size=N bytes of (i*7+seed)&255, seed=S; uid=U: the owner the guest
 *   must see), OPEN + READ (whole, at an odd offset, and past the end;
 *   with indirect=1 also into 118 scattered segments), CREATE + WRITE of
 *   new.bin (wsize=N bytes of (i*13+wseed)&255), MKDIR made, READDIR of
 *   list (alpha, beta, gamma), UNLINK victim, RELEASE, FORGET and
 *   BATCH_FORGET on hiprio (the nodeids are gone after), escapes (".." at
 *   the root is the root; the symlink `out` pointing outside is never
 *   followed: no LOOKUP, OPEN or CREATE through it; names with '/'),
 *   hostile chains (short header, a lying length, no room for a reply, a
 *   chain longer than any request, SETLKW, a normal request on hiprio, an
 *   unknown opcode), every request queue, DESTROY + a new INIT, and a
 *   malformed ring: NEEDS_RESET, then reset, INIT again and LOOKUP.
 *   ro=1: the changes fail with EROFS instead (the host checks nothing
 *   changed). pages=N: the max_pages INIT must answer. dax=MIB: the DAX window
 *   (shared memory region 0) is read and written through (see test_dax);
 *   touch_unmapped=1 then reads where nothing is mapped (the VMM must stop
 *   the VM); without dax SETUPMAPPING is ENOSYS. Options: indirect=1, event_idx=1. */
#include <linux/errno.h>
#include <linux/fuse.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_mmio.h>

#include "libguest.h"
#include "virtio_drv.h"

#define Q_HIPRIO 0
#define Q_REQ 1
#define S_IFMT_ 0170000u
#define S_IFREG_ 0100000u
#define S_IFDIR_ 0040000u
#define S_IFLNK_ 0120000u
#define S_IFCHR_ 0020000u
#define S_IFIFO_ 0010000u
#define O_WRONLY_ 01u
#define O_CREAT_ 0100u
#define O_TRUNC_ 01000u
#define PASSTHROUGH_FLAGS2 (1u << 5) /* FUSE_PASSTHROUGH is bit 37 */
#define OH ((uint32_t)sizeof(struct fuse_out_header))
#define IH ((uint32_t)sizeof(struct fuse_in_header))
#define DATA_MAX (15u * 4096u)

static const char *cmdline;
static struct gv_dev *dev;
static int use_indirect;
static uint64_t next_unique = 1;

static uint8_t req[8192] __attribute__((aligned(64)));
static uint8_t rep[8192] __attribute__((aligned(64)));
static uint8_t data[DATA_MAX] __attribute__((aligned(4096)));
#define NSEG 120 /* READ segments through one indirect table */
static struct vring_desc indt[NSEG] __attribute__((aligned(16)));

static uint64_t opt(const char *key, uint64_t dflt)
{
    char v[64];
    return g_cmdline_get(cmdline, key, v, sizeof(v)) ? g_parse_u64(v) : dflt;
}

static int streq(const char *a, const char *b)
{
    size_t n = g_strlen(b);
    return g_strlen(a) == n && g_strncmp(a, b, n) == 0;
}

/* ---- requests ---- */

/* Build a request in req: the header and `blen` body bytes (name after). */
static uint32_t build(uint32_t opcode, uint64_t nodeid, const void *body, uint32_t blen,
                      const char *name)
{
    uint32_t nlen = name ? (uint32_t)g_strlen(name) + 1 : 0;
    G_CHECK(IH + blen + nlen <= sizeof(req), "request too large");
    struct fuse_in_header h = {.len = IH + blen + nlen, .opcode = opcode,
                               .unique = next_unique++, .nodeid = nodeid};
    memcpy(req, &h, IH);
    if (blen)
        memcpy(req + IH, body, blen);
    if (nlen)
        memcpy(req + IH + blen, name, nlen);
    return h.len;
}

/* Post the buffers on queue qi, wait, and return the used length. */
static uint32_t xfer(unsigned qi, const struct gv_buf *b, unsigned n)
{
    uint16_t head = gv_submit(dev, qi, b, n, use_indirect), id;
    uint32_t used = gv_wait(dev, qi, &id);
    G_CHECK(id == head, "used id %u, posted head %u", id, head);
    return used;
}

/* Check the reply header in rep against `used`; returns its error. */
static int32_t check_reply(uint32_t used, uint32_t room, uint32_t *body)
{
    struct fuse_out_header oh;
    memcpy(&oh, rep, OH);
    uint64_t unique;
    memcpy(&unique, req + __builtin_offsetof(struct fuse_in_header, unique), 8);
    G_CHECK(used >= OH && used == oh.len && oh.len <= OH + room,
            "reply: used %u, header len %u, room %u", used, oh.len, OH + room);
    G_CHECK(oh.unique == unique, "reply unique %lu, request %lu", oh.unique, unique);
    G_CHECK(oh.error <= 0 && oh.error > -4096, "reply error %d", oh.error);
    G_CHECK(oh.error == 0 || oh.len == OH, "an error reply with a %u-byte body", oh.len - OH);
    if (body)
        *body = oh.len - OH;
    return oh.error;
}

/* One request with a contiguous reply of at most `room` body bytes into
 * rep + OH; returns the error, *got the body length. */
static int32_t call(unsigned qi, uint32_t opcode, uint64_t nodeid, const void *body,
                    uint32_t blen, const char *name, uint32_t room, uint32_t *got)
{
    uint32_t len = build(opcode, nodeid, body, blen, name);
    struct gv_buf b[2] = {{req, len, 0}, {rep, OH + room, 1}};
    memset(rep, 0xee, OH + room);
    return check_reply(xfer(qi, b, 2), room, got);
}

static int32_t call_exact(uint32_t opcode, uint64_t nodeid, const void *body, uint32_t blen,
                          const char *name, uint32_t want, const char *what)
{
    uint32_t got;
    int32_t e = call(Q_REQ, opcode, nodeid, body, blen, name, 4096, &got);
    G_CHECK(e != 0 || got == want, "%s: a %u-byte reply, expected %u", what, got, want);
    return e;
}

static void init(void)
{
    struct fuse_init_in in = {
        .major = FUSE_KERNEL_VERSION, .minor = FUSE_KERNEL_MINOR_VERSION,
        .max_readahead = 131072,
        .flags = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_INIT_EXT |
                 FUSE_DO_READDIRPLUS | FUSE_PARALLEL_DIROPS | FUSE_POSIX_LOCKS |
                 FUSE_MAP_ALIGNMENT,
        .flags2 = PASSTHROUGH_FLAGS2,
    };
    struct fuse_init_out out;
    int32_t e = call_exact(FUSE_INIT, 0, &in, sizeof(in), 0, sizeof(out), "INIT");
    G_CHECK(e == 0, "INIT failed: %d", e);
    memcpy(&out, rep + OH, sizeof(out));
    G_CHECK(out.major == FUSE_KERNEL_VERSION && out.minor >= 31, "INIT answered %u.%u",
            out.major, out.minor);
    G_CHECK(!(out.flags2 & PASSTHROUGH_FLAGS2), "INIT offered FUSE_PASSTHROUGH on virtio-fs");
    G_CHECK(!(out.flags & FUSE_POSIX_LOCKS), "INIT kept POSIX locks on the host");
    G_CHECK(out.flags & FUSE_MAX_PAGES, "INIT refused FUSE_MAX_PAGES");
    G_CHECK(out.max_pages >= 1 && out.max_pages <= 248 && out.max_write == out.max_pages * 4096u,
            "INIT: max_pages %u max_write %u", out.max_pages, out.max_write);
    G_CHECK(out.max_pages == opt("pages", out.max_pages), "INIT: max_pages %u, expected %lu",
            out.max_pages, opt("pages", 0));
    if (opt("dax", 0))
        G_CHECK((out.flags & FUSE_MAP_ALIGNMENT) && out.map_alignment == 12,
                "INIT with a DAX window: flags %x, map_alignment %u", out.flags,
                out.map_alignment);
    else
        G_CHECK(!(out.flags & FUSE_MAP_ALIGNMENT), "INIT offered FUSE_MAP_ALIGNMENT without DAX");
    g_print("virtio-fs: INIT %u.%u max_pages %u", out.major, out.minor, out.max_pages);
}

static int32_t lookup(uint64_t parent, const char *name, struct fuse_entry_out *e)
{
    int32_t r = call_exact(FUSE_LOOKUP, parent, 0, 0, name, sizeof(*e), "LOOKUP");
    memcpy(e, rep + OH, sizeof(*e));
    if (r == 0 && e->nodeid == 0)
        r = -ENOENT; /* a negative entry */
    return r;
}

static uint64_t lookup_ok(uint64_t parent, const char *name, uint32_t type)
{
    struct fuse_entry_out e;
    int32_t r = lookup(parent, name, &e);
    G_CHECK(r == 0, "LOOKUP %s: %d", name, r);
    G_CHECK((e.attr.mode & S_IFMT_) == type, "LOOKUP %s: mode %x", name, e.attr.mode);
    return e.nodeid;
}

static int32_t getattr(uint64_t nodeid, struct fuse_attr_out *a)
{
    struct fuse_getattr_in in = {0};
    int32_t r = call_exact(FUSE_GETATTR, nodeid, &in, sizeof(in), 0, sizeof(*a), "GETATTR");
    memcpy(a, rep + OH, sizeof(*a));
    return r;
}

static uint64_t open_fh(uint32_t opcode, uint64_t nodeid, uint32_t flags)
{
    struct fuse_open_in in = {.flags = flags};
    struct fuse_open_out out;
    int32_t r = call_exact(opcode, nodeid, &in, sizeof(in), 0, sizeof(out), "OPEN");
    G_CHECK(r == 0, "OPEN(%u) of node %lu: %d", opcode, nodeid, r);
    memcpy(&out, rep + OH, sizeof(out));
    return out.fh;
}

static void release(uint32_t opcode, uint64_t fh)
{
    struct fuse_release_in in = {.fh = fh};
    int32_t r = call_exact(opcode, 0, &in, sizeof(in), 0, 0, "RELEASE");
    G_CHECK(r == 0, "RELEASE(%u) of fh %lu: %d", opcode, fh, r);
}

/* Send a request that takes no reply on hiprio: used length 0. */
static void noreply(uint32_t opcode, uint64_t nodeid, const void *body, uint32_t blen)
{
    uint32_t len = build(opcode, nodeid, body, blen, 0);
    struct gv_buf b = {req, len, 0};
    uint32_t used = xfer(Q_HIPRIO, &b, 1);
    G_CHECK(used == 0, "opcode %u on hiprio: used length %u", opcode, used);
}

static uint8_t pattern(uint64_t i, uint64_t mul, uint64_t seed)
{
    return (uint8_t)((i * mul + seed) & 255);
}

/* ---- the checks ---- */

/* READ `size` bytes at `off` of fh into `data` through 4 KiB segments. */
static uint32_t read_at(uint64_t fh, uint64_t off, uint32_t size)
{
    struct fuse_read_in in = {.fh = fh, .offset = off, .size = size};
    uint32_t len = build(FUSE_READ, 0, &in, sizeof(in), 0);
    struct gv_buf b[16] = {{req, len, 0}, {rep, OH, 1}};
    unsigned n = 2;
    for (uint32_t o = 0; o < size && n < 16; o += 4096, n++)
        b[n] = (struct gv_buf){data + o, size - o < 4096 ? size - o : 4096, 1};
    memset(data, 0xee, sizeof(data));
    uint32_t got;
    int32_t e = check_reply(xfer(Q_REQ, b, n), size, &got);
    G_CHECK(e == 0, "READ at %lu: %d", off, e);
    return got;
}

static void check_data(uint64_t off, uint32_t got, uint64_t seed)
{
    for (uint32_t i = 0; i < got; i++)
        G_CHECK(data[i] == pattern(off + i, 7, seed), "READ: byte %lu is %u, expected %u",
                off + i, data[i], pattern(off + i, 7, seed));
}

/* READ through an indirect table of NSEG descriptors: the reply is
 * scattered over more segments than the core fills at once (64 of these
 * 100-byte segments would not hold it). */
static void read_scattered(uint64_t fh, uint32_t size, uint64_t seed)
{
    struct fuse_read_in in = {.fh = fh, .offset = 0, .size = size};
    uint32_t len = build(FUSE_READ, 0, &in, sizeof(in), 0);
    const uint32_t seg = 100, room = (NSEG - 2) * seg;
    G_CHECK(room >= size && 64 * seg < size, "size %u does not fit the test", size);
    indt[0] = (struct vring_desc){(uintptr_t)req, len, VRING_DESC_F_NEXT, 1};
    indt[1] = (struct vring_desc){(uintptr_t)rep, OH, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 2};
    for (uint16_t i = 2; i < NSEG; i++)
        indt[i] = (struct vring_desc){(uintptr_t)(data + (i - 2u) * seg), seg,
                                      (uint16_t)(VRING_DESC_F_WRITE |
                                                 (i + 1 < NSEG ? VRING_DESC_F_NEXT : 0)),
                                      (uint16_t)(i + 1)};
    memset(data, 0xee, sizeof(data));
    struct vring_desc d = {(uintptr_t)indt, sizeof(indt), VRING_DESC_F_INDIRECT, 0};
    gv_submit_raw(dev, Q_REQ, &d, 1, 0);
    uint16_t id;
    uint32_t used = gv_wait(dev, Q_REQ, &id), got;
    G_CHECK(id == 0, "used id %u, posted 0", id);
    int32_t e = check_reply(used, room, &got);
    G_CHECK(e == 0 && got == size, "scattered READ: %d, %u bytes of %u", e, got, size);
    check_data(0, got, seed);
    g_print("virtio-fs: READ into %u segments ok", NSEG - 2);
}

static uint64_t test_read(uint64_t *hello_out)
{
    uint64_t size = opt("size", 10000), seed = opt("seed", 0);
    G_CHECK(size > 4200 && size <= DATA_MAX - 4096, "size=%lu out of the test's range", size);
    uint64_t hello = lookup_ok(FUSE_ROOT_ID, "hello.bin", S_IFREG_);
    struct fuse_attr_out a;
    int32_t r = getattr(hello, &a);
    G_CHECK(r == 0 && a.attr.size == size, "GETATTR hello.bin: %d, size %lu", r, a.attr.size);
    G_CHECK(a.attr.uid == opt("uid", a.attr.uid), "hello.bin: uid %u, expected %lu", a.attr.uid,
            opt("uid", 0));
    uint64_t fh = open_fh(FUSE_OPEN, hello, 0);
    uint32_t got = read_at(fh, 0, (uint32_t)size);
    G_CHECK(got == size, "READ: %u bytes of %lu", got, size);
    check_data(0, got, seed);
    got = read_at(fh, 4093, 200);
    G_CHECK(got == 200, "READ at 4093: %u bytes", got);
    check_data(4093, got, seed);
    got = read_at(fh, size - 10, 4096);
    G_CHECK(got == 10, "READ across the end: %u bytes, expected 10", got);
    check_data(size - 10, got, seed);
    if (use_indirect)
        read_scattered(fh, (uint32_t)size, seed);
    *hello_out = hello;
    g_print("virtio-fs: LOOKUP GETATTR OPEN READ hello.bin (%lu bytes) ok", size);
    return fh;
}

static void test_create_write(void)
{
    uint64_t wsize = opt("wsize", 12345), wseed = opt("wseed", 0);
    G_CHECK(wsize > 0 && wsize <= DATA_MAX, "wsize=%lu out of range", wsize);
    struct fuse_create_in cin = {.flags = O_WRONLY_ | O_CREAT_ | O_TRUNC_, .mode = S_IFREG_ | 0640};
    uint32_t got;
    int32_t e = call(Q_REQ, FUSE_CREATE, FUSE_ROOT_ID, &cin, sizeof(cin), "new.bin", 4096, &got);
    G_CHECK(e == 0, "CREATE new.bin: %d", e);
    struct fuse_entry_out ent;
    struct fuse_open_out oo;
    G_CHECK(got == sizeof(ent) + sizeof(oo), "CREATE: %u-byte reply", got);
    memcpy(&ent, rep + OH, sizeof(ent));
    memcpy(&oo, rep + OH + sizeof(ent), sizeof(oo));
    G_CHECK((ent.attr.mode & (S_IFMT_ | 07777)) == (S_IFREG_ | 0640) && ent.attr.size == 0,
            "CREATE: mode %x size %lu", ent.attr.mode, ent.attr.size);
    for (uint32_t i = 0; i < wsize; i++)
        data[i] = pattern(i, 13, wseed);
    /* header + write_in in one segment, the data in 4 KiB segments */
    struct fuse_write_in win = {.fh = oo.fh, .offset = 0, .size = (uint32_t)wsize};
    uint32_t len = build(FUSE_WRITE, ent.nodeid, &win, sizeof(win), 0);
    ((struct fuse_in_header *)req)->len = len + (uint32_t)wsize;
    struct gv_buf b[16] = {{req, len, 0}};
    unsigned n = 1;
    for (uint32_t o = 0; o < wsize && n < 15; o += 4096, n++)
        b[n] = (struct gv_buf){data + o, wsize - o < 4096 ? (uint32_t)wsize - o : 4096, 0};
    b[n++] = (struct gv_buf){rep, OH + sizeof(struct fuse_write_out), 1};
    e = check_reply(xfer(Q_REQ, b, n), sizeof(struct fuse_write_out), &got);
    struct fuse_write_out wo;
    memcpy(&wo, rep + OH, sizeof(wo));
    G_CHECK(e == 0 && got == sizeof(wo) && wo.size == wsize, "WRITE: %d, wrote %u of %lu", e,
            wo.size, wsize);
    release(FUSE_RELEASE, oo.fh);
    g_print("virtio-fs: CREATE WRITE RELEASE new.bin (%lu bytes) ok", wsize);
}

static void test_mkdir(void)
{
    struct fuse_mkdir_in in = {.mode = 0750};
    int32_t e = call_exact(FUSE_MKDIR, FUSE_ROOT_ID, &in, sizeof(in), "made",
                           sizeof(struct fuse_entry_out), "MKDIR");
    struct fuse_entry_out ent;
    memcpy(&ent, rep + OH, sizeof(ent));
    G_CHECK(e == 0 && (ent.attr.mode & (S_IFMT_ | 07777)) == (S_IFDIR_ | 0750),
            "MKDIR made: %d, mode %x", e, ent.attr.mode);
    g_print("virtio-fs: MKDIR made ok");
}

/* MKNOD: a FIFO is made; a device node is not — the VMM holds no
 * CAP_MKNOD, so a guest never plants host device nodes in a share. */
static void test_mknod(void)
{
    struct fuse_mknod_in in = {.mode = S_IFIFO_ | 0640};
    int32_t e = call_exact(FUSE_MKNOD, FUSE_ROOT_ID, &in, sizeof(in), "fifo",
                           sizeof(struct fuse_entry_out), "MKNOD");
    struct fuse_entry_out ent;
    memcpy(&ent, rep + OH, sizeof(ent));
    G_CHECK(e == 0 && (ent.attr.mode & (S_IFMT_ | 07777)) == (S_IFIFO_ | 0640),
            "MKNOD fifo: %d, mode %x", e, ent.attr.mode);
    in = (struct fuse_mknod_in){.mode = S_IFCHR_ | 0666, .rdev = (1 << 8) | 3};
    e = call_exact(FUSE_MKNOD, FUSE_ROOT_ID, &in, sizeof(in), "null", 0, "MKNOD");
    G_CHECK(e == -EPERM, "MKNOD of a character device: %d", e);
    g_print("virtio-fs: MKNOD fifo ok, device node refused");
}

/* READDIR of list: exactly ".", "..", alpha, beta, gamma. */
static uint64_t test_readdir(void)
{
    uint64_t list = lookup_ok(FUSE_ROOT_ID, "list", S_IFDIR_);
    uint64_t fh = open_fh(FUSE_OPENDIR, list, 0);
    static const char *const want[] = {".", "..", "alpha", "beta", "gamma"};
    unsigned seen[5] = {0}, total = 0;
    uint64_t off = 0;
    for (int round = 0; round < 16; round++) {
        struct fuse_read_in in = {.fh = fh, .offset = off, .size = 120};
        uint32_t got;
        int32_t e = call(Q_REQ, FUSE_READDIR, list, &in, sizeof(in), 0, 120, &got);
        G_CHECK(e == 0, "READDIR at %lu: %d", off, e);
        if (got == 0)
            break;
        for (uint32_t p = 0; p < got;) {
            struct fuse_dirent de;
            G_CHECK(got - p >= FUSE_NAME_OFFSET, "a truncated dirent");
            memcpy(&de, rep + OH + p, FUSE_NAME_OFFSET);
            uint32_t size = (uint32_t)FUSE_DIRENT_SIZE(&de);
            G_CHECK(de.namelen > 0 && de.namelen < 256 && size <= got - p,
                    "a dirent of %u bytes (name %u) with %u left", size, de.namelen, got - p);
            char name[256];
            memcpy(name, rep + OH + p + FUSE_NAME_OFFSET, de.namelen);
            name[de.namelen] = 0;
            int found = 0;
            for (unsigned i = 0; i < 5; i++)
                if (streq(name, want[i])) {
                    seen[i]++;
                    found = 1;
                }
            G_CHECK(found, "READDIR: unexpected entry `%s`", name);
            off = de.off;
            total++;
            p += size;
        }
    }
    for (unsigned i = 0; i < 5; i++)
        G_CHECK(seen[i] == 1, "READDIR: `%s` seen %u times", want[i], seen[i]);
    release(FUSE_RELEASEDIR, fh);
    g_print("virtio-fs: READDIR list: %u entries ok", total);
    return list;
}

static void test_unlink(void)
{
    int32_t e = call_exact(FUSE_UNLINK, FUSE_ROOT_ID, 0, 0, "victim", 0, "UNLINK");
    G_CHECK(e == 0, "UNLINK victim: %d", e);
    struct fuse_entry_out ent;
    e = lookup(FUSE_ROOT_ID, "victim", &ent);
    G_CHECK(e == -ENOENT, "LOOKUP after UNLINK: %d", e);
    g_print("virtio-fs: UNLINK victim ok");
}

/* FORGET and BATCH_FORGET on hiprio: the nodeids are unknown afterwards. */
static void test_forget(uint64_t hello, uint64_t list)
{
    struct fuse_forget_in f = {.nlookup = 1};
    noreply(FUSE_FORGET, hello, &f, sizeof(f));
    struct {
        struct fuse_batch_forget_in in;
        struct fuse_forget_one one;
    } bf = {{.count = 1}, {.nodeid = list, .nlookup = 1}};
    noreply(FUSE_BATCH_FORGET, 0, &bf, sizeof(bf));
    struct fuse_attr_out a;
    int32_t e = getattr(hello, &a);
    G_CHECK(e == -ESTALE, "GETATTR after FORGET: %d", e);
    e = getattr(list, &a);
    G_CHECK(e == -ESTALE, "GETATTR after BATCH_FORGET: %d", e);
    g_print("virtio-fs: FORGET BATCH_FORGET on hiprio ok");
}

static void test_escape(void)
{
    struct fuse_entry_out ent;
    int32_t e = lookup(FUSE_ROOT_ID, "..", &ent);
    G_CHECK(e == 0 && ent.nodeid == FUSE_ROOT_ID, "LOOKUP .. at the root: %d, node %lu", e,
            ent.nodeid);
    uint64_t out = lookup_ok(FUSE_ROOT_ID, "out", S_IFLNK_);
    e = lookup(out, "secret", &ent);
    G_CHECK(e == -ENOTDIR, "LOOKUP through the symlink out: %d", e);
    struct fuse_open_in oin = {0};
    e = call_exact(FUSE_OPEN, out, &oin, sizeof(oin), 0, 0, "OPEN");
    G_CHECK(e == -ELOOP, "OPEN of the symlink out: %d", e);
    struct fuse_create_in cin = {.flags = O_WRONLY_ | O_CREAT_, .mode = S_IFREG_ | 0644};
    e = call_exact(FUSE_CREATE, out, &cin, sizeof(cin), "planted", 0, "CREATE");
    G_CHECK(e < 0, "CREATE through the symlink out succeeded");
    struct fuse_mkdir_in min = {.mode = 0755};
    e = call_exact(FUSE_MKDIR, FUSE_ROOT_ID, &min, sizeof(min), "../escape", 0, "MKDIR");
    G_CHECK(e == -EINVAL || (opt("ro", 0) && e == -EROFS), "MKDIR ../escape: %d", e);
    e = lookup(FUSE_ROOT_ID, "out/secret", &ent);
    G_CHECK(e == -EINVAL, "LOOKUP out/secret: %d", e);
    g_print("virtio-fs: escapes refused");
}

static void test_readonly(void)
{
    struct fuse_create_in cin = {.flags = O_WRONLY_ | O_CREAT_, .mode = S_IFREG_ | 0644};
    int32_t e = call_exact(FUSE_CREATE, FUSE_ROOT_ID, &cin, sizeof(cin), "new.bin", 0, "CREATE");
    G_CHECK(e == -EROFS, "CREATE on a read-only share: %d", e);
    struct fuse_mkdir_in min = {.mode = 0755};
    e = call_exact(FUSE_MKDIR, FUSE_ROOT_ID, &min, sizeof(min), "made", 0, "MKDIR");
    G_CHECK(e == -EROFS, "MKDIR on a read-only share: %d", e);
    e = call_exact(FUSE_UNLINK, FUSE_ROOT_ID, 0, 0, "victim", 0, "UNLINK");
    G_CHECK(e == -EROFS, "UNLINK on a read-only share: %d", e);
    g_print("virtio-fs: read-only share refuses changes");
}

/* Chains no driver should send: answered or dropped, never a broken device. */
static void test_hostile(void)
{
    struct fuse_getattr_in gin = {0};
    uint32_t len = build(FUSE_GETATTR, FUSE_ROOT_ID, &gin, sizeof(gin), 0);
    /* a header cut short */
    struct gv_buf b[3] = {{req, 20, 0}, {rep, 256, 1}};
    G_CHECK(xfer(Q_REQ, b, 2) == 0, "a 20-byte request was answered");
    /* a header whose length is more than the chain holds */
    ((struct fuse_in_header *)req)->len = 1000;
    b[0].len = len;
    G_CHECK(check_reply(xfer(Q_REQ, b, 2), 240, 0) == -EINVAL, "a lying length was accepted");
    /* no room for the reply: not answered (used 0) */
    len = build(FUSE_GETATTR, FUSE_ROOT_ID, &gin, sizeof(gin), 0);
    b[0].len = len;
    G_CHECK(xfer(Q_REQ, b, 1) == 0, "a request without a reply buffer got a used length");
    b[1].len = 8;
    G_CHECK(xfer(Q_REQ, b, 2) == 0, "a reply buffer of 8 bytes got a used length");
    /* a chain longer than any request (4 MiB of guest memory after it) */
    b[1] = (struct gv_buf){(void *)(uintptr_t)0x1000000, 4u << 20, 0};
    b[2] = (struct gv_buf){rep, 256, 1};
    G_CHECK(check_reply(xfer(Q_REQ, b, 3), 240, 0) == -EINVAL,
            "a 4 MiB request was not refused with EINVAL");
    /* a blocking lock: refused (the guest kernel keeps POSIX locks) */
    struct fuse_lk_in lk = {.lk = {.type = 1 /* F_WRLCK */, .end = 100}};
    int32_t e = call(Q_REQ, FUSE_SETLKW, FUSE_ROOT_ID, &lk, sizeof(lk), 0, 240, 0);
    G_CHECK(e == -ENOSYS, "SETLKW: %d", e);
    /* a normal request on hiprio */
    e = call(Q_HIPRIO, FUSE_GETATTR, FUSE_ROOT_ID, &gin, sizeof(gin), 0, 240, 0);
    G_CHECK(e == -EINVAL, "GETATTR on hiprio: %d", e);
    e = call(Q_REQ, 9999, FUSE_ROOT_ID, &gin, sizeof(gin), 0, 240, 0);
    G_CHECK(e == -ENOSYS, "opcode 9999: %d", e);
    struct fuse_attr_out a;
    e = getattr(FUSE_ROOT_ID, &a);
    G_CHECK(e == 0 && (a.attr.mode & S_IFMT_) == S_IFDIR_, "GETATTR of the root after: %d", e);
    G_CHECK(!(gv_read32(dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET),
            "hostile requests set NEEDS_RESET");
    g_print("virtio-fs: hostile requests answered");
}

/* GETATTR of the root on every request queue. */
static void test_queues(unsigned queues)
{
    for (unsigned q = 1; q <= queues; q++) {
        struct fuse_getattr_in gin = {0};
        uint32_t got;
        int32_t e = call(q, FUSE_GETATTR, FUSE_ROOT_ID, &gin, sizeof(gin), 0, 4096, &got);
        G_CHECK(e == 0 && got == sizeof(struct fuse_attr_out), "GETATTR on queue %u: %d", q, e);
    }
    g_print("virtio-fs: %u request queues ok", queues);
}

/* ---- the DAX window ---- */

static int32_t setupmapping(uint64_t nodeid, uint64_t fh, uint64_t foffset, uint64_t len,
                            uint64_t moffset, uint64_t flags)
{
    struct fuse_setupmapping_in in = {.fh = fh, .foffset = foffset, .len = len,
                                      .flags = flags, .moffset = moffset};
    return call_exact(FUSE_SETUPMAPPING, nodeid, &in, sizeof(in), 0, 0, "SETUPMAPPING");
}

static int32_t removemapping(uint64_t moffset, uint64_t len)
{
    struct {
        struct fuse_removemapping_in in;
        struct fuse_removemapping_one one;
    } __attribute__((packed)) b = {{.count = 1}, {.moffset = moffset, .len = len}};
    return call_exact(FUSE_REMOVEMAPPING, 0, &b, sizeof(b), 0, 0, "REMOVEMAPPING");
}

/* Shared memory region 0 (the window): checked against dax=MIB and the
 * 4 GiB address where the VMM puts it; region 1 does not exist. */
static volatile uint8_t *dax_window(uint64_t size)
{
    gv_write32(dev, VIRTIO_MMIO_SHM_SEL, 1);
    uint64_t none = gv_read32(dev, VIRTIO_MMIO_SHM_LEN_LOW) |
                    (uint64_t)gv_read32(dev, VIRTIO_MMIO_SHM_LEN_HIGH) << 32;
    G_CHECK(none == ~0ull, "shared memory region 1: length %lx", none);
    gv_write32(dev, VIRTIO_MMIO_SHM_SEL, 0);
    uint64_t len = gv_read32(dev, VIRTIO_MMIO_SHM_LEN_LOW) |
                   (uint64_t)gv_read32(dev, VIRTIO_MMIO_SHM_LEN_HIGH) << 32;
    uint64_t base = gv_read32(dev, VIRTIO_MMIO_SHM_BASE_LOW) |
                    (uint64_t)gv_read32(dev, VIRTIO_MMIO_SHM_BASE_HIGH) << 32;
    if (size == 0) {
        G_CHECK(len == ~0ull, "no DAX window asked, region 0 has length %lx", len);
        return 0;
    }
    G_CHECK(len == size && base == 0x100000000ull, "DAX window: %lx bytes at %lx", len, base);
    return (volatile uint8_t *)(uintptr_t)base;
}

/* dax=MIB: map hello.bin (read-only handle fh) and read it through the
 * window; refusals; then a read-write handle of dax.bin written through
 * the window (dwseed=S: (i*3+S)&255, 8 KiB), read back with READ after the
 * mapping is gone. Without dax: SETUPMAPPING is ENOSYS. */
static void test_dax(uint64_t hello, uint64_t fh, int readonly)
{
    uint64_t size = opt("dax", 0) << 20, hsize = opt("size", 10000), seed = opt("seed", 0);
    volatile uint8_t *w = dax_window(size);
    if (size == 0) {
        int32_t e = setupmapping(hello, fh, 0, 4096, 0, FUSE_SETUPMAPPING_FLAG_READ);
        G_CHECK(e == -ENOSYS, "SETUPMAPPING without a window: %d", e);
        g_print("virtio-fs: no DAX window, SETUPMAPPING ENOSYS ok");
        return;
    }
    const uint64_t R = FUSE_SETUPMAPPING_FLAG_READ, W = FUSE_SETUPMAPPING_FLAG_WRITE;
    int32_t e = setupmapping(hello, fh, 0, 2u << 20, 0, R);
    G_CHECK(e == 0, "SETUPMAPPING hello.bin: %d", e);
    for (uint64_t i = 0; i < hsize; i++)
        G_CHECK(w[i] == pattern(i, 7, seed), "DAX: byte %lu of hello.bin is %u", i, w[i]);
    /* the refusals */
    e = setupmapping(hello, fh, 0, 4096, 4096, R | W);
    G_CHECK(e == (readonly ? -EROFS : -EACCES), "a writable mapping of a read-only handle: %d", e);
    G_CHECK(setupmapping(hello, fh, 0, 4096, size, R) == -EINVAL, "a mapping past the window");
    G_CHECK(setupmapping(hello, fh, 0, 8192, size - 4096, R) == -EINVAL,
            "a mapping across the window's end");
    G_CHECK(setupmapping(hello, fh, 100, 4096, 0, R) == -EINVAL, "an unaligned file offset");
    G_CHECK(setupmapping(hello, fh, 0, 4096, 100, R) == -EINVAL, "an unaligned window offset");
    G_CHECK(setupmapping(hello, fh, ~0ull << 12, 8192, 0, R) == -EINVAL, "a range past 2^63");
    G_CHECK(setupmapping(hello, fh + 1000, 0, 4096, 0, R) == -EBADF, "an unknown handle");
    G_CHECK(setupmapping(FUSE_ROOT_ID, fh, 0, 4096, 0, R) == -EBADF, "another node's handle");
    G_CHECK(setupmapping(hello, fh, 0, 4096, 0, 1u << 5) == -EINVAL, "an unknown flag");
    G_CHECK(removemapping(size, 4096) == -EINVAL, "REMOVEMAPPING past the window");
    G_CHECK(removemapping(0, 2u << 20) == 0, "REMOVEMAPPING hello.bin");
    if (opt("touch_unmapped", 0)) {
        g_print("virtio-fs: reading the window where nothing is mapped");
        g_print("virtio-fs: read %u: the VMM let it through", w[0]);
    }
    if (readonly) {
        g_print("virtio-fs: DAX window read, refusals ok");
        return;
    }
    /* a read-write handle: written through the window */
    uint64_t dwseed = opt("dwseed", 0);
    struct fuse_create_in cin = {.flags = 2 /* O_RDWR */ | O_CREAT_, .mode = S_IFREG_ | 0644};
    uint32_t got;
    e = call(Q_REQ, FUSE_CREATE, FUSE_ROOT_ID, &cin, sizeof(cin), "dax.bin", 4096, &got);
    G_CHECK(e == 0 && got == sizeof(struct fuse_entry_out) + sizeof(struct fuse_open_out),
            "CREATE dax.bin: %d", e);
    struct fuse_entry_out ent;
    struct fuse_open_out oo;
    memcpy(&ent, rep + OH, sizeof(ent));
    memcpy(&oo, rep + OH + sizeof(ent), sizeof(oo));
    struct fuse_fallocate_in fa = {.fh = oo.fh, .offset = 0, .length = 8192};
    e = call_exact(FUSE_FALLOCATE, ent.nodeid, &fa, sizeof(fa), 0, 0, "FALLOCATE");
    G_CHECK(e == 0, "FALLOCATE dax.bin: %d", e);
    e = setupmapping(ent.nodeid, oo.fh, 0, 8192, 2u << 20, R | W);
    G_CHECK(e == 0, "SETUPMAPPING dax.bin read-write: %d", e);
    for (uint64_t i = 0; i < 8192; i++)
        w[(2u << 20) + i] = pattern(i, 3, dwseed);
    G_CHECK(removemapping(2u << 20, 8192) == 0, "REMOVEMAPPING dax.bin");
    got = read_at(oo.fh, 0, 8192);
    G_CHECK(got == 8192, "READ dax.bin: %u bytes", got);
    for (uint32_t i = 0; i < 8192; i++)
        G_CHECK(data[i] == pattern(i, 3, dwseed), "dax.bin byte %u is %u after the window", i,
                data[i]);
    release(FUSE_RELEASE, oo.fh);
    g_print("virtio-fs: DAX window read, written, refusals ok");
}

static void setup(unsigned queues)
{
    uint64_t want = 0;
    if (use_indirect)
        want |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
    if (opt("event_idx", 0))
        want |= 1ull << VIRTIO_RING_F_EVENT_IDX;
    gv_init(dev, want, 1 + queues);
}

/* A malformed ring: NEEDS_RESET; after a reset a new session takes INIT. */
static void test_reset(unsigned queues)
{
    static uint8_t buf[64];
    struct vring_desc ds[2] = {
        {(uintptr_t)buf, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1},
        {(uintptr_t)buf, 8, 0, 0},
    };
    gv_submit_raw(dev, Q_REQ, ds, 2, 0);
    for (uint64_t spins = 0; !(gv_read32(dev, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET);
         spins++)
        G_CHECK(spins < 400000000ull, "a malformed chain did not set NEEDS_RESET");
    setup(queues);
    init();
    lookup_ok(FUSE_ROOT_ID, "hello.bin", S_IFREG_);
    g_print("virtio-fs: NEEDS_RESET, reset, INIT again ok");
}

static void check_config(unsigned queues)
{
    char tag[40], want[40];
    G_CHECK(g_cmdline_get(cmdline, "tag", want, sizeof(want)), "no tag= on the command line");
    for (unsigned i = 0; i < 36; i++)
        tag[i] = (char)gv_config8(dev, i);
    tag[36] = 0;
    size_t n = g_strlen(want);
    G_CHECK(g_strncmp(tag, want, n) == 0, "config tag `%s`, expected `%s`", tag, want);
    for (size_t i = n; i < 36; i++)
        G_CHECK(tag[i] == 0, "config tag not NUL-padded at %lu", (uint64_t)i);
    uint32_t nq = gv_config32(dev, 36);
    G_CHECK(nq == queues, "num_request_queues %u, expected %u", nq, queues);
    g_print("virtio-fs: tag `%s`, %u request queues", tag, nq);
}

void guest_main(const struct g_boot *b)
{
    cmdline = b->cmdline;
    g_print("cmdline: %s", cmdline);
    use_indirect = (int)opt("indirect", 0);
    static struct gv_dev devs[GV_MAX_DEVS];
    unsigned n = gv_find(cmdline, devs, GV_MAX_DEVS);
    for (unsigned i = 0; i < n && !dev; i++)
        if (devs[i].id == VIRTIO_ID_FS)
            dev = &devs[i];
    G_CHECK(dev, "no virtio-fs device among %u", n);
    unsigned queues = (unsigned)opt("queues", 1);
    unsigned room = (unsigned)(sizeof(dev->q) / sizeof(dev->q[0])) - 1;
    G_CHECK(queues >= 1 && queues <= room, "queues=%u: the driver has room for %u", queues, room);
    setup(queues);
    check_config(queues);
    struct fuse_attr_out a;
    G_CHECK(getattr(FUSE_ROOT_ID, &a) == -EIO, "a request before INIT was served");
    init();
    uint64_t hello;
    uint64_t fh = test_read(&hello);
    test_dax(hello, fh, (int)opt("ro", 0));
    if (opt("ro", 0)) {
        test_readonly();
        release(FUSE_RELEASE, fh);
    } else {
        test_create_write();
        test_mkdir();
        test_mknod();
        uint64_t list = test_readdir();
        test_unlink();
        release(FUSE_RELEASE, fh);
        test_forget(hello, list);
    }
    test_escape();
    test_hostile();
    test_queues(queues);
    G_CHECK(call_exact(FUSE_DESTROY, 0, 0, 0, 0, 0, "DESTROY") == 0, "DESTROY failed");
    init();
    lookup_ok(FUSE_ROOT_ID, "hello.bin", S_IFREG_);
    g_print("virtio-fs: DESTROY, INIT again ok");
    test_reset(queues);
    g_print("virtio-fs: all checks passed");
    g_exit(0);
}
