#!/usr/bin/env bash
# ccgwctl_check.sh - tools/ccgwctl against the real daemon.
#
#   tests/integration/ccgwctl_check.sh CCGW_BIN CCGWCTL_BIN MODBUS_SIM_BIN PLUGIN_DIR
#
# Starts the Modbus simulator (hvac unit 1 + env unit 2 on one ephemeral TCP
# port) and ccgw with MQTT disabled, HTTP on an ephemeral port (port 0: the
# bound port is read from the log line "http listening on 127.0.0.1:PORT"),
# an operator token (token_file) and a viewer token (sha256), and an alarm
# rule with a low threshold (env temperature >= 1: raised at once). Checks
# every command and its exit code (docs/ccgwctl.md):
#   status -> 0 with the instance; devices lists hvac and env; send
#   hvac.set_setpoint -> 0 with the reply, and tail then shows the new
#   setpoint; out-of-range value -> 1; viewer send -> 4; bad token -> 4;
#   unknown device -> 5; no server -> 3; usage errors -> 2; tail gets
#   telemetry, exits 0 on SIGINT, 3 when the gateway goes away; ack of the
#   rule's alarm -> 0, alarms shows it acknowledged, a second ack -> 1.
#   Then the same gateway over https (self-signed certificate): --cacert and
#   --insecure work for HTTP and the WebSocket, an untrusted certificate -> 3,
#   and tail --reconnect survives a restart of the gateway.
# Every process is stopped by PID (trap). Exit 0: all passed; 1: a check failed.
set -uo pipefail

