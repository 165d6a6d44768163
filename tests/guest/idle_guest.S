/* A guest that reads one byte of every page of its own 8 MiB image at CPL0
 * (so the host maps them, as a booting kernel would), then halts with
 * interrupts off: the vCPU sleeps in KVM and costs no CPU. `make bench`
 * keeps many of these alive to measure per-VM memory and how much of the
 * kernel image VMs share through the page cache. */
    .section .note.Xen, "a"
    .align 4
    .long 4, 4, 18
    .asciz "Xen"
    .long idle_start

    .section .text.boot, "ax"
    .code32
    .globl idle_start
idle_start:
    cli
    movl $image_start, %esi
1:  movb (%esi), %al
    addl $4096, %esi
    cmpl $image_end, %esi
    jb 1b
    /* tell the VMM the image is in (a boot marker on the debug port) */
    movw $0x0cc0, %dx
    movb $1, %al
    outb %al, %dx
2:  hlt
    jmp 2b

    .section .data
    .align 4096
image_start:
    .fill 8 * 1024 * 1024, 1, 0x5a
image_end:
