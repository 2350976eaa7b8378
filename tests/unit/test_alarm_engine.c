/* Unit tests: the alarm rule engine (thresholds, deadband, on/off delays,
 * boolean rules, rate limit, ticks, restore), the `alarms:` config section
 * (validation with FILE:LINE:COL) and the alarm store (round trip, corrupt
 * file moved aside, unwritable dir). Time is fed by the test: no sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alarm_engine.h"
#include "alarm_store.h"
#include "config.h"

static ccgw_alarm_rule_t high_rule(void)
{
    ccgw_alarm_rule_t r = {.code = "temp_high", .class_name = "env", .device = "room1-*", .value = "temperature",
                           .type = CCGW_RULE_HIGH, .threshold = 30, .deadband = 2, .on_delay_s = 0.5,
                           .off_delay_s = 0.5, .severity = CCGW_RSEV_MAJOR};
    return r;
}

/* feed one sample; returns the number of decisions and the first one's action (0 if none) */
static int feed(ccgw_alarm_engine_t *e, const char *dev, const char *name, double v, uint64_t t, int *action)
{
    ccgw_alarm_decision_t *out = NULL;
    size_t n = ccgw_alarm_engine_feed_one(e, "env", dev, name, v, t, &out);
    *action = n ? (int)out[0].action : 0;
    free(out);
    return (int)n;
}

static void glob(void **state)
{
    (void)state;
    assert_true(ccgw_glob_match("*", "x"));
    assert_true(ccgw_glob_match("room1-*", "room1-th1"));
    assert_false(ccgw_glob_match("room1-*", "room2-th1"));
    assert_true(ccgw_glob_match("*-th*", "room1-th1"));
    assert_true(ccgw_glob_match("knob1", "knob1"));
    assert_false(ccgw_glob_match("knob1", "knob10"));
    assert_true(ccgw_glob_match("a*b*c", "aXXbYYc"));
    assert_false(ccgw_glob_match("a*b*c", "aXXbYY"));
}

static void high_on_delay_deadband_off_delay(void **state)
{
    (void)state;
    ccgw_alarm_rule_t r = high_rule();
    ccgw_alarm_engine_t *e = ccgw_alarm_engine_new(&r, 1);
    assert_non_null(e);
    assert_true(ccgw_alarm_engine_wants(e, "env", "room1-th1"));
    assert_false(ccgw_alarm_engine_wants(e, "hvac", "room1-th1"));
    assert_false(ccgw_alarm_engine_wants(e, "env", "room2-th1"));
    int a;
    assert_int_equal(feed(e, "room1-th1", "temperature", 25, 1000, &a), 0);
    /* 31 at t=2000: not before 2500 */
    assert_int_equal(feed(e, "room1-th1", "temperature", 31, 2000, &a), 0);
    assert_int_equal(feed(e, "room1-th1", "temperature", 31, 2400, &a), 0);
    /* another value name or device does nothing */
    assert_int_equal(feed(e, "room1-th1", "humidity", 99, 2450, &a), 0);
    assert_int_equal(feed(e, "room1-th1", "temperature", 31, 2500, &a), 1);
    assert_int_equal(a, CCGW_ALARM_RAISE);
    /* hover inside the deadband: nothing */
    for (int i = 0; i < 20; i++)
        assert_int_equal(feed(e, "room1-th1", "temperature", i % 2 ? 29 : 31, 2600 + 100 * (uint64_t)i, &a), 0);
    /* 28 is not below threshold - deadband */
    assert_int_equal(feed(e, "room1-th1", "temperature", 28, 5000, &a), 0);
    assert_int_equal(feed(e, "room1-th1", "temperature", 28, 7000, &a), 0);
    /* 27 clears after off_delay; a bounce inside restarts the wait */
    assert_int_equal(feed(e, "room1-th1", "temperature", 27, 8000, &a), 0);
    assert_int_equal(feed(e, "room1-th1", "temperature", 29, 8300, &a), 0);
    assert_int_equal(feed(e, "room1-th1", "temperature", 27, 8400, &a), 0);
    assert_int_equal(feed(e, "room1-th1", "temperature", 27, 8800, &a), 0);
    assert_int_equal(feed(e, "room1-th1", "temperature", 27, 8900, &a), 1);
    assert_int_equal(a, CCGW_ALARM_CLEAR);
    assert_int_equal(feed(e, "room1-th1", "temperature", 27, 9900, &a), 0);
    /* a dip during the on-delay restarts it */
    assert_int_equal(feed(e, "room1-th1", "temperature", 35, 10000, &a), 0);
    assert_int_equal(feed(e, "room1-th1", "temperature", 29.9, 10300, &a), 0);
    assert_int_equal(feed(e, "room1-th1", "temperature", 35, 10400, &a), 0);
    assert_int_equal(feed(e, "room1-th1", "temperature", 35, 10800, &a), 0);
    assert_int_equal(feed(e, "room1-th1", "temperature", 35, 10900, &a), 1);
    /* per device: another device is independent */
    assert_int_equal(feed(e, "room1-th2", "temperature", 35, 10900, &a), 0);
    ccgw_alarm_engine_stats_t st;
    ccgw_alarm_engine_get_stats(e, &st);
    assert_int_equal(st.raised, 2);
    assert_int_equal(st.cleared, 1);
    assert_int_equal(st.trackers, 2);
    ccgw_alarm_engine_free(e);
}

