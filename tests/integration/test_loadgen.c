/*
 * loadgen: the load generator plugin through the real daemon and broker.
 *  - --describe-plugin lists its options; --check-config rejects a bad
 *    id_prefix and an all-zero kind mix with FILE:LINE:COL errors;
 *  - 5 devices, 200 msg/s for 1 s, telemetry and events half and half,
 *    payload_bytes 400: every device goes online, every message carries
 *    t_ns (and a pad), per-device seq has no gap, the count at the broker is
 *    what loadgen reports in its health reason ("finished: emitted N"), and
 *    the payload size is about what was asked.
 *  - QoS 0 has an in-flight window of its own: with mqtt.max_inflight 10
 *    and the broker frozen (SIGSTOP), QoS 0 telemetry fills the socket and
 *    then up to max(max_inflight, 1024) publishes not yet written
 *    (ccgw_mqtt_inflight in /metrics), far above 10. One window shared with
 *    QoS 1 held them at 10 and throttled QoS 0 into the broker to 0.46x
 *    (docs/performance.md).
 * No timing is asserted beyond generous timeouts.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_DEV 5

static h_env *E;
static h_broker *BR;

static int group_setup(void **state)
{
    (void)state;
    E = h_env_new("loadgen");
    h_current_env = E;
    BR = h_broker_start(E, 0);
    return BR ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    h_broker_free(BR);
    h_env_free(E);
    E = NULL;
    return 0;
}

static void write_config(const char *file, int port, const char *options, char *path, size_t len)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "gateway:\n"
             "  site: hq\n"
             "  id: gw1\n"
             "  log_level: info\n"
             "  plugin_dirs: [\"" CCGW_PLUGIN_DIR "\"]\n"
             "  data_dir: %s\n"
             "mqtt:\n"
             "  host: 127.0.0.1\n"
             "  port: %d\n"
             "instances:\n"
             "  - id: load\n"
             "    plugin: loadgen\n"
             "    options:\n%s",
             h_env_dir(E), port, options);
    h_env_path(E, file, path, len);
    assert_int_equal(h_write_file(path, yaml), 0);
}

static void describe_lists_options(void **state)
{
    (void)state;
    const char *argv[] = {CCGW_BIN, "--describe-plugin", "loadgen", "--plugin-dir", CCGW_PLUGIN_DIR,
                          NULL};
    char *out = NULL, *err = NULL;
    int st = h_run(E, "describe", argv, h_scaled(10000), &out, &err);
    H_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "describe exit %d: %s", st, err ? err : "");
    const char *want[] = {"devices", "id_prefix", "rate", "kind", "values_per_message",
                          "payload_bytes", "duration_s", "count", "threads", "clock"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        H_ASSERT(out && strstr(out, want[i]), "option %s missing in:\n%s", want[i], out ? out : "");
    free(out);
    free(err);
}

static void check_config_errors(void **state)
{
    (void)state;
    char path[PATH_MAX];
    write_config("bad.yaml", 1883, "      id_prefix: \"Bad!\"\n      kind: {telemetry: 0}\n", path,
                 sizeof path);
    const char *argv[] = {CCGW_BIN, "--check-config", path, NULL};
    char *out = NULL, *err = NULL;
    int st = h_run(E, "check", argv, h_scaled(10000), &out, &err);
    H_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1, "check-config exit %d", st);
    H_ASSERT(err && strstr(err, "bad.yaml:") && strstr(err, "id_prefix"), "no id_prefix error: %s",
             err ? err : "");
    H_ASSERT(strstr(err, "at least one weight"), "no kind error: %s", err);
    free(out);
    free(err);
}

static bool is_t_ns_msg(const h_msg *m, const void *ud)
{
    (void)ud;
    return m->json != NULL;
}

static void emits_through_the_broker(void **state)
{
    (void)state;
    h_mqtt *sub = h_mqtt_new(BR->port, "it-loadgen");
    H_ASSERT(sub != NULL, "subscriber");
    H_ASSERT(h_mqtt_sub(sub, H_PREFIX "/#", 1) == 0, "subscribe");
    char path[PATH_MAX];
    char opts[512];
    snprintf(opts, sizeof opts,
             "      devices: %d\n"
             "      id_prefix: it-\n"
             "      rate: 200\n"
             "      duration_s: 1\n"
             "      kind: {telemetry: 1, event: 1}\n"
             "      values_per_message: 3\n"
             "      payload_bytes: 400\n"
             "      report_s: 1\n",
             N_DEV);
    write_config("run.yaml", BR->port, opts, path, sizeof path);
    int64_t t0 = h_now_ms();
    h_proc *gw = h_gw_start(E, path);
    H_ASSERT(gw != NULL, "ccgw start");

    for (int i = 1; i <= N_DEV; i++) {
        char topic[128];
        snprintf(topic, sizeof topic, H_PREFIX "/hq/env/it-%d/state", i);
        H_EXPECT(sub, 0, topic, "{\"online\":true}", h_left_ms(t0, 10000));
    }
    const h_msg *fin = H_EXPECT(sub, 0, H_PREFIX "/hq/gateway/gw1/instance/load", "{\"health\":\"ok\"}",
                                h_left_ms(t0, 15000));
    (void)fin;
    /* the finished reason carries the final count */
    const h_msg *done = NULL;
    for (int tries = 0; tries < 10 && !done; tries++) {
        const h_msg *m[64];
        size_t n = h_mqtt_collect(sub, 0, H_PREFIX "/hq/gateway/gw1/instance/load", NULL, NULL, m, 64);
        for (size_t i = 0; i < n && i < 64; i++) {
            const char *r = m[i]->json ? h_json_str(m[i]->json, "reason") : NULL;
            if (r && strncmp(r, "finished: emitted ", 18) == 0)
                done = m[i];
        }
        if (!done)
            h_sleep_ms(h_scaled(1000));
    }
    H_ASSERT(done != NULL, "no 'finished: emitted N' health reason");
    unsigned long emitted = 0, refused = 1;
    int parsed = sscanf(h_json_str(done->json, "reason"), "finished: emitted %lu, refused %lu",
                        &emitted, &refused);
    H_ASSERT(parsed == 2, "reason '%s'", h_json_str(done->json, "reason"));
    H_ASSERT(refused == 0, "refused %lu", refused);
    H_ASSERT(emitted >= 150 && emitted <= 250, "emitted %lu, want about 200", emitted);

    /* everything arrives: QoS 0 telemetry on loopback, QoS 1 events */
    const h_msg *all[1024];
    size_t n_tel = 0, n_evt = 0;
    int64_t t1 = h_now_ms();
    while (h_left_ms(t1, 5000) > 0) {
        n_tel = h_mqtt_collect(sub, 0, H_PREFIX "/hq/env/+/telemetry", is_t_ns_msg, NULL, all, 0);
        n_evt = h_mqtt_collect(sub, 0, H_PREFIX "/hq/env/+/event/loadgen.sample", is_t_ns_msg, NULL,
                               all, 0);
        if (n_tel + n_evt >= emitted)
            break;
        h_sleep_ms(100);
    }
    H_ASSERT(n_tel + n_evt == emitted, "broker delivered %zu telemetry + %zu events, loadgen emitted %lu",
             n_tel, n_evt, emitted);
    H_ASSERT(n_tel > 0 && n_evt > 0, "mix: %zu telemetry, %zu events", n_tel, n_evt);

    /* per device and kind: seq 1..n without a gap; t_ns and pad present */
    const char *filters[2] = {H_PREFIX "/hq/env/+/telemetry", H_PREFIX "/hq/env/+/event/loadgen.sample"};
    const char *objs[2] = {"values", "data"};
    size_t total_bytes = 0, total_msgs = 0;
    for (int k = 0; k < 2; k++) {
        size_t n = h_mqtt_collect(sub, 0, filters[k], NULL, NULL, all, 1024);
        H_ASSERT(n <= 1024, "too many messages: %zu", n);
        double last[N_DEV + 1] = {0};
        for (size_t i = 0; i < n; i++) {
            const json_t *j = all[i]->json;
            H_ASSERT(j != NULL, "payload is JSON: %s", all[i]->payload);
            int d = 0;
            const char *dev = h_json_str(j, "device");
            int got = dev ? sscanf(dev, "it-%d", &d) : 0;
            H_ASSERT(got == 1 && d >= 1 && d <= N_DEV, "device %s", dev ? dev : "(none)");
            double seq = 0;
            H_ASSERT(h_json_num(j, "seq", &seq) && seq == last[d] + 1, "%s: seq %.0f after %.0f",
                     all[i]->topic, seq, last[d]);
            last[d] = seq;
            double t_ns = 0;
            H_ASSERT(h_json_num(h_json_get(j, objs[k], NULL), "t_ns", &t_ns) && t_ns > 0,
                     "no t_ns in %s", all[i]->payload);
            H_ASSERT(h_json_str(h_json_get(j, objs[k], NULL), "pad") != NULL, "no pad in %s",
                     all[i]->payload);
            H_ASSERT(h_json_get(j, objs[k], "v3", NULL) != NULL, "no v3 in %s", all[i]->payload);
            total_bytes += (size_t)all[i]->len;
            total_msgs++;
        }
    }
    double avg = (double)total_bytes / (double)total_msgs;
    H_ASSERT(avg > 300 && avg < 500, "average payload %.0f bytes, asked for about 400", avg);

    int st = h_proc_stop(gw, h_scaled(8000));
    char buf[64];
    H_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ccgw: %s", h_status_str(st, buf, sizeof buf));
    h_mqtt_free(sub);
}

