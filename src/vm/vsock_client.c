/* The host end of a vsock connection through cocoon's userspace
 * virtio-vsock device (src/virtio/vsock.c): connect to the VMM's Unix
 * socket, say `CONNECT <port>\n`, wait for `OK <host port>\n`. The guest
 * may not listen yet (it is still booting, or its agent has not reached
 * listen()): the device then closes the socket, and we try again until the
 * deadline. Used by the VM backend (the agent channel on cocoon's VMM) and
 * by `cocoon vm connect`. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"
#include "vm/vmc.h"

#define RETRY_MS 5
#define LINE_MAX_BYTES 32 /* the device's own limit for a handshake line */

/* Is the VMM process still there? Peeks (WNOWAIT): its status stays for
 * whoever reaps it. */
static bool vmm_alive(pid_t vmm)
{
    if (vmm <= 0)
        return true;
    siginfo_t si = {0};
    if (waitid(P_PID, (id_t)vmm, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        return errno == EINTR;
    return si.si_pid == 0;
}

/* Read the handshake answer one byte at a time (what follows it is the
 * guest's stream and must stay in the socket). 1: OK, 0: closed (the guest
 * refused), -1: *err. */
static int read_ok(int fd, long long deadline, const char *uds, struct err **err)
{
    char line[LINE_MAX_BYTES + 1];
    size_t n = 0;
    for (;;) {
        long long left = deadline - mono_ms();
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int pr = poll(&pf, 1, left < 0 ? 0 : (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return pr < 0 ? err_make(err, errno, "%s: poll", uds) : 0;
        ssize_t r = read(fd, line + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
        if (line[n] == '\n')
            break;
        if (++n == LINE_MAX_BYTES)
            return err_input(err, "%s: the handshake answer is longer than %d bytes", uds,
                             LINE_MAX_BYTES);
    }
    line[n] = '\0';
    if (strncmp(line, "OK ", 3) != 0)
        return err_input(err, "%s: unexpected handshake answer \"%s\"", uds, line);
    return 1;
}

/* One attempt. 1: connected (*fd), 0: try again, -1: *err. */
static int try_connect(const char *uds, uint32_t port, long long deadline, int *fd,
                       struct err **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(uds) >= sizeof(sa.sun_path))
        return err_input(err, "%s: socket path longer than %zu bytes", uds,
                         sizeof(sa.sun_path) - 1);
    strcpy(sa.sun_path, uds);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return err_make(err, errno, "socket");
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(s);
        /* Not there yet (the VMM is starting), or gone for a moment. */
        if (e == ENOENT || e == ECONNREFUSED)
            return 0;
        return err_make(err, e, "connect to %s", uds);
    }
    char req[32];
    int len = snprintf(req, sizeof(req), "CONNECT %u\n", (unsigned)port);
    if (write(s, req, (size_t)len) != len) {
        close(s);
        return 0;
    }
    int r = read_ok(s, deadline, uds, err);
    if (r <= 0) {
        close(s);
        return r;
    }
    *fd = s;
    return 1;
}

int vmc_vsock_connect(const char *uds, uint32_t port, unsigned timeout_ms, pid_t vmm, int *fd,
                      struct err **err)
{
    long long deadline = mono_ms() + timeout_ms;
    for (;;) {
        int r = try_connect(uds, port, deadline, fd, err);
        if (r != 0)
            return r < 0 ? -1 : 0;
        if (!vmm_alive(vmm))
            return err_make(err, 0, "the VM stopped before anything listened on vsock port %u",
                            (unsigned)port);
        if (mono_ms() >= deadline)
            return err_make(err, ETIMEDOUT,
                            "nothing listened on vsock port %u behind %s within %u ms",
                            (unsigned)port, uds, timeout_ms);
        struct timespec ts = {.tv_nsec = RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}
