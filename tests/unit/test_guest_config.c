/* What a VM container's guest is given on cocoon's VMM (src/vm/guest.c):
 * the root file system mode chosen from config.json, the devices and the
 * kernel command line that the agent reads. A real guest cannot boot here
 * (guest kernel mode is emulated), so this is where the VMM-side wiring
 * of a virtio-fs or erofs root is checked. */
#include "helpers.h"

#include "oci/config.h"
#include "vm/vm_internal.h"
#include "vmm/vm.h"

static struct oci_config *config_with(const char *annotations, bool readonly)
{
    char doc[512];
    snprintf(doc, sizeof(doc),
             "{\"root\":{\"path\":\"rootfs\",\"readonly\":%s},\"process\":{\"args\":[\"/x\"]}%s%s%s}",
             readonly ? "true" : "false", annotations ? ",\"annotations\":{" : "",
             annotations ? annotations : "", annotations ? "}" : "");
    struct oci_config *c = NULL;
    struct err *e = NULL;
    if (oci_config_parse(doc, strlen(doc), "config.json", &c, &e) < 0)
        fail_msg("config: %s", e->msg);
    return c;
}

static int choose(const char *annotations, enum vmc_hypervisor hv, enum vmc_rootfs *mode,
                  struct err **e)
{
    struct oci_config *c = config_with(annotations, false);
    int r = vmc_rootfs_choose(c, hv, mode, e);
    oci_config_free(c);
    return r;
}

/* No annotation: the bundle's directory over virtio-fs, on every
 * hypervisor; the annotation picks the image instead. */
static void test_rootfs_choice(void **state)
{
    (void)state;
    enum vmc_rootfs m = -1;
    struct err *e = NULL;
    assert_int_equal(choose(NULL, VMC_HV_COCOON, &m, &e), 0);
    assert_int_equal(m, VMC_ROOTFS_VIRTIOFS);
    assert_int_equal(choose(NULL, VMC_HV_QEMU, &m, &e), 0);
    assert_int_equal(m, VMC_ROOTFS_VIRTIOFS);
    assert_int_equal(choose("\"io.cocoon.vm.rootfs\":\"erofs\"", VMC_HV_QEMU, &m, &e), 0);
    assert_int_equal(m, VMC_ROOTFS_EROFS);
    assert_int_equal(choose("\"io.cocoon.vm.rootfs\":\"erofs\"", VMC_HV_COCOON, &m, &e), 0);
    assert_int_equal(m, VMC_ROOTFS_EROFS);
    assert_int_equal(choose("\"io.cocoon.vm.rootfs\":\"virtiofs\"", VMC_HV_SANDBOX, &m, &e), 0);
    assert_int_equal(m, VMC_ROOTFS_VIRTIOFS);
    assert_null(e);

    assert_int_equal(choose("\"io.cocoon.vm.rootfs\":\"ext4\"", VMC_HV_COCOON, &m, &e), -1);
    assert_err_contains(e, "io.cocoon.vm.rootfs=`ext4`: not virtiofs or erofs");
    err_free(&e);
}

static const struct vm_device *find_dev(const struct vm_config *cfg, enum vm_device_kind k,
                                        const char *tag)
{
    for (unsigned i = 0; i < cfg->n_devices; i++)
        if (cfg->devices[i].kind == k && (tag == NULL || strcmp(cfg->devices[i].fs.tag, tag) == 0))
            return &cfg->devices[i];
    return NULL;
}

static void build(struct vmc_launch *l, const char *image, struct vm_config *cfg, char **cmdline)
{
    struct vmc_cocoon_guest g = {
        .launch = l, .kernel = "/k/vmlinux", .initrd = "/k/initrd", .image = image,
        .shared_dir = "/state/c/shared", .volumes_dir = "/state/c/volumes",
    };
    struct err *e = NULL;
    if (vmc_cocoon_config(&g, cfg, cmdline, &e) < 0)
        fail_msg("vmc_cocoon_config: %s", e->msg);
    assert_ptr_equal(cfg->cmdline, *cmdline);
}

/* A virtio-fs root: the bundle's rootfs served writable under the root tag
 * (root.readonly is the guest mount's: the agent makes mount points
 * first), named on the command line without an overlay. */
