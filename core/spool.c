/* spool - see spool.h.
 *
 * On disk: <dir>/NNNNNNNNNNNNNNNN.seg (16 hex digits: the first record id of
 * the segment), <dir>/checkpoint (the low watermark), <dir>/corrupt/ (what
 * recovery set aside). A record, in host byte order (little-endian on every
 * supported target):
 *   u32 magic 'CSPL', u32 len (whole record), u32 crc32c (of bytes 12..len),
 *   u16 topic_len, u8 kind, u8 qos, u64 id, u64 ts_ms, u64 version,
 *   u32 payload_len, u32 zero, topic bytes, payload bytes.
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "ccgw/types.h"
#include "log.h"

#define TAG "spool"
#define REC_MAGIC 0x4C505343u /* "CSPL" */
#define HDR 48u
#define MAX_REC (16u * 1024u * 1024u)
#define MAX_ID (UINT64_C(1) << 62)
#define CKPT_MAGIC 0x54504B43u /* "CKPT" */
#define KIND_TELEMETRY 1        /* = CCGW_KIND_TELEMETRY (bus.h) */
#define KIND_MAX 15

/* ---- CRC32C (Castagnoli): SSE4.2 when the CPU has it, else slicing by 8 ---- */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_hw;

static void crc_init(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    crc_hw = __builtin_cpu_supports("sse4.2");
#endif
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define CRC_HW 1

/* The same CRC with the SSE4.2 instruction (it computes exactly CRC32C,
 * reflected, no final xor): about 8x fewer instructions than the tables. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

uint32_t ccgw_crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&crc_once, crc_init);
#ifdef CRC_HW
    if (crc_hw)
        return crc32c_hw(crc, buf, len);
#endif
    const unsigned char *p = buf;
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= crc;
        crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
              crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
              crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- record header ---- */

typedef struct hdr {
    uint32_t magic, len, crc;
    uint16_t topic_len;
    uint8_t kind, qos;
    uint64_t id, ts_ms, version;
    uint32_t payload_len, zero;
} hdr_t;

static void hdr_put(unsigned char *b, const hdr_t *h)
{
    memcpy(b + 0, &h->magic, 4);
    memcpy(b + 4, &h->len, 4);
    memcpy(b + 8, &h->crc, 4);
    memcpy(b + 12, &h->topic_len, 2);
    b[14] = h->kind;
    b[15] = h->qos;
    memcpy(b + 16, &h->id, 8);
    memcpy(b + 24, &h->ts_ms, 8);
    memcpy(b + 32, &h->version, 8);
    memcpy(b + 40, &h->payload_len, 4);
    memcpy(b + 44, &h->zero, 4);
}

static void hdr_get(const unsigned char *b, hdr_t *h)
{
    memcpy(&h->magic, b + 0, 4);
    memcpy(&h->len, b + 4, 4);
    memcpy(&h->crc, b + 8, 4);
    memcpy(&h->topic_len, b + 12, 2);
    h->kind = b[14];
    h->qos = b[15];
    memcpy(&h->id, b + 16, 8);
    memcpy(&h->ts_ms, b + 24, 8);
    memcpy(&h->version, b + 32, 8);
    memcpy(&h->payload_len, b + 40, 4);
    memcpy(&h->zero, b + 44, 4);
}

/* The header alone is plausible (the CRC is checked on the whole record). */
static bool hdr_sane(const hdr_t *h)
{
    return h->magic == REC_MAGIC && h->len >= HDR && h->len <= MAX_REC && h->topic_len > 0 &&
           (uint64_t)HDR + h->topic_len + h->payload_len == h->len && h->kind <= KIND_MAX &&
           h->qos <= 2 && h->zero == 0 && h->id > 0 && h->id < MAX_ID;
}

static bool rec_valid(const unsigned char *rec, const hdr_t *h)
{
    return ccgw_crc32c(0, rec + 12, h->len - 12) == h->crc;
}

/* ---- state ---- */

typedef struct seg {
    uint64_t first, last;   /* ids (last = 0 while empty) */
    uint64_t bytes;
    uint64_t newest_ms;
    uint64_t n, n_critical;
} seg_t;

typedef struct gap {
    uint64_t lo, hi;        /* ids that do not exist (recovery) */
} gap_t;

struct ccgw_spool {
    pthread_mutex_t lock;
    char *dir;
    ccgw_spool_options_t o;
    uint64_t seg_bytes, alarm_reserve;
    seg_t *segs;
    size_t n_segs, cap_segs;
    int lock_fd;            /* <dir>/lock, flock'ed: one gateway per spool */
    int wfd;                /* the active segment (segs[n_segs-1]) or -1 */
    unsigned char *wmap;    /* the active segment mapped (MAP_SHARED, preallocated), or NULL: writev */
    size_t wmap_len;
    int retired_fd;         /* a rolled segment the flusher must fsync and close */
    bool dirty;             /* written since the last fsync */
    uint64_t bytes, next_id, first_id_this_boot;
    /* acknowledgements */
    uint64_t w;             /* every id <= w is delivered */
    uint8_t *ack;           /* ring: id -> acked, for ids in (w, w + ack_cap] */
    uint64_t ack_cap;
    gap_t *gaps;
    size_t n_gaps;
    uint64_t persisted_w;
    uint64_t last_ckpt_ms;
    /* reader */
    uint64_t rd_id;         /* next id wanted */
    uint64_t rd_seg;        /* first id of the open segment, 0 = none */
    uint64_t rd_off;
    int rd_fd;
    unsigned char *rbuf;    /* the record handed out (topic NUL payload NUL) */
    size_t rbuf_cap;
    unsigned char *win;     /* read-ahead of segment win_seg: bytes [win_off, win_end) */
    /* the latest appends to the active segment, copied (lock held): bytes
     * [tail_off, tail_end) of segment tail_seg; a reader caught up with the
     * writer reads them here instead of a pread() per record */
    unsigned char *tail;    /* TAIL_CAP bytes, allocated at the first append */
    uint64_t tail_seg, tail_off, tail_end;
    size_t win_cap;
    uint64_t win_seg, win_off, win_end;
    /* flusher */
    pthread_t flusher;
    pthread_cond_t cond;
    bool stop, flusher_running;
    bool full;
    ccgw_spool_stats_t st;
};

static uint64_t now_ms_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t now_ms_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void seg_path(const ccgw_spool_t *sp, uint64_t first, char *out, size_t len)
{
    snprintf(out, len, "%s/%016" PRIx64 ".seg", sp->dir, first);
}

/* ---- acknowledgements (lock held) ---- */

static bool ack_bit(const ccgw_spool_t *sp, uint64_t id) { return sp->ack[id & (sp->ack_cap - 1)]; }

static bool acked_locked(const ccgw_spool_t *sp, uint64_t id)
{
    if (id <= sp->w)
        return true;
    if (id - sp->w > sp->ack_cap)
        return false;
    return ack_bit(sp, id);
}

/* Move w over acknowledged ids and over ids that do not exist. */
static void w_advance(ccgw_spool_t *sp)
{
    for (;;) {
        while (sp->n_gaps && sp->gaps[0].hi <= sp->w) {
            memmove(sp->gaps, sp->gaps + 1, (sp->n_gaps - 1) * sizeof *sp->gaps);
            sp->n_gaps--;
        }
        uint64_t n = sp->w + 1;
        if (sp->n_gaps && sp->gaps[0].lo <= n) {
            /* bits inside the gap were never set; clear nothing, just move */
            uint64_t hi = sp->gaps[0].hi;
            for (uint64_t i = n; i <= hi && i - sp->w <= sp->ack_cap; i++)
                sp->ack[i & (sp->ack_cap - 1)] = 0;
            sp->w = hi;
            continue;
        }
        if (n < sp->next_id && ack_bit(sp, n)) {
            sp->ack[n & (sp->ack_cap - 1)] = 0;
            sp->w = n;
            continue;
        }
        break;
    }
}

static int ack_grow(ccgw_spool_t *sp, uint64_t need)
{
    uint64_t nc = sp->ack_cap;
    while (nc < need)
        nc *= 2;
    if (nc > (UINT64_C(1) << 28))
        return -1;
    uint8_t *n = calloc((size_t)nc, 1);
    if (!n)
        return -1;
    for (uint64_t i = sp->w + 1; i <= sp->w + sp->ack_cap; i++)
        n[i & (nc - 1)] = sp->ack[i & (sp->ack_cap - 1)];
    free(sp->ack);
    sp->ack = n;
    sp->ack_cap = nc;
    return 0;
}

static void ack_locked(ccgw_spool_t *sp, uint64_t id)
{
    if (id <= sp->w || id >= sp->next_id)
        return;
    if (id - sp->w > sp->ack_cap && ack_grow(sp, id - sp->w) != 0) {
        CLOG_WARN(TAG, "acknowledgement of %" PRIu64 " far ahead of %" PRIu64 " ignored (no memory)", id, sp->w);
        return;
    }
    uint8_t *b = &sp->ack[id & (sp->ack_cap - 1)];
    if (*b)
        return;
    *b = 1;
    sp->st.delivered++;
    if (sp->st.pending)
        sp->st.pending--;
    w_advance(sp);
}

/* Everything up to `to` is gone (dropped or expired): move w there.
 * Returns how many of those were not yet delivered. */
static uint64_t w_jump(ccgw_spool_t *sp, uint64_t to)
{
    if (to <= sp->w)
        return 0;
    uint64_t span = to - sp->w, set = 0;
    for (uint64_t i = sp->w + 1; i <= to && i - sp->w <= sp->ack_cap; i++) {
        uint8_t *b = &sp->ack[i & (sp->ack_cap - 1)];
        if (*b) {
            set++;
            *b = 0;
        }
    }
    uint64_t gone = 0; /* ids of gaps are not records */
    for (size_t g = 0; g < sp->n_gaps; g++) {
        uint64_t lo = sp->gaps[g].lo > sp->w + 1 ? sp->gaps[g].lo : sp->w + 1;
        uint64_t hi = sp->gaps[g].hi < to ? sp->gaps[g].hi : to;
        if (lo <= hi)
            gone += hi - lo + 1;
    }
    sp->w = to;
    uint64_t und = span > set + gone ? span - set - gone : 0;
    sp->st.pending = sp->st.pending > und ? sp->st.pending - und : 0;
    w_advance(sp);
    return und;
}

/* ---- segments (lock held) ---- */

static int segs_push(ccgw_spool_t *sp, const seg_t *s)
{
    if (sp->n_segs == sp->cap_segs) {
        size_t nc = sp->cap_segs ? sp->cap_segs * 2 : 16;
        seg_t *n = realloc(sp->segs, nc * sizeof *n);
        if (!n)
            return -1;
        sp->segs = n;
        sp->cap_segs = nc;
    }
    sp->segs[sp->n_segs++] = *s;
    return 0;
}

static void seg_unlink(ccgw_spool_t *sp, size_t i)
{
    char p[4096];
    seg_path(sp, sp->segs[i].first, p, sizeof p);
    if (unlink(p) != 0 && errno != ENOENT)
        CLOG_WARN(TAG, "cannot delete %s: %s", p, strerror(errno));
    sp->bytes -= sp->segs[i].bytes;
    memmove(sp->segs + i, sp->segs + i + 1, (sp->n_segs - i - 1) * sizeof *sp->segs);
    sp->n_segs--;
}

static bool is_active(const ccgw_spool_t *sp, size_t i) { return sp->wfd >= 0 && i + 1 == sp->n_segs; }

#define TAIL_CAP (64u << 10)

/* Keep the record just written at `off` of segment `seg` in the tail copy
 * (lock held); a record that does not follow the copy starts it afresh. */
static void tail_add(ccgw_spool_t *sp, uint64_t seg, uint64_t off, const struct iovec *iov, int n, size_t len)
{
    if (!sp->tail && !(sp->tail = malloc(TAIL_CAP)))
        return;
    if (sp->tail_seg != seg || sp->tail_end != off || sp->tail_end - sp->tail_off + len > TAIL_CAP) {
        sp->tail_seg = seg;
        sp->tail_off = sp->tail_end = off;
        if (len > TAIL_CAP) {
            sp->tail_off = sp->tail_end = off + len;
            return;
        }
    }
    unsigned char *d = sp->tail + (sp->tail_end - sp->tail_off);
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len)
            memcpy(d, iov[i].iov_base, iov[i].iov_len);
        d += iov[i].iov_len;
    }
    sp->tail_end += len;
}

