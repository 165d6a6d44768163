/* A test guest that checks what the VMM handed over at boot, through PVH
 * (pvh_guest.elf) or the Linux 64-bit boot protocol (bz_guest.bin): the
 * boot structure's magic, the memory map, the command line, the initrd.
 * Expected values come on the command line:
 *   mem_mib=N                    guest RAM size
 *   initrd_size=N initrd_sum=N   the initrd's size and byte sum (optional)
 *   exit=N                       the exit status to end with (default 0)
 *   fault=1 / fail=X / loop=1    triple fault / failed check / spin forever
 *   mptable=N                    an MP table with N processors and an IOAPIC
 *   smp=N                        start the N-1 other CPUs with INIT/STARTUP
 *                                IPIs (ap_start.S) and wait until all run
 *   garbage_mmio=1               write garbage to every MMIO page above RAM
 *   garbage_ports=1              (boot.c, at CPL0) garbage to every port */
#include "libguest.h"
#include "vmm/boot_abi.h"

static void check_memory(const struct g_boot *b, uint64_t mem)
{
    uint64_t ram = 0;
    G_CHECK(b->memmap_n > 0, "no memory map");
    for (uint32_t i = 0; i < b->memmap_n; i++) {
        const struct g_memmap *m = &b->memmap[i];
        g_print("memmap[%u]: %lx +%lx type %u", i, m->addr, m->size, m->type);
        if (m->type == E820_RAM)
            ram += m->size;
    }
    G_CHECK(b->memmap[0].addr == 0 && b->memmap[0].type == E820_RAM,
            "memory map does not start with RAM at 0");
    /* RAM may exclude a hole below 1 MiB, never more than that */
    G_CHECK(ram <= mem && ram + 0x100000 >= mem, "RAM in the map %lu, expected %lu", ram, mem);
    volatile uint8_t *last = (volatile uint8_t *)(uintptr_t)(mem - 1);
    *last = 0x5a;
    G_CHECK(*last == 0x5a, "the last byte of RAM does not hold a value");
}

static void check_initrd(const struct g_boot *b, const char *cmdline, uint64_t size)
{
    char v[32];
    G_CHECK(b->nr_modules == 1, "%u modules, expected 1", b->nr_modules);
    G_CHECK(b->initrd_size == size, "initrd size %lu, expected %lu", b->initrd_size, size);
    G_CHECK((b->initrd & 0xfff) == 0, "initrd at %lx is not page aligned", b->initrd);
    uint64_t sum = 0;
    const uint8_t *p = (const uint8_t *)(uintptr_t)b->initrd;
    for (uint64_t i = 0; i < size; i++)
        sum += p[i];
    G_CHECK(g_cmdline_get(cmdline, "initrd_sum", v, sizeof(v)), "initrd_sum missing");
    G_CHECK(sum == g_parse_u64(v), "initrd byte sum %lu, expected %s", sum, v);
    g_print("initrd: %lu bytes at %lx, sum ok", size, b->initrd);
}

/* Pages from the top of RAM to 4 GiB get a read and a garbage write of each
 * size: 16 MiB apart below 3 GiB (nothing lives there), 64 KiB apart above,
 * and every page of the first MiB of the device window at 0xd0000000. */
static void garbage_mmio(uint64_t mem)
{
    uint32_t x = 0x9e3779b9;
    uint64_t n = 0;
    for (uint64_t a = mem; a < (1ull << 32);
         a += a < 0xc0000000ull ? 0x1000000 : a - 0xd0000000ull < 0x100000 ? 0x1000 : 0x10000) {
        /* the test's own channel, and the local APIC (KVM's, not cocoon's:
         * a garbage ICR write could INIT this very CPU) */
        if ((a >= COCOON_DEBUG_MMIO && a < COCOON_DEBUG_MMIO + 0x1000) ||
            (a >= 0xfee00000ull && a < 0xfee01000ull))
            continue;
        x = x * 1103515245u + 12345u;
        volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)(a + (x & 0xff8));
        (void)*p;
        *p = (uint8_t)x;
        *(volatile uint16_t *)p = (uint16_t)(x >> 8);
        *(volatile uint32_t *)p = x;
        *(volatile uint64_t *)p = (uint64_t)x << 32 | x;
        (void)*(volatile uint64_t *)p;
        n++;
    }
    g_print("garbage written to %lu MMIO pages", n);
}

static uint8_t sum8(const uint8_t *p, uint32_t n)
{
    uint8_t s = 0;
    while (n--)
        s = (uint8_t)(s + *p++);
    return s;
}

/* Find the MP floating pointer where Linux looks (the last KiB of base
 * memory) and check the table behind it as Linux would. */
