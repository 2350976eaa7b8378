/*
 * e2e_modbus: mosquitto + modbus-sim (hvac unit 1, sensor unit 2 on one port)
 * + ccgw with one modbus instance and two devices, room1-ac1 (hvac) and
 * room1-th1 (env). Checks what a downstream app relies on (docs/topics.md):
 * retained gateway status, retained device state with the envelope, telemetry
 * with SenML units and plausible values, +1 seq per device, the retained
 * instance topic, and a late subscriber getting the retained state.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static h_world W;
static char g_boot[17];

static int group_setup(void **state)
{
    h_gw_opts o = {.poll_ms = 500};
    return h_world_start(&W, "e2e_modbus", 1, &o);
}

static int group_teardown(void **state)
{
    h_world_stop(&W);
    return 0;
}

/* ---- gateway status ------------------------------------------------------ */

static void gateway_status_online(void **state)
{
    const h_msg *m = H_EXPECT(W.sub, 0, T_STATUS, "{\"online\":true}", h_left_ms(W.t_gw_start, 5000));
    H_ASSERT(m->retain, "gateway status must be published retained: %s", m->payload);
    H_ASSERT(h_ts_valid(h_json_str(m->json, "ts"), 120), "ts: %s", m->payload);
    H_ASSERT(h_json_str_is(m->json, "site", "hq"), "site: %s", m->payload);
    H_ASSERT(h_json_str_is(m->json, "gateway", "gw1"), "gateway: %s", m->payload);
    const char *boot = h_json_str(m->json, "boot");
    H_ASSERT(h_boot_valid(boot), "boot must be 16 hex digits: %s", m->payload);
    snprintf(g_boot, sizeof g_boot, "%s", boot);
    H_ASSERT(h_proc_alive(W.gw), "ccgw exited");
}

/* ---- device state ---------------------------------------------------------- */

static void check_state(const h_msg *m, const char *cls, const char *device)
{
    char why[512];
    H_ASSERT(m->retain, "state must be retained: %s %s", m->topic, m->payload);
    H_ASSERT(h_envelope_ok(m->json, "hq", cls, device, "equipment-room", g_boot[0] ? g_boot : NULL, why,
                           sizeof why),
             "%s: %s: %s", m->topic, why, m->payload);
    H_ASSERT(json_is_true(json_object_get(m->json, "online")), "%s", m->payload);
}

static void state_both_devices_online(void **state)
{
    const h_msg *ac =
        H_EXPECT(W.sub, 0, T_AC "/state", "{\"online\":true}", h_left_ms(W.t_gw_start, 5000));
    check_state(ac, "hvac", "room1-ac1");
    /* the class's state attributes, at the top level (simulator defaults) */
    H_ASSERT(h_json_str_is(ac->json, "mode", "cool"), "mode must be \"cool\" (enum of register 2 = 1): %s",
             ac->payload);
    H_ASSERT(json_is_true(json_object_get(ac->json, "running")), "running: %s", ac->payload);
    H_ASSERT(json_is_false(json_object_get(ac->json, "fault")), "fault: %s", ac->payload);
    H_ASSERT(json_is_false(json_object_get(ac->json, "filter_alarm")), "filter_alarm: %s", ac->payload);
    /* state attributes carry no units and no telemetry values */
    H_ASSERT(json_object_get(ac->json, "supply_air.temperature") == NULL,
             "telemetry point in state: %s", ac->payload);
    H_ASSERT(json_object_get(ac->json, "status.running") == NULL, "publish: none point in state: %s",
             ac->payload);

    const h_msg *th =
        H_EXPECT(W.sub, 0, T_TH "/state", "{\"online\":true}", h_left_ms(W.t_gw_start, 5000));
    check_state(th, "env", "room1-th1");

    /* state seq: +1 per state message of a device (no coalescing here) */
    const h_msg *all[64];
    size_t n = h_mqtt_collect(W.sub, 0, T_AC "/state", NULL, NULL, all, 64);
    for (size_t i = 1; i < n && i < 64; i++) {
        json_int_t a = json_integer_value(json_object_get(all[i - 1]->json, "seq"));
        json_int_t b = json_integer_value(json_object_get(all[i]->json, "seq"));
        H_ASSERT(b == a + 1, "state seq %lld then %lld: %s / %s", (long long)a, (long long)b,
                 all[i - 1]->payload, all[i]->payload);
    }
}

/* ---- telemetry -------------------------------------------------------------- */

static bool has_value(const h_msg *m, const void *ud)
{
    return m->json && json_object_get(json_object_get(m->json, "values"), (const char *)ud) != NULL;
}

static double value_of(const h_msg *m, const char *name)
{
    json_t *v = h_json_get(m->json, "values", name, NULL);
    H_ASSERT(json_is_number(v), "values.%s must be a number: %s", name, m->payload);
    return json_number_value(v);
}

