/* ws_proto - see ws_proto.h. */
#include "ws_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "json_writer.h"

const char *ccgw_ws_op_name(ccgw_ws_op_t op)
{
    switch (op) {
    case CCGW_WS_OP_SUB: return "sub";
    case CCGW_WS_OP_UNSUB: return "unsub";
    case CCGW_WS_OP_CMD: return "cmd";
    case CCGW_WS_OP_ACK_ALARM: return "ack_alarm";
    case CCGW_WS_OP_PING: return "ping";
    case CCGW_WS_OP_AUTH: return "auth";
    }
    return "?";
}

void ccgw_ws_req_free(ccgw_ws_req_t *r)
{
    if (!r)
        return;
    free(r->filter);
    free(r->topic);
    free(r->class_name);
    free(r->device);
    free(r->name);
    free(r->args);
    free(r->note);
    free(r->token);
    memset(r, 0, sizeof *r);
}

bool ccgw_ws_filter_valid(const char *f)
{
    if (!f || !*f)
        return false;
    size_t n = strlen(f);
    if (n > CCGW_WS_MAX_FILTER)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool level_start = i == 0 || f[i - 1] == '/';
        bool level_end = i + 1 == n || f[i + 1] == '/';
        if (f[i] == '+' && !(level_start && level_end))
            return false;
        if (f[i] == '#' && !(level_start && i + 1 == n))
            return false;
    }
    return true;
}

static int fail(ccgw_ws_err_t *err, const char *code, const char *msg)
{
    err->code = code;
    snprintf(err->message, sizeof err->message, "%s", msg);
    return -1;
}

/* A topic level given on its own: non-empty, bounded, no '/', '+', '#'. */
static bool level_ok(const char *s)
{
    return s && *s && strlen(s) <= 128 && !strpbrk(s, "/+#");
}

static bool topic_ok(const char *t)
{
    return t && *t && strlen(t) <= CCGW_WS_MAX_FILTER && !strpbrk(t, "+#");
}

/* "{site_base}/{class}/{device}/{kind}/{last}" -> the three parts. */
static bool split_topic(const char *topic, const char *site_base, const char *kind, char **cls, char **dev,
                        char **last)
{
    size_t bl = strlen(site_base);
    if (strncmp(topic, site_base, bl) != 0 || topic[bl] != '/')
        return false;
    const char *p = topic + bl + 1;
    const char *parts[4];
    size_t lens[4];
    int n = 0;
    while (n < 4) {
        const char *slash = strchr(p, '/');
        size_t l = slash ? (size_t)(slash - p) : strlen(p);
        if (l == 0)
            return false;
        parts[n] = p;
        lens[n] = l;
        n++;
        if (!slash)
            break;
        p = slash + 1;
    }
    if (n != 4 || strchr(parts[3], '/'))
        return false;
    if (lens[2] != strlen(kind) || strncmp(parts[2], kind, lens[2]) != 0)
        return false;
    *cls = strndup(parts[0], lens[0]);
    *dev = strndup(parts[1], lens[1]);
    *last = strndup(parts[3], lens[3]);
    return *cls && *dev && *last;
}

