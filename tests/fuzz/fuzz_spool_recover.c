/*
 * fuzz_spool_recover - libFuzzer target for the spool's recovery (core/spool.c),
 * the one reader of files that may have been damaged by a crash, a power
 * loss or a disk: the input becomes a segment file (and, when it starts with
 * "CKPT", its first 16 bytes a checkpoint); opening the spool must not crash,
 * and afterwards every segment file left must hold only CRC-valid records in
 * increasing id order, exactly the ones the reader then returns.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "spool.h"

static char base[64];
static char sdir[128];

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_type == DT_DIR)
            rm_rf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void cleanup(void) { rm_rf(base); }

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (len && fwrite(data, 1, len, f) != len)
        abort();
    fclose(f);
}

/* Every record of every *.seg must be valid, ids increasing; returns how many
 * have an id above w. */
static uint64_t check_files(uint64_t w)
{
    DIR *d = opendir(sdir);
    if (!d)
        abort();
    char names[256][32];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256)
        if (strlen(e->d_name) == 20 && !strcmp(e->d_name + 16, ".seg"))
            snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    uint64_t prev = 0, above = 0;
    for (int i = 0; i < n; i++) {
        char p[512];
        if (snprintf(p, sizeof p, "%s/%s", sdir, names[i]) >= (int)sizeof p)
            abort();
        FILE *f = fopen(p, "rb");
        if (!f)
            abort();
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        unsigned char *b = malloc((size_t)sz + 1);
        if (fread(b, 1, (size_t)sz, f) != (size_t)sz)
            abort();
        fclose(f);
        long off = 0;
        while (off < sz) {
            uint32_t magic, len, crc, plen;
            uint16_t tlen;
            uint64_t id;
            if (sz - off < 48)
                abort(); /* a partial header was kept */
            memcpy(&magic, b + off, 4);
            memcpy(&len, b + off + 4, 4);
            memcpy(&crc, b + off + 8, 4);
            memcpy(&tlen, b + off + 12, 2);
            memcpy(&id, b + off + 16, 8);
            memcpy(&plen, b + off + 40, 4);
            if (magic != 0x4C505343u || len < 48 || len > sz - off || 48u + tlen + plen != len)
                abort(); /* a bad header was kept */
            if (ccgw_crc32c(0, b + off + 12, len - 12) != crc)
                abort(); /* a CRC-invalid record was kept */
            if (id <= prev)
                abort(); /* ids not increasing */
            prev = id;
            if (id > w)
                above++;
            off += len;
        }
        free(b);
    }
    return above;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base[0]) {
        ccgw_log_set_level(CCGW_LOG_ERROR);
        /* tmpfs when there is one: fsync is free there */
        snprintf(base, sizeof base, "%s/fuzz-spool-XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(base))
            abort();
        atexit(cleanup);
        snprintf(sdir, sizeof sdir, "%s/spool", base);
    }
    rm_rf(sdir);
    char p[256];
    snprintf(sdir, sizeof sdir, "%s/spool", base);
    if (mkdir(sdir, 0750) != 0)
        abort();
    if (size >= 16 && !memcmp(data, "CKPT", 4)) {
        snprintf(p, sizeof p, "%s/checkpoint", sdir);
        write_file(p, data, 16);
        data += 16;
        size -= 16;
    }
    snprintf(p, sizeof p, "%s/0000000000000001.seg", sdir);
    write_file(p, data, size);
    ccgw_spool_options_t o = {.fsync_ms = 10000};
    ccgw_spool_open_report_t rep;
    ccgw_spool_t *sp = ccgw_spool_open(sdir, &o, &rep);
    if (!sp)
        return 0;
    ccgw_spool_stats_t st;
    ccgw_spool_get_stats(sp, &st);
    uint64_t want = check_files(st.watermark);
    uint64_t got = 0, last = 0;
    ccgw_spool_rec_t r;
    while (ccgw_spool_next(sp, &r) == 1) {
        if (r.id <= last || r.id <= st.watermark || strlen(r.topic) == 0)
            abort();
        last = r.id;
        got++;
        ccgw_spool_ack(sp, r.id);
    }
    if (got != want || rep.pending != want)
        abort();
    /* appends after recovery get ids above everything found */
    uint64_t id = 0;
    if (ccgw_spool_append(sp, 2, 1, 0, "t", "{}", 2, &id) == 0 && id <= last)
        abort();
    ccgw_spool_close(sp);
    return 0;
}
