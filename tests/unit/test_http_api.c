/*
 * test_http_api - the HTTP routes (core/http_api.c) against a real gateway
 * built from YAML: the `good` and `knob` test plugins as instances (MQTT
 * disabled), an alarm rule that raises `leak` on knob1, tokens of every role.
 * Every route is driven through ccgw_http_api_handle(): answers, status
 * codes, role and filter refusals, malformed and oversized bodies, pending
 * replies completed through done(), alarm acknowledgement (200, then 409),
 * Prometheus metrics, and the audit trail file those actions leave.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "auth.h"
#include "config.h"
#include "gateway.h"
#include "http_api.h"
#include "loader.h"
#include "log.h"

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must be defined"
#endif

static ccgw_loader_t *L;
static ccgw_gateway_config_t *CFG;
static ccgw_gateway_t *GW;
static ccgw_auth_t *AUTH;
static char DIR_[PATH_MAX];
static char AUDIT[PATH_MAX + 32];
static ccgw_principal_t *VIEWER, *UPS_VIEWER, *OPERATOR, *DOOR_OP, *ADMIN;

static const ccgw_plugin_t *resolve(void *ctx, const ccgw_gateway_config_t *cfg, const char *name, char *why,
                                    size_t whylen, bool *fatal)
{
    (void)ctx;
    (void)cfg;
    (void)fatal;
    return ccgw_loader_get(L, name, why, whylen, NULL);
}

/* ---- requests ---- */

typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    int status;
    char *body;
} waiter_t;

static waiter_t WAIT = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL};

