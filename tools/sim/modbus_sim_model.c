/* modbus-sim: simulated devices, register maps and the plant model. */
#include "modbus_sim_model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- register map (README.md restates it; the Modbus plugin relies on it) */

enum {
    HVAC_IR_SUPPLY = 0,     /* int16 x0.1 Cel */
    HVAC_IR_RETURN = 1,     /* int16 x0.1 Cel */
    HVAC_IR_HUMIDITY = 2,   /* uint16 x0.1 %RH */
    HVAC_IR_POWER = 3,      /* float32 W, high word at 3 (ABCD) */
    HVAC_IR_RUN_TIME = 5,   /* uint32 s, high word at 5 */
    HVAC_IR_COUNT = 7,

    HVAC_HR_SETPOINT_TEMP = 0, /* int16 x0.1 Cel, 160..320 */
    HVAC_HR_SETPOINT_HUM = 1,  /* uint16 x0.1 %RH, 300..700 */
    HVAC_HR_MODE = 2,          /* 0 off, 1 cool, 2 heat, 3 dry, 4 fan */
    HVAC_HR_STATUS = 3,        /* read-only bitfield */
    HVAC_HR_FORCE_FAULT = 10,  /* test hook */
    HVAC_HR_COUNT = 11,

    HVAC_COIL_RUN = 0,
    HVAC_COIL_COUNT = 1,

    HVAC_DI_RUNNING = 0,
    HVAC_DI_FAULT = 1,
    HVAC_DI_COUNT = 2,

    HVAC_MODE_OFF = 0,
    HVAC_MODE_COOL = 1,
    HVAC_MODE_HEAT = 2,
    HVAC_MODE_DRY = 3,
    HVAC_MODE_FAN = 4,

    HVAC_STATUS_RUNNING = 1u << 0,
    HVAC_STATUS_FAULT = 1u << 1,
    HVAC_STATUS_FILTER_ALARM = 1u << 2,
    HVAC_STATUS_HIGH_TEMP = 1u << 3,

    SENSOR_IR_TEMPERATURE = 0,   /* int16 x0.1 Cel */
    SENSOR_IR_HUMIDITY = 1,      /* uint16 x0.1 %RH */
    SENSOR_IR_TEMP_FLOAT = 2,    /* float32 Cel, low word at 2 (CDAB) */
    SENSOR_IR_COUNT = 4,

    SENSOR_HR_FORCE_WATER = 10, /* test hook */
    SENSOR_HR_FORCE_SMOKE = 11, /* test hook */
    SENSOR_HR_COUNT = 12,

    SENSOR_DI_WATER = 0,
    SENSOR_DI_SMOKE = 1,
    SENSOR_DI_COUNT = 2,
};

#define HVAC_ROOM_TEMPERATURE 28.0
#define HVAC_HIGH_TEMP_LIMIT 300 /* return air, x0.1 Cel */
/* An hour meter that has been running for a while (400 days): its high
 * word is non-zero, so a client that gets the word order wrong notices. */
#define HVAC_RUN_TIME_START (400u * 86400u)

typedef struct {
    uint16_t addr;
    bool writable;
    bool is_signed; /* validate the written value as int16 */
    int32_t min, max;
} sim_hreg;

typedef struct {
    const char *name;
    const sim_hreg *holding;
    size_t n_holding;
    unsigned holding_size; /* mapping size: highest address + 1 */
    unsigned n_coils;      /* coils 0..n-1, all writable */
    unsigned n_discrete;   /* discrete inputs 0..n-1 */
    unsigned n_input;      /* input registers 0..n-1 */
} sim_layout;

static const sim_hreg hvac_holding[] = {
    {HVAC_HR_SETPOINT_TEMP, true, true, 160, 320},
    {HVAC_HR_SETPOINT_HUM, true, false, 300, 700},
    {HVAC_HR_MODE, true, false, HVAC_MODE_OFF, HVAC_MODE_FAN},
    {HVAC_HR_STATUS, false, false, 0, 0},
    {HVAC_HR_FORCE_FAULT, true, false, 0, 1},
};

