/* sd_notify - see sd_notify.h.
 *
 * The protocol itself, without libsystemd (man sd_notify, "Notes": a stable
 * interface that may be implemented independently): each notification is
 * one datagram of newline-separated VAR=VALUE lines, sent to the AF_UNIX
 * datagram socket named by $NOTIFY_SOCKET, a file system path ("/...") or,
 * with a leading '@', a name in the abstract namespace. The watchdog is on
 * when $WATCHDOG_USEC holds a positive number and $WATCHDOG_PID, if set, is
 * our pid (sd_watchdog_enabled()). Loading libsystemd only for this cost
 * about 0.4 MB of resident library pages (docs/architecture.md, memory).
 */
#include "sd_notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static uint64_t watchdog_ms, last_ms;

/* Parse a decimal unsigned number that fills the whole string. */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !end || *end)
        return false;
    *out = v;
    return true;
}

/* sd_watchdog_enabled(0, &usec): > 0 with *usec set when the watchdog is on
 * for this process, 0 when not, < 0 when the variables are malformed. */
int ccgw_sd_watchdog_usec(uint64_t *usec)
{
    const char *s = getenv("WATCHDOG_USEC");
    if (!s)
        return 0;
    uint64_t u = 0;
    if (!parse_u64(s, &u) || u == 0)
        return -EINVAL;
    const char *p = getenv("WATCHDOG_PID");
    if (p) {
        uint64_t pid = 0;
        if (!parse_u64(p, &pid) || pid == 0)
            return -EINVAL;
        if (pid != (uint64_t)getpid())
            return 0; /* meant for another process */
    }
    *usec = u;
    return 1;
}

int ccgw_sd_notify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0; /* not under systemd (or no Type=notify) */
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n > sizeof sa.sun_path ||
        (path[0] == '/' && n == sizeof sa.sun_path))
        return -EAFNOSUPPORT; /* what libsystemd answers for other forms (vsock:...) */
    memcpy(sa.sun_path, path, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract: the name is exactly the n bytes, no NUL */
    else
        len++;                 /* a path: with its NUL */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = 0;
    ssize_t sent;
    do
        sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
    while (sent < 0 && errno == EINTR);
    if (sent < 0)
        rc = -errno;
    close(fd);
    return rc < 0 ? rc : 1;
}

void ccgw_sd_init(void)
{
    uint64_t usec = 0;
    int r = ccgw_sd_watchdog_usec(&usec);
    if (r < 0)
        CLOG_WARN("systemd", "WATCHDOG_USEC/WATCHDOG_PID malformed: no watchdog");
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
    int r = ccgw_sd_notify_send(what);
    if (r < 0)
        CLOG_WARN("systemd", "sd_notify(%s): %s", what, strerror(-r));
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
