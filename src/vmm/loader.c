/* Kernel loading: an ELF vmlinux (PVH entry if it has the Xen PVH note,
 * else the Linux 64-bit boot protocol at its entry point) or a bzImage
 * (64-bit boot protocol), plus initrd, command line and memory map. Every
 * length and offset from the kernel file is checked before use. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/boot_abi.h"
#include "vmm/boot_layout.h"
#include "vmm/vm_internal.h"

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* Copy [off, off+len) of fd to guest-physical gpa. */
static int load_bytes(struct vm *vm, int fd, uint64_t off, uint64_t gpa, uint64_t len,
                      const char *what, struct err **err)
{
    void *dst = guest_mem_ptr(&vm->mem, gpa, len);
    if (dst == NULL)
        return err_input(err, "%s: %llu bytes at %#llx do not fit in guest memory", what,
                         (unsigned long long)len, (unsigned long long)gpa);
    if (pread_all(fd, dst, len, off) < 0)
        return err_make(err, errno ? errno : EIO, "%s: read", what);
    return 0;
}

/* The RAM map every boot path reports: low RAM, the legacy hole, high RAM. */
static size_t memory_map(const struct vm *vm, struct hvm_memmap_entry *e)
{
    e[0] = (struct hvm_memmap_entry){0, LOW_RAM_END, E820_RAM, 0};
    e[1] = (struct hvm_memmap_entry){LOW_RAM_END, HIGH_RAM_START - LOW_RAM_END, E820_RESERVED, 0};
    e[2] = (struct hvm_memmap_entry){HIGH_RAM_START, vm->mem.size - HIGH_RAM_START, E820_RAM, 0};
    return 3;
}

static int put_cmdline(struct vm *vm, uint64_t max, struct err **err)
{
    const char *c = vm->cmdline ? vm->cmdline : "";
    size_t n = strlen(c) + 1;
    if (n > max || n > CMDLINE_MAX)
        return err_input(err, "--cmdline is %zu bytes; this kernel takes at most %llu", n - 1,
                         (unsigned long long)(max < CMDLINE_MAX ? max : CMDLINE_MAX) - 1);
    memcpy(guest_mem_ptr(&vm->mem, CMDLINE_ADDR, n), c, n);
    return 0;
}

/* Place the initrd page-aligned as high as possible below `limit`. */
static int put_initrd(struct vm *vm, uint64_t kernel_end, uint64_t limit, uint64_t *addr,
                      uint64_t *size, struct err **err)
{
    *addr = *size = 0;
    if (vm->cfg.initrd == NULL)
        return 0;
    cleanup_close int fd = open(vm->cfg.initrd, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return err_make(err, errno, "initrd `%s`", vm->cfg.initrd);
    uint64_t top = vm->mem.size < limit ? vm->mem.size : limit;
    uint64_t len = (uint64_t)st.st_size;
    if (len == 0 || len > top || ((top - len) & ~0xfffull) < kernel_end)
        return err_input(err, "initrd `%s` (%llu bytes) does not fit in guest memory above the "
                              "kernel; give the VM more --memory",
                         vm->cfg.initrd, (unsigned long long)len);
    uint64_t gpa = (top - len) & ~0xfffull;
    if (load_bytes(vm, fd, 0, gpa, len, "initrd", err) < 0)
        return -1;
    *addr = gpa;
    *size = len;
    return 0;
}

/* ---- ELF ---- */

static int find_pvh_entry(int fd, const Elf64_Phdr *ph, uint64_t file_size, uint64_t *entry)
{
    if (ph->p_filesz > 65536 || ph->p_offset > file_size || ph->p_filesz > file_size - ph->p_offset)
        return -1;
    cleanup_free uint8_t *notes = xmalloc(ph->p_filesz ? ph->p_filesz : 1);
    if (pread_all(fd, notes, ph->p_filesz, ph->p_offset) < 0)
        return -1;
    uint64_t off = 0;
    while (off + 12 <= ph->p_filesz) {
        uint32_t namesz, descsz, type;
        memcpy(&namesz, notes + off, 4);
        memcpy(&descsz, notes + off + 4, 4);
        memcpy(&type, notes + off + 8, 4);
        uint64_t name_off = off + 12, desc_off = name_off + ((namesz + 3ull) & ~3ull);
        uint64_t next = desc_off + ((descsz + 3ull) & ~3ull);
        if (next > ph->p_filesz)
            return -1;
        if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
            memcmp(notes + name_off, "Xen", 4) == 0 && (descsz == 4 || descsz == 8)) {
            uint64_t e = 0;
            memcpy(&e, notes + desc_off, descsz);
            *entry = descsz == 4 ? (uint32_t)e : e;
            return 0;
        }
        off = next;
    }
    return -1;
}

