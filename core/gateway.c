/* gateway - see gateway.h. */
#include "gateway.h"

#include <errno.h>
#include <stdarg.h>
#include <unistd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "alarm_engine.h"
#include "alarm_store.h"
#include "audit.h"
#include "auth.h"
#include "ccgw_version.h"
#include "device.h"
#include "http_server.h"
#include "instance.h"
#include "json_writer.h"
#include "loader.h"
#include "log.h"
#include "fdlow.h"
#include "mqtt_north.h"
#include "mem.h"
#include "sd_notify.h"
#include "supervisor.h"
#include "spool.h"

#define FLUSH_TIMEOUT_MS 5000

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

static void make_boot_id(char out[17])
{
    unsigned char r[8];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t v = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
        memcpy(r, &v, sizeof r);
    }
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* The spool's full / not-full transitions (bus.h): the gateway alarm spool_full. */
static void spool_full_changed(void *ctx, bool full)
{
    ccgw_gateway_t *gw = ctx;
    ccgw_gateway_alarm(gw, "spool_full", full, "major",
                       full ? "spool at its size limit: events are held back (backpressure), telemetry dropped"
                            : NULL);
}

/* gateway.spool: open <data_dir>/spool and hand it to the bus; without it
 * (disabled, or the folder unusable) the in-memory queue carries everything. */
static void open_spool(ccgw_gateway_t *gw)
{
    const ccgw_gateway_config_t *cfg = gw->cfg;
    if (!cfg->spool.enabled || !cfg->data_dir) {
        CLOG_INFO("gateway", "spool disabled: events and alarms wait in memory only");
        return;
    }
    char *dir = str_printf("%s/spool", cfg->data_dir);
    if (!dir)
        return;
    ccgw_spool_options_t o = {.max_bytes = (uint64_t)cfg->spool.max_bytes,
                              .max_age_s = (uint64_t)cfg->spool.max_age_s,
                              .fsync_ms = cfg->spool.fsync_ms,
                              .full_cb = ccgw_bus_spool_full,
                              .full_ctx = gw->bus};
    ccgw_spool_t *sp = ccgw_spool_open(dir, &o, NULL);
    if (sp) {
        ccgw_bus_set_full_cb(gw->bus, spool_full_changed, gw);
        ccgw_bus_set_spool(gw->bus, sp, cfg->spool.telemetry);
    } else {
        CLOG_ERROR("gateway", "cannot open the spool in %s: events and alarms wait in memory only "
                   "(lost on a crash)", dir);
        ccgw_gateway_alarm(gw, "spool_unavailable", true, "major", "the spool cannot be opened: see the log");
    }
    free(dir);
}

