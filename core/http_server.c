/*
 * http_server - see http_server.h. The protocol is docs/websocket.md; the
 * threads, queues and limits are summed up in docs/architecture.md.
 *
 * Hand-offs to the service thread (the only thread touching libwebsockets
 * objects, clients and their queues):
 *  - the inbox: the bus tap copies each message (only while some client has
 *    a subscription) into a bounded list; lws_cancel_service() wakes the
 *    service thread when the list goes non-empty. At the limit the new
 *    message is dropped and counted (inbox_dropped).
 *  - the completions: command replies (WebSocket) and pending HTTP API
 *    responses, keyed by a connection id (never a pointer: the connection
 *    may be gone). Bounded by admission: at most MAX_PENDING operations are
 *    in flight, so the list never holds more.
 * Per client: a send queue (client_queue messages / client_queue_bytes) with
 * the contract's policy, flushed as `batch` frames at most every batch_ms.
 */
#include "http_server.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "audit.h"
#include "auth.h"
#include "bus.h"
#include "command.h"
#include "gateway.h"
#include "http_api.h"
#include "json_writer.h"
#include "log.h"
#include "ws_proto.h"

#define TAG "http"

#define MAX_SUBS 64
#define MAX_PENDING 1024          /* commands + pending HTTP responses in flight */
#define MAX_CLIENT_CMDS 32        /* per WebSocket client */
#define INBOX_MAX_MSGS 65536
#define INBOX_MAX_BYTES (64u << 20)
/* A batch frame stops growing here. Near the socket's send buffer: what the
 * socket does not take, lws keeps a copy of, per client. To 1,000 clients
 * under overload, 64 KiB frames delivered several times what 256 KiB frames
 * did, with a third of the peak RSS (bench row g, docs/performance.md). */
#define FRAME_MAX (64u << 10)
#define BATCH_MAX_MSGS 1024
#define AUTH_TIMEOUT_MS 10000
#define STOP_GRACE_MS 1000
#ifndef IDLE_PING_S
#define IDLE_PING_S 30
#define IDLE_HANGUP_S 75
#endif
#define K_CTRL CCGW_KIND__COUNT   /* a control message (ack, reply, error, pong): never dropped */

/* ---- shared encoded messages (service thread only) ---- */

/* One message as it goes out, encoded once and shared by every client queue
 * that holds it (refcounted). The JSON has LWS_PRE bytes of headroom before
 * it, so a frame of this message alone is written straight from here: the
 * frame header lws puts into the headroom is the same for every client. */
typedef struct wmsg {
    int refs;
    int kind;           /* ccgw_kind_t or K_CTRL */
    uint64_t serial;    /* unique per server: identifies a message in the frame cache */
    char *topic;        /* NULL for control messages; points into data */
    unsigned char *json; /* data + LWS_PRE */
    size_t len;
    unsigned char data[]; /* LWS_PRE headroom, json, '\0', topic, '\0' */
} wmsg_t;

/* Takes json (malloc'ed, freed here whatever happens). */
static wmsg_t *wmsg_new(uint64_t *serial, int kind, const char *topic, char *json, size_t len)
{
    size_t tl = topic ? strlen(topic) + 1 : 0;
    wmsg_t *m = json ? malloc(sizeof *m + LWS_PRE + len + 1 + tl) : NULL;
    if (!m) {
        free(json);
        return NULL;
    }
    m->refs = 1;
    m->kind = kind;
    m->serial = ++*serial;
    m->json = m->data + LWS_PRE;
    memcpy(m->json, json, len);
    m->json[len] = '\0';
    m->len = len;
    m->topic = topic ? (char *)m->json + len + 1 : NULL;
    if (topic)
        memcpy(m->topic, topic, tl);
    free(json);
    return m;
}

static void wmsg_unref(wmsg_t *m)
{
    if (m && --m->refs == 0)
        free(m);
}

/* A queue slot; m == NULL is a hole left by a message dropped from the middle. */
typedef struct qent {
    wmsg_t *m;
    bool snap;     /* part of a snapshot: not counted against the live limit */
} qent_t;

/* ---- subscription groups ---- */

/* Clients with the same set of subscriptions and the same token filters see
 * the same messages: each message is matched once per group, not once per
 * client (dashboards mostly subscribe to the same filters). */
typedef struct sgroup {
    struct sgroup *next, *prev;      /* server's list */
    uint64_t hash;
    struct client **mem;             /* the members (client.gidx: the index of each) */
    size_t n_members, mcap;
    int role;                        /* ccgw_role_t of the members' principal */
    char **pf;                       /* the principal's topic filters (0 = everything) */
    size_t n_pf;
    char **subs;                     /* sorted, distinct */
    size_t n_subs;
} sgroup_t;

/* ---- clients ---- */

typedef struct client {
    /* what a message for every client touches first: one cache line */
    struct ccgw_http_server *s;
    qent_t *ring;                    /* the send queue: a ring of rcap (power of 2) slots */
    uint32_t rcap, rhead, rcount;    /* rcount: slots in use, holes included */
    bool dirty, closing;
    size_t qn, qbytes, qn_snap, qbytes_snap;
    struct client *dirty_next;       /* waiting for the flush timer */
    /* the rest */
    struct client *next, *prev;      /* server's list */
    struct lws *wsi;
    sgroup_t *g;                     /* the subscriptions; NULL = none */
    size_t gidx;                     /* in g->mem */
    uint64_t id;
    char remote[64];
    ccgw_principal_t *who;           /* NULL until authenticated */
    uint64_t t_open_ms;
    int close_code;
    const char *close_reason;
    char *rx;                        /* fragments of the current message */
    size_t rx_len, rx_cap;
    bool rx_overflow, rx_binary;
    int cmds;                        /* commands in flight */
} client_t;

/* ---- HTTP requests ---- */

typedef struct http_req {
    struct http_req *next, *prev;    /* server's list (pending ones are looked up by id) */
    struct lws *wsi;
    uint64_t id;
    int method;                      /* LWSHUMETH_* */
    char path[1024];
    char *query;
    char remote[64];
    char *body;
    size_t body_len;
    bool body_expected, too_large, pending, responded, headers_sent;
    int status;
    const char *ctype;
    char *resp;
    size_t resp_len, resp_off;
} http_req_t;

typedef struct pss {
    client_t *c;
    http_req_t *h;
} pss_t;

/* ---- hand-offs ---- */

typedef struct inmsg {
    struct inmsg *next;
    ccgw_kind_t kind;
    size_t len, size;
    char *topic, *payload;
    char data[];
} inmsg_t;

typedef struct done_item {
    struct done_item *next;
    bool ws;                         /* a command reply for a WebSocket client */
    uint64_t conn_id;
    bool has_id;
    int64_t req_id;
    int status;
    const char *ctype;
    char *body;
    size_t len;
} done_item_t;

typedef struct reply_ctx {
    struct ccgw_http_server *s;
    uint64_t conn_id;
    bool has_id;
    int64_t req_id;
    atomic_bool sent;
} reply_ctx_t;

/* A batch frame as written (LWS_PRE headroom included), kept a little for
 * the next client whose queue starts with the same messages. */
#define FCACHE_SLOTS 4
typedef struct frame {
    size_t n, len;                   /* messages, frame bytes (0: empty slot) */
    uint64_t *serials;               /* the messages' wmsg serials, in order */
    uint64_t used;                   /* fclock of the last use */
    unsigned char *buf;              /* LWS_PRE + len */
} frame_t;

struct ccgw_http_server {
    ccgw_gateway_t *gw;
    const ccgw_http_config_t *cfg;
    ccgw_auth_t *auth;
    bool own_auth;
    char web_root[PATH_MAX];         /* realpath, "" when missing */
    struct lws_context *ctx;
    struct lws_vhost *vh;
    struct lws_protocols protocols[2];
    pthread_t thread;
    bool thread_running;
    atomic_bool started, stopping;
    int port;
    uint64_t next_id;
    client_t *clients;
    http_req_t *reqs;
    client_t *dirty;
    bool flush_scheduled;
    lws_sorted_usec_list_t flush_sul, tick_sul;
    uint64_t stop_deadline;
    /* the hub (service thread) */
    sgroup_t *groups;
    size_t n_groups, n_ws;           /* subscription groups, WebSocket clients */
    uint64_t serial;                 /* of the last wmsg */
    size_t q_bytes;                  /* live bytes queued over all clients (snapshots excluded) */
    uint64_t n_dropped_tele, n_coalesced; /* published to st_* by publish_stats() */
    size_t q_lim_bytes;              /* each client's live byte limit now (queue budget / clients) */
    frame_t fcache[FCACHE_SLOTS];    /* batch frames built lately, reused for identical queues */
    uint64_t fclock, fclock_tick;
    /* inbox */
    pthread_mutex_t in_lock;
    inmsg_t *in_head, *in_tail;
    size_t in_bytes;
    atomic_size_t in_depth;
    atomic_uint n_subscribed;        /* clients with at least one subscription */
    /* completions */
    pthread_mutex_t done_lock;
    done_item_t *done_head, *done_tail;
    atomic_int pending;
    /* stats */
    atomic_uint_least64_t st_clients, st_clients_total, st_refused, st_slow, st_frames, st_msgs,
        st_dropped_tele, st_coalesced, st_inbox_dropped, st_http_req, st_http_err, st_cmds, st_unauth_http,
        st_q_bytes, st_q_lim, st_groups, st_frame_reused;
};

static uint64_t now_ms(void) { return ccgw_now_ms(); }

