/*
 * test_auth - tokens, roles and topic filters (core/auth.c): MQTT filter
 * validity and matching with their edge cases, token lookup by hash (plain,
 * file, sha256 from a real config), the anonymous role, the command
 * allow-list with "prefix.*", and what each role may do.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"
#include "config.h"

static void test_filter_valid(void **state)
{
    (void)state;
    const char *good[] = {"#", "+", "a", "a/b", "a/#", "+/+", "a/+/c", "/", "//", "a//b", "/#", "+/#",
                          "ccgw/v1/+/ups/#", "$SYS/#"};
    const char *bad[] = {"", "a#", "#/a", "a/#/b", "a+", "+a", "a/b+/c", "a/##", "##", "a/+b"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        if (!ccgw_topic_filter_valid(good[i]))
            fail_msg("filter '%s' should be valid", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (ccgw_topic_filter_valid(bad[i]))
            fail_msg("filter '%s' should be invalid", bad[i]);
    assert_false(ccgw_topic_filter_valid(NULL));
}

static void test_filter_match(void **state)
{
    (void)state;
    struct {
        const char *f, *t;
        bool m;
    } cases[] = {
        {"#", "a", true},
        {"#", "a/b/c", true},
        {"#", "/", true},
        {"#", "$SYS/x", false},   /* wildcards at the first level skip $ topics */
        {"+/x", "$SYS/x", false},
        {"$SYS/#", "$SYS/x", true},
        {"a/#", "a", true},        /* the parent level itself */
        {"a/#", "a/b", true},
        {"a/#", "a/b/c", true},
        {"a/#", "ab", false},
        {"a/#", "b/a", false},
        {"+", "a", true},
        {"+", "a/b", false},
        {"+", "", true},
        {"+", "/a", false},
        {"+/+", "/a", true},       /* empty first level */
        {"a/+", "a", false},
        {"a/+", "a/", true},       /* empty level matches + */
        {"a/+/c", "a/b/c", true},
        {"a/+/c", "a/b/d", false},
        {"a/+/c", "a/b/c/d", false},
        {"a/+/#", "a/b", true},
        {"a/+/#", "a", false},
        {"a/b", "a/b", true},
        {"a/b", "a/b/", false},
        {"a/b", "a", false},
        {"a", "a/b", false},
        {"ccgw/v1/+/ups/#", "ccgw/v1/hq/ups/u1/state", true},
        {"ccgw/v1/+/ups/#", "ccgw/v1/hq/env/e1/state", false},
        {"ccgw/v1/+/ups/#", "ccgw/v1/hq/ups", true},
        {"", "a", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        if (ccgw_topic_matches(cases[i].f, cases[i].t) != cases[i].m)
            fail_msg("'%s' vs '%s': expected %s", cases[i].f, cases[i].t, cases[i].m ? "match" : "no match");
    assert_false(ccgw_topic_matches(NULL, "a"));
    assert_false(ccgw_topic_matches("a", NULL));
}

