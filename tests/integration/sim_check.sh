#!/usr/bin/env bash
# sim_check.sh - checks tools/sim/modbus-sim with real Modbus clients.
#
#   tests/integration/sim_check.sh [PATH/TO/modbus-sim]
#
# (default: $MODBUS_SIM_BIN or $MODBUS_SIM, else build/bin/modbus-sim). TCP: starts the simulator
# on an ephemeral port, reads every register with mbpoll and checks the ranges,
# writes and reads back, checks rejected writes, the test hooks, the plant
# dynamics, that an unknown unit id gets no answer, and that several clients
# are served at once (mbpoll and pymodbus). RTU: a socat pty pair, mbpoll and
# pymodbus round trips, exception 0x0B with --unknown-unit exception. Both
# simulators are stopped with SIGTERM by PID and must exit 0.
#
# Needs mbpoll, socat and python3-pymodbus (under /usr/bin/python3).
# Exit 0: all passed; 1: a check failed; 77: a required tool is missing.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
SIM=${1:-${MODBUS_SIM_BIN:-${MODBUS_SIM:-$repo/build/bin/modbus-sim}}}
PY=/usr/bin/python3

for tool in mbpoll socat; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool is not installed" >&2
        exit 77
    fi
done
if ! "$PY" -c 'import pymodbus' 2>/dev/null; then
    echo "SKIP: $PY has no pymodbus (apt-get install python3-pymodbus)" >&2
    exit 77
fi
if [ ! -x "$SIM" ]; then
    echo "FAIL: simulator not found at $SIM" >&2
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sim_check.XXXXXX")
pids=()
passed=0
failed=0

cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }

# check NAME VALUE LO HI: LO <= VALUE <= HI (numbers, decimals allowed)
check() {
    if [ -n "$2" ] && awk -v v="$2" -v lo="$3" -v hi="$4" \
        'BEGIN { exit !(v ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ && v + 0 >= lo + 0 && v + 0 <= hi + 0) }'; then
        ok "$1 = $2 (in $3..$4)"
    else
        bad "$1 = '$2' (want $3..$4)"
    fi
}

# eq NAME GOT WANT
eq() {
    if [ "$2" = "$3" ]; then ok "$1 = $2"; else bad "$1 = '$2' (want '$3')"; fi
}

# mb MBPOLL-ARGS...: runs mbpoll once; prints the values read, one a line
# (the unsigned value for 16-bit registers); stderr goes to $tmp/mb.err.
mb() {
    mbpoll -1 "$@" >"$tmp/mb.out" 2>"$tmp/mb.err"
    local rc=$?
    sed -n 's/^\[[0-9]*\]:[[:space:]]*\([-0-9.eE+]*\).*/\1/p' "$tmp/mb.out"
    return $rc
}

s16() { # two's complement of a 16-bit register value
    if [ "$1" -ge 32768 ]; then echo $(($1 - 65536)); else echo "$1"; fi
}

# start_sim NAME ARGS...: starts the simulator, waits for its LISTENING line;
# sets SIM_PID and SIM_LINE.
start_sim() {
    local name=$1 i
    shift
    "$SIM" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    SIM_PID=$!
    pids+=("$SIM_PID")
    for i in $(seq 1 100); do
        SIM_LINE=$(head -n 1 "$tmp/$name.out" 2>/dev/null)
        [ -n "$SIM_LINE" ] && return 0
        kill -0 "$SIM_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "simulator $name did not start:" >&2
    cat "$tmp/$name.err" >&2
    return 1
}

# stop_sim PID NAME LOG: SIGTERM, must exit 0 within 5 s, no sanitizer report.
stop_sim() {
    local pid=$1 name=$2 log=$3 i rc
    kill -TERM "$pid"
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        bad "$name did not stop on SIGTERM"
        kill -KILL "$pid"
    fi
    wait "$pid"
    rc=$?
    eq "$name exit status after SIGTERM" "$rc" 0
    if grep -q "ERROR: \(AddressSanitizer\|LeakSanitizer\)\|runtime error:" "$tmp/$log.err"; then
        bad "$name sanitizer report:"
        cat "$tmp/$log.err"
    fi
}

