# storybot -- see README.md. `make demo` tells a story, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
PROMPT ?= Once upon a time

.PHONY: demo test test-unit test-system install build deps-demo deps-test lib bench clean duo duo-rvv1 duo-vm

# stories15M when it can be downloaded; offline, the built-in stories260K (robot/data/)
demo: install
	@$(VENV)/bin/storybot fetch stories15M || echo "make demo: no stories15M (offline?); the built-in model tells the story" >&2
	$(VENV)/bin/storybot --prompt "$(PROMPT)" --speak

test: deps-test install
	$(VPY) -m pip install -q -r requirements-test.txt
	$(VPY) -m pytest -q tests

# the halves of the suite: in-process checks, then the product as processes
test-unit test-system: deps-test install
	$(VPY) -m pip install -q -r requirements-test.txt
	$(VPY) -m pytest -q tests/$(@:test-%=%)

deps-demo:
	@tools/deps.sh demo

deps-test:
	@tools/deps.sh test

$(VPY):
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel cffi

# The package is installed editable so tests and the CLI use this tree; the cffi
# extension is compiled with this machine's compiler.
install: deps-demo $(VPY)
	$(VPY) -m pip install -q --no-build-isolation -e '.[speech]'
	$(VPY) setup.py -q build_ext --inplace >/dev/null

build: $(VPY)
	$(VPY) setup.py -q build_ext --inplace >/dev/null

# The kernel's sources and flags: one list, shared with setup.py, riscv.mk and the Duo bundle.
include _kernel/build.mk
KSRC := $(addprefix _kernel/,$(SB_SOURCES))

# The kernel as a plain shared library with no Python in it (what the board loads).
lib: build/libstorybot.so
build/libstorybot.so: $(KSRC) _kernel/*.h _kernel/build.mk
	@mkdir -p build
	$(CC) $(SB_CFLAGS) -fPIC -shared -o $@ $(KSRC) $(SB_LIBS)

# The Milk-V Duo bundle, build/duo/storybot-duo-c906.tar.gz (duo-rvv1: for RVV 1.0 boards); see
# docs/duo.md. Cross compiler: CROSS_COMPILE=<prefix> (e.g. the Milk-V SDK's), else GCC 14 from
# the project's RISC-V toolbox (tools/rvtoolbox.sh, installed on first use).
duo duo-rvv1:
	@export RV_PREFIX=$(RVTOOLS); if [ -z "$$CROSS_COMPILE$$DUO_CC" ]; then bash tools/rvtoolbox.sh && . tools/rvenv.sh; fi; \
	$(PYTHON) tools/duo/bundle.py --isa $(if $(filter duo,$@),c906,rvv1)

# The bundle in a whole riscv64 system under qemu-system, with the Duo's free memory
# (docs/duo.md, "In a virtual machine"). The last line printed is one JSON object.
#   make duo-vm PROFILE=judged|stock MODEL=stories260K|stories15M|PATH FORMAT=fp32|q8|q8q4 SPEAK=1|0
PROFILE ?= judged
MODEL   ?= stories260K
FORMAT  ?= fp32
SPEAK   ?= 1
duo-vm: build
	@$(VPY) -c 'import numpy' 2>/dev/null || $(VPY) -m pip install -q -r requirements-test.txt
	@tools/deps.sh test
	@$(VPY) tools/duo/vm/run.py --profile $(PROFILE) --model $(MODEL) --format $(FORMAT) --speak $(SPEAK) $(DUO_VM_ARGS)

bench: install
	$(VENV)/bin/storybot bench --shape stories15M

clean:
	rm -rf build dist *.egg-info robot/_storybot*.so robot/_storybot.c _storybot.* .pytest_cache

# RISC-V cross builds, emulated tests and instruction counts (riscv, riscv-test, riscv-bench)
include bench/riscv.mk
# libFuzzer harnesses (fuzz, fuzz-replay); see docs/fuzzing.md
include tests/fuzz/fuzz.mk
