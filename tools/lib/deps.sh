# shellcheck shell=bash
# deps.sh - the Debian packages ccgw needs, installed when missing.
# Sourced by tools/run-demo, tools/run-tests and tools/bench/run.
#   ccgw_install_deps build       compilers, CMake, the -dev libraries
#   ccgw_install_deps run         mosquitto broker and clients
#   ccgw_install_deps test        cmocka, clang + libFuzzer runtime, Modbus tools, NUT (upsd, dummy-ups),
#                                 snmpd and snmptrap (snmp), python3-websockets (the ws_* tests)
#                                 chromium (the dashboard's browser test; node and npm: the nodejs package)
#   ccgw_install_deps demo        what tools/run-demo starts besides mosquitto: NUT (upsd, dummy-ups),
#                                 snmpd and snmptrap (snmp), curl (the door simulator's hooks)

CCGW_PKGS_BUILD=(build-essential cmake pkg-config libyaml-dev libmosquitto-dev libjansson-dev
                 libmodbus-dev libssl-dev libsnmp-dev libcurl4-openssl-dev
                 libwebsockets-dev)
CCGW_PKGS_RUN=(mosquitto mosquitto-clients)
CCGW_PKGS_TEST=(libcmocka-dev clang openssl libclang-rt-14-dev mbpoll socat python3 python3-pymodbus
                python3-serial procps valgrind nut-server nut-client
                snmpd snmp python3-websockets
                chromium nodejs)
CCGW_PKGS_DEMO=(nut-server nut-client snmpd snmp curl mbpoll)
# tools/bench/run (f): npm, only to install Node-RED and its Node 22 into build-bench/nodered
CCGW_PKGS_BENCH=(npm)

ccgw_install_deps() {
    local want=() missing=() p
    for group in "$@"; do
        case "$group" in
            build) want+=("${CCGW_PKGS_BUILD[@]}") ;;
            run) want+=("${CCGW_PKGS_RUN[@]}") ;;
            test) want+=("${CCGW_PKGS_TEST[@]}") ;;
            demo) want+=("${CCGW_PKGS_DEMO[@]}") ;;
            npm) want+=(npm) ;; # only when the machine has no npm (Debian's nodejs)
            bench) want+=("${CCGW_PKGS_BENCH[@]}") ;;
            *) echo "deps.sh: unknown group '$group'" >&2; return 2 ;;
        esac
    done
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]}" >&2
        echo "run as root, or: sudo apt-get install ${missing[*]}" >&2
        return 1
    fi
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# A free TCP port on 127.0.0.1 (nothing answers on it right now).
ccgw_free_port() {
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}
