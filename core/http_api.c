/*
 * http_api - see http_api.h.
 *
 * Reads: instances from gw->instances (their counters and state under each
 * instance's lock), devices and alarms from the bus's retained cache (copied
 * out under the cache lock, then sorted by topic so answers are stable).
 * Writes: commands and alarm acknowledgements go through
 * ccgw_command_dispatch() exactly as MQTT commands do, with a reply target
 * wrapped by the audit trail; the reply may come on this thread (an error
 * found at once) or later on an instance thread (then the response is
 * pending and done() completes it). Every refusal of a command or an
 * acknowledgement is audited too.
 */
#include "http_api.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "audit.h"
#include "command.h"
#include "device.h"
#include "gateway.h"
#include "instance.h"
#include "json_writer.h"
#include "log.h"
#include "metrics.h"
#include "mqtt_north.h"

#define TAG "http"
#define CT_JSON "application/json"
#define CT_PROM "text/plain; version=0.0.4"
#define MAX_SEGMENTS 8

/* ------------------------------------------------------------------ */
/* responses                                                           */
/* ------------------------------------------------------------------ */

static void resp_set(ccgw_http_resp_t *resp, int status, const char *ct, char *body, size_t len)
{
    free(resp->body);
    resp->status = status;
    resp->content_type = ct;
    resp->body = body;
    resp->body_len = body ? len : 0;
    resp->pending = false;
}

static char *error_json(const char *code, const char *message, size_t *len)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "error");
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "code");
    ccgw_jw_string(&w, code ? code : "internal");
    ccgw_jw_key(&w, "message");
    ccgw_jw_string(&w, message ? message : (code ? code : "internal error"));
    ccgw_jw_end_object(&w);
    ccgw_jw_end_object(&w);
    if (w.error) {
        ccgw_jw_free(&w);
        return NULL;
    }
    return ccgw_jw_take(&w, len);
}

void ccgw_http_resp_error(ccgw_http_resp_t *resp, int status, const char *code, const char *message)
{
    size_t len = 0;
    char *b = error_json(code, message, &len);
    resp_set(resp, status, CT_JSON, b, len);
}

void ccgw_http_resp_free(ccgw_http_resp_t *resp)
{
    if (!resp)
        return;
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

/* Hand a finished writer to the response (500 when it ran out of memory). */
static void resp_json(ccgw_http_resp_t *resp, int status, ccgw_jw_t *w)
{
    if (w->error) {
        ccgw_jw_free(w);
        ccgw_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    size_t len = 0;
    char *b = ccgw_jw_take(w, &len);
    ccgw_jw_free(w);
    resp_set(resp, status, CT_JSON, b, len);
}

bool ccgw_http_api_owns(const char *path)
{
    if (!path)
        return false;
    return !strcmp(path, "/healthz") || !strcmp(path, "/metrics") || !strcmp(path, "/api") ||
           !strncmp(path, "/api/", 5);
}

/* ------------------------------------------------------------------ */
/* the retained cache, copied                                          */
/* ------------------------------------------------------------------ */

typedef struct rentry {
    ccgw_kind_t kind;
    char *topic;
    char *payload;
    size_t len;
} rentry_t;

typedef struct rlist {
    rentry_t *v;
    size_t n, cap;
    bool oom;
    /* selection */
    const char *prefix;  /* topics starting with this (NULL = all) */
    size_t prefix_len;
} rlist_t;

static void collect(void *ctx, ccgw_kind_t kind, const char *topic, const char *payload, size_t len)
{
    rlist_t *l = ctx;
    if (l->oom || (kind != CCGW_KIND_STATE && kind != CCGW_KIND_ALARM))
        return;
    if (l->prefix && strncmp(topic, l->prefix, l->prefix_len) != 0)
        return;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        rentry_t *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) {
            l->oom = true;
            return;
        }
        l->v = nv;
        l->cap = nc;
    }
    rentry_t *e = &l->v[l->n];
    e->kind = kind;
    e->topic = strdup(topic);
    e->payload = malloc(len + 1);
    if (!e->topic || !e->payload) {
        free(e->topic);
        free(e->payload);
        l->oom = true;
        return;
    }
    memcpy(e->payload, payload, len);
    e->payload[len] = '\0';
    e->len = len;
    l->n++;
}

static int by_topic(const void *a, const void *b)
{
    return strcmp(((const rentry_t *)a)->topic, ((const rentry_t *)b)->topic);
}

static void rlist_free(rlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].topic);
        free(l->v[i].payload);
    }
    free(l->v);
}

static bool rlist_fill(ccgw_gateway_t *gw, rlist_t *l, const char *prefix)
{
    memset(l, 0, sizeof *l);
    l->prefix = prefix;
    l->prefix_len = prefix ? strlen(prefix) : 0;
    ccgw_bus_retained_foreach(gw->bus, collect, l);
    if (l->oom) {
        rlist_free(l);
        return false;
    }
    if (l->n > 1)
        qsort(l->v, l->n, sizeof *l->v, by_topic);
    return true;
}

