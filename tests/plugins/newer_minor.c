/*
 * newer_minor - a plugin built against a newer minor ABI of the same major
 * (abi_minor = CCGW_ABI_MINOR + 1) than this gateway serves.
 *
 * Exercises: the loader refuses a plugin whose abi_minor is greater than the
 * core's (it may call SDK functions this core does not have), with a reason
 * naming both versions, and dlcloses it. The rest of the descriptor is valid,
 * so a loader that skips the minor check would load it: every callback then
 * aborts the daemon to make that failure loud.
 */
#include <stdio.h>
#include <stdlib.h>

#include <ccgw/ccgw.h>

static int never_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    (void)inst;
    (void)options;
    (void)state;
    fputs("newer_minor: create() called, but the core must refuse this plugin\n", stderr);
    abort();
}

static int never_start(void *state)
{
    (void)state;
    abort();
}

static void never_stop(void *state)
{
    (void)state;
    abort();
}

CCGW_EXPORT extern const ccgw_plugin_t ccgw_plugin_descriptor;
CCGW_EXPORT const ccgw_plugin_t ccgw_plugin_descriptor = {
    .abi_major = CCGW_ABI_MAJOR,
    .abi_minor = CCGW_ABI_MINOR + 1,
    .size = (uint32_t)sizeof(ccgw_plugin_t),
    .name = "newer_minor",
    .version = "1.0.0",
    .description = "Test plugin: built for a newer minor ABI (must be refused)",
    .create = never_create,
    .start = never_start,
    .stop = never_stop,
    .destroy = never_stop,
};
