/*
 * config - the gateway's configuration file (sections gateway, mqtt,
 * alarms, instances), validated with the same option-table machinery as plugins.
 *
 * Ownership: every char * in ccgw_gateway_config_t, ccgw_mqtt_config_t and
 * ccgw_instance_config_t is a malloc'ed copy owned by the cfg and freed by
 * ccgw_gateway_config_free() (the password copy is wiped first). The
 * `options` and `node` pointers of an instance point into cfg->doc, which
 * owns every node; `desc` belongs to the resolver (the loader).
 *
 * Relative paths (gateway.plugin_dirs, gateway.data_dir, mqtt.tls.*_file) are
 * joined to the absolute (realpath'd) folder of the YAML file; !file paths
 * are resolved the same way in config_tree.c. For load_buffer() the folder is
 * that of `name` (the working directory for a bare name).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "config_schema.h"

bool ccgw_config__reported(const struct ccgw_config *node);
int ccgw_config__make_empty(struct ccgw_config *node, ccgw_node_kind_t kind);
int ccgw_config__map_add_at(struct ccgw_config *map, const char *key, unsigned line, unsigned col,
                            struct ccgw_config *child);

/* ------------------------------------------------------------------ */
/* the core's option tables                                            */
/* ------------------------------------------------------------------ */

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL}; /* = ccgw_log_level_t */

static const ccgw_option_t gateway_spool_options[] = {
    {.key = "enabled", .type = CCGW_OPT_BOOL, .def = "true",
     .doc = "Keep events and alarms in <data_dir>/spool until the broker acknowledges them (PUBACK); "
            "false = in-memory queue only (lost on a crash or kill)."},
    {.key = "max_bytes", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "268435456", .min = 65536,
     .max = 1099511627776.0,
     .doc = "Size limit of the spool: at the limit telemetry is dropped oldest-first, events are held back "
            "(backpressure, gateway alarm spool_full), alarms use a small reserve."},
    {.key = "max_age_s", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "604800", .min = 0,
     .max = 315360000, .doc = "Records not delivered after this many seconds are deleted (counted); 0 = no limit."},
    {.key = "telemetry", .type = CCGW_OPT_BOOL, .def = "false",
     .doc = "Spool telemetry too (otherwise it goes through the in-memory queue)."},
    {.key = "fsync_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "200", .min = 0, .max = 60000,
     .doc = "fsync the spool this often (a power loss loses at most this much; a crash or kill -9 "
            "loses nothing); 0 = after every record (slow)."},
    CCGW_OPTION_END,
};

const ccgw_option_t ccgw_gateway_options[] = {
    {.key = "site", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED,
     .doc = "Site name, [a-z0-9_.-]+ (1..64 chars): the second level of every topic."},
    {.key = "id", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED,
     .doc = "This gateway's id within the site, [a-z0-9_.-]+ (1..64 chars)."},
    {.key = "log_level", .type = CCGW_OPT_ENUM, .def = "info", .choices = log_levels,
     .doc = "Least severe level written to the log."},
    {.key = "plugin_dirs", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_STRING,
     .doc = "Folders searched for NAME.so, in order, before the built-in ones; relative paths are "
            "relative to this file's folder."},
    {.key = "data_dir", .type = CCGW_OPT_STRING, .def = "/var/lib/ccgw",
     .doc = "Folder for the gateway's persistent data; relative paths are relative to this file's folder."},
    {.key = "queue_size", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "65536", .min = 16,
     .max = 10000000, .doc = "Bound of the northbound message queue, in messages."},
    {.key = "backpressure_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "5000", .min = 0,
     .max = 600000, .doc = "Longest time an event emit may block on a full queue before it fails."},
    {.key = "spool", .type = CCGW_OPT_OBJECT, .children = gateway_spool_options,
     .doc = "The crash-safe spool of events and alarms (in data_dir/spool)."},
    CCGW_OPTION_END,
};

static const ccgw_option_t mqtt_tls_options[] = {
    {.key = "enabled", .type = CCGW_OPT_BOOL, .def = "false",
     .doc = "Use TLS (also implied by any of the files below)."},
    {.key = "ca_file", .type = CCGW_OPT_STRING, .doc = "CA certificates (PEM) that sign the broker's certificate."},
    {.key = "cert_file", .type = CCGW_OPT_STRING, .doc = "Client certificate (PEM); needs key_file."},
    {.key = "key_file", .type = CCGW_OPT_STRING, .doc = "Client private key (PEM); needs cert_file."},
    {.key = "insecure", .type = CCGW_OPT_BOOL, .def = "false",
     .doc = "Skip the broker host name check (test rigs only)."},
    CCGW_OPTION_END,
};

