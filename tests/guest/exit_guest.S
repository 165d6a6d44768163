/* The smallest guest: a PVH ELF whose first instructions write 0 to the
 * isa-debug-exit port (0xf4) and halt. It ends the VM under cocoon (exit
 * status 0) and under qemu with -device isa-debug-exit (status 1), so
 * `make bench` times VMM start -> first guest instruction -> exit for both
 * on the same payload. */
    .section .note.Xen, "a"
    .align 4
    .long 4, 4, 18          /* name size, desc size, XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long exit_start

    .section .text.boot, "ax"
    .code32
    .globl exit_start
exit_start:
    xorl %eax, %eax
    outb %al, $0xf4
1:  hlt
    jmp 1b
