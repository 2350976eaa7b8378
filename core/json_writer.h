/*
 * json_writer - a small, fast JSON writer into a growable buffer.
 *
 * The core owns the wire format: every payload is written here, never by a
 * plugin. Strings are escaped per RFC 8259 and always valid UTF-8 on output
 * (invalid input sequences become U+FFFD); numbers use the shortest text that
 * reads back to the same double; NaN and infinities become null. Commas are
 * managed by the writer. Out of memory sticks in `error` and the payload is
 * discarded by the caller.
 */
#ifndef CCGW_JSON_WRITER_H
#define CCGW_JSON_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ccgw/values.h"

#define CCGW_JW_MAX_DEPTH 32

typedef struct ccgw_jw {
    char *buf;
    size_t len, cap;
    int depth;
    bool after_key;
    bool error;
    uint8_t first[CCGW_JW_MAX_DEPTH];
} ccgw_jw_t;

void ccgw_jw_init(ccgw_jw_t *w);
void ccgw_jw_reset(ccgw_jw_t *w);  /* keep the buffer, drop the content */
void ccgw_jw_free(ccgw_jw_t *w);
/* Hand the buffer (NUL-terminated) to the caller; the writer is reset. */
char *ccgw_jw_take(ccgw_jw_t *w, size_t *len);

void ccgw_jw_begin_object(ccgw_jw_t *w);
void ccgw_jw_end_object(ccgw_jw_t *w);
void ccgw_jw_begin_array(ccgw_jw_t *w);
void ccgw_jw_end_array(ccgw_jw_t *w);
void ccgw_jw_key(ccgw_jw_t *w, const char *key);
void ccgw_jw_string(ccgw_jw_t *w, const char *s);
void ccgw_jw_string_n(ccgw_jw_t *w, const char *s, size_t n);
void ccgw_jw_int(ccgw_jw_t *w, int64_t v);
void ccgw_jw_uint(ccgw_jw_t *w, uint64_t v);
void ccgw_jw_double(ccgw_jw_t *w, double v);
/* The text ccgw_jw_double writes for a finite v (shortest of %.15g/%.16g/%.17g
 * that reads back exactly), NUL-terminated in out; returns its length. */
size_t ccgw_fmt_double(char out[32], double v);
void ccgw_jw_bool(ccgw_jw_t *w, bool v);
void ccgw_jw_null(ccgw_jw_t *w);
/* Insert already-encoded JSON (a value, or "k":v,... members with raw_members). */
void ccgw_jw_raw_value(ccgw_jw_t *w, const char *json, size_t n);
void ccgw_jw_raw_members(ccgw_jw_t *w, const char *members, size_t n);

/* Write one ccgw_value_t's value (not its name). Depth-limited. */
void ccgw_jw_value(ccgw_jw_t *w, const ccgw_value_t *v);

/* Escape into a caller buffer as a JSON string literal with quotes; returns
 * the encoded length (0 on overflow). For topics/prefixes built once. */
size_t ccgw_json_escape(char *out, size_t cap, const char *s);

#endif
