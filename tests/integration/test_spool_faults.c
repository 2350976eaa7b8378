/*
 * spool_faults: fault injection against the real daemon, the loadgen plugin
 * and a real mosquitto (with persistence, so the test's subscriber keeps its
 * session and queued QoS 1 messages while the broker is away):
 *  a) broker stopped for 10 s while loadgen emits 2,000 events/s: the QoS 1
 *     subscriber sees every seq of every device, first occurrences in order
 *     (duplicates allowed);
 *  b) kill -9 of ccgw under load (the broker away for the last second, so
 *     that accepted events are waiting), restart on the same data_dir: every
 *     event accepted before the kill (the spool files as the kill left them,
 *     plus what the subscriber already had) is delivered;
 *  c) the spool truncated and bit-flipped between runs: ccgw starts within
 *     5 s, reports the damage, delivers every good record and none of the
 *     damaged ones;
 *  d) a tiny spool (64 KiB) with the broker away: events are never dropped
 *     (seq without a gap, emitters held back), the gateway alarm spool_full
 *     is raised and cleared, telemetry drops are counted in the log;
 *  e) QoS 0 events as fast as loadgen goes, twice on the same data_dir: each
 *     run delivers exactly what it emitted (per device every seq once, no
 *     duplicate, no gap), and nothing of the first run is sent again by the
 *     second (a QoS 0 record counts as delivered once handed to the broker).
 * The counts each test asserts are printed. CCGW_IT_LONG=1 makes (a) and (b)
 * run longer (ctest label `long`: integration.spool_faults_long).
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mosquitto.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_DEV 16
#define MAX_BOOTS 4
#define MAX_SEQ 400000

static bool g_long;
static const char *g_mqtt_extra = ""; /* more lines in the gateway's mqtt section */

/* ---- a broker with persistence ---------------------------------------------- */

typedef struct pbroker {
    h_env *env;
    h_proc *proc;
    int port;
    char conf[PATH_MAX];
} pbroker;

static int pb_spawn(pbroker *b)
{
    char dir[PATH_MAX], text[PATH_MAX + 1024];
    h_env_path(b->env, "mosq-db/", dir, sizeof dir);
    mkdir(dir, 0755);
    snprintf(text, sizeof text,
             "listener %d 127.0.0.1\n"
             "allow_anonymous true\n"
             "persistence true\n"
             "persistence_location %s\n"
             "autosave_interval 3600\n"
             "set_tcp_nodelay true\n"
             "max_queued_messages 10000000\n"
             "max_queued_bytes 0\n"
             "max_inflight_messages 1000\n"
             "log_dest stderr\n"
             "%s",
             b->port, dir, geteuid() == 0 ? "user root\n" : "");
    if (h_write_file(b->conf, text) != 0)
        return -1;
    const char *argv[] = {MOSQUITTO_BIN, "-c", b->conf, NULL};
    b->proc = h_spawn(b->env, "mosquitto", argv);
    if (!b->proc)
        return -1;
    if (h_wait_port(b->port, b->proc, h_scaled(5000)))
        return 0;
    h_proc_stop(b->proc, 1000);
    b->proc = NULL;
    return -1;
}

static pbroker *pb_start(h_env *env)
{
    pbroker *b = calloc(1, sizeof *b);
    b->env = env;
    h_env_path(env, "mosquitto.conf", b->conf, sizeof b->conf);
    for (int i = 0; i < 5; i++) {
        b->port = h_free_port();
        if (pb_spawn(b) == 0)
            return b;
    }
    free(b);
    return NULL;
}

/* SIGTERM: the broker saves its sessions and queues */
static void pb_stop(pbroker *b)
{
    if (b && b->proc) {
        h_proc_stop(b->proc, 5000);
        b->proc = NULL;
    }
}

static int pb_restart(pbroker *b)
{
    for (int i = 0; i < 20; i++) {
        if (pb_spawn(b) == 0)
            return 0;
        h_sleep_ms(200);
    }
    return -1;
}

/* ---- a subscriber with a persistent session ---------------------------------- */

typedef struct dev_track {
    uint8_t *seen;
    uint32_t max;       /* highest seq seen */
    uint32_t distinct;
    uint32_t gaps;      /* a first occurrence beyond max + 1 */
    uint64_t dups;
} dev_track;

typedef struct boot_track {
    char boot[17];
    dev_track dev[MAX_DEV + 1];
} boot_track;

typedef struct sub {
    struct mosquitto *m;
    pthread_mutex_t mu;
    boot_track boots[MAX_BOOTS];
    int n_boots;
    uint64_t events, telemetry, bad;
    int alarm_raised, alarm_cleared;
    bool alarm_cleared_after_raise;
    char finished[256]; /* loadgen's last "finished: ..." reason */
    bool connected;
} sub;

