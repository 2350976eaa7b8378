/*
 * nut_server.c - one worker thread per upsd: connection, login, polling
 * (LIST VAR per UPS), publishing, instant commands.
 *
 * The worker owns the server's socket. It waits on poll() for the socket
 * and the server's eventfd, so stop() and a queued command wake it at once,
 * and no request waits longer than timeout_ms. A connection failure makes
 * every UPS of the server offline; an `ERR DATA-STALE` / `ERR
 * DRIVER-NOT-CONNECTED` / `ERR UNKNOWN-UPS` answer makes only that UPS
 * offline. Threads: the worker calls only the SDK's thread-safe calls (emit
 * calls, ccgw_cmd_reply_*, ccgw_instance_health, ccgw_log).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nut_plugin.h"

#define LOG_WARN(s, ...) CCGW_WARN((s)->nut->inst, __VA_ARGS__)
#define LOG_INFO(s, ...) CCGW_INFO((s)->nut->inst, __VA_ARGS__)
#define LOG_DEBUG(s, ...) CCGW_DEBUG((s)->nut->inst, __VA_ARGS__)

/* I/O results (negative; a positive value is an errno). */
enum { IO_OK = 0, IO_STOP = -1, IO_TIMEOUT = -2, IO_CLOSED = -3, IO_PROTO = -4, IO_ERR = -5 };

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool srv_stopping(nut_server_t *s)
{
    pthread_mutex_lock(&s->lock);
    bool st = s->stop;
    pthread_mutex_unlock(&s->lock);
    return st;
}

static void drain_wake(nut_server_t *s)
{
    uint64_t v;
    ssize_t r = read(s->wake_fd, &v, sizeof v);
    (void)r;
}

/* Waits until fd is ready for `events` or the deadline passes. IO_OK,
 * IO_TIMEOUT, IO_STOP, or IO_ERR. A wake-up that is not a stop (a queued
 * command) is absorbed: the main loop looks at the queue after this I/O. */
static int wait_fd(nut_server_t *s, int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = mono_ms();
        if (now >= deadline)
            return IO_TIMEOUT;
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = s->wake_fd, .events = POLLIN}};
        int n = poll(p, 2, (int)(deadline - now));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return IO_ERR;
        }
        if (n == 0)
            return IO_TIMEOUT;
        if (p[1].revents) {
            drain_wake(s);
            if (srv_stopping(s))
                return IO_STOP;
        }
        if (p[0].revents)
            return IO_OK;
    }
}

static const char *io_text(int rc, int err, char *buf, size_t len)
{
    switch (rc) {
    case IO_STOP: return "instance stopping";
    case IO_TIMEOUT: return "timeout";
    case IO_CLOSED: return "connection closed by upsd";
    case IO_PROTO: return "protocol error";
    default: break;
    }
    if (err == ECONNREFUSED)
        return "connection refused";
    if (err == ECONNRESET || err == EPIPE)
        return "connection reset";
    char tmp[128];
    const char *e = strerror_r(err, tmp, sizeof tmp);
    snprintf(buf, len, "%s", e ? e : "I/O error");
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
        buf[0] = (char)(buf[0] - 'A' + 'a');
    return buf;
}

static void srv_close(nut_server_t *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    s->rlen = 0;
}

/* A connect to a closed local port in the ephemeral range can end up
 * connected to itself (TCP simultaneous open): we would read our own
 * requests back. Such a socket counts as "connection refused". */
static bool self_connected(int fd)
{
    struct sockaddr_storage a, b;
    socklen_t la = sizeof a, lb = sizeof b;
    if (getsockname(fd, (struct sockaddr *)&a, &la) != 0 ||
        getpeername(fd, (struct sockaddr *)&b, &lb) != 0)
        return false;
    return la == lb && memcmp(&a, &b, la) == 0;
}

