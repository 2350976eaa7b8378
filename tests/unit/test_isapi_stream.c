/*
 * test_isapi_stream - the isapi-door alertStream multipart parser
 * (plugins/isapi-door/isapi_stream.c): a recorded stream fed in every
 * chunking (every split in two, byte by byte, random chunk sizes), CRLF and
 * LF line ends, boundary-delimited parts with boundary-like bytes inside,
 * image parts skipped, a truncated part, oversized parts bounded, the
 * closing boundary, empty (heartbeat) parts and the Content-Type boundary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "isapi_stream.h"

#define MAXP 32

typedef struct rec {
    size_t n;
    char ctype[MAXP][ISAPI_CTYPE_MAX + 1];
    char *body[MAXP];
    size_t len[MAXP];
    unsigned flags[MAXP];
} rec_t;

static void on_part(const isapi_part_t *p, void *ud)
{
    rec_t *r = ud;
    assert_true(r->n < MAXP);
    snprintf(r->ctype[r->n], sizeof r->ctype[r->n], "%s", p->content_type);
    r->body[r->n] = p->body ? strndup(p->body, p->len) : NULL;
    if (p->body)
        assert_int_equal(strlen(p->body), p->len); /* NUL-terminated at len */
    r->len[r->n] = p->len;
    r->flags[r->n] = p->flags;
    r->n++;
}

static void rec_free(rec_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->body[i]);
    memset(r, 0, sizeof *r);
}

static void rec_equal(const rec_t *a, const rec_t *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_string_equal(a->ctype[i], b->ctype[i]);
        assert_int_equal(a->len[i], b->len[i]);
        assert_int_equal(a->flags[i], b->flags[i]);
        if (a->body[i] || b->body[i]) {
            assert_non_null(a->body[i]);
            assert_non_null(b->body[i]);
            assert_string_equal(a->body[i], b->body[i]);
        }
    }
}

#define EV1 "{\"eventType\":\"AccessControllerEvent\",\"AccessControllerEvent\":{\"majorEventType\":5,\"subEventType\":75,\"employeeNoString\":\"1024\",\"serialNo\":7}}"
#define HB "{\"eventType\":\"heartBeat\"}"
#define XMLHB "<EventNotificationAlert><eventType>videoloss</eventType>\r\n<eventState>inactive</eventState></EventNotificationAlert>"

static char IMG[300];

/* A stream as a terminal sends it: a preamble line, JSON with
 * Content-Length, a picture with Content-Length, an XML heartbeat, a
 * boundary-delimited JSON part, an empty heartbeat part, a delimited picture
 * whose bytes contain CR, LF and a boundary-like line, and a final event. */
static size_t recorded(char *out, size_t cap, bool lf_only)
{
    for (size_t i = 0; i < sizeof IMG; i++)
        IMG[i] = (char)(i * 37 + 11);
    IMG[0] = (char)0xff;
    IMG[1] = (char)0xd8;
    memcpy(IMG + 50, "\r\n--MIME_boundaryX\r\n", 20);
    memcpy(IMG + 100, "\n--MIME_boundary-\n", 18);
    for (size_t i = 120; i < sizeof IMG; i++)
        if (IMG[i] == '\n')
            IMG[i] = 'n';
    const char *nl = lf_only ? "\n" : "\r\n";
    size_t o = 0;
#define ADD(s, l) do { memcpy(out + o, (s), (l)); o += (l); } while (0)
#define ADDS(s) ADD((s), strlen(s))
    ADDS("preamble text");
    ADDS(nl);
    char hdr[256];
    snprintf(hdr, sizeof hdr, "--MIME_boundary%sContent-Type: application/json; charset=\"UTF-8\"%sContent-Length: %zu%s%s",
             nl, nl, strlen(EV1), nl, nl);
    ADDS(hdr);
    ADDS(EV1);
    ADDS(nl);
    snprintf(hdr, sizeof hdr, "--MIME_boundary%sContent-Type: image/jpeg%sContent-Length: %zu%sContent-ID: pictureImage%s%s",
             nl, nl, sizeof IMG, nl, nl, nl);
    ADDS(hdr);
    ADD(IMG, sizeof IMG);
    ADDS(nl);
    snprintf(hdr, sizeof hdr, "--MIME_boundary%scontent-type: application/xml%scontent-length: %zu%s%s", nl, nl,
             strlen(XMLHB), nl, nl);
    ADDS(hdr);
    ADDS(XMLHB);
    ADDS(nl);
    snprintf(hdr, sizeof hdr, "--MIME_boundary%sContent-Type: application/json%s%s", nl, nl, nl);
    ADDS(hdr);
    ADDS(HB);
    ADDS(nl);
    snprintf(hdr, sizeof hdr, "--MIME_boundary%sContent-Type: text/plain%sContent-Length: 0%s%s%s", nl, nl, nl, nl, nl);
    ADDS(hdr);
    snprintf(hdr, sizeof hdr, "--MIME_boundary%sContent-Type: image/jpeg%s%s", nl, nl, nl);
    ADDS(hdr);
    ADD(IMG, sizeof IMG);
    ADDS(nl);
    snprintf(hdr, sizeof hdr, "--MIME_boundary  %sContent-Type: application/json%sContent-Length: %zu%s%s", nl, nl,
             strlen(EV1), nl, nl);
    ADDS(hdr);
    ADDS(EV1);
    ADDS(nl);
    ADDS("--MIME_boundary--");
    ADDS(nl);
    ADDS("epilogue --MIME_boundary");
    ADDS(nl);
    assert_true(o < cap);
    return o;
}

