/* Unit tests: the native sd_notify protocol (core/sd_notify.c) as systemd
 * receives it: one datagram per notification to $NOTIFY_SOCKET, a file
 * system path or an abstract name ("@..."); nothing without NOTIFY_SOCKET;
 * other address forms refused; WATCHDOG_USEC / WATCHDOG_PID read like
 * sd_watchdog_enabled(). integration.systemd covers the daemon's use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "sd_notify.h"

/* A datagram socket bound to name ("@x": abstract, else a path). */
static int bind_dgram(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    assert_true(n < sizeof sa.sun_path);
    memcpy(sa.sun_path, name, n);
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    else
        len++;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_abstract_socket(void **st)
{
    (void)st;
    char name[64];
    snprintf(name, sizeof name, "@ccgw-test-sd-notify-%ld", (long)getpid());
    int fd = bind_dgram(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(ccgw_sd_notify_send("READY=1\nSTATUS=running"), 1);
    expect_datagram(fd, "READY=1\nSTATUS=running");
    assert_int_equal(ccgw_sd_notify_send("WATCHDOG=1"), 1);
    expect_datagram(fd, "WATCHDOG=1");
    unsetenv("NOTIFY_SOCKET");
    close(fd);
}

static void test_path_socket(void **st)
{
    (void)st;
    char path[64];
    snprintf(path, sizeof path, "/tmp/ccgw-test-sd-notify-%ld.sock", (long)getpid());
    unlink(path);
    int fd = bind_dgram(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(ccgw_sd_notify_send("STOPPING=1"), 1);
    expect_datagram(fd, "STOPPING=1");
    unsetenv("NOTIFY_SOCKET");
    close(fd);
    unlink(path);
}

static void test_no_socket_and_bad_forms(void **st)
{
    (void)st;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(ccgw_sd_notify_send("READY=1"), 0); /* not under systemd */
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(ccgw_sd_notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
    assert_int_equal(ccgw_sd_notify_send("READY=1"), -EAFNOSUPPORT);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(ccgw_sd_notify_send("READY=1"), -EAFNOSUPPORT);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    setenv("NOTIFY_SOCKET", longp, 1);
    assert_int_equal(ccgw_sd_notify_send("READY=1"), -EAFNOSUPPORT);
    /* nobody listening: an error, not a crash */
    setenv("NOTIFY_SOCKET", "/tmp/ccgw-test-sd-notify-nobody.sock", 1);
    assert_true(ccgw_sd_notify_send("READY=1") < 0);
    unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog_env(void **st)
{
    (void)st;
    uint64_t usec = 0;
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    assert_int_equal(ccgw_sd_watchdog_usec(&usec), 0);
    setenv("WATCHDOG_USEC", "30000000", 1);
    assert_int_equal(ccgw_sd_watchdog_usec(&usec), 1);
    assert_int_equal(usec, 30000000);
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(ccgw_sd_watchdog_usec(&usec), 1);
    snprintf(pid, sizeof pid, "%ld", (long)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(ccgw_sd_watchdog_usec(&usec), 0); /* meant for another process */
    setenv("WATCHDOG_PID", "x1", 1);
    assert_int_equal(ccgw_sd_watchdog_usec(&usec), -EINVAL);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "0", 1);
    assert_int_equal(ccgw_sd_watchdog_usec(&usec), -EINVAL);
    setenv("WATCHDOG_USEC", "12ms", 1);
    assert_int_equal(ccgw_sd_watchdog_usec(&usec), -EINVAL);
    unsetenv("WATCHDOG_USEC");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_no_socket_and_bad_forms),
        cmocka_unit_test(test_watchdog_env),
    };
    return cmocka_run_group_tests_name("unit.sd_notify", tests, NULL, NULL);
}
