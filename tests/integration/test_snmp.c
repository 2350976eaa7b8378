/*
 * snmp: the snmp plugin against a real snmpd (net-snmp 5.9) started by the
 * test on an ephemeral UDP port from a private config in its temp dir:
 * `pass` scripts answer the UPS-MIB (1.3.6.1.2.1.33) and a private subtree
 * (1.3.6.1.4.1.99999) from a values file the test rewrites; a v3 user is made
 * with `createUser` in the config (SNMP_PERSISTENT_DIR in the temp dir).
 *
 *  - v2c UPS (poll 5 s): online with status on_line and UPS-MIB telemetry;
 *  - upsTrapOnBattery sent with snmptrap: power.lost and alarm on_battery
 *    within 1 s (faster than the poll), then low battery through an
 *    upsTrapAlarmEntryAdded (upsAlarmLowBattery), then back on line by the
 *    poll: power.restored, both alarms cleared, exactly once each, in order;
 *  - v3 authPriv (SHA/AES) poll: online with telemetry; a wrong v3 password:
 *    online:false with an auth failure reason;
 *  - an hvac target with a private OID map: scaled telemetry with units, a
 *    threshold alarm raised and cleared, a mapped private trap -> event and
 *    alarm at once;
 *  - a v3 authPriv inform (acknowledged) -> event; a wrong pass phrase: none;
 *  - a second gateway with v2c only (no v3 target, no trap user) does not
 *    initialise SNMPv3 (init_snmp(), which initialises OpenSSL): it polls,
 *    acknowledges a v2c inform, drops a v3 one and keeps running; a reload
 *    that adds an instance with a v3 target initialises it then, while the
 *    first instance's v2c session stays open and keeps polling;
 *  - snmpd killed: online:false with a timeout reason; back: online again.
 * snmpd forks the pass script once per OID, so on a loaded machine an answer
 * may take a few hundred ms: the targets wait 1 s and retry once.
 * Skipped (77) when snmpd or snmptrap is missing.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SNMPD_BIN "/usr/sbin/snmpd"
#define SNMPTRAP_BIN "/usr/bin/snmptrap"
#define SNMPINFORM_BIN "/usr/bin/snmpinform"

static h_env *E;
static h_broker *B;
static h_mqtt *S;
static h_proc *SNMPD, *G;
static int SNMP_PORT, TRAP_PORT;
static char VALUES[PATH_MAX], VALUES_TMP[PATH_MAX];
static int64_t T0;
static size_t MARK_LOST;

#define T_UPS H_PREFIX "/hq/ups/room1-ups"
#define T_V3 H_PREFIX "/hq/ups/room1-ups-v3"
#define T_BADV3 H_PREFIX "/hq/ups/room1-ups-badauth"
#define T_HVAC H_PREFIX "/hq/hvac/room1-ac"

/* UPS-MIB values: battery status, seconds on battery, minutes left, charge,
 * output source, alarms present; plus the air conditioner's temperature. */
static int write_values(int batt, int secs, int mins, int charge, int source, int alarms, int temp10)
{
    char buf[2048];
    snprintf(buf, sizeof buf,
             ".1.3.6.1.2.1.33.1.2.1.0 integer %d\n"
             ".1.3.6.1.2.1.33.1.2.2.0 integer %d\n"
             ".1.3.6.1.2.1.33.1.2.3.0 integer %d\n"
             ".1.3.6.1.2.1.33.1.2.4.0 integer %d\n"
             ".1.3.6.1.2.1.33.1.2.5.0 integer 271\n"
             ".1.3.6.1.2.1.33.1.3.3.1.2.1 integer 500\n"
             ".1.3.6.1.2.1.33.1.3.3.1.3.1 integer %d\n"
             ".1.3.6.1.2.1.33.1.4.1.0 integer %d\n"
             ".1.3.6.1.2.1.33.1.4.4.1.2.1 integer 230\n"
             ".1.3.6.1.2.1.33.1.4.4.1.5.1 integer 25\n"
             ".1.3.6.1.2.1.33.1.6.1.0 integer %d\n"
             ".1.3.6.1.4.1.99999.1.1.0 integer %d\n"
             ".1.3.6.1.4.1.99999.1.2.0 integer 1\n",
             batt, secs, mins, charge, source == 5 ? 0 : 230, source, alarms, temp10);
    /* atomic: the pass script never reads half a file */
    if (h_write_file(VALUES_TMP, buf) != 0)
        return -1;
    return rename(VALUES_TMP, VALUES);
}

