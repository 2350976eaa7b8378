/* Unit tests of the spool (core/spool.c) on real files in a temporary
 * folder: append/ack/reopen, out-of-order acknowledgements and the
 * watermark, segment deletion, a truncated tail, a bit flip in the middle,
 * the limits (telemetry dropped, events CCGW_EFULL, the full callback),
 * age expiry, and the mapped segments: records appended by a process killed
 * with SIGKILL (no close, the file still preallocated) all come back, the
 * unused end is not damage, a record cut short before its magic neither. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>

#include "bus.h"
#include "ccgw/types.h"
#include "spool.h"

#define K_TELEMETRY 1
#define K_EVENT 2
#define K_ALARM 3

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/ccgw-spool-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static ccgw_spool_t *open_sp(const ccgw_spool_options_t *o, ccgw_spool_open_report_t *r)
{
    char d[300];
    snprintf(d, sizeof d, "%s/spool", dir);
    ccgw_spool_options_t def = {.fsync_ms = 50};
    ccgw_spool_t *sp = ccgw_spool_open(d, o ? o : &def, r);
    assert_non_null(sp);
    return sp;
}

static uint64_t add(ccgw_spool_t *sp, int kind, int i)
{
    char p[64];
    snprintf(p, sizeof p, "{\"seq\":%d}", i);
    uint64_t id = 0;
    assert_int_equal(ccgw_spool_append(sp, kind, 1, 0, "t/dev/event/x", p, strlen(p), &id), CCGW_OK);
    return id;
}

/* Read everything readable; return the seq values in order. */
static int read_all(ccgw_spool_t *sp, int *seqs, uint64_t *ids, int max)
{
    ccgw_spool_rec_t r;
    int n = 0;
    while (n < max && ccgw_spool_next(sp, &r) == 1) {
        int s = -1;
        assert_int_equal(sscanf(r.payload, "{\"seq\":%d}", &s), 1);
        assert_string_equal(r.topic, "t/dev/event/x");
        seqs[n] = s;
        if (ids)
            ids[n] = r.id;
        n++;
    }
    return n;
}

static int count_files(const char *sub, const char *suffix)
{
    char d[300];
    snprintf(d, sizeof d, "%s/spool%s", dir, sub);
    DIR *dd = opendir(d);
    if (!dd)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dd)))
        if (strlen(e->d_name) > strlen(suffix) && strstr(e->d_name, suffix))
            n++;
    closedir(dd);
    return n;
}