/* Unmap the active segment and cut the file to what it holds (lock held). */
static void unmap_active(ccgw_spool_t *sp)
{
    if (!sp->wmap)
        return;
    munmap(sp->wmap, sp->wmap_len);
    sp->wmap = NULL;
    sp->wmap_len = 0;
    if (sp->n_segs && ftruncate(sp->wfd, (off_t)sp->segs[sp->n_segs - 1].bytes) != 0)
        CLOG_WARN(TAG, "cannot cut segment %016" PRIx64 " to its size: %s", sp->segs[sp->n_segs - 1].first,
                  strerror(errno));
}

static void close_active(ccgw_spool_t *sp)
{
    if (sp->wfd < 0)
        return;
    unmap_active(sp);
    if (sp->retired_fd >= 0) { /* the flusher is behind: do it here */
        fdatasync(sp->retired_fd);
        close(sp->retired_fd);
        sp->st.fsyncs++;
    }
    sp->retired_fd = sp->dirty ? sp->wfd : -1;
    if (!sp->dirty)
        close(sp->wfd);
    sp->wfd = -1;
}

/* Delete the oldest segments whose records are all delivered and, while
 * over the limit, those holding only telemetry (counted as dropped). */
static void make_room(ccgw_spool_t *sp, uint64_t need)
{
    /* the active segment too, when everything in it was delivered */
    if (sp->n_segs == 1 && is_active(sp, 0) && sp->segs[0].n && sp->segs[0].last <= sp->w)
        close_active(sp);
    while (sp->n_segs && !is_active(sp, 0)) {
        seg_t *s = &sp->segs[0];
        if (s->last && s->last <= sp->w) {
            seg_unlink(sp, 0);
            continue;
        }
        if (sp->bytes + need > sp->o.max_bytes && s->n_critical == 0) {
            uint64_t lost = w_jump(sp, s->last);
            sp->st.dropped_telemetry += lost;
            CLOG_WARN(TAG, "spool full: dropped %" PRIu64 " undelivered telemetry records (segment %016" PRIx64 ")",
                      lost, s->first);
            seg_unlink(sp, 0);
            continue;
        }
        break;
    }
}

