/*
 * test_snmp_map - the pure mapping of the snmp plugin (plugins/snmp/snmp_map.c):
 * numeric OIDs, UPS-MIB values -> flags / status / alarms / power events,
 * point scale and offset, threshold alarms, trap OID -> action.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "snmp_map.h"

static void oid_parse_format(void **state)
{
    (void)state;
    uint32_t o[SNMP_OID_MAX];
    char buf[256];
    assert_int_equal(snmp_oid_parse("1.3.6.1.2.1.33.1.2.1.0", o, SNMP_OID_MAX), 11);
    assert_string_equal(snmp_oid_format(o, 11, buf, sizeof buf), "1.3.6.1.2.1.33.1.2.1.0");
    assert_int_equal(snmp_oid_parse(".1.3.6.1.4.1.4294967295", o, SNMP_OID_MAX), 7);
    assert_int_equal(o[6], 4294967295u);
    assert_int_equal(snmp_oid_parse("1.3.6.1.4.1.4294967296", o, SNMP_OID_MAX), -1);
    assert_int_equal(snmp_oid_parse("1", o, SNMP_OID_MAX), -1);
    assert_int_equal(snmp_oid_parse("1.3.", o, SNMP_OID_MAX), -1);
    assert_int_equal(snmp_oid_parse("1..3", o, SNMP_OID_MAX), -1);
    assert_int_equal(snmp_oid_parse("iso.3.6", o, SNMP_OID_MAX), -1);
    assert_int_equal(snmp_oid_parse("", o, SNMP_OID_MAX), -1);
    assert_int_equal(snmp_oid_parse(NULL, o, SNMP_OID_MAX), -1);
    assert_int_equal(snmp_oid_parse("1.2.3.4", o, 3), -1);
    /* every profile OID parses and lies under 1.3.6.1.2.1.33 */
    static const uint32_t ups[] = {1, 3, 6, 1, 2, 1, 33};
    for (int i = 0; i < UPSMIB_N; i++) {
        int n = snmp_oid_parse(upsmib_objs[i].oid, o, SNMP_OID_MAX);
        assert_true(n > 7);
        assert_true(snmp_oid_has_prefix(o, (size_t)n, ups, 7));
    }
}

static upsmib_values_t vals(int64_t batt, int64_t secs, int64_t source, int64_t load, int64_t alarms)
{
    upsmib_values_t v;
    memset(&v, 0, sizeof v);
    v.have[UPSMIB_BATTERY_STATUS] = true;
    v.v[UPSMIB_BATTERY_STATUS] = batt;
    v.have[UPSMIB_SECONDS_ON_BATTERY] = true;
    v.v[UPSMIB_SECONDS_ON_BATTERY] = secs;
    v.have[UPSMIB_OUTPUT_SOURCE] = source > 0;
    v.v[UPSMIB_OUTPUT_SOURCE] = source;
    v.have[UPSMIB_OUTPUT_LOAD] = true;
    v.v[UPSMIB_OUTPUT_LOAD] = load;
    v.have[UPSMIB_ALARMS_PRESENT] = true;
    v.v[UPSMIB_ALARMS_PRESENT] = alarms;
    return v;
}

static void ups_status_mapping(void **state)
{
    (void)state;
    char buf[128];
    upsmib_values_t v = vals(2, 0, 3, 25, 0);
    unsigned f = upsmib_flags(&v);
    assert_int_equal(f, UPS_F_OL);
    assert_string_equal(ups_status_name(f), "on_line");
    assert_string_equal(ups_flags_text(f, buf, sizeof buf), "OL");

    v = vals(2, 12, 5, 25, 1);
    f = upsmib_flags(&v);
    assert_string_equal(ups_status_name(f), "on_battery");
    assert_string_equal(ups_flags_text(f, buf, sizeof buf), "OB DISCHRG ALARM");

    v = vals(3, 40, 5, 25, 2); /* low */
    f = upsmib_flags(&v);
    assert_string_equal(ups_status_name(f), "low_battery");
    assert_string_equal(ups_flags_text(f, buf, sizeof buf), "OB DISCHRG LB ALARM");
    v = vals(4, 40, 5, 25, 2); /* depleted counts as low */
    assert_true(upsmib_flags(&v) & UPS_F_LB);

    v = vals(2, 0, 4, 25, 0);
    assert_string_equal(ups_status_name(upsmib_flags(&v)), "bypass");
    v = vals(2, 0, 2, 0, 0);
    assert_string_equal(ups_status_name(upsmib_flags(&v)), "off");
    v = vals(2, 0, 6, 25, 0);
    assert_int_equal(upsmib_flags(&v), UPS_F_OL | UPS_F_BOOST);
    v = vals(2, 0, 7, 25, 0);
    assert_int_equal(upsmib_flags(&v), UPS_F_OL | UPS_F_TRIM);
    v = vals(2, 0, 3, 120, 0);
    assert_int_equal(upsmib_flags(&v), UPS_F_OL | UPS_F_OVER);
    /* no upsOutputSource: seconds on battery decide */
    v = vals(2, 5, 0, 25, 0);
    assert_string_equal(ups_status_name(upsmib_flags(&v)), "on_battery");
    v = vals(1, 0, 1, 25, 0);
    assert_string_equal(ups_status_name(upsmib_flags(&v)), "unknown");
}

