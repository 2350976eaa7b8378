/*
 * test_nut_proto - the nut plugin's pure code (plugins/nut/nut_proto.c):
 * protocol word splitting and quoting, ups.status flags -> normalised status,
 * alarms and power events (the on line -> on battery -> low battery -> on
 * line sequence), the telemetry variables and their SenML units, number
 * parsing and upsd error texts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nut_proto.h"

static void test_split_plain(void **state)
{
    (void)state;
    char line[] = "VAR ups1 ups.status \"OB DISCHRG LB\"";
    char *w[8];
    assert_int_equal(nut_split(line, w, 8), 4);
    assert_string_equal(w[0], "VAR");
    assert_string_equal(w[1], "ups1");
    assert_string_equal(w[2], "ups.status");
    assert_string_equal(w[3], "OB DISCHRG LB");
}

static void test_split_escapes(void **state)
{
    (void)state;
    char line[] = "VAR u x \"a \\\"quoted\\\" \\\\ word\"  tail";
    char *w[8];
    assert_int_equal(nut_split(line, w, 8), 5);
    assert_string_equal(w[3], "a \"quoted\" \\ word");
    assert_string_equal(w[4], "tail");

    char empty[] = "VAR u x \"\"";
    assert_int_equal(nut_split(empty, w, 8), 4);
    assert_string_equal(w[3], "");

    char blank[] = "   ";
    assert_int_equal(nut_split(blank, w, 8), 0);
}

static void test_split_malformed(void **state)
{
    (void)state;
    char *w[4];
    char unterminated[] = "VAR u x \"abc";
    assert_int_equal(nut_split(unterminated, w, 4), -1);
    char glued[] = "VAR u x \"abc\"def";
    assert_int_equal(nut_split(glued, w, 4), -1);
    char many[] = "a b c d e";
    assert_int_equal(nut_split(many, w, 4), -1);
    char exact[] = "a b c d";
    assert_int_equal(nut_split(exact, w, 4), 4);
}

static void test_quote(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(nut_quote("secret", out, sizeof out), 8);
    assert_string_equal(out, "\"secret\"");
    assert_true(nut_quote("p\"w\\x y", out, sizeof out) > 0);
    assert_string_equal(out, "\"p\\\"w\\\\x y\"");
    /* a newline would inject a second request */
    assert_int_equal(nut_quote("pw\nINSTCMD u load.off", out, sizeof out), -1);
    assert_int_equal(nut_quote("pw\r", out, sizeof out), -1);
    /* does not fit */
    assert_int_equal(nut_quote("0123456789", out, 11), -1);
    assert_int_equal(nut_quote("0123456789", out, 13), 12);
    /* round trip through the splitter */
    char line[64];
    char q[32];
    assert_true(nut_quote("a \"b\" \\c", q, sizeof q) > 0);
    strcpy(line, "PASSWORD ");
    strcat(line, q);
    char *w[4];
    assert_int_equal(nut_split(line, w, 4), 2);
    assert_string_equal(w[1], "a \"b\" \\c");
}

static void test_names(void **state)
{
    (void)state;
    assert_true(nut_name_ok("ups1"));
    assert_true(nut_name_ok("Room-1_UPS.a"));
    assert_false(nut_name_ok(""));
    assert_false(nut_name_ok(NULL));
    assert_false(nut_name_ok("ups 1"));
    assert_false(nut_name_ok("ups1\nLIST"));
    assert_false(nut_name_ok("ups@host"));
    assert_true(nut_device_id_ok("room1-ups.a_1"));
    assert_false(nut_device_id_ok("Room1"));
    assert_false(nut_device_id_ok(""));
    char long_id[70];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    assert_false(nut_device_id_ok(long_id));
    long_id[64] = '\0';
    assert_true(nut_device_id_ok(long_id));
}

static void test_status_flags(void **state)
{
    (void)state;
    assert_int_equal(nut_status_flags("OL"), NUT_F_OL);
    assert_int_equal(nut_status_flags("OL CHRG"), NUT_F_OL | NUT_F_CHRG);
    assert_int_equal(nut_status_flags("OB DISCHRG LB"), NUT_F_OB | NUT_F_DISCHRG | NUT_F_LB);
    assert_int_equal(nut_status_flags("  OL   RB  "), NUT_F_OL | NUT_F_RB);
    assert_int_equal(nut_status_flags("OL BYPASS OVER"), NUT_F_OL | NUT_F_BYPASS | NUT_F_OVER);
    assert_int_equal(nut_status_flags("OFF"), NUT_F_OFF);
    assert_int_equal(nut_status_flags("OL TRIM BOOST CAL HB FSD ALARM"),
                     NUT_F_OL | NUT_F_TRIM | NUT_F_BOOST | NUT_F_CAL | NUT_F_HB | NUT_F_FSD |
                         NUT_F_ALARM);
    /* prefixes and unknown words are not flags we know */
    assert_int_equal(nut_status_flags("OLX"), NUT_F_OTHER);
    assert_int_equal(nut_status_flags("O"), NUT_F_OTHER);
    assert_int_equal(nut_status_flags("WAIT OL"), NUT_F_WAIT | NUT_F_OL);
    assert_int_equal(nut_status_flags("XYZ OL"), NUT_F_OTHER | NUT_F_OL);
    assert_int_equal(nut_status_flags(""), 0);
    assert_int_equal(nut_status_flags(NULL), 0);
}

