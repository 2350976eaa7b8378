/* loop - see loop.h. */
#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct ccgw_timer {
    ccgw_loop_t *loop;
    uint64_t due, interval;
    ccgw_timer_cb cb;
    void *arg;
    size_t idx;      /* position in the heap, SIZE_MAX when not in it */
    bool firing;     /* its callback is running */
    bool cancelled;  /* cancel was asked while firing */
};

struct ccgw_io {
    ccgw_loop_t *loop;
    int fd;
    unsigned events;
    ccgw_io_cb cb;
    void *arg;
    bool removed;
};

typedef struct post_item {
    void (*fn)(void *);
    void *arg;
} post_item_t;

struct ccgw_loop {
    int efd;
    atomic_bool stop;
    _Atomic uint64_t heartbeat;
    /* timers: min-heap by due */
    ccgw_timer_t **heap;
    size_t n_heap, cap_heap;
    /* fd watches */
    ccgw_io_t **ios;
    size_t n_ios, cap_ios;
    bool ios_dirty;
    bool in_dispatch;
    /* posts: ring */
    pthread_mutex_t post_lock;
    post_item_t *ring;
    size_t ring_cap, ring_head, ring_len;
    bool posts_closed;
    _Atomic uint64_t posts_rejected;
};

uint64_t ccgw_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t ccgw_now_ms(void) { return ccgw_monotonic_ms(); }

ccgw_loop_t *ccgw_loop_new(size_t post_limit)
{
    ccgw_loop_t *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->ring_cap = post_limit ? post_limit : 1024;
    l->ring = calloc(l->ring_cap, sizeof *l->ring);
    if (l->efd < 0 || !l->ring) {
        if (l->efd >= 0)
            close(l->efd);
        free(l->ring);
        free(l);
        return NULL;
    }
    pthread_mutex_init(&l->post_lock, NULL);
    atomic_init(&l->stop, false);
    atomic_init(&l->heartbeat, ccgw_monotonic_ms());
    atomic_init(&l->posts_rejected, 0);
    return l;
}

static void wake(ccgw_loop_t *l)
{
    uint64_t one = 1;
    ssize_t w = write(l->efd, &one, sizeof one);
    (void)w; /* EAGAIN means a wake-up is already pending */
}

void ccgw_loop_stop(ccgw_loop_t *l)
{
    atomic_store(&l->stop, true);
    wake(l);
}

uint64_t ccgw_loop_heartbeat(ccgw_loop_t *l) { return atomic_load(&l->heartbeat); }

/* ---- posts ---- */

int ccgw_loop_post(ccgw_loop_t *l, void (*fn)(void *), void *arg)
{
    if (!l || !fn)
        return CCGW_EINVAL;
    pthread_mutex_lock(&l->post_lock);
    if (l->posts_closed) {
        pthread_mutex_unlock(&l->post_lock);
        return CCGW_ESTOPPED;
    }
    if (l->ring_len == l->ring_cap) {
        pthread_mutex_unlock(&l->post_lock);
        atomic_fetch_add(&l->posts_rejected, 1);
        return CCGW_EFULL;
    }
    size_t pos = (l->ring_head + l->ring_len) % l->ring_cap;
    l->ring[pos].fn = fn;
    l->ring[pos].arg = arg;
    bool was_empty = l->ring_len == 0;
    l->ring_len++;
    pthread_mutex_unlock(&l->post_lock);
    if (was_empty)
        wake(l);
    return CCGW_OK;
}

void ccgw_loop_run_posts(ccgw_loop_t *l)
{
    /* run what is queued now; items posted meanwhile wait for the next turn */
    pthread_mutex_lock(&l->post_lock);
    size_t n = l->ring_len;
    pthread_mutex_unlock(&l->post_lock);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&l->post_lock);
        if (l->ring_len == 0) {
            pthread_mutex_unlock(&l->post_lock);
            break;
        }
        post_item_t it = l->ring[l->ring_head];
        l->ring_head = (l->ring_head + 1) % l->ring_cap;
        l->ring_len--;
        pthread_mutex_unlock(&l->post_lock);
        it.fn(it.arg);
    }
}

void ccgw_loop_close_posts(ccgw_loop_t *l)
{
    pthread_mutex_lock(&l->post_lock);
    l->posts_closed = true;
    pthread_mutex_unlock(&l->post_lock);
}

size_t ccgw_loop_post_depth(ccgw_loop_t *l)
{
    pthread_mutex_lock(&l->post_lock);
    size_t n = l->ring_len;
    pthread_mutex_unlock(&l->post_lock);
    return n;
}

