#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/util.h"

static int log_fd = 2;
static enum log_format log_fmt = LOG_FORMAT_TEXT;
static enum log_level log_max = LOG_WARN;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

int log_format_parse(const char *name, enum log_format *out)
{
    if (strcmp(name, "text") == 0)
        *out = LOG_FORMAT_TEXT;
    else if (strcmp(name, "json") == 0)
        *out = LOG_FORMAT_JSON;
    else
        return -1;
    return 0;
}

int log_init(const char *path, enum log_format format, bool debug, struct err **err)
{
    log_fmt = format;
    log_max = debug ? LOG_DEBUG : LOG_WARN;
    if (path == NULL || path[0] == '\0')
        return 0;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return err_make(err, errno, "open log file `%s`", path);
    if (log_fd > 2)
        close(log_fd);
    log_fd = fd;
    return 0;
}

bool log_debug_enabled(void)
{
    return log_max >= LOG_DEBUG;
}

static void log_write_record(int fd, enum log_format fmt, enum log_level level, const char *msg)
{
    char line[4096];
    size_t n;
    if (fmt == LOG_FORMAT_JSON) {
        char ts[64];
        struct timespec now;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        char esc[3072];
        json_escape(msg, esc, sizeof(esc));
        n = (size_t)snprintf(line, sizeof(line),
                             "{\"level\":\"%s\",\"msg\":\"%s\",\"time\":\"%s.%09ldZ\"}\n",
                             level_names[level], esc, ts, now.tv_nsec);
    } else {
        n = (size_t)snprintf(line, sizeof(line), "cocoon: %s%s%s\n",
                             level == LOG_ERROR ? "" : level_names[level],
                             level == LOG_ERROR ? "" : ": ", msg);
    }
    if (n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    write_all(fd, line, n);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > log_max)
        return;
    int saved = errno;
    char msg[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_write_record(log_fd, log_fmt, level, msg);
    errno = saved;
}

void log_report_error(const char *msg)
{
    /* The user always sees the error on stderr; an engine that passed
     * --log reads it from the file in the format it asked for. */
    log_write_record(2, LOG_FORMAT_TEXT, LOG_ERROR, msg);
    if (log_fd != 2)
        log_write_record(log_fd, log_fmt, LOG_ERROR, msg);
}
