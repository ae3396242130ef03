/*
 * image_write.c - PNG output for preprocessed images (`mnist predict --save-preprocessed`).
 * Encodes in memory with stb_image_write, then writes atomically, so a failed write never
 * leaves a half-written PNG at the final name.
 */
#include <stdlib.h>

#include <stb/stb_image_write.h>

#include "internal.h"

static void append(void *ctx, void *data, int size) {
    cnn_buf_put(ctx, data, (size_t)size);
}

int cnn_image_write_png(const char *path, const uint8_t *gray, int w, int h) {
    if (w < 1 || h < 1 || w > 65535 || h > 65535)
        return cnn_fail(CNN_ERR_ARG, "%s: image size %dx%d out of range", path, w, h);
    struct cnn_buf b = {0};
    int rc;
    if (!stbi_write_png_to_func(append, &b, w, h, 1, gray, w) || b.oom)
        rc = cnn_fail(CNN_ERR_NOMEM, "%s: PNG encoding failed", path);
    else
        rc = cnn_write_file_atomic(path, b.p, b.len);
    free(b.p);
    return rc;
}
