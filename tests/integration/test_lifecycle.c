/*
 * lifecycle: how ccgw leaves.
 *  - SIGTERM: exit 0 within 5 s; the devices go online:false ("instance
 *    stopped"), the instance topic says stopped, the retained gateway status
 *    becomes {"online":false,"reason":"shutdown"} and the broker does not
 *    publish the last will (clean DISCONNECT).
 *  - a second run gets a new boot id; kill -9: the broker publishes the last
 *    will {"online":false,...} (retained, that run's boot) within ~10 s
 *    (keepalive 5 s; a killed process' socket is closed by the kernel, so the
 *    broker usually sees it at once);
 *  - a frozen ccgw (SIGSTOP, socket open): the will comes from the keepalive
 *    (5 s; the broker waits 1.5 x, checked coarsely: 7.5..11 s measured with
 *    mosquitto 2.0.11) - after 4 s, within 15 s.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

static h_world W;
static char g_boot1[17];

static int group_setup(void **state)
{
    h_gw_opts o = {.poll_ms = 500};
    return h_world_start(&W, "lifecycle", 1, &o);
}

static int group_teardown(void **state)
{
    h_world_stop(&W);
    return 0;
}

/* publishes a marker and waits for it: everything the broker had for this
 * subscriber before has been delivered */
static void barrier(h_mqtt *c, const char *tag)
{
    char topic[128];
    snprintf(topic, sizeof topic, H_PREFIX "/it-barrier/%s", tag);
    size_t from = h_mqtt_mark(c);
    H_ASSERT(h_mqtt_pub(c, topic, "{}", 2, 1, false, NULL, NULL, 0) == 0, "publish barrier");
    H_EXPECT(c, from, topic, "{}", h_scaled(3000));
}

static void sigterm_graceful(void **state)
{
    const h_msg *st = H_EXPECT(W.sub, 0, T_STATUS, "{\"online\":true}", h_left_ms(W.t_gw_start, 5000));
    snprintf(g_boot1, sizeof g_boot1, "%s", h_json_str(st->json, "boot") ? h_json_str(st->json, "boot") : "");
    H_EXPECT(W.sub, 0, T_AC "/state", "{\"online\":true}", h_left_ms(W.t_gw_start, 5000));
    H_EXPECT(W.sub, 0, T_TH "/state", "{\"online\":true}", h_left_ms(W.t_gw_start, 5000));
    H_EXPECT(W.sub, 0, T_INSTANCE, "{\"state\":\"running\"}", h_left_ms(W.t_gw_start, 5000));

    size_t mark = h_mqtt_mark(W.sub);
    int64_t t0 = h_now_ms();
    h_proc_signal(W.gw, SIGTERM);
    int status = -1;
    bool exited = h_proc_wait(W.gw, h_scaled(5000), &status);
    int64_t took = h_now_ms() - t0;
    char sts[64];
    H_ASSERT(exited, "ccgw still running 5 s after SIGTERM");
    h_log("ccgw exited %lld ms after SIGTERM: %s", (long long)took, h_status_str(status, sts, sizeof sts));
    H_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "ccgw must exit 0 on SIGTERM, got %s", sts);

    /* everything it published before exiting has been acknowledged by the broker */
    const h_msg *off = H_EXPECT(W.sub, mark, T_STATUS, "{\"online\":false}", h_scaled(2000));
    H_ASSERT(off->retain, "offline status must be retained: %s", off->payload);
    H_ASSERT(h_json_str_is(off->json, "reason", "shutdown"), "reason must be \"shutdown\": %s", off->payload);
    H_ASSERT(h_json_str_is(off->json, "boot", g_boot1), "boot %s: %s", g_boot1, off->payload);
    const h_msg *ac = H_EXPECT(W.sub, mark, T_AC "/state", "{\"online\":false}", h_scaled(1000));
    H_ASSERT(h_json_str_is(ac->json, "reason", "instance stopped"), "reason: %s", ac->payload);
    H_ASSERT(ac->index < off->index, "device offline must come before the gateway's own offline status");
    const h_msg *th = H_EXPECT(W.sub, mark, T_TH "/state", "{\"online\":false}", h_scaled(1000));
    H_ASSERT(h_json_str_is(th->json, "reason", "instance stopped"), "reason: %s", th->payload);
    H_EXPECT(W.sub, mark, T_INSTANCE, "{\"state\":\"stopped\"}", h_scaled(1000));

    /* no last will after a clean stop: only the "shutdown" status */
    barrier(W.sub, "after-sigterm");
    const h_msg *all[16];
    size_t n = h_mqtt_collect(W.sub, mark, T_STATUS, NULL, NULL, all, 16);
    H_ASSERT(n == 1, "%zu status messages after SIGTERM (the last will was published?): last %s", n,
             n ? all[n < 16 ? n - 1 : 15]->payload : "");

    /* a fresh subscriber sees the retained offline status */
    h_mqtt *late = h_mqtt_new(W.broker->port, "late");
    H_ASSERT(late && h_mqtt_sub(late, T_STATUS, 1) == 0, "subscribe");
    const h_msg *r = H_EXPECT(late, 0, T_STATUS, "{\"online\":false,\"reason\":\"shutdown\"}", h_scaled(2000));
    H_ASSERT(r->retain, "retained: %s", r->payload);
    h_mqtt_free(late);
}

