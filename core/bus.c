/* bus - see bus.h. */
#include "bus.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ccgw/types.h"
#include "log.h"
#include "spool.h"

/*
 * One cache entry per retained topic (one per device for its state: 100,000
 * at the scale goal). One allocation holds the entry, its topic and, behind
 * the topic, room for a payload of up to `icap` bytes: the first payload's
 * size and a little more. A later payload that fits (a device going online
 * after its first "starting" state, most state updates) is copied over it
 * in place, so the steady state allocates and frees nothing and leaves no
 * holes in the heap; a bigger one goes to its own allocation (payload then
 * points there) until one fits again.
 *
 * Entries are never removed while the bus lives, so they are carved one
 * after the other out of blocks of CACHE_BLOCK bytes (cache_alloc): no
 * malloc header or rounding per entry, and the entries of 100,000 devices
 * do not sit between the queue's short-lived messages, whose memory, once
 * they are delivered, then coalesces and goes back to the system instead of
 * staying behind as holes the size of a message (about 200 bytes a device
 * in the 100,000-device benchmark). An entry bigger than a quarter of a
 * block gets its own allocation (`own`).
 */
struct ccgw_retained {
    ccgw_retained_t *hnext;         /* hash chain */
    ccgw_retained_t *next;          /* insertion order */
    ccgw_retained_t *dnext;         /* dirty list */
    uint8_t kind;                   /* ccgw_kind_t */
    uint8_t qos;
    bool dirty;
    bool own;                       /* its own allocation, not in a block */
    uint32_t icap;                  /* the payload room behind the topic */
    uint64_t version;               /* of the payload held */
    uint64_t published_version;     /* last version handed to the sink */
    char *payload;                  /* the room behind the topic, or its own allocation */
    size_t len;
    char topic[];                   /* then the payload room: icap + 1 bytes */
};

#define CACHE_SLACK 16 /* payload room beyond the first payload (seq digits, reasons) */
#define CACHE_BLOCK (256u * 1024u) /* above glibc's mmap threshold: pages become resident as used */

typedef struct cache_block {
    struct cache_block *next;
    size_t used;
    _Alignas(16) char data[];
} cache_block_t;

struct ccgw_bus {
    pthread_mutex_t lock;          /* queue, dirty list, stats */
    pthread_cond_t not_empty;      /* north thread waits */
    pthread_cond_t not_full;       /* event producers wait */
    struct ccgw_bus_quota *quotas; /* every emitter's share (under lock) */
    pthread_cond_t drained;        /* flush waits */
    ccgw_msg_t *head, *tail;
    size_t depth, limit;
    int backpressure_ms;
    bool running, stopping;
    bool interrupted;              /* shutdown: no more backpressure waits */
    bool north_busy;               /* north thread holds popped messages */
    bool sink_io;                  /* the sink's wait()/wake(): its I/O runs on the north thread */
    bool north_in_wait;            /* north thread is in sink.wait() and no wake() was sent yet */
    pthread_t thread;
    ccgw_sink_t sink;
    bool has_sink;
    ccgw_bus_tap_fn tap;
    void *tap_ctx;
    ccgw_spool_t *spool;           /* owned; NULL = in-memory queue only */
    bool spool_telemetry;
    uint64_t pace_floor;           /* lowest unread spool backlog since the last (re)connect */
    int pace_waiters;              /* event emitters waiting in pace() */
    ccgw_bus_full_fn full_cb;
    void *full_ctx;
    /* retained cache */
    pthread_mutex_t cache_lock;
    ccgw_retained_t **buckets;
    size_t n_buckets, n_entries;
    ccgw_retained_t *first, *last;
    ccgw_retained_t *dirty_head, *dirty_tail;
    cache_block_t *blocks;         /* the entries' memory (newest block first) */
    ccgw_bus_stats_t st;
};

static const char *const kind_names[CCGW_KIND__COUNT] = {"state", "telemetry", "event", "alarm",
                                                          "reply", "instance", "gateway"};

const char *ccgw_kind_name(ccgw_kind_t k)
{
    return (unsigned)k < CCGW_KIND__COUNT ? kind_names[k] : "?";
}

bool ccgw_kind_retained(ccgw_kind_t k)
{
    return k == CCGW_KIND_STATE || k == CCGW_KIND_ALARM || k == CCGW_KIND_INSTANCE ||
           k == CCGW_KIND_GATEWAY;
}

ccgw_msg_t *ccgw_msg_new(ccgw_kind_t kind, int qos, const char *topic, const char *payload,
                         size_t payload_len, const void *corr, size_t corr_len)
{
    size_t tl = strlen(topic);
    ccgw_msg_t *m = malloc(sizeof *m + tl + 1 + payload_len + 1 + corr_len);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->qos = qos;
    m->retain = ccgw_kind_retained(kind);
    m->topic = m->data;
    memcpy(m->topic, topic, tl + 1);
    m->payload = m->topic + tl + 1;
    if (payload_len)
        memcpy(m->payload, payload, payload_len);
    m->payload[payload_len] = '\0';
    m->payload_len = payload_len;
    if (corr_len) {
        m->corr = m->payload + payload_len + 1;
        memcpy(m->corr, corr, corr_len);
        m->corr_len = corr_len;
    }
    return m;
}

