/*
 * nut - UPS over Network UPS Tools (upsd, TCP 3493) for ccgw.
 *
 * Reads every configured UPS of every configured upsd with `LIST VAR`,
 * publishes the `ups` class (status and raw flags as state, the standard
 * NUT variables as telemetry with SenML units), raises and clears the
 * on_battery / low_battery / replace_battery / overload alarms, emits
 * power.lost / power.restored, and runs allowed instant commands.
 * docs/plugins/nut.md is the user documentation.
 *
 * Files: nut_proto.c (pure protocol and mapping helpers, unit-tested),
 * nut_config.c (option tables, check, build), nut_server.c (one worker
 * thread per upsd), this file (descriptor, lifecycle, commands). Threads:
 * see nut_plugin.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nut_plugin.h"

#define NUT_PLUGIN_VERSION "1.0.0"

/* Thread: instance thread. */
static int nut_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    nut_t *nut = calloc(1, sizeof *nut);
    if (!nut)
        return CCGW_ENOMEM;
    nut->inst = inst;
    if (pthread_mutex_init(&nut->lock, NULL) != 0) {
        free(nut);
        return CCGW_ENOMEM;
    }
    int rc = nut_build(nut, options);
    if (rc < 0)
        goto fail;
    for (size_t i = 0; i < nut->n_servers; i++) {
        nut_server_t *s = &nut->servers[i];
        for (size_t j = 0; j < s->n_ups; j++) {
            nut_ups_t *u = &s->upses[j];
            u->dev = ccgw_device_add(inst, "ups", u->id, u);
            if (!u->dev) {
                rc = CCGW_EEXIST;
                goto fail;
            }
        }
    }
    CCGW_INFO(inst, "nut: %zu UPS on %zu upsd server%s", nut->n_ups, nut->n_servers,
              nut->n_servers == 1 ? "" : "s");
    *state = nut;
    return CCGW_OK;

fail:
    nut_free_config(nut);
    pthread_mutex_destroy(&nut->lock);
    free(nut);
    return rc;
}

/* Thread: instance thread. */
static int nut_start(void *state)
{
    nut_t *nut = state;

    /* A fresh start re-evaluates every alarm and power state. */
    pthread_mutex_lock(&nut->lock);
    for (size_t i = 0; i < nut->n_servers; i++) {
        nut_server_t *s = &nut->servers[i];
        s->auth_problem[0] = '\0';
        for (size_t j = 0; j < s->n_ups; j++) {
            nut_ups_t *u = &s->upses[j];
            u->have_flags = false;
            u->alarms_known = false;
            u->alarms_active = 0;
            u->on_battery_since = 0;
            u->online = -1;
            u->reason[0] = '\0';
            u->offline = false;
        }
    }
    nut->health = CCGW_HEALTH_OK;
    nut->health_reason[0] = '\0';
    pthread_mutex_unlock(&nut->lock);
    ccgw_instance_health(nut->inst, CCGW_HEALTH_OK, NULL);
    return nut_servers_start(nut);
}

/* Thread: instance thread. Returns once every worker has been joined. */
static void nut_stop(void *state)
{
    nut_t *nut = state;
    nut_servers_stop(nut);
    CCGW_INFO(nut->inst, "nut: stopped");
}

/* Thread: instance thread. */
static void nut_destroy(void *state)
{
    nut_t *nut = state;
    nut_free_config(nut);
    pthread_mutex_destroy(&nut->lock);
    free(nut);
}

static bool allowed(const nut_ups_t *u, const char *command)
{
    for (size_t i = 0; i < u->n_allowed; i++) {
        if (strcmp(u->allowed[i], command) == 0)
            return true;
    }
    return false;
}

/* Thread: instance thread. Checks the allow-list and hands the command to
 * the server's worker; never blocks. */
static void nut_command(void *state, ccgw_cmd_t *cmd)
{
    nut_t *nut = state;
    ccgw_device_t *cd = ccgw_cmd_device(cmd);
    nut_ups_t *u = cd ? ccgw_device_user(cd) : NULL;
    const char *name = ccgw_cmd_name(cmd);
    const char *command;

    if (!u || u->srv->nut != nut) {
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_UNKNOWN_DEVICE, "not a device of this instance");
        return;
    }
    if (strcmp(name, "ups.test_battery") == 0) {
        command = "test.battery.start";
    } else if (strcmp(name, "ups.instcmd") == 0) {
        command = ccgw_config_string(ccgw_cmd_args(cmd), "command", "");
        if (!nut_name_ok(command) || strlen(command) > NUT_CMD_LEN) {
            ccgw_cmd_reply_error(cmd, CCGW_CMD_E_BAD_ARGUMENTS,
                                 "'command' must be a NUT command name ([A-Za-z0-9_.-]+)");
            return;
        }
    } else {
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_UNKNOWN_COMMAND, "no command %s", name);
        return;
    }
    if (!allowed(u, command)) {
        CCGW_INFO(nut->inst, "nut: %s on %s refused: not in allowed_commands", command, u->id);
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_FORBIDDEN,
                             "instant command '%s' is not in allowed_commands of UPS %s", command,
                             u->id);
        return;
    }
    nut_job_t *job = calloc(1, sizeof *job);
    if (!job) {
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_DEVICE_ERROR, "out of memory");
        return;
    }
    job->ups = u;
    job->cmd = cmd;
    snprintf(job->command, sizeof job->command, "%s", command);
    int rc = nut_server_enqueue(u->srv, job);
    if (rc == CCGW_EFULL) {
        free(job);
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_BUSY, "%d commands already pending on upsd %s",
                             NUT_QUEUE_LEN, u->srv->name);
    } else if (rc < 0) {
        free(job);
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_DEVICE_ERROR, "instance not running");
    }
}

CCGW_PLUGIN_DEFINE(
    .name = "nut",
    .version = NUT_PLUGIN_VERSION,
    .description = "UPS over Network UPS Tools (upsd): status, telemetry, alarms, instant commands",
    .options = nut_options,
    .commands = nut_commands,
    .check = nut_check,
    .create = nut_create,
    .start = nut_start,
    .stop = nut_stop,
    .destroy = nut_destroy,
    .command = nut_command);
