/* Guest memory for fuzz harnesses: a region with an inaccessible page on
 * each side, so that any host access outside guest RAM crashes at once
 * instead of reading a neighbour mapping (mmap'd memory has no ASan
 * redzones). */
#pragma once
#include <stdlib.h>
#include <sys/mman.h>

#include "vmm/guest_mem.h"

static inline void guarded_mem(struct guest_mem *gm, uint64_t size)
{
    uint8_t *p = mmap(NULL, size + 2 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p + 4096, size, PROT_READ | PROT_WRITE) < 0)
        abort();
    gm->host = p + 4096;
    gm->size = size;
    gm->memfd = -1;
}
