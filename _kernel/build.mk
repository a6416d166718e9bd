# The kernel's one list of C sources and compiler flags. Read by the Makefile (`lib`,
# build/kbench, the fuzz targets), bench/riscv.mk, _kernel/build_ffi.py (pip install)
# and tools/duo/bundle.py, so all of them compile the same files the same way.
# Plain `NAME = words` lines only: Python reads this file too (_kernel/buildvars.py).

# Bottom layer first: status, then the model-file layer (weights, one file per format,
# the dispatch), then the tokenizer, the forward step, the sampler and the op tables.
SB_SOURCES = status.c guard.c weights.c format_f32.c format_llama2c_q8.c format_sbq.c model.c tokenizer.c forward.c sampler.c ops_naive.c ops_portable.c ops_rvv.c
SB_CFLAGS = -O3 -std=c11 -Wall -Wno-unused-function
SB_LIBS = -lm
# RISC-V cross builds add these: GCC's auto-vectoriser is unsafe for XTheadVector, and
# keeping it off for RVV 1.0 too means every vector instruction comes from ops_rvv.c.
SB_RV_CFLAGS = -fno-tree-vectorize -fno-tree-slp-vectorize -U_FORTIFY_SOURCE