static void expect_recorded(const rec_t *r)
{
    assert_int_equal(r->n, 7);
    assert_string_equal(r->ctype[0], "application/json; charset=\"UTF-8\"");
    assert_string_equal(r->body[0], EV1);
    assert_int_equal(r->flags[1], ISAPI_PART_SKIPPED);
    assert_int_equal(r->len[1], sizeof IMG);
    assert_null(r->body[1]);
    assert_string_equal(r->ctype[2], "application/xml");
    assert_int_equal(r->flags[3], 0);
    assert_string_equal(r->body[3], HB);
    assert_int_equal(r->len[4], 0);
    assert_int_equal(r->flags[4], 0);
    assert_int_equal(r->flags[5], ISAPI_PART_SKIPPED);
    assert_int_equal(r->len[5], sizeof IMG);
    assert_string_equal(r->body[6], EV1);
}

static void parse_whole(const char *data, size_t len, rec_t *r, isapi_stream_t *s)
{
    assert_int_equal(isapi_stream_init(s, NULL, 4096, on_part, r), 0);
    isapi_stream_feed(s, data, len);
}

static void test_whole(void **state)
{
    (void)state;
    static char buf[8192];
    for (int lf = 0; lf < 2; lf++) {
        size_t n = recorded(buf, sizeof buf, lf);
        rec_t r = {0};
        isapi_stream_t s;
        parse_whole(buf, n, &r, &s);
        expect_recorded(&r);
        assert_true(isapi_stream_ended(&s));
        assert_int_equal(s.skipped, 2);
        assert_true(s.garbage_lines >= 1); /* the preamble */
        isapi_stream_free(&s);
        rec_free(&r);
    }
}

static void test_every_split(void **state)
{
    (void)state;
    static char buf[8192];
    for (int lf = 0; lf < 2; lf++) {
        size_t n = recorded(buf, sizeof buf, lf);
        rec_t ref = {0};
        isapi_stream_t s;
        parse_whole(buf, n, &ref, &s);
        isapi_stream_free(&s);
        for (size_t cut = 0; cut <= n; cut++) {
            rec_t r = {0};
            assert_int_equal(isapi_stream_init(&s, NULL, 4096, on_part, &r), 0);
            isapi_stream_feed(&s, buf, cut);
            isapi_stream_feed(&s, buf + cut, n - cut);
            rec_equal(&ref, &r);
            isapi_stream_free(&s);
            rec_free(&r);
        }
        rec_free(&ref);
    }
}

