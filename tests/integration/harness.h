/*
 * harness - integration tests that drive the real ccgw daemon against a real
 * mosquitto broker and the project's Modbus simulator.
 *
 * Everything a test starts lives in one per-test temporary directory
 * (mkdtemp under /tmp): the broker's config, the gateway's YAML and one log
 * file per process (stdout and stderr). Every child runs in its own process
 * group with PR_SET_PDEATHSIG, is stopped by PID (SIGTERM, then SIGKILL after
 * a grace period) and is killed by an atexit handler whatever happened. Ports
 * are ephemeral (bind port 0, read it back, close), so tests run in parallel.
 *
 * MQTT: an MQTT v5 client (libmosquitto, loop_start thread) records every
 * message it receives (topic, payload, parsed JSON, retain flag, QoS,
 * Response Topic, Correlation Data) in a mutex-protected list that is never
 * pruned, so a returned h_msg stays valid until the client is freed.
 * h_mqtt_wait() blocks on a condition variable until a message at index >=
 * `from` matches a topic filter and a predicate, or the timeout expires.
 *
 * Environment knobs:
 *   CCGW_IT_KEEP=1            keep the temporary directories even on success
 *   CCGW_IT_TIMEOUT_SCALE=N   multiply every timeout by N (slow machines)
 *   CCGW_IT_VERBOSE=1         log every received message
 */
#ifndef CCGW_IT_HARNESS_H
#define CCGW_IT_HARNESS_H

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>
#include <jansson.h>

#ifndef CCGW_BIN
#error "CCGW_BIN must be defined by the build"
#endif
#ifndef MODBUS_SIM_BIN
#error "MODBUS_SIM_BIN must be defined by the build"
#endif
#ifndef CCGW_PLUGIN_DIR
#error "CCGW_PLUGIN_DIR must be defined by the build"
#endif
#ifndef MOSQUITTO_BIN
#define MOSQUITTO_BIN "/usr/sbin/mosquitto"
#endif

#define H_PREFIX "ccgw/v1"
/* the topics of the default rig (site hq, gateway gw1, instance equipment-room) */
#define T_STATUS H_PREFIX "/hq/gateway/gw1/status"
#define T_INSTANCE H_PREFIX "/hq/gateway/gw1/instance/equipment-room"
#define T_AC H_PREFIX "/hq/hvac/room1-ac1"
#define T_TH H_PREFIX "/hq/env/room1-th1"

/* ---- time and logging ---------------------------------------------------- */

int64_t h_now_ms(void);   /* CLOCK_MONOTONIC */
int h_scaled(int ms);     /* ms * CCGW_IT_TIMEOUT_SCALE */
void h_sleep_ms(int ms);
void h_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- per-test environment ------------------------------------------------- */

typedef struct h_env h_env;
typedef struct h_proc h_proc;

/* A new temporary directory /tmp/ccgw-it-NAME-XXXXXX. Never NULL (aborts). */
h_env *h_env_new(const char *name);
const char *h_env_dir(const h_env *env);
/* out = DIR/file */
void h_env_path(const h_env *env, const char *file, char *out, size_t len);
/* Stops every process the environment started (SIGTERM, 3 s, SIGKILL) and
 * frees it. The directory stays until h_finish(). */
void h_env_free(h_env *env);
/* Call at the end of main() with the number of failed tests: removes the
 * temporary directories when everything passed (unless CCGW_IT_KEEP=1),
 * else prints where they are. Returns `failures` (clamped to 0..1 for exit). */
int h_finish(int failures);

/* Writes text to path (truncating). 0 or -1. */
int h_write_file(const char *path, const char *text);
/* Reads a whole file into a malloc'ed NUL-terminated string (NULL on error). */
char *h_read_file(const char *path);

/* ---- ports ---------------------------------------------------------------- */

/* A port on 127.0.0.1 that was free a moment ago (bind 0, getsockname, close). */
int h_free_port(void);
/* True when something accepts TCP connections on 127.0.0.1:port. */
bool h_port_open(int port);
/* Waits until 127.0.0.1:port accepts. Fails early when `p` (may be NULL) exits. */
bool h_wait_port(int port, h_proc *p, int timeout_ms);

/* ---- processes ------------------------------------------------------------ */

/* fork/execv argv[0] (argv NULL-terminated) in its own process group, stdin
 * from /dev/null, stdout and stderr appended to DIR/NAME.N.log (N counts
 * spawns of NAME). NULL when fork fails. */
h_proc *h_spawn(h_env *env, const char *name, const char *const argv[]);
pid_t h_proc_pid(const h_proc *p);
const char *h_proc_name(const h_proc *p);
const char *h_proc_log(const h_proc *p);
/* Not yet reaped and not exited. Reaps it if it has exited. */
bool h_proc_alive(h_proc *p);
/* Waits up to timeout_ms for the process to exit; true and *status (raw
 * wait status) when it did. */
