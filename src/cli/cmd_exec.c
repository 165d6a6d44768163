/* `cocoon exec [options] ID [COMMAND [ARGS...]]` */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"

static void strv_push(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 2) * sizeof(char *));
    if (nv == NULL)
        abort();
    nv[(*n)++] = (char *)s;
    nv[*n] = NULL;
    *v = nv;
}

int cmd_exec(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    static const struct option opts[] = {
        {"process", required_argument, NULL, 'p'}, {"env", required_argument, NULL, 'e'},
        {"cwd", required_argument, NULL, 'w'},     {"user", required_argument, NULL, 'u'},
        {"tty", optional_argument, NULL, 't'},     {"detach", no_argument, NULL, 'd'},
        {"pid-file", required_argument, NULL, 'P'},
        {"console-socket", required_argument, NULL, 'C'},
        {"preserve-fds", required_argument, NULL, 'F'}, {"cap", required_argument, NULL, 'c'},
        {"no-new-privs", no_argument, NULL, 'N'},
        {"process-label", required_argument, NULL, 'L'},
        {"apparmor", required_argument, NULL, 'A'}, {"additional-gids", required_argument, NULL, 'g'},
        {"ignore-paused", no_argument, NULL, 'I'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *usage = "exec [--process FILE] [--env K=V] [--cwd DIR] [--user UID[:GID]] [--tty] "
                        "[--detach] [--pid-file F] [--console-socket S] ID [COMMAND ARGS...]";
    struct exec_opts o = {.tty = -1};
    size_t nenv = 0, ncaps = 0;
    cleanup_free char **env = NULL;
    cleanup_free char **caps = NULL;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+p:e:w:u:tdc:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': o.process_file = optarg; break;
        case 'e': strv_push(&env, &nenv, optarg); break;
        case 'w': o.cwd = optarg; break;
        case 'u': o.user = optarg; break;
        case 't': o.tty = optarg == NULL || strcmp(optarg, "true") == 0 ? 1 : 0; break;
        case 'd': o.detach = true; break;
        case 'P': o.pid_file = optarg; break;
        case 'C': o.console_socket = optarg; break;
        case 'c': strv_push(&caps, &ncaps, optarg); break;
        case 'N': o.no_new_privs = true; break;
        case 'A': o.apparmor = optarg; break;
        case 'L': case 'g': case 'I': break; /* accepted for runc compatibility */
        case 'F': {
            uint64_t n;
            if (parse_u64(optarg, 1 << 20, &n) < 0)
                return err_make(err, 0, "exec: --preserve-fds `%s` is not a number", optarg);
            o.preserve_fds = (int)n;
            break;
        }
        case 'h': printf("usage: cocoon %s\n", usage); return 0;
        default:
            return err_make(err, 0, "exec: unknown or incomplete option `%s` (usage: cocoon %s)",
                            argv[optind - 1], usage);
        }
    }
    if (optind >= argc)
        return err_make(err, 0, "exec: missing container id (usage: cocoon %s)", usage);
    o.id = argv[optind];
    o.args = argv + optind + 1;
    if (o.process_file == NULL && o.args[0] == NULL)
        return err_make(err, 0, "exec: missing command (usage: cocoon %s)", usage);
    o.env = env;
    o.caps = caps;
    int status = 0;
    if (container_exec(rt, &o, &status, err) < 0)
        return -1;
    return status;
}
