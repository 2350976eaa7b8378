/*
 * snmp_map.c - pure mapping code of the snmp plugin (see snmp_map.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "snmp_map.h"

int snmp_oid_parse(const char *text, uint32_t *out, size_t max)
{
    if (!text)
        return -1;
    const char *p = text;
    if (*p == '.')
        p++;
    size_t n = 0;
    while (*p) {
        if (*p < '0' || *p > '9' || n >= max)
            return -1;
        uint64_t v = 0;
        while (*p >= '0' && *p <= '9') {
            v = v * 10u + (uint64_t)(*p - '0');
            if (v > UINT32_MAX)
                return -1;
            p++;
        }
        out[n++] = (uint32_t)v;
        if (*p == '.') {
            p++;
            if (!*p)
                return -1;
        } else if (*p) {
            return -1;
        }
    }
    return n >= 2 ? (int)n : -1;
}

const char *snmp_oid_format(const uint32_t *oid, size_t n, char *buf, size_t len)
{
    size_t off = 0;
    if (len)
        buf[0] = '\0';
    for (size_t i = 0; i < n && off < len; i++) {
        int w = snprintf(buf + off, len - off, "%s%u", i ? "." : "", (unsigned)oid[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    return buf;
}

bool snmp_oid_equal(const uint32_t *a, size_t na, const uint32_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

bool snmp_oid_has_prefix(const uint32_t *oid, size_t n, const uint32_t *prefix, size_t np)
{
    return n >= np && (np == 0 || memcmp(oid, prefix, np * sizeof *oid) == 0);
}

/* ---- UPS-MIB ---- */

const upsmib_obj_t upsmib_objs[UPSMIB_N] = {
    [UPSMIB_BATTERY_STATUS] = {"1.3.6.1.2.1.33.1.2.1.0", NULL, NULL, 1},
    [UPSMIB_SECONDS_ON_BATTERY] = {"1.3.6.1.2.1.33.1.2.2.0", NULL, NULL, 1},
    [UPSMIB_MINUTES_REMAINING] = {"1.3.6.1.2.1.33.1.2.3.0", "battery.runtime", "s", 60},
    [UPSMIB_CHARGE_REMAINING] = {"1.3.6.1.2.1.33.1.2.4.0", "battery.charge", "%", 1},
    [UPSMIB_BATTERY_VOLTAGE] = {"1.3.6.1.2.1.33.1.2.5.0", "battery.voltage", "V", 0.1},
    [UPSMIB_BATTERY_TEMPERATURE] = {"1.3.6.1.2.1.33.1.2.7.0", "ups.temperature", "Cel", 1},
    [UPSMIB_INPUT_FREQUENCY] = {"1.3.6.1.2.1.33.1.3.3.1.2.1", "input.frequency", "Hz", 0.1},
    [UPSMIB_INPUT_VOLTAGE] = {"1.3.6.1.2.1.33.1.3.3.1.3.1", "input.voltage", "V", 1},
    [UPSMIB_OUTPUT_SOURCE] = {"1.3.6.1.2.1.33.1.4.1.0", NULL, NULL, 1},
    [UPSMIB_OUTPUT_VOLTAGE] = {"1.3.6.1.2.1.33.1.4.4.1.2.1", "output.voltage", "V", 1},
    [UPSMIB_OUTPUT_LOAD] = {"1.3.6.1.2.1.33.1.4.4.1.5.1", "ups.load", "%", 1},
    [UPSMIB_ALARMS_PRESENT] = {"1.3.6.1.2.1.33.1.6.1.0", NULL, NULL, 1},
};

