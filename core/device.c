/* device - see device.h. */
#include "device.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "alarm_engine.h"
#include "alarm_store.h"
#include "gateway.h"
#include "instance.h"
#include "log.h"

/*
 * Lock order (never take an earlier one while holding a later one):
 *   registry rwlock -> device lock -> store lock -> bus locks.
 * The alarm engine's lock is a leaf taken with NO device lock held: the
 * rule hook runs after the emit call has released the device lock, feeds
 * the engine (engine lock taken and released inside), then applies the
 * returned decisions under the device lock. The emitting plugin thread never
 * waits for the disk: the store only copies the record and wakes its writer.
 */

typedef struct attr {
    char *name;
    char *json; /* encoded value */
} attr_t;

typedef struct alarm {
    char *code;
    char severity[16];              /* published string */
    char *message;
    char raised_at[CCGW_TS_LEN];
    char *data_json;                /* encoded data object */
    bool acked;
    char *acked_by, *ack_note;
    char acked_at[CCGW_TS_LEN];
    const ccgw_alarm_rule_t *rule;  /* raised by this rule; NULL: by the plugin */
} alarm_t;

/*
 * One allocation per device, its key ("class/id") inline: 100,000 devices
 * are the scale goal (docs/architecture.md, memory), so nothing here is
 * derived data that can be rebuilt cheaply when a message is encoded: the
 * topics ({site_base}/{key}/...) are formatted on the stack and the
 * envelope's constant members come from the instance (env_head/env_tail,
 * instance.h). A device that never has attributes, alarms or extra commands
 * costs sizeof(struct ccgw_device) + its key, rounded up to 16 bytes (192
 * bytes for a 14-character id on x86-64).
 *
 * That memory comes from the registry's blocks of DEV_BLOCK bytes
 * (dev_alloc), with one free list per 16-byte size for devices removed when
 * an instance stops (the next life declares them again): no malloc header
 * per device, and 100,000 devices do not sit between the bus's short-lived
 * messages, which would otherwise leave holes the size of a message behind
 * each device once delivered (docs/architecture.md, memory).
 */
#define DEV_KINDS (CCGW_KIND_REPLY + 1) /* the kinds a device numbers: state..reply */

struct ccgw_device {
    ccgw_device_t *reg_next;  /* registry chain */
    ccgw_device_t *inst_next; /* instance's list */
    ccgw_instance_t *inst;
    void *user;
    char *reason;      /* NULL when online; reason_starting is static */
    const ccgw_command_spec_t **extra; /* EXTRA_MAX slots, allocated on first use */
    attr_t *attrs;
    alarm_t *alarms;
    uint32_t n_attrs, cap_attrs;
    uint32_t n_alarms, cap_alarms;
    pthread_mutex_t lock;
    uint64_t seq[DEV_KINDS];
    uint8_t class_idx; /* classes[] */
    uint8_t id_off;    /* the id is key + id_off */
    uint8_t n_extra;
    bool online;
    bool has_rules;    /* some alarm rule applies to this device */
    char key[];        /* "class/id" */
};

#define DEV_BLOCK (256u * 1024u) /* above glibc's mmap threshold: pages become resident as used */
#define DEV_MAX_BYTES 512u        /* > sizeof(struct ccgw_device) + the longest key (10 + 1 + 64 + 1) */

typedef struct dev_block {
    struct dev_block *next;
    size_t used;
    _Alignas(16) char data[];
} dev_block_t;

typedef struct dev_free {
    struct dev_free *next;
} dev_free_t;

struct ccgw_registry {
    pthread_rwlock_t lock;
    ccgw_device_t **buckets;
    size_t n_buckets, count;
    pthread_mutex_t mem_lock;                  /* blocks, free lists */
    dev_block_t *blocks;                       /* newest first */
    dev_free_t *free_by_size[DEV_MAX_BYTES / 16 + 1];
};

#define EXTRA_MAX 8

static const char *const classes[] = {"ups",      "hvac",       "env", "door", "pbx", "sms", "fax",
                                      "incident", "conference", NULL};
static char reason_starting[] = "starting"; /* the first reason of every device: not allocated */

static inline const char *dev_id(const ccgw_device_t *d) { return d->key + d->id_off; }
static inline const char *dev_class(const ccgw_device_t *d) { return classes[d->class_idx]; }
static inline ccgw_gateway_t *dev_gw(const ccgw_device_t *d) { return d->inst->gw; }

static void reason_free(ccgw_device_t *d)
{
    if (d->reason != reason_starting)
        free(d->reason);
    d->reason = NULL;
}

/* "{site_base}/{class}/{id}{suffix}" into topic (len >= 512; longer is cut,
 * as before: ids are <= 64, suffixes short). */
static void dev_topic(const ccgw_device_t *d, const char *suffix, char *topic, size_t len)
{
    snprintf(topic, len, "%s/%s%s", dev_gw(d)->site_base, d->key, suffix);
}

static const char *const reserved_attrs[] = {"ts",   "site", "class",  "device", "instance",
                                             "boot", "seq",  "online", "reason", NULL};

bool ccgw_valid_class(const char *c)
{
    for (int i = 0; c && classes[i]; i++)
        if (strcmp(c, classes[i]) == 0)
            return true;
    return false;
}

bool ccgw_valid_name(const char *s, bool allow_upper)
{
    if (!s || !*s || strlen(s) > 128)
        return false;
    for (; *s; s++) {
        char ch = *s;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
                  ch == '-' || (allow_upper && ch >= 'A' && ch <= 'Z');
        if (!ok)
            return false;
    }
    return true;
}

/* ---- registry ---- */

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

ccgw_registry_t *ccgw_registry_new(void)
{
    ccgw_registry_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->n_buckets = 1024;
    r->buckets = calloc(r->n_buckets, sizeof *r->buckets);
    if (!r->buckets) {
        free(r);
        return NULL;
    }
    pthread_rwlock_init(&r->lock, NULL);
    pthread_mutex_init(&r->mem_lock, NULL);
    return r;
}

static size_t dev_bytes(size_t key_len) { return (sizeof(struct ccgw_device) + key_len + 1 + 15u) & ~(size_t)15u; }

/* Zeroed memory for a device with a key of key_len bytes, or NULL. */
static ccgw_device_t *dev_alloc(ccgw_registry_t *r, size_t key_len)
{
    size_t n = dev_bytes(key_len);
    if (n > DEV_MAX_BYTES)
        return NULL;
    void *p = NULL;
    pthread_mutex_lock(&r->mem_lock);
    dev_free_t **fl = &r->free_by_size[n / 16];
    if (*fl) {
        p = *fl;
        *fl = (*fl)->next;
        memset(p, 0, n);
    } else {
        dev_block_t *k = r->blocks;
        if (!k || k->used + n > DEV_BLOCK - offsetof(dev_block_t, data)) {
            k = calloc(1, DEV_BLOCK);
            if (k) {
                k->next = r->blocks;
                r->blocks = k;
            }
        }
        if (k) {
            p = k->data + k->used;
            k->used += n;
        }
    }
    pthread_mutex_unlock(&r->mem_lock);
    return p;
}

