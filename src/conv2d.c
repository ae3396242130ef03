/*
 * conv2d.c - 2-D convolution layer: "conv OC K [stride=S] [pad=P]".
 *
 * Cross-correlation without kernel flip, exactly PyTorch's Conv2d (kann flips; we do not).
 *   x (n,c,h,w) in; w (oc,c,k,k); b (oc); y (n,oc,oh,ow) out,
 *   y[i,o,oy,ox] = b[o] + sum_{ci,ky,kx} w[o,ci,ky,kx] * x[i,ci,oy*s-p+ky,ox*s-p+kx]
 *   with oh = (h + 2p - k)/s + 1 and zero padding.
 *
 * Fast path: im2col + sgemm, one image at a time, straight into NCHW (darknet's approach):
 *   col (c*k*k, oh*ow) = im2col(x[i])
 *   y[i] (oc, oh*ow)   = w (oc, c*k*k) @ col,  then + b[o] and the fused activation, if any
 * Backward, per image (col is rebuilt: it is still in cache when it is used, where a copy kept
 * from forward would be 0.6 MB per image to stream back from memory):
 *   dy[i]               *= act'(y[i])        when an activation is fused (in place)
 *   dw (oc, c*k*k)     += dy[i] @ col^T;  db[o] += sum dy[i, o, :]
 *   dcol (c*k*k, oh*ow) = w^T @ dy[i];     dx[i] = col2im(dcol)
 * A team thread (net.c) runs this on its own images with one-threaded sgemm. One thread alone
 * with the whole batch lets cnn_gemm, im2col and col2im split each image across threads.
 * Parameters: w then b; weight decay applies to w only.
 * The _naive functions are direct loops in double, the reference for tests.
 */
#include <stdio.h>
#include <math.h>
#include <string.h>

#include "internal.h"

enum { OC, K, STRIDE, PAD };

static int conv_parse(struct cnn_layer *l, struct cnn_spec_item *it) {
    int rc;
    l->ia[STRIDE] = 1;
    l->ia[PAD] = 0;
    if ((rc = cnn_spec_int(it, 0, "filters", 1, 65536, &l->ia[OC]))) return rc;
    if ((rc = cnn_spec_int(it, 1, "kernel size", 1, 256, &l->ia[K]))) return rc;
    if ((rc = cnn_spec_opt_int(it, "stride", 1, 256, &l->ia[STRIDE]))) return rc;
    return cnn_spec_opt_int(it, "pad", 0, 256, &l->ia[PAD]);
}

static int conv_init(struct cnn_layer *l) {
    const int k = l->ia[K], s = l->ia[STRIDE], p = l->ia[PAD];
    if (k > l->in.h + 2 * p || k > l->in.w + 2 * p)
        return cnn_fail(CNN_ERR_SPEC, "kernel %d larger than its input %dx%d (pad %d)", k, l->in.h,
                        l->in.w, p);
    if (p >= k) return cnn_fail(CNN_ERR_SPEC, "padding %d must be smaller than kernel %d", p, k);
    l->out.c = l->ia[OC];
    l->out.h = (l->in.h + 2 * p - k) / s + 1;
    l->out.w = (l->in.w + 2 * p - k) / s + 1;
    const size_t ckk = (size_t)l->in.c * k * k;
    l->n_decay = (size_t)l->out.c * ckk;
    l->n_params = l->n_decay + (size_t)l->out.c;
    l->flops = 2.0 * (double)ckk * l->out.c * l->out.h * l->out.w;
    return CNN_OK;
}

/* He/Kaiming normal, fan_in = c*k*k, gain sqrt(2) for relu. */
static void conv_init_params(const struct cnn_layer *l, float *p, float *s,
                             struct cnn_rng *rng) {
    (void)s;
    const size_t ckk = (size_t)l->in.c * l->ia[K] * l->ia[K];
    const float std = sqrtf(2.0f / (float)ckk);
    for (size_t i = 0; i < l->n_decay; i++) p[i] = std * cnn_rng_normal(rng);
    memset(p + l->n_decay, 0, (size_t)l->out.c * sizeof(float));
}

/* One image's im2col matrix (reused for dcol in backward). */
static size_t conv_ws_size(const struct cnn_layer *l, int n) {
    (void)n;
    return (size_t)l->in.c * l->ia[K] * l->ia[K] * l->out.h * l->out.w;
}

