/* Keep the host's cocoon binary out of reach of a container that could
 * write it through /proc/<pid>/exe (the CVE-2019-5736 class). The init and
 * exec children run cocoon's image until they exec, and make themselves
 * non-dumpable; that does not stop a container holding CAP_SYS_PTRACE. For
 * those, cocoon re-executes the command from a sealed memfd copy of itself,
 * so /proc/<pid>/exe never leads to the host file (runc's approach). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "runtime/lifecycle.h"

char **lifecycle_argv;

static bool grants_ptrace(const struct oci_process *p)
{
    if (p == NULL || !p->has_caps)
        return false;
    char **sets[] = {p->caps.bounding, p->caps.effective, p->caps.permitted,
                     p->caps.inheritable, p->caps.ambient};
    for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
        for (char **c = sets[i]; c && *c; c++)
            if (strcmp(*c, "CAP_SYS_PTRACE") == 0)
                return true;
    return false;
}

int lifecycle_protect_binary(const struct oci_process *p, struct err **err)
{
    if (!grants_ptrace(p) || lifecycle_argv == NULL)
        return 0;
    char self[64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        if (strncmp(self, "/memfd:cocoon", 13) == 0)
            return 0; /* already running from the sealed copy */
    }
    cleanup_close int src = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (src < 0 || fstat(src, &st) < 0)
        return err_make(err, errno, "open cocoon's own binary");
    cleanup_close int mfd = memfd_create("cocoon", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0)
        return err_make(err, errno, "memfd for a sealed copy of cocoon");
    off_t off = 0;
    while (off < st.st_size) {
        ssize_t w = sendfile(mfd, src, &off, (size_t)(st.st_size - off));
        if (w <= 0)
            return err_make(err, w < 0 ? errno : EIO, "copy cocoon's binary");
    }
    if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0)
        return err_make(err, errno, "seal the copy of cocoon");
    extern char **environ;
    fexecve(mfd, lifecycle_argv, environ);
    return err_make(err, errno, "re-execute cocoon from its sealed copy");
}
