/*
 * ccgw-bench-sub - the measuring subscriber (a minimal MQTT v5 client on a
 * plain socket: no libmosquitto on the receive path).
 *
 * Why not libmosquitto: its loop reads one packet per mosquitto_loop() call
 * at QoS 0 (a poll() and several recv() of a few bytes per message) and
 * allocates the message, its topic and payload; that capped this subscriber
 * at 17-36k msgs/s on the 2-core bench machine, close to what it measures.
 * Here one recv() takes up to 256 KiB (hundreds of messages), packets are
 * parsed in place, nothing is allocated per message, and QoS 1 PUBACKs are
 * written in one send() per read. The JSON output reports its own CPU time
 * (cpu_s) so its cost is visible next to what it measures.
 *
 * Subscribes to one or more topic filters and, for every message:
 *  - checks the per-topic "seq" (a topic is one device and kind): it keeps
 *    the highest seq and a window of the last 8,192 seqs seen, so that a
 *    seq at or below the highest one is either a duplicate (seen before) or
 *    a late arrival (reordered: it fills a gap). gaps = seqs never seen
 *    between 1 and the highest one at the end; unique = received - duplicates
 *    (only messages with a seq); on .../state topics gaps are expected
 *    (coalescing) and only order is checked;
 *  - takes the latency now - "t_ns" (embedded by loadgen and ccgw-bench-pub;
 *    same clock, same host); with BENCH_SUB_DUMP=PATH in the environment it
 *    also writes every latency (ns, one per line, in arrival order) to PATH,
 *    to see when a tail happened (clusters = a stall, spread = a cost);
 *  - optionally counts distinct .../state topics whose payload says
 *    "online":true (start-up of many devices);
 *  - optionally samples the broker's $SYS/broker/publish/messages/received
 *    (and .../sent) counters (what reached and left the broker, whoever sent it).
 *  - poll jitter (--jitter-interval-ms I, row (h)): per data topic, the
 *    envelope's "ts" (ms, the gateway's clock) of consecutive messages; each
 *    interval minus I is one sample. It waits until --expect-topics data
 *    topics have spoken, then --settle-ms, then measures --window-s seconds
 *    (writing --window-file when the window opens) and stops: jitter
 *    p50/p99/max of |interval - I|, the largest late and early deviations,
 *    messages per topic in the window (min/max) and seq gaps in the window.
 * It stops after --count unique messages (or the count written into --count-file
 * once the sender knows it: the file is read when it appears), --idle-ms
 * without messages (once one arrived), --sys-idle-ms without a rise of the
 * broker's received counter (once it rose), --distinct-online N devices
 * online, or --timeout-s, and prints one JSON object on stdout.
 *
 *   ccgw-bench-sub --port P --topic F [--topic F2 ...] [--qos 0|1] [--count N] [--count-file PATH]
 *                  [--idle-ms MS] [--timeout-s S] [--distinct-online N]
 *                  [--sys] [--sys-idle-ms MS] [--clock monotonic|realtime] [--ready-file PATH]
 *                  [--max-samples N]
 *                  [--jitter-interval-ms I --expect-topics N [--settle-ms MS] [--window-s S]
 *                   [--window-file PATH]]
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

#define SEQ_WIN 8192u /* bits of the per-topic window of seqs seen */
#define RBUF (256u * 1024u)
#define MAX_PACKET (4u * 1024u * 1024u)

typedef struct topic_ent {
    char *topic;
    size_t len;
    uint64_t hash;
    uint64_t max_seq; /* highest seq seen, 0 = none */
    uint64_t gaps;    /* seqs never seen in 1..max_seq (so far) */
    uint64_t *win;    /* bit (seq % SEQ_WIN): seq seen, for seqs in (max_seq - SEQ_WIN, max_seq] */
    bool online, state;
    /* jitter mode */
    int64_t last_ts_ms; /* envelope ts of the last message, 0 = none */
    uint64_t w_msgs, w_last_seq, w_gaps; /* in the measuring window */
} topic_ent_t;

