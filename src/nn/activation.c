/*
 * activation.c - elementwise activations: "relu" and "leakyrelu [SLOPE]" (default 0.01).
 *
 *   x (n, ...) in; y like x: y = x > 0 ? x : slope * x   (relu: slope 0)
 *   backward: dx = dy * (x > 0 ? 1 : slope), using the cached input x (no cache of its own).
 * The derivative at exactly 0 is taken as `slope`, as in PyTorch.
 */
#include <stdio.h>

#include "internal.h"

static int relu_parse(struct cnn_layer *l, struct cnn_spec_item *it) {
    (void)it;
    l->cfg.act.slope = 0.0f;
    return CNN_OK;
}

static int leaky_parse(struct cnn_layer *l, struct cnn_spec_item *it) {
    l->cfg.act.slope = 0.01f;
    return cnn_spec_float_opt(it, 0, "slope", 0.0, 1.0, &l->cfg.act.slope);
}

static int act_init(struct cnn_layer *l) {
    l->out = l->in;
    l->flops = (double)cnn_shape_size(l->in);
    return CNN_OK;
}

static void act_forward(const struct cnn_layer *l, const struct cnn_fwd *f) {
    const size_t total = (size_t)f->n * cnn_shape_size(l->in);
    const float slope = l->cfg.act.slope;
    const float *restrict x = f->x;
    float *restrict y = f->y;
#pragma omp parallel for schedule(static) if (total >= CNN_OMP_MIN_WORK)
    for (size_t i = 0; i < total; i++) y[i] = x[i] * (x[i] > 0.0f ? 1.0f : slope);
}

static void act_forward_part(const struct cnn_layer *l, const struct cnn_fwd *f, int lo, int hi) {
    const size_t hw = (size_t)l->out.h * l->out.w;
    const float slope = l->cfg.act.slope;
    const float *restrict x = f->x;
    float *restrict y = f->y;
    for (size_t i = lo * hw; i < hi * hw; i++) y[i] = x[i] * (x[i] > 0.0f ? 1.0f : slope);
}

static void act_backward(const struct cnn_layer *l, const struct cnn_bwd *b) {
    if (!b->dx) return;
    const size_t total = (size_t)b->n * cnn_shape_size(l->in);
    const float slope = l->cfg.act.slope;
    const float *restrict x = b->x, *restrict dy = b->dy;
    float *restrict dx = b->dx;
#pragma omp parallel for schedule(static) if (total >= CNN_OMP_MIN_WORK)
    for (size_t i = 0; i < total; i++) dx[i] = dy[i] * (x[i] > 0.0f ? 1.0f : slope);
}

/* Every select below picks a factor, 1 or the slope, and the multiply is unconditional: GCC
 * will not vectorise `t > 0 ? t : slope * t` (it may not speculate the multiply), and NaN
 * still propagates. */
static inline void bias_act_row(int act, float slope, float *restrict v, float b, int has_b,
                                int len) {
    if (act)
        for (int q = 0; q < len; q++) {
            const float t = v[q] + b;
            v[q] = t * (t > 0.0f ? 1.0f : slope);
        }
    else if (has_b)
        for (int q = 0; q < len; q++) v[q] += b;
}

/* Small calls skip OpenMP altogether: a parallel region that runs on one thread still costs
 * 0.3-0.9 us to enter, and a single image split between threads (ctx.c) makes such calls. */
void cnn_bias_act(int act, float slope, float *y, size_t ld, const float *bias, int rows, int len) {
    if ((size_t)rows * len < CNN_OMP_MIN_WORK) {
        for (int r = 0; r < rows; r++)
            bias_act_row(act, slope, y + r * ld, bias ? bias[r] : 0.0f, bias != NULL, len);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++)
        bias_act_row(act, slope, y + r * ld, bias ? bias[r] : 0.0f, bias != NULL, len);
}

void cnn_act_grad_sum(const struct cnn_layer *l, float *dy, const float *y, float *sum, int rows,
                      int len) {
    const float slope = l->act_slope;
    for (int r = 0; r < rows; r++) {
        float *restrict g = dy + (size_t)r * len;
        const float *restrict v = y + (size_t)r * len;
        if (l->act)
            for (int q = 0; q < len; q++) g[q] *= v[q] > 0.0f ? 1.0f : slope;
        if (sum) sum[r] += cnn_sum8(g, (size_t)len);
    }
}

static void relu_describe(const struct cnn_layer *l, char *buf, size_t len) {
    (void)l;
    snprintf(buf, len, "relu");
}

static void leaky_describe(const struct cnn_layer *l, char *buf, size_t len) {
    snprintf(buf, len, "leakyrelu %g", (double)l->cfg.act.slope);
}

static void act_export(const struct cnn_layer *l, const float *p, const float *s,
                       struct cnn_export_op *op) {
    (void)p;
    (void)s;
    op->kind = l->ops == &cnn_relu_ops ? CNN_EXPORT_RELU : CNN_EXPORT_LEAKYRELU;
    op->slope = l->cfg.act.slope;
}

const struct cnn_layer_ops cnn_relu_ops = {
    .name = "relu",
    .parse = relu_parse,
    .init = act_init,
    .forward = act_forward,
    .forward_part = act_forward_part,
    .part_needs = cnn_part_same,
    .backward = act_backward,
    .describe = relu_describe,
    .export_op = act_export,
    .is_act = 1,
};

const struct cnn_layer_ops cnn_leakyrelu_ops = {
    .name = "leakyrelu",
    .parse = leaky_parse,
    .init = act_init,
    .forward = act_forward,
    .forward_part = act_forward_part,
    .part_needs = cnn_part_same,
    .backward = act_backward,
    .export_op = act_export,
    .describe = leaky_describe,
    .is_act = 1,
};
