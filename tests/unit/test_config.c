/*
 * test_config - the configuration module: YAML tree with positions, !env /
 * !file secrets, schema validation (unknown, duplicate, mistyped, out of
 * range, missing), defaults, the gateway file, plugin resolution and check(),
 * describe and table checks. Every diagnostic is asserted with its exact
 * FILE:LINE:COL.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ccgw/plugin.h"
#include "config.h"
#include "config_schema.h"
#include "config_tree.h"

/* ------------------------------------------------------------------ */
/* a test plugin with a nested option table                            */
/* ------------------------------------------------------------------ */

static const char *const dev_kinds[] = {"temp", "hum", "door", NULL};
static const char *const modes[] = {"fast", "slow", NULL};

static const ccgw_option_t dev_options[] = {
    {.key = "id", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED, .doc = "Device id."},
    {.key = "kind", .type = CCGW_OPT_ENUM, .def = "temp", .choices = dev_kinds, .doc = "What it measures."},
    {.key = "unit", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1", .min = 1, .max = 247,
     .doc = "Modbus unit id."},
    {.key = "scale", .type = CCGW_OPT_DOUBLE, .def = "1.5", .doc = "Multiplier."},
    {.key = "inverted", .type = CCGW_OPT_BOOL, .def = "false", .doc = "Invert the reading."},
    CCGW_OPTION_END,
};

static const ccgw_option_t link_options[] = {
    {.key = "host", .type = CCGW_OPT_STRING, .def = "localhost", .doc = "Link host."},
    {.key = "port", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "502", .min = 1, .max = 65535,
     .doc = "Link port."},
    CCGW_OPTION_END,
};

static const ccgw_option_t test_options[] = {
    {.key = "host", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED, .doc = "Where the system is."},
    {.key = "poll_interval_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1000", .min = 100,
     .max = 60000, .doc = "How often to poll."},
    {.key = "timeout_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "500", .min = 10, .max = 60000,
     .doc = "Reply timeout."},
    {.key = "ratio", .type = CCGW_OPT_DOUBLE, .def = "0.25", .doc = "A ratio."},
    {.key = "verbose", .type = CCGW_OPT_BOOL, .def = "false", .doc = "Chatty logs."},
    {.key = "mode", .type = CCGW_OPT_ENUM, .def = "fast", .choices = modes, .doc = "Polling mode."},
    {.key = "token", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_SECRET, .doc = "API token."},
    {.key = "extra", .type = CCGW_OPT_SCALAR, .doc = "Anything."},
    {.key = "link", .type = CCGW_OPT_OBJECT, .children = link_options, .doc = "The link."},
    {.key = "devices", .type = CCGW_OPT_LIST, .flags = CCGW_OPT_F_RANGE, .min = 0, .max = 4,
     .item_type = CCGW_OPT_OBJECT, .children = dev_options, .doc = "The devices."},
    {.key = "tags", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_STRING, .doc = "Free tags."},
    CCGW_OPTION_END,
};

static int check_calls;

static int test_check(const ccgw_config_t *options)
{
    check_calls++;
    int64_t poll = ccgw_config_int(options, "poll_interval_ms", 0);
    int64_t timeout = ccgw_config_int(options, "timeout_ms", 0);
    if (timeout >= poll)
        return -ccgw_config_error(ccgw_config_get(options, "timeout_ms"),
                                  "timeout_ms (%lld) must be below poll_interval_ms (%lld)", (long long)timeout,
                                  (long long)poll);
    return 0;
}

static int dummy_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    (void)inst;
    (void)options;
    *state = NULL;
    return 0;
}
static int dummy_start(void *state) { return state ? 0 : 0; }
static void dummy_stop(void *state) { (void)state; }

static const ccgw_plugin_t test_desc = {
    .abi_major = CCGW_ABI_MAJOR,
    .abi_minor = CCGW_ABI_MINOR,
    .size = sizeof(ccgw_plugin_t),
    .name = "testplug",
    .version = "1.0",
    .options = test_options,
    .check = test_check,
    .create = dummy_create,
    .start = dummy_start,
    .stop = dummy_stop,
    .destroy = dummy_stop,
};

static const ccgw_plugin_t noopt_desc = {
    .abi_major = CCGW_ABI_MAJOR,
    .abi_minor = CCGW_ABI_MINOR,
    .size = sizeof(ccgw_plugin_t),
    .name = "noopt",
    .create = dummy_create,
    .start = dummy_start,
    .stop = dummy_stop,
    .destroy = dummy_stop,
};

typedef struct rctx {
    int calls;
    char names[8][32];
    size_t n_dirs_seen;
    char site_seen[32];
} rctx_t;