/* A new active segment. With o.map, when its first record fits, the file
 * is preallocated to seg_bytes (so that no store into it can meet a full
 * disk) and mapped MAP_SHARED: an append is then a copy into the page
 * cache, no system call, and as safe against kill -9 as write(2) (the pages
 * belong to the kernel). Otherwise (the default, or when the file system
 * refuses) records go out with writev(2). Off by default: on ext4 it cost
 * p99 latency at 10k events/s (docs/architecture.md, Spool) for no
 * measurable throughput. */
static int open_segment(ccgw_spool_t *sp, uint64_t first, uint32_t reclen)
{
    char p[4096];
    seg_path(sp, first, p, sizeof p);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        CLOG_ERROR(TAG, "cannot create %s: %s", p, strerror(errno));
        return CCGW_EIO;
    }
    seg_t s = {.first = first};
    if (segs_push(sp, &s) != 0) {
        close(fd);
        unlink(p);
        return CCGW_ENOMEM;
    }
    sp->wfd = fd;
    if (sp->o.map && reclen <= sp->seg_bytes && posix_fallocate(fd, 0, (off_t)sp->seg_bytes) == 0) {
        void *m = mmap(NULL, (size_t)sp->seg_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m != MAP_FAILED) {
            sp->wmap = m;
            sp->wmap_len = (size_t)sp->seg_bytes;
            sp->st.mapped_segments++;
        } else if (ftruncate(fd, 0) != 0) {
            CLOG_WARN(TAG, "%s: cannot undo the preallocation: %s", p, strerror(errno));
        }
    }
    return CCGW_OK;
}

/* ---- append ---- */

int ccgw_spool_append(ccgw_spool_t *sp, int kind, int qos, uint64_t version, const char *topic,
                      const char *payload, size_t len, uint64_t *id)
{
    size_t tl = strlen(topic);
    if (tl == 0 || tl > 65535 || len > MAX_REC - HDR - tl || kind < 0 || kind > KIND_MAX || qos < 0 || qos > 2)
        return CCGW_EINVAL;
    uint32_t reclen = (uint32_t)(HDR + tl + len);
    bool telemetry = kind == KIND_TELEMETRY, alarm = kind == 3; /* CCGW_KIND_ALARM */
    bool report_full = false;
    pthread_mutex_lock(&sp->lock);
    if (sp->bytes + reclen > sp->o.max_bytes)
        make_room(sp, reclen);
    uint64_t limit = sp->o.max_bytes + (alarm ? sp->alarm_reserve : 0);
    if (sp->bytes + reclen > limit) {
        if (telemetry) {
            sp->st.dropped_telemetry++;
        } else {
            sp->st.refused_full++;
            if (!sp->full) {
                sp->full = true;
                report_full = true;
            }
        }
        pthread_mutex_unlock(&sp->lock);
        if (report_full) {
            CLOG_WARN(TAG, "spool full (%" PRIu64 " bytes, limit %" PRIu64 "): events are held back", sp->bytes,
                      sp->o.max_bytes);
            if (sp->o.full_cb)
                sp->o.full_cb(sp->o.full_ctx, true);
        }
        return CCGW_EFULL;
    }
    if (sp->wfd >= 0 && sp->segs[sp->n_segs - 1].bytes + reclen > sp->seg_bytes &&
        sp->segs[sp->n_segs - 1].n > 0)
        close_active(sp);
    if (sp->wfd < 0) {
        int rc = open_segment(sp, sp->next_id, reclen);
        if (rc != CCGW_OK) {
            pthread_mutex_unlock(&sp->lock);
            return rc;
        }
    }
    seg_t *s = &sp->segs[sp->n_segs - 1];
    hdr_t h = {.magic = REC_MAGIC, .len = reclen, .topic_len = (uint16_t)tl, .kind = (uint8_t)kind,
               .qos = (uint8_t)qos, .id = sp->next_id, .ts_ms = now_ms_wall(), .version = version,
               .payload_len = (uint32_t)len};
    unsigned char hb[HDR];
    hdr_put(hb, &h);
    uint32_t crc = ccgw_crc32c(0, hb + 12, HDR - 12);
    crc = ccgw_crc32c(crc, topic, tl);
    crc = ccgw_crc32c(crc, payload, len);
    h.crc = crc;
    memcpy(hb + 8, &crc, 4);
    struct iovec iov[3] = {{hb, HDR}, {(void *)topic, tl}, {(void *)payload, len}};
    size_t done = 0;
    int rc = CCGW_OK;
    if (sp->wmap && s->bytes + reclen <= sp->wmap_len) {
        /* the magic goes in last: a record cut short by kill -9 (never
         * accepted) reads as unused space, not as damage */
        unsigned char *d = sp->wmap + s->bytes;
        memset(d, 0, 4);
        memcpy(d + 4, hb + 4, HDR - 4);
        memcpy(d + HDR, topic, tl);
        if (len)
            memcpy(d + HDR + tl, payload, len);
        atomic_signal_fence(memory_order_seq_cst);
        memcpy(d, hb, 4);
        done = reclen;
    }
    while (done < reclen) {
        /* the remainder after a short write */
        struct iovec v[3];
        int nv = 0;
        size_t skip = done;
        for (int i = 0; i < 3; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            v[nv].iov_base = (char *)iov[i].iov_base + skip;
            v[nv].iov_len = iov[i].iov_len - skip;
            skip = 0;
            nv++;
        }
        ssize_t n = writev(sp->wfd, v, nv);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            CLOG_ERROR(TAG, "write to segment %016" PRIx64 ": %s", s->first, n < 0 ? strerror(err) : "no progress");
            if (ftruncate(sp->wfd, (off_t)s->bytes) != 0)
                CLOG_ERROR(TAG, "cannot cut the partial record: %s", strerror(errno));
            rc = err == ENOSPC ? CCGW_EFULL : CCGW_EIO;
            break;
        }
        done += (size_t)n;
    }
    if (rc == CCGW_EFULL && !sp->full) { /* the disk is full */
        sp->full = true;
        report_full = true;
        sp->st.refused_full++;
    }
    if (rc == CCGW_OK) {
        if (!sp->wmap)
            tail_add(sp, s->first ? s->first : h.id, s->bytes, iov, 3, reclen);
        if (s->n == 0)
            s->first = h.id;
        s->last = h.id;
        s->bytes += reclen;
        s->n++;
        if (!telemetry)
            s->n_critical++;
        if (h.ts_ms > s->newest_ms)
            s->newest_ms = h.ts_ms;
        sp->bytes += reclen;
        sp->next_id++;
        sp->st.appended++;
        sp->st.pending++;
        sp->dirty = true;
        if (id)
            *id = h.id;
        if (sp->o.fsync_ms <= 0) {
            fdatasync(sp->wfd);
            sp->st.fsyncs++;
            sp->dirty = false;
        }
    }
    pthread_mutex_unlock(&sp->lock);
    if (report_full && sp->o.full_cb)
        sp->o.full_cb(sp->o.full_ctx, true);
    return rc;
}

