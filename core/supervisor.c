/* supervisor - see supervisor.h. */
#include "supervisor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "device.h"
#include "gateway.h"
#include "instance.h"
#include "log.h"
#include "loop.h"

#define FAIL_RING (sizeof(((ccgw_inst_sup_t *)0)->fail_ms) / sizeof(uint64_t))

static uint64_t jitter_rand(void)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (uint64_t)ts.tv_nsec * 6364136223846793005ull + 1442695040888963407ull;
    }
    return r;
}

static void wall_in(uint64_t delta_ms, char out[CCGW_TS_LEN])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(delta_ms / 1000);
    ts.tv_nsec += (long)(delta_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    ccgw_format_ts(out, &ts);
}

/* Drop failures older than the window; the count left. (inst->lock held) */
static size_t prune(ccgw_inst_sup_t *s, uint64_t now, uint64_t window_ms)
{
    while (s->n_fail > 0) {
        size_t oldest = (s->fail_head + FAIL_RING - s->n_fail) % FAIL_RING;
        if (now - s->fail_ms[oldest] < window_ms)
            break;
        s->n_fail--;
    }
    return s->n_fail;
}

static void alarm_code(char *out, size_t len, const char *what, const ccgw_instance_t *inst)
{
    snprintf(out, len, "%s.%s", what, inst->cfg->id);
}

/* Record a failure of the current life and decide: quarantine, or a restart
 * after the backoff (scheduled; the thread may still be running). */
static void failure(ccgw_gateway_t *gw, ccgw_instance_t *inst, const char *why)
{
    const ccgw_supervision_config_t *sc = &inst->cfg->supervision;
    uint64_t now = ccgw_now_ms();
    pthread_mutex_lock(&inst->lock);
    ccgw_inst_sup_t *s = &inst->sup;
    s->failures++;
    s->fail_ms[s->fail_head] = now;
    s->fail_head = (s->fail_head + 1) % FAIL_RING;
    if (s->n_fail < FAIL_RING)
        s->n_fail++;
    size_t n = prune(s, now, (uint64_t)sc->failure_window_s * 1000u);
    snprintf(s->last_failure, sizeof s->last_failure, "%s", why);
    ccgw_ts_now(s->last_failure_ts);
    bool quarantine = n >= (size_t)sc->max_failures;
    uint64_t delay = 0;
    if (quarantine) {
        s->quarantined = true;
        s->next_attempt_ms = 0;
    } else {
        uint64_t b = s->backoff_ms ? s->backoff_ms * 2 : (uint64_t)sc->restart_min_ms;
        if (b > (uint64_t)sc->restart_max_ms)
            b = (uint64_t)sc->restart_max_ms;
        if (b < (uint64_t)sc->restart_min_ms)
            b = (uint64_t)sc->restart_min_ms;
        s->backoff_ms = b;
        /* jitter: between 75 % and 125 % of the backoff, never below restart_min_ms */
        delay = b * 3 / 4 + (b / 2 ? jitter_rand() % (b / 2 + 1) : 0);
        if (delay < (uint64_t)sc->restart_min_ms)
            delay = (uint64_t)sc->restart_min_ms;
        s->next_attempt_ms = now + delay;
        wall_in(delay, s->next_attempt_ts);
    }
    pthread_mutex_unlock(&inst->lock);
    if (quarantine) {
        char code[96], msg[512];
        alarm_code(code, sizeof code, "quarantine", inst);
        snprintf(msg, sizeof msg, "instance %s quarantined after %zu failures in %d s (last: %s); "
                 "reload the config or restart the gateway to try again", inst->cfg->id, n,
                 sc->failure_window_s, why);
        ccgw_log_tagged(CCGW_LOG_ERROR, inst->tag, NULL, 0, "%s", msg);
        ccgw_gateway_alarm(gw, code, true, "critical", msg);
    } else {
        ccgw_log_tagged(CCGW_LOG_WARN, inst->tag, NULL, 0,
                        "failed (%s): restart in %llu ms (failure %zu of %d in %d s)", why,
                        (unsigned long long)delay, n, sc->max_failures, sc->failure_window_s);
    }
}

