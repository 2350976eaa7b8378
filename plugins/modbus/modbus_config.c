/*
 * modbus_config.c - option tables, semantic checks and the build of the
 * instance structures from validated options.
 *
 * One parser serves both check() and create(): check() parses into a
 * throw-away instance and reports each problem with ccgw_config_error();
 * create() parses into the real one and logs (check() has already run, so
 * it normally finds nothing). Thread: instance thread.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modbus_plugin.h"

/* ------------------------------------------------------------------------ */
/* Option tables                                                            */
/* ------------------------------------------------------------------------ */

static const char *const mb_class_choices[] = {"ups", "hvac", "env", NULL};
static const char *const mb_transport_choices[] = {"tcp", "rtu", NULL};
static const char *const mb_connection_choices[] = {"own", "shared", NULL};
static const char *const mb_parity_choices[] = {"none", "even", "odd", NULL};
static const char *const mb_severity_choices[] = {"info", "minor", "major", "critical", NULL};
const char *const mb_publish_names[] = {"telemetry", "state", "none", NULL};

static const ccgw_option_t mb_alarm_options[] = {
    {.key = "code",
     .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 64,
     .doc = "Alarm code ([a-z0-9_.-]+): the topic .../alarm/{code}. Unique per device."},
    {.key = "severity",
     .type = CCGW_OPT_ENUM,
     .def = "major",
     .choices = mb_severity_choices,
     .doc = "Alarm severity: info, minor, major or critical."},
    {.key = "message",
     .type = CCGW_OPT_STRING,
     .doc = "Human text of the alarm. Default: \"<name> is true|false\"."},
    {.key = "when",
     .type = CCGW_OPT_BOOL,
     .def = "true",
     .doc = "The value that raises the alarm; the other value clears it."},
    CCGW_OPTION_END,
};

static const ccgw_option_t mb_bit_options[] = {
    {.key = "bit",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 0,
     .max = 15,
     .doc = "Bit number in the register, 0 = least significant."},
    {.key = "name",
     .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 128,
     .doc = "Name of the bool value ([A-Za-z0-9_.-]+), unique in the device."},
    {.key = "publish",
     .type = CCGW_OPT_ENUM,
     .choices = mb_publish_names,
     .doc = "telemetry, state or none. Default: the point's publish."},
    {.key = "alarm",
     .type = CCGW_OPT_OBJECT,
     .children = mb_alarm_options,
     .doc = "Raise/clear an alarm when the bit changes."},
    CCGW_OPTION_END,
};

static const ccgw_option_t mb_point_options[] = {
    {.key = "name",
     .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 128,
     .doc = "Value name ([A-Za-z0-9_.-]+), from the class vocabulary where one exists "
            "(supply_air.temperature, setpoint.cooling). Unique in the device."},
    {.key = "table",
     .type = CCGW_OPT_ENUM,
     .flags = CCGW_OPT_F_REQUIRED,
     .choices = mb_table_names,
     .doc = "Modbus table: coil (FC1/FC5), discrete (FC2), holding (FC3/FC6/FC16), input (FC4)."},
    {.key = "address",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 0,
     .max = 65535,
     .doc = "0-based protocol address (register 40001 is holding address 0)."},
    {.key = "type",
     .type = CCGW_OPT_ENUM,
     .choices = mb_type_names,
     .doc = "bool, int16, uint16, int32, uint32, float32 or bitfield. 32-bit types use two "
            "registers. Default: bool on coil/discrete, uint16 otherwise."},
    {.key = "word_order",
     .type = CCGW_OPT_ENUM,
     .choices = mb_order_names,
     .doc = "32-bit types: big = high word at the lower address. Default: the device's."},
    {.key = "byte_order",
     .type = CCGW_OPT_ENUM,
     .choices = mb_order_names,
     .doc = "Byte order inside each register: big = high byte first. Default: the device's."},
    {.key = "scale",
     .type = CCGW_OPT_DOUBLE,
     .def = "1",
     .doc = "Engineering value = raw * scale + offset. Must not be 0."},
    {.key = "offset",
     .type = CCGW_OPT_DOUBLE,
     .def = "0",
     .doc = "Added after scaling."},
    {.key = "unit",
     .type = CCGW_OPT_STRING,
     .doc = "SenML unit sent with telemetry (Cel, %RH, V, A, W, Hz, s, %)."},
    {.key = "publish",
     .type = CCGW_OPT_ENUM,
     .def = "telemetry",
     .choices = mb_publish_names,
     .doc = "Where the value goes: telemetry, state (retained attribute) or none."},
    {.key = "writable",
     .type = CCGW_OPT_BOOL,
     .def = "false",
     .doc = "Accept writes (command `write`, aliases). Only coil and holding points."},
    {.key = "min",
     .type = CCGW_OPT_DOUBLE,
     .doc = "Lowest value a write accepts, in engineering units."},
    {.key = "max",
     .type = CCGW_OPT_DOUBLE,
     .doc = "Highest value a write accepts, in engineering units."},
    {.key = "enum",
     .type = CCGW_OPT_LIST,
     .flags = CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 1024,
     .item_type = CCGW_OPT_STRING,
     .doc = "Integer types: names of raw values 0, 1, 2, ... (published as text; a value "
            "out of range is published as the number). Writes take the name or the number."},
    {.key = "bits",
     .type = CCGW_OPT_LIST,
     .flags = CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 16,
     .item_type = CCGW_OPT_OBJECT,
     .children = mb_bit_options,
     .doc = "bitfield: the named bool values, one per bit."},
    {.key = "alarm",
     .type = CCGW_OPT_OBJECT,
     .children = mb_alarm_options,
     .doc = "bool: raise/clear an alarm when the value changes."},
    CCGW_OPTION_END,
};

static const ccgw_option_t mb_alias_options[] = {
    {.key = "name",
     .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 64,
     .doc = "Command name ([a-z0-9_.]+), e.g. hvac.start: topic .../cmd/{name}."},
    {.key = "point",
     .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED,
     .doc = "The writable point the command writes."},
    {.key = "value",
     .type = CCGW_OPT_SCALAR,
     .doc = "Fixed value: the command takes no arguments. Without it the command takes "
            "{\"value\": ...}."},
    {.key = "doc",
     .type = CCGW_OPT_STRING,
     .doc = "One line describing the command."},
    CCGW_OPTION_END,
};

