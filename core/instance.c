/* instance - see instance.h. */
#include "instance.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "command.h"
#include "device.h"
#include "gateway.h"
#include "json_writer.h"
#include "log.h"

#define POST_LIMIT 4096

static const char *const run_names[] = {"created", "starting", "running", "failed",
                                        "stopping", "stopped", "disabled", "backoff", "quarantined"};

const char *ccgw_run_state_name(ccgw_run_state_t s)
{
    return (unsigned)s <= CCGW_RUN_QUARANTINED ? run_names[s] : "?";
}

static const char *health_name(ccgw_health_t h)
{
    switch (h) {
    case CCGW_HEALTH_OK: return "ok";
    case CCGW_HEALTH_DEGRADED: return "degraded";
    case CCGW_HEALTH_FAILED: return "failed";
    }
    return "failed";
}

/* "pre" + the members of {"k1":"v1"[,"k2":"v2"]} + "post", malloc'ed. */
static char *encode_members(const char *pre, const char *k1, const char *v1, const char *k2,
                            const char *v2, const char *post, size_t *len)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, k1);
    ccgw_jw_string(&w, v1);
    if (k2) {
        ccgw_jw_key(&w, k2);
        ccgw_jw_string(&w, v2);
    }
    ccgw_jw_end_object(&w);
    size_t pl = strlen(pre), ml = w.error ? 0 : w.len - 2, ql = strlen(post);
    char *out = w.error ? NULL : malloc(pl + ml + ql + 1);
    if (out) {
        memcpy(out, pre, pl);
        memcpy(out + pl, w.buf + 1, ml);
        memcpy(out + pl + ml, post, ql + 1);
        *len = pl + ml + ql;
    }
    ccgw_jw_free(&w);
    return out;
}

ccgw_instance_t *ccgw_instance_new(ccgw_gateway_t *gw, const ccgw_instance_config_t *cfg)
{
    ccgw_instance_t *inst = calloc(1, sizeof *inst);
    if (!inst)
        return NULL;
    inst->gw = gw;
    inst->cfg = cfg;
    inst->desc = cfg->desc;
    snprintf(inst->tag, sizeof inst->tag, "%s:%s", cfg->plugin, cfg->id);
    size_t tl = strlen(gw->gw_base) + strlen(cfg->id) + 16;
    inst->health_topic = malloc(tl);
    if (!inst->health_topic) {
        free(inst);
        return NULL;
    }
    snprintf(inst->health_topic, tl, "%s/instance/%s", gw->gw_base, cfg->id);
    /* the envelope of its devices' messages (device.c env_members): without
     * them (no memory) devices encode these members one by one */
    inst->env_head = encode_members("", "site", gw->cfg->site, NULL, NULL, ",\"class\":\"",
                                    &inst->env_head_len);
    inst->env_tail = encode_members("\",", "instance", cfg->id, "boot", gw->boot, "",
                                    &inst->env_tail_len);
    if (!inst->env_head || !inst->env_tail) {
        free(inst->env_head);
        free(inst->env_tail);
        inst->env_head = inst->env_tail = NULL;
    }
    inst->quota = ccgw_bus_quota_new(gw->bus); /* NULL: no share limit for it */
    pthread_mutex_init(&inst->lock, NULL);
    pthread_cond_init(&inst->cond, NULL);
    inst->run_state = cfg->enabled ? CCGW_RUN_CREATED : CCGW_RUN_DISABLED;
    inst->health = CCGW_HEALTH_OK;
    if (cfg->enabled && !cfg->desc) {
        /* the plugin file exists but was refused (wrong ABI...): this instance
         * fails, the others run */
        inst->run_state = CCGW_RUN_FAILED;
        inst->health = CCGW_HEALTH_FAILED;
        char why[600];
        snprintf(why, sizeof why, "plugin refused: %s", cfg->refused ? cfg->refused : "not loaded");
        inst->reason = strdup(why);
    }
    return inst;
}

