/*
 * wrong_name - a descriptor named "something-else" in a file wrong_name.so.
 *
 * Exercises: the loader requires the descriptor's name to equal the file
 * name without .so (the name a config's `plugin:` refers to) and refuses the
 * plugin otherwise, with a reason naming both, then dlcloses it. The
 * callbacks abort the daemon if the core calls them anyway.
 */
#include <stdio.h>
#include <stdlib.h>

#include <ccgw/ccgw.h>

static int never_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    (void)inst;
    (void)options;
    (void)state;
    fputs("wrong_name: create() called, but the core must refuse this plugin\n", stderr);
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

CCGW_PLUGIN_DEFINE(
    .name = "something-else",
    .version = "1.0.0",
    .description = "Test plugin: name differs from the file name (must be refused)",
    .create = never_create,
    .start = never_start,
    .stop = never_stop,
    .destroy = never_stop);
