# Fuzzing, included by the Makefile (docs/fuzzing.md).
#   make fuzz        libFuzzer campaign on both harnesses, FUZZ_RUNS inputs or
#                    FUZZ_TIME seconds each, whichever ends first; new corpus entries go
#                    to build/fuzz/corpus-*, findings to build/fuzz/crash-*
#   make fuzz-replay the committed corpus once under ASan + UBSan (tests/unit/test_fuzz.py
#                    does the same inside `make test`, with or without libFuzzer)
FUZZ_CC    ?= $(shell command -v clang-16 || command -v clang)
FUZZ_RUNS  ?= 1000000
FUZZ_TIME  ?= 1800
FUZZ_SAN    = -g -O2 -std=c11 -I_kernel -fno-sanitize-recover=all
FUZZ_HARNESSES := model tokenizer

.PHONY: fuzz fuzz-replay

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/memfile.c $(KSRC) _kernel/*.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer,address,undefined -o $@ $< tests/fuzz/memfile.c $(KSRC) $(SB_LIBS)

fuzz: $(addprefix build/fuzz/fuzz_,$(FUZZ_HARNESSES))
	@for h in $(FUZZ_HARNESSES); do \
	  mkdir -p build/fuzz/corpus-$$h; \
	  echo "fuzzing $$h: $(FUZZ_RUNS) runs or $(FUZZ_TIME) s"; \
	  build/fuzz/fuzz_$$h -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_TIME) -max_len=8192 -timeout=10 \
	    -rss_limit_mb=2048 -artifact_prefix=build/fuzz/ -print_final_stats=1 \
	    build/fuzz/corpus-$$h tests/fuzz/corpus/$$h 2>&1 | tee build/fuzz/$$h.log | grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|==[0-9]+==ERROR)'; \
	  grep -q 'DONE' build/fuzz/$$h.log || { echo "fuzz_$$h found something: see build/fuzz/$$h.log"; exit 1; }; \
	done

fuzz-replay: $(addprefix build/fuzz/fuzz_,$(FUZZ_HARNESSES))
	@for h in $(FUZZ_HARNESSES); do build/fuzz/fuzz_$$h -runs=0 tests/fuzz/corpus/$$h || exit 1; done
