/*
 * fuzz_image.c - libFuzzer harness for image decoding and MNIST-style preprocessing:
 * cnn_image_decode (stb_image: PNG, JPEG, BMP, GIF, TGA, PNM, PSD, HDR, PIC) followed by
 * cnn_image_to_mnist (polarity, background, contrast, components, crop, scale, centring).
 *
 * Contracts checked: on a decode error *out is zeroed; on success w, h >= 1 and w*h is within
 * CNN_IMAGE_MAX_PIXELS, and every gray byte is read (ASan sees a short buffer); to_mnist
 * returns OK, NODIGIT or NOMEM, and on any error its 28x28 output is all zero.
 *
 * stb_image is part of libcnn (src/data/stb_impl.c, compiled from the system header with
 * -fwrapv), so in the fuzz build its decoders are instrumented for coverage and checked by
 * ASan/UBSan.
 *
 * Speed: inputs (other than JPEG) whose header declares more than FUZZ_MAX_PIXELS (256x256)
 * are skipped, and the per-pixel loops are left out of comparison tracing
 * (fuzz/coverage-ignore.txt). A
 * few-KB PNG or GIF can declare a 16-megapixel image, and decoding plus preprocessing that
 * took libFuzzer to ~100 executions/s. Large images are covered by tests/test_image.c (a
 * 24-megapixel photo, forged 20000x20000 headers refused before decoding).
 *
 * Reproduce a finding: build/fuzz/fuzz_image path/to/input
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Not for JPEG or PNM: stb's parsers for those have the overflows that cnn_image_decode
     * guards against (check_jpeg, check_pnm), so only the library may call them. */
    const int jpeg = size >= 1 && data[0] == 0xFF; /* stb allows fill bytes before SOI */
    const int pnm = size >= 1 && data[0] == 'P';     /* its PNM header parser overflows */
    int iw = 0, ih = 0, ic = 0;
    if (!jpeg && !pnm && size <= 0x7fffffff && stbi_info_from_memory(data, (int)size, &iw, &ih, &ic) &&
        (int64_t)iw * ih > FUZZ_MAX_PIXELS)
        return 0;
    struct cnn_image img;
    memset(&img, 0x5a, sizeof img);
    const int rc = cnn_image_decode(data, size, "fuzz.img", &img);
    if (rc != CNN_OK) {
        if (img.gray || img.w || img.h) abort();
        return 0;
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
    return 0;
}
