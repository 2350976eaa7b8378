/*
 * modbus_codec.c - pure Modbus data conversion and request planning.
 * See modbus_codec.h. No libmodbus, no SDK, no mutable globals.
 */
#include "modbus_codec.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names -------------------------------------------------------------- */

const char *const mb_table_names[] = {"coil", "discrete", "holding", "input", NULL};
const char *const mb_type_names[] = {"bool",   "int16",   "uint16",   "int32",
                                     "uint32", "float32", "bitfield", NULL};
const char *const mb_order_names[] = {"big", "little", NULL};

int mb_lookup(const char *const *names, const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], s) == 0)
            return i;
    }
    return -1;
}

/* ---- tables and types ---------------------------------------------------- */

bool mb_table_is_bits(mb_table_t t)
{
    return t == MB_TABLE_COIL || t == MB_TABLE_DISCRETE;
}

bool mb_table_is_writable(mb_table_t t)
{
    return t == MB_TABLE_COIL || t == MB_TABLE_HOLDING;
}

unsigned mb_table_max_read(mb_table_t t)
{
    return mb_table_is_bits(t) ? MB_MAX_READ_BITS : MB_MAX_READ_REGISTERS;
}

unsigned mb_read_function(mb_table_t t)
{
    switch (t) {
    case MB_TABLE_COIL:
        return 1;
    case MB_TABLE_DISCRETE:
        return 2;
    case MB_TABLE_HOLDING:
        return 3;
    case MB_TABLE_INPUT:
        return 4;
    default:
        return 0;
    }
}

unsigned mb_write_function(mb_table_t t, mb_type_t type)
{
    if (t == MB_TABLE_COIL)
        return type == MB_TYPE_BOOL ? 5 : 0;
    if (t != MB_TABLE_HOLDING || type == MB_TYPE_BITFIELD || type >= MB_TYPE_COUNT)
        return 0;
    return mb_type_registers(type) == 1 ? 6 : 16;
}

unsigned mb_type_registers(mb_type_t t)
{
    switch (t) {
    case MB_TYPE_INT32:
    case MB_TYPE_UINT32:
    case MB_TYPE_FLOAT32:
        return 2;
    default:
        return 1;
    }
}

bool mb_type_is_integer(mb_type_t t)
{
    return t == MB_TYPE_INT16 || t == MB_TYPE_UINT16 || t == MB_TYPE_INT32 || t == MB_TYPE_UINT32;
}

bool mb_type_fits_table(mb_type_t type, mb_table_t table)
{
    if (type >= MB_TYPE_COUNT || table >= MB_TABLE_COUNT)
        return false;
    return mb_table_is_bits(table) ? type == MB_TYPE_BOOL : true;
}

/* ---- decoding ------------------------------------------------------------ */

uint16_t mb_swap16(uint16_t v)
{
    return (uint16_t)((v >> 8) | (v << 8));
}

static uint16_t wire_word(uint16_t w, mb_order_t byte_order)
{
    return byte_order == MB_ORDER_LITTLE ? mb_swap16(w) : w;
}

uint32_t mb_words_to_u32(const uint16_t words[2], mb_order_t word_order, mb_order_t byte_order)
{
    uint16_t w0 = wire_word(words[0], byte_order);
    uint16_t w1 = wire_word(words[1], byte_order);
    if (word_order == MB_ORDER_LITTLE)
        return ((uint32_t)w1 << 16) | w0;
    return ((uint32_t)w0 << 16) | w1;
}

void mb_u32_to_words(uint32_t v, mb_order_t word_order, mb_order_t byte_order, uint16_t words[2])
{
    uint16_t hi = (uint16_t)(v >> 16), lo = (uint16_t)(v & 0xffffu);
    if (word_order == MB_ORDER_LITTLE) {
        words[0] = wire_word(lo, byte_order);
        words[1] = wire_word(hi, byte_order);
    } else {
        words[0] = wire_word(hi, byte_order);
        words[1] = wire_word(lo, byte_order);
    }
}

static float u32_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t float_to_u32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

double mb_float_shortest(float f)
{
    char buf[32];
    if (!isfinite(f))
        return (double)f;
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f)
            return strtod(buf, NULL);
    }
    return (double)f; /* not reached: 9 digits always round-trip a float */
}

mb_raw_t mb_decode_words(const mb_format_t *f, const uint16_t *words)
{
    mb_raw_t r = {0};
    uint16_t w;
    uint32_t u;

    switch (f->type) {
    case MB_TYPE_BOOL:
        r.i = words[0] != 0;
        break;
    case MB_TYPE_INT16:
        w = wire_word(words[0], f->byte_order);
        r.i = (int16_t)w;
        break;
    case MB_TYPE_UINT16:
    case MB_TYPE_BITFIELD:
        r.i = wire_word(words[0], f->byte_order);
        break;
    case MB_TYPE_INT32:
        u = mb_words_to_u32(words, f->word_order, f->byte_order);
        r.i = (int32_t)u;
        break;
    case MB_TYPE_UINT32:
        r.i = mb_words_to_u32(words, f->word_order, f->byte_order);
        break;
    case MB_TYPE_FLOAT32:
        r.is_float = true;
        r.f = mb_float_shortest(u32_to_float(mb_words_to_u32(words, f->word_order, f->byte_order)));
        break;
    default:
        break;
    }
    if (!r.is_float)
        r.f = (double)r.i;
    return r;
}

