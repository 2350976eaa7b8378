/* bench_ws_clients - the WebSocket load client of tools/bench/run (row g).
 *
 * One thread, epoll, plain non-blocking sockets and a minimal RFC 6455 client
 * (handshake, masked text frames out, unmasked frames in, continuation, ping,
 * close): opens N connections to ws://127.0.0.1:PORT/PATH, optionally sends
 * ccgw's `auth` and `sub` on each, then counts what arrives:
 *   frames (data frames, counted when complete; also frames started, with
 *   their sizes from the headers), bytes (as received, frame headers
 *   included), msgs (`"op":"msg"` inside them: ccgw's `batch`
 *   frames hold several; for a frame without any, 1), bytes, and the latency
 *   CLOCK_MONOTONIC now - `"t_ns":N` of every stamped message (loadgen's
 *   t_ns with clock monotonic, or ccgw-bench-lws-raw's), in a 10 us histogram.
 * Measurement window: it starts `--warmup-ms` after all N are connected (and
 * subscribed) and the first stamped message arrived, and lasts `--duration`
 * seconds. Prints one JSON line on stdout. Close frames received (code 1008
 * "too slow" and others) and connections lost are counted.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"

#define HIST_US 10
#define HIST_N 1000000 /* 10 s at 10 us */

typedef struct conn {
    int fd;
    int state; /* 0 connecting, 1 handshake sent, 2 open, 3 dead */
    unsigned char *buf;
    size_t len, cap;
    /* continuation: counted at the final fragment */
    bool in_frag;
    bool hdr_counted; /* the frame in progress was counted as started */
    uint64_t cur_pl;  /* its payload length */
} conn_t;

static struct {
    int port;
    const char *path, *token, *filter, *ready_file, *go_file;
    int n, windows;
    double duration;
    int warmup_ms, connect_timeout_s, rate_open;
} o = {.path = "/ws", .n = 1000, .duration = 5, .warmup_ms = 1000, .connect_timeout_s = 60, .rate_open = 4000, .windows = 1};

static uint32_t *hist;
static uint64_t lat_n, lat_over;
static bool measuring;
static uint64_t m_frames, m_msgs, m_bytes, m_fbytes, m_stamped, m_started, m_sbytes;
static uint64_t t_frames, t_msgs; /* whole run */
static uint64_t closes_1008, closes_other, lost;
static int n_open, n_dead;
static bool first_stamp_seen;

static void die(const char *m)
{
    perror(m);
    exit(1);
}

/* a masked (zero mask key: allowed, the payload goes as is) client frame */
static int send_frame(int fd, int opcode, const char *p, size_t n)
{
    unsigned char h[14];
    size_t hl = 0;
    h[hl++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        h[hl++] = (unsigned char)(0x80 | n);
    } else {
        h[hl++] = 0x80 | 126;
        h[hl++] = (unsigned char)(n >> 8);
        h[hl++] = (unsigned char)n;
    }
    memset(h + hl, 0, 4);
    hl += 4;
    if (bench_send_all(fd, h, hl) || (n && bench_send_all(fd, p, n)))
        return -1;
    return 0;
}

