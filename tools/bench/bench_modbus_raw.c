/*
 * ccgw-bench-modbus-raw - the raw baseline of row (h): a minimal libmodbus
 * poller that makes the same reads of the same devices as ccgw's modbus
 * plugin, at the same interval, and reports its own poll jitter the way the
 * bench derives ccgw's (docs/performance.md, "Modbus at scale (h)").
 *
 * Devices: --units N unit ids (1..N) behind each --endpoint HOST:PORT, one
 * TCP connection (one libmodbus context) per device, as the plugin has.
 * Requests: --read FC:ADDR:COUNT, repeated, made in that order each poll
 * (FC 1, 2, 3 or 4; the plugin's planner gives the same list for the bench's
 * points). Threads: --threads T (default one per endpoint), each owning an
 * equal share of the devices. The first polls of a thread's devices are
 * spread evenly over the interval (rounded down to a multiple of --slot-ms,
 * as the plugin does with its 20 ms); then each device is polled every
 * --interval-ms on its own schedule (a poll that falls behind is not made
 * up). Nothing is decoded or published: this is what polling alone costs.
 *
 * It connects every device, waits --warmup-s, then measures --window-s:
 * for each device the completion time of every poll (CLOCK_REALTIME, in
 * whole ms like ccgw's envelope "ts"); each interval between two
 * consecutive completions minus --interval-ms is one jitter sample. It also
 * reports how late each poll started against its schedule (us), polls and
 * failed polls per device in the window, and its CPU time over the window
 * (getrusage, every thread). One JSON object on stdout.
 *
 *   ccgw-bench-modbus-raw --endpoint 127.0.0.1:PORT [--endpoint ...] --units N
 *       --read 4:0:40 --read 2:0:8 --read 3:0:2 [--interval-ms 1000] [--threads T]
 *       [--warmup-s 2] [--window-s 10] [--timeout-ms 500] [--window-file PATH] [--slot-ms MS]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <modbus.h>

#include "bench_common.h"

#define MAX_ENDPOINTS 64
#define MAX_READS 32

typedef struct {
    int fc;
    int addr, count;
} rd_t;

typedef struct {
    modbus_t *ctx;
    const char *host;
    int port, unit;
    bool connected;
    uint64_t next_ns;     /* CLOCK_MONOTONIC: next poll due */
    int64_t last_done_ms; /* CLOCK_REALTIME ms of the last completed poll, 0 = none */
    uint64_t w_polls, w_failed;
} dev_t_;

typedef struct {
    pthread_t th;
    dev_t_ *devs;
    size_t n;
    /* window samples, owned by the thread until it is joined */
    int64_t *jit;
    size_t n_jit, cap_jit;
    uint64_t *late_us;
    size_t n_late, cap_late;
} worker_t;

static rd_t g_reads[MAX_READS];
static size_t g_n_reads;
static uint64_t g_interval_ns, g_timeout_ms = 500, g_slot_ns;
static _Atomic int g_phase; /* 0 warm-up, 1 window, 2 stop */

static void push_i64(int64_t **a, size_t *n, size_t *cap, int64_t v)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4096;
        int64_t *na = realloc(*a, nc * sizeof *na);
        if (!na)
            abort();
        *a = na;
        *cap = nc;
    }
    (*a)[(*n)++] = v;
}

static void push_u64(uint64_t **a, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4096;
        uint64_t *na = realloc(*a, nc * sizeof *na);
        if (!na)
            abort();
        *a = na;
        *cap = nc;
    }
    (*a)[(*n)++] = v;
}

