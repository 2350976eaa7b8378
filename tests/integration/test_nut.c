/*
 * nut: the nut plugin against a real upsd with the dummy-ups driver playing
 * a NUT sequence file (TIMER lines, looping): on line -> on battery -> low
 * battery -> back on line.
 *
 *  - the UPS comes online with status on_line and telemetry with SenML units;
 *  - on battery: event power.lost, alarm on_battery raised;
 *  - low battery: alarm low_battery raised (critical);
 *  - back on line: event power.restored, both alarms cleared (alarm.cleared
 *    events and empty retained payloads), in that order, with exactly one
 *    power.lost and one power.restored;
 *  - instant commands: an allowed one upsd runs (load.off: ok), an allowed
 *    one dummy-ups does not support (ups.test_battery: device_error
 *    CMD-NOT-SUPPORTED), one not allowed (forbidden), and one through a
 *    server configured with a wrong password (device_error ACCESS-DENIED,
 *    and the instance health says so);
 *  - dummy-ups killed: online:false with a reason naming the driver; back:
 *    online again with its status; upsd killed: online:false, connection.
 *
 * upsd and dummy-ups run from a private NUT_CONFPATH / NUT_STATEPATH /
 * NUT_ALTPIDPATH in the test's directory on an ephemeral port, as user nut
 * when the test runs as root. Skipped (77) when NUT is not installed.
 */
#include "harness.h"

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DUMMY_UPS_BIN "/lib/nut/dummy-ups"
#define UPSD_BIN "/lib/nut/upsd"

static h_env *E;
static h_broker *B;
static h_mqtt *S;
static h_proc *DRV, *UPSD, *G;
static int NUT_PORT;
static char STATE_DIR[PATH_MAX];
static int64_t T0;
static size_t MARK_ONLINE, MARK_LOST, MARK_RESTORED;

#define T_UPS H_PREFIX "/hq/ups/room1-ups"
#define T_BAD H_PREFIX "/hq/ups/room1-ups-badlogin"
#define T_INST_POWER H_PREFIX "/hq/gateway/gw1/instance/power"

static bool as_root(void)
{
    return geteuid() == 0;
}

static int write_conf(const char *file, const char *text, mode_t mode, bool nut_group)
{
    char p[PATH_MAX];
    h_env_path(E, file, p, sizeof p);
    if (h_write_file(p, text) != 0 || chmod(p, mode) != 0)
        return -1;
    if (nut_group && as_root()) {
        struct group *g = getgrnam("nut");
        if (g && chown(p, 0, g->gr_gid) != 0)
            return -1;
    }
    return 0;
}

static h_proc *start_driver(void)
{
    const char *argv_root[] = {DUMMY_UPS_BIN, "-a", "ups1", "-u", "nut", "-F", NULL};
    const char *argv_user[] = {DUMMY_UPS_BIN, "-a", "ups1", "-F", NULL};
    h_proc *p = h_spawn(E, "dummy-ups", as_root() ? argv_root : argv_user);
    char sock[PATH_MAX + 32];
    snprintf(sock, sizeof sock, "%s/dummy-ups-ups1", STATE_DIR);
    for (int i = 0; p && i < 100 && access(sock, F_OK) != 0 && h_proc_alive(p); i++)
        h_sleep_ms(50);
    return p && access(sock, F_OK) == 0 ? p : NULL;
}

static h_proc *start_upsd(void)
{
    const char *argv_root[] = {UPSD_BIN, "-u", "nut", "-F", NULL};
    const char *argv_user[] = {UPSD_BIN, "-F", NULL};
    h_proc *p = h_spawn(E, "upsd", as_root() ? argv_root : argv_user);
    return p && h_wait_port(NUT_PORT, p, h_scaled(5000)) ? p : NULL;
}

