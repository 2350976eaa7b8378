/*
 * check_config: the command line outside of running.
 *  - ccgw --check-config: exit 0 on a valid file; exit 1 with every error as
 *    FILE:LINE:COL: message at the right place for an unknown key, a wrong
 *    type, a missing required option, a duplicate instance id, an unknown
 *    plugin (in the core's sections and in a plugin's options), several
 *    errors at once, a YAML syntax error and a missing file;
 *  - ccgw --config BAD refuses to start: exit 1, nothing published;
 *  - --version prints the plugin ABI; --list-plugins lists modbus;
 *    --describe-plugin modbus prints its option keys with their docs.
 */
#include "harness.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static h_env *E;

static int group_setup(void **state)
{
    E = h_env_new("check_config");
    h_current_env = E;
    return 0;
}

static int group_teardown(void **state)
{
    h_env_free(E);
    E = NULL;
    return 0;
}

/* ---- building configs line by line ------------------------------------------ */

#define MAX_LINES 64

typedef struct doc {
    const char *l[MAX_LINES];
    int n;
} doc;

static const char *const base_lines[] = {
    "gateway:",
    "  site: hq",
    "  id: gw1",
    "  log_level: info",
    "  plugin_dirs: [\"" CCGW_PLUGIN_DIR "\"]",
    "mqtt:",
    "  host: 127.0.0.1",
    "  port: 1883",
    "instances:",
    "  - id: room",
    "    plugin: modbus",
    "    options:",
    "      devices:",
    "        - id: th1",
    "          class: env",
    "          host: 127.0.0.1",
    "          port: 1502",
    "          unit_id: 2",
    "          points:",
    "            - {name: temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}",
};

static void doc_base(doc *d)
{
    d->n = 0;
    for (size_t i = 0; i < sizeof base_lines / sizeof base_lines[0]; i++)
        d->l[d->n++] = base_lines[i];
}

/* 1-based line of the (first, or n-th) line equal to text */
static int doc_line(const doc *d, const char *text, int nth)
{
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->l[i], text) == 0 && --nth == 0)
            return i + 1;
    return -1;
}

static void doc_insert_after(doc *d, const char *after, const char *text)
{
    int at = doc_line(d, after, 1);
    assert_true(at > 0 && d->n < MAX_LINES);
    memmove(&d->l[at + 1], &d->l[at], (size_t)(d->n - at) * sizeof d->l[0]);
    d->l[at] = text;
    d->n++;
}

static void doc_replace(doc *d, const char *old, const char *text)
{
    int at = doc_line(d, old, 1);
    assert_true(at > 0);
    d->l[at - 1] = text;
}

static void doc_remove(doc *d, const char *old)
{
    int at = doc_line(d, old, 1);
    assert_true(at > 0);
    memmove(&d->l[at - 1], &d->l[at], (size_t)(d->n - at) * sizeof d->l[0]);
    d->n--;
}

static void doc_append(doc *d, const char *text)
{
    assert_true(d->n < MAX_LINES);
    d->l[d->n++] = text;
}

