#!/bin/sh
# Builds the competitors' programs OUTSIDE this repository and runs them under the C906
# timing model (bench/c906sim.c) for bench/calibrate.py. Nothing of theirs is copied
# here: the script only compiles their public sources where you put them.
#
#   EXT=/work/ext sh bench/calibrate.sh          (or: make riscv-calibrate EXT=/work/ext)
#   python3 bench/calibrate.py $EXT/calib --markdown
#
# $EXT must hold the competitors' sources, from github.com/plctlab/rvspoc-s2311-llama2
# (a clone with the pull-request heads: git fetch origin 'refs/pull/*/head:refs/pull/*/head'):
#   $EXT/pr4/runq.c                      git show 432323c:runq.c   (PR4, the S2311 winner)
#   $EXT/pr2/{run.c,run_transpose.c,my_matmul.c,transpose_weight.c}
#                                        git show fca8a35:FILE     (PR2)
# and the models: stories260K.bin + tok512.bin + tokenizer.bin ($MODELS), and the
# stories15M-shaped llama2.c Q8_0 file make riscv-bench writes (build/riscv/bench/stories15M.l2q8).
set -eu
. tools/rvenv.sh
EXT=${EXT:?set EXT to a directory outside the repository}
# the models the competitors read: the package's stories260K and the tests' tokenizer.bin
if [ -z "${MODELS:-}" ]; then
  MODELS=$EXT/models
  mkdir -p "$MODELS"
  cp robot/data/stories260K.bin robot/data/tok512.bin tests/data/tokenizer.bin "$MODELS/"
fi
MODELS=$(cd "$MODELS" && pwd)   # absolute: the runs cd to $EXT
HERE=$(pwd)
SIM=$HERE/build/riscv/c906sim.so
M15=$HERE/build/riscv/bench/stories15M.l2q8
GRID=${GRID:-arg=lat=60:100:150:250,arg=line=50:56:62}
NM=$(dirname "$G14")/riscv64-linux-gnu-nm
C=$EXT/calib
mkdir -p "$C"
[ -f "$SIM" ] && [ -f "$M15" ] || { echo "run make riscv-bench first (plugin and model)"; exit 2; }

# PR2/PR4 call the RVV intrinsics by their pre-1.0 names; GCC 14 knows the __riscv_ ones.
cat >"$EXT/rvv_old_names.h" <<'EOF'
#include <riscv_vector.h>
#define vsetvl_e8m2(n) __riscv_vsetvl_e8m2(n)
#define vlb_v_i8m2(p, vl) __riscv_vle8_v_i8m2(p, vl)
#define vmv_v_x_i32m1(x, vl) __riscv_vmv_v_x_i32m1(x, vl)
#define vwmul_vv_i16m4(a, b, vl) __riscv_vwmul_vv_i16m4(a, b, vl)
#define vwredsum_vs_i16m4_i32m1(d, v, s, vl) __riscv_vwredsum_vs_i16m4_i32m1(v, s, vl)
#define vmv_x_s_i32m1_i32(v) __riscv_vmv_x_s_i32m1_i32(v)
#define vle32_v_f32m8(p, vl) __riscv_vle32_v_f32m8(p, vl)
#define vfmacc_vf_f32m8(acc, x, v, vl) __riscv_vfmacc_vf_f32m8(acc, x, v, vl)
#define vse32_v_f32m8(p, v, vl) __riscv_vse32_v_f32m8(p, v, vl)
EOF
X="-march=rv64gc_xtheadvector -mabi=lp64d -static"
for f in pr4/runq.c pr2/run.c pr2/run_transpose.c pr2/my_matmul.c pr2/transpose_weight.c; do
  [ -f "$EXT/$f" ] || { echo "missing $EXT/$f (see the top of bench/calibrate.sh)"; exit 2; }
done

# PR4: -O3 (its Makefile uses -Ofast with the Xuantie GCC). GCC 14 emits an invalid
# "th.vsetvli zero,0,..." for vmv.x.s (vl does not matter to it): assemble with zero,zero.
"$G14" $X -O3 -include "$EXT/rvv_old_names.h" -S -o "$EXT/pr4/runq.s" "$EXT/pr4/runq.c" 2>/dev/null
sed 's/th.vsetvli\tzero,0,/th.vsetvli\tzero,zero,/' "$EXT/pr4/runq.s" >"$EXT/pr4/runq_fixed.s"
"$G14" $X -o "$EXT/pr4/runq" "$EXT/pr4/runq_fixed.s" -lm

