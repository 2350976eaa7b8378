/*
 * test_isapi_event - the isapi-door event mapping and XML helpers
 * (plugins/isapi-door/isapi_event.c): AccessControllerEvent JSON onto the
 * door class, heartbeats (JSON heartBeat, XML videoloss, empty parts), the
 * code table, verify methods, event ids with and without serialNo, the
 * recent-id window, RemoteControlDoor bodies and ResponseStatus.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "isapi_event.h"

static isapi_kind_t parse(const char *json, isapi_event_t *ev)
{
    return isapi_event_from_part("application/json; charset=\"UTF-8\"", json, strlen(json), ev);
}

static void ace(char *buf, size_t len, int major, int minor, const char *extra)
{
    snprintf(buf, len,
             "{\"ipAddress\":\"10.0.0.2\",\"dateTime\":\"2026-11-23T10:00:00+08:00\","
             "\"eventType\":\"AccessControllerEvent\",\"AccessControllerEvent\":"
             "{\"majorEventType\":%d,\"subEventType\":%d%s%s}}",
             major, minor, extra ? "," : "", extra ? extra : "");
}

static void test_granted_face(void **state)
{
    (void)state;
    char j[1024];
    ace(j, sizeof j, 5, 75,
        "\"name\":\"\xe5\xbc\xa0\xe4\xb8\x89\",\"employeeNoString\":\"1024\",\"currentVerifyMode\":"
        "\"cardOrFace\",\"serialNo\":42,\"doorNo\":1,\"cardNo\":\"\"");
    isapi_event_t ev;
    assert_int_equal(parse(j, &ev), ISAPI_K_ACCESS);
    assert_string_equal(ev.type, "access.granted");
    assert_string_equal(ev.person_id, "1024");
    assert_string_equal(ev.name, "\xe5\xbc\xa0\xe4\xb8\x89");
    assert_string_equal(ev.method, "face");
    assert_string_equal(ev.event_id, "42");
    assert_int_equal(ev.serial, 42);
    assert_int_equal(ev.door_no, 1);
    assert_string_equal(ev.verify_mode, "cardOrFace");
    assert_string_equal(ev.date_time, "2026-11-23T10:00:00+08:00");
    assert_null(ev.door);
    assert_null(ev.alarm_raise);
}

static void test_denied_and_methods(void **state)
{
    (void)state;
    char j[1024];
    isapi_event_t ev;
    ace(j, sizeof j, 5, 76, "\"employeeNoString\":\"7\",\"serialNo\":1");
    assert_int_equal(parse(j, &ev), ISAPI_K_ACCESS);
    assert_string_equal(ev.type, "access.denied");
    assert_string_equal(ev.method, "face");
    ace(j, sizeof j, 5, 9, "\"cardNo\":\"12345678\",\"serialNo\":2");
    parse(j, &ev);
    assert_string_equal(ev.type, "access.denied");
    assert_string_equal(ev.method, "card");
    assert_string_equal(ev.card_no, "12345678");
    ace(j, sizeof j, 5, 1, "\"serialNo\":3");
    parse(j, &ev);
    assert_string_equal(ev.type, "access.granted");
    assert_string_equal(ev.method, "card");
    ace(j, sizeof j, 5, 0x26, "\"serialNo\":4");
    parse(j, &ev);
    assert_string_equal(ev.method, "fingerprint");
    /* a code that does not say how: the verify mode does */
    ace(j, sizeof j, 5, 0x99, "\"currentVerifyMode\":\"cardAndPw\",\"serialNo\":5");
    parse(j, &ev);
    assert_string_equal(ev.type, "access.granted");
    assert_string_equal(ev.method, "card+password");
    ace(j, sizeof j, 5, 0x99, "\"currentVerifyMode\":\"somethingNew\",\"serialNo\":6");
    parse(j, &ev);
    assert_null(ev.method);
    /* employeeNo as a number (old firmware) */
    ace(j, sizeof j, 5, 75, "\"employeeNo\":88,\"serialNo\":7");
    parse(j, &ev);
    assert_string_equal(ev.person_id, "88");
    /* codes as strings */
    ace(j, sizeof j, 5, 0, "\"serialNo\":8");
    snprintf(j, sizeof j, "{\"AccessControllerEvent\":{\"majorEventType\":\"5\",\"subEventType\":\"0x4b\",\"serialNo\":9}}");
    parse(j, &ev);
    assert_string_equal(ev.type, "access.granted");
}

