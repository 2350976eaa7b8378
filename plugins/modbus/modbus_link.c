/*
 * modbus_link.c - one worker thread per link: polling, writes, reachability.
 *
 * A link is one libmodbus context: a TCP device's own connection, the one
 * connection of the TCP devices with `connection: shared` on one host:port,
 * or an RTU serial line shared by its devices (one request at a time).
 * Its worker alone uses the context. It sleeps on the link's job queue of
 * writes (ccgw/jobq.h, MB_WRITE_QUEUE_LEN; at the limit a write is answered
 * `busy`) until the next device is due or a write is queued, so a silent
 * device only ever delays devices on the same link, and stop() wakes it at
 * once. stop() also shuts down the socket of a TCP request in flight, so it
 * does not wait out a response timeout.
 *
 * Threads: the worker calls only the SDK's thread-safe calls (emit calls,
 * ccgw_cmd_reply_*, ccgw_instance_health, ccgw_log). mb_link_enqueue() runs
 * on the instance thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>

#include "modbus_plugin.h"

#define LOG_ERROR(l, ...) CCGW_ERROR((l)->mb->inst, __VA_ARGS__)
#define LOG_WARN(l, ...) CCGW_WARN((l)->mb->inst, __VA_ARGS__)
#define LOG_INFO(l, ...) CCGW_INFO((l)->mb->inst, __VA_ARGS__)
#define LOG_DEBUG(l, ...) CCGW_DEBUG((l)->mb->inst, __VA_ARGS__)

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                     */
/* ------------------------------------------------------------------------ */

static bool is_exception(int err)
{
    return err > MODBUS_ENOBASE && err < MODBUS_ENOBASE + MODBUS_EXCEPTION_MAX;
}

static bool is_timeout(int err)
{
    return err == ETIMEDOUT;
}

/* Not errno values: our own reasons. */
#define MB_ERESOLVE (-1000) /* getaddrinfo failed */
#define MB_ESTOPPED (-1001) /* cut short by stop() */
#define MB_EFDSETSIZE (-1002) /* no descriptor below FD_SETSIZE for it (libmodbus uses select) */

/* A short human reason for errno `err` after a libmodbus call. */
static void err_text(int err, char *buf, size_t len)
{
    const char *s = NULL;

    if (is_exception(err)) {
        mb_exception_text(err - MODBUS_ENOBASE, buf, len);
        return;
    }
    switch (err) {
    case MB_ERESOLVE:
        s = "cannot resolve host";
        break;
    case MB_ESTOPPED:
        s = "instance stopping";
        break;
    case MB_EFDSETSIZE:
        s = "no descriptor below FD_SETSIZE (1024) left for libmodbus, which waits with select()";
        break;
    case ETIMEDOUT:
        s = "timeout";
        break;
    case ECONNREFUSED:
        s = "connection refused";
        break;
    case ECONNRESET:
    case EPIPE:
        s = "connection reset";
        break;
    case EHOSTUNREACH:
        s = "host unreachable";
        break;
    case ENETUNREACH:
        s = "network unreachable";
        break;
    case ENOENT:
        s = "no such serial device";
        break;
    case EACCES:
        s = "permission denied";
        break;
    case EMBBADCRC:
        s = "bad CRC in response";
        break;
    case EMBBADDATA:
        s = "invalid response data";
        break;
    case EMBBADEXC:
        s = "invalid exception code";
        break;
    case EMBUNKEXC:
        s = "unknown exception code";
        break;
    case EMBMDATA:
        s = "too many data in response";
        break;
    case EMBBADSLAVE:
        s = "response from another unit";
        break;
    default:
        break;
    }
    if (s) {
        snprintf(buf, len, "%s", s);
        return;
    }
    char tmp[128];
    const char *e = strerror_r(err, tmp, sizeof tmp); /* GNU variant (_GNU_SOURCE) */
    snprintf(buf, len, "%s", e ? e : "I/O error");
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
        buf[0] = (char)(buf[0] - 'A' + 'a');
}

/* ------------------------------------------------------------------------ */
/* Connection                                                                 */
/* ------------------------------------------------------------------------ */

static bool link_stopping(mb_link_t *l)
{
    pthread_mutex_lock(&l->lock);
    bool s = l->stop;
    pthread_mutex_unlock(&l->lock);
    return s;
}