static void unit_is(const h_msg *m, const char *name, const char *unit)
{
    const char *u = json_string_value(h_json_get(m->json, "units", name, NULL));
    H_ASSERT(u && strcmp(u, unit) == 0, "units.%s must be \"%s\": %s", name, unit, m->payload);
}

static void telemetry_values(void **state)
{
    char why[512];
    const h_msg *ac = H_EXPECT_PRED(W.sub, 0, T_AC "/telemetry", has_value, "supply_air.temperature",
                                    "values has supply_air.temperature", h_left_ms(W.t_gw_start, 5000));
    H_ASSERT(!ac->retain, "telemetry must not be retained: %s", ac->payload);
    H_ASSERT(h_envelope_ok(ac->json, "hq", "hvac", "room1-ac1", "equipment-room", g_boot[0] ? g_boot : NULL,
                           why, sizeof why),
             "%s: %s", why, ac->payload);
    double supply = value_of(ac, "supply_air.temperature");
    double ret = value_of(ac, "return_air.temperature");
    double hum = value_of(ac, "humidity");
    double power = value_of(ac, "power");
    double run_time = value_of(ac, "run_time");
    double sp = value_of(ac, "setpoint.cooling");
    H_ASSERT(supply >= 5 && supply <= 40, "supply_air.temperature %g: %s", supply, ac->payload);
    H_ASSERT(ret >= 5 && ret <= 40, "return_air.temperature %g: %s", ret, ac->payload);
    H_ASSERT(hum >= 0 && hum <= 100, "humidity %g: %s", hum, ac->payload);
    H_ASSERT(power >= 0 && power <= 5000, "power %g (float32 ABCD): %s", power, ac->payload);
    /* the simulator's hour meter starts at 400 days: a wrong word order of
     * the uint32 gives a wildly different number */
    H_ASSERT(run_time >= 400.0 * 86400 && run_time < 401.0 * 86400, "run_time %g (uint32 big word order): %s",
             run_time, ac->payload);
    H_ASSERT(fabs(sp - 24.0) < 1e-9, "setpoint.cooling %g, the simulator starts at 24.0: %s", sp, ac->payload);
    unit_is(ac, "supply_air.temperature", "Cel");
    unit_is(ac, "return_air.temperature", "Cel");
    unit_is(ac, "humidity", "%RH");
    unit_is(ac, "power", "W");
    unit_is(ac, "run_time", "s");
    /* state-only and publish: none points stay out of telemetry */
    json_t *vals = json_object_get(ac->json, "values");
    H_ASSERT(json_object_get(vals, "mode") == NULL && json_object_get(vals, "running") == NULL &&
                 json_object_get(vals, "status.running") == NULL && json_object_get(vals, "run") == NULL &&
                 json_object_get(vals, "test.force_fault") == NULL,
             "state/none points in telemetry: %s", ac->payload);

    const h_msg *th = H_EXPECT_PRED(W.sub, 0, T_TH "/telemetry", has_value, "temperature",
                                    "values has temperature", h_left_ms(W.t_gw_start, 5000));
    H_ASSERT(h_envelope_ok(th->json, "hq", "env", "room1-th1", "equipment-room", g_boot[0] ? g_boot : NULL,
                           why, sizeof why),
             "%s: %s", why, th->payload);
    double t = value_of(th, "temperature");
    double tf = value_of(th, "temperature.float");
    double h = value_of(th, "humidity");
    H_ASSERT(t >= 5 && t <= 40, "temperature %g: %s", t, th->payload);
    H_ASSERT(h > 0 && h <= 100, "humidity %g: %s", h, th->payload);
    /* register 2..3 is register 0 as a float32, low word first: equal up to float rounding */
    H_ASSERT(fabs(tf - t) < 0.001, "temperature.float %g (float32 little word order) vs temperature %g: %s",
             tf, t, th->payload);
    unit_is(th, "temperature", "Cel");
    unit_is(th, "temperature.float", "Cel");
    unit_is(th, "humidity", "%RH");
    json_t *leak = h_json_get(th->json, "values", "water_leak", NULL);
    json_t *smoke = h_json_get(th->json, "values", "smoke", NULL);
    H_ASSERT(json_is_false(leak) && json_is_false(smoke), "water_leak/smoke must be false booleans: %s",
             th->payload);
    H_ASSERT(json_object_get(json_object_get(th->json, "units"), "water_leak") == NULL,
             "a boolean has no unit: %s", th->payload);
}

