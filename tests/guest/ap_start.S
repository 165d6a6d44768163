/* Application-processor start-up code for the SMP test: the boot CPU copies
 * ap_tramp..ap_tramp_end to 0x8000 and sends INIT and STARTUP IPIs with
 * vector 0x08; each AP starts there in real mode, as on hardware, goes
 * through protected mode to long mode with the guest's page tables, counts
 * itself in ap_alive and halts. */
#include "long_mode.h"

#define AP_BASE 0x8000
#define OFF(x) ((x) - ap_tramp)

    .section .rodata
    .code16
    .globl ap_tramp, ap_tramp_end
ap_tramp:
    cli
    movw %cs, %ax
    movw %ax, %ds
    lgdtl OFF(ap_gdtd)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(AP_BASE + OFF(ap32))

    .code32
ap32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    ENTER_LONG_MODE
    ljmp $0x18, $(AP_BASE + OFF(ap64))

    .code64
ap64:
    lock incl ap_alive
1:  cli
    hlt
    jmp 1b

    .align 8
ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        /* 0x08 code, 32-bit */
    .quad 0x00cf92000000ffff        /* 0x10 data */
    .quad 0x00af9a000000ffff        /* 0x18 code, 64-bit */
ap_gdtd:
    .word 31
    .long AP_BASE + OFF(ap_gdt)
ap_tramp_end:

    .section .data
    .globl ap_alive
    .align 4
ap_alive:
    .long 0