static boot_track *boot_get(sub *s, const char *boot)
{
    for (int i = 0; i < s->n_boots; i++)
        if (!strcmp(s->boots[i].boot, boot))
            return &s->boots[i];
    if (s->n_boots == MAX_BOOTS)
        return NULL;
    boot_track *b = &s->boots[s->n_boots++];
    snprintf(b->boot, sizeof b->boot, "%s", boot);
    return b;
}

static void on_msg(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    sub *s = obj;
    pthread_mutex_lock(&s->mu);
    if (strstr(msg->topic, "/alarm/spool_full")) {
        if (msg->payloadlen == 0) {
            s->alarm_cleared++;
            if (s->alarm_raised)
                s->alarm_cleared_after_raise = true;
        } else if (strstr((const char *)msg->payload, "\"raised\"")) {
            s->alarm_raised++;
        }
        pthread_mutex_unlock(&s->mu);
        return;
    }
    json_t *j = msg->payloadlen > 0 ? json_loadb(msg->payload, (size_t)msg->payloadlen, 0, NULL) : NULL;
    if (strstr(msg->topic, "/instance/")) {
        const char *r = j ? json_string_value(json_object_get(j, "reason")) : NULL;
        if (r && !strncmp(r, "finished:", 9))
            snprintf(s->finished, sizeof s->finished, "%s", r);
        json_decref(j);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    if (strstr(msg->topic, "/telemetry")) {
        s->telemetry++;
        json_decref(j);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    const char *dev = j ? json_string_value(json_object_get(j, "device")) : NULL;
    const char *boot = j ? json_string_value(json_object_get(j, "boot")) : NULL;
    json_int_t seq = j ? json_integer_value(json_object_get(j, "seq")) : 0;
    int d = 0;
    boot_track *b = boot ? boot_get(s, boot) : NULL;
    if (!b || !dev || sscanf(dev, "lg-%d", &d) != 1 || d < 1 || d > MAX_DEV || seq < 1 || seq >= MAX_SEQ) {
        s->bad++;
    } else {
        dev_track *t = &b->dev[d];
        if (!t->seen)
            t->seen = calloc(MAX_SEQ, 1);
        s->events++;
        if (t->seen[seq]) {
            t->dups++;
        } else {
            t->seen[seq] = 1;
            t->distinct++;
            if ((uint32_t)seq > t->max + 1)
                t->gaps++;
        }
        if ((uint32_t)seq > t->max)
            t->max = (uint32_t)seq;
    }
    json_decref(j);
    pthread_mutex_unlock(&s->mu);
}

static void on_conn(struct mosquitto *m, void *obj, int rc)
{
    sub *s = obj;
    if (rc == 0) {
        mosquitto_subscribe(m, NULL, H_PREFIX "/hq/env/+/event/#", 1);
        mosquitto_subscribe(m, NULL, H_PREFIX "/hq/env/+/telemetry", 1);
        mosquitto_subscribe(m, NULL, H_PREFIX "/hq/gateway/gw1/alarm/#", 1);
        mosquitto_subscribe(m, NULL, H_PREFIX "/hq/gateway/gw1/instance/#", 1);
    }
    pthread_mutex_lock(&s->mu);
    s->connected = rc == 0;
    pthread_mutex_unlock(&s->mu);
}

static void on_disc(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    (void)rc;
    sub *s = obj;
    pthread_mutex_lock(&s->mu);
    s->connected = false;
    pthread_mutex_unlock(&s->mu);
}

static bool sub_connected(sub *s)
{
    pthread_mutex_lock(&s->mu);
    bool c = s->connected;
    pthread_mutex_unlock(&s->mu);
    return c;
}

static sub *sub_new(int port, const char *id)
{
    sub *s = calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    mosquitto_lib_init();
    s->m = mosquitto_new(id, false, s); /* persistent session */
    mosquitto_connect_callback_set(s->m, on_conn);
    mosquitto_disconnect_callback_set(s->m, on_disc);
    mosquitto_message_callback_set(s->m, on_msg);
    mosquitto_reconnect_delay_set(s->m, 1, 1, false);
    mosquitto_max_inflight_messages_set(s->m, 0);
    if (mosquitto_connect(s->m, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS || mosquitto_loop_start(s->m) != 0)
        return NULL;
    for (int i = 0; i < 100 && !sub_connected(s); i++)
        h_sleep_ms(50);
    h_sleep_ms(200); /* SUBACKs */
    return s;
}

static void sub_free(sub *s)
{
    if (!s)
        return;
    mosquitto_disconnect(s->m);
    mosquitto_loop_stop(s->m, true);
    mosquitto_destroy(s->m);
    for (int i = 0; i < s->n_boots; i++)
        for (int d = 0; d <= MAX_DEV; d++)
            free(s->boots[i].dev[d].seen);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- the spool files, read the way ccgw wrote them --------------------------------- */

typedef struct srec {
    char file[PATH_MAX];
    long off, len;
    int dev;
    uint32_t seq;
    char boot[17];
} srec;

/* Every event record in DIR/data/spool/ (file order, id order). */
static size_t spool_scan(h_env *env, srec **out)
{
    char dir[PATH_MAX];
    h_env_path(env, "data/spool", dir, sizeof dir);
    DIR *d = opendir(dir);
    size_t n = 0, cap = 0;
    *out = NULL;
    if (!d)
        return 0;
    char names[64][32];
    int nn = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nn < 64)
        if (strlen(e->d_name) == 20 && strstr(e->d_name, ".seg"))
            snprintf(names[nn++], sizeof names[0], "%.31s", e->d_name);
    closedir(d);
    qsort(names, (size_t)nn, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    for (int i = 0; i < nn; i++) {
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= (int)sizeof path)
            continue;
        char *buf = NULL;
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = malloc((size_t)sz + 1);
        if (fread(buf, 1, (size_t)sz, f) != (size_t)sz)
            sz = 0;
        fclose(f);
        long off = 0;
        while (off + 48 <= sz) {
            uint32_t len, plen;
            uint16_t tlen;
            memcpy(&len, buf + off + 4, 4);
            memcpy(&tlen, buf + off + 12, 2);
            memcpy(&plen, buf + off + 40, 4);
            if (len < 48 || off + len > sz)
                break;
            json_t *j = json_loadb(buf + off + 48 + tlen, plen, 0, NULL);
            const char *dev = j ? json_string_value(json_object_get(j, "device")) : NULL;
            const char *boot = j ? json_string_value(json_object_get(j, "boot")) : NULL;
            int dn = 0;
            if (dev && boot && sscanf(dev, "lg-%d", &dn) == 1 && memmem(buf + off + 48, tlen, "/event/", 7)) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 4096;
                    *out = realloc(*out, cap * sizeof **out);
                }
                srec *r = &(*out)[n++];
                memcpy(r->file, path, sizeof r->file);
                r->off = off;
                r->len = len;
                r->dev = dn;
                r->seq = (uint32_t)json_integer_value(json_object_get(j, "seq"));
                snprintf(r->boot, sizeof r->boot, "%s", boot);
            }
            json_decref(j);
            off += len;
        }
        free(buf);
    }
    return n;
}

/* ---- the gateway ------------------------------------------------------------------- */

static h_proc *gw_start_ex(h_env *env, int port, const char *gateway_extra, const char *lg_options,
                          const char *more_instances)
{
    char data[PATH_MAX], yaml[PATH_MAX + 4096];
    h_env_path(env, "data", data, sizeof data);
    int yl = snprintf(yaml, sizeof yaml,
             "gateway:\n"
             "  site: hq\n"
             "  id: gw1\n"
             "  log_level: info\n"
             "  plugin_dirs: [\"" CCGW_PLUGIN_DIR "\"]\n"
             "  data_dir: \"%s\"\n"
             "%s"
             "mqtt:\n"
             "  host: 127.0.0.1\n"
             "  port: %d\n"
             "  reconnect: {min_ms: 100, max_ms: 500}\n"
             "%s"
             "instances:\n"
             "  - id: load\n"
             "    plugin: loadgen\n"
             "    options:\n%s%s",
             data, gateway_extra, port, g_mqtt_extra, lg_options, more_instances);
    if (yl < 0 || yl >= (int)sizeof yaml)
        return NULL;
    return h_gw_start_yaml(env, yaml, NULL, 0, NULL);
}

static h_proc *gw_start(h_env *env, int port, const char *gateway_extra, const char *lg_options)
{
    return gw_start_ex(env, port, gateway_extra, lg_options, "");
}

/* Wait until, for boot b, every device in want[] has every seq 1..want[d]. */
static bool wait_complete(sub *s, const char *boot, const uint32_t *want, int n_dev, int timeout_ms)
{
    int64_t t0 = h_now_ms();
    for (;;) {
        bool done = true;
        pthread_mutex_lock(&s->mu);
        boot_track *b = NULL;
        for (int i = 0; i < s->n_boots; i++)
            if (!strcmp(s->boots[i].boot, boot))
                b = &s->boots[i];
        for (int d = 1; d <= n_dev && done; d++) {
            const dev_track *t = b ? &b->dev[d] : NULL;
            if (want[d] == 0)
                continue;
            if (!t || !t->seen)
                done = false;
            else
                for (uint32_t q = 1; q <= want[d] && done; q++)
                    done = t->seen[q];
        }
        pthread_mutex_unlock(&s->mu);
        if (done)
            return true;
        if (h_now_ms() - t0 > timeout_ms)
            return false;
        h_sleep_ms(100);
    }
}

static void report_boot(sub *s, const char *boot, int n_dev, uint64_t *distinct, uint64_t *dups, uint32_t *gaps)
{
    *distinct = *dups = 0;
    *gaps = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_boots; i++) {
        if (strcmp(s->boots[i].boot, boot))
            continue;
        for (int d = 1; d <= n_dev; d++) {
            *distinct += s->boots[i].dev[d].distinct;
            *dups += s->boots[i].dev[d].dups;
            *gaps += s->boots[i].dev[d].gaps;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

static bool log_has(h_proc *p, const char *needle)
{
    char *t = h_read_file(h_proc_log(p));
    bool r = t && strstr(t, needle);
    free(t);
    return r;
}

/* ---- (a) broker away for 10 s under 2,000 events/s ------------------------------------ */

static void broker_outage(void **state)
{
    (void)state;
    h_env *env = h_env_new("spool_outage");
    h_current_env = env;
    pbroker *br = pb_start(env);
    H_ASSERT(br != NULL, "broker");
    sub *s = sub_new(br->port, "spool-it-a");
    H_ASSERT(s != NULL, "subscriber");
    int before = g_long ? 20 : 3, outage = g_long ? 60 : 10, after = g_long ? 20 : 3;
    char lg[512];
    snprintf(lg, sizeof lg,
             "      devices: 10\n      rate: 2000\n      duration_s: %d\n      kind: {telemetry: 0, event: 1}\n"
             "      report_s: 1\n      start_delay_ms: 500\n",
             before + outage + after);
    h_proc *gw = gw_start(env, br->port, "", lg);
    H_ASSERT(gw != NULL, "ccgw");
    h_sleep_ms(h_scaled(500 + before * 1000));
    H_ASSERT(s->events > 0, "events flow before the outage");
    h_log("stopping the broker for %d s (%llu events seen so far)", outage, (unsigned long long)s->events);
    pb_stop(br);
    h_sleep_ms(outage * 1000);
    H_ASSERT(pb_restart(br) == 0, "broker restart");
    h_log("broker back");
    /* loadgen's final count (instance topic) */
    int64_t t0 = h_now_ms();
    while (!s->finished[0] && h_now_ms() - t0 < h_scaled((after + 15) * 1000))
        h_sleep_ms(200);
    H_ASSERT(s->finished[0], "loadgen did not finish");
    unsigned long emitted = 0, refused = 0;
    int parsed = sscanf(s->finished, "finished: emitted %lu, refused %lu", &emitted, &refused);
    H_ASSERT(parsed == 2, "reason %s", s->finished);
    H_ASSERT(refused == 0, "refused %lu", refused);
    /* per device: the count loadgen emitted is the highest seq (round robin, no refusals) */
    H_ASSERT(s->n_boots == 1, "boots %d", s->n_boots);
    char boot[17];
    snprintf(boot, sizeof boot, "%s", s->boots[0].boot);
    uint32_t want[MAX_DEV + 1] = {0};
    int64_t t1 = h_now_ms();
    uint64_t distinct = 0, dups = 0;
    uint32_t gaps = 0;
    for (;;) {
        report_boot(s, boot, 10, &distinct, &dups, &gaps);
        if (distinct >= emitted || h_now_ms() - t1 > h_scaled(20000))
            break;
        h_sleep_ms(200);
    }
    pthread_mutex_lock(&s->mu);
    for (int d = 1; d <= 10; d++)
        want[d] = s->boots[0].dev[d].max;
    pthread_mutex_unlock(&s->mu);
    bool complete = wait_complete(s, boot, want, 10, 1000);
    h_log("outage: loadgen emitted %lu events; subscriber saw %llu distinct, %llu duplicates, %u gaps",
          emitted, (unsigned long long)distinct, (unsigned long long)dups, gaps);
    H_ASSERT(distinct == emitted, "distinct %llu != emitted %lu", (unsigned long long)distinct, emitted);
    H_ASSERT(complete, "a seq is missing");
    H_ASSERT(gaps == 0, "%u first occurrences out of order", gaps);
    H_ASSERT(emitted >= (unsigned long)(before + outage + after) * 2000 * 8 / 10, "emitted %lu: load too low",
             emitted);
    sub_free(s);
    h_rig_teardown(env, NULL, NULL, gw, NULL, 0); /* stops ccgw, then the broker */
    free(br);
}

/* ---- (b) kill -9 under load ------------------------------------------------------------ */

static void kill9_under_load(void **state)
{
    (void)state;
    h_env *env = h_env_new("spool_kill9");
    h_current_env = env;
    pbroker *br = pb_start(env);
    H_ASSERT(br != NULL, "broker");
    sub *s = sub_new(br->port, "spool-it-b");
    H_ASSERT(s != NULL, "subscriber");
    const char *lg = "      devices: 10\n      rate: 2000\n      kind: {telemetry: 0, event: 1}\n"
                     "      report_s: 1\n      start_delay_ms: 300\n";
    h_proc *gw = gw_start(env, br->port, "", lg);
    H_ASSERT(gw != NULL, "ccgw");
    h_sleep_ms(h_scaled(g_long ? 20000 : 2000));
    /* ccgw keeps up with 2,000/s: take the broker away for a moment so
     * that the kill finds accepted events not yet delivered */
    pb_stop(br);
    h_sleep_ms(1000);
    h_proc_signal(gw, SIGKILL);
    int st = 0;
    H_ASSERT(h_proc_wait(gw, 5000, &st), "ccgw did not die");
    H_ASSERT(s->n_boots >= 1, "nothing delivered before the kill");
    char boot[17];
    snprintf(boot, sizeof boot, "%s", s->boots[0].boot);
    /* accepted before the kill: what the spool files hold, and what was delivered already */
    srec *recs = NULL;
    size_t n = spool_scan(env, &recs);
    uint32_t want[MAX_DEV + 1] = {0};
    uint64_t in_spool = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(recs[i].boot, boot) && recs[i].dev >= 1 && recs[i].dev <= 10) {
            in_spool++;
            if (recs[i].seq > want[recs[i].dev])
                want[recs[i].dev] = recs[i].seq;
        }
    free(recs);
    uint64_t seen_before = 0, dups = 0;
    uint32_t gaps = 0;
    report_boot(s, boot, 10, &seen_before, &dups, &gaps);
    pthread_mutex_lock(&s->mu);
    uint64_t accepted = 0;
    for (int d = 1; d <= 10; d++) {
        if (s->boots[0].dev[d].max > want[d])
            want[d] = s->boots[0].dev[d].max;
        accepted += want[d];
    }
    pthread_mutex_unlock(&s->mu);
    h_log("kill -9: %llu events accepted (highest seq per device), %llu records in the spool files, "
          "%llu delivered before the kill", (unsigned long long)accepted, (unsigned long long)in_spool,
          (unsigned long long)seen_before);
    H_ASSERT(accepted > seen_before, "the kill left nothing undelivered (load too low to test)");
    /* restart on the same data_dir */
    H_ASSERT(pb_restart(br) == 0, "broker restart");
    gw = gw_start(env, br->port, "", lg);
    H_ASSERT(gw != NULL, "ccgw restart");
    bool ok = wait_complete(s, boot, want, 10, h_scaled(20000));
    uint64_t distinct = 0;
    report_boot(s, boot, 10, &distinct, &dups, &gaps);
    h_log("after the restart: %llu of %llu delivered, %llu duplicates, %u gaps", (unsigned long long)distinct,
          (unsigned long long)accepted, (unsigned long long)dups, gaps);
    H_ASSERT(ok, "an event accepted before the kill was not delivered");
    H_ASSERT(gaps == 0, "%u first occurrences out of order", gaps);
    char line[512];
    H_ASSERT(h_proc_wait_log(gw, "records to replay", 1000, line, sizeof line), "no replay line");
    h_log("%s", line);
    sub_free(s);
    h_rig_teardown(env, NULL, NULL, gw, NULL, 0); /* stops ccgw, then the broker */
    free(br);
}

/* ---- (c) truncated and bit-flipped between runs --------------------------------------------- */

static void damaged_spool(void **state)
{
    (void)state;
    h_env *env = h_env_new("spool_damage");
    h_current_env = env;
    pbroker *br = pb_start(env);
    H_ASSERT(br != NULL, "broker");
    sub *s = sub_new(br->port, "spool-it-c");
    H_ASSERT(s != NULL, "subscriber");
    pb_stop(br); /* the first run never reaches the broker: everything stays in the spool */
    const char *lg1 = "      devices: 10\n      rate: 2000\n      duration_s: 1\n"
                      "      kind: {telemetry: 0, event: 1}\n      report_s: 1\n";
    h_proc *gw = gw_start(env, br->port, "", lg1);
    H_ASSERT(gw != NULL, "ccgw");
    char line[512];
    H_ASSERT(h_proc_wait_log(gw, "finished: emitted", h_scaled(15000), line, sizeof line), "loadgen");
    int st = h_proc_stop(gw, 8000);
    H_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ccgw exit");
    srec *recs = NULL;
    size_t n = spool_scan(env, &recs);
    H_ASSERT(n > 1000, "%zu records in the spool", n);
    /* damage: flip a byte in the payload of a record in the middle, cut the last one short */
    size_t mid = n / 2;
    int fd = open(recs[mid].file, O_RDWR);
    H_ASSERT(fd >= 0, "open %s", recs[mid].file);
    unsigned char c;
    long at = recs[mid].off + recs[mid].len - 5;
    H_ASSERT(pread(fd, &c, 1, at) == 1, "read");
    c ^= 0x04;
    H_ASSERT(pwrite(fd, &c, 1, at) == 1, "write");
    close(fd);
    H_ASSERT(truncate(recs[n - 1].file, recs[n - 1].off + recs[n - 1].len - 9) == 0, "truncate");
    char boot[17];
    snprintf(boot, sizeof boot, "%s", recs[0].boot);
    /* second run: broker back (the subscriber's session kept), damaged spool */
    H_ASSERT(pb_restart(br) == 0, "broker restart");
    const char *lg2 = "      devices: 10\n      rate: 10\n      duration_s: 1\n"
                      "      kind: {telemetry: 0, event: 1}\n      report_s: 1\n";
    gw = gw_start(env, br->port, "", lg2);
    H_ASSERT(gw != NULL, "ccgw restart");
    H_ASSERT(h_proc_wait_log(gw, "records to replay", h_scaled(10000), line, sizeof line), "no open line");
    h_log("%s", line);
    const char *p = strstr(line, "opened in ");
    long ms = p ? strtol(p + 10, NULL, 10) : -1;
    H_ASSERT(ms >= 0 && ms < 5000, "spool opened in %ld ms", ms);
    H_ASSERT(h_proc_wait_log(gw, "damaged region", 1000, line, sizeof line), "damage not reported");
    h_log("%s", line);
    /* every good record is delivered; the two damaged ones cannot be */
    int64_t t0 = h_now_ms();
    size_t missing = n;
    while (h_now_ms() - t0 < h_scaled(20000)) {
        missing = 0;
        pthread_mutex_lock(&s->mu);
        boot_track *b = NULL;
        for (int i = 0; i < s->n_boots; i++)
            if (!strcmp(s->boots[i].boot, boot))
                b = &s->boots[i];
        for (size_t i = 0; i < n; i++) {
            if (i == mid || i == n - 1)
                continue;
            const dev_track *t = b ? &b->dev[recs[i].dev] : NULL;
            if (!t || !t->seen || !t->seen[recs[i].seq])
                missing++;
        }
        pthread_mutex_unlock(&s->mu);
        if (!missing)
            break;
        h_sleep_ms(200);
    }
    h_sleep_ms(500);
    pthread_mutex_lock(&s->mu);
    bool damaged_seen = false;
    for (int i = 0; i < s->n_boots; i++)
        if (!strcmp(s->boots[i].boot, boot))
            for (size_t k = mid; k < n; k += n - 1 - mid) {
                const dev_track *t = &s->boots[i].dev[recs[k].dev];
                if (t->seen && t->seen[recs[k].seq])
                    damaged_seen = true;
                if (k == n - 1)
                    break;
            }
    pthread_mutex_unlock(&s->mu);
    h_log("damage: %zu records written, 2 damaged, %zu good ones missing after the restart", n, missing);
    H_ASSERT(missing == 0, "%zu good records not delivered", missing);
    H_ASSERT(!damaged_seen, "a damaged record was delivered");
    free(recs);
    char corrupt[PATH_MAX];
    h_env_path(env, "data/spool/corrupt", corrupt, sizeof corrupt);
    DIR *d = opendir(corrupt);
    int files = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        files += strstr(e->d_name, ".bad") != NULL;
    if (d)
        closedir(d);
    H_ASSERT(files >= 1, "nothing set aside in %s", corrupt);
    sub_free(s);
    h_rig_teardown(env, NULL, NULL, gw, NULL, 0); /* stops ccgw, then the broker */
    free(br);
}

/* ---- (d) a tiny spool ------------------------------------------------------------------------- */

static void tiny_spool(void **state)
{
    (void)state;
    h_env *env = h_env_new("spool_tiny");
    h_current_env = env;
    pbroker *br = pb_start(env);
    H_ASSERT(br != NULL, "broker");
    sub *s = sub_new(br->port, "spool-it-d");
    H_ASSERT(s != NULL, "subscriber");
    pb_stop(br);
    const char *extra = "  backpressure_ms: 30000\n"
                        "  spool: {max_bytes: 65536, telemetry: true}\n";
    /* events from one instance (held back when full), telemetry from another (dropped when full) */
    const char *lg = "      devices: 5\n      rate: 500\n      duration_s: 3\n"
                     "      kind: {telemetry: 0, event: 1}\n      report_s: 1\n";
    const char *tele = "  - id: tele\n    plugin: loadgen\n    options:\n"
                       "      devices: 5\n      id_prefix: tl-\n      rate: 500\n      duration_s: 3\n"
                       "      kind: {telemetry: 1}\n      report_s: 1\n";
    h_proc *gw = gw_start_ex(env, br->port, extra, lg, tele);
    H_ASSERT(gw != NULL, "ccgw");
    char line[512];
    H_ASSERT(h_proc_wait_log(gw, "spool full", h_scaled(10000), line, sizeof line), "spool never full");
    H_ASSERT(h_proc_wait_log(gw, "gateway alarm spool_full raised", h_scaled(5000), line, sizeof line),
             "no spool_full alarm");
    h_sleep_ms(1500); /* emitters held back meanwhile */
    H_ASSERT(pb_restart(br) == 0, "broker restart");
    H_ASSERT(h_proc_wait_log(gw, "[loadgen:load] finished: emitted", h_scaled(30000), line, sizeof line), "loadgen");
    h_log("%s", line);
    /* the alarm is cleared once the spool drains */
    int64_t t0 = h_now_ms();
    while (!s->alarm_cleared_after_raise && h_now_ms() - t0 < h_scaled(15000))
        h_sleep_ms(200);
    h_sleep_ms(1000);
    pthread_mutex_lock(&s->mu);
    char boot[17] = "";
    if (s->n_boots)
        snprintf(boot, sizeof boot, "%s", s->boots[0].boot);
    uint32_t want[MAX_DEV + 1] = {0};
    for (int d = 1; d <= 5 && s->n_boots; d++)
        want[d] = s->boots[0].dev[d].max;
    int raised = s->alarm_raised, cleared = s->alarm_cleared;
    bool cleared_after = s->alarm_cleared_after_raise;
    uint64_t tel = s->telemetry;
    pthread_mutex_unlock(&s->mu);
    bool complete = boot[0] && wait_complete(s, boot, want, 5, 1000);
    uint64_t distinct = 0, dups = 0;
    uint32_t gaps = 0;
    report_boot(s, boot, 5, &distinct, &dups, &gaps);
    h_log("tiny spool: %llu events (no gap: %s), %llu telemetry delivered, spool_full raised %d / cleared %d",
          (unsigned long long)distinct, complete ? "yes" : "NO", (unsigned long long)tel, raised, cleared);
    H_ASSERT(complete && gaps == 0, "an event was dropped (gaps %u)", gaps);
    H_ASSERT(distinct > 100, "too few events: %llu", (unsigned long long)distinct);
    H_ASSERT(raised >= 1 && cleared_after, "spool_full raised %d, cleared after %d", raised, cleared_after);
    H_ASSERT(!log_has(gw, "refused event"), "an event was refused");
    int st = h_proc_stop(gw, 8000);
    H_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0, "ccgw exit");
    /* the spool's counters, logged when it closes */
    char *text = h_read_file(h_proc_log(gw));
    const char *closed = text ? strstr(text, "[spool] closed:") : NULL;
    const char *cl = closed ? strstr(closed, ", telemetry dropped ") : NULL;
    unsigned long tdrop = cl ? strtoul(cl + 20, NULL, 10) : 0;
    const char *ev = closed ? strstr(closed, "refused full ") : NULL;
    unsigned long refused_full = ev ? strtoul(ev + 13, NULL, 10) : 0;
    free(text);
    h_log("tiny spool: telemetry dropped %lu, event appends refused while full (then retried) %lu", tdrop,
          refused_full);
    H_ASSERT(cl != NULL && tdrop > 0, "no telemetry drop counted");
    H_ASSERT(refused_full > 0, "the spool was never full for events (no backpressure)");
    sub_free(s);
    h_rig_teardown(env, NULL, NULL, gw, NULL, 0); /* stops the broker */
    free(br);
}

/* ---- (e) QoS 0: exactly once per run, nothing replayed by the next run ------------------- */

/* Wait for loadgen's "finished" and for every event of boot `boot_idx` (the
 * count loadgen emitted) at the subscriber; assert no duplicate, no gap. */
static void qos0_check_run(sub *s, int boot_idx, const char *what)
{
    int64_t t0 = h_now_ms();
    while (!s->finished[0] && h_now_ms() - t0 < h_scaled(20000))
        h_sleep_ms(100);
    H_ASSERT(s->finished[0], "%s: loadgen did not finish", what);
    unsigned long emitted = 0, refused = 0;
    int parsed = sscanf(s->finished, "finished: emitted %lu, refused %lu", &emitted, &refused);
    H_ASSERT(parsed == 2, "reason %s", s->finished);
    H_ASSERT(s->n_boots == boot_idx + 1, "%s: %d boots seen", what, s->n_boots);
    char boot[17];
    snprintf(boot, sizeof boot, "%s", s->boots[boot_idx].boot);
    uint64_t distinct = 0, dups = 0;
    uint32_t gaps = 0;
    int64_t t1 = h_now_ms();
    for (;;) {
        report_boot(s, boot, 10, &distinct, &dups, &gaps);
        if (distinct >= emitted || h_now_ms() - t1 > h_scaled(20000))
            break;
        h_sleep_ms(100);
    }
    h_sleep_ms(500); /* duplicates would come after the last new one */
    report_boot(s, boot, 10, &distinct, &dups, &gaps);
    uint32_t want[MAX_DEV + 1] = {0};
    uint64_t maxsum = 0;
    pthread_mutex_lock(&s->mu);
    for (int d = 1; d <= 10; d++) {
        want[d] = s->boots[boot_idx].dev[d].max;
        maxsum += want[d];
    }
    pthread_mutex_unlock(&s->mu);
    bool complete = wait_complete(s, boot, want, 10, 1000);
    h_log("%s: loadgen emitted %lu (refused %lu); subscriber: %llu distinct, %llu duplicates, %u gaps, seq max sum %llu",
          what, emitted, refused, (unsigned long long)distinct, (unsigned long long)dups, gaps,
          (unsigned long long)maxsum);
    H_ASSERT(refused == 0, "%s: refused %lu", what, refused);
    H_ASSERT(emitted >= 2000, "%s: emitted %lu: load too low", what, emitted);
    H_ASSERT(dups == 0, "%s: %llu duplicates", what, (unsigned long long)dups);
    H_ASSERT(distinct == emitted, "%s: distinct %llu != emitted %lu", what, (unsigned long long)distinct, emitted);
    H_ASSERT(maxsum == emitted && complete, "%s: a seq is missing", what);
    H_ASSERT(gaps == 0, "%s: %u first occurrences out of order", what, gaps);
}

static void qos0_exact(void **state)
{
    (void)state;
    h_env *env = h_env_new("spool_qos0");
    h_current_env = env;
    pbroker *br = pb_start(env);
    H_ASSERT(br != NULL, "broker");
    sub *s = sub_new(br->port, "spool-it-e");
    H_ASSERT(s != NULL, "subscriber");
    g_mqtt_extra = "  qos: {event: 0}\n";
    /* rate 0: as fast as the core accepts, so that the spool holds a backlog
     * when loadgen stops (it finishes long before the broker has it all) */
    const char *lg = "      devices: 10\n      rate: 0\n      duration_s: 2\n      kind: {telemetry: 0, event: 1}\n"
                     "      report_s: 1\n      start_delay_ms: 300\n";
    h_proc *gw = gw_start(env, br->port, "", lg);
    H_ASSERT(gw != NULL, "ccgw");
    qos0_check_run(s, 0, "run 1");
    H_ASSERT(h_proc_stop(gw, 10000) == 0, "ccgw run 1 did not stop cleanly");
    pthread_mutex_lock(&s->mu);
    s->finished[0] = '\0';
    uint64_t events_before = s->events;
    pthread_mutex_unlock(&s->mu);
    gw = gw_start(env, br->port, "", lg);
    H_ASSERT(gw != NULL, "ccgw run 2");
    char line[512];
    H_ASSERT(h_proc_wait_log(gw, "records to replay", 5000, line, sizeof line), "no replay line");
    h_log("run 2: %s", line);
    H_ASSERT(strstr(line, ", 0 records to replay"), "run 2 replays records of run 1: %s", line);
    qos0_check_run(s, 1, "run 2");
    /* nothing of run 1 came again */
    uint64_t d1 = 0, dup1 = 0;
    uint32_t g1 = 0;
    report_boot(s, s->boots[0].boot, 10, &d1, &dup1, &g1);
    H_ASSERT(dup1 == 0, "run 1's events sent again by run 2: %llu", (unsigned long long)dup1);
    h_log("events seen in all: %llu (run 1: %llu)", (unsigned long long)s->events, (unsigned long long)events_before);
    g_mqtt_extra = "";
    sub_free(s);
    h_rig_teardown(env, NULL, NULL, gw, NULL, 0);
    free(br);
}

int main(void)
{
    g_long = getenv("CCGW_IT_LONG") && atoi(getenv("CCGW_IT_LONG")) > 0;
    const char *only = getenv("CCGW_IT_ONLY");
    struct CMUnitTest all[] = {
        cmocka_unit_test(broker_outage),
        cmocka_unit_test(kill9_under_load),
        cmocka_unit_test(damaged_spool),
        cmocka_unit_test(tiny_spool),
        cmocka_unit_test(qos0_exact),
    };
    struct CMUnitTest tests[5];
    size_t n = 0;
    for (size_t i = 0; i < 5; i++)
        if (!only || strstr(all[i].name, only))
            tests[n++] = all[i];
    int failed = _cmocka_run_group_tests("spool_faults", tests, n, NULL, NULL);
    return h_finish(failed);
}