static int setup(void **state)
{
    (void)state;
    if (access(DUMMY_UPS_BIN, X_OK) != 0 || access(UPSD_BIN, X_OK) != 0) {
        fprintf(stderr, "nut: %s or %s missing (apt-get install nut-server)\n", DUMMY_UPS_BIN,
                UPSD_BIN);
        return -1;
    }
    E = h_env_new("nut");
    h_current_env = E;
    const char *dir = h_env_dir(E);
    /* user nut must reach the config and the state dir */
    if (chmod(dir, 0755) != 0)
        return -1;
    h_env_path(E, "state", STATE_DIR, sizeof STATE_DIR);
    if (mkdir(STATE_DIR, 0770) != 0)
        return -1;
    if (as_root()) {
        struct passwd *pw = getpwnam("nut");
        if (!pw || chown(STATE_DIR, pw->pw_uid, pw->pw_gid) != 0)
            return -1;
    }
    NUT_PORT = h_free_port();
    char buf[4096];
    snprintf(buf, sizeof buf, "LISTEN 127.0.0.1 %d\nMAXAGE 5\n", NUT_PORT);
    if (write_conf("nut.conf", "MODE=standalone\n", 0644, false) != 0 ||
        write_conf("ups.conf",
                   "[ups1]\n"
                   "  driver = dummy-ups\n"
                   "  port = ups1.seq\n"
                   "  pollinterval = 1\n"
                   "  desc = \"ccgw integration test\"\n",
                   0644, false) != 0 ||
        write_conf("upsd.conf", buf, 0640, true) != 0 ||
        write_conf("upsd.users",
                   "[admin]\n"
                   "  password = s3cret\n"
                   "  instcmds = ALL\n",
                   0640, true) != 0 ||
        /* on line 3 s -> on battery 2 s -> low battery 2 s -> back on line 3 s, looping */
        write_conf("ups1.seq",
                   "ups.status: OL\n"
                   "battery.charge: 100\n"
                   "battery.runtime: 1800\n"
                   "battery.voltage: 27.1\n"
                   "input.voltage: 230.1\n"
                   "input.frequency: 50.0\n"
                   "output.voltage: 230.0\n"
                   "ups.load: 25\n"
                   "ups.temperature: 31.5\n"
                   "TIMER 3\n"
                   "ups.status: OB DISCHRG\n"
                   "battery.charge: 80\n"
                   "input.voltage: 0\n"
                   "TIMER 2\n"
                   "ups.status: OB DISCHRG LB\n"
                   "battery.charge: 15\n"
                   "battery.runtime: 120\n"
                   "TIMER 2\n"
                   "ups.status: OL CHRG\n"
                   "battery.charge: 40\n"
                   "battery.runtime: 900\n"
                   "input.voltage: 229.5\n"
                   "TIMER 3\n",
                   0644, false) != 0)
        return -1;
    char pw_file[PATH_MAX];
    h_env_path(E, "bad-password", pw_file, sizeof pw_file);
    if (h_write_file(pw_file, "not-the-password\n") != 0)
        return -1;
    setenv("NUT_CONFPATH", dir, 1);
    setenv("NUT_STATEPATH", STATE_DIR, 1);
    setenv("NUT_ALTPIDPATH", STATE_DIR, 1);
    setenv("CCGW_IT_NUT_PASSWORD", "s3cret", 1);

    DRV = start_driver();
    UPSD = DRV ? start_upsd() : NULL;
    if (!UPSD || h_broker_and_watcher(E, &B, &S) != 0)
        return -1;

    char yaml[8192], path[PATH_MAX];
    snprintf(yaml, sizeof yaml,
             "gateway: {site: hq, id: gw1, data_dir: data, plugin_dirs: [\"%s\"]}\n"
             "mqtt: {port: %d}\n"
             "instances:\n"
             "  - id: power\n"
             "    plugin: nut\n"
             "    options:\n"
             "      servers:\n"
             "        - host: 127.0.0.1\n"
             "          port: %d\n"
             "          username: admin\n"
             "          password: !env CCGW_IT_NUT_PASSWORD\n"
             "          poll_interval_ms: 250\n"
             "          timeout_ms: 1000\n"
             "          upses:\n"
             "            - name: ups1\n"
             "              id: room1-ups\n"
             "              allowed_commands: [test.battery.start, load.off]\n"
             "              variables: [device.model, ups.mfr]\n"
             "        - host: 127.0.0.1\n"
             "          port: %d\n"
             "          username: admin\n"
             "          password: !file bad-password\n"
             "          poll_interval_ms: 1000\n"
             "          upses:\n"
             "            - name: ups1\n"
             "              id: room1-ups-badlogin\n"
             "              allowed_commands: [load.off]\n",
             CCGW_PLUGIN_DIR, B->port, NUT_PORT, NUT_PORT);
    G = h_gw_start_yaml(E, yaml, path, sizeof path, &T0);
    return G ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    h_proc *const peers[] = {UPSD, DRV};
    h_rig_teardown(E, B, S, G, peers, 2);
    return 0;
}

static const char PCT[] = "%";

static bool unit_is(const json_t *units, const char *k, const char *u)
{
    return h_json_str_is(units, k, u);
}

