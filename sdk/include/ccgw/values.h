/*
 * ccgw/values.h - typed name/value pairs: how a plugin hands data to the core.
 *
 * Plugins never format JSON or topics. They pass arrays of ccgw_value_t (on
 * the stack is fine: the core copies what it needs before the call returns)
 * and the core encodes the normalised envelope. Units are SenML (RFC 8428):
 * "Cel", "%RH", "V", "A", "W", "Hz", "s", "%". NaN and infinities encode as null.
 */
#ifndef CCGW_VALUES_H
#define CCGW_VALUES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ccgw_val_type {
    CCGW_VAL_NULL = 0,
    CCGW_VAL_BOOL,
    CCGW_VAL_INT,
    CCGW_VAL_DOUBLE,
    CCGW_VAL_STRING, /* UTF-8; invalid sequences are replaced by U+FFFD */
    CCGW_VAL_OBJECT  /* nested: v.obj.items[0 .. v.obj.count) */
} ccgw_val_type_t;

/* One named value. Frozen for ABI major 1. */
typedef struct ccgw_value {
    const char *name; /* [A-Za-z0-9_.-]+ */
    const char *unit; /* SenML unit for telemetry, or NULL */
    ccgw_val_type_t type;
    union {
        bool b;
        int64_t i;
        double d;
        const char *s;
        struct {
            const struct ccgw_value *items;
            size_t count;
        } obj;
    } v;
} ccgw_value_t;

#define CCGW_V_BOOL(n, x) ((ccgw_value_t){.name = (n), .type = CCGW_VAL_BOOL, .v.b = (x)})
#define CCGW_V_INT(n, x) ((ccgw_value_t){.name = (n), .type = CCGW_VAL_INT, .v.i = (x)})
#define CCGW_V_INT_U(n, x, u) \
    ((ccgw_value_t){.name = (n), .unit = (u), .type = CCGW_VAL_INT, .v.i = (x)})
#define CCGW_V_DOUBLE(n, x, u) \
    ((ccgw_value_t){.name = (n), .unit = (u), .type = CCGW_VAL_DOUBLE, .v.d = (x)})
#define CCGW_V_STRING(n, x) ((ccgw_value_t){.name = (n), .type = CCGW_VAL_STRING, .v.s = (x)})
#define CCGW_V_OBJECT(n, arr, cnt) \
    ((ccgw_value_t){.name = (n), .type = CCGW_VAL_OBJECT, .v.obj = {(arr), (cnt)}})
#define CCGW_V_NULL(n) ((ccgw_value_t){.name = (n), .type = CCGW_VAL_NULL})

#define CCGW_COUNT(arr) (sizeof(arr) / sizeof((arr)[0]))

#ifdef __cplusplus
}
#endif
#endif /* CCGW_VALUES_H */
