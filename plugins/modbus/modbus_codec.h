/*
 * modbus_codec.h - pure Modbus data conversion and request planning.
 *
 * No libmodbus, no SDK, no I/O, no global mutable state: everything here is
 * a function of its arguments, so tests/unit/test_modbus_codec.c covers it
 * completely and the plugin's worker threads may call it concurrently.
 *
 *  - register words <-> engineering values for every point type, with word
 *    order (which register of a 32-bit value comes first) and byte order
 *    (which byte of each register comes first), scale and offset;
 *  - the reverse path for writes: range check in engineering units, reverse
 *    scale/offset, rounding, check that the raw value fits the type;
 *  - the block planner that merges points into as few read requests as the
 *    protocol limits allow;
 *  - names: the option choices, Modbus exception texts and id checks.
 */
#ifndef CCGW_MODBUS_CODEC_H
#define CCGW_MODBUS_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- tables, types, orders ------------------------------------------ */

/* The four Modbus data tables. */
typedef enum mb_table {
    MB_TABLE_COIL = 0,     /* read/write bits: FC1 read, FC5 write */
    MB_TABLE_DISCRETE = 1, /* read-only bits: FC2 */
    MB_TABLE_HOLDING = 2,  /* read/write registers: FC3 read, FC6/FC16 write */
    MB_TABLE_INPUT = 3,    /* read-only registers: FC4 */
    MB_TABLE_COUNT
} mb_table_t;

typedef enum mb_type {
    MB_TYPE_BOOL = 0,  /* a bit, or a register read as (value != 0) */
    MB_TYPE_INT16,     /* 1 register, two's complement */
    MB_TYPE_UINT16,    /* 1 register */
    MB_TYPE_INT32,     /* 2 registers, two's complement */
    MB_TYPE_UINT32,    /* 2 registers */
    MB_TYPE_FLOAT32,   /* 2 registers, IEEE 754 single */
    MB_TYPE_BITFIELD,  /* 1 register, expanded into named bits 0..15 */
    MB_TYPE_COUNT
} mb_type_t;

typedef enum mb_order {
    MB_ORDER_BIG = 0,   /* most significant first (the Modbus norm) */
    MB_ORDER_LITTLE = 1 /* least significant first */
} mb_order_t;

/* NULL-terminated name lists, indexed by the enums above (option choices). */
extern const char *const mb_table_names[];
extern const char *const mb_type_names[];
extern const char *const mb_order_names[];

/* Index of `s` in a NULL-terminated list, or -1 (also for s == NULL). */
int mb_lookup(const char *const *names, const char *s);

/* Protocol limits of one read request (Modbus spec 6.1-6.4). */
#define MB_MAX_READ_BITS 2000u
#define MB_MAX_READ_REGISTERS 125u
#define MB_ADDRESS_SPACE 65536u

bool mb_table_is_bits(mb_table_t t);     /* coil, discrete */
bool mb_table_is_writable(mb_table_t t); /* coil, holding */
unsigned mb_table_max_read(mb_table_t t); /* 2000 bits or 125 registers */
/* Function code of a read of the table (1..4). */
unsigned mb_read_function(mb_table_t t);
/* Function code a write of a point uses: 5 (coil), 6 (one register),
 * 16 (two registers), or 0 when the table or type is not writable. */
unsigned mb_write_function(mb_table_t t, mb_type_t type);

/* Registers (or bits, on a bit table) one value occupies: 1 or 2. */
unsigned mb_type_registers(mb_type_t t);
bool mb_type_is_integer(mb_type_t t); /* int16, uint16, int32, uint32 */
/* Bit tables hold only bool; register tables hold every type. */
bool mb_type_fits_table(mb_type_t type, mb_table_t table);

/* ---- decoding --------------------------------------------------------- */

typedef struct mb_format {
    mb_type_t type;
    mb_order_t word_order; /* 32-bit types: BIG = high word at the lower address */
    mb_order_t byte_order; /* each register: BIG = high byte first on the wire */
    double scale;          /* engineering = raw * scale + offset; never 0 */
    double offset;
} mb_format_t;

/* A raw (unscaled) value as the device holds it. */
typedef struct mb_raw {
    bool is_float; /* float32: `f` is set; else `i` is set */
    int64_t i;
    double f;
} mb_raw_t;

uint16_t mb_swap16(uint16_t v);

/* Combine two registers as they came off the wire (words[0] at the lower
 * address) into a 32-bit value, and back. Byte order swaps inside each
 * register first; word order then picks which register is high. */
uint32_t mb_words_to_u32(const uint16_t words[2], mb_order_t word_order, mb_order_t byte_order);
void mb_u32_to_words(uint32_t v, mb_order_t word_order, mb_order_t byte_order, uint16_t words[2]);