static void kill9_last_will(void **state)
{
    /* second run, keepalive 5 s */
    h_gw_opts o = W.opts;
    o.keepalive_s = 5;
    char path[PATH_MAX];
    H_ASSERT(h_gw_write_config(W.env, "ccgw-keepalive.yaml", &o, path, sizeof path) == 0, "config");
    size_t mark = h_mqtt_mark(W.sub);
    int64_t t_start = h_now_ms();
    W.gw = h_gw_start(W.env, path);
    H_ASSERT(W.gw != NULL, "start ccgw");
    const h_msg *on = H_EXPECT(W.sub, mark, T_STATUS, "{\"online\":true}", h_left_ms(t_start, 5000));
    const char *boot2 = h_json_str(on->json, "boot");
    H_ASSERT(h_boot_valid(boot2), "boot: %s", on->payload);
    H_ASSERT(g_boot1[0] == '\0' || strcmp(boot2, g_boot1) != 0, "boot %s must be new for each run", boot2);
    H_EXPECT(W.sub, mark, T_AC "/state", "{\"online\":true}", h_left_ms(t_start, 5000));

    size_t mark2 = h_mqtt_mark(W.sub);
    int64_t t_kill = h_now_ms();
    h_proc_signal(W.gw, SIGKILL);
    int status = -1;
    H_ASSERT(h_proc_wait(W.gw, h_scaled(2000), &status), "ccgw survived SIGKILL");
    const h_msg *will = H_EXPECT(W.sub, mark2, T_STATUS, "{\"online\":false}", h_scaled(10000));
    h_log("last will %lld ms after kill -9: %s", (long long)(will->t_ms - t_kill), will->payload);
    H_ASSERT(will->retain, "the last will must be retained: %s", will->payload);
    H_ASSERT(h_json_str_is(will->json, "boot", boot2), "the will carries this run's boot %s: %s", boot2,
             will->payload);
    H_ASSERT(h_json_str_is(will->json, "reason", "connection lost"),
             "the will's reason is \"connection lost\" (docs/topics.md): %s", will->payload);

    h_mqtt *late = h_mqtt_new(W.broker->port, "late");
    H_ASSERT(late && h_mqtt_sub(late, T_STATUS, 1) == 0, "subscribe");
    const h_msg *r = H_EXPECT(late, 0, T_STATUS, "{\"online\":false}", h_scaled(2000));
    H_ASSERT(r->retain && h_json_str_is(r->json, "boot", boot2), "retained will: %s", r->payload);
    h_mqtt_free(late);
}

/* A gateway that vanishes without its socket closing (a frozen process, a
 * dead host): only the keepalive can tell. SIGSTOP ccgw (keepalive_s 5): the
 * broker drops it after 1.5 x keepalive and publishes the will. */
static void frozen_keepalive_will(void **state)
{
    h_gw_opts o = W.opts;
    o.keepalive_s = 5;
    char path[PATH_MAX];
    H_ASSERT(h_gw_write_config(W.env, "ccgw-frozen.yaml", &o, path, sizeof path) == 0, "config");
    size_t mark = h_mqtt_mark(W.sub);
    int64_t t_start = h_now_ms();
    W.gw = h_gw_start(W.env, path);
    H_ASSERT(W.gw != NULL, "start ccgw");
    const h_msg *on = H_EXPECT(W.sub, mark, T_STATUS, "{\"online\":true}", h_left_ms(t_start, 5000));
    char boot3[17];
    snprintf(boot3, sizeof boot3, "%s", h_json_str(on->json, "boot") ? h_json_str(on->json, "boot") : "");
    H_EXPECT(W.sub, mark, T_AC "/state", "{\"online\":true}", h_left_ms(t_start, 5000));

    size_t mark2 = h_mqtt_mark(W.sub);
    int64_t t_stop = h_now_ms();
    h_proc_signal(W.gw, SIGSTOP);
    /* mosquitto 2.0.11 checks keepalives coarsely: 1.5 x 5 s measured as 7.5..11 s */
    const h_msg *will = H_EXPECT(W.sub, mark2, T_STATUS, "{\"online\":false}", h_scaled(15000));
    int64_t took = will->t_ms - t_stop;
    h_log("last will %lld ms after SIGSTOP (keepalive 5 s): %s", (long long)took, will->payload);
    h_proc_signal(W.gw, SIGKILL);
    h_proc_wait(W.gw, h_scaled(2000), NULL);
    H_ASSERT(took >= 4000, "the will came %lld ms after the freeze: before the keepalive (5 s) could expire", (long long)took);
    H_ASSERT(h_json_str_is(will->json, "boot", boot3) && h_json_str_is(will->json, "reason", "connection lost"),
             "will: %s", will->payload);
    H_ASSERT(will->retain, "retained: %s", will->payload);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sigterm_graceful),
        cmocka_unit_test(kill9_last_will),
        cmocka_unit_test(frozen_keepalive_will),
    };
    int failed = cmocka_run_group_tests_name("integration.lifecycle", tests, group_setup, group_teardown);
    return h_finish(failed);
}