void ccgw_msg_free(ccgw_msg_t *m) { free(m); }

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

ccgw_bus_t *ccgw_bus_new(size_t limit, int backpressure_ms)
{
    ccgw_bus_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->limit = limit ? limit : 65536;
    b->backpressure_ms = backpressure_ms;
    b->n_buckets = 1024;
    b->buckets = calloc(b->n_buckets, sizeof *b->buckets);
    if (!b->buckets) {
        free(b);
        return NULL;
    }
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->cache_lock, NULL);
    cond_init_mono(&b->not_empty);
    cond_init_mono(&b->not_full);
    cond_init_mono(&b->drained);
    b->st.limit = b->limit;
    return b;
}

void ccgw_bus_set_sink(ccgw_bus_t *b, const ccgw_sink_t *sink)
{
    if (sink) {
        b->sink = *sink;
        b->has_sink = true;
        b->sink_io = sink->wait && sink->wake;
    } else {
        b->has_sink = false;
        b->sink_io = false;
    }
}

void ccgw_bus_set_tap(ccgw_bus_t *b, ccgw_bus_tap_fn fn, void *ctx)
{
    b->tap = fn;
    b->tap_ctx = ctx;
}

void ccgw_bus_set_spool(ccgw_bus_t *b, ccgw_spool_t *sp, bool telemetry)
{
    b->spool = sp;
    b->spool_telemetry = telemetry;
}

ccgw_spool_t *ccgw_bus_spool(ccgw_bus_t *b) { return b->spool; }

void ccgw_bus_ack(ccgw_bus_t *b, uint64_t id)
{
    if (b->spool && id)
        ccgw_spool_ack(b->spool, id);
}

void ccgw_bus_set_full_cb(ccgw_bus_t *b, ccgw_bus_full_fn fn, void *ctx)
{
    b->full_cb = fn;
    b->full_ctx = ctx;
}

void ccgw_bus_spool_full(void *bus, bool full)
{
    ccgw_bus_t *b = bus;
    if (b && b->full_cb)
        b->full_cb(b->full_ctx, full);
}

static bool spooled_kind(const ccgw_bus_t *b, ccgw_kind_t k)
{
    return b->spool && (k == CCGW_KIND_EVENT || k == CCGW_KIND_ALARM ||
                        (k == CCGW_KIND_TELEMETRY && b->spool_telemetry));
}

/* The north thread of the bus this thread runs (NULL on every other thread). */
static _Thread_local const ccgw_bus_t *tls_north;

/* True on the north thread: it must never wait for room it alone can make
 * (a command reply or an alarm acknowledged from a sink callback). */
static bool on_north_thread(const ccgw_bus_t *b) { return tls_north == b; }

/* Wake the north thread (b->lock held): its condition variable, or, while
 * it waits in the sink's wait(), the sink's wake() (once per wait). */
static void north_signal_locked(ccgw_bus_t *b)
{
    pthread_cond_signal(&b->not_empty);
    if (b->north_in_wait) {
        b->north_in_wait = false;
        b->sink.wake(b->sink.ctx);
    }
}

/* North thread, b->lock held: sleep up to ms or until signalled. With a
 * sink that has its own I/O, the sleep is the sink's wait() (lock released),
 * which also runs that I/O. */
static void north_wait_locked(ccgw_bus_t *b, int ms)
{
    if (b->sink_io) {
        b->north_in_wait = true;
        pthread_mutex_unlock(&b->lock);
        b->sink.wait(b->sink.ctx, ms);
        pthread_mutex_lock(&b->lock);
        b->north_in_wait = false;
        return;
    }
    struct timespec dl;
    deadline_after(&dl, ms);
    pthread_cond_timedwait(&b->not_empty, &b->lock, &dl);
}

void ccgw_bus_wake(ccgw_bus_t *b)
{
    if (on_north_thread(b))
        return; /* it looks at the sink's state again before it sleeps */
    pthread_mutex_lock(&b->lock);
    pthread_cond_broadcast(&b->not_empty);
    north_signal_locked(b);
    pthread_mutex_unlock(&b->lock);
}

/* ---- cache ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static void cache_grow(ccgw_bus_t *b)
{
    size_t nb = b->n_buckets * 2;
    ccgw_retained_t **nbk = calloc(nb, sizeof *nbk);
    if (!nbk)
        return; /* keep the longer chains */
    for (ccgw_retained_t *e = b->first; e; e = e->next) {
        size_t i = hash_str(e->topic) & (nb - 1);
        e->hnext = nbk[i];
        nbk[i] = e;
    }
    free(b->buckets);
    b->buckets = nbk;
    b->n_buckets = nb;
}

