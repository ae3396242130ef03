# mnist / libcnn - plain Makefile.
#   make            build/libcnn.a, build/libcnn.so.X.Y.Z and build/mnist
#   make test       build and run the whole suite (fetches MNIST first if missing)
#   make asan       the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make tsan       the concurrent-inference and server tests under ThreadSanitizer (no OpenMP)
#   make install    mnist, libcnn.a, libcnn.so (soname libcnn.so.MAJOR), cnn.h, libcnn.pc and
#                   mnist.1 under $(DESTDIR)$(PREFIX); make uninstall removes them
#   make clean
# Options: NATIVE=1 adds -march=native. BUILD=dir puts objects elsewhere. OMP=0 builds without
# OpenMP (one thread; the pragmas are ignored). MPI=1 adds `mnist train --distributed` (Open
# MPI's mpicc must be installed). PREFIX (default /usr/local), DESTDIR, and the
# GNU directory variables bindir, libdir, includedir, mandir, pkgconfigdir.

CC ?= gcc
BUILD ?= build
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
# OpenBLAS, always called with one thread: we split work across cores ourselves (OpenMP),
# several threads calling sgemm at once. That needs the pthread build, which guards its
# buffers with locks; Debian's OpenMP build does not and gives wrong results when two threads
# call it together (src/nn/gemm.c).
BLAS_INC ?= /usr/include/$(MULTIARCH)/openblas-pthread
BLAS_LIB ?= /usr/lib/$(MULTIARCH)/openblas-pthread

WARN := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Werror
OMP ?= 1
ifeq ($(OMP),1)
OMPFLAG := -fopenmp
else
OMPFLAG :=
WARN += -Wno-unknown-pragmas
endif
CFLAGS ?= -O3 -g
# -fno-trapping-math: we never read floating-point exception flags, and without it GCC will not
# vectorise a select such as relu's `x > 0 ? 1 : slope` (the comparison might trap).
# -fno-tree-loop-distribute-patterns: keep short copy/zero loops (im2col's rows of 2 to 28
# floats) inline instead of turning each into a memcpy/memset call.
# -fPIC -fvisibility=hidden: the same objects make libcnn.a and libcnn.so, and the shared
# library exports only what cnn.h marks CNN_API (not the internal cnn_* helpers, not stb).
CFLAGS += -std=c11 $(WARN) -fno-trapping-math -fno-tree-loop-distribute-patterns $(OMPFLAG) -fPIC -fvisibility=hidden -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -I$(BLAS_INC) -MMD -MP
ifeq ($(NATIVE),1)
CFLAGS += -march=native
endif
ifeq ($(SAN),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(SAN),thread)
CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
endif
# libpng and libjpeg-turbo decode PNG and JPEG, libexif reads their orientation (src/data/decode.c);
# stb the rarer formats. libxsmm makes the small matrix products (src/nn/gemm.c); it needs -ldl
# and -lrt, and OpenBLAS after it.
PRIVATE_LIBS := -lxsmm -ldl -lrt -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas -lpng -ljpeg -lexif -lz -lm -lpthread
LDLIBS := $(PRIVATE_LIBS) $(OMPFLAG)
# `mnist serve` only: libmicrohttpd for HTTP, jansson for JSON.
SERVE_LIBS := -lmicrohttpd -ljansson

# MPI=1: `mnist train --distributed` over Open MPI (cli/dist_mpi.c, with mpicc's flags);
# without it cli/dist_none.c says how to get it. The library never needs MPI. BUILD/mnist-mpi
# is the same program with MPI whatever MPI says (the suite's test_mpi.sh runs it). mpicc is
# asked for its flags only when something is built with them.
MPI ?= 0
MPICC ?= mpicc
MPI_CFLAGS = $(patsubst -I%,-isystem %,$(shell $(MPICC) -showme:compile))
MPI_LIBS = $(shell $(MPICC) -showme:link)
DIST_SRC := $(if $(filter 1,$(MPI)),cli/dist_mpi.c,cli/dist_none.c)
# Which of the two BUILD/mnist is linked there: switching MPI relinks it.
MPI_STAMP = $(BUILD)/mpi-$(MPI).stamp