typedef struct sub {
    clockid_t clk;
    int n_sub_acks;
    /* counts */
    uint64_t received, bytes, with_seq, dups, reordered, too_old;
    uint64_t first_ns, last_ns; /* CLOCK_MONOTONIC arrival times */
    /* topics: open addressing */
    topic_ent_t *tab;
    size_t cap, n_topics;
    /* latency samples in ns */
    uint64_t *lat;
    size_t n_lat, cap_lat;
    /* start-up */
    uint64_t want_online, n_online, online_reached_rt;
    /* $SYS samples: received and sent counters */
    bool sys;
    uint64_t sys_t[4096], sys_v[4096], sys_st[4096], sys_sv[4096];
    size_t n_sys, n_sys_sent;
    uint64_t sys_changed_ns; /* last rise of the received counter (after the first sample) */
    /* jitter mode (row h): 0 waiting for the topics, 1 settling, 2 measuring, 3 done */
    uint64_t jit_interval_ms, expect_topics, n_data_topics;
    int jit_state;
    uint64_t jit_t0; /* CLOCK_MONOTONIC: start of the current state */
    int64_t *jit;
    size_t n_jit, cap_jit;
    uint64_t w_msgs, w_no_ts;
    /* QoS 1 acknowledgements of the current read, written in one send() */
    unsigned char *ack;
    size_t n_ack, cap_ack;
} sub_t;