static void online_on_line_with_units(void **state)
{
    (void)state;
    /* the sequence may be anywhere when ccgw starts: one loop is 10 s */
    const h_msg *m = H_EXPECT(S, 0, T_UPS "/state", "{\"online\":true,\"status\":\"on_line\"}",
                              h_left_ms(T0, 16000));
    char why[256];
    H_ASSERT(m->retain, "state retained");
    H_ASSERT(h_envelope_ok(m->json, "hq", "ups", "room1-ups", "power", NULL, why, sizeof why), "%s",
             why);
    H_ASSERT(h_json_str(m->json, "flags") && strstr(h_json_str(m->json, "flags"), "OL"), "%s",
             m->payload);
    MARK_ONLINE = m->index;
    /* never online without a status, not even at the start */
    const h_msg *first = H_EXPECT(S, 0, T_UPS "/state", "{\"online\":true}", h_scaled(1000));
    H_ASSERT(h_json_str(first->json, "status") && !h_json_str_is(first->json, "status", "unknown"),
             "first online state carries the status: %s", first->payload);
    const h_msg *t = H_EXPECT(S, MARK_ONLINE, T_UPS "/telemetry", "{}", h_scaled(3000));
    json_t *v = json_object_get(t->json, "values"), *u = json_object_get(t->json, "units");
    double d;
    H_ASSERT(h_json_num(v, "battery.charge", &d) && d >= 0 && d <= 100, "%s", t->payload);
    H_ASSERT(h_json_num(v, "battery.runtime", &d) && h_json_num(v, "battery.voltage", &d) &&
                 h_json_num(v, "input.voltage", &d) && h_json_num(v, "input.frequency", &d) &&
                 h_json_num(v, "output.voltage", &d) && h_json_num(v, "ups.load", &d) &&
                 h_json_num(v, "ups.temperature", &d),
             "all eight ups variables: %s", t->payload);
    H_ASSERT(h_json_num(v, "ups.temperature", &d) && d > 31.4 && d < 31.6, "%s", t->payload);
    bool units_ok =
        unit_is(u, "battery.charge", PCT) && unit_is(u, "battery.runtime", "s") &&
                 unit_is(u, "battery.voltage", "V") && unit_is(u, "input.voltage", "V") &&
                 unit_is(u, "input.frequency", "Hz") && unit_is(u, "output.voltage", "V") &&
                 unit_is(u, "ups.load", PCT) && unit_is(u, "ups.temperature", "Cel");
    H_ASSERT(units_ok, "SenML units: %s", t->payload);
    H_ASSERT(h_json_str_is(v, "device.model", "Dummy UPS"), "extra variable: %s", t->payload);
    H_ASSERT(json_object_get(u, "device.model") == NULL, "no unit for extra: %s", t->payload);
}

static void power_lost(void **state)
{
    (void)state;
    const h_msg *e = H_EXPECT(S, MARK_ONLINE, T_UPS "/event/power.lost",
                              "{\"type\":\"power.lost\"}", h_scaled(12000));
    MARK_LOST = e->index;
    H_ASSERT(!e->retain, "events are not retained");
    H_ASSERT(h_json_str(json_object_get(e->json, "data"), "flags") &&
                 strstr(h_json_str(json_object_get(e->json, "data"), "flags"), "OB"),
             "%s", e->payload);
    const h_msg *a = H_EXPECT(S, MARK_ONLINE, T_UPS "/alarm/on_battery",
                              "{\"code\":\"on_battery\",\"state\":\"raised\",\"severity\":\"major\"}",
                              h_scaled(3000));
    H_ASSERT(a->retain, "active alarm retained");
    H_EXPECT(S, MARK_ONLINE, T_UPS "/state", "{\"online\":true,\"status\":\"on_battery\"}",
             h_scaled(3000));
}

static void low_battery(void **state)
{
    (void)state;
    const h_msg *a = H_EXPECT(S, MARK_LOST, T_UPS "/alarm/low_battery",
                              "{\"code\":\"low_battery\",\"state\":\"raised\",\"severity\":\"critical\"}",
                              h_scaled(6000));
    H_ASSERT(a->retain, "active alarm retained");
    H_EXPECT(S, MARK_LOST, T_UPS "/state", "{\"online\":true,\"status\":\"low_battery\"}",
             h_scaled(3000));
}

static bool empty_payload(const h_msg *m, const void *ud)
{
    (void)ud;
    return m->len == 0;
}

static bool cleared_code(const h_msg *m, const void *ud)
{
    return m->json && h_json_str_is(json_object_get(m->json, "data"), "code", ud);
}

