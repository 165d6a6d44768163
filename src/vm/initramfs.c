/* The guest's initramfs: a newc cpio archive with cocoon-init as /init and
 * the directories it mounts on. Built once per agent binary and cached
 * under the state root, so every VM maps the same file. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "vm/vm_internal.h"

/* Bytes of padding after n to the next multiple of 4 (newc alignment). */
static size_t pad4(size_t n) { return (4 - (n & 3)) & 3; }

/* One archive member: the header, the name, and (for files) the data. */
static int put_entry(int fd, unsigned ino, const char *name, mode_t mode, unsigned rmaj,
                     unsigned rmin, const void *data, size_t size)
{
    char hdr[111];
    size_t namesz = strlen(name) + 1;
    snprintf(hdr, sizeof(hdr),
             "070701%08X%08X%08X%08X%08X%08X%08zX%08X%08X%08X%08X%08zX%08X", ino,
             (unsigned)mode, 0u, 0u, S_ISDIR(mode) ? 2u : 1u, 0u, size, 0u, 0u, rmaj, rmin,
             namesz, 0u);
    static const char zeros[4];
    if (write_all(fd, hdr, 110) < 0 || write_all(fd, name, namesz) < 0 ||
        write_all(fd, zeros, pad4(110 + namesz)) < 0)
        return -1;
    if (size && (write_all(fd, data, size) < 0 || write_all(fd, zeros, pad4(size)) < 0))
        return -1;
    return 0;
}

int vmc_write_cpio(int fd, const char *agent, struct err **err)
{
    cleanup_free char *data = NULL;
    size_t size = 0;
    if (read_file_at(AT_FDCWD, agent, 64u << 20, &data, &size, err) < 0)
        return err_wrap(err, "read cocoon-init");
    static const char *const dirs[] = {"dev", "proc", "sys", "run", "tmp", "mnt"};
    unsigned ino = 1;
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        if (put_entry(fd, ino++, dirs[i], S_IFDIR | 0755, 0, 0, NULL, 0) < 0)
            goto fail;
    /* The kernel opens /dev/console for PID 1's stdio before devtmpfs is up. */
    if (put_entry(fd, ino++, "dev/console", S_IFCHR | 0600, 5, 1, NULL, 0) < 0 ||
        put_entry(fd, ino++, "init", S_IFREG | 0755, 0, 0, data, size) < 0 ||
        put_entry(fd, 0, "TRAILER!!!", 0, 0, 0, NULL, 0) < 0)
        goto fail;
    return 0;
fail:
    return err_make(err, errno, "write the initramfs");
}

int vmc_initramfs(int rootfd, const char *root, const char *agent, char **out,
                  struct err **err)
{
    struct stat st;
    if (stat(agent, &st) < 0)
        return err_make(err, errno, "cocoon-init `%s`", agent);
    if (mkdirat(rootfd, ".vm", 0700) < 0 && errno != EEXIST)
        return err_make(err, errno, "create %s/.vm", root);
    char name[128];
    snprintf(name, sizeof(name), ".vm/initramfs-%llx-%llx-%llx.cpio",
             (unsigned long long)st.st_ino, (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st.st_mtim.tv_nsec);
    *out = xasprintf("%s/%s", root, name);
    if (faccessat(rootfd, name, R_OK, 0) == 0)
        return 0;
    /* Build beside it and rename: concurrent creates never see half a file. */
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.%d", name, (int)getpid());
    cleanup_close int fd = openat(rootfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_make(err, errno, "create %s/%s", root, tmp);
    if (vmc_write_cpio(fd, agent, err) < 0 || renameat(rootfd, tmp, rootfd, name) < 0) {
        if (err && *err == NULL)
            err_make(err, errno, "install %s", *out);
        unlinkat(rootfd, tmp, 0);
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}
