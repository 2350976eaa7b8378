/*
 * nut_config.c - the nut plugin's option tables, check() and building the
 * instance state from validated options. docs/plugins/nut.md documents
 * every option; keep the two in step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nut_plugin.h"

/* The default allow-list when `allowed_commands` is absent. */
static const char *const nut_default_allowed[] = {"test.battery.start", "test.battery.stop"};

static const ccgw_option_t nut_ups_options[] = {
    {.key = "name", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1, .max = 64,
     .doc = "The UPS name on upsd (NAME in NAME@host; the section name in ups.conf)."},
    {.key = "id", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1, .max = 64,
     .doc = "Device id in the topic tree ([a-z0-9_.-]+, unique per class in the gateway); "
            "default: the UPS name."},
    {.key = "allowed_commands", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_RANGE, .min = 0, .max = 64,
     .doc = "NUT instant commands that ups.instcmd may run on this UPS; others answer "
            "forbidden. Absent: [test.battery.start, test.battery.stop]; [] forbids all."},
    {.key = "variables", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_RANGE, .min = 0, .max = 64,
     .doc = "More NUT variables to publish as telemetry, as they are (numbers as numbers, "
            "other values as strings, no unit), e.g. [ups.realpower, battery.temperature]."},
    CCGW_OPTION_END,
};

static const ccgw_option_t nut_server_options[] = {
    {.key = "host", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .def = "127.0.0.1",
     .min = 1, .max = 253, .doc = "upsd host name or address."},
    {.key = "port", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "3493", .min = 1,
     .max = 65535, .doc = "upsd TCP port."},
    {.key = "username", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_RANGE, .min = 1,
     .max = 64,
     .doc = "upsd.users user to log in as (USERNAME/PASSWORD); needed for instant commands. "
            "Absent: no login (read-only)."},
    {.key = "password", .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_RANGE | CCGW_OPT_F_SECRET, .min = 1, .max = 256,
     .doc = "Password of `username`; give it with !env or !file, never inline."},
    {.key = "poll_interval_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "5000",
     .min = 100, .max = 3600000,
     .doc = "How often every UPS of this server is read (one LIST VAR per UPS); also the "
            "reconnect interval."},
    {.key = "timeout_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "3000",
     .min = 100, .max = 60000,
     .doc = "How long to wait for upsd to accept a connection or answer a request."},
    {.key = "upses", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE, .min = 1, .max = 256,
     .children = nut_ups_options, .doc = "The UPSes served by this upsd."},
    CCGW_OPTION_END,
};

const ccgw_option_t nut_options[] = {
    {.key = "servers", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE, .min = 1, .max = 64,
     .children = nut_server_options,
     .doc = "The upsd servers; each has its own connection and worker thread."},
    CCGW_OPTION_END,
};

static const ccgw_option_t nut_instcmd_args[] = {
    {.key = "command", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1, .max = NUT_CMD_LEN,
     .doc = "The NUT instant command, e.g. test.battery.start; it must be in the UPS's "
            "allowed_commands."},
    CCGW_OPTION_END,
};

const ccgw_command_spec_t nut_commands[] = {
    {.name = "ups.instcmd", .args = nut_instcmd_args,
     .doc = "Run a NUT instant command (INSTCMD) listed in the UPS's allowed_commands. "
            "Replies data {ups, command}; device_error with upsd's ERR code otherwise."},
    {.name = "ups.test_battery",
     .doc = "Start a battery test: the instant command test.battery.start (which must be "
            "allowed)."},
    {0},
};

/* The device id of a UPS item: `id`, else the UPS name. */
static const char *ups_id(const ccgw_config_t *u)
{
    const char *id = ccgw_config_string(u, "id", NULL);
    return id ? id : ccgw_config_string(u, "name", "");
}

