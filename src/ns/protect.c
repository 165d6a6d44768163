/* Masked and read-only paths, sysctls (protect.h). */
#include "ns/protect.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "ns/mount_api.h"
#include "oci/config.h"

int ns_protect_mask(int fd, const char *path, struct err **err)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return err_make(err, errno, "masked path `%s`", path);
    if (S_ISLNK(st.st_mode))
        return 0;
    char p[32];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    int r = S_ISDIR(st.st_mode)
                ? mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                        "size=0")
                : mount("/dev/null", p, NULL, MS_BIND, NULL);
    return r < 0 ? err_make(err, errno, "mask `%s`", path) : 0;
}

int ns_protect_readonly(int fd, const char *path, struct err **err)
{
    cleanup_close int tree = sys_open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
                                                       AT_RECURSIVE | AT_EMPTY_PATH);
    if (tree < 0)
        return err_make(err, errno, "readonly path `%s`", path);
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                          MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC};
    if (sys_mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) < 0 ||
        sys_move_mount(tree, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return err_make(err, errno, "readonly path `%s`", path);
    return 0;
}

int ns_sysctl_write(const struct oci_kv *kv, struct err **err)
{
    if (strstr(kv->key, "..") || strchr(kv->key, '/') || kv->key[0] == '.' || !kv->key[0])
        return err_make(err, EINVAL, "config.json: `linux.sysctl`: invalid key `%s`", kv->key);
    char path[512];
    if ((size_t)snprintf(path, sizeof(path), "/proc/sys/%s", kv->key) >= sizeof(path))
        return err_make(err, ENAMETOOLONG, "sysctl `%s`", kv->key);
    for (char *c = path + strlen("/proc/sys/"); *c; c++)
        if (*c == '.')
            *c = '/';
    cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return err_make(err, errno, "sysctl `%s`", kv->key);
    if (write_all(fd, kv->value, strlen(kv->value)) < 0)
        return err_make(err, errno, "sysctl `%s` = `%s`", kv->key, kv->value);
    return 0;
}