void ccgw_instance_publish_health(ccgw_instance_t *inst)
{
    ccgw_gateway_t *gw = inst->gw;
    char ts[CCGW_TS_LEN];
    ccgw_ts_now(ts);
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    pthread_mutex_lock(&inst->lock);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "ts");
    ccgw_jw_string(&w, ts);
    ccgw_jw_key(&w, "site");
    ccgw_jw_string(&w, gw->cfg->site);
    ccgw_jw_key(&w, "gateway");
    ccgw_jw_string(&w, gw->cfg->gateway_id);
    ccgw_jw_key(&w, "instance");
    ccgw_jw_string(&w, inst->cfg->id);
    ccgw_jw_key(&w, "plugin");
    ccgw_jw_string(&w, inst->cfg->plugin);
    ccgw_jw_key(&w, "boot");
    ccgw_jw_string(&w, gw->boot);
    ccgw_jw_key(&w, "seq");
    ccgw_jw_uint(&w, ++inst->health_seq);
    const ccgw_inst_sup_t *sup = &inst->sup;
    bool bad = inst->run_state == CCGW_RUN_FAILED || inst->run_state == CCGW_RUN_BACKOFF ||
               inst->run_state == CCGW_RUN_QUARANTINED || sup->hung;
    ccgw_jw_key(&w, "state");
    ccgw_jw_string(&w, sup->hung && inst->run_state != CCGW_RUN_QUARANTINED ? "hung"
                                                                             : ccgw_run_state_name(inst->run_state));
    ccgw_jw_key(&w, "health");
    ccgw_jw_string(&w, bad ? "failed" : health_name(inst->health));
    if (inst->reason) {
        ccgw_jw_key(&w, "reason");
        ccgw_jw_string(&w, inst->reason);
    }
    ccgw_jw_key(&w, "devices");
    ccgw_jw_uint(&w, inst->n_devices);
    /* supervision (supervisor.c) */
    ccgw_jw_key(&w, "restarts");
    ccgw_jw_uint(&w, sup->restarts);
    ccgw_jw_key(&w, "failures");
    ccgw_jw_uint(&w, sup->failures);
    ccgw_jw_key(&w, "failures_in_window");
    ccgw_jw_uint(&w, sup->n_fail);
    if (sup->last_failure[0]) {
        ccgw_jw_key(&w, "last_failure");
        ccgw_jw_string(&w, sup->last_failure);
        ccgw_jw_key(&w, "last_failure_at");
        ccgw_jw_string(&w, sup->last_failure_ts);
    }
    if (sup->next_attempt_ms) {
        uint64_t now = ccgw_now_ms();
        ccgw_jw_key(&w, "next_attempt_at");
        ccgw_jw_string(&w, sup->next_attempt_ts);
        ccgw_jw_key(&w, "next_attempt_in_ms");
        ccgw_jw_uint(&w, sup->next_attempt_ms > now ? sup->next_attempt_ms - now : 0);
    }
    ccgw_jw_key(&w, "quarantined");
    ccgw_jw_bool(&w, sup->quarantined);
    ccgw_jw_end_object(&w);
    /* under inst->lock so that health updates reach the cache in order */
    if (!w.error)
        ccgw_bus_retain(gw->bus, CCGW_KIND_INSTANCE, 1, inst->health_topic, w.buf, w.len);
    pthread_mutex_unlock(&inst->lock);
    ccgw_jw_free(&w);
}

static void set_run_state(ccgw_instance_t *inst, ccgw_run_state_t s, const char *reason)
{
    pthread_mutex_lock(&inst->lock);
    inst->run_state = s;
    if (reason) {
        free(inst->reason);
        inst->reason = strdup(reason);
    }
    if (s == CCGW_RUN_STOPPED || s == CCGW_RUN_STARTING)
        inst->health = CCGW_HEALTH_OK; /* the plugin's last word does not outlive it */
    if (s == CCGW_RUN_FAILED)
        inst->health = CCGW_HEALTH_FAILED;
    if (s == CCGW_RUN_RUNNING)
        inst->sup.running_since_ms = ccgw_now_ms();
    else
        inst->sup.running_since_ms = 0;
    if (s == CCGW_RUN_RUNNING || s == CCGW_RUN_FAILED) {
        inst->start_done = true;
        pthread_cond_broadcast(&inst->cond);
    }
    pthread_mutex_unlock(&inst->lock);
    ccgw_instance_publish_health(inst);
}

