/* bench_lws_raw - the raw baseline of the WebSocket fan-out row (g) of
 * tools/bench/run: a minimal libwebsockets 4.1 broadcast server (default
 * poll loop, one service thread, no TLS, no extensions) that writes every
 * frame to every client, one lws_write per frame and client.
 *
 * Threads: a producer thread makes frames of --frame-bytes bytes
 * (`{"t_ns":MONOTONIC_NS,"pad":"..."}`) at --rate frames/s (0 = as fast as
 * the slowest client takes them) into a bounded ring of RING frames and wakes
 * the service thread with lws_cancel_service(); the service thread (the only
 * one touching lws objects) hands each new frame to every client connected
 * at that moment and writes it on LWS_CALLBACK_SERVER_WRITEABLE straight from
 * the ring (LWS_PRE headroom in each slot). A slot is reused when every
 * client took it: with the ring full the producer waits (backpressure; with
 * --rate the waits are counted as `late`). SIGUSR1 switches to phase 2:
 * frames of --frame-bytes-2 bytes, as fast as possible. Prints "LISTENING ws 127.0.0.1:PORT"
 * on stdout once bound; a JSON summary on SIGTERM/SIGINT.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <libwebsockets.h>

#include "bench_common.h"

#define RING 256u

typedef struct pss {
    struct pss *next, *prev;
    struct lws *wsi;
    uint64_t idx; /* next frame to write */
} pss_t;

static struct lws_context *ctx;
static size_t frame_bytes = 300, frame_bytes_2;
static double rate;
static size_t slot_len[RING];
static _Atomic bool phase2;        /* SIGUSR1: --frame-bytes-2, as fast as possible */
static int max_clients = 20000;
static unsigned char *slots[RING];
static _Atomic uint64_t published; /* frames the producer finished */
static _Atomic uint64_t freed;     /* frames every client took (service thread writes) */
static _Atomic bool stop;
static uint64_t seen;              /* service thread: frames handed to clients */
static uint32_t rem[RING];         /* service thread: clients still to write slot */
static pss_t *clients;
static int nclients;
static uint64_t st_frames_out, st_late, st_made;

static void advance_freed(void)
{
    uint64_t f = atomic_load(&freed);
    while (f < seen && rem[f % RING] == 0)
        f++;
    atomic_store(&freed, f);
}

static void *producer(void *arg)
{
    (void)arg;
    uint64_t period = rate > 0 ? (uint64_t)(1e9 / rate) : 0;
    uint64_t next = bench_now_ns(CLOCK_MONOTONIC);
    bool in2 = false;
    while (!atomic_load(&stop)) {
        if (!in2 && atomic_load(&phase2)) {
            in2 = true;
            period = 0;
            if (frame_bytes_2)
                frame_bytes = frame_bytes_2;
        }
        uint64_t h = atomic_load(&published);
        if (h - atomic_load(&freed) >= RING) {
            if (period)
                st_late++;
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (period) {
            bench_sleep_until(next);
            next += period;
            uint64_t now = bench_now_ns(CLOCK_MONOTONIC);
            if (now > next + 100000000ull) /* 100 ms behind: restart the schedule */
                next = now;
        }
        unsigned char *p = slots[h % RING] + LWS_PRE;
        int n = snprintf((char *)p, frame_bytes + 1, "{\"t_ns\":%" PRIu64 ",\"pad\":\"",
                         bench_now_ns(CLOCK_MONOTONIC));
        /* the pad is already there (written once); close the object */
        if ((size_t)n + 2 <= frame_bytes) {
            memset(p + n, 'x', frame_bytes - (size_t)n - 2);
            p[frame_bytes - 2] = '"';
            p[frame_bytes - 1] = '}';
        }
        slot_len[h % RING] = frame_bytes;
        atomic_store(&published, h + 1);
        st_made++;
        lws_cancel_service(ctx);
    }
    return NULL;
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    pss_t *c = user;
    (void)in;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        if (nclients >= max_clients)
            return -1;
        c->wsi = wsi;
        c->idx = seen;
        c->prev = NULL;
        c->next = clients;
        if (clients)
            clients->prev = c;
        clients = c;
        nclients++;
        break;
    case LWS_CALLBACK_CLOSED:
        if (!c->wsi)
            break;
        for (uint64_t i = c->idx; i < seen; i++)
            rem[i % RING]--;
        if (c->prev)
            c->prev->next = c->next;
        else
            clients = c->next;
        if (c->next)
            c->next->prev = c->prev;
        nclients--;
        c->wsi = NULL;
        advance_freed();
        break;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED: {
        uint64_t h = atomic_load(&published);
        if (h == seen)
            break;
        for (uint64_t i = seen; i < h; i++)
            rem[i % RING] = (uint32_t)nclients;
        seen = h;
        advance_freed();
        for (pss_t *p = clients; p; p = p->next)
            lws_callback_on_writable(p->wsi);
        break;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (c->idx >= seen)
            break;
        unsigned char *p = slots[c->idx % RING] + LWS_PRE;
        size_t fl = slot_len[c->idx % RING];
        if (lws_write(wsi, p, fl, LWS_WRITE_TEXT) < (int)fl)
            return -1;
        st_frames_out++;
        rem[c->idx % RING]--;
        c->idx++;
        if (rem[(c->idx - 1) % RING] == 0)
            advance_freed();
        if (c->idx < seen)
            lws_callback_on_writable(wsi);
        break;
    }
    case LWS_CALLBACK_RECEIVE:
        break; /* nothing expected from clients */
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {"bench-raw", cb, sizeof(pss_t), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_usr1(int sig)
{
    (void)sig;
    atomic_store(&phase2, true);
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&stop, true);
    if (ctx)
        lws_cancel_service(ctx);
}

int main(int argc, char **argv)
{
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--frame-bytes"))
            frame_bytes = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--frame-bytes-2"))
            frame_bytes_2 = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--rate"))
            rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-clients"))
            max_clients = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: ccgw-bench-lws-raw [--port P] [--frame-bytes N] [--rate FRAMES/S] [--frame-bytes-2 N] [--max-clients N]\n");
            return 2;
        }
    }
    if (frame_bytes < 48)
        frame_bytes = 48;
    if (frame_bytes_2 && frame_bytes_2 < 48)
        frame_bytes_2 = 48;
    size_t slot_bytes = frame_bytes > frame_bytes_2 ? frame_bytes : frame_bytes_2;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (unsigned i = 0; i < RING; i++) {
        slots[i] = calloc(1, LWS_PRE + slot_bytes + 1);
        if (!slots[i])
            return 1;
    }
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port ? port : CONTEXT_PORT_NO_LISTEN_SERVER;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.count_threads = 1;
    info.fd_limit_per_thread = (unsigned)max_clients + 64;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    if (!port)
        info.port = 0;
    ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "bench-lws-raw: lws_create_context failed\n");
        return 1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(ctx, "default");
    printf("LISTENING ws 127.0.0.1:%d\n", vh ? lws_get_vhost_listen_port(vh) : port);
    fflush(stdout);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGUSR1, on_usr1);
    pthread_t th;
    pthread_create(&th, NULL, producer, NULL);
    while (!atomic_load(&stop))
        if (lws_service(ctx, 0) < 0)
            break;
    atomic_store(&stop, true);
    pthread_join(th, NULL);
    lws_context_destroy(ctx);
    printf("{\"frames_made\":%" PRIu64 ",\"frames_out\":%" PRIu64 ",\"late\":%" PRIu64 ",\"frame_bytes\":%zu}\n",
           st_made, st_frames_out, st_late, frame_bytes);
    return 0;
}
