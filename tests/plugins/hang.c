/*
 * hang - device "<instance>.h1" (class env) with telemetry `counter` every
 * interval_ms (default 100); `hang_after_ms` (default 1000) after start, a
 * timer callback blocks the instance thread for `hang_ms` (0 = forever, the
 * default). With hang_times > 0 only the first hang_times lives hang (per
 * instance id, for the life of the process).
 *
 * Exercises hang detection (the loop's heartbeat stops), the report (health
 * "hung", gateway alarm hung.<instance>), the restart once the call returns,
 * and a shutdown that leaves a thread stuck forever behind.
 * Log lines: WARN "hang: blocking the instance thread for N ms", INFO "hang: returned".
 */
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ccgw/ccgw.h>

static const ccgw_option_t hang_options[] = {
    {.key = "hang_after_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1000", .min = 0,
     .max = 3600000, .doc = "Delay after start before the loop callback blocks."},
    {.key = "hang_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0, .max = 3600000,
     .doc = "How long it blocks; 0 = forever."},
    {.key = "hang_times", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0, .max = 1000000,
     .doc = "Only the first N lives hang; 0 = every life."},
    {.key = "interval_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "100", .min = 10, .max = 600000,
     .doc = "Telemetry period."},
    CCGW_OPTION_END,
};

static struct { char id[72]; int lives; } counts[32];
static int n_counts;
static pthread_mutex_t counts_lock = PTHREAD_MUTEX_INITIALIZER;

static int next_life(const char *id)
{
    pthread_mutex_lock(&counts_lock);
    int i = 0;
    while (i < n_counts && strcmp(counts[i].id, id) != 0)
        i++;
    if (i == n_counts && n_counts < 32) {
        snprintf(counts[n_counts].id, sizeof counts[0].id, "%s", id);
        n_counts++;
    }
    int n = i < 32 ? ++counts[i].lives : 1;
    pthread_mutex_unlock(&counts_lock);
    return n;
}

typedef struct hg {
    ccgw_instance_t *inst;
    ccgw_device_t *dev;
    ccgw_timer_t *timer;
    int hang_after_ms, hang_ms, hang_times, interval_ms, life;
    int64_t counter;
} hg_t;

static void hg_tick(ccgw_timer_t *t, void *arg)
{
    (void)t;
    hg_t *h = arg;
    ccgw_value_t v[] = {CCGW_V_INT("counter", ++h->counter)};
    (void)ccgw_device_telemetry(h->dev, v, 1);
}

static void hg_block(ccgw_timer_t *t, void *arg)
{
    (void)t;
    hg_t *h = arg;
    CCGW_WARN(h->inst, "hang: blocking the instance thread for %d ms%s", h->hang_ms, h->hang_ms ? "" : " (forever)");
    if (h->hang_ms == 0) {
        for (;;)
            pause(); /* never returns; signals are blocked in every ccgw thread */
    }
    struct timespec ts = {h->hang_ms / 1000, (long)(h->hang_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    CCGW_INFO(h->inst, "hang: returned");
}

static int hg_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    hg_t *h = calloc(1, sizeof *h);
    if (!h)
        return CCGW_ENOMEM;
    h->inst = inst;
    h->hang_after_ms = (int)ccgw_config_int(options, "hang_after_ms", 1000);
    h->hang_ms = (int)ccgw_config_int(options, "hang_ms", 0);
    h->hang_times = (int)ccgw_config_int(options, "hang_times", 0);
    h->interval_ms = (int)ccgw_config_int(options, "interval_ms", 100);
    char id[96];
    snprintf(id, sizeof id, "%s.h1", ccgw_instance_id(inst));
    h->dev = ccgw_device_add(inst, "env", id, h);
    *state = h;
    return CCGW_OK;
}

static int hg_start(void *state)
{
    hg_t *h = state;
    h->life = next_life(ccgw_instance_id(h->inst));
    h->timer = ccgw_timer_add(h->inst, (uint64_t)h->interval_ms, (uint64_t)h->interval_ms, hg_tick, h);
    if (h->hang_times == 0 || h->life <= h->hang_times)
        (void)ccgw_timer_add(h->inst, (uint64_t)h->hang_after_ms, 0, hg_block, h);
    if (h->dev)
        ccgw_device_set_online(h->dev, true, NULL);
    return CCGW_OK;
}

static void hg_stop(void *state)
{
    hg_t *h = state;
    if (h->timer)
        ccgw_timer_cancel(h->timer);
    h->timer = NULL;
}

static void hg_destroy(void *state) { free(state); }

CCGW_PLUGIN_DEFINE(
    .name = "hang",
    .version = "1.0.0",
    .description = "Test plugin: a loop callback blocks (for hang_ms, or forever) hang_after_ms after start",
    .options = hang_options,
    .create = hg_create,
    .start = hg_start,
    .stop = hg_stop,
    .destroy = hg_destroy);
