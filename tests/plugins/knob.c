/*
 * knob - a deterministic fixture for the alarm rule tests.
 *
 * One device `knob1` (class env), online at start. Every interval_ms
 * (default 100) it emits telemetry `temperature` (Cel) and updates its state
 * attribute `leak` (bool). Both start at the options `temperature` (default
 * 20) and `leak` (default false) and are changed by the command
 * `knob.set {temperature, leak}` (either or both), which replies ok with
 * the new values and emits them at once.
 */
#include <stdlib.h>
#include <string.h>

#include <ccgw/ccgw.h>

static const ccgw_option_t knob_options[] = {
    {.key = "interval_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "100", .min = 10,
     .max = 600000, .doc = "Period of the emits, in milliseconds."},
    {.key = "temperature", .type = CCGW_OPT_DOUBLE, .def = "20", .doc = "Initial temperature (Cel)."},
    {.key = "leak", .type = CCGW_OPT_BOOL, .def = "false", .doc = "Initial leak state."},
    CCGW_OPTION_END,
};

static const ccgw_option_t knob_set_args[] = {
    {.key = "temperature", .type = CCGW_OPT_DOUBLE, .doc = "New temperature (Cel)."},
    {.key = "leak", .type = CCGW_OPT_BOOL, .doc = "New leak state."},
    CCGW_OPTION_END,
};

static const ccgw_command_spec_t knob_commands[] = {
    {.name = "knob.set", .args = knob_set_args, .doc = "Set temperature and/or leak."},
    {.name = "knob.reset", .doc = "Admin only (ABI 1.1 min_role); answers who sent it.",
     .min_role = CCGW_ROLE_ADMIN},
    {0},
};

typedef struct knob {
    ccgw_instance_t *inst;
    ccgw_device_t *dev;
    ccgw_timer_t *timer;
    uint64_t interval_ms;
    double temperature;
    bool leak;
} knob_t;

/* Thread: instance thread. */
static void knob_emit(knob_t *k)
{
    ccgw_value_t t[] = {CCGW_V_DOUBLE("temperature", k->temperature, "Cel")};
    (void)ccgw_device_telemetry(k->dev, t, CCGW_COUNT(t));
    ccgw_value_t s[] = {CCGW_V_BOOL("leak", k->leak)};
    (void)ccgw_device_update_state(k->dev, s, CCGW_COUNT(s));
}

/* Thread: instance thread (timer). */
static void knob_tick(ccgw_timer_t *timer, void *arg)
{
    (void)timer;
    knob_emit(arg);
}

/* Thread: instance thread. */
static int knob_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    knob_t *k = calloc(1, sizeof *k);
    if (!k)
        return CCGW_ENOMEM;
    k->inst = inst;
    k->interval_ms = (uint64_t)ccgw_config_int(options, "interval_ms", 100);
    k->temperature = ccgw_config_double(options, "temperature", 20.0);
    k->leak = ccgw_config_bool(options, "leak", false);
    k->dev = ccgw_device_add(inst, "env", "knob1", k);
    if (!k->dev) {
        free(k);
        return CCGW_EEXIST;
    }
    *state = k;
    return CCGW_OK;
}

/* Thread: instance thread. */
static int knob_start(void *state)
{
    knob_t *k = state;
    k->timer = ccgw_timer_add(k->inst, k->interval_ms, k->interval_ms, knob_tick, k);
    if (!k->timer)
        return CCGW_ENOMEM;
    ccgw_device_set_online(k->dev, true, NULL);
    CCGW_INFO(k->inst, "knob: started");
    return CCGW_OK;
}

/* Thread: instance thread. */
static void knob_stop(void *state)
{
    knob_t *k = state;
    if (k->timer) {
        ccgw_timer_cancel(k->timer);
        k->timer = NULL;
    }
}

/* Thread: instance thread. */
static void knob_destroy(void *state) { free(state); }

/* Thread: instance thread. */
static void knob_command(void *state, ccgw_cmd_t *cmd)
{
    knob_t *k = state;
    const ccgw_config_t *args = ccgw_cmd_args(cmd);
    if (strcmp(ccgw_cmd_name(cmd), "knob.reset") == 0) {
        ccgw_value_t out[] = {CCGW_V_STRING("origin", ccgw_cmd_origin(cmd))};
        ccgw_cmd_reply_ok(cmd, out, CCGW_COUNT(out));
        return;
    }
    if (strcmp(ccgw_cmd_name(cmd), "knob.set") != 0) {
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_UNKNOWN_COMMAND, "no command %s", ccgw_cmd_name(cmd));
        return;
    }
    if (ccgw_config_get(args, "temperature"))
        k->temperature = ccgw_config_double(args, "temperature", k->temperature);
    if (ccgw_config_get(args, "leak"))
        k->leak = ccgw_config_bool(args, "leak", k->leak);
    knob_emit(k);
    ccgw_value_t out[] = {CCGW_V_DOUBLE("temperature", k->temperature, NULL), CCGW_V_BOOL("leak", k->leak)};
    ccgw_cmd_reply_ok(cmd, out, CCGW_COUNT(out));
}

CCGW_PLUGIN_DEFINE(
    .name = "knob",
    .version = "1.0.0",
    .description = "Test plugin: temperature and leak set by command (alarm rule fixture)",
    .options = knob_options,
    .commands = knob_commands,
    .create = knob_create,
    .start = knob_start,
    .stop = knob_stop,
    .destroy = knob_destroy,
    .command = knob_command);