static const ccgw_option_t mb_device_options[] = {
    {.key = "id",
     .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 64,
     .doc = "Device id ([a-z0-9_.-]+), unique in the instance and per class in the gateway."},
    {.key = "class",
     .type = CCGW_OPT_ENUM,
     .flags = CCGW_OPT_F_REQUIRED,
     .choices = mb_class_choices,
     .doc = "Device class in the topic tree: ups, hvac or env."},
    {.key = "transport",
     .type = CCGW_OPT_ENUM,
     .def = "tcp",
     .choices = mb_transport_choices,
     .doc = "tcp: its own connection per device. rtu: devices on the same serial line share it."},
    {.key = "host",
     .type = CCGW_OPT_STRING,
     .doc = "tcp: host name or address of the device or gateway (required for tcp)."},
    {.key = "port",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "502",
     .min = 1,
     .max = 65535,
     .doc = "tcp: port."},
    {.key = "connection",
     .type = CCGW_OPT_ENUM,
     .def = "own",
     .choices = mb_connection_choices,
     .doc = "tcp: own = its own connection and worker (a silent device delays only itself); "
            "shared = one connection and worker for every `shared` device on the same host "
            "and port (units behind one gateway take turns, as on an RTU line)."},
    {.key = "serial",
     .type = CCGW_OPT_STRING,
     .doc = "rtu: serial device, e.g. /dev/ttyUSB0 (required for rtu)."},
    {.key = "baud",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "9600",
     .min = 50,
     .max = 4000000,
     .doc = "rtu: bits per second."},
    {.key = "parity",
     .type = CCGW_OPT_ENUM,
     .def = "none",
     .choices = mb_parity_choices,
     .doc = "rtu: none, even or odd."},
    {.key = "data_bits",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "8",
     .min = 5,
     .max = 8,
     .doc = "rtu: data bits."},
    {.key = "stop_bits",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "1",
     .min = 1,
     .max = 2,
     .doc = "rtu: stop bits."},
    {.key = "unit_id",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "1",
     .min = 0,
     .max = 255,
     .doc = "Modbus unit (slave) id: 1..247 for rtu, 0..255 for tcp."},
    {.key = "poll_interval_ms",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "1000",
     .min = 50,
     .max = 86400000,
     .doc = "How often every point of the device is read, in milliseconds."},
    {.key = "timeout_ms",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "500",
     .min = 10,
     .max = 60000,
     .doc = "Response (and TCP connect) timeout of one request, in milliseconds."},
    {.key = "retries",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "1",
     .min = 0,
     .max = 10,
     .doc = "Extra attempts of a failed read within one poll (writes are never repeated)."},
    {.key = "offline_after",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "3",
     .min = 1,
     .max = 1000,
     .doc = "Consecutive failed polls after which the device is reported offline."},
    {.key = "max_gap",
     .type = CCGW_OPT_INT,
     .flags = CCGW_OPT_F_RANGE,
     .def = "0",
     .min = 0,
     .max = 124,
     .doc = "Merge points into one read across gaps of up to this many unmapped registers "
            "(bits on coil/discrete); the device must allow reading the gap."},
    {.key = "word_order",
     .type = CCGW_OPT_ENUM,
     .def = "big",
     .choices = mb_order_names,
     .doc = "Default word order of the device's 32-bit points."},
    {.key = "byte_order",
     .type = CCGW_OPT_ENUM,
     .def = "big",
     .choices = mb_order_names,
     .doc = "Default byte order of the device's registers."},
    {.key = "points",
     .type = CCGW_OPT_LIST,
     .flags = CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 10000,
     .item_type = CCGW_OPT_OBJECT,
     .children = mb_point_options,
     .doc = "The register map: one item per value. Required unless `profile` is given."},
    {.key = "profile",
     .type = CCGW_OPT_STRING,
     .doc = "Take points (and commands, unless the device lists its own) from the profile "
            "with this id (instance option `profiles`), instead of `points`."},
    {.key = "commands",
     .type = CCGW_OPT_LIST,
     .item_type = CCGW_OPT_OBJECT,
     .children = mb_alias_options,
     .doc = "Command aliases of the class vocabulary (hvac.start, hvac.set_setpoint), each "
            "writing one point."},
    CCGW_OPTION_END,
};

static const ccgw_option_t mb_profile_options[] = {
    {.key = "id",
     .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 64,
     .doc = "Profile id ([a-z0-9_.-]+), named by a device's `profile`."},
    {.key = "points",
     .type = CCGW_OPT_LIST,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 10000,
     .item_type = CCGW_OPT_OBJECT,
     .children = mb_point_options,
     .doc = "The register map shared by the devices of this profile, as a device's `points`."},
    {.key = "commands",
     .type = CCGW_OPT_LIST,
     .item_type = CCGW_OPT_OBJECT,
     .children = mb_alias_options,
     .doc = "Command aliases shared by the devices of this profile, as a device's `commands`."},
    CCGW_OPTION_END,
};

const ccgw_option_t mb_options[] = {
    {.key = "devices",
     .type = CCGW_OPT_LIST,
     .flags = CCGW_OPT_F_REQUIRED | CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 10000,
     .item_type = CCGW_OPT_OBJECT,
     .children = mb_device_options,
     .doc = "The Modbus devices of this instance."},
    {.key = "profiles",
     .type = CCGW_OPT_LIST,
     .flags = CCGW_OPT_F_RANGE,
     .min = 1,
     .max = 1000,
     .item_type = CCGW_OPT_OBJECT,
     .children = mb_profile_options,
     .doc = "Register maps shared by many devices of the same model: a device with "
            "`profile: ID` takes the points (and commands) of the profile with that id."},
    CCGW_OPTION_END,
};

static const ccgw_option_t mb_write_args[] = {
    {.key = "point",
     .type = CCGW_OPT_STRING,
     .flags = CCGW_OPT_F_REQUIRED,
     .doc = "Name of a point with writable: true."},
    {.key = "value",
     .type = CCGW_OPT_SCALAR,
     .flags = CCGW_OPT_F_REQUIRED,
     .doc = "Engineering value: true/false (or 1/0) for bool, a number otherwise; enum points "
            "also take the name."},
    CCGW_OPTION_END,
};

