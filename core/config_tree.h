/*
 * config_tree - the document tree behind every ccgw_config_t node.
 *
 * A YAML file (libyaml) or a command's JSON arguments become one document:
 * scalars, mappings and lists, each node with file:line:col. The document owns
 * every node and the list of diagnostics ("FILE:LINE:COL: message") that
 * parsing, schema validation and plugins' check() calls add. The public
 * getters of <ccgw/config.h> are implemented here.
 *
 * YAML tags resolve secrets at load: `!env NAME` (the environment variable,
 * error if unset) and `!file PATH` (the file's content, trailing newline
 * removed, error if unreadable; PATH relative to the YAML file's folder).
 * Anchors/aliases are refused (error), as are non-scalar mapping keys.
 */
#ifndef CCGW_CONFIG_TREE_H
#define CCGW_CONFIG_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "ccgw/config.h"

typedef struct ccgw_config_doc ccgw_config_doc_t;

struct ccgw_config {
    ccgw_node_kind_t kind;
    char *text;              /* SCALAR: the text (after !env/!file resolution) */
    bool plain;              /* SCALAR: unquoted in YAML, or a JSON number/bool */
    bool is_default;         /* inserted by schema validation from a default */
    bool is_null;            /* SCALAR: YAML null (~, null, empty) or JSON null */
    bool secret;             /* came from !env / !file: never print the text */
    unsigned line, col;      /* 1-based; 0 when the document has no positions */
    size_t count;            /* MAP / LIST: number of children */
    size_t cap;
    struct ccgw_config **items; /* children */
    char **keys;             /* MAP: keys[i] names items[i] */
    ccgw_config_doc_t *doc;  /* owner */
};

struct ccgw_config_doc {
    char *name;              /* file path, or e.g. "command arguments" */
    bool positions;          /* whether line/col are meaningful */
    struct ccgw_config *root;
    char **diags;            /* "NAME:LINE:COL: message" (or "NAME: message") */
    size_t n_diags, cap_diags;
    /* every node, for freeing */
    struct ccgw_config **nodes;
    size_t n_nodes, cap_nodes;
};

/* Parse a YAML file. Always returns a document (NULL only when out of
 * memory); check doc->n_diags. root is NULL when nothing parsed. */
ccgw_config_doc_t *ccgw_config_load_yaml_file(const char *path);
/* Parse YAML from memory (for tests and the fuzzer); `name` labels errors. */
ccgw_config_doc_t *ccgw_config_load_yaml_buffer(const char *name, const char *buf, size_t len);

/* Builders, for documents that do not come from YAML (JSON command args). */
ccgw_config_doc_t *ccgw_config_doc_new(const char *name, bool positions);
struct ccgw_config *ccgw_config_node_new(ccgw_config_doc_t *doc, ccgw_node_kind_t kind,
                                         const char *text, unsigned line, unsigned col);
int ccgw_config_map_add(struct ccgw_config *map, const char *key, struct ccgw_config *child);
int ccgw_config_list_add(struct ccgw_config *list, struct ccgw_config *child);

/* Add a diagnostic at a node (node may be NULL: document-level). */
void ccgw_config_diag(ccgw_config_doc_t *doc, const struct ccgw_config *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void ccgw_config_doc_free(ccgw_config_doc_t *doc);

/* Print every diagnostic, one per line. */
void ccgw_config_print_diags(const ccgw_config_doc_t *doc, FILE *out);

/* ---- internal to the config modules (config_schema.c, config.c) ----
 * Nodes and documents are allocated inside larger private structs that also
 * keep each mapping key's own position, the folder of the YAML file, and a
 * "reported" mark so one bad node is not reported twice: build them only
 * with ccgw_config_node_new / ccgw_config_doc_new. */
void ccgw_config__diag_at(ccgw_config_doc_t *doc, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void ccgw_config__key_pos(const struct ccgw_config *map, size_t i, unsigned *line, unsigned *col);
int ccgw_config__map_add_at(struct ccgw_config *map, const char *key, unsigned line, unsigned col,
                            struct ccgw_config *child);
bool ccgw_config__reported(const struct ccgw_config *node);
void ccgw_config__set_reported(struct ccgw_config *node);
int ccgw_config__make_empty(struct ccgw_config *node, ccgw_node_kind_t kind);
int ccgw_config__parse_int(const char *s, int64_t *out);
int ccgw_config__parse_double(const char *s, double *out);
int ccgw_config__parse_bool(const char *s, bool *out);
const char *ccgw_config__dir(const ccgw_config_doc_t *doc);

#endif /* CCGW_CONFIG_TREE_H */
