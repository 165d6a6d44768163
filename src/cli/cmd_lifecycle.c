/* create, start, state, kill, delete, run: thin wrappers over runtime/. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/err.h"

int cmd_create(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    struct create_opts o;
    bool detach;
    int r = cli_parse_create(argc, argv, false, &o, &detach, err);
    if (r == -2)
        return 0;
    if (r < 0)
        return -1;
    return container_create(rt, &o, err) < 0 ? -1 : 0;
}

int cmd_run(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    struct create_opts o;
    bool detach;
    int r = cli_parse_create(argc, argv, true, &o, &detach, err);
    if (r == -2)
        return 0;
    if (r < 0)
        return -1;
    int status = 0;
    if (container_run(rt, &o, detach, &status, err) < 0)
        return -1;
    return status;
}

/* Commands whose only options are flags listed in `flags` (e.g. "f" for
 * --force); returns 0 and sets the flags found. */
static int parse_simple(int argc, char **argv, const struct option *opts, const char *shorts,
                        int nargs, int maxargs, const char *usage, int *flags, struct err **err)
{
    optind = 1;
    opterr = 0;
    int c;
    *flags = 0;
    while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
        if (c == '?')
            return err_make(err, 0, "%s: unknown option `%s` (usage: cocoon %s)", argv[0],
                            argv[optind - 1], usage);
        if (c == 'h') {
            printf("usage: cocoon %s\n", usage);
            return -2;
        }
        *flags |= c == 'a' || c == 'f' ? 1 : 0;
    }
    int have = argc - optind;
    if (have < nargs || have > maxargs)
        return err_make(err, 0, "%s: wrong number of arguments (usage: cocoon %s)", argv[0],
                        usage);
    return 0;
}

static const struct option help_only[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int cmd_start(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    int f, r = parse_simple(argc, argv, help_only, "+h", 1, 1, "start ID", &f, err);
    if (r < 0)
        return r == -2 ? 0 : -1;
    return container_start(rt, argv[optind], err) < 0 ? -1 : 0;
}

int cmd_state(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    int f, r = parse_simple(argc, argv, help_only, "+h", 1, 1, "state ID", &f, err);
    if (r < 0)
        return r == -2 ? 0 : -1;
    cleanup_free char *json = NULL;
    if (container_state(rt, argv[optind], &json, err) < 0)
        return -1;
    printf("%s\n", json);
    return 0;
}

int cmd_kill(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    static const struct option opts[] = {
        {"all", no_argument, NULL, 'a'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int all, r = parse_simple(argc, argv, opts, "+ah", 1, 2, "kill [--all] ID [SIGNAL]", &all,
                              err);
    if (r < 0)
        return r == -2 ? 0 : -1;
    int sig = SIGTERM;
    if (argc - optind == 2) {
        sig = signal_parse(argv[optind + 1]);
        if (sig < 0)
            return err_make(err, 0, "kill: unknown signal `%s`", argv[optind + 1]);
    }
    return container_kill(rt, argv[optind], sig, all, err) < 0 ? -1 : 0;
}

int cmd_delete(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    static const struct option opts[] = {
        {"force", no_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int force, r = parse_simple(argc, argv, opts, "+fh", 1, 1, "delete [--force] ID", &force,
                                err);
    if (r < 0)
        return r == -2 ? 0 : -1;
    return container_delete(rt, argv[optind], force, err) < 0 ? -1 : 0;
}
