/*
 * alarm_engine - the core's alarm rules: thresholds (high, high_high, low,
 * low_low) with a deadband, boolean rules (on, off), on-delay and off-delay
 * debounce and a per rule+device rate limit. Pure logic: the caller feeds
 * timestamped samples (and periodic ticks) and gets raise / clear decisions
 * back; publishing them is device.c's job. Unit-tested by
 * tests/unit/test_alarm_engine.c.
 *
 * Semantics, per (rule, device):
 *  - condition: high/high_high v >= threshold; low/low_low v <= threshold;
 *    on: v is true (non-zero); off: v is false (zero).
 *  - clear condition (past the deadband): high v < threshold - deadband, low
 *    v > threshold + deadband; boolean rules: the condition is false.
 *  - idle -> raise when the condition has held continuously for on_delay_s
 *    (a sample that breaks it restarts the wait).
 *  - active -> clear when the clear condition has held continuously for
 *    off_delay_s. Values inside the deadband keep the alarm active.
 *  - rate limit: a raise less than min_interval_s after the previous raise is
 *    suppressed and counted; the tracker then waits (quietly) until either
 *    the interval has passed with the condition still holding (raise, with
 *    the suppressed count) or the clear condition holds (back to idle).
 *
 * Threads: one mutex inside; every call may come from any thread. The
 * engine never calls out while holding it (decisions are returned).
 */
#ifndef CCGW_ALARM_ENGINE_H
#define CCGW_ALARM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ccgw/values.h"

typedef enum ccgw_rule_type {
    CCGW_RULE_HIGH = 0,
    CCGW_RULE_HIGH_HIGH,
    CCGW_RULE_LOW,
    CCGW_RULE_LOW_LOW,
    CCGW_RULE_ON,
    CCGW_RULE_OFF
} ccgw_rule_type_t;

/* The rules' own severities (published as strings; not the SDK's enum). */
typedef enum ccgw_rule_severity {
    CCGW_RSEV_CRITICAL = 0,
    CCGW_RSEV_MAJOR,
    CCGW_RSEV_MINOR,
    CCGW_RSEV_WARNING
} ccgw_rule_severity_t;

typedef struct ccgw_alarm_rule {
    char *code;          /* [a-z0-9_.-]+ */
    char *class_name;    /* NULL = any class */
    char *device;        /* exact id or a glob with '*' */
    char *value;         /* telemetry value or state attribute name */
    ccgw_rule_type_t type;
    double threshold;    /* not for on/off */
    double deadband;     /* >= 0 */
    double on_delay_s, off_delay_s, min_interval_s;
    ccgw_rule_severity_t severity;
    char *message;       /* NULL = generated */
} ccgw_alarm_rule_t;

const char *ccgw_rule_type_name(ccgw_rule_type_t t);
const char *ccgw_rule_severity_name(ccgw_rule_severity_t s);
bool ccgw_rule_is_bool(ccgw_rule_type_t t);
/* '*' matches any run of characters (also empty); everything else literally. */
bool ccgw_glob_match(const char *pattern, const char *s);

/* SUPPRESSED: a raise the rate limit swallowed (for the log and counters). */
typedef enum ccgw_alarm_action { CCGW_ALARM_RAISE = 1, CCGW_ALARM_CLEAR, CCGW_ALARM_SUPPRESSED } ccgw_alarm_action_t;

typedef struct ccgw_alarm_decision {
    ccgw_alarm_action_t action;
    const ccgw_alarm_rule_t *rule;
    char class_name[32];
    char device[72];
    double value;        /* the sample that decided (last one for ticks) */
    uint64_t suppressed; /* RAISE, SUPPRESSED: raises suppressed by the rate limit since the last raise */
} ccgw_alarm_decision_t;

typedef struct ccgw_alarm_engine ccgw_alarm_engine_t;

/* rules[] must outlive the engine. NULL when out of memory. */
ccgw_alarm_engine_t *ccgw_alarm_engine_new(const ccgw_alarm_rule_t *rules, size_t n_rules);
void ccgw_alarm_engine_free(ccgw_alarm_engine_t *e);
size_t ccgw_alarm_engine_rule_count(const ccgw_alarm_engine_t *e);

/* True when some rule applies to this device (cache it per device). */
bool ccgw_alarm_engine_wants(const ccgw_alarm_engine_t *e, const char *class_name, const char *device);

/* Feed the values of one update (telemetry values or state attributes;
 * INT, DOUBLE and BOOL are used, others ignored) at now_ms (monotonic).
 * Decisions are appended to *out (malloc'ed, caller frees); returns their
 * number. */
size_t ccgw_alarm_engine_feed(ccgw_alarm_engine_t *e, const char *class_name, const char *device,
                              const ccgw_value_t *v, size_t n, uint64_t now_ms,
                              ccgw_alarm_decision_t **out);

/* Same for one numeric sample (booleans as 0/1) of `name`. */
size_t ccgw_alarm_engine_feed_one(ccgw_alarm_engine_t *e, const char *class_name, const char *device,
                                  const char *name, double value, uint64_t now_ms,
                                  ccgw_alarm_decision_t **out);

/* Let delays expire without a new sample (the last value is assumed to
 * hold). Call it about once a second. */
size_t ccgw_alarm_engine_tick(ccgw_alarm_engine_t *e, uint64_t now_ms, ccgw_alarm_decision_t **out);

/* A rule alarm restored from disk: mark the tracker of the rule with this
 * code that applies to class/device active. Returns the rule, or NULL when
 * no rule with that code applies any more. */
const ccgw_alarm_rule_t *ccgw_alarm_engine_restore(ccgw_alarm_engine_t *e, const char *code,
                                                   const char *class_name, const char *device);
/* The rule alarm was cleared from outside (restore grace, ...): back to idle. */
void ccgw_alarm_engine_forget(ccgw_alarm_engine_t *e, const ccgw_alarm_rule_t *rule,
                              const char *class_name, const char *device);

typedef struct ccgw_alarm_engine_stats {
    uint64_t raised, cleared, suppressed;
    size_t trackers;
} ccgw_alarm_engine_stats_t;
void ccgw_alarm_engine_get_stats(ccgw_alarm_engine_t *e, ccgw_alarm_engine_stats_t *out);

#endif
