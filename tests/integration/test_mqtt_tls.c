/*
 * mqtt_tls: ccgw's MQTT north side over TLS, with a client certificate and a
 * user name / password, against a real mosquitto.
 *
 * Setup (in the test's temporary directory): the openssl CLI makes a CA, a
 * server certificate for 127.0.0.1 / localhost and a client certificate
 * signed by it (EC P-256, fast), plus a second CA that signed nothing;
 * mosquitto_passwd makes a password file with ccgw / s3cret. One mosquitto
 * runs with per_listener_settings: listener 1 (TLS, require_certificate,
 * password file, no anonymous) is the gateways' broker; listener 2 (plain,
 * anonymous, 127.0.0.1 only) is for the test's own subscriber. Then four
 * gateways start at once, each on its own site so nothing they could
 * publish mixes:
 *   hq/gw1      ca + client cert + key + ccgw / password from !file  -> works
 *   badpw/gw2   the same, but the password from !env is wrong       -> refused
 *   nocert/gw3  only ca_file (no client certificate)                -> TLS rejected
 *   badca/gw4   a ca_file that did not sign the broker's certificate -> server refused
 * Asserts:
 *  1. gw1 connects over TLS: its retained status {"online":true} and good1
 *     telemetry reach the plain-listener subscriber, and a command published
 *     there is answered ok on .../cmd/echo/reply (the subscription works over
 *     TLS too); the broker saw user 'ccgw'.
 *  2-4. each broken gateway stays alive, publishes nothing (no status online),
 *     logs why, keeps retrying (>= 2 attempts as seen by the broker) with
 *     backoff (<= 8 attempts in ~4 s, and under half a core of CPU).
 *  3b. nocert's gateway is restarted with its client certificate and connects.
 *  5. --check-config fails (exit 1, FILE:LINE:COL) on cert_file without
 *     key_file and on key_file without cert_file; the working file passes.
 *  6. SIGTERM: every gateway exits 0 (sanitizers clean on the TLS and retry
 *     paths) and gw1 publishes {"online":false,"reason":"shutdown"} over TLS.
 */
#include "harness.h"  /* _GNU_SOURCE (strcasestr) comes from ccgw_warnings */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must be defined"
#endif
#ifndef OPENSSL_BIN
#define OPENSSL_BIN "/usr/bin/openssl"
#endif
#ifndef MOSQUITTO_PASSWD_BIN
#define MOSQUITTO_PASSWD_BIN "/usr/bin/mosquitto_passwd"
#endif

#define BAD_PW_ENV "CCGW_IT_MQTT_TLS_WRONG_PASSWORD"
#define OBSERVE_MS 4000 /* how long the broken gateways are watched */

typedef struct gw_run {
    const char *site, *id;
    const char *password; /* YAML value of mqtt.password */
    const char *tls;      /* YAML flow mapping of mqtt.tls */
    const char *broker_needle; /* what the broker logs once per refused attempt */
    h_proc *p;
    char config[PATH_MAX];
    int64_t t_start;
} gw_run;

static gw_run GOOD = {.site = "hq", .id = "gw1", .password = "!file mqtt.pass",
                      .tls = "{ca_file: ca.crt, cert_file: client.crt, key_file: client.key}"};
static gw_run BADPW = {.site = "badpw", .id = "gw2", .password = "!env " BAD_PW_ENV,
                       .tls = "{ca_file: ca.crt, cert_file: client.crt, key_file: client.key}",
                       .broker_needle = "disconnected, not authorised"};
static gw_run NOCERT = {.site = "nocert", .id = "gw3", .password = "!file mqtt.pass",
                        .tls = "{ca_file: ca.crt}",
                        .broker_needle = "peer did not return a certificate"};
static gw_run BADCA = {.site = "badca", .id = "gw4", .password = "!file mqtt.pass",
                       .tls = "{ca_file: other-ca.crt, cert_file: client.crt, key_file: client.key}",
                       .broker_needle = "alert unknown ca"};
/* nocert's gateway, restarted with its client certificate (3b) */
static h_proc *NOCERT_FIXED;

static h_env *E;
static h_proc *BROKER;
static int TLS_PORT, PLAIN_PORT;
static h_mqtt *S;

/* ---- helpers ---------------------------------------------------------------- */

static int run_tool(const char *name, const char *const argv[]) { return h_run_ok(E, name, argv); }

/* DIR/file in a ring of buffers: valid for the next 15 calls; keep a copy
 * of anything needed longer. */