/* ---- the tap (emitting threads; cache lock held for retained kinds) ---- */

static void tap(void *ctx, const ccgw_msg_t *m)
{
    struct ccgw_http_server *s = ctx;
    if (m->kind == CCGW_KIND_REPLY || !atomic_load(&s->started) || atomic_load(&s->n_subscribed) == 0)
        return;
    size_t tl = strlen(m->topic), size = sizeof(inmsg_t) + tl + 1 + m->payload_len + 1;
    pthread_mutex_lock(&s->in_lock);
    if (atomic_load(&s->in_depth) >= INBOX_MAX_MSGS || s->in_bytes + size > INBOX_MAX_BYTES) {
        pthread_mutex_unlock(&s->in_lock);
        atomic_fetch_add(&s->st_inbox_dropped, 1);
        return;
    }
    pthread_mutex_unlock(&s->in_lock);
    inmsg_t *im = malloc(size);
    if (!im) {
        atomic_fetch_add(&s->st_inbox_dropped, 1);
        return;
    }
    im->next = NULL;
    im->kind = m->kind;
    im->size = size;
    im->topic = im->data;
    memcpy(im->topic, m->topic, tl + 1);
    im->payload = im->topic + tl + 1;
    memcpy(im->payload, m->payload, m->payload_len);
    im->payload[m->payload_len] = '\0';
    im->len = m->payload_len;
    pthread_mutex_lock(&s->in_lock);
    if (!atomic_load(&s->started)) { /* stopped meanwhile (checked under the lock stop takes) */
        pthread_mutex_unlock(&s->in_lock);
        free(im);
        return;
    }
    bool was_empty = !s->in_head;
    if (s->in_tail)
        s->in_tail->next = im;
    else
        s->in_head = im;
    s->in_tail = im;
    s->in_bytes += size;
    atomic_fetch_add(&s->in_depth, 1);
    if (was_empty)
        lws_cancel_service(s->ctx); /* a write on lws' pipe: the service thread wakes */
    pthread_mutex_unlock(&s->in_lock);
}

/* ---- completions (any thread) ---- */

static void done_push(struct ccgw_http_server *s, done_item_t *d)
{
    pthread_mutex_lock(&s->done_lock);
    bool was_empty = !s->done_head;
    if (s->done_tail)
        s->done_tail->next = d;
    else
        s->done_head = d;
    s->done_tail = d;
    if (was_empty && atomic_load(&s->started))
        lws_cancel_service(s->ctx);
    pthread_mutex_unlock(&s->done_lock); /* after stop: freed by ccgw_http_server_free */
}

static void ws_reply_send(void *ctx, const char *payload, size_t len)
{
    reply_ctx_t *r = ctx;
    done_item_t *d = calloc(1, sizeof *d);
    char *copy = malloc(len + 1);
    if (!d || !copy) {
        free(d);
        free(copy);
        CLOG_ERROR(TAG, "out of memory: a WebSocket command reply is lost");
        return;
    }
    memcpy(copy, payload, len);
    copy[len] = '\0';
    atomic_store(&r->sent, true);
    d->ws = true;
    d->conn_id = r->conn_id;
    d->has_id = r->has_id;
    d->req_id = r->req_id;
    d->body = copy;
    d->len = len;
    done_push(r->s, d);
}

static void ws_reply_release(void *ctx)
{
    reply_ctx_t *r = ctx;
    if (!atomic_load(&r->sent)) {
        static const char no_reply[] = "{\"ok\":false,\"error\":{\"code\":\"device_error\",\"message\":\"no reply\"}}";
        ws_reply_send(r, no_reply, sizeof no_reply - 1);
    }
    /* the pending count is given back when the completion is processed */
    free(r);
}

static void http_done(void *done_ctx, int status, const char *content_type, char *body, size_t body_len)
{
    reply_ctx_t *r = done_ctx;
    done_item_t *d = calloc(1, sizeof *d);
    if (!d) {
        free(body);
        CLOG_ERROR(TAG, "out of memory: an HTTP response is lost");
        atomic_fetch_sub(&r->s->pending, 1);
        free(r);
        return;
    }
    d->conn_id = r->conn_id;
    d->status = status;
    d->ctype = content_type;
    d->body = body;
    d->len = body_len;
    struct ccgw_http_server *s = r->s;
    free(r);
    done_push(s, d);
}

/* ---- client queue: a ring of pointers to shared messages ---- */

static void schedule_write(client_t *c);

static qent_t *q_at(const client_t *c, uint32_t i) { return &c->ring[(c->rhead + i) & (c->rcap - 1)]; }

/* Holes at either end are given back. */
static void q_trim(client_t *c)
{
    while (c->rcount && !q_at(c, 0)->m) {
        c->rhead = (c->rhead + 1) & (c->rcap - 1);
        c->rcount--;
    }
    while (c->rcount && !q_at(c, c->rcount - 1)->m)
        c->rcount--;
    if (!c->rcount)
        c->rhead = 0;
}

/* Take slot i out of the queue (a hole), its message unreferenced. */
static void q_remove(client_t *c, uint32_t i)
{
    qent_t *e = q_at(c, i);
    c->qn--;
    c->qbytes -= e->m->len;
    if (e->snap) {
        c->qn_snap--;
        c->qbytes_snap -= e->m->len;
    } else {
        c->s->q_bytes -= e->m->len;
    }
    wmsg_unref(e->m);
    e->m = NULL;
    q_trim(c);
}

static void q_clear(client_t *c)
{
    for (uint32_t i = 0; i < c->rcount; i++) {
        qent_t *e = q_at(c, i);
        if (e->m && !e->snap)
            c->s->q_bytes -= e->m->len;
        wmsg_unref(e->m);
    }
    free(c->ring);
    c->ring = NULL;
    c->rcap = c->rhead = c->rcount = 0;
    c->qn = c->qbytes = c->qn_snap = c->qbytes_snap = 0;
}

/* A full ring: holes squeezed out, grown when more than half is in use. */
static bool q_reserve(client_t *c)
{
    if (c->rcount < c->rcap)
        return true;
    uint32_t cap = c->rcap ? c->rcap : 8;
    if (c->qn + 1 > cap / 2) {
        if (cap > (UINT32_MAX >> 2))
            return false;
        cap *= 2;
    }
    qent_t *r = malloc(cap * sizeof *r);
    if (!r)
        return false;
    uint32_t n = 0;
    for (uint32_t i = 0; i < c->rcount; i++)
        if (q_at(c, i)->m)
            r[n++] = *q_at(c, i);
    free(c->ring);
    c->ring = r;
    c->rcap = cap;
    c->rhead = 0;
    c->rcount = n;
    return true;
}

static void group_leave(client_t *c);

static void client_close(client_t *c, int code, const char *reason)
{
    if (c->closing)
        return;
    c->closing = true;
    c->close_code = code;
    c->close_reason = reason;
    q_clear(c);
    group_leave(c); /* nothing more is queued for it */
    lws_callback_on_writable(c->wsi);
    /* a client that does not read may never become writable: kill it after 5 s */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 10);
}

static void slow_close(client_t *c)
{
    atomic_fetch_add(&c->s->st_slow, 1);
    CLOG_WARN(TAG, "ws client %llu (%s, %s): send queue full (%zu messages, %zu bytes): closed 1008 too slow",
              (unsigned long long)c->id, c->remote, c->who ? c->who->name : "-", c->qn, c->qbytes);
    client_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow");
}

static bool q_append(client_t *c, wmsg_t *m, bool snap)
{
    if (!q_reserve(c)) {
        CLOG_ERROR(TAG, "ws client %llu: out of memory queueing a message", (unsigned long long)c->id);
        slow_close(c);
        return false;
    }
    m->refs++;
    *q_at(c, c->rcount++) = (qent_t){.m = m, .snap = snap};
    c->qn++;
    c->qbytes += m->len;
    if (snap) {
        c->qn_snap++;
        c->qbytes_snap += m->len;
    } else {
        c->s->q_bytes += m->len;
    }
    schedule_write(c);
    return true;
}

/* Each client's live byte limit: client_queue_bytes, or its share of
 * queue_budget_bytes when that is smaller (many clients), but at least
 * QUEUE_SHARE_MIN. Recomputed when a WebSocket client comes or goes. */
#define QUEUE_SHARE_MIN (16u << 10)
static void update_queue_limit(struct ccgw_http_server *s)
{
    size_t lim = (size_t)s->cfg->client_queue_bytes;
    size_t budget = s->cfg->queue_budget_bytes > 0 ? (size_t)s->cfg->queue_budget_bytes : 0;
    if (budget && s->n_ws) {
        size_t share = budget / s->n_ws;
        if (share < QUEUE_SHARE_MIN)
            share = QUEUE_SHARE_MIN;
        if (share < lim)
            lim = share;
    }
    s->q_lim_bytes = lim;
    atomic_store(&s->st_q_lim, lim);
}

static bool q_over(const client_t *c, size_t add)
{
    size_t n = c->qn - c->qn_snap, b = c->qbytes - c->qbytes_snap;
    if (n == 0)
        return false; /* one message always fits, even one larger than the byte limit */
    return n + 1 > (size_t)c->s->cfg->client_queue || b + add > c->s->q_lim_bytes;
}

/* Drop the oldest queued telemetry; false when there is none. */
static bool drop_oldest_telemetry(client_t *c)
{
    for (uint32_t i = 0; i < c->rcount; i++) {
        qent_t *e = q_at(c, i);
        if (e->m && e->m->kind == CCGW_KIND_TELEMETRY && !e->snap) {
            q_remove(c, i);
            c->s->n_dropped_tele++;
            return true;
        }
    }
    return false;
}

