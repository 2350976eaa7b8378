#!/bin/bash
# sdk.out_of_tree - build the plugin template the way a vendor does, against
# an installed ccgw, and load it into the installed daemon.
#
# usage: out_of_tree.sh CMAKE BUILD_DIR
#   CMAKE      the cmake binary (ctest passes ${CMAKE_COMMAND})
#   BUILD_DIR  a complete ccgw build tree (${PROJECT_BINARY_DIR})
# env: CC (compiler for the template, default cc), KEEP_TMP=1 keeps the
#      temporary directory, TMPDIR.
#
# Steps: 1. cmake --install BUILD_DIR --prefix TMP/prefix
#        2. the installed ccgw-sdk.pc resolves into TMP/prefix
#        3. copy TMP/prefix/share/ccgw/plugin-template and build it out of tree
#           with its CMakeLists.txt (pkg_check_modules) and with its Makefile,
#           -Werror, PKG_CONFIG_PATH=<prefix>/<libdir>/pkgconfig
#        4. each example.so exports exactly ccgw_plugin_descriptor
#        5. TMP/prefix/bin/ccgw --describe-plugin example --plugin-dir DIR lists
#           the template's options
#        6. ccgw --check-config: a config using the plugin passes (exit 0);
#           configs with a bad option fail (exit 1) with FILE:LINE:COL at the
#           right line.
# Exit status: 0 when every check passed, 1 otherwise (each failure printed).
set -u -o pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 CMAKE BUILD_DIR" >&2
    exit 2
fi
CMAKE=$1
BUILD=$(cd "$2" && pwd) || exit 2
CC=${CC:-cc}
export CC

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ccgw-sdk-test.XXXXXX") || exit 2
PREFIX=$TMP/prefix
failures=0