static char *cache_room(ccgw_retained_t *e) { return e->topic + strlen(e->topic) + 1; }

/* The entry's payload := payload (a copy), in its room when it fits. Called
 * with cache_lock held; CCGW_ENOMEM leaves the old payload. */
static int cache_set_payload(ccgw_retained_t *e, const char *payload, size_t len)
{
    char *room = cache_room(e);
    char *dst = len <= e->icap ? room : malloc(len + 1);
    if (!dst)
        return CCGW_ENOMEM;
    if (len)
        memcpy(dst, payload, len);
    dst[len] = '\0';
    if (e->payload != room)
        free(e->payload);
    e->payload = dst;
    e->len = len;
    return CCGW_OK;
}

/* Zeroed memory for an entry of n bytes. Called with cache_lock held. */
static ccgw_retained_t *cache_alloc(ccgw_bus_t *b, size_t n)
{
    n = (n + 15u) & ~(size_t)15u;
    if (n > CACHE_BLOCK / 4) {
        ccgw_retained_t *e = calloc(1, n);
        if (e)
            e->own = true;
        return e;
    }
    cache_block_t *k = b->blocks;
    if (!k || k->used + n > CACHE_BLOCK - offsetof(cache_block_t, data)) {
        k = calloc(1, CACHE_BLOCK);
        if (!k)
            return NULL;
        k->next = b->blocks;
        b->blocks = k;
    }
    ccgw_retained_t *e = (ccgw_retained_t *)(void *)(k->data + k->used);
    k->used += n;
    return e;
}

static void cache_entry_free(ccgw_retained_t *e)
{
    if (e->payload != cache_room(e))
        free(e->payload);
    if (e->own)
        free(e);
}

/* The entry of topic, created (with room for a payload of `len` bytes) when
 * there is none. Called with cache_lock held. */
static ccgw_retained_t *cache_get(ccgw_bus_t *b, const char *topic, ccgw_kind_t kind, int qos,
                                  size_t len)
{
    size_t i = hash_str(topic) & (b->n_buckets - 1);
    for (ccgw_retained_t *e = b->buckets[i]; e; e = e->hnext)
        if (strcmp(e->topic, topic) == 0)
            return e;
    size_t tl = strlen(topic);
    size_t icap = len + CACHE_SLACK;
    if (icap > UINT32_MAX - 1)
        icap = 0; /* a huge first payload gets its own allocation */
    ccgw_retained_t *e = cache_alloc(b, sizeof *e + tl + 1 + icap + 1);
    if (!e)
        return NULL;
    memcpy(e->topic, topic, tl + 1);
    e->icap = (uint32_t)icap;
    e->payload = cache_room(e);
    e->kind = (uint8_t)kind;
    e->qos = (uint8_t)qos;
    e->hnext = b->buckets[i];
    b->buckets[i] = e;
    if (b->last)
        b->last->next = e;
    else
        b->first = e;
    b->last = e;
    b->n_entries++;
    if (b->n_entries > b->n_buckets)
        cache_grow(b);
    return e;
}

/* ---- queue ---- */

struct ccgw_bus_quota {
    struct ccgw_bus_quota *next;
    size_t queued; /* under b->lock */
};

ccgw_bus_quota_t *ccgw_bus_quota_new(ccgw_bus_t *b)
{
    ccgw_bus_quota_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    pthread_mutex_lock(&b->lock);
    q->next = b->quotas;
    b->quotas = q;
    pthread_mutex_unlock(&b->lock);
    return q;
}

size_t ccgw_bus_quota_queued(ccgw_bus_t *b, const ccgw_bus_quota_t *q)
{
    pthread_mutex_lock(&b->lock);
    size_t n = q ? q->queued : 0;
    pthread_mutex_unlock(&b->lock);
    return n;
}

static bool over_share_locked(const ccgw_bus_t *b, const ccgw_msg_t *m)
{
    size_t share = b->limit / 2 ? b->limit / 2 : 1;
    return m->quota && m->quota->queued >= share;
}

static void enqueue_locked(ccgw_bus_t *b, ccgw_msg_t *m)
{
    m->next = NULL;
    if (b->tail)
        b->tail->next = m;
    else
        b->head = m;
    b->tail = m;
    b->depth++;
    if (m->quota)
        m->quota->queued++;
    if (b->depth > b->st.max_depth)
        b->st.max_depth = b->depth;
    b->st.pushed[m->kind]++;
    north_signal_locked(b);
}

static bool sink_ready(ccgw_bus_t *b);

static bool sink_connected(ccgw_bus_t *b)
{
    return b->sink.connected ? b->sink.connected(b->sink.ctx) : sink_ready(b);
}

/* Pacing (bus.h): an event waits, up to backpressure_ms, while the broker is
 * connected and the unread backlog is CCGW_BUS_PACE over its floor; then it
 * is accepted anyway. */