if [ $# -ne 4 ]; then
    echo "usage: $0 CCGW_BIN CCGWCTL_BIN MODBUS_SIM_BIN PLUGIN_DIR" >&2
    exit 2
fi
CCGW=$1
CTL=$2
SIM=$3
PLUGIN_DIR=$4
for f in "$CCGW" "$CTL" "$SIM"; do
    [ -x "$f" ] || { echo "FAIL: $f is not executable" >&2; exit 1; }
done
[ -f "$PLUGIN_DIR/modbus.so" ] || { echo "FAIL: no modbus.so in $PLUGIN_DIR" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ccgwctl_check.XXXXXX")
pids=()       # background processes, stopped newest first
passed=0
failed=0

cleanup() {
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[$i]}" 2>/dev/null
    done
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        wait "${pids[$i]}" 2>/dev/null
    done
    if [ "$failed" -ne 0 ] || [ -n "${CCGW_IT_KEEP:-}" ]; then
        echo "--- ccgw log (last 40 lines) ---"
        tail -n 40 "$tmp/ccgw.log" 2>/dev/null
        [ -n "${CCGW_IT_KEEP:-}" ] && { echo "kept $tmp"; return; }
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }

# ctl ARGS...: runs ccgwctl; stdout in $tmp/out, stderr in $tmp/err, exit code in $rc.
rc=0
ctl() {
    "$CTL" --url "$URL" --timeout 20 "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
show() { sed 's/^/       | /' "$tmp/out" "$tmp/err" | head -n 20; }

# expect NAME WANT_RC [GREP_PATTERN]: checks the last ctl's exit code and stdout+stderr.
expect() {
    local name=$1 want=$2 pat=${3:-}
    if [ "$rc" -ne "$want" ]; then
        bad "$name: exit $rc, want $want"
        show
        return 1
    fi
    if [ -n "$pat" ] && ! cat "$tmp/out" "$tmp/err" | grep -Eq -- "$pat"; then
        bad "$name: exit $rc but no /$pat/ in the output"
        show
        return 1
    fi
    ok "$name (exit $rc)"
    return 0
}

# until_ok SECS CTL-ARGS... -- PATTERN: repeats ctl until exit 0 and PATTERN in stdout.
until_ok() {
    local secs=$1 end
    shift
    local args=() pat
    while [ "$1" != "--" ]; do args+=("$1"); shift; done
    pat=$2
    end=$((SECONDS + secs))
    while :; do
        ctl "${args[@]}"
        if [ "$rc" -eq 0 ] && grep -Eq -- "$pat" "$tmp/out"; then
            return 0
        fi
        [ "$SECONDS" -ge "$end" ] && return 1
        sleep 0.3
    done
}

# ---- Modbus simulator --------------------------------------------------------------
"$SIM" --tcp 0 >"$tmp/sim.out" 2>"$tmp/sim.log" &
pids+=("$!")
for _ in $(seq 1 50); do grep -q LISTENING "$tmp/sim.out" 2>/dev/null && break; sleep 0.1; done
MB_PORT=$(sed -n 's/^LISTENING tcp [0-9.]*:\([0-9]*\)$/\1/p' "$tmp/sim.out")
[ -n "$MB_PORT" ] || { bad "modbus-sim did not start: $(cat "$tmp/sim.log")"; exit 1; }
ok "modbus-sim listening on $MB_PORT"

# ---- ccgw ------------------------------------------------------------------------------
OP_TOKEN="op-$RANDOM$RANDOM-secret"
VIEW_TOKEN="view-$RANDOM$RANDOM-secret"
printf '%s\n' "$OP_TOKEN" >"$tmp/op.token"
chmod 600 "$tmp/op.token"
VIEW_SHA=$(printf '%s' "$VIEW_TOKEN" | sha256sum | cut -d' ' -f1)
mkdir -p "$tmp/data"

device() { # ID CLASS UNIT
    cat <<YAML
        - id: $1
          class: $2
          transport: tcp
          host: 127.0.0.1
          port: $MB_PORT
          unit_id: $3
          poll_interval_ms: 300
          timeout_ms: 500
          retries: 1
          offline_after: 3
YAML
}
{
    cat <<YAML
# written by tests/integration/ccgwctl_check.sh
gateway:
  site: hq
  id: gw1
  log_level: info
  plugin_dirs: ["$PLUGIN_DIR"]
  data_dir: "$tmp/data"

http:
  address: 127.0.0.1
  port: 0
  dashboard: false
  tokens:
    - name: duty-operator
      role: operator
      token_file: op.token
    - name: wall-screen
      role: viewer
      sha256: $VIEW_SHA

alarms:
  persist: false
  rules:
    - code: ctl_check_temp
      class: env
      device: room1-th1
      value: temperature
      type: high
      threshold: 1
      severity: minor
      message: ccgwctl check (temperature >= 1)

instances:
  - id: equipment-room
    plugin: modbus
    options:
      devices:
YAML
    device room1-ac1 hvac 1
    cat <<'YAML'
          points:
            - {name: supply_air.temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}
            - {name: return_air.temperature, table: input, address: 1, type: int16, scale: 0.1, unit: Cel}
            - {name: setpoint.cooling, table: holding, address: 0, type: int16, scale: 0.1, unit: Cel, writable: true, min: 16, max: 32}
            - {name: mode, table: holding, address: 2, type: uint16, enum: [off, cool, heat, dry, fan], publish: state, writable: true}
            - {name: run, table: coil, address: 0, type: bool, publish: none, writable: true}
            - {name: running, table: discrete, address: 0, type: bool, publish: state}
          commands:
            - {name: hvac.start, point: run, value: 1}
            - {name: hvac.stop, point: run, value: 0}
            - {name: hvac.set_setpoint, point: setpoint.cooling}
YAML
    device room1-th1 env 2
    cat <<'YAML'
          points:
            - {name: temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}
            - {name: humidity, table: input, address: 1, type: uint16, scale: 0.1, unit: "%RH"}
YAML
} >"$tmp/ccgw.yaml"

"$CCGW" --config "$tmp/ccgw.yaml" >"$tmp/ccgw.out" 2>"$tmp/ccgw.log" &
CCGW_PID=$!
pids+=("$CCGW_PID")
HTTP_PORT=
for _ in $(seq 1 100); do
    HTTP_PORT=$(sed -n 's/.*http listening on [0-9.]*:\([0-9][0-9]*\).*/\1/p' "$tmp/ccgw.log" | head -n 1)
    [ -n "$HTTP_PORT" ] && break
    kill -0 "$CCGW_PID" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$HTTP_PORT" ]; then
    bad "ccgw did not log 'http listening on ...' within 10 s"
    exit 1
fi
URL="http://127.0.0.1:$HTTP_PORT"
ok "ccgw http on $URL"
export CCGW_TOKEN_FILE="$tmp/op.token" # the operator by default; --token overrides
unset CCGW_TOKEN CCGW_URL

# ---- usage errors: 2 -------------------------------------------------------------------
ctl
expect "no command" 2
ctl frobnicate
expect "unknown command" 2 "unknown command"
ctl send
expect "send without a target" 2
ctl send hvac/room1-ac1/hvac.set_setpoint 'value:={'
expect "send with bad key:=JSON" 2
ctl send --help
expect "send --help" 0 "key=value"
ctl --timeout x status
expect "bad --timeout" 2

# ---- status --------------------------------------------------------------------------------
if until_ok 15 status -- "equipment-room +modbus +running"; then
    expect "status shows the running instance" 0 "equipment-room"
else
    bad "status never showed equipment-room running (exit $rc)"
    show
fi
if grep -q "mqtt *disabled" "$tmp/out"; then ok "status: mqtt disabled"; else bad "status: no 'mqtt disabled'"; show; fi
ctl --json status
expect "status --json" 0 '"health":\{.*"instances":\['

# ---- devices -------------------------------------------------------------------------------
if until_ok 15 devices -- "^hvac +room1-ac1 +yes" && grep -Eq "^env +room1-th1 +yes" "$tmp/out"; then
    expect "devices lists hvac and env online" 0
else
    ctl devices
    bad "devices: hvac room1-ac1 and env room1-th1 not both online (exit $rc)"
    show
fi
ctl devices --class env
if [ "$rc" -eq 0 ] && grep -q "room1-th1" "$tmp/out" && ! grep -q "room1-ac1" "$tmp/out"; then
    ok "devices --class env: env only"
else
    bad "devices --class env (exit $rc)"
    show
fi
ctl devices hvac/room1-ac1
expect "devices CLASS/DEVICE" 0 "online +yes"
ctl devices hvac/no-such-device
expect "devices unknown device" 5

# ---- send ----------------------------------------------------------------------------------
ctl send hvac/room1-ac1/hvac.set_setpoint value=23.5
expect "send hvac.set_setpoint value=23.5" 0 "^ok"
ctl --json send ccgw/v1/hq/hvac/room1-ac1/cmd/hvac.set_setpoint value=22.5
expect "send by topic --json: the reply" 0 '"ok":true'
ctl send hvac/room1-ac1/hvac.set_setpoint value=40
expect "send out of range -> 1" 1 "bad_arguments"
ctl --token "$VIEW_TOKEN" send hvac/room1-ac1/hvac.set_setpoint value=23
expect "viewer send -> 4" 4 "forbidden"
ctl --token "not-a-token" devices
expect "unknown token -> 4" 4 "unauthorized"
ctl send hvac/no-such-device/hvac.set_setpoint value=23
expect "unknown device -> 5" 5 "unknown_device"
ctl send hvac/room1-ac1/hvac.no_such_command
expect "unknown command -> 5" 5 "unknown_command"
ctl --token "$VIEW_TOKEN" devices
expect "viewer devices" 0 "room1-ac1"

# ---- no server: 3 -----------------------------------------------------------------------------
# a port nothing listens on: bind one with the simulator's port + 1..
for p in $(seq $((HTTP_PORT + 1)) $((HTTP_PORT + 50))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { DEAD_PORT=$p; break; }
done
"$CTL" --url "http://127.0.0.1:$DEAD_PORT" --timeout 3 status >"$tmp/out" 2>"$tmp/err"
rc=$?
expect "no server: status -> 3" 3 "cannot reach"
"$CTL" --url "http://127.0.0.1:$DEAD_PORT" --timeout 3 tail 'ccgw/v1/#' >"$tmp/out" 2>"$tmp/err"
rc=$?
expect "no server: tail -> 3" 3

# ---- tail --------------------------------------------------------------------------------------
"$CTL" --url "$URL" --timeout 10 tail --count 1 --no-snapshot 'ccgw/v1/+/env/+/telemetry' >"$tmp/out" 2>"$tmp/err" &
tp=$!
pids+=("$tp")
for _ in $(seq 1 100); do kill -0 $tp 2>/dev/null || break; sleep 0.1; done
if kill -0 $tp 2>/dev/null; then
    kill -TERM $tp
    wait $tp
    bad "tail: no env telemetry within 10 s"
    show
else
    wait $tp
    rc=$?
    expect "tail --count 1 gets env telemetry" 0 '^ccgw/v1/hq/env/room1-th1/telemetry \{.*"temperature":'
fi

# a setpoint the simulator never had (it starts at 24.0) shows up in hvac telemetry
ctl send hvac/room1-ac1/hvac.set_setpoint value=25.5
expect "send value=25.5" 0 "^ok"
"$CTL" --url "$URL" --timeout 10 --json tail --count 20 'ccgw/v1/hq/hvac/room1-ac1/telemetry' >"$tmp/tail.json" 2>"$tmp/err" &
tp=$!
pids+=("$tp")
got=
for _ in $(seq 1 100); do
    grep -q '"setpoint.cooling":25\.5' "$tmp/tail.json" 2>/dev/null && { got=1; break; }
    kill -0 $tp 2>/dev/null || break
    sleep 0.1
done
kill -INT $tp 2>/dev/null
wait $tp
rc=$?
if [ -n "$got" ]; then
    ok "tail --json shows setpoint.cooling 25.5 after the send"
else
    bad "tail --json: no setpoint.cooling 25.5 in hvac telemetry"
    head -n 3 "$tmp/tail.json" "$tmp/err"
fi
if [ "$rc" -eq 0 ]; then ok "tail exits 0 on SIGINT (or after --count)"; else bad "tail exit $rc after SIGINT"; fi

# ---- alarms and ack ---------------------------------------------------------------------------
if until_ok 15 alarms -- "ctl_check_temp"; then
    expect "alarms shows the rule's alarm" 0 "minor +raised +env/room1-th1 +ctl_check_temp"
else
    bad "alarms: ctl_check_temp never raised (exit $rc)"
    show
fi
ctl --token "$VIEW_TOKEN" ack env/room1-th1/ctl_check_temp
expect "viewer ack -> 4" 4
ctl ack ccgw/v1/hq/env/room1-th1/alarm/ctl_check_temp --note "checked by ccgwctl_check"
expect "ack by topic -> 0" 0 "^ok"
ctl alarms
expect "alarms shows it acknowledged" 0 "acknowledged +env/room1-th1 +ctl_check_temp .*duty-operator"
ctl --json alarms
expect "alarms --json: acked_by the token's name" 0 '"acked_by":"duty-operator"'
ctl ack env/room1-th1/ctl_check_temp
expect "second ack -> 1" 1
ctl ack env/room1-th1/no_such_alarm
if [ "$rc" -eq 1 ] || [ "$rc" -eq 5 ]; then ok "ack of an inactive code -> $rc"; else bad "ack of an inactive code: exit $rc"; show; fi

# ---- tail when the gateway goes away: 3 ----------------------------------------------------------
"$CTL" --url "$URL" --timeout 10 tail 'ccgw/v1/#' >"$tmp/tail.out" 2>"$tmp/tail.err" &
tp=$!
pids+=("$tp")
for _ in $(seq 1 50); do [ -s "$tmp/tail.out" ] && break; sleep 0.1; done
kill -TERM "$CCGW_PID"
wait "$CCGW_PID"
ccgw_rc=$?
if [ "$ccgw_rc" -eq 0 ]; then ok "ccgw stopped (exit 0)"; else bad "ccgw exit $ccgw_rc on SIGTERM"; fi
for _ in $(seq 1 100); do kill -0 $tp 2>/dev/null || break; sleep 0.1; done
if kill -0 $tp 2>/dev/null; then
    kill -TERM $tp
    wait $tp
    bad "tail still running 10 s after the gateway stopped"
else
    wait $tp
    rc=$?
    if [ "$rc" -eq 3 ]; then
        ok "tail exits 3 when the connection drops"
    else
        bad "tail exit $rc when the gateway stopped (want 3)"
        cat "$tmp/tail.err"
    fi
fi
ctl status
expect "status after the gateway stopped -> 3" 3

# ---- https: the same gateway with TLS (a self-signed certificate is its own CA) ------------------
if openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 1 \
    -subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1; then
    sed "/^  port: 0\$/a\\  cert_file: \"$tmp/cert.pem\"\n  key_file: \"$tmp/key.pem\"" "$tmp/ccgw.yaml" >"$tmp/ccgw-tls.yaml"
    : >"$tmp/ccgw.log"
    "$CCGW" --config "$tmp/ccgw-tls.yaml" >"$tmp/ccgw.out" 2>"$tmp/ccgw.log" &
    CCGW_PID=$!
    pids+=("$CCGW_PID")
    HTTP_PORT=
    for _ in $(seq 1 100); do
        HTTP_PORT=$(sed -n 's/.*http listening on [0-9.]*:\([0-9][0-9]*\).*/\1/p' "$tmp/ccgw.log" | head -n 1)
        [ -n "$HTTP_PORT" ] && break
        kill -0 "$CCGW_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$HTTP_PORT" ]; then
        bad "ccgw with TLS did not log 'http listening on ...'"
    else
        URL="https://127.0.0.1:$HTTP_PORT"
        ok "ccgw https on $URL"
        ctl status
        expect "https without --cacert: certificate not trusted -> 3" 3 "certificate"
        if until_ok 15 --cacert "$tmp/cert.pem" devices -- "^hvac +room1-ac1 +yes"; then
            expect "https --cacert devices" 0
        else
            bad "https --cacert devices: hvac room1-ac1 not online (exit $rc)"
            show
        fi
        ctl --insecure status
        expect "https --insecure status" 0 "equipment-room"
        ctl --cacert "$tmp/cert.pem" send hvac/room1-ac1/hvac.set_setpoint value=23
        expect "https send" 0 "^ok"
        "$CTL" --url "$URL" --timeout 5 tail --count 1 'ccgw/v1/#' >"$tmp/out" 2>"$tmp/err"
        rc=$?
        expect "wss tail without --cacert -> 3" 3
        timeout 20 "$CTL" --url "$URL" --timeout 10 --cacert "$tmp/cert.pem" tail --count 1 --no-snapshot \
            'ccgw/v1/+/env/+/telemetry' >"$tmp/out" 2>"$tmp/err"
        rc=$?
        expect "wss tail --cacert gets telemetry" 0 '^ccgw/v1/hq/env/room1-th1/telemetry '

        # tail --reconnect survives a gateway restart (same port) and goes on printing
        "$CTL" --url "$URL" --timeout 10 --cacert "$tmp/cert.pem" tail --reconnect --no-snapshot \
            'ccgw/v1/+/env/+/telemetry' >"$tmp/tail.out" 2>"$tmp/tail.err" &
        tp=$!
        pids+=("$tp")
        for _ in $(seq 1 100); do [ -s "$tmp/tail.out" ] && break; sleep 0.1; done
        kill -TERM "$CCGW_PID"
        wait "$CCGW_PID"
        sleep 1
        if kill -0 "$tp" 2>/dev/null; then
            ok "tail --reconnect still running after the gateway stopped"
        else
            bad "tail --reconnect exited when the gateway stopped"
            cat "$tmp/tail.err"
        fi
        before=$(wc -l <"$tmp/tail.out")
        sed "s/^  port: 0\$/  port: $HTTP_PORT/" "$tmp/ccgw-tls.yaml" >"$tmp/ccgw-tls2.yaml"
        "$CCGW" --config "$tmp/ccgw-tls2.yaml" >"$tmp/ccgw.out" 2>"$tmp/ccgw.log" &
        CCGW_PID=$!
        pids+=("$CCGW_PID")
        for _ in $(seq 1 200); do
            [ "$(wc -l <"$tmp/tail.out")" -gt "$before" ] && break
            kill -0 "$tp" 2>/dev/null || break
            sleep 0.1
        done
        if [ "$(wc -l <"$tmp/tail.out")" -gt "$before" ]; then
            ok "tail --reconnect prints telemetry again after the restart"
        else
            bad "tail --reconnect: nothing new within 20 s of the restart"
            cat "$tmp/tail.err"
        fi
        kill -INT "$tp" 2>/dev/null
        wait "$tp"
        rc=$?
        if [ "$rc" -eq 0 ]; then ok "tail --reconnect exits 0 on SIGINT"; else bad "tail --reconnect exit $rc on SIGINT"; fi
    fi
else
    bad "openssl could not make a test certificate"
fi

echo "ccgwctl_check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
