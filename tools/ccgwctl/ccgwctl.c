/*
 * ccgwctl - the operators' command-line client of ccgw's HTTP and WebSocket
 * API (contract: WS_PROTOCOL v1, docs/ccgwctl.md):
 *   status   GET /healthz + /api/v1/instances
 *   devices  GET /api/v1/devices[?class=] or /api/v1/devices/{class}/{device}
 *   alarms   GET /api/v1/alarms, sorted by severity
 *   tail     WebSocket /ws: sub, prints every message (snapshot, then live)
 *   send     POST /api/v1/commands
 *   ack      POST /api/v1/alarms/{class}/{device}/{code}/ack
 *
 * HTTP goes through libcurl (one easy handle per request), JSON through
 * jansson, `tail` through a libwebsockets 4.1 client context.
 *
 * Threads: one. Everything runs on the main thread; SIGINT/SIGTERM during
 * `tail` only set a flag that the service loop checks (a 200 ms timer wakes
 * it). Every buffer is bounded: HTTP bodies and WebSocket messages above
 * CTL_MAX_BODY are refused (counted and reported).
 *
 * Exit codes (scripts rely on them, documented in docs/ccgwctl.md):
 *   0 ok; 1 the gateway answered with a failure (ok:false, 4xx other than
 *   below, 5xx); 2 usage error; 3 cannot connect, connection lost or
 *   timeout; 4 unauthorized or forbidden (401/403); 5 not found (404).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libwebsockets.h>

#ifndef CCGW_VERSION
#define CCGW_VERSION "0"
#endif

enum {
    EX_OK = 0,
    EX_FAIL = 1,
    EX_USAGE = 2,
    EX_CONN = 3,
    EX_AUTH = 4,
    EX_NOTFOUND = 5,
};

#define CTL_MAX_BODY (16u * 1024u * 1024u) /* HTTP response / WebSocket message limit */
#define CTL_MAX_TOKEN 4096
#define CTL_MAX_FILTERS 64 /* the server's limit of subscriptions per client */
#define CTL_DEFAULT_URL "http://127.0.0.1:8080"
#define CTL_DEFAULT_TIMEOUT_S 30 /* above the gateway's default command_timeout_ms (10 s) */

/* ========================================================================== */
/* options                                                                     */
/* ========================================================================== */

typedef struct ctl_opts {
    char url[2048];   /* base URL without a trailing '/' */
    char *token;      /* owned, NULL = none */
    bool json;
    long timeout_s;
    const char *cacert;
    bool insecure;
    int verbose;
    /* raw values, resolved after every option is parsed */
    const char *opt_url, *opt_token, *opt_token_file;
} ctl_opts_t;

static const char *g_cmd = NULL; /* for messages: "ccgwctl send: ..." */
static bool g_quiet = false;     /* no messages (the fuzzer) */
static bool g_no_token = false;  /* no token given anywhere: say how on 401 */