static void conn_dead(conn_t *c, int epfd)
{
    if (c->state == 3)
        return;
    if (c->state == 2)
        n_open--;
    c->state = 3;
    n_dead++;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

static void count_payload(const unsigned char *p, size_t n, uint64_t now)
{
    uint64_t msgs = 0;
    const unsigned char *e = p + n, *q = p;
    static const char K_MSG[] = "\"op\":\"msg\"", K_T[] = "\"t_ns\":";
    while ((q = memmem(q, (size_t)(e - q), K_MSG, sizeof K_MSG - 1))) {
        msgs++;
        q += sizeof K_MSG - 1;
    }
    if (!msgs)
        msgs = 1;
    uint64_t stamped = 0;
    q = p;
    while ((q = memmem(q, (size_t)(e - q), K_T, sizeof K_T - 1))) {
        q += sizeof K_T - 1;
        uint64_t v = 0;
        while (q < e && *q >= '0' && *q <= '9')
            v = v * 10 + (uint64_t)(*q++ - '0');
        stamped++;
        first_stamp_seen = true;
        if (measuring && v && now >= v) {
            uint64_t b = (now - v) / 1000 / HIST_US;
            if (b >= HIST_N) {
                lat_over++;
                b = HIST_N - 1;
            }
            hist[b]++;
            lat_n++;
        }
    }
    t_frames++;
    t_msgs += msgs;
    if (measuring) {
        m_frames++;
        m_msgs += msgs;
        m_fbytes += n;
        m_stamped += stamped;
    }
}

/* parse complete frames in c->buf; returns -1 when the connection is over */
static int conn_parse(conn_t *c, int epfd)
{
    size_t off = 0;
    uint64_t now = bench_now_ns(CLOCK_MONOTONIC);
    for (;;) {
        unsigned char *p = c->buf + off;
        size_t avail = c->len - off;
        if (avail < 2)
            break;
        int op = p[0] & 0x0f;
        bool fin = p[0] & 0x80;
        uint64_t pl = p[1] & 0x7f;
        size_t hl = 2;
        if (p[1] & 0x80)
            hl += 4; /* a masked server frame: not expected, skip the key */
        if (pl == 126) {
            if (avail < 4)
                break;
            pl = ((uint64_t)p[2] << 8) | p[3];
            hl += 2;
        } else if (pl == 127) {
            if (avail < 10)
                break;
            pl = 0;
            for (int i = 0; i < 8; i++)
                pl = (pl << 8) | p[2 + i];
            hl += 8;
        }
        if (avail < hl + pl) {
            if (!c->hdr_counted && measuring && op != 8 && op != 9 && op != 10) {
                m_started++; /* frame sizes known from their headers: big frames take long to complete */
                m_sbytes += pl;
            }
            c->hdr_counted = true;
            c->cur_pl = pl;
            size_t need = hl + pl;
            if (need > c->cap) { /* grow to hold this frame */
                if (off) {
                    memmove(c->buf, c->buf + off, avail);
                    c->len = avail;
                    off = 0;
                }
                unsigned char *nb = realloc(c->buf, need);
                if (!nb)
                    die("realloc");
                c->buf = nb;
                c->cap = need;
            }
            break;
        }
        const unsigned char *pay = p + hl;
        if (!c->hdr_counted && measuring && op != 8 && op != 9 && op != 10) {
            m_started++;
            m_sbytes += pl;
        }
        c->hdr_counted = false;
        if (op == 1 || op == 2 || op == 0) {
            /* counted at the final fragment (its payload only: lws writes whole frames here) */
            if (fin)
                count_payload(pay, pl, now);
            c->in_frag = !fin;
        } else if (op == 8) {
            int code = pl >= 2 ? (pay[0] << 8 | pay[1]) : 0;
            if (code == 1008)
                closes_1008++;
            else
                closes_other++;
            if (code == 1008 || code != 1001)
                fprintf(stderr, "bench-ws-clients: close %d %.*s\n", code, (int)(pl > 2 ? pl - 2 : 0), pay + 2);
            conn_dead(c, epfd);
            return -1;
        } else if (op == 9) {
            send_frame(c->fd, 10, (const char *)pay, pl);
        }
        off += hl + pl;
    }
    if (off) {
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
    }
    /* give back what a big frame took */
    if (c->cap > 65536 && c->len < 4096) {
        unsigned char *nb = realloc(c->buf, 16384);
        if (nb) {
            c->buf = nb;
            c->cap = 16384;
        }
    }
    return 0;
}

static void conn_read(conn_t *c, int epfd)
{
    for (;;) {
        if (c->cap - c->len < 4096) {
            size_t nc = c->cap ? c->cap * 2 : 16384;
            unsigned char *nb = realloc(c->buf, nc);
            if (!nb)
                die("realloc");
            c->buf = nb;
            c->cap = nc;
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            lost++;
            conn_dead(c, epfd);
            return;
        }
        if (r == 0) {
            lost++;
            conn_dead(c, epfd);
            return;
        }
        c->len += (size_t)r;
        if (measuring)
            m_bytes += (uint64_t)r; /* as received: exact even with frames longer than the window */
        if (c->state == 1) {
            unsigned char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (!e)
                continue;
            if (c->len < 12 || memcmp(c->buf + 9, "101", 3) != 0) {
                fprintf(stderr, "bench-ws-clients: upgrade refused: %.*s\n", (int)(e - c->buf), c->buf);
                conn_dead(c, epfd);
                return;
            }
            size_t hl = (size_t)(e + 4 - c->buf);
            memmove(c->buf, c->buf + hl, c->len - hl);
            c->len -= hl;
            c->state = 2;
            n_open++;
            char m[600];
            if (o.token) {
                int l = snprintf(m, sizeof m, "{\"op\":\"auth\",\"id\":1,\"token\":\"%s\"}", o.token);
                send_frame(c->fd, 1, m, (size_t)l);
            }
            if (o.filter) {
                int l = snprintf(m, sizeof m, "{\"op\":\"sub\",\"id\":2,\"filter\":\"%s\"}", o.filter);
                send_frame(c->fd, 1, m, (size_t)l);
            }
        }
        if (c->state == 2 && conn_parse(c, epfd) < 0)
            return;
    }
}

static int conn_start(conn_t *c, int epfd, int idx)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    c->state = 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)idx};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void conn_handshake(conn_t *c, int epfd)
{
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
        errno = err;
        perror("bench-ws-clients: connect");
        conn_dead(c, epfd);
        return;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     o.path, o.port);
    c->state = 1;
    if (bench_send_all(c->fd, req, (size_t)n)) {
        conn_dead(c, epfd);
        return;
    }
}

