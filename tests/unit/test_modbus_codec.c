/*
 * test_modbus_codec - the modbus plugin's pure code (plugins/modbus/modbus_codec.c):
 * every type in both word and both byte orders, scale/offset, negative
 * numbers, rounding and range/fit checks on write, float32 NaN/inf, the block
 * planner (protocol limits, gaps, overlaps, tables) and the name checks.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "modbus_codec.h"

static mb_format_t fmt(mb_type_t t, mb_order_t wo, mb_order_t bo, double scale, double offset)
{
    mb_format_t f = {t, wo, bo, scale, offset};
    return f;
}

#define BIG MB_ORDER_BIG
#define LIT MB_ORDER_LITTLE

/* Exact double comparison (the codec promises exact results for these). */
#define assert_double_exact(a, b) assert_true((double)(a) == (double)(b))

/* ---- names, tables, types ------------------------------------------------ */

static void test_lookup(void **state)
{
    (void)state;
    assert_int_equal(mb_lookup(mb_table_names, "coil"), MB_TABLE_COIL);
    assert_int_equal(mb_lookup(mb_table_names, "discrete"), MB_TABLE_DISCRETE);
    assert_int_equal(mb_lookup(mb_table_names, "holding"), MB_TABLE_HOLDING);
    assert_int_equal(mb_lookup(mb_table_names, "input"), MB_TABLE_INPUT);
    assert_int_equal(mb_lookup(mb_type_names, "bool"), MB_TYPE_BOOL);
    assert_int_equal(mb_lookup(mb_type_names, "int16"), MB_TYPE_INT16);
    assert_int_equal(mb_lookup(mb_type_names, "uint16"), MB_TYPE_UINT16);
    assert_int_equal(mb_lookup(mb_type_names, "int32"), MB_TYPE_INT32);
    assert_int_equal(mb_lookup(mb_type_names, "uint32"), MB_TYPE_UINT32);
    assert_int_equal(mb_lookup(mb_type_names, "float32"), MB_TYPE_FLOAT32);
    assert_int_equal(mb_lookup(mb_type_names, "bitfield"), MB_TYPE_BITFIELD);
    assert_int_equal(mb_lookup(mb_order_names, "big"), MB_ORDER_BIG);
    assert_int_equal(mb_lookup(mb_order_names, "little"), MB_ORDER_LITTLE);
    assert_int_equal(mb_lookup(mb_type_names, "float64"), -1);
    assert_int_equal(mb_lookup(mb_type_names, "Int16"), -1);
    assert_int_equal(mb_lookup(mb_type_names, NULL), -1);
}

static void test_tables(void **state)
{
    (void)state;
    assert_true(mb_table_is_bits(MB_TABLE_COIL));
    assert_true(mb_table_is_bits(MB_TABLE_DISCRETE));
    assert_false(mb_table_is_bits(MB_TABLE_HOLDING));
    assert_false(mb_table_is_bits(MB_TABLE_INPUT));
    assert_true(mb_table_is_writable(MB_TABLE_COIL));
    assert_true(mb_table_is_writable(MB_TABLE_HOLDING));
    assert_false(mb_table_is_writable(MB_TABLE_DISCRETE));
    assert_false(mb_table_is_writable(MB_TABLE_INPUT));
    assert_int_equal(mb_table_max_read(MB_TABLE_COIL), 2000);
    assert_int_equal(mb_table_max_read(MB_TABLE_DISCRETE), 2000);
    assert_int_equal(mb_table_max_read(MB_TABLE_HOLDING), 125);
    assert_int_equal(mb_table_max_read(MB_TABLE_INPUT), 125);
    assert_int_equal(mb_read_function(MB_TABLE_COIL), 1);
    assert_int_equal(mb_read_function(MB_TABLE_DISCRETE), 2);
    assert_int_equal(mb_read_function(MB_TABLE_HOLDING), 3);
    assert_int_equal(mb_read_function(MB_TABLE_INPUT), 4);
}

static void test_write_functions(void **state)
{
    (void)state;
    assert_int_equal(mb_write_function(MB_TABLE_COIL, MB_TYPE_BOOL), 5);
    assert_int_equal(mb_write_function(MB_TABLE_COIL, MB_TYPE_UINT16), 0);
    assert_int_equal(mb_write_function(MB_TABLE_HOLDING, MB_TYPE_BOOL), 6);
    assert_int_equal(mb_write_function(MB_TABLE_HOLDING, MB_TYPE_INT16), 6);
    assert_int_equal(mb_write_function(MB_TABLE_HOLDING, MB_TYPE_UINT16), 6);
    assert_int_equal(mb_write_function(MB_TABLE_HOLDING, MB_TYPE_INT32), 16);
    assert_int_equal(mb_write_function(MB_TABLE_HOLDING, MB_TYPE_UINT32), 16);
    assert_int_equal(mb_write_function(MB_TABLE_HOLDING, MB_TYPE_FLOAT32), 16);
    assert_int_equal(mb_write_function(MB_TABLE_HOLDING, MB_TYPE_BITFIELD), 0);
    assert_int_equal(mb_write_function(MB_TABLE_INPUT, MB_TYPE_UINT16), 0);
    assert_int_equal(mb_write_function(MB_TABLE_DISCRETE, MB_TYPE_BOOL), 0);
}