static void test_roles_and_bearer(void **state)
{
    (void)state;
    assert_string_equal(ccgw_role_name(CCGW_ROLE_NONE), "none");
    assert_string_equal(ccgw_role_name(CCGW_ROLE_VIEWER), "viewer");
    assert_string_equal(ccgw_role_name(CCGW_ROLE_OPERATOR), "operator");
    assert_string_equal(ccgw_role_name(CCGW_ROLE_ADMIN), "admin");
    assert_string_equal(ccgw_role_name((ccgw_role_t)42), "none");
    assert_int_equal(ccgw_role_parse("operator"), CCGW_ROLE_OPERATOR);
    assert_int_equal(ccgw_role_parse("Operator"), -1);
    assert_int_equal(ccgw_role_parse(NULL), -1);

    assert_string_equal(ccgw_auth_bearer("Bearer abc"), "abc");
    assert_string_equal(ccgw_auth_bearer("bearer   abc.def"), "abc.def");
    assert_string_equal(ccgw_auth_bearer("  BEARER\tx"), "x");
    assert_null(ccgw_auth_bearer("Bearer"));
    assert_null(ccgw_auth_bearer("Bearer   "));
    assert_null(ccgw_auth_bearer("Basic dXNlcjpwdw=="));
    assert_null(ccgw_auth_bearer("Bearerabc"));
    assert_null(ccgw_auth_bearer(NULL));

    char hex[65];
    ccgw_auth_hash_token("test", hex);
    assert_string_equal(hex, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    ccgw_auth_hash_token("", hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static ccgw_gateway_config_t *load(const char *yaml)
{
    ccgw_gateway_config_t *cfg = ccgw_gateway_config_load_buffer("t.yaml", yaml, strlen(yaml), NULL, NULL);
    assert_non_null(cfg);
    if (cfg->doc->n_diags) {
        ccgw_config_print_diags(cfg->doc, stderr);
        fail_msg("config has errors");
    }
    return cfg;
}

static const char *const YAML = "gateway: {site: hq, id: gw1}\n"
                                "http:\n"
                                "  tokens:\n"
                                "    - name: wall\n"
                                "      role: viewer\n"
                                "      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
                                "      filters: [\"ccgw/v1/+/ups/#\", \"ccgw/v1/+/env/#\"]\n"
                                "    - name: duty\n"
                                "      role: operator\n"
                                "      token: op-token\n"
                                "      commands: [\"door.*\", ups.test_battery]\n"
                                "    - name: doors\n"
                                "      role: operator\n"
                                "      token: door-token\n"
                                "      filters: [\"ccgw/v1/hq/door/d1/state\"]\n"
                                "    - name: root\n"
                                "      role: admin\n"
                                "      token: admin-token\n";

static void test_tokens(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load(YAML);
    ccgw_auth_t *a = ccgw_auth_new(&cfg->http);
    assert_non_null(a);
    char why[128];

    /* no token and no anonymous role */
    assert_null(ccgw_auth_check(a, NULL, why, sizeof why));
    assert_string_equal(why, "no token");
    assert_null(ccgw_auth_check(a, "", why, sizeof why));
    assert_string_equal(why, "no token");
    /* unknown token: the message does not echo it */
    assert_null(ccgw_auth_check(a, "guess-123", why, sizeof why));
    assert_string_equal(why, "unknown token");
    char huge[5000];
    memset(huge, 'x', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_null(ccgw_auth_check(a, huge, why, sizeof why));

    /* viewer, from its sha256 */
    ccgw_principal_t *v = ccgw_auth_check(a, "test", why, sizeof why);
    assert_non_null(v);
    assert_string_equal(v->name, "wall");
    assert_int_equal(v->role, CCGW_ROLE_VIEWER);
    assert_int_equal(v->n_filters, 2);
    assert_true(ccgw_principal_may_see(v, "ccgw/v1/hq/ups/u1/state"));
    assert_true(ccgw_principal_may_see(v, "ccgw/v1/x/env/e1/telemetry"));
    assert_false(ccgw_principal_may_see(v, "ccgw/v1/hq/door/d1/state"));
    assert_false(ccgw_principal_may_see(v, NULL));
    assert_false(ccgw_principal_may_command(v, "ccgw/v1/hq/ups/u1/cmd/ups.test_battery", "ups.test_battery", why,
                                            sizeof why));
    assert_string_equal(why, "role viewer may not send commands");
    assert_false(ccgw_principal_may_ack(v, "ccgw/v1/hq/ups/u1/alarm/on_battery", why, sizeof why));
    assert_string_equal(why, "role viewer may not acknowledge alarms");
    assert_false(ccgw_principal_may_admin(v, why, sizeof why));
    assert_string_equal(why, "role viewer may not use the management API");

    /* copies are independent */
    ccgw_principal_t *v2 = ccgw_principal_dup(v);
    ccgw_principal_free(v);
    assert_string_equal(v2->filters[1], "ccgw/v1/+/env/#");
    ccgw_principal_free(v2);

    /* operator with a command allow-list */
    ccgw_principal_t *o = ccgw_auth_check(a, "op-token", why, sizeof why);
    assert_non_null(o);
    assert_string_equal(o->name, "duty");
    assert_true(ccgw_principal_may_see(o, "ccgw/v1/hq/door/d1/state")); /* no filters: everything */
    assert_true(ccgw_principal_may_command(o, "ccgw/v1/hq/door/d1/cmd/door.unlock", "door.unlock", why, sizeof why));
    assert_true(ccgw_principal_may_command(o, "ccgw/v1/hq/door/d1/cmd/door.lock", "door.lock", why, sizeof why));
    assert_true(ccgw_principal_may_command(o, "ccgw/v1/hq/ups/u1/cmd/ups.test_battery", "ups.test_battery", why,
                                           sizeof why));
    assert_false(ccgw_principal_may_command(o, "ccgw/v1/hq/ups/u1/cmd/ups.shutdown", "ups.shutdown", why, sizeof why));
    assert_string_equal(why, "command 'ups.shutdown' is not in the token's commands");
    assert_false(ccgw_principal_may_command(o, "ccgw/v1/hq/door/d1/cmd/door", "door", why, sizeof why)); /* not "door." */
    assert_false(ccgw_principal_may_command(o, "ccgw/v1/hq/x/d1/cmd/doorbell.ring", "doorbell.ring", why, sizeof why));
    assert_false(ccgw_principal_may_command(o, "ccgw/v1/hq/x/d1/cmd/door.", "door.", why, sizeof why));
    assert_true(ccgw_principal_may_ack(o, "ccgw/v1/hq/ups/u1/alarm/on_battery", why, sizeof why));
    assert_false(ccgw_principal_may_admin(o, why, sizeof why));
    ccgw_principal_free(o);

    /* operator limited to one device by a filter on its state topic: covers its commands and alarms */
    ccgw_principal_t *d = ccgw_auth_check(a, "door-token", why, sizeof why);
    assert_non_null(d);
    assert_true(ccgw_principal_may_command(d, "ccgw/v1/hq/door/d1/cmd/door.unlock", "door.unlock", why, sizeof why));
    assert_false(ccgw_principal_may_command(d, "ccgw/v1/hq/door/d2/cmd/door.unlock", "door.unlock", why, sizeof why));
    assert_string_equal(why, "topic outside the token's filters");
    assert_true(ccgw_principal_may_ack(d, "ccgw/v1/hq/door/d1/alarm/forced", why, sizeof why));
    assert_false(ccgw_principal_may_ack(d, "ccgw/v1/hq/door/d2/alarm/forced", why, sizeof why));
    assert_false(ccgw_principal_may_see(d, "ccgw/v1/hq/door/d2/state"));
    ccgw_principal_free(d);

    ccgw_principal_t *r = ccgw_auth_check(a, "admin-token", why, sizeof why);
    assert_non_null(r);
    assert_int_equal(r->role, CCGW_ROLE_ADMIN);
    assert_true(ccgw_principal_may_admin(r, why, sizeof why));
    assert_true(ccgw_principal_may_command(r, "ccgw/v1/hq/ups/u1/cmd/ups.shutdown", "ups.shutdown", why, sizeof why));
    ccgw_principal_free(r);

    /* NULL principal */
    assert_false(ccgw_principal_may_see(NULL, "a"));
    assert_false(ccgw_principal_may_command(NULL, "a", "b", why, sizeof why));
    assert_false(ccgw_principal_may_ack(NULL, "a", why, sizeof why));
    assert_false(ccgw_principal_may_admin(NULL, why, sizeof why));
    assert_null(ccgw_principal_dup(NULL));
    ccgw_principal_free(NULL);

    ccgw_auth_free(a);
    ccgw_gateway_config_free(cfg);
}

static void test_anonymous(void **state)
{
    (void)state;
    ccgw_gateway_config_t *cfg = load("gateway: {site: hq, id: gw1}\n"
                                      "http:\n"
                                      "  anonymous_role: viewer\n"
                                      "  tokens: [{name: op, role: operator, token: t1}]\n");
    ccgw_auth_t *a = ccgw_auth_new(&cfg->http);
    char why[64];
    ccgw_principal_t *p = ccgw_auth_check(a, NULL, why, sizeof why);
    assert_non_null(p);
    assert_string_equal(p->name, "anonymous");
    assert_int_equal(p->role, CCGW_ROLE_VIEWER);
    assert_true(ccgw_principal_may_see(p, "ccgw/v1/hq/ups/u1/state"));
    assert_false(ccgw_principal_may_command(p, "ccgw/v1/hq/ups/u1/cmd/x", "x", why, sizeof why));
    ccgw_principal_free(p);
    /* a wrong token is still refused, not downgraded to anonymous */
    assert_null(ccgw_auth_check(a, "t2", why, sizeof why));
    assert_string_equal(why, "unknown token");
    p = ccgw_auth_check(a, "t1", why, sizeof why);
    assert_non_null(p);
    assert_string_equal(p->name, "op");
    ccgw_principal_free(p);
    ccgw_auth_free(a);
    ccgw_gateway_config_free(cfg);

    /* no http config at all: nobody gets in */
    a = ccgw_auth_new(NULL);
    assert_non_null(a);
    assert_null(ccgw_auth_check(a, NULL, why, sizeof why));
    assert_null(ccgw_auth_check(a, "t1", why, sizeof why));
    ccgw_auth_free(a);
    assert_null(ccgw_auth_check(NULL, "x", why, sizeof why));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_filter_valid),
        cmocka_unit_test(test_filter_match),
        cmocka_unit_test(test_roles_and_bearer),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_anonymous),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
