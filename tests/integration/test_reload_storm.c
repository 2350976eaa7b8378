/*
 * reload_storm: 200 SIGHUPs alternating valid and invalid configs while
 * loadgen emits 2,000 telemetry messages/s (the suite runs under ASan).
 *  - every invalid one is rejected (100), every valid one applied (100);
 *    the valid ones alternate between two instance sets (an extra instance
 *    added / removed each time), so each applies real work;
 *  - the unchanged instances (loadgen, keep) are never restarted: one life
 *    on their instance topics, and keep's telemetry seq goes on without a
 *    gap (QoS 1 to a QoS 1 subscriber);
 *  - no crash; SIGTERM exits 0 (ASan/LSan clean) with the offline status.
 * The counts are printed.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must be defined"
#endif

#define N_HUPS 200

static h_env *E;
static h_broker *B;
static h_mqtt *S;
static h_proc *G;
static int64_t T0;
static char CONFIG[4096];

#define T_GW H_PREFIX "/hq/gateway/gw1"
#define T_INST T_GW "/instance/"
#define T_ENV H_PREFIX "/hq/env/"

#define I_LG "  - id: lg\n    plugin: loadgen\n    options: {devices: 20, rate: 2000, report_s: 60}\n"
#define I_KEEP "  - id: keep\n    plugin: crash_start\n    options: {fail_times: 0, interval_ms: 50}\n"
#define I_EXTRA "  - id: extra\n    plugin: crash_start\n    options: {fail_times: 0, interval_ms: 200}\n"
#define I_BAD "  - id: bad\n    plugin: crash_start\n    options: {fail_times: many}\n"

static int make_config(char *out, size_t len, const char *instances)
{
    return snprintf(out, len,
                    "gateway:\n  site: hq\n  id: gw1\n  data_dir: data\n  plugin_dirs: [\"%s\", \"%s\"]\n"
                    "mqtt:\n  port: %d\n  qos: {telemetry: 1}\ninstances:\n%s",
                    TEST_PLUGIN_DIR, CCGW_PLUGIN_DIR, B->port, instances);
}

static int setup(void **state)
{
    (void)state;
    E = h_env_new("reload_storm");
    h_current_env = E;
    if (h_broker_and_watcher(E, &B, &S) != 0)
        return -1;
    char yaml[4096];
    make_config(yaml, sizeof yaml, I_LG I_KEEP);
    G = h_gw_start_yaml(E, yaml, CONFIG, sizeof CONFIG, &T0);
    return G ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    h_rig_teardown(E, B, S, G, NULL, 0);
    return 0;
}

static void storm(void **state)
{
    (void)state;
    H_EXPECT(S, 0, T_ENV "keep.d1/telemetry", "{}", h_left_ms(T0, 8000));
    H_EXPECT(S, 0, T_ENV "lg-1/telemetry", "{}", h_left_ms(T0, 8000));
    char yaml[4096], needle[128], line[512];
    int ok = 0, rejected = 0;
    int64_t t = h_now_ms();
    for (int i = 0; i < N_HUPS; i++) {
        bool valid = i % 2 == 0;
        if (valid)
            make_config(yaml, sizeof yaml, (i / 2) % 2 == 0 ? I_LG I_KEEP I_EXTRA : I_LG I_KEEP);
        else
            make_config(yaml, sizeof yaml, I_LG I_KEEP I_BAD);
        H_ASSERT(h_write_file(CONFIG, yaml) == 0, "write");
        h_proc_signal(G, SIGHUP);
        if (valid)
            snprintf(needle, sizeof needle, "configuration applied (reload %d)", ok + 1);
        else
            snprintf(needle, sizeof needle, "(%d rejected so far)", rejected + 1);
        H_ASSERT(h_proc_wait_log(G, needle, h_scaled(10000), line, sizeof line), "reload %d: '%s'", i, needle);
        if (valid)
            ok++;
        else
            rejected++;
    }
    h_log("%d SIGHUPs in %lld ms: %d applied, %d rejected", N_HUPS, (long long)(h_now_ms() - t), ok, rejected);
    H_ASSERT(ok == N_HUPS / 2 && rejected == N_HUPS / 2, "applied %d rejected %d", ok, rejected);
    H_ASSERT(h_proc_alive(G), "ccgw alive after the storm");
    /* the last one was invalid: the alarm is up; the data still flows */
    H_EXPECT(S, 0, T_GW "/alarm/config_rejected", "{\"state\":\"raised\"}", 3000);
    size_t mark = h_mqtt_mark(S);
    H_EXPECT(S, mark, T_ENV "keep.d1/telemetry", "{}", 3000);
    H_EXPECT(S, mark, T_ENV "lg-1/telemetry", "{}", 3000);
}

static void unchanged_instances_kept(void **state)
{
    (void)state;
    h_sleep_ms(300);
    static const h_msg *ms[8192];
    const char *ids[] = {"lg", "keep"};
    for (int j = 0; j < 2; j++) {
        char topic[128];
        snprintf(topic, sizeof topic, T_INST "%s", ids[j]);
        size_t n = h_mqtt_collect(S, 0, topic, NULL, NULL, ms, 64);
        size_t running = 0;
        for (size_t i = 0; i < n && i < 64; i++)
            running += h_json_str_is(ms[i]->json, "state", "running");
        H_ASSERT(running == 1, "%s had one life (%zu running updates)", ids[j], running);
    }
    size_t k = h_mqtt_collect(S, 0, T_ENV "keep.d1/telemetry", NULL, NULL, ms, 8192);
    H_ASSERT(k >= 20 && k <= 8192, "keep telemetry: %zu", k);
    double prev = 0, first = 0;
    for (size_t i = 0; i < k; i++) {
        double seq = 0;
        H_ASSERT(h_json_num(ms[i]->json, "seq", &seq), "seq in %s", ms[i]->payload);
        if (i == 0)
            first = seq;
        H_ASSERT(i == 0 || seq == prev + 1, "keep.d1 seq %g after %g: a gap or a restart", seq, prev);
        prev = seq;
    }
    h_log("keep.d1: %zu telemetry messages, seq %g..%g without a gap", k, first, prev);
    size_t lg = h_mqtt_collect(S, 0, T_ENV "+/telemetry", NULL, NULL, ms, 1);
    h_log("telemetry received in total (all devices): %zu", lg);
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
    H_EXPECT(S, mark, T_GW "/status", "{\"online\":false,\"reason\":\"shutdown\"}", 3000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(storm),
        cmocka_unit_test(unchanged_instances_kept),
        cmocka_unit_test(sigterm_exits_zero),
    };
    int failed = cmocka_run_group_tests_name("integration.reload_storm", tests, setup, teardown);
    return h_finish(failed);
}