static void pace(ccgw_bus_t *b)
{
    uint64_t u = ccgw_spool_unread(b->spool);
    pthread_mutex_lock(&b->lock);
    if (u <= b->pace_floor + CCGW_BUS_PACE || b->backpressure_ms <= 0 || b->stopping || b->interrupted ||
        !b->running || on_north_thread(b) || !sink_connected(b)) {
        pthread_mutex_unlock(&b->lock);
        return;
    }
    b->st.paced++;
    b->pace_waiters++;
    struct timespec dl;
    deadline_after(&dl, b->backpressure_ms);
    while (!b->stopping && !b->interrupted) {
        struct timespec step;
        deadline_after(&step, 50);
        if (step.tv_sec > dl.tv_sec || (step.tv_sec == dl.tv_sec && step.tv_nsec > dl.tv_nsec))
            step = dl;
        if (pthread_cond_timedwait(&b->not_full, &b->lock, &step) == ETIMEDOUT) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec > dl.tv_sec || (now.tv_sec == dl.tv_sec && now.tv_nsec >= dl.tv_nsec))
                break;
        }
        pthread_mutex_unlock(&b->lock);
        u = ccgw_spool_unread(b->spool);
        pthread_mutex_lock(&b->lock);
        if (u <= b->pace_floor + CCGW_BUS_PACE || !sink_connected(b))
            break;
    }
    b->pace_waiters--;
    pthread_mutex_unlock(&b->lock);
}

/* North thread, after reading from the spool: move the floor down, let
 * paced emitters go once the backlog is back under half the pace. */
static void pace_update(ccgw_bus_t *b, bool reconnected)
{
    uint64_t u = ccgw_spool_unread(b->spool);
    pthread_mutex_lock(&b->lock);
    if (reconnected || u < b->pace_floor)
        b->pace_floor = u;
    if (b->pace_waiters && u <= b->pace_floor + CCGW_BUS_PACE / 2)
        pthread_cond_broadcast(&b->not_full);
    pthread_mutex_unlock(&b->lock);
}

/* Append to the spool; events wait (re-trying) up to backpressure_ms while
 * the spool is full, telemetry and alarms do not wait. */
static int spool_append(ccgw_bus_t *b, ccgw_kind_t kind, int qos, uint64_t version, const char *topic,
                        const char *payload, size_t len)
{
    struct timespec dl;
    bool waited = false;
    if (kind == CCGW_KIND_EVENT && b->has_sink)
        pace(b);
    for (;;) {
        int rc = ccgw_spool_append(b->spool, (int)kind, qos, version, topic, payload, len, NULL);
        if (rc == CCGW_OK) {
            pthread_mutex_lock(&b->lock);
            b->st.pushed[kind]++;
            north_signal_locked(b);
            pthread_mutex_unlock(&b->lock);
            return CCGW_OK;
        }
        if (rc != CCGW_EFULL || kind != CCGW_KIND_EVENT || b->backpressure_ms <= 0)
            return rc;
        pthread_mutex_lock(&b->lock);
        bool no_wait = b->interrupted || b->stopping || on_north_thread(b);
        pthread_mutex_unlock(&b->lock);
        if (no_wait)
            return rc;
        if (!waited) {
            deadline_after(&dl, b->backpressure_ms);
            waited = true;
        }
        pthread_mutex_lock(&b->lock);
        struct timespec step;
        deadline_after(&step, 50);
        if (step.tv_sec > dl.tv_sec || (step.tv_sec == dl.tv_sec && step.tv_nsec > dl.tv_nsec))
            step = dl;
        int w = b->stopping || b->interrupted ? ETIMEDOUT
                                              : pthread_cond_timedwait(&b->not_full, &b->lock, &step);
        bool over = b->stopping || b->interrupted;
        if (w == ETIMEDOUT && !over) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            over = now.tv_sec > dl.tv_sec || (now.tv_sec == dl.tv_sec && now.tv_nsec >= dl.tv_nsec);
        }
        pthread_mutex_unlock(&b->lock);
        if (over)
            return CCGW_EFULL;
    }
}

static int spool_push(ccgw_bus_t *b, ccgw_msg_t *m)
{
    int rc = spool_append(b, m->kind, m->qos, 0, m->topic, m->payload, m->payload_len);
    if (rc != CCGW_OK) {
        pthread_mutex_lock(&b->lock);
        b->st.dropped_full[m->kind]++;
        uint64_t n = b->st.dropped_full[m->kind];
        pthread_mutex_unlock(&b->lock);
        if ((n & (n - 1)) == 0)
            CLOG_WARN("bus", "spool %s: refused %s on %s (%llu so far)",
                      rc == CCGW_EFULL ? "full" : "error", ccgw_kind_name(m->kind), m->topic,
                      (unsigned long long)n);
    }
    ccgw_msg_free(m);
    return rc == CCGW_OK ? CCGW_OK : rc == CCGW_EFULL ? CCGW_EFULL : CCGW_EIO;
}

