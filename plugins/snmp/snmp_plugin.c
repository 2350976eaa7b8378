/*
 * snmp - UPS and environment devices over SNMP (v2c, v3 USM) for ccgw, with
 * a trap receiver. docs/plugins/snmp.md is the user documentation.
 *
 * Files: snmp_map.c (pure mapping, unit-tested), snmp_target.c (one worker
 * thread per agent: polling, publishing), snmp_trap.c (the trap receiver
 * thread), this file (option tables, check, the one-time net-snmp init,
 * lifecycle). Threads: see snmp_plugin.h.
 *
 * net-snmp keeps process-global state (its config, the USM user list, the
 * local engine id, MIB tables), set up in two steps, each at most once per
 * process and never undone (several instances, and a reload, share it):
 *  - the base, in the first create() of any snmp instance (pthread_once):
 *    the library's flags (config files, persistent state and MIB loading
 *    off) and its internal init (transports, request ids), which is all that
 *    v2c polling and v1/v2c traps and informs use;
 *  - SNMPv3 (USM), init_snmp(), in the first create() whose options have a
 *    version 3 target or a trap user. It draws the USM salts and the local
 *    engine id from OpenSSL's RNG and hashes the initial user with MD5,
 *    which initialises OpenSSL (its config and default provider: +1.9 MB of
 *    libcrypto pages resident, docs/architecture.md "Memory"), so a v2c-only
 *    gateway does not pay for it. A v3 message reaching a process without it
 *    is dropped by net-snmp (no security model registered), as one for an
 *    unknown user is otherwise.
 * Those inits and the lock that serialises them, session open/close and USM
 * user creation are the only file-scope mutable state of the plugin. The .so
 * is linked with -z nodelete (CMakeLists.txt): net-snmp's global state must
 * outlive a dlclose(), and the once-guards must not be reset by unloading and
 * loading the plugin again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <net-snmp/net-snmp-config.h>
#include <net-snmp/net-snmp-includes.h>

#include "snmp_plugin.h"

#define SNMP_PLUGIN_VERSION "1.0.0"

/* ---- the one-time net-snmp init ---- */

static pthread_once_t snmp_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t snmp_glock = PTHREAD_MUTEX_INITIALIZER;
static bool snmp_v3_ready; /* init_snmp() done; under snmp_glock */

static void snmp_init_once(void)
{
    netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DONT_READ_CONFIGS, 1);
    netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DONT_PERSIST_STATE, 1);
    netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_PERSISTENT_LOAD, 1);
    netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_PERSISTENT_SAVE, 1);
    netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_QUICK_PRINT, 1);
    netsnmp_ds_set_int(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_OID_OUTPUT_FORMAT, NETSNMP_OID_OUTPUT_NUMERIC);
    /* numeric OIDs only: load no MIB module ("mibs :" as in snmp.conf;
     * without it init_snmp() reports every missing default MIB on stderr) */
    char no_mibs[] = "mibs :";
    netsnmp_config_remember(no_mibs);
    /* the library's internal init (transport domains, request and message
     * ids), which snmp_sess_init() makes on first use without a lock: made
     * here, once, before any worker thread opens a session */
    netsnmp_session base;
    snmp_sess_init(&base);
}

/* SNMPv3 (USM): init_snmp(), once, when the first instance needs it. Under
 * the global lock: a reload may add a v3 target while other instances' v2c
 * sessions are open (their open/close take the same lock). */
static void snmp_init_v3(ccgw_instance_t *inst)
{
    pthread_mutex_lock(&snmp_glock);
    if (!snmp_v3_ready) {
        init_snmp("ccgw");
        snmp_v3_ready = true;
        CCGW_INFO(inst, "snmp: SNMPv3 (USM) initialised");
    }
    pthread_mutex_unlock(&snmp_glock);
}

/* Does this instance use SNMPv3: a version 3 target or a trap user? */
static bool needs_v3(const ccgw_config_t *options)
{
    if (ccgw_config_count(ccgw_config_get(options, "trap_users")) > 0)
        return true;
    const ccgw_config_t *targets = ccgw_config_get(options, "targets");
    for (size_t i = 0; i < ccgw_config_count(targets); i++) {
        if (strcmp(ccgw_config_string(ccgw_config_at(targets, i), "version", "2c"), "3") == 0)
            return true;
    }
    return false;
}

