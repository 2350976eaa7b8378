/*
 * supervision: the supervisor against misbehaving test plugins in the real
 * daemon, next to a healthy instance.
 *  - crash_start fails its first 3 starts: the instance topic shows
 *    state backoff with restarts / last_failure / next_attempt_in_ms, the
 *    device is online:false with the reason, then the instance runs
 *    (restarts 3) and its device comes online;
 *  - failing_later reports FAILED after 300 ms every life: after
 *    max_failures (3) failures it is quarantined: instance state
 *    quarantined and the gateway alarm .../gateway/gw1/alarm/quarantine.fl;
 *  - hang blocks its loop forever: reported (state hung, gateway alarm
 *    hung.hg, its device offline with the reason) while the healthy
 *    instance keeps publishing telemetry;
 *  - hang (hr) blocks once for 3 s: reported hung, then, when the call
 *    returns, joined and restarted (restarts 1, running, alarm cleared);
 *  - SIGTERM with a thread stuck forever: exit 0, offline status published.
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
#define T_INST T_GW "/instance/"

static int setup(void **state)
{
    (void)state;
    E = h_env_new("supervision");
    h_current_env = E;
    if (h_broker_and_watcher(E, &B, &S) != 0)
        return -1;
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "gateway:\n"
             "  site: hq\n"
             "  id: gw1\n"
             "  data_dir: data\n"
             "  plugin_dirs: [\"%s\"]\n"
             "  supervision: {restart_min_ms: 300, restart_max_ms: 1200, max_failures: 10,\n"
             "                failure_window_s: 60, hang_timeout_ms: 1500}\n"
             "mqtt:\n"
             "  port: %d\n"
             "instances:\n"
             "  - id: ok\n"
             "    plugin: crash_start\n"
             "    options: {fail_times: 0, interval_ms: 100}\n"
             "  - id: cs\n"
             "    plugin: crash_start\n"
             "    options: {fail_times: 3}\n"
             "  - id: fl\n"
             "    plugin: failing_later\n"
             "    supervision: {max_failures: 3, restart_min_ms: 100, restart_max_ms: 200}\n"
             "    options: {fail_after_ms: 300}\n"
             "  - id: hg\n"
             "    plugin: hang\n"
             "    options: {hang_after_ms: 1500}\n"
             "  - id: hr\n"
             "    plugin: hang\n"
             "    options: {hang_after_ms: 1000, hang_ms: 3000, hang_times: 1}\n",
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

static bool reason_has(const h_msg *m, const void *ud)
{
    const char *r = m->json ? h_json_str(m->json, "reason") : NULL;
    return r && strstr(r, ud);
}

static bool is_backoff(const h_msg *m, const void *ud)
{
    (void)ud;
    double in = -1, restarts = -1;
    return m->json && h_json_str_is(m->json, "state", "backoff") && h_json_str(m->json, "last_failure") &&
           strstr(h_json_str(m->json, "last_failure"), "start failed") &&
           h_json_num(m->json, "next_attempt_in_ms", &in) && h_json_num(m->json, "restarts", &restarts);
}

static void start_failures_restart_with_backoff(void **state)
{
    (void)state;
    const h_msg *m = H_EXPECT_PRED(S, 0, T_INST "cs", is_backoff, NULL, "state backoff with the reason",
                                   h_left_ms(T0, 8000));
    h_log("backoff: %s", m->payload);
    m = H_EXPECT_PRED(S, 0, H_PREFIX "/hq/env/cs.d1/state", reason_has, "start failed",
                      "cs.d1 offline with the reason", h_left_ms(T0, 8000));
    H_ASSERT(json_is_false(json_object_get(m->json, "online")), "the device says why: %s", m->payload);
    m = H_EXPECT(S, 0, T_INST "cs", "{\"state\":\"running\",\"restarts\":3,\"failures\":3}", h_left_ms(T0, 15000));
    h_log("running: %s", m->payload);
    H_EXPECT(S, 0, H_PREFIX "/hq/env/cs.d1/state", "{\"online\":true}", h_left_ms(T0, 15000));
    H_EXPECT(S, 0, H_PREFIX "/hq/env/cs.d1/telemetry", "{}", h_left_ms(T0, 15000));
    /* the backoff grows: the delays between the failures' restarts are logged */
    char line[512];
    H_ASSERT(h_proc_wait_log(G, "[crash_start:cs] restarting (restart 3;", h_scaled(2000), line, sizeof line),
             "third restart logged");
}