static void dev_release(ccgw_registry_t *r, ccgw_device_t *d)
{
    size_t n = dev_bytes(strlen(d->key));
    dev_free_t *f = (dev_free_t *)(void *)d;
    pthread_mutex_lock(&r->mem_lock);
    f->next = r->free_by_size[n / 16];
    r->free_by_size[n / 16] = f;
    pthread_mutex_unlock(&r->mem_lock);
}

void ccgw_registry_free(ccgw_registry_t *r)
{
    if (!r)
        return;
    free(r->buckets); /* devices are freed with their instances */
    /* their memory too, unless devices are left: those of an instance whose
     * thread was abandoned (stuck in a plugin call) may still be used */
    while (r->count == 0 && r->blocks) {
        dev_block_t *k = r->blocks;
        r->blocks = k->next;
        free(k);
    }
    pthread_mutex_destroy(&r->mem_lock);
    pthread_rwlock_destroy(&r->lock);
    free(r);
}

size_t ccgw_registry_count(ccgw_registry_t *r)
{
    pthread_rwlock_rdlock(&r->lock);
    size_t n = r->count;
    pthread_rwlock_unlock(&r->lock);
    return n;
}

static ccgw_device_t *find_locked(ccgw_registry_t *r, const char *key)
{
    for (ccgw_device_t *d = r->buckets[hash_key(key) & (r->n_buckets - 1)]; d; d = d->reg_next)
        if (strcmp(d->key, key) == 0)
            return d;
    return NULL;
}

