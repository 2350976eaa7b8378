/*
 * nut_proto.c - pure helpers of the nut plugin: protocol words, ups.status
 * flags, the ups class mapping, upsd error texts. See nut_proto.h.
 */
#include "nut_proto.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int nut_split(char *line, char **words, int max)
{
    int n = 0;
    char *p = line;

    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            return n;
        if (n >= max)
            return -1;
        if (*p == '"') {
            char *out = ++p;
            words[n++] = out;
            for (;;) {
                if (!*p)
                    return -1; /* unterminated quote */
                if (*p == '\\' && p[1]) {
                    *out++ = p[1];
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *out++ = *p++;
                }
            }
            /* the closing quote must end the word */
            if (*p && *p != ' ' && *p != '\t')
                return -1;
            char *next = *p ? p + 1 : p;
            *out = '\0';
            p = next;
        } else {
            words[n++] = p;
            while (*p && *p != ' ' && *p != '\t')
                p++;
            if (*p)
                *p++ = '\0';
        }
    }
}

int nut_quote(const char *s, char *out, size_t len)
{
    size_t o = 0;
    if (!s || len < 3)
        return -1;
    out[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return -1;
        if (*p == '"' || *p == '\\') {
            if (o + 1 >= len)
                return -1;
            out[o++] = '\\';
        }
        if (o + 1 >= len)
            return -1;
        out[o++] = (char)*p;
    }
    if (o + 2 > len)
        return -1;
    out[o++] = '"';
    out[o] = '\0';
    return (int)o;
}

static bool name_chars(const char *s, bool lower_only, size_t maxlen)
{
    size_t n = 0;
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                  c == '-' || (!lower_only && c >= 'A' && c <= 'Z');
        if (!ok)
            return false;
    }
    return n <= maxlen;
}

bool nut_name_ok(const char *s)
{
    return name_chars(s, false, 256);
}

bool nut_device_id_ok(const char *s)
{
    return name_chars(s, true, 64);
}

static const struct {
    const char *name;
    unsigned flag;
} status_flags[] = {
    {"OL", NUT_F_OL},           {"OB", NUT_F_OB},         {"LB", NUT_F_LB},
    {"HB", NUT_F_HB},           {"RB", NUT_F_RB},         {"CHRG", NUT_F_CHRG},
    {"DISCHRG", NUT_F_DISCHRG}, {"BYPASS", NUT_F_BYPASS}, {"CAL", NUT_F_CAL},
    {"OFF", NUT_F_OFF},         {"OVER", NUT_F_OVER},     {"TRIM", NUT_F_TRIM},
    {"BOOST", NUT_F_BOOST},     {"FSD", NUT_F_FSD},       {"ALARM", NUT_F_ALARM},
    {"WAIT", NUT_F_WAIT},
};

unsigned nut_status_flags(const char *status)
{
    unsigned flags = 0;
    const char *p = status;

    if (!p)
        return 0;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *w = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        size_t len = (size_t)(p - w);
        if (!len)
            break;
        unsigned f = NUT_F_OTHER;
        for (size_t i = 0; i < sizeof status_flags / sizeof status_flags[0]; i++) {
            if (strlen(status_flags[i].name) == len && memcmp(status_flags[i].name, w, len) == 0) {
                f = status_flags[i].flag;
                break;
            }
        }
        flags |= f;
    }
    return flags;
}

bool nut_status_pending(unsigned flags)
{
    if (!flags)
        return true;
    return (flags & NUT_F_WAIT) && !(flags & (NUT_F_OL | NUT_F_OB | NUT_F_OFF));
}

const char *nut_status_name(unsigned flags)
{
    if (flags & NUT_F_OFF)
        return "off";
    if (flags & NUT_F_LB)
        return "low_battery";
    if (flags & NUT_F_OB)
        return "on_battery";
    if (flags & NUT_F_BYPASS)
        return "bypass";
    if (flags & NUT_F_OL)
        return "on_line";
    return "unknown";
}

