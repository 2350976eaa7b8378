/*
 * isapi_event.c - ISAPI alertStream parts -> door-class events; recent-id
 * window; RemoteControlDoor / ResponseStatus XML. See isapi_event.h.
 *
 * Codes: Hikvision's access-control event codes (HCNetSDK
 * NET_DVR_ACS_ALARM_INFO, the same values the ISAPI AccessControllerEvent
 * carries as majorEventType / subEventType).
 */
#include "isapi_event.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

typedef struct code_def {
    int major, minor;
    const char *type, *door, *lock, *mode, *raise, *clear, *method, *label;
} code_def_t;

#define GRANT(mi, m, l) {ISAPI_MAJOR_EVENT, mi, "access.granted", NULL, NULL, NULL, NULL, NULL, m, l}
#define DENY(mi, m, l) {ISAPI_MAJOR_EVENT, mi, "access.denied", NULL, NULL, NULL, NULL, NULL, m, l}

static const code_def_t code_table[] = {
    /* major 5: events */
    GRANT(0x01, "card", "legal card pass"),
    GRANT(0x02, "card+password", "card and password pass"),
    DENY(0x03, "card+password", "card and password fail"),
    DENY(0x04, "card+password", "card and password timeout"),
    DENY(0x06, "card", "card no right"),
    DENY(0x07, "card", "card invalid period"),
    DENY(0x08, "card", "card out of date"),
    DENY(0x09, "card", "invalid card"),
    DENY(0x0a, NULL, "anti-passback fail"),
    DENY(0x0b, NULL, "interlock door not closed"),
    GRANT(0x10, NULL, "multi-verify success"),
    {ISAPI_MAJOR_EVENT, 0x13, NULL, NULL, NULL, "always_open", NULL, NULL, NULL, "always open begin"},
    {ISAPI_MAJOR_EVENT, 0x14, NULL, NULL, NULL, "normal", NULL, NULL, NULL, "always open end"},
    {ISAPI_MAJOR_EVENT, 0x15, NULL, NULL, "unlocked", NULL, NULL, NULL, NULL, "lock open"},
    {ISAPI_MAJOR_EVENT, 0x16, NULL, NULL, "locked", NULL, NULL, NULL, NULL, "lock close"},
    {ISAPI_MAJOR_EVENT, 0x19, "door.opened", "open", NULL, NULL, NULL, NULL, NULL, "door open normal"},
    {ISAPI_MAJOR_EVENT, 0x1a, "door.closed", "closed", NULL, NULL, NULL, "door", NULL, "door close normal"},
    {ISAPI_MAJOR_EVENT, 0x1b, "door.forced", "open", NULL, NULL, "forced", NULL, NULL, "door open abnormal"},
    {ISAPI_MAJOR_EVENT, 0x1c, "door.held_open", "open", NULL, NULL, "held_open", NULL, NULL, "door open timeout"},
    {ISAPI_MAJOR_EVENT, 0x1f, NULL, NULL, NULL, "always_closed", NULL, NULL, NULL, "always close begin"},
    {ISAPI_MAJOR_EVENT, 0x20, NULL, NULL, NULL, "normal", NULL, NULL, NULL, "always close end"},
    GRANT(0x26, "fingerprint", "fingerprint compare pass"),
    DENY(0x27, "fingerprint", "fingerprint compare fail"),
    GRANT(0x28, "card+fingerprint", "card and fingerprint pass"),
    DENY(0x29, "card+fingerprint", "card and fingerprint fail"),
    GRANT(0x2b, "card+fingerprint+password", "card, fingerprint and password pass"),
    DENY(0x2c, "card+fingerprint+password", "card, fingerprint and password fail"),
    GRANT(0x2e, "fingerprint+password", "fingerprint and password pass"),
    DENY(0x2f, "fingerprint+password", "fingerprint and password fail"),
    DENY(0x31, "fingerprint", "fingerprint does not exist"),
    GRANT(0x36, "face+fingerprint", "face and fingerprint pass"),
    DENY(0x37, "face+fingerprint", "face and fingerprint fail"),
    GRANT(0x39, "face+password", "face and password pass"),
    DENY(0x3a, "face+password", "face and password fail"),
    GRANT(0x3c, "face+card", "face and card pass"),
    DENY(0x3d, "face+card", "face and card fail"),
    GRANT(0x3f, "face+password+fingerprint", "face, password and fingerprint pass"),
    DENY(0x40, "face+password+fingerprint", "face, password and fingerprint fail"),
    GRANT(0x42, "face+card+fingerprint", "face, card and fingerprint pass"),
    DENY(0x43, "face+card+fingerprint", "face, card and fingerprint fail"),
    GRANT(0x45, "employee_no+fingerprint", "employee no. and fingerprint pass"),
    DENY(0x46, "employee_no+fingerprint", "employee no. and fingerprint fail"),
    GRANT(0x48, "employee_no+fingerprint+password", "employee no., fingerprint and password pass"),
    DENY(0x49, "employee_no+fingerprint+password", "employee no., fingerprint and password fail"),
    GRANT(0x4b, "face", "face verify pass"),
    DENY(0x4c, "face", "face verify fail"),
    GRANT(0x4d, "employee_no+face", "employee no. and face pass"),
    DENY(0x4e, "employee_no+face", "employee no. and face fail"),
    DENY(0x50, "face", "face recognition fail"),
    GRANT(0x65, "employee_no+password", "employee no. and password pass"),
    DENY(0x66, "employee_no+password", "employee no. and password fail"),
    DENY(0x97, "password", "password mismatch"),
    DENY(0x98, "employee_no", "employee no. does not exist"),
    GRANT(0x99, NULL, "combined verify pass"),
    DENY(0x9a, NULL, "combined verify timeout"),
    DENY(0x9b, NULL, "verify mode mismatch"),
    /* major 1: alarms (tamper) */
    {ISAPI_MAJOR_ALARM, 0x404, "tamper", NULL, NULL, NULL, "tamper", NULL, NULL, "terminal tampered (dismantled)"},
    {ISAPI_MAJOR_ALARM, 0x405, NULL, NULL, NULL, NULL, NULL, "tamper", NULL, "terminal tamper resumed"},
    {ISAPI_MAJOR_ALARM, 0x406, "tamper", NULL, NULL, NULL, "tamper", NULL, NULL, "card reader tampered (dismantled)"},
    {ISAPI_MAJOR_ALARM, 0x407, NULL, NULL, NULL, NULL, NULL, "tamper", NULL, "card reader tamper resumed"},
    /* major 3: operations (remote control log) */
    {ISAPI_MAJOR_OPERATION, 0x400, NULL, NULL, NULL, NULL, NULL, NULL, "remote", "remote open door"},
    {ISAPI_MAJOR_OPERATION, 0x401, NULL, NULL, NULL, "normal", NULL, NULL, "remote", "remote close door"},
    {ISAPI_MAJOR_OPERATION, 0x402, NULL, NULL, NULL, "always_open", NULL, NULL, "remote", "remote always open"},
    {ISAPI_MAJOR_OPERATION, 0x403, NULL, NULL, NULL, "always_closed", NULL, NULL, "remote", "remote always close"},
};

