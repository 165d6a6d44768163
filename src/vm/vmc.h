/* The VM backend of the runtime: a container whose process runs in its own
 * virtual machine, with cocoon-init as the guest's PID 1.
 *
 * `create` starts a monitor process: it launches the VM (the "hypervisor":
 * cocoon's own VMM, qemu, or — for tests and hosts without KVM — the agent
 * in a namespace sandbox on the host), waits for the agent's HELLO, sends
 * CREATE, and then stays as the container's pid: it relays the caller's
 * stdio to the guest process, serves the other commands over a Unix socket
 * in the state directory (ctl.sock), forwards signals it receives into the
 * guest, and exits with the container's exit status once the VM is down. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "oci/state.h"
#include "runtime/container.h"

struct err;
struct json_object;
struct oci_config;
struct container_state;
struct prepared;
struct oci_process;

/* The marker file of a VM container that is created but not started. */
#define VMC_CREATED STATE_VM_CREATED
/* The monitor's control socket in the state directory. */
#define VMC_CTL_SOCK "ctl.sock"

/* The hypervisors a VM container can run on. */
enum vmc_hypervisor { VMC_HV_COCOON, VMC_HV_QEMU, VMC_HV_SANDBOX };

/* Parse a --hypervisor name (cocoon, qemu, sandbox); -1 if unknown. */
int vmc_hypervisor_parse(const char *name);

/* Whether a container of cfg runs in a VM: `--vm`, the binary called as
 * cocoon-vm, or the annotation run.oci.handler=vm. */
bool vmc_wanted(const struct runtime *rt, const struct oci_config *cfg);

/* linux.resources as they apply to a VM container's host cgroup (which
 * holds its monitor and VMM): a new copy without the rules that belong to
 * the guest's processes (devices, pids); NULL if res is NULL. */
struct json_object *vmc_host_resources(struct json_object *res);

/* `create` on the VM backend, after lifecycle_prepare: fork the monitor
 * and wait until the guest agent has created the process (or failed, then
 * nothing is left running). console_sock: a connected --console-socket for
 * process.terminal, or -1. *monitor gets the container's pid. */
int vmc_spawn(const struct runtime *rt, struct prepared *p, const struct create_opts *o,
              int console_sock, pid_t *monitor, struct err **err);

/* `start`: release the created container's process. */
int vmc_start(int dirfd, const struct container_state *st, struct err **err);

/* `kill`: signal the guest process (all: every process of the guest). */
int vmc_kill(int dirfd, const struct container_state *st, int sig, bool all,
             struct err **err);

/* Stop the VM and wait until the monitor is gone (`delete`). */
int vmc_stop(int dirfd, const struct container_state *st, struct err **err);

/* The agent's EXEC request for process p: {"process": {...}}, plus
 * "attach": {"tools": NAME} for an attach session (attach_tools not NULL). */
char *vmc_process_json(const struct oci_process *p, const char *attach_tools);

/* `exec` into a running VM container. */
struct vmc_exec_opts {
    const char *process_json;   /* the EXEC request (vmc_process_json) */
    bool tty, detach;
    const char *pid_file;       /* gets the pid of the process relaying the guest's */
    const char *console_socket; /* with tty: a host pty's master is sent there */
    unsigned rows, cols;        /* the console size, if set */
};

/* `exec` into a running VM container: this process (or, with detach, a
 * child left behind, whose pid goes to pid_file) relays stdio, signals and
 * window sizes to the guest process and ends with its status; *status gets
 * it (0 with detach). dirfd's lock is released once the process runs. */
int vmc_exec(int dirfd, const struct container_state *st, const struct vmc_exec_opts *o,
             int *status, struct err **err);

/* The directory of the state directory a VM on cocoon's VMM sees through
 * virtio-fs (tag VMC_SHARED_TAG, /run/cocoon/shared in the guest): attach
 * mounts tools there. */
#define VMC_SHARED_DIR "shared"
#define VMC_SHARED_TAG "cocoon-shared"

/* The directory of the state directory holding clones of the bind mounts'
 * sources, which the guest mounts read-write over virtio-fs (tag
 * VMC_VOLUMES_TAG, /run/cocoon/volumes in the guest). */
#define VMC_VOLUMES_DIR "volumes"
#define VMC_VOLUMES_TAG "cocoon-volumes"

/* Unmount and remove what attach left in the shared directory (after the VM
 * is gone, or a killed attach); never fails loudly. */
void vmc_shared_cleanup(int dirfd);

/* Once the VM is gone: unmount and remove what the host lent it (attach
 * tools left by a killed attach, the volumes); never fails loudly. */
void vmc_host_cleanup(int dirfd);

/* The file in a VM container's state directory naming its hypervisor. */
#define VMC_HYPERVISOR_FILE "vm.hypervisor"

struct attach_opts;

/* `cocoon attach` of a VM container: the tools directory is made visible
 * to the agent (mounted into its shared directory) and the agent runs the
 * command with the tools as `/` and the container's root at /var/lib/cntr;
 * this process relays its stdio like `exec`. *status: the command's. */
int vmc_attach(int dirfd, const struct container_state *st, const struct attach_opts *o,
               int *status, struct err **err);

/* `cocoon attach ID`: if ID is a VM container, attach to it (vmc_attach)
 * and return 0 (or -1, *err); 1 if it is not one (the caller goes on). */
int vmc_attach_id(const struct runtime *rt, const struct attach_opts *o, int *status,
                  struct err **err);

/* Connect to guest vsock port `port` through a cocoon VMM's vsock socket
 * `uds` (`CONNECT <port>` / `OK ...`), trying again while the socket is
 * missing or the guest refuses, for up to timeout_ms or until the VMM
 * process vmm (if > 0) is gone. *fd gets the connected stream. */
int vmc_vsock_connect(const char *uds, uint32_t port, unsigned timeout_ms, pid_t vmm, int *fd,
                      struct err **err);