/* Puts /dev/null on the link's reserved descriptor number (closing the socket
 * that was there, atomically); -1 when it cannot (the slot is then given up). */
static int slot_park(mb_link_t *l)
{
    int z = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (z < 0 || dup3(z, l->sock_slot, O_CLOEXEC) < 0) {
        if (z >= 0)
            close(z);
        close(l->sock_slot);
        l->sock_slot = -1;
        return -1;
    }
    close(z);
    return 0;
}

static void link_drop(mb_link_t *l)
{
    if (!l->connected)
        return;
    if (l->transport == MB_TCP && l->sock_slot >= 0) {
        slot_park(l); /* closes the socket; keeps the number for the next one */
        modbus_set_socket(l->ctx, -1);
    } else {
        modbus_close(l->ctx);
    }
    l->connected = false;
}

static void set_device(mb_link_t *l, const mb_device_t *d)
{
    modbus_set_slave(l->ctx, d->unit_id);
    modbus_set_response_timeout(l->ctx, d->timeout_ms / 1000u, (d->timeout_ms % 1000u) * 1000u);
}

static bool self_connected(int fd)
{
    struct sockaddr_storage a, b;
    socklen_t la = sizeof a, lb = sizeof b;
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&a, &la) != 0 ||
        getpeername(fd, (struct sockaddr *)&b, &lb) != 0)
        return false;
    return la == lb && memcmp(&a, &b, la) == 0;
}

/* Connect one address; 0 and *out = socket, or an errno. Waits at most
 * timeout_ms, and returns MB_ESTOPPED as soon as stop() signals wake_fd. */
static int tcp_connect_one(mb_link_t *l, const struct addrinfo *ai, int timeout_ms, int *out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return errno;
    int err = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            err = errno;
        } else {
            struct pollfd p[2] = {{.fd = fd, .events = POLLOUT}, {.fd = l->wake_fd, .events = POLLIN}};
            int n;
            do
                n = poll(p, 2, timeout_ms);
            while (n < 0 && errno == EINTR);
            if (n < 0) {
                err = errno;
            } else if (n == 0) {
                err = ETIMEDOUT;
            } else if (p[1].revents) {
                err = MB_ESTOPPED;
            } else {
                socklen_t len = sizeof err;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                    err = errno;
            }
        }
    }
    /* Connecting to a closed local port in the ephemeral range can pick that
     * very port as source and connect the socket to itself: that is refused. */
    if (err == 0 && self_connected(fd))
        err = ECONNREFUSED;
    if (err) {
        close(fd);
        return err;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *out = fd;
    return 0;
}

/* TCP connect that stop() can interrupt (modbus_connect() cannot: it would
 * hold stop() for up to timeout_ms on an unreachable host). The socket is
 * non-blocking, as libmodbus's own, and handed over with modbus_set_socket(). */
static int tcp_connect(mb_link_t *l, const mb_device_t *d)
{
    struct addrinfo hints, *res = NULL;
    char port[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    snprintf(port, sizeof port, "%d", l->port);
    if (getaddrinfo(l->host, port, &hints, &res) != 0 || !res)
        return MB_ERESOLVE;
    int err = ECONNREFUSED, fd = -1;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        err = tcp_connect_one(l, ai, (int)d->timeout_ms, &fd);
        if (err == 0 || err == MB_ESTOPPED)
            break;
    }
    freeaddrinfo(res);
    if (err)
        return err;
    /* onto the reserved number below FD_SETSIZE (the new socket's may be above it) */
    if (l->sock_slot >= 0 && fd != l->sock_slot) {
        if (dup3(fd, l->sock_slot, O_CLOEXEC) < 0) {
            err = errno;
            close(fd);
            return err;
        }
        close(fd);
        fd = l->sock_slot;
    }
    if (fd >= FD_SETSIZE) { /* libmodbus would abort in FD_SET: the core's reserve (ccgw/fd.h) */
        int low = ccgw_fd_low(fd);
        if (low < 0) {
            if (fd == l->sock_slot)
                slot_park(l);
            else
                close(fd);
            return MB_EFDSETSIZE;
        }
        if (fd == l->sock_slot)
            l->sock_slot = low; /* the link keeps the low number from now on */
        fd = low;
    }
    modbus_set_socket(l->ctx, fd);
    return 0;
}

