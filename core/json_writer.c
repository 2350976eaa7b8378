/* json_writer - see json_writer.h. */
#include "json_writer.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ccgw_jw_init(ccgw_jw_t *w)
{
    memset(w, 0, sizeof *w);
    w->first[0] = 1;
}

void ccgw_jw_reset(ccgw_jw_t *w)
{
    w->len = 0;
    w->depth = 0;
    w->after_key = false;
    w->error = false;
    w->first[0] = 1;
    if (w->buf)
        w->buf[0] = '\0';
}

void ccgw_jw_free(ccgw_jw_t *w)
{
    free(w->buf);
    ccgw_jw_init(w);
}

char *ccgw_jw_take(ccgw_jw_t *w, size_t *len)
{
    char *b = w->buf;
    if (len)
        *len = w->len;
    if (w->error) {
        free(b);
        b = NULL;
    }
    ccgw_jw_init(w);
    return b;
}

static bool reserve(ccgw_jw_t *w, size_t extra)
{
    if (w->error)
        return false;
    if (w->len + extra + 1 <= w->cap)
        return true;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + extra + 1)
        cap *= 2;
    char *nb = realloc(w->buf, cap);
    if (!nb) {
        w->error = true;
        return false;
    }
    w->buf = nb;
    w->cap = cap;
    return true;
}

static void put(ccgw_jw_t *w, const char *s, size_t n)
{
    if (!reserve(w, n))
        return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void putch(ccgw_jw_t *w, char c)
{
    if (!reserve(w, 1))
        return;
    w->buf[w->len++] = c;
    w->buf[w->len] = '\0';
}

/* comma management before a value or a key */
static void pre(ccgw_jw_t *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (!w->first[w->depth])
        putch(w, ',');
    w->first[w->depth] = 0;
}

static void open(ccgw_jw_t *w, char c)
{
    pre(w);
    putch(w, c);
    if (w->depth + 1 >= CCGW_JW_MAX_DEPTH) {
        w->error = true;
        return;
    }
    w->depth++;
    w->first[w->depth] = 1;
}

static void close_(ccgw_jw_t *w, char c)
{
    if (w->depth > 0)
        w->depth--;
    putch(w, c);
}

void ccgw_jw_begin_object(ccgw_jw_t *w) { open(w, '{'); }
void ccgw_jw_end_object(ccgw_jw_t *w) { close_(w, '}'); }
void ccgw_jw_begin_array(ccgw_jw_t *w) { open(w, '['); }
void ccgw_jw_end_array(ccgw_jw_t *w) { close_(w, ']'); }

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0; /* overlong or out of range */
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0; /* surrogate */
    return len;
}

/* 1 for the bytes put_escaped copies as they are without looking closer */
static const unsigned char plain_tab[256] = {
#define P4 1, 1, 1, 1
#define P16 P4, P4, P4, P4
    /* 0x00-0x1f: control characters */
    [0x20] = 1, [0x21] = 1, /* 0x22 '"' */ [0x23] = 1, [0x24] = 1, [0x25] = 1, [0x26] = 1,
    [0x27] = 1, [0x28] = 1, [0x29] = 1, [0x2a] = 1, [0x2b] = 1, [0x2c] = 1, [0x2d] = 1,
    [0x2e] = 1, [0x2f] = 1, [0x30] = P16, [0x40] = P16, [0x50] = P4, [0x54] = P4, [0x58] = P4,
    [0x5c] = 0, /* '\\' */ [0x5d] = 1, [0x5e] = 1, [0x5f] = 1, [0x60] = P16, [0x70] = P16,
    /* 0x80-0xff: UTF-8, checked */
#undef P16
#undef P4
};

