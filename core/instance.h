/*
 * instance - one configured plugin instance: its thread, loop, lifecycle,
 * health topic and counters. Implements the instance calls of
 * <ccgw/instance.h>.
 *
 * The instance thread runs, in order: create, start, the loop (timers, fd
 * watches, posted work, command delivery), then stop, the posts left, and
 * destroy. The gateway waits for start's result, and stops an instance with
 * ccgw_instance_stop() (joins the thread, bounded; a thread stuck in a plugin
 * call is left behind: `abandoned`, never freed).
 *
 * One run of the thread is one life of the plugin; the supervisor
 * (supervisor.c, on the main thread) reaps a thread that ended
 * (ccgw_instance_reap) and starts a new life (ccgw_instance_launch) after a
 * backoff. The `sup` fields belong to the supervisor (main thread), written
 * under `lock` because the health publisher reads them.
 */
#ifndef CCGW_INSTANCE_INTERNAL_H
#define CCGW_INSTANCE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "bus.h"
#include "ccgw/ccgw.h"
#include "config.h"
#include "loop.h"

struct ccgw_gateway;
struct ccgw_cmd;

typedef enum ccgw_run_state {
    CCGW_RUN_CREATED = 0,
    CCGW_RUN_STARTING,
    CCGW_RUN_RUNNING,
    CCGW_RUN_FAILED,
    CCGW_RUN_STOPPING,
    CCGW_RUN_STOPPED,
    CCGW_RUN_DISABLED,
    CCGW_RUN_BACKOFF,            /* failed; a restart is scheduled (supervisor) */
    CCGW_RUN_QUARANTINED         /* too many failures in the window: no more restarts */
} ccgw_run_state_t;

/* The supervisor's view of one instance (supervisor.c). */
typedef struct ccgw_inst_sup {
    uint64_t restarts;           /* lives started by the supervisor */
    uint64_t failures;           /* failures since boot */
    uint64_t hangs;              /* hangs since boot */
    uint64_t fail_ms[64];        /* monotonic times of the latest failures (ring) */
    size_t n_fail, fail_head;
    char last_failure[256];      /* "" = none */
    char last_failure_ts[25];
    uint64_t backoff_ms;         /* the current delay (0: the next failure uses restart_min_ms) */
    uint64_t next_attempt_ms;    /* monotonic; 0 = none scheduled */
    char next_attempt_ts[25];    /* wall clock of next_attempt_ms */
    uint64_t launched_ms;        /* when the current life was launched */
    uint64_t running_since_ms;   /* when it reached running (0 = not running) */
    uint64_t stop_asked_ms;      /* the supervisor asked this life to stop (0 = no) */
    bool hung;                   /* the current life stopped answering */
    bool quarantined;
} ccgw_inst_sup_t;

const char *ccgw_run_state_name(ccgw_run_state_t s);

struct ccgw_instance {
    struct ccgw_gateway *gw;
    const ccgw_instance_config_t *cfg;
    const ccgw_plugin_t *desc;
    char tag[160];               /* "plugin:instance" for logs */
    char *health_topic;
    /* the envelope members every device of this instance shares, encoded once
     * (device.c): env_head = "site":"<site>","class":" and env_tail =
     * ","instance":"<id>","boot":"<boot>" (both NULL when out of memory) */
    char *env_head, *env_tail;
    size_t env_head_len, env_tail_len;
    ccgw_loop_t *loop;
    pthread_t thread;
    bool thread_started;
    void *state;                 /* the plugin's */
    pthread_mutex_t lock;        /* everything below */
    pthread_cond_t cond;
    ccgw_run_state_t run_state;
    bool start_done;
    ccgw_health_t health;
    char *reason;
    uint64_t health_seq;
    ccgw_device_t *devices;      /* list through dev->inst_next */
    size_t n_devices;
    struct ccgw_cmd *cmds;       /* live commands */
    struct ccgw_jobq *jobqs;     /* the plugin's job queues (jobq.c), for /metrics */
    ccgw_inst_sup_t sup;         /* supervisor's (see above) */
    ccgw_bus_quota_t *quota;     /* its share of the north queue (owned by the bus) */
    char stop_reason[256];       /* devices go offline with this reason when this life ends ("" = default) */
    atomic_bool thread_done;     /* the thread of this life has returned (join will not block) */
    bool abandoned;              /* its thread is stuck in a plugin call: left behind, never freed */
    /* counters */
    _Atomic uint64_t emitted[CCGW_KIND__COUNT];
    _Atomic uint64_t dropped[CCGW_KIND__COUNT];
    _Atomic uint64_t cmds_in, cmds_ok, cmds_failed, cmds_timeout;
};

ccgw_instance_t *ccgw_instance_new(struct ccgw_gateway *gw, const ccgw_instance_config_t *cfg);
/* Start the thread; wait up to timeout_ms for create+start. Returns 0 when
 * running, < 0 when it failed (the instance stays, in state FAILED). */
int ccgw_instance_start(ccgw_instance_t *inst, int timeout_ms);
/* Start a life without waiting (supervisor, reload). 0 or < 0. */
int ccgw_instance_launch(ccgw_instance_t *inst);
/* When this life's thread has returned: join it, free its loop; true. */
bool ccgw_instance_reap(ccgw_instance_t *inst);
/* Stop and join, waiting at most timeout_ms for the thread (0: the default,
 * 5000). A thread that does not return is left behind (`abandoned`): its
 * memory is never freed. Returns 0, or CCGW_ETIMEDOUT when abandoned. */
int ccgw_instance_stop_timed(ccgw_instance_t *inst, int timeout_ms);
void ccgw_instance_stop(ccgw_instance_t *inst);
/* Frees it, unless abandoned (then nothing: its thread may still use it). */
void ccgw_instance_free(ccgw_instance_t *inst);
void ccgw_instance_publish_health(ccgw_instance_t *inst);

#endif
