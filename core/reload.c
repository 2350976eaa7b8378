/*
 * reload - live reload of the config file (ccgw_gateway_reload, declared in
 * gateway.h): SIGHUP on the main thread, POST /api/v1/reload on the HTTP
 * thread. Serialised with the supervisor by gw->life_lock.
 *
 * The file is loaded and validated with the same loader and plugin resolver
 * as at start. Invalid: rejected as a whole (every error logged, counter
 * reloads_rejected, gateway alarm config_rejected, cleared by the next good
 * reload); the running instances are untouched. Valid: instances are matched
 * by id; removed ones stop first (a replacement under a new id may declare
 * the same device ids), then added ones start, changed ones (plugin, enabled,
 * command_timeout_ms, supervision or any option differ) are stopped and
 * started anew, unchanged ones keep running, untouched. gateway.log_level is
 * applied at once; mqtt.tls files renewed in place (same paths, new
 * content) make the MQTT side reconnect, which re-reads them. What needs a
 * restart (logged as a warning, the running value kept): the other gateway
 * keys (site, id, data_dir, plugin_dirs, queue_size, backpressure_ms), the
 * mqtt, alarms and http sections' settings.
 *
 * Memory: gw->cfg (the boot config) stays, for the gateway-level settings.
 * A reloaded config is kept in gw->retired while any instance points into
 * it (plugins may keep pointers into their option nodes), and freed as soon
 * as none does, or with the gateway.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gateway.h"
#include "instance.h"
#include "log.h"
#include "mqtt_north.h"
#include "sd_notify.h"
#include "supervisor.h"

#define STOP_TIMEOUT_MS 5000

static bool node_equal(const struct ccgw_config *a, const struct ccgw_config *b)
{
    if (!a || !b)
        return a == b;
    if (a->kind != b->kind)
        return false;
    if (a->kind == CCGW_NODE_SCALAR) {
        if (a->is_null != b->is_null)
            return false;
        return a->is_null || (a->text && b->text && !strcmp(a->text, b->text));
    }
    if (a->count != b->count)
        return false;
    if (a->kind == CCGW_NODE_LIST) {
        for (size_t i = 0; i < a->count; i++)
            if (!node_equal(a->items[i], b->items[i]))
                return false;
        return true;
    }
    for (size_t i = 0; i < a->count; i++) {
        const struct ccgw_config *other = NULL;
        for (size_t j = 0; j < b->count && !other; j++)
            if (!strcmp(a->keys[i], b->keys[j]))
                other = b->items[j];
        if (!other || !node_equal(a->items[i], other))
            return false;
    }
    return true;
}

static const struct ccgw_config *section(const ccgw_gateway_config_t *c, const char *name)
{
    return c->doc ? ccgw_config_get(c->doc->root, name) : NULL;
}

static bool str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

static bool instance_same(const ccgw_instance_config_t *a, const ccgw_instance_config_t *b)
{
    return str_eq(a->plugin, b->plugin) && a->enabled == b->enabled && a->desc == b->desc &&
           a->command_timeout_ms == b->command_timeout_ms &&
           !memcmp(&a->supervision, &b->supervision, sizeof a->supervision) &&
           str_eq(a->refused, b->refused) && node_equal(a->options, b->options);
}

/* The settings a reload does not apply, by name, into out. */
static void restart_only(const ccgw_gateway_config_t *o, const ccgw_gateway_config_t *n, char *out, size_t len)
{
    out[0] = '\0';
    size_t used = 0;
#define NOTE(cond, name)                                                                                    \
    do {                                                                                                    \
        if (cond) {                                                                                         \
            int w = snprintf(out + used, len - used, "%s%s", used ? ", " : "", name);                       \
            if (w > 0 && (size_t)w < len - used)                                                            \
                used += (size_t)w;                                                                          \
        }                                                                                                   \
    } while (0)
    NOTE(!str_eq(o->site, n->site), "gateway.site");
    NOTE(!str_eq(o->gateway_id, n->gateway_id), "gateway.id");
    NOTE(!str_eq(o->data_dir, n->data_dir), "gateway.data_dir");
    const struct ccgw_config *og = section(o, "gateway"), *ng = section(n, "gateway");
    NOTE(!node_equal(ccgw_config_get(og, "plugin_dirs"), ccgw_config_get(ng, "plugin_dirs")), "gateway.plugin_dirs");
    NOTE(o->queue_size != n->queue_size, "gateway.queue_size");
    NOTE(o->backpressure_ms != n->backpressure_ms, "gateway.backpressure_ms");
    NOTE(!node_equal(section(o, "mqtt"), section(n, "mqtt")), "mqtt");
    NOTE(!node_equal(section(o, "alarms"), section(n, "alarms")), "alarms");
    NOTE(!node_equal(section(o, "http"), section(n, "http")), "http");
#undef NOTE
}

