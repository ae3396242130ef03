/*
 * flatten.c - "flatten": (n,c,h,w) -> (n, c*h*w, 1, 1). The memory layout does not change,
 * so forward and backward are copies. Dense layers flatten their input by themselves; this
 * layer exists so a spec can say so explicitly (and so batch norm after it is per feature).
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

static int flatten_parse(struct cnn_layer *l, struct cnn_spec_item *it) {
    (void)l;
    (void)it;
    return CNN_OK;
}

static int flatten_init(struct cnn_layer *l) {
    l->out.c = (int)cnn_shape_size(l->in);
    l->out.h = l->out.w = 1;
    return CNN_OK;
}

static void flatten_forward(const struct cnn_layer *l, const struct cnn_fwd *f) {
    memcpy(f->y, f->x, (size_t)f->n * cnn_shape_size(l->in) * sizeof(float));
}

static void flatten_backward(const struct cnn_layer *l, const struct cnn_bwd *b) {
    if (b->dx) memcpy(b->dx, b->dy, (size_t)b->n * cnn_shape_size(l->in) * sizeof(float));
}

static void flatten_describe(const struct cnn_layer *l, char *buf, size_t len) {
    (void)l;
    snprintf(buf, len, "flatten");
}

static void flatten_export(const struct cnn_layer *l, const float *p, const float *s,
                           struct cnn_export_op *op) {
    (void)l;
    (void)p;
    (void)s;
    op->kind = CNN_EXPORT_FLATTEN;
}

const struct cnn_layer_ops cnn_flatten_ops = {
    .name = "flatten",
    .parse = flatten_parse,
    .init = flatten_init,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .describe = flatten_describe,
    .export_op = flatten_export,
};