/* Raw value of a register-table point from its mb_type_registers() words.
 * bool: 1 when the register is non-zero; bitfield: the register as uint16
 * (byte order applied); float32: via mb_float_shortest(), may be NaN or
 * infinite. */
mb_raw_t mb_decode_words(const mb_format_t *f, const uint16_t *words);

/* The double nearest to the shortest decimal that reads back as `f`
 * (22.1f -> 22.1, not 22.100000381469727): float32 values publish as the
 * device meant them. NaN and infinities pass through. */
double mb_float_shortest(float f);

/* raw * scale + offset. A scale that is the reciprocal of an integer (0.1,
 * 0.01, 0.5) divides instead, so 235 * 0.1 gives exactly 23.5. NaN and
 * infinities pass through. */
double mb_apply_scale(double raw, double scale, double offset);
double mb_raw_to_eng(const mb_format_t *f, mb_raw_t raw);

/* Whether a point's engineering value is an integer for every raw value
 * (integer type, scale 1, offset 0): publish it as an integer. */
bool mb_format_is_integral(const mb_format_t *f);

/* Bit `bit` (0..15) of a bitfield raw value. */
bool mb_bit(uint16_t raw, unsigned bit);

/* ---- encoding (writes) ------------------------------------------------ */

typedef enum mb_enc_err {
    MB_ENC_OK = 0,
    MB_ENC_NOT_FINITE, /* NaN or infinity */
    MB_ENC_BELOW_MIN,  /* engineering value < limits.min */
    MB_ENC_ABOVE_MAX,  /* engineering value > limits.max */
    MB_ENC_NO_FIT,     /* raw value does not fit the type (or not 0/1 for bool) */
    MB_ENC_NOT_WRITABLE /* bitfield: not a writable type */
} mb_enc_err_t;

const char *mb_enc_strerror(mb_enc_err_t e);

typedef struct mb_limits {
    bool has_min, has_max;
    double min, max; /* engineering units, inclusive */
} mb_limits_t;

/* Engineering value -> raw: (eng - offset) / scale; integer types round to
 * nearest, halves away from zero (after dropping float noise below 1e-6 of
 * a raw unit, so 23.45 at scale 0.1 gives 235). */
double mb_eng_to_raw_exact(const mb_format_t *f, double eng);

/* Prepare a write: check `eng` against `lim` (may be NULL), convert it to
 * raw, check the raw value fits the type, and fill `words` (the type's
 * register count, in the point's word and byte order). bool takes 0 or 1
 * (scale/offset ignored) and gives words[0] = 0 or 1. */
mb_enc_err_t mb_encode_eng(const mb_format_t *f, const mb_limits_t *lim, double eng,
                           mb_raw_t *raw, uint16_t words[2]);

/* Raw -> words without checks (the value must fit). */
void mb_encode_raw(const mb_format_t *f, mb_raw_t raw, uint16_t words[2]);

/* ---- request planning ------------------------------------------------- */

/* One point as the planner sees it: `count` registers (or bits) from `address`. */
typedef struct mb_span {
    mb_table_t table;
    uint32_t address; /* 0..65535 */
    uint32_t count;   /* 1..2; address + count <= 65536 */
} mb_span_t;

/* One read request. */
typedef struct mb_block {
    mb_table_t table;
    uint32_t address;
    uint32_t count;
} mb_block_t;

/* Merge spans of the same table whose addresses overlap, touch, or leave a
 * gap of at most `max_gap` registers (bits on bit tables) into blocks of at
 * most `max_regs` registers (FC3/FC4) or `max_bits` bits (FC1/FC2); pass 0
 * for the protocol limits (125, 2000). Blocks come out sorted by table, then
 * address. `blocks` and `block_of` have room for n entries; block_of[i] is
 * the block holding span i. Returns the number of blocks, or -1 when out of
 * memory or a span is invalid (count 0, past the address space, or longer
 * than the limit). */
int mb_plan_blocks(const mb_span_t *spans, size_t n, unsigned max_gap, unsigned max_regs,
                   unsigned max_bits, mb_block_t *blocks, size_t *block_of);

/* ---- names ------------------------------------------------------------ */

/* "illegal data address" for exception code 2, ...; NULL when unknown. */
const char *mb_exception_name(int code);
/* "modbus exception 2: illegal data address" (or "modbus exception 99").
 * Returns buf. */
char *mb_exception_text(int code, char *buf, size_t len);

/* [a-z0-9_.-]+ : device ids, alarm codes */
bool mb_is_id(const char *s);
/* [A-Za-z0-9_.-]+ : value names (points, bits) */
bool mb_is_value_name(const char *s);
/* [a-z0-9_.]+ : command names */
bool mb_is_command_name(const char *s);
/* Names the core keeps for the state envelope (ts, site, ..., online, reason). */
bool mb_is_reserved_state_name(const char *s);

#ifdef __cplusplus
}
#endif
#endif /* CCGW_MODBUS_CODEC_H */
