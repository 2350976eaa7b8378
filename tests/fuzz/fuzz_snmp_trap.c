/*
 * fuzz_snmp_trap - libFuzzer target for the trap path's decoder: a raw UDP
 * payload as the trap receiver gets it (SNMPv1/v2c message: version,
 * community, PDU) decoded by net-snmp (snmp_comstr_parse + snmp_pdu_parse,
 * what the receiver's session runs), then the plugin's own mapping of the
 * result: the snmpTrapOID lookup, UPS-MIB trap kind, the well-known alarm
 * table, the private trap rules and OID formatting (plugins/snmp/snmp_map.c).
 */
#include <net-snmp/net-snmp-config.h>
#include <net-snmp/net-snmp-includes.h>
#include <net-snmp/library/snmp_impl.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "snmp_map.h"

static const oid trap_oid_name[] = {1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0}; /* snmpTrapOID.0 */

static snmp_trap_rule_t rules[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_CONFIG_LOAD, 1);
    netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_PERSISTENT_LOAD, 1);
    netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DONT_PERSIST_STATE, 1);
    setenv("MIBS", "", 1);
    init_snmp("ccgw-fuzz");
    rules[0].oid_len = (size_t)snmp_oid_parse("1.3.6.1.4.1.99999.0.1", rules[0].oid, SNMP_OID_MAX);
    rules[1].oid_len = (size_t)snmp_oid_parse("1.3.6.1.2.1.33.2.0.1", rules[1].oid, SNMP_OID_MAX);
    return 0;
}

static size_t to_u32(const oid *o, size_t n, uint32_t *out)
{
    if (n > SNMP_OID_MAX)
        n = SNMP_OID_MAX;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint32_t)o[i];
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65535)
        return 0;
    u_char buf[65536];
    memcpy(buf, data, size);
    u_char community[256];
    size_t community_len = sizeof community;
    long version = 0;
    size_t len = size;
    u_char *pdu_data = snmp_comstr_parse(buf, &len, community, &community_len, &version);
    if (!pdu_data)
        return 0;
    netsnmp_pdu *pdu = snmp_pdu_create(0);
    if (!pdu)
        return 0;
    pdu->version = version;
    if (snmp_pdu_parse(pdu, pdu_data, &len) == 0) {
        uint32_t toid[SNMP_OID_MAX];
        size_t tlen = 0;
        for (netsnmp_variable_list *v = pdu->variables; v; v = v->next_variable) {
            if (v->type == ASN_OBJECT_ID && v->name_length == OID_LENGTH(trap_oid_name) &&
                snmp_oid_compare(v->name, v->name_length, trap_oid_name, OID_LENGTH(trap_oid_name)) == 0 &&
                v->val.objid) {
                tlen = to_u32(v->val.objid, v->val_len / sizeof(oid), toid);
                break;
            }
        }
        if (pdu->command == SNMP_MSG_TRAP && pdu->enterprise)
            tlen = to_u32(pdu->enterprise, pdu->enterprise_length, toid);
        char txt[600];
        snmp_oid_format(toid, tlen, txt, sizeof txt);
        (void)upsmib_trap_kind(toid, tlen);
        (void)snmp_trap_match(rules, 2, toid, tlen);
        ccgw_severity_t sev;
        (void)upsmib_well_known_alarm(toid, tlen, &sev);
        for (netsnmp_variable_list *v = pdu->variables; v; v = v->next_variable) {
            uint32_t name[SNMP_OID_MAX];
            size_t n = to_u32(v->name, v->name_length, name);
            snmp_oid_format(name, n, txt, sizeof txt);
            if (v->type == ASN_OBJECT_ID && v->val.objid) {
                n = to_u32(v->val.objid, v->val_len / sizeof(oid), name);
                (void)upsmib_well_known_alarm(name, n, &sev);
            }
        }
    }
    snmp_free_pdu(pdu);
    return 0;
}
