/* `cocoon vm run`: boot a kernel in a cocoon microVM (like `lkvm run`). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/vm_devices.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/probe.h"
#include "vmm/vm.h"

static const struct option run_opts[] = {
    {"kernel", required_argument, NULL, 'k'}, {"initrd", required_argument, NULL, 'i'},
    {"cmdline", required_argument, NULL, 'c'}, {"cpus", required_argument, NULL, 'p'},
    {"memory", required_argument, NULL, 'm'}, {"console", required_argument, NULL, 'C'},
    {"hugepages", no_argument, NULL, 'H'}, {"ksm", no_argument, NULL, 'K'},
    {"no-map-kernel", no_argument, NULL, 'N'}, {"no-pit", no_argument, NULL, 'T'}, {"timeout", required_argument, NULL, 't'},
    {"rng", no_argument, NULL, 'R'}, {"disk", required_argument, NULL, 'D'},
    {"virtio-console", required_argument, NULL, 'V'}, {"pmem", required_argument, NULL, 'P'},
    {"net", required_argument, NULL, 'E'}, {"vsock", required_argument, NULL, 'S'},
    {"fs", required_argument, NULL, 'F'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char run_usage[] =
    "vm run --kernel FILE [--initrd FILE] [--cmdline STR] [--cpus N] [--memory MIB] "
    "[--console stdio|none|file:PATH] [--hugepages] [--ksm] [--no-map-kernel] [--no-pit] "
    "[--timeout SECONDS] [--rng] [--disk PATH[,ro][,direct][,serial=ID]]... "
    "[--pmem PATH[,shared]]... [--net tap=NAME[,mac=MAC][,netns=PATH]]... [--vsock cid=N,uds=PATH] "
    "[--virtio-console BACKEND[,port=NAME:BACKEND]...] (BACKEND: stdio|none|file:PATH|socket:PATH) "
    "[--fs tag=TAG,dir=PATH[,queues=N][,dax=MIB][,ro][,FS OPTIONS]]...";

/* Files opened while parsing, closed when the command ends. */
struct run_files {
    int fds[VM_MAX_DEVICES + 1];
    unsigned n;
};

static int parse_timeout(const char *s, unsigned *ms, struct err **err)
{
    char *end;
    errno = 0;
    double t = strtod(s, &end);
    if (errno || end == s || *end || !(t > 0 && t <= 86400))
        return err_input(err, "vm run: --timeout `%s` is not a number of seconds in (0, 86400]", s);
    unsigned v = (unsigned)(t * 1000 + 0.5);
    *ms = v ? v : 1;
    return 0;
}