static void test_status_name(void **state)
{
    (void)state;
    assert_string_equal(nut_status_name(nut_status_flags("OL")), "on_line");
    assert_string_equal(nut_status_name(nut_status_flags("OL CHRG")), "on_line");
    assert_string_equal(nut_status_name(nut_status_flags("OB DISCHRG")), "on_battery");
    assert_string_equal(nut_status_name(nut_status_flags("OB DISCHRG LB")), "low_battery");
    assert_string_equal(nut_status_name(nut_status_flags("OL LB CHRG")), "low_battery");
    assert_string_equal(nut_status_name(nut_status_flags("OL BYPASS")), "bypass");
    assert_string_equal(nut_status_name(nut_status_flags("BYPASS OB")), "on_battery");
    assert_string_equal(nut_status_name(nut_status_flags("OFF OL")), "off");
    assert_string_equal(nut_status_name(nut_status_flags("OFF OB LB")), "off");
    assert_string_equal(nut_status_name(nut_status_flags("OL RB OVER")), "on_line");
    assert_string_equal(nut_status_name(nut_status_flags("")), "unknown");
    assert_string_equal(nut_status_name(nut_status_flags("WAIT")), "unknown");
}

static void test_status_pending(void **state)
{
    (void)state;
    assert_true(nut_status_pending(nut_status_flags("")));
    assert_true(nut_status_pending(nut_status_flags("WAIT")));
    assert_true(nut_status_pending(nut_status_flags("WAIT CHRG")));
    assert_false(nut_status_pending(nut_status_flags("WAIT OL")));
    assert_false(nut_status_pending(nut_status_flags("OL")));
    assert_false(nut_status_pending(nut_status_flags("OB LB")));
    assert_false(nut_status_pending(nut_status_flags("OFF")));
    /* unknown flags alone: the UPS did answer; status "unknown" */
    assert_false(nut_status_pending(nut_status_flags("XYZ")));
}

static int alarm_index(const char *code)
{
    for (int i = 0; i < NUT_N_ALARMS; i++)
        if (strcmp(nut_alarm_defs[i].code, code) == 0)
            return i;
    return -1;
}

/* The alarm codes active for a status, as a bit set over nut_alarm_defs. */
static unsigned alarms_for(const char *status)
{
    unsigned f = nut_status_flags(status), set = 0;
    for (unsigned i = 0; i < NUT_N_ALARMS; i++)
        if (f & nut_alarm_defs[i].flag)
            set |= 1u << i;
    return set;
}

static void test_alarms(void **state)
{
    (void)state;
    int ob = alarm_index("on_battery"), lb = alarm_index("low_battery");
    int rb = alarm_index("replace_battery"), over = alarm_index("overload");
    assert_true(ob >= 0 && lb >= 0 && rb >= 0 && over >= 0);
    assert_int_equal(nut_alarm_defs[lb].severity, CCGW_SEV_CRITICAL);
    assert_int_equal(nut_alarm_defs[ob].severity, CCGW_SEV_MAJOR);
    assert_int_equal(alarms_for("OL CHRG"), 0);
    assert_int_equal(alarms_for("OB DISCHRG"), 1u << ob);
    assert_int_equal(alarms_for("OB DISCHRG LB"), (1u << ob) | (1u << lb));
    assert_int_equal(alarms_for("OL RB"), 1u << rb);
    assert_int_equal(alarms_for("OL OVER"), 1u << over);
    assert_int_equal(alarms_for("OB LB RB OVER"), 0xfu);
}

/* The sequence of the integration test: on line -> on battery -> low
 * battery -> back on line, with the events it must produce. */
