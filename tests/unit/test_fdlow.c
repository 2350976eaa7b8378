/* unit.fdlow: ccgw_fd_low() (ccgw/fd.h) moves a descriptor above FD_SETSIZE
 * onto the core's reserve of low descriptors, refills the reserve from low
 * numbers freed later, and refuses (leaving the descriptor alone) when the
 * reserve is empty. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ccgw/fd.h"
#include "ccgw/types.h"
#include "fdlow.h"

#define FILL 1200

static int g_fill[FILL];
static int g_nfill;

static int setup(void **st)
{
    (void)st;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < FILL + 64) {
        rl.rlim_cur = rl.rlim_max < FILL + 64 ? rl.rlim_max : FILL + 64;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < FILL + 64)
            return -1;
    }
    return 0;
}

/* Occupy every free descriptor up to about FILL: what opens next is high. */
static void fill_low(void)
{
    while (g_nfill < FILL) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        g_fill[g_nfill++] = fd;
        if (fd >= FILL - 1)
            break;
    }
}

static void unfill(void)
{
    while (g_nfill > 0)
        close(g_fill[--g_nfill]);
}

static bool same_file(int a, int b)
{
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static void test_low_fd_is_kept(void **st)
{
    (void)st;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0 && fd < FD_SETSIZE);
    assert_int_equal(ccgw_fd_low(fd), fd);
    close(fd);
    assert_int_equal(ccgw_fd_low(-1), CCGW_EINVAL);
}

static void test_high_fd_moves_and_reserve_refills(void **st)
{
    (void)st;
    assert_int_equal(ccgw_fdlow_init(2), 2);
    assert_int_equal(ccgw_fdlow_init(8), 2); /* once */
    fill_low();
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_true(sv[0] >= FD_SETSIZE);
    int keep = dup(sv[0]); /* to compare the open file after the move */
    assert_true(keep >= 0);

    ccgw_fdlow_stats_t s0, s1;
    ccgw_fdlow_get_stats(&s0);
    int low = ccgw_fd_low(sv[0]);
    assert_true(low >= 0 && low < FD_SETSIZE);
    assert_true(same_file(low, keep));
    assert_int_equal(fcntl(sv[0], F_GETFD), -1); /* the high one is closed */
    assert_true(fcntl(low, F_GETFD) & FD_CLOEXEC);
    /* it is the same socket: data written at the other end arrives on it */
    assert_int_equal(write(sv[1], "x", 1), 1);
    char c = 0;
    assert_int_equal(read(low, &c, 1), 1);
    assert_int_equal(c, 'x');
    ccgw_fdlow_get_stats(&s1);
    assert_int_equal(s1.reserve, s0.reserve - 1);
    assert_int_equal(s1.moved, s0.moved + 1);

    /* the second slot, then none: refused, the descriptor untouched */
    int a = dup(keep), b = dup(keep);
    int la = ccgw_fd_low(a);
    assert_true(la >= 0 && la < FD_SETSIZE);
    assert_int_equal(ccgw_fd_low(b), CCGW_EFULL);
    assert_true(fcntl(b, F_GETFD) >= 0);
    ccgw_fdlow_get_stats(&s1);
    assert_int_equal(s1.reserve, 0);
    assert_int_equal(s1.refused, s0.refused + 1);

    /* a low number freed (a device link closed): taken back on the next call */
    close(la);
    int lb = ccgw_fd_low(b);
    assert_int_equal(lb, la);
    ccgw_fdlow_get_stats(&s1);
    assert_int_equal(s1.reserve, 0);

    close(lb);
    close(low);
    close(keep);
    close(sv[1]);
    unfill();
    ccgw_fdlow_shutdown();
}

int main(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max < FILL + 64) {
        fprintf(stderr, "unit.fdlow: skipped: RLIMIT_NOFILE hard limit %llu < %d\n",
                (unsigned long long)rl.rlim_max, FILL + 64);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_low_fd_is_kept),
        cmocka_unit_test(test_high_fd_moves_and_reserve_refills),
    };
    return cmocka_run_group_tests_name("unit.fdlow", tests, setup, NULL);
}
