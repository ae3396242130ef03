/*
 * train_tiny.c - train a tiny network with libcnn's steppable trainer, then check it.
 *
 *   cc train_tiny.c $(pkg-config --cflags --libs libcnn) -o train_tiny
 *   ./train_tiny DATA_DIR [OUT.model]     (DATA_DIR holds the MNIST IDX files)
 *
 * Two epochs of "conv 8 5, relu, maxpool 2, dense 10" on 11,000 training images, one
 * cnn_trainer_epoch call each, then the accuracy on the 10,000 test images through an
 * inference context. Prints one line per epoch and the test accuracy; exits 1 on any error
 * or when the accuracy is below 90%. Uses only cnn.h.
 */
#include <stdio.h>
#include <stdlib.h>

#include <cnn.h>

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s DATA_DIR [OUT.model]\n", argv[0]);
        return 2;
    }
    struct cnn_dataset train = {0}, test = {0};
    struct cnn_model *model = NULL;
    struct cnn_trainer *trainer = NULL;
    struct cnn_ctx *ctx = NULL;
    float *probs = NULL;
    int status = 1;
    struct cnn_train_cfg cfg;
    cnn_train_cfg_default(&cfg);
    cfg.epochs = 2;
    cfg.batch = 64;
    cfg.limit = 12000;
    cfg.val = 1000;
    cfg.threads = 1;
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    if (cnn_dataset_load_dir(argv[1], "train", &train) != CNN_OK ||
        cnn_dataset_load_dir(argv[1], "test", &test) != CNN_OK ||
        cnn_model_new("conv 8 5, relu, maxpool 2, dense 10", 1, 28, 28, &model) != CNN_OK)
        goto fail;
    cnn_model_init_params(model, &rng);
    if (cnn_trainer_new(model, &cfg, &trainer) != CNN_OK) goto fail;
    while (cnn_trainer_epochs_done(trainer) < cfg.epochs) {
        struct cnn_epoch_stats s;
        if (cnn_trainer_epoch(trainer, &train, NULL, &s) != CNN_OK) goto fail;
        printf("epoch %d: train loss %.4f, validation accuracy %.2f%%\n", s.epoch, s.train_loss,
               100.0 * s.val_acc);
    }
    if (argc == 3 && cnn_model_save(model, argv[2]) != CNN_OK) goto fail;
    probs = malloc(sizeof(float) * (size_t)test.n * CNN_MAX_CLASSES);
    if (!probs || cnn_ctx_new(model, 256, 1, &ctx) != CNN_OK ||
        cnn_predict_u8(model, ctx, test.images, test.n, probs) != CNN_OK)
        goto fail;
    int correct = 0;
    for (int i = 0; i < test.n; i++)
        correct += cnn_argmax(probs + (size_t)i * CNN_MAX_CLASSES, CNN_MAX_CLASSES) ==
                   test.labels[i];
    const double acc = (double)correct / test.n;
    printf("test accuracy %.2f%% (%d of %d)\n", 100.0 * acc, correct, test.n);
    status = acc >= 0.90 ? 0 : 1;
    goto done;
fail:
    fprintf(stderr, "train_tiny: %s\n", cnn_errmsg()[0] ? cnn_errmsg() : "out of memory");
done:
    free(probs);
    cnn_ctx_free(ctx);
    cnn_trainer_free(trainer);
    cnn_model_free(model);
    cnn_dataset_free(&train);
    cnn_dataset_free(&test);
    return status;
}