static int load_elf(struct vm *vm, int fd, uint64_t file_size, uint64_t *kernel_end, bool *pvh,
                    struct err **err)
{
    const char *k = vm->cfg.kernel;
    Elf64_Ehdr eh;
    if (pread_all(fd, &eh, sizeof(eh), 0) < 0)
        return err_input(err, "kernel `%s`: too short for an ELF header", k);
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64)
        return err_input(err, "kernel `%s`: not a 64-bit x86 ELF executable", k);
    Elf64_Phdr ph[64];
    if (eh.e_phoff > file_size || pread_all(fd, ph, eh.e_phnum * sizeof(Elf64_Phdr), eh.e_phoff) < 0)
        return err_input(err, "kernel `%s`: program headers outside the file", k);
    *kernel_end = 0;
    *pvh = false;
    uint64_t pvh_entry = 0;
    long page = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < eh.e_phnum; i++) {
        const Elf64_Phdr *p = &ph[i];
        if (p->p_type == PT_NOTE && !*pvh && find_pvh_entry(fd, p, file_size, &pvh_entry) == 0)
            *pvh = true;
        if (p->p_type != PT_LOAD || p->p_memsz == 0)
            continue;
        if (p->p_filesz > p->p_memsz || p->p_offset > file_size ||
            p->p_filesz > file_size - p->p_offset)
            return err_input(err, "kernel `%s`: segment %d lies outside the file", k, i);
        if (p->p_paddr < HIGH_RAM_START || guest_mem_ptr(&vm->mem, p->p_paddr, p->p_memsz) == NULL)
            return err_input(err, "kernel `%s`: segment %d (%#llx, %llu bytes) is not inside "
                                  "guest RAM above 1 MiB; give the VM more --memory",
                             k, i, (unsigned long long)p->p_paddr,
                             (unsigned long long)p->p_memsz);
        uint64_t mapped = 0;
        if (vm->cfg.map_kernel && p->p_offset % (uint64_t)page == 0 &&
            p->p_paddr % (uint64_t)page == 0) {
            /* Share the kernel's pages with every VM through the page cache. */
            mapped = p->p_filesz & ~((uint64_t)page - 1);
            if (mapped && guest_mem_map_file(&vm->mem, p->p_paddr, fd, p->p_offset, mapped, err) < 0)
                return err_wrap(err, "kernel `%s`", k);
        }
        if (load_bytes(vm, fd, p->p_offset + mapped, p->p_paddr + mapped, p->p_filesz - mapped,
                       "kernel", err) < 0)
            return -1;
        memset(guest_mem_ptr(&vm->mem, p->p_paddr + p->p_filesz, p->p_memsz - p->p_filesz), 0,
               p->p_memsz - p->p_filesz);
        if (p->p_paddr + p->p_memsz > *kernel_end)
            *kernel_end = p->p_paddr + p->p_memsz;
    }
    if (*kernel_end == 0)
        return err_input(err, "kernel `%s`: no loadable segment", k);
    vm->entry = *pvh ? pvh_entry : eh.e_entry;
    if (guest_mem_ptr(&vm->mem, vm->entry, 1) == NULL)
        return err_input(err, "kernel `%s`: entry point %#llx is outside guest memory", k,
                         (unsigned long long)vm->entry);
    return 0;
}

static int setup_pvh(struct vm *vm, uint64_t kernel_end, struct err **err)
{
    if (put_cmdline(vm, CMDLINE_MAX, err) < 0)
        return -1;
    uint64_t initrd, initrd_size;
    if (put_initrd(vm, kernel_end, 1ull << 32, &initrd, &initrd_size, err) < 0)
        return -1;
    struct hvm_start_info *si = guest_mem_ptr(&vm->mem, PVH_INFO_ADDR, sizeof(*si));
    struct hvm_memmap_entry *mm = guest_mem_ptr(&vm->mem, PVH_MEMMAP_ADDR, 8 * sizeof(*mm));
    struct hvm_modlist_entry *mod = guest_mem_ptr(&vm->mem, PVH_MODLIST_ADDR, sizeof(*mod));
    memset(si, 0, sizeof(*si));
    si->magic = HVM_START_MAGIC;
    si->version = 1;
    si->cmdline_paddr = CMDLINE_ADDR;
    si->memmap_paddr = PVH_MEMMAP_ADDR;
    si->memmap_entries = (uint32_t)memory_map(vm, mm);
    if (initrd_size) {
        *mod = (struct hvm_modlist_entry){.paddr = initrd, .size = initrd_size};
        si->nr_modules = 1;
        si->modlist_paddr = PVH_MODLIST_ADDR;
    }
    vm->entry_64 = false;
    vm->boot_arg = PVH_INFO_ADDR;
    return 0;
}

/* ---- Linux 64-bit boot protocol ---- */

