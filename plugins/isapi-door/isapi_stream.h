/*
 * isapi_stream.h - incremental parser of the ISAPI alertStream body
 * (multipart/mixed, RFC 2046, as Hikvision terminals send it).
 *
 * Pure code (no I/O, no SDK): fed arbitrary chunks, it finds boundary lines,
 * part headers and bodies (Content-Length or boundary-delimited), and calls
 * back once per complete part. Text parts (JSON, XML, text) are buffered up
 * to `max_part` bytes; larger ones are reported oversized without their body.
 * Binary parts (image/..., application/octet-stream) are never buffered: they
 * are reported as skipped. Memory is bounded by max_part plus a line.
 */
#ifndef CCGW_ISAPI_STREAM_H
#define CCGW_ISAPI_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ISAPI_BOUNDARY_MAX 70 /* RFC 2046 */
#define ISAPI_HDR_LINE_MAX 1024
#define ISAPI_CTYPE_MAX 128

enum {
    ISAPI_PART_SKIPPED = 1u << 0, /* binary part (image): body not kept */
    ISAPI_PART_OVERSIZE = 1u << 1 /* text part larger than max_part: body not kept */
};

typedef struct isapi_part {
    const char *content_type; /* "" when the part has none */
    const char *body;         /* NUL-terminated copy, NULL when skipped/oversize */
    size_t len;               /* body length (also when not kept) */
    unsigned flags;
} isapi_part_t;

typedef void (*isapi_part_cb)(const isapi_part_t *part, void *ud);

typedef struct isapi_stream {
    char boundary[ISAPI_BOUNDARY_MAX + 3]; /* "--" + boundary */
    size_t blen;
    size_t max_part;
    isapi_part_cb cb;
    void *ud;

    int state;
    /* line assembly (preamble, headers, boundary search) */
    char line[ISAPI_HDR_LINE_MAX + 1];
    size_t line_len;
    bool line_long;
    /* current part */
    char ctype[ISAPI_CTYPE_MAX + 1];
    long long clen;    /* -1: delimited by the boundary */
    bool keep;         /* text part: buffer the body */
    char *buf;         /* body buffer (kept parts) */
    size_t buf_len, buf_cap;
    uint64_t body_total;   /* bytes of body seen (all parts) */
    uint64_t body_remain;  /* Content-Length mode */
    /* delimited mode: where the current body line started, and the length
     * of the line terminator before it (1 or 2; 0 at the start of the body) */
    uint64_t line_start;
    unsigned prev_term;
    bool prev_cr;

    /* counters */
    uint64_t parts, skipped, oversize, truncated, garbage_lines;
} isapi_stream_t;

/* Sets up a parser. `boundary` without the leading "--" (NULL or "" means
 * "MIME_boundary", the Hikvision default). max_part >= 64. 0 or -1 (bad
 * boundary or out of memory). */
int isapi_stream_init(isapi_stream_t *s, const char *boundary, size_t max_part, isapi_part_cb cb,
                      void *ud);
void isapi_stream_free(isapi_stream_t *s);
/* Starts over (new connection): a part in progress is dropped and counted
 * as truncated. */
void isapi_stream_reset(isapi_stream_t *s);
/* Feeds a chunk; parts complete in it are called back before it returns. */
void isapi_stream_feed(isapi_stream_t *s, const void *data, size_t len);
/* True while inside a part (headers or body seen, not yet complete). */
bool isapi_stream_in_part(const isapi_stream_t *s);
/* True after the closing boundary ("--B--"). */
bool isapi_stream_ended(const isapi_stream_t *s);

/* The boundary parameter of a Content-Type header value
 * ("multipart/mixed; boundary=MIME_boundary", quoted or not). 0, or -1 when
 * absent or too long. */
int isapi_boundary_from_ctype(const char *ctype, char *out, size_t len);

#endif /* CCGW_ISAPI_STREAM_H */