static int write_exec(const char *file, const char *text)
{
    char p[PATH_MAX];
    h_env_path(E, file, p, sizeof p);
    return h_write_file(p, text) == 0 && chmod(p, 0755) == 0 ? 0 : -1;
}

static h_proc *start_snmpd(void)
{
    char conf[PATH_MAX];
    h_env_path(E, "snmpd.conf", conf, sizeof conf);
    const char *argv[] = {SNMPD_BIN, "-f", "-Lo", "-C", "-c", conf, "-M", "/dev/null", "-m", "", NULL};
    h_proc *p = h_spawn(E, "snmpd", argv);
    char line[256];
    return p && h_proc_wait_log(p, "NET-SNMP version", h_scaled(5000), line, sizeof line) ? p : NULL;
}

static int setup(void **state)
{
    (void)state;
    E = h_env_new("snmp");
    h_current_env = E;
    char persist[PATH_MAX], script[PATH_MAX], conf[12288], path[PATH_MAX];
    h_env_path(E, "persist", persist, sizeof persist);
    h_env_path(E, "values", VALUES, sizeof VALUES);
    h_env_path(E, "values.tmp", VALUES_TMP, sizeof VALUES_TMP);
    h_env_path(E, "pass.sh", script, sizeof script);
    setenv("SNMP_PERSISTENT_DIR", persist, 1);
    setenv("CCGW_IT_SNMP_AUTH", "authpass123", 1);
    setenv("CCGW_IT_SNMP_PRIV", "privpass123", 1);
    setenv("CCGW_IT_SNMP_BAD", "wrongpass123", 1);
    SNMP_PORT = h_free_port();
    TRAP_PORT = h_free_port();
    while (TRAP_PORT == SNMP_PORT)
        TRAP_PORT = h_free_port();

    /* pass script: -g OID prints OID, type, value from the values file; -n
     * the next one (the file is in OID order) */
    char sh[6144];
    snprintf(sh, sizeof sh,
             "#!/bin/sh\n"
             "V='%s'\n"
             "if [ \"$1\" = -g ]; then\n"
             "  while read -r o t v; do [ \"$o\" = \"$2\" ] && { echo \"$o\"; echo \"$t\"; echo \"$v\"; exit 0; }; done < \"$V\"\n"
             "elif [ \"$1\" = -n ]; then\n"
             "  f=0\n"
             "  while read -r o t v; do\n"
             "    case \"$o\" in \"$2\".*) f=1 ;; esac\n"
             "    if [ $f = 1 ] && [ \"$o\" != \"$2\" ]; then echo \"$o\"; echo \"$t\"; echo \"$v\"; exit 0; fi\n"
             "    [ \"$o\" = \"$2\" ] && f=1\n"
             "  done < \"$V\"\n"
             "fi\n"
             "exit 0\n",
             VALUES);
    if (write_exec("pass.sh", sh) != 0 || write_values(2, 0, 30, 100, 3, 0, 235) != 0)
        return -1;
    snprintf(conf, sizeof conf,
             "agentAddress udp:127.0.0.1:%d\n"
             "rocommunity public 127.0.0.1\n"
             "createUser ccgw SHA \"authpass123\" AES \"privpass123\"\n"
             "rouser ccgw authpriv\n"
             /* a second user for the wrong-password target: net-snmp keeps
              * one key set per (engine, user) per process (docs/plugins/snmp.md) */
             "createUser ccgwbad SHA \"authpass456\" AES \"privpass456\"\n"
             "rouser ccgwbad authpriv\n"
             "pass .1.3.6.1.2.1.33 %s\n"
             "pass .1.3.6.1.4.1.99999 %s\n",
             SNMP_PORT, script, script);
    h_env_path(E, "snmpd.conf", path, sizeof path);
    if (h_write_file(path, conf) != 0)
        return -1;
    SNMPD = start_snmpd();
    if (!SNMPD || h_broker_and_watcher(E, &B, &S) != 0)
        return -1;

    char yaml[8192];
    snprintf(yaml, sizeof yaml,
             "gateway: {site: hq, id: gw1, data_dir: data, plugin_dirs: [\"%s\"]}\n"
             "mqtt: {port: %d}\n"
             "instances:\n"
             "  - id: power\n"
             "    plugin: snmp\n"
             "    options:\n"
             "      trap_port: %d\n"
             "      trap_address: 127.0.0.1\n"
             "      trap_users:\n"
             "        - {user: trapper, auth_password: !env CCGW_IT_SNMP_AUTH, priv_password: !env CCGW_IT_SNMP_PRIV}\n"
             "      traps:\n"
             "        - {oid: 1.3.6.1.4.1.99999.0.1, device: room1-ac, event: hvac.fault, alarm: fault,\n"
             "           severity: critical, message: compressor fault}\n"
             "        - {oid: 1.3.6.1.4.1.99999.0.2, device: room1-ac, alarm: fault, clear: true}\n"
             "      targets:\n"
             "        - {id: room1-ups, class: ups, host: 127.0.0.1, port: %d, community: public,\n"
             "           poll_interval_ms: 5000, timeout_ms: 1000, retries: 1}\n"
             "        - id: room1-ups-v3\n"
             "          host: 127.0.0.1\n"
             "          port: %d\n"
             "          version: \"3\"\n"
             "          user: ccgw\n"
             "          auth_protocol: SHA\n"
             "          auth_password: !env CCGW_IT_SNMP_AUTH\n"
             "          priv_protocol: AES\n"
             "          priv_password: !env CCGW_IT_SNMP_PRIV\n"
             "          poll_interval_ms: 500\n"
             "          timeout_ms: 1000\n"
             "          retries: 1\n"
             "          trap_source: 127.0.0.2\n"
             "        - id: room1-ups-badauth\n"
             "          host: 127.0.0.1\n"
             "          port: %d\n"
             "          version: \"3\"\n"
             "          user: ccgwbad\n"
             "          auth_password: !env CCGW_IT_SNMP_BAD\n"
             "          priv_password: !env CCGW_IT_SNMP_PRIV\n"
             "          poll_interval_ms: 1000\n"
             "          timeout_ms: 1000\n"
             "          retries: 1\n"
             "          trap_source: 127.0.0.3\n"
             "        - id: room1-ac\n"
             "          class: hvac\n"
             "          host: 127.0.0.1\n"
             "          port: %d\n"
             "          poll_interval_ms: 500\n"
             "          timeout_ms: 1000\n"
             "          retries: 1\n"
             "          trap_source: 127.0.0.4\n"
             "          points:\n"
             "            - {oid: 1.3.6.1.4.1.99999.1.1.0, name: supply_air.temperature, scale: 0.1, unit: Cel,\n"
             "               alarm: {code: high_temperature, severity: major, above: 30}}\n"
             "            - {oid: .1.3.6.1.4.1.99999.1.2.0, name: running, type: int, publish: state}\n",
             CCGW_PLUGIN_DIR, B->port, TRAP_PORT, SNMP_PORT, SNMP_PORT, SNMP_PORT, SNMP_PORT);
    G = h_gw_start_yaml(E, yaml, path, sizeof path, &T0);
    return G ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    h_proc *const peers[] = {SNMPD};
    h_rig_teardown(E, B, S, G, peers, 1);
    return 0;
}