static void test_types(void **state)
{
    (void)state;
    assert_int_equal(mb_type_registers(MB_TYPE_BOOL), 1);
    assert_int_equal(mb_type_registers(MB_TYPE_INT16), 1);
    assert_int_equal(mb_type_registers(MB_TYPE_UINT16), 1);
    assert_int_equal(mb_type_registers(MB_TYPE_BITFIELD), 1);
    assert_int_equal(mb_type_registers(MB_TYPE_INT32), 2);
    assert_int_equal(mb_type_registers(MB_TYPE_UINT32), 2);
    assert_int_equal(mb_type_registers(MB_TYPE_FLOAT32), 2);
    assert_true(mb_type_is_integer(MB_TYPE_INT16));
    assert_true(mb_type_is_integer(MB_TYPE_UINT32));
    assert_false(mb_type_is_integer(MB_TYPE_BOOL));
    assert_false(mb_type_is_integer(MB_TYPE_FLOAT32));
    assert_false(mb_type_is_integer(MB_TYPE_BITFIELD));
    /* bit tables hold only bool; register tables everything */
    assert_true(mb_type_fits_table(MB_TYPE_BOOL, MB_TABLE_COIL));
    assert_true(mb_type_fits_table(MB_TYPE_BOOL, MB_TABLE_DISCRETE));
    assert_false(mb_type_fits_table(MB_TYPE_INT16, MB_TABLE_COIL));
    assert_false(mb_type_fits_table(MB_TYPE_FLOAT32, MB_TABLE_DISCRETE));
    assert_false(mb_type_fits_table(MB_TYPE_BITFIELD, MB_TABLE_COIL));
    for (int t = 0; t < MB_TYPE_COUNT; t++) {
        assert_true(mb_type_fits_table((mb_type_t)t, MB_TABLE_HOLDING));
        assert_true(mb_type_fits_table((mb_type_t)t, MB_TABLE_INPUT));
    }
}

/* ---- word and byte order ---------------------------------------------------- */

static void test_word_byte_order(void **state)
{
    (void)state;
    uint16_t w[2];
    const uint16_t bb[2] = {0x1122, 0x3344}; /* big word, big byte */
    const uint16_t lb[2] = {0x3344, 0x1122}; /* little word, big byte */
    const uint16_t bl[2] = {0x2211, 0x4433}; /* big word, little byte */
    const uint16_t ll[2] = {0x4433, 0x2211}; /* little word, little byte */

    assert_int_equal(mb_swap16(0x1234), 0x3412);
    assert_int_equal(mb_words_to_u32(bb, BIG, BIG), 0x11223344u);
    assert_int_equal(mb_words_to_u32(lb, LIT, BIG), 0x11223344u);
    assert_int_equal(mb_words_to_u32(bl, BIG, LIT), 0x11223344u);
    assert_int_equal(mb_words_to_u32(ll, LIT, LIT), 0x11223344u);

    mb_u32_to_words(0x11223344u, BIG, BIG, w);
    assert_memory_equal(w, bb, sizeof w);
    mb_u32_to_words(0x11223344u, LIT, BIG, w);
    assert_memory_equal(w, lb, sizeof w);
    mb_u32_to_words(0x11223344u, BIG, LIT, w);
    assert_memory_equal(w, bl, sizeof w);
    mb_u32_to_words(0x11223344u, LIT, LIT, w);
    assert_memory_equal(w, ll, sizeof w);
}

/* ---- decoding --------------------------------------------------------------- */

static int64_t dec_i(mb_type_t t, mb_order_t wo, mb_order_t bo, uint16_t w0, uint16_t w1)
{
    mb_format_t f = fmt(t, wo, bo, 1, 0);
    uint16_t w[2] = {w0, w1};
    mb_raw_t r = mb_decode_words(&f, w);
    assert_false(r.is_float);
    assert_double_exact(r.f, (double)r.i);
    return r.i;
}

static double dec_f(mb_order_t wo, mb_order_t bo, uint16_t w0, uint16_t w1)
{
    mb_format_t f = fmt(MB_TYPE_FLOAT32, wo, bo, 1, 0);
    uint16_t w[2] = {w0, w1};
    mb_raw_t r = mb_decode_words(&f, w);
    assert_true(r.is_float);
    return r.f;
}

static void test_decode_bool(void **state)
{
    (void)state;
    assert_int_equal(dec_i(MB_TYPE_BOOL, BIG, BIG, 0, 0), 0);
    assert_int_equal(dec_i(MB_TYPE_BOOL, BIG, BIG, 1, 0), 1);
    assert_int_equal(dec_i(MB_TYPE_BOOL, BIG, BIG, 0x8000, 0), 1);
    assert_int_equal(dec_i(MB_TYPE_BOOL, BIG, LIT, 0x0100, 0), 1);
}

static void test_decode_int16(void **state)
{
    (void)state;
    assert_int_equal(dec_i(MB_TYPE_INT16, BIG, BIG, 0x00EB, 0), 235);
    assert_int_equal(dec_i(MB_TYPE_INT16, BIG, BIG, 0xFFFF, 0), -1);
    assert_int_equal(dec_i(MB_TYPE_INT16, BIG, BIG, 0xFFC9, 0), -55);
    assert_int_equal(dec_i(MB_TYPE_INT16, BIG, BIG, 0x8000, 0), -32768);
    assert_int_equal(dec_i(MB_TYPE_INT16, BIG, BIG, 0x7FFF, 0), 32767);
    /* little byte order: the register's bytes are swapped */
    assert_int_equal(dec_i(MB_TYPE_INT16, BIG, LIT, 0xEB00, 0), 235);
    assert_int_equal(dec_i(MB_TYPE_INT16, BIG, LIT, 0x0180, 0), -32767);
    /* word order does not matter for 16-bit types */
    assert_int_equal(dec_i(MB_TYPE_INT16, LIT, BIG, 0xFFC9, 0x1234), -55);
}

static void test_decode_uint16(void **state)
{
    (void)state;
    assert_int_equal(dec_i(MB_TYPE_UINT16, BIG, BIG, 0xFFFF, 0), 65535);
    assert_int_equal(dec_i(MB_TYPE_UINT16, BIG, BIG, 0x01F4, 0), 500);
    assert_int_equal(dec_i(MB_TYPE_UINT16, BIG, LIT, 0xF401, 0), 500);
    assert_int_equal(dec_i(MB_TYPE_UINT16, LIT, BIG, 0x8000, 0), 32768);
}

