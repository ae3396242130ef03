/*
 * batchnorm.c - batch normalisation, "bn": per channel after convolutions (statistics over
 * n, h, w), per feature after dense layers (h = w = 1). PyTorch BatchNorm1d/2d semantics.
 *
 *   x (n,c,h,w) in; gamma, beta (c) parameters; running mean, var (c) state; y like x.
 *   train: mu = mean(x_c), var = mean((x_c - mu)^2)  (biased, used to normalise)
 *          y = gamma * (x - mu) * rstd + beta,  rstd = 1 / sqrt(var + 1e-5)
 *          running_mean = 0.9 running_mean + 0.1 mu
 *          running_var  = 0.9 running_var  + 0.1 var * N/(N-1)   (unbiased, as PyTorch)
 *   eval:  y = gamma * (x - running_mean) / sqrt(running_var + 1e-5) + beta
 *   backward (xhat = (x - mu) * rstd, N = n*h*w):
 *          dgamma += sum(dy * xhat); dbeta += sum(dy)
 *          dx = gamma * rstd / N * (N dy - sum(dy) - xhat * sum(dy * xhat))
 * At inference a bn right after a convolution is folded into it (model.c): each output
 * channel's kernel times scale = gamma / sqrt(running_var + 1e-5), its bias times scale plus
 * beta - running_mean * scale (bn_fold_into).
 * Cache: mu (c), rstd (c). Parameters are not weight-decayed. Sums are in double so that
 * the statistics do not depend on how large the batch is.
 */
#include <math.h>
#include <stdio.h>

#include "internal.h"

#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f

static int bn_parse(struct cnn_layer *l, struct cnn_spec_item *it) {
    (void)l;
    (void)it;
    return CNN_OK;
}

static int bn_init(struct cnn_layer *l) {
    l->out = l->in;
    l->n_params = 2 * (size_t)l->in.c;
    l->n_decay = 0;
    l->n_state = 2 * (size_t)l->in.c;
    l->cache_fixed = 2 * (size_t)l->in.c;
    l->team_red = 2 * (size_t)l->in.c;
    l->flops = 2.0 * (double)cnn_shape_size(l->in);
    return CNN_OK;
}

static void bn_init_params(const struct cnn_layer *l, float *p, float *s, struct cnn_rng *rng) {
    (void)rng;
    const int c = l->in.c;
    for (int i = 0; i < c; i++) {
        p[i] = 1.0f;     /* gamma */
        p[c + i] = 0.0f; /* beta */
        s[i] = 0.0f;     /* running mean */
        s[c + i] = 1.0f; /* running var */
    }
}

/* sum of (a - ma) * (x - m) over one plane, in eight lanes (see cnn_sum8); planes are then
 * added in double. a = x, ma = m: the squared deviations; a = dy, ma = 0: dy * (x - m), the
 * xhat sum before the factor rstd. */
