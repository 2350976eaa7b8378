/*
 * bus - the bounded queue between emitters (plugin and core threads) and the
 * north side, the retained-state cache, the crash-safe spool's reader, and
 * the north thread that drains both into the sink (MQTT).
 *
 * Who runs what: any thread pushes; one north thread (started here) pops and
 * reads the spool and calls the sink. A sink with wait()/wake() (MQTT) runs
 * its network I/O on the north thread too: the thread sleeps in the sink's
 * wait() instead of its condition variable, and pushes wake it through the
 * sink's wake(); the sink's callbacks (acknowledgements: ccgw_bus_ack();
 * commands: replies pushed back) then run on the north thread, which never
 * waits for room in its own queue (backpressure and pacing do not apply to
 * it). A sink with threads of its own calls ccgw_bus_wake() when its state
 * changes.
 *
 * With a spool (ccgw_bus_set_spool(), gateway.spool.enabled): events and
 * alarms (and telemetry when gateway.spool.telemetry) are appended to the
 * spool on the emitting thread instead of the in-memory queue, and count as
 * delivered only when the sink acknowledges them (ccgw_bus_ack(): PUBACK for
 * QoS 1, hand-over for QoS 0). The north thread reads the spool in record
 * order (records left by the previous run first); after each reconnect it
 * rewinds to the lowest unacknowledged record (duplicates possible, told
 * apart by boot/seq). Policy at the spool's limit (spool.h):
 *  - telemetry: whole telemetry-only segments dropped oldest-first, then new
 *    telemetry refused with CCGW_EFULL, all counted;
 *  - events: the emitter is blocked, retrying, up to backpressure_ms, then
 *    gets CCGW_EFULL (not accepted: the plugin may retry; counted); the
 *    spool's full/not-full transitions reach the callback of
 *    ccgw_bus_set_full_cb() (the gateway alarm spool_full);
 *  - alarms: never block: a reserve beyond the limit, then coalesced through
 *    the retained cache's dirty list like any retained kind.
 * Pacing (spool, broker connected): an event emitter waits while the spool
 * holds more than CCGW_BUS_PACE records not yet read by the north thread
 * beyond the lowest such backlog since the last (re)connect, up to
 * backpressure_ms, then its event is accepted anyway: a plugin faster than
 * the broker is slowed to the broker's pace (as with the in-memory queue)
 * instead of filling the disk and taking CPU from the north side, while
 * the backlog of an outage drains without slowing anyone (counted: paced).
 * Without a spool, and for the other kinds always, the in-memory queue
 * (gateway.queue_size messages) applies, each case counted:
 *  - telemetry: dropped, CCGW_EFULL.
 *  - events, replies: the caller waits up to backpressure_ms, then dropped, CCGW_EFULL.
 *  - retained kinds (state, alarm, instance, gateway): never block and never
 *    lost: the cache holds the latest payload per topic and the entry is
 *    marked dirty; the north thread publishes dirty entries when it can.
 * A retained message is published only if it is newer than what was last
 * published for its topic, so a coalesced or replayed state never goes back
 * in time (a spooled alarm older than the cache's is published without the
 * retain flag). While the sink is not ready (broker down) nothing is popped;
 * on each (re)connect the sink asks for a snapshot and every cache entry is
 * published again before the queue and the spool resume.
 */
#ifndef CCGW_BUS_H
#define CCGW_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ccgw_kind {
    CCGW_KIND_STATE = 0,
    CCGW_KIND_TELEMETRY,
    CCGW_KIND_EVENT,
    CCGW_KIND_ALARM,
    CCGW_KIND_REPLY,
    CCGW_KIND_INSTANCE,
    CCGW_KIND_GATEWAY,
    CCGW_KIND__COUNT
} ccgw_kind_t;

const char *ccgw_kind_name(ccgw_kind_t k);
bool ccgw_kind_retained(ccgw_kind_t k);