/* Arguments of an alias without a fixed value. */
static const ccgw_option_t mb_alias_value_args[] = {
    {.key = "value",
     .type = CCGW_OPT_SCALAR,
     .flags = CCGW_OPT_F_REQUIRED,
     .doc = "Engineering value to write (type- and range-checked as for `write`)."},
    CCGW_OPTION_END,
};

const ccgw_command_spec_t mb_commands[] = {
    {.name = "write",
     .args = mb_write_args,
     .doc = "Write one point: {\"point\": name, \"value\": v}. Replies {point, value, raw}."},
    {0},
};

/* ------------------------------------------------------------------------ */
/* Diagnostics                                                               */
/* ------------------------------------------------------------------------ */

typedef struct mb_diag {
    ccgw_instance_t *inst; /* create(): log; check(): NULL -> ccgw_config_error */
    int errors;
} mb_diag_t;

static void diag(mb_diag_t *dg, const ccgw_config_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void diag(mb_diag_t *dg, const ccgw_config_t *node, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dg->errors++;
    if (dg->inst) {
        char where[160];
        CCGW_ERROR(dg->inst, "%s: %s", ccgw_config_where(node, where, sizeof where), msg);
    } else {
        ccgw_config_error(node, "%s", msg);
    }
}

/* The node of `key` if present, else the map itself (for positions). */
static const ccgw_config_t *at_key(const ccgw_config_t *map, const char *key)
{
    const ccgw_config_t *n = ccgw_config_get(map, key);
    return n ? n : map;
}

/* ------------------------------------------------------------------------ */
/* Point values (writes, fixed alias values)                                  */
/* ------------------------------------------------------------------------ */

int mb_point_value(const mb_point_t *p, const ccgw_config_t *value, mb_write_t *w, char *err,
                   size_t errlen)
{
    const char *text = ccgw_config_text(value);
    double eng = 0;
    bool b;
    int64_t iv;

    w->enum_name = NULL;
    if (!text) {
        snprintf(err, errlen, "value for point '%s' must be a scalar", p->name);
        return CCGW_EINVAL;
    }
    if (p->fmt.type == MB_TYPE_BOOL) {
        if (ccgw_config_as_bool(value, &b) == 0) {
            eng = b ? 1 : 0;
        } else if (ccgw_config_as_int(value, &iv) == 0 && (iv == 0 || iv == 1)) {
            eng = (double)iv;
        } else {
            snprintf(err, errlen, "point '%s' takes true/false (or 1/0), not '%s'", p->name, text);
            return CCGW_EINVAL;
        }
    } else if (p->n_enums && mb_lookup(p->enums, text) >= 0) {
        int idx = mb_lookup(p->enums, text);
        eng = idx;
        w->enum_name = p->enums[idx];
    } else if (ccgw_config_as_double(value, &eng) != 0) {
        if (p->n_enums)
            snprintf(err, errlen, "point '%s' takes one of its enum names or a number, not '%s'",
                     p->name, text);
        else
            snprintf(err, errlen, "point '%s' takes a number, not '%s'", p->name, text);
        return CCGW_EINVAL;
    } else if (p->n_enums) {
        if (eng != floor(eng)) {
            snprintf(err, errlen, "point '%s' takes an integer or an enum name, not %g", p->name,
                     eng);
            return CCGW_EINVAL;
        }
        /* Without explicit min/max an enum point takes only its named values. */
        if (!p->limits.has_min && !p->limits.has_max &&
            (eng < 0 || eng >= (double)p->n_enums)) {
            snprintf(err, errlen, "point '%s' takes an enum name or 0..%zu, not %g", p->name,
                     p->n_enums - 1, eng);
            return CCGW_EINVAL;
        }
        if (eng >= 0 && eng < (double)p->n_enums)
            w->enum_name = p->enums[(size_t)eng];
    }

    mb_enc_err_t e = mb_encode_eng(&p->fmt, &p->limits, eng, &w->raw, w->words);
    switch (e) {
    case MB_ENC_OK:
        break;
    case MB_ENC_BELOW_MIN:
        snprintf(err, errlen, "value %g for point '%s' is below min %g", eng, p->name,
                 p->limits.min);
        return CCGW_EINVAL;
    case MB_ENC_ABOVE_MAX:
        snprintf(err, errlen, "value %g for point '%s' is above max %g", eng, p->name,
                 p->limits.max);
        return CCGW_EINVAL;
    case MB_ENC_NO_FIT:
        snprintf(err, errlen, "value %g for point '%s' does not fit %s (raw %.10g)", eng,
                 p->name, mb_type_names[p->fmt.type], mb_eng_to_raw_exact(&p->fmt, eng));
        return CCGW_EINVAL;
    default:
        snprintf(err, errlen, "value for point '%s': %s", p->name, mb_enc_strerror(e));
        return CCGW_EINVAL;
    }
    w->eng = eng;
    return CCGW_OK;
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                    */
/* ------------------------------------------------------------------------ */

static int lookup_or(const char *const *names, const char *s, int fallback)
{
    int i = mb_lookup(names, s);
    return i < 0 ? fallback : i;
}

/* The `alarm` mapping of a point or bit, or NULL. The core fills an absent
 * `alarm:` with an empty mapping holding the defaults (severity, when), so
 * only one with its required `code` was configured. */
static const ccgw_config_t *alarm_node(const ccgw_config_t *parent)
{
    const ccgw_config_t *an = ccgw_config_get(parent, "alarm");
    return an && ccgw_config_get(an, "code") ? an : NULL;
}

static void parse_alarm(mb_diag_t *dg, const ccgw_config_t *an, mb_alarm_t *a)
{
    memset(a, 0, sizeof *a);
    if (!an)
        return;
    a->present = true;
    a->code = ccgw_config_string(an, "code", NULL);
    if (!mb_is_id(a->code))
        diag(dg, at_key(an, "code"), "alarm code '%s' must match [a-z0-9_.-]+",
             a->code ? a->code : "");
    const char *sev = ccgw_config_string(an, "severity", "major");
    int s = mb_lookup(mb_severity_choices, sev);
    if (s < 0) {
        diag(dg, at_key(an, "severity"), "alarm severity '%s' is not info|minor|major|critical",
             sev ? sev : "");
        s = CCGW_SEV_MAJOR;
    }
    a->severity = (ccgw_severity_t)s;
    a->message = ccgw_config_string(an, "message", NULL);
    a->when = ccgw_config_bool(an, "when", true);
}

static const char *where(const ccgw_config_t *node, char *buf, size_t len)
{
    return ccgw_config_where(node, buf, len);
}

static int parse_point(mb_diag_t *dg, const ccgw_config_t *pn, mb_order_t dev_wo,
                       mb_order_t dev_bo, mb_point_t *p)
{
    const char *s;

    memset(p, 0, sizeof *p);
    p->name = ccgw_config_string(pn, "name", NULL);
    if (!mb_is_value_name(p->name))
        diag(dg, at_key(pn, "name"), "point name '%s' must match [A-Za-z0-9_.-]+",
             p->name ? p->name : "");
    if (!p->name)
        p->name = "";

    s = ccgw_config_string(pn, "table", NULL);
    int t = mb_lookup(mb_table_names, s);
    if (t < 0) {
        diag(dg, at_key(pn, "table"), "point '%s': table must be coil|discrete|holding|input",
             p->name);
        t = MB_TABLE_HOLDING;
    }
    p->table = (mb_table_t)t;

    int64_t addr = ccgw_config_int(pn, "address", -1);
    if (addr < 0 || addr > 65535) {
        diag(dg, at_key(pn, "address"), "point '%s': address must be 0..65535", p->name);
        addr = 0;
    }
    p->address = (uint32_t)addr;

    s = ccgw_config_string(pn, "type", NULL);
    int ty = s ? mb_lookup(mb_type_names, s)
               : (mb_table_is_bits(p->table) ? MB_TYPE_BOOL : MB_TYPE_UINT16);
    if (ty < 0) {
        diag(dg, at_key(pn, "type"), "point '%s': unknown type '%s'", p->name, s);
        ty = MB_TYPE_UINT16;
    }
    p->fmt.type = (mb_type_t)ty;
    p->nregs = mb_type_registers(p->fmt.type);
    if (!mb_type_fits_table(p->fmt.type, p->table))
        diag(dg, at_key(pn, "type"),
             "point '%s': type %s needs %u register%s, but the %s table holds single bits: "
             "use type bool",
             p->name, mb_type_names[p->fmt.type], p->nregs, p->nregs == 1 ? "" : "s",
             mb_table_names[p->table]);
    else if (p->address + p->nregs > MB_ADDRESS_SPACE)
        diag(dg, at_key(pn, "address"),
             "point '%s': %s at address %u needs %u registers, past the end of the address "
             "space (address + count > 65536)",
             p->name, mb_type_names[p->fmt.type], (unsigned)p->address, p->nregs);

    p->fmt.word_order = (mb_order_t)lookup_or(
        mb_order_names, ccgw_config_string(pn, "word_order", NULL), (int)dev_wo);
    p->fmt.byte_order = (mb_order_t)lookup_or(
        mb_order_names, ccgw_config_string(pn, "byte_order", NULL), (int)dev_bo);
    p->fmt.scale = ccgw_config_double(pn, "scale", 1.0);
    p->fmt.offset = ccgw_config_double(pn, "offset", 0.0);
    if (p->fmt.scale == 0.0 || !isfinite(p->fmt.scale))
        diag(dg, at_key(pn, "scale"), "point '%s': scale must be a non-zero number", p->name);
    if (!isfinite(p->fmt.offset))
        diag(dg, at_key(pn, "offset"), "point '%s': offset must be a finite number", p->name);
    if (p->fmt.scale == 0.0 || !isfinite(p->fmt.scale))
        p->fmt.scale = 1.0;
    if (!isfinite(p->fmt.offset))
        p->fmt.offset = 0.0;

    p->unit = ccgw_config_string(pn, "unit", NULL);
    if (p->unit && !*p->unit)
        p->unit = NULL;
    p->publish = (mb_publish_t)lookup_or(mb_publish_names,
                                         ccgw_config_string(pn, "publish", NULL), MB_PUB_TELEMETRY);
    if (p->publish == MB_PUB_STATE && mb_is_reserved_state_name(p->name))
        diag(dg, at_key(pn, "name"),
             "point '%s': '%s' is a reserved state key; rename it or publish it as telemetry",
             p->name, p->name);

    p->writable = ccgw_config_bool(pn, "writable", false);
    if (p->writable && !mb_table_is_writable(p->table))
        diag(dg, at_key(pn, "writable"), "point '%s': the %s table is read-only", p->name,
             mb_table_names[p->table]);
    else if (p->writable && p->fmt.type == MB_TYPE_BITFIELD)
        diag(dg, at_key(pn, "writable"),
             "point '%s': bitfield points are read-only (map the register as uint16 to write it)",
             p->name);

    const ccgw_config_t *mn = ccgw_config_get(pn, "min"), *xn = ccgw_config_get(pn, "max");
    if (mn) {
        p->limits.has_min = true;
        p->limits.min = ccgw_config_double(pn, "min", 0);
    }
    if (xn) {
        p->limits.has_max = true;
        p->limits.max = ccgw_config_double(pn, "max", 0);
    }
    if ((mn || xn) && (p->fmt.type == MB_TYPE_BOOL || p->fmt.type == MB_TYPE_BITFIELD))
        diag(dg, mn ? mn : xn, "point '%s': min/max apply to numeric points, not %s", p->name,
             mb_type_names[p->fmt.type]);
    if (mn && xn && p->limits.min > p->limits.max)
        diag(dg, mn, "point '%s': min %g is greater than max %g", p->name, p->limits.min,
             p->limits.max);

    const ccgw_config_t *en = ccgw_config_get(pn, "enum");
    if (en) {
        if (!mb_type_is_integer(p->fmt.type))
            diag(dg, en, "point '%s': enum needs an integer type (int16, uint16, int32, uint32), "
                 "not %s", p->name, mb_type_names[p->fmt.type]);
        else if (p->fmt.scale != 1.0 || p->fmt.offset != 0.0)
            diag(dg, en, "point '%s': enum maps raw values; remove scale/offset", p->name);
        size_t n = ccgw_config_count(en);
        p->enums = calloc(n + 1, sizeof *p->enums);
        if (!p->enums)
            return CCGW_ENOMEM;
        p->n_enums = n;
        for (size_t i = 0; i < n; i++) {
            const ccgw_config_t *item = ccgw_config_at(en, i);
            const char *name = ccgw_config_text(item);
            if (!name || !*name) {
                diag(dg, item ? item : en, "point '%s': enum item %zu must be non-empty text",
                     p->name, i);
                name = "";
            }
            p->enums[i] = name;
        }
    }

    const ccgw_config_t *bn = ccgw_config_get(pn, "bits");
    if (bn && p->fmt.type != MB_TYPE_BITFIELD)
        diag(dg, bn, "point '%s': bits need type bitfield, not %s", p->name,
             mb_type_names[p->fmt.type]);
    if (!bn && p->fmt.type == MB_TYPE_BITFIELD)
        diag(dg, pn, "point '%s': a bitfield needs bits: [{bit: 0, name: ...}, ...]", p->name);
    if (bn) {
        size_t n = ccgw_config_count(bn);
        p->bits = calloc(n ? n : 1, sizeof *p->bits);
        if (!p->bits)
            return CCGW_ENOMEM;
        p->n_bits = n;
        unsigned seen = 0;
        for (size_t i = 0; i < n; i++) {
            const ccgw_config_t *it = ccgw_config_at(bn, i);
            mb_bitdef_t *b = &p->bits[i];
            int64_t bit = ccgw_config_int(it, "bit", -1);
            b->name = ccgw_config_string(it, "name", NULL);
            if (!mb_is_value_name(b->name))
                diag(dg, at_key(it, "name"), "point '%s': bit name '%s' must match "
                     "[A-Za-z0-9_.-]+", p->name, b->name ? b->name : "");
            if (!b->name)
                b->name = "";
            if (bit < 0 || bit > 15) {
                diag(dg, at_key(it, "bit"), "point '%s': bit %lld is out of 0..15", p->name,
                     (long long)bit);
                bit = 0;
            } else if (seen & (1u << bit)) {
                diag(dg, at_key(it, "bit"), "point '%s': bit %lld is mapped twice", p->name,
                     (long long)bit);
            }
            seen |= 1u << bit;
            b->bit = (unsigned)bit;
            b->publish = (mb_publish_t)lookup_or(
                mb_publish_names, ccgw_config_string(it, "publish", NULL), (int)p->publish);
            if (b->publish == MB_PUB_STATE && mb_is_reserved_state_name(b->name))
                diag(dg, at_key(it, "name"), "bit '%s' is a reserved state key", b->name);
            parse_alarm(dg, alarm_node(it), &b->alarm);
        }
    }

    const ccgw_config_t *an = alarm_node(pn);
    if (an && p->fmt.type != MB_TYPE_BOOL)
        diag(dg, an, "point '%s': alarm needs type bool (for a bitfield put alarms on its bits)",
             p->name);
    parse_alarm(dg, an, &p->alarm);
    return CCGW_OK;
}

/* For duplicate checks: names sorted with their position. */
typedef struct named_node {
    const char *name;
    const ccgw_config_t *node;
    size_t ord;
} named_node_t;

static int named_cmp(const void *a, const void *b)
{
    const named_node_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->ord < y->ord ? -1 : x->ord > y->ord;
}

static void report_duplicates(mb_diag_t *dg, named_node_t *v, size_t n, const char *what,
                              const char *dev_id)
{
    char buf[160];
    qsort(v, n, sizeof *v, named_cmp);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(v[i].name, v[i - 1].name) == 0 && *v[i].name) {
            diag(dg, v[i].node, "duplicate %s '%s' in device '%s' (first at %s)", what, v[i].name,
                 dev_id, where(v[i - 1].node, buf, sizeof buf));
        }
    }
}