static bool coalescable(int kind)
{
    return kind == CCGW_KIND_STATE || kind == CCGW_KIND_INSTANCE || kind == CCGW_KIND_GATEWAY;
}

/* Remove the queued live message of m's topic (counted as coalesced). */
static bool remove_same_topic(client_t *c, const wmsg_t *m)
{
    for (uint32_t i = c->rcount; i-- > 0;) {
        qent_t *e = q_at(c, i);
        if (e->m && !e->snap && e->m->kind == m->kind && e->m->topic && strcmp(e->m->topic, m->topic) == 0) {
            q_remove(c, i);
            c->s->n_coalesced++;
            return true;
        }
    }
    return false;
}

static uint64_t fnv1a(const char *s, uint64_t h)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}
#define FNV_INIT 1469598103934665603ull

/* One pass from the newest: keep the latest live message of each state
 * topic, drop the older ones (counted). O(queue) with a temporary set; only
 * runs at the limit. */
static void compact_states(client_t *c)
{
    size_t cap = 16;
    while (cap < 2 * c->qn)
        cap <<= 1;
    const char **set = calloc(cap, sizeof *set);
    if (!set)
        return;
    for (uint32_t i = c->rcount; i-- > 0;) {
        if (i >= c->rcount)
            continue; /* the tail's holes were trimmed */
        qent_t *e = q_at(c, i);
        if (e->m && !e->snap && coalescable(e->m->kind) && e->m->topic) {
            size_t h = (size_t)fnv1a(e->m->topic, FNV_INIT) & (cap - 1);
            bool dup = false;
            while (set[h] && !(dup = strcmp(set[h], e->m->topic) == 0))
                h = (h + 1) & (cap - 1);
            if (dup) {
                q_remove(c, i); /* the kept newer message (same topic) still holds set[h]'s string */
                c->s->n_coalesced++;
            } else {
                set[h] = e->m->topic;
            }
        }
    }
    free(set);
}

/* The contract's policy at the limit. Control messages may use twice the
 * limit (a client that keeps asking without reading is too slow too). */
static void enqueue(client_t *c, wmsg_t *m, bool snap)
{
    if (c->closing)
        return;
    if (snap) {
        q_append(c, m, true);
        return;
    }
    if (m->kind == K_CTRL) {
        size_t n = c->qn - c->qn_snap, b = c->qbytes - c->qbytes_snap;
        if (n + 1 > 2 * (size_t)c->s->cfg->client_queue || b + m->len > 2 * c->s->q_lim_bytes)
            slow_close(c);
        else
            q_append(c, m, false);
        return;
    }
    if (!q_over(c, m->len)) {
        q_append(c, m, false);
        return;
    }
    /* state: the latest per topic; the queued one goes, the new one takes the tail (its order
     * with the other topics is kept) */
    if (coalescable(m->kind))
        remove_same_topic(c, m);
    /* anything but telemetry: first the lossless room, older duplicates of other state topics */
    if (q_over(c, m->len) && m->kind != CCGW_KIND_TELEMETRY)
        compact_states(c);
    while (q_over(c, m->len))
        if (!drop_oldest_telemetry(c))
            break;
    if (!q_over(c, m->len)) {
        q_append(c, m, false);
        return;
    }
    if (m->kind == CCGW_KIND_TELEMETRY) {
        c->s->n_dropped_tele++;
        return;
    }
    slow_close(c); /* events, alarms and a state that cannot be coalesced */
}

static void enqueue_ctrl(client_t *c, char *json, size_t len)
{
    if (!json) {
        CLOG_ERROR(TAG, "ws client %llu: out of memory encoding an answer", (unsigned long long)c->id);
        return;
    }
    wmsg_t *m = wmsg_new(&c->s->serial, K_CTRL, NULL, json, len);
    if (!m)
        return;
    enqueue(c, m, false);
    wmsg_unref(m);
}

static void send_error(client_t *c, bool has_id, int64_t id, const char *code, const char *msg)
{
    size_t len;
    char *j = ccgw_ws_encode_error(has_id, id, code, msg, &len);
    enqueue_ctrl(c, j, len);
}

/* ---- write scheduling ---- */

static void flush_cb(lws_sorted_usec_list_t *sul)
{
    struct ccgw_http_server *s = lws_container_of(sul, struct ccgw_http_server, flush_sul);
    s->flush_scheduled = false;
    client_t *c = s->dirty;
    s->dirty = NULL;
    while (c) {
        client_t *next = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        lws_callback_on_writable(c->wsi);
        c = next;
    }
}

static void schedule_write(client_t *c)
{
    struct ccgw_http_server *s = c->s;
    if (s->cfg->batch_ms <= 0) {
        lws_callback_on_writable(c->wsi);
        return;
    }
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = s->dirty;
    s->dirty = c;
    if (!s->flush_scheduled) {
        s->flush_scheduled = true;
        lws_sul_schedule(s->ctx, 0, &s->flush_sul, flush_cb, (lws_usec_t)s->cfg->batch_ms * LWS_US_PER_MS);
    }
}

static void dirty_remove(client_t *c)
{
    if (!c->dirty)
        return;
    for (client_t **pp = &c->s->dirty; *pp; pp = &(*pp)->dirty_next) {
        if (*pp == c) {
            *pp = c->dirty_next;
            break;
        }
    }
    c->dirty = false;
}