int ccgw_bus_push(ccgw_bus_t *b, ccgw_msg_t *m)
{
    if (!m)
        return CCGW_ENOMEM;
    if (b->tap)
        b->tap(b->tap_ctx, m);
    if (spooled_kind(b, m->kind))
        return spool_push(b, m); /* accepted even while stopping: replayed next run */
    pthread_mutex_lock(&b->lock);
    if (b->stopping) {
        pthread_mutex_unlock(&b->lock);
        ccgw_msg_free(m);
        return CCGW_ESTOPPED;
    }
    if ((b->depth >= b->limit || over_share_locked(b, m)) &&
        (m->kind == CCGW_KIND_EVENT || m->kind == CCGW_KIND_REPLY) && b->backpressure_ms > 0 &&
        !on_north_thread(b)) {
        struct timespec dl;
        deadline_after(&dl, b->backpressure_ms);
        while ((b->depth >= b->limit || over_share_locked(b, m)) && !b->stopping && !b->interrupted) {
            if (pthread_cond_timedwait(&b->not_full, &b->lock, &dl) == ETIMEDOUT)
                break;
        }
    }
    bool over = over_share_locked(b, m);
    if (b->depth >= b->limit || over || b->stopping) {
        if (over)
            b->st.over_share++;
        m->quota = NULL;
        b->st.dropped_full[m->kind]++;
        uint64_t n = b->st.dropped_full[m->kind];
        pthread_mutex_unlock(&b->lock);
        if ((n & (n - 1)) == 0) /* 1, 2, 4, 8 ...: visible, never a flood */
            CLOG_WARN("bus", "north queue full (%zu): dropped %s on %s (%llu so far)", b->limit,
                      ccgw_kind_name(m->kind), m->topic, (unsigned long long)n);
        ccgw_msg_free(m);
        return CCGW_EFULL;
    }
    enqueue_locked(b, m);
    pthread_mutex_unlock(&b->lock);
    return CCGW_OK;
}

int ccgw_bus_retain(ccgw_bus_t *b, ccgw_kind_t kind, int qos, const char *topic,
                    const char *payload, size_t len)
{
    ccgw_msg_t *m = ccgw_msg_new(kind, qos, topic, payload, len, NULL, 0);
    pthread_mutex_lock(&b->cache_lock);
    ccgw_retained_t *e = cache_get(b, topic, kind, qos, len);
    if (!e || cache_set_payload(e, payload, len) != CCGW_OK) {
        pthread_mutex_unlock(&b->cache_lock);
        ccgw_msg_free(m);
        return CCGW_ENOMEM;
    }
    e->qos = (uint8_t)qos;
    e->version++;
    uint64_t version = e->version;
    if (m) {
        m->entry = e;
        m->version = version;
        if (b->tap)
            b->tap(b->tap_ctx, m);
    }
    pthread_mutex_unlock(&b->cache_lock);

    if (m && spooled_kind(b, kind)) {
        /* alarms never wait: past the spool's reserve they coalesce below */
        if (spool_append(b, kind, qos, version, topic, payload, len) == CCGW_OK) {
            ccgw_msg_free(m);
            return CCGW_OK;
        }
        ccgw_msg_free(m);
        m = NULL;
        CLOG_WARN("bus", "spool refused %s on %s: kept as the latest retained value only",
                  ccgw_kind_name(kind), topic);
    }
    pthread_mutex_lock(&b->lock);
    if (m && b->depth < b->limit && !b->stopping) {
        enqueue_locked(b, m);
        pthread_mutex_unlock(&b->lock);
        return CCGW_OK;
    }
    /* full (or no memory): latest value wins through the dirty list */
    b->st.coalesced++;
    pthread_mutex_lock(&b->cache_lock);
    if (!e->dirty) {
        e->dirty = true;
        e->dnext = NULL;
        if (b->dirty_tail)
            b->dirty_tail->dnext = e;
        else
            b->dirty_head = e;
        b->dirty_tail = e;
    }
    pthread_mutex_unlock(&b->cache_lock);
    north_signal_locked(b);
    pthread_mutex_unlock(&b->lock);
    ccgw_msg_free(m);
    return CCGW_OK;
}

void ccgw_bus_retained_foreach(ccgw_bus_t *b,
                               void (*fn)(void *ctx, ccgw_kind_t kind, const char *topic,
                                          const char *payload, size_t len),
                               void *ctx)
{
    pthread_mutex_lock(&b->cache_lock);
    for (ccgw_retained_t *e = b->first; e; e = e->next)
        if (e->len > 0)
            fn(ctx, e->kind, e->topic, e->payload, e->len);
    pthread_mutex_unlock(&b->cache_lock);
}

void ccgw_bus_with_cache_locked(ccgw_bus_t *b, void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&b->cache_lock);
    fn(ctx);
    pthread_mutex_unlock(&b->cache_lock);
}

void ccgw_bus_retained_each_locked(ccgw_bus_t *b,
                                   void (*fn)(void *ctx, ccgw_kind_t kind, const char *topic,
                                              const char *payload, size_t len),
                                   void *ctx)
{
    for (ccgw_retained_t *e = b->first; e; e = e->next)
        if (e->len > 0)
            fn(ctx, e->kind, e->topic, e->payload, e->len);
}

