/*
 * test_ws_proto - the /ws frame parser and the server message encoders
 * (core/ws_proto.c): every op of the contract, both target forms of cmd and
 * ack_alarm, each error code, ids, limits, and encoders that jansson reads
 * back with the exact fields of docs/websocket.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ws_proto.h"

#define BASE "ccgw/v1/hq"

static int parse(const char *s, ccgw_ws_req_t *r, ccgw_ws_err_t *e)
{
    return ccgw_ws_parse(s, strlen(s), BASE, r, e);
}

static void expect_error(const char *s, const char *code, bool has_id, int64_t id)
{
    ccgw_ws_req_t r;
    ccgw_ws_err_t e;
    assert_int_not_equal(parse(s, &r, &e), 0);
    assert_non_null(e.code);
    if (strcmp(e.code, code) != 0)
        fail_msg("%s: got %s (%s), want %s", s, e.code, e.message, code);
    assert_true(e.message[0] != '\0');
    assert_int_equal(e.has_id, has_id);
    if (has_id)
        assert_int_equal(e.id, id);
    ccgw_ws_req_free(&r);
}

static void test_sub_unsub(void **state)
{
    (void)state;
    ccgw_ws_req_t r;
    ccgw_ws_err_t e;
    assert_int_equal(parse("{\"op\":\"sub\",\"id\":1,\"filter\":\"ccgw/v1/+/ups/#\"}", &r, &e), 0);
    assert_int_equal(r.op, CCGW_WS_OP_SUB);
    assert_true(r.has_id);
    assert_int_equal(r.id, 1);
    assert_string_equal(r.filter, "ccgw/v1/+/ups/#");
    ccgw_ws_req_free(&r);
    assert_int_equal(parse("{\"op\":\"unsub\",\"filter\":\"#\"}", &r, &e), 0);
    assert_int_equal(r.op, CCGW_WS_OP_UNSUB);
    assert_false(r.has_id);
    ccgw_ws_req_free(&r);
    /* id null is "no id" */
    assert_int_equal(parse("{\"op\":\"ping\",\"id\":null}", &r, &e), 0);
    assert_false(r.has_id);
    ccgw_ws_req_free(&r);
}

