/* mqtt_north - see mqtt_north.h. */
#include "mqtt_north.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
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
    bool loop_started;
    pthread_t net_thread;
    atomic_bool net_stop;
    pthread_mutex_t sleep_lock;
    pthread_cond_t sleep_cond;
    /* spooled publishes: libmosquitto mid -> spool record id (0 = none);
     * held across mosquitto_publish_v5() so a PUBACK never beats the entry */
    pthread_mutex_t mid_lock;
    uint64_t *mid_spool;       /* 65536 entries */
    bool log_cb_on;            /* net thread: on_log is installed */
};

#define TAG "mqtt"
/* mid_spool marker of a QoS 0 publish (spool ids never reach it) */
#define MID_QOS0 (UINT64_C(1) << 63)
/* QoS 0 publishes handed to libmosquitto and not yet written: at least this
 * many, whatever max_inflight (they take one socket write to leave) */
#define QOS0_WINDOW_MIN 1024u

/* ---- callbacks (libmosquitto's thread) ---- */

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
    (void)flags;
    (void)props;
    ccgw_mqtt_t *m = obj;
    if (rc != 0) {
        CLOG_WARN(TAG, "connection refused by %s:%d: %s", m->gw->cfg->mqtt.host, m->gw->cfg->mqtt.port,
                  mosquitto_reason_string(rc));
        return;
    }
    atomic_fetch_add(&m->connects, 1);
    CLOG_INFO(TAG, "connected to %s:%d", m->gw->cfg->mqtt.host, m->gw->cfg->mqtt.port);
    /* QoS 0 publishes that were queued on the old connection are gone */
    atomic_store(&m->inflight, 0);
    atomic_store(&m->inflight0, 0);
    int src = mosquitto_subscribe_v5(mosq, NULL, m->cmd_filter, 1, 0, NULL);
    if (src != MOSQ_ERR_SUCCESS)
        CLOG_ERROR(TAG, "subscribe %s: %s", m->cmd_filter, mosquitto_strerror(src));
    atomic_store(&m->want_snapshot, true);
    atomic_store(&m->connected, true);
    ccgw_bus_wake(m->gw->bus);
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
                      m->gw->cfg->mqtt.host, m->gw->cfg->mqtt.port, mosquitto_strerror(rc));
    }
    ccgw_bus_wake(m->gw->bus);
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
     * refusal forever would hold the spool back; it is logged above) */
    pthread_mutex_lock(&m->mid_lock);
    uint64_t sid = m->mid_spool[(unsigned)mid & 0xffffu];
    m->mid_spool[(unsigned)mid & 0xffffu] = 0;
    pthread_mutex_unlock(&m->mid_lock);
    bool qos0 = sid == MID_QOS0;
    if (sid && !qos0)
        ccgw_bus_ack(m->gw->bus, sid);
    _Atomic uint64_t *ctr = qos0 ? &m->inflight0 : &m->inflight;
    uint64_t limit = qos0 ? m->qos0_window : (uint64_t)m->gw->cfg->mqtt.max_inflight;
    uint64_t cur = atomic_load(ctr);
    while (cur > 0 && !atomic_compare_exchange_weak(ctr, &cur, cur - 1))
        ;
    /* wake the north thread only when a window reopens (it waits for
     * that), not on every acknowledgement: at moderate rates the window is
     * almost empty and a wake per PUBACK was a futex and a context switch
     * per event; ccgw_bus_flush() polls the sink's idle state itself */
    if (cur >= limit)
        ccgw_bus_wake(m->gw->bus);
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
 * come through it). Net thread (and once before it starts). */
static void sync_log_cb(ccgw_mqtt_t *m)
{
    bool want = ccgw_log_get_level() >= CCGW_LOG_DEBUG || !atomic_load(&m->connected);
    if (want != m->log_cb_on) {
        mosquitto_log_callback_set(m->mosq, want ? on_log : NULL);
        m->log_cb_on = want;
    }
}

/* ---- sink (north thread) ---- */

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
    pthread_mutex_lock(&m->mid_lock);
    int rc = mosquitto_publish_v5(m->mosq, &mid, msg->topic, (int)msg->payload_len,
                                  msg->payload_len ? msg->payload : NULL, msg->qos, msg->retain, props);
    /* every publish sets its slot: a stale entry never acknowledges another record */
    if (rc == MOSQ_ERR_SUCCESS)
        m->mid_spool[(unsigned)mid & 0xffffu] = msg->qos > 0 ? msg->spool_id : MID_QOS0;
    pthread_mutex_unlock(&m->mid_lock);
    mosquitto_property_free_all(&props);
    if (rc == MOSQ_ERR_SUCCESS) {
        if (msg->qos == 0 && msg->spool_id)
            ccgw_bus_ack(m->gw->bus, msg->spool_id); /* QoS 0: handed over is all there is */
        return CCGW_OK;
    }
    uint64_t cur = atomic_load(ctr);
    while (cur > 0 && !atomic_compare_exchange_weak(ctr, &cur, cur - 1))
        ;
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST) {
        atomic_store(&m->connected, false);
        return CCGW_ESTATE;
    }
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
    pthread_mutex_init(&m->sleep_lock, NULL);
    pthread_cond_init(&m->sleep_cond, NULL);
    pthread_mutex_init(&m->mid_lock, NULL);
    m->mid_spool = calloc(65536, sizeof *m->mid_spool);
    if (!m->mid_spool) {
        free(m);
        return NULL;
    }
    size_t fl = strlen(gw->site_base) + 16;
    m->cmd_filter = malloc(fl);
    if (!m->cmd_filter) {
        free(m->mid_spool);
        free(m);
        return NULL;
    }
    snprintf(m->cmd_filter, fl, "%s/+/+/cmd/+", gw->site_base);
    m->mosq = mosquitto_new(c->client_id, true, m);
    if (!m->mosq) {
        CLOG_ERROR(TAG, "mosquitto_new failed");
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
        free(m->cmd_filter);
        free(m->mid_spool);
        free(m);
        return NULL;
    }
    return m;
}