static void grow_locked(ccgw_registry_t *r)
{
    size_t nb = r->n_buckets * 2;
    ccgw_device_t **b = calloc(nb, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < r->n_buckets; i++) {
        ccgw_device_t *d = r->buckets[i];
        while (d) {
            ccgw_device_t *n = d->reg_next;
            size_t j = hash_key(d->key) & (nb - 1);
            d->reg_next = b[j];
            b[j] = d;
            d = n;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->n_buckets = nb;
}

int ccgw_registry_with(ccgw_registry_t *r, const char *class_name, const char *id,
                       int (*fn)(ccgw_device_t *dev, void *ctx), void *ctx)
{
    char key[300];
    if (snprintf(key, sizeof key, "%s/%s", class_name, id) >= (int)sizeof key)
        return CCGW_ENOTFOUND;
    pthread_rwlock_rdlock(&r->lock);
    ccgw_device_t *d = find_locked(r, key);
    int rc = d ? fn(d, ctx) : CCGW_ENOTFOUND;
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

/* ---- encoding ---- */

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

/*
 * The envelope's members after ts: "site":..,"class":..,"device":..,
 * "instance":..,"boot":.. - the instance's pre-encoded head and tail around
 * the class and id, which need no escaping ([a-z0-9_.-], checked by
 * ccgw_device_add()): one raw copy, as the per-device pre-encoded string it
 * replaces (about 96 bytes a device), with the same bytes.
 */
static void env_members(ccgw_jw_t *w, const ccgw_device_t *d)
{
    const ccgw_instance_t *inst = d->inst;
    const char *cls = dev_class(d), *id = dev_id(d);
    size_t cl = d->id_off - 1u, il = strlen(id);
    static const char mid[] = "\",\"device\":\"";
    size_t n = inst->env_head_len + cl + sizeof mid - 1 + il + inst->env_tail_len;
    char buf[768];
    if (inst->env_head && n <= sizeof buf) {
        char *o = buf;
        memcpy(o, inst->env_head, inst->env_head_len);
        o += inst->env_head_len;
        memcpy(o, cls, cl);
        o += cl;
        memcpy(o, mid, sizeof mid - 1);
        o += sizeof mid - 1;
        memcpy(o, id, il);
        o += il;
        memcpy(o, inst->env_tail, inst->env_tail_len);
        ccgw_jw_raw_members(w, buf, n);
        return;
    }
    /* no pre-encoded parts (out of memory at instance creation), or a site
     * or instance id too long for the buffer: encode them here */
    ccgw_jw_key(w, "site");
    ccgw_jw_string(w, dev_gw(d)->cfg->site);
    ccgw_jw_key(w, "class");
    ccgw_jw_string(w, cls);
    ccgw_jw_key(w, "device");
    ccgw_jw_string(w, id);
    ccgw_jw_key(w, "instance");
    ccgw_jw_string(w, inst->cfg->id);
    ccgw_jw_key(w, "boot");
    ccgw_jw_string(w, dev_gw(d)->boot);
}

static void begin_envelope(ccgw_jw_t *w, ccgw_device_t *d, ccgw_kind_t kind)
{
    char ts[CCGW_TS_LEN];
    ccgw_ts_now(ts);
    ccgw_jw_begin_object(w);
    ccgw_jw_key(w, "ts");
    ccgw_jw_string(w, ts);
    env_members(w, d);
    ccgw_jw_key(w, "seq");
    ccgw_jw_uint(w, (unsigned)kind < DEV_KINDS ? ++d->seq[kind] : 0); /* only device kinds come here */
}

static int qos_for(ccgw_gateway_t *gw, ccgw_kind_t k)
{
    const ccgw_mqtt_config_t *m = &gw->cfg->mqtt;
    switch (k) {
    case CCGW_KIND_STATE: return m->qos_state;
    case CCGW_KIND_TELEMETRY: return m->qos_telemetry;
    case CCGW_KIND_EVENT: return m->qos_event;
    case CCGW_KIND_ALARM: return m->qos_alarm;
    case CCGW_KIND_REPLY: return m->qos_reply;
    default: return 1;
    }
}

static void count(ccgw_device_t *d, ccgw_kind_t k, int rc)
{
    if (rc == CCGW_OK)
        atomic_fetch_add(&d->inst->emitted[k], 1);
    else
        atomic_fetch_add(&d->inst->dropped[k], 1);
}

/* Push a finished non-retained payload. Called with d->lock held. */
/*
 * Each emitting thread keeps one JSON buffer for telemetry and events instead
 * of a malloc and two or three reallocs per message: writer_take() lends it
 * to a local writer, writer_give() takes it back after the payload was copied
 * into the message (buffers above WRITER_KEEP, and a second one, are freed).
 * A thread-specific key frees it when the thread ends.
 */
#define WRITER_KEEP 65536
static _Thread_local struct {
    char *buf;
    size_t cap;
    bool keyed;
} tl_writer;
static pthread_key_t writer_key;
static pthread_once_t writer_once = PTHREAD_ONCE_INIT;

static void writer_dtor(void *p)
{
    (void)p;
    free(tl_writer.buf);
    tl_writer.buf = NULL;
    tl_writer.cap = 0;
}

static void writer_key_init(void) { pthread_key_create(&writer_key, writer_dtor); }

static void writer_take(ccgw_jw_t *w)
{
    ccgw_jw_init(w);
    if (tl_writer.buf) {
        w->buf = tl_writer.buf;
        w->cap = tl_writer.cap;
        w->buf[0] = '\0';
        tl_writer.buf = NULL;
        tl_writer.cap = 0;
    }
}

static void writer_give(ccgw_jw_t *w)
{
    if (w->error || !w->buf || w->cap > WRITER_KEEP || tl_writer.buf) {
        ccgw_jw_free(w);
        return;
    }
    if (!tl_writer.keyed) {
        pthread_once(&writer_once, writer_key_init);
        if (pthread_setspecific(writer_key, &tl_writer) != 0) {
            ccgw_jw_free(w);
            return;
        }
        tl_writer.keyed = true;
    }
    tl_writer.buf = w->buf;
    tl_writer.cap = w->cap;
    ccgw_jw_init(w);
}

static int push_payload(ccgw_device_t *d, ccgw_kind_t kind, const char *topic, ccgw_jw_t *w)
{
    if (w->error) {
        ccgw_jw_free(w);
        count(d, kind, CCGW_ENOMEM);
        return CCGW_ENOMEM;
    }
    ccgw_msg_t *m = ccgw_msg_new(kind, qos_for(dev_gw(d), kind), topic, w->buf, w->len, NULL, 0);
    writer_give(w);
    if (m)
        m->quota = d->inst->quota; /* the instance's share of the queue (bus.h) */
    int rc = ccgw_bus_push(dev_gw(d)->bus, m);
    count(d, kind, rc);
    return rc;
}

static int retain_payload(ccgw_device_t *d, ccgw_kind_t kind, const char *topic, ccgw_jw_t *w)
{
    if (w->error) {
        ccgw_jw_free(w);
        count(d, kind, CCGW_ENOMEM);
        return CCGW_ENOMEM;
    }
    int rc = ccgw_bus_retain(dev_gw(d)->bus, kind, qos_for(dev_gw(d), kind), topic, w->buf, w->len);
    ccgw_jw_free(w);
    count(d, kind, rc);
    return rc;
}

/* Validate names and nesting of a value array; log the first problem. */
static bool values_ok(ccgw_device_t *d, const char *what, const ccgw_value_t *v, size_t n, int depth)
{
    if (n && !v) {
        ccgw_log_tagged(CCGW_LOG_ERROR, d->inst->tag, NULL, 0, "%s for %s/%s: NULL values with n=%zu",
                        what, dev_class(d), dev_id(d), n);
        return false;
    }
    if (depth > 8) {
        ccgw_log_tagged(CCGW_LOG_ERROR, d->inst->tag, NULL, 0, "%s for %s/%s: nested deeper than 8",
                        what, dev_class(d), dev_id(d));
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!ccgw_valid_name(v[i].name, true)) {
            ccgw_log_tagged(CCGW_LOG_ERROR, d->inst->tag, NULL, 0,
                            "%s for %s/%s: bad value name '%s' (want [A-Za-z0-9_.-]+)", what,
                            dev_class(d), dev_id(d), v[i].name ? v[i].name : "(null)");
            return false;
        }
        if ((unsigned)v[i].type > CCGW_VAL_OBJECT) {
            ccgw_log_tagged(CCGW_LOG_ERROR, d->inst->tag, NULL, 0, "%s for %s/%s: '%s' has bad type %d",
                            what, dev_class(d), dev_id(d), v[i].name, (int)v[i].type);
            return false;
        }
        if (v[i].type == CCGW_VAL_OBJECT &&
            !values_ok(d, what, v[i].v.obj.items, v[i].v.obj.count, depth + 1))
            return false;
    }
    return true;
}

static void write_members(ccgw_jw_t *w, const ccgw_value_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ccgw_jw_key(w, v[i].name);
        ccgw_jw_value(w, &v[i]);
    }
}

/* Free the device's strings and the device itself. */
static void device_free_names(ccgw_device_t *d)
{
    free(d->extra);
    reason_free(d);
    dev_release(dev_gw(d)->registry, d);
}

static void restore_alarms(ccgw_device_t *d);
static void rules_feed(ccgw_device_t *d, const ccgw_value_t *v, size_t n);

/* ---- SDK: devices ---- */

ccgw_device_t *ccgw_device_add(ccgw_instance_t *inst, const char *class_name, const char *device_id,
                               void *user)
{
    if (!inst)
        return NULL;
    ccgw_gateway_t *gw = inst->gw;
    if (!ccgw_valid_class(class_name)) {
        ccgw_log_tagged(CCGW_LOG_ERROR, inst->tag, NULL, 0,
                        "device '%s': unknown class '%s' (ups, hvac, env, door, pbx, sms, fax, "
                        "incident, conference)",
                        device_id ? device_id : "(null)", class_name ? class_name : "(null)");
        return NULL;
    }
    if (!ccgw_valid_name(device_id, false) || strlen(device_id) > 64) {
        ccgw_log_tagged(CCGW_LOG_ERROR, inst->tag, NULL, 0,
                        "device id '%s' is not [a-z0-9_.-]{1,64}", device_id ? device_id : "(null)");
        return NULL;
    }
    size_t cl = strlen(class_name), il = strlen(device_id);
    ccgw_device_t *d = dev_alloc(gw->registry, cl + 1 + il);
    if (!d)
        return NULL;
    d->inst = inst;
    d->user = user;
    for (int i = 0; classes[i]; i++)
        if (strcmp(class_name, classes[i]) == 0)
            d->class_idx = (uint8_t)i;
    memcpy(d->key, class_name, cl);
    d->key[cl] = '/';
    memcpy(d->key + cl + 1, device_id, il + 1);
    d->id_off = (uint8_t)(cl + 1);
    d->reason = reason_starting;
    pthread_mutex_init(&d->lock, NULL);

    ccgw_registry_t *r = gw->registry;
    pthread_rwlock_wrlock(&r->lock);
    ccgw_device_t *other = find_locked(r, d->key);
    if (other) {
        pthread_rwlock_unlock(&r->lock);
        ccgw_log_tagged(CCGW_LOG_ERROR, inst->tag, NULL, 0,
                        "device %s already exists (declared by instance '%s')", d->key,
                        other->inst->cfg->id);
        pthread_mutex_destroy(&d->lock);
        goto fail;
    }
    size_t b = hash_key(d->key) & (r->n_buckets - 1);
    d->reg_next = r->buckets[b];
    r->buckets[b] = d;
    r->count++;
    if (r->count > r->n_buckets)
        grow_locked(r);
    pthread_rwlock_unlock(&r->lock);

    pthread_mutex_lock(&inst->lock);
    d->inst_next = inst->devices;
    inst->devices = d;
    inst->n_devices++;
    pthread_mutex_unlock(&inst->lock);

    /* first retained state: known, not reached yet */
    pthread_mutex_lock(&d->lock);
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    begin_envelope(&w, d, CCGW_KIND_STATE);
    ccgw_jw_key(&w, "online");
    ccgw_jw_bool(&w, false);
    ccgw_jw_key(&w, "reason");
    ccgw_jw_string(&w, d->reason);
    ccgw_jw_end_object(&w);
    char topic[512];
    dev_topic(d, "/state", topic, sizeof topic);
    retain_payload(d, CCGW_KIND_STATE, topic, &w);
    pthread_mutex_unlock(&d->lock);
    d->has_rules = ccgw_alarm_engine_wants(gw->alarm_engine, dev_class(d), dev_id(d));
    restore_alarms(d);
    return d;
fail:
    ccgw_log_tagged(CCGW_LOG_ERROR, inst->tag, NULL, 0, "device %s/%s not added",
                    class_name, device_id);
    device_free_names(d);
    return NULL;
}

int ccgw_device_add_commands(ccgw_device_t *d, const ccgw_command_spec_t *specs)
{
    if (!d || !specs)
        return CCGW_EINVAL;
    for (const ccgw_command_spec_t *s = specs; s->name; s++) {
        if (!ccgw_valid_name(s->name, false)) {
            ccgw_log_tagged(CCGW_LOG_ERROR, d->inst->tag, NULL, 0,
                            "device %s: command name '%s' is not [a-z0-9_.-]+", d->key, s->name);
            return CCGW_EINVAL;
        }
    }
    pthread_mutex_lock(&d->lock);
    int rc = CCGW_OK;
    if (!d->extra)
        d->extra = calloc(EXTRA_MAX, sizeof *d->extra);
    if (!d->extra)
        rc = CCGW_ENOMEM;
    else if (d->n_extra >= EXTRA_MAX)
        rc = CCGW_EFULL;
    else
        d->extra[d->n_extra++] = specs;
    pthread_mutex_unlock(&d->lock);
    return rc;
}

const char *ccgw_device_id(const ccgw_device_t *d) { return d ? dev_id(d) : NULL; }
const char *ccgw_device_class(const ccgw_device_t *d) { return d ? dev_class(d) : NULL; }
void *ccgw_device_user(const ccgw_device_t *d) { return d ? d->user : NULL; }
ccgw_instance_t *ccgw_device_instance(const ccgw_device_t *d) { return d ? d->inst : NULL; }

const ccgw_command_spec_t *ccgw_device_find_command(const ccgw_device_t *d, const char *name)
{
    ccgw_device_t *dd = (ccgw_device_t *)d;
    pthread_mutex_lock(&dd->lock);
    const ccgw_command_spec_t *found = NULL;
    for (size_t i = 0; i < d->n_extra && !found; i++)
        for (const ccgw_command_spec_t *s = d->extra[i]; s->name; s++)
            if (strcmp(s->name, name) == 0) {
                found = s;
                break;
            }
    pthread_mutex_unlock(&dd->lock);
    if (!found && d->inst->desc->commands)
        for (const ccgw_command_spec_t *s = d->inst->desc->commands; s->name; s++)
            if (strcmp(s->name, name) == 0)
                return s;
    return found;
}

/* Encode and publish the full retained state. Called with d->lock held. */
static int publish_state_locked(ccgw_device_t *d)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    begin_envelope(&w, d, CCGW_KIND_STATE);
    ccgw_jw_key(&w, "online");
    ccgw_jw_bool(&w, d->online);
    if (!d->online && d->reason) {
        ccgw_jw_key(&w, "reason");
        ccgw_jw_string(&w, d->reason);
    }
    for (size_t i = 0; i < d->n_attrs; i++) {
        ccgw_jw_key(&w, d->attrs[i].name);
        ccgw_jw_raw_value(&w, d->attrs[i].json, strlen(d->attrs[i].json));
    }
    ccgw_jw_end_object(&w);
    char topic[512];
    dev_topic(d, "/state", topic, sizeof topic);
    return retain_payload(d, CCGW_KIND_STATE, topic, &w);
}

