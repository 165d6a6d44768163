/* The test guests' side of cocoon's debug channel: the guest writes the
 * guest-physical address of a struct ucall (32 bits) to the debug MMIO page
 * (or, with IOPL, to the debug port), and the VMM acts on it, like the KVM
 * selftests' ucall. MMIO is used from CPL3: every KVM exits to the VMM on a
 * store to an unbacked page, while IOPL=3 does not survive every emulator's
 * iretq to user mode. */
#pragma once
#include <stdint.h>

#define COCOON_DEBUG_PORT 0x0cc0
#define COCOON_DEBUG_MMIO 0xf0000000u

enum ucall_cmd {
    UCALL_PRINT = 1, /* msg: a line for the VMM's log */
    UCALL_FAIL = 2,  /* msg: a failed check; the VM exits with status 66 */
    UCALL_EXIT = 3,  /* args[0]: the exit status of the VM */
};

struct ucall {
    uint64_t cmd;
    uint64_t args[4];
    char msg[256];
};

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
    return v;
}
