/* A test guest booted through PVH: it checks what the VMM handed over
 * (hvm_start_info, the memory map, the command line, the initrd module) and
 * reports through the debug port. Expected values come on the command line:
 *   mem_mib=N          guest RAM size
 *   initrd_size=N initrd_sum=N   the module's size and byte sum (optional)
 *   exit=N             the exit status to end with (default 0)
 * The entry code greets on the 8250 UART at CPL0 before dropping to CPL3. */
#include "libguest.h"
#include "vmm/boot_abi.h"

void guest_main(uint32_t info_addr);

void guest_main(uint32_t info_addr)
{
    const struct hvm_start_info *si = (const struct hvm_start_info *)(uintptr_t)info_addr;
    G_CHECK(info_addr != 0, "no start_info address in %%ebx");
    G_CHECK(si->magic == HVM_START_MAGIC, "start_info magic %x", si->magic);
    G_CHECK(si->version >= 1, "start_info version %u", si->version);
    G_CHECK(si->cmdline_paddr != 0, "no command line");
    const char *cmdline = (const char *)(uintptr_t)si->cmdline_paddr;
    g_print("cmdline: %s", cmdline);

    char v[64];
    if (g_cmdline_get(cmdline, "mem_mib", v, sizeof(v))) {
        uint64_t mem = g_parse_u64(v) << 20, ram = 0;
        G_CHECK(si->memmap_entries > 0 && si->memmap_paddr, "no memory map");
        const struct hvm_memmap_entry *mm = (const void *)(uintptr_t)si->memmap_paddr;
        for (uint32_t i = 0; i < si->memmap_entries; i++) {
            g_print("memmap[%u]: %lx +%lx type %u", i, mm[i].addr, mm[i].size, mm[i].type);
            if (mm[i].type == E820_RAM)
                ram += mm[i].size;
        }
        G_CHECK(mm[0].addr == 0 && mm[0].type == E820_RAM, "memory map does not start with RAM at 0");
        /* RAM may exclude a hole below 1 MiB, never more than that */
        G_CHECK(ram <= mem && ram + 0x100000 >= mem, "RAM in the map %lu, expected %lu", ram, mem);
        /* touch the last page of RAM */
        volatile uint8_t *last = (volatile uint8_t *)(uintptr_t)(mem - 1);
        *last = 0x5a;
        G_CHECK(*last == 0x5a, "the last byte of RAM does not hold a value");
    }
    if (g_cmdline_get(cmdline, "initrd_size", v, sizeof(v))) {
        uint64_t size = g_parse_u64(v);
        G_CHECK(si->nr_modules == 1, "%u modules, expected 1", si->nr_modules);
        const struct hvm_modlist_entry *m = (const void *)(uintptr_t)si->modlist_paddr;
        G_CHECK(m->size == size, "initrd size %lu, expected %lu", m->size, size);
        G_CHECK((m->paddr & 0xfff) == 0, "initrd at %lx is not page aligned", m->paddr);
        uint64_t sum = 0;
        const uint8_t *p = (const uint8_t *)(uintptr_t)m->paddr;
        for (uint64_t i = 0; i < m->size; i++)
            sum += p[i];
        G_CHECK(g_cmdline_get(cmdline, "initrd_sum", v, sizeof(v)), "initrd_sum missing");
        G_CHECK(sum == g_parse_u64(v), "initrd byte sum %lu, expected %s", sum, v);
        g_print("initrd: %lu bytes at %lx, sum ok", m->size, m->paddr);
    }
    /* fault=1: take an exception at CPL3 with no IDT: a triple fault */
    if (g_cmdline_get(cmdline, "fault", v, sizeof(v)))
        __asm__ volatile("ud2");
    /* fail=1: report a failed check */
    if (g_cmdline_get(cmdline, "fail", v, sizeof(v)))
        g_fail("asked to fail: %s", v);
    uint64_t status = 0;
    if (g_cmdline_get(cmdline, "exit", v, sizeof(v)))
        status = g_parse_u64(v);
    g_exit(status);
}
