# . tools/rvenv.sh -- the RISC-V toolbox's variables (after tools/rvtoolbox.sh):
#   RVTOOLS  the toolbox directory ($RV_PREFIX, default ~/.cache/storybot/rvtools)
#   G14      riscv64 GCC 14: -march=rv64gcv (RVV 1.0) or rv64gc_xtheadvector (the C906)
#   QRVV     qemu-riscv64 7.2 (Debian) as an RVV 1.0 core, VLEN 128; loads plugins
#   QC906    xuantie-qemu as the C906: XTheadVector (RVV 0.7.1), VLEN 128
#   RVROOT   riscv64 root with python3.13 + numpy + cffi + musl, for qemu -L
#   RVCOUNT  the instruction-count plugin (bench/rvcount.c)
RVTOOLS=${RV_PREFIX:-$HOME/.cache/storybot/rvtools}
export RVTOOLS
export G14=$RVTOOLS/gcc14/usr/bin/riscv64-linux-gnu-gcc-14
export XQEMU
XQEMU=$(ls "$RVTOOLS"/venv/lib/python3*/site-packages/qemu/qemu-riscv64 2>/dev/null | head -1)
export RVROOT=$RVTOOLS/rvroot
export RVCOUNT=$RVTOOLS/rvcount.so
export QRVV="qemu-riscv64 -cpu rv64,v=true,vlen=128,vext_spec=v1.0"
export QC906="$XQEMU -cpu c906fdv"
