/*
 * auth - see auth.h.
 *
 * Tokens are kept only as SHA-256 digests (32 bytes); a presented token is
 * hashed and compared with CRYPTO_memcmp against every configured digest
 * (no early exit), so neither the comparison nor the search order tells an
 * attacker how close a guess was. The ccgw_auth_t is immutable after
 * ccgw_auth_new(): any thread may call the checks.
 */
#include "auth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "config.h"
#include "log.h"

#define MAX_TOKEN_LEN 4096

typedef struct auth_token {
    unsigned char digest[32];
    ccgw_principal_t p;
} auth_token_t;

struct ccgw_auth {
    auth_token_t *tokens;
    size_t n_tokens;
    ccgw_role_t anonymous_role;
};

static const char *const role_names[] = {"none", "viewer", "operator", "admin"};

const char *ccgw_role_name(ccgw_role_t r)
{
    return (unsigned)r < sizeof role_names / sizeof role_names[0] ? role_names[r] : "none";
}

int ccgw_role_parse(const char *s)
{
    for (size_t i = 0; s && i < sizeof role_names / sizeof role_names[0]; i++)
        if (!strcmp(s, role_names[i]))
            return (int)i;
    return -1;
}

/* ---- hashing ---- */

static bool sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32;
}

void ccgw_auth_hash_token(const char *s, char out[65])
{
    unsigned char d[32];
    static const char hex[] = "0123456789abcdef";
    if (!sha256(s ? s : "", s ? strlen(s) : 0, d)) {
        memset(out, '0', 64);
        out[64] = '\0';
        return;
    }
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
    OPENSSL_cleanse(d, sizeof d);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool unhex(const char *s, unsigned char out[32])
{
    if (!s || strlen(s) != 64)
        return false;
    for (int i = 0; i < 32; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

/* ---- principals ---- */

static char **dup_list(char *const *src, size_t n, bool *ok)
{
    if (n == 0)
        return NULL;
    char **out = calloc(n, sizeof *out);
    if (!out) {
        *ok = false;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (!(out[i] = strdup(src[i] ? src[i] : "")))
            *ok = false;
    return out;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; l && i < n; i++)
        free(l[i]);
    free(l);
}

static void principal_clear(ccgw_principal_t *p)
{
    free(p->name);
    free_list(p->filters, p->n_filters);
    free_list(p->commands, p->n_commands);
    memset(p, 0, sizeof *p);
}

void ccgw_principal_free(ccgw_principal_t *p)
{
    if (!p)
        return;
    principal_clear(p);
    free(p);
}

static bool principal_fill(ccgw_principal_t *dst, const char *name, ccgw_role_t role, char *const *filters,
                           size_t n_filters, char *const *commands, size_t n_commands)
{
    bool ok = true;
    dst->name = strdup(name ? name : "");
    dst->role = role;
    dst->filters = dup_list(filters, n_filters, &ok);
    dst->n_filters = dst->filters ? n_filters : 0;
    dst->commands = dup_list(commands, n_commands, &ok);
    dst->n_commands = dst->commands ? n_commands : 0;
    if (!dst->name || !ok) {
        principal_clear(dst);
        return false;
    }
    return true;
}

ccgw_principal_t *ccgw_principal_dup(const ccgw_principal_t *p)
{
    if (!p)
        return NULL;
    ccgw_principal_t *d = calloc(1, sizeof *d);
    if (!d || !principal_fill(d, p->name, p->role, p->filters, p->n_filters, p->commands, p->n_commands)) {
        free(d);
        return NULL;
    }
    return d;
}

/* ---- the token table ---- */

ccgw_auth_t *ccgw_auth_new(const struct ccgw_http_config *cfg)
{
    ccgw_auth_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    if (!cfg)
        return a;
    a->anonymous_role = cfg->anonymous_role >= CCGW_ROLE_NONE && cfg->anonymous_role <= CCGW_ROLE_ADMIN
                            ? (ccgw_role_t)cfg->anonymous_role
                            : CCGW_ROLE_NONE;
    if (cfg->n_tokens == 0)
        return a;
    a->tokens = calloc(cfg->n_tokens, sizeof *a->tokens);
    if (!a->tokens) {
        free(a);
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_tokens; i++) {
        const ccgw_http_token_t *t = &cfg->tokens[i];
        auth_token_t *dst = &a->tokens[a->n_tokens];
        if (!unhex(t->sha256, dst->digest)) {
            CLOG_ERROR("auth", "token '%s': no valid sha256 (the configuration was not validated?)",
                       t->name ? t->name : "?");
            ccgw_auth_free(a);
            return NULL;
        }
        if (t->role <= CCGW_ROLE_NONE || t->role > CCGW_ROLE_ADMIN) {
            CLOG_ERROR("auth", "token '%s': bad role %d", t->name ? t->name : "?", t->role);
            ccgw_auth_free(a);
            return NULL;
        }
        if (!principal_fill(&dst->p, t->name, (ccgw_role_t)t->role, t->filters, t->n_filters, t->commands,
                            t->n_commands)) {
            ccgw_auth_free(a);
            return NULL;
        }
        a->n_tokens++;
    }
    return a;
}

void ccgw_auth_free(ccgw_auth_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_tokens; i++) {
        OPENSSL_cleanse(a->tokens[i].digest, sizeof a->tokens[i].digest);
        principal_clear(&a->tokens[i].p);
    }
    free(a->tokens);
    free(a);
}

static void set_why(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || !whylen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

ccgw_principal_t *ccgw_auth_check(const ccgw_auth_t *a, const char *token, char *why, size_t whylen)
{
    set_why(why, whylen, "%s", "");
    if (!a) {
        set_why(why, whylen, "%s", "no tokens configured");
        return NULL;
    }
    if (!token || !*token) {
        if (a->anonymous_role == CCGW_ROLE_NONE) {
            set_why(why, whylen, "%s", "no token");
            return NULL;
        }
        ccgw_principal_t *p = calloc(1, sizeof *p);
        if (!p || !principal_fill(p, "anonymous", a->anonymous_role, NULL, 0, NULL, 0)) {
            free(p);
            set_why(why, whylen, "%s", "out of memory");
            return NULL;
        }
        return p;
    }
    size_t len = strnlen(token, MAX_TOKEN_LEN + 1);
    unsigned char d[32];
    if (len > MAX_TOKEN_LEN || !sha256(token, len, d)) {
        set_why(why, whylen, "%s", "unknown token");
        return NULL;
    }
    const auth_token_t *found = NULL;
    for (size_t i = 0; i < a->n_tokens; i++) {
        /* look at every entry: the time taken does not depend on which one matched */
        bool eq = CRYPTO_memcmp(d, a->tokens[i].digest, sizeof d) == 0;
        if (eq && !found)
            found = &a->tokens[i];
    }
    OPENSSL_cleanse(d, sizeof d);
    if (!found) {
        set_why(why, whylen, "%s", "unknown token");
        return NULL;
    }
    ccgw_principal_t *p = ccgw_principal_dup(&found->p);
    if (!p)
        set_why(why, whylen, "%s", "out of memory");
    return p;
}

const char *ccgw_auth_bearer(const char *v)
{
    if (!v)
        return NULL;
    while (*v == ' ' || *v == '\t')
        v++;
    if (strncasecmp(v, "Bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t'))
        return NULL;
    v += 6;
    while (*v == ' ' || *v == '\t')
        v++;
    return *v ? v : NULL;
}

/* ---- topic filters ---- */

bool ccgw_topic_filter_valid(const char *f)
{
    if (!f || !*f || strlen(f) > 65535)
        return false;
    const char *level = f;
    for (const char *p = f;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - level);
            for (const char *q = level; q < p; q++) {
                if ((*q == '+' || *q == '#') && n != 1)
                    return false; /* wildcard not alone in its level */
            }
            if (n == 1 && *level == '#' && *p != '\0')
                return false; /* '#' not last */
            if (*p == '\0')
                break;
            level = p + 1;
        }
    }
    return true;
}

bool ccgw_topic_matches(const char *filter, const char *topic)
{
    if (!filter || !topic || !*filter)
        return false;
    /* wildcards at the first level never match $SYS-style topics */
    if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#'))
        return false;
    const char *f = filter, *t = topic;
    for (;;) {
        const char *fe = strchr(f, '/');
        size_t fl = fe ? (size_t)(fe - f) : strlen(f);
        if (fl == 1 && f[0] == '#')
            return true; /* the rest, including the parent level itself ("a/#" matches "a") */
        const char *te = strchr(t, '/');
        size_t tl = te ? (size_t)(te - t) : strlen(t);
        if (!(fl == 1 && f[0] == '+') && (fl != tl || memcmp(f, t, fl) != 0))
            return false;
        if (!fe && !te)
            return true;
        if (!fe)
            return false; /* topic is longer */
        if (!te) {
            /* topic ended: only "/#" may follow */
            return !strcmp(fe, "/#");
        }
        f = fe + 1;
        t = te + 1;
    }
}

/* ---- decisions ---- */

static bool filters_allow(const ccgw_principal_t *p, const char *topic)
{
    if (p->n_filters == 0)
        return true;
    if (!topic)
        return false;
    for (size_t i = 0; i < p->n_filters; i++)
        if (ccgw_topic_matches(p->filters[i], topic))
            return true;
    return false;
}

bool ccgw_principal_may_see(const ccgw_principal_t *p, const char *topic)
{
    return p && p->role > CCGW_ROLE_NONE && topic && filters_allow(p, topic);
}

static bool command_allowed(const ccgw_principal_t *p, const char *name)
{
    if (p->n_commands == 0)
        return true;
    if (!name)
        return false;
    for (size_t i = 0; i < p->n_commands; i++) {
        const char *c = p->commands[i];
        size_t n = strlen(c);
        if (!strcmp(c, "*") || !strcmp(c, name))
            return true;
        /* "door.*": every name that starts with "door." */
        if (n >= 2 && c[n - 1] == '*' && c[n - 2] == '.' && !strncmp(c, name, n - 1) && name[n - 1] != '\0')
            return true;
    }
    return false;
}

/* The device's state topic for a command or alarm topic: ".../cmd/NAME" or
 * ".../alarm/CODE" -> ".../state"; a token filter naming the device's
 * topics (".../u1/#", ".../u1/state") then also covers its commands. */
static bool device_state_topic(const char *topic, const char *marker, char *out, size_t len)
{
    const char *m = topic ? strstr(topic, marker) : NULL;
    if (!m)
        return false;
    const char *last = m;
    while ((m = strstr(m + 1, marker)) != NULL)
        last = m;
    int n = snprintf(out, len, "%.*s/state", (int)(last - topic), topic);
    return n > 0 && (size_t)n < len;
}

static bool topic_allowed(const ccgw_principal_t *p, const char *topic, const char *marker)
{
    if (filters_allow(p, topic))
        return true;
    char st[1024];
    return p->n_filters > 0 && device_state_topic(topic, marker, st, sizeof st) && filters_allow(p, st);
}

bool ccgw_principal_may_command(const ccgw_principal_t *p, const char *cmd_topic, const char *cmd_name,
                                char *why, size_t whylen)
{
    set_why(why, whylen, "%s", "");
    if (!p) {
        set_why(why, whylen, "%s", "not authenticated");
        return false;
    }
    if (p->role < CCGW_ROLE_OPERATOR) {
        set_why(why, whylen, "role %s may not send commands", ccgw_role_name(p->role));
        return false;
    }
    if (!topic_allowed(p, cmd_topic, "/cmd/")) {
        set_why(why, whylen, "%s", "topic outside the token's filters");
        return false;
    }
    if (!command_allowed(p, cmd_name)) {
        set_why(why, whylen, "command '%s' is not in the token's commands", cmd_name);
        return false;
    }
    return true;
}

bool ccgw_principal_may_ack(const ccgw_principal_t *p, const char *alarm_topic, char *why, size_t whylen)
{
    set_why(why, whylen, "%s", "");
    if (!p) {
        set_why(why, whylen, "%s", "not authenticated");
        return false;
    }
    if (p->role < CCGW_ROLE_OPERATOR) {
        set_why(why, whylen, "role %s may not acknowledge alarms", ccgw_role_name(p->role));
        return false;
    }
    if (!topic_allowed(p, alarm_topic, "/alarm/")) {
        set_why(why, whylen, "%s", "topic outside the token's filters");
        return false;
    }
    return true;
}

bool ccgw_principal_may_admin(const ccgw_principal_t *p, char *why, size_t whylen)
{
    set_why(why, whylen, "%s", "");
    if (!p) {
        set_why(why, whylen, "%s", "not authenticated");
        return false;
    }
    if (p->role < CCGW_ROLE_ADMIN) {
        set_why(why, whylen, "role %s may not use the management API", ccgw_role_name(p->role));
        return false;
    }
    return true;
}
