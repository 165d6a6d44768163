/* A vhost-user backend: one of cocoon's virtio devices served to another
 * VMM (qemu's vhost-user-*-device) over a Unix stream socket, as the
 * vhost-user protocol says (qemu's docs/interop/vhost-user.rst). The
 * frontend lends its guest memory (memfds, mapped here MAP_SHARED) and one
 * kick and one call eventfd per queue; the queues are served by the same
 * code as on cocoon's own VMM, on one event thread.
 *
 * What is offered: the device's features plus VERSION_1, INDIRECT_DESC
 * and EVENT_IDX; no protocol features (so rings run as soon as they are
 * kicked), no dirty-page logging, no polling rings. A message this
 * backend cannot honour ends the session with an error naming it. */
#pragma once
#include <stddef.h>
#include <stdint.h>

struct err;
struct virtio_dev;
struct vhost_user;

/* Message header (all fields little-endian, as on x86). */
struct vhost_user_hdr {
    uint32_t request;
    uint32_t flags;   /* bits 0-1: version (1); bit 2: reply; bit 3: need reply */
    uint32_t size;    /* payload bytes that follow */
};

/* The largest payload accepted (a memory table of 8 regions is 264). */
#define VHOST_USER_PAYLOAD_MAX 512
/* The most fds one message may carry (one per memory region). */
#define VHOST_USER_MAX_FDS 8

/* One received message. */
struct vhost_user_msg {
    struct vhost_user_hdr hdr;
    uint8_t payload[VHOST_USER_PAYLOAD_MAX];
    int fds[VHOST_USER_MAX_FDS];
    unsigned n_fds;
};

/* A backend for device d talking on the connected socket sock (both stay
 * the caller's; d is wired to the backend's memory and event loop). */
int vhost_user_new(struct virtio_dev *d, int sock, struct vhost_user **out, struct err **err);

/* Handle one message (its fds are taken over and closed or kept); replies
 * go to the socket. Returns 0, or -1 with *err if the session must end. */
int vhost_user_handle(struct vhost_user *vu, struct vhost_user_msg *m, struct err **err);

/* Serve until the frontend hangs up (0) or breaks the protocol (-1). */
int vhost_user_serve(struct vhost_user *vu, struct err **err);

/* Stop the rings, unmap the guest memory, free vu. */
void vhost_user_free(struct vhost_user *vu);
