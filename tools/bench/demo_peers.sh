# tools/bench/demo_peers.sh - sourced by tools/bench/run for row (e): starts the
# peers config/demo.yaml connects to, as tools/run-demo does (same commands,
# same configs): the Modbus simulator, dummy-ups + upsd (NUT, UPS ups1), snmpd
# (UPS-MIB of ups2 through tools/demo/snmp-pass.sh) and isapi-sim (door
# terminal). Needs the deps group `demo` (tools/lib/deps.sh).
#
#   demo_peers_start RUN_DIR BIN_DIR    (ROOT = the repository; appends to pids)
#
# Exports what config/demo.yaml reads (besides CCGW_MQTT_PORT):
# CCGW_MODBUS_PORT CCGW_NUT_PORT CCGW_SNMP_PORT CCGW_SNMP_TRAP_PORT
# CCGW_DOOR_PORT CCGW_DOOR_PASSWORD CCGW_HTTP_PORT CCGW_VIEWER_TOKEN
# CCGW_OPERATOR_TOKEN CCGW_ADMIN_TOKEN. Returns 1 (with a message on stderr)
# when a peer does not start.

demo_peers_wait_tcp() {
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
demo_peers_other_port() {  # a free port other than the ones given
    local p
    while p=$(ccgw_free_port) && [[ " $* " == *" $p "* ]]; do :; done
    echo "$p"
}

demo_peers_token() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

demo_peers_start() {
    local run=$1 bin=$2 nut=$1/nut used=()
    # ---- Modbus simulator
    "$bin/modbus-sim" --tcp 0 > "$run/sim.out" 2> "$run/sim.log" &
    pids+=($!)
    for _ in $(seq 1 50); do grep -q LISTENING "$run/sim.out" 2>/dev/null && break; sleep 0.1; done
    CCGW_MODBUS_PORT=$(sed -n 's/^LISTENING tcp [0-9.]*:\([0-9]*\)$/\1/p' "$run/sim.out")
    [ -n "$CCGW_MODBUS_PORT" ] || { echo "modbus-sim did not start: $(cat "$run/sim.log")" >&2; return 1; }
    used+=("${CCGW_MQTT_PORT:-}" "$CCGW_MODBUS_PORT")

    # ---- NUT: dummy-ups plays tools/demo/ups.seq, upsd serves it as ups1
    CCGW_NUT_PORT=$(demo_peers_other_port "${used[@]}")
    used+=("$CCGW_NUT_PORT")
    mkdir -p "$nut/state"
    chmod 755 "$run" "$nut"
    echo "MODE=standalone" > "$nut/nut.conf"
    cat > "$nut/ups.conf" <<CONF
[ups1]
  driver = dummy-ups
  port = ups1.seq
  pollinterval = 1
  desc = "ccgw demo UPS (NUT)"
CONF
    printf 'LISTEN 127.0.0.1 %s\nMAXAGE 5\n' "$CCGW_NUT_PORT" > "$nut/upsd.conf"
    : > "$nut/upsd.users"
    cp "$ROOT/tools/demo/ups.seq" "$nut/ups1.seq"
    chmod 644 "$nut"/*.conf "$nut/ups1.seq"
    chmod 640 "$nut/upsd.conf" "$nut/upsd.users"
    local as_nut=()
    if [ "$(id -u)" -eq 0 ]; then
        chown nut:nut "$nut/state"
        chgrp nut "$nut/upsd.conf" "$nut/upsd.users"
        as_nut=(-u nut)
    fi
    NUT_CONFPATH=$nut NUT_STATEPATH=$nut/state NUT_ALTPIDPATH=$nut/state \
        /lib/nut/dummy-ups -a ups1 "${as_nut[@]}" -F > "$run/dummy-ups.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 50); do [ -S "$nut/state/dummy-ups-ups1" ] && break; sleep 0.1; done
    [ -S "$nut/state/dummy-ups-ups1" ] || { echo "dummy-ups did not start: $(cat "$run/dummy-ups.log")" >&2; return 1; }
    NUT_CONFPATH=$nut NUT_STATEPATH=$nut/state NUT_ALTPIDPATH=$nut/state \
        /lib/nut/upsd "${as_nut[@]}" -F > "$run/upsd.log" 2>&1 &
    pids+=($!)
    demo_peers_wait_tcp "$CCGW_NUT_PORT" || { echo "upsd did not start: $(cat "$run/upsd.log")" >&2; return 1; }
    for _ in $(seq 1 50); do
        [[ $(upsc "ups1@127.0.0.1:$CCGW_NUT_PORT" ups.status 2>/dev/null) == OL* ]] && break
        sleep 0.1
    done

    # ---- snmpd: UPS-MIB of ups2 from a values file
    CCGW_SNMP_PORT=$(demo_peers_other_port "${used[@]}")
    used+=("$CCGW_SNMP_PORT")
    CCGW_SNMP_TRAP_PORT=$(demo_peers_other_port "${used[@]}")
    used+=("$CCGW_SNMP_TRAP_PORT")
    cp "$ROOT/tools/demo/ups2-online.values" "$run/ups2.values"
    cat > "$run/snmpd.conf" <<CONF
agentAddress udp:127.0.0.1:$CCGW_SNMP_PORT
rocommunity public 127.0.0.1
pass .1.3.6.1.2.1.33 $ROOT/tools/demo/snmp-pass.sh
CONF
    CCGW_DEMO_SNMP_VALUES=$run/ups2.values SNMP_PERSISTENT_DIR=$run/snmp-persist \
        /usr/sbin/snmpd -f -Lo -C -c "$run/snmpd.conf" -M /dev/null -m "" > "$run/snmpd.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 50); do grep -q "NET-SNMP version" "$run/snmpd.log" 2>/dev/null && break; sleep 0.1; done
    grep -q "NET-SNMP version" "$run/snmpd.log" || { echo "snmpd did not start: $(cat "$run/snmpd.log")" >&2; return 1; }

    # ---- the door terminal simulator
    CCGW_DOOR_PASSWORD=demo-door-pass
    "$bin/isapi-sim" --port 0 --user admin --password "$CCGW_DOOR_PASSWORD" --heartbeat-ms 5000 \
        > "$run/isapi-sim.out" 2> "$run/isapi-sim.log" &
    pids+=($!)
    for _ in $(seq 1 50); do grep -q LISTENING "$run/isapi-sim.out" 2>/dev/null && break; sleep 0.1; done
    CCGW_DOOR_PORT=$(sed -n 's/^LISTENING http [0-9.]*:\([0-9]*\)$/\1/p' "$run/isapi-sim.out")
    [ -n "$CCGW_DOOR_PORT" ] || { echo "isapi-sim did not start: $(cat "$run/isapi-sim.log")" >&2; return 1; }
    used+=("$CCGW_DOOR_PORT")

    # ---- the gateway's HTTP port and one token per role
    CCGW_HTTP_PORT=$(demo_peers_other_port "${used[@]}")
    CCGW_VIEWER_TOKEN=$(demo_peers_token) CCGW_OPERATOR_TOKEN=$(demo_peers_token) CCGW_ADMIN_TOKEN=$(demo_peers_token)
    export CCGW_MODBUS_PORT CCGW_NUT_PORT CCGW_SNMP_PORT CCGW_SNMP_TRAP_PORT CCGW_DOOR_PORT \
        CCGW_DOOR_PASSWORD CCGW_HTTP_PORT CCGW_VIEWER_TOKEN CCGW_OPERATOR_TOKEN CCGW_ADMIN_TOKEN
    return 0
}