/* Connects to upsd; IO_OK, or a failure with the reason in `why`. */
static int srv_connect(nut_server_t *s, char *why, size_t whylen)
{
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(s->host, port, &hints, &res);
    if (g != 0) {
        snprintf(why, whylen, "cannot resolve %s: %s", s->host, gai_strerror(g));
        return IO_ERR;
    }
    int rc = IO_ERR, err = 0;
    uint64_t deadline = mono_ms() + (uint64_t)s->timeout_ms;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) {
                err = errno;
                close(fd);
                rc = IO_ERR;
                continue;
            }
            rc = wait_fd(s, fd, POLLOUT, deadline);
            if (rc == IO_OK) {
                socklen_t l = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0)
                    err = errno;
                if (err)
                    rc = IO_ERR;
            } else if (rc == IO_ERR) {
                err = errno;
            }
            if (rc != IO_OK) {
                close(fd);
                if (rc == IO_STOP)
                    break;
                continue;
            }
        }
        if (self_connected(fd)) {
            close(fd);
            err = ECONNREFUSED;
            rc = IO_ERR;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        s->fd = fd;
        s->rlen = 0;
        rc = IO_OK;
        break;
    }
    freeaddrinfo(res);
    if (rc != IO_OK) {
        char buf[128];
        snprintf(why, whylen, "cannot connect to upsd %s: %s", s->name, io_text(rc, err, buf, sizeof buf));
    }
    return rc;
}

/* Sends one request line (a newline is appended). */
static int srv_send(nut_server_t *s, const char *line, int *err)
{
    char buf[NUT_LINE_MAX + 2];
    int n = snprintf(buf, sizeof buf, "%s\n", line);
    if (n < 0 || (size_t)n >= sizeof buf)
        return IO_PROTO;
    size_t off = 0;
    uint64_t deadline = mono_ms() + (uint64_t)s->timeout_ms;
    while (off < (size_t)n) {
        ssize_t w = send(s->fd, buf + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(s, s->fd, POLLOUT, deadline);
            if (rc != IO_OK)
                return rc;
            continue;
        }
        *err = errno;
        return IO_ERR;
    }
    return IO_OK;
}

/* Reads one response line into `out` (NUL-terminated, without "\n"). */
static int srv_recv(nut_server_t *s, char *out, size_t outlen, uint64_t deadline, int *err)
{
    for (;;) {
        char *nl = memchr(s->rbuf, '\n', s->rlen);
        if (nl) {
            size_t len = (size_t)(nl - s->rbuf);
            size_t keep = len;
            if (keep && s->rbuf[keep - 1] == '\r')
                keep--;
            if (keep >= outlen)
                return IO_PROTO;
            memcpy(out, s->rbuf, keep);
            out[keep] = '\0';
            memmove(s->rbuf, nl + 1, s->rlen - len - 1);
            s->rlen -= len + 1;
            return IO_OK;
        }
        if (s->rlen >= NUT_LINE_MAX)
            return IO_PROTO; /* a line longer than we accept */
        ssize_t r = recv(s->fd, s->rbuf + s->rlen, NUT_LINE_MAX - s->rlen, 0);
        if (r > 0) {
            s->rlen += (size_t)r;
            continue;
        }
        if (r == 0)
            return IO_CLOSED;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            *err = errno;
            return IO_ERR;
        }
        int rc = wait_fd(s, s->fd, POLLIN, deadline);
        if (rc != IO_OK) {
            if (rc == IO_ERR)
                *err = errno;
            return rc;
        }
    }
}

/* One request, one line of answer. */
static int srv_request(nut_server_t *s, const char *req, char *ans, size_t anslen, int *err)
{
    int rc = srv_send(s, req, err);
    if (rc != IO_OK)
        return rc;
    return srv_recv(s, ans, anslen, mono_ms() + (uint64_t)s->timeout_ms, err);
}

/* "ERR CODE [...]": copies CODE into code and returns true. */
static bool err_code(const char *ans, char *code, size_t len)
{
    if (strncmp(ans, "ERR ", 4) != 0 && strcmp(ans, "ERR") != 0)
        return false;
    const char *c = ans[3] ? ans + 4 : "UNKNOWN";
    size_t n = strcspn(c, " ");
    if (n >= len)
        n = len - 1;
    memcpy(code, c, n);
    code[n] = '\0';
    return true;
}

/* ------------------------------------------------------------------------ */
/* Health                                                                     */
/* ------------------------------------------------------------------------ */