/* If 1/scale is an integer k >= 2, return k; else 0. */
static double reciprocal_integer(double scale)
{
    if (!(fabs(scale) < 1.0) || scale == 0.0)
        return 0.0;
    double inv = 1.0 / scale;
    double k = nearbyint(inv);
    if (fabs(k) >= 2.0 && fabs(inv - k) <= 1e-9 * fabs(k))
        return k;
    return 0.0;
}

double mb_apply_scale(double raw, double scale, double offset)
{
    double k = reciprocal_integer(scale);
    double v = k != 0.0 ? raw / k : raw * scale;
    return offset != 0.0 ? v + offset : v;
}

double mb_raw_to_eng(const mb_format_t *f, mb_raw_t raw)
{
    if (f->type == MB_TYPE_BOOL || f->type == MB_TYPE_BITFIELD)
        return raw.f;
    return mb_apply_scale(raw.f, f->scale, f->offset);
}

bool mb_format_is_integral(const mb_format_t *f)
{
    return mb_type_is_integer(f->type) && f->scale == 1.0 && f->offset == 0.0;
}

bool mb_bit(uint16_t raw, unsigned bit)
{
    return bit < 16 && ((raw >> bit) & 1u) != 0;
}

/* ---- encoding ------------------------------------------------------------ */

const char *mb_enc_strerror(mb_enc_err_t e)
{
    switch (e) {
    case MB_ENC_OK:
        return "ok";
    case MB_ENC_NOT_FINITE:
        return "value is not a finite number";
    case MB_ENC_BELOW_MIN:
        return "value below min";
    case MB_ENC_ABOVE_MAX:
        return "value above max";
    case MB_ENC_NO_FIT:
        return "value does not fit the register type";
    case MB_ENC_NOT_WRITABLE:
        return "type is not writable";
    }
    return "unknown error";
}

double mb_eng_to_raw_exact(const mb_format_t *f, double eng)
{
    double x = eng - f->offset;
    double k = reciprocal_integer(f->scale);
    return k != 0.0 ? x * k : x / f->scale;
}

static bool integer_range(mb_type_t t, double *lo, double *hi)
{
    switch (t) {
    case MB_TYPE_BOOL:
        *lo = 0;
        *hi = 1;
        return true;
    case MB_TYPE_INT16:
        *lo = INT16_MIN;
        *hi = INT16_MAX;
        return true;
    case MB_TYPE_UINT16:
        *lo = 0;
        *hi = UINT16_MAX;
        return true;
    case MB_TYPE_INT32:
        *lo = INT32_MIN;
        *hi = INT32_MAX;
        return true;
    case MB_TYPE_UINT32:
        *lo = 0;
        *hi = UINT32_MAX;
        return true;
    default:
        return false;
    }
}

/* Round half away from zero, ignoring float noise below 1e-6 raw units. */
static double round_raw(double x)
{
    if (fabs(x) < 1e9)
        x = nearbyint(x * 1e6) / 1e6;
    return round(x);
}

void mb_encode_raw(const mb_format_t *f, mb_raw_t raw, uint16_t words[2])
{
    words[0] = words[1] = 0;
    switch (f->type) {
    case MB_TYPE_BOOL:
        words[0] = raw.i != 0;
        break;
    case MB_TYPE_INT16:
    case MB_TYPE_UINT16:
    case MB_TYPE_BITFIELD:
        words[0] = wire_word((uint16_t)(raw.i & 0xffff), f->byte_order);
        break;
    case MB_TYPE_INT32:
    case MB_TYPE_UINT32:
        mb_u32_to_words((uint32_t)(raw.i & 0xffffffff), f->word_order, f->byte_order, words);
        break;
    case MB_TYPE_FLOAT32:
        mb_u32_to_words(float_to_u32((float)raw.f), f->word_order, f->byte_order, words);
        break;
    default:
        break;
    }
}

