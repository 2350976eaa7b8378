/*
 * snmp_map.h - the pure parts of the snmp plugin (no I/O, no net-snmp, no
 * SDK calls): numeric OID text, the RFC 1628 UPS-MIB profile and what its
 * values mean in the `ups` class (status, raw flags, alarms, power events),
 * user-defined points (scale, offset, threshold alarms) and trap OID ->
 * action matching. Unit-tested in tests/unit/test_snmp_map.c.
 *
 * The `ups` vocabulary (status names, NUT-style raw flags, alarm codes,
 * severities and messages, power.lost / power.restored) is the one of
 * plugins/nut, copied, not shared: both plugins must look the same
 * downstream.
 */
#ifndef CCGW_SNMP_MAP_H
#define CCGW_SNMP_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ccgw/types.h>

#define SNMP_OID_MAX 128 /* sub-identifiers (net-snmp's MAX_OID_LEN) */

/* Parses a numeric OID ("1.3.6.1.2.1.33.2.1.0", an optional leading dot)
 * into out (at most max sub-identifiers, each <= 2^32-1). Returns the
 * number of sub-identifiers (>= 2), or -1 when it is not a numeric OID. */
int snmp_oid_parse(const char *text, uint32_t *out, size_t max);
/* Writes "1.3.6..." (no leading dot). Returns buf. */
const char *snmp_oid_format(const uint32_t *oid, size_t n, char *buf, size_t len);
/* True when a[0..na) equals b[0..nb). */
bool snmp_oid_equal(const uint32_t *a, size_t na, const uint32_t *b, size_t nb);
/* True when oid starts with prefix. */
bool snmp_oid_has_prefix(const uint32_t *oid, size_t n, const uint32_t *prefix, size_t np);

/* ---- UPS-MIB (RFC 1628), 1.3.6.1.2.1.33 ---- */

/* The objects the `ups-mib` profile reads, in this order. */
enum {
    UPSMIB_BATTERY_STATUS = 0,  /* .2.1.0 upsBatteryStatus 1 unknown 2 normal 3 low 4 depleted */
    UPSMIB_SECONDS_ON_BATTERY,  /* .2.2.0 s */
    UPSMIB_MINUTES_REMAINING,   /* .2.3.0 min -> battery.runtime s */
    UPSMIB_CHARGE_REMAINING,    /* .2.4.0 % -> battery.charge */
    UPSMIB_BATTERY_VOLTAGE,     /* .2.5.0 0.1 V -> battery.voltage */
    UPSMIB_BATTERY_TEMPERATURE, /* .2.7.0 Cel -> ups.temperature */
    UPSMIB_INPUT_FREQUENCY,     /* .3.3.1.2.1 0.1 Hz -> input.frequency */
    UPSMIB_INPUT_VOLTAGE,       /* .3.3.1.3.1 V -> input.voltage */
    UPSMIB_OUTPUT_SOURCE,       /* .4.1.0 1 other 2 none 3 normal 4 bypass 5 battery 6 booster 7 reducer */
    UPSMIB_OUTPUT_VOLTAGE,      /* .4.4.1.2.1 V -> output.voltage */
    UPSMIB_OUTPUT_LOAD,         /* .4.4.1.5.1 % -> ups.load */
    UPSMIB_ALARMS_PRESENT,      /* .6.1.0 count */
    UPSMIB_N
};

typedef struct upsmib_obj {
    const char *oid;       /* numeric, under 1.3.6.1.2.1.33 */
    const char *telemetry; /* ups class name, or NULL (not telemetry) */
    const char *unit;      /* SenML */
    double scale;          /* telemetry = raw * scale */
} upsmib_obj_t;
extern const upsmib_obj_t upsmib_objs[UPSMIB_N];

/* One poll of the profile: which objects answered, and their values. */
typedef struct upsmib_values {
    bool have[UPSMIB_N];
    int64_t v[UPSMIB_N];
} upsmib_values_t;

/* The ups flags (the NUT ups.status flags, same meaning). */
enum {
    UPS_F_OL = 1u << 0,
    UPS_F_OB = 1u << 1,
    UPS_F_LB = 1u << 2,
    UPS_F_RB = 1u << 3,
    UPS_F_BYPASS = 1u << 4,
    UPS_F_OFF = 1u << 5,
    UPS_F_OVER = 1u << 6,
    UPS_F_TRIM = 1u << 7,
    UPS_F_BOOST = 1u << 8,
    UPS_F_DISCHRG = 1u << 9,
    UPS_F_ALARM = 1u << 10
};

