/* cocoon: an OCI container runtime. Parses global options, dispatches to a
 * command, and is the only place that prints an error. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/log.h"
#include "build_config.h"
#include "runtime/lifecycle.h"
#include "vm/vmc.h"

static const struct {
    const char *name;
    cli_cmd_fn fn;
    const char *help;
} commands[] = {
    {"create", cmd_create, "create a container (its process waits for start)"},
    {"start", cmd_start, "run the process of a created container"},
    {"state", cmd_state, "print the state of a container as JSON"},
    {"kill", cmd_kill, "send a signal to a container's process(es)"},
    {"delete", cmd_delete, "delete a stopped container (--force: any)"},
    {"run", cmd_run, "create and start a container, and wait for it"},
    {"exec", cmd_exec, "run another process in a running container"},
    {"attach", cmd_attach, "run the host's (or a tool set's) tools inside a running container"},
    {"pause", cmd_pause, "freeze all processes of a container"},
    {"resume", cmd_resume, "thaw a paused container"},
    {"ps", cmd_ps, "list the processes of a container"},
    {"update", cmd_update, "change the resources of a running container"},
    {"events", cmd_events, "print resource statistics of a container (--stats: once)"},
    {"list", cmd_list, "list containers"},
    {"vm", cmd_vm, "boot a kernel in a cocoon microVM (vm run --kernel ...)"},
    {"fs", cmd_fs, "serve a directory through cocoon's FUSE server (fs mount SRC DIR)"},
    {"spec", cmd_spec, "write a default config.json"},
    {"features", cmd_features, "print the features this runtime supports as JSON"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cocoon [--root DIR] [--log FILE] [--log-format text|json] [--debug] "
               "COMMAND [OPTIONS] ARGS\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (commands[i].fn)
            fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nglobal options:\n"
               "  --root DIR          state directory (default /run/cocoon)\n"
               "  --log FILE          write logs and errors to FILE as well\n"
               "  --log-format FMT    text (default) or json\n"
               "  --debug             log debug records\n"
               "  --vm                run every container in its own VM (as cocoon-vm does)\n"
               "  --hypervisor HV     VM containers on cocoon (default), qemu, or sandbox\n"
               "                      (the agent in namespaces on the host: no VM, tests)\n"
               "  --version, --help\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'},
        {"log", required_argument, NULL, 'l'},
        {"log-format", required_argument, NULL, 'F'},
        {"debug", no_argument, NULL, 'D'},
        {"systemd-cgroup", no_argument, NULL, 'S'},
        {"rootless", required_argument, NULL, 'R'},
        {"criu", required_argument, NULL, 'C'},
        {"vm", no_argument, NULL, 'V'},
        {"hypervisor", required_argument, NULL, 'H'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct runtime rt = {.root = COCOON_DEFAULT_ROOT};
    lifecycle_argv = argv;
    const char *base = strrchr(argv[0], '/');
    if (strcmp(base ? base + 1 : argv[0], "cocoon-vm") == 0)
        rt.vm = true;
    const char *log_path = NULL;
    enum log_format fmt = LOG_FORMAT_TEXT;
    bool debug = false;
    struct err *err = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+vh", opts, NULL)) != -1) {
        switch (c) {
        case 'r': rt.root = optarg; break;
        case 'l': log_path = optarg; break;
        case 'F':
            if (log_format_parse(optarg, &fmt) < 0) {
                fprintf(stderr, "cocoon: unknown --log-format `%s` (text or json)\n", optarg);
                return 1;
            }
            break;
        case 'D': debug = true; break;
        case 'V': rt.vm = true; break;
        case 'H':
            if (vmc_hypervisor_parse(optarg) < 0) {
                fprintf(stderr, "cocoon: unknown --hypervisor `%s` (cocoon, qemu or sandbox)\n",
                        optarg);
                return 1;
            }
            rt.hypervisor = optarg;
            break;
        case 'S': case 'R': case 'C': break; /* accepted for runc compatibility */
        case 'v':
            printf("cocoon version %s\ncommit: %s\nspec: %s\n", COCOON_VERSION, COCOON_GIT_COMMIT,
                   OCI_VERSION);
            return 0;
        case 'h': usage(stdout); return 0;
        default:
            fprintf(stderr, "cocoon: unknown or incomplete global option `%s` (see cocoon --help)\n",
                    argv[optind - 1]);
            return 1;
        }
    }
    if (log_init(log_path, fmt, debug, &err) < 0) {
        log_report_error(err->msg);
        err_free(&err);
        return 1;
    }
    if (optind >= argc) {
        usage(stderr);
        return 1;
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(name, commands[i].name) != 0 || commands[i].fn == NULL)
            continue;
        int r = commands[i].fn(&rt, argc - optind, argv + optind, &err);
        if (r < 0) {
            log_report_error(err && err->msg ? err->msg : "unknown error");
            err_free(&err);
            return 1;
        }
        return r;
    }
    fprintf(stderr, "cocoon: unknown command `%s` (see cocoon --help)\n", name);
    return 1;
}
