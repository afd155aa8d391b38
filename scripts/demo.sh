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
# --- devices ---
# PCI devices of the reference's sysfs fixture; an assignment stored in qubes.xml.
export QVM_SYSFS_ROOT="$(pwd)/core/devices/testdata/sysfs/sys"
run "$QVM" device pci list --with-sbdf
run "$QVM" device pci assign --required -o no-strict-reset=True sys-net dom0:00_08.1-00_00.2
run "$QVM" device pci list -s sys-net
test "$("$QVM" prefs sys-net virt_mode)" = hvm
grep -q 'id="00_08.1-00_00.2" mode="required"' "$STATE/qubes.xml"
unset QVM_SYSFS_ROOT
# --- start ---
# A real qube: the test guest (Debian cloud kernel + busybox initramfs) on
# libvirt's embedded QEMU driver (no daemon), in a state of its own with a
# file-reflink pool: started, seen running, its console read, shut down
# with the ACPI power button, its private volume committed.
if [ "$(id -u)" = 0 ] && [ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ]; then
  KVER=$(make --no-print-directory -s test-kernel KERNEL_DIR="$PWD/bin/test-kernel" | tail -n1)
  RUNSTATE=$(mktemp -d /tmp/qvm-demo-run.XXXXXX)
  trap 'QVM_STATE_DIR="$RUNSTATE" QVM_RUN_DIR="$RUNSTATE/run" QVM_LIBVIRT_URI="qemu:///embed?root=$RUNSTATE/libvirt" "$QVM" kill --all >/dev/null 2>&1 || true; rm -rf "$STATE" "$RUNSTATE"' EXIT
  (
    export QVM_STATE_DIR="$RUNSTATE" QVM_RUN_DIR="$RUNSTATE/run" QVM_LIBVIRT_URI="qemu:///embed?root=$RUNSTATE/libvirt"
    run "$QVM" init --reflink no
    run "$QVM" pool add vms file-reflink -o dir_path="$RUNSTATE/vms" -o setup_check=False
    run "$QVM" prefs --global default_pool vms
    mkdir -p "$RUNSTATE/vm-kernels" && cp -r "bin/test-kernel/$KVER" "$RUNSTATE/vm-kernels/"
    run "$QVM" create --standalone --label red --prop kernel="$KVER" --prop memory=192 --prop netvm=none guest
    run "$QVM" volume resize -f guest:root 64MiB
    run "$QVM" start guest
    run "$QVM" ls --running
    for _ in $(seq 300); do grep -q 'qvm-test-guest: up' "$RUNSTATE/appvms/guest/console.log" 2>/dev/null && break; sleep 0.2; done
    run cat "$RUNSTATE/appvms/guest/console.log"
    run "$QVM" shutdown --wait guest
    run "$QVM" ls
    test "$("$QVM" ls --raw-data -O state guest)" = Halted
    test "$(head -c 14 "$RUNSTATE/vms/appvms/guest/private.img")" = QVM-TEST-GUEST
    ls "$RUNSTATE"/vms/appvms/guest/private.img.*@* >/dev/null
  )
else
  echo "(start step skipped: it needs root and libvirt-daemon-driver-qemu)"
