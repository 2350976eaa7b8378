/*
 * fuzz_ws_proto - libFuzzer target for the client frames of /ws (the
 * WebSocket protocol's outside input): core/ws_proto.c parses a frame with
 * jansson into a request; every accepted request is encoded back through the
 * server's encoders (ack, reply, error, msg), which must produce JSON that
 * jansson reads again. The input's first byte picks the site base so both
 * the topic split and the built topics are exercised.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ws_proto.h"

static void must_parse(char *s, size_t len)
{
    if (!s)
        return;
    json_error_t e;
    json_t *j = json_loadb(s, len, 0, &e);
    if (!j)
        abort(); /* an encoder wrote invalid JSON */
    json_decref(j);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const bases[] = {"ccgw/v1/hq", "a/b", "", "ccgw/v1/site-x"};
    const char *base = bases[size ? data[0] % 4 : 0];
    const char *buf = size ? (const char *)data + 1 : "";
    size_t len = size ? size - 1 : 0;
    ccgw_ws_req_t r;
    ccgw_ws_err_t err;
    size_t n;
    if (ccgw_ws_parse(buf, len, base, &r, &err) == 0) {
        if (r.filter && !ccgw_ws_filter_valid(r.filter))
            abort();
        if (r.op == CCGW_WS_OP_CMD && (!r.topic || !r.class_name || !r.device || !r.name || !r.args ||
                                       strlen(r.args) != r.args_len))
            abort();
        if (r.args) /* the args are an object in JSON */
            must_parse(strdup(r.args), r.args_len);
        must_parse(ccgw_ws_encode_ack(r.has_id, r.id, 3, r.token ? "viewer" : NULL, r.name, &n), n);
        must_parse(ccgw_ws_encode_pong(r.has_id, r.id, &n), n);
        if (r.args)
            must_parse(ccgw_ws_encode_reply(r.has_id, r.id, r.args, r.args_len, &n), n);
        if (r.topic)
            must_parse(ccgw_ws_encode_msg(r.topic, r.args ? r.args : "", r.args ? r.args_len : 0, true, &n), n);
        if (r.note)
            must_parse(ccgw_ws_encode_error(r.has_id, r.id, "bad_request", r.note, &n), n);
        ccgw_ws_req_free(&r);
    } else {
        if (!err.code || !err.message[0])
            abort();
        must_parse(ccgw_ws_encode_error(err.has_id, err.id, err.code, err.message, &n), n);
    }
    return 0;
}
