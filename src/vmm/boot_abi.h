/* Boot ABIs the VMM speaks, shared with the test guests: PVH's
 * hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h) and the
 * parts of Linux's x86 boot protocol (Documentation/arch/x86/boot.rst). */
#pragma once
#include <stdint.h>

#define HVM_START_MAGIC 0x336ec578u
#define XEN_ELFNOTE_PHYS32_ENTRY 18

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;   /* version 1 */
    uint32_t memmap_entries; /* version 1 */
    uint32_t reserved;
};

struct hvm_modlist_entry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};

struct hvm_memmap_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type; /* E820 type: 1 RAM, 2 reserved */
    uint32_t reserved;
};

#define E820_RAM 1
#define E820_RESERVED 2

/* Linux boot protocol: the setup header at offset 0x1f1 of a bzImage and of
 * boot_params (the "zero page"). */
struct __attribute__((packed)) linux_setup_header {
    uint8_t setup_sects;
    uint16_t root_flags;
    uint32_t syssize;
    uint16_t ram_size;
    uint16_t vid_mode;
    uint16_t root_dev;
    uint16_t boot_flag;      /* 0xAA55 */
    uint16_t jump;
    uint32_t header;         /* "HdrS" */
    uint16_t version;
    uint32_t realmode_swtch;
    uint16_t start_sys_seg;
    uint16_t kernel_version;
    uint8_t type_of_loader;
    uint8_t loadflags;
    uint16_t setup_move_size;
    uint32_t code32_start;
    uint32_t ramdisk_image;
    uint32_t ramdisk_size;
    uint32_t bootsect_kludge;
    uint16_t heap_end_ptr;
    uint8_t ext_loader_ver;
    uint8_t ext_loader_type;
    uint32_t cmd_line_ptr;
    uint32_t initrd_addr_max;
    uint32_t kernel_alignment;
    uint8_t relocatable_kernel;
    uint8_t min_alignment;
    uint16_t xloadflags;
    uint32_t cmdline_size;
    uint32_t hardware_subarch;
    uint64_t hardware_subarch_data;
    uint32_t payload_offset;
    uint32_t payload_length;
    uint64_t setup_data;
    uint64_t pref_address;
    uint32_t init_size;
    uint32_t handover_offset;
    uint32_t kernel_info_offset;
};

struct __attribute__((packed)) boot_e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

#define LINUX_HDRS_MAGIC 0x53726448u /* "HdrS" */
#define LINUX_SETUP_HEADER_OFFSET 0x1f1
#define LINUX_LOADED_HIGH 0x01
#define LINUX_KEEP_SEGMENTS 0x40
#define LINUX_CAN_USE_HEAP 0x80
#define LINUX_XLF_KERNEL_64 0x01
#define LINUX_E820_MAX 128

/* boot_params: only the fields cocoon fills, at their fixed offsets. */
struct __attribute__((packed)) linux_boot_params {
    uint8_t pad0[0x1e8];
    uint8_t e820_entries;                       /* 0x1e8 */
    uint8_t pad1[0x1f1 - 0x1e9];
    struct linux_setup_header hdr;              /* 0x1f1 */
    uint8_t pad2[0x2d0 - 0x1f1 - sizeof(struct linux_setup_header)];
    struct boot_e820_entry e820[LINUX_E820_MAX]; /* 0x2d0 */
    uint8_t pad3[0x1000 - 0x2d0 - LINUX_E820_MAX * sizeof(struct boot_e820_entry)];
};

_Static_assert(sizeof(struct linux_boot_params) == 0x1000, "boot_params is one page");