static void check_mptable(uint64_t cpus)
{
    const uint8_t *f = 0;
    for (uint64_t a = 0x9fc00; a < 0xa0000; a += 16)
        if (g_strncmp((const char *)(uintptr_t)a, "_MP_", 4) == 0) {
            f = (const uint8_t *)(uintptr_t)a;
            break;
        }
    G_CHECK(f != 0, "no MP floating pointer in the last KiB of base memory");
    G_CHECK(sum8(f, 16) == 0, "MP floating pointer checksum");
    uint32_t ta;
    memcpy(&ta, f + 4, 4);
    const uint8_t *t = (const uint8_t *)(uintptr_t)ta;
    G_CHECK(g_strncmp((const char *)t, "PCMP", 4) == 0, "no PCMP table at %x", ta);
    uint16_t len, count;
    uint32_t lapic;
    memcpy(&len, t + 4, 2);
    memcpy(&count, t + 34, 2);
    memcpy(&lapic, t + 36, 4);
    G_CHECK(sum8(t, len) == 0, "MP table checksum");
    G_CHECK(lapic == 0xfee00000u, "local APIC at %x", lapic);
    uint64_t procs = 0, bsp = 0, ioapics = 0, irqs = 0;
    const uint8_t *e = t + 44;
    for (uint16_t i = 0; i < count; i++) {
        G_CHECK(e < t + len, "MP entries run past the table");
        switch (e[0]) {
        case 0:
            G_CHECK(e[1] == procs, "processor %lu has APIC id %u", procs, e[1]);
            procs++;
            bsp += (e[3] & 2) != 0;
            e += 20;
            break;
        case 2: {
            uint32_t addr;
            memcpy(&addr, e + 4, 4);
            G_CHECK(addr == 0xfec00000u, "IOAPIC at %x", addr);
            ioapics++;
            e += 8;
            break;
        }
        case 3: irqs++; e += 8; break;
        case 1:
        case 4: e += 8; break;
        default: g_fail("MP entry type %u", e[0]);
        }
    }
    G_CHECK(procs == cpus && bsp == 1, "%lu processors (%lu BSP), expected %lu", procs, bsp, cpus);
    G_CHECK(ioapics == 1 && irqs >= 16, "%lu IOAPICs, %lu IRQ entries", ioapics, irqs);
    g_print("mptable: %lu processors, IOAPIC, %lu IRQs", procs, irqs);
}

extern const uint8_t ap_tramp[], ap_tramp_end[];
extern volatile uint32_t ap_alive;

static void lapic_icr(uint32_t low)
{
    volatile uint32_t *icr_lo = (volatile uint32_t *)(uintptr_t)0xfee00300ull;
    *icr_lo = low;
    for (int i = 0; i < 100000 && (*icr_lo & (1u << 12)); i++)
        __asm__ volatile("pause"); /* delivery status: pending */
}

/* Start the other CPUs as an OS does: INIT, then STARTUP twice, to all
 * but self (the local APIC is the in-kernel one; CPL3 reaches it through
 * the user-mapped page). */
static void start_aps(uint64_t cpus)
{
    memcpy((void *)(uintptr_t)0x8000, ap_tramp, (size_t)(ap_tramp_end - ap_tramp));
    *(volatile uint32_t *)(uintptr_t)0xfee000f0ull = 0x1ff; /* software-enable the LAPIC */
    lapic_icr(0x000c4500); /* INIT, assert, all excluding self */
    for (volatile int i = 0; i < 1000000; i++)
        ;
    for (int k = 0; k < 2; k++) {
        lapic_icr(0x000c4608); /* STARTUP, vector 0x08: 0x8000 */
        for (volatile int i = 0; i < 100000; i++)
            ;
    }
    for (uint64_t spins = 0; ap_alive < cpus - 1; spins++) {
        G_CHECK(spins < 200000000ull, "%u of %lu application processors came up", ap_alive,
                cpus - 1);
        __asm__ volatile("pause");
    }
    g_print("smp: %u application processors up", ap_alive);
}

void guest_main(const struct g_boot *b)
{
    G_CHECK(b->magic_ok, "the boot structure's magic or version is wrong (kind %d)", b->kind);
    G_CHECK(b->cmdline != 0, "no command line");
    const char *cmdline = b->cmdline;
    g_print("cmdline: %s", cmdline);
    g_print("boot: %s", b->kind == 0 ? "pvh" : "linux");

    char v[64];
    uint64_t mem = 0;
    if (g_cmdline_get(cmdline, "mem_mib", v, sizeof(v))) {
        mem = g_parse_u64(v) << 20;
        check_memory(b, mem);
    }
    if (g_cmdline_get(cmdline, "initrd_size", v, sizeof(v)))
        check_initrd(b, cmdline, g_parse_u64(v));
    if (g_cmdline_get(cmdline, "mptable", v, sizeof(v)))
        check_mptable(g_parse_u64(v));
    if (g_cmdline_get(cmdline, "smp", v, sizeof(v)))
        start_aps(g_parse_u64(v));
    if (g_cmdline_get(cmdline, "garbage_mmio", v, sizeof(v)))
        garbage_mmio(mem ? mem : 0x100000);
    /* fault=1: take an exception at CPL3 with no IDT: a triple fault */
    if (g_cmdline_get(cmdline, "fault", v, sizeof(v)))
        __asm__ volatile("ud2");
    if (g_cmdline_get(cmdline, "fail", v, sizeof(v)))
        g_fail("asked to fail: %s", v);
    if (g_cmdline_get(cmdline, "loop", v, sizeof(v)))
        for (;;)
            __asm__ volatile("pause");
    uint64_t status = 0;
    if (g_cmdline_get(cmdline, "exit", v, sizeof(v)))
        status = g_parse_u64(v);
    g_exit(status);
}