bool h_proc_wait(h_proc *p, int timeout_ms, int *status);
/* Sends sig to the process only (not the group). */
void h_proc_signal(h_proc *p, int sig);
/* SIGTERM to the process group, wait up to grace_ms, then SIGKILL; returns the
 * raw wait status (or the one seen earlier if already reaped). */
int h_proc_stop(h_proc *p, int grace_ms);
/* Raw wait status once exited (h_proc_alive() false), else -1. */
int h_proc_status(const h_proc *p);
/* "exit 0", "signal 9 (Killed)" ... */
const char *h_status_str(int status, char *buf, size_t len);
/* Waits until the process' log contains a line containing `needle`; copies
 * the first such line (without newline) into line. Fails early if it exits. */
bool h_proc_wait_log(h_proc *p, const char *needle, int timeout_ms, char *line, size_t len);
/* Waits for "LISTENING tcp ADDR:PORT" and returns PORT (or -1). */
int h_proc_listening_port(h_proc *p, int timeout_ms);
/* Prints the last `lines` lines of the log on stderr. */
void h_proc_dump_log(const h_proc *p, int lines);
/* Dumps the log tails of every process the environment started. */
void h_env_dump_logs(const h_env *env, int lines);

/* Runs argv to completion (at most timeout_ms, then SIGKILL), capturing
 * stdout and stderr separately into malloc'ed strings (caller frees; may be
 * NULL if not wanted). Returns the raw wait status, or -1. */
int h_run(h_env *env, const char *name, const char *const argv[], int timeout_ms, char **out,
          char **err);
/* h_run with a 20 s budget (scaled): 0 only if it exited 0, else its output
 * is logged and -1 returned. */
int h_run_ok(h_env *env, const char *name, const char *const argv[]);

/* A test PKI in the env's directory, made with /usr/bin/openssl (EC P-256,
 * valid 2 days, a private openssl.cnf so the system's does not matter):
 * h_pki_ca makes a self-signed CA NAME.key + NAME.crt; h_pki_leaf makes
 * NAME.key + NAME.crt signed by the CA named ca, kind "server" (SAN
 * 127.0.0.1 and localhost, serverAuth) or "client" (clientAuth). 0 or -1. */
int h_pki_ca(h_env *env, const char *name, const char *subject);
int h_pki_leaf(h_env *env, const char *ca, const char *name, const char *subject, const char *kind, int serial);

/* ---- mosquitto ------------------------------------------------------------ */

typedef struct h_broker {
    h_env *env;
    h_proc *proc;
    int port;
    char conf[PATH_MAX];
} h_broker;

/* Starts mosquitto on a free port (port 0) or the given one, from a private
 * config in the environment dir; waits until the port accepts. NULL on
 * failure (the log says why). */
h_broker *h_broker_start(h_env *env, int port);
/* Stops it (SIGTERM) and starts it again on the same port. 0 or -1. */
int h_broker_restart(h_broker *b);
/* Stops it; the struct stays valid (proc NULL) for a later restart. */
void h_broker_stop(h_broker *b);
void h_broker_free(h_broker *b);

/* ---- the Modbus simulator ------------------------------------------------- */

typedef struct h_sim {
    h_env *env;
    h_proc *proc;
    char name[64];
    int port;
    int hvac_unit, sensor_unit; /* 0 = disabled */
} h_sim;

/* Starts build/bin/modbus-sim --tcp PORT (0 = ephemeral) with the given unit
 * ids and reads its LISTENING line. NULL on failure. */
h_sim *h_sim_start(h_env *env, const char *name, int port, int hvac_unit, int sensor_unit);
/* SIGTERM and wait; returns the raw wait status. */
int h_sim_stop(h_sim *s);
/* Starts it again on the same port. 0 or -1. */
int h_sim_restart(h_sim *s);
void h_sim_free(h_sim *s);

/* Writes the simulator directly (libmodbus, FC5 / FC6), behind the
 * gateway's back. 0 or -1. */
int h_modbus_write_coil(int port, int unit, int addr, bool value);
int h_modbus_write_register(int port, int unit, int addr, uint16_t value);
/* Reads n holding registers (FC3) straight from the simulator. 0 or -1. */
int h_modbus_read_holding(int port, int unit, int addr, int n, uint16_t *out);

/* ---- ccgw ------------------------------------------------------------------ */