static const sim_hreg sensor_holding[] = {
    {SENSOR_HR_FORCE_WATER, true, false, 0, 1},
    {SENSOR_HR_FORCE_SMOKE, true, false, 0, 1},
};

/* Generic device: holding 0..15, all writable, any value. */
#define GH(a) {(a), true, false, 0, 65535}
static const sim_hreg generic_holding[SIM_GENERIC_HOLDING] = {
    GH(0), GH(1), GH(2),  GH(3),  GH(4),  GH(5),  GH(6),  GH(7),
    GH(8), GH(9), GH(10), GH(11), GH(12), GH(13), GH(14), GH(15),
};
#undef GH

static const sim_layout hvac_layout = {
    .name = "hvac",
    .holding = hvac_holding,
    .n_holding = sizeof hvac_holding / sizeof hvac_holding[0],
    .holding_size = HVAC_HR_COUNT,
    .n_coils = HVAC_COIL_COUNT,
    .n_discrete = HVAC_DI_COUNT,
    .n_input = HVAC_IR_COUNT,
};

static const sim_layout sensor_layout = {
    .name = "sensor",
    .holding = sensor_holding,
    .n_holding = sizeof sensor_holding / sizeof sensor_holding[0],
    .holding_size = SENSOR_HR_COUNT,
    .n_coils = 0,
    .n_discrete = SENSOR_DI_COUNT,
    .n_input = SENSOR_IR_COUNT,
};

struct sim_device {
    sim_kind kind;
    int unit;
    const sim_layout *layout;
    sim_layout own_layout; /* generic: its input register count is per device */
    modbus_mapping_t *map;
    uint64_t rng;
    uint64_t steps;
    unsigned period_ms;

    /* HVAC model */
    double supply, ret, humidity, power;
    uint64_t run_ms;

    /* sensor model */
    double temperature, rel_humidity;

    /* generic model: per input register, a phase and a noise offset */
    double *phase;
};

