/*
 * config - the gateway's configuration file (sections gateway, mqtt,
 * alarms, http, instances), validated with the same option-table machinery as plugins.
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

#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "config_schema.h"

bool ccgw_config__reported(const struct ccgw_config *node);
int ccgw_config__make_empty(struct ccgw_config *node, ccgw_node_kind_t kind);
int ccgw_config__map_add_at(struct ccgw_config *map, const char *key, unsigned line, unsigned col,
                            struct ccgw_config *child);

/* ------------------------------------------------------------------ */
/* the core's option tables                                            */
/* ------------------------------------------------------------------ */

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL}; /* = ccgw_log_level_t */

/* gateway.supervision and instances[].supervision (no defaults in the table:
 * an instance's absent key falls back to the gateway's value) */
const ccgw_option_t ccgw_supervision_options[] = {
    {.key = "restart_min_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .min = 10, .max = 3600000,
     .doc = "First delay before restarting a failed instance (default 1000); doubles up to restart_max_ms, with jitter."},
    {.key = "restart_max_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .min = 10, .max = 86400000,
     .doc = "Longest delay between restarts (default 60000); at least restart_min_ms."},
    {.key = "max_failures", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 1000000,
     .doc = "This many failures within failure_window_s quarantine the instance: no more restarts, "
            "gateway alarm quarantine.<instance> (default 5)."},
    {.key = "failure_window_s", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 604800,
     .doc = "Window in which failures are counted, in seconds (default 300)."},
    {.key = "hang_timeout_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .min = 500, .max = 3600000,
     .doc = "An instance whose loop has not turned for this long is reported hung (default 30000)."},
    {.key = "start_timeout_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .min = 100, .max = 3600000,
     .doc = "An instance still in create()/start() after this long is reported hung (default 15000)."},
    CCGW_OPTION_END,
};

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
    {.key = "supervision", .type = CCGW_OPT_OBJECT, .children = ccgw_supervision_options,
     .doc = "Plugin supervision defaults: restart backoff, quarantine, hang detection (docs/operations.md)."},
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
    {.key = "max_inflight", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "100", .min = 1,
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
    {.key = "supervision", .type = CCGW_OPT_OBJECT, .children = ccgw_supervision_options,
     .doc = "Overrides of gateway.supervision for this instance."},
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

static const char *const http_roles[] = {"none", "viewer", "operator", "admin", NULL}; /* = ccgw_role_t */
static const char *const token_roles[] = {"viewer", "operator", "admin", NULL};

static const ccgw_option_t http_token_options[] = {
    {.key = "name", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED,
     .doc = "Token name, [a-z0-9_.-]+ (1..64 chars), unique: shown in the audit log."},
    {.key = "role", .type = CCGW_OPT_ENUM, .flags = CCGW_OPT_F_REQUIRED, .choices = token_roles,
     .doc = "viewer: read; operator: + commands and alarm acknowledgement; admin: + reload."},
    {.key = "sha256", .type = CCGW_OPT_STRING,
     .doc = "SHA-256 of the token, 64 hex digits (ccgw --hash-token); exactly one of sha256, token, token_file."},
    {.key = "token", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_SECRET,
     .doc = "The token itself; use !env NAME (or !file PATH)."},
    {.key = "token_file", .type = CCGW_OPT_STRING,
     .doc = "File holding the token (read at load, trailing newline removed); relative to this file's folder."},
    {.key = "filters", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_STRING,
     .doc = "MQTT topic filters the token may see and command; absent = everything."},
    {.key = "commands", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_STRING,
     .doc = "Command names the token may send (\"door.unlock\", \"door.*\", \"*\"); absent = all."},
    CCGW_OPTION_END,
};

const ccgw_option_t ccgw_http_options[] = {
    {.key = "enabled", .type = CCGW_OPT_BOOL, .def = "true",
     .doc = "Serve WebSocket and HTTP (an absent http section also means disabled)."},
    {.key = "address", .type = CCGW_OPT_STRING, .def = "127.0.0.1", .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 255,
     .doc = "Listen address."},
    {.key = "port", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "8080", .min = 0, .max = 65535,
     .doc = "Listen TCP port; 0 = any free port (logged)."},
    {.key = "cert_file", .type = CCGW_OPT_STRING, .doc = "Server certificate (PEM): TLS when set with key_file."},
    {.key = "key_file", .type = CCGW_OPT_STRING, .doc = "Server private key (PEM); needs cert_file."},
    {.key = "web_root", .type = CCGW_OPT_STRING,
     .doc = "Folder of the dashboard files; default BINDIR/../share/ccgw/web."},
    {.key = "dashboard", .type = CCGW_OPT_BOOL, .def = "true", .doc = "Serve the dashboard at /."},
    {.key = "anonymous_role", .type = CCGW_OPT_ENUM, .def = "none", .choices = http_roles,
     .doc = "Role of requests without a token; none = refused (401)."},
    {.key = "max_clients", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "10000", .min = 1,
     .max = 1000000, .doc = "Most WebSocket clients at once."},
    {.key = "client_queue", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "4096", .min = 16,
     .max = 10000000, .doc = "Send queue of one WebSocket client, in messages."},
    {.key = "client_queue_bytes", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "4194304", .min = 65536,
     .max = 1073741824, .doc = "Send queue of one WebSocket client, in bytes."},
    {.key = "queue_budget_bytes", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "268435456", .min = 0,
     .max = 2147483647, .doc = "All WebSocket send queues together: each client's byte limit is at most its share "
     "(at least 16 KiB); 0 = no budget."},
    {.key = "max_request_bytes", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "65536", .min = 1024,
     .max = 67108864, .doc = "Largest HTTP request body or WebSocket message."},
    {.key = "batch_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "5", .min = 0, .max = 1000,
     .doc = "Longest delay before queued messages go out in one batch frame."},
    {.key = "audit_log", .type = CCGW_OPT_STRING,
     .doc = "Audit trail file (JSON lines); default DATA_DIR/audit.jsonl; \"\" = none (published only)."},
    {.key = "tokens", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT, .children = http_token_options,
     .doc = "Bearer tokens: name, role and what they may see and do."},
    CCGW_OPTION_END,
};

static const ccgw_option_t top_options[] = {
    {.key = "gateway", .type = CCGW_OPT_OBJECT, .doc = "This gateway."},
    {.key = "mqtt", .type = CCGW_OPT_OBJECT, .doc = "The MQTT broker; absent = MQTT disabled."},
    {.key = "alarms", .type = CCGW_OPT_OBJECT, .doc = "Alarm rules and alarm persistence."},
    {.key = "http", .type = CCGW_OPT_OBJECT, .doc = "WebSocket and HTTP API; absent = disabled."},
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

static void fill_supervision(ccgw_config_doc_t *doc, const struct ccgw_config *m,
                             const ccgw_supervision_config_t *base, ccgw_supervision_config_t *out)
{
    *out = *base;
    if (!m || m->kind != CCGW_NODE_MAP || ccgw_config__reported(m))
        return;
    out->restart_min_ms = get_int(m, "restart_min_ms", base->restart_min_ms);
    out->restart_max_ms = get_int(m, "restart_max_ms", base->restart_max_ms);
    out->max_failures = get_int(m, "max_failures", base->max_failures);
    out->failure_window_s = get_int(m, "failure_window_s", base->failure_window_s);
    out->hang_timeout_ms = get_int(m, "hang_timeout_ms", base->hang_timeout_ms);
    out->start_timeout_ms = get_int(m, "start_timeout_ms", base->start_timeout_ms);
    if (out->restart_max_ms < out->restart_min_ms) {
        const struct ccgw_config *n = ccgw_config_get(m, "restart_max_ms");
        ccgw_config_diag(doc, n ? n : ccgw_config_get(m, "restart_min_ms"),
                         "supervision: 'restart_max_ms' (%d) must be at least 'restart_min_ms' (%d)",
                         out->restart_max_ms, out->restart_min_ms);
    }
}

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
    ccgw_supervision_config_t base = cfg->supervision;
    fill_supervision(doc, ccgw_config_get(gw, "supervision"), &base, &cfg->supervision);
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
    q->max_inflight = get_int(m, "max_inflight", 100);
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

/* ---- http ---- */

static bool valid_command_pattern(const char *s)
{
    size_t n = strlen(s);
    if (!strcmp(s, "*"))
        return true;
    if (n >= 2 && s[n - 1] == '*' && s[n - 2] == '.')
        n -= 2; /* "prefix.*" */
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* A token file's content, trailing white space removed; NULL with errno. */
static char *read_token_file(const char *path)
{
    /* a regular file only: never block on a FIFO or read a device */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        close(fd);
        errno = e;
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return NULL;
    }
    char buf[4097];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int err = ferror(f) ? errno : 0;
    bool more = !err && fgetc(f) != EOF;
    fclose(f);
    if (err) {
        errno = err ? err : EIO;
        return NULL;
    }
    if (more) {
        errno = EFBIG;
        return NULL;
    }
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    char *out = strdup(buf);
    explicit_bzero(buf, sizeof buf);
    return out;
}

/* <dir of this executable>/../share/ccgw/web */
static char *default_web_root(void)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char *out = NULL;
            if (asprintf(&out, "%s/../share/ccgw/web", exe[0] ? exe : "") >= 0)
                return out;
        }
    }
    return strdup("/usr/share/ccgw/web");
}

