/* log - see log.h. */
#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static _Atomic int g_level = CCGW_LOG_INFO;

void ccgw_log_set_level(ccgw_log_level_t level) { atomic_store(&g_level, (int)level); }
ccgw_log_level_t ccgw_log_get_level(void) { return (ccgw_log_level_t)atomic_load(&g_level); }

int ccgw_log_level_parse(const char *s)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (s && strcasecmp(s, names[i]) == 0)
            return i;
    return -1;
}

static char *put_digits(char *p, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

void ccgw_format_ts(char out[CCGW_TS_LEN], const struct timespec *ts)
{
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    unsigned year = (unsigned)(tm.tm_year + 1900) % 10000u;
    char *p = out;
    p = put_digits(p, year, 4);
    *p++ = '-';
    p = put_digits(p, (unsigned)tm.tm_mon + 1, 2);
    *p++ = '-';
    p = put_digits(p, (unsigned)tm.tm_mday, 2);
    *p++ = 'T';
    p = put_digits(p, (unsigned)tm.tm_hour, 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)tm.tm_min, 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)tm.tm_sec, 2);
    *p++ = '.';
    p = put_digits(p, (unsigned)(ts->tv_nsec / 1000000L) % 1000u, 3);
    *p++ = 'Z';
    *p = '\0';
}

void ccgw_ts_now(char out[CCGW_TS_LEN])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ccgw_format_ts(out, &ts);
}

static const char *basename_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

void ccgw_vlog_tagged(ccgw_log_level_t level, const char *tag, const char *file, int line,
                      const char *fmt, va_list ap)
{
    static const char *const names[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};
    if ((int)level > atomic_load(&g_level))
        return;
    if ((int)level < 0 || level > CCGW_LOG_DEBUG)
        level = CCGW_LOG_ERROR;
    char ts[CCGW_TS_LEN];
    ccgw_ts_now(ts);
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s %s [%s] ", ts, names[level], tag ? tag : "core");
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1;
    int m = vsnprintf(buf + len, sizeof buf - len, fmt, ap);
    if (m > 0)
        len += (size_t)m < sizeof buf - len ? (size_t)m : sizeof buf - len - 1;
    if (file && len < sizeof buf - 1) {
        m = snprintf(buf + len, sizeof buf - len, " (%s:%d)", basename_of(file), line);
        if (m > 0)
            len += (size_t)m < sizeof buf - len ? (size_t)m : sizeof buf - len - 1;
    }
    if (len >= sizeof buf - 1)
        len = sizeof buf - 2;
    /* one line, whatever the message held */
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n' || buf[i] == '\r')
            buf[i] = ' ';
    buf[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, len);
    (void)w;
}

void ccgw_log_tagged(ccgw_log_level_t level, const char *tag, const char *file, int line,
                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ccgw_vlog_tagged(level, tag, file, line, fmt, ap);
    va_end(ap);
}