/* count: exactly that many messages over all threads, then "finished" */
static void count_stops_exactly(void **state)
{
    (void)state;
    h_mqtt *sub = h_mqtt_new(BR->port, "it-loadgen-count");
    H_ASSERT(sub != NULL, "subscriber");
    H_ASSERT(h_mqtt_sub(sub, H_PREFIX "/hq/env/+/telemetry", 1) == 0, "subscribe");
    H_ASSERT(h_mqtt_sub(sub, H_PREFIX "/hq/gateway/gw1/instance/cnt", 1) == 0, "subscribe");
    char path[PATH_MAX];
    write_config("count.yaml", BR->port,
                 "      devices: 5\n"
                 "      id_prefix: ct-\n"
                 "      rate: 0\n"
                 "      count: 137\n"
                 "      threads: 2\n"
                 "      report_s: 1\n",
                 path, sizeof path);
    /* the config's instance id is "load": rename it for this run */
    char *text = h_read_file(path);
    H_ASSERT(text != NULL, "read %s", path);
    char *at = strstr(text, "id: load");
    H_ASSERT(at != NULL, "instance id in %s", path);
    memcpy(at, "id: cnt ", 8);
    FILE *f = fopen(path, "w");
    H_ASSERT(f != NULL, "write %s", path);
    fputs(text, f);
    fclose(f);
    free(text);
    int64_t t0 = h_now_ms();
    h_proc *gw = h_gw_start(E, path);
    H_ASSERT(gw != NULL, "ccgw start");
    const h_msg *done = NULL;
    while (!done && h_left_ms(t0, 15000) > 0) {
        const h_msg *m[64];
        size_t n = h_mqtt_collect(sub, 0, H_PREFIX "/hq/gateway/gw1/instance/cnt", NULL, NULL, m, 64);
        for (size_t i = 0; i < n && i < 64; i++) {
            const char *r = m[i]->json ? h_json_str(m[i]->json, "reason") : NULL;
            if (r && strncmp(r, "finished: emitted ", 18) == 0)
                done = m[i];
        }
        if (!done)
            h_sleep_ms(100);
    }
    H_ASSERT(done != NULL, "no 'finished: emitted N' health reason");
    H_ASSERT(strncmp(h_json_str(done->json, "reason"), "finished: emitted 137, refused 0", 32) == 0,
             "reason '%s'", h_json_str(done->json, "reason"));
    const h_msg *all[256];
    size_t n_tel = 0;
    int64_t t1 = h_now_ms();
    while (h_left_ms(t1, 5000) > 0) {
        n_tel = h_mqtt_collect(sub, 0, H_PREFIX "/hq/env/+/telemetry", is_t_ns_msg, NULL, all, 0);
        if (n_tel >= 137)
            break;
        h_sleep_ms(100);
    }
    h_sleep_ms(h_scaled(300)); /* nothing more comes */
    n_tel = h_mqtt_collect(sub, 0, H_PREFIX "/hq/env/+/telemetry", is_t_ns_msg, NULL, all, 0);
    H_ASSERT(n_tel == 137, "broker delivered %zu telemetry messages, want 137", n_tel);
    int st = h_proc_stop(gw, h_scaled(8000));
    char buf[64];
    H_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ccgw: %s", h_status_str(st, buf, sizeof buf));
    h_mqtt_free(sub);
}