/* A cheap fingerprint of a file (inode, size, mtime); 0 when absent. */
static uint64_t stamp(const char *path)
{
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return 0;
    return ((uint64_t)st.st_ino * 1000003u) ^ ((uint64_t)st.st_size << 20) ^ (uint64_t)st.st_mtim.tv_sec * 1000000007u ^
           (uint64_t)st.st_mtim.tv_nsec;
}

static void tls_stamps(const ccgw_mqtt_config_t *c, uint64_t out[3])
{
    out[0] = c->tls ? stamp(c->ca_file) : 0;
    out[1] = c->tls ? stamp(c->cert_file) : 0;
    out[2] = c->tls ? stamp(c->key_file) : 0;
}

void ccgw_reload_init(ccgw_gateway_t *gw) { tls_stamps(&gw->cfg->mqtt, gw->tls_stamp); }

static bool cfg_in_use(ccgw_gateway_t *gw, const ccgw_gateway_config_t *c)
{
    for (size_t i = 0; i < gw->n_instances; i++) {
        const ccgw_instance_config_t *ic = gw->instances[i]->cfg;
        if (c->n_instances && ic >= c->instances && ic < c->instances + c->n_instances)
            return true;
    }
    return false;
}

static void drop_unused_configs(ccgw_gateway_t *gw)
{
    if (gw->keep_retired)
        return;
    size_t j = 0;
    for (size_t i = 0; i < gw->n_retired; i++) {
        if (cfg_in_use(gw, gw->retired[i]))
            gw->retired[j++] = gw->retired[i];
        else
            ccgw_gateway_config_free(gw->retired[i]);
    }
    gw->n_retired = j;
}

static void reject(ccgw_gateway_t *gw, ccgw_gateway_config_t *nc, char *why, size_t whylen)
{
    uint64_t n = atomic_fetch_add(&gw->reloads_rejected, 1) + 1;
    char msg[600];
    if (!nc) {
        snprintf(msg, sizeof msg, "out of memory loading %s", gw->cfg->path);
    } else {
        for (size_t i = 0; i < nc->doc->n_diags; i++)
            CLOG_ERROR("reload", "%s", nc->doc->diags[i]);
        snprintf(msg, sizeof msg, "%zu error%s in %s, first: %s", nc->doc->n_diags,
                 nc->doc->n_diags == 1 ? "" : "s", gw->cfg->path, nc->doc->diags[0]);
    }
    CLOG_ERROR("reload", "configuration rejected as a whole (%llu rejected so far); the running one is kept: %s",
               (unsigned long long)n, msg);
    snprintf(gw->last_reload_error, sizeof gw->last_reload_error, "%.500s", msg);
    ccgw_gateway_alarm(gw, "config_rejected", true, "major", msg);
    snprintf(why, whylen, "rejected: %s", msg);
    ccgw_gateway_config_free(nc);
}

static void retire_instance(ccgw_gateway_t *gw, ccgw_instance_t *inst, bool removed)
{
    char tag[160];
    snprintf(tag, sizeof tag, "%s", inst->tag);
    pthread_mutex_lock(&inst->lock);
    snprintf(inst->stop_reason, sizeof inst->stop_reason, "instance %s by a reload", removed ? "removed" : "changed");
    pthread_mutex_unlock(&inst->lock);
    if (ccgw_instance_stop_timed(inst, STOP_TIMEOUT_MS) != CCGW_OK) {
        CLOG_ERROR("reload", "[%s] its thread is stuck in a plugin call: left behind", tag);
        atomic_fetch_add(&gw->abandoned, 1);
        gw->keep_retired = true;
    }
    ccgw_supervisor_reset(gw, inst);
    if (removed && !inst->abandoned) /* the health topic goes away with the instance */
        ccgw_bus_retain(gw->bus, CCGW_KIND_INSTANCE, 1, inst->health_topic, "", 0);
    ccgw_instance_free(inst); /* nothing when abandoned */
}