void nut_health_update(nut_t *nut)
{
    pthread_mutex_lock(&nut->lock);
    size_t off = 0;
    const char *first = NULL;
    const char *auth = NULL;
    for (size_t i = 0; i < nut->n_servers; i++) {
        nut_server_t *s = &nut->servers[i];
        for (size_t j = 0; j < s->n_ups; j++) {
            if (s->upses[j].offline) {
                if (!first)
                    first = s->upses[j].id;
                off++;
            }
        }
        if (!auth && s->auth_problem[0])
            auth = s->auth_problem;
    }
    ccgw_health_t h = (off || auth) ? CCGW_HEALTH_DEGRADED : CCGW_HEALTH_OK;
    char reason[sizeof nut->health_reason];
    reason[0] = '\0';
    if (off)
        snprintf(reason, sizeof reason, "%zu of %zu UPS offline (%s%s)", off, nut->n_ups, first,
                 off > 1 ? ", ..." : "");
    if (auth) {
        size_t l = strlen(reason);
        snprintf(reason + l, sizeof reason - l, "%s%s", l ? "; " : "", auth);
    }
    bool changed = h != nut->health || strcmp(reason, nut->health_reason) != 0;
    nut->health = h;
    snprintf(nut->health_reason, sizeof nut->health_reason, "%s", reason);
    /* published under the lock, so two workers cannot publish out of order */
    if (changed)
        ccgw_instance_health(nut->inst, h, reason[0] ? reason : NULL);
    pthread_mutex_unlock(&nut->lock);
}

static void set_auth_problem(nut_server_t *s, const char *text)
{
    pthread_mutex_lock(&s->nut->lock);
    snprintf(s->auth_problem, sizeof s->auth_problem, "%s", text ? text : "");
    pthread_mutex_unlock(&s->nut->lock);
    nut_health_update(s->nut);
}

/* ------------------------------------------------------------------------ */
/* Publishing                                                                 */
/* ------------------------------------------------------------------------ */

static void ups_offline(nut_ups_t *u, const char *reason)
{
    if (u->online != 0 || strcmp(u->reason, reason) != 0) {
        if (u->online != 0)
            LOG_WARN(u->srv, "nut: UPS %s@%s (%s) offline: %s", u->name, u->srv->name, u->id, reason);
        ccgw_device_set_online(u->dev, false, reason);
        snprintf(u->reason, sizeof u->reason, "%s", reason);
    }
    u->online = 0;
    pthread_mutex_lock(&u->srv->nut->lock);
    bool was = u->offline;
    u->offline = true;
    pthread_mutex_unlock(&u->srv->nut->lock);
    if (!was)
        nut_health_update(u->srv->nut);
}

static void all_offline(nut_server_t *s, const char *reason)
{
    for (size_t i = 0; i < s->n_ups; i++)
        ups_offline(&s->upses[i], reason);
}

