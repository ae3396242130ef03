/*
 * classify.c - the smallest program that uses libcnn: load a trained model, read a photo or
 * drawing of one digit, prepare it like MNIST, and print the most likely class.
 *
 *   cc classify.c $(pkg-config --cflags --libs libcnn) -o classify
 *   ./classify mnist.model digit.png
 *
 * Uses only cnn.h. Exit status 0 on success, 1 on any error (one line on stderr).
 */
#include <stdio.h>

#include <cnn.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL IMAGE\n", argv[0]);
        return 2;
    }
    struct cnn_model *model = NULL;
    struct cnn_ctx *ctx = NULL;
    struct cnn_image img = {0};
    unsigned char pixels[28 * 28];
    float probs[CNN_MAX_CLASSES];
    int status = 1;
    if (cnn_model_load(argv[1], &model) != CNN_OK || cnn_ctx_new(model, 1, 1, &ctx) != CNN_OK ||
        cnn_image_load(argv[2], &img) != CNN_OK || cnn_image_to_mnist(&img, pixels) != CNN_OK ||
        cnn_predict_u8(model, ctx, pixels, 1, probs) != CNN_OK) {
        fprintf(stderr, "classify: %s\n", cnn_errmsg());
        goto done;
    }
    const int k = cnn_model_n_classes(model), best = cnn_argmax(probs, k);
    printf("%s: %s (%.1f%%) [libcnn %s]\n", argv[2], cnn_model_class_name(model, best),
           100.0 * probs[best], cnn_version());
    status = 0;
done:
    cnn_image_free(&img);
    cnn_ctx_free(ctx);
    cnn_model_free(model);
    return status;
}
