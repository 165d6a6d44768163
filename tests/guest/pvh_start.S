/* PVH entry of the test guests: the VMM enters here in 32-bit protected mode
 * (paging off, flat segments, %ebx = hvm_start_info). We turn on long mode
 * with identity page tables that map the first 4 GiB with the user bit set,
 * then iretq to guest_main at CPL3 with IOPL=3: from there on the guest runs
 * natively even where guest kernel mode is emulated, and reaches the VMM
 * through `out` (KVM_EXIT_IO) and MMIO (KVM_EXIT_MMIO). */

#define PTE_P  0x1
#define PTE_W  0x2
#define PTE_U  0x4
#define PTE_PS 0x80

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
    movl %ebx, boot_info_addr
    movl $boot_stack_top, %esp
    /* PAE */
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    /* EFER.LME */
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    /* paging + protection */
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    lgdt gdt_desc
    ljmp $0x08, $long_mode

    .code64
long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    /* The UART is tested from here, at CPL0, where port I/O always works. */
    leaq banner(%rip), %rsi
2:  movb (%rsi), %bl
    testb %bl, %bl
    jz 4f
    movw $0x3fd, %dx
3:  inb %dx, %al
    testb $0x20, %al
    jz 3b
    movw $0x3f8, %dx
    movb %bl, %al
    outb %al, %dx
    incq %rsi
    jmp 2b
4:
    /* enter CPL3: SS, RSP, RFLAGS (IOPL=3), CS, RIP */
    pushq $0x1b
    pushq $user_stack_top
    pushq $0x3002
    pushq $0x23
    pushq $user_entry
    iretq

user_entry:
    movw $0x1b, %ax
    movw %ax, %ds
    movw %ax, %es
    movl boot_info_addr, %edi
    call guest_main
    /* guest_main must not return; if it does, report it */
    movl $0xf0000004, %ebx
    movl $0xdead, (%rbx)
1:  jmp 1b

    .section .data
    .align 16
gdt:
    .quad 0                         /* 0x00 null */
    .quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
    .quad 0x00cf92000000ffff        /* 0x10 kernel data */
    .quad 0x00cff2000000ffff        /* 0x18 user data, DPL3 */
    .quad 0x00affa000000ffff        /* 0x20 user code, 64-bit, DPL3 */
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt
    .long 0

banner:
    .asciz "cocoon test guest: hello from the 8250 UART\n"

    .globl boot_info_addr
boot_info_addr:
    .long 0

    .align 4096
pml4:
    .quad pdpt + (PTE_P | PTE_W | PTE_U)
    .fill 511, 8, 0
pdpt:
    .quad pd0 + (PTE_P | PTE_W | PTE_U)
    .quad pd1 + (PTE_P | PTE_W | PTE_U)
    .quad pd2 + (PTE_P | PTE_W | PTE_U)
    .quad pd3 + (PTE_P | PTE_W | PTE_U)
    .fill 508, 8, 0
/* 2 MiB pages (1 GiB pages are not offered everywhere) */
#define PD(base) \
    .set i, 0; \
    .rept 512; \
    .quad (base) + i * 0x200000 + (PTE_P | PTE_W | PTE_U | PTE_PS); \
    .set i, i + 1; \
    .endr
pd0: PD(0x00000000)
pd1: PD(0x40000000)
pd2: PD(0x80000000)
pd3: PD(0xc0000000)

    .section .bss
    .align 4096
boot_stack:
    .skip 4096
boot_stack_top:
user_stack:
    .skip 65536
user_stack_top:
