/*
 * http_server - the WebSocket and HTTP north side on libwebsockets, one port
 * (optionally TLS): /ws (subscriptions with MQTT wildcards, snapshots of
 * retained state, live messages in batch frames, commands, alarm
 * acknowledgement), /healthz, /metrics and /api/v1/... (through
 * http_api.c), and the dashboard's static files at /.
 *
 * Threads: one service thread runs the libwebsockets loop and everything it
 * calls back. Other threads only hand it work through bounded queues and
 * lws_cancel_service(): the bus tap (emitting threads) and command replies
 * (instance threads).
 */
#ifndef CCGW_HTTP_SERVER_H
#define CCGW_HTTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>

struct ccgw_gateway;
typedef struct ccgw_http_server ccgw_http_server_t;

typedef struct ccgw_http_server_stats {
    uint64_t clients;               /* WebSocket clients connected now */
    uint64_t clients_total;         /* accepted since start */
    uint64_t clients_refused;       /* auth failures and max_clients */
    uint64_t clients_slow_closed;   /* closed 1008: could not keep up with events/alarms */
    uint64_t frames_out, msgs_out;  /* frames written, messages in them */
    uint64_t dropped_telemetry;     /* per-client queue at its limit: oldest telemetry dropped */
    uint64_t coalesced_state;       /* state replaced by a newer one still queued */
    uint64_t inbox_depth, inbox_dropped; /* the tap -> service thread hand-off */
    uint64_t http_requests, http_errors; /* 4xx/5xx answered */
    uint64_t commands_in;
    uint64_t queued_bytes;          /* live message bytes in all client queues now (snapshots excluded) */
    uint64_t queue_limit_bytes;     /* each client's live byte limit now: min(client_queue_bytes,
                                       max(16 KiB, queue_budget_bytes / clients)) */
    uint64_t queue_budget_bytes;    /* http.queue_budget_bytes (0 = none) */
    uint64_t sub_groups;            /* distinct (subscriptions, token filters) sets: matching is per group */
    uint64_t frames_reused;         /* batch frames written again to another client without rebuilding */
} ccgw_http_server_stats_t;

/* Uses gw->cfg->http; NULL on failure (logged). */
ccgw_http_server_t *ccgw_http_server_new(struct ccgw_gateway *gw);
/* Bind and start the service thread; < 0 when the port cannot be bound. */
int ccgw_http_server_start(ccgw_http_server_t *s);
/* The bound port (useful with port 0). */
int ccgw_http_server_port(const ccgw_http_server_t *s);
/* Close every client (1001 going away), stop the thread. */
void ccgw_http_server_stop(ccgw_http_server_t *s);
void ccgw_http_server_free(ccgw_http_server_t *s);
void ccgw_http_server_get_stats(ccgw_http_server_t *s, ccgw_http_server_stats_t *out);

#endif