VERSION := $(shell sed -n 's/^\#define CNN_VERSION_STRING "\(.*\)"/\1/p' include/cnn.h)
MAJOR := $(firstword $(subst ., ,$(VERSION)))
SONAME := libcnn.so.$(MAJOR)
LIB_SRC := $(sort $(wildcard src/*/*.c))
CLI_SRC := $(filter-out cli/dist_%.c,$(sort $(wildcard cli/*.c))) $(DIST_SRC)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
FUZZ_NAMES := idx model image spec request
FUZZ_REPLAY := $(FUZZ_NAMES:%=$(BUILD)/fuzz/replay_%)

.PHONY: all test asan tsan clean data bench tools install uninstall
TOOL_BIN := $(BUILD)/tools/render_digits $(BUILD)/tools/render_glyphs
all: $(BUILD)/libcnn.a $(BUILD)/libcnn.so.$(VERSION) $(BUILD)/mnist

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	@$(CC) $(CFLAGS) -c $< -o $@

# stb, compiled into libcnn (src/data/stb_impl.c says why): signed overflow wraps, so it is defined
# behaviour (UBSan then does not report it, in gcc and clang); its warnings are not ours to fix.
STB_FLAGS = -fwrapv -w
$(BUILD)/src/data/stb_impl.o: CFLAGS += $(STB_FLAGS)

$(BUILD)/libcnn.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# libxsmm comes as a static library only (Debian's libxsmm-dev): it is linked in, unexported.
$(BUILD)/libcnn.so.$(VERSION): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined -Wl,--exclude-libs,libxsmm.a \
	    $(LDFLAGS) -o $@ $^ $(LDLIBS)
	@ln -sf libcnn.so.$(VERSION) $(BUILD)/$(SONAME)
	@ln -sf $(SONAME) $(BUILD)/libcnn.so

$(BUILD)/mnist: $(CLI_OBJ) $(BUILD)/libcnn.a $(MPI_STAMP)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libcnn.a $(LDLIBS) $(SERVE_LIBS) \
	    $(if $(filter 1,$(MPI)),$(MPI_LIBS))
$(MPI_STAMP):
	@mkdir -p $(dir $@)
	@rm -f $(BUILD)/mpi-*.stamp
	@touch $@

MPI_CLI_OBJ := $(filter-out $(BUILD)/cli/dist_%.o,$(CLI_OBJ)) $(BUILD)/cli/dist_mpi.o
$(BUILD)/mnist-mpi: $(MPI_CLI_OBJ) $(BUILD)/libcnn.a
	$(CC) $(LDFLAGS) -o $@ $(MPI_CLI_OBJ) $(BUILD)/libcnn.a $(LDLIBS) $(SERVE_LIBS) $(MPI_LIBS)
$(BUILD)/cli/dist_mpi.o: CFLAGS += $(MPI_CFLAGS)

# The page of `mnist serve` is web/index.html, assembled into the binary (.incbin).
$(BUILD)/cli/serve_page.o: web/index.html

$(TEST_BIN): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libcnn.a
	$(CC) $(LDFLAGS) -o $@ $< $(BUILD)/libcnn.a $(LDLIBS) -lcmocka

# Helper programs for benches and tests (tools/*.c other than one-off generators).
tools: $(TOOL_BIN)
$(TOOL_BIN): $(BUILD)/tools/%: tools/%.c tests/render.h $(BUILD)/libcnn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-pedantic -Wno-strict-prototypes $(LDFLAGS) -o $@ $< $(BUILD)/libcnn.a $(LDLIBS)

# Fashion-MNIST (Debian's dataset-fashion-mnist) only adds tests, which skip without it.
data:
	scripts/fetch-data --dataset mnist
	-scripts/fetch-data --dataset fashion

# The suite needs the real MNIST: fetch it first (idempotent, verified by SHA-256).
test: all $(TEST_BIN) $(FUZZ_REPLAY) $(TOOL_BIN) $(BUILD)/mnist-mpi data
	scripts/run-tests $(BUILD)

# LeakSanitizer skips one race of the sanitizer runtime itself (tests/lsan.supp says which).
asan:
	LSAN_OPTIONS="$${LSAN_OPTIONS:+$$LSAN_OPTIONS:}suppressions=$(CURDIR)/tests/lsan.supp" \
	    $(MAKE) BUILD=build/asan SAN=1 test

# ThreadSanitizer: libgomp is not built for it and reports false races, so this build has no
# OpenMP. It runs the test whose threads share one model (pthreads, a context each), and the
# server's tests (its workers share the models and a queue; a race makes it exit 66).
tsan:
	$(MAKE) BUILD=build/tsan SAN=thread OMP=0 build/tsan/tests/test_concurrent build/tsan/mnist \
	    build/tsan/tools/render_glyphs
	TSAN_OPTIONS=halt_on_error=1:exitcode=66 build/tsan/tests/test_concurrent
	TSAN_OPTIONS=halt_on_error=1:exitcode=66 BUILD=build/tsan bash tests/test_serve.sh

# ---- install (GNU conventions: PREFIX, DESTDIR and the directory variables) ----------------
prefix ?= $(PREFIX)
PREFIX ?= /usr/local
exec_prefix ?= $(PREFIX)
bindir ?= $(exec_prefix)/bin
libdir ?= $(exec_prefix)/lib
includedir ?= $(PREFIX)/include
mandir ?= $(PREFIX)/share/man
pkgconfigdir ?= $(libdir)/pkgconfig
INSTALL ?= install

$(BUILD)/libcnn.pc: Makefile include/cnn.h
	@mkdir -p $(dir $@)
	@printf '%s\n' 'prefix=$(PREFIX)' 'exec_prefix=$${prefix}' 'libdir=$(libdir)' \
	    'includedir=$(includedir)' '' 'Name: libcnn' \
	    'Description: small convolutional networks for MNIST-sized images' \
	    'Version: $(VERSION)' 'Libs: -L$${libdir} -lcnn' \
	    'Libs.private: $(PRIVATE_LIBS) $(if $(OMPFLAG),-lgomp)' 'Cflags: -I$${includedir}' > $@

install: all $(BUILD)/libcnn.pc
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(libdir) $(DESTDIR)$(includedir) \
	    $(DESTDIR)$(mandir)/man1 $(DESTDIR)$(pkgconfigdir)
	$(INSTALL) -m 755 $(BUILD)/mnist $(DESTDIR)$(bindir)/mnist
	$(INSTALL) -m 644 $(BUILD)/libcnn.a $(DESTDIR)$(libdir)/libcnn.a
	$(INSTALL) -m 755 $(BUILD)/libcnn.so.$(VERSION) $(DESTDIR)$(libdir)/libcnn.so.$(VERSION)
	ln -sf libcnn.so.$(VERSION) $(DESTDIR)$(libdir)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(libdir)/libcnn.so
	$(INSTALL) -m 644 include/cnn.h $(DESTDIR)$(includedir)/cnn.h
	$(INSTALL) -m 644 $(BUILD)/libcnn.pc $(DESTDIR)$(pkgconfigdir)/libcnn.pc
	$(INSTALL) -m 644 man/mnist.1 $(DESTDIR)$(mandir)/man1/mnist.1

uninstall:
	rm -f $(DESTDIR)$(bindir)/mnist $(DESTDIR)$(libdir)/libcnn.a \
	    $(DESTDIR)$(libdir)/libcnn.so.$(VERSION) $(DESTDIR)$(libdir)/$(SONAME) \
	    $(DESTDIR)$(libdir)/libcnn.so $(DESTDIR)$(includedir)/cnn.h \
	    $(DESTDIR)$(pkgconfigdir)/libcnn.pc $(DESTDIR)$(mandir)/man1/mnist.1

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(MPI_CLI_OBJ:.o=.d) $(TEST_BIN:=.d)

# ---- fuzzing -------------------------------------------------------------------------------
#   make fuzz       build/fuzz/fuzz_{idx,model,image,spec}: libFuzzer + ASan + UBSan (clang)
#   scripts/fuzz    builds them and runs each for a given time (see fuzz/README.md)
# The library sources are compiled again with clang and the sanitizers (build/libcnn.a is
# gcc-built without them). No OpenMP: the pragmas are then ignored and the harnesses use one
# thread, which is what a fuzzer wants. No -Werror:
# clang warns about things gcc does not, and the fuzzers must build whatever src/ looks like.
# stb_image is part of the library (src/data/stb_impl.c), so in the fuzz build its
# decoders are instrumented too.
FUZZ_CC ?= clang
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_BIN := $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_IGNORE := fuzz/coverage-ignore.txt
FUZZ_CFLAGS := -g -O1 $(FUZZ_SAN) -fsanitize-coverage-ignorelist=$(FUZZ_IGNORE) -fno-omit-frame-pointer -std=c11 -Wall -Wextra \
    -Wno-unknown-pragmas -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc -I$(BLAS_INC) -MMD -MP
FUZZ_LDLIBS := -lxsmm -ldl -lrt -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas -lpng -ljpeg -lexif -lz -lm
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o)

.PHONY: fuzz
fuzz: $(FUZZ_BIN)

$(FUZZ_DIR)/obj/%.o: %.c $(FUZZ_IGNORE)
	@mkdir -p $(dir $@)
	@echo "  FUZZCC $<"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

# stb (src/data/stb_impl.c): compiled as in the library.
$(FUZZ_DIR)/obj/src/data/stb_impl.o: FUZZ_CFLAGS += $(STB_FLAGS)

$(FUZZ_BIN): $(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_SAN) -o $@ $^ $(FUZZ_LDLIBS)

# The request harness tests the server's body parsing and error replies (cli/serve_api.c).
REQUEST_SRC := cli/serve_api.c cli/common.c
$(FUZZ_DIR)/fuzz_request: $(REQUEST_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
$(FUZZ_DIR)/fuzz_request: FUZZ_LDLIBS += -ljansson

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
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ fuzz/fuzz_$*.c fuzz/replay.c $(REPLAY_EXTRA) $(BUILD)/libcnn.a $(LDLIBS) $(REPLAY_LIBS)
$(FUZZ_DIR)/replay_request: $(REQUEST_SRC)
$(FUZZ_DIR)/replay_request: REPLAY_EXTRA = $(REQUEST_SRC)
$(FUZZ_DIR)/replay_request: REPLAY_LIBS = -ljansson

-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_NAMES:%=$(FUZZ_DIR)/obj/fuzz/fuzz_%.d)