/* Devices go offline with "instance failed: WHY" / "instance restarting: WHY"... */
static void offline_all(ccgw_instance_t *inst, const char *why)
{
    char r[300];
    if (!strncmp(why, "instance ", 9))
        snprintf(r, sizeof r, "%s", why);
    else
        snprintf(r, sizeof r, "instance failed: %s", why);
    ccgw_devices_set_all_offline(inst, r);
}

static void *instance_main(void *arg)
{
    ccgw_instance_t *inst = arg;
    const ccgw_plugin_t *p = inst->desc;
    char why[256];
    set_run_state(inst, CCGW_RUN_STARTING, NULL);
    int rc = p->create(inst, inst->cfg->options, &inst->state);
    if (rc < 0) {
        snprintf(why, sizeof why, "create failed: %s (%d)", ccgw_strerror(rc), rc);
        ccgw_log_tagged(CCGW_LOG_ERROR, inst->tag, NULL, 0, "%s; the other instances keep running", why);
        offline_all(inst, why);
        ccgw_loop_close_posts(inst->loop);
        ccgw_devices_remove_all(inst);
        set_run_state(inst, CCGW_RUN_FAILED, why);
        atomic_store(&inst->thread_done, true);
        return NULL;
    }
    rc = p->start(inst->state);
    if (rc < 0) {
        snprintf(why, sizeof why, "start failed: %s (%d)", ccgw_strerror(rc), rc);
        ccgw_log_tagged(CCGW_LOG_ERROR, inst->tag, NULL, 0, "%s; the other instances keep running", why);
        offline_all(inst, why);
        ccgw_loop_run_posts(inst->loop);
        ccgw_loop_close_posts(inst->loop);
        ccgw_commands_teardown(inst);
        p->destroy(inst->state);
        inst->state = NULL;
        ccgw_commands_teardown(inst);
        ccgw_devices_remove_all(inst);
        set_run_state(inst, CCGW_RUN_FAILED, why);
        atomic_store(&inst->thread_done, true);
        return NULL;
    }
    ccgw_log_tagged(CCGW_LOG_INFO, inst->tag, NULL, 0, "running (%s %s, %zu devices)", p->name,
                    p->version ? p->version : "", inst->n_devices);
    set_run_state(inst, CCGW_RUN_RUNNING, NULL);

    ccgw_loop_run(inst->loop);

    set_run_state(inst, CCGW_RUN_STOPPING, NULL);
    p->stop(inst->state);
    ccgw_loop_run_posts(inst->loop); /* work the plugin's threads handed over before stop returned */
    ccgw_loop_close_posts(inst->loop);
    ccgw_commands_teardown(inst);
    char stop_reason[sizeof inst->stop_reason];
    pthread_mutex_lock(&inst->lock);
    snprintf(stop_reason, sizeof stop_reason, "%s", inst->stop_reason[0] ? inst->stop_reason : "instance stopped");
    pthread_mutex_unlock(&inst->lock);
    offline_all(inst, stop_reason);
    p->destroy(inst->state);
    inst->state = NULL;
    ccgw_commands_teardown(inst); /* replies the plugin never made */
    ccgw_devices_remove_all(inst);
    set_run_state(inst, CCGW_RUN_STOPPED, "stopped");
    atomic_store(&inst->thread_done, true);
    return NULL;
}

