/*
 * isapi_stream.c - incremental multipart/mixed parser for the ISAPI
 * alertStream. See isapi_stream.h. Pure code: unit-tested and fuzzed.
 */
#include "isapi_stream.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { ST_PREAMBLE = 0, ST_HEADERS, ST_BODY_LEN, ST_BODY_DELIM, ST_END };

int isapi_stream_init(isapi_stream_t *s, const char *boundary, size_t max_part, isapi_part_cb cb,
                      void *ud)
{
    memset(s, 0, sizeof *s);
    if (!boundary || !*boundary)
        boundary = "MIME_boundary";
    size_t bl = strlen(boundary);
    if (bl > ISAPI_BOUNDARY_MAX || max_part < 64)
        return -1;
    for (size_t i = 0; i < bl; i++) {
        if ((unsigned char)boundary[i] < 0x20 || boundary[i] == 0x7f)
            return -1;
    }
    s->boundary[0] = s->boundary[1] = '-';
    memcpy(s->boundary + 2, boundary, bl + 1);
    s->blen = bl + 2;
    s->max_part = max_part;
    s->cb = cb;
    s->ud = ud;
    s->buf_cap = max_part + s->blen + 8;
    s->buf = malloc(s->buf_cap + 1);
    if (!s->buf)
        return -1;
    isapi_stream_reset(s);
    s->truncated = 0;
    return 0;
}

void isapi_stream_free(isapi_stream_t *s)
{
    free(s->buf);
    s->buf = NULL;
}

static void part_begin(isapi_stream_t *s)
{
    s->ctype[0] = '\0';
    s->clen = -1;
    s->keep = false;
    s->buf_len = 0;
    s->body_total = 0;
    s->body_remain = 0;
    s->line_start = 0;
    s->prev_term = 0;
    s->prev_cr = false;
}

void isapi_stream_reset(isapi_stream_t *s)
{
    if (s->state == ST_HEADERS || s->state == ST_BODY_LEN || s->state == ST_BODY_DELIM)
        s->truncated++;
    s->state = ST_PREAMBLE;
    s->line_len = 0;
    s->line_long = false;
    part_begin(s);
}

bool isapi_stream_in_part(const isapi_stream_t *s)
{
    return s->state == ST_HEADERS || s->state == ST_BODY_LEN || s->state == ST_BODY_DELIM;
}

bool isapi_stream_ended(const isapi_stream_t *s)
{
    return s->state == ST_END;
}

/* 1 for "--B", 2 for "--B--" (trailing blanks allowed), 0 otherwise.
 * `line` has no line terminator. */
static int boundary_kind(const isapi_stream_t *s, const char *line, size_t len)
{
    while (len && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (len < s->blen || memcmp(line, s->boundary, s->blen) != 0)
        return 0;
    if (len == s->blen)
        return 1;
    if (len == s->blen + 2 && line[s->blen] == '-' && line[s->blen + 1] == '-')
        return 2;
    return 0;
}

static void emit(isapi_stream_t *s, size_t body_len)
{
    isapi_part_t p = {.content_type = s->ctype, .body = NULL, .len = body_len, .flags = 0};
    if (!s->keep) {
        p.flags |= ISAPI_PART_SKIPPED;
        s->skipped++;
    } else if (body_len > s->max_part || body_len > s->buf_len) {
        p.flags |= ISAPI_PART_OVERSIZE;
        s->oversize++;
    } else {
        s->buf[body_len] = '\0';
        p.body = s->buf;
    }
    s->parts++;
    if (s->cb)
        s->cb(&p, s->ud);
}

static bool is_binary_type(const char *ct)
{
    return strncasecmp(ct, "image/", 6) == 0 || strncasecmp(ct, "video/", 6) == 0 ||
           strncasecmp(ct, "audio/", 6) == 0 ||
           strncasecmp(ct, "application/octet-stream", 24) == 0;
}

static void header_line(isapi_stream_t *s, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return;
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    if (nlen == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
        if (vlen > ISAPI_CTYPE_MAX)
            vlen = ISAPI_CTYPE_MAX;
        memcpy(s->ctype, v, vlen);
        s->ctype[vlen] = '\0';
    } else if (nlen == 14 && strncasecmp(line, "Content-Length", 14) == 0) {
        long long n = 0;
        bool ok = vlen > 0 && vlen <= 15;
        for (size_t i = 0; ok && i < vlen; i++) {
            if (!isdigit((unsigned char)v[i]))
                ok = false;
            else
                n = n * 10 + (v[i] - '0');
        }
        s->clen = ok ? n : -1;
    }
}

/* A complete line in ST_PREAMBLE or ST_HEADERS (terminator removed). */
static void on_line(isapi_stream_t *s, const char *line, size_t len, bool long_line)
{
    if (len && line[len - 1] == '\r')
        len--;
    if (s->state == ST_PREAMBLE) {
        int k = long_line ? 0 : boundary_kind(s, line, len);
        if (k == 1) {
            part_begin(s);
            s->state = ST_HEADERS;
        } else if (k == 2) {
            s->state = ST_END;
        } else if (len) {
            s->garbage_lines++;
        }
        return;
    }
    /* ST_HEADERS */
    if (len == 0) {
        s->keep = !is_binary_type(s->ctype);
        if (s->clen >= 0) {
            s->body_remain = (uint64_t)s->clen;
            s->state = ST_BODY_LEN;
            if (s->body_remain == 0) {
                emit(s, 0);
                s->state = ST_PREAMBLE;
            }
        } else {
            s->state = ST_BODY_DELIM;
        }
        return;
    }
    /* a boundary where headers were expected: an empty part without the
     * blank line (seen on some firmware as a heartbeat) */
    int k = long_line ? 0 : boundary_kind(s, line, len);
    if (k) {
        s->keep = true;
        emit(s, 0);
        part_begin(s);
        s->state = k == 1 ? ST_HEADERS : ST_END;
        return;
    }
    if (!long_line)
        header_line(s, line, len);
}

/* Line-mode bytes (preamble, headers). Returns bytes consumed: stops after
 * a line that switched into a body state. */
static size_t feed_lines(isapi_stream_t *s, const char *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(p + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (p + i)) : len - i;
        size_t room = ISAPI_HDR_LINE_MAX - s->line_len;
        size_t copy = n < room ? n : room;
        memcpy(s->line + s->line_len, p + i, copy);
        s->line_len += copy;
        if (copy < n)
            s->line_long = true;
        i += n;
        if (!nl)
            break;
        i++; /* the '\n' */
        bool lng = s->line_long;
        size_t ll = s->line_len;
        s->line_len = 0;
        s->line_long = false;
        on_line(s, s->line, ll, lng);
        if (s->state != ST_PREAMBLE && s->state != ST_HEADERS)
            break;
    }
    return i;
}

