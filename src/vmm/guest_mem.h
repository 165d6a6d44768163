/* Guest memory: one region from guest-physical 0, backed by a memfd (so a
 * snapshot can later map it MAP_PRIVATE), and the single bounds- and
 * overflow-checked translation every guest-physical access goes through. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct err;

/* Guest-physical [start, end) that is not guest RAM (vhost-user: between
 * the frontend's regions); mapped PROT_NONE, refused by guest_mem_ptr. */
struct guest_mem_hole {
    uint64_t start, end;
};

struct guest_mem {
    uint8_t *host;  /* mapping of guest-physical [0, size) */
    uint64_t size;
    int memfd;
    const struct guest_mem_hole *holes;  /* none on cocoon's VMM */
    unsigned n_holes;
};

struct guest_mem_opts {
    uint64_t size;      /* bytes, a multiple of 2 MiB */
    bool hugepages;     /* back with 2 MiB pages (MFD_HUGETLB) */
    bool mergeable;     /* MADV_MERGEABLE: offer the pages to KSM */
};

/* Allocate guest memory. */
int guest_mem_create(const struct guest_mem_opts *o, struct guest_mem *gm, struct err **err);

/* Host address of guest-physical [gpa, gpa+len), or NULL if any of it is
 * outside guest RAM or in a hole (or the sum overflows). */
void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

/* Map `len` bytes of file fd at `offset` over guest-physical gpa with
 * MAP_PRIVATE|MAP_FIXED: the pages come from the page cache, shared by
 * every VM that maps the same file, copied only if the guest writes. */
int guest_mem_map_file(struct guest_mem *gm, uint64_t gpa, int fd, uint64_t offset, uint64_t len,
                       struct err **err);

/* Release guest memory. */
void guest_mem_destroy(struct guest_mem *gm);
