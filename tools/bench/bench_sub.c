/*
 * ccgw-bench-sub - the measuring subscriber (libmosquitto, MQTT v5).
 *
 * Subscribes to one or more topic filters and, for every message:
 *  - checks the per-topic "seq" (a topic is one device and kind): a gap is a
 *    lost message, a seq at or below the last one is a reordering or a
 *    duplicate; on .../state topics gaps are expected (coalescing) and only
 *    order is checked;
 *  - takes the latency now - "t_ns" (embedded by loadgen and ccgw-bench-pub;
 *    same clock, same host);
 *  - optionally counts distinct .../state topics whose payload says
 *    "online":true (start-up of many devices);
 *  - optionally samples the broker's $SYS/broker/publish/messages/received
 *    counter (what reached the broker, whoever sent it).
 * It stops after --count messages (or the count written into --count-file
 * once the sender knows it: the file is read when it appears), --idle-ms
 * without messages (once one
 * arrived), --distinct-online N devices online, or --timeout-s, and prints
 * one JSON object on stdout.
 *
 *   ccgw-bench-sub --port P --topic F [--topic F2 ...] [--qos 0|1] [--count N] [--count-file PATH]
 *                  [--idle-ms MS] [--timeout-s S] [--distinct-online N]
 *                  [--sys] [--clock monotonic|realtime] [--ready-file PATH]
 */
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"

typedef struct topic_ent {
    char *topic;
    uint64_t last_seq;
    bool online;
} topic_ent_t;

typedef struct sub {
    clockid_t clk;
    bool connected, subscribed;
    int n_sub_acks;
    /* counts */
    uint64_t received, bytes, lost, reordered, with_seq;
    uint64_t first_ns, last_ns; /* CLOCK_MONOTONIC arrival times */
    /* topics: open addressing */
    topic_ent_t *tab;
    size_t cap, n_topics;
    /* latency samples in ns */
    uint64_t *lat;
    size_t n_lat, cap_lat;
    /* start-up */
    uint64_t want_online, n_online, online_reached_rt;
    /* $SYS samples */
    bool sys;
    uint64_t sys_t[4096], sys_v[4096];
    size_t n_sys;
} sub_t;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static topic_ent_t *topic_get(sub_t *s, const char *t)
{
    if ((s->n_topics + 1) * 2 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        topic_ent_t *nt = calloc(nc, sizeof *nt);
        if (!nt)
            abort();
        for (size_t i = 0; i < s->cap; i++)
            if (s->tab[i].topic) {
                size_t j = hash_str(s->tab[i].topic) & (nc - 1);
                while (nt[j].topic)
                    j = (j + 1) & (nc - 1);
                nt[j] = s->tab[i];
            }
        free(s->tab);
        s->tab = nt;
        s->cap = nc;
    }
    size_t j = hash_str(t) & (s->cap - 1);
    while (s->tab[j].topic) {
        if (strcmp(s->tab[j].topic, t) == 0)
            return &s->tab[j];
        j = (j + 1) & (s->cap - 1);
    }
    s->tab[j].topic = strdup(t);
    if (!s->tab[j].topic)
        abort();
    s->n_topics++;
    return &s->tab[j];
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags, const mosquitto_property *p)
{
    (void)m;
    (void)flags;
    (void)p;
    sub_t *s = obj;
    s->connected = rc == 0;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted,
                         const mosquitto_property *p)
{
    (void)m;
    (void)mid;
    (void)n;
    (void)granted;
    (void)p;
    sub_t *s = obj;
    s->n_sub_acks++;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *p)
{
    (void)m;
    (void)p;
    sub_t *s = obj;
    uint64_t arrive = bench_now_ns(s->clk);
    uint64_t mono = s->clk == CLOCK_MONOTONIC ? arrive : bench_now_ns(CLOCK_MONOTONIC);
    const char *pl = msg->payload;
    size_t len = (size_t)msg->payloadlen;
    if (msg->topic[0] == '$') {
        if (s->sys && s->n_sys < sizeof s->sys_t / sizeof s->sys_t[0] && len) {
            char tmp[32];
            size_t n = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
            memcpy(tmp, pl, n);
            tmp[n] = '\0';
            s->sys_t[s->n_sys] = mono;
            s->sys_v[s->n_sys++] = strtoull(tmp, NULL, 10);
        }
        return;
    }
    s->received++;
    s->bytes += len;
    if (!s->first_ns)
        s->first_ns = mono;
    s->last_ns = mono;
    if (!len)
        return;
    uint64_t seq = 0, t_ns = 0;
    bool state = ends_with(msg->topic, "/state");
    if (bench_json_u64(pl, len, "seq", &seq)) {
        s->with_seq++;
        topic_ent_t *e = topic_get(s, msg->topic);
        if (e->last_seq == 0 && !state && !msg->retain && seq > 1)
            s->lost += seq - 1; /* the first ones never came */
        else if (e->last_seq && seq > e->last_seq + 1 && !state)
            s->lost += seq - e->last_seq - 1;
        else if (e->last_seq && seq <= e->last_seq)
            s->reordered++;
        if (seq > e->last_seq)
            e->last_seq = seq;
        if (state && s->want_online && !e->online && memmem(pl, len, "\"online\":true", 13)) {
            e->online = true;
            if (++s->n_online == s->want_online)
                s->online_reached_rt = bench_now_ns(CLOCK_REALTIME);
        }
    }
    if (!msg->retain && bench_json_u64(pl, len, "t_ns", &t_ns) && s->n_lat < s->cap_lat)
        s->lat[s->n_lat++] = arrive > t_ns ? arrive - t_ns : 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double q)
{
    if (!n)
        return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)v[i < n ? i : n - 1] / 1000.0;
}

