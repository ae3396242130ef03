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

/* Output elements [lo, hi) (ops->forward_part); they are the input's channels lo / hw to
 * (hi - 1) / hw. */
static void flatten_forward_part(const struct cnn_layer *l, const struct cnn_fwd *f, int lo,
                                 int hi) {
    (void)l;
    memcpy(f->y + lo, f->x + lo, (size_t)(hi - lo) * sizeof(float));
}

static void flatten_part_needs(const struct cnn_layer *l, int lo, int hi, int *in_lo, int *in_hi) {
    const int hw = l->in.h * l->in.w;
    *in_lo = lo / hw, *in_hi = (hi + hw - 1) / hw;
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
    .forward_part = flatten_forward_part,
    .part_needs = flatten_part_needs,
    .backward = flatten_backward,
    .describe = flatten_describe,
    .export_op = flatten_export,
};
