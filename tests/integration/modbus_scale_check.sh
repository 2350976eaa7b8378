#!/bin/bash
# modbus_scale_check.sh CCGW_BIN MODBUS_SIM PLUGIN_DIR
#
# The modbus plugin with many TCP devices (docs/plugins/modbus.md, "Threads and links"):
#  1. 600 devices with their own connections (3 simulators, --generic 200): every one comes
#     online and the gateway keeps running. libmodbus waits with select(), which aborts on a
#     descriptor >= 1024; each link also has two eventfds, made before its socket, and before the
#     plugin reserved low numbers for its sockets the gateway died at about 340 devices ("bit out
#     of range 0 - FD_SETSIZE"); with only the wake eventfds moved above 1024, at about 500.
#  2. connection: shared: 20 devices behind one simulator use one TCP connection, and all of them
#     come online.
# MQTT is off; "online" is read from the gateway's log. Exit 0 when all pass, 1 otherwise.
set -u
[ $# -eq 3 ] || { echo "usage: $0 CCGW_BIN MODBUS_SIM PLUGIN_DIR" >&2; exit 2; }
ccgw=$1 sim=$2 plugin_dir=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/ccgw-mbscale.XXXXXX") || exit 1
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)"
failed=0
ok() { echo "ok   - $*"; }
bad() { failed=1; echo "FAIL - $*"; }

start_sim() {  # start_sim NAME ARGS...: sets PORT
    local name=$1 i; shift
    "$sim" "$@" > "$work/$name.out" 2> "$work/$name.err" &
    pids+=("$!")
    for i in $(seq 1 100); do
        PORT=$(sed -n 's/^LISTENING tcp [0-9.]*:\([0-9]*\)$/\1/p' "$work/$name.out")
        [ -n "$PORT" ] && return 0
        sleep 0.05
    done
    echo "simulator $name did not start: $(cat "$work/$name.err")" >&2
    exit 1
}

config() {  # config FILE CONNECTION PORT... (200 units per port, or $UNITS)
    local f=$1 conn=$2 p u; shift 2
    {
        printf 'gateway:\n  site: hq\n  id: mbscale\n  log_level: info\n  plugin_dirs: ["%s"]\n  data_dir: "%s/data"\n' "$plugin_dir" "$work"
        printf 'mqtt: {enabled: false}\ninstances:\n  - id: rooms\n    plugin: modbus\n    options:\n'
        printf '      profiles:\n        - id: g\n          points:\n'
        printf '            - {name: t0, table: input, address: 0, type: int16, scale: 0.1}\n'
        printf '            - {name: d0, table: discrete, address: 0, type: bool}\n'
        printf '      devices:\n'
        for p in "$@"; do
            for u in $(seq 1 "$UNITS"); do
                printf '        - {id: d%s-%d, class: env, host: 127.0.0.1, port: %s, unit_id: %d, connection: %s, poll_interval_ms: 500, profile: g}\n' \
                    "$p" "$u" "$p" "$u" "$conn"
            done
        done
    } > "$f"
}

wait_online() {  # wait_online LOG N TIMEOUT_S GW_PID: 0 when N devices logged "online"
    local i n=0
    for i in $(seq 1 $(($3 * 10))); do
        n=$(grep -c ': online (' "$1" 2>/dev/null)
        [ "$n" -ge "$2" ] && return 0
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---- 1. 600 devices, own connections
start_sim a --tcp 0 --generic 200; pa=$PORT
start_sim b --tcp 0 --generic 200; pb=$PORT
start_sim c --tcp 0 --generic 200; pc=$PORT
UNITS=200 config "$work/own.yaml" own "$pa" "$pb" "$pc"
mkdir -p "$work/data"
"$ccgw" --config "$work/own.yaml" 2> "$work/own.log" &
gw=$!; pids+=("$gw")
if wait_online "$work/own.log" 600 60 "$gw"; then ok "600 devices with their own connections online"
else bad "600 devices: $(grep -c ': online (' "$work/own.log") online; $(tail -3 "$work/own.log")"; fi
sleep 1
if kill -0 "$gw" 2>/dev/null; then ok "gateway running with 600 TCP connections"; else bad "gateway died: $(tail -3 "$work/own.log")"; fi
if grep -q "too many open descriptors\|FD_SETSIZE" "$work/own.log"; then bad "a socket above FD_SETSIZE: $(grep -m1 'too many open' "$work/own.log")"; else ok "no socket above FD_SETSIZE"; fi
n=$(ls /proc/"$gw"/fd 2>/dev/null | wc -l)
sockets_low=$(for f in /proc/"$gw"/fd/*; do l=$(readlink "$f"); case $l in socket:*) echo "${f##*/}";; esac; done | awk '$1 < 1024' | wc -l)
[ "$sockets_low" -ge 600 ] && ok "$sockets_low sockets below 1024 ($n descriptors open)" || bad "only $sockets_low sockets below 1024 ($n descriptors open)"
kill -TERM "$gw"; wait "$gw"; rc=$?
[ "$rc" -eq 0 ] && ok "clean stop" || bad "exit status $rc after SIGTERM"

# ---- 2. connection: shared
start_sim s --tcp 0 --generic 20 -v; ps=$PORT
UNITS=20 config "$work/shared.yaml" shared "$ps"
"$ccgw" --config "$work/shared.yaml" 2> "$work/shared.log" &
gw=$!; pids+=("$gw")
if wait_online "$work/shared.log" 20 30 "$gw"; then ok "20 devices on a shared connection online"
else bad "shared: $(grep -c ': online (' "$work/shared.log") online; $(tail -3 "$work/shared.log")"; fi
sleep 1.2   # a few polls of every device
conns=$(grep -c "tcp client fd [0-9]* connected" "$work/s.err")
[ "$conns" -eq 1 ] && ok "one TCP connection for 20 shared devices" || bad "$conns connections for 20 shared devices"
grep -q "(shared)" "$work/shared.log" && ok "link named 'tcp 127.0.0.1:$ps (shared)'" || bad "no shared link in the log"
kill -TERM "$gw"; wait "$gw"; rc=$?
[ "$rc" -eq 0 ] && ok "clean stop" || bad "exit status $rc after SIGTERM"
exit $failed