static void on_done(void *ctx, int status, const char *ct, char *body, size_t len)
{
    (void)len;
    waiter_t *w = ctx;
    assert_string_equal(ct, "application/json");
    pthread_mutex_lock(&w->lock);
    w->calls++;
    w->status = status;
    free(w->body);
    w->body = body;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

typedef struct answer {
    int status;
    char *body;
    const char *ct;
    json_t *json;
} answer_t;

static void answer_free(answer_t *a)
{
    free(a->body);
    json_decref(a->json);
    memset(a, 0, sizeof *a);
}

/* One request; a pending answer is awaited (up to 5 s). */
static answer_t req(const char *method, const char *path, const char *query, const char *body,
                    const ccgw_principal_t *who)
{
    ccgw_http_req_t rq = {.method = method, .path = path, .query = query, .body = body,
                          .body_len = body ? strlen(body) : 0, .who = who, .remote = "127.0.0.1:5555"};
    ccgw_http_resp_t resp;
    pthread_mutex_lock(&WAIT.lock);
    int calls0 = WAIT.calls;
    pthread_mutex_unlock(&WAIT.lock);
    ccgw_http_api_handle(GW, &rq, &resp, on_done, &WAIT);
    answer_t a = {0};
    if (resp.pending) {
        assert_null(resp.body);
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 5;
        pthread_mutex_lock(&WAIT.lock);
        while (WAIT.calls == calls0)
            if (pthread_cond_timedwait(&WAIT.cond, &WAIT.lock, &dl) != 0)
                break;
        assert_int_equal(WAIT.calls, calls0 + 1);
        a.status = WAIT.status;
        a.body = WAIT.body;
        WAIT.body = NULL;
        a.ct = "application/json";
        pthread_mutex_unlock(&WAIT.lock);
    } else {
        a.status = resp.status;
        a.body = resp.body;
        a.ct = resp.content_type;
        resp.body = NULL;
    }
    assert_non_null(a.body);
    if (a.ct && !strcmp(a.ct, "application/json")) {
        json_error_t err;
        a.json = json_loads(a.body, 0, &err);
        if (!a.json)
            fail_msg("%s %s: body is not JSON: %s", method, path, a.body);
    }
    return a;
}

static const char *err_code(const answer_t *a)
{
    return json_string_value(json_object_get(json_object_get(a->json, "error"), "code"));
}

#define EXPECT_STATUS(a, st)                                                                                \
    do {                                                                                                    \
        if ((a).status != (st))                                                                             \
            fail_msg("expected %d, got %d: %s", (st), (a).status, (a).body);                                \
    } while (0)

#define EXPECT_ERROR(a, st, code)                                                                           \
    do {                                                                                                    \
        EXPECT_STATUS(a, st);                                                                               \
        if (!err_code(&(a)) || strcmp(err_code(&(a)), (code)) != 0)                                         \
            fail_msg("expected error code %s: %s", (code), (a).body);                                       \
    } while (0)

/* ---- setup ---- */

static bool wait_for(const char *path, const char *needle, int ms)
{
    for (int t = 0; t < ms; t += 20) {
        answer_t a = req("GET", path, NULL, NULL, ADMIN);
        bool found = a.status == 200 && strstr(a.body, needle);
        answer_free(&a);
        if (found)
            return true;
        usleep(20000);
    }
    return false;
}

static ccgw_principal_t *login(const char *token)
{
    char why[64];
    ccgw_principal_t *p = ccgw_auth_check(AUTH, token, why, sizeof why);
    if (!p)
        fail_msg("token %s: %s", token, why);
    return p;
}

static int setup(void **state)
{
    (void)state;
    ccgw_log_set_level(CCGW_LOG_WARN);
    char tmpl[] = "/tmp/ccgw-test-http-api-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    snprintf(DIR_, sizeof DIR_, "%s", tmpl);
    snprintf(AUDIT, sizeof AUDIT, "%s/audit.jsonl", DIR_);
    L = ccgw_loader_new();
    ccgw_loader_add_dir(L, TEST_PLUGIN_DIR);
    char yaml[16384];
    snprintf(yaml, sizeof yaml,
             "gateway: {site: hq, id: gw1, data_dir: %s}\n"
             "alarms:\n"
             "  persist: false\n"
             "  rules:\n"
             "    - {code: leak, class: env, device: knob1, value: leak, type: on, severity: critical}\n"
             "http:\n"
             "  port: 0\n"
             "  max_request_bytes: 1024\n"
             "  audit_log: %s\n"
             "  tokens:\n"
             "    - {name: wall, role: viewer, token: viewer-token}\n"
             "    - {name: ups-wall, role: viewer, token: ups-token, filters: [\"ccgw/v1/+/ups/#\"]}\n"
             "    - {name: duty, role: operator, token: operator-token}\n"
             "    - {name: doors, role: operator, token: door-token, commands: [\"door.*\"]}\n"
             "    - {name: root, role: admin, token: admin-token}\n"
             "instances:\n"
             "  - {id: g, plugin: good, command_timeout_ms: 300, options: {interval_ms: 50}}\n"
             "  - {id: k, plugin: knob, options: {interval_ms: 50, leak: true}}\n",
             DIR_, AUDIT);
    CFG = ccgw_gateway_config_load_buffer("t.yaml", yaml, strlen(yaml), resolve, NULL);
    if (!CFG || CFG->doc->n_diags) {
        if (CFG)
            ccgw_config_print_diags(CFG->doc, stderr);
        return -1;
    }
    GW = ccgw_gateway_new(CFG, L);
    if (!GW || ccgw_gateway_start(GW) != 0)
        return -1;
    AUTH = ccgw_auth_new(&CFG->http);
    VIEWER = login("viewer-token");
    UPS_VIEWER = login("ups-token");
    OPERATOR = login("operator-token");
    DOOR_OP = login("door-token");
    ADMIN = login("admin-token");
    if (!wait_for("/api/v1/devices", "good1", 5000) || !wait_for("/api/v1/devices", "knob1", 5000) ||
        !wait_for("/api/v1/alarms", "/alarm/leak", 5000)) {
        fprintf(stderr, "devices or the leak alarm did not appear\n");
        return -1;
    }
    /* test_metrics and test_instances count telemetry: wait for the first
     * one (the good plugin emits every 50 ms, later on a loaded machine) */
    for (int t = 0; t < 10000; t += 20) {
        answer_t a = req("GET", "/api/v1/instances", NULL, NULL, ADMIN);
        json_t *g = a.status == 200 ? json_array_get(json_object_get(a.json, "instances"), 0) : NULL;
        json_int_t n = json_integer_value(json_object_get(json_object_get(g, "emitted"), "telemetry"));
        answer_free(&a);
        if (n > 0)
            return 0;
        usleep(20000);
    }
    fprintf(stderr, "no telemetry from instance g within 10 s\n");
    return -1;
}

static int teardown(void **state)
{
    (void)state;
    if (GW) {
        ccgw_gateway_stop(GW);
        ccgw_gateway_free(GW);
    }
    ccgw_gateway_config_free(CFG);
    ccgw_loader_free(L);
    ccgw_auth_free(AUTH);
    ccgw_principal_free(VIEWER);
    ccgw_principal_free(UPS_VIEWER);
    ccgw_principal_free(OPERATOR);
    ccgw_principal_free(DOOR_OP);
    ccgw_principal_free(ADMIN);
    free(WAIT.body);
    unlink(AUDIT);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/alarms.json", DIR_);
    unlink(path);
    rmdir(DIR_);
    return 0;
}

/* ---- tests ---- */

static void test_owns(void **state)
{
    (void)state;
    assert_true(ccgw_http_api_owns("/healthz"));
    assert_true(ccgw_http_api_owns("/metrics"));
    assert_true(ccgw_http_api_owns("/api/v1/devices"));
    assert_true(ccgw_http_api_owns("/api/whatever"));
    assert_false(ccgw_http_api_owns("/"));
    assert_false(ccgw_http_api_owns("/index.html"));
    assert_false(ccgw_http_api_owns("/ws"));
    assert_false(ccgw_http_api_owns("/apix"));
    assert_false(ccgw_http_api_owns(NULL));
}

static void test_healthz(void **state)
{
    (void)state;
    answer_t a = req("GET", "/healthz", NULL, NULL, NULL); /* no token needed */
    EXPECT_STATUS(a, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "status")), "ok");
    assert_string_equal(json_string_value(json_object_get(a.json, "boot")), GW->boot);
    assert_true(json_is_integer(json_object_get(a.json, "uptime_s")));
    json_t *mq = json_object_get(a.json, "mqtt");
    assert_true(json_is_false(json_object_get(mq, "enabled")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a.json, "instances"), "running")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(a.json, "instances"), "failed")), 0);
    answer_free(&a);
    a = req("POST", "/healthz", NULL, "{}", NULL);
    EXPECT_ERROR(a, 405, "method_not_allowed");
    answer_free(&a);
}