static int check_names(mb_diag_t *dg, const ccgw_config_t *dn, mb_device_t *d)
{
    size_t n = 0, na = 0;
    for (size_t i = 0; i < d->n_points; i++) {
        n += 1 + d->points[i].n_bits;
        na += 1 + d->points[i].n_bits;
    }
    named_node_t *names = calloc(n ? n : 1, sizeof *names);
    named_node_t *codes = calloc(na ? na : 1, sizeof *codes);
    if (!names || !codes) {
        free(names);
        free(codes);
        return CCGW_ENOMEM;
    }
    const ccgw_config_t *pts = ccgw_config_get(dn, "points");
    size_t k = 0, kc = 0;
    for (size_t i = 0; i < d->n_points; i++) {
        const mb_point_t *p = &d->points[i];
        const ccgw_config_t *pn = ccgw_config_at(pts, i);
        names[k] = (named_node_t){p->name, at_key(pn, "name"), k};
        k++;
        if (p->alarm.present && p->alarm.code) {
            codes[kc] = (named_node_t){p->alarm.code, at_key(alarm_node(pn), "code"), kc};
            kc++;
        }
        const ccgw_config_t *bn = ccgw_config_get(pn, "bits");
        for (size_t j = 0; j < p->n_bits; j++) {
            const ccgw_config_t *it = ccgw_config_at(bn, j);
            names[k] = (named_node_t){p->bits[j].name, at_key(it, "name"), k};
            k++;
            if (p->bits[j].alarm.present && p->bits[j].alarm.code) {
                codes[kc] = (named_node_t){p->bits[j].alarm.code, at_key(alarm_node(it), "code"),
                                           kc};
                kc++;
            }
        }
    }
    report_duplicates(dg, names, k, "value name", d->id);
    report_duplicates(dg, codes, kc, "alarm code", d->id);
    free(names);
    free(codes);
    return CCGW_OK;
}

