/*
 * alarm_store - active alarms (plugin and rule ones) persisted in
 * <gateway.data_dir>/alarms.json so they survive a restart.
 *
 * The live set is in memory (one record per class/device/code); every put or
 * remove marks it dirty and wakes the store's writer thread, which
 * serialises the set under the store lock and writes it outside the lock
 * (temp file + fsync + rename + fsync of the folder). So callers (plugin
 * threads, holding a device lock) never wait for the disk.
 *
 * At open, the file's records become the live set, each marked "pending
 * restore": device.c takes them when the device is declared again
 * (ccgw_alarm_store_take) and re-publishes them; the gateway expires those
 * whose device did not come back within the grace period.
 *
 * A corrupt file is renamed to alarms.json.corrupt-<unix time> (logged). A
 * data dir that cannot be created or written disables persistence (logged).
 * At most CCGW_ALARM_STORE_MAX records are persisted.
 *
 * Lock order: device lock -> store lock (the store lock is a leaf; nothing
 * is called out while it is held).
 */
#ifndef CCGW_ALARM_STORE_H
#define CCGW_ALARM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

#define CCGW_ALARM_STORE_MAX 20000

typedef struct ccgw_alarm_record {
    char *class_name, *device, *code;
    char *instance;        /* may be NULL */
    char *severity;        /* "critical", "major", "minor", "warning", "info" */
    char *message;
    char raised_at[CCGW_TS_LEN];
    bool acked;
    char *acked_by, *ack_note; /* may be NULL */
    char acked_at[CCGW_TS_LEN];
    char *rule;            /* the rule's code when a rule raised it, else NULL */
    char *data_json;       /* the alarm's data object, encoded ("{}" at least) */
} ccgw_alarm_record_t;

void ccgw_alarm_record_clear(ccgw_alarm_record_t *r); /* frees the members */

typedef struct ccgw_alarm_store ccgw_alarm_store_t;

/* Open (create dir 0750 if missing, load the file). dir NULL = no
 * persistence. NULL only when out of memory. */
ccgw_alarm_store_t *ccgw_alarm_store_open(const char *dir);
bool ccgw_alarm_store_persistent(const ccgw_alarm_store_t *s);
int ccgw_alarm_store_start(ccgw_alarm_store_t *s); /* the writer thread */
/* Final write and join. */
void ccgw_alarm_store_stop(ccgw_alarm_store_t *s);
void ccgw_alarm_store_free(ccgw_alarm_store_t *s);

/* Insert or replace (copies everything). */
void ccgw_alarm_store_put(ccgw_alarm_store_t *s, const ccgw_alarm_record_t *r);
void ccgw_alarm_store_remove(ccgw_alarm_store_t *s, const char *class_name, const char *device,
                             const char *code);
/* Copies of the records of class/device still pending restore (they stay in
 * the live set, no longer pending). *out malloc'ed; returns the count. */
size_t ccgw_alarm_store_take(ccgw_alarm_store_t *s, const char *class_name, const char *device,
                             ccgw_alarm_record_t **out);
/* Removes every record still pending restore and returns them (the device
 * never came back). */
size_t ccgw_alarm_store_expire(ccgw_alarm_store_t *s, ccgw_alarm_record_t **out);
size_t ccgw_alarm_store_pending(ccgw_alarm_store_t *s);
/* Write now (synchronously) if dirty; 0 or -1. For tests and stop. */
int ccgw_alarm_store_flush(ccgw_alarm_store_t *s);

#endif