static int parse_console(const char *console, struct vm_config *cfg, struct run_files *f,
                         struct err **err)
{
    if (strcmp(console, "none") == 0) {
        cfg->console_fd = cfg->console_in_fd = -1;
    } else if (strncmp(console, "file:", 5) == 0) {
        int fd = open(console + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            return err_make(err, errno, "vm run: --console `%s`", console);
        f->fds[f->n++] = fd;
        cfg->console_fd = fd;
        cfg->console_in_fd = -1;
    } else if (strcmp(console, "stdio") != 0) {
        return err_input(err, "vm run: --console must be stdio, none or file:PATH");
    }
    return 0;
}

/* Returns 1 for --help, 0 when cfg is complete, <0 on bad input. */
static int parse_run(int argc, char **argv, struct vm_config *cfg, struct run_files *f,
                     struct err **err)
{
    const char *console = "stdio";
    optind = 1;
    opterr = 0;
    int c, opened;
    uint64_t n;
    while ((c = getopt_long(argc, argv, "+h", run_opts, NULL)) != -1) {
        switch (c) {
        case 'k': cfg->kernel = optarg; break;
        case 'i': cfg->initrd = optarg; break;
        case 'c': cfg->cmdline = optarg; break;
        case 'p':
            if (parse_u64(optarg, 1024, &n) < 0)
                return err_input(err, "vm run: --cpus `%s` is not a number", optarg);
            cfg->cpus = (unsigned)n;
            break;
        case 'm':
            if (parse_u64(optarg, 1 << 20, &n) < 0)
                return err_input(err, "vm run: --memory `%s` is not a number of MiB", optarg);
            cfg->memory_mib = n;
            break;
        case 'C': console = optarg; break;
        case 'H': cfg->hugepages = true; break;
        case 'K': cfg->mergeable = true; break;
        case 'N': cfg->map_kernel = false; break;
        case 'T': cfg->pit = false; break;
        case 't':
            if (parse_timeout(optarg, &cfg->timeout_ms, err) < 0)
                return -1;
            break;
        case 'R':
            if (vm_opt_rng(cfg, err) < 0)
                return -1;
            break;
        case 'D':
            if (vm_opt_disk(cfg, optarg, err) < 0)
                return -1;
            break;
        case 'E':
            if (vm_opt_net(cfg, optarg, err) < 0)
                return -1;
            break;
        case 'P':
            if (vm_opt_pmem(cfg, optarg, err) < 0)
                return -1;
            break;
        case 'S':
            if (vm_opt_vsock(cfg, optarg, err) < 0)
                return -1;
            break;
        case 'F':
            if (vm_opt_fs(cfg, optarg, err) < 0)
                return -1;
            break;
        case 'V':
            opened = -1;
            if (vm_opt_console(cfg, optarg, &opened, err) < 0)
                return -1;
            if (opened >= 0)
                f->fds[f->n++] = opened;
            break;
        case 'h': printf("usage: cocoon %s\n", run_usage); return 1;
        default:
            return err_input(err, "vm run: unknown or incomplete option `%s` (usage: cocoon %s)",
                             argv[optind - 1], run_usage);
        }
    }
    if (optind != argc)
        return err_input(err, "vm run: unexpected argument `%s`", argv[optind]);
    return parse_console(console, cfg, f, err);
}

static int vm_run_cmd(int argc, char **argv, struct err **err)
{
    struct vm_config cfg = {.cpus = 1, .memory_mib = 128, .console_fd = 1, .console_in_fd = 0,
                            .map_kernel = true, .pit = true, .handle_signals = true};
    struct run_files files = {.n = 0};
    int r = parse_run(argc, argv, &cfg, &files, err);
    struct vm *vm = NULL;
    struct vm_exit ex = {0};
    if (r == 0 && vm_create(&cfg, &vm, err) == 0) {
        r = vm_run(vm, &ex, err);
        vm_destroy(vm);
    } else if (r == 0) {
        r = -1;
    }
    for (unsigned i = 0; i < files.n; i++)
        close(files.fds[i]);
    if (r < 0)
        return err_wrap(err, "vm run");
    if (r == 1)
        return 0; /* --help */
    if (ex.kind == VM_EXIT_ERROR)
        log_report_error(ex.msg);
    else if (ex.kind != VM_EXIT_POWEROFF)
        fprintf(stderr, "cocoon: vm: %s\n", ex.msg);
    return vm_exit_status(&ex);
}

/* `cocoon vm check`: can this host boot a Linux guest? Exit 0 yes, 2 no. */
static int vm_check_cmd(int argc, char **argv, struct err **err)
{
    bool quiet = argc > 1 && (strcmp(argv[1], "--quiet") == 0 || strcmp(argv[1], "-q") == 0);
    if (argc > (quiet ? 2 : 1))
        return err_input(err, "vm check: unexpected argument `%s` (usage: cocoon vm check [--quiet])",
                         argv[quiet ? 2 : 1]);
    struct vm_probe p;
    if (vm_probe_host(&p, err) < 0)
        return err_wrap(err, "vm check");
    if (!quiet) {
        printf("kvm: /dev/kvm usable\n");
        printf("guest kernel mode (CPL0): %s, %.1f M instructions/s\n",
               p.cpl0_native ? "native" : "emulated", p.cpl0_mips);
        printf("linux guests: %s\n",
               p.cpl0_native ? "can boot here"
                             : "cannot boot here in useful time (guest kernel mode is emulated in "
                               "software; use a host with hardware virtualization)");
    }
    return p.cpl0_native ? 0 : 2;
}

int cmd_vm(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    (void)rt;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: cocoon vm run --kernel FILE [options] (cocoon vm run --help)\n"
               "       cocoon vm check [--quiet]   can this host boot Linux guests?\n"
               "       cocoon vm connect SOCKET PORT   stdio to a guest's vsock port\n");
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "run") == 0)
        return vm_run_cmd(argc - 1, argv + 1, err);
    if (strcmp(argv[1], "check") == 0)
        return vm_check_cmd(argc - 1, argv + 1, err);
    if (strcmp(argv[1], "connect") == 0)
        return cmd_vm_connect(argc - 1, argv + 1, err);
    return err_input(err, "vm: unknown subcommand `%s` (run, check, connect)", argv[1]);
}