int ccgw_instance_launch(ccgw_instance_t *inst)
{
    if (inst->thread_started || inst->abandoned)
        return CCGW_ESTATE;
    if (!inst->desc)
        return CCGW_ESTATE;
    ccgw_loop_free(inst->loop);
    inst->loop = ccgw_loop_new(POST_LIMIT);
    if (!inst->loop)
        return CCGW_ENOMEM;
    pthread_mutex_lock(&inst->lock);
    inst->start_done = false;
    inst->stop_reason[0] = '\0';
    free(inst->reason); /* the last life's (kept in sup.last_failure) */
    inst->reason = NULL;
    inst->sup.launched_ms = ccgw_now_ms();
    inst->sup.stop_asked_ms = 0;
    inst->sup.hung = false;
    inst->sup.next_attempt_ms = 0;
    inst->run_state = CCGW_RUN_STARTING;
    pthread_mutex_unlock(&inst->lock);
    atomic_store(&inst->thread_done, false);
    int rc = pthread_create(&inst->thread, NULL, instance_main, inst);
    if (rc != 0) {
        ccgw_log_tagged(CCGW_LOG_ERROR, inst->tag, NULL, 0, "cannot start its thread: %s", strerror(rc));
        set_run_state(inst, CCGW_RUN_FAILED, "cannot start thread");
        atomic_store(&inst->thread_done, true);
        return CCGW_ENOMEM;
    }
    inst->thread_started = true;
    char name[16];
    snprintf(name, sizeof name, "i:%s", inst->cfg->id);
    pthread_setname_np(inst->thread, name);
    return CCGW_OK;
}

bool ccgw_instance_reap(ccgw_instance_t *inst)
{
    if (!inst->thread_started || !atomic_load(&inst->thread_done))
        return false;
    pthread_join(inst->thread, NULL);
    inst->thread_started = false;
    ccgw_loop_free(inst->loop);
    inst->loop = NULL;
    return true;
}

int ccgw_instance_start(ccgw_instance_t *inst, int timeout_ms)
{
    if (inst->run_state == CCGW_RUN_DISABLED) {
        ccgw_instance_publish_health(inst);
        return CCGW_OK;
    }
    if (!inst->desc) {
        ccgw_log_tagged(CCGW_LOG_ERROR, inst->tag, NULL, 0, "%s; the other instances keep running",
                        inst->reason ? inst->reason : "failed");
        ccgw_instance_publish_health(inst);
        return CCGW_ESTATE;
    }
    int rc = ccgw_instance_launch(inst);
    if (rc != CCGW_OK)
        return rc;

    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&inst->lock);
    while (!inst->start_done) {
        if (pthread_cond_timedwait(&inst->cond, &inst->lock, &dl) == ETIMEDOUT)
            break;
    }
    bool done = inst->start_done;
    ccgw_run_state_t s = inst->run_state;
    pthread_mutex_unlock(&inst->lock);
    if (!done) {
        ccgw_log_tagged(CCGW_LOG_WARN, inst->tag, NULL, 0,
                        "still starting after %d ms; continuing with the others", timeout_ms);
        return CCGW_ETIMEDOUT;
    }
    return s == CCGW_RUN_RUNNING ? CCGW_OK : CCGW_ESTATE;
}

int ccgw_instance_stop_timed(ccgw_instance_t *inst, int timeout_ms)
{
    if (!inst->thread_started)
        return inst->abandoned ? CCGW_ETIMEDOUT : CCGW_OK;
    ccgw_loop_stop(inst->loop);
    if (timeout_ms <= 0)
        timeout_ms = 5000;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    int rc = pthread_timedjoin_np(inst->thread, NULL, &dl);
    if (rc == ETIMEDOUT) {
        /* stuck inside a plugin call: it may still use the instance, its
         * loop, devices and the plugin's state, so none of it is freed */
        ccgw_log_tagged(CCGW_LOG_ERROR, inst->tag, NULL, 0,
                        "thread did not stop within %d ms (stuck in a plugin call): left behind, not freed",
                        timeout_ms);
        pthread_detach(inst->thread);
        inst->thread_started = false;
        inst->abandoned = true;
        return CCGW_ETIMEDOUT;
    }
    inst->thread_started = false;
    return CCGW_OK;
}

void ccgw_instance_stop(ccgw_instance_t *inst) { (void)ccgw_instance_stop_timed(inst, 0); }

