/* config.json's linux.maskedPaths, linux.readonlyPaths and linux.sysctl in
 * the container root, after its mounts and before root.readonly, as a
 * namespace container gets them (ns/protect.h). Paths are resolved in the
 * untrusted root without leaving it, their last component not followed. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/request.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/path.h"
#include "ns/protect.h"
#include "oci/config.h"

/* Open `path` in the root (O_PATH, the last component not followed):
 * an fd, 0 with *fd -1 when it does not exist, or -1 with *err. */
static int open_in_root(int rootfd, const char *path, const char *label, int *fd,
                        struct err **err)
{
    *fd = -1;
    cleanup_free char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    const char *leaf = slash + 1;
    *slash = '\0';
    if (leaf[0] == '\0' || strcmp(leaf, ".") == 0 || strcmp(leaf, "..") == 0)
        return err_input(err, "%s `%s`: must end in a file name", label, path);
    struct err *e = NULL;
    cleanup_close int dfd = path_resolve_in_root(rootfd, dir[0] ? dir : "/", PATH_NO_CREATE,
                                                 label, &e);
    if (dfd < 0) {
        bool missing = e && (e->code == ENOENT || e->code == ENOTDIR);
        if (missing) {
            err_free(&e);
            return 0;
        }
        *err = e;
        return -1;
    }
    *fd = openat(dfd, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (*fd < 0 && errno != ENOENT)
        return err_make(err, errno, "%s `%s`", label, path);
    return 0;
}

/* The sysctls of the namespaces a host sandbox has of its own (IPC, UTS,
 * network: a network namespace other than the first shows only its own
 * net.* entries), the only ones it may set: the rest are the host's. */
static bool sandbox_sysctl(const char *key)
{
    static const char *const ipc_uts[] = {
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
        "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
        "kernel.hostname", "kernel.domainname",
    };
    if (strncmp(key, "fs.mqueue.", strlen("fs.mqueue.")) == 0 ||
        strncmp(key, "net.", strlen("net.")) == 0)
        return true;
    for (size_t i = 0; i < sizeof(ipc_uts) / sizeof(ipc_uts[0]); i++)
        if (strcmp(key, ipc_uts[i]) == 0)
            return true;
    return false;
}

int agent_root_protect(struct agent *a, const struct agent_request *rq, struct err **err)
{
    for (size_t i = 0; i < rq->n_sysctl; i++) {
        const struct oci_kv *kv = &rq->sysctl[i];
        if (!a->vm && !sandbox_sysctl(kv->key))
            return err_make(err, EPERM, "sysctl `%s`: a host sandbox shares the host's kernel; "
                                        "only IPC, UTS and network sysctls are its own", kv->key);
        if (ns_sysctl_write(kv, err) < 0)
            return -1;
    }
    for (int ro = 0; ro < 2; ro++)
        for (char **p = ro ? rq->readonly_paths : rq->masked_paths; p && *p; p++) {
            int fd;
            if (open_in_root(a->root_fd, *p, ro ? "readonly path" : "masked path", &fd, err) < 0)
                return -1;
            if (fd < 0)
                continue;
            int r = ro ? ns_protect_readonly(fd, *p, err) : ns_protect_mask(fd, *p, err);
            close(fd);
            if (r < 0)
                return -1;
        }
    return 0;
}
