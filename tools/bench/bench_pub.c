/*
 * ccgw-bench-pub - the raw baseline: one libmosquitto (MQTT v5) client that
 * publishes JSON payloads shaped like ccgw telemetry, of a given size, with
 * TCP_NODELAY, as fast as possible or at a fixed rate (absolute deadlines),
 * at QoS 0 or QoS 1 with a bounded in-flight window. Each payload embeds
 * "seq" (per device) and "values":{"t_ns":...} like loadgen, so the same
 * ccgw-bench-sub measures both.
 *
 * --format reading sends what a device would send instead (the input of the
 * Node-RED peer, tools/bench/nodered/flows.json): no envelope and no seq, the
 * values of a loadgen event only, {"t_ns":..,"v1":..,"v2":..,"v3":..,"v4":..,
 * "pad":".."}, on <topic-prefix>/<device> with devices named raw-1..raw-N
 * (--device-prefix changes "raw-").
 *
 *   ccgw-bench-pub --port P [--host H] [--qos 0|1] [--rate R] [--duration S]
 *                  [--payload-bytes B] [--devices N] [--window W]
 *                  [--topic-prefix bench/raw] [--clock monotonic|realtime]
 *                  [--format envelope|reading] [--device-prefix raw-]
 *
 * Prints one JSON object on stdout: {"sent":..,"acked":..,"seconds":..,"rate":..,
 * "cpu_s":..} (cpu_s: its own user + system CPU time, getrusage).
 * The loop is single-threaded (no libmosquitto thread): a publish writes at
 * once; when the socket is full, mosquitto_loop() waits for it to drain, so
 * memory stays bounded and the rate is what the broker takes.
 */
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench_common.h"

typedef struct pub {
    bool connected;
    int connack_rc;
    uint64_t inflight, acked;
} pub_t;

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags, const mosquitto_property *p)
{
    (void)m;
    (void)flags;
    (void)p;
    pub_t *s = obj;
    s->connack_rc = rc;
    s->connected = rc == 0;
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason, const mosquitto_property *p)
{
    (void)m;
    (void)mid;
    (void)reason;
    (void)p;
    pub_t *s = obj;
    if (s->inflight)
        s->inflight--;
    s->acked++;
}

