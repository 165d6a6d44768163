/* How a VM container's config.json resources apply: on the host, the
 * container's cgroup holds the monitor and the VMM (so the memory limit
 * covers guest RAM plus the VMM's own overhead, cpu limits the vCPUs, and
 * pause/ps/update/stats act on the whole VM); the guest gets RAM and vCPUs
 * sized to fit inside. Device and pids rules are about the container's own
 * processes, which live in the guest: they are not applied to the host
 * cgroup (a device rule there would forbid the VMM's /dev/kvm). */
#include <json-c/json.h>

#include "common/err.h"
#include "oci/config.h"
#include "vm/vm_internal.h"
#include "vmm/vm.h"

/* Host memory a VM costs beyond its guest RAM: the VMM process, KVM's page
 * tables and the page cache of the image it touches. qemu's own RSS is
 * about 40 MiB (docs/SPEC.md); cocoon's about 1 MiB. */
#define OVERHEAD_COCOON_MIB 16
#define OVERHEAD_QEMU_MIB 64
#define GUEST_MIN_MIB 32
#define GUEST_DEFAULT_MIB 256

/* An integer member of a JSON object path like {"memory":{"limit":N}}. */
static bool json_i64(struct json_object *o, const char *a, const char *b, int64_t *out)
{
    struct json_object *x, *y;
    if (o == NULL || !json_object_object_get_ex(o, a, &x) ||
        !json_object_object_get_ex(x, b, &y) || !json_object_is_type(y, json_type_int))
        return false;
    *out = json_object_get_int64(y);
    return true;
}

int vmc_size(const struct oci_config *cfg, enum vmc_hypervisor hv, unsigned *cpus,
             uint64_t *memory_mib, struct err **err)
{
    struct json_object *res = cfg->linux_.resources;
    int64_t limit, quota, period;
    *memory_mib = GUEST_DEFAULT_MIB;
    if (json_i64(res, "memory", "limit", &limit) && limit > 0) {
        uint64_t mib = (uint64_t)limit >> 20;
        uint64_t over = hv == VMC_HV_QEMU ? OVERHEAD_QEMU_MIB : OVERHEAD_COCOON_MIB;
        if (hv != VMC_HV_SANDBOX && mib < over + GUEST_MIN_MIB)
            return err_input(err,
                             "linux.resources.memory.limit %lld bytes is too small for a VM: "
                             "it must hold %u MiB of guest memory and the VMM's %llu MiB",
                             (long long)limit, GUEST_MIN_MIB, (unsigned long long)over);
        *memory_mib = hv == VMC_HV_SANDBOX ? mib : mib - over;
        if (*memory_mib > 65536)
            *memory_mib = 65536;
    }
    *cpus = 1;
    if (json_i64(res, "cpu", "quota", &quota) && json_i64(res, "cpu", "period", &period) &&
        quota > 0 && period > 0) {
        int64_t n = (quota + period - 1) / period;
        *cpus = n > VM_MAX_CPUS ? VM_MAX_CPUS : (unsigned)n;
    }
    return 0;
}

struct json_object *vmc_host_resources(struct json_object *res)
{
    if (res == NULL)
        return NULL;
    struct json_object *copy = NULL;
    if (json_object_deep_copy(res, &copy, NULL) != 0)
        return NULL;
    json_object_object_del(copy, "devices");
    json_object_object_del(copy, "pids");
    return copy;
}