/* 0 or an errno. */
static int link_connect(mb_link_t *l, const mb_device_t *d)
{
    if (l->connected)
        return 0;
    set_device(l, d);
    if (l->transport == MB_TCP) {
        int err = tcp_connect(l, d);
        if (err)
            return err;
    } else if (modbus_connect(l->ctx) == -1) {
        int err = errno ? errno : EIO;
        modbus_close(l->ctx);
        return err;
    } else {
        /* the serial port too: libmodbus selects on it */
        int s = modbus_get_socket(l->ctx), low = ccgw_fd_low(s);
        if (low < 0) {
            modbus_close(l->ctx);
            return MB_EFDSETSIZE;
        }
        if (low != s)
            modbus_set_socket(l->ctx, low);
    }
    l->connected = true;
    LOG_DEBUG(l, "%s: connected", l->name);
    return 0;
}

/* After a failed request: recover the link for the next one. */
static void link_recover(mb_link_t *l, int err)
{
    if (is_exception(err))
        return; /* the device answered: the link is fine */
    if (l->transport == MB_TCP) {
        /* a late answer would desynchronise the stream: start afresh */
        link_drop(l);
    } else if (is_timeout(err) || err == EMBBADCRC || err == EMBBADDATA || err == EMBBADSLAVE ||
               err == EMBMDATA) {
        modbus_flush(l->ctx);
    } else {
        link_drop(l);
    }
}

/* Mark the TCP socket of a request about to be made, so stop() can cut it. */
static void busy_begin(mb_link_t *l)
{
    if (l->transport != MB_TCP)
        return;
    pthread_mutex_lock(&l->lock);
    l->busy_fd = modbus_get_socket(l->ctx);
    pthread_mutex_unlock(&l->lock);
}

static void busy_end(mb_link_t *l)
{
    if (l->transport != MB_TCP)
        return;
    pthread_mutex_lock(&l->lock);
    l->busy_fd = -1;
    pthread_mutex_unlock(&l->lock);
}

/* ------------------------------------------------------------------------ */
/* Health and reachability                                                    */
/* ------------------------------------------------------------------------ */

/* Under mb->health_lock. */
static void health_update_locked(mb_instance_t *mb)
{
    if (mb->n_offline == 0) {
        mb->health = CCGW_HEALTH_OK;
        mb->health_reason[0] = '\0';
        ccgw_instance_health(mb->inst, CCGW_HEALTH_OK, NULL);
        return;
    }
    const mb_device_t *first = NULL;
    for (size_t i = 0; i < mb->n_devices && !first; i++) {
        if (mb->devices[i].status == MB_DEV_OFFLINE)
            first = &mb->devices[i];
    }
    if (mb->n_offline == 1 && first)
        snprintf(mb->health_reason, sizeof mb->health_reason, "device %s offline: %s", first->id,
                 first->offline_reason);
    else
        snprintf(mb->health_reason, sizeof mb->health_reason,
                 "%zu of %zu devices offline (%s: %s, ...)", mb->n_offline, mb->n_devices,
                 first ? first->id : "?", first ? first->offline_reason : "?");
    mb->health = CCGW_HEALTH_DEGRADED;
    ccgw_instance_health(mb->inst, CCGW_HEALTH_DEGRADED, mb->health_reason);
}

static void device_success(mb_link_t *l, mb_device_t *d)
{
    mb_instance_t *mb = d->mb;
    unsigned streak = d->fail_streak;

    d->fail_streak = 0;
    d->last_reason[0] = '\0';
    pthread_mutex_lock(&mb->health_lock);
    mb_dev_status_t old = d->status;
    if (old != MB_DEV_ONLINE) {
        d->status = MB_DEV_ONLINE;
        d->offline_reason[0] = '\0';
        ccgw_device_set_online(d->dev, true, NULL);
        if (old == MB_DEV_OFFLINE) {
            mb->n_offline--;
            health_update_locked(mb);
        }
    }
    pthread_mutex_unlock(&mb->health_lock);
    if (old == MB_DEV_OFFLINE)
        LOG_WARN(l, "%s: back online after %u failed polls (%llu errors in total)", d->id, streak,
                 (unsigned long long)d->n_errors);
    else if (old == MB_DEV_UNKNOWN)
        LOG_INFO(l, "%s: online (%s)", d->id, l->name);
}