static void test_byte_by_byte_and_random(void **state)
{
    (void)state;
    static char buf[8192];
    for (int lf = 0; lf < 2; lf++) {
        size_t n = recorded(buf, sizeof buf, lf);
        rec_t r = {0};
        isapi_stream_t s;
        assert_int_equal(isapi_stream_init(&s, NULL, 4096, on_part, &r), 0);
        for (size_t i = 0; i < n; i++)
            isapi_stream_feed(&s, buf + i, 1);
        expect_recorded(&r);
        isapi_stream_free(&s);
        rec_free(&r);
        unsigned seed = 12345;
        for (int round = 0; round < 200; round++) {
            assert_int_equal(isapi_stream_init(&s, NULL, 4096, on_part, &r), 0);
            size_t o = 0;
            while (o < n) {
                seed = seed * 1103515245u + 12345u;
                size_t c = 1 + (seed >> 16) % 40;
                if (c > n - o)
                    c = n - o;
                isapi_stream_feed(&s, buf + o, c);
                o += c;
            }
            expect_recorded(&r);
            isapi_stream_free(&s);
            rec_free(&r);
        }
    }
}

static void test_truncated_part(void **state)
{
    (void)state;
    static char buf[8192];
    size_t n = recorded(buf, sizeof buf, false);
    /* cut in the middle of the first JSON body */
    const char *body = strstr(buf, "{\"eventType\":\"AccessControllerEvent\"");
    size_t cut = (size_t)(body - buf) + 20;
    rec_t r = {0};
    isapi_stream_t s;
    assert_int_equal(isapi_stream_init(&s, NULL, 4096, on_part, &r), 0);
    isapi_stream_feed(&s, buf, cut);
    assert_true(isapi_stream_in_part(&s));
    assert_int_equal(r.n, 0);
    isapi_stream_reset(&s); /* the connection was lost: reconnect */
    assert_int_equal(s.truncated, 1);
    assert_false(isapi_stream_in_part(&s));
    isapi_stream_feed(&s, buf, n); /* a new connection sends everything */
    expect_recorded(&r);
    isapi_stream_free(&s);
    rec_free(&r);

    /* cut in the headers, and in a delimited part */
    assert_int_equal(isapi_stream_init(&s, NULL, 4096, on_part, &r), 0);
    isapi_stream_feed(&s, "--MIME_boundary\r\nContent-Ty", 27);
    isapi_stream_reset(&s);
    isapi_stream_feed(&s, "--MIME_boundary\r\n\r\n{\"a\":1}\r\nmore", 33);
    isapi_stream_reset(&s);
    assert_int_equal(s.truncated, 2);
    assert_int_equal(r.n, 0);
    isapi_stream_free(&s);
}

static void test_oversize(void **state)
{
    (void)state;
    static char buf[40000];
    size_t o = 0;
    char big[10001];
    memset(big, 'a', 10000);
    big[0] = '"';
    big[9999] = '"';
    big[10000] = '\0';
    o += (size_t)sprintf(buf + o, "--MIME_boundary\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n%s\r\n", big);
    o += (size_t)sprintf(buf + o, "--MIME_boundary\r\nContent-Type: application/json\r\n\r\n%s\r\n", big);
    o += (size_t)sprintf(buf + o, "--MIME_boundary\r\nContent-Type: application/json\r\n\r\n" HB "\r\n");
    o += (size_t)sprintf(buf + o, "--MIME_boundary\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n" HB "\r\n", strlen(HB));
    /* a header line longer than any header we accept */
    o += (size_t)sprintf(buf + o, "--MIME_boundary\r\nX-Long: ");
    memset(buf + o, 'x', 3000);
    o += 3000;
    o += (size_t)sprintf(buf + o, "\r\nContent-Type: application/json\r\n\r\n" HB "\r\n--MIME_boundary--\r\n");
    for (size_t chunk = 1; chunk <= 4096; chunk *= 4) {
        rec_t r = {0};
        isapi_stream_t s;
        assert_int_equal(isapi_stream_init(&s, NULL, 1024, on_part, &r), 0);
        for (size_t i = 0; i < o; i += chunk)
            isapi_stream_feed(&s, buf + i, i + chunk <= o ? chunk : o - i);
        assert_int_equal(r.n, 5);
        assert_int_equal(r.flags[0], ISAPI_PART_OVERSIZE);
        assert_int_equal(r.len[0], 10000);
        assert_null(r.body[0]);
        assert_int_equal(r.flags[1], ISAPI_PART_OVERSIZE);
        assert_int_equal(r.len[1], 10000);
        assert_string_equal(r.body[2], HB);
        assert_string_equal(r.body[3], HB);
        assert_string_equal(r.body[4], HB);
        assert_int_equal(s.oversize, 2);
        assert_true(isapi_stream_ended(&s));
        isapi_stream_free(&s);
        rec_free(&r);
    }
}