static void test_unauthorized_and_unknown(void **state)
{
    (void)state;
    const char *paths[] = {"/metrics", "/api/v1/instances", "/api/v1/devices", "/api/v1/alarms", "/api/v1/nope"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        answer_t a = req("GET", paths[i], NULL, NULL, NULL);
        EXPECT_ERROR(a, 401, "unauthorized");
        answer_free(&a);
    }
    answer_t a = req("POST", "/api/v1/commands", NULL, "{}", NULL);
    EXPECT_ERROR(a, 401, "unauthorized");
    answer_free(&a);

    const char *missing[] = {"/api/v1/nope", "/api/v2/devices", "/api/v1", "/api/v1/devices/env", "/api/v1/devices//x",
                             "/api/v1/devices/env/knob1/extra", "/api/v1/alarms/env/knob1/leak",
                             "/api/v1/devices/ENV/knob1", "/api"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        a = req("GET", missing[i], NULL, NULL, VIEWER);
        if (a.status != 404 || strcmp(err_code(&a), "not_found") != 0)
            fail_msg("%s: expected 404 not_found, got %d %s", missing[i], a.status, a.body);
        answer_free(&a);
    }
    /* wrong methods */
    struct {
        const char *m, *p;
    } wrong[] = {{"GET", "/api/v1/commands"}, {"POST", "/api/v1/devices"}, {"DELETE", "/api/v1/alarms"},
                 {"GET", "/api/v1/reload"}, {"PUT", "/metrics"}, {"GET", "/api/v1/alarms/env/knob1/leak/ack"},
                 {"POST", "/api/v1/instances"}};
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
        a = req(wrong[i].m, wrong[i].p, NULL, NULL, ADMIN);
        if (a.status != 405)
            fail_msg("%s %s: expected 405, got %d %s", wrong[i].m, wrong[i].p, a.status, a.body);
        answer_free(&a);
    }
    /* incomplete requests */
    ccgw_http_req_t rq = {.method = NULL, .path = "/healthz"};
    ccgw_http_resp_t resp;
    ccgw_http_api_handle(GW, &rq, &resp, NULL, NULL);
    assert_int_equal(resp.status, 400);
    ccgw_http_resp_free(&resp);
}