typedef struct h_gw_opts {
    const char *site;          /* default "hq" */
    const char *gateway_id;    /* default "gw1" */
    const char *instance_id;   /* default "equipment-room" */
    const char *log_level;     /* default "info" */
    int mqtt_port;
    int keepalive_s;           /* 0 = not written (the gateway's default) */
    int reconnect_max_ms;      /* 0 = not written; else mqtt.reconnect {min_ms: 100, max_ms: N} */
    int hvac_port;             /* 0 = no hvac device */
    int env_port;              /* 0 = no env device */
    int hvac_unit;             /* default 1 */
    int env_unit;              /* default 2 */
    int poll_ms;               /* default 500 */
    int timeout_ms;            /* default 300 */
    int retries;               /* default 1 (negative: 0) */
    int offline_after;         /* default 3 */
} h_gw_opts;

/* Writes the YAML config (gateway / mqtt / instances: one modbus instance
 * with room1-ac1 (hvac) and/or room1-th1 (env), the register maps of
 * config/demo.yaml) into the environment dir as `file`; path gets its full
 * name. 0 or -1. */
int h_gw_write_config(h_env *env, const char *file, const h_gw_opts *o, char *path, size_t len);
/* Runs CCGW_BIN --config path (log: DIR/ccgw.N.log). */
h_proc *h_gw_start(h_env *env, const char *config_path);


/* ---- MQTT v5 client --------------------------------------------------------- */

typedef struct h_msg {
    size_t index;              /* position in the client's list */
    int64_t t_ms;              /* h_now_ms() at arrival */
    char *topic;
    char *payload;             /* NUL-terminated copy */
    int len;
    int qos;
    bool retain;
    char *response_topic;      /* v5 property or NULL */
    unsigned char *corr;       /* v5 Correlation Data or NULL */
    int corr_len;
    json_t *json;              /* parsed payload or NULL */
} h_msg;

typedef struct h_mqtt h_mqtt;

/* true when the message matches; `ud` is the caller's. */
typedef bool (*h_pred_fn)(const h_msg *m, const void *ud);

/* Connects (MQTT v5, clean start, TCP_NODELAY) to 127.0.0.1:port and starts
 * the network thread; waits for CONNACK. NULL on failure. */
h_mqtt *h_mqtt_new(int port, const char *client_id);
/* Subscribes with `qos` and Retain As Published (so h_msg.retain says whether
 * the publisher retained it, for live messages too) and waits for the
 * SUBACK. 0 or -1. */
int h_mqtt_sub(h_mqtt *c, const char *filter, int qos);
/* The number of messages received so far: pass it as `from` to wait only for
 * messages that arrive after this point. */
size_t h_mqtt_mark(h_mqtt *c);
/* The first message with index >= from whose topic matches `filter` (an MQTT
 * topic filter; an exact topic works too) and for which pred (may be NULL)
 * returns true; waits up to timeout_ms. NULL on timeout. */
const h_msg *h_mqtt_wait(h_mqtt *c, size_t from, const char *filter, h_pred_fn pred,
                         const void *ud, int timeout_ms);
/* Same, with a JSON pattern: every member of the pattern object must be
 * present in the payload with an equal value (objects are matched the same
 * way, recursively; numbers compare as doubles). "{}" matches any object.
 * NULL pattern: any payload (even empty). */
const h_msg *h_mqtt_wait_match(h_mqtt *c, size_t from, const char *filter, const char *pattern,
                               int timeout_ms);
/* Copies up to max pointers of messages with index >= from matching filter
 * (and pred, may be NULL) into out; returns how many matched in total. */
size_t h_mqtt_collect(h_mqtt *c, size_t from, const char *filter, h_pred_fn pred, const void *ud,
                      const h_msg **out, size_t max);
/* Publishes (v5); resp_topic and corr may be NULL. Waits for the PUBACK when
 * qos > 0. 0 or -1. */
int h_mqtt_pub(h_mqtt *c, const char *topic, const void *payload, int len, int qos, bool retain,
               const char *resp_topic, const void *corr, int corr_len);
bool h_mqtt_connected(h_mqtt *c);
/* Prints the last `max` received messages matching filter (diagnostics). */
void h_mqtt_dump(h_mqtt *c, size_t from, const char *filter, int max);
void h_mqtt_free(h_mqtt *c);

/* ---- the rig of tests that write their own YAML ------------------------------ */

/* A broker on a free port and a watcher client subscribed to ccgw/v1/# (QoS 1).
 * 0, or -1 (logged; *b and *s hold what was made, for h_rig_teardown). */
int h_broker_and_watcher(h_env *env, h_broker **b, h_mqtt **s);
/* Writes `yaml` as ccgw.yaml in the env dir (full path into path, may be
 * NULL) and starts ccgw on it; *t0 (may be NULL) gets the start time. */