static bool set_online_locked(ccgw_device_t *d, bool online, const char *reason);

int ccgw_device_set_online(ccgw_device_t *d, bool online, const char *reason)
{
    if (!d)
        return CCGW_EINVAL;
    pthread_mutex_lock(&d->lock);
    int rc = set_online_locked(d, online, reason) ? publish_state_locked(d) : CCGW_OK;
    pthread_mutex_unlock(&d->lock);
    return rc;
}

/* Check attribute names: valid, not envelope keys. */
static bool attrs_ok(ccgw_device_t *d, const ccgw_value_t *attrs, size_t n)
{
    if (!values_ok(d, "state", attrs, n, 0))
        return false;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; reserved_attrs[k]; k++)
            if (strcmp(attrs[i].name, reserved_attrs[k]) == 0) {
                ccgw_log_tagged(CCGW_LOG_ERROR, d->inst->tag, NULL, 0,
                                "state for %s: '%s' is an envelope key, not an attribute", d->key,
                                attrs[i].name);
                return false;
            }
    return true;
}

/* Merge attributes; true when something changed. Called with d->lock held. */
static bool merge_attrs_locked(ccgw_device_t *d, const ccgw_value_t *attrs, size_t n)
{
    bool changed = false;
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    for (size_t i = 0; i < n; i++) {
        ccgw_jw_reset(&w);
        ccgw_jw_value(&w, &attrs[i]);
        if (w.error)
            break;
        size_t j = 0;
        while (j < d->n_attrs && strcmp(d->attrs[j].name, attrs[i].name) != 0)
            j++;
        if (j < d->n_attrs) {
            if (strcmp(d->attrs[j].json, w.buf) == 0)
                continue;
            char *nj = strdup(w.buf);
            if (!nj)
                break;
            free(d->attrs[j].json);
            d->attrs[j].json = nj;
        } else {
            if (d->n_attrs == d->cap_attrs) {
                size_t cap = d->cap_attrs ? d->cap_attrs * 2 : 8;
                attr_t *na = realloc(d->attrs, cap * sizeof *na);
                if (!na)
                    break;
                d->attrs = na;
                d->cap_attrs = (uint32_t)cap;
            }
            char *nn = strdup(attrs[i].name), *nj = strdup(w.buf);
            if (!nn || !nj) {
                free(nn);
                free(nj);
                break;
            }
            d->attrs[d->n_attrs].name = nn;
            d->attrs[d->n_attrs].json = nj;
            d->n_attrs++;
        }
        changed = true;
    }
    ccgw_jw_free(&w);
    return changed;
}

/* Set reachability; true when it changed. Called with d->lock held. */
static bool set_online_locked(ccgw_device_t *d, bool online, const char *reason)
{
    bool same_reason = (!reason && !d->reason) || (reason && d->reason && !strcmp(reason, d->reason));
    if (d->online == online && (online || same_reason))
        return false;
    d->online = online;
    reason_free(d);
    d->reason = online ? NULL : dup_str(reason ? reason : "unreachable");
    return true;
}

int ccgw_device_update_state(ccgw_device_t *d, const ccgw_value_t *attrs, size_t n)
{
    if (!d || !attrs_ok(d, attrs, n))
        return CCGW_EINVAL;
    pthread_mutex_lock(&d->lock);
    int rc = merge_attrs_locked(d, attrs, n) ? publish_state_locked(d) : CCGW_OK;
    pthread_mutex_unlock(&d->lock);
    rules_feed(d, attrs, n);
    return rc;
}

