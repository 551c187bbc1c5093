# Short entry points; CMake does the real work. Each target installs what it needs first
# (scripts/deps.sh: Debian packages, as root) so it works on a brand-new machine.
BUILD    ?= build
ASANDIR  ?= build-asan
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
# Every optional part on, and a missing dependency an error rather than a part quietly
# left out (scripts/deps.sh installs them first).
LW_FLAGS  = -DLW_REQUIRE_ALL=ON

.PHONY: all build test test-asan lab fuzz clean bench bench-quick

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(LW_FLAGS) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@sh scripts/deps.sh build

# The README's test command.
test: build
	cd $(BUILD) && ctest --output-on-failure -j 2 --timeout 300

test-asan: deps
	cmake -S . -B $(ASANDIR) -DCMAKE_BUILD_TYPE=Debug -DLW_SANITIZE=ON $(LW_FLAGS) $(CMAKE_FLAGS)
	cmake --build $(ASANDIR) -j $(JOBS)
	cd $(ASANDIR) && ctest --output-on-failure -j 2 --timeout 300

# Benchmarks side by side (bench/README.md); quick mode for iteration.
bench: build
	@sh scripts/deps.sh bench
	sh bench/run.sh --build $(BUILD)

bench-quick: build
	@sh scripts/deps.sh bench
	sh bench/run.sh --build $(BUILD) --quick

# The README's first command: the lab.
lab: build
	$(BUILD)/tools/lastword lab $(LAB_ARGS)

clean:
	rm -rf $(BUILD) $(ASANDIR)

# libFuzzer on the close state machine and on the lab's scenario parser (clang from
# Debian), each bounded in time.
FUZZ_SECONDS ?= 30
FUZZ_SCRIPT_SECONDS ?= 20
fuzz:
	@sh scripts/deps.sh fuzz
	mkdir -p build-fuzz
	clang -std=c11 -D_GNU_SOURCE -DLW_LIBFUZZER -g -O1 -fsanitize=fuzzer,address,undefined \
	  -Iinclude -Isrc tests/fuzz_close_sm.c src/close_sm.c -o build-fuzz/fuzz_close_sm
	mkdir -p build-fuzz/corpus
	build-fuzz/fuzz_close_sm -max_total_time=$(FUZZ_SECONDS) -max_len=256 \
	  build-fuzz/corpus tests/corpus/close_sm
	@# The lab's scenario parser (tools/lab/script.c), seeds in tools/tests/corpus/script.
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
	  -Itools -Itools/lab tools/tests/fuzz_script.c tools/lab/script.c tools/sockdiag.c \
	  -o build-fuzz/fuzz_script
	mkdir -p build-fuzz/corpus-script
	build-fuzz/fuzz_script -max_total_time=$(FUZZ_SCRIPT_SECONDS) -max_len=4096 \
	  build-fuzz/corpus-script tools/tests/corpus/script

# The torture harness (tests/torture.c, issue 15) for long local runs, every backend
# this build has: make torture TORTURE_SECONDS=600 TORTURE_SEED=S (both optional).
# Exit status 0 only when nothing was found.
TORTURE_SECONDS ?= 60
TORTURE_SEED ?=
TORTURE_BACKENDS ?= epoll uring
.PHONY: torture
torture: build
	@st=0; for b in $(TORTURE_BACKENDS); do \
	  $(BUILD)/tests/torture --backend $$b --seconds $(TORTURE_SECONDS) \
	    $(if $(TORTURE_SEED),--seed $(TORTURE_SEED)) $(TORTURE_ARGS); r=$$?; \
	  if [ $$r -ne 0 ] && [ $$r -ne 77 ]; then st=1; fi; \
	done; exit $$st