static void test_decode_int32(void **state)
{
    (void)state;
    assert_int_equal(dec_i(MB_TYPE_INT32, BIG, BIG, 0xFFFF, 0xFFFE), -2);
    assert_int_equal(dec_i(MB_TYPE_INT32, LIT, BIG, 0xFFFE, 0xFFFF), -2);
    assert_int_equal(dec_i(MB_TYPE_INT32, BIG, LIT, 0xFFFF, 0xFEFF), -2);
    assert_int_equal(dec_i(MB_TYPE_INT32, LIT, LIT, 0xFEFF, 0xFFFF), -2);
    assert_int_equal(dec_i(MB_TYPE_INT32, BIG, BIG, 0x8000, 0x0000), INT32_MIN);
    assert_int_equal(dec_i(MB_TYPE_INT32, BIG, BIG, 0x7FFF, 0xFFFF), INT32_MAX);
    assert_int_equal(dec_i(MB_TYPE_INT32, BIG, BIG, 0x0001, 0x0000), 65536);
    assert_int_equal(dec_i(MB_TYPE_INT32, LIT, BIG, 0x0000, 0x0001), 65536);
}

static void test_decode_uint32(void **state)
{
    (void)state;
    /* the simulator's run_time: high word at the lower address */
    assert_int_equal(dec_i(MB_TYPE_UINT32, BIG, BIG, 0x0001, 0x86A0), 100000);
    assert_int_equal(dec_i(MB_TYPE_UINT32, LIT, BIG, 0x86A0, 0x0001), 100000);
    assert_int_equal(dec_i(MB_TYPE_UINT32, BIG, LIT, 0x0100, 0xA086), 100000);
    assert_int_equal(dec_i(MB_TYPE_UINT32, LIT, LIT, 0xA086, 0x0100), 100000);
    assert_int_equal(dec_i(MB_TYPE_UINT32, BIG, BIG, 0xFFFF, 0xFFFF), 4294967295LL);
}

static void test_decode_float32(void **state)
{
    (void)state;
    /* 23.5f = 0x41BC0000 */
    assert_double_exact(dec_f(BIG, BIG, 0x41BC, 0x0000), 23.5);
    assert_double_exact(dec_f(LIT, BIG, 0x0000, 0x41BC), 23.5); /* sensor: low word first */
    assert_double_exact(dec_f(BIG, LIT, 0xBC41, 0x0000), 23.5);
    assert_double_exact(dec_f(LIT, LIT, 0x0000, 0xBC41), 23.5);
    /* -1.5f = 0xBFC00000 */
    assert_double_exact(dec_f(BIG, BIG, 0xBFC0, 0x0000), -1.5);
    /* 0x449A522B = 1234.5677490234375: its shortest round-trip decimal */
    assert_double_exact(dec_f(BIG, BIG, 0x449A, 0x522B), 1234.5677);
    /* 22.1f = 0x41B0CCCD: 22.1, not 22.100000381469727 */
    assert_double_exact(dec_f(BIG, BIG, 0x41B0, 0xCCCD), 22.1);
    assert_double_exact(dec_f(LIT, BIG, 0xCCCD, 0x41B0), 22.1);
    assert_double_exact(dec_f(BIG, BIG, 0x0000, 0x0000), 0.0);
}

static void test_float_shortest(void **state)
{
    (void)state;
    assert_double_exact(mb_float_shortest(22.1f), 22.1);
    assert_double_exact(mb_float_shortest(0.1f), 0.1);
    assert_double_exact(mb_float_shortest(-1.5f), -1.5);
    assert_double_exact(mb_float_shortest(0.0f), 0.0);
    assert_double_exact(mb_float_shortest(16777217.0f), 16777216.0);
    assert_true(isnan(mb_float_shortest(NAN)));
    assert_true(isinf(mb_float_shortest(INFINITY)));
    /* always the same float back, for a spread of bit patterns */
    for (uint32_t u = 0x00000001u; u < 0x7F800000u; u += 0x00F0F0F1u) {
        float fl;
        memcpy(&fl, &u, sizeof fl);
        assert_true((float)mb_float_shortest(fl) == fl);
    }
}

static void test_decode_float32_nan_inf(void **state)
{
    (void)state;
    assert_true(isnan(dec_f(BIG, BIG, 0x7FC0, 0x0000)));
    assert_true(isnan(dec_f(BIG, BIG, 0xFFFF, 0xFFFF)));
    assert_true(isinf(dec_f(BIG, BIG, 0x7F80, 0x0000)));
    assert_true(dec_f(BIG, BIG, 0xFF80, 0x0000) < 0);
    assert_true(isinf(dec_f(BIG, BIG, 0xFF80, 0x0000)));
    /* NaN survives scale/offset (the core publishes it as null) */
    mb_format_t f = fmt(MB_TYPE_FLOAT32, BIG, BIG, 0.1, 5);
    uint16_t w[2] = {0x7FC0, 0};
    assert_true(isnan(mb_raw_to_eng(&f, mb_decode_words(&f, w))));
}

static void test_decode_bitfield(void **state)
{
    (void)state;
    mb_format_t f = fmt(MB_TYPE_BITFIELD, BIG, BIG, 1, 0);
    uint16_t w[2] = {0x000B, 0}; /* running, fault, high_temperature */
    mb_raw_t r = mb_decode_words(&f, w);
    assert_int_equal(r.i, 0x000B);
    assert_true(mb_bit((uint16_t)r.i, 0));
    assert_true(mb_bit((uint16_t)r.i, 1));
    assert_false(mb_bit((uint16_t)r.i, 2));
    assert_true(mb_bit((uint16_t)r.i, 3));
    assert_true(mb_bit(0x8000, 15));
    assert_false(mb_bit(0x7FFF, 15));
    assert_false(mb_bit(0xFFFF, 16)); /* out of range: never set */
    /* byte order applies to bitfields too */
    f.byte_order = LIT;
    w[0] = 0x0B00;
    assert_int_equal(mb_decode_words(&f, w).i, 0x000B);
    /* scale never applies to bitfields or bools */
    f.scale = 0.1;
    assert_double_exact(mb_raw_to_eng(&f, mb_decode_words(&f, w)), 11.0);
}

