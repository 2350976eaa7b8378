/*
 * audit - the audit trail of every command and alarm acknowledgement,
 * whatever the channel (WebSocket, HTTP, MQTT): one JSON line per action in
 * http.audit_log (default <data_dir>/audit.jsonl) and the same object
 * published on {prefix}/{site}/gateway/{id}/audit (not retained).
 *
 * Line: {"ts","token","role","remote","channel","action","target","args",
 *        "result":"ok"|error code,"message"?}
 *
 * Threads: any thread; lines are written with one write(2) on an O_APPEND
 * file, so they never interleave. A write failure is logged (rate-limited)
 * and counted, never fatal.
 */
#ifndef CCGW_AUDIT_H
#define CCGW_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "command.h"

struct ccgw_gateway;
typedef struct ccgw_audit ccgw_audit_t;

typedef struct ccgw_audit_who {
    const char *token;   /* principal name; "mqtt" for MQTT commands */
    const char *role;    /* role name; "-" when the channel has none */
    const char *remote;  /* peer address, or the MQTT client/response topic */
    const char *channel; /* "ws", "http", "mqtt" */
} ccgw_audit_who_t;

/* path NULL: no file, publish only. */
ccgw_audit_t *ccgw_audit_open(struct ccgw_gateway *gw, const char *path);
void ccgw_audit_close(ccgw_audit_t *a);

/* One record now. args_json: the arguments as JSON (NULL = {}); result "ok"
 * or an error code; message may be NULL. */
void ccgw_audit_record(ccgw_audit_t *a, const ccgw_audit_who_t *who, const char *action,
                       const char *target, const char *args_json, size_t args_len, const char *result,
                       const char *message);

/* Wrap a command reply target so that the record is written when the reply
 * goes out (its result is the reply's ok / error.code), or with result
 * "dropped" if the target is released without a reply. The strings are
 * copied. */
ccgw_reply_target_t ccgw_audit_wrap(ccgw_audit_t *a, const ccgw_audit_who_t *who, const char *action,
                                    const char *target, const char *args_json, size_t args_len,
                                    ccgw_reply_target_t inner);

uint64_t ccgw_audit_count(const ccgw_audit_t *a);        /* records written */
uint64_t ccgw_audit_write_errors(const ccgw_audit_t *a);

#endif