/* x (m,c,h,w) -> col (c*k*k, m*oh*ow). Row r = (ci,ky,kx); column = j*oh*ow + oy*ow + ox. */
static void im2col(const float *restrict x, float *restrict col, int m, int c, int h, int w,
                   int k, int s, int p, int oh, int ow) {
    const size_t ohw = (size_t)oh * ow, ncol = (size_t)m * ohw;
    const int rows = c * k * k;
#pragma omp parallel for schedule(static) if ((size_t)rows * ncol >= CNN_OMP_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        const int ci = r / (k * k), ky = (r / k) % k, kx = r % k;
        /* ox range whose input column ix = ox*s - p + kx lies inside [0, w) */
        int ox0 = 0, ox1 = ow;
        while (ox0 < ow && ox0 * s - p + kx < 0) ox0++;
        while (ox1 > ox0 && (ox1 - 1) * s - p + kx >= w) ox1--;
        float *crow = col + (size_t)r * ncol;
        for (int j = 0; j < m; j++) {
            const float *xc = x + ((size_t)j * c + ci) * h * w;
            for (int oy = 0; oy < oh; oy++) {
                float *dst = crow + (size_t)j * ohw + (size_t)oy * ow;
                const int iy = oy * s - p + ky;
                if (iy < 0 || iy >= h) {
                    memset(dst, 0, (size_t)ow * sizeof(float));
                    continue;
                }
                const float *row = xc + (size_t)iy * w;
                const int off = kx - p;
                for (int ox = 0; ox < ox0; ox++) dst[ox] = 0.0f;
                if (s == 1)
                    memcpy(dst + ox0, row + ox0 + off, (size_t)(ox1 - ox0) * sizeof(float));
                else
                    for (int ox = ox0; ox < ox1; ox++) dst[ox] = row[ox * s + off];
                for (int ox = ox1; ox < ow; ox++) dst[ox] = 0.0f;
            }
        }
    }
}

/* col (c*k*k, m*oh*ow) -> dx (m,c,h,w), assigned: the transpose of im2col, summing overlaps.
 * Parallel over (image, channel) planes, so no two threads write the same element. */
static void col2im(const float *restrict col, float *restrict dx, int m, int c, int h, int w,
                   int k, int s, int p, int oh, int ow) {
    const size_t ohw = (size_t)oh * ow, ncol = (size_t)m * ohw;
#pragma omp parallel for schedule(static) if ((size_t)m * c * h * w * k * k >= CNN_OMP_MIN_WORK)
    for (int jc = 0; jc < m * c; jc++) {
        const int j = jc / c, ci = jc % c;
        float *plane = dx + (size_t)jc * h * w;
        memset(plane, 0, (size_t)h * w * sizeof(float));
        for (int ky = 0; ky < k; ky++) {
            for (int kx = 0; kx < k; kx++) {
                int ox0 = 0, ox1 = ow;
                while (ox0 < ow && ox0 * s - p + kx < 0) ox0++;
                while (ox1 > ox0 && (ox1 - 1) * s - p + kx >= w) ox1--;
                const float *crow = col + ((size_t)(ci * k + ky) * k + kx) * ncol + j * ohw;
                for (int oy = 0; oy < oh; oy++) {
                    const int iy = oy * s - p + ky;
                    if (iy < 0 || iy >= h) continue;
                    float *row = plane + (size_t)iy * w;
                    const int off = kx - p;
                    const float *src = crow + (size_t)oy * ow;
                    if (s == 1) {
                        float *restrict d = row + off;
                        for (int ox = ox0; ox < ox1; ox++) d[ox] += src[ox];
                    } else {
                        for (int ox = ox0; ox < ox1; ox++) row[ox * s + off] += src[ox];
                    }
                }
            }
        }
    }
}

static void conv_forward(const struct cnn_layer *l, const struct cnn_fwd *f) {
    const int c = l->in.c, h = l->in.h, w = l->in.w, oc = l->out.c, k = l->ia[K];
    const int oh = l->out.h, ow = l->out.w, ohw = oh * ow, ckk = c * k * k;
    const size_t chw = (size_t)c * h * w;
    const float *wt = f->p, *bias = f->p + l->n_decay;
    for (int i = 0; i < f->n; i++) {
        float *y = f->y + (size_t)i * oc * ohw;
        im2col(f->x + i * chw, f->ws, 1, c, h, w, k, l->ia[STRIDE], l->ia[PAD], oh, ow);
        cnn_gemm(0, 0, oc, ohw, ckk, 1.0f, wt, ckk, f->ws, ohw, 0.0f, y, ohw);
        cnn_bias_act(l, y, bias, oc, ohw);
    }
}

