/*
 * crash_start - start() fails with CCGW_EIO the first `fail_times` times
 * (default 3; counted per instance id for the life of the process, so the
 * core's restarts see the count go down), then works: device "<instance>.d1"
 * (or the `device` option)
 * (class env) online, telemetry `counter` every interval_ms (default 100).
 *
 * Exercises supervision: restart with backoff after a failed start, then
 * running; quarantine when fail_times >= supervision.max_failures.
 * Log lines: WARN "crash_start: start failing (N of K)", INFO "crash_start: running after N failures".
 */
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <ccgw/ccgw.h>

static const ccgw_option_t cs_options[] = {
    {.key = "fail_times", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "3", .min = 0, .max = 1000000,
     .doc = "How many starts fail before one works."},
    {.key = "interval_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "100", .min = 10, .max = 600000,
     .doc = "Telemetry period once running."},
    {.key = "device", .type = CCGW_OPT_STRING, .doc = "Device id (default <instance>.d1)."},
    CCGW_OPTION_END,
};

/* per-instance start counts (instance threads of this plugin: one lock) */
static struct { char id[72]; int starts; } counts[32];
static int n_counts;
static pthread_mutex_t counts_lock = PTHREAD_MUTEX_INITIALIZER;

static int next_start(const char *id)
{
    pthread_mutex_lock(&counts_lock);
    int i = 0;
    while (i < n_counts && strcmp(counts[i].id, id) != 0)
        i++;
    if (i == n_counts && n_counts < 32) {
        snprintf(counts[n_counts].id, sizeof counts[0].id, "%s", id);
        n_counts++;
    }
    int n = i < 32 ? ++counts[i].starts : 1;
    pthread_mutex_unlock(&counts_lock);
    return n;
}

typedef struct cs {
    ccgw_instance_t *inst;
    ccgw_device_t *dev;
    ccgw_timer_t *timer;
    int fail_times, interval_ms;
    int64_t counter;
} cs_t;

static void cs_tick(ccgw_timer_t *t, void *arg)
{
    (void)t;
    cs_t *c = arg;
    ccgw_value_t v[] = {CCGW_V_INT("counter", ++c->counter)};
    (void)ccgw_device_telemetry(c->dev, v, 1);
}

static int cs_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    cs_t *c = calloc(1, sizeof *c);
    if (!c)
        return CCGW_ENOMEM;
    c->inst = inst;
    c->fail_times = (int)ccgw_config_int(options, "fail_times", 3);
    c->interval_ms = (int)ccgw_config_int(options, "interval_ms", 100);
    char id[96];
    const char *dev = ccgw_config_string(options, "device", NULL);
    if (dev && dev[0])
        snprintf(id, sizeof id, "%s", dev);
    else
        snprintf(id, sizeof id, "%s.d1", ccgw_instance_id(inst));
    c->dev = ccgw_device_add(inst, "env", id, c);
    *state = c;
    return CCGW_OK;
}

static int cs_start(void *state)
{
    cs_t *c = state;
    int n = next_start(ccgw_instance_id(c->inst));
    if (n <= c->fail_times) {
        CCGW_WARN(c->inst, "crash_start: start failing (%d of %d)", n, c->fail_times);
        return CCGW_EIO;
    }
    c->timer = ccgw_timer_add(c->inst, (uint64_t)c->interval_ms, (uint64_t)c->interval_ms, cs_tick, c);
    if (c->dev)
        ccgw_device_set_online(c->dev, true, NULL);
    CCGW_INFO(c->inst, "crash_start: running after %d failures", n - 1);
    return CCGW_OK;
}

static void cs_stop(void *state)
{
    cs_t *c = state;
    if (c->timer)
        ccgw_timer_cancel(c->timer);
    c->timer = NULL;
}

static void cs_destroy(void *state) { free(state); }

CCGW_PLUGIN_DEFINE(
    .name = "crash_start",
    .version = "1.0.0",
    .description = "Test plugin: start() fails the first fail_times times, then runs",
    .options = cs_options,
    .create = cs_create,
    .start = cs_start,
    .stop = cs_stop,
    .destroy = cs_destroy);
