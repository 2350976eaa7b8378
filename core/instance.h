/*
 * instance - one configured plugin instance: its thread, loop, lifecycle,
 * health topic and counters. Implements the instance calls of
 * <ccgw/instance.h>.
 *
 * The instance thread runs, in order: create, start, the loop (timers, fd
 * watches, posted work, command delivery), then stop, the posts left, and
 * destroy. The gateway waits for start's result, and stops an instance with
 * ccgw_instance_stop() (thread-safe; joins the thread).
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
    CCGW_RUN_DISABLED
} ccgw_run_state_t;

const char *ccgw_run_state_name(ccgw_run_state_t s);

struct ccgw_instance {
    struct ccgw_gateway *gw;
    const ccgw_instance_config_t *cfg;
    const ccgw_plugin_t *desc;
    char tag[160];               /* "plugin:instance" for logs */
    char *health_topic;
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
    /* counters */
    _Atomic uint64_t emitted[CCGW_KIND__COUNT];
    _Atomic uint64_t dropped[CCGW_KIND__COUNT];
    _Atomic uint64_t cmds_in, cmds_ok, cmds_failed, cmds_timeout;
};

ccgw_instance_t *ccgw_instance_new(struct ccgw_gateway *gw, const ccgw_instance_config_t *cfg);
/* Start the thread; wait up to timeout_ms for create+start. Returns 0 when
 * running, < 0 when it failed (the instance stays, in state FAILED). */
int ccgw_instance_start(ccgw_instance_t *inst, int timeout_ms);
void ccgw_instance_stop(ccgw_instance_t *inst);
void ccgw_instance_free(ccgw_instance_t *inst);
void ccgw_instance_publish_health(ccgw_instance_t *inst);

#endif
