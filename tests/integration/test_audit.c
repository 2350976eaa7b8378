/*
 * audit: the audit trail of MQTT commands through the real daemon and broker.
 * The `knob` test plugin (env/knob1, command knob.set) and a rule that
 * raises `water_leak` when leak is true; the http section is disabled but
 * names the audit log, so MQTT commands are still audited.
 *  - knob.set with a v5 response topic -> one record on
 *    ccgw/v1/hq/gateway/gw1/audit: channel mqtt, token mqtt, role "-",
 *    remote = the response topic, action command, target = the command
 *    topic, args as sent, result ok; not retained;
 *  - an unknown command -> result unknown_command with its message;
 *  - alarm.ack over MQTT -> action alarm.ack, result ok;
 *  - the same records, in order, as JSON lines in the audit log file;
 *  - ccgw --hash-token prints the SHA-256 of the token read on stdin.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must be defined"
#endif

#define T_KNOB H_PREFIX "/hq/env/knob1"
#define T_AUDIT H_PREFIX "/hq/gateway/gw1/audit"

static h_env *E;
static h_broker *B;
static h_mqtt *S;
static h_proc *G;
static char AUDIT[4096];

static int setup(void **state)
{
    (void)state;
    E = h_env_new("audit");
    h_current_env = E;
    if (h_broker_and_watcher(E, &B, &S) != 0)
        return -1;
    h_env_path(E, "audit/trail.jsonl", AUDIT, sizeof AUDIT);
    char yaml[4096];
    snprintf(yaml, sizeof yaml,
             "gateway:\n"
             "  site: hq\n"
             "  id: gw1\n"
             "  plugin_dirs: [\"%s\"]\n"
             "  data_dir: state\n"
             "mqtt:\n"
             "  port: %d\n"
             "http:\n"
             "  enabled: false\n"
             "  audit_log: audit/trail.jsonl\n" /* relative to the config file; folder created */
             "alarms:\n"
             "  persist: false\n"
             "  rules:\n"
             "    - {code: water_leak, device: knob1, value: leak, type: on}\n"
             "instances:\n"
             "  - id: knob\n"
             "    plugin: knob\n"
             "    options: {interval_ms: 100}\n",
             TEST_PLUGIN_DIR, B->port);
    G = h_gw_start_yaml(E, yaml, NULL, 0, NULL);
    if (!G)
        return -1;
    return h_mqtt_wait_match(S, 0, T_KNOB "/state", "{\"online\":true}", h_scaled(5000)) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    h_rig_teardown(E, B, S, G, NULL, 0);
    return 0;
}

static const h_msg *audit_after(size_t from, const char *pattern)
{
    const h_msg *m = H_EXPECT(S, from, T_AUDIT, pattern, h_scaled(3000));
    H_ASSERT(!m->retain, "audit records are not retained");
    H_ASSERT(h_ts_valid(h_json_str(m->json, "ts"), 120), "ts: %s", m->payload);
    return m;
}

static void mqtt_commands_are_audited(void **state)
{
    (void)state;
    size_t from = h_mqtt_mark(S);
    const char *args = "{\"temperature\":25.5}";
    H_ASSERT(h_mqtt_pub(S, T_KNOB "/cmd/knob.set", args, (int)strlen(args), 1, false, "it/audit/r1", "c1", 2) == 0,
             "publish");
    const h_msg *m = audit_after(from, "{\"channel\":\"mqtt\",\"token\":\"mqtt\",\"role\":\"-\","
                                       "\"remote\":\"it/audit/r1\",\"action\":\"command\","
                                       "\"target\":\"" T_KNOB "/cmd/knob.set\",\"args\":{\"temperature\":25.5},"
                                       "\"result\":\"ok\"}");
    H_ASSERT(!json_object_get(m->json, "message"), "no message on success: %s", m->payload);

    from = h_mqtt_mark(S);
    H_ASSERT(h_mqtt_pub(S, T_KNOB "/cmd/knob.fly", "{}", 2, 1, false, NULL, NULL, 0) == 0, "publish");
    m = audit_after(from, "{\"action\":\"command\",\"target\":\"" T_KNOB "/cmd/knob.fly\","
                          "\"remote\":\"" T_KNOB "/cmd/knob.fly/reply\",\"result\":\"unknown_command\"}");
    H_ASSERT(h_json_str(m->json, "message"), "a failure carries the message: %s", m->payload);
}

static void mqtt_ack_is_audited(void **state)
{
    (void)state;
    size_t from = h_mqtt_mark(S);
    const char *set = "{\"leak\":true}";
    H_ASSERT(h_mqtt_pub(S, T_KNOB "/cmd/knob.set", set, (int)strlen(set), 1, false, NULL, NULL, 0) == 0, "publish");
    H_EXPECT(S, from, T_KNOB "/alarm/water_leak", "{\"state\":\"raised\"}", h_scaled(3000));
    from = h_mqtt_mark(S);
    const char *ack = "{\"code\":\"water_leak\",\"by\":\"op1\",\"note\":\"mop\"}";
    H_ASSERT(h_mqtt_pub(S, T_KNOB "/cmd/alarm.ack", ack, (int)strlen(ack), 1, false, NULL, NULL, 0) == 0, "publish");
    audit_after(from, "{\"action\":\"alarm.ack\",\"args\":{\"code\":\"water_leak\",\"by\":\"op1\",\"note\":\"mop\"},"
                      "\"result\":\"ok\"}");
}

static void file_has_the_same_lines(void **state)
{
    (void)state;
    char *text = h_read_file(AUDIT);
    H_ASSERT(text, "cannot read %s", AUDIT);
    const char *want[] = {"knob.set\",\"args\":{\"temperature\":25.5},\"result\":\"ok\"",
                          "knob.fly\",\"args\":{},\"result\":\"unknown_command\"",
                          "\"action\":\"alarm.ack\""};
    const char *at = text;
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const char *p = strstr(at, want[i]);
        H_ASSERT(p, "audit file lacks (in order) %s:\n%s", want[i], text);
        at = p;
    }
    /* one JSON object per line */
    int lines = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        H_ASSERT(j && json_is_object(j), "not a JSON object line: %s", line);
        json_decref(j);
        lines++;
    }
    H_ASSERT(lines >= 4, "expected at least 4 lines, got %d", lines);
    free(text);
}

static void hash_token(void **state)
{
    (void)state;
    FILE *p = popen("printf 'test\\n' | " CCGW_BIN " --hash-token", "r");
    H_ASSERT(p, "popen");
    char out[128] = "";
    H_ASSERT(fgets(out, sizeof out, p), "no output");
    H_ASSERT(pclose(p) == 0, "exit status");
    H_ASSERT(!strcmp(out, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"), "got %s", out);
    p = popen(CCGW_BIN " --hash-token < /dev/null 2>/dev/null", "r");
    H_ASSERT(p, "popen");
    H_ASSERT(pclose(p) != 0, "an empty token is refused");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mqtt_commands_are_audited),
        cmocka_unit_test(mqtt_ack_is_audited),
        cmocka_unit_test(file_has_the_same_lines),
        cmocka_unit_test(hash_token),
    };
    return h_finish(cmocka_run_group_tests(tests, setup, teardown));
}
