/*
 * audit - see audit.h.
 *
 * A record is one JSON object built with json_writer, written as one line
 * with a single write(2) on an O_APPEND descriptor (lines from different
 * threads never interleave) and pushed on the bus as an event on
 * {gw_base}/audit. The wrapped reply target reads the reply's ok /
 * error.code / error.message with jansson. Arguments are re-encoded compactly
 * by jansson (so a line never contains a raw newline); arguments that are not
 * JSON, or too large, are kept as a truncated string.
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "bus.h"
#include "fsutil.h"
#include "gateway.h"
#include "json_writer.h"
#include "log.h"

#define TAG "audit"
#define ARGS_MAX 8192        /* larger arguments are kept as a truncated string */
#define ARGS_STRING_MAX 1024
#define ERR_LOG_EVERY_MS 60000

struct ccgw_audit {
    ccgw_gateway_t *gw;
    int fd;                  /* -1: no file */
    char *path;
    char *topic;             /* {gw_base}/audit */
    _Atomic uint64_t count, write_errors;
    _Atomic uint64_t last_err_ms;
};

static void log_write_error(ccgw_audit_t *a, int err)
{
    uint64_t now = ccgw_now_ms(), last = atomic_load(&a->last_err_ms);
    if (last && now - last < ERR_LOG_EVERY_MS)
        return;
    if (atomic_compare_exchange_strong(&a->last_err_ms, &last, now ? now : 1))
        CLOG_ERROR(TAG, "cannot write the audit log '%s': %s (%llu failed writes so far; logged at most once a minute)",
                   a->path ? a->path : "-", strerror(err), (unsigned long long)atomic_load(&a->write_errors));
}

static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0 && errno == ENOENT) {
        /* the folder (usually data_dir) may not exist yet: create it */
        char *dir = strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash && slash != dir) {
            *slash = '\0';
            if (ccgw_mkdirs(dir) == 0)
                fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        }
        int e = errno;
        free(dir);
        errno = e;
    }
    return fd;
}

ccgw_audit_t *ccgw_audit_open(struct ccgw_gateway *gw, const char *path)
{
    ccgw_audit_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->gw = gw;
    a->fd = -1;
    if (gw && gw->gw_base && asprintf(&a->topic, "%s/audit", gw->gw_base) < 0)
        a->topic = NULL;
    if (path && *path) {
        a->path = strdup(path);
        if (!a->path) {
            ccgw_audit_close(a);
            return NULL;
        }
        a->fd = open_log(path);
        if (a->fd < 0)
            CLOG_ERROR(TAG, "cannot open the audit log '%s': %s; audit records are only published", path,
                       strerror(errno));
        else
            CLOG_INFO(TAG, "audit log %s", path);
    }
    return a;
}

void ccgw_audit_close(ccgw_audit_t *a)
{
    if (!a)
        return;
    if (a->fd >= 0)
        close(a->fd);
    free(a->path);
    free(a->topic);
    free(a);
}

uint64_t ccgw_audit_count(const ccgw_audit_t *a) { return a ? atomic_load(&a->count) : 0; }
uint64_t ccgw_audit_write_errors(const ccgw_audit_t *a) { return a ? atomic_load(&a->write_errors) : 0; }

static void write_args(ccgw_jw_t *w, const char *args, size_t len)
{
    if (!args || len == 0) {
        ccgw_jw_raw_value(w, "{}", 2);
        return;
    }
    if (len <= ARGS_MAX) {
        json_error_t err;
        json_t *j = json_loadb(args, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
        if (j) {
            char *compact = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            json_decref(j);
            if (compact) {
                ccgw_jw_raw_value(w, compact, strlen(compact));
                free(compact);
                return;
            }
        }
    }
    ccgw_jw_string_n(w, args, len > ARGS_STRING_MAX ? ARGS_STRING_MAX : len);
}

void ccgw_audit_record(ccgw_audit_t *a, const ccgw_audit_who_t *who, const char *action, const char *target,
                       const char *args_json, size_t args_len, const char *result, const char *message)
{
    if (!a)
        return;
    char ts[CCGW_TS_LEN];
    ccgw_ts_now(ts);
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "ts");
    ccgw_jw_string(&w, ts);
    ccgw_jw_key(&w, "token");
    ccgw_jw_string(&w, who && who->token ? who->token : "-");
    ccgw_jw_key(&w, "role");
    ccgw_jw_string(&w, who && who->role ? who->role : "-");
    ccgw_jw_key(&w, "remote");
    ccgw_jw_string(&w, who && who->remote ? who->remote : "-");
    ccgw_jw_key(&w, "channel");
    ccgw_jw_string(&w, who && who->channel ? who->channel : "-");
    ccgw_jw_key(&w, "action");
    ccgw_jw_string(&w, action ? action : "-");
    ccgw_jw_key(&w, "target");
    ccgw_jw_string(&w, target ? target : "");
    ccgw_jw_key(&w, "args");
    write_args(&w, args_json, args_len);
    ccgw_jw_key(&w, "result");
    ccgw_jw_string(&w, result ? result : "ok");
    if (message && *message) {
        ccgw_jw_key(&w, "message");
        ccgw_jw_string(&w, message);
    }
    ccgw_jw_end_object(&w);
    if (w.error) {
        ccgw_jw_free(&w);
        atomic_fetch_add(&a->write_errors, 1);
        log_write_error(a, ENOMEM);
        return;
    }
    size_t len = 0;
    char *line = ccgw_jw_take(&w, &len);
    ccgw_jw_free(&w);
    if (!line)
        return;
    atomic_fetch_add(&a->count, 1);
    /* the file first: whoever sees the record on MQTT finds it in the file too */
    if (a->path) {
        char *nl = realloc(line, len + 2);
        if (nl) {
            line = nl;
            line[len] = '\n';
            line[len + 1] = '\0';
            ssize_t n = a->fd >= 0 ? write(a->fd, line, len + 1) : -1;
            if (n != (ssize_t)(len + 1)) {
                int err = a->fd < 0 ? EBADF : n < 0 ? errno : EIO;
                atomic_fetch_add(&a->write_errors, 1);
                log_write_error(a, err);
            }
        } else {
            atomic_fetch_add(&a->write_errors, 1);
            log_write_error(a, ENOMEM);
        }
    }
    if (a->topic && a->gw && a->gw->bus) {
        ccgw_msg_t *m = ccgw_msg_new(CCGW_KIND_EVENT, a->gw->cfg ? a->gw->cfg->mqtt.qos_event : 1, a->topic, line,
                                     len, NULL, 0);
        if (m)
            ccgw_bus_push(a->gw->bus, m); /* counted by the bus when dropped */
    }
    free(line);
}

