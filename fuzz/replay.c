/*
 * replay.c - runs a fuzz harness's LLVMFuzzerTestOneInput on files, without libFuzzer.
 *
 * Linked with one fuzz/fuzz_<name>.c and the gcc-built library (`make fuzz-replay`, or
 * `make SAN=1 BUILD=build/asan fuzz-replay` for ASan/UBSan), it lets the normal test suite
 * replay fuzz/regressions/<name>-* with no clang: each file is read whole and passed once.
 * A harness signals a bug by aborting (or the sanitizer does), so exit status 0 means every
 * input was handled. To make an oversized allocation fail too, run it under
 * ASAN_OPTIONS=max_allocation_size_mb=N (an ASan build) or `ulimit -v`.
 * What it is not: a fuzzer. It does not mutate anything.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            return 2;
        }
        size_t cap = 4096, len = 0, n;
        uint8_t *buf = malloc(cap);
        while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
            len += n;
            if (len == cap) {
                uint8_t *p = realloc(buf, cap *= 2);
                if (!p) free(buf);
                buf = p;
            }
        }
        const int err = ferror(f);
        fclose(f);
        if (!buf || err) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            free(buf);
            return 2;
        }
        fprintf(stderr, "replay: %s (%zu bytes)\n", argv[i], len);
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
    }
    return 0;
}
