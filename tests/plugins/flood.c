/*
 * flood - device "<instance>.f1" (class env); a thread of its own emits
 * events `flood.tick` (value n) as fast as the core accepts them, until
 * stop(). Counts accepted and refused emits and logs them at stop:
 * INFO "flood: N accepted, M refused".
 *
 * Exercises: one flooding instance does not stall the others or the north
 * side (backpressure applies to the flooder).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <ccgw/ccgw.h>

typedef struct fl {
    ccgw_instance_t *inst;
    ccgw_device_t *dev;
    pthread_t th;
    bool running;
    atomic_bool stop;
    uint64_t ok, refused;
} fl_t;

static void *fl_main(void *arg)
{
    fl_t *f = arg;
    int64_t n = 0;
    while (!atomic_load(&f->stop)) {
        ccgw_value_t v[] = {CCGW_V_INT("n", ++n)};
        if (ccgw_device_event(f->dev, "flood.tick", v, 1) == CCGW_OK)
            f->ok++;
        else
            f->refused++;
    }
    return NULL;
}

static int fl_create(ccgw_instance_t *inst, const ccgw_config_t *options, void **state)
{
    (void)options;
    fl_t *f = calloc(1, sizeof *f);
    if (!f)
        return CCGW_ENOMEM;
    f->inst = inst;
    char id[96];
    snprintf(id, sizeof id, "%s.f1", ccgw_instance_id(inst));
    f->dev = ccgw_device_add(inst, "env", id, f);
    if (!f->dev) {
        free(f);
        return CCGW_EEXIST;
    }
    *state = f;
    return CCGW_OK;
}

static int fl_start(void *state)
{
    fl_t *f = state;
    ccgw_device_set_online(f->dev, true, NULL);
    if (pthread_create(&f->th, NULL, fl_main, f) != 0)
        return CCGW_ENOMEM;
    f->running = true;
    return CCGW_OK;
}

static void fl_stop(void *state)
{
    fl_t *f = state;
    atomic_store(&f->stop, true);
    if (f->running)
        pthread_join(f->th, NULL);
    f->running = false;
    CCGW_INFO(f->inst, "flood: %llu accepted, %llu refused", (unsigned long long)f->ok,
              (unsigned long long)f->refused);
}

static void fl_destroy(void *state) { free(state); }

CCGW_PLUGIN_DEFINE(
    .name = "flood",
    .version = "1.0.0",
    .description = "Test plugin: emits events as fast as the core accepts them",
    .create = fl_create,
    .start = fl_start,
    .stop = fl_stop,
    .destroy = fl_destroy);
