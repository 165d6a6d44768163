/* libFuzzer harness: bytes as a kernel image (ELF vmlinux, PVH or not, or a
 * bzImage) loaded by the VMM's loader into guarded guest memory. Any
 * header may lie; the loader must refuse cleanly or load inside guest RAM. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/err.h"
#include "fuzz_check.h"
#include "guarded_mem.h"
#include "vmm/vm_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MEM (16u << 20)

static struct vm vm;
static int fd;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    guarded_mem(&vm.mem, MEM);
    fd = memfd_create("fuzz-kernel", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    vm.cfg.kernel = path;
    static char cmdline[] = "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5";
    vm.cmdline = cmdline;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    /* alternate between mapping the kernel's pages and copying them */
    vm.cfg.map_kernel = size & 1;
    vm.entry = vm.boot_arg = 0;
    struct err *e = NULL;
    int r = vm_load_kernel(&vm, &e);
    err_free(&e);
    /* a loaded kernel's entry must be in guest RAM */
    CHECK(r != 0 || guest_mem_ptr(&vm.mem, vm.entry, 1) != NULL);
    /* Fresh RAM for the next input: pages mapped from this input's file
     * would fault once the next input truncates it. */
    if (mmap(vm.mem.host, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
             -1, 0) == MAP_FAILED)
        abort();
    return 0;
}