#define ISAPI_MINOR_HEART_BEAT 0x83

bool isapi_event_map(int major, int minor, isapi_event_t *ev)
{
    for (size_t i = 0; i < sizeof code_table / sizeof code_table[0]; i++) {
        const code_def_t *c = &code_table[i];
        if (c->major == major && c->minor == minor) {
            ev->type = c->type;
            ev->door = c->door;
            ev->lock = c->lock;
            ev->mode = c->mode;
            ev->alarm_raise = c->raise;
            ev->alarm_clear = c->clear;
            ev->method = c->method;
            ev->label = c->label;
            return true;
        }
    }
    ev->type = ev->door = ev->lock = ev->mode = NULL;
    ev->alarm_raise = ev->alarm_clear = ev->method = ev->label = NULL;
    return false;
}

/* currentVerifyMode -> method, for codes that do not say how */
static const char *method_from_mode(const char *m)
{
    static const struct { const char *mode, *method; } t[] = {
        {"face", "face"}, {"card", "card"}, {"fingerPrint", "fingerprint"},
        {"cardAndPw", "card+password"}, {"cardAndFace", "face+card"}, {"faceAndPw", "face+password"},
        {"faceAndFp", "face+fingerprint"}, {"cardAndFp", "card+fingerprint"},
        {"employeeNoAndPw", "employee_no+password"}, {"employeeNoAndFace", "employee_no+face"},
        {"password", "password"}, {"pw", "password"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(m, t[i].mode) == 0)
            return t[i].method;
    return NULL;
}

static void copy_str(char *dst, size_t len, const json_t *v)
{
    dst[0] = '\0';
    if (json_is_string(v))
        snprintf(dst, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(dst, len, "%lld", (long long)json_integer_value(v));
}

static int get_int(const json_t *o, const char *k, int fb)
{
    json_t *v = json_object_get(o, k);
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        return i >= -2147483647 && i <= 2147483647 ? (int)i : fb;
    }
    if (json_is_string(v)) {
        char *end;
        long l = strtol(json_string_value(v), &end, 0);
        if (end != json_string_value(v) && !*end && l >= -2147483647 && l <= 2147483647)
            return (int)l;
    }
    return fb;
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h ^ 0xff; /* field separator */
}

static bool has_text(const char *body, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(body + i, needle, n) == 0)
            return true;
    return false;
}