int nut_check(const ccgw_config_t *options)
{
    int errors = 0;
    const ccgw_config_t *servers = ccgw_config_get(options, "servers");
    size_t ns = ccgw_config_count(servers);
    size_t total = 0;
    for (size_t i = 0; i < ns; i++)
        total += ccgw_config_count(ccgw_config_get(ccgw_config_at(servers, i), "upses"));
    const char **ids = calloc(total ? total : 1, sizeof *ids);
    const ccgw_config_t **id_nodes = calloc(total ? total : 1, sizeof *id_nodes);
    size_t nids = 0;
    if (!ids || !id_nodes) {
        free(ids);
        free(id_nodes);
        return 1;
    }

    for (size_t i = 0; i < ns; i++) {
        const ccgw_config_t *s = ccgw_config_at(servers, i);
        const ccgw_config_t *user = ccgw_config_get(s, "username");
        const ccgw_config_t *pass = ccgw_config_get(s, "password");
        if (user && !pass)
            errors += ccgw_config_error(user, "'username' needs a 'password' too") != 0;
        if (pass && !user)
            errors += ccgw_config_error(pass, "'password' needs a 'username' too") != 0;
        char q[600];
        if (user && nut_quote(ccgw_config_text(user), q, sizeof q) < 0)
            errors += ccgw_config_error(user, "'username' must not hold control characters") != 0;
        if (pass && nut_quote(ccgw_config_text(pass), q, sizeof q) < 0)
            errors += ccgw_config_error(pass, "'password' must not hold control characters") != 0;

        const ccgw_config_t *upses = ccgw_config_get(s, "upses");
        for (size_t j = 0; j < ccgw_config_count(upses); j++) {
            const ccgw_config_t *u = ccgw_config_at(upses, j);
            const ccgw_config_t *name = ccgw_config_get(u, "name");
            const ccgw_config_t *idn = ccgw_config_get(u, "id");
            const char *nm = ccgw_config_text(name);
            if (!nut_name_ok(nm))
                errors += ccgw_config_error(name, "UPS name '%s' must match [A-Za-z0-9_.-]+",
                                            nm ? nm : "") != 0;
            const char *id = ups_id(u);
            if (!nut_device_id_ok(id)) {
                if (idn)
                    errors += ccgw_config_error(idn, "device id '%s' must match [a-z0-9_.-]+", id) != 0;
                else
                    errors += ccgw_config_error(name,
                                                "UPS name '%s' is not a valid device id "
                                                "([a-z0-9_.-]+): set 'id'", id) != 0;
            } else {
                const ccgw_config_t *at = idn ? idn : name;
                for (size_t k = 0; k < nids; k++) {
                    if (strcmp(ids[k], id) == 0) {
                        char where[128];
                        errors += ccgw_config_error(at, "duplicate device id '%s' (first at %s)", id,
                                                    ccgw_config_where(id_nodes[k], where, sizeof where)) != 0;
                        break;
                    }
                }
                ids[nids] = id;
                id_nodes[nids++] = at;
            }
            const char *lists[] = {"allowed_commands", "variables"};
            for (size_t l = 0; l < 2; l++) {
                const ccgw_config_t *list = ccgw_config_get(u, lists[l]);
                for (size_t k = 0; k < ccgw_config_count(list); k++) {
                    const ccgw_config_t *it = ccgw_config_at(list, k);
                    const char *t = ccgw_config_text(it);
                    if (!nut_name_ok(t) || strlen(t) > NUT_CMD_LEN)
                        errors += ccgw_config_error(it, "'%s' is not a NUT %s name ([A-Za-z0-9_.-]+, "
                                                    "at most %d characters)", t ? t : "",
                                                    l == 0 ? "command" : "variable", NUT_CMD_LEN) != 0;
                }
            }
        }
    }
    free(ids);
    free(id_nodes);
    return errors;
}

static const char **string_list(const ccgw_config_t *list, size_t *n)
{
    size_t c = ccgw_config_count(list);
    *n = 0;
    const char **out = calloc(c ? c : 1, sizeof *out);
    if (!out)
        return NULL;
    for (size_t i = 0; i < c; i++) {
        const char *t = ccgw_config_text(ccgw_config_at(list, i));
        if (t)
            out[(*n)++] = t;
    }
    return out;
}