mb_point_t *mb_find_point(mb_device_t *d, const char *name)
{
    for (size_t i = 0; name && i < d->n_points; i++) {
        if (strcmp(d->points[i].name, name) == 0)
            return &d->points[i];
    }
    return NULL;
}

static int parse_aliases(mb_diag_t *dg, const ccgw_config_t *dn, mb_device_t *d)
{
    const ccgw_config_t *cn = ccgw_config_get(dn, "commands");
    size_t n = ccgw_config_count(cn);
    if (!cn || n == 0)
        return CCGW_OK;
    d->aliases = calloc(n, sizeof *d->aliases);
    if (!d->aliases)
        return CCGW_ENOMEM;
    d->n_aliases = n;
    for (size_t i = 0; i < n; i++) {
        const ccgw_config_t *an = ccgw_config_at(cn, i);
        mb_alias_t *a = &d->aliases[i];
        char buf[160];
        a->name = ccgw_config_string(an, "name", NULL);
        if (!mb_is_command_name(a->name))
            diag(dg, at_key(an, "name"), "command name '%s' must match [a-z0-9_.]+",
                 a->name ? a->name : "");
        else if (strcmp(a->name, "write") == 0)
            diag(dg, at_key(an, "name"), "command name 'write' is taken by the plugin");
        if (!a->name)
            a->name = "";
        for (size_t j = 0; j < i; j++) {
            if (*a->name && strcmp(d->aliases[j].name, a->name) == 0) {
                diag(dg, at_key(an, "name"), "duplicate command '%s' in device '%s' (first at %s)",
                     a->name, d->id,
                     where(at_key(ccgw_config_at(cn, j), "name"), buf, sizeof buf));
                break;
            }
        }
        const char *pname = ccgw_config_string(an, "point", NULL);
        a->point = mb_find_point(d, pname);
        a->value = ccgw_config_get(an, "value");
        if (!a->point) {
            diag(dg, at_key(an, "point"), "command '%s' names unknown point '%s' in device '%s'",
                 a->name, pname ? pname : "", d->id);
        } else if (!a->point->writable) {
            diag(dg, at_key(an, "point"),
                 "command '%s' names point '%s', which is not writable (set writable: true)",
                 a->name, a->point->name);
        } else if (a->value) {
            mb_write_t w;
            char err[200];
            memset(&w, 0, sizeof w);
            if (mb_point_value(a->point, a->value, &w, err, sizeof err) != 0)
                diag(dg, a->value, "command '%s': %s", a->name, err);
        }
    }

    d->cmd_specs = calloc(n + 1, sizeof *d->cmd_specs);
    if (!d->cmd_specs)
        return CCGW_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const ccgw_config_t *an = ccgw_config_at(cn, i);
        mb_alias_t *a = &d->aliases[i];
        d->cmd_specs[i].name = a->name;
        d->cmd_specs[i].args = a->value ? NULL : mb_alias_value_args;
        d->cmd_specs[i].doc = ccgw_config_string(
            an, "doc",
            a->value ? "Write the configured value to the mapped point."
                     : "Write {\"value\": v} to the mapped point.");
    }
    return CCGW_OK;
}