pthread_mutex_t *snmp_global_lock(void)
{
    return &snmp_glock;
}

/* ---- options ---- */

static const char *const classes[] = {"ups", "env", "hvac", NULL};
static const char *const versions[] = {"2c", "3", NULL};
static const char *const levels[] = {"noAuthNoPriv", "authNoPriv", "authPriv", NULL};
static const char *const auth_protos[] = {"SHA", "SHA-256", "MD5", NULL};
static const char *const priv_protos[] = {"AES", "DES", NULL};
static const char *const profiles[] = {"auto", "ups-mib", "none", NULL};
static const char *const pt_types[] = {"gauge", "int", "counter", "string", NULL};
static const char *const publishes[] = {"telemetry", "state", NULL};
static const char *const severities[] = {"info", "minor", "major", "critical", NULL};

static const ccgw_option_t alarm_options[] = {
    {.key = "code", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1, .max = 64, .doc = "Alarm code ([a-z0-9_.-]+): alarm/{code}."},
    {.key = "severity", .type = CCGW_OPT_ENUM, .choices = severities,
     .doc = "info, minor, major or critical (default major)."},
    {.key = "above", .type = CCGW_OPT_DOUBLE, .doc = "Raised while the value is above this."},
    {.key = "below", .type = CCGW_OPT_DOUBLE, .doc = "Raised while the value is below this."},
    {.key = "equals", .type = CCGW_OPT_DOUBLE, .doc = "Raised while the value equals this."},
    {.key = "message", .type = CCGW_OPT_STRING, .doc = "Alarm text."},
    CCGW_OPTION_END,
};

static const ccgw_option_t point_options[] = {
    {.key = "oid", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 3, .max = 600, .doc = "Numeric OID of the object (a scalar's .0 included)."},
    {.key = "name", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1, .max = 64,
     .doc = "Normalised name, e.g. supply_air.temperature, humidity, running."},
    {.key = "type", .type = CCGW_OPT_ENUM, .choices = pt_types, .def = "gauge",
     .doc = "gauge (number, scaled), int (integer, scaled), counter (raw number), string."},
    {.key = "scale", .type = CCGW_OPT_DOUBLE, .def = "1", .doc = "value = raw * scale + offset."},
    {.key = "offset", .type = CCGW_OPT_DOUBLE, .def = "0", .doc = "value = raw * scale + offset."},
    {.key = "unit", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 16,
     .doc = "SenML unit (Cel, %RH, V, A, W, Hz, s, %)."},
    {.key = "publish", .type = CCGW_OPT_ENUM, .choices = publishes, .def = "telemetry",
     .doc = "telemetry (every poll) or state (retained, on change)."},
    {.key = "alarm", .type = CCGW_OPT_OBJECT, .children = alarm_options,
     .doc = "Threshold alarm on the scaled value: {code, severity, above|below|equals, message}."},
    CCGW_OPTION_END,
};