static float devdot8(const float *restrict a, float ma, const float *restrict x, float m,
                     size_t n) {
    float acc[8] = {0};
    size_t q = 0;
    for (; q + 8 <= n; q += 8)
        for (int j = 0; j < 8; j++) acc[j] += (a[q + j] - ma) * (x[q + j] - m);
    for (; q < n; q++) acc[q & 7] += (a[q] - ma) * (x[q] - m);
    return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

/* Images the statistics are over: the whole batch, which a team of threads (team->n_total)
 * or several processes (red->n_total, cnn_trainer_set_ranks) may share out. */
static double bn_count(int n, const struct cnn_team *team, const struct cnn_reduce *red) {
    return red && red->n_total ? red->n_total : team ? team->n_total : n;
}

/* Scratch: two doubles per channel (partial sums of this call's images). */
static size_t bn_ws_size(const struct cnn_layer *l, int n) {
    (void)n;
    return 4 * (size_t)l->in.c;
}

/* Channel ch at inference as y = x * scale + shift; p and s are the layer's params and state.
 * bn_forward, bn_forward_part and bn_fold_into all take it from here, so a split image rounds
 * exactly as a batch does. */
static inline void bn_running_affine(const float *p, const float *s, int c, int ch, float *scale,
                                     float *shift) {
    cnn_bn_affine(p[ch], p[c + ch], s[ch], s[c + ch], BN_EPS, scale, shift);
}

/* y = x * scale + shift over len floats, and the fused activation. x may be y: a batch norm
 * folded into the layer before runs in place in an inference context (ctx.c). Each y[q] reads
 * only x[q], so that is safe, and GCC's overlap test still takes the vector loop for it. */
static void bn_apply(const struct cnn_layer *l, const float *x, float *y, size_t len, float scale,
                     float shift) {
    const float slope = l->act_slope;
    if (l->act)
        for (size_t q = 0; q < len; q++) {
            const float t = x[q] * scale + shift;
            y[q] = t * (t > 0.0f ? 1.0f : slope);
        }
    else
        for (size_t q = 0; q < len; q++) y[q] = x[q] * scale + shift;
}

static void bn_forward(const struct cnn_layer *l, const struct cnn_fwd *f) {
    const int c = l->in.c, n = f->n;
    const size_t hw = (size_t)l->in.h * l->in.w;
    const float *gamma = f->p, *beta = f->p + c;
    const float *rmean = f->s, *rvar = f->s + c;
    float *umean = f->s_update, *uvar = f->s_update ? f->s_update + c : NULL; /* training */
    float *mu = f->cache, *rstd = f->cache + c;
    const int par = (size_t)n * c * hw >= CNN_OMP_MIN_WORK;
    (void)par; /* only read by the OpenMP pragmas */
    double *mean = (double *)f->ws, *acc = mean + c; /* (c) each */
    if (f->train) {
        /* Two passes over the whole batch (the team's images too): the mean, then the mean
         * squared deviation from it. Thread 0 (or the only caller) keeps them. */
        const double count = bn_count(n, f->team, f->red) * (double)hw;
#pragma omp parallel for schedule(static) if (par)
        for (int ch = 0; ch < c; ch++) {
            double sum = 0.0;
            for (int i = 0; i < n; i++) sum += cnn_sum8(f->x + ((size_t)i * c + ch) * hw, hw);
            acc[ch] = sum;
        }
        const double *tot = cnn_batch_sum(f->team, f->red, acc, c);
        for (int ch = 0; ch < c; ch++) mean[ch] = tot[ch] / count;
#pragma omp parallel for schedule(static) if (par)
        for (int ch = 0; ch < c; ch++) {
            const float m = (float)mean[ch];
            double sq = 0.0;
            for (int i = 0; i < n; i++) {
                const float *xp = f->x + ((size_t)i * c + ch) * hw;
                sq += devdot8(xp, m, xp, m, hw);
            }
            acc[ch] = sq;
        }
        tot = cnn_batch_sum(f->team, f->red, acc, c);
        for (int ch = 0; ch < c; ch++) {
            const double var = tot[ch] / count;
            acc[ch] = 1.0 / sqrt(var + BN_EPS); /* acc now holds 1/std */
            if (f->team && f->team->tid != 0) continue;
            mu[ch] = (float)mean[ch];
            rstd[ch] = (float)acc[ch];
            const double unbiased = count > 1 ? var * count / (count - 1) : var;
            umean[ch] = (1.0f - BN_MOMENTUM) * rmean[ch] + BN_MOMENTUM * (float)mean[ch];
            uvar[ch] = (1.0f - BN_MOMENTUM) * rvar[ch] + BN_MOMENTUM * (float)unbiased;
        }
    }
#pragma omp parallel for schedule(static) if (par)
    for (int ch = 0; ch < c; ch++) {
        float scale, shift;
        if (f->train) {
            scale = gamma[ch] * (float)acc[ch];
            shift = beta[ch] - (float)mean[ch] * scale;
        } else {
            bn_running_affine(f->p, f->s, c, ch, &scale, &shift);
        }
        for (int i = 0; i < n; i++) {
            const size_t at = ((size_t)i * c + ch) * hw;
            bn_apply(l, f->x + at, f->y + at, hw, scale, shift);
        }
    }
}

/* Inference, channels [lo, hi) of one image (ops->forward_part). */
static void bn_forward_part(const struct cnn_layer *l, const struct cnn_fwd *f, int lo, int hi) {
    const int c = l->in.c;
    const size_t hw = (size_t)l->in.h * l->in.w;
    for (int ch = lo; ch < hi; ch++) {
        float scale, shift;
        bn_running_affine(f->p, f->s, c, ch, &scale, &shift);
        bn_apply(l, f->x + ch * hw, f->y + ch * hw, hw, scale, shift);
    }
}

/* ops->fold_into: row ch of w and b(ch) times scale, plus shift into b(ch). */
static void bn_fold_into(const struct cnn_layer *l, const float *p, const float *s, float *w,
                         size_t row_len, float *b) {
    const int c = l->in.c;
    for (int ch = 0; ch < c; ch++) {
        float scale, shift;
        bn_running_affine(p, s, c, ch, &scale, &shift);
        for (size_t q = 0; q < row_len; q++) w[(size_t)ch * row_len + q] *= scale;
        b[ch] = b[ch] * scale + shift;
    }
}

static void bn_backward(const struct cnn_layer *l, const struct cnn_bwd *b) {
    const int c = l->in.c, n = b->n;
    const size_t hw = (size_t)l->in.h * l->in.w;
    const float *gamma = b->p;
    float *dgamma = b->dp, *dbeta = b->dp + c;
    const float *mu = b->cache, *rstd = b->cache + c;
    const double count = bn_count(n, b->team, b->red) * (double)hw;
    const int par = (size_t)n * c * hw >= CNN_OMP_MIN_WORK;
    (void)par; /* only read by the OpenMP pragmas */
    double *acc = (double *)b->ws; /* (2c): sum dy, sum dy * xhat over this call's images */
#pragma omp parallel for schedule(static) if (par)
    for (int ch = 0; ch < c; ch++) {
        const float m = mu[ch], r = rstd[ch];
        double sdy = 0.0, sdyx = 0.0;
        for (int i = 0; i < n; i++) {
            const float *xp = b->x + ((size_t)i * c + ch) * hw;
            float *dyp = b->dy + ((size_t)i * c + ch) * hw;
            float s = 0.0f; /* the fused activation's gradient, in place, and sum dy */
            cnn_act_grad_sum(l, dyp, b->y + ((size_t)i * c + ch) * hw, &s, 1, (int)hw);
            sdy += s;
            sdyx += (double)devdot8(dyp, 0.0f, xp, m, hw) * r;
        }
        dgamma[ch] += (float)sdyx; /* this call's share; a team adds the shares up later */
        dbeta[ch] += (float)sdy;
        acc[ch] = sdy;
        acc[c + ch] = sdyx;
    }
    if (!b->dx) return; /* the first layer: every thread returns here, none waits below */
    const double *tot = cnn_batch_sum(b->team, b->red, acc, 2 * c);
#pragma omp parallel for schedule(static) if (par)
    for (int ch = 0; ch < c; ch++) {
        const float m = mu[ch], r = rstd[ch];
        const float k = gamma[ch] * r;
        const float mdy = (float)(tot[ch] / count), mdyx = (float)(tot[c + ch] / count);
        for (int i = 0; i < n; i++) {
            const float *xp = b->x + ((size_t)i * c + ch) * hw;
            const float *dyp = b->dy + ((size_t)i * c + ch) * hw;
            float *dxp = b->dx + ((size_t)i * c + ch) * hw;
            for (size_t q = 0; q < hw; q++)
                dxp[q] = k * (dyp[q] - mdy - (xp[q] - m) * r * mdyx);
        }
    }
}

static void bn_describe(const struct cnn_layer *l, char *buf, size_t len) {
    (void)l;
    snprintf(buf, len, "bn");
}

static void bn_export(const struct cnn_layer *l, const float *p, const float *s,
                      struct cnn_export_op *op) {
    const size_t c = (size_t)l->in.c;
    op->kind = CNN_EXPORT_BATCHNORM;
    op->w = p;
    op->b = p + c;
    op->mean = s;
    op->var = s + c;
    op->eps = BN_EPS;
}

const struct cnn_layer_ops cnn_batchnorm_ops = {
    .name = "bn",
    .parse = bn_parse,
    .init = bn_init,
    .init_params = bn_init_params,
    .forward = bn_forward,
    .backward = bn_backward,
    .forward_part = bn_forward_part,
    .part_needs = cnn_part_same,
    .fold_into = bn_fold_into,
    .ws_size = bn_ws_size,
    .describe = bn_describe,
    .export_op = bn_export,
    .fuses_act = 1,
};
