/* command - see command.h. */
#include "command.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "command_args.h"
#include "config_schema.h"
#include "config_tree.h"
#include "device.h"
#include "gateway.h"
#include "instance.h"
#include "log.h"

/* Commands every device takes, answered by the core itself. */
#define CCGW_CORE_CMD_ALARM_ACK "alarm.ack"

struct ccgw_cmd {
    struct ccgw_cmd *next, *prev; /* instance's live list */
    ccgw_instance_t *inst;
    ccgw_device_t *dev;
    char name[128];
    ccgw_config_doc_t *args;
    ccgw_reply_target_t target;
    atomic_int refs;      /* the plugin's and the core's (timeout) */
    atomic_bool replied;
    bool target_released;
    uint64_t t_start;
    char origin[96];      /* ccgw_cmd_origin() */
};

/* ---- latency histogram (gateway-wide, lock-free) ---- */

const unsigned ccgw_cmd_lat_bounds_ms[CCGW_CMD_LAT_BUCKETS - 1] = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
static _Atomic uint64_t lat_buckets[CCGW_CMD_LAT_BUCKETS];
static _Atomic uint64_t lat_count, lat_sum_ms;

static void latency_record(uint64_t ms)
{
    size_t i = 0;
    while (i < CCGW_CMD_LAT_BUCKETS - 1 && ms > ccgw_cmd_lat_bounds_ms[i])
        i++;
    atomic_fetch_add_explicit(&lat_buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&lat_sum_ms, ms, memory_order_relaxed);
    atomic_fetch_add_explicit(&lat_count, 1, memory_order_relaxed);
}

void ccgw_command_latency(ccgw_cmd_latency_t *out)
{
    for (size_t i = 0; i < CCGW_CMD_LAT_BUCKETS; i++)
        out->buckets[i] = atomic_load_explicit(&lat_buckets[i], memory_order_relaxed);
    out->sum_ms = atomic_load_explicit(&lat_sum_ms, memory_order_relaxed);
    out->count = atomic_load_explicit(&lat_count, memory_order_relaxed);
}

/* ---- replies ---- */

static void reply_now(ccgw_gateway_t *gw, ccgw_device_t *dev, const char *class_name,
                      const char *device_id, const char *command, const char *code, const char *msg,
                      const ccgw_value_t *data, size_t n, ccgw_reply_target_t *t)
{
    size_t len = 0;
    char *payload = ccgw_device_encode_reply(gw, dev, class_name, device_id, command, code, msg,
                                             data, n, &len);
    if (payload && t->send)
        t->send(t->ctx, payload, len);
    free(payload);
}

static void release_target(ccgw_reply_target_t *t)
{
    if (t->release)
        t->release(t->ctx);
    t->release = NULL;
    t->send = NULL;
}