/* ---- reader ---- */

static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -1 : (ssize_t)got;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static void rd_close(ccgw_spool_t *sp)
{
    if (sp->rd_fd >= 0)
        close(sp->rd_fd);
    sp->rd_fd = -1;
    sp->rd_seg = 0;
    sp->rd_off = 0;
    sp->win_seg = 0;
}

/* Make [off, off + need) readable in the window (reader thread, no lock).
 * Only bytes below `limit` (the segment's committed size) are trusted. */
static bool win_fill(ccgw_spool_t *sp, int fd, uint64_t seg, uint64_t off, size_t need, uint64_t limit)
{
    if (sp->win_seg == seg && off >= sp->win_off && off + need <= sp->win_end)
        return true;
    size_t want = need > (256u << 10) ? need : (256u << 10);
    if (sp->win_cap < want) {
        unsigned char *n = realloc(sp->win, want);
        if (!n)
            return false;
        sp->win = n;
        sp->win_cap = want;
    }
    ssize_t got = pread_full(fd, sp->win, sp->win_cap, off);
    if (got < 0) {
        sp->win_seg = 0;
        return false;
    }
    sp->win_seg = seg;
    sp->win_off = off;
    sp->win_end = off + (uint64_t)got < limit ? off + (uint64_t)got : limit;
    return off + need <= sp->win_end;
}

static int seg_find(const ccgw_spool_t *sp, uint64_t first)
{
    for (size_t i = 0; i < sp->n_segs; i++)
        if (sp->segs[i].first == first)
            return (int)i;
    return -1;
}

/* Hand the record at rp (header h, checked) to the reader: copy topic and
 * payload into rbuf, each NUL-terminated (lock held). */
static bool rec_out(ccgw_spool_t *sp, const unsigned char *rp, const hdr_t *h, ccgw_spool_rec_t *rec)
{
    size_t want = (size_t)h->topic_len + h->payload_len + 2;
    if (sp->rbuf_cap < want) {
        unsigned char *nb = realloc(sp->rbuf, want);
        if (!nb)
            return false;
        sp->rbuf = nb;
        sp->rbuf_cap = want;
    }
    unsigned char *t = sp->rbuf;
    memcpy(t, rp + HDR, h->topic_len);
    t[h->topic_len] = '\0';
    memcpy(t + h->topic_len + 1, rp + HDR + h->topic_len, h->payload_len);
    t[h->topic_len + 1 + h->payload_len] = '\0';
    rec->id = h->id;
    rec->ts_ms = h->ts_ms;
    rec->version = h->version;
    rec->this_boot = h->id >= sp->first_id_this_boot;
    rec->kind = h->kind;
    rec->qos = h->qos;
    rec->topic = (const char *)t;
    rec->payload = (const char *)t + h->topic_len + 1;
    rec->payload_len = h->payload_len;
    return true;
}

/* What the reader does with the record at `off` of segment s (under the
 * lock): ok = it read and checked; rp/h = the record. */
enum { TAKE_NEXT, TAKE_LATER, TAKE_DONE };
static int take_record(ccgw_spool_t *sp, const seg_t *s, uint64_t off, bool ok, const unsigned char *rp,
                       const hdr_t *h, ccgw_spool_rec_t *rec)
{
    if (!ok) {
        CLOG_ERROR(TAG, "bad record at %016" PRIx64 ".seg+%" PRIu64 "; the rest of the segment is skipped",
                   s->first, off);
        sp->rd_off = s->bytes;
        if (sp->rd_id <= s->last)
            sp->rd_id = s->last + 1;
        return TAKE_NEXT;
    }
    sp->rd_off = off + h->len;
    if (h->id < sp->rd_id)
        return TAKE_NEXT;
    if (acked_locked(sp, h->id)) {
        sp->rd_id = h->id + 1;
        return TAKE_NEXT;
    }
    if (!rec_out(sp, rp, h, rec)) {
        sp->rd_off = off; /* no memory: again later */
        return TAKE_LATER;
    }
    sp->rd_id = h->id + 1;
    return TAKE_DONE;
}