mb_enc_err_t mb_encode_eng(const mb_format_t *f, const mb_limits_t *lim, double eng,
                           mb_raw_t *raw, uint16_t words[2])
{
    mb_raw_t r = {0};
    double lo, hi;

    words[0] = words[1] = 0;
    if (f->type == MB_TYPE_BITFIELD || f->type >= MB_TYPE_COUNT)
        return MB_ENC_NOT_WRITABLE;
    if (!isfinite(eng))
        return MB_ENC_NOT_FINITE;
    if (f->type == MB_TYPE_BOOL) {
        if (eng != 0.0 && eng != 1.0)
            return MB_ENC_NO_FIT;
        r.i = (int64_t)eng;
        r.f = eng;
    } else {
        if (lim && lim->has_min && eng < lim->min)
            return MB_ENC_BELOW_MIN;
        if (lim && lim->has_max && eng > lim->max)
            return MB_ENC_ABOVE_MAX;
        double x = mb_eng_to_raw_exact(f, eng);
        if (!isfinite(x))
            return MB_ENC_NO_FIT;
        if (f->type == MB_TYPE_FLOAT32) {
            if (fabs(x) > FLT_MAX)
                return MB_ENC_NO_FIT;
            r.is_float = true;
            r.f = mb_float_shortest((float)x);
        } else {
            x = round_raw(x);
            if (!integer_range(f->type, &lo, &hi) || x < lo || x > hi)
                return MB_ENC_NO_FIT;
            r.i = (int64_t)x;
            r.f = x;
        }
    }
    mb_encode_raw(f, r, words);
    if (raw)
        *raw = r;
    return MB_ENC_OK;
}

/* ---- planning ------------------------------------------------------------ */

typedef struct plan_item {
    mb_table_t table;
    uint32_t address, count;
    size_t index;
} plan_item_t;

static int plan_cmp(const void *a, const void *b)
{
    const plan_item_t *x = a, *y = b;
    if (x->table != y->table)
        return x->table < y->table ? -1 : 1;
    if (x->address != y->address)
        return x->address < y->address ? -1 : 1;
    if (x->index != y->index)
        return x->index < y->index ? -1 : 1;
    return 0;
}

int mb_plan_blocks(const mb_span_t *spans, size_t n, unsigned max_gap, unsigned max_regs,
                   unsigned max_bits, mb_block_t *blocks, size_t *block_of)
{
    if (n == 0)
        return 0;
    if (max_regs == 0)
        max_regs = MB_MAX_READ_REGISTERS;
    if (max_bits == 0)
        max_bits = MB_MAX_READ_BITS;
    if (n > (size_t)0x7fffffff)
        return -1;

    plan_item_t *items = malloc(n * sizeof *items);
    if (!items)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const mb_span_t *s = &spans[i];
        unsigned limit = mb_table_is_bits(s->table) ? max_bits : max_regs;
        if (s->table >= MB_TABLE_COUNT || s->count == 0 || s->count > limit ||
            s->address >= MB_ADDRESS_SPACE || s->count > MB_ADDRESS_SPACE - s->address) {
            free(items);
            return -1;
        }
        items[i] = (plan_item_t){s->table, s->address, s->count, i};
    }
    qsort(items, n, sizeof *items, plan_cmp);

    int nb = 0;
    mb_block_t *cur = NULL;
    for (size_t k = 0; k < n; k++) {
        const plan_item_t *it = &items[k];
        unsigned limit = mb_table_is_bits(it->table) ? max_bits : max_regs;
        uint32_t it_end = it->address + it->count;
        if (cur && cur->table == it->table) {
            uint32_t cur_end = cur->address + cur->count;
            /* sorted by address, so it->address >= cur->address */
            if ((uint64_t)it->address <= (uint64_t)cur_end + max_gap) {
                uint32_t new_end = it_end > cur_end ? it_end : cur_end;
                if (new_end - cur->address <= limit) {
                    cur->count = new_end - cur->address;
                    block_of[it->index] = (size_t)(nb - 1);
                    continue;
                }
            }
        }
        cur = &blocks[nb++];
        *cur = (mb_block_t){it->table, it->address, it->count};
        block_of[it->index] = (size_t)(nb - 1);
    }
    free(items);
    return nb;
}

/* ---- names ---------------------------------------------------------------- */

const char *mb_exception_name(int code)
{
    switch (code) {
    case 1:
        return "illegal function";
    case 2:
        return "illegal data address";
    case 3:
        return "illegal data value";
    case 4:
        return "server device failure";
    case 5:
        return "acknowledge";
    case 6:
        return "server device busy";
    case 7:
        return "negative acknowledge";
    case 8:
        return "memory parity error";
    case 10:
        return "gateway path unavailable";
    case 11:
        return "gateway target device failed to respond";
    default:
        return NULL;
    }
}

char *mb_exception_text(int code, char *buf, size_t len)
{
    const char *name = mb_exception_name(code);
    if (name)
        snprintf(buf, len, "modbus exception %d: %s", code, name);
    else
        snprintf(buf, len, "modbus exception %d", code);
    return buf;
}

static bool all_chars(const char *s, bool upper, const char *extra)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            continue;
        if (upper && c >= 'A' && c <= 'Z')
            continue;
        if (strchr(extra, c))
            continue;
        return false;
    }
    return true;
}

bool mb_is_id(const char *s)
{
    return all_chars(s, false, "_.-");
}

bool mb_is_value_name(const char *s)
{
    return all_chars(s, true, "_.-");
}

bool mb_is_command_name(const char *s)
{
    return all_chars(s, false, "_.");
}

bool mb_is_reserved_state_name(const char *s)
{
    static const char *const reserved[] = {"ts",  "site", "class",  "device", "instance",
                                           "boot", "seq", "online", "reason", NULL};
    return mb_lookup(reserved, s) >= 0;
}
