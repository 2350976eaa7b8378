/*
 * sd_notify - the systemd service protocol (libsystemd's sd_notify): READY=1
 * once the plugins are started, WATCHDOG=1 at half of WATCHDOG_USEC,
 * RELOADING=1 / READY=1 around a reload, STOPPING=1, and STATUS= lines.
 * Without NOTIFY_SOCKET (not under systemd) every call does nothing.
 *
 * Thread: the main thread (ccgw_gateway_run, main.c); ccgw_sd_status() is
 * also called from ccgw_gateway_reload() on whatever thread runs it.
 */
#ifndef CCGW_SD_NOTIFY_H
#define CCGW_SD_NOTIFY_H

#include <stdint.h>

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