static void ups_events_and_alarms(void **state)
{
    (void)state;
    unsigned ol = UPS_F_OL, ob = UPS_F_OB | UPS_F_DISCHRG, lb = ob | UPS_F_LB;
    assert_null(ups_power_event(false, 0, ob));
    assert_string_equal(ups_power_event(true, ol, ob), "power.lost");
    assert_null(ups_power_event(true, ob, lb));
    assert_string_equal(ups_power_event(true, lb, ol), "power.restored");
    assert_null(ups_power_event(true, ol, ol | UPS_F_OVER));
    assert_null(ups_power_event(true, UPS_F_BYPASS, ol));

    /* the vocabulary of plugins/nut */
    assert_int_equal(UPS_N_ALARMS, 4);
    assert_string_equal(ups_alarm_defs[0].code, "on_battery");
    assert_int_equal(ups_alarm_defs[0].severity, CCGW_SEV_MAJOR);
    assert_int_equal(ups_alarm_defs[0].flag, UPS_F_OB);
    assert_string_equal(ups_alarm_defs[1].code, "low_battery");
    assert_int_equal(ups_alarm_defs[1].severity, CCGW_SEV_CRITICAL);
    assert_string_equal(ups_alarm_defs[2].code, "replace_battery");
    assert_string_equal(ups_alarm_defs[3].code, "overload");
    assert_int_equal(ups_alarm_index("overload"), 3);
    assert_int_equal(ups_alarm_index("fan_failure"), -1);
    assert_int_equal(ups_alarm_index(NULL), -1);

    /* telemetry scaling of the profile */
    assert_string_equal(upsmib_objs[UPSMIB_MINUTES_REMAINING].telemetry, "battery.runtime");
    assert_true(upsmib_objs[UPSMIB_MINUTES_REMAINING].scale == 60);
    assert_string_equal(upsmib_objs[UPSMIB_MINUTES_REMAINING].unit, "s");
    assert_true(upsmib_objs[UPSMIB_BATTERY_VOLTAGE].scale == 0.1);
    assert_true(upsmib_objs[UPSMIB_INPUT_FREQUENCY].scale == 0.1);
    assert_string_equal(upsmib_objs[UPSMIB_INPUT_FREQUENCY].unit, "Hz");
    assert_string_equal(upsmib_objs[UPSMIB_CHARGE_REMAINING].telemetry, "battery.charge");
    assert_string_equal(upsmib_objs[UPSMIB_OUTPUT_LOAD].telemetry, "ups.load");
    assert_null(upsmib_objs[UPSMIB_OUTPUT_SOURCE].telemetry);
}

static void points_and_thresholds(void **state)
{
    (void)state;
    assert_true(snmp_point_value(215, 0.1, 0) > 21.49 && snmp_point_value(215, 0.1, 0) < 21.51);
    assert_true(snmp_point_value(100, 0.5, -40) == 10);
    snmp_pt_alarm_t a = {.cmp = PT_CMP_ABOVE, .above = 27};
    assert_false(snmp_point_in_alarm(&a, 27));
    assert_true(snmp_point_in_alarm(&a, 27.1));
    a = (snmp_pt_alarm_t){.cmp = PT_CMP_BELOW | PT_CMP_ABOVE, .below = 18, .above = 27};
    assert_true(snmp_point_in_alarm(&a, 17.9));
    assert_false(snmp_point_in_alarm(&a, 20));
    assert_true(snmp_point_in_alarm(&a, 30));
    a = (snmp_pt_alarm_t){.cmp = PT_CMP_EQUALS, .equals = 1};
    assert_true(snmp_point_in_alarm(&a, 1));
    assert_false(snmp_point_in_alarm(&a, 0));
    assert_false(snmp_point_in_alarm(&a, 0.0 / 0.0));
    a = (snmp_pt_alarm_t){0};
    assert_false(snmp_point_in_alarm(&a, 1e9));
    assert_false(snmp_point_in_alarm(NULL, 1));
}

