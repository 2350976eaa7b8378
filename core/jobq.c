/* jobq - the SDK's bounded job queue (sdk/include/ccgw/jobq.h); core/jobq.h
 * adds what the metrics page reads. */
#include "jobq.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "instance.h"

#define JOBQ_MAX 65536u

struct ccgw_jobq {
    ccgw_instance_t *inst;
    struct ccgw_jobq *next;       /* inst->jobqs, under inst->lock */
    char name[32];
    pthread_mutex_t lock;
    pthread_cond_t cond;          /* CLOCK_MONOTONIC */
    void **ring;
    size_t cap, head, len;
    bool closed;
    int efd;                      /* readable iff len > 0 || closed */
    _Atomic size_t depth;         /* len, for readers without the lock */
    _Atomic uint64_t pushed, refused;
};

static void efd_set(ccgw_jobq_t *q)
{
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(q->efd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
}

static void efd_clear(ccgw_jobq_t *q)
{
    uint64_t v;
    ssize_t r;
    do
        r = read(q->efd, &v, sizeof v);
    while (r < 0 && errno == EINTR);
}

ccgw_jobq_t *ccgw_jobq_new(ccgw_instance_t *inst, const char *name, size_t capacity)
{
    if (!inst || !name || !name[0] || capacity == 0 || capacity > JOBQ_MAX) {
        if (inst)
            CCGW_ERROR(inst, "ccgw_jobq_new(%s, %zu): needs a name and a capacity of 1..%u",
                       name ? name : "(null)", capacity, JOBQ_MAX);
        return NULL;
    }
    ccgw_jobq_t *q = calloc(1, sizeof *q);
    if (q)
        q->ring = calloc(capacity, sizeof *q->ring);
    if (!q || !q->ring) {
        if (q)
            free(q->ring);
        free(q);
        CCGW_ERROR(inst, "job queue %s: out of memory", name);
        return NULL;
    }
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0) {
        CCGW_ERROR(inst, "job queue %s: eventfd: %s", name, strerror(errno));
        free(q->ring);
        free(q);
        return NULL;
    }
    q->inst = inst;
    q->cap = capacity;
    snprintf(q->name, sizeof q->name, "%s", name);
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_lock(&inst->lock);
    q->next = inst->jobqs;
    inst->jobqs = q;
    pthread_mutex_unlock(&inst->lock);
    return q;
}

int ccgw_jobq_push(ccgw_jobq_t *q, void *job)
{
    if (!q || !job)
        return CCGW_EINVAL;
    int rc = CCGW_OK;
    pthread_mutex_lock(&q->lock);
    if (q->closed) {
        rc = CCGW_ESTOPPED;
    } else if (q->len == q->cap) {
        rc = CCGW_EFULL;
        atomic_fetch_add(&q->refused, 1);
    } else {
        q->ring[(q->head + q->len) % q->cap] = job;
        if (q->len++ == 0)
            efd_set(q);
        atomic_store(&q->depth, q->len);
        atomic_fetch_add(&q->pushed, 1);
        pthread_cond_signal(&q->cond);
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

/* under q->lock */
static void *take(ccgw_jobq_t *q)
{
    if (q->len == 0)
        return NULL;
    void *job = q->ring[q->head];
    q->ring[q->head] = NULL;
    q->head = (q->head + 1) % q->cap;
    if (--q->len == 0 && !q->closed)
        efd_clear(q);
    atomic_store(&q->depth, q->len);
    return job;
}

void *ccgw_jobq_pop(ccgw_jobq_t *q)
{
    if (!q)
        return NULL;
    pthread_mutex_lock(&q->lock);
    void *job = take(q);
    pthread_mutex_unlock(&q->lock);
    return job;
}

void *ccgw_jobq_wait(ccgw_jobq_t *q, int timeout_ms)
{
    if (!q)
        return NULL;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (timeout_ms > 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&q->lock);
    while (q->len == 0 && !q->closed && timeout_ms != 0) {
        int rc = timeout_ms < 0 ? pthread_cond_wait(&q->cond, &q->lock)
                                : pthread_cond_timedwait(&q->cond, &q->lock, &until);
        if (rc == ETIMEDOUT)
            break;
    }
    void *job = take(q);
    pthread_mutex_unlock(&q->lock);
    return job;
}

int ccgw_jobq_fd(const ccgw_jobq_t *q) { return q ? q->efd : -1; }

void ccgw_jobq_close(ccgw_jobq_t *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->lock);
    if (!q->closed) {
        q->closed = true;
        if (q->len == 0)
            efd_set(q);
        pthread_cond_broadcast(&q->cond);
    }
    pthread_mutex_unlock(&q->lock);
}

size_t ccgw_jobq_len(const ccgw_jobq_t *q) { return q ? atomic_load(&q->depth) : 0; }

void ccgw_jobq_free(ccgw_jobq_t *q, void (*drop)(void *job, void *ctx), void *ctx)
{
    if (!q)
        return;
    ccgw_instance_t *inst = q->inst;
    pthread_mutex_lock(&inst->lock);
    for (ccgw_jobq_t **pp = &inst->jobqs; *pp; pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    }
    pthread_mutex_unlock(&inst->lock);
    void *job;
    while ((job = take(q)) != NULL) {
        if (drop)
            drop(job, ctx);
    }
    close(q->efd);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q->ring);
    free(q);
}

void ccgw_jobq_stats(const ccgw_jobq_t *q, ccgw_jobq_stats_t *out)
{
    snprintf(out->name, sizeof out->name, "%s", q->name);
    out->jobs = atomic_load(&q->depth);
    out->capacity = q->cap;
    out->pushed = atomic_load(&q->pushed);
    out->refused = atomic_load(&q->refused);
}

const ccgw_jobq_t *ccgw_jobq_next(const ccgw_jobq_t *q) { return q->next; }
