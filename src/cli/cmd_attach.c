/* `cocoon attach [options] ID|--pid PID [-- COMMAND [ARGS...]]`: ID is a
 * cocoon, podman or containerd container. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "attach/attach.h"
#include "cli/cli.h"
#include "common/err.h"
#include "common/util.h"

int cmd_attach(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    static const struct option opts[] = {
        {"tools", required_argument, NULL, 'T'}, {"user", required_argument, NULL, 'u'},
        {"pid", required_argument, NULL, 'p'},   {"tty", no_argument, NULL, 't'},
        {"no-tty", no_argument, NULL, 'n'},      {"help", no_argument, NULL, 'h'},
        {"fuse", no_argument, NULL, 'F'},        {NULL, 0, NULL, 0},
    };
    const char *usage = "attach [--tools DIR] [--user NAME|UID[:GROUP|GID]] [--tty|--no-tty] "
                        "[--fuse] ID|--pid PID [-- COMMAND ARGS...]";
    struct attach_opts o = {.tty = -1};
    optind = 0; /* 0: glibc re-reads the ordering (permute) */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "T:u:p:tnhF", opts, NULL)) != -1) {
        switch (c) {
        case 'T': o.tools = optarg; break;
        case 'u': o.user = optarg; break;
        case 'p': {
            int pid;
            if (parse_int(optarg, &pid) < 0 || pid <= 0)
                return err_input(err, "attach: --pid `%s` is not a process id", optarg);
            o.pid = pid;
            break;
        }
        case 't': o.tty = 1; break;
        case 'n': o.tty = 0; break;
        case 'F': o.fuse = true; break;
        case 'h':
            printf("usage: cocoon %s\n  ID: a cocoon container, or a podman or containerd one "
                   "(its id, or a unique prefix of at least 3 hex digits of it)\n", usage);
            return 0;
        default:
            return err_input(err, "attach: unknown or incomplete option `%s` (usage: cocoon %s)",
                             argv[optind - 1], usage);
        }
    }
    /* Options may follow the id (getopt permutes); the command comes after
     * `--` (getopt drops it) or after the id. ID, unless --pid. */
    if (o.pid == 0) {
        if (optind >= argc || strcmp(argv[optind], "--") == 0)
            return err_input(err, "attach: missing container id or --pid (usage: cocoon %s)",
                             usage);
        o.id = argv[optind++];
    }
    if (optind < argc && strcmp(argv[optind], "--") == 0)
        optind++;
    o.args = optind < argc ? argv + optind : NULL;
    if (o.tools && o.tools[0] == '\0')
        return err_input(err, "attach: --tools must name a directory");
    int status = 0;
    if (attach_run(rt, &o, &status, err) < 0)
        return -1;
    return status;
}
