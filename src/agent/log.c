/* The agent's side of common/log.h, for the library files it shares with
 * the host (attach/rootfs.c): warnings and errors go to stderr, the guest's
 * console; debug records are off. No log file and no time stamps: libc's
 * time-zone code alone would add about 100 KB to a static PID 1. */
#include <stdarg.h>
#include <stdio.h>

#include "common/log.h"

bool log_debug_enabled(void)
{
    return false;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > LOG_WARN)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("cocoon-init: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
