/* config.json's mounts for a VM container. The guest mounts file systems
 * itself; what it cannot reach is the host, so every bind's source is
 * cloned (open_tree, with the bind's read-only/nosuid/... flags) into
 * <state>/volumes/m<N>, which the guest sees over virtio-fs (tag
 * cocoon-volumes) and the sandbox by a bind. volumes/ itself is a
 * read-only bind of itself: the guest may write in a writable volume, not
 * next to them. /proc, /sys, /dev, /dev/pts and /dev/shm are the agent's
 * own, as in every guest. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/request.h"
#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/mount_api.h"
#include "oci/config.h"
#include "vm/vm_internal.h"

/* A mount the agent makes anyway, with the guest's own options. */
static bool agent_own(const struct oci_mount *m)
{
    static const char *const own[] = {"/proc", "/sys", "/dev", "/dev/pts", "/dev/shm"};
    if (m->bind)
        return false;
    size_t n = strlen(m->destination);
    while (n > 1 && m->destination[n - 1] == '/')
        n--;
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (strlen(own[i]) == n && strncmp(m->destination, own[i], n) == 0)
            return true;
    return false;
}

static struct json_object *mount_json(const struct oci_mount *m, const char *source)
{
    struct json_object *o = json_object_new_object(), *opts = json_object_new_array();
    json_object_object_add(o, "destination", json_object_new_string(m->destination));
    json_object_object_add(o, "type", json_object_new_string(m->bind ? "bind"
                                                             : m->type ? m->type : "tmpfs"));
    if (source)
        json_object_object_add(o, "source", json_object_new_string(source));
    for (char **p = m->options; p && *p; p++)
        json_object_array_add(opts, json_object_new_string(*p));
    json_object_object_add(o, "options", opts);
    return o;
}

/* The bind's source (absolute, or relative to the bundle), opened. */
static int open_source(const struct oci_mount *m, const char *bundle, struct stat *st,
                       struct err **err)
{
    if (m->source == NULL || m->source[0] == '\0')
        return err_input(err, "mount on `%s`: a bind needs a source", m->destination);
    cleanup_free char *src = m->source[0] == '/' ? xstrdup(m->source)
                                                 : xasprintf("%s/%s", bundle, m->source);
    int fd = open(src, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return err_make(err, errno, "mount on `%s`: source `%s`", m->destination, m->source);
    if (fstat(fd, st) < 0 || (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode))) {
        close(fd);
        return err_input(err, "mount on `%s`: source `%s` is neither a directory nor a file",
                         m->destination, m->source);
    }
    return fd;
}