static void low_and_tick(void **state)
{
    (void)state;
    ccgw_alarm_rule_t r = {.code = "temp_low", .device = "*", .value = "t", .type = CCGW_RULE_LOW_LOW,
                           .threshold = 10, .deadband = 1, .on_delay_s = 2, .off_delay_s = 1};
    ccgw_alarm_engine_t *e = ccgw_alarm_engine_new(&r, 1);
    int a;
    assert_int_equal(feed(e, "x", "t", 10, 0, &a), 0); /* <= threshold */
    ccgw_alarm_decision_t *out = NULL;
    assert_int_equal(ccgw_alarm_engine_tick(e, 1999, &out), 0);
    free(out);
    /* no new sample: the tick lets the on-delay expire */
    assert_int_equal(ccgw_alarm_engine_tick(e, 2000, &out), 1);
    assert_int_equal(out[0].action, CCGW_ALARM_RAISE);
    assert_string_equal(out[0].device, "x");
    assert_string_equal(out[0].class_name, "env");
    assert_true(out[0].value == 10);
    free(out);
    assert_int_equal(feed(e, "x", "t", 10.5, 2500, &a), 0); /* inside the deadband */
    assert_int_equal(feed(e, "x", "t", 11.5, 3000, &a), 0);
    assert_int_equal(ccgw_alarm_engine_tick(e, 3999, &out), 0);
    free(out);
    assert_int_equal(ccgw_alarm_engine_tick(e, 4000, &out), 1);
    assert_int_equal(out[0].action, CCGW_ALARM_CLEAR);
    free(out);
    ccgw_alarm_engine_free(e);
}

static void boolean_rules(void **state)
{
    (void)state;
    ccgw_alarm_rule_t r[2] = {
        {.code = "leak", .device = "knob1", .value = "leak", .type = CCGW_RULE_ON, .severity = CCGW_RSEV_CRITICAL},
        {.code = "not_running", .device = "knob1", .value = "running", .type = CCGW_RULE_OFF, .off_delay_s = 1},
    };
    ccgw_alarm_engine_t *e = ccgw_alarm_engine_new(r, 2);
    ccgw_alarm_decision_t *out = NULL;
    ccgw_value_t v[] = {CCGW_V_BOOL("leak", true), CCGW_V_BOOL("running", false), CCGW_V_STRING("mode", "x")};
    assert_int_equal(ccgw_alarm_engine_feed(e, "env", "knob1", v, 3, 100, &out), 2);
    assert_ptr_equal(out[0].rule, &r[0]);
    assert_ptr_equal(out[1].rule, &r[1]);
    assert_int_equal(out[0].action, CCGW_ALARM_RAISE);
    assert_int_equal(out[1].action, CCGW_ALARM_RAISE);
    free(out);
    ccgw_value_t w[] = {CCGW_V_BOOL("leak", false), CCGW_V_INT("running", 1)};
    assert_int_equal(ccgw_alarm_engine_feed(e, "env", "knob1", w, 2, 200, &out), 1);
    assert_ptr_equal(out[0].rule, &r[0]);
    assert_int_equal(out[0].action, CCGW_ALARM_CLEAR);
    free(out);
    assert_int_equal(ccgw_alarm_engine_feed(e, "env", "knob1", w, 2, 1200, &out), 1);
    assert_ptr_equal(out[0].rule, &r[1]);
    assert_int_equal(out[0].action, CCGW_ALARM_CLEAR);
    free(out);
    ccgw_alarm_engine_free(e);
}