void ccgw_instance_free(ccgw_instance_t *inst)
{
    if (!inst)
        return;
    ccgw_instance_stop(inst);
    if (inst->abandoned)
        return; /* its thread may still run: leave everything it can reach */
    ccgw_loop_free(inst->loop);
    free(inst->reason);
    free(inst->health_topic);
    free(inst->env_head);
    free(inst->env_tail);
    pthread_mutex_destroy(&inst->lock);
    pthread_cond_destroy(&inst->cond);
    free(inst);
}

/* ---- SDK ---- */

const char *ccgw_instance_id(const ccgw_instance_t *inst) { return inst ? inst->cfg->id : NULL; }
const char *ccgw_instance_plugin(const ccgw_instance_t *inst)
{
    return inst ? inst->cfg->plugin : NULL;
}

void ccgw_instance_health(ccgw_instance_t *inst, ccgw_health_t health, const char *reason)
{
    if (!inst || (unsigned)health > CCGW_HEALTH_FAILED)
        return;
    pthread_mutex_lock(&inst->lock);
    bool same = inst->health == health &&
                ((!reason && !inst->reason) || (reason && inst->reason && !strcmp(reason, inst->reason)));
    if (!same) {
        inst->health = health;
        free(inst->reason);
        inst->reason = reason ? strdup(reason) : NULL;
    }
    pthread_mutex_unlock(&inst->lock);
    if (!same) {
        ccgw_log_tagged(health == CCGW_HEALTH_OK ? CCGW_LOG_INFO : CCGW_LOG_WARN, inst->tag, NULL, 0,
                        "health %s%s%s", health_name(health), reason ? ": " : "", reason ? reason : "");
        ccgw_instance_publish_health(inst);
    }
}

ccgw_timer_t *ccgw_timer_add(ccgw_instance_t *inst, uint64_t first_ms, uint64_t interval_ms,
                             ccgw_timer_cb cb, void *arg)
{
    if (!inst || !inst->loop)
        return NULL;
    return ccgw_loop_timer_add(inst->loop, first_ms, interval_ms, cb, arg);
}

void ccgw_timer_cancel(ccgw_timer_t *t) { ccgw_loop_timer_cancel(t); }

ccgw_io_t *ccgw_io_add(ccgw_instance_t *inst, int fd, unsigned events, ccgw_io_cb cb, void *arg)
{
    if (!inst || !inst->loop)
        return NULL;
    return ccgw_loop_io_add(inst->loop, fd, events, cb, arg);
}

int ccgw_io_modify(ccgw_io_t *io, unsigned events) { return ccgw_loop_io_modify(io, events); }
void ccgw_io_remove(ccgw_io_t *io) { ccgw_loop_io_remove(io); }

int ccgw_post(ccgw_instance_t *inst, void (*fn)(void *arg), void *arg)
{
    if (!inst || !inst->loop)
        return CCGW_EINVAL;
    return ccgw_loop_post(inst->loop, fn, arg);
}

void ccgw_vlog(ccgw_instance_t *inst, ccgw_log_level_t level, const char *file, int line,
               const char *fmt, va_list ap)
{
    ccgw_vlog_tagged(level, inst ? inst->tag : "plugin", file, line, fmt, ap);
}

void ccgw_log(ccgw_instance_t *inst, ccgw_log_level_t level, const char *file, int line,
              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ccgw_vlog(inst, level, file, line, fmt, ap);
    va_end(ap);
}

void ccgw_sdk_abi(unsigned *major, unsigned *minor)
{
    if (major)
        *major = CCGW_ABI_MAJOR;
    if (minor)
        *minor = CCGW_ABI_MINOR;
}

const char *ccgw_strerror(int code)
{
    switch (code) {
    case CCGW_OK: return "OK";
    case CCGW_EINVAL: return "EINVAL";
    case CCGW_ENOMEM: return "ENOMEM";
    case CCGW_EFULL: return "EFULL";
    case CCGW_ENOTFOUND: return "ENOTFOUND";
    case CCGW_EIO: return "EIO";
    case CCGW_ETIMEDOUT: return "ETIMEDOUT";
    case CCGW_ESTATE: return "ESTATE";
    case CCGW_EEXIST: return "EEXIST";
    case CCGW_ESTOPPED: return "ESTOPPED";
    default: return "EUNKNOWN";
    }
}
