/*
 * config - the gateway's configuration file: sections gateway, mqtt, alarms,
 * instances.
 *
 * Loads the YAML, validates the core sections against their option tables
 * (core/config.c, the same machinery plugins use), resolves each instance's
 * plugin through a callback (the loader), validates the instance options
 * against the plugin's table and runs the plugin's check(). Every problem is
 * collected as FILE:LINE:COL: message; nothing is started here.
 */
#ifndef CCGW_CORE_CONFIG_H
#define CCGW_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "alarm_engine.h"
#include "ccgw/plugin.h"
#include "config_tree.h"

/* Plugin supervision (supervisor.c): gateway.supervision holds the
 * defaults, an instance's `supervision` mapping overrides them key by key. */
typedef struct ccgw_supervision_config {
    int restart_min_ms;           /* first restart delay (default 1000) */
    int restart_max_ms;           /* the delay doubles up to this (default 60000) */
    int max_failures;             /* quarantine after this many failures ... (default 5) */
    int failure_window_s;         /* ... within this window (default 300) */
    int hang_timeout_ms;          /* a loop that has not turned for this long is hung (default 30000) */
    int start_timeout_ms;         /* create+start longer than this is hung (default 15000) */
} ccgw_supervision_config_t;

typedef struct ccgw_instance_config {
    char *id;                     /* [a-z0-9_.-]+, unique */
    char *plugin;                 /* plugin name */
    bool enabled;
    int command_timeout_ms;       /* per-instance command reply timeout */
    const ccgw_plugin_t *desc;    /* resolved descriptor (owned by the loader) */
    char *refused;                /* why the plugin was refused (desc NULL), non-fatally */
    struct ccgw_config *options;  /* validated options mapping (owned by doc) */
    struct ccgw_config *node;     /* the instance's mapping, for messages */
    ccgw_supervision_config_t supervision; /* gateway defaults + the instance's overrides */
} ccgw_instance_config_t;

typedef struct ccgw_mqtt_config {
    bool enabled;                 /* false when the section is absent or enabled: false */
    char *host;
    int port;
    char *client_id;              /* default "ccgw-{site}-{gateway id}" */
    int keepalive_s;
    char *username;
    char *password;               /* secret */
    bool tls;                     /* true when any tls file is set or tls.enabled */
    char *ca_file, *cert_file, *key_file;
    bool tls_insecure;            /* skip host name check (test rigs only) */
    char *topic_prefix;           /* "ccgw/v1" */
    int qos_state, qos_telemetry, qos_event, qos_alarm, qos_reply;
    int reconnect_min_ms, reconnect_max_ms;
    int max_inflight;             /* our bound on unacknowledged publishes */
} ccgw_mqtt_config_t;

typedef struct ccgw_alarms_config {
    ccgw_alarm_rule_t *rules;     /* validated rules, in file order */
    size_t n_rules;
    int restore_grace_s;          /* restored alarms of devices not declared again are cleared after this */
    bool persist;                 /* keep active alarms in <data_dir>/alarms.json */
} ccgw_alarms_config_t;

typedef struct ccgw_http_token {
    char *name;                   /* [a-z0-9_.-]+, unique; shown in the audit log */
    int role;                     /* ccgw_role_t (auth.h) */
    char sha256[65];              /* lower-case hex hash of the token (from `sha256`, `token` or `token_file`) */
    char **filters;               /* topic filters it may see/command; none = all */
    size_t n_filters;
    char **commands;              /* command names it may send ("door.unlock", "hvac.*"); none = all */
    size_t n_commands;
} ccgw_http_token_t;

