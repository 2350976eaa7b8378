/*
 * snmp_plugin.h - internal structures of the snmp plugin.
 *
 * Ownership and threads
 *  - snmp_t (one per instance) owns the targets, the point and trap tables;
 *    built in create(), freed in destroy(). Strings point into the option
 *    nodes, which the core keeps for the instance's lifetime.
 *  - snmp_target_t is one agent (a device). Its worker thread (started in
 *    start(), joined in stop()) owns the net-snmp session (snmp_sess_*
 *    single-session API) and polls; `wake_fd` (an eventfd) wakes it for
 *    stop and for a poll right after a trap.
 *  - The trap receiver (one thread per instance when trap_port > 0) owns its
 *    own server session and calls the emit calls directly.
 *  - `pub_lock` of a target guards what was last published for it (flags,
 *    alarms, power state), so a trap and a poll never emit the same
 *    power.lost or alarm twice.
 *  - net-snmp global state (its base init; init_snmp with the USM user list
 *    and engine id only when an instance uses v3) is set up once per process
 *    (snmp_plugin.c); the v3 init, session open/close and user creation are
 *    serialised by the process-wide lock returned by snmp_global_lock()
 *    (net-snmp's lists are not thread-safe).
 */
#ifndef CCGW_SNMP_PLUGIN_H
#define CCGW_SNMP_PLUGIN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ccgw/ccgw.h>

#include "snmp_map.h"

#define SNMP_REASON_LEN 512

typedef struct snmp snmp_t;
typedef struct snmp_target snmp_target_t;

typedef struct snmp_point {
    uint32_t oid[SNMP_OID_MAX];
    size_t oid_len;
    const char *oid_text;
    const char *name;
    snmp_pt_type_t type;
    double scale, offset;
    const char *unit;
    bool state;              /* publish: state (else telemetry) */
    const char *alarm_code;  /* NULL: no alarm */
    ccgw_severity_t alarm_sev;
    const char *alarm_msg;
    snmp_pt_alarm_t alarm;
    /* worker */
    bool have;
    bool is_text;
    double num;
    char text[256];
    bool alarm_active;
    bool alarm_known;
} snmp_point_t;

typedef struct snmp_trap_map {
    snmp_trap_rule_t rule;
    const char *oid_text;
    snmp_target_t *target;   /* from `device`, or NULL: by source address */
    const char *event;       /* event type, or NULL */
    const char *alarm;       /* alarm code, or NULL */
    bool clear;              /* the trap clears `alarm` */
    ccgw_severity_t severity;
    const char *message;
} snmp_trap_map_t;

struct snmp_target {
    snmp_t *snmp;
    ccgw_device_t *dev;
    const char *id;
    const char *cls;
    const char *host;
    int port;
    const char *trap_source;  /* address traps come from (default: host) */
    int version;              /* 2 (v2c) or 3 */
    const char *community;
    const char *user, *auth_proto, *auth_pass, *priv_proto, *priv_pass, *level, *context;
    bool ups_mib;
    uint64_t poll_ms;
    int timeout_ms;
    int retries;
    char name[300];           /* "host:port" */

    snmp_point_t *points;
    size_t n_points;

    /* worker */
    void *sess;               /* net-snmp single session */
    upsmib_values_t ups;
    int online;               /* -1 unknown, 0 offline, 1 online */
    char reason[SNMP_REASON_LEN];

    /* under pub_lock: what was published */
    pthread_mutex_t pub_lock;
    bool pub_lock_init;
    bool have_flags;
    unsigned flags;
    upsmib_values_t ups_pub;  /* the last poll's values, for trap-made events */
    bool alarms_known;
    unsigned alarms_active;   /* bit i = ups_alarm_defs[i] */
    uint64_t on_battery_since;
    char trap_alarms[8][64];  /* other alarms raised by UPS-MIB alarm traps */
    size_t n_trap_alarms;

    pthread_t thread;
    bool thread_started;
    int wake_fd;
    pthread_mutex_t lock;
    bool lock_init;
    bool stop;                /* under lock */

    bool offline;             /* under snmp.lock (health) */
};

struct snmp {
    ccgw_instance_t *inst;
    snmp_target_t *targets;
    size_t n_targets;
    snmp_trap_map_t *traps;
    size_t n_traps;

    int trap_port;
    const char *trap_address;
    const char *trap_community;
    const ccgw_config_t *trap_users;
    void *trap_sess;
    pthread_t trap_thread;
    bool trap_started;
    int trap_wake;
    bool trap_stop;           /* under lock */

    pthread_mutex_t lock;     /* health, trap_stop */
    ccgw_health_t health;
    char health_reason[SNMP_REASON_LEN];
};

/* snmp_plugin.c */
pthread_mutex_t *snmp_global_lock(void);

/* snmp_target.c */
int snmp_targets_start(snmp_t *s);
void snmp_targets_stop(snmp_t *s);
void snmp_health_update(snmp_t *s);
void snmp_target_wake(snmp_target_t *t);
/* From the trap receiver: apply a UPS flag change now (events, alarms, state). */
void snmp_target_apply_flags(snmp_target_t *t, unsigned set, unsigned clear, const char *why);
/* From the trap receiver: raise/clear a UPS-MIB alarm-table alarm. */
void snmp_target_trap_alarm(snmp_target_t *t, const char *code, ccgw_severity_t sev, bool raise,
                            const char *message);

/* snmp_trap.c */
int snmp_trap_start(snmp_t *s);
void snmp_trap_stop(snmp_t *s);

#endif /* CCGW_SNMP_PLUGIN_H */
