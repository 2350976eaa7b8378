/*
 * isapi_config.c - option tables, check() and building the instance state.
 * docs/plugins/isapi-door.md documents every option; keep both in step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isapi_plugin.h"

static const ccgw_option_t term_options[] = {
    {.key = "id", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1, .max = 64,
     .doc = "Device id of the door in the topic tree ([a-z0-9_.-]+, unique per class)."},
    {.key = "host", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1, .max = 253, .doc = "Terminal host name or address."},
    {.key = "port", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "80", .min = 1,
     .max = 65535, .doc = "Terminal HTTP(S) port."},
    {.key = "tls", .type = CCGW_OPT_BOOL, .def = "false", .doc = "Use HTTPS."},
    {.key = "tls_verify", .type = CCGW_OPT_BOOL, .def = "true",
     .doc = "Verify the terminal's certificate (HTTPS only); terminals usually ship a "
            "self-signed one."},
    {.key = "username", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .def = "admin",
     .min = 1, .max = 64, .doc = "ISAPI user (HTTP Digest authentication)."},
    {.key = "password", .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE | CCGW_OPT_F_SECRET, .min = 1, .max = 128,
     .doc = "Password of `username`; give it with !env or !file, never inline."},
    {.key = "door", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1", .min = 1,
     .max = 64,
     .doc = "Door number N of PUT /ISAPI/AccessControl/RemoteControl/door/N (1 on a "
            "single-door face terminal)."},
    {.key = "heartbeat_timeout_s", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "60",
     .min = 1, .max = 3600,
     .doc = "An alertStream silent this long (no part, no heartbeat) is dead: the door goes "
            "offline and the stream is reopened."},
    {.key = "timeout_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "5000",
     .min = 100, .max = 60000,
     .doc = "Connect timeout, and the time a door command may take."},
    {.key = "reconnect_min_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "500",
     .min = 50, .max = 600000, .doc = "First reconnect delay; doubles on each failure."},
    {.key = "reconnect_max_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "30000",
     .min = 50, .max = 3600000, .doc = "Longest reconnect delay."},
    {.key = "max_part_bytes", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "65536",
     .min = 1024, .max = 4194304,
     .doc = "Largest JSON/XML part kept; larger text parts are dropped (counted). Image parts "
            "are never kept."},
    {.key = "dedup_window", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "512",
     .min = 16, .max = ISAPI_SEEN_MAX,
     .doc = "How many recent event ids (serialNo) are remembered, so events a terminal "
            "replays after a reconnect are not published twice."},
    CCGW_OPTION_END,
};

const ccgw_option_t isapi_options[] = {
    {.key = "terminals", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE, .min = 1, .max = 1024,
     .children = term_options,
     .doc = "The door terminals; each is one `door` device with its own worker thread."},
    CCGW_OPTION_END,
};

static const ccgw_option_t unlock_args[] = {
    {.key = "reason", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1, .max = 256, .doc = "Why the door is opened remotely (required; logged)."},
    {.key = "duration_s", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 3600,
     .doc = "Relock (cmd close) after this many seconds; absent: the terminal's own open "
            "duration."},
    CCGW_OPTION_END,
};

static const ccgw_option_t lock_args[] = {
    {.key = "reason", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 256,
     .doc = "Optional note, logged."},
    CCGW_OPTION_END,
};

static const char *const mode_choices[] = {"normal", "always_open", "always_closed", NULL};

static const ccgw_option_t mode_args[] = {
    {.key = "mode", .type = CCGW_OPT_ENUM, .flags = CCGW_OPT_F_REQUIRED, .choices = mode_choices,
     .doc = "normal (cmd close: controlled), always_open (alwaysOpen), always_closed "
            "(alwaysClose)."},
    {.key = "reason", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 256,
     .doc = "Optional note, logged."},
    CCGW_OPTION_END,
};

const ccgw_command_spec_t isapi_commands[] = {
    {.name = "door.unlock", .args = unlock_args,
     .doc = "Open the door remotely (RemoteControlDoor cmd open). Needs a reason; operator or admin.",
     .min_role = CCGW_ROLE_OPERATOR},
    {.name = "door.lock", .args = lock_args,
     .doc = "Close and lock the door (RemoteControlDoor cmd close)."},
    {.name = "door.mode", .args = mode_args,
     .doc = "Set the door mode: normal, always_open or always_closed. Admin only (always_open leaves "
            "the door unlocked).",
     .min_role = CCGW_ROLE_ADMIN},
    {0},
};

int isapi_check(const ccgw_config_t *options)
{
    int errors = 0;
    const ccgw_config_t *terms = ccgw_config_get(options, "terminals");
    size_t n = ccgw_config_count(terms);
    for (size_t i = 0; i < n; i++) {
        const ccgw_config_t *t = ccgw_config_at(terms, i);
        const char *id = ccgw_config_string(t, "id", "");
        for (size_t j = 0; j < i; j++) {
            if (strcmp(id, ccgw_config_string(ccgw_config_at(terms, j), "id", "")) == 0) {
                errors += ccgw_config_error(ccgw_config_get(t, "id"), "duplicate terminal id '%s'",
                                            id) != 0;
                break;
            }
        }
        if (ccgw_config_int(t, "reconnect_min_ms", 500) > ccgw_config_int(t, "reconnect_max_ms", 30000))
            errors += ccgw_config_error(ccgw_config_get(t, "reconnect_min_ms"),
                                        "'reconnect_min_ms' must not exceed 'reconnect_max_ms'") != 0;
        const char *host = ccgw_config_string(t, "host", "");
        if (strpbrk(host, "/@?# \t\r\n"))
            errors += ccgw_config_error(ccgw_config_get(t, "host"),
                                        "'host' is a host name or address, not a URL") != 0;
    }
    return errors;
}

int isapi_build(isapi_t *d, const ccgw_config_t *options)
{
    const ccgw_config_t *terms = ccgw_config_get(options, "terminals");
    d->n_terms = ccgw_config_count(terms);
    d->terms = calloc(d->n_terms ? d->n_terms : 1, sizeof *d->terms);
    if (!d->terms)
        return CCGW_ENOMEM;
    for (size_t i = 0; i < d->n_terms; i++) {
        const ccgw_config_t *c = ccgw_config_at(terms, i);
        isapi_term_t *t = &d->terms[i];
        t->isapi = d;
        t->wake_fd = -1;
        t->id = ccgw_config_string(c, "id", "");
        t->host = ccgw_config_string(c, "host", "");
        t->port = (int)ccgw_config_int(c, "port", 80);
        t->tls = ccgw_config_bool(c, "tls", false);
        t->tls_verify = ccgw_config_bool(c, "tls_verify", true);
        t->username = ccgw_config_string(c, "username", "admin");
        t->password = ccgw_config_string(c, "password", "");
        t->door = (int)ccgw_config_int(c, "door", 1);
        t->heartbeat_timeout_s = (int)ccgw_config_int(c, "heartbeat_timeout_s", 60);
        t->timeout_ms = (int)ccgw_config_int(c, "timeout_ms", 5000);
        t->backoff_min_ms = (int)ccgw_config_int(c, "reconnect_min_ms", 500);
        t->backoff_max_ms = (int)ccgw_config_int(c, "reconnect_max_ms", 30000);
        t->max_part = (size_t)ccgw_config_int(c, "max_part_bytes", 65536);
        t->dedup = (size_t)ccgw_config_int(c, "dedup_window", 512);
        bool v6 = strchr(t->host, ':') != NULL;
        snprintf(t->base_url, sizeof t->base_url, "%s://%s%s%s:%d", t->tls ? "https" : "http",
                 v6 ? "[" : "", t->host, v6 ? "]" : "", t->port);
        if (pthread_mutex_init(&t->lock, NULL) != 0)
            return CCGW_ENOMEM;
        t->lock_init = true;
        if (isapi_seen_init(&t->seen, t->dedup) != 0)
            return CCGW_ENOMEM;
    }
    return CCGW_OK;
}

void isapi_free_config(isapi_t *d)
{
    for (size_t i = 0; d->terms && i < d->n_terms; i++) {
        isapi_term_t *t = &d->terms[i];
        isapi_seen_free(&t->seen);
        if (t->lock_init)
            pthread_mutex_destroy(&t->lock);
    }
    free(d->terms);
    d->terms = NULL;
    d->n_terms = 0;
}
