/* Where the VMM puts boot structures in guest-physical memory. */
#pragma once

#define BOOT_GDT_ADDR 0x500
#define PVH_INFO_ADDR 0x6000
#define PVH_MEMMAP_ADDR 0x6100
#define PVH_MODLIST_ADDR 0x6800
#define ZERO_PAGE_ADDR 0x7000
#define PML4_ADDR 0x9000
#define PDPT_ADDR 0xa000
#define PD_ADDR 0xb000 /* four pages: identity map of 4 GiB with 2 MiB pages */
#define CMDLINE_ADDR 0x20000
#define CMDLINE_MAX 0x10000
#define LOW_RAM_END 0x9fc00
#define HIGH_RAM_START 0x100000
#define BZIMAGE_LOAD_ADDR 0x100000
#define MIN_MEMORY_MIB 4
/* virtio-mmio devices: one 4 KiB register page each from here, IRQ 5 up */
#define VIRTIO_MMIO_BASE 0xd0000000ull
#define VIRTIO_IRQ_BASE 5
/* virtio-pmem regions and virtio-fs DAX windows: guest-physical memory from
 * 4 GiB up, 2 MiB aligned, in device order */
#define PMEM_BASE 0x100000000ull