static void usage(void)
{
    fprintf(stderr, "usage: ccgw-bench-pub --port P [--host H] [--qos 0|1] [--rate R (0 = max)] "
                    "[--duration S] [--payload-bytes B] [--devices N] [--window W] "
                    "[--topic-prefix T] [--clock monotonic|realtime] [--format envelope|reading] [--device-prefix P]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *prefix = "bench/raw", *dev_prefix = "raw-";
    int port = 0, qos = 0;
    double rate = 0, duration = 5;
    long payload_bytes = 0, devices = 100, window = 1000;
    clockid_t clk = CLOCK_MONOTONIC;
    bool reading = false;
    static const struct option opts[] = {
        {"host", 1, NULL, 'h'},          {"port", 1, NULL, 'p'},    {"qos", 1, NULL, 'q'},
        {"rate", 1, NULL, 'r'},          {"duration", 1, NULL, 'd'}, {"payload-bytes", 1, NULL, 'b'},
        {"devices", 1, NULL, 'n'},       {"window", 1, NULL, 'w'},  {"topic-prefix", 1, NULL, 't'},
        {"clock", 1, NULL, 'c'},         {"format", 1, NULL, 'f'},  {"device-prefix", 1, NULL, 'D'},
        {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'q': qos = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'b': payload_bytes = atol(optarg); break;
        case 'n': devices = atol(optarg); break;
        case 'w': window = atol(optarg); break;
        case 't': prefix = optarg; break;
        case 'c': clk = strcmp(optarg, "realtime") == 0 ? CLOCK_REALTIME : CLOCK_MONOTONIC; break;
        case 'f':
            if (strcmp(optarg, "reading") == 0)
                reading = true;
            else if (strcmp(optarg, "envelope") != 0)
                usage();
            break;
        case 'D': dev_prefix = optarg; break;
        default: usage();
        }
    }
    if (port <= 0 || qos < 0 || qos > 1 || devices < 1 || window < 1 || payload_bytes < 0 ||
        payload_bytes > 1 << 20)
        usage();

    mosquitto_lib_init();
    pub_t st = {0};
    char id[64];
    snprintf(id, sizeof id, "bench-pub-%d", (int)getpid());
    struct mosquitto *m = mosquitto_new(id, true, &st);
    if (!m)
        return 1;
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM, (int)(window > 65535 ? 65535 : window));
    mosquitto_connect_v5_callback_set(m, on_connect);
    mosquitto_publish_v5_callback_set(m, on_publish);
    if (mosquitto_connect_bind_v5(m, host, port, 30, NULL, NULL) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "ccgw-bench-pub: cannot connect to %s:%d\n", host, port);
        return 1;
    }
    uint64_t dl = bench_now_ns(CLOCK_MONOTONIC) + 5000000000ull;
    while (!st.connected && bench_now_ns(CLOCK_MONOTONIC) < dl)
        if (mosquitto_loop(m, 50, 1) != MOSQ_ERR_SUCCESS)
            break;
    if (!st.connected) {
        fprintf(stderr, "ccgw-bench-pub: no CONNACK (rc %d)\n", st.connack_rc);
        return 1;
    }

    uint64_t *seq = calloc((size_t)devices, sizeof *seq);
    size_t cap = (size_t)payload_bytes + 512;
    char *buf = malloc(cap), *pad = malloc(cap);
    char topic[256];
    if (!seq || !buf || !pad)
        return 1;
    memset(pad, 'x', cap - 1);
    pad[cap - 1] = '\0';

    const uint64_t start = bench_now_ns(CLOCK_MONOTONIC);
    const uint64_t end = start + (uint64_t)(duration * 1e9);
    uint64_t tick = rate > 0 ? (uint64_t)(1e9 / rate) : 0;
    if (rate > 0 && tick < 200000)
        tick = 200000;
    const uint64_t max_batch = rate > 0 ? (uint64_t)(rate / 10) + 1 : 64;
    uint64_t sent = 0, base_sent = 0, base_t = start, next = start;
    long dev = 0;
    int err = 0;
    while (!err) {
        uint64_t now = bench_now_ns(CLOCK_MONOTONIC);
        if (now >= end)
            break;
        uint64_t batch = max_batch;
        if (rate > 0) {
            uint64_t due = base_sent + (uint64_t)((double)(now - base_t) * rate / 1e9);
            batch = due > sent ? due - sent : 0;
            if (batch > max_batch) {
                batch = max_batch;
                base_sent = sent + batch;
                base_t = now;
            }
        }
        for (uint64_t b = 0; b < batch && !err; b++) {
            while (qos > 0 && st.inflight >= (uint64_t)window)
                if (mosquitto_loop(m, 10, 1) != MOSQ_ERR_SUCCESS) {
                    err = 1;
                    break;
                }
            seq[dev]++;
            int n;
            if (reading) {
                /* a device's reading: loadgen's event data, no envelope */
                snprintf(topic, sizeof topic, "%s/%s%ld", prefix, dev_prefix, dev + 1);
                double v = 20.0 + (double)(seq[dev] % 1000) * 0.01;
                n = snprintf(buf, cap,
                             "{\"t_ns\":%" PRIu64 ",\"v1\":%.2f,\"v2\":%.2f,\"v3\":%.2f,"
                             "\"v4\":%.2f,\"pad\":\"",
                             bench_now_ns(clk), v, v + 0.01, v + 0.02, v + 0.03);
                long padn = payload_bytes - n - 2; /* "} */
                if (padn < 0)
                    padn = 0;
                n += snprintf(buf + n, cap - (size_t)n, "%.*s\"}", (int)padn, pad);
            } else {
                snprintf(topic, sizeof topic, "%s/raw-%ld/telemetry", prefix, dev + 1);
                n = snprintf(buf, cap,
                             "{\"ts\":\"2026-11-23T09:47:05.123Z\",\"site\":\"hq\",\"class\":\"env\","
                             "\"device\":\"raw-%ld\",\"instance\":\"raw\",\"boot\":\"0000000000000000\","
                             "\"seq\":%" PRIu64 ",\"values\":{\"t_ns\":%" PRIu64 ",\"pad\":\"",
                             dev + 1, seq[dev], bench_now_ns(clk));
                long padn = payload_bytes - n - 14; /* "},"units":{}} */
                if (padn < 0)
                    padn = 0;
                n += snprintf(buf + n, cap - (size_t)n, "%.*s\"},\"units\":{}}", (int)padn, pad);
            }
            int rc = mosquitto_publish_v5(m, NULL, topic, n, buf, qos, false, NULL);
            if (rc != MOSQ_ERR_SUCCESS) {
                fprintf(stderr, "ccgw-bench-pub: publish: %s\n", mosquitto_strerror(rc));
                err = 1;
                break;
            }
            if (qos > 0)
                st.inflight++;
            sent++;
            if (++dev == devices)
                dev = 0;
            /* the socket is full: let it drain (bounded memory, broker-paced) */
            while (mosquitto_want_write(m))
                if (mosquitto_loop(m, 10, 1) != MOSQ_ERR_SUCCESS) {
                    err = 1;
                    break;
                }
        }
        if (mosquitto_loop(m, 0, 1) != MOSQ_ERR_SUCCESS) /* PUBACKs, keepalive */
            err = 1;
        if (rate > 0) {
            next += tick;
            now = bench_now_ns(CLOCK_MONOTONIC);
            if (next < now)
                next = now;
            else
                bench_sleep_until(next);
        }
    }
    double secs = (double)(bench_now_ns(CLOCK_MONOTONIC) - start) / 1e9;
    /* QoS 1: wait for the acknowledgements of the window (at most 10 s) */
    dl = bench_now_ns(CLOCK_MONOTONIC) + 10000000000ull;
    while (qos > 0 && st.inflight > 0 && bench_now_ns(CLOCK_MONOTONIC) < dl)
        if (mosquitto_loop(m, 10, 1) != MOSQ_ERR_SUCCESS)
            break;
    double secs_acked = (double)(bench_now_ns(CLOCK_MONOTONIC) - start) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                   (double)ru.ru_stime.tv_usec / 1e6;
    printf("{\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"qos\":%d,\"window\":%ld,\"seconds\":%.3f,"
           "\"rate\":%.1f,\"rate_acked\":%.1f,\"payload_bytes\":%ld,\"cpu_s\":%.3f,\"error\":%d}\n",
           sent, qos ? st.acked : sent, qos, window, secs, secs > 0 ? (double)sent / secs : 0,
           secs_acked > 0 ? (double)(qos ? st.acked : sent) / secs_acked : 0, payload_bytes, cpu_s, err);
    fflush(stdout);
    mosquitto_disconnect_v5(m, 0, NULL);
    mosquitto_loop(m, 100, 1);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    free(seq);
    free(buf);
    free(pad);
    return err;
}
