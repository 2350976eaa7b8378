/*
 * failing_create - loads fine; create() declares a device, then fails with
 * CCGW_EIO.
 *
 * Exercises: a failed create() marks that instance failed (health failed,
 * reason naming EIO) while the gateway and other instances keep running;
 * the core removes the device the failed create() had declared
 * ("<instance>.d1", class env) and calls nothing else: start, stop and
 * destroy abort the daemon if called (there is no state to pass them).
 * Log line tests may look for (ERROR): "failing_create: create failing with EIO".
 */
#include <stdio.h>
#include <stdlib.h>

#include <ccgw/ccgw.h>

static int fc_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    char id[80];
    (void)options;
    (void)state;
    snprintf(id, sizeof id, "%s.d1", ccgw_instance_id(inst));
    (void)ccgw_device_add(inst, "env", id, NULL);
    CCGW_ERROR(inst, "failing_create: create failing with EIO");
    return CCGW_EIO;
}

static int never_start(void *state)
{
    (void)state;
    fputs("failing_create: start() called after create() failed\n", stderr);
    abort();
}

static void never_stop(void *state)
{
    (void)state;
    fputs("failing_create: stop()/destroy() called after create() failed\n", stderr);
    abort();
}

CCGW_PLUGIN_DEFINE(
    .name = "failing_create",
    .version = "1.0.0",
    .description = "Test plugin: create() returns CCGW_EIO",
    .create = fc_create,
    .start = never_start,
    .stop = never_stop,
    .destroy = never_stop);
