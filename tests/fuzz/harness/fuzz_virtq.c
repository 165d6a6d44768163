/* libFuzzer harness: random guest memory under a virtqueue, served by a
 * real device (rng, blk on a memfd, console to /dev/null, pmem on a memfd,
 * virtio-fs serving a temporary directory rebuilt for every input, whose
 * sibling must never change, a console with extra ports whose control
 * receive queue gets a second ring). The first bytes
 * choose the device, the queue size and the negotiated ring features; the
 * rest becomes guest RAM holding the descriptor table, the rings and the
 * buffers. A malformed queue must end in NEEDS_RESET, never in a host
 * access outside guest memory (guard pages), a hang or a crash. */
#include <fcntl.h>
#include <ftw.h>
#include <linux/virtio_config.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "fuzz_check.h"
#include "fuzz_tree.h"
#include "guarded_mem.h"
#include "virtio/devices.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MEM (256u << 10)
/* The rings sit at the start, where short inputs reach: the available
 * ring, then the descriptor table; the used ring (device-written) after. */
#define AVAIL_GPA 0x0
#define DESC_GPA 0x400
#define USED_GPA 0x8000

#define NDEVS 6
#define FS_DEV 4
#define CONSOLE_MP_DEV 5
/* The multiport console's control receive queue gets a second ring, still
 * inside the first 4 KiB of input (avail, desc), used ring after. */
#define CTL_AVAIL_GPA 0x800
#define CTL_DESC_GPA 0xa00
#define CTL_USED_GPA 0x9000

static struct guest_mem mem;
static struct virtio_dev *devs[NDEVS];
static char fs_top[64];   /* <tmp>/fuzz_virtq.XXXXXX */
static char fs_tree[96];  /* fs_top/tree: what virtio-fs serves */
static char fs_guard[96]; /* fs_top/guard: a sibling that must never change */

static void fs_cleanup(void)
{
    if (fs_top[0]) {
        fuzz_tree_empty(fs_top);
        rmdir(fs_top);
    }
}

/* Empty the served tree (it stays the same directory: the device holds it
 * open) and fill it again: a file, a directory, a symlink pointing out. */
static void fs_tree_rebuild(void)
{
    fuzz_tree_empty(fs_tree);
    int d = open(fs_tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(d >= 0);
    int f = openat(d, "file", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    CHECK(f >= 0 && write(f, "0123456789abcdef", 16) == 16);
    close(f);
    CHECK(mkdirat(d, "dir", 0755) == 0);
    CHECK(symlinkat("../guard", d, "up") == 0);
    close(d);
}

static void fs_guard_check(void)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/g", fs_guard);
    struct stat st;
    CHECK(stat(p, &st) == 0 && st.st_size == 5 && (st.st_mode & 07777) == 0644 &&
          st.st_nlink == 1);
    snprintf(p, sizeof(p), "%s/guard", fs_top);
    CHECK(stat(p, &st) == 0 && st.st_nlink == 2); /* nothing made inside it */
}

static struct virtio_dev *fs_create(void)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fs_top, sizeof(fs_top), "%.40s/fuzz_virtq.XXXXXX", tmp);
    CHECK(mkdtemp(fs_top) != NULL);
    atexit(fs_cleanup);
    snprintf(fs_tree, sizeof(fs_tree), "%s/tree", fs_top);
    snprintf(fs_guard, sizeof(fs_guard), "%s/guard", fs_top);
    CHECK(mkdir(fs_tree, 0755) == 0 && mkdir(fs_guard, 0755) == 0);
    char p[128];
    snprintf(p, sizeof(p), "%s/g", fs_guard);
    int f = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    CHECK(f >= 0 && write(f, "guard", 5) == 5 && fchmod(f, 0644) == 0);
    close(f);
    struct virtio_fs_opts fo = {.tag = "fuzz", .dir = fs_tree, .queues = 1};
    fs_options_default(&fo.fs);
    fo.fs.max_pages = 16;
    struct virtio_dev *d = NULL;
    struct err *e = NULL;
    if (virtio_fs_create(&fo, &d, &e) < 0)
        abort();
    return d;
}

/* A console with extra ports (MULTIPORT): port 0 reads /dev/zero (input is
 * always there) and writes /dev/null; port 1 a named file; port 2 a socket
 * nobody connects to (its output waits); port 3 no host side. */