static const ccgw_plugin_t *resolver(void *ctx, const ccgw_gateway_config_t *cfg, const char *name, char *why,
                                     size_t whylen, bool *fatal)
{
    rctx_t *r = ctx;
    if (r->calls < 8)
        snprintf(r->names[r->calls], sizeof r->names[0], "%s", name);
    r->calls++;
    r->n_dirs_seen = cfg->n_plugin_dirs;
    snprintf(r->site_seen, sizeof r->site_seen, "%s", cfg->site ? cfg->site : "");
    if (!strcmp(name, "testplug"))
        return &test_desc;
    if (!strcmp(name, "noopt"))
        return &noopt_desc;
    snprintf(why, whylen, "no %s.so in /nowhere", name);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

static rctx_t rc;

static ccgw_gateway_config_t *load(const char *yaml)
{
    memset(&rc, 0, sizeof rc);
    check_calls = 0;
    ccgw_gateway_config_t *cfg = ccgw_gateway_config_load_buffer("t.yaml", yaml, strlen(yaml), resolver, &rc);
    assert_non_null(cfg);
    assert_non_null(cfg->doc);
    return cfg;
}

static void dump(const ccgw_gateway_config_t *cfg)
{
    fprintf(stderr, "--- %zu diagnostics:\n", cfg->doc->n_diags);
    ccgw_config_print_diags(cfg->doc, stderr);
}

static const char *find_diag(const ccgw_config_doc_t *doc, const char *prefix)
{
    for (size_t i = 0; i < doc->n_diags; i++)
        if (!strncmp(doc->diags[i], prefix, strlen(prefix)))
            return doc->diags[i];
    return NULL;
}

/* A diagnostic that starts with `prefix` exists. */
#define assert_diag(cfg, prefix)                                                                            \
    do {                                                                                                    \
        if (!find_diag((cfg)->doc, (prefix))) {                                                            \
            dump(cfg);                                                                                      \
            fail_msg("no diagnostic starting with: %s", (prefix));                                          \
        }                                                                                                   \
    } while (0)

#define assert_ndiags(cfg, n)                                                                               \
    do {                                                                                                    \
        if ((cfg)->doc->n_diags != (size_t)(n)) {                                                          \
            dump(cfg);                                                                                      \
            fail_msg("expected %zu diagnostics, got %zu", (size_t)(n), (cfg)->doc->n_diags);                 \
        }                                                                                                   \
    } while (0)

static bool any_diag_contains(const ccgw_config_doc_t *doc, const char *needle)
{
    for (size_t i = 0; i < doc->n_diags; i++)
        if (strstr(doc->diags[i], needle))
            return true;
    return false;
}

#define GW_HEAD "gateway:\n  site: hq\n  id: gw1\n" /* lines 1-3 */

/* ------------------------------------------------------------------ */
/* tests                                                               */
/* ------------------------------------------------------------------ */

static void test_supervision(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load("gateway:\n  site: hq\n  id: gw1\n"
                                      "  supervision: {restart_min_ms: 50, max_failures: 2, hang_timeout_ms: 900}\n"
                                      "instances:\n"
                                      "  - id: a\n    plugin: testplug\n    options: {host: h}\n"
                                      "    supervision: {max_failures: 7, restart_max_ms: 500}\n"
                                      "  - id: b\n    plugin: testplug\n    options: {host: h}\n");
    assert_ndiags(cfg, 0);
    assert_int_equal(cfg->supervision.restart_min_ms, 50);
    assert_int_equal(cfg->supervision.restart_max_ms, 60000); /* default */
    assert_int_equal(cfg->supervision.failure_window_s, 300);
    assert_int_equal(cfg->supervision.start_timeout_ms, 15000);
    const ccgw_supervision_config_t *a = &cfg->instances[0].supervision, *b = &cfg->instances[1].supervision;
    assert_int_equal(a->max_failures, 7);         /* its own */
    assert_int_equal(a->restart_max_ms, 500);
    assert_int_equal(a->restart_min_ms, 50);      /* the gateway's */
    assert_int_equal(a->hang_timeout_ms, 900);
    assert_int_equal(b->max_failures, 2);         /* all the gateway's */
    assert_int_equal(b->restart_max_ms, 60000);
    ccgw_gateway_config_free(cfg);

    cfg = load("gateway:\n  site: hq\n  id: gw1\n"
               "instances:\n"
               "  - id: a\n    plugin: testplug\n    options: {host: h}\n"
               "    supervision: {restart_min_ms: 5000, restart_max_ms: 1000, bogus: 1}\n");
    assert_ndiags(cfg, 2);
    ccgw_gateway_config_free(cfg);
}

static void test_minimal_valid_and_defaults(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "instances:\n"            /* 4 */
                                      "  - id: room1\n"         /* 5 */
                                      "    plugin: testplug\n"  /* 6 */
                                      "    options:\n"          /* 7 */
                                      "      host: 10.0.0.5\n"  /* 8 */
                                      "      devices:\n"        /* 9 */
                                      "        - id: d1\n"      /* 10 */
                                      "        - id: d2\n"      /* 11 */
                                      "          unit: 7\n");   /* 12 */
    assert_ndiags(cfg, 0);
    assert_string_equal(cfg->site, "hq");
    assert_string_equal(cfg->gateway_id, "gw1");
    assert_int_equal(cfg->log_level, CCGW_LOG_INFO);
    assert_int_equal(cfg->queue_size, 65536);
    assert_int_equal(cfg->backpressure_ms, 5000);
    assert_string_equal(cfg->data_dir, "/var/lib/ccgw");
    assert_int_equal(cfg->n_plugin_dirs, 0);
    /* no mqtt section: disabled, but the fields hold their defaults */
    assert_false(cfg->mqtt.enabled);
    assert_string_equal(cfg->mqtt.host, "127.0.0.1");
    assert_int_equal(cfg->mqtt.port, 1883);
    assert_string_equal(cfg->mqtt.client_id, "ccgw-hq-gw1");
    assert_string_equal(cfg->mqtt.topic_prefix, "ccgw/v1");
    assert_int_equal(cfg->mqtt.qos_telemetry, 0);
    assert_int_equal(cfg->mqtt.qos_state, 1);

    assert_int_equal(cfg->n_instances, 1);
    ccgw_instance_config_t *ic = &cfg->instances[0];
    assert_string_equal(ic->id, "room1");
    assert_string_equal(ic->plugin, "testplug");
    assert_true(ic->enabled);
    assert_int_equal(ic->command_timeout_ms, 10000);
    assert_ptr_equal(ic->desc, &test_desc);
    assert_int_equal(rc.calls, 1);
    assert_string_equal(rc.names[0], "testplug");
    assert_string_equal(rc.site_seen, "hq"); /* gateway.* filled in before resolving */
    assert_int_equal(check_calls, 1);

    const ccgw_config_t *o = ic->options;
    assert_int_equal(ccgw_config_kind(o), CCGW_NODE_MAP);
    assert_string_equal(ccgw_config_string(o, "host", NULL), "10.0.0.5");
    assert_int_equal(ccgw_config_int(o, "poll_interval_ms", -1), 1000);
    assert_int_equal(ccgw_config_int(o, "timeout_ms", -1), 500);
    assert_true(ccgw_config_double(o, "ratio", -1) == 0.25);
    assert_false(ccgw_config_bool(o, "verbose", true));
    assert_string_equal(ccgw_config_string(o, "mode", NULL), "fast");
    assert_true(ccgw_config_get(o, "poll_interval_ms")->is_default);
    assert_false(ccgw_config_get(o, "host")->is_default);
    assert_null(ccgw_config_get(o, "token")); /* no default */
    assert_null(ccgw_config_get(o, "tags"));
    /* nested object absent: an empty map with its defaults */
    const ccgw_config_t *link = ccgw_config_get(o, "link");
    assert_int_equal(ccgw_config_kind(link), CCGW_NODE_MAP);
    assert_true(link->is_default);
    assert_string_equal(ccgw_config_string(link, "host", NULL), "localhost");
    assert_int_equal(ccgw_config_int(link, "port", 0), 502);
    /* list items get their defaults */
    const ccgw_config_t *devs = ccgw_config_get(o, "devices");
    assert_int_equal(ccgw_config_kind(devs), CCGW_NODE_LIST);
    assert_int_equal(ccgw_config_count(devs), 2);
    const ccgw_config_t *d0 = ccgw_config_at(devs, 0), *d1 = ccgw_config_at(devs, 1);
    assert_string_equal(ccgw_config_string(d0, "kind", NULL), "temp");
    assert_int_equal(ccgw_config_int(d0, "unit", 0), 1);
    assert_int_equal(ccgw_config_int(d1, "unit", 0), 7);
    assert_true(ccgw_config_double(d1, "scale", 0) == 1.5);
    assert_false(ccgw_config_bool(d1, "inverted", true));
    /* defaults sit at the parent's position */
    assert_int_equal(ccgw_config_get(d1, "kind")->line, 11);
    assert_int_equal(ccgw_config_get(d1, "kind")->col, 11);
    char w[64];
    assert_string_equal(ccgw_config_where(ccgw_config_get(o, "host"), w, sizeof w), "t.yaml:8:13");
    /* key_at in insertion order, defaults appended */
    assert_string_equal(ccgw_config_key_at(o, 0), "host");
    assert_string_equal(ccgw_config_key_at(o, 1), "devices");
    assert_null(ccgw_config_key_at(o, 100));
    ccgw_gateway_config_free(cfg);
}

static void test_unknown_key_top_level(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "web:\n"            /* 4 */
                                      "  listen: 8080\n");/* 5 */
    assert_ndiags(cfg, 1);
    assert_diag(cfg, "t.yaml:4:1: unknown key 'web' in the top level (known: gateway, mqtt, alarms, http, instances)");
    ccgw_gateway_config_free(cfg);
}

static void test_unknown_key_gateway(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD "  sites: x\n"); /* 4 */
    assert_ndiags(cfg, 1);
    assert_diag(cfg, "t.yaml:4:3: unknown key 'sites' in gateway (known: site, id, log_level, plugin_dirs, "
                     "data_dir, queue_size, backpressure_ms, supervision, spool); did you mean 'site'?");
    ccgw_gateway_config_free(cfg);
}

static void test_unknown_key_nested_plugin_options(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "instances:\n"              /* 4 */
                                      "  - id: room1\n"           /* 5 */
                                      "    plugin: testplug\n"    /* 6 */
                                      "    colour: blue\n"        /* 7 */
                                      "    options:\n"            /* 8 */
                                      "      host: h\n"           /* 9 */
                                      "      pollinterval: 5\n"   /* 10 */
                                      "      link: {hots: x}\n"   /* 11 */
                                      "      devices:\n"          /* 12 */
                                      "        - id: d1\n"        /* 13 */
                                      "          colour: red\n"); /* 14 */
    assert_ndiags(cfg, 4);
    assert_diag(cfg, "t.yaml:7:5: unknown key 'colour' in instance 'room1' (known: id, plugin, enabled, "
                     "command_timeout_ms, supervision, options)");
    assert_diag(cfg, "t.yaml:10:7: unknown key 'pollinterval' in instance 'room1' options (known: host, "
                     "poll_interval_ms, timeout_ms, ratio, verbose, mode, token, extra, link, devices, tags)");
    assert_diag(cfg, "t.yaml:11:14: unknown key 'hots' in instance 'room1' options.link (known: host, port)");
    assert_diag(cfg, "t.yaml:14:11: unknown key 'colour' in instance 'room1' options.devices[0] (known: id, "
                     "kind, unit, scale, inverted)");
    assert_int_equal(check_calls, 0); /* check() only sees valid options */
    ccgw_gateway_config_free(cfg);
}