static const char *P(const char *file)
{
    static char bufs[16][PATH_MAX];
    static unsigned next;
    char *b = bufs[next++ % 16];
    h_env_path(E, file, b, PATH_MAX);
    return b;
}

/* A CA, a server certificate (127.0.0.1, localhost) and a client certificate
 * it signed, and another CA; EC P-256 keys; a private openssl config so the
 * system's openssl.cnf does not matter. */
static int make_pki(void)
{
    if (h_pki_ca(E, "ca", "/CN=ccgw-it-ca") != 0 || h_pki_ca(E, "other-ca", "/CN=ccgw-it-other-ca") != 0 ||
        h_pki_leaf(E, "ca", "server", "/CN=127.0.0.1", "server", 2) != 0 ||
        h_pki_leaf(E, "ca", "client", "/CN=ccgw-it-client", "client", 3) != 0)
        return -1;
    /* sanity: the chain verifies (so a failure below is the gateway's) */
    const char *verify[] = {OPENSSL_BIN, "verify", "-CAfile", P("ca.crt"), P("server.crt"), P("client.crt"), NULL};
    return run_tool("openssl-verify", verify);
}

static int start_broker(void)
{
    const char *pw_argv[] = {MOSQUITTO_PASSWD_BIN, "-b", "-c", P("mosquitto.passwd"), "ccgw", "s3cret", NULL};
    if (run_tool("mosquitto_passwd", pw_argv) != 0)
        return -1;
    for (int attempt = 0; attempt < 5; attempt++) {
        TLS_PORT = h_free_port();
        PLAIN_PORT = h_free_port();
        if (TLS_PORT <= 0 || PLAIN_PORT <= 0 || TLS_PORT == PLAIN_PORT)
            continue;
        char conf[4096];
        snprintf(conf, sizeof conf,
                 "# private broker of integration test mqtt_tls\n"
                 "per_listener_settings true\n"
                 "persistence false\n"
                 "set_tcp_nodelay true\n"
                 "max_queued_messages 100000\n"
                 "log_dest stderr\n"
                 "%s"
                 "# 1: the gateways: TLS, client certificate required, password file\n"
                 "listener %d 127.0.0.1\n"
                 "cafile %s\n"
                 "certfile %s\n"
                 "keyfile %s\n"
                 "require_certificate true\n"
                 "use_identity_as_username false\n"
                 "allow_anonymous false\n"
                 "password_file %s\n"
                 "# 2: the test's subscriber: plain, anonymous, loopback only\n"
                 "listener %d 127.0.0.1\n"
                 "allow_anonymous true\n",
                 /* as root, stay root: keeps PR_SET_PDEATHSIG and reads the 0600 keys */
                 geteuid() == 0 ? "user root\n" : "", TLS_PORT, P("ca.crt"), P("server.crt"), P("server.key"),
                 P("mosquitto.passwd"), PLAIN_PORT);
        if (h_write_file(P("mosquitto.conf"), conf) != 0)
            return -1;
        const char *argv[] = {MOSQUITTO_BIN, "-c", P("mosquitto.conf"), NULL};
        BROKER = h_spawn(E, "mosquitto", argv);
        if (BROKER && h_wait_port(PLAIN_PORT, BROKER, h_scaled(5000)) &&
            h_wait_port(TLS_PORT, BROKER, h_scaled(2000))) {
            h_log("mosquitto: TLS on 127.0.0.1:%d, plain on 127.0.0.1:%d", TLS_PORT, PLAIN_PORT);
            return 0;
        }
        h_proc_dump_log(BROKER, 20);
        h_proc_stop(BROKER, 1000);
        BROKER = NULL;
    }
    return -1;
}

static int write_gw_config(gw_run *g, const char *file, const char *tls)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "gateway:\n"
             "  site: %s\n"
             "  id: %s\n"
             "  data_dir: data-%s\n"
             "  plugin_dirs: [\"%s\"]\n"
             "mqtt:\n"
             "  host: 127.0.0.1\n"
             "  port: %d\n"
             "  username: ccgw\n"
             "  password: %s\n"
             "  tls: %s\n"
             "instances:\n"
             "  - id: good\n"
             "    plugin: good\n"
             "    options: {interval_ms: 100}\n",
             g->site, g->id, g->site, TEST_PLUGIN_DIR, TLS_PORT, g->password, tls);
    h_env_path(E, file, g->config, sizeof g->config);
    return h_write_file(g->config, yaml);
}

