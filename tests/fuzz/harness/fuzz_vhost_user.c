/* libFuzzer harness: a vhost-user frontend gone wrong. The input is a
 * sequence of messages (12-byte header, then its payload, cut to what is
 * left) fed to a real virtio-fs device's vhost-user backend serving a
 * temporary directory. Messages that take fds get real ones: a memfd of
 * guest memory (its first bytes copied from the input, so rings and
 * descriptors in it are hostile too) for SET_MEM_TABLE, eventfds for the
 * kick, call and error fds. After the messages every kick fd is kicked and
 * the queues are served. The backend must refuse what is malformed and
 * never crash, hang or touch memory outside what it mapped. */
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/err.h"
#include "fuzz_check.h"
#include "fuzz_tree.h"
#include "virtio/devices.h"
#include "virtio/vhost_user.h"
#include "virtio/virtio.h"
#include "vmm/evloop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MEM (1u << 20)
#define MAX_MSGS 64

static char dir[64];
static int devnull = -1;

static void cleanup(void)
{
    fuzz_tree_empty(dir);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof(dir), "%s/fuzz_vhost_user.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    atexit(cleanup);
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    CHECK(devnull >= 0);
    return 0;
}

/* The fds a message of this request carries, as a frontend would attach. */
static unsigned attach_fds(const struct vhost_user_msg *m, int memfd, int fds[])
{
    uint32_t n = 0;
    switch (m->hdr.request) {
    case 5: /* SET_MEM_TABLE: one fd per region the payload claims */
        if (m->hdr.size >= 4)
            memcpy(&n, m->payload, 4);
        n = n > VHOST_USER_MAX_FDS ? VHOST_USER_MAX_FDS : n;
        for (uint32_t i = 0; i < n; i++)
            fds[i] = dup(memfd);
        return n;
    case 12: case 13: case 14: /* SET_VRING_KICK, CALL, ERR: one unless "no fd" */
        if (m->hdr.size >= 2 && (m->payload[1] & 1))
            return 0;
        fds[0] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        return 1;
    default:
        return 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct virtio_fs_opts o = {.tag = "fuzz", .dir = dir};
    fs_options_default(&o.fs);
    struct virtio_dev *d = NULL;
    struct err *e = NULL;
    CHECK(virtio_fs_create(&o, &d, &e) == 0);
    struct vhost_user *vu = NULL;
    CHECK(vhost_user_new(d, devnull, &vu, &e) == 0);
    int memfd = memfd_create("fuzz-guest", MFD_CLOEXEC);
    CHECK(memfd >= 0 && ftruncate(memfd, MEM) == 0);
    CHECK(pwrite(memfd, data, size < MEM ? size : MEM, 0) >= 0);
    size_t off = 0;
    for (unsigned k = 0; k < MAX_MSGS && size - off >= sizeof(struct vhost_user_hdr); k++) {
        struct vhost_user_msg m = {0};
        memcpy(&m.hdr, data + off, sizeof(m.hdr));
        off += sizeof(m.hdr);
        size_t n = m.hdr.size < VHOST_USER_PAYLOAD_MAX ? m.hdr.size : VHOST_USER_PAYLOAD_MAX;
        n = n < size - off ? n : size - off;
        memcpy(m.payload, data + off, n);
        off += n;
        m.n_fds = attach_fds(&m, memfd, m.fds);
        if (vhost_user_handle(vu, &m, &e) < 0) {
            err_free(&e);
            break;
        }
    }
    /* Kick every running ring and serve what the guest memory holds. */
    uint64_t one = 1;
    for (unsigned q = 0; q < d->num_queues; q++)
        if (d->kick_fd[q] >= 0)
            CHECK(write(d->kick_fd[q], &one, sizeof(one)) == sizeof(one));
    evloop_run_once(d->loop, 0);
    vhost_user_free(vu);
    virtio_dev_destroy(d);
    close(memfd);
    return 0;
}