ccgw_gateway_t *ccgw_gateway_new(ccgw_gateway_config_t *cfg, ccgw_loader_t *loader)
{
    ccgw_gateway_t *gw = calloc(1, sizeof *gw);
    if (!gw)
        return NULL;
    gw->cfg = cfg;
    gw->loader = loader;
    /* while descriptor numbers are low: for libraries that select() (fd.h) */
    ccgw_fdlow_init(CCGW_FDLOW_RESERVE);
    pthread_mutex_init(&gw->gw_alarm_lock, NULL);
    pthread_mutex_init(&gw->life_lock, NULL);
    make_boot_id(gw->boot);
    const char *prefix = cfg->mqtt.topic_prefix ? cfg->mqtt.topic_prefix : "ccgw/v1";
    gw->site_base = str_printf("%s/%s", prefix, cfg->site);
    gw->gw_base = str_printf("%s/gateway/%s", gw->site_base ? gw->site_base : "", cfg->gateway_id);
    gw->status_topic = str_printf("%s/status", gw->gw_base ? gw->gw_base : "");
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "online");
    ccgw_jw_bool(&w, false);
    ccgw_jw_key(&w, "site");
    ccgw_jw_string(&w, cfg->site);
    ccgw_jw_key(&w, "gateway");
    ccgw_jw_string(&w, cfg->gateway_id);
    ccgw_jw_key(&w, "boot");
    ccgw_jw_string(&w, gw->boot);
    ccgw_jw_key(&w, "reason");
    ccgw_jw_string(&w, "connection lost");
    ccgw_jw_end_object(&w);
    gw->will_payload = ccgw_jw_take(&w, NULL);
    gw->registry = ccgw_registry_new();
    gw->bus = ccgw_bus_new((size_t)cfg->queue_size, cfg->backpressure_ms);
    gw->alarm_engine = ccgw_alarm_engine_new(cfg->alarms.rules, cfg->alarms.n_rules);
    gw->alarm_store = ccgw_alarm_store_open(cfg->alarms.persist ? cfg->data_dir : NULL);
    gw->auth = ccgw_auth_new(&cfg->http);
    gw->audit = gw->gw_base && gw->bus ? ccgw_audit_open(gw, cfg->http.audit_log) : NULL;
    if (!gw->site_base || !gw->gw_base || !gw->status_topic || !gw->will_payload || !gw->registry ||
        !gw->bus || !gw->alarm_engine || !gw->alarm_store || !gw->auth || !gw->audit) {
        ccgw_gateway_free(gw);
        return NULL;
    }
    open_spool(gw);
    if (cfg->mqtt.enabled) {
        gw->mqtt = ccgw_mqtt_new(gw);
        if (!gw->mqtt) {
            ccgw_gateway_free(gw);
            return NULL;
        }
        ccgw_sink_t sink;
        ccgw_mqtt_sink(gw->mqtt, &sink);
        ccgw_bus_set_sink(gw->bus, &sink);
    }
    if (cfg->http.enabled) { /* sets the bus tap: before ccgw_bus_start() */
        gw->http = ccgw_http_server_new(gw);
        if (!gw->http) {
            ccgw_gateway_free(gw);
            return NULL;
        }
    }
    gw->instances = calloc(cfg->n_instances ? cfg->n_instances : 1, sizeof *gw->instances);
    if (!gw->instances) {
        ccgw_gateway_free(gw);
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_instances; i++) {
        gw->instances[i] = ccgw_instance_new(gw, &cfg->instances[i]);
        if (!gw->instances[i]) {
            ccgw_gateway_free(gw);
            return NULL;
        }
        gw->n_instances++;
    }
    return gw;
}

void ccgw_gateway_publish_status(ccgw_gateway_t *gw, bool online, const char *reason)
{
    char ts[CCGW_TS_LEN];
    ccgw_ts_now(ts);
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "online");
    ccgw_jw_bool(&w, online);
    ccgw_jw_key(&w, "ts");
    ccgw_jw_string(&w, ts);
    ccgw_jw_key(&w, "site");
    ccgw_jw_string(&w, gw->cfg->site);
    ccgw_jw_key(&w, "gateway");
    ccgw_jw_string(&w, gw->cfg->gateway_id);
    ccgw_jw_key(&w, "boot");
    ccgw_jw_string(&w, gw->boot);
    ccgw_jw_key(&w, "version");
    ccgw_jw_string(&w, CCGW_VERSION);
    char abi[16];
    snprintf(abi, sizeof abi, "%d.%d", CCGW_ABI_MAJOR, CCGW_ABI_MINOR);
    ccgw_jw_key(&w, "abi");
    ccgw_jw_string(&w, abi);
    ccgw_jw_key(&w, "instances");
    ccgw_jw_uint(&w, gw->n_instances);
    if (reason) {
        ccgw_jw_key(&w, "reason");
        ccgw_jw_string(&w, reason);
    }
    ccgw_jw_end_object(&w);
    if (!w.error)
        ccgw_bus_retain(gw->bus, CCGW_KIND_GATEWAY, 1, gw->status_topic, w.buf, w.len);
    ccgw_jw_free(&w);
}

