/*
 * alarm_rules: the core's alarm engine in the real daemon, driven by the
 * `knob` test plugin (device env/knob1: telemetry temperature, state leak,
 * command knob.set) and rules from the config:
 *  - a high rule (threshold 30, deadband 2, on/off delay 0.5 s) raises exactly
 *    one alarm after its on-delay (not before), does not re-raise or clear
 *    while the value hovers inside the deadband, clears after its off-delay
 *    (alarm.cleared, then an empty retained payload);
 *  - alarm.ack (a core command on every device) acknowledges it: retained
 *    payload state acknowledged, acked_by/acked_at, event alarm.acknowledged,
 *    an INFO audit line; an unknown code or a missing `by` is bad_arguments;
 *  - a restart with the alarm active re-publishes it with the same raised_at
 *    and its acknowledgement (persisted in data_dir/alarms.json);
 *  - a boolean rule on the leak state, rate-limited: flapping within
 *    min_interval_s is counted (log) and not re-raised.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must be defined"
#endif

#define T_KNOB H_PREFIX "/hq/env/knob1"

static h_env *E;
static h_broker *B;
static h_mqtt *S;
static h_proc *G;
static char CONFIG[4096];
static char BOOT[17];
static char RAISED_AT[40];

static int write_config(double temperature)
{
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "gateway:\n"
             "  site: hq\n"
             "  id: gw1\n"
             "  plugin_dirs: [\"%s\"]\n"
             "  data_dir: state/ccgw\n" /* created by ccgw (relative to this file) */
             "mqtt:\n"
             "  port: %d\n"
             "alarms:\n"
             "  restore_grace_s: 5\n"
             "  rules:\n"
             "    - code: temp_high\n"
             "      class: env\n"
             "      device: knob1\n"
             "      value: temperature\n"
             "      type: high\n"
             "      threshold: 30\n"
             "      deadband: 2\n"
             "      on_delay_s: 0.5\n"
             "      off_delay_s: 0.5\n"
             "      severity: major\n"
             "    - code: water_leak\n"
             "      device: \"knob*\"\n"
             "      value: leak\n"
             "      type: on\n"
             "      severity: critical\n"
             "      message: Water on the floor\n"
             "      min_interval_s: 60\n"
             "instances:\n"
             "  - id: knob\n"
             "    plugin: knob\n"
             "    options: {interval_ms: 100, temperature: %g}\n",
             TEST_PLUGIN_DIR, B->port, temperature);
    h_env_path(E, "ccgw.yaml", CONFIG, sizeof CONFIG);
    return h_write_file(CONFIG, yaml);
}

