/* alarm_engine - see alarm_engine.h. */
#include "alarm_engine.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum tstate { T_IDLE = 0, T_ACTIVE, T_SUPPRESSED } tstate_t;

typedef struct tracker {
    struct tracker *next; /* hash chain */
    const ccgw_alarm_rule_t *rule;
    char class_name[32];
    char device[72];
    tstate_t state;
    bool have_value;
    double last;
    bool on_pending;  /* condition holding since on_since */
    uint64_t on_since;
    bool off_pending; /* clear condition holding since off_since */
    uint64_t off_since;
    bool raised_once;
    uint64_t last_raise;
    uint64_t suppressed; /* since the last raise */
} tracker_t;

struct ccgw_alarm_engine {
    pthread_mutex_t lock;
    const ccgw_alarm_rule_t *rules;
    size_t n_rules;
    tracker_t **buckets;
    size_t n_buckets, count;
    ccgw_alarm_engine_stats_t st;
};

typedef struct dlist {
    ccgw_alarm_decision_t *v;
    size_t n, cap;
} dlist_t;

const char *ccgw_rule_type_name(ccgw_rule_type_t t)
{
    switch (t) {
    case CCGW_RULE_HIGH: return "high";
    case CCGW_RULE_HIGH_HIGH: return "high_high";
    case CCGW_RULE_LOW: return "low";
    case CCGW_RULE_LOW_LOW: return "low_low";
    case CCGW_RULE_ON: return "on";
    case CCGW_RULE_OFF: return "off";
    }
    return "high";
}

const char *ccgw_rule_severity_name(ccgw_rule_severity_t s)
{
    switch (s) {
    case CCGW_RSEV_CRITICAL: return "critical";
    case CCGW_RSEV_MAJOR: return "major";
    case CCGW_RSEV_MINOR: return "minor";
    case CCGW_RSEV_WARNING: return "warning";
    }
    return "major";
}

bool ccgw_rule_is_bool(ccgw_rule_type_t t) { return t == CCGW_RULE_ON || t == CCGW_RULE_OFF; }

bool ccgw_glob_match(const char *p, const char *s)
{
    /* iterative with one backtrack point: linear enough for short ids */
    const char *star = NULL, *ss = NULL;
    while (*s) {
        if (*p == '*') {
            star = p++;
            ss = s;
        } else if (*p == *s) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++ss;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

static bool rule_applies(const ccgw_alarm_rule_t *r, const char *cls, const char *dev)
{
    if (r->class_name && strcmp(r->class_name, cls) != 0)
        return false;
    return ccgw_glob_match(r->device, dev);
}

ccgw_alarm_engine_t *ccgw_alarm_engine_new(const ccgw_alarm_rule_t *rules, size_t n_rules)
{
    ccgw_alarm_engine_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->n_buckets = 1024;
    e->buckets = calloc(e->n_buckets, sizeof *e->buckets);
    if (!e->buckets) {
        free(e);
        return NULL;
    }
    e->rules = rules;
    e->n_rules = n_rules;
    pthread_mutex_init(&e->lock, NULL);
    return e;
}

void ccgw_alarm_engine_free(ccgw_alarm_engine_t *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_buckets; i++) {
        tracker_t *t = e->buckets[i];
        while (t) {
            tracker_t *n = t->next;
            free(t);
            t = n;
        }
    }
    free(e->buckets);
    pthread_mutex_destroy(&e->lock);
    free(e);
}

size_t ccgw_alarm_engine_rule_count(const ccgw_alarm_engine_t *e) { return e ? e->n_rules : 0; }

bool ccgw_alarm_engine_wants(const ccgw_alarm_engine_t *e, const char *cls, const char *dev)
{
    for (size_t i = 0; e && cls && dev && i < e->n_rules; i++)
        if (rule_applies(&e->rules[i], cls, dev))
            return true;
    return false;
}

static size_t thash(const ccgw_alarm_rule_t *r, const char *cls, const char *dev)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)r;
    for (const char *s = cls; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = (h ^ '/') * 1099511628211ull;
    for (const char *s = dev; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)h;
}

static void grow(ccgw_alarm_engine_t *e)
{
    size_t nb = e->n_buckets * 2;
    tracker_t **b = calloc(nb, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < e->n_buckets; i++) {
        tracker_t *t = e->buckets[i];
        while (t) {
            tracker_t *n = t->next;
            size_t j = thash(t->rule, t->class_name, t->device) & (nb - 1);
            t->next = b[j];
            b[j] = t;
            t = n;
        }
    }
    free(e->buckets);
    e->buckets = b;
    e->n_buckets = nb;
}

static tracker_t *tracker_get(ccgw_alarm_engine_t *e, const ccgw_alarm_rule_t *r, const char *cls,
                              const char *dev, bool create)
{
    size_t b = thash(r, cls, dev) & (e->n_buckets - 1);
    for (tracker_t *t = e->buckets[b]; t; t = t->next)
        if (t->rule == r && !strcmp(t->class_name, cls) && !strcmp(t->device, dev))
            return t;
    if (!create || strlen(cls) >= sizeof((tracker_t *)0)->class_name ||
        strlen(dev) >= sizeof((tracker_t *)0)->device)
        return NULL;
    tracker_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->rule = r;
    snprintf(t->class_name, sizeof t->class_name, "%s", cls);
    snprintf(t->device, sizeof t->device, "%s", dev);
    t->next = e->buckets[b];
    e->buckets[b] = t;
    e->count++;
    e->st.trackers = e->count;
    if (e->count > e->n_buckets)
        grow(e);
    return t;
}

static void push(dlist_t *l, ccgw_alarm_action_t a, const tracker_t *t)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        ccgw_alarm_decision_t *nv = realloc(l->v, cap * sizeof *nv);
        if (!nv)
            return;
        l->v = nv;
        l->cap = cap;
    }
    ccgw_alarm_decision_t *d = &l->v[l->n++];
    memset(d, 0, sizeof *d);
    d->action = a;
    d->rule = t->rule;
    memcpy(d->class_name, t->class_name, sizeof d->class_name);
    memcpy(d->device, t->device, sizeof d->device);
    d->value = t->last;
    d->suppressed = t->suppressed;
}

static bool cond_on(const ccgw_alarm_rule_t *r, double v)
{
    switch (r->type) {
    case CCGW_RULE_HIGH:
    case CCGW_RULE_HIGH_HIGH: return v >= r->threshold;
    case CCGW_RULE_LOW:
    case CCGW_RULE_LOW_LOW: return v <= r->threshold;
    case CCGW_RULE_ON: return v != 0;
    case CCGW_RULE_OFF: return v == 0;
    }
    return false;
}

static bool cond_clear(const ccgw_alarm_rule_t *r, double v)
{
    switch (r->type) {
    case CCGW_RULE_HIGH:
    case CCGW_RULE_HIGH_HIGH: return v < r->threshold - r->deadband;
    case CCGW_RULE_LOW:
    case CCGW_RULE_LOW_LOW: return v > r->threshold + r->deadband;
    default: return !cond_on(r, v);
    }
}

static uint64_t secs_ms(double s) { return s <= 0 ? 0 : (uint64_t)llround(s * 1000.0); }

static void do_raise(ccgw_alarm_engine_t *e, tracker_t *t, uint64_t now, dlist_t *out)
{
    t->state = T_ACTIVE;
    t->on_pending = false;
    t->off_pending = false;
    t->raised_once = true;
    t->last_raise = now;
    e->st.raised++;
    push(out, CCGW_ALARM_RAISE, t);
    t->suppressed = 0;
}

/* Advance one tracker; `fresh` when t->last is a new sample. */
static void step(ccgw_alarm_engine_t *e, tracker_t *t, uint64_t now, bool fresh, dlist_t *out)
{
    const ccgw_alarm_rule_t *r = t->rule;
    if (!t->have_value)
        return;
    double v = t->last;
    uint64_t min_iv = secs_ms(r->min_interval_s);
    switch (t->state) {
    case T_IDLE:
        if (!cond_on(r, v)) {
            t->on_pending = false;
            return;
        }
        if (!t->on_pending) {
            if (!fresh)
                return;
            t->on_pending = true;
            t->on_since = now;
        }
        if (now - t->on_since < secs_ms(r->on_delay_s))
            return;
        if (t->raised_once && min_iv && now - t->last_raise < min_iv) {
            t->state = T_SUPPRESSED;
            t->on_pending = false;
            t->off_pending = false;
            t->suppressed++;
            e->st.suppressed++;
            push(out, CCGW_ALARM_SUPPRESSED, t);
            return;
        }
        do_raise(e, t, now, out);
        return;
    case T_SUPPRESSED:
        if (cond_clear(r, v)) {
            t->state = T_IDLE;
            t->on_pending = false;
            return;
        }
        if (cond_on(r, v) && now - t->last_raise >= min_iv)
            do_raise(e, t, now, out);
        return;
    case T_ACTIVE:
        if (!cond_clear(r, v)) {
            t->off_pending = false;
            return;
        }
        if (!t->off_pending) {
            if (!fresh)
                return;
            t->off_pending = true;
            t->off_since = now;
        }
        if (now - t->off_since < secs_ms(r->off_delay_s))
            return;
        t->state = T_IDLE;
        t->off_pending = false;
        t->on_pending = false;
        e->st.cleared++;
        push(out, CCGW_ALARM_CLEAR, t);
        return;
    }
}

static void feed_locked(ccgw_alarm_engine_t *e, const char *cls, const char *dev, const char *name, double v,
                        uint64_t now, dlist_t *out)
{
    for (size_t i = 0; i < e->n_rules; i++) {
        const ccgw_alarm_rule_t *r = &e->rules[i];
        if (strcmp(r->value, name) != 0 || !rule_applies(r, cls, dev))
            continue;
        tracker_t *t = tracker_get(e, r, cls, dev, true);
        if (!t)
            continue;
        t->have_value = true;
        t->last = v;
        step(e, t, now, true, out);
    }
}

static bool as_number(const ccgw_value_t *v, double *out)
{
    switch (v->type) {
    case CCGW_VAL_BOOL: *out = v->v.b ? 1.0 : 0.0; return true;
    case CCGW_VAL_INT: *out = (double)v->v.i; return true;
    case CCGW_VAL_DOUBLE: *out = v->v.d; return !isnan(v->v.d);
    default: return false;
    }
}

size_t ccgw_alarm_engine_feed(ccgw_alarm_engine_t *e, const char *cls, const char *dev, const ccgw_value_t *v,
                              size_t n, uint64_t now_ms, ccgw_alarm_decision_t **out)
{
    dlist_t l = {0};
    *out = NULL;
    if (!e || !cls || !dev)
        return 0;
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; v && i < n; i++) {
        double x;
        if (v[i].name && as_number(&v[i], &x))
            feed_locked(e, cls, dev, v[i].name, x, now_ms, &l);
    }
    pthread_mutex_unlock(&e->lock);
    *out = l.v;
    return l.n;
}

size_t ccgw_alarm_engine_feed_one(ccgw_alarm_engine_t *e, const char *cls, const char *dev, const char *name,
                                  double value, uint64_t now_ms, ccgw_alarm_decision_t **out)
{
    ccgw_value_t v = CCGW_V_DOUBLE(name, value, NULL);
    return ccgw_alarm_engine_feed(e, cls, dev, &v, 1, now_ms, out);
}

size_t ccgw_alarm_engine_tick(ccgw_alarm_engine_t *e, uint64_t now_ms, ccgw_alarm_decision_t **out)
{
    dlist_t l = {0};
    *out = NULL;
    if (!e)
        return 0;
    pthread_mutex_lock(&e->lock);
    for (size_t b = 0; b < e->n_buckets; b++)
        for (tracker_t *t = e->buckets[b]; t; t = t->next)
            if (t->on_pending || t->off_pending || t->state == T_SUPPRESSED)
                step(e, t, now_ms, false, &l);
    pthread_mutex_unlock(&e->lock);
    *out = l.v;
    return l.n;
}

const ccgw_alarm_rule_t *ccgw_alarm_engine_restore(ccgw_alarm_engine_t *e, const char *code, const char *cls,
                                                   const char *dev)
{
    if (!e || !code || !cls || !dev)
        return NULL;
    const ccgw_alarm_rule_t *found = NULL;
    pthread_mutex_lock(&e->lock);
    for (size_t i = 0; i < e->n_rules && !found; i++) {
        const ccgw_alarm_rule_t *r = &e->rules[i];
        if (strcmp(r->code, code) != 0 || !rule_applies(r, cls, dev))
            continue;
        tracker_t *t = tracker_get(e, r, cls, dev, true);
        if (!t)
            continue;
        t->state = T_ACTIVE;
        t->on_pending = t->off_pending = false;
        found = r;
    }
    pthread_mutex_unlock(&e->lock);
    return found;
}

void ccgw_alarm_engine_forget(ccgw_alarm_engine_t *e, const ccgw_alarm_rule_t *r, const char *cls, const char *dev)
{
    if (!e || !r || !cls || !dev)
        return;
    pthread_mutex_lock(&e->lock);
    tracker_t *t = tracker_get(e, r, cls, dev, false);
    if (t) {
        t->state = T_IDLE;
        t->on_pending = t->off_pending = false;
    }
    pthread_mutex_unlock(&e->lock);
}

void ccgw_alarm_engine_get_stats(ccgw_alarm_engine_t *e, ccgw_alarm_engine_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!e)
        return;
    pthread_mutex_lock(&e->lock);
    *out = e->st;
    out->trackers = e->count;
    pthread_mutex_unlock(&e->lock);
}
