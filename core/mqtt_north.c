/* mqtt_north - see mqtt_north.h. */
#include "mqtt_north.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "ccgw/types.h"
#include "command.h"
#include "gateway.h"
#include "log.h"

struct ccgw_mqtt {
    ccgw_gateway_t *gw;
    struct mosquitto *mosq;
    char *cmd_filter;         /* {prefix}/{site}/+/+/cmd/+ */
    atomic_bool connected;
    atomic_bool want_snapshot;
    _Atomic uint64_t inflight;  /* QoS > 0: published, not yet acknowledged (<= max_inflight) */
    _Atomic uint64_t inflight0; /* QoS 0: handed to libmosquitto, not yet written (<= qos0_window) */
    uint64_t qos0_window;       /* max(max_inflight, QOS0_WINDOW_MIN) */
    _Atomic uint64_t connects, disconnects, commands_in;
    int wake_fd;                /* eventfd: sink_wake() ends a sink_wait() */
    atomic_bool started;        /* ccgw_mqtt_start(): connecting is allowed */
    atomic_bool stop_req;       /* ccgw_mqtt_stop(): disconnect, never connect again */
    atomic_bool reconnect_req;  /* ccgw_mqtt_reconnect() */
    atomic_bool closed;         /* after stop_req: no connection left */
    /* north thread only (and ccgw_mqtt_free() once it is gone): */
    bool tried;                 /* mosquitto_connect_*() was called once */
    bool sock_open;             /* a socket was open at the last look */
    bool handshake;             /* socket open, no CONNACK yet */
    bool stale;                 /* that attempt timed out: replaced at next_try_ms */
    uint64_t handshake_until;   /* the attempt times out then (CONNECT_TIMEOUT_MS) */
    bool refused;               /* the broker refused the CONNECT (logged by on_connect) */
    bool disconnect_sent;       /* stop_req: DISCONNECT queued */
    bool in_publish;            /* inside mosquitto_publish_v5() */
    int last_rc, last_errno;    /* the last failed I/O call, for the log */
    unsigned backoff, seed;
    uint64_t failures;
    uint64_t next_try_ms;       /* next connection attempt (ccgw_now_ms()) */
    /* libmosquitto mid -> spool record id of a QoS 1 publish (0 = none),
     * MID_QOS0 for a QoS 0 publish not yet written */
    uint64_t *mid_spool;        /* 65536 entries */
    bool log_cb_on;             /* on_log is installed */
};

#define TAG "mqtt"
/* mid_spool marker of a QoS 0 publish (spool ids never reach it) */
#define MID_QOS0 (UINT64_C(1) << 63)
/* QoS 0 publishes handed to libmosquitto and not yet written: at least this
 * many, whatever max_inflight (they take one socket write to leave) */
#define QOS0_WINDOW_MIN 1024u
/* a connection attempt (TCP, TLS, CONNACK) that takes longer fails: a
 * silently dropped SYN would otherwise wait for the kernel's 2 minutes */
#define CONNECT_TIMEOUT_MS 10000u

