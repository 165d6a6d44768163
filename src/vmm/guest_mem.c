#include "vmm/guest_mem.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/err.h"

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

int guest_mem_create(const struct guest_mem_opts *o, struct guest_mem *gm, struct err **err)
{
    *gm = (struct guest_mem){.memfd = -1};
    if (o->size == 0 || o->size % (2u << 20))
        return err_input(err, "guest memory must be a non-zero multiple of 2 MiB");
    unsigned flags = MFD_CLOEXEC | (o->hugepages ? MFD_HUGETLB : 0);
    int fd = memfd_create("cocoon-guest-ram", flags);
    if (fd < 0)
        return err_make(err, errno, "memfd_create guest memory%s",
                        o->hugepages ? " (hugepages)" : "");
    if (ftruncate(fd, (off_t)o->size) < 0) {
        int e = errno;
        close(fd);
        return err_make(err, e, "size guest memory to %llu MiB",
                        (unsigned long long)(o->size >> 20));
    }
    void *p = mmap(NULL, o->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        return err_make(err, e, "map guest memory");
    }
    if (o->mergeable && madvise(p, o->size, MADV_MERGEABLE) < 0) {
        int e = errno;
        munmap(p, o->size);
        close(fd);
        return err_make(err, e, "madvise(MADV_MERGEABLE) on guest memory");
    }
    gm->host = p;
    gm->size = o->size;
    gm->memfd = fd;
    return 0;
}

void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
    if (gpa > gm->size || len > gm->size - gpa)
        return NULL;
    for (unsigned i = 0; i < gm->n_holes; i++)
        if (gpa < gm->holes[i].end && gpa + len > gm->holes[i].start)
            return NULL;
    return gm->host + gpa;
}

int guest_mem_map_file(struct guest_mem *gm, uint64_t gpa, int fd, uint64_t offset, uint64_t len,
                       struct err **err)
{
    long page = sysconf(_SC_PAGESIZE);
    if (gpa % (uint64_t)page || offset % (uint64_t)page || guest_mem_ptr(gm, gpa, len) == NULL)
        return err_make(err, EINVAL, "map file into guest memory at %#llx", (unsigned long long)gpa);
    void *p = mmap(gm->host + gpa, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
                   (off_t)offset);
    if (p == MAP_FAILED)
        return err_make(err, errno, "map file into guest memory at %#llx", (unsigned long long)gpa);
    return 0;
}

void guest_mem_destroy(struct guest_mem *gm)
{
    if (gm->host)
        munmap(gm->host, gm->size);
    if (gm->memfd >= 0)
        close(gm->memfd);
    gm->host = NULL;
    gm->memfd = -1;
}
