#!/bin/sh
# snmpd `pass` script for the demo's SNMP UPS ups2: answers the UPS-MIB
# (1.3.6.1.2.1.33) from the values file named by CCGW_DEMO_SNMP_VALUES
# ("OID type value" lines in OID order). tools/run-demo swaps that file
# (atomically, with mv) to put the UPS on battery and back.
#   -g OID   GET: print OID, type, value
#   -n OID   GETNEXT: the first OID after it
V=${CCGW_DEMO_SNMP_VALUES:?}
case "$1" in
-g)
    while read -r o t v; do
        [ "$o" = "$2" ] && { printf '%s\n%s\n%s\n' "$o" "$t" "$v"; exit 0; }
    done < "$V" ;;
-n)
    f=0
    while read -r o t v; do
        case "$o" in "$2".*) f=1 ;; esac
        if [ $f = 1 ] && [ "$o" != "$2" ]; then printf '%s\n%s\n%s\n' "$o" "$t" "$v"; exit 0; fi
        [ "$o" = "$2" ] && f=1
    done < "$V" ;;
esac
exit 0
