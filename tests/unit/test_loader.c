/* Unit tests: the loader accepts good and older-minor plugins and refuses
 * each kind of broken plugin (tests/plugins) with a message that names the
 * file and both ABIs, without crashing and without keeping it loaded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must be defined"
#endif

static const ccgw_plugin_t *get(ccgw_loader_t *l, const char *name, char *why, size_t n)
{
    why[0] = '\0';
    return ccgw_loader_get(l, name, why, n, NULL);
}

static int setup(void **st)
{
    ccgw_loader_t *l = ccgw_loader_new();
    ccgw_loader_add_dir(l, TEST_PLUGIN_DIR);
    *st = l;
    return 0;
}

static int teardown(void **st)
{
    ccgw_loader_free(*st);
    return 0;
}

static void expect_refused(ccgw_loader_t *l, const char *name, const char *const *parts)
{
    char why[512];
    assert_null(get(l, name, why, sizeof why));
    char file[64];
    snprintf(file, sizeof file, "%s.so", name);
    if (!strstr(why, file))
        fail_msg("reason for %s does not name the file: %s", name, why);
    for (; *parts; parts++)
        if (!strstr(why, *parts))
            fail_msg("reason for %s lacks '%s': %s", name, *parts, why);
    /* refused files are not kept open */
    char path[512];
    snprintf(path, sizeof path, "%s/%s", TEST_PLUGIN_DIR, file);
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    assert_null(h);
}

static void test_good(void **st)
{
    char why[512];
    const ccgw_plugin_t *p = get(*st, "good", why, sizeof why);
    assert_non_null(p);
    assert_string_equal(p->name, "good");
    assert_int_equal(p->abi_major, CCGW_ABI_MAJOR);
    assert_non_null(p->create);
    /* cached: the same descriptor again */
    assert_ptr_equal(get(*st, "good", why, sizeof why), p);
}

static void test_old_minor_loads_with_missing_fields_null(void **st)
{
    char why[512];
    const ccgw_plugin_t *p = get(*st, "old_minor", why, sizeof why);
    assert_non_null(p);
    assert_true(p->size < sizeof(ccgw_plugin_t));
    for (size_t i = 0; i < sizeof p->reserved / sizeof p->reserved[0]; i++)
        assert_null(p->reserved[i]);
}

/* the gateway's ABI and the next minor, as the refusals print them */
_Static_assert(CCGW_ABI_MAJOR == 1 && CCGW_ABI_MINOR == 3, "update GW_ABI and NEXT_ABI");
#define GW_ABI "ABI 1.3"
#define NEXT_ABI "ABI 1.4"

static void test_bad_abi_major(void **st)
{
    const char *parts[] = {"ABI 2.", GW_ABI, "rebuild", NULL};
    expect_refused(*st, "bad_abi_major", parts);
}

static void test_newer_minor(void **st)
{
    const char *parts[] = {"needs plugin " NEXT_ABI, GW_ABI, NULL};
    expect_refused(*st, "newer_minor", parts);
}

static void test_small_size(void **st)
{
    const char *parts[] = {"descriptor size 8", NULL};
    expect_refused(*st, "small_size", parts);
}

static void test_no_descriptor(void **st)
{
    const char *parts[] = {"exports no 'ccgw_plugin_descriptor'", NULL};
    expect_refused(*st, "no_descriptor", parts);
}

static void test_missing_create(void **st)
{
    const char *parts[] = {"no create callback", NULL};
    expect_refused(*st, "missing_create", parts);
}

static void test_wrong_name(void **st)
{
    const char *parts[] = {"does not match the file name", NULL};
    expect_refused(*st, "wrong_name", parts);
}

static void test_exists_tells_refused_from_missing(void **st)
{
    char why[512];
    bool exists = false;
    assert_null(ccgw_loader_get(*st, "bad_abi_major", why, sizeof why, &exists));
    assert_true(exists);
    assert_null(ccgw_loader_get(*st, "nosuch", why, sizeof why, &exists));
    assert_false(exists);
}

static void test_failing_ones_load(void **st)
{
    /* they fail at run time, not at load: the runtime test covers them */
    char why[512];
    assert_non_null(get(*st, "failing_create", why, sizeof why));
    assert_non_null(get(*st, "failing_start", why, sizeof why));
}

static void test_not_found_and_bad_names(void **st)
{
    char why[512];
    assert_null(get(*st, "nosuch", why, sizeof why));
    assert_non_null(strstr(why, "no nosuch.so in"));
    assert_non_null(strstr(why, TEST_PLUGIN_DIR));
    assert_null(get(*st, "../etc/passwd", why, sizeof why));
    assert_non_null(strstr(why, "not a plugin name"));
}

static void test_list(void **st)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int good = ccgw_loader_list(*st, f);
    fclose(f);
    /* good, old_minor, failing_create, failing_start, knob, crash_start, hang, flood, failing_later */
    assert_int_equal(good, 9);
    assert_non_null(strstr(buf, "bad_abi_major"));
    assert_non_null(strstr(buf, "refused"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good, setup, teardown),
        cmocka_unit_test_setup_teardown(test_old_minor_loads_with_missing_fields_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_abi_major, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_minor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_ones_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exists_tells_refused_from_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_and_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
