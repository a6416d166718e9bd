# RISC-V cross builds of the kernel, included by the Makefile. See docs/performance.md.
#   make riscv        build/riscv/{scalar,rvv1,c906}/: static kbench and ktest, and
#                     libstorybot.so (+ storybot.h) for a riscv64 Python (STORYBOT_LIB)
#   make riscv-test   every build under QEMU (RVV 1.0 and the C906's XTheadVector):
#                     vector kernels agree with naive and with the scalar build,
#                     and each vector build dies with SIGILL on the other ISA
#   make riscv-bench  dynamic instructions per token, stories15M shape, and the C906
#                     timing model's estimate (build/riscv/estimate.json)
#   make riscv-calibrate EXT=DIR   the timing model against real-board figures, with
#                     competitors built in DIR, outside the repository (bench/calibrate.sh)
# The toolbox (GCC 14, QEMU, the counting plugin, a riscv64 Python) is the project's
# own: tools/rvtoolbox.sh installs it into $(RVTOOLS) on first use (1-3 minutes,
# Debian packages and PyPI), and returns at once after that.
RVTOOLS  ?= $(HOME)/.cache/storybot/rvtools
RVGCC    ?= $(RVTOOLS)/gcc14/usr/bin/riscv64-linux-gnu-gcc-14
# numpy makes the seeded test models: the project's venv when there is one
RVPY     ?= $(if $(wildcard $(VPY)),$(VPY),$(PYTHON))
RVOUT    := build/riscv
RV_KSRC  := $(KSRC)
# -fPIC everywhere: one set of objects serves the static programs and the library.
# SB_RV_CFLAGS (_kernel/build.mk) turns auto-vectorisation off.
RV_CFLAGS = $(SB_CFLAGS) $(SB_RV_CFLAGS) -I_kernel -fPIC
RV_ARCH_scalar := -march=rv64gc -mabi=lp64d
RV_ARCH_rvv1   := -march=rv64gcv -mabi=lp64d
RV_ARCH_c906   := -march=rv64gc_xtheadvector -mabi=lp64d
RV_BUILDS := scalar rvv1 c906
RV_OBJS = $(patsubst _kernel/%.c,$(RVOUT)/$(1)/obj/%.o,$(RV_KSRC))

.PHONY: riscv riscv-test riscv-bench riscv-tools riscv-calibrate

riscv-tools:
	@RV_PREFIX=$(RVTOOLS) bash tools/rvtoolbox.sh

riscv: riscv-tools $(foreach b,$(RV_BUILDS),$(RVOUT)/$(b)/kbench $(RVOUT)/$(b)/ktest $(RVOUT)/$(b)/libstorybot.so)

define RV_BUILD
$(RVOUT)/$(1)/obj/%.o: _kernel/%.c _kernel/*.h _kernel/build.mk | riscv-tools
	@mkdir -p $$(@D)
	$$(RVGCC) $$(RV_ARCH_$(1)) $$(RV_CFLAGS) -c -o $$@ $$<

# static test/bench programs: run under qemu-user with no sysroot
$(RVOUT)/$(1)/%: bench/%.c bench/roi.h $(call RV_OBJS,$(1))
	$$(RVGCC) $$(RV_ARCH_$(1)) $$(RV_CFLAGS) -static -o $$@ $$< $(call RV_OBJS,$(1)) $(SB_LIBS)

# the library a riscv64 Python loads in ABI mode; storybot.h beside it
$(RVOUT)/$(1)/libstorybot.so: $(call RV_OBJS,$(1))
	$$(RVGCC) $$(RV_ARCH_$(1)) -shared -Wl,-soname,libstorybot.so -o $$@ $$^ $(SB_LIBS)
	cp _kernel/storybot.h $$(@D)/storybot.h
endef
$(foreach b,$(RV_BUILDS),$(eval $(call RV_BUILD,$(b))))

# host kbench: makes the quantised test models and compares dumps
build/kbench: bench/kbench.c bench/roi.h $(KSRC) _kernel/*.h _kernel/build.mk
	@mkdir -p $(@D)
	$(CC) $(SB_CFLAGS) -I_kernel -o $@ bench/kbench.c $(KSRC) $(SB_LIBS)

riscv-test: riscv build/kbench
	RV_PREFIX=$(RVTOOLS) PYTHON=$(RVPY) sh bench/riscv_test.sh

# the C906 timing model, a QEMU plugin built for this machine (bench/c906sim.c)
$(RVOUT)/c906sim.so: bench/c906sim.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -shared -fPIC -o $@ $<

riscv-bench: riscv build/kbench $(RVOUT)/c906sim.so
	RV_PREFIX=$(RVTOOLS) PYTHON=$(RVPY) sh bench/riscv_bench.sh

riscv-calibrate: riscv-bench
	@test -n "$(EXT)" || { echo "set EXT to a directory outside the repository holding the competitors' sources (bench/calibrate.sh)"; exit 2; }
	EXT=$(EXT) RV_PREFIX=$(RVTOOLS) sh bench/calibrate.sh
	$(RVPY) bench/calibrate.py $(EXT)/calib --markdown
