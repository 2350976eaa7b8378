/*
 * ccgw/instance.h - the instance: its loop (timers, fd watches, posted work),
 * its health and its tagged log.
 *
 * THREADING CONTRACT
 * Each plugin instance has one thread of its own, the instance thread, that
 * runs a poll loop. The core calls every plugin callback on it: check,
 * create, start, stop, destroy, command, timers and fd watches. So a plugin
 * that only uses the loop needs no locks at all. The three plugin shapes:
 *  - polling (Modbus, NUT, SNMP): a repeating timer per device; blocking
 *    requests belong on a worker thread the plugin owns, so one silent
 *    device does not delay the others or the instance loop.
 *  - event stream (AMI, ISAPI alertStream, SMPP): a non-blocking socket
 *    watched with ccgw_io_add(), or a reader thread of the plugin's own.
 *  - request/response commands (door unlock, SMS send): answer from the
 *    command callback, or keep the ccgw_cmd_t and reply later from any thread.
 *
 * From threads the plugin owns, only these calls are allowed, from create()
 * until stop() returns: every call of ccgw/device.h (declaring devices in
 * create() is preferred), ccgw_cmd_reply_* and the ccgw_cmd_* getters,
 * ccgw_post(), ccgw_instance_health(), ccgw_log() and the config getters. Timers and fd watches are instance-thread
 * only. Never block the instance thread for long: the core's supervisor sees
 * a loop that stops turning as a hung instance.
 */
#ifndef CCGW_INSTANCE_H
#define CCGW_INSTANCE_H

#include <stdarg.h>

#include "ccgw/types.h"

#ifdef __cplusplus
extern "C" {
#endif

const char *ccgw_instance_id(const ccgw_instance_t *inst);
const char *ccgw_instance_plugin(const ccgw_instance_t *inst);

/* Report health; published retained on .../gateway/{id}/instance/{instance}.
 * Thread-safe. Published only when state or reason changes. */
void ccgw_instance_health(ccgw_instance_t *inst, ccgw_health_t health, const char *reason);

/* Monotonic milliseconds. */
uint64_t ccgw_now_ms(void);

/* ---- loop (instance thread only, except ccgw_post) ---- */

typedef void (*ccgw_timer_cb)(ccgw_timer_t *timer, void *arg);

/* Fire after `first_ms`, then every `interval_ms` (0 = once; a one-shot
 * timer is freed after its callback returns). NULL on failure. */
ccgw_timer_t *ccgw_timer_add(ccgw_instance_t *inst, uint64_t first_ms, uint64_t interval_ms,
                             ccgw_timer_cb cb, void *arg);
/* Cancel and free; safe from inside the timer's own callback. */
void ccgw_timer_cancel(ccgw_timer_t *timer);

enum { CCGW_IO_READ = 1u << 0, CCGW_IO_WRITE = 1u << 1, CCGW_IO_ERROR = 1u << 2 };
typedef void (*ccgw_io_cb)(ccgw_io_t *io, int fd, unsigned events, void *arg);

/* Watch `fd` for CCGW_IO_READ/WRITE; the callback gets what is ready
 * (CCGW_IO_ERROR for hang-up or error). The plugin keeps owning the fd. */
ccgw_io_t *ccgw_io_add(ccgw_instance_t *inst, int fd, unsigned events, ccgw_io_cb cb, void *arg);
int ccgw_io_modify(ccgw_io_t *io, unsigned events);
/* Stop watching and free; safe from inside the watch's own callback. */
void ccgw_io_remove(ccgw_io_t *io);

/* Run fn(arg) on the instance thread soon. Thread-safe: this is how a
 * plugin's own thread hands work to the loop. The queue is bounded
 * (returns CCGW_EFULL at the limit, CCGW_ESTOPPED after stop). */
int ccgw_post(ccgw_instance_t *inst, void (*fn)(void *arg), void *arg);

/* ---- log ---- */

/* Tagged log line: "... INFO [plugin:instance] message (file.c:42)". */
void ccgw_log(ccgw_instance_t *inst, ccgw_log_level_t level, const char *file, int line,
              const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
void ccgw_vlog(ccgw_instance_t *inst, ccgw_log_level_t level, const char *file, int line,
               const char *fmt, va_list ap)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 5, 0)))
#endif
    ;

#define CCGW_ERROR(inst, ...) ccgw_log((inst), CCGW_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)
#define CCGW_WARN(inst, ...) ccgw_log((inst), CCGW_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define CCGW_INFO(inst, ...) ccgw_log((inst), CCGW_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define CCGW_DEBUG(inst, ...) ccgw_log((inst), CCGW_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif /* CCGW_INSTANCE_H */
