/* lib/log.h: logging, the one piece of global state in dotward.
 * Levels follow syslog. Output goes to stderr (default) or syslog. */
#ifndef DOTWARD_LOG_H
#define DOTWARD_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERR = 3, LOG_LVL_WARN = 4, LOG_LVL_NOTICE = 5, LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

void log_setup(enum log_level level, bool use_syslog);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "error", "warning", "notice", "info", "debug"; returns -1 if unknown. */
int log_level_parse(const char *s);
const char *log_level_str(enum log_level level);

/* Wall-clock seconds as "2026-11-29T12:00:00Z" (UTC); "-" for 0 or less
 * (never). Returns buf. */
const char *log_iso_time(double ts, char *buf, size_t bufsz);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Rate-limited variant for noisy network errors: at most `burst` messages per
 * 10 s per call site; the caller owns the state (a static per site is fine,
 * it is part of logging). Suppressed counts are reported on the next line. */
struct log_limit { double window_start; unsigned count; unsigned suppressed; };
void log_limited(struct log_limit *lim, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_err(...) log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) \
    do { if (log_get_level() >= LOG_LVL_DEBUG) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

#endif