static void power_restored(void **state)
{
    (void)state;
    const h_msg *e = H_EXPECT(S, MARK_LOST, T_UPS "/event/power.restored",
                              "{\"type\":\"power.restored\"}", h_scaled(8000));
    MARK_RESTORED = e->index;
    double s;
    H_ASSERT(h_json_num(json_object_get(e->json, "data"), "on_battery_s", &s) && s >= 2 && s < 10,
             "%s", e->payload);
    const h_msg *c1 = H_EXPECT_PRED(S, MARK_LOST, T_UPS "/event/alarm.cleared", cleared_code,
                                    "on_battery", "on_battery cleared", h_scaled(3000));
    const h_msg *c2 = H_EXPECT_PRED(S, MARK_LOST, T_UPS "/event/alarm.cleared", cleared_code,
                                    "low_battery", "low_battery cleared", h_scaled(3000));
    const h_msg *x1 = H_EXPECT_PRED(S, MARK_LOST, T_UPS "/alarm/on_battery", empty_payload, NULL,
                                    "empty retained on_battery", h_scaled(3000));
    const h_msg *x2 = H_EXPECT_PRED(S, MARK_LOST, T_UPS "/alarm/low_battery", empty_payload, NULL,
                                    "empty retained low_battery", h_scaled(3000));
    H_ASSERT(x1->retain && x2->retain, "empty payloads retained");
    H_ASSERT(c1->index < x1->index && c2->index < x2->index, "alarm.cleared before the empty payload");
    /* the state changes in the same poll, just before the event */
    H_EXPECT(S, MARK_LOST, T_UPS "/state", "{\"online\":true,\"status\":\"on_line\"}",
             h_scaled(3000));

    /* exactly the expected events and alarms, in order, for one cycle (from
     * the power.lost; a power.restored of an earlier cycle may precede it) */
    const h_msg *all[64];
    size_t n = h_mqtt_collect(S, MARK_LOST, T_UPS "/#", NULL, NULL, all, 64);
    int step = 0, n_lost = 0, n_restored = 0;
    for (size_t i = 0; i < n && i < 64 && all[i]->index <= x2->index; i++) {
        const char *t = all[i]->topic;
        if (strstr(t, "/event/power.lost")) {
            n_lost++;
            H_ASSERT(step == 0, "power.lost first (step %d)", step);
            step = 1;
        } else if (strstr(t, "/alarm/on_battery") && all[i]->len) {
            H_ASSERT(step == 1, "on_battery after power.lost (step %d)", step);
            step = 2;
        } else if (strstr(t, "/alarm/low_battery") && all[i]->len) {
            H_ASSERT(step == 2, "low_battery after on_battery (step %d)", step);
            step = 3;
        } else if (strstr(t, "/event/power.restored")) {
            n_restored++;
            H_ASSERT(step == 3, "power.restored after low_battery (step %d)", step);
            step = 4;
        }
    }
    H_ASSERT(step == 4 && n_lost == 1 && n_restored == 1, "step %d lost %d restored %d", step,
             n_lost, n_restored);
}

static const h_msg *command(const char *dev_topic, const char *name, const char *args)
{
    char topic[256], reply[300];
    snprintf(topic, sizeof topic, "%s/cmd/%s", dev_topic, name);
    snprintf(reply, sizeof reply, "%s/reply", topic);
    size_t mark = h_mqtt_mark(S);
    H_ASSERT(h_mqtt_pub(S, topic, args, (int)strlen(args), 1, false, NULL, NULL, 0) == 0, "publish");
    return H_EXPECT(S, mark, reply, "{}", h_scaled(5000));
}

