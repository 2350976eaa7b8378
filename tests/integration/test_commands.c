/*
 * commands: MQTT commands through ccgw to the Modbus simulator and back.
 *
 *  - write setpoint.cooling with a v5 Response Topic + Correlation Data: the
 *    reply goes there with the same correlation data, ok:true, and the next
 *    poll reads the new value back;
 *  - without a response topic the reply goes to <command topic>/reply;
 *  - errors: out of range, unknown point, missing / mistyped arguments,
 *    malformed JSON, not an object -> bad_arguments; unknown command ->
 *    unknown_command; unknown device (or wrong class) -> unknown_device;
 *  - the aliases hvac.stop / hvac.start change `running` in the state;
 *  - a device that stops answering (simulator SIGSTOPped): 16 writes wait in
 *    the link's job queue, the ones beyond it are answered `busy` at once,
 *    and every write gets exactly one reply;
 *  - exactly one reply per command, and the gateway keeps running.
 */
#include "harness.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static h_world W;
static h_mqtt *P; /* publisher; subscribed to it/replies/# */
static char g_boot[17];
static int g_sent_rt;      /* commands sent with a response topic */
static int g_sent_default; /* commands sent without one, on room1-ac1 cmd/write */

static int group_setup(void **state)
{
    h_gw_opts o = {.poll_ms = 500};
    if (h_world_start(&W, "commands", 1, &o) != 0)
        return -1;
    P = h_mqtt_new(W.broker->port, "cmd");
    if (!P || h_mqtt_sub(P, "it/replies/#", 1) != 0)
        return -1;
    /* commands go to a device the gateway has reached */
    const h_msg *m = h_mqtt_wait_match(W.sub, 0, T_AC "/state", "{\"online\":true}", h_left_ms(W.t_gw_start, 5000));
    if (!m) {
        h_mqtt_dump(W.sub, 0, H_PREFIX "/#", 20);
        h_env_dump_logs(W.env, 40);
        return -1;
    }
    snprintf(g_boot, sizeof g_boot, "%s", h_json_str(m->json, "boot") ? h_json_str(m->json, "boot") : "");
    return 0;
}

static int group_teardown(void **state)
{
    h_mqtt_free(P);
    P = NULL;
    h_world_stop(&W);
    return 0;
}

typedef struct corr_pred {
    const void *data;
    int len;
} corr_pred;

static bool same_corr(const h_msg *m, const void *ud)
{
    const corr_pred *c = ud;
    return m->corr && m->corr_len == c->len && memcmp(m->corr, c->data, (size_t)c->len) == 0;
}

/* Sends a command with response topic it/replies/<tag> and correlation data
 * "corr-<tag>" and returns its reply (fails the test when none in 3 s). */
static const h_msg *command_rt(const char *topic, const char *payload, int len, const char *tag)
{
    char rt[128], corr[128];
    snprintf(rt, sizeof rt, "it/replies/%s", tag);
    int clen = snprintf(corr, sizeof corr, "corr-%s", tag);
    size_t from = h_mqtt_mark(P);
    int rc = h_mqtt_pub(P, topic, payload, len < 0 ? (int)strlen(payload) : len, 1, false, rt, corr, clen);
    H_ASSERT(rc == 0, "publish %s", topic);
    g_sent_rt++;
    corr_pred cp = {corr, clen};
    const h_msg *r = H_EXPECT_PRED(P, from, rt, same_corr, &cp, "correlation data matches", h_scaled(3000));
    H_ASSERT(r->json && json_is_object(r->json), "reply is not a JSON object: %s", r->payload);
    const char *cmd = strrchr(topic, '/') + 1;
    H_ASSERT(h_json_str_is(r->json, "command", cmd), "reply \"command\" must be \"%s\": %s", cmd, r->payload);
    H_ASSERT(h_ts_valid(h_json_str(r->json, "ts"), 120), "ts: %s", r->payload);
    H_ASSERT(!r->retain, "a reply is not retained: %s", r->payload);
    return r;
}

