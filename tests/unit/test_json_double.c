/* Unit tests: ccgw_fmt_double (the fast path of ccgw_jw_double) gives exactly
 * the text of the reference algorithm (shortest of %.15g/%.16g/%.17g that
 * reads back with strtod) on many doubles: sensor-like decimals at every
 * scale, integers, random bit patterns, edge cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_writer.h"

static size_t reference(char out[32], double v)
{
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, 32, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            break;
    }
    return (size_t)n;
}

static unsigned long checked;

static void check(double v)
{
    if (!isfinite(v))
        return;
    char a[32], b[32];
    size_t na = ccgw_fmt_double(a, v);
    size_t nb = reference(b, v);
    if (na != nb || strcmp(a, b) != 0) {
        print_error("value %a: fast \"%s\" (%zu), reference \"%s\" (%zu)\n", v, a, na, b, nb);
        fail();
    }
    assert_true(strtod(a, NULL) == v || (v == 0 && strtod(a, NULL) == 0));
    checked++;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_edges(void **state)
{
    (void)state;
    static const double v[] = {0.0,     -0.0,   1,       -1,      0.1,     0.2,      0.3,
                               0.1 + 0.2, 22.4, 1e-4,    1e-5,    9.9999e-5, 0.00012345,
                               1e14,    1e15,   1e15 - 1, 999999999999999.0, 123456789012345.6,
                               1e16,    1e17,   1e21,    1e22,    1e300,   5e-324,   DBL_MIN,
                               DBL_MAX, 2.5,    0.5,     1.0 / 3, 2.0 / 3, 100.0 / 3, 4.35,
                               0.015,   1.005,  9007199254740993.0, 9007199254740992.0,
                               12345.678901234567, 0.30000000000000004, 20.42, -273.15};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        check(v[i]);
}

static void test_decimals(void **state)
{
    (void)state;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 400000; i++) {
        uint64_t digits = rnd(&s) % 17 + 1;
        uint64_t m = rnd(&s) % (uint64_t)pow(10, (double)digits);
        int k = (int)(rnd(&s) % 24) - 3;
        double v = (double)m / pow(10, k);
        check(rnd(&s) & 1 ? -v : v);
        /* neighbours: one ulp off a short decimal */
        check(nextafter(v, INFINITY));
        check(nextafter(v, 0));
    }
}

static void test_sensor_values(void **state)
{
    (void)state;
    /* typical readings: 1-3 decimals, built the way plugins build them */
    for (int i = -100000; i <= 100000; i++) {
        check(i / 10.0);
        check(i / 100.0);
        check(i * 0.001);
        check(i * 0.1 + 20);
    }
}

static void test_random_bits(void **state)
{
    (void)state;
    uint64_t s = 0x2545f4914f6cdd1dull;
    for (int i = 0; i < 300000; i++) {
        uint64_t bits = rnd(&s);
        double v;
        memcpy(&v, &bits, sizeof v);
        check(v);
    }
    /* random values in the ranges the fast path covers */
    for (int i = 0; i < 300000; i++) {
        double v = (double)(rnd(&s) >> 11) / 9007199254740992.0 * pow(10, (double)(rnd(&s) % 20) - 5);
        check(v);
    }
}

static void test_writer_uses_it(void **state)
{
    (void)state;
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_array(&w);
    ccgw_jw_double(&w, 20.42);
    ccgw_jw_double(&w, -0.0);
    ccgw_jw_double(&w, 1e-7);
    ccgw_jw_double(&w, NAN);
    ccgw_jw_end_array(&w);
    assert_string_equal(w.buf, "[20.42,-0,1e-07,null]");
    ccgw_jw_free(&w);
    print_message("checked %lu values\n", checked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_decimals),
        cmocka_unit_test(test_sensor_values),
        cmocka_unit_test(test_random_bits),
        cmocka_unit_test(test_writer_uses_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