struct ccgw_gw_alarm {
    struct ccgw_gw_alarm *next;
    char *code;
    char raised_at[CCGW_TS_LEN];
};

void ccgw_gateway_alarm(ccgw_gateway_t *gw, const char *code, bool active, const char *severity,
                        const char *message)
{
    if (!code || !ccgw_valid_id(code))
        return;
    char *topic = str_printf("%s/alarm/%s", gw->gw_base, code);
    if (!topic)
        return;
    pthread_mutex_lock(&gw->gw_alarm_lock);
    struct ccgw_gw_alarm **pp = &gw->gw_alarms, *a;
    while ((a = *pp) && strcmp(a->code, code) != 0)
        pp = &a->next;
    if (!active) {
        if (a) {
            *pp = a->next;
            free(a->code);
            free(a);
            ccgw_bus_retain(gw->bus, CCGW_KIND_ALARM, gw->cfg->mqtt.qos_alarm, topic, "", 0);
            CLOG_INFO("gateway", "gateway alarm %s cleared%s%s", code, message ? ": " : "",
                      message ? message : "");
        }
        pthread_mutex_unlock(&gw->gw_alarm_lock);
        free(topic);
        return;
    }
    bool fresh = false;
    if (!a) {
        a = calloc(1, sizeof *a);
        if (!a || !(a->code = strdup(code))) {
            free(a);
            pthread_mutex_unlock(&gw->gw_alarm_lock);
            free(topic);
            return;
        }
        ccgw_ts_now(a->raised_at);
        a->next = gw->gw_alarms;
        gw->gw_alarms = a;
        fresh = true;
    }
    char ts[CCGW_TS_LEN];
    ccgw_ts_now(ts);
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "ts");
    ccgw_jw_string(&w, ts);
    ccgw_jw_key(&w, "site");
    ccgw_jw_string(&w, gw->cfg->site);
    ccgw_jw_key(&w, "class");
    ccgw_jw_string(&w, "gateway");
    ccgw_jw_key(&w, "device");
    ccgw_jw_string(&w, gw->cfg->gateway_id);
    ccgw_jw_key(&w, "boot");
    ccgw_jw_string(&w, gw->boot);
    ccgw_jw_key(&w, "seq");
    ccgw_jw_uint(&w, ++gw->gw_alarm_seq);
    ccgw_jw_key(&w, "code");
    ccgw_jw_string(&w, code);
    ccgw_jw_key(&w, "severity");
    ccgw_jw_string(&w, severity ? severity : "major");
    ccgw_jw_key(&w, "state");
    ccgw_jw_string(&w, "raised");
    ccgw_jw_key(&w, "message");
    ccgw_jw_string(&w, message ? message : code);
    ccgw_jw_key(&w, "raised_at");
    ccgw_jw_string(&w, a->raised_at);
    ccgw_jw_key(&w, "data");
    ccgw_jw_raw_value(&w, "{}", 2);
    ccgw_jw_end_object(&w);
    if (!w.error)
        ccgw_bus_retain(gw->bus, CCGW_KIND_ALARM, gw->cfg->mqtt.qos_alarm, topic, w.buf, w.len);
    ccgw_jw_free(&w);
    pthread_mutex_unlock(&gw->gw_alarm_lock);
    if (fresh)
        CLOG_WARN("gateway", "gateway alarm %s raised: %s", code, message ? message : code);
    free(topic);
}

