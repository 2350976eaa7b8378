/* Unit tests: the north queue's policy at its limit, retained coalescing
 * (never back in time), snapshots after reconnect, and ordering. The sink
 * here is a recorder standing for the north side; the real MQTT sink is
 * exercised by the integration tests against mosquitto. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "ccgw/types.h"

typedef struct rec {
    pthread_mutex_t lock;
    atomic_bool ready;
    atomic_bool snapshot;
    char topics[256][64];
    char payloads[256][64];
    int n;
} rec_t;

static bool r_ready(void *c) { return atomic_load(&((rec_t *)c)->ready); }
static int r_publish(void *c, const ccgw_msg_t *m)
{
    rec_t *r = c;
    pthread_mutex_lock(&r->lock);
    if (r->n < 256) {
        snprintf(r->topics[r->n], 64, "%s", m->topic);
        snprintf(r->payloads[r->n], 64, "%s", m->payload);
        r->n++;
    }
    pthread_mutex_unlock(&r->lock);
    return 0;
}
static bool r_snap(void *c) { return atomic_exchange(&((rec_t *)c)->snapshot, false); }
static bool r_idle(void *c) { (void)c; return true; }

static ccgw_bus_t *make(rec_t *r, size_t limit, int bp_ms, bool ready)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    atomic_store(&r->ready, ready);
    ccgw_bus_t *b = ccgw_bus_new(limit, bp_ms);
    ccgw_sink_t s = {.ctx = r, .ready = r_ready, .publish = r_publish,
                     .take_snapshot_request = r_snap, .idle = r_idle};
    ccgw_bus_set_sink(b, &s);
    assert_int_equal(ccgw_bus_start(b), 0);
    return b;
}

static int push(ccgw_bus_t *b, ccgw_kind_t k, const char *topic, const char *payload)
{
    return ccgw_bus_push(b, ccgw_msg_new(k, 1, topic, payload, strlen(payload), NULL, 0));
}

static int count_topic(rec_t *r, const char *topic)
{
    int n = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n; i++)
        n += strcmp(r->topics[i], topic) == 0;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static void test_telemetry_dropped_when_full(void **st)
{
    (void)st;
    rec_t r;
    ccgw_bus_t *b = make(&r, 4, 50, false);
    for (int i = 0; i < 4; i++)
        assert_int_equal(push(b, CCGW_KIND_TELEMETRY, "t", "{}"), CCGW_OK);
    assert_int_equal(push(b, CCGW_KIND_TELEMETRY, "t", "{}"), CCGW_EFULL);
    ccgw_bus_stats_t s;
    ccgw_bus_get_stats(b, &s);
    assert_int_equal(s.dropped_full[CCGW_KIND_TELEMETRY], 1);
    assert_int_equal(s.depth, 4);
    atomic_store(&r.ready, true);
    ccgw_bus_wake(b);
    assert_true(ccgw_bus_flush(b, 2000));
    assert_int_equal(count_topic(&r, "t"), 4);
    ccgw_bus_free(b);
}

static void test_event_backpressure_then_efull(void **st)
{
    (void)st;
    rec_t r;
    ccgw_bus_t *b = make(&r, 2, 100, false);
    assert_int_equal(push(b, CCGW_KIND_EVENT, "e", "{\"n\":1}"), CCGW_OK);
    assert_int_equal(push(b, CCGW_KIND_EVENT, "e", "{\"n\":2}"), CCGW_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(push(b, CCGW_KIND_EVENT, "e", "{\"n\":3}"), CCGW_EFULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 90); /* it waited for room before giving up */
    atomic_store(&r.ready, true);
    ccgw_bus_wake(b);
    assert_true(ccgw_bus_flush(b, 2000));
    assert_int_equal(r.n, 2);
    assert_string_equal(r.payloads[0], "{\"n\":1}"); /* in order */
    assert_string_equal(r.payloads[1], "{\"n\":2}");
    ccgw_bus_free(b);
}

static void *late_ready(void *arg)
{
    rec_t *r = arg;
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(&r->ready, true);
    return NULL;
}