static int start_gw(gw_run *g)
{
    char file[64];
    snprintf(file, sizeof file, "ccgw-%s.yaml", g->site);
    if (write_gw_config(g, file, g->tls) != 0)
        return -1;
    g->t_start = h_now_ms();
    g->p = h_gw_start(E, g->config);
    return g->p ? 0 : -1;
}

static size_t count_in_file(const char *path, const char *needle)
{
    char *text = h_read_file(path);
    size_t n = 0;
    for (const char *s = text; s && (s = strstr(s, needle)) != NULL; s += strlen(needle))
        n++;
    free(text);
    return n;
}

/* The first line of the file containing needle (case-insensitive), or false. */
static bool file_has(const char *path, const char *needle, char *line, size_t len)
{
    char *text = h_read_file(path);
    const char *hit = text ? strcasestr(text, needle) : NULL;
    if (hit && line && len) {
        const char *b = hit, *e = strchr(hit, '\n');
        while (b > text && b[-1] != '\n')
            b--;
        size_t n = e ? (size_t)(e - b) : strlen(b);
        snprintf(line, len, "%.*s", (int)(n < len ? n : len - 1), b);
    }
    free(text);
    return hit != NULL;
}

/* utime + stime of a process, in milliseconds (-1 when unknown). */
static long cpu_ms(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *text = h_read_file(path);
    const char *r = text ? strrchr(text, ')') : NULL;
    long ms = -1;
    unsigned long ut, st;
    /* after "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (r && sscanf(r + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
        ms = (long)((ut + st) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
    free(text);
    return ms;
}

/* ---- fixture ----------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    E = h_env_new("mqtt_tls");
    h_current_env = E;
    int64_t t = h_now_ms();
    if (make_pki() != 0)
        return -1;
    if (h_write_file(P("mqtt.pass"), "s3cret\n") != 0)
        return -1;
    h_log("certificates made in %lld ms", (long long)(h_now_ms() - t));
    if (start_broker() != 0)
        return -1;
    S = h_mqtt_new(PLAIN_PORT, "tls-watcher");
    if (!S || h_mqtt_sub(S, H_PREFIX "/#", 1) != 0)
        return -1;
    if (setenv(BAD_PW_ENV, "not-the-s3cret", 1) != 0)
        return -1;
    /* all four at once: the broken ones are watched while the good one works */
    gw_run *all[] = {&GOOD, &BADPW, &NOCERT, &BADCA};
    for (size_t i = 0; i < 4; i++)
        if (start_gw(all[i]) != 0)
            return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    h_proc *procs[] = {GOOD.p, BADPW.p, NOCERT.p, BADCA.p, NOCERT_FIXED};
    for (size_t i = 0; i < 5; i++)
        h_proc_signal(procs[i], SIGTERM);
    for (size_t i = 0; i < 5; i++)
        if (procs[i])
            h_proc_stop(procs[i], h_scaled(8000));
    h_mqtt_free(S);
    if (BROKER)
        h_proc_stop(BROKER, h_scaled(5000));
    h_env_free(E);
    return 0;
}

/* ---- 1: it works over TLS -------------------------------------------------------- */

static void tls_client_cert_and_password(void **state)
{
    (void)state;
    const h_msg *st = H_EXPECT(S, 0, H_PREFIX "/hq/gateway/gw1/status", "{\"online\":true}",
                               h_left_ms(GOOD.t_start, 8000));
    H_ASSERT(st->retain, "the status is retained: %s", st->payload);
    const h_msg *t = H_EXPECT(S, 0, H_PREFIX "/hq/env/good1/telemetry", "{}", h_left_ms(GOOD.t_start, 8000));
    H_ASSERT(json_is_integer(h_json_get(t->json, "values", "counter", NULL)), "counter: %s", t->payload);
    char why[256];
    H_ASSERT(h_envelope_ok(t->json, "hq", "env", "good1", "good", NULL, why, sizeof why), "%s: %s", why,
             t->payload);

    /* a command from the plain side reaches ccgw through its TLS subscription */
    size_t mark = h_mqtt_mark(S);
    const char *args = "{\"text\":\"hi\"}";
    H_ASSERT(h_mqtt_pub(S, H_PREFIX "/hq/env/good1/cmd/echo", args, (int)strlen(args), 1, false, NULL, NULL, 0) == 0,
             "publish the command");
    const h_msg *r = H_EXPECT(S, mark, H_PREFIX "/hq/env/good1/cmd/echo/reply",
                              "{\"ok\":true,\"command\":\"echo\",\"data\":{\"text\":\"hi\"}}", h_scaled(5000));
    H_ASSERT(h_envelope_ok(r->json, "hq", "env", "good1", "good", NULL, why, sizeof why), "%s: %s", why,
             r->payload);

    /* the gateway says where it is connected; the broker saw the user name */
    char want[128], line[512] = "";
    snprintf(want, sizeof want, "connected to 127.0.0.1:%d", TLS_PORT);
    H_ASSERT(h_proc_wait_log(GOOD.p, want, h_scaled(2000), line, sizeof line), "ccgw logs '%s'", want);
    H_ASSERT(file_has(h_proc_log(BROKER), "as ccgw-hq-gw1 (p5", line, sizeof line), "the broker saw ccgw-hq-gw1");
    H_ASSERT(strstr(line, "u'ccgw'"), "the broker saw user 'ccgw': %s", line);
    H_ASSERT(h_proc_alive(GOOD.p), "ccgw exited");
}