/* ---- north thread ---- */

static bool sink_ready(ccgw_bus_t *b) { return !b->has_sink || b->sink.ready(b->sink.ctx); }

/* Publish one message; returns false when it must be kept for later. */
static bool deliver(ccgw_bus_t *b, ccgw_msg_t *m)
{
    if (m->entry) {
        pthread_mutex_lock(&b->cache_lock);
        bool stale = m->version <= m->entry->published_version;
        pthread_mutex_unlock(&b->cache_lock);
        if (stale) {
            pthread_mutex_lock(&b->lock);
            b->st.superseded++;
            pthread_mutex_unlock(&b->lock);
            return true;
        }
    }
    int rc = b->has_sink ? b->sink.publish(b->sink.ctx, m) : 0;
    if (rc == CCGW_ESTATE) {
        if (m->kind == CCGW_KIND_EVENT || m->kind == CCGW_KIND_REPLY)
            return false; /* keep: retried after reconnect */
        pthread_mutex_lock(&b->lock);
        b->st.dropped_offline[m->kind]++; /* retained kinds come back with the snapshot */
        pthread_mutex_unlock(&b->lock);
        return true;
    }
    if (m->entry && rc == 0) {
        pthread_mutex_lock(&b->cache_lock);
        if (m->version > m->entry->published_version)
            m->entry->published_version = m->version;
        pthread_mutex_unlock(&b->cache_lock);
    }
    pthread_mutex_lock(&b->lock);
    if (rc == 0)
        b->st.published[m->kind]++;
    else
        b->st.dropped_offline[m->kind]++;
    pthread_mutex_unlock(&b->lock);
    return true;
}

/* Publish a cache entry's current payload (dirty list and snapshots). */
static bool deliver_entry(ccgw_bus_t *b, ccgw_retained_t *e)
{
    pthread_mutex_lock(&b->cache_lock);
    ccgw_msg_t *m = ccgw_msg_new(e->kind, e->qos, e->topic, e->payload ? e->payload : "", e->len,
                                 NULL, 0);
    if (m) {
        m->entry = e;
        m->version = e->version;
    }
    /* a snapshot republishes even what was published before */
    uint64_t saved = e->published_version;
    e->published_version = 0;
    pthread_mutex_unlock(&b->cache_lock);
    if (!m)
        return true;
    bool done = deliver(b, m);
    pthread_mutex_lock(&b->cache_lock);
    if (e->published_version < saved)
        e->published_version = saved;
    pthread_mutex_unlock(&b->cache_lock);
    ccgw_msg_free(m);
    return done;
}

/* A spooled alarm older than the cache's value (or from the previous run
 * while this run has one) goes out without the retain flag, so the
 * retained value never goes back in time. */
static bool spooled_retain(ccgw_bus_t *b, const ccgw_spool_rec_t *r)
{
    if (!ccgw_kind_retained((ccgw_kind_t)r->kind))
        return false;
    bool retain = true;
    pthread_mutex_lock(&b->cache_lock);
    size_t i = hash_str(r->topic) & (b->n_buckets - 1);
    for (ccgw_retained_t *e = b->buckets[i]; e; e = e->hnext)
        if (strcmp(e->topic, r->topic) == 0) {
            retain = r->this_boot ? e->version <= r->version : e->version == 0;
            break;
        }
    pthread_mutex_unlock(&b->cache_lock);
    return retain;
}

/* Publish up to `max` spooled records in order while the sink is ready.
 * The message handed to the sink borrows the spool's record buffer (valid
 * until the next ccgw_spool_next()): no allocation, no copy; the counters
 * are added once per batch. */
static void deliver_spool(ccgw_bus_t *b, int max)
{
    uint64_t published[CCGW_KIND__COUNT] = {0}, dropped[CCGW_KIND__COUNT] = {0};
    bool any = false;
    for (int i = 0; i < max; i++) {
        if (!sink_ready(b))
            break;
        ccgw_spool_rec_t r;
        if (ccgw_spool_next(b->spool, &r) != 1)
            break;
        ccgw_kind_t kind = (unsigned)r.kind < CCGW_KIND__COUNT ? (ccgw_kind_t)r.kind : CCGW_KIND_EVENT;
        ccgw_msg_t m;
        memset(&m, 0, sizeof m);
        m.kind = kind;
        m.qos = r.qos;
        m.topic = (char *)r.topic;
        m.payload = (char *)r.payload;
        m.payload_len = r.payload_len;
        m.retain = spooled_retain(b, &r);
        m.spool_id = r.id;
        int rc = b->has_sink ? b->sink.publish(b->sink.ctx, &m) : 0;
        if (rc == CCGW_ESTATE) {
            ccgw_spool_rewind(b->spool); /* not connected: again after the reconnect */
            break;
        }
        if (!b->has_sink || rc != 0)
            ccgw_spool_ack(b->spool, r.id); /* no broker configured, or it can never go out */
        if (rc == 0)
            published[kind]++;
        else
            dropped[kind]++;
        any = true;
    }
    if (!any)
        return;
    pthread_mutex_lock(&b->lock);
    for (int k = 0; k < CCGW_KIND__COUNT; k++) {
        b->st.published[k] += published[k];
        b->st.dropped_offline[k] += dropped[k];
    }
    pthread_mutex_unlock(&b->lock);
}

