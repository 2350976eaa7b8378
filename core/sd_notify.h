/*
 * sd_notify - the systemd service protocol (sd_notify(3), implemented here
 * without libsystemd: one datagram to $NOTIFY_SOCKET per call): READY=1
 * once the plugins are started, WATCHDOG=1 at half of WATCHDOG_USEC,
 * RELOADING=1 / READY=1 around a reload, STOPPING=1, and STATUS= lines.
 * Without NOTIFY_SOCKET (not under systemd) every call does nothing.
 *
 * Thread: the main thread (ccgw_gateway_run, main.c); ccgw_sd_status() is
 * also called from ccgw_gateway_reload() on whatever thread runs it.
 */
#ifndef CCGW_SD_NOTIFY_H
#define CCGW_SD_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Send one notification (newline-separated VAR=VALUE lines) to
 * $NOTIFY_SOCKET ("/path" or "@abstract"): 1 sent, 0 no NOTIFY_SOCKET,
 * < 0 -errno (-EAFNOSUPPORT for an address of another form). */
int ccgw_sd_notify_send(const char *state);
/* sd_watchdog_enabled(0, usec): 1 and *usec when WATCHDOG_USEC is set (and
 * WATCHDOG_PID, if set, is this process), 0 when not, -EINVAL if malformed. */
int ccgw_sd_watchdog_usec(uint64_t *usec);
/* Read WATCHDOG_USEC (sd_watchdog_enabled); call once at start. */
void ccgw_sd_init(void);
void ccgw_sd_ready(const char *status);
void ccgw_sd_reloading(void);
void ccgw_sd_stopping(const char *status);
void ccgw_sd_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Sends WATCHDOG=1 when half the watchdog interval has passed since the
 * last one (call it often, e.g. from each main loop tick). */
void ccgw_sd_watchdog(uint64_t now_ms);
/* The watchdog interval in ms (0 = no watchdog). */
uint64_t ccgw_sd_watchdog_ms(void);

#endif
