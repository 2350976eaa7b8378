/*
 * supervision_flood: an instance that emits events as fast as the core
 * accepts them (flood) next to a healthy one (ok: telemetry every 100 ms,
 * QoS 1): the healthy instance's telemetry and state keep flowing, its
 * commands-free loop keeps turning (no hang reported for anyone), the flood
 * is slowed by backpressure, and SIGTERM still stops everything in bounded
 * time with exit 0 and the offline status. The counts are printed.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must be defined"
#endif

static h_env *E;
static h_broker *B;
static h_mqtt *S;
static h_proc *G;
static int64_t T0;

#define T_GW H_PREFIX "/hq/gateway/gw1"
#define T_ENV H_PREFIX "/hq/env/"

static int setup(void **state)
{
    (void)state;
    E = h_env_new("supervision_flood");
    h_current_env = E;
    if (h_broker_and_watcher(E, &B, &S) != 0)
        return -1;
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "gateway:\n  site: hq\n  id: gw1\n  data_dir: data\n  plugin_dirs: [\"%s\"]\n"
             "  queue_size: 2048\n  backpressure_ms: 200\n"
             "  supervision: {hang_timeout_ms: 2000}\n"
             "mqtt:\n  port: %d\n  qos: {telemetry: 1}\n"
             "instances:\n"
             "  - id: ok\n    plugin: crash_start\n    options: {fail_times: 0, interval_ms: 100}\n"
             "  - id: fd\n    plugin: flood\n",
             TEST_PLUGIN_DIR, B->port);
    G = h_gw_start_yaml(E, yaml, NULL, 0, &T0);
    return G ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    h_rig_teardown(E, B, S, G, NULL, 0);
    return 0;
}

static void others_unaffected(void **state)
{
    (void)state;
    H_EXPECT(S, 0, T_ENV "fd.f1/event/flood.tick", "{}", h_left_ms(T0, 8000));
    H_EXPECT(S, 0, T_ENV "ok.d1/telemetry", "{}", h_left_ms(T0, 8000));
    size_t mark = h_mqtt_mark(S);
    h_sleep_ms(3000);
    static const h_msg *ms[64];
    size_t ok = h_mqtt_collect(S, mark, T_ENV "ok.d1/telemetry", NULL, NULL, ms, 64);
    size_t fl = h_mqtt_collect(S, mark, T_ENV "fd.f1/event/#", NULL, NULL, ms, 1);
    h_log("in 3 s: %zu flood events, %zu telemetry messages of the healthy instance", fl, ok);
    H_ASSERT(fl > 1000, "the flood floods (%zu)", fl);
    H_ASSERT(ok >= 10, "the healthy instance's telemetry keeps flowing (%zu in 3 s, ~30 emitted)", ok);
    /* none of it was dropped: its seq has no gap (a telemetry message dropped
     * at a full queue leaves one) */
    h_sleep_ms(1000);
    static const h_msg *all[256];
    size_t k = h_mqtt_collect(S, 0, T_ENV "ok.d1/telemetry", NULL, NULL, all, 256);
    H_ASSERT(k >= 25 && k <= 256, "ok.d1 telemetry: %zu", k);
    double prev = 0;
    for (size_t i = 0; i < k; i++) {
        double seq = 0;
        H_ASSERT(h_json_num(all[i]->json, "seq", &seq), "seq in %s", all[i]->payload);
        H_ASSERT(i == 0 || seq == prev + 1, "ok.d1 telemetry seq %g after %g: dropped during the flood", seq, prev);
        prev = seq;
    }
    h_log("ok.d1: %zu telemetry messages without a gap during the flood", k);
    const h_msg *none[2];
    H_ASSERT(h_mqtt_collect(S, 0, T_GW "/alarm/#", NULL, NULL, none, 2) == 0, "no gateway alarm (no hang)");
    H_ASSERT(h_proc_alive(G), "alive");
}

static void sigterm_exits_zero(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    h_proc_signal(G, SIGTERM);
    int status = -1;
    H_ASSERT(h_proc_wait(G, h_scaled(15000), &status), "ccgw still running after SIGTERM");
    char buf[64];
    H_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status: %s", h_status_str(status, buf, sizeof buf));
    H_EXPECT(S, mark, T_GW "/status", "{\"online\":false,\"reason\":\"shutdown\"}", 8000);
    char line[512];
    H_ASSERT(h_proc_wait_log(G, "flood: ", 100, line, sizeof line), "flood counts logged");
    h_log("%s", line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(others_unaffected),
        cmocka_unit_test(sigterm_exits_zero),
    };
    int failed = cmocka_run_group_tests_name("integration.supervision_flood", tests, setup, teardown);
    return h_finish(failed);
}