static void test_virtiofs_root(void **state)
{
    (void)state;
    struct vmc_launch l = {
        .hv = VMC_HV_COCOON, .rootfs = "/bundle/rootfs", .rootfs_mode = VMC_ROOTFS_VIRTIOFS,
        .cpus = 2, .memory_mib = 128, .log_fd = -1,
    };
    struct vm_config cfg;
    char *cmdline = NULL;
    build(&l, NULL, &cfg, &cmdline);
    const struct vm_device *root = find_dev(&cfg, VM_DEV_FS, VMC_ROOT_TAG);
    assert_non_null(root);
    assert_string_equal(root->fs.dir, "/bundle/rootfs");
    assert_false(root->fs.fs.readonly);
    assert_null(find_dev(&cfg, VM_DEV_PMEM, NULL));
    assert_non_null(strstr(cmdline, " cocoon.root=" VMC_ROOT_TAG " cocoon.rootfstype=virtiofs"));
    assert_null(strstr(cmdline, "cocoon.overlay"));
    assert_non_null(strstr(cmdline, "cocoon.channel=vsock:1024"));
    assert_null(strstr(cmdline, "cocoon.volumes="));
    assert_null(find_dev(&cfg, VM_DEV_FS, VMC_VOLUMES_TAG));
    assert_int_equal(cfg.cpus, 2);
    assert_int_equal(cfg.memory_mib, 128);
    free(cmdline);

    l.volumes = true;
    build(&l, NULL, &cfg, &cmdline);
    const struct vm_device *vol = find_dev(&cfg, VM_DEV_FS, VMC_VOLUMES_TAG);
    assert_non_null(vol);
    assert_string_equal(vol->fs.dir, "/state/c/volumes");
    assert_false(vol->fs.fs.readonly);
    assert_true(find_dev(&cfg, VM_DEV_FS, VMC_SHARED_TAG)->fs.fs.readonly);
    assert_non_null(strstr(cmdline, " cocoon.volumes=" VMC_VOLUMES_TAG));
    free(cmdline);
}

/* An erofs root: the image on virtio-pmem, mounted with DAX under a tmpfs
 * overlay; no device serves the bundle's directory. */
static void test_erofs_root(void **state)
{
    (void)state;
    struct vmc_launch l = {
        .hv = VMC_HV_COCOON, .rootfs = "/bundle/rootfs", .rootfs_mode = VMC_ROOTFS_EROFS,
        .cpus = 1, .memory_mib = 64, .log_fd = -1,
    };
    struct vm_config cfg;
    char *cmdline = NULL;
    build(&l, "/state/c/rootfs.erofs", &cfg, &cmdline);
    const struct vm_device *pmem = find_dev(&cfg, VM_DEV_PMEM, NULL);
    assert_non_null(pmem);
    assert_string_equal(pmem->pmem.path, "/state/c/rootfs.erofs");
    assert_false(pmem->pmem.shared); /* MAP_PRIVATE: the image's pages are shared by VMs */
    assert_null(find_dev(&cfg, VM_DEV_FS, VMC_ROOT_TAG));
    assert_non_null(strstr(cmdline, " cocoon.root=/dev/pmem0 cocoon.rootfstype=erofs "
                                    "cocoon.rootflags=dax cocoon.overlay=1"));
    free(cmdline);

    struct err *e = NULL;
    struct vmc_cocoon_guest g = {.launch = &l};
    assert_int_equal(vmc_cocoon_config(&g, &cfg, &cmdline, &e), -1);
    assert_err_contains(e, "needs its image");
    err_free(&e);
}

static int root_dax(const char *annotations, enum vmc_hypervisor hv, enum vmc_rootfs mode,
                    uint64_t *mib, struct err **e)
{
    struct oci_config *c = config_with(annotations, false);
    int r = vmc_root_dax(c, hv, mode, mib, e);
    oci_config_free(c);
    return r;
}

/* io.cocoon.vm.virtiofs-dax: a DAX window for a virtio-fs root on cocoon's
 * VMM, of an even number of MiB; refused elsewhere, with the reason. */
