/*
 * isapi-door - Hikvision ISAPI face-recognition / access-control terminals
 * for ccgw: the `door` class.
 *
 * Per terminal: the long-lived alertStream (HTTP Digest, multipart/mixed
 * parsed incrementally, image parts skipped, heartbeats, reconnect with
 * backoff, a silent stream declared dead after heartbeat_timeout_s), the
 * access-control events mapped onto the door class with a replay-proof
 * event id (serialNo), and door.unlock / door.lock / door.mode through
 * PUT /ISAPI/AccessControl/RemoteControl/door/N with the ResponseStatus
 * checked. docs/plugins/isapi-door.md is the user documentation.
 *
 * Files: isapi_stream.c (multipart parser) and isapi_event.c (mapping, XML)
 * are pure and unit-tested; isapi_config.c (options, check, build);
 * isapi_term.c (one worker thread per terminal); this file (descriptor,
 * lifecycle, commands). Threads: see isapi_plugin.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "isapi_plugin.h"

#define ISAPI_PLUGIN_VERSION "1.0.0"

static int isapi_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return CCGW_ENOMEM;
    isapi_t *d = calloc(1, sizeof *d);
    if (!d) {
        curl_global_cleanup();
        return CCGW_ENOMEM;
    }
    d->inst = inst;
    if (pthread_mutex_init(&d->lock, NULL) != 0) {
        free(d);
        curl_global_cleanup();
        return CCGW_ENOMEM;
    }
    int rc = isapi_build(d, options);
    if (rc < 0)
        goto fail;
    for (size_t i = 0; i < d->n_terms; i++) {
        isapi_term_t *t = &d->terms[i];
        t->dev = ccgw_device_add(inst, "door", t->id, t);
        if (!t->dev) {
            rc = CCGW_EEXIST;
            goto fail;
        }
    }
    CCGW_INFO(inst, "isapi-door: %zu terminal%s", d->n_terms, d->n_terms == 1 ? "" : "s");
    *state = d;
    return CCGW_OK;
fail:
    isapi_free_config(d);
    pthread_mutex_destroy(&d->lock);
    free(d);
    curl_global_cleanup();
    return rc;
}

static int isapi_start(void *state)
{
    isapi_t *d = state;
    pthread_mutex_lock(&d->lock);
    d->health = CCGW_HEALTH_OK;
    d->health_reason[0] = '\0';
    for (size_t i = 0; i < d->n_terms; i++)
        d->terms[i].offline_h = false;
    pthread_mutex_unlock(&d->lock);
    ccgw_instance_health(d->inst, CCGW_HEALTH_OK, NULL);
    return isapi_terms_start(d);
}

static void isapi_stop(void *state)
{
    isapi_t *d = state;
    isapi_terms_stop(d);
    CCGW_INFO(d->inst, "isapi-door: stopped");
}

static void isapi_destroy(void *state)
{
    isapi_t *d = state;
    isapi_free_config(d);
    pthread_mutex_destroy(&d->lock);
    free(d);
    curl_global_cleanup();
}

/* Instance thread: maps the command, enqueues it on the terminal's worker. */
static void isapi_command(void *state, ccgw_cmd_t *cmd)
{
    isapi_t *d = state;
    ccgw_device_t *dev = ccgw_cmd_device(cmd);
    isapi_term_t *t = dev ? ccgw_device_user(dev) : NULL;
    const char *name = ccgw_cmd_name(cmd);
    const ccgw_config_t *args = ccgw_cmd_args(cmd);
    if (!t || t->isapi != d) {
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_UNKNOWN_DEVICE, "not a device of this instance");
        return;
    }
    isapi_job_t *job = calloc(1, sizeof *job);
    if (!job) {
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_DEVICE_ERROR, "out of memory");
        return;
    }
    job->cmd = cmd;
    snprintf(job->what, sizeof job->what, "%s", name);
    const char *reason = ccgw_config_string(args, "reason", NULL);
    if (strcmp(name, "door.unlock") == 0) {
        if (!reason || !*reason) {
            free(job);
            ccgw_cmd_reply_error(cmd, CCGW_CMD_E_BAD_ARGUMENTS, "'reason' is required to unlock a door");
            return;
        }
        snprintf(job->isapi_cmd, sizeof job->isapi_cmd, "open");
        job->duration_s = (int)ccgw_config_int(args, "duration_s", 0);
    } else if (strcmp(name, "door.lock") == 0) {
        snprintf(job->isapi_cmd, sizeof job->isapi_cmd, "close");
    } else if (strcmp(name, "door.mode") == 0) {
        const char *mode = ccgw_config_string(args, "mode", "");
        const char *c = strcmp(mode, "always_open") == 0     ? "alwaysOpen"
                        : strcmp(mode, "always_closed") == 0 ? "alwaysClose"
                        : strcmp(mode, "normal") == 0        ? "close"
                                                             : NULL;
        if (!c) {
            free(job);
            ccgw_cmd_reply_error(cmd, CCGW_CMD_E_BAD_ARGUMENTS, "unknown mode '%s'", mode);
            return;
        }
        snprintf(job->isapi_cmd, sizeof job->isapi_cmd, "%s", c);
    } else {
        free(job);
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_UNKNOWN_COMMAND, "no command %s", name);
        return;
    }
    CCGW_INFO(d->inst, "isapi-door: %s on %s requested by %s%s%s", name, t->id, ccgw_cmd_origin(cmd),
              reason ? ", reason: " : "", reason ? reason : "");
    int rc = isapi_term_enqueue(t, job);
    if (rc == CCGW_EFULL) {
        free(job);
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_BUSY, "%d commands already pending on terminal %s",
                             ISAPI_QUEUE_LEN, t->id);
    } else if (rc < 0) {
        free(job);
        ccgw_cmd_reply_error(cmd, CCGW_CMD_E_DEVICE_ERROR, "instance not running");
    }
}

CCGW_PLUGIN_DEFINE(
    .name = "isapi-door",
    .version = ISAPI_PLUGIN_VERSION,
    .description = "Hikvision ISAPI door terminals: alertStream access events, remote door control",
    .options = isapi_options,
    .commands = isapi_commands,
    .check = isapi_check,
    .create = isapi_create,
    .start = isapi_start,
    .stop = isapi_stop,
    .destroy = isapi_destroy,
    .command = isapi_command);
