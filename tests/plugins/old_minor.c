/*
 * old_minor - a plugin of the same ABI major built by an OLDER SDK whose
 * descriptor ended at `command` (no reserved slots): its size is smaller
 * than today's sizeof(ccgw_plugin_t).
 *
 * Exercises: minor-version compatibility. The core must load it, read only
 * `size` bytes of the descriptor and treat every field past that as NULL
 * (copy min(size, sizeof) into a zeroed ccgw_plugin_t; never read past the
 * plugin's symbol - an ASan build catches that: the descriptor is a global
 * with a redzone right after it). It then runs normally: device
 * "<instance>.old" (class env) goes online at start and emits telemetry
 * `value` (option `value`, default 42) once.
 * Log line tests may look for (INFO): "old_minor: started".
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <ccgw/ccgw.h>

/* The descriptor as an older SDK declared it: today's fields up to
 * `command`, and nothing after. */
struct old_plugin {
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t size;
    const char *name;
    const char *version;
    const char *description;
    const ccgw_option_t *options;
    const ccgw_command_spec_t *commands;
    int (*check)(const ccgw_config_t *options);
    int (*create)(ccgw_instance_t *inst, const ccgw_config_t *options, void **state);
    int (*start)(void *state);
    void (*stop)(void *state);
    void (*destroy)(void *state);
    void (*command)(void *state, ccgw_cmd_t *cmd);
};

_Static_assert(offsetof(struct old_plugin, name) == offsetof(ccgw_plugin_t, name),
               "old layout must be a prefix of ccgw_plugin_t");
_Static_assert(offsetof(struct old_plugin, command) == offsetof(ccgw_plugin_t, command),
               "old layout must be a prefix of ccgw_plugin_t");
_Static_assert(sizeof(struct old_plugin) < sizeof(ccgw_plugin_t),
               "old descriptor must be shorter than today's");

static const ccgw_option_t old_options[] = {
    {.key = "value", .type = CCGW_OPT_INT, .def = "42", .doc = "Emitted once as telemetry."},
    CCGW_OPTION_END,
};

typedef struct old_minor {
    ccgw_instance_t *inst;
    ccgw_device_t *dev;
    int64_t value;
} old_minor_t;

static int om_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    char id[80];
    old_minor_t *om = calloc(1, sizeof *om);
    if (!om)
        return CCGW_ENOMEM;
    om->inst = inst;
    om->value = ccgw_config_int(options, "value", 42);
    snprintf(id, sizeof id, "%s.old", ccgw_instance_id(inst));
    om->dev = ccgw_device_add(inst, "env", id, om);
    if (!om->dev) {
        free(om);
        return CCGW_EEXIST;
    }
    *state = om;
    return CCGW_OK;
}

static int om_start(void *state)
{
    old_minor_t *om = state;
    ccgw_value_t v[] = {CCGW_V_INT("value", om->value)};
    ccgw_device_set_online(om->dev, true, NULL);
    (void)ccgw_device_telemetry(om->dev, v, CCGW_COUNT(v));
    CCGW_INFO(om->inst, "old_minor: started");
    return CCGW_OK;
}

static void om_stop(void *state)
{
    (void)state; /* nothing running; the core sets the device offline */
}

static void om_destroy(void *state)
{
    free(state);
}

CCGW_EXPORT extern const struct old_plugin ccgw_plugin_descriptor;
CCGW_EXPORT const struct old_plugin ccgw_plugin_descriptor = {
    .abi_major = CCGW_ABI_MAJOR,
    .abi_minor = 0, /* the oldest minor of this major */
    .size = (uint32_t)sizeof(struct old_plugin),
    .name = "old_minor",
    .version = "0.9.0",
    .description = "Test plugin: older same-major descriptor without reserved slots",
    .options = old_options,
    .create = om_create,
    .start = om_start,
    .stop = om_stop,
    .destroy = om_destroy,
};