static int setup(void **state)
{
    (void)state;
    E = h_env_new("alarm_rules");
    h_current_env = E;
    if (h_broker_and_watcher(E, &B, &S) != 0 || write_config(20) != 0)
        return -1;
    G = h_gw_start(E, CONFIG);
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

static bool nonempty(const h_msg *m, const void *ud)
{
    (void)ud;
    return m->len > 0;
}

static bool code_is(const h_msg *m, const void *ud)
{
    return m->json && h_json_str_is(json_object_get(m->json, "data"), "code", ud);
}

static bool other_boot(const h_msg *m, const void *ud)
{
    return m->json && !h_json_str_is(m->json, "boot", ud);
}

static const h_msg *command(const char *name, const char *args)
{
    char topic[256], reply[300];
    snprintf(topic, sizeof topic, "%s/cmd/%s", T_KNOB, name);
    snprintf(reply, sizeof reply, "%s/reply", topic);
    size_t mark = h_mqtt_mark(S);
    H_ASSERT(h_mqtt_pub(S, topic, args, (int)strlen(args), 1, false, NULL, NULL, 0) == 0, "publish");
    return H_EXPECT(S, mark, reply, "{}", h_scaled(5000));
}

static void set_knob(const char *args)
{
    const h_msg *r = command("knob.set", args);
    H_ASSERT(json_is_true(json_object_get(r->json, "ok")), "knob.set %s: %s", args, r->payload);
}

static void raise_once_after_on_delay(void **state)
{
    (void)state;
    const h_msg *st = H_EXPECT(S, 0, T_KNOB "/state", "{\"online\":true}", h_scaled(8000));
    snprintf(BOOT, sizeof BOOT, "%s", h_json_str(st->json, "boot"));
    H_EXPECT(S, 0, T_KNOB "/telemetry", "{\"values\":{\"temperature\":20}}", h_scaled(3000));
    size_t mark = h_mqtt_mark(S);
    int64_t t0 = h_now_ms();
    set_knob("{\"temperature\":31}");
    const h_msg *a = H_EXPECT(S, mark, T_KNOB "/alarm/temp_high",
                              "{\"code\":\"temp_high\",\"state\":\"raised\",\"severity\":\"major\","
                              "\"rule\":\"temp_high\",\"data\":{\"point\":\"temperature\",\"value\":31,"
                              "\"threshold\":30,\"type\":\"high\"}}",
                              h_scaled(3000));
    int64_t took = a->t_ms - t0;
    H_ASSERT(took >= 495, "raised after the on-delay of 500 ms, not before (took %lld ms)", (long long)took);
    H_ASSERT(took < h_scaled(2000), "raised soon after the on-delay (took %lld ms)", (long long)took);
    H_ASSERT(a->retain, "the alarm is retained");
    char why[256];
    H_ASSERT(h_envelope_ok(a->json, "hq", "env", "knob1", "knob", BOOT, why, sizeof why), "%s", why);
    snprintf(RAISED_AT, sizeof RAISED_AT, "%s", h_json_str(a->json, "raised_at"));
    H_ASSERT(h_ts_valid(RAISED_AT, 60), "raised_at %s", RAISED_AT);
    H_EXPECT_PRED(S, mark, T_KNOB "/event/alarm.raised", code_is, "temp_high", "alarm.raised temp_high",
                  h_scaled(2000));
    /* exactly one */
    h_sleep_ms(600);
    const h_msg *all[16];
    size_t n = h_mqtt_collect(S, mark, T_KNOB "/alarm/temp_high", NULL, NULL, all, 16);
    H_ASSERT(n == 1, "exactly one alarm publish, got %zu", n);
}

static void hover_inside_deadband(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    for (int i = 0; i < 8; i++) {
        set_knob(i % 2 ? "{\"temperature\":31}" : "{\"temperature\":29}");
        h_sleep_ms(150);
    }
    set_knob("{\"temperature\":28.5}");
    h_sleep_ms(1200);
    const h_msg *all[16];
    size_t n = h_mqtt_collect(S, mark, T_KNOB "/alarm/temp_high", NULL, NULL, all, 16);
    H_ASSERT(n == 0, "no re-raise and no clear while inside the deadband, got %zu alarm publishes", n);
    n = h_mqtt_collect(S, mark, T_KNOB "/event/alarm.cleared", NULL, NULL, all, 16);
    H_ASSERT(n == 0, "no alarm.cleared, got %zu", n);
    n = h_mqtt_collect(S, mark, T_KNOB "/event/alarm.raised", NULL, NULL, all, 16);
    H_ASSERT(n == 0, "no alarm.raised, got %zu", n);
    set_knob("{\"temperature\":31}");
}

static void ack_is_audited(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    const h_msg *r = command("alarm.ack", "{\"code\":\"temp_high\",\"by\":\"alice\",\"note\":\"on my way\"}");
    H_ASSERT(json_is_true(json_object_get(r->json, "ok")), "ack ok: %s", r->payload);
    H_ASSERT(h_json_str_is(json_object_get(r->json, "data"), "state", "acknowledged"), "%s", r->payload);
    const h_msg *a = H_EXPECT(S, mark, T_KNOB "/alarm/temp_high",
                              "{\"code\":\"temp_high\",\"state\":\"acknowledged\",\"acked_by\":\"alice\"}",
                              h_scaled(3000));
    H_ASSERT(a->retain, "retained");
    H_ASSERT(h_ts_valid(h_json_str(a->json, "acked_at"), 60), "acked_at: %s", a->payload);
    H_ASSERT(h_json_str_is(a->json, "raised_at", RAISED_AT), "raised_at unchanged: %s", a->payload);
    H_EXPECT(S, mark, T_KNOB "/event/alarm.acknowledged",
             "{\"type\":\"alarm.acknowledged\",\"data\":{\"code\":\"temp_high\",\"by\":\"alice\","
             "\"note\":\"on my way\"}}",
             h_scaled(3000));
    char line[512];
    H_ASSERT(h_proc_wait_log(G, "audit: alarm.ack code=temp_high device=env/knob1 by=alice result=ok",
                             h_scaled(2000), line, sizeof line),
             "the audit line");
    H_ASSERT(strstr(line, "INFO"), "audit at INFO: %s", line);
}

static void ack_errors(void **state)
{
    (void)state;
    const h_msg *r = command("alarm.ack", "{\"code\":\"no_such_alarm\",\"by\":\"bob\"}");
    H_ASSERT(json_is_false(json_object_get(r->json, "ok")), "%s", r->payload);
    H_ASSERT(h_json_str_is(json_object_get(r->json, "error"), "code", "bad_arguments"), "%s", r->payload);
    r = command("alarm.ack", "{\"code\":\"temp_high\"}");
    H_ASSERT(h_json_str_is(json_object_get(r->json, "error"), "code", "bad_arguments"), "by is required: %s",
             r->payload);
    r = command("alarm.ack", "{\"code\":\"temp_high\",\"by\":\"alice\",\"extra\":1}");
    H_ASSERT(h_json_str_is(json_object_get(r->json, "error"), "code", "bad_arguments"), "unknown key: %s",
             r->payload);
    char line[512];
    H_ASSERT(h_proc_wait_log(G, "audit: alarm.ack code=no_such_alarm device=env/knob1 by=bob result=bad_arguments",
                             h_scaled(2000), line, sizeof line),
             "the refused ack is audited");
    /* the plugin's own commands still work; other commands are unknown */
    r = command("nope", "{}");
    H_ASSERT(h_json_str_is(json_object_get(r->json, "error"), "code", "unknown_command"), "%s", r->payload);
}

static void restart_republishes(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/state/ccgw", h_env_dir(E));
    struct stat st;
    H_ASSERT(stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0750,
             "data_dir created with mode 0750");
    H_ASSERT(write_config(31) == 0, "config"); /* the knob comes back at 31: the alarm holds */
    int status = h_proc_stop(G, 8000);
    H_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "ccgw exits 0 (status %d)", status);
    size_t mark = h_mqtt_mark(S);
    G = h_gw_start(E, CONFIG);
    H_ASSERT(G, "ccgw restarted");
    const h_msg *a = H_EXPECT_PRED(S, mark, T_KNOB "/alarm/temp_high", other_boot, BOOT,
                                   "temp_high from the new boot", h_scaled(8000));
    H_ASSERT(a->retain, "retained");
    H_ASSERT(h_json_str_is(a->json, "raised_at", RAISED_AT), "same raised_at %s: %s", RAISED_AT, a->payload);
    H_ASSERT(h_json_str_is(a->json, "state", "acknowledged") && h_json_str_is(a->json, "acked_by", "alice"),
             "ack state kept: %s", a->payload);
    const h_msg *st2 = H_EXPECT_PRED(S, mark, T_KNOB "/state", other_boot, BOOT, "state from the new boot",
                                     h_scaled(8000));
    snprintf(BOOT, sizeof BOOT, "%s", h_json_str(st2->json, "boot"));
    h_sleep_ms(1500);
    const h_msg *all[8];
    size_t n = h_mqtt_collect(S, mark, T_KNOB "/event/alarm.cleared", NULL, NULL, all, 8);
    H_ASSERT(n == 0, "still active after the restart (got %zu alarm.cleared)", n);
    n = h_mqtt_collect(S, mark, T_KNOB "/event/alarm.raised", NULL, NULL, all, 8);
    H_ASSERT(n == 0, "not raised a second time (got %zu alarm.raised)", n);
}

