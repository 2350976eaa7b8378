/*
 * fdlow - the core's side of <ccgw/fd.h>: a reserve of descriptors below
 * FD_SETSIZE (each held open on /dev/null, close-on-exec), taken at start-up
 * while descriptor numbers are still low, handed out by ccgw_fd_low() and
 * refilled from low numbers that became free again.
 *
 * Threads: any (one mutex).
 */
#ifndef CCGW_FDLOW_H
#define CCGW_FDLOW_H

#include <stddef.h>
#include <stdint.h>

#define CCGW_FDLOW_RESERVE 128

typedef struct ccgw_fdlow_stats {
    uint64_t reserve;  /* low descriptors held now */
    uint64_t moved;    /* descriptors moved below FD_SETSIZE */
    uint64_t refused;  /* ccgw_fd_low() found the reserve empty */
} ccgw_fdlow_stats_t;

/* Take up to n (<= CCGW_FDLOW_RESERVE) low descriptors; a second call adds
 * nothing. Returns how many are held. */
size_t ccgw_fdlow_init(size_t n);
/* Close the reserve (at exit). */
void ccgw_fdlow_shutdown(void);
void ccgw_fdlow_get_stats(ccgw_fdlow_stats_t *out);

#endif