static char **string_list(ccgw_config_doc_t *doc, const struct ccgw_config *list, size_t *n, size_t index,
                          const char *key, bool (*valid)(const char *), const char *what)
{
    *n = 0;
    if (!list || list->kind != CCGW_NODE_LIST || ccgw_config__reported(list) || list->count == 0)
        return NULL;
    char **out = calloc(list->count, sizeof *out);
    if (!out)
        return NULL;
    for (size_t i = 0; i < list->count; i++) {
        const struct ccgw_config *it = list->items[i];
        if (it->kind != CCGW_NODE_SCALAR || it->is_null || ccgw_config__reported(it))
            continue; /* reported by the schema */
        if (!valid(it->text)) {
            ccgw_config_diag(doc, it, "http.tokens[%zu].%s[%zu]: %s, got '%.80s'", index, key, i, what, it->text);
            continue;
        }
        if ((out[*n] = strdup(it->text)) != NULL)
            (*n)++;
    }
    return out;
}

static void fill_http(ccgw_gateway_config_t *cfg, struct ccgw_config *h, bool present)
{
    ccgw_config_doc_t *doc = cfg->doc;
    ccgw_http_config_t *c = &cfg->http;
    c->enabled = present && ccgw_config_bool(h, "enabled", true);
    c->address = strdup(ccgw_config_string(h, "address", "127.0.0.1"));
    c->port = get_int(h, "port", 8080);
    const struct ccgw_config *cert = good_scalar(h, "cert_file"), *key = good_scalar(h, "key_file");
    c->cert_file = cert ? resolve_path(doc, cert->text) : NULL;
    c->key_file = key ? resolve_path(doc, key->text) : NULL;
    if (!cert != !key)
        ccgw_config_diag(doc, cert ? cert : key, "http: '%s' needs '%s' too", cert ? "cert_file" : "key_file",
                         cert ? "key_file" : "cert_file");
    const struct ccgw_config *files[] = {cert, key};
    const char *paths[] = {c->cert_file, c->key_file};
    for (int i = 0; i < 2; i++)
        if (files[i] && paths[i] && access(paths[i], R_OK) != 0)
            ccgw_config_diag(doc, files[i], "http: cannot read '%s': %s", paths[i], strerror(errno));
    const struct ccgw_config *wr = good_scalar(h, "web_root");
    c->web_root = wr ? resolve_path(doc, wr->text) : default_web_root();
    c->dashboard = ccgw_config_bool(h, "dashboard", true);
    const char *anon = ccgw_config_string(h, "anonymous_role", "none");
    c->anonymous_role = CCGW_ROLE_NONE;
    for (int i = 0; http_roles[i]; i++)
        if (!strcmp(anon, http_roles[i]))
            c->anonymous_role = i;
    c->max_clients = get_int(h, "max_clients", 10000);
    c->client_queue = get_int(h, "client_queue", 4096);
    c->client_queue_bytes = get_int(h, "client_queue_bytes", 4194304);
    c->queue_budget_bytes = get_int(h, "queue_budget_bytes", 268435456);
    c->max_request_bytes = get_int(h, "max_request_bytes", 65536);
    c->batch_ms = get_int(h, "batch_ms", 5);
    const struct ccgw_config *al = good_scalar(h, "audit_log");
    if (al)
        c->audit_log = al->text[0] ? resolve_path(doc, al->text) : NULL; /* "" = no file */
    else if (cfg->data_dir && asprintf(&c->audit_log, "%s/audit.jsonl", cfg->data_dir) < 0)
        c->audit_log = NULL;

    const struct ccgw_config *list = ccgw_config_get(h, "tokens");
    if (!list || list->kind != CCGW_NODE_LIST || ccgw_config__reported(list) || list->count == 0)
        return;
    c->tokens = calloc(list->count, sizeof *c->tokens);
    if (!c->tokens) {
        ccgw_config_diag(doc, list, "out of memory");
        return;
    }
    for (size_t i = 0; i < list->count; i++) {
        const struct ccgw_config *item = list->items[i];
        if (item->kind != CCGW_NODE_MAP || ccgw_config__reported(item))
            continue;
        const struct ccgw_config *name = good_scalar(item, "name"), *role = good_scalar(item, "role");
        static const char *const secrets[] = {"sha256", "token", "token_file"};
        const struct ccgw_config *given[3];
        int n_given = 0, which = -1;
        bool ok = name && role;
        for (int k = 0; k < 3; k++) {
            given[k] = ccgw_config_get(item, secrets[k]);
            if (given[k]) {
                n_given++;
                which = k;
                if (!good_scalar(item, secrets[k]))
                    ok = false; /* reported by the schema */
            }
        }
        if (n_given != 1) {
            if (n_given == 0)
                ccgw_config_diag(doc, item, "http.tokens[%zu]: needs one of 'sha256', 'token' or 'token_file'", i);
            else
                ccgw_config_diag(doc, item, "http.tokens[%zu]: give only one of 'sha256', 'token' and 'token_file'",
                                 i);
            ok = false;
        }
        if (name && !ccgw_valid_id(name->text)) {
            ccgw_config_diag(doc, name, "http.tokens[%zu]: 'name' must match [a-z0-9_.-]+ (1..64 characters), got '%.80s'",
                             i, name->text);
            ok = false;
        }
        ccgw_http_token_t t = {.role = CCGW_ROLE_NONE};
        for (int k = 0; role && token_roles[k]; k++)
            if (!strcmp(role->text, token_roles[k]))
                t.role = CCGW_ROLE_VIEWER + k;
        if (t.role == CCGW_ROLE_NONE)
            ok = false; /* not one of the choices: reported by the schema */
        if (ok && which == 0) {
            const char *hx = given[0]->text;
            bool hex_ok = strlen(hx) == 64;
            for (size_t k = 0; hex_ok && k < 64; k++)
                hex_ok = (hx[k] >= '0' && hx[k] <= '9') || (hx[k] >= 'a' && hx[k] <= 'f') ||
                         (hx[k] >= 'A' && hx[k] <= 'F');
            if (!hex_ok) {
                ccgw_config_diag(doc, given[0], "http.tokens[%zu]: 'sha256' must be 64 hexadecimal digits%s", i,
                                 given[0]->secret ? "" : " (ccgw --hash-token prints it)");
                ok = false;
            } else {
                for (size_t k = 0; k < 64; k++)
                    t.sha256[k] = (char)((hx[k] >= 'A' && hx[k] <= 'F') ? hx[k] - 'A' + 'a' : hx[k]);
            }
        } else if (ok && which == 1) {
            if (!given[1]->text[0]) {
                ccgw_config_diag(doc, given[1], "http.tokens[%zu]: 'token' is empty", i);
                ok = false;
            } else {
                ccgw_auth_hash_token(given[1]->text, t.sha256);
            }
        } else if (ok && which == 2) {
            char *path = resolve_path(doc, given[2]->text);
            char *tok = path ? read_token_file(path) : NULL;
            if (!tok) {
                ccgw_config_diag(doc, given[2], "http.tokens[%zu]: cannot read token_file '%s': %s", i,
                                 path ? path : given[2]->text, strerror(errno));
                ok = false;
            } else if (!tok[0]) {
                ccgw_config_diag(doc, given[2], "http.tokens[%zu]: token_file '%s' is empty", i, path);
                ok = false;
            } else {
                ccgw_auth_hash_token(tok, t.sha256);
            }
            if (tok) {
                explicit_bzero(tok, strlen(tok));
                free(tok);
            }
            free(path);
        }
        for (size_t k = 0; ok && k < c->n_tokens; k++) {
            char w[300];
            const struct ccgw_config *prev = NULL;
            for (size_t m = 0; m < i && !prev; m++) {
                const struct ccgw_config *pn = good_scalar(list->items[m], "name");
                if (pn && !strcmp(pn->text, c->tokens[k].name))
                    prev = pn;
            }
            if (!strcmp(c->tokens[k].name, name->text)) {
                where(prev, w, sizeof w);
                ccgw_config_diag(doc, name, "http.tokens[%zu]: duplicate token name '%s' (first defined at %s)", i,
                                 name->text, w);
                ok = false;
            } else if (!strcmp(c->tokens[k].sha256, t.sha256)) {
                ccgw_config_diag(doc, item, "http.tokens[%zu]: '%s' has the same token as '%s'", i, name->text,
                                 c->tokens[k].name);
                ok = false;
            }
        }
        size_t before = doc->n_diags;
        t.filters = string_list(doc, ccgw_config_get(item, "filters"), &t.n_filters, i, "filters",
                                ccgw_topic_filter_valid,
                                "must be an MQTT topic filter ('+' and '#' only as whole levels, '#' last)");
        t.commands = string_list(doc, ccgw_config_get(item, "commands"), &t.n_commands, i, "commands",
                                 valid_command_pattern, "must be a command name, \"prefix.*\" or \"*\"");
        if (!ok || doc->n_diags != before) {
            for (size_t k = 0; k < t.n_filters; k++)
                free(t.filters[k]);
            free(t.filters);
            for (size_t k = 0; k < t.n_commands; k++)
                free(t.commands[k]);
            free(t.commands);
            continue;
        }
        t.name = strdup(name->text);
        c->tokens[c->n_tokens++] = t;
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
    ic->supervision = cfg->supervision;
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
    fill_supervision(doc, ccgw_config_get(item, "supervision"), &cfg->supervision, &ic->supervision);

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
    cfg->supervision = (ccgw_supervision_config_t){.restart_min_ms = 1000, .restart_max_ms = 60000,
                                                   .max_failures = 5, .failure_window_s = 300,
                                                   .hang_timeout_ms = 30000, .start_timeout_ms = 15000};
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
        null_to_empty(root, "http", CCGW_NODE_MAP);
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

    struct ccgw_config *hs = (struct ccgw_config *)ccgw_config_get(root, "http");
    if (hs && hs->kind == CCGW_NODE_MAP && !ccgw_config__reported(hs)) {
        null_to_empty(hs, "tokens", CCGW_NODE_LIST);
        ccgw_schema_validate(hs, ccgw_http_options, "http");
        fill_http(cfg, hs, true);
    } else {
        /* absent (or broken): disabled, every field at its default */
        struct ccgw_config *dflt = ccgw_config_node_new(doc, CCGW_NODE_MAP, NULL, 0, 0);
        if (dflt)
            ccgw_schema_validate(dflt, ccgw_http_options, "http");
        fill_http(cfg, dflt, false);
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
    ccgw_http_config_t *h = &cfg->http;
    free(h->address);
    free(h->cert_file);
    free(h->key_file);
    free(h->web_root);
    free(h->audit_log);
    for (size_t i = 0; i < h->n_tokens; i++) {
        ccgw_http_token_t *t = &h->tokens[i];
        free(t->name);
        explicit_bzero(t->sha256, sizeof t->sha256);
        for (size_t k = 0; k < t->n_filters; k++)
            free(t->filters[k]);
        free(t->filters);
        for (size_t k = 0; k < t->n_commands; k++)
            free(t->commands[k]);
        free(t->commands);
    }
    free(h->tokens);
    for (size_t i = 0; i < cfg->n_instances; i++) {
        free(cfg->instances[i].id);
        free(cfg->instances[i].plugin);
        free(cfg->instances[i].refused);
    }
    free(cfg->instances);
    ccgw_config_doc_free(cfg->doc);
    free(cfg);
}