static void rate_limit(void **state)
{
    (void)state;
    ccgw_alarm_rule_t r = {.code = "flap", .device = "*", .value = "v", .type = CCGW_RULE_HIGH, .threshold = 1,
                           .min_interval_s = 10};
    ccgw_alarm_engine_t *e = ccgw_alarm_engine_new(&r, 1);
    int a;
    assert_int_equal(feed(e, "d", "v", 2, 0, &a), 1);
    assert_int_equal(a, CCGW_ALARM_RAISE);
    assert_int_equal(feed(e, "d", "v", 0, 100, &a), 1);
    assert_int_equal(a, CCGW_ALARM_CLEAR);
    /* flapping within the interval: suppressed, counted, never raised */
    int suppressed = 0;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(feed(e, "d", "v", 2, 200 + 200 * (uint64_t)i, &a) <= 1, 1);
        if (a == CCGW_ALARM_SUPPRESSED)
            suppressed++;
        assert_int_not_equal(a, CCGW_ALARM_RAISE);
        assert_int_equal(feed(e, "d", "v", 0, 300 + 200 * (uint64_t)i, &a), 0);
    }
    assert_int_equal(suppressed, 10);
    ccgw_alarm_engine_stats_t st;
    ccgw_alarm_engine_get_stats(e, &st);
    assert_int_equal(st.suppressed, 10);
    assert_int_equal(st.raised, 1);
    /* still high when the interval has passed: raised, with the count */
    assert_int_equal(feed(e, "d", "v", 2, 9000, &a), 1);
    assert_int_equal(a, CCGW_ALARM_SUPPRESSED);
    ccgw_alarm_decision_t *out = NULL;
    assert_int_equal(ccgw_alarm_engine_tick(e, 10000, &out), 1);
    assert_int_equal(out[0].action, CCGW_ALARM_RAISE);
    assert_int_equal(out[0].suppressed, 11);
    free(out);
    ccgw_alarm_engine_free(e);
}

static void restore(void **state)
{
    (void)state;
    ccgw_alarm_rule_t r = high_rule();
    ccgw_alarm_engine_t *e = ccgw_alarm_engine_new(&r, 1);
    assert_null(ccgw_alarm_engine_restore(e, "other", "env", "room1-a"));
    assert_null(ccgw_alarm_engine_restore(e, "temp_high", "env", "room9-a"));
    assert_ptr_equal(ccgw_alarm_engine_restore(e, "temp_high", "env", "room1-a"), &r);
    int a;
    /* active: no new raise while high; clears after off-delay when low */
    assert_int_equal(feed(e, "room1-a", "temperature", 31, 0, &a), 0);
    assert_int_equal(feed(e, "room1-a", "temperature", 31, 1000, &a), 0);
    assert_int_equal(feed(e, "room1-a", "temperature", 20, 2000, &a), 0);
    assert_int_equal(feed(e, "room1-a", "temperature", 20, 2500, &a), 1);
    assert_int_equal(a, CCGW_ALARM_CLEAR);
    ccgw_alarm_engine_free(e);
}

/* ---- config ---- */

static ccgw_gateway_config_t *load(const char *yaml)
{
    return ccgw_gateway_config_load_buffer("t.yaml", yaml, strlen(yaml), NULL, NULL);
}

static bool has_diag(const ccgw_gateway_config_t *c, const char *needle)
{
    for (size_t i = 0; i < c->doc->n_diags; i++)
        if (strstr(c->doc->diags[i], needle))
            return true;
    return false;
}

