/*
 * isapi_door: the isapi-door plugin against tools/sim/isapi_sim.c (two
 * simulated Hikvision terminals), a real mosquitto and the real daemon.
 *
 *  - lobby-1 (sim A, right password) comes online;
 *  - an injected face-verify-pass event arrives as event/access.granted
 *    with person_id, name and method;
 *  - door.unlock without reason -> bad_arguments; with a reason -> ok, then
 *    event/door.opened and state door:open, later door.closed;
 *  - door.mode always_open -> state mode always_open, back to normal;
 *  - a ResponseStatus with statusCode 3 -> device_error with subStatusCode;
 *  - door forced: event, alarm forced raised; door closed: alarm cleared;
 *  - lobby-bad (sim A, wrong password) -> online:false, reason with 401;
 *  - the stream cut in the middle of a part -> reconnected, a later event
 *    arrives, and the events the terminal replays after the reconnect are
 *    not published twice (every event_id once);
 *  - lobby-2 (sim B, XML heartbeats): stream stalled -> online:false
 *    (heartbeat timeout), resumed -> online again; sim B killed ->
 *    online:false, connection refused.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef ISAPI_SIM_BIN
#error "ISAPI_SIM_BIN must be defined by the build"
#endif

#define T_L1 H_PREFIX "/hq/door/lobby-1"
#define T_BAD H_PREFIX "/hq/door/lobby-bad"
#define T_L2 H_PREFIX "/hq/door/lobby-2"

static h_env *E;
static h_broker *B;
static h_mqtt *S;
static h_proc *SIM_A, *SIM_B, *G;
static int PORT_A, PORT_B;
static size_t MARK_L1_ONLINE;

static int sim_port(h_proc *p)
{
    char line[256];
    if (!h_proc_wait_log(p, "LISTENING http ", h_scaled(5000), line, sizeof line))
        return -1;
    const char *colon = strrchr(line, ':');
    return colon ? atoi(colon + 1) : -1;
}

/* One HTTP/1.1 request to the simulator's hooks; the response body
 * (malloc'ed) or NULL. */
static char *http(int port, const char *method, const char *path, const char *body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char req[4096];
    size_t bl = body ? strlen(body) : 0;
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, bl, body ? body : "");
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    static char resp[65536];
    size_t got = 0;
    char *res = NULL;
    for (;;) {
        ssize_t r = read(fd, resp + got, sizeof resp - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        resp[got] = '\0';
        char *end = strstr(resp, "\r\n\r\n");
        if (!end)
            continue;
        const char *cl = strstr(resp, "Content-Length: ");
        size_t want = cl ? (size_t)atol(cl + 16) : 0;
        if (got >= (size_t)(end - resp) + 4 + want) {
            res = strndup(end + 4, want);
            break;
        }
    }
    close(fd);
    return res;
}

static long long inject(int port, const char *ace)
{
    char *r = http(port, "POST", "/sim/event", ace);
    json_t *j = r ? json_loads(r, 0, NULL) : NULL;
    long long sn = j ? (long long)json_integer_value(json_object_get(j, "serialNo")) : -1;
    json_decref(j);
    free(r);
    return sn;
}

static int streams_opened(int port)
{
    char *r = http(port, "GET", "/sim/state", NULL);
    json_t *j = r ? json_loads(r, 0, NULL) : NULL;
    int n = j ? (int)json_integer_value(json_object_get(j, "streams_opened")) : -1;
    json_decref(j);
    free(r);
    return n;
}

static void cmd(const char *dev_topic, const char *name, const char *args)
{
    char topic[256];
    snprintf(topic, sizeof topic, "%s/cmd/%s", dev_topic, name);
    H_ASSERT(h_mqtt_pub(S, topic, args, (int)strlen(args), 1, false, NULL, NULL, 0) == 0, "publish %s",
             topic);
}

