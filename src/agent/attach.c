/* attach inside a VM container (the Cntr idea, guest side): an EXEC whose
 * process runs with the tool set as `/` and the container's root at
 * /var/lib/cntr, the same root attach builds on a host
 * (attach/rootfs.c: attach_rootfs_build). The tools reach the agent in its
 * shared directory: a virtio-fs share in a VM (cocoon.shared=TAG), a
 * directory the host mounts into in the sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mount.h>
#include <unistd.h>

#include "agent/agent.h"
#include "attach/internal.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/mount_api.h"

int agent_attach_enter(int root_fd, int tools_fd, struct err **err)
{
    struct attach_trees tr = {.tools = -1, .ctree = -1, .cwd = NULL};
    tr.tools = mount_clone_tree(tools_fd, "", AT_EMPTY_PATH, MS_PRIVATE);
    if (tr.tools < 0)
        err_make(err, errno, "clone the tools");
    else if ((tr.ctree = mount_clone_tree(root_fd, "", AT_EMPTY_PATH, MS_PRIVATE)) < 0)
        err_make(err, errno, "clone the container's root");
    int r = tr.ctree < 0 ? -1 : attach_rootfs_build(&tr, err);
    attach_trees_close(&tr);
    return r;
}

int agent_attach_tools(const struct agent *a, const char *name, struct err **err)
{
    if (a->shared_fd < 0)
        return err_make(err, ENOENT, "attach: this VM has no shared directory for tools");
    int fd = openat(a->shared_fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return err_make(err, errno, "attach: tools `%s` in the shared directory", name);
    return fd;
}