static uint64_t pct(double p)
{
    if (!lat_n)
        return 0;
    uint64_t want = (uint64_t)(p * (double)lat_n), acc = 0;
    if (want >= lat_n)
        want = lat_n - 1;
    for (uint64_t i = 0; i < HIST_N; i++) {
        acc += hist[i];
        if (acc > want)
            return i * HIST_US + HIST_US / 2;
    }
    return (uint64_t)HIST_N * HIST_US;
}

static uint64_t cpu_mstart; /* this process's CPU time at the window's start */
static conn_t *conns;
static int n_conns;

static void report(int window, uint64_t t0, uint64_t t_conn, double secs)
{
    /* frames being received at the end of the window: with frames of hundreds of KB and a short
     * window, none may start or complete inside it */
    uint64_t inflight = 0, inflight_bytes = 0;
    for (int i = 0; i < n_conns; i++) {
        if (conns[i].state == 2 && conns[i].hdr_counted) {
            inflight++;
            inflight_bytes += conns[i].cur_pl;
        }
    }
    double cpu_pct = secs > 0 ? (double)(bench_now_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu_mstart) / 1e9 / secs * 100 : 0;
    printf("{\"window\":%d,\"cpu_pct\":%.0f,\"clients\":%d,\"open\":%d,\"dead\":%d,\"connect_s\":%.3f,\"seconds\":%.3f,"
           "\"frames\":%" PRIu64 ",\"msgs\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"stamped\":%" PRIu64 ","
           "\"frames_per_s\":%.1f,\"msgs_per_s\":%.1f,\"bytes_per_s\":%.1f,\"frame_bytes_avg\":%.1f,"
           "\"msgs_per_frame\":%.2f,\"frames_started\":%" PRIu64 ",\"started_bytes_avg\":%.1f,\"frames_inflight\":%" PRIu64 ",\"inflight_bytes_avg\":%.1f,\"lat_n\":%" PRIu64 ",\"lat_over_10s\":%" PRIu64 ","
           "\"lat_p50_us\":%" PRIu64 ",\"lat_p99_us\":%" PRIu64 ",\"lat_p999_us\":%" PRIu64 ","
           "\"closes_1008\":%" PRIu64 ",\"closes_other\":%" PRIu64 ",\"lost\":%" PRIu64 ","
           "\"frames_total\":%" PRIu64 ",\"msgs_total\":%" PRIu64 "}\n",
           window, cpu_pct, o.n, n_open, n_dead, t_conn ? (double)(t_conn - t0) / 1e9 : -1.0, secs, m_frames, m_msgs, m_bytes,
           m_stamped, secs > 0 ? (double)m_frames / secs : 0, secs > 0 ? (double)m_msgs / secs : 0,
           secs > 0 ? (double)m_bytes / secs : 0, m_frames ? (double)m_fbytes / (double)m_frames : 0,
           m_frames ? (double)m_msgs / (double)m_frames : 0, m_started,
           m_started ? (double)m_sbytes / (double)m_started : 0, inflight,
           inflight ? (double)inflight_bytes / (double)inflight : 0, lat_n, lat_over, pct(0.50), pct(0.99), pct(0.999),
           closes_1008, closes_other, lost, t_frames, t_msgs);
    fflush(stdout);
    m_frames = m_msgs = m_bytes = m_fbytes = m_started = m_sbytes = m_stamped = lat_n = lat_over = 0;
    memset(hist, 0, HIST_N * sizeof *hist);
}

