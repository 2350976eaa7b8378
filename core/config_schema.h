/*
 * config_schema - validate a node against a ccgw_option_t table, and describe
 * a table for humans.
 *
 * The same code checks the core's own sections (gateway, mqtt), every plugin
 * instance's options and every command's arguments, so all of them reject
 * unknown, duplicate, mistyped, out-of-range and missing required keys the
 * same way, with FILE:LINE:COL, and fill in defaults (nodes marked
 * is_default). Errors go to the node's document.
 */
#ifndef CCGW_CONFIG_SCHEMA_H
#define CCGW_CONFIG_SCHEMA_H

#include <stdio.h>

#include "ccgw/config.h"
#include "config_tree.h"

/* Validate `node` (a mapping; NULL returns 0) against `table`. `what` names the thing in messages
 * ("instance 'ups1' options", "mqtt"). Returns the number of errors added. */
int ccgw_schema_validate(struct ccgw_config *node, const ccgw_option_t *table, const char *what);

/* Validate an optional mapping child `key` of `parent` (creating an empty
 * mapping when absent so that defaults apply). Returns errors added. */
int ccgw_schema_validate_child(struct ccgw_config *parent, const char *key,
                               const ccgw_option_t *table, const char *what);

/* Human description, one option per line block, nested options indented:
 *   key           type (int 1..65535)  default 502  [required]
 *                 doc text
 */
void ccgw_schema_describe(FILE *out, const ccgw_option_t *table, int indent);

/* Check that a table itself is well-formed (keys unique, ENUM has choices,
 * defaults valid for their type). Used at plugin load. Returns 0 or writes
 * the first problem into why and returns CCGW_EINVAL. */
int ccgw_schema_check_table(const ccgw_option_t *table, char *why, size_t whylen);

/* Type name for messages: "string", "int", ... */
const char *ccgw_schema_type_name(ccgw_opt_type_t t);

#endif /* CCGW_CONFIG_SCHEMA_H */
