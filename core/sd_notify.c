/* sd_notify - see sd_notify.h. */
#include "sd_notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"

static uint64_t watchdog_ms, last_ms;

void ccgw_sd_init(void)
{
    uint64_t usec = 0;
    int r = sd_watchdog_enabled(0, &usec);
    if (r > 0 && usec > 0) {
        watchdog_ms = usec / 1000u;
        if (watchdog_ms == 0)
            watchdog_ms = 1;
        CLOG_INFO("systemd", "watchdog every %llu ms (WATCHDOG=1 every %llu ms)",
                  (unsigned long long)watchdog_ms, (unsigned long long)(watchdog_ms / 2));
    }
}

uint64_t ccgw_sd_watchdog_ms(void) { return watchdog_ms; }

static void notify(const char *what)
{
    int r = sd_notify(0, what);
    if (r < 0)
        CLOG_WARN("systemd", "sd_notify(%s): error %d", what, r);
}

void ccgw_sd_ready(const char *status)
{
    char buf[512];
    snprintf(buf, sizeof buf, "READY=1\nSTATUS=%s", status ? status : "running");
    notify(buf);
}

void ccgw_sd_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char buf[128];
    snprintf(buf, sizeof buf, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u);
    notify(buf);
}

void ccgw_sd_stopping(const char *status)
{
    char buf[512];
    snprintf(buf, sizeof buf, "STOPPING=1\nSTATUS=%s", status ? status : "stopping");
    notify(buf);
}

void ccgw_sd_status(const char *fmt, ...)
{
    char buf[600] = "STATUS=";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + 7, sizeof buf - 7, fmt, ap);
    va_end(ap);
    notify(buf);
}

void ccgw_sd_watchdog(uint64_t now_ms)
{
    if (!watchdog_ms || (last_ms && now_ms - last_ms < watchdog_ms / 2))
        return;
    last_ms = now_ms;
    notify("WATCHDOG=1");
}