static isapi_kind_t from_json(const char *body, size_t len, isapi_event_t *ev)
{
    json_error_t err;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(root)) {
        json_decref(root);
        return ev->kind = ISAPI_K_INVALID;
    }
    const char *et = json_string_value(json_object_get(root, "eventType"));
    json_t *ace = json_object_get(root, "AccessControllerEvent");
    if (et && (strcasecmp(et, "heartBeat") == 0 || strcasecmp(et, "videoloss") == 0)) {
        json_decref(root);
        return ev->kind = ISAPI_K_HEARTBEAT;
    }
    if (!json_is_object(ace)) {
        json_decref(root);
        return ev->kind = ISAPI_K_IGNORED;
    }
    ev->major = get_int(ace, "majorEventType", -1);
    ev->minor = get_int(ace, "subEventType", -1);
    if (ev->major == ISAPI_MAJOR_EVENT && ev->minor == ISAPI_MINOR_HEART_BEAT) {
        json_decref(root);
        return ev->kind = ISAPI_K_HEARTBEAT;
    }
    ev->kind = ISAPI_K_ACCESS;
    isapi_event_map(ev->major, ev->minor, ev);
    copy_str(ev->person_id, sizeof ev->person_id, json_object_get(ace, "employeeNoString"));
    if (!ev->person_id[0])
        copy_str(ev->person_id, sizeof ev->person_id, json_object_get(ace, "employeeNo"));
    copy_str(ev->name, sizeof ev->name, json_object_get(ace, "name"));
    copy_str(ev->card_no, sizeof ev->card_no, json_object_get(ace, "cardNo"));
    copy_str(ev->verify_mode, sizeof ev->verify_mode, json_object_get(ace, "currentVerifyMode"));
    copy_str(ev->date_time, sizeof ev->date_time, json_object_get(root, "dateTime"));
    ev->door_no = get_int(ace, "doorNo", -1);
    json_t *sn = json_object_get(ace, "serialNo");
    if (json_is_integer(sn))
        ev->serial = (long long)json_integer_value(sn);
    if (ev->verify_mode[0] && (!ev->method || strcmp(ev->method, "remote") != 0)) {
        const char *m = method_from_mode(ev->verify_mode);
        if (!ev->method && m)
            ev->method = m;
    }
    if (ev->serial >= 0) {
        snprintf(ev->event_id, sizeof ev->event_id, "%lld", ev->serial);
    } else {
        /* no serialNo (old firmware): the event's own content is its id */
        char num[32];
        uint64_t h = 1469598103934665603ull;
        h = fnv1a(h, ev->date_time);
        snprintf(num, sizeof num, "%d/%d", ev->major, ev->minor);
        h = fnv1a(h, num);
        h = fnv1a(h, ev->person_id);
        h = fnv1a(h, ev->card_no);
        snprintf(ev->event_id, sizeof ev->event_id, "h%016llx", (unsigned long long)h);
    }
    json_decref(root);
    return ev->kind;
}

isapi_kind_t isapi_event_from_part(const char *content_type, const char *body, size_t len,
                                   isapi_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->serial = -1;
    ev->door_no = -1;
    ev->major = ev->minor = -1;
    size_t i = 0;
    while (body && i < len && isspace((unsigned char)body[i]))
        i++;
    if (!body || i == len)
        return ev->kind = ISAPI_K_HEARTBEAT; /* empty part: keep-alive */
    const char *ct = content_type ? content_type : "";
    bool json = strncasecmp(ct, "application/json", 16) == 0 || strncasecmp(ct, "text/json", 9) == 0 ||
                (!*ct && body[i] == '{');
    if (json)
        return from_json(body + i, len - i, ev);
    if (body[i] == '<') {
        /* XML EventNotificationAlert: older firmware's heartbeat is a
         * videoloss alert with eventState inactive */
        if (has_text(body + i, len - i, "<eventType>videoloss</eventType>") ||
            has_text(body + i, len - i, "<eventType>heartBeat</eventType>"))
            return ev->kind = ISAPI_K_HEARTBEAT;
        return ev->kind = ISAPI_K_IGNORED;
    }
    return ev->kind = ISAPI_K_IGNORED;
}

