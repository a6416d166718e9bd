# RISC-V cross builds of the kernel, included by the Makefile. See docs/performance.md.
#   make riscv        build/riscv/{scalar,rvv1,c906}/: static kbench and ktest, and
#                     libstorybot.so (+ storybot.h) for a riscv64 Python (STORYBOT_LIB)
#   make riscv-test   every build under QEMU (RVV 1.0 and the C906's XTheadVector):
#                     vector kernels agree with naive and with the scalar build,
#                     and each vector build dies with SIGILL on the other ISA
#   make riscv-bench  dynamic instructions per token, stories15M shape
# The toolbox (GCC 14, QEMU, the counting plugin) comes from ../shared/riscv/setup.sh
# and lives in $(RVTOOLS).
RVSHARED ?= ../shared/riscv
RVTOOLS  ?= $(HOME)/.cache/rvtools
RVGCC    ?= $(RVTOOLS)/gcc14/usr/bin/riscv64-linux-gnu-gcc-14
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

.PHONY: riscv riscv-test riscv-bench riscv-tools

riscv-tools:
	@test -x $(RVGCC) || { test -x $(RVSHARED)/setup.sh && $(RVSHARED)/setup.sh; } || \
	  { echo "the RISC-V toolbox is missing: run $(RVSHARED)/setup.sh (from the shared folder beside the project)"; exit 2; }

riscv: riscv-tools $(foreach b,$(RV_BUILDS),$(RVOUT)/$(b)/kbench $(RVOUT)/$(b)/ktest $(RVOUT)/$(b)/libstorybot.so)

define RV_BUILD
$(RVOUT)/$(1)/obj/%.o: _kernel/%.c _kernel/*.h _kernel/build.mk
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
	RVSHARED=$(RVSHARED) sh bench/riscv_test.sh

riscv-bench: riscv build/kbench
	RVSHARED=$(RVSHARED) PYTHON=$(PYTHON) sh bench/riscv_bench.sh
