/* The guest of bench/virtio.py's pmem-sharing measurement: it touches one
 * byte of every 4 KiB page of the virtio-pmem region in the first device
 * slot (reads it; with `write` first on the command line writes it, which
 * makes each page a private copy; with `none` touches nothing), writes boot
 * marker 1 to the debug port, then halts with interrupts off: the vCPU
 * sleeps in KVM and costs no CPU, so 20 such VMs can stay alive while the
 * host measures its memory. Marker 0xee: the first device is not a pmem
 * region at 4 GiB.
 *
 * Unlike the other virtio test guests this one runs at CPL0 (long mode,
 * its own identity map of 0..1 GiB and of the region at 4..5 GiB): a CPL3
 * guest cannot halt, only spin, and the loop is four instructions a page,
 * short even where guest kernel mode is emulated. */
#include "long_mode.h"

#define MMIO 0xd0000000
#define PMEM_MAX 0x40000000

    .section .note.Xen, "a"
    .align 4
    .long 4, 4, 18
    .asciz "Xen"
    .long pmem_touch_start

    .section .text.boot, "ax"
    .code32
    .globl pmem_touch_start
pmem_touch_start:
    cli
    /* the mode: hvm_start_info (%ebx) cmdline_paddr at offset 24 */
    xorl %edi, %edi                 /* 0 read, 1 write, 2 none */
    movl 24(%ebx), %esi
    testl %esi, %esi
    jz 1f
    movl (%esi), %eax
    cmpl $0x74697277, %eax          /* "writ" */
    jne 2f
    movl $1, %edi
    jmp 1f
2:  cmpl $0x656e6f6e, %eax          /* "none" */
    jne 1f
    movl $2, %edi
1:
    /* virtio-pmem (id 27) with its region at 4 GiB */
    movl MMIO + 8, %eax
    cmpl $27, %eax
    jne fail
    movl MMIO + 0x100, %eax         /* start, low and high */
    testl %eax, %eax
    jne fail
    movl MMIO + 0x104, %eax
    cmpl $1, %eax
    jne fail
    movl MMIO + 0x108, %ecx         /* size, at most 1 GiB used */
    movl MMIO + 0x10c, %eax
    testl %eax, %eax
    jne 3f
    cmpl $PMEM_MAX, %ecx
    jbe 4f
3:  movl $PMEM_MAX, %ecx
4:  movl %ecx, %esi                 /* ENTER_LONG_MODE clobbers ecx */
    ENTER_LONG_MODE
    lgdt gdt_desc
    ljmp $0x08, $touch

    .code64
touch:
    cmpl $2, %edi
    je done
    movq $0x100000000, %rcx
    movl %esi, %esi
    addq %rcx, %rsi                 /* end */
    movb $0xa5, %bl
5:  testl %edi, %edi
    jnz 6f
    movb (%rcx), %al
    jmp 7f
6:  movb %bl, (%rcx)
7:  addq $4096, %rcx
    cmpq %rsi, %rcx
    jb 5b
done:
    movw $0x0cc0, %dx
    movb $1, %al
    outb %al, %dx
8:  hlt
    jmp 8b

    .code32
fail:
    movw $0x0cc0, %dx
    movb $0xee, %al
    outb %al, %dx
9:  hlt
    jmp 9b

    .section .data
    .align 16
gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08 code, 64-bit */
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt
    .align 4096
pml4:
    .quad pdpt + 3
    .fill 511, 8, 0
pdpt:
    .quad pd_low + 3
    .quad 0, 0, 0
    .quad pd_pmem + 3
    .fill 507, 8, 0
pd_low:                             /* 2 MiB pages: present, writable, PS */
    .set i, 0
    .rept 512
    .quad i * 0x200000 + 0x83
    .set i, i + 1
    .endr
pd_pmem:
    .set i, 0
    .rept 512
    .quad 0x100000000 + i * 0x200000 + 0x83
    .set i, i + 1
    .endr
