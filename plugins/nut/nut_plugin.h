/*
 * nut_plugin.h - internal structures of the nut plugin.
 *
 * Ownership and threads
 *  - nut_t (one per configured instance) owns the servers and their UPSes;
 *    everything is built in create() and freed in destroy(). No file-scope
 *    mutable state.
 *  - nut_server_t is one upsd (host:port) with one TCP connection, used only
 *    by the server's worker thread (started in start(), joined in stop()).
 *    The worker polls every UPS of the server with `LIST VAR`, publishes
 *    state, telemetry, events and alarms, and runs the instant commands
 *    queued for the server. The server mutex guards `stop` and the queue;
 *    `wake_fd` (an eventfd) wakes the worker out of any wait or I/O.
 *  - nut_ups_t fields marked "worker" are touched only by the server's
 *    worker; fields marked "health" are guarded by nut_t.lock.
 *  - The instance thread runs create/start/stop/destroy and command(); the
 *    latter only checks the allow-list and enqueues.
 * Strings (`const char *`) point into the option nodes, which the core keeps
 * for the instance's lifetime.
 */
#ifndef CCGW_NUT_PLUGIN_H
#define CCGW_NUT_PLUGIN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ccgw/ccgw.h>

#include "nut_proto.h"

#define NUT_QUEUE_LEN 8     /* pending instant commands per server; more -> `busy` */
#define NUT_REASON_LEN 512
#define NUT_VALUE_LEN 256   /* longest variable value kept */
#define NUT_CMD_LEN 64

typedef struct nut nut_t;
typedef struct nut_server nut_server_t;
typedef struct nut_ups nut_ups_t;

struct nut_ups {
    nut_server_t *srv;
    ccgw_device_t *dev;
    const char *name;          /* UPS name on upsd */
    const char *id;            /* device id */
    const char **allowed;      /* allowed instant commands */
    size_t n_allowed;
    const char **extra;        /* extra variables published as telemetry */
    size_t n_extra;

    /* worker: the current poll */
    double var_val[NUT_N_VARS];
    bool var_int[NUT_N_VARS];
    bool var_have[NUT_N_VARS];
    char (*extra_val)[NUT_VALUE_LEN];
    bool *extra_have;
    char status_raw[NUT_VALUE_LEN];
    bool status_have;

    /* worker: what was last published */
    bool have_flags;
    unsigned flags;
    bool alarms_known;
    unsigned alarms_active;    /* bit i = nut_alarm_defs[i] raised by us */
    uint64_t on_battery_since; /* ms, when power.lost was seen */
    int online;                /* -1 unknown, 0 offline, 1 online */
    char reason[NUT_REASON_LEN];

    /* health (nut_t.lock) */
    bool offline;
};

typedef struct nut_job {
    nut_ups_t *ups;
    ccgw_cmd_t *cmd;
    char command[NUT_CMD_LEN + 1];
} nut_job_t;

struct nut_server {
    nut_t *nut;
    const char *host;
    int port;
    const char *username;      /* NULL: no login */
    const char *password;      /* secret: never logged */
    uint64_t poll_ms;
    int timeout_ms;
    char name[300];            /* "host:port" for logs and reasons */

    nut_ups_t *upses;
    size_t n_ups;

    /* worker */
    int fd;
    char rbuf[NUT_LINE_MAX + 1];
    size_t rlen;
    char conn_reason[NUT_REASON_LEN]; /* last connection failure, for logs */

    pthread_t thread;
    bool thread_started;
    int wake_fd;
    pthread_mutex_t lock;
    bool lock_init;
    bool stop;                 /* under lock */
    nut_job_t *queue[NUT_QUEUE_LEN];
    size_t q_head, q_len;      /* under lock */

    /* health (nut_t.lock) */
    char auth_problem[NUT_REASON_LEN];
};

struct nut {
    ccgw_instance_t *inst;
    nut_server_t *servers;
    size_t n_servers;
    size_t n_ups;

    pthread_mutex_t lock;      /* health */
    ccgw_health_t health;
    char health_reason[NUT_REASON_LEN * 2];
};

/* nut_config.c */
extern const ccgw_option_t nut_options[];
extern const ccgw_command_spec_t nut_commands[];
int nut_check(const ccgw_config_t *options);
int nut_build(nut_t *nut, const ccgw_config_t *options);
void nut_free_config(nut_t *nut);

/* nut_server.c */
int nut_servers_start(nut_t *nut);
void nut_servers_stop(nut_t *nut);
/* Hands an instant command to the UPS's server worker. CCGW_EFULL when the
 * queue is full, CCGW_ESTOPPED when the worker is not running. Instance thread. */
int nut_server_enqueue(nut_server_t *srv, nut_job_t *job);
/* Re-evaluates and publishes the instance health. Any thread. */
void nut_health_update(nut_t *nut);

#endif /* CCGW_NUT_PLUGIN_H */
