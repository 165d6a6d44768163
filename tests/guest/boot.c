/* What every test guest does before its checks: read the boot information
 * the VMM handed over (hvm_start_info or boot_params) into one struct g_boot,
 * greet on the UART at CPL0, and, on request, write garbage to every I/O
 * port while port I/O still works (CPL0). */
#include "libguest.h"
#include "vmm/boot_abi.h"

void guest_kernel_main(uint64_t info, uint64_t kind);
void guest_user_main(uint64_t info, uint64_t kind);

static void g_boot_read(uint64_t info, uint64_t kind, struct g_boot *b)
{
    memset(b, 0, sizeof(*b));
    b->kind = (int)kind;
    if (info == 0)
        return;
    if (kind == 0) {
        const struct hvm_start_info *si = (const void *)(uintptr_t)info;
        b->magic_ok = si->magic == HVM_START_MAGIC && si->version >= 1;
        b->cmdline = (const char *)(uintptr_t)si->cmdline_paddr;
        const struct hvm_memmap_entry *mm = (const void *)(uintptr_t)si->memmap_paddr;
        for (uint32_t i = 0; mm && i < si->memmap_entries && i < G_MEMMAP_MAX; i++)
            b->memmap[b->memmap_n++] = (struct g_memmap){mm[i].addr, mm[i].size, mm[i].type};
        if (si->nr_modules >= 1 && si->modlist_paddr) {
            const struct hvm_modlist_entry *m = (const void *)(uintptr_t)si->modlist_paddr;
            b->initrd = m->paddr;
            b->initrd_size = m->size;
        }
        b->nr_modules = si->nr_modules;
    } else {
        const struct linux_boot_params *bp = (const void *)(uintptr_t)info;
        b->magic_ok = bp->hdr.header == LINUX_HDRS_MAGIC && bp->hdr.boot_flag == 0xaa55 &&
                      bp->hdr.type_of_loader != 0;
        b->cmdline = (const char *)(uintptr_t)bp->hdr.cmd_line_ptr;
        for (uint32_t i = 0; i < bp->e820_entries && i < G_MEMMAP_MAX; i++)
            b->memmap[b->memmap_n++] =
                (struct g_memmap){bp->e820[i].addr, bp->e820[i].size, bp->e820[i].type};
        b->initrd = bp->hdr.ramdisk_image;
        b->initrd_size = bp->hdr.ramdisk_size;
        b->nr_modules = b->initrd_size ? 1 : 0;
    }
}

static void uart_puts(const char *s)
{
    for (; *s; s++) {
        while (!(inb(0x3fd) & 0x20))
            ;
        outb(0x3f8, (uint8_t)*s);
    }
}

/* Every port but the reset value on the i8042 and the ports that end the
 * VM on purpose (isa-debug-exit 0xf4, the test-failure port 0xcc1) gets a byte, a word and a dword of garbage; reads too. The VMM must shrug. */
static void garbage_ports(void)
{
    uint32_t x = 0x12345678;
    for (uint32_t port = 0; port < 0x10000; port++) {
        if (port == 0x0cc1 || port == 0xf4)
            continue;
        x = x * 1103515245u + 12345u;
        uint8_t b = (uint8_t)(x >> 16);
        if (port == 0x64 && b == 0xfe)
            b = 0xfd;
        outb((uint16_t)port, b);
        (void)inb((uint16_t)port);
        if (port != 0x64 && port != 0x0cc0) {
            __asm__ volatile("outw %0, %1" : : "a"((uint16_t)x), "Nd"((uint16_t)port));
            __asm__ volatile("outl %0, %1" : : "a"(x), "Nd"((uint16_t)port));
        }
    }
}

/* CPL0 (emulated on some hosts: keep it short). */
void guest_kernel_main(uint64_t info, uint64_t kind)
{
    struct g_boot b;
    g_boot_read(info, kind, &b);
    uart_puts("cocoon test guest: hello from the 8250 UART\n");
    char v[8];
    if (b.cmdline && g_cmdline_get(b.cmdline, "garbage_ports", v, sizeof(v))) {
        garbage_ports();
        outb(0x3fb, 0x03); /* 8N1, DLAB off: the garbage may have set it */
        outb(0x3f9, 0x00);
        outb(0x3fc, 0x03); /* DTR, RTS, no loopback */
        uart_puts("\ncocoon test guest: wrote garbage to every port\n");
    }
}

/* CPL3: read the boot information again (no state carried from CPL0) and
 * run the guest's checks. */
void guest_user_main(uint64_t info, uint64_t kind)
{
    struct g_boot b;
    g_boot_read(info, kind, &b);
    guest_main(&b);
    g_fail("guest_main returned");
}
