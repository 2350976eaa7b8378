/*
 * failing_later - device "<instance>.l1" (class env) with telemetry
 * `counter` every interval_ms (default 100); `fail_after_ms` (default 1000)
 * after start it reports itself failed: ccgw_instance_health(FAILED,
 * "simulated failure"). With fail_times > 0 only the first fail_times lives
 * fail (per instance id, for the life of the process).
 *
 * Exercises: a running instance that reports FAILED is stopped and
 * restarted with backoff by the supervisor, its devices offline meanwhile.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ccgw/ccgw.h>

static const ccgw_option_t fl_options[] = {
    {.key = "fail_after_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1000", .min = 0,
     .max = 3600000, .doc = "Delay after start before it reports failed."},
    {.key = "fail_times", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0, .max = 1000000,
     .doc = "Only the first N lives fail; 0 = every life."},
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

typedef struct fl {
    ccgw_instance_t *inst;
    ccgw_device_t *dev;
    ccgw_timer_t *timer, *fail;
    int fail_after_ms, fail_times, interval_ms, life;
    int64_t counter;
} fl_t;

static void fl_tick(ccgw_timer_t *t, void *arg)
{
    (void)t;
    fl_t *f = arg;
    ccgw_value_t v[] = {CCGW_V_INT("counter", ++f->counter)};
    (void)ccgw_device_telemetry(f->dev, v, 1);
}

static void fl_fail(ccgw_timer_t *t, void *arg)
{
    (void)t;
    fl_t *f = arg;
    f->fail = NULL;
    CCGW_WARN(f->inst, "failing_later: reporting failed (life %d)", f->life);
    ccgw_instance_health(f->inst, CCGW_HEALTH_FAILED, "simulated failure");
}

static int fl_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    fl_t *f = calloc(1, sizeof *f);
    if (!f)
        return CCGW_ENOMEM;
    f->inst = inst;
    f->fail_after_ms = (int)ccgw_config_int(options, "fail_after_ms", 1000);
    f->fail_times = (int)ccgw_config_int(options, "fail_times", 0);
    f->interval_ms = (int)ccgw_config_int(options, "interval_ms", 100);
    char id[96];
    snprintf(id, sizeof id, "%s.l1", ccgw_instance_id(inst));
    f->dev = ccgw_device_add(inst, "env", id, f);
    *state = f;
    return CCGW_OK;
}

static int fl_start(void *state)
{
    fl_t *f = state;
    f->life = next_life(ccgw_instance_id(f->inst));
    f->timer = ccgw_timer_add(f->inst, (uint64_t)f->interval_ms, (uint64_t)f->interval_ms, fl_tick, f);
    if (f->fail_times == 0 || f->life <= f->fail_times)
        f->fail = ccgw_timer_add(f->inst, (uint64_t)f->fail_after_ms, 0, fl_fail, f);
    if (f->dev)
        ccgw_device_set_online(f->dev, true, NULL);
    return CCGW_OK;
}

static void fl_stop(void *state)
{
    fl_t *f = state;
    if (f->timer)
        ccgw_timer_cancel(f->timer);
    if (f->fail)
        ccgw_timer_cancel(f->fail);
    f->timer = f->fail = NULL;
}

static void fl_destroy(void *state) { free(state); }

CCGW_PLUGIN_DEFINE(
    .name = "failing_later",
    .version = "1.0.0",
    .description = "Test plugin: reports itself failed fail_after_ms after start",
    .options = fl_options,
    .create = fl_create,
    .start = fl_start,
    .stop = fl_stop,
    .destroy = fl_destroy);
