#!/usr/bin/env bash
# sdk_exports.sh SRC_DIR DAEMON PLUGIN_DIR
# The SDK's ABI surface, checked three ways:
#  1. every function declared in sdk/include/ccgw/*.h is in sdk/ccgw.dynlist and back;
#  2. the daemon exports each of them (plugins resolve them against it);
#  3. each plugin exports its descriptor and no other ccgw_ symbol (-fvisibility=hidden).
set -euo pipefail
src=$1 daemon=$2 plugdir=$3
fail=0
declared=$(grep -ohE '\bccgw_[a-z_0-9]+\(' "$src"/sdk/include/ccgw/*.h | tr -d '(' | sort -u)
listed=$(grep -oE '^\s*ccgw_[a-z_0-9]+;' "$src/sdk/ccgw.dynlist" | tr -d ' ;' | sort -u)
if [ "$declared" != "$listed" ]; then
    echo "sdk/ccgw.dynlist and the headers differ:"
    diff <(echo "$declared") <(echo "$listed") || true
    fail=1
fi
exported=$(nm -D --defined-only "$daemon" | awk '$2 ~ /^[TW]$/ {print $3}' | grep '^ccgw_' | sort -u)
missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
extra=$(comm -13 <(echo "$declared") <(echo "$exported"))
[ -z "$missing" ] || { echo "the daemon does not export: $missing"; fail=1; }
[ -z "$extra" ] || { echo "the daemon exports non-SDK symbols: $extra"; fail=1; }
n=0
for so in "$plugdir"/*.so; do
    [ -e "$so" ] || continue
    n=$((n + 1))
    syms=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v -E '^(_init|_fini|_edata|_end|__bss_start)$' || true)
    if [ "$syms" != "ccgw_plugin_descriptor" ]; then
        echo "$so exports more than its descriptor: $(echo $syms)"
        fail=1
    fi
done
[ "$n" -gt 0 ] || { echo "no plugins found in $plugdir"; fail=1; }
[ $fail -eq 0 ] && echo "SDK surface: $(echo "$declared" | wc -l) calls, exported; $n plugins export only their descriptor"
exit $fail