static void config_rules(void **state)
{
    (void)state;
    ccgw_gateway_config_t *c = load("gateway: {site: hq, id: gw1}\n"
                                    "alarms:\n"
                                    "  restore_grace_s: 5\n"
                                    "  rules:\n"
                                    "    - code: temp_high\n"
                                    "      class: env\n"
                                    "      device: \"room1-*\"\n"
                                    "      value: temperature\n"
                                    "      type: high\n"
                                    "      threshold: 30\n"
                                    "      deadband: 2\n"
                                    "      on_delay_s: 0.5\n"
                                    "      severity: warning\n"
                                    "    - {code: leak, device: knob1, value: leak, type: on, severity: critical,\n"
                                    "       message: Water on the floor, min_interval_s: 60}\n");
    assert_non_null(c);
    for (size_t i = 0; i < c->doc->n_diags; i++)
        fprintf(stderr, "%s\n", c->doc->diags[i]);
    assert_int_equal(c->doc->n_diags, 0);
    assert_int_equal(c->alarms.n_rules, 2);
    assert_int_equal(c->alarms.restore_grace_s, 5);
    assert_true(c->alarms.persist);
    ccgw_alarm_rule_t *r = &c->alarms.rules[0];
    assert_string_equal(r->code, "temp_high");
    assert_string_equal(r->class_name, "env");
    assert_string_equal(r->device, "room1-*");
    assert_int_equal(r->type, CCGW_RULE_HIGH);
    assert_true(r->threshold == 30 && r->deadband == 2 && r->on_delay_s == 0.5 && r->off_delay_s == 0);
    assert_int_equal(r->severity, CCGW_RSEV_WARNING);
    assert_null(r->message);
    r = &c->alarms.rules[1];
    assert_null(r->class_name);
    assert_int_equal(r->type, CCGW_RULE_ON);
    assert_int_equal(r->severity, CCGW_RSEV_CRITICAL);
    assert_string_equal(r->message, "Water on the floor");
    assert_true(r->min_interval_s == 60);
    ccgw_gateway_config_free(c);
}

static void config_rule_errors(void **state)
{
    (void)state;
    ccgw_gateway_config_t *c = load("gateway: {site: hq, id: gw1}\n"
                                    "alarms:\n"
                                    "  rules:\n"
                                    "    - {code: a, device: x, value: t, type: high}\n"
                                    "    - {code: b, device: x, value: t, type: on, threshold: 1}\n"
                                    "    - {code: c, device: x, value: t, type: sideways, threshold: 1}\n"
                                    "    - {code: d, device: x, value: t, type: low, threshold: 1, colour: red}\n"
                                    "    - {code: Bad!, device: x, value: t, type: on}\n"
                                    "    - {code: f, device: x, value: t, type: low, threshold: 1, deadband: -1}\n"
                                    "    - {code: g, class: toaster, device: \"x/y\", value: t, type: on}\n"
                                    "    - {device: x, value: t, type: on}\n");
    for (size_t i = 0; i < c->doc->n_diags; i++)
        fprintf(stderr, "%s\n", c->doc->diags[i]);
    assert_true(has_diag(c, "t.yaml:4:"));
    assert_true(has_diag(c, "needs 'threshold'"));
    assert_true(has_diag(c, "t.yaml:5:"));
    assert_true(has_diag(c, "takes no 'threshold'"));
    assert_true(has_diag(c, "sideways"));
    assert_true(has_diag(c, "colour"));
    assert_true(has_diag(c, "Bad!"));
    assert_true(has_diag(c, "deadband"));
    assert_true(has_diag(c, "toaster"));
    assert_true(has_diag(c, "x/y"));
    assert_true(has_diag(c, "missing required option 'code'"));
    ccgw_gateway_config_free(c);

    c = load("gateway: {site: hq, id: gw1}\nalarms: {bogus: 1}\n");
    assert_true(has_diag(c, "t.yaml:2:"));
    assert_true(has_diag(c, "bogus"));
    ccgw_gateway_config_free(c);
}

/* ---- store ---- */