static void test_wrong_types(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "mqtt:\n"                   /* 4 */
                                      "  port: abc\n"             /* 5 */
                                      "  host: [a, b]\n"          /* 6 */
                                      "  tls: yes\n"              /* 7 */
                                      "  keepalive_s: \"30\"\n"   /* 8 */
                                      "  enabled: \"true\"\n"     /* 9 */
                                      "  username: 123\n"         /* 10: a plain number is fine as text */
                                      "instances:\n"              /* 11 */
                                      "  - id: room1\n"           /* 12 */
                                      "    plugin: testplug\n"    /* 13 */
                                      "    options:\n"            /* 14 */
                                      "      host:\n"             /* 15 */
                                      "        nested: map\n"     /* 16 */
                                      "      ratio: nan\n"        /* 17 */
                                      "      verbose: maybe\n"    /* 18 */
                                      "      devices: {id: x}\n"  /* 19 */
                                      "      tags: [a, [b]]\n"    /* 20 */
                                      "      extra: 0x1F\n");     /* 21 */
    assert_diag(cfg, "t.yaml:5:9: 'port' must be an int in 1..65535, got 'abc'");
    assert_diag(cfg, "t.yaml:6:9: 'host' must be a string, got a list");
    assert_diag(cfg, "t.yaml:7:8: 'tls' must be a mapping, got 'yes'");
    assert_diag(cfg, "t.yaml:8:16: 'keepalive_s' must be an int in 5..3600, got quoted '30'");
    assert_diag(cfg, "t.yaml:9:12: 'enabled' must be a bool (true or false), got quoted 'true'");
    assert_diag(cfg, "t.yaml:16:9: 'host' must be a string, got a mapping");
    assert_diag(cfg, "t.yaml:17:14: 'ratio' must be a number, got 'nan'");
    assert_diag(cfg, "t.yaml:18:16: 'verbose' must be a bool (true or false), got 'maybe'");
    assert_diag(cfg, "t.yaml:19:16: 'devices' must be a list, got a mapping");
    assert_diag(cfg, "t.yaml:20:17: 'tags[1]' must be a string, got a list");
    assert_ndiags(cfg, 10);
    assert_string_equal(cfg->mqtt.username, "123");
    ccgw_gateway_config_free(cfg);
}

static void test_out_of_range_and_hex(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "  queue_size: 8\n"              /* 4 */
                                      "mqtt:\n"                        /* 5 */
                                      "  port: 70000\n"                /* 6 */
                                      "  max_inflight: 0x10\n"         /* 7 */
                                      "  qos: {state: 3, event: 2}\n"  /* 8 */
                                      "  keepalive_s: 99999999999999999999\n" /* 9 */
                                      "instances:\n"                   /* 10 */
                                      "  - id: room1\n"                /* 11 */
                                      "    plugin: testplug\n"         /* 12 */
                                      "    command_timeout_ms: 5\n"    /* 13 */
                                      "    options:\n"                 /* 14 */
                                      "      host: h\n"                /* 15 */
                                      "      devices: [{id: a}, {id: b}, {id: c}, {id: d}, {id: e}]\n" /* 16 */
                                      "      poll_interval_ms: 60001\n"); /* 17 */
    assert_diag(cfg, "t.yaml:4:15: 'queue_size' must be an int in 16..10000000, got '8'");
    assert_diag(cfg, "t.yaml:6:9: 'port' must be an int in 1..65535, got '70000'");
    assert_diag(cfg, "t.yaml:8:16: 'state' must be an int in 0..2, got '3'");
    assert_diag(cfg, "t.yaml:9:16: 'keepalive_s' must be an int in 5..3600, got '99999999999999999999'");
    assert_diag(cfg, "t.yaml:13:25: 'command_timeout_ms' must be an int in 100..600000, got '5'");
    assert_diag(cfg, "t.yaml:16:16: 'devices' must have 0..4 items, got 5");
    assert_diag(cfg, "t.yaml:17:25: 'poll_interval_ms' must be an int in 100..60000, got '60001'");
    assert_ndiags(cfg, 7);
    assert_int_equal(cfg->mqtt.max_inflight, 16); /* 0x10 */
    assert_int_equal(cfg->mqtt.qos_event, 2);
    ccgw_gateway_config_free(cfg);
}

static void test_bad_enum(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "  log_level: verbose\n"    /* 4 */
                                      "instances:\n"              /* 5 */
                                      "  - id: room1\n"           /* 6 */
                                      "    plugin: testplug\n"    /* 7 */
                                      "    options:\n"            /* 8 */
                                      "      host: h\n"           /* 9 */
                                      "      mode: Fast\n"        /* 10 */
                                      "      devices:\n"          /* 11 */
                                      "        - {id: a, kind: fridge}\n"); /* 12 */
    assert_ndiags(cfg, 3);
    assert_diag(cfg, "t.yaml:4:14: 'log_level' must be one of error|warn|info|debug, got 'verbose'");
    assert_diag(cfg, "t.yaml:10:13: 'mode' must be one of fast|slow, got 'Fast'");
    assert_diag(cfg, "t.yaml:12:25: 'kind' must be one of temp|hum|door, got 'fridge'");
    ccgw_gateway_config_free(cfg);
}

static void test_missing_required(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load("gateway:\n"              /* 1 */
                                      "  id: gw1\n"             /* 2 */
                                      "instances:\n"            /* 3 */
                                      "  - id: room1\n"         /* 4 */
                                      "    plugin: testplug\n"  /* 5 */
                                      "    options:\n"          /* 6 */
                                      "      ratio: 2\n"        /* 7 */
                                      "      devices:\n"        /* 8 */
                                      "        - unit: 3\n"     /* 9 */
                                      "  - plugin: testplug\n"  /* 10 */
                                      "  - id: room3\n");       /* 11 */
    assert_diag(cfg, "t.yaml:2:3: missing required option 'site' in gateway");
    assert_diag(cfg, "t.yaml:7:7: missing required option 'host' in instance 'room1' options");
    assert_diag(cfg, "t.yaml:9:11: missing required option 'id' in instance 'room1' options.devices[0]");
    assert_diag(cfg, "t.yaml:10:5: missing required option 'id' in instances[1]");
    /* instances[1] still resolves its plugin; its options lack host (at the instance's position) */
    assert_diag(cfg, "t.yaml:10:5: missing required option 'host' in instances[1] options");
    assert_diag(cfg, "t.yaml:11:5: missing required option 'plugin' in instance 'room3'");
    assert_ndiags(cfg, 6);
    assert_int_equal(rc.calls, 2);
    assert_int_equal(cfg->n_instances, 3);
    assert_null(cfg->instances[1].id);
    assert_null(cfg->instances[2].plugin);
    ccgw_gateway_config_free(cfg);

    cfg = load("mqtt: {}\n");
    assert_diag(cfg, "t.yaml:1:1: missing required section 'gateway'");
    assert_ndiags(cfg, 1);
    assert_true(cfg->mqtt.enabled); /* present and empty: enabled with defaults */
    ccgw_gateway_config_free(cfg);
}

static void test_null_values(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "mqtt:\n"                   /* 4 */
                                      "  host:\n"                 /* 5 */
                                      "  port: ~\n"               /* 6 */
                                      "instances:\n"              /* 7 */
                                      "  - id: room1\n"           /* 8 */
                                      "    plugin: testplug\n"    /* 9 */
                                      "    options:\n");          /* 10: null options = empty mapping */
    assert_diag(cfg, "t.yaml:5:8: no value for 'host' (expected a string)");
    assert_diag(cfg, "t.yaml:6:9: no value for 'port' (expected an int in 1..65535)");
    assert_diag(cfg, "t.yaml:10:13: missing required option 'host' in instance 'room1' options");
    assert_ndiags(cfg, 3);
    ccgw_gateway_config_free(cfg);

    cfg = load(GW_HEAD "instances:\n" "mqtt:\n");
    assert_ndiags(cfg, 0);
    assert_int_equal(cfg->n_instances, 0);
    assert_true(cfg->mqtt.enabled);
    ccgw_gateway_config_free(cfg);
}

static void test_duplicate_key(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "mqtt:\n"             /* 4 */
                                      "  port: 1883\n"      /* 5 */
                                      "  host: a\n"         /* 6 */
                                      "  port: 1884\n"      /* 7 */
                                      "gateway:\n"          /* 8 */
                                      "  site: x\n");       /* 9 */
    assert_diag(cfg, "t.yaml:7:3: duplicate key 'port' in mqtt (first defined at t.yaml:5:3)");
    assert_diag(cfg, "t.yaml:8:1: duplicate key 'gateway' in the top level (first defined at t.yaml:1:1)");
    assert_ndiags(cfg, 2);
    assert_int_equal(cfg->mqtt.port, 1883); /* the first one counts */
    ccgw_gateway_config_free(cfg);
}

