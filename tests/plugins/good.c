/*
 * good - a minimal valid plugin, the reference point of the loader and
 * runtime tests.
 *
 * Exercises: a normal load through CCGW_PLUGIN_DEFINE, option defaults
 * (greeting "hi", interval_ms 200), a device `good1` (class env) that goes
 * online at start and emits telemetry `counter` (1, 2, 3, ...) every
 * interval_ms, and a command `echo` that replies ok with its arguments as
 * data. With `delay_ms` the reply is deferred on a one-shot timer (to test
 * deferred replies and the core's command timeout); replies still pending at
 * stop() are answered device_error "instance stopping".
 *
 * Log lines tests may look for (INFO): "good: started, greeting <greeting>",
 * "good: stopped", "good: destroyed".
 */
#include <stdlib.h>
#include <string.h>

#include <ccgw/ccgw.h>

static const ccgw_option_t good_options[] = {
    {.key = "greeting", .type = CCGW_OPT_STRING, .def = "hi", .doc = "Logged at start."},
    {.key = "interval_ms",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "200",
     .min = 10,
     .max = 600000,
     .doc = "Period of the `counter` telemetry, in milliseconds."},
    CCGW_OPTION_END,
};

static const ccgw_option_t good_echo_args[] = {
    {.key = "text", .type = CCGW_OPT_STRING, .doc = "Echoed."},
    {.key = "n", .type = CCGW_OPT_INT, .doc = "Echoed."},
    {.key = "x", .type = CCGW_OPT_DOUBLE, .doc = "Echoed."},
    {.key = "flag", .type = CCGW_OPT_BOOL, .doc = "Echoed."},
    {.key = "delay_ms",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .min = 0,
     .max = 600000,
     .doc = "Reply this much later (echoed too)."},
    CCGW_OPTION_END,
};

static const ccgw_command_spec_t good_commands[] = {
    {.name = "echo", .args = good_echo_args, .doc = "Reply ok with the arguments as data."},
    {0},
};

typedef struct good good_t;

typedef struct good_pending {
    good_t *g;
    ccgw_cmd_t *cmd;
    ccgw_timer_t *timer;
    struct good_pending *next;
} good_pending_t;

struct good {
    ccgw_instance_t *inst;
    ccgw_device_t *dev;
    ccgw_timer_t *timer;
    const char *greeting; /* option node text: lives as long as the instance */
    uint64_t interval_ms;
    int64_t counter;
    good_pending_t *pending; /* deferred echo replies */
};

/* Thread: instance thread (timer). */
static void good_tick(ccgw_timer_t *timer, void *arg)
{
    good_t *g = arg;
    (void)timer;
    ccgw_value_t v[] = {CCGW_V_INT("counter", ++g->counter)};
    (void)ccgw_device_telemetry(g->dev, v, CCGW_COUNT(v));
}

/* Reply ok with every argument that is present, typed as declared. */
static void good_echo_reply(ccgw_cmd_t *cmd)
{
    const ccgw_config_t *args = ccgw_cmd_args(cmd);
    ccgw_value_t out[CCGW_COUNT(good_echo_args)];
    size_t n = 0;

    for (const ccgw_option_t *o = good_echo_args; o->key; o++) {
        if (!ccgw_config_get(args, o->key))
            continue;
        switch (o->type) {
        case CCGW_OPT_STRING:
            out[n++] = CCGW_V_STRING(o->key, ccgw_config_string(args, o->key, ""));
            break;
        case CCGW_OPT_INT:
            out[n++] = CCGW_V_INT(o->key, ccgw_config_int(args, o->key, 0));
            break;
        case CCGW_OPT_DOUBLE:
            out[n++] = CCGW_V_DOUBLE(o->key, ccgw_config_double(args, o->key, 0.0), NULL);
            break;
        case CCGW_OPT_BOOL:
            out[n++] = CCGW_V_BOOL(o->key, ccgw_config_bool(args, o->key, false));
            break;
        default:
            break;
        }
    }
    ccgw_cmd_reply_ok(cmd, out, n);
}

static void good_unlink(good_pending_t *p)
{
    for (good_pending_t **pp = &p->g->pending; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            return;
        }
    }
}

/* Thread: instance thread (one-shot timer; the core frees it after this). */
static void good_echo_later(ccgw_timer_t *timer, void *arg)
{
    good_pending_t *p = arg;
    (void)timer;
    good_unlink(p);
    good_echo_reply(p->cmd);
    free(p);
}

/* Thread: instance thread. */
static int good_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    good_t *g = calloc(1, sizeof *g);
    if (!g)
        return CCGW_ENOMEM;
    g->inst = inst;
    g->greeting = ccgw_config_string(options, "greeting", "hi");
    g->interval_ms = (uint64_t)ccgw_config_int(options, "interval_ms", 200);
    g->dev = ccgw_device_add(inst, "env", "good1", g);
    if (!g->dev) {
        free(g);
        return CCGW_EEXIST;
    }
    *state = g;
    return CCGW_OK;
}

/* Thread: instance thread. */
static int good_start(void *state)
{
    good_t *g = state;
    g->timer = ccgw_timer_add(g->inst, g->interval_ms, g->interval_ms, good_tick, g);
    if (!g->timer)
        return CCGW_ENOMEM;
    ccgw_device_set_online(g->dev, true, NULL);
    CCGW_INFO(g->inst, "good: started, greeting %s", g->greeting);
    return CCGW_OK;
}

/* Thread: instance thread. */
static void good_stop(void *state)
{
    good_t *g = state;
    if (g->timer) {
        ccgw_timer_cancel(g->timer);
        g->timer = NULL;
    }
    while (g->pending) {
        good_pending_t *p = g->pending;
        g->pending = p->next;
        ccgw_timer_cancel(p->timer);
        ccgw_cmd_reply_error(p->cmd, CCGW_CMD_E_DEVICE_ERROR, "instance stopping");
        free(p);
    }
    CCGW_INFO(g->inst, "good: stopped");
}

/* Thread: instance thread. */
static void good_destroy(void *state)
{
    good_t *g = state;
    CCGW_INFO(g->inst, "good: destroyed");
    free(g);
}

/* Thread: instance thread. */
static void good_command(void *state, ccgw_cmd_t *cmd)
{
    good_t *g = state;
    const ccgw_config_t *args = ccgw_cmd_args(cmd);

    if (strcmp(ccgw_cmd_name(cmd), "echo") != 0) {
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_UNKNOWN_COMMAND, "no command %s", ccgw_cmd_name(cmd));
        return;
    }
    int64_t delay = ccgw_config_int(args, "delay_ms", 0);
    if (delay <= 0) {
        good_echo_reply(cmd);
        return;
    }
    good_pending_t *p = calloc(1, sizeof *p);
    if (!p) {
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_DEVICE_ERROR, "out of memory");
        return;
    }
    p->g = g;
    p->cmd = cmd;
    p->timer = ccgw_timer_add(g->inst, (uint64_t)delay, 0, good_echo_later, p);
    if (!p->timer) {
        free(p);
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_DEVICE_ERROR, "no timer");
        return;
    }
    p->next = g->pending;
    g->pending = p;
}

CCGW_PLUGIN_DEFINE(
    .name = "good",
    .version = "1.0.0",
    .description = "Test plugin: a minimal valid plugin",
    .options = good_options,
    .commands = good_commands,
    .create = good_create,
    .start = good_start,
    .stop = good_stop,
    .destroy = good_destroy,
    .command = good_command);
