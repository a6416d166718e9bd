#!/bin/sh
# tools/deps.sh demo|test -- installs the Debian packages a target needs, only when
# some are missing (apt-get update is slow and needs the network).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
lists="$here/apt-demo.txt"
[ "${1:-demo}" = test ] && lists="$lists $here/apt-test.txt"
want=$(cat $lists | sed 's/#.*//' | tr -s ' \t' '\n' | grep -v '^$' | sort -u)
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -q update >/dev/null
$SUDO apt-get -q install -y --no-install-recommends $missing >/dev/null
