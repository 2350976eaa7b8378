/*
 * snmp_target.c - one worker thread per agent: the net-snmp session, the
 * poll (one GET per up to 32 OIDs), publishing state, telemetry, events and
 * alarms, and reachability.
 *
 * The worker owns its session (snmp_sess_* API: thread-safe per session).
 * snmp_sess_synch_response() blocks for at most timeout * (retries + 1); the
 * eventfd wakes the sleep between polls (stop, or a trap that asks for a poll
 * at once). A timeout or a v3 security failure makes the device offline with
 * the reason; the next good poll brings it back with ccgw_device_set_state().
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <net-snmp/net-snmp-config.h>
#include <net-snmp/net-snmp-includes.h>

#include "snmp_plugin.h"

#define GET_CHUNK 32

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool stopping(snmp_target_t *t)
{
    pthread_mutex_lock(&t->lock);
    bool st = t->stop;
    pthread_mutex_unlock(&t->lock);
    return st;
}

/* ---- health ---- */

void snmp_health_update(snmp_t *s)
{
    pthread_mutex_lock(&s->lock);
    size_t off = 0;
    const char *first = NULL;
    for (size_t i = 0; i < s->n_targets; i++) {
        if (s->targets[i].offline) {
            if (!first)
                first = s->targets[i].id;
            off++;
        }
    }
    ccgw_health_t h = off ? CCGW_HEALTH_DEGRADED : CCGW_HEALTH_OK;
    char reason[SNMP_REASON_LEN] = "";
    if (off)
        snprintf(reason, sizeof reason, "%zu of %zu SNMP targets offline (%s%s)", off, s->n_targets,
                 first, off > 1 ? ", ..." : "");
    bool changed = h != s->health || strcmp(reason, s->health_reason) != 0;
    s->health = h;
    snprintf(s->health_reason, sizeof s->health_reason, "%s", reason);
    if (changed)
        ccgw_instance_health(s->inst, h, reason[0] ? reason : NULL);
    pthread_mutex_unlock(&s->lock);
}

static void set_offline_flag(snmp_target_t *t, bool off)
{
    pthread_mutex_lock(&t->snmp->lock);
    bool was = t->offline;
    t->offline = off;
    pthread_mutex_unlock(&t->snmp->lock);
    if (was != off)
        snmp_health_update(t->snmp);
}

static void target_offline(snmp_target_t *t, const char *reason)
{
    if (t->online != 0 || strcmp(t->reason, reason) != 0) {
        CCGW_WARN(t->snmp->inst, "snmp: %s (%s) offline: %s", t->id, t->name, reason);
        ccgw_device_set_online(t->dev, false, reason);
        snprintf(t->reason, sizeof t->reason, "%s", reason);
    }
    t->online = 0;
    set_offline_flag(t, true);
}

/* ---- session ---- */