static void frame_free(frame_t *f)
{
    free(f->serials);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

static void fcache_clear(struct ccgw_http_server *s)
{
    for (size_t i = 0; i < FCACHE_SLOTS; i++)
        frame_free(&s->fcache[i]);
}

/* The batch frame of the first n live messages of c's queue (flen bytes):
 * one built for another client with the same messages, or a new one (kept
 * in the cache in place of the least recently used). NULL: out of memory. */
static frame_t *batch_frame(client_t *c, size_t n, size_t flen)
{
    struct ccgw_http_server *s = c->s;
    uint64_t first = 0;
    for (uint32_t i = 0; i < c->rcount && !first; i++)
        if (q_at(c, i)->m)
            first = q_at(c, i)->m->serial;
    frame_t *lru = &s->fcache[0];
    for (size_t k = 0; k < FCACHE_SLOTS; k++) {
        frame_t *f = &s->fcache[k];
        if (f->used < lru->used)
            lru = f;
        if (f->n != n || f->len != flen || f->serials[0] != first)
            continue;
        size_t j = 0;
        for (uint32_t i = 0; i < c->rcount && j < n; i++) {
            const wmsg_t *m = q_at(c, i)->m;
            if (!m)
                continue;
            if (m->serial != f->serials[j])
                break;
            j++;
        }
        if (j == n) {
            f->used = ++s->fclock;
            atomic_fetch_add(&s->st_frame_reused, 1);
            return f;
        }
    }
    frame_t nf = {.n = n, .len = flen, .used = ++s->fclock};
    nf.serials = malloc(n * sizeof *nf.serials);
    nf.buf = malloc(LWS_PRE + flen);
    if (!nf.serials || !nf.buf) {
        frame_free(&nf);
        return NULL;
    }
    static const char pre[] = "{\"op\":\"batch\",\"msgs\":[", post[] = "]}";
    unsigned char *p = nf.buf + LWS_PRE;
    memcpy(p, pre, sizeof pre - 1);
    p += sizeof pre - 1;
    size_t j = 0;
    for (uint32_t i = 0; i < c->rcount && j < n; i++) {
        const wmsg_t *m = q_at(c, i)->m;
        if (!m)
            continue;
        if (j)
            *p++ = ',';
        memcpy(p, m->json, m->len);
        p += m->len;
        nf.serials[j++] = m->serial;
    }
    memcpy(p, post, sizeof post - 1);
    frame_free(lru);
    *lru = nf;
    return lru;
}

/* One frame: the head message alone (written from the shared message), or a
 * batch of several. */
static int write_some(client_t *c)
{
    if (!c->qn)
        return 0;
    size_t n = 0, total = 0;
    wmsg_t *head = NULL;
    for (uint32_t i = 0; i < c->rcount && n < BATCH_MAX_MSGS; i++) {
        const wmsg_t *m = q_at(c, i)->m;
        if (!m)
            continue;
        if (n > 0 && total + m->len + 1 > FRAME_MAX)
            break;
        if (!head)
            head = q_at(c, i)->m;
        total += m->len + 1;
        n++;
    }
    static const size_t batch_extra = sizeof "{\"op\":\"batch\",\"msgs\":[]}" - 1;
    unsigned char *out;
    size_t flen;
    if (n == 1) {
        out = head->json;
        flen = head->len;
    } else {
        flen = batch_extra + total - 1;
        frame_t *f = batch_frame(c, n, flen);
        if (!f) {
            CLOG_ERROR(TAG, "ws client %llu: out of memory writing a frame", (unsigned long long)c->id);
            return -1;
        }
        out = f->buf + LWS_PRE;
    }
    int rc = lws_write(c->wsi, out, flen, LWS_WRITE_TEXT); /* the payload is not changed (no mask, no deflate) */
    for (size_t i = 0; i < n; i++)
        q_remove(c, 0); /* the head is never a hole (q_trim) */
    if (rc < (int)flen) {
        CLOG_WARN(TAG, "ws client %llu (%s): write failed", (unsigned long long)c->id, c->remote);
        return -1;
    }
    atomic_fetch_add(&c->s->st_frames, 1);
    atomic_fetch_add(&c->s->st_msgs, n);
    if (c->qn)
        lws_callback_on_writable(c->wsi);
    else if (c->rcap > 64)
        q_clear(c); /* an idle client gives the grown ring back */
    return 0;
}

/* ---- subscription groups ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static uint64_t group_hash(int role, char *const *pf, size_t n_pf, char *const *subs, size_t n_subs)
{
    uint64_t h = FNV_INIT ^ (uint64_t)role;
    for (size_t i = 0; i < n_pf; i++)
        h = fnv1a(pf[i], h) * 31 + 1;
    h = h * 131 + 7;
    for (size_t i = 0; i < n_subs; i++)
        h = fnv1a(subs[i], h) * 31 + 1;
    return h;
}

static bool group_is(const sgroup_t *g, uint64_t h, int role, char *const *pf, size_t n_pf, char *const *subs,
                     size_t n_subs)
{
    if (g->hash != h || g->role != role || g->n_pf != n_pf || g->n_subs != n_subs)
        return false;
    for (size_t i = 0; i < n_pf; i++)
        if (strcmp(g->pf[i], pf[i]))
            return false;
    for (size_t i = 0; i < n_subs; i++)
        if (strcmp(g->subs[i], subs[i]))
            return false;
    return true;
}

static void group_free(sgroup_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_pf; i++)
        free(g->pf[i]);
    for (size_t i = 0; i < g->n_subs; i++)
        free(g->subs[i]);
    free(g->pf);
    free(g->subs);
    free(g->mem);
    free(g);
}

static char **strv_dup(char *const *v, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++) {
        if (!(out[i] = strdup(v[i]))) {
            while (i-- > 0)
                free(out[i]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void group_leave(client_t *c)
{
    sgroup_t *g = c->g;
    if (!g)
        return;
    g->mem[c->gidx] = g->mem[g->n_members - 1];
    g->mem[c->gidx]->gidx = c->gidx;
    c->g = NULL;
    atomic_fetch_sub(&c->s->n_subscribed, 1);
    if (--g->n_members == 0) {
        struct ccgw_http_server *s = c->s;
        if (g->prev)
            g->prev->next = g->next;
        else
            s->groups = g->next;
        if (g->next)
            g->next->prev = g->prev;
        s->n_groups--;
        atomic_store(&s->st_groups, s->n_groups);
        group_free(g);
    }
}

/* Move c to the group of these subscriptions (any order, distinct) and its
 * principal's filters; n == 0: no group. < 0 (out of memory): c unchanged. */
static int client_regroup(client_t *c, char *const *subs_in, size_t n)
{
    struct ccgw_http_server *s = c->s;
    if (n == 0 || !c->who) {
        group_leave(c);
        return 0;
    }
    char *subs[MAX_SUBS + 1];
    memcpy(subs, subs_in, n * sizeof *subs);
    qsort(subs, n, sizeof *subs, cmp_str);
    int role = (int)c->who->role;
    uint64_t h = group_hash(role, c->who->filters, c->who->n_filters, subs, n);
    sgroup_t *g = s->groups;
    while (g && !group_is(g, h, role, c->who->filters, c->who->n_filters, subs, n))
        g = g->next;
    if (g && g == c->g)
        return 0;
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g)
            return -1;
        if ((g->pf = strv_dup(c->who->filters, c->who->n_filters)))
            g->n_pf = c->who->n_filters;
        if ((g->subs = strv_dup(subs, n)))
            g->n_subs = n;
        if (!g->pf || !g->subs) {
            group_free(g);
            return -1;
        }
        g->hash = h;
        g->role = role;
        g->next = s->groups;
        if (s->groups)
            s->groups->prev = g;
        s->groups = g;
        s->n_groups++;
        atomic_store(&s->st_groups, s->n_groups);
    }
    if (g->n_members == g->mcap) {
        size_t cap = g->mcap ? 2 * g->mcap : 4;
        client_t **mem = realloc(g->mem, cap * sizeof *mem);
        if (!mem) {
            if (!g->n_members) { /* new: unlink it again */
                s->groups = g->next;
                if (g->next)
                    g->next->prev = NULL;
                s->n_groups--;
                atomic_store(&s->st_groups, s->n_groups);
                group_free(g);
            }
            return -1;
        }
        g->mem = mem;
        g->mcap = cap;
    }
    group_leave(c);
    c->g = g;
    c->gidx = g->n_members;
    g->mem[g->n_members++] = c;
    atomic_fetch_add(&s->n_subscribed, 1);
    return 0;
}

/* ---- the hub ---- */

static bool group_wants(const sgroup_t *g, const char *topic)
{
    bool match = false;
    for (size_t i = 0; i < g->n_subs && !match; i++)
        match = ccgw_topic_matches(g->subs[i], topic);
    if (!match)
        return false;
    ccgw_principal_t p = {.name = (char *)"", .role = (ccgw_role_t)g->role, .filters = g->pf, .n_filters = g->n_pf};
    return ccgw_principal_may_see(&p, topic);
}

static void distribute(struct ccgw_http_server *s, inmsg_t *im)
{
    wmsg_t *m = NULL;
    for (sgroup_t *g = s->groups, *gnext; g; g = gnext) {
        gnext = g->next; /* g is freed when a slow close takes its last member */
        if (!group_wants(g, im->topic))
            continue;
        if (!m) {
            size_t len;
            char *j = ccgw_ws_encode_msg(im->topic, im->payload, im->len, ccgw_kind_retained(im->kind), &len);
            if (!(m = wmsg_new(&s->serial, (int)im->kind, im->topic, j, len))) {
                CLOG_ERROR(TAG, "out of memory encoding a message for WebSocket clients");
                return;
            }
        }
        /* from the end: a slow close moves the last member into c's place, one already done */
        client_t **mem = g->mem;
        for (size_t i = g->n_members; i-- > 0;) {
            if (i >= 4)
                __builtin_prefetch(mem[i - 4]);
            enqueue(mem[i], m, false);
        }
    }
    wmsg_unref(m);
}

/* The service thread's plain counters, for the other threads (tick, drain, exit). */
static void publish_stats(struct ccgw_http_server *s)
{
    atomic_store(&s->st_q_bytes, s->q_bytes);
    atomic_store(&s->st_dropped_tele, s->n_dropped_tele);
    atomic_store(&s->st_coalesced, s->n_coalesced);
}

static void drain_inbox(struct ccgw_http_server *s)
{
    pthread_mutex_lock(&s->in_lock);
    inmsg_t *list = s->in_head;
    s->in_head = s->in_tail = NULL;
    s->in_bytes = 0;
    atomic_store(&s->in_depth, 0);
    pthread_mutex_unlock(&s->in_lock);
    while (list) {
        inmsg_t *next = list->next;
        distribute(s, list);
        free(list);
        list = next;
    }
    publish_stats(s);
}

typedef struct sub_ctx {
    struct ccgw_http_server *s;
    client_t *c;
    const char *filter;
    bool add;
    long count;
} sub_ctx_t;

static void snapshot_one(void *ctx, ccgw_kind_t kind, const char *topic, const char *payload, size_t len)
{
    sub_ctx_t *x = ctx;
    if (x->c->closing || !ccgw_topic_matches(x->filter, topic) || !ccgw_principal_may_see(x->c->who, topic))
        return;
    size_t jl;
    char *j = ccgw_ws_encode_msg(topic, payload, len, true, &jl);
    wmsg_t *m = wmsg_new(&x->s->serial, (int)kind, topic, j, jl);
    if (!m) {
        CLOG_ERROR(TAG, "out of memory building a snapshot");
        return;
    }
    enqueue(x->c, m, true);
    wmsg_unref(m);
    x->count++;
}

/* Under the cache lock: everything tapped so far goes out first, then the
 * snapshot of the new subscription. */
static void sub_locked(void *ctx)
{
    sub_ctx_t *x = ctx;
    drain_inbox(x->s);
    if (x->add) {
        client_t *c = x->c;
        char *subs[MAX_SUBS + 1];
        size_t n = c->g ? c->g->n_subs : 0;
        if (n)
            memcpy(subs, c->g->subs, n * sizeof *subs);
        subs[n++] = (char *)x->filter;
        if (client_regroup(c, subs, n) != 0) {
            x->count = -1;
            return;
        }
    }
    ccgw_bus_retained_each_locked(x->s->gw->bus, snapshot_one, x);
}

static void op_sub(client_t *c, ccgw_ws_req_t *r)
{
    struct ccgw_http_server *s = c->s;
    bool have = false;
    size_t n_subs = c->g ? c->g->n_subs : 0;
    for (size_t i = 0; i < n_subs; i++)
        have = have || strcmp(c->g->subs[i], r->filter) == 0;
    if (!have && n_subs >= MAX_SUBS) {
        send_error(c, r->has_id, r->id, "too_many_subs", "at most 64 subscriptions per connection");
        return;
    }
    /* counted before the lock: a retained message tapped after the snapshot reaches the inbox */
    atomic_fetch_add(&s->n_subscribed, 1);
    sub_ctx_t x = {.s = s, .c = c, .filter = r->filter, .add = !have};
    ccgw_bus_with_cache_locked(s->gw->bus, sub_locked, &x);
    atomic_fetch_sub(&s->n_subscribed, 1);
    if (x.count < 0) {
        send_error(c, r->has_id, r->id, "bad_request", "out of memory");
        return;
    }
    size_t len;
    char *j = ccgw_ws_encode_ack(r->has_id, r->id, x.count, NULL, NULL, &len);
    enqueue_ctrl(c, j, len);
}

