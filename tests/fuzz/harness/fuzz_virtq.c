/* libFuzzer harness: random guest memory under a virtqueue, served by a
 * real device (rng, blk on a memfd, console to /dev/null, pmem on a memfd). The first bytes
 * choose the device, the queue size and the negotiated ring features; the
 * rest becomes guest RAM holding the descriptor table, the rings and the
 * buffers. A malformed queue must end in NEEDS_RESET, never in a host
 * access outside guest memory (guard pages), a hang or a crash. */
#include <fcntl.h>
#include <linux/virtio_config.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/err.h"
#include "fuzz_check.h"
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

static struct guest_mem mem;
static struct virtio_dev *devs[4];

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
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    struct virtio_dev *d = devs[data[0] % 4];
    unsigned qi = data[1] % d->num_queues;
    uint16_t qsize = (uint16_t)(1u << (data[2] % 7)); /* 1..64 */
    uint8_t feat = data[3];
    data += 4;
    size -= 4;
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
    /* the driver may keep kicking; the device must stay bounded */
    for (int kick = 0; kick < 3 && virtio_dev_running(d); kick++)
        d->ops->notify(d, qi);
    CHECK((uint16_t)q->used_idx <= (uint16_t)q->last_avail); /* never more used than taken */
    /* reset for the next input, as a driver would */
    if (d->ops->reset)
        d->ops->reset(d);
    d->status = 0;
    return 0;
}
