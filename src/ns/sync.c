#include "ns/sync.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include "common/err.h"

int sync_send(int fd, enum sync_type type, pid_t pid)
{
    struct sync_msg m = {.type = type, .pid = pid};
    ssize_t n;
    do
        n = send(fd, &m, offsetof(struct sync_msg, msg), MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -1 : 0;
}

void sync_send_error(int fd, struct err *e)
{
    struct sync_msg m = {.type = SYNC_ERROR, .code = e ? e->code : 0};
    const char *msg = e && e->msg ? e->msg : "unknown error";
    size_t l = strlen(msg);
    if (l >= sizeof(m.msg))
        l = sizeof(m.msg) - 1;
    memcpy(m.msg, msg, l);
    m.msg[l] = '\0';
    ssize_t n;
    do
        n = send(fd, &m, offsetof(struct sync_msg, msg) + l + 1, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
}

int sync_recv(int fd, struct sync_msg *m, struct err **err)
{
    memset(m, 0, sizeof(*m));
    ssize_t n;
    do
        n = recv(fd, m, sizeof(*m), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return err_make(err, errno, "read from container init");
    if (n == 0)
        return err_make(err, 0, "container init exited during setup");
    if ((size_t)n < offsetof(struct sync_msg, msg))
        return err_make(err, EPROTO, "short message from container init");
    m->msg[sizeof(m->msg) - 1] = '\0';
    return 0;
}

int sync_expect(int fd, enum sync_type type, struct sync_msg *m, struct err **err)
{
    if (sync_recv(fd, m, err) < 0)
        return -1;
    if (m->type == SYNC_ERROR) {
        /* The message is already complete: keep the child's errno but do not
         * append strerror again. */
        err_make(err, 0, "%s", m->msg);
        (*err)->code = m->code;
        return -1;
    }
    if (m->type != (uint32_t)type)
        return err_make(err, EPROTO, "unexpected message %u from container init", m->type);
    return 0;
}
