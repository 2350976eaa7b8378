/*
 * mqtt_fds: ccgw with every descriptor it opens above FD_SETSIZE (1024), as
 * a gateway serving thousands of WebSocket clients gets for any socket it
 * opens later. Here it starts with 1,100 descriptors already open
 * (inherited), so all of its own are high:
 *  - MQTT works on such a socket: connect, retained status, a command in and
 *    its reply out, and a reconnect after the broker restarts. (libmosquitto's
 *    own loop, select(), refuses it with "invalid arguments" forever.)
 *  - libmodbus waits with select() and would write past its fd_set (with
 *    _FORTIFY_SOURCE: abort the gateway). ccgw_fd_low() finds its reserve of
 *    low descriptors empty here (it is taken at start-up, and this start had
 *    none free): the Modbus devices go offline with that reason, the refusals
 *    are counted, and nothing crashes. (unit.fdlow covers the reserve.)
 *  - net-snmp's trap receiver takes a v2c trap on its socket up there (the
 *    plugin uses net-snmp's large descriptor sets; a plain fd_set cannot
 *    hold it).
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define HIGH_FD 1100

#define SNMPTRAP_BIN "/usr/bin/snmptrap"

static h_world W;
static int g_trap_port;
static int g_fds[HIGH_FD];
static int g_nfds;

/* Fill every free descriptor up to HIGH_FD (inherited by the next spawn). */
static int occupy_low_fds(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < HIGH_FD + 256) {
        rl.rlim_cur = rl.rlim_max < HIGH_FD + 256 ? rl.rlim_max : HIGH_FD + 256;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < HIGH_FD + 64) {
            h_log("RLIMIT_NOFILE %llu is too low for this test", (unsigned long long)rl.rlim_cur);
            return -1;
        }
    }
    for (;;) {
        int fd = open("/dev/null", O_RDONLY); /* no O_CLOEXEC: ccgw inherits it */
        if (fd < 0)
            return -1;
        g_fds[g_nfds++] = fd;
        if (fd >= HIGH_FD - 1 || g_nfds == HIGH_FD)
            return 0;
    }
}

static void release_fds(void)
{
    while (g_nfds > 0)
        close(g_fds[--g_nfds]);
}

static int group_setup(void **state)
{
    (void)state;
    memset(&W, 0, sizeof W);
    W.env = h_env_new("mqtt_fds");
    h_current_env = W.env; /* process logs dumped on a failed assertion */
    W.broker = h_broker_start(W.env, 0);
    if (!W.broker)
        return -1;
    /* the test's own client first, on a low descriptor (it uses select()) */
    W.sub = h_mqtt_new(W.broker->port, "mqtt_fds");
    if (!W.sub || h_mqtt_sub(W.sub, H_PREFIX "/#", 1) != 0)
        return -1;
    W.sim = h_sim_start(W.env, "sim", 0, 1, 2);
    if (!W.sim)
        return -1;
    W.opts = (h_gw_opts){.poll_ms = 500, .reconnect_max_ms = 1000, .mqtt_port = W.broker->port,
                         .hvac_port = W.sim->port, .env_port = W.sim->port};
    if (h_gw_write_config(W.env, "ccgw.yaml", &W.opts, W.config, sizeof W.config) != 0)
        return -1;
    /* and an SNMP instance: its trap receiver, and a target nobody answers */
    g_trap_port = h_free_port();
    char *yaml = h_read_file(W.config), extra[512];
    snprintf(extra, sizeof extra,
             "  - id: power\n"
             "    plugin: snmp\n"
             "    options:\n"
             "      trap_port: %d\n"
             "      trap_address: 127.0.0.1\n"
             "      traps:\n"
             "        - {oid: 1.3.6.1.4.1.99999.0.7, device: room1-ups, event: test.trap}\n"
             "      targets:\n"
             "        - {id: room1-ups, class: ups, host: 127.0.0.1, port: %d, community: public,\n"
             "           poll_interval_ms: 5000, timeout_ms: 500, retries: 0}\n",
             g_trap_port, h_free_port());
    size_t yl = yaml ? strlen(yaml) : 0;
    char *all = yaml ? malloc(yl + strlen(extra) + 1) : NULL;
    if (!all) {
        free(yaml);
        return -1;
    }
    memcpy(all, yaml, yl);
    strcpy(all + yl, extra);
    int wrc = h_write_file(W.config, all);
    free(all);
    free(yaml);
    if (wrc != 0)
        return -1;
    if (occupy_low_fds() != 0) {
        h_log("cannot open %d descriptors", HIGH_FD);
        release_fds();
        return -1;
    }
    W.t_gw_start = h_now_ms();
    W.gw = h_gw_start(W.env, W.config);
    release_fds(); /* ccgw has its copies */
    return W.gw ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    h_world_stop(&W);
    return 0;
}

/* The lowest descriptor number of ccgw's TCP connection to the broker port. */
static int ccgw_broker_fd(void)
{
    char dir[64], link[PATH_MAX], target[128];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)h_proc_pid(W.gw));
    int best = -1;
    for (int fd = HIGH_FD - 1; fd < HIGH_FD + 200; fd++) {
        snprintf(link, sizeof link, "%s/%d", dir, fd);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0 && strncmp(target, "socket:", 7) == 0 && best < 0)
            best = fd;
    }
    return best;
}