int ccgw_spool_next(ccgw_spool_t *sp, ccgw_spool_rec_t *rec)
{
    pthread_mutex_lock(&sp->lock);
    for (;;) {
        if (sp->rd_id <= sp->w)
            sp->rd_id = sp->w + 1;
        int i = sp->rd_seg ? seg_find(sp, sp->rd_seg) : -1;
        if (i < 0 || (sp->segs[i].last && sp->segs[i].last < sp->rd_id && !is_active(sp, (size_t)i))) {
            rd_close(sp);
            i = -1;
            for (size_t k = 0; k < sp->n_segs; k++)
                if (sp->segs[k].last >= sp->rd_id || is_active(sp, k)) {
                    i = (int)k;
                    break;
                }
            if (i < 0 || sp->segs[i].n == 0)
                break;
            sp->rd_seg = sp->segs[i].first;
            sp->rd_off = 0;
            if (!(sp->wmap && is_active(sp, (size_t)i))) {
                char p[4096];
                seg_path(sp, sp->segs[i].first, p, sizeof p);
                sp->rd_fd = open(p, O_RDONLY | O_CLOEXEC);
                if (sp->rd_fd < 0) {
                    CLOG_ERROR(TAG, "cannot read %s: %s; its records are skipped", p, strerror(errno));
                    sp->rd_seg = 0;
                    sp->rd_id = sp->segs[i].last + 1;
                    continue;
                }
            }
        }
        seg_t s = sp->segs[i];
        bool last_seg = (size_t)i + 1 == sp->n_segs;
        if (sp->rd_off >= s.bytes) {
            if (last_seg)
                break;
            if (sp->rd_id <= s.last)
                sp->rd_id = s.last + 1;
            rd_close(sp);
            continue;
        }
        uint64_t off = sp->rd_off;
        /* the record in memory, the writer's mapping or the copy of its
         * latest appends: read it there, under the lock (no system call;
         * written by this process this boot, so the CRC is not checked again) */
        const unsigned char *mem = NULL;
        uint64_t mem_end = 0, *counter = NULL;
        if (sp->wmap && is_active(sp, (size_t)i)) {
            mem = sp->wmap + off;
            mem_end = s.bytes;
            counter = &sp->st.read_mapped;
        } else if (sp->tail_seg == s.first && off >= sp->tail_off && off + HDR <= sp->tail_end) {
            mem = sp->tail + (off - sp->tail_off);
            mem_end = sp->tail_end;
            counter = &sp->st.read_memory;
        }
        if (mem) {
            hdr_t h = {0};
            hdr_get(mem, &h);
            int t = take_record(sp, &s, off, hdr_sane(&h) && off + h.len <= mem_end, mem, &h, rec);
            if (t == TAKE_NEXT)
                continue;
            if (t == TAKE_LATER)
                break;
            (*counter)++;
            pthread_mutex_unlock(&sp->lock);
            return 1;
        }
        if (sp->rd_fd < 0) {
            /* the segment was the mapped active one when the reader came to
             * it and has been rolled since: open its file */
            char p[4096];
            seg_path(sp, s.first, p, sizeof p);
            sp->rd_fd = open(p, O_RDONLY | O_CLOEXEC);
            if (sp->rd_fd < 0) {
                CLOG_ERROR(TAG, "cannot read %s: %s; its records are skipped", p, strerror(errno));
                rd_close(sp);
                sp->rd_id = s.last + 1;
                continue;
            }
        }
        int fd = sp->rd_fd;
        pthread_mutex_unlock(&sp->lock);
        hdr_t h = {0};
        const unsigned char *rp = NULL;
        bool ok = win_fill(sp, fd, s.first, off, HDR, s.bytes);
        if (ok) {
            hdr_get(sp->win + (off - sp->win_off), &h);
            ok = hdr_sane(&h) && off + h.len <= s.bytes && win_fill(sp, fd, s.first, off, h.len, s.bytes);
        }
        if (ok) {
            rp = sp->win + (off - sp->win_off);
            ok = rec_valid(rp, &h);
        }
        pthread_mutex_lock(&sp->lock);
        if (sp->rd_seg != s.first || sp->rd_off != off)
            continue; /* rewound meanwhile */
        int t = take_record(sp, &s, off, ok, rp, &h, rec);
        if (t == TAKE_NEXT)
            continue;
        if (t == TAKE_LATER)
            break;
        sp->st.read_file++;
        pthread_mutex_unlock(&sp->lock);
        return 1;
    }
    pthread_mutex_unlock(&sp->lock);
    return 0;
}

bool ccgw_spool_has_unread(ccgw_spool_t *sp)
{
    pthread_mutex_lock(&sp->lock);
    uint64_t from = sp->rd_id > sp->w ? sp->rd_id : sp->w + 1;
    bool r = from < sp->next_id && sp->n_segs > 0;
    pthread_mutex_unlock(&sp->lock);
    return r;
}

uint64_t ccgw_spool_unread(ccgw_spool_t *sp)
{
    pthread_mutex_lock(&sp->lock);
    uint64_t from = sp->rd_id > sp->w ? sp->rd_id : sp->w + 1;
    uint64_t n = from < sp->next_id ? sp->next_id - from : 0;
    pthread_mutex_unlock(&sp->lock);
    return n;
}

void ccgw_spool_rewind(ccgw_spool_t *sp)
{
    pthread_mutex_lock(&sp->lock);
    sp->rd_id = sp->w + 1;
    rd_close(sp);
    pthread_mutex_unlock(&sp->lock);
}

void ccgw_spool_ack(ccgw_spool_t *sp, uint64_t id)
{
    pthread_mutex_lock(&sp->lock);
    ack_locked(sp, id);
    pthread_mutex_unlock(&sp->lock);
}

/* ---- checkpoint ---- */

static int ckpt_write(ccgw_spool_t *sp, uint64_t w)
{
    char p[4096], tmp[4096];
    snprintf(p, sizeof p, "%s/checkpoint", sp->dir);
    snprintf(tmp, sizeof tmp, "%s/.checkpoint.tmp", sp->dir);
    unsigned char b[16];
    uint32_t magic = CKPT_MAGIC;
    memcpy(b, &magic, 4);
    memcpy(b + 4, &w, 8);
    uint32_t crc = ccgw_crc32c(0, b, 12);
    memcpy(b + 12, &crc, 4);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        goto fail;
    if (write(fd, b, sizeof b) != (ssize_t)sizeof b || fdatasync(fd) != 0) {
        close(fd);
        goto fail;
    }
    close(fd);
    if (rename(tmp, p) != 0)
        goto fail;
    int dfd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
fail:
    CLOG_ERROR(TAG, "cannot write %s: %s", p, strerror(errno));
    return -1;
}

