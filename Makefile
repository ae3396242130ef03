# mnist / libcnn - plain Makefile.
#   make            build/libcnn.a and build/mnist
#   make test       build and run the whole suite (fetches MNIST first if missing)
#   make asan       the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make clean
# Options: NATIVE=1 adds -march=native. BUILD=dir puts objects elsewhere.

CC ?= gcc
BUILD ?= build
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
# OpenBLAS, always called with one thread: we split work across cores ourselves (OpenMP),
# several threads calling sgemm at once. That needs the pthread build, which guards its
# buffers with locks; Debian's OpenMP build does not and gives wrong results when two threads
# call it together (src/gemm.c).
BLAS_INC ?= /usr/include/$(MULTIARCH)/openblas-pthread
BLAS_LIB ?= /usr/lib/$(MULTIARCH)/openblas-pthread

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Werror
CFLAGS ?= -O3 -g
# -fno-trapping-math: we never read floating-point exception flags, and without it GCC will not
# vectorise a select such as relu's `x > 0 ? 1 : slope` (the comparison might trap).
# -fno-tree-loop-distribute-patterns: keep short copy/zero loops (im2col's rows of 2 to 28
# floats) inline instead of turning each into a memcpy/memset call.
CFLAGS += -std=c11 $(WARN) -fno-trapping-math -fno-tree-loop-distribute-patterns -fopenmp -D_POSIX_C_SOURCE=200809L -Iinclude -I$(BLAS_INC) -MMD -MP
ifeq ($(NATIVE),1)
CFLAGS += -march=native
endif
ifeq ($(SAN),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
LDLIBS := -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas -lz -lm -fopenmp

LIB_SRC := $(sort $(wildcard src/*.c))
CLI_SRC := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
FUZZ_NAMES := idx model image spec
FUZZ_REPLAY := $(FUZZ_NAMES:%=$(BUILD)/fuzz/replay_%)

.PHONY: all test asan clean data bench tools
TOOL_BIN := $(BUILD)/tools/render_digits
all: $(BUILD)/libcnn.a $(BUILD)/mnist

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(CFLAGS) -c $< -o $@

# stb, compiled into libcnn (src/stb_impl.c says why): signed overflow wraps, so it is defined
# behaviour (UBSan then does not report it, in gcc and clang); its warnings are not ours to fix.
# stb_image.h itself is compiled from a copy with upstream's 2.28 fixes for running out of JPEG
# bits (src/stb_image.sed says which). For Debian's v2.27 all five must apply or the build
# stops; a later stb has them already and is copied as it is.
STB_HEADER ?= /usr/include/stb/stb_image.h
STB_FIXES := 5
STB_FLAGS = -fwrapv -w -I$(BUILD)/stbfix
$(BUILD)/stbfix/stb/stb_image.h: $(STB_HEADER) src/stb_image.sed
	@mkdir -p $(dir $@)
	@if grep -q 'stb_image - v2\.27 ' $(STB_HEADER); then \
	    sed -f src/stb_image.sed $(STB_HEADER) > $@.tmp; \
	    n=$$(grep -c 'cnn: stb 2.28 fix' $@.tmp); [ "$$n" -eq $(STB_FIXES) ] || { \
	        echo "$(STB_HEADER): $$n of the $(STB_FIXES) fixes in src/stb_image.sed applied" >&2; \
	        rm -f $@.tmp; exit 1; }; \
	else cp $(STB_HEADER) $@.tmp; fi
	@mv $@.tmp $@
$(BUILD)/src/stb_impl.o: $(BUILD)/stbfix/stb/stb_image.h
$(BUILD)/src/stb_impl.o: CFLAGS += $(STB_FLAGS)

$(BUILD)/libcnn.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/mnist: $(CLI_OBJ) $(BUILD)/libcnn.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libcnn.a $(LDLIBS)

$(TEST_BIN): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libcnn.a
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libcnn.a $(LDLIBS) -lcmocka

# Helper programs for benches and tests (tools/*.c other than one-off generators).
tools: $(TOOL_BIN)
$(TOOL_BIN): $(BUILD)/tools/%: tools/%.c tests/render.h $(BUILD)/libcnn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-pedantic -Wno-strict-prototypes $(LDFLAGS) -o $@ $< $(BUILD)/libcnn.a $(LDLIBS)

data:
	scripts/fetch-data --dataset mnist

# The suite needs the real MNIST: fetch it first (idempotent, verified by SHA-256).
test: all $(TEST_BIN) $(FUZZ_REPLAY) $(TOOL_BIN) data
	scripts/run-tests $(BUILD)

asan:
	$(MAKE) BUILD=build/asan SAN=1 test

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d)

# ---- fuzzing (issue 7) ---------------------------------------------------------------------
#   make fuzz       build/fuzz/fuzz_{idx,model,image,spec}: libFuzzer + ASan + UBSan (clang)
#   scripts/fuzz    builds them and runs each for a given time (see fuzz/README.md)
# The library sources are compiled again with clang and the sanitizers (build/libcnn.a is
# gcc-built without them). No OpenMP: the pragmas are then ignored and the harnesses use one
# thread, which is what a fuzzer wants. No -Werror:
# clang warns about things gcc does not, and the fuzzers must build whatever src/ looks like.
# stb_image is part of the library (src/stb_impl.c), so in the fuzz build its
# decoders are instrumented too.
FUZZ_CC ?= clang
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_BIN := $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_IGNORE := fuzz/coverage-ignore.txt
FUZZ_CFLAGS := -g -O1 $(FUZZ_SAN) -fsanitize-coverage-ignorelist=$(FUZZ_IGNORE) -fno-omit-frame-pointer -std=c11 -Wall -Wextra \
    -Wno-unknown-pragmas -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -I$(BLAS_INC) -MMD -MP
FUZZ_LDLIBS := -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas -lz -lm
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o)

.PHONY: fuzz
fuzz: $(FUZZ_BIN)

$(FUZZ_DIR)/obj/%.o: %.c $(FUZZ_IGNORE)
	@mkdir -p $(dir $@)
	@echo "  FUZZCC $<"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

# stb (src/stb_impl.c): compiled as in the library.
$(FUZZ_DIR)/obj/src/stb_impl.o: $(BUILD)/stbfix/stb/stb_image.h
$(FUZZ_DIR)/obj/src/stb_impl.o: FUZZ_CFLAGS += $(STB_FLAGS)

$(FUZZ_BIN): $(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_SAN) -o $@ $^ $(FUZZ_LDLIBS)

# The seed corpora under fuzz/corpus are committed; this regenerates them (gcc, no sanitizers).
.PHONY: fuzz-seeds
fuzz-seeds: $(FUZZ_DIR)/make_seeds
	$(FUZZ_DIR)/make_seeds fuzz/corpus

$(FUZZ_DIR)/make_seeds: fuzz/make_seeds.c $(BUILD)/libcnn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libcnn.a $(LDLIBS)

# Replay drivers for the normal suite: each harness + fuzz/replay.c, built with $(CC) and
# linked with $(BUILD)/libcnn.a (SAN=1 gives ASan/UBSan). Usage: replay_NAME FILE...
.PHONY: fuzz-replay
fuzz-replay: $(FUZZ_REPLAY)

$(FUZZ_REPLAY): $(FUZZ_DIR)/replay_%: fuzz/fuzz_%.c fuzz/replay.c $(BUILD)/libcnn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ fuzz/fuzz_$*.c fuzz/replay.c $(BUILD)/libcnn.a $(LDLIBS)

-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_NAMES:%=$(FUZZ_DIR)/obj/fuzz/fuzz_%.d)