static const ccgw_option_t target_options[] = {
    {.key = "id", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1, .max = 64, .doc = "Device id ([a-z0-9_.-]+, unique per class)."},
    {.key = "class", .type = CCGW_OPT_ENUM, .choices = classes, .def = "ups",
     .doc = "Device class: ups, env or hvac."},
    {.key = "host", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1, .max = 253, .doc = "Agent address or host name."},
    {.key = "port", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "161", .min = 1,
     .max = 65535, .doc = "Agent UDP port."},
    {.key = "version", .type = CCGW_OPT_ENUM, .choices = versions, .def = "2c",
     .doc = "SNMP version: 2c (community) or 3 (USM)."},
    {.key = "community", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE | CCGW_OPT_F_SECRET,
     .def = "public", .min = 1, .max = 128, .doc = "v2c community."},
    {.key = "user", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 32,
     .doc = "v3 USM user name (required for version 3)."},
    {.key = "security_level", .type = CCGW_OPT_ENUM, .choices = levels, .def = "authPriv",
     .doc = "v3 security level."},
    {.key = "auth_protocol", .type = CCGW_OPT_ENUM, .choices = auth_protos, .def = "SHA",
     .doc = "v3 authentication protocol."},
    {.key = "auth_password", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE | CCGW_OPT_F_SECRET,
     .min = 8, .max = 256, .doc = "v3 authentication pass phrase (>= 8 characters)."},
    {.key = "priv_protocol", .type = CCGW_OPT_ENUM, .choices = priv_protos, .def = "AES",
     .doc = "v3 privacy protocol."},
    {.key = "priv_password", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE | CCGW_OPT_F_SECRET,
     .min = 8, .max = 256, .doc = "v3 privacy pass phrase (>= 8 characters)."},
    {.key = "context", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 0, .max = 64,
     .doc = "v3 context name."},
    {.key = "profile", .type = CCGW_OPT_ENUM, .choices = profiles, .def = "auto",
     .doc = "Built-in OID map: ups-mib (RFC 1628), none; auto = ups-mib for class ups."},
    {.key = "poll_interval_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "5000",
     .min = 200, .max = 3600000, .doc = "How often the agent is read."},
    {.key = "timeout_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1000",
     .min = 50, .max = 60000, .doc = "Wait for an answer per try."},
    {.key = "retries", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1", .min = 0,
     .max = 10, .doc = "Retries after a timeout before the device is offline."},
    {.key = "trap_source", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 64,
     .doc = "IP address traps of this device come from (default: host)."},
    {.key = "points", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT,
     .flags = CCGW_OPT_F_RANGE, .min = 0, .max = 512, .children = point_options,
     .doc = "User-defined OID map."},
    CCGW_OPTION_END,
};

static const ccgw_option_t trap_user_options[] = {
    {.key = "user", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1, .max = 32, .doc = "USM user name."},
    {.key = "engine_id", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 2, .max = 66,
     .doc = "Sender's engine id in hex (0x...) for v3 traps; absent: informs only (our engine id)."},
    {.key = "auth_protocol", .type = CCGW_OPT_ENUM, .choices = auth_protos, .def = "SHA",
     .doc = "Authentication protocol."},
    {.key = "auth_password", .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE | CCGW_OPT_F_SECRET, .min = 8, .max = 256,
     .doc = "Authentication pass phrase."},
    {.key = "priv_protocol", .type = CCGW_OPT_ENUM, .choices = priv_protos, .def = "AES",
     .doc = "Privacy protocol."},
    {.key = "priv_password", .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE | CCGW_OPT_F_SECRET, .min = 8, .max = 256,
     .doc = "Privacy pass phrase (traps must be authPriv)."},
    CCGW_OPTION_END,
};

static const ccgw_option_t trap_options[] = {
    {.key = "oid", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 3, .max = 600, .doc = "Numeric snmpTrapOID of the notification."},
    {.key = "device", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 64,
     .doc = "Target id it applies to; absent: the target whose address sent it."},
    {.key = "event", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 64,
     .doc = "Event type to emit (e.g. hvac.fault)."},
    {.key = "alarm", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 64,
     .doc = "Alarm code to raise (or clear with clear: true)."},
    {.key = "clear", .type = CCGW_OPT_BOOL, .def = "false", .doc = "This trap clears `alarm`."},
    {.key = "severity", .type = CCGW_OPT_ENUM, .choices = severities, .def = "major",
     .doc = "Severity of the raised alarm."},
    {.key = "message", .type = CCGW_OPT_STRING, .doc = "Alarm text."},
    CCGW_OPTION_END,
};

static const ccgw_option_t snmp_options[] = {
    {.key = "targets", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE, .min = 1, .max = 1024,
     .children = target_options, .doc = "The agents; each is one device with its own worker."},
    {.key = "trap_port", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0,
     .max = 65535, .doc = "UDP port of the trap receiver (162 is standard); 0 = no receiver."},
    {.key = "trap_address", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .def = "0.0.0.0",
     .min = 1, .max = 64, .doc = "Address the trap receiver binds."},
    {.key = "trap_community", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE | CCGW_OPT_F_SECRET,
     .def = "public", .min = 1, .max = 128, .doc = "Community v2c traps must carry."},
    {.key = "trap_users", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT,
     .flags = CCGW_OPT_F_RANGE, .min = 0, .max = 64, .children = trap_user_options,
     .doc = "v3 USM users accepted for traps and informs (authPriv)."},
    {.key = "traps", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT,
     .flags = CCGW_OPT_F_RANGE, .min = 0, .max = 1024, .children = trap_options,
     .doc = "Private traps mapped to events and alarms."},
    CCGW_OPTION_END,
};

