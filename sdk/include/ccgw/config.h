/*
 * ccgw/config.h - declarative option tables and read access to validated options.
 *
 * A plugin declares its options (and each command's arguments) as a table of
 * ccgw_option_t. The core validates the YAML (or a command's JSON arguments)
 * against the table before the plugin sees it: unknown, duplicate, mistyped,
 * out-of-range and missing required keys are errors reported as
 * FILE:LINE:COL, and defaults are filled in. The same table produces
 * `ccgw --describe-plugin NAME`. So a plugin reads its options with the
 * getters below without checking types again.
 *
 * Nodes are owned by the core and live as long as the instance (options) or
 * the command (arguments). Getters are safe from any thread.
 */
#ifndef CCGW_CONFIG_H
#define CCGW_CONFIG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ccgw/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ccgw_opt_type {
    CCGW_OPT_END = 0,  /* table terminator ({0}) */
    CCGW_OPT_STRING,   /* text; range = length bounds when CCGW_OPT_F_RANGE */
    CCGW_OPT_INT,      /* 64-bit integer (decimal or 0x hex) */
    CCGW_OPT_DOUBLE,   /* number */
    CCGW_OPT_BOOL,     /* true/false */
    CCGW_OPT_ENUM,     /* one of `choices` */
    CCGW_OPT_SCALAR,   /* any scalar: number, bool or text (read it as you need) */
    CCGW_OPT_OBJECT,   /* mapping with the keys in `children` */
    CCGW_OPT_LIST      /* sequence of `item_type`; OBJECT items use `children`;
                          range = item count bounds when CCGW_OPT_F_RANGE */
} ccgw_opt_type_t;

enum {
    CCGW_OPT_F_REQUIRED = 1u << 0, /* must be present (a default makes no sense then) */
    CCGW_OPT_F_RANGE = 1u << 1,    /* min/max apply */
    CCGW_OPT_F_SECRET = 1u << 2    /* never logged or shown; use !env / !file in YAML */
};

/* One option. Frozen for ABI major 1: new fields use `reserved`. */
typedef struct ccgw_option {
    const char *key;                    /* NULL ends the table */
    ccgw_opt_type_t type;
    unsigned flags;                     /* CCGW_OPT_F_* */
    const char *def;                    /* default as YAML text ("502", "true"), or NULL */
    double min, max;                    /* with CCGW_OPT_F_RANGE */
    const char *const *choices;         /* ENUM: NULL-terminated list */
    const struct ccgw_option *children; /* OBJECT, or LIST of OBJECT: the item's keys */
    ccgw_opt_type_t item_type;          /* LIST: type of the items */
    const char *doc;                    /* one or two sentences for --describe-plugin */
    void *reserved[2];
} ccgw_option_t;

/* Node access. `node` may be NULL; getters then return the fallback. */
typedef enum ccgw_node_kind {
    CCGW_NODE_NONE = 0,
    CCGW_NODE_SCALAR,
    CCGW_NODE_MAP,
    CCGW_NODE_LIST
} ccgw_node_kind_t;

ccgw_node_kind_t ccgw_config_kind(const ccgw_config_t *node);

/* Child of a mapping by key, or NULL when absent (and no default). */
const ccgw_config_t *ccgw_config_get(const ccgw_config_t *map, const char *key);

/* Typed reads of map[key]; `fallback` when absent. Values were validated
 * against the table, so a declared option always reads correctly. */
const char *ccgw_config_string(const ccgw_config_t *map, const char *key, const char *fallback);
int64_t ccgw_config_int(const ccgw_config_t *map, const char *key, int64_t fallback);
double ccgw_config_double(const ccgw_config_t *map, const char *key, double fallback);
bool ccgw_config_bool(const ccgw_config_t *map, const char *key, bool fallback);

/* Reads of a scalar node itself; return 0 or CCGW_EINVAL if it does not convert. */
const char *ccgw_config_text(const ccgw_config_t *scalar); /* NULL if not a scalar */
int ccgw_config_as_int(const ccgw_config_t *scalar, int64_t *out);
int ccgw_config_as_double(const ccgw_config_t *scalar, double *out);
int ccgw_config_as_bool(const ccgw_config_t *scalar, bool *out);

/* True when `node` was filled in from a default (absent in the file or the
 * arguments), including an absent OBJECT created because its children have
 * defaults: tells "configured" from "defaulted". */
bool ccgw_config_is_default(const ccgw_config_t *node);
/* True for an unquoted YAML scalar or a JSON number, bool or null; false for
 * quoted text: tells {"value": 1} from {"value": "1"}. */
bool ccgw_config_is_plain(const ccgw_config_t *scalar);

/* Lists and mappings: number of items/keys, and the i-th item (key for maps). */
size_t ccgw_config_count(const ccgw_config_t *node);
const ccgw_config_t *ccgw_config_at(const ccgw_config_t *node, size_t i);
const char *ccgw_config_key_at(const ccgw_config_t *map, size_t i);

/* "file.yaml:12:7" (or "command arguments") for messages. Returns buf. */
const char *ccgw_config_where(const ccgw_config_t *node, char *buf, size_t len);

/* From a plugin's check(): record an error at the node's position. It is
 * printed as FILE:LINE:COL: message. Returns CCGW_EINVAL. */
int ccgw_config_error(const ccgw_config_t *node, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ccgw_config_error() with a va_list. */
int ccgw_config_verror(const ccgw_config_t *node, const char *fmt, va_list ap)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 0)))
#endif
    ;

/* Table helpers (designated initialisers work just as well). */
#define CCGW_OPTION_END {0}

#ifdef __cplusplus
}
#endif
#endif /* CCGW_CONFIG_H */