__attribute__((format(printf, 1, 2))) static void err(const char *fmt, ...)
{
    va_list ap;
    if (g_quiet)
        return;
    fprintf(stderr, "ccgwctl%s%s: ", g_cmd ? " " : "", g_cmd ? g_cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- help texts -------------------------------------------------------------- */

static const char usage_main[] =
    "usage: ccgwctl [GLOBAL OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "The command-line client of the ccgw gateway's HTTP/WebSocket API.\n"
    "\n"
    "commands:\n"
    "  status                         gateway health, MQTT, every plugin instance\n"
    "  devices [--class C] [C/D]      devices with their state (or one device in detail)\n"
    "  alarms [--class C]             active alarms, most severe first\n"
    "  tail FILTER...                 live messages (WebSocket), topic and payload per line\n"
    "  send TARGET [key=value...]     send a command, print the reply\n"
    "  ack ALARM [--note TEXT]        acknowledge an active alarm\n"
    "  help [COMMAND]                 this text, or a command's\n"
    "\n"
    "global options (before or after the command):\n"
    "  --url URL          gateway base URL (env CCGW_URL, default " CTL_DEFAULT_URL ")\n"
    "  --token T          bearer token (env CCGW_TOKEN); prefer --token-file or the env:\n"
    "                     a token on the command line shows in `ps`\n"
    "  --token-file F     read the token from the first line of F (env CCGW_TOKEN_FILE)\n"
    "  --json             machine-readable output: one JSON document per line\n"
    "  --timeout S        seconds for a request, or for `tail` to connect (default 30)\n"
    "  --cacert FILE      CA certificate(s) for an https gateway\n"
    "  --insecure         https without checking the certificate (test rigs only)\n"
    "  -v, --verbose      more on stderr\n"
    "  -h, --help         help (of the command when after it)\n"
    "  --version          print the version\n"
    "\n"
    "exit codes: 0 ok; 1 the gateway answered with a failure (ok:false, 4xx, 5xx);\n"
    "2 usage error; 3 cannot connect, connection lost or timeout; 4 unauthorized or\n"
    "forbidden (401/403); 5 not found (404). Errors go to stderr with the server's\n"
    "error code and message. See docs/ccgwctl.md.\n";

static const char usage_status[] =
    "usage: ccgwctl status\n"
    "\n"
    "Gateway health (GET /healthz: status, boot, uptime, MQTT, instance counts)\n"
    "and every plugin instance (GET /api/v1/instances: state, health, devices,\n"
    "reason). Exit 0 when the gateway is healthy, 1 when /healthz says unhealthy\n"
    "(the reasons are printed), 3 when it cannot be reached, 4 without a valid token.\n"
    "--json prints {\"health\":{...},\"instances\":[...]}.\n";

static const char usage_devices[] =
    "usage: ccgwctl devices [--class C]\n"
    "       ccgwctl devices CLASS/DEVICE\n"
    "\n"
    "A table of devices (GET /api/v1/devices): class, device, online, when its\n"
    "state last changed, and its state values. --class C lists one class only.\n"
    "With CLASS/DEVICE: that device's state, one value a line, and its active\n"
    "alarms (GET /api/v1/devices/{class}/{device}; exit 5 when unknown).\n"
    "--json prints the server's answer.\n";

static const char usage_alarms[] =
    "usage: ccgwctl alarms [--class C]\n"
    "\n"
    "Active alarms (GET /api/v1/alarms), most severe first (critical, major,\n"
    "minor, warning, info), then oldest first: severity, state (raised or\n"
    "acknowledged), source (class/device or gateway/ID), code, age, message and\n"
    "who acknowledged. --class C shows one class only. --json prints the\n"
    "server's answer (unsorted, unfiltered unless --class).\n";

static const char usage_tail[] =
    "usage: ccgwctl tail [--count N] [--no-snapshot] [--reconnect] FILTER...\n"
    "\n"
    "Subscribes to each MQTT-style topic FILTER (ccgw/v1/+/ups/#, ...; up to 64)\n"
    "on the gateway's WebSocket (/ws) and prints every message as it comes:\n"
    "first the retained snapshot (state, active alarms, gateway and instance\n"
    "status), then live messages. One line per message: `TOPIC PAYLOAD` (payload\n"
    "null = alarm cleared), or with --json the message object\n"
    "{\"op\":\"msg\",\"topic\":...,\"retained\":...,\"payload\":...}.\n"
    "\n"
    "  --count N       exit 0 after N messages\n"
    "  --no-snapshot   do not print retained (snapshot) messages\n"
    "  --reconnect     when the connection drops, reconnect (backoff 0.5..10 s)\n"
    "                  and subscribe again, instead of exiting 3\n"
    "\n"
    "Exit 0 on SIGINT/SIGTERM or after --count messages; 3 when it cannot\n"
    "connect within --timeout or the connection drops; 4 for a refused token;\n"
    "1 when the gateway refuses a filter.\n";

static const char usage_send[] =
    "usage: ccgwctl send TARGET [key=value | key:=JSON ...] [--args JSON]\n"
    "\n"
    "Sends a command (POST /api/v1/commands) and prints the device's reply.\n"
    "TARGET is a command topic (ccgw/v1/hq/ups/u1/cmd/ups.test_battery) or\n"
    "CLASS/DEVICE/COMMAND (ups/u1/ups.test_battery).\n"
    "\n"
    "Arguments: key=value is a number, true, false or null when the value is\n"
    "exactly that in JSON, else a string (key=23.5 -> 23.5, key=on -> \"on\",\n"
    "key=007 -> \"007\"); key:=JSON takes any raw JSON (key:='\"5\"' is the\n"
    "string \"5\", key:='[1,2]' an array); --args JSON gives the whole object\n"
    "(key=value pairs are added to it).\n"
    "\n"
    "Exit 0 when the reply says ok:true; 1 for ok:false (bad_arguments,\n"
    "device_error, timeout, busy), 4 when the token may not send it (forbidden),\n"
    "5 for an unknown device or command. --json prints the reply object.\n"
    "\n"
    "example: ccgwctl send hvac/room1-ac1/hvac.set_setpoint value=23.5\n";

static const char usage_ack[] =
    "usage: ccgwctl ack ALARM [--note TEXT]\n"
    "\n"
    "Acknowledges an active alarm (POST /api/v1/alarms/{class}/{device}/{code}/ack)\n"
    "as the token's name. ALARM is the alarm's topic\n"
    "(ccgw/v1/hq/env/room1-th1/alarm/water_leak) or CLASS/DEVICE/CODE\n"
    "(env/room1-th1/water_leak). --note TEXT is kept with the acknowledgement.\n"
    "Exit 0 when acknowledged; 1 when the gateway refuses (already acknowledged:\n"
    "409, not active), 4 forbidden (viewer token), 5 unknown device or alarm.\n"
    "\n"
    "example: ccgwctl ack env/room1-th1/water_leak --note \"mopped, pipe fixed\"\n";

typedef int (*cmd_fn)(ctl_opts_t *o, int argc, char **argv);

/* ---- generic option parsing ------------------------------------------------------- */

typedef struct optdef {
    const char *name; /* "--count" */
    char shortc;      /* 'v' or 0 */
    bool has_arg;
    int id;
} optdef_t;

enum {
    O_URL = 1,
    O_TOKEN,
    O_TOKEN_FILE,
    O_JSON,
    O_TIMEOUT,
    O_CACERT,
    O_INSECURE,
    O_VERBOSE,
    O_HELP,
    O_VERSION,
    /* command options */
    O_CLASS = 100,
    O_COUNT,
    O_NO_SNAPSHOT,
    O_RECONNECT,
    O_NOTE,
    O_ARGS,
};

static const optdef_t g_global_opts[] = {
    {"--url", 0, true, O_URL},
    {"--token", 0, true, O_TOKEN},
    {"--token-file", 0, true, O_TOKEN_FILE},
    {"--json", 0, false, O_JSON},
    {"--timeout", 0, true, O_TIMEOUT},
    {"--cacert", 0, true, O_CACERT},
    {"--insecure", 'k', false, O_INSECURE},
    {"--verbose", 'v', false, O_VERBOSE},
    {"--help", 'h', false, O_HELP},
    {"--version", 0, false, O_VERSION},
    {NULL, 0, false, 0},
};

typedef struct argscan {
    int argc;
    char **argv;
    int i;
    bool no_more_opts;
    const optdef_t *cmd_opts; /* may be NULL */
    bool stop_at_positional;  /* the main scan stops at the command name */
} argscan_t;

static const optdef_t *find_opt(const optdef_t *defs, const char *arg, size_t namelen)
{
    for (const optdef_t *d = defs; d && d->name; d++)
        if (strlen(d->name) == namelen && strncmp(d->name, arg, namelen) == 0)
            return d;
    return NULL;
}

static const optdef_t *find_short(const optdef_t *defs, char c)
{
    for (const optdef_t *d = defs; d && d->name; d++)
        if (d->shortc && d->shortc == c)
            return d;
    return NULL;
}

/* Next item. Returns: an option id (>0) with *val set for options taking a
 * value; 0 with *val = the positional argument; -1 at the end; -2 on a usage
 * error (already reported). */
static int scan_next(argscan_t *s, const char **val)
{
    *val = NULL;
    if (s->i >= s->argc)
        return -1;
    char *a = s->argv[s->i];
    if (s->no_more_opts || a[0] != '-' || a[1] == '\0') {
        if (s->stop_at_positional)
            return -1;
        s->i++;
        *val = a;
        return 0;
    }
    if (strcmp(a, "--") == 0) {
        s->no_more_opts = true;
        s->i++;
        return scan_next(s, val);
    }
    const optdef_t *d = NULL;
    const char *inline_val = NULL;
    if (a[1] == '-') {
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        d = find_opt(s->cmd_opts, a, n);
        if (!d)
            d = find_opt(g_global_opts, a, n);
        if (eq)
            inline_val = eq + 1;
    } else if (a[2] == '\0') {
        d = find_short(s->cmd_opts, a[1]);
        if (!d)
            d = find_short(g_global_opts, a[1]);
    }
    if (!d) {
        /* a negative number is a positional value (send key=-1 never gets here, but "-5" might) */
        if (isdigit((unsigned char)a[1]) && !s->stop_at_positional) {
            s->i++;
            *val = a;
            return 0;
        }
        err("unknown option '%s' (try --help)", a);
        return -2;
    }
    s->i++;
    if (d->has_arg) {
        if (inline_val) {
            *val = inline_val;
        } else if (s->i < s->argc) {
            *val = s->argv[s->i++];
        } else {
            err("option %s needs a value", d->name);
            return -2;
        }
    } else if (inline_val) {
        err("option %s takes no value", d->name);
        return -2;
    }
    return d->id;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Applies a global option. Returns 1 when it was one, 0 when not, or an exit
 * code + 10 for --help/--version handled (caller returns code - 10). */
static int apply_global(ctl_opts_t *o, int id, const char *val)
{
    switch (id) {
    case O_URL:
        o->opt_url = val;
        return 1;
    case O_TOKEN:
        o->opt_token = val;
        return 1;
    case O_TOKEN_FILE:
        o->opt_token_file = val;
        return 1;
    case O_JSON:
        o->json = true;
        return 1;
    case O_TIMEOUT:
        if (parse_long(val, 1, 86400, &o->timeout_s) != 0) {
            err("--timeout wants whole seconds 1..86400, not '%s'", val);
            return 10 + EX_USAGE;
        }
        return 1;
    case O_CACERT:
        o->cacert = val;
        return 1;
    case O_INSECURE:
        o->insecure = true;
        return 1;
    case O_VERBOSE:
        o->verbose++;
        return 1;
    default:
        return 0;
    }
}

static char *read_token_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        err("cannot read token file %s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[CTL_MAX_TOKEN + 2];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *nl = strpbrk(buf, "\r\n");
    if (nl)
        *nl = '\0';
    else if (n > CTL_MAX_TOKEN) {
        err("token file %s: first line longer than %d bytes", path, CTL_MAX_TOKEN);
        return NULL;
    }
    char *s = buf;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        s[--len] = '\0';
    if (!len) {
        err("token file %s: empty first line", path);
        return NULL;
    }
    return strdup(s);
}

/* After every option: URL and token from options, then the environment. */
static int finish_opts(ctl_opts_t *o)
{
    const char *url = o->opt_url ? o->opt_url : getenv("CCGW_URL");
    if (!url || !*url)
        url = CTL_DEFAULT_URL;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        err("URL '%s' must start with http:// or https://", url);
        return EX_USAGE;
    }
    size_t n = strlen(url);
    if (n >= sizeof o->url) {
        err("URL longer than %zu bytes", sizeof o->url - 1);
        return EX_USAGE;
    }
    memcpy(o->url, url, n + 1);
    while (n > 0 && o->url[n - 1] == '/')
        o->url[--n] = '\0';
    if (strchr(o->url, '?') || strchr(o->url, '#')) {
        err("URL '%s': no query or fragment, just scheme://host[:port][/prefix]", url);
        return EX_USAGE;
    }

    const char *file = o->opt_token_file;
    if (o->opt_token) {
        o->token = strdup(o->opt_token);
    } else if (file) {
        o->token = read_token_file(file);
        if (!o->token)
            return EX_USAGE;
    } else if (getenv("CCGW_TOKEN") && *getenv("CCGW_TOKEN")) {
        o->token = strdup(getenv("CCGW_TOKEN"));
    } else if (getenv("CCGW_TOKEN_FILE") && *getenv("CCGW_TOKEN_FILE")) {
        o->token = read_token_file(getenv("CCGW_TOKEN_FILE"));
        if (!o->token)
            return EX_USAGE;
    }
    g_no_token = !o->token;
    if (o->token) {
        size_t tl = strlen(o->token);
        if (tl == 0 || tl > CTL_MAX_TOKEN) {
            err("the token must be 1..%d bytes", CTL_MAX_TOKEN);
            return EX_USAGE;
        }
        for (const char *p = o->token; *p; p++)
            if ((unsigned char)*p < 0x21 || (unsigned char)*p == 0x7f) {
                err("the token contains a space or control character");
                return EX_USAGE;
            }
    }
    if (o->cacert && access(o->cacert, R_OK) != 0) {
        err("cannot read --cacert %s: %s", o->cacert, strerror(errno));
        return EX_USAGE;
    }
    return EX_OK;
}

/* Parses a command's arguments: command options through on_opt, globals into
 * o, positionals collected into pos (up to maxpos). Returns -1 to go on, or
 * an exit code (help printed: 0; usage error: 2). */
typedef int (*on_opt_fn)(void *ud, int id, const char *val);

static int parse_cmd_args(ctl_opts_t *o, int argc, char **argv, const optdef_t *defs, on_opt_fn on_opt,
                          void *ud, const char *help, const char **pos, int maxpos, int *npos)
{
    argscan_t s = {.argc = argc, .argv = argv, .i = 1, .cmd_opts = defs};
    *npos = 0;
    for (;;) {
        const char *val;
        int id = scan_next(&s, &val);
        if (id == -1)
            break;
        if (id == -2)
            return EX_USAGE;
        if (id == 0) {
            if (*npos >= maxpos) {
                err("unexpected argument '%s' (try --help)", val);
                return EX_USAGE;
            }
            pos[(*npos)++] = val;
            continue;
        }
        if (id == O_HELP) {
            fputs(help, stdout);
            return EX_OK;
        }
        if (id == O_VERSION) {
            printf("ccgwctl %s\n", CCGW_VERSION);
            return EX_OK;
        }
        int g = apply_global(o, id, val);
        if (g >= 10)
            return g - 10;
        if (g == 1)
            continue;
        int rc = on_opt ? on_opt(ud, id, val) : EX_USAGE;
        if (rc >= 0)
            return rc;
    }
    int rc = finish_opts(o);
    return rc == EX_OK ? -1 : rc;
}

/* ========================================================================== */
/* JSON output                                                                 */
/* ========================================================================== */

/* A real as the shortest decimal that reads back the same (24.1, not
 * 24.100000000000001). */
static void fmt_real(double d, char *buf, size_t len)
{
    if (!isfinite(d)) {
        snprintf(buf, len, "null");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* keep it a JSON real: "24" would read back as an integer */
    if (!strpbrk(buf, ".eEn") && strlen(buf) + 2 < len)
        strcat(buf, ".0");
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf_t;

static void sb_putn(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf_t *b, const char *s) { sb_putn(b, s, strlen(s)); }

static void sb_json_string(sbuf_t *b, const char *s)
{
    json_t *j = json_string(s);
    char *e = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    sb_puts(b, e ? e : "\"\"");
    free(e);
    json_decref(j);
}

/* Compact JSON with shortest reals, key order preserved. */
static void sb_json(sbuf_t *b, const json_t *j)
{
    char num[64];
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        bool first = true;
        sb_putn(b, "{", 1);
        json_object_foreach((json_t *)j, k, v) {
            if (!first)
                sb_putn(b, ",", 1);
            first = false;
            sb_json_string(b, k);
            sb_putn(b, ":", 1);
            sb_json(b, v);
        }
        sb_putn(b, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        sb_putn(b, "[", 1);
        json_array_foreach(j, i, v) {
            if (i)
                sb_putn(b, ",", 1);
            sb_json(b, v);
        }
        sb_putn(b, "]", 1);
        break;
    }
    case JSON_STRING:
        sb_json_string(b, json_string_value(j));
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        sb_puts(b, num);
        break;
    case JSON_REAL:
        fmt_real(json_real_value(j), num, sizeof num);
        sb_puts(b, num);
        break;
    case JSON_TRUE:
        sb_puts(b, "true");
        break;
    case JSON_FALSE:
        sb_puts(b, "false");
        break;
    default:
        sb_puts(b, "null");
        break;
    }
}

/* One JSON document and a newline on stdout. */
static void print_json_line(const json_t *j)
{
    sbuf_t b = {0};
    sb_json(&b, j);
    if (b.oom) {
        err("out of memory");
    } else {
        fputs(b.p, stdout);
        fputc('\n', stdout);
    }
    free(b.p);
}

/* A value for tables: strings bare (quoted when they hold spaces or are
 * empty), everything else as JSON. */
static void sb_value(sbuf_t *b, const json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (*s && !strpbrk(s, " \t\n\"=")) {
            sb_puts(b, s);
            return;
        }
    }
    sb_json(b, v);
}

static const char *jstr(const json_t *obj, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : def;
}

/* ========================================================================== */
/* tables and times                                                            */
/* ========================================================================== */

#define TBL_MAX_COLS 8

typedef struct table {
    int ncols;
    char ***rows; /* rows[r][c], malloc'ed strings */
    size_t nrows, cap;
} table_t;

static void tbl_add(table_t *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char ***nr = realloc(t->rows, cap * sizeof *nr);
        if (!nr)
            return;
        t->rows = nr;
        t->cap = cap;
    }
    char **row = calloc((size_t)t->ncols, sizeof *row);
    if (!row)
        return;
    for (int c = 0; c < t->ncols; c++)
        row[c] = strdup(cells[c] ? cells[c] : "");
    t->rows[t->nrows++] = row;
}

/* Columns padded to their widest cell (in characters of UTF-8), the last one free. */
static size_t u8len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

static void tbl_print(table_t *t)
{
    size_t w[TBL_MAX_COLS] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++) {
            size_t l = u8len(t->rows[r][c] ? t->rows[r][c] : "");
            if (l > w[c])
                w[c] = l;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            const char *cell = t->rows[r][c] ? t->rows[r][c] : "";
            fputs(cell, stdout);
            if (c < t->ncols - 1)
                for (size_t k = u8len(cell); k < w[c] + 2; k++)
                    fputc(' ', stdout);
        }
        fputc('\n', stdout);
    }
}