typedef struct ccgw_retained ccgw_retained_t;
typedef struct ccgw_bus ccgw_bus_t;
/* An emitter's share of the queue (one per plugin instance): no emitter may
 * hold more than half of queue_size, so one flooding instance cannot fill
 * the queue for the others; over its share its telemetry is dropped and its
 * events wait (backpressure) like at a full queue. Owned by the bus. */
typedef struct ccgw_bus_quota ccgw_bus_quota_t;

typedef struct ccgw_msg {
    struct ccgw_msg *next;
    ccgw_kind_t kind;
    int qos;
    bool retain;
    char *topic;
    char *payload;
    size_t payload_len;
    void *corr;            /* MQTT v5 correlation data for replies */
    size_t corr_len;
    ccgw_retained_t *entry; /* retained kinds: the cache entry */
    uint64_t version;       /* the entry's version this payload is */
    ccgw_bus_quota_t *quota; /* the emitter's share (non-retained kinds), or NULL */
    uint64_t spool_id;      /* spooled: the record to ccgw_bus_ack() once delivered; 0 = not spooled */
    char data[];
} ccgw_msg_t;

/* One allocation holding topic, payload and correlation data (copied). */
ccgw_msg_t *ccgw_msg_new(ccgw_kind_t kind, int qos, const char *topic, const char *payload,
                         size_t payload_len, const void *corr, size_t corr_len);
void ccgw_msg_free(ccgw_msg_t *m);

typedef struct ccgw_sink {
    void *ctx;
    /* true when a publish may be attempted now (connected, inflight below cap) */
    bool (*ready)(void *ctx);
    /* 0 = handed over; CCGW_ESTATE = not connected (keep it); other < 0 = drop it */
    int (*publish)(void *ctx, const ccgw_msg_t *m);
    /* true once after each (re)connect: republish the whole cache */
    bool (*take_snapshot_request)(void *ctx);
    /* true when nothing is waiting for an acknowledgement */
    bool (*idle)(void *ctx);
    /* optional: true while connected (even with the in-flight window full);
     * NULL = ready() */
    bool (*connected)(void *ctx);
    /* optional, both or neither: the sink's I/O runs on the north thread.
     * wait() waits up to timeout_ms (0: only what is ready now) for the
     * sink's socket or a wake(), runs that I/O (reads, writes, keepalive,
     * reconnects) and returns; the bus calls it with no lock held where it
     * would sleep, and once per batch while busy. wake() (any thread, with
     * the bus's lock held: keep it to a write on an eventfd) ends a wait()
     * early. */
    void (*wait)(void *ctx, int timeout_ms);
    void (*wake)(void *ctx);
} ccgw_sink_t;

#define CCGW_BUS_PACE 8192

typedef struct ccgw_bus_stats {
    uint64_t pushed[CCGW_KIND__COUNT];
    uint64_t published[CCGW_KIND__COUNT];
    uint64_t dropped_full[CCGW_KIND__COUNT];    /* queue at its limit, or the emitter over its share */
    uint64_t over_share;                        /* of those: the emitter over its share */
    uint64_t dropped_offline[CCGW_KIND__COUNT]; /* sink refused while disconnected */
    uint64_t superseded;                        /* retained message older than one published */
    uint64_t coalesced;                         /* retained update went dirty (queue full) */
    uint64_t snapshots;
    uint64_t paced;                             /* spooled events that waited for the north side to catch up */
    size_t depth, max_depth, limit;
    size_t retained_entries;
} ccgw_bus_stats_t;

ccgw_bus_t *ccgw_bus_new(size_t limit, int backpressure_ms);
struct ccgw_spool;
/* Give the bus an open spool (before ccgw_bus_start()); the bus owns it from
 * now on and closes it in ccgw_bus_free(). telemetry: spool telemetry too. */
void ccgw_bus_set_spool(ccgw_bus_t *bus, struct ccgw_spool *sp, bool telemetry);
struct ccgw_spool *ccgw_bus_spool(ccgw_bus_t *bus); /* NULL without one (stats) */
/* The sink delivered spooled record `spool_id` (any thread, any order). */
void ccgw_bus_ack(ccgw_bus_t *bus, uint64_t spool_id);
/* Called when the spool starts refusing events (full = true) and when it has
 * room again; on an emitting thread or the spool's flusher, no bus or spool
 * lock held (it may emit, e.g. ccgw_gateway_alarm()). Set before start. */
