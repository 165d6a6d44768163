/* The virtio devices cocoon's VMM offers. Each create function returns a
 * device ready for virtio_mmio_attach(); options are checked here, so a bad
 * one is a clear error before the VM exists. */
#pragma once
#include <stdbool.h>

#include "fs/fs.h"
#include "virtio/virtio.h"

struct err;

/* virtio-rng: entropy from getrandom(). */
int virtio_rng_create(struct virtio_dev **out, struct err **err);

struct virtio_blk_opts {
    const char *path;       /* a raw disk image */
    bool readonly;
    bool direct;            /* O_DIRECT: bypass the host page cache */
    const char *serial;     /* up to 20 bytes, for VIRTIO_BLK_T_GET_ID */
};

/* virtio-blk backed by a raw file. */
int virtio_blk_create(const struct virtio_blk_opts *o, struct virtio_dev **out, struct err **err);

/* Ports of one virtio-console: port 0 and up to 6 more (MULTIPORT), each
 * with a receive and a transmit queue, plus the two control queues. */
#define VIRTIO_CONSOLE_MAX_PORTS (VIRTIO_MAX_QUEUES / 2 - 1)
#define VIRTIO_CONSOLE_NAME_MAX 63

/* An extra port's host side: one of socket, file, stdio; none of them: a
 * port with no host side (what the guest writes is dropped). */
struct virtio_console_port_opts {
    const char *name;       /* PORT_NAME: /sys/class/virtio-ports/vportNpM/name in a guest */
    const char *socket;     /* listen on this Unix socket, one client at a time */
    const char *file;       /* or: the guest's output goes to this file (created, truncated) */
    bool stdio;             /* or: stdin and stdout */
};

struct virtio_console_opts {
    int in_fd, out_fd;      /* host side of the console port, port 0 (-1: none) */
    const char *socket;     /* or: listen on this Unix socket, one client at a time */
    unsigned n_ports;       /* extra ports (ports 1..n_ports); any: MULTIPORT is offered */
    struct virtio_console_port_opts ports[VIRTIO_CONSOLE_MAX_PORTS - 1];
};

/* virtio-console: port 0 is the console (hvc0 in a Linux guest); extra
 * ports are named, and announced over the control queues (MULTIPORT). */
int virtio_console_create(const struct virtio_console_opts *o, struct virtio_dev **out,
                          struct err **err);

struct virtio_pmem_opts {
    const char *path;       /* the image, e.g. an ext4 or erofs filesystem */
    bool shared;            /* MAP_SHARED: guest writes reach the file */
    uint64_t gpa;           /* where it appears in guest-physical memory (2 MiB aligned) */
    unsigned slot;          /* the KVM memory slot it takes */
};

/* virtio-pmem: the file mapped into guest memory (MAP_PRIVATE by default). */
int virtio_pmem_create(const struct virtio_pmem_opts *o, struct virtio_dev **out,
                       struct err **err);

/* The guest-physical size a pmem device takes (the file, 2 MiB rounded). */
uint64_t virtio_pmem_size(const struct virtio_dev *d);

struct virtio_net_opts {
    const char *tap;        /* the tap's name: opened if it exists, else created (and gone
                             * when the VM ends) */
    const char *netns;      /* a network namespace file (/proc/PID/ns/net, /run/netns/X), or NULL */
    const char *mac;        /* xx:xx:xx:xx:xx:xx, or NULL for 52:54:00:12:34:56 */
};

/* virtio-net on a tap device. */
int virtio_net_create(const struct virtio_net_opts *o, struct virtio_dev **out, struct err **err);

struct virtio_vsock_opts {
    uint64_t guest_cid;     /* the guest's address: 3..4294967294 */
    const char *uds_path;   /* host clients connect here ("CONNECT <port>\n"); a guest
                             * connection to the host's port P goes to uds_path_P */
};

/* virtio-vsock on Unix sockets (Firecracker's model); listens on uds_path
 * from now on (the socket is removed when the device is destroyed). */
int virtio_vsock_create(const struct virtio_vsock_opts *o, struct virtio_dev **out,
                        struct err **err);

/* Request queues a virtio-fs device offers at most (all served by the event thread). */
#define VIRTIO_FS_MAX_QUEUES 4

/* The largest DAX window a virtio-fs device takes. */
#define VIRTIO_FS_DAX_MAX (64ull << 30)

struct virtio_fs_opts {
    const char *tag;        /* what the guest mounts (mount -t virtiofs TAG): 1..36 bytes */
    const char *dir;        /* the host directory shared */
    unsigned queues;        /* request queues, 1..VIRTIO_FS_MAX_QUEUES (0: 1) */
    struct fs_options fs;   /* id maps, timeouts, ro, max_pages, writeback (see docs/virtio.md) */
    uint64_t dax_size;      /* the DAX window's size (a multiple of 2 MiB), 0: none */
    uint64_t dax_gpa;       /* where the window appears (2 MiB aligned): chosen by the VMM */
    unsigned dax_slot;      /* the KVM memory slot it takes: chosen by the VMM */
};

/* virtio-fs: the FUSE core (src/fs) serving dir to the guest over virtqueues,
 * with a DAX window (shared memory region 0) if dax_size is set. */
int virtio_fs_create(const struct virtio_fs_opts *o, struct virtio_dev **out, struct err **err);

/* A guest must not make device nodes on the host through a share (the
 * server runs as the VMM's user, often root): the process serving one
 * gives up CAP_MKNOD for good. Call it before starting threads
 * (capabilities are per thread). FIFOs and sockets need no capability. */
int virtio_fs_drop_mknod(struct err **err);