static void test_filters(void **state)
{
    (void)state;
    assert_true(ccgw_ws_filter_valid("#"));
    assert_true(ccgw_ws_filter_valid("+"));
    assert_true(ccgw_ws_filter_valid("a/+/b/#"));
    assert_true(ccgw_ws_filter_valid("a//b"));
    assert_false(ccgw_ws_filter_valid(""));
    assert_false(ccgw_ws_filter_valid(NULL));
    assert_false(ccgw_ws_filter_valid("a/#/b"));
    assert_false(ccgw_ws_filter_valid("a/b#"));
    assert_false(ccgw_ws_filter_valid("a/+b"));
    assert_false(ccgw_ws_filter_valid("a+/b"));
    char big[CCGW_WS_MAX_FILTER + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_false(ccgw_ws_filter_valid(big));
    expect_error("{\"op\":\"sub\",\"id\":7,\"filter\":\"a/#/b\"}", "bad_filter", true, 7);
    expect_error("{\"op\":\"sub\",\"id\":7,\"filter\":\"\"}", "bad_filter", true, 7);
    expect_error("{\"op\":\"sub\",\"id\":7,\"filter\":\"a\\u0000b\"}", "bad_json", false, 0); /* NUL: refused by jansson */
    expect_error("{\"op\":\"sub\",\"id\":7,\"filter\":3}", "bad_request", true, 7);
}

static void test_cmd(void **state)
{
    (void)state;
    ccgw_ws_req_t r;
    ccgw_ws_err_t e;
    assert_int_equal(parse("{\"op\":\"cmd\",\"id\":3,\"topic\":\"ccgw/v1/hq/door/d1/cmd/door.unlock\","
                           "\"args\":{\"duration_s\":5,\"reason\":\"x\"}}", &r, &e), 0);
    assert_int_equal(r.op, CCGW_WS_OP_CMD);
    assert_string_equal(r.class_name, "door");
    assert_string_equal(r.device, "d1");
    assert_string_equal(r.name, "door.unlock");
    assert_string_equal(r.topic, "ccgw/v1/hq/door/d1/cmd/door.unlock");
    json_t *a = json_loadb(r.args, r.args_len, 0, NULL);
    assert_non_null(a);
    assert_int_equal(json_integer_value(json_object_get(a, "duration_s")), 5);
    json_decref(a);
    ccgw_ws_req_free(&r);
    /* class/device/name form builds the topic; no args = {} */
    assert_int_equal(parse("{\"op\":\"cmd\",\"class\":\"ups\",\"device\":\"u1\",\"name\":\"ups.test_battery\"}", &r, &e), 0);
    assert_string_equal(r.topic, "ccgw/v1/hq/ups/u1/cmd/ups.test_battery");
    assert_string_equal(r.args, "{}");
    assert_int_equal(r.args_len, 2);
    ccgw_ws_req_free(&r);
    expect_error("{\"op\":\"cmd\",\"id\":1,\"topic\":\"ccgw/v1/other/door/d1/cmd/x\"}", "bad_request", true, 1);
    expect_error("{\"op\":\"cmd\",\"id\":1,\"topic\":\"ccgw/v1/hq/door/d1/state/x\"}", "bad_request", true, 1);
    expect_error("{\"op\":\"cmd\",\"id\":1,\"topic\":\"ccgw/v1/hq/door/d1/cmd/x/y\"}", "bad_request", true, 1);
    expect_error("{\"op\":\"cmd\",\"id\":1,\"topic\":\"ccgw/v1/hq/door//cmd/x\"}", "bad_request", true, 1);
    expect_error("{\"op\":\"cmd\",\"id\":1,\"topic\":\"ccgw/v1/hq/+/d1/cmd/x\"}", "bad_request", true, 1);
    expect_error("{\"op\":\"cmd\",\"id\":1,\"class\":\"a/b\",\"device\":\"d\",\"name\":\"n\"}", "bad_request", true, 1);
    expect_error("{\"op\":\"cmd\",\"id\":1,\"class\":\"a\",\"device\":\"d\"}", "bad_request", true, 1);
    expect_error("{\"op\":\"cmd\",\"id\":1,\"class\":\"a\",\"device\":\"d\",\"name\":\"n\",\"args\":[1]}", "bad_request",
                 true, 1);
}

static void test_ack_alarm_ping_auth(void **state)
{
    (void)state;
    ccgw_ws_req_t r;
    ccgw_ws_err_t e;
    assert_int_equal(parse("{\"op\":\"ack_alarm\",\"id\":4,\"topic\":\"ccgw/v1/hq/ups/u1/alarm/on_battery\","
                           "\"note\":\"on it\"}", &r, &e), 0);
    assert_int_equal(r.op, CCGW_WS_OP_ACK_ALARM);
    assert_string_equal(r.class_name, "ups");
    assert_string_equal(r.device, "u1");
    assert_string_equal(r.name, "on_battery");
    assert_string_equal(r.note, "on it");
    ccgw_ws_req_free(&r);
    assert_int_equal(parse("{\"op\":\"ack_alarm\",\"class\":\"ups\",\"device\":\"u1\",\"code\":\"c\"}", &r, &e), 0);
    assert_string_equal(r.topic, "ccgw/v1/hq/ups/u1/alarm/c");
    assert_null(r.note);
    ccgw_ws_req_free(&r);
    expect_error("{\"op\":\"ack_alarm\",\"id\":2,\"topic\":\"ccgw/v1/hq/ups/u1/cmd/on_battery\"}", "bad_request", true, 2);
    expect_error("{\"op\":\"ack_alarm\",\"id\":2,\"class\":\"ups\",\"device\":\"u1\",\"code\":\"c\",\"note\":5}",
                 "bad_request", true, 2);
    assert_int_equal(parse("{\"op\":\"ping\",\"id\":5}", &r, &e), 0);
    assert_int_equal(r.op, CCGW_WS_OP_PING);
    ccgw_ws_req_free(&r);
    assert_int_equal(parse("{\"op\":\"auth\",\"id\":1,\"token\":\"s3cret\"}", &r, &e), 0);
    assert_int_equal(r.op, CCGW_WS_OP_AUTH);
    assert_string_equal(r.token, "s3cret");
    ccgw_ws_req_free(&r);
    expect_error("{\"op\":\"auth\",\"token\":\"\"}", "bad_request", false, 0);
    expect_error("{\"op\":\"auth\"}", "bad_request", false, 0);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("{not json", "bad_json", false, 0);
    expect_error("", "bad_json", false, 0);
    expect_error("{\"op\":\"sub\",\"op\":\"sub\"}", "bad_json", false, 0); /* duplicate keys */
    expect_error("[1,2]", "bad_request", false, 0);
    expect_error("\"sub\"", "bad_request", false, 0);
    expect_error("{\"id\":3}", "bad_request", true, 3);
    expect_error("{\"op\":\"frob\",\"id\":9}", "unknown_op", true, 9);
    expect_error("{\"op\":5}", "bad_request", false, 0);
    expect_error("{\"op\":\"ping\",\"id\":\"x\"}", "bad_request", false, 0);
    expect_error("{\"op\":\"ping\",\"id\":1.5}", "bad_request", false, 0);
    /* not NUL-terminated: only len bytes are read */
    ccgw_ws_req_t r;
    ccgw_ws_err_t e;
    const char buf[] = "{\"op\":\"ping\"}garbage";
    assert_int_equal(ccgw_ws_parse(buf, 13, BASE, &r, &e), 0);
    ccgw_ws_req_free(&r);
}

/* len is a pointer: read after the encoder (an argument) has filled it in */
static json_t *load(char *s, const size_t *lenp)
{
    size_t len = *lenp;
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    json_t *j = json_loadb(s, len, 0, NULL);
    assert_non_null(j);
    free(s);
    return j;
}

static void test_encoders(void **state)
{
    (void)state;
    size_t n;
    json_t *j = load(ccgw_ws_encode_msg("ccgw/v1/hq/ups/u1/state", "{\"a\":1}", 7, true, &n), &n);
    assert_string_equal(json_string_value(json_object_get(j, "op")), "msg");
    assert_string_equal(json_string_value(json_object_get(j, "topic")), "ccgw/v1/hq/ups/u1/state");
    assert_true(json_is_true(json_object_get(j, "retained")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "payload"), "a")), 1);
    json_decref(j);
    j = load(ccgw_ws_encode_msg("t/alarm/x", "", 0, true, &n), &n); /* a cleared alarm */
    assert_true(json_is_null(json_object_get(j, "payload")));
    json_decref(j);
    j = load(ccgw_ws_encode_ack(true, 1, 12, NULL, NULL, &n), &n);
    assert_string_equal(json_string_value(json_object_get(j, "op")), "ack");
    assert_int_equal(json_integer_value(json_object_get(j, "id")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "snapshot")), 12);
    json_decref(j);
    j = load(ccgw_ws_encode_ack(false, 0, -1, "viewer", "wall-screen", &n), &n);
    assert_true(json_is_null(json_object_get(j, "id")));
    assert_null(json_object_get(j, "snapshot"));
    assert_string_equal(json_string_value(json_object_get(j, "role")), "viewer");
    assert_string_equal(json_string_value(json_object_get(j, "name")), "wall-screen");
    json_decref(j);
    j = load(ccgw_ws_encode_reply(true, 3, "{\"ok\":true}", 11, &n), &n);
    assert_string_equal(json_string_value(json_object_get(j, "op")), "reply");
    assert_true(json_is_true(json_object_get(json_object_get(j, "payload"), "ok")));
    json_decref(j);
    j = load(ccgw_ws_encode_pong(true, -5, &n), &n);
    assert_int_equal(json_integer_value(json_object_get(j, "id")), -5);
    json_decref(j);
    j = load(ccgw_ws_encode_error(false, 0, "bad_json", "quote \" and \x01 control", &n), &n);
    assert_string_equal(json_string_value(json_object_get(j, "code")), "bad_json");
    assert_true(json_is_null(json_object_get(j, "id")));
    assert_string_equal(json_string_value(json_object_get(j, "message")), "quote \" and \x01 control");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sub_unsub), cmocka_unit_test(test_filters), cmocka_unit_test(test_cmd),
        cmocka_unit_test(test_ack_alarm_ping_auth), cmocka_unit_test(test_errors), cmocka_unit_test(test_encoders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