static int plan_device(mb_device_t *d)
{
    size_t n = d->n_points;
    mb_span_t *spans = calloc(n, sizeof *spans);
    mb_block_t *blocks = calloc(n, sizeof *blocks);
    size_t *block_of = calloc(n, sizeof *block_of);
    int rc = CCGW_ENOMEM;

    if (!spans || !blocks || !block_of)
        goto out;
    for (size_t i = 0; i < n; i++)
        spans[i] = (mb_span_t){d->points[i].table, d->points[i].address, d->points[i].nregs};
    int nb = mb_plan_blocks(spans, n, d->max_gap, 0, 0, blocks, block_of);
    if (nb < 0) {
        rc = CCGW_EINVAL;
        goto out;
    }
    d->blocks = calloc((size_t)nb ? (size_t)nb : 1, sizeof *d->blocks);
    if (!d->blocks)
        goto out;
    d->n_blocks = (size_t)nb;
    size_t nregs = 0, nbits = 0;
    for (size_t b = 0; b < d->n_blocks; b++) {
        d->blocks[b].req = blocks[b];
        if (mb_table_is_bits(blocks[b].table)) {
            d->blocks[b].buf_off = nbits;
            nbits += blocks[b].count;
        } else {
            d->blocks[b].buf_off = nregs;
            nregs += blocks[b].count;
        }
    }
    for (size_t i = 0; i < n; i++)
        d->points[i].block = block_of[i];
    d->regs = calloc(nregs ? nregs : 1, sizeof *d->regs);
    d->bits = calloc(nbits ? nbits : 1, sizeof *d->bits);
    if (!d->regs || !d->bits)
        goto out;
    d->n_values_max = 0;
    for (size_t i = 0; i < n; i++)
        d->n_values_max += d->points[i].fmt.type == MB_TYPE_BITFIELD ? d->points[i].n_bits : 1;
    d->tel = calloc(d->n_values_max ? d->n_values_max : 1, sizeof *d->tel);
    d->state = calloc(d->n_values_max ? d->n_values_max : 1, sizeof *d->state);
    if (!d->tel || !d->state)
        goto out;
    rc = CCGW_OK;
out:
    free(spans);
    free(blocks);
    free(block_of);
    return rc;
}

/* The profile node named `id` in `profiles`, or NULL. */
static const ccgw_config_t *find_profile(const ccgw_config_t *profiles, const char *id)
{
    size_t n = ccgw_config_count(profiles);
    for (size_t i = 0; id && i < n; i++) {
        const ccgw_config_t *pn = ccgw_config_at(profiles, i);
        const char *pid = ccgw_config_string(pn, "id", NULL);
        if (pid && strcmp(pid, id) == 0)
            return pn;
    }
    return NULL;
}

