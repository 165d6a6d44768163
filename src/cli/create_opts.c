#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/util.h"

int cli_want_args(int argc, char **argv, int n, const char *usage, struct err **err)
{
    if (argc - optind != n)
        return err_make(err, 0, "%s: expected %d argument%s, got %d (usage: cocoon %s)",
                        argv[0], n, n == 1 ? "" : "s", argc - optind, usage);
    return 0;
}

int cli_parse_create(int argc, char **argv, bool is_run, struct create_opts *o, bool *detach,
                     struct err **err)
{
    static const struct option opts[] = {
        {"bundle", required_argument, NULL, 'b'},
        {"pid-file", required_argument, NULL, 'p'},
        {"console-socket", required_argument, NULL, 'c'},
        {"preserve-fds", required_argument, NULL, 'P'},
        {"detach", no_argument, NULL, 'd'},
        {"no-pivot", no_argument, NULL, 'N'},
        {"no-new-keyring", no_argument, NULL, 'K'},
        {"no-subreaper", no_argument, NULL, 'S'},
        {"keep", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *usage = is_run ? "run [--bundle DIR] [--pid-file F] [--console-socket S] "
                                 "[--detach] [--preserve-fds N] ID"
                               : "create [--bundle DIR] [--pid-file F] [--console-socket S] "
                                 "[--preserve-fds N] ID";
    memset(o, 0, sizeof(*o));
    o->bundle = ".";
    *detach = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, is_run ? "+b:dh" : "+b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': o->bundle = optarg; break;
        case 'p': o->pid_file = optarg; break;
        case 'c': o->console_socket = optarg; break;
        case 'N': o->no_pivot = true; break;
        case 'K': case 'S': case 'k': break; /* accepted for runc compatibility */
        case 'd':
            if (!is_run)
                return err_make(err, 0, "create: unknown option --detach");
            *detach = true;
            break;
        case 'P': {
            uint64_t n;
            if (parse_u64(optarg, 1 << 20, &n) < 0)
                return err_make(err, 0, "%s: --preserve-fds `%s` is not a number", argv[0],
                                optarg);
            o->preserve_fds = (int)n;
            break;
        }
        case 'h': printf("usage: cocoon %s\n", usage); return -2;
        default:
            return err_make(err, 0, "%s: unknown or incomplete option `%s` (usage: cocoon %s)",
                            argv[0], argv[optind - 1], usage);
        }
    }
    if (cli_want_args(argc, argv, 1, usage, err) < 0)
        return -1;
    o->id = argv[optind];
    return optind;
}