int ccgw_device_set_state(ccgw_device_t *d, bool online, const char *reason, const ccgw_value_t *attrs,
                          size_t n)
{
    if (!d || !attrs_ok(d, attrs, n))
        return CCGW_EINVAL;
    pthread_mutex_lock(&d->lock);
    bool changed = merge_attrs_locked(d, attrs, n);
    changed = set_online_locked(d, online, reason) || changed;
    int rc = changed ? publish_state_locked(d) : CCGW_OK;
    pthread_mutex_unlock(&d->lock);
    rules_feed(d, attrs, n);
    return rc;
}

int ccgw_device_telemetry(ccgw_device_t *d, const ccgw_value_t *v, size_t n)
{
    if (!d || !values_ok(d, "telemetry", v, n, 0))
        return CCGW_EINVAL;
    char topic[512];
    dev_topic(d, "/telemetry", topic, sizeof topic);
    ccgw_jw_t w;
    writer_take(&w);
    pthread_mutex_lock(&d->lock);
    begin_envelope(&w, d, CCGW_KIND_TELEMETRY);
    ccgw_jw_key(&w, "values");
    ccgw_jw_begin_object(&w);
    write_members(&w, v, n);
    ccgw_jw_end_object(&w);
    ccgw_jw_key(&w, "units");
    ccgw_jw_begin_object(&w);
    for (size_t i = 0; i < n; i++) {
        if (v[i].unit && *v[i].unit) {
            ccgw_jw_key(&w, v[i].name);
            ccgw_jw_string(&w, v[i].unit);
        }
    }
    ccgw_jw_end_object(&w);
    ccgw_jw_end_object(&w);
    int rc = push_payload(d, CCGW_KIND_TELEMETRY, topic, &w);
    pthread_mutex_unlock(&d->lock);
    rules_feed(d, v, n);
    return rc;
}

int ccgw_device_event(ccgw_device_t *d, const char *type, const ccgw_value_t *data, size_t n)
{
    if (!d || !ccgw_valid_name(type, false) || strchr(type, '-')) {
        if (d)
            ccgw_log_tagged(CCGW_LOG_ERROR, d->inst->tag, NULL, 0,
                            "event for %s: type '%s' is not [a-z0-9_.]+", d->key, type ? type : "(null)");
        return CCGW_EINVAL;
    }
    if (!values_ok(d, "event", data, n, 0))
        return CCGW_EINVAL;
    char topic[512];
    snprintf(topic, sizeof topic, "%s/%s/event/%s", dev_gw(d)->site_base, d->key, type);
    ccgw_jw_t w;
    writer_take(&w);
    pthread_mutex_lock(&d->lock);
    begin_envelope(&w, d, CCGW_KIND_EVENT);
    ccgw_jw_key(&w, "type");
    ccgw_jw_string(&w, type);
    ccgw_jw_key(&w, "data");
    ccgw_jw_begin_object(&w);
    write_members(&w, data, n);
    ccgw_jw_end_object(&w);
    ccgw_jw_end_object(&w);
    int rc = push_payload(d, CCGW_KIND_EVENT, topic, &w);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

static const char *sev_name(ccgw_severity_t s)
{
    switch (s) {
    case CCGW_SEV_INFO: return "info";
    case CCGW_SEV_MINOR: return "minor";
    case CCGW_SEV_MAJOR: return "major";
    case CCGW_SEV_CRITICAL: return "critical";
    }
    return "major";
}

static void alarm_free_members(alarm_t *a)
{
    free(a->code);
    free(a->message);
    free(a->data_json);
    free(a->acked_by);
    free(a->ack_note);
}

static alarm_t *alarm_find_locked(ccgw_device_t *d, const char *code, size_t *idx)
{
    for (size_t i = 0; i < d->n_alarms; i++)
        if (strcmp(d->alarms[i].code, code) == 0) {
            if (idx)
                *idx = i;
            return &d->alarms[i];
        }
    return NULL;
}

/* A new zeroed slot (code copied), or NULL. Called with d->lock held. */
static alarm_t *alarm_add_locked(ccgw_device_t *d, const char *code)
{
    if (d->n_alarms == d->cap_alarms) {
        size_t cap = d->cap_alarms ? d->cap_alarms * 2 : 4;
        alarm_t *na = realloc(d->alarms, cap * sizeof *na);
        if (!na)
            return NULL;
        d->alarms = na;
        d->cap_alarms = (uint32_t)cap;
    }
    alarm_t *a = &d->alarms[d->n_alarms];
    memset(a, 0, sizeof *a);
    a->code = strdup(code);
    if (!a->code)
        return NULL;
    d->n_alarms++;
    return a;
}

static void alarm_topic(const ccgw_device_t *d, const char *code, char *topic, size_t len)
{
    snprintf(topic, len, "%s/%s/alarm/%s", dev_gw(d)->site_base, d->key, code);
}

/* The retained alarm payload. Called with d->lock held. */
static int alarm_publish_locked(ccgw_device_t *d, const alarm_t *a)
{
    char topic[512];
    alarm_topic(d, a->code, topic, sizeof topic);
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    begin_envelope(&w, d, CCGW_KIND_ALARM);
    ccgw_jw_key(&w, "code");
    ccgw_jw_string(&w, a->code);
    ccgw_jw_key(&w, "severity");
    ccgw_jw_string(&w, a->severity);
    ccgw_jw_key(&w, "state");
    ccgw_jw_string(&w, a->acked ? "acknowledged" : "raised");
    ccgw_jw_key(&w, "message");
    ccgw_jw_string(&w, a->message ? a->message : a->code);
    ccgw_jw_key(&w, "raised_at");
    ccgw_jw_string(&w, a->raised_at);
    if (a->acked) {
        ccgw_jw_key(&w, "acked_by");
        ccgw_jw_string(&w, a->acked_by ? a->acked_by : "");
        ccgw_jw_key(&w, "acked_at");
        ccgw_jw_string(&w, a->acked_at);
        if (a->ack_note) {
            ccgw_jw_key(&w, "note");
            ccgw_jw_string(&w, a->ack_note);
        }
    }
    if (a->rule) {
        ccgw_jw_key(&w, "rule");
        ccgw_jw_string(&w, a->rule->code);
    }
    ccgw_jw_key(&w, "data");
    const char *dj = a->data_json ? a->data_json : "{}";
    ccgw_jw_raw_value(&w, dj, strlen(dj));
    ccgw_jw_end_object(&w);
    return retain_payload(d, CCGW_KIND_ALARM, topic, &w);
}

/* Persist the alarm. Called with d->lock held (device -> store order). */
static void alarm_persist_locked(ccgw_device_t *d, const alarm_t *a)
{
    ccgw_alarm_record_t r = {
        .class_name = (char *)dev_class(d), /* a record field; read only here */
        .device = (char *)dev_id(d), /* a record field; read only here */
        .code = a->code,
        .instance = d->inst->cfg->id,
        .severity = (char *)a->severity,
        .message = a->message,
        .acked = a->acked,
        .acked_by = a->acked_by,
        .ack_note = a->ack_note,
        .rule = a->rule ? a->rule->code : NULL,
        .data_json = a->data_json,
    };
    memcpy(r.raised_at, a->raised_at, sizeof r.raised_at);
    memcpy(r.acked_at, a->acked_at, sizeof r.acked_at);
    ccgw_alarm_store_put(dev_gw(d)->alarm_store, &r);
}

/* An `alarm.*` event; `extra` writes more data members. Called with d->lock held. */
static int alarm_event_locked(ccgw_device_t *d, const char *type, const alarm_t *a, const char *message,
                              void (*extra)(ccgw_jw_t *w, const void *ctx), const void *ctx)
{
    char topic[512];
    snprintf(topic, sizeof topic, "%s/%s/event/%s", dev_gw(d)->site_base, d->key, type);
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    begin_envelope(&w, d, CCGW_KIND_EVENT);
    ccgw_jw_key(&w, "type");
    ccgw_jw_string(&w, type);
    ccgw_jw_key(&w, "data");
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "code");
    ccgw_jw_string(&w, a->code);
    ccgw_jw_key(&w, "severity");
    ccgw_jw_string(&w, a->severity);
    ccgw_jw_key(&w, "message");
    ccgw_jw_string(&w, message ? message : a->message ? a->message : a->code);
    ccgw_jw_key(&w, "raised_at");
    ccgw_jw_string(&w, a->raised_at);
    if (a->rule) {
        ccgw_jw_key(&w, "rule");
        ccgw_jw_string(&w, a->rule->code);
    }
    if (extra)
        extra(&w, ctx);
    ccgw_jw_end_object(&w);
    ccgw_jw_end_object(&w);
    return push_payload(d, CCGW_KIND_EVENT, topic, &w);
}

