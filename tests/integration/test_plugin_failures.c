/*
 * plugin_failures: broken plugins next to good ones in the real daemon.
 *  - an instance whose plugin was built for another ABI major is refused
 *    with a message naming the file and both ABIs, while the others run;
 *  - create() and start() failures mark only their own instance failed;
 *  - an older same-major plugin (shorter descriptor) loads and runs;
 *  - a command the plugin answers too late gets `timeout`, the late reply is
 *    dropped and the daemon keeps serving; SIGTERM still exits 0 (ASan clean);
 *  - --check-config on the same file fails (exit 1) and names the refused
 *    plugin at FILE:LINE:COL.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must be defined"
#endif

static h_env *E;
static h_broker *B;
static h_mqtt *S;
static h_proc *G;
static char CONFIG[4096];
static int64_t T0;

#define T_GOOD H_PREFIX "/hq/env/good1"
#define T_INST H_PREFIX "/hq/gateway/gw1/instance/"

static int setup(void **state)
{
    E = h_env_new("plugin_failures");
    if (h_broker_and_watcher(E, &B, &S) != 0)
        return -1;
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "gateway:\n"
             "  site: hq\n"
             "  id: gw1\n"
             "  data_dir: data\n"
             "  plugin_dirs: [\"%s\"]\n"
             "mqtt:\n"
             "  port: %d\n"
             "instances:\n"
             "  - id: good\n"
             "    plugin: good\n"
             "    command_timeout_ms: 400\n"
             "    options: {interval_ms: 100}\n"
             "  - id: old\n"
             "    plugin: old_minor\n"
             "  - id: fc\n"
             "    plugin: failing_create\n"
             "  - id: fs\n"
             "    plugin: failing_start\n"
             "  - id: abi\n"
             "    plugin: bad_abi_major\n",
             TEST_PLUGIN_DIR, B->port);
    G = h_gw_start_yaml(E, yaml, CONFIG, sizeof CONFIG, &T0);
    return G ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    h_rig_teardown(E, B, S, G, NULL, 0);
    return 0;
}

static void others_run(void **state)
{
    H_EXPECT(S, 0, H_PREFIX "/hq/gateway/gw1/status", "{\"online\":true}", h_left_ms(T0, 5000));
    H_EXPECT(S, 0, T_GOOD "/state", "{\"online\":true}", h_left_ms(T0, 5000));
    const h_msg *t = H_EXPECT(S, 0, T_GOOD "/telemetry", "{}", h_left_ms(T0, 5000));
    H_ASSERT(json_object_get(json_object_get(t->json, "values"), "counter") != NULL, "counter: %s", t->payload);
    /* the older-minor plugin runs too */
    H_EXPECT(S, 0, H_PREFIX "/hq/env/old.old/state", "{\"online\":true}", h_left_ms(T0, 5000));
    H_EXPECT(S, 0, T_INST "old", "{\"state\":\"running\"}", h_left_ms(T0, 5000));
    H_ASSERT(h_proc_alive(G), "ccgw exited");
}

static void failed_instances_reported(void **state)
{
    const h_msg *m = H_EXPECT(S, 0, T_INST "abi", "{\"state\":\"failed\",\"health\":\"failed\"}",
                              h_left_ms(T0, 5000));
    const char *why = h_json_str(m->json, "reason");
    H_ASSERT(why && strstr(why, "bad_abi_major.so") && strstr(why, "ABI 2.") && strstr(why, "ABI 1."),
             "the refusal names the file and both ABIs: %s", m->payload);
    m = H_EXPECT(S, 0, T_INST "fc", "{\"state\":\"failed\"}", h_left_ms(T0, 5000));
    H_ASSERT(strstr(h_json_str(m->json, "reason"), "create failed"), "%s", m->payload);
    m = H_EXPECT(S, 0, T_INST "fs", "{\"state\":\"failed\"}", h_left_ms(T0, 5000));
    H_ASSERT(strstr(h_json_str(m->json, "reason"), "start failed"), "%s", m->payload);
    char line[512];
    H_ASSERT(h_proc_wait_log(G, "bad_abi_major.so", h_scaled(2000), line, sizeof line),
             "the log names the refused plugin");
    H_ASSERT(h_proc_alive(G), "ccgw exited");
}

static void command_timeout_then_recovery(void **state)
{
    const char *topic = T_GOOD "/cmd/echo";
    size_t mark = h_mqtt_mark(S);
    const char *slow = "{\"text\":\"slow\",\"delay_ms\":1500}";
    H_ASSERT(h_mqtt_pub(S, topic, slow, (int)strlen(slow), 1, false, NULL, NULL, 0) == 0, "publish");
    int64_t t = h_now_ms();
    const h_msg *r = H_EXPECT(S, mark, T_GOOD "/cmd/echo/reply", "{\"ok\":false}", h_scaled(3000));
    int64_t took = h_now_ms() - t;
    H_ASSERT(h_json_str_is(json_object_get(r->json, "error"), "code", "timeout"), "timeout: %s", r->payload);
    H_ASSERT(took >= 350 && took < 1400, "the timeout follows command_timeout_ms 400 (took %lld ms)",
             (long long)took);
    /* the late reply (at 1500 ms) must not produce a second reply */
    mark = h_mqtt_mark(S);
    h_sleep_ms(1500);
    const h_msg *late[4];
    size_t n = h_mqtt_collect(S, mark, T_GOOD "/cmd/echo/reply", NULL, NULL, late, 4);
    H_ASSERT(n == 0, "a command gets exactly one reply, got %zu more", n);
    /* and the instance still serves */
    mark = h_mqtt_mark(S);
    const char *fast = "{\"text\":\"fast\"}";
    H_ASSERT(h_mqtt_pub(S, topic, fast, (int)strlen(fast), 1, false, NULL, NULL, 0) == 0, "publish");
    r = H_EXPECT(S, mark, T_GOOD "/cmd/echo/reply", "{\"ok\":true,\"data\":{\"text\":\"fast\"}}", h_scaled(3000));
}

static void check_config_names_refused_plugin(void **state)
{
    const char *argv[] = {CCGW_BIN, "--check-config", CONFIG, NULL};
    char *out = NULL, *err = NULL;
    int st = h_run(E, "check", argv, h_scaled(20000), &out, &err);
    H_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1, "--check-config exit 1, got %d; %s", st, err ? err : "");
    char want[sizeof CONFIG + 64];
    snprintf(want, sizeof want, "%s:20:13: plugin 'bad_abi_major':", CONFIG);
    H_ASSERT(err && strstr(err, want), "want '%s' in: %s", want, err ? err : "");
    free(out);
    free(err);
}

static void sigterm_exits_zero(void **state)
{
    h_proc_signal(G, SIGTERM);
    int status = -1;
    H_ASSERT(h_proc_wait(G, h_scaled(8000), &status), "ccgw still running after SIGTERM");
    char buf[64];
    H_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status: %s",
             h_status_str(status, buf, sizeof buf));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(others_run),
        cmocka_unit_test(failed_instances_reported),
        cmocka_unit_test(command_timeout_then_recovery),
        cmocka_unit_test(check_config_names_refused_plugin),
        cmocka_unit_test(sigterm_exits_zero),
    };
    int failed = cmocka_run_group_tests_name("integration.plugin_failures", tests, setup, teardown);
    return h_finish(failed);
}