unsigned upsmib_flags(const upsmib_values_t *v)
{
    unsigned f = 0;
    int64_t src = v->have[UPSMIB_OUTPUT_SOURCE] ? v->v[UPSMIB_OUTPUT_SOURCE] : 1;
    switch (src) {
    case 2: f |= UPS_F_OFF; break;
    case 3: f |= UPS_F_OL; break;
    case 4: f |= UPS_F_BYPASS; break;
    case 5: f |= UPS_F_OB | UPS_F_DISCHRG; break;
    case 6: f |= UPS_F_OL | UPS_F_BOOST; break;
    case 7: f |= UPS_F_OL | UPS_F_TRIM; break;
    default:
        if (v->have[UPSMIB_SECONDS_ON_BATTERY] && v->v[UPSMIB_SECONDS_ON_BATTERY] > 0)
            f |= UPS_F_OB | UPS_F_DISCHRG;
        break;
    }
    if (v->have[UPSMIB_BATTERY_STATUS] &&
        (v->v[UPSMIB_BATTERY_STATUS] == 3 || v->v[UPSMIB_BATTERY_STATUS] == 4))
        f |= UPS_F_LB;
    if (v->have[UPSMIB_OUTPUT_LOAD] && v->v[UPSMIB_OUTPUT_LOAD] > 100)
        f |= UPS_F_OVER;
    if (v->have[UPSMIB_ALARMS_PRESENT] && v->v[UPSMIB_ALARMS_PRESENT] > 0)
        f |= UPS_F_ALARM;
    return f;
}

const char *ups_flags_text(unsigned flags, char *buf, size_t len)
{
    static const struct {
        unsigned f;
        const char *t;
    } names[] = {
        {UPS_F_OFF, "OFF"},     {UPS_F_OL, "OL"},       {UPS_F_OB, "OB"},
        {UPS_F_BYPASS, "BYPASS"}, {UPS_F_DISCHRG, "DISCHRG"}, {UPS_F_LB, "LB"},
        {UPS_F_RB, "RB"},       {UPS_F_OVER, "OVER"},   {UPS_F_TRIM, "TRIM"},
        {UPS_F_BOOST, "BOOST"}, {UPS_F_ALARM, "ALARM"},
    };
    size_t off = 0;
    if (len)
        buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(flags & names[i].f))
            continue;
        int w = snprintf(buf + off, len - off, "%s%s", off ? " " : "", names[i].t);
        if (w < 0 || (size_t)w >= len - off)
            break;
        off += (size_t)w;
    }
    return buf;
}

const char *ups_status_name(unsigned flags)
{
    if (flags & UPS_F_OFF)
        return "off";
    if (flags & UPS_F_LB)
        return "low_battery";
    if (flags & UPS_F_OB)
        return "on_battery";
    if (flags & UPS_F_BYPASS)
        return "bypass";
    if (flags & UPS_F_OL)
        return "on_line";
    return "unknown";
}

static bool on_mains(unsigned f)
{
    return (f & UPS_F_OL) && !(f & UPS_F_OB);
}

const char *ups_power_event(bool have_prev, unsigned prev, unsigned cur)
{
    if (!have_prev)
        return NULL;
    if (on_mains(prev) && (cur & UPS_F_OB))
        return "power.lost";
    if ((prev & UPS_F_OB) && on_mains(cur))
        return "power.restored";
    return NULL;
}

const ups_alarm_def_t ups_alarm_defs[UPS_N_ALARMS] = {
    {"on_battery", UPS_F_OB, CCGW_SEV_MAJOR, "UPS on battery: mains power lost"},
    {"low_battery", UPS_F_LB, CCGW_SEV_CRITICAL, "UPS battery low: shutdown imminent"},
    {"replace_battery", UPS_F_RB, CCGW_SEV_MINOR, "UPS battery needs replacing"},
    {"overload", UPS_F_OVER, CCGW_SEV_MAJOR, "UPS overloaded"},
};

int ups_alarm_index(const char *code)
{
    for (int i = 0; code && i < UPS_N_ALARMS; i++) {
        if (strcmp(ups_alarm_defs[i].code, code) == 0)
            return i;
    }
    return -1;
}

