/*
 * snmp_trap.c - the trap receiver: one UDP server session per instance on
 * trap_address:trap_port, read by a thread of its own (poll on the socket
 * and an eventfd, then snmp_sess_read()), for v2c traps (community checked),
 * v1 traps (community checked, enterprise.0.specific as the trap OID), and
 * v3 traps and informs (USM users from `trap_users`, authPriv). Informs are
 * acknowledged. Each notification is matched to a target by its source
 * address (or the mapped trap's `device`) and turned into events and alarms
 * at once; the target is then woken to poll, so state and telemetry follow.
 */
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <net-snmp/net-snmp-config.h>
#include <net-snmp/net-snmp-includes.h>
#include <net-snmp/library/large_fd_set.h>

#include "snmp_plugin.h"

static const oid snmptrap_oid[] = {1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0};
static const oid upsalarm_descr_prefix[] = {1, 3, 6, 1, 2, 1, 33, 1, 6, 2, 1, 2};

static snmp_target_t *target_by_addr(snmp_t *s, const char *addr)
{
    for (size_t i = 0; i < s->n_targets; i++) {
        if (strcmp(s->targets[i].trap_source, addr) == 0)
            return &s->targets[i];
    }
    return NULL;
}

static size_t to_u32(const oid *o, size_t n, uint32_t *out)
{
    if (n > SNMP_OID_MAX)
        n = SNMP_OID_MAX;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint32_t)o[i];
    return n;
}

