/*
 * trainer.h - the trainer's state, shared by trainer.c (steps, epochs) and checkpoint.c
 * (saving and resuming it). Private to src/train.
 */
#ifndef CNN_TRAINER_H
#define CNN_TRAINER_H

#include "internal.h"

struct cnn_trainer {
    struct cnn_model *model; /* borrowed; the trainer owns its writes */
    struct cnn_train_cfg cfg;
    struct cnn_optim *opt;
    struct cnn_ctx *ctx;     /* training context, sized by ensure_ctx alone */
    struct cnn_reduce red;   /* the caller's reducer (red.r.sum NULL: none) */
    int rank, ranks;         /* data parallel: this process's share of each batch (0 of 1) */
    int epoch;               /* epochs completed */
    int batch;               /* batches completed in the current epoch */
    long step;               /* optimizer steps in all */
    long per_epoch;          /* steps per epoch, once an epoch has been planned (else 1) */
    double run_loss, run_correct; /* sums over the current epoch's completed batches */
    long run_seen;
    double best_val;
    int best_epoch;
    /* The data of this run: fingerprints (hex; "" until known) and the split of the data the
     * last epoch ran on, kept while the same dataset comes back. */
    char data_fp[24], val_fp[24];
    const struct cnn_dataset *split_of;
    int split_n;
    int n_train, n_val;
    int *train_idx, *val_idx, *order; /* (n_train), (n_val), (n_train) */
    /* With cfg.ema: (n_params + n_state) the moving average of params and state, or while
     * `swapped` (between epochs, where validation and on_best see the average) the raw ones. */
    float *avg;
    int swapped;
};

/* cfg's fields against their ranges (CNN_ERR_ARG naming the first bad one). */
int cnn_train_cfg_check(const struct cnn_train_cfg *cfg);

#endif
