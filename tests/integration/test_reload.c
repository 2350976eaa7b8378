/*
 * reload: SIGHUP re-reads the config file.
 *  - valid: an added instance starts, a removed one stops (its device goes
 *    offline with the reason, its instance topic is cleared), a changed one
 *    (an option differs) restarts, the unchanged one keeps running: its
 *    telemetry seq goes on without a gap or reset and its instance topic
 *    shows no new life;
 *  - a quarantined instance whose options change is started anew (the
 *    quarantine alarm clears);
 *  - an instance replaced by one under a new id that declares the same
 *    device starts at once: the removed one stops first;
 *  - invalid: rejected as a whole (every error logged, gateway alarm
 *    config_rejected) while the data keeps flowing; the next valid reload
 *    clears the alarm.
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
static char CONFIG[4096];

#define T_GW H_PREFIX "/hq/gateway/gw1"
#define T_INST T_GW "/instance/"
#define T_ENV H_PREFIX "/hq/env/"

static void write_config(const char *instances)
{
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "gateway:\n"
             "  site: hq\n"
             "  id: gw1\n"
             "  data_dir: data\n"
             "  plugin_dirs: [\"%s\"]\n"
             "mqtt:\n"
             "  port: %d\n"
             "  qos: {telemetry: 1}\n"
             "instances:\n%s",
             TEST_PLUGIN_DIR, B->port, instances);
    H_ASSERT(h_write_file(CONFIG, yaml) == 0, "write %s", CONFIG);
}

#define I_KEEP "  - id: keep\n    plugin: crash_start\n    options: {fail_times: 0, interval_ms: 50}\n"
#define I_CHG1 "  - id: chg\n    plugin: crash_start\n    options: {fail_times: 0, interval_ms: 100}\n"
#define I_CHG2 "  - id: chg\n    plugin: crash_start\n    options: {fail_times: 0, interval_ms: 150}\n"
#define I_RM "  - id: rm\n    plugin: crash_start\n    options: {fail_times: 0}\n"
#define I_ADD "  - id: add\n    plugin: crash_start\n    options: {fail_times: 0}\n"
/* two errors: an option out of range, an unknown plugin */
#define I_BAD "  - id: bad\n    plugin: crash_start\n    options: {fail_times: -1}\n" \
              "  - id: worse\n    plugin: no_such_plugin\n"

