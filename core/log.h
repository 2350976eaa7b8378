/*
 * log - one line per message on stderr, written with a single write(2) so
 * lines from different threads never interleave:
 *   2026-11-23T09:47:05.123Z INFO  [modbus:room1] device ac1 offline (modbus.c:212)
 * Plugins log through ccgw_log() (sdk/include/ccgw/instance.h) which tags the
 * line with plugin:instance; the core uses the CLOG_* macros (tag "core" or
 * a module name).
 */
#ifndef CCGW_CORE_LOG_H
#define CCGW_CORE_LOG_H

#include <stdarg.h>
#include <time.h>

#include "ccgw/types.h"

void ccgw_log_set_level(ccgw_log_level_t level);
ccgw_log_level_t ccgw_log_get_level(void);
int ccgw_log_level_parse(const char *s); /* -1 when unknown */

void ccgw_log_tagged(ccgw_log_level_t level, const char *tag, const char *file, int line,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void ccgw_vlog_tagged(ccgw_log_level_t level, const char *tag, const char *file, int line,
                      const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

/* RFC 3339 UTC with milliseconds, "2026-11-23T09:47:05.123Z" (24 chars + NUL). */
#define CCGW_TS_LEN 25
void ccgw_format_ts(char out[CCGW_TS_LEN], const struct timespec *ts);
void ccgw_ts_now(char out[CCGW_TS_LEN]);

#define CLOG_ERROR(tag, ...) ccgw_log_tagged(CCGW_LOG_ERROR, (tag), __FILE__, __LINE__, __VA_ARGS__)
#define CLOG_WARN(tag, ...) ccgw_log_tagged(CCGW_LOG_WARN, (tag), __FILE__, __LINE__, __VA_ARGS__)
#define CLOG_INFO(tag, ...) ccgw_log_tagged(CCGW_LOG_INFO, (tag), __FILE__, __LINE__, __VA_ARGS__)
#define CLOG_DEBUG(tag, ...) ccgw_log_tagged(CCGW_LOG_DEBUG, (tag), __FILE__, __LINE__, __VA_ARGS__)

#endif
