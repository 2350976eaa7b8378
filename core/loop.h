/*
 * loop - the poll(2) loop each plugin instance runs on its own thread:
 * timers (a min-heap), fd watches, and a bounded queue of posted work with an
 * eventfd wake-up. Only ccgw_loop_post() and ccgw_loop_stop() may be called
 * from other threads; everything else belongs to the loop's thread.
 *
 * Shutdown order (instance.c): stop -> run returns -> plugin stop() (its
 * threads may still post) -> ccgw_loop_run_posts() -> ccgw_loop_close_posts()
 * -> plugin destroy() -> ccgw_loop_free().
 */
#ifndef CCGW_LOOP_H
#define CCGW_LOOP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ccgw/instance.h"

typedef struct ccgw_loop ccgw_loop_t;

ccgw_loop_t *ccgw_loop_new(size_t post_limit);
void ccgw_loop_free(ccgw_loop_t *loop); /* cancels remaining timers and watches */

/* Run until ccgw_loop_stop(). Returns 0. */
int ccgw_loop_run(ccgw_loop_t *loop);
void ccgw_loop_stop(ccgw_loop_t *loop); /* thread-safe */

/* Thread-safe. CCGW_EFULL at the limit, CCGW_ESTOPPED once closed. */
int ccgw_loop_post(ccgw_loop_t *loop, void (*fn)(void *), void *arg);
void ccgw_loop_run_posts(ccgw_loop_t *loop);
void ccgw_loop_close_posts(ccgw_loop_t *loop);
size_t ccgw_loop_post_depth(ccgw_loop_t *loop);
uint64_t ccgw_loop_posts_rejected(ccgw_loop_t *loop);

ccgw_timer_t *ccgw_loop_timer_add(ccgw_loop_t *loop, uint64_t first_ms, uint64_t interval_ms,
                                  ccgw_timer_cb cb, void *arg);
void ccgw_loop_timer_cancel(ccgw_timer_t *t);

ccgw_io_t *ccgw_loop_io_add(ccgw_loop_t *loop, int fd, unsigned events, ccgw_io_cb cb, void *arg);
int ccgw_loop_io_modify(ccgw_io_t *io, unsigned events);
void ccgw_loop_io_remove(ccgw_io_t *io);

/* Monotonic ms of the loop's last turn (for the supervisor). */
uint64_t ccgw_loop_heartbeat(ccgw_loop_t *loop);

uint64_t ccgw_monotonic_ms(void);

#endif
