/*
 * loadgen - a load generator plugin for capacity planning and benchmarks.
 *
 * Declares `devices` devices of one class and emits telemetry, events and
 * state for them through the ordinary SDK emit calls, from `threads` emitting
 * threads of its own, at a configured total rate (or as fast as the core
 * accepts). Every message carries the value `t_ns`: the sender's clock
 * (CLOCK_MONOTONIC or CLOCK_REALTIME, option `clock`) in nanoseconds, taken
 * just before the emit call, so a subscriber on the same host can compute the
 * emit-to-delivery latency. docs/plugins/loadgen.md is the user documentation;
 * tools/bench/run drives it.
 *
 * Threads: create/start/stop/destroy and the report timer run on the instance
 * thread; the emitting threads only make emit calls (thread-safe) and update
 * their own atomic counters. stop() joins them.
 */
#include <ccgw/ccgw.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#define LG_VERSION "1.0.0"
#define LG_MAX_VALUES 64
#define LG_MAX_THREADS 64
#define LG_EVENT_TYPE "loadgen.sample"

static const char *const lg_classes[] = {"env", "ups", "hvac", "door", "pbx", "sms", "fax",
                                         "incident", "conference", NULL};
static const char *const lg_clocks[] = {"monotonic", "realtime", NULL};

static const ccgw_option_t lg_kind_options[] = {
    {.key = "telemetry", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1", .min = 0,
     .max = 1000000, .doc = "Weight of telemetry messages in the mix."},
    {.key = "event", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0,
     .max = 1000000, .doc = "Weight of events (`event/" LG_EVENT_TYPE "`) in the mix."},
    {.key = "state", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0,
     .max = 1000000, .doc = "Weight of state updates (retained; coalesced when the queue is full)."},
    CCGW_OPTION_END,
};

static const ccgw_option_t lg_options[] = {
    {.key = "devices", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "100", .min = 1,
     .max = 2000000, .doc = "Number of devices to declare."},
    {.key = "class", .type = CCGW_OPT_ENUM, .def = "env", .choices = lg_classes,
     .doc = "Device class of every device."},
    {.key = "id_prefix", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .def = "lg-", .min = 1,
     .max = 48, .doc = "Device ids are this prefix followed by 1..devices ([a-z0-9_.-]+)."},
    {.key = "rate", .type = CCGW_OPT_DOUBLE, .flags = CCGW_OPT_F_RANGE, .def = "1000", .min = 0,
     .max = 10000000, .doc = "Total messages per second over all devices and threads; 0 = as fast "
                             "as the core accepts."},
    {.key = "kind", .type = CCGW_OPT_OBJECT, .children = lg_kind_options,
     .doc = "Mix of message kinds, as weights (default: telemetry only)."},
    {.key = "values_per_message", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "4",
     .min = 0, .max = LG_MAX_VALUES, .doc = "Numeric values per message, besides t_ns and pad."},
    {.key = "payload_bytes", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0,
     .max = 262144, .doc = "Approximate size of each JSON payload: a string value `pad` fills the "
                           "gap (0 = no pad)."},
    {.key = "duration_s", .type = CCGW_OPT_DOUBLE, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0,
     .max = 31536000, .doc = "Stop emitting after this many seconds (0 = until the gateway stops)."},
    {.key = "count", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0,
     .max = 1e12, .doc = "Stop emitting after this many messages in total (0 = no limit)."},
    {.key = "start_delay_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0,
     .max = 3600000, .doc = "Wait this long after start (and after the online states) before emitting."},
    {.key = "threads", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1", .min = 1,
     .max = LG_MAX_THREADS, .doc = "Emitting threads; devices and rate are split evenly."},
    {.key = "online_at_start", .type = CCGW_OPT_BOOL, .def = "true",
     .doc = "Set every device online (one retained state each) before emitting."},
    {.key = "clock", .type = CCGW_OPT_ENUM, .def = "monotonic", .choices = lg_clocks,
     .doc = "Clock of the embedded t_ns value (monotonic: same host only)."},
    {.key = "report_s", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "5", .min = 1,
     .max = 3600, .doc = "Interval of the progress log line and health reason."},
    CCGW_OPTION_END,
};

typedef struct lg lg_t;