static int setup(void **state)
{
    (void)state;
    E = h_env_new("isapi-door");
    h_current_env = E;
    const char *argv_a[] = {ISAPI_SIM_BIN, "--port", "0", "--user", "admin", "--password", "s3cret",
                            "--heartbeat-ms", "400", "--open-ms", "1500", "--replay", "3",
                            "--image-every", "2", NULL};
    const char *argv_b[] = {ISAPI_SIM_BIN, "--port", "0", "--user", "admin", "--password", "s3cret",
                            "--heartbeat-ms", "300", "--heartbeat-style", "xml", NULL};
    SIM_A = h_spawn(E, "isapi-sim-a", argv_a);
    SIM_B = h_spawn(E, "isapi-sim-b", argv_b);
    PORT_A = SIM_A ? sim_port(SIM_A) : -1;
    PORT_B = SIM_B ? sim_port(SIM_B) : -1;
    if (PORT_A <= 0 || PORT_B <= 0)
        return -1;
    if (h_broker_and_watcher(E, &B, &S) != 0)
        return -1;
    char pw[PATH_MAX];
    h_env_path(E, "bad-password", pw, sizeof pw);
    if (h_write_file(pw, "not-the-password") != 0)
        return -1;
    setenv("CCGW_IT_ISAPI_PASSWORD", "s3cret", 1);
    char yaml[4096], path[PATH_MAX];
    snprintf(yaml, sizeof yaml,
             "gateway: {site: hq, id: gw1, data_dir: data, plugin_dirs: [\"%s\"]}\n"
             "mqtt: {port: %d}\n"
             "instances:\n"
             "  - id: doors\n"
             "    plugin: isapi-door\n"
             "    options:\n"
             "      terminals:\n"
             "        - {id: lobby-1, host: 127.0.0.1, port: %d, username: admin,\n"
             "           password: !env CCGW_IT_ISAPI_PASSWORD, heartbeat_timeout_s: 3,\n"
             "           reconnect_min_ms: 100, reconnect_max_ms: 1000}\n"
             "        - {id: lobby-bad, host: 127.0.0.1, port: %d, username: admin,\n"
             "           password: !file bad-password, reconnect_min_ms: 500}\n"
             "        - {id: lobby-2, host: 127.0.0.1, port: %d, username: admin,\n"
             "           password: !env CCGW_IT_ISAPI_PASSWORD, heartbeat_timeout_s: 2,\n"
             "           reconnect_min_ms: 100, reconnect_max_ms: 500, timeout_ms: 1000}\n",
             CCGW_PLUGIN_DIR, B->port, PORT_A, PORT_A, PORT_B);
    G = h_gw_start_yaml(E, yaml, path, sizeof path, NULL);
    return G ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    h_proc *const peers[] = {SIM_A, SIM_B};
    h_rig_teardown(E, B, S, G, peers, 2);
    return 0;
}

static const char *GRANT_1 = "{\"majorEventType\":5,\"subEventType\":75,\"employeeNoString\":\"1024\","
                             "\"name\":\"\xe5\xbc\xa0\xe4\xb8\x89\",\"currentVerifyMode\":\"face\",\"doorNo\":1}";

static void online(void **state)
{
    (void)state;
    const h_msg *m = H_EXPECT(S, 0, T_L1 "/state", "{\"online\":true}", h_scaled(8000));
    char why[256];
    H_ASSERT(m->retain, "state retained");
    H_ASSERT(h_envelope_ok(m->json, "hq", "door", "lobby-1", "doors", NULL, why, sizeof why), "%s", why);
    MARK_L1_ONLINE = m->index + 1;
    H_EXPECT(S, 0, T_L2 "/state", "{\"online\":true}", h_scaled(8000));
}

static void access_granted(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    long long sn = inject(PORT_A, GRANT_1);
    H_ASSERT(sn > 0, "injected");
    char pat[512];
    snprintf(pat, sizeof pat,
             "{\"type\":\"access.granted\",\"data\":{\"person_id\":\"1024\",\"name\":\"\xe5\xbc\xa0\xe4\xb8\x89\","
             "\"method\":\"face\",\"event_id\":\"%lld\",\"door\":1}}", sn);
    const h_msg *m = H_EXPECT(S, mark, T_L1 "/event/access.granted", pat, h_scaled(3000));
    char why[256];
    H_ASSERT(!m->retain, "events are not retained");
    H_ASSERT(h_envelope_ok(m->json, "hq", "door", "lobby-1", "doors", NULL, why, sizeof why), "%s", why);
    /* a denied one, with the picture the sim attaches to every 2nd access event */
    mark = h_mqtt_mark(S);
    inject(PORT_A, "{\"majorEventType\":5,\"subEventType\":76,\"employeeNoString\":\"9\",\"name\":\"x\"}");
    H_EXPECT(S, mark, T_L1 "/event/access.denied", "{\"data\":{\"person_id\":\"9\",\"method\":\"face\"}}",
             h_scaled(3000));
}

static void unlock(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    cmd(T_L1, "door.unlock", "{\"duration_s\":5}");
    H_EXPECT(S, mark, T_L1 "/cmd/door.unlock/reply", "{\"ok\":false,\"error\":{\"code\":\"bad_arguments\"}}",
             h_scaled(3000));
    mark = h_mqtt_mark(S);
    cmd(T_L1, "door.unlock", "{\"reason\":\"integration test\",\"duration_s\":5}");
    H_EXPECT(S, mark, T_L1 "/cmd/door.unlock/reply",
             "{\"ok\":true,\"command\":\"door.unlock\",\"data\":{\"door\":1,\"duration_s\":5}}", h_scaled(3000));
    H_EXPECT(S, mark, T_L1 "/event/door.opened", "{\"type\":\"door.opened\"}", h_scaled(3000));
    H_EXPECT(S, mark, T_L1 "/state", "{\"online\":true,\"door\":\"open\",\"lock\":\"unlocked\"}", h_scaled(3000));
    /* the sim's door swings shut after 1.5 s */
    H_EXPECT(S, mark, T_L1 "/event/door.closed", "{\"type\":\"door.closed\"}", h_scaled(4000));
    H_EXPECT(S, mark, T_L1 "/state", "{\"door\":\"closed\",\"lock\":\"locked\"}", h_scaled(3000));
}