/* ---- callbacks (the bus's north thread, inside sink_wait() or a publish) ---- */

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
    (void)flags;
    (void)props;
    ccgw_mqtt_t *m = obj;
    if (rc != 0) {
        CLOG_WARN(TAG, "connection refused by %s:%d: %s", m->gw->cfg->mqtt.host, m->gw->cfg->mqtt.port,
                  mosquitto_reason_string(rc));
        m->refused = true;
        return;
    }
    atomic_fetch_add(&m->connects, 1);
    CLOG_INFO(TAG, "connected to %s:%d", m->gw->cfg->mqtt.host, m->gw->cfg->mqtt.port);
    m->handshake = false;
    m->stale = false;
    m->failures = 0;
    m->backoff = (unsigned)m->gw->cfg->mqtt.reconnect_min_ms;
    /* QoS 0 publishes that were queued on the old connection are gone */
    atomic_store(&m->inflight, 0);
    atomic_store(&m->inflight0, 0);
    int src = mosquitto_subscribe_v5(mosq, NULL, m->cmd_filter, 1, 0, NULL);
    if (src != MOSQ_ERR_SUCCESS)
        CLOG_ERROR(TAG, "subscribe %s: %s", m->cmd_filter, mosquitto_strerror(src));
    atomic_store(&m->want_snapshot, true);
    atomic_store(&m->connected, true);
    /* no ccgw_bus_wake(): the north thread looks at the sink again when
     * sink_wait() returns */
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
    (void)mosq;
    (void)props;
    ccgw_mqtt_t *m = obj;
    bool was = atomic_exchange(&m->connected, false);
    if (was) {
        atomic_fetch_add(&m->disconnects, 1);
        if (rc != 0)
            CLOG_WARN(TAG, "disconnected from %s:%d (%s); reconnecting with backoff",
                      m->gw->cfg->mqtt.host, m->gw->cfg->mqtt.port,
                      rc == MOSQ_ERR_KEEPALIVE ? "no answer within the keepalive" : mosquitto_strerror(rc));
    }
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason, const mosquitto_property *props)
{
    (void)mosq;
    (void)mid;
    (void)props;
    ccgw_mqtt_t *m = obj;
    if (reason >= 0x80)
        CLOG_WARN(TAG, "broker refused publish %d: %s", mid, mosquitto_reason_string(reason));
    /* a spooled record is delivered now (a refused one too: retrying a
     * refusal forever would hold the spool back; it is logged above).
     * Only a QoS 0 publish completes on a write, and a publish writes at
     * once: inside mosquitto_publish_v5() this is a QoS 0 message (the one
     * being published, whose slot is not set yet, or one queued before). */
    uint64_t sid = m->in_publish ? MID_QOS0 : m->mid_spool[(unsigned)mid & 0xffffu];
    m->mid_spool[(unsigned)mid & 0xffffu] = 0;
    bool qos0 = sid == MID_QOS0;
    if (sid && !qos0)
        ccgw_bus_ack(m->gw->bus, sid);
    _Atomic uint64_t *ctr = qos0 ? &m->inflight0 : &m->inflight;
    uint64_t cur = atomic_load(ctr);
    while (cur > 0 && !atomic_compare_exchange_weak(ctr, &cur, cur - 1))
        ;
}

typedef struct mqtt_reply_ctx {
    ccgw_gateway_t *gw;
    char *topic;
    void *corr;
    size_t corr_len;
} mqtt_reply_ctx_t;

static void reply_send(void *ctx, const char *payload, size_t len)
{
    mqtt_reply_ctx_t *r = ctx;
    ccgw_msg_t *msg = ccgw_msg_new(CCGW_KIND_REPLY, r->gw->cfg->mqtt.qos_reply, r->topic, payload, len,
                                   r->corr, r->corr_len);
    ccgw_bus_push(r->gw->bus, msg);
}