static void ups_publish(nut_ups_t *u)
{
    unsigned flags = u->status_have ? nut_status_flags(u->status_raw) : 0;
    const char *status = nut_status_name(flags);

    /* state: reachability and attributes in one message when coming back */
    ccgw_value_t st[] = {
        CCGW_V_STRING("status", status),
        CCGW_V_STRING("flags", u->status_have ? u->status_raw : ""),
    };
    ccgw_device_set_state(u->dev, true, NULL, st, CCGW_COUNT(st));
    if (u->online != 1)
        LOG_INFO(u->srv, "nut: UPS %s@%s (%s) online, status %s", u->name, u->srv->name, u->id, status);
    u->online = 1;
    u->reason[0] = '\0';
    pthread_mutex_lock(&u->srv->nut->lock);
    bool was = u->offline;
    u->offline = false;
    pthread_mutex_unlock(&u->srv->nut->lock);
    if (was)
        nut_health_update(u->srv->nut);

    /* telemetry */
    ccgw_value_t tel[NUT_N_VARS + 64];
    size_t n = 0;
    for (int i = 0; i < NUT_N_VARS; i++) {
        if (!u->var_have[i])
            continue;
        if (u->var_int[i])
            tel[n++] = CCGW_V_INT_U(nut_var_defs[i].name, (int64_t)u->var_val[i], nut_var_defs[i].unit);
        else
            tel[n++] = CCGW_V_DOUBLE(nut_var_defs[i].name, u->var_val[i], nut_var_defs[i].unit);
    }
    for (size_t i = 0; i < u->n_extra && n < CCGW_COUNT(tel); i++) {
        if (!u->extra_have[i])
            continue;
        double d;
        bool is_int;
        long long iv;
        if (nut_parse_number(u->extra_val[i], &d, &is_int, &iv))
            tel[n++] = is_int ? CCGW_V_INT(u->extra[i], (int64_t)iv) : CCGW_V_DOUBLE(u->extra[i], d, NULL);
        else
            tel[n++] = CCGW_V_STRING(u->extra[i], u->extra_val[i]);
    }
    if (n)
        ccgw_device_telemetry(u->dev, tel, n);

    if (!u->status_have)
        return; /* no ups.status: no events, alarms unchanged */

    /* power events on a change of mains/battery */
    const char *ev = nut_power_event(u->have_flags, u->flags, flags);
    uint64_t now = mono_ms();
    if (ev) {
        int bc = nut_var_index("battery.charge");
        ccgw_value_t data[3];
        size_t nd = 0;
        data[nd++] = CCGW_V_STRING("flags", u->status_raw);
        if (bc >= 0 && u->var_have[bc])
            data[nd++] = CCGW_V_DOUBLE("battery.charge", u->var_val[bc], "%");
        if (strcmp(ev, "power.lost") == 0) {
            u->on_battery_since = now;
        } else if (u->on_battery_since) {
            data[nd++] = CCGW_V_INT_U("on_battery_s", (int64_t)((now - u->on_battery_since) / 1000u), "s");
            u->on_battery_since = 0;
        }
        LOG_INFO(u->srv, "nut: UPS %s (%s): %s (%s)", u->name, u->id, ev, u->status_raw);
        ccgw_device_event(u->dev, ev, data, nd);
    }
    u->have_flags = true;
    u->flags = flags;

    /* alarms: raise on a set flag, clear when it goes (and once at the start,
     * so an alarm left active by an earlier run is cleared) */
    for (unsigned i = 0; i < NUT_N_ALARMS; i++) {
        const nut_alarm_def_t *a = &nut_alarm_defs[i];
        bool want = (flags & a->flag) != 0;
        bool active = (u->alarms_active >> i) & 1u;
        if (want && !active) {
            ccgw_value_t data[] = {CCGW_V_STRING("flags", u->status_raw)};
            if (ccgw_alarm_raise(u->dev, a->code, a->severity, a->message, data, CCGW_COUNT(data)) == CCGW_OK)
                u->alarms_active |= 1u << i;
        } else if (!want && (active || !u->alarms_known)) {
            ccgw_alarm_clear(u->dev, a->code, NULL); /* CCGW_ENOTFOUND: was not active */
            u->alarms_active &= ~(1u << i);
        }
    }
    u->alarms_known = true;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                   */
/* ------------------------------------------------------------------------ */

/* USERNAME / PASSWORD after connecting. upsd answers OK to both whatever
 * they are; it checks them when a command needs them (ACCESS-DENIED). */
static int srv_login(nut_server_t *s, char *why, size_t whylen)
{
    if (!s->username)
        return IO_OK;
    const char *what[2] = {"USERNAME", "PASSWORD"};
    const char *val[2] = {s->username, s->password ? s->password : ""};
    for (int i = 0; i < 2; i++) {
        char q[600], req[700], ans[NUT_LINE_MAX];
        int err = 0;
        if (nut_quote(val[i], q, sizeof q) < 0) {
            snprintf(why, whylen, "upsd %s: %s holds characters that cannot be sent", s->name,
                     i ? "password" : "username");
            return IO_PROTO;
        }
        snprintf(req, sizeof req, "%s %s", what[i], q);
        int rc = srv_request(s, req, ans, sizeof ans, &err);
        if (rc != IO_OK) {
            char buf[128];
            snprintf(why, whylen, "upsd %s: login failed: %s", s->name, io_text(rc, err, buf, sizeof buf));
            return rc;
        }
        char code[64];
        if (err_code(ans, code, sizeof code)) {
            const char *t = nut_err_text(code);
            snprintf(why, whylen, "upsd %s refused %s for user '%s': %s%s%s", s->name, what[i],
                     s->username, code, t ? ": " : "", t ? t : "");
            return IO_PROTO;
        }
        if (strcmp(ans, "OK") != 0) {
            snprintf(why, whylen, "upsd %s: unexpected answer to %s", s->name, what[i]);
            return IO_PROTO;
        }
    }
    return IO_OK;
}

/* LIST VAR for one UPS. IO_OK and the values in the UPS's poll fields; or
 * IO_OK with *code set to upsd's ERR code; or an I/O failure. */
static int poll_ups(nut_server_t *s, nut_ups_t *u, char *code, size_t codelen, int *err)
{
    char req[NUT_LINE_MAX], ans[NUT_LINE_MAX + 1];
    code[0] = '\0';
    snprintf(req, sizeof req, "LIST VAR %s", u->name);
    int rc = srv_send(s, req, err);
    if (rc != IO_OK)
        return rc;
    uint64_t deadline = mono_ms() + (uint64_t)s->timeout_ms;
    rc = srv_recv(s, ans, sizeof ans, deadline, err);
    if (rc != IO_OK)
        return rc;
    if (err_code(ans, code, codelen))
        return IO_OK;
    char *w[8];
    if (nut_split(ans, w, 8) != 4 || strcmp(w[0], "BEGIN") || strcmp(w[1], "LIST") ||
        strcmp(w[2], "VAR") || strcmp(w[3], u->name))
        return IO_PROTO;

    memset(u->var_have, 0, sizeof u->var_have);
    memset(u->extra_have, 0, u->n_extra * sizeof *u->extra_have);
    u->status_have = false;
    for (;;) {
        rc = srv_recv(s, ans, sizeof ans, deadline, err);
        if (rc != IO_OK)
            return rc;
        int n = nut_split(ans, w, 8);
        if (n == 4 && strcmp(w[0], "END") == 0 && strcmp(w[1], "LIST") == 0)
            return IO_OK;
        if (n != 4 || strcmp(w[0], "VAR") != 0 || strcmp(w[1], u->name) != 0)
            return IO_PROTO;
        const char *name = w[2], *value = w[3];
        int vi = nut_var_index(name);
        if (vi >= 0) {
            double d;
            bool is_int;
            long long iv;
            if (nut_parse_number(value, &d, &is_int, &iv)) {
                u->var_val[vi] = d;
                u->var_int[vi] = is_int;
                u->var_have[vi] = true;
            }
        } else if (strcmp(name, "ups.status") == 0) {
            snprintf(u->status_raw, sizeof u->status_raw, "%s", value);
            u->status_have = true;
        }
        for (size_t i = 0; i < u->n_extra; i++) {
            if (strcmp(u->extra[i], name) == 0) {
                snprintf(u->extra_val[i], sizeof u->extra_val[i], "%s", value);
                u->extra_have[i] = true;
            }
        }
    }
}

/* Runs one instant command and replies. Returns an I/O failure (the
 * connection must be dropped) or IO_OK. */
static int run_job(nut_server_t *s, nut_job_t *job)
{
    nut_ups_t *u = job->ups;
    char req[NUT_LINE_MAX], ans[NUT_LINE_MAX + 1], code[64];
    int err = 0;
    snprintf(req, sizeof req, "INSTCMD %s %s", u->name, job->command);
    int rc = srv_request(s, req, ans, sizeof ans, &err);
    if (rc != IO_OK) {
        char buf[128];
        ccgw_cmd_reply_error(job->cmd, rc == IO_TIMEOUT ? CCGW_CMD_E_TIMEOUT : CCGW_CMD_E_DEVICE_ERROR,
                             "upsd %s: %s", s->name, io_text(rc, err, buf, sizeof buf));
        return rc;
    }
    if (err_code(ans, code, sizeof code)) {
        const char *t = nut_err_text(code);
        if (strcmp(code, "ACCESS-DENIED") == 0) {
            char p[NUT_REASON_LEN];
            snprintf(p, sizeof p, "upsd %s: access denied for user '%s' (check the password and "
                     "instcmds in upsd.users)", s->name, s->username ? s->username : "");
            LOG_WARN(s, "nut: INSTCMD %s on %s: %s", job->command, u->name, p);
            set_auth_problem(s, p);
        } else if (strcmp(code, "USERNAME-REQUIRED") == 0 || strcmp(code, "PASSWORD-REQUIRED") == 0) {
            LOG_WARN(s, "nut: INSTCMD %s on %s: upsd %s wants a login; set username and password",
                     job->command, u->name, s->name);
        }
        ccgw_cmd_reply_error(job->cmd, CCGW_CMD_E_DEVICE_ERROR, "%s%s%s", code, t ? ": " : "",
                             t ? t : "");
        return IO_OK;
    }
    if (strncmp(ans, "OK", 2) != 0 || (ans[2] && ans[2] != ' ')) {
        ccgw_cmd_reply_error(job->cmd, CCGW_CMD_E_DEVICE_ERROR, "unexpected answer from upsd");
        return IO_PROTO;
    }
    set_auth_problem(s, NULL);
    LOG_INFO(s, "nut: INSTCMD %s on %s@%s: OK", job->command, u->name, s->name);
    ccgw_value_t data[3];
    size_t n = 0;
    data[n++] = CCGW_V_STRING("ups", u->name);
    data[n++] = CCGW_V_STRING("command", job->command);
    if (strncmp(ans, "OK TRACKING ", 12) == 0)
        data[n++] = CCGW_V_STRING("tracking", ans + 12);
    ccgw_cmd_reply_ok(job->cmd, data, n);
    return IO_OK;
}

static nut_job_t *pop_job(nut_server_t *s)
{
    nut_job_t *j = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->q_len) {
        j = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % NUT_QUEUE_LEN;
        s->q_len--;
    }
    pthread_mutex_unlock(&s->lock);
    return j;
}

