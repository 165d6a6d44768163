/* libFuzzer harness: the virtio-vsock device (src/virtio/vsock.c) driven
 * by a script of guest packets and host socket actions. The rings are
 * always valid (fuzz_virtq.c covers malformed ones); what the fuzzer owns
 * is every header field and length of the packets the guest transmits,
 * the sizes of the receive buffers it posts, what host clients write on the
 * device's Unix socket (CONNECT lines, data, closes) and what the host
 * peers of guest connections do. A fresh device per input, so that ports
 * and connection slots are the same for the same input.
 *
 * Input: commands, each a byte (its low 3 bits say which) and operands:
 *   TX      44 header bytes, a mode byte, u16 payload length: a packet
 *           (header split over descriptors as the mode says; mode bit 2
 *           makes the cids right, bit 3 makes hdr.len match the payload)
 *   RXPOST  count byte, u16 size: receive buffers
 *   RXTAKE  check and return every used receive buffer
 *   CLIENT  length byte, that many bytes: a host client connects and writes them
 *   HOSTOP  slot byte, op byte, u16 length: a host socket writes, reads,
 *           shuts down or closes
 *   ACCEPT  accept a guest connection on PATH_5000
 *   LOOP    one turn of the event loop
 *   RESET   the driver resets the device and sets it up again
 * Checked: no crash, hang or access outside guest memory; no NEEDS_RESET
 * from valid rings; every transmitted packet consumed; every packet the
 * device writes is well-formed and fits its buffer; and once the device
 * is destroyed, no file descriptor is left open. */
#include <dirent.h>
#include <errno.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>
#include <linux/virtio_vsock.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/err.h"
#include "fuzz_check.h"
#include "guarded_mem.h"
#include "virtio/devices.h"
#include "vmm/evloop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MEM (1u << 20)
#define QSIZE 64
#define HDR ((uint32_t)sizeof(struct virtio_vsock_hdr))
#define GUEST_CID 3
/* guest-physical layout: rings, then receive buffers, then one packet */
#define RX_DESC 0x0000
#define RX_AVAIL 0x1000
#define RX_USED 0x2000
#define TX_DESC 0x3000
#define TX_AVAIL 0x4000
#define TX_USED 0x5000
#define RX_BUFS 0x10000
#define RX_BUF_SIZE 8192
#define TX_BUF 0xa0000
#define TX_MAX (HDR + 66000)
#define CLIENTS 8

enum { CMD_TX, CMD_RXPOST, CMD_RXTAKE, CMD_CLIENT, CMD_HOSTOP, CMD_ACCEPT, CMD_LOOP, CMD_RESET };

static struct guest_mem mem;
static struct evloop *loop;
static char dir[64], uds[96], port_path[112];
static int listener = -1;      /* the host's PATH_5000 */
static int baseline_fds;
static uint8_t filler[65536];