#define QOS_OPTION(k, d, what)                                                                              \
    {.key = k, .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = d, .min = 0, .max = 2,              \
     .doc = "MQTT QoS of " what "."}

static const ccgw_option_t mqtt_qos_options[] = {
    QOS_OPTION("state", "1", "retained device state"),
    QOS_OPTION("telemetry", "0", "telemetry"),
    QOS_OPTION("event", "1", "events"),
    QOS_OPTION("alarm", "1", "alarms"),
    QOS_OPTION("reply", "1", "command replies"),
    CCGW_OPTION_END,
};

static const ccgw_option_t mqtt_reconnect_options[] = {
    {.key = "min_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "500", .min = 100, .max = 600000,
     .doc = "First delay before reconnecting to the broker."},
    {.key = "max_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "30000", .min = 100,
     .max = 3600000, .doc = "The delay doubles up to this; at least min_ms."},
    CCGW_OPTION_END,
};

const ccgw_option_t ccgw_mqtt_options[] = {
    {.key = "enabled", .type = CCGW_OPT_BOOL, .def = "true",
     .doc = "Publish to MQTT (an absent mqtt section also means disabled)."},
    {.key = "host", .type = CCGW_OPT_STRING, .def = "127.0.0.1", .doc = "Broker host name or address."},
    {.key = "port", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1883", .min = 1, .max = 65535,
     .doc = "Broker TCP port."},
    {.key = "client_id", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 256,
     .doc = "MQTT client id; default ccgw-SITE-ID."},
    {.key = "keepalive_s", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "30", .min = 5, .max = 3600,
     .doc = "MQTT keepalive interval, in seconds."},
    {.key = "username", .type = CCGW_OPT_STRING, .doc = "User name for the broker."},
    {.key = "password", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_SECRET,
     .doc = "Password for the broker: use !env NAME or !file PATH."},
    {.key = "tls", .type = CCGW_OPT_OBJECT, .children = mqtt_tls_options, .doc = "TLS to the broker."},
    {.key = "topic_prefix", .type = CCGW_OPT_STRING, .def = "ccgw/v1", .flags = CCGW_OPT_F_RANGE, .min = 1,
     .max = 128, .doc = "First levels of every topic; no wildcards, no empty levels; at most 128 bytes."},
    {.key = "qos", .type = CCGW_OPT_OBJECT, .children = mqtt_qos_options, .doc = "QoS per kind of message."},
    {.key = "reconnect", .type = CCGW_OPT_OBJECT, .children = mqtt_reconnect_options,
     .doc = "Reconnect back-off."},
    {.key = "max_inflight", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1000", .min = 1,
     .max = 65535, .doc = "Most QoS 1/2 publishes waiting for the broker's acknowledgement."},
    CCGW_OPTION_END,
};

const ccgw_option_t ccgw_instance_keys[] = {
    {.key = "id", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED,
     .doc = "Instance id, [a-z0-9_.-]+ (1..64 chars), unique in the file."},
    {.key = "plugin", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED,
     .doc = "Plugin name: NAME.so in the plugin folders."},
    {.key = "enabled", .type = CCGW_OPT_BOOL, .def = "true",
     .doc = "A disabled instance is checked but not started."},
    {.key = "command_timeout_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "10000", .min = 100,
     .max = 600000, .doc = "A command without a reply after this long is answered 'timeout'."},
    /* OBJECT without children: only "is a mapping" here; config.c validates
     * it against the plugin's own table. */
    {.key = "options", .type = CCGW_OPT_OBJECT,
     .doc = "The plugin's options (see ccgw --describe-plugin NAME)."},
    CCGW_OPTION_END,
};

static const char *const rule_types[] = {"high", "high_high", "low", "low_low", "on", "off", NULL}; /* = ccgw_rule_type_t */
static const char *const rule_severities[] = {"critical", "major", "minor", "warning", NULL}; /* = ccgw_rule_severity_t */

#define DELAY_OPTION(k, what)                                                                               \
    {.key = k, .type = CCGW_OPT_DOUBLE, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0, .max = 86400,      \
     .doc = what}

