/*
 * command - route a command (MQTT today; WebSocket and HTTP use the same
 * entry) to the owning instance, validate it, time it out, and deliver the
 * reply exactly once through a reply target. Implements <ccgw/command.h>.
 *
 * Threads: dispatch runs on the caller's thread (libmosquitto's for MQTT);
 * the plugin's command callback and the timeout run on the instance thread;
 * replies come from any thread.
 */
#ifndef CCGW_COMMAND_INTERNAL_H
#define CCGW_COMMAND_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ccgw/ccgw.h"

struct ccgw_gateway;

typedef struct ccgw_reply_target {
    /* Deliver the encoded reply; called at most once, from any thread. */
    void (*send)(void *ctx, const char *payload, size_t len);
    /* Release ctx; called exactly once, after send or instead of it. */
    void (*release)(void *ctx);
    void *ctx;
} ccgw_reply_target_t;

/* Route class/device/name with a JSON arguments payload (len 0 = {}).
 * Always answers through target (now or later) and always releases it. */
void ccgw_command_dispatch(struct ccgw_gateway *gw, const char *class_name, const char *device_id,
                           const char *name, const char *payload, size_t len,
                           ccgw_reply_target_t target);

/* Latency of commands answered by plugins (dispatch -> reply, timeouts
 * included), gateway-wide, in fixed buckets (upper bounds in ms; the last
 * bucket is +Inf). Lock-free counters; a snapshot may be a few commands
 * inconsistent between buckets and sum, never torn within one counter. */
#define CCGW_CMD_LAT_BUCKETS 12
extern const unsigned ccgw_cmd_lat_bounds_ms[CCGW_CMD_LAT_BUCKETS - 1];
typedef struct ccgw_cmd_latency {
    uint64_t buckets[CCGW_CMD_LAT_BUCKETS]; /* counts per bucket (not cumulative) */
    uint64_t count, sum_ms;
} ccgw_cmd_latency_t;
void ccgw_command_latency(ccgw_cmd_latency_t *out);

/* Who sends a command: its role (ccgw_role_t) and origin ("ws:<token>",
 * "http:<token>", "mqtt"). The core refuses it `forbidden` when the role is
 * below the command spec's min_role (at least operator). */
typedef struct ccgw_cmd_caller {
    int role;
    const char *origin;
} ccgw_cmd_caller_t;

/* ccgw_command_dispatch() on behalf of a caller (NULL: the core itself, no
 * role check, origin "core"). */
void ccgw_command_dispatch_as(struct ccgw_gateway *gw, const ccgw_cmd_caller_t *caller,
                              const char *class_name, const char *device_id, const char *name,
                              const char *payload, size_t len, ccgw_reply_target_t target);

/* Instance teardown: answer every command still open and free them. */
void ccgw_commands_teardown(ccgw_instance_t *inst);

#endif