/* ---- 2-4: refused, alive, retrying with backoff ------------------------------------- */

static void assert_refused(gw_run *g, const char *const log_needles[], const char *what)
{
    h_sleep_ms(h_left_ms(g->t_start, OBSERVE_MS));
    int64_t wall = h_now_ms() - g->t_start;
    long cpu = cpu_ms(h_proc_pid(g->p));
    H_ASSERT(h_proc_alive(g->p), "%s: ccgw keeps running", what);

    /* nothing at all reached the broker from this gateway (its own site) */
    char filter[128];
    snprintf(filter, sizeof filter, H_PREFIX "/%s/#", g->site);
    size_t n = h_mqtt_collect(S, 0, filter, NULL, NULL, NULL, 0);
    if (n)
        h_mqtt_dump(S, 0, filter, 5);
    H_ASSERT(n == 0, "%s: no message on %s (status online or anything else), got %zu", what, filter, n);

    /* the gateway says why */
    char line[512] = "";
    bool said = false;
    for (size_t i = 0; log_needles[i] && !said; i++)
        said = file_has(h_proc_log(g->p), log_needles[i], line, sizeof line);
    H_ASSERT(said, "%s: the ccgw log names the refusal (%s ...)", what, log_needles[0]);
    h_log("%s: ccgw logged: %s", what, line);

    /* it keeps trying, with backoff: the broker logs one line per attempt.
     * reconnect.min_ms 500 doubling: attempts at about 0, 0.5, 1.5, 3.5 s, so 4
     * in OBSERVE_MS (5-6 with CCGW_IT_TIMEOUT_SCALE 2-4); a loop without
     * backoff makes hundreds, one that sleeps on only one of its two failure
     * paths about 11. */
    size_t attempts = count_in_file(h_proc_log(BROKER), g->broker_needle);
    h_log("%s: %zu attempts in %lld ms, %ld ms CPU", what, attempts, (long long)wall, cpu);
    H_ASSERT(attempts >= 2, "%s: ccgw retries (the broker logged '%s' %zu time(s) in %lld ms)", what,
             g->broker_needle, attempts, (long long)wall);
    H_ASSERT(attempts <= 8, "%s: ccgw backs off (the broker logged '%s' %zu times in %lld ms)", what,
             g->broker_needle, attempts, (long long)wall);
    H_ASSERT(cpu >= 0 && cpu < wall / 2, "%s: ccgw does not spin (%ld ms CPU in %lld ms)", what, cpu,
             (long long)wall);
}

static void wrong_password_refused(void **state)
{
    (void)state;
    static const char *const needles[] = {"not authorized", "refused", NULL};
    assert_refused(&BADPW, needles, "wrong password");
    char line[512] = "";
    H_ASSERT(file_has(h_proc_log(BADPW.p), "connection refused", line, sizeof line) &&
                 strcasestr(line, "not authorized"),
             "the refusal line says 'Not authorized': %s", line);
}

static void no_client_certificate_rejected(void **state)
{
    (void)state;
    /* TLS 1.3: the broker's alert arrives after the client's side of the handshake */
    static const char *const needles[] = {"certificate required", "handshake failure", "TLS error", "OpenSSL Error",
                                          "ended the TLS connection before accepting it", NULL};
    assert_refused(&NOCERT, needles, "no client certificate");
}

static void unknown_server_ca_refused(void **state)
{
    (void)state;
    static const char *const needles[] = {"certificate verify failed", "TLS error", NULL};
    assert_refused(&BADCA, needles, "CA that did not sign the broker");
}