/* Wait until the sink is ready or we are stopping. Called with b->lock held. */
static bool wait_ready_locked(ccgw_bus_t *b)
{
    while (!b->stopping && !sink_ready(b))
        north_wait_locked(b, 100);
    return !b->stopping;
}

static void run_snapshot(ccgw_bus_t *b)
{
    /* Walk the insertion-ordered list; entries are never removed while running. */
    pthread_mutex_lock(&b->cache_lock);
    ccgw_retained_t *e = b->first;
    pthread_mutex_unlock(&b->cache_lock);
    size_t n = 0;
    while (e) {
        pthread_mutex_lock(&b->lock);
        bool ok = wait_ready_locked(b);
        pthread_mutex_unlock(&b->lock);
        if (!ok)
            return;
        pthread_mutex_lock(&b->cache_lock);
        bool has = e->len > 0 || e->kind == CCGW_KIND_ALARM; /* an empty alarm is a clear to repeat */
        pthread_mutex_unlock(&b->cache_lock);
        if (has) {
            deliver_entry(b, e);
            n++;
        }
        pthread_mutex_lock(&b->cache_lock);
        e = e->next;
        pthread_mutex_unlock(&b->cache_lock);
    }
    pthread_mutex_lock(&b->lock);
    b->st.snapshots++;
    pthread_mutex_unlock(&b->lock);
    CLOG_INFO("bus", "republished %zu retained topics", n);
}

static void *north_main(void *arg)
{
    ccgw_bus_t *b = arg;
    tls_north = b;
    ccgw_msg_t *held = NULL, *held_tail = NULL; /* popped, not yet delivered (in order) */
    pthread_mutex_lock(&b->lock);
    while (!b->stopping) {
        if (b->has_sink && b->sink.take_snapshot_request(b->sink.ctx)) {
            pthread_mutex_unlock(&b->lock);
            if (b->spool) {
                ccgw_spool_rewind(b->spool); /* sent before the disconnect, not acknowledged */
                pace_update(b, true);        /* an outage's backlog drains unpaced */
            }
            run_snapshot(b);
            pthread_mutex_lock(&b->lock);
            continue;
        }
        if (!held && !b->head && !b->dirty_head && !(b->spool && ccgw_spool_has_unread(b->spool))) {
            b->north_busy = false;
            pthread_cond_broadcast(&b->drained);
            north_wait_locked(b, 1000);
            continue;
        }
        if (!sink_ready(b)) {
            if (!held)
                b->north_busy = false;
            pthread_cond_broadcast(&b->drained);
            wait_ready_locked(b);
            continue;
        }
        b->north_busy = true;
        /* pop a batch only once everything popped before went out: what the
         * north thread holds counts against the queue's bound too */
        int room = held ? 0 : 256;
        for (int i = 0; i < room && b->head; i++) {
            ccgw_msg_t *m = b->head;
            b->head = m->next;
            if (!b->head)
                b->tail = NULL;
            b->depth--;
            if (m->quota) {
                m->quota->queued--;
                m->quota = NULL; /* counts the queue only */
            }
            m->next = NULL;
            if (held_tail)
                held_tail->next = m;
            else
                held = m;
            held_tail = m;
        }
        pthread_cond_broadcast(&b->not_full);
        pthread_mutex_unlock(&b->lock);

        while (held) {
            if (!sink_ready(b))
                break;
            ccgw_msg_t *m = held;
            if (!deliver(b, m))
                break;
            held = m->next;
            if (!held)
                held_tail = NULL;
            ccgw_msg_free(m);
        }
        if (b->spool) {
            deliver_spool(b, 256);
            pace_update(b, false);
        }
        /* dirty entries: the latest state of topics whose updates did not fit */
        for (;;) {
            if (!sink_ready(b))
                break;
            pthread_mutex_lock(&b->cache_lock);
            ccgw_retained_t *e = b->dirty_head;
            if (e) {
                b->dirty_head = e->dnext;
                if (!b->dirty_head)
                    b->dirty_tail = NULL;
                e->dirty = false;
                e->dnext = NULL;
            }
            pthread_mutex_unlock(&b->cache_lock);
            if (!e)
                break;
            pthread_mutex_lock(&b->cache_lock);
            bool newer = e->version > e->published_version;
            pthread_mutex_unlock(&b->cache_lock);
            if (newer) {
                /* publish the current payload */
                pthread_mutex_lock(&b->cache_lock);
                ccgw_msg_t *m = ccgw_msg_new(e->kind, e->qos, e->topic, e->payload ? e->payload : "",
                                             e->len, NULL, 0);
                if (m) {
                    m->entry = e;
                    m->version = e->version;
                }
                pthread_mutex_unlock(&b->cache_lock);
                if (m) {
                    deliver(b, m);
                    ccgw_msg_free(m);
                }
            }
        }
        pthread_mutex_lock(&b->lock);
        /* still busy: the sink's I/O once per batch without waiting
         * (acknowledgements, commands, keepalive); idle, it runs in the wait */
        if (b->sink_io && !b->stopping &&
            (held || b->head || b->dirty_head || (b->spool && ccgw_spool_has_unread(b->spool)))) {
            pthread_mutex_unlock(&b->lock);
            b->sink.wait(b->sink.ctx, 0);
            pthread_mutex_lock(&b->lock);
        }
    }
    pthread_mutex_unlock(&b->lock);
    while (held) {
        ccgw_msg_t *n = held->next;
        ccgw_msg_free(held);
        held = n;
    }
    return NULL;
}

