/* Logging: text or JSON lines (runc's --log-format), to stderr or a file. */
#pragma once
#include <stdbool.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };
enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON };

struct err;

/* Configure logging; path NULL or "" means stderr. Returns <0 on error. */
int log_init(const char *path, enum log_format format, bool debug, struct err **err);

/* Parse "text" or "json"; returns <0 on an unknown name. */
int log_format_parse(const char *name, enum log_format *out);

/* Write one log record at `level` (dropped if above the configured level). */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True if debug records are written. */
bool log_debug_enabled(void);

/* Report a fatal error: to stderr as "cocoon: msg", and to the log file
 * (if one is configured) as an error record. */
void log_report_error(const char *msg);

#define log_debug(...) do { if (log_debug_enabled()) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