# PR2: run.c scalar, run_transpose.c with its RVV matmul on transposed weights, and the
# matvec timings of my_matmul.c through a harness of ours (one marked call per shape).
: >"$EXT/pr2/omp.h"   # they include omp.h; the pragmas are ignored without -fopenmp
"$G14" -march=rv64gc -mabi=lp64d -static -O3 -o "$EXT/pr2/run" "$EXT/pr2/run.c" -lm
"$G14" $X -O3 -I"$EXT/pr2" -include "$EXT/rvv_old_names.h" -o "$EXT/pr2/runt" "$EXT/pr2/run_transpose.c" -lm
gcc -O2 -w -o "$EXT/pr2/transpose_weight" "$EXT/pr2/transpose_weight.c"
cp "$MODELS/stories260K.bin" "$EXT/pr2/stories260K.transpose.bin"
"$EXT/pr2/transpose_weight" "$EXT/pr2/stories260K.transpose.bin"
cat >"$EXT/pr2/matvec_driver.c" <<'EOF'
/* storybot's calibration harness: PR2's matmul (RVV, column-major) and matmulold
 * (run.c's scalar) on the four shapes of its table, one call each between c906sim's
 * region markers after a warm-up call. */
#define main pr2_main
#include "my_matmul.c"
#undef main
static void mark0(void) { __asm__ volatile("slti x0,x0,0x7f0" ::: "memory"); }
static void mark1(void) { __asm__ volatile("slti x0,x0,0x7f1" ::: "memory"); }
int main(void) {
    static const int shapes[4][2] = {{288, 288}, {768, 288}, {288, 768}, {32000, 288}}; /* d x n */
    for (int s = 0; s < 4; s++) {
        int d = shapes[s][0], n = shapes[s][1];
        float *w = calloc((size_t)n * d, sizeof(float)), *x = calloc(n, sizeof(float));
        float *xo = calloc(d + 32, sizeof(float));
        for (long i = 0; i < (long)n * d; i++) w[i] = i;
        for (int i = 0; i < n; i++) x[i] = i;
        matmul(xo, x, w, n, d);
        mark0(); matmul(xo, x, w, n, d); mark1();
        matmulold(xo, x, w, n, d);
        mark0(); matmulold(xo, x, w, n, d); mark1();
        free(w); free(x); free(xo);
    }
    return 0;
}
EOF
"$G14" $X -O3 -I"$EXT/pr2" -include "$EXT/rvv_old_names.h" -o "$EXT/pr2/matvec" "$EXT/pr2/matvec_driver.c" -lm

# Runs: every grid point at once; one region per forward() call (mark=) for the programs.
PL="$SIM,arg=isa=xthead,$GRID"
fw() { "$NM" "$1" | awk '$3 == "forward" { print $1 }'; }
cd "$EXT/pr2"
env -i $QC906 -plugin "$PL,arg=out=$C/matvec.log" ./matvec >/dev/null
env -i $QC906 -plugin "$PL,arg=out=$C/run260.log,arg=mark=$(fw run)" ./run "$MODELS/stories260K.bin" -z "$MODELS/tok512.bin" -n 160 -s 1 >/dev/null
# (runt overruns its hidden-dim strips, as PR2's README says, and aborts at exit; the
# regions are written before that)
env -i $QC906 -plugin "$PL,arg=out=$C/runt260.log,arg=mark=$(fw runt)" ./runt stories260K.transpose.bin -z "$MODELS/tok512.bin" -n 160 -s 1 >/dev/null || true
cd "$EXT/pr4"
env -i $QC906 -plugin "$PL,arg=out=$C/pr4.log,arg=mark=$(fw runq)" ./runq "$M15" -z "$MODELS/tokenizer.bin" \
  -t 1.0 -p 0.9 -s 123 -i 'Once upon a time' -n 40 >/dev/null
echo "logs in $C: python3 bench/calibrate.py $C --markdown"