static void reply_release(void *ctx)
{
    mqtt_reply_ctx_t *r = ctx;
    free(r->topic);
    free(r->corr);
    free(r);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    (void)mosq;
    ccgw_mqtt_t *m = obj;
    ccgw_gateway_t *gw = m->gw;
    atomic_fetch_add(&m->commands_in, 1);
    /* {site_base}/{class}/{device}/cmd/{name} */
    size_t bl = strlen(gw->site_base);
    if (strncmp(msg->topic, gw->site_base, bl) != 0 || msg->topic[bl] != '/')
        return;
    char buf[512];
    if (snprintf(buf, sizeof buf, "%s", msg->topic + bl + 1) >= (int)sizeof buf) {
        CLOG_WARN(TAG, "ignoring command on an over-long topic");
        return;
    }
    char *parts[4];
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, "/", &save); tok && n < 4; tok = strtok_r(NULL, "/", &save))
        parts[n++] = tok;
    if (n != 4 || strcmp(parts[2], "cmd") != 0)
        return;

    mqtt_reply_ctx_t *r = calloc(1, sizeof *r);
    if (!r)
        return;
    r->gw = gw;
    char *resp = NULL;
    void *corr = NULL;
    uint16_t corr_len = 0;
    mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &resp, false);
    mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &corr_len, false);
    if (resp && *resp && !strpbrk(resp, "+#")) {
        r->topic = resp;
    } else {
        free(resp);
        size_t tl = strlen(msg->topic) + 7;
        r->topic = malloc(tl);
        if (r->topic)
            snprintf(r->topic, tl, "%s/reply", msg->topic);
    }
    r->corr = corr;
    r->corr_len = corr_len;
    if (!r->topic) {
        reply_release(r);
        return;
    }
    ccgw_reply_target_t t = {.send = reply_send, .release = reply_release, .ctx = r};
    /* audit: MQTT has no tokens; the remote is where the reply goes */
    ccgw_audit_who_t who = {.token = "mqtt", .role = "-", .remote = r->topic, .channel = "mqtt"};
    t = ccgw_audit_wrap(gw->audit, &who, strcmp(parts[3], "alarm.ack") ? "command" : "alarm.ack", msg->topic,
                        msg->payload, (size_t)msg->payloadlen, t);
    /* MQTT commands are trusted as far as the broker's ACL lets them in */
    ccgw_cmd_caller_t caller = {.role = CCGW_ROLE_ADMIN, .origin = "mqtt"};
    ccgw_command_dispatch_as(gw, &caller, parts[0], parts[1], parts[3], msg->payload, (size_t)msg->payloadlen, t);
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
    (void)mosq;
    (void)obj;
    if (level & (MOSQ_LOG_ERR))
        CLOG_WARN(TAG, "libmosquitto: %s", str);
    else
        CLOG_DEBUG(TAG, "libmosquitto: %s", str);
}

/* libmosquitto formats a debug line (vsnprintf) for every packet whenever a
 * log callback is installed, whatever we do with it: about 3,000 instructions
 * per publish. Keep the callback only while it can say something we print:
 * at log level debug, or while not connected (connect, TLS and auth errors
 * come through it). North thread (and once before it starts). */
static void sync_log_cb(ccgw_mqtt_t *m)
{
    bool want = ccgw_log_get_level() >= CCGW_LOG_DEBUG || !atomic_load(&m->connected);
    if (want != m->log_cb_on) {
        mosquitto_log_callback_set(m->mosq, want ? on_log : NULL);
        m->log_cb_on = want;
    }
}

/* ---- sink (north thread) ---- */

static void sink_wait(void *ctx, int timeout_ms);
static void sink_wake(void *ctx);

static bool sink_ready(void *ctx)
{
    ccgw_mqtt_t *m = ctx;
    /* one window for each: QoS 0 messages leave it once written, so a small
     * QoS 1 window must not throttle them (measured: QoS 0 into the broker
     * 0.91x raw with one shared window of 1,000, 0.46x with one of 100) */
    return atomic_load(&m->connected) &&
           atomic_load(&m->inflight) < (uint64_t)m->gw->cfg->mqtt.max_inflight &&
           atomic_load(&m->inflight0) < m->qos0_window;
}

static int sink_publish(void *ctx, const ccgw_msg_t *msg)
{
    ccgw_mqtt_t *m = ctx;
    if (!atomic_load(&m->connected))
        return CCGW_ESTATE;
    mosquitto_property *props = NULL;
    if (msg->corr_len)
        mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, msg->corr, (uint16_t)msg->corr_len);
    _Atomic uint64_t *ctr = msg->qos > 0 ? &m->inflight : &m->inflight0;
    atomic_fetch_add(ctr, 1);
    int mid = 0;
    /* written to the socket now, on this thread (libmosquitto without
     * threads: mosquitto_publish_v5() writes what the socket takes) */
    m->in_publish = true;
    int rc = mosquitto_publish_v5(m->mosq, &mid, msg->topic, (int)msg->payload_len,
                                  msg->payload_len ? msg->payload : NULL, msg->qos, msg->retain, props);
    m->in_publish = false;
    /* every publish sets its slot: a stale entry never acknowledges another
     * record (a QoS 0 message already written leaves a harmless marker) */
    if (rc == MOSQ_ERR_SUCCESS)
        m->mid_spool[(unsigned)mid & 0xffffu] = msg->qos > 0 ? msg->spool_id : MID_QOS0;
    mosquitto_property_free_all(&props);
    if (rc == MOSQ_ERR_SUCCESS) {
        if (msg->qos == 0 && msg->spool_id)
            ccgw_bus_ack(m->gw->bus, msg->spool_id); /* QoS 0: handed over is all there is */
        return CCGW_OK;
    }
    uint64_t cur = atomic_load(ctr);
    while (cur > 0 && !atomic_compare_exchange_weak(ctr, &cur, cur - 1))
        ;
    /* the connection failed under the write: keep the message; the next
     * sink_wait() sees the socket's error, closes it and reconnects */
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO || rc == MOSQ_ERR_TLS ||
        rc == MOSQ_ERR_KEEPALIVE)
        return CCGW_ESTATE;
    CLOG_WARN(TAG, "publish to %s failed: %s; message dropped", msg->topic, mosquitto_strerror(rc));
    return CCGW_EIO;
}