static int parse_device(mb_diag_t *dg, const ccgw_config_t *dn, const ccgw_config_t *profiles,
                        mb_instance_t *mb, mb_device_t *d)
{
    int rc;

    d->mb = mb;
    d->id = ccgw_config_string(dn, "id", NULL);
    if (!mb_is_id(d->id))
        diag(dg, at_key(dn, "id"), "device id '%s' must match [a-z0-9_.-]+", d->id ? d->id : "");
    if (!d->id)
        d->id = "";
    d->class_name = ccgw_config_string(dn, "class", NULL);
    if (mb_lookup(mb_class_choices, d->class_name) < 0) {
        diag(dg, at_key(dn, "class"), "device '%s': class '%s' is not one of ups, hvac, env",
             d->id, d->class_name ? d->class_name : "");
        d->class_name = "env";
    }
    const char *tr = ccgw_config_string(dn, "transport", "tcp");
    int transport = mb_lookup(mb_transport_choices, tr);
    if (transport < 0) {
        diag(dg, at_key(dn, "transport"), "device '%s': transport must be tcp or rtu", d->id);
        transport = MB_TCP;
    }
    d->unit_id = (int)ccgw_config_int(dn, "unit_id", 1);
    if (transport == MB_TCP) {
        const char *host = ccgw_config_string(dn, "host", NULL);
        if (!host || !*host)
            diag(dg, dn, "device '%s': transport tcp needs host", d->id);
        if (d->unit_id < 0 || d->unit_id > 255)
            diag(dg, at_key(dn, "unit_id"), "device '%s': unit_id must be 0..255 for tcp", d->id);
    } else {
        const char *serial = ccgw_config_string(dn, "serial", NULL);
        if (!serial || !*serial)
            diag(dg, dn, "device '%s': transport rtu needs serial (e.g. /dev/ttyUSB0)", d->id);
        if (d->unit_id < 1 || d->unit_id > 247)
            diag(dg, at_key(dn, "unit_id"),
                 "device '%s': unit_id must be 1..247 for rtu (0 is broadcast: reads get no "
                 "answer)", d->id);
    }
    d->poll_interval_ms = (uint64_t)ccgw_config_int(dn, "poll_interval_ms", 1000);
    d->timeout_ms = (uint32_t)ccgw_config_int(dn, "timeout_ms", 500);
    d->retries = (unsigned)ccgw_config_int(dn, "retries", 1);
    d->offline_after = (unsigned)ccgw_config_int(dn, "offline_after", 3);
    d->max_gap = (unsigned)ccgw_config_int(dn, "max_gap", 0);
    if (d->poll_interval_ms < 1)
        d->poll_interval_ms = 1000;
    if (d->timeout_ms < 1)
        d->timeout_ms = 500;
    if (d->offline_after < 1)
        d->offline_after = 1;
    if (d->max_gap > 124)
        d->max_gap = 124;
    mb_order_t wo = (mb_order_t)lookup_or(mb_order_names,
                                          ccgw_config_string(dn, "word_order", "big"), 0);
    mb_order_t bo = (mb_order_t)lookup_or(mb_order_names,
                                          ccgw_config_string(dn, "byte_order", "big"), 0);

    /* points (and commands) come from the device or from its profile */
    const ccgw_config_t *src = dn, *cmd_src = dn;
    const char *profile = ccgw_config_string(dn, "profile", NULL);
    if (profile) {
        const ccgw_config_t *pf = find_profile(profiles, profile);
        if (ccgw_config_get(dn, "points"))
            diag(dg, at_key(dn, "profile"), "device '%s': give points or profile, not both", d->id);
        else if (!pf)
            diag(dg, at_key(dn, "profile"), "device '%s': no profile '%s' in profiles", d->id,
                 profile);
        else {
            src = pf;
            if (!ccgw_config_get(dn, "commands"))
                cmd_src = pf;
        }
    }
    const ccgw_config_t *pts = ccgw_config_get(src, "points");
    size_t np = ccgw_config_count(pts);
    if (np == 0 && !profile)
        diag(dg, pts ? pts : dn, "device '%s': points must list at least one point (or give profile)",
             d->id);
    d->points = calloc(np ? np : 1, sizeof *d->points);
    if (!d->points)
        return CCGW_ENOMEM;
    d->n_points = np;
    for (size_t i = 0; i < np; i++) {
        rc = parse_point(dg, ccgw_config_at(pts, i), wo, bo, &d->points[i]);
        if (rc < 0)
            return rc;
    }
    rc = check_names(dg, src, d);
    if (rc < 0)
        return rc;
    rc = parse_aliases(dg, cmd_src, d);
    if (rc < 0)
        return rc;
    if (dg->errors == 0 && np > 0) {
        rc = plan_device(d);
        if (rc < 0)
            return rc;
    }
    return CCGW_OK;
}

static char parity_char(const char *s)
{
    if (s && strcmp(s, "even") == 0)
        return 'E';
    if (s && strcmp(s, "odd") == 0)
        return 'O';
    return 'N';
}

/* Group devices into links: one per TCP device, one per RTU serial line. */
static int build_links(mb_diag_t *dg, const ccgw_config_t *devs, mb_instance_t *mb)
{
    size_t n = mb->n_devices;
    size_t *link_of = calloc(n ? n : 1, sizeof *link_of);
    size_t *first_dev = calloc(n ? n : 1, sizeof *first_dev); /* per link */
    int rc = CCGW_ENOMEM;
    char buf[160];

    mb->links = calloc(n ? n : 1, sizeof *mb->links);
    if (!link_of || !first_dev || !mb->links)
        goto out;
    mb->n_links = 0;
    for (size_t i = 0; i < n; i++) {
        const ccgw_config_t *dn = ccgw_config_at(devs, i);
        bool rtu = strcmp(ccgw_config_string(dn, "transport", "tcp"), "rtu") == 0;
        const char *serial = ccgw_config_string(dn, "serial", NULL);
        bool shared = !rtu && strcmp(ccgw_config_string(dn, "connection", "own"), "shared") == 0;
        const char *host = ccgw_config_string(dn, "host", "");
        int port = (int)ccgw_config_int(dn, "port", 502);
        size_t l = mb->n_links;
        if (rtu && serial) {
            for (size_t k = 0; k < mb->n_links; k++) {
                if (mb->links[k].transport == MB_RTU && strcmp(mb->links[k].serial, serial) == 0) {
                    l = k;
                    break;
                }
            }
        } else if (shared) {
            for (size_t k = 0; k < mb->n_links; k++) {
                mb_link_t *lk = &mb->links[k];
                if (lk->transport == MB_TCP && lk->shared && lk->port == port &&
                    strcmp(lk->host, host) == 0) {
                    l = k;
                    break;
                }
            }
        }
        if (l == mb->n_links) {
            mb_link_t *lk = &mb->links[mb->n_links++];
            lk->mb = mb;
            lk->transport = rtu ? MB_RTU : MB_TCP;
            lk->shared = shared;
            lk->host = host;
            lk->port = port;
            lk->serial = serial ? serial : "";
            lk->baud = (int)ccgw_config_int(dn, "baud", 9600);
            lk->parity = parity_char(ccgw_config_string(dn, "parity", "none"));
            lk->data_bits = (int)ccgw_config_int(dn, "data_bits", 8);
            lk->stop_bits = (int)ccgw_config_int(dn, "stop_bits", 1);
            lk->busy_fd = -1;
            lk->wake_fd = -1;
            lk->sock_slot = -1;
            if (rtu)
                snprintf(lk->name, sizeof lk->name, "rtu %s", lk->serial);
            else if (shared)
                snprintf(lk->name, sizeof lk->name, "tcp %s:%d (shared)", lk->host, lk->port);
            else
                snprintf(lk->name, sizeof lk->name, "tcp %s:%d unit %d (%s)", lk->host, lk->port,
                         mb->devices[i].unit_id, mb->devices[i].id);
            first_dev[l] = i;
        } else if (shared) {
            /* Another unit behind the same TCP endpoint: units differ. */
            for (size_t j = 0; j < i; j++) {
                if (link_of[j] == l && mb->devices[j].unit_id == mb->devices[i].unit_id) {
                    diag(dg, at_key(dn, "unit_id"),
                         "device '%s': unit_id %d is already used on the shared connection to "
                         "%s:%d by device '%s'",
                         mb->devices[i].id, mb->devices[i].unit_id, host, port, mb->devices[j].id);
                    break;
                }
            }
        } else {
            /* Another device on an RTU line: settings must agree, units differ. */
            mb_link_t *lk = &mb->links[l];
            const ccgw_config_t *first = ccgw_config_at(devs, first_dev[l]);
            where(first, buf, sizeof buf);
            if ((int)ccgw_config_int(dn, "baud", 9600) != lk->baud ||
                parity_char(ccgw_config_string(dn, "parity", "none")) != lk->parity ||
                (int)ccgw_config_int(dn, "data_bits", 8) != lk->data_bits ||
                (int)ccgw_config_int(dn, "stop_bits", 1) != lk->stop_bits)
                diag(dg, dn,
                     "device '%s': serial line %s is shared with device '%s' (%s), so baud, "
                     "parity, data_bits and stop_bits must be the same",
                     mb->devices[i].id, serial, mb->devices[first_dev[l]].id, buf);
            for (size_t j = 0; j < i; j++) {
                if (link_of[j] == l && mb->devices[j].unit_id == mb->devices[i].unit_id) {
                    diag(dg, at_key(dn, "unit_id"),
                         "device '%s': unit_id %d is already used on %s by device '%s'",
                         mb->devices[i].id, mb->devices[i].unit_id, serial, mb->devices[j].id);
                    break;
                }
            }
        }
        link_of[i] = l;
    }
    for (size_t l = 0; l < mb->n_links; l++) {
        mb_link_t *lk = &mb->links[l];
        size_t cnt = 0;
        for (size_t i = 0; i < n; i++)
            cnt += link_of[i] == l;
        lk->devices = calloc(cnt ? cnt : 1, sizeof *lk->devices);
        if (!lk->devices)
            goto out;
        for (size_t i = 0; i < n; i++) {
            if (link_of[i] == l) {
                lk->devices[lk->n_devices++] = &mb->devices[i];
                mb->devices[i].link = lk;
            }
        }
    }
    rc = CCGW_OK;
out:
    free(link_of);
    free(first_dev);
    return rc;
}

