/*
 * tta.c - test-time augmentation: a model's probabilities averaged over views of each image,
 * the image itself and the moves its training taught it to ignore.
 *
 * The views (cnn_tta_views): the image shifted by one pixel right, left, down and up, with 0
 * (MNIST's background, and what the training augmentation fills in) entering at the edge, and,
 * for a model trained on mirror images (metadata recipe.augment = flip), its mirror. Every
 * channel plane moves the same way. Measured on the validation images of the `best` preset
 * (README.md): it helps on Fashion-MNIST, where the mirror is a real view of the same garment,
 * and not on digits, whose elastic training already covers a one-pixel shift.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum { VIEW_SAME, VIEW_RIGHT, VIEW_LEFT, VIEW_DOWN, VIEW_UP, VIEW_MIRROR, VIEWS_MAX };

int cnn_tta_views(const struct cnn_model *m) {
    const char *aug = cnn_model_meta(m, "recipe.augment");
    return aug && !strcmp(aug, "flip") ? VIEWS_MAX : VIEW_MIRROR; /* all, or those before it */
}

/* One plane (h, w) seen as `view` into dst (h, w). */
static void view_plane(const uint8_t *src, int h, int w, int view, uint8_t *dst) {
    const int dx = view == VIEW_RIGHT ? 1 : view == VIEW_LEFT ? -1 : 0;
    const int dy = view == VIEW_DOWN ? 1 : view == VIEW_UP ? -1 : 0;
    for (int y = 0; y < h; y++) {
        uint8_t *out = dst + (size_t)y * w;
        const int sy = y - dy;
        if (sy < 0 || sy >= h) {
            memset(out, 0, (size_t)w);
            continue;
        }
        const uint8_t *row = src + (size_t)sy * w;
        if (view == VIEW_MIRROR) {
            for (int x = 0; x < w; x++) out[x] = row[w - 1 - x];
        } else if (dx > 0) {
            out[0] = 0;
            memcpy(out + 1, row, (size_t)w - 1);
        } else if (dx < 0) {
            memcpy(out, row + 1, (size_t)w - 1);
            out[w - 1] = 0;
        } else {
            memcpy(out, row, (size_t)w);
        }
    }
}

int cnn_predict_u8_tta(const struct cnn_model *m, struct cnn_ctx *ctx, const uint8_t *pixels, int n,
                       float *probs) {
    if (n < 0) return cnn_fail(CNN_ERR_ARG, "negative image count %d", n);
    int rc = cnn_ctx_check(ctx, m), c, h, w;
    if (rc) return rc;
    cnn_model_input_shape(m, &c, &h, &w);
    const int k = cnn_model_n_classes(m), views = cnn_tta_views(m), B = cnn_ctx_max_batch(ctx);
    const size_t in = (size_t)c * h * w, plane = (size_t)h * w;
    uint8_t *seen = malloc((size_t)B * in);
    float *p = malloc(sizeof(float) * (size_t)B * k);
    if (!seen || !p) rc = cnn_fail(CNN_ERR_NOMEM, "out of memory");
    for (int i0 = 0; !rc && i0 < n; i0 += B) {
        const int b = n - i0 < B ? n - i0 : B;
        float *out = probs + (size_t)i0 * k;
        memset(out, 0, sizeof(float) * (size_t)b * k);
        for (int v = 0; !rc && v < views; v++) {
            const uint8_t *x = pixels + (size_t)i0 * in; /* VIEW_SAME: the images themselves */
            for (size_t q = 0; v != VIEW_SAME && q < (size_t)b * c; q++)
                view_plane(x + q * plane, h, w, v, seen + q * plane);
            rc = cnn_predict_u8(m, ctx, v == VIEW_SAME ? x : seen, b, p);
            for (size_t j = 0; !rc && j < (size_t)b * k; j++) out[j] += p[j] / (float)views;
        }
    }
    free(seen);
    free(p);
    return rc;
}