static void clear_after_off_delay(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    int64_t t0 = h_now_ms();
    set_knob("{\"temperature\":27}");
    const h_msg *e = H_EXPECT_PRED(S, mark, T_KNOB "/event/alarm.cleared", code_is, "temp_high",
                                   "alarm.cleared temp_high", h_scaled(3000));
    int64_t took = e->t_ms - t0;
    H_ASSERT(took >= 495, "cleared after the off-delay of 500 ms (took %lld ms)", (long long)took);
    H_ASSERT(h_json_str_is(json_object_get(e->json, "data"), "raised_at", RAISED_AT), "%s", e->payload);
    const h_msg *x = H_EXPECT_PRED(S, mark, T_KNOB "/alarm/temp_high", empty_payload, NULL,
                                   "empty retained payload", h_scaled(3000));
    H_ASSERT(x->retain, "the clear is retained");
    H_ASSERT(e->index < x->index, "alarm.cleared before the empty payload");
}

static void leak_and_flapping(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    set_knob("{\"leak\":true}");
    const h_msg *a = H_EXPECT(S, mark, T_KNOB "/alarm/water_leak",
                              "{\"code\":\"water_leak\",\"severity\":\"critical\",\"state\":\"raised\","
                              "\"message\":\"Water on the floor\",\"data\":{\"point\":\"leak\",\"value\":true}}",
                              h_scaled(3000));
    H_ASSERT(a->retain, "retained");
    set_knob("{\"leak\":false}");
    H_EXPECT_PRED(S, mark, T_KNOB "/event/alarm.cleared", code_is, "water_leak", "alarm.cleared water_leak",
                  h_scaled(3000));
    H_EXPECT_PRED(S, mark, T_KNOB "/alarm/water_leak", empty_payload, NULL, "empty retained payload",
                  h_scaled(3000));
    /* flapping within min_interval_s (60 s): counted, not raised */
    size_t mark2 = h_mqtt_mark(S);
    for (int i = 0; i < 3; i++) {
        set_knob("{\"leak\":true}");
        h_sleep_ms(250);
        set_knob("{\"leak\":false}");
        h_sleep_ms(250);
    }
    h_sleep_ms(500);
    const h_msg *all[8];
    size_t n = h_mqtt_collect(S, mark2, T_KNOB "/alarm/water_leak", nonempty, NULL, all, 8);
    H_ASSERT(n == 0, "no raise within min_interval_s, got %zu", n);
    n = h_mqtt_collect(S, mark2, T_KNOB "/event/alarm.raised", code_is, "water_leak", all, 8);
    H_ASSERT(n == 0, "no alarm.raised within min_interval_s, got %zu", n);
    char line[512];
    H_ASSERT(h_proc_wait_log(G, "rule water_leak on env/knob1: raise suppressed by min_interval_s 60 (3 suppressed",
                             h_scaled(2000), line, sizeof line),
             "three suppressed raises counted");
    H_ASSERT(h_proc_alive(G), "ccgw alive");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(raise_once_after_on_delay),
        cmocka_unit_test(hover_inside_deadband),
        cmocka_unit_test(ack_is_audited),
        cmocka_unit_test(ack_errors),
        cmocka_unit_test(restart_republishes),
        cmocka_unit_test(clear_after_off_delay),
        cmocka_unit_test(leak_and_flapping),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    return h_finish(failed);
}