static int setup(void **state)
{
    (void)state;
    E = h_env_new("reload");
    h_current_env = E;
    if (h_broker_and_watcher(E, &B, &S) != 0)
        return -1;
    h_env_path(E, "ccgw.yaml", CONFIG, sizeof CONFIG);
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "gateway:\n  site: hq\n  id: gw1\n  data_dir: data\n  plugin_dirs: [\"%s\"]\n"
             "mqtt:\n  port: %d\n  qos: {telemetry: 1}\ninstances:\n" I_KEEP I_CHG1 I_RM,
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

static bool empty_payload(const h_msg *m, const void *ud)
{
    (void)ud;
    return m->len == 0;
}

static bool reason_has(const h_msg *m, const void *ud)
{
    const char *r = m->json ? h_json_str(m->json, "reason") : NULL;
    return m->json && json_is_false(json_object_get(m->json, "online")) && r && strstr(r, ud);
}

static void hup_and_wait(const char *needle)
{
    char line[512];
    h_proc_signal(G, SIGHUP);
    H_ASSERT(h_proc_wait_log(G, needle, h_scaled(10000), line, sizeof line), "log: %s", needle);
    h_log("%s", line);
}

static void add_remove_change(void **state)
{
    (void)state;
    H_EXPECT(S, 0, T_ENV "keep.d1/telemetry", "{}", h_left_ms(T0, 8000));
    H_EXPECT(S, 0, T_ENV "chg.d1/telemetry", "{}", h_left_ms(T0, 8000));
    H_EXPECT(S, 0, T_ENV "rm.d1/telemetry", "{}", h_left_ms(T0, 8000));
    size_t mark = h_mqtt_mark(S);
    write_config(I_KEEP I_CHG2 I_ADD);
    hup_and_wait("1 added, 1 removed, 1 restarted, 1 unchanged");
    H_EXPECT(S, mark, T_ENV "add.d1/state", "{\"online\":true}", 5000);
    H_EXPECT(S, mark, T_ENV "add.d1/telemetry", "{}", 5000);
    H_EXPECT(S, mark, T_INST "add", "{\"state\":\"running\"}", 5000);
    H_EXPECT_PRED(S, mark, T_ENV "rm.d1/state", reason_has, "removed by a reload", "rm.d1 offline, removed", 5000);
    H_EXPECT_PRED(S, mark, T_INST "rm", empty_payload, NULL, "the rm instance topic cleared", 5000);
    H_EXPECT_PRED(S, mark, T_ENV "chg.d1/state", reason_has, "changed by a reload", "chg.d1 offline, changed", 5000);
    const h_msg *up = H_EXPECT(S, mark, T_ENV "chg.d1/state", "{\"online\":true}", 5000);
    H_EXPECT(S, up->index, T_ENV "chg.d1/telemetry", "{}", 5000);
    /* rm publishes nothing any more */
    size_t m2 = h_mqtt_mark(S);
    h_sleep_ms(500);
    const h_msg *none[2];
    H_ASSERT(h_mqtt_collect(S, m2, T_ENV "rm.d1/telemetry", NULL, NULL, none, 2) == 0, "rm stopped");
}

static void invalid_rejected_data_flows(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    write_config(I_KEEP I_CHG2 I_ADD I_BAD);
    hup_and_wait("configuration rejected as a whole (1 rejected so far)");
    const h_msg *a = H_EXPECT(S, mark, T_GW "/alarm/config_rejected", "{\"state\":\"raised\"}", 5000);
    h_log("alarm: %s", a->payload);
    H_ASSERT(strstr(a->payload, "2 errors"), "the alarm counts the errors: %s", a->payload);
    char line[512];
    H_ASSERT(h_proc_wait_log(G, "no_such_plugin", 1000, line, sizeof line), "every error logged (plugin)");
    H_ASSERT(h_proc_wait_log(G, "fail_times", 1000, line, sizeof line), "every error logged (range)");
    /* nothing stopped: data keeps flowing from all three */
    size_t m2 = h_mqtt_mark(S);
    H_EXPECT(S, m2, T_ENV "keep.d1/telemetry", "{}", 3000);
    H_EXPECT(S, m2, T_ENV "chg.d1/telemetry", "{}", 3000);
    H_EXPECT(S, m2, T_ENV "add.d1/telemetry", "{}", 3000);
    const h_msg *none[2];
    H_ASSERT(h_mqtt_collect(S, mark, T_INST "#", NULL, NULL, none, 2) == 0, "no instance touched by a rejected reload");
    /* the next valid reload (the same instances) clears the alarm and changes nothing */
    mark = h_mqtt_mark(S);
    write_config(I_KEEP I_CHG2 I_ADD);
    hup_and_wait("0 added, 0 removed, 0 restarted, 3 unchanged");
    H_EXPECT_PRED(S, mark, T_GW "/alarm/config_rejected", empty_payload, NULL, "config_rejected cleared", 5000);
}

static void unchanged_never_restarted(void **state)
{
    (void)state;
    h_sleep_ms(300);
    /* the keep instance had exactly one life: one "running" on its topic */
    const h_msg *runs[8];
    size_t n = h_mqtt_collect(S, 0, T_INST "keep", NULL, NULL, runs, 8);
    size_t running = 0;
    for (size_t i = 0; i < n && i < 8; i++)
        running += h_json_str_is(runs[i]->json, "state", "running");
    H_ASSERT(running == 1, "keep started once (%zu running updates)", running);
    /* and its telemetry seq never jumped or restarted */
    static const h_msg *tm[4096];
    size_t k = h_mqtt_collect(S, 0, T_ENV "keep.d1/telemetry", NULL, NULL, tm, 4096);
    H_ASSERT(k >= 10 && k <= 4096, "keep telemetry: %zu", k);
    double prev = 0;
    for (size_t i = 0; i < k; i++) {
        double seq = 0;
        H_ASSERT(h_json_num(tm[i]->json, "seq", &seq), "seq in %s", tm[i]->payload);
        H_ASSERT(i == 0 || seq == prev + 1, "seq %g after %g: a gap or a restart", seq, prev);
        prev = seq;
    }
    h_log("keep.d1: %zu telemetry messages, seq %g..%g without a gap", k, prev - (double)k + 1, prev);
}

#define I_Q1 "  - id: q\n    plugin: failing_later\n    supervision: {max_failures: 1}\n" \
             "    options: {fail_after_ms: 200, fail_times: 1}\n"
#define I_Q2 "  - id: q\n    plugin: failing_later\n    supervision: {max_failures: 1}\n" \
             "    options: {fail_after_ms: 200, fail_times: 1, interval_ms: 200}\n"

static void changed_instance_leaves_quarantine(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    write_config(I_KEEP I_CHG2 I_ADD I_Q1);
    hup_and_wait("1 added, 0 removed, 0 restarted, 3 unchanged");
    H_EXPECT(S, mark, T_GW "/alarm/quarantine.q", "{\"state\":\"raised\"}", 5000);
    H_EXPECT(S, mark, T_INST "q", "{\"state\":\"quarantined\"}", 5000);
    /* its options change: a new instance, a new chance (the plugin fails only its first life) */
    mark = h_mqtt_mark(S);
    write_config(I_KEEP I_CHG2 I_ADD I_Q2);
    hup_and_wait("0 added, 0 removed, 1 restarted, 3 unchanged");
    H_EXPECT_PRED(S, mark, T_GW "/alarm/quarantine.q", empty_payload, NULL, "quarantine.q cleared", 5000);
    H_EXPECT(S, mark, T_INST "q", "{\"state\":\"running\",\"quarantined\":false,\"failures\":0}", 5000);
    H_EXPECT(S, mark, T_ENV "q.l1/telemetry", "{}", 5000);
}

#define I_OLD "  - id: old\n    plugin: crash_start\n    options: {fail_times: 0, device: shared.d1}\n"
#define I_NEW "  - id: new\n    plugin: crash_start\n    options: {fail_times: 0, device: shared.d1}\n"

static void replacement_with_same_device(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    write_config(I_KEEP I_CHG2 I_ADD I_Q2 I_OLD);
    hup_and_wait("1 added, 0 removed, 0 restarted, 4 unchanged");
    H_EXPECT(S, mark, T_INST "old", "{\"state\":\"running\"}", 5000);
    mark = h_mqtt_mark(S);
    write_config(I_KEEP I_CHG2 I_ADD I_Q2 I_NEW);
    hup_and_wait("1 added, 1 removed, 0 restarted, 4 unchanged");
    H_EXPECT(S, mark, T_INST "new", "{\"state\":\"running\",\"failures\":0}", 5000);
    const h_msg *up = H_EXPECT(S, mark, T_ENV "shared.d1/state", "{\"online\":true}", 5000);
    H_EXPECT(S, up->index, T_ENV "shared.d1/telemetry", "{}", 5000);
    char line[512];
    H_ASSERT(!h_proc_wait_log(G, "already exists", 200, line, sizeof line), "the new instance failed once: %s", line);
}

static void sigterm_exits_zero(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    h_proc_signal(G, SIGTERM);
    int status = -1;
    H_ASSERT(h_proc_wait(G, h_scaled(10000), &status), "ccgw still running after SIGTERM");
    char buf[64];
    H_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status: %s", h_status_str(status, buf, sizeof buf));
    H_EXPECT(S, mark, T_GW "/status", "{\"online\":false,\"reason\":\"shutdown\"}", 3000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(add_remove_change),
        cmocka_unit_test(invalid_rejected_data_flows),
        cmocka_unit_test(unchanged_never_restarted),
        cmocka_unit_test(changed_instance_leaves_quarantine),
        cmocka_unit_test(replacement_with_same_device),
        cmocka_unit_test(sigterm_exits_zero),
    };
    int failed = cmocka_run_group_tests_name("integration.reload", tests, setup, teardown);
    return h_finish(failed);
}