typedef struct lg_thread {
    lg_t *lg;
    pthread_t tid;
    bool started;
    size_t first, step; /* devices first, first+step, ... */
    double rate;        /* this thread's share, msg/s; 0 = unpaced */
    uint64_t count;     /* this thread's share of option count; UINT64_MAX = no limit */
    _Atomic uint64_t emitted, refused, failed;
    _Atomic bool done;
} lg_thread_t;

struct lg {
    ccgw_instance_t *inst;
    ccgw_device_t **devs;
    size_t n_devs;
    char *pad;          /* the pad string, or NULL */
    size_t n_values;
    unsigned w_tel, w_evt, w_state;
    double rate, duration_s;
    int64_t count;
    int64_t start_delay_ms;
    bool online_at_start;
    clockid_t clock;
    int report_s;
    size_t n_threads;
    lg_thread_t *threads;
    _Atomic bool stop;
    _Atomic uint64_t online_ms; /* time to queue every online state, +1 (0 = not yet) */
    ccgw_timer_t *report;
    uint64_t t_start_ms, last_ms, last_emitted;
    bool finished_logged;
    char val_names[LG_MAX_VALUES][24];
};

static uint64_t now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Size of the envelope and keys the core adds around our values, for the pad
 * (a typical site/instance name; payload_bytes is approximate by design). */
static size_t estimate_payload(const lg_t *lg, const char *class_name, size_t id_len)
{
    /* {"ts":"2026-11-23T09:47:05.123Z","site":"hq","class":"env","device":"lg-1",
     *  "instance":"load","boot":"0123456789abcdef","seq":123456,"values":{...},"units":{}} */
    size_t n = 150 + strlen(class_name) + id_len;
    n += 18 + 19;                     /* "t_ns":<19 digits>, */
    n += lg->n_values * (6 + 1 + 10); /* "vNN":<~10 chars>, */
    n += 9;                           /* "pad":"" */
    return n;
}

static int lg_check(const ccgw_config_t *options)
{
    int errors = 0;
    const char *p = ccgw_config_string(options, "id_prefix", "lg-");
    for (const char *c = p; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' ||
              *c == '-')) {
            ccgw_config_error(ccgw_config_get(options, "id_prefix"),
                              "id_prefix '%s' may contain only [a-z0-9_.-]", p);
            errors++;
            break;
        }
    const ccgw_config_t *k = ccgw_config_get(options, "kind");
    if (ccgw_config_int(k, "telemetry", 1) + ccgw_config_int(k, "event", 0) +
            ccgw_config_int(k, "state", 0) ==
        0) {
        ccgw_config_error(k ? k : options, "kind: at least one weight must be above 0");
        errors++;
    }
    int64_t threads = ccgw_config_int(options, "threads", 1);
    if (threads > ccgw_config_int(options, "devices", 100)) {
        ccgw_config_error(ccgw_config_get(options, "threads"),
                          "threads (%" PRId64 ") must not exceed devices", threads);
        errors++;
    }
    return errors;
}

static void lg_free(lg_t *lg)
{
    if (!lg)
        return;
    free(lg->devs);
    free(lg->pad);
    free(lg->threads);
    free(lg);
}