/* Event data: the varbinds as {"oid": "value"} (at most 16). */
static size_t varbind_data(netsnmp_pdu *pdu, ccgw_value_t *vals, char (*names)[128],
                           char (*texts)[256], size_t max)
{
    size_t n = 0;
    for (netsnmp_variable_list *v = pdu->variables; v && n < max; v = v->next_variable) {
        if (v->name_length == OID_LENGTH(snmptrap_oid) &&
            snmp_oid_compare(v->name, v->name_length, snmptrap_oid, OID_LENGTH(snmptrap_oid)) == 0)
            continue;
        uint32_t o[SNMP_OID_MAX];
        size_t k = to_u32(v->name, v->name_length, o);
        snmp_oid_format(o, k, names[n], sizeof names[0]);
        if (!snmp_name_ok(names[n]))
            continue;
        if (v->type == ASN_OCTET_STR) {
            size_t l = v->val_len < 255 ? v->val_len : 255;
            for (size_t i = 0; i < l; i++) {
                unsigned char c = v->val.string[i];
                texts[n][i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
            }
            texts[n][l] = '\0';
        } else if (v->type == ASN_OBJECT_ID) {
            uint32_t vo[SNMP_OID_MAX];
            size_t vk = to_u32(v->val.objid, v->val_len / sizeof(oid), vo);
            snmp_oid_format(vo, vk, texts[n], sizeof texts[0]);
        } else if (v->type == ASN_INTEGER) {
            snprintf(texts[n], sizeof texts[0], "%ld", *v->val.integer);
        } else if (v->type == ASN_COUNTER || v->type == ASN_GAUGE || v->type == ASN_TIMETICKS ||
                   v->type == ASN_UINTEGER) {
            snprintf(texts[n], sizeof texts[0], "%lu", (unsigned long)*v->val.integer);
        } else if (v->type == ASN_IPADDRESS && v->val_len == 4) {
            snprintf(texts[n], sizeof texts[0], "%u.%u.%u.%u", v->val.string[0], v->val.string[1],
                     v->val.string[2], v->val.string[3]);
        } else {
            texts[n][0] = '\0';
        }
        vals[n] = CCGW_V_STRING(names[n], texts[n]);
        n++;
    }
    return n;
}

static void handle_trap(snmp_t *s, netsnmp_pdu *pdu, const char *src)
{
    uint32_t toid[SNMP_OID_MAX] = {0};
    size_t tlen = 0;
    if (pdu->command == SNMP_MSG_TRAP) {
        /* v1: enterprise.0.specific, or the generic trap's snmpTraps OID */
        if (pdu->trap_type == SNMP_TRAP_ENTERPRISESPECIFIC) {
            tlen = to_u32(pdu->enterprise, pdu->enterprise_length, toid);
            if (tlen + 2 <= SNMP_OID_MAX) {
                toid[tlen++] = 0;
                toid[tlen++] = (uint32_t)pdu->specific_type;
            }
        } else {
            static const uint32_t traps[] = {1, 3, 6, 1, 6, 3, 1, 1, 5};
            memcpy(toid, traps, sizeof traps);
            tlen = CCGW_COUNT(traps);
            toid[tlen++] = (uint32_t)pdu->trap_type + 1;
        }
    } else {
        for (netsnmp_variable_list *v = pdu->variables; v; v = v->next_variable) {
            if (v->type == ASN_OBJECT_ID && v->name_length == OID_LENGTH(snmptrap_oid) &&
                snmp_oid_compare(v->name, v->name_length, snmptrap_oid, OID_LENGTH(snmptrap_oid)) == 0) {
                tlen = to_u32(v->val.objid, v->val_len / sizeof(oid), toid);
                break;
            }
        }
    }
    char otxt[600];
    snmp_oid_format(toid, tlen, otxt, sizeof otxt);
    if (!tlen) {
        CCGW_DEBUG(s->inst, "snmp: notification from %s without snmpTrapOID ignored", src);
        return;
    }
    snmp_target_t *by_addr = target_by_addr(s, src);

    /* mapped private traps first: they may override a UPS-MIB one */
    bool mapped = false;
    for (size_t i = 0; i < s->n_traps; i++) {
        snmp_trap_map_t *m = &s->traps[i];
        if (!snmp_oid_equal(m->rule.oid, m->rule.oid_len, toid, tlen))
            continue;
        snmp_target_t *t = m->target ? m->target : by_addr;
        if (!t)
            continue;
        mapped = true;
        ccgw_value_t vals[16];
        char names[16][128], texts[16][256];
        size_t nv = varbind_data(pdu, vals, names, texts, 16);
        ccgw_value_t data[] = {
            CCGW_V_STRING("trap", otxt),
            CCGW_V_STRING("source", src),
            CCGW_V_OBJECT("varbinds", vals, nv),
        };
        CCGW_INFO(s->inst, "snmp: trap %s from %s -> %s%s%s", otxt, src, t->id,
                  m->event ? " event " : "", m->event ? m->event : "");
        if (m->event)
            ccgw_device_event(t->dev, m->event, data, CCGW_COUNT(data));
        if (m->alarm)
            snmp_target_trap_alarm(t, m->alarm, m->severity, !m->clear,
                                   m->message ? m->message : (m->clear ? NULL : otxt));
        snmp_target_wake(t);
    }
    if (mapped)
        return;

    upstrap_t kind = upsmib_trap_kind(toid, tlen);
    snmp_target_t *t = by_addr;
    if (kind == UPSTRAP_NONE || !t) {
        CCGW_DEBUG(s->inst, "snmp: trap %s from %s: %s", otxt, src,
                   t ? "not mapped" : "no target has this address");
        return;
    }
    CCGW_INFO(s->inst, "snmp: UPS-MIB trap %s from %s (%s)", otxt, src, t->id);
    switch (kind) {
    case UPSTRAP_ON_BATTERY:
        snmp_target_apply_flags(t, UPS_F_OB | UPS_F_DISCHRG, UPS_F_OL, "trap upsTrapOnBattery");
        break;
    case UPSTRAP_ALARM_ENTRY_ADDED:
    case UPSTRAP_ALARM_ENTRY_REMOVED: {
        bool raise = kind == UPSTRAP_ALARM_ENTRY_ADDED;
        for (netsnmp_variable_list *v = pdu->variables; v; v = v->next_variable) {
            if (v->type != ASN_OBJECT_ID || v->name_length < OID_LENGTH(upsalarm_descr_prefix) ||
                snmp_oid_compare(v->name, OID_LENGTH(upsalarm_descr_prefix), upsalarm_descr_prefix,
                                 OID_LENGTH(upsalarm_descr_prefix)) != 0)
                continue;
            uint32_t ao[SNMP_OID_MAX];
            size_t an = to_u32(v->val.objid, v->val_len / sizeof(oid), ao);
            ccgw_severity_t sev = CCGW_SEV_MAJOR;
            const char *code = upsmib_well_known_alarm(ao, an, &sev);
            if (code)
                snmp_target_trap_alarm(t, code, sev, raise, raise ? "UPS-MIB alarm (trap)" : NULL);
        }
        break;
    }
    default:
        break;
    }
    snmp_target_wake(t);
}

static int trap_cb(int op, netsnmp_session *sp, int reqid, netsnmp_pdu *pdu, void *magic)
{
    (void)reqid;
    snmp_t *s = magic;
    if (op != NETSNMP_CALLBACK_OP_RECEIVED_MESSAGE || !pdu)
        return 1;
    if (pdu->command != SNMP_MSG_TRAP && pdu->command != SNMP_MSG_TRAP2 &&
        pdu->command != SNMP_MSG_INFORM)
        return 1;
    char src[INET6_ADDRSTRLEN] = "?";
    if (pdu->transport_data && pdu->transport_data_length >= (int)sizeof(netsnmp_sockaddr_storage)) {
        const netsnmp_indexed_addr_pair *ap = pdu->transport_data;
        if (ap->remote_addr.sa.sa_family == AF_INET)
            inet_ntop(AF_INET, &ap->remote_addr.sin.sin_addr, src, sizeof src);
    }
    if (pdu->version == SNMP_VERSION_1 || pdu->version == SNMP_VERSION_2c) {
        size_t cl = strlen(s->trap_community);
        if (!pdu->community || pdu->community_len != cl || memcmp(pdu->community, s->trap_community, cl) != 0) {
            CCGW_WARN(s->inst, "snmp: trap from %s with a wrong community ignored", src);
            return 1;
        }
    } else if (pdu->version == SNMP_VERSION_3) {
        if (pdu->securityLevel != SNMP_SEC_LEVEL_AUTHPRIV) {
            CCGW_WARN(s->inst, "snmp: v3 trap from %s not authPriv: ignored", src);
            return 1;
        }
    } else {
        return 1;
    }
    if (pdu->command == SNMP_MSG_INFORM) {
        netsnmp_pdu *reply = snmp_clone_pdu(pdu);
        if (reply) {
            reply->command = SNMP_MSG_RESPONSE;
            reply->errstat = 0;
            reply->errindex = 0;
            if (!snmp_sess_send(s->trap_sess, reply))
                snmp_free_pdu(reply);
        }
    }
    handle_trap(s, pdu, src);
    (void)sp;
    return 1;
}

static bool trap_stopping(snmp_t *s)
{
    pthread_mutex_lock(&s->lock);
    bool st = s->trap_stop;
    pthread_mutex_unlock(&s->lock);
    return st;
}

/* net-snmp's large descriptor sets throughout: the trap socket may be above
 * FD_SETSIZE (opened by a reload while thousands of WebSocket clients are
 * connected), which a plain fd_set cannot hold. */
static void *trap_thread(void *arg)
{
    snmp_t *s = arg;
    netsnmp_large_fd_set fds;
    netsnmp_large_fd_set_init(&fds, FD_SETSIZE);
    while (!trap_stopping(s)) {
        int maxfd = 0, block = 0;
        NETSNMP_LARGE_FD_ZERO(&fds);
        struct timeval tv = {0, 0};
        snmp_sess_select_info2(s->trap_sess, &maxfd, &fds, &tv, &block);
        struct pollfd p[1 + 4];
        int np = 0;
        p[np++] = (struct pollfd){.fd = s->trap_wake, .events = POLLIN};
        for (int fd = 0; fd < maxfd && np < 5; fd++) {
            if (NETSNMP_LARGE_FD_ISSET(fd, &fds))
                p[np++] = (struct pollfd){.fd = fd, .events = POLLIN};
        }
        int n = poll(p, (nfds_t)np, 1000);
        if (n <= 0)
            continue;
        if (p[0].revents) {
            uint64_t v;
            ssize_t r = read(s->trap_wake, &v, sizeof v);
            (void)r;
            continue;
        }
        NETSNMP_LARGE_FD_ZERO(&fds);
        for (int i = 1; i < np; i++) {
            if (p[i].revents)
                NETSNMP_LARGE_FD_SET(p[i].fd, &fds);
        }
        snmp_sess_read2(s->trap_sess, &fds);
    }
    netsnmp_large_fd_set_cleanup(&fds);
    return NULL;
}

/* createUser line for net-snmp's own parser (key derivation included). */
static void add_trap_users(snmp_t *s)
{
    for (size_t i = 0; i < ccgw_config_count(s->trap_users); i++) {
        const ccgw_config_t *u = ccgw_config_at(s->trap_users, i);
        const char *eid = ccgw_config_string(u, "engine_id", NULL);
        char line[1200];
        snprintf(line, sizeof line, "%s%s%s%s %s \"%s\" %s \"%s\"", eid ? "-e " : "",
                 eid ? eid : "", eid ? " " : "", ccgw_config_string(u, "user", ""),
                 ccgw_config_string(u, "auth_protocol", "SHA"), ccgw_config_string(u, "auth_password", ""),
                 ccgw_config_string(u, "priv_protocol", "AES"), ccgw_config_string(u, "priv_password", ""));
        pthread_mutex_lock(snmp_global_lock());
        usm_parse_create_usmUser("createUser", line);
        pthread_mutex_unlock(snmp_global_lock());
        memset(line, 0, sizeof line);
    }
}

int snmp_trap_start(snmp_t *s)
{
    char spec[128];
    snprintf(spec, sizeof spec, "udp:%s:%d", s->trap_address, s->trap_port);
    add_trap_users(s);
    netsnmp_session cfg;
    snmp_sess_init(&cfg);
    cfg.peername = SNMP_DEFAULT_PEERNAME;
    cfg.version = SNMP_DEFAULT_VERSION;
    cfg.community_len = SNMP_DEFAULT_COMMUNITY_LEN;
    cfg.retries = SNMP_DEFAULT_RETRIES;
    cfg.timeout = SNMP_DEFAULT_TIMEOUT;
    cfg.callback = trap_cb;
    cfg.callback_magic = s;
    cfg.authenticator = NULL;
    cfg.isAuthoritative = SNMP_SESS_UNKNOWNAUTH;
    pthread_mutex_lock(snmp_global_lock());
    netsnmp_transport *tr = netsnmp_transport_open_server("snmptrap", spec);
    s->trap_sess = tr ? snmp_sess_add(&cfg, tr, NULL, NULL) : NULL;
    pthread_mutex_unlock(snmp_global_lock());
    if (!s->trap_sess) {
        CCGW_ERROR(s->inst, "snmp: cannot open the trap receiver on %s: %s", spec,
                   tr ? snmp_api_errstring(snmp_errno) : "bind failed (port in use or not allowed?)");
        ccgw_instance_health(s->inst, CCGW_HEALTH_FAILED, "trap receiver: cannot bind");
        return CCGW_EIO;
    }
    s->trap_stop = false;
    s->trap_wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->trap_wake < 0 || pthread_create(&s->trap_thread, NULL, trap_thread, s) != 0) {
        if (s->trap_wake >= 0)
            close(s->trap_wake);
        s->trap_wake = -1;
        pthread_mutex_lock(snmp_global_lock());
        snmp_sess_close(s->trap_sess);
        pthread_mutex_unlock(snmp_global_lock());
        s->trap_sess = NULL;
        return CCGW_ENOMEM;
    }
    s->trap_started = true;
    CCGW_INFO(s->inst, "snmp: trap receiver on %s", spec);
    return CCGW_OK;
}

void snmp_trap_stop(snmp_t *s)
{
    if (s->trap_started) {
        pthread_mutex_lock(&s->lock);
        s->trap_stop = true;
        pthread_mutex_unlock(&s->lock);
        uint64_t one = 1;
        ssize_t w = write(s->trap_wake, &one, sizeof one);
        (void)w;
        pthread_join(s->trap_thread, NULL);
        s->trap_started = false;
    }
    if (s->trap_wake >= 0) {
        close(s->trap_wake);
        s->trap_wake = -1;
    }
    if (s->trap_sess) {
        pthread_mutex_lock(snmp_global_lock());
        snmp_sess_close(s->trap_sess);
        pthread_mutex_unlock(snmp_global_lock());
        s->trap_sess = NULL;
    }
}
