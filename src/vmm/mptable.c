/* MP table writer (MultiProcessor Specification 1.4, chapter 4). */
#include <string.h>

#include "common/err.h"
#include "vmm/guest_mem.h"
#include "vmm/mptable.h"

#define LAPIC_ADDR 0xfee00000u
#define IOAPIC_ADDR 0xfec00000u
#define LAPIC_VERSION 0x14
#define IOAPIC_VERSION 0x11
#define IOAPIC_PINS 24

struct __attribute__((packed)) mpf {
    char signature[4];      /* "_MP_" */
    uint32_t table;
    uint8_t length;         /* in 16-byte units */
    uint8_t revision;
    uint8_t checksum;
    uint8_t feature[5];
};

struct __attribute__((packed)) mpc_header {
    char signature[4];      /* "PCMP" */
    uint16_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem[8];
    char product[12];
    uint32_t oem_table;
    uint16_t oem_size;
    uint16_t count;
    uint32_t lapic;
    uint16_t ext_length;
    uint8_t ext_checksum;
    uint8_t reserved;
};

struct __attribute__((packed)) mpc_cpu {
    uint8_t type, apic_id, apic_version, flags;
    uint32_t signature, features;
    uint32_t reserved[2];
};

struct __attribute__((packed)) mpc_bus {
    uint8_t type, id;
    char bus_type[6];
};

struct __attribute__((packed)) mpc_ioapic {
    uint8_t type, id, version, flags;
    uint32_t addr;
};

struct __attribute__((packed)) mpc_irq {
    uint8_t type, irq_type;
    uint16_t flags;
    uint8_t src_bus, src_irq, dst_apic, dst_pin;
};

enum { MP_CPU = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_IOINT = 3, MP_LINT = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };

static uint8_t checksum(const uint8_t *p, size_t n)
{
    uint8_t s = 0;
    while (n--)
        s = (uint8_t)(s + *p++);
    return (uint8_t)-s;
}

int mptable_write(struct guest_mem *mem, unsigned cpus, struct err **err)
{
    size_t len = sizeof(struct mpc_header) + cpus * sizeof(struct mpc_cpu) +
                 sizeof(struct mpc_bus) + sizeof(struct mpc_ioapic) +
                 (IOAPIC_PINS + 2) * sizeof(struct mpc_irq);
    uint64_t table_addr = MPTABLE_ADDR + sizeof(struct mpf);
    uint8_t *base = guest_mem_ptr(mem, MPTABLE_ADDR, sizeof(struct mpf) + len);
    if (base == NULL || MPTABLE_ADDR + sizeof(struct mpf) + len > 0xa0000)
        return err_input(err, "the MP table for %u CPUs does not fit below 640 KiB", cpus);
    memset(base, 0, sizeof(struct mpf) + len);

    uint8_t *p = base + sizeof(struct mpf) + sizeof(struct mpc_header);
    uint16_t count = 0;
    uint8_t ioapic_id = (uint8_t)cpus;
    for (unsigned i = 0; i < cpus; i++, count++) {
        struct mpc_cpu c = {.type = MP_CPU, .apic_id = (uint8_t)i,
                            .apic_version = LAPIC_VERSION,
                            .flags = (uint8_t)(1 | (i == 0 ? 2 : 0)), /* enabled, BSP */
                            .signature = 0x600, .features = 0x201}; /* family 6; FPU, APIC */
        memcpy(p, &c, sizeof(c));
        p += sizeof(c);
    }
    struct mpc_bus bus = {.type = MP_BUS, .id = 0};
    memcpy(bus.bus_type, "ISA   ", 6);
    memcpy(p, &bus, sizeof(bus));
    p += sizeof(bus);
    count++;
    struct mpc_ioapic io = {.type = MP_IOAPIC, .id = ioapic_id, .version = IOAPIC_VERSION,
                            .flags = 1, .addr = IOAPIC_ADDR};
    memcpy(p, &io, sizeof(io));
    p += sizeof(io);
    count++;
    /* ISA IRQ n -> IOAPIC pin n, edge/high as the ISA bus conforms */
    for (uint8_t pin = 0; pin < IOAPIC_PINS; pin++, count++) {
        struct mpc_irq irq = {.type = MP_IOINT, .irq_type = MP_INT, .src_bus = 0,
                              .src_irq = pin, .dst_apic = ioapic_id, .dst_pin = pin};
        memcpy(p, &irq, sizeof(irq));
        p += sizeof(irq);
    }
    /* LINT0: ExtINT (the PIC), LINT1: NMI, on every local APIC */
    struct mpc_irq lint0 = {.type = MP_LINT, .irq_type = MP_EXTINT, .dst_apic = 0xff,
                            .dst_pin = 0};
    struct mpc_irq lint1 = {.type = MP_LINT, .irq_type = MP_NMI, .dst_apic = 0xff, .dst_pin = 1};
    memcpy(p, &lint0, sizeof(lint0));
    p += sizeof(lint0);
    memcpy(p, &lint1, sizeof(lint1));
    count += 2;

    struct mpc_header h = {.length = (uint16_t)len, .revision = 4, .count = count,
                           .lapic = LAPIC_ADDR};
    memcpy(h.signature, "PCMP", 4);
    memcpy(h.oem, "COCOON  ", 8);
    memcpy(h.product, "MICROVM     ", 12);
    uint8_t *table = base + sizeof(struct mpf);
    memcpy(table, &h, sizeof(h));
    table[7] = checksum(table, len);

    struct mpf f = {.table = (uint32_t)table_addr, .length = 1, .revision = 4};
    memcpy(f.signature, "_MP_", 4);
    memcpy(base, &f, sizeof(f));
    base[10] = checksum(base, sizeof(f));
    return 0;
}
