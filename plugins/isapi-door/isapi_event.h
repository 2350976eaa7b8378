/*
 * isapi_event.h - pure mapping of ISAPI alertStream parts onto the ccgw
 * `door` class, the recent-event-id window, and the ISAPI XML bodies of
 * the door commands (RemoteControlDoor request, ResponseStatus reply).
 * No I/O, no SDK: unit-tested and fuzzed. The (major, minor) code table is
 * documented in docs/plugins/isapi-door.md; keep both in step.
 */
#ifndef CCGW_ISAPI_EVENT_H
#define CCGW_ISAPI_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hikvision major event types (NET_DVR_ACS_ALARM_INFO / AccessControllerEvent.majorEventType) */
#define ISAPI_MAJOR_ALARM 0x1
#define ISAPI_MAJOR_EXCEPTION 0x2
#define ISAPI_MAJOR_OPERATION 0x3
#define ISAPI_MAJOR_EVENT 0x5

typedef enum isapi_kind {
    ISAPI_K_IGNORED = 0, /* not for us (unknown JSON, other event types) */
    ISAPI_K_HEARTBEAT,   /* heartBeat / videoloss / empty part: liveness only */
    ISAPI_K_ACCESS,      /* an AccessControllerEvent (mapped or not) */
    ISAPI_K_INVALID      /* not parseable */
} isapi_kind_t;

typedef struct isapi_event {
    isapi_kind_t kind;
    int major, minor;
    const char *type;        /* door-class event type, or NULL (state change only / unmapped) */
    const char *door;        /* "open" / "closed" / NULL: new state attribute */
    const char *lock;        /* "unlocked" / "locked" / NULL */
    const char *mode;        /* "normal" / "always_open" / "always_closed" / NULL */
    const char *alarm_raise; /* alarm code to raise ("forced", "held_open", "tamper") or NULL */
    const char *alarm_clear; /* alarm code to clear, or NULL ("door" = forced and held_open) */
    const char *method;      /* normalised verify method, or NULL */
    const char *label;       /* short description of the code */
    char person_id[64];      /* employeeNoString (or employeeNo) */
    char name[128];
    char card_no[64];
    char verify_mode[48];    /* currentVerifyMode as sent */
    char date_time[48];
    char event_id[80];       /* "serial:N" or a hash of the event; "" = none */
    long long serial;        /* serialNo, -1 when absent */
    int door_no;             /* doorNo, -1 when absent */
} isapi_event_t;

/* Classifies and maps one multipart part (content type, body of len bytes,
 * may be NULL when len is 0). Returns ev->kind. */
isapi_kind_t isapi_event_from_part(const char *content_type, const char *body, size_t len,
                                   isapi_event_t *ev);

/* Looks up the code table: NULL-fields when (major, minor) is not mapped.
 * Returns true when known. */
bool isapi_event_map(int major, int minor, isapi_event_t *ev);

/* The bounded window of recently published event ids. */
#define ISAPI_SEEN_MAX 4096
typedef struct isapi_seen {
    uint64_t *ids;
    size_t cap, n, head;
} isapi_seen_t;

int isapi_seen_init(isapi_seen_t *w, size_t cap);
void isapi_seen_free(isapi_seen_t *w);
/* True when id was seen already; else remembers it (evicting the oldest)
 * and returns false. An empty id is never a duplicate. */
bool isapi_seen_check(isapi_seen_t *w, const char *id);

/* ISAPI RemoteControlDoor `cmd` for a command: "open", "close",
 * "alwaysOpen", "alwaysClose". Writes the XML body; length or -1. */
int isapi_door_body(const char *cmd, char *out, size_t len);

/* ResponseStatus XML (or the JSON form {"statusCode":..,"subStatusCode":..}). */
typedef struct isapi_status {
    int status_code;          /* 1 = OK; -1 when absent */
    char status_string[64];
    char sub_status[64];
    char error_msg[128];
} isapi_status_t;
/* 0 when a status code was found, -1 otherwise. */
int isapi_parse_status(const char *body, size_t len, isapi_status_t *st);

#endif /* CCGW_ISAPI_EVENT_H */
