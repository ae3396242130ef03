/*
 * fuzz_spec.c - libFuzzer harness for the network-spec parser and every layer's shape logic.
 *
 * The input is the spec text (copied, NUL-terminated, at most 8 KiB, so specs over the
 * parser's own 4096-character limit are tried too), built for a 1x28x28 input. When the model
 * builds:
 *   - the normalised spec (cnn_model_spec) must build again into the same model: same text,
 *     layer count, parameter and state counts. Model files store that text, so a spec that does
 *     not survive this round trip makes a saved model unloadable;
 *   - cheap models (at most MAX_PARAMS parameters, MAX_MFLOPS forward MFLOPs and MAX_ACT
 *     activation floats per image) are initialised, given an inference context for 2 images
 *     and run by cnn_predict_u8 on 2 zero images, then given a training context for 2 images
 *     and trained for one batch (cnn_ctx_train_batch, labels 0). That runs every layer's
 *     forward, backward, cache and scratch sizing. Both contexts use one thread.
 *     Costlier models are only built, round-tripped and freed.
 * What it is not: a numerical test (tests/test_grad.c checks gradients).
 *
 * Reproduce a finding: build/fuzz/fuzz_spec path/to/input
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "internal.h" /* cnn_ctx_new_train, cnn_ctx_train_batch */

#define MAX_SPEC 8192
#define MAX_PARAMS 1000000u
#define MAX_MFLOPS 50.0
#define MAX_ACT ((size_t)4 << 20) /* activation floats per image, summed over layers */
#define BATCH 2

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Contexts are made with threads = 1: the fuzzer runs one input at a time on one thread. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

static void round_trip(const struct cnn_model *m) {
    const char *norm = cnn_model_spec(m);
    struct cnn_model *again = NULL;
    const int rc = cnn_model_new(norm, 1, 28, 28, &again);
    if (rc != CNN_OK) {
        fprintf(stderr, "fuzz_spec: normalised spec '%s' does not build: %s\n", norm,
                cnn_errmsg());
        abort();
    }
    if (strcmp(cnn_model_spec(again), norm) != 0 ||
        cnn_model_n_layers(again) != cnn_model_n_layers(m) ||
        cnn_model_n_params(again) != cnn_model_n_params(m) ||
        cnn_model_n_state(again) != cnn_model_n_state(m) ||
        cnn_model_n_classes(again) != cnn_model_n_classes(m)) {
        fprintf(stderr, "fuzz_spec: normalised spec '%s' builds a different model ('%s')\n", norm,
                cnn_model_spec(again));
        abort();
    }
    cnn_model_free(again);
}

/* Inference on BATCH zero images, through an inference context of its own. */
static void predict(const struct cnn_model *m, int k) {
    static uint8_t pixels[BATCH * 28 * 28];
    struct cnn_ctx *ctx = NULL;
    if (cnn_ctx_new(m, BATCH, 1, &ctx) != CNN_OK) return; /* may be refused (memory) */
    float *probs = malloc((size_t)BATCH * (size_t)k * sizeof *probs);
    if (probs && cnn_predict_u8(m, ctx, pixels, BATCH, probs) != CNN_OK) abort();
    free(probs);
    cnn_ctx_free(ctx);
}

/* One training batch (forward, loss, backward) of BATCH zero images labelled 0. */
static void train(struct cnn_model *m, struct cnn_rng *rng) {
    static float x[BATCH * 28 * 28];
    const uint8_t labels[BATCH] = {0, 0};
    struct cnn_ctx *ctx = NULL;
    if (cnn_ctx_new_train(m, BATCH, 1, &ctx) != CNN_OK) return; /* may be refused (memory) */
    float loss = 0.0f;
    int correct = -1;
    const int saved = cnn_threads_enter(ctx->threads);
    const int rc = cnn_ctx_train_batch(ctx, m, x, labels, BATCH, 0.1f, cnn_rng_u64(rng), NULL,
                                       &loss, &correct);
    cnn_threads_leave(saved);
    if (rc != CNN_OK || correct < 0 || correct > BATCH) abort(); /* no reducer: cannot fail */
    cnn_ctx_free(ctx);
}

static void run(struct cnn_model *m) {
    const int L = cnn_model_n_layers(m);
    double mflops = 0.0;
    size_t act = 0;
    struct cnn_layer_info li;
    for (int i = 0; i < L; i++) {
        if (cnn_model_layer_info(m, i, &li) != CNN_OK) abort();
        mflops += li.mflops;
        act += (size_t)li.c * (size_t)li.h * (size_t)li.w;
    }
    if (cnn_model_n_params(m) > MAX_PARAMS || mflops > MAX_MFLOPS || act > MAX_ACT) return;
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    cnn_model_init_params(m, &rng);
    predict(m, cnn_model_n_classes(m));
    train(m, &rng);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char spec[MAX_SPEC + 1];
    if (size > MAX_SPEC) size = MAX_SPEC;
    memcpy(spec, data, size);
    spec[size] = '\0';
    struct cnn_model *m = (struct cnn_model *)1;
    const int rc = cnn_model_new(spec, 1, 28, 28, &m);
    if (rc != CNN_OK) {
        if (m) abort(); /* on failure *out must be NULL */
        if (!*cnn_errmsg()) abort(); /* and the error must say why */
        return 0;
    }
    round_trip(m);
    run(m);
    cnn_model_free(m);
    return 0;
}
