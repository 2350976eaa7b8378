/*
 * jobq: the SDK's bounded job queue (sdk/include/ccgw/jobq.h, core/jobq.c):
 * FIFO order, the capacity limit refused and counted, the descriptor readable
 * exactly while jobs wait, wait() with timeouts and a wake-up from another
 * thread, close(), free() handing leftovers to drop(), registration with the
 * instance for /metrics, bad arguments.
 */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "instance.h"
#include "jobq.h"

static ccgw_instance_t INST;

static int setup(void **st)
{
    (void)st;
    memset(&INST, 0, sizeof INST);
    pthread_mutex_init(&INST.lock, NULL);
    snprintf(INST.tag, sizeof INST.tag, "test:jobq");
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    pthread_mutex_destroy(&INST.lock);
    return 0;
}

static bool readable(const ccgw_jobq_t *q)
{
    struct pollfd p = {.fd = ccgw_jobq_fd(q), .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void test_fifo_limit_and_fd(void **st)
{
    (void)st;
    int jobs[5];
    ccgw_jobq_t *q = ccgw_jobq_new(&INST, "writes", 3);
    assert_non_null(q);
    assert_false(readable(q));
    assert_null(ccgw_jobq_pop(q));
    for (int i = 0; i < 3; i++)
        assert_int_equal(ccgw_jobq_push(q, &jobs[i]), CCGW_OK);
    assert_true(readable(q));
    assert_int_equal(ccgw_jobq_push(q, &jobs[3]), CCGW_EFULL);
    assert_int_equal(ccgw_jobq_push(q, &jobs[4]), CCGW_EFULL);
    assert_int_equal(ccgw_jobq_len(q), 3);
    ccgw_jobq_stats_t s;
    ccgw_jobq_stats(q, &s);
    assert_string_equal(s.name, "writes");
    assert_int_equal(s.jobs, 3);
    assert_int_equal(s.capacity, 3);
    assert_int_equal(s.pushed, 3);
    assert_int_equal(s.refused, 2);
    assert_ptr_equal(ccgw_jobq_pop(q), &jobs[0]);
    assert_true(readable(q));
    /* the ring wraps: a fourth job after one left */
    assert_int_equal(ccgw_jobq_push(q, &jobs[3]), CCGW_OK);
    assert_ptr_equal(ccgw_jobq_pop(q), &jobs[1]);
    assert_ptr_equal(ccgw_jobq_wait(q, 0), &jobs[2]);
    assert_true(readable(q));
    assert_ptr_equal(ccgw_jobq_pop(q), &jobs[3]);
    assert_false(readable(q)); /* empty: no longer readable */
    assert_null(ccgw_jobq_pop(q));
    assert_int_equal(ccgw_jobq_len(q), 0);
    assert_int_equal(ccgw_jobq_push(q, NULL), CCGW_EINVAL);
    ccgw_jobq_free(q, NULL, NULL);
}

static void test_wait_timeout(void **st)
{
    (void)st;
    ccgw_jobq_t *q = ccgw_jobq_new(&INST, "t", 1);
    uint64_t t0 = mono_ms();
    assert_null(ccgw_jobq_wait(q, 50));
    assert_true(mono_ms() - t0 >= 50);
    ccgw_jobq_free(q, NULL, NULL);
}

struct producer {
    ccgw_jobq_t *q;
    int job;
    bool close_instead;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    struct timespec d = {0, 30 * 1000000L};
    nanosleep(&d, NULL);
    if (p->close_instead)
        ccgw_jobq_close(p->q);
    else
        ccgw_jobq_push(p->q, &p->job);
    return NULL;
}

static void test_wait_woken_by_push_and_close(void **st)
{
    (void)st;
    ccgw_jobq_t *q = ccgw_jobq_new(&INST, "w", 4);
    struct producer p = {.q = q};
    pthread_t t;
    pthread_create(&t, NULL, produce, &p);
    assert_ptr_equal(ccgw_jobq_wait(q, -1), &p.job); /* no limit: only the push ends it */
    pthread_join(t, NULL);
    /* close wakes a waiter with nothing queued; the fd stays readable */
    p.close_instead = true;
    pthread_create(&t, NULL, produce, &p);
    uint64_t t0 = mono_ms();
    assert_null(ccgw_jobq_wait(q, 10000));
    assert_true(mono_ms() - t0 < 5000);
    pthread_join(t, NULL);
    assert_true(readable(q));
    assert_int_equal(ccgw_jobq_push(q, &p.job), CCGW_ESTOPPED);
    ccgw_jobq_close(q); /* idempotent */
    ccgw_jobq_free(q, NULL, NULL);
}

static void count_drop(void *job, void *ctx)
{
    (void)job;
    (*(int *)ctx)++;
}

static void test_close_drains_and_free_drops(void **st)
{
    (void)st;
    int jobs[3], dropped = 0;
    ccgw_jobq_t *q = ccgw_jobq_new(&INST, "d", 8);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ccgw_jobq_push(q, &jobs[i]), CCGW_OK);
    ccgw_jobq_close(q);
    assert_ptr_equal(ccgw_jobq_pop(q), &jobs[0]); /* queued jobs still come out */
    assert_true(readable(q));
    ccgw_jobq_free(q, count_drop, &dropped);
    assert_int_equal(dropped, 2);
}

static void test_registered_with_instance(void **st)
{
    (void)st;
    ccgw_jobq_t *a = ccgw_jobq_new(&INST, "a", 2);
    ccgw_jobq_t *b = ccgw_jobq_new(&INST, "b", 2);
    int n = 0;
    for (const ccgw_jobq_t *q = INST.jobqs; q; q = ccgw_jobq_next(q))
        n++;
    assert_int_equal(n, 2);
    ccgw_jobq_free(a, NULL, NULL);
    assert_ptr_equal(INST.jobqs, b);
    assert_null(ccgw_jobq_next(b));
    ccgw_jobq_free(b, NULL, NULL);
    assert_null(INST.jobqs);
}

static void test_bad_arguments(void **st)
{
    (void)st;
    assert_null(ccgw_jobq_new(&INST, "zero", 0));
    assert_null(ccgw_jobq_new(&INST, "huge", 65537));
    assert_null(ccgw_jobq_new(&INST, "", 4));
    ccgw_jobq_t *q = ccgw_jobq_new(&INST, "a-name-of-thirty-two-characters!", 4); /* cut to 31 */
    ccgw_jobq_stats_t s;
    ccgw_jobq_stats(q, &s);
    assert_string_equal(s.name, "a-name-of-thirty-two-characters");
    ccgw_jobq_free(q, NULL, NULL);
    assert_null(ccgw_jobq_new(NULL, "x", 4));
    assert_null(ccgw_jobq_pop(NULL));
    assert_null(ccgw_jobq_wait(NULL, 0));
    assert_int_equal(ccgw_jobq_fd(NULL), -1);
    assert_int_equal(ccgw_jobq_len(NULL), 0);
    assert_int_equal(ccgw_jobq_push(NULL, &INST), CCGW_EINVAL);
    ccgw_jobq_close(NULL);
    ccgw_jobq_free(NULL, NULL, NULL);
    assert_null(INST.jobqs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fifo_limit_and_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_woken_by_push_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains_and_free_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registered_with_instance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
