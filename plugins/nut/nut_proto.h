/*
 * nut_proto.h - the pure parts of the nut plugin (no I/O, no SDK calls):
 * NUT protocol line splitting, ups.status flags and what they mean in the
 * `ups` class (status, alarms, power events), the telemetry variables and
 * their SenML units, and the texts for upsd's ERR codes. Unit-tested in
 * tests/unit/test_nut_proto.c.
 */
#ifndef CCGW_NUT_PROTO_H
#define CCGW_NUT_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include <ccgw/types.h>

#define NUT_LINE_MAX 1024 /* longest protocol line accepted from upsd */

/* Splits one protocol line (without the newline) into at most `max` words,
 * in place: words are separated by spaces or tabs; a word in double quotes
 * may hold spaces and backslash escapes (\" and \\). Returns the number of
 * words, or -1 for an unterminated quote or more than `max` words. */
int nut_split(char *line, char **words, int max);

/* Writes `s` as a protocol argument (always quoted, " and \ escaped) into
 * out. Returns the length, or -1 when it does not fit or `s` holds a
 * control character (a newline would inject a second request). */
int nut_quote(const char *s, char *out, size_t len);

/* True when `s` is a non-empty [A-Za-z0-9_.-]+ (UPS, variable and command
 * names: safe to send unquoted). */
bool nut_name_ok(const char *s);
/* True when `s` is a valid ccgw device id: [a-z0-9_.-]+, 1..64 chars. */
bool nut_device_id_ok(const char *s);

/* ups.status flags. */
enum {
    NUT_F_OL = 1u << 0,      /* on line (mains) */
    NUT_F_OB = 1u << 1,      /* on battery */
    NUT_F_LB = 1u << 2,      /* low battery */
    NUT_F_HB = 1u << 3,      /* high battery */
    NUT_F_RB = 1u << 4,      /* replace battery */
    NUT_F_CHRG = 1u << 5,    /* charging */
    NUT_F_DISCHRG = 1u << 6, /* discharging */
    NUT_F_BYPASS = 1u << 7,  /* on bypass: the load is not protected */
    NUT_F_CAL = 1u << 8,     /* calibrating */
    NUT_F_OFF = 1u << 9,     /* output off */
    NUT_F_OVER = 1u << 10,   /* overloaded */
    NUT_F_TRIM = 1u << 11,   /* trimming voltage */
    NUT_F_BOOST = 1u << 12,  /* boosting voltage */
    NUT_F_FSD = 1u << 13,    /* forced shutdown */
    NUT_F_ALARM = 1u << 14,  /* see ups.alarm */
    NUT_F_WAIT = 1u << 15,   /* the driver has no data yet (NUT 2.8, e.g. dummy-ups at start) */
    NUT_F_OTHER = 1u << 16   /* a flag this table does not know */
};

/* The flags of a ups.status value such as "OB DISCHRG LB". */
unsigned nut_status_flags(const char *status);

/* True when the UPS has said nothing yet: no flag, or WAIT without any of
 * OL, OB, OFF (the device stays offline until it has). */
bool nut_status_pending(unsigned flags);

/* The normalised `status` state attribute: the most severe of
 * off > low_battery > on_battery > bypass > on_line, or "unknown" when
 * none of OFF, LB, OB, BYPASS, OL is set. */
const char *nut_status_name(unsigned flags);

/* The alarms derived from the flags. */
typedef struct nut_alarm_def {
    const char *code;   /* alarm/{code} */
    unsigned flag;      /* raised while this flag is set */
    ccgw_severity_t severity;
    const char *message;
} nut_alarm_def_t;

#define NUT_N_ALARMS 4
extern const nut_alarm_def_t nut_alarm_defs[NUT_N_ALARMS];

/* The power event for a change of flags: "power.lost" when the UPS was on
 * mains (OL without OB) and is now on battery (OB); "power.restored" when it
 * was on battery and is now on mains; NULL otherwise (and when !have_prev). */
const char *nut_power_event(bool have_prev, unsigned prev, unsigned cur);

/* The telemetry variables of the `ups` class, named as NUT names them. */
typedef struct nut_var_def {
    const char *name;
    const char *unit; /* SenML */
} nut_var_def_t;

#define NUT_N_VARS 8
extern const nut_var_def_t nut_var_defs[NUT_N_VARS];

/* Index of `name` in nut_var_defs, or -1. */
int nut_var_index(const char *name);

/* A NUT value as a number: true and *d when the whole text is a finite
 * decimal number; *is_int when it has no fraction or exponent and fits. */
bool nut_parse_number(const char *s, double *d, bool *is_int, long long *i);

/* A short human text for an upsd `ERR CODE` ("driver not connected"), or
 * NULL for a code this table does not know. */
const char *nut_err_text(const char *code);

/* True for the ERR codes that mean "this UPS has no data now" (the device is
 * reported offline): DATA-STALE, DRIVER-NOT-CONNECTED, UNKNOWN-UPS. */
bool nut_err_is_offline(const char *code);

#endif /* CCGW_NUT_PROTO_H */