static uint64_t ckpt_read(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/checkpoint", dir);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    unsigned char b[16];
    ssize_t n = read(fd, b, sizeof b);
    close(fd);
    uint32_t magic, crc;
    uint64_t w;
    if (n != 16)
        goto bad;
    memcpy(&magic, b, 4);
    memcpy(&w, b + 4, 8);
    memcpy(&crc, b + 12, 4);
    if (magic != CKPT_MAGIC || crc != ccgw_crc32c(0, b, 12) || w >= MAX_ID)
        goto bad;
    return w;
bad:
    CLOG_WARN(TAG, "%s is damaged: every record found is replayed", p);
    return 0;
}

/* ---- flusher ---- */

static void maintain(ccgw_spool_t *sp, bool force_ckpt)
{
    pthread_mutex_lock(&sp->lock);
    int fd = -1, rfd = sp->retired_fd;
    sp->retired_fd = -1;
    if (sp->dirty && sp->wfd >= 0) {
        fd = dup(sp->wfd);
        sp->dirty = false;
    }
    uint64_t w = sp->w;
    bool ck = w != sp->persisted_w && (force_ckpt || sp->full || now_ms_mono() - sp->last_ckpt_ms >= 1000);
    pthread_mutex_unlock(&sp->lock);
    uint64_t syncs = 0;
    if (rfd >= 0) {
        fdatasync(rfd);
        close(rfd);
        syncs++;
    }
    if (fd >= 0) {
        fdatasync(fd);
        close(fd);
        syncs++;
    }
    bool wrote = ck && ckpt_write(sp, w) == 0;
    bool report_clear = false;
    uint64_t now = now_ms_wall();
    pthread_mutex_lock(&sp->lock);
    sp->st.fsyncs += syncs;
    if (ck)
        sp->last_ckpt_ms = now_ms_mono();
    if (wrote) {
        sp->persisted_w = w;
        sp->st.checkpoints++;
    }
    /* while full, a delivered active segment is closed so that it can go */
    if (sp->full && sp->n_segs == 1 && is_active(sp, 0) && sp->segs[0].n &&
        sp->segs[0].last <= sp->persisted_w)
        close_active(sp);
    /* delivered segments (only up to what the checkpoint says) */
    while (sp->n_segs && !is_active(sp, 0) && sp->segs[0].last && sp->segs[0].last <= sp->persisted_w)
        seg_unlink(sp, 0);
    /* expired segments */
    if (sp->o.max_age_s) {
        uint64_t cutoff = now > sp->o.max_age_s * 1000u ? now - sp->o.max_age_s * 1000u : 0;
        if (sp->n_segs == 1 && is_active(sp, 0) && sp->segs[0].n && sp->segs[0].newest_ms < cutoff)
            close_active(sp);
        while (sp->n_segs && !is_active(sp, 0) && sp->segs[0].newest_ms < cutoff) {
            uint64_t lost = sp->segs[0].last ? w_jump(sp, sp->segs[0].last) : 0;
            if (lost) {
                sp->st.expired += lost;
                CLOG_WARN(TAG, "%" PRIu64 " records older than %" PRIu64 " s expired undelivered", lost,
                          sp->o.max_age_s);
            }
            seg_unlink(sp, 0);
            if (sp->n_segs == 1 && is_active(sp, 0) && sp->segs[0].n && sp->segs[0].newest_ms < cutoff)
                close_active(sp);
        }
    }
    if (sp->full && sp->bytes <= sp->o.max_bytes / 2) {
        sp->full = false;
        report_clear = true;
    }
    pthread_mutex_unlock(&sp->lock);
    if (report_clear) {
        CLOG_INFO(TAG, "spool has room again (%" PRIu64 " bytes)", sp->bytes);
        if (sp->o.full_cb)
            sp->o.full_cb(sp->o.full_ctx, false);
    }
}

void ccgw_spool_maintain(ccgw_spool_t *sp) { maintain(sp, true); }

static void *flusher_main(void *arg)
{
    ccgw_spool_t *sp = arg;
    int period = sp->o.fsync_ms > 0 ? sp->o.fsync_ms : 200;
    pthread_mutex_lock(&sp->lock);
    while (!sp->stop) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += period / 1000;
        dl.tv_nsec += (long)(period % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&sp->cond, &sp->lock, &dl);
        if (sp->stop)
            break;
        pthread_mutex_unlock(&sp->lock);
        maintain(sp, false);
        pthread_mutex_lock(&sp->lock);
    }
    pthread_mutex_unlock(&sp->lock);
    return NULL;
}

/* ---- open / recovery ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int read_whole(const char *path, unsigned char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *b = malloc(n ? n : 1);
    if (!b) {
        close(fd);
        return -1;
    }
    ssize_t got = pread_full(fd, b, n, 0);
    close(fd);
    if (got < 0) {
        free(b);
        return -1;
    }
    *out = b;
    *len = (size_t)got;
    return 0;
}

static int gap_add(ccgw_spool_t *sp, uint64_t lo, uint64_t hi)
{
    if (lo > hi)
        return 0;
    if (sp->n_gaps && sp->gaps[sp->n_gaps - 1].hi + 1 >= lo) {
        sp->gaps[sp->n_gaps - 1].hi = hi;
        return 0;
    }
    gap_t *n = realloc(sp->gaps, (sp->n_gaps + 1) * sizeof *n);
    if (!n)
        return -1;
    sp->gaps = n;
    sp->gaps[sp->n_gaps++] = (gap_t){lo, hi};
    return 0;
}

/* Scan one segment file: keep the valid records (in increasing id order
 * after prev_id), set the rest aside. Returns 0 and fills *s (s->n == 0:
 * nothing left, the file was removed). */
