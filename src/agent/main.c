/* cocoon-init: the PID 1 and agent of a cocoon VM (no arguments), or of a
 * namespace sandbox on a host (--channel-fd N --root DIR). Starts up,
 * serves the runtime over the agent protocol, powers off. The only place
 * that prints an error. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: cocoon-init                  (as PID 1 of a VM; cocoon.* on the kernel "
               "command line)\n"
               "       cocoon-init --channel-fd N --root DIR [--hostname NAME] [--volumes DIR]\n"
               "                                    (as PID 1 of new mount, pid, uts and ipc "
               "namespaces)\n");
}

static void report(const struct err *e)
{
    fprintf(stderr, "cocoon-init: %s\n", e && e->msg ? e->msg : "error");
}

/* SIGCHLD through a signalfd; SIGPIPE ignored (EPIPE is handled). */
static int setup_signals(struct agent *a, struct err **err)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return err_make(err, errno, "block SIGCHLD");
    a->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (a->sig_fd < 0)
        return err_make(err, errno, "signalfd");
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

__attribute__((noreturn)) static void power_off(const struct agent *a, int status)
{
    agent_power_off(a, status);
    fprintf(stderr, "cocoon-init: power off: %s\n", strerror(errno));
    for (;;)
        pause();
}

/* Host mode's options; 0, or -1 after printing usage. */
static int parse_args(int argc, char **argv, int *fd, const char **root, const char **hostname,
                      const char **volumes)
{
    static const struct option opts[] = {
        {"channel-fd", required_argument, NULL, 'c'},
        {"root", required_argument, NULL, 'r'},
        {"hostname", required_argument, NULL, 'n'},
        {"volumes", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (parse_int(optarg, fd) < 0 || *fd < 0) {
                fprintf(stderr, "cocoon-init: --channel-fd `%s`: not a descriptor\n", optarg);
                return -1;
            }
            break;
        case 'r':
            *root = optarg;
            break;
        case 'n':
            *hostname = optarg;
            break;
        case 'v':
            *volumes = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc || *fd < 0 || *root == NULL) {
        usage(stderr);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* Big buffers (frames of up to 1 MiB, output backlog) are mapped on
     * their own and unmapped when freed, not kept in the heap. */
    mallopt(M_MMAP_THRESHOLD, 64 << 10);
    struct agent a;
    agent_init(&a);
    cleanup_err struct err *err = NULL;
    int r;
    if (argc <= 1) {
        /* Never mount or power off a host by mistake. */
        if (getpid() != 1) {
            usage(stderr);
            return 2;
        }
        r = agent_boot_vm(&a, &err);
    } else {
        int fd = -1;
        const char *root = NULL, *hostname = NULL, *volumes = NULL;
        if (parse_args(argc, argv, &fd, &root, &hostname, &volumes) < 0)
            return 2;
        r = agent_boot_host(&a, fd, root, hostname, volumes, &err);
    }
    if (r == 0)
        r = setup_signals(&a, &err);
    if (r < 0) {
        report(err);
        power_off(&a, 1);
    }
    /* Start-up's memory (mount options, the command line) goes back. */
    malloc_trim(0);
    for (;;) {
        r = agent_serve(&a, &err);
        if (r == 0)
            break;
        /* A dropped connection (a vsock host may connect again), or the end. */
        report(err);
        err_free(&err);
        if (r < 0)
            break;
    }
    power_off(&a, r < 0 ? 1 : 0);
}
