/* The Intel MultiProcessor Specification 1.4 table: how a guest without
 * ACPI finds its CPUs, the IOAPIC and how ISA IRQs are wired. Linux reads it
 * to start the other vCPUs and to route the virtio-mmio interrupts. */
#pragma once

struct err;
struct guest_mem;

/* Where the floating pointer goes: the last KiB of base memory, a place
 * every MP-aware kernel scans. */
#define MPTABLE_ADDR 0x9fc00

/* Write the floating pointer and the configuration table for `cpus`
 * processors (APIC ids 0..cpus-1), one IOAPIC and ISA IRQs 0..23. */
int mptable_write(struct guest_mem *mem, unsigned cpus, struct err **err);
