#!/bin/bash
# Fetches what the Duo VM boots (tools/duo/vm/run.py), once, into $DUO_VM_CACHE
# (default ~/.cache/storybot/duo-vm): Debian trixie riscv64 packages, straight from the
# Debian archive this machine's apt already uses, through a private apt configuration
# (the system's apt sources and dpkg database are not touched):
#   kernel/   linux-image-*-riscv64: vmlinuz, its modules and config
#   debs/     busybox-static, python3 + python3-cffi, espeak-ng + its data, with the
#             libraries they need (recommends left out)
# Prints the cache directory. Runs offline once everything is cached (stamp file).
set -euo pipefail
C=${DUO_VM_CACHE:-$HOME/.cache/storybot/duo-vm}
PKGS="busybox-static python3 python3-cffi-backend python3-cffi espeak-ng espeak-ng-data libespeak-ng1"
STAMP=$C/fetched.v1
if [ -f "$STAMP" ]; then echo "$C"; exit 0; fi
A=$C/apt
mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/parts" "$A/dpkg" "$C/debs" "$C/kernel"
: > "$A/dpkg/status"
# the first non-security Debian mirror this machine is configured with
mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
[ -n "$mirror" ] || mirror=$(awk '/^deb / && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
echo "deb [arch=riscv64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$A/sources.list"
cat > "$A/apt.conf" <<EOS
Dir::Etc::SourceList "$A/sources.list";
Dir::Etc::SourceParts "$A/parts";
Dir::State::Lists "$A/lists";
Dir::State::status "$A/dpkg/status";
Dir::Cache "$A/cache";
APT::Architecture "riscv64";
APT::Architectures { "riscv64"; };
APT::Install-Recommends "false";
EOS
export APT_CONFIG=$A/apt.conf
apt-get -q update >&2
apt-get -q install --download-only -y $PKGS >&2
cp "$A"/cache/archives/*.deb "$C/debs/"
# The kernel alone: its own dependencies (initramfs-tools, kmod, ...) are for a full
# Debian install; the VM's tiny initramfs is built by run.py.
kpkg=$(apt-cache depends linux-image-riscv64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || { echo "fetch.sh: no linux-image for riscv64 in the archive" >&2; exit 1; }
(cd "$C/kernel" && rm -f ./*.deb && apt-get -q download "$kpkg" >&2)
rm -rf "$C/kernel/root"; mkdir -p "$C/kernel/root"
dpkg -x "$C"/kernel/*.deb "$C/kernel/root"
echo "$kpkg" > "$STAMP"
echo "$C"