static void device_failure(mb_link_t *l, mb_device_t *d, const char *reason)
{
    mb_instance_t *mb = d->mb;

    d->n_errors++;
    d->fail_streak++;
    LOG_DEBUG(l, "%s: poll failed (%s), %u in a row", d->id, reason, d->fail_streak);
    if (d->fail_streak < d->offline_after) {
        snprintf(d->last_reason, sizeof d->last_reason, "%s", reason);
        return;
    }
    pthread_mutex_lock(&mb->health_lock);
    mb_dev_status_t old = d->status;
    bool changed = old != MB_DEV_OFFLINE || strcmp(d->offline_reason, reason) != 0;
    if (changed) {
        snprintf(d->offline_reason, sizeof d->offline_reason, "%s", reason);
        if (old != MB_DEV_OFFLINE)
            mb->n_offline++;
        d->status = MB_DEV_OFFLINE;
        ccgw_device_set_online(d->dev, false, d->offline_reason);
        health_update_locked(mb);
    }
    pthread_mutex_unlock(&mb->health_lock);
    if (old != MB_DEV_OFFLINE)
        LOG_WARN(l, "%s: offline after %u failed polls: %s", d->id, d->fail_streak, reason);
    else if (changed)
        LOG_DEBUG(l, "%s: still offline, now: %s", d->id, reason);
    snprintf(d->last_reason, sizeof d->last_reason, "%s", reason);
}

/* ------------------------------------------------------------------------ */
/* Polling                                                                    */
/* ------------------------------------------------------------------------ */

/* One read request with retries. 0 or an errno. */
static int read_block(mb_link_t *l, mb_device_t *d, mb_rblock_t *b)
{
    int last = 0;
    const mb_block_t *q = &b->req;

    for (unsigned attempt = 0; attempt <= d->retries; attempt++) {
        if (attempt > 0 && link_stopping(l))
            break;
        int err = link_connect(l, d);
        if (err) {
            last = err;
            continue;
        }
        set_device(l, d);
        busy_begin(l);
        int rc;
        switch (q->table) {
        case MB_TABLE_COIL:
            rc = modbus_read_bits(l->ctx, (int)q->address, (int)q->count, d->bits + b->buf_off);
            break;
        case MB_TABLE_DISCRETE:
            rc = modbus_read_input_bits(l->ctx, (int)q->address, (int)q->count,
                                        d->bits + b->buf_off);
            break;
        case MB_TABLE_HOLDING:
            rc = modbus_read_registers(l->ctx, (int)q->address, (int)q->count,
                                       d->regs + b->buf_off);
            break;
        default:
            rc = modbus_read_input_registers(l->ctx, (int)q->address, (int)q->count,
                                             d->regs + b->buf_off);
            break;
        }
        err = errno;
        busy_end(l);
        if (rc == (int)q->count)
            return 0;
        if (rc >= 0 || err == 0)
            err = EMBBADDATA;
        last = err;
        char why[MB_REASON_LEN];
        err_text(err, why, sizeof why);
        LOG_DEBUG(l, "%s: FC%u %u+%u failed (attempt %u): %s", d->id, mb_read_function(q->table),
                  (unsigned)q->address, (unsigned)q->count, attempt + 1, why);
        link_recover(l, err);
        /* An exception is the device's deliberate answer; repeat only "busy". */
        if (is_exception(err) && err != EMBXSBUSY && err != EMBXACK)
            break;
    }
    return last;
}

static ccgw_value_t make_value(const char *name, const char *unit)
{
    ccgw_value_t v;
    memset(&v, 0, sizeof v);
    v.name = name;
    v.unit = unit;
    return v;
}

static void add_value(mb_device_t *d, mb_publish_t pub, ccgw_value_t v, size_t *nt, size_t *ns)
{
    if (pub == MB_PUB_TELEMETRY) {
        d->tel[(*nt)++] = v;
    } else if (pub == MB_PUB_STATE) {
        v.unit = NULL;
        d->state[(*ns)++] = v;
    }
}

