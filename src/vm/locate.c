/* Where the VM backend finds cocoon-init and the guest kernel. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/util.h"
#include "vm/vm_internal.h"

/* The directory of the running cocoon binary (no trailing slash). */
static char *self_dir(void)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0)
        return xstrdup("/usr/bin");
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = '\0';
    return xstrdup(buf);
}

/* The first of the candidates that exists and is `mode`-accessible. */
static int first_of(char *const *cands, size_t n, int mode, char **out)
{
    for (size_t i = 0; i < n; i++)
        if (cands[i] && access(cands[i], mode) == 0) {
            *out = xstrdup(cands[i]);
            return 0;
        }
    return -1;
}

static void free_all(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
}

int vmc_find_agent(char **out, struct err **err)
{
    const char *env = getenv("COCOON_AGENT");
    if (env && *env) {
        if (access(env, X_OK) < 0)
            return err_make(err, errno, "$COCOON_AGENT `%s`", env);
        *out = xstrdup(env);
        return 0;
    }
    cleanup_free char *dir = self_dir();
    char *c[] = {
        xasprintf("%s/agent/cocoon-init", dir),
        xasprintf("%s/cocoon-init", dir),
        xasprintf("%s/../libexec/cocoon/cocoon-init", dir),
        xstrdup("/usr/libexec/cocoon/cocoon-init"),
    };
    int r = first_of(c, 4, X_OK, out);
    free_all(c, 4);
    if (r < 0)
        return err_make(err, ENOENT,
                        "cocoon-init (the guest agent) not found next to cocoon (%s) or in "
                        "/usr/libexec/cocoon; set $COCOON_AGENT",
                        dir);
    return 0;
}

int vmc_find_kernel(char **out, struct err **err)
{
    const char *env = getenv("COCOON_KERNEL");
    if (env && *env) {
        if (access(env, R_OK) < 0)
            return err_make(err, errno, "$COCOON_KERNEL `%s`", env);
        *out = xstrdup(env);
        return 0;
    }
    cleanup_free char *dir = self_dir();
    char *c[] = {
        xasprintf("%s/../kernel/vmlinux", dir),
        xasprintf("%s/../kernel/bzImage", dir),
        xasprintf("%s/../share/cocoon/vmlinux", dir),
        xstrdup("/usr/share/cocoon/vmlinux"),
    };
    int r = first_of(c, 4, R_OK, out);
    free_all(c, 4);
    if (r < 0)
        return err_make(err, ENOENT,
                        "no guest kernel: build one with `make kernel` (looked beside %s and "
                        "in /usr/share/cocoon; or set $COCOON_KERNEL)",
                        dir);
    return 0;
}
