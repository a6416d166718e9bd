#!/bin/sh
# make riscv-bench: dynamic RISC-V instructions per token on the stories15M shape
# (seeded random weights: the count depends on the shape, not the values), counted by
# the c906sim QEMU plugin (bench/c906sim.c) between kbench's region markers, for each
# build, kernel and weight format. Steps run at positions POS.. (default 128: the
# middle of a 256-token story, so attention costs what it costs on average). Prints a
# markdown table and writes the same figures to build/riscv/bench/counts.tsv (for
# bench/perf_plot.py). The same runs give c906sim's C906 cycle estimate:
# bench/estimate.py turns it into build/riscv/estimate.json and a second table.
set -eu
. tools/rvenv.sh
SIM=${SIM:-build/riscv/c906sim.so}
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-2}
POS=${POS:-128}
OUT=build/riscv/bench
mkdir -p "$OUT"
M=$OUT/stories15M
[ -f "$M.bin" ] || $PYTHON -c "import sys; sys.path.insert(0, '.'); from robot.models import modelgen; modelgen.write_shape('$M.bin', 'stories15M')"
[ "$M.q8" -nt build/kbench ] || build/kbench --quantize "$M.bin" "$M.q8" q8
[ "$M.q8q4" -nt build/kbench ] || build/kbench --quantize "$M.bin" "$M.q8q4" q8q4
[ "$M.l2q8" -nt build/kbench ] || build/kbench --llama2c-q8 "$M.bin" "$M.l2q8"

# an empty environment so that counts repeat exactly; the emulator's ISA picks the
# plugin's vtype layout (RVV 1.0, or 0.7.1 under xuantie-qemu's QEMU 6.0 option syntax)
sim() { # emulator program args...
  if [ "$1" = c906 ]; then shift; env -i $QC906 -plugin "$SIM,arg=isa=xthead" "$@"
  else shift; env -i $QRVV -plugin "$SIM,isa=v" "$@"; fi
}

count() { # label build emulator kernel model [kbench options, e.g. the sampler's -t 1 -P 0.9]
  label=$1 build=$2 emu=$3 kernel=$4 model=$5
  shift 5
  log=$OUT/$build-$emu-$kernel-$(basename "$model")$(echo "$*" | tr -d ' ').log
  sim "$emu" "build/riscv/$build/kbench" -n "$STEPS" -p "$POS" -k "$kernel" "$@" "$model" >"$log" 2>&1
  bytes=$(sed -n 's/.* \([0-9]*\) weight bytes\/token.*/\1/p' "$log" | head -1)
  format=$(awk '/^roi [0-9]+:/ { print $4; exit }' "$log")
  sampler=no; [ $# -gt 0 ] && sampler=yes
  grep '^roi\[' "$log" | awk -v n="$STEPS" -v label="$label" -v bytes="$bytes" -v TSV="$OUT/counts.tsv" \
      -v build="$build" -v kernel="$kernel" -v format="$format" -v sampler="$sampler" '
    { for (i = 2; i <= NF; i++) { split($i, kv, "="); gsub(/[()]/, "", kv[1]); gsub(/[()]/, "", kv[2]); c[kv[1]] += kv[2] } }
    END { printf "| %s | %.2f | %.2f | %.2f | %.2f | %.1f |\n", label, c["total"] / n / 1e6, c["scalar"] / n / 1e6,
          c["vector"] / n / 1e6, c["vset"] / n / 1e6, bytes / 1e6
          printf "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\n", label, c["total"] / n, c["scalar"] / n,
                 c["vector"] / n, c["vset"] / n, bytes, build, kernel, format, sampler, c["cycles"] / n,
                 c["memstall"] / n >> TSV }'
}
printf 'variant\ttotal\tscalar\tvector\tvset\tweight_bytes\tbuild\tkernel\tformat\tsampler\tcycles\tmemstall\n' >"$OUT/counts.tsv"
echo "stories15M shape, instructions per token (millions) at positions $POS..$((POS + STEPS - 1)):"
echo
echo "| build / kernel / weights | total | scalar | vector | of which vsetvl | weight MB read/token |"
echo "|---|---|---|---|---|---|"
count "scalar, naive, fp32 (baseline)" scalar rvv naive "$M.bin"
count "scalar, fast (portable C), fp32" scalar rvv fast "$M.bin"
count "scalar, fast (portable C), q8" scalar rvv fast "$M.q8"
count "RVV 1.0, fast, fp32" rvv1 rvv fast "$M.bin"
count "RVV 1.0, fast, q8" rvv1 rvv fast "$M.q8"
count "RVV 1.0, fast, q8q4" rvv1 rvv fast "$M.q8q4"
count "RVV 1.0, fast, llama2.c Q8_0" rvv1 rvv fast "$M.l2q8"
count "C906 (XTheadVector), fast, fp32" c906 c906 fast "$M.bin"
count "C906 (XTheadVector), fast, q8" c906 c906 fast "$M.q8"
count "C906 (XTheadVector), fast, q8q4" c906 c906 fast "$M.q8q4"
count "C906 (XTheadVector), fast, llama2.c Q8_0" c906 c906 fast "$M.l2q8"
echo
echo "Whole tokens as the story makes them: the forward step plus the sampler at the scored"
echo "settings (-t 1.0 -p 0.9; run.c-exact softmax for fp32, the kernel's own for quantised):"
echo
echo "| build / kernel / weights + sampler | total | scalar | vector | of which vsetvl | weight MB read/token |"
echo "|---|---|---|---|---|---|"
count "scalar, naive, fp32, + sampler" scalar rvv naive "$M.bin" -t 1 -P 0.9
count "RVV 1.0, fast, q8, + sampler" rvv1 rvv fast "$M.q8" -t 1 -P 0.9
count "C906 (XTheadVector), fast, q8, + sampler" c906 c906 fast "$M.q8" -t 1 -P 0.9
count "C906 (XTheadVector), fast, q8q4, + sampler" c906 c906 fast "$M.q8q4" -t 1 -P 0.9
echo
$PYTHON bench/estimate.py "$OUT/counts.tsv" build/riscv/estimate.json