int ccgw_gateway_reload(ccgw_gateway_t *gw, char *why, size_t whylen)
{
    char dummy[8];
    if (!why || !whylen) {
        why = dummy;
        whylen = sizeof dummy;
    }
    if (atomic_load(&gw->stopping)) {
        snprintf(why, whylen, "the gateway is stopping");
        return CCGW_ESTATE;
    }
    pthread_mutex_lock(&gw->life_lock);
    if (atomic_load(&gw->stopping)) { /* the stop ran while we waited for the lock */
        pthread_mutex_unlock(&gw->life_lock);
        snprintf(why, whylen, "the gateway is stopping");
        return CCGW_ESTATE;
    }
    ccgw_sd_reloading();
    ccgw_gateway_config_t *nc = ccgw_gateway_config_load(gw->cfg->path, gw->resolver, gw->resolver_ctx);
    if (!nc || nc->doc->n_diags > 0) {
        reject(gw, nc, why, whylen);
        ccgw_sd_ready(why);
        pthread_mutex_unlock(&gw->life_lock);
        return CCGW_EINVAL;
    }
    ccgw_instance_t **list = calloc(nc->n_instances ? nc->n_instances : 1, sizeof *list);
    ccgw_instance_t **olds = calloc(nc->n_instances ? nc->n_instances : 1, sizeof *olds); /* matched by id */
    bool *taken = calloc(gw->n_instances ? gw->n_instances : 1, sizeof *taken);       /* running ones matched */
    ccgw_gateway_config_t **retired = realloc(gw->retired, (gw->n_retired + 1) * sizeof *retired);
    if (retired)
        gw->retired = retired;
    if (!list || !olds || !taken || !retired) {
        free(list);
        free(olds);
        free(taken);
        reject(gw, NULL, why, whylen);
        ccgw_gateway_config_free(nc);
        ccgw_sd_ready(why);
        pthread_mutex_unlock(&gw->life_lock);
        return CCGW_ENOMEM;
    }
    char later[256];
    restart_only(gw->cfg, nc, later, sizeof later);
    if (later[0])
        CLOG_WARN("reload", "changed but applied only by a restart (the running values are kept): %s", later);
    if (nc->log_level != gw->cfg->log_level)
        ccgw_log_set_level((ccgw_log_level_t)nc->log_level);

    size_t added = 0, removed = 0, changed = 0, kept = 0;
    /* Match every new instance to a running one by id first, then stop the
     * removed ones before anything starts: a replacement instance under a new
     * id may declare the same device ids as the one it replaces. */
    for (size_t i = 0; i < nc->n_instances; i++) {
        for (size_t k = 0; k < gw->n_instances && !olds[i]; k++) {
            if (!taken[k] && !strcmp(gw->instances[k]->cfg->id, nc->instances[i].id)) {
                olds[i] = gw->instances[k];
                taken[k] = true;
            }
        }
    }
    for (size_t k = 0; k < gw->n_instances; k++) {
        if (taken[k])
            continue;
        CLOG_INFO("reload", "instance %s removed: stopping it", gw->instances[k]->cfg->id);
        retire_instance(gw, gw->instances[k], true);
        removed++;
    }
    size_t n = 0;
    for (size_t i = 0; i < nc->n_instances; i++) {
        ccgw_instance_config_t *ic = &nc->instances[i];
        ccgw_instance_t *old = olds[i];
        if (old && instance_same(old->cfg, ic) && !old->abandoned) {
            list[n++] = old; /* keeps running, on its old config nodes */
            kept++;
            continue;
        }
        if (old) {
            CLOG_INFO("reload", "instance %s changed: restarting it", ic->id);
            retire_instance(gw, old, false);
            changed++;
        } else {
            CLOG_INFO("reload", "instance %s added", ic->id);
            added++;
        }
        ccgw_instance_t *inst = ccgw_instance_new(gw, ic);
        if (!inst) {
            CLOG_ERROR("reload", "instance %s: out of memory; it is not started", ic->id);
            continue;
        }
        list[n++] = inst;
        if (inst->run_state == CCGW_RUN_DISABLED || !inst->desc)
            ccgw_instance_publish_health(inst);
        else if (ccgw_instance_launch(inst) != CCGW_OK)
            CLOG_ERROR("reload", "instance %s: cannot start its thread (the supervisor retries)", ic->id);
    }
    free(olds);
    free(taken);
    free(gw->instances);
    gw->instances = list;
    gw->n_instances = n;
    gw->retired[gw->n_retired++] = nc;
    drop_unused_configs(gw);

    uint64_t ok = atomic_fetch_add(&gw->reloads_ok, 1) + 1;
    gw->last_reload_error[0] = '\0';
    ccgw_gateway_alarm(gw, "config_rejected", false, NULL, "a valid configuration was loaded");
    snprintf(why, whylen, "%zu added, %zu removed, %zu restarted, %zu unchanged%s%s", added, removed, changed,
             kept, later[0] ? "; needs a restart: " : "", later);
    CLOG_INFO("reload", "configuration applied (reload %llu): %s", (unsigned long long)ok, why);
    /* renewed TLS files (same paths, new content): reconnect, which re-reads them */
    uint64_t now_stamp[3];
    tls_stamps(&gw->cfg->mqtt, now_stamp);
    if (gw->mqtt && memcmp(now_stamp, gw->tls_stamp, sizeof now_stamp) != 0) {
        memcpy(gw->tls_stamp, now_stamp, sizeof now_stamp);
        ccgw_mqtt_reconnect(gw->mqtt, "the mqtt.tls files changed");
    }
    ccgw_gateway_publish_status(gw, true, NULL);
    ccgw_sd_ready(why);
    pthread_mutex_unlock(&gw->life_lock);
    return CCGW_OK;
}