/* Raise or update. data_json is taken over (freed on failure). Called with d->lock held. */
static int alarm_raise_locked(ccgw_device_t *d, const char *code, const char *severity, const char *message,
                              char *data_json, const ccgw_alarm_rule_t *rule)
{
    alarm_t *a = alarm_find_locked(d, code, NULL);
    bool is_new = a == NULL;
    if (is_new) {
        a = alarm_add_locked(d, code);
        if (!a) {
            free(data_json);
            return CCGW_ENOMEM;
        }
        ccgw_ts_now(a->raised_at);
    }
    snprintf(a->severity, sizeof a->severity, "%s", severity);
    free(a->message);
    a->message = dup_str(message ? message : code);
    free(a->data_json);
    a->data_json = data_json;
    if (rule || is_new)
        a->rule = rule;
    int rc = alarm_publish_locked(d, a);
    if (is_new)
        alarm_event_locked(d, "alarm.raised", a, NULL, NULL, NULL);
    alarm_persist_locked(d, a);
    return rc;
}

/* Clear slot i: event, then the empty retained payload. Called with d->lock held. */
static int alarm_clear_locked(ccgw_device_t *d, size_t i, const char *message)
{
    alarm_t a = d->alarms[i];
    d->alarms[i] = d->alarms[--d->n_alarms];
    alarm_event_locked(d, "alarm.cleared", &a, message, NULL, NULL);
    char topic[512];
    alarm_topic(d, a.code, topic, sizeof topic);
    int rc = ccgw_bus_retain(dev_gw(d)->bus, CCGW_KIND_ALARM, qos_for(dev_gw(d), CCGW_KIND_ALARM), topic, "", 0);
    ccgw_alarm_store_remove(dev_gw(d)->alarm_store, dev_class(d), dev_id(d), a.code);
    alarm_free_members(&a);
    return rc;
}

int ccgw_alarm_raise(ccgw_device_t *d, const char *code, ccgw_severity_t sev, const char *message,
                     const ccgw_value_t *data, size_t n)
{
    if (!d || !ccgw_valid_name(code, false)) {
        if (d)
            ccgw_log_tagged(CCGW_LOG_ERROR, d->inst->tag, NULL, 0,
                            "alarm for %s: code '%s' is not [a-z0-9_.-]+", d->key, code ? code : "(null)");
        return CCGW_EINVAL;
    }
    if ((unsigned)sev > CCGW_SEV_CRITICAL || !values_ok(d, "alarm", data, n, 0))
        return CCGW_EINVAL;
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    write_members(&w, data, n);
    ccgw_jw_end_object(&w);
    if (w.error) {
        ccgw_jw_free(&w);
        return CCGW_ENOMEM;
    }
    char *dj = ccgw_jw_take(&w, NULL);
    if (!dj)
        return CCGW_ENOMEM;
    pthread_mutex_lock(&d->lock);
    int rc = alarm_raise_locked(d, code, sev_name(sev), message, dj, NULL);
    pthread_mutex_unlock(&d->lock);
    return rc;
}

int ccgw_alarm_clear(ccgw_device_t *d, const char *code, const char *message)
{
    if (!d || !code)
        return CCGW_EINVAL;
    pthread_mutex_lock(&d->lock);
    size_t i;
    int rc = alarm_find_locked(d, code, &i) ? alarm_clear_locked(d, i, message) : CCGW_ENOTFOUND;
    pthread_mutex_unlock(&d->lock);
    return rc;
}

typedef struct ack_info {
    const char *by, *note;
} ack_info_t;

static void ack_members(ccgw_jw_t *w, const void *ctx)
{
    const ack_info_t *k = ctx;
    ccgw_jw_key(w, "by");
    ccgw_jw_string(w, k->by);
    ccgw_jw_key(w, "note");
    if (k->note)
        ccgw_jw_string(w, k->note);
    else
        ccgw_jw_null(w);
}

int ccgw_device_alarm_ack(ccgw_device_t *d, const char *code, const char *by, const char *note,
                          char acked_at[CCGW_TS_LEN], char *why, size_t whylen)
{
    if (!d || !code || !by || !*by) {
        snprintf(why, whylen, "'code' and 'by' are required");
        return CCGW_EINVAL;
    }
    pthread_mutex_lock(&d->lock);
    alarm_t *a = alarm_find_locked(d, code, NULL);
    int rc = CCGW_OK;
    if (!a) {
        snprintf(why, whylen, "no active alarm '%.100s' on %s", code, d->key);
        rc = CCGW_ENOTFOUND;
    } else if (a->acked) {
        snprintf(why, whylen, "alarm '%.100s' on %s was already acknowledged by %.100s at %s", code, d->key,
                 a->acked_by ? a->acked_by : "?", a->acked_at);
        rc = CCGW_ESTATE;
    } else {
        char *nb = strdup(by), *nn = dup_str(note);
        if (!nb || (note && !nn)) {
            free(nb);
            free(nn);
            snprintf(why, whylen, "out of memory");
            rc = CCGW_ENOMEM;
        } else {
            a->acked = true;
            a->acked_by = nb;
            a->ack_note = nn;
            ccgw_ts_now(a->acked_at);
            memcpy(acked_at, a->acked_at, CCGW_TS_LEN);
            alarm_publish_locked(d, a);
            ack_info_t k = {by, note};
            alarm_event_locked(d, "alarm.acknowledged", a, NULL, ack_members, &k);
            alarm_persist_locked(d, a);
        }
    }
    pthread_mutex_unlock(&d->lock);
    return rc;
}