static void put_escaped(ccgw_jw_t *w, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    if (!reserve(w, n + 2))
        return;
    /* common case: nothing to escape (keys, ids, most values): one copy */
    size_t p = 0;
    while (p < n && plain_tab[s[p]])
        p++;
    if (p == n) {
        char *o = w->buf + w->len;
        o[0] = '"';
        memcpy(o + 1, s, n);
        o[n + 1] = '"';
        o[n + 2] = '\0';
        w->len += n + 2;
        return;
    }
    putch(w, '"');
    size_t run = 0; /* start of a run of bytes copied as they are */
    size_t i = 0;
    while (i < n) {
        /* plain printable ASCII other than '"' and '\\' is copied as it is:
         * skip runs of it with one table look-up per byte */
        while (i < n && plain_tab[s[i]])
            i++;
        if (i >= n)
            break;
        unsigned c = s[i];
        const char *esc = NULL;
        char ubuf[7];
        size_t adv = 1;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c < 0x20) {
            switch (c) {
            case '\n': esc = "\\n"; break;
            case '\r': esc = "\\r"; break;
            case '\t': esc = "\\t"; break;
            case '\b': esc = "\\b"; break;
            case '\f': esc = "\\f"; break;
            default:
                ubuf[0] = '\\'; ubuf[1] = 'u'; ubuf[2] = '0'; ubuf[3] = '0';
                ubuf[4] = hex[c >> 4]; ubuf[5] = hex[c & 15]; ubuf[6] = 0;
                esc = ubuf;
            }
        } else if (c >= 0x80) {
            adv = utf8_seq(s + i, n - i);
            if (adv == 0) {
                esc = "\xEF\xBF\xBD"; /* U+FFFD */
                adv = 1;
            } else if (adv == 3 && c == 0xE2 && s[i + 1] == 0x80 && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9)) {
                esc = s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029"; /* safe inside <script> */
            }
        }
        if (esc) {
            put(w, (const char *)s + run, i - run);
            put(w, esc, strlen(esc));
            i += adv;
            run = i;
        } else {
            i += adv;
        }
    }
    put(w, (const char *)s + run, n - run);
    putch(w, '"');
}

void ccgw_jw_key(ccgw_jw_t *w, const char *key)
{
    pre(w);
    put_escaped(w, key ? key : "", key ? strlen(key) : 0);
    putch(w, ':');
    w->after_key = true;
}

void ccgw_jw_string_n(ccgw_jw_t *w, const char *s, size_t n)
{
    pre(w);
    if (!s) {
        put(w, "null", 4);
        return;
    }
    put_escaped(w, s, n);
}

void ccgw_jw_string(ccgw_jw_t *w, const char *s) { ccgw_jw_string_n(w, s, s ? strlen(s) : 0); }

