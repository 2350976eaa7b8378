/*
 * isapi-sim - a Hikvision ISAPI access-control (face) terminal simulator,
 * for the isapi-door plugin's tests and the demo.
 *
 * Speaks HTTP/1.1 on plain sockets with poll(), single-threaded:
 *   - HTTP Digest authentication (MD5, qop="auth") for every /ISAPI/ URL;
 *   - GET /ISAPI/Event/notification/alertStream: multipart/mixed
 *     (boundary MIME_boundary) server push: AccessControllerEvent JSON parts,
 *     a JPEG-ish picture part after every Nth access event, heartbeats every
 *     --heartbeat-ms (JSON heartBeat, XML videoloss or empty parts); a new
 *     stream first replays the last --replay events (as terminals resend
 *     recent events), same serialNo;
 *   - PUT /ISAPI/AccessControl/RemoteControl/door/N with
 *     <RemoteControlDoor><cmd>open|close|alwaysOpen|alwaysClose</cmd>:
 *     answers ResponseStatus XML and changes the door, emitting the events
 *     a real terminal logs (remote operation, lock open, door open, and the
 *     door closing again after --open-ms);
 *   - test hooks, no auth, from 127.0.0.1 only:
 *       POST /sim/event      body: an AccessControllerEvent object (or a whole
 *                            alert); serialNo assigned when absent
 *       POST /sim/cut        every stream gets half a part, then is closed
 *       POST /sim/stall      streams go silent (no heartbeat, no event)
 *       POST /sim/resume     ... and speak again
 *       POST /sim/image      a picture part now
 *       POST /sim/fail-next  body: subStatusCode; the next door PUT fails
 *                            with statusCode 3 (Device Error)
 *       GET  /sim/state      JSON: doors, streams open/opened, serial
 *
 * Prints "LISTENING http 127.0.0.1:PORT" once listening (--port 0 picks one).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#define MAX_CONNS 128
#define IN_MAX 65536
#define OUT_MAX (8u << 20)
#define MAX_DOORS 8
#define REPLAY_MAX 64
#define BOUNDARY "MIME_boundary"

typedef struct conn {
    int fd;
    bool used;
    bool stream;
    bool close_after;
    bool local;
    char in[IN_MAX];
    size_t in_len;
    char *out;
    size_t out_len, out_off, out_cap;
} conn_t;

typedef struct door {
    bool open, unlocked;
    const char *mode; /* normal, always_open, always_closed */
    uint64_t close_at;
} door_t;

typedef struct sim {
    const char *user, *pass, *realm, *bind;
    int port;
    int heartbeat_ms;
    const char *hb_style;
    int n_doors;
    int open_ms;
    int replay;
    int image_every;
    bool no_length;
    char nonce[33];
    int lfd;
    conn_t conns[MAX_CONNS];
    door_t doors[MAX_DOORS + 1];
    long long serial;
    unsigned access_events;
    char *ring[REPLAY_MAX];
    size_t ring_n, ring_head;
    bool stalled;
    char fail_next[64];
    unsigned streams_opened;
    uint64_t next_hb;
} sim_t;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void md5_hex(const char *s, char out[33])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), d, &n, EVP_md5(), NULL);
    for (unsigned i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
    out[32] = '\0';
}

static void now_iso(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
}

/* ---- output ----------------------------------------------------------------- */