/* Sleep up to ms, woken early by stop. */
static void net_sleep(ccgw_mqtt_t *m, unsigned ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&m->sleep_lock);
    while (!atomic_load(&m->net_stop))
        if (pthread_cond_timedwait(&m->sleep_cond, &m->sleep_lock, &dl) != 0)
            break;
    pthread_mutex_unlock(&m->sleep_lock);
}

/* The network thread: libmosquitto's loop_forever gives up for good on TLS,
 * DNS and auth errors; a gateway must keep trying, with backoff and jitter. */
static void *net_main(void *arg)
{
    ccgw_mqtt_t *m = arg;
    const ccgw_mqtt_config_t *c = &m->gw->cfg->mqtt;
    unsigned backoff = (unsigned)c->reconnect_min_ms;
    unsigned seed = (unsigned)ccgw_now_ms() ^ (unsigned)(uintptr_t)m;
    bool first = true, have_socket = false;
    uint64_t failures = 0;
    while (!atomic_load(&m->net_stop)) {
        sync_log_cb(m);
        if (!have_socket) {
            int rc = first ? mosquitto_connect_bind_v5(m->mosq, c->host, c->port, c->keepalive_s, NULL, NULL)
                           : mosquitto_reconnect(m->mosq);
            first = false;
            if (rc != MOSQ_ERR_SUCCESS) {
                failures++;
                if ((failures & (failures - 1)) == 0) /* 1, 2, 4, 8 ... */
                    CLOG_WARN(TAG, "cannot connect to %s:%d: %s (attempt %llu); retrying with backoff",
                              c->host, c->port,
                              rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
                              (unsigned long long)failures);
                unsigned jitter = backoff / 5 ? (unsigned)rand_r(&seed) % (backoff / 5 + 1) : 0;
                net_sleep(m, backoff - backoff / 10 + jitter);
                backoff = backoff * 2 > (unsigned)c->reconnect_max_ms ? (unsigned)c->reconnect_max_ms : backoff * 2;
                continue;
            }
            have_socket = true;
        }
        int rc = mosquitto_loop(m->mosq, 200, 1);
        if (rc == MOSQ_ERR_SUCCESS) {
            if (atomic_load(&m->connected)) {
                backoff = (unsigned)c->reconnect_min_ms;
                failures = 0;
            }
            continue;
        }
        have_socket = false;
        if (atomic_load(&m->net_stop))
            break;
        if (atomic_exchange(&m->connected, false)) {
            atomic_fetch_add(&m->disconnects, 1);
            CLOG_WARN(TAG, "connection to %s:%d lost: %s; reconnecting", c->host, c->port,
                      rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
            ccgw_bus_wake(m->gw->bus);
        }
        net_sleep(m, backoff);
        backoff = backoff * 2 > (unsigned)c->reconnect_max_ms ? (unsigned)c->reconnect_max_ms : backoff * 2;
    }
    return NULL;
}

int ccgw_mqtt_start(ccgw_mqtt_t *m)
{
    mosquitto_threaded_set(m->mosq, true);
    atomic_store(&m->net_stop, false);
    int rc = pthread_create(&m->net_thread, NULL, net_main, m);
    if (rc != 0) {
        CLOG_ERROR(TAG, "cannot start the MQTT thread: %s", strerror(rc));
        return CCGW_EIO;
    }
    pthread_setname_np(m->net_thread, "ccgw:mqtt");
    m->loop_started = true;
    return CCGW_OK;
}

void ccgw_mqtt_stop(ccgw_mqtt_t *m)
{
    if (!m || !m->loop_started)
        return;
    /* a clean DISCONNECT: the broker discards the will */
    mosquitto_disconnect_v5(m->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
    for (int i = 0; i < 20 && atomic_load(&m->connected); i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&m->sleep_lock);
    atomic_store(&m->net_stop, true);
    pthread_cond_broadcast(&m->sleep_cond);
    pthread_mutex_unlock(&m->sleep_lock);
    pthread_join(m->net_thread, NULL);
    m->loop_started = false;
    atomic_store(&m->connected, false);
}

void ccgw_mqtt_free(ccgw_mqtt_t *m)
{
    if (!m)
        return;
    ccgw_mqtt_stop(m);
    mosquitto_destroy(m->mosq);
    pthread_mutex_destroy(&m->sleep_lock);
    pthread_cond_destroy(&m->sleep_cond);
    pthread_mutex_destroy(&m->mid_lock);
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
    if (!m || !m->loop_started)
        return;
    CLOG_INFO(TAG, "reconnecting to %s:%d: %s", m->gw->cfg->mqtt.host, m->gw->cfg->mqtt.port, why ? why : "asked");
    int rc = mosquitto_disconnect_v5(m->mosq, 0, NULL);
    if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN)
        CLOG_WARN(TAG, "disconnect for the reconnect: %s", mosquitto_strerror(rc));
}
