/*
 * gateway - the running gateway: owns the config, the plugin loader, the
 * bus, the MQTT north side, the device registry and the plugin instances,
 * and orders their start and graceful stop.
 *
 * Threads: the main thread runs ccgw_gateway_run() (signals, housekeeping);
 * each instance has its own thread (instance.c); the north thread drains the
 * bus (bus.c); libmosquitto's thread runs the MQTT callbacks (mqtt_north.c).
 */
#ifndef CCGW_GATEWAY_H
#define CCGW_GATEWAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "bus.h"
#include "ccgw/ccgw.h"
#include "config.h"

typedef struct ccgw_loader ccgw_loader_t;
typedef struct ccgw_alarm_engine ccgw_alarm_engine_t;
typedef struct ccgw_alarm_store ccgw_alarm_store_t;
typedef struct ccgw_registry ccgw_registry_t;
typedef struct ccgw_mqtt ccgw_mqtt_t;
typedef struct ccgw_http_server ccgw_http_server_t;
typedef struct ccgw_auth ccgw_auth_t;
typedef struct ccgw_audit ccgw_audit_t;

typedef struct ccgw_gateway {
    ccgw_gateway_config_t *cfg;
    ccgw_loader_t *loader;        /* borrowed: main owns it (it also served the config check) */
    ccgw_bus_t *bus;
    ccgw_mqtt_t *mqtt;            /* NULL when mqtt is disabled */
    ccgw_http_server_t *http;     /* NULL when http is disabled (http_server.c) */
    ccgw_auth_t *auth;            /* tokens and roles of the http section (auth.c) */
    ccgw_audit_t *audit;          /* audit trail of commands and acknowledgements (audit.c) */
    ccgw_registry_t *registry;
    char boot[17];                /* 16 hex chars, new each run */
    char *site_base;              /* "{prefix}/{site}" */
    char *gw_base;                /* "{prefix}/{site}/gateway/{id}" */
    char *status_topic;
    char *will_payload;
    ccgw_alarm_engine_t *alarm_engine; /* the config's alarm rules (alarm_engine.c) */
    ccgw_alarm_store_t *alarm_store;   /* active alarms persisted in data_dir (alarm_store.c) */
    bool restored_expired;             /* the restore grace period is over */
    struct ccgw_instance **instances;
    size_t n_instances;
    atomic_bool stopping;
    uint64_t started_ms;
    /* life (supervisor.c, reload.c): the instance list (instances,
     * n_instances) and the config pointer change only with life_lock held,
     * on the main thread or in ccgw_gateway_reload(); other threads that
     * walk the instance list take it too. */
    pthread_mutex_t life_lock;
    ccgw_plugin_resolver_fn resolver;  /* for reload: the same resolver main used (may be NULL) */
    void *resolver_ctx;
    ccgw_gateway_config_t **retired;   /* configs replaced by a reload: running instances may still
                                        * point into them; freed with the gateway */
    size_t n_retired;
    bool keep_retired;                 /* an abandoned (stuck) thread may use any of them */
    _Atomic unsigned abandoned;        /* instances whose stuck thread was left behind */
    _Atomic uint64_t reloads_ok, reloads_rejected;
    char last_reload_error[512];       /* under life_lock */
    uint64_t tls_stamp[3];             /* mqtt.tls ca/cert/key files as last seen (reload.c) */
    pthread_mutex_t gw_alarm_lock;     /* the gateway alarms below */
    struct ccgw_gw_alarm *gw_alarms;   /* active gateway alarms (gateway.c) */
    uint64_t gw_alarm_seq;
} ccgw_gateway_t;

ccgw_gateway_t *ccgw_gateway_new(ccgw_gateway_config_t *cfg, ccgw_loader_t *loader);
/* Start the north side and every enabled instance; failing instances are
 * reported and the others run. Returns 0, or < 0 when the gateway itself
 * cannot run. */
int ccgw_gateway_start(ccgw_gateway_t *gw);
/* Wait for signals until SIGTERM/SIGINT. */
int ccgw_gateway_run(ccgw_gateway_t *gw);
/* Graceful stop: instances, offline status, flush (bounded), disconnect. */
void ccgw_gateway_stop(ccgw_gateway_t *gw);
void ccgw_gateway_free(ccgw_gateway_t *gw);

/* Re-read the config file (SIGHUP, POST /api/v1/reload): a config that
 * fails validation is rejected as a whole and the running one kept;
 * otherwise added instances start, removed ones stop, changed ones restart,
 * unchanged ones keep running. Returns 0, or < 0 with the reason in why. */
int ccgw_gateway_reload(ccgw_gateway_t *gw, char *why, size_t whylen);
/* Note what reload compares against later (the TLS files); at start. */
void ccgw_reload_init(ccgw_gateway_t *gw);
/* Some instance thread is stuck in a plugin call and was left behind: the
 * gateway must not be freed (main exits without freeing). */
bool ccgw_gateway_has_abandoned(ccgw_gateway_t *gw);

/* Publish the retained gateway status (online or not, with a reason). */
void ccgw_gateway_publish_status(ccgw_gateway_t *gw, bool online, const char *reason);

/* Raise (active) or clear a gateway-level alarm on
 * {gw_base}/alarm/{code} (retained while active; an empty payload clears
 * it), for conditions of the gateway itself: spool_full, instance
 * quarantined (code "quarantine.<instance>"), config_rejected... Thread-safe
 * and idempotent: raising an active code again only updates its message;
 * clearing an inactive code does nothing. severity: "warning", "major",
 * "critical". Logged once per transition. */
void ccgw_gateway_alarm(ccgw_gateway_t *gw, const char *code, bool active, const char *severity,
                        const char *message);

/* ---- alarms (implemented in device.c, where the devices' alarms live) ---- */

/* Acknowledge the active alarm `code` of dev (by required, note may be
 * NULL): the retained payload gains state acknowledged / acked_by /
 * acked_at, event alarm.acknowledged, persisted. CCGW_OK (acked_at
 * filled), CCGW_ENOTFOUND (not active), CCGW_ESTATE (already acknowledged),
 * with the reason in why. */
int ccgw_device_alarm_ack(ccgw_device_t *dev, const char *code, const char *by, const char *note,
                          char acked_at[25], char *why, size_t whylen);
/* Let alarm rule delays expire without new samples (about once a second). */
void ccgw_alarms_tick(ccgw_gateway_t *gw);
/* Clear the restored alarms whose device was not declared again. */
void ccgw_alarms_expire_restored(ccgw_gateway_t *gw);

#endif
