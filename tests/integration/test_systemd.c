/*
 * systemd: the sd_notify protocol as systemd sees it. The test owns a unix
 * datagram socket, runs ccgw with NOTIFY_SOCKET pointing at it and
 * WATCHDOG_USEC=1000000, and asserts:
 *  - READY=1 (with a STATUS= line) once the plugins are started;
 *  - WATCHDOG=1 keeps arriving (at half the interval: >= 3 in 2.5 s);
 *  - SIGHUP: RELOADING=1 then READY=1 again;
 *  - SIGTERM: STOPPING=1, exit 0 and the offline status on MQTT;
 *  - the installed unit (build/dist/systemd/ccgw.service, with the build's
 *    paths) passes `systemd-analyze verify` when that tool exists.
 */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TEST_PLUGIN_DIR
#error "TEST_PLUGIN_DIR must be defined"
#endif
#ifndef CCGW_UNIT_FILE
#error "CCGW_UNIT_FILE must be defined"
#endif

static h_env *E;
static h_broker *B;
static h_mqtt *S;
static h_proc *G;
static int FD = -1;
static int64_t T0;

#define T_GW H_PREFIX "/hq/gateway/gw1"

/* every datagram received so far, concatenated with '\n' separators */
static char GOT[1 << 16];
static size_t GOT_LEN;