/* ---- the wrapped reply target ---- */

typedef struct wrap {
    ccgw_audit_t *a;
    char *token, *role, *remote, *channel, *action, *target, *args;
    size_t args_len;
    ccgw_reply_target_t inner;
    atomic_bool sent;
} wrap_t;

static void wrap_who(const wrap_t *x, ccgw_audit_who_t *who)
{
    who->token = x->token;
    who->role = x->role;
    who->remote = x->remote;
    who->channel = x->channel;
}

static void wrap_send(void *ctx, const char *payload, size_t len)
{
    wrap_t *x = ctx;
    if (atomic_exchange(&x->sent, true)) {
        if (x->inner.send)
            x->inner.send(x->inner.ctx, payload, len);
        return;
    }
    char code[96] = "device_error", msg[512] = "";
    json_error_t err;
    json_t *j = payload ? json_loadb(payload, len, 0, &err) : NULL;
    if (j && json_is_true(json_object_get(j, "ok"))) {
        snprintf(code, sizeof code, "ok");
    } else if (j) {
        json_t *e = json_object_get(j, "error");
        const char *c = json_string_value(json_object_get(e, "code"));
        const char *m = json_string_value(json_object_get(e, "message"));
        if (c)
            snprintf(code, sizeof code, "%s", c);
        if (m)
            snprintf(msg, sizeof msg, "%s", m);
    } else {
        snprintf(msg, sizeof msg, "reply is not JSON");
    }
    json_decref(j);
    ccgw_audit_who_t who;
    wrap_who(x, &who);
    ccgw_audit_record(x->a, &who, x->action, x->target, x->args, x->args_len, code, msg[0] ? msg : NULL);
    /* the reply after the record: whoever got the reply finds the action audited */
    if (x->inner.send)
        x->inner.send(x->inner.ctx, payload, len);
}

static void wrap_release(void *ctx)
{
    wrap_t *x = ctx;
    if (!atomic_exchange(&x->sent, true)) {
        ccgw_audit_who_t who;
        wrap_who(x, &who);
        ccgw_audit_record(x->a, &who, x->action, x->target, x->args, x->args_len, "dropped",
                          "released without a reply");
    }
    if (x->inner.release)
        x->inner.release(x->inner.ctx);
    free(x->token);
    free(x->role);
    free(x->remote);
    free(x->channel);
    free(x->action);
    free(x->target);
    free(x->args);
    free(x);
}

static char *dup_or_dash(const char *s) { return strdup(s ? s : "-"); }

ccgw_reply_target_t ccgw_audit_wrap(ccgw_audit_t *a, const ccgw_audit_who_t *who, const char *action,
                                    const char *target, const char *args_json, size_t args_len,
                                    ccgw_reply_target_t inner)
{
    if (!a)
        return inner;
    wrap_t *x = calloc(1, sizeof *x);
    if (x) {
        x->a = a;
        x->token = dup_or_dash(who ? who->token : NULL);
        x->role = dup_or_dash(who ? who->role : NULL);
        x->remote = dup_or_dash(who ? who->remote : NULL);
        x->channel = dup_or_dash(who ? who->channel : NULL);
        x->action = dup_or_dash(action);
        x->target = strdup(target ? target : "");
        x->args_len = args_json ? args_len : 0;
        x->args = malloc(x->args_len + 1);
        if (x->args) {
            if (x->args_len)
                memcpy(x->args, args_json, x->args_len);
            x->args[x->args_len] = '\0';
        }
        x->inner = inner;
        atomic_init(&x->sent, false);
    }
    if (!x || !x->token || !x->role || !x->remote || !x->channel || !x->action || !x->target || !x->args) {
        /* out of memory: record now, unwrapped, rather than lose the line */
        ccgw_audit_record(a, who, action, target, args_json, args_len, "unaudited", "out of memory");
        if (x) {
            x->inner.release = NULL;
            x->inner.send = NULL;
            atomic_store(&x->sent, true);
            wrap_release(x);
        }
        return inner;
    }
    return (ccgw_reply_target_t){.send = wrap_send, .release = wrap_release, .ctx = x};
}