static void instant_commands(void **state)
{
    (void)state;
    /* allowed, and dummy-ups supports it */
    const h_msg *r = command(T_UPS, "ups.instcmd", "{\"command\":\"load.off\"}");
    json_t *want = json_loads("{\"ok\":true,\"command\":\"ups.instcmd\",\"data\":"
                              "{\"ups\":\"ups1\",\"command\":\"load.off\"}}", 0, NULL);
    bool ok = want && h_json_match(want, r->json);
    json_decref(want);
    H_ASSERT(ok, "%s", r->payload);
    /* allowed (the alias of test.battery.start), dummy-ups answers CMD-NOT-SUPPORTED */
    r = command(T_UPS, "ups.test_battery", "");
    H_ASSERT(json_is_false(json_object_get(r->json, "ok")) &&
                 h_json_str_is(json_object_get(r->json, "error"), "code", "device_error") &&
                 strstr(h_json_str(json_object_get(r->json, "error"), "message"), "CMD-NOT-SUPPORTED"),
             "%s", r->payload);
    /* not in allowed_commands */
    r = command(T_UPS, "ups.instcmd", "{\"command\":\"shutdown.return\"}");
    H_ASSERT(h_json_str_is(json_object_get(r->json, "error"), "code", "forbidden"), "%s", r->payload);
    /* the default allow-list does not hold load.off either; this one allows only load.off */
    r = command(T_BAD, "ups.test_battery", "");
    H_ASSERT(h_json_str_is(json_object_get(r->json, "error"), "code", "forbidden"), "%s", r->payload);
    /* a protocol injection attempt never reaches upsd */
    r = command(T_UPS, "ups.instcmd", "{\"command\":\"load.off\\nINSTCMD ups1 load.off\"}");
    H_ASSERT(h_json_str_is(json_object_get(r->json, "error"), "code", "bad_arguments") ||
                 h_json_str_is(json_object_get(r->json, "error"), "code", "forbidden"),
             "%s", r->payload);
    /* the server with the wrong password: upsd refuses */
    size_t mark = h_mqtt_mark(S);
    r = command(T_BAD, "ups.instcmd", "{\"command\":\"load.off\"}");
    H_ASSERT(h_json_str_is(json_object_get(r->json, "error"), "code", "device_error") &&
                 strstr(h_json_str(json_object_get(r->json, "error"), "message"), "ACCESS-DENIED"),
             "%s", r->payload);
    const h_msg *h = H_EXPECT(S, mark, T_INST_POWER, "{\"health\":\"degraded\"}", h_scaled(3000));
    H_ASSERT(strstr(h_json_str(h->json, "reason") ? h_json_str(h->json, "reason") : "",
                    "access denied"), "%s", h->payload);
    /* the password never shows in the gateway's log */
    char *log = h_read_file(h_proc_log(G));
    H_ASSERT(log && !strstr(log, "s3cret") && !strstr(log, "not-the-password"), "secret in log");
    free(log);
}

static bool offline_driver(const h_msg *m, const void *ud)
{
    (void)ud;
    const char *r = m->json ? h_json_str(m->json, "reason") : NULL;
    return m->json && json_is_false(json_object_get(m->json, "online")) && r && strstr(r, "driver");
}

static bool offline_upsd(const h_msg *m, const void *ud)
{
    (void)ud;
    const char *r = m->json ? h_json_str(m->json, "reason") : NULL;
    return m->json && json_is_false(json_object_get(m->json, "online")) && r &&
           strstr(r, "upsd") && (strstr(r, "connect") || strstr(r, "lost") || strstr(r, "closed"));
}

static bool online_with_status(const h_msg *m, const void *ud)
{
    (void)ud;
    const char *st = m->json ? h_json_str(m->json, "status") : NULL;
    return m->json && json_is_true(json_object_get(m->json, "online")) && st &&
           strcmp(st, "unknown") != 0 && h_json_str(m->json, "flags");
}

static void driver_and_upsd_lost(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    h_proc_stop(DRV, 3000);
    DRV = NULL;
    const h_msg *m = H_EXPECT_PRED(S, mark, T_UPS "/state", offline_driver, NULL,
                                   "online:false, reason naming the driver", h_scaled(6000));
    H_ASSERT(m->retain, "retained");
    H_EXPECT_PRED(S, mark, T_BAD "/state", offline_driver, NULL, "second server too",
                  h_scaled(6000));
    H_EXPECT(S, mark, T_INST_POWER, "{\"health\":\"degraded\"}", h_scaled(3000));

    /* the driver comes back: online again, attributes in the same message */
    mark = h_mqtt_mark(S);
    DRV = start_driver();
    H_ASSERT(DRV != NULL, "dummy-ups restarted");
    H_EXPECT_PRED(S, mark, T_UPS "/state", online_with_status, NULL, "online again with status",
                  h_scaled(12000));

    /* upsd goes away: the connection is lost */
    mark = h_mqtt_mark(S);
    h_proc_stop(UPSD, 3000);
    UPSD = NULL;
    H_EXPECT_PRED(S, mark, T_UPS "/state", offline_upsd, NULL, "online:false, upsd unreachable",
                  h_scaled(6000));
}

int main(void)
{
    if (access(DUMMY_UPS_BIN, X_OK) != 0 || access(UPSD_BIN, X_OK) != 0) {
        fprintf(stderr, "nut: skipped: %s or %s missing (apt-get install nut-server)\n",
                DUMMY_UPS_BIN, UPSD_BIN);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(online_on_line_with_units),
        cmocka_unit_test(power_lost),
        cmocka_unit_test(low_battery),
        cmocka_unit_test(power_restored),
        cmocka_unit_test(instant_commands),
        cmocka_unit_test(driver_and_upsd_lost),
    };
    int failed = cmocka_run_group_tests_name("nut", tests, setup, teardown);
    return h_finish(failed);
}