static void store_round_trip(void **state)
{
    (void)state;
    char dir[] = "/tmp/ccgw-alarm-store-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[300];
    snprintf(sub, sizeof sub, "%s/data/deeper", dir);
    ccgw_alarm_store_t *s = ccgw_alarm_store_open(sub); /* created */
    assert_true(ccgw_alarm_store_persistent(s));
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0750);
    assert_int_equal(ccgw_alarm_store_start(s), 0);
    ccgw_alarm_record_t r = {.class_name = "env", .device = "knob1", .code = "temp_high", .instance = "k",
                             .severity = "warning", .message = "hot", .raised_at = "2026-11-23T10:00:00.000Z",
                             .acked = true, .acked_by = "ops", .acked_at = "2026-11-23T10:01:00.000Z",
                             .rule = "temp_high", .data_json = "{\"value\":31}"};
    ccgw_alarm_store_put(s, &r);
    ccgw_alarm_record_t r2 = {.class_name = "ups", .device = "u1", .code = "on_battery", .severity = "major",
                              .raised_at = "2026-11-23T10:00:00.000Z"};
    ccgw_alarm_store_put(s, &r2);
    ccgw_alarm_record_t r3 = {.class_name = "ups", .device = "u1", .code = "gone", .severity = "major",
                              .raised_at = "2026-11-23T10:00:00.000Z"};
    ccgw_alarm_store_put(s, &r3);
    ccgw_alarm_store_remove(s, "ups", "u1", "gone");
    ccgw_alarm_store_free(s); /* final write */

    s = ccgw_alarm_store_open(sub);
    assert_int_equal(ccgw_alarm_store_pending(s), 2);
    ccgw_alarm_record_t *got = NULL;
    assert_int_equal(ccgw_alarm_store_take(s, "env", "knob1", &got), 1);
    assert_string_equal(got[0].code, "temp_high");
    assert_string_equal(got[0].raised_at, "2026-11-23T10:00:00.000Z");
    assert_true(got[0].acked);
    assert_string_equal(got[0].acked_by, "ops");
    assert_string_equal(got[0].rule, "temp_high");
    assert_string_equal(got[0].data_json, "{\"value\":31}");
    ccgw_alarm_record_clear(&got[0]);
    free(got);
    assert_int_equal(ccgw_alarm_store_take(s, "env", "knob1", &got), 0); /* taken once */
    assert_int_equal(ccgw_alarm_store_expire(s, &got), 1);
    assert_string_equal(got[0].code, "on_battery");
    ccgw_alarm_record_clear(&got[0]);
    free(got);
    assert_int_equal(ccgw_alarm_store_flush(s), 0);
    ccgw_alarm_store_free(s);

    /* corrupt: moved aside, empty store, no crash */
    char path[400];
    snprintf(path, sizeof path, "%s/alarms.json", sub);
    FILE *f = fopen(path, "w");
    fputs("{\"alarms\": [ {broken", f);
    fclose(f);
    s = ccgw_alarm_store_open(sub);
    assert_true(ccgw_alarm_store_persistent(s));
    assert_int_equal(ccgw_alarm_store_pending(s), 0);
    assert_int_not_equal(access(path, F_OK), 0);
    ccgw_alarm_store_free(s);
    DIR *dd = opendir(sub);
    int aside = 0;
    for (struct dirent *de; (de = readdir(dd)) != NULL;)
        aside += strncmp(de->d_name, "alarms.json.corrupt-", 20) == 0;
    closedir(dd);
    assert_int_equal(aside, 1);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void store_unwritable(void **state)
{
    (void)state;
    /* a regular file where the folder should be */
    char path[] = "/tmp/ccgw-alarm-file-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char sub[300];
    snprintf(sub, sizeof sub, "%s/data", path);
    ccgw_alarm_store_t *s = ccgw_alarm_store_open(sub);
    assert_non_null(s);
    assert_false(ccgw_alarm_store_persistent(s));
    ccgw_alarm_record_t r = {.class_name = "env", .device = "d", .code = "c", .raised_at = "2026-11-23T10:00:00.000Z"};
    ccgw_alarm_store_put(s, &r); /* kept in memory only */
    assert_int_equal(ccgw_alarm_store_start(s), 0);
    ccgw_alarm_store_free(s);
    unlink(path);
    s = ccgw_alarm_store_open(NULL);
    assert_false(ccgw_alarm_store_persistent(s));
    ccgw_alarm_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(glob),
        cmocka_unit_test(high_on_delay_deadband_off_delay),
        cmocka_unit_test(low_and_tick),
        cmocka_unit_test(boolean_rules),
        cmocka_unit_test(rate_limit),
        cmocka_unit_test(restore),
        cmocka_unit_test(config_rules),
        cmocka_unit_test(config_rule_errors),
        cmocka_unit_test(store_round_trip),
        cmocka_unit_test(store_unwritable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
