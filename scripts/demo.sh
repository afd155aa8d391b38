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
# --- firewall ---
run "$QVM" firewall work add --before 0 drop proto=icmp
run "$QVM" firewall work add accept 192.168.1.0/24 tcp 22 'comment=LAN ssh' expire=+3600
run "$QVM" firewall work
run "$QVM" firewall export work --format qubesdb
run "$QVM" firewall export --netvm sys-firewall --format nft
if command -v nft >/dev/null && [ "$(id -u)" = 0 ]; then
  "$QVM" firewall export --netvm sys-firewall --format nft | nft -c -f - && echo "nft -c accepts the ruleset"
fi
test "$("$QVM" firewall work --raw | head -1)" = "action=drop proto=icmp"
# --- backup ---
# Some data in work's private volume, a backup of work and its template
# (progress bar on a terminal), a restore into a fresh state dir, and the
# bytes compared.
printf 'demo passphrase\n' > "$STATE/pw"
dd if=/dev/urandom of="$STATE/appvms/work/private.img" bs=1M count=8 seek=100 conv=notrunc status=none
mkdir -p "$STATE/backups"
run "$QVM" backup -y -v -p "$STATE/pw" --scrypt-params 15:8:1 "$STATE/backups" fedora-41 work
BACKUP=$(ls "$STATE"/backups/qubes-*)
run tar -i -tvf "$BACKUP"
run env QVM_STATE_DIR="$STATE/restored" "$QVM" init
run env QVM_STATE_DIR="$STATE/restored" "$QVM" restore -p "$STATE/pw" "$BACKUP"
run env QVM_STATE_DIR="$STATE/restored" "$QVM" ls
cmp "$STATE/appvms/work/private.img" "$STATE/restored/appvms/work/private.img"
test "$(QVM_STATE_DIR="$STATE/restored" "$QVM" prefs work memory)" = 800
# Verify: the state loads, and what was set is there.
test "$("$QVM" prefs work memory)" = 800
test "$("$QVM" service work cups)" = on
! "$QVM" check work-copy 2>/dev/null
echo
echo "qvm demo: all steps done and verified."
