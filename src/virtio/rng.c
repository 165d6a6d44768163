/* virtio-rng (virtio 1.x section 5.4): every writable buffer the driver
 * offers is filled from getrandom(). */
#include <errno.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <sys/random.h>

#include "common/util.h"
#include "virtio/devices.h"

struct rng {
    struct virtio_dev dev;
    struct virtq_chain chain;
};

/* Fill every writable buffer of the chain from getrandom(). */
static uint32_t rng_fill(struct virtio_dev *d, struct virtq_chain *c)
{
    (void)d;
    uint64_t written = 0;
    for (unsigned i = 0; i < c->n_in; i++) {
        struct iovec *v = &c->in[i];
        size_t done = 0;
        while (done < v->iov_len) {
            ssize_t n = getrandom((uint8_t *)v->iov_base + done, v->iov_len - done, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            done += (size_t)n;
        }
        written += done;
        if (done < v->iov_len)
            break;
    }
    return (uint32_t)written;
}

static void rng_notify(struct virtio_dev *d, unsigned qi)
{
    struct rng *r = d->priv;
    virtio_queue_serve(d, qi, &r->chain, rng_fill);
}

static void rng_destroy(struct virtio_dev *d)
{
    free(d->priv);
}

static const struct virtio_dev_ops rng_ops = {
    .name = "rng", .notify = rng_notify, .destroy = rng_destroy,
};

int virtio_rng_create(struct virtio_dev **out, struct err **err)
{
    (void)err;
    struct rng *r = xcalloc(1, sizeof(*r));
    virtio_dev_init(&r->dev, &rng_ops, r, VIRTIO_ID_RNG, 0, 1, 256);
    *out = &r->dev;
    return 0;
}