int nut_build(nut_t *nut, const ccgw_config_t *options)
{
    const ccgw_config_t *servers = ccgw_config_get(options, "servers");
    nut->n_servers = ccgw_config_count(servers);
    nut->servers = calloc(nut->n_servers ? nut->n_servers : 1, sizeof *nut->servers);
    if (!nut->servers)
        return CCGW_ENOMEM;
    for (size_t i = 0; i < nut->n_servers; i++) {
        nut_server_t *s = &nut->servers[i];
        s->fd = -1;
        s->wake_fd = -1;
    }
    for (size_t i = 0; i < nut->n_servers; i++) {
        const ccgw_config_t *sc = ccgw_config_at(servers, i);
        nut_server_t *s = &nut->servers[i];
        s->nut = nut;
        s->host = ccgw_config_string(sc, "host", "127.0.0.1");
        s->port = (int)ccgw_config_int(sc, "port", 3493);
        s->username = ccgw_config_string(sc, "username", NULL);
        s->password = ccgw_config_string(sc, "password", NULL);
        s->poll_ms = (uint64_t)ccgw_config_int(sc, "poll_interval_ms", 5000);
        s->timeout_ms = (int)ccgw_config_int(sc, "timeout_ms", 3000);
        if (strchr(s->host, ':'))
            snprintf(s->name, sizeof s->name, "[%s]:%d", s->host, s->port);
        else
            snprintf(s->name, sizeof s->name, "%s:%d", s->host, s->port);
        if (pthread_mutex_init(&s->lock, NULL) != 0)
            return CCGW_ENOMEM;
        s->lock_init = true;

        const ccgw_config_t *upses = ccgw_config_get(sc, "upses");
        s->n_ups = ccgw_config_count(upses);
        s->upses = calloc(s->n_ups ? s->n_ups : 1, sizeof *s->upses);
        if (!s->upses)
            return CCGW_ENOMEM;
        for (size_t j = 0; j < s->n_ups; j++) {
            const ccgw_config_t *uc = ccgw_config_at(upses, j);
            nut_ups_t *u = &s->upses[j];
            u->srv = s;
            u->name = ccgw_config_string(uc, "name", "");
            u->id = ups_id(uc);
            u->online = -1;
            const ccgw_config_t *allowed = ccgw_config_get(uc, "allowed_commands");
            if (allowed) {
                u->allowed = string_list(allowed, &u->n_allowed);
            } else {
                u->n_allowed = sizeof nut_default_allowed / sizeof nut_default_allowed[0];
                u->allowed = calloc(u->n_allowed, sizeof *u->allowed);
                if (u->allowed)
                    memcpy(u->allowed, nut_default_allowed, sizeof nut_default_allowed);
            }
            u->extra = string_list(ccgw_config_get(uc, "variables"), &u->n_extra);
            u->extra_val = calloc(u->n_extra ? u->n_extra : 1, sizeof *u->extra_val);
            u->extra_have = calloc(u->n_extra ? u->n_extra : 1, sizeof *u->extra_have);
            if (!u->allowed || !u->extra || !u->extra_val || !u->extra_have)
                return CCGW_ENOMEM;
            nut->n_ups++;
        }
    }
    return CCGW_OK;
}

void nut_free_config(nut_t *nut)
{
    for (size_t i = 0; nut->servers && i < nut->n_servers; i++) {
        nut_server_t *s = &nut->servers[i];
        for (size_t j = 0; s->upses && j < s->n_ups; j++) {
            nut_ups_t *u = &s->upses[j];
            free(u->allowed);
            free(u->extra);
            free(u->extra_val);
            free(u->extra_have);
        }
        free(s->upses);
        if (s->lock_init)
            pthread_mutex_destroy(&s->lock);
    }
    free(nut->servers);
    nut->servers = NULL;
    nut->n_servers = 0;
}
