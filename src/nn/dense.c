/*
 * dense.c - fully connected layer, "dense N". Any input shape is flattened (c*h*w features).
 *
 *   x (n, in) in; w (out, in); b (out); y (n, out) out:  y = x @ w^T + b   (PyTorch Linear)
 *   backward: dw (out,in) += dy^T @ x;  db += sum_n dy;  dx (n,in) = dy @ w
 * One sgemm over the whole batch for each product (llm.c matmul_forward, but through BLAS).
 * Parameters: w then b; weight decay applies to w only. No cache.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static int dense_parse(struct cnn_layer *l, struct cnn_spec_item *it) {
    return cnn_spec_int(it, 0, "units", 1, 1 << 20, &l->cfg.dense.units);
}

static int dense_init(struct cnn_layer *l) {
    const size_t in = cnn_shape_size(l->in);
    l->out.c = l->cfg.dense.units;
    l->out.h = l->out.w = 1;
    if (in * (size_t)l->out.c > (size_t)1 << 25)
        return cnn_fail(CNN_ERR_SPEC, "%zu x %d weights is more than this library allows", in,
                        l->out.c);
    l->n_decay = in * (size_t)l->out.c;
    l->n_params = l->n_decay + (size_t)l->out.c;
    l->flops = 2.0 * (double)in * l->out.c;
    return CNN_OK;
}

/* He/Kaiming normal, fan_in = in. */
static void dense_init_params(const struct cnn_layer *l, float *p, float *s,
                              struct cnn_rng *rng) {
    (void)s;
    const float std = sqrtf(2.0f / (float)cnn_shape_size(l->in));
    for (size_t i = 0; i < l->n_decay; i++) p[i] = std * cnn_rng_normal(rng);
    memset(p + l->n_decay, 0, (size_t)l->out.c * sizeof(float));
}

static void dense_forward(const struct cnn_layer *l, const struct cnn_fwd *f) {
    const int in = (int)cnn_shape_size(l->in), out = l->out.c, n = f->n;
    const float *bias = f->p + l->n_decay;
    float *restrict y = f->y;
#pragma omp parallel for schedule(static) if ((size_t)n * out >= CNN_OMP_MIN_WORK)
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) y[(size_t)i * out + o] = bias[o];
    cnn_gemm(0, 1, n, out, in, 1.0f, f->x, in, f->p, in, 1.0f, f->y, out);
    if (l->act) cnn_bias_act(l->act, l->act_slope, f->y, 0, NULL, 1, n * out);
}

/* Units [lo, hi) of one image: their rows of the weights, all of the input (part_needs NULL). */
static void dense_forward_part(const struct cnn_layer *l, const struct cnn_fwd *f, int lo, int hi) {
    const int in = (int)cnn_shape_size(l->in);
    const float *bias = f->p + l->n_decay;
    for (int o = lo; o < hi; o++) f->y[o] = bias[o];
    cnn_gemm(0, 1, 1, hi - lo, in, 1.0f, f->x, in, f->p + (size_t)lo * in, in, 1.0f, f->y + lo,
             hi - lo);
    if (l->act) cnn_bias_act(l->act, l->act_slope, f->y + lo, 0, NULL, 1, hi - lo);
}

static void dense_backward(const struct cnn_layer *l, const struct cnn_bwd *b) {
    const int in = (int)cnn_shape_size(l->in), out = l->out.c, n = b->n;
    float *db = b->dp + l->n_decay;
    if (l->act) cnn_act_grad_sum(l, b->dy, b->y, NULL, 1, n * out);
    cnn_gemm(1, 0, out, in, n, 1.0f, b->dy, out, b->x, in, 1.0f, b->dp, in);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) db[o] += b->dy[(size_t)i * out + o];
    if (b->dx) cnn_gemm(0, 0, n, in, out, 1.0f, b->dy, out, b->p, in, 0.0f, b->dx, in);
}

static void dense_describe(const struct cnn_layer *l, char *buf, size_t len) {
    snprintf(buf, len, "dense %d", l->cfg.dense.units);
}

static void dense_export(const struct cnn_layer *l, const float *p, const float *s,
                         struct cnn_export_op *op) {
    (void)s;
    op->kind = CNN_EXPORT_DENSE;
    op->w = p;
    op->b = p + l->n_decay;
}

const struct cnn_layer_ops cnn_dense_ops = {
    .name = "dense",
    .parse = dense_parse,
    .init = dense_init,
    .init_params = dense_init_params,
    .forward = dense_forward,
    .forward_part = dense_forward_part,
    .backward = dense_backward,
    .describe = dense_describe,
    .export_op = dense_export,
    .fuses_act = 1,
};
