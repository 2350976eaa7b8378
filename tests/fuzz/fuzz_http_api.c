/*
 * fuzz_http_api - libFuzzer target for the HTTP API routes (core/http_api.c)
 * with the outside input a client controls: method, path, query and body,
 * under each kind of principal (none, viewer, an operator limited by topic
 * filters and a command list, admin). The gateway is real (config from
 * YAML, bus started, auth, audit without a file) but has no instances, so
 * commands and acknowledgements are answered at once (unknown_device) and
 * nothing stays pending.
 *
 * Input: METHOD \n PATH \n QUERY \n P \n BODY  (P's first byte picks the principal).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "gateway.h"
#include "http_api.h"
#include "log.h"

static ccgw_gateway_config_t *cfg;
static ccgw_gateway_t *gw;
static ccgw_principal_t *who[4];

static const char yaml[] = "gateway: {site: hq, id: gw1, data_dir: /nonexistent-ccgw-fuzz, backpressure_ms: 0}\n"
                           "alarms: {persist: false}\n"
                           "http:\n"
                           "  port: 0\n"
                           "  audit_log: \"\"\n"
                           "  max_request_bytes: 4096\n"
                           "  tokens:\n"
                           "    - {name: v, role: viewer, token: tv}\n"
                           "    - {name: o, role: operator, token: to, filters: [\"ccgw/v1/+/door/#\"], "
                           "commands: [\"door.*\"]}\n"
                           "    - {name: a, role: admin, token: ta}\n";

static void init(void)
{
    ccgw_log_set_level(CCGW_LOG_ERROR + 0); /* errors only: refusals are logged as warnings */
    cfg = ccgw_gateway_config_load_buffer("/nonexistent-ccgw-fuzz/fuzz.yaml", yaml, sizeof yaml - 1, NULL, NULL);
    if (!cfg || cfg->doc->n_diags) {
        if (cfg)
            ccgw_config_print_diags(cfg->doc, stderr);
        abort();
    }
    gw = ccgw_gateway_new(cfg, NULL);
    if (!gw || ccgw_gateway_start(gw) != 0)
        abort();
    const char *tokens[] = {"tv", "to", "ta"};
    ccgw_auth_t *a = ccgw_auth_new(&cfg->http);
    for (int i = 0; i < 3; i++)
        who[i + 1] = ccgw_auth_check(a, tokens[i], NULL, 0);
    ccgw_auth_free(a);
}

static void done(void *ctx, int status, const char *ct, char *body, size_t len)
{
    (void)ctx;
    (void)status;
    (void)ct;
    (void)len;
    free(body);
}

/* Next '\n'-terminated field as a NUL-terminated copy (the rest when no '\n'). */
static char *field(const uint8_t **p, size_t *n)
{
    const uint8_t *nl = memchr(*p, '\n', *n);
    size_t len = nl ? (size_t)(nl - *p) : *n;
    char *s = malloc(len + 1);
    if (!s)
        abort();
    memcpy(s, *p, len);
    s[len] = '\0';
    *p += nl ? len + 1 : len;
    *n -= nl ? len + 1 : len;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!gw)
        init();
    const uint8_t *p = data;
    size_t n = size;
    char *method = field(&p, &n), *path = field(&p, &n), *query = field(&p, &n), *sel = field(&p, &n);
    /* the body is raw bytes (may hold NULs) */
    char *body = malloc(n + 1);
    if (!body)
        abort();
    memcpy(body, p, n);
    body[n] = '\0';
    ccgw_http_req_t rq = {.method = method, .path = path, .query = *query ? query : NULL, .body = n ? body : NULL,
                          .body_len = n, .who = who[(unsigned char)sel[0] % 4], .remote = "fuzz"};
    /* reload re-reads the config file: not what this target is about */
    if (strstr(path, "reload"))
        rq.method = "GET";
    ccgw_http_resp_t resp;
    ccgw_http_api_handle(gw, &rq, &resp, done, NULL);
    if (!resp.pending) {
        if (resp.status < 200 || resp.status > 599 || !resp.body || !resp.content_type)
            abort();
    }
    ccgw_http_resp_free(&resp);
    free(method);
    free(path);
    free(query);
    free(sel);
    free(body);
    return 0;
}