static void tbl_free(table_t *t)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++)
            free(t->rows[r][c]);
        free(t->rows[r]);
    }
    free(t->rows);
}

/* "2026-11-23T09:47:05.123Z" -> epoch seconds (UTC); -1 when not that shape. */
static double parse_ts(const char *s)
{
    if (!s)
        return -1;
    struct tm tm = {0};
    int Y, M, D, h, m;
    double sec;
    char z = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%lf%c", &Y, &M, &D, &h, &m, &sec, &z) < 6)
        return -1;
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = 0;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    return (double)t + sec;
}

static void fmt_duration(double s, char *buf, size_t len)
{
    if (!(s > 0)) /* also NaN */
        s = 0;
    if (s > 1e12) /* ~31700 years: keeps the cast defined */
        s = 1e12;
    long v = (long)s;
    if (v < 60)
        snprintf(buf, len, "%lds", v);
    else if (v < 3600)
        snprintf(buf, len, "%ldm%02lds", v / 60, v % 60);
    else if (v < 86400)
        snprintf(buf, len, "%ldh%02ldm", v / 3600, (v % 3600) / 60);
    else
        snprintf(buf, len, "%ldd%02ldh", v / 86400, (v % 86400) / 3600);
}

/* "12s ago" from an RFC 3339 timestamp, or the text itself when unparsable. */
static void fmt_age(const char *ts, char *buf, size_t len)
{
    double t = parse_ts(ts);
    if (t < 0) {
        snprintf(buf, len, "%s", ts ? ts : "-");
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char d[32];
    fmt_duration((double)now.tv_sec + now.tv_nsec / 1e9 - t, d, sizeof d);
    snprintf(buf, len, "%s ago", d);
}

/* ========================================================================== */
/* HTTP                                                                        */
/* ========================================================================== */

typedef struct http_resp {
    long status;
    char *body;
    size_t len;
    bool too_large;
    json_t *json; /* parsed body, NULL when not JSON */
} http_resp_t;

static void http_resp_free(http_resp_t *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

static size_t http_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    http_resp_t *r = ud;
    size_t n = size * nmemb;
    if (r->len + n > CTL_MAX_BODY) {
        r->too_large = true;
        return 0; /* aborts the transfer */
    }
    char *nb = realloc(r->body, r->len + n + 1);
    if (!nb)
        return 0;
    r->body = nb;
    memcpy(r->body + r->len, ptr, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/* A path segment, percent-encoded (class, device, code come from the user). */
static char *url_seg(const char *s)
{
    return curl_easy_escape(NULL, s, 0);
}

/* One request. Returns EX_OK when the gateway answered (any status, in
 * r->status), EX_CONN when it could not be reached in time, EX_USAGE for a
 * bad URL, EX_FAIL for an oversized or broken answer. */
static int http_do(const ctl_opts_t *o, const char *method, const char *path, const json_t *body,
                   http_resp_t *r)
{
    memset(r, 0, sizeof *r);
    char url[4096];
    if ((size_t)snprintf(url, sizeof url, "%s%s", o->url, path) >= sizeof url) {
        err("URL too long");
        return EX_USAGE;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        err("cannot initialise libcurl");
        return EX_FAIL;
    }
    struct curl_slist *hdrs = NULL;
    char authz[CTL_MAX_TOKEN + 32];
    sbuf_t b = {0};
    char errbuf[CURL_ERROR_SIZE] = "";

    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (o->token) {
        snprintf(authz, sizeof authz, "Authorization: Bearer %s", o->token);
        hdrs = curl_slist_append(hdrs, authz);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, o->timeout_s);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, o->timeout_s < 10 ? o->timeout_s : 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ccgwctl/" CCGW_VERSION);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    if (o->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->cacert);
    if (o->insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (o->verbose > 1)
        curl_easy_setopt(c, CURLOPT_VERBOSE, 1L);
    if (strcmp(method, "POST") == 0) {
        if (body)
            sb_json(&b, body);
        else
            sb_puts(&b, "{}");
        if (b.oom) {
            err("out of memory");
            curl_slist_free_all(hdrs);
            curl_easy_cleanup(c);
            return EX_FAIL;
        }
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, b.p);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)b.len);
        if (o->verbose)
            fprintf(stderr, "> POST %s %s\n", url, b.p);
    } else if (o->verbose) {
        fprintf(stderr, "> %s %s\n", method, url);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

    CURLcode cc = curl_easy_perform(c);
    int rc = EX_OK;
    if (cc != CURLE_OK) {
        if (r->too_large) {
            err("%s %s: the answer is larger than %u bytes", method, path, CTL_MAX_BODY);
            rc = EX_FAIL;
        } else if (cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL) {
            err("bad URL %s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
            rc = EX_USAGE;
        } else {
            err("cannot reach the gateway at %s: %s", o->url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
            rc = EX_CONN;
        }
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        if (r->body) {
            json_error_t je;
            r->json = json_loadb(r->body, r->len, JSON_DECODE_ANY, &je);
        }
        if (o->verbose)
            fprintf(stderr, "< %ld %s\n", r->status, r->body ? r->body : "");
    }
    free(b.p);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc;
}

static int status_exit(long status)
{
    if (status >= 200 && status < 300)
        return EX_OK;
    if (status == 401 || status == 403)
        return EX_AUTH;
    if (status == 404)
        return EX_NOTFOUND;
    return EX_FAIL;
}

/* The error of an answer: {"error":{"code","message"}} (also inside a
 * command reply {"ok":false,"error":{...}}). */
static void report_error(const char *what, const http_resp_t *r)
{
    json_t *e = json_object_get(r->json, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (!code && json_is_string(e))
        code = json_string_value(e);
    if (code) {
        err("%s: %s: %s (HTTP %ld)", what, code, msg ? msg : "", r->status);
    } else {
        /* anything else: the start of the body */
        char snippet[201] = "";
        if (r->body) {
            size_t n = r->len < 200 ? r->len : 200;
            memcpy(snippet, r->body, n);
            snippet[n] = '\0';
            for (char *p = snippet; *p; p++)
                if (*p == '\n' || *p == '\r')
                    *p = ' ';
        }
        err("%s: HTTP %ld%s%s", what, r->status, snippet[0] ? ": " : "", snippet);
    }
    if (r->status == 401 && g_no_token)
        err("no token given: use --token-file FILE, CCGW_TOKEN_FILE or CCGW_TOKEN");
}

/* A GET whose answer must be a JSON object; prints errors; returns the exit code. */
static int get_json(const ctl_opts_t *o, const char *path, const char *what, http_resp_t *r)
{
    int rc = http_do(o, "GET", path, NULL, r);
    if (rc != EX_OK)
        return rc;
    rc = status_exit(r->status);
    if (rc != EX_OK) {
        report_error(what, r);
        return rc;
    }
    if (!json_is_object(r->json)) {
        err("%s: the answer is not a JSON object (HTTP %ld)", what, r->status);
        return EX_FAIL;
    }
    return EX_OK;
}

/* ========================================================================== */
/* status                                                                      */
/* ========================================================================== */

/* Prints /healthz (hj) and the instances array (NULL when not available). */
static void render_status(const ctl_opts_t *o, bool healthy, json_t *hj, json_t *insts)
{
    if (o->json) {
        json_t *out = json_object();
        json_object_set(out, "health", hj);
        json_object_set(out, "instances", json_is_array(insts) ? insts : json_null());
        print_json_line(out);
        json_decref(out);
    } else {
        const char *st = json_string_value(json_object_get(hj, "status"));
        const char *boot = json_string_value(json_object_get(hj, "boot"));
        json_t *up = json_object_get(hj, "uptime_s");
        char upbuf[32] = "";
        if (json_is_number(up))
            fmt_duration(json_number_value(up), upbuf, sizeof upbuf);
        printf("gateway    %s  %s", o->url, healthy ? (st ? st : "ok") : "UNHEALTHY");
        if (boot)
            printf("  boot %s", boot);
        if (upbuf[0])
            printf("  up %s", upbuf);
        fputc('\n', stdout);
        json_t *reasons = json_object_get(hj, "reasons");
        size_t i;
        json_t *v;
        json_array_foreach(reasons, i, v) {
            if (json_is_string(v))
                printf("  reason   %s\n", json_string_value(v));
        }
        json_t *mq = json_object_get(hj, "mqtt");
        if (json_is_object(mq)) {
            bool en = json_is_true(json_object_get(mq, "enabled"));
            json_t *conn = json_object_get(mq, "connected");
            printf("mqtt       %s\n", !en                  ? "disabled"
                                      : json_is_true(conn) ? "connected"
                                      : json_is_false(conn) ? "DISCONNECTED"
                                                            : "enabled");
        }
        json_t *ic = json_object_get(hj, "instances");
        if (json_is_object(ic))
            printf("instances  %" JSON_INTEGER_FORMAT " running, %" JSON_INTEGER_FORMAT " failed\n",
                   json_integer_value(json_object_get(ic, "running")),
                   json_integer_value(json_object_get(ic, "failed")));
        if (json_is_array(insts)) {
            table_t t = {.ncols = 6};
            const char *hdr[] = {"INSTANCE", "PLUGIN", "STATE", "HEALTH", "DEVICES", "REASON"};
            tbl_add(&t, hdr);
            json_array_foreach(insts, i, v) {
                char ndev[32] = "-";
                json_t *d = json_object_get(v, "devices");
                if (json_is_integer(d))
                    snprintf(ndev, sizeof ndev, "%" JSON_INTEGER_FORMAT, json_integer_value(d));
                const char *row[] = {
                    json_string_value(json_object_get(v, "id")),
                    json_string_value(json_object_get(v, "plugin")),
                    json_string_value(json_object_get(v, "state")),
                    json_string_value(json_object_get(v, "health")),
                    ndev,
                    json_string_value(json_object_get(v, "reason")),
                };
                tbl_add(&t, row);
            }
            fputc('\n', stdout);
            if (t.nrows == 1)
                printf("no plugin instances\n");
            else
                tbl_print(&t);
            tbl_free(&t);
        }
    }
}

static int cmd_status(ctl_opts_t *o, int argc, char **argv)
{
    const char *pos[1];
    int npos;
    int rc = parse_cmd_args(o, argc, argv, NULL, NULL, NULL, usage_status, pos, 0, &npos);
    if (rc >= 0)
        return rc;

    http_resp_t h, in;
    rc = http_do(o, "GET", "/healthz", NULL, &h);
    if (rc != EX_OK)
        return rc;
    bool healthy = h.status == 200;
    if (!(h.status == 200 || h.status == 503) || !json_is_object(h.json)) {
        report_error("GET /healthz", &h);
        rc = status_exit(h.status);
        http_resp_free(&h);
        return rc == EX_OK ? EX_FAIL : rc;
    }
    int irc = get_json(o, "/api/v1/instances", "GET /api/v1/instances", &in);
    render_status(o, healthy, h.json, json_object_get(in.json, "instances"));
    if (irc == EX_OK && !healthy)
        irc = EX_FAIL;
    http_resp_free(&h);
    http_resp_free(&in);
    return irc;
}

/* ========================================================================== */
/* devices                                                                     */
/* ========================================================================== */

/* Envelope fields, not device values. */
static bool is_envelope_key(const char *k)
{
    static const char *const keys[] = {"ts", "site", "class", "device", "instance", "boot",
                                       "seq", "online", "reason", "gateway", NULL};
    for (const char *const *p = keys; *p; p++)
        if (strcmp(*p, k) == 0)
            return true;
    return false;
}

/* "k=v k=v ..." of an object's non-envelope members, with units when given. */
static void sb_values(sbuf_t *b, const json_t *obj, const json_t *units)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        if (is_envelope_key(k))
            continue;
        if (b->len)
            sb_putn(b, " ", 1);
        sb_puts(b, k);
        sb_putn(b, "=", 1);
        sb_value(b, v);
        const char *u = json_string_value(json_object_get(units, k));
        if (u && *u) {
            if (u[0] != '%')
                sb_putn(b, " ", 1);
            sb_puts(b, u);
        }
    }
}

typedef struct devices_args {
    const char *cls;
} devices_args_t;

static int devices_opt(void *ud, int id, const char *val)
{
    devices_args_t *a = ud;
    if (id == O_CLASS) {
        a->cls = val;
        return -1;
    }
    return EX_USAGE;
}

static const optdef_t devices_opts[] = {{"--class", 'c', true, O_CLASS}, {NULL, 0, false, 0}};

/* Splits "a/b/c" into exactly n parts (copies in buf); 0 on success. */
static int split_n(const char *s, char *buf, size_t len, char **parts, int n)
{
    if (strlen(s) >= len)
        return -1;
    strcpy(buf, s);
    char *p = buf;
    for (int i = 0; i < n; i++) {
        parts[i] = p;
        char *sl = strchr(p, '/');
        if (i < n - 1) {
            if (!sl)
                return -1;
            *sl = '\0';
            p = sl + 1;
        } else if (sl) {
            return -1;
        }
        if (!*parts[i])
            return -1;
    }
    return 0;
}

static void render_device(const ctl_opts_t *o, const char *cls, const char *dev, json_t *ans);

static int device_detail(ctl_opts_t *o, const char *spec)
{
    char buf[512];
    char *parts[2];
    if (split_n(spec, buf, sizeof buf, parts, 2) != 0) {
        err("'%s' is not CLASS/DEVICE", spec);
        return EX_USAGE;
    }
    char *c = url_seg(parts[0]), *d = url_seg(parts[1]);
    char path[1024];
    snprintf(path, sizeof path, "/api/v1/devices/%s/%s", c ? c : "", d ? d : "");
    curl_free(c);
    curl_free(d);
    http_resp_t r;
    int rc = get_json(o, path, spec, &r);
    if (rc == EX_OK)
        render_device(o, parts[0], parts[1], r.json);
    http_resp_free(&r);
    return rc;
}

/* One device: GET /api/v1/devices/{class}/{device}'s answer. */
static void render_device(const ctl_opts_t *o, const char *cls, const char *dev, json_t *ans)
{
    if (o->json) {
        print_json_line(ans);
    } else {
        json_t *st = json_object_get(ans, "state");
        json_t *online = json_object_get(st, "online");
        const char *reason = json_string_value(json_object_get(st, "reason"));
        char age[64];
        fmt_age(json_string_value(json_object_get(st, "ts")), age, sizeof age);
        printf("device     %s/%s\n", cls, dev);
        const char *inst = json_string_value(json_object_get(st, "instance"));
        if (inst)
            printf("instance   %s\n", inst);
        printf("online     %s%s%s%s\n", json_is_true(online) ? "yes" : json_is_false(online) ? "no" : "?",
               reason ? " (" : "", reason ? reason : "", reason ? ")" : "");
        printf("state      changed %s\n", age);
        const char *k;
        json_t *v;
        json_object_foreach(st, k, v) {
            if (is_envelope_key(k))
                continue;
            sbuf_t b = {0};
            sb_value(&b, v);
            printf("  %-24s %s\n", k, b.p ? b.p : "");
            free(b.p);
        }
        json_t *tel = json_object_get(ans, "telemetry");
        json_t *vals = json_object_get(tel, "values");
        if (json_is_object(vals)) {
            char tage[64];
            fmt_age(json_string_value(json_object_get(tel, "ts")), tage, sizeof tage);
            printf("telemetry  %s\n", tage);
            json_t *units = json_object_get(tel, "units");
            json_object_foreach(vals, k, v) {
                sbuf_t b = {0};
                sb_value(&b, v);
                const char *u = json_string_value(json_object_get(units, k));
                printf("  %-24s %s%s%s\n", k, b.p ? b.p : "", u ? " " : "", u ? u : "");
                free(b.p);
            }
        }
        json_t *alarms = json_object_get(ans, "alarms");
        size_t n = json_array_size(alarms);
        printf("alarms     %zu active\n", n);
        for (size_t i = 0; i < n; i++) {
            json_t *a = json_array_get(alarms, i);
            const char *by = json_string_value(json_object_get(a, "acked_by"));
            printf("  %-8s %-12s %s  %s%s%s\n", jstr(a, "severity", "?"),
                   jstr(a, "state", "?"),
                   jstr(a, "code", "?"),
                   jstr(a, "message", ""), by ? "  acked by " : "",
                   by ? by : "");
        }
    }
}

static int cmp_devices(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    const char *cx = jstr(x, "class", "");
    const char *cy = jstr(y, "class", "");
    int c = strcmp(cx, cy);
    if (c)
        return c;
    return strcmp(jstr(x, "device", ""),
                  jstr(y, "device", ""));
}

static int render_devices(const ctl_opts_t *o, json_t *ans, const char *cls);

static int cmd_devices(ctl_opts_t *o, int argc, char **argv)
{
    devices_args_t a = {0};
    const char *pos[1];
    int npos;
    int rc = parse_cmd_args(o, argc, argv, devices_opts, devices_opt, &a, usage_devices, pos, 1, &npos);
    if (rc >= 0)
        return rc;
    if (npos == 1) {
        if (a.cls) {
            err("--class and CLASS/DEVICE together");
            return EX_USAGE;
        }
        return device_detail(o, pos[0]);
    }
    char path[512] = "/api/v1/devices";
    if (a.cls) {
        char *c = url_seg(a.cls);
        snprintf(path, sizeof path, "/api/v1/devices?class=%s", c ? c : "");
        curl_free(c);
    }
    http_resp_t r;
    rc = get_json(o, path, "GET /api/v1/devices", &r);
    if (rc == EX_OK)
        rc = render_devices(o, r.json, a.cls);
    http_resp_free(&r);
    return rc;
}

/* The devices table of GET /api/v1/devices's answer; the exit code. */
static int render_devices(const ctl_opts_t *o, json_t *ans, const char *cls)
{
    json_t *devs = json_object_get(ans, "devices");
    if (!json_is_array(devs)) {
        err("GET /api/v1/devices: no \"devices\" array in the answer");
        return EX_FAIL;
    }
    if (o->json) {
        print_json_line(ans);
        return EX_OK;
    }
    size_t n = json_array_size(devs);
    json_t **v = calloc(n ? n : 1, sizeof *v);
    if (!v) {
        err("out of memory");
        return EX_FAIL;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(devs, i);
    qsort(v, n, sizeof *v, cmp_devices);
    table_t t = {.ncols = 5};
    const char *hdr[] = {"CLASS", "DEVICE", "ONLINE", "UPDATED", "VALUES"};
    tbl_add(&t, hdr);
    for (size_t i = 0; i < n; i++) {
        json_t *d = v[i], *st = json_object_get(d, "state");
        json_t *on = json_object_get(st, "online");
        const char *reason = json_string_value(json_object_get(st, "reason"));
        char online[160], age[64];
        if (json_is_true(on))
            snprintf(online, sizeof online, "yes");
        else if (json_is_false(on))
            snprintf(online, sizeof online, "no%s%s%s", reason ? " (" : "", reason ? reason : "",
                     reason ? ")" : "");
        else
            snprintf(online, sizeof online, "?");
        /* the newest of the state and (when the server gives it) the telemetry */
        json_t *tel = json_object_get(d, "telemetry");
        const char *ts = json_string_value(json_object_get(st, "ts"));
        const char *tts = json_string_value(json_object_get(tel, "ts"));
        if (tts && (!ts || parse_ts(tts) > parse_ts(ts)))
            ts = tts;
        if (ts)
            fmt_age(ts, age, sizeof age);
        else
            snprintf(age, sizeof age, "-");
        sbuf_t b = {0};
        if (json_is_object(st))
            sb_values(&b, st, NULL);
        if (json_is_object(json_object_get(tel, "values")))
            sb_values(&b, json_object_get(tel, "values"), json_object_get(tel, "units"));
        const char *row[] = {json_string_value(json_object_get(d, "class")),
                             json_string_value(json_object_get(d, "device")), online, age, b.p ? b.p : ""};
        tbl_add(&t, row);
        free(b.p);
    }
    if (n == 0)
        printf("no devices%s%s\n", cls ? " of class " : "", cls ? cls : "");
    else
        tbl_print(&t);
    tbl_free(&t);
    free(v);
    return EX_OK;
}

/* ========================================================================== */
/* alarms                                                                      */
/* ========================================================================== */

static int severity_rank(const char *s)
{
    static const char *const order[] = {"critical", "major", "minor", "warning", "info", NULL};
    for (int i = 0; s && order[i]; i++)
        if (strcmp(order[i], s) == 0)
            return i;
    return 5;
}

static int cmp_alarms(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int rx = severity_rank(json_string_value(json_object_get(x, "severity")));
    int ry = severity_rank(json_string_value(json_object_get(y, "severity")));
    if (rx != ry)
        return rx - ry;
    double tx = parse_ts(json_string_value(json_object_get(x, "raised_at")));
    double ty = parse_ts(json_string_value(json_object_get(y, "raised_at")));
    if (tx != ty)
        return tx < ty ? -1 : 1;
    return strcmp(jstr(x, "topic", ""),
                  jstr(y, "topic", ""));
}

/* class/device of an alarm: from the payload, else from the topic
 * (.../{class}/{device}/alarm/{code}). */
static void alarm_source(const json_t *a, char *buf, size_t len)
{
    const char *c = json_string_value(json_object_get(a, "class"));
    const char *d = json_string_value(json_object_get(a, "device"));
    if (c && d) {
        snprintf(buf, len, "%s/%s", c, d);
        return;
    }
    const char *gw = json_string_value(json_object_get(a, "gateway"));
    if (gw) {
        snprintf(buf, len, "gateway/%s", gw);
        return;
    }
    const char *t = json_string_value(json_object_get(a, "topic"));
    const char *al = t ? strstr(t, "/alarm/") : NULL;
    if (al) {
        const char *p = al;
        int slashes = 0;
        while (p > t && slashes < 2) {
            p--;
            if (*p == '/')
                slashes++;
        }
        if (*p == '/')
            p++;
        snprintf(buf, len, "%.*s", (int)(al - p), p);
        return;
    }
    snprintf(buf, len, "?");
}

typedef struct alarms_args {
    const char *cls;
} alarms_args_t;

static int alarms_opt(void *ud, int id, const char *val)
{
    alarms_args_t *a = ud;
    if (id == O_CLASS) {
        a->cls = val;
        return -1;
    }
    return EX_USAGE;
}

static int render_alarms(const ctl_opts_t *o, json_t *ans, const char *cls);

static int cmd_alarms(ctl_opts_t *o, int argc, char **argv)
{
    alarms_args_t a = {0};
    const char *pos[1];
    int npos;
    int rc = parse_cmd_args(o, argc, argv, devices_opts, alarms_opt, &a, usage_alarms, pos, 0, &npos);
    if (rc >= 0)
        return rc;
    http_resp_t r;
    rc = get_json(o, "/api/v1/alarms", "GET /api/v1/alarms", &r);
    if (rc == EX_OK)
        rc = render_alarms(o, r.json, a.cls);
    http_resp_free(&r);
    return rc;
}

/* The alarms table of GET /api/v1/alarms's answer, sorted; the exit code. */
static int render_alarms(const ctl_opts_t *o, json_t *ans, const char *cls)
{
    json_t *all = json_object_get(ans, "alarms");
    if (!json_is_array(all)) {
        err("GET /api/v1/alarms: no \"alarms\" array in the answer");
        return EX_FAIL;
    }
    size_t n = json_array_size(all), m = 0;
    json_t **v = calloc(n ? n : 1, sizeof *v);
    if (!v) {
        err("out of memory");
        return EX_FAIL;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *al = json_array_get(all, i);
        if (cls) {
            char src[256];
            alarm_source(al, src, sizeof src);
            size_t cl = strlen(cls);
            if (strncmp(src, cls, cl) != 0 || src[cl] != '/')
                continue;
        }
        v[m++] = al;
    }
    if (o->json) {
        json_t *out = json_object(), *arr = json_array();
        for (size_t i = 0; i < m; i++)
            json_array_append(arr, v[i]);
        json_object_set_new(out, "alarms", arr);
        print_json_line(cls ? out : ans);
        json_decref(out);
        free(v);
        return EX_OK;
    }
    qsort(v, m, sizeof *v, cmp_alarms);
    table_t t = {.ncols = 6};
    const char *hdr[] = {"SEVERITY", "STATE", "SOURCE", "CODE", "SINCE", "MESSAGE"};
    tbl_add(&t, hdr);
    for (size_t i = 0; i < m; i++) {
        json_t *al = v[i];
        char src[256], age[64], msg[1024];
        alarm_source(al, src, sizeof src);
        fmt_age(json_string_value(json_object_get(al, "raised_at")), age, sizeof age);
        const char *by = json_string_value(json_object_get(al, "acked_by"));
        const char *note = json_string_value(json_object_get(al, "note"));
        snprintf(msg, sizeof msg, "%s%s%s%s%s%s", jstr(al, "message", ""),
                 by ? " [acked by " : "", by ? by : "", note ? ": " : "", note && by ? note : "", by ? "]" : "");
        const char *row[] = {jstr(al, "severity", "?"),
                             jstr(al, "state", "?"), src,
                             jstr(al, "code", "?"), age, msg};
        tbl_add(&t, row);
    }
    if (m == 0)
        printf("no active alarms\n");
    else
        tbl_print(&t);
    tbl_free(&t);
    free(v);
    return EX_OK;
}

/* ========================================================================== */
/* send and ack: replies                                                       */
/* ========================================================================== */

/* Prints a command reply and returns the exit code. */
static int print_reply(const ctl_opts_t *o, const char *what, const http_resp_t *r)
{
    int rc = status_exit(r->status);
    json_t *ok = json_object_get(r->json, "ok");
    if (rc == EX_OK && json_is_false(ok))
        rc = EX_FAIL; /* ok:false must never look like success */
    if (rc == EX_OK && !json_is_object(r->json)) {
        err("%s: the answer is not a JSON object (HTTP %ld)", what, r->status);
        return EX_FAIL;
    }
    if (o->json && json_is_object(r->json))
        print_json_line(r->json);
    if (rc != EX_OK) {
        report_error(what, r);
        return rc;
    }
    if (!o->json) {
        json_t *data = json_object_get(r->json, "data");
        printf("ok");
        if (data && !json_is_null(data)) {
            sbuf_t b = {0};
            if (json_is_object(data))
                sb_values(&b, data, NULL);
            else
                sb_json(&b, data);
            /* sb_values skips envelope-like keys; show the whole object when that hid everything */
            if ((!b.p || !b.len) && json_object_size(data)) {
                free(b.p);
                b = (sbuf_t){0};
                sb_json(&b, data);
            }
            if (b.p && b.len)
                printf("  %s", b.p);
            free(b.p);
        }
        fputc('\n', stdout);
    }
    return EX_OK;
}

/* ========================================================================== */
/* send                                                                        */
/* ========================================================================== */

typedef struct send_args {
    const char *args_json;
} send_args_t;

static int send_opt(void *ud, int id, const char *val)
{
    send_args_t *a = ud;
    if (id == O_ARGS) {
        a->args_json = val;
        return -1;
    }
    return EX_USAGE;
}

static const optdef_t send_opts[] = {{"--args", 0, true, O_ARGS}, {NULL, 0, false, 0}};

/* key=value: a JSON number, true, false or null when the whole value is
 * exactly that; a string otherwise. */
static json_t *scalar_value(const char *s)
{
    if (*s && !isspace((unsigned char)s[0]) && !isspace((unsigned char)s[strlen(s) - 1])) {
        json_error_t je;
        json_t *j = json_loads(s, JSON_DECODE_ANY, &je);
        if (j && (json_is_number(j) || json_is_boolean(j) || json_is_null(j)))
            return j;
        json_decref(j);
    }
    return json_string(s);
}

static int parse_kv(json_t *args, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv || (eq == kv + 1 && kv[0] == ':')) {
        err("argument '%s' is not key=value or key:=JSON", kv);
        return EX_USAGE;
    }
    bool raw = eq[-1] == ':';
    size_t klen = (size_t)(eq - kv) - (raw ? 1 : 0);
    char key[256];
    if (klen >= sizeof key) {
        err("argument name longer than %zu bytes", sizeof key - 1);
        return EX_USAGE;
    }
    memcpy(key, kv, klen);
    key[klen] = '\0';
    json_t *v;
    if (raw) {
        json_error_t je;
        v = json_loads(eq + 1, JSON_DECODE_ANY, &je);
        if (!v) {
            err("argument %s:= is not JSON: %s", key, je.text);
            return EX_USAGE;
        }
    } else {
        v = scalar_value(eq + 1);
    }
    if (!v || json_object_set_new(args, key, v) != 0) {
        err("argument %s: bad name or out of memory", key);
        return EX_USAGE;
    }
    return EX_OK;
}

static int cmd_send(ctl_opts_t *o, int argc, char **argv)
{
    send_args_t a = {0};
    const char *pos[256];
    int npos;
    int rc = parse_cmd_args(o, argc, argv, send_opts, send_opt, &a, usage_send, pos, 256, &npos);
    if (rc >= 0)
        return rc;
    if (npos < 1) {
        err("which command? ccgwctl send CLASS/DEVICE/COMMAND [key=value...] (try --help)");
        return EX_USAGE;
    }
    json_t *body = json_object();
    json_t *args = NULL;
    if (a.args_json) {
        json_error_t je;
        args = json_loads(a.args_json, 0, &je);
        if (!json_is_object(args)) {
            err("--args must be a JSON object: %s", args ? "not an object" : je.text);
            json_decref(args);
            json_decref(body);
            return EX_USAGE;
        }
    } else {
        args = json_object();
    }
    for (int i = 1; i < npos; i++) {
        rc = parse_kv(args, pos[i]);
        if (rc != EX_OK) {
            json_decref(args);
            json_decref(body);
            return rc;
        }
    }
    const char *target = pos[0];
    char buf[1024];
    char *parts[3];
    if (strstr(target, "/cmd/")) {
        json_object_set_new(body, "topic", json_string(target));
    } else if (split_n(target, buf, sizeof buf, parts, 3) == 0) {
        json_object_set_new(body, "class", json_string(parts[0]));
        json_object_set_new(body, "device", json_string(parts[1]));
        json_object_set_new(body, "name", json_string(parts[2]));
    } else {
        err("'%s' is neither a command topic (.../cmd/NAME) nor CLASS/DEVICE/COMMAND", target);
        json_decref(args);
        json_decref(body);
        return EX_USAGE;
    }
    json_object_set_new(body, "args", args);
    http_resp_t r;
    rc = http_do(o, "POST", "/api/v1/commands", body, &r);
    json_decref(body);
    if (rc == EX_OK)
        rc = print_reply(o, target, &r);
    http_resp_free(&r);
    return rc;
}

/* ========================================================================== */
/* ack                                                                         */
/* ========================================================================== */

typedef struct ack_args {
    const char *note;
} ack_args_t;

static int ack_opt(void *ud, int id, const char *val)
{
    ack_args_t *a = ud;
    if (id == O_NOTE) {
        a->note = val;
        return -1;
    }
    return EX_USAGE;
}

static const optdef_t ack_opts[] = {{"--note", 'n', true, O_NOTE}, {NULL, 0, false, 0}};

/* ALARM-TOPIC (.../{class}/{device}/alarm/{code}) or CLASS/DEVICE/CODE. */
static int parse_alarm_ref(const char *s, char *buf, size_t len, char **cls, char **dev, char **code)
{
    char *parts[3];
    if (split_n(s, buf, len, parts, 3) == 0) {
        *cls = parts[0];
        *dev = parts[1];
        *code = parts[2];
        return 0;
    }
    if (strlen(s) >= len)
        return -1;
    strcpy(buf, s);
    char *seg[64];
    int n = 0;
    for (char *p = buf; n < 64;) {
        seg[n++] = p;
        char *sl = strchr(p, '/');
        if (!sl)
            break;
        *sl = '\0';
        p = sl + 1;
    }
    if (n < 4 || strcmp(seg[n - 2], "alarm") != 0 || !*seg[n - 4] || !*seg[n - 3] || !*seg[n - 1])
        return -1;
    *cls = seg[n - 4];
    *dev = seg[n - 3];
    *code = seg[n - 1];
    return 0;
}

static int cmd_ack(ctl_opts_t *o, int argc, char **argv)
{
    ack_args_t a = {0};
    const char *pos[1];
    int npos;
    int rc = parse_cmd_args(o, argc, argv, ack_opts, ack_opt, &a, usage_ack, pos, 1, &npos);
    if (rc >= 0)
        return rc;
    if (npos != 1) {
        err("which alarm? ccgwctl ack CLASS/DEVICE/CODE [--note TEXT] (try --help)");
        return EX_USAGE;
    }
    char buf[1024];
    char *cls, *dev, *code;
    if (parse_alarm_ref(pos[0], buf, sizeof buf, &cls, &dev, &code) != 0) {
        err("'%s' is neither an alarm topic (.../CLASS/DEVICE/alarm/CODE) nor CLASS/DEVICE/CODE", pos[0]);
        return EX_USAGE;
    }
    char *ec = url_seg(cls), *ed = url_seg(dev), *eo = url_seg(code);
    char path[2048];
    snprintf(path, sizeof path, "/api/v1/alarms/%s/%s/%s/ack", ec ? ec : "", ed ? ed : "", eo ? eo : "");
    curl_free(ec);
    curl_free(ed);
    curl_free(eo);
    json_t *body = json_object();
    if (a.note)
        json_object_set_new(body, "note", json_string(a.note));
    http_resp_t r;
    rc = http_do(o, "POST", path, body, &r);
    json_decref(body);
    if (rc == EX_OK)
        rc = print_reply(o, pos[0], &r);
    http_resp_free(&r);
    return rc;
}

/* ========================================================================== */
/* tail (WebSocket)                                                            */
/* ========================================================================== */

static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig) { g_stop = sig; }

typedef struct tail_ctx {
    ctl_opts_t *o;
    const char **filters;
    int n_filters;
    long count;        /* 0 = unlimited */
    bool no_snapshot, reconnect;

    /* where */
    bool tls;
    char host[256];
    int port;
    char path[1024];
    char authz[CTL_MAX_TOKEN + 16];

    struct lws_context *ctx;
    struct lws *wsi;
    lws_sorted_usec_list_t sul_tick, sul_retry;
    bool established, ever_established;
    int next_sub;      /* index of the next filter to send */
    int acked;         /* subscriptions acknowledged on this connection */
    int attempt;       /* reconnect attempts since the last good connection */
    int64_t deadline_us; /* connect + subscribe before this (first connection) */
    uint16_t close_code;
    char close_reason[128];
    bool fatal_auth;   /* close 1008 "unauthorized" / HTTP 401: do not retry */

    char *rx;
    size_t rx_len, rx_cap;
    bool rx_skip;      /* the current message is over the limit: discard its fragments */
    uint64_t rx_oversize;

    long printed;
    bool done;
    int exit_code;
} tail_ctx_t;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void tail_finish(tail_ctx_t *t, int code)
{
    if (!t->done) {
        t->done = true;
        t->exit_code = code;
    }
    if (t->ctx)
        lws_cancel_service(t->ctx);
}

static int tail_connect(tail_ctx_t *t);

static void tail_retry_cb(lws_sorted_usec_list_t *sul)
{
    tail_ctx_t *t = lws_container_of(sul, tail_ctx_t, sul_retry);
    if (t->done || g_stop)
        return;
    if (tail_connect(t) != 0) {
        /* could not even start: try again later */
        t->attempt++;
        int64_t ms = 500LL << (t->attempt < 5 ? t->attempt : 5);
        if (ms > 10000)
            ms = 10000;
        lws_sul_schedule(t->ctx, 0, &t->sul_retry, tail_retry_cb, ms * LWS_US_PER_MS);
    }
}

/* The connection is gone (failed or closed): retry, or finish with code. */
static void tail_lost(tail_ctx_t *t, int code, const char *why)
{
    t->wsi = NULL;
    t->established = false;
    if (t->done || g_stop)
        return;
    if (t->fatal_auth) {
        err("the gateway refused the token: %s", why);
        tail_finish(t, EX_AUTH);
        return;
    }
    if (!t->reconnect) {
        err("%s", why);
        tail_finish(t, code);
        return;
    }
    int64_t ms = 500LL << (t->attempt < 5 ? t->attempt : 5);
    if (ms > 10000)
        ms = 10000;
    t->attempt++;
    err("%s; reconnecting in %.1f s", why, (double)ms / 1000.0);
    lws_sul_schedule(t->ctx, 0, &t->sul_retry, tail_retry_cb, ms * LWS_US_PER_MS);
}

static void tail_tick(lws_sorted_usec_list_t *sul)
{
    tail_ctx_t *t = lws_container_of(sul, tail_ctx_t, sul_tick);
    if (!t->ever_established && !t->reconnect && t->deadline_us && now_us() > t->deadline_us) {
        err("cannot connect to %s%s:%d within %ld s", t->tls ? "wss://" : "ws://", t->host, t->port,
            t->o->timeout_s);
        tail_finish(t, EX_CONN);
        return;
    }
    lws_sul_schedule(t->ctx, 0, &t->sul_tick, tail_tick, 200 * LWS_US_PER_MS);
}

static void tail_print_msg(tail_ctx_t *t, json_t *m)
{
    if (t->done)
        return;
    const char *topic = json_string_value(json_object_get(m, "topic"));
    if (!topic)
        return;
    if (t->no_snapshot && json_is_true(json_object_get(m, "retained")))
        return;
    if (t->o->json) {
        print_json_line(m);
    } else {
        sbuf_t b = {0};
        json_t *p = json_object_get(m, "payload");
        sb_json(&b, p ? p : json_null());
        printf("%s %s\n", topic, b.p ? b.p : "null");
        free(b.p);
    }
    fflush(stdout);
    if (ferror(stdout)) {
        /* the reader went away (| head): that is the end, not a failure */
        tail_finish(t, EX_OK);
        return;
    }
    t->printed++;
    if (t->count > 0 && t->printed >= t->count)
        tail_finish(t, EX_OK);
}

static void tail_handle(tail_ctx_t *t, const char *buf, size_t len)
{
    json_error_t je;
    json_t *m = json_loadb(buf, len, 0, &je);
    if (!json_is_object(m)) {
        err("ignoring a WebSocket message that is not a JSON object: %s", je.text);
        json_decref(m);
        return;
    }
    const char *op = json_string_value(json_object_get(m, "op"));
    if (!op) {
        err("ignoring a message without \"op\"");
    } else if (strcmp(op, "msg") == 0) {
        tail_print_msg(t, m);
    } else if (strcmp(op, "batch") == 0) {
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(m, "msgs"), i, x) {
            const char *xop = json_string_value(json_object_get(x, "op"));
            if (!xop || strcmp(xop, "msg") == 0)
                tail_print_msg(t, x);
        }
    } else if (strcmp(op, "ack") == 0) {
        json_int_t id = json_integer_value(json_object_get(m, "id"));
        if (id >= 1 && id <= t->n_filters) {
            t->acked++;
            t->attempt = 0;
            if (t->o->verbose)
                fprintf(stderr, "ccgwctl tail: subscribed %s (%" JSON_INTEGER_FORMAT " retained)\n",
                        t->filters[id - 1], json_integer_value(json_object_get(m, "snapshot")));
        }
    } else if (strcmp(op, "error") == 0) {
        const char *code = jstr(m, "code", "?");
        const char *msg = jstr(m, "message", "");
        json_t *jid = json_object_get(m, "id");
        json_int_t id = json_integer_value(jid);
        bool about_sub = json_is_integer(jid) && id >= 1 && id <= t->n_filters;
        if (about_sub)
            err("subscription %s: %s: %s", t->filters[id - 1], code, msg);
        else
            err("%s: %s", code, msg);
        if (strcmp(code, "unauthorized") == 0 || strcmp(code, "forbidden") == 0) {
            if (strcmp(code, "unauthorized") == 0 && g_no_token)
                err("no token given: use --token-file FILE, CCGW_TOKEN_FILE or CCGW_TOKEN");
            t->fatal_auth = true;
            tail_finish(t, EX_AUTH);
        } else if (about_sub) {
            tail_finish(t, EX_FAIL);
        }
    }
    /* pong and anything newer: ignored */
    json_decref(m);
}

static int tail_send_sub(tail_ctx_t *t, struct lws *wsi)
{
    if (t->next_sub >= t->n_filters)
        return 0;
    int i = t->next_sub;
    json_t *j = json_pack("{s:s, s:i, s:s}", "op", "sub", "id", i + 1, "filter", t->filters[i]);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s)
        return -1;
    size_t n = strlen(s);
    unsigned char *buf = malloc(LWS_PRE + n);
    if (!buf) {
        free(s);
        return -1;
    }
    memcpy(buf + LWS_PRE, s, n);
    free(s);
    int w = lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
    free(buf);
    if (w < (int)n)
        return -1;
    t->next_sub++;
    if (t->next_sub < t->n_filters)
        lws_callback_on_writable(wsi);
    return 0;
}