/* the driver's side of the two queues */
static struct {
    uint16_t rx_avail, rx_used_seen, tx_avail;
    uint32_t rx_len[QSIZE];
    bool rx_posted[QSIZE];
} drv;
static int clients[CLIENTS];

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t get8(struct input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static uint16_t get16(struct input *in)
{
    uint16_t lo = get8(in);
    return (uint16_t)(lo | get8(in) << 8);
}

static void *gpa(uint64_t a)
{
    return mem.host + a;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void cleanup(void)
{
    unlink(port_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    guarded_mem(&mem, MEM);
    struct err *e = NULL;
    CHECK(evloop_create(&loop, &e) == 0);
    snprintf(dir, sizeof(dir), "/tmp/fuzz_vsock.XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(uds, sizeof(uds), "%s/v", dir);
    snprintf(port_path, sizeof(port_path), "%s_5000", uds);
    listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", port_path);
    CHECK(listener >= 0 && bind(listener, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
          listen(listener, 64) == 0);
    atexit(cleanup);
    for (size_t i = 0; i < sizeof(filler); i++)
        filler[i] = (uint8_t)(i * 7);
    baseline_fds = count_fds();
    return 0;
}

/* What the transport does when a driver sets up the queues and DRIVER_OK. */
static void driver_setup(struct virtio_dev *d)
{
    memset(&drv, 0, sizeof(drv));
    memset(gpa(0), 0, RX_BUFS);
    d->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
    uint64_t rings[2][3] = {{RX_DESC, RX_AVAIL, RX_USED}, {TX_DESC, TX_AVAIL, TX_USED}};
    for (int q = 0; q < 2; q++) {
        struct virtq *vq = &d->queues[q];
        virtq_reset(vq);
        vq->size = QSIZE;
        vq->desc_gpa = rings[q][0];
        vq->avail_gpa = rings[q][1];
        vq->used_gpa = rings[q][2];
        CHECK(virtq_enable(vq, &mem) == 0);
    }
    d->ops->activate(d);
}

static void notify(struct virtio_dev *d, unsigned q)
{
    pthread_mutex_lock(&d->lock);
    if (virtio_dev_running(d))
        d->ops->notify(d, q);
    pthread_mutex_unlock(&d->lock);
    CHECK(!(d->status & VIRTIO_CONFIG_S_NEEDS_RESET)); /* the rings are valid */
}

static void publish(uint64_t avail_gpa, uint16_t *idx, uint16_t head)
{
    struct vring_avail *a = gpa(avail_gpa);
    a->ring[*idx % QSIZE] = head;
    (*idx)++;
    __atomic_store_n(&a->idx, *idx, __ATOMIC_RELEASE);
}

static void cmd_tx(struct virtio_dev *d, struct input *in)
{
    struct virtio_vsock_hdr h;
    uint8_t raw[sizeof(h)];
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = get8(in);
    memcpy(&h, raw, sizeof(h));
    uint8_t mode = get8(in);
    uint32_t len = get16(in);
    if (mode & 0x20)
        len += 1024; /* past 64 KiB too */
    if (mode & 4) {
        h.src_cid = GUEST_CID;
        h.dst_cid = 2;
        h.type = VIRTIO_VSOCK_TYPE_STREAM;
    }
    if (mode & 8)
        h.len = len;
    uint8_t *buf = gpa(TX_BUF);
    memcpy(buf, &h, HDR);
    memcpy(buf + HDR, filler, len < sizeof(filler) ? len : sizeof(filler));
    struct vring_desc *desc = gpa(TX_DESC);
    uint32_t total = HDR + len, cut = HDR;
    switch (mode & 3) {
    case 0: cut = total; break;                 /* one descriptor */
    case 1: cut = HDR; break;                   /* header, then payload */
    case 2: cut = get8(in) % (HDR + 1); break;  /* the header itself split */
    case 3: cut = (uint32_t)(mode >> 4) % 8; total = cut + HDR / 2; break; /* short */
    }
    unsigned n = 0;
    desc[n] = (struct vring_desc){TX_BUF, cut, 0, 0};
    if (cut) n++;
    if (total > cut) {
        desc[n] = (struct vring_desc){TX_BUF + cut, total - cut, 0, 0};
        n++;
    }
    if (n == 0)
        desc[n++] = (struct vring_desc){TX_BUF, 0, 0, 0};
    if (n == 2) {
        desc[0].flags = VRING_DESC_F_NEXT;
        desc[0].next = 1;
    }
    publish(TX_AVAIL, &drv.tx_avail, 0);
    notify(d, 1);
    struct vring_used *u = gpa(TX_USED);
    CHECK(u->idx == drv.tx_avail); /* every packet consumed at once */
}

static void cmd_rx_post(struct virtio_dev *d, struct input *in)
{
    unsigned count = get8(in) % 16 + 1;
    uint32_t size = get16(in) % (RX_BUF_SIZE + 1);
    struct vring_desc *desc = gpa(RX_DESC);
    for (unsigned k = 0; k < count; k++) {
        int id = -1;
        for (int i = 0; i < QSIZE && id < 0; i++)
            if (!drv.rx_posted[i])
                id = i;
        if (id < 0)
            break;
        desc[id] = (struct vring_desc){RX_BUFS + (uint64_t)id * RX_BUF_SIZE, size,
                                       VRING_DESC_F_WRITE, 0};
        drv.rx_posted[id] = true;
        drv.rx_len[id] = size;
        publish(RX_AVAIL, &drv.rx_avail, (uint16_t)id);
        size = size / 2 + 40; /* a mix of sizes, some below a header */
    }
    notify(d, 0);
}

/* Every packet the device wrote: well-formed, inside its buffer. */
static void cmd_rx_take(void)
{
    struct vring_used *u = gpa(RX_USED);
    uint16_t idx = __atomic_load_n(&u->idx, __ATOMIC_ACQUIRE);
    CHECK((uint16_t)(idx - drv.rx_used_seen) <= (uint16_t)(drv.rx_avail - drv.rx_used_seen));
    for (; drv.rx_used_seen != idx; drv.rx_used_seen++) {
        struct vring_used_elem e = u->ring[drv.rx_used_seen % QSIZE];
        CHECK(e.id < QSIZE && drv.rx_posted[e.id]);
        uint32_t cap = drv.rx_len[e.id];
        drv.rx_posted[e.id] = false;
        CHECK(e.len <= cap);
        CHECK((e.len == 0) == (cap < HDR)); /* too small for a header: returned empty */
        if (e.len == 0)
            continue;
        struct virtio_vsock_hdr h;
        memcpy(&h, gpa(RX_BUFS + (uint64_t)e.id * RX_BUF_SIZE), HDR);
        CHECK(h.src_cid == 2 && h.dst_cid == GUEST_CID);
        CHECK(h.type == VIRTIO_VSOCK_TYPE_STREAM);
        CHECK(h.op >= VIRTIO_VSOCK_OP_REQUEST && h.op <= VIRTIO_VSOCK_OP_CREDIT_REQUEST);
        CHECK(h.len == e.len - HDR && h.len <= 65536);
        CHECK(h.op == VIRTIO_VSOCK_OP_RW || h.len == 0);
        CHECK(h.op != VIRTIO_VSOCK_OP_SHUTDOWN || (h.flags && h.flags <= 3));
    }
}

static int free_client(void)
{
    for (int i = 0; i < CLIENTS; i++)
        if (clients[i] < 0)
            return i;
    return -1;
}

static void cmd_client(struct input *in)
{
    uint8_t n = get8(in) % 48;
    char line[48];
    for (unsigned i = 0; i < n; i++)
        line[i] = (char)get8(in);
    int slot = free_client();
    if (slot < 0)
        return;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", uds);
    CHECK(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return;
    }
    if (n && send(fd, line, n, MSG_NOSIGNAL) < 0) {
        /* the device may have closed it already */
    }
    clients[slot] = fd;
}

static void cmd_hostop(struct input *in)
{
    int slot = get8(in) % CLIENTS;
    uint8_t op = get8(in);
    uint16_t len = get16(in);
    int fd = clients[slot];
    if (fd < 0)
        return;
    static uint8_t sink[65536];
    switch (op % 4) {
    case 0:
        if (send(fd, filler, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            /* full or gone: both fine */
        }
        break;
    case 1:
        while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
        break;
    case 2: shutdown(fd, (op & 4) ? SHUT_RDWR : SHUT_WR); break;
    case 3:
        close(fd);
        clients[slot] = -1;
        break;
    }
}

static void cmd_accept(void)
{
    int slot = free_client();
    int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    if (slot < 0)
        close(fd);
    else
        clients[slot] = fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    struct virtio_vsock_opts o = {.guest_cid = GUEST_CID, .uds_path = uds};
    struct virtio_dev *d = NULL;
    struct err *e = NULL;
    CHECK(virtio_vsock_create(&o, &d, &e) == 0);
    d->mem = &mem;
    d->loop = loop;
    d->irq_fd = -1;
    CHECK(d->ops->attach(d, &e) == 0);
    for (int i = 0; i < CLIENTS; i++)
        clients[i] = -1;
    driver_setup(d);
    for (unsigned steps = 0; in.n && steps < 256; steps++) {
        switch (get8(&in) & 7) {
        case CMD_TX: cmd_tx(d, &in); break;
        case CMD_RXPOST: cmd_rx_post(d, &in); break;
        case CMD_RXTAKE: cmd_rx_take(); break;
        case CMD_CLIENT: cmd_client(&in); break;
        case CMD_HOSTOP: cmd_hostop(&in); break;
        case CMD_ACCEPT: cmd_accept(); break;
        case CMD_LOOP: evloop_run_once(loop, 0); break;
        case CMD_RESET:
            pthread_mutex_lock(&d->lock);
            d->ops->reset(d);
            d->status = 0;
            pthread_mutex_unlock(&d->lock);
            driver_setup(d);
            break;
        }
    }
    evloop_run_once(loop, 0);
    cmd_rx_take();
    virtio_dev_destroy(d);
    for (int i = 0; i < CLIENTS; i++)
        if (clients[i] >= 0)
            close(clients[i]);
    for (int fd; (fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC)) >= 0;)
        close(fd);
    evloop_run_once(loop, 0); /* frees the loop's entries of the closed fds */
    CHECK(count_fds() == baseline_fds); /* every host socket closed with the device */
    CHECK(access(uds, F_OK) != 0);      /* and the listening socket removed */
    return 0;
}
