/* Device options of `cocoon vm run`: --rng, --disk PATH[,ro][,direct]
 * [,serial=ID], --pmem PATH[,shared], --net tap=NAME[,...], --vsock cid=N,uds=PATH,
 * --virtio-console BACKEND[,port=NAME:BACKEND]..., --fs tag=TAG,dir=PATH[,...].
 * Each becomes
 * a struct vm_device; the strings stay owned by argv. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "cli/vm_devices.h"
#include "common/err.h"
#include "common/util.h"

static struct vm_device *next_device(struct vm_config *cfg, struct err **err)
{
    if (cfg->n_devices >= VM_MAX_DEVICES) {
        err_input(err, "vm run: at most %d devices", VM_MAX_DEVICES);
        return NULL;
    }
    struct vm_device *d = &cfg->devices[cfg->n_devices++];
    memset(d, 0, sizeof(*d));
    return d;
}

int vm_opt_rng(struct vm_config *cfg, struct err **err)
{
    struct vm_device *d = next_device(cfg, err);
    if (d == NULL)
        return -1;
    d->kind = VM_DEV_RNG;
    return 0;
}

int vm_opt_disk(struct vm_config *cfg, char *spec, struct err **err)
{
    struct vm_device *d = next_device(cfg, err);
    if (d == NULL)
        return -1;
    d->kind = VM_DEV_BLK;
    char *save = NULL;
    char *path = strtok_r(spec, ",", &save);
    if (path == NULL || *path == '\0')
        return err_input(err, "vm run: --disk needs a file: PATH[,ro][,direct][,serial=ID]");
    d->blk.path = path;
    for (char *o; (o = strtok_r(NULL, ",", &save));) {
        if (strcmp(o, "ro") == 0)
            d->blk.readonly = true;
        else if (strcmp(o, "direct") == 0)
            d->blk.direct = true;
        else if (strncmp(o, "serial=", 7) == 0)
            d->blk.serial = o + 7;
        else
            return err_input(err, "vm run: --disk option `%s` is unknown (ro, direct, serial=ID)",
                             o);
    }
    return 0;
}

/* An extra console port, NAME:BACKEND; the device checks the name and
 * opens the file or the socket. */
static int console_port(struct virtio_console_opts *co, char *spec, bool *stdio,
                        struct err **err)
{
    if (co->n_ports >= VIRTIO_CONSOLE_MAX_PORTS - 1)
        return err_input(err, "vm run: --virtio-console: at most %d extra ports",
                         VIRTIO_CONSOLE_MAX_PORTS - 1);
    struct virtio_console_port_opts *p = &co->ports[co->n_ports++];
    char *colon = strchr(spec, ':');
    if (colon == NULL || colon == spec)
        return err_input(err, "vm run: --virtio-console port `%s` must be NAME:BACKEND, e.g. "
                              "port=org.cocoon.agent:socket:PATH", spec);
    *colon = '\0';
    p->name = spec;
    const char *b = colon + 1;
    if (strcmp(b, "stdio") == 0 && !*stdio)
        p->stdio = *stdio = true;
    else if (strncmp(b, "file:", 5) == 0 && b[5])
        p->file = b + 5;
    else if (strncmp(b, "socket:", 7) == 0 && b[7])
        p->socket = b + 7;
    else if (strcmp(b, "none") != 0)
        return err_input(err, "vm run: --virtio-console port `%s`: `%s` is not stdio (once per "
                              "device), none, file:PATH or socket:PATH", spec, b);
    return 0;
}