static int tail_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    tail_ctx_t *t = ctx ? lws_context_user(ctx) : NULL;
    if (!t)
        return lws_callback_http_dummy(wsi, reason, user, in, len);

    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        if (t->authz[0]) {
            unsigned char **p = (unsigned char **)in, *end = (*p) + len;
            if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, (unsigned char *)t->authz,
                                             (int)strlen(t->authz), p, end))
                return -1;
        }
        return 0;

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        t->established = t->ever_established = true;
        t->next_sub = 0;
        t->acked = 0;
        t->close_code = 0;
        t->close_reason[0] = '\0';
        t->rx_len = 0;
        t->rx_skip = false;
        if (t->o->verbose)
            fprintf(stderr, "ccgwctl tail: connected to %s:%d\n", t->host, t->port);
        lws_callback_on_writable(wsi);
        return 0;

    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (t->done)
            return -1;
        if (tail_send_sub(t, wsi) != 0) {
            err("cannot send the subscription");
            return -1;
        }
        return 0;

    case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (t->done)
            return 0;
        if (lws_is_first_fragment(wsi)) {
            t->rx_len = 0;
            t->rx_skip = false;
        }
        if (!t->rx_skip) {
            if (t->rx_len + len > CTL_MAX_BODY) {
                t->rx_skip = true;
                t->rx_oversize++;
                err("dropping a WebSocket message larger than %u bytes (%" PRIu64 " so far)", CTL_MAX_BODY,
                    t->rx_oversize);
            } else {
                if (t->rx_len + len + 1 > t->rx_cap) {
                    size_t cap = t->rx_cap ? t->rx_cap : 65536;
                    while (cap < t->rx_len + len + 1)
                        cap *= 2;
                    char *nb = realloc(t->rx, cap);
                    if (!nb) {
                        err("out of memory");
                        tail_finish(t, EX_FAIL);
                        return -1;
                    }
                    t->rx = nb;
                    t->rx_cap = cap;
                }
                memcpy(t->rx + t->rx_len, in, len);
                t->rx_len += len;
            }
        }
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            if (!t->rx_skip)
                tail_handle(t, t->rx, t->rx_len);
            t->rx_len = 0;
            t->rx_skip = false;
        }
        return 0;
    }

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (len >= 2) {
            const unsigned char *p = in;
            t->close_code = (uint16_t)(p[0] << 8 | p[1]);
            size_t rl = len - 2 < sizeof t->close_reason - 1 ? len - 2 : sizeof t->close_reason - 1;
            memcpy(t->close_reason, p + 2, rl);
            t->close_reason[rl] = '\0';
            if (t->close_code == 1008 && strstr(t->close_reason, "unauthorized"))
                t->fatal_auth = true;
        }
        return 0;

    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        char why[2048];
        const char *e = in ? (const char *)in : "connection failed";
        if (strstr(e, "unauthorized"))
            t->fatal_auth = true;
        snprintf(why, sizeof why, "cannot connect to %s%s:%d%s: %s", t->tls ? "wss://" : "ws://", t->host,
                 t->port, t->path, e);
        tail_lost(t, EX_CONN, why);
        return 0;
    }

    case LWS_CALLBACK_CLIENT_CLOSED: {
        char why[256];
        if (t->close_code)
            snprintf(why, sizeof why, "the gateway closed the connection (%u%s%s)", t->close_code,
                     t->close_reason[0] ? " " : "", t->close_reason);
        else
            snprintf(why, sizeof why, "the connection to the gateway was lost");
        tail_lost(t, EX_CONN, why);
        return 0;
    }

    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols tail_protocols[] = {
    {"ccgwctl", tail_cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* Pings after 20 s of silence, gives up after 50 s without an answer. */
static const lws_retry_bo_t tail_retry_policy = {
    .secs_since_valid_ping = 20,
    .secs_since_valid_hangup = 50,
};

static int tail_connect(tail_ctx_t *t)
{
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = t->ctx;
    ci.address = t->host;
    ci.port = t->port;
    ci.path = t->path;
    ci.host = t->host;
    ci.origin = t->host;
    ci.local_protocol_name = "ccgwctl";
    ci.retry_and_idle_policy = &tail_retry_policy;
    ci.pwsi = &t->wsi;
    if (t->tls) {
        ci.ssl_connection = LCCSCF_USE_SSL;
        if (t->o->insecure)
            ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                 LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
    }
    if (t->o->verbose)
        fprintf(stderr, "ccgwctl tail: connecting to %s%s:%d%s\n", t->tls ? "wss://" : "ws://", t->host, t->port,
                t->path);
    if (!lws_client_connect_via_info(&ci)) {
        /* lws usually reports through CLIENT_CONNECTION_ERROR; NULL without it
         * (e.g. a name that does not resolve) */
        if (!t->reconnect) {
            err("cannot connect to %s:%d", t->host, t->port);
            tail_finish(t, EX_CONN);
            return 0;
        }
        return -1;
    }
    return 0;
}

/* http[s]://host[:port][/prefix] -> host, port, path "/prefix/ws". */
static int tail_parse_url(tail_ctx_t *t, const char *url)
{
    const char *p;
    if (strncmp(url, "https://", 8) == 0) {
        t->tls = true;
        t->port = 443;
        p = url + 8;
    } else {
        t->tls = false;
        t->port = 80;
        p = url + 7;
    }
    const char *slash = strchr(p, '/');
    size_t hostport_len = slash ? (size_t)(slash - p) : strlen(p);
    const char *prefix = slash ? slash : "";
    char hp[sizeof t->host];
    if (hostport_len == 0 || hostport_len >= sizeof hp)
        return -1;
    memcpy(hp, p, hostport_len);
    hp[hostport_len] = '\0';
    if (strchr(hp, '@'))
        return -1; /* no user:password@ */
    char *portp = NULL;
    if (hp[0] == '[') {
        char *rb = strchr(hp, ']');
        if (!rb)
            return -1;
        *rb = '\0';
        snprintf(t->host, sizeof t->host, "%s", hp + 1);
        if (rb[1] == ':')
            portp = rb + 2;
        else if (rb[1])
            return -1;
    } else {
        char *colon = strchr(hp, ':');
        if (colon) {
            *colon = '\0';
            portp = colon + 1;
        }
        snprintf(t->host, sizeof t->host, "%s", hp);
    }
    if (!t->host[0])
        return -1;
    if (portp) {
        long port;
        if (parse_long(portp, 1, 65535, &port) != 0)
            return -1;
        t->port = (int)port;
    }
    if ((size_t)snprintf(t->path, sizeof t->path, "%s/ws", prefix) >= sizeof t->path)
        return -1;
    return 0;
}

/* lws logs only with -vv (its warnings, on stderr). */
static void lws_log_emit(int level, const char *line) { fprintf(stderr, "lws: %s", line); }

typedef struct tail_args {
    long count;
    bool no_snapshot, reconnect;
} tail_args_t;

static int tail_opt(void *ud, int id, const char *val)
{
    tail_args_t *a = ud;
    switch (id) {
    case O_COUNT:
        if (parse_long(val, 1, LONG_MAX, &a->count) != 0) {
            err("--count wants a positive number, not '%s'", val);
            return EX_USAGE;
        }
        return -1;
    case O_NO_SNAPSHOT:
        a->no_snapshot = true;
        return -1;
    case O_RECONNECT:
        a->reconnect = true;
        return -1;
    default:
        return EX_USAGE;
    }
}

static const optdef_t tail_opts[] = {
    {"--count", 'n', true, O_COUNT},
    {"--no-snapshot", 0, false, O_NO_SNAPSHOT},
    {"--reconnect", 0, false, O_RECONNECT},
    {NULL, 0, false, 0},
};

static int cmd_tail(ctl_opts_t *o, int argc, char **argv)
{
    tail_args_t a = {0};
    const char *pos[CTL_MAX_FILTERS];
    int npos;
    int rc = parse_cmd_args(o, argc, argv, tail_opts, tail_opt, &a, usage_tail, pos, CTL_MAX_FILTERS, &npos);
    if (rc >= 0)
        return rc;
    if (npos < 1) {
        err("which topics? ccgwctl tail FILTER... (e.g. 'ccgw/v1/+/env/#'; try --help)");
        return EX_USAGE;
    }
    tail_ctx_t *t = calloc(1, sizeof *t);
    if (!t) {
        err("out of memory");
        return EX_FAIL;
    }
    t->o = o;
    t->filters = pos;
    t->n_filters = npos;
    t->count = a.count;
    t->no_snapshot = a.no_snapshot;
    t->reconnect = a.reconnect;
    if (tail_parse_url(t, o->url) != 0) {
        err("cannot take host and port from URL %s", o->url);
        free(t);
        return EX_USAGE;
    }
    if (o->token)
        snprintf(t->authz, sizeof t->authz, "Bearer %s", o->token);

    lws_set_log_level(o->verbose > 1 ? (LLL_ERR | LLL_WARN) : 0, lws_log_emit);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = tail_protocols;
    info.gid = -1;
    info.uid = -1;
    info.user = t;
    info.timeout_secs = (unsigned int)o->timeout_s;
    info.connect_timeout_secs = (unsigned int)o->timeout_s;
    if (t->tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        if (o->cacert)
            info.client_ssl_ca_filepath = o->cacert;
    }
    t->ctx = lws_create_context(&info);
    if (!t->ctx) {
        err("cannot create the WebSocket client context");
        free(t);
        return EX_FAIL;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    t->deadline_us = now_us() + (int64_t)o->timeout_s * 1000000;
    lws_sul_schedule(t->ctx, 0, &t->sul_tick, tail_tick, 200 * LWS_US_PER_MS);
    if (tail_connect(t) != 0)
        lws_sul_schedule(t->ctx, 0, &t->sul_retry, tail_retry_cb, 500 * LWS_US_PER_MS);

    while (!t->done && !g_stop) {
        if (lws_service(t->ctx, 0) < 0 && !g_stop && !t->done) {
            err("the WebSocket service loop failed");
            t->exit_code = EX_FAIL;
            break;
        }
    }
    rc = g_stop && !t->done ? EX_OK : t->exit_code;
    lws_sul_cancel(&t->sul_tick);
    lws_sul_cancel(&t->sul_retry);
    lws_context_destroy(t->ctx);
    free(t->rx);
    free(t);
    fflush(stdout);
    return rc;
}

/* ========================================================================== */
/* main                                                                        */
/* ========================================================================== */

static const struct {
    const char *name;
    cmd_fn fn;
    const char *help;
} g_cmds[] = {
    {"status", cmd_status, usage_status}, {"devices", cmd_devices, usage_devices},
    {"alarms", cmd_alarms, usage_alarms}, {"tail", cmd_tail, usage_tail},
    {"send", cmd_send, usage_send},       {"ack", cmd_ack, usage_ack},
};

int main(int argc, char **argv)
{
    ctl_opts_t o;
    memset(&o, 0, sizeof o);
    o.timeout_s = CTL_DEFAULT_TIMEOUT_S;
    signal(SIGPIPE, SIG_IGN);

    /* global options before the command */
    argscan_t s = {.argc = argc, .argv = argv, .i = 1, .stop_at_positional = true};
    for (;;) {
        const char *val;
        int id = scan_next(&s, &val);
        if (id == -1)
            break;
        if (id == -2)
            return EX_USAGE;
        if (id == O_HELP) {
            fputs(usage_main, stdout);
            return EX_OK;
        }
        if (id == O_VERSION) {
            printf("ccgwctl %s\n", CCGW_VERSION);
            return EX_OK;
        }
        int g = apply_global(&o, id, val);
        if (g >= 10)
            return g - 10;
    }
    if (s.i >= argc) {
        fputs(usage_main, stderr);
        return EX_USAGE;
    }
    const char *name = argv[s.i];
    if (strcmp(name, "help") == 0) {
        if (s.i + 1 < argc) {
            for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++)
                if (strcmp(g_cmds[i].name, argv[s.i + 1]) == 0) {
                    fputs(g_cmds[i].help, stdout);
                    return EX_OK;
                }
            err("unknown command '%s'", argv[s.i + 1]);
            return EX_USAGE;
        }
        fputs(usage_main, stdout);
        return EX_OK;
    }
    for (size_t i = 0; i < sizeof g_cmds / sizeof g_cmds[0]; i++) {
        if (strcmp(g_cmds[i].name, name) == 0) {
            g_cmd = name;
            if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                err("cannot initialise libcurl");
                return EX_FAIL;
            }
            int rc = g_cmds[i].fn(&o, argc - s.i, argv + s.i);
            free(o.token);
            curl_global_cleanup();
            return rc;
        }
    }
    err("unknown command '%s' (commands: status devices alarms tail send ack; try --help)", name);
    return EX_USAGE;
}