/* Makes sure the server is connected (and logged in). */
static int ensure_connected(nut_server_t *s, char *why, size_t whylen)
{
    if (s->fd >= 0)
        return IO_OK;
    int rc = srv_connect(s, why, whylen);
    if (rc == IO_OK) {
        rc = srv_login(s, why, whylen);
        if (rc != IO_OK)
            srv_close(s);
    }
    if (rc == IO_OK) {
        if (s->conn_reason[0])
            LOG_INFO(s, "nut: connected to upsd %s", s->name);
        s->conn_reason[0] = '\0';
    } else if (rc != IO_STOP && strcmp(s->conn_reason, why) != 0) {
        LOG_WARN(s, "nut: %s", why);
        snprintf(s->conn_reason, sizeof s->conn_reason, "%s", why);
    }
    return rc;
}

static int poll_all(nut_server_t *s)
{
    for (size_t i = 0; i < s->n_ups; i++) {
        nut_ups_t *u = &s->upses[i];
        char code[64], why[NUT_REASON_LEN];
        int err = 0;
        int rc = poll_ups(s, u, code, sizeof code, &err);
        if (rc != IO_OK) {
            if (rc == IO_STOP)
                return rc;
            char buf[128];
            snprintf(why, sizeof why, "connection to upsd %s lost: %s", s->name,
                     io_text(rc, err, buf, sizeof buf));
            LOG_WARN(s, "nut: %s", why);
            snprintf(s->conn_reason, sizeof s->conn_reason, "%s", why);
            srv_close(s);
            all_offline(s, why);
            return rc;
        }
        if (code[0]) {
            const char *t = nut_err_text(code);
            if (strcmp(code, "DRIVER-NOT-CONNECTED") == 0)
                snprintf(why, sizeof why, "upsd: driver not connected (ERR DRIVER-NOT-CONNECTED)");
            else if (strcmp(code, "DATA-STALE") == 0)
                snprintf(why, sizeof why, "upsd: data stale, the driver is not updating (ERR DATA-STALE)");
            else
                snprintf(why, sizeof why, "upsd: %s (ERR %s)", t ? t : "error", code);
            ups_offline(u, why);
            continue;
        }
        if (!u->status_have || nut_status_pending(nut_status_flags(u->status_raw))) {
            /* a (re)started driver that has no data yet (no ups.status, or
             * "WAIT"): not online until the UPS says what it is */
            ups_offline(u, "upsd: the driver has no UPS data yet (waiting for ups.status)");
            continue;
        }
        ups_publish(u);
    }
    return IO_OK;
}