static void expect_ok(const h_msg *r)
{
    char why[512];
    H_ASSERT(json_is_true(json_object_get(r->json, "ok")), "expected ok:true: %s", r->payload);
    H_ASSERT(json_object_get(r->json, "error") == NULL, "ok reply with an error: %s", r->payload);
    H_ASSERT(h_envelope_ok(r->json, "hq", "hvac", "room1-ac1", "equipment-room", g_boot, why, sizeof why),
             "%s: %s", why, r->payload);
}

static void expect_error(const h_msg *r, const char *code)
{
    H_ASSERT(json_is_false(json_object_get(r->json, "ok")), "expected ok:false: %s", r->payload);
    json_t *e = json_object_get(r->json, "error");
    H_ASSERT(json_is_object(e), "no error object: %s", r->payload);
    H_ASSERT(h_json_str_is(e, "code", code), "error.code must be \"%s\": %s", code, r->payload);
    const char *msg = h_json_str(e, "message");
    H_ASSERT(msg && *msg, "error.message must be a non-empty string: %s", r->payload);
    H_ASSERT(json_object_get(r->json, "data") == NULL, "error reply with data: %s", r->payload);
}

typedef struct value_pred {
    const char *name;
    double want;
} value_pred;

static bool telemetry_value_is(const h_msg *m, const void *ud)
{
    const value_pred *v = ud;
    json_t *x = h_json_get(m->json, "values", v->name, NULL);
    return json_is_number(x) && fabs(json_number_value(x) - v->want) < 1e-6;
}

/* holding register 0 of unit 1 (setpoint.cooling, int16 x0.1), read
 * straight from the simulator */
static void expect_register(int raw)
{
    uint16_t reg = 0;
    H_ASSERT(h_modbus_read_holding(W.sim->port, 1, 0, 1, &reg) == 0, "read the simulator's register");
    H_ASSERT((int)(int16_t)reg == raw, "the simulator holds setpoint register %d, expected %d",
             (int)(int16_t)reg, raw);
}

static void expect_readback(size_t from, double want)
{
    value_pred vp = {"setpoint.cooling", want};
    char what[96];
    snprintf(what, sizeof what, "values.setpoint.cooling == %g", want);
    /* the write is applied before the reply; the next poll (500 ms) reads it */
    H_EXPECT_PRED(W.sub, from, T_AC "/telemetry", telemetry_value_is, &vp, what, h_scaled(2500));
}

/* ---- tests ---------------------------------------------------------------- */

static void write_with_response_topic(void **state)
{
    /* binary correlation data with a NUL and a high byte must round-trip */
    static const unsigned char corr[] = {'r', 'e', 'q', 0x00, '4', '2', 0xff};
    static const char payload[] = "{\"point\":\"setpoint.cooling\",\"value\":23.5}";
    size_t from = h_mqtt_mark(P);
    int rc = h_mqtt_pub(P, T_AC "/cmd/write", payload, (int)strlen(payload), 1, false, "it/replies/42", corr,
                        (int)sizeof corr);
    H_ASSERT(rc == 0, "publish");
    g_sent_rt++;
    corr_pred cp = {corr, (int)sizeof corr};
    const h_msg *r =
        H_EXPECT_PRED(P, from, "it/replies/42", same_corr, &cp, "correlation data matches", h_scaled(3000));
    size_t after = h_mqtt_mark(W.sub);
    expect_ok(r);
    H_ASSERT(h_json_str_is(r->json, "command", "write"), "command: %s", r->payload);
    json_t *data = json_object_get(r->json, "data");
    H_ASSERT(json_is_object(data), "ok reply has a data object: %s", r->payload);
    H_ASSERT(h_json_str_is(data, "point", "setpoint.cooling"), "data.point: %s", r->payload);
    double v = 0;
    H_ASSERT(h_json_num(data, "value", &v) && fabs(v - 23.5) < 1e-9, "data.value must be 23.5: %s", r->payload);
    /* the device has it (before the reply: the write is done when ok is sent) */
    expect_register(235);
    /* and the gateway reads it back */
    expect_readback(after, 23.5);
}

