/*
 * no_descriptor - a shared object that exports no `ccgw_plugin_descriptor`.
 *
 * Exercises: the loader's dlsym() failure path: refused with a reason such as
 * "no symbol ccgw_plugin_descriptor (built without CCGW_PLUGIN_DEFINE, or not
 * exported?)" and dlclosed. It reproduces the most likely vendor mistake: the
 * descriptor is defined by hand without CCGW_EXPORT in a library built with
 * -fvisibility=hidden, so the symbol exists but is not exported (it is made
 * hidden explicitly here so the test holds under any build flags).
 */
#include <stdio.h>
#include <stdlib.h>

#include <ccgw/ccgw.h>

static int never_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    (void)inst;
    (void)options;
    (void)state;
    fputs("no_descriptor: create() called, but the core cannot have found it\n", stderr);
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

/* Not exported: hidden, like any symbol without CCGW_EXPORT under
 * -fvisibility=hidden. */
__attribute__((visibility("hidden"))) extern const ccgw_plugin_t ccgw_plugin_descriptor;
__attribute__((visibility("hidden"))) const ccgw_plugin_t ccgw_plugin_descriptor = {
    .abi_major = CCGW_ABI_MAJOR,
    .abi_minor = CCGW_ABI_MINOR,
    .size = (uint32_t)sizeof(ccgw_plugin_t),
    .name = "no_descriptor",
    .version = "1.0.0",
    .description = "Test plugin: descriptor not exported (must be refused)",
    .create = never_create,
    .start = never_start,
    .stop = never_stop,
    .destroy = never_stop,
};

/* Something is exported, so the .so is otherwise a plausible plugin. */
CCGW_EXPORT int no_descriptor_version(void);
CCGW_EXPORT int no_descriptor_version(void)
{
    return 1;
}