fi
# --- qmemmand ---
# The memory balancer next to a real qube: qmemmand on the same embedded
# root with a 1 GiB budget; qvm start asks it for the qube's memory (OK),
# the guest's balloon statistics come in and qmemmand sets its target.
if [ "$(id -u)" = 0 ] && [ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ]; then
  KVER=$(make --no-print-directory -s test-kernel KERNEL_DIR="$PWD/bin/test-kernel" | tail -n1)
  MEMSTATE=$(mktemp -d /tmp/qvm-demo-mem.XXXXXX)
  (
    export QVM_STATE_DIR="$MEMSTATE" QVM_RUN_DIR="$MEMSTATE/run" QVM_LIBVIRT_URI="qemu:///embed?root=$MEMSTATE/libvirt" QVM_QMEMMAN_SOCKET="$MEMSTATE/qmemman.sock"
    "$QVM" init --reflink no >/dev/null
    "$QVM" pool add vms file-reflink -o dir_path="$MEMSTATE/vms" -o setup_check=False
    "$QVM" prefs --global default_pool vms
    mkdir -p "$MEMSTATE/vm-kernels" && cp -r "bin/test-kernel/$KVER" "$MEMSTATE/vm-kernels/"
    "$QVM" create --standalone --label red --prop kernel="$KVER" --prop memory=192 --prop maxmem=400 --prop netvm=none mem
    "$QVM" volume resize -f mem:root 64MiB
    ./bin/qmemmand --uri "$QVM_LIBVIRT_URI" --budget 1GiB --socket "$QVM_QMEMMAN_SOCKET" --run-dir "$MEMSTATE/run" --config memd/dist/qmemman.conf -v 2>"$MEMSTATE/qmemmand.log" &
    QPID=$!
    for _ in $(seq 100); do [ -S "$QVM_QMEMMAN_SOCKET" ] && break; sleep 0.1; done
    run "$QVM" start mem
    for _ in $(seq 300); do grep -q 'mem-set domid=1' "$MEMSTATE/qmemmand.log" && break; sleep 0.2; done
    run grep -E 'balloon request|mem-set' "$MEMSTATE/qmemmand.log"
    run cat "$MEMSTATE/run/qmemman-avail-mem"; echo
    run "$QVM" kill mem
    kill -TERM $QPID; wait $QPID
    grep -q 'msg="balloon request' "$MEMSTATE/qmemmand.log"
    grep -q 'mem-set domid=1' "$MEMSTATE/qmemmand.log"
  )
  rm -rf "$MEMSTATE"
else
  echo "(qmemmand step skipped: it needs root and libvirt-daemon-driver-qemu)"
fi
# --- backup ---
# Some data in work's private volume, a backup of work, its template and
# dom0's home (a demo home for the user running this; progress bar on a
# terminal), a restore into a fresh state dir, and the bytes compared.
printf 'demo passphrase\n' > "$STATE/pw"
dd if=/dev/urandom of="$STATE/appvms/work/private.img" bs=1M count=8 seek=100 conv=notrunc status=none
export QVM_DOM0_USER="$(id -un)"
mkdir -p "$STATE/home/.config" "$STATE/restored-home" "$STATE/backups"
echo 'alias ll="ls -l"' > "$STATE/home/.bashrc"
echo 'demo=1' > "$STATE/home/.config/demo.conf"
ln -s .bashrc "$STATE/home/bashrc-link"
run env QVM_DOM0_HOME="$STATE/home" "$QVM" backup -y -v -p "$STATE/pw" --scrypt-params 15:8:1 "$STATE/backups" fedora-41 work dom0
BACKUP=$(ls "$STATE"/backups/qubes-*)
run tar -i -tvf "$BACKUP"
run env QVM_STATE_DIR="$STATE/restored" "$QVM" init
run env QVM_STATE_DIR="$STATE/restored" QVM_DOM0_HOME="$STATE/restored-home" "$QVM" restore -p "$STATE/pw" "$BACKUP"
run env QVM_STATE_DIR="$STATE/restored" "$QVM" ls
cmp "$STATE/appvms/work/private.img" "$STATE/restored/appvms/work/private.img"
diff -r --no-dereference "$STATE/home" "$STATE"/restored-home/home-restore-*/dom0-home/"$QVM_DOM0_USER"
echo "dom0's home restored identically into $(ls -d "$STATE"/restored-home/home-restore-*)"
test "$(QVM_STATE_DIR="$STATE/restored" "$QVM" prefs work memory)" = 800
test "$(QVM_STATE_DIR="$STATE/restored" "$QVM" firewall work --raw | head -1)" = "action=drop proto=icmp"
# Verify: the state loads, and what was set is there.
test "$("$QVM" prefs work memory)" = 800
test "$("$QVM" service work cups)" = on
! "$QVM" check work-copy 2>/dev/null
echo
echo "qvm demo: all steps done and verified."
