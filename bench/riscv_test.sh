#!/bin/sh
# make riscv-test: runs the static kbench of every RISC-V build (bench/riscv.mk) under
# QEMU on real and seeded models in every weight format, and checks that
#   - each build's fast kernel agrees with its own naive kernel (kbench --check),
#   - the RVV 1.0 and C906 builds agree with the scalar build on the same inputs,
#   - the scalar build gives identical logits under both emulators,
#   - each vector build dies with SIGILL (rc 132) under the other ISA's emulator,
#     which proves the vector code is what ran.
set -eu
. tools/rvenv.sh
PYTHON=${PYTHON:-python3}
OUT=build/riscv/test
# an int8 rounding flip after a reordered fp32 sum moves logits by up to a few per
# cent; a broken kernel moves them by far more (ktest checks the ops bit for bit)
TOL=${RV_TOL:-5e-2}
mkdir -p "$OUT"

# stories260K: real weights, grouped-query attention, hidden 172 (a partial 12-row
# block); tiny-unshared-32k: a separate 32000-row classifier, groups of 48 and 24.
[ -f "$OUT/tiny-unshared-32k.bin" ] || $PYTHON -c "import sys; sys.path.insert(0, '.'); from robot.models import modelgen
modelgen.write_fixture('$OUT/tiny-unshared-32k.bin', 'tiny-unshared-32k')"
MODELS=""
for src in robot/data/stories260K.bin "$OUT/tiny-unshared-32k.bin"; do
  base=$(basename "$src" .bin)
  [ "$OUT/$base.q8" -nt build/kbench ] || build/kbench --quantize "$src" "$OUT/$base.q8" q8
  [ "$OUT/$base.q8q4" -nt build/kbench ] || build/kbench --quantize "$src" "$OUT/$base.q8q4" q8q4
  [ "$OUT/$base.l2q8" -nt build/kbench ] || build/kbench --llama2c-q8 "$src" "$OUT/$base.l2q8"
  MODELS="$MODELS $src $OUT/$base.q8 $OUT/$base.q8q4 $OUT/$base.l2q8"
done

# every emulator run at once (they are independent), then the verdicts in order
emu() { [ "$1" = c906 ] && echo --c906 || true; }
for bt in scalar:rvv rvv1:rvv c906:c906; do
  b=${bt%%:*}; e=${bt#*:}
  ( set +e; tools/rvrun $(emu "$e") "build/riscv/$b/ktest" >"$OUT/ktest-$b-$e.log" 2>&1; echo $? >"$OUT/ktest-$b-$e.rc" ) &
done
for bt in scalar:rvv scalar:c906 rvv1:rvv c906:c906 rvv1:c906 c906:rvv; do
  b=${bt%%:*}; e=${bt#*:}
  ( set +e; tools/rvrun $(emu "$e") "build/riscv/$b/kbench" -n 6 -p 5 --check "$TOL" --dump "$OUT/$b-$e.dump" $MODELS \
      >"$OUT/$b-$e.log" 2>&1; echo $? >"$OUT/$b-$e.rc" ) &
done
wait

fail=0
ktest() { # build emulator: every op of the fast table against naive, edge shapes included
  if [ "$(cat "$OUT/ktest-$1-$2.rc")" = 0 ]; then
    echo "ok   $1 build under $2 emulator: $(tail -1 "$OUT/ktest-$1-$2.log" | sed 's/^ktest: //') ($(sed -n 's/^ktest: fast table \([a-z0-9.]*\) vs naive/\1/p' "$OUT/ktest-$1-$2.log"))"
  else echo "FAIL $1 build under $2 emulator: ops disagree, see $OUT/ktest-$1-$2.log"; grep FAIL "$OUT/ktest-$1-$2.log" | head -5; fail=1; fi
}
run() { # build emulator(rvv|c906) expect(ok|sigill)
  rc=$(cat "$OUT/$1-$2.rc")
  if [ "$3" = sigill ]; then
    if [ "$rc" -eq 132 ]; then echo "ok   $1 build under $2 emulator: SIGILL as it must (rc 132)"
    else echo "FAIL $1 build under $2 emulator: expected SIGILL (rc 132), got rc $rc"; fail=1; fi
  else
    isa=$(sed -n 's/.*fast kernel isa \([^,]*\),.*/\1/p' "$OUT/$1-$2.log")
    if [ "$rc" -eq 0 ]; then echo "ok   $1 build under $2 emulator: fast kernel ($isa) agrees with naive on every model"
    else echo "FAIL $1 build under $2 emulator (rc $rc), see $OUT/$1-$2.log"; tail -5 "$OUT/$1-$2.log"; fail=1; fi
  fi
}
ktest scalar rvv
ktest rvv1 rvv
ktest c906 c906
run scalar rvv ok
run scalar c906 ok
run rvv1 rvv ok
run c906 c906 ok
run rvv1 c906 sigill
run c906 rvv sigill

cmp_dumps() { # tol a b what
  if build/kbench --compare "$1" "$OUT/$2.dump" "$OUT/$3.dump" >/dev/null 2>&1; then
    echo "ok   $4: $(build/kbench --compare "$1" "$OUT/$2.dump" "$OUT/$3.dump" | sed 's/.*logits, //')"
  else echo "FAIL $4: $(build/kbench --compare "$1" "$OUT/$2.dump" "$OUT/$3.dump" 2>&1)"; fail=1; fi
}
[ -s "$OUT/scalar-rvv.dump" ] && cmp_dumps 0 scalar-rvv scalar-c906 "scalar build, same logits under both emulators"
[ -s "$OUT/rvv1-rvv.dump" ] && cmp_dumps "$TOL" scalar-rvv rvv1-rvv "RVV 1.0 build vs scalar build"
[ -s "$OUT/c906-c906.dump" ] && cmp_dumps "$TOL" scalar-c906 c906-c906 "C906 build vs scalar build"

# the same source must also be plain standard intrinsics for another compiler
if command -v clang-16 >/dev/null 2>&1; then
  if clang-16 --target=riscv64-linux-gnu -march=rv64gcv -O2 -std=c11 -Wall -Werror -I_kernel -c _kernel/ops_rvv.c -o "$OUT/ops_rvv.clang.o"; then
    echo "ok   clang-16 compiles ops_rvv.c for RVV 1.0"
  else echo "FAIL clang-16 cannot compile ops_rvv.c"; fail=1; fi
fi
[ $fail -eq 0 ] && echo "riscv-test: all passed" || echo "riscv-test: FAILED"
exit $fail