static void test_door_events(void **state)
{
    (void)state;
    char j[512];
    isapi_event_t ev;
    ace(j, sizeof j, 5, 0x19, "\"serialNo\":10,\"doorNo\":1");
    parse(j, &ev);
    assert_string_equal(ev.type, "door.opened");
    assert_string_equal(ev.door, "open");
    ace(j, sizeof j, 5, 0x1a, "\"serialNo\":11");
    parse(j, &ev);
    assert_string_equal(ev.type, "door.closed");
    assert_string_equal(ev.door, "closed");
    assert_string_equal(ev.alarm_clear, "door");
    ace(j, sizeof j, 5, 0x1b, "\"serialNo\":12");
    parse(j, &ev);
    assert_string_equal(ev.type, "door.forced");
    assert_string_equal(ev.alarm_raise, "forced");
    ace(j, sizeof j, 5, 0x1c, "\"serialNo\":13");
    parse(j, &ev);
    assert_string_equal(ev.type, "door.held_open");
    assert_string_equal(ev.alarm_raise, "held_open");
    ace(j, sizeof j, 5, 0x15, "\"serialNo\":14");
    parse(j, &ev);
    assert_null(ev.type);
    assert_string_equal(ev.lock, "unlocked");
    ace(j, sizeof j, 5, 0x16, "\"serialNo\":15");
    parse(j, &ev);
    assert_string_equal(ev.lock, "locked");
    ace(j, sizeof j, 5, 0x13, "\"serialNo\":16");
    parse(j, &ev);
    assert_string_equal(ev.mode, "always_open");
    ace(j, sizeof j, 5, 0x1f, "\"serialNo\":17");
    parse(j, &ev);
    assert_string_equal(ev.mode, "always_closed");
    ace(j, sizeof j, 1, 0x404, "\"serialNo\":18");
    parse(j, &ev);
    assert_string_equal(ev.type, "tamper");
    assert_string_equal(ev.alarm_raise, "tamper");
    ace(j, sizeof j, 1, 0x405, "\"serialNo\":19");
    parse(j, &ev);
    assert_null(ev.type);
    assert_string_equal(ev.alarm_clear, "tamper");
    ace(j, sizeof j, 3, 0x402, "\"serialNo\":20");
    parse(j, &ev);
    assert_null(ev.type);
    assert_string_equal(ev.mode, "always_open");
    /* unmapped: still an access-control event, no type */
    ace(j, sizeof j, 2, 0x27, "\"serialNo\":21");
    assert_int_equal(parse(j, &ev), ISAPI_K_ACCESS);
    assert_null(ev.type);
    assert_false(isapi_event_map(2, 0x27, &ev));
    assert_true(isapi_event_map(5, 0x4b, &ev));
}

static void test_heartbeats_and_junk(void **state)
{
    (void)state;
    isapi_event_t ev;
    assert_int_equal(parse("{\"eventType\":\"heartBeat\",\"eventState\":\"active\"}", &ev), ISAPI_K_HEARTBEAT);
    assert_int_equal(parse("{\"eventType\":\"videoloss\",\"eventState\":\"inactive\"}", &ev), ISAPI_K_HEARTBEAT);
    assert_int_equal(parse("{\"AccessControllerEvent\":{\"majorEventType\":5,\"subEventType\":131}}", &ev),
                     ISAPI_K_HEARTBEAT);
    const char *x = "<EventNotificationAlert version=\"2.0\">\r\n<eventType>videoloss</eventType>\r\n"
                    "<eventState>inactive</eventState></EventNotificationAlert>";
    assert_int_equal(isapi_event_from_part("application/xml", x, strlen(x), &ev), ISAPI_K_HEARTBEAT);
    const char *x2 = "<EventNotificationAlert><eventType>VMD</eventType></EventNotificationAlert>";
    assert_int_equal(isapi_event_from_part("application/xml", x2, strlen(x2), &ev), ISAPI_K_IGNORED);
    assert_int_equal(isapi_event_from_part("text/plain", "", 0, &ev), ISAPI_K_HEARTBEAT);
    assert_int_equal(isapi_event_from_part("text/plain", NULL, 0, &ev), ISAPI_K_HEARTBEAT);
    assert_int_equal(isapi_event_from_part("", " \r\n", 3, &ev), ISAPI_K_HEARTBEAT);
    assert_int_equal(isapi_event_from_part("", "{\"eventType\":\"heartBeat\"}", 25, &ev), ISAPI_K_HEARTBEAT);
    assert_int_equal(parse("{\"eventType\":\"AccessControllerEvent\"", &ev), ISAPI_K_INVALID);
    assert_int_equal(parse("[1,2]", &ev), ISAPI_K_INVALID);
    assert_int_equal(parse("{\"eventType\":\"VMD\"}", &ev), ISAPI_K_IGNORED);
    assert_int_equal(parse("{\"AccessControllerEvent\":[]}", &ev), ISAPI_K_IGNORED);
    assert_int_equal(isapi_event_from_part("text/plain", "hello", 5, &ev), ISAPI_K_IGNORED);
    /* huge strings are cut, not overflowed */
    char j[4096], name[1000];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(j, sizeof j, "{\"AccessControllerEvent\":{\"majorEventType\":5,\"subEventType\":75,\"name\":\"%s\",\"employeeNoString\":\"%s\"}}",
             name, name);
    assert_int_equal(parse(j, &ev), ISAPI_K_ACCESS);
    assert_int_equal(strlen(ev.name), sizeof ev.name - 1);
    assert_int_equal(strlen(ev.person_id), sizeof ev.person_id - 1);
}