static int lg_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    lg_t *lg = calloc(1, sizeof *lg);
    if (!lg)
        return CCGW_ENOMEM;
    lg->inst = inst;
    lg->n_devs = (size_t)ccgw_config_int(options, "devices", 100);
    const char *class_name = ccgw_config_string(options, "class", "env");
    const char *prefix = ccgw_config_string(options, "id_prefix", "lg-");
    lg->rate = ccgw_config_double(options, "rate", 1000);
    lg->duration_s = ccgw_config_double(options, "duration_s", 0);
    lg->count = ccgw_config_int(options, "count", 0);
    lg->start_delay_ms = ccgw_config_int(options, "start_delay_ms", 0);
    lg->n_values = (size_t)ccgw_config_int(options, "values_per_message", 4);
    lg->online_at_start = ccgw_config_bool(options, "online_at_start", true);
    lg->clock = strcmp(ccgw_config_string(options, "clock", "monotonic"), "realtime") == 0
                    ? CLOCK_REALTIME
                    : CLOCK_MONOTONIC;
    lg->report_s = (int)ccgw_config_int(options, "report_s", 5);
    const ccgw_config_t *k = ccgw_config_get(options, "kind");
    lg->w_tel = (unsigned)ccgw_config_int(k, "telemetry", 1);
    lg->w_evt = (unsigned)ccgw_config_int(k, "event", 0);
    lg->w_state = (unsigned)ccgw_config_int(k, "state", 0);
    lg->n_threads = (size_t)ccgw_config_int(options, "threads", 1);
    if (lg->n_threads > lg->n_devs)
        lg->n_threads = lg->n_devs;
    for (size_t i = 0; i < lg->n_values; i++)
        snprintf(lg->val_names[i], sizeof lg->val_names[i], "v%zu", i + 1);

    char id[128];
    int id_len = snprintf(id, sizeof id, "%s%zu", prefix, lg->n_devs);
    size_t want = (size_t)ccgw_config_int(options, "payload_bytes", 0);
    size_t base = estimate_payload(lg, class_name, id_len > 0 ? (size_t)id_len : 0);
    if (want > base) {
        lg->pad = malloc(want - base + 1);
        if (!lg->pad)
            goto nomem;
        for (size_t i = 0; i < want - base; i++)
            lg->pad[i] = (char)('a' + i % 26);
        lg->pad[want - base] = '\0';
    }
    lg->threads = calloc(lg->n_threads, sizeof *lg->threads);
    lg->devs = calloc(lg->n_devs, sizeof *lg->devs);
    if (!lg->threads || !lg->devs)
        goto nomem;
    for (size_t i = 0; i < lg->n_devs; i++) {
        snprintf(id, sizeof id, "%s%zu", prefix, i + 1);
        lg->devs[i] = ccgw_device_add(inst, class_name, id, lg);
        if (!lg->devs[i]) {
            CCGW_ERROR(inst, "cannot declare device %s/%s (%zu of %zu)", class_name, id, i + 1,
                       lg->n_devs);
            lg_free(lg);
            return CCGW_EINVAL;
        }
    }
    CCGW_INFO(inst, "%zu %s devices (%s1..%s%zu), rate %.0f/s%s, mix telemetry:event:state "
                    "%u:%u:%u, %zu values, pad %zu bytes, %zu thread(s)",
              lg->n_devs, class_name, prefix, prefix, lg->n_devs, lg->rate,
              lg->rate == 0 ? " (as fast as accepted)" : "", lg->w_tel, lg->w_evt, lg->w_state,
              lg->n_values, lg->pad ? strlen(lg->pad) : 0, lg->n_threads);
    *state = lg;
    return CCGW_OK;
nomem:
    lg_free(lg);
    return CCGW_ENOMEM;
}

/* xorshift64*: a cheap per-thread generator for the kind mix. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

static int emit_one(lg_t *lg, ccgw_device_t *dev, unsigned pick, uint64_t n, ccgw_value_t *v)
{
    size_t nv = 0;
    v[nv++] = CCGW_V_INT("t_ns", 0); /* filled last, just before the call */
    for (size_t i = 0; i < lg->n_values; i++)
        v[nv++] = CCGW_V_DOUBLE(lg->val_names[i], 20.0 + (double)((n + i) % 1000) * 0.01,
                                i == 0 ? "Cel" : NULL);
    if (lg->pad)
        v[nv++] = CCGW_V_STRING("pad", lg->pad);
    v[0].v.i = (int64_t)now_ns(lg->clock);
    if (pick < lg->w_tel)
        return ccgw_device_telemetry(dev, v, nv);
    if (pick < lg->w_tel + lg->w_evt)
        return ccgw_device_event(dev, LG_EVENT_TYPE, v, nv);
    return ccgw_device_update_state(dev, v, nv);
}