echo "# modbus-sim: $SIM"

############################################################ TCP
start_sim tcp --tcp 0 --period-ms 100 --seed 7 || exit 1
TCP_PID=$SIM_PID
case $SIM_LINE in
LISTENING\ tcp\ 127.0.0.1:[0-9]*) ok "first line: $SIM_LINE" ;;
*) bad "first line: '$SIM_LINE'"; exit 1 ;;
esac
PORT=${SIM_LINE##*:}
T=(-m tcp -p "$PORT" -o 1)
H=127.0.0.1

echo "# HVAC (unit 1): every register"
mapfile -t ir < <(mb "${T[@]}" -a 1 -t 3 -r 1 -c 7 $H) || bad "read HVAC input registers: $(cat "$tmp/mb.err")"
eq "HVAC input register count" "${#ir[@]}" 7
check "supply_air.temperature x0.1" "$(s16 "${ir[0]:-0}")" 100 300
check "return_air.temperature x0.1" "$(s16 "${ir[1]:-0}")" 150 320
check "humidity x0.1" "${ir[2]:-}" 200 800
check "run_time high word" "${ir[5]:-}" 1 65535
check "power (float32 ABCD)" "$(mb "${T[@]}" -a 1 -t 3:float -B -r 4 $H)" 3000 4500
rt1=$(mb "${T[@]}" -a 1 -t 3:int -B -r 6 $H)
check "run_time (uint32, high word first)" "$rt1" 34560000 4294967295
mapfile -t hr < <(mb "${T[@]}" -a 1 -t 4 -r 1 -c 4 $H) || bad "read HVAC holding registers: $(cat "$tmp/mb.err")"
eq "setpoint.cooling default" "${hr[0]:-}" 240
eq "setpoint.humidity default" "${hr[1]:-}" 500
eq "mode default" "${hr[2]:-}" 1
eq "status (running)" "${hr[3]:-}" 1
eq "fault hook (holding 10)" "$(mb "${T[@]}" -a 1 -t 4 -0 -r 10 $H)" 0
eq "run command coil" "$(mb "${T[@]}" -a 1 -t 0 -r 1 $H)" 1
eq "discrete inputs running,fault" "$(mb "${T[@]}" -a 1 -t 1 -r 1 -c 2 $H | paste -sd,)" "1,0"

echo "# sensor (unit 2): every register"
mapfile -t sr < <(mb "${T[@]}" -a 2 -t 3 -r 1 -c 4 $H) || bad "read sensor input registers: $(cat "$tmp/mb.err")"
eq "sensor input register count" "${#sr[@]}" 4
check "temperature x0.1" "$(s16 "${sr[0]:-0}")" 220 260
check "humidity x0.1" "${sr[1]:-}" 400 600
check "temperature float32 (CDAB)" "$(mb "${T[@]}" -a 2 -t 3:float -r 3 $H)" 22 26
eq "discrete inputs water,smoke" "$(mb "${T[@]}" -a 2 -t 1 -r 1 -c 2 $H | paste -sd,)" "0,0"
eq "hooks (holding 10,11)" "$(mb "${T[@]}" -a 2 -t 4 -0 -r 10 -c 2 $H | paste -sd,)" "0,0"

echo "# registers outside the map"
for spec in "-a 1 -t 3 -0 -r 7" "-a 1 -t 4 -0 -r 4" "-a 1 -t 4 -0 -r 0 -c 11" "-a 1 -t 0 -0 -r 1" \
    "-a 1 -t 1 -0 -r 2" "-a 2 -t 0 -0 -r 0" "-a 2 -t 3 -0 -r 4" "-a 2 -t 4 -0 -r 0"; do
    # shellcheck disable=SC2086
    if mb "${T[@]}" $spec $H >/dev/null; then
        bad "read $spec answered"
    elif grep -qi "illegal data address" "$tmp/mb.err"; then
        ok "read $spec -> illegal data address"
    else
        bad "read $spec: $(cat "$tmp/mb.err")"
    fi
done

echo "# writes"
mb "${T[@]}" -a 1 -t 4 -r 1 $H 265 >/dev/null || bad "write setpoint 26.5: $(cat "$tmp/mb.err")"
eq "setpoint.cooling read back" "$(mb "${T[@]}" -a 1 -t 4 -r 1 $H)" 265
mb "${T[@]}" -a 1 -t 4 -r 1 $H 240 550 3 >/dev/null || bad "write 3 holding registers: $(cat "$tmp/mb.err")"
eq "setpoints and mode read back (FC16)" "$(mb "${T[@]}" -a 1 -t 4 -r 1 -c 3 $H | paste -sd,)" "240,550,3"
reject() { # reject WHAT EXCEPTION-TEXT MBPOLL-ARGS...
    local what=$1 text=$2
    shift 2
    if mb "${T[@]}" "$@" >/dev/null; then
        bad "$what accepted"
    elif grep -qi "$text" "$tmp/mb.err"; then
        ok "$what -> $text"
    else
        bad "$what: $(cat "$tmp/mb.err")"
    fi
}
reject "setpoint.cooling 40.0" "illegal data value" -a 1 -t 4 -r 1 $H 400
reject "setpoint.cooling 15.9" "illegal data value" -a 1 -t 4 -r 1 $H 159
reject "setpoint.humidity 75.0" "illegal data value" -a 1 -t 4 -r 2 $H 750
reject "mode 5" "illegal data value" -a 1 -t 4 -r 3 $H 5
reject "status (read-only)" "illegal data address" -a 1 -t 4 -r 4 $H 1
reject "FC16 over status" "illegal data address" -a 1 -t 4 -r 3 $H 1 0
eq "registers unchanged after rejected writes" "$(mb "${T[@]}" -a 1 -t 4 -r 1 -c 3 $H | paste -sd,)" "240,550,3"
mb "${T[@]}" -a 1 -t 4 -r 2 $H 500 1 >/dev/null || bad "restore humidity setpoint and mode"

echo "# test hooks and commands"
mb "${T[@]}" -a 2 -t 4 -0 -r 11 $H 1 >/dev/null || bad "force smoke: $(cat "$tmp/mb.err")"
eq "smoke forced" "$(mb "${T[@]}" -a 2 -t 1 -r 1 -c 2 $H | paste -sd,)" "0,1"
mb "${T[@]}" -a 2 -t 4 -0 -r 10 $H 1 0 >/dev/null || bad "force water leak"
eq "water leak forced, smoke cleared" "$(mb "${T[@]}" -a 2 -t 1 -r 1 -c 2 $H | paste -sd,)" "1,0"
mb "${T[@]}" -a 2 -t 4 -0 -r 10 $H 0 >/dev/null
mb "${T[@]}" -a 1 -t 4 -0 -r 10 $H 1 >/dev/null || bad "force fault"
eq "fault forced: running,fault" "$(mb "${T[@]}" -a 1 -t 1 -r 1 -c 2 $H | paste -sd,)" "0,1"
eq "fault forced: status" "$(mb "${T[@]}" -a 1 -t 4 -r 4 $H)" 2
mb "${T[@]}" -a 1 -t 4 -0 -r 10 $H 0 >/dev/null
mb "${T[@]}" -a 1 -t 0 -r 1 $H 0 >/dev/null || bad "stop command: $(cat "$tmp/mb.err")"
eq "stopped: running,fault" "$(mb "${T[@]}" -a 1 -t 1 -r 1 -c 2 $H | paste -sd,)" "0,0"
sleep 1.5
check "stopped: power" "$(mb "${T[@]}" -a 1 -t 3:float -B -r 4 $H)" 30 70
eq "stopped: run_time frozen" "$(mb "${T[@]}" -a 1 -t 3:int -B -r 6 $H)" "$(mb "${T[@]}" -a 1 -t 3:int -B -r 6 $H)"
mb "${T[@]}" -a 1 -t 0 -r 1 $H 1 >/dev/null || bad "start command"
eq "started: status" "$(mb "${T[@]}" -a 1 -t 4 -r 4 $H)" 1
sleep 1.2
rt2=$(mb "${T[@]}" -a 1 -t 3:int -B -r 6 $H)
check "run_time advanced" "$rt2" $((rt1 + 1)) $((rt1 + 60))

echo "# dynamics: setpoint 32.0 drives return air over 30.0 (high_temperature)"
mb "${T[@]}" -a 1 -t 4 -r 1 $H 320 >/dev/null || bad "write setpoint 32.0"
# At most 0.2 C of drift + 0.03 C of noise per 100 ms step: at most 3 tenths
# per step elapsed (plus one for rounding) between two reads.
prev=$(s16 "$(mb "${T[@]}" -a 1 -t 3 -r 2 $H)")
prev_t=$(date +%s%N)
too_fast=""
status=0
for i in $(seq 1 60); do
    sleep 0.2
    cur=$(s16 "$(mb "${T[@]}" -a 1 -t 3 -r 2 $H)")
    cur_t=$(date +%s%N)
    d=$((cur > prev ? cur - prev : prev - cur))
    limit=$(((cur_t - prev_t) * 3 / 100000000 + 4))
    [ "$d" -gt "$limit" ] && too_fast="$too_fast $d>$limit"
    prev=$cur
    prev_t=$cur_t
    status=$(mb "${T[@]}" -a 1 -t 4 -r 4 $H)
    [ $((status & 8)) -ne 0 ] && break
done
eq "status has high_temperature (bit 3)" "$((status & 8))" 8
# (a step may fall between the two reads, hence not exactly > 300)
check "return air x0.1 around high_temperature" "$prev" 290 360
eq "reads where return air moved over 0.3 C per step" "${too_fast:-none}" none
mb "${T[@]}" -a 1 -t 4 -r 1 $H 240 >/dev/null

echo "# unknown unit id: no answer"
start=$(date +%s%N)
if mb -m tcp -p "$PORT" -o 0.5 -a 7 -t 3 -r 1 $H >/dev/null; then
    bad "unit 7 answered"
elif grep -qi "timed out" "$tmp/mb.err"; then
    ok "unit 7 -> no answer, mbpoll timed out after $((($(date +%s%N) - start) / 1000000)) ms"
else
    bad "unit 7: $(cat "$tmp/mb.err")"
fi
eq "server alive after unknown unit" "$(mb "${T[@]}" -a 1 -t 4 -r 1 $H)" 240

echo "# several clients at once"
stdbuf -oL mbpoll -m tcp -p "$PORT" -a 1 -t 3 -r 1 -c 2 -l 50 $H >"$tmp/bg1.out" 2>"$tmp/bg1.err" &
bg1=$!
pids+=("$bg1")
stdbuf -oL mbpoll -m tcp -p "$PORT" -a 2 -t 3 -r 1 -c 2 -l 50 $H >"$tmp/bg2.out" 2>"$tmp/bg2.err" &
bg2=$!
pids+=("$bg2")
if "$PY" - "$PORT" >"$tmp/py.out" 2>&1 <<'EOF'
import struct, sys, threading
from pymodbus.client import ModbusTcpClient
port = int(sys.argv[1])
errors = []
def worker(k):
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    if not c.connect():
        errors.append("connect %d" % k)
        return
    for _ in range(50):
        r = c.read_input_registers(0, 4, slave=2)
        if r.isError():
            errors.append(str(r))
            break
        t16 = struct.unpack(">h", struct.pack(">H", r.registers[0]))[0]
        # registers 2-3: the same temperature as float32, low word first
        f = struct.unpack(">f", struct.pack(">HH", r.registers[3], r.registers[2]))[0]
        if abs(f - t16 / 10.0) > 1e-4:
            errors.append("float %r != %r" % (f, t16 / 10.0))
            break
        r = c.read_input_registers(3, 2, slave=1)
        p = struct.unpack(">f", struct.pack(">HH", *r.registers))[0] if not r.isError() else -1
        if not 3000 <= p <= 4500:
            errors.append("power %r" % p)
            break
    c.close()
threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("pymodbus: 8 clients x 50 requests, errors: %d %s" % (len(errors), errors[:3]))
sys.exit(1 if errors else 0)
EOF
then ok "$(cat "$tmp/py.out")"; else bad "$(cat "$tmp/py.out")"; fi
for i in 1 2 3 4 5 6; do
    mb "${T[@]}" -a 1 -t 4 -r 1 $H >/dev/null || bad "short-lived client $i: $(cat "$tmp/mb.err")"
done
sleep 0.3
kill "$bg1" "$bg2" 2>/dev/null
wait "$bg1" "$bg2" 2>/dev/null
n1=$(grep -c "Polling slave" "$tmp/bg1.out")
n2=$(grep -c "Polling slave" "$tmp/bg2.out")
check "mbpoll client 1 polls while others came and went" "$n1" 5 100000
check "mbpoll client 2 polls while others came and went" "$n2" 5 100000
if grep -qi "failed\|error" "$tmp/bg1.err" "$tmp/bg2.err"; then
    bad "polling clients saw errors: $(cat "$tmp/bg1.err" "$tmp/bg2.err")"
else
    ok "polling clients saw no error"
fi
eq "server alive after clients left" "$(mb "${T[@]}" -a 2 -t 1 -r 1 -c 2 $H | paste -sd,)" "0,0"

stop_sim "$TCP_PID" "TCP simulator" tcp

############################################################ generic devices
echo "# --generic: units 1..N, input registers that move"
"$SIM" --tcp 0 --generic 3 --hvac-unit 1 >/dev/null 2>&1
eq "--generic with --hvac-unit: exit status" "$?" 2
if start_sim gen --tcp 0 --generic 3 --generic-registers 50 --period-ms 100 --seed 3; then
    GEN_PID=$SIM_PID
    G=(-m tcp -p "${SIM_LINE##*:}" -o 1)
    mapfile -t g1 < <(mb "${G[@]}" -a 3 -t 3 -0 -r 0 -c 50 $H) || bad "read unit 3 input 0+50: $(cat "$tmp/mb.err")"
    eq "unit 3: 50 input registers" "${#g1[@]}" 50
    check "unit 3 input 0 x0.1 (about 20 +- 2)" "$(s16 "${g1[0]:-0}")" 170 230
    check "unit 3 input 9 x0.1 (about 29 +- 2)" "$(s16 "${g1[9]:-0}")" 260 320
    sleep 0.3
    mapfile -t g2 < <(mb "${G[@]}" -a 3 -t 3 -0 -r 0 -c 50 $H)
    moved=0
    for i in $(seq 0 49); do [ "${g1[$i]:-x}" != "${g2[$i]:-y}" ] && moved=$((moved + 1)); done
    check "input registers changed after 3 steps" "$moved" 25 50
    T=("${G[@]}")
    reject "input 0+51 (map is 50)" "illegal data address" -a 1 -t 3 -0 -r 0 -c 51 $H
    eq "holding 0..3 start at their address" "$(mb "${G[@]}" -a 2 -t 4 -0 -r 0 -c 4 $H | paste -sd,)" "0,1,2,3"
    mb "${G[@]}" -a 2 -t 4 -0 -r 15 $H 4242 >/dev/null || bad "write holding 15: $(cat "$tmp/mb.err")"
    eq "holding 15 read back" "$(mb "${G[@]}" -a 2 -t 4 -0 -r 15 $H)" 4242
    eq "discrete 0..15 readable" "$(mb "${G[@]}" -a 1 -t 1 -0 -r 0 -c 16 $H | wc -l)" 16
    if mb "${G[@]}" -a 4 -t 3 -0 -r 0 -c 1 $H >/dev/null; then bad "unit 4 (beyond --generic 3) answered"; else ok "unit 4 (beyond --generic 3) not answered"; fi
    stop_sim "$GEN_PID" "generic simulator" gen
else
    bad "generic simulator did not start"
fi

############################################################ RTU
echo "# RTU over a socat pty pair"
socat pty,raw,echo=0,link="$tmp/ptyA" pty,raw,echo=0,link="$tmp/ptyB" 2>"$tmp/socat.err" &
pids+=("$!")
for i in $(seq 1 100); do
    [ -e "$tmp/ptyA" ] && [ -e "$tmp/ptyB" ] && break
    sleep 0.05
done
if start_sim rtu --rtu "$tmp/ptyA" --baud 9600 --parity N --data-bits 8 --stop-bits 1 \
    --unknown-unit exception --period-ms 100; then
    RTU_PID=$SIM_PID
    eq "first line" "$SIM_LINE" "LISTENING rtu $tmp/ptyA"
    R=(-m rtu -b 9600 -P none -d 8 -s 1 -o 1)
    mapfile -t ir < <(mb "${R[@]}" -a 1 -t 3 -r 1 -c 7 "$tmp/ptyB") || bad "RTU read HVAC: $(cat "$tmp/mb.err")"
    eq "RTU HVAC input register count" "${#ir[@]}" 7
    check "RTU supply_air.temperature x0.1" "$(s16 "${ir[0]:-0}")" 100 300
    mb "${R[@]}" -a 1 -t 4 -r 1 "$tmp/ptyB" 230 >/dev/null || bad "RTU write setpoint: $(cat "$tmp/mb.err")"
    eq "RTU setpoint read back" "$(mb "${R[@]}" -a 1 -t 4 -r 1 "$tmp/ptyB")" 230
    reject_rtu() {
        if mb "${R[@]}" "$@" >/dev/null; then bad "RTU $* answered"; else cat "$tmp/mb.err"; fi
    }
    if reject_rtu -a 1 -t 4 -r 1 "$tmp/ptyB" 999 | grep -qi "illegal data value"; then
        ok "RTU out-of-range write -> illegal data value"
    else
        bad "RTU out-of-range write not rejected"
    fi
    if reject_rtu -a 9 -t 3 -r 1 "$tmp/ptyB" | grep -qi "target device failed"; then
        ok "RTU unknown unit with --unknown-unit exception -> 0x0B"
    else
        bad "RTU unknown unit: $(cat "$tmp/mb.err")"
    fi
    if "$PY" - "$tmp/ptyB" >"$tmp/pyrtu.out" 2>&1 <<'EOF'
import sys
from pymodbus.client import ModbusSerialClient
c = ModbusSerialClient(sys.argv[1], baudrate=9600, bytesize=8, parity="N", stopbits=1, timeout=1)
assert c.connect()
r = c.read_input_registers(0, 2, slave=2)
assert not r.isError(), r
assert 220 <= r.registers[0] <= 260 and 400 <= r.registers[1] <= 600, r.registers
w = c.write_register(11, 1, slave=2)
assert not w.isError(), w
d = c.read_discrete_inputs(0, 2, slave=2)
assert d.bits[:2] == [False, True], d.bits
c.write_register(11, 0, slave=2)
h = c.read_holding_registers(0, 4, slave=1)
assert h.registers == [230, 500, 1, 1], h.registers
print("pymodbus RTU: sensor", r.registers, "smoke hook ok, hvac holding", h.registers)
c.close()
EOF
    then ok "$(tail -n 1 "$tmp/pyrtu.out")"; else bad "pymodbus RTU: $(cat "$tmp/pyrtu.out")"; fi
    stop_sim "$RTU_PID" "RTU simulator" rtu
else
    bad "RTU simulator did not start"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