static void test_event_waits_for_room(void **st)
{
    (void)st;
    rec_t r;
    ccgw_bus_t *b = make(&r, 1, 3000, false);
    assert_int_equal(push(b, CCGW_KIND_EVENT, "e", "1"), CCGW_OK);
    pthread_t th;
    pthread_create(&th, NULL, late_ready, &r);
    /* blocks until the sink drains one, then succeeds: nothing lost */
    assert_int_equal(push(b, CCGW_KIND_EVENT, "e", "2"), CCGW_OK);
    pthread_join(th, NULL);
    assert_true(ccgw_bus_flush(b, 2000));
    assert_int_equal(count_topic(&r, "e"), 2);
    ccgw_bus_free(b);
}

static void test_retained_coalesces_to_latest(void **st)
{
    (void)st;
    rec_t r;
    ccgw_bus_t *b = make(&r, 2, 0, false);
    char p[16];
    for (int i = 1; i <= 10; i++) {
        snprintf(p, sizeof p, "v%d", i);
        assert_int_equal(ccgw_bus_retain(b, CCGW_KIND_STATE, 1, "s", p, strlen(p)), CCGW_OK);
    }
    ccgw_bus_stats_t s;
    ccgw_bus_get_stats(b, &s);
    assert_int_equal(s.coalesced, 8); /* two queued, the rest went dirty */
    atomic_store(&r.ready, true);
    ccgw_bus_wake(b);
    assert_true(ccgw_bus_flush(b, 2000));
    /* whatever was published, the last one is v10 and nothing older follows it */
    pthread_mutex_lock(&r.lock);
    int last = -1;
    for (int i = 0; i < r.n; i++)
        if (strcmp(r.topics[i], "s") == 0)
            last = i;
    assert_true(last >= 0);
    assert_string_equal(r.payloads[last], "v10");
    int prev = 0;
    for (int i = 0; i < r.n; i++) {
        int v = atoi(r.payloads[i] + 1);
        assert_true(v > prev); /* strictly newer each time */
        prev = v;
    }
    pthread_mutex_unlock(&r.lock);
    ccgw_bus_free(b);
}

typedef struct seen {
    int n;
    char payload[256];
    size_t len;
} seen_t;

static void seen_cb(void *ctx, ccgw_kind_t kind, const char *topic, const char *payload, size_t len)
{
    seen_t *s = ctx;
    (void)kind;
    if (strcmp(topic, "ccgw/v1/hq/env/d1/state") != 0 || len >= sizeof s->payload)
        return;
    s->n++;
    memcpy(s->payload, payload, len + 1);
    s->len = len;
}

/* The cache keeps the first payload's room in the entry and reuses it for
 * payloads that fit; bigger ones get their own allocation and smaller ones
 * come back into the room: whatever the sizes, the cache holds exactly the
 * latest payload (NUL-terminated), and nothing leaks (ASan, valgrind). */
static void test_retained_payload_sizes(void **st)
{
    (void)st;
    ccgw_bus_t *b = ccgw_bus_new(1000, 0); /* not started: the messages stay queued */
    const char *topic = "ccgw/v1/hq/env/d1/state";
    char big[200], exact[64];
    memset(big, 'c', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *seq[] = {"{\"online\":false,\"reason\":\"starting\"}", "{\"online\":true}", big,
                         "{\"a\":1}", "", exact, big, "x"};
    /* exactly the room: the first payload's length + the slack of 16 */
    size_t room = strlen(seq[0]) + 16;
    memset(exact, 'e', room);
    exact[room] = '\0';
    for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
        assert_int_equal(ccgw_bus_retain(b, CCGW_KIND_STATE, 1, topic, seq[i], strlen(seq[i])), CCGW_OK);
        seen_t s = {0};
        ccgw_bus_retained_foreach(b, seen_cb, &s);
        if (!*seq[i]) {
            assert_int_equal(s.n, 0); /* an empty payload (a clear) is not visited */
            continue;
        }
        assert_int_equal(s.n, 1);
        assert_int_equal(s.len, strlen(seq[i]));
        assert_string_equal(s.payload, seq[i]);
    }
    ccgw_bus_stats_t s;
    ccgw_bus_get_stats(b, &s);
    assert_int_equal(s.retained_entries, 1);
    ccgw_bus_free(b);
}