static void traps(void **state)
{
    (void)state;
    uint32_t o[SNMP_OID_MAX];
    int n = snmp_oid_parse("1.3.6.1.2.1.33.2.0.1", o, SNMP_OID_MAX);
    assert_int_equal(upsmib_trap_kind(o, (size_t)n), UPSTRAP_ON_BATTERY);
    n = snmp_oid_parse("1.3.6.1.2.1.33.2.0.3", o, SNMP_OID_MAX);
    assert_int_equal(upsmib_trap_kind(o, (size_t)n), UPSTRAP_ALARM_ENTRY_ADDED);
    n = snmp_oid_parse("1.3.6.1.2.1.33.2.0.4", o, SNMP_OID_MAX);
    assert_int_equal(upsmib_trap_kind(o, (size_t)n), UPSTRAP_ALARM_ENTRY_REMOVED);
    n = snmp_oid_parse("1.3.6.1.2.1.33.2.0.9", o, SNMP_OID_MAX);
    assert_int_equal(upsmib_trap_kind(o, (size_t)n), UPSTRAP_NONE);
    n = snmp_oid_parse("1.3.6.1.2.1.33.2.0.1.5", o, SNMP_OID_MAX);
    assert_int_equal(upsmib_trap_kind(o, (size_t)n), UPSTRAP_NONE);

    ccgw_severity_t sev = CCGW_SEV_INFO;
    n = snmp_oid_parse("1.3.6.1.2.1.33.1.6.3.3", o, SNMP_OID_MAX);
    assert_string_equal(upsmib_well_known_alarm(o, (size_t)n, &sev), "low_battery");
    assert_int_equal(sev, CCGW_SEV_CRITICAL);
    n = snmp_oid_parse("1.3.6.1.2.1.33.1.6.3.8", o, SNMP_OID_MAX);
    assert_string_equal(upsmib_well_known_alarm(o, (size_t)n, &sev), "overload");
    n = snmp_oid_parse("1.3.6.1.2.1.33.1.6.3.1", o, SNMP_OID_MAX);
    assert_string_equal(upsmib_well_known_alarm(o, (size_t)n, &sev), "replace_battery");
    n = snmp_oid_parse("1.3.6.1.2.1.33.1.6.3.16", o, SNMP_OID_MAX);
    assert_string_equal(upsmib_well_known_alarm(o, (size_t)n, &sev), "fan_failure");
    n = snmp_oid_parse("1.3.6.1.2.1.33.1.6.3.25", o, SNMP_OID_MAX);
    assert_null(upsmib_well_known_alarm(o, (size_t)n, &sev));
    n = snmp_oid_parse("1.3.6.1.2.1.33.1.6.3.0", o, SNMP_OID_MAX);
    assert_null(upsmib_well_known_alarm(o, (size_t)n, &sev));

    snmp_trap_rule_t rules[2];
    memset(rules, 0, sizeof rules);
    rules[0].oid_len = (size_t)snmp_oid_parse("1.3.6.1.4.1.9999.0.1", rules[0].oid, SNMP_OID_MAX);
    rules[1].oid_len = (size_t)snmp_oid_parse("1.3.6.1.4.1.9999.0.2", rules[1].oid, SNMP_OID_MAX);
    n = snmp_oid_parse("1.3.6.1.4.1.9999.0.2", o, SNMP_OID_MAX);
    assert_int_equal(snmp_trap_match(rules, 2, o, (size_t)n), 1);
    n = snmp_oid_parse("1.3.6.1.4.1.9999.0", o, SNMP_OID_MAX);
    assert_int_equal(snmp_trap_match(rules, 2, o, (size_t)n), -1);
    n = snmp_oid_parse("1.3.6.1.4.1.9999.0.1.1", o, SNMP_OID_MAX);
    assert_int_equal(snmp_trap_match(rules, 2, o, (size_t)n), -1);
}

static void names(void **state)
{
    (void)state;
    assert_true(snmp_device_id_ok("room1-ups"));
    assert_false(snmp_device_id_ok("Room1"));
    assert_false(snmp_device_id_ok(""));
    assert_true(snmp_name_ok("supply_air.temperature"));
    assert_true(snmp_name_ok("1.3.6.1"));
    assert_false(snmp_name_ok("a b"));
    assert_true(snmp_code_ok("high_temperature"));
    assert_false(snmp_code_ok("High"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(oid_parse_format),     cmocka_unit_test(ups_status_mapping),
        cmocka_unit_test(ups_events_and_alarms), cmocka_unit_test(points_and_thresholds),
        cmocka_unit_test(traps),                 cmocka_unit_test(names),
    };
    return cmocka_run_group_tests_name("snmp_map", tests, NULL, NULL);
}