/* ---- small helpers */

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* splitmix64: tiny, seedable, good enough for noise. */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static double noise(sim_device *dev)
{
    return (double)(rng_next(&dev->rng) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static double clamp(double x, double lo, double hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* Moves x a fraction `rate` of the way to target, by at most max_step. */
static double approach(double x, double target, double rate, double max_step)
{
    return x + clamp((target - x) * rate, -max_step, max_step);
}

static double wave(uint64_t step, double period_steps, double phase)
{
    return sin(2.0 * M_PI * (double)step / period_steps + phase);
}

/* Tenths, rounded, as the two's-complement register value of an int16. */
static uint16_t enc_s16_tenths(double v)
{
    long r = lround(clamp(v * 10.0, -32768.0, 32767.0));
    return (uint16_t)(r & 0xFFFF);
}

static uint16_t enc_u16_tenths(double v)
{
    return (uint16_t)lround(clamp(v * 10.0, 0.0, 65535.0));
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static const sim_hreg *find_hreg(const sim_layout *l, unsigned addr)
{
    for (size_t i = 0; i < l->n_holding; i++) {
        if (l->holding[i].addr == addr) {
            return &l->holding[i];
        }
    }
    return NULL;
}

static bool hreg_value_ok(const sim_hreg *r, uint16_t v)
{
    int32_t x = r->is_signed ? (int32_t)(int16_t)v : (int32_t)v;
    return x >= r->min && x <= r->max;
}

/* ---- request validation */

size_t sim_request_pdu_length(const uint8_t *pdu, size_t have)
{
    if (have < 1) {
        return 0;
    }
    switch (pdu[0]) {
    case MODBUS_FC_READ_COILS:
    case MODBUS_FC_READ_DISCRETE_INPUTS:
    case MODBUS_FC_READ_HOLDING_REGISTERS:
    case MODBUS_FC_READ_INPUT_REGISTERS:
    case MODBUS_FC_WRITE_SINGLE_COIL:
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
    case 0x08: /* diagnostics: sub-function + data */
        return 5;
    case MODBUS_FC_WRITE_MULTIPLE_COILS:
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
        return have < 6 ? 0 : 6 + (size_t)pdu[5];
    case MODBUS_FC_MASK_WRITE_REGISTER:
        return 7;
    case MODBUS_FC_WRITE_AND_READ_REGISTERS:
        return have < 10 ? 0 : 10 + (size_t)pdu[9];
    case 0x14: /* read file record */
    case 0x15: /* write file record */
        return have < 2 ? 0 : 2 + (size_t)pdu[1];
    case 0x18: /* read FIFO queue */
        return 3;
    case 0x2B: /* encapsulated interface (read device identification) */
        return 4;
    default: /* 0x07, 0x0B, 0x0C, 0x11 and anything unknown */
        return 1;
    }
}

static int check_bits(unsigned count, unsigned addr, unsigned nb)
{
    return addr + nb <= count ? 0 : MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS;
}

static int check_hregs(const sim_layout *l, unsigned addr, unsigned nb, bool write)
{
    for (unsigned a = addr; a < addr + nb; a++) {
        const sim_hreg *r = find_hreg(l, a);
        if (r == NULL || (write && !r->writable)) {
            return MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS;
        }
    }
    return 0;
}

/* Values at `values` (big-endian words) for holding registers addr.. */
static int check_hreg_values(const sim_layout *l, unsigned addr, unsigned nb,
                             const uint8_t *values)
{
    for (unsigned i = 0; i < nb; i++) {
        const sim_hreg *r = find_hreg(l, addr + i);
        if (r == NULL || !hreg_value_ok(r, get_be16(values + 2 * i))) {
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        }
    }
    return 0;
}

bool sim_function_writes(uint8_t function)
{
    switch (function) {
    case MODBUS_FC_WRITE_SINGLE_COIL:
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
    case MODBUS_FC_WRITE_MULTIPLE_COILS:
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
    case MODBUS_FC_MASK_WRITE_REGISTER:
    case MODBUS_FC_WRITE_AND_READ_REGISTERS:
        return true;
    default:
        return false;
    }
}

int sim_device_check(const sim_device *dev, const uint8_t *pdu, size_t pdu_len)
{
    const sim_layout *l = dev->layout;
    size_t need;
    unsigned addr, nb;
    int rc;

    if (pdu_len < 1) {
        return MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
    }
    if (!sim_function_writes(pdu[0]) && pdu[0] != MODBUS_FC_READ_COILS &&
        pdu[0] != MODBUS_FC_READ_DISCRETE_INPUTS &&
        pdu[0] != MODBUS_FC_READ_HOLDING_REGISTERS &&
        pdu[0] != MODBUS_FC_READ_INPUT_REGISTERS && pdu[0] != MODBUS_FC_REPORT_SLAVE_ID) {
        return MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
    }
    need = sim_request_pdu_length(pdu, pdu_len);
    if (need == 0 || pdu_len < need) {
        return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE; /* truncated request */
    }
    if (pdu[0] == MODBUS_FC_REPORT_SLAVE_ID) {
        return 0;
    }
    addr = get_be16(pdu + 1);
    nb = get_be16(pdu + 3);

    switch (pdu[0]) {
    case MODBUS_FC_READ_COILS:
    case MODBUS_FC_READ_DISCRETE_INPUTS:
        if (nb < 1 || nb > MODBUS_MAX_READ_BITS) {
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        }
        return check_bits(pdu[0] == MODBUS_FC_READ_COILS ? l->n_coils : l->n_discrete, addr,
                          nb);
    case MODBUS_FC_READ_HOLDING_REGISTERS:
        if (nb < 1 || nb > MODBUS_MAX_READ_REGISTERS) {
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        }
        return check_hregs(l, addr, nb, false);
    case MODBUS_FC_READ_INPUT_REGISTERS:
        if (nb < 1 || nb > MODBUS_MAX_READ_REGISTERS) {
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        }
        return check_bits(l->n_input, addr, nb);
    case MODBUS_FC_WRITE_SINGLE_COIL:
        if (check_bits(l->n_coils, addr, 1) != 0) {
            return MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS;
        }
        return nb == 0xFF00 || nb == 0 ? 0 : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
    case MODBUS_FC_WRITE_SINGLE_REGISTER: {
        const sim_hreg *r = find_hreg(l, addr);
        if (r == NULL || !r->writable) {
            return MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS;
        }
        return hreg_value_ok(r, (uint16_t)nb) ? 0 : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
    }
    case MODBUS_FC_WRITE_MULTIPLE_COILS:
        if (nb < 1 || nb > MODBUS_MAX_WRITE_BITS || pdu[5] != (nb + 7) / 8) {
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        }
        return check_bits(l->n_coils, addr, nb);
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
        if (nb < 1 || nb > MODBUS_MAX_WRITE_REGISTERS || pdu[5] != 2 * nb) {
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        }
        rc = check_hregs(l, addr, nb, true);
        return rc != 0 ? rc : check_hreg_values(l, addr, nb, pdu + 6);
    case MODBUS_FC_MASK_WRITE_REGISTER: {
        const sim_hreg *r = find_hreg(l, addr);
        uint16_t and_mask = get_be16(pdu + 3), or_mask = get_be16(pdu + 5), v;
        if (r == NULL || !r->writable) {
            return MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS;
        }
        v = dev->map->tab_registers[addr];
        v = (uint16_t)((v & and_mask) | (or_mask & (uint16_t)~and_mask));
        return hreg_value_ok(r, v) ? 0 : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
    }
    case MODBUS_FC_WRITE_AND_READ_REGISTERS: {
        unsigned waddr = get_be16(pdu + 5), wnb = get_be16(pdu + 7);
        if (nb < 1 || nb > MODBUS_MAX_WR_READ_REGISTERS || wnb < 1 ||
            wnb > MODBUS_MAX_WR_WRITE_REGISTERS || pdu[9] != 2 * wnb) {
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        }
        rc = check_hregs(l, addr, nb, false);
        if (rc == 0) {
            rc = check_hregs(l, waddr, wnb, true);
        }
        return rc != 0 ? rc : check_hreg_values(l, waddr, wnb, pdu + 10);
    }
    default:
        return MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
    }
}

/* ---- HVAC model */

static bool hvac_running(const sim_device *dev)
{
    const modbus_mapping_t *m = dev->map;
    return m->tab_bits[HVAC_COIL_RUN] != 0 && m->tab_registers[HVAC_HR_MODE] != HVAC_MODE_OFF &&
           m->tab_registers[HVAC_HR_FORCE_FAULT] == 0;
}

static void hvac_refresh_flags(sim_device *dev)
{
    modbus_mapping_t *m = dev->map;
    bool running = hvac_running(dev);
    bool fault = m->tab_registers[HVAC_HR_FORCE_FAULT] != 0;
    bool high = (int16_t)m->tab_input_registers[HVAC_IR_RETURN] > HVAC_HIGH_TEMP_LIMIT;
    uint16_t status = 0;

    if (running) {
        status |= HVAC_STATUS_RUNNING;
    }
    if (fault) {
        status |= HVAC_STATUS_FAULT;
    }
    if (high) {
        status |= HVAC_STATUS_HIGH_TEMP;
    }
    /* HVAC_STATUS_FILTER_ALARM is never raised by this model. */
    m->tab_registers[HVAC_HR_STATUS] = status;
    m->tab_input_bits[HVAC_DI_RUNNING] = running ? 1 : 0;
    m->tab_input_bits[HVAC_DI_FAULT] = fault ? 1 : 0;
}

static void hvac_publish(sim_device *dev)
{
    uint16_t *ir = dev->map->tab_input_registers;
    uint32_t power = float_bits((float)dev->power);
    uint32_t run_s = HVAC_RUN_TIME_START + (uint32_t)(dev->run_ms / 1000u);

    ir[HVAC_IR_SUPPLY] = enc_s16_tenths(dev->supply);
    ir[HVAC_IR_RETURN] = enc_s16_tenths(dev->ret);
    ir[HVAC_IR_HUMIDITY] = enc_u16_tenths(dev->humidity);
    ir[HVAC_IR_POWER] = (uint16_t)(power >> 16); /* ABCD: high word first */
    ir[HVAC_IR_POWER + 1] = (uint16_t)(power & 0xFFFF);
    ir[HVAC_IR_RUN_TIME] = (uint16_t)(run_s >> 16);
    ir[HVAC_IR_RUN_TIME + 1] = (uint16_t)(run_s & 0xFFFF);
    hvac_refresh_flags(dev);
}

static void hvac_init(sim_device *dev)
{
    uint16_t *hr = dev->map->tab_registers;

    hr[HVAC_HR_SETPOINT_TEMP] = 240;
    hr[HVAC_HR_SETPOINT_HUM] = 500;
    hr[HVAC_HR_MODE] = HVAC_MODE_COOL;
    hr[HVAC_HR_FORCE_FAULT] = 0;
    dev->map->tab_bits[HVAC_COIL_RUN] = 1;
    /* Steady state of a running unit at the default setpoints. */
    dev->supply = 24.0 - 6.0;
    dev->ret = 24.0 + 2.0;
    dev->humidity = 50.0;
    dev->power = 3750.0;
    hvac_publish(dev);
}

static void hvac_step(sim_device *dev)
{
    const uint16_t *hr = dev->map->tab_registers;
    const uint64_t t = dev->steps;
    const double sp = (int16_t)hr[HVAC_HR_SETPOINT_TEMP] / 10.0;
    const double hsp = hr[HVAC_HR_SETPOINT_HUM] / 10.0;
    const bool running = hvac_running(dev);
    double t_supply, t_return, t_hum, t_power, power_noise;

    if (running) {
        switch (hr[HVAC_HR_MODE]) {
        case HVAC_MODE_HEAT:
            t_supply = sp + 6.0;
            t_return = sp - 1.0;
            t_hum = hsp;
            t_power = 3750.0 + 450.0 * wave(t, 180.0, 0.0);
            break;
        case HVAC_MODE_FAN:
            t_supply = HVAC_ROOM_TEMPERATURE - 0.5;
            t_return = HVAC_ROOM_TEMPERATURE;
            t_hum = 55.0;
            t_power = 400.0;
            break;
        case HVAC_MODE_DRY:
            t_supply = sp - 6.0;
            t_return = sp + 2.0;
            t_hum = hsp - 5.0;
            t_power = 3750.0 + 450.0 * wave(t, 180.0, 0.0);
            break;
        default: /* cool */
            t_supply = sp - 6.0;
            t_return = sp + 2.0;
            t_hum = hsp;
            t_power = 3750.0 + 450.0 * wave(t, 180.0, 0.0);
            break;
        }
        power_noise = 25.0;
    } else {
        t_supply = HVAC_ROOM_TEMPERATURE;
        t_return = HVAC_ROOM_TEMPERATURE;
        t_hum = 55.0;
        t_power = 50.0;
        power_noise = 2.0;
    }

    dev->supply = approach(dev->supply, t_supply + 0.35 * wave(t, 240.0, 0.0), 0.08, 0.25) +
                  0.03 * noise(dev);
    dev->ret = approach(dev->ret, t_return + 0.30 * wave(t, 310.0, 1.3), 0.06, 0.2) +
               0.03 * noise(dev);
    dev->humidity = clamp(approach(dev->humidity, t_hum + 1.5 * wave(t, 420.0, 0.4), 0.05, 0.3) +
                              0.1 * noise(dev),
                          0.0, 100.0);
    /* Compressors ramp up over a few steps and stop almost at once. */
    dev->power = (t_power < dev->power ? approach(dev->power, t_power, 0.6, 4000.0)
                                       : approach(dev->power, t_power, 0.3, 600.0)) +
                 power_noise * noise(dev);
    if (running && t_power > 1000.0) {
        dev->power = clamp(dev->power, 50.0, 4500.0);
    }
    dev->power = dev->power < 0.0 ? 0.0 : dev->power;
    if (running) {
        dev->run_ms += dev->period_ms;
    }
    hvac_publish(dev);
}

/* ---- sensor model */

static void sensor_publish(sim_device *dev)
{
    modbus_mapping_t *m = dev->map;
    uint16_t *ir = m->tab_input_registers;
    uint32_t f;

    ir[SENSOR_IR_TEMPERATURE] = enc_s16_tenths(dev->temperature);
    ir[SENSOR_IR_HUMIDITY] = enc_u16_tenths(dev->rel_humidity);
    /* The same value as register 0, as a float, low word first (CDAB). */
    f = float_bits((float)(int16_t)ir[SENSOR_IR_TEMPERATURE] / 10.0f);
    ir[SENSOR_IR_TEMP_FLOAT] = (uint16_t)(f & 0xFFFF);
    ir[SENSOR_IR_TEMP_FLOAT + 1] = (uint16_t)(f >> 16);
    m->tab_input_bits[SENSOR_DI_WATER] = m->tab_registers[SENSOR_HR_FORCE_WATER] != 0;
    m->tab_input_bits[SENSOR_DI_SMOKE] = m->tab_registers[SENSOR_HR_FORCE_SMOKE] != 0;
}

static void sensor_init(sim_device *dev)
{
    dev->temperature = 24.0;
    dev->rel_humidity = 50.0 + 7.0 * sin(2.0);
    sensor_publish(dev);
}

static void sensor_step(sim_device *dev)
{
    const uint64_t t = dev->steps;
    double t_temp = 24.0 + 1.5 * wave(t, 900.0, 0.0) + 0.3 * wave(t, 97.0, 0.7);
    double t_hum = 50.0 + 7.0 * wave(t, 1300.0, 2.0) + 1.0 * wave(t, 71.0, 0.0);

    dev->temperature =
        clamp(approach(dev->temperature, t_temp, 0.2, 0.1) + 0.02 * noise(dev), 22.0, 26.0);
    dev->rel_humidity =
        clamp(approach(dev->rel_humidity, t_hum, 0.2, 0.3) + 0.05 * noise(dev), 40.0, 60.0);
    sensor_publish(dev);
}

/* ---- generic model */

/* Input register i (int16 x0.1): about 20 + (i mod 10), plus a sine of its
 * own period (60..300 steps, amplitude 2) and noise of +-0.05: every
 * register changes almost every step. Discrete input i: on while a sine of
 * period 30 + 7i steps is above 0.8. Holding registers and coils keep what
 * was written (holding i starts at i, coils at 0). */
static void generic_publish(sim_device *dev)
{
    modbus_mapping_t *m = dev->map;
    const uint64_t t = dev->steps;

    for (unsigned i = 0; i < dev->layout->n_input; i++) {
        double v = 20.0 + (double)(i % 10u) +
                   2.0 * wave(t, 60.0 + (double)((i * 37u) % 241u), dev->phase[i]) +
                   0.05 * noise(dev);
        m->tab_input_registers[i] = enc_s16_tenths(v);
    }
    for (unsigned i = 0; i < SIM_GENERIC_DISCRETE; i++) {
        m->tab_input_bits[i] = wave(t, 30.0 + 7.0 * i, dev->phase[i % dev->layout->n_input]) > 0.8;
    }
}

static void generic_init(sim_device *dev)
{
    for (unsigned i = 0; i < dev->layout->n_input; i++) {
        dev->phase[i] = M_PI * (noise(dev) + 1.0);
    }
    for (unsigned i = 0; i < SIM_GENERIC_HOLDING; i++) {
        dev->map->tab_registers[i] = (uint16_t)i;
    }
    generic_publish(dev);
}

/* ---- device */

sim_device *sim_device_new_generic(int unit, unsigned n_input, uint64_t seed, unsigned period_ms)
{
    sim_device *dev;

    if (n_input < 1 || n_input > SIM_GENERIC_MAX_INPUT) {
        return NULL;
    }
    dev = calloc(1, sizeof *dev);
    if (dev == NULL) {
        return NULL;
    }
    dev->kind = SIM_KIND_GENERIC;
    dev->unit = unit;
    dev->own_layout = (sim_layout){
        .name = "generic",
        .holding = generic_holding,
        .n_holding = SIM_GENERIC_HOLDING,
        .holding_size = SIM_GENERIC_HOLDING,
        .n_coils = SIM_GENERIC_COILS,
        .n_discrete = SIM_GENERIC_DISCRETE,
        .n_input = n_input,
    };
    dev->layout = &dev->own_layout;
    dev->period_ms = period_ms;
    /* one noise stream per unit: the devices of one process differ */
    dev->rng = seed ^ (UINT64_C(0xD1B54A32D192ED03) * (uint64_t)(SIM_KIND_GENERIC + 1)) ^
               (UINT64_C(0x9E3779B97F4A7C15) * (uint64_t)unit);
    dev->phase = calloc(n_input, sizeof *dev->phase);
    dev->map = modbus_mapping_new_start_address(0, SIM_GENERIC_COILS, 0, SIM_GENERIC_DISCRETE, 0,
                                                SIM_GENERIC_HOLDING, 0, n_input);
    if (dev->phase == NULL || dev->map == NULL) {
        sim_device_free(dev);
        return NULL;
    }
    generic_init(dev);
    return dev;
}

sim_device *sim_device_new(sim_kind kind, int unit, uint64_t seed, unsigned period_ms)
{
    sim_device *dev;
    const sim_layout *l = kind == SIM_KIND_HVAC ? &hvac_layout : &sensor_layout;

    if (kind == SIM_KIND_GENERIC) {
        return sim_device_new_generic(unit, 64, seed, period_ms);
    }
    dev = calloc(1, sizeof *dev);

    if (dev == NULL) {
        return NULL;
    }
    dev->kind = kind;
    dev->unit = unit;
    dev->layout = l;
    dev->period_ms = period_ms;
    /* Distinct, reproducible noise streams per device. */
    dev->rng = seed ^ (UINT64_C(0xD1B54A32D192ED03) * (uint64_t)(kind + 1));
    dev->map = modbus_mapping_new_start_address(0, l->n_coils, 0, l->n_discrete, 0,
                                                l->holding_size, 0, l->n_input);
    if (dev->map == NULL) {
        free(dev);
        return NULL;
    }
    if (kind == SIM_KIND_HVAC) {
        hvac_init(dev);
    } else {
        sensor_init(dev);
    }
    return dev;
}

void sim_device_free(sim_device *dev)
{
    if (dev != NULL) {
        if (dev->map != NULL) {
            modbus_mapping_free(dev->map);
        }
        free(dev->phase);
        free(dev);
    }
}

int sim_device_unit(const sim_device *dev)
{
    return dev->unit;
}

const char *sim_device_name(const sim_device *dev)
{
    return dev->layout->name;
}

modbus_mapping_t *sim_device_mapping(sim_device *dev)
{
    return dev->map;
}

void sim_device_after_write(sim_device *dev)
{
    if (dev->kind == SIM_KIND_HVAC) {
        hvac_refresh_flags(dev);
    } else if (dev->kind == SIM_KIND_SENSOR) {
        sensor_publish(dev);
    } /* generic: writes change nothing else */
}

void sim_device_before_reply(sim_device *dev, const uint8_t *pdu)
{
    if (pdu[0] == MODBUS_FC_WRITE_AND_READ_REGISTERS) {
        unsigned waddr = get_be16(pdu + 5), wnb = get_be16(pdu + 7);
        for (unsigned i = 0; i < wnb; i++) {
            dev->map->tab_registers[waddr + i] = get_be16(pdu + 10 + 2 * i);
        }
        sim_device_after_write(dev);
    }
}

void sim_device_step(sim_device *dev)
{
    dev->steps++;
    if (dev->kind == SIM_KIND_HVAC) {
        hvac_step(dev);
    } else if (dev->kind == SIM_KIND_SENSOR) {
        sensor_step(dev);
    } else {
        generic_publish(dev);
    }
}
