/* Port I/O dispatch: the 8250 UART, the i8042 reset line, an
 * isa-debug-exit port, and cocoon's debug port (test guests' ucalls; a byte is a boot-progress marker, like
 * Firecracker's boot timer). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "vmm/vm_internal.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define I8042_RESET 0xfe
#define DEBUG_PORT 0x0cc0
#define DEBUG_PORT_RETURNED 0x0cc1
/* qemu's isa-debug-exit at its usual address: a byte written is the exit
 * status (qemu reports (v << 1) | 1; cocoon reports v). Lets one payload
 * end the VM the same way under both VMMs. */
#define ISA_DEBUG_EXIT_PORT 0xf4

/* The ucall block a guest points the debug port at (tests/guest/ucall.h). */
struct ucall_block {
    uint64_t cmd;
    uint64_t args[4];
    char msg[256];
};

enum { UCALL_PRINT = 1, UCALL_FAIL = 2, UCALL_EXIT = 3 };

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void vm_debug_write(struct vm *vm, struct vcpu *vcpu, uint64_t offset, uint8_t *data,
                    uint32_t size)
{
    if (offset == 4) {
        vm_request_exit(vm, VM_EXIT_GUEST_FAIL, 0, "the test guest's main returned");
        return;
    }
    if (size == 1) {
        log_msg(LOG_INFO, "vcpu%d: boot marker %u at %.3f ms", vcpu->index, data[0], now_ms());
        return;
    }
    if (size != 4)
        return;
    uint32_t gpa;
    memcpy(&gpa, data, 4);
    const struct ucall_block *g = guest_mem_ptr(&vm->mem, gpa, sizeof(*g));
    if (g == NULL) {
        /* A guest cannot make the VMM fail: ignore it (and say so once in debug logs). */
        log_debug("debug port: ucall at %#x is outside guest memory; ignored", gpa);
        return;
    }
    /* Copy first: the guest may change the block while we look at it. */
    struct ucall_block uc;
    memcpy(&uc, g, sizeof(uc));
    uc.msg[sizeof(uc.msg) - 1] = '\0';
    switch (uc.cmd) {
    case UCALL_PRINT:
        fprintf(stderr, "guest: %s\n", uc.msg);
        break;
    case UCALL_FAIL:
        vm_request_exit(vm, VM_EXIT_GUEST_FAIL, 0, "guest check failed: %s", uc.msg);
        break;
    case UCALL_EXIT:
        vm_request_exit(vm, VM_EXIT_POWEROFF, (int)(uc.args[0] & 0xff),
                        "guest exited with status %llu", (unsigned long long)uc.args[0]);
        break;
    default:
        log_debug("debug port: unknown ucall %llu; ignored", (unsigned long long)uc.cmd);
    }
}

void vm_pio(struct vm *vm, struct vcpu *vcpu, uint16_t port, bool out, uint8_t *data,
            uint32_t size)
{
    if (port >= SERIAL_PORT_BASE && port < SERIAL_PORT_BASE + 8) {
        if (size == 1)
            serial_pio(&vm->serial, port - SERIAL_PORT_BASE, out, data);
        else if (!out)
            memset(data, 0xff, size);
        return;
    }
    switch (port) {
    case I8042_CMD:
        if (out && data[0] == I8042_RESET)
            vm_request_exit(vm, VM_EXIT_REBOOT, 0, "the guest asked for a reset (i8042)");
        else if (!out)
            data[0] = 0; /* no data, input buffer empty */
        return;
    case I8042_DATA:
        if (!out)
            data[0] = 0;
        return;
    case DEBUG_PORT:
        if (out)
            vm_debug_write(vm, vcpu, 0, data, size);
        else
            memset(data, 0, size);
        return;
    case ISA_DEBUG_EXIT_PORT:
        if (out)
            vm_request_exit(vm, VM_EXIT_POWEROFF, data[0], "the guest exited with status %u",
                            data[0]);
        else
            data[0] = 0;
        return;
    case DEBUG_PORT_RETURNED:
        if (out)
            vm_request_exit(vm, VM_EXIT_GUEST_FAIL, 0, "the test guest's main returned");
        return;
    }
    if (!out)
        memset(data, 0xff, size); /* nothing there: a floating bus */
}