static void append_ack_reopen(void **state)
{
    (void)state;
    ccgw_spool_t *sp = open_sp(NULL, NULL);
    for (int i = 1; i <= 10; i++)
        assert_int_equal(add(sp, K_EVENT, i), (uint64_t)i);
    int seqs[32];
    uint64_t ids[32];
    assert_int_equal(read_all(sp, seqs, ids, 32), 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(seqs[i], i + 1);
    for (int i = 0; i < 5; i++)
        ccgw_spool_ack(sp, ids[i]);
    ccgw_spool_stats_t st;
    ccgw_spool_get_stats(sp, &st);
    assert_int_equal(st.pending, 5);
    assert_int_equal(st.watermark, 5);
    ccgw_spool_close(sp);

    ccgw_spool_open_report_t rep;
    sp = open_sp(NULL, &rep);
    assert_int_equal(rep.pending, 5);
    assert_int_equal(rep.corrupt_regions, 0);
    assert_int_equal(read_all(sp, seqs, ids, 32), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(seqs[i], i + 6);
    /* one gateway per spool */
    {
        char d[300];
        snprintf(d, sizeof d, "%s/spool", dir);
        ccgw_spool_options_t def = {.fsync_ms = 50};
        assert_null(ccgw_spool_open(d, &def, NULL));
    }
    /* new ids continue after the old ones */
    assert_int_equal(add(sp, K_EVENT, 11), 11);
    assert_int_equal(read_all(sp, seqs, NULL, 32), 1);
    assert_int_equal(seqs[0], 11);
    /* rewind: back to the first unacknowledged */
    ccgw_spool_rewind(sp);
    assert_int_equal(read_all(sp, seqs, NULL, 32), 6);
    assert_int_equal(seqs[0], 6);
    ccgw_spool_get_stats(sp, &st);
    assert_int_equal(st.replayed_at_start, 5);
    ccgw_spool_close(sp);
}

static void out_of_order_acks(void **state)
{
    (void)state;
    ccgw_spool_t *sp = open_sp(NULL, NULL);
    for (int i = 1; i <= 10; i++)
        add(sp, K_EVENT, i);
    ccgw_spool_stats_t st;
    ccgw_spool_ack(sp, 3);
    ccgw_spool_ack(sp, 1);
    ccgw_spool_get_stats(sp, &st);
    assert_int_equal(st.watermark, 1);
    ccgw_spool_ack(sp, 2);
    ccgw_spool_get_stats(sp, &st);
    assert_int_equal(st.watermark, 3);
    ccgw_spool_ack(sp, 5);
    ccgw_spool_ack(sp, 5); /* idempotent */
    ccgw_spool_ack(sp, 99); /* never appended: ignored */
    ccgw_spool_get_stats(sp, &st);
    assert_int_equal(st.watermark, 3);
    assert_int_equal(st.pending, 6);
    assert_int_equal(st.delivered, 4);
    /* acked records are not read again */
    int seqs[32];
    assert_int_equal(read_all(sp, seqs, NULL, 32), 6);
    int want[] = {4, 6, 7, 8, 9, 10};
    for (int i = 0; i < 6; i++)
        assert_int_equal(seqs[i], want[i]);
    ccgw_spool_ack(sp, 4);
    ccgw_spool_get_stats(sp, &st);
    assert_int_equal(st.watermark, 5);
    /* far-ahead acks grow the window */
    for (int i = 11; i <= 20000; i++)
        add(sp, K_EVENT, i);
    for (int i = 20000; i >= 6; i--)
        ccgw_spool_ack(sp, (uint64_t)i);
    ccgw_spool_get_stats(sp, &st);
    assert_int_equal(st.watermark, 20000);
    assert_int_equal(st.pending, 0);
    ccgw_spool_close(sp);
    /* the checkpoint survives: nothing to replay */
    ccgw_spool_open_report_t rep;
    sp = open_sp(NULL, &rep);
    assert_int_equal(rep.pending, 0);
    assert_int_equal(rep.watermark, 20000);
    assert_int_equal(add(sp, K_EVENT, 1), 20001);
    ccgw_spool_close(sp);
}

static void segment_deletion(void **state)
{
    (void)state;
    ccgw_spool_options_t o = {.fsync_ms = 50, .segment_bytes = 1024};
    ccgw_spool_t *sp = open_sp(&o, NULL);
    for (int i = 1; i <= 200; i++)
        add(sp, K_EVENT, i);
    ccgw_spool_stats_t st;
    ccgw_spool_get_stats(sp, &st);
    assert_true(st.segments > 5);
    uint64_t segs_before = st.segments;
    for (int i = 1; i <= 100; i++)
        ccgw_spool_ack(sp, (uint64_t)i);
    ccgw_spool_maintain(sp);
    ccgw_spool_get_stats(sp, &st);
    assert_true(st.segments < segs_before);
    assert_true(st.segments >= segs_before / 2 - 1);
    assert_int_equal((int)count_files("", ".seg"), (int)st.segments);
    for (int i = 101; i <= 200; i++)
        ccgw_spool_ack(sp, (uint64_t)i);
    ccgw_spool_maintain(sp);
    ccgw_spool_get_stats(sp, &st);
    assert_true(st.segments <= 1); /* only the active one may stay */
    assert_true(st.fsyncs > 0);
    assert_true(st.checkpoints > 0);
    ccgw_spool_close(sp);
    ccgw_spool_open_report_t rep;
    sp = open_sp(&o, &rep);
    assert_int_equal(rep.pending, 0);
    ccgw_spool_close(sp);
}

static void seg_file(char *out, size_t len)
{
    char d[300];
    snprintf(d, sizeof d, "%s/spool", dir);
    DIR *dd = opendir(d);
    assert_non_null(dd);
    struct dirent *e;
    out[0] = '\0';
    while ((e = readdir(dd)))
        if (strstr(e->d_name, ".seg") && strlen(e->d_name) == 20)
            snprintf(out, len, "%s/%s", d, e->d_name);
    closedir(dd);
    assert_true(out[0] != '\0');
}

static void truncated_tail(void **state)
{
    (void)state;
    ccgw_spool_t *sp = open_sp(NULL, NULL);
    for (int i = 1; i <= 10; i++)
        add(sp, K_EVENT, i);
    ccgw_spool_close(sp);
    char f[600];
    seg_file(f, sizeof f);
    struct stat stt;
    assert_int_equal(stat(f, &stt), 0);
    assert_int_equal(truncate(f, stt.st_size - 7), 0);
    ccgw_spool_open_report_t rep;
    sp = open_sp(NULL, &rep);
    assert_int_equal(rep.pending, 9);
    assert_int_equal(rep.corrupt_regions, 1);
    assert_true(rep.corrupt_bytes > 0);
    assert_int_equal(count_files("/corrupt", ".bad"), 1);
    int seqs[32];
    assert_int_equal(read_all(sp, seqs, NULL, 32), 9);
    for (int i = 0; i < 9; i++)
        assert_int_equal(seqs[i], i + 1);
    /* the id of the lost record is skipped by the watermark */
    for (uint64_t i = 1; i <= 9; i++)
        ccgw_spool_ack(sp, i);
    uint64_t id = add(sp, K_EVENT, 11);
    ccgw_spool_ack(sp, id);
    ccgw_spool_stats_t st;
    ccgw_spool_get_stats(sp, &st);
    assert_int_equal(st.watermark, id);
    assert_int_equal(st.pending, 0);
    ccgw_spool_close(sp);
    /* a second open finds nothing wrong */
    sp = open_sp(NULL, &rep);
    assert_int_equal(rep.corrupt_regions, 0);
    assert_int_equal(rep.pending, 0);
    ccgw_spool_close(sp);
}

static void bit_flip_middle(void **state)
{
    (void)state;
    ccgw_spool_t *sp = open_sp(NULL, NULL);
    for (int i = 1; i <= 10; i++)
        add(sp, K_EVENT, i);
    ccgw_spool_close(sp);
    char f[600];
    seg_file(f, sizeof f);
    int fd = open(f, O_RDWR);
    assert_true(fd >= 0);
    struct stat stt;
    fstat(fd, &stt);
    off_t rec = stt.st_size / 10; /* records are the same size */
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, rec * 4 + rec - 3), 1); /* in record 5's payload */
    c ^= 0x10;
    assert_int_equal(pwrite(fd, &c, 1, rec * 4 + rec - 3), 1);
    close(fd);
    ccgw_spool_open_report_t rep;
    uint64_t t0 = (uint64_t)time(NULL);
    sp = open_sp(NULL, &rep);
    assert_true((uint64_t)time(NULL) - t0 < 5);
    assert_int_equal(rep.corrupt_regions, 1);
    assert_int_equal(rep.corrupt_bytes, (uint64_t)rec);
    assert_int_equal(rep.pending, 9);
    int seqs[32];
    assert_int_equal(read_all(sp, seqs, NULL, 32), 9);
    int want[] = {1, 2, 3, 4, 6, 7, 8, 9, 10};
    for (int i = 0; i < 9; i++)
        assert_int_equal(seqs[i], want[i]);
    assert_int_equal(count_files("/corrupt", ".bad"), 1);
    ccgw_spool_close(sp);
}