static int open_session(snmp_target_t *t, char *why, size_t whylen)
{
    netsnmp_session cfg;
    char peer[320];
    snprintf(peer, sizeof peer, "udp:%s", t->name);
    snmp_sess_init(&cfg);
    cfg.peername = peer;
    cfg.timeout = (long)t->timeout_ms * 1000L;
    cfg.retries = t->retries;
    if (t->version == 2) {
        cfg.version = SNMP_VERSION_2c;
        cfg.community = (u_char *)(uintptr_t)t->community;
        cfg.community_len = strlen(t->community);
    } else {
        cfg.version = SNMP_VERSION_3;
        cfg.securityName = (char *)(uintptr_t)t->user;
        cfg.securityNameLen = strlen(t->user);
        cfg.securityModel = USM_SEC_MODEL_NUMBER;
        if (t->context) {
            cfg.contextName = (char *)(uintptr_t)t->context;
            cfg.contextNameLen = strlen(t->context);
        }
        bool auth = strcmp(t->level, "noAuthNoPriv") != 0;
        bool priv = strcmp(t->level, "authPriv") == 0;
        cfg.securityLevel = priv ? SNMP_SEC_LEVEL_AUTHPRIV
                            : auth ? SNMP_SEC_LEVEL_AUTHNOPRIV
                                   : SNMP_SEC_LEVEL_NOAUTH;
        if (auth) {
            const oid *ap = usmHMACSHA1AuthProtocol;
            size_t apl = USM_AUTH_PROTO_SHA_LEN;
            if (strcmp(t->auth_proto, "SHA-256") == 0) {
                ap = usmHMAC192SHA256AuthProtocol;
                apl = OID_LENGTH(usmHMAC192SHA256AuthProtocol);
            } else if (strcmp(t->auth_proto, "MD5") == 0) {
                ap = usmHMACMD5AuthProtocol;
                apl = USM_AUTH_PROTO_MD5_LEN;
            }
            cfg.securityAuthProto = snmp_duplicate_objid(ap, apl);
            cfg.securityAuthProtoLen = apl;
            cfg.securityAuthKeyLen = USM_AUTH_KU_LEN;
            if (generate_Ku(cfg.securityAuthProto, (u_int)cfg.securityAuthProtoLen,
                            (const u_char *)t->auth_pass, strlen(t->auth_pass),
                            cfg.securityAuthKey, &cfg.securityAuthKeyLen) != SNMPERR_SUCCESS) {
                snprintf(why, whylen, "cannot derive the v3 auth key");
                free(cfg.securityAuthProto);
                return -1;
            }
        }
        if (priv) {
            const oid *pp = usmAESPrivProtocol;
            size_t ppl = USM_PRIV_PROTO_AES_LEN;
            if (strcmp(t->priv_proto, "DES") == 0) {
                pp = usmDESPrivProtocol;
                ppl = USM_PRIV_PROTO_DES_LEN;
            }
            cfg.securityPrivProto = snmp_duplicate_objid(pp, ppl);
            cfg.securityPrivProtoLen = ppl;
            cfg.securityPrivKeyLen = USM_PRIV_KU_LEN;
            if (generate_Ku(cfg.securityAuthProto, (u_int)cfg.securityAuthProtoLen,
                            (const u_char *)t->priv_pass, strlen(t->priv_pass),
                            cfg.securityPrivKey, &cfg.securityPrivKeyLen) != SNMPERR_SUCCESS) {
                snprintf(why, whylen, "cannot derive the v3 privacy key");
                free(cfg.securityAuthProto);
                free(cfg.securityPrivProto);
                return -1;
            }
        }
    }
    pthread_mutex_lock(snmp_global_lock());
    t->sess = snmp_sess_open(&cfg);
    pthread_mutex_unlock(snmp_global_lock());
    free(cfg.securityAuthProto);
    free(cfg.securityPrivProto);
    if (!t->sess) {
        snprintf(why, whylen, "cannot open an SNMP session to %s: %s", t->name,
                 snmp_api_errstring(snmp_errno));
        return -1;
    }
    return 0;
}

static void close_session(snmp_target_t *t)
{
    if (t->sess) {
        pthread_mutex_lock(snmp_global_lock());
        snmp_sess_close(t->sess);
        pthread_mutex_unlock(snmp_global_lock());
        t->sess = NULL;
    }
}

/* ---- values ---- */

static bool var_number(const netsnmp_variable_list *v, double *d)
{
    switch (v->type) {
    case ASN_INTEGER:
        *d = (double)*v->val.integer;
        return true;
    case ASN_COUNTER:
    case ASN_GAUGE:
    case ASN_TIMETICKS:
    case ASN_UINTEGER:
        *d = (double)(unsigned long)*v->val.integer;
        return true;
    case ASN_COUNTER64:
        *d = (double)v->val.counter64->high * 4294967296.0 + (double)v->val.counter64->low;
        return true;
    case ASN_OCTET_STR: {
        char buf[64];
        size_t n = v->val_len < sizeof buf - 1 ? v->val_len : sizeof buf - 1;
        memcpy(buf, v->val.string, n);
        buf[n] = '\0';
        char *end;
        errno = 0;
        double x = strtod(buf, &end);
        if (end == buf || *end || errno || !isfinite(x))
            return false;
        *d = x;
        return true;
    }
    default:
        return false;
    }
}

