/*
 * export.c - what the exporters (export_onnx.c, export_c.c) share: the model's layers as
 * export ops, each from its kind's ops table (export_op), and batch norm as an affine map.
 * No kind is named here: a kind without an export_op is refused, naming the layer.
 */
#include <math.h>
#include <string.h>

#include "internal.h"

int cnn_export_walk(const struct cnn_model *m, struct cnn_export_op *ops) {
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        char text[96];
        memset(&ops[i], 0, sizeof ops[i]);
        if (!l->ops->export_op) {
            l->ops->describe(l, text, sizeof text);
            return cnn_fail(CNN_ERR_ARG, "layer %d '%s': a %s layer cannot be exported", i + 1,
                            text, l->ops->name);
        }
        l->ops->export_op(l, m->params + l->p_off, m->state ? m->state + l->s_off : NULL,
                          &ops[i]);
        ops[i].in = l->in;
        ops[i].out = l->out;
        ops[i].index = i + 1;
    }
    return CNN_OK;
}

void cnn_export_bn_affine(const struct cnn_export_op *bn, int c, float *a, float *shift) {
    for (int ch = 0; ch < c; ch++)
        cnn_bn_affine(bn->w[ch], bn->b[ch], bn->mean[ch], bn->var[ch], bn->eps, &a[ch], &shift[ch]);
}