const ccgw_option_t ccgw_alarm_rule_options[] = {
    {.key = "code", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED,
     .doc = "Alarm code, [a-z0-9_.-]+ (1..64 chars): the last level of the alarm topic."},
    {.key = "class", .type = CCGW_OPT_STRING,
     .doc = "Only devices of this class (ups, hvac, env, door, pbx, sms, fax, incident, conference); default any."},
    {.key = "device", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED,
     .doc = "Device id, exact or a glob where '*' matches any characters (\"room1-*\", \"*\")."},
    {.key = "value", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED,
     .doc = "Telemetry value or state attribute name watched (\"temperature\", \"water_leak\")."},
    {.key = "type", .type = CCGW_OPT_ENUM, .flags = CCGW_OPT_F_REQUIRED, .choices = rule_types,
     .doc = "high/high_high: value >= threshold; low/low_low: value <= threshold; on: value true; off: value false."},
    {.key = "threshold", .type = CCGW_OPT_DOUBLE,
     .doc = "The limit; required for high, high_high, low, low_low; not allowed for on/off."},
    {.key = "deadband", .type = CCGW_OPT_DOUBLE, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0, .max = 1e12,
     .doc = "Hysteresis: a high alarm clears below threshold - deadband, a low one above threshold + deadband."},
    DELAY_OPTION("on_delay_s", "The condition must hold this long, continuously, before the alarm is raised."),
    DELAY_OPTION("off_delay_s", "The clear condition must hold this long, continuously, before the alarm clears."),
    {.key = "severity", .type = CCGW_OPT_ENUM, .def = "major", .choices = rule_severities,
     .doc = "Published severity."},
    {.key = "message", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 512,
     .doc = "Alarm message; default generated (\"temperature 31 >= 30\")."},
    DELAY_OPTION("min_interval_s",
                 "Rate limit: at most one raise of this rule on one device per interval; suppressed raises are counted."),
    CCGW_OPTION_END,
};

const ccgw_option_t ccgw_alarms_options[] = {
    {.key = "rules", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT, .children = ccgw_alarm_rule_options,
     .doc = "Alarm rules on telemetry values and state attributes."},
    {.key = "persist", .type = CCGW_OPT_BOOL, .def = "true",
     .doc = "Keep active alarms in DATA_DIR/alarms.json and re-publish them after a restart."},
    {.key = "restore_grace_s", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "60", .min = 0, .max = 86400,
     .doc = "A restored alarm whose device is not declared again within this time after start is cleared."},
    CCGW_OPTION_END,
};

static const ccgw_option_t top_options[] = {
    {.key = "gateway", .type = CCGW_OPT_OBJECT, .doc = "This gateway."},
    {.key = "mqtt", .type = CCGW_OPT_OBJECT, .doc = "The MQTT broker; absent = MQTT disabled."},
    {.key = "alarms", .type = CCGW_OPT_OBJECT, .doc = "Alarm rules and alarm persistence."},
    {.key = "instances", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT, .doc = "Plugin instances."},
    CCGW_OPTION_END,
};

static const ccgw_option_t no_options[] = {CCGW_OPTION_END};

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