static size_t feed_body_len(isapi_stream_t *s, const char *p, size_t len)
{
    size_t n = len < s->body_remain ? len : (size_t)s->body_remain;
    bool store = s->keep && (uint64_t)s->clen <= s->max_part;
    if (store) {
        memcpy(s->buf + s->buf_len, p, n);
        s->buf_len += n;
    }
    s->body_remain -= n;
    if (s->body_remain == 0) {
        emit(s, (size_t)s->clen);
        s->state = ST_PREAMBLE;
        s->line_len = 0;
        s->line_long = false;
    }
    return n;
}

static size_t feed_body_delim(isapi_stream_t *s, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (s->keep && s->buf_len < s->buf_cap)
            s->buf[s->buf_len++] = c;
        s->body_total++;
        if (c != '\n') {
            if (s->line_len < ISAPI_HDR_LINE_MAX)
                s->line[s->line_len++] = c;
            else
                s->line_long = true;
            s->prev_cr = c == '\r';
            continue;
        }
        size_t ll = s->line_len;
        bool cr = s->prev_cr;
        s->prev_cr = false;
        int k = s->line_long ? 0 : boundary_kind(s, s->line, cr ? ll - 1 : ll);
        s->line_len = 0;
        s->line_long = false;
        if (k) {
            uint64_t body = s->line_start >= s->prev_term ? s->line_start - s->prev_term : 0;
            emit(s, (size_t)body);
            part_begin(s);
            s->state = k == 1 ? ST_HEADERS : ST_END;
            return i + 1;
        }
        s->prev_term = cr ? 2 : 1;
        s->line_start = s->body_total;
    }
    return len;
}

void isapi_stream_feed(isapi_stream_t *s, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        size_t n;
        switch (s->state) {
        case ST_PREAMBLE:
        case ST_HEADERS: n = feed_lines(s, p, len); break;
        case ST_BODY_LEN: n = feed_body_len(s, p, len); break;
        case ST_BODY_DELIM: n = feed_body_delim(s, p, len); break;
        default: return; /* ST_END: the rest is epilogue */
        }
        p += n;
        len -= n;
    }
}

int isapi_boundary_from_ctype(const char *ctype, char *out, size_t len)
{
    if (!ctype)
        return -1;
    const char *b = NULL;
    for (const char *q = ctype; *q; q++) {
        if (strncasecmp(q, "boundary=", 9) == 0 && (q == ctype || q[-1] == ';' || q[-1] == ' ' || q[-1] == '\t')) {
            b = q + 9;
            break;
        }
    }
    if (!b)
        return -1;
    size_t n;
    if (*b == '"') {
        b++;
        const char *e = strchr(b, '"');
        if (!e)
            return -1;
        n = (size_t)(e - b);
    } else {
        n = strcspn(b, "; \t\r\n");
    }
    if (n == 0 || n > ISAPI_BOUNDARY_MAX || n >= len)
        return -1;
    memcpy(out, b, n);
    out[n] = '\0';
    return 0;
}
