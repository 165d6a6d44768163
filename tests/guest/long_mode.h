/* The 32-bit half of turning on long mode, shared by the PVH entry and the
 * AP trampoline: PAE, the guest's identity page tables (pml4, start64.S),
 * EFER.LME, then paging (and protection) on. A far jump to a 64-bit code
 * segment must follow. Clobbers eax, ecx, edx. */
#define ENTER_LONG_MODE          \
    movl %cr4, %eax;             \
    orl $0x20, %eax;             \
    movl %eax, %cr4;             \
    movl $pml4, %eax;            \
    movl %eax, %cr3;             \
    movl $0xC0000080, %ecx;      \
    rdmsr;                       \
    orl $0x100, %eax;            \
    wrmsr;                       \
    movl %cr0, %eax;             \
    orl $0x80000001, %eax;       \
    movl %eax, %cr0
