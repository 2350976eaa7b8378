/* mem - see mem.h. */
#include "mem.h"

#include <stdio.h>
#include <unistd.h>

#include "log.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#define MEM_CHECK_MS 2000u
#define MEM_TRIM_MIN_FREE (4u << 20) /* trim when at least 4 MiB are free in the heaps */

static uint64_t last_check_ms;

/* Resident set size in bytes (from /proc/self/statm), 0 if unknown. */
static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return 0;
    unsigned long long size = 0, res = 0;
    int n = fscanf(f, "%llu %llu", &size, &res);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? res * (uint64_t)page : 0;
}

void ccgw_mem_tick(uint64_t now_ms)
{
#ifdef __GLIBC__
    if (last_check_ms && now_ms - last_check_ms < MEM_CHECK_MS)
        return;
    last_check_ms = now_ms;
    struct mallinfo2 mi = mallinfo2(); /* all arenas; free = fordblks */
    /* worth it: a few MiB free, and free is a real share of what is in use */
    if (mi.fordblks < MEM_TRIM_MIN_FREE || mi.fordblks < mi.uordblks / 4)
        return;
    uint64_t before = rss_bytes();
    malloc_trim(0);
    uint64_t after = rss_bytes();
    CLOG_DEBUG("mem", "malloc_trim: %zu KiB free in the heaps (%zu KiB in use); RSS %llu -> %llu KiB",
               mi.fordblks / 1024, mi.uordblks / 1024, (unsigned long long)before / 1024,
               (unsigned long long)after / 1024);
#else
    (void)now_ms;
#endif
}