static void test_metrics(void **state)
{
    (void)state;
    answer_t a = req("GET", "/metrics", NULL, NULL, VIEWER);
    EXPECT_STATUS(a, 200);
    assert_string_equal(a.ct, "text/plain; version=0.0.4");
    const char *want[] = {"# TYPE ccgw_events_in_total counter\n",
                          "ccgw_events_in_total{instance=\"g\",kind=\"telemetry\"} ",
                          "ccgw_events_in_total{instance=\"k\",kind=\"state\"} ",
                          "ccgw_events_out_total{kind=\"telemetry\"} ",
                          "ccgw_bus_dropped_total{reason=\"full\",kind=\"telemetry\"} ",
                          "ccgw_bus_queue_limit 65536\n",
                          "ccgw_bus_queue_depth ",
                          "ccgw_mqtt_connected 0\n",
                          "ccgw_mqtt_enabled 0\n",
                          "ccgw_instance_state{instance=\"g\",plugin=\"good\",state=\"running\",health=\"ok\"} 1\n",
                          "ccgw_commands_total{instance=\"g\",result=\"ok\"} ",
                          "# TYPE ccgw_command_duration_seconds histogram\n",
                          "ccgw_command_duration_seconds_bucket{le=\"+Inf\"} ",
                          "ccgw_command_duration_seconds_count ",
                          "ccgw_ws_clients 0\n",
                          "ccgw_audit_records_total ",
                          "ccgw_spool_enabled ",
                          "ccgw_instance_restarts_total 0\n",
                          "ccgw_instances_quarantined 0\n",
                          "ccgw_reloads_total{result=\"rejected\"} ",
                          "ccgw_info{version="};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(a.body, want[i]))
            fail_msg("metrics lack '%s':\n%s", want[i], a.body);
    /* telemetry counted: the good plugin emits every 50 ms */
    const char *p = strstr(a.body, "ccgw_events_in_total{instance=\"g\",kind=\"telemetry\"} ");
    assert_true(strtoull(p + strlen("ccgw_events_in_total{instance=\"g\",kind=\"telemetry\"} "), NULL, 10) > 0);
    /* every sample line is NAME{...} VALUE or NAME VALUE */
    for (const char *line = a.body; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        if (*line != '#') {
            const char *sp = memchr(line, ' ', (size_t)(nl - line));
            assert_non_null(sp);
            char *end = NULL;
            strtod(sp + 1, &end);
            assert_ptr_equal(end, nl);
        }
        line = nl + 1;
    }
    answer_free(&a);
}

static void test_instances(void **state)
{
    (void)state;
    answer_t a = req("GET", "/api/v1/instances", NULL, NULL, VIEWER);
    EXPECT_STATUS(a, 200);
    json_t *list = json_object_get(a.json, "instances");
    assert_int_equal(json_array_size(list), 2);
    json_t *g = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(g, "id")), "g");
    assert_string_equal(json_string_value(json_object_get(g, "plugin")), "good");
    assert_string_equal(json_string_value(json_object_get(g, "state")), "running");
    assert_string_equal(json_string_value(json_object_get(g, "health")), "ok");
    assert_true(json_is_null(json_object_get(g, "reason")));
    assert_int_equal(json_integer_value(json_object_get(g, "devices")), 1);
    assert_true(json_integer_value(json_object_get(json_object_get(g, "emitted"), "telemetry")) > 0);
    assert_true(json_is_integer(json_object_get(json_object_get(g, "dropped"), "event")));
    json_t *c = json_object_get(g, "commands");
    assert_true(json_is_integer(json_object_get(c, "in")) && json_is_integer(json_object_get(c, "ok")) &&
                json_is_integer(json_object_get(c, "failed")) && json_is_integer(json_object_get(c, "timeout")));
    answer_free(&a);
    /* a token limited to ups topics sees no instance health topic */
    a = req("GET", "/api/v1/instances", NULL, NULL, UPS_VIEWER);
    EXPECT_STATUS(a, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "instances")), 0);
    answer_free(&a);
}