static void eval_alarm(mb_link_t *l, mb_device_t *d, mb_alarm_t *a, const char *name, bool v)
{
    if (!a->present)
        return;
    bool want = v == a->when;
    if (want == a->active)
        return;
    char msg[200];
    const char *text = a->message;
    if (!text) {
        snprintf(msg, sizeof msg, "%s is %s", name, v ? "true" : "false");
        text = msg;
    }
    /* Edge-triggered: remember the verdict even if the core refused the
     * call (it logs why), so a bad alarm is not re-sent every poll. */
    a->active = want;
    if (want) {
        ccgw_value_t data[] = {CCGW_V_STRING("point", name), CCGW_V_BOOL("value", v)};
        ccgw_alarm_raise(d->dev, a->code, a->severity, text, data, CCGW_COUNT(data));
        LOG_INFO(l, "%s: alarm %s raised (%s)", d->id, a->code, text);
    } else {
        ccgw_alarm_clear(d->dev, a->code, text);
        LOG_INFO(l, "%s: alarm %s cleared", d->id, a->code);
    }
}

/* Decode every point whose block was read and publish in one call each. */
static void publish_values(mb_link_t *l, mb_device_t *d, bool poll_ok)
{
    size_t nt = 0, ns = 0;

    for (size_t i = 0; i < d->n_points; i++) {
        mb_point_t *p = &d->points[i];
        const mb_rblock_t *b = &d->blocks[p->block];
        if (!b->ok)
            continue;
        size_t off = b->buf_off + (p->address - b->req.address);
        ccgw_value_t v = make_value(p->name, p->unit);

        if (mb_table_is_bits(p->table)) {
            bool bit = d->bits[off] != 0;
            v.type = CCGW_VAL_BOOL;
            v.v.b = bit;
            add_value(d, p->publish, v, &nt, &ns);
            eval_alarm(l, d, &p->alarm, p->name, bit);
            continue;
        }
        mb_raw_t raw = mb_decode_words(&p->fmt, d->regs + off);
        switch (p->fmt.type) {
        case MB_TYPE_BOOL:
            v.type = CCGW_VAL_BOOL;
            v.v.b = raw.i != 0;
            add_value(d, p->publish, v, &nt, &ns);
            eval_alarm(l, d, &p->alarm, p->name, raw.i != 0);
            break;
        case MB_TYPE_BITFIELD:
            for (size_t j = 0; j < p->n_bits; j++) {
                mb_bitdef_t *bd = &p->bits[j];
                bool bit = mb_bit((uint16_t)raw.i, bd->bit);
                ccgw_value_t bv = make_value(bd->name, NULL);
                bv.type = CCGW_VAL_BOOL;
                bv.v.b = bit;
                add_value(d, bd->publish, bv, &nt, &ns);
                eval_alarm(l, d, &bd->alarm, bd->name, bit);
            }
            break;
        default:
            if (p->n_enums && !raw.is_float) {
                if (raw.i >= 0 && (uint64_t)raw.i < p->n_enums) {
                    v.type = CCGW_VAL_STRING;
                    v.v.s = p->enums[raw.i];
                } else {
                    v.type = CCGW_VAL_INT;
                    v.v.i = raw.i;
                }
            } else if (mb_format_is_integral(&p->fmt)) {
                v.type = CCGW_VAL_INT;
                v.v.i = raw.i;
            } else {
                v.type = CCGW_VAL_DOUBLE; /* NaN/inf: the core encodes null */
                v.v.d = mb_raw_to_eng(&p->fmt, raw);
            }
            add_value(d, p->publish, v, &nt, &ns);
            break;
        }
    }
    if (ns && poll_ok && d->status != MB_DEV_ONLINE)
        ccgw_device_set_state(d->dev, true, NULL, d->state, ns); /* back: one publish with its attributes */
    else if (ns)
        ccgw_device_update_state(d->dev, d->state, ns);
    if (nt)
        ccgw_device_telemetry(d->dev, d->tel, nt);
}