static void drain(int wait_ms)
{
    int64_t end = h_now_ms() + wait_ms;
    for (;;) {
        struct timeval tv = {0, 20000};
        setsockopt(FD, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[4096];
        ssize_t n = recv(FD, buf, sizeof buf - 1, 0);
        if (n > 0 && GOT_LEN + (size_t)n + 2 < sizeof GOT) {
            memcpy(GOT + GOT_LEN, buf, (size_t)n);
            GOT_LEN += (size_t)n;
            GOT[GOT_LEN++] = '\n';
            GOT[GOT_LEN] = '\0';
        }
        if (n <= 0 && h_now_ms() >= end)
            return;
    }
}

static size_t count_of(const char *what, size_t from)
{
    size_t n = 0;
    for (const char *p = GOT + from; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* waits until `what` appears after offset from; returns its offset or -1 */
static long wait_for(const char *what, size_t from, int timeout_ms)
{
    int64_t end = h_now_ms() + timeout_ms;
    for (;;) {
        const char *p = strstr(GOT + from, what);
        if (p)
            return p - GOT;
        if (h_now_ms() >= end)
            return -1;
        drain(50);
    }
}

static int setup(void **state)
{
    (void)state;
    E = h_env_new("systemd");
    h_current_env = E;
    if (h_broker_and_watcher(E, &B, &S) != 0)
        return -1;
    char sock[PATH_MAX];
    h_env_path(E, "notify.sock", sock, sizeof sock);
    FD = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (FD < 0 || strlen(sock) >= sizeof sa.sun_path)
        return -1;
    strcpy(sa.sun_path, sock);
    if (bind(FD, (struct sockaddr *)&sa, sizeof sa) != 0) {
        h_log("bind %s: %s", sock, strerror(errno));
        return -1;
    }
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "gateway:\n  site: hq\n  id: gw1\n  data_dir: data\n  plugin_dirs: [\"%s\"]\n"
             "mqtt:\n  port: %d\n"
             "instances:\n  - id: ok\n    plugin: crash_start\n    options: {fail_times: 0}\n",
             TEST_PLUGIN_DIR, B->port);
    setenv("NOTIFY_SOCKET", sock, 1);
    setenv("WATCHDOG_USEC", "1000000", 1);
    G = h_gw_start_yaml(E, yaml, NULL, 0, &T0);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    return G ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    h_rig_teardown(E, B, S, G, NULL, 0);
    if (FD >= 0)
        close(FD);
    return 0;
}

static void ready_and_watchdog(void **state)
{
    (void)state;
    long r = wait_for("READY=1", 0, h_left_ms(T0, 10000));
    H_ASSERT(r >= 0, "READY=1 not received; got: %s", GOT);
    H_ASSERT(strstr(GOT, "STATUS="), "a STATUS= line: %s", GOT);
    /* READY comes after the instances started: the instance is running */
    H_EXPECT(S, 0, T_GW "/instance/ok", "{\"state\":\"running\"}", 2000);
    size_t from = GOT_LEN;
    drain(2500);
    size_t n = count_of("WATCHDOG=1", from);
    h_log("WATCHDOG=1 x %zu in 2.5 s (WATCHDOG_USEC 1 s)", n);
    H_ASSERT(n >= 3 && n <= 12, "WATCHDOG=1 at about half the interval: %zu in 2.5 s", n);
}

static void reload_notifies(void **state)
{
    (void)state;
    size_t from = GOT_LEN;
    h_proc_signal(G, SIGHUP);
    long r = wait_for("RELOADING=1", from, 5000);
    H_ASSERT(r >= 0, "RELOADING=1 after SIGHUP; got: %s", GOT + from);
    H_ASSERT(strstr(GOT + r, "MONOTONIC_USEC="), "RELOADING=1 carries MONOTONIC_USEC");
    H_ASSERT(wait_for("READY=1", (size_t)r, 5000) >= 0, "READY=1 after the reload; got: %s", GOT + from);
}

static void sigterm_stopping_exit_zero(void **state)
{
    (void)state;
    size_t from = GOT_LEN;
    size_t mark = h_mqtt_mark(S);
    h_proc_signal(G, SIGTERM);
    H_ASSERT(wait_for("STOPPING=1", from, 5000) >= 0, "STOPPING=1 on SIGTERM; got: %s", GOT + from);
    int status = -1;
    H_ASSERT(h_proc_wait(G, h_scaled(10000), &status), "ccgw still running after SIGTERM");
    char buf[64];
    H_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status: %s", h_status_str(status, buf, sizeof buf));
    H_EXPECT(S, mark, T_GW "/status", "{\"online\":false,\"reason\":\"shutdown\"}", 3000);
}

static void unit_verifies(void **state)
{
    (void)state;
    if (access("/usr/bin/systemd-analyze", X_OK) != 0) {
        h_log("systemd-analyze not installed: unit check skipped");
        return;
    }
    char *unit = h_read_file(CCGW_UNIT_FILE);
    H_ASSERT(unit, "read %s", CCGW_UNIT_FILE);
    H_ASSERT(strstr(unit, "Type=notify") && strstr(unit, "WatchdogSec=") && strstr(unit, "NoNewPrivileges=yes") &&
                 strstr(unit, "ProtectSystem=strict") && strstr(unit, "ExecReload=/bin/kill -HUP $MAINPID"),
             "the unit has the notify type, watchdog, hardening and reload");
    /* the installed paths do not exist here: point them at the build */
    char out[PATH_MAX];
    h_env_path(E, "ccgw.service", out, sizeof out);
    char cmd[4 * PATH_MAX];
    snprintf(cmd, sizeof cmd,
             "sed -e 's|^ExecStartPre=[^ ]*|ExecStartPre=%s|' -e 's|^ExecStart=[^ ]*|ExecStart=%s|' %s > %s",
             CCGW_BIN, CCGW_BIN, CCGW_UNIT_FILE, out);
    H_ASSERT(system(cmd) == 0, "%s", cmd);
    const char *argv[] = {"/usr/bin/systemd-analyze", "verify", out, NULL};
    char *so = NULL, *se = NULL;
    int st = h_run(E, "verify", argv, 20000, &so, &se);
    h_log("systemd-analyze verify: status %d; %s%s", st, so ? so : "", se ? se : "");
    H_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "systemd-analyze verify: %s", se ? se : "");
    free(so);
    free(se);
    free(unit);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ready_and_watchdog),
        cmocka_unit_test(reload_notifies),
        cmocka_unit_test(sigterm_stopping_exit_zero),
        cmocka_unit_test(unit_verifies),
    };
    int failed = cmocka_run_group_tests_name("integration.systemd", tests, setup, teardown);
    return h_finish(failed);
}