static void write_default_reply_topic(void **state)
{
    static const char payload[] = "{\"point\":\"setpoint.cooling\",\"value\":24.5}";
    size_t from = h_mqtt_mark(W.sub);
    H_ASSERT(h_mqtt_pub(P, T_AC "/cmd/write", payload, (int)strlen(payload), 1, false, NULL, NULL, 0) == 0,
             "publish");
    g_sent_default++;
    const h_msg *r = H_EXPECT(W.sub, from, T_AC "/cmd/write/reply", "{\"command\":\"write\"}", h_scaled(3000));
    expect_ok(r);
    H_ASSERT(r->corr == NULL, "no correlation data was sent, got %d bytes back", r->corr_len);
    H_ASSERT(h_json_str_is(json_object_get(r->json, "data"), "point", "setpoint.cooling"), "data: %s", r->payload);
    expect_register(245);
    expect_readback(r->index + 1, 24.5);
}

typedef struct bad_case {
    const char *tag;
    const char *topic;
    const char *payload;
    const char *code;
} bad_case;

static void errors(void **state)
{
    static const bad_case cases[] = {
        {"range-high", T_AC "/cmd/write", "{\"point\":\"setpoint.cooling\",\"value\":40}", "bad_arguments"},
        {"range-low", T_AC "/cmd/write", "{\"point\":\"setpoint.cooling\",\"value\":15.9}", "bad_arguments"},
        {"unknown-point", T_AC "/cmd/write", "{\"point\":\"no.such.point\",\"value\":1}", "bad_arguments"},
        {"missing-all", T_AC "/cmd/write", "{}", "bad_arguments"},
        {"empty-payload", T_AC "/cmd/write", "", "bad_arguments"},
        {"missing-value", T_AC "/cmd/write", "{\"point\":\"setpoint.cooling\"}", "bad_arguments"},
        {"mistyped-value", T_AC "/cmd/write", "{\"point\":\"setpoint.cooling\",\"value\":\"hot\"}", "bad_arguments"},
        {"unknown-arg", T_AC "/cmd/write", "{\"point\":\"setpoint.cooling\",\"value\":23,\"colour\":1}",
         "bad_arguments"},
        {"malformed", T_AC "/cmd/write", "{\"point\":", "bad_arguments"},
        {"not-object", T_AC "/cmd/write", "[1,2]", "bad_arguments"},
        {"alias-range", T_AC "/cmd/hvac.set_setpoint", "{\"value\":40}", "bad_arguments"},
        {"unknown-command", T_AC "/cmd/frobnicate", "{}", "unknown_command"},
        {"unknown-device", H_PREFIX "/hq/hvac/nope-1/cmd/write", "{\"point\":\"setpoint.cooling\",\"value\":23}",
         "unknown_device"},
        {"wrong-class", H_PREFIX "/hq/env/room1-ac1/cmd/write", "{\"point\":\"setpoint.cooling\",\"value\":23}",
         "unknown_device"},
    };
    char violations[4096] = "";
    size_t vlen = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        h_log("command case %s: %s %s", c->tag, c->topic, c->payload);
        const h_msg *r = command_rt(c->topic, c->payload, -1, c->tag);
        expect_error(r, c->code);
        if (strcmp(c->code, "unknown_device") == 0) {
            H_ASSERT(json_object_get(r->json, "instance") == NULL && json_object_get(r->json, "seq") == NULL,
                     "an unknown_device reply has no instance/seq (docs/topics.md): %s", r->payload);
        } else {
            /* the device exists: its reply carries the whole envelope, seq
             * included (docs/topics.md exempts only unknown_device); all
             * cases run, violations are reported together below */
            char why[512];
            if (!h_envelope_ok(r->json, "hq", "hvac", "room1-ac1", "equipment-room", g_boot, why, sizeof why) &&
                vlen < sizeof violations - 1)
                vlen += (size_t)snprintf(violations + vlen, sizeof violations - vlen, "\n  case %s: %s: %s",
                                         c->tag, why, r->payload);
        }
        H_ASSERT(h_proc_alive(W.gw), "ccgw died after case %s", c->tag);
    }
    H_ASSERT(vlen == 0, "error replies of an existing device without the full envelope:%s", violations);
    /* nothing was written: the setpoint is still 24.5 */
    expect_register(245);
    expect_readback(h_mqtt_mark(W.sub), 24.5);
}