static void op_unsub(client_t *c, ccgw_ws_req_t *r)
{
    if (c->g) {
        char *subs[MAX_SUBS + 1];
        size_t n = 0;
        bool found = false;
        for (size_t i = 0; i < c->g->n_subs; i++) {
            if (strcmp(c->g->subs[i], r->filter) == 0)
                found = true;
            else
                subs[n++] = c->g->subs[i];
        }
        if (found && client_regroup(c, subs, n) != 0) {
            send_error(c, r->has_id, r->id, "bad_request", "out of memory");
            return;
        }
    }
    size_t len;
    char *j = ccgw_ws_encode_ack(r->has_id, r->id, -1, NULL, NULL, &len);
    enqueue_ctrl(c, j, len);
}

/* ---- commands ---- */

static void audit_who(const client_t *c, ccgw_audit_who_t *w)
{
    w->token = c->who ? c->who->name : "-";
    w->role = c->who ? ccgw_role_name(c->who->role) : "-";
    w->remote = c->remote;
    w->channel = "ws";
}

static void send_busy_reply(client_t *c, ccgw_ws_req_t *r, const char *why)
{
    char body[256];
    snprintf(body, sizeof body, "{\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"%s\"}}", why);
    size_t len;
    char *j = ccgw_ws_encode_reply(r->has_id, r->id, body, strlen(body), &len);
    enqueue_ctrl(c, j, len);
}

static void dispatch(client_t *c, ccgw_ws_req_t *r, const char *action, const char *name, const char *args,
                     size_t args_len)
{
    struct ccgw_http_server *s = c->s;
    if (c->cmds >= MAX_CLIENT_CMDS) {
        send_busy_reply(c, r, "too many commands in flight on this connection");
        return;
    }
    if (atomic_fetch_add(&s->pending, 1) >= MAX_PENDING) {
        atomic_fetch_sub(&s->pending, 1);
        send_busy_reply(c, r, "too many commands in flight");
        return;
    }
    reply_ctx_t *rc = calloc(1, sizeof *rc);
    if (!rc) {
        atomic_fetch_sub(&s->pending, 1);
        send_busy_reply(c, r, "out of memory");
        return;
    }
    rc->s = s;
    rc->conn_id = c->id;
    rc->has_id = r->has_id;
    rc->req_id = r->id;
    c->cmds++;
    atomic_fetch_add(&s->st_cmds, 1);
    ccgw_reply_target_t t = {.send = ws_reply_send, .release = ws_reply_release, .ctx = rc};
    if (s->gw->audit) {
        ccgw_audit_who_t w;
        audit_who(c, &w);
        t = ccgw_audit_wrap(s->gw->audit, &w, action, r->topic, args, args_len, t);
    }
    char origin[96];
    snprintf(origin, sizeof origin, "ws:%s", c->who ? c->who->name : "-");
    ccgw_cmd_caller_t caller = {.role = c->who ? (int)c->who->role : CCGW_ROLE_NONE, .origin = origin};
    ccgw_command_dispatch_as(s->gw, &caller, r->class_name, r->device, name, args, args_len, t);
}

static void refuse_forbidden(client_t *c, ccgw_ws_req_t *r, const char *action, const char *args, size_t args_len,
                             const char *why)
{
    CLOG_WARN(TAG, "ws client %llu (%s, %s): %s %s refused: %s", (unsigned long long)c->id, c->remote,
              c->who ? c->who->name : "-", action, r->topic, why);
    if (c->s->gw->audit) {
        ccgw_audit_who_t w;
        audit_who(c, &w);
        ccgw_audit_record(c->s->gw->audit, &w, action, r->topic, args, args_len, "forbidden", why);
    }
    send_error(c, r->has_id, r->id, "forbidden", why);
}

static void op_cmd(client_t *c, ccgw_ws_req_t *r)
{
    char why[200] = "";
    if (!ccgw_principal_may_command(c->who, r->topic, r->name, why, sizeof why)) {
        refuse_forbidden(c, r, "command", r->args, r->args_len, why[0] ? why : "not allowed");
        return;
    }
    dispatch(c, r, "command", r->name, r->args, r->args_len);
}

static void op_ack_alarm(client_t *c, ccgw_ws_req_t *r)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "code");
    ccgw_jw_string(&w, r->name);
    ccgw_jw_key(&w, "by");
    ccgw_jw_string(&w, c->who->name);
    if (r->note) {
        ccgw_jw_key(&w, "note");
        ccgw_jw_string(&w, r->note);
    }
    ccgw_jw_end_object(&w);
    if (w.error) {
        ccgw_jw_free(&w);
        send_error(c, r->has_id, r->id, "bad_request", "out of memory");
        return;
    }
    char why[200] = "";
    if (!ccgw_principal_may_ack(c->who, r->topic, why, sizeof why))
        refuse_forbidden(c, r, "alarm.ack", w.buf, w.len, why[0] ? why : "not allowed");
    else
        dispatch(c, r, "alarm.ack", "alarm.ack", w.buf, w.len);
    ccgw_jw_free(&w);
}

/* ---- authentication ---- */

static void auth_refused(client_t *c, bool has_id, int64_t id, const char *why)
{
    atomic_fetch_add(&c->s->st_refused, 1);
    CLOG_WARN(TAG, "ws client %llu (%s): unauthorized: %s", (unsigned long long)c->id, c->remote, why);
    send_error(c, has_id, id, "unauthorized", why);
    /* the error goes out first, then the close */
    c->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION;
    c->close_reason = "unauthorized";
    c->closing = true;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
}

static void op_auth(client_t *c, ccgw_ws_req_t *r)
{
    char why[128] = "";
    ccgw_principal_t *p = ccgw_auth_check(c->s->auth, r->token, why, sizeof why);
    if (!p) {
        auth_refused(c, r->has_id, r->id, why[0] ? why : "unknown token");
        return;
    }
    ccgw_principal_free(c->who);
    c->who = p;
    if (c->g) { /* what the subscriptions see follows the new token's filters */
        char *subs[MAX_SUBS + 1];
        size_t n = c->g->n_subs;
        memcpy(subs, c->g->subs, n * sizeof *subs);
        if (client_regroup(c, subs, n) != 0) {
            CLOG_ERROR(TAG, "ws client %llu: out of memory: its subscriptions are dropped", (unsigned long long)c->id);
            group_leave(c);
        }
    }
    CLOG_INFO(TAG, "ws client %llu (%s): authenticated as %s (%s)", (unsigned long long)c->id, c->remote, p->name,
              ccgw_role_name(p->role));
    size_t len;
    char *j = ccgw_ws_encode_ack(r->has_id, r->id, -1, ccgw_role_name(p->role), p->name, &len);
    enqueue_ctrl(c, j, len);
}

static void handle_frame(client_t *c, const char *buf, size_t len)
{
    ccgw_ws_req_t r;
    ccgw_ws_err_t err;
    if (ccgw_ws_parse(buf, len, c->s->gw->site_base, &r, &err) != 0) {
        if (!c->who) {
            send_error(c, err.has_id, err.id, "unauthorized", "authenticate first: {\"op\":\"auth\",\"token\":...}");
            return;
        }
        send_error(c, err.has_id, err.id, err.code, err.message);
        return;
    }
    if (r.op == CCGW_WS_OP_AUTH) {
        op_auth(c, &r);
    } else if (!c->who) {
        send_error(c, r.has_id, r.id, "unauthorized", "authenticate first: {\"op\":\"auth\",\"token\":...}");
    } else {
        switch (r.op) {
        case CCGW_WS_OP_SUB: op_sub(c, &r); break;
        case CCGW_WS_OP_UNSUB: op_unsub(c, &r); break;
        case CCGW_WS_OP_CMD: op_cmd(c, &r); break;
        case CCGW_WS_OP_ACK_ALARM: op_ack_alarm(c, &r); break;
        case CCGW_WS_OP_PING: {
            size_t l;
            char *j = ccgw_ws_encode_pong(r.has_id, r.id, &l);
            enqueue_ctrl(c, j, l);
            break;
        }
        case CCGW_WS_OP_AUTH: break;
        }
    }
    ccgw_ws_req_free(&r);
}

/* ---- completions on the service thread ---- */

static client_t *client_by_id(struct ccgw_http_server *s, uint64_t id)
{
    for (client_t *c = s->clients; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

static http_req_t *req_by_id(struct ccgw_http_server *s, uint64_t id)
{
    for (http_req_t *h = s->reqs; h; h = h->next)
        if (h->id == id)
            return h;
    return NULL;
}

static void drain_done(struct ccgw_http_server *s)
{
    pthread_mutex_lock(&s->done_lock);
    done_item_t *d = s->done_head;
    s->done_head = s->done_tail = NULL;
    pthread_mutex_unlock(&s->done_lock);
    while (d) {
        done_item_t *next = d->next;
        atomic_fetch_sub(&s->pending, 1);
        if (d->ws) {
            client_t *c = client_by_id(s, d->conn_id);
            if (c) {
                c->cmds--;
                size_t len;
                char *j = ccgw_ws_encode_reply(d->has_id, d->req_id, d->body, d->len, &len);
                enqueue_ctrl(c, j, len);
            }
            free(d->body);
        } else {
            http_req_t *h = req_by_id(s, d->conn_id);
            if (h && h->pending && !h->responded) {
                h->status = d->status;
                h->ctype = d->ctype ? d->ctype : "application/json";
                h->resp = d->body;
                h->resp_len = d->len;
                h->responded = true;
                lws_callback_on_writable(h->wsi);
            } else {
                free(d->body);
            }
        }
        free(d);
        d = next;
    }
}

/* ---- HTTP ---- */

static char *error_body(const char *code, const char *message, size_t *len)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "error");
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "code");
    ccgw_jw_string(&w, code);
    ccgw_jw_key(&w, "message");
    ccgw_jw_string(&w, message);
    ccgw_jw_end_object(&w);
    ccgw_jw_end_object(&w);
    if (w.error) {
        ccgw_jw_free(&w);
        return NULL;
    }
    return ccgw_jw_take(&w, len);
}

