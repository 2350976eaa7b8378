/*
 * spool - the crash-safe store of the messages that must reach the broker
 * (events, alarms, and telemetry when configured): a segmented append-only
 * log in <data_dir>/spool/ with a CRC32C per record, fsync batched by a
 * small flusher thread, out-of-order acknowledgements tracked in memory and
 * a conservative low watermark (every id <= W delivered) persisted in
 * spool/checkpoint (temp file + rename). docs/architecture.md ("Spool")
 * explains the format and why a log and not SQLite.
 *
 * Threads: any thread appends (writev(2), or with the map option a copy
 * into the active segment's shared mapping, under the spool lock: a record is in the page cache when append returns, so kill -9 loses
 * nothing accepted; a power loss loses at most the last fsync_ms). One reader (the bus's north
 * thread) calls next()/rewind(); ack() comes from any thread (libmosquitto's).
 * The flusher thread (started by open) fsyncs, writes the checkpoint,
 * deletes delivered or expired segments and reports "no longer full".
 *
 * Limits: max_bytes and max_age_s. At max_bytes, segments holding only
 * telemetry are dropped oldest-first and new telemetry is refused (both
 * counted); events are refused with CCGW_EFULL (the caller applies
 * backpressure); alarms may use a reserve of max_bytes/16 (at least 64 KiB)
 * beyond the limit, then get CCGW_EFULL too. Segments older than max_age_s
 * are deleted even if not delivered (counted as expired).
 */
#ifndef CCGW_SPOOL_H
#define CCGW_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ccgw_spool ccgw_spool_t;

typedef struct ccgw_spool_options {
    uint64_t max_bytes;      /* 0 = 256 MiB */
    uint64_t max_age_s;      /* 0 = no age limit */
    int fsync_ms;            /* 0 = fsync after every append (slow); default 200 */
    uint64_t segment_bytes;  /* 0 = max_bytes / 8, within 4 KiB .. 4 MiB */
    bool map;                /* append through a shared mapping of a preallocated segment
                              * instead of writev(2) (off: docs/architecture.md, Spool) */
    /* called (on the appending or the flusher thread, no spool lock held)
     * when events start being refused and when there is room again */
    void (*full_cb)(void *ctx, bool full);
    void *full_ctx;
} ccgw_spool_options_t;

/* What open found (also logged). */
typedef struct ccgw_spool_open_report {
    uint64_t segments, records, pending;   /* pending = replayed at start */
    uint64_t corrupt_regions, corrupt_bytes, corrupt_segments;
    uint64_t watermark;
    uint64_t elapsed_ms;
} ccgw_spool_open_report_t;

typedef struct ccgw_spool_stats {
    uint64_t bytes, segments;
    uint64_t pending;              /* appended, not yet acknowledged */
    uint64_t appended, delivered;  /* since open */
    uint64_t dropped_telemetry;    /* refused or dropped at the limit */
    uint64_t refused_full;         /* events/alarms refused with CCGW_EFULL */
    uint64_t expired;              /* not delivered within max_age_s */
    uint64_t replayed_at_start;
    uint64_t corrupt_regions, corrupt_bytes;
    uint64_t fsyncs, checkpoints;
    uint64_t watermark, next_id;
    uint64_t mapped_segments;      /* segments written through a shared mapping (no write(2)) */
    uint64_t read_mapped, read_file; /* records handed to the reader from the mapping / from the file */
    uint64_t read_memory;          /* from the copy of the latest appends (no read(2)) */
    bool full;
} ccgw_spool_stats_t;

/* One record as the reader sees it; topic and payload are NUL-terminated
 * and valid until the next call of next()/rewind()/close. */
typedef struct ccgw_spool_rec {
    uint64_t id;
    uint64_t ts_ms;          /* wall clock at append */
    uint64_t version;        /* retained kinds: the cache version (this boot) */
    bool this_boot;          /* appended since open (else replayed) */
    int kind;                /* ccgw_kind_t */
    int qos;
    const char *topic;
    const char *payload;
    size_t payload_len;
} ccgw_spool_rec_t;

/* Open (create) the spool in dir, recover what is there and start the
 * flusher. NULL on failure (logged). report may be NULL. */
ccgw_spool_t *ccgw_spool_open(const char *dir, const ccgw_spool_options_t *o,
                              ccgw_spool_open_report_t *report);
/* Stop the flusher, fsync, write the checkpoint, close. NULL is fine. */
void ccgw_spool_close(ccgw_spool_t *sp);

/* Append one record. CCGW_OK (*id set), CCGW_EFULL (at the limit, see
 * above), CCGW_EINVAL (too large), CCGW_EIO (write failed, logged). */
int ccgw_spool_append(ccgw_spool_t *sp, int kind, int qos, uint64_t version, const char *topic,
                      const char *payload, size_t len, uint64_t *id);

/* Reader (one thread): the next record not yet acknowledged, in id order.
 * 1 = *rec filled, 0 = nothing more for now. */
int ccgw_spool_next(ccgw_spool_t *sp, ccgw_spool_rec_t *rec);
/* Records appended and not yet handed to the reader (a snapshot). */
uint64_t ccgw_spool_unread(ccgw_spool_t *sp);
/* True when next() would return a record. */
bool ccgw_spool_has_unread(ccgw_spool_t *sp);
/* Go back to the lowest unacknowledged record (after a disconnect). */
void ccgw_spool_rewind(ccgw_spool_t *sp);
/* The record is delivered (thread-safe, any order, idempotent). */
void ccgw_spool_ack(ccgw_spool_t *sp, uint64_t id);
/* Run the flusher's work now (tests): fsync, checkpoint, delete, expire. */
void ccgw_spool_maintain(ccgw_spool_t *sp);

void ccgw_spool_get_stats(ccgw_spool_t *sp, ccgw_spool_stats_t *out);

/* CRC32C (Castagnoli) of buf, continuing from crc (start with 0). */
uint32_t ccgw_crc32c(uint32_t crc, const void *buf, size_t len);

#endif