static void doc_write(const doc *d, const char *name, char *path, size_t len)
{
    size_t cap = 8192, n = 0;
    char *buf = calloc(1, cap);
    assert_non_null(buf);
    for (int i = 0; i < d->n; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\n", d->l[i]);
    assert_true(n < cap);
    h_env_path(E, name, path, len);
    assert_int_equal(h_write_file(path, buf), 0);
    free(buf);
}

/* column (1-based) of the first non-blank character, past a "- " */
static int key_col(const char *line)
{
    int c = 0;
    while (line[c] == ' ')
        c++;
    if (line[c] == '-' && line[c + 1] == ' ') {
        c += 2;
        while (line[c] == ' ')
            c++;
    }
    return c + 1;
}

/* column (1-based) of the value of a "key: value" line */
static int value_col(const char *line)
{
    const char *colon = strstr(line, ": ");
    assert_non_null(colon);
    int c = (int)(colon - line) + 2;
    while (line[c] == ' ')
        c++;
    return c + 1;
}

/* ---- running ccgw ------------------------------------------------------------ */

typedef struct run_result {
    int status;
    char *out, *err;
} run_result;

static run_result run_ccgw(const char *a1, const char *a2, const char *a3, const char *a4)
{
    const char *argv[] = {CCGW_BIN, a1, a2, a3, a4, NULL};
    run_result r;
    r.status = h_run(E, "ccgw", argv, h_scaled(20000), &r.out, &r.err);
    return r;
}

static void run_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

static int exit_code(int status)
{
    return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* true when err has a line "path:LINE:COL: ..." with that line (and column
 * when col > 0) whose message contains `needle` (may be NULL) */
static bool has_diag(const char *err, const char *path, int line, int col, const char *needle)
{
    size_t pl = strlen(path);
    for (const char *p = err; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > pl && strncmp(p, path, pl) == 0 && p[pl] == ':') {
            char *end;
            long l = strtol(p + pl + 1, &end, 10);
            if (*end == ':') {
                long c = strtol(end + 1, &end, 10);
                if (*end == ':' && l == line && (col <= 0 || c == col)) {
                    if (!needle)
                        return true;
                    char msg[2048];
                    size_t ml = len < sizeof msg - 1 ? len : sizeof msg - 1;
                    memcpy(msg, p, ml);
                    msg[ml] = '\0';
                    if (strstr(msg, needle))
                        return true;
                }
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    return false;
}

/* every line of err that starts with "path:" has the FILE:LINE:COL: shape */
static int count_diags(const char *err, const char *path)
{
    int n = 0;
    size_t pl = strlen(path);
    for (const char *p = err; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, path, pl) == 0 && p[pl] == ':' && isdigit((unsigned char)p[pl + 1])) {
            char *end;
            strtol(p + pl + 1, &end, 10);
            if (*end == ':' && isdigit((unsigned char)end[1])) {
                strtol(end + 1, &end, 10);
                if (*end == ':' && end[1] == ' ')
                    n++;
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    return n;
}

typedef struct expect_diag {
    int line, col;
    const char *needle;
} expect_diag;

static void check_bad(const char *name, const doc *d, const expect_diag *want, size_t nwant, int min_diags)
{
    char path[PATH_MAX];
    doc_write(d, name, path, sizeof path);
    run_result r = run_ccgw("--check-config", path, NULL, NULL);
    h_log("%s: --check-config -> status %d, stderr:\n%s", name, r.status, r.err);
    H_ASSERT(exit_code(r.status) == 1, "%s: --check-config must exit 1, got %d; stderr: %s", name,
             exit_code(r.status), r.err);
    for (size_t i = 0; i < nwant; i++) {
        H_ASSERT(has_diag(r.err, path, want[i].line, want[i].col, want[i].needle),
                 "%s: no \"%s:%d:%d: ...%s...\" on stderr:\n%s", name, path, want[i].line, want[i].col,
                 want[i].needle ? want[i].needle : "", r.err);
    }
    H_ASSERT(count_diags(r.err, path) >= min_diags, "%s: %d diagnostics for %d errors", name,
             count_diags(r.err, path), min_diags);
    run_free(&r);
}

/* ---- tests --------------------------------------------------------------------- */

static void valid_files(void **state)
{
    char path[PATH_MAX];
    doc d;
    doc_base(&d);
    doc_write(&d, "valid-small.yaml", path, sizeof path);
    run_result r = run_ccgw("--check-config", path, NULL, NULL);
    H_ASSERT(exit_code(r.status) == 0, "--check-config %s: exit %d; stderr: %s", path, exit_code(r.status), r.err);
    H_ASSERT(count_diags(r.err, path) == 0, "diagnostics for a valid file: %s", r.err);
    run_free(&r);

    /* the rig's full config (the register maps of config/demo.yaml) */
    h_gw_opts o = {.mqtt_port = 1883, .hvac_port = 1502, .env_port = 1502, .keepalive_s = 5};
    H_ASSERT(h_gw_write_config(E, "valid-full.yaml", &o, path, sizeof path) == 0, "write");
    r = run_ccgw("--check-config", path, NULL, NULL);
    H_ASSERT(exit_code(r.status) == 0, "--check-config %s: exit %d; stderr: %s", path, exit_code(r.status), r.err);
    run_free(&r);
}

static void unknown_keys(void **state)
{
    doc d;
    doc_base(&d);
    doc_insert_after(&d, "  port: 1883", "  colour: blue");
    expect_diag w1[] = {{doc_line(&d, "  colour: blue", 1), 3, "colour"}};
    check_bad("unknown-key-core.yaml", &d, w1, 1, 1);

    doc_base(&d);
    doc_insert_after(&d, "          unit_id: 2", "          colour: red");
    expect_diag w2[] = {{doc_line(&d, "          colour: red", 1), 11, "colour"}};
    check_bad("unknown-key-plugin.yaml", &d, w2, 1, 1);
}

static void wrong_types(void **state)
{
    doc d;
    doc_base(&d);
    doc_replace(&d, "  port: 1883", "  port: lots");
    /* at the value */
    expect_diag w1[] = {{doc_line(&d, "  port: lots", 1), value_col("  port: lots"), "port"}};
    check_bad("wrong-type-core.yaml", &d, w1, 1, 1);

    doc_base(&d);
    doc_replace(&d, "          unit_id: 2", "          unit_id: two");
    expect_diag w2[] = {{doc_line(&d, "          unit_id: two", 1), value_col("          unit_id: two"), "unit_id"}};
    check_bad("wrong-type-plugin.yaml", &d, w2, 1, 1);

    doc_base(&d);
    doc_replace(&d, "          port: 1502", "          port: 70000");
    expect_diag w3[] = {{doc_line(&d, "          port: 70000", 1), value_col("          port: 70000"), "port"}};
    check_bad("out-of-range-plugin.yaml", &d, w3, 1, 1);
}

static void missing_required(void **state)
{
    doc d;
    doc_base(&d);
    doc_remove(&d, "          class: env");
    /* reported at the mapping that lacks it: the device's first key */
    const char *dev = "        - id: th1";
    expect_diag w1[] = {{doc_line(&d, dev, 1), key_col(dev), "class"}};
    check_bad("missing-class.yaml", &d, w1, 1, 1);

    doc_base(&d);
    doc_remove(&d, "    plugin: modbus");
    const char *inst = "  - id: room";
    expect_diag w2[] = {{doc_line(&d, inst, 1), key_col(inst), "plugin"}};
    check_bad("missing-plugin.yaml", &d, w2, 1, 1);
}

static void duplicate_instance(void **state)
{
    doc d;
    doc_base(&d);
    doc_append(&d, "  - id: room");
    doc_append(&d, "    plugin: modbus");
    doc_append(&d, "    options:");
    doc_append(&d, "      devices:");
    doc_append(&d, "        - id: th2");
    doc_append(&d, "          class: env");
    doc_append(&d, "          host: 127.0.0.1");
    doc_append(&d, "          port: 1503");
    doc_append(&d, "          points:");
    doc_append(&d, "            - {name: temperature, table: input, address: 0, type: int16}");
    /* at the second one's value, naming the first */
    char first[PATH_MAX + 32];
    h_env_path(E, "duplicate-instance.yaml", first, sizeof first);
    snprintf(first + strlen(first), sizeof first - strlen(first), ":%d:", doc_line(&d, "  - id: room", 1));
    expect_diag w[] = {{doc_line(&d, "  - id: room", 2), value_col("  - id: room"), "room"},
                       {doc_line(&d, "  - id: room", 2), value_col("  - id: room"), first}};
    check_bad("duplicate-instance.yaml", &d, w, 2, 1);
}

static void unknown_plugin(void **state)
{
    doc d;
    doc_base(&d);
    doc_replace(&d, "    plugin: modbus", "    plugin: nosuch");
    expect_diag w[] = {{doc_line(&d, "    plugin: nosuch", 1), value_col("    plugin: nosuch"), "nosuch"}};
    check_bad("unknown-plugin.yaml", &d, w, 1, 1);
}

static void every_error_reported(void **state)
{
    doc d;
    doc_base(&d);
    doc_insert_after(&d, "  port: 1883", "  colour: blue");
    doc_replace(&d, "          unit_id: 2", "          unit_id: two");
    doc_insert_after(&d, "  id: gw1", "  site: again");
    expect_diag w[] = {
        {doc_line(&d, "  colour: blue", 1), 3, "colour"},
        {doc_line(&d, "          unit_id: two", 1), value_col("          unit_id: two"), "unit_id"},
        {doc_line(&d, "  site: again", 1), 3, "site"},
    };
    check_bad("three-errors.yaml", &d, w, 3, 3);
}

static void syntax_error_and_missing_file(void **state)
{
    doc d;
    doc_base(&d);
    doc_replace(&d, "  host: 127.0.0.1", "  host: [127.0.0.1");
    char path[PATH_MAX];
    doc_write(&d, "syntax.yaml", path, sizeof path);
    run_result r = run_ccgw("--check-config", path, NULL, NULL);
    H_ASSERT(exit_code(r.status) == 1, "syntax error: exit %d; stderr: %s", exit_code(r.status), r.err);
    H_ASSERT(count_diags(r.err, path) >= 1, "a YAML syntax error must be reported as FILE:LINE:COL: %s", r.err);
    run_free(&r);

    h_env_path(E, "no-such-file.yaml", path, sizeof path);
    r = run_ccgw("--check-config", path, NULL, NULL);
    H_ASSERT(exit_code(r.status) == 1, "missing file: exit %d; stderr: %s", exit_code(r.status), r.err);
    H_ASSERT(strstr(r.err, path) != NULL, "the message names the file: %s", r.err);
    run_free(&r);
}

static void bad_config_refuses_to_start(void **state)
{
    h_broker *b = h_broker_start(E, 0);
    H_ASSERT(b != NULL, "mosquitto");
    h_mqtt *sub = h_mqtt_new(b->port, "bad");
    H_ASSERT(sub && h_mqtt_sub(sub, "#", 1) == 0, "subscribe");

    char port_line[64];
    snprintf(port_line, sizeof port_line, "  port: %d", b->port);
    doc d;
    doc_base(&d);
    doc_replace(&d, "  port: 1883", port_line);
    doc_insert_after(&d, port_line, "  colour: blue");
    char path[PATH_MAX];
    doc_write(&d, "bad-run.yaml", path, sizeof path);
    run_result r = run_ccgw("--config", path, NULL, NULL);
    H_ASSERT(exit_code(r.status) == 1, "ccgw --config BAD must exit 1, got status %d; stderr: %s", r.status, r.err);
    H_ASSERT(has_diag(r.err, path, doc_line(&d, "  colour: blue", 1), 3, "colour"), "diagnostic: %s", r.err);

    /* nothing was published: a marker published now arrives first */
    size_t from = h_mqtt_mark(sub);
    H_ASSERT(from == 0, "%zu messages before the marker", from);
    H_ASSERT(h_mqtt_pub(sub, "it/marker", "x", 1, 1, false, NULL, NULL, 0) == 0, "publish");
    const h_msg *first = H_EXPECT(sub, 0, "#", NULL, h_scaled(3000));
    H_ASSERT(strcmp(first->topic, "it/marker") == 0, "ccgw published %s: %s", first->topic, first->payload);
    h_mqtt_free(sub);

    /* and nothing is retained */
    h_mqtt *late = h_mqtt_new(b->port, "bad-late");
    H_ASSERT(late && h_mqtt_sub(late, H_PREFIX "/#", 1) == 0 && h_mqtt_sub(late, "it/#", 1) == 0, "subscribe");
    H_ASSERT(h_mqtt_pub(late, "it/marker2", "x", 1, 1, false, NULL, NULL, 0) == 0, "publish");
    first = H_EXPECT(late, 0, "#", NULL, h_scaled(3000));
    H_ASSERT(strcmp(first->topic, "it/marker2") == 0, "retained %s: %s", first->topic, first->payload);
    h_mqtt_free(late);
    h_broker_free(b);
    run_free(&r);
}

static void version(void **state)
{
    run_result r = run_ccgw("--version", NULL, NULL, NULL);
    H_ASSERT(exit_code(r.status) == 0, "--version: exit %d; %s", exit_code(r.status), r.err);
    const char *abi = strstr(r.out, "ABI");
    H_ASSERT(abi != NULL, "--version must print the plugin ABI: %s", r.out);
    const char *p = abi + 3;
    while (*p == ' ' || *p == ':')
        p++;
    H_ASSERT(isdigit((unsigned char)p[0]) && strchr(p, '.') && isdigit((unsigned char)strchr(p, '.')[1]),
             "ABI MAJOR.MINOR: %s", r.out);
    H_ASSERT(strstr(r.out, "ccgw") != NULL, "names the program: %s", r.out);
    run_free(&r);
}

static void list_plugins(void **state)
{
    run_result r = run_ccgw("--list-plugins", "--plugin-dir", CCGW_PLUGIN_DIR, NULL);
    H_ASSERT(exit_code(r.status) == 0, "--list-plugins: exit %d; %s", exit_code(r.status), r.err);
    bool found = false;
    for (const char *p = r.out; p && *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "modbus", 6) == 0 && (p[6] == ' ' || p[6] == '\t' || p[6] == '\n' || p[6] == '\0'))
            found = true;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    H_ASSERT(found, "--list-plugins must list modbus at the start of a line: %s", r.out);
    run_free(&r);
}

/* the line that starts (after blanks) with `key` followed by a blank, and the
 * next line: its doc, indented deeper than a nested option would be (key + 3
 * or more) and a few words long */
static void has_option_with_doc(const char *out, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = out; p && *p;) {
        const char *s = p;
        while (*s == ' ')
            s++;
        const char *eol = strchr(p, '\n');
        if (strncmp(s, key, kl) == 0 && (s[kl] == ' ' || s[kl] == '\t' || s[kl] == ':')) {
            H_ASSERT(eol != NULL, "no doc after option %s", key);
            const char *n = eol + 1;
            const char *neol = strchr(n, '\n');
            size_t nl = neol ? (size_t)(neol - n) : strlen(n);
            size_t ind = 0;
            while (ind < nl && n[ind] == ' ')
                ind++;
            int words = 0;
            for (size_t i = ind + 1; i < nl; i++)
                if (n[i] == ' ' && n[i - 1] != ' ')
                    words++;
            H_ASSERT(ind >= (size_t)(s - p) + 3 && words >= 2,
                     "option %s has no doc line after it: \"%.*s\"", key, (int)nl, n);
            return;
        }
        p = eol ? eol + 1 : NULL;
    }
    H_FAIL("--describe-plugin modbus does not list option %s:\n%s", key, out);
}

/* modbus `profiles`: devices share a register map by profile id */
static void modbus_profiles(void **state)
{
    char path[PATH_MAX];
    doc d;
    doc_base(&d);
    doc_insert_after(&d, "    options:", "      profiles:");
    doc_insert_after(&d, "      profiles:", "        - id: th");
    doc_insert_after(&d, "        - id: th", "          points:");
    doc_insert_after(&d, "          points:",
                     "            - {name: humidity, table: input, address: 1, type: uint16, scale: 0.1}");
    doc_append(&d, "        - {id: th2, class: env, host: 127.0.0.1, port: 1502, unit_id: 3, profile: th}");
    doc_write(&d, "profile-ok.yaml", path, sizeof path);
    run_result r = run_ccgw("--check-config", path, NULL, NULL);
    H_ASSERT(exit_code(r.status) == 0, "--check-config %s: exit %d; stderr: %s", path, exit_code(r.status), r.err);
    run_free(&r);

    /* an unknown profile, and points and a profile together */
    const char *bad = "        - {id: th3, class: env, host: 127.0.0.1, port: 1502, unit_id: 4, profile: nosuch}";
    doc_append(&d, bad);
    expect_diag w1[] = {{doc_line(&d, bad, 1), 0, "no profile 'nosuch'"}};
    check_bad("profile-unknown.yaml", &d, w1, 1, 1);

    doc_base(&d);
    doc_insert_after(&d, "    options:", "      profiles:");
    doc_insert_after(&d, "      profiles:", "        - id: th");
    doc_insert_after(&d, "        - id: th", "          points:");
    doc_insert_after(&d, "          points:", "            - {name: humidity, table: input, address: 1}");
    doc_insert_after(&d, "          unit_id: 2", "          profile: th");
    expect_diag w2[] = {{doc_line(&d, "          profile: th", 1), value_col("          profile: th"),
                         "points or profile, not both"}};
    check_bad("profile-and-points.yaml", &d, w2, 1, 1);
}

/* modbus `connection: shared`: units behind one host:port share a link, so their ids differ */
static void modbus_shared_connection(void **state)
{
    char path[PATH_MAX];
    doc d;
    doc_base(&d);
    doc_insert_after(&d, "          unit_id: 2", "          connection: shared");
    const char *ok2 = "        - {id: th2, class: env, host: 127.0.0.1, port: 1502, unit_id: 3, connection: shared, "
                      "points: [{name: t, table: input, address: 0}]}";
    doc_append(&d, ok2);
    doc_write(&d, "shared-ok.yaml", path, sizeof path);
    run_result r = run_ccgw("--check-config", path, NULL, NULL);
    H_ASSERT(exit_code(r.status) == 0, "--check-config %s: exit %d; stderr: %s", path, exit_code(r.status), r.err);
    run_free(&r);

    const char *dup = "        - {id: th3, class: env, host: 127.0.0.1, port: 1502, unit_id: 2, connection: shared, "
                      "points: [{name: t, table: input, address: 0}]}";
    doc_append(&d, dup);
    expect_diag w1[] = {{doc_line(&d, dup, 1), 0, "unit_id 2 is already used on the shared connection"}};
    check_bad("shared-dup-unit.yaml", &d, w1, 1, 1);

    /* the same unit with its own connection is fine (a gateway may take several connections) */
    doc_base(&d);
    doc_append(&d, "        - {id: th2, class: env, host: 127.0.0.1, port: 1502, unit_id: 2, "
                   "points: [{name: t, table: input, address: 0}]}");
    doc_write(&d, "own-same-unit.yaml", path, sizeof path);
    r = run_ccgw("--check-config", path, NULL, NULL);
    H_ASSERT(exit_code(r.status) == 0, "--check-config %s: exit %d; stderr: %s", path, exit_code(r.status), r.err);
    run_free(&r);
}

static void describe_plugin(void **state)
{
    run_result r = run_ccgw("--describe-plugin", "modbus", "--plugin-dir", CCGW_PLUGIN_DIR);
    H_ASSERT(exit_code(r.status) == 0, "--describe-plugin modbus: exit %d; %s", exit_code(r.status), r.err);
    static const char *const keys[] = {"devices", "id", "class", "unit_id", "poll_interval_ms", "timeout_ms",
                                       "offline_after", "points", "address", "word_order"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        has_option_with_doc(r.out, keys[i]);
    H_ASSERT(strstr(r.out, "required") != NULL, "required options are marked: %s", r.out);
    H_ASSERT(strstr(r.out, "1000") != NULL, "defaults are shown (poll_interval_ms 1000): %s", r.out);
    run_free(&r);

    r = run_ccgw("--describe-plugin", "nosuch", "--plugin-dir", CCGW_PLUGIN_DIR);
    H_ASSERT(exit_code(r.status) == 1, "--describe-plugin nosuch: exit %d", exit_code(r.status));
    H_ASSERT(strstr(r.err, "nosuch") != NULL, "names the plugin: %s", r.err);
    run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_files),
        cmocka_unit_test(unknown_keys),
        cmocka_unit_test(wrong_types),
        cmocka_unit_test(missing_required),
        cmocka_unit_test(duplicate_instance),
        cmocka_unit_test(unknown_plugin),
        cmocka_unit_test(every_error_reported),
        cmocka_unit_test(syntax_error_and_missing_file),
        cmocka_unit_test(bad_config_refuses_to_start),
        cmocka_unit_test(version),
        cmocka_unit_test(list_plugins),
        cmocka_unit_test(describe_plugin),
        cmocka_unit_test(modbus_profiles),
        cmocka_unit_test(modbus_shared_connection),
    };
    int failed = cmocka_run_group_tests_name("integration.check_config", tests, group_setup, group_teardown);
    return h_finish(failed);
}
