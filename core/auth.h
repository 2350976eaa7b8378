/*
 * auth - bearer tokens, roles and topic filters for the WebSocket and HTTP
 * side, and MQTT topic-filter matching.
 *
 * Tokens come from the config's http.tokens (a SHA-256 hash, a file, or
 * !env); a token is checked by hashing it and comparing in constant time.
 * A principal is who a request acts as: a token's name, its role and its
 * optional topic filters (what it may see and command) and command names.
 *
 * Threads: a ccgw_auth_t is immutable after creation and may be used from
 * any thread; principals are owned copies.
 */
#ifndef CCGW_AUTH_H
#define CCGW_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "ccgw/types.h"

struct ccgw_http_config;

/* ccgw_role_t (viewer, operator, admin) is in <ccgw/types.h>: command specs use it. */

const char *ccgw_role_name(ccgw_role_t r);
int ccgw_role_parse(const char *s); /* -1 when unknown */

typedef struct ccgw_principal {
    char *name;          /* token name from the config ("anonymous" when allowed) */
    ccgw_role_t role;
    char **filters;      /* topic filters; n_filters 0 = everything */
    size_t n_filters;
    char **commands;     /* command names allowed (exact, or "prefix.*"); 0 = all */
    size_t n_commands;
} ccgw_principal_t;

typedef struct ccgw_auth ccgw_auth_t;

/* Build from the validated http config (NULL config: no tokens, nobody gets
 * in). Returns NULL on allocation failure or an unreadable token file (logged
 * with the file). */
ccgw_auth_t *ccgw_auth_new(const struct ccgw_http_config *cfg);
void ccgw_auth_free(ccgw_auth_t *a);

/* The principal for a bearer token (NULL token or "": the anonymous principal
 * when http.anonymous_role is set). NULL when refused; why says "no token",
 * "unknown token" (never echoes the token). The caller frees the result. */
ccgw_principal_t *ccgw_auth_check(const ccgw_auth_t *a, const char *token, char *why, size_t whylen);
/* Parse "Bearer <token>" from an Authorization header value; NULL if not that form. */
const char *ccgw_auth_bearer(const char *header_value);
ccgw_principal_t *ccgw_principal_dup(const ccgw_principal_t *p);
void ccgw_principal_free(ccgw_principal_t *p);

/* What a principal may do. The *_why variants fill why ("role viewer may not
 * send commands", "topic outside the token's filters"). */
bool ccgw_principal_may_see(const ccgw_principal_t *p, const char *topic);
bool ccgw_principal_may_command(const ccgw_principal_t *p, const char *cmd_topic, const char *cmd_name,
                                char *why, size_t whylen);
bool ccgw_principal_may_ack(const ccgw_principal_t *p, const char *alarm_topic, char *why, size_t whylen);
bool ccgw_principal_may_admin(const ccgw_principal_t *p, char *why, size_t whylen);

/* MQTT topic filters: '+' one level, '#' the rest (last level only); no
 * empty filter, '+'/'#' only as a whole level. */
bool ccgw_topic_filter_valid(const char *filter);
bool ccgw_topic_matches(const char *filter, const char *topic);

/* Lower-case hex SHA-256 of s (for `ccgw --hash-token`). out: 65 bytes. */
void ccgw_auth_hash_token(const char *s, char out[65]);

#endif