static void conv_backward(const struct cnn_layer *l, const struct cnn_bwd *b) {
    const int c = l->in.c, h = l->in.h, w = l->in.w, oc = l->out.c, k = l->ia[K];
    const int oh = l->out.h, ow = l->out.w, ohw = oh * ow, ckk = c * k * k;
    const size_t chw = (size_t)c * h * w;
    float *dw = b->dp, *db = b->dp + l->n_decay, *col = b->ws;
    for (int i = 0; i < b->n; i++) {
        float *dy = b->dy + (size_t)i * oc * ohw; /* masked in place when act is fused */
        cnn_act_grad_sum(l, dy, b->y + (size_t)i * oc * ohw, db, oc, ohw);
        im2col(b->x + i * chw, col, 1, c, h, w, k, l->ia[STRIDE], l->ia[PAD], oh, ow);
        cnn_gemm(0, 1, oc, ckk, ohw, 1.0f, dy, ohw, col, ohw, 1.0f, dw, ckk);
        if (b->dx) {
            cnn_gemm(1, 0, ckk, ohw, oc, 1.0f, b->p, ckk, dy, ohw, 0.0f, col, ohw);
            col2im(col, b->dx + i * chw, 1, c, h, w, k, l->ia[STRIDE], l->ia[PAD], oh, ow);
        }
    }
}

static void conv_describe(const struct cnn_layer *l, char *buf, size_t len) {
    int n = snprintf(buf, len, "conv %d %d", l->ia[OC], l->ia[K]);
    if (n > 0 && (size_t)n < len && l->ia[STRIDE] != 1)
        n += snprintf(buf + n, len - (size_t)n, " stride=%d", l->ia[STRIDE]);
    if (n > 0 && (size_t)n < len && l->ia[PAD] != 0)
        snprintf(buf + n, len - (size_t)n, " pad=%d", l->ia[PAD]);
}

const struct cnn_layer_ops cnn_conv2d_ops = {
    .name = "conv",
    .parse = conv_parse,
    .init = conv_init,
    .init_params = conv_init_params,
    .forward = conv_forward,
    .backward = conv_backward,
    .ws_size = conv_ws_size,
    .describe = conv_describe,
    .fuses_act = 1,
};

/* ---- references ----------------------------------------------------------------------- */

void cnn_conv2d_forward_naive(const float *x, const float *w, const float *b, float *y, int n,
                              int c, int h, int wd, int oc, int k, int stride, int pad) {
    const int oh = (h + 2 * pad - k) / stride + 1, ow = (wd + 2 * pad - k) / stride + 1;
    for (int i = 0; i < n; i++)
        for (int o = 0; o < oc; o++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double s = b[o];
                    for (int ci = 0; ci < c; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                s += (double)w[((o * c + ci) * k + ky) * k + kx] *
                                     x[(((size_t)i * c + ci) * h + iy) * wd + ix];
                            }
                    y[(((size_t)i * oc + o) * oh + oy) * ow + ox] = (float)s;
                }
}

void cnn_conv2d_backward_naive(const float *x, const float *w, const float *dy, float *dx,
                               float *dw, float *db, int n, int c, int h, int wd, int oc, int k,
                               int stride, int pad) {
    const int oh = (h + 2 * pad - k) / stride + 1, ow = (wd + 2 * pad - k) / stride + 1;
    if (dx) memset(dx, 0, (size_t)n * c * h * wd * sizeof(float));
    for (int i = 0; i < n; i++)
        for (int o = 0; o < oc; o++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    const float g = dy[(((size_t)i * oc + o) * oh + oy) * ow + ox];
                    db[o] += g;
                    for (int ci = 0; ci < c; ci++)
                        for (int ky = 0; ky < k; ky++)
                            for (int kx = 0; kx < k; kx++) {
                                const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                const size_t xi = (((size_t)i * c + ci) * h + iy) * wd + ix;
                                const size_t wi = (size_t)((o * c + ci) * k + ky) * k + kx;
                                dw[wi] += g * x[xi];
                                if (dx) dx[xi] += g * w[wi];
                            }
                }
}