static int setup_linux(struct vm *vm, const struct linux_setup_header *file_hdr,
                       size_t hdr_len, uint64_t kernel_end, struct err **err)
{
    struct linux_boot_params *bp = guest_mem_ptr(&vm->mem, ZERO_PAGE_ADDR, sizeof(*bp));
    memset(bp, 0, sizeof(*bp));
    if (file_hdr)
        memcpy(&bp->hdr, file_hdr, hdr_len);
    else {
        bp->hdr.boot_flag = 0xaa55;
        bp->hdr.header = LINUX_HDRS_MAGIC;
        bp->hdr.version = 0x020f;
        bp->hdr.kernel_alignment = 0x1000000;
        bp->hdr.cmdline_size = CMDLINE_MAX - 1;
        bp->hdr.initrd_addr_max = 0x7fffffff;
    }
    bp->hdr.type_of_loader = 0xff;
    bp->hdr.loadflags |= LINUX_CAN_USE_HEAP | LINUX_LOADED_HIGH | LINUX_KEEP_SEGMENTS;
    bp->hdr.heap_end_ptr = 0xfe00;
    bp->hdr.cmd_line_ptr = CMDLINE_ADDR;
    uint64_t cmax = bp->hdr.version >= 0x0206 && bp->hdr.cmdline_size ? bp->hdr.cmdline_size + 1ull
                                                                       : 256;
    if (put_cmdline(vm, cmax, err) < 0)
        return -1;
    uint64_t initrd, initrd_size;
    uint64_t limit = bp->hdr.initrd_addr_max ? (uint64_t)bp->hdr.initrd_addr_max + 1 : 0x38000000;
    if (put_initrd(vm, kernel_end, limit, &initrd, &initrd_size, err) < 0)
        return -1;
    bp->hdr.ramdisk_image = (uint32_t)initrd;
    bp->hdr.ramdisk_size = (uint32_t)initrd_size;
    struct hvm_memmap_entry mm[8];
    size_t n = memory_map(vm, mm);
    for (size_t i = 0; i < n; i++)
        bp->e820[i] = (struct boot_e820_entry){mm[i].addr, mm[i].size, mm[i].type};
    bp->e820_entries = (uint8_t)n;
    vm->entry_64 = true;
    vm->boot_arg = ZERO_PAGE_ADDR;
    return 0;
}

static int load_bzimage(struct vm *vm, int fd, uint64_t file_size, struct err **err)
{
    const char *k = vm->cfg.kernel;
    uint8_t head[0x300];
    if (file_size < sizeof(head) || pread_all(fd, head, sizeof(head), 0) < 0)
        return err_input(err, "kernel `%s`: neither an ELF vmlinux nor a bzImage", k);
    struct linux_setup_header hdr;
    memcpy(&hdr, head + LINUX_SETUP_HEADER_OFFSET, sizeof(hdr));
    if (hdr.boot_flag != 0xaa55 || hdr.header != LINUX_HDRS_MAGIC)
        return err_input(err, "kernel `%s`: neither an ELF vmlinux nor a bzImage", k);
    if (hdr.version < 0x020c || !(hdr.xloadflags & LINUX_XLF_KERNEL_64))
        return err_input(err, "kernel `%s`: boot protocol %u.%u without a 64-bit entry "
                              "(need 2.12+ with XLF_KERNEL_64)",
                         k, hdr.version >> 8, hdr.version & 0xff);
    uint64_t setup = ((uint64_t)(hdr.setup_sects ? hdr.setup_sects : 4) + 1) * 512;
    if (setup >= file_size)
        return err_input(err, "kernel `%s`: setup size %llu past the end of the file", k,
                         (unsigned long long)setup);
    uint64_t len = file_size - setup;
    if (load_bytes(vm, fd, setup, BZIMAGE_LOAD_ADDR, len, "kernel", err) < 0)
        return -1;
    /* The header runs from 0x1f1 to 0x202 + the byte at 0x201. */
    size_t hdr_len = 0x202 + head[0x201] - LINUX_SETUP_HEADER_OFFSET;
    if (hdr_len > sizeof(hdr))
        hdr_len = sizeof(hdr);
    vm->entry = BZIMAGE_LOAD_ADDR + 0x200;
    uint64_t end = BZIMAGE_LOAD_ADDR + (hdr.init_size > len ? hdr.init_size : len);
    return setup_linux(vm, &hdr, hdr_len, end, err);
}

int vm_load_kernel(struct vm *vm, struct err **err)
{
    cleanup_close int fd = open(vm->cfg.kernel, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return err_make(err, errno, "kernel `%s`", vm->cfg.kernel);
    if (!S_ISREG(st.st_mode))
        return err_input(err, "kernel `%s` is not a regular file", vm->cfg.kernel);
    uint8_t magic[4] = {0};
    if (pread_all(fd, magic, 4, 0) < 0)
        return err_input(err, "kernel `%s` is too short", vm->cfg.kernel);
    if (memcmp(magic, ELFMAG, SELFMAG) == 0) {
        uint64_t end;
        bool pvh;
        if (load_elf(vm, fd, (uint64_t)st.st_size, &end, &pvh, err) < 0)
            return -1;
        log_debug("kernel `%s`: ELF, %s entry at %#llx", vm->cfg.kernel,
                  pvh ? "PVH" : "64-bit boot protocol", (unsigned long long)vm->entry);
        return pvh ? setup_pvh(vm, end, err) : setup_linux(vm, NULL, 0, end, err);
    }
    return load_bzimage(vm, fd, (uint64_t)st.st_size, err);
}