/* 3b: the same site/gateway with its client certificate connects */
static void no_client_certificate_then_fixed(void **state)
{
    (void)state;
    h_proc_signal(NOCERT.p, SIGTERM); /* it takes up to 5 s to give up flushing */
    gw_run fixed = NOCERT;
    H_ASSERT(write_gw_config(&fixed, "ccgw-nocert-fixed.yaml",
                             "{ca_file: ca.crt, cert_file: client.crt, key_file: client.key}") == 0,
             "write config");
    size_t mark = h_mqtt_mark(S);
    int64_t t = h_now_ms();
    NOCERT_FIXED = h_gw_start(E, fixed.config);
    H_ASSERT(NOCERT_FIXED, "start ccgw");
    H_EXPECT(S, mark, H_PREFIX "/nocert/gateway/gw3/status", "{\"online\":true}", h_left_ms(t, 8000));
    H_EXPECT(S, mark, H_PREFIX "/nocert/env/good1/telemetry", "{}", h_left_ms(t, 8000));
}

/* ---- 5: --check-config ------------------------------------------------------------- */

static void check_config_cert_needs_key(void **state)
{
    (void)state;
    static const struct {
        const char *file, *tls, *want_pos, *want_msg;
    } cases[] = {
        /* line 11 is "  tls:"; the value sits on line 13 */
        {"cc-cert-only.yaml", "\n    ca_file: ca.crt\n    cert_file: client.crt", ":13:16: ",
         "'cert_file' needs 'key_file'"},
        {"cc-key-only.yaml", "\n    ca_file: ca.crt\n    key_file: client.key", ":13:15: ",
         "'key_file' needs 'cert_file'"},
    };
    for (size_t i = 0; i < 2; i++) {
        gw_run g = GOOD;
        H_ASSERT(write_gw_config(&g, cases[i].file, cases[i].tls) == 0, "write config");
        const char *argv[] = {CCGW_BIN, "--check-config", g.config, NULL};
        char *out = NULL, *err = NULL;
        int st = h_run(E, "check", argv, h_scaled(20000), &out, &err);
        char want[PATH_MAX + 64];
        snprintf(want, sizeof want, "%s%s", g.config, cases[i].want_pos);
        bool ok = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1 && err && strstr(err, want) &&
                  strstr(strstr(err, want), cases[i].want_msg);
        char buf[64];
        H_ASSERT(ok, "%s: want exit 1 and '%s%s' in stderr; got %s: %s%s", cases[i].file, want, cases[i].want_msg,
                 h_status_str(st, buf, sizeof buf), out ? out : "", err ? err : "");
        free(out);
        free(err);
    }
    /* the working file is valid (so the failures above are about the pairing) */
    const char *argv[] = {CCGW_BIN, "--check-config", GOOD.config, NULL};
    char *err = NULL;
    int st = h_run(E, "check", argv, h_scaled(20000), NULL, &err);
    H_ASSERT(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the good config passes: %s", err ? err : "");
    free(err);
}

/* ---- 6: graceful stop ----------------------------------------------------------------- */

static void sigterm_exits_zero(void **state)
{
    (void)state;
    size_t mark = h_mqtt_mark(S);
    h_proc *procs[] = {GOOD.p, BADPW.p, NOCERT.p, BADCA.p, NOCERT_FIXED};
    const char *names[] = {"hq/gw1", "badpw/gw2", "nocert/gw3", "badca/gw4", "nocert/gw3 (fixed)"};
    for (size_t i = 0; i < 5; i++)
        h_proc_signal(procs[i], SIGTERM); /* all at once: the refused ones flush for 5 s */
    for (size_t i = 0; i < 5; i++) {
        if (!procs[i])
            continue;
        int status = -1;
        H_ASSERT(h_proc_wait(procs[i], h_scaled(10000), &status), "%s: still running after SIGTERM",
                 names[i]);
        char buf[64];
        H_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: exit status %s", names[i],
                 h_status_str(status, buf, sizeof buf));
    }
    H_EXPECT(S, mark, H_PREFIX "/hq/gateway/gw1/status", "{\"online\":false,\"reason\":\"shutdown\"}",
             h_scaled(2000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tls_client_cert_and_password),
        cmocka_unit_test(check_config_cert_needs_key),
        cmocka_unit_test(wrong_password_refused),
        cmocka_unit_test(no_client_certificate_rejected),
        cmocka_unit_test(unknown_server_ca_refused),
        cmocka_unit_test(no_client_certificate_then_fixed),
        cmocka_unit_test(sigterm_exits_zero),
    };
    int failed = cmocka_run_group_tests_name("integration.mqtt_tls", tests, setup, teardown);
    return h_finish(failed);
}