h_proc *h_gw_start_yaml(h_env *env, const char *yaml, char *path, size_t len, int64_t *t0);
/* Stops in order: ccgw (SIGTERM, 8 s grace), then each peer (3 s grace) of
 * the NULL-terminated list (NULL entries before the end are skipped: pass
 * the count), the watcher, the broker, and frees the env. Any may be NULL. */
void h_rig_teardown(h_env *env, h_broker *b, h_mqtt *s, h_proc *gw, h_proc *const *peers, size_t n_peers);

/* ---- the usual rig ---------------------------------------------------------- */

typedef struct h_world {
    h_env *env;
    h_broker *broker;
    h_sim *sim;      /* one sim with both units, or the hvac one */
    h_sim *sim2;     /* the env (sensor) one when there are two */
    h_proc *gw;
    h_mqtt *sub;     /* subscribed to ccgw/v1/# before ccgw starts */
    h_gw_opts opts;
    char config[PATH_MAX];
    int64_t t_gw_start;
} h_world;

/* Environment, broker, a subscriber on ccgw/v1/#, n_sims simulators (0, 1
 * with both units, 2 with one unit each), the config (opts may be NULL; its
 * ports are filled in) and ccgw. Sets h_current_env. 0 or -1 (logged). */
int h_world_start(h_world *w, const char *name, int n_sims, const h_gw_opts *opts);
/* Stops ccgw (SIGTERM, 8 s), the subscriber, sims, broker; frees the env. */
void h_world_stop(h_world *w);
/* Milliseconds left of a budget that started at `since` (>= 0), scaled. */
int h_left_ms(int64_t since, int budget_ms);

/* ---- JSON --------------------------------------------------------------------- */

/* Subset match (see h_mqtt_wait_match). */
bool h_json_match(const json_t *pattern, const json_t *value);
/* Member as a number (integer or real); false when absent or not a number. */
bool h_json_num(const json_t *obj, const char *key, double *out);
/* Nested lookup: h_json_path(obj, "values", "humidity") (NULL-terminated). */
json_t *h_json_get(const json_t *obj, ...);
const char *h_json_str(const json_t *obj, const char *key);
/* The member is a string equal to want (false when want is NULL). */
bool h_json_str_is(const json_t *obj, const char *key, const char *want);
/* YYYY-MM-DDTHH:MM:SS.mmmZ and within max_skew_s of the wall clock. */
bool h_ts_valid(const char *ts, int max_skew_s);
/* Exactly 16 hex digits. */
bool h_boot_valid(const char *boot);
/* Checks the device envelope: ts, site, class, device, instance, boot (16
 * hex; equal to `boot` when non-NULL) and seq (integer >= 1). On failure
 * writes the reason into why and returns false. */
bool h_envelope_ok(const json_t *j, const char *site, const char *cls, const char *device,
                   const char *instance, const char *boot, char *why, size_t whylen);
/* A compact dump of a JSON value (static buffer, for messages). */
const char *h_json_dump(const json_t *j);

/* ---- assertions ----------------------------------------------------------------- */

/* The environment whose logs a failing assertion dumps (set by tests). */
extern h_env *h_current_env;
void h_fail_report(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* These fail the current cmocka test (cmocka's _fail), after printing the
 * message and the tails of every process log of h_current_env. */

#define H_ASSERT(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            h_fail_report(__FILE__, __LINE__, "assertion '" #cond "' failed: " __VA_ARGS__);      \
            _fail(__FILE__, __LINE__);                                                             \
        }                                                                                          \
    } while (0)

#define H_FAIL(...)                                                                                \
    do {                                                                                           \
        h_fail_report(__FILE__, __LINE__, __VA_ARGS__);                                            \
        _fail(__FILE__, __LINE__);                                                                 \
    } while (0)

/* Waits for a message matching a JSON pattern; on timeout prints what did
 * arrive on that filter and fails. Evaluates to the message. */
const h_msg *h_expect_match_at(const char *file, int line, h_mqtt *c, size_t from,
                               const char *filter, const char *pattern, int timeout_ms);
#define H_EXPECT(c, from, filter, pattern, timeout_ms)                                             \
    h_expect_match_at(__FILE__, __LINE__, (c), (from), (filter), (pattern), (timeout_ms))

const h_msg *h_expect_pred_at(const char *file, int line, h_mqtt *c, size_t from,
                              const char *filter, h_pred_fn pred, const void *ud,
                              const char *what, int timeout_ms);
#define H_EXPECT_PRED(c, from, filter, pred, ud, what, timeout_ms)                                 \
    h_expect_pred_at(__FILE__, __LINE__, (c), (from), (filter), (pred), (ud), (what), (timeout_ms))

#endif /* CCGW_IT_HARNESS_H */