static void read_only_point(void **state)
{
    /* supply_air.temperature is not writable: refused before any Modbus write */
    const h_msg *r = command_rt(T_AC "/cmd/write", "{\"point\":\"supply_air.temperature\",\"value\":20}", -1,
                                "read-only");
    H_ASSERT(json_is_false(json_object_get(r->json, "ok")), "writing a read-only point must fail: %s", r->payload);
    const char *code = h_json_str(json_object_get(r->json, "error"), "code");
    H_ASSERT(code && (strcmp(code, "bad_arguments") == 0 || strcmp(code, "device_error") == 0),
             "error.code: %s", r->payload);
}

static void aliases_stop_start(void **state)
{
    size_t from = h_mqtt_mark(W.sub);
    const h_msg *r = command_rt(T_AC "/cmd/hvac.stop", "{}", -1, "stop");
    expect_ok(r);
    H_EXPECT(W.sub, from, T_AC "/state", "{\"online\":true,\"running\":false}", h_scaled(2500));

    from = h_mqtt_mark(W.sub);
    r = command_rt(T_AC "/cmd/hvac.start", "", 0, "start");
    expect_ok(r);
    H_EXPECT(W.sub, from, T_AC "/state", "{\"online\":true,\"running\":true}", h_scaled(2500));

    from = h_mqtt_mark(W.sub);
    r = command_rt(T_AC "/cmd/hvac.set_setpoint", "{\"value\":22}", -1, "set-setpoint");
    expect_ok(r);
    expect_readback(from, 22.0);
}

static bool reply_of_ac1_with_seq(const h_msg *m, const void *ud)
{
    return m->json && h_json_str_is(m->json, "device", "room1-ac1") && h_json_str_is(m->json, "class", "hvac") &&
           json_object_get(m->json, "seq") != NULL;
}

