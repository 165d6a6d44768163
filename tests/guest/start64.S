/* The long-mode half shared by every test guest's entry (PVH and the Linux
 * 64-bit boot protocol). Entered at CPL0 with paging on, %r15 = the boot
 * info address (hvm_start_info or boot_params), %r14 = its kind (0 PVH,
 * 1 Linux). It loads the guest's own GDT and identity page tables (8 GiB,
 * user bit set), runs guest_kernel_main() at CPL0 (UART greeting, port
 * tests), then iretq's to guest_main at CPL3 with IOPL=3: from there on the
 * guest runs natively even where guest kernel mode is emulated, and reaches
 * the VMM through MMIO (KVM_EXIT_MMIO). */

#define PTE_P  0x1
#define PTE_W  0x2
#define PTE_U  0x4
#define PTE_PS 0x80

    .section .text.boot, "ax"
    .code64
    .globl start64
start64:
    leaq boot_stack_top(%rip), %rsp
    lgdt gdt_desc(%rip)
    leaq pml4(%rip), %rax
    movq %rax, %cr3
    /* reload CS from our GDT */
    leaq 1f(%rip), %rax
    pushq $0x08
    pushq %rax
    lretq
1:  movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq %r15, boot_info_addr(%rip)
    movq %r14, boot_kind(%rip)
    movq %r15, %rdi
    movq %r14, %rsi
    call guest_kernel_main
    /* enter CPL3: SS, RSP, RFLAGS (IOPL=3, IF=0), CS, RIP */
    pushq $0x1b
    leaq user_stack_top(%rip), %rax
    pushq %rax
    pushq $0x3002
    pushq $0x23
    leaq user_entry(%rip), %rax
    pushq %rax
    iretq

user_entry:
    movw $0x1b, %ax
    movw %ax, %ds
    movw %ax, %es
    movq boot_info_addr(%rip), %rdi
    movq boot_kind(%rip), %rsi
    call guest_user_main
    /* it must not return; if it does, report it */
    movl $0xf0000004, %ebx
    movl $0xdead, (%rbx)
2:  jmp 2b

    .section .data
    .align 16
    .globl gdt_desc32
gdt:
    .quad 0                         /* 0x00 null */
    .quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
    .quad 0x00cf92000000ffff        /* 0x10 kernel data */
    .quad 0x00cff2000000ffff        /* 0x18 user data, DPL3 */
    .quad 0x00affa000000ffff        /* 0x20 user code, 64-bit, DPL3 */
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .quad gdt
/* the same GDT for the 32-bit lgdt of the PVH entry */
gdt_desc32:
    .word gdt_end - gdt - 1
    .long gdt

    .globl boot_info_addr, boot_kind
boot_info_addr:
    .quad 0
boot_kind:
    .quad 0

    .align 4096
    .globl pml4
pml4:
    .quad pdpt + (PTE_P | PTE_W | PTE_U)
    .fill 511, 8, 0
pdpt:
    .quad pd0 + (PTE_P | PTE_W | PTE_U)
    .quad pd1 + (PTE_P | PTE_W | PTE_U)
    .quad pd2 + (PTE_P | PTE_W | PTE_U)
    .quad pd3 + (PTE_P | PTE_W | PTE_U)
    .quad pd4 + (PTE_P | PTE_W | PTE_U)
    .quad pd5 + (PTE_P | PTE_W | PTE_U)
    .quad pd6 + (PTE_P | PTE_W | PTE_U)
    .quad pd7 + (PTE_P | PTE_W | PTE_U)
    .fill 504, 8, 0
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
/* 4..8 GiB: where virtio-pmem regions appear */
pd4: PD(0x100000000)
pd5: PD(0x140000000)
pd6: PD(0x180000000)
pd7: PD(0x1c0000000)

    .section .bss
    .align 4096
boot_stack:
    .skip 16384
boot_stack_top:
user_stack:
    .skip 65536
user_stack_top:
