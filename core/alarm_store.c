/* alarm_store - see alarm_store.h. */
#include "alarm_store.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"

typedef struct rec {
    ccgw_alarm_record_t r;
    bool pending; /* loaded from disk, device not declared yet */
} rec_t;

struct ccgw_alarm_store {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool running, stop;
    char *dir, *path, *tmp;
    bool persistent;
    rec_t *v;
    size_t n, cap;
    uint64_t version, written;
    bool full_logged;
};

static char *dupn(const char *s) { return s ? strdup(s) : NULL; }

void ccgw_alarm_record_clear(ccgw_alarm_record_t *r)
{
    if (!r)
        return;
    free(r->class_name);
    free(r->device);
    free(r->code);
    free(r->instance);
    free(r->severity);
    free(r->message);
    free(r->acked_by);
    free(r->ack_note);
    free(r->rule);
    free(r->data_json);
    memset(r, 0, sizeof *r);
}

static void record_copy(ccgw_alarm_record_t *dst, const ccgw_alarm_record_t *src)
{
    memset(dst, 0, sizeof *dst);
    dst->class_name = dupn(src->class_name);
    dst->device = dupn(src->device);
    dst->code = dupn(src->code);
    dst->instance = dupn(src->instance);
    dst->severity = dupn(src->severity ? src->severity : "major");
    dst->message = dupn(src->message);
    memcpy(dst->raised_at, src->raised_at, CCGW_TS_LEN);
    dst->raised_at[CCGW_TS_LEN - 1] = '\0';
    dst->acked = src->acked;
    dst->acked_by = dupn(src->acked_by);
    dst->ack_note = dupn(src->ack_note);
    memcpy(dst->acked_at, src->acked_at, CCGW_TS_LEN);
    dst->acked_at[CCGW_TS_LEN - 1] = '\0';
    dst->rule = dupn(src->rule);
    dst->data_json = dupn(src->data_json ? src->data_json : "{}");
}

static bool same(const ccgw_alarm_record_t *r, const char *cls, const char *dev, const char *code)
{
    return r->class_name && r->device && r->code && !strcmp(r->class_name, cls) && !strcmp(r->device, dev) &&
           !strcmp(r->code, code);
}

/* ---- file ---- */

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void move_aside(ccgw_alarm_store_t *s, const char *why)
{
    char aside[4200];
    snprintf(aside, sizeof aside, "%s.corrupt-%lld", s->path, (long long)time(NULL));
    if (rename(s->path, aside) == 0)
        CLOG_ERROR("alarms", "%s is corrupt (%s): moved aside to %s; starting without restored alarms", s->path,
                   why, aside);
    else
        CLOG_ERROR("alarms", "%s is corrupt (%s) and could not be moved aside: %s", s->path, why,
                   strerror(errno));
}

static bool valid_ts(const char *t) { return t && strlen(t) == CCGW_TS_LEN - 1; }

static void load(ccgw_alarm_store_t *s)
{
    struct stat st;
    if (stat(s->path, &st) != 0)
        return; /* nothing persisted yet */
    if (st.st_size > 64 * 1024 * 1024) {
        move_aside(s, "larger than 64 MiB");
        return;
    }
    json_error_t err;
    json_t *root = json_load_file(s->path, 0, &err);
    if (!root) {
        char why[300];
        snprintf(why, sizeof why, "line %d: %s", err.line, err.text);
        move_aside(s, why);
        return;
    }
    json_t *list = json_object_get(root, "alarms");
    if (!json_is_object(root) || !json_is_array(list)) {
        json_decref(root);
        move_aside(s, "no \"alarms\" list");
        return;
    }
    size_t i, bad = 0;
    json_t *a;
    json_array_foreach(list, i, a) {
        const char *cls = jstr(a, "class"), *dev = jstr(a, "device"), *code = jstr(a, "code"),
                   *ra = jstr(a, "raised_at");
        if (!cls || !dev || !code || !valid_ts(ra) || s->n >= CCGW_ALARM_STORE_MAX) {
            bad++;
            continue;
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            rec_t *nv = realloc(s->v, cap * sizeof *nv);
            if (!nv)
                break;
            s->v = nv;
            s->cap = cap;
        }
        ccgw_alarm_record_t r = {0};
        r.class_name = (char *)cls;
        r.device = (char *)dev;
        r.code = (char *)code;
        r.instance = (char *)jstr(a, "instance");
        r.severity = (char *)jstr(a, "severity");
        r.message = (char *)jstr(a, "message");
        snprintf(r.raised_at, sizeof r.raised_at, "%s", ra);
        const char *state = jstr(a, "state");
        r.acked = state && !strcmp(state, "acknowledged");
        r.acked_by = (char *)jstr(a, "acked_by");
        r.ack_note = (char *)jstr(a, "note");
        const char *aa = jstr(a, "acked_at");
        if (valid_ts(aa))
            snprintf(r.acked_at, sizeof r.acked_at, "%s", aa);
        r.rule = (char *)jstr(a, "rule");
        json_t *data = json_object_get(a, "data");
        char *dj = json_is_object(data) ? json_dumps(data, JSON_COMPACT) : NULL;
        r.data_json = dj;
        rec_t *slot = &s->v[s->n++];
        record_copy(&slot->r, &r);
        slot->pending = true;
        free(dj);
    }
    json_decref(root);
    if (bad)
        CLOG_WARN("alarms", "%s: %zu malformed alarm record(s) ignored", s->path, bad);
    if (s->n)
        CLOG_INFO("alarms", "%s: %zu active alarm(s) to restore", s->path, s->n);
}

/* Serialise the live set; called with the lock held. */
static char *dump_locked(ccgw_alarm_store_t *s)
{
    json_t *root = json_object(), *list = json_array();
    json_object_set_new(root, "version", json_integer(1));
    for (size_t i = 0; i < s->n; i++) {
        const ccgw_alarm_record_t *r = &s->v[i].r;
        json_t *a = json_object();
        json_object_set_new(a, "class", json_string(r->class_name));
        json_object_set_new(a, "device", json_string(r->device));
        json_object_set_new(a, "code", json_string(r->code));
        if (r->instance)
            json_object_set_new(a, "instance", json_string(r->instance));
        json_object_set_new(a, "severity", json_string(r->severity ? r->severity : "major"));
        if (r->message)
            json_object_set_new(a, "message", json_string(r->message));
        json_object_set_new(a, "raised_at", json_string(r->raised_at));
        json_object_set_new(a, "state", json_string(r->acked ? "acknowledged" : "raised"));
        if (r->acked) {
            if (r->acked_by)
                json_object_set_new(a, "acked_by", json_string(r->acked_by));
            json_object_set_new(a, "acked_at", json_string(r->acked_at));
            if (r->ack_note)
                json_object_set_new(a, "note", json_string(r->ack_note));
        }
        if (r->rule)
            json_object_set_new(a, "rule", json_string(r->rule));
        json_t *data = r->data_json ? json_loads(r->data_json, 0, NULL) : NULL;
        json_object_set_new(a, "data", json_is_object(data) ? data : json_object());
        if (data && !json_is_object(data))
            json_decref(data);
        json_array_append_new(list, a);
    }
    json_object_set_new(root, "alarms", list);
    char *out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return out;
}

static int write_file(ccgw_alarm_store_t *s, const char *text)
{
    int fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            unlink(s->tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        close(fd);
        unlink(s->tmp);
        return -1;
    }
    if (close(fd) != 0 || rename(s->tmp, s->path) != 0) {
        unlink(s->tmp);
        return -1;
    }
    int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* Write once if dirty. Takes and releases the lock itself. */
static int write_if_dirty(ccgw_alarm_store_t *s)
{
    pthread_mutex_lock(&s->lock);
    if (!s->persistent || s->written == s->version) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    uint64_t v = s->version;
    char *text = dump_locked(s);
    pthread_mutex_unlock(&s->lock);
    int rc = text ? write_file(s, text) : -1;
    free(text);
    pthread_mutex_lock(&s->lock);
    if (rc == 0) {
        if (v > s->written)
            s->written = v;
    } else {
        CLOG_ERROR("alarms", "cannot write %s: %s", s->path, strerror(errno));
        s->written = v; /* do not spin; the next change tries again */
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void *writer(void *arg)
{
    ccgw_alarm_store_t *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        if (s->written == s->version) {
            pthread_cond_wait(&s->cond, &s->lock);
            continue;
        }
        pthread_mutex_unlock(&s->lock);
        write_if_dirty(s);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- API ---- */

ccgw_alarm_store_t *ccgw_alarm_store_open(const char *dir)
{
    ccgw_alarm_store_t *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (!dir)
        return s;
    s->dir = strdup(dir);
    if (!s->dir || asprintf(&s->path, "%s/alarms.json", dir) < 0 || asprintf(&s->tmp, "%s/.alarms.json.tmp", dir) < 0) {
        ccgw_alarm_store_free(s);
        return NULL;
    }
    if (ccgw_mkdirs(dir) != 0) {
        CLOG_ERROR("alarms", "cannot create data dir %s: %s; running without alarm persistence", dir,
                   strerror(errno));
        return s;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        CLOG_ERROR("alarms", "data dir %s is not writable: %s; running without alarm persistence", dir,
                   strerror(errno));
        return s;
    }
    s->persistent = true;
    load(s);
    return s;
}

bool ccgw_alarm_store_persistent(const ccgw_alarm_store_t *s) { return s && s->persistent; }

int ccgw_alarm_store_start(ccgw_alarm_store_t *s)
{
    if (!s || !s->persistent || s->running)
        return 0;
    s->stop = false;
    if (pthread_create(&s->thread, NULL, writer, s) != 0)
        return -1;
    s->running = true;
    return 0;
}

void ccgw_alarm_store_stop(ccgw_alarm_store_t *s)
{
    if (!s)
        return;
    if (s->running) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        s->running = false;
    }
    write_if_dirty(s);
}

void ccgw_alarm_store_free(ccgw_alarm_store_t *s)
{
    if (!s)
        return;
    ccgw_alarm_store_stop(s);
    for (size_t i = 0; i < s->n; i++)
        ccgw_alarm_record_clear(&s->v[i].r);
    free(s->v);
    free(s->dir);
    free(s->path);
    free(s->tmp);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void changed_locked(ccgw_alarm_store_t *s)
{
    s->version++;
    pthread_cond_signal(&s->cond);
}

void ccgw_alarm_store_put(ccgw_alarm_store_t *s, const ccgw_alarm_record_t *r)
{
    if (!s || !r || !r->class_name || !r->device || !r->code)
        return;
    pthread_mutex_lock(&s->lock);
    size_t i = 0;
    while (i < s->n && !same(&s->v[i].r, r->class_name, r->device, r->code))
        i++;
    if (i == s->n) {
        if (s->n >= CCGW_ALARM_STORE_MAX) {
            if (!s->full_logged)
                CLOG_WARN("alarms", "%d active alarms: further alarms are not persisted", CCGW_ALARM_STORE_MAX);
            s->full_logged = true;
            pthread_mutex_unlock(&s->lock);
            return;
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            rec_t *nv = realloc(s->v, cap * sizeof *nv);
            if (!nv) {
                pthread_mutex_unlock(&s->lock);
                return;
            }
            s->v = nv;
            s->cap = cap;
        }
        s->n++;
    } else {
        ccgw_alarm_record_clear(&s->v[i].r);
    }
    record_copy(&s->v[i].r, r);
    s->v[i].pending = false;
    changed_locked(s);
    pthread_mutex_unlock(&s->lock);
}

void ccgw_alarm_store_remove(ccgw_alarm_store_t *s, const char *cls, const char *dev, const char *code)
{
    if (!s || !cls || !dev || !code)
        return;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++) {
        if (same(&s->v[i].r, cls, dev, code)) {
            ccgw_alarm_record_clear(&s->v[i].r);
            s->v[i] = s->v[--s->n];
            changed_locked(s);
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

size_t ccgw_alarm_store_take(ccgw_alarm_store_t *s, const char *cls, const char *dev, ccgw_alarm_record_t **out)
{
    *out = NULL;
    if (!s || !cls || !dev)
        return 0;
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++) {
        rec_t *x = &s->v[i];
        if (!x->pending || strcmp(x->r.class_name, cls) != 0 || strcmp(x->r.device, dev) != 0)
            continue;
        ccgw_alarm_record_t *nv = realloc(*out, (n + 1) * sizeof *nv);
        if (!nv)
            break;
        *out = nv;
        record_copy(&nv[n++], &x->r);
        x->pending = false;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

size_t ccgw_alarm_store_expire(ccgw_alarm_store_t *s, ccgw_alarm_record_t **out)
{
    *out = NULL;
    if (!s)
        return 0;
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n;) {
        if (!s->v[i].pending) {
            i++;
            continue;
        }
        ccgw_alarm_record_t *nv = realloc(*out, (n + 1) * sizeof *nv);
        if (!nv)
            break;
        *out = nv;
        nv[n++] = s->v[i].r; /* moved */
        s->v[i] = s->v[--s->n];
    }
    if (n)
        changed_locked(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}

size_t ccgw_alarm_store_pending(ccgw_alarm_store_t *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n; i++)
        n += s->v[i].pending;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int ccgw_alarm_store_flush(ccgw_alarm_store_t *s) { return s ? write_if_dirty(s) : 0; }
