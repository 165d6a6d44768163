/* `cocoon fs mount|umount`: serve a directory through cocoon's FUSE
 * passthrough server on a host mount point. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/err.h"
#include "fs/fs.h"

static const char mount_usage[] =
    "fs mount [-o OPTIONS] [--daemon] SRC DIR\n"
    "options (comma-separated, -o may repeat): uidmap=HOST:GUEST:COUNT[/...], gidmap=...,\n"
    "  attr_timeout=S, entry_timeout=S, timeout=S, threads=N, max_pages=N, writeback,\n"
    "  passthrough|nopassthrough, ro|rw, allow_other|noallow_other, dev|nodev, suid|nosuid";

static int fs_mount_cmd(int argc, char **argv, struct err **err)
{
    static const struct option opts[] = {
        {"options", required_argument, NULL, 'o'},
        {"daemon", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct fs_options o;
    fs_options_default(&o);
    bool daemon = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+o:dh", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (fs_options_parse(&o, optarg, err) < 0)
                return err_wrap(err, "fs mount");
            break;
        case 'd': daemon = true; break;
        case 'h': printf("usage: cocoon %s\n", mount_usage); return 0;
        default:
            return err_input(err, "fs mount: unknown or incomplete option `%s` (see cocoon fs "
                                  "mount --help)",
                             argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return err_input(err, "fs mount: want SRC and DIR (usage: cocoon fs mount [-o OPTIONS] "
                              "[--daemon] SRC DIR)");
    return fs_mount_serve(argv[optind], argv[optind + 1], &o, daemon, err);
}

int cmd_fs(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    (void)rt;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: cocoon %s\n       cocoon fs umount DIR\n", mount_usage);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "mount") == 0)
        return fs_mount_cmd(argc - 1, argv + 1, err);
    if (strcmp(argv[1], "umount") == 0 || strcmp(argv[1], "unmount") == 0) {
        if (argc != 3)
            return err_input(err, "fs umount: want DIR (usage: cocoon fs umount DIR)");
        return fs_umount(argv[2], err);
    }
    return err_input(err, "fs: unknown subcommand `%s` (mount, umount)", argv[1]);
}
