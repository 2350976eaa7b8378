/*
 * offline: two simulators, one per device, on separate ports (so separate
 * Modbus links). Killing the hvac one must turn room1-ac1 offline (with a
 * reason) within 3 poll intervals (poll 500 ms: within 2 s, measured) while
 * room1-th1 keeps publishing telemetry with seq +1 all along; the instance
 * health turns degraded. Restarting the simulator on the same port brings
 * room1-ac1 back online, telemetry resumes with its seq continuing at +1,
 * and the instance health is ok again.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

static h_world W;

static int group_setup(void **state)
{
    h_gw_opts o = {.poll_ms = 500, .timeout_ms = 300, .retries = 1, .offline_after = 3};
    return h_world_start(&W, "offline", 2, &o);
}

static int group_teardown(void **state)
{
    h_world_stop(&W);
    return 0;
}

static json_int_t seq_of(const h_msg *m)
{
    return json_integer_value(json_object_get(m->json, "seq"));
}

/* every env telemetry message with index >= from has seq +1 over the one before */
static size_t check_env_seq(size_t from, const h_msg *prev_in)
{
    const h_msg *all[256];
    size_t n = h_mqtt_collect(W.sub, from, T_TH "/telemetry", NULL, NULL, all, 256);
    H_ASSERT(n <= 256, "too many messages");
    const h_msg *prev = prev_in;
    for (size_t i = 0; i < n; i++) {
        if (prev)
            H_ASSERT(seq_of(all[i]) == seq_of(prev) + 1,
                     "room1-th1 telemetry seq %lld after %lld while room1-ac1 was away: %s",
                     (long long)seq_of(all[i]), (long long)seq_of(prev), all[i]->payload);
        prev = all[i];
    }
    return n;
}

static void offline_and_back(void **state)
{
    /* both online, data flowing */
    H_EXPECT(W.sub, 0, T_AC "/state", "{\"online\":true}", h_left_ms(W.t_gw_start, 5000));
    H_EXPECT(W.sub, 0, T_TH "/state", "{\"online\":true}", h_left_ms(W.t_gw_start, 5000));
    H_EXPECT(W.sub, 0, T_INSTANCE, "{\"state\":\"running\",\"health\":\"ok\"}", h_left_ms(W.t_gw_start, 5000));
    H_EXPECT(W.sub, 0, T_AC "/telemetry", "{}", h_scaled(3000));
    const h_msg *th1 = H_EXPECT(W.sub, 0, T_TH "/telemetry", "{}", h_scaled(3000));
    H_EXPECT(W.sub, th1->index + 1, T_TH "/telemetry", "{}", h_scaled(2000));

    /* ---- kill the hvac simulator */
    size_t mark = h_mqtt_mark(W.sub);
    const h_msg *th_last[256];
    size_t nth = h_mqtt_collect(W.sub, 0, T_TH "/telemetry", NULL, NULL, th_last, 256);
    const h_msg *th_prev = nth > 0 && nth <= 256 ? th_last[nth - 1] : NULL;
    int64_t t_kill = h_now_ms();
    char st[64];
    int s = h_sim_stop(W.sim);
    h_log("hvac simulator stopped: %s", h_status_str(s, st, sizeof st));

    const h_msg *off = H_EXPECT(W.sub, mark, T_AC "/state", "{\"online\":false}", h_scaled(4000));
    int64_t took = off->t_ms - t_kill;
    h_log("room1-ac1 offline %lld ms after the simulator stopped: %s", (long long)took, off->payload);
    H_ASSERT(took <= h_scaled(2000), "room1-ac1 went offline %lld ms after its simulator stopped "
                                     "(poll 500 ms, offline_after 3: at most 2000 ms)", (long long)took);
    H_ASSERT(off->retain, "state is retained: %s", off->payload);
    const char *reason = h_json_str(off->json, "reason");
    H_ASSERT(reason && *reason, "an offline state carries a non-empty reason: %s", off->payload);
    char why[512];
    H_ASSERT(h_envelope_ok(off->json, "hq", "hvac", "room1-ac1", "equipment-room", NULL, why, sizeof why), "%s: %s",
             why, off->payload);
    H_EXPECT(W.sub, mark, T_INSTANCE, "{\"state\":\"running\",\"health\":\"degraded\"}", h_scaled(3000));

    /* room1-th1 keeps publishing while room1-ac1 is away: three more after the offline state */
    const h_msg *m = off;
    for (int i = 0; i < 3; i++)
        m = H_EXPECT(W.sub, m->index + 1, T_TH "/telemetry", "{}", h_scaled(1500));
    size_t n_env = check_env_seq(mark, th_prev);
    H_ASSERT(n_env >= 4, "only %zu room1-th1 telemetry messages during the outage", n_env);
    /* room1-th1 stayed online */
    const h_msg *th_off = h_mqtt_wait_match(W.sub, mark, T_TH "/state", "{\"online\":false}", 0);
    H_ASSERT(th_off == NULL, "room1-th1 went offline with room1-ac1's simulator: %s", th_off ? th_off->payload : "");
    /* and no telemetry from the offline device */
    size_t stray = h_mqtt_collect(W.sub, off->index + 1, T_AC "/telemetry", NULL, NULL, NULL, 0);
    H_ASSERT(stray == 0, "%zu room1-ac1 telemetry messages after it went offline", stray);
    H_ASSERT(h_proc_alive(W.gw), "ccgw exited");

    /* ---- restart it on the same port */
    size_t mark2 = h_mqtt_mark(W.sub);
    const h_msg *ac_last[512];
    size_t nac = h_mqtt_collect(W.sub, 0, T_AC "/telemetry", NULL, NULL, ac_last, 512);
    H_ASSERT(nac >= 1 && nac <= 512, "room1-ac1 telemetry count before the restart: %zu", nac);
    H_ASSERT(h_sim_restart(W.sim) == 0, "restart the simulator on port %d", W.sim->port);
    int64_t t_back = h_now_ms();
    const h_msg *on = H_EXPECT(W.sub, mark2, T_AC "/state", "{\"online\":true}", h_scaled(4000));
    h_log("room1-ac1 online %lld ms after the simulator restarted", (long long)(on->t_ms - t_back));
    H_ASSERT(json_object_get(on->json, "reason") == NULL || json_is_null(json_object_get(on->json, "reason")),
             "an online state has no reason: %s", on->payload);
    H_ASSERT(json_integer_value(json_object_get(on->json, "seq")) > seq_of(off), "state seq must grow: %s then %s",
             off->payload, on->payload);
    const h_msg *ac_again = H_EXPECT(W.sub, mark2, T_AC "/telemetry", "{}", h_scaled(2000));
    H_ASSERT(seq_of(ac_again) == seq_of(ac_last[nac - 1]) + 1,
             "room1-ac1 telemetry seq %lld after %lld: no message was lost, the seq must continue at +1",
             (long long)seq_of(ac_again), (long long)seq_of(ac_last[nac - 1]));
    H_EXPECT(W.sub, mark2, T_INSTANCE, "{\"state\":\"running\",\"health\":\"ok\"}", h_scaled(3000));
    check_env_seq(mark, th_prev);
    H_ASSERT(h_proc_alive(W.gw), "ccgw exited");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(offline_and_back),
    };
    int failed = cmocka_run_group_tests_name("integration.offline", tests, group_setup, group_teardown);
    return h_finish(failed);
}
