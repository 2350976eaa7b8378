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

/* Instance teardown: answer every command still open and free them. */
void ccgw_commands_teardown(ccgw_instance_t *inst);

#endif