const char *upsmib_well_known_alarm(const uint32_t *oid, size_t n, ccgw_severity_t *severity)
{
    static const uint32_t base[] = {1, 3, 6, 1, 2, 1, 33, 1, 6, 3};
    static const struct {
        const char *code;
        ccgw_severity_t sev;
    } names[] = {
        {NULL, CCGW_SEV_INFO},
        {"replace_battery", CCGW_SEV_MINOR},      /* 1 upsAlarmBatteryBad */
        {"on_battery", CCGW_SEV_MAJOR},           /* 2 upsAlarmOnBattery */
        {"low_battery", CCGW_SEV_CRITICAL},       /* 3 upsAlarmLowBattery */
        {"depleted_battery", CCGW_SEV_CRITICAL},  /* 4 upsAlarmDepletedBattery */
        {"temperature_bad", CCGW_SEV_MAJOR},      /* 5 upsAlarmTempBad */
        {"input_bad", CCGW_SEV_MAJOR},            /* 6 upsAlarmInputBad */
        {"output_bad", CCGW_SEV_MAJOR},           /* 7 upsAlarmOutputBad */
        {"overload", CCGW_SEV_MAJOR},             /* 8 upsAlarmOutputOverload */
        {"on_bypass", CCGW_SEV_MAJOR},            /* 9 upsAlarmOnBypass */
        {"bypass_bad", CCGW_SEV_MAJOR},           /* 10 upsAlarmBypassBad */
        {"output_off_as_requested", CCGW_SEV_MINOR}, /* 11 */
        {"ups_off_as_requested", CCGW_SEV_MINOR}, /* 12 */
        {"charger_failed", CCGW_SEV_MAJOR},       /* 13 */
        {"ups_output_off", CCGW_SEV_MAJOR},       /* 14 */
        {"ups_system_off", CCGW_SEV_MAJOR},       /* 15 */
        {"fan_failure", CCGW_SEV_MAJOR},          /* 16 */
        {"fuse_failure", CCGW_SEV_MAJOR},         /* 17 */
        {"general_fault", CCGW_SEV_MAJOR},        /* 18 */
        {"diagnostic_test_failed", CCGW_SEV_MINOR}, /* 19 */
        {"communications_lost", CCGW_SEV_MAJOR},  /* 20 */
        {"awaiting_power", CCGW_SEV_MINOR},       /* 21 */
        {"shutdown_pending", CCGW_SEV_CRITICAL},  /* 22 */
        {"shutdown_imminent", CCGW_SEV_CRITICAL}, /* 23 */
        {"test_in_progress", CCGW_SEV_INFO},      /* 24 */
    };
    size_t nb = sizeof base / sizeof base[0];
    if (n != nb + 1 || !snmp_oid_has_prefix(oid, n, base, nb))
        return NULL;
    uint32_t k = oid[nb];
    if (k == 0 || k >= sizeof names / sizeof names[0])
        return NULL;
    if (severity)
        *severity = names[k].sev;
    return names[k].code;
}

/* ---- points ---- */

double snmp_point_value(double raw, double scale, double offset)
{
    return raw * scale + offset;
}

bool snmp_point_in_alarm(const snmp_pt_alarm_t *a, double value)
{
    if (!a || !a->cmp || isnan(value))
        return false;
    if ((a->cmp & PT_CMP_ABOVE) && value > a->above)
        return true;
    if ((a->cmp & PT_CMP_BELOW) && value < a->below)
        return true;
    if (a->cmp & PT_CMP_EQUALS) {
        double tol = 1e-9 * fmax(1.0, fabs(a->equals));
        if (fabs(value - a->equals) <= tol)
            return true;
    }
    return false;
}

/* ---- traps ---- */

upstrap_t upsmib_trap_kind(const uint32_t *oid, size_t n)
{
    static const uint32_t base[] = {1, 3, 6, 1, 2, 1, 33, 2, 0};
    size_t nb = sizeof base / sizeof base[0];
    if (n != nb + 1 || !snmp_oid_has_prefix(oid, n, base, nb))
        return UPSTRAP_NONE;
    switch (oid[nb]) {
    case 1: return UPSTRAP_ON_BATTERY;
    case 2: return UPSTRAP_TEST_COMPLETED;
    case 3: return UPSTRAP_ALARM_ENTRY_ADDED;
    case 4: return UPSTRAP_ALARM_ENTRY_REMOVED;
    default: return UPSTRAP_NONE;
    }
}

int snmp_trap_match(const snmp_trap_rule_t *rules, size_t n, const uint32_t *oid, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (snmp_oid_equal(rules[i].oid, rules[i].oid_len, oid, len))
            return (int)i;
    }
    return -1;
}

static bool chars_ok(const char *s, bool upper, size_t max)
{
    if (!s || !*s || strlen(s) > max)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')
            continue;
        if (upper && c >= 'A' && c <= 'Z')
            continue;
        return false;
    }
    return true;
}

bool snmp_device_id_ok(const char *s)
{
    return chars_ok(s, false, 64);
}

bool snmp_code_ok(const char *s)
{
    return chars_ok(s, false, 64);
}

bool snmp_name_ok(const char *s)
{
    return chars_ok(s, true, 64);
}
