/*
 * ccgw/command.h - commands from MQTT, WebSocket and HTTP, and their replies.
 *
 * A plugin declares the commands it takes (name, arguments as an option
 * table). The core routes `.../{class}/{device}/cmd/{name}` to the owning
 * instance, answers unknown_device / unknown_command / bad_arguments itself,
 * and calls the plugin's `command` callback on the instance thread with the
 * arguments validated (defaults filled in). The plugin replies exactly once,
 * from any thread, now or later; if it has not replied when the instance's
 * command timeout expires the core answers `timeout` and the late reply is
 * dropped (the plugin must still make it, so the handle is freed).
 *
 * At stop: commands still open after the plugin's stop() returns are
 * answered `device_error` ("instance stopped"); a handle the plugin holds
 * stays valid until its destroy() returns. A second or late reply returns
 * CCGW_ESTATE. An error code that is not [a-z_]+ becomes device_error.
 */
#ifndef CCGW_COMMAND_H
#define CCGW_COMMAND_H

#include "ccgw/types.h"
#include "ccgw/config.h"
#include "ccgw/values.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes of the reply contract (docs/topics.md). */
#define CCGW_CMD_E_UNKNOWN_DEVICE "unknown_device"
#define CCGW_CMD_E_UNKNOWN_COMMAND "unknown_command"
#define CCGW_CMD_E_BAD_ARGUMENTS "bad_arguments"
#define CCGW_CMD_E_DEVICE_ERROR "device_error"
#define CCGW_CMD_E_TIMEOUT "timeout"
#define CCGW_CMD_E_FORBIDDEN "forbidden"
#define CCGW_CMD_E_BUSY "busy"

/* One command a device takes. Frozen for ABI major 1: ABI 1.1 gave the
 * first reserved pointer's bytes to min_role and flags (same size and
 * offsets; a 1.0 plugin's zeroed slot reads as "defaults"). */
typedef struct ccgw_command_spec {
    const char *name;           /* [a-z0-9_.]+, e.g. "write", "door.unlock"; NULL ends a table */
    const ccgw_option_t *args;  /* the JSON arguments object; NULL = no arguments */
    const char *doc;
    int min_role;               /* ABI 1.1: lowest ccgw_role_t that may send it over WebSocket/HTTP
                                 * (0 = CCGW_ROLE_OPERATOR); the core refuses others `forbidden` */
    unsigned flags;             /* ABI 1.1: 0 (reserved for CCGW_CMD_F_*) */
    void *reserved[1];
} ccgw_command_spec_t;

/* What the command is. Valid until the reply is made. */
const char *ccgw_cmd_name(const ccgw_cmd_t *cmd);
ccgw_device_t *ccgw_cmd_device(const ccgw_cmd_t *cmd);
const ccgw_config_t *ccgw_cmd_args(const ccgw_cmd_t *cmd); /* a mapping, never NULL */
/* Who sent it (ABI 1.1), for the plugin's own log and events:
 * "ws:<token name>", "http:<token name>", "mqtt" or "core". Never NULL. */
const char *ccgw_cmd_origin(const ccgw_cmd_t *cmd);

/* Reply. Exactly once per command; thread-safe; the handle is invalid after.
 * `data` becomes the reply's "data" object. */
int ccgw_cmd_reply_ok(ccgw_cmd_t *cmd, const ccgw_value_t *data, size_t n);
/* `code` is one of CCGW_CMD_E_* (or a plugin-specific [a-z_]+ code). */
int ccgw_cmd_reply_error(ccgw_cmd_t *cmd, const char *code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif /* CCGW_COMMAND_H */