/* ---- scale and offset --------------------------------------------------------- */

static void test_scale_offset(void **state)
{
    (void)state;
    /* a reciprocal scale divides: 3 * 0.1 would give 0.30000000000000004 */
    assert_double_exact(mb_apply_scale(3, 0.1, 0), 0.3);
    assert_double_exact(mb_apply_scale(-388, 0.1, 0), -38.8);
    assert_double_exact(mb_apply_scale(35, 0.01, 0), 0.35);
    assert_double_exact(mb_apply_scale(235, 0.1, 0), 23.5);
    assert_double_exact(mb_apply_scale(-55, 0.1, 0), -5.5);
    assert_double_exact(mb_apply_scale(231, 0.1, 0), 23.1);
    assert_double_exact(mb_apply_scale(12345, 0.01, 0), 123.45);
    assert_double_exact(mb_apply_scale(10, 0.25, 0), 2.5);
    assert_double_exact(mb_apply_scale(3, 2, 0), 6);
    assert_double_exact(mb_apply_scale(3, 1, 0), 3);
    assert_double_exact(mb_apply_scale(3, -1, 0), -3);
    assert_double_exact(mb_apply_scale(100, 0.1, -40), -30);
    assert_double_exact(mb_apply_scale(0, 1, 273.15), 273.15);
    assert_float_equal(mb_apply_scale(7, 0.3, 0), 2.1, 1e-12); /* not a reciprocal: multiplies */
    assert_true(isnan(mb_apply_scale(NAN, 0.1, 1)));

    mb_format_t f = fmt(MB_TYPE_INT16, BIG, BIG, 0.1, 0);
    uint16_t w[2] = {0xFFC9, 0};
    assert_double_exact(mb_raw_to_eng(&f, mb_decode_words(&f, w)), -5.5);
    f = fmt(MB_TYPE_UINT32, BIG, BIG, 0.001, 0);
    w[0] = 0x0001;
    w[1] = 0x86A0;
    assert_double_exact(mb_raw_to_eng(&f, mb_decode_words(&f, w)), 100.0);
    f = fmt(MB_TYPE_BOOL, BIG, BIG, 0.1, 3);
    w[0] = 1;
    assert_double_exact(mb_raw_to_eng(&f, mb_decode_words(&f, w)), 1.0);
}

static void test_integral(void **state)
{
    (void)state;
    mb_format_t f = fmt(MB_TYPE_UINT16, BIG, BIG, 1, 0);
    assert_true(mb_format_is_integral(&f));
    f.scale = 0.1;
    assert_false(mb_format_is_integral(&f));
    f = fmt(MB_TYPE_INT32, BIG, BIG, 1, 1);
    assert_false(mb_format_is_integral(&f));
    f = fmt(MB_TYPE_FLOAT32, BIG, BIG, 1, 0);
    assert_false(mb_format_is_integral(&f));
    f = fmt(MB_TYPE_BOOL, BIG, BIG, 1, 0);
    assert_false(mb_format_is_integral(&f));
}

/* ---- encoding ------------------------------------------------------------------ */

static mb_enc_err_t enc(mb_format_t f, const mb_limits_t *lim, double eng, mb_raw_t *raw,
                        uint16_t w[2])
{
    return mb_encode_eng(&f, lim, eng, raw, w);
}