/* one poll: every read in order; false when one failed (the connection is then dropped) */
static bool poll_dev(dev_t_ *d)
{
    uint16_t regs[125];
    uint8_t bits[2000];

    if (!d->connected) {
        if (modbus_connect(d->ctx) != 0)
            return false;
        d->connected = true;
    }
    for (size_t i = 0; i < g_n_reads; i++) {
        const rd_t *r = &g_reads[i];
        int rc;
        switch (r->fc) {
        case 1: rc = modbus_read_bits(d->ctx, r->addr, r->count, bits); break;
        case 2: rc = modbus_read_input_bits(d->ctx, r->addr, r->count, bits); break;
        case 3: rc = modbus_read_registers(d->ctx, r->addr, r->count, regs); break;
        default: rc = modbus_read_input_registers(d->ctx, r->addr, r->count, regs); break;
        }
        if (rc != r->count) {
            modbus_close(d->ctx);
            d->connected = false;
            return false;
        }
    }
    return true;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    uint64_t now = bench_now_ns(CLOCK_MONOTONIC);

    for (size_t i = 0; i < w->n; i++) { /* first polls spread over one interval, in slots */
        uint64_t off = g_interval_ns * i / (w->n ? w->n : 1);
        w->devs[i].next_ns = now + (g_slot_ns ? off - off % g_slot_ns : off);
    }
    while (atomic_load(&g_phase) < 2) {
        dev_t_ *due = NULL;
        for (size_t i = 0; i < w->n; i++)
            if (!due || w->devs[i].next_ns < due->next_ns)
                due = &w->devs[i];
        if (!due)
            break;
        bench_sleep_until(due->next_ns);
        int phase = atomic_load(&g_phase);
        if (phase >= 2)
            break;
        uint64_t start = bench_now_ns(CLOCK_MONOTONIC);
        bool ok = poll_dev(due);
        int64_t done_ms = (int64_t)(bench_now_ns(CLOCK_REALTIME) / 1000000ull);
        if (phase == 1) {
            push_u64(&w->late_us, &w->n_late, &w->cap_late, (start - due->next_ns) / 1000u);
            if (ok) {
                due->w_polls++;
                if (due->last_done_ms)
                    push_i64(&w->jit, &w->n_jit, &w->cap_jit,
                             done_ms - due->last_done_ms - (int64_t)(g_interval_ns / 1000000u));
            } else {
                due->w_failed++;
            }
        }
        due->last_done_ms = ok ? done_ms : 0;
        /* keep the cadence; after an overrun go on at once, no make-up burst */
        due->next_ns += g_interval_ns;
        uint64_t after = bench_now_ns(CLOCK_MONOTONIC);
        if (due->next_ns < after)
            due->next_ns = after;
    }
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static _Noreturn void usage(void)
{
    fprintf(stderr, "usage: ccgw-bench-modbus-raw --endpoint HOST:PORT [--endpoint ...] --units N "
                    "--read FC:ADDR:COUNT [--read ...] [--interval-ms 1000] [--threads T] [--warmup-s 2] "
                    "[--window-s 10] [--timeout-ms 500] [--window-file PATH] [--slot-ms MS]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static char hosts[MAX_ENDPOINTS][256];
    int ports[MAX_ENDPOINTS];
    size_t n_ep = 0;
    long units = 0, threads = 0;
    double warmup_s = 2, window_s = 10;
    const char *window_file = NULL;
    uint64_t interval_ms = 1000;
    static const struct option opts[] = {
        {"endpoint", 1, NULL, 'e'}, {"units", 1, NULL, 'u'},      {"read", 1, NULL, 'r'},
        {"interval-ms", 1, NULL, 'i'}, {"threads", 1, NULL, 't'}, {"warmup-s", 1, NULL, 'w'},
        {"window-s", 1, NULL, 'W'}, {"timeout-ms", 1, NULL, 'T'}, {"window-file", 1, NULL, 'F'},
        {"slot-ms", 1, NULL, 's'},
        {NULL, 0, NULL, 0}};
    int o;

    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'e': {
            const char *c = strrchr(optarg, ':');
            if (!c || n_ep == MAX_ENDPOINTS || (size_t)(c - optarg) >= sizeof hosts[0])
                usage();
            memcpy(hosts[n_ep], optarg, (size_t)(c - optarg));
            hosts[n_ep][c - optarg] = '\0';
            ports[n_ep++] = atoi(c + 1);
            break;
        }
        case 'u': units = atol(optarg); break;
        case 'r': {
            rd_t r = {0, 0, 0};
            if (g_n_reads == MAX_READS || sscanf(optarg, "%d:%d:%d", &r.fc, &r.addr, &r.count) != 3 ||
                r.fc < 1 || r.fc > 4 || r.count < 1 || r.count > (r.fc <= 2 ? 2000 : 125))
                usage();
            g_reads[g_n_reads++] = r;
            break;
        }
        case 'i': interval_ms = strtoull(optarg, NULL, 10); break;
        case 't': threads = atol(optarg); break;
        case 'w': warmup_s = atof(optarg); break;
        case 'W': window_s = atof(optarg); break;
        case 'T': g_timeout_ms = strtoull(optarg, NULL, 10); break;
        case 'F': window_file = optarg; break;
        case 's': g_slot_ns = strtoull(optarg, NULL, 10) * 1000000ull; break;
        default: usage();
        }
    }
    if (!n_ep || units < 1 || units > 247 || !g_n_reads || !interval_ms || window_s <= 0)
        usage();
    if (threads <= 0)
        threads = (long)n_ep;
    g_interval_ns = interval_ms * 1000000ull;

    size_t n_dev = n_ep * (size_t)units;
    dev_t_ *devs = calloc(n_dev, sizeof *devs);
    worker_t *ws = calloc((size_t)threads, sizeof *ws);
    if (!devs || !ws)
        return 1;
    for (size_t e = 0; e < n_ep; e++)
        for (long u = 1; u <= units; u++) {
            dev_t_ *d = &devs[e * (size_t)units + (size_t)(u - 1)];
            d->host = hosts[e];
            d->port = ports[e];
            d->unit = (int)u;
            d->ctx = modbus_new_tcp(d->host, d->port);
            if (!d->ctx) {
                fprintf(stderr, "ccgw-bench-modbus-raw: modbus_new_tcp: %s\n", modbus_strerror(errno));
                return 1;
            }
            modbus_set_slave(d->ctx, d->unit);
            modbus_set_response_timeout(d->ctx, (uint32_t)(g_timeout_ms / 1000u),
                                        (uint32_t)(g_timeout_ms % 1000u) * 1000u);
            modbus_set_error_recovery(d->ctx, MODBUS_ERROR_RECOVERY_NONE);
            int tries = 0; /* a burst of connects may overflow the listen backlog: retry */
            while (modbus_connect(d->ctx) != 0) {
                if (++tries == 50) {
                    fprintf(stderr, "ccgw-bench-modbus-raw: connect %s:%d unit %d: %s\n", d->host, d->port,
                            d->unit, modbus_strerror(errno));
                    return 1;
                }
                modbus_close(d->ctx);
                bench_sleep_until(bench_now_ns(CLOCK_MONOTONIC) + 100000000ull);
            }
            d->connected = true;
        }
    /* devices dealt round robin over the threads: each thread has some of every endpoint */
    size_t per = (n_dev + (size_t)threads - 1) / (size_t)threads;
    for (long t = 0; t < threads; t++) {
        ws[t].devs = calloc(per, sizeof *ws[t].devs);
        if (!ws[t].devs)
            return 1;
    }
    for (size_t i = 0; i < n_dev; i++) {
        worker_t *w = &ws[i % (size_t)threads];
        w->devs[w->n++] = devs[i];
    }
    for (long t = 0; t < threads; t++)
        if (pthread_create(&ws[t].th, NULL, worker_main, &ws[t]) != 0)
            return 1;

    uint64_t t0 = bench_now_ns(CLOCK_MONOTONIC);
    bench_sleep_until(t0 + (uint64_t)(warmup_s * 1e9));
    double c0 = cpu_s();
    uint64_t w0 = bench_now_ns(CLOCK_MONOTONIC);
    atomic_store(&g_phase, 1);
    if (window_file) {
        FILE *f = fopen(window_file, "w");
        if (f) {
            fputs("window\n", f);
            fclose(f);
        }
    }
    bench_sleep_until(w0 + (uint64_t)(window_s * 1e9));
    atomic_store(&g_phase, 2);
    double c1 = cpu_s();
    double secs = (double)(bench_now_ns(CLOCK_MONOTONIC) - w0) / 1e9;
    for (long t = 0; t < threads; t++)
        pthread_join(ws[t].th, NULL);

    /* gather */
    int64_t *jit = NULL;
    uint64_t *late = NULL;
    size_t n_jit = 0, cap_jit = 0, n_late = 0, cap_late = 0;
    uint64_t polls = 0, failed = 0, pmin = UINT64_MAX, pmax = 0, missed = 0;
    int64_t late_max = 0, early_max = 0;
    for (long t = 0; t < threads; t++) {
        worker_t *w = &ws[t];
        for (size_t i = 0; i < w->n_jit; i++) {
            int64_t v = w->jit[i];
            if (v > late_max)
                late_max = v;
            if (-v > early_max)
                early_max = -v;
            push_i64(&jit, &n_jit, &cap_jit, v < 0 ? -v : v);
            if ((uint64_t)(v < 0 ? -v : v) * 2 > interval_ms)
                missed++; /* a poll skipped or more than half an interval late */
        }
        for (size_t i = 0; i < w->n_late; i++)
            push_u64(&late, &n_late, &cap_late, w->late_us[i]);
        for (size_t i = 0; i < w->n; i++) {
            dev_t_ *d = &w->devs[i];
            polls += d->w_polls;
            failed += d->w_failed;
            if (d->w_polls < pmin)
                pmin = d->w_polls;
            if (d->w_polls > pmax)
                pmax = d->w_polls;
            if (d->connected)
                modbus_close(d->ctx);
            modbus_free(d->ctx);
        }
        free(w->jit);
        free(w->late_us);
        free(w->devs);
    }
    if (jit)
        qsort(jit, n_jit, sizeof *jit, cmp_i64);
    if (late)
        qsort(late, n_late, sizeof *late, cmp_u64);
#define PI(a, n, q) ((n) ? (a)[(size_t)((q) * (double)((n) - 1) + 0.5)] : 0)
    printf("{\"devices\":%zu,\"endpoints\":%zu,\"threads\":%ld,\"reads_per_poll\":%zu,\"interval_ms\":%" PRIu64
           ",\"window_s\":%.3f,\"polls\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"polls_per_s\":%.1f"
           ",\"per_device_min\":%" PRIu64 ",\"per_device_max\":%" PRIu64 ",\"intervals\":%zu"
           ",\"jitter_p50_ms\":%" PRId64 ",\"jitter_p99_ms\":%" PRId64 ",\"jitter_p999_ms\":%" PRId64
           ",\"jitter_max_ms\":%" PRId64 ",\"late_max_ms\":%" PRId64 ",\"early_max_ms\":%" PRId64
           ",\"start_late_p50_us\":%" PRIu64 ",\"start_late_p99_us\":%" PRIu64 ",\"start_late_max_us\":%" PRIu64
           ",\"missed\":%" PRIu64 ",\"cpu_s\":%.3f,\"cpu_pct\":%.1f}\n",
           n_dev, n_ep, threads, g_n_reads, interval_ms, secs, polls, failed, secs > 0 ? (double)polls / secs : 0,
           pmin == UINT64_MAX ? 0 : pmin, pmax, n_jit, PI(jit, n_jit, 0.5), PI(jit, n_jit, 0.99),
           PI(jit, n_jit, 0.999), n_jit ? jit[n_jit - 1] : 0, late_max, early_max, PI(late, n_late, 0.5),
           PI(late, n_late, 0.99), n_late ? late[n_late - 1] : 0, missed, c1 - c0,
           secs > 0 ? (c1 - c0) / secs * 100.0 : 0);
#undef PI
    free(jit);
    free(late);
    free(devs);
    free(ws);
    return 0;
}
