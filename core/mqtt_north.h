/*
 * mqtt_north - the MQTT v5 north side on libmosquitto: connect (TLS,
 * credentials, TCP_NODELAY), last will, reconnect with backoff, bounded
 * in-flight publishes, the bus sink, and commands in on
 * {prefix}/{site}/+/+/cmd/+ with replies to the v5 response topic (with its
 * correlation data) or to <command topic>/reply.
 *
 * Threads: one. Every call into libmosquitto runs on the bus's north
 * thread: it publishes through the sink, and its sleep is the sink's wait(),
 * which polls the broker socket and an eventfd and runs libmosquitto's
 * read/write/keepalive steps and the reconnects (bus.h). So a publish is
 * written to the socket by the thread that pops it (no hand-over to a
 * network thread), and the callbacks (CONNACK, PUBACK, commands in) run on
 * the north thread too. ccgw_mqtt_start/stop/reconnect() only set a flag
 * and wake it; ccgw_mqtt_free() runs after ccgw_bus_stop().
 */
#ifndef CCGW_MQTT_NORTH_H
#define CCGW_MQTT_NORTH_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"

struct ccgw_gateway;
typedef struct ccgw_mqtt ccgw_mqtt_t;

typedef struct ccgw_mqtt_stats {
    bool connected;
    uint64_t connects, disconnects;
    uint64_t inflight;
    uint64_t commands_in;
} ccgw_mqtt_stats_t;

ccgw_mqtt_t *ccgw_mqtt_new(struct ccgw_gateway *gw);
int ccgw_mqtt_start(ccgw_mqtt_t *m);
void ccgw_mqtt_sink(ccgw_mqtt_t *m, ccgw_sink_t *out);
/* Clean disconnect (no will; done by the north thread, waited for up to
 * 200 ms) and no reconnect after it. */
void ccgw_mqtt_stop(ccgw_mqtt_t *m);
void ccgw_mqtt_free(ccgw_mqtt_t *m);
void ccgw_mqtt_get_stats(ccgw_mqtt_t *m, ccgw_mqtt_stats_t *out);
/* Drop the connection (clean DISCONNECT, so no last will) and connect
 * again after reconnect.min_ms: libmosquitto loads
 * the TLS CA, certificate and key files on every connect, so this re-reads
 * them (reload after a certificate renewal). Thread-safe. */
void ccgw_mqtt_reconnect(ccgw_mqtt_t *m, const char *why);

#endif