int ccgw_bus_start(ccgw_bus_t *b)
{
    pthread_mutex_lock(&b->lock);
    b->stopping = false;
    pthread_mutex_unlock(&b->lock);
    int rc = pthread_create(&b->thread, NULL, north_main, b);
    if (rc != 0) {
        CLOG_ERROR("bus", "cannot start the north thread: %s", strerror(rc));
        return CCGW_ENOMEM;
    }
    pthread_setname_np(b->thread, "ccgw:north");
    b->running = true;
    return CCGW_OK;
}

bool ccgw_bus_flush(ccgw_bus_t *b, int timeout_ms)
{
    struct timespec dl;
    deadline_after(&dl, timeout_ms);
    pthread_mutex_lock(&b->lock);
    bool ok = false;
    for (;;) {
        bool empty = !b->head && !b->dirty_head && !b->north_busy;
        if (empty && b->spool) {
            ccgw_spool_stats_t ss;
            ccgw_spool_get_stats(b->spool, &ss);
            empty = ss.pending == 0;
        }
        bool idle = !b->has_sink || b->sink.idle(b->sink.ctx);
        if (empty && idle) {
            ok = true;
            break;
        }
        north_signal_locked(b);
        struct timespec step;
        deadline_after(&step, 20);
        if (step.tv_sec > dl.tv_sec || (step.tv_sec == dl.tv_sec && step.tv_nsec > dl.tv_nsec))
            step = dl;
        if (pthread_cond_timedwait(&b->drained, &b->lock, &step) == ETIMEDOUT) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec > dl.tv_sec || (now.tv_sec == dl.tv_sec && now.tv_nsec >= dl.tv_nsec))
                break;
        }
    }
    pthread_mutex_unlock(&b->lock);
    return ok;
}

void ccgw_bus_interrupt(ccgw_bus_t *b)
{
    pthread_mutex_lock(&b->lock);
    b->interrupted = true;
    pthread_cond_broadcast(&b->not_full);
    pthread_mutex_unlock(&b->lock);
}

void ccgw_bus_stop(ccgw_bus_t *b)
{
    pthread_mutex_lock(&b->lock);
    b->stopping = true;
    pthread_cond_broadcast(&b->not_empty);
    north_signal_locked(b);
    pthread_cond_broadcast(&b->not_full);
    pthread_mutex_unlock(&b->lock);
    if (b->running) {
        pthread_join(b->thread, NULL);
        b->running = false;
    }
    pthread_mutex_lock(&b->lock);
    while (b->head) {
        ccgw_msg_t *m = b->head;
        b->head = m->next;
        ccgw_msg_free(m);
    }
    b->tail = NULL;
    b->depth = 0;
    pthread_mutex_unlock(&b->lock);
}

void ccgw_bus_free(ccgw_bus_t *b)
{
    if (!b)
        return;
    ccgw_bus_stop(b);
    ccgw_spool_close(b->spool);
    b->spool = NULL;
    ccgw_retained_t *e = b->first;
    while (e) {
        ccgw_retained_t *n = e->next;
        cache_entry_free(e);
        e = n;
    }
    while (b->blocks) {
        cache_block_t *k = b->blocks;
        b->blocks = k->next;
        free(k);
    }
    free(b->buckets);
    while (b->quotas) {
        ccgw_bus_quota_t *q = b->quotas;
        b->quotas = q->next;
        free(q);
    }
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->cache_lock);
    pthread_cond_destroy(&b->not_empty);
    pthread_cond_destroy(&b->not_full);
    pthread_cond_destroy(&b->drained);
    free(b);
}

void ccgw_bus_get_stats(ccgw_bus_t *b, ccgw_bus_stats_t *out)
{
    pthread_mutex_lock(&b->lock);
    *out = b->st;
    out->depth = b->depth;
    pthread_mutex_unlock(&b->lock);
    pthread_mutex_lock(&b->cache_lock);
    out->retained_entries = b->n_entries;
    pthread_mutex_unlock(&b->cache_lock);
}