static void test_devices(void **state)
{
    (void)state;
    answer_t a = req("GET", "/api/v1/devices", NULL, NULL, VIEWER);
    EXPECT_STATUS(a, 200);
    json_t *list = json_object_get(a.json, "devices");
    assert_int_equal(json_array_size(list), 2); /* env/good1, env/knob1, sorted by topic */
    json_t *d = json_array_get(list, 1);
    assert_string_equal(json_string_value(json_object_get(d, "class")), "env");
    assert_string_equal(json_string_value(json_object_get(d, "device")), "knob1");
    assert_string_equal(json_string_value(json_object_get(d, "topic")), "ccgw/v1/hq/env/knob1/state");
    json_t *st = json_object_get(d, "state");
    assert_true(json_is_object(st));
    assert_string_equal(json_string_value(json_object_get(st, "device")), "knob1");
    assert_true(json_is_true(json_object_get(st, "online")));
    answer_free(&a);

    a = req("GET", "/api/v1/devices", "class=env", NULL, VIEWER);
    assert_int_equal(json_array_size(json_object_get(a.json, "devices")), 2);
    answer_free(&a);
    a = req("GET", "/api/v1/devices", "x=1&class=ups", NULL, VIEWER);
    EXPECT_STATUS(a, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "devices")), 0);
    answer_free(&a);
    /* filters: the ups-only token sees none of the env devices */
    a = req("GET", "/api/v1/devices", NULL, NULL, UPS_VIEWER);
    assert_int_equal(json_array_size(json_object_get(a.json, "devices")), 0);
    answer_free(&a);

    a = req("GET", "/api/v1/devices/env/knob1", NULL, NULL, VIEWER);
    EXPECT_STATUS(a, 200);
    assert_string_equal(json_string_value(json_object_get(a.json, "class")), "env");
    assert_string_equal(json_string_value(json_object_get(a.json, "device")), "knob1");
    assert_true(json_is_object(json_object_get(a.json, "state")));
    json_t *alarms = json_object_get(a.json, "alarms");
    assert_int_equal(json_array_size(alarms), 1);
    json_t *al = json_array_get(alarms, 0);
    assert_string_equal(json_string_value(json_object_get(al, "topic")), "ccgw/v1/hq/env/knob1/alarm/leak");
    assert_string_equal(json_string_value(json_object_get(al, "code")), "leak");
    assert_string_equal(json_string_value(json_object_get(al, "severity")), "critical");
    answer_free(&a);
    a = req("GET", "/api/v1/devices/env/knob1/", NULL, NULL, VIEWER); /* trailing slash */
    EXPECT_STATUS(a, 200);
    answer_free(&a);

    a = req("GET", "/api/v1/devices/env/nope", NULL, NULL, VIEWER);
    EXPECT_ERROR(a, 404, "not_found");
    answer_free(&a);
    a = req("GET", "/api/v1/devices/env/knob1", NULL, NULL, UPS_VIEWER);
    EXPECT_ERROR(a, 403, "forbidden");
    answer_free(&a);
}

static void test_alarms(void **state)
{
    (void)state;
    answer_t a = req("GET", "/api/v1/alarms", NULL, NULL, VIEWER);
    EXPECT_STATUS(a, 200);
    json_t *list = json_object_get(a.json, "alarms");
    bool found = false;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *al = json_array_get(list, i);
        const char *t = json_string_value(json_object_get(al, "topic"));
        assert_non_null(t);
        assert_non_null(strstr(t, "/alarm/"));
        if (!strcmp(t, "ccgw/v1/hq/env/knob1/alarm/leak")) {
            found = true;
            assert_string_equal(json_string_value(json_object_get(al, "device")), "knob1");
            assert_non_null(json_object_get(al, "state"));
        }
    }
    assert_true(found);
    answer_free(&a);
    a = req("GET", "/api/v1/alarms", NULL, NULL, UPS_VIEWER);
    EXPECT_STATUS(a, 200);
    assert_int_equal(json_array_size(json_object_get(a.json, "alarms")), 0);
    answer_free(&a);
}

