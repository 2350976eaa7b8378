/*
 * isapi_plugin.h - internal structures of the isapi-door plugin.
 *
 * Ownership and threads
 *  - isapi_t (one per instance) owns its terminals; built in create(),
 *    freed in destroy(). No file-scope mutable state.
 *  - isapi_term_t is one terminal = one `door` device, served by its own
 *    worker thread (started in start(), joined in stop()). The worker owns
 *    a libcurl multi handle with the long-lived alertStream transfer and at
 *    most one command transfer (PUT RemoteControl/door/N) at a time. It
 *    waits in curl_multi_poll() with the terminal's eventfd and its job
 *    queue's fd (ccgw/jobq.h, ISAPI_QUEUE_LEN commands; more: `busy`) as
 *    extra fds, so stop() and a queued command wake it at once.
 *  - Fields marked "worker" are touched only by the worker; the mutex
 *    guards `stop`.
 *  - The instance thread runs create/start/stop/destroy and command(); the
 *    latter checks arguments and enqueues (bounded: `busy` when full).
 * Strings (`const char *`) point into the option nodes, which the core keeps
 * for the instance's lifetime.
 */
#ifndef CCGW_ISAPI_PLUGIN_H
#define CCGW_ISAPI_PLUGIN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ccgw/ccgw.h>

#include "isapi_event.h"
#include "isapi_stream.h"

#define ISAPI_QUEUE_LEN 8
#define ISAPI_REASON_LEN 256
#define ISAPI_STABLE_MS 2000 /* a stream that lived this long resets the backoff */

typedef struct isapi isapi_t;
typedef struct isapi_term isapi_term_t;

typedef struct isapi_job {
    ccgw_cmd_t *cmd;      /* NULL for an internal job (timed relock) */
    char isapi_cmd[16];   /* open / close / alwaysOpen / alwaysClose */
    int duration_s;       /* door.unlock: relock after this (0 = device's own timing) */
    char what[24];        /* ccgw command name, for logs and replies */
} isapi_job_t;

struct isapi_term {
    isapi_t *isapi;
    ccgw_device_t *dev;
    const char *id;
    const char *host;
    int port;
    bool tls;
    bool tls_verify;
    const char *username;
    const char *password;   /* secret: never logged */
    int door;
    int heartbeat_timeout_s;
    int timeout_ms;
    int backoff_min_ms, backoff_max_ms;
    size_t max_part;
    size_t dedup;
    char base_url[300];

    /* worker */
    void *multi;            /* CURLM * */
    void *stream;           /* CURL * of the alertStream, or NULL */
    void *put;              /* CURL * of the command in flight, or NULL */
    isapi_job_t *put_job;
    char put_url[400];
    char put_body[512];
    char put_resp[4096];
    size_t put_resp_len;
    void *put_headers;      /* struct curl_slist * */
    isapi_stream_t parser;
    isapi_seen_t seen;
    bool stream_ok;         /* 200 + multipart seen on this connection */
    long stream_status;
    uint64_t last_alive_ms; /* last byte-level sign of life (part / heartbeat) */
    uint64_t stream_since_ms; /* when the current stream answered 200 */
    uint64_t next_connect_ms;
    int backoff_ms;
    int online;             /* -1 unknown, 0 offline, 1 online */
    char reason[ISAPI_REASON_LEN];
    char stream_reason[ISAPI_REASON_LEN];
    const char *door_state, *lock_state, *mode_state;
    bool alarm_forced, alarm_held, alarm_tamper;
    uint64_t relock_at_ms;  /* 0 = none */
    uint64_t published, duplicates;

    pthread_t thread;
    bool thread_started;
    int wake_fd;
    pthread_mutex_t lock;
    bool lock_init;
    bool stop;              /* under lock */
    ccgw_jobq_t *jobs;      /* door commands (instance thread -> worker), ISAPI_QUEUE_LEN */

    bool offline_h;         /* health, under isapi.lock */
};

struct isapi {
    ccgw_instance_t *inst;
    isapi_term_t *terms;
    size_t n_terms;
    pthread_mutex_t lock;
    ccgw_health_t health;
    char health_reason[ISAPI_REASON_LEN * 2];
};

/* isapi_config.c */
extern const ccgw_option_t isapi_options[];
extern const ccgw_command_spec_t isapi_commands[];
int isapi_check(const ccgw_config_t *options);
int isapi_build(isapi_t *d, const ccgw_config_t *options);
void isapi_free_config(isapi_t *d);

/* isapi_term.c */
int isapi_terms_start(isapi_t *d);
void isapi_terms_stop(isapi_t *d);
int isapi_term_enqueue(isapi_term_t *t, isapi_job_t *job);

#endif /* CCGW_ISAPI_PLUGIN_H */
