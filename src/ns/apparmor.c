/* AppArmor: process.apparmorProfile, applied as runc and crun do, by
 * writing "exec PROFILE" to the process's attr file before execve. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "ns/apparmor.h"

#define AA_ENABLED "/sys/module/apparmor/parameters/enabled"

static bool apparmor_enabled(void)
{
    cleanup_close int fd = open(AA_ENABLED, O_RDONLY | O_CLOEXEC);
    char c = 0;
    return fd >= 0 && read(fd, &c, 1) == 1 && c == 'Y';
}

int ns_apparmor_on_exec(const char *profile, struct err **err)
{
    if (profile == NULL || profile[0] == '\0')
        return 0;
    char buf[4096];
    int n = snprintf(buf, sizeof(buf), "exec %s", profile);
    if (n < 0 || (size_t)n >= sizeof(buf))
        return err_input(err, "config.json: `process.apparmorProfile` is too long");
    /* Linux >= 5.8 has a file per LSM; older ones only the shared one,
     * which belongs to whichever LSM is the major one. */
    int fd = open("/proc/self/attr/apparmor/exec", O_WRONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && apparmor_enabled())
        fd = open("/proc/self/attr/exec", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0; /* no AppArmor in this kernel */
        return err_make(err, errno, "process.apparmorProfile `%s`: open /proc/self/attr",
                        profile);
    }
    ssize_t w = write(fd, buf, (size_t)n);
    int e = errno;
    close(fd);
    if (w == n)
        return 0;
    if (w < 0 && e == EINVAL && !apparmor_enabled())
        return 0; /* built in, not enabled */
    return err_make(err, w < 0 ? e : EIO, "process.apparmorProfile `%s`", profile);
}