static void mode_and_device_error(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    cmd(T_L1, "door.mode", "{\"mode\":\"always_open\"}");
    H_EXPECT(S, mark, T_L1 "/cmd/door.mode/reply", "{\"ok\":true}", h_scaled(3000));
    H_EXPECT(S, mark, T_L1 "/state", "{\"mode\":\"always_open\"}", h_scaled(3000));
    mark = h_mqtt_mark(S);
    cmd(T_L1, "door.mode", "{\"mode\":\"normal\"}");
    H_EXPECT(S, mark, T_L1 "/cmd/door.mode/reply", "{\"ok\":true}", h_scaled(3000));
    H_EXPECT(S, mark, T_L1 "/state", "{\"mode\":\"normal\"}", h_scaled(3000));
    mark = h_mqtt_mark(S);
    cmd(T_L1, "door.mode", "{\"mode\":\"sideways\"}");
    H_EXPECT(S, mark, T_L1 "/cmd/door.mode/reply", "{\"ok\":false,\"error\":{\"code\":\"bad_arguments\"}}",
             h_scaled(3000));
    free(http(PORT_A, "POST", "/sim/fail-next", "doorLockFault"));
    mark = h_mqtt_mark(S);
    cmd(T_L1, "door.lock", "{}");
    const h_msg *m = H_EXPECT(S, mark, T_L1 "/cmd/door.lock/reply",
                              "{\"ok\":false,\"error\":{\"code\":\"device_error\"}}", h_scaled(3000));
    const char *msg = h_json_str(h_json_get(m->json, "error", NULL), "message");
    H_ASSERT(msg && strstr(msg, "doorLockFault") && strstr(msg, "statusCode 3"), "%s", m->payload);
}

static void wrong_password(void **state)
{
    (void)state;
    const h_msg *m = H_EXPECT(S, 0, T_BAD "/state", "{\"online\":false}", h_scaled(5000));
    for (int i = 0; i < 50 && !strstr(h_json_str(m->json, "reason") ? h_json_str(m->json, "reason") : "", "401"); i++)
        m = H_EXPECT(S, m->index + 1, T_BAD "/state", "{\"online\":false}", h_scaled(5000));
    const char *reason = h_json_str(m->json, "reason");
    H_ASSERT(reason && strstr(reason, "401"), "%s", m->payload);
    /* never online */
    const h_msg *on[1];
    H_ASSERT(h_mqtt_collect(S, 0, T_BAD "/state", NULL, NULL, on, 0) >= 1, "state published");
    H_ASSERT(!h_mqtt_wait_match(S, 0, T_BAD "/state", "{\"online\":true}", 10), "never online");
}

static bool is_empty(const h_msg *m, const void *ud)
{
    (void)ud;
    return m->len == 0;
}

static void forced_alarm(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    inject(PORT_A, "{\"majorEventType\":5,\"subEventType\":27,\"doorNo\":1}");
    H_EXPECT(S, mark, T_L1 "/event/door.forced", "{\"type\":\"door.forced\",\"data\":{\"door\":1}}",
             h_scaled(3000));
    const h_msg *a = H_EXPECT(S, mark, T_L1 "/alarm/forced", "{\"code\":\"forced\",\"severity\":\"critical\"}",
                              h_scaled(3000));
    H_ASSERT(a->retain, "alarm retained");
    H_EXPECT(S, mark, T_L1 "/state", "{\"door\":\"open\"}", h_scaled(3000));
    mark = h_mqtt_mark(S);
    inject(PORT_A, "{\"majorEventType\":5,\"subEventType\":26,\"doorNo\":1}");
    H_EXPECT(S, mark, T_L1 "/event/door.closed", "{}", h_scaled(3000));
    H_EXPECT(S, mark, T_L1 "/event/alarm.cleared", "{\"data\":{\"code\":\"forced\"}}", h_scaled(3000));
    H_EXPECT_PRED(S, mark, T_L1 "/alarm/forced", is_empty, NULL, "empty retained payload", h_scaled(3000));
    H_EXPECT(S, mark, T_L1 "/state", "{\"door\":\"closed\"}", h_scaled(3000));
}

