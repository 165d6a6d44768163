/* `cocoon fs mount|umount`: serve a directory through cocoon's FUSE
 * passthrough server on a host mount point; `cocoon fs vhost-user`: serve
 * it as a virtio-fs device to another VMM (qemu's vhost-user-fs-device). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/util.h"
#include "fs/fs.h"
#include "virtio/devices.h"
#include "virtio/vhost_user.h"
#include "virtio/virtio.h"

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

static const char vhost_usage[] =
    "fs vhost-user [-o OPTIONS] (--socket PATH | --fd N) SRC\n"
    "  serve SRC as a virtio-fs device over the vhost-user protocol: --socket listens on\n"
    "  PATH for one frontend, --fd N is a connected socket; options as for fs mount\n"
    "  (uidmap, gidmap, timeouts, max_pages, ro)";

/* One frontend on a listening socket at path (removed once it is there). */
static int accept_one(const char *path, struct err **err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return err_input(err, "fs vhost-user: --socket `%s` is too long", path);
    strcpy(sa.sun_path, path);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0)
        return err_make(err, errno, "socket");
    if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0) {
        int e = errno;
        close(l);
        return err_make(err, e, "fs vhost-user: listen on `%s`", path);
    }
    int c;
    do
        c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    while (c < 0 && errno == EINTR);
    int e = errno;
    close(l);
    unlink(path);
    return c < 0 ? err_make(err, e, "fs vhost-user: accept on `%s`", path) : c;
}

static int fs_vhost_user_cmd(int argc, char **argv, struct err **err)
{
    static const struct option opts[] = {
        {"options", required_argument, NULL, 'o'},
        {"socket", required_argument, NULL, 's'},
        {"fd", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct virtio_fs_opts vo = {.tag = "cocoon"};
    fs_options_default(&vo.fs);
    const char *path = NULL;
    int sock = -1;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (fs_options_parse(&vo.fs, optarg, err) < 0)
                return err_wrap(err, "fs vhost-user");
            break;
        case 's': path = optarg; break;
        case 'f':
            if (parse_int(optarg, &sock) < 0 || sock < 0 || fcntl(sock, F_GETFD) < 0)
                return err_input(err, "fs vhost-user: --fd `%s` is not an open fd", optarg);
            break;
        case 'h': printf("usage: cocoon %s\n", vhost_usage); return 0;
        default:
            return err_input(err, "fs vhost-user: unknown or incomplete option `%s` (see cocoon "
                                  "fs vhost-user --help)",
                             argv[optind - 1]);
        }
    }
    if (argc - optind != 1 || (path == NULL) == (sock < 0))
        return err_input(err, "fs vhost-user: want SRC and one of --socket PATH or --fd N "
                              "(see cocoon fs vhost-user --help)");
    vo.dir = argv[optind];
    if (virtio_fs_drop_mknod(err) < 0)
        return -1;
    struct virtio_dev *d = NULL;
    if (virtio_fs_create(&vo, &d, err) < 0)
        return err_wrap(err, "fs vhost-user");
    if (path && (sock = accept_one(path, err)) < 0) {
        virtio_dev_destroy(d);
        return -1;
    }
    struct vhost_user *vu = NULL;
    int r = vhost_user_new(d, sock, &vu, err);
    if (r == 0)
        r = vhost_user_serve(vu, err);
    vhost_user_free(vu);
    virtio_dev_destroy(d);
    close(sock);
    return r < 0 ? err_wrap(err, "fs vhost-user `%s`", vo.dir) : 0;
}

int cmd_fs(const struct runtime *rt, int argc, char **argv, struct err **err)
{
    (void)rt;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        printf("usage: cocoon %s\n       cocoon fs umount DIR\n       cocoon %s\n", mount_usage,
               vhost_usage);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "mount") == 0)
        return fs_mount_cmd(argc - 1, argv + 1, err);
    if (strcmp(argv[1], "vhost-user") == 0)
        return fs_vhost_user_cmd(argc - 1, argv + 1, err);
    if (strcmp(argv[1], "umount") == 0 || strcmp(argv[1], "unmount") == 0) {
        if (argc != 3)
            return err_input(err, "fs umount: want DIR (usage: cocoon fs umount DIR)");
        return fs_umount(argv[2], err);
    }
    return err_input(err, "fs: unknown subcommand `%s` (mount, umount, vhost-user)", argv[1]);
}