/* ---- alarm rules ---- */

static void fmt_num(char *buf, size_t len, double v) { snprintf(buf, len, "%.10g", v); }

/* Apply one engine decision to its device. Called WITHOUT d->lock. */
static void apply_decision(ccgw_device_t *d, const ccgw_alarm_decision_t *x)
{
    const ccgw_alarm_rule_t *r = x->rule;
    bool is_bool = ccgw_rule_is_bool(r->type);
    if (x->action == CCGW_ALARM_SUPPRESSED) {
        CLOG_INFO("alarms", "rule %s on %s: raise suppressed by min_interval_s %g (%llu suppressed since the last raise)",
                  r->code, d->key, r->min_interval_s, (unsigned long long)x->suppressed);
        return;
    }
    char v[40], t[40];
    fmt_num(v, sizeof v, x->value);
    fmt_num(t, sizeof t, r->threshold);
    if (x->action == CCGW_ALARM_CLEAR) {
        char msg[300];
        if (is_bool)
            snprintf(msg, sizeof msg, "%s is %s again", r->value, x->value != 0 ? "true" : "false");
        else
            snprintf(msg, sizeof msg, "%s %s back within limits (%s %s, deadband %g)", r->value, v,
                     r->type == CCGW_RULE_HIGH || r->type == CCGW_RULE_HIGH_HIGH ? "<" : ">", t, r->deadband);
        pthread_mutex_lock(&d->lock);
        size_t i;
        alarm_t *a = alarm_find_locked(d, r->code, &i);
        bool mine = a && a->rule == r;
        if (mine)
            alarm_clear_locked(d, i, msg);
        pthread_mutex_unlock(&d->lock);
        if (mine)
            CLOG_INFO("alarms", "rule %s on %s: cleared (%s)", r->code, d->key, msg);
        return;
    }
    char msg[600];
    if (r->message)
        snprintf(msg, sizeof msg, "%s", r->message);
    else if (is_bool)
        snprintf(msg, sizeof msg, "%s is %s", r->value, x->value != 0 ? "true" : "false");
    else
        snprintf(msg, sizeof msg, "%s %s %s %s", r->value, v,
                 r->type == CCGW_RULE_HIGH || r->type == CCGW_RULE_HIGH_HIGH ? ">=" : "<=", t);
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    ccgw_jw_begin_object(&w);
    ccgw_jw_key(&w, "point");
    ccgw_jw_string(&w, r->value);
    ccgw_jw_key(&w, "value");
    if (is_bool)
        ccgw_jw_bool(&w, x->value != 0);
    else
        ccgw_jw_double(&w, x->value);
    ccgw_jw_key(&w, "type");
    ccgw_jw_string(&w, ccgw_rule_type_name(r->type));
    if (!is_bool) {
        ccgw_jw_key(&w, "threshold");
        ccgw_jw_double(&w, r->threshold);
        ccgw_jw_key(&w, "deadband");
        ccgw_jw_double(&w, r->deadband);
    }
    ccgw_jw_key(&w, "suppressed");
    ccgw_jw_uint(&w, x->suppressed);
    ccgw_jw_end_object(&w);
    char *dj = w.error ? NULL : ccgw_jw_take(&w, NULL);
    ccgw_jw_free(&w);
    if (!dj)
        return;
    pthread_mutex_lock(&d->lock);
    alarm_t *a = alarm_find_locked(d, r->code, NULL);
    if (a && a->rule != r) {
        pthread_mutex_unlock(&d->lock);
        free(dj);
        CLOG_WARN("alarms", "rule %s on %s: alarm %s is already active (raised by %s); not raised again", r->code,
                  d->key, r->code, a->rule ? "another rule" : "the plugin");
        return;
    }
    alarm_raise_locked(d, r->code, ccgw_rule_severity_name(r->severity), msg, dj, r);
    pthread_mutex_unlock(&d->lock);
    CLOG_INFO("alarms", "rule %s on %s: raised (%s)%s", r->code, d->key, msg,
              x->suppressed ? " after suppressed raises" : "");
}

/* The rule hook: after an emit, with no device lock held. */
static void rules_feed(ccgw_device_t *d, const ccgw_value_t *v, size_t n)
{
    if (!d->has_rules || !n)
        return;
    ccgw_alarm_decision_t *out = NULL;
    size_t k = ccgw_alarm_engine_feed(dev_gw(d)->alarm_engine, dev_class(d), dev_id(d), v, n, ccgw_now_ms(), &out);
    for (size_t i = 0; i < k; i++)
        apply_decision(d, &out[i]);
    free(out);
}

static int apply_on_device(ccgw_device_t *d, void *ctx)
{
    apply_decision(d, ctx);
    return CCGW_OK;
}

void ccgw_alarms_tick(ccgw_gateway_t *gw)
{
    ccgw_alarm_decision_t *out = NULL;
    size_t k = ccgw_alarm_engine_tick(gw->alarm_engine, ccgw_now_ms(), &out);
    for (size_t i = 0; i < k; i++)
        ccgw_registry_with(gw->registry, out[i].class_name, out[i].device, apply_on_device, &out[i]);
    free(out);
}

/* Re-publish the alarms persisted by an earlier run for this device. */
static void restore_alarms(ccgw_device_t *d)
{
    ccgw_alarm_record_t *recs = NULL;
    size_t n = ccgw_alarm_store_take(dev_gw(d)->alarm_store, dev_class(d), dev_id(d), &recs);
    for (size_t i = 0; i < n; i++) {
        ccgw_alarm_record_t *r = &recs[i];
        const ccgw_alarm_rule_t *rule = NULL;
        bool gone = false;
        if (r->rule) {
            rule = ccgw_alarm_engine_restore(dev_gw(d)->alarm_engine, r->rule, dev_class(d), dev_id(d));
            gone = rule == NULL;
        }
        pthread_mutex_lock(&d->lock);
        alarm_t *a = alarm_find_locked(d, r->code, NULL) ? NULL : alarm_add_locked(d, r->code);
        if (a) {
            snprintf(a->severity, sizeof a->severity, "%s", r->severity ? r->severity : "major");
            a->message = dup_str(r->message ? r->message : r->code);
            memcpy(a->raised_at, r->raised_at, CCGW_TS_LEN);
            a->data_json = dup_str(r->data_json ? r->data_json : "{}");
            a->acked = r->acked;
            a->acked_by = dup_str(r->acked_by);
            a->ack_note = dup_str(r->ack_note);
            memcpy(a->acked_at, r->acked_at, CCGW_TS_LEN);
            a->rule = rule;
            alarm_publish_locked(d, a);
            CLOG_INFO("alarms", "restored alarm %s on %s (raised at %s%s)", r->code, d->key, r->raised_at,
                      r->acked ? ", acknowledged" : "");
            if (gone) {
                size_t idx;
                if (alarm_find_locked(d, r->code, &idx))
                    alarm_clear_locked(d, idx, "the rule that raised it is no longer configured");
            }
        }
        pthread_mutex_unlock(&d->lock);
        ccgw_alarm_record_clear(r);
    }
    free(recs);
}