/* A child appends, reads some through the mapping, and dies by SIGKILL
 * (nothing closed, the segment still mapped and preallocated). */
static void mapped_kill9(void **state)
{
    (void)state;
    ccgw_spool_options_t o = {.fsync_ms = 60000, .segment_bytes = 64 * 1024, .map = true};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ccgw_spool_t *sp = open_sp(&o, NULL);
        for (int i = 1; i <= 300; i++)
            add(sp, K_EVENT, i);
        ccgw_spool_stats_t st;
        ccgw_spool_get_stats(sp, &st);
        int seqs[8];
        int got = read_all(sp, seqs, NULL, 8);
        ccgw_spool_get_stats(sp, &st);
        /* 300 records of ~70 bytes: one roll at 64 KiB at most; both mapped */
        if (st.mapped_segments < 1 || got != 8 || st.read_mapped != 8)
            _exit(3);
        ccgw_spool_ack(sp, 1);
        raise(SIGKILL);
        _exit(4);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* the killed segment is still preallocated: its end is zeros */
    char f[600];
    seg_file(f, sizeof f);
    struct stat before;
    assert_int_equal(stat(f, &before), 0);
    assert_int_equal(before.st_size, 64 * 1024);
    /* a record cut short before its magic went in, right after the last one */
    ccgw_spool_open_report_t rep;
    ccgw_spool_t *sp = open_sp(&o, &rep);
    assert_int_equal(rep.corrupt_regions, 0);
    assert_int_equal(rep.corrupt_segments, 0);
    assert_int_equal(rep.pending, 300); /* the ack was never checkpointed */
    assert_int_equal(count_files("/corrupt", ".bad"), 0);
    int seqs[400];
    assert_int_equal(read_all(sp, seqs, NULL, 400), 300);
    for (int i = 0; i < 300; i++)
        assert_int_equal(seqs[i], i + 1);
    ccgw_spool_close(sp);
    /* the unused end was cut off */
    struct stat after;
    assert_int_equal(stat(f, &after), 0);
    assert_true(after.st_size < before.st_size);
    /* now a torn record: header without its magic, half a body, then zeros */
    int fd = open(f, O_RDWR);
    assert_true(fd >= 0);
    unsigned char torn[4096];
    memset(torn, 0, sizeof torn);
    memset(torn + 4, 0x5a, 60);
    assert_int_equal(pwrite(fd, torn, sizeof torn, after.st_size), (ssize_t)sizeof torn);
    close(fd);
    sp = open_sp(&o, &rep);
    assert_int_equal(rep.corrupt_regions, 0);
    assert_int_equal(rep.pending, 300);
    assert_int_equal(read_all(sp, seqs, NULL, 400), 300);
    ccgw_spool_close(sp);
    struct stat again;
    assert_int_equal(stat(f, &again), 0);
    assert_int_equal(again.st_size, after.st_size);
}