static void poll_device(mb_link_t *l, mb_device_t *d)
{
    char reason[MB_REASON_LEN] = "";
    bool failed = false;

    d->n_polls++;
    for (size_t i = 0; i < d->n_blocks; i++)
        d->blocks[i].ok = false;
    for (size_t i = 0; i < d->n_blocks; i++) {
        if (link_stopping(l))
            return; /* no verdict on a poll cut short by stop() */
        int err = read_block(l, d, &d->blocks[i]);
        if (err == 0) {
            d->blocks[i].ok = true;
            continue;
        }
        if (link_stopping(l))
            return;
        if (!failed) {
            err_text(err, reason, sizeof reason);
            failed = true;
        }
        /* The link itself failed: the other blocks would only wait out
         * their own timeouts. An exception concerns one block: go on. */
        if (!is_exception(err))
            break;
    }
    if (failed) {
        device_failure(l, d, reason);
        publish_values(l, d, false);
    } else {
        /* values first, so that the first online state already carries them */
        publish_values(l, d, true);
        device_success(l, d);
    }
}

/* ------------------------------------------------------------------------ */
/* Writes                                                                     */
/* ------------------------------------------------------------------------ */

static void reply_written(mb_write_t *w)
{
    const mb_point_t *p = w->point;
    ccgw_value_t data[3];

    data[0] = CCGW_V_STRING("point", p->name);
    if (p->fmt.type == MB_TYPE_BOOL)
        data[1] = CCGW_V_BOOL("value", w->raw.i != 0);
    else if (w->enum_name)
        data[1] = CCGW_V_STRING("value", w->enum_name);
    else if (mb_format_is_integral(&p->fmt))
        data[1] = CCGW_V_INT("value", w->raw.i);
    else /* what was written, after rounding: 21.04 at scale 0.1 wrote 21 */
        data[1] = CCGW_V_DOUBLE("value", mb_raw_to_eng(&p->fmt, w->raw), NULL);
    if (w->raw.is_float)
        data[2] = CCGW_V_DOUBLE("raw", w->raw.f, NULL);
    else
        data[2] = CCGW_V_INT("raw", w->raw.i);
    ccgw_cmd_reply_ok(w->cmd, data, CCGW_COUNT(data));
}

static void do_write(mb_link_t *l, mb_write_t *w)
{
    mb_device_t *d = w->dev;
    const mb_point_t *p = w->point;
    unsigned fc = mb_write_function(p->table, p->fmt.type);
    char reason[MB_REASON_LEN];
    int rc = -1, err;

    err = link_connect(l, d);
    if (err == 0) {
        set_device(l, d);
        busy_begin(l);
        switch (fc) {
        case 5:
            rc = modbus_write_bit(l->ctx, (int)p->address, w->words[0] ? TRUE : FALSE);
            break;
        case 6:
            rc = modbus_write_register(l->ctx, (int)p->address, w->words[0]);
            break;
        case 16:
            rc = modbus_write_registers(l->ctx, (int)p->address, 2, w->words);
            break;
        default:
            errno = EINVAL;
            break;
        }
        err = errno;
        busy_end(l);
        if (rc == (fc == 16 ? 2 : 1)) {
            LOG_INFO(l, "%s: wrote %s = %g (raw %g, FC%u)", d->id, p->name,
                     mb_raw_to_eng(&p->fmt, w->raw), w->raw.f, fc);
            reply_written(w);
            /* show the new value soon: poll the device next */
            pthread_mutex_lock(&l->lock);
            d->next_poll_ms = 0;
            pthread_mutex_unlock(&l->lock);
            free(w);
            return;
        }
        if (rc >= 0 || err == 0)
            err = EMBBADDATA;
        link_recover(l, err);
    }
    if (link_stopping(l)) { /* stop() cut the request: say so, not "connection reset" */
        ccgw_cmd_reply_error(w->cmd, CCGW_CMD_E_DEVICE_ERROR, "instance stopping");
        free(w);
        return;
    }
    err_text(err, reason, sizeof reason);
    LOG_WARN(l, "%s: write %s failed: %s", d->id, p->name, reason);
    if (is_timeout(err))
        ccgw_cmd_reply_error(w->cmd, CCGW_CMD_E_TIMEOUT,
                             "no answer from unit %d within %u ms writing %s", d->unit_id,
                             (unsigned)d->timeout_ms, p->name);
    else
        ccgw_cmd_reply_error(w->cmd, CCGW_CMD_E_DEVICE_ERROR, "writing %s: %s", p->name, reason);
    free(w);
}

/* ------------------------------------------------------------------------ */
/* Worker                                                                     */
/* ------------------------------------------------------------------------ */