typedef struct ccgw_http_config {
    bool enabled;                 /* false when the section is absent or enabled: false */
    char *address;                /* listen address, default 127.0.0.1 */
    int port;                     /* 0 = ephemeral (the bound port is logged: "http listening on ADDR:PORT") */
    char *cert_file, *key_file;   /* TLS when both are set */
    char *web_root;               /* dashboard files; default the installed/built share/ccgw/web */
    bool dashboard;               /* serve the dashboard at / (default true) */
    int anonymous_role;           /* ccgw_role_t for requests without a token; 0 = refused (default) */
    int max_clients;              /* WebSocket clients (default 10000) */
    int client_queue;             /* per-client send queue, messages (default 4096) */
    int client_queue_bytes;       /* per-client send queue, bytes (default 4 MiB) */
    int queue_budget_bytes;       /* all client queues together: per-client share (default 256 MiB, 0 = none) */
    int max_request_bytes;        /* HTTP body / WS message limit (default 65536) */
    int batch_ms;                 /* coalesce wake-ups: max delay before a batch frame (default 5) */
    char *audit_log;              /* default <data_dir>/audit.jsonl; "" = no file */
    ccgw_http_token_t *tokens;
    size_t n_tokens;
} ccgw_http_config_t;

typedef struct ccgw_gateway_config {
    char *path;                   /* the file */
    char *site;                   /* [a-z0-9_.-]+ */
    char *gateway_id;             /* [a-z0-9_.-]+ */
    int log_level;                /* ccgw_log_level_t */
    char **plugin_dirs;           /* searched in order; then the built-in dirs */
    size_t n_plugin_dirs;
    char *data_dir;
    int queue_size;               /* north queue bound, messages */
    int backpressure_ms;          /* max time an event emit may block */
    ccgw_supervision_config_t supervision; /* gateway.supervision: defaults for every instance */
    struct {                      /* gateway.spool (spool.h) */
        bool enabled;             /* spool in <data_dir>/spool */
        int64_t max_bytes;
        int64_t max_age_s;        /* 0 = no age limit */
        bool telemetry;           /* spool telemetry too */
        int fsync_ms;
    } spool;
    ccgw_mqtt_config_t mqtt;
    ccgw_alarms_config_t alarms;
    ccgw_http_config_t http;
    ccgw_instance_config_t *instances;
    size_t n_instances;
    ccgw_config_doc_t *doc;       /* owns all nodes */
} ccgw_gateway_config_t;

/* Resolve a plugin by name (the loader). Return its descriptor, or NULL
 * with a one-line reason in why ("no modbus.so in build/lib/ccgw/plugins",
 * "plugin ABI 2.0, gateway ABI 1.0"). `cfg` has gateway.* filled in.
 * *fatal starts true; a resolver sets it false when the plugin exists but
 * was refused (wrong ABI...) and the gateway should run without it: the
 * instance then gets `refused` set instead of a configuration error. */
typedef const ccgw_plugin_t *(*ccgw_plugin_resolver_fn)(void *ctx, const ccgw_gateway_config_t *cfg,
                                                        const char *name, char *why, size_t whylen,
                                                        bool *fatal);

/* Load and validate. Returns the config (NULL only when out of memory);
 * when cfg->doc->n_diags > 0 it is invalid and must not be run.
 * `resolver` may be NULL (then instances' plugins are not checked). */
ccgw_gateway_config_t *ccgw_gateway_config_load(const char *path, ccgw_plugin_resolver_fn resolver,
                                                void *ctx);
/* Same, from memory (tests, fuzzer). */
ccgw_gateway_config_t *ccgw_gateway_config_load_buffer(const char *name, const char *buf, size_t len,
                                                       ccgw_plugin_resolver_fn resolver, void *ctx);
void ccgw_gateway_config_free(ccgw_gateway_config_t *cfg);

/* The core's own tables, for --describe-config and docs. */
extern const ccgw_option_t ccgw_gateway_options[];
extern const ccgw_option_t ccgw_mqtt_options[];
extern const ccgw_option_t ccgw_alarms_options[];
extern const ccgw_option_t ccgw_http_options[];
extern const ccgw_option_t ccgw_alarm_rule_options[];
extern const ccgw_option_t ccgw_instance_keys[];
extern const ccgw_option_t ccgw_supervision_options[];

/* [a-z0-9_.-]+, 1..64 chars */
bool ccgw_valid_id(const char *s);

#endif /* CCGW_CORE_CONFIG_H */
