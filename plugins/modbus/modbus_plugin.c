/*
 * modbus - Modbus TCP/RTU plugin for ccgw.
 *
 * Polls holding/input registers, coils and discrete inputs of UPS, air
 * conditioners and environment sensors, publishes them as telemetry or
 * state attributes, raises alarms from bool points and bits, and writes
 * points on command (`write`, and per-device aliases such as hvac.start).
 * docs/plugins/modbus.md is the user documentation.
 *
 * Files: modbus_codec.c (pure conversion and planning), modbus_config.c
 * (option tables, check, build), modbus_link.c (worker threads), this file
 * (descriptor, lifecycle, commands). Threads: see modbus_plugin.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modbus_plugin.h"

#define MB_PLUGIN_VERSION "1.0.0"

/* Thread: instance thread. */
static int mb_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    mb_instance_t *mb = calloc(1, sizeof *mb);
    if (!mb)
        return CCGW_ENOMEM;
    mb->inst = inst;
    if (pthread_mutex_init(&mb->health_lock, NULL) != 0) {
        free(mb);
        return CCGW_ENOMEM;
    }
    mb->health_init = true;

    int rc = mb_build(mb, options);
    if (rc < 0)
        goto fail;
    for (size_t i = 0; i < mb->n_devices; i++) {
        mb_device_t *d = &mb->devices[i];
        d->dev = ccgw_device_add(inst, d->class_name, d->id, d);
        if (!d->dev) {
            rc = CCGW_EEXIST;
            goto fail;
        }
        if (d->n_aliases) {
            rc = ccgw_device_add_commands(d->dev, d->cmd_specs);
            if (rc < 0)
                goto fail;
        }
    }
    size_t npoints = 0;
    for (size_t i = 0; i < mb->n_devices; i++) {
        const mb_device_t *d = &mb->devices[i];
        npoints += d->n_points;
        /* A silent device costs timeout x attempts per poll; if that exceeds
         * the interval, polls run back to back and going offline takes longer
         * than offline_after intervals (and delays devices on the same line). */
        uint64_t worst = (uint64_t)d->timeout_ms * (d->retries + 1u);
        if (worst > d->poll_interval_ms)
            CCGW_WARN(inst,
                      "modbus: device %s: timeout_ms %u x %u attempts = %llu ms exceeds "
                      "poll_interval_ms %llu; a silent device goes offline only after about "
                      "%llu ms",
                      d->id, (unsigned)d->timeout_ms, d->retries + 1u, (unsigned long long)worst,
                      (unsigned long long)d->poll_interval_ms,
                      (unsigned long long)(worst * d->offline_after));
    }
    CCGW_INFO(inst, "modbus: %zu device%s, %zu point%s, %zu link%s", mb->n_devices,
              mb->n_devices == 1 ? "" : "s", npoints, npoints == 1 ? "" : "s", mb->n_links,
              mb->n_links == 1 ? "" : "s");
    *state = mb;
    return CCGW_OK;

fail:
    mb_free_config(mb);
    pthread_mutex_destroy(&mb->health_lock);
    free(mb);
    return rc;
}

/* Thread: instance thread. */
static int mb_start(void *state)
{
    mb_instance_t *mb = state;

    /* A fresh start: the first poll re-evaluates every alarm (raising an
     * active alarm again only updates it) and reachability. */
    for (size_t i = 0; i < mb->n_devices; i++) {
        mb_device_t *d = &mb->devices[i];
        for (size_t j = 0; j < d->n_points; j++) {
            d->points[j].alarm.active = false;
            for (size_t k = 0; k < d->points[j].n_bits; k++)
                d->points[j].bits[k].alarm.active = false;
        }
    }
    pthread_mutex_lock(&mb->health_lock);
    mb->n_offline = 0;
    for (size_t i = 0; i < mb->n_devices; i++) {
        mb->devices[i].status = MB_DEV_UNKNOWN;
        mb->devices[i].offline_reason[0] = '\0';
    }
    mb->health = CCGW_HEALTH_OK;
    pthread_mutex_unlock(&mb->health_lock);
    ccgw_instance_health(mb->inst, CCGW_HEALTH_OK, NULL);

    int rc = mb_links_start(mb);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < mb->n_links; i++) {
        const mb_link_t *l = &mb->links[i];
        CCGW_DEBUG(mb->inst, "modbus: worker for %s polls %zu device%s", l->name, l->n_devices,
                   l->n_devices == 1 ? "" : "s");
    }
    return CCGW_OK;
}