static void test_event_id_without_serial(void **state)
{
    (void)state;
    char j[512];
    isapi_event_t a, b, c;
    ace(j, sizeof j, 5, 75, "\"employeeNoString\":\"1\"");
    parse(j, &a);
    parse(j, &b);
    assert_int_equal(a.serial, -1);
    assert_true(a.event_id[0] == 'h');
    assert_string_equal(a.event_id, b.event_id); /* the same event replayed: same id */
    ace(j, sizeof j, 5, 75, "\"employeeNoString\":\"2\"");
    parse(j, &c);
    assert_string_not_equal(a.event_id, c.event_id);
}

static void test_seen_window(void **state)
{
    (void)state;
    isapi_seen_t w;
    assert_int_equal(isapi_seen_init(&w, 0), -1);
    assert_int_equal(isapi_seen_init(&w, ISAPI_SEEN_MAX + 1), -1);
    assert_int_equal(isapi_seen_init(&w, 16), 0);
    assert_false(isapi_seen_check(&w, "1"));
    assert_true(isapi_seen_check(&w, "1"));
    assert_false(isapi_seen_check(&w, ""));
    assert_false(isapi_seen_check(&w, ""));
    assert_false(isapi_seen_check(&w, NULL));
    char id[16];
    for (int i = 2; i <= 16; i++) {
        snprintf(id, sizeof id, "%d", i);
        assert_false(isapi_seen_check(&w, id));
    }
    assert_true(isapi_seen_check(&w, "1"));
    assert_false(isapi_seen_check(&w, "17")); /* evicts "1", the oldest */
    assert_false(isapi_seen_check(&w, "1"));  /* forgotten, remembered again (evicts "2") */
    assert_true(isapi_seen_check(&w, "3"));
    assert_false(isapi_seen_check(&w, "2"));
    for (int i = 0; i < 10000; i++) {
        snprintf(id, sizeof id, "x%d", i);
        isapi_seen_check(&w, id);
    }
    assert_int_equal(w.n, 16);
    assert_true(isapi_seen_check(&w, "x9999"));
    isapi_seen_free(&w);
}

static void test_door_body(void **state)
{
    (void)state;
    char b[512];
    assert_true(isapi_door_body("open", b, sizeof b) > 0);
    assert_non_null(strstr(b, "<RemoteControlDoor"));
    assert_non_null(strstr(b, "<cmd>open</cmd></RemoteControlDoor>"));
    assert_true(isapi_door_body("alwaysClose", b, sizeof b) > 0);
    assert_non_null(strstr(b, "<cmd>alwaysClose</cmd>"));
    assert_int_equal(isapi_door_body("resume<", b, sizeof b), -1);
    assert_int_equal(isapi_door_body(NULL, b, sizeof b), -1);
    assert_int_equal(isapi_door_body("open", b, 20), -1);
}

static void test_status(void **state)
{
    (void)state;
    isapi_status_t st;
    const char *ok = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ResponseStatus version=\"2.0\" "
                     "xmlns=\"http://www.isapi.org/ver20/XMLSchema\">\n<requestURL>/ISAPI/AccessControl/"
                     "RemoteControl/door/1</requestURL>\n<statusCode>1</statusCode>\n<statusString>OK"
                     "</statusString>\n<subStatusCode>ok</subStatusCode>\n</ResponseStatus>\n";
    assert_int_equal(isapi_parse_status(ok, strlen(ok), &st), 0);
    assert_int_equal(st.status_code, 1);
    assert_string_equal(st.status_string, "OK");
    assert_string_equal(st.sub_status, "ok");
    const char *bad = "<ResponseStatus><statusCode> 4 </statusCode><statusString>Invalid Operation"
                      "</statusString><subStatusCode>notSupport</subStatusCode></ResponseStatus>";
    assert_int_equal(isapi_parse_status(bad, strlen(bad), &st), 0);
    assert_int_equal(st.status_code, 4);
    assert_string_equal(st.sub_status, "notSupport");
    const char *js = "{\"statusCode\":6,\"statusString\":\"Invalid Content\",\"subStatusCode\":\"badParameters\","
                     "\"errorCode\":1610612737,\"errorMsg\":\"door\"}";
    assert_int_equal(isapi_parse_status(js, strlen(js), &st), 0);
    assert_int_equal(st.status_code, 6);
    assert_string_equal(st.sub_status, "badParameters");
    assert_string_equal(st.error_msg, "door");
    assert_int_equal(isapi_parse_status("<html>nope</html>", 17, &st), -1);
    assert_int_equal(isapi_parse_status("<statusCode>x1</statusCode>", 27, &st), -1);
    assert_int_equal(isapi_parse_status("<statusCode>1", 13, &st), -1);
    assert_int_equal(isapi_parse_status("{\"x\":1}", 7, &st), -1);
    assert_int_equal(isapi_parse_status(NULL, 0, &st), -1);
    /* bounded by len, not by NUL */
    assert_int_equal(isapi_parse_status(ok, 60, &st), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_granted_face),
        cmocka_unit_test(test_denied_and_methods),
        cmocka_unit_test(test_door_events),
        cmocka_unit_test(test_heartbeats_and_junk),
        cmocka_unit_test(test_event_id_without_serial),
        cmocka_unit_test(test_seen_window),
        cmocka_unit_test(test_door_body),
        cmocka_unit_test(test_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