static void test_duplicate_instance_id_and_bad_ids(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load("gateway:\n"                     /* 1 */
                                      "  site: HQ\n"                   /* 2 */
                                      "  id: gw1\n"                    /* 3 */
                                      "instances:\n"                   /* 4 */
                                      "  - id: room1\n"                /* 5 */
                                      "    plugin: noopt\n"            /* 6 */
                                      "  - id: room1\n"                /* 7 */
                                      "    plugin: noopt\n"            /* 8 */
                                      "  - id: Room/2\n"               /* 9 */
                                      "    plugin: no.pe\n"            /* 10 */
                                      "  - {id: room4, plugin: noopt, options: {x: 1}}\n"); /* 11 */
    assert_diag(cfg, "t.yaml:2:9: 'site' must match [a-z0-9_.-]+ (1..64 characters), got 'HQ'");
    assert_diag(cfg, "t.yaml:7:9: duplicate instance id 'room1' (first defined at t.yaml:5:9)");
    assert_diag(cfg, "t.yaml:9:9: instance id must match [a-z0-9_.-]+ (1..64 characters), got 'Room/2'");
    assert_diag(cfg, "t.yaml:10:13: 'plugin' must be a plugin name, [a-z0-9_-]+ (1..64 characters), got 'no.pe'");
    assert_diag(cfg, "t.yaml:11:42: unknown key 'x' in instance 'room4' options (known: none)");
    assert_ndiags(cfg, 5);
    assert_int_equal(rc.calls, 3); /* not for the invalid plugin name */
    ccgw_gateway_config_free(cfg);
}

static void test_unknown_plugin(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "instances:\n"              /* 4 */
                                      "  - id: room1\n"           /* 5 */
                                      "    plugin: nosuch\n"      /* 6 */
                                      "    enabled: false\n"      /* 7 */
                                      "    options: {whatever: 1}\n"); /* 8 */
    assert_ndiags(cfg, 1);
    assert_diag(cfg, "t.yaml:6:13: plugin 'nosuch': no nosuch.so in /nowhere");
    assert_int_equal(rc.calls, 1); /* disabled instances are resolved too */
    assert_false(cfg->instances[0].enabled);
    assert_null(cfg->instances[0].desc);
    ccgw_gateway_config_free(cfg);
}

static void test_yaml_syntax_errors(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load("gateway:\n  site: hq\n    id: gw1\n");
    assert_ndiags(cfg, 1);
    assert_diag(cfg, "t.yaml:3:7: YAML syntax error: mapping values are not allowed in this context");
    assert_null(cfg->doc->root);
    ccgw_gateway_config_free(cfg);

    cfg = load(GW_HEAD "  plugin_dirs: [a, b\n");
    assert_ndiags(cfg, 1);
    assert_diag(cfg, "t.yaml:5:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow "
                     "sequence started at t.yaml:4:16)");
    ccgw_gateway_config_free(cfg);

    cfg = load(GW_HEAD "  data_dir: \"/x\xff\"\n");
    assert_ndiags(cfg, 1);
    assert_diag(cfg, "t.yaml:4:16: YAML error: invalid leading UTF-8 octet (byte 0xff)");
    ccgw_gateway_config_free(cfg);

    cfg = load("");
    assert_ndiags(cfg, 1);
    assert_diag(cfg, "t.yaml: the configuration is empty");
    ccgw_gateway_config_free(cfg);

    cfg = load("- a\n- b\n");
    assert_ndiags(cfg, 1);
    assert_diag(cfg, "t.yaml:1:1: the top level must be a mapping, got a list");
    ccgw_gateway_config_free(cfg);

    cfg = load(GW_HEAD "---\ngateway: {}\n");
    assert_diag(cfg, "t.yaml:4:1: only one YAML document is allowed");
    ccgw_gateway_config_free(cfg);
}

static void test_anchors_tags_depth(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "  data_dir: &d /x\n"     /* 4 */
                                      "mqtt:\n"                 /* 5 */
                                      "  host: *d\n"            /* 6 */
                                      "  username: !secret u\n" /* 7 */
                                      "  client_id: !!str 42\n" /* 8 */
                                      "  password: !env {a: 1}\n"); /* 9 */
    assert_diag(cfg, "t.yaml:4:13: YAML anchors (&d) are not supported");
    assert_diag(cfg, "t.yaml:6:9: YAML aliases (*d) are not supported");
    assert_diag(cfg, "t.yaml:7:13: unknown tag '!secret' (use !env NAME or !file PATH)");
    assert_diag(cfg, "t.yaml:9:13: !env needs a scalar, not a mapping");
    assert_ndiags(cfg, 4); /* no follow-up "no value" errors */
    assert_string_equal(cfg->mqtt.client_id, "42");
    ccgw_gateway_config_free(cfg);

    char deep[400];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "gateway: ");
    for (int i = 0; i < 70; i++)
        deep[n++] = '[';
    for (int i = 0; i < 70; i++)
        deep[n++] = ']';
    deep[n++] = '\n';
    deep[n] = '\0';
    cfg = load(deep);
    assert_ndiags(cfg, 1);
    assert_diag(cfg, "t.yaml:1:73: nesting deeper than 64 levels");
    assert_null(cfg->doc->root);
    ccgw_gateway_config_free(cfg);

    cfg = load("? [a]\n: 1\n" GW_HEAD);
    assert_diag(cfg, "t.yaml:1:3: mapping keys must be plain text, not a list");
    assert_ndiags(cfg, 1);
    ccgw_gateway_config_free(cfg);
}

static void test_env_secrets(void **state)
{
    (void)state;
    setenv("CCGW_TEST_PW", "hunter2", 1);
    setenv("CCGW_TEST_PORT", "1884", 1);
    setenv("CCGW_TEST_BAD", "notanumber", 1);
    unsetenv("CCGW_TEST_UNSET");
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "mqtt:\n"                            /* 4 */
                                      "  password: !env CCGW_TEST_PW\n"    /* 5 */
                                      "  port: !env CCGW_TEST_PORT\n"      /* 6 */
                                      "  username: u\n");                  /* 7 */
    assert_ndiags(cfg, 0);
    assert_string_equal(cfg->mqtt.password, "hunter2");
    assert_int_equal(cfg->mqtt.port, 1884); /* !env counts as plain */
    const ccgw_config_t *m = ccgw_config_get(cfg->doc->root, "mqtt");
    assert_true(ccgw_config_get(m, "password")->secret);
    ccgw_gateway_config_free(cfg);

    cfg = load(GW_HEAD
               "mqtt:\n"                              /* 4 */
               "  password: !env CCGW_TEST_UNSET\n"   /* 5 */
               "  keepalive_s: !env CCGW_TEST_BAD\n"  /* 6 */
               "  username: !env\n");                 /* 7 */
    assert_diag(cfg, "t.yaml:5:13: environment variable 'CCGW_TEST_UNSET' (from !env) is not set");
    assert_diag(cfg, "t.yaml:6:16: 'keepalive_s' must be an int in 5..3600, got a secret value");
    assert_diag(cfg, "t.yaml:7:13: !env needs a variable name");
    assert_ndiags(cfg, 3);
    assert_false(any_diag_contains(cfg->doc, "notanumber")); /* never print a secret */
    ccgw_gateway_config_free(cfg);
    unsetenv("CCGW_TEST_PW");
    unsetenv("CCGW_TEST_PORT");
    unsetenv("CCGW_TEST_BAD");
}

static char tmpdir[PATH_MAX];