/* "{site_base}/{class}/{device}/state" -> class, device (copied into bounded buffers). */
static bool parse_state_topic(ccgw_gateway_t *gw, const char *topic, char *cls, size_t cl, char *dev, size_t dl)
{
    size_t bl = strlen(gw->site_base);
    if (strncmp(topic, gw->site_base, bl) != 0 || topic[bl] != '/')
        return false;
    const char *c = topic + bl + 1, *s1 = strchr(c, '/');
    if (!s1)
        return false;
    const char *d = s1 + 1, *s2 = strchr(d, '/');
    if (!s2 || strcmp(s2, "/state") != 0 || s1 == c || s2 == d)
        return false;
    if ((size_t)(s1 - c) >= cl || (size_t)(s2 - d) >= dl)
        return false;
    memcpy(cls, c, (size_t)(s1 - c));
    cls[s1 - c] = '\0';
    memcpy(dev, d, (size_t)(s2 - d));
    dev[s2 - d] = '\0';
    return strcmp(cls, "gateway") != 0;
}

/* A retained payload is the core's own JSON object; anything else becomes null. */
static void raw_object(ccgw_jw_t *w, const rentry_t *e)
{
    if (e->len >= 2 && e->payload[0] == '{' && e->payload[e->len - 1] == '}')
        ccgw_jw_raw_value(w, e->payload, e->len);
    else
        ccgw_jw_null(w);
}

/* {"topic":..., ...the payload's members...} */
static void alarm_object(ccgw_jw_t *w, const rentry_t *e)
{
    ccgw_jw_begin_object(w);
    ccgw_jw_key(w, "topic");
    ccgw_jw_string(w, e->topic);
    if (e->len > 2 && e->payload[0] == '{' && e->payload[e->len - 1] == '}') {
        /* members without the braces; skip leading white space */
        const char *m = e->payload + 1;
        size_t n = e->len - 2;
        while (n && (*m == ' ' || *m == '\n' || *m == '\t' || *m == '\r'))
            m++, n--;
        if (n)
            ccgw_jw_raw_members(w, m, n);
    }
    ccgw_jw_end_object(w);
}

/* ------------------------------------------------------------------ */
/* read routes                                                         */
/* ------------------------------------------------------------------ */

static void route_healthz(ccgw_gateway_t *gw, ccgw_http_resp_t *resp)
{
    const char *reasons[4];
    size_t nr = 0;
    ccgw_mqtt_stats_t ms = {0};
    if (gw->mqtt)
        ccgw_mqtt_get_stats(gw->mqtt, &ms);
    if (gw->mqtt && !ms.connected)
        reasons[nr++] = "mqtt disconnected";
    if (atomic_load(&gw->stopping))
        reasons[nr++] = "shutting down";
    ccgw_bus_stats_t bs;
    ccgw_bus_get_stats(gw->bus, &bs);
    if (bs.limit && bs.depth >= bs.limit)
        reasons[nr++] = "north queue full";
    size_t running = 0, failed = 0;
    pthread_mutex_lock(&gw->life_lock); /* reload changes the instance list */
    for (size_t i = 0; i < gw->n_instances; i++) {
        ccgw_instance_t *in = gw->instances[i];
        pthread_mutex_lock(&in->lock);
        ccgw_run_state_t st = in->run_state;
        pthread_mutex_unlock(&in->lock);
        if (st == CCGW_RUN_RUNNING)
            running++;
        else if (st != CCGW_RUN_DISABLED && st != CCGW_RUN_CREATED && st != CCGW_RUN_STARTING)
            failed++;
    }
    pthread_mutex_unlock(&gw->life_lock);
    uint64_t now = ccgw_now_ms();
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "status");
    ccgw_jw_string(&w, nr ? "unhealthy" : "ok");
    if (nr) {
        ccgw_jw_key(&w, "reasons");
        ccgw_jw_begin_array(&w);
        for (size_t i = 0; i < nr; i++)
            ccgw_jw_string(&w, reasons[i]);
        ccgw_jw_end_array(&w);
    }
    ccgw_jw_key(&w, "boot");
    ccgw_jw_string(&w, gw->boot);
    ccgw_jw_key(&w, "uptime_s");
    ccgw_jw_uint(&w, gw->started_ms && now >= gw->started_ms ? (now - gw->started_ms) / 1000 : 0);
    ccgw_jw_key(&w, "mqtt");
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "enabled");
    ccgw_jw_bool(&w, gw->mqtt != NULL);
    ccgw_jw_key(&w, "connected");
    ccgw_jw_bool(&w, ms.connected);
    ccgw_jw_end_object(&w);
    ccgw_jw_key(&w, "instances");
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "running");
    ccgw_jw_uint(&w, running);
    ccgw_jw_key(&w, "failed");
    ccgw_jw_uint(&w, failed);
    ccgw_jw_end_object(&w);
    ccgw_jw_end_object(&w);
    resp_json(resp, nr ? 503 : 200, &w);
}