static int recover_segment(ccgw_spool_t *sp, uint64_t first, uint64_t *prev_id, seg_t *s,
                           ccgw_spool_open_report_t *r)
{
    char p[4096];
    seg_path(sp, first, p, sizeof p);
    memset(s, 0, sizeof *s);
    unsigned char *b = NULL;
    size_t len = 0;
    if (read_whole(p, &b, &len) != 0) {
        CLOG_ERROR(TAG, "cannot read %s: %s; set aside", p, strerror(errno));
        char q[4200];
        snprintf(q, sizeof q, "%s/corrupt/%016" PRIx64 ".seg.unreadable", sp->dir, first);
        rename(p, q);
        r->corrupt_segments++;
        return 0;
    }
    memset(s, 0, sizeof *s);
    s->first = first;
    /* good ranges, in file order */
    size_t *keep = NULL, n_keep = 0, cap_keep = 0;
    uint64_t bad_bytes = 0, bad_regions = 0;
    bool in_bad = false, bad_unused = false;
    size_t off = 0, bad_start = 0;
    uint64_t prev = *prev_id;
    while (off < len) {
        hdr_t h = {0};
        bool ok = len - off >= HDR;
        if (ok) {
            hdr_get(b + off, &h);
            ok = hdr_sane(&h) && h.len <= len - off && h.id > prev && rec_valid(b + off, &h);
        }
        if (!ok) {
            if (!in_bad) {
                bad_regions++;
                in_bad = true;
                bad_start = off;
                /* a zero magic: the preallocated rest of a mapped segment,
                 * or a record cut short before its magic went in (kill -9) */
                bad_unused = len - off >= 4 && !b[off] && !b[off + 1] && !b[off + 2] && !b[off + 3];
            }
            size_t z = off + 1;
            while (z < len && !b[z] && b[off] == 0) /* runs of zeros in one step */
                z++;
            bad_bytes += z - off;
            off = z;
            continue;
        }
        in_bad = false;
        if (n_keep + 2 > cap_keep) {
            cap_keep = cap_keep ? cap_keep * 2 : 256;
            size_t *nk = realloc(keep, cap_keep * sizeof *nk);
            if (!nk) {
                free(keep);
                free(b);
                return -1;
            }
            keep = nk;
        }
        keep[n_keep++] = off;
        keep[n_keep++] = h.len;
        if (h.id > sp->w + 1 && h.id > prev + 1 && gap_add(sp, (prev + 1 > sp->w + 1 ? prev + 1 : sp->w + 1), h.id - 1) != 0) {
            free(keep);
            free(b);
            return -1;
        }
        prev = h.id;
        if (s->n == 0)
            s->first = h.id;
        s->last = h.id;
        s->n++;
        s->bytes += h.len;
        if (h.kind != KIND_TELEMETRY)
            s->n_critical++;
        if (h.ts_ms > s->newest_ms)
            s->newest_ms = h.ts_ms;
        if (h.id > sp->w)
            r->pending++;
        r->records++;
        off += h.len;
    }
    *prev_id = prev;
    size_t used = len;
    if (in_bad && bad_unused) {
        /* nothing valid after it: unused space, not damage */
        bad_regions--;
        bad_bytes -= len - bad_start;
        used = bad_start;
    }
    int rc = 0;
    if (!bad_regions && s->n && used < len && truncate(p, (off_t)used) != 0)
        CLOG_WARN(TAG, "cannot cut the unused end of %s: %s", p, strerror(errno));
    if (bad_regions) {
        r->corrupt_regions += bad_regions;
        r->corrupt_bytes += bad_bytes;
        r->corrupt_segments++;
        char q[4200];
        snprintf(q, sizeof q, "%s/corrupt/%016" PRIx64 ".seg.%lld.bad", sp->dir, first, (long long)time(NULL));
        CLOG_WARN(TAG, "%s: %" PRIu64 " damaged region(s), %" PRIu64 " bytes; %" PRIu64
                  " good records kept, the original moved to %s", p, bad_regions, bad_bytes, s->n, q);
        if (rename(p, q) != 0) {
            CLOG_ERROR(TAG, "cannot move %s aside: %s", p, strerror(errno));
            unlink(p);
        }
        if (s->n) {
            char np[4096];
            seg_path(sp, s->first, np, sizeof np);
            char tmp[4200];
            snprintf(tmp, sizeof tmp, "%s/.recover.tmp", sp->dir);
            int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
            bool ok = fd >= 0;
            for (size_t k = 0; ok && k < n_keep; k += 2)
                ok = write(fd, b + keep[k], keep[k + 1]) == (ssize_t)keep[k + 1];
            if (ok)
                ok = fdatasync(fd) == 0;
            if (fd >= 0)
                close(fd);
            if (!ok || rename(tmp, np) != 0) {
                CLOG_ERROR(TAG, "cannot write the recovered segment %s: %s", np, strerror(errno));
                unlink(tmp);
                rc = -1;
            }
        }
    } else if (s->n && s->first != first) {
        /* (cannot happen: the name is the first id) keep the file name right */
        char np[4096];
        seg_path(sp, s->first, np, sizeof np);
        rename(p, np);
    } else if (!s->n) {
        unlink(p);
    }
    free(keep);
    free(b);
    return rc;
}

