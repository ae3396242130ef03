/*
 * fuzz_spec.c - libFuzzer harness for the network-spec parser and every layer's shape logic.
 *
 * The input is the spec text (copied, NUL-terminated, at most 8 KiB, so specs over the
 * parser's own 4096-character limit are tried too), built for a 1x28x28 input. When the net
 * builds:
 *   - the normalised spec (cnn_net_spec) must build again into the same net: same text, layer
 *     count, parameter and state counts. Model files store that text, so a spec that does not
 *     survive this round trip makes a saved model unloadable;
 *   - cheap nets (at most MAX_PARAMS parameters, MAX_MFLOPS forward MFLOPs and MAX_ACT
 *     activation floats per image) are initialised, reserved for 2 images, run by
 *     cnn_net_predict_u8 on 2 zero images, and trained for one batch (cnn_net_train_batch,
 *     labels 0). That runs every layer's forward, backward, cache and scratch sizing.
 *     Costlier nets are only built, round-tripped and freed.
 * What it is not: a numerical test (tests/test_grad.c checks gradients).
 *
 * Reproduce a finding: build/fuzz/fuzz_spec path/to/input
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"

#define MAX_SPEC 8192
#define MAX_PARAMS 1000000u
#define MAX_MFLOPS 50.0
#define MAX_ACT ((size_t)4 << 20) /* activation floats per image, summed over layers */
#define BATCH 2

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    cnn_set_threads(1);
    return 0;
}

static void round_trip(const struct cnn_net *net) {
    const char *norm = cnn_net_spec(net);
    struct cnn_net *again = NULL;
    const int rc = cnn_net_new(norm, 1, 28, 28, &again);
    if (rc != CNN_OK) {
        fprintf(stderr, "fuzz_spec: normalised spec '%s' does not build: %s\n", norm,
                cnn_errmsg());
        abort();
    }
    if (strcmp(cnn_net_spec(again), norm) != 0 ||
        cnn_net_n_layers(again) != cnn_net_n_layers(net) ||
        cnn_net_n_params(again) != cnn_net_n_params(net) ||
        cnn_net_n_state(again) != cnn_net_n_state(net) ||
        cnn_net_n_classes(again) != cnn_net_n_classes(net)) {
        fprintf(stderr, "fuzz_spec: normalised spec '%s' builds a different net ('%s')\n", norm,
                cnn_net_spec(again));
        abort();
    }
    cnn_net_free(again);
}

static void run(struct cnn_net *net) {
    const int L = cnn_net_n_layers(net);
    double mflops = 0.0;
    size_t act = 0;
    struct cnn_layer_info li;
    for (int i = 0; i < L; i++) {
        cnn_net_layer_info(net, i, &li);
        mflops += li.mflops;
        act += (size_t)li.c * (size_t)li.h * (size_t)li.w;
    }
    if (cnn_net_n_params(net) > MAX_PARAMS || mflops > MAX_MFLOPS || act > MAX_ACT) return;
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    cnn_net_init_params(net, &rng);
    if (cnn_net_reserve(net, BATCH) != CNN_OK) return;
    const int k = cnn_net_n_classes(net);
    static uint8_t pixels[BATCH * 28 * 28];
    static float x[BATCH * 28 * 28];
    float *probs = malloc((size_t)BATCH * (size_t)k * sizeof *probs);
    if (!probs) return;
    if (cnn_net_predict_u8(net, pixels, BATCH, probs) != CNN_OK) abort();
    const uint8_t labels[BATCH] = {0, 0};
    float loss = 0.0f;
    int correct = -1;
    if (cnn_net_train_batch(net, x, labels, BATCH, 0.1f, &rng, &loss, &correct) == CNN_OK &&
        (correct < 0 || correct > BATCH))
        abort();
    free(probs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char spec[MAX_SPEC + 1];
    if (size > MAX_SPEC) size = MAX_SPEC;
    memcpy(spec, data, size);
    spec[size] = '\0';
    struct cnn_net *net = (struct cnn_net *)1;
    const int rc = cnn_net_new(spec, 1, 28, 28, &net);
    if (rc != CNN_OK) {
        if (net) abort(); /* on failure *out must be NULL */
        if (!*cnn_errmsg()) abort(); /* and the error must say why */
        return 0;
    }
    round_trip(net);
    run(net);
    cnn_net_free(net);
    return 0;
}