static void expect_reply(const answer_t *a, int status, const char *code)
{
    if (a->status != status)
        fail_msg("expected %d, got %d: %s", status, a->status, a->body);
    if (code) {
        assert_true(json_is_false(json_object_get(a->json, "ok")));
        if (!err_code(a) || strcmp(err_code(a), code) != 0)
            fail_msg("expected error code %s: %s", code, a->body);
    } else if (!json_is_true(json_object_get(a->json, "ok"))) {
        fail_msg("expected ok:true: %s", a->body);
    }
}

static void test_commands(void **state)
{
    (void)state;
    /* ok, by topic, answered later on the instance thread */
    answer_t a = req("POST", "/api/v1/commands", NULL,
                     "{\"topic\":\"ccgw/v1/hq/env/good1/cmd/echo\",\"args\":{\"text\":\"hi\",\"n\":7,\"delay_ms\":50}}",
                     OPERATOR);
    expect_reply(&a, 200, NULL);
    assert_string_equal(json_string_value(json_object_get(a.json, "command")), "echo");
    json_t *data = json_object_get(a.json, "data");
    assert_string_equal(json_string_value(json_object_get(data, "text")), "hi");
    assert_int_equal(json_integer_value(json_object_get(data, "n")), 7);
    answer_free(&a);
    /* ok, by class/device/name, no args */
    a = req("POST", "/api/v1/commands", NULL, "{\"class\":\"env\",\"device\":\"good1\",\"name\":\"echo\"}", ADMIN);
    expect_reply(&a, 200, NULL);
    answer_free(&a);
    /* the reply's error codes become statuses */
    a = req("POST", "/api/v1/commands", NULL, "{\"class\":\"env\",\"device\":\"nope\",\"name\":\"echo\"}", OPERATOR);
    expect_reply(&a, 404, "unknown_device");
    answer_free(&a);
    a = req("POST", "/api/v1/commands", NULL, "{\"topic\":\"ccgw/v1/hq/env/good1/cmd/fly\"}", OPERATOR);
    expect_reply(&a, 404, "unknown_command");
    answer_free(&a);
    a = req("POST", "/api/v1/commands", NULL, "{\"topic\":\"ccgw/v1/hq/env/good1/cmd/echo\",\"args\":{\"n\":\"x\"}}",
            OPERATOR);
    expect_reply(&a, 400, "bad_arguments");
    answer_free(&a);
    a = req("POST", "/api/v1/commands", NULL, "{\"topic\":\"ccgw/v1/hq/env/good1/cmd/echo\",\"args\":[1]}", OPERATOR);
    expect_reply(&a, 400, "bad_arguments");
    answer_free(&a);
    /* timeout: the instance's command_timeout_ms is 300 */
    a = req("POST", "/api/v1/commands", NULL,
            "{\"topic\":\"ccgw/v1/hq/env/good1/cmd/echo\",\"args\":{\"delay_ms\":2000}}", OPERATOR);
    expect_reply(&a, 504, "timeout");
    answer_free(&a);
    /* another site: unknown device */
    a = req("POST", "/api/v1/commands", NULL, "{\"topic\":\"ccgw/v1/other/env/good1/cmd/echo\"}", OPERATOR);
    EXPECT_ERROR(a, 404, "unknown_device");
    answer_free(&a);

    /* malformed requests */
    const char *bad[] = {"{\"topic\":\"ccgw/v1/hq/env/good1/echo\"}", "{\"topic\":\"ccgw/v1/hq/env/good1/cmd/a/b\"}",
                         "{\"topic\":\"x\"}", "{\"class\":\"env\",\"device\":\"good1\"}",
                         "{\"class\":\"env\",\"device\":\"a/b\",\"name\":\"echo\"}", "{\"topic\":7}", "[1,2]",
                         "\"str\"", "{\"class\":\"\",\"device\":\"good1\",\"name\":\"echo\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        a = req("POST", "/api/v1/commands", NULL, bad[i], OPERATOR);
        if (a.status != 400 || strcmp(err_code(&a), "bad_request") != 0)
            fail_msg("%s: expected 400 bad_request, got %d %s", bad[i], a.status, a.body);
        answer_free(&a);
    }
    const char *notjson[] = {"", "{", "{\"topic\":}", "nope", "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof notjson / sizeof *notjson; i++) {
        a = req("POST", "/api/v1/commands", NULL, notjson[i], OPERATOR);
        if (a.status != 400 || strcmp(err_code(&a), "bad_json") != 0)
            fail_msg("'%s': expected 400 bad_json, got %d %s", notjson[i], a.status, a.body);
        answer_free(&a);
    }
    /* oversized: max_request_bytes is 1024 */
    char big[2048];
    int n = snprintf(big, sizeof big, "{\"topic\":\"ccgw/v1/hq/env/good1/cmd/echo\",\"args\":{\"text\":\"");
    memset(big + n, 'x', 1200);
    snprintf(big + n + 1200, sizeof big - (size_t)n - 1200, "\"}}");
    a = req("POST", "/api/v1/commands", NULL, big, OPERATOR);
    EXPECT_ERROR(a, 413, "too_large");
    answer_free(&a);

    /* refusals: viewer, and an operator outside its command list; the reply shape is MQTT's */
    a = req("POST", "/api/v1/commands", NULL, "{\"topic\":\"ccgw/v1/hq/env/good1/cmd/echo\"}", VIEWER);
    expect_reply(&a, 403, "forbidden");
    assert_string_equal(json_string_value(json_object_get(a.json, "device")), "good1");
    assert_non_null(strstr(a.body, "role viewer may not send commands"));
    answer_free(&a);
    a = req("POST", "/api/v1/commands", NULL, "{\"topic\":\"ccgw/v1/hq/env/good1/cmd/echo\"}", DOOR_OP);
    expect_reply(&a, 403, "forbidden");
    assert_non_null(strstr(a.body, "not in the token's commands"));
    answer_free(&a);

    /* a command spec's min_role (ABI 1.1): admin only; the plugin sees who sent it */
    a = req("POST", "/api/v1/commands", NULL, "{\"topic\":\"ccgw/v1/hq/env/knob1/cmd/knob.reset\"}", OPERATOR);
    expect_reply(&a, 403, "forbidden");
    assert_non_null(strstr(a.body, "needs role admin"));
    answer_free(&a);
    a = req("POST", "/api/v1/commands", NULL, "{\"topic\":\"ccgw/v1/hq/env/knob1/cmd/knob.reset\"}", ADMIN);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(a.json, "data"), "origin")), "http:root");
    answer_free(&a);
}