static void var_text(const netsnmp_variable_list *v, char *out, size_t len)
{
    double d;
    if (v->type == ASN_OCTET_STR) {
        size_t n = v->val_len < len - 1 ? v->val_len : len - 1;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = v->val.string[i];
            out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
        }
        out[n] = '\0';
    } else if (v->type == ASN_OBJECT_ID) {
        size_t off = 0;
        out[0] = '\0';
        for (size_t i = 0; i < v->val_len / sizeof(oid) && off < len; i++) {
            int w = snprintf(out + off, len - off, "%s%lu", i ? "." : "", (unsigned long)v->val.objid[i]);
            if (w < 0)
                break;
            off += (size_t)w;
        }
    } else if (v->type == ASN_IPADDRESS && v->val_len == 4) {
        snprintf(out, len, "%u.%u.%u.%u", v->val.string[0], v->val.string[1], v->val.string[2],
                 v->val.string[3]);
    } else if (var_number(v, &d)) {
        snprintf(out, len, "%.15g", d);
    } else {
        out[0] = '\0';
    }
}

/* One request slot: either a UPS-MIB object or a point. */
typedef struct slot {
    oid name[SNMP_OID_MAX];
    size_t len;
    int ups;            /* UPSMIB_* or -1 */
    snmp_point_t *pt;
} slot_t;

/* Reason of a failed request: timeout, v3 auth problem, or net-snmp's text. */
static void failure_reason(snmp_target_t *t, int status, char *why, size_t whylen)
{
    int clib = 0, serr = 0;
    char *txt = NULL;
    snmp_sess_error(t->sess, &clib, &serr, &txt);
    if (status == STAT_TIMEOUT || serr == SNMPERR_TIMEOUT) {
        snprintf(why, whylen, "timeout: no answer from %s after %d tr%s of %d ms", t->name,
                 t->retries + 1, t->retries ? "ies" : "y", t->timeout_ms);
    } else if (serr == SNMPERR_AUTHENTICATION_FAILURE || serr == SNMPERR_USM_AUTHENTICATIONFAILURE ||
               serr == SNMPERR_USM_UNKNOWNSECURITYNAME || serr == SNMPERR_USM_DECRYPTIONERROR ||
               serr == SNMPERR_USM_UNSUPPORTEDSECURITYLEVEL || serr == SNMPERR_USM_NOTINTIMEWINDOW ||
               serr == SNMPERR_UNKNOWN_USER_NAME || serr == SNMPERR_UNSUPPORTED_SEC_LEVEL ||
               serr == SNMPERR_DECRYPTION_ERR) {
        snprintf(why, whylen, "auth failure: %s (SNMPv3 user '%s' at %s)",
                 snmp_api_errstring(serr), t->user ? t->user : "", t->name);
    } else {
        snprintf(why, whylen, "SNMP error from %s: %s", t->name, txt ? txt : snmp_api_errstring(serr));
    }
    free(txt);
}

