/* What a real guest is given: its kernel command line and, on cocoon's
 * VMM, its devices. The container root reaches the guest one of two ways
 * (docs/vm-containers.md, "The root file system"):
 *
 *   virtiofs  the bundle's rootfs directory itself, served by cocoon's
 *             virtio-fs server (the VMM's device, or for qemu a `cocoon fs
 *             vhost-user` process): writable (root.readonly is the guest
 *             mount's), host changes visible, nothing built at create — a
 *             namespace container's semantics, and the default;
 *   erofs     a read-only image made at create with a tmpfs overlay on
 *             top: on virtio-pmem with DAX (MAP_PRIVATE, page cache shared
 *             by every VM of the image) on cocoon's VMM, on virtio-blk on
 *             qemu. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "agent/proto.h"
#include "oci/config.h"
#include "vm/vm_internal.h"
#include "vmm/vm.h"

int vmc_rootfs_choose(const struct oci_config *cfg, enum vmc_hypervisor hv, enum vmc_rootfs *out,
                      struct err **err)
{
    const char *v = oci_config_annotation(cfg, VMC_ROOTFS_ANNOTATION);
    (void)hv; /* every hypervisor offers both */
    if (v == NULL || strcmp(v, "virtiofs") == 0)
        *out = VMC_ROOTFS_VIRTIOFS;
    else if (strcmp(v, "erofs") == 0)
        *out = VMC_ROOTFS_EROFS;
    else
        return err_make(err, 0, "annotation %s=`%s`: not virtiofs or erofs",
                        VMC_ROOTFS_ANNOTATION, v);
    return 0;
}

int vmc_root_dax(const struct oci_config *cfg, enum vmc_hypervisor hv, enum vmc_rootfs mode,
                 uint64_t *mib, struct err **err)
{
    *mib = 0;
    const char *v = oci_config_annotation(cfg, VMC_DAX_ANNOTATION);
    if (v == NULL)
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || *v < '0' || *v > '9' || *end || n < 2 || n % 2 ||
        n > (VIRTIO_FS_DAX_MAX >> 20))
        return err_make(err, 0, "annotation %s=`%s`: want the window's size in MiB, even, 2..%llu",
                        VMC_DAX_ANNOTATION, v, (unsigned long long)(VIRTIO_FS_DAX_MAX >> 20));
    if (mode != VMC_ROOTFS_VIRTIOFS)
        return err_make(err, 0, "annotation %s: the root is not on virtio-fs (%s=erofs is "
                                "already mapped with DAX)",
                        VMC_DAX_ANNOTATION, VMC_ROOTFS_ANNOTATION);
    if (hv != VMC_HV_COCOON)
        return err_make(err, 0, "annotation %s: only cocoon's own VMM has a virtio-fs DAX window",
                        VMC_DAX_ANNOTATION);
    *mib = n;
    return 0;
}

char *vmc_guest_cmdline(const char *channel, const struct vmc_guest_root *r, char reboot)
{
    if (r->mode == VMC_ROOTFS_VIRTIOFS)
        return xasprintf("console=ttyS0 reboot=%c panic=-1 quiet cocoon.channel=%s "
                         "cocoon.root=%s cocoon.rootfstype=virtiofs%s",
                         reboot, channel, r->source, r->dax ? " cocoon.rootflags=dax=always" : "");
    return xasprintf("console=ttyS0 reboot=%c panic=-1 quiet cocoon.channel=%s "
                     "cocoon.root=%s cocoon.rootfstype=erofs%s cocoon.overlay=1",
                     reboot, channel, r->source, r->dax ? " cocoon.rootflags=dax" : "");
}

/* Append a virtio-fs device serving dir as tag (rw unless readonly). */
static void add_fs(struct vm_config *cfg, const char *tag, const char *dir, bool readonly)
{
    struct vm_device *d = &cfg->devices[cfg->n_devices++];
    d->kind = VM_DEV_FS;
    d->fs = (struct virtio_fs_opts){.tag = tag, .dir = dir};
    fs_options_default(&d->fs.fs);
    d->fs.fs.readonly = readonly;
}

int vmc_cocoon_config(const struct vmc_cocoon_guest *g, struct vm_config *cfg, char **cmdline,
                      struct err **err)
{
    const struct vmc_launch *l = g->launch;
    struct vmc_guest_root root = {
        .mode = l->rootfs_mode, .dax = l->rootfs_mode == VMC_ROOTFS_EROFS || l->root_dax_mib > 0};
    if (l->rootfs_mode == VMC_ROOTFS_EROFS) {
        if (g->image == NULL)
            return err_make(err, EINVAL, "the erofs root needs its image");
        root.source = "/dev/pmem0";
    } else {
        root.source = VMC_ROOT_TAG;
    }
    cleanup_free char *chan = xasprintf("vsock:%u", AGENT_VSOCK_PORT);
    cleanup_free char *base = vmc_guest_cmdline(chan, &root, 'k');
    *cmdline = xasprintf("%s cocoon.shared=" VMC_SHARED_TAG "%s", base,
                         l->volumes ? " cocoon.volumes=" VMC_VOLUMES_TAG : "");
    *cfg = (struct vm_config){
        .kernel = g->kernel, .initrd = g->initrd, .cmdline = *cmdline, .cpus = l->cpus,
        .memory_mib = l->memory_mib, .console_fd = l->log_fd, .console_in_fd = -1,
        .map_kernel = true, .pit = true, .handle_signals = true,
    };
    struct vm_device *d = &cfg->devices[cfg->n_devices++];
    d->kind = VM_DEV_VSOCK;
    d->vsock = (struct virtio_vsock_opts){.guest_cid = VMC_GUEST_CID, .uds_path = VMC_VSOCK_SOCK};
    /* The root's device comes first among the storage devices: /dev/pmem0
     * is then always the root image. */
    if (l->rootfs_mode == VMC_ROOTFS_EROFS) {
        d = &cfg->devices[cfg->n_devices++];
        d->kind = VM_DEV_PMEM;
        d->pmem = (struct virtio_pmem_opts){.path = g->image};
    } else {
        /* Read-write even for root.readonly: the agent makes mount points
         * in it first, then the guest's mount read-only (as crun does on
         * the host). */
        add_fs(cfg, VMC_ROOT_TAG, l->rootfs, false);
        cfg->devices[cfg->n_devices - 1].fs.dax_size = l->root_dax_mib << 20;
    }
    cfg->devices[cfg->n_devices++].kind = VM_DEV_RNG;
    /* The guest reads attach tools from shared/, never writes them. */
    add_fs(cfg, VMC_SHARED_TAG, g->shared_dir, true);
    /* Volumes: read-write, as each volume's own mount says whether it is
     * read-only, and volumes/ itself is a read-only mount. */
    if (l->volumes)
        add_fs(cfg, VMC_VOLUMES_TAG, g->volumes_dir, false);
    return 0;
}