static ccgw_severity_t sev_of(const char *s, ccgw_severity_t def)
{
    if (!s)
        return def;
    if (strcmp(s, "info") == 0)
        return CCGW_SEV_INFO;
    if (strcmp(s, "minor") == 0)
        return CCGW_SEV_MINOR;
    if (strcmp(s, "critical") == 0)
        return CCGW_SEV_CRITICAL;
    return CCGW_SEV_MAJOR;
}

static int snmp_check(const ccgw_config_t *options)
{
    int errors = 0;
    const ccgw_config_t *targets = ccgw_config_get(options, "targets");
    size_t nt = ccgw_config_count(targets);
    uint32_t oid[SNMP_OID_MAX];
    for (size_t i = 0; i < nt; i++) {
        const ccgw_config_t *t = ccgw_config_at(targets, i);
        const ccgw_config_t *idn = ccgw_config_get(t, "id");
        const char *id = ccgw_config_text(idn);
        if (!snmp_device_id_ok(id))
            errors += ccgw_config_error(idn, "device id '%s' must match [a-z0-9_.-]+", id ? id : "") != 0;
        for (size_t k = 0; k < i; k++) {
            const char *o = ccgw_config_string(ccgw_config_at(targets, k), "id", "");
            if (id && strcmp(o, id) == 0) {
                errors += ccgw_config_error(idn, "duplicate target id '%s'", id) != 0;
                break;
            }
        }
        if (strcmp(ccgw_config_string(t, "version", "2c"), "3") == 0) {
            const char *lvl = ccgw_config_string(t, "security_level", "authPriv");
            if (!ccgw_config_get(t, "user"))
                errors += ccgw_config_error(t, "version 3 needs 'user'") != 0;
            if (strcmp(lvl, "noAuthNoPriv") != 0 && !ccgw_config_get(t, "auth_password"))
                errors += ccgw_config_error(t, "security_level %s needs 'auth_password'", lvl) != 0;
            if (strcmp(lvl, "authPriv") == 0 && !ccgw_config_get(t, "priv_password"))
                errors += ccgw_config_error(t, "security_level authPriv needs 'priv_password'") != 0;
        }
        const ccgw_config_t *pts = ccgw_config_get(t, "points");
        for (size_t j = 0; j < ccgw_config_count(pts); j++) {
            const ccgw_config_t *p = ccgw_config_at(pts, j);
            const ccgw_config_t *on = ccgw_config_get(p, "oid");
            if (snmp_oid_parse(ccgw_config_text(on), oid, SNMP_OID_MAX) < 0)
                errors += ccgw_config_error(on, "not a numeric OID (e.g. 1.3.6.1.4.1.9999.1.0)") != 0;
            const ccgw_config_t *nn = ccgw_config_get(p, "name");
            if (!snmp_name_ok(ccgw_config_text(nn)))
                errors += ccgw_config_error(nn, "point name must match [A-Za-z0-9_.-]+") != 0;
            const ccgw_config_t *al = ccgw_config_get(p, "alarm");
            if (al && !ccgw_config_is_default(al)) {
                const ccgw_config_t *cn = ccgw_config_get(al, "code");
                if (!snmp_code_ok(ccgw_config_text(cn)))
                    errors += ccgw_config_error(cn ? cn : al, "alarm code must match [a-z0-9_.-]+") != 0;
                if (!ccgw_config_get(al, "above") && !ccgw_config_get(al, "below") &&
                    !ccgw_config_get(al, "equals"))
                    errors += ccgw_config_error(al, "alarm needs above, below or equals") != 0;
                if (strcmp(ccgw_config_string(p, "type", "gauge"), "string") == 0)
                    errors += ccgw_config_error(al, "threshold alarms need a numeric point") != 0;
            }
        }
    }
    const ccgw_config_t *traps = ccgw_config_get(options, "traps");
    for (size_t i = 0; i < ccgw_config_count(traps); i++) {
        const ccgw_config_t *tr = ccgw_config_at(traps, i);
        const ccgw_config_t *on = ccgw_config_get(tr, "oid");
        if (snmp_oid_parse(ccgw_config_text(on), oid, SNMP_OID_MAX) < 0)
            errors += ccgw_config_error(on, "not a numeric OID") != 0;
        const ccgw_config_t *ev = ccgw_config_get(tr, "event");
        const ccgw_config_t *al = ccgw_config_get(tr, "alarm");
        if (!ev && !al)
            errors += ccgw_config_error(tr, "a trap needs 'event' or 'alarm'") != 0;
        if (ev && !snmp_code_ok(ccgw_config_text(ev)))
            errors += ccgw_config_error(ev, "event type must match [a-z0-9_.-]+") != 0;
        if (al && !snmp_code_ok(ccgw_config_text(al)))
            errors += ccgw_config_error(al, "alarm code must match [a-z0-9_.-]+") != 0;
        const ccgw_config_t *dn = ccgw_config_get(tr, "device");
        if (dn) {
            bool found = false;
            for (size_t k = 0; k < nt; k++)
                found |= strcmp(ccgw_config_string(ccgw_config_at(targets, k), "id", ""),
                                ccgw_config_text(dn)) == 0;
            if (!found)
                errors += ccgw_config_error(dn, "no target with id '%s'", ccgw_config_text(dn)) != 0;
        }
    }
    const ccgw_config_t *users = ccgw_config_get(options, "trap_users");
    for (size_t i = 0; i < ccgw_config_count(users); i++) {
        const ccgw_config_t *u = ccgw_config_at(users, i);
        const ccgw_config_t *e = ccgw_config_get(u, "engine_id");
        const char *t = ccgw_config_text(e);
        if (t) {
            const char *h = (t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) ? t + 2 : t;
            bool ok = *h && strlen(h) % 2 == 0;
            for (const char *c = h; *c && ok; c++)
                ok = (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F');
            if (!ok)
                errors += ccgw_config_error(e, "engine_id must be hex (0x8000...)") != 0;
        }
        const char *nm = ccgw_config_string(u, "user", "");
        for (const char *c = nm; *c; c++) {
            if (*c <= ' ' || *c == '"' || *c == '\\') {
                errors += ccgw_config_error(u, "user name must not hold spaces or quotes") != 0;
                break;
            }
        }
    }
    return errors;
}

static void free_state(snmp_t *s)
{
    for (size_t i = 0; s->targets && i < s->n_targets; i++) {
        snmp_target_t *t = &s->targets[i];
        free(t->points);
        if (t->lock_init)
            pthread_mutex_destroy(&t->lock);
        if (t->pub_lock_init)
            pthread_mutex_destroy(&t->pub_lock);
    }
    free(s->targets);
    free(s->traps);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int build(snmp_t *s, const ccgw_config_t *options)
{
    const ccgw_config_t *targets = ccgw_config_get(options, "targets");
    s->n_targets = ccgw_config_count(targets);
    s->targets = calloc(s->n_targets ? s->n_targets : 1, sizeof *s->targets);
    if (!s->targets)
        return CCGW_ENOMEM;
    for (size_t i = 0; i < s->n_targets; i++) {
        snmp_target_t *t = &s->targets[i];
        const ccgw_config_t *tc = ccgw_config_at(targets, i);
        t->snmp = s;
        t->wake_fd = -1;
        t->online = -1;
        t->id = ccgw_config_string(tc, "id", "");
        t->cls = ccgw_config_string(tc, "class", "ups");
        t->host = ccgw_config_string(tc, "host", "127.0.0.1");
        t->port = (int)ccgw_config_int(tc, "port", 161);
        t->trap_source = ccgw_config_string(tc, "trap_source", t->host);
        t->version = strcmp(ccgw_config_string(tc, "version", "2c"), "3") == 0 ? 3 : 2;
        t->community = ccgw_config_string(tc, "community", "public");
        t->user = ccgw_config_string(tc, "user", NULL);
        t->level = ccgw_config_string(tc, "security_level", "authPriv");
        t->auth_proto = ccgw_config_string(tc, "auth_protocol", "SHA");
        t->auth_pass = ccgw_config_string(tc, "auth_password", NULL);
        t->priv_proto = ccgw_config_string(tc, "priv_protocol", "AES");
        t->priv_pass = ccgw_config_string(tc, "priv_password", NULL);
        t->context = ccgw_config_string(tc, "context", NULL);
        const char *prof = ccgw_config_string(tc, "profile", "auto");
        t->ups_mib = strcmp(prof, "ups-mib") == 0 ||
                     (strcmp(prof, "auto") == 0 && strcmp(t->cls, "ups") == 0);
        t->poll_ms = (uint64_t)ccgw_config_int(tc, "poll_interval_ms", 5000);
        t->timeout_ms = (int)ccgw_config_int(tc, "timeout_ms", 1000);
        t->retries = (int)ccgw_config_int(tc, "retries", 1);
        snprintf(t->name, sizeof t->name, strchr(t->host, ':') ? "[%s]:%d" : "%s:%d", t->host, t->port);
        if (pthread_mutex_init(&t->lock, NULL) != 0)
            return CCGW_ENOMEM;
        t->lock_init = true;
        if (pthread_mutex_init(&t->pub_lock, NULL) != 0)
            return CCGW_ENOMEM;
        t->pub_lock_init = true;

        const ccgw_config_t *pts = ccgw_config_get(tc, "points");
        t->n_points = ccgw_config_count(pts);
        t->points = calloc(t->n_points ? t->n_points : 1, sizeof *t->points);
        if (!t->points)
            return CCGW_ENOMEM;
        for (size_t j = 0; j < t->n_points; j++) {
            const ccgw_config_t *pc = ccgw_config_at(pts, j);
            snmp_point_t *p = &t->points[j];
            p->oid_text = ccgw_config_string(pc, "oid", "");
            int n = snmp_oid_parse(p->oid_text, p->oid, SNMP_OID_MAX);
            p->oid_len = n > 0 ? (size_t)n : 0;
            p->name = ccgw_config_string(pc, "name", "");
            const char *ty = ccgw_config_string(pc, "type", "gauge");
            p->type = strcmp(ty, "int") == 0       ? PT_INT
                      : strcmp(ty, "counter") == 0 ? PT_COUNTER
                      : strcmp(ty, "string") == 0  ? PT_STRING
                                                   : PT_GAUGE;
            p->scale = ccgw_config_double(pc, "scale", 1);
            p->offset = ccgw_config_double(pc, "offset", 0);
            p->unit = ccgw_config_string(pc, "unit", NULL);
            p->state = strcmp(ccgw_config_string(pc, "publish", "telemetry"), "state") == 0;
            const ccgw_config_t *al = ccgw_config_get(pc, "alarm");
            if (al && ccgw_config_get(al, "code")) {
                p->alarm_code = ccgw_config_string(al, "code", NULL);
                p->alarm_sev = sev_of(ccgw_config_string(al, "severity", NULL), CCGW_SEV_MAJOR);
                p->alarm_msg = ccgw_config_string(al, "message", NULL);
                if (ccgw_config_get(al, "above")) {
                    p->alarm.cmp |= PT_CMP_ABOVE;
                    p->alarm.above = ccgw_config_double(al, "above", 0);
                }
                if (ccgw_config_get(al, "below")) {
                    p->alarm.cmp |= PT_CMP_BELOW;
                    p->alarm.below = ccgw_config_double(al, "below", 0);
                }
                if (ccgw_config_get(al, "equals")) {
                    p->alarm.cmp |= PT_CMP_EQUALS;
                    p->alarm.equals = ccgw_config_double(al, "equals", 0);
                }
            }
        }
    }
    const ccgw_config_t *traps = ccgw_config_get(options, "traps");
    s->n_traps = ccgw_config_count(traps);
    s->traps = calloc(s->n_traps ? s->n_traps : 1, sizeof *s->traps);
    if (!s->traps)
        return CCGW_ENOMEM;
    for (size_t i = 0; i < s->n_traps; i++) {
        const ccgw_config_t *tc = ccgw_config_at(traps, i);
        snmp_trap_map_t *m = &s->traps[i];
        m->oid_text = ccgw_config_string(tc, "oid", "");
        int n = snmp_oid_parse(m->oid_text, m->rule.oid, SNMP_OID_MAX);
        m->rule.oid_len = n > 0 ? (size_t)n : 0;
        m->rule.device = ccgw_config_string(tc, "device", NULL);
        for (size_t k = 0; m->rule.device && k < s->n_targets; k++) {
            if (strcmp(s->targets[k].id, m->rule.device) == 0)
                m->target = &s->targets[k];
        }
        m->event = ccgw_config_string(tc, "event", NULL);
        m->alarm = ccgw_config_string(tc, "alarm", NULL);
        m->clear = ccgw_config_bool(tc, "clear", false);
        m->severity = sev_of(ccgw_config_string(tc, "severity", "major"), CCGW_SEV_MAJOR);
        m->message = ccgw_config_string(tc, "message", NULL);
    }
    s->trap_port = (int)ccgw_config_int(options, "trap_port", 0);
    s->trap_address = ccgw_config_string(options, "trap_address", "0.0.0.0");
    s->trap_community = ccgw_config_string(options, "trap_community", "public");
    s->trap_users = ccgw_config_get(options, "trap_users");
    s->trap_wake = -1;
    return CCGW_OK;
}

static int snmp_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    pthread_once(&snmp_once, snmp_init_once);
    if (needs_v3(options))
        snmp_init_v3(inst);
    snmp_t *s = calloc(1, sizeof *s);
    if (!s)
        return CCGW_ENOMEM;
    s->inst = inst;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return CCGW_ENOMEM;
    }
    int rc = build(s, options);
    for (size_t i = 0; rc == CCGW_OK && i < s->n_targets; i++) {
        snmp_target_t *t = &s->targets[i];
        t->dev = ccgw_device_add(inst, t->cls, t->id, t);
        if (!t->dev)
            rc = CCGW_EEXIST;
    }
    if (rc != CCGW_OK) {
        free_state(s);
        return rc;
    }
    CCGW_INFO(inst, "snmp: %zu target%s, %zu mapped trap%s, trap receiver %s%d", s->n_targets,
              s->n_targets == 1 ? "" : "s", s->n_traps, s->n_traps == 1 ? "" : "s",
              s->trap_port ? "on port " : "off", s->trap_port);
    *state = s;
    return CCGW_OK;
}