/* decimal digits of v at the end of b[24]; returns where they start */
static char *u64_digits(char b[24], uint64_t v)
{
    char *p = b + 24;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

void ccgw_jw_int(ccgw_jw_t *w, int64_t v)
{
    char b[24];
    char *p = u64_digits(b, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (v < 0)
        *--p = '-';
    pre(w);
    put(w, p, (size_t)(b + 24 - p));
}

void ccgw_jw_uint(ccgw_jw_t *w, uint64_t v)
{
    char b[24];
    char *p = u64_digits(b, v);
    pre(w);
    put(w, p, (size_t)(b + 24 - p));
}

static const double pow10_tab[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,
                                   1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19};
static const uint64_t pow10_int[] = {1ull,
                                     10ull,
                                     100ull,
                                     1000ull,
                                     10000ull,
                                     100000ull,
                                     1000000ull,
                                     10000000ull,
                                     100000000ull,
                                     1000000000ull,
                                     10000000000ull,
                                     100000000000ull,
                                     1000000000000ull,
                                     10000000000000ull,
                                     100000000000000ull,
                                     1000000000000000ull,
                                     10000000000000000ull,
                                     100000000000000000ull,
                                     1000000000000000000ull,
                                     10000000000000000000ull};

__extension__ typedef unsigned __int128 u128;

/* The correctly rounded (ties to even, as printf in the default rounding
 * mode) p significant digits of M * 2^-s: q in [10^(p-1), 10^p) and the
 * decimal exponent x of its first digit, value ~ q * 10^(x-p+1); with
 * 2^52 <= M < 2^53, 1e-4 <= value < 1e15 (so 0 <= k = p-1-x <= 20, and
 * M * 10^k < 2^120, s <= 66). Also says whether q * 10^-k reads back as
 * M * 2^-s (lies inside its rounding interval, ties to even). */
static uint64_t digits_p(uint64_t M, int s, int p, int x, int *x_out, bool *roundtrip)
{
    for (int tries = 0; tries < 3; tries++) {
        int k = p - 1 - x;
        if (k < 0 || k > 20)
            return 0;
        u128 pk = 1;
        for (int i = 0; i < k; i++)
            pk *= 10;
        u128 num = (u128)M * pk;
        u128 q = num >> s;
        u128 r = num - (q << s);
        if (q >= (u128)pow10_int[p]) { /* x too small */
            x++;
            continue;
        }
        if (q < (u128)pow10_int[p - 1]) { /* x too large */
            x--;
            continue;
        }
        u128 half = (u128)1 << (s - 1);
        if (r > half || (r == half && (q & 1)))
            q++;
        if (q == (u128)pow10_int[p]) { /* 99..9 rounded up to 10..0 */
            q /= 10;
            x++;
            k--;
            pk /= 10;
        }
        /* round trip: |q * 2^s - M * 10^k| < 10^k / 2 (a quarter below
         * v when M = 2^52: the next double down is closer), equal with M even */
        u128 lhs = q << s, rhs = (u128)M * pk;
        u128 diff = lhs >= rhs ? lhs - rhs : rhs - lhs;
        bool below = lhs < rhs;
        u128 bound = pk; /* compare 2 * diff (or 4 * diff) with 10^k */
        u128 d2 = (below && M == (1ull << 52)) ? diff * 4 : diff * 2;
        *roundtrip = d2 < bound || (d2 == bound && (M & 1) == 0);
        *x_out = x;
        return (uint64_t)q;
    }
    return 0;
}

/* Write q (p digits, first digit at decimal exponent x, -4 <= x < p) the way
 * %.<p>g does: fixed notation, trailing zeros and a bare point dropped. */
static size_t put_fixed(char *out, bool neg, uint64_t q, int p, int x)
{
    char d[20];
    for (int i = p - 1; i >= 0; i--) {
        d[i] = (char)('0' + q % 10);
        q /= 10;
    }
    int last = p - 1; /* last significant digit kept */
    while (last > 0 && last > x && d[last] == '0')
        last--;
    size_t n = 0;
    if (neg)
        out[n++] = '-';
    if (x >= 0) {
        for (int i = 0; i <= x; i++)
            out[n++] = d[i];
        if (last > x) {
            out[n++] = '.';
            for (int i = x + 1; i <= last; i++)
                out[n++] = d[i];
        }
    } else {
        out[n++] = '0';
        out[n++] = '.';
        for (int i = 0; i < -x - 1; i++)
            out[n++] = '0';
        for (int i = 0; i <= last; i++)
            out[n++] = d[i];
    }
    out[n] = '\0';
    return n;
}

/* %.16g if it reads back exactly, else %.17g, for a normal 1e-4 <= |v| < 1e15;
 * 0 when it cannot tell (the caller falls back to printf). */
static size_t fmt_16_17(char out[32], double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int be = (int)((bits >> 52) & 0x7ff);
    if (be == 0 || be == 0x7ff)
        return 0;
    uint64_t M = (bits & ((1ull << 52) - 1)) | (1ull << 52);
    int s = 1075 - be; /* v = M * 2^-s */
    if (s < 1 || s > 66)
        return 0;
    int x0 = (int)floor(log10(fabs(v))); /* corrected exactly by digits_p */
    bool rt = false;
    int x = 0;
    uint64_t q = digits_p(M, s, 16, x0, &x, &rt);
    if (!q)
        return 0;
    if (rt && x >= -4 && x < 16)
        return put_fixed(out, v < 0, q, 16, x);
    q = digits_p(M, s, 17, x0, &x, &rt);
    if (!q || x < -4 || x >= 17)
        return 0;
    return put_fixed(out, v < 0, q, 17, x);
}

/*
 * The format of ccgw_jw_double: the shortest of %.15g / %.16g / %.17g that
 * reads back exactly (strtod). That costs two printf_fp runs and a strtod per
 * value; the fast path below gives the identical string without them for the
 * common case, a decimal D = m / 10^k with at most 15 significant digits
 * (m < 10^15) that converts back to v, and 1e-4 <= |D| (so %g prints it in
 * fixed notation):
 *   - m / 10^k is one correctly rounded IEEE division of two exact doubles, so
 *     `m / p == v` means strtod("D") == v;
 *   - a decimal of <= 15 (DBL_DIG) significant digits survives the round trip
 *     decimal -> double -> 15 digits, so %.15g of v is D (trailing zeros
 *     stripped), which reads back exactly: the loop would stop at 15;
 *   - the smallest such k is found: if some m' / 10^k' == v with m' < 10^15,
 *     then |v * 10^k' - m'| < 0.25, so rint() finds m'.
 * Anything else (more digits, tiny, huge, -0) takes the printf/strtod loop.
 */
size_t ccgw_fmt_double(char out[32], double v)
{
    double a = fabs(v);
    if (a != 0 && a < 1e15) {
        for (int k = 0; k <= 19; k++) { /* 15 digits from 1e-4 up */
            double p = pow10_tab[k];
            double md = rint(a * p);
            if (md >= 1e15)
                break;
            if (md / p != a)
                continue;
            uint64_t m = (uint64_t)md;
            if (k >= 4 && m < pow10_int[k - 4])
                break; /* |D| < 1e-4: %g would use an exponent */
            char tmp[40];
            size_t t = 0;
            uint64_t ip = m / pow10_int[k], fp = m % pow10_int[k];
            do {
                tmp[t++] = (char)('0' + ip % 10);
                ip /= 10;
            } while (ip);
            size_t n = 0;
            if (v < 0)
                out[n++] = '-';
            while (t)
                out[n++] = tmp[--t];
            if (k > 0) {
                out[n++] = '.';
                for (int i = k - 1; i >= 0; i--) {
                    out[n + (size_t)i] = (char)('0' + fp % 10);
                    fp /= 10;
                }
                n += (size_t)k;
            }
            out[n] = '\0';
            return n;
        }
    }
    if (a >= 1e-4 && a < 1e15) {
        /* no decimal of <= 15 digits reads back as v (the loop above would
         * have found it): %.15g does not round-trip, so it is %.16g or %.17g */
        size_t n = fmt_16_17(out, v);
        if (n)
            return n;
    }
    int n = 0;
    /* shortest of %.15g / %.16g / %.17g that reads back exactly */
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, 32, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            break;
    }
    return n > 0 ? (size_t)n : 0;
}

void ccgw_jw_double(ccgw_jw_t *w, double v)
{
    pre(w);
    if (!isfinite(v)) {
        put(w, "null", 4);
        return;
    }
    char b[32];
    size_t n = ccgw_fmt_double(b, v);
    put(w, b, n);
}

void ccgw_jw_bool(ccgw_jw_t *w, bool v)
{
    pre(w);
    if (v)
        put(w, "true", 4);
    else
        put(w, "false", 5);
}

void ccgw_jw_null(ccgw_jw_t *w)
{
    pre(w);
    put(w, "null", 4);
}

void ccgw_jw_raw_value(ccgw_jw_t *w, const char *json, size_t n)
{
    pre(w);
    put(w, json, n);
}

void ccgw_jw_raw_members(ccgw_jw_t *w, const char *members, size_t n)
{
    if (n == 0)
        return;
    pre(w);
    put(w, members, n);
}

static void value_depth(ccgw_jw_t *w, const ccgw_value_t *v, int depth)
{
    switch (v->type) {
    case CCGW_VAL_BOOL: ccgw_jw_bool(w, v->v.b); break;
    case CCGW_VAL_INT: ccgw_jw_int(w, v->v.i); break;
    case CCGW_VAL_DOUBLE: ccgw_jw_double(w, v->v.d); break;
    case CCGW_VAL_STRING: ccgw_jw_string(w, v->v.s); break;
    case CCGW_VAL_OBJECT:
        if (depth >= 8 || (v->v.obj.count && !v->v.obj.items)) {
            ccgw_jw_null(w);
            break;
        }
        ccgw_jw_begin_object(w);
        for (size_t i = 0; i < v->v.obj.count; i++) {
            ccgw_jw_key(w, v->v.obj.items[i].name ? v->v.obj.items[i].name : "");
            value_depth(w, &v->v.obj.items[i], depth + 1);
        }
        ccgw_jw_end_object(w);
        break;
    case CCGW_VAL_NULL:
    default: ccgw_jw_null(w); break;
    }
}

void ccgw_jw_value(ccgw_jw_t *w, const ccgw_value_t *v) { value_depth(w, v, 0); }

size_t ccgw_json_escape(char *out, size_t cap, const char *s)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_string(&w, s);
    size_t n = 0;
    if (!w.error && w.len < cap) {
        memcpy(out, w.buf, w.len + 1);
        n = w.len;
    }
    ccgw_jw_free(&w);
    return n;
}
