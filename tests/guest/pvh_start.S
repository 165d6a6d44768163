/* PVH entry of the test guests: the VMM enters here in 32-bit protected mode
 * (paging off, flat segments, %ebx = hvm_start_info). We turn on long mode
 * with the guest's identity page tables and continue in start64 (start64.S). */

#include "long_mode.h"

    .section .note.Xen, "a"
    .align 4
    .long 4                 /* name size: "Xen\0" */
    .long 4                 /* desc size */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long pvh_start

    .section .text.boot, "ax"
    .code32
    .globl pvh_start
pvh_start:
    movl %ebx, %esi
    ENTER_LONG_MODE
    lgdt gdt_desc32
    ljmp $0x08, $pvh_long_mode

    .code64
pvh_long_mode:
    movl %esi, %r15d        /* hvm_start_info */
    xorl %r14d, %r14d       /* kind 0: PVH */
    jmp start64