int ccgw_gateway_start(ccgw_gateway_t *gw)
{
    gw->started_ms = ccgw_now_ms();
    ccgw_reload_init(gw);
    /* the status is the first retained entry, so each snapshot begins with it */
    ccgw_gateway_publish_status(gw, true, NULL);
    if (ccgw_bus_start(gw->bus) != CCGW_OK)
        return CCGW_ENOMEM;
    if (gw->http && ccgw_http_server_start(gw->http) != CCGW_OK)
        return CCGW_EIO;
    if (gw->mqtt && ccgw_mqtt_start(gw->mqtt) != CCGW_OK)
        return CCGW_EIO;
    if (!gw->mqtt)
        CLOG_WARN("gateway", "mqtt is disabled: nothing is published to a broker");
    if (ccgw_alarm_store_start(gw->alarm_store) != 0)
        CLOG_ERROR("alarms", "cannot start the alarm store writer: alarms are not persisted");
    if (gw->cfg->alarms.n_rules)
        CLOG_INFO("alarms", "%zu alarm rule(s)", gw->cfg->alarms.n_rules);
    size_t running = 0, failed = 0;
    for (size_t i = 0; i < gw->n_instances; i++) {
        int rc = ccgw_instance_start(gw->instances[i], gw->instances[i]->cfg->supervision.start_timeout_ms);
        if (rc == CCGW_OK && gw->instances[i]->run_state == CCGW_RUN_RUNNING)
            running++;
        else if (gw->instances[i]->run_state != CCGW_RUN_DISABLED)
            failed++;
    }
    CLOG_INFO("gateway", "site %s gateway %s boot %s: instances running %zu, failed %zu; devices %zu",
              gw->cfg->site, gw->cfg->gateway_id, gw->boot, running, failed,
              ccgw_registry_count(gw->registry));
    return CCGW_OK;
}

/* ---- the main thread's loop (life: supervision, reload, systemd) ---- */

#define TICK_MS 200

static void status_line(ccgw_gateway_t *gw)
{
    ccgw_supervisor_stats_t st;
    ccgw_supervisor_stats(gw, &st);
    size_t running = 0;
    for (size_t i = 0; i < gw->n_instances; i++)
        running += gw->instances[i]->run_state == CCGW_RUN_RUNNING;
    ccgw_sd_status("%zu/%zu instances running, %llu restarts, %llu quarantined, %llu hung; devices %zu",
                   running, gw->n_instances, (unsigned long long)st.restarts,
                   (unsigned long long)st.quarantined, (unsigned long long)st.hung,
                   ccgw_registry_count(gw->registry));
}

int ccgw_gateway_run(ccgw_gateway_t *gw)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    ccgw_sd_init();
    pthread_mutex_lock(&gw->life_lock);
    status_line(gw);
    pthread_mutex_unlock(&gw->life_lock);
    ccgw_sd_ready(NULL);
    uint64_t last_second = ccgw_now_ms(), last_status = last_second;
    for (;;) {
        struct timespec tick = {0, TICK_MS * 1000000L};
        int sig = sigtimedwait(&set, NULL, &tick);
        int err = errno;
        uint64_t now = ccgw_now_ms();
        ccgw_sd_watchdog(now);
        ccgw_mem_tick(now);
        if (sig == SIGTERM || sig == SIGINT) {
            CLOG_INFO("gateway", "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            ccgw_sd_stopping(sig == SIGTERM ? "SIGTERM: stopping" : "SIGINT: stopping");
            return 0;
        }
        if (sig == SIGHUP) {
            char why[512];
            CLOG_INFO("gateway", "SIGHUP: reloading %s", gw->cfg->path);
            if (ccgw_gateway_reload(gw, why, sizeof why) == 0)
                CLOG_INFO("gateway", "reload: %s", why);
        }
        pthread_mutex_lock(&gw->life_lock);
        ccgw_supervisor_tick(gw);
        if (now - last_status >= 10000) {
            last_status = now;
            status_line(gw);
        }
        pthread_mutex_unlock(&gw->life_lock);
        if (now - last_second >= 1000) {
            last_second = now;
            ccgw_alarms_tick(gw);
            if (!gw->restored_expired &&
                now - gw->started_ms >= (uint64_t)gw->cfg->alarms.restore_grace_s * 1000u) {
                gw->restored_expired = true;
                ccgw_alarms_expire_restored(gw);
            }
        }
        if (sig < 0 && err != EAGAIN && err != EINTR) {
            CLOG_ERROR("gateway", "sigtimedwait: %s", strerror(err));
            return 1;
        }
    }
}