/* Flags from one poll: upsOutputSource (3 normal OL, 4 bypass BYPASS,
 * 5 battery OB DISCHRG, 2 none OFF, 6 booster OL BOOST, 7 reducer OL TRIM;
 * when absent or 1 other: OB if upsSecondsOnBattery > 0), upsBatteryStatus
 * 3 low / 4 depleted -> LB, upsOutputPercentLoad > 100 -> OVER,
 * upsAlarmsPresent > 0 -> ALARM. */
unsigned upsmib_flags(const upsmib_values_t *v);
/* "OL", "OB DISCHRG LB", ... (NUT spelling). Returns buf. */
const char *ups_flags_text(unsigned flags, char *buf, size_t len);
/* The normalised `status`: off > low_battery > on_battery > bypass > on_line,
 * else "unknown" (as plugins/nut). */
const char *ups_status_name(unsigned flags);
/* The power event for a change: "power.lost" (on mains -> on battery),
 * "power.restored" (on battery -> on mains) or NULL (and when !have_prev). */
const char *ups_power_event(bool have_prev, unsigned prev, unsigned cur);

typedef struct ups_alarm_def {
    const char *code;
    unsigned flag;
    ccgw_severity_t severity;
    const char *message;
} ups_alarm_def_t;
#define UPS_N_ALARMS 4
/* on_battery (major), low_battery (critical), replace_battery (minor),
 * overload (major): the codes, severities and messages of plugins/nut. */
extern const ups_alarm_def_t ups_alarm_defs[UPS_N_ALARMS];
/* Index in ups_alarm_defs of a code, or -1. */
int ups_alarm_index(const char *code);

/* The RFC 1628 well-known alarm (upsAlarmDescr value, 1.3.6.1.2.1.33.1.6.3.N)
 * as an alarm code: 1 batteryBad -> replace_battery, 2 onBattery ->
 * on_battery, 3 lowBattery -> low_battery, 8 outputOverload -> overload,
 * others by name (depleted_battery, temperature_bad, ... test_in_progress).
 * NULL for an OID outside the table. *severity gets its severity. */
const char *upsmib_well_known_alarm(const uint32_t *oid, size_t n, ccgw_severity_t *severity);

/* ---- user-defined points ---- */

typedef enum { PT_INT, PT_GAUGE, PT_STRING, PT_COUNTER } snmp_pt_type_t;

typedef enum { PT_CMP_NONE = 0, PT_CMP_ABOVE = 1, PT_CMP_BELOW = 2, PT_CMP_EQUALS = 4 } snmp_pt_cmp_t;

typedef struct snmp_pt_alarm {
    unsigned cmp;      /* PT_CMP_* bits; 0 = no alarm */
    double above, below, equals;
} snmp_pt_alarm_t;

/* raw * scale + offset */
double snmp_point_value(double raw, double scale, double offset);
/* True when the value is in alarm: > above, < below, or == equals (with
 * a tolerance of 1e-9 relative) - any condition set. */
bool snmp_point_in_alarm(const snmp_pt_alarm_t *a, double value);

/* ---- traps ---- */

/* The UPS-MIB traps. */
typedef enum {
    UPSTRAP_NONE = 0,
    UPSTRAP_ON_BATTERY,          /* 1.3.6.1.2.1.33.2.0.1 */
    UPSTRAP_TEST_COMPLETED,      /* .2.0.2 */
    UPSTRAP_ALARM_ENTRY_ADDED,   /* .2.0.3 */
    UPSTRAP_ALARM_ENTRY_REMOVED  /* .2.0.4 */
} upstrap_t;
upstrap_t upsmib_trap_kind(const uint32_t *oid, size_t n);

/* A mapped private trap: `traps: [{oid, device, event | alarm, ...}]`. */
typedef struct snmp_trap_rule {
    uint32_t oid[SNMP_OID_MAX];
    size_t oid_len;
    const char *device; /* NULL: the device whose address sent it */
} snmp_trap_rule_t;
/* Index of the first rule whose OID equals the trap OID; -1 if none. */
int snmp_trap_match(const snmp_trap_rule_t *rules, size_t n, const uint32_t *oid, size_t len);

/* True when s is a valid ccgw device id ([a-z0-9_.-]+, 1..64). */
bool snmp_device_id_ok(const char *s);
/* True for an event type / alarm code / telemetry name: [a-z0-9_.-]+
 * (names also allow A-Z). */
bool snmp_code_ok(const char *s);
bool snmp_name_ok(const char *s);

#endif /* CCGW_SNMP_MAP_H */
