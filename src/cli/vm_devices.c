/* Device options of `cocoon vm run`: --rng, --disk PATH[,ro][,direct]
 * [,serial=ID], --pmem PATH[,shared], --net tap=NAME[,...], --vsock cid=N,uds=PATH,
 * --virtio-console stdio|file:PATH|socket:PATH. Each becomes
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

int vm_opt_console(struct vm_config *cfg, const char *spec, int *opened, struct err **err)
{
    struct vm_device *d = next_device(cfg, err);
    if (d == NULL)
        return -1;
    d->kind = VM_DEV_CONSOLE;
    d->console.in_fd = d->console.out_fd = -1;
    if (strcmp(spec, "stdio") == 0) {
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
    } else {
        return err_input(err, "vm run: --virtio-console must be stdio, file:PATH or socket:PATH");
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
