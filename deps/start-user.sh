#!/bin/sh
# libvirt's QEMU driver (also the embedded one qvm uses without a daemon)
# resolves its build-time user libvirt-qemu at start-up, before reading
# qemu.conf, and refuses to start in system mode when it is missing. Debian
# creates it in libvirt-daemon-system, which would also start a libvirtd;
# qvm only needs the user to exist (QEMU itself runs as root, see qemu.conf).
set -eu
getent passwd libvirt-qemu >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: system user libvirt-qemu is missing (run 'make deps' as root)" >&2
  exit 0
fi
getent group libvirt-qemu >/dev/null 2>&1 || groupadd --system libvirt-qemu
useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin -g libvirt-qemu libvirt-qemu
echo "deps: created system user libvirt-qemu (needed by libvirt's QEMU driver)" >&2
