/*
 * missing_create - a valid ABI whose required `create` slot is NULL.
 *
 * Exercises: the loader checks the required slots (create, start, stop,
 * destroy; command when commands are declared) at load and refuses the
 * plugin with a reason naming the slot ("create is NULL"), then dlcloses it.
 * The other callbacks abort the daemon if the core calls them anyway.
 */
#include <stdio.h>
#include <stdlib.h>

#include <ccgw/ccgw.h>

static int never_start(void *state)
{
    (void)state;
    fputs("missing_create: start() called, but the core must refuse this plugin\n", stderr);
    abort();
}

static void never_stop(void *state)
{
    (void)state;
    abort();
}

CCGW_PLUGIN_DEFINE(
    .name = "missing_create",
    .version = "1.0.0",
    .description = "Test plugin: create is NULL (must be refused)",
    .create = NULL,
    .start = never_start,
    .stop = never_stop,
    .destroy = never_stop);