/* The thread of this life has ended: decide what the instance shows now. */
static void after_life(ccgw_gateway_t *gw, ccgw_instance_t *inst, ccgw_run_state_t ended_in,
                       const char *reason)
{
    pthread_mutex_lock(&inst->lock);
    bool was_hung = inst->sup.hung;
    bool asked = inst->sup.stop_asked_ms != 0;
    inst->sup.hung = false;
    inst->sup.stop_asked_ms = 0;
    pthread_mutex_unlock(&inst->lock);
    if (was_hung) {
        char code[96];
        alarm_code(code, sizeof code, "hung", inst);
        ccgw_gateway_alarm(gw, code, false, NULL, "the instance thread returned");
        ccgw_log_tagged(CCGW_LOG_INFO, inst->tag, NULL, 0, "the hung thread returned and was joined");
    }
    if (ended_in == CCGW_RUN_FAILED && !asked) {
        failure(gw, inst, reason ? reason : "failed");
    } else if (!asked && !inst->sup.quarantined && inst->sup.next_attempt_ms == 0) {
        /* a life that ended without anyone asking: count it */
        failure(gw, inst, "the instance loop ended by itself");
    }
    pthread_mutex_lock(&inst->lock);
    inst->run_state = inst->sup.quarantined ? CCGW_RUN_QUARANTINED : CCGW_RUN_BACKOFF;
    inst->health = CCGW_HEALTH_FAILED;
    free(inst->reason);
    inst->reason = strdup(inst->sup.last_failure[0] ? inst->sup.last_failure : "failed");
    pthread_mutex_unlock(&inst->lock);
    ccgw_instance_publish_health(inst);
}

static void ask_stop(ccgw_instance_t *inst, const char *why)
{
    pthread_mutex_lock(&inst->lock);
    inst->sup.stop_asked_ms = ccgw_now_ms();
    snprintf(inst->stop_reason, sizeof inst->stop_reason, "instance restarting: %s", why);
    pthread_mutex_unlock(&inst->lock);
    ccgw_loop_stop(inst->loop);
}

static void hang(ccgw_gateway_t *gw, ccgw_instance_t *inst, const char *why)
{
    pthread_mutex_lock(&inst->lock);
    inst->sup.hung = true;
    inst->sup.hangs++;
    bool asked = inst->sup.stop_asked_ms != 0;
    bool running = inst->run_state == CCGW_RUN_RUNNING;
    pthread_mutex_unlock(&inst->lock);
    ccgw_log_tagged(CCGW_LOG_ERROR, inst->tag, NULL, 0,
                    "%s: reported hung; its thread is left alone (never killed or freed) and the "
                    "instance restarts when the plugin call returns",
                    why);
    char code[96], msg[512];
    alarm_code(code, sizeof code, "hung", inst);
    snprintf(msg, sizeof msg, "instance %s hung: %s", inst->cfg->id, why);
    ccgw_gateway_alarm(gw, code, true, "major", msg);
    if (!asked && running) {
        /* safe from here: the device list is only freed when the loop ends,
         * and nobody has asked it to end yet (ask_stop comes below) */
        char off[300];
        snprintf(off, sizeof off, "instance hung: %s", why);
        ccgw_devices_set_all_offline(inst, off);
    }
    char fw[256];
    snprintf(fw, sizeof fw, "hung: %s", why);
    failure(gw, inst, fw);
    if (!asked)
        ask_stop(inst, why);
    else
        ccgw_loop_stop(inst->loop);
    ccgw_instance_publish_health(inst);
}