/* GET path on 127.0.0.1:port (HTTP/1.0, anonymous); the body, or NULL. */
static char *http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while (buf && len < cap - 1 && (r = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    if (!buf)
        return NULL;
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (!body || strncmp(buf, "HTTP/1.", 7) != 0 || !strstr(buf, " 200 ")) {
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

/* The value of an unlabelled metric line "name value", or -1. */
static double metric(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, nl) && p[nl] == ' ')
            return atof(p + nl + 1);
    return -1;
}

static void qos0_window_of_its_own(void **state)
{
    (void)state;
    int http_port = h_free_port();
    char yaml[2048], path[PATH_MAX];
    snprintf(yaml, sizeof yaml,
             "gateway:\n"
             "  site: hq\n"
             "  id: gw1\n"
             "  plugin_dirs: [\"" CCGW_PLUGIN_DIR "\"]\n"
             "  data_dir: %s/qos0\n"
             "mqtt:\n"
             "  host: 127.0.0.1\n"
             "  port: %d\n"
             "  max_inflight: 10\n"
             "  keepalive_s: 60\n"
             "http:\n"
             "  address: 127.0.0.1\n"
             "  port: %d\n"
             "  anonymous_role: viewer\n"
             "instances:\n"
             "  - id: load\n"
             "    plugin: loadgen\n"
             "    options:\n"
             "      devices: 10\n"
             "      id_prefix: w-\n"
             "      rate: 2000\n"
             "      duration_s: 60\n"
             "      kind: {telemetry: 1}\n"
             "      payload_bytes: 2000\n",
             h_env_dir(E), BR->port, http_port);
    h_env_path(E, "qos0.yaml", path, sizeof path);
    H_ASSERT(h_write_file(path, yaml) == 0, "write %s", path);
    int64_t t0 = h_now_ms();
    h_proc *gw = h_gw_start(E, path);
    H_ASSERT(gw != NULL, "ccgw start");
    H_ASSERT(h_wait_port(http_port, gw, h_scaled(10000)), "http port %d", http_port);
    char line[256];
    H_ASSERT(h_proc_wait_log(gw, "connected to", h_left_ms(t0, 10000), line, sizeof line), "mqtt connected");
    H_ASSERT(h_proc_wait_log(gw, "online in", h_left_ms(t0, 10000), line, sizeof line), "devices online");

    /* the broker stops reading: the connection stays up, the socket fills */
    h_proc_signal(BR->proc, SIGSTOP);
    double inflight = -1, seen_max = -1;
    for (int i = 0; i < 100 && seen_max < 512; i++) { /* up to 20 s: about 10 MB of socket buffers fill first */
        h_sleep_ms(200);
        char *m = http_get(http_port, "/metrics");
        inflight = m ? metric(m, "ccgw_mqtt_inflight") : -1;
        if (inflight > seen_max)
            seen_max = inflight;
        free(m);
    }
    h_proc_signal(BR->proc, SIGCONT);
    h_log("ccgw_mqtt_inflight with the broker frozen: up to %.0f (mqtt.max_inflight 10)", seen_max);
    H_ASSERT(seen_max >= 512, "QoS 0 publishes not yet written must pass max_inflight (10) up to their own "
             "window (1024): ccgw_mqtt_inflight reached %.0f", seen_max);
    H_ASSERT(seen_max <= 1024 + 10, "and stop at that window: %.0f", seen_max);
    int st = h_proc_stop(gw, h_scaled(8000));
    char buf[64];
    H_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ccgw stop: %s", h_status_str(st, buf, sizeof buf));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(describe_lists_options),
        cmocka_unit_test(check_config_errors),
        cmocka_unit_test(emits_through_the_broker),
        cmocka_unit_test(count_stops_exactly),
        cmocka_unit_test(qos0_window_of_its_own),
    };
    int failed = cmocka_run_group_tests_name("integration.loadgen", tests, group_setup, group_teardown);
    return h_finish(failed);
}