typedef void (*ccgw_bus_full_fn)(void *ctx, bool full);
void ccgw_bus_set_full_cb(ccgw_bus_t *bus, ccgw_bus_full_fn fn, void *ctx);
/* The spool's full_cb (ccgw_spool_options_t) to pass with ctx = the bus. */
void ccgw_bus_spool_full(void *bus, bool full);

/* Without a sink (MQTT disabled), popped messages are discarded (counted as published). */
void ccgw_bus_set_sink(ccgw_bus_t *bus, const ccgw_sink_t *sink);
int ccgw_bus_start(ccgw_bus_t *bus);
/* Wait up to timeout_ms for the queue and dirty list to empty and the sink to be idle. */
bool ccgw_bus_flush(ccgw_bus_t *bus, int timeout_ms);
/* Shutdown begins: emitters waiting for room (backpressure) get CCGW_EFULL
 * now and no longer wait; what they push still goes to the spool. */
void ccgw_bus_interrupt(ccgw_bus_t *bus);
void ccgw_bus_stop(ccgw_bus_t *bus); /* joins the north thread; queued messages are freed */
void ccgw_bus_free(ccgw_bus_t *bus);
void ccgw_bus_wake(ccgw_bus_t *bus); /* thread-safe: the sink's state changed */

/* A new share for one emitter (freed with the bus; NULL when out of memory). */
ccgw_bus_quota_t *ccgw_bus_quota_new(ccgw_bus_t *bus);
/* Messages of that emitter in the queue now. */
size_t ccgw_bus_quota_queued(ccgw_bus_t *bus, const ccgw_bus_quota_t *q);

/* Push a non-retained message (takes ownership, also on failure). */
int ccgw_bus_push(ccgw_bus_t *bus, ccgw_msg_t *m);
/* Update the retained cache for `topic` (payload may be empty: a clear) and queue it. */
int ccgw_bus_retain(ccgw_bus_t *bus, ccgw_kind_t kind, int qos, const char *topic,
                    const char *payload, size_t len);

/* Visit every retained entry with a non-empty payload, under the cache lock
 * (keep the callback short; copy what you need). */
void ccgw_bus_retained_foreach(ccgw_bus_t *bus,
                               void (*fn)(void *ctx, ccgw_kind_t kind, const char *topic,
                                          const char *payload, size_t len),
                               void *ctx);

void ccgw_bus_get_stats(ccgw_bus_t *bus, ccgw_bus_stats_t *out);

/* A tap sees every message as it enters the bus, whatever the sink's state
 * (the WebSocket hub uses it: it must work with the broker down). It runs on
 * the emitting thread, before the queue's policy applies; for retained kinds
 * after the cache was updated and with the cache lock held, so that per
 * topic the tap sees versions in order and a snapshot taken under
 * ccgw_bus_with_cache_locked() is never older than a tapped message that
 * follows it. It must be quick, must not block and must not call the bus;
 * `m` is borrowed for the call (m->payload is NUL-terminated; an empty
 * retained payload is a clear). Set it before ccgw_bus_start(); NULL removes it. */
typedef void (*ccgw_bus_tap_fn)(void *ctx, const ccgw_msg_t *m);
void ccgw_bus_set_tap(ccgw_bus_t *bus, ccgw_bus_tap_fn fn, void *ctx);

/* Run fn(ctx) with the retained cache locked: no retained update (and so no
 * retained tap) runs meanwhile. Inside fn, ccgw_bus_retained_each_locked()
 * walks the cache. Keep fn short: emitters of state wait for it. */
void ccgw_bus_with_cache_locked(ccgw_bus_t *bus, void (*fn)(void *ctx), void *ctx);
void ccgw_bus_retained_each_locked(ccgw_bus_t *bus,
                                   void (*fn)(void *ctx, ccgw_kind_t kind, const char *topic,
                                              const char *payload, size_t len),
                                   void *ctx);

#endif