void ccgw_alarms_expire_restored(ccgw_gateway_t *gw)
{
    ccgw_alarm_record_t *recs = NULL;
    size_t n = ccgw_alarm_store_expire(gw->alarm_store, &recs);
    for (size_t i = 0; i < n; i++) {
        ccgw_alarm_record_t *r = &recs[i];
        char topic[512], ts[CCGW_TS_LEN];
        ccgw_ts_now(ts);
        ccgw_jw_t w;
        ccgw_jw_init(&w);
        ccgw_jw_begin_object(&w);
        ccgw_jw_key(&w, "ts");
        ccgw_jw_string(&w, ts);
        ccgw_jw_key(&w, "site");
        ccgw_jw_string(&w, gw->cfg->site);
        ccgw_jw_key(&w, "class");
        ccgw_jw_string(&w, r->class_name);
        ccgw_jw_key(&w, "device");
        ccgw_jw_string(&w, r->device);
        ccgw_jw_key(&w, "boot");
        ccgw_jw_string(&w, gw->boot);
        ccgw_jw_key(&w, "type");
        ccgw_jw_string(&w, "alarm.cleared");
        ccgw_jw_key(&w, "data");
        ccgw_jw_begin_object(&w);
        ccgw_jw_key(&w, "code");
        ccgw_jw_string(&w, r->code);
        ccgw_jw_key(&w, "severity");
        ccgw_jw_string(&w, r->severity ? r->severity : "major");
        ccgw_jw_key(&w, "message");
        ccgw_jw_string(&w, "the device was not declared again after a restart");
        ccgw_jw_key(&w, "raised_at");
        ccgw_jw_string(&w, r->raised_at);
        ccgw_jw_end_object(&w);
        ccgw_jw_end_object(&w);
        snprintf(topic, sizeof topic, "%s/%s/%s/event/alarm.cleared", gw->site_base, r->class_name, r->device);
        ccgw_msg_t *m = w.error ? NULL
                                : ccgw_msg_new(CCGW_KIND_EVENT, gw->cfg->mqtt.qos_event, topic, w.buf, w.len, NULL, 0);
        if (m)
            ccgw_bus_push(gw->bus, m);
        ccgw_jw_free(&w);
        snprintf(topic, sizeof topic, "%s/%s/%s/alarm/%s", gw->site_base, r->class_name, r->device, r->code);
        ccgw_bus_retain(gw->bus, CCGW_KIND_ALARM, gw->cfg->mqtt.qos_alarm, topic, "", 0);
        CLOG_INFO("alarms", "restored alarm %s on %s/%s cleared: the device was not declared again", r->code,
                  r->class_name, r->device);
        ccgw_alarm_record_clear(r);
    }
    free(recs);
}

/* ---- instance-wide ---- */

void ccgw_devices_set_all_offline(ccgw_instance_t *inst, const char *reason)
{
    pthread_mutex_lock(&inst->lock);
    ccgw_device_t *list = inst->devices;
    pthread_mutex_unlock(&inst->lock);
    for (ccgw_device_t *d = list; d; d = d->inst_next) {
        pthread_mutex_lock(&d->lock);
        bool need = d->online || !d->reason || strcmp(d->reason, reason) != 0;
        if (need) {
            d->online = false;
            reason_free(d);
            d->reason = strdup(reason);
            publish_state_locked(d);
        }
        pthread_mutex_unlock(&d->lock);
    }
}

static void device_free(ccgw_device_t *d)
{
    for (size_t i = 0; i < d->n_attrs; i++) {
        free(d->attrs[i].name);
        free(d->attrs[i].json);
    }
    free(d->attrs);
    for (size_t i = 0; i < d->n_alarms; i++)
        alarm_free_members(&d->alarms[i]);
    free(d->alarms);
    pthread_mutex_destroy(&d->lock);
    device_free_names(d);
}

void ccgw_devices_remove_all(ccgw_instance_t *inst)
{
    ccgw_registry_t *r = inst->gw->registry;
    pthread_mutex_lock(&inst->lock);
    ccgw_device_t *list = inst->devices;
    inst->devices = NULL;
    inst->n_devices = 0;
    pthread_mutex_unlock(&inst->lock);
    pthread_rwlock_wrlock(&r->lock);
    for (ccgw_device_t *d = list; d; d = d->inst_next) {
        ccgw_device_t **pp = &r->buckets[hash_key(d->key) & (r->n_buckets - 1)];
        while (*pp && *pp != d)
            pp = &(*pp)->reg_next;
        if (*pp) {
            *pp = d->reg_next;
            r->count--;
        }
    }
    pthread_rwlock_unlock(&r->lock);
    while (list) {
        ccgw_device_t *n = list->inst_next;
        device_free(list);
        list = n;
    }
}

char *ccgw_device_encode_reply(ccgw_gateway_t *gw, ccgw_device_t *d, const char *class_name,
                               const char *device_id, const char *command, const char *error_code,
                               const char *error_message, const ccgw_value_t *data, size_t n,
                               size_t *len)
{
    ccgw_jw_t w;
    ccgw_jw_init(&w);
    if (d) {
        pthread_mutex_lock(&d->lock);
        begin_envelope(&w, d, CCGW_KIND_REPLY);
        pthread_mutex_unlock(&d->lock);
    } else {
        char ts[CCGW_TS_LEN];
        ccgw_ts_now(ts);
        ccgw_jw_begin_object(&w);
        ccgw_jw_key(&w, "ts");
        ccgw_jw_string(&w, ts);
        ccgw_jw_key(&w, "site");
        ccgw_jw_string(&w, gw->cfg->site);
        ccgw_jw_key(&w, "class");
        ccgw_jw_string(&w, class_name ? class_name : "");
        ccgw_jw_key(&w, "device");
        ccgw_jw_string(&w, device_id ? device_id : "");
        ccgw_jw_key(&w, "boot");
        ccgw_jw_string(&w, gw->boot);
    }
    ccgw_jw_key(&w, "command");
    ccgw_jw_string(&w, command ? command : "");
    ccgw_jw_key(&w, "ok");
    ccgw_jw_bool(&w, error_code == NULL);
    if (error_code) {
        ccgw_jw_key(&w, "error");
        ccgw_jw_begin_object(&w);
        ccgw_jw_key(&w, "code");
        ccgw_jw_string(&w, error_code);
        ccgw_jw_key(&w, "message");
        ccgw_jw_string(&w, error_message ? error_message : error_code);
        ccgw_jw_end_object(&w);
    } else {
        ccgw_jw_key(&w, "data");
        ccgw_jw_begin_object(&w);
        for (size_t i = 0; data && i < n; i++) {
            ccgw_jw_key(&w, data[i].name ? data[i].name : "");
            ccgw_jw_value(&w, &data[i]);
        }
        ccgw_jw_end_object(&w);
    }
    ccgw_jw_end_object(&w);
    return ccgw_jw_take(&w, len);
}
