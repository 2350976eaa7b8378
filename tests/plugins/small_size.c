/*
 * small_size - a descriptor whose size field (8) covers only the version
 * header, not the fields the core needs (name, lifecycle callbacks).
 *
 * Exercises: the loader's size check: a plugin is refused when `size` is
 * smaller than the end of the last field the core requires (at least up to
 * `destroy`), with a reason, and dlclosed. The rest of the descriptor is
 * valid, so a loader that ignores `size` would load it: every callback then
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
    fputs("small_size: create() called, but the core must refuse this plugin\n", stderr);
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
    .abi_minor = CCGW_ABI_MINOR,
    .size = 8,
    .name = "small_size",
    .version = "1.0.0",
    .description = "Test plugin: descriptor size 8 (must be refused)",
    .create = never_create,
    .start = never_start,
    .stop = never_stop,
    .destroy = never_stop,
};