static void route_metrics(ccgw_gateway_t *gw, ccgw_http_resp_t *resp)
{
    size_t len = 0;
    char *b = ccgw_metrics_render(gw, &len);
    if (!b) {
        ccgw_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    resp_set(resp, 200, CT_PROM, b, len);
}

static const char *health_name(ccgw_health_t h)
{
    return h == CCGW_HEALTH_OK ? "ok" : h == CCGW_HEALTH_DEGRADED ? "degraded" : "failed";
}

static void route_instances(ccgw_gateway_t *gw, const ccgw_principal_t *who, ccgw_http_resp_t *resp)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "instances");
    ccgw_jw_begin_array(&w);
    pthread_mutex_lock(&gw->life_lock); /* reload changes the instance list */
    for (size_t i = 0; i < gw->n_instances; i++) {
        ccgw_instance_t *in = gw->instances[i];
        if (!ccgw_principal_may_see(who, in->health_topic))
            continue;
        pthread_mutex_lock(&in->lock);
        ccgw_run_state_t st = in->run_state;
        ccgw_health_t h = in->health;
        char *reason = in->reason ? strdup(in->reason) : NULL;
        size_t nd = in->n_devices;
        pthread_mutex_unlock(&in->lock);
        ccgw_jw_begin_object(&w);
        ccgw_jw_key(&w, "id");
        ccgw_jw_string(&w, in->cfg->id);
        ccgw_jw_key(&w, "plugin");
        ccgw_jw_string(&w, in->cfg->plugin);
        ccgw_jw_key(&w, "state");
        ccgw_jw_string(&w, ccgw_run_state_name(st));
        ccgw_jw_key(&w, "health");
        ccgw_jw_string(&w, health_name(h));
        ccgw_jw_key(&w, "reason");
        if (reason)
            ccgw_jw_string(&w, reason);
        else
            ccgw_jw_null(&w);
        free(reason);
        ccgw_jw_key(&w, "devices");
        ccgw_jw_uint(&w, nd);
        ccgw_jw_key(&w, "emitted");
        ccgw_jw_begin_object(&w);
        for (int k = 0; k < CCGW_KIND__COUNT; k++) {
            ccgw_jw_key(&w, ccgw_kind_name((ccgw_kind_t)k));
            ccgw_jw_uint(&w, atomic_load(&in->emitted[k]));
        }
        ccgw_jw_end_object(&w);
        ccgw_jw_key(&w, "dropped");
        ccgw_jw_begin_object(&w);
        for (int k = 0; k < CCGW_KIND__COUNT; k++) {
            ccgw_jw_key(&w, ccgw_kind_name((ccgw_kind_t)k));
            ccgw_jw_uint(&w, atomic_load(&in->dropped[k]));
        }
        ccgw_jw_end_object(&w);
        ccgw_jw_key(&w, "commands");
        ccgw_jw_begin_object(&w);
        ccgw_jw_key(&w, "in");
        ccgw_jw_uint(&w, atomic_load(&in->cmds_in));
        ccgw_jw_key(&w, "ok");
        ccgw_jw_uint(&w, atomic_load(&in->cmds_ok));
        ccgw_jw_key(&w, "failed");
        ccgw_jw_uint(&w, atomic_load(&in->cmds_failed));
        ccgw_jw_key(&w, "timeout");
        ccgw_jw_uint(&w, atomic_load(&in->cmds_timeout));
        ccgw_jw_end_object(&w);
        ccgw_jw_end_object(&w);
    }
    pthread_mutex_unlock(&gw->life_lock);
    ccgw_jw_end_array(&w);
    ccgw_jw_end_object(&w);
    resp_json(resp, 200, &w);
}