static void *link_main(void *arg)
{
    mb_link_t *l = arg;

    pthread_mutex_lock(&l->lock);
    while (!l->stop) {
        pthread_mutex_unlock(&l->lock);
        mb_write_t *w = ccgw_jobq_pop(l->writes);
        if (w) {
            do_write(l, w);
            pthread_mutex_lock(&l->lock);
            continue;
        }
        uint64_t now = mono_ms();
        mb_device_t *due = NULL;
        uint64_t next = UINT64_MAX;
        for (size_t i = 0; i < l->n_devices; i++) {
            mb_device_t *d = l->devices[i];
            if (d->next_poll_ms <= now && (!due || d->next_poll_ms < due->next_poll_ms))
                due = d;
            if (d->next_poll_ms < next)
                next = d->next_poll_ms;
        }
        if (due) {
            uint64_t planned = due->next_poll_ms;
            poll_device(l, due);
            /* Keep the cadence; after an overrun go on at once, without a
             * burst of make-up polls. (planned is 0 after a write.) */
            uint64_t after = mono_ms();
            uint64_t n = (planned ? planned : now) + due->poll_interval_ms;
            due->next_poll_ms = n > after ? n : after;
            pthread_mutex_lock(&l->lock);
            continue;
        }
        /* nothing due: sleep until the next poll, a write or stop() (which
         * closes the queue). poll() on the queue's descriptor rather than
         * ccgw_jobq_wait(): one system call per sleep, where a condition
         * variable's wait costs a second one (glibc takes the mutex back as
         * contended, so its unlock always wakes through the kernel); with a
         * thread per TCP device that was 5% of the gateway's CPU at 1,000
         * devices (docs/performance.md, "Modbus at scale"). */
        uint64_t wait = next == UINT64_MAX ? 0 : next - now;
        struct pollfd pq = {.fd = ccgw_jobq_fd(l->writes), .events = POLLIN};
        int pr = poll(&pq, 1, next == UINT64_MAX ? -1 : wait > 600000u ? 600000 : (int)wait);
        if (pr != 0 && (w = ccgw_jobq_pop(l->writes)) != NULL)
            do_write(l, w);
        pthread_mutex_lock(&l->lock);
    }
    pthread_mutex_unlock(&l->lock);
    link_drop(l);
    return NULL;
}

static void refuse_write(void *job, void *ctx)
{
    (void)ctx;
    mb_write_t *w = job;
    ccgw_cmd_reply_error(w->cmd, CCGW_CMD_E_DEVICE_ERROR, "instance stopping");
    free(w);
}

static int link_open(mb_link_t *l)
{
    if (l->transport == MB_TCP) {
        char port[16];
        snprintf(port, sizeof port, "%d", l->port);
        l->ctx = modbus_new_tcp_pi(l->host, port);
    } else {
        l->ctx = modbus_new_rtu(l->serial, l->baud, l->parity, l->data_bits, l->stop_bits);
    }
    if (!l->ctx) {
        char reason[MB_REASON_LEN];
        err_text(errno, reason, sizeof reason);
        LOG_ERROR(l, "%s: cannot create the Modbus context: %s", l->name, reason);
        return CCGW_EINVAL;
    }
    modbus_set_error_recovery(l->ctx, MODBUS_ERROR_RECOVERY_NONE);
    l->connected = false;
    return CCGW_OK;
}

static void link_close(mb_link_t *l)
{
    if (l->ctx) {
        link_drop(l);
        modbus_free(l->ctx);
        l->ctx = NULL;
    }
    if (l->sock_slot >= 0) {
        close(l->sock_slot);
        l->sock_slot = -1;
    }
}

/* Moves a descriptor above FD_SETSIZE when the limit allows, leaving the low
 * numbers to the sockets libmodbus waits on with select(). */
static int fd_up(int fd)
{
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, FD_SETSIZE);
    if (hi < 0)
        return fd;
    close(fd);
    return hi;
}