static int parse_all(mb_diag_t *dg, const ccgw_config_t *options, mb_instance_t *mb)
{
    const ccgw_config_t *devs = ccgw_config_get(options, "devices");
    const ccgw_config_t *profiles = ccgw_config_get(options, "profiles");
    size_t n = ccgw_config_count(devs);
    int rc;
    char buf[160];

    for (size_t i = 0; i < ccgw_config_count(profiles); i++) {
        const ccgw_config_t *pn = ccgw_config_at(profiles, i);
        const char *id = ccgw_config_string(pn, "id", NULL);
        if (!mb_is_id(id))
            diag(dg, at_key(pn, "id"), "profile id '%s' must match [a-z0-9_.-]+", id ? id : "");
        else if (find_profile(profiles, id) != pn)
            diag(dg, at_key(pn, "id"), "duplicate profile id '%s'", id);
    }

    if (n == 0) {
        diag(dg, devs ? devs : options, "devices must list at least one device");
        return CCGW_OK;
    }
    mb->devices = calloc(n, sizeof *mb->devices);
    if (!mb->devices)
        return CCGW_ENOMEM;
    mb->n_devices = n;
    for (size_t i = 0; i < n; i++) {
        const ccgw_config_t *dn = ccgw_config_at(devs, i);
        rc = parse_device(dg, dn, profiles, mb, &mb->devices[i]);
        if (rc < 0)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (*mb->devices[i].id && strcmp(mb->devices[j].id, mb->devices[i].id) == 0) {
                diag(dg, at_key(dn, "id"), "duplicate device id '%s' (first at %s)",
                     mb->devices[i].id,
                     where(at_key(ccgw_config_at(devs, j), "id"), buf, sizeof buf));
                break;
            }
        }
    }
    return build_links(dg, devs, mb);
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                               */
/* ------------------------------------------------------------------------ */

int mb_check(const ccgw_config_t *options)
{
    mb_instance_t tmp;
    mb_diag_t dg = {0};

    memset(&tmp, 0, sizeof tmp);
    int rc = parse_all(&dg, options, &tmp);
    mb_free_config(&tmp);
    if (rc < 0) {
        ccgw_config_error(options, "modbus: out of memory while checking options");
        return dg.errors + 1;
    }
    return dg.errors;
}

int mb_build(mb_instance_t *mb, const ccgw_config_t *options)
{
    mb_diag_t dg = {.inst = mb->inst};
    int rc = parse_all(&dg, options, mb);
    if (rc < 0)
        return rc;
    if (dg.errors)
        return CCGW_EINVAL;

    for (size_t l = 0; l < mb->n_links; l++) {
        mb_link_t *lk = &mb->links[l];
        if (pthread_mutex_init(&lk->lock, NULL) != 0)
            break;
        lk->sync_init = true;
    }
    for (size_t l = 0; l < mb->n_links; l++) {
        if (!mb->links[l].sync_init)
            return CCGW_ENOMEM;
    }
    return CCGW_OK;
}

void mb_free_config(mb_instance_t *mb)
{
    for (size_t i = 0; mb->devices && i < mb->n_devices; i++) {
        mb_device_t *d = &mb->devices[i];
        for (size_t j = 0; d->points && j < d->n_points; j++) {
            free(d->points[j].enums);
            free(d->points[j].bits);
        }
        free(d->points);
        free(d->blocks);
        free(d->regs);
        free(d->bits);
        free(d->tel);
        free(d->state);
        free(d->aliases);
        free(d->cmd_specs);
    }
    free(mb->devices);
    mb->devices = NULL;
    mb->n_devices = 0;
    for (size_t l = 0; mb->links && l < mb->n_links; l++) {
        mb_link_t *lk = &mb->links[l];
        if (lk->sync_init)
            pthread_mutex_destroy(&lk->lock);
        free(lk->devices);
    }
    free(mb->links);
    mb->links = NULL;
    mb->n_links = 0;
}