/* Queue a response (headers and body go out on the writeable callback). */
static void http_respond(http_req_t *h, int status, const char *ctype, char *body, size_t len)
{
    h->status = status;
    h->ctype = ctype;
    h->resp = body;
    h->resp_len = body ? len : 0;
    h->responded = true;
    lws_callback_on_writable(h->wsi);
}

static void http_error(http_req_t *h, int status, const char *code, const char *message)
{
    size_t len = 0;
    char *b = error_body(code, message, &len);
    http_respond(h, status, "application/json", b, len);
}

static void http_req_free(struct ccgw_http_server *s, http_req_t *h)
{
    if (!h)
        return;
    if (h->prev)
        h->prev->next = h->next;
    else if (s->reqs == h)
        s->reqs = h->next;
    if (h->next)
        h->next->prev = h->prev;
    free(h->query);
    free(h->body);
    free(h->resp);
    free(h);
}

static const char *peer(struct lws *wsi, char *buf, size_t len)
{
    buf[0] = '\0';
    lws_get_peer_simple(wsi, buf, len);
    if (!buf[0])
        snprintf(buf, len, "?");
    return buf;
}

/* The bearer token of the request (Authorization header), or NULL; buf holds it. */
static const char *header_token(struct lws *wsi, char *buf, int len)
{
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION) <= 0 ||
        lws_hdr_copy(wsi, buf, len, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        return NULL;
    return ccgw_auth_bearer(buf);
}

static void api_call(struct ccgw_http_server *s, http_req_t *h)
{
    char hbuf[1024];
    const char *tok = header_token(h->wsi, hbuf, sizeof hbuf);
    char why[128] = "";
    ccgw_principal_t *who = NULL;
    bool had_header = lws_hdr_total_length(h->wsi, WSI_TOKEN_HTTP_AUTHORIZATION) > 0;
    if (!had_header || tok)
        who = ccgw_auth_check(s->auth, tok, why, sizeof why);
    if (!who && had_header)
        CLOG_WARN(TAG, "http %s from %s: token refused: %s", h->path, h->remote, tok ? (why[0] ? why : "unknown token") : "not a Bearer token");
    static const char *const methods[] = {"GET", "POST", "OPTIONS", "PUT", "PATCH", "DELETE", "CONNECT", "HEAD"};
    ccgw_http_req_t req = {.method = h->method >= 0 && h->method < 8 ? methods[h->method] : "?",
                           .path = h->path,
                           .query = h->query,
                           .body = h->body,
                           .body_len = h->body_len,
                           .who = who,
                           .remote = h->remote};
    if (atomic_fetch_add(&s->pending, 1) >= MAX_PENDING) {
        atomic_fetch_sub(&s->pending, 1);
        ccgw_principal_free(who);
        http_error(h, 503, "busy", "too many requests in flight");
        return;
    }
    reply_ctx_t *rc = calloc(1, sizeof *rc);
    if (!rc) {
        atomic_fetch_sub(&s->pending, 1);
        ccgw_principal_free(who);
        http_error(h, 500, "internal", "out of memory");
        return;
    }
    rc->s = s;
    rc->conn_id = h->id;
    ccgw_http_resp_t resp = {0};
    ccgw_http_api_handle(s->gw, &req, &resp, http_done, rc);
    ccgw_principal_free(who);
    if (resp.pending) {
        h->pending = true; /* http_done owns rc now */
        return;
    }
    atomic_fetch_sub(&s->pending, 1);
    free(rc);
    if (resp.status == 401 && !had_header) { /* refusals are logged; a flood only sparsely */
        uint64_t n = atomic_fetch_add(&s->st_unauth_http, 1) + 1;
        if ((n & (n - 1)) == 0)
            CLOG_WARN(TAG, "http %s %s from %s: 401 unauthorized: no token (%llu so far)", req.method, h->path,
                      h->remote, (unsigned long long)n);
    }
    http_respond(h, resp.status ? resp.status : 500, resp.content_type ? resp.content_type : "application/json",
                 resp.body, resp.body_len);
    resp.body = NULL;
    ccgw_http_resp_free(&resp);
}

static const struct {
    const char *ext, *type;
} mime_types[] = {
    {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"}, {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"}, {"json", "application/json"}, {"map", "application/json"},
    {"webmanifest", "application/manifest+json"}, {"svg", "image/svg+xml"}, {"png", "image/png"},
    {"jpg", "image/jpeg"}, {"jpeg", "image/jpeg"}, {"gif", "image/gif"}, {"ico", "image/x-icon"},
    {"webp", "image/webp"}, {"woff", "font/woff"}, {"woff2", "font/woff2"}, {"ttf", "font/ttf"},
    {"txt", "text/plain; charset=utf-8"}, {"wasm", "application/wasm"},
};

static const char *mime_for(const char *path)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return "application/octet-stream";
    for (size_t i = 0; i < sizeof mime_types / sizeof mime_types[0]; i++)
        if (strcasecmp(dot + 1, mime_types[i].ext) == 0)
            return mime_types[i].type;
    return "application/octet-stream";
}