/* Thread: instance thread. Returns once every worker has been joined. */
static void mb_stop(void *state)
{
    mb_instance_t *mb = state;

    mb_links_stop(mb);
    /* The core marks the devices offline ("instance stopped") after this. */
    CCGW_INFO(mb->inst, "modbus: stopped");
}

/* Thread: instance thread. */
static void mb_destroy(void *state)
{
    mb_instance_t *mb = state;
    mb_free_config(mb);
    if (mb->health_init)
        pthread_mutex_destroy(&mb->health_lock);
    free(mb);
}

/* Thread: instance thread. Validates and converts, then hands the write to
 * the device's link worker; never blocks. */
static void mb_command(void *state, ccgw_cmd_t *cmd)
{
    mb_instance_t *mb = state;
    ccgw_device_t *cd = ccgw_cmd_device(cmd);
    mb_device_t *d = cd ? ccgw_device_user(cd) : NULL;
    const char *name = ccgw_cmd_name(cmd);
    const ccgw_config_t *args = ccgw_cmd_args(cmd);
    mb_point_t *p = NULL;
    const ccgw_config_t *value = NULL;

    if (!d || d->mb != mb) {
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_UNKNOWN_DEVICE, "not a device of this instance");
        return;
    }
    if (strcmp(name, "write") == 0) {
        const char *pname = ccgw_config_string(args, "point", NULL);
        p = mb_find_point(d, pname);
        if (!p) {
            ccgw_cmd_reply_error(cmd, CCGW_CMD_E_BAD_ARGUMENTS, "device %s has no point '%s'",
                                 d->id, pname ? pname : "");
            return;
        }
        if (!p->writable) {
            ccgw_cmd_reply_error(cmd, CCGW_CMD_E_BAD_ARGUMENTS, "point '%s' is not writable",
                                 p->name);
            return;
        }
        value = ccgw_config_get(args, "value");
    } else {
        const mb_alias_t *a = NULL;
        for (size_t i = 0; i < d->n_aliases && !a; i++) {
            if (strcmp(d->aliases[i].name, name) == 0)
                a = &d->aliases[i];
        }
        if (!a) {
            ccgw_cmd_reply_error(cmd, CCGW_CMD_E_UNKNOWN_COMMAND, "device %s has no command %s",
                                 d->id, name);
            return;
        }
        p = a->point;
        value = a->value ? a->value : ccgw_config_get(args, "value");
    }
    if (!value) {
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_BAD_ARGUMENTS, "missing value for point '%s'",
                             p->name);
        return;
    }

    mb_write_t *w = calloc(1, sizeof *w);
    if (!w) {
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_DEVICE_ERROR, "out of memory");
        return;
    }
    char err[256];
    if (mb_point_value(p, value, w, err, sizeof err) != 0) {
        free(w);
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_BAD_ARGUMENTS, "%s", err);
        return;
    }
    w->dev = d;
    w->point = p;
    w->cmd = cmd;
    int rc = mb_link_enqueue(d->link, w);
    if (rc == CCGW_EFULL) {
        free(w);
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_BUSY, "%d writes already pending on %s",
                             MB_WRITE_QUEUE_LEN, d->link->name);
    } else if (rc < 0) {
        free(w);
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_DEVICE_ERROR, "instance not running");
    }
}

CCGW_PLUGIN_DEFINE(
    .name = "modbus",
    .version = MB_PLUGIN_VERSION,
    .description = "Modbus TCP/RTU devices (UPS, air conditioners, environment sensors)",
    .options = mb_options,
    .commands = mb_commands,
    .check = mb_check,
    .create = mb_create,
    .start = mb_start,
    .stop = mb_stop,
    .destroy = mb_destroy,
    .command = mb_command);
