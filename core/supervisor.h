/*
 * supervisor - keeps plugin instances alive: restarts an instance whose
 * create()/start() failed, which reported itself FAILED
 * (ccgw_instance_health) or whose thread stopped answering (its loop's
 * heartbeat, stamped at least once a second, is older than
 * supervision.hang_timeout_ms), with exponential backoff and jitter between
 * supervision.restart_min_ms and restart_max_ms; quarantines it after
 * max_failures failures within failure_window_s (gateway alarm
 * quarantine.<instance>); reports a hang (health topic, log, gateway alarm
 * hung.<instance>).
 *
 * Thread: the main thread calls ccgw_supervisor_tick() from
 * ccgw_gateway_run() every 200 ms, with gw->life_lock held (reload takes the
 * same lock, so the instance list never changes under the supervisor). It
 * never blocks on an instance: it only reads atomics and state under the
 * instance lock, joins threads that have already returned, and asks loops
 * to stop. A thread stuck inside a plugin call is never killed or freed:
 * its loop is asked to stop, and the instance is restarted once (if ever)
 * the call returns; until then it stays "hung". See docs/operations.md.
 */
#ifndef CCGW_SUPERVISOR_H
#define CCGW_SUPERVISOR_H

#include <stdint.h>

struct ccgw_gateway;
struct ccgw_instance;

/* One pass over every instance (main thread, gw->life_lock held). */
void ccgw_supervisor_tick(struct ccgw_gateway *gw);

/* Forget an instance's failures, backoff and quarantine (reload replaced it),
 * clearing its gateway alarms. */
void ccgw_supervisor_reset(struct ccgw_gateway *gw, struct ccgw_instance *inst);

/* Totals over the instances, for metrics and the log. Walks gw->instances:
 * hold gw->life_lock (the main thread's tick already does). Per instance,
 * inst->sup (instance.h) has the details, under inst->lock; the reload
 * counters are gw->reloads_ok / reloads_rejected (atomics). */
typedef struct ccgw_supervisor_stats {
    uint64_t restarts, failures, hangs;
    uint64_t quarantined, hung, backoff;  /* instances in that condition now */
} ccgw_supervisor_stats_t;
void ccgw_supervisor_stats(struct ccgw_gateway *gw, ccgw_supervisor_stats_t *out);

#endif