static uint64_t hash_mem(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool ends_with(const char *s, size_t a, const char *suffix)
{
    size_t b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

static topic_ent_t *topic_get(sub_t *s, const char *t, size_t len)
{
    if ((s->n_topics + 1) * 2 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        topic_ent_t *nt = calloc(nc, sizeof *nt);
        if (!nt)
            abort();
        for (size_t i = 0; i < s->cap; i++)
            if (s->tab[i].topic) {
                size_t j = s->tab[i].hash & (nc - 1);
                while (nt[j].topic)
                    j = (j + 1) & (nc - 1);
                nt[j] = s->tab[i];
            }
        free(s->tab);
        s->tab = nt;
        s->cap = nc;
    }
    uint64_t h = hash_mem(t, len);
    size_t j = h & (s->cap - 1);
    while (s->tab[j].topic) {
        if (s->tab[j].hash == h && s->tab[j].len == len && memcmp(s->tab[j].topic, t, len) == 0)
            return &s->tab[j];
        j = (j + 1) & (s->cap - 1);
    }
    topic_ent_t *e = &s->tab[j];
    e->topic = malloc(len + 1);
    if (!e->topic)
        abort();
    memcpy(e->topic, t, len);
    e->topic[len] = '\0';
    e->len = len;
    e->hash = h;
    e->state = ends_with(t, len, "/state");
    s->n_topics++;
    if (!e->state)
        s->n_data_topics++;
    return e;
}

static inline bool win_test(const topic_ent_t *e, uint64_t seq)
{
    return e->win[(seq % SEQ_WIN) / 64] >> (seq % 64) & 1u;
}
static inline void win_set(topic_ent_t *e, uint64_t seq) { e->win[(seq % SEQ_WIN) / 64] |= 1ull << (seq % 64); }
static inline void win_clear(topic_ent_t *e, uint64_t seq)
{
    e->win[(seq % SEQ_WIN) / 64] &= ~(1ull << (seq % 64));
}

/* one seq on a data topic: duplicate, late arrival (fills a gap) or new */
static void seq_data(sub_t *s, topic_ent_t *e, uint64_t seq, bool retain)
{
    if (!e->win) {
        e->win = calloc(SEQ_WIN / 64, sizeof *e->win);
        if (!e->win)
            abort();
    }
    if (seq == 0)
        return;
    if (seq > e->max_seq) {
        /* the seqs skipped are gaps for now; clear their window bits */
        uint64_t from = e->max_seq + 1;
        if (e->max_seq == 0 && retain)
            from = seq; /* a retained first message: what came before is not ours to count */
        else
            e->gaps += seq - from;
        uint64_t clr_from = seq - from >= SEQ_WIN ? seq - SEQ_WIN + 1 : from;
        for (uint64_t q = clr_from; q < seq; q++)
            win_clear(e, q);
        win_set(e, seq);
        e->max_seq = seq;
        return;
    }
    if (seq + SEQ_WIN <= e->max_seq) {
        s->too_old++; /* outside the window: a duplicate or a very late one, cannot tell */
        return;
    }
    if (win_test(e, seq)) {
        s->dups++;
    } else {
        s->reordered++;
        win_set(e, seq);
        if (e->gaps)
            e->gaps--;
    }
}

/* days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil) */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* the envelope's "ts":"YYYY-MM-DDTHH:MM:SS.mmmZ" in ms since the epoch; 0 when absent */
static int64_t json_ts_ms(const char *pl, size_t len)
{
    const char *p = memmem(pl, len, "\"ts\":\"", 6);
    if (!p || (size_t)(pl + len - p) < 6 + 24)
        return 0;
    p += 6;
    int v[7] = {0};
    static const unsigned off[7] = {0, 5, 8, 11, 14, 17, 20}, w[7] = {4, 2, 2, 2, 2, 2, 3};
    for (int i = 0; i < 7; i++)
        for (unsigned k = 0; k < w[i]; k++) {
            char c = p[off[i] + k];
            if (c < '0' || c > '9')
                return 0;
            v[i] = v[i] * 10 + (c - '0');
        }
    return ((days_from_civil(v[0], (unsigned)v[1], (unsigned)v[2]) * 24 + v[3]) * 60 + v[4]) * 60000 +
           (int64_t)v[5] * 1000 + v[6];
}

/* jitter mode: one data message of topic e */
static void jitter_msg(sub_t *s, topic_ent_t *e, const char *pl, size_t len, uint64_t seq)
{
    int64_t ts = json_ts_ms(pl, len);
    if (s->jit_state == 2) {
        s->w_msgs++;
        if (!ts)
            s->w_no_ts++;
        if (e->w_msgs && seq > e->w_last_seq + 1)
            e->w_gaps += seq - e->w_last_seq - 1;
        e->w_msgs++;
        e->w_last_seq = seq;
        if (ts && e->last_ts_ms) {
            if (s->n_jit == s->cap_jit) {
                size_t nc = s->cap_jit ? s->cap_jit * 2 : 65536;
                int64_t *nj = realloc(s->jit, nc * sizeof *nj);
                if (!nj)
                    abort();
                s->jit = nj;
                s->cap_jit = nc;
            }
            s->jit[s->n_jit++] = ts - e->last_ts_ms - (int64_t)s->jit_interval_ms;
        }
    }
    if (ts)
        e->last_ts_ms = ts;
}

static void on_message(sub_t *s, const char *topic, size_t tlen, const char *pl, size_t len, bool retain,
                       uint64_t arrive, uint64_t mono)
{
    if (tlen && topic[0] == '$') {
        if (s->sys && len) {
            char tmp[32];
            size_t n = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
            memcpy(tmp, pl, n);
            tmp[n] = '\0';
            if (ends_with(topic, tlen, "/received")) {
                if (s->n_sys < sizeof s->sys_t / sizeof s->sys_t[0]) {
                    uint64_t v = strtoull(tmp, NULL, 10);
                    if (s->n_sys && v != s->sys_v[s->n_sys - 1])
                        s->sys_changed_ns = mono;
                    s->sys_t[s->n_sys] = mono;
                    s->sys_v[s->n_sys++] = v;
                }
            } else if (s->n_sys_sent < sizeof s->sys_st / sizeof s->sys_st[0]) {
                s->sys_st[s->n_sys_sent] = mono;
                s->sys_sv[s->n_sys_sent++] = strtoull(tmp, NULL, 10);
            }
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
    if (bench_json_u64(pl, len, "seq", &seq)) {
        s->with_seq++;
        topic_ent_t *e = topic_get(s, topic, tlen);
        if (e->state) {
            if (e->max_seq && seq <= e->max_seq)
                s->reordered++;
            if (seq > e->max_seq)
                e->max_seq = seq;
            if (s->want_online && !e->online && memmem(pl, len, "\"online\":true", 13)) {
                e->online = true;
                if (++s->n_online == s->want_online)
                    s->online_reached_rt = bench_now_ns(CLOCK_REALTIME);
            }
        } else {
            seq_data(s, e, seq, retain);
            if (s->jit_interval_ms && !retain)
                jitter_msg(s, e, pl, len, seq);
        }
    }
    if (!retain && bench_json_u64(pl, len, "t_ns", &t_ns) && s->n_lat < s->cap_lat)
        s->lat[s->n_lat++] = arrive > t_ns ? arrive - t_ns : 0;
}

/* ---- MQTT v5 on a plain socket ------------------------------------------------ */

static size_t put_varint(unsigned char *o, size_t v)
{
    size_t n = 0;
    do {
        unsigned char b = v % 128;
        v /= 128;
        o[n++] = (unsigned char)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

static size_t put_str(unsigned char *o, const char *s)
{
    size_t l = strlen(s);
    o[0] = (unsigned char)(l >> 8);
    o[1] = (unsigned char)l;
    memcpy(o + 2, s, l);
    return l + 2;
}

/* a packet: fixed header byte, remaining length, body */
static int send_packet(int fd, unsigned char type, const unsigned char *body, size_t n)
{
    unsigned char hdr[5];
    hdr[0] = type;
    size_t h = 1 + put_varint(hdr + 1, n);
    unsigned char *pk = malloc(h + n);
    if (!pk)
        return -1;
    memcpy(pk, hdr, h);
    memcpy(pk + h, body, n);
    int rc = bench_send_all(fd, pk, h + n);
    free(pk);
    return rc;
}

/* parse a variable byte integer at p (at most 4 bytes, end e): bytes used, 0 = incomplete, -1 = bad */
static int get_varint(const unsigned char *p, const unsigned char *e, size_t *v)
{
    size_t val = 0, mul = 1;
    for (int i = 0; i < 4; i++) {
        if (p + i >= e)
            return 0;
        val += (size_t)(p[i] & 0x7f) * mul;
        if (!(p[i] & 0x80)) {
            *v = val;
            return i + 1;
        }
        mul *= 128;
    }
    return -1;
}

static void ack_add(sub_t *s, unsigned hi, unsigned lo)
{
    if (s->n_ack + 4 > s->cap_ack) {
        size_t nc = s->cap_ack ? s->cap_ack * 2 : 4096;
        unsigned char *na = realloc(s->ack, nc);
        if (!na)
            abort();
        s->ack = na;
        s->cap_ack = nc;
    }
    unsigned char *a = s->ack + s->n_ack;
    a[0] = 0x40;
    a[1] = 2;
    a[2] = (unsigned char)hi;
    a[3] = (unsigned char)lo;
    s->n_ack += 4;
}

/* one whole packet (type byte b, body of n bytes); -1 = protocol error or disconnect */
static int on_packet(sub_t *s, unsigned char b, const unsigned char *p, size_t n, uint64_t arrive, uint64_t mono,
                     bool *connacked)
{
    switch (b >> 4) {
    case 3: { /* PUBLISH */
        unsigned qos = (b >> 1) & 3;
        if (n < 2)
            return -1;
        size_t tl = (size_t)p[0] << 8 | p[1], off = 2 + tl;
        if (off > n)
            return -1;
        const char *topic = (const char *)p + 2;
        if (qos) {
            if (off + 2 > n)
                return -1;
            ack_add(s, p[off], p[off + 1]);
            off += 2;
        }
        size_t pl = 0;
        int k = get_varint(p + off, p + n, &pl);
        if (k <= 0 || off + (size_t)k + pl > n)
            return -1;
        off += (size_t)k + pl;
        on_message(s, topic, tl, (const char *)p + off, n - off, b & 1, arrive, mono);
        return 0;
    }
    case 2: /* CONNACK: flags, reason code */
        if (n < 2 || p[1] != 0) {
            fprintf(stderr, "ccgw-bench-sub: CONNACK reason %d\n", n >= 2 ? p[1] : -1);
            return -1;
        }
        *connacked = true;
        return 0;
    case 9: /* SUBACK */
        s->n_sub_acks++;
        return 0;
    case 13: /* PINGRESP */
        return 0;
    case 14: /* DISCONNECT */
        fprintf(stderr, "ccgw-bench-sub: DISCONNECT from the broker (reason %d)\n", n ? p[0] : 0);
        return -1;
    default:
        return 0;
    }
}

typedef struct conn {
    int fd;
    unsigned char *buf;
    size_t have;
} conn_t;

/* read what is there (waiting at most timeout_ms) and handle every whole packet; -1 = connection lost */
static int conn_pump(conn_t *c, sub_t *s, int timeout_ms, bool *connacked)
{
    struct pollfd pf = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&pf, 1, timeout_ms);
    if (pr < 0)
        return errno == EINTR ? 0 : -1;
    if (pr == 0)
        return 0;
    size_t room = RBUF + MAX_PACKET - c->have;
    ssize_t r = recv(c->fd, c->buf + c->have, room < RBUF ? room : RBUF, 0);
    if (r == 0)
        return -1;
    if (r < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -1;
    c->have += (size_t)r;
    uint64_t arrive = bench_now_ns(s->clk);
    uint64_t mono = s->clk == CLOCK_MONOTONIC ? arrive : bench_now_ns(CLOCK_MONOTONIC);
    const unsigned char *p = c->buf, *e = c->buf + c->have;
    int rc = 0;
    while (p + 2 <= e) {
        size_t rl = 0;
        int k = get_varint(p + 1, e, &rl);
        if (k < 0 || rl > MAX_PACKET) {
            rc = -1;
            break;
        }
        if (k == 0 || p + 1 + (size_t)k + rl > e)
            break;
        if (on_packet(s, p[0], p + 1 + k, rl, arrive, mono, connacked) < 0) {
            rc = -1;
            break;
        }
        p += 1 + (size_t)k + rl;
    }
    c->have = (size_t)(e - p);
    memmove(c->buf, p, c->have);
    if (s->n_ack) {
        if (bench_send_all(c->fd, s->ack, s->n_ack) < 0)
            rc = -1;
        s->n_ack = 0;
    }
    return rc;
}

static int tcp_connect(const char *host, int port)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1, rb = 4 << 20;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
    }
    return fd;
}

/* ---- results -------------------------------------------------------------------- */

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

/* a $SYS counter's slope over the samples while it was rising, leaving out the partly-idle
 * first and last intervals; *total = its rise */
static double sys_slope(const uint64_t *t, const uint64_t *v, size_t n, uint64_t *total)
{
    *total = 0;
    if (n < 2)
        return 0;
    size_t a = 0, b = n - 1;
    while (a + 1 < n && v[a + 1] == v[a])
        a++;
    while (b > a && v[b - 1] == v[b])
        b--;
    *total = v[b] - v[a];
    if (b >= a + 3) { /* at least two whole intervals inside */
        a++;
        b--;
    }
    return b > a ? (double)(v[b] - v[a]) / ((double)(t[b] - t[a]) / 1e9) : 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* jitter mode: a second JSON line with the window's figures (ms) */
static void print_jitter(sub_t *s, double secs)
{
    int64_t late = 0, early = 0;
    uint64_t tmin = UINT64_MAX, tmax = 0, gaps = 0, topics = 0, missed = 0;
    for (size_t i = 0; i < s->n_jit; i++) {
        if (s->jit[i] > late)
            late = s->jit[i];
        if (s->jit[i] < early)
            early = s->jit[i];
        s->jit[i] = s->jit[i] < 0 ? -s->jit[i] : s->jit[i];
        if ((uint64_t)s->jit[i] * 2 > s->jit_interval_ms)
            missed++; /* a poll skipped or more than half an interval late */
    }
    qsort(s->jit, s->n_jit, sizeof *s->jit, cmp_i64);
    for (size_t i = 0; i < s->cap; i++) {
        const topic_ent_t *e = &s->tab[i];
        if (!e->topic || e->state)
            continue;
        if (e->w_msgs)
            topics++;
        if (e->w_msgs < tmin)
            tmin = e->w_msgs;
        if (e->w_msgs > tmax)
            tmax = e->w_msgs;
        gaps += e->w_gaps;
    }
    size_t n = s->n_jit;
#define JP(q) (n ? s->jit[(size_t)((q) * (double)(n - 1) + 0.5)] : 0)
    printf("{\"jitter\":1,\"state\":%d,\"window_s\":%.3f,\"expected_topics\":%" PRIu64 ",\"window_topics\":%" PRIu64
           ",\"window_msgs\":%" PRIu64 ",\"msgs_per_s\":%.1f,\"per_topic_min\":%" PRIu64 ",\"per_topic_max\":%" PRIu64
           ",\"window_seq_gaps\":%" PRIu64 ",\"no_ts\":%" PRIu64 ",\"intervals\":%zu,\"jitter_p50_ms\":%" PRId64
           ",\"jitter_p99_ms\":%" PRId64 ",\"jitter_p999_ms\":%" PRId64 ",\"jitter_max_ms\":%" PRId64
           ",\"late_max_ms\":%" PRId64 ",\"early_max_ms\":%" PRId64 ",\"missed\":%" PRIu64 "}\n",
           s->jit_state, secs, s->expect_topics, topics, s->w_msgs, secs > 0 ? (double)s->w_msgs / secs : 0,
           tmin == UINT64_MAX ? 0 : tmin, tmax, gaps, s->w_no_ts, n, JP(0.5), JP(0.99), JP(0.999),
           n ? s->jit[n - 1] : 0, late, -early, missed);
#undef JP
}

static void usage(void)
{
    fprintf(stderr, "usage: ccgw-bench-sub --port P --topic FILTER [--topic ...] [--qos 0|1] "
                    "[--count N] [--count-file PATH] [--idle-ms MS] [--timeout-s S] [--distinct-online N] [--sys] "
                    "[--sys-idle-ms MS] [--clock monotonic|realtime] [--ready-file PATH] [--max-samples N] "
                    "[--jitter-interval-ms I --expect-topics N [--settle-ms MS] [--window-s S] [--window-file PATH]]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *ready_file = NULL, *count_file = NULL, *window_file = NULL;
    uint64_t settle_ms = 2000;
    double window_s = 10;
    const char *topics[16];
    int n_topics = 0, port = 0, qos = 1;
    uint64_t count = 0, idle_ms = 2000, sys_idle_ms = 0;
    double timeout_s = 60;
    static sub_t s = {.clk = CLOCK_MONOTONIC, .cap_lat = 4000000};
    static const struct option opts[] = {
        {"host", 1, NULL, 'h'},      {"port", 1, NULL, 'p'},        {"topic", 1, NULL, 't'},
        {"qos", 1, NULL, 'q'},       {"count", 1, NULL, 'n'},       {"idle-ms", 1, NULL, 'i'},
        {"timeout-s", 1, NULL, 'T'}, {"distinct-online", 1, NULL, 'o'}, {"sys", 0, NULL, 's'},
        {"clock", 1, NULL, 'c'},     {"ready-file", 1, NULL, 'r'},  {"max-samples", 1, NULL, 'm'},
        {"count-file", 1, NULL, 'C'}, {"sys-idle-ms", 1, NULL, 'S'},
        {"jitter-interval-ms", 1, NULL, 'J'}, {"expect-topics", 1, NULL, 'E'}, {"settle-ms", 1, NULL, 'L'},
        {"window-s", 1, NULL, 'W'}, {"window-file", 1, NULL, 'F'}, {NULL, 0, NULL, 0}};
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
        case 'S': sys_idle_ms = strtoull(optarg, NULL, 10); break;
        case 'c': s.clk = strcmp(optarg, "realtime") == 0 ? CLOCK_REALTIME : CLOCK_MONOTONIC; break;
        case 'r': ready_file = optarg; break;
        case 'm': s.cap_lat = strtoull(optarg, NULL, 10); break;
        case 'J': s.jit_interval_ms = strtoull(optarg, NULL, 10); break;
        case 'E': s.expect_topics = strtoull(optarg, NULL, 10); break;
        case 'L': settle_ms = strtoull(optarg, NULL, 10); break;
        case 'W': window_s = atof(optarg); break;
        case 'F': window_file = optarg; break;
        default: usage();
        }
    }
    if (port <= 0 || qos < 0 || qos > 1 || (n_topics == 0 && !s.sys) ||
        (s.jit_interval_ms && (!s.expect_topics || window_s <= 0)))
        usage();
    s.lat = malloc((s.cap_lat ? s.cap_lat : 1) * sizeof *s.lat);
    conn_t c = {.buf = malloc(RBUF + MAX_PACKET)};
    if (!s.lat || !c.buf)
        return 1;

    c.fd = tcp_connect(host, port);
    if (c.fd < 0) {
        fprintf(stderr, "ccgw-bench-sub: cannot connect to %s:%d\n", host, port);
        return 1;
    }
    /* CONNECT v5: clean start, keepalive 0 (no PINGREQ needed), Receive Maximum 65535 */
    unsigned char body[4096];
    size_t n = put_str(body, "MQTT");
    body[n++] = 5;    /* protocol level */
    body[n++] = 0x02; /* clean start */
    body[n++] = 0;
    body[n++] = 0; /* keepalive 0 */
    body[n++] = 3; /* properties: 3 bytes */
    body[n++] = 0x21;
    body[n++] = 0xff;
    body[n++] = 0xff;
    char id[64];
    snprintf(id, sizeof id, "bench-sub-%d", (int)getpid());
    n += put_str(body + n, id);
    bool connacked = false;
    if (send_packet(c.fd, 0x10, body, n) < 0)
        return 1;
    uint64_t t_start = bench_now_ns(CLOCK_MONOTONIC);
    while (!connacked && bench_now_ns(CLOCK_MONOTONIC) - t_start < 5000000000ull)
        if (conn_pump(&c, &s, 50, &connacked) < 0)
            break;
    if (!connacked) {
        fprintf(stderr, "ccgw-bench-sub: no CONNACK\n");
        return 1;
    }
    /* SUBSCRIBE: one packet per filter, retain as published on the data filters */
    int want_acks = 0;
    for (int i = 0; i < n_topics + (s.sys ? 2 : 0); i++) {
        const char *f = i < n_topics                ? topics[i]
                        : i == n_topics ? "$SYS/broker/publish/messages/received"
                                        : "$SYS/broker/publish/messages/sent";
        if (strlen(f) > sizeof body - 16)
            usage();
        n = 0;
        body[n++] = 0;
        body[n++] = (unsigned char)(i + 1); /* packet id */
        body[n++] = 0;                      /* no properties */
        n += put_str(body + n, f);
        body[n++] = i < n_topics ? (unsigned char)(qos | 0x08) : 0;
        if (send_packet(c.fd, 0x82, body, n) < 0)
            return 1;
        want_acks++;
    }
    while (s.n_sub_acks < want_acks && bench_now_ns(CLOCK_MONOTONIC) - t_start < 5000000000ull)
        if (conn_pump(&c, &s, 50, &connacked) < 0)
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
        if (conn_pump(&c, &s, 20, &connacked) < 0) {
            why = "connection lost";
            break;
        }
        uint64_t now = bench_now_ns(CLOCK_MONOTONIC);
        if (count_file && !count && now - count_checked > 100000000ull) { /* 10/s at most */
            count_checked = now;
            FILE *f = fopen(count_file, "r");
            unsigned long long cnt = 0;
            if (f) {
                if (fscanf(f, "%llu", &cnt) == 1 && cnt > 0)
                    count = cnt;
                fclose(f);
            }
        }
        if (count && s.received - s.dups >= count) {
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
        if (sys_idle_ms && s.sys_changed_ns && now - s.sys_changed_ns > sys_idle_ms * 1000000ull) {
            why = "sys idle";
            break;
        }
        if (s.jit_interval_ms) {
            if (s.jit_state == 0 && s.n_data_topics >= s.expect_topics) {
                s.jit_state = 1;
                s.jit_t0 = now;
            } else if (s.jit_state == 1 && now - s.jit_t0 >= settle_ms * 1000000ull) {
                s.jit_state = 2;
                s.jit_t0 = now;
                if (window_file) {
                    FILE *f = fopen(window_file, "w");
                    if (f) {
                        fputs("window\n", f);
                        fclose(f);
                    }
                }
            } else if (s.jit_state == 2 && (double)(now - s.jit_t0) / 1e9 >= window_s) {
                s.jit_state = 3;
                why = "window";
                break;
            }
        }
        if ((double)(now - t_start) / 1e9 > timeout_s)
            break;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                   (double)ru.ru_stime.tv_usec / 1e6;
    uint64_t gaps = 0;
    for (size_t i = 0; i < s.cap; i++)
        if (s.tab[i].topic && !s.tab[i].state)
            gaps += s.tab[i].gaps;
    const char *dump = getenv("BENCH_SUB_DUMP"); /* latencies in arrival order, one per line (ns) */
    FILE *df = dump ? fopen(dump, "w") : NULL;
    for (size_t i = 0; df && i < s.n_lat; i++)
        fprintf(df, "%llu\n", (unsigned long long)s.lat[i]);
    if (df)
        fclose(df);
    qsort(s.lat, s.n_lat, sizeof *s.lat, cmp_u64);
    double secs = s.last_ns > s.first_ns ? (double)(s.last_ns - s.first_ns) / 1e9 : 0;
    uint64_t sys_total = 0, sys_sent_total = 0;
    double sys_rate = sys_slope(s.sys_t, s.sys_v, s.n_sys, &sys_total);
    double sys_sent_rate = sys_slope(s.sys_st, s.sys_sv, s.n_sys_sent, &sys_sent_total);
    /* "lost" is the old name of "gaps" (kept for the scripts); "reordered" counts late arrivals
     * only (a seq below the highest one, not seen before), "duplicates" seqs seen twice */
    printf("{\"received\":%" PRIu64 ",\"unique\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"gaps\":%" PRIu64
           ",\"lost\":%" PRIu64 ",\"reordered\":%" PRIu64 ",\"too_old\":%" PRIu64
           ",\"stop\":\"%s\",\"topics\":%zu,\"with_seq\":%" PRIu64
           ",\"bytes_avg\":%.1f,\"seconds\":%.3f,"
           "\"rate\":%.1f,\"cpu_s\":%.3f,\"lat_samples\":%zu,\"lat_p50_us\":%.1f,\"lat_p99_us\":%.1f,"
           "\"lat_p999_us\":%.1f,\"lat_max_us\":%.1f,\"online\":%" PRIu64
           ",\"online_reached_realtime_ns\":%" PRIu64 ",\"sys_samples\":%zu,\"sys_rate\":%.1f,"
           "\"sys_total\":%" PRIu64 ",\"sys_sent_rate\":%.1f,\"sys_sent_total\":%" PRIu64 "}\n",
           s.received, s.received - s.dups, s.dups, gaps, gaps, s.reordered, s.too_old, why, s.n_topics,
           s.with_seq, s.received ? (double)s.bytes / (double)s.received : 0, secs,
           secs > 0 ? (double)(s.received - 1) / secs : 0, cpu_s, s.n_lat, pct(s.lat, s.n_lat, 0.5),
           pct(s.lat, s.n_lat, 0.99), pct(s.lat, s.n_lat, 0.999),
           s.n_lat ? (double)s.lat[s.n_lat - 1] / 1000.0 : 0, s.n_online, s.online_reached_rt, s.n_sys, sys_rate,
           sys_total, sys_sent_rate, sys_sent_total);
    if (s.jit_interval_ms)
        print_jitter(&s, s.jit_state == 3 ? window_s : (double)(bench_now_ns(CLOCK_MONOTONIC) - s.jit_t0) / 1e9);
    fflush(stdout);
    static const unsigned char disc[2] = {0xe0, 0};
    (void)bench_send_all(c.fd, disc, sizeof disc);
    close(c.fd);
    for (size_t i = 0; i < s.cap; i++) {
        free(s.tab[i].topic);
        free(s.tab[i].win);
    }
    free(s.tab);
    free(s.lat);
    free(s.ack);
    free(s.jit);
    free(c.buf);
    return 0;
}