int vm_opt_console(struct vm_config *cfg, char *spec, int *opened, struct err **err)
{
    struct vm_device *d = next_device(cfg, err);
    if (d == NULL)
        return -1;
    d->kind = VM_DEV_CONSOLE;
    d->console.in_fd = d->console.out_fd = -1;
    /* port 0 is everything before the first ",port=" (a path may hold a comma) */
    char *ports = strstr(spec, ",port=");
    if (ports) {
        *ports = '\0';
        ports += 6;
    }
    bool stdio = strcmp(spec, "stdio") == 0;
    if (stdio) {
        d->console.in_fd = 0;
        d->console.out_fd = 1;
    } else if (strncmp(spec, "file:", 5) == 0) {
        int fd = open(spec + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            return err_make(err, errno, "vm run: --virtio-console `%s`", spec);
        d->console.out_fd = fd;
        *opened = fd;
    } else if (strncmp(spec, "socket:", 7) == 0 && spec[7]) {
        d->console.socket = spec + 7;
    } else if (strcmp(spec, "none") != 0) {
        return err_input(err, "vm run: --virtio-console must be stdio, none, file:PATH or "
                              "socket:PATH, then any ,port=NAME:BACKEND");
    }
    while (ports) {
        char *next = strstr(ports, ",port=");
        if (next) {
            *next = '\0';
            next += 6;
        }
        if (console_port(&d->console, ports, &stdio, err) < 0)
            return -1;
        ports = next;
    }
    return 0;
}

int vm_opt_pmem(struct vm_config *cfg, char *spec, struct err **err)
{
    struct vm_device *d = next_device(cfg, err);
    if (d == NULL)
        return -1;
    d->kind = VM_DEV_PMEM;
    char *save = NULL;
    char *path = strtok_r(spec, ",", &save);
    if (path == NULL || *path == '\0')
        return err_input(err, "vm run: --pmem needs a file: PATH[,shared]");
    d->pmem.path = path;
    for (char *o; (o = strtok_r(NULL, ",", &save));) {
        if (strcmp(o, "shared") == 0)
            d->pmem.shared = true;
        else
            return err_input(err, "vm run: --pmem option `%s` is unknown (shared)", o);
    }
    return 0;
}

int vm_opt_net(struct vm_config *cfg, char *spec, struct err **err)
{
    struct vm_device *d = next_device(cfg, err);
    if (d == NULL)
        return -1;
    d->kind = VM_DEV_NET;
    char *save = NULL;
    for (char *o = strtok_r(spec, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
        if (strncmp(o, "tap=", 4) == 0)
            d->net.tap = o + 4;
        else if (strncmp(o, "mac=", 4) == 0)
            d->net.mac = o + 4;
        else if (strncmp(o, "netns=", 6) == 0)
            d->net.netns = o + 6;
        else
            return err_input(err, "vm run: --net option `%s` is unknown (tap=NAME, mac=MAC, "
                                  "netns=PATH)", o);
    }
    if (d->net.tap == NULL)
        return err_input(err, "vm run: --net needs tap=NAME");
    return 0;
}

int vm_opt_vsock(struct vm_config *cfg, char *spec, struct err **err)
{
    for (unsigned i = 0; i < cfg->n_devices; i++)
        if (cfg->devices[i].kind == VM_DEV_VSOCK)
            return err_input(err, "vm run: one --vsock per VM");
    struct vm_device *d = next_device(cfg, err);
    if (d == NULL)
        return -1;
    d->kind = VM_DEV_VSOCK;
    char *save = NULL;
    bool have_cid = false;
    for (char *o = strtok_r(spec, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
        if (strncmp(o, "cid=", 4) == 0) {
            if (parse_u64(o + 4, UINT32_MAX, &d->vsock.guest_cid) < 0)
                return err_input(err, "vm run: --vsock cid `%s` is not a number", o + 4);
            have_cid = true;
        } else if (strncmp(o, "uds=", 4) == 0 && o[4]) {
            d->vsock.uds_path = o + 4;
        } else {
            return err_input(err, "vm run: --vsock option `%s` is unknown (cid=N, uds=PATH)", o);
        }
    }
    if (!have_cid || d->vsock.uds_path == NULL)
        return err_input(err, "vm run: --vsock needs cid=N and uds=PATH");
    return 0;
}

/* The FUSE server options (fs_options_parse) that mean something to a
 * virtio-fs device: not the /dev/fuse workers, mount flags (the guest's
 * mount has its own), passthrough, nor host locks (see docs/virtio.md). */
static bool fs_option_applies(const char *o)
{
    static const char *const keys[] = {"uidmap=", "gidmap=", "attr_timeout=", "entry_timeout=",
                                       "timeout=", "max_pages="};
    static const char *const words[] = {"ro", "rw", "writeback", "nowriteback", "locks=local"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strncmp(o, keys[i], strlen(keys[i])) == 0)
            return true;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcmp(o, words[i]) == 0)
            return true;
    return false;
}

int vm_opt_fs(struct vm_config *cfg, char *spec, struct err **err)
{
    struct vm_device *d = next_device(cfg, err);
    if (d == NULL)
        return -1;
    d->kind = VM_DEV_FS;
    fs_options_default(&d->fs.fs);
    char *save = NULL;
    uint64_t n;
    for (char *o = strtok_r(spec, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
        if (strncmp(o, "tag=", 4) == 0 && o[4]) {
            d->fs.tag = o + 4;
        } else if (strncmp(o, "dir=", 4) == 0 && o[4]) {
            d->fs.dir = o + 4;
        } else if (strncmp(o, "queues=", 7) == 0) {
            if (parse_u64(o + 7, VIRTIO_FS_MAX_QUEUES, &n) < 0 || n == 0)
                return err_input(err, "vm run: --fs queues=`%s`: want 1..%d", o + 7,
                                 VIRTIO_FS_MAX_QUEUES);
            d->fs.queues = (unsigned)n;
        } else if (strncmp(o, "dax=", 4) == 0) {
            if (parse_u64(o + 4, VIRTIO_FS_DAX_MAX >> 20, &n) < 0 || n == 0 || n % 2)
                return err_input(err, "vm run: --fs dax=`%s`: want the window's size in MiB, "
                                      "even, 2..%llu", o + 4,
                                 (unsigned long long)(VIRTIO_FS_DAX_MAX >> 20));
            d->fs.dax_size = n << 20;
        } else if (fs_option_applies(o)) {
            if (fs_options_parse(&d->fs.fs, o, err) < 0)
                return err_wrap(err, "vm run: --fs");
        } else {
            return err_input(err, "vm run: --fs option `%s` is unknown (tag=TAG, dir=PATH, "
                                  "queues=N, dax=MIB, ro, uidmap=, gidmap=, timeout=, "
                                  "attr_timeout=, entry_timeout=, max_pages=, writeback)", o);
        }
    }
    if (d->fs.tag == NULL || d->fs.dir == NULL)
        return err_input(err, "vm run: --fs needs tag=TAG and dir=PATH");
    return 0;
}