static void test_encode_int16_scaled(void **state)
{
    (void)state;
    mb_raw_t r;
    uint16_t w[2];
    mb_format_t f = fmt(MB_TYPE_INT16, BIG, BIG, 0.1, 0);

    assert_int_equal(enc(f, NULL, 23.5, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, 235);
    assert_false(r.is_float);
    assert_int_equal(w[0], 0x00EB);
    assert_int_equal(w[1], 0);
    assert_int_equal(enc(f, NULL, -5.5, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, -55);
    assert_int_equal(w[0], 0xFFC9);
    f.byte_order = LIT;
    assert_int_equal(enc(f, NULL, 23.5, &r, w), MB_ENC_OK);
    assert_int_equal(w[0], 0xEB00);
}

static void test_encode_rounding(void **state)
{
    (void)state;
    mb_raw_t r;
    uint16_t w[2];
    mb_format_t f = fmt(MB_TYPE_INT16, BIG, BIG, 0.1, 0);

    assert_int_equal(enc(f, NULL, 23.45, &r, w), MB_ENC_OK); /* 234.5 -> half away from zero */
    assert_int_equal(r.i, 235);
    assert_int_equal(enc(f, NULL, 23.44, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, 234);
    assert_int_equal(enc(f, NULL, 23.46, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, 235);
    assert_int_equal(enc(f, NULL, -23.45, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, -235);
    assert_int_equal(enc(f, NULL, 0.04, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, 0);
    f = fmt(MB_TYPE_UINT16, BIG, BIG, 0.01, 0);
    assert_int_equal(enc(f, NULL, 0.29, &r, w), MB_ENC_OK); /* 28.999999999999996 */
    assert_int_equal(r.i, 29);
    /* float noise must not decide a half: 1.005 * 100 is 100.49999999999999 */
    assert_int_equal(enc(f, NULL, 1.005, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, 101);
    assert_int_equal(enc(f, NULL, 0.285, &r, w), MB_ENC_OK); /* 28.499999999999996 */
    assert_int_equal(r.i, 29);
    f = fmt(MB_TYPE_UINT16, BIG, BIG, 1, 0);
    assert_int_equal(enc(f, NULL, 2.5, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, 3);
    assert_int_equal(enc(f, NULL, 2.4999, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, 2);
}

static void test_encode_offset(void **state)
{
    (void)state;
    mb_raw_t r;
    uint16_t w[2];
    mb_format_t f = fmt(MB_TYPE_UINT16, BIG, BIG, 0.1, -40);

    assert_int_equal(enc(f, NULL, 20, &r, w), MB_ENC_OK); /* (20 + 40) / 0.1 */
    assert_int_equal(r.i, 600);
    assert_int_equal(w[0], 600);
    assert_double_exact(mb_eng_to_raw_exact(&f, -30), 100);
    /* below the offset: negative raw does not fit uint16 */
    assert_int_equal(enc(f, NULL, -41, &r, w), MB_ENC_NO_FIT);
    f = fmt(MB_TYPE_INT16, BIG, BIG, 2, 1);
    assert_int_equal(enc(f, NULL, 11, &r, w), MB_ENC_OK); /* (11 - 1) / 2 */
    assert_int_equal(r.i, 5);
}

static void test_encode_range(void **state)
{
    (void)state;
    mb_raw_t r = {0};
    uint16_t w[2] = {0x5555, 0x5555};
    mb_format_t f = fmt(MB_TYPE_INT16, BIG, BIG, 0.1, 0);
    mb_limits_t lim = {true, true, 16, 32};

    assert_int_equal(enc(f, &lim, 15.9, &r, w), MB_ENC_BELOW_MIN);
    assert_int_equal(w[0], 0); /* words cleared on failure */
    assert_int_equal(enc(f, &lim, 32.1, &r, w), MB_ENC_ABOVE_MAX);
    assert_int_equal(enc(f, &lim, 16, &r, w), MB_ENC_OK); /* inclusive */
    assert_int_equal(r.i, 160);
    assert_int_equal(enc(f, &lim, 32, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, 320);
    assert_int_equal(enc(f, &lim, -100, &r, w), MB_ENC_BELOW_MIN);
    /* only one bound */
    mb_limits_t only_max = {false, true, 0, 10};
    assert_int_equal(enc(f, &only_max, -1000, &r, w), MB_ENC_OK);
    assert_int_equal(enc(f, &only_max, 10.01, &r, w), MB_ENC_ABOVE_MAX);
    mb_limits_t only_min = {true, false, -5, 0};
    assert_int_equal(enc(f, &only_min, -5.01, &r, w), MB_ENC_BELOW_MIN);
    assert_int_equal(enc(f, &only_min, 3000, &r, w), MB_ENC_OK);
    assert_string_equal(mb_enc_strerror(MB_ENC_ABOVE_MAX), "value above max");
}

static void test_encode_fit(void **state)
{
    (void)state;
    mb_raw_t r;
    uint16_t w[2];

    mb_format_t f = fmt(MB_TYPE_UINT16, BIG, BIG, 1, 0);
    assert_int_equal(enc(f, NULL, -1, &r, w), MB_ENC_NO_FIT);
    assert_int_equal(enc(f, NULL, 65535, &r, w), MB_ENC_OK);
    assert_int_equal(w[0], 0xFFFF);
    assert_int_equal(enc(f, NULL, 65535.4, &r, w), MB_ENC_OK);
    assert_int_equal(enc(f, NULL, 65535.5, &r, w), MB_ENC_NO_FIT);
    assert_int_equal(enc(f, NULL, 65536, &r, w), MB_ENC_NO_FIT);
    assert_int_equal(enc(f, NULL, -0.4, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, 0);

    f = fmt(MB_TYPE_INT16, BIG, BIG, 1, 0);
    assert_int_equal(enc(f, NULL, 32767, &r, w), MB_ENC_OK);
    assert_int_equal(enc(f, NULL, 32767.5, &r, w), MB_ENC_NO_FIT);
    assert_int_equal(enc(f, NULL, -32768, &r, w), MB_ENC_OK);
    assert_int_equal(w[0], 0x8000);
    assert_int_equal(enc(f, NULL, -32768.5, &r, w), MB_ENC_NO_FIT);
    f.scale = 0.1;
    assert_int_equal(enc(f, NULL, 3276.7, &r, w), MB_ENC_OK);
    assert_int_equal(enc(f, NULL, 3276.8, &r, w), MB_ENC_NO_FIT);

    f = fmt(MB_TYPE_UINT32, BIG, BIG, 1, 0);
    assert_int_equal(enc(f, NULL, 4294967295.0, &r, w), MB_ENC_OK);
    assert_int_equal(w[0], 0xFFFF);
    assert_int_equal(w[1], 0xFFFF);
    assert_int_equal(enc(f, NULL, 4294967296.0, &r, w), MB_ENC_NO_FIT);
    assert_int_equal(enc(f, NULL, -1, &r, w), MB_ENC_NO_FIT);

    f = fmt(MB_TYPE_INT32, BIG, BIG, 1, 0);
    assert_int_equal(enc(f, NULL, -2147483648.0, &r, w), MB_ENC_OK);
    assert_int_equal(w[0], 0x8000);
    assert_int_equal(w[1], 0x0000);
    assert_int_equal(enc(f, NULL, 2147483648.0, &r, w), MB_ENC_NO_FIT);
    assert_int_equal(enc(f, NULL, -2, &r, w), MB_ENC_OK);
    assert_int_equal(w[0], 0xFFFF);
    assert_int_equal(w[1], 0xFFFE);
    f.word_order = LIT;
    assert_int_equal(enc(f, NULL, -2, &r, w), MB_ENC_OK);
    assert_int_equal(w[0], 0xFFFE);
    assert_int_equal(w[1], 0xFFFF);
    f.byte_order = LIT;
    assert_int_equal(enc(f, NULL, 65536, &r, w), MB_ENC_OK);
    assert_int_equal(w[0], 0x0000);
    assert_int_equal(w[1], 0x0100);
}

static void test_encode_float32(void **state)
{
    (void)state;
    mb_raw_t r;
    uint16_t w[2];
    mb_format_t f = fmt(MB_TYPE_FLOAT32, BIG, BIG, 1, 0);

    assert_int_equal(enc(f, NULL, 23.5, &r, w), MB_ENC_OK);
    assert_true(r.is_float);
    assert_double_exact(r.f, 23.5);
    assert_int_equal(w[0], 0x41BC);
    assert_int_equal(w[1], 0x0000);
    f.word_order = LIT;
    assert_int_equal(enc(f, NULL, 23.5, &r, w), MB_ENC_OK);
    assert_int_equal(w[0], 0x0000);
    assert_int_equal(w[1], 0x41BC);
    f.byte_order = LIT;
    assert_int_equal(enc(f, NULL, -1.5, &r, w), MB_ENC_OK);
    assert_int_equal(w[0], 0x0000);
    assert_int_equal(w[1], 0xC0BF);
    /* no rounding to integers; the raw value is the float actually sent */
    f = fmt(MB_TYPE_FLOAT32, BIG, BIG, 1, 0);
    assert_int_equal(enc(f, NULL, 0.1, &r, w), MB_ENC_OK);
    assert_double_exact(r.f, 0.1); /* the float sent, as its shortest decimal */
    assert_int_equal(w[0], 0x3DCC);
    assert_int_equal(w[1], 0xCCCD);
    /* scale applies to floats too */
    f.scale = 10;
    assert_int_equal(enc(f, NULL, 100, &r, w), MB_ENC_OK);
    assert_double_exact(r.f, 10.0);
    /* too large for a float */
    f.scale = 1;
    assert_int_equal(enc(f, NULL, 1e39, &r, w), MB_ENC_NO_FIT);
    assert_int_equal(enc(f, NULL, -1e39, &r, w), MB_ENC_NO_FIT);
}

static void test_encode_not_finite(void **state)
{
    (void)state;
    mb_raw_t r;
    uint16_t w[2];
    for (int t = 0; t < MB_TYPE_COUNT; t++) {
        if (t == MB_TYPE_BITFIELD)
            continue;
        mb_format_t f = fmt((mb_type_t)t, BIG, BIG, 1, 0);
        assert_int_equal(enc(f, NULL, NAN, &r, w), MB_ENC_NOT_FINITE);
        assert_int_equal(enc(f, NULL, INFINITY, &r, w), MB_ENC_NOT_FINITE);
        assert_int_equal(enc(f, NULL, -INFINITY, &r, w), MB_ENC_NOT_FINITE);
    }
    /* a scale so small that raw overflows */
    mb_format_t f = fmt(MB_TYPE_FLOAT32, BIG, BIG, 1e-320, 0);
    assert_int_equal(enc(f, NULL, 1e300, &r, w), MB_ENC_NO_FIT);
}

static void test_encode_bool_bitfield(void **state)
{
    (void)state;
    mb_raw_t r;
    uint16_t w[2];
    mb_format_t f = fmt(MB_TYPE_BOOL, BIG, BIG, 1, 0);
    mb_limits_t lim = {true, true, 5, 6}; /* ignored for bool */

    assert_int_equal(enc(f, &lim, 1, &r, w), MB_ENC_OK);
    assert_int_equal(r.i, 1);
    assert_int_equal(w[0], 1);
    assert_int_equal(enc(f, &lim, 0, &r, w), MB_ENC_OK);
    assert_int_equal(w[0], 0);
    assert_int_equal(enc(f, NULL, 2, &r, w), MB_ENC_NO_FIT);
    assert_int_equal(enc(f, NULL, 0.5, &r, w), MB_ENC_NO_FIT);
    assert_int_equal(enc(f, NULL, -1, &r, w), MB_ENC_NO_FIT);

    f = fmt(MB_TYPE_BITFIELD, BIG, BIG, 1, 0);
    assert_int_equal(enc(f, NULL, 1, &r, w), MB_ENC_NOT_WRITABLE);
}

/* Every type, every order, a spread of values: decode(encode(x)) == x. */
static void test_roundtrip(void **state)
{
    (void)state;
    static const double values[] = {0, 1, -1, 2.5, -2.5, 123.4, -123.4, 3000, -3000, 65.535};
    static const double scales[] = {1, 0.1, 0.01, 2};
    for (int t = MB_TYPE_INT16; t <= MB_TYPE_FLOAT32; t++) {
        for (int wo = 0; wo < 2; wo++) {
            for (int bo = 0; bo < 2; bo++) {
                for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++) {
                    for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
                        mb_format_t f =
                            fmt((mb_type_t)t, (mb_order_t)wo, (mb_order_t)bo, scales[s], 0);
                        mb_raw_t r;
                        uint16_t w[2];
                        mb_enc_err_t e = mb_encode_eng(&f, NULL, values[v], &r, w);
                        if (e != MB_ENC_OK)
                            continue; /* negative into unsigned, fraction too fine... */
                        double back = mb_raw_to_eng(&f, mb_decode_words(&f, w));
                        double q = t == MB_TYPE_FLOAT32 ? fabs(values[v]) * 1e-6 : scales[s] / 2;
                        assert_float_equal(back, values[v], q + 1e-12);
                        if (t != MB_TYPE_FLOAT32)
                            assert_int_equal(mb_decode_words(&f, w).i, r.i);
                    }
                }
            }
        }
    }
}

/* ---- planning ------------------------------------------------------------------- */

static int plan(const mb_span_t *s, size_t n, unsigned gap, mb_block_t *b, size_t *of)
{
    return mb_plan_blocks(s, n, gap, 0, 0, b, of);
}

static void test_plan_contiguous(void **state)
{
    (void)state;
    /* the HVAC input registers: 0,1,2 single, 3-4 float32, 5-6 uint32 */
    const mb_span_t s[] = {{MB_TABLE_INPUT, 0, 1}, {MB_TABLE_INPUT, 1, 1}, {MB_TABLE_INPUT, 2, 1},
                           {MB_TABLE_INPUT, 3, 2}, {MB_TABLE_INPUT, 5, 2}};
    mb_block_t b[5];
    size_t of[5];
    assert_int_equal(plan(s, 5, 0, b, of), 1);
    assert_int_equal(b[0].table, MB_TABLE_INPUT);
    assert_int_equal(b[0].address, 0);
    assert_int_equal(b[0].count, 7);
    for (int i = 0; i < 5; i++)
        assert_int_equal(of[i], 0);
}

static void test_plan_gaps(void **state)
{
    (void)state;
    /* holding 0..3 and 10: a gap of 6 registers (4..9) */
    const mb_span_t s[] = {{MB_TABLE_HOLDING, 0, 1}, {MB_TABLE_HOLDING, 1, 1},
                           {MB_TABLE_HOLDING, 2, 1}, {MB_TABLE_HOLDING, 3, 1},
                           {MB_TABLE_HOLDING, 10, 1}};
    mb_block_t b[5];
    size_t of[5];
    assert_int_equal(plan(s, 5, 0, b, of), 2);
    assert_int_equal(b[0].address, 0);
    assert_int_equal(b[0].count, 4);
    assert_int_equal(b[1].address, 10);
    assert_int_equal(b[1].count, 1);
    assert_int_equal(of[3], 0);
    assert_int_equal(of[4], 1);
    assert_int_equal(plan(s, 5, 5, b, of), 2);
    assert_int_equal(plan(s, 5, 6, b, of), 1);
    assert_int_equal(b[0].address, 0);
    assert_int_equal(b[0].count, 11);
    assert_int_equal(of[4], 0);
    assert_int_equal(plan(s, 5, 124, b, of), 1);
}

static void test_plan_tables(void **state)
{
    (void)state;
    /* same addresses in four tables never merge; blocks sorted by table */
    const mb_span_t s[] = {{MB_TABLE_INPUT, 0, 1}, {MB_TABLE_HOLDING, 0, 1},
                           {MB_TABLE_DISCRETE, 0, 1}, {MB_TABLE_COIL, 0, 1},
                           {MB_TABLE_DISCRETE, 1, 1}};
    mb_block_t b[5];
    size_t of[5];
    assert_int_equal(plan(s, 5, 10, b, of), 4);
    assert_int_equal(b[0].table, MB_TABLE_COIL);
    assert_int_equal(b[1].table, MB_TABLE_DISCRETE);
    assert_int_equal(b[1].count, 2);
    assert_int_equal(b[2].table, MB_TABLE_HOLDING);
    assert_int_equal(b[3].table, MB_TABLE_INPUT);
    assert_int_equal(of[0], 3);
    assert_int_equal(of[1], 2);
    assert_int_equal(of[2], 1);
    assert_int_equal(of[3], 0);
    assert_int_equal(of[4], 1);
}

static void test_plan_max_registers(void **state)
{
    (void)state;
    enum { N = 130 };
    mb_span_t s[N];
    mb_block_t b[N];
    size_t of[N];
    for (int i = 0; i < N; i++)
        s[i] = (mb_span_t){MB_TABLE_HOLDING, (uint32_t)i, 1};
    assert_int_equal(plan(s, N, 0, b, of), 2);
    assert_int_equal(b[0].address, 0);
    assert_int_equal(b[0].count, 125);
    assert_int_equal(b[1].address, 125);
    assert_int_equal(b[1].count, 5);
    assert_int_equal(of[124], 0);
    assert_int_equal(of[125], 1);

    /* a 32-bit value is never split across requests: 0..123 then int32 at 124 */
    for (int i = 0; i < 124; i++)
        s[i] = (mb_span_t){MB_TABLE_INPUT, (uint32_t)i, 1};
    s[124] = (mb_span_t){MB_TABLE_INPUT, 124, 2};
    assert_int_equal(plan(s, 125, 0, b, of), 2);
    assert_int_equal(b[0].count, 124);
    assert_int_equal(b[1].address, 124);
    assert_int_equal(b[1].count, 2);
    assert_int_equal(of[124], 1);

    /* a gap is only bridged while the block stays within 125 */
    const mb_span_t g[] = {{MB_TABLE_HOLDING, 0, 1}, {MB_TABLE_HOLDING, 124, 1}};
    assert_int_equal(plan(g, 2, 124, b, of), 1);
    assert_int_equal(b[0].count, 125);
    const mb_span_t g2[] = {{MB_TABLE_HOLDING, 0, 1}, {MB_TABLE_HOLDING, 125, 1}};
    assert_int_equal(plan(g2, 2, 124, b, of), 2);

    /* a device-specific lower limit */
    for (int i = 0; i < 30; i++)
        s[i] = (mb_span_t){MB_TABLE_HOLDING, (uint32_t)i, 1};
    assert_int_equal(mb_plan_blocks(s, 30, 0, 10, 0, b, of), 3);
    assert_int_equal(b[2].address, 20);
    assert_int_equal(b[2].count, 10);
}

static void test_plan_max_bits(void **state)
{
    (void)state;
    enum { N = 2001 };
    mb_span_t *s = calloc(N, sizeof *s);
    mb_block_t *b = calloc(N, sizeof *b);
    size_t *of = calloc(N, sizeof *of);
    assert_non_null(s);
    assert_non_null(b);
    assert_non_null(of);
    for (int i = 0; i < N; i++)
        s[i] = (mb_span_t){MB_TABLE_COIL, (uint32_t)i, 1};
    assert_int_equal(plan(s, N, 0, b, of), 2);
    assert_int_equal(b[0].count, 2000);
    assert_int_equal(b[1].address, 2000);
    assert_int_equal(b[1].count, 1);
    /* the register limit does not apply to bits */
    for (int i = 0; i < 200; i++)
        s[i] = (mb_span_t){MB_TABLE_DISCRETE, (uint32_t)i, 1};
    assert_int_equal(plan(s, 200, 0, b, of), 1);
    assert_int_equal(b[0].count, 200);
    free(s);
    free(b);
    free(of);
}

static void test_plan_overlap_order(void **state)
{
    (void)state;
    /* overlapping and duplicate spans, given out of order */
    const mb_span_t s[] = {{MB_TABLE_HOLDING, 11, 1}, {MB_TABLE_HOLDING, 10, 2},
                           {MB_TABLE_HOLDING, 40, 2}, {MB_TABLE_HOLDING, 10, 1},
                           {MB_TABLE_HOLDING, 41, 1}, {MB_TABLE_HOLDING, 12, 1}};
    mb_block_t b[6];
    size_t of[6];
    assert_int_equal(plan(s, 6, 0, b, of), 2);
    assert_int_equal(b[0].address, 10);
    assert_int_equal(b[0].count, 3);
    assert_int_equal(b[1].address, 40);
    assert_int_equal(b[1].count, 2);
    assert_int_equal(of[0], 0);
    assert_int_equal(of[1], 0);
    assert_int_equal(of[2], 1);
    assert_int_equal(of[3], 0);
    assert_int_equal(of[4], 1);
    assert_int_equal(of[5], 0);
    /* every span lies inside its block */
    for (int i = 0; i < 6; i++) {
        assert_true(s[i].address >= b[of[i]].address);
        assert_true(s[i].address + s[i].count <= b[of[i]].address + b[of[i]].count);
    }
}

static void test_plan_edges(void **state)
{
    (void)state;
    mb_block_t b[2];
    size_t of[2];
    assert_int_equal(mb_plan_blocks(NULL, 0, 0, 0, 0, b, of), 0);
    const mb_span_t last[] = {{MB_TABLE_HOLDING, 65535, 1}, {MB_TABLE_HOLDING, 65534, 2}};
    assert_int_equal(plan(last, 2, 0, b, of), 1);
    assert_int_equal(b[0].address, 65534);
    assert_int_equal(b[0].count, 2);
    const mb_span_t past[] = {{MB_TABLE_HOLDING, 65535, 2}};
    assert_int_equal(plan(past, 1, 0, b, of), -1);
    const mb_span_t zero[] = {{MB_TABLE_HOLDING, 5, 0}};
    assert_int_equal(plan(zero, 1, 0, b, of), -1);
    const mb_span_t big[] = {{MB_TABLE_HOLDING, 0, 126}};
    assert_int_equal(plan(big, 1, 0, b, of), -1);
    const mb_span_t addr[] = {{MB_TABLE_HOLDING, 70000, 1}};
    assert_int_equal(plan(addr, 1, 0, b, of), -1);
}

/* ---- names ---------------------------------------------------------------------- */

static void test_exception_text(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(mb_exception_name(1), "illegal function");
    assert_string_equal(mb_exception_name(2), "illegal data address");
    assert_string_equal(mb_exception_name(3), "illegal data value");
    assert_string_equal(mb_exception_name(4), "server device failure");
    assert_string_equal(mb_exception_name(6), "server device busy");
    assert_string_equal(mb_exception_name(11), "gateway target device failed to respond");
    assert_null(mb_exception_name(0));
    assert_null(mb_exception_name(9));
    assert_null(mb_exception_name(99));
    assert_string_equal(mb_exception_text(2, buf, sizeof buf),
                        "modbus exception 2: illegal data address");
    assert_string_equal(mb_exception_text(99, buf, sizeof buf), "modbus exception 99");
    char small[12];
    mb_exception_text(2, small, sizeof small);
    assert_string_equal(small, "modbus exce");
}

static void test_names(void **state)
{
    (void)state;
    assert_true(mb_is_id("room1-ac1"));
    assert_true(mb_is_id("a.b_c-9"));
    assert_false(mb_is_id("Room1"));
    assert_false(mb_is_id("room 1"));
    assert_false(mb_is_id("room/1"));
    assert_false(mb_is_id(""));
    assert_false(mb_is_id(NULL));
    assert_true(mb_is_value_name("supply_air.temperature"));
    assert_true(mb_is_value_name("Temp-1"));
    assert_false(mb_is_value_name("a b"));
    assert_false(mb_is_value_name("a\"b"));
    assert_true(mb_is_command_name("hvac.set_setpoint"));
    assert_false(mb_is_command_name("hvac-start"));
    assert_false(mb_is_command_name("Hvac.start"));
    assert_true(mb_is_reserved_state_name("online"));
    assert_true(mb_is_reserved_state_name("reason"));
    assert_true(mb_is_reserved_state_name("ts"));
    assert_false(mb_is_reserved_state_name("mode"));
    assert_false(mb_is_reserved_state_name(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_write_functions),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_word_byte_order),
        cmocka_unit_test(test_decode_bool),
        cmocka_unit_test(test_decode_int16),
        cmocka_unit_test(test_decode_uint16),
        cmocka_unit_test(test_decode_int32),
        cmocka_unit_test(test_decode_uint32),
        cmocka_unit_test(test_decode_float32),
        cmocka_unit_test(test_float_shortest),
        cmocka_unit_test(test_decode_float32_nan_inf),
        cmocka_unit_test(test_decode_bitfield),
        cmocka_unit_test(test_scale_offset),
        cmocka_unit_test(test_integral),
        cmocka_unit_test(test_encode_int16_scaled),
        cmocka_unit_test(test_encode_rounding),
        cmocka_unit_test(test_encode_offset),
        cmocka_unit_test(test_encode_range),
        cmocka_unit_test(test_encode_fit),
        cmocka_unit_test(test_encode_float32),
        cmocka_unit_test(test_encode_not_finite),
        cmocka_unit_test(test_encode_bool_bitfield),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_plan_contiguous),
        cmocka_unit_test(test_plan_gaps),
        cmocka_unit_test(test_plan_tables),
        cmocka_unit_test(test_plan_max_registers),
        cmocka_unit_test(test_plan_max_bits),
        cmocka_unit_test(test_plan_overlap_order),
        cmocka_unit_test(test_plan_edges),
        cmocka_unit_test(test_exception_text),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests_name("modbus_codec", tests, NULL, NULL);
}
