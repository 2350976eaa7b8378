/*
 * failing_start - create() succeeds (state + a device "<instance>.d1", class
 * env); start() fails with CCGW_EIO.
 *
 * Exercises: a failed start() marks that instance failed (health failed,
 * reason naming EIO) while the gateway and other instances keep running; the
 * core then calls destroy() (state freed, device removed) and NOT stop(),
 * since start() did not succeed (docs/sdk.md, "Instance lifecycle").
 * Log lines tests may look for: ERROR "failing_start: start failing with
 * EIO", INFO "failing_start: destroyed", and, if the core wrongly calls
 * stop(), ERROR "failing_start: stop() called although start() failed".
 */
#include <stdio.h>
#include <stdlib.h>

#include <ccgw/ccgw.h>

typedef struct failing_start {
    ccgw_instance_t *inst;
    ccgw_device_t *dev;
} failing_start_t;

static int fs_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    char id[80];
    (void)options;
    failing_start_t *fs = calloc(1, sizeof *fs);
    if (!fs)
        return CCGW_ENOMEM;
    fs->inst = inst;
    snprintf(id, sizeof id, "%s.d1", ccgw_instance_id(inst));
    fs->dev = ccgw_device_add(inst, "env", id, fs);
    *state = fs;
    return CCGW_OK;
}

static int fs_start(void *state)
{
    failing_start_t *fs = state;
    CCGW_ERROR(fs->inst, "failing_start: start failing with EIO");
    return CCGW_EIO;
}

static void fs_stop(void *state)
{
    failing_start_t *fs = state;
    CCGW_ERROR(fs->inst, "failing_start: stop() called although start() failed");
}

static void fs_destroy(void *state)
{
    failing_start_t *fs = state;
    CCGW_INFO(fs->inst, "failing_start: destroyed");
    free(fs);
}

CCGW_PLUGIN_DEFINE(
    .name = "failing_start",
    .version = "1.0.0",
    .description = "Test plugin: start() returns CCGW_EIO",
    .create = fs_create,
    .start = fs_start,
    .stop = fs_stop,
    .destroy = fs_destroy);