static void *worker(void *arg)
{
    nut_server_t *s = arg;
    uint64_t next_poll = 0;
    char why[NUT_REASON_LEN];

    while (!srv_stopping(s)) {
        /* instant commands first: they wait on nobody's poll */
        nut_job_t *job;
        while ((job = pop_job(s)) != NULL) {
            int rc = ensure_connected(s, why, sizeof why);
            if (rc != IO_OK) {
                ccgw_cmd_reply_error(job->cmd, CCGW_CMD_E_DEVICE_ERROR, "%s",
                                     rc == IO_STOP ? "instance stopping" : why);
            } else if (run_job(s, job) != IO_OK) {
                srv_close(s);
                next_poll = 0; /* find out at once what the UPSes say */
            }
            free(job);
        }
        if (srv_stopping(s))
            break;

        uint64_t now = mono_ms();
        if (now >= next_poll) {
            next_poll = now + s->poll_ms;
            int rc = ensure_connected(s, why, sizeof why);
            if (rc == IO_OK)
                rc = poll_all(s);
            else if (rc != IO_STOP)
                all_offline(s, why);
            if (rc == IO_STOP)
                break;
        }

        now = mono_ms();
        if (now < next_poll) {
            struct pollfd p = {.fd = s->wake_fd, .events = POLLIN};
            int n = poll(&p, 1, (int)(next_poll - now));
            if (n > 0)
                drain_wake(s);
        }
    }
    srv_close(s);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Start, stop, enqueue                                                       */
/* ------------------------------------------------------------------------ */

static void fail_queued(nut_server_t *s, const char *why)
{
    nut_job_t *job;
    while ((job = pop_job(s)) != NULL) {
        ccgw_cmd_reply_error(job->cmd, CCGW_CMD_E_DEVICE_ERROR, "%s", why);
        free(job);
    }
}

static void server_stop(nut_server_t *s)
{
    if (s->thread_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_mutex_unlock(&s->lock);
        uint64_t one = 1;
        ssize_t w = write(s->wake_fd, &one, sizeof one);
        (void)w;
        pthread_join(s->thread, NULL);
        s->thread_started = false;
    }
    fail_queued(s, "instance stopping");
    if (s->wake_fd >= 0) {
        close(s->wake_fd);
        s->wake_fd = -1;
    }
    srv_close(s);
}

int nut_servers_start(nut_t *nut)
{
    for (size_t i = 0; i < nut->n_servers; i++) {
        nut_server_t *s = &nut->servers[i];
        s->stop = false;
        s->q_head = s->q_len = 0;
        s->conn_reason[0] = '\0';
        s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->wake_fd < 0 || pthread_create(&s->thread, NULL, worker, s) != 0) {
            CCGW_ERROR(nut->inst, "nut: cannot start the worker for upsd %s", s->name);
            if (s->wake_fd >= 0) {
                close(s->wake_fd);
                s->wake_fd = -1;
            }
            for (size_t k = 0; k < i; k++)
                server_stop(&nut->servers[k]);
            return CCGW_ENOMEM;
        }
        s->thread_started = true;
    }
    return CCGW_OK;
}

void nut_servers_stop(nut_t *nut)
{
    for (size_t i = 0; i < nut->n_servers; i++) {
        nut_server_t *s = &nut->servers[i];
        if (s->thread_started) {
            pthread_mutex_lock(&s->lock);
            s->stop = true;
            pthread_mutex_unlock(&s->lock);
            uint64_t one = 1;
            ssize_t w = write(s->wake_fd, &one, sizeof one);
            (void)w;
        }
    }
    for (size_t i = 0; i < nut->n_servers; i++)
        server_stop(&nut->servers[i]);
}

int nut_server_enqueue(nut_server_t *s, nut_job_t *job)
{
    int rc = CCGW_OK;
    pthread_mutex_lock(&s->lock);
    if (!s->thread_started || s->stop)
        rc = CCGW_ESTOPPED;
    else if (s->q_len >= NUT_QUEUE_LEN)
        rc = CCGW_EFULL;
    else {
        s->queue[(s->q_head + s->q_len) % NUT_QUEUE_LEN] = job;
        s->q_len++;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc == CCGW_OK) {
        uint64_t one = 1;
        ssize_t w = write(s->wake_fd, &one, sizeof one);
        (void)w;
    }
    return rc;
}
