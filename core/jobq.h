/*
 * jobq - the SDK's bounded job queue (declared for plugins in
 * sdk/include/ccgw/jobq.h). Each queue registers with its instance
 * (inst->jobqs, under inst->lock) so that /metrics can list depth, capacity
 * and refusals; this header adds the read side the metrics page uses.
 */
#ifndef CCGW_CORE_JOBQ_H
#define CCGW_CORE_JOBQ_H

#include <stdint.h>

#include <ccgw/jobq.h>

typedef struct ccgw_jobq_stats {
    char name[32];
    size_t jobs, capacity;
    uint64_t pushed, refused;
} ccgw_jobq_stats_t;

/* Under the owning instance's lock (the list may change otherwise). */
void ccgw_jobq_stats(const ccgw_jobq_t *q, ccgw_jobq_stats_t *out);
const ccgw_jobq_t *ccgw_jobq_next(const ccgw_jobq_t *q);

#endif
