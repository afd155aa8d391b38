#!/bin/sh
# Installs the Debian packages named in the given lists that are not yet
# installed. As root it runs apt-get; otherwise it names what is missing.
set -eu
missing=""
for f in "$@"; do
  for p in $(grep -v '^#' "$f"); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
  done
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing Debian packages:$missing (run 'make deps' as root)" >&2
  exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 || {
  apt-get update -q >/dev/null 2>&1
  apt-get install -y -q --no-install-recommends $missing >/dev/null
}