bool ccgw_gateway_has_abandoned(ccgw_gateway_t *gw)
{
    if (atomic_load(&gw->abandoned))
        return true;
    for (size_t i = 0; i < gw->n_instances; i++)
        if (gw->instances[i]->abandoned)
            return true;
    return false;
}

void ccgw_gateway_stop(ccgw_gateway_t *gw)
{
    atomic_store(&gw->stopping, true);
    ccgw_bus_interrupt(gw->bus); /* emitters blocked by a full spool let go */
    pthread_mutex_lock(&gw->life_lock);
    for (size_t i = gw->n_instances; i-- > 0;)
        ccgw_instance_stop(gw->instances[i]); /* bounded: a stuck thread is left behind */
    pthread_mutex_unlock(&gw->life_lock);
    ccgw_http_server_stop(gw->http); /* clients closed 1001; every command was answered */
    ccgw_alarm_store_stop(gw->alarm_store); /* the last write of the active alarms */
    ccgw_gateway_publish_status(gw, false, "shutdown");
    /* wait for the broker's acknowledgements; not for a broker never reached */
    int flush_ms = FLUSH_TIMEOUT_MS;
    if (gw->mqtt) {
        ccgw_mqtt_stats_t ms;
        ccgw_mqtt_get_stats(gw->mqtt, &ms);
        if (ms.connects == 0)
            flush_ms = 0;
    }
    if (!ccgw_bus_flush(gw->bus, flush_ms)) {
        ccgw_bus_stats_t st;
        ccgw_bus_get_stats(gw->bus, &st);
        ccgw_spool_stats_t ss = {0};
        if (ccgw_bus_spool(gw->bus))
            ccgw_spool_get_stats(ccgw_bus_spool(gw->bus), &ss);
        CLOG_WARN("gateway", "stopping with %zu messages not delivered after %d ms%s; %llu kept in the spool",
                  st.depth, flush_ms, flush_ms ? "" : " (the broker was never reached)",
                  (unsigned long long)ss.pending);
    }
    if (gw->mqtt)
        ccgw_mqtt_stop(gw->mqtt);
    ccgw_bus_stop(gw->bus);
    CLOG_INFO("gateway", "stopped");
}

void ccgw_gateway_free(ccgw_gateway_t *gw)
{
    if (!gw)
        return;
    for (size_t i = 0; i < gw->n_instances; i++)
        ccgw_instance_free(gw->instances[i]);
    free(gw->instances);
    /* the configs reloads replaced (gw->cfg itself belongs to the caller) */
    for (size_t i = 0; i < gw->n_retired; i++)
        ccgw_gateway_config_free(gw->retired[i]);
    free(gw->retired);
    ccgw_http_server_free(gw->http);
    ccgw_bus_stop(gw->bus); /* its north thread runs the MQTT client's I/O */
    ccgw_mqtt_free(gw->mqtt);
    ccgw_bus_free(gw->bus);
    ccgw_registry_free(gw->registry);
    ccgw_alarm_store_free(gw->alarm_store);
    ccgw_alarm_engine_free(gw->alarm_engine);
    ccgw_audit_close(gw->audit);
    ccgw_auth_free(gw->auth);
    free(gw->site_base);
    free(gw->gw_base);
    free(gw->status_topic);
    free(gw->will_payload);
    while (gw->gw_alarms) {
        struct ccgw_gw_alarm *a = gw->gw_alarms;
        gw->gw_alarms = a->next;
        free(a->code);
        free(a);
    }
    pthread_mutex_destroy(&gw->gw_alarm_lock);
    pthread_mutex_destroy(&gw->life_lock);
    free(gw);
}