static void usage(void)
{
    fprintf(stderr, "usage: ccgw-bench-ws-clients --port P [--path /ws] [--clients N] [--token T] [--sub FILTER]\n"
                    "       [--duration S] [--warmup-ms MS] [--ready-file F] [--connect-timeout-s S]\n"
                    "       [--windows K --go-file PREFIX]  (window k>1 starts when PREFIX.k exists)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(a, "--port"))
            o.port = atoi(v);
        else if (!strcmp(a, "--path"))
            o.path = v;
        else if (!strcmp(a, "--clients"))
            o.n = atoi(v);
        else if (!strcmp(a, "--token"))
            o.token = v;
        else if (!strcmp(a, "--sub"))
            o.filter = v;
        else if (!strcmp(a, "--duration"))
            o.duration = atof(v);
        else if (!strcmp(a, "--warmup-ms"))
            o.warmup_ms = atoi(v);
        else if (!strcmp(a, "--ready-file"))
            o.ready_file = v;
        else if (!strcmp(a, "--windows"))
            o.windows = atoi(v);
        else if (!strcmp(a, "--go-file"))
            o.go_file = v;
        else if (!strcmp(a, "--connect-timeout-s"))
            o.connect_timeout_s = atoi(v);
        else
            usage();
    }
    if (!o.port || o.n < 1)
        usage();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.n + 16) {
        fprintf(stderr, "bench-ws-clients: RLIMIT_NOFILE %llu < %d clients\n", (unsigned long long)rl.rlim_cur, o.n);
        return 1;
    }
    hist = calloc(HIST_N, sizeof *hist);
    conn_t *cs = calloc((size_t)o.n, sizeof *cs);
    conns = cs;
    n_conns = o.n;
    if (!hist || !cs)
        die("calloc");
    int epfd = epoll_create1(0);
    if (epfd < 0)
        die("epoll_create1");

    uint64_t t0 = bench_now_ns(CLOCK_MONOTONIC), t_conn = 0, t_mstart = 0, t_mend = 0, t_wait = 0;
    int started = 0, window = 1;
    struct epoll_event evs[512];
    for (;;) {
        uint64_t now = bench_now_ns(CLOCK_MONOTONIC);
        /* open in steps so that the server's accept backlog keeps up */
        int target = (int)((now - t0) / 1000000ull * (uint64_t)o.rate_open / 1000) + 64;
        while (started < o.n && started < target && started - n_open - n_dead < 256) {
            if (conn_start(&cs[started], epfd, started) < 0) {
                perror("bench-ws-clients: socket/connect");
                cs[started].state = 3;
                n_dead++;
            }
            started++;
        }
        if (!t_conn && started == o.n && n_open + n_dead >= o.n) {
            t_conn = now;
            fprintf(stderr, "bench-ws-clients: %d open, %d failed in %.2f s\n", n_open, n_dead, (double)(now - t0) / 1e9);
            if (o.ready_file) {
                FILE *f = fopen(o.ready_file, "w");
                if (f) {
                    fprintf(f, "%d\n", n_open);
                    fclose(f);
                }
            }
        }
        if (!t_conn && now - t0 > (uint64_t)o.connect_timeout_s * 1000000000ull) {
            fprintf(stderr, "bench-ws-clients: only %d of %d open after %d s\n", n_open, o.n, o.connect_timeout_s);
            t_conn = now;
        }
        bool go = false;
        if (t_conn && !t_mstart) {
            if (window == 1) {
                go = first_stamp_seen;
            } else if (o.go_file) {
                char gf[600];
                snprintf(gf, sizeof gf, "%s.%d", o.go_file, window);
                go = access(gf, F_OK) == 0;
            }
        }
        if (go) {
            t_mstart = now + (uint64_t)o.warmup_ms * 1000000ull;
            t_mend = t_mstart + (uint64_t)(o.duration * 1e9);
        }
        if (t_mstart && !measuring && now >= t_mstart && now < t_mend) {
            measuring = true;
            cpu_mstart = bench_now_ns(CLOCK_PROCESS_CPUTIME_ID);
        }
        if (t_mend && now >= t_mend) {
            measuring = false;
            report(window, t0, t_conn, o.duration);
            if (++window > o.windows)
                break;
            t_mstart = t_mend = 0;
            t_wait = now;
        }
        if (window > 1 && !t_mstart && now - t_wait > 120000000000ull) {
            fprintf(stderr, "bench-ws-clients: no go for window %d within 120 s\n", window);
            break;
        }
        if (window == 1 && t_conn && !t_mstart && now - t_conn > 60000000000ull) {
            fprintf(stderr, "bench-ws-clients: no stamped message within 60 s\n");
            break;
        }
        int k = epoll_wait(epfd, evs, 512, 5);
        for (int i = 0; i < k; i++) {
            conn_t *c = &cs[evs[i].data.u32];
            if (c->state == 3)
                continue;
            if (c->state == 0) {
                conn_handshake(c, epfd);
                if (c->state == 1) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[i].data.u32};
                    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                }
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                conn_read(c, epfd);
        }
    }
    if (window <= o.windows && measuring)
        report(window, t0, t_conn, (double)(bench_now_ns(CLOCK_MONOTONIC) - t_mstart) / 1e9);
    return 0;
}
