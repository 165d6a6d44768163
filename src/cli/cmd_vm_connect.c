/* `cocoon vm connect SOCKET PORT`: a stream to a guest's vsock port through
 * a cocoon VMM's vsock socket, relayed to stdin/stdout (what `socat -
 * UNIX-CONNECT:` plus typing `CONNECT <port>` does, with the retries the VM
 * backend uses to reach its agent while the guest boots). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/util.h"
#include "vm/vmc.h"

#define RELAY_BUF 65536

static const char connect_usage[] =
    "usage: cocoon vm connect [--timeout MS] SOCKET PORT\n"
    "  SOCKET: the --vsock uds= path of a running `cocoon vm run`; PORT: the guest's vsock port.\n"
    "  stdin goes to the guest, the guest's bytes to stdout; waits up to MS (default 10000)\n"
    "  for the guest to listen.\n";

/* Move what one fd has to the other; 0 at EOF, -1 on error, else 1. */
static int pump(int from, int to, char *buf)
{
    ssize_t n = read(from, buf, RELAY_BUF);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : -1;
    if (n == 0)
        return 0;
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += w;
    }
    return 1;
}

static int relay(int s, struct err **err)
{
    static char buf[RELAY_BUF];
    bool in_open = true;
    for (;;) {
        struct pollfd pf[2] = {{.fd = s, .events = POLLIN}, {.fd = in_open ? 0 : -1, .events = POLLIN}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return err_make(err, errno, "poll");
        }
        if (pf[0].revents) {
            int r = pump(s, 1, buf);
            if (r < 0)
                return err_make(err, errno, "relay from the guest");
            if (r == 0)
                return 0; /* the guest closed its end */
        }
        if (pf[1].revents) {
            int r = pump(0, s, buf);
            if (r < 0)
                return err_make(err, errno, "relay to the guest");
            if (r == 0) {
                shutdown(s, SHUT_WR); /* the guest sees our end of stream */
                in_open = false;
            }
        }
    }
}

int cmd_vm_connect(int argc, char **argv, struct err **err)
{
    unsigned timeout_ms = 10000;
    int i = 1;
    if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
        fputs(connect_usage, stdout);
        return 0;
    }
    if (i + 1 < argc && strcmp(argv[i], "--timeout") == 0) {
        int v;
        if (parse_int(argv[i + 1], &v) < 0 || v <= 0)
            return err_input(err, "vm connect: --timeout `%s` is not a positive number of ms",
                             argv[i + 1]);
        timeout_ms = (unsigned)v;
        i += 2;
    }
    if (argc - i != 2)
        return err_input(err, "vm connect: expected SOCKET PORT\n%s", connect_usage);
    uint64_t port;
    if (parse_u64(argv[i + 1], UINT32_MAX, &port) < 0)
        return err_input(err, "vm connect: `%s` is not a vsock port number", argv[i + 1]);
    int s;
    if (vmc_vsock_connect(argv[i], (uint32_t)port, timeout_ms, 0, &s, err) < 0)
        return err_wrap(err, "vm connect");
    int r = relay(s, err);
    close(s);
    return r < 0 ? err_wrap(err, "vm connect") : 0;
}