static void connects_above_fd_setsize(void **state)
{
    (void)state;
    H_EXPECT(W.sub, 0, T_STATUS, "{\"online\":true}", h_left_ms(W.t_gw_start, 8000));
    H_EXPECT(W.sub, 0, T_INSTANCE, "{\"state\":\"running\"}", h_left_ms(W.t_gw_start, 8000));
    int fd = ccgw_broker_fd();
    H_ASSERT(fd >= 1024, "ccgw's sockets must be above FD_SETSIZE for this test (lowest at %d)", fd);
    h_log("ccgw's first socket is descriptor %d", fd);

    /* a command in and its reply out, on that connection (the device is
     * offline: the reply says so) */
    static const char payload[] = "{\"point\":\"setpoint.cooling\",\"value\":24.5}";
    size_t from = h_mqtt_mark(W.sub);
    H_ASSERT(h_mqtt_pub(W.sub, T_AC "/cmd/write", payload, (int)strlen(payload), 1, false, NULL, NULL, 0) == 0,
             "publish the command");
    H_EXPECT(W.sub, from, T_AC "/cmd/write/reply", "{\"command\":\"write\"}", h_scaled(3000));
}

static void modbus_refuses_high_fds_without_crashing(void **state)
{
    (void)state;
    const h_msg *st = H_EXPECT(W.sub, 0, T_AC "/state", "{\"online\":false}", h_scaled(6000));
    /* the first state says "starting"; wait for the one with the reason */
    size_t from = st->index;
    for (int i = 0; i < 10 && !strstr(st->payload, "FD_SETSIZE"); i++) {
        st = H_EXPECT(W.sub, from + 1, T_AC "/state", "{\"online\":false}", h_scaled(6000));
        from = st->index;
    }
    H_ASSERT(strstr(st->payload, "FD_SETSIZE") != NULL, "offline reason must name FD_SETSIZE: %s", st->payload);
    char line[512];
    H_ASSERT(h_proc_wait_log(W.gw, "reserve of low descriptors is empty", h_scaled(2000), line, sizeof line),
             "the refusal is logged");
    H_ASSERT(h_proc_alive(W.gw), "ccgw must not abort");
}

static void snmp_trap_above_fd_setsize(void **state)
{
    (void)state;
    if (access(SNMPTRAP_BIN, X_OK) != 0) {
        h_log("%s missing (package snmp): case skipped", SNMPTRAP_BIN);
        skip();
    }
    H_EXPECT(W.sub, 0, H_PREFIX "/hq/gateway/gw1/instance/power", "{\"state\":\"running\"}", h_scaled(8000));
    char dest[64];
    snprintf(dest, sizeof dest, "127.0.0.1:%d", g_trap_port);
    /* a mapped trap: the event test.trap on room1-ups */
    const char *argv[] = {SNMPTRAP_BIN, "-v", "2c", "-c", "public", "-M", "/dev/null", "-m", "", dest, "",
                          "1.3.6.1.4.1.99999.0.7", NULL};
    size_t from = h_mqtt_mark(W.sub);
    const h_msg *e = NULL;
    for (int i = 0; i < 3 && !e; i++) { /* UDP: once more if the first was early */
        H_ASSERT(h_run(W.env, "snmptrap", argv, h_scaled(3000), NULL, NULL) == 0, "snmptrap");
        e = h_mqtt_wait_match(W.sub, from, H_PREFIX "/hq/ups/room1-ups/event/test.trap",
                              "{\"type\":\"test.trap\"}", h_scaled(1500));
    }
    H_ASSERT(e != NULL, "the trap received on a socket above FD_SETSIZE becomes the event test.trap");
    H_ASSERT(h_proc_alive(W.gw), "ccgw must not abort");
}

static void reconnects_above_fd_setsize(void **state)
{
    (void)state;
    h_mqtt_free(W.sub);
    W.sub = NULL;
    H_ASSERT(h_broker_restart(W.broker) == 0, "restart mosquitto");
    h_mqtt *fresh = h_mqtt_new(W.broker->port, "fresh");
    H_ASSERT(fresh != NULL && h_mqtt_sub(fresh, H_PREFIX "/#", 1) == 0, "subscribe after the restart");
    W.sub = fresh;
    H_EXPECT(W.sub, 0, T_STATUS, "{\"online\":true}", h_scaled(10000));
    H_EXPECT(W.sub, 0, T_INSTANCE, "{\"state\":\"running\"}", h_scaled(3000));
    char line[512];
    H_ASSERT(!h_proc_wait_log(W.gw, "nvalid", 0, line, sizeof line), "ccgw logged: %s", line);
    H_ASSERT(h_proc_alive(W.gw), "ccgw must not abort");
}

int main(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < HIGH_FD + 256) {
        fprintf(stderr, "integration.mqtt_fds: skipped: RLIMIT_NOFILE hard limit %llu < %d\n",
                (unsigned long long)rl.rlim_max, HIGH_FD + 256);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connects_above_fd_setsize),
        cmocka_unit_test(modbus_refuses_high_fds_without_crashing),
        cmocka_unit_test(snmp_trap_above_fd_setsize),
        cmocka_unit_test(reconnects_above_fd_setsize),
    };
    int failed = cmocka_run_group_tests_name("integration.mqtt_fds", tests, group_setup, group_teardown);
    return h_finish(failed);
}
