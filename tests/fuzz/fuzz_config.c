/*
 * fuzz_config - libFuzzer target for the configuration loader: arbitrary
 * bytes -> ccgw_gateway_config_load_buffer() with a resolver that returns a
 * static descriptor whose option table nests (LIST of OBJECT, OBJECT, ENUM,
 * ranged INT, DOUBLE, BOOL, secret STRING) and whose check() reads options
 * and reports errors. Then every node is walked with the public getters and
 * the diagnostics are printed, so all of it runs under ASan/UBSan.
 *
 * Build: cmake -DCCGW_FUZZ=ON -DCMAKE_C_COMPILER=clang; run:
 *   build/tests/fuzz/fuzz_config tests/fuzz/corpus/config
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ccgw/plugin.h"
#include "config.h"
#include "config_schema.h"
#include "config_tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const kinds[] = {"temp", "hum", "door", NULL};

static const ccgw_option_t point_options[] = {
    {.key = "name", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE, .min = 1, .max = 32},
    {.key = "kind", .type = CCGW_OPT_ENUM, .def = "temp", .choices = kinds},
    {.key = "address", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "0", .min = 0, .max = 65535},
    {.key = "scale", .type = CCGW_OPT_DOUBLE, .flags = CCGW_OPT_F_RANGE, .def = "1.0", .min = -1e6, .max = 1e6},
    {.key = "signed", .type = CCGW_OPT_BOOL, .def = "false"},
    {.key = "raw", .type = CCGW_OPT_SCALAR},
    CCGW_OPTION_END,
};

static const ccgw_option_t retry_options[] = {
    {.key = "count", .type = CCGW_OPT_INT, .def = "3"},
    {.key = "backoff", .type = CCGW_OPT_DOUBLE, .def = "0.5"},
    CCGW_OPTION_END,
};

static const ccgw_option_t link_options[] = {
    {.key = "host", .type = CCGW_OPT_STRING, .def = "localhost"},
    {.key = "port", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "502", .min = 1, .max = 65535},
    {.key = "retry", .type = CCGW_OPT_OBJECT, .children = retry_options},
    CCGW_OPTION_END,
};

static const ccgw_option_t fuzz_options[] = {
    {.key = "host", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_REQUIRED},
    {.key = "interval_ms", .type = CCGW_OPT_INT, .flags = CCGW_OPT_F_RANGE, .def = "1000", .min = 10, .max = 3600000},
    {.key = "ratio", .type = CCGW_OPT_DOUBLE, .def = "0.5"},
    {.key = "debug", .type = CCGW_OPT_BOOL, .def = "false"},
    {.key = "token", .type = CCGW_OPT_STRING, .flags = CCGW_OPT_F_SECRET},
    {.key = "link", .type = CCGW_OPT_OBJECT, .children = link_options},
    {.key = "points", .type = CCGW_OPT_LIST, .flags = CCGW_OPT_F_RANGE, .min = 0, .max = 64,
     .item_type = CCGW_OPT_OBJECT, .children = point_options},
    {.key = "kinds", .type = CCGW_OPT_LIST, .item_type = CCGW_OPT_ENUM, .choices = kinds},
    CCGW_OPTION_END,
};

static int fuzz_check(const ccgw_config_t *options)
{
    int errors = 0;
    const ccgw_config_t *points = ccgw_config_get(options, "points");
    for (size_t i = 0; i < ccgw_config_count(points); i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(ccgw_config_string(ccgw_config_at(points, i), "name", ""),
                        ccgw_config_string(ccgw_config_at(points, j), "name", ""))) {
                ccgw_config_error(ccgw_config_get(ccgw_config_at(points, i), "name"), "duplicate point name");
                errors++;
            }
    if (ccgw_config_double(options, "ratio", 0) > 100.0)
        errors += -ccgw_config_error(ccgw_config_get(options, "ratio"), "ratio too large");
    return errors;
}

static int f_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    (void)inst;
    (void)options;
    *state = NULL;
    return 0;
}
static int f_start(void *state) { return state ? 0 : 0; }
static void f_stop(void *state) { (void)state; }

static const ccgw_plugin_t fuzz_desc = {
    .abi_major = CCGW_ABI_MAJOR,
    .abi_minor = CCGW_ABI_MINOR,
    .size = sizeof(ccgw_plugin_t),
    .name = "fuzz",
    .version = "1.0",
    .options = fuzz_options,
    .check = fuzz_check,
    .create = f_create,
    .start = f_start,
    .stop = f_stop,
    .destroy = f_stop,
};

static const ccgw_plugin_t *fuzz_resolver(void *ctx, const ccgw_gateway_config_t *cfg, const char *name, char *why,
                                          size_t whylen, bool *fatal)
{
    (void)ctx;
    (void)cfg;
    if (!strcmp(name, "fuzz") || !strcmp(name, "modbus"))
        return &fuzz_desc;
    snprintf(why, whylen, "no %s.so in the fuzzer", name);
    return NULL;
}

static size_t walk(const ccgw_config_t *n, int depth)
{
    size_t sum = 0;
    char where[256];
    ccgw_config_where(n, where, sizeof where);
    sum += strlen(where);
    switch (ccgw_config_kind(n)) {
    case CCGW_NODE_SCALAR: {
        int64_t i;
        double d;
        bool b;
        const char *t = ccgw_config_text(n);
        sum += t ? strlen(t) : 0;
        sum += ccgw_config_as_int(n, &i) == 0 ? (size_t)(i & 1) : 0;
        sum += ccgw_config_as_double(n, &d) == 0 ? (d > 0) : 0;
        sum += ccgw_config_as_bool(n, &b) == 0 ? b : 0;
        break;
    }
    case CCGW_NODE_MAP:
    case CCGW_NODE_LIST:
        if (depth > 80)
            break;
        for (size_t i = 0; i < ccgw_config_count(n); i++) {
            const char *k = ccgw_config_key_at(n, i);
            if (k) {
                sum += ccgw_config_get(n, k) != NULL;
                sum += (size_t)ccgw_config_int(n, k, 0) & 1;
                sum += ccgw_config_string(n, k, NULL) != NULL;
            }
            sum += walk(ccgw_config_at(n, i), depth + 1);
        }
        break;
    default: break;
    }
    return sum;
}

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull) {
        devnull = fopen("/dev/null", "w");
        char why[256];
        if (ccgw_schema_check_table(fuzz_options, why, sizeof why) != 0) {
            fprintf(stderr, "fuzz table refused: %s\n", why);
            __builtin_trap();
        }
    }
    ccgw_gateway_config_t *cfg =
        ccgw_gateway_config_load_buffer("fuzz.yaml", (const char *)data, size, fuzz_resolver, NULL);
    if (!cfg)
        return 0;
    volatile size_t sink = walk(cfg->doc->root, 0);
    for (size_t i = 0; i < cfg->n_instances; i++)
        sink += walk(cfg->instances[i].options, 0);
    (void)sink;
    if (devnull)
        ccgw_config_print_diags(cfg->doc, devnull);
    ccgw_gateway_config_free(cfg);
    return 0;
}