/* Map a request path to a file under web_root; false when it is not one. */
static bool static_path(const struct ccgw_http_server *s, const char *path, char *out, size_t len)
{
    if (!s->web_root[0] || path[0] != '/' || strchr(path, '\\'))
        return false;
    /* no "." or ".." segment, no hidden files */
    for (const char *p = path; (p = strchr(p, '/')); p++)
        if (p[1] == '.')
            return false;
    char want[PATH_MAX];
    size_t pl = strlen(path);
    if (snprintf(want, sizeof want, "%s%s%s", s->web_root, path, path[pl - 1] == '/' ? "index.html" : "") >=
        (int)sizeof want)
        return false;
    char real[PATH_MAX];
    if (!realpath(want, real))
        return false;
    size_t rl = strlen(s->web_root);
    if (strncmp(real, s->web_root, rl) != 0 || real[rl] != '/')
        return false;
    struct stat st;
    if (stat(real, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    snprintf(out, len, "%s", real);
    return true;
}

/* The query string, its arguments joined with '&' (libwebsockets 4.1 keeps
 * them as separate, URL-decoded fragments); NULL when none or over 8 KiB. */
static char *query_string(struct lws *wsi)
{
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    if (total <= 0 || total > 8192)
        return NULL;
    size_t cap = (size_t)total * 2 + 64, len = 0;
    char *q = malloc(cap), frag[8193];
    if (!q)
        return NULL;
    q[0] = '\0';
    for (int i = 0; i < 256; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n <= 0)
            break;
        if (len + (size_t)n + 2 > cap)
            break;
        if (len)
            q[len++] = '&';
        memcpy(q + len, frag, (size_t)n);
        len += (size_t)n;
        q[len] = '\0';
    }
    if (!len) {
        free(q);
        return NULL;
    }
    return q;
}

static int http_request(struct ccgw_http_server *s, struct lws *wsi, pss_t *pss, const char *uri)
{
    atomic_fetch_add(&s->st_http_req, 1);
    if (pss->h) {
        http_req_free(s, pss->h);
        pss->h = NULL;
    }
    http_req_t *h = calloc(1, sizeof *h);
    if (!h)
        return -1;
    h->wsi = wsi;
    h->id = ++s->next_id;
    h->next = s->reqs;
    if (s->reqs)
        s->reqs->prev = h;
    s->reqs = h;
    pss->h = h;
    peer(wsi, h->remote, sizeof h->remote);
    char *mu = NULL;
    int mul = 0;
    h->method = lws_http_get_uri_and_method(wsi, &mu, &mul);
    snprintf(h->path, sizeof h->path, "%s", uri ? uri : "/");
    h->query = query_string(wsi);
    if (strcmp(h->path, "/ws") == 0) {
        http_error(h, 400, "bad_request", "/ws is a WebSocket endpoint: use an Upgrade request");
        return 0;
    }
    if (ccgw_http_api_owns(h->path)) {
        long clen = -1;
        char cl[32];
        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
            lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
            clen = strtol(cl, NULL, 10);
        if (clen > (long)s->cfg->max_request_bytes) {
            http_error(h, 413, "too_large", "request body over http.max_request_bytes");
            return 0;
        }
        if (clen > 0) {
            h->body_expected = true; /* LWS_CALLBACK_HTTP_BODY(_COMPLETION) follow */
            return 0;
        }
        api_call(s, h);
        return 0;
    }
    if (h->method != LWSHUMETH_GET && h->method != LWSHUMETH_HEAD) {
        http_error(h, 405, "method_not_allowed", "static files are read with GET");
        return 0;
    }
    char file[PATH_MAX];
    if (!s->cfg->dashboard || !static_path(s, h->path, file, sizeof file)) {
        http_error(h, 404, "not_found", "no such path");
        return 0;
    }
    /* lws writes the file (HEAD included): the request state is not needed any more */
    http_req_free(s, h);
    pss->h = NULL;
    int n = lws_serve_http_file(wsi, file, mime_for(file), NULL, 0);
    if (n < 0 || (n > 0 && lws_http_transaction_completed(wsi)))
        return -1;
    return 0;
}

static int http_writeable(struct ccgw_http_server *s, struct lws *wsi, pss_t *pss)
{
    http_req_t *h = pss->h;
    if (!h || !h->responded || !h->ctype)
        return 0;
    if (!h->headers_sent) {
        unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
        if (h->status >= 400)
            atomic_fetch_add(&s->st_http_err, 1);
        if (lws_add_http_common_headers(wsi, (unsigned int)h->status, h->ctype, (lws_filepos_t)h->resp_len, &p,
                                        end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-store", 8, &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        h->headers_sent = true;
        if (h->resp_len == 0 || h->method == LWSHUMETH_HEAD)
            goto complete;
        lws_callback_on_writable(wsi);
        return 0;
    }
    size_t chunk = h->resp_len - h->resp_off;
    if (chunk > 16384)
        chunk = 16384;
    unsigned char *buf = malloc(LWS_PRE + chunk);
    if (!buf)
        return -1;
    memcpy(buf + LWS_PRE, h->resp + h->resp_off, chunk);
    bool last = h->resp_off + chunk >= h->resp_len;
    int rc = lws_write(wsi, buf + LWS_PRE, chunk, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
    free(buf);
    if (rc < (int)chunk)
        return -1;
    h->resp_off += chunk;
    if (!last) {
        lws_callback_on_writable(wsi);
        return 0;
    }
complete:
    http_req_free(s, h);
    pss->h = NULL;
    if (lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

/* ---- WebSocket connections ---- */

static bool is_ws_path(struct lws *wsi)
{
    char uri[64];
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0 || lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) < 0)
        return false;
    return strcmp(uri, "/ws") == 0;
}

static void ws_established(struct ccgw_http_server *s, struct lws *wsi, pss_t *pss)
{
    client_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->s = s;
    c->wsi = wsi;
    c->id = ++s->next_id;
    c->t_open_ms = now_ms();
    peer(wsi, c->remote, sizeof c->remote);
    c->next = s->clients;
    if (s->clients)
        s->clients->prev = c;
    s->clients = c;
    pss->c = c;
    s->n_ws++;
    update_queue_limit(s);
    atomic_fetch_add(&s->st_clients, 1);
    atomic_fetch_add(&s->st_clients_total, 1);

    char hbuf[1024], qbuf[CCGW_WS_MAX_TOKEN + 8];
    const char *tok = header_token(wsi, hbuf, sizeof hbuf);
    bool had_header = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION) > 0;
    if (!tok && lws_get_urlarg_by_name(wsi, "token=", qbuf, sizeof qbuf))
        tok = lws_get_urlarg_by_name(wsi, "token=", qbuf, sizeof qbuf);
    char why[128] = "";
    if (tok || had_header) {
        c->who = tok ? ccgw_auth_check(s->auth, tok, why, sizeof why) : NULL;
        if (!c->who) {
            auth_refused(c, false, 0, tok ? (why[0] ? why : "unknown token") : "Authorization is not a Bearer token");
            return;
        }
    } else {
        c->who = ccgw_auth_check(s->auth, NULL, why, sizeof why); /* anonymous, or wait for `auth` */
    }
    CLOG_INFO(TAG, "ws client %llu connected from %s as %s", (unsigned long long)c->id, c->remote,
              c->who ? c->who->name : "(not yet authenticated)");
}

static void ws_closed(struct ccgw_http_server *s, pss_t *pss)
{
    client_t *c = pss->c;
    if (!c)
        return;
    pss->c = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    dirty_remove(c);
    group_leave(c);
    q_clear(c);
    s->n_ws--;
    update_queue_limit(s);
    atomic_fetch_sub(&s->st_clients, 1);
    CLOG_INFO(TAG, "ws client %llu (%s) disconnected", (unsigned long long)c->id, c->remote);
    ccgw_principal_free(c->who);
    free(c->rx);
    free(c);
}

static void ws_receive(struct ccgw_http_server *s, struct lws *wsi, client_t *c, const char *in, size_t len)
{
    if (lws_is_first_fragment(wsi)) {
        c->rx_len = 0;
        c->rx_overflow = false;
        c->rx_binary = lws_frame_is_binary(wsi);
    }
    if (!c->rx_overflow) {
        if (c->rx_len + len > (size_t)s->cfg->max_request_bytes) {
            c->rx_overflow = true;
        } else {
            if (c->rx_len + len > c->rx_cap) { /* grows with the message, up to max_request_bytes */
                size_t cap = c->rx_cap ? c->rx_cap : 1024;
                while (cap < c->rx_len + len)
                    cap *= 2;
                if (cap > (size_t)s->cfg->max_request_bytes)
                    cap = (size_t)s->cfg->max_request_bytes;
                char *nb = realloc(c->rx, cap);
                if (!nb) {
                    c->rx_overflow = true;
                    return;
                }
                c->rx = nb;
                c->rx_cap = cap;
            }
            memcpy(c->rx + c->rx_len, in, len);
            c->rx_len += len;
        }
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
        return;
    if (c->closing)
        return;
    if (c->rx_overflow)
        send_error(c, false, 0, "too_large", "message over http.max_request_bytes");
    else if (c->rx_binary)
        send_error(c, false, 0, "bad_request", "binary frames are not used: send JSON text");
    else
        handle_frame(c, c->rx, c->rx_len);
    c->rx_len = 0;
    if (c->rx_cap > 4096) { /* an idle client keeps at most a small buffer */
        free(c->rx);
        c->rx = NULL;
        c->rx_cap = 0;
    }
}

/* ---- timers and the service thread ---- */

static void tick_cb(lws_sorted_usec_list_t *sul)
{
    struct ccgw_http_server *s = lws_container_of(sul, struct ccgw_http_server, tick_sul);
    uint64_t now = now_ms();
    for (client_t *c = s->clients; c; c = c->next) {
        if (!c->who && !c->closing && now - c->t_open_ms >= AUTH_TIMEOUT_MS) {
            atomic_fetch_add(&s->st_refused, 1);
            CLOG_WARN(TAG, "ws client %llu (%s): no authentication within 10 s: closed", (unsigned long long)c->id,
                      c->remote);
            client_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "unauthorized");
        }
    }
    publish_stats(s);
    if (s->fclock == s->fclock_tick)
        fcache_clear(s); /* no batch frame for a tick: the cache's memory goes back */
    s->fclock_tick = s->fclock;
    lws_sul_schedule(s->ctx, 0, &s->tick_sul, tick_cb, 250 * LWS_US_PER_MS);
}

static void on_stop_request(struct ccgw_http_server *s)
{
    if (s->stop_deadline)
        return;
    s->stop_deadline = now_ms() + STOP_GRACE_MS;
    for (client_t *c = s->clients; c; c = c->next)
        client_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "going away");
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct ccgw_http_server *s = lws_context_user(lws_get_context(wsi));
    pss_t *pss = user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (!s)
            return 0;
        drain_inbox(s);
        drain_done(s);
        if (atomic_load(&s->stopping))
            on_stop_request(s);
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (!is_ws_path(wsi))
            return 1;
        if (atomic_load(&s->stopping) || atomic_load(&s->st_clients) >= (uint64_t)s->cfg->max_clients) {
            atomic_fetch_add(&s->st_refused, 1);
            CLOG_WARN(TAG, "ws connection refused: %s", atomic_load(&s->stopping) ? "stopping" : "http.max_clients reached");
            return 1;
        }
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        ws_established(s, wsi, pss);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (pss && pss->c)
            ws_receive(s, wsi, pss->c, in, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        client_t *c = pss ? pss->c : NULL;
        if (!c)
            return 0;
        if (c->closing && !c->qn) { /* what was queued before the close (an error) went out first */
            const char *why = c->close_reason ? c->close_reason : "";
            lws_close_reason(wsi, (enum lws_close_status)c->close_code, (unsigned char *)why, strlen(why));
            return -1;
        }
        if (write_some(c) != 0)
            return -1;
        if (c->closing && !c->qn)
            lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLOSED:
        ws_closed(s, pss);
        return 0;
    case LWS_CALLBACK_HTTP:
        return http_request(s, wsi, pss, in);
    case LWS_CALLBACK_HTTP_BODY: {
        http_req_t *h = pss->h;
        if (!h || !h->body_expected || h->too_large)
            return 0;
        if (h->body_len + len > (size_t)s->cfg->max_request_bytes) {
            h->too_large = true;
            return 0;
        }
        char *nb = realloc(h->body, h->body_len + len + 1);
        if (!nb)
            return -1;
        memcpy(nb + h->body_len, in, len);
        h->body = nb;
        h->body_len += len;
        h->body[h->body_len] = '\0';
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
        http_req_t *h = pss->h;
        if (!h || !h->body_expected || h->responded || h->pending)
            return 0; /* answered already (no Content-Length, or 413 up front) */
        if (h->too_large)
            http_error(h, 413, "too_large", "request body over http.max_request_bytes");
        else
            api_call(s, h);
        return 0;
    }
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_writeable(s, wsi, pss);
    case LWS_CALLBACK_CLOSED_HTTP:
        if (pss && pss->h) {
            http_req_free(s, pss->h);
            pss->h = NULL;
        }
        return 0;
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        if (pss && pss->h) {
            http_req_free(s, pss->h);
            pss->h = NULL;
        }
        if (lws_http_transaction_completed(wsi))
            return -1;
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static void lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    if (level & LLL_ERR)
        CLOG_WARN("lws", "%.*s", (int)n, line);
    else
        CLOG_DEBUG("lws", "%.*s", (int)n, line);
}

static void *service_main(void *arg)
{
    struct ccgw_http_server *s = arg;
    pthread_setname_np(pthread_self(), "ccgw:http");
    lws_sul_schedule(s->ctx, 0, &s->tick_sul, tick_cb, 250 * LWS_US_PER_MS);
    for (;;) {
        if (lws_service(s->ctx, 0) < 0)
            break;
        if (s->stop_deadline && (!s->clients || now_ms() >= s->stop_deadline))
            break;
    }
    publish_stats(s);
    return NULL;
}

/* ---- public ---- */

static void default_web_root(char *out, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        out[0] = '\0';
        return;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    if ((size_t)snprintf(out, len, "%.*s/../share/ccgw/web", PATH_MAX - 32, exe) >= len)
        out[0] = '\0'; /* too long: no default */
}

ccgw_http_server_t *ccgw_http_server_new(ccgw_gateway_t *gw)
{
    struct ccgw_http_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->gw = gw;
    s->cfg = &gw->cfg->http;
    s->port = -1;
    pthread_mutex_init(&s->in_lock, NULL);
    pthread_mutex_init(&s->done_lock, NULL);
    s->auth = gw->auth;
    if (!s->auth) {
        s->auth = ccgw_auth_new(s->cfg);
        s->own_auth = true;
        if (!s->auth) {
            CLOG_ERROR(TAG, "cannot set up the http tokens");
            ccgw_http_server_free(s);
            return NULL;
        }
    }
    char root[PATH_MAX];
    if (s->cfg->web_root && s->cfg->web_root[0])
        snprintf(root, sizeof root, "%s", s->cfg->web_root);
    else
        default_web_root(root, sizeof root);
    if (!root[0] || !realpath(root, s->web_root)) {
        s->web_root[0] = '\0';
        if (s->cfg->dashboard)
            CLOG_WARN(TAG, "web_root %s: %s: no dashboard files are served", root[0] ? root : "?", strerror(errno));
    }
    update_queue_limit(s);
    ccgw_bus_set_tap(gw->bus, tap, s);
    return s;
}

int ccgw_http_server_start(ccgw_http_server_t *s)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
    s->protocols[0] = (struct lws_protocols){
        .name = "ccgw.v1",
        .callback = callback,
        .per_session_data_size = sizeof(pss_t),
        .rx_buffer_size = 0,
    };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_OS_CA_CERTS;
    bool tls = s->cfg->cert_file && s->cfg->key_file && s->cfg->cert_file[0] && s->cfg->key_file[0];
    if (tls)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.user = s;
    info.count_threads = 1;
    info.fd_limit_per_thread = (unsigned int)(s->cfg->max_clients + 64);
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        CLOG_ERROR(TAG, "cannot create the libwebsockets context");
        return CCGW_ENOMEM;
    }
    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.vhost_name = "ccgw";
    vi.port = s->cfg->port;
    const char *addr = s->cfg->address ? s->cfg->address : "127.0.0.1";
    /* libwebsockets takes an interface name or a numeric address: resolve a host name here */
    char numeric[INET6_ADDRSTRLEN] = "";
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    int gai = getaddrinfo(addr, NULL, &hints, &ai);
    if (gai != 0 || !ai) {
        CLOG_ERROR(TAG, "http.address %s: %s", addr, gai ? gai_strerror(gai) : "no address");
        lws_context_destroy(s->ctx);
        s->ctx = NULL;
        return CCGW_EINVAL;
    }
    if (ai->ai_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)ai->ai_addr)->sin_addr, numeric, sizeof numeric);
    else if (ai->ai_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_addr, numeric, sizeof numeric);
    freeaddrinfo(ai);
    if (!numeric[0]) {
        CLOG_ERROR(TAG, "http.address %s: not an IPv4 or IPv6 address", addr);
        lws_context_destroy(s->ctx);
        s->ctx = NULL;
        return CCGW_EINVAL;
    }
    vi.iface = numeric;
    vi.protocols = s->protocols;
    /* idle WebSocket connections: PING after 30 s without a sign of life, hang up at 75 s */
    static const lws_retry_bo_t idle = {.secs_since_valid_ping = IDLE_PING_S, .secs_since_valid_hangup = IDLE_HANGUP_S};
    vi.retry_and_idle_policy = &idle;
    vi.keepalive_timeout = 30;
    vi.timeout_secs = 30;
    if (!strchr(numeric, ':'))
        vi.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (tls) {
        vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        vi.ssl_cert_filepath = s->cfg->cert_file;
        vi.ssl_private_key_filepath = s->cfg->key_file;
        vi.alpn = "http/1.1";
    }
    s->vh = lws_create_vhost(s->ctx, &vi);
    if (!s->vh) {
        CLOG_ERROR(TAG, "cannot listen on %s:%d%s", addr, s->cfg->port,
                   tls ? " (or the TLS certificate/key cannot be loaded)" : "");
        lws_context_destroy(s->ctx);
        s->ctx = NULL;
        return CCGW_EIO;
    }
    s->port = lws_get_vhost_listen_port(s->vh);
    if (s->port <= 0) {
        CLOG_ERROR(TAG, "cannot listen on %s:%d", addr, s->cfg->port);
        lws_context_destroy(s->ctx);
        s->ctx = NULL;
        s->vh = NULL;
        return CCGW_EIO;
    }
    atomic_store(&s->started, true);
    if (pthread_create(&s->thread, NULL, service_main, s) != 0) {
        CLOG_ERROR(TAG, "cannot start the http service thread");
        atomic_store(&s->started, false);
        lws_context_destroy(s->ctx);
        s->ctx = NULL;
        return CCGW_ENOMEM;
    }
    s->thread_running = true;
    CLOG_INFO(TAG, "http listening on %s:%d%s", addr, s->port, tls ? " (TLS)" : "");
    return CCGW_OK;
}