/* Appends past several segment rolls while the reader follows: every record
 * once, in order, from the mapping (or without one from the copy of the
 * latest appends) while the writer is in the same segment and from the file
 * once it rolled. */
static void reader_follows(bool no_map)
{
    ccgw_spool_options_t o = {.fsync_ms = 50, .segment_bytes = 4096, .map = !no_map};
    ccgw_spool_t *sp = open_sp(&o, NULL);
    int next = 1, n_read = 0, seqs[64];
    for (int round = 0; round < 200; round++) {
        for (int k = 0; k < 7; k++)
            add(sp, K_EVENT, next++);
        int got = read_all(sp, seqs, NULL, round % 3 == 0 ? 2 : 64);
        for (int i = 0; i < got; i++)
            assert_int_equal(seqs[i], ++n_read);
    }
    int got;
    while ((got = read_all(sp, seqs, NULL, 64)) > 0)
        for (int i = 0; i < got; i++)
            assert_int_equal(seqs[i], ++n_read);
    assert_int_equal(n_read, next - 1);
    ccgw_spool_stats_t st;
    ccgw_spool_get_stats(sp, &st);
    if (no_map) {
        assert_int_equal(st.mapped_segments, 0);
        assert_int_equal(st.read_mapped, 0);
        assert_true(st.read_memory > 0);
    } else {
        assert_true(st.mapped_segments > 10);
        assert_true(st.read_mapped > 0);
        assert_int_equal(st.read_memory, 0);
    }
    assert_true(st.read_file > 0);
    assert_int_equal(st.read_mapped + st.read_memory + st.read_file, (uint64_t)n_read);
    /* a rewind reads them all again, from the files */
    ccgw_spool_rewind(sp);
    n_read = 0;
    while ((got = read_all(sp, seqs, NULL, 64)) > 0)
        for (int i = 0; i < got; i++)
            assert_int_equal(seqs[i], ++n_read);
    assert_int_equal(n_read, next - 1);
    ccgw_spool_close(sp);
}