const nut_alarm_def_t nut_alarm_defs[NUT_N_ALARMS] = {
    {"on_battery", NUT_F_OB, CCGW_SEV_MAJOR, "UPS on battery: mains power lost"},
    {"low_battery", NUT_F_LB, CCGW_SEV_CRITICAL, "UPS battery low: shutdown imminent"},
    {"replace_battery", NUT_F_RB, CCGW_SEV_MINOR, "UPS battery needs replacing"},
    {"overload", NUT_F_OVER, CCGW_SEV_MAJOR, "UPS overloaded"},
};

static bool on_mains(unsigned f)
{
    return (f & NUT_F_OL) && !(f & NUT_F_OB);
}

const char *nut_power_event(bool have_prev, unsigned prev, unsigned cur)
{
    if (!have_prev)
        return NULL;
    if (on_mains(prev) && (cur & NUT_F_OB))
        return "power.lost";
    if ((prev & NUT_F_OB) && on_mains(cur))
        return "power.restored";
    return NULL;
}

const nut_var_def_t nut_var_defs[NUT_N_VARS] = {
    {"battery.charge", "%"}, {"battery.runtime", "s"}, {"battery.voltage", "V"},
    {"input.voltage", "V"},  {"input.frequency", "Hz"}, {"output.voltage", "V"},
    {"ups.load", "%"},       {"ups.temperature", "Cel"},
};

int nut_var_index(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < NUT_N_VARS; i++) {
        if (strcmp(nut_var_defs[i].name, name) == 0)
            return i;
    }
    return -1;
}

bool nut_parse_number(const char *s, double *d, bool *is_int, long long *i)
{
    if (!s)
        return false;
    while (*s == ' ')
        s++;
    if (!*s)
        return false;
    /* decimal only: no hex, inf or nan */
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' ||
              c == 'E' || c == ' '))
            return false;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno == ERANGE || !isfinite(v))
        return false;
    while (*end == ' ')
        end++;
    if (*end)
        return false;
    *d = v;
    bool integral = strpbrk(s, ".eE") == NULL && v >= -9.0e15 && v <= 9.0e15;
    if (is_int)
        *is_int = integral;
    if (i)
        *i = integral ? (long long)v : 0;
    return true;
}

static const struct {
    const char *code;
    const char *text;
    bool offline;
} err_texts[] = {
    {"DATA-STALE", "data stale: the driver has not updated the UPS data", true},
    {"DRIVER-NOT-CONNECTED", "driver not connected to upsd", true},
    {"UNKNOWN-UPS", "upsd does not know this UPS", true},
    {"ACCESS-DENIED", "access denied (wrong username/password, or not allowed in upsd.users)", false},
    {"CMD-NOT-SUPPORTED", "the UPS does not support this command", false},
    {"INSTCMD-FAILED", "the driver failed to run the command", false},
    {"VAR-NOT-SUPPORTED", "the UPS does not support this variable", false},
    {"INVALID-ARGUMENT", "invalid argument", false},
    {"INVALID-VALUE", "invalid value", false},
    {"USERNAME-REQUIRED", "upsd needs a username (set username and password)", false},
    {"PASSWORD-REQUIRED", "upsd needs a password (set username and password)", false},
    {"INVALID-USERNAME", "invalid username", false},
    {"INVALID-PASSWORD", "invalid password", false},
    {"ALREADY-SET-USERNAME", "username already set", false},
    {"ALREADY-SET-PASSWORD", "password already set", false},
    {"UNKNOWN-COMMAND", "upsd does not know this request", false},
    {"TOO-LONG", "request too long", false},
    {"FEATURE-NOT-SUPPORTED", "feature not supported by upsd", false},
    {"FEATURE-NOT-CONFIGURED", "feature not configured on upsd", false},
    {"READONLY", "read-only", false},
};

const char *nut_err_text(const char *code)
{
    if (!code)
        return NULL;
    for (size_t i = 0; i < sizeof err_texts / sizeof err_texts[0]; i++) {
        if (strcmp(err_texts[i].code, code) == 0)
            return err_texts[i].text;
    }
    return NULL;
}

bool nut_err_is_offline(const char *code)
{
    if (!code)
        return false;
    for (size_t i = 0; i < sizeof err_texts / sizeof err_texts[0]; i++) {
        if (strcmp(err_texts[i].code, code) == 0)
            return err_texts[i].offline;
    }
    return false;
}
