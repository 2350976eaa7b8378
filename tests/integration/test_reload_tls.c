/*
 * reload_tls: a reload re-reads the MQTT TLS files. The broker requires a
 * client certificate and takes its CN as the user name
 * (use_identity_as_username), so its log says which certificate each
 * connection used. ccgw starts with client certificate A (CN client-a) in
 * client.crt/client.key; the files are then overwritten with certificate B
 * (CN client-b) — the same paths, new content, as a certificate renewal
 * does — and SIGHUP makes ccgw reconnect: the broker sees u'client-b', and
 * data keeps flowing. A reload without changed files does not reconnect.
 */
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must be defined"
#endif
#define OPENSSL_BIN "/usr/bin/openssl"

static h_env *E;
static h_proc *BROKER, *G;
static h_mqtt *S;
static int TLS_PORT, PLAIN_PORT;

#define T_ENV H_PREFIX "/hq/env/"

static const char *P(const char *file)
{
    static char bufs[16][PATH_MAX];
    static unsigned next;
    char *b = bufs[next++ % 16];
    h_env_path(E, file, b, PATH_MAX);
    return b;
}

/* a CA, a server certificate and two client certificates it signed */
static int make_pki(void)
{
    if (h_pki_ca(E, "ca", "/CN=ccgw-it-ca") != 0 || h_pki_leaf(E, "ca", "server", "/CN=127.0.0.1", "server", 2) != 0 ||
        h_pki_leaf(E, "ca", "client-a", "/CN=client-a", "client", 3) != 0 ||
        h_pki_leaf(E, "ca", "client-b", "/CN=client-b", "client", 4) != 0)
        return -1;
    return 0;
}

/* copy client-X.{crt,key} over client.{crt,key} (rename: atomic, a new inode) */
static int install_client(const char *which)
{
    const char *ext[] = {"crt", "key"};
    for (int i = 0; i < 2; i++) {
        char src[64], tmp[64], dst[64];
        snprintf(src, sizeof src, "client-%s.%s", which, ext[i]);
        snprintf(tmp, sizeof tmp, "client.%s.new", ext[i]);
        snprintf(dst, sizeof dst, "client.%s", ext[i]);
        char *text = h_read_file(P(src));
        if (!text || h_write_file(P(tmp), text) != 0) {
            free(text);
            return -1;
        }
        free(text);
        char a[PATH_MAX], b[PATH_MAX];
        snprintf(a, sizeof a, "%s", P(tmp));
        snprintf(b, sizeof b, "%s", P(dst));
        if (rename(a, b) != 0)
            return -1;
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    E = h_env_new("reload_tls");
    h_current_env = E;
    if (access(OPENSSL_BIN, X_OK) != 0) {
        h_log("no openssl CLI: skipped");
        return 0;
    }
    if (make_pki() != 0 || install_client("a") != 0)
        return -1;
    TLS_PORT = h_free_port();
    PLAIN_PORT = h_free_port();
    char conf[4096];
    snprintf(conf, sizeof conf,
             "per_listener_settings true\npersistence false\nlog_dest stderr\nlog_type all\n%s"
             "listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\n"
             "use_identity_as_username true\nallow_anonymous true\n"
             "listener %d 127.0.0.1\nallow_anonymous true\n",
             geteuid() == 0 ? "user root\n" : "", TLS_PORT, P("ca.crt"), P("server.crt"), P("server.key"),
             PLAIN_PORT);
    if (h_write_file(P("mosquitto.conf"), conf) != 0)
        return -1;
    const char *argv[] = {MOSQUITTO_BIN, "-c", P("mosquitto.conf"), NULL};
    BROKER = h_spawn(E, "mosquitto", argv);
    if (!BROKER || !h_wait_port(PLAIN_PORT, BROKER, h_scaled(5000)) || !h_wait_port(TLS_PORT, BROKER, h_scaled(2000)))
        return -1;
    S = h_mqtt_new(PLAIN_PORT, "reload-tls-watcher");
    if (!S || h_mqtt_sub(S, "ccgw/v1/#", 1) != 0)
        return -1;
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "gateway:\n  site: hq\n  id: gw1\n  data_dir: data\n  plugin_dirs: [\"%s\"]\n"
             "mqtt:\n  port: %d\n  tls: {ca_file: ca.crt, cert_file: client.crt, key_file: client.key}\n"
             "instances:\n  - id: ok\n    plugin: crash_start\n    options: {fail_times: 0}\n",
             TEST_PLUGIN_DIR, TLS_PORT);
    G = h_gw_start_yaml(E, yaml, NULL, 0, NULL);
    return G ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    h_proc *peers[] = {BROKER};
    h_rig_teardown(E, NULL, S, G, peers, 1);
    return 0;
}

static void renewed_certificate_used_after_reload(void **state)
{
    (void)state;
    if (!G) {
        h_log("skipped");
        return;
    }
    char line[512];
    H_ASSERT(h_proc_wait_log(BROKER, "u'client-a'", h_scaled(10000), line, sizeof line),
             "ccgw connected with certificate A");
    H_EXPECT(S, 0, T_ENV "ok.d1/telemetry", "{}", 10000);
    /* a reload with nothing changed does not reconnect */
    h_proc_signal(G, SIGHUP);
    H_ASSERT(h_proc_wait_log(G, "configuration applied (reload 1)", h_scaled(5000), line, sizeof line), "reload 1");
    h_sleep_ms(300);
    H_ASSERT(!h_proc_wait_log(G, "reconnecting to", 10, line, sizeof line), "no reconnect without a change");
    /* the renewal: same paths, new content */
    H_ASSERT(install_client("b") == 0, "install certificate B");
    h_proc_signal(G, SIGHUP);
    H_ASSERT(h_proc_wait_log(G, "reconnecting to", h_scaled(5000), line, sizeof line), "ccgw reconnects");
    h_log("%s", line);
    H_ASSERT(h_proc_wait_log(BROKER, "u'client-b'", h_scaled(10000), line, sizeof line),
             "the broker sees certificate B after the reload");
    h_log("broker: %s", line);
    size_t mark = h_mqtt_mark(S);
    H_EXPECT(S, mark, T_ENV "ok.d1/telemetry", "{}", 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(renewed_certificate_used_after_reload),
    };
    int failed = cmocka_run_group_tests_name("integration.reload_tls", tests, setup, teardown);
    return h_finish(failed);
}
