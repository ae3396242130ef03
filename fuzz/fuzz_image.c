/*
 * fuzz_image.c - libFuzzer harness for image decoding and MNIST-style preprocessing:
 * cnn_image_decode (PNG through libpng and JPEG through libjpeg-turbo, src/data/decode.c; BMP,
 * GIF, TGA and PNM through stb_image, src/data/image.c) followed by
 * cnn_image_to_mnist (polarity, background, contrast, components, crop, scale, centring).
 *
 * Contracts checked: on a decode error *out is zeroed; on success w, h >= 1 and w*h is within
 * CNN_IMAGE_MAX_PIXELS, and every gray byte is read (ASan sees a short buffer); to_mnist
 * returns OK, NODIGIT or NOMEM, and on any error its 28x28 output is all zero.
 *
 * A PNG input is decoded twice: as it is, and with every chunk's CRC recomputed. A mutation
 * almost never leaves a CRC right and libpng stops at the first wrong one, so without the
 * second decode the fuzzer would hardly get past the first chunk (fuzz_model repairs its
 * file's CRC the same way).
 *
 * What is instrumented: our code, and stb_image, which is part of libcnn (src/data/stb_impl.c,
 * compiled from the system header with -fwrapv; its PNG and JPEG decoders are compiled out).
 * libpng and libjpeg-turbo are the system's shared libraries: the fuzzer gets no coverage
 * feedback from inside them and ASan does not check their own accesses, only what reaches
 * ours (the output rows, the error paths). OSS-Fuzz fuzzes both libraries with sanitizers;
 * this harness checks how libcnn drives them: limits, error handling, cleanup, leaks.
 *
 * Speed: inputs whose header declares more than FUZZ_MAX_PIXELS (256x256) are skipped (PNG's
 * IHDR and JPEG's frame header are read here; stb's other formats through stbi_info), and the
 * per-pixel loops are left out of comparison tracing (fuzz/coverage-ignore.txt). A few-KB PNG
 * or GIF can declare a 16-megapixel image, and decoding plus preprocessing that took libFuzzer
 * to ~100 executions/s. Large images are covered by tests/test_image.c (a 24-megapixel photo,
 * forged 20000x20000 headers refused before decoding).
 *
 * Reproduce a finding: build/fuzz/fuzz_image path/to/input
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "cnn.h"

/* stb_image's declarations (its implementation is src/data/stb_impl.c) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

#define FUZZ_MAX_PIXELS (256 * 256)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Nothing to set up: decoding and preprocessing runs on the calling thread only (no context, no
 * parallel loops), so the fuzzer's one thread is all it uses. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

static uint32_t be(const uint8_t *p, int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* The pixel count the header declares, or 0 when it cannot be told cheaply. PNM is left to
 * the library: stb's PNM header parser overflows on long numbers, which only
 * cnn_image_decode guards against (check_pnm). */
static uint64_t declared_pixels(const uint8_t *d, size_t size) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (size >= 24 && memcmp(d, png_sig, 8) == 0)
        return memcmp(d + 12, "IHDR", 4) == 0 ? (uint64_t)be(d + 16, 4) * be(d + 20, 4) : 0;
    if (size >= 2 && d[0] == 0xFF && d[1] == 0xD8) {
        size_t pos = 2; /* walk the marker segments up to a frame header (SOFn) */
        while (pos + 9 <= size && d[pos] == 0xFF) {
            const uint8_t m = d[pos + 1];
            if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC)
                return (uint64_t)be(d + pos + 5, 2) * be(d + pos + 7, 2);
            pos += m == 0xFF ? 1 : 2 + be(d + pos + 2, 2);
        }
        return 0;
    }
    if (size >= 1 && d[0] == 'P') return 0;
    int w = 0, h = 0, c = 0;
    if (size <= 0x7fffffff && stbi_info_from_memory(d, (int)size, &w, &h, &c))
        return (uint64_t)w * (uint64_t)h;
    return 0;
}

static void decode_and_check(const uint8_t *data, size_t size) {
    struct cnn_image img;
    memset(&img, 0x5a, sizeof img);
    const int rc = cnn_image_decode(data, size, "fuzz.img", &img);
    if (rc != CNN_OK) {
        if (img.gray || img.w || img.h) abort();
        return;
    }
    if (img.w < 1 || img.h < 1 || !img.gray ||
        (uint64_t)img.w * (uint64_t)img.h > (uint64_t)CNN_IMAGE_MAX_PIXELS)
        abort();
    volatile unsigned sum = 0;
    const size_t n = (size_t)img.w * (size_t)img.h;
    for (size_t i = 0; i < n; i++) sum = sum + img.gray[i];
    (void)sum;
    uint8_t out[28 * 28];
    memset(out, 0xa5, sizeof out);
    const int r2 = cnn_image_to_mnist(&img, out);
    if (r2 != CNN_OK && r2 != CNN_ERR_NODIGIT && r2 != CNN_ERR_NOMEM) abort();
    if (r2 != CNN_OK)
        for (size_t i = 0; i < sizeof out; i++)
            if (out[i] != 0) abort();
    cnn_image_free(&img);
    if (img.gray) abort();
}

/* A copy of a PNG with every whole chunk's CRC recomputed, or NULL when nothing changed. */
static uint8_t *png_fix_crcs(const uint8_t *data, size_t size) {
    uint8_t *p = malloc(size);
    if (!p) return NULL;
    memcpy(p, data, size);
    int changed = 0;
    for (size_t pos = 8; pos + 12 <= size;) {
        const size_t n = be(p + pos, 4);
        if (n > size - pos - 12) break;
        const uint32_t crc = (uint32_t)crc32(0, p + pos + 4, (uInt)(n + 4));
        if (be(p + pos + 8 + n, 4) != crc) {
            for (int b = 0; b < 4; b++) p[pos + 8 + n + (size_t)b] = (uint8_t)(crc >> (24 - 8 * b));
            changed = 1;
        }
        pos += 12 + n;
    }
    if (!changed) {
        free(p);
        return NULL;
    }
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (declared_pixels(data, size) > FUZZ_MAX_PIXELS) return 0;
    decode_and_check(data, size);
    if (size >= 8 && data[0] == 0x89 && memcmp(data + 1, "PNG", 3) == 0) {
        uint8_t *fixed = png_fix_crcs(data, size);
        if (fixed) {
            decode_and_check(fixed, size);
            free(fixed);
        }
    }
    return 0;
}