static void test_snapshot_republishes_in_order(void **st)
{
    (void)st;
    rec_t r;
    ccgw_bus_t *b = make(&r, 100, 0, true);
    ccgw_bus_retain(b, CCGW_KIND_GATEWAY, 1, "gw/status", "on", 2);
    ccgw_bus_retain(b, CCGW_KIND_STATE, 1, "a/state", "a1", 2);
    ccgw_bus_retain(b, CCGW_KIND_ALARM, 1, "a/alarm/x", "raised", 6);
    ccgw_bus_retain(b, CCGW_KIND_ALARM, 1, "a/alarm/x", "", 0); /* cleared */
    assert_true(ccgw_bus_flush(b, 2000));
    int before = r.n;
    atomic_store(&r.snapshot, true); /* as after a reconnect */
    ccgw_bus_wake(b);
    for (int i = 0; i < 200 && r.n < before + 3; i++) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_true(ccgw_bus_flush(b, 2000));
    pthread_mutex_lock(&r.lock);
    assert_int_equal(r.n - before, 3);
    assert_string_equal(r.topics[before], "gw/status"); /* status first */
    assert_string_equal(r.topics[before + 1], "a/state");
    assert_string_equal(r.topics[before + 2], "a/alarm/x"); /* the clear is repeated */
    assert_string_equal(r.payloads[before + 2], "");
    pthread_mutex_unlock(&r.lock);
    ccgw_bus_free(b);
}

/* A broker window that takes one message per reopen, as libmosquitto's
 * in-flight window does at QoS 1 under load. */
typedef struct slow {
    rec_t r;
    ccgw_bus_t *b;
    atomic_bool stop;
    atomic_ulong published;
} slow_t;

static bool s_ready(void *c) { return atomic_load(&((slow_t *)c)->r.ready); }
static int s_publish(void *c, const ccgw_msg_t *m)
{
    (void)m;
    slow_t *s = c;
    atomic_fetch_add(&s->published, 1);
    atomic_store(&s->r.ready, false); /* the window is full again */
    return 0;
}

static void *s_broker(void *arg)
{
    slow_t *s = arg;
    while (!atomic_load(&s->stop)) {
        atomic_store(&s->r.ready, true); /* one acknowledgement */
        ccgw_bus_wake(s->b);
        struct timespec ts = {0, 200 * 1000L};
        nanosleep(&ts, NULL);
    }
    atomic_store(&s->r.ready, true);
    return NULL;
}

static void test_bound_holds_with_a_slow_window(void **st)
{
    (void)st;
    static slow_t s;
    memset(&s, 0, sizeof s);
    const size_t limit = 64;
    s.b = ccgw_bus_new(limit, 0);
    ccgw_sink_t sink = {.ctx = &s, .ready = s_ready, .publish = s_publish,
                        .take_snapshot_request = r_snap, .idle = r_idle};
    ccgw_bus_set_sink(s.b, &sink);
    ccgw_bus_start(s.b);
    pthread_t th;
    pthread_create(&th, NULL, s_broker, &s);
    unsigned long accepted = 0, worst = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        if (push(s.b, CCGW_KIND_TELEMETRY, "t", "{}") == CCGW_OK)
            accepted++;
        unsigned long outstanding = accepted - atomic_load(&s.published);
        if (outstanding > worst)
            worst = outstanding;
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < 300);
    atomic_store(&s.stop, true);
    pthread_join(th, NULL);
    /* what the bus holds (queued + popped by the north thread) stays bounded:
     * the queue limit plus one batch */
    if (worst > limit + 256 + 1)
        fail_msg("the bus held %lu messages (limit %zu + batch 256)", worst, limit);
    ccgw_bus_free(s.b);
}

static void test_no_sink_discards(void **st)
{
    (void)st;
    ccgw_bus_t *b = ccgw_bus_new(8, 0);
    ccgw_bus_start(b);
    for (int i = 0; i < 100; i++)
        push(b, CCGW_KIND_TELEMETRY, "t", "{}");
    assert_true(ccgw_bus_flush(b, 2000));
    ccgw_bus_stats_t s;
    ccgw_bus_get_stats(b, &s);
    assert_int_equal(s.depth, 0);
    assert_true(s.published[CCGW_KIND_TELEMETRY] + s.dropped_full[CCGW_KIND_TELEMETRY] == 100);
    ccgw_bus_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_telemetry_dropped_when_full),
        cmocka_unit_test(test_event_backpressure_then_efull),
        cmocka_unit_test(test_event_waits_for_room),
        cmocka_unit_test(test_retained_coalesces_to_latest),
        cmocka_unit_test(test_retained_payload_sizes),
        cmocka_unit_test(test_snapshot_republishes_in_order),
        cmocka_unit_test(test_no_sink_discards),
        cmocka_unit_test(test_bound_holds_with_a_slow_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
