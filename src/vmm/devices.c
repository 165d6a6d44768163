/* The VM's device bus: virtio-mmio devices in 4 KiB slots from
 * VIRTIO_MMIO_BASE with IRQs from VIRTIO_IRQ_BASE, announced to the guest
 * kernel as virtio_mmio.device=<size>@<base>:<irq> on its command line
 * (Linux's virtio_mmio "device" parameter), plus the debug page. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/util.h"
#include "vmm/boot_layout.h"
#include "vmm/vm_internal.h"

static int create_one(struct vm *vm, const struct vm_device *spec, struct virtio_dev **d,
                      struct err **err)
{
    struct virtio_pmem_opts po;
    struct virtio_fs_opts fo;
    switch (spec->kind) {
    case VM_DEV_PMEM:
        po = spec->pmem;
        po.gpa = vm->pmem_next;
        po.slot = 1 + vm->n_devs; /* slot 0 is RAM */
        if (virtio_pmem_create(&po, d, err) < 0)
            return -1;
        vm->pmem_next += virtio_pmem_size(*d);
        return 0;
    case VM_DEV_RNG: return virtio_rng_create(d, err);
    case VM_DEV_BLK: return virtio_blk_create(&spec->blk, d, err);
    case VM_DEV_CONSOLE: return virtio_console_create(&spec->console, d, err);
    case VM_DEV_NET: return virtio_net_create(&spec->net, d, err);
    case VM_DEV_VSOCK: return virtio_vsock_create(&spec->vsock, d, err);
    case VM_DEV_FS:
        fo = spec->fs;
        if (fo.dax_size) {
            fo.dax_gpa = vm->pmem_next;
            fo.dax_slot = 1 + vm->n_devs;
        }
        if (virtio_fs_create(&fo, d, err) < 0)
            return -1;
        vm->pmem_next += fo.dax_size;
        return 0;
    }
    return err_input(err, "unknown device kind %d", (int)spec->kind);
}

int vm_devices_create(struct vm *vm, struct err **err)
{
    if (vm->cfg.n_devices > VM_MAX_DEVICES)
        return err_input(err, "at most %d devices", VM_MAX_DEVICES);
    const char *user = vm->cfg.cmdline ? vm->cfg.cmdline : "";
    size_t cap = strlen(user) + 1 + vm->cfg.n_devices * 48;
    vm->cmdline = xmalloc(cap);
    vm->pmem_next = PMEM_BASE;
    size_t len = (size_t)snprintf(vm->cmdline, cap, "%s", user);
    for (unsigned i = 0; i < vm->cfg.n_devices; i++) {
        struct virtio_dev *d = NULL;
        if (create_one(vm, &vm->cfg.devices[i], &d, err) < 0)
            return -1;
        vm->devs[vm->n_devs++] = d;
        uint64_t base = VIRTIO_MMIO_BASE + (uint64_t)i * VIRTIO_MMIO_SIZE;
        unsigned irq = VIRTIO_IRQ_BASE + i;
        if (virtio_mmio_attach(d, vm->vm_fd, &vm->mem, vm->loop, base, irq, err) < 0)
            return err_wrap(err, "virtio-%s", d->ops->name);
        len += (size_t)snprintf(vm->cmdline + len, cap - len, "%svirtio_mmio.device=4K@%#llx:%u",
                                len ? " " : "", (unsigned long long)base, irq);
    }
    return 0;
}

void vm_mmio(struct vm *vm, struct vcpu *vcpu, uint64_t addr, uint8_t *data, uint32_t len,
             bool is_write)
{
    if (len > 8)
        return;
    if (addr >= VIRTIO_MMIO_BASE && addr - VIRTIO_MMIO_BASE < vm->n_devs * VIRTIO_MMIO_SIZE) {
        uint64_t off = addr - VIRTIO_MMIO_BASE;
        struct virtio_dev *d = vm->devs[off / VIRTIO_MMIO_SIZE];
        off %= VIRTIO_MMIO_SIZE;
        if (off + len <= VIRTIO_MMIO_SIZE) {
            virtio_mmio_access(d, off, data, len, is_write);
            return;
        }
    }
    if (addr >= DEBUG_MMIO_ADDR && addr - DEBUG_MMIO_ADDR < DEBUG_MMIO_SIZE && is_write) {
        vm_debug_write(vm, vcpu, addr - DEBUG_MMIO_ADDR, data, len);
        return;
    }
    if (!is_write)
        memset(data, 0xff, len); /* nothing there: reads see a floating bus */
}

void vm_devices_destroy(struct vm *vm)
{
    for (unsigned i = 0; i < vm->n_devs; i++)
        virtio_dev_destroy(vm->devs[i]);
    vm->n_devs = 0;
    free(vm->cmdline);
    vm->cmdline = NULL;
}
