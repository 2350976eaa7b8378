/*
 * modbus_rtu: Modbus RTU through a real serial line - a socat pty pair, the
 * simulator on one end (both units on the one bus), ccgw on the other.
 * Both devices share one link (the bus is half-duplex): both come online,
 * publish telemetry (word orders decoded right), a write travels over the
 * bus and reads back, and an alarm raised through the simulator's test
 * register reaches MQTT. Then the simulator goes away: both devices go
 * offline; it comes back: both online again.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static h_env *E;
static h_broker *B;
static h_mqtt *S;
static h_proc *SOCAT, *SIM, *G;
static char PTY_SIM[1024], PTY_GW[1024];
static int64_t T0;

#define T_RAC H_PREFIX "/hq/hvac/rtu-ac1"
#define T_RTH H_PREFIX "/hq/env/rtu-th1"

static h_proc *start_sim(void)
{
    const char *argv[] = {MODBUS_SIM_BIN, "--rtu", PTY_SIM, "--baud", "38400", "--parity", "N",
                          "--period-ms", "200", NULL};
    h_proc *p = h_spawn(E, "sim", argv);
    char line[256];
    if (p && !h_proc_wait_log(p, "LISTENING rtu", h_scaled(5000), line, sizeof line))
        return NULL;
    return p;
}

static int setup(void **state)
{
    E = h_env_new("modbus_rtu");
    if (!E)
        return -1;
    h_env_path(E, "ttyS-sim", PTY_SIM, sizeof PTY_SIM);
    h_env_path(E, "ttyS-gw", PTY_GW, sizeof PTY_GW);
    char a[1100], b[1100];
    snprintf(a, sizeof a, "pty,raw,echo=0,link=%s", PTY_SIM);
    snprintf(b, sizeof b, "pty,raw,echo=0,link=%s", PTY_GW);
    const char *socat[] = {"/usr/bin/socat", "-d", "-d", a, b, NULL};
    SOCAT = h_spawn(E, "socat", socat);
    for (int i = 0; i < 100 && (access(PTY_SIM, F_OK) != 0 || access(PTY_GW, F_OK) != 0); i++)
        h_sleep_ms(50);
    if (access(PTY_GW, F_OK) != 0)
        return -1;
    SIM = start_sim();
    if (!SIM || h_broker_and_watcher(E, &B, &S) != 0)
        return -1;
    char yaml[16384], path[4096];
    snprintf(yaml, sizeof yaml,
             "gateway: {site: hq, id: gw1, data_dir: data, plugin_dirs: [\"%s\"]}\n"
             "mqtt: {port: %d}\n"
             "instances:\n"
             "  - id: rtu-bus\n"
             "    plugin: modbus\n"
             "    options:\n"
             "      devices:\n"
             "        - id: rtu-ac1\n"
             "          class: hvac\n"
             "          transport: rtu\n"
             "          serial: \"%s\"\n"
             "          baud: 38400\n"
             "          parity: none\n"
             "          unit_id: 1\n"
             "          poll_interval_ms: 300\n"
             "          timeout_ms: 200\n"
             "          retries: 0\n"
             "          points:\n"
             "            - {name: supply_air.temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}\n"
             "            - {name: power, table: input, address: 3, type: float32, word_order: big, unit: W}\n"
             "            - {name: setpoint.cooling, table: holding, address: 0, type: int16, scale: 0.1, unit: Cel, writable: true, min: 16, max: 32}\n"
             "            - {name: mode, table: holding, address: 2, type: uint16, enum: [off, cool, heat, dry, fan], publish: state}\n"
             "        - id: rtu-th1\n"
             "          class: env\n"
             "          transport: rtu\n"
             "          serial: \"%s\"\n"
             "          baud: 38400\n"
             "          parity: none\n"
             "          unit_id: 2\n"
             "          poll_interval_ms: 300\n"
             "          timeout_ms: 200\n"
             "          retries: 0\n"
             "          points:\n"
             "            - {name: temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}\n"
             "            - {name: temperature.float, table: input, address: 2, type: float32, word_order: little, unit: Cel}\n"
             "            - {name: water_leak, table: discrete, address: 0, type: bool, alarm: {code: water_leak, severity: critical}}\n"
             "            - {name: test.force_water_leak, table: holding, address: 10, type: bool, publish: none, writable: true}\n",
             CCGW_PLUGIN_DIR, B->port, PTY_GW, PTY_GW);
    G = h_gw_start_yaml(E, yaml, path, sizeof path, &T0);
    return G ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    h_proc *const peers[] = {SIM, SOCAT};
    h_rig_teardown(E, B, S, G, peers, 2);
    return 0;
}

static void both_units_on_one_bus(void **state)
{
    const h_msg *ac = H_EXPECT(S, 0, T_RAC "/state", "{\"online\":true,\"mode\":\"cool\"}", h_left_ms(T0, 8000));
    H_ASSERT(ac->retain, "retained");
    H_EXPECT(S, 0, T_RTH "/state", "{\"online\":true}", h_left_ms(T0, 8000));
    const h_msg *t = H_EXPECT(S, 0, T_RTH "/telemetry", "{}", h_left_ms(T0, 8000));
    double a, b;
    json_t *v = json_object_get(t->json, "values");
    H_ASSERT(h_json_num(v, "temperature", &a) && h_json_num(v, "temperature.float", &b), "%s", t->payload);
    H_ASSERT(a > 10 && a < 40 && b > a - 0.06 && b < a + 0.06, "little word order decoded: %s", t->payload);
    t = H_EXPECT(S, 0, T_RAC "/telemetry", "{}", h_left_ms(T0, 8000));
    H_ASSERT(h_json_num(json_object_get(t->json, "values"), "power", &a) && a > 0 && a < 10000,
             "big word order float32 decoded: %s", t->payload);
}

static void write_over_the_bus(void **state)
{
    size_t mark = h_mqtt_mark(S);
    const char *cmd = "{\"point\":\"setpoint.cooling\",\"value\":22.5}";
    H_ASSERT(h_mqtt_pub(S, T_RAC "/cmd/write", cmd, (int)strlen(cmd), 1, false, NULL, NULL, 0) == 0, "publish");
    const h_msg *r = H_EXPECT(S, mark, T_RAC "/cmd/write/reply", "{\"ok\":true}", h_scaled(5000));
    double raw;
    H_ASSERT(h_json_num(json_object_get(r->json, "data"), "raw", &raw) && raw == 225, "raw 225: %s", r->payload);
    /* the water-leak hook on unit 2, through the same bus */
    mark = h_mqtt_mark(S);
    const char *leak = "{\"point\":\"test.force_water_leak\",\"value\":true}";
    H_ASSERT(h_mqtt_pub(S, T_RTH "/cmd/write", leak, (int)strlen(leak), 1, false, NULL, NULL, 0) == 0, "publish");
    H_EXPECT(S, mark, T_RTH "/cmd/write/reply", "{\"ok\":true}", h_scaled(5000));
    const h_msg *al = H_EXPECT(S, mark, T_RTH "/alarm/water_leak", "{\"state\":\"raised\",\"severity\":\"critical\"}",
                               h_scaled(5000));
    H_ASSERT(al->retain, "alarm retained");
}

static void bus_silent_then_back(void **state)
{
    size_t mark = h_mqtt_mark(S);
    int64_t t = h_now_ms();
    h_proc_stop(SIM, 3000);
    SIM = NULL;
    H_EXPECT(S, mark, T_RAC "/state", "{\"online\":false}", h_scaled(4000));
    H_EXPECT(S, mark, T_RTH "/state", "{\"online\":false}", h_scaled(4000));
    h_log("both RTU devices offline %lld ms after the bus went silent", (long long)(h_now_ms() - t));
    mark = h_mqtt_mark(S);
    SIM = start_sim();
    H_ASSERT(SIM, "simulator restarted");
    H_EXPECT(S, mark, T_RAC "/state", "{\"online\":true}", h_scaled(6000));
    H_EXPECT(S, mark, T_RTH "/state", "{\"online\":true}", h_scaled(6000));
    H_ASSERT(h_proc_alive(G), "ccgw alive");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(both_units_on_one_bus),
        cmocka_unit_test(write_over_the_bus),
        cmocka_unit_test(bus_silent_then_back),
    };
    int failed = cmocka_run_group_tests_name("integration.modbus_rtu", tests, setup, teardown);
    return h_finish(failed);
}