static void write_file(const char *rel, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_file_secrets_and_relative_paths(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/ccgw-test-config-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char *real = realpath(tmpl, NULL);
    assert_non_null(real);
    snprintf(tmpdir, sizeof tmpdir, "%s", real);
    char sub[PATH_MAX + 16];
    snprintf(sub, sizeof sub, "%s/secrets", tmpdir);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file("secrets/pw.txt", "s3cr3t\n");
    write_file("token.txt", "tok\r\n");
    snprintf(sub, sizeof sub, "%s/certs", tmpdir);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file("certs/ca.pem", "-----BEGIN CERTIFICATE-----\n"); /* only readability is checked */
    write_file("gw.yaml", GW_HEAD
                          "  plugin_dirs: [plugins, ./more, /abs/dir]\n" /* 4 */
                          "  data_dir: data\n"                           /* 5 */
                          "mqtt:\n"                                      /* 6 */
                          "  password: !file secrets/pw.txt\n"           /* 7 */
                          "  tls: {ca_file: certs/ca.pem}\n"             /* 8 */
                          "  username: u\n"                              /* 9 */
                          "instances:\n"                                 /* 10 */
                          "  - id: a\n"                                  /* 11 */
                          "    plugin: testplug\n"                       /* 12 */
                          "    options: {host: h, token: !file token.txt}\n"); /* 13 */
    char path[PATH_MAX + 64], want[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/gw.yaml", tmpdir);
    memset(&rc, 0, sizeof rc);
    ccgw_gateway_config_t *cfg = ccgw_gateway_config_load(path, resolver, &rc);
    assert_non_null(cfg);
    assert_ndiags(cfg, 0);
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->mqtt.password, "s3cr3t"); /* trailing newline removed */
    assert_string_equal(ccgw_config_string(cfg->instances[0].options, "token", NULL), "tok");
    assert_int_equal(cfg->n_plugin_dirs, 3);
    snprintf(want, sizeof want, "%s/plugins", tmpdir);
    assert_string_equal(cfg->plugin_dirs[0], want);
    snprintf(want, sizeof want, "%s/more", tmpdir);
    assert_string_equal(cfg->plugin_dirs[1], want);
    assert_string_equal(cfg->plugin_dirs[2], "/abs/dir");
    assert_int_equal(rc.n_dirs_seen, 3); /* the resolver sees the plugin dirs */
    snprintf(want, sizeof want, "%s/data", tmpdir);
    assert_string_equal(cfg->data_dir, want);
    snprintf(want, sizeof want, "%s/certs/ca.pem", tmpdir);
    assert_string_equal(cfg->mqtt.ca_file, want);
    assert_true(cfg->mqtt.tls); /* a file implies TLS */
    ccgw_gateway_config_free(cfg);

    /* missing file, a directory, and positions in the file's own name */
    write_file("bad.yaml", GW_HEAD
                           "mqtt:\n"                            /* 4 */
                           "  password: !file nothere.txt\n"    /* 5 */
                           "  username: !file secrets\n"        /* 6 */
                           "  tls: {cert_file: c.pem}\n");      /* 7 */
    snprintf(path, sizeof path, "%s/bad.yaml", tmpdir);
    cfg = ccgw_gateway_config_load(path, resolver, &rc);
    char prefix[PATH_MAX * 2 + 200];
    snprintf(prefix, sizeof prefix, "%s:5:13: cannot read '%s/nothere.txt' (from !file): No such file or directory",
             path, tmpdir);
    assert_diag(cfg, prefix);
    snprintf(prefix, sizeof prefix, "%s:6:13: cannot read '%s/secrets' (from !file): not a regular file", path,
             tmpdir);
    assert_diag(cfg, prefix);
    snprintf(prefix, sizeof prefix, "%s:7:20: mqtt.tls: 'cert_file' needs 'key_file' too", path);
    assert_diag(cfg, prefix);
    snprintf(prefix, sizeof prefix, "%s:7:20: mqtt.tls: cannot read '%s/c.pem': No such file or directory", path,
             tmpdir);
    assert_diag(cfg, prefix);
    assert_ndiags(cfg, 4);
    ccgw_gateway_config_free(cfg);

    snprintf(path, sizeof path, "%s/absent.yaml", tmpdir);
    cfg = ccgw_gateway_config_load(path, resolver, &rc);
    snprintf(prefix, sizeof prefix, "%s: cannot read: No such file or directory", path);
    assert_diag(cfg, prefix);
    ccgw_gateway_config_free(cfg);

    /* clean up */
    const char *files[] = {"secrets/pw.txt", "token.txt", "gw.yaml", "bad.yaml"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(sub);
    rmdir(tmpdir);
    free(real);
}

static void test_password_needs_username(void **state)
{
    (void)state;
    setenv("CCGW_TEST_PW2", "x", 1);
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "mqtt:\n"                         /* 4 */
                                      "  password: !env CCGW_TEST_PW2\n"); /* 5 */
    assert_diag(cfg, "t.yaml:5:13: mqtt: 'password' needs 'username'");
    assert_ndiags(cfg, 1);
    ccgw_gateway_config_free(cfg);
    unsetenv("CCGW_TEST_PW2");
}

static void test_full_config_fills_every_field(void **state)
{
    (void)state;
    setenv("CCGW_TEST_MQTT_PW", "pw!", 1);
    ccgw_gateway_config_t *cfg = load("gateway:\n"
                                      "  site: hq-1\n"
                                      "  id: gw.2\n"
                                      "  log_level: debug\n"
                                      "  plugin_dirs: [/opt/p1, /opt/p2]\n"
                                      "  data_dir: /srv/ccgw\n"
                                      "  queue_size: 1024\n"
                                      "  backpressure_ms: 0\n"
                                      "mqtt:\n"
                                      "  enabled: yes\n"
                                      "  host: broker.local\n"
                                      "  port: 8883\n"
                                      "  client_id: my-client\n"
                                      "  keepalive_s: 60\n"
                                      "  username: gw\n"
                                      "  password: !env CCGW_TEST_MQTT_PW\n"
                                      "  tls:\n"
                                      "    enabled: true\n"
                                      "    ca_file: /dev/null\n" /* must be readable: --check-config checks */
                                      "    cert_file: /dev/zero\n"
                                      "    key_file: /dev/full\n"
                                      "    insecure: on\n"
                                      "  topic_prefix: acme/v2\n"
                                      "  qos: {state: 2, telemetry: 1, event: 0, alarm: 2, reply: 0}\n"
                                      "  reconnect: {min_ms: 250, max_ms: 60000}\n"
                                      "  max_inflight: 50\n"
                                      "instances:\n"
                                      "  - id: a.1\n"
                                      "    plugin: testplug\n"
                                      "    enabled: off\n"
                                      "    command_timeout_ms: 2500\n"
                                      "    options:\n"
                                      "      host: h\n"
                                      "      poll_interval_ms: 0x400\n"
                                      "      ratio: -1.5e2\n"
                                      "      verbose: true\n"
                                      "      mode: slow\n"
                                      "      extra: \"quoted\"\n"
                                      "      link: {port: 1502}\n"
                                      "      tags: [x, \"y\", 3]\n"
                                      "  - id: b\n"
                                      "    plugin: noopt\n");
    assert_ndiags(cfg, 0);
    assert_string_equal(cfg->site, "hq-1");
    assert_string_equal(cfg->gateway_id, "gw.2");
    assert_int_equal(cfg->log_level, CCGW_LOG_DEBUG);
    assert_int_equal(cfg->n_plugin_dirs, 2);
    assert_string_equal(cfg->plugin_dirs[0], "/opt/p1");
    assert_string_equal(cfg->plugin_dirs[1], "/opt/p2");
    assert_string_equal(cfg->data_dir, "/srv/ccgw");
    assert_int_equal(cfg->queue_size, 1024);
    assert_int_equal(cfg->backpressure_ms, 0);
    const ccgw_mqtt_config_t *q = &cfg->mqtt;
    assert_true(q->enabled);
    assert_string_equal(q->host, "broker.local");
    assert_int_equal(q->port, 8883);
    assert_string_equal(q->client_id, "my-client");
    assert_int_equal(q->keepalive_s, 60);
    assert_string_equal(q->username, "gw");
    assert_string_equal(q->password, "pw!");
    assert_true(q->tls);
    assert_string_equal(q->ca_file, "/dev/null");
    assert_string_equal(q->cert_file, "/dev/zero");
    assert_string_equal(q->key_file, "/dev/full");
    assert_true(q->tls_insecure);
    assert_string_equal(q->topic_prefix, "acme/v2");
    assert_int_equal(q->qos_state, 2);
    assert_int_equal(q->qos_telemetry, 1);
    assert_int_equal(q->qos_event, 0);
    assert_int_equal(q->qos_alarm, 2);
    assert_int_equal(q->qos_reply, 0);
    assert_int_equal(q->reconnect_min_ms, 250);
    assert_int_equal(q->reconnect_max_ms, 60000);
    assert_int_equal(q->max_inflight, 50);
    assert_int_equal(cfg->n_instances, 2);
    const ccgw_instance_config_t *a = &cfg->instances[0], *b = &cfg->instances[1];
    assert_string_equal(a->id, "a.1");
    assert_string_equal(a->plugin, "testplug");
    assert_false(a->enabled);
    assert_int_equal(a->command_timeout_ms, 2500);
    assert_ptr_equal(a->desc, &test_desc);
    assert_non_null(a->node);
    assert_int_equal(a->node->line, 28);
    assert_int_equal(ccgw_config_int(a->options, "poll_interval_ms", 0), 1024);
    assert_true(ccgw_config_double(a->options, "ratio", 0) == -150.0);
    assert_true(ccgw_config_bool(a->options, "verbose", false));
    assert_string_equal(ccgw_config_string(a->options, "mode", NULL), "slow");
    assert_string_equal(ccgw_config_string(a->options, "extra", NULL), "quoted");
    const ccgw_config_t *link = ccgw_config_get(a->options, "link");
    assert_int_equal(ccgw_config_int(link, "port", 0), 1502);
    assert_string_equal(ccgw_config_string(link, "host", NULL), "localhost"); /* default beside a given key */
    const ccgw_config_t *tags = ccgw_config_get(a->options, "tags");
    assert_int_equal(ccgw_config_count(tags), 3);
    assert_string_equal(ccgw_config_text(ccgw_config_at(tags, 2)), "3");
    assert_string_equal(b->id, "b");
    assert_ptr_equal(b->desc, &noopt_desc);
    assert_int_equal(ccgw_config_kind(b->options), CCGW_NODE_MAP);
    assert_int_equal(ccgw_config_count(b->options), 0);
    assert_int_equal(check_calls, 1); /* noopt has no check() */
    ccgw_gateway_config_free(cfg);
    unsetenv("CCGW_TEST_MQTT_PW");
}

static void test_mqtt_cross_checks(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "mqtt:\n"                                   /* 4 */
                                      "  topic_prefix: ccgw/+/x\n"                /* 5 */
                                      "  reconnect: {min_ms: 5000, max_ms: 1000}\n" /* 6 */
                                      "  enabled: false\n");                       /* 7 */
    assert_diag(cfg, "t.yaml:5:17: 'topic_prefix' must be topic levels without wildcards");
    assert_diag(cfg, "t.yaml:6:37: 'max_ms' (1000) must be at least 'min_ms' (5000)");
    assert_ndiags(cfg, 2);
    assert_false(cfg->mqtt.enabled);
    ccgw_gateway_config_free(cfg);
}

