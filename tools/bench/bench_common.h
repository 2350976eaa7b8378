/* bench_common - small helpers shared by the bench tools (ccgw-bench-pub, -sub, -ws-clients). */
#ifndef CCGW_BENCH_COMMON_H
#define CCGW_BENCH_COMMON_H

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline uint64_t bench_now_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void bench_sleep_until(uint64_t t_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(t_ns / 1000000000ull),
                          .tv_nsec = (long)(t_ns % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* The unsigned integer after `"key":` in a JSON text of length len (no
 * allocation, no full parse: the payloads are ours). false when absent. */
static inline int bench_json_u64(const char *s, size_t len, const char *key, uint64_t *out)
{
    size_t kl = strlen(key);
    for (const char *p = s; p + kl + 3 <= s + len; p++) {
        p = memchr(p, '"', (size_t)(s + len - p));
        if (!p || p + kl + 3 > s + len)
            return 0;
        if (memcmp(p + 1, key, kl) == 0 && p[kl + 1] == '"' && p[kl + 2] == ':') {
            const char *q = p + kl + 3;
            uint64_t v = 0;
            int digits = 0;
            while (q < s + len && *q >= '0' && *q <= '9') {
                v = v * 10 + (uint64_t)(*q - '0');
                q++;
                digits++;
            }
            if (!digits)
                return 0;
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* Write all of p to a (possibly non-blocking) socket: waits in poll() while
 * the socket is full. 0, or -1 with errno. */
static inline int bench_send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pf = {.fd = fd, .events = POLLOUT};
                (void)poll(&pf, 1, 100);
                continue;
            }
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

#endif
