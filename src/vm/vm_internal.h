/* Internals of the VM backend shared by its files (not for the CLI). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vm/vmc.h"

struct err;
struct json_object;
struct oci_config;
struct vm_config;

/* Find cocoon-init: $COCOON_AGENT, next to the cocoon binary, or
 * /usr/libexec/cocoon. *out is a new string. */
int vmc_find_agent(char **out, struct err **err);

/* Find the guest kernel (vmlinux, else bzImage): $COCOON_KERNEL, the
 * build tree's kernel/ beside src/, or /usr/share/cocoon. */
int vmc_find_kernel(char **out, struct err **err);

/* An initramfs holding cocoon-init as /init, cached under the state root
 * (one per agent binary, shared by every VM). *out is its path. */
int vmc_initramfs(int rootfd, const char *root, const char *agent, char **out,
                  struct err **err);

/* Write a newc cpio archive with /init = agent and the mount points the
 * agent needs to fd. */
int vmc_write_cpio(int fd, const char *agent, struct err **err);

/* How the container root reaches a real guest (src/vm/guest.c). */
enum vmc_rootfs { VMC_ROOTFS_VIRTIOFS, VMC_ROOTFS_EROFS };

/* The annotation that chooses it: virtiofs or erofs. */
#define VMC_ROOTFS_ANNOTATION "io.cocoon.vm.rootfs"
/* The size in MiB of a DAX window for a virtio-fs root (cocoon's VMM). */
#define VMC_DAX_ANNOTATION "io.cocoon.vm.virtiofs-dax"
/* The virtio-fs tag of the bundle's rootfs on cocoon's VMM. */
#define VMC_ROOT_TAG "cocoon-root"
/* The agent's vsock on cocoon's VMM: the guest's CID, and the device's
 * Unix socket, relative to the state directory (the VMM runs there, so the
 * path is short whatever the state directory's length). */
#define VMC_GUEST_CID 3
#define VMC_VSOCK_SOCK "vsock.sock"

/* The root mode from config.json's annotation VMC_ROOTFS_ANNOTATION
 * (default: virtiofs); <0 (*err) if the value is unknown. */
int vmc_rootfs_choose(const struct oci_config *cfg, enum vmc_hypervisor hv, enum vmc_rootfs *out,
                      struct err **err);

/* The DAX window of a virtio-fs root, in MiB, from VMC_DAX_ANNOTATION (0
 * without it); <0 (*err) for a size that is not an even 2..65536, for an
 * erofs root, or on a hypervisor other than cocoon's VMM. */
int vmc_root_dax(const struct oci_config *cfg, enum vmc_hypervisor hv, enum vmc_rootfs mode,
                 uint64_t *mib, struct err **err);

/* The root as the kernel command line names it. */
struct vmc_guest_root {
    enum vmc_rootfs mode;
    const char *source;   /* a /dev node (erofs) or a virtio-fs tag */
    bool dax;             /* mount it with DAX: erofs on virtio-pmem, or virtio-fs
                           * through the device's DAX window */
};

/* The kernel command line of a cocoon guest (a new string): the agent's
 * channel, the root, and how the kernel resets (`reboot`: k for i8042 on
 * cocoon's VMM, t for a triple fault on qemu microvm). */
char *vmc_guest_cmdline(const char *channel, const struct vmc_guest_root *r, char reboot);

/* What the monitor needs to start a VM. */
struct vmc_launch {
    enum vmc_hypervisor hv;
    const char *state_dir;   /* absolute path of the container's state directory */
    const char *root;        /* the state root (for caches) */
    const char *rootfs;      /* the bundle's rootfs directory */
    const char *hostname;
    bool volumes;            /* the state directory has volumes/ for the guest */
    enum vmc_rootfs rootfs_mode;
    uint64_t root_dax_mib;   /* a virtio-fs root's DAX window (cocoon's VMM), 0: none */
    unsigned cpus;
    uint64_t memory_mib;
    int log_fd;              /* the hypervisor's and guest console's output */
    unsigned timeout_ms;     /* how long the agent may take to be reachable */
};

/* A guest on cocoon's VMM: the launch, its boot files (image: the erofs
 * root's, else NULL) and the state directory's shares. */
struct vmc_cocoon_guest {
    const struct vmc_launch *launch;
    const char *kernel, *initrd, *image;
    const char *shared_dir, *volumes_dir;
};

/* Fill *cfg (devices, boot files, sizes) and *cmdline (a new string that
 * cfg->cmdline points to) for cocoon's VMM. */
int vmc_cocoon_config(const struct vmc_cocoon_guest *g, struct vm_config *cfg, char **cmdline,
                      struct err **err);

/* Size the VM from config.json: guest memory is the memory limit minus the
 * hypervisor's own overhead (default 256 MiB), vCPUs the cpu quota/period
 * rounded up (default 1); <0 (*err) if the limit cannot hold a VM. */
int vmc_size(const struct oci_config *cfg, enum vmc_hypervisor hv, unsigned *cpus,
             uint64_t *memory_mib, struct err **err);

/* config.json's mounts for the guest: *mounts gets the CREATE request's
 * "mounts" array, and each bind's source is cloned into the state
 * directory's volumes/ (VMC_VOLUMES_DIR) for the guest's volume share.
 * On failure nothing is left mounted. */
int vmc_volumes_prepare(int dirfd, const struct oci_config *cfg, const char *bundle,
                        enum vmc_hypervisor hv, struct json_object **mounts, struct err **err);

/* Unmount and remove the entries of the state directory's `sub` whose
 * names start with `prefix` (what the host lent a VM); never fails loudly. */
void vmc_subdir_clear(int dirfd, const char *sub, const char *prefix);

/* Unmount and remove volumes/ (after the VM is gone); never fails loudly. */
void vmc_volumes_cleanup(int dirfd);

/* A started VM: the hypervisor process, our end of the agent channel (a
 * connected stream socket: a socketpair for qemu's virtconsole and the
 * sandbox, vsock for cocoon's VMM), and the helper processes it needs
 * (qemu's virtio-fs backends), which the monitor ends after it. */
#define VMC_HELPERS_MAX 2
struct vmc_started {
    pid_t child;
    int channel;
    pid_t helpers[VMC_HELPERS_MAX];
    unsigned n_helpers;
};

/* Start the VM into *s. */
int vmc_launch(const struct vmc_launch *l, struct vmc_started *s, struct err **err);

/* The monitor: serve the container until its VM is down; returns the exit
 * status for the monitor process. ready_fd gets one status line for
 * `create` (then is closed). */
struct vmc_monitor_opts {
    const struct vmc_launch *launch;
    const char *create_json;  /* the CREATE request */
    int ready_fd;
    int dirfd;                /* the state directory */
    int console_fd;           /* a pty slave for process.terminal, or -1: stdio */
    unsigned hello_timeout_ms;
};
int vmc_monitor(const struct vmc_monitor_opts *o);

/* Connect to a container's monitor (ctl.sock in dirfd). */
int vmc_ctl_connect(int dirfd, struct err **err);

/* Send one request on the control connection and wait for its REPLY;
 * *pid gets the reply's pid. */
int vmc_ctl_call(int fd, uint16_t type, uint32_t proc, const void *payload, size_t len,
                 uint32_t *pid, struct err **err);

/* A host pty for a VM container's terminal: its master goes to the
 * --console-socket, the slave (raw: the guest's own pty does the line
 * discipline; rows x cols if both are set) is returned for the relay. */
int vmc_console_pty(int console_sock, unsigned rows, unsigned cols, struct err **err);