int mb_links_start(mb_instance_t *mb)
{
    uint64_t now = mono_ms();
    size_t k = 0;

    /* First a low descriptor number for every TCP link's socket, before any
     * other descriptor of the links is made (libmodbus's select() needs the
     * socket below FD_SETSIZE; see sock_slot). */
    for (size_t i = 0; i < mb->n_links; i++) {
        mb_link_t *l = &mb->links[i];
        l->sock_slot = -1;
        if (l->transport == MB_TCP)
            l->sock_slot = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (l->sock_slot >= FD_SETSIZE) { /* a start or reload with many descriptors open */
            int low = ccgw_fd_low(l->sock_slot);
            if (low >= 0)
                l->sock_slot = low;
        }
    }
    for (size_t i = 0; i < mb->n_links; i++) {
        mb_link_t *l = &mb->links[i];
        if (link_open(l) != 0) {
            mb_links_stop(mb);
            return CCGW_EINVAL;
        }
        l->stop = false;
        l->busy_fd = -1;
        l->writes = ccgw_jobq_new(mb->inst, l->name, MB_WRITE_QUEUE_LEN);
        if (!l->writes) {
            link_close(l);
            mb_links_stop(mb);
            return CCGW_ENOMEM;
        }
        l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (l->wake_fd >= 0)
            l->wake_fd = fd_up(l->wake_fd);
        if (l->wake_fd < 0) {
            LOG_ERROR(l, "%s: eventfd: %s", l->name, strerror(errno));
            link_close(l);
            mb_links_stop(mb);
            return CCGW_ENOMEM;
        }
        for (size_t j = 0; j < l->n_devices; j++) {
            mb_device_t *d = l->devices[j];
            /* Spread the first polls of the instance's devices over one interval
             * (at most 1 s), in steps of MB_POLL_SLOT_MS: many devices polled at
             * the same interval never fall due all together (a burst: requests
             * queue at the devices and gateways, polls run tens of ms late), and
             * the few that share a slot reach the core together, so its
             * hand-offs and the MQTT writes are batched (one device per
             * millisecond instead: twice the CPU at 1,000 devices;
             * docs/performance.md, "Modbus at scale (h)"). */
            uint64_t span = d->poll_interval_ms < 1000u ? d->poll_interval_ms : 1000u;
            uint64_t off = (uint64_t)k++ * span / mb->n_devices;
            d->next_poll_ms = now + off - off % MB_POLL_SLOT_MS;
            d->fail_streak = 0;
        }
        int rc = pthread_create(&l->thread, NULL, link_main, l);
        if (rc != 0) {
            LOG_ERROR(l, "%s: cannot start its worker thread: %s", l->name, strerror(rc));
            link_close(l);
            mb_links_stop(mb);
            return CCGW_ENOMEM;
        }
        l->thread_started = true;
        char tname[16];
        snprintf(tname, sizeof tname, "mb:%s",
                 l->n_devices == 1 ? l->devices[0]->id : l->transport == MB_TCP ? l->host : l->serial);
        pthread_setname_np(l->thread, tname);
    }
    return CCGW_OK;
}

void mb_links_stop(mb_instance_t *mb)
{
    /* Tell every worker first, so they wind down in parallel. */
    for (size_t i = 0; i < mb->n_links; i++) {
        mb_link_t *l = &mb->links[i];
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        if (l->busy_fd >= 0)
            shutdown(l->busy_fd, SHUT_RDWR); /* cut a TCP request in flight */
        if (l->wake_fd >= 0) {
            uint64_t one = 1; /* cut a TCP connect in progress */
            ssize_t wr = write(l->wake_fd, &one, sizeof one);
            (void)wr;
        }
        pthread_mutex_unlock(&l->lock);
        ccgw_jobq_close(l->writes); /* refuses new writes, wakes the worker */
    }
    for (size_t i = 0; i < mb->n_links; i++) {
        mb_link_t *l = &mb->links[i];
        if (l->thread_started) {
            pthread_join(l->thread, NULL);
            l->thread_started = false;
        }
        /* Writes still queued get their reply now: none may come later. */
        ccgw_jobq_free(l->writes, refuse_write, NULL);
        l->writes = NULL;
        link_close(l);
        if (l->wake_fd >= 0) {
            close(l->wake_fd);
            l->wake_fd = -1;
        }
    }
}

int mb_link_enqueue(mb_link_t *l, mb_write_t *w)
{
    return l->writes ? ccgw_jobq_push(l->writes, w) : CCGW_ESTOPPED;
}