static void test_plugin_check_called_with_position(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "instances:\n"                  /* 4 */
                                      "  - id: room1\n"               /* 5 */
                                      "    plugin: testplug\n"        /* 6 */
                                      "    options:\n"                /* 7 */
                                      "      host: h\n"               /* 8 */
                                      "      timeout_ms: 2000\n"      /* 9 */
                                      "  - id: room2\n"               /* 10 */
                                      "    plugin: testplug\n"        /* 11 */
                                      "    options:\n"                /* 12 */
                                      "      host: h\n"               /* 13 */
                                      "      poll_interval_ms: 200\n");/* 14: default timeout 500 >= 200 */
    assert_int_equal(check_calls, 2);
    assert_diag(cfg, "t.yaml:9:19: timeout_ms (2000) must be below poll_interval_ms (1000)");
    /* the default node sits at the options mapping's position */
    assert_diag(cfg, "t.yaml:13:7: timeout_ms (500) must be below poll_interval_ms (200)");
    assert_ndiags(cfg, 2);
    ccgw_gateway_config_free(cfg);
}

static void test_describe(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    ccgw_schema_describe(f, test_options, 2);
    fclose(f);
    assert_non_null(strstr(text, "  host              string  required\n      Where the system is.\n"));
    assert_non_null(strstr(text, "  poll_interval_ms  int 100..60000  default 1000\n      How often to poll.\n"));
    assert_non_null(strstr(text, "  ratio             double  default 0.25\n"));
    assert_non_null(strstr(text, "  mode              enum fast|slow  default fast\n"));
    assert_non_null(strstr(text, "  token             string  secret"));
    assert_non_null(strstr(text, "  devices           list of object (0..4 items)\n      The devices.\n"));
    /* nested children: 2 more columns */
    assert_non_null(strstr(text, "\n    id        string  required\n        Device id.\n"));
    assert_non_null(strstr(text, "\n    kind      enum temp|hum|door  default temp\n"));
    assert_non_null(strstr(text, "\n    port  int 1..65535  default 502\n"));
    free(text);

    text = NULL;
    f = open_memstream(&text, &len);
    ccgw_schema_describe(f, ccgw_gateway_options, 0);
    fclose(f);
    assert_non_null(strstr(text, "queue_size       int 16..10000000  default 65536\n"));
    free(text);
}

static void test_check_table(void **state)
{
    (void)state;
    char why[256];
    assert_int_equal(ccgw_schema_check_table(test_options, why, sizeof why), 0);
    assert_int_equal(ccgw_schema_check_table(ccgw_gateway_options, why, sizeof why), 0);
    assert_int_equal(ccgw_schema_check_table(ccgw_mqtt_options, why, sizeof why), 0);

    static const ccgw_option_t dup[] = {{.key = "a", .type = CCGW_OPT_INT}, {.key = "a", .type = CCGW_OPT_INT}, {0}};
    assert_int_equal(ccgw_schema_check_table(dup, why, sizeof why), CCGW_EINVAL);
    assert_string_equal(why, "option 'a' is declared twice");

    static const ccgw_option_t nochoices[] = {{.key = "e", .type = CCGW_OPT_ENUM}, {0}};
    assert_int_equal(ccgw_schema_check_table(nochoices, why, sizeof why), CCGW_EINVAL);
    assert_string_equal(why, "enum option 'e' has no choices");

    static const ccgw_option_t baddef[] = {{.key = "n", .type = CCGW_OPT_INT, .def = "1e3"}, {0}};
    assert_int_equal(ccgw_schema_check_table(baddef, why, sizeof why), CCGW_EINVAL);
    assert_string_equal(why, "option 'n': default '1e3' is not a valid int");

    static const ccgw_option_t outdef[] = {
        {.key = "n", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 5, .def = "9"}, {0}};
    assert_int_equal(ccgw_schema_check_table(outdef, why, sizeof why), CCGW_EINVAL);
    assert_string_equal(why, "option 'n': default '9' is not a valid int in its range");

    static const ccgw_option_t noitem[] = {{.key = "l", .type = CCGW_OPT_LIST}, {0}};
    assert_int_equal(ccgw_schema_check_table(noitem, why, sizeof why), CCGW_EINVAL);
    assert_string_equal(why, "list option 'l' needs an item_type (a scalar type or OBJECT)");

    static const ccgw_option_t nochildren[] = {
        {.key = "l", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT}, {0}};
    assert_int_equal(ccgw_schema_check_table(nochildren, why, sizeof why), CCGW_EINVAL);
    assert_string_equal(why, "option 'l' is an object without children");

    static const ccgw_option_t reqdef[] = {
        {.key = "r", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED, .def = "x"}, {0}};
    assert_int_equal(ccgw_schema_check_table(reqdef, why, sizeof why), CCGW_EINVAL);
    assert_string_equal(why, "option 'r' is required and has a default");

    static const ccgw_option_t badenumdef[] = {
        {.key = "e", .type = CCGW_OPT_ENUM, .choices = modes, .def = "medium"}, {0}};
    assert_int_equal(ccgw_schema_check_table(badenumdef, why, sizeof why), CCGW_EINVAL);

    static const ccgw_option_t inner_dup[] = {{.key = "x", .type = CCGW_OPT_BOOL}, {.key = "x", .type = CCGW_OPT_BOOL}, {0}};
    static const ccgw_option_t nested_bad[] = {{.key = "o", .type = CCGW_OPT_OBJECT, .children = inner_dup}, {0}};
    assert_int_equal(ccgw_schema_check_table(nested_bad, why, sizeof why), CCGW_EINVAL);
    assert_string_equal(why, "option 'o.x' is declared twice");
}

static void test_valid_id(void **state)
{
    (void)state;
    assert_true(ccgw_valid_id("room1-modbus"));
    assert_true(ccgw_valid_id("a.b_c-9"));
    assert_false(ccgw_valid_id(""));
    assert_false(ccgw_valid_id(NULL));
    assert_false(ccgw_valid_id("Room"));
    assert_false(ccgw_valid_id("a/b"));
    assert_false(ccgw_valid_id("a b"));
    char s[70];
    memset(s, 'a', 64);
    s[64] = '\0';
    assert_true(ccgw_valid_id(s));
    s[64] = 'a';
    s[65] = '\0';
    assert_false(ccgw_valid_id(s));
}

