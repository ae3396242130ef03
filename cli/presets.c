/*
 * presets.c - named training recipes (`mnist train --preset NAME`). Flags given after a
 * preset override its values. The measured results are in README.md.
 */
#include <string.h>

#include "cli.h"

static const struct cli_preset presets[] = {
    {"fast", "small CNN, no augmentation: >= 99.0% in well under a minute",
     "conv 16 5 pad=2, bn, relu, maxpool 2, conv 32 5 pad=2, bn, relu, maxpool 2, dense 10", 3,
     128, CNN_OPT_ADAM, CNN_SCHED_ONECYCLE, 0, 4e-3f, 0.0f, 0.0f},
    {"default", "two 5x5 conv blocks, light augmentation: >= 99.4% in about 5 minutes",
     "conv 32 5 pad=2, bn, relu, maxpool 2, conv 64 5 pad=2, bn, relu, maxpool 2, dropout 0.25, "
     "dense 10",
     8, 128, CNN_OPT_ADAMW, CNN_SCHED_ONECYCLE, 1, 3e-3f, 1e-4f, 0.1f},
    {"best", "VGG-style 3x3 blocks, elastic augmentation, long run",
     "conv 32 3 pad=1, bn, relu, conv 32 3 pad=1, bn, relu, maxpool 2, conv 64 3 pad=1, bn, "
     "relu, conv 64 3 pad=1, bn, relu, maxpool 2, dense 256, bn, relu, dropout 0.4, dense 10",
     20, 128, CNN_OPT_ADAMW, CNN_SCHED_ONECYCLE, 2, 3e-3f, 5e-4f, 0.1f},
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