/* GETs every slot; 0, or -1 with the reason. */
static int get_slots(snmp_target_t *t, slot_t *slots, size_t n, char *why, size_t whylen)
{
    for (size_t off = 0; off < n; off += GET_CHUNK) {
        size_t cnt = n - off < GET_CHUNK ? n - off : GET_CHUNK;
        netsnmp_pdu *pdu = snmp_pdu_create(SNMP_MSG_GET);
        if (!pdu) {
            snprintf(why, whylen, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < cnt; i++)
            snmp_add_null_var(pdu, slots[off + i].name, slots[off + i].len);
        netsnmp_pdu *resp = NULL;
        int st = snmp_sess_synch_response(t->sess, pdu, &resp);
        if (st != STAT_SUCCESS || !resp) {
            failure_reason(t, st, why, whylen);
            if (resp)
                snmp_free_pdu(resp);
            return -1;
        }
        if (resp->errstat != SNMP_ERR_NOERROR) {
            if (resp->errstat == SNMP_ERR_NOSUCHNAME && resp->errindex > 0 && cnt > 1) {
                /* v1-style: fall back to one by one for this chunk */
                snmp_free_pdu(resp);
                for (size_t i = 0; i < cnt; i++) {
                    if (get_slots(t, &slots[off + i], 1, why, whylen) < 0)
                        return -1;
                }
                continue;
            }
            if (resp->errstat == SNMP_ERR_NOSUCHNAME) {
                snmp_free_pdu(resp);
                continue;
            }
            snprintf(why, whylen, "SNMP error from %s: %s", t->name, snmp_errstring((int)resp->errstat));
            snmp_free_pdu(resp);
            return -1;
        }
        size_t i = 0;
        for (netsnmp_variable_list *v = resp->variables; v && i < cnt; v = v->next_variable, i++) {
            slot_t *sl = &slots[off + i];
            if (v->type == SNMP_NOSUCHOBJECT || v->type == SNMP_NOSUCHINSTANCE ||
                v->type == SNMP_ENDOFMIBVIEW || v->type == ASN_NULL)
                continue;
            double d;
            if (sl->ups >= 0) {
                if (var_number(v, &d)) {
                    t->ups.have[sl->ups] = true;
                    t->ups.v[sl->ups] = (int64_t)d;
                }
            } else if (sl->pt) {
                snmp_point_t *p = sl->pt;
                if (p->type == PT_STRING) {
                    var_text(v, p->text, sizeof p->text);
                    p->is_text = true;
                    p->have = true;
                } else if (var_number(v, &d)) {
                    p->num = p->type == PT_COUNTER ? d : snmp_point_value(d, p->scale, p->offset);
                    p->is_text = false;
                    p->have = true;
                }
            }
        }
        snmp_free_pdu(resp);
    }
    return 0;
}

/* ---- publishing (under pub_lock) ---- */

static void publish_flags_locked(snmp_target_t *t, unsigned flags, const char *why)
{
    char ftxt[128];
    ups_flags_text(flags, ftxt, sizeof ftxt);
    const char *ev = ups_power_event(t->have_flags, t->flags, flags);
    if (ev) {
        ccgw_value_t data[4];
        size_t nd = 0;
        data[nd++] = CCGW_V_STRING("flags", ftxt);
        if (why)
            data[nd++] = CCGW_V_STRING("source", why);
        if (t->ups_pub.have[UPSMIB_CHARGE_REMAINING])
            data[nd++] = CCGW_V_DOUBLE("battery.charge", (double)t->ups_pub.v[UPSMIB_CHARGE_REMAINING], "%");
        uint64_t now = mono_ms();
        if (strcmp(ev, "power.lost") == 0) {
            t->on_battery_since = now;
        } else if (t->on_battery_since) {
            data[nd++] = CCGW_V_INT_U("on_battery_s", (int64_t)((now - t->on_battery_since) / 1000u), "s");
            t->on_battery_since = 0;
        }
        CCGW_INFO(t->snmp->inst, "snmp: %s: %s (%s%s%s)", t->id, ev, ftxt, why ? ", " : "", why ? why : "");
        ccgw_device_event(t->dev, ev, data, nd);
    }
    t->have_flags = true;
    t->flags = flags;
    for (unsigned i = 0; i < UPS_N_ALARMS; i++) {
        const ups_alarm_def_t *a = &ups_alarm_defs[i];
        bool want = (flags & a->flag) != 0;
        bool active = (t->alarms_active >> i) & 1u;
        if (want && !active) {
            ccgw_value_t data[] = {CCGW_V_STRING("flags", ftxt)};
            if (ccgw_alarm_raise(t->dev, a->code, a->severity, a->message, data, CCGW_COUNT(data)) == CCGW_OK)
                t->alarms_active |= 1u << i;
        } else if (!want && (active || !t->alarms_known)) {
            ccgw_alarm_clear(t->dev, a->code, NULL);
            t->alarms_active &= ~(1u << i);
        }
    }
    t->alarms_known = true;
}

void snmp_target_apply_flags(snmp_target_t *t, unsigned set, unsigned clear, const char *why)
{
    pthread_mutex_lock(&t->pub_lock);
    unsigned flags = ((t->have_flags ? t->flags : UPS_F_OL) & ~clear) | set;
    if (!t->have_flags || flags != t->flags) {
        char ftxt[128];
        ccgw_value_t st[] = {
            CCGW_V_STRING("status", ups_status_name(flags)),
            CCGW_V_STRING("flags", ups_flags_text(flags, ftxt, sizeof ftxt)),
        };
        ccgw_device_update_state(t->dev, st, CCGW_COUNT(st));
        publish_flags_locked(t, flags, why);
    }
    pthread_mutex_unlock(&t->pub_lock);
}

void snmp_target_trap_alarm(snmp_target_t *t, const char *code, ccgw_severity_t sev, bool raise,
                            const char *message)
{
    pthread_mutex_lock(&t->pub_lock);
    int idx = ups_alarm_index(code);
    if (idx >= 0) {
        /* one of the flag alarms: keep the flags consistent */
        unsigned f = ups_alarm_defs[idx].flag;
        pthread_mutex_unlock(&t->pub_lock);
        if (f == UPS_F_OB)
            snmp_target_apply_flags(t, raise ? UPS_F_OB | UPS_F_DISCHRG : UPS_F_OL,
                                    raise ? UPS_F_OL : UPS_F_OB | UPS_F_DISCHRG, "trap");
        else
            snmp_target_apply_flags(t, raise ? f : 0, raise ? 0 : f, "trap");
        return;
    }
    size_t k;
    for (k = 0; k < t->n_trap_alarms; k++) {
        if (strcmp(t->trap_alarms[k], code) == 0)
            break;
    }
    if (raise) {
        ccgw_alarm_raise(t->dev, code, sev, message, NULL, 0);
        if (k == t->n_trap_alarms && k < CCGW_COUNT(t->trap_alarms))
            snprintf(t->trap_alarms[t->n_trap_alarms++], sizeof t->trap_alarms[0], "%s", code);
    } else {
        ccgw_alarm_clear(t->dev, code, message);
        if (k < t->n_trap_alarms) {
            memmove(&t->trap_alarms[k], &t->trap_alarms[k + 1],
                    (t->n_trap_alarms - k - 1) * sizeof t->trap_alarms[0]);
            t->n_trap_alarms--;
        }
    }
    pthread_mutex_unlock(&t->pub_lock);
}

static void publish_poll(snmp_target_t *t)
{
    ccgw_value_t st[2 + 64];
    size_t ns = 0;
    char ftxt[128];
    unsigned flags = 0;
    bool ups = t->ups_mib;

    pthread_mutex_lock(&t->pub_lock);
    t->ups_pub = t->ups;
    if (ups) {
        flags = upsmib_flags(&t->ups);
        st[ns++] = CCGW_V_STRING("status", ups_status_name(flags));
        st[ns++] = CCGW_V_STRING("flags", ups_flags_text(flags, ftxt, sizeof ftxt));
    }
    for (size_t i = 0; i < t->n_points && ns < CCGW_COUNT(st); i++) {
        snmp_point_t *p = &t->points[i];
        if (!p->have || !p->state)
            continue;
        if (p->is_text) {
            st[ns++] = CCGW_V_STRING(p->name, p->text);
        } else if (p->type == PT_INT) {
            st[ns++] = CCGW_V_INT(p->name, (int64_t)llround(p->num));
        } else {
            st[ns++] = CCGW_V_DOUBLE(p->name, p->num, NULL);
        }
    }
    ccgw_device_set_state(t->dev, true, NULL, st, ns);
    if (t->online != 1)
        CCGW_INFO(t->snmp->inst, "snmp: %s (%s) online%s%s", t->id, t->name, ups ? ", status " : "",
                  ups ? ups_status_name(flags) : "");
    t->online = 1;
    t->reason[0] = '\0';
    set_offline_flag(t, false);

    /* telemetry */
    ccgw_value_t tel[UPSMIB_N + 512];
    size_t n = 0;
    for (int i = 0; ups && i < UPSMIB_N; i++) {
        const upsmib_obj_t *o = &upsmib_objs[i];
        if (!o->telemetry || !t->ups.have[i])
            continue;
        double v = (double)t->ups.v[i] * o->scale;
        if (o->scale == 1 || o->scale == 60)
            tel[n++] = CCGW_V_INT_U(o->telemetry, (int64_t)llround(v), o->unit);
        else
            tel[n++] = CCGW_V_DOUBLE(o->telemetry, v, o->unit);
    }
    for (size_t i = 0; i < t->n_points && n < CCGW_COUNT(tel); i++) {
        snmp_point_t *p = &t->points[i];
        if (!p->have || p->state)
            continue;
        if (p->is_text)
            tel[n++] = CCGW_V_STRING(p->name, p->text);
        else if (p->type == PT_INT)
            tel[n++] = CCGW_V_INT_U(p->name, (int64_t)llround(p->num), p->unit);
        else
            tel[n++] = CCGW_V_DOUBLE(p->name, p->num, p->unit);
    }
    if (n)
        ccgw_device_telemetry(t->dev, tel, n);

    if (ups) {
        publish_flags_locked(t, flags, NULL);
        /* alarms raised by UPS-MIB alarm traps end when the agent reports none */
        if (t->ups.have[UPSMIB_ALARMS_PRESENT] && t->ups.v[UPSMIB_ALARMS_PRESENT] == 0) {
            for (size_t k = 0; k < t->n_trap_alarms; k++)
                ccgw_alarm_clear(t->dev, t->trap_alarms[k], "upsAlarmsPresent is 0");
            t->n_trap_alarms = 0;
        }
    }
    /* threshold alarms of points */
    for (size_t i = 0; i < t->n_points; i++) {
        snmp_point_t *p = &t->points[i];
        if (!p->alarm_code || !p->have || p->is_text)
            continue;
        bool want = snmp_point_in_alarm(&p->alarm, p->num);
        if (want && !p->alarm_active) {
            char msg[200];
            if (!p->alarm_msg)
                snprintf(msg, sizeof msg, "%s is %.6g%s%s", p->name, p->num, p->unit ? " " : "",
                         p->unit ? p->unit : "");
            ccgw_value_t data[] = {CCGW_V_DOUBLE(p->name, p->num, p->unit)};
            if (ccgw_alarm_raise(t->dev, p->alarm_code, p->alarm_sev, p->alarm_msg ? p->alarm_msg : msg,
                                 data, CCGW_COUNT(data)) == CCGW_OK)
                p->alarm_active = true;
        } else if (!want && (p->alarm_active || !p->alarm_known)) {
            ccgw_alarm_clear(t->dev, p->alarm_code, NULL);
            p->alarm_active = false;
        }
        p->alarm_known = true;
    }
    pthread_mutex_unlock(&t->pub_lock);
}

/* ---- worker ---- */

static void *worker(void *arg)
{
    snmp_target_t *t = arg;
    char why[SNMP_REASON_LEN];
    size_t nslots = (t->ups_mib ? UPSMIB_N : 0) + t->n_points;
    slot_t *slots = calloc(nslots ? nslots : 1, sizeof *slots);
    if (!slots) {
        target_offline(t, "out of memory");
        return NULL;
    }
    size_t k = 0;
    for (int i = 0; t->ups_mib && i < UPSMIB_N; i++, k++) {
        uint32_t o[SNMP_OID_MAX];
        int n = snmp_oid_parse(upsmib_objs[i].oid, o, SNMP_OID_MAX);
        for (int j = 0; j < n; j++)
            slots[k].name[j] = o[j];
        slots[k].len = (size_t)n;
        slots[k].ups = i;
    }
    for (size_t i = 0; i < t->n_points; i++, k++) {
        for (size_t j = 0; j < t->points[i].oid_len; j++)
            slots[k].name[j] = t->points[i].oid[j];
        slots[k].len = t->points[i].oid_len;
        slots[k].ups = -1;
        slots[k].pt = &t->points[i];
    }

    uint64_t next = 0;
    while (!stopping(t)) {
        uint64_t now = mono_ms();
        if (now >= next) {
            next = now + t->poll_ms;
            if (!t->sess && open_session(t, why, sizeof why) < 0) {
                target_offline(t, why);
            } else if (t->sess) {
                memset(&t->ups, 0, sizeof t->ups);
                for (size_t i = 0; i < t->n_points; i++)
                    t->points[i].have = false;
                if (get_slots(t, slots, nslots, why, sizeof why) < 0) {
                    if (stopping(t))
                        break;
                    target_offline(t, why);
                    /* a fresh session re-discovers a restarted agent's engine */
                    close_session(t);
                } else {
                    publish_poll(t);
                }
            }
            now = mono_ms();
        }
        if (now < next) {
            struct pollfd p = {.fd = t->wake_fd, .events = POLLIN};
            if (poll(&p, 1, (int)(next - now)) > 0) {
                uint64_t v;
                ssize_t r = read(t->wake_fd, &v, sizeof v);
                (void)r;
                next = 0; /* woken: poll now (a trap arrived), or stop */
            }
        }
    }
    close_session(t);
    free(slots);
    return NULL;
}

void snmp_target_wake(snmp_target_t *t)
{
    if (t->wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(t->wake_fd, &one, sizeof one);
        (void)w;
    }
}

static void target_stop(snmp_target_t *t)
{
    if (t->thread_started) {
        pthread_mutex_lock(&t->lock);
        t->stop = true;
        pthread_mutex_unlock(&t->lock);
        snmp_target_wake(t);
        pthread_join(t->thread, NULL);
        t->thread_started = false;
    }
    if (t->wake_fd >= 0) {
        close(t->wake_fd);
        t->wake_fd = -1;
    }
}

int snmp_targets_start(snmp_t *s)
{
    for (size_t i = 0; i < s->n_targets; i++) {
        snmp_target_t *t = &s->targets[i];
        t->stop = false;
        t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (t->wake_fd < 0 || pthread_create(&t->thread, NULL, worker, t) != 0) {
            CCGW_ERROR(s->inst, "snmp: cannot start the worker of %s", t->id);
            if (t->wake_fd >= 0) {
                close(t->wake_fd);
                t->wake_fd = -1;
            }
            for (size_t k = 0; k < i; k++)
                target_stop(&s->targets[k]);
            return CCGW_ENOMEM;
        }
        t->thread_started = true;
    }
    return CCGW_OK;
}

void snmp_targets_stop(snmp_t *s)
{
    for (size_t i = 0; i < s->n_targets; i++) {
        snmp_target_t *t = &s->targets[i];
        if (t->thread_started) {
            pthread_mutex_lock(&t->lock);
            t->stop = true;
            pthread_mutex_unlock(&t->lock);
            snmp_target_wake(t);
        }
    }
    for (size_t i = 0; i < s->n_targets; i++)
        target_stop(&s->targets[i]);
}