static char *dup_str(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

/* cmd / ack_alarm: a topic, or class + device + name (code). */
static int parse_target(json_t *o, const char *site_base, const char *kind, const char *last_key,
                        ccgw_ws_req_t *r, ccgw_ws_err_t *err)
{
    json_t *t = json_object_get(o, "topic");
    if (t) {
        if (!json_is_string(t) || !topic_ok(json_string_value(t)))
            return fail(err, "bad_request", "\"topic\" must be a topic string");
        if (!split_topic(json_string_value(t), site_base, kind, &r->class_name, &r->device, &r->name))
            return fail(err, "bad_request", kind[0] == 'c'
                        ? "\"topic\" is not {prefix}/{site}/{class}/{device}/cmd/{name} of this site"
                        : "\"topic\" is not {prefix}/{site}/{class}/{device}/alarm/{code} of this site");
        if (!(r->topic = strdup(json_string_value(t))))
            return fail(err, "bad_request", "out of memory");
        return 0;
    }
    const json_t *c = json_object_get(o, "class"), *d = json_object_get(o, "device"),
                 *n = json_object_get(o, last_key);
    if (!json_is_string(c) || !json_is_string(d) || !json_is_string(n) || !level_ok(json_string_value(c)) ||
        !level_ok(json_string_value(d)) || !level_ok(json_string_value(n))) {
        err->code = "bad_request";
        snprintf(err->message, sizeof err->message, "need \"topic\", or \"class\", \"device\" and \"%s\"",
                 last_key);
        return -1;
    }
    r->class_name = strdup(json_string_value(c));
    r->device = strdup(json_string_value(d));
    r->name = strdup(json_string_value(n));
    if (asprintf(&r->topic, "%s/%s/%s/%s/%s", site_base, json_string_value(c), json_string_value(d), kind,
                 json_string_value(n)) < 0)
        r->topic = NULL;
    if (!r->class_name || !r->device || !r->name || !r->topic)
        return fail(err, "bad_request", "out of memory");
    return 0;
}

int ccgw_ws_parse(const char *buf, size_t len, const char *site_base, ccgw_ws_req_t *out, ccgw_ws_err_t *err)
{
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    if (!site_base)
        site_base = "";
    json_error_t je;
    json_t *o = json_loadb(buf ? buf : "", buf ? len : 0, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!o) {
        err->code = "bad_json";
        snprintf(err->message, sizeof err->message, "%.120s (at %d)", je.text, je.position);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(o)) {
        fail(err, "bad_request", "a message is a JSON object");
        goto out;
    }
    json_t *id = json_object_get(o, "id");
    if (id && !json_is_null(id)) {
        if (!json_is_integer(id)) {
            fail(err, "bad_request", "\"id\" must be an integer");
            goto out;
        }
        out->has_id = err->has_id = true;
        out->id = err->id = json_integer_value(id);
    }
    json_t *op = json_object_get(o, "op");
    if (!json_is_string(op)) {
        fail(err, "bad_request", "missing \"op\"");
        goto out;
    }
    const char *ops = json_string_value(op);
    if (strcmp(ops, "sub") == 0 || strcmp(ops, "unsub") == 0) {
        out->op = ops[0] == 's' ? CCGW_WS_OP_SUB : CCGW_WS_OP_UNSUB;
        json_t *f = json_object_get(o, "filter");
        if (!json_is_string(f)) {
            fail(err, "bad_request", "missing \"filter\"");
            goto out;
        }
        if (json_string_length(f) != strlen(json_string_value(f)) || !ccgw_ws_filter_valid(json_string_value(f))) {
            fail(err, "bad_filter", "not a valid MQTT topic filter");
            goto out;
        }
        if (!(out->filter = strdup(json_string_value(f)))) {
            fail(err, "bad_request", "out of memory");
            goto out;
        }
    } else if (strcmp(ops, "cmd") == 0) {
        out->op = CCGW_WS_OP_CMD;
        if (parse_target(o, site_base, "cmd", "name", out, err) != 0)
            goto out;
        json_t *a = json_object_get(o, "args");
        if (a && !json_is_null(a) && !json_is_object(a)) {
            fail(err, "bad_request", "\"args\" must be an object");
            goto out;
        }
        out->args = a && json_is_object(a) ? json_dumps(a, JSON_COMPACT) : strdup("{}");
        if (!out->args) {
            fail(err, "bad_request", "out of memory");
            goto out;
        }
        out->args_len = strlen(out->args);
    } else if (strcmp(ops, "ack_alarm") == 0) {
        out->op = CCGW_WS_OP_ACK_ALARM;
        if (parse_target(o, site_base, "alarm", "code", out, err) != 0)
            goto out;
        json_t *n = json_object_get(o, "note");
        if (n && !json_is_null(n)) {
            if (!json_is_string(n) || json_string_length(n) > CCGW_WS_MAX_NOTE ||
                json_string_length(n) != strlen(json_string_value(n))) {
                fail(err, "bad_request", "\"note\" must be a string of at most 1024 bytes");
                goto out;
            }
            out->note = dup_str(o, "note");
        }
    } else if (strcmp(ops, "ping") == 0) {
        out->op = CCGW_WS_OP_PING;
    } else if (strcmp(ops, "auth") == 0) {
        out->op = CCGW_WS_OP_AUTH;
        json_t *t = json_object_get(o, "token");
        if (!json_is_string(t) || json_string_length(t) == 0 || json_string_length(t) > CCGW_WS_MAX_TOKEN ||
            json_string_length(t) != strlen(json_string_value(t))) {
            fail(err, "bad_request", "\"token\" must be a non-empty string");
            goto out;
        }
        out->token = dup_str(o, "token");
    } else {
        err->code = "unknown_op";
        char shown[48];
        snprintf(shown, sizeof shown, "%s", ops);
        for (char *p = shown; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\')
                *p = '?';
        snprintf(err->message, sizeof err->message, "unknown op \"%s\"", shown);
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    if (rc != 0) {
        ccgw_ws_req_free(out);
        out->has_id = err->has_id;
        out->id = err->id;
    }
    return rc;
}

/* ---- encoders ---- */

static void put_id(ccgw_jw_t *w, bool has_id, int64_t id)
{
    ccgw_jw_key(w, "id");
    if (has_id)
        ccgw_jw_int(w, id);
    else
        ccgw_jw_null(w);
}

static char *finish(ccgw_jw_t *w, size_t *len)
{
    if (w->error) {
        ccgw_jw_free(w);
        return NULL;
    }
    return ccgw_jw_take(w, len);
}

char *ccgw_ws_encode_msg(const char *topic, const char *payload, size_t payload_len, bool retained, size_t *len)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "op");
    ccgw_jw_string(&w, "msg");
    ccgw_jw_key(&w, "topic");
    ccgw_jw_string(&w, topic);
    ccgw_jw_key(&w, "retained");
    ccgw_jw_bool(&w, retained);
    ccgw_jw_key(&w, "payload");
    if (payload && payload_len)
        ccgw_jw_raw_value(&w, payload, payload_len);
    else
        ccgw_jw_null(&w);
    ccgw_jw_end_object(&w);
    return finish(&w, len);
}

char *ccgw_ws_encode_ack(bool has_id, int64_t id, long snapshot, const char *role, const char *name, size_t *len)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "op");
    ccgw_jw_string(&w, "ack");
    put_id(&w, has_id, id);
    if (snapshot >= 0) {
        ccgw_jw_key(&w, "snapshot");
        ccgw_jw_int(&w, snapshot);
    }
    if (role) {
        ccgw_jw_key(&w, "role");
        ccgw_jw_string(&w, role);
    }
    if (name) {
        ccgw_jw_key(&w, "name");
        ccgw_jw_string(&w, name);
    }
    ccgw_jw_end_object(&w);
    return finish(&w, len);
}

char *ccgw_ws_encode_reply(bool has_id, int64_t id, const char *payload, size_t payload_len, size_t *len)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "op");
    ccgw_jw_string(&w, "reply");
    put_id(&w, has_id, id);
    ccgw_jw_key(&w, "payload");
    if (payload && payload_len)
        ccgw_jw_raw_value(&w, payload, payload_len);
    else
        ccgw_jw_null(&w);
    ccgw_jw_end_object(&w);
    return finish(&w, len);
}

char *ccgw_ws_encode_pong(bool has_id, int64_t id, size_t *len)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "op");
    ccgw_jw_string(&w, "pong");
    put_id(&w, has_id, id);
    ccgw_jw_end_object(&w);
    return finish(&w, len);
}

char *ccgw_ws_encode_error(bool has_id, int64_t id, const char *code, const char *message, size_t *len)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "op");
    ccgw_jw_string(&w, "error");
    put_id(&w, has_id, id);
    ccgw_jw_key(&w, "code");
    ccgw_jw_string(&w, code ? code : "bad_request");
    ccgw_jw_key(&w, "message");
    ccgw_jw_string(&w, message ? message : "");
    ccgw_jw_end_object(&w);
    return finish(&w, len);
}