/* A done callback that must never run: the answer comes synchronously. */
static void test_sync_answer_without_done(void **state)
{
    (void)state;
    ccgw_http_req_t rq = {.method = "POST", .path = "/api/v1/commands",
                          .body = "{\"class\":\"env\",\"device\":\"nope\",\"name\":\"echo\"}", .who = OPERATOR,
                          .remote = "127.0.0.1:5555"};
    rq.body_len = strlen(rq.body);
    ccgw_http_resp_t resp;
    ccgw_http_api_handle(GW, &rq, &resp, NULL, NULL);
    assert_false(resp.pending);
    assert_int_equal(resp.status, 404);
    ccgw_http_resp_free(&resp);
}

static void test_ack(void **state)
{
    (void)state;
    answer_t a = req("POST", "/api/v1/alarms/env/knob1/leak/ack", NULL, "{\"note\":\"on it\"}", VIEWER);
    expect_reply(&a, 403, "forbidden");
    answer_free(&a);
    a = req("POST", "/api/v1/alarms/env/knob1/leak/ack", NULL, "{\"note\":5}", OPERATOR);
    EXPECT_ERROR(a, 400, "bad_request");
    answer_free(&a);
    a = req("POST", "/api/v1/alarms/env/knob1/leak/ack", NULL, "{\"note\":", OPERATOR);
    EXPECT_ERROR(a, 400, "bad_json");
    answer_free(&a);
    a = req("POST", "/api/v1/alarms/env/knob1/nope/ack", NULL, NULL, OPERATOR);
    expect_reply(&a, 404, "bad_arguments");
    answer_free(&a);
    a = req("POST", "/api/v1/alarms/env/ghost/leak/ack", NULL, NULL, OPERATOR);
    expect_reply(&a, 404, "unknown_device");
    answer_free(&a);

    a = req("POST", "/api/v1/alarms/env/knob1/leak/ack", NULL, "{\"note\":\"on it\"}", OPERATOR);
    expect_reply(&a, 200, NULL);
    json_t *data = json_object_get(a.json, "data");
    assert_string_equal(json_string_value(json_object_get(data, "state")), "acknowledged");
    assert_string_equal(json_string_value(json_object_get(data, "acked_by")), "duty"); /* the token's name */
    answer_free(&a);
    assert_true(wait_for("/api/v1/alarms", "\"acked_by\":\"duty\"", 3000));

    a = req("POST", "/api/v1/alarms/env/knob1/leak/ack", NULL, "", ADMIN);
    expect_reply(&a, 409, "bad_arguments");
    assert_non_null(strstr(a.body, "already acknowledged"));
    answer_free(&a);
}

