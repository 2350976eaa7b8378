/*
 * fuzz_isapi_stream - the isapi-door alertStream path: the incremental
 * multipart parser (plugins/isapi-door/isapi_stream.c) fed the input in
 * chunks whose sizes come from the input itself, every part through the
 * event mapping (isapi_event.c: JSON with jansson, XML heartbeats) and the
 * recent-id window, and the whole input as a ResponseStatus body.
 *
 * Input: byte 0 = max_part selector, byte 1 = chunk-size seed, rest = stream.
 * The same stream is also fed in one piece and must give the same parts
 * (chunking must not change the result).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isapi_event.h"
#include "isapi_stream.h"

typedef struct acc {
    isapi_seen_t seen;
    uint64_t digest; /* order-sensitive hash of the parts seen */
    size_t parts;
} acc_t;

static void on_part(const isapi_part_t *p, void *ud)
{
    acc_t *a = ud;
    a->parts++;
    uint64_t h = a->digest ^ (p->len * 1099511628211ull) ^ p->flags;
    for (const char *c = p->content_type; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
    if (p->body) {
        if (strlen(p->body) > p->len)
            abort(); /* NUL must terminate the body at len */
        for (size_t i = 0; i < p->len; i++)
            h = (h ^ (unsigned char)p->body[i]) * 1099511628211ull;
    }
    a->digest = h;
    isapi_event_t ev;
    isapi_kind_t k = isapi_event_from_part(p->content_type, p->body, p->body ? p->len : 0, &ev);
    if (k == ISAPI_K_ACCESS) {
        if (strlen(ev.person_id) >= sizeof ev.person_id || strlen(ev.event_id) >= sizeof ev.event_id)
            abort();
        isapi_seen_check(&a->seen, ev.event_id);
    }
}

static void run(const uint8_t *data, size_t size, size_t max_part, unsigned seed, bool chunked,
                acc_t *a)
{
    isapi_stream_t s;
    memset(a, 0, sizeof *a);
    if (isapi_seen_init(&a->seen, 16) != 0)
        abort();
    if (isapi_stream_init(&s, NULL, max_part, on_part, a) != 0)
        abort();
    size_t o = 0;
    while (o < size) {
        size_t c = size - o;
        if (chunked) {
            seed = seed * 1103515245u + 12345u;
            c = 1 + (seed >> 16) % 97;
            if (c > size - o)
                c = size - o;
        }
        isapi_stream_feed(&s, data + o, c);
        o += c;
    }
    isapi_stream_reset(&s);
    isapi_stream_free(&s);
    isapi_seen_free(&a->seen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_part = 64 + (size_t)data[0] * 16;
    unsigned seed = data[1];
    data += 2;
    size -= 2;
    acc_t a, b;
    run(data, size, max_part, seed, true, &a);
    run(data, size, max_part, seed, false, &b);
    if (a.parts != b.parts || a.digest != b.digest)
        abort(); /* chunking changed the result */
    isapi_status_t st;
    isapi_parse_status((const char *)data, size, &st);
    char boundary[80];
    char ct[256];
    size_t n = size < sizeof ct - 1 ? size : sizeof ct - 1;
    memcpy(ct, data, n);
    ct[n] = '\0';
    isapi_boundary_from_ctype(ct, boundary, sizeof boundary);
    return 0;
}
