/*
 * dropout.c - inverted dropout, "dropout P" (0 <= P < 1).
 *
 *   train: mask[i] = u_i >= P ? 1/(1-P) : 0, u_i uniform in [0,1) with 16 bits;
 *          y = x * mask.  eval: y = x.
 *   backward: dx = dy * mask.
 * The random numbers come from a stateless hash of (per-batch seed, element index / 4), each
 * 64-bit hash giving four 16-bit numbers, so the mask is the same whatever the number of
 * threads (and P is honoured to 1/65536). Cache: mask (n, ...).
 */
#include <stdio.h>

#include <string.h>

#include "internal.h"

static int dropout_parse(struct cnn_layer *l, struct cnn_spec_item *it) {
    int rc;
    l->cfg.dropout.p = -1.0f;
    if ((rc = cnn_spec_float_opt(it, 0, "drop probability", 0.0, 0.99, &l->cfg.dropout.p))) return rc;
    if (l->cfg.dropout.p < 0.0f)
        return cnn_fail(CNN_ERR_SPEC, "layer %d '%s': missing drop probability", it->index,
                        it->text);
    return CNN_OK;
}

static int dropout_init(struct cnn_layer *l) {
    l->out = l->in;
    l->cache_item = cnn_shape_size(l->in);
    l->flops = (double)cnn_shape_size(l->in);
    return CNN_OK;
}

/* Inference: a copy of channels [lo, hi). */
static void dropout_forward_part(const struct cnn_layer *l, const struct cnn_fwd *f, int lo,
                                 int hi) {
    const size_t hw = (size_t)l->out.h * l->out.w;
    memcpy(f->y + lo * hw, f->x + lo * hw, (hi - lo) * hw * sizeof(float));
}

static void dropout_forward(const struct cnn_layer *l, const struct cnn_fwd *f) {
    const size_t total = (size_t)f->n * cnn_shape_size(l->in);
    const float p = l->cfg.dropout.p, keep = 1.0f / (1.0f - p);
    const float *restrict x = f->x;
    float *restrict y = f->y, *restrict mask = f->cache;
    if (!f->train) {
#pragma omp parallel for schedule(static) if (total >= CNN_OMP_MIN_WORK)
        for (size_t i = 0; i < total; i++) y[i] = x[i];
        return;
    }
    const uint64_t seed = f->seed;
    const uint32_t cut = (uint32_t)(p * 65536.0f + 0.5f); /* keep when 16 bits >= cut */
    /* numbered by place in the whole batch, so a team draws the same mask as one thread, and
     * a process holding part of a batch (f->red->i0) the same as one holding all of it */
    const size_t first = (size_t)(f->team ? f->team->i0 : 0) + (size_t)(f->red ? f->red->i0 : 0);
    const size_t base = first * cnn_shape_size(l->in);
    const size_t g0 = base / 4, g1 = (base + total + 3) / 4; /* groups of four elements */
#pragma omp parallel for schedule(static) if (total >= CNN_OMP_MIN_WORK)
    for (size_t g = g0; g < g1; g++) {
        const uint64_t z = cnn_hash64(seed, g);
        for (size_t j = 0; j < 4; j++) {
            const size_t e = g * 4 + j; /* element number in the whole batch */
            if (e < base || e >= base + total) continue;
            const size_t i = e - base;
            mask[i] = (uint32_t)(z >> (16 * j) & 0xffff) >= cut ? keep : 0.0f;
            y[i] = x[i] * mask[i];
        }
    }
}

static void dropout_backward(const struct cnn_layer *l, const struct cnn_bwd *b) {
    if (!b->dx) return;
    const size_t total = (size_t)b->n * cnn_shape_size(l->in);
    const float *restrict dy = b->dy, *restrict mask = b->cache;
    float *restrict dx = b->dx;
#pragma omp parallel for schedule(static) if (total >= CNN_OMP_MIN_WORK)
    for (size_t i = 0; i < total; i++) dx[i] = dy[i] * mask[i];
}

static void dropout_describe(const struct cnn_layer *l, char *buf, size_t len) {
    snprintf(buf, len, "dropout %g", (double)l->cfg.dropout.p);
}

static void dropout_export(const struct cnn_layer *l, const float *p, const float *s,
                           struct cnn_export_op *op) {
    (void)l;
    (void)p;
    (void)s;
    op->kind = CNN_EXPORT_IDENTITY;
}

const struct cnn_layer_ops cnn_dropout_ops = {
    .name = "dropout",
    .parse = dropout_parse,
    .init = dropout_init,
    .forward = dropout_forward,
    .forward_part = dropout_forward_part,
    .part_needs = cnn_part_same,
    .backward = dropout_backward,
    .describe = dropout_describe,
    .export_op = dropout_export,
};
