/*
 * ws_proto - the WebSocket protocol of /ws (docs/websocket.md) without the
 * transport: parse one client frame (JSON, jansson) into a request struct,
 * and encode the server's messages (msg, ack, reply, pong, error). Pure and
 * allocation-bounded, so a unit test and a libFuzzer target drive it
 * directly; http_server.c does the I/O.
 *
 * Threads: no state; any thread.
 */
#ifndef CCGW_WS_PROTO_H
#define CCGW_WS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CCGW_WS_MAX_FILTER 512   /* bytes of a filter or a topic */
#define CCGW_WS_MAX_TOKEN 512
#define CCGW_WS_MAX_NOTE 1024

typedef enum ccgw_ws_op {
    CCGW_WS_OP_SUB = 1,
    CCGW_WS_OP_UNSUB,
    CCGW_WS_OP_CMD,
    CCGW_WS_OP_ACK_ALARM,
    CCGW_WS_OP_PING,
    CCGW_WS_OP_AUTH,
} ccgw_ws_op_t;

const char *ccgw_ws_op_name(ccgw_ws_op_t op);

/* One parsed client message. Strings are owned (ccgw_ws_req_free). */
typedef struct ccgw_ws_req {
    ccgw_ws_op_t op;
    bool has_id;
    int64_t id;
    char *filter;                 /* sub, unsub: a valid MQTT topic filter */
    char *topic;                  /* cmd: .../cmd/NAME; ack_alarm: .../alarm/CODE (given or built) */
    char *class_name, *device;    /* cmd, ack_alarm */
    char *name;                   /* cmd: the command name; ack_alarm: the alarm code */
    char *args;                   /* cmd: the arguments object as compact JSON ("{}" when absent) */
    size_t args_len;
    char *note;                   /* ack_alarm, may be NULL */
    char *token;                  /* auth */
} ccgw_ws_req_t;

/* Why a frame was refused: code is one of the contract's error codes
 * (static string), message a short human text; id echoed when it parsed. */
typedef struct ccgw_ws_err {
    const char *code;
    char message[160];
    bool has_id;
    int64_t id;
} ccgw_ws_err_t;

/* Parse one text frame. site_base ("ccgw/v1/hq") is used to split and build
 * cmd / alarm topics. 0 and *out filled, or < 0 with *err filled (bad_json,
 * bad_request, unknown_op, bad_filter, too_large). Never reads past len;
 * buf need not be NUL-terminated. */
int ccgw_ws_parse(const char *buf, size_t len, const char *site_base, ccgw_ws_req_t *out,
                  ccgw_ws_err_t *err);
void ccgw_ws_req_free(ccgw_ws_req_t *r);

/* Is this a valid MQTT topic filter of at most CCGW_WS_MAX_FILTER bytes
 * ('+' / '#' whole levels, '#' last, no empty filter, no NUL)? */
bool ccgw_ws_filter_valid(const char *f);

/* ---- encoders: malloc'ed NUL-terminated JSON, length in *len; NULL on
 * allocation failure ---- */

/* {"op":"msg","topic":T,"retained":R,"payload":P} - payload is raw JSON from
 * the bus (len 0 = null, a cleared alarm). */
char *ccgw_ws_encode_msg(const char *topic, const char *payload, size_t payload_len, bool retained,
                         size_t *len);
/* {"op":"ack","id":N} plus "snapshot":n when snapshot >= 0, and "role",
 * "name" when given (auth). */
char *ccgw_ws_encode_ack(bool has_id, int64_t id, long snapshot, const char *role, const char *name,
                         size_t *len);
/* {"op":"reply","id":N,"payload":P} - payload raw JSON (the command reply). */
char *ccgw_ws_encode_reply(bool has_id, int64_t id, const char *payload, size_t payload_len, size_t *len);
char *ccgw_ws_encode_pong(bool has_id, int64_t id, size_t *len);
/* {"op":"error","id":N|null,"code":C,"message":M} */
char *ccgw_ws_encode_error(bool has_id, int64_t id, const char *code, const char *message, size_t *len);

#endif
