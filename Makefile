# lmc: plain Makefile. `make` builds build/lmc; `make check` builds and runs
# every test; `make deps` installs the Debian packages that are missing.
CC      ?= cc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
PKGS     = openblas lapacke libcjson libpcre2-8 zlib
CFLAGS  ?= -O2 -g
override CFLAGS += -std=c11 -Wall -Wextra -D_GNU_SOURCE -fopenmp -MMD -MP \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lopenblas -llapacke -lcjson -lpcre2-8 -lz) -lm -fopenmp
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lpthread)

B        = build
LIB_SRC  = $(wildcard core/*.c formats/*.c calib/*.c eval/*.c compress/*.c)
CLI_SRC  = lmc.c $(wildcard cli/*.c)
TEST_SRC = $(wildcard tests/test_*.c)
LIB_OBJ  = $(LIB_SRC:%.c=$(B)/%.o)
CLI_OBJ  = $(CLI_SRC:%.c=$(B)/%.o)
TESTS    = $(TEST_SRC:tests/%.c=$(B)/tests/%)
TEST_HELPERS = $(filter-out $(TEST_SRC),$(wildcard tests/*.c))
TEST_HELPER_OBJ = $(TEST_HELPERS:%.c=$(B)/%.o)
# small programs the CLI tests run (tests/tools/*.c, each one file on liblmc)
TOOLS    = $(patsubst tests/tools/%.c,$(B)/tests/tools/%,$(wildcard tests/tools/*.c))

# CUDA: built only when nvcc is found; the CPU build never needs it.
CU_SRC   = $(wildcard eval/cuda/*.cu compress/cuda/*.cu)
ifneq ($(strip $(NVCC)),)
ifneq ($(strip $(CU_SRC)),)
ifneq ($(LMC_NO_CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CU_OBJ   = $(CU_SRC:%.cu=$(B)/%.cu.o)
# the C side of the CUDA backend: in a CUDA build only (no stubs otherwise)
CU_C_OBJ = $(patsubst %.c,$(B)/%.o,$(wildcard eval/cuda/*.c compress/cuda/*.c))
override CFLAGS += -DLMC_HAVE_CUDA
NVFLAGS ?= -O2 -std=c++17 -MMD -MP -gencode arch=compute_90a,code=sm_90a -DLMC_SM90A -gencode arch=compute_80,code=compute_80 -Xcompiler -Wall,-Wextra
LDLIBS  += -L$(CUDA_HOME)/lib64 -lcudart -lcublas -lcusolver -lstdc++ -Wl,-rpath,$(CUDA_HOME)/lib64
endif
endif
endif

# keep the test objects (intermediate through the pattern rule below); a
# bare .SECONDARY would make every object secondary, and make would then not
# rebuild a missing one whose archive looks newer (a new source file)
.SECONDARY: $(TESTS:=.o)
.PHONY: all deps check check-full test asan-check bench clean demo cuda-check FORCE fuzz fuzz-build
all: $(B)/lmc

$(B)/liblmc.a: $(LIB_OBJ) $(CU_C_OBJ) $(CU_OBJ)
	@mkdir -p $(@D)
	@rm -f $@ # a fresh archive: objects of deleted sources must not linger in it
	$(AR) rcs $@ $^

$(B)/lmc: $(CLI_OBJ) $(B)/liblmc.a
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(B)/liblmc.a $(LDLIBS)

# objects depend on the flags they were built with: switching between a CUDA
# and a CPU-only (LMC_NO_CUDA=1) build recompiles what the switch changes
$(B)/.flags: FORCE
	@mkdir -p $(B)
	@echo '$(CC) $(CFLAGS) $(NVCC) $(NVFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(NVCC) $(NVFLAGS)' > $@

$(B)/%.o: %.c $(B)/.flags
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(if $(filter tests/%,$<),$(CHECK_CFLAGS)) -c $< -o $@

$(B)/%.cu.o: %.cu $(B)/.flags
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(B)/tests/tools/%: $(B)/tests/tools/%.o $(B)/liblmc.a
	$(CC) $(CFLAGS) -o $@ $< $(B)/liblmc.a $(LDLIBS)

$(B)/tests/%: $(B)/tests/%.o $(TEST_HELPER_OBJ) $(B)/liblmc.a
	$(CC) $(CFLAGS) -o $@ $< $(TEST_HELPER_OBJ) $(B)/liblmc.a $(CHECK_LIBS) $(LDLIBS)

deps:
	@scripts/deps.sh

# The README's two commands: install what is missing, build, then run.
test:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory -j2 check

demo:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory -j2 all
	@scripts/demo.sh

check: $(B)/lmc $(TESTS) $(TOOLS)
	@scripts/run-tests.sh $(TESTS)

# check plus the whole-text reference perplexity of every shared model
# (tests/test_eval_ref.c; make check checks their window 0 only)
check-full: $(B)/lmc $(TESTS) $(TOOLS)
	@LMC_TEST_FULL=1 scripts/run-tests.sh $(TESTS)

# The malformed-input tests (parsers of safetensors, config.json,
# tokenizer.json and containers; the fuzzers' regression inputs; CLI error
# paths) under AddressSanitizer and UBSan, CPU-only; undefined behaviour
# fails the test (halt_on_error; float-cast-overflow is not in gcc's
# "undefined" group).
ASAN_FLAGS = -O1 -g -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer
ASAN_TESTS = test_core test_safetensors test_hf_config test_checkpoint test_container \
             test_tokenizer test_qgroup test_sparse test_finite test_fuzz_regress test_export
asan-check:
	$(MAKE) B=build-asan CFLAGS="$(ASAN_FLAGS)" LMC_NO_CUDA=1 build-asan/lmc \
	    $(ASAN_TESTS:%=build-asan/tests/%)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    LMC_BIN=build-asan/lmc scripts/run-tests.sh \
	    $(ASAN_TESTS:%=build-asan/tests/%) tests/cli/inspect_convert.sh tests/cli/eval.sh \
	    tests/cli/tokenize.sh tests/cli/hardening.sh tests/cli/export_errors.sh

# GPU tests (on a machine with an NVIDIA GPU): every CUDA kernel against the
# CPU path, every pass's GPU container against its CPU one; prints SKIP and
# passes without a GPU.
cuda-check: $(B)/lmc $(B)/tests/test_cuda
	$(B)/tests/test_cuda
	tests/cuda/encodings.sh
	tests/cuda/passes.sh

# Fuzz targets (docs/FUZZING.md): clang's libFuzzer with ASan and UBSan on the
# parsers, built against core/ and formats/ compiled with the same flags. A
# benchmark-style target, not part of check: each target runs FUZZ_SECONDS
# (FUZZ_JOBS at a time); corpora and crashes stay in build-fuzz/.
FUZZ_CC      ?= clang
FUZZ_FLAGS    = -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer
FUZZ_SECONDS ?= 600
FUZZ_JOBS    ?= 1
FUZZ_TARGETS ?= $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_LIB_OBJ  = $(patsubst %.c,$(B)/%.o,$(wildcard core/*.c formats/*.c))
$(B)/fuzz/fuzz_%: fuzz/fuzz_%.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.o,$^) $(LDLIBS)
fuzz-build: $(B)/lmc
	$(MAKE) B=build-fuzz CC=$(FUZZ_CC) CFLAGS="$(FUZZ_FLAGS)" LMC_NO_CUDA=1 \
	    $(FUZZ_TARGETS:%=build-fuzz/fuzz/%)
fuzz: fuzz-build
	fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_JOBS) $(FUZZ_TARGETS)

bench: $(B)/lmc
	scripts/bench-eval
	scripts/bench-gptq

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CU_C_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(TESTS:=.d) \
         $(TEST_HELPER_OBJ:.o=.d) $(TOOLS:=.d) $(wildcard $(B)/fuzz/*.d)
