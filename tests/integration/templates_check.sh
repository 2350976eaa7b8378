#!/bin/sh
# templates_check.sh CCGW_BIN PLUGIN_DIR
#
# Checks every Modbus template in config/templates/*.yaml with `ccgw --check-config`.
# Each template is a complete top-level `instances:` entry; it is appended to a minimal
# gateway section (no mqtt: MQTT disabled) that points plugin_dirs at PLUGIN_DIR. Then all
# templates are checked together in one config, as a user who pastes several would.
# Exit 0 when every config is accepted; 1 otherwise, naming each rejected template and
# printing ccgw's FILE:LINE:COL errors (line numbers are those of the wrapper, whose
# header is HEADER_LINES lines long). 2 on bad usage.
set -u

if [ $# -ne 2 ]; then
  echo "usage: $0 CCGW_BIN PLUGIN_DIR" >&2
  exit 2
fi
ccgw=$1
plugin_dir=$2
here=$(cd "$(dirname "$0")" && pwd)
tpl_dir=$(cd "$here/../../config/templates" 2>/dev/null && pwd) || {
  echo "templates_check: no config/templates folder next to $here" >&2; exit 1; }
[ -x "$ccgw" ] || { echo "templates_check: $ccgw is not executable" >&2; exit 2; }
[ -f "$plugin_dir/modbus.so" ] || { echo "templates_check: no modbus.so in $plugin_dir" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ccgw-tpl.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM

header() {
  printf 'gateway:\n  site: test\n  id: tplcheck\n  log_level: warn\n'
  printf '  plugin_dirs: ["%s"]\n  data_dir: "%s/data"\n' "$plugin_dir" "$work"
}
HEADER_LINES=$(header | wc -l)

failed=0
count=0
all="$work/all.yaml"
{ header; echo "instances:"; } > "$all"

for tpl in "$tpl_dir"/*.yaml; do
  [ -e "$tpl" ] || continue
  count=$((count + 1))
  name=$(basename "$tpl")
  if ! grep -q '^instances:' "$tpl"; then
    echo "FAIL $name: no top-level 'instances:' key"
    failed=$((failed + 1))
    continue
  fi
  wrapped="$work/$name"
  { header; cat "$tpl"; } > "$wrapped"
  if out=$("$ccgw" --check-config "$wrapped" 2>&1); then
    echo "ok   $name"
  else
    echo "FAIL $name (wrapper header is $HEADER_LINES lines: template line = reported line - $HEADER_LINES):"
    printf '%s\n' "$out" | sed 's/^/     /'
    failed=$((failed + 1))
  fi
  # the list items, without the template's own `instances:` line
  sed '/^instances:/d' "$tpl" >> "$all"
done

if [ "$count" -eq 0 ]; then
  echo "FAIL no templates in $tpl_dir"
  exit 1
fi

if out=$("$ccgw" --check-config "$all" 2>&1); then
  echo "ok   all $count templates in one config"
else
  echo "FAIL all $count templates in one config:"
  printf '%s\n' "$out" | sed 's/^/     /'
  failed=$((failed + 1))
fi

if [ "$failed" -ne 0 ]; then
  echo "templates_check: $failed failure(s)"
  exit 1
fi
echo "templates_check: $count templates ok"
exit 0