static void test_virtiofs_dax_annotation(void **state)
{
    (void)state;
    uint64_t mib = 7;
    struct err *e = NULL;
    assert_int_equal(root_dax(NULL, VMC_HV_COCOON, VMC_ROOTFS_VIRTIOFS, &mib, &e), 0);
    assert_int_equal(mib, 0);
    assert_int_equal(root_dax("\"io.cocoon.vm.virtiofs-dax\":\"256\"", VMC_HV_COCOON,
                              VMC_ROOTFS_VIRTIOFS, &mib, &e), 0);
    assert_int_equal(mib, 256);
    assert_null(e);
    static const char *const bad[] = {"0", "3", "-2", "2x", "", "65538", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char a[96];
        snprintf(a, sizeof(a), "\"io.cocoon.vm.virtiofs-dax\":\"%s\"", bad[i]);
        assert_int_equal(root_dax(a, VMC_HV_COCOON, VMC_ROOTFS_VIRTIOFS, &mib, &e), -1);
        assert_err_contains(e, "want the window's size in MiB, even, 2..65536");
        err_free(&e);
    }
    assert_int_equal(root_dax("\"io.cocoon.vm.virtiofs-dax\":\"64\"", VMC_HV_COCOON,
                              VMC_ROOTFS_EROFS, &mib, &e), -1);
    assert_err_contains(e, "the root is not on virtio-fs");
    err_free(&e);
    assert_int_equal(root_dax("\"io.cocoon.vm.virtiofs-dax\":\"64\"", VMC_HV_QEMU,
                              VMC_ROOTFS_VIRTIOFS, &mib, &e), -1);
    assert_err_contains(e, "only cocoon's own VMM has a virtio-fs DAX window");
    err_free(&e);
}

/* With a window: the root's device has it, the guest mounts with dax=always;
 * the other shares have none. */
static void test_virtiofs_root_with_dax(void **state)
{
    (void)state;
    struct vmc_launch l = {
        .hv = VMC_HV_COCOON, .rootfs = "/bundle/rootfs", .rootfs_mode = VMC_ROOTFS_VIRTIOFS,
        .root_dax_mib = 128, .cpus = 1, .memory_mib = 128, .log_fd = -1, .volumes = true,
    };
    struct vm_config cfg;
    char *cmdline = NULL;
    build(&l, NULL, &cfg, &cmdline);
    assert_int_equal(find_dev(&cfg, VM_DEV_FS, VMC_ROOT_TAG)->fs.dax_size, 128ull << 20);
    assert_int_equal(find_dev(&cfg, VM_DEV_FS, VMC_SHARED_TAG)->fs.dax_size, 0);
    assert_int_equal(find_dev(&cfg, VM_DEV_FS, VMC_VOLUMES_TAG)->fs.dax_size, 0);
    assert_non_null(strstr(cmdline, " cocoon.root=" VMC_ROOT_TAG " cocoon.rootfstype=virtiofs "
                                    "cocoon.rootflags=dax=always"));
    free(cmdline);
    l.root_dax_mib = 0;
    build(&l, NULL, &cfg, &cmdline);
    assert_int_equal(find_dev(&cfg, VM_DEV_FS, VMC_ROOT_TAG)->fs.dax_size, 0);
    assert_null(strstr(cmdline, "rootflags"));
    free(cmdline);
}

/* The qemu line: an erofs image on virtio-blk, no DAX, a triple-fault reset. */
static void test_qemu_cmdline(void **state)
{
    (void)state;
    struct vmc_guest_root r = {.mode = VMC_ROOTFS_EROFS, .source = "/dev/vda"};
    char *s = vmc_guest_cmdline("/dev/hvc0", &r, 't');
    assert_string_equal(s, "console=ttyS0 reboot=t panic=-1 quiet cocoon.channel=/dev/hvc0 "
                           "cocoon.root=/dev/vda cocoon.rootfstype=erofs cocoon.overlay=1");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rootfs_choice),
        cmocka_unit_test(test_virtiofs_root),
        cmocka_unit_test(test_erofs_root),
        cmocka_unit_test(test_virtiofs_dax_annotation),
        cmocka_unit_test(test_virtiofs_root_with_dax),
        cmocka_unit_test(test_qemu_cmdline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
