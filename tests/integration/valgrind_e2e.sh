#!/usr/bin/env bash
# valgrind_e2e.sh CCGW MODBUS_SIM PLUGIN_DIR
# The daemon under valgrind memcheck against a real mosquitto and the Modbus
# simulator: start, poll, a write command and its reply, an unknown device,
# malformed JSON, then SIGTERM. Fails on any memcheck error or definite leak,
# or a non-zero exit. Needs a build without sanitizers (run-tests makes one).
set -euo pipefail
CCGW=$1 SIM=$2 PLUGINS=$3
DIR=$(mktemp -d /tmp/ccgw-valgrind.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
            [ "${KEEP:-}" = 1 ] || rm -rf "$DIR"; }
trap cleanup EXIT
free_port() { local p; for _ in $(seq 1 200); do p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }; done; return 1; }

MQTT=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' "$MQTT" > "$DIR/mosq.conf"
/usr/sbin/mosquitto -c "$DIR/mosq.conf" 2> "$DIR/mosq.log" & pids+=($!)
"$SIM" --tcp 0 > "$DIR/sim.out" 2> "$DIR/sim.log" & pids+=($!)
for _ in $(seq 1 50); do grep -q LISTENING "$DIR/sim.out" 2>/dev/null && break; sleep 0.1; done
MB=$(sed -n 's/^LISTENING tcp [0-9.]*:\([0-9]*\)$/\1/p' "$DIR/sim.out")
cat > "$DIR/ccgw.yaml" <<YAML
gateway: {site: hq, id: gw1, data_dir: "$DIR/data", plugin_dirs: ["$PLUGINS"]}
mqtt: {port: $MQTT}
instances:
  - id: room
    plugin: modbus
    options:
      devices:
        - id: ac1
          class: hvac
          host: 127.0.0.1
          port: $MB
          unit_id: 1
          poll_interval_ms: 200
          points:
            - {name: supply_air.temperature, table: input, address: 0, type: int16, scale: 0.1, unit: Cel}
            - {name: setpoint.cooling, table: holding, address: 0, type: int16, scale: 0.1, unit: Cel, writable: true, min: 16, max: 32}
            - {name: mode, table: holding, address: 2, type: uint16, enum: [off, cool, heat, dry, fan], publish: state}
            - {name: fault, table: discrete, address: 1, type: bool, publish: state, alarm: {code: fault}}
YAML
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$MQTT") 2>/dev/null && break; sleep 0.1; done
mosquitto_sub -h 127.0.0.1 -p "$MQTT" -t 'ccgw/v1/#' -v > "$DIR/sub.log" 2>&1 & pids+=($!)
valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite --track-origins=yes --log-file="$DIR/valgrind.log" \
    "$CCGW" --config "$DIR/ccgw.yaml" 2> "$DIR/ccgw.log" &
GW=$!
ok=0
for _ in $(seq 1 150); do grep -q 'hvac/ac1/telemetry' "$DIR/sub.log" && { ok=1; break; }
    kill -0 "$GW" 2>/dev/null || break; sleep 0.2; done
[ $ok = 1 ] || { echo "no telemetry under valgrind"; cat "$DIR/ccgw.log"; exit 1; }
mosquitto_pub -h 127.0.0.1 -p "$MQTT" -t ccgw/v1/hq/hvac/ac1/cmd/write -m '{"point":"setpoint.cooling","value":21.5}'
mosquitto_pub -h 127.0.0.1 -p "$MQTT" -t ccgw/v1/hq/hvac/nosuch/cmd/write -m '{}'
mosquitto_pub -h 127.0.0.1 -p "$MQTT" -t ccgw/v1/hq/hvac/ac1/cmd/write -m '{"point":'
for _ in $(seq 1 100); do [ "$(grep -c 'cmd/write/reply' "$DIR/sub.log")" -ge 3 ] && break; sleep 0.2; done
replies=$(grep -c 'cmd/write/reply' "$DIR/sub.log" || true)
grep -q '"ok":true' "$DIR/sub.log" || { echo "the write was not answered ok"; exit 1; }
kill -TERM "$GW"
set +e; wait "$GW"; rc=$?; set -e
echo "replies: $replies; ccgw exit: $rc"
if [ "$rc" -ne 0 ] || [ -s "$DIR/valgrind.log" ]; then
    echo "valgrind found problems (exit $rc):"; cat "$DIR/valgrind.log"; tail -20 "$DIR/ccgw.log"; exit 1
fi
[ "$replies" -ge 3 ] || { echo "expected 3 replies, got $replies"; exit 1; }
echo "valgrind: clean (no errors, no definite leaks), exit 0"
