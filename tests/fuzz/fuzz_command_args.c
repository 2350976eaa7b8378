/*
 * fuzz_command_args - libFuzzer target for a command's JSON arguments, the
 * outside input every MQTT/WebSocket/HTTP command carries: jansson parse ->
 * config nodes -> validation against a declared argument table (nested
 * object, list of objects, enum, ranges, scalar), then every getter a plugin
 * would call on the result.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "command_args.h"

static const char *const modes[] = {"off", "cool", "heat", NULL};
static const ccgw_option_t item_opts[] = {
    {.key = "bit", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE, .min = 0, .max = 15},
    {.key = "name", .type = CCGW_OPT_STRING, .def = "x"},
    {0}};
static const ccgw_option_t nested_opts[] = {
    {.key = "duration_s", .type = CCGW_OPT_DOUBLE, .flags = CCGW_OPT_F_RANGE, .min = 0, .max = 3600, .def = "5"},
    {.key = "flag", .type = CCGW_OPT_BOOL, .def = "false"},
    {0}};
static const ccgw_option_t args[] = {
    {.key = "point", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE, .min = 1, .max = 64},
    {.key = "value", .type = CCGW_OPT_SCALAR},
    {.key = "mode", .type = CCGW_OPT_ENUM, .choices = modes, .def = "cool"},
    {.key = "n", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .min = -100, .max = 100, .def = "0"},
    {.key = "opts", .type = CCGW_OPT_OBJECT, .children = nested_opts},
    {.key = "bits", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_OBJECT, .children = item_opts},
    {.key = "tags", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_STRING},
    {0}};
static const ccgw_command_spec_t spec = {.name = "write", .args = args};
static const ccgw_command_spec_t spec_none = {.name = "stop"};

static void walk(const ccgw_config_t *n, int depth)
{
    if (!n || depth > 20)
        return;
    char where[64];
    ccgw_config_where(n, where, sizeof where);
    int64_t i;
    double d;
    bool b;
    (void)ccgw_config_as_int(n, &i);
    (void)ccgw_config_as_double(n, &d);
    (void)ccgw_config_as_bool(n, &b);
    (void)ccgw_config_text(n);
    (void)ccgw_config_is_plain(n);
    (void)ccgw_config_is_default(n);
    for (size_t k = 0; k < ccgw_config_count(n); k++) {
        (void)ccgw_config_key_at(n, k);
        walk(ccgw_config_at(n, k), depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[1024];
    const ccgw_command_spec_t *s = (size && (data[0] & 1)) ? &spec_none : &spec;
    ccgw_config_doc_t *doc = ccgw_command_parse_args((const char *)data, size, s, err, sizeof err);
    if (doc) {
        const ccgw_config_t *root = doc->root;
        (void)ccgw_config_string(root, "point", NULL);
        (void)ccgw_config_int(root, "n", 0);
        (void)ccgw_config_double(ccgw_config_get(root, "opts"), "duration_s", 0);
        (void)ccgw_config_bool(ccgw_config_get(root, "opts"), "flag", false);
        walk(root, 0);
        ccgw_config_doc_free(doc);
    }
    return 0;
}
