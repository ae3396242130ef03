/*
 * fuzz_idx.c - libFuzzer harness for the IDX reader (cnn_idx_parse), raw and gzip.
 *
 * What it does with each input:
 *   1. Parses the bytes as they are. Inputs starting with 1f 8b take the gzip path, all others
 *      the raw path; on success the result's invariants are checked and every payload byte is
 *      read, so ASan sees any short allocation.
 *   2. Wraps the same bytes in a gzip member (zlib, level 1) and parses that too. Mutating
 *      compressed data rarely yields a valid stream, so this is what drives the gzip reader
 *      through its header, truncation and trailing-data logic. The two results must agree:
 *      success or failure, and on success the same dims and bytes (a differential oracle;
 *      a disagreement aborts). Skipped when the input itself is gzip.
 * What it is not: a test of cnn_idx_load's file handling (fileio.c), or of the dataset
 * cross-checks (those need two files).
 *
 * Reproduce a finding: build/fuzz/fuzz_idx path/to/input
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cnn.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Nothing to set up: the IDX reader runs on the calling thread only (no context, no
 * parallel loops), so the fuzzer's one thread is all it uses. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

/* Invariants of a successful parse; reads every payload byte. Returns a checksum. */
static unsigned check_idx(const struct cnn_idx *idx) {
    if (idx->ndim != 1 && idx->ndim != 3) abort();
    size_t prod = 1;
    for (int i = 0; i < idx->ndim; i++) {
        if (idx->dims[i] < 1) abort();
        prod *= (size_t)idx->dims[i];
    }
    for (int i = idx->ndim; i < CNN_IDX_MAX_DIMS; i++)
        if (idx->dims[i] != 0) abort();
    if (prod != idx->size || !idx->data) abort();
    unsigned sum = 0;
    for (size_t i = 0; i < idx->size; i++) sum = sum * 31u + idx->data[i];
    return sum;
}

/* gzip-wrap src into a malloc'ed buffer; NULL on failure. */
static uint8_t *gzip_wrap(const uint8_t *src, size_t n, size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    const size_t cap = deflateBound(&zs, (uLong)n) + 32;
    uint8_t *dst = malloc(cap);
    if (!dst) {
        deflateEnd(&zs);
        return NULL;
    }
    zs.next_in = (Bytef *)(uintptr_t)src;
    zs.avail_in = (uInt)n;
    zs.next_out = dst;
    zs.avail_out = (uInt)cap;
    const int r = deflate(&zs, Z_FINISH);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    if (r != Z_STREAM_END) {
        free(dst);
        return NULL;
    }
    return dst;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct cnn_idx a, b;
    const int ra = cnn_idx_parse(data, size, "fuzz.idx", &a);
    if (ra == CNN_OK) {
        check_idx(&a);
    } else if (a.data || a.ndim || a.size) {
        abort(); /* on failure *out must be zeroed */
    }
    if (size < 2 || data[0] != 0x1f || data[1] != 0x8b) {
        size_t glen = 0;
        uint8_t *gz = gzip_wrap(data, size, &glen);
        if (gz) {
            const int rb = cnn_idx_parse(gz, glen, "fuzz.idx.gz", &b);
            free(gz);
            if (rb == CNN_OK) check_idx(&b);
            if ((ra == CNN_OK) != (rb == CNN_OK)) {
                fprintf(stderr, "fuzz_idx: raw parse %s, gzip parse %s: %s\n",
                        cnn_status_str(ra), cnn_status_str(rb), cnn_errmsg());
                abort();
            }
            if (ra == CNN_OK &&
                (a.ndim != b.ndim || memcmp(a.dims, b.dims, sizeof a.dims) != 0 ||
                 a.size != b.size || memcmp(a.data, b.data, a.size) != 0)) {
                fprintf(stderr, "fuzz_idx: raw and gzip parses disagree\n");
                abort();
            }
            cnn_idx_free(&b);
        }
    }
    cnn_idx_free(&a);
    return 0;
}