bool ccgw_valid_id(const char *s)
{
    if (!s || !*s)
        return false;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        char c = *p;
        if (n >= 64 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool valid_plugin_name(const char *s)
{
    if (!s || !*s)
        return false;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        char c = *p;
        if (n >= 64 || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* A scalar that passed validation (not null, not already reported). */
static const struct ccgw_config *good_scalar(const struct ccgw_config *map, const char *key)
{
    const struct ccgw_config *n = ccgw_config_get(map, key);
    if (!n || n->kind != CCGW_NODE_SCALAR || n->is_null || ccgw_config__reported(n))
        return NULL;
    return n;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static char *resolve_path(const ccgw_config_doc_t *doc, const char *p)
{
    if (!p)
        return NULL;
    if (p[0] == '/')
        return strdup(p);
    const char *dir = ccgw_config__dir(doc);
    while (p[0] == '.' && p[1] == '/')
        p += 2;
    if (!*p || !strcmp(p, "."))
        return strdup(dir ? dir : ".");
    char *out = NULL;
    if (asprintf(&out, "%s/%s", dir ? dir : ".", p) < 0)
        return NULL;
    return out;
}

static int to_int(int64_t v) { return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int)v; }

static int get_int(const struct ccgw_config *map, const char *key, int fallback)
{
    return to_int(ccgw_config_int(map, key, fallback));
}

/* `key:` with nothing under it counts as an empty mapping / list. */
static void null_to_empty(struct ccgw_config *map, const char *key, ccgw_node_kind_t kind)
{
    for (size_t i = 0; map && map->kind == CCGW_NODE_MAP && i < map->count; i++) {
        struct ccgw_config *v = map->items[i];
        if (!strcmp(map->keys[i], key) && v->kind == CCGW_NODE_SCALAR && v->is_null && !ccgw_config__reported(v))
            ccgw_config__make_empty(v, kind);
    }
}

static void where(const struct ccgw_config *n, char *buf, size_t len) { ccgw_config_where(n, buf, len); }

/* ------------------------------------------------------------------ */
/* sections                                                            */
/* ------------------------------------------------------------------ */

static bool fill_gateway(ccgw_gateway_config_t *cfg, struct ccgw_config *gw)
{
    ccgw_config_doc_t *doc = cfg->doc;
    static const char *const ids[] = {"site", "id"};
    for (size_t i = 0; i < 2; i++) {
        const struct ccgw_config *n = good_scalar(gw, ids[i]);
        if (!n)
            continue;
        if (!ccgw_valid_id(n->text)) {
            ccgw_config_diag(doc, n, "'%s' must match [a-z0-9_.-]+ (1..64 characters), got '%.80s'", ids[i],
                             n->text);
            continue;
        }
        char *copy = strdup(n->text);
        if (i == 0)
            cfg->site = copy;
        else
            cfg->gateway_id = copy;
    }
    const char *lvl = ccgw_config_string(gw, "log_level", "info");
    cfg->log_level = CCGW_LOG_INFO;
    for (int i = 0; log_levels[i]; i++)
        if (!strcmp(lvl, log_levels[i]))
            cfg->log_level = i;

    bool dirs_ok = true;
    const struct ccgw_config *dirs = ccgw_config_get(gw, "plugin_dirs");
    if (dirs) {
        if (dirs->kind != CCGW_NODE_LIST || ccgw_config__reported(dirs)) {
            dirs_ok = false;
        } else if (dirs->count > 0) {
            cfg->plugin_dirs = calloc(dirs->count, sizeof *cfg->plugin_dirs);
            for (size_t i = 0; cfg->plugin_dirs && i < dirs->count; i++) {
                const struct ccgw_config *d = dirs->items[i];
                if (d->kind != CCGW_NODE_SCALAR || d->is_null || ccgw_config__reported(d)) {
                    dirs_ok = false;
                    continue;
                }
                char *p = resolve_path(doc, d->text);
                if (p)
                    cfg->plugin_dirs[cfg->n_plugin_dirs++] = p;
            }
        }
    }
    const struct ccgw_config *dd = good_scalar(gw, "data_dir");
    cfg->data_dir = resolve_path(doc, dd ? dd->text : "/var/lib/ccgw");
    cfg->queue_size = get_int(gw, "queue_size", 65536);
    cfg->backpressure_ms = get_int(gw, "backpressure_ms", 5000);
    const struct ccgw_config *sp = ccgw_config_get(gw, "spool");
    cfg->spool.enabled = ccgw_config_bool(sp, "enabled", true);
    cfg->spool.max_bytes = ccgw_config_int(sp, "max_bytes", INT64_C(268435456));
    cfg->spool.max_age_s = ccgw_config_int(sp, "max_age_s", 604800);
    cfg->spool.telemetry = ccgw_config_bool(sp, "telemetry", false);
    cfg->spool.fsync_ms = get_int(sp, "fsync_ms", 200);
    return dirs_ok;
}

static bool valid_topic_prefix(const char *s)
{
    if (!*s || s[0] == '/' || s[strlen(s) - 1] == '/' || strstr(s, "//"))
        return false;
    for (const char *p = s; *p; p++)
        if (*p == '+' || *p == '#')
            return false;
    return true;
}

static void fill_mqtt(ccgw_gateway_config_t *cfg, struct ccgw_config *m, bool present)
{
    ccgw_config_doc_t *doc = cfg->doc;
    ccgw_mqtt_config_t *q = &cfg->mqtt;
    q->enabled = present && ccgw_config_bool(m, "enabled", true);
    q->host = strdup(ccgw_config_string(m, "host", "127.0.0.1"));
    q->port = get_int(m, "port", 1883);
    const char *cid = ccgw_config_string(m, "client_id", NULL);
    if (cid) {
        q->client_id = strdup(cid);
    } else if (asprintf(&q->client_id, "ccgw-%s-%s", cfg->site ? cfg->site : "",
                        cfg->gateway_id ? cfg->gateway_id : "") < 0) {
        q->client_id = NULL;
    }
    q->keepalive_s = get_int(m, "keepalive_s", 30);
    q->username = dup_or_null(ccgw_config_string(m, "username", NULL));
    q->password = dup_or_null(ccgw_config_string(m, "password", NULL));

    const struct ccgw_config *tls = ccgw_config_get(m, "tls");
    bool tls_on = ccgw_config_bool(tls, "enabled", false);
    const struct ccgw_config *ca = good_scalar(tls, "ca_file"), *cert = good_scalar(tls, "cert_file"),
                             *key = good_scalar(tls, "key_file");
    q->ca_file = ca ? resolve_path(doc, ca->text) : NULL;
    q->cert_file = cert ? resolve_path(doc, cert->text) : NULL;
    q->key_file = key ? resolve_path(doc, key->text) : NULL;
    q->tls = tls_on || ca || cert || key;
    q->tls_insecure = ccgw_config_bool(tls, "insecure", false);
    if (!cert != !key)
        ccgw_config_diag(doc, cert ? cert : key, "mqtt.tls: '%s' needs '%s' too", cert ? "cert_file" : "key_file",
                         cert ? "key_file" : "cert_file");
    /* files that are not there fail here, not at the first connect */
    const struct ccgw_config *files[] = {ca, cert, key};
    const char *paths[] = {q->ca_file, q->cert_file, q->key_file};
    for (int i = 0; i < 3; i++)
        if (files[i] && paths[i] && access(paths[i], R_OK) != 0)
            ccgw_config_diag(doc, files[i], "mqtt.tls: cannot read '%s': %s", paths[i], strerror(errno));
    const struct ccgw_config *pw = ccgw_config_get(m, "password");
    if (pw && !q->username)
        ccgw_config_diag(doc, pw, "mqtt: 'password' needs 'username' (MQTT sends no password without a user name)");

    const struct ccgw_config *tp = good_scalar(m, "topic_prefix");
    if (tp && !valid_topic_prefix(tp->text))
        ccgw_config_diag(doc, tp,
                         "'topic_prefix' must be topic levels without wildcards (+ #) or empty levels, got '%.80s'",
                         tp->text);
    q->topic_prefix = strdup(tp ? tp->text : "ccgw/v1");

    const struct ccgw_config *qos = ccgw_config_get(m, "qos");
    q->qos_state = get_int(qos, "state", 1);
    q->qos_telemetry = get_int(qos, "telemetry", 0);
    q->qos_event = get_int(qos, "event", 1);
    q->qos_alarm = get_int(qos, "alarm", 1);
    q->qos_reply = get_int(qos, "reply", 1);

    const struct ccgw_config *rc = ccgw_config_get(m, "reconnect");
    q->reconnect_min_ms = get_int(rc, "min_ms", 500);
    q->reconnect_max_ms = get_int(rc, "max_ms", 30000);
    const struct ccgw_config *rmax = good_scalar(rc, "max_ms");
    if (q->reconnect_max_ms < q->reconnect_min_ms && rmax)
        ccgw_config_diag(doc, rmax, "'max_ms' (%d) must be at least 'min_ms' (%d)", q->reconnect_max_ms,
                         q->reconnect_min_ms);
    q->max_inflight = get_int(m, "max_inflight", 1000);
}

static void fill_alarms(ccgw_gateway_config_t *cfg, struct ccgw_config *a)
{
    ccgw_config_doc_t *doc = cfg->doc;
    ccgw_alarms_config_t *al = &cfg->alarms;
    al->persist = ccgw_config_bool(a, "persist", true);
    al->restore_grace_s = get_int(a, "restore_grace_s", 60);
    const struct ccgw_config *list = ccgw_config_get(a, "rules");
    if (!list || list->kind != CCGW_NODE_LIST || ccgw_config__reported(list) || list->count == 0)
        return;
    al->rules = calloc(list->count, sizeof *al->rules);
    if (!al->rules) {
        ccgw_config_diag(doc, list, "out of memory");
        return;
    }
    for (size_t i = 0; i < list->count; i++) {
        const struct ccgw_config *item = list->items[i];
        if (item->kind != CCGW_NODE_MAP || ccgw_config__reported(item))
            continue;
        const struct ccgw_config *code = good_scalar(item, "code"), *cls = good_scalar(item, "class"),
                                 *dev = good_scalar(item, "device"), *val = good_scalar(item, "value"),
                                 *type = good_scalar(item, "type"), *thr = good_scalar(item, "threshold");
        if (!code || !dev || !val || !type)
            continue; /* reported by the schema */
        bool ok = true;
        if (!ccgw_valid_id(code->text)) {
            ccgw_config_diag(doc, code, "alarms.rules[%zu]: 'code' must match [a-z0-9_.-]+ (1..64 characters), got '%.80s'",
                             i, code->text);
            ok = false;
        }
        static const char *const classes[] = {"ups", "hvac", "env", "door", "pbx", "sms", "fax", "incident", "conference", NULL};
        if (cls) {
            bool known = false;
            for (int k = 0; classes[k]; k++)
                known = known || !strcmp(classes[k], cls->text);
            if (!known) {
                ccgw_config_diag(doc, cls, "alarms.rules[%zu]: unknown class '%.80s' (ups, hvac, env, door, pbx, sms, "
                                 "fax, incident, conference)", i, cls->text);
                ok = false;
            }
        }
        bool dev_ok = *dev->text && strlen(dev->text) <= 64;
        for (const char *p = dev->text; *p; p++)
            dev_ok = dev_ok && ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' ||
                                *p == '-' || *p == '*');
        if (!dev_ok) {
            ccgw_config_diag(doc, dev, "alarms.rules[%zu]: 'device' must be a device id or a glob of [a-z0-9_.-*], got '%.80s'",
                             i, dev->text);
            ok = false;
        }
        bool val_ok = *val->text && strlen(val->text) <= 128;
        for (const char *p = val->text; *p; p++)
            val_ok = val_ok && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                                *p == '_' || *p == '.' || *p == '-');
        if (!val_ok) {
            ccgw_config_diag(doc, val, "alarms.rules[%zu]: 'value' must be a value name [A-Za-z0-9_.-]+, got '%.80s'", i,
                             val->text);
            ok = false;
        }
        int t = 0;
        for (int k = 0; rule_types[k]; k++)
            if (!strcmp(rule_types[k], type->text))
                t = k;
        bool is_bool = t == CCGW_RULE_ON || t == CCGW_RULE_OFF; /* not ccgw_rule_is_bool: the config fuzzer links config.c alone */
        const struct ccgw_config *thr_node = ccgw_config_get(item, "threshold");
        if (!is_bool && !thr_node) {
            ccgw_config_diag(doc, type, "alarms.rules[%zu]: a '%s' rule needs 'threshold'", i, type->text);
            ok = false;
        } else if (is_bool && thr_node) {
            ccgw_config_diag(doc, thr_node, "alarms.rules[%zu]: an '%s' rule takes no 'threshold'", i, type->text);
            ok = false;
        } else if (!is_bool && !thr) {
            ok = false; /* mistyped: reported by the schema */
        }
        const struct ccgw_config *db = ccgw_config_get(item, "deadband");
        if (is_bool && db && !db->is_default) {
            ccgw_config_diag(doc, db, "alarms.rules[%zu]: an '%s' rule takes no 'deadband'", i, type->text);
            ok = false;
        }
        if (!ok)
            continue;
        ccgw_alarm_rule_t *r = &al->rules[al->n_rules];
        r->code = strdup(code->text);
        r->class_name = cls ? strdup(cls->text) : NULL;
        r->device = strdup(dev->text);
        r->value = strdup(val->text);
        r->type = (ccgw_rule_type_t)t;
        r->threshold = thr ? ccgw_config_double(item, "threshold", 0) : 0;
        r->deadband = ccgw_config_double(item, "deadband", 0);
        r->on_delay_s = ccgw_config_double(item, "on_delay_s", 0);
        r->off_delay_s = ccgw_config_double(item, "off_delay_s", 0);
        r->min_interval_s = ccgw_config_double(item, "min_interval_s", 0);
        const char *sev = ccgw_config_string(item, "severity", "major");
        r->severity = CCGW_RSEV_MAJOR;
        for (int k = 0; rule_severities[k]; k++)
            if (!strcmp(rule_severities[k], sev))
                r->severity = (ccgw_rule_severity_t)k;
        r->message = dup_or_null(ccgw_config_string(item, "message", NULL));
        al->n_rules++;
    }
}

/* ---- instance ids: a small open-addressing set ---- */

typedef struct idset {
    const ccgw_instance_config_t **slots;
    size_t cap;
} idset_t;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Returns the instance already holding `ic->id`, or NULL after adding ic. */
static const ccgw_instance_config_t *idset_add(idset_t *set, const ccgw_instance_config_t *ic)
{
    if (!set->slots)
        return NULL;
    size_t i = (size_t)hash_str(ic->id) & (set->cap - 1);
    while (set->slots[i]) {
        if (!strcmp(set->slots[i]->id, ic->id))
            return set->slots[i];
        i = (i + 1) & (set->cap - 1);
    }
    set->slots[i] = ic;
    return NULL;
}

static void load_instance(ccgw_gateway_config_t *cfg, struct ccgw_config *item, size_t index, idset_t *ids,
                          ccgw_plugin_resolver_fn resolver, void *ctx, bool dirs_ok)
{
    ccgw_config_doc_t *doc = cfg->doc;
    ccgw_instance_config_t *ic = &cfg->instances[cfg->n_instances++];
    ic->node = item;
    ic->enabled = true;
    ic->command_timeout_ms = 10000;
    if (item->kind != CCGW_NODE_MAP || ccgw_config__reported(item))
        return; /* reported by the top-level validation */

    char label[128];
    const struct ccgw_config *idn = good_scalar(item, "id");
    if (idn && ccgw_valid_id(idn->text))
        snprintf(label, sizeof label, "instance '%s'", idn->text);
    else
        snprintf(label, sizeof label, "instances[%zu]", index);

    null_to_empty(item, "options", CCGW_NODE_MAP);
    ccgw_schema_validate(item, ccgw_instance_keys, label);

    if (idn) {
        if (!ccgw_valid_id(idn->text)) {
            ccgw_config_diag(doc, idn, "instance id must match [a-z0-9_.-]+ (1..64 characters), got '%.80s'",
                             idn->text);
        } else {
            ic->id = strdup(idn->text);
            const ccgw_instance_config_t *first = ic->id ? idset_add(ids, ic) : NULL;
            if (first) {
                char w[300];
                where(ccgw_config_get(first->node, "id"), w, sizeof w);
                ccgw_config_diag(doc, idn, "duplicate instance id '%s' (first defined at %s)", ic->id, w);
            }
        }
    }
    ic->enabled = ccgw_config_bool(item, "enabled", true);
    ic->command_timeout_ms = get_int(item, "command_timeout_ms", 10000);

    const struct ccgw_config *pn = good_scalar(item, "plugin");
    bool plugin_ok = false;
    if (pn) {
        if (!valid_plugin_name(pn->text))
            ccgw_config_diag(doc, pn, "'plugin' must be a plugin name, [a-z0-9_-]+ (1..64 characters), got '%.80s'",
                             pn->text);
        else
            plugin_ok = (ic->plugin = strdup(pn->text)) != NULL;
    }

    /* options: present and a mapping, or absent (an empty mapping is added) */
    const struct ccgw_config *opt = ccgw_config_get(item, "options");
    bool options_ok = !opt || (opt->kind == CCGW_NODE_MAP && !ccgw_config__reported(opt));
    if (!resolver || !plugin_ok || !dirs_ok) {
        /* no descriptor to check the keys against: just make sure the node exists */
        if (!opt && (opt = ccgw_config_node_new(doc, CCGW_NODE_MAP, NULL, item->line, item->col)) != NULL) {
            ((struct ccgw_config *)opt)->is_default = true;
            ccgw_config__map_add_at(item, "options", item->line, item->col, (struct ccgw_config *)opt);
        }
        ic->options = options_ok ? (struct ccgw_config *)opt : NULL;
        return;
    }
    char why[512] = "";
    bool fatal = true;
    const ccgw_plugin_t *desc = resolver(ctx, cfg, ic->plugin, why, sizeof why, &fatal);
    if (!desc) {
        if (fatal)
            ccgw_config_diag(doc, pn, "plugin '%s': %s", ic->plugin, why[0] ? why : "not found");
        else
            ic->refused = strdup(why[0] ? why : "refused");
        return;
    }
    ic->desc = desc;
    if (!options_ok)
        return;
    char what[192];
    snprintf(what, sizeof what, "%s options", label);
    int errors = ccgw_schema_validate_child(item, "options", desc->options ? desc->options : no_options, what);
    ic->options = (struct ccgw_config *)ccgw_config_get(item, "options");
    if (errors == 0 && desc->check && ic->options) {
        size_t before = doc->n_diags;
        int r = desc->check(ic->options);
        if (r != 0 && doc->n_diags == before)
            ccgw_config_diag(doc, ic->options, "%s: plugin '%s' check() failed (%d) without saying why", label,
                             ic->plugin, r);
    }
}

/* ------------------------------------------------------------------ */
/* load                                                                */
/* ------------------------------------------------------------------ */

static ccgw_gateway_config_t *load_doc(ccgw_config_doc_t *doc, ccgw_plugin_resolver_fn resolver, void *ctx)
{
    if (!doc)
        return NULL;
    ccgw_gateway_config_t *cfg = calloc(1, sizeof *cfg);
    if (!cfg) {
        ccgw_config_doc_free(doc);
        return NULL;
    }
    cfg->doc = doc;
    cfg->path = strdup(doc->name);
    cfg->log_level = CCGW_LOG_INFO;
    cfg->queue_size = 65536;
    cfg->backpressure_ms = 5000;
    cfg->spool.enabled = true;
    cfg->spool.max_bytes = INT64_C(268435456);
    cfg->spool.max_age_s = 604800;
    cfg->spool.fsync_ms = 200;

    struct ccgw_config *root = doc->root;
    bool dirs_ok = true;
    if (!root) {
        if (doc->n_diags == 0)
            ccgw_config_diag(doc, NULL, "the configuration is empty (expected sections gateway, mqtt, instances)");
    } else if (root->kind != CCGW_NODE_MAP) {
        ccgw_schema_validate(root, top_options, NULL); /* "must be a mapping" */
        root = NULL;
    } else {
        null_to_empty(root, "gateway", CCGW_NODE_MAP);
        null_to_empty(root, "mqtt", CCGW_NODE_MAP);
        null_to_empty(root, "alarms", CCGW_NODE_MAP);
        null_to_empty(root, "instances", CCGW_NODE_LIST);
        ccgw_schema_validate(root, top_options, NULL);
    }

    struct ccgw_config *gw = (struct ccgw_config *)ccgw_config_get(root, "gateway");
    if (root && !gw)
        ccgw_config_diag(doc, root, "missing required section 'gateway'");
    if (gw && gw->kind == CCGW_NODE_MAP && !ccgw_config__reported(gw)) {
        ccgw_schema_validate(gw, ccgw_gateway_options, "gateway");
        dirs_ok = fill_gateway(cfg, gw);
    } else {
        cfg->data_dir = strdup("/var/lib/ccgw");
    }

    struct ccgw_config *m = (struct ccgw_config *)ccgw_config_get(root, "mqtt");
    if (m && m->kind == CCGW_NODE_MAP && !ccgw_config__reported(m)) {
        ccgw_schema_validate(m, ccgw_mqtt_options, "mqtt");
        fill_mqtt(cfg, m, true);
    } else {
        /* absent (or broken): disabled, but every field holds its default */
        struct ccgw_config *dflt = ccgw_config_node_new(doc, CCGW_NODE_MAP, NULL, 0, 0);
        if (dflt)
            ccgw_schema_validate(dflt, ccgw_mqtt_options, "mqtt");
        fill_mqtt(cfg, dflt, false);
    }

    struct ccgw_config *al = (struct ccgw_config *)ccgw_config_get(root, "alarms");
    cfg->alarms.persist = true;
    cfg->alarms.restore_grace_s = 60;
    if (al && al->kind == CCGW_NODE_MAP && !ccgw_config__reported(al)) {
        null_to_empty(al, "rules", CCGW_NODE_LIST);
        ccgw_schema_validate(al, ccgw_alarms_options, "alarms");
        fill_alarms(cfg, al);
    }

    struct ccgw_config *list = (struct ccgw_config *)ccgw_config_get(root, "instances");
    if (list && list->kind == CCGW_NODE_LIST && !ccgw_config__reported(list) && list->count > 0) {
        cfg->instances = calloc(list->count, sizeof *cfg->instances);
        idset_t ids = {.cap = 16};
        while (ids.cap < list->count * 2)
            ids.cap *= 2;
        ids.slots = calloc(ids.cap, sizeof *ids.slots);
        if (!cfg->instances || !ids.slots) {
            ccgw_config_diag(doc, list, "out of memory");
        } else {
            for (size_t i = 0; i < list->count; i++)
                load_instance(cfg, list->items[i], i, &ids, resolver, ctx, dirs_ok);
        }
        free(ids.slots);
    }
    return cfg;
}

ccgw_gateway_config_t *ccgw_gateway_config_load(const char *path, ccgw_plugin_resolver_fn resolver, void *ctx)
{
    return load_doc(ccgw_config_load_yaml_file(path), resolver, ctx);
}

ccgw_gateway_config_t *ccgw_gateway_config_load_buffer(const char *name, const char *buf, size_t len,
                                                       ccgw_plugin_resolver_fn resolver, void *ctx)
{
    return load_doc(ccgw_config_load_yaml_buffer(name, buf, len), resolver, ctx);
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void ccgw_gateway_config_free(ccgw_gateway_config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->site);
    free(cfg->gateway_id);
    for (size_t i = 0; i < cfg->n_plugin_dirs; i++)
        free(cfg->plugin_dirs[i]);
    free(cfg->plugin_dirs);
    free(cfg->data_dir);
    ccgw_mqtt_config_t *q = &cfg->mqtt;
    free(q->host);
    free(q->client_id);
    free(q->username);
    wipe_free(q->password);
    free(q->ca_file);
    free(q->cert_file);
    free(q->key_file);
    free(q->topic_prefix);
    for (size_t i = 0; i < cfg->alarms.n_rules; i++) {
        ccgw_alarm_rule_t *r = &cfg->alarms.rules[i];
        free(r->code);
        free(r->class_name);
        free(r->device);
        free(r->value);
        free(r->message);
    }
    free(cfg->alarms.rules);
    for (size_t i = 0; i < cfg->n_instances; i++) {
        free(cfg->instances[i].id);
        free(cfg->instances[i].plugin);
        free(cfg->instances[i].refused);
    }
    free(cfg->instances);
    ccgw_config_doc_free(cfg->doc);
    free(cfg);
}
