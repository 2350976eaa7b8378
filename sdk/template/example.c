/*
 * example.c - the ccgw plugin template: a small, complete polling plugin.
 *
 * Copy this folder, rename "example" everywhere (the descriptor's .name must
 * equal the file name without .so), and replace example_poll() with real I/O.
 *
 * What it does: each configured device is a simulated temperature sensor.
 * A repeating timer per device emits telemetry `temperature` (Cel), a
 * deterministic sawtooth: base_temperature + offset + (counter % 10) * 0.5.
 * The alarm `high_temperature` is raised while the value is above
 * alarm_above and cleared when it falls below again. The command
 * `example.set_offset {"offset": 2.5}` shifts one device's readings.
 *
 * Threads: this plugin only uses the instance loop (timers), so every
 * function below runs on the instance thread and needs no locks. A plugin
 * that blocks on I/O keeps a worker thread of its own; from there it may call
 * only the emit calls, ccgw_cmd_reply_*, ccgw_post(), ccgw_instance_health(),
 * ccgw_log() and the config getters (see ccgw/instance.h and docs/sdk.md).
 *
 * Build: see README.md (CMake or the Makefile; both use pkg-config ccgw-sdk).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ccgw/ccgw.h>

/* ------------------------------------------------------------------------ */
/* Declarations: the core validates the YAML against these tables before   */
/* create() runs, fills in defaults, and prints them with --describe-plugin. */
/* ------------------------------------------------------------------------ */

static const char *const example_classes[] = {"env", NULL};

/* The keys of one item of `devices`. */
static const ccgw_option_t example_device_options[] = {
    {.key = "id",
     .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 64,
     .doc = "Device id ([a-z0-9_.-]+), unique per class in the gateway."},
    {.key = "interval_ms",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "1000",
     .min = 100,
     .max = 3600000,
     .doc = "How often the device is read, in milliseconds."},
    {.key = "class",
     .type = CCGW_OPT_ENUM,
     .def = "env",
     .choices = example_classes,
     .doc = "Device class in the topic tree."},
    CCGW_OPTION_END,
};

/* The instance options (the `options:` mapping of an instance in the YAML). */
static const ccgw_option_t example_options[] = {
    {.key = "devices",
     .type = CCGW_OPT_LIST,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 256,
     .item_type = CCGW_OPT_OBJECT,
     .children = example_device_options,
     .doc = "The simulated sensors; each emits telemetry `temperature`."},
    {.key = "base_temperature",
     .type = CCGW_OPT_DOUBLE,
     .flags = CCGW_OPT_F_RANGE,
     .def = "20.0",
     .min = -50,
     .max = 100,
     .doc = "Lowest reading of the sawtooth, in Cel."},
    {.key = "alarm_above",
     .type = CCGW_OPT_DOUBLE,
     .def = "30.0",
     .doc = "Raise alarm high_temperature above this value (Cel); clear it below."},
    CCGW_OPTION_END,
};

/* Arguments of example.set_offset: the core answers bad_arguments itself for
 * a missing, mistyped or out-of-range `offset`, so command() never sees one. */
static const ccgw_option_t example_set_offset_args[] = {
    {.key = "offset",
     .type = CCGW_OPT_DOUBLE,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = -10,
     .max = 10,
     .doc = "Added to every later reading of the device, in Cel."},
    CCGW_OPTION_END,
};

/* Commands every device of this plugin takes. Plugin-specific commands are
 * prefixed with the plugin name; the class vocabulary (docs/topics.md) names
 * the standard ones. */
static const ccgw_command_spec_t example_commands[] = {
    {.name = "example.set_offset",
     .args = example_set_offset_args,
     .doc = "Shift the device's readings by `offset` Cel; replies {offset}."},
    {0},
};

/* ------------------------------------------------------------------------ */
/* Per-instance state. Never keep plugin state in file-scope variables: the  */
/* same .so serves several instances at once.                                */
/* ------------------------------------------------------------------------ */

#define EXAMPLE_ALARM "high_temperature"

typedef struct example example_t;

typedef struct example_dev {
    example_t *ex;        /* back pointer, for the timer callback */
    ccgw_device_t *dev;   /* owned by the core; valid until destroy() */
    ccgw_timer_t *timer;  /* NULL when not armed */
    uint64_t interval_ms;
    uint64_t counter;     /* readings taken */
    double offset;        /* set by example.set_offset */
    bool online;
    bool alarm_active;
} example_dev_t;

struct example {
    ccgw_instance_t *inst;
    double base_temperature;
    double alarm_above;
    size_t n_devs;
    example_dev_t devs[]; /* one per item of `devices` */
};