cleanup() {
    if [ "${KEEP_TMP:-0}" = 1 ] || [ "$failures" -ne 0 ]; then
        echo "# files kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT

say() { echo "# $*"; }
pass() { echo "ok - $*"; }
fail() {
    echo "not ok - $*" >&2
    failures=$((failures + 1))
}
# fatal MESSAGE: a step the rest depends on failed.
fatal() {
    fail "$*"
    echo "# stopping: later steps depend on this one" >&2
    exit 1
}
# run LOG CMD...: run CMD with output to LOG; on failure show the log.
run() {
    local log=$1
    shift
    local rc=0
    "$@" >"$log" 2>&1 || rc=$?
    [ $rc -eq 0 ] && return 0
    echo "# command failed (exit $rc): $*" >&2
    sed 's/^/#   /' "$log" >&2
    return $rc
}

# ---------------------------------------------------------------- 1. install
say "installing $BUILD into $PREFIX"
run "$TMP/install.log" "$CMAKE" --install "$BUILD" --prefix "$PREFIX" ||
    fatal "cmake --install $BUILD --prefix $PREFIX"
pass "cmake --install --prefix"

CCGW=$PREFIX/bin/ccgw
[ -x "$CCGW" ] || fatal "installed daemon $CCGW missing"

# ------------------------------------------------------------- 2. pkg-config
# CMAKE_INSTALL_LIBDIR is lib, lib64 or lib/<multiarch>: look for the file.
PC=$(find "$PREFIX" -name ccgw-sdk.pc -path '*/pkgconfig/*' -print -quit)
[ -n "$PC" ] || fatal "no ccgw-sdk.pc installed under $PREFIX"
PC_DIR=$(dirname "$PC")
export PKG_CONFIG_PATH=$PC_DIR
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
say "PKG_CONFIG_PATH=$PKG_CONFIG_PATH"
pkg-config --exists ccgw-sdk || fatal "pkg-config does not accept $PC"

# The .pc must point into the prefix it was installed to, not into the
# CMAKE_INSTALL_PREFIX the build was configured with (cmake --install
# --prefix does not rewrite files): a vendor would otherwise compile against
# whatever other ccgw headers that path holds, or against none.
INC=$(pkg-config --variable=includedir ccgw-sdk)
PREFIX_REAL=$(realpath "$PREFIX")
INC_REAL=$(realpath -m "$INC")
case "$INC_REAL/" in
"$PREFIX_REAL"/*)
    pass "ccgw-sdk.pc includedir is inside the install prefix ($INC)"
    ;;
*)
    fatal "ccgw-sdk.pc is not relocatable: installed under $PREFIX its includedir is $INC
#   (the configure-time CMAKE_INSTALL_PREFIX; cmake --install --prefix does not rewrite it).
#   Fix: in sdk/ccgw-sdk.pc.in, prefix=\${pcfiledir}/<relative path from the .pc dir to the prefix>."
    ;;
esac
[ -f "$INC/ccgw/ccgw.h" ] || fatal "ccgw-sdk.pc includedir $INC has no ccgw/ccgw.h"
CFLAGS_I=$(pkg-config --cflags ccgw-sdk)
say "pkg-config --cflags ccgw-sdk: $CFLAGS_I"

# The ABI advertised by the .pc must be the one in the installed header.
hdr_major=$(sed -n 's/^#define CCGW_ABI_MAJOR \([0-9]*\).*/\1/p' "$INC/ccgw/plugin.h")
hdr_minor=$(sed -n 's/^#define CCGW_ABI_MINOR \([0-9]*\).*/\1/p' "$INC/ccgw/plugin.h")
pc_major=$(pkg-config --variable=abi_major ccgw-sdk)
pc_minor=$(pkg-config --variable=abi_minor ccgw-sdk)
if [ -n "$hdr_major" ] && [ "$hdr_major.$hdr_minor" = "$pc_major.$pc_minor" ]; then
    pass "ccgw-sdk.pc abi $pc_major.$pc_minor matches ccgw/plugin.h"
else
    fail "ccgw-sdk.pc says abi $pc_major.$pc_minor, ccgw/plugin.h says $hdr_major.$hdr_minor"
fi
PLUGINDIR=$(pkg-config --variable=plugindir ccgw-sdk)
case "$(realpath -m "$PLUGINDIR")/" in
"$PREFIX_REAL"/*) pass "ccgw-sdk.pc plugindir is inside the install prefix" ;;
*) fail "ccgw-sdk.pc plugindir $PLUGINDIR is outside the install prefix $PREFIX" ;;
esac

# --------------------------------------------------- 3. build the template
TEMPLATE=$PREFIX/share/ccgw/plugin-template
for f in CMakeLists.txt Makefile example.c README.md; do
    [ -f "$TEMPLATE/$f" ] || fatal "installed template lacks $f ($TEMPLATE)"
done
pass "template installed in share/ccgw/plugin-template"

# a) CMake, as the template's README says; install into a private dir.
V1=$TMP/vendor-cmake
cp -r "$TEMPLATE" "$V1"
DIR_CMAKE=$TMP/plugins-cmake
if run "$TMP/cmake-configure.log" "$CMAKE" -S "$V1" -B "$V1/build" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEXAMPLE_WERROR=ON -DCCGW_PLUGIN_DIR="$DIR_CMAKE" &&
    run "$TMP/cmake-build.log" "$CMAKE" --build "$V1/build" &&
    run "$TMP/cmake-install.log" "$CMAKE" --install "$V1/build" &&
    [ -f "$DIR_CMAKE/example.so" ]; then
    pass "template builds out of tree with CMake (-Werror) and installs example.so"
else
    fatal "template does not build with CMake against the installed SDK"
fi
# It was compiled against the installed headers, not this source tree's.
if grep -q -- "$INC" "$V1/build/CMakeFiles/example.dir/flags.make" 2>/dev/null; then
    pass "CMake build used the installed headers"
else
    fail "CMake build of the template does not use $INC"
fi

# b) the Makefile, with the compiler flags the docs promise are clean.
V2=$TMP/vendor-make
cp -r "$TEMPLATE" "$V2"
DIR_MAKE=$TMP/plugins-make
if run "$TMP/make.log" make -C "$V2" CC="$CC" CFLAGS="-O2 -Werror" &&
    run "$TMP/make-install.log" make -C "$V2" install PLUGINDIR="$DIR_MAKE" &&
    [ -f "$DIR_MAKE/example.so" ]; then
    pass "template builds with its Makefile (-std=c17 -Wall -Wextra -Wpedantic -Werror)"
else
    fail "template does not build with its Makefile"
fi

# --------------------------------------------------------- 4. exported symbols
for so in "$DIR_CMAKE/example.so" "$DIR_MAKE/example.so"; do
    [ -f "$so" ] || continue
    syms=$(nm -D --defined-only "$so" | awk '$3 !~ /^_/ {print $3}' | sort | tr '\n' ' ')
    if [ "$syms" = "ccgw_plugin_descriptor " ]; then
        pass "$(basename "$(dirname "$so")")/example.so exports only ccgw_plugin_descriptor"
    else
        fail "$so exports: $syms(expected only ccgw_plugin_descriptor)"
    fi
done

# ------------------------------------------------------ 5. --describe-plugin
for dir in "$DIR_CMAKE" "$DIR_MAKE"; do
    [ -f "$dir/example.so" ] || continue
    out=$TMP/describe-$(basename "$dir").txt
    if ! run "$out" "$CCGW" --describe-plugin example --plugin-dir "$dir"; then
        fail "ccgw --describe-plugin example --plugin-dir $dir"
        continue
    fi
    missing=""
    for key in devices id interval_ms class base_temperature alarm_above; do
        grep -qw -- "$key" "$out" || missing="$missing $key"
    done
    if [ -z "$missing" ]; then
        pass "--describe-plugin example ($(basename "$dir")) lists every option"
    else
        fail "--describe-plugin example ($(basename "$dir")) misses:$missing"
        sed 's/^/#   /' "$out" >&2
    fi
done

# ------------------------------------------------------ 6. --check-config
CONF=$TMP/conf
mkdir -p "$CONF"

# write_config FILE: a config with the example plugin; stdin = the instance's
# options block (indented 6 spaces), so each bad case changes one thing.
write_config() {
    {
        cat <<EOF
gateway:
  site: sdk-test
  id: gw1
  plugin_dirs:
    - $DIR_CMAKE
instances:
  - id: ex1
    plugin: example
    options:
EOF
        cat
    } >"$1"
}

write_config "$CONF/good.yaml" <<'EOF'
      base_temperature: 21.5
      alarm_above: 24
      devices:
        - id: room1.t1
          interval_ms: 500
        - id: room1.t2
          class: env
EOF
if run "$TMP/check-good.log" "$CCGW" --check-config "$CONF/good.yaml"; then
    pass "--check-config accepts a config using the plugin"
else
    fail "--check-config rejects a valid config using the plugin ($CONF/good.yaml)"
fi

# expect_error NAME MARKER WHAT: NAME.yaml must fail with exit 1 and an error
# FILE:LINE:COL: at the line holding MARKER.
expect_error() {
    local file=$CONF/$1.yaml marker=$2 what=$3
    local line rc
    line=$(grep -n -F -- "$marker" "$file" | tail -n 1 | cut -d: -f1)
    "$CCGW" --check-config "$file" >"$TMP/check-$1.log" 2>&1
    rc=$?
    if [ $rc -ne 1 ]; then
        fail "--check-config $1.yaml ($what): exit $rc, expected 1"
        sed 's/^/#   /' "$TMP/check-$1.log" >&2
    elif grep -Eq "(^|/)$1\.yaml:$line:[0-9]+: " "$TMP/check-$1.log"; then
        pass "--check-config rejects $what with $1.yaml:$line:COL"
    else
        fail "--check-config $1.yaml ($what): no '$1.yaml:$line:COL: ' message"
        sed 's/^/#   /' "$TMP/check-$1.log" >&2
    fi
}

write_config "$CONF/bad_type.yaml" <<'EOF'
      base_temperature: hot
      devices:
        - id: room1.t1
EOF
expect_error bad_type "base_temperature: hot" "a mistyped option"

write_config "$CONF/bad_unknown.yaml" <<'EOF'
      devices:
        - id: room1.t1
          colour: red
EOF
expect_error bad_unknown "colour: red" "an unknown key in a list item"

write_config "$CONF/bad_range.yaml" <<'EOF'
      devices:
        - id: room1.t1
          interval_ms: 5
EOF
expect_error bad_range "interval_ms: 5" "an out-of-range option"

write_config "$CONF/bad_enum.yaml" <<'EOF'
      devices:
        - id: room1.t1
          class: ups
EOF
expect_error bad_enum "class: ups" "a value outside an enum"

# The plugin's own check(): a duplicate device id, reported at the second one.
write_config "$CONF/bad_check.yaml" <<'EOF'
      devices:
        - id: room1.t1
        - id: room1.t1
EOF
expect_error bad_check "- id: room1.t1" "the plugin's check() (duplicate device id)"

# ----------------------------------------------------------- run it for real
# The installed daemon runs the out-of-tree plugin against a real mosquitto:
# telemetry arrives, and its command answers.
if command -v mosquitto_sub >/dev/null && [ -x /usr/sbin/mosquitto ]; then
    port=""
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
    done
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n' "$port" > "$TMP/mosq.conf"
    /usr/sbin/mosquitto -c "$TMP/mosq.conf" 2> "$TMP/mosq.log" &
    mpid=$!
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    cat > "$CONF/run.yaml" <<YAML
gateway:
  site: sdk-test
  id: gw1
  data_dir: $TMP/data
  plugin_dirs:
    - $DIR_CMAKE
mqtt:
  port: $port
instances:
  - id: ex1
    plugin: example
    options:
      devices:
        - {id: room1.t1, interval_ms: 100}
YAML
    timeout 10 mosquitto_sub -h 127.0.0.1 -p "$port" -t 'ccgw/v1/sdk-test/env/room1.t1/#' -v > "$TMP/sub.log" 2>&1 &
    spid=$!
    sleep 0.3
    "$CCGW" --config "$CONF/run.yaml" 2> "$TMP/run.log" &
    gpid=$!
    got=0
    for _ in $(seq 1 50); do grep -q 'room1.t1/telemetry .*"temperature"' "$TMP/sub.log" && { got=1; break; }; sleep 0.1; done
    if [ $got = 1 ]; then pass "the installed daemon runs the out-of-tree plugin: telemetry on MQTT"
    else fail "no telemetry from the out-of-tree plugin"; sed 's/^/#   /' "$TMP/run.log" >&2; fi
    mosquitto_pub -h 127.0.0.1 -p "$port" -t ccgw/v1/sdk-test/env/room1.t1/cmd/example.set_offset -m '{"offset":2.5}'
    got=0
    for _ in $(seq 1 50); do grep -q 'cmd/example.set_offset/reply .*"ok":true' "$TMP/sub.log" && { got=1; break; }; sleep 0.1; done
    if [ $got = 1 ]; then pass "its command example.set_offset is answered ok"
    else fail "no ok reply to example.set_offset"; sed 's/^/#   /' "$TMP/sub.log" >&2; fi
    kill -TERM "$gpid" 2>/dev/null; grc=0; wait "$gpid" || grc=$?
    if [ $grc -eq 0 ]; then pass "SIGTERM: the daemon exits 0"; else fail "daemon exit $grc after SIGTERM"; fi
    kill "$spid" "$mpid" 2>/dev/null; wait "$spid" "$mpid" 2>/dev/null || true
else
    fail "mosquitto and mosquitto-clients are needed to run the plugin for real"
fi

# --------------------------------------------------------------------- done
if [ "$failures" -ne 0 ]; then
    echo "# $failures check(s) failed" >&2
    exit 1
fi
echo "# all checks passed"
exit 0