/* Documents without positions (command arguments built from JSON). */
static void test_builders_and_positionless_docs(void **state)
{
    (void)state;
    ccgw_config_doc_t *doc = ccgw_config_doc_new("arguments", false);
    assert_non_null(doc);
    struct ccgw_config *root = ccgw_config_node_new(doc, CCGW_NODE_MAP, NULL, 0, 0);
    struct ccgw_config *v = ccgw_config_node_new(doc, CCGW_NODE_SCALAR, "70000", 0, 0);
    v->plain = true;
    struct ccgw_config *s = ccgw_config_node_new(doc, CCGW_NODE_SCALAR, "12", 0, 0); /* a JSON string */
    assert_int_equal(ccgw_config_map_add(root, "port", v), 0);
    assert_int_equal(ccgw_config_map_add(root, "unit", s), 0);
    assert_int_equal(ccgw_config_map_add(root, "bogus", ccgw_config_node_new(doc, CCGW_NODE_LIST, NULL, 0, 0)), 0);
    assert_int_equal(ccgw_config_list_add(root, v), CCGW_EINVAL); /* not a list */
    doc->root = root;
    static const ccgw_option_t args[] = {
        {.key = "port", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 65535},
        {.key = "unit", .type = CCGW_OPT_INT},
        {.key = "duration_s", .type = CCGW_OPT_INT, .def = "5"},
        {0}};
    assert_int_equal(ccgw_schema_validate(root, args, "arguments"), 3);
    assert_string_equal(doc->diags[0], "arguments: 'port' must be an int in 1..65535, got '70000'");
    assert_string_equal(doc->diags[1], "arguments: 'unit' must be an int, got quoted '12'");
    assert_string_equal(doc->diags[2], "arguments: unknown key 'bogus' in arguments (known: port, unit, duration_s)");
    assert_int_equal(ccgw_config_int(root, "duration_s", 0), 5);
    char w[32];
    assert_string_equal(ccgw_config_where(v, w, sizeof w), "arguments");
    assert_int_equal(ccgw_config_error(v, "custom %d", 7), CCGW_EINVAL);
    assert_string_equal(doc->diags[3], "arguments: custom 7");
    ccgw_config_doc_free(doc);
}