/* [a-z0-9_.-]+ : checked in check() so that --check-config reports a bad id
 * with its position; ccgw_device_add() would only refuse it at run time. */
static bool example_valid_id(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '.' ||
              *s == '-'))
            return false;
    }
    return true;
}

/* The "hardware": a deterministic sawtooth, 0 .. 4.5 above base + offset. */
static double example_read_sensor(const example_t *ex, const example_dev_t *d)
{
    return ex->base_temperature + d->offset + (double)(d->counter % 10) * 0.5;
}

/* ------------------------------------------------------------------------ */
/* Callbacks                                                                */
/* ------------------------------------------------------------------------ */

/*
 * check - semantic checks the option table cannot express.
 * Thread: the thread that loads the configuration (at startup, on SIGHUP
 * reload and under `ccgw --check-config`), before any instance exists. Touch
 * nothing but `options`: no I/O, no devices, no state.
 * Returns the number of errors, each recorded with ccgw_config_error() so it
 * is printed as FILE:LINE:COL: message.
 */
static int example_check(const ccgw_config_t *options)
{
    const ccgw_config_t *devices = ccgw_config_get(options, "devices");
    size_t n = ccgw_config_count(devices);
    int errors = 0;

    for (size_t i = 0; i < n; i++) {
        const ccgw_config_t *item = ccgw_config_at(devices, i);
        const ccgw_config_t *id_node = ccgw_config_get(item, "id");
        const char *id = ccgw_config_string(item, "id", "");

        if (!example_valid_id(id)) {
            ccgw_config_error(id_node, "device id '%s' must match [a-z0-9_.-]+", id);
            errors++;
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            const ccgw_config_t *other = ccgw_config_at(devices, j);
            if (strcmp(id, ccgw_config_string(other, "id", "")) == 0) {
                char where[128];
                ccgw_config_error(id_node, "duplicate device id '%s' (first at %s)", id,
                                  ccgw_config_where(ccgw_config_get(other, "id"), where,
                                                    sizeof where));
                errors++;
                break;
            }
        }
    }
    return errors;
}

/*
 * create - build the instance state from validated options (defaults are
 * filled in, types and ranges already checked) and declare the devices.
 * Thread: the instance thread. No blocking I/O here.
 */
static int example_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    const ccgw_config_t *devices = ccgw_config_get(options, "devices");
    size_t n = ccgw_config_count(devices);
    unsigned abi_major = 0, abi_minor = 0;

    example_t *ex = calloc(1, sizeof *ex + n * sizeof ex->devs[0]);
    if (!ex)
        return CCGW_ENOMEM;
    ex->inst = inst;
    ex->base_temperature = ccgw_config_double(options, "base_temperature", 20.0);
    ex->alarm_above = ccgw_config_double(options, "alarm_above", 30.0);
    ex->n_devs = n;

    for (size_t i = 0; i < n; i++) {
        const ccgw_config_t *item = ccgw_config_at(devices, i);
        example_dev_t *d = &ex->devs[i];

        d->ex = ex;
        d->interval_ms = (uint64_t)ccgw_config_int(item, "interval_ms", 1000);
        /* `user` = d: ccgw_device_user() gives it back in command(). */
        d->dev = ccgw_device_add(inst, ccgw_config_string(item, "class", "env"),
                                 ccgw_config_string(item, "id", ""), d);
        if (!d->dev) {
            /* The core has logged why (bad or duplicate id). Devices added
             * so far are removed by the core. */
            free(ex);
            return CCGW_EINVAL;
        }
    }

    ccgw_sdk_abi(&abi_major, &abi_minor);
    CCGW_DEBUG(inst, "created with %zu device(s); built for ABI %d.%d, core ABI %u.%u", n,
               CCGW_ABI_MAJOR, CCGW_ABI_MINOR, abi_major, abi_minor);
    *state = ex;
    return CCGW_OK;
}

/*
 * example_poll - one reading of one device.
 * Thread: the instance thread (timer callback). A real plugin that must
 * block on the device does the request on a worker thread instead and emits
 * from there (emit calls are thread-safe).
 */