static int snmp_start(void *state)
{
    snmp_t *s = state;
    s->health = CCGW_HEALTH_OK;
    s->health_reason[0] = '\0';
    for (size_t i = 0; i < s->n_targets; i++) {
        snmp_target_t *t = &s->targets[i];
        t->online = -1;
        t->offline = false;
        t->have_flags = false;
        t->alarms_known = false;
        t->alarms_active = 0;
        t->on_battery_since = 0;
        t->n_trap_alarms = 0;
        for (size_t j = 0; j < t->n_points; j++)
            t->points[j].alarm_known = t->points[j].alarm_active = false;
    }
    ccgw_instance_health(s->inst, CCGW_HEALTH_OK, NULL);
    int rc = snmp_targets_start(s);
    if (rc < 0)
        return rc;
    if (s->trap_port) {
        rc = snmp_trap_start(s);
        if (rc < 0) {
            snmp_targets_stop(s);
            return rc;
        }
    }
    return CCGW_OK;
}

static void snmp_stop(void *state)
{
    snmp_t *s = state;
    snmp_trap_stop(s);
    snmp_targets_stop(s);
    CCGW_INFO(s->inst, "snmp: stopped");
}

static void snmp_destroy(void *state)
{
    free_state(state);
}

CCGW_PLUGIN_DEFINE(
    .name = "snmp",
    .version = SNMP_PLUGIN_VERSION,
    .description = "UPS (RFC 1628 UPS-MIB) and environment devices over SNMP v2c/v3, with a trap receiver",
    .options = snmp_options,
    .check = snmp_check,
    .create = snmp_create,
    .start = snmp_start,
    .stop = snmp_stop,
    .destroy = snmp_destroy);
