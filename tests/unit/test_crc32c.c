/* Unit tests: ccgw_crc32c (hardware SSE4.2 path where the CPU has it, tables
 * otherwise) against a bit-by-bit reference, for every length 0..300 at every
 * alignment, split and whole, and the standard check value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "spool.h"

static uint32_t ref_crc(uint32_t crc, const unsigned char *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

static void test_check_value(void **state)
{
    (void)state;
    assert_int_equal(ccgw_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(ccgw_crc32c(0, "", 0), 0);
}

static void test_against_reference(void **state)
{
    (void)state;
    unsigned char buf[320];
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < sizeof buf; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        buf[i] = (unsigned char)s;
    }
    for (size_t off = 0; off < 8; off++)
        for (size_t len = 0; len + off <= 300; len++) {
            uint32_t want = ref_crc(0, buf + off, len);
            assert_int_equal(ccgw_crc32c(0, buf + off, len), want);
            size_t half = len / 3;
            assert_int_equal(ccgw_crc32c(ccgw_crc32c(0, buf + off, half), buf + off + half, len - half), want);
            assert_int_equal(ccgw_crc32c(0x12345678u, buf + off, len), ref_crc(0x12345678u, buf + off, len));
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_value),
        cmocka_unit_test(test_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
