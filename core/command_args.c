/* command_args - see command_args.h. */
#include "command_args.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "config_schema.h"

static struct ccgw_config *from_json(ccgw_config_doc_t *doc, json_t *j, int depth)
{
    if (depth > 16)
        return NULL;
    char buf[64];
    struct ccgw_config *n = NULL;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        n = ccgw_config_node_new(doc, CCGW_NODE_MAP, NULL, 0, 0);
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            struct ccgw_config *c = from_json(doc, v, depth + 1);
            if (!n || !c || ccgw_config_map_add(n, k, c) != 0)
                return NULL;
        }
        return n;
    }
    case JSON_ARRAY: {
        n = ccgw_config_node_new(doc, CCGW_NODE_LIST, NULL, 0, 0);
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) {
            struct ccgw_config *c = from_json(doc, v, depth + 1);
            if (!n || !c || ccgw_config_list_add(n, c) != 0)
                return NULL;
        }
        return n;
    }
    case JSON_STRING:
        n = ccgw_config_node_new(doc, CCGW_NODE_SCALAR, json_string_value(j), 0, 0);
        return n;
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        break;
    case JSON_REAL:
        snprintf(buf, sizeof buf, "%.17g", json_real_value(j));
        break;
    case JSON_TRUE: snprintf(buf, sizeof buf, "true"); break;
    case JSON_FALSE: snprintf(buf, sizeof buf, "false"); break;
    case JSON_NULL:
        n = ccgw_config_node_new(doc, CCGW_NODE_SCALAR, "", 0, 0);
        if (n)
            n->is_null = true;
        return n;
    }
    n = ccgw_config_node_new(doc, CCGW_NODE_SCALAR, buf, 0, 0);
    if (n)
        n->plain = true;
    return n;
}

ccgw_config_doc_t *ccgw_command_parse_args(const char *payload, size_t len,
                                           const ccgw_command_spec_t *spec, char *err, size_t errlen)
{
    if (len > CCGW_CMD_MAX_PAYLOAD) {
        snprintf(err, errlen, "arguments larger than %d bytes", CCGW_CMD_MAX_PAYLOAD);
        return NULL;
    }
    size_t i = 0;
    while (i < len && (payload[i] == ' ' || payload[i] == '\n' || payload[i] == '\r' || payload[i] == '\t'))
        i++;
    json_t *args;
    if (i == len) {
        args = json_object();
    } else {
        json_error_t je;
        args = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &je);
        if (!args) {
            snprintf(err, errlen, "arguments are not valid JSON: %s (column %d)", je.text, je.column);
            return NULL;
        }
    }
    if (!args || !json_is_object(args)) {
        json_decref(args);
        snprintf(err, errlen, "arguments must be a JSON object");
        return NULL;
    }
    ccgw_config_doc_t *doc = ccgw_config_doc_new("arguments", false);
    struct ccgw_config *root = doc ? from_json(doc, args, 0) : NULL;
    json_decref(args);
    if (!root) {
        ccgw_config_doc_free(doc);
        snprintf(err, errlen, "arguments nested too deeply");
        return NULL;
    }
    doc->root = root;
    if (spec && spec->args)
        ccgw_schema_validate(root, spec->args, "arguments");
    else if (root->count > 0)
        ccgw_config_diag(doc, root, "command '%s' takes no arguments", spec && spec->name ? spec->name : "?");
    if (doc->n_diags > 0) {
        size_t off = 0;
        err[0] = '\0';
        for (size_t k = 0; k < doc->n_diags && off + 1 < errlen; k++) {
            int w = snprintf(err + off, errlen - off, "%s%s", k ? "; " : "", doc->diags[k]);
            if (w < 0)
                break;
            off += (size_t)w;
        }
        ccgw_config_doc_free(doc);
        return NULL;
    }
    return doc;
}