/* Pass 1: a mount point volumes/m<i> for bind i. */
static int make_point(int vfd, const char *name, const struct stat *st, struct err **err)
{
    int r = S_ISDIR(st->st_mode) ? mkdirat(vfd, name, 0700) : 0;
    if (!S_ISDIR(st->st_mode)) {
        int f = openat(vfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        r = f < 0 ? -1 : close(f);
    }
    return r < 0 ? err_make(err, errno, "create " VMC_VOLUMES_DIR "/%s", name) : 0;
}

/* Pass 2: the clone of the source, with the bind's flags, on its point. */
static int place(int vfd, const char *name, int src, const struct oci_mount *m,
                 struct err **err)
{
    unsigned rec = m->recursive ? AT_RECURSIVE : 0;
    cleanup_close int tree =
        sys_open_tree(src, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | rec);
    if (tree < 0)
        return err_make(err, errno, "clone `%s`", m->source);
    struct mount_attr attr = mount_attr_from_ms(m->flags, m->clear);
    attr.propagation = MS_PRIVATE; /* nothing done to it reaches the source's peers */
    if (sys_mount_setattr(tree, "", AT_EMPTY_PATH | rec, &attr) < 0)
        return err_make(err, errno, "set the options of `%s`", m->source);
    if (sys_move_mount(tree, "", vfd, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return err_make(err, errno, "mount `%s` at " VMC_VOLUMES_DIR "/%s", m->source, name);
    return 0;
}

int vmc_volumes_prepare(int dirfd, const struct oci_config *cfg, const char *bundle,
                        enum vmc_hypervisor hv, struct json_object **mounts, struct err **err)
{
    *mounts = NULL;
    size_t nbinds = 0;
    for (size_t i = 0; i < cfg->n_mounts; i++)
        nbinds += cfg->mounts[i].bind;
    if (cfg->n_mounts > AGENT_MOUNTS_MAX)
        return err_input(err, "a VM container takes at most %d mounts", AGENT_MOUNTS_MAX);
    *mounts = json_object_new_array();
    cleanup_free int *src = xcalloc(cfg->n_mounts + 1, sizeof(int));
    for (size_t i = 0; i < cfg->n_mounts; i++)
        src[i] = -1;
    int vfd = -1, r = -1;
    if (nbinds) {
        if (mkdirat(dirfd, VMC_VOLUMES_DIR, 0700) < 0) {
            err_make(err, errno, "create " VMC_VOLUMES_DIR " in the state directory");
            goto out;
        }
        vfd = openat(dirfd, VMC_VOLUMES_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (vfd < 0) {
            err_make(err, errno, "open " VMC_VOLUMES_DIR);
            goto out;
        }
    }
    char name[32];
    for (size_t i = 0; i < cfg->n_mounts; i++) {
        const struct oci_mount *m = &cfg->mounts[i];
        if (agent_own(m))
            continue;
        if (!m->bind) {
            json_object_array_add(*mounts, mount_json(m, m->source));
            continue;
        }
        struct stat st;
        src[i] = open_source(m, bundle, &st, err);
        snprintf(name, sizeof(name), "m%zu", i);
        if (src[i] < 0 || make_point(vfd, name, &st, err) < 0)
            goto out;
        json_object_array_add(*mounts, mount_json(m, name));
    }
    if (nbinds) {
        /* volumes/ read-only, then the clones on their points in it. */
        cleanup_close int self = sys_open_tree(vfd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
                                                            AT_EMPTY_PATH);
        struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                            MOUNT_ATTR_NODEV,
                                .propagation = MS_PRIVATE};
        if (self < 0 || sys_mount_setattr(self, "", AT_EMPTY_PATH, &ro) < 0 ||
            sys_move_mount(self, "", dirfd, VMC_VOLUMES_DIR, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
            err_make(err, errno, "make " VMC_VOLUMES_DIR " a read-only mount");
            goto out;
        }
        close(vfd); /* the directory under the new mount */
        vfd = openat(dirfd, VMC_VOLUMES_DIR, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (vfd < 0) {
            err_make(err, errno, "open " VMC_VOLUMES_DIR);
            goto out;
        }
        for (size_t i = 0; i < cfg->n_mounts; i++) {
            if (src[i] < 0)
                continue;
            snprintf(name, sizeof(name), "m%zu", i);
            if (place(vfd, name, src[i], &cfg->mounts[i], err) < 0) {
                err_wrap(err, "mount on `%s`", cfg->mounts[i].destination);
                goto out;
            }
        }
    }
    r = 0;
out:
    for (size_t i = 0; i < cfg->n_mounts; i++)
        if (src[i] >= 0)
            close(src[i]);
    if (vfd >= 0)
        close(vfd);
    if (r < 0) {
        json_object_put(*mounts);
        *mounts = NULL;
        vmc_volumes_cleanup(dirfd);
    }
    return r;
}

void vmc_volumes_cleanup(int dirfd)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d/" VMC_VOLUMES_DIR, dirfd);
    /* The read-only bind of volumes/ takes the clones under it along. */
    for (int i = 0; i < 4 && umount2(p, MNT_DETACH | UMOUNT_NOFOLLOW) == 0; i++)
        ;
    vmc_subdir_clear(dirfd, VMC_VOLUMES_DIR, "m");
    unlinkat(dirfd, VMC_VOLUMES_DIR, AT_REMOVEDIR);
}