static struct virtio_dev *console_mp_create(void)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char console_sock[96];
    snprintf(console_sock, sizeof(console_sock), "%.40s/fuzz_virtq.%d.sock", tmp, (int)getpid());
    unlink(console_sock);
    struct virtio_console_opts co = {
        .in_fd = open("/dev/zero", O_RDONLY | O_CLOEXEC),
        .out_fd = open("/dev/null", O_WRONLY | O_CLOEXEC),
        .n_ports = 3,
        .ports = {{.name = "fuzz.one", .file = "/dev/null"},
                  {.name = "fuzz.two", .socket = console_sock},
                  {.name = "fuzz.three"}},
    };
    struct virtio_dev *d = NULL;
    struct err *e = NULL;
    if (co.in_fd < 0 || co.out_fd < 0 || virtio_console_create(&co, &d, &e) < 0)
        abort();
    unlink(console_sock); /* the socket stays listening; libFuzzer's exit runs no atexit */
    return d;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    guarded_mem(&mem, MEM);
    struct err *e = NULL;
    int disk = memfd_create("fuzz-disk", MFD_CLOEXEC);
    if (disk < 0 || ftruncate(disk, 1 << 20) < 0)
        abort();
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", disk);
    struct virtio_blk_opts bo = {.path = path, .serial = "fuzz"};
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    struct virtio_console_opts co = {.in_fd = -1, .out_fd = null};
    int img = memfd_create("fuzz-pmem", MFD_CLOEXEC);
    if (img < 0 || ftruncate(img, 4096) < 0)
        abort();
    char ipath[64];
    snprintf(ipath, sizeof(ipath), "/proc/self/fd/%d", img);
    struct virtio_pmem_opts po = {.path = ipath, .gpa = 1ull << 32, .slot = 1};
    if (virtio_rng_create(&devs[0], &e) < 0 || virtio_blk_create(&bo, &devs[1], &e) < 0 ||
        virtio_console_create(&co, &devs[2], &e) < 0 || virtio_pmem_create(&po, &devs[3], &e) < 0)
        abort();
    devs[FS_DEV] = fs_create();
    devs[CONSOLE_MP_DEV] = console_mp_create();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    struct virtio_dev *d = devs[data[0] % NDEVS];
    unsigned qi = data[1] % d->num_queues;
    uint16_t qsize = (uint16_t)(1u << (data[2] % 7)); /* 1..64 */
    uint8_t feat = data[3];
    data += 4;
    size -= 4;
    if (d == devs[FS_DEV])
        fs_tree_rebuild();
    memset(mem.host, 0, MEM);
    memcpy(mem.host, data, size < MEM ? size : MEM);

    d->mem = &mem;
    d->irq_fd = -1;
    d->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
    struct virtq *q = &d->queues[qi];
    virtq_reset(q);
    q->size = qsize;
    q->desc_gpa = DESC_GPA;
    q->avail_gpa = AVAIL_GPA;
    q->used_gpa = USED_GPA;
    q->indirect = feat & 1;
    q->event_idx = feat & 2;
    CHECK(virtq_enable(q, &mem) == 0); /* fixed, valid addresses: must be accepted */
    /* the multiport console: MULTIPORT taken (feature bit 2 of the input's
     * choice) and its control receive queue ready beside queue qi */
    struct virtq *ctl = NULL;
    if (d == devs[CONSOLE_MP_DEV]) {
        d->driver_features = (feat & 4) ? 1ull << 1 /* VIRTIO_CONSOLE_F_MULTIPORT */ : 0;
        if (qi != 2) {
            ctl = &d->queues[2];
            virtq_reset(ctl);
            ctl->size = qsize;
            ctl->desc_gpa = CTL_DESC_GPA;
            ctl->avail_gpa = CTL_AVAIL_GPA;
            ctl->used_gpa = CTL_USED_GPA;
            ctl->indirect = q->indirect;
            ctl->event_idx = q->event_idx;
            CHECK(virtq_enable(ctl, &mem) == 0);
        }
    }
    /* the driver may keep kicking; the device must stay bounded */
    for (int kick = 0; kick < 3 && virtio_dev_running(d); kick++)
        d->ops->notify(d, qi);
    CHECK((uint16_t)q->used_idx <= (uint16_t)q->last_avail); /* never more used than taken */
    if (ctl && virtio_dev_running(d))
        d->ops->notify(d, 2); /* more control buffers: what is still owed goes out */
    if (ctl) {
        CHECK((uint16_t)ctl->used_idx <= (uint16_t)ctl->last_avail);
        virtq_reset(ctl);
    }
    if (d == devs[FS_DEV])
        fs_guard_check();
    /* reset for the next input, as a driver would */
    if (d->ops->reset)
        d->ops->reset(d);
    d->status = 0;
    return 0;
}