static void tick_one(ccgw_gateway_t *gw, ccgw_instance_t *inst, uint64_t now)
{
    if (!inst->desc || inst->abandoned || inst->run_state == CCGW_RUN_DISABLED)
        return;
    const ccgw_supervision_config_t *sc = &inst->cfg->supervision;
    pthread_mutex_lock(&inst->lock);
    ccgw_run_state_t st = inst->run_state;
    ccgw_health_t health = inst->health;
    char reason[256];
    snprintf(reason, sizeof reason, "%s", inst->reason ? inst->reason : "");
    ccgw_inst_sup_t s = inst->sup;
    pthread_mutex_unlock(&inst->lock);

    if (inst->thread_started) {
        if (ccgw_instance_reap(inst)) {
            after_life(gw, inst, st, reason[0] ? reason : NULL);
            return;
        }
        if (s.hung) {
            ccgw_loop_stop(inst->loop); /* keep asking; harmless */
            return;
        }
        uint64_t hb = ccgw_loop_heartbeat(inst->loop);
        char why[200];
        if (st == CCGW_RUN_RUNNING && !s.stop_asked_ms && health == CCGW_HEALTH_FAILED) {
            snprintf(why, sizeof why, "plugin reported failed%s%.170s", reason[0] ? ": " : "", reason);
            failure(gw, inst, why);
            ask_stop(inst, why);
            ccgw_instance_publish_health(inst);
        } else if (st == CCGW_RUN_RUNNING && !s.stop_asked_ms && now > hb &&
                   now - hb > (uint64_t)sc->hang_timeout_ms) {
            snprintf(why, sizeof why, "the loop has not turned for %llu ms (hang_timeout_ms %d)",
                     (unsigned long long)(now - hb), sc->hang_timeout_ms);
            hang(gw, inst, why);
        } else if (st == CCGW_RUN_STARTING && now - s.launched_ms > (uint64_t)sc->start_timeout_ms) {
            snprintf(why, sizeof why, "create()/start() has not returned after %llu ms (start_timeout_ms %d)",
                     (unsigned long long)(now - s.launched_ms), sc->start_timeout_ms);
            hang(gw, inst, why);
        } else if (s.stop_asked_ms && now - s.stop_asked_ms > (uint64_t)sc->hang_timeout_ms) {
            snprintf(why, sizeof why, "still stopping %llu ms after it was asked to",
                     (unsigned long long)(now - s.stop_asked_ms));
            hang(gw, inst, why);
        } else if (st == CCGW_RUN_RUNNING && s.backoff_ms && s.running_since_ms &&
                   now - s.running_since_ms >= 2 * (uint64_t)sc->restart_max_ms &&
                   now - s.running_since_ms >= 10000) {
            pthread_mutex_lock(&inst->lock);
            inst->sup.backoff_ms = 0; /* a good long run: the next failure starts the backoff anew */
            pthread_mutex_unlock(&inst->lock);
        }
        return;
    }
    /* no thread: waiting for the next attempt, or quarantined */
    if (s.quarantined || !s.next_attempt_ms || now < s.next_attempt_ms)
        return;
    pthread_mutex_lock(&inst->lock);
    inst->sup.restarts++;
    uint64_t nth = inst->sup.restarts;
    pthread_mutex_unlock(&inst->lock);
    ccgw_log_tagged(CCGW_LOG_INFO, inst->tag, NULL, 0, "restarting (restart %llu; last failure: %s)",
                    (unsigned long long)nth, s.last_failure);
    if (ccgw_instance_launch(inst) != CCGW_OK)
        failure(gw, inst, "cannot launch its thread");
}

void ccgw_supervisor_tick(ccgw_gateway_t *gw)
{
    uint64_t now = ccgw_now_ms();
    for (size_t i = 0; i < gw->n_instances; i++)
        tick_one(gw, gw->instances[i], now);
}

void ccgw_supervisor_reset(ccgw_gateway_t *gw, ccgw_instance_t *inst)
{
    char code[96];
    alarm_code(code, sizeof code, "quarantine", inst);
    ccgw_gateway_alarm(gw, code, false, NULL, "instance replaced by a reload");
    alarm_code(code, sizeof code, "hung", inst);
    ccgw_gateway_alarm(gw, code, false, NULL, "instance replaced by a reload");
}

void ccgw_supervisor_stats(ccgw_gateway_t *gw, ccgw_supervisor_stats_t *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < gw->n_instances; i++) {
        ccgw_instance_t *inst = gw->instances[i];
        pthread_mutex_lock(&inst->lock);
        out->restarts += inst->sup.restarts;
        out->failures += inst->sup.failures;
        out->hangs += inst->sup.hangs;
        out->quarantined += inst->sup.quarantined;
        out->hung += inst->sup.hung;
        out->backoff += inst->run_state == CCGW_RUN_BACKOFF;
        pthread_mutex_unlock(&inst->lock);
    }
}
