/*
 * ccgw/fd.h - descriptors below FD_SETSIZE for libraries that wait with
 * select() (ABI 1.3).
 *
 * select() and fd_set cover descriptors 0..FD_SETSIZE-1 (1024). A library
 * that waits with select() (libmodbus does, on every request) writes past
 * its fd_set for a higher descriptor: memory corruption, or with
 * _FORTIFY_SOURCE an abort of the whole gateway. A gateway serving
 * thousands of WebSocket clients hands out such descriptors to any socket
 * opened later (a device reconnecting). The core keeps a reserve of low
 * descriptors; ccgw_fd_low() moves a descriptor onto one of them, so that
 * the library gets a number it can wait on.
 *
 * Call it on every descriptor you hand to such a library, right after you
 * open it (before the library selects on it). Descriptors the library opens
 * and selects on by itself cannot be helped this way.
 *
 * Threads: any.
 */
#ifndef CCGW_FD_H
#define CCGW_FD_H

#ifdef __cplusplus
extern "C" {
#endif

/* A descriptor below FD_SETSIZE for the same open file as `fd`: `fd`
 * itself when it is below already; otherwise a descriptor from the core's
 * reserve (close-on-exec), and `fd` is closed. CCGW_EFULL when the reserve
 * is empty (`fd` is left open and unchanged: do not give it to the
 * library), CCGW_EINVAL for a negative fd. Moves and refusals are counted
 * in /metrics (ccgw_fd_low_*). */
int ccgw_fd_low(int fd);

#ifdef __cplusplus
}
#endif

#endif /* CCGW_FD_H */