static void example_poll(ccgw_timer_t *timer, void *arg)
{
    example_dev_t *d = arg;
    example_t *ex = d->ex;
    double t = example_read_sensor(ex, d);
    (void)timer;

    d->counter++;

    /* Say the device is reachable once we have heard from it; state is
     * retained and published only on change. */
    if (!d->online && ccgw_device_set_online(d->dev, true, NULL) == CCGW_OK)
        d->online = true;

    ccgw_value_t values[] = {
        CCGW_V_DOUBLE("temperature", t, "Cel"),
    };
    /* Telemetry never blocks: CCGW_EFULL means the gateway queue was full and
     * this reading was dropped (and counted); simply carry on. */
    (void)ccgw_device_telemetry(d->dev, values, CCGW_COUNT(values));

    if (!d->alarm_active && t > ex->alarm_above) {
        char msg[96];
        ccgw_value_t data[] = {
            CCGW_V_DOUBLE("temperature", t, "Cel"),
            CCGW_V_DOUBLE("threshold", ex->alarm_above, "Cel"),
        };
        snprintf(msg, sizeof msg, "temperature %.1f Cel above %.1f Cel", t, ex->alarm_above);
        if (ccgw_alarm_raise(d->dev, EXAMPLE_ALARM, CCGW_SEV_MAJOR, msg, data,
                             CCGW_COUNT(data)) == CCGW_OK)
            d->alarm_active = true;
    } else if (d->alarm_active && t < ex->alarm_above) {
        if (ccgw_alarm_clear(d->dev, EXAMPLE_ALARM, "temperature back below threshold") == CCGW_OK)
            d->alarm_active = false;
    }
}

/*
 * stop - cancel all work. After it returns no plugin code may run or emit.
 * (The core then sets every device offline, reason "instance stopped".)
 * Thread: the instance thread. Also used by start() to undo a partial start.
 */
static void example_stop(void *state)
{
    example_t *ex = state;

    for (size_t i = 0; i < ex->n_devs; i++) {
        example_dev_t *d = &ex->devs[i];
        if (d->timer) {
            ccgw_timer_cancel(d->timer);
            d->timer = NULL;
        }
    }
}

/*
 * start - begin work: one repeating timer per device.
 * Thread: the instance thread. Returning < 0 marks this instance failed
 * (stop() is not called then, so undo what was armed before failing).
 */
static int example_start(void *state)
{
    example_t *ex = state;

    for (size_t i = 0; i < ex->n_devs; i++) {
        example_dev_t *d = &ex->devs[i];
        /* Spread the first readings over one interval so that many devices
         * with the same interval do not all fire in the same loop turn. */
        uint64_t first_ms = d->interval_ms * i / ex->n_devs;

        d->timer = ccgw_timer_add(ex->inst, first_ms, d->interval_ms, example_poll, d);
        if (!d->timer) {
            example_stop(ex);
            return CCGW_ENOMEM;
        }
    }
    CCGW_INFO(ex->inst, "polling %zu device(s), alarm above %.1f Cel", ex->n_devs,
              ex->alarm_above);
    return CCGW_OK;
}

/*
 * destroy - free the state. Devices are removed by the core.
 * Thread: the instance thread, after stop() (or after a failed start()).
 */
static void example_destroy(void *state)
{
    free(state);
}

/*
 * command - one command for one of our devices, name and arguments already
 * validated against example_commands. Reply exactly once: here, or later
 * from any thread (keep `cmd` and call ccgw_cmd_reply_* when the answer
 * arrives).
 * Thread: the instance thread.
 */
static void example_command(void *state, ccgw_cmd_t *cmd)
{
    example_t *ex = state;
    example_dev_t *d = ccgw_device_user(ccgw_cmd_device(cmd));
    const char *name = ccgw_cmd_name(cmd);

    if (strcmp(name, "example.set_offset") == 0) {
        double offset = ccgw_config_double(ccgw_cmd_args(cmd), "offset", 0.0);
        d->offset = offset;
        CCGW_INFO(ex->inst, "%s: offset now %.2f Cel", ccgw_device_id(d->dev), offset);
        ccgw_value_t data[] = {
            CCGW_V_DOUBLE("offset", offset, NULL),
        };
        ccgw_cmd_reply_ok(cmd, data, CCGW_COUNT(data));
        return;
    }
    /* Not reached while example_commands and this function agree. */
    ccgw_cmd_reply_error(cmd, CCGW_CMD_E_UNKNOWN_COMMAND, "example has no command '%s'", name);
}

/* The one exported symbol. Required: name, create, start, stop, destroy (and
 * command, because commands are declared). */
CCGW_PLUGIN_DEFINE(
    .name = "example",
    .version = "1.0.0",
    .description = "Template plugin: simulated temperature sensors",
    .options = example_options,
    .commands = example_commands,
    .check = example_check,
    .create = example_create,
    .start = example_start,
    .stop = example_stop,
    .destroy = example_destroy,
    .command = example_command);
