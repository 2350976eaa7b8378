/*
 * modbus_plugin.h - internal structures of the modbus plugin.
 *
 * Ownership and threads
 *  - mb_instance_t (one per configured instance) owns devices and links.
 *    Everything is built in create() and freed in destroy(); no file-scope
 *    mutable state.
 *  - mb_link_t is one connection: a TCP device, the TCP devices with
 *    `connection: shared` on one host:port, or one RTU serial line shared
 *    by every device on it. Each link has one worker thread (started in
 *    start(), joined in stop()) that alone touches the libmodbus context and
 *    the devices' poll state. The link mutex guards `stop`, the write queue,
 *    `busy_fd` and the devices' `next_poll_ms`.
 *  - The instance thread runs create/start/stop/destroy and the command
 *    callback; the latter only validates, converts and enqueues writes.
 *  - Health (offline devices) is shared between workers and guarded by
 *    mb_instance_t.health_lock.
 * Strings (`const char *`) point into the option nodes, which the core keeps
 * for the instance's lifetime.
 */
#ifndef CCGW_MODBUS_PLUGIN_H
#define CCGW_MODBUS_PLUGIN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ccgw/ccgw.h>

#include "modbus_codec.h"

#define MB_WRITE_QUEUE_LEN 16 /* pending writes per link; more -> `busy` */
#define MB_REASON_LEN 96
#define MB_POLL_SLOT_MS 20u   /* first polls are spread over the interval in steps of this */

typedef struct mb_instance mb_instance_t;
typedef struct mb_link mb_link_t;
typedef struct mb_device mb_device_t;

typedef enum mb_publish { MB_PUB_TELEMETRY = 0, MB_PUB_STATE = 1, MB_PUB_NONE = 2 } mb_publish_t;
extern const char *const mb_publish_names[];

typedef enum mb_transport { MB_TCP = 0, MB_RTU = 1 } mb_transport_t;

typedef struct mb_alarm {
    bool present;
    const char *code;
    ccgw_severity_t severity;
    const char *message;
    bool when; /* raised while the value equals this */
    bool active; /* worker-owned: raised by us */
} mb_alarm_t;

typedef struct mb_bitdef {
    unsigned bit;
    const char *name;
    mb_publish_t publish;
    mb_alarm_t alarm;
} mb_bitdef_t;

typedef struct mb_point {
    const char *name;
    mb_table_t table;
    uint32_t address;
    mb_format_t fmt;
    unsigned nregs;
    const char *unit;
    mb_publish_t publish;
    bool writable;
    mb_limits_t limits;
    const char **enums; /* enum names, index = raw value */
    size_t n_enums;
    mb_bitdef_t *bits;
    size_t n_bits;
    mb_alarm_t alarm;
    size_t block; /* index into the device's blocks */
} mb_point_t;

/* A command alias: `name` writes `point` (with `value` fixed, or from args). */
typedef struct mb_alias {
    const char *name;
    mb_point_t *point;
    const ccgw_config_t *value; /* fixed value node, or NULL: takes {value} */
} mb_alias_t;

/* A block's read result lives in the device's buffers at `buf_off`. */
typedef struct mb_rblock {
    mb_block_t req;
    size_t buf_off;
    bool ok; /* worker-owned: read in this poll */
} mb_rblock_t;

typedef enum mb_dev_status { MB_DEV_UNKNOWN = 0, MB_DEV_ONLINE, MB_DEV_OFFLINE } mb_dev_status_t;

struct mb_device {
    mb_instance_t *mb;
    mb_link_t *link;
    ccgw_device_t *dev;
    const char *id;
    const char *class_name;
    int unit_id;
    uint64_t poll_interval_ms;
    uint32_t timeout_ms;
    unsigned retries;
    unsigned offline_after;
    unsigned max_gap;

    mb_point_t *points;
    size_t n_points;
    mb_rblock_t *blocks;
    size_t n_blocks;
    uint16_t *regs; /* register blocks' results */
    uint8_t *bits;  /* bit blocks' results */
    ccgw_value_t *tel, *state; /* per-poll scratch, worker-owned */
    size_t n_values_max;

    mb_alias_t *aliases;
    size_t n_aliases;
    ccgw_command_spec_t *cmd_specs; /* {0}-terminated; outlives the device */

    /* under link->lock */
    uint64_t next_poll_ms;

    /* worker-owned */
    unsigned fail_streak;
    uint64_t n_polls, n_errors;
    char last_reason[MB_REASON_LEN];

    /* under mb->health_lock */
    mb_dev_status_t status;
    char offline_reason[MB_REASON_LEN];
};

typedef struct mb_write {
    mb_device_t *dev;
    mb_point_t *point;
    ccgw_cmd_t *cmd;
    uint16_t words[2];
    mb_raw_t raw;
    double eng;           /* engineering value written */
    const char *enum_name; /* enum points: the name written, or NULL */
} mb_write_t;

struct mb_link {
    mb_instance_t *mb;
    mb_transport_t transport;
    bool shared; /* tcp: devices with `connection: shared` on this host:port */
    char name[128]; /* "tcp 127.0.0.1:502" or "rtu /dev/ttyUSB0" */
    /* connection parameters (from the first device of the link) */
    const char *host;
    int port;
    const char *serial;
    int baud;
    char parity; /* 'N', 'E', 'O' */
    int data_bits, stop_bits;

    mb_device_t **devices;
    size_t n_devices;

    void *ctx; /* modbus_t *, worker-owned */
    bool connected;
    /* tcp: the descriptor number this link's socket always gets (reserved at start, held by
     * /dev/null while not connected), so that it stays below FD_SETSIZE: libmodbus 3.1 waits
     * with select(), which aborts on a descriptor >= 1024. -1: none. */
    int sock_slot;

    pthread_t thread;
    bool thread_started;
    int wake_fd; /* eventfd: stop() makes it readable to cut a TCP connect short */
    pthread_mutex_t lock;
    bool sync_init;
    bool stop;   /* under lock */
    int busy_fd; /* under lock: TCP socket of a request in flight, else -1 */
    ccgw_jobq_t *writes; /* pending writes (instance thread -> worker), MB_WRITE_QUEUE_LEN */
};

struct mb_instance {
    ccgw_instance_t *inst;
    mb_device_t *devices;
    size_t n_devices;
    mb_link_t *links;
    size_t n_links;

    pthread_mutex_t health_lock;
    bool health_init;
    size_t n_offline;
    ccgw_health_t health;
    char health_reason[160];
};

/* modbus_config.c */
extern const ccgw_option_t mb_options[];
extern const ccgw_command_spec_t mb_commands[];
int mb_check(const ccgw_config_t *options);
int mb_build(mb_instance_t *mb, const ccgw_config_t *options);
void mb_free_config(mb_instance_t *mb);
/* The point named `name` of the device, or NULL. */
mb_point_t *mb_find_point(mb_device_t *d, const char *name);
/* Parse a command value for a point (the write path and fixed alias values).
 * On success fills w->eng/raw/words/enum_name; else writes why into `err`. */
int mb_point_value(const mb_point_t *p, const ccgw_config_t *value, mb_write_t *w, char *err,
                   size_t errlen);

/* modbus_link.c */
int mb_links_start(mb_instance_t *mb);
void mb_links_stop(mb_instance_t *mb);
/* Hand a write to its link's worker. CCGW_EFULL when the queue is full,
 * CCGW_ESTOPPED when the link is not running. Thread: instance thread. */
int mb_link_enqueue(mb_link_t *link, mb_write_t *w);

#endif /* CCGW_MODBUS_PLUGIN_H */