static void conn_close(conn_t *c)
{
    if (!c->used)
        return;
    close(c->fd);
    free(c->out);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static void out_add(conn_t *c, const void *data, size_t len)
{
    if (!c->used)
        return;
    if (c->out_len + len > OUT_MAX) {
        logf_("client too slow: dropping connection");
        conn_close(c);
        return;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        char *p = realloc(c->out, cap);
        if (!p) {
            conn_close(c);
            return;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
}

static void out_fmt(conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(conn_t *c, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        out_add(c, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void respond(conn_t *c, int code, const char *status, const char *ctype, const char *body,
                    const char *extra_hdr)
{
    size_t bl = body ? strlen(body) : 0;
    out_fmt(c,
            "HTTP/1.1 %d %s\r\nServer: isapi-sim\r\nConnection: keep-alive\r\n%s"
            "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
            code, status, extra_hdr ? extra_hdr : "", ctype, bl);
    if (bl)
        out_add(c, body, bl);
}

static void respond_status(conn_t *c, int http, const char *hstatus, const char *url, int code,
                           const char *str, const char *sub)
{
    char body[4096];
    snprintf(body, sizeof body,
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
             "<ResponseStatus version=\"2.0\" xmlns=\"http://www.isapi.org/ver20/XMLSchema\">\n"
             "<requestURL>%s</requestURL>\n<statusCode>%d</statusCode>\n"
             "<statusString>%s</statusString>\n<subStatusCode>%s</subStatusCode>\n"
             "</ResponseStatus>\n",
             url, code, str, sub);
    respond(c, http, hstatus, "application/xml; charset=\"UTF-8\"", body, NULL);
}

/* ---- stream parts ------------------------------------------------------------- */

static void part_json(sim_t *s, conn_t *c, const char *json)
{
    (void)s;
    size_t n = strlen(json);
    if (s->no_length)
        out_fmt(c, "--" BOUNDARY "\r\nContent-Type: application/json; charset=\"UTF-8\"\r\n\r\n");
    else
        out_fmt(c, "--" BOUNDARY "\r\nContent-Type: application/json; charset=\"UTF-8\"\r\n"
                   "Content-Length: %zu\r\n\r\n", n);
    out_add(c, json, n);
    out_add(c, "\r\n", 2);
}

static void part_image(sim_t *s, conn_t *c)
{
    /* a JPEG-looking blob with CR, LF and a boundary-like prefix inside */
    unsigned char img[1500];
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof img; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        img[i] = (unsigned char)x;
        if (img[i] == '\n' || img[i] == '-')
            img[i] = 'x'; /* no accidental boundary */
    }
    static const unsigned char soi[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0};
    memcpy(img, soi, sizeof soi);
    memcpy(img + 200, "\r\n--" BOUNDARY "x\r\n", 4 + sizeof BOUNDARY + 2);
    memcpy(img + 400, "\r\n\r\n{\"eventType\":\"heartBeat\"}\r\n", 32);
    img[sizeof img - 2] = 0xff;
    img[sizeof img - 1] = 0xd9;
    if (s->no_length)
        out_fmt(c, "--" BOUNDARY "\r\nContent-Type: image/jpeg\r\nContent-ID: pictureImage\r\n\r\n");
    else
        out_fmt(c, "--" BOUNDARY "\r\nContent-Type: image/jpeg\r\nContent-Length: %zu\r\n"
                   "Content-ID: pictureImage\r\n\r\n", sizeof img);
    out_add(c, img, sizeof img);
    out_add(c, "\r\n", 2);
}

static void heartbeat(sim_t *s, conn_t *c)
{
    char ts[40];
    now_iso(ts, sizeof ts);
    if (strcmp(s->hb_style, "xml") == 0) {
        char x[1024];
        snprintf(x, sizeof x,
                 "<EventNotificationAlert version=\"2.0\" xmlns=\"http://www.isapi.org/ver20/XMLSchema\">\r\n"
                 "<ipAddress>127.0.0.1</ipAddress>\r\n<portNo>%d</portNo>\r\n<protocol>HTTP</protocol>\r\n"
                 "<channelID>1</channelID>\r\n<dateTime>%s</dateTime>\r\n<activePostCount>0</activePostCount>\r\n"
                 "<eventType>videoloss</eventType>\r\n<eventState>inactive</eventState>\r\n"
                 "<eventDescription>videoloss alarm</eventDescription>\r\n</EventNotificationAlert>\r\n",
                 s->port, ts);
        out_fmt(c, "--" BOUNDARY "\r\nContent-Type: application/xml; charset=\"UTF-8\"\r\n"
                   "Content-Length: %zu\r\n\r\n%s\r\n", strlen(x), x);
    } else if (strcmp(s->hb_style, "empty") == 0) {
        out_fmt(c, "--" BOUNDARY "\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n\r\n");
    } else {
        char j[512];
        snprintf(j, sizeof j,
                 "{\"ipAddress\":\"127.0.0.1\",\"portNo\":%d,\"protocol\":\"HTTP\","
                 "\"macAddress\":\"24:0f:9b:00:00:01\",\"channelID\":1,\"dateTime\":\"%s\","
                 "\"activePostCount\":0,\"eventType\":\"heartBeat\",\"eventState\":\"active\","
                 "\"eventDescription\":\"heartBeat\"}",
                 s->port, ts);
        part_json(s, c, j);
    }
}

static void broadcast_event(sim_t *s, const char *json, bool picture)
{
    /* keep the last --replay events for new streams */
    char *copy = s->replay > 0 ? strdup(json) : NULL;
    if (copy) {
        if (s->ring_n == (size_t)s->replay) {
            free(s->ring[s->ring_head]);
            s->ring[s->ring_head] = NULL;
            s->ring_head = (s->ring_head + 1) % REPLAY_MAX;
            s->ring_n--;
        }
        s->ring[(s->ring_head + s->ring_n) % REPLAY_MAX] = copy;
        s->ring_n++;
    }
    if (s->stalled)
        return;
    for (int i = 0; i < MAX_CONNS; i++) {
        conn_t *c = &s->conns[i];
        if (c->used && c->stream && !c->close_after) {
            part_json(s, c, json);
            if (picture)
                part_image(s, c);
        }
    }
}

/* Wraps an AccessControllerEvent object into a full alert and sends it. */
static long long emit_ace(sim_t *s, json_t *ace, bool allow_picture)
{
    json_t *sn = json_object_get(ace, "serialNo");
    if (json_is_integer(sn)) {
        if (json_integer_value(sn) > s->serial)
            s->serial = json_integer_value(sn);
    } else {
        json_object_set_new(ace, "serialNo", json_integer(++s->serial));
    }
    long long serial = json_integer_value(json_object_get(ace, "serialNo"));
    if (!json_object_get(ace, "deviceName"))
        json_object_set_new(ace, "deviceName", json_string("isapi-sim"));
    char ts[40];
    now_iso(ts, sizeof ts);
    json_t *alert = json_pack("{s:s, s:i, s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:s, s:O}", "ipAddress",
                              "127.0.0.1", "portNo", s->port, "protocol", "HTTP", "macAddress",
                              "24:0f:9b:00:00:01", "channelID", 1, "dateTime", ts,
                              "activePostCount", 1, "eventType", "AccessControllerEvent",
                              "eventState", "active", "eventDescription", "Access Controller Event",
                              "AccessControllerEvent", ace);
    char *text = alert ? json_dumps(alert, JSON_COMPACT) : NULL;
    bool picture = false;
    int major = (int)json_integer_value(json_object_get(ace, "majorEventType"));
    if (allow_picture && major == 5 && json_object_get(ace, "employeeNoString")) {
        s->access_events++;
        picture = s->image_every > 0 && s->access_events % (unsigned)s->image_every == 0;
    }
    if (text) {
        broadcast_event(s, text, picture);
        logf_("event serialNo %lld major %d minor %lld%s", serial, major,
              (long long)json_integer_value(json_object_get(ace, "subEventType")),
              picture ? " (+picture)" : "");
    }
    free(text);
    json_decref(alert);
    return serial;
}

static void emit_code(sim_t *s, int major, int minor, int door)
{
    json_t *ace = json_pack("{s:i, s:i, s:i}", "majorEventType", major, "subEventType", minor,
                            "doorNo", door);
    if (major == 3) {
        json_object_set_new(ace, "netUser", json_string(s->user));
        json_object_set_new(ace, "remoteHostAddr", json_string("127.0.0.1"));
    }
    emit_ace(s, ace, false);
    json_decref(ace);
}

/* ---- digest auth ---------------------------------------------------------------- */

static bool param(const char *h, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);
    const char *p = h;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (strncasecmp(p, key, kl) == 0 && p[kl] == '=') {
            p += kl + 1;
            size_t n;
            if (*p == '"') {
                p++;
                const char *e = strchr(p, '"');
                if (!e)
                    return false;
                n = (size_t)(e - p);
            } else {
                n = strcspn(p, ", \t\r\n");
            }
            if (n >= len)
                return false;
            memcpy(out, p, n);
            out[n] = '\0';
            return true;
        }
        /* skip this param */
        const char *eq = strchr(p, '=');
        if (!eq)
            return false;
        p = eq + 1;
        if (*p == '"') {
            const char *e = strchr(p + 1, '"');
            if (!e)
                return false;
            p = e + 1;
        } else {
            p += strcspn(p, ",");
        }
    }
    return false;
}

static bool auth_ok(sim_t *s, const char *method, const char *uri, const char *auth)
{
    if (!auth || strncasecmp(auth, "Digest ", 7) != 0)
        return false;
    const char *h = auth + 7;
    char user[128], realm[128], nonce[128], duri[1024], resp[64], qop[16], nc[16], cnonce[128];
    if (!param(h, "username", user, sizeof user) || !param(h, "realm", realm, sizeof realm) ||
        !param(h, "nonce", nonce, sizeof nonce) || !param(h, "uri", duri, sizeof duri) ||
        !param(h, "response", resp, sizeof resp))
        return false;
    if (strcmp(user, s->user) != 0 || strcmp(realm, s->realm) != 0 || strcmp(nonce, s->nonce) != 0 ||
        strcmp(duri, uri) != 0)
        return false;
    char a1[512], a2[1200], ha1[33], ha2[33], want[33], buf[1024];
    snprintf(a1, sizeof a1, "%s:%s:%s", user, realm, s->pass);
    snprintf(a2, sizeof a2, "%s:%s", method, duri);
    md5_hex(a1, ha1);
    md5_hex(a2, ha2);
    if (param(h, "qop", qop, sizeof qop)) {
        if (strcmp(qop, "auth") != 0 || !param(h, "nc", nc, sizeof nc) ||
            !param(h, "cnonce", cnonce, sizeof cnonce))
            return false;
        snprintf(buf, sizeof buf, "%s:%s:%s:%s:%s:%s", ha1, nonce, nc, cnonce, qop, ha2);
    } else {
        snprintf(buf, sizeof buf, "%s:%s:%s", ha1, nonce, ha2);
    }
    md5_hex(buf, want);
    return strcasecmp(want, resp) == 0;
}

static void challenge(sim_t *s, conn_t *c, const char *url)
{
    char hdr[512], body[512];
    snprintf(hdr, sizeof hdr,
             "WWW-Authenticate: Digest qop=\"auth\", realm=\"%s\", nonce=\"%s\", stale=\"FALSE\"\r\n",
             s->realm, s->nonce);
    snprintf(body, sizeof body,
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<userCheck>\n<statusValue>401</statusValue>\n"
             "<statusString>Unauthorized</statusString>\n</userCheck>\n");
    (void)url;
    respond(c, 401, "Unauthorized", "application/xml", body, hdr);
}

/* ---- doors ---------------------------------------------------------------------------- */

static void door_close_now(sim_t *s, int n)
{
    door_t *d = &s->doors[n];
    if (d->open) {
        d->open = false;
        emit_code(s, 5, 0x1a, n); /* door close normal */
    }
    if (d->unlocked && strcmp(d->mode, "always_open") != 0) {
        d->unlocked = false;
        emit_code(s, 5, 0x16, n); /* lock close */
    }
    d->close_at = 0;
}

static void door_cmd(sim_t *s, conn_t *c, const char *url, int n, const char *body)
{
    const char *b = strstr(body, "<cmd>");
    const char *e = b ? strstr(b, "</cmd>") : NULL;
    char cmd[32] = "";
    if (b && e && (size_t)(e - b - 5) < sizeof cmd) {
        memcpy(cmd, b + 5, (size_t)(e - b - 5));
        cmd[e - b - 5] = '\0';
    }
    if (n < 1 || n > s->n_doors) {
        respond_status(c, 400, "Bad Request", url, 6, "Invalid XML Content", "badParameters");
        return;
    }
    if (strcmp(cmd, "open") && strcmp(cmd, "close") && strcmp(cmd, "alwaysOpen") &&
        strcmp(cmd, "alwaysClose")) {
        respond_status(c, 400, "Bad Request", url, 6, "Invalid XML Content", "badXmlContent");
        return;
    }
    if (s->fail_next[0]) {
        respond_status(c, 200, "OK", url, 3, "Device Error", s->fail_next);
        logf_("door %d: %s refused (fail-next %s)", n, cmd, s->fail_next);
        s->fail_next[0] = '\0';
        return;
    }
    door_t *d = &s->doors[n];
    respond_status(c, 200, "OK", url, 1, "OK", "ok");
    logf_("door %d: %s", n, cmd);
    if (strcmp(cmd, "open") == 0) {
        emit_code(s, 3, 0x400, n);
        if (!d->unlocked) {
            d->unlocked = true;
            emit_code(s, 5, 0x15, n);
        }
        if (!d->open) {
            d->open = true;
            emit_code(s, 5, 0x19, n);
        }
        d->close_at = mono_ms() + (uint64_t)s->open_ms;
    } else if (strcmp(cmd, "close") == 0) {
        emit_code(s, 3, 0x401, n);
        if (strcmp(d->mode, "always_open") == 0)
            emit_code(s, 5, 0x14, n);
        else if (strcmp(d->mode, "always_closed") == 0)
            emit_code(s, 5, 0x20, n);
        d->mode = "normal";
        door_close_now(s, n);
    } else if (strcmp(cmd, "alwaysOpen") == 0) {
        emit_code(s, 3, 0x402, n);
        d->mode = "always_open";
        emit_code(s, 5, 0x13, n);
        if (!d->unlocked) {
            d->unlocked = true;
            emit_code(s, 5, 0x15, n);
        }
        d->close_at = 0;
    } else {
        emit_code(s, 3, 0x403, n);
        d->mode = "always_closed";
        emit_code(s, 5, 0x1f, n);
        door_close_now(s, n);
    }
}

/* ---- requests ----------------------------------------------------------------------------- */

static void open_stream(sim_t *s, conn_t *c)
{
    out_fmt(c, "HTTP/1.1 200 OK\r\nServer: isapi-sim\r\nMIME-Version: 1.0\r\nConnection: close\r\n"
               "Content-Type: multipart/mixed; boundary=" BOUNDARY "\r\n\r\n");
    c->stream = true;
    s->streams_opened++;
    logf_("stream opened (%u so far), replaying %zu events", s->streams_opened, s->ring_n);
    for (size_t i = 0; i < s->ring_n; i++)
        part_json(s, c, s->ring[(s->ring_head + i) % REPLAY_MAX]);
    heartbeat(s, c);
}

static void sim_hook(sim_t *s, conn_t *c, const char *method, const char *path, const char *body,
                     size_t blen)
{
    char out[2048];
    if (!c->local) {
        respond(c, 403, "Forbidden", "text/plain", "local only\n", NULL);
        return;
    }
    if (strcmp(method, "POST") == 0 && strcmp(path, "/sim/event") == 0) {
        json_error_t err;
        json_t *j = json_loadb(body, blen, 0, &err);
        if (!json_is_object(j)) {
            json_decref(j);
            respond(c, 400, "Bad Request", "text/plain", "body must be a JSON object\n", NULL);
            return;
        }
        json_t *ace = json_object_get(j, "AccessControllerEvent");
        ace = json_is_object(ace) ? json_incref(ace) : json_incref(j);
        long long sn = emit_ace(s, ace, true);
        json_decref(ace);
        json_decref(j);
        snprintf(out, sizeof out, "{\"serialNo\":%lld}\n", sn);
        respond(c, 200, "OK", "application/json", out, NULL);
    } else if (strcmp(method, "POST") == 0 && strcmp(path, "/sim/cut") == 0) {
        int n = 0;
        for (int i = 0; i < MAX_CONNS; i++) {
            conn_t *k = &s->conns[i];
            if (k->used && k->stream && !k->close_after) {
                out_fmt(k, "--" BOUNDARY "\r\nContent-Type: application/json; charset=\"UTF-8\"\r\n"
                           "Content-Length: 400\r\n\r\n{\"ipAddress\":\"127.0.0.1\",\"eventType\":\"Acc");
                k->close_after = true;
                n++;
            }
        }
        logf_("cut %d streams in the middle of a part", n);
        snprintf(out, sizeof out, "{\"cut\":%d}\n", n);
        respond(c, 200, "OK", "application/json", out, NULL);
    } else if (strcmp(method, "POST") == 0 && strcmp(path, "/sim/stall") == 0) {
        s->stalled = true;
        logf_("streams stalled");
        respond(c, 200, "OK", "application/json", "{\"stalled\":true}\n", NULL);
    } else if (strcmp(method, "POST") == 0 && strcmp(path, "/sim/resume") == 0) {
        s->stalled = false;
        logf_("streams resumed");
        respond(c, 200, "OK", "application/json", "{\"stalled\":false}\n", NULL);
    } else if (strcmp(method, "POST") == 0 && strcmp(path, "/sim/image") == 0) {
        for (int i = 0; i < MAX_CONNS; i++)
            if (s->conns[i].used && s->conns[i].stream && !s->conns[i].close_after)
                part_image(s, &s->conns[i]);
        respond(c, 200, "OK", "application/json", "{}\n", NULL);
    } else if (strcmp(method, "POST") == 0 && strcmp(path, "/sim/fail-next") == 0) {
        size_t n = blen < sizeof s->fail_next - 1 ? blen : sizeof s->fail_next - 1;
        memcpy(s->fail_next, body, n);
        s->fail_next[n] = '\0';
        s->fail_next[strcspn(s->fail_next, "\r\n")] = '\0';
        if (!s->fail_next[0])
            snprintf(s->fail_next, sizeof s->fail_next, "deviceError");
        respond(c, 200, "OK", "application/json", "{}\n", NULL);
    } else if (strcmp(method, "GET") == 0 && strcmp(path, "/sim/state") == 0) {
        int streams = 0;
        for (int i = 0; i < MAX_CONNS; i++)
            streams += s->conns[i].used && s->conns[i].stream;
        size_t o = (size_t)snprintf(out, sizeof out,
                                    "{\"streams_open\":%d,\"streams_opened\":%u,\"serial\":%lld,"
                                    "\"stalled\":%s,\"doors\":[",
                                    streams, s->streams_opened, s->serial, s->stalled ? "true" : "false");
        for (int n = 1; n <= s->n_doors && o < sizeof out; n++)
            o += (size_t)snprintf(out + o, sizeof out - o, "%s{\"door\":%d,\"open\":%s,\"unlocked\":%s,\"mode\":\"%s\"}",
                                  n > 1 ? "," : "", n, s->doors[n].open ? "true" : "false",
                                  s->doors[n].unlocked ? "true" : "false", s->doors[n].mode);
        if (o < sizeof out)
            snprintf(out + o, sizeof out - o, "]}\n");
        respond(c, 200, "OK", "application/json", out, NULL);
    } else {
        respond(c, 404, "Not Found", "text/plain", "no such hook\n", NULL);
    }
}

static void handle(sim_t *s, conn_t *c, const char *method, const char *target, const char *auth,
                   const char *body, size_t blen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s", target);
    path[strcspn(path, "?")] = '\0';
    if (strncmp(path, "/sim/", 5) == 0) {
        sim_hook(s, c, method, path, body, blen);
        return;
    }
    if (strncmp(path, "/ISAPI/", 7) != 0) {
        respond(c, 404, "Not Found", "text/plain", "not found\n", NULL);
        return;
    }
    if (!auth_ok(s, method, target, auth)) {
        challenge(s, c, path);
        return;
    }
    int n;
    char tail;
    if (strcmp(method, "GET") == 0 && strcmp(path, "/ISAPI/Event/notification/alertStream") == 0) {
        open_stream(s, c);
    } else if (strcmp(method, "PUT") == 0 &&
               sscanf(path, "/ISAPI/AccessControl/RemoteControl/door/%d%c", &n, &tail) == 1) {
        char *b = strndup(body, blen);
        door_cmd(s, c, path, n, b ? b : "");
        free(b);
    } else {
        respond_status(c, 404, "Not Found", path, 4, "Invalid Operation", "notSupport");
    }
}

/* Parses every complete request in c->in. */
static void process(sim_t *s, conn_t *c)
{
    while (c->used && !c->stream && !c->close_after) {
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!end) {
            if (c->in_len >= IN_MAX) {
                respond(c, 431, "Request Header Fields Too Large", "text/plain", "", NULL);
                c->close_after = true;
            }
            return;
        }
        size_t hlen = (size_t)(end - c->in) + 4;
        *end = '\0';
        char method[16], target[1024];
        if (sscanf(c->in, "%15s %1023s", method, target) != 2) {
            respond(c, 400, "Bad Request", "text/plain", "", NULL);
            c->close_after = true;
            return;
        }
        size_t clen = 0;
        const char *auth = NULL;
        char authbuf[2048] = "";
        for (char *line = strstr(c->in, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
            char *l = line + 2;
            if (strncasecmp(l, "Content-Length:", 15) == 0)
                clen = (size_t)strtoul(l + 15, NULL, 10);
            else if (strncasecmp(l, "Authorization:", 14) == 0) {
                const char *v = l + 14;
                while (*v == ' ')
                    v++;
                size_t n = strcspn(v, "\r\n");
                if (n < sizeof authbuf) {
                    memcpy(authbuf, v, n);
                    authbuf[n] = '\0';
                    auth = authbuf;
                }
            }
        }
        if (clen > IN_MAX - hlen) {
            respond(c, 413, "Payload Too Large", "text/plain", "", NULL);
            c->close_after = true;
            return;
        }
        if (c->in_len < hlen + clen) {
            *end = '\r';
            return;
        }
        handle(s, c, method, target, auth, c->in + hlen, clen);
        if (!c->used)
            return;
        memmove(c->in, c->in + hlen + clen, c->in_len - hlen - clen);
        c->in_len -= hlen + clen;
    }
}

/* ---- main loop ------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: isapi-sim [--port N] [--bind ADDR] [--user U] [--password P]\n"
            "                 [--heartbeat-ms MS] [--heartbeat-style json|xml|empty] [--doors N]\n"
            "                 [--open-ms MS] [--replay N] [--image-every N] [--no-content-length]\n");
}

int main(int argc, char **argv)
{
    static sim_t S;
    sim_t *s = &S;
    s->user = "admin";
    s->pass = "12345";
    s->realm = "DS-K1T341AMF";
    s->bind = "127.0.0.1";
    s->heartbeat_ms = 10000;
    s->hb_style = "json";
    s->n_doors = 1;
    s->open_ms = 3000;
    s->replay = 3;
    s->image_every = 2;
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'}, {"bind", required_argument, NULL, 'b'},
        {"user", required_argument, NULL, 'u'}, {"password", required_argument, NULL, 'P'},
        {"heartbeat-ms", required_argument, NULL, 'H'}, {"heartbeat-style", required_argument, NULL, 'S'},
        {"doors", required_argument, NULL, 'd'}, {"open-ms", required_argument, NULL, 'o'},
        {"replay", required_argument, NULL, 'r'}, {"image-every", required_argument, NULL, 'i'},
        {"no-content-length", no_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "p:b:u:P:H:S:d:o:r:i:nh", opts, NULL)) != -1) {
        switch (o) {
        case 'p': s->port = atoi(optarg); break;
        case 'b': s->bind = optarg; break;
        case 'u': s->user = optarg; break;
        case 'P': s->pass = optarg; break;
        case 'H': s->heartbeat_ms = atoi(optarg); break;
        case 'S': s->hb_style = optarg; break;
        case 'd': s->n_doors = atoi(optarg); break;
        case 'o': s->open_ms = atoi(optarg); break;
        case 'r': s->replay = atoi(optarg); break;
        case 'i': s->image_every = atoi(optarg); break;
        case 'n': s->no_length = true; break;
        default: usage(); return o == 'h' ? 0 : 2;
        }
    }
    if (s->n_doors < 1 || s->n_doors > MAX_DOORS || s->heartbeat_ms < 50 || s->replay < 0 ||
        s->replay > REPLAY_MAX || s->port < 0 || s->port > 65535 ||
        (strcmp(s->hb_style, "json") && strcmp(s->hb_style, "xml") && strcmp(s->hb_style, "empty"))) {
        usage();
        return 2;
    }
    for (int i = 1; i <= s->n_doors; i++)
        s->doors[i].mode = "normal";
    char seed[64], nonce[33];
    snprintf(seed, sizeof seed, "%ld:%d", (long)time(NULL), (int)getpid());
    md5_hex(seed, nonce);
    memcpy(s->nonce, nonce, sizeof s->nonce);

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port)};
    if (inet_pton(AF_INET, s->bind, &a.sin_addr) != 1 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s->lfd, 64) != 0) {
        fprintf(stderr, "isapi-sim: cannot listen on %s:%d: %s\n", s->bind, s->port, strerror(errno));
        return 1;
    }
    socklen_t al = sizeof a;
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    for (int i = 0; i < MAX_CONNS; i++)
        s->conns[i].fd = -1;
    logf_("LISTENING http %s:%d", s->bind, s->port);
    s->next_hb = mono_ms() + (uint64_t)s->heartbeat_ms;

    while (!g_stop) {
        struct pollfd pf[MAX_CONNS + 1];
        int idx[MAX_CONNS + 1];
        int n = 0;
        pf[n] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
        idx[n++] = -1;
        for (int i = 0; i < MAX_CONNS; i++) {
            conn_t *c = &s->conns[i];
            if (!c->used)
                continue;
            short ev = POLLIN;
            if (c->out_len > c->out_off)
                ev |= POLLOUT;
            pf[n] = (struct pollfd){.fd = c->fd, .events = ev};
            idx[n++] = i;
        }
        uint64_t now = mono_ms();
        uint64_t next = s->next_hb;
        for (int d = 1; d <= s->n_doors; d++)
            if (s->doors[d].close_at && s->doors[d].close_at < next)
                next = s->doors[d].close_at;
        int timeout = next > now ? (int)(next - now) : 0;
        if (poll(pf, (nfds_t)n, timeout) < 0 && errno != EINTR)
            break;
        now = mono_ms();
        for (int k = 0; k < n; k++) {
            if (!pf[k].revents)
                continue;
            if (idx[k] < 0) {
                struct sockaddr_in peer;
                socklen_t pl = sizeof peer;
                int fd = accept4(s->lfd, (struct sockaddr *)&peer, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    continue;
                int slot = -1;
                for (int i = 0; i < MAX_CONNS && slot < 0; i++)
                    if (!s->conns[i].used)
                        slot = i;
                if (slot < 0) {
                    close(fd);
                    continue;
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                conn_t *c = &s->conns[slot];
                memset(c, 0, sizeof *c);
                c->fd = fd;
                c->used = true;
                c->local = peer.sin_addr.s_addr == htonl(INADDR_LOOPBACK);
                continue;
            }
            conn_t *c = &s->conns[idx[k]];
            if (!c->used)
                continue;
            if (pf[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = read(c->fd, c->in + c->in_len, IN_MAX - c->in_len);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    if (c->stream)
                        logf_("stream closed by the client");
                    conn_close(c);
                    continue;
                }
                if (r > 0) {
                    if (c->stream)
                        c->in_len = 0; /* ignore anything a stream client sends */
                    else
                        c->in_len += (size_t)r;
                    process(s, c);
                }
            }
            if (c->used && (pf[k].revents & POLLOUT) && c->out_len > c->out_off) {
                ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (w > 0) {
                    c->out_off += (size_t)w;
                    if (c->out_off == c->out_len)
                        c->out_off = c->out_len = 0;
                } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                    conn_close(c);
                    continue;
                }
            }
            if (c->used && c->close_after && c->out_len == c->out_off) {
                if (c->stream)
                    logf_("stream cut");
                conn_close(c);
            }
        }
        /* timers */
        for (int d = 1; d <= s->n_doors; d++)
            if (s->doors[d].close_at && now >= s->doors[d].close_at)
                door_close_now(s, d);
        if (now >= s->next_hb) {
            s->next_hb = now + (uint64_t)s->heartbeat_ms;
            if (!s->stalled)
                for (int i = 0; i < MAX_CONNS; i++)
                    if (s->conns[i].used && s->conns[i].stream && !s->conns[i].close_after)
                        heartbeat(s, &s->conns[i]);
        }
        /* try to flush what the timers produced without waiting a turn */
        for (int i = 0; i < MAX_CONNS; i++) {
            conn_t *c = &s->conns[i];
            if (c->used && c->out_len > c->out_off) {
                ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (w > 0) {
                    c->out_off += (size_t)w;
                    if (c->out_off == c->out_len)
                        c->out_off = c->out_len = 0;
                }
            }
            if (c->used && c->close_after && c->out_len == c->out_off) {
                if (c->stream)
                    logf_("stream cut");
                conn_close(c);
            }
        }
    }
    for (int i = 0; i < MAX_CONNS; i++)
        conn_close(&s->conns[i]);
    for (size_t i = 0; i < REPLAY_MAX; i++)
        free(s->ring[i]);
    close(s->lfd);
    logf_("stopped");
    return 0;
}
