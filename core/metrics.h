/*
 * metrics - the gateway's counters in the Prometheus text format (0.0.4),
 * served at GET /metrics: events in per instance and kind, events out and
 * drops per kind and reason, the bus queue, the MQTT link, plugin instances,
 * commands (counts per instance and a gateway-wide latency histogram), the
 * WebSocket/HTTP server and the audit trail.
 *
 * Threads: any thread (the HTTP server's); every source is read through its
 * own thread-safe accessor or atomic counters.
 */
#ifndef CCGW_METRICS_H
#define CCGW_METRICS_H

#include <stddef.h>

struct ccgw_gateway;

/* The whole exposition as a malloc'ed NUL-terminated string (len set), or NULL when out of memory. */
char *ccgw_metrics_render(struct ccgw_gateway *gw, size_t *len);

#endif