/* ---- recent ids ---------------------------------------------------------- */

int isapi_seen_init(isapi_seen_t *w, size_t cap)
{
    memset(w, 0, sizeof *w);
    if (cap == 0 || cap > ISAPI_SEEN_MAX)
        return -1;
    w->ids = calloc(cap, sizeof *w->ids);
    if (!w->ids)
        return -1;
    w->cap = cap;
    return 0;
}

void isapi_seen_free(isapi_seen_t *w)
{
    free(w->ids);
    w->ids = NULL;
    w->cap = w->n = w->head = 0;
}

bool isapi_seen_check(isapi_seen_t *w, const char *id)
{
    if (!id || !*id || !w->cap)
        return false;
    uint64_t h = fnv1a(1469598103934665603ull, id);
    for (size_t i = 0; i < w->n; i++)
        if (w->ids[i] == h)
            return true;
    if (w->n < w->cap) {
        w->ids[w->n++] = h;
    } else {
        w->ids[w->head] = h;
        w->head = (w->head + 1) % w->cap;
    }
    return false;
}

/* ---- XML ------------------------------------------------------------------- */

int isapi_door_body(const char *cmd, char *out, size_t len)
{
    static const char *const ok[] = {"open", "close", "alwaysOpen", "alwaysClose"};
    bool found = false;
    for (size_t i = 0; i < 4; i++)
        found = found || (cmd && strcmp(cmd, ok[i]) == 0);
    if (!found)
        return -1;
    int n = snprintf(out, len,
                     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n"
                     "<RemoteControlDoor version=\"2.0\" "
                     "xmlns=\"http://www.isapi.org/ver20/XMLSchema\">"
                     "<cmd>%s</cmd></RemoteControlDoor>\r\n",
                     cmd);
    return n < 0 || (size_t)n >= len ? -1 : n;
}

/* Text of the first <tag>...</tag> (namespace prefixes not used by ISAPI). */
static bool xml_tag(const char *body, size_t len, const char *tag, char *out, size_t outlen)
{
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    size_t ol = strlen(open), cl = strlen(close);
    for (size_t i = 0; i + ol <= len; i++) {
        if (memcmp(body + i, open, ol) != 0)
            continue;
        size_t s = i + ol;
        for (size_t j = s; j + cl <= len; j++) {
            if (memcmp(body + j, close, cl) == 0) {
                size_t n = j - s;
                while (n && isspace((unsigned char)body[s])) {
                    s++;
                    n--;
                }
                while (n && isspace((unsigned char)body[s + n - 1]))
                    n--;
                if (n >= outlen)
                    n = outlen - 1;
                memcpy(out, body + s, n);
                out[n] = '\0';
                return true;
            }
        }
        return false;
    }
    return false;
}

int isapi_parse_status(const char *body, size_t len, isapi_status_t *st)
{
    memset(st, 0, sizeof *st);
    st->status_code = -1;
    if (!body)
        return -1;
    size_t i = 0;
    while (i < len && isspace((unsigned char)body[i]))
        i++;
    if (i < len && body[i] == '{') {
        json_t *root = json_loadb(body + i, len - i, 0, NULL);
        if (!json_is_object(root)) {
            json_decref(root);
            return -1;
        }
        st->status_code = get_int(root, "statusCode", -1);
        copy_str(st->status_string, sizeof st->status_string, json_object_get(root, "statusString"));
        copy_str(st->sub_status, sizeof st->sub_status, json_object_get(root, "subStatusCode"));
        copy_str(st->error_msg, sizeof st->error_msg, json_object_get(root, "errorMsg"));
        json_decref(root);
        return st->status_code >= 0 ? 0 : -1;
    }
    char code[32];
    if (!xml_tag(body, len, "statusCode", code, sizeof code))
        return -1;
    char *end;
    long c = strtol(code, &end, 10);
    if (end == code || *end || c < 0 || c > 1000)
        return -1;
    st->status_code = (int)c;
    xml_tag(body, len, "statusString", st->status_string, sizeof st->status_string);
    xml_tag(body, len, "subStatusCode", st->sub_status, sizeof st->sub_status);
    xml_tag(body, len, "errorMsg", st->error_msg, sizeof st->error_msg);
    return 0;
}
