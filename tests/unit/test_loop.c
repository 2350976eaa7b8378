/* Unit tests: the instance loop's timers (order, repeat, cancel from inside
 * a callback), fd watches, and bounded cross-thread posts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"

typedef struct ctx {
    ccgw_loop_t *loop;
    char order[32];
    int n;
    int repeats;
    ccgw_timer_t *rep;
    int io_reads;
    int posts;
} ctx_t;

static void mark(ctx_t *c, char ch) { c->order[c->n++] = ch; }

static void t_a(ccgw_timer_t *t, void *arg) { (void)t; mark(arg, 'a'); }
static void t_b(ccgw_timer_t *t, void *arg) { (void)t; mark(arg, 'b'); }
static void t_stop(ccgw_timer_t *t, void *arg)
{
    (void)t;
    ctx_t *c = arg;
    mark(c, 's');
    ccgw_loop_stop(c->loop);
}
static void t_rep(ccgw_timer_t *t, void *arg)
{
    ctx_t *c = arg;
    if (++c->repeats == 3)
        ccgw_loop_timer_cancel(t); /* from inside its own callback */
}

static void test_timers(void **st)
{
    (void)st;
    ctx_t c = {0};
    c.loop = ccgw_loop_new(16);
    ccgw_loop_timer_add(c.loop, 30, 0, t_b, &c);
    ccgw_loop_timer_add(c.loop, 10, 0, t_a, &c);
    ccgw_timer_t *never = ccgw_loop_timer_add(c.loop, 20, 0, t_a, &c);
    ccgw_loop_timer_cancel(never);
    c.rep = ccgw_loop_timer_add(c.loop, 5, 5, t_rep, &c);
    ccgw_loop_timer_add(c.loop, 120, 0, t_stop, &c);
    uint64_t t0 = ccgw_monotonic_ms();
    ccgw_loop_run(c.loop);
    uint64_t dt = ccgw_monotonic_ms() - t0;
    c.order[c.n] = 0;
    assert_string_equal(c.order, "abs");
    assert_int_equal(c.repeats, 3);
    assert_true(dt >= 110 && dt < 2000);
    ccgw_loop_free(c.loop);
}

static void on_read(ccgw_io_t *io, int fd, unsigned ev, void *arg)
{
    ctx_t *c = arg;
    char buf[8];
    if (ev & CCGW_IO_READ) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0)
            c->io_reads++;
    }
    if (c->io_reads == 2) {
        ccgw_loop_io_remove(io); /* from inside its own callback */
        ccgw_loop_stop(c->loop);
    }
}

static void *writer(void *arg)
{
    int fd = *(int *)arg;
    usleep(20000);
    ssize_t w = write(fd, "x", 1);
    usleep(20000);
    w = write(fd, "y", 1);
    (void)w;
    return NULL;
}

static void test_io(void **st)
{
    (void)st;
    ctx_t c = {0};
    c.loop = ccgw_loop_new(16);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_non_null(ccgw_loop_io_add(c.loop, p[0], CCGW_IO_READ, on_read, &c));
    pthread_t th;
    pthread_create(&th, NULL, writer, &p[1]);
    ccgw_loop_run(c.loop);
    pthread_join(th, NULL);
    assert_int_equal(c.io_reads, 2);
    close(p[0]);
    close(p[1]);
    ccgw_loop_free(c.loop);
}

static void on_post(void *arg)
{
    ctx_t *c = arg;
    if (++c->posts == 100)
        ccgw_loop_stop(c->loop);
}

static void *poster(void *arg)
{
    ctx_t *c = arg;
    int sent = 0;
    while (sent < 100) {
        if (ccgw_loop_post(c->loop, on_post, c) == 0)
            sent++;
        else
            usleep(100);
    }
    return NULL;
}

static void test_posts_cross_thread_and_bounded(void **st)
{
    (void)st;
    ctx_t c = {0};
    c.loop = ccgw_loop_new(4);
    /* the bound: 4 fit, the 5th is refused */
    for (int i = 0; i < 4; i++)
        assert_int_equal(ccgw_loop_post(c.loop, on_post, &c), 0);
    assert_int_equal(ccgw_loop_post(c.loop, on_post, &c), CCGW_EFULL);
    assert_int_equal(ccgw_loop_posts_rejected(c.loop), 1);
    ccgw_loop_run_posts(c.loop);
    assert_int_equal(c.posts, 4);
    c.posts = 0;
    pthread_t th;
    pthread_create(&th, NULL, poster, &c);
    ccgw_loop_run(c.loop);
    pthread_join(th, NULL);
    assert_int_equal(c.posts, 100);
    ccgw_loop_close_posts(c.loop);
    assert_int_equal(ccgw_loop_post(c.loop, on_post, &c), CCGW_ESTOPPED);
    ccgw_loop_free(c.loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers),
        cmocka_unit_test(test_io),
        cmocka_unit_test(test_posts_cross_thread_and_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