static void repeated_failures_quarantine(void **state)
{
    (void)state;
    const h_msg *m = H_EXPECT(S, 0, T_GW "/alarm/quarantine.fl", "{\"state\":\"raised\",\"severity\":\"critical\"}",
                              h_left_ms(T0, 15000));
    h_log("alarm: %s", m->payload);
    m = H_EXPECT(S, 0, T_INST "fl", "{\"state\":\"quarantined\",\"quarantined\":true,\"failures\":3}",
                 h_left_ms(T0, 15000));
    H_ASSERT(strstr(h_json_str(m->json, "last_failure"), "simulated failure"), "%s", m->payload);
    /* no restart after the quarantine */
    size_t mark = h_mqtt_mark(S);
    h_sleep_ms(1000);
    const h_msg *after[4];
    size_t n = h_mqtt_collect(S, mark, T_INST "fl", NULL, NULL, after, 4);
    H_ASSERT(n == 0, "quarantined: no more lives (%zu instance updates)", n);
    H_EXPECT(S, 0, H_PREFIX "/hq/env/fl.l1/state", "{\"online\":false}", 1000);
}

static void hang_reported_others_keep_publishing(void **state)
{
    (void)state;
    const h_msg *m = H_EXPECT(S, 0, T_INST "hg", "{\"state\":\"hung\",\"health\":\"failed\"}", h_left_ms(T0, 15000));
    h_log("hung: %s", m->payload);
    H_EXPECT(S, 0, T_GW "/alarm/hung.hg", "{\"state\":\"raised\"}", 2000);
    m = H_EXPECT_PRED(S, 0, H_PREFIX "/hq/env/hg.h1/state", reason_has, "instance hung", "hg.h1 offline, hung", 2000);
    H_ASSERT(json_is_false(json_object_get(m->json, "online")), "%s", m->payload);
    /* the healthy instance keeps its telemetry flowing while hg is stuck */
    size_t mark = h_mqtt_mark(S);
    h_sleep_ms(1500);
    const h_msg *tm[64];
    size_t n = h_mqtt_collect(S, mark, H_PREFIX "/hq/env/ok.d1/telemetry", NULL, NULL, tm, 64);
    h_log("ok.d1 telemetry in 1.5 s with hg hung: %zu", n);
    H_ASSERT(n >= 5, "telemetry of the healthy instance keeps flowing (%zu in 1.5 s)", n);
    H_ASSERT(h_proc_alive(G), "ccgw alive");
}

static void hang_that_returns_is_restarted(void **state)
{
    (void)state;
    const h_msg *h = H_EXPECT(S, 0, T_INST "hr", "{\"state\":\"hung\"}", h_left_ms(T0, 10000));
    H_EXPECT(S, 0, T_GW "/alarm/hung.hr", "{\"state\":\"raised\"}", 3000);
    const h_msg *m = H_EXPECT(S, h->index, T_INST "hr", "{\"state\":\"running\",\"restarts\":1}", h_left_ms(T0, 15000));
    h_log("restarted after the hang: %s", m->payload);
    H_EXPECT(S, h->index, T_GW "/alarm/hung.hr", NULL, 1000); /* cleared (empty) after raised */
    const h_msg *all[16];
    size_t n = h_mqtt_collect(S, h->index, T_GW "/alarm/hung.hr", NULL, NULL, all, 16);
    H_ASSERT(n >= 1 && all[n < 16 ? n - 1 : 15]->len == 0, "hung.hr cleared (%zu updates)", n);
    H_EXPECT(S, h->index, H_PREFIX "/hq/env/hr.h1/state", "{\"online\":true}", 3000);
    H_ASSERT(!h_json_str(m->json, "reason"), "a running life has no failure reason: %s", m->payload);
}

static void sigterm_with_stuck_thread_exits_zero(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    h_proc_signal(G, SIGTERM);
    int status = -1;
    H_ASSERT(h_proc_wait(G, h_scaled(15000), &status), "ccgw still running after SIGTERM");
    char buf[64];
    H_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status: %s", h_status_str(status, buf, sizeof buf));
    H_EXPECT(S, mark, T_GW "/status", "{\"online\":false,\"reason\":\"shutdown\"}", 3000);
    char line[512];
    H_ASSERT(h_proc_wait_log(G, "left behind", 100, line, sizeof line), "the stuck thread is reported at exit");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(start_failures_restart_with_backoff),
        cmocka_unit_test(repeated_failures_quarantine),
        cmocka_unit_test(hang_reported_others_keep_publishing),
        cmocka_unit_test(hang_that_returns_is_restarted),
        cmocka_unit_test(sigterm_with_stuck_thread_exits_zero),
    };
    int failed = cmocka_run_group_tests_name("integration.supervision", tests, setup, teardown);
    return h_finish(failed);
}
