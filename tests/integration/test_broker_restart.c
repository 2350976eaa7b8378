/*
 * broker_restart: the broker goes away (its persistence is off, so it forgets
 * every retained message) and comes back on the same port. ccgw must keep
 * running, reconnect, and republish every retained topic: a fresh subscriber
 * gets the gateway status (online, same boot), both device states and the
 * instance topic; telemetry resumes. While the broker was away the hvac unit
 * was stopped behind the gateway's back (a direct Modbus write to the
 * simulator): the republished state is the latest one (running:false), not
 * the one from before the outage.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

static h_world W;

static int group_setup(void **state)
{
    /* reconnect backoff capped at 1 s: the republish is seen quickly */
    h_gw_opts o = {.poll_ms = 500, .reconnect_max_ms = 1000};
    return h_world_start(&W, "broker_restart", 1, &o);
}

static int group_teardown(void **state)
{
    h_world_stop(&W);
    return 0;
}

static void restart_broker(void **state)
{
    const h_msg *st = H_EXPECT(W.sub, 0, T_STATUS, "{\"online\":true}", h_left_ms(W.t_gw_start, 5000));
    char boot[17];
    snprintf(boot, sizeof boot, "%s", h_json_str(st->json, "boot") ? h_json_str(st->json, "boot") : "");
    const h_msg *ac = H_EXPECT(W.sub, 0, T_AC "/state", "{\"online\":true,\"running\":true}",
                               h_left_ms(W.t_gw_start, 5000));
    json_int_t ac_seq = json_integer_value(json_object_get(ac->json, "seq"));
    H_EXPECT(W.sub, 0, T_TH "/state", "{\"online\":true}", h_left_ms(W.t_gw_start, 5000));
    const h_msg *tel = H_EXPECT(W.sub, 0, T_TH "/telemetry", "{}", h_scaled(3000));
    json_int_t tel_seq_before = json_integer_value(json_object_get(tel->json, "seq"));

    /* ---- the broker goes away */
    h_mqtt_free(W.sub);
    W.sub = NULL;
    h_broker_stop(W.broker);
    H_ASSERT(!h_port_open(W.broker->port), "port %d still open", W.broker->port);
    /* behind the gateway's back: stop the air conditioner (coil 0 of unit 1) */
    H_ASSERT(h_modbus_write_coil(W.sim->port, 1, 0, false) == 0, "direct Modbus write to the simulator");
    /* an outage of several poll intervals: ccgw polls and queues meanwhile */
    h_sleep_ms(2000);
    H_ASSERT(h_proc_alive(W.gw), "ccgw exited while the broker was away");

    /* ---- and comes back, empty, on the same port */
    int port = W.broker->port;
    H_ASSERT(h_broker_restart(W.broker) == 0, "restart mosquitto on port %d", port);
    H_ASSERT(W.broker->port == port, "same port");
    int64_t t_back = h_now_ms();
    h_mqtt *fresh = h_mqtt_new(port, "fresh");
    H_ASSERT(fresh != NULL, "connect to the restarted broker");
    H_ASSERT(h_mqtt_sub(fresh, H_PREFIX "/#", 1) == 0, "subscribe");

    /* ccgw reconnects with backoff; give it 10 s */
    char pat[128];
    snprintf(pat, sizeof pat, "{\"online\":true,\"boot\":\"%s\"}", boot);
    const h_msg *st2 = H_EXPECT(fresh, 0, T_STATUS, pat, h_scaled(10000));
    h_log("gateway status back %lld ms after the broker restarted", (long long)(st2->t_ms - t_back));
    H_ASSERT(st2->retain, "republished status must be retained: %s", st2->payload);

    const h_msg *ac2 = H_EXPECT(fresh, 0, T_AC "/state", "{\"online\":true,\"running\":false}", h_scaled(3000));
    H_ASSERT(ac2->retain, "state: %s", ac2->payload);
    H_ASSERT(h_json_str_is(ac2->json, "boot", boot), "same run, same boot %s: %s", boot, ac2->payload);
    H_ASSERT(json_integer_value(json_object_get(ac2->json, "seq")) > ac_seq,
             "the latest state (seq > %lld) must be on the broker: %s", (long long)ac_seq, ac2->payload);
    const h_msg *th2 = H_EXPECT(fresh, 0, T_TH "/state", "{\"online\":true}", h_scaled(3000));
    H_ASSERT(th2->retain, "state: %s", th2->payload);
    const h_msg *in2 = H_EXPECT(fresh, 0, T_INSTANCE, "{\"state\":\"running\"}", h_scaled(3000));
    H_ASSERT(in2->retain, "instance: %s", in2->payload);

    /* no state on the broker goes back in time: no running:true after the
     * republished running:false (the coil stays off) */
    const h_msg *back = h_mqtt_wait_match(fresh, ac2->index + 1, T_AC "/state", "{\"running\":true}", 0);
    H_ASSERT(back == NULL, "an older state was published after the latest: %s", back ? back->payload : "");

    /* telemetry resumes, same boot, seq moving on */
    const h_msg *t2 = H_EXPECT(fresh, 0, T_TH "/telemetry", "{}", h_scaled(3000));
    H_ASSERT(h_json_str_is(t2->json, "boot", boot), "boot: %s", t2->payload);
    H_ASSERT(json_integer_value(json_object_get(t2->json, "seq")) > tel_seq_before, "seq: %s", t2->payload);
    const h_msg *t3 = H_EXPECT(fresh, t2->index + 1, T_TH "/telemetry", "{}", h_scaled(2000));
    H_ASSERT(json_integer_value(json_object_get(t3->json, "seq")) ==
                 json_integer_value(json_object_get(t2->json, "seq")) + 1,
             "telemetry seq +1 after the reconnect: %s then %s", t2->payload, t3->payload);
    H_EXPECT(fresh, 0, T_AC "/telemetry", "{}", h_scaled(2000));

    /* commands work again */
    static const char corr[] = "after-restart";
    size_t from = h_mqtt_mark(fresh);
    H_ASSERT(h_mqtt_sub(fresh, "it/replies/#", 1) == 0, "subscribe");
    H_ASSERT(h_mqtt_pub(fresh, T_AC "/cmd/hvac.start", "{}", 2, 1, false, "it/replies/x", corr,
                        (int)sizeof corr - 1) == 0,
             "publish");
    H_EXPECT(fresh, from, "it/replies/x", "{\"ok\":true}", h_scaled(3000));
    H_EXPECT(fresh, from, T_AC "/state", "{\"online\":true,\"running\":true}", h_scaled(3000));

    H_ASSERT(h_proc_alive(W.gw), "ccgw exited");
    h_mqtt_free(fresh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(restart_broker),
    };
    int failed = cmocka_run_group_tests_name("integration.broker_restart", tests, group_setup, group_teardown);
    return h_finish(failed);
}