static bool sink_take_snapshot(void *ctx)
{
    ccgw_mqtt_t *m = ctx;
    return atomic_exchange(&m->want_snapshot, false);
}

static bool sink_connected(void *ctx)
{
    ccgw_mqtt_t *m = ctx;
    return atomic_load(&m->connected);
}

static bool sink_idle(void *ctx)
{
    ccgw_mqtt_t *m = ctx;
    return !atomic_load(&m->connected) || (atomic_load(&m->inflight) == 0 && atomic_load(&m->inflight0) == 0);
}

void ccgw_mqtt_sink(ccgw_mqtt_t *m, ccgw_sink_t *out)
{
    out->ctx = m;
    out->ready = sink_ready;
    out->publish = sink_publish;
    out->take_snapshot_request = sink_take_snapshot;
    out->idle = sink_idle;
    out->connected = sink_connected;
    out->wait = sink_wait;
    out->wake = sink_wake;
}

/* ---- lifecycle ---- */

ccgw_mqtt_t *ccgw_mqtt_new(ccgw_gateway_t *gw)
{
    const ccgw_mqtt_config_t *c = &gw->cfg->mqtt;
    ccgw_mqtt_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->gw = gw;
    m->qos0_window = (uint64_t)c->max_inflight > QOS0_WINDOW_MIN ? (uint64_t)c->max_inflight : QOS0_WINDOW_MIN;
    m->backoff = (unsigned)c->reconnect_min_ms;
    m->seed = (unsigned)ccgw_now_ms() ^ (unsigned)(uintptr_t)m;
    m->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (m->wake_fd < 0) {
        CLOG_ERROR(TAG, "eventfd: %s", strerror(errno));
        free(m);
        return NULL;
    }
    m->mid_spool = calloc(65536, sizeof *m->mid_spool);
    size_t fl = strlen(gw->site_base) + 16;
    m->cmd_filter = m->mid_spool ? malloc(fl) : NULL;
    if (m->cmd_filter) {
        snprintf(m->cmd_filter, fl, "%s/+/+/cmd/+", gw->site_base);
        /* no mosquitto_threaded_set(): every call into libmosquitto is on
         * the bus's north thread, and a publish writes to the socket at once */
        m->mosq = mosquitto_new(c->client_id, true, m);
        if (!m->mosq)
            CLOG_ERROR(TAG, "mosquitto_new failed");
    }
    if (!m->mosq) {
        close(m->wake_fd);
        free(m->cmd_filter);
        free(m->mid_spool);
        free(m);
        return NULL;
    }
    mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    /* libmosquitto's own in-flight window; ours (max_inflight) bounds memory */
    mosquitto_int_option(m->mosq, MOSQ_OPT_SEND_MAXIMUM, c->max_inflight > 65535 ? 65535 : c->max_inflight);
    mosquitto_connect_v5_callback_set(m->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(m->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(m->mosq, on_publish);
    mosquitto_message_v5_callback_set(m->mosq, on_message);
    mosquitto_log_callback_set(m->mosq, on_log);
    m->log_cb_on = true;
    int rc = MOSQ_ERR_SUCCESS;
    if (c->username)
        rc = mosquitto_username_pw_set(m->mosq, c->username, c->password);
    if (rc == MOSQ_ERR_SUCCESS && c->tls) {
        /* --check-config checked these; say which one if it vanished since */
        const char *const files[][2] = {{"ca_file", c->ca_file}, {"cert_file", c->cert_file},
                                        {"key_file", c->key_file}};
        for (size_t i = 0; i < 3; i++) {
            if (files[i][1] && access(files[i][1], R_OK) != 0) {
                CLOG_ERROR(TAG, "mqtt.tls.%s '%s': %s", files[i][0], files[i][1], strerror(errno));
                rc = MOSQ_ERR_INVAL;
            }
        }
        /* tls without ca_file: trust the system's CA store (a broker with a public certificate) */
        const char *capath = NULL;
        if (rc == MOSQ_ERR_SUCCESS && !c->ca_file) {
            mosquitto_int_option(m->mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
            capath = "/etc/ssl/certs";
        }
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_tls_set(m->mosq, c->ca_file, capath, c->cert_file, c->key_file, NULL);
        if (rc == MOSQ_ERR_SUCCESS && c->tls_insecure)
            rc = mosquitto_tls_insecure_set(m->mosq, true);
    }
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_will_set_v5(m->mosq, gw->status_topic, (int)strlen(gw->will_payload),
                                   gw->will_payload, 1, true, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        CLOG_ERROR(TAG, "cannot set up the MQTT client: %s%s", mosquitto_strerror(rc),
                   c->tls ? " (check mqtt.tls files)" : "");
        mosquitto_destroy(m->mosq);
        close(m->wake_fd);
        free(m->cmd_filter);
        free(m->mid_spool);
        free(m);
        return NULL;
    }
    return m;
}

/* ---- the connection, driven from the bus's north thread ---- */

static void sink_wake(void *ctx)
{
    ccgw_mqtt_t *m = ctx;
    uint64_t one = 1;
    if (write(m->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        CLOG_WARN(TAG, "wake: %s", strerror(errno));
}

/* Sleep up to ms on the wake eventfd alone (no socket). */
static void wait_wake(ccgw_mqtt_t *m, int ms)
{
    struct pollfd p = {.fd = m->wake_fd, .events = POLLIN};
    if (poll(&p, 1, ms) > 0) {
        uint64_t v;
        if (read(m->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
            CLOG_WARN(TAG, "wake: %s", strerror(errno));
    }
}

static const char *err_text(int rc, int err)
{
    if (rc == MOSQ_ERR_KEEPALIVE)
        return "no answer within the keepalive"; /* libmosquitto 2.0.11: "Unknown error." */
    return rc == MOSQ_ERR_ERRNO ? strerror(err) : mosquitto_strerror(rc);
}

/* The next attempt after the current backoff (with jitter), which doubles. */
static void schedule_retry(ccgw_mqtt_t *m)
{
    const ccgw_mqtt_config_t *c = &m->gw->cfg->mqtt;
    unsigned b = m->backoff;
    unsigned jitter = b / 5 ? (unsigned)rand_r(&m->seed) % (b / 5 + 1) : 0;
    m->next_try_ms = ccgw_now_ms() + b - b / 10 + jitter;
    m->backoff = b * 2 > (unsigned)c->reconnect_max_ms ? (unsigned)c->reconnect_max_ms : b * 2;
}

/* A connection attempt failed before the broker accepted it. */
static void attempt_failed(ccgw_mqtt_t *m, int rc, int err)
{
    const ccgw_mqtt_config_t *c = &m->gw->cfg->mqtt;
    m->failures++;
    /* over TLS the broker's reason (an alert: certificate required, unknown
     * CA) may be lost to the connection's reset; say where to look */
    bool tls_drop = c->tls &&
                    (rc == MOSQ_ERR_PROTOCOL || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_TLS ||
                     (rc == MOSQ_ERR_ERRNO && (err == ECONNRESET || err == EPIPE || err == EPROTO || err == ECONNABORTED)));
    if (!m->refused && (m->failures & (m->failures - 1)) == 0) /* 1, 2, 4, 8 ... */
        CLOG_WARN(TAG, "cannot connect to %s:%d: %s%s (attempt %llu); retrying with backoff", c->host, c->port,
                  err_text(rc, err),
                  tls_drop ? "; the broker ended the TLS connection before accepting it: check mqtt.tls "
                             "(ca_file, and cert_file/key_file if it requires a client certificate)"
                           : "",
                  (unsigned long long)m->failures);
    m->refused = false;
    m->handshake = false;
    schedule_retry(m);
}

/* The socket is gone (error, clean disconnect, keepalive). */
static void socket_closed(ccgw_mqtt_t *m)
{
    const ccgw_mqtt_config_t *c = &m->gw->cfg->mqtt;
    m->sock_open = false;
    bool was_stale = m->stale;
    m->stale = false;
    if (atomic_exchange(&m->connected, false)) { /* on_disconnect() did not see it */
        atomic_fetch_add(&m->disconnects, 1);
        if (!atomic_load(&m->stop_req))
            CLOG_WARN(TAG, "connection to %s:%d lost: %s; reconnecting", c->host, c->port,
                      err_text(m->last_rc, m->last_errno));
    }
    if (atomic_load(&m->stop_req)) {
        atomic_store(&m->closed, true);
        return;
    }
    if (was_stale)
        return; /* counted when it timed out; the retry is scheduled */
    if (m->handshake)
        attempt_failed(m, m->last_rc, m->last_errno);
    else
        schedule_retry(m);
}

static void start_attempt(ccgw_mqtt_t *m)
{
    const ccgw_mqtt_config_t *c = &m->gw->cfg->mqtt;
    /* non-blocking: the TCP connect and the TLS handshake finish in
     * sink_wait() (the host name is resolved here, blocking) */
    errno = 0;
    int rc = m->tried ? mosquitto_reconnect_async(m->mosq)
                      : mosquitto_connect_bind_async(m->mosq, c->host, c->port, c->keepalive_s, NULL);
    int err = errno;
    m->tried = true;
    m->handshake = true;
    m->refused = false;
    m->last_rc = MOSQ_ERR_SUCCESS;
    if (rc == MOSQ_ERR_SUCCESS && mosquitto_socket(m->mosq) >= 0) {
        m->sock_open = true;
        m->stale = false;
        m->handshake_until = ccgw_now_ms() + CONNECT_TIMEOUT_MS;
        return;
    }
    attempt_failed(m, rc == MOSQ_ERR_SUCCESS ? MOSQ_ERR_NO_CONN : rc, err);
}

/* ccgw_mqtt_stop() and ccgw_mqtt_reconnect(), asked from other threads. */
static void take_requests(ccgw_mqtt_t *m)
{
    bool open = mosquitto_socket(m->mosq) >= 0;
    if (atomic_load(&m->stop_req)) {
        if (open && !m->disconnect_sent) {
            m->disconnect_sent = true;
            /* a clean DISCONNECT: the broker discards the will */
            mosquitto_disconnect_v5(m->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
        }
        if (!open || mosquitto_socket(m->mosq) < 0)
            atomic_store(&m->closed, true);
        return;
    }
    if (atomic_exchange(&m->reconnect_req, false) && open) {
        int rc = mosquitto_disconnect_v5(m->mosq, 0, NULL);
        if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN)
            CLOG_WARN(TAG, "disconnect for the reconnect: %s", mosquitto_strerror(rc));
        m->backoff = (unsigned)m->gw->cfg->mqtt.reconnect_min_ms;
        m->handshake = false;
    }
}

/* The sink's wait() (bus.h): the north thread's sleep and libmosquitto's
 * network loop in one. libmosquitto's own loop (mosquitto_loop) is not
 * used: it selects, and gives up on descriptors over FD_SETSIZE, which a
 * gateway with thousands of WebSocket clients reaches on a reconnect. */
static void sink_wait(void *ctx, int timeout_ms)
{
    ccgw_mqtt_t *m = ctx;
    sync_log_cb(m);
    take_requests(m);
    int sock = mosquitto_socket(m->mosq);
    if (sock < 0 && m->sock_open)
        socket_closed(m);
    if (sock < 0) {
        if (!atomic_load(&m->started) || atomic_load(&m->stop_req)) {
            wait_wake(m, timeout_ms);
            return;
        }
        uint64_t now = ccgw_now_ms();
        if (now < m->next_try_ms) {
            uint64_t left = m->next_try_ms - now;
            wait_wake(m, (uint64_t)timeout_ms < left ? timeout_ms : (int)left);
            return;
        }
        start_attempt(m);
        return;
    }
    if (m->handshake && !atomic_load(&m->stop_req)) {
        uint64_t now = ccgw_now_ms();
        if (!m->stale && now >= m->handshake_until) {
            attempt_failed(m, MOSQ_ERR_ERRNO, ETIMEDOUT); /* logged, next_try_ms set */
            m->stale = true;
        }
        if (m->stale) { /* the next attempt replaces its socket */
            if (now >= m->next_try_ms) {
                start_attempt(m);
                return;
            }
            uint64_t left = m->next_try_ms - now;
            wait_wake(m, (uint64_t)timeout_ms < left ? timeout_ms : (int)left);
            return;
        }
    }
    struct pollfd p[2] = {{.fd = m->wake_fd, .events = POLLIN},
                          {.fd = sock, .events = POLLIN | (mosquitto_want_write(m->mosq) ? POLLOUT : 0)}};
    int n = poll(p, 2, timeout_ms);
    if (n < 0)
        return; /* EINTR */
    if (p[0].revents) {
        uint64_t v;
        if (read(m->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
            CLOG_WARN(TAG, "wake: %s", strerror(errno));
    }
    int rc = MOSQ_ERR_SUCCESS;
    /* reading also moves a TLS handshake on, whichever way the socket is ready */
    if (p[1].revents) {
        errno = 0;
        rc = mosquitto_loop_read(m->mosq, 1);
    }
    if (rc == MOSQ_ERR_SUCCESS && mosquitto_socket(m->mosq) >= 0 && mosquitto_want_write(m->mosq)) {
        errno = 0;
        rc = mosquitto_loop_write(m->mosq, 1);
    }
    if (rc == MOSQ_ERR_SUCCESS && mosquitto_socket(m->mosq) >= 0)
        rc = mosquitto_loop_misc(m->mosq); /* keepalive */
    if (rc != MOSQ_ERR_SUCCESS) {
        m->last_rc = rc;
        m->last_errno = errno;
    }
    if (mosquitto_socket(m->mosq) < 0)
        socket_closed(m);
}

int ccgw_mqtt_start(ccgw_mqtt_t *m)
{
    atomic_store(&m->started, true);
    sink_wake(m);
    return CCGW_OK;
}

void ccgw_mqtt_stop(ccgw_mqtt_t *m)
{
    if (!m || !atomic_load(&m->started) || atomic_load(&m->stop_req))
        return;
    atomic_store(&m->stop_req, true);
    sink_wake(m);
    for (int i = 0; i < 20 && !atomic_load(&m->closed); i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    atomic_store(&m->connected, false);
}

void ccgw_mqtt_free(ccgw_mqtt_t *m)
{
    if (!m)
        return;
    /* the bus's north thread is gone (ccgw_bus_stop()): a connection still
     * open is closed cleanly from here */
    if (mosquitto_socket(m->mosq) >= 0 && !m->disconnect_sent) {
        atomic_store(&m->stop_req, true);
        mosquitto_disconnect_v5(m->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
    }
    mosquitto_destroy(m->mosq);
    close(m->wake_fd);
    free(m->mid_spool);
    free(m->cmd_filter);
    free(m);
}

void ccgw_mqtt_get_stats(ccgw_mqtt_t *m, ccgw_mqtt_stats_t *out)
{
    out->connected = atomic_load(&m->connected);
    out->connects = atomic_load(&m->connects);
    out->disconnects = atomic_load(&m->disconnects);
    out->inflight = atomic_load(&m->inflight) + atomic_load(&m->inflight0);
    out->commands_in = atomic_load(&m->commands_in);
}

void ccgw_mqtt_reconnect(ccgw_mqtt_t *m, const char *why)
{
    if (!m || !atomic_load(&m->started))
        return;
    CLOG_INFO(TAG, "reconnecting to %s:%d: %s", m->gw->cfg->mqtt.host, m->gw->cfg->mqtt.port, why ? why : "asked");
    atomic_store(&m->reconnect_req, true);
    sink_wake(m);
}
