/* Unit tests: JSON writer escaping, UTF-8 validation, numbers, nesting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json_writer.h"

static char *enc_string(const char *s, size_t n)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_string_n(&w, s, n);
    return ccgw_jw_take(&w, NULL);
}

static void test_escapes(void **st)
{
    (void)st;
    char *out = enc_string("a\"b\\c\n\r\t\b\f\x01\x1f", 12);
    assert_string_equal(out, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\"");
    free(out);
    /* '/' and DEL pass through */
    out = enc_string("a/b\x7f", 4);
    assert_string_equal(out, "\"a/b\x7f\"");
    free(out);
}

static void test_utf8_valid_passthrough(void **st)
{
    (void)st;
    const char *s = "温度 25°C \xF0\x9F\x94\xA5"; /* CJK, degree sign, 4-byte emoji */
    char *out = enc_string(s, strlen(s));
    char expect[64];
    snprintf(expect, sizeof expect, "\"%s\"", s);
    assert_string_equal(out, expect);
    free(out);
}

static void test_utf8_invalid_replaced(void **st)
{
    (void)st;
    struct {
        const char *in;
        size_t n;
        const char *out;
    } cases[] = {
        {"a\xff" "b", 3, "\"a\xEF\xBF\xBD" "b\""},              /* invalid byte */
        {"\xC0\xAF", 2, "\"\xEF\xBF\xBD\xEF\xBF\xBD\""},           /* overlong '/' */
        {"\xE0\x80\xAF", 3, "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""}, /* overlong 3-byte */
        {"\xED\xA0\x80", 3, "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""}, /* surrogate D800 */
        {"\xF4\x90\x80\x80", 4, "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""}, /* > U+10FFFF */
        {"ab\xE4\xB8", 4, "\"ab\xEF\xBF\xBD\xEF\xBF\xBD\""},      /* truncated at the end */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = enc_string(cases[i].in, cases[i].n);
        assert_string_equal(out, cases[i].out);
        /* and it is valid JSON that jansson reads back */
        json_error_t e;
        json_t *j = json_loads(out, JSON_DECODE_ANY, &e);
        assert_non_null(j);
        json_decref(j);
        free(out);
    }
}

static void test_embedded_nul_and_line_separators(void **st)
{
    (void)st;
    char *out = enc_string("a\0b", 3);
    assert_string_equal(out, "\"a\\u0000b\"");
    free(out);
    out = enc_string("x\xE2\x80\xA8y\xE2\x80\xA9", 8);
    assert_string_equal(out, "\"x\\u2028y\\u2029\"");
    free(out);
}

static void test_numbers(void **st)
{
    (void)st;
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_array(&w);
    ccgw_jw_double(&w, 22.4);
    ccgw_jw_double(&w, 0.1 + 0.2);
    ccgw_jw_double(&w, -0.0);
    ccgw_jw_double(&w, 1e300);
    ccgw_jw_double(&w, NAN);
    ccgw_jw_double(&w, INFINITY);
    ccgw_jw_int(&w, INT64_MIN);
    ccgw_jw_end_array(&w);
    assert_false(w.error);
    assert_string_equal(w.buf, "[22.4,0.30000000000000004,-0,1e+300,null,null,-9223372036854775808]");
    json_error_t e;
    json_t *j = json_loads(w.buf, 0, &e);
    assert_non_null(j);
    assert_true(json_real_value(json_array_get(j, 1)) == 0.1 + 0.2);
    json_decref(j);
    ccgw_jw_reset(&w);
    ccgw_jw_uint(&w, UINT64_MAX);
    assert_string_equal(w.buf, "18446744073709551615");
    ccgw_jw_free(&w);
}

static void test_objects_and_values(void **st)
{
    (void)st;
    ccgw_value_t inner[] = {CCGW_V_STRING("name", "张三"), CCGW_V_INT("n", 3)};
    ccgw_value_t vals[] = {CCGW_V_BOOL("b", true), CCGW_V_DOUBLE("t", 21.5, "Cel"),
                           CCGW_V_NULL("z"), CCGW_V_OBJECT("o", inner, 2)};
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    for (size_t i = 0; i < 4; i++) {
        ccgw_jw_key(&w, vals[i].name);
        ccgw_jw_value(&w, &vals[i]);
    }
    ccgw_jw_key(&w, "empty");
    ccgw_jw_begin_object(&w);
    ccgw_jw_end_object(&w);
    ccgw_jw_key(&w, "list");
    ccgw_jw_begin_array(&w);
    ccgw_jw_string(&w, "a");
    ccgw_jw_bool(&w, false);
    ccgw_jw_end_array(&w);
    ccgw_jw_end_object(&w);
    assert_string_equal(w.buf, "{\"b\":true,\"t\":21.5,\"z\":null,\"o\":{\"name\":\"张三\",\"n\":3},"
                               "\"empty\":{},\"list\":[\"a\",false]}");
    ccgw_jw_free(&w);
}

static void test_depth_limit(void **st)
{
    (void)st;
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    for (int i = 0; i < CCGW_JW_MAX_DEPTH + 2; i++)
        ccgw_jw_begin_array(&w);
    assert_true(w.error);
    size_t len;
    assert_null(ccgw_jw_take(&w, &len));
}

static void test_escape_helper(void **st)
{
    (void)st;
    char out[16];
    assert_int_equal(ccgw_json_escape(out, sizeof out, "a\"b"), 6);
    assert_string_equal(out, "\"a\\\"b\"");
    assert_int_equal(ccgw_json_escape(out, 4, "toolong"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_utf8_valid_passthrough),
        cmocka_unit_test(test_utf8_invalid_replaced),
        cmocka_unit_test(test_embedded_nul_and_line_separators),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_objects_and_values),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_escape_helper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