/* the plugin's events (not the core's alarm.* events) */
static bool is_plugin_event(const h_msg *m, const void *ud)
{
    (void)ud;
    const char *type = m->json ? h_json_str(m->json, "type") : NULL;
    return type && strncmp(type, "alarm.", 6) != 0;
}

static void cut_and_no_duplicates(void **state)
{
    (void)state;
    int before = streams_opened(PORT_A);
    H_ASSERT(before >= 1, "sim state");
    size_t mark = h_mqtt_mark(S);
    long long sn2 = inject(PORT_A, "{\"majorEventType\":5,\"subEventType\":1,\"employeeNoString\":\"2048\","
                                   "\"name\":\"Li Si\",\"cardNo\":\"99\",\"currentVerifyMode\":\"card\"}");
    char pat[256];
    snprintf(pat, sizeof pat, "{\"data\":{\"person_id\":\"2048\",\"method\":\"card\",\"event_id\":\"%lld\"}}", sn2);
    H_EXPECT(S, mark, T_L1 "/event/access.granted", pat, h_scaled(3000));
    free(http(PORT_A, "POST", "/sim/image", ""));
    /* cut every stream in the middle of a part */
    char *r = http(PORT_A, "POST", "/sim/cut", "");
    H_ASSERT(r && strstr(r, "\"cut\":1"), "cut: %s", r ? r : "(null)");
    free(r);
    int64_t t0 = h_now_ms();
    while (streams_opened(PORT_A) <= before && h_now_ms() - t0 < h_scaled(5000))
        h_sleep_ms(50);
    H_ASSERT(streams_opened(PORT_A) > before, "the plugin reconnected");
    h_sleep_ms(300); /* the replayed events are in */
    mark = h_mqtt_mark(S);
    long long sn3 = inject(PORT_A, GRANT_1);
    snprintf(pat, sizeof pat, "{\"data\":{\"event_id\":\"%lld\"}}", sn3);
    H_EXPECT(S, mark, T_L1 "/event/access.granted", pat, h_scaled(3000));
    /* every event of lobby-1 published once, whatever the terminal replayed */
    static const h_msg *all[512];
    size_t n = h_mqtt_collect(S, 0, T_L1 "/event/+", is_plugin_event, NULL, all, 512);
    H_ASSERT(n > 5 && n < 512, "%zu events", n);
    for (size_t i = 0; i < n; i++) {
        const char *id = h_json_str(h_json_get(all[i]->json, "data", NULL), "event_id");
        H_ASSERT(id, "event_id in %s", all[i]->payload);
        for (size_t k = 0; k < i; k++) {
            const char *id2 = h_json_str(h_json_get(all[k]->json, "data", NULL), "event_id");
            H_ASSERT(strcmp(id, id2) != 0, "event_id %s published twice: %s / %s", id, all[k]->payload,
                     all[i]->payload);
        }
    }
    /* the device did not go offline for a cut it recovered from at once */
    H_ASSERT(!h_mqtt_wait_match(S, MARK_L1_ONLINE, T_L1 "/state", "{\"online\":false}", 10),
             "lobby-1 stayed online");
}

static void heartbeat_timeout(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    free(http(PORT_B, "POST", "/sim/stall", ""));
    const h_msg *m = H_EXPECT(S, mark, T_L2 "/state", "{\"online\":false}", h_scaled(6000));
    const char *reason = h_json_str(m->json, "reason");
    H_ASSERT(reason && strstr(reason, "heartbeat"), "%s", m->payload);
    mark = h_mqtt_mark(S);
    free(http(PORT_B, "POST", "/sim/resume", ""));
    H_EXPECT(S, mark, T_L2 "/state", "{\"online\":true}", h_scaled(5000));
    /* the simulator killed: connection refused */
    mark = h_mqtt_mark(S);
    h_proc_stop(SIM_B, 3000);
    m = H_EXPECT(S, mark, T_L2 "/state", "{\"online\":false}", h_scaled(5000));
    for (int i = 0; i < 20 && !strstr(h_json_str(m->json, "reason") ? h_json_str(m->json, "reason") : "", "refused"); i++)
        m = H_EXPECT(S, m->index + 1, T_L2 "/state", "{\"online\":false}", h_scaled(5000));
    H_ASSERT(strstr(h_json_str(m->json, "reason"), "connection refused"), "%s", m->payload);
    /* lobby-1 untouched */
    H_EXPECT(S, 0, H_PREFIX "/hq/gateway/gw1/instance/doors", "{\"health\":\"degraded\"}", h_scaled(2000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(online),
        cmocka_unit_test(access_granted),
        cmocka_unit_test(unlock),
        cmocka_unit_test(mode_and_device_error),
        cmocka_unit_test(wrong_password),
        cmocka_unit_test(forced_alarm),
        cmocka_unit_test(cut_and_no_duplicates),
        cmocka_unit_test(heartbeat_timeout),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    return h_finish(failed);
}