static void test_getters_edge_cases(void **state)
{
    (void)state;
    assert_int_equal(ccgw_config_kind(NULL), CCGW_NODE_NONE);
    assert_null(ccgw_config_get(NULL, "x"));
    assert_string_equal(ccgw_config_string(NULL, "x", "fb"), "fb");
    assert_int_equal(ccgw_config_int(NULL, "x", 42), 42);
    assert_true(ccgw_config_double(NULL, "x", 1.5) == 1.5);
    assert_true(ccgw_config_bool(NULL, "x", true));
    assert_int_equal(ccgw_config_count(NULL), 0);
    assert_null(ccgw_config_at(NULL, 0));
    assert_null(ccgw_config_text(NULL));
    assert_int_equal(ccgw_config_error(NULL, "x"), CCGW_EINVAL);
    char w[32];
    assert_string_equal(ccgw_config_where(NULL, w, sizeof w), "(unknown)");

    ccgw_config_doc_t *doc = ccgw_config_load_yaml_buffer("g.yaml",
                                                          "a: 0x7fffffffffffffff\n"
                                                          "b: -9223372036854775808\n"
                                                          "c: 9223372036854775808\n"
                                                          "d: ' 5'\n"
                                                          "e: 010\n"
                                                          "f: 1e400\n"
                                                          "g: yes\n"
                                                          "h: [1, 2]\n"
                                                          "i: ~\n",
                                                          strlen("a: 0x7fffffffffffffff\nb: -9223372036854775808\n"
                                                                 "c: 9223372036854775808\nd: ' 5'\ne: 010\n"
                                                                 "f: 1e400\ng: yes\nh: [1, 2]\ni: ~\n"));
    assert_int_equal(doc->n_diags, 0);
    const ccgw_config_t *r = doc->root;
    int64_t v;
    assert_int_equal(ccgw_config_as_int(ccgw_config_get(r, "a"), &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(ccgw_config_as_int(ccgw_config_get(r, "b"), &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(ccgw_config_as_int(ccgw_config_get(r, "c"), &v), CCGW_EINVAL);
    assert_int_equal(ccgw_config_as_int(ccgw_config_get(r, "d"), &v), CCGW_EINVAL);
    assert_int_equal(ccgw_config_int(r, "e", 0), 10); /* decimal, not octal */
    double d;
    assert_int_equal(ccgw_config_as_double(ccgw_config_get(r, "f"), &d), CCGW_EINVAL);
    assert_true(ccgw_config_bool(r, "g", false));
    assert_int_equal(ccgw_config_as_int(ccgw_config_get(r, "h"), &v), CCGW_EINVAL);
    assert_null(ccgw_config_text(ccgw_config_get(r, "h")));
    assert_string_equal(ccgw_config_key_at(r, 7), "h");
    assert_true(ccgw_config_get(r, "i")->is_null);
    assert_string_equal(ccgw_config_string(r, "i", "fb"), "fb");
    assert_int_equal(ccgw_config_get(r, "h")->line, 8);
    assert_int_equal(ccgw_config_get(r, "h")->col, 4);
    ccgw_config_doc_free(doc);
}

static void test_collects_all_errors(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load("gateway:\n"
                                      "  site: a\n"
                                      "  id: b\n"
                                      "  queue_size: x\n"
                                      "  backpressure_ms: -1\n"
                                      "  foo: 1\n"
                                      "mqtt:\n"
                                      "  port: 0\n"
                                      "  bar: 2\n"
                                      "instances: {}\n");
    assert_ndiags(cfg, 6);
    assert_diag(cfg, "t.yaml:10:12: 'instances' must be a list, got a mapping");
    ccgw_gateway_config_free(cfg);
}

/* ---- the http section ---- */

#define SHA_TEST "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" /* sha256("test") */

static void test_http_defaults(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD "  data_dir: /srv/d\n");
    assert_ndiags(cfg, 0);
    const ccgw_http_config_t *h = &cfg->http;
    assert_false(h->enabled);
    assert_string_equal(h->address, "127.0.0.1");
    assert_int_equal(h->port, 8080);
    assert_null(h->cert_file);
    assert_null(h->key_file);
    assert_non_null(h->web_root);
    assert_non_null(strstr(h->web_root, "/share/ccgw/web"));
    assert_true(h->dashboard);
    assert_int_equal(h->anonymous_role, 0);
    assert_int_equal(h->max_clients, 10000);
    assert_int_equal(h->client_queue, 4096);
    assert_int_equal(h->client_queue_bytes, 4194304);
    assert_int_equal(h->max_request_bytes, 65536);
    assert_int_equal(h->batch_ms, 5);
    assert_string_equal(h->audit_log, "/srv/d/audit.jsonl");
    assert_int_equal(h->n_tokens, 0);
    ccgw_gateway_config_free(cfg);

    cfg = load(GW_HEAD "http:\n");
    assert_ndiags(cfg, 0);
    assert_true(cfg->http.enabled); /* present, even empty: on */
    assert_string_equal(cfg->http.audit_log, "/var/lib/ccgw/audit.jsonl");
    ccgw_gateway_config_free(cfg);
}

static void test_http_full(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/ccgw-test-http-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char tok[PATH_MAX + 32], yaml[8192];
    snprintf(tok, sizeof tok, "%s/wall.token", tmpl);
    FILE *f = fopen(tok, "w");
    assert_non_null(f);
    fputs("test\n", f);
    fclose(f);
    setenv("CCGW_TEST_OP_TOKEN", "operator-secret", 1);
    snprintf(yaml, sizeof yaml,
             GW_HEAD
             "http:\n"
             "  address: 0.0.0.0\n"
             "  port: 0\n"
             "  web_root: /srv/web\n"
             "  dashboard: false\n"
             "  anonymous_role: viewer\n"
             "  max_clients: 5\n"
             "  client_queue: 16\n"
             "  client_queue_bytes: 65536\n"
             "  max_request_bytes: 1024\n"
             "  batch_ms: 0\n"
             "  audit_log: \"\"\n"
             "  tokens:\n"
             "    - name: wall\n"
             "      role: viewer\n"
             "      token_file: %s\n"
             "      filters: [\"ccgw/v1/+/ups/#\", \"ccgw/v1/+/env/#\"]\n"
             "    - name: duty\n"
             "      role: operator\n"
             "      token: !env CCGW_TEST_OP_TOKEN\n"
             "      commands: [\"door.*\", ups.test_battery]\n"
             "    - name: boss\n"
             "      role: admin\n"
             "      sha256: 2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824\n",
             tok);
    ccgw_gateway_config_t *cfg = load(yaml);
    assert_ndiags(cfg, 0);
    const ccgw_http_config_t *h = &cfg->http;
    assert_true(h->enabled);
    assert_string_equal(h->address, "0.0.0.0");
    assert_int_equal(h->port, 0);
    assert_string_equal(h->web_root, "/srv/web");
    assert_false(h->dashboard);
    assert_int_equal(h->anonymous_role, 1);
    assert_int_equal(h->max_clients, 5);
    assert_int_equal(h->client_queue, 16);
    assert_int_equal(h->client_queue_bytes, 65536);
    assert_int_equal(h->max_request_bytes, 1024);
    assert_int_equal(h->batch_ms, 0);
    assert_null(h->audit_log); /* "" = no file */
    assert_int_equal(h->n_tokens, 3);
    assert_string_equal(h->tokens[0].name, "wall");
    assert_int_equal(h->tokens[0].role, 1);
    assert_string_equal(h->tokens[0].sha256, SHA_TEST); /* file content, newline removed */
    assert_int_equal(h->tokens[0].n_filters, 2);
    assert_string_equal(h->tokens[0].filters[1], "ccgw/v1/+/env/#");
    assert_int_equal(h->tokens[0].n_commands, 0);
    assert_string_equal(h->tokens[1].name, "duty");
    assert_int_equal(h->tokens[1].role, 2);
    /* sha256("operator-secret") */
    assert_string_equal(h->tokens[1].sha256, "ec585b7be286a5088d8687af4ce027f389cd098e2bb0dee876d5521fa4468f59");
    assert_int_equal(h->tokens[1].n_commands, 2);
    assert_string_equal(h->tokens[1].commands[0], "door.*");
    assert_int_equal(h->tokens[2].role, 3);
    assert_string_equal(h->tokens[2].sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    ccgw_gateway_config_free(cfg);
    unlink(tok);
    rmdir(tmpl);
    unsetenv("CCGW_TEST_OP_TOKEN");
}

static void test_http_errors(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(GW_HEAD
                                      "http:\n"                                          /* 4 */
                                      "  colour: red\n"                                  /* 5 */
                                      "  port: 70000\n"                                  /* 6 */
                                      "  anonymous_role: root\n"                         /* 7 */
                                      "  cert_file: /dev/null\n"                         /* 8 */
                                      "  tokens:\n"                                      /* 9 */
                                      "    - name: a\n"                                  /* 10 */
                                      "      role: viewer\n"                             /* 11 */
                                      "    - name: b\n"                                  /* 12 */
                                      "      role: viewer\n"                             /* 13 */
                                      "      token: x\n"                                 /* 14 */
                                      "      sha256: " SHA_TEST "\n"                     /* 15 */
                                      "    - name: c\n"                                  /* 16 */
                                      "      role: god\n"                                /* 17 */
                                      "      token: y\n"                                 /* 18 */
                                      "    - name: d\n"                                  /* 19 */
                                      "      role: viewer\n"                             /* 20 */
                                      "      sha256: abc\n"                              /* 21 */
                                      "    - name: e\n"                                  /* 22 */
                                      "      role: viewer\n"                             /* 23 */
                                      "      token_file: /nonexistent/e.token\n"         /* 24 */
                                      "    - name: f\n"                                  /* 25 */
                                      "      role: operator\n"                           /* 26 */
                                      "      token: f-secret\n"                          /* 27 */
                                      "      filters: [\"a/#/b\", \"ok/+\", \"x+\"]\n"  /* 28 */
                                      "      commands: [\"Door.open\", \"*\", \"door.*\", \".*\"]\n" /* 29 */
                                      "    - name: g\n"                                  /* 30 */
                                      "      role: operator\n"                           /* 31 */
                                      "      token: g-secret\n"                          /* 32 */
                                      "    - name: g\n"                                  /* 33 */
                                      "      role: admin\n"                              /* 34 */
                                      "      token: other\n"                             /* 35 */
                                      "    - name: h\n"                                  /* 36 */
                                      "      role: admin\n"                              /* 37 */
                                      "      token: g-secret\n"                          /* 38 */
                                      "    - name: Bad Name\n"                           /* 39 */
                                      "      role: admin\n"                              /* 40 */
                                      "      token: z\n"                                 /* 41 */
                                      "      extra: 1\n");                               /* 42 */
    assert_diag(cfg, "t.yaml:5:3: unknown key 'colour' in http");
    assert_diag(cfg, "t.yaml:6:9: 'port' must be an int in 0..65535, got '70000'");
    assert_diag(cfg, "t.yaml:7:19: 'anonymous_role' must be one of");
    assert_diag(cfg, "t.yaml:8:14: http: 'cert_file' needs 'key_file' too");
    assert_diag(cfg, "t.yaml:10:7: http.tokens[0]: needs one of 'sha256', 'token' or 'token_file'");
    assert_diag(cfg, "t.yaml:12:7: http.tokens[1]: give only one of 'sha256', 'token' and 'token_file'");
    assert_diag(cfg, "t.yaml:17:13: 'role' must be one of");
    assert_diag(cfg, "t.yaml:21:15: http.tokens[3]: 'sha256' must be 64 hexadecimal digits");
    assert_diag(cfg, "t.yaml:24:19: http.tokens[4]: cannot read token_file '/nonexistent/e.token': No such file");
    assert_diag(cfg, "t.yaml:28:17: http.tokens[5].filters[0]: must be an MQTT topic filter");
    assert_diag(cfg, "t.yaml:28:34: http.tokens[5].filters[2]: must be an MQTT topic filter");
    assert_diag(cfg, "t.yaml:29:18: http.tokens[5].commands[0]: must be a command name");
    assert_diag(cfg, "t.yaml:29:46: http.tokens[5].commands[3]: must be a command name");
    assert_diag(cfg, "t.yaml:33:13: http.tokens[7]: duplicate token name 'g' (first defined at t.yaml:30:13)");
    assert_diag(cfg, "t.yaml:36:7: http.tokens[8]: 'h' has the same token as 'g'");
    assert_diag(cfg, "t.yaml:39:13: http.tokens[9]: 'name' must match [a-z0-9_.-]+");
    assert_diag(cfg, "t.yaml:42:7: unknown key 'extra' in http.tokens[9]");
    assert_ndiags(cfg, 17);
    assert_false(any_diag_contains(cfg->doc, "g-secret"));
    assert_int_equal(cfg->http.n_tokens, 1); /* only g */
    ccgw_gateway_config_free(cfg);

    /* a secret sha256 that is not hex does not echo the advice text; an empty token is refused */
    setenv("CCGW_TEST_EMPTY", "", 1);
    cfg = load(GW_HEAD
               "http:\n"                                 /* 4 */
               "  tokens:\n"                             /* 5 */
               "    - {name: a, role: admin, token: !env CCGW_TEST_EMPTY}\n" /* 6 */
               "    - {name: b, role: viewer, token_file: /tmp}\n" /* 7 */
               "  key_file: /nonexistent/k.pem\n");      /* 8 */
    assert_diag(cfg, "t.yaml:6:37: http.tokens[0]: 'token' is empty");
    assert_diag(cfg, "t.yaml:7:43: http.tokens[1]: cannot read token_file '/tmp': Is a directory");
    assert_diag(cfg, "t.yaml:8:13: http: 'key_file' needs 'cert_file' too");
    assert_diag(cfg, "t.yaml:8:13: http: cannot read '/nonexistent/k.pem'");
    assert_ndiags(cfg, 4);
    ccgw_gateway_config_free(cfg);
    unsetenv("CCGW_TEST_EMPTY");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_valid_and_defaults),
        cmocka_unit_test(test_unknown_key_top_level),
        cmocka_unit_test(test_unknown_key_gateway),
        cmocka_unit_test(test_unknown_key_nested_plugin_options),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_out_of_range_and_hex),
        cmocka_unit_test(test_bad_enum),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_null_values),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_duplicate_instance_id_and_bad_ids),
        cmocka_unit_test(test_unknown_plugin),
        cmocka_unit_test(test_yaml_syntax_errors),
        cmocka_unit_test(test_anchors_tags_depth),
        cmocka_unit_test(test_env_secrets),
        cmocka_unit_test(test_file_secrets_and_relative_paths),
        cmocka_unit_test(test_password_needs_username),
        cmocka_unit_test(test_full_config_fills_every_field),
        cmocka_unit_test(test_mqtt_cross_checks),
        cmocka_unit_test(test_plugin_check_called_with_position),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_check_table),
        cmocka_unit_test(test_valid_id),
        cmocka_unit_test(test_builders_and_positionless_docs),
        cmocka_unit_test(test_getters_edge_cases),
        cmocka_unit_test(test_collects_all_errors),
        cmocka_unit_test(test_http_defaults),
        cmocka_unit_test(test_http_full),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_supervision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