static void mapped_reader_follows(void **state)
{
    (void)state;
    reader_follows(false);
}

/* the same with writev(2) (file systems that cannot preallocate or map) */
static void writev_reader_follows(void **state)
{
    (void)state;
    reader_follows(true);
}

static int full_calls[2];
static void on_full(void *ctx, bool full)
{
    (void)ctx;
    full_calls[full ? 1 : 0]++;
}

static void limits(void **state)
{
    (void)state;
    full_calls[0] = full_calls[1] = 0;
    ccgw_spool_options_t o = {.fsync_ms = 50, .max_bytes = 16384, .segment_bytes = 2048,
                              .full_cb = on_full};
    ccgw_spool_t *sp = open_sp(&o, NULL);
    char pad[200];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    /* telemetry past the limit: the oldest telemetry segments are dropped */
    for (int i = 0; i < 200; i++)
        assert_int_equal(ccgw_spool_append(sp, K_TELEMETRY, 0, 0, "t/telemetry", pad, strlen(pad), NULL),
                         CCGW_OK);
    ccgw_spool_stats_t st;
    ccgw_spool_get_stats(sp, &st);
    assert_true(st.dropped_telemetry > 100);
    assert_true(st.bytes <= 16384);
    assert_int_equal(full_calls[1], 0); /* telemetry alone raises nothing */
    uint64_t dropped1 = st.dropped_telemetry;
    /* events take the place of the oldest telemetry segments, then are refused */
    int ev_ok = 0, ev_full = 0;
    for (int i = 0; i < 200; i++) {
        int rc = ccgw_spool_append(sp, K_EVENT, 1, 0, "t/event", pad, strlen(pad), NULL);
        if (rc == CCGW_OK)
            ev_ok++;
        else if (rc == CCGW_EFULL)
            ev_full++;
    }
    ccgw_spool_get_stats(sp, &st);
    assert_true(ev_ok > 40);
    assert_true(ev_full > 0);
    assert_true(st.dropped_telemetry > dropped1); /* whole telemetry segments went */
    assert_int_equal(st.refused_full, (uint64_t)ev_full);
    assert_true(st.full);
    assert_int_equal(full_calls[1], 1);
    /* new telemetry is refused now (events hold the oldest segment) */
    uint64_t dropped2 = st.dropped_telemetry;
    assert_int_equal(ccgw_spool_append(sp, K_TELEMETRY, 0, 0, "t/telemetry", pad, strlen(pad), NULL), CCGW_EFULL);
    ccgw_spool_get_stats(sp, &st);
    assert_int_equal(st.dropped_telemetry, dropped2 + 1);
    /* alarms still fit, in the reserve */
    assert_int_equal(ccgw_spool_append(sp, K_ALARM, 1, 1, "t/alarm", pad, strlen(pad), NULL), CCGW_OK);
    /* deliver everything: room again */
    for (uint64_t id = 1; id < st.next_id + 1; id++)
        ccgw_spool_ack(sp, id);
    ccgw_spool_maintain(sp);
    ccgw_spool_get_stats(sp, &st);
    assert_false(st.full);
    /* the flusher may be the one that cleared it, reporting just after */
    for (int i = 0; i < 100 && __atomic_load_n(&full_calls[0], __ATOMIC_SEQ_CST) == 0; i++) {
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(full_calls[0], 1);
    assert_int_equal(ccgw_spool_append(sp, K_EVENT, 1, 0, "t/event", pad, strlen(pad), NULL), CCGW_OK);
    ccgw_spool_close(sp);
}

static void age_expiry(void **state)
{
    (void)state;
    ccgw_spool_options_t o = {.fsync_ms = 50, .max_age_s = 1};
    ccgw_spool_t *sp = open_sp(&o, NULL);
    for (int i = 1; i <= 5; i++)
        add(sp, K_EVENT, i);
    ccgw_spool_ack(sp, 1);
    struct timespec ts = {2, 200000000L};
    nanosleep(&ts, NULL);
    ccgw_spool_maintain(sp);
    ccgw_spool_stats_t st;
    ccgw_spool_get_stats(sp, &st);
    assert_int_equal(st.expired, 4);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.segments, 0);
    int seqs[8];
    assert_int_equal(read_all(sp, seqs, NULL, 8), 0);
    /* appends go on in a new segment */
    uint64_t id = add(sp, K_EVENT, 6);
    assert_int_equal(id, 6);
    assert_int_equal(read_all(sp, seqs, NULL, 8), 1);
    ccgw_spool_close(sp);
}

