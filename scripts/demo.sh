#!/usr/bin/env bash
# The main job end to end on a temporary state dir, printing each command
# and what it answered. `make demo` runs it after building.
set -euo pipefail
cd "$(dirname "$0")/.."
QVM="$PWD/bin/qvm"
STATE=$(mktemp -d /tmp/qvm-demo.XXXXXX)
export QVM_STATE_DIR="$STATE" QVM_CONFIG=/nonexistent
trap 'rm -rf "$STATE"' EXIT

run() {
  printf '\n$ %s\n' "$*"
  "$@"
}

echo "qvm demo: state directory $STATE"
run "$QVM" init
run "$QVM" create --class TemplateVM --label black fedora-41
run "$QVM" prefs --global default_template fedora-41
run "$QVM" create --label red --prop provides_network=True --prop netvm=none sys-net
run "$QVM" create --label orange --prop provides_network=True --prop netvm=sys-net sys-firewall
run "$QVM" prefs --global default_netvm sys-firewall
run "$QVM" create --label green work
run "$QVM" prefs work memory 800
run "$QVM" features work gui 1
run "$QVM" service work cups on
run "$QVM" tags work add project-x
run "$QVM" clone work work-copy
run "$QVM" prefs --hide-default work-copy
run "$QVM" ls
run "$QVM" ls --tree --fields name,netvm,ip
run "$QVM" check --networked work work-copy
run "$QVM" remove --force work-copy
run "$QVM" ls --raw-list
# --- storage ---
run "$QVM" volume list work fedora-41
run "$QVM" volume info work:private
run "$QVM" volume resize work:private 4GiB
run "$QVM" volume info work:private size
test "$("$QVM" volume info work:private size)" = 4294967296
test -f "$STATE/appvms/work/private.img"
# Verify: the state loads, and what was set is there.
test "$("$QVM" prefs work memory)" = 800
test "$("$QVM" service work cups)" = on
! "$QVM" check work-copy 2>/dev/null
echo
echo "qvm demo: all steps done and verified."
