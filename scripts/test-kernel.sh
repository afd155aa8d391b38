#!/bin/sh
# test-kernel.sh DIR: puts a small real Linux guest into DIR/VERSION in the
# layout of the linux-kernel pool (vmlinuz, initramfs, default-kernelopts-*).
# The kernel comes from Debian's cloud kernel package (downloaded with
# apt-get download and unpacked with dpkg-deb, never installed); the
# initramfs is busybox-static with the few modules the guest needs. The
# guest: loads virtio_balloon, runs acpid so the ACPI power button halts it,
# writes its boot-time marker to the start of its private disk (vdb on
# QEMU, xvdb on Xen) and prints "qvm-test-guest: up" on its console. With
# qvmtest.ignore-acpi in its kernel options it ignores the power button.
# A second run with the same script and kernel is a no-op (the stamp
# DIR/VERSION/.qvm-test-kernel; DIR itself gets nothing else, so it may be
# the linux-kernel pool's directory).
set -eu
DIR=${1:?usage: test-kernel.sh DIR}
here=$(cd "$(dirname "$0")" && pwd)
busybox=/bin/busybox
for need in apt-get dpkg-deb cpio gzip sha256sum; do
  command -v "$need" >/dev/null 2>&1 || { echo "test-kernel: $need is missing" >&2; exit 1; }
done
[ -x "$busybox" ] && "$busybox" --list | grep -qx acpid || { echo "test-kernel: $busybox (package busybox-static) is missing" >&2; exit 1; }
file "$busybox" 2>/dev/null | grep -q 'dynamically linked' && { echo "test-kernel: $busybox is not static (install busybox-static)" >&2; exit 1; }

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
meta=linux-image-cloud-amd64
pkg=$(apt-cache depends "$meta" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
[ -n "$pkg" ] || { echo "test-kernel: apt-cache knows no $meta (run apt-get update)" >&2; exit 1; }
VERSION=${pkg#linux-image-}
stamp="$(sha256sum "$0" | cut -d' ' -f1) $pkg $(sha256sum "$busybox" | cut -d' ' -f1)"
if [ -f "$DIR/$VERSION/.qvm-test-kernel" ] && [ "$(cat "$DIR/$VERSION/.qvm-test-kernel")" = "$stamp" ] && [ -f "$DIR/$VERSION/initramfs" ]; then
  echo "$VERSION"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
( cd "$work" && apt-get download -q "$pkg" >/dev/null 2>"$work/apt.err" ) || {
  cat "$work/apt.err" >&2; echo "test-kernel: cannot download $pkg" >&2; exit 1; }
dpkg-deb -x "$work"/"$pkg"_*.deb "$work/pkg"
mods="$work/pkg/lib/modules/$VERSION/kernel"
[ -d "$mods" ] || { echo "test-kernel: $pkg has no modules for $VERSION" >&2; exit 1; }

root="$work/root"
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/etc/acpi/PWRF" "$root/lib/modules" "$root/tmp" "$root/var/run" "$root/var/log"
cp "$busybox" "$root/bin/busybox"
# Modules in load order; each one's dependencies come before it.
order="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio_balloon button evdev"
loaded=""
for m in $order; do
  f=$(find "$mods" -name "$m.ko" | head -n1)
  [ -n "$f" ] || { echo "test-kernel: module $m not in $pkg" >&2; exit 1; }
  for dep in $(grep -a -o 'depends=[a-z0-9_,-]*' "$f" | head -n1 | sed 's/^depends=//; s/,/ /g'); do
    case " $loaded " in *" $dep "*) ;; *) echo "test-kernel: $m needs $dep first" >&2; exit 1 ;; esac
  done
  cp "$f" "$root/lib/modules/$m.ko"
  loaded="$loaded $m"
done
echo "$order" > "$root/lib/modules/order"

# Power button (busybox acpid maps it to PWRF/00000080) -> sync and halt.
cat > "$root/etc/acpi/PWRF/00000080" <<'SH'
#!/bin/sh
echo "qvm-test-guest: power button, halting"
sync
poweroff -f
SH
chmod 755 "$root/etc/acpi/PWRF/00000080"
printf 'PWRF PWRF/00000080\n' > "$root/etc/acpid.conf"

cat > "$root/init" <<'SH'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null; done
# The private disk is the second one: vdb (virtio) or xvdb (Xen).
disk=""
i=0
while [ -z "$disk" ] && [ $i -lt 50 ]; do
  for d in /dev/vdb /dev/xvdb; do [ -b "$d" ] && disk=$d && break; done
  [ -n "$disk" ] || { sleep 0.1; i=$((i+1)); }
done
marker="QVM-TEST-GUEST boot=$(date -u +%Y-%m-%dT%H:%M:%SZ) uptime=$(cut -d' ' -f1 /proc/uptime)"
if [ -n "$disk" ]; then
  printf '%s\n' "$marker" | dd of="$disk" conv=notrunc,fsync 2>/dev/null && sync
fi
# qvmtest.ignore-acpi on the command line: a guest that does not halt on
# the power button (to test shutdown timeouts).
case " $(cat /proc/cmdline) " in
  *" qvmtest.ignore-acpi "*) echo "qvm-test-guest: ignoring the power button" ;;
  *)
    # Say "up" only once acpid listens on the power button's event device:
    # a press before that is lost.
    acpid -f -c /etc/acpi -a /etc/acpid.conf -l /var/log/acpid.log &
    apid=$!
    i=0
    while [ $i -lt 100 ] && ! ls -l /proc/$apid/fd 2>/dev/null | grep -q /dev/input/event; do sleep 0.05; i=$((i+1)); done
    ;;
esac
echo "qvm-test-guest: up ($marker disk=${disk:-none})"
while :; do sleep 3600; done
SH
chmod 755 "$root/init"

out="$DIR/$VERSION"
rm -rf "$out.new"
mkdir -p "$out.new"
cp "$work/pkg/boot/vmlinuz-$VERSION" "$out.new/vmlinuz"
( cd "$root" && find . | cpio -o -H newc --quiet ) | gzip -9 > "$out.new/initramfs"
# Kernel options: the console is hvc0 on Xen (qvm maps it to ttyS0 on QEMU).
printf 'console=hvc0 quiet panic=-1 ' > "$out.new/default-kernelopts-common.txt"
printf '' > "$out.new/default-kernelopts-nopci.txt"
echo "$stamp" > "$out.new/.qvm-test-kernel"
rm -rf "$out"
mv "$out.new" "$out"
echo "$VERSION"