/* The value of `key` in a raw query string (no decoding: values here are ids). */
static bool query_get(const char *q, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);
    for (const char *p = q; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            size_t vl = n - kl - 1;
            if (vl >= len)
                vl = len - 1;
            memcpy(out, p + kl + 1, vl);
            out[vl] = '\0';
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

static void route_devices(ccgw_gateway_t *gw, const ccgw_principal_t *who, const char *query,
                          ccgw_http_resp_t *resp)
{
    char want[80] = "";
    bool filter = query_get(query, "class", want, sizeof want);
    rlist_t l;
    if (!rlist_fill(gw, &l, gw->site_base)) {
        ccgw_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "devices");
    ccgw_jw_begin_array(&w);
    for (size_t i = 0; i < l.n; i++) {
        char cls[80], dev[160];
        const rentry_t *e = &l.v[i];
        if (e->kind != CCGW_KIND_STATE || !parse_state_topic(gw, e->topic, cls, sizeof cls, dev, sizeof dev))
            continue;
        if ((filter && strcmp(cls, want) != 0) || !ccgw_principal_may_see(who, e->topic))
            continue;
        ccgw_jw_begin_object(&w);
        ccgw_jw_key(&w, "class");
        ccgw_jw_string(&w, cls);
        ccgw_jw_key(&w, "device");
        ccgw_jw_string(&w, dev);
        ccgw_jw_key(&w, "topic");
        ccgw_jw_string(&w, e->topic);
        ccgw_jw_key(&w, "state");
        raw_object(&w, e);
        ccgw_jw_end_object(&w);
    }
    ccgw_jw_end_array(&w);
    ccgw_jw_end_object(&w);
    rlist_free(&l);
    resp_json(resp, 200, &w);
}

static void route_device(ccgw_gateway_t *gw, const ccgw_principal_t *who, const char *cls, const char *dev,
                         ccgw_http_resp_t *resp)
{
    char *base = NULL;
    if (asprintf(&base, "%s/%s/%s/", gw->site_base, cls, dev) < 0) {
        ccgw_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    rlist_t l;
    if (!rlist_fill(gw, &l, base)) {
        free(base);
        ccgw_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    size_t bl = strlen(base);
    const rentry_t *state = NULL;
    size_t n_alarms = 0;
    for (size_t i = 0; i < l.n; i++) {
        const char *rest = l.v[i].topic + bl;
        if (l.v[i].kind == CCGW_KIND_STATE && !strcmp(rest, "state"))
            state = &l.v[i];
        else if (l.v[i].kind == CCGW_KIND_ALARM && !strncmp(rest, "alarm/", 6))
            n_alarms++;
    }
    char msg[400];
    if (!state && n_alarms == 0) {
        snprintf(msg, sizeof msg, "no device %.80s/%.160s", cls, dev);
        ccgw_http_resp_error(resp, 404, "not_found", msg);
    } else if (!ccgw_principal_may_see(who, state ? state->topic : base)) {
        ccgw_http_resp_error(resp, 403, "forbidden", "topic outside the token's filters");
    } else {
        ccgw_jw_t w;
        ccgw_jw_init(&w);
        ccgw_jw_begin_object(&w);
        ccgw_jw_key(&w, "class");
        ccgw_jw_string(&w, cls);
        ccgw_jw_key(&w, "device");
        ccgw_jw_string(&w, dev);
        ccgw_jw_key(&w, "state");
        if (state)
            raw_object(&w, state);
        else
            ccgw_jw_null(&w);
        ccgw_jw_key(&w, "alarms");
        ccgw_jw_begin_array(&w);
        for (size_t i = 0; i < l.n; i++)
            if (l.v[i].kind == CCGW_KIND_ALARM && !strncmp(l.v[i].topic + bl, "alarm/", 6) &&
                ccgw_principal_may_see(who, l.v[i].topic))
                alarm_object(&w, &l.v[i]);
        ccgw_jw_end_array(&w);
        ccgw_jw_end_object(&w);
        resp_json(resp, 200, &w);
    }
    rlist_free(&l);
    free(base);
}

static void route_alarms(ccgw_gateway_t *gw, const ccgw_principal_t *who, ccgw_http_resp_t *resp)
{
    rlist_t l;
    if (!rlist_fill(gw, &l, gw->site_base)) {
        ccgw_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "alarms");
    ccgw_jw_begin_array(&w);
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].kind == CCGW_KIND_ALARM && strstr(l.v[i].topic, "/alarm/") &&
            ccgw_principal_may_see(who, l.v[i].topic))
            alarm_object(&w, &l.v[i]);
    ccgw_jw_end_array(&w);
    ccgw_jw_end_object(&w);
    rlist_free(&l);
    resp_json(resp, 200, &w);
}

/* ------------------------------------------------------------------ */
/* commands and acknowledgements                                       */
/* ------------------------------------------------------------------ */

typedef struct pend {
    pthread_mutex_t lock;
    int refs;            /* the handler's and the reply target's */
    bool handed_off;     /* handle() returned pending: answer through done() */
    bool answered;
    bool ack;            /* map alarm.ack's answers (404 not active, 409 already acknowledged) */
    int status;
    char *body;
    size_t len;
    ccgw_http_done_fn done;
    void *done_ctx;
} pend_t;

static void pend_unref(pend_t *p)
{
    pthread_mutex_lock(&p->lock);
    bool last = --p->refs == 0;
    pthread_mutex_unlock(&p->lock);
    if (last) {
        free(p->body);
        pthread_mutex_destroy(&p->lock);
        free(p);
    }
}

/* HTTP status of a command reply payload. */
static int reply_status(const char *payload, size_t len, bool ack)
{
    json_error_t err;
    json_t *j = json_loadb(payload, len, 0, &err);
    if (!j)
        return 502;
    int st = 502;
    if (json_is_true(json_object_get(j, "ok"))) {
        st = 200;
    } else {
        json_t *e = json_object_get(j, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        code = code ? code : "";
        if (!strcmp(code, CCGW_CMD_E_UNKNOWN_DEVICE) || !strcmp(code, CCGW_CMD_E_UNKNOWN_COMMAND))
            st = 404;
        else if (!strcmp(code, CCGW_CMD_E_BAD_ARGUMENTS))
            st = 400;
        else if (!strcmp(code, CCGW_CMD_E_FORBIDDEN))
            st = 403;
        else if (!strcmp(code, CCGW_CMD_E_TIMEOUT))
            st = 504;
        else if (!strcmp(code, CCGW_CMD_E_BUSY))
            st = 503;
        /* alarm.ack answers bad_arguments for both; its message tells them apart (device.c) */
        if (ack && st == 400 && msg && !strncmp(msg, "no active alarm", 15))
            st = 404;
        else if (ack && st == 400 && msg && strstr(msg, "already acknowledged"))
            st = 409;
    }
    json_decref(j);
    return st;
}

static void pend_answer(pend_t *p, int status, char *body, size_t len)
{
    pthread_mutex_lock(&p->lock);
    if (p->answered) {
        pthread_mutex_unlock(&p->lock);
        free(body);
        return;
    }
    p->answered = true;
    if (!p->handed_off) {
        p->status = status;
        p->body = body;
        p->len = len;
        pthread_mutex_unlock(&p->lock);
        return;
    }
    pthread_mutex_unlock(&p->lock);
    p->done(p->done_ctx, status, CT_JSON, body, len);
}

static void pend_send(void *ctx, const char *payload, size_t len)
{
    pend_t *p = ctx;
    char *copy = malloc(len + 1);
    if (!copy) {
        size_t el = 0;
        char *e = error_json("internal", "out of memory", &el);
        pend_answer(p, 500, e, el);
        return;
    }
    memcpy(copy, payload, len);
    copy[len] = '\0';
    pend_answer(p, reply_status(payload, len, p->ack), copy, len);
}

static void pend_release(void *ctx)
{
    pend_t *p = ctx;
    size_t el = 0;
    char *e = error_json(CCGW_CMD_E_DEVICE_ERROR, "the command ended without a reply", &el);
    pend_answer(p, 502, e, el); /* no-op when answered */
    pend_unref(p);
}

/* Dispatch and either answer now (reply on this thread) or leave the response pending. */
static void dispatch(ccgw_gateway_t *gw, const ccgw_audit_who_t *who, const char *action, const char *target,
                     const char *cls, const char *dev, const char *name, const char *args, size_t args_len,
                     bool ack, ccgw_http_resp_t *resp, ccgw_http_done_fn done, void *done_ctx)
{
    pend_t *p = calloc(1, sizeof *p);
    if (!p) {
        ccgw_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->refs = 2;
    p->ack = ack;
    p->done = done;
    p->done_ctx = done_ctx;
    ccgw_reply_target_t t = {.send = pend_send, .release = pend_release, .ctx = p};
    t = ccgw_audit_wrap(gw->audit, who, action, target, args, args_len, t);
    char origin[96];
    snprintf(origin, sizeof origin, "http:%s", who->token ? who->token : "-");
    int role = who->role ? ccgw_role_parse(who->role) : -1;
    ccgw_cmd_caller_t caller = {.role = role < 0 ? CCGW_ROLE_NONE : role, .origin = origin};
    ccgw_command_dispatch_as(gw, &caller, cls, dev, name, args, args_len, t);
    pthread_mutex_lock(&p->lock);
    if (p->answered) {
        resp_set(resp, p->status, CT_JSON, p->body, p->len);
        p->body = NULL;
    } else if (!done) {
        /* no way to complete later (fuzzer, misuse): answer 202-less 500 now, drop the late reply */
        p->answered = true;
        pthread_mutex_unlock(&p->lock);
        ccgw_http_resp_error(resp, 500, "internal", "no completion callback for a pending reply");
        pend_unref(p);
        return;
    } else {
        p->handed_off = true;
        free(resp->body);
        resp->body = NULL;
        resp->body_len = 0;
        resp->status = 0;
        resp->content_type = CT_JSON;
        resp->pending = true;
    }
    pthread_mutex_unlock(&p->lock);
    pend_unref(p);
}

/* A command refused before dispatch: the MQTT-shaped reply payload, audited. */
static void refuse(ccgw_gateway_t *gw, const ccgw_audit_who_t *who, const char *action, const char *target,
                   const char *cls, const char *dev, const char *name, const char *args, size_t args_len,
                   int status, const char *code, const char *why, ccgw_http_resp_t *resp)
{
    ccgw_audit_record(gw->audit, who, action, target, args, args_len, code, why);
    CLOG_WARN(TAG, "%s %s by %s (%s) from %s refused: %s", action, target, who->token, who->role, who->remote,
              why);
    size_t len = 0;
    char *b = ccgw_device_encode_reply(gw, NULL, cls, dev, name, code, why, NULL, 0, &len);
    if (!b) {
        ccgw_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    resp_set(resp, status, CT_JSON, b, len);
}

/* Copy one topic level [a-z0-9_.-A-Z]; false if empty, too long or with '/' left. */
static bool take_level(const char **s, char *out, size_t len)
{
    const char *p = *s, *e = strchr(p, '/');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 0 || n >= len)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    *s = e ? e + 1 : p + n;
    return true;
}

/* "site/class/device/cmd/name": a command topic of some site */
static bool other_site_command(const char *s)
{
    char lv[5][136];
    for (int i = 0; i < 5; i++)
        if (!take_level(&s, lv[i], sizeof lv[i]))
            return false;
    return !*s && !strcmp(lv[3], "cmd");
}

static void route_command(ccgw_gateway_t *gw, const ccgw_http_req_t *req, const ccgw_audit_who_t *who,
                          ccgw_http_resp_t *resp, ccgw_http_done_fn done, void *done_ctx)
{
    json_error_t err;
    json_t *j = json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (!j) {
        char msg[256];
        snprintf(msg, sizeof msg, "body is not JSON: %s (line %d column %d)", err.text, err.line, err.column);
        ccgw_http_resp_error(resp, 400, "bad_json", msg);
        return;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        ccgw_http_resp_error(resp, 400, "bad_request", "the body must be a JSON object");
        return;
    }
    char cls[72], dev[136], name[136];
    const char *topic_in = json_string_value(json_object_get(j, "topic"));
    const char *e_msg = NULL;
    int e_status = 400;
    const char *e_code = "bad_request";
    if (topic_in) {
        size_t bl = strlen(gw->site_base);
        const char *prefix = gw->cfg->mqtt.topic_prefix ? gw->cfg->mqtt.topic_prefix : "ccgw/v1";
        size_t pl = strlen(prefix);
        char cmd[8];
        const char *s = topic_in + bl + 1;
        if (!strncmp(topic_in, gw->site_base, bl) && topic_in[bl] == '/' && take_level(&s, cls, sizeof cls) &&
            take_level(&s, dev, sizeof dev) && take_level(&s, cmd, sizeof cmd) && !strcmp(cmd, "cmd") &&
            take_level(&s, name, sizeof name) && !*s && !strchr(name, '/')) {
            /* ok */
        } else if (!strncmp(topic_in, prefix, pl) && topic_in[pl] == '/' && other_site_command(topic_in + pl + 1)) {
            e_status = 404;
            e_code = CCGW_CMD_E_UNKNOWN_DEVICE;
            e_msg = "the topic names no device of this gateway's site";
        } else {
            e_msg = "'topic' must be {prefix}/{site}/{class}/{device}/cmd/{name}";
        }
    } else {
        const char *c = json_string_value(json_object_get(j, "class"));
        const char *d = json_string_value(json_object_get(j, "device"));
        const char *n = json_string_value(json_object_get(j, "name"));
        if (!c || !d || !n)
            e_msg = "give 'topic', or 'class', 'device' and 'name' (strings)";
        else if (!*c || !*d || !*n || strlen(c) >= sizeof cls || strlen(d) >= sizeof dev || strlen(n) >= sizeof name ||
                 strchr(c, '/') || strchr(d, '/') || strchr(n, '/'))
            e_msg = "'class', 'device' and 'name' must be single topic levels";
        else {
            snprintf(cls, sizeof cls, "%s", c);
            snprintf(dev, sizeof dev, "%s", d);
            snprintf(name, sizeof name, "%s", n);
        }
    }
    json_t *args = json_object_get(j, "args");
    if (!e_msg && !strcmp(name, "alarm.ack") && json_is_object(args)) {
        /* who acknowledges is the token, whatever the body says */
        json_object_set_new(args, "by", json_string(req->who->name ? req->who->name : "-"));
    }
    char *args_s = args ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("{}");
    if (!args_s) {
        json_decref(j);
        ccgw_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    size_t args_len = strlen(args_s);
    if (e_msg) {
        if (e_status == 404) {
            /* a well-formed command for another site: audited as refused */
            ccgw_audit_record(gw->audit, who, "command", topic_in, args_s, args_len, e_code, e_msg);
        }
        ccgw_http_resp_error(resp, e_status, e_code, e_msg);
        free(args_s);
        json_decref(j);
        return;
    }
    json_decref(j);
    char *topic = NULL;
    if (asprintf(&topic, "%s/%s/%s/cmd/%s", gw->site_base, cls, dev, name) < 0) {
        free(args_s);
        ccgw_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    char why[256];
    bool is_ack = !strcmp(name, "alarm.ack");
    if (!ccgw_principal_may_command(req->who, topic, name, why, sizeof why))
        refuse(gw, who, is_ack ? "alarm.ack" : "command", topic, cls, dev, name, args_s, args_len, 403,
               CCGW_CMD_E_FORBIDDEN, why, resp);
    else
        dispatch(gw, who, is_ack ? "alarm.ack" : "command", topic, cls, dev, name, args_s, args_len, is_ack, resp,
                 done, done_ctx);
    free(topic);
    free(args_s);
}

static void route_ack(ccgw_gateway_t *gw, const ccgw_http_req_t *req, const ccgw_audit_who_t *who,
                      const char *cls, const char *dev, const char *code, ccgw_http_resp_t *resp,
                      ccgw_http_done_fn done, void *done_ctx)
{
    const char *note = NULL;
    json_t *j = NULL;
    bool empty = true;
    for (size_t i = 0; req->body && i < req->body_len; i++)
        if (req->body[i] != ' ' && req->body[i] != '\n' && req->body[i] != '\r' && req->body[i] != '\t')
            empty = false;
    if (!empty) {
        json_error_t err;
        j = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
        if (!j) {
            char msg[256];
            snprintf(msg, sizeof msg, "body is not JSON: %s (line %d column %d)", err.text, err.line, err.column);
            ccgw_http_resp_error(resp, 400, "bad_json", msg);
            return;
        }
        json_t *n = json_object_get(j, "note");
        if (!json_is_object(j) || (n && !json_is_string(n) && !json_is_null(n))) {
            json_decref(j);
            ccgw_http_resp_error(resp, 400, "bad_request", "the body must be a JSON object with an optional string 'note'");
            return;
        }
        note = json_string_value(n);
    }
    json_t *a = json_pack("{s:s, s:s}", "code", code, "by", req->who->name ? req->who->name : "-");
    if (a && note)
        json_object_set_new(a, "note", json_string(note));
    char *args_s = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    json_decref(j);
    char *topic = NULL;
    if (!args_s || asprintf(&topic, "%s/%s/%s/alarm/%s", gw->site_base, cls, dev, code) < 0) {
        free(args_s);
        ccgw_http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    size_t args_len = strlen(args_s);
    char why[256];
    if (!ccgw_principal_may_ack(req->who, topic, why, sizeof why))
        refuse(gw, who, "alarm.ack", topic, cls, dev, "alarm.ack", args_s, args_len, 403, CCGW_CMD_E_FORBIDDEN, why,
               resp);
    else
        dispatch(gw, who, "alarm.ack", topic, cls, dev, "alarm.ack", args_s, args_len, true, resp, done, done_ctx);
    free(topic);
    free(args_s);
}

static void route_reload(ccgw_gateway_t *gw, const ccgw_http_req_t *req, const ccgw_audit_who_t *who,
                         ccgw_http_resp_t *resp)
{
    char why[512] = "";
    if (!ccgw_principal_may_admin(req->who, why, sizeof why)) {
        ccgw_audit_record(gw->audit, who, "reload", gw->cfg->path, NULL, 0, "forbidden", why);
        CLOG_WARN(TAG, "reload by %s (%s) from %s refused: %s", who->token, who->role, who->remote, why);
        ccgw_http_resp_error(resp, 403, "forbidden", why);
        return;
    }
    int rc = ccgw_gateway_reload(gw, why, sizeof why);
    ccgw_audit_record(gw->audit, who, "reload", gw->cfg->path, NULL, 0, rc == 0 ? "ok" : "config_rejected",
                      rc == 0 ? NULL : why);
    if (rc != 0) {
        ccgw_http_resp_error(resp, 409, "config_rejected", why[0] ? why : "the configuration was rejected");
        return;
    }
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "ok");
    ccgw_jw_bool(&w, true);
    ccgw_jw_end_object(&w);
    resp_json(resp, 200, &w);
}

/* ------------------------------------------------------------------ */
/* dispatch on method and path                                         */
/* ------------------------------------------------------------------ */

/* Split "/api/v1/a/b/c" after "/api/v1/" into segments (copies in buf). */
static int split(const char *rest, char *buf, size_t len, char **seg)
{
    size_t n = strlen(rest);
    if (n >= len)
        return -1;
    memcpy(buf, rest, n + 1);
    if (n && buf[n - 1] == '/')
        buf[--n] = '\0'; /* one trailing slash is fine */
    int ns = 0;
    char *p = buf;
    if (!*p)
        return 0;
    for (;;) {
        if (ns == MAX_SEGMENTS)
            return -1;
        seg[ns++] = p;
        char *s = strchr(p, '/');
        if (!s)
            break;
        *s = '\0';
        p = s + 1;
    }
    for (int i = 0; i < ns; i++)
        if (!*seg[i])
            return -1; /* empty level: "a//b" */
    return ns;
}

static bool is_get(const char *m) { return !strcmp(m, "GET") || !strcmp(m, "HEAD"); }

static void method_not_allowed(ccgw_http_resp_t *resp, const char *method, const char *allowed)
{
    char msg[128];
    snprintf(msg, sizeof msg, "method %.16s not allowed here (allowed: %s)", method, allowed);
    ccgw_http_resp_error(resp, 405, "method_not_allowed", msg);
}

void ccgw_http_api_handle(struct ccgw_gateway *gw, const ccgw_http_req_t *req, ccgw_http_resp_t *resp,
                          ccgw_http_done_fn done, void *done_ctx)
{
    memset(resp, 0, sizeof *resp);
    if (!gw || !req || !req->method || !req->path) {
        ccgw_http_resp_error(resp, 400, "bad_request", "incomplete request");
        return;
    }
    const char *m = req->method, *path = req->path;
    if (!strcmp(path, "/healthz")) {
        if (!is_get(m))
            method_not_allowed(resp, m, "GET");
        else
            route_healthz(gw, resp);
        return;
    }
    /* everything else needs a principal (a token, or the anonymous role) */
    if (!req->who || req->who->role <= CCGW_ROLE_NONE) {
        ccgw_http_resp_error(resp, 401, "unauthorized", "a valid bearer token is required (Authorization: Bearer ...)");
        return;
    }
    size_t max = gw->cfg->http.max_request_bytes > 0 ? (size_t)gw->cfg->http.max_request_bytes : 65536;
    if (req->body_len > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body over %zu bytes", max);
        ccgw_http_resp_error(resp, 413, "too_large", msg);
        return;
    }
    if (!strcmp(path, "/metrics")) {
        if (!is_get(m))
            method_not_allowed(resp, m, "GET");
        else
            route_metrics(gw, resp);
        return;
    }
    if (strncmp(path, "/api/v1/", 8) != 0) {
        ccgw_http_resp_error(resp, 404, "not_found", "no such API path");
        return;
    }
    char buf[1024], *seg[MAX_SEGMENTS];
    int ns = split(path + 8, buf, sizeof buf, seg);
    ccgw_audit_who_t who = {.token = req->who->name ? req->who->name : "-",
                            .role = ccgw_role_name(req->who->role),
                            .remote = req->remote ? req->remote : "-",
                            .channel = "http"};
    if (ns == 1 && !strcmp(seg[0], "instances")) {
        if (!is_get(m))
            method_not_allowed(resp, m, "GET");
        else
            route_instances(gw, req->who, resp);
    } else if (ns == 1 && !strcmp(seg[0], "devices")) {
        if (!is_get(m))
            method_not_allowed(resp, m, "GET");
        else
            route_devices(gw, req->who, req->query, resp);
    } else if (ns == 3 && !strcmp(seg[0], "devices")) {
        if (!is_get(m))
            method_not_allowed(resp, m, "GET");
        else if (!ccgw_valid_name(seg[1], false) || !ccgw_valid_name(seg[2], false))
            ccgw_http_resp_error(resp, 404, "not_found", "no such device");
        else
            route_device(gw, req->who, seg[1], seg[2], resp);
    } else if (ns == 1 && !strcmp(seg[0], "alarms")) {
        if (!is_get(m))
            method_not_allowed(resp, m, "GET");
        else
            route_alarms(gw, req->who, resp);
    } else if (ns == 1 && !strcmp(seg[0], "commands")) {
        if (strcmp(m, "POST") != 0)
            method_not_allowed(resp, m, "POST");
        else
            route_command(gw, req, &who, resp, done, done_ctx);
    } else if (ns == 5 && !strcmp(seg[0], "alarms") && !strcmp(seg[4], "ack")) {
        if (strcmp(m, "POST") != 0)
            method_not_allowed(resp, m, "POST");
        else if (!ccgw_valid_name(seg[1], false) || !ccgw_valid_name(seg[2], false) || !ccgw_valid_name(seg[3], false))
            ccgw_http_resp_error(resp, 404, "not_found", "no such alarm");
        else
            route_ack(gw, req, &who, seg[1], seg[2], seg[3], resp, done, done_ctx);
    } else if (ns == 1 && !strcmp(seg[0], "reload")) {
        if (strcmp(m, "POST") != 0)
            method_not_allowed(resp, m, "POST");
        else
            route_reload(gw, req, &who, resp);
    } else {
        ccgw_http_resp_error(resp, 404, "not_found", "no such API path");
    }
}