static void crc_known_value(void **state)
{
    (void)state;
    /* the CRC-32C check value */
    assert_int_equal(ccgw_crc32c(0, "123456789", 9), 0xE3069283u);
}

/* ---- the bus with a spool: a sink that acknowledges like the MQTT one ---- */

typedef struct sink_rec {
    pthread_mutex_t lock;
    atomic_bool ready;
    atomic_bool snapshot;
    ccgw_bus_t *bus;
    bool ack;                /* acknowledge what it publishes */
    int n;
    int seqs[128];
    bool retain[128];
    uint64_t ids[128];
    atomic_int taps;
} sink_rec;

static bool s_ready(void *c) { return atomic_load(&((sink_rec *)c)->ready); }
static bool s_snap(void *c) { return atomic_exchange(&((sink_rec *)c)->snapshot, false); }
static bool s_idle(void *c) { (void)c; return true; }
static int s_publish(void *c, const ccgw_msg_t *m)
{
    sink_rec *r = c;
    if (m->kind != CCGW_KIND_EVENT && m->kind != CCGW_KIND_ALARM)
        return 0;
    pthread_mutex_lock(&r->lock);
    if (r->n < 128) {
        int s = -1;
        if (sscanf(m->payload, "{\"seq\":%d}", &s) != 1)
            s = m->payload_len == 0 ? 0 : -1;
        r->seqs[r->n] = s;
        r->retain[r->n] = m->retain;
        r->ids[r->n] = m->spool_id;
        r->n++;
    }
    pthread_mutex_unlock(&r->lock);
    if (r->ack)
        ccgw_bus_ack(r->bus, m->spool_id);
    return 0;
}
static void s_tap(void *c, const ccgw_msg_t *m)
{
    (void)m;
    atomic_fetch_add(&((sink_rec *)c)->taps, 1);
}

static int wait_n(sink_rec *r, int n)
{
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&r->lock);
        int got = r->n;
        pthread_mutex_unlock(&r->lock);
        if (got >= n)
            return got;
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    return r->n;
}