int ccgw_http_server_port(const ccgw_http_server_t *s) { return s ? s->port : -1; }

void ccgw_http_server_stop(ccgw_http_server_t *s)
{
    if (!s || !s->thread_running)
        return;
    atomic_store(&s->stopping, true);
    lws_cancel_service(s->ctx);
    pthread_join(s->thread, NULL);
    s->thread_running = false;
    pthread_mutex_lock(&s->in_lock);
    pthread_mutex_lock(&s->done_lock);
    atomic_store(&s->started, false);
    pthread_mutex_unlock(&s->done_lock);
    pthread_mutex_unlock(&s->in_lock);
    lws_context_destroy(s->ctx);
    s->ctx = NULL;
    fcache_clear(s);
    ccgw_http_server_stats_t st;
    ccgw_http_server_get_stats(s, &st);
    CLOG_INFO(TAG,
              "http stopped: ws clients %llu accepted, %llu refused, %llu closed too slow; %llu frames, "
              "%llu messages out; telemetry dropped %llu, state coalesced %llu, inbox dropped %llu; "
              "http requests %llu, errors %llu; commands %llu",
              (unsigned long long)st.clients_total, (unsigned long long)st.clients_refused,
              (unsigned long long)st.clients_slow_closed, (unsigned long long)st.frames_out,
              (unsigned long long)st.msgs_out, (unsigned long long)st.dropped_telemetry,
              (unsigned long long)st.coalesced_state, (unsigned long long)st.inbox_dropped,
              (unsigned long long)st.http_requests, (unsigned long long)st.http_errors,
              (unsigned long long)st.commands_in);
}

void ccgw_http_server_free(ccgw_http_server_t *s)
{
    if (!s)
        return;
    ccgw_http_server_stop(s);
    if (s->gw && s->gw->bus)
        ccgw_bus_set_tap(s->gw->bus, NULL, NULL);
    while (s->in_head) {
        inmsg_t *n = s->in_head->next;
        free(s->in_head);
        s->in_head = n;
    }
    while (s->done_head) {
        done_item_t *n = s->done_head->next;
        free(s->done_head->body);
        free(s->done_head);
        s->done_head = n;
    }
    if (s->own_auth)
        ccgw_auth_free(s->auth);
    pthread_mutex_destroy(&s->in_lock);
    pthread_mutex_destroy(&s->done_lock);
    free(s);
}

void ccgw_http_server_get_stats(ccgw_http_server_t *s, ccgw_http_server_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!s)
        return;
    out->clients = atomic_load(&s->st_clients);
    out->clients_total = atomic_load(&s->st_clients_total);
    out->clients_refused = atomic_load(&s->st_refused);
    out->clients_slow_closed = atomic_load(&s->st_slow);
    out->frames_out = atomic_load(&s->st_frames);
    out->msgs_out = atomic_load(&s->st_msgs);
    out->dropped_telemetry = atomic_load(&s->st_dropped_tele);
    out->coalesced_state = atomic_load(&s->st_coalesced);
    out->inbox_depth = atomic_load(&s->in_depth);
    out->inbox_dropped = atomic_load(&s->st_inbox_dropped);
    out->http_requests = atomic_load(&s->st_http_req);
    out->http_errors = atomic_load(&s->st_http_err);
    out->commands_in = atomic_load(&s->st_cmds);
    out->queued_bytes = atomic_load(&s->st_q_bytes);
    out->queue_limit_bytes = atomic_load(&s->st_q_lim);
    out->queue_budget_bytes = s->cfg->queue_budget_bytes > 0 ? (uint64_t)s->cfg->queue_budget_bytes : 0;
    out->sub_groups = atomic_load(&s->st_groups);
    out->frames_reused = atomic_load(&s->st_frame_reused);
}
