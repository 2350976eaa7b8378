/* fdlow - see fdlow.h and <ccgw/fd.h>. */
#include "fdlow.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include "ccgw/fd.h"
#include "ccgw/types.h"
#include "log.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_slots[CCGW_FDLOW_RESERVE];
static size_t g_n, g_cap;
static uint64_t g_moved, g_refused;

/* One more low descriptor held on /dev/null (g_lock held): false when the lowest free
 * descriptor is not below FD_SETSIZE any more. */
static bool take_one_locked(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    if (fd >= FD_SETSIZE) {
        close(fd);
        return false;
    }
    g_slots[g_n++] = fd;
    return true;
}

size_t ccgw_fdlow_init(size_t n)
{
    pthread_mutex_lock(&g_lock);
    if (g_cap == 0) {
        g_cap = n > CCGW_FDLOW_RESERVE ? CCGW_FDLOW_RESERVE : n;
        while (g_n < g_cap && take_one_locked())
            ;
    }
    size_t held = g_n;
    pthread_mutex_unlock(&g_lock);
    return held;
}

void ccgw_fdlow_shutdown(void)
{
    pthread_mutex_lock(&g_lock);
    while (g_n > 0)
        close(g_slots[--g_n]);
    g_cap = 0;
    pthread_mutex_unlock(&g_lock);
}

void ccgw_fdlow_get_stats(ccgw_fdlow_stats_t *out)
{
    pthread_mutex_lock(&g_lock);
    out->reserve = g_n;
    out->moved = g_moved;
    out->refused = g_refused;
    pthread_mutex_unlock(&g_lock);
}

int ccgw_fd_low(int fd)
{
    if (fd < 0)
        return CCGW_EINVAL;
    if (fd < FD_SETSIZE)
        return fd;
    pthread_mutex_lock(&g_lock);
    /* refill from low numbers freed since (a closed device link's) */
    while (g_n < g_cap && take_one_locked())
        ;
    if (g_n == 0) {
        uint64_t n = ++g_refused;
        pthread_mutex_unlock(&g_lock);
        if ((n & (n - 1)) == 0)
            CLOG_ERROR("fd", "descriptor %d is above FD_SETSIZE (%d) and the reserve of low descriptors is "
                       "empty (%llu refusal(s)): a library that waits with select() cannot use it",
                       fd, FD_SETSIZE, (unsigned long long)n);
        return CCGW_EFULL;
    }
    int low = g_slots[g_n - 1];
    if (dup3(fd, low, O_CLOEXEC) < 0) {
        int err = errno;
        pthread_mutex_unlock(&g_lock);
        CLOG_ERROR("fd", "dup3(%d, %d): %s", fd, low, strerror(err));
        return CCGW_EIO;
    }
    g_n--;
    g_moved++;
    pthread_mutex_unlock(&g_lock);
    close(fd);
    return low;
}
