/*
 * fuzz_model.c - libFuzzer harness for the model-file loader (cnn_model_parse).
 *
 * What it does with each input:
 *   1. Parses the bytes as they are (magic, version, CRC-32, section walk, decode).
 *   2. If the stored CRC-32 does not match, parses a copy whose last 4 bytes are replaced by
 *      the correct CRC. Random mutations almost never keep a CRC valid, so without this the
 *      fuzzer would never get past cnn_model_check into the section and spec decoding.
 *   Whenever a net loads: its shape and parameter accessors are checked for consistency, and
 *   cnn_net_predict_u8 runs on one all-zero image of the stored input shape (catches shape
 *   bugs between the stored spec, PARM/STAT and the activation arena). The probabilities are
 *   read but not judged: any float, NaN included, is a legal stored parameter, so only memory
 *   safety, undefined behaviour and shapes are checked.
 *   Nets whose input exceeds MAX_PIXELS, or whose forward pass exceeds MAX_MFLOPS or MAX_ACT
 *   activation floats per image, are loaded and freed but not run, to keep executions fast.
 * What it is not: a test of checkpoint resume (train.c's OPTM/TRNS sections).
 *
 * Reproduce a finding: build/fuzz/fuzz_model path/to/input
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cnn.h"

#define MAX_PIXELS ((size_t)1 << 20) /* c*h*w of the zero image fed to predict */
#define MAX_MFLOPS 50.0
#define MAX_ACT ((size_t)4 << 20) /* activation floats per image, summed over layers */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    cnn_set_threads(1);
    return 0;
}

static void exercise(struct cnn_net *net, const struct cnn_meta *meta) {
    int c, h, w;
    cnn_net_input_shape(net, &c, &h, &w);
    if (c < 1 || h < 1 || w < 1) abort();
    const int k = cnn_net_n_classes(net);
    if (k < 2) abort();
    const int L = cnn_net_n_layers(net);
    if (L < 1) abort();
    double mflops = 0.0;
    size_t np = 0, act = 0;
    struct cnn_layer_info li;
    for (int i = 0; i < L; i++) {
        cnn_net_layer_info(net, i, &li);
        mflops += li.mflops;
        np += li.n_params;
        act += (size_t)li.c * (size_t)li.h * (size_t)li.w;
    }
    if (np != cnn_net_n_params(net)) abort();
    if (li.c != k || li.h != 1 || li.w != 1) abort();
    if (!cnn_net_spec(net)) abort();
    (void)strlen(cnn_net_spec(net));
    if (meta) (void)strlen(meta->dataset), (void)strlen(meta->date);
    const size_t pixels = (size_t)c * (size_t)h * (size_t)w;
    if (pixels > MAX_PIXELS || mflops > MAX_MFLOPS || act > MAX_ACT) return;
    uint8_t *img = calloc(pixels, 1);
    float *probs = malloc((size_t)k * sizeof *probs);
    if (img && probs && cnn_net_predict_u8(net, img, 1, probs) == CNN_OK) {
        volatile float sum = 0.0f;
        for (int j = 0; j < k; j++) sum += probs[j];
        (void)sum;
    }
    free(img);
    free(probs);
}

static void parse_one(const uint8_t *buf, size_t len) {
    struct cnn_net *net = (struct cnn_net *)1;
    struct cnn_meta meta;
    const int rc = cnn_model_parse(buf, len, "fuzz.model", &net, &meta);
    if (rc != CNN_OK) {
        if (net) abort(); /* on failure *out must be NULL */
        return;
    }
    if (!net) abort();
    exercise(net, &meta);
    cnn_net_free(net);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    parse_one(data, size);
    if (size < 8) return 0;
    const uint32_t crc = (uint32_t)crc32(0L, data, (uInt)(size - 4));
    const uint8_t le[4] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16),
                           (uint8_t)(crc >> 24)};
    if (memcmp(data + size - 4, le, 4) == 0) return 0; /* already parsed with a good CRC */
    uint8_t *copy = malloc(size);
    if (!copy) return 0;
    memcpy(copy, data, size - 4);
    memcpy(copy + size - 4, le, 4);
    parse_one(copy, size);
    free(copy);
    return 0;
}