static void usage(void)
{
    fprintf(stderr, "usage: ccgw-bench-sub --port P --topic FILTER [--topic ...] [--qos 0|1] "
                    "[--count N] [--count-file PATH] [--idle-ms MS] [--timeout-s S] [--distinct-online N] [--sys] "
                    "[--clock monotonic|realtime] [--ready-file PATH] [--max-samples N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *ready_file = NULL, *count_file = NULL;
    const char *topics[16];
    int n_topics = 0, port = 0, qos = 1;
    uint64_t count = 0, idle_ms = 2000;
    double timeout_s = 60;
    sub_t s = {.clk = CLOCK_MONOTONIC, .cap_lat = 4000000};
    static const struct option opts[] = {
        {"host", 1, NULL, 'h'},      {"port", 1, NULL, 'p'},        {"topic", 1, NULL, 't'},
        {"qos", 1, NULL, 'q'},       {"count", 1, NULL, 'n'},       {"idle-ms", 1, NULL, 'i'},
        {"timeout-s", 1, NULL, 'T'}, {"distinct-online", 1, NULL, 'o'}, {"sys", 0, NULL, 's'},
        {"clock", 1, NULL, 'c'},     {"ready-file", 1, NULL, 'r'},  {"max-samples", 1, NULL, 'm'},
        {"count-file", 1, NULL, 'C'}, {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 't':
            if (n_topics == 16)
                usage();
            topics[n_topics++] = optarg;
            break;
        case 'q': qos = atoi(optarg); break;
        case 'n': count = strtoull(optarg, NULL, 10); break;
        case 'C': count_file = optarg; break;
        case 'i': idle_ms = strtoull(optarg, NULL, 10); break;
        case 'T': timeout_s = atof(optarg); break;
        case 'o': s.want_online = strtoull(optarg, NULL, 10); break;
        case 's': s.sys = true; break;
        case 'c': s.clk = strcmp(optarg, "realtime") == 0 ? CLOCK_REALTIME : CLOCK_MONOTONIC; break;
        case 'r': ready_file = optarg; break;
        case 'm': s.cap_lat = strtoull(optarg, NULL, 10); break;
        default: usage();
        }
    }
    if (port <= 0 || (n_topics == 0 && !s.sys))
        usage();
    s.lat = malloc((s.cap_lat ? s.cap_lat : 1) * sizeof *s.lat);
    if (!s.lat)
        return 1;

    mosquitto_lib_init();
    char id[64];
    snprintf(id, sizeof id, "bench-sub-%d", (int)getpid());
    struct mosquitto *m = mosquitto_new(id, true, &s);
    if (!m)
        return 1;
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_int_option(m, MOSQ_OPT_RECEIVE_MAXIMUM, 65535);
    mosquitto_connect_v5_callback_set(m, on_connect);
    mosquitto_subscribe_v5_callback_set(m, on_subscribe);
    mosquitto_message_v5_callback_set(m, on_message);
    if (mosquitto_connect_bind_v5(m, host, port, 30, NULL, NULL) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "ccgw-bench-sub: cannot connect to %s:%d\n", host, port);
        return 1;
    }
    uint64_t t_start = bench_now_ns(CLOCK_MONOTONIC);
    while (!s.connected && bench_now_ns(CLOCK_MONOTONIC) - t_start < 5000000000ull)
        if (mosquitto_loop(m, 50, 1) != MOSQ_ERR_SUCCESS)
            break;
    if (!s.connected) {
        fprintf(stderr, "ccgw-bench-sub: no CONNACK\n");
        return 1;
    }
    int want_acks = n_topics + (s.sys ? 1 : 0);
    for (int i = 0; i < n_topics; i++)
        mosquitto_subscribe_v5(m, NULL, topics[i], qos, MQTT_SUB_OPT_RETAIN_AS_PUBLISHED, NULL);
    if (s.sys)
        mosquitto_subscribe_v5(m, NULL, "$SYS/broker/publish/messages/received", 0, 0, NULL);
    while (s.n_sub_acks < want_acks && bench_now_ns(CLOCK_MONOTONIC) - t_start < 5000000000ull)
        if (mosquitto_loop(m, 50, 1) != MOSQ_ERR_SUCCESS)
            break;
    if (ready_file) {
        FILE *f = fopen(ready_file, "w");
        if (f)
            fclose(f);
    }
    t_start = bench_now_ns(CLOCK_MONOTONIC);
    const char *why = "timeout";
    uint64_t count_checked = 0;
    for (;;) {
        int rc = mosquitto_loop(m, 20, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            why = "connection lost";
            break;
        }
        uint64_t now = bench_now_ns(CLOCK_MONOTONIC);
        if (count_file && !count && now - count_checked > 100000000ull) { /* 10/s at most */
            count_checked = now;
            FILE *f = fopen(count_file, "r");
            unsigned long long c = 0;
            if (f) {
                if (fscanf(f, "%llu", &c) == 1 && c > 0)
                    count = c;
                fclose(f);
            }
        }
        if (count && s.received >= count) {
            why = "count";
            break;
        }
        if (s.want_online && s.n_online >= s.want_online) {
            why = "online";
            break;
        }
        if (idle_ms && s.last_ns && now - s.last_ns > idle_ms * 1000000ull) {
            why = "idle";
            break;
        }
        if ((double)(now - t_start) / 1e9 > timeout_s)
            break;
    }
    qsort(s.lat, s.n_lat, sizeof *s.lat, cmp_u64);
    double secs = s.last_ns > s.first_ns ? (double)(s.last_ns - s.first_ns) / 1e9 : 0;
    /* broker rate: the counter's slope over the samples while it was rising,
     * leaving out the partly-idle first and last intervals */
    double sys_rate = 0;
    uint64_t sys_total = 0;
    if (s.n_sys >= 2) {
        size_t a = 0, b = s.n_sys - 1;
        while (a + 1 < s.n_sys && s.sys_v[a + 1] == s.sys_v[a])
            a++;
        while (b > a && s.sys_v[b - 1] == s.sys_v[b])
            b--;
        sys_total = s.sys_v[b] - s.sys_v[a];
        if (b >= a + 3) { /* at least two whole intervals inside */
            a++;
            b--;
        }
        if (b > a)
            sys_rate = (double)(s.sys_v[b] - s.sys_v[a]) / ((double)(s.sys_t[b] - s.sys_t[a]) / 1e9);
    }
    printf("{\"received\":%" PRIu64 ",\"stop\":\"%s\",\"topics\":%zu,\"with_seq\":%" PRIu64
           ",\"lost\":%" PRIu64 ",\"reordered\":%" PRIu64 ",\"bytes_avg\":%.1f,\"seconds\":%.3f,"
           "\"rate\":%.1f,\"lat_samples\":%zu,\"lat_p50_us\":%.1f,\"lat_p99_us\":%.1f,"
           "\"lat_p999_us\":%.1f,\"lat_max_us\":%.1f,\"online\":%" PRIu64
           ",\"online_reached_realtime_ns\":%" PRIu64 ",\"sys_samples\":%zu,\"sys_rate\":%.1f,"
           "\"sys_total\":%" PRIu64 "}\n",
           s.received, why, s.n_topics, s.with_seq, s.lost, s.reordered,
           s.received ? (double)s.bytes / (double)s.received : 0, secs,
           secs > 0 ? (double)(s.received - 1) / secs : 0, s.n_lat, pct(s.lat, s.n_lat, 0.5),
           pct(s.lat, s.n_lat, 0.99), pct(s.lat, s.n_lat, 0.999),
           s.n_lat ? (double)s.lat[s.n_lat - 1] / 1000.0 : 0, s.n_online, s.online_reached_rt,
           s.n_sys, sys_rate, sys_total);
    fflush(stdout);
    mosquitto_disconnect_v5(m, 0, NULL);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    for (size_t i = 0; i < s.cap; i++)
        free(s.tab[i].topic);
    free(s.tab);
    free(s.lat);
    return 0;
}