ccgw_spool_t *ccgw_spool_open(const char *dir, const ccgw_spool_options_t *o,
                              ccgw_spool_open_report_t *report)
{
    uint64_t t0 = now_ms_mono();
    ccgw_spool_open_report_t rep = {0};
    ccgw_spool_t *sp = calloc(1, sizeof *sp);
    if (!sp)
        return NULL;
    pthread_mutex_init(&sp->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sp->cond, &ca);
    pthread_condattr_destroy(&ca);
    sp->wfd = sp->retired_fd = sp->rd_fd = sp->lock_fd = -1;
    if (o)
        sp->o = *o;
    if (!sp->o.max_bytes)
        sp->o.max_bytes = UINT64_C(256) << 20;
    if (sp->o.max_bytes < 4096)
        sp->o.max_bytes = 4096;
    sp->seg_bytes = sp->o.segment_bytes;
    if (!sp->seg_bytes) {
        sp->seg_bytes = sp->o.max_bytes / 8;
        if (sp->seg_bytes > (UINT64_C(4) << 20))
            sp->seg_bytes = UINT64_C(4) << 20;
        if (sp->seg_bytes < 4096)
            sp->seg_bytes = 4096;
    }
    sp->alarm_reserve = sp->o.max_bytes / 16 > (UINT64_C(64) << 10) ? sp->o.max_bytes / 16 : UINT64_C(64) << 10;
    sp->ack_cap = 4096;
    sp->ack = calloc(sp->ack_cap, 1);
    sp->dir = strdup(dir);
    char cdir[4200];
    snprintf(cdir, sizeof cdir, "%s/corrupt", dir);
    if (!sp->ack || !sp->dir || ccgw_mkdirs(dir) != 0 || ccgw_mkdirs(cdir) != 0) {
        CLOG_ERROR(TAG, "cannot create %s: %s", dir, strerror(errno));
        goto fail;
    }
    char lp[4200];
    snprintf(lp, sizeof lp, "%s/lock", dir);
    sp->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (sp->lock_fd < 0 || flock(sp->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        CLOG_ERROR(TAG, "%s: %s", lp,
                   errno == EWOULDBLOCK ? "the spool is in use by another ccgw (same data_dir)" : strerror(errno));
        goto fail;
    }
    sp->w = sp->persisted_w = ckpt_read(dir);
    DIR *d = opendir(dir);
    if (!d) {
        CLOG_ERROR(TAG, "cannot list %s: %s", dir, strerror(errno));
        goto fail;
    }
    uint64_t *firsts = NULL;
    size_t nf = 0, cf = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (strlen(n) != 20 || strcmp(n + 16, ".seg") != 0 || strspn(n, "0123456789abcdef") != 16)
            continue;
        if (nf == cf) {
            cf = cf ? cf * 2 : 64;
            uint64_t *x = realloc(firsts, cf * sizeof *x);
            if (!x) {
                closedir(d);
                free(firsts);
                goto fail;
            }
            firsts = x;
        }
        firsts[nf++] = strtoull(n, NULL, 16);
    }
    closedir(d);
    if (nf)
        qsort(firsts, nf, sizeof *firsts, cmp_u64);
    /* ids increase across segments; records at or below w are kept (the
     * reader skips them), gaps above w are remembered so w moves over them */
    uint64_t prev = 0;
    for (size_t i = 0; i < nf; i++) {
        /* wholly delivered: the next segment starts at or below w + 1 */
        if (i + 1 < nf && firsts[i + 1] <= sp->w + 1) {
            char p[4096];
            seg_path(sp, firsts[i], p, sizeof p);
            unlink(p);
            continue;
        }
        seg_t s = {0};
        if (recover_segment(sp, firsts[i], &prev, &s, &rep) != 0) {
            free(firsts);
            goto fail;
        }
        if (s.n == 0)
            continue;
        if (segs_push(sp, &s) != 0) {
            free(firsts);
            goto fail;
        }
        sp->bytes += s.bytes;
        rep.segments++;
    }
    free(firsts);
    sp->next_id = (prev > sp->w ? prev : sp->w) + 1;
    sp->first_id_this_boot = sp->next_id;
    sp->rd_id = sp->w + 1;
    sp->st.pending = rep.pending;
    sp->st.replayed_at_start = rep.pending;
    sp->st.corrupt_regions = rep.corrupt_regions;
    sp->st.corrupt_bytes = rep.corrupt_bytes;
    rep.watermark = sp->w;
    rep.elapsed_ms = now_ms_mono() - t0;
    if (rep.corrupt_regions || rep.corrupt_segments)
        CLOG_WARN(TAG, "%s: %" PRIu64 " damaged region(s) (%" PRIu64 " bytes) in %" PRIu64
                  " segment(s) set aside in %s", dir, rep.corrupt_regions, rep.corrupt_bytes,
                  rep.corrupt_segments, cdir);
    CLOG_INFO(TAG, "%s: %" PRIu64 " segment(s), %" PRIu64 " bytes, %" PRIu64 " records to replay (watermark %" PRIu64
              ", opened in %" PRIu64 " ms)", dir, rep.segments, sp->bytes, rep.pending, sp->w, rep.elapsed_ms);
    if (report)
        *report = rep;
    sp->last_ckpt_ms = now_ms_mono();
    if (pthread_create(&sp->flusher, NULL, flusher_main, sp) != 0) {
        CLOG_ERROR(TAG, "cannot start the spool flusher");
        goto fail;
    }
    pthread_setname_np(sp->flusher, "ccgw:spool");
    sp->flusher_running = true;
    return sp;
fail:
    ccgw_spool_close(sp);
    return NULL;
}

void ccgw_spool_close(ccgw_spool_t *sp)
{
    if (!sp)
        return;
    if (sp->flusher_running) {
        pthread_mutex_lock(&sp->lock);
        sp->stop = true;
        pthread_cond_broadcast(&sp->cond);
        pthread_mutex_unlock(&sp->lock);
        pthread_join(sp->flusher, NULL);
        sp->flusher_running = false;
        sp->o.full_cb = NULL; /* the gateway is going away */
        maintain(sp, true);
        if (sp->w != sp->persisted_w && ckpt_write(sp, sp->w) == 0)
            sp->persisted_w = sp->w;
        CLOG_INFO(TAG, "closed: %" PRIu64 " records pending, %" PRIu64 " bytes; appended %" PRIu64
                  ", delivered %" PRIu64 ", telemetry dropped %" PRIu64 ", refused full %" PRIu64
                  ", expired %" PRIu64 ", fsyncs %" PRIu64 "; mapped segments %" PRIu64 ", read from the mapping %" PRIu64
                  ", from memory %" PRIu64 ", from files %" PRIu64, sp->st.pending, sp->bytes, sp->st.appended,
                  sp->st.delivered, sp->st.dropped_telemetry, sp->st.refused_full, sp->st.expired,
                  sp->st.fsyncs, sp->st.mapped_segments, sp->st.read_mapped, sp->st.read_memory, sp->st.read_file);
    }
    if (sp->wfd >= 0) {
        unmap_active(sp);
        fdatasync(sp->wfd);
        close(sp->wfd);
    }
    if (sp->retired_fd >= 0) {
        fdatasync(sp->retired_fd);
        close(sp->retired_fd);
    }
    if (sp->rd_fd >= 0)
        close(sp->rd_fd);
    if (sp->lock_fd >= 0)
        close(sp->lock_fd); /* releases the flock */
    free(sp->segs);
    free(sp->gaps);
    free(sp->ack);
    free(sp->rbuf);
    free(sp->tail);
    free(sp->win);
    free(sp->dir);
    pthread_mutex_destroy(&sp->lock);
    pthread_cond_destroy(&sp->cond);
    free(sp);
}

void ccgw_spool_get_stats(ccgw_spool_t *sp, ccgw_spool_stats_t *out)
{
    pthread_mutex_lock(&sp->lock);
    *out = sp->st;
    out->bytes = sp->bytes;
    out->segments = sp->n_segs;
    out->watermark = sp->w;
    out->next_id = sp->next_id;
    out->full = sp->full;
    pthread_mutex_unlock(&sp->lock);
}