static int snmptrap(const char *const extra[])
{
    char dest[64];
    snprintf(dest, sizeof dest, "127.0.0.1:%d", TRAP_PORT);
    const char *argv[24] = {SNMPTRAP_BIN, "-v", "2c", "-c", "public", "-M", "/dev/null", "-m", "",
                            dest, ""};
    size_t n = 11;
    for (size_t i = 0; extra[i] && n < 23; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    int st = h_run(E, "snmptrap", argv, h_scaled(3000), &out, &err);
    if (st != 0)
        h_log("snmptrap: status %d: %s %s", st, out ? out : "", err ? err : "");
    free(out);
    free(err);
    return st;
}

static void v2c_online_with_telemetry(void **state)
{
    (void)state;
    const h_msg *m = H_EXPECT(S, 0, T_UPS "/state", "{\"online\":true}", h_left_ms(T0, 8000));
    char why[256];
    H_ASSERT(m->retain, "state retained");
    H_ASSERT(h_envelope_ok(m->json, "hq", "ups", "room1-ups", "power", NULL, why, sizeof why), "%s", why);
    H_ASSERT(h_json_str_is(m->json, "status", "on_line") && h_json_str_is(m->json, "flags", "OL"),
             "first online state carries the status: %s", m->payload);
    const h_msg *t = H_EXPECT(S, 0, T_UPS "/telemetry", "{}", h_scaled(3000));
    json_t *v = json_object_get(t->json, "values"), *u = json_object_get(t->json, "units");
    double d;
    H_ASSERT(h_json_num(v, "battery.charge", &d) && d == 100, "%s", t->payload);
    H_ASSERT(h_json_num(v, "battery.runtime", &d) && d == 1800, "minutes -> s: %s", t->payload);
    H_ASSERT(h_json_num(v, "battery.voltage", &d) && d > 27.09 && d < 27.11, "0.1 V: %s", t->payload);
    H_ASSERT(h_json_num(v, "input.frequency", &d) && d > 49.9 && d < 50.1, "0.1 Hz: %s", t->payload);
    H_ASSERT(h_json_num(v, "input.voltage", &d) && d == 230, "%s", t->payload);
    H_ASSERT(h_json_num(v, "output.voltage", &d) && h_json_num(v, "ups.load", &d) && d == 25, "%s", t->payload);
    static const char PCT[] = "%";
    bool units_ok = h_json_str_is(u, "battery.charge", PCT) && h_json_str_is(u, "battery.runtime", "s") &&
                    h_json_str_is(u, "battery.voltage", "V") && h_json_str_is(u, "input.frequency", "Hz") &&
                    h_json_str_is(u, "ups.load", PCT);
    H_ASSERT(units_ok, "SenML units: %s", t->payload);
}

static void trap_on_battery_at_once(void **state)
{
    (void)state;
    /* the UPS goes on battery; the poll (5 s) has not seen it yet */
    H_ASSERT(write_values(2, 5, 25, 80, 5, 1, 235) == 0, "values");
    size_t mark = h_mqtt_mark(S);
    int64_t t0 = h_now_ms();
    const char *const args[] = {"1.3.6.1.2.1.33.2.0.1", "1.3.6.1.2.1.33.1.2.2.0", "i", "5", NULL};
    H_ASSERT(snmptrap(args) == 0, "snmptrap sent");
    const h_msg *e = H_EXPECT(S, mark, T_UPS "/event/power.lost", "{\"type\":\"power.lost\"}", h_scaled(1000));
    MARK_LOST = e->index;
    H_ASSERT(e->t_ms - t0 < h_scaled(1000), "trap effect after %lld ms", (long long)(e->t_ms - t0));
    const h_msg *a = H_EXPECT(S, mark, T_UPS "/alarm/on_battery",
                              "{\"code\":\"on_battery\",\"state\":\"raised\",\"severity\":\"major\"}",
                              h_scaled(1000));
    H_ASSERT(a->t_ms - t0 < h_scaled(1000), "alarm after %lld ms", (long long)(a->t_ms - t0));
    H_EXPECT(S, mark, T_UPS "/state", "{\"online\":true,\"status\":\"on_battery\"}", h_scaled(1000));
}

static void trap_low_battery_alarm_entry(void **state)
{
    (void)state;
    H_ASSERT(write_values(3, 60, 2, 15, 5, 2, 235) == 0, "values");
    size_t mark = h_mqtt_mark(S);
    int64_t t0 = h_now_ms();
    const char *const args[] = {"1.3.6.1.2.1.33.2.0.3", "1.3.6.1.2.1.33.1.6.2.1.1.7", "i", "7",
                                "1.3.6.1.2.1.33.1.6.2.1.2.7", "o", "1.3.6.1.2.1.33.1.6.3.3", NULL};
    H_ASSERT(snmptrap(args) == 0, "snmptrap sent");
    const h_msg *a = H_EXPECT(S, mark, T_UPS "/alarm/low_battery",
                              "{\"code\":\"low_battery\",\"state\":\"raised\",\"severity\":\"critical\"}",
                              h_scaled(1000));
    H_ASSERT(a->t_ms - t0 < h_scaled(1000), "alarm after %lld ms", (long long)(a->t_ms - t0));
    H_EXPECT(S, mark, T_UPS "/state", "{\"online\":true,\"status\":\"low_battery\"}", h_scaled(2000));
}

static bool cleared_code(const h_msg *m, const void *ud)
{
    return m->json && h_json_str_is(json_object_get(m->json, "data"), "code", ud);
}

static bool empty_payload(const h_msg *m, const void *ud)
{
    (void)ud;
    return m->len == 0;
}

static void poll_restores_power(void **state)
{
    (void)state;
    H_ASSERT(write_values(2, 0, 10, 40, 3, 0, 235) == 0, "values");
    /* no trap: the next poll (<= 5 s) sees it */
    const h_msg *e = H_EXPECT(S, MARK_LOST, T_UPS "/event/power.restored", "{\"type\":\"power.restored\"}",
                              h_scaled(9000));
    H_EXPECT_PRED(S, MARK_LOST, T_UPS "/event/alarm.cleared", cleared_code, "on_battery", "on_battery cleared",
                  h_scaled(2000));
    H_EXPECT_PRED(S, MARK_LOST, T_UPS "/event/alarm.cleared", cleared_code, "low_battery",
                  "low_battery cleared", h_scaled(2000));
    const h_msg *x = H_EXPECT_PRED(S, MARK_LOST, T_UPS "/alarm/low_battery", empty_payload, NULL,
                                   "empty retained low_battery", h_scaled(2000));
    H_ASSERT(x->retain, "retained");
    H_EXPECT(S, MARK_LOST, T_UPS "/state", "{\"online\":true,\"status\":\"on_line\"}", h_scaled(2000));

    const h_msg *all[128];
    size_t n = h_mqtt_collect(S, MARK_LOST, T_UPS "/#", NULL, NULL, all, 128);
    int step = 0, lost = 0, restored = 0;
    for (size_t i = 0; i < n && i < 128 && all[i]->index <= e->index; i++) {
        const char *t = all[i]->topic;
        if (strstr(t, "/event/power.lost")) {
            lost++;
            H_ASSERT(step == 0, "power.lost first (step %d)", step);
            step = 1;
        } else if (strstr(t, "/alarm/on_battery") && all[i]->len) {
            H_ASSERT(step == 1, "on_battery after power.lost (step %d)", step);
            step = 2;
        } else if (strstr(t, "/alarm/low_battery") && all[i]->len) {
            H_ASSERT(step == 2, "low_battery after on_battery (step %d)", step);
            step = 3;
        } else if (strstr(t, "/event/power.restored")) {
            restored++;
            H_ASSERT(step == 3, "power.restored last (step %d)", step);
            step = 4;
        }
    }
    H_ASSERT(step == 4 && lost == 1 && restored == 1, "step %d lost %d restored %d", step, lost, restored);
}

static bool offline_with(const h_msg *m, const void *ud)
{
    const char *r = m->json ? h_json_str(m->json, "reason") : NULL;
    return m->json && json_is_false(json_object_get(m->json, "online")) && r && strstr(r, ud);
}

static void v3_auth_priv_and_wrong_password(void **state)
{
    (void)state;
    const h_msg *m = H_EXPECT(S, 0, T_V3 "/state", "{\"online\":true}", h_left_ms(T0, 15000));
    H_ASSERT(h_json_str(m->json, "status") != NULL, "%s", m->payload);
    const h_msg *t = H_EXPECT(S, m->index, T_V3 "/telemetry", "{}", h_scaled(3000));
    double d;
    H_ASSERT(h_json_num(json_object_get(t->json, "values"), "battery.voltage", &d), "%s", t->payload);
    H_EXPECT_PRED(S, 0, T_BADV3 "/state", offline_with, "auth", "online:false, auth failure",
                  h_left_ms(T0, 15000));
    /* the passwords never show in the gateway's log */
    char *log = h_read_file(h_proc_log(G));
    H_ASSERT(log && !strstr(log, "authpass123") && !strstr(log, "privpass123") && !strstr(log, "wrongpass123"),
             "secret in log");
    free(log);
}

static void hvac_points_and_private_traps(void **state)
{
    (void)state;
    const h_msg *t = H_EXPECT(S, 0, T_HVAC "/telemetry", "{}", h_left_ms(T0, 15000));
    double d;
    json_t *v = json_object_get(t->json, "values");
    H_ASSERT(h_json_num(v, "supply_air.temperature", &d) && d > 23.4 && d < 23.6, "scaled: %s", t->payload);
    H_ASSERT(h_json_str_is(json_object_get(t->json, "units"), "supply_air.temperature", "Cel"), "%s", t->payload);
    H_EXPECT(S, 0, T_HVAC "/state", "{\"online\":true,\"running\":1}", h_scaled(2000));

    /* threshold alarm */
    size_t mark = h_mqtt_mark(S);
    H_ASSERT(write_values(2, 0, 10, 40, 3, 0, 325) == 0, "values");
    H_EXPECT(S, mark, T_HVAC "/alarm/high_temperature",
             "{\"code\":\"high_temperature\",\"state\":\"raised\",\"severity\":\"major\"}", h_scaled(3000));
    mark = h_mqtt_mark(S);
    H_ASSERT(write_values(2, 0, 10, 40, 3, 0, 240) == 0, "values");
    H_EXPECT_PRED(S, mark, T_HVAC "/event/alarm.cleared", cleared_code, "high_temperature",
                  "high_temperature cleared", h_scaled(3000));

    /* a mapped private trap: event and alarm at once */
    mark = h_mqtt_mark(S);
    int64_t t0 = h_now_ms();
    const char *const fault[] = {"1.3.6.1.4.1.99999.0.1", "1.3.6.1.4.1.99999.2.1.0", "s", "compressor 1", NULL};
    H_ASSERT(snmptrap(fault) == 0, "snmptrap sent");
    const h_msg *e = H_EXPECT(S, mark, T_HVAC "/event/hvac.fault", "{\"type\":\"hvac.fault\"}", h_scaled(1000));
    H_ASSERT(e->t_ms - t0 < h_scaled(1000), "event after %lld ms", (long long)(e->t_ms - t0));
    H_ASSERT(h_json_str_is(h_json_get(e->json, "data", "varbinds", NULL), "1.3.6.1.4.1.99999.2.1.0",
                           "compressor 1"), "%s", e->payload);
    H_EXPECT(S, mark, T_HVAC "/alarm/fault", "{\"code\":\"fault\",\"state\":\"raised\",\"severity\":\"critical\"}",
             h_scaled(1000));
    mark = h_mqtt_mark(S);
    const char *const ok[] = {"1.3.6.1.4.1.99999.0.2", NULL};
    H_ASSERT(snmptrap(ok) == 0, "snmptrap sent");
    H_EXPECT_PRED(S, mark, T_HVAC "/event/alarm.cleared", cleared_code, "fault", "fault cleared", h_scaled(1000));
}

/* a v3 authPriv inform (snmpinform waits for our acknowledgement) */
static void v3_inform(void **state)
{
    (void)state;
    char dest[64];
    snprintf(dest, sizeof dest, "127.0.0.1:%d", TRAP_PORT);
    size_t mark = h_mqtt_mark(S);
    const char *argv[] = {SNMPINFORM_BIN, "-v", "3", "-u", "trapper", "-l", "authPriv", "-a", "SHA",
                          "-A", "authpass123", "-x", "AES", "-X", "privpass123", "-r", "0", "-t", "2",
                          "-M", "/dev/null", "-m", "", dest, "", "1.3.6.1.4.1.99999.0.1", NULL};
    char *out = NULL, *err = NULL;
    int st = h_run(E, "snmpinform", argv, h_scaled(5000), &out, &err);
    H_ASSERT(st == 0, "snmpinform acknowledged: status %d %s %s", st, out ? out : "", err ? err : "");
    free(out);
    free(err);
    H_EXPECT(S, mark, T_HVAC "/event/hvac.fault", "{\"type\":\"hvac.fault\"}", h_scaled(1000));
    /* a wrong pass phrase is not accepted (no acknowledgement, no event) */
    mark = h_mqtt_mark(S);
    const char *bad[] = {SNMPINFORM_BIN, "-v", "3", "-u", "trapper", "-l", "authPriv", "-a", "SHA",
                         "-A", "wrongpass123", "-x", "AES", "-X", "privpass123", "-r", "0", "-t", "1",
                         "-M", "/dev/null", "-m", "", dest, "", "1.3.6.1.4.1.99999.0.1", NULL};
    st = h_run(E, "snmpinform", bad, h_scaled(5000), NULL, NULL);
    H_ASSERT(st != 0, "no acknowledgement for a wrong pass phrase");
    H_ASSERT(h_mqtt_wait(S, mark, T_HVAC "/event/hvac.fault", NULL, NULL, h_scaled(300)) == NULL,
             "no event for a wrong pass phrase");
}

/* gw2's config: a v2c hvac target with one mapped private trap; with_v3 adds
 * a second instance with a v3 target (the first one unchanged). */
static int write_gw2_yaml(const char *path, int trap_port, bool with_v3)
{
    char yaml[4096];
    int n = snprintf(yaml, sizeof yaml,
                     "gateway: {site: hq, id: gw2, data_dir: data2, plugin_dirs: [\"%s\"]}\n"
                     "mqtt: {port: %d}\n"
                     "instances:\n"
                     "  - id: power2\n"
                     "    plugin: snmp\n"
                     "    options:\n"
                     "      trap_port: %d\n"
                     "      trap_address: 127.0.0.1\n"
                     "      traps:\n"
                     "        - {oid: 1.3.6.1.4.1.99999.0.1, device: room2-ac, event: hvac.fault}\n"
                     "      targets:\n"
                     "        - id: room2-ac\n"
                     "          class: hvac\n"
                     "          host: 127.0.0.1\n"
                     "          port: %d\n"
                     "          poll_interval_ms: 500\n"
                     "          timeout_ms: 1000\n"
                     "          retries: 1\n"
                     "          points:\n"
                     "            - {oid: 1.3.6.1.4.1.99999.1.1.0, name: supply_air.temperature, scale: 0.1}\n"
                     "%s",
                     CCGW_PLUGIN_DIR, B->port, trap_port, SNMP_PORT,
                     with_v3 ? "  - id: power3\n"
                               "    plugin: snmp\n"
                               "    options:\n"
                               "      targets:\n"
                               "        - id: room2-ups-v3\n"
                               "          host: 127.0.0.1\n"
                               "          port: " : "");
    if (with_v3 && n > 0 && (size_t)n < sizeof yaml)
        snprintf(yaml + n, sizeof yaml - (size_t)n,
                 "%d\n"
                 "          version: \"3\"\n"
                 "          user: ccgw\n"
                 "          auth_password: !env CCGW_IT_SNMP_AUTH\n"
                 "          priv_password: !env CCGW_IT_SNMP_PRIV\n"
                 "          poll_interval_ms: 500\n"
                 "          timeout_ms: 1000\n"
                 "          retries: 1\n",
                 SNMP_PORT);
    return h_write_file(path, yaml);
}

static int inform(int trap_port, bool v3, const char *pass)
{
    char dest[64];
    snprintf(dest, sizeof dest, "127.0.0.1:%d", trap_port);
    const char *v2[] = {SNMPINFORM_BIN, "-v", "2c", "-c", "public", "-r", "0", "-t", "2", "-M", "/dev/null",
                        "-m", "", dest, "", "1.3.6.1.4.1.99999.0.1", NULL};
    const char *v3a[] = {SNMPINFORM_BIN, "-v", "3", "-u", "trapper", "-l", "authPriv", "-a", "SHA",
                         "-A", pass, "-x", "AES", "-X", "privpass123", "-r", "0", "-t", "1",
                         "-M", "/dev/null", "-m", "", dest, "", "1.3.6.1.4.1.99999.0.1", NULL};
    return h_run(E, "snmpinform", v3 ? v3a : v2, h_scaled(5000), NULL, NULL);
}

#define T_HVAC2 H_PREFIX "/hq/hvac/room2-ac"
#define T_V3B H_PREFIX "/hq/ups/room2-ups-v3"
#define V3_INIT_LOG "SNMPv3 (USM) initialised"

static bool log_has(const h_proc *p, const char *needle)
{
    char *text = h_read_file(h_proc_log(p));
    bool has = text && strstr(text, needle);
    free(text);
    return has;
}

static void v2c_only_gateway_then_v3_by_reload(void **state)
{
    (void)state;
    H_ASSERT(log_has(G, V3_INIT_LOG), "gw1 (v3 targets) initialised SNMPv3");
    int trap2 = h_free_port();
    while (trap2 == TRAP_PORT || trap2 == SNMP_PORT)
        trap2 = h_free_port();
    char path[PATH_MAX];
    h_env_path(E, "ccgw2.yaml", path, sizeof path);
    H_ASSERT(write_gw2_yaml(path, trap2, false) == 0, "gw2 config");
    size_t mark = h_mqtt_mark(S);
    int64_t t0 = h_now_ms();
    h_proc *g2 = h_gw_start(E, path);
    H_ASSERT(g2 != NULL, "gw2 started");
    H_EXPECT(S, mark, T_HVAC2 "/state", "{\"online\":true}", h_left_ms(t0, 8000));
    H_EXPECT(S, mark, T_HVAC2 "/telemetry", "{}", h_scaled(3000));
    /* a v2c inform: acknowledged, mapped to the event */
    mark = h_mqtt_mark(S);
    int st = inform(trap2, false, NULL);
    H_ASSERT(st == 0, "v2c inform acknowledged: status %d", st);
    H_EXPECT(S, mark, T_HVAC2 "/event/hvac.fault", "{\"type\":\"hvac.fault\"}", h_scaled(1000));
    /* a v3 inform: no USM here, dropped (no acknowledgement, no event), gw2 runs on */
    mark = h_mqtt_mark(S);
    st = inform(trap2, true, "authpass123");
    H_ASSERT(st != 0, "no acknowledgement for a v3 inform without trap users");
    H_ASSERT(h_mqtt_wait(S, mark, T_HVAC2 "/event/hvac.fault", NULL, NULL, h_scaled(300)) == NULL,
             "no event for the v3 inform");
    H_ASSERT(h_proc_alive(g2), "gw2 alive after a v3 inform");
    H_EXPECT(S, mark, T_HVAC2 "/telemetry", "{}", h_scaled(3000));
    H_ASSERT(!log_has(g2, V3_INIT_LOG), "gw2 (v2c only) did not initialise SNMPv3");

    /* reload: a second instance with a v3 target; power2 is unchanged and keeps its session */
    H_ASSERT(write_gw2_yaml(path, trap2, true) == 0, "gw2 config with v3");
    mark = h_mqtt_mark(S);
    h_proc_signal(g2, SIGHUP);
    char line[512];
    H_ASSERT(h_proc_wait_log(g2, V3_INIT_LOG, h_scaled(10000), line, sizeof line), "v3 initialised on reload");
    H_EXPECT(S, mark, T_V3B "/state", "{\"online\":true}", h_scaled(8000));
    H_EXPECT(S, mark, T_V3B "/telemetry", "{}", h_scaled(3000));
    size_t after = h_mqtt_mark(S);
    H_EXPECT(S, after, T_HVAC2 "/telemetry", "{}", h_scaled(3000));
    const h_msg *all[64];
    size_t n = h_mqtt_collect(S, mark, H_PREFIX "/hq/gateway/gw2/instance/power2", NULL, NULL, all, 64);
    H_ASSERT(n == 0, "power2 not restarted by the reload (%zu instance messages)", n);
    int st2 = h_proc_stop(g2, 8000);
    char how[64];
    H_ASSERT(WIFEXITED(st2) && WEXITSTATUS(st2) == 0, "gw2 stopped cleanly: %s",
             h_status_str(st2, how, sizeof how));
}

static void snmpd_killed(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    h_proc_stop(SNMPD, 3000);
    SNMPD = NULL;
    const h_msg *m = H_EXPECT_PRED(S, mark, T_V3 "/state", offline_with, "timeout",
                                   "online:false, timeout", h_scaled(6000));
    H_ASSERT(m->retain, "retained");
    H_EXPECT_PRED(S, mark, T_HVAC "/state", offline_with, "timeout", "hvac offline too", h_scaled(6000));
    H_EXPECT(S, mark, H_PREFIX "/hq/gateway/gw1/instance/power", "{\"health\":\"degraded\"}", h_scaled(3000));
    /* back: online again without restarting ccgw */
    mark = h_mqtt_mark(S);
    SNMPD = start_snmpd();
    H_ASSERT(SNMPD != NULL, "snmpd restarted");
    H_EXPECT(S, mark, T_HVAC "/state", "{\"online\":true}", h_scaled(5000));
}

int main(void)
{
    if (access(SNMPD_BIN, X_OK) != 0 || access(SNMPTRAP_BIN, X_OK) != 0) {
        fprintf(stderr, "snmp: skipped: %s or %s missing (apt-get install snmpd snmp)\n", SNMPD_BIN,
                SNMPTRAP_BIN);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v2c_online_with_telemetry),
        cmocka_unit_test(trap_on_battery_at_once),
        cmocka_unit_test(trap_low_battery_alarm_entry),
        cmocka_unit_test(poll_restores_power),
        cmocka_unit_test(v3_auth_priv_and_wrong_password),
        cmocka_unit_test(hvac_points_and_private_traps),
        cmocka_unit_test(v3_inform),
        cmocka_unit_test(v2c_only_gateway_then_v3_by_reload),
        cmocka_unit_test(snmpd_killed),
    };
    int failed = cmocka_run_group_tests_name("snmp", tests, setup, teardown);
    return h_finish(failed);
}