static void bus_through_spool(void **state)
{
    (void)state;
    sink_rec r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.lock, NULL);
    ccgw_bus_t *b = ccgw_bus_new(64, 100);
    r.bus = b;
    ccgw_sink_t sk = {.ctx = &r, .ready = s_ready, .publish = s_publish, .take_snapshot_request = s_snap,
                      .idle = s_idle};
    ccgw_bus_set_sink(b, &sk);
    ccgw_bus_set_tap(b, s_tap, &r);
    ccgw_bus_set_spool(b, open_sp(NULL, NULL), false);
    assert_int_equal(ccgw_bus_start(b), 0);
    /* broker away: events wait in the spool (more than the queue's 64) */
    char p[64];
    for (int i = 1; i <= 40; i++) {
        snprintf(p, sizeof p, "{\"seq\":%d}", i);
        assert_int_equal(ccgw_bus_push(b, ccgw_msg_new(CCGW_KIND_EVENT, 1, "t/e", p, strlen(p), NULL, 0)), CCGW_OK);
    }
    assert_int_equal(atomic_load(&r.taps), 40); /* the tap sees each, broker or not */
    ccgw_spool_stats_t st;
    ccgw_spool_get_stats(ccgw_bus_spool(b), &st);
    assert_int_equal(st.pending, 40);
    /* connected, but nothing acknowledged: published in order, still pending */
    atomic_store(&r.ready, true);
    atomic_store(&r.snapshot, true);
    ccgw_bus_wake(b);
    assert_int_equal(wait_n(&r, 40), 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(r.seqs[i], i + 1);
    ccgw_spool_get_stats(ccgw_bus_spool(b), &st);
    assert_int_equal(st.pending, 40);
    /* reconnect: everything unacknowledged goes out again; acknowledged out of order first */
    ccgw_bus_ack(b, r.ids[2]);
    ccgw_bus_ack(b, r.ids[0]);
    r.ack = true;
    atomic_store(&r.snapshot, true);
    ccgw_bus_wake(b);
    assert_int_equal(wait_n(&r, 40 + 38), 78);
    assert_int_equal(r.seqs[40], 2);
    assert_int_equal(r.seqs[41], 4);
    assert_true(ccgw_bus_flush(b, 2000));
    ccgw_spool_get_stats(ccgw_bus_spool(b), &st);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.delivered, 40);
    /* an alarm: retained while it is the cache's latest, not once a newer one exists */
    ccgw_bus_retain(b, CCGW_KIND_ALARM, 1, "t/alarm/x", "{\"seq\":1}", 9);
    assert_int_equal(wait_n(&r, 79), 79);
    assert_true(r.retain[78]);
    atomic_store(&r.ready, false);
    ccgw_bus_retain(b, CCGW_KIND_ALARM, 1, "t/alarm/x", "{\"seq\":2}", 9);
    ccgw_bus_retain(b, CCGW_KIND_ALARM, 1, "t/alarm/x", "", 0);
    atomic_store(&r.ready, true);
    ccgw_bus_wake(b);
    assert_int_equal(wait_n(&r, 81), 81);
    assert_int_equal(r.seqs[79], 2);
    assert_false(r.retain[79]);   /* older than the cache's clear */
    assert_int_equal(r.seqs[80], 0);
    assert_true(r.retain[80]);    /* the clear is the latest */
    assert_int_equal(atomic_load(&r.taps), 43);
    ccgw_bus_free(b); /* closes the spool */
    pthread_mutex_destroy(&r.lock);
}

static atomic_int bp_full_calls;
static void bp_full(void *ctx, bool full)
{
    (void)ctx;
    if (full)
        atomic_fetch_add(&bp_full_calls, 1);
}