static void test_delimited_exact_max(void **state)
{
    (void)state;
    /* a delimited body of exactly max_part bytes is kept */
    char body[1025];
    memset(body, 'b', 1024);
    body[1024] = '\0';
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "--MIME_boundary\r\n\r\n%s\r\n--MIME_boundary--\r\n", body);
    rec_t r = {0};
    isapi_stream_t s;
    assert_int_equal(isapi_stream_init(&s, NULL, 1024, on_part, &r), 0);
    isapi_stream_feed(&s, buf, (size_t)n);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.flags[0], 0);
    assert_int_equal(r.len[0], 1024);
    isapi_stream_free(&s);
    rec_free(&r);
}

static void test_missing_blank_line(void **state)
{
    (void)state;
    /* boundary directly after a boundary: an empty part */
    const char *in = "--MIME_boundary\r\n--MIME_boundary\r\nContent-Type: application/json\r\n\r\n" HB "\r\n--MIME_boundary--\r\n";
    rec_t r = {0};
    isapi_stream_t s;
    assert_int_equal(isapi_stream_init(&s, "MIME_boundary", 1024, on_part, &r), 0);
    isapi_stream_feed(&s, in, strlen(in));
    assert_int_equal(r.n, 2);
    assert_int_equal(r.len[0], 0);
    assert_string_equal(r.body[1], HB);
    isapi_stream_free(&s);
    rec_free(&r);
}

static void test_boundary_param(void **state)
{
    (void)state;
    char b[80];
    assert_int_equal(isapi_boundary_from_ctype("multipart/mixed; boundary=MIME_boundary", b, sizeof b), 0);
    assert_string_equal(b, "MIME_boundary");
    assert_int_equal(isapi_boundary_from_ctype("multipart/mixed;boundary=\"a b;c\"; charset=x", b, sizeof b), 0);
    assert_string_equal(b, "a b;c");
    assert_int_equal(isapi_boundary_from_ctype(" multipart/mixed; Boundary=xyz\r\n", b, sizeof b), 0);
    assert_string_equal(b, "xyz");
    assert_int_equal(isapi_boundary_from_ctype("multipart/mixed", b, sizeof b), -1);
    assert_int_equal(isapi_boundary_from_ctype("multipart/mixed; xboundary=1", b, sizeof b), -1);
    assert_int_equal(isapi_boundary_from_ctype("multipart/mixed; boundary=\"\"", b, sizeof b), -1);
    char longb[200];
    memset(longb, 'q', sizeof longb);
    memcpy(longb, "boundary=", 9);
    longb[199] = '\0';
    assert_int_equal(isapi_boundary_from_ctype(longb, b, sizeof b), -1);
    isapi_stream_t s;
    assert_int_equal(isapi_stream_init(&s, longb, 1024, NULL, NULL), -1);
    assert_int_equal(isapi_stream_init(&s, "ok", 10, NULL, NULL), -1);

    /* a custom boundary from the header */
    rec_t r = {0};
    assert_int_equal(isapi_stream_init(&s, "xyz", 1024, on_part, &r), 0);
    const char *in = "--MIME_boundary\r\n\r\nnot a part\r\n--xyz\r\nContent-Type: application/json\r\n\r\n" HB "\r\n--xyz--";
    isapi_stream_feed(&s, in, strlen(in));
    assert_int_equal(r.n, 0); /* the closing boundary line is not complete yet */
    isapi_stream_feed(&s, "\r\n", 2);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.body[0], HB);
    isapi_stream_free(&s);
    rec_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_byte_by_byte_and_random),
        cmocka_unit_test(test_truncated_part),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_delimited_exact_max),
        cmocka_unit_test(test_missing_blank_line),
        cmocka_unit_test(test_boundary_param),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
