/* The protected-mode part of the boot-protocol test guest, loaded at 1 MiB
 * like a bzImage's. The VMM enters at +0x200 (startup_64) in long mode with
 * its own page tables and %rsi = boot_params; the 32-bit entry at +0 is not
 * used by cocoon and halts. */
    .section .text.head, "ax"
    .code32
    .globl bz_start32
bz_start32:
    hlt
    jmp bz_start32

    .org 0x200
    .code64
    .globl bz_start64
bz_start64:
    movq %rsi, %r15         /* boot_params */
    movl $1, %r14d          /* kind 1: Linux boot protocol */
    jmp start64
