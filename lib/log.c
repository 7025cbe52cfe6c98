/* lib/log.c: the logging state is the project's one global. */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static struct {
    enum log_level level;
    bool use_syslog;
} log_state = { LOG_LVL_INFO, false };

static const char *const level_names[] = {
    [LOG_LVL_ERR] = "error", [LOG_LVL_WARN] = "warning", [LOG_LVL_NOTICE] = "notice",
    [LOG_LVL_INFO] = "info", [LOG_LVL_DEBUG] = "debug",
};

const char *log_iso_time(double ts, char *buf, size_t bufsz)
{
    time_t s = (time_t)ts;
    struct tm tm;
    if (ts <= 0 || !gmtime_r(&s, &tm) || !strftime(buf, bufsz, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, bufsz, "-");
    return buf;
}

void log_setup(enum log_level level, bool use_syslog)
{
    if (log_state.use_syslog && !use_syslog)
        closelog();
    if (use_syslog && !log_state.use_syslog)
        openlog("dotward", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    log_state.level = level;
    log_state.use_syslog = use_syslog;
}

void log_set_level(enum log_level level) { log_state.level = level; }
enum log_level log_get_level(void) { return log_state.level; }

int log_level_parse(const char *s)
{
    for (int i = LOG_LVL_ERR; i <= LOG_LVL_DEBUG; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    if (strcmp(s, "warn") == 0)
        return LOG_LVL_WARN;
    return -1;
}

const char *log_level_str(enum log_level level)
{
    if (level < LOG_LVL_ERR || level > LOG_LVL_DEBUG)
        return "?";
    return level_names[level];
}

__attribute__((format(printf, 2, 0)))
static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    if (level > log_state.level)
        return;
    if (log_state.use_syslog) {
        vsyslog((int)level, fmt, ap);
        return;
    }
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03ldZ %s: ", ts.tv_nsec / 1000000,
                  level_names[level]);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    /* One write per line so concurrent writers to the same stderr do not interleave. */
    size_t len = strnlen(line, sizeof line - 2);
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
    fflush(stderr);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

#define LOG_LIMIT_WINDOW 10.0
#define LOG_LIMIT_BURST 5

void log_limited(struct log_limit *lim, enum log_level level, const char *fmt, ...)
{
    if (level > log_state.level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (now - lim->window_start >= LOG_LIMIT_WINDOW) {
        if (lim->suppressed)
            log_msg(level, "(%u similar messages suppressed)", lim->suppressed);
        lim->window_start = now;
        lim->count = 0;
        lim->suppressed = 0;
    }
    if (lim->count >= LOG_LIMIT_BURST) {
        lim->suppressed++;
        return;
    }
    lim->count++;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}