static void sleep_until(clockid_t c, uint64_t t_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(t_ns / 1000000000ull),
                          .tv_nsec = (long)(t_ns % 1000000000ull)};
    while (clock_nanosleep(c, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void *lg_thread_main(void *arg)
{
    lg_thread_t *t = arg;
    lg_t *lg = t->lg;
    char name[16];
    snprintf(name, sizeof name, "loadgen:%zu", t->first);
    pthread_setname_np(pthread_self(), name);
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* 1 us: tight pacing */
    ccgw_value_t v[LG_MAX_VALUES + 2];
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ ((uint64_t)t->first << 17) ^ now_ns(CLOCK_MONOTONIC);
    unsigned wsum = lg->w_tel + lg->w_evt + lg->w_state;

    if (lg->online_at_start) {
        uint64_t t0 = ccgw_now_ms();
        for (size_t i = t->first; i < lg->n_devs && !atomic_load(&lg->stop); i += t->step)
            ccgw_device_set_online(lg->devs[i], true, NULL);
        if (t->first == 0)
            atomic_store(&lg->online_ms, ccgw_now_ms() - t0 + 1);
    }
    uint64_t delay_end = ccgw_now_ms() + (uint64_t)lg->start_delay_ms;
    while (!atomic_load(&lg->stop) && ccgw_now_ms() < delay_end)
        sleep_until(CLOCK_MONOTONIC, now_ns(CLOCK_MONOTONIC) + 10000000ull);

    const uint64_t start = now_ns(CLOCK_MONOTONIC);
    const uint64_t end = lg->duration_s > 0 ? start + (uint64_t)(lg->duration_s * 1e9) : UINT64_MAX;
    /* one tick per message at low rates, at least 200 us between ticks at high ones */
    uint64_t tick = t->rate > 0 ? (uint64_t)(1e9 / t->rate) : 0;
    if (t->rate > 0 && tick < 200000)
        tick = 200000;
    const uint64_t max_batch = t->rate > 0 ? (uint64_t)(t->rate / 10) + 1 : 256; /* <= 100 ms worth */
    uint64_t sent = 0, base_sent = 0, base_t = start, next = start;
    size_t dev = t->first;
    uint64_t n = 0;

    while (!atomic_load(&lg->stop)) {
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        if (now >= end)
            break;
        uint64_t batch;
        if (sent >= t->count)
            break;
        if (t->rate > 0) {
            /* absolute schedule: how many should be out by now */
            uint64_t due = base_sent + (uint64_t)((double)(now - base_t) * t->rate / 1e9);
            batch = due > sent ? due - sent : 0;
            if (batch > max_batch) {
                /* too far behind (the core pushed back): restart the schedule
                 * instead of bursting to catch up */
                batch = max_batch;
                base_sent = sent + batch;
                base_t = now;
            }
        } else {
            batch = 256;
        }
        if (batch > t->count - sent)
            batch = t->count - sent;
        for (uint64_t b = 0; b < batch && !atomic_load(&lg->stop); b++) {
            unsigned pick = wsum > 1 ? (unsigned)(rnd(&seed) % wsum) : 0;
            int rc = emit_one(lg, lg->devs[dev], pick, n++, v);
            if (rc == CCGW_OK)
                atomic_fetch_add_explicit(&t->emitted, 1, memory_order_relaxed);
            else if (rc == CCGW_EFULL)
                atomic_fetch_add_explicit(&t->refused, 1, memory_order_relaxed);
            else
                atomic_fetch_add_explicit(&t->failed, 1, memory_order_relaxed);
            sent++;
            dev += t->step;
            if (dev >= lg->n_devs)
                dev = t->first;
        }
        if (t->rate > 0) {
            next += tick;
            now = now_ns(CLOCK_MONOTONIC);
            if (next < now)
                next = now; /* late: the batch of the next round catches up */
            else
                sleep_until(CLOCK_MONOTONIC, next);
        }
    }
    atomic_store(&t->done, true);
    return NULL;
}

static void totals(lg_t *lg, uint64_t *emitted, uint64_t *refused, uint64_t *failed, bool *all_done)
{
    *emitted = *refused = *failed = 0;
    *all_done = true;
    for (size_t i = 0; i < lg->n_threads; i++) {
        *emitted += atomic_load(&lg->threads[i].emitted);
        *refused += atomic_load(&lg->threads[i].refused);
        *failed += atomic_load(&lg->threads[i].failed);
        *all_done = *all_done && atomic_load(&lg->threads[i].done);
    }
}

/* Instance thread: progress in the log and the health reason. */
static void report_cb(ccgw_timer_t *timer, void *arg)
{
    (void)timer;
    lg_t *lg = arg;
    uint64_t e, r, f;
    bool done;
    totals(lg, &e, &r, &f, &done);
    uint64_t now = ccgw_now_ms();
    double dt = (double)(now - lg->last_ms) / 1000.0;
    double rate = dt > 0 ? (double)(e - lg->last_emitted) / dt : 0;
    lg->last_ms = now;
    lg->last_emitted = e;
    char reason[160];
    if (done) {
        if (lg->finished_logged)
            return;
        lg->finished_logged = true;
        double secs = (double)(now - lg->t_start_ms) / 1000.0;
        snprintf(reason, sizeof reason, "finished: emitted %" PRIu64 ", refused %" PRIu64
                 ", failed %" PRIu64, e, r, f);
        CCGW_INFO(lg->inst, "%s (%.1f s since start)", reason, secs);
    } else {
        snprintf(reason, sizeof reason, "emitted %" PRIu64 ", refused %" PRIu64 ", failed %" PRIu64,
                 e, r, f);
        uint64_t om = atomic_load(&lg->online_ms);
        CCGW_INFO(lg->inst, "%s; %.0f/s over the last %.1f s%s", reason, rate, dt,
                  om || !lg->online_at_start ? "" : "; still setting devices online");
    }
    ccgw_instance_health(lg->inst, r || f ? CCGW_HEALTH_DEGRADED : CCGW_HEALTH_OK, reason);
}

/* Instance thread: a one-shot check that logs when the online states are queued. */
static void online_cb(ccgw_timer_t *timer, void *arg)
{
    lg_t *lg = arg;
    uint64_t om = atomic_load(&lg->online_ms);
    if (!om)
        return;
    ccgw_timer_cancel(timer);
    CCGW_INFO(lg->inst, "%zu devices set online in %" PRIu64 " ms", lg->n_devs, om - 1);
}

static void lg_stop(void *state);

static int lg_start(void *state)
{
    lg_t *lg = state;
    atomic_store(&lg->stop, false);
    lg->t_start_ms = lg->last_ms = ccgw_now_ms();
    for (size_t i = 0; i < lg->n_threads; i++) {
        lg_thread_t *t = &lg->threads[i];
        t->lg = lg;
        t->first = i;
        t->step = lg->n_threads;
        t->rate = lg->rate / (double)lg->n_threads;
        t->count = lg->count > 0 ? (uint64_t)lg->count / lg->n_threads +
                                       (i < (uint64_t)lg->count % lg->n_threads ? 1 : 0)
                                 : UINT64_MAX;
        int rc = pthread_create(&t->tid, NULL, lg_thread_main, t);
        if (rc != 0) {
            CCGW_ERROR(lg->inst, "cannot start emitting thread %zu: %s", i, strerror(rc));
            lg_stop(lg);
            return CCGW_ENOMEM;
        }
        t->started = true;
    }
    lg->report = ccgw_timer_add(lg->inst, (uint64_t)lg->report_s * 1000,
                                (uint64_t)lg->report_s * 1000, report_cb, lg);
    if (lg->online_at_start)
        ccgw_timer_add(lg->inst, 20, 20, online_cb, lg);
    ccgw_instance_health(lg->inst, CCGW_HEALTH_OK, "emitting");
    return CCGW_OK;
}

static void lg_stop(void *state)
{
    lg_t *lg = state;
    atomic_store(&lg->stop, true);
    for (size_t i = 0; i < lg->n_threads; i++)
        if (lg->threads[i].started) {
            pthread_join(lg->threads[i].tid, NULL);
            lg->threads[i].started = false;
        }
    if (lg->report) {
        ccgw_timer_cancel(lg->report);
        lg->report = NULL;
    }
    uint64_t e, r, f;
    bool done;
    totals(lg, &e, &r, &f, &done);
    CCGW_INFO(lg->inst, "stopped: emitted %" PRIu64 ", refused %" PRIu64 ", failed %" PRIu64, e, r,
              f);
}

static void lg_destroy(void *state) { lg_free(state); }

CCGW_PLUGIN_DEFINE(
    .name = "loadgen",
    .version = LG_VERSION,
    .description = "Load generator: many devices emitting telemetry, events and state at a set rate",
    .options = lg_options,
    .check = lg_check,
    .create = lg_create,
    .start = lg_start,
    .stop = lg_stop,
    .destroy = lg_destroy);
