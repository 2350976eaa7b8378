/*
 * command_args - a command's JSON arguments (outside input: MQTT, WebSocket,
 * HTTP) parsed with jansson into a config document and validated against
 * the command's declared argument table, so plugins read them with the same
 * getters as their options. Pure: no gateway state; fuzzed by
 * tests/fuzz/fuzz_command_args.c.
 */
#ifndef CCGW_COMMAND_ARGS_H
#define CCGW_COMMAND_ARGS_H

#include <stddef.h>

#include "ccgw/command.h"
#include "config_tree.h"

#define CCGW_CMD_MAX_PAYLOAD (64 * 1024)

/* Parse `payload` (len 0 or only blanks = {}) and validate it against
 * spec->args (NULL: no arguments allowed). Returns the document (root is
 * the arguments mapping) or NULL with the bad_arguments message in err. */
ccgw_config_doc_t *ccgw_command_parse_args(const char *payload, size_t len,
                                           const ccgw_command_spec_t *spec, char *err, size_t errlen);

#endif