static void telemetry_seq_plus_one(void **state)
{
    static const char *const topics[] = {T_AC "/telemetry", T_TH "/telemetry"};
    for (size_t t = 0; t < 2; t++) {
        size_t from = h_mqtt_mark(W.sub);
        const h_msg *prev = NULL;
        for (int i = 0; i < 4; i++) {
            /* poll 500 ms: each next message well within 2 s */
            const h_msg *m = H_EXPECT(W.sub, prev ? prev->index + 1 : from, topics[t], "{}", h_scaled(2000));
            json_t *seq = json_object_get(m->json, "seq");
            H_ASSERT(json_is_integer(seq) && json_integer_value(seq) >= 1, "seq: %s", m->payload);
            if (prev) {
                json_int_t a = json_integer_value(json_object_get(prev->json, "seq"));
                H_ASSERT(json_integer_value(seq) == a + 1, "%s: seq %lld after %lld (must be +1): %s",
                         topics[t], (long long)json_integer_value(seq), (long long)a, m->payload);
                H_ASSERT(h_json_str_is(m->json, "boot", h_json_str(prev->json, "boot")),
                         "boot changed within a run: %s / %s", prev->payload, m->payload);
                H_ASSERT(m->t_ms - prev->t_ms >= 200 && m->t_ms - prev->t_ms <= h_scaled(1500),
                         "telemetry %lld ms apart with poll_interval_ms 500", (long long)(m->t_ms - prev->t_ms));
            }
            prev = m;
        }
    }
}

/* ---- instance --------------------------------------------------------------- */

static void instance_running(void **state)
{
    const h_msg *m = H_EXPECT(W.sub, 0, T_INSTANCE,
                              "{\"state\":\"running\",\"health\":\"ok\",\"plugin\":\"modbus\","
                              "\"instance\":\"equipment-room\",\"site\":\"hq\",\"gateway\":\"gw1\"}",
                              h_left_ms(W.t_gw_start, 5000));
    H_ASSERT(m->retain, "instance topic must be retained: %s", m->payload);
    H_ASSERT(h_ts_valid(h_json_str(m->json, "ts"), 120), "ts: %s", m->payload);
    if (g_boot[0])
        H_ASSERT(h_json_str_is(m->json, "boot", g_boot),
                 "instance boot differs from gateway status boot %s: %s", g_boot, m->payload);
    double devices = 0;
    H_ASSERT(h_json_num(m->json, "devices", &devices) && devices == 2, "devices must be 2: %s", m->payload);
}

/* ---- a late subscriber gets the retained topics ------------------------------ */

static void late_subscriber_gets_retained(void **state)
{
    /* data has flowed: at least one telemetry message of each device */
    H_EXPECT(W.sub, 0, T_TH "/telemetry", "{}", h_scaled(3000));
    h_mqtt *late = h_mqtt_new(W.broker->port, "late");
    H_ASSERT(late != NULL, "connect");
    size_t from = h_mqtt_mark(late);
    H_ASSERT(h_mqtt_sub(late, H_PREFIX "/hq/#", 1) == 0, "subscribe");
    const h_msg *st = H_EXPECT(late, from, T_STATUS, "{\"online\":true}", h_scaled(2000));
    H_ASSERT(st->retain, "status: %s", st->payload);
    const h_msg *ac = H_EXPECT(late, from, T_AC "/state", "{\"online\":true,\"mode\":\"cool\",\"running\":true}",
                               h_scaled(2000));
    check_state(ac, "hvac", "room1-ac1");
    const h_msg *th = H_EXPECT(late, from, T_TH "/state", "{\"online\":true}", h_scaled(2000));
    check_state(th, "env", "room1-th1");
    const h_msg *in = H_EXPECT(late, from, T_INSTANCE, "{\"state\":\"running\"}", h_scaled(2000));
    H_ASSERT(in->retain, "instance: %s", in->payload);
    /* the retained state is the latest the early subscriber saw */
    const h_msg *last[64];
    size_t n = h_mqtt_collect(W.sub, 0, T_AC "/state", NULL, NULL, last, 64);
    H_ASSERT(n >= 1 && n <= 64, "state messages: %zu", n);
    H_ASSERT(json_equal(json_object_get(last[n - 1]->json, "seq"), json_object_get(ac->json, "seq")),
             "retained state seq differs from the latest live one: %s vs %s", ac->payload, last[n - 1]->payload);
    h_mqtt_free(late);
    H_ASSERT(h_proc_alive(W.gw), "ccgw exited");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gateway_status_online),
        cmocka_unit_test(state_both_devices_online),
        cmocka_unit_test(telemetry_values),
        cmocka_unit_test(telemetry_seq_plus_one),
        cmocka_unit_test(instance_running),
        cmocka_unit_test(late_subscriber_gets_retained),
    };
    int failed = cmocka_run_group_tests_name("integration.e2e_modbus", tests, group_setup, group_teardown);
    return h_finish(failed);
}
