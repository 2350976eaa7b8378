/*
 * http_api - the HTTP routes that are not files and not /ws: /healthz,
 * /metrics (Prometheus text) and /api/v1/... (instances, devices, alarms,
 * commands, alarm acknowledgement, reload). Transport-free: http_server.c
 * parses the request, authenticates it, calls ccgw_http_api_handle() and
 * writes the response; this module never touches libwebsockets, so the unit
 * tests and the fuzzer drive it directly.
 *
 * Threads: ccgw_http_api_handle() runs on the HTTP server's thread. A
 * command's reply arrives later on another thread: the response is then
 * `pending` and completed through the done callback (exactly once).
 */
#ifndef CCGW_HTTP_API_H
#define CCGW_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"

struct ccgw_gateway;
struct ccgw_http_server;

typedef struct ccgw_http_req {
    const char *method;          /* "GET", "POST", ... */
    const char *path;            /* decoded path, no query: "/api/v1/devices" */
    const char *query;           /* raw query string without '?', or NULL */
    const char *body;            /* request body (POST), may be NULL */
    size_t body_len;
    const ccgw_principal_t *who; /* authenticated principal, NULL = no/bad token */
    const char *remote;          /* peer address for the audit log */
} ccgw_http_req_t;

typedef struct ccgw_http_resp {
    int status;                  /* 200, 400, 401, 403, 404, 405, 413, 500, 503, 504 */
    const char *content_type;    /* static string: "application/json", "text/plain; version=0.0.4" */
    char *body;                  /* malloc'ed, owned by the response */
    size_t body_len;
    bool pending;                /* the answer comes later through done() */
} ccgw_http_resp_t;

/* Completion of a pending response, called exactly once from any thread;
 * takes ownership of body. */
typedef void (*ccgw_http_done_fn)(void *done_ctx, int status, const char *content_type, char *body,
                                  size_t body_len);

/* Does this module serve this path? (so the server can fall through to files) */
bool ccgw_http_api_owns(const char *path);

/* Handle one request. Never fails without a response: a bad request is a
 * 4xx with {"error":{"code":"...","message":"..."}}. When resp->pending, the
 * server keeps the connection and done(done_ctx, ...) completes it.
 * done is never called from inside this call on the calling thread (a reply
 * that arrives during the call fills resp instead), but once resp->pending
 * is set another thread may call it before this call returns. Nothing in req
 * (including who) is used after the call returns. done NULL: a reply that
 * would be pending is answered 500 at once. */
void ccgw_http_api_handle(struct ccgw_gateway *gw, const ccgw_http_req_t *req, ccgw_http_resp_t *resp,
                          ccgw_http_done_fn done, void *done_ctx);

void ccgw_http_resp_free(ccgw_http_resp_t *resp);

/* Helper for every JSON error body: {"error":{"code":code,"message":message}}. */
void ccgw_http_resp_error(ccgw_http_resp_t *resp, int status, const char *code, const char *message);

#endif