uint64_t ccgw_loop_posts_rejected(ccgw_loop_t *l) { return atomic_load(&l->posts_rejected); }

/* ---- timers ---- */

static void heap_swap(ccgw_loop_t *l, size_t a, size_t b)
{
    ccgw_timer_t *t = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->idx = a;
    l->heap[b]->idx = b;
}

static void heap_up(ccgw_loop_t *l, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (l->heap[p]->due <= l->heap[i]->due)
            break;
        heap_swap(l, p, i);
        i = p;
    }
}

static void heap_down(ccgw_loop_t *l, size_t i)
{
    for (;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        if (a < l->n_heap && l->heap[a]->due < l->heap[m]->due)
            m = a;
        if (b < l->n_heap && l->heap[b]->due < l->heap[m]->due)
            m = b;
        if (m == i)
            break;
        heap_swap(l, i, m);
        i = m;
    }
}

static int heap_push(ccgw_loop_t *l, ccgw_timer_t *t)
{
    if (l->n_heap == l->cap_heap) {
        size_t cap = l->cap_heap ? l->cap_heap * 2 : 16;
        ccgw_timer_t **nh = realloc(l->heap, cap * sizeof *nh);
        if (!nh)
            return CCGW_ENOMEM;
        l->heap = nh;
        l->cap_heap = cap;
    }
    t->idx = l->n_heap;
    l->heap[l->n_heap++] = t;
    heap_up(l, t->idx);
    return CCGW_OK;
}

static void heap_remove(ccgw_loop_t *l, ccgw_timer_t *t)
{
    size_t i = t->idx;
    if (i == SIZE_MAX || i >= l->n_heap)
        return;
    l->n_heap--;
    if (i != l->n_heap) {
        l->heap[i] = l->heap[l->n_heap];
        l->heap[i]->idx = i;
        heap_down(l, i);
        heap_up(l, i);
    }
    t->idx = SIZE_MAX;
}

ccgw_timer_t *ccgw_loop_timer_add(ccgw_loop_t *l, uint64_t first_ms, uint64_t interval_ms,
                                  ccgw_timer_cb cb, void *arg)
{
    if (!l || !cb)
        return NULL;
    ccgw_timer_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->loop = l;
    t->due = ccgw_monotonic_ms() + first_ms;
    t->interval = interval_ms;
    t->cb = cb;
    t->arg = arg;
    t->idx = SIZE_MAX;
    if (heap_push(l, t) != CCGW_OK) {
        free(t);
        return NULL;
    }
    return t;
}

void ccgw_loop_timer_cancel(ccgw_timer_t *t)
{
    if (!t)
        return;
    if (t->firing) {
        t->cancelled = true; /* freed when its callback returns */
        return;
    }
    heap_remove(t->loop, t);
    free(t);
}

static void run_timers(ccgw_loop_t *l, uint64_t now)
{
    /* bounded per turn so that a 0 ms repeating timer cannot starve the loop */
    for (int budget = 1024; budget > 0 && l->n_heap > 0 && l->heap[0]->due <= now; budget--) {
        ccgw_timer_t *t = l->heap[0];
        heap_remove(l, t);
        t->firing = true;
        t->cb(t, t->arg);
        t->firing = false;
        if (t->cancelled || t->interval == 0) {
            free(t);
            continue;
        }
        /* keep the cadence; if we fell far behind, skip missed beats */
        t->due += t->interval;
        if (t->due <= now)
            t->due = now + t->interval;
        if (heap_push(l, t) != CCGW_OK)
            free(t);
    }
}

/* ---- fd watches ---- */

ccgw_io_t *ccgw_loop_io_add(ccgw_loop_t *l, int fd, unsigned events, ccgw_io_cb cb, void *arg)
{
    if (!l || fd < 0 || !cb)
        return NULL;
    if (l->n_ios == l->cap_ios) {
        size_t cap = l->cap_ios ? l->cap_ios * 2 : 8;
        ccgw_io_t **ni = realloc(l->ios, cap * sizeof *ni);
        if (!ni)
            return NULL;
        l->ios = ni;
        l->cap_ios = cap;
    }
    ccgw_io_t *io = calloc(1, sizeof *io);
    if (!io)
        return NULL;
    io->loop = l;
    io->fd = fd;
    io->events = events;
    io->cb = cb;
    io->arg = arg;
    l->ios[l->n_ios++] = io;
    l->ios_dirty = true;
    return io;
}