static int cmp_int(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static bool error_code_is(const h_msg *m, const void *ud)
{
    json_t *e = m->json ? json_object_get(m->json, "error") : NULL;
    return e && h_json_str_is(e, "code", ud);
}

/* MB_WRITE_QUEUE_LEN (16) writes wait, one is in flight; of 40 sent at once
 * some are answered busy (up to 23; fewer when the worker gave up on a
 * write, 2 x 300 ms, while the burst was still arriving on a slow machine) */
static void busy_when_the_write_queue_is_full(void **state)
{
    (void)state;
    enum { N = 40 };
    size_t from = h_mqtt_mark(P);
    h_proc_signal(W.sim->proc, SIGSTOP);
    for (int i = 0; i < N; i++) {
        char payload[96], corr[32];
        snprintf(payload, sizeof payload, "{\"point\":\"setpoint.cooling\",\"value\":%d}", 20 + i % 5);
        int clen = snprintf(corr, sizeof corr, "busy-%d", i);
        H_ASSERT(h_mqtt_pub(P, T_AC "/cmd/write", payload, (int)strlen(payload), 1, false, "it/replies/busy", corr,
                            clen) == 0,
                 "publish %d", i);
        g_sent_rt++;
    }
    const h_msg *busy[N];
    H_EXPECT_PRED(P, from, "it/replies/busy", error_code_is, "busy", "a busy reply", h_scaled(3000));
    h_sleep_ms(200);
    size_t nb = h_mqtt_collect(P, from, "it/replies/busy", error_code_is, "busy", busy, N);
    h_proc_signal(W.sim->proc, SIGCONT);
    h_log("%zu of %d writes answered busy while the device was stopped", nb, N);
    H_ASSERT(nb >= 1 && nb <= N - 17, "busy replies: %zu (expected 1..%d)", nb, N - 17);
    H_ASSERT(strstr(busy[0]->payload, "writes already pending"), "busy message: %s", busy[0]->payload);
    /* the queued ones complete (ok, or a timeout for the one cut off), one reply each */
    int64_t t0 = h_now_ms();
    size_t all = 0;
    while ((all = h_mqtt_collect(P, from, "it/replies/busy", NULL, NULL, NULL, 0)) < N && h_now_ms() - t0 < h_scaled(15000))
        h_sleep_ms(100);
    H_ASSERT(all == N, "%zu replies for %d writes", all, N);
    /* and the device is polled again */
    H_EXPECT(W.sub, h_mqtt_mark(W.sub), T_AC "/telemetry", "{}", h_scaled(3000));
}

static void one_reply_each_and_still_running(void **state)
{
    /* let any duplicate arrive behind one more round trip */
    const h_msg *r = command_rt(T_AC "/cmd/frobnicate", "{}", -1, "final");
    expect_error(r, "unknown_command");
    size_t n_rt = h_mqtt_collect(P, 0, "it/replies/#", NULL, NULL, NULL, 0);
    H_ASSERT((int)n_rt == g_sent_rt, "%zu replies on response topics for %d commands", n_rt, g_sent_rt);
    size_t n_def = h_mqtt_collect(W.sub, 0, H_PREFIX "/+/+/+/cmd/+/reply", NULL, NULL, NULL, 0);
    H_ASSERT((int)n_def == g_sent_default, "%zu replies on <cmd>/reply for %d commands without response topic",
             n_def, g_sent_default);
    /* reply seq of room1-ac1: 1..N, no gap, no duplicate (both clients' replies together) */
    const h_msg *a[128], *b[128];
    size_t na = h_mqtt_collect(P, 0, "it/replies/#", reply_of_ac1_with_seq, NULL, a, 128);
    size_t nb = h_mqtt_collect(W.sub, 0, H_PREFIX "/+/+/+/cmd/+/reply", reply_of_ac1_with_seq, NULL, b, 128);
    H_ASSERT(na <= 128 && nb <= 128 && na + nb > 0, "replies: %zu + %zu", na, nb);
    long long seqs[256];
    size_t ns = 0;
    for (size_t i = 0; i < na; i++)
        seqs[ns++] = (long long)json_integer_value(json_object_get(a[i]->json, "seq"));
    for (size_t i = 0; i < nb; i++)
        seqs[ns++] = (long long)json_integer_value(json_object_get(b[i]->json, "seq"));
    qsort(seqs, ns, sizeof seqs[0], cmp_int);
    for (size_t i = 0; i < ns; i++)
        H_ASSERT(seqs[i] == (long long)i + 1, "room1-ac1 reply seqs sorted: #%zu is %lld, expected %zu (gap or duplicate)",
                 i, seqs[i], i + 1);

    H_ASSERT(h_proc_alive(W.gw), "ccgw exited");
    size_t n_off = h_mqtt_collect(W.sub, 0, T_STATUS, NULL, NULL, NULL, 0);
    const h_msg *st[16];
    h_mqtt_collect(W.sub, 0, T_STATUS, NULL, NULL, st, 16);
    for (size_t i = 0; i < n_off && i < 16; i++)
        H_ASSERT(json_is_true(json_object_get(st[i]->json, "online")), "gateway status went offline: %s",
                 st[i]->payload);
    /* and it still polls */
    H_EXPECT(W.sub, h_mqtt_mark(W.sub), T_TH "/telemetry", "{}", h_scaled(2000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(write_with_response_topic),
        cmocka_unit_test(write_default_reply_topic),
        cmocka_unit_test(errors),
        cmocka_unit_test(read_only_point),
        cmocka_unit_test(aliases_stop_start),
        cmocka_unit_test(busy_when_the_write_queue_is_full),
        cmocka_unit_test(one_reply_each_and_still_running),
    };
    int failed = cmocka_run_group_tests_name("integration.commands", tests, group_setup, group_teardown);
    return h_finish(failed);
}
