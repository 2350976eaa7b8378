/*
 * mqtt_connect_timeout: the broker's address drops the SYN (here a listening
 * socket whose accept queue is full, like a host behind a silent firewall).
 * The connection attempt must fail after its 10 s timeout with "Connection
 * timed out" and be retried, not wait for the kernel's two minutes of SYN
 * retries; and the gateway must stop promptly while an attempt is pending.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static h_world W;
static int g_listen = -1;
static int g_fill[4];

/* A port that accepts no connection and answers no SYN: listen(0), the
 * accept queue filled by connections nobody accepts. */
static int silent_port(void)
{
    g_listen = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (g_listen < 0 || bind(g_listen, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(g_listen, 0) != 0 ||
        getsockname(g_listen, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    for (int i = 0; i < 4; i++) {
        g_fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (g_fill[i] < 0 || (connect(g_fill[i], (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS))
            return -1;
    }
    h_sleep_ms(200);
    return ntohs(sa.sin_port);
}

static int group_setup(void **state)
{
    (void)state;
    memset(&W, 0, sizeof W);
    W.env = h_env_new("mqtt_connect_timeout");
    h_current_env = W.env;
    int port = silent_port();
    if (port <= 0)
        return -1;
    W.sim = h_sim_start(W.env, "sim", 0, 1, 2);
    if (!W.sim)
        return -1;
    W.opts = (h_gw_opts){.reconnect_max_ms = 1000, .mqtt_port = port, .hvac_port = W.sim->port,
                         .env_port = W.sim->port};
    if (h_gw_write_config(W.env, "ccgw.yaml", &W.opts, W.config, sizeof W.config) != 0)
        return -1;
    W.t_gw_start = h_now_ms();
    W.gw = h_gw_start(W.env, W.config);
    return W.gw ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    h_world_stop(&W);
    for (int i = 0; i < 4; i++)
        if (g_fill[i] > 0)
            close(g_fill[i]);
    if (g_listen >= 0)
        close(g_listen);
    return 0;
}

static void attempt_times_out_and_stop_is_prompt(void **state)
{
    (void)state;
    char line[512];
    /* 10 s per attempt; the first one fails well before the kernel's ~127 s */
    H_ASSERT(h_proc_wait_log(W.gw, "Connection timed out", h_scaled(20000), line, sizeof line),
             "the pending attempt must time out");
    int64_t waited = h_now_ms() - W.t_gw_start;
    h_log("first attempt failed after %lld ms: %s", (long long)waited, line);
    H_ASSERT(waited >= 9000, "not before the 10 s timeout (%lld ms)", (long long)waited);
    H_ASSERT(h_proc_alive(W.gw), "ccgw keeps running");
    /* the next attempt is pending now: stop must not wait for it */
    int64_t t0 = h_now_ms();
    int st = h_proc_stop(W.gw, h_scaled(8000));
    int64_t took = h_now_ms() - t0;
    char buf[64];
    H_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ccgw stop: %s", h_status_str(st, buf, sizeof buf));
    H_ASSERT(took < h_scaled(3000), "stop took %lld ms", (long long)took);
    W.gw = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(attempt_times_out_and_stop_is_prompt),
    };
    int failed = cmocka_run_group_tests_name("integration.mqtt_connect_timeout", tests, group_setup, group_teardown);
    return h_finish(failed);
}
