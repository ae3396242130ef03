/*
 * fuzz_model.c - libFuzzer harness for the model-file loader (cnn_model_parse).
 *
 * What it does with each input:
 *   1. Parses the bytes as they are (magic, version, CRC-32, section walk, decode).
 *   2. If the stored CRC-32 does not match, parses a copy whose last 4 bytes are replaced by
 *      the correct CRC. Random mutations almost never keep a CRC valid, so without this the
 *      fuzzer would never get past cnn_model_check into the section and spec decoding.
 *   Whenever a model loads: its shape, layer and parameter accessors are checked for
 *   consistency; every metadata entry is walked (each key and value must be a NUL-terminated
 *   string within the documented limits, and looking its key up must give its value), and so is
 *   every class name; then cnn_predict_u8 runs on one all-zero image of the stored input shape,
 *   through an inference context for one image on one thread (catches shape bugs between the
 *   stored spec, PARM/STAT and the context's arena), and cnn_predict_u8_typicality, which must
 *   give a value in [0, 1] when the model has a TYPI section and refuse when it has none. The
 *   probabilities are read but not judged: any float, NaN included, is a legal stored parameter, so only memory safety, undefined
 *   behaviour and shapes are checked.
 *   Models whose input exceeds MAX_PIXELS, or whose forward pass exceeds MAX_MFLOPS or MAX_ACT
 *   activation floats per image, are loaded and checked but not run, to keep executions fast.
 * What it is not: a test of checkpoint resume (checkpoint.c's OPTM/TRNS sections).
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

#define META_KEY_MAX 47    /* cnn.h: keys are 1-47 characters of [a-z0-9._-] */
#define META_VALUE_MAX 255 /* cnn.h: values are at most 255 characters, no control characters */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Contexts are made with threads = 1: the fuzzer runs one input at a time on one thread. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

/* s must be a NUL-terminated string of at most max bytes (strnlen reads no further, so ASan
 * reports a string that runs off its buffer). Returns its length. */
static size_t check_string(const char *s, size_t max) {
    if (!s) abort();
    const size_t n = strnlen(s, max + 1);
    if (n > max) abort();
    return n;
}

/* Every metadata entry: key and value are strings as cnn.h describes them, the key is found
 * again by cnn_model_meta, and index count is out of range. Then every class name. */
static void walk_meta(const struct cnn_model *m, int k) {
    const int count = cnn_model_meta_count(m);
    if (count < 0 || count > CNN_META_MAX) abort();
    const char *key = NULL, *value = NULL;
    for (int i = 0; i < count; i++) {
        key = value = NULL;
        if (cnn_model_meta_at(m, i, &key, &value) != CNN_OK) abort();
        const size_t kn = check_string(key, META_KEY_MAX);
        const size_t vn = check_string(value, META_VALUE_MAX);
        if (kn < 1) abort();
        for (size_t j = 0; j < kn; j++)
            if (!((key[j] >= 'a' && key[j] <= 'z') || (key[j] >= '0' && key[j] <= '9') ||
                  key[j] == '.' || key[j] == '_' || key[j] == '-'))
                abort();
        for (size_t j = 0; j < vn; j++)
            if ((unsigned char)value[j] < 0x20 || (unsigned char)value[j] == 0x7f) abort();
        const char *again = cnn_model_meta(m, key);
        if (!again || strcmp(again, value) != 0) abort();
    }
    if (cnn_model_meta_at(m, count, &key, &value) != CNN_ERR_ARG) abort();
    for (int i = 0; i < k; i++) {
        const char *name = cnn_model_class_name(m, i);
        if (check_string(name, META_VALUE_MAX) < 1) abort();
    }
    if (cnn_model_class_name(m, k) || cnn_model_class_name(m, -1)) abort();
}

static void exercise(const struct cnn_model *m) {
    int c, h, w;
    cnn_model_input_shape(m, &c, &h, &w);
    if (c < 1 || h < 1 || w < 1) abort();
    const int k = cnn_model_n_classes(m);
    if (k < 2) abort();
    const int L = cnn_model_n_layers(m);
    if (L < 1) abort();
    double mflops = 0.0;
    size_t np = 0, act = 0;
    struct cnn_layer_info li;
    for (int i = 0; i < L; i++) {
        if (cnn_model_layer_info(m, i, &li) != CNN_OK) abort();
        mflops += li.mflops;
        np += li.n_params;
        act += (size_t)li.c * (size_t)li.h * (size_t)li.w;
    }
    if (np != cnn_model_n_params(m)) abort();
    if (li.c != k || li.h != 1 || li.w != 1) abort();
    struct cnn_layer_info past;
    if (cnn_model_layer_info(m, L, &past) != CNN_ERR_ARG) abort();
    if (!cnn_model_spec(m)) abort();
    (void)strlen(cnn_model_spec(m));
    walk_meta(m, k);
    const size_t pixels = (size_t)c * (size_t)h * (size_t)w;
    if (pixels > MAX_PIXELS || mflops > MAX_MFLOPS || act > MAX_ACT) return;
    uint8_t *img = calloc(pixels, 1);
    float *probs = malloc((size_t)k * sizeof *probs);
    struct cnn_ctx *ctx = NULL;
    /* A context may be refused (memory); one made from m must then run it. */
    if (img && probs && cnn_ctx_new(m, 1, 1, &ctx) == CNN_OK) {
        if (cnn_predict_u8(m, ctx, img, 1, probs) != CNN_OK) abort();
        volatile float sum = 0.0f;
        for (int j = 0; j < k; j++) sum += probs[j];
        (void)sum;
        float typicality = -1.0f;
        const int typ = cnn_model_has_typicality(m);
        if (cnn_predict_u8_typicality(m, ctx, img, 1, probs, &typicality) !=
            (typ ? CNN_OK : CNN_ERR_ARG))
            abort();
        if (typ && !(typicality >= 0.0f && typicality <= 1.0f)) abort();
    }
    cnn_ctx_free(ctx);
    free(img);
    free(probs);
}

static void parse_one(const uint8_t *buf, size_t len) {
    struct cnn_model *m = (struct cnn_model *)1;
    const int rc = cnn_model_parse(buf, len, "fuzz.model", &m);
    if (rc != CNN_OK) {
        if (m) abort(); /* on failure *out must be NULL */
        return;
    }
    if (!m) abort();
    exercise(m);
    cnn_model_free(m);
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
