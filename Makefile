# mnist / libcnn - plain Makefile.
#   make            build/libcnn.a and build/mnist
#   make test       build and run the whole suite (fetches MNIST first if missing)
#   make asan       the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make clean
# Options: NATIVE=1 adds -march=native. BUILD=dir puts objects elsewhere.

CC ?= gcc
BUILD ?= build
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
# The OpenMP build of OpenBLAS shares our OpenMP thread pool, so BLAS threads and our own
# parallel loops never oversubscribe the cores.
BLAS_INC ?= /usr/include/$(MULTIARCH)/openblas-openmp
BLAS_LIB ?= /usr/lib/$(MULTIARCH)/openblas-openmp

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Werror
CFLAGS ?= -O2 -g
CFLAGS += -std=c11 $(WARN) -fopenmp -D_POSIX_C_SOURCE=200809L -Iinclude -I$(BLAS_INC) -MMD -MP
ifeq ($(NATIVE),1)
CFLAGS += -march=native
endif
ifeq ($(SAN),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
LDLIBS := -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas -lstb -lz -lm -fopenmp

LIB_SRC := $(sort $(wildcard src/*.c))
CLI_SRC := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test asan clean data bench
all: $(BUILD)/libcnn.a $(BUILD)/mnist

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libcnn.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/mnist: $(CLI_OBJ) $(BUILD)/libcnn.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libcnn.a $(LDLIBS)

$(TEST_BIN): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libcnn.a
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libcnn.a $(LDLIBS) -lcmocka

data:
	scripts/fetch-data --dataset mnist

# The suite needs the real MNIST: fetch it first (idempotent, verified by SHA-256).
test: all $(TEST_BIN) data
	scripts/run-tests $(BUILD)

asan:
	$(MAKE) BUILD=build/asan SAN=1 test

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d)