int ccgw_loop_io_modify(ccgw_io_t *io, unsigned events)
{
    if (!io || io->removed)
        return CCGW_EINVAL;
    io->events = events;
    return CCGW_OK;
}

void ccgw_loop_io_remove(ccgw_io_t *io)
{
    if (!io || io->removed)
        return;
    io->removed = true;
    io->loop->ios_dirty = true;
    if (!io->loop->in_dispatch) {
        /* compact now */
        ccgw_loop_t *l = io->loop;
        for (size_t i = 0; i < l->n_ios; i++) {
            if (l->ios[i] == io) {
                l->ios[i] = l->ios[--l->n_ios];
                break;
            }
        }
        free(io);
    }
}

static void compact_ios(ccgw_loop_t *l)
{
    size_t j = 0;
    for (size_t i = 0; i < l->n_ios; i++) {
        if (l->ios[i]->removed)
            free(l->ios[i]);
        else
            l->ios[j++] = l->ios[i];
    }
    l->n_ios = j;
}

/* ---- run ---- */

int ccgw_loop_run(ccgw_loop_t *l)
{
    struct pollfd *pfds = NULL;
    ccgw_io_t **pios = NULL; /* the watch behind pfds[i + 1] */
    size_t cap = 0;
    while (!atomic_load(&l->stop)) {
        uint64_t now = ccgw_monotonic_ms();
        atomic_store(&l->heartbeat, now);
        int timeout = 1000; /* turn at least once a second for the heartbeat */
        if (l->n_heap > 0) {
            uint64_t due = l->heap[0]->due;
            timeout = due <= now ? 0 : (due - now < 1000 ? (int)(due - now) : 1000);
        }
        size_t n = l->n_ios + 1;
        if (n > cap) {
            struct pollfd *np = realloc(pfds, n * sizeof *np);
            ccgw_io_t **ni = np ? realloc(pios, n * sizeof *ni) : NULL;
            if (np)
                pfds = np;
            if (!np || !ni) {
                CLOG_ERROR("loop", "out of memory for %zu fd watches", n);
                break;
            }
            pios = ni;
            cap = n;
        }
        pfds[0].fd = l->efd;
        pfds[0].events = POLLIN;
        pfds[0].revents = 0;
        for (size_t i = 0; i < l->n_ios; i++) {
            ccgw_io_t *io = l->ios[i];
            pfds[i + 1].fd = io->fd;
            pfds[i + 1].events = (short)(((io->events & CCGW_IO_READ) ? POLLIN : 0) |
                                         ((io->events & CCGW_IO_WRITE) ? POLLOUT : 0));
            pfds[i + 1].revents = 0;
            pios[i] = io;
        }
        int rc = poll(pfds, n, timeout);
        if (rc < 0 && errno != EINTR) {
            CLOG_ERROR("loop", "poll: %s", strerror(errno));
            break;
        }
        atomic_store(&l->heartbeat, ccgw_monotonic_ms());
        if (rc > 0 && (pfds[0].revents & POLLIN)) {
            uint64_t v;
            ssize_t r = read(l->efd, &v, sizeof v);
            (void)r;
        }
        ccgw_loop_run_posts(l);
        run_timers(l, ccgw_monotonic_ms());
        if (rc > 0) {
            l->in_dispatch = true;
            for (size_t i = 1; i < n; i++) {
                if (!pfds[i].revents)
                    continue;
                ccgw_io_t *io = pios[i - 1];
                if (io->removed)
                    continue;
                unsigned ev = 0;
                if (pfds[i].revents & POLLIN)
                    ev |= CCGW_IO_READ;
                if (pfds[i].revents & POLLOUT)
                    ev |= CCGW_IO_WRITE;
                if (pfds[i].revents & (POLLERR | POLLHUP | POLLNVAL))
                    ev |= CCGW_IO_ERROR;
                io->cb(io, io->fd, ev, io->arg);
            }
            l->in_dispatch = false;
        }
        if (l->ios_dirty) {
            compact_ios(l);
            l->ios_dirty = false;
        }
    }
    free(pfds);
    free(pios);
    return 0;
}

void ccgw_loop_free(ccgw_loop_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n_heap; i++)
        free(l->heap[i]);
    free(l->heap);
    for (size_t i = 0; i < l->n_ios; i++)
        free(l->ios[i]);
    free(l->ios);
    free(l->ring);
    pthread_mutex_destroy(&l->post_lock);
    close(l->efd);
    free(l);
}