static void test_reload(void **state)
{
    (void)state;
    answer_t a = req("POST", "/api/v1/reload", NULL, NULL, OPERATOR);
    EXPECT_ERROR(a, 403, "forbidden");
    answer_free(&a);
    a = req("POST", "/api/v1/reload", NULL, NULL, ADMIN);
    /* 200 once live reload exists; until then the gateway answers why not */
    if (a.status == 200)
        assert_true(json_is_true(json_object_get(a.json, "ok")));
    else
        EXPECT_ERROR(a, 409, "config_rejected");
    answer_free(&a);
}

/* Runs last: every command and ack above left one line. */
static void test_audit_file(void **state)
{
    (void)state;
    FILE *f = fopen(AUDIT, "r");
    assert_non_null(f);
    char line[8192];
    int n = 0, ok_cmd = 0, forbidden = 0, acks_ok = 0, acks_refused = 0, timeouts = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        if (!j)
            fail_msg("audit line is not JSON: %s", line);
        n++;
        const char *keys[] = {"ts", "token", "role", "remote", "channel", "action", "target", "result"};
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
            if (!json_is_string(json_object_get(j, keys[i])))
                fail_msg("audit line lacks %s: %s", keys[i], line);
        assert_non_null(json_object_get(j, "args"));
        const char *action = json_string_value(json_object_get(j, "action"));
        const char *result = json_string_value(json_object_get(j, "result"));
        const char *token = json_string_value(json_object_get(j, "token"));
        if (strcmp(action, "reload") != 0) {
            assert_string_equal(json_string_value(json_object_get(j, "channel")), "http");
            assert_string_equal(json_string_value(json_object_get(j, "remote")), "127.0.0.1:5555");
        }
        if (!strcmp(action, "command") && !strcmp(result, "ok") && !strcmp(token, "duty")) {
            ok_cmd++;
            assert_string_equal(json_string_value(json_object_get(j, "role")), "operator");
            assert_string_equal(json_string_value(json_object_get(j, "target")), "ccgw/v1/hq/env/good1/cmd/echo");
            assert_string_equal(json_string_value(json_object_get(json_object_get(j, "args"), "text")), "hi");
        }
        if (!strcmp(action, "command") && !strcmp(result, "forbidden"))
            forbidden++;
        if (!strcmp(action, "command") && !strcmp(result, "timeout"))
            timeouts++;
        if (!strcmp(action, "alarm.ack") && !strcmp(result, "ok")) {
            acks_ok++;
            assert_string_equal(json_string_value(json_object_get(j, "target")), "ccgw/v1/hq/env/knob1/alarm/leak");
            assert_string_equal(json_string_value(json_object_get(json_object_get(j, "args"), "note")), "on it");
        }
        if (!strcmp(action, "alarm.ack") && !strcmp(result, "forbidden"))
            acks_refused++;
        json_decref(j);
    }
    fclose(f);
    assert_int_equal(ok_cmd, 1);
    assert_int_equal(forbidden, 3); /* viewer, outside the command list, below min_role */
    assert_int_equal(timeouts, 1);
    assert_int_equal(acks_ok, 1);
    assert_int_equal(acks_refused, 1);
    assert_true((uint64_t)n == ccgw_audit_count(GW->audit));
    assert_int_equal(ccgw_audit_write_errors(GW->audit), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_owns),
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_unauthorized_and_unknown),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_instances),
        cmocka_unit_test(test_devices),
        cmocka_unit_test(test_alarms),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_sync_answer_without_done),
        cmocka_unit_test(test_ack),
        cmocka_unit_test(test_reload),
        cmocka_unit_test(test_audit_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
