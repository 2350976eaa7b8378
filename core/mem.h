/*
 * mem - process-wide memory housekeeping: give the heap's free memory back
 * to the system after a burst (docs/architecture.md, memory).
 *
 * glibc's malloc returns free memory to the system only from the top of each
 * heap; a burst of short-lived allocations (100,000 devices declared at once
 * fill the north queue with their first states: about 20 MB, delivered a few
 * seconds later) leaves that memory resident but free, below long-lived
 * allocations made meanwhile. ccgw_mem_tick() looks at the free total every
 * MEM_CHECK_MS and, when it is large, calls malloc_trim(0), which releases
 * the free pages (madvise) wherever they are. Nothing else changes: the
 * memory is simply faulted in again if a later burst needs it.
 *
 * Thread: the main thread's loop (gateway.c), every tick.
 */
#ifndef CCGW_MEM_H
#define CCGW_MEM_H

#include <stddef.h>
#include <stdint.h>

/* Check (at most every few seconds) and trim when worth it. */
void ccgw_mem_tick(uint64_t now_ms);

#endif