static void bus_backpressure(void **state)
{
    (void)state;
    ccgw_bus_t *b = ccgw_bus_new(64, 300);
    ccgw_bus_set_full_cb(b, bp_full, NULL);
    ccgw_spool_options_t o = {.fsync_ms = 50, .max_bytes = 65536, .full_cb = ccgw_bus_spool_full, .full_ctx = b};
    ccgw_bus_set_spool(b, open_sp(&o, NULL), false);
    /* not started: nothing reads the spool */
    char pad[600];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    int ok = 0, full = 0;
    struct timespec t0, t1;
    for (int i = 0; i < 200 && !full; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = ccgw_bus_push(b, ccgw_msg_new(CCGW_KIND_EVENT, 1, "t/e", pad, strlen(pad), NULL, 0));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (rc == CCGW_OK)
            ok++;
        else if (rc == CCGW_EFULL)
            full++;
    }
    assert_true(ok > 50);
    assert_int_equal(full, 1);
    /* the refused emit waited for backpressure_ms */
    long waited = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(waited >= 250);
    assert_int_equal(atomic_load(&bp_full_calls), 1);
    /* after ccgw_bus_interrupt() a full spool answers at once */
    ccgw_bus_interrupt(b);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(ccgw_bus_push(b, ccgw_msg_new(CCGW_KIND_EVENT, 1, "t/e", pad, strlen(pad), NULL, 0)),
                     CCGW_EFULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    waited = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(waited < 250);
    ccgw_bus_stats_t bs;
    ccgw_bus_get_stats(b, &bs);
    assert_int_equal(bs.dropped_full[CCGW_KIND_EVENT], 2);
    ccgw_bus_free(b);
}

/* Pacing: a sink that is connected but never ready (in-flight window full)
 * holds emitters back once CCGW_BUS_PACE records wait unread; they are
 * accepted anyway after backpressure_ms. Disconnected: no pacing at all
 * (the spool absorbs an outage). */
static atomic_bool p_connected;
static bool p_ready(void *c)
{
    (void)c;
    return false;
}
static bool p_conn(void *c)
{
    (void)c;
    return atomic_load(&p_connected);
}
static bool p_snap(void *c)
{
    (void)c;
    return false;
}
static int p_publish(void *c, const ccgw_msg_t *m)
{
    (void)c;
    (void)m;
    return 0;
}
static bool p_idle(void *c)
{
    (void)c;
    return true;
}

static int paced_run(bool connected, long *slowest_ms)
{
    atomic_store(&p_connected, connected);
    ccgw_bus_t *b = ccgw_bus_new(64, 100);
    ccgw_spool_options_t o = {.fsync_ms = 1000};
    ccgw_bus_set_spool(b, open_sp(&o, NULL), false);
    ccgw_sink_t sk = {.ctx = NULL, .ready = p_ready, .publish = p_publish, .take_snapshot_request = p_snap,
                      .idle = p_idle, .connected = p_conn};
    ccgw_bus_set_sink(b, &sk);
    assert_int_equal(ccgw_bus_start(b), CCGW_OK);
    *slowest_ms = 0;
    for (int i = 0; i < CCGW_BUS_PACE + 3; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(ccgw_bus_push(b, ccgw_msg_new(CCGW_KIND_EVENT, 1, "t/e", "{}", 2, NULL, 0)), CCGW_OK);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms > *slowest_ms)
            *slowest_ms = ms;
    }
    ccgw_bus_stats_t bs;
    ccgw_bus_get_stats(b, &bs);
    ccgw_spool_stats_t ss;
    ccgw_spool_get_stats(ccgw_bus_spool(b), &ss);
    assert_int_equal(ss.appended, CCGW_BUS_PACE + 3);
    assert_int_equal(bs.dropped_full[CCGW_KIND_EVENT], 0);
    ccgw_bus_free(b);
    return (int)bs.paced;
}

static void bus_pacing(void **state)
{
    (void)state;
    long slowest = 0;
    /* connected, nothing read: the last 2 or 3 emits wait 100 ms each, then are accepted */
    int paced = paced_run(true, &slowest);
    assert_true(paced >= 2 && paced <= 3);
    assert_true(slowest >= 90);
    /* the broker away: the spool takes everything at once */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/spool'", dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(paced_run(false, &slowest), 0);
    assert_true(slowest < 90);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc_known_value),
        cmocka_unit_test_setup_teardown(append_ack_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(out_of_order_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(segment_deletion, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(mapped_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(bus_pacing, setup, teardown),
        cmocka_unit_test_setup_teardown(mapped_reader_follows, setup, teardown),
        cmocka_unit_test_setup_teardown(writev_reader_follows, setup, teardown),
        cmocka_unit_test_setup_teardown(bit_flip_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(limits, setup, teardown),
        cmocka_unit_test_setup_teardown(age_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(bus_through_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(bus_backpressure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