static void cmd_unlink_locked(struct ccgw_cmd *c)
{
    ccgw_instance_t *inst = c->inst;
    if (c->prev)
        c->prev->next = c->next;
    else if (inst->cmds == c)
        inst->cmds = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

static void cmd_free(struct ccgw_cmd *c)
{
    release_target(&c->target);
    ccgw_config_doc_free(c->args);
    free(c);
}

static void cmd_unref(struct ccgw_cmd *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    ccgw_instance_t *inst = c->inst;
    pthread_mutex_lock(&inst->lock);
    cmd_unlink_locked(c);
    pthread_mutex_unlock(&inst->lock);
    cmd_free(c);
}

/* First reply wins; returns false when the command was already answered. */
static bool cmd_answer(struct ccgw_cmd *c, const char *code, const char *msg, const ccgw_value_t *data,
                       size_t n)
{
    bool expected = false;
    if (!atomic_compare_exchange_strong(&c->replied, &expected, true))
        return false;
    ccgw_instance_t *inst = c->inst;
    if (!code)
        atomic_fetch_add(&inst->cmds_ok, 1);
    else if (strcmp(code, CCGW_CMD_E_TIMEOUT) == 0)
        atomic_fetch_add(&inst->cmds_timeout, 1);
    else
        atomic_fetch_add(&inst->cmds_failed, 1);
    uint64_t ms = ccgw_now_ms() - c->t_start;
    latency_record(ms);
    ccgw_log_tagged(code ? CCGW_LOG_INFO : CCGW_LOG_DEBUG, inst->tag, NULL, 0,
                    "command %s on %s/%s: %s%s%s (%llu ms)", c->name, ccgw_device_class(c->dev),
                    ccgw_device_id(c->dev), code ? code : "ok", code ? ": " : "", code && msg ? msg : "",
                    (unsigned long long)ms);
    reply_now(inst->gw, c->dev, NULL, NULL, c->name, code, msg, data, n, &c->target);
    return true;
}

const char *ccgw_cmd_name(const ccgw_cmd_t *c) { return c ? c->name : NULL; }
ccgw_device_t *ccgw_cmd_device(const ccgw_cmd_t *c) { return c ? c->dev : NULL; }
const ccgw_config_t *ccgw_cmd_args(const ccgw_cmd_t *c) { return c ? c->args->root : NULL; }

const char *ccgw_cmd_origin(const ccgw_cmd_t *c) { return c && c->origin[0] ? c->origin : "core"; }

_Static_assert(sizeof(ccgw_command_spec_t) == 3 * sizeof(void *) + 2 * sizeof(void *),
               "ccgw_command_spec_t must keep its ABI 1.0 size");

int ccgw_cmd_reply_ok(ccgw_cmd_t *c, const ccgw_value_t *data, size_t n)
{
    if (!c)
        return CCGW_EINVAL;
    bool first = cmd_answer(c, NULL, NULL, data, n);
    cmd_unref(c);
    return first ? CCGW_OK : CCGW_ESTATE;
}

int ccgw_cmd_reply_error(ccgw_cmd_t *c, const char *code, const char *fmt, ...)
{
    if (!c)
        return CCGW_EINVAL;
    char msg[512] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    bool valid = code && *code && strlen(code) < 64;
    for (const char *p = code; valid && *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
            valid = false;
    bool first = cmd_answer(c, valid ? code : CCGW_CMD_E_DEVICE_ERROR, msg, NULL, 0);
    cmd_unref(c);
    return first ? CCGW_OK : CCGW_ESTATE;
}

/* ---- delivery on the instance thread ---- */

static void on_timeout(ccgw_timer_t *t, void *arg)
{
    (void)t;
    struct ccgw_cmd *c = arg;
    char msg[96];
    snprintf(msg, sizeof msg, "no reply from the device within %d ms", c->inst->cfg->command_timeout_ms);
    cmd_answer(c, CCGW_CMD_E_TIMEOUT, msg, NULL, 0);
    cmd_unref(c); /* the core's reference */
}

static void deliver(void *arg)
{
    struct ccgw_cmd *c = arg;
    ccgw_instance_t *inst = c->inst;
    pthread_mutex_lock(&inst->lock);
    bool running = inst->run_state == CCGW_RUN_RUNNING;
    pthread_mutex_unlock(&inst->lock);
    if (!running || !inst->desc->command) {
        cmd_answer(c, CCGW_CMD_E_DEVICE_ERROR, "instance is not running", NULL, 0);
        cmd_unref(c);
        cmd_unref(c);
        return;
    }
    if (!ccgw_loop_timer_add(inst->loop, (uint64_t)inst->cfg->command_timeout_ms, 0, on_timeout, c)) {
        cmd_answer(c, CCGW_CMD_E_BUSY, "out of memory", NULL, 0);
        cmd_unref(c);
        cmd_unref(c);
        return;
    }
    inst->desc->command(inst->state, c);
}

/* ---- dispatch ---- */

typedef struct route {
    ccgw_gateway_t *gw;
    const char *class_name, *device_id, *name;
    const char *payload;
    size_t len;
    ccgw_reply_target_t *target;
    bool consumed; /* the target moved into a command */
    const ccgw_cmd_caller_t *caller; /* NULL: the core itself */
} route_t;

/* ---- core commands: handled by the core for every device ---- */

static const ccgw_option_t alarm_ack_args[] = {
    {.key = "code", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE, .min = 1, .max = 128,
     .doc = "Code of the active alarm."},
    {.key = "by", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE, .min = 1, .max = 128,
     .doc = "Who acknowledges (operator name or id)."},
    {.key = "note", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 0, .max = 1024,
     .doc = "Free text kept with the acknowledgement."},
    CCGW_OPTION_END,
};

static const ccgw_command_spec_t alarm_ack_spec = {
    .name = CCGW_CORE_CMD_ALARM_ACK, .args = alarm_ack_args,
    .doc = "Acknowledge an active alarm of this device (handled by the core)."};

/* Printable, bounded copy of outside text for the audit line. */
static void audit_str(char *out, size_t len, const char *s)
{
    size_t j = 0;
    for (; s && *s && j + 1 < len; s++)
        out[j++] = ((unsigned char)*s < 0x20 || *s == 0x7f || *s == ' ') ? '_' : *s;
    out[j] = '\0';
}

/* alarm.ack {code, by, note}: runs on the dispatching thread, under the
 * registry's read lock (registry -> device -> store, the usual order). */
static void core_alarm_ack(route_t *r, ccgw_device_t *dev)
{
    char err[1024];
    ccgw_config_doc_t *doc = ccgw_command_parse_args(r->payload, r->len, &alarm_ack_spec, err, sizeof err);
    char a_code[140] = "-", a_by[140] = "-";
    const char *result = CCGW_CMD_E_BAD_ARGUMENTS;
    if (doc) {
        const char *code = ccgw_config_string(doc->root, "code", NULL);
        const char *by = ccgw_config_string(doc->root, "by", NULL);
        const char *note = ccgw_config_string(doc->root, "note", NULL);
        audit_str(a_code, sizeof a_code, code);
        audit_str(a_by, sizeof a_by, by);
        char acked_at[CCGW_TS_LEN] = "";
        int rc = ccgw_device_alarm_ack(dev, code, by, note, acked_at, err, sizeof err);
        if (rc == CCGW_OK) {
            result = "ok";
            ccgw_value_t data[] = {CCGW_V_STRING("code", code), CCGW_V_STRING("state", "acknowledged"),
                                   CCGW_V_STRING("acked_by", by), CCGW_V_STRING("acked_at", acked_at)};
            reply_now(r->gw, dev, NULL, NULL, r->name, NULL, NULL, data, CCGW_COUNT(data), r->target);
        } else {
            result = rc == CCGW_ENOMEM ? CCGW_CMD_E_BUSY : CCGW_CMD_E_BAD_ARGUMENTS;
            reply_now(r->gw, dev, NULL, NULL, r->name, result, err, NULL, 0, r->target);
        }
        ccgw_config_doc_free(doc);
    } else {
        reply_now(r->gw, dev, NULL, NULL, r->name, CCGW_CMD_E_BAD_ARGUMENTS, err, NULL, 0, r->target);
    }
    CLOG_INFO("audit", "audit: alarm.ack code=%s device=%s/%s by=%s result=%s", a_code, r->class_name,
              r->device_id, a_by, result);
}

static int route_on_device(ccgw_device_t *dev, void *ctx)
{
    route_t *r = ctx;
    ccgw_instance_t *inst = ccgw_device_instance(dev);
    if (strcmp(r->name, CCGW_CORE_CMD_ALARM_ACK) == 0) {
        core_alarm_ack(r, dev);
        return CCGW_OK;
    }
    const ccgw_command_spec_t *spec = ccgw_device_find_command(dev, r->name);
    if (!spec) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s/%s takes no command '%s'", r->class_name, r->device_id, r->name);
        reply_now(r->gw, dev, NULL, NULL, r->name, CCGW_CMD_E_UNKNOWN_COMMAND, msg, NULL, 0, r->target);
        return CCGW_OK;
    }
    if (r->caller) {
        int need = spec->min_role > CCGW_ROLE_OPERATOR && spec->min_role <= CCGW_ROLE_ADMIN
                       ? spec->min_role
                       : CCGW_ROLE_OPERATOR;
        if (r->caller->role < need) {
            char msg[256];
            snprintf(msg, sizeof msg, "command '%s' needs role %s", r->name,
                     need == CCGW_ROLE_ADMIN ? "admin" : "operator");
            reply_now(r->gw, dev, NULL, NULL, r->name, CCGW_CMD_E_FORBIDDEN, msg, NULL, 0, r->target);
            return CCGW_OK;
        }
    }
    char err[1024];
    ccgw_config_doc_t *doc = ccgw_command_parse_args(r->payload, r->len, spec, err, sizeof err);
    if (!doc) {
        reply_now(r->gw, dev, NULL, NULL, r->name, CCGW_CMD_E_BAD_ARGUMENTS, err, NULL, 0, r->target);
        return CCGW_OK;
    }
    struct ccgw_cmd *c = calloc(1, sizeof *c);
    if (!c) {
        ccgw_config_doc_free(doc);
        reply_now(r->gw, dev, NULL, NULL, r->name, CCGW_CMD_E_BUSY, "out of memory", NULL, 0, r->target);
        return CCGW_OK;
    }
    c->inst = inst;
    c->dev = dev;
    snprintf(c->name, sizeof c->name, "%s", r->name);
    snprintf(c->origin, sizeof c->origin, "%s", r->caller && r->caller->origin ? r->caller->origin : "core");
    c->args = doc;
    c->target = *r->target;
    atomic_init(&c->refs, 2);
    atomic_init(&c->replied, false);
    c->t_start = ccgw_now_ms();
    atomic_fetch_add(&inst->cmds_in, 1);

    pthread_mutex_lock(&inst->lock);
    bool running = inst->run_state == CCGW_RUN_RUNNING;
    if (running) {
        c->next = inst->cmds;
        if (inst->cmds)
            inst->cmds->prev = c;
        inst->cmds = c;
    }
    pthread_mutex_unlock(&inst->lock);
    r->consumed = true;
    if (!running) {
        reply_now(r->gw, dev, NULL, NULL, r->name, CCGW_CMD_E_DEVICE_ERROR, "instance is not running",
                  NULL, 0, &c->target);
        cmd_free(c);
        return CCGW_OK;
    }
    int rc = ccgw_loop_post(inst->loop, deliver, c);
    if (rc != CCGW_OK) {
        cmd_answer(c, rc == CCGW_EFULL ? CCGW_CMD_E_BUSY : CCGW_CMD_E_DEVICE_ERROR,
                   rc == CCGW_EFULL ? "instance command queue is full" : "instance is stopping", NULL, 0);
        cmd_unref(c);
        cmd_unref(c);
    }
    return CCGW_OK;
}

void ccgw_command_dispatch(ccgw_gateway_t *gw, const char *class_name, const char *device_id,
                           const char *name, const char *payload, size_t len, ccgw_reply_target_t target)
{
    ccgw_command_dispatch_as(gw, NULL, class_name, device_id, name, payload, len, target);
}

void ccgw_command_dispatch_as(ccgw_gateway_t *gw, const ccgw_cmd_caller_t *caller, const char *class_name,
                              const char *device_id, const char *name, const char *payload, size_t len,
                              ccgw_reply_target_t target)
{
    const char *err_code = NULL;
    char err[300] = "";
    if (atomic_load(&gw->stopping)) {
        err_code = CCGW_CMD_E_BUSY;
        snprintf(err, sizeof err, "the gateway is shutting down");
    } else if (!ccgw_valid_name(name, false)) {
        err_code = CCGW_CMD_E_UNKNOWN_COMMAND;
        snprintf(err, sizeof err, "bad command name");
    } else if (!ccgw_valid_class(class_name) || !ccgw_valid_name(device_id, false)) {
        err_code = CCGW_CMD_E_UNKNOWN_DEVICE;
        snprintf(err, sizeof err, "no device %s/%s", class_name, device_id);
    }
    if (err_code) {
        reply_now(gw, NULL, class_name, device_id, name, err_code, err, NULL, 0, &target);
        release_target(&target);
        return;
    }
    route_t r = {.gw = gw, .class_name = class_name, .device_id = device_id, .name = name,
                 .payload = payload, .len = len, .target = &target, .caller = caller};
    int rc = ccgw_registry_with(gw->registry, class_name, device_id, route_on_device, &r);
    if (rc == CCGW_ENOTFOUND) {
        snprintf(err, sizeof err, "no device %s/%s", class_name, device_id);
        reply_now(gw, NULL, class_name, device_id, name, CCGW_CMD_E_UNKNOWN_DEVICE, err, NULL, 0, &target);
    }
    if (!r.consumed)
        release_target(&target);
}

void ccgw_commands_teardown(ccgw_instance_t *inst)
{
    /* answer what is still open; the plugin can no longer reply after destroy */
    for (;;) {
        pthread_mutex_lock(&inst->lock);
        struct ccgw_cmd *c = inst->cmds;
        while (c && atomic_load(&c->replied))
            c = c->next;
        pthread_mutex_unlock(&inst->lock);
        if (!c)
            break;
        cmd_answer(c, CCGW_CMD_E_DEVICE_ERROR, "instance stopped", NULL, 0);
    }
    if (inst->state != NULL)
        return; /* plugin still alive: it keeps its references until it replies */
    pthread_mutex_lock(&inst->lock);
    struct ccgw_cmd *c = inst->cmds;
    inst->cmds = NULL;
    pthread_mutex_unlock(&inst->lock);
    while (c) {
        struct ccgw_cmd *n = c->next;
        cmd_free(c);
        c = n;
    }
}
