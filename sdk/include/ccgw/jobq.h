/*
 * ccgw/jobq.h - a bounded job queue from the instance thread to a worker
 * thread the plugin owns (ABI 1.2).
 *
 * The shape every command plugin needs: the command callback (instance
 * thread) checks the arguments, pushes a job and returns; a worker thread that
 * talks to the device (a blocking Modbus write, an HTTP request to a door
 * terminal, an SMS to the SMSC) pops it and replies with ccgw_cmd_reply_*.
 * The queue has a fixed capacity; at the limit ccgw_jobq_push() refuses with
 * CCGW_EFULL (the caller answers the command "busy") and the refusal is
 * counted. Depth, capacity and refusals of every queue appear in /metrics as
 * ccgw_plugin_queue_{jobs,capacity,refused_total}{instance,queue}.
 *
 * Waking the worker: ccgw_jobq_wait() blocks (with a timeout) until a job
 * comes; a worker that already waits in poll() on its own sockets adds
 * ccgw_jobq_fd() to its set: the descriptor is readable exactly while jobs
 * are queued (and after ccgw_jobq_close()).
 *
 * Threads: push, pop, wait, close and len from any thread; free once, after
 * the worker has stopped using the queue (typically in stop()/destroy(),
 * after joining it).
 */
#ifndef CCGW_JOBQ_H
#define CCGW_JOBQ_H

#include <stddef.h>

#include "ccgw/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ccgw_jobq ccgw_jobq_t;

/* A queue of at most `capacity` jobs (1 .. 65536) for `inst`; `name`
 * ("writes", "link1"; its first 31 bytes) labels it in logs and metrics. NULL
 * on bad arguments or out of memory (logged). */
ccgw_jobq_t *ccgw_jobq_new(ccgw_instance_t *inst, const char *name, size_t capacity);

/* Append a job (any non-NULL pointer; ownership passes to the queue until it
 * is popped). CCGW_OK, CCGW_EFULL at capacity (counted), CCGW_ESTOPPED after
 * ccgw_jobq_close(), CCGW_EINVAL for NULL. */
int ccgw_jobq_push(ccgw_jobq_t *q, void *job);

/* The oldest job, or NULL when the queue is empty. Never blocks. */
void *ccgw_jobq_pop(ccgw_jobq_t *q);

/* The oldest job; waits up to timeout_ms (< 0: no limit) for one. NULL on
 * timeout, or when the queue is closed and empty. */
void *ccgw_jobq_wait(ccgw_jobq_t *q, int timeout_ms);

/* Readable while jobs are queued or after close; for poll()/epoll next to
 * the worker's own descriptors. Do not read or close it yourself. */
int ccgw_jobq_fd(const ccgw_jobq_t *q);

/* Refuse further pushes (CCGW_ESTOPPED) and wake every waiter; queued jobs
 * can still be popped. Idempotent. */
void ccgw_jobq_close(ccgw_jobq_t *q);

/* Jobs queued now. */
size_t ccgw_jobq_len(const ccgw_jobq_t *q);

/* Free the queue; each job still queued is handed to drop(job, ctx) first
 * (e.g. to reply "instance stopping" and free it). drop may be NULL. */
void ccgw_jobq_free(ccgw_jobq_t *q, void (*drop)(void *job, void *ctx), void *ctx);

#ifdef __cplusplus
}
#endif

#endif