static void test_power_events(void **state)
{
    (void)state;
    static const struct {
        const char *status;
        const char *event;
    } seq[] = {
        {"OL", NULL},            /* first reading: nothing seen before */
        {"OL CHRG", NULL},
        {"OB DISCHRG", "power.lost"},
        {"OB DISCHRG LB", NULL},
        {"OL CHRG LB", "power.restored"},
        {"OL CHRG", NULL},
        {"OL", NULL},
    };
    bool have = false;
    unsigned prev = 0;
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        unsigned cur = nut_status_flags(seq[i].status);
        const char *ev = nut_power_event(have, prev, cur);
        if (seq[i].event) {
            assert_non_null(ev);
            assert_string_equal(ev, seq[i].event);
        } else {
            assert_null(ev);
        }
        have = true;
        prev = cur;
    }
    /* first reading on battery: the loss was not seen */
    assert_null(nut_power_event(false, 0, nut_status_flags("OB")));
    /* bypass, off and unknown are not power events */
    assert_null(nut_power_event(true, nut_status_flags("OL"), nut_status_flags("OL BYPASS")));
    assert_null(nut_power_event(true, nut_status_flags("OB"), nut_status_flags("OFF")));
    assert_null(nut_power_event(true, nut_status_flags("OFF"), nut_status_flags("OB")));
    assert_null(nut_power_event(true, 0, nut_status_flags("OB")));
    /* "OL OB" (some drivers during a switch) counts as on battery */
    assert_string_equal(nut_power_event(true, nut_status_flags("OL"), nut_status_flags("OL OB")),
                        "power.lost");
}

static void test_vars(void **state)
{
    (void)state;
    static const struct {
        const char *name, *unit;
    } want[] = {
        {"battery.charge", "%"}, {"battery.runtime", "s"}, {"battery.voltage", "V"},
        {"input.voltage", "V"},  {"input.frequency", "Hz"}, {"output.voltage", "V"},
        {"ups.load", "%"},       {"ups.temperature", "Cel"},
    };
    assert_int_equal(NUT_N_VARS, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int k = nut_var_index(want[i].name);
        assert_true(k >= 0);
        assert_string_equal(nut_var_defs[k].unit, want[i].unit);
    }
    assert_int_equal(nut_var_index("ups.status"), -1);
    assert_int_equal(nut_var_index("battery"), -1);
    assert_int_equal(nut_var_index(NULL), -1);
}

static void test_numbers(void **state)
{
    (void)state;
    double d;
    bool is_int;
    long long i;
    assert_true(nut_parse_number("100", &d, &is_int, &i));
    assert_true(is_int);
    assert_int_equal(i, 100);
    assert_true(nut_parse_number("230.1", &d, &is_int, &i));
    assert_false(is_int);
    assert_true(d > 230.09 && d < 230.11);
    assert_true(nut_parse_number("-5", &d, &is_int, &i));
    assert_int_equal(i, -5);
    assert_true(nut_parse_number("1e3", &d, &is_int, NULL));
    assert_false(is_int);
    assert_true(nut_parse_number(" 27.10 ", &d, NULL, NULL));
    assert_false(nut_parse_number("", &d, NULL, NULL));
    assert_false(nut_parse_number("OL", &d, NULL, NULL));
    assert_false(nut_parse_number("nan", &d, NULL, NULL));
    assert_false(nut_parse_number("inf", &d, NULL, NULL));
    assert_false(nut_parse_number("0x10", &d, NULL, NULL));
    assert_false(nut_parse_number("12 V", &d, NULL, NULL));
    assert_false(nut_parse_number("1e999", &d, NULL, NULL));
    assert_false(nut_parse_number(NULL, &d, NULL, NULL));
}

static void test_errors(void **state)
{
    (void)state;
    assert_true(nut_err_is_offline("DATA-STALE"));
    assert_true(nut_err_is_offline("DRIVER-NOT-CONNECTED"));
    assert_true(nut_err_is_offline("UNKNOWN-UPS"));
    assert_false(nut_err_is_offline("ACCESS-DENIED"));
    assert_false(nut_err_is_offline("WHATEVER"));
    assert_non_null(strstr(nut_err_text("DRIVER-NOT-CONNECTED"), "driver"));
    assert_non_null(strstr(nut_err_text("ACCESS-DENIED"), "password"));
    assert_non_null(nut_err_text("CMD-NOT-SUPPORTED"));
    assert_null(nut_err_text("NO-SUCH-CODE"));
    assert_null(nut_err_text(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_plain),  cmocka_unit_test(test_split_escapes),
        cmocka_unit_test(test_split_malformed), cmocka_unit_test(test_quote),
        cmocka_unit_test(test_names),        cmocka_unit_test(test_status_flags),
        cmocka_unit_test(test_status_name),  cmocka_unit_test(test_status_pending),
        cmocka_unit_test(test_alarms),
        cmocka_unit_test(test_power_events), cmocka_unit_test(test_vars),
        cmocka_unit_test(test_numbers),      cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("nut_proto", tests, NULL, NULL);
}
