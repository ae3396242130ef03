/*
 * conv2d.c - 2-D convolution layer: "conv OC K [stride=S] [pad=P]".
 *
 * Cross-correlation without kernel flip, exactly PyTorch's Conv2d (kann flips; we do not).
 *   x (n,c,h,w) in; w (oc,c,k,k); b (oc); y (n,oc,oh,ow) out,
 *   y[i,o,oy,ox] = b[o] + sum_{ci,ky,kx} w[o,ci,ky,kx] * x[i,ci,oy*s-p+ky,ox*s-p+kx]
 *   with oh = (h + 2p - k)/s + 1 and zero padding.
 *
 * Fast path: batched im2col + one sgemm per chunk of images (darknet's approach, but over
 * many images at once so the product is large enough to keep OpenBLAS busy):
 *   col (c*k*k, m*oh*ow) = im2col(x[i0 .. i0+m])       m images per chunk, chunk fits ~8 MB
 *   t   (oc, m*oh*ow)    = w (oc, c*k*k) @ col
 *   y[i0+j, o, :]        = t[o, j*oh*ow : (j+1)*oh*ow] + b[o]
 * Backward, per chunk (col comes from the training cache when the net was reserved for
 * training, else it is recomputed; dcol then overwrites it):
 *   dt  (oc, m*oh*ow)    = dy gathered to channel-major
 *   dw (oc, c*k*k)      += dt @ col^T;  db[o] += sum dt[o, :]
 *   dcol                 = w^T @ dt;    dx = col2im(dcol)
 * Parameters: w then b; weight decay applies to w only.
 * Training cache (tcache): the im2col columns of every chunk, c*k*k*oh*ow floats per image,
 * so backward does not redo im2col.
 * The _naive functions are direct loops in double, the reference for tests.
 */
#include <stdio.h>
#include <math.h>
#include <string.h>

#include "internal.h"

enum { OC, K, STRIDE, PAD };
#define CONV_CHUNK_FLOATS (1u << 21) /* col buffer target: 8 MB */

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
    l->tcache_item = ckk * (size_t)l->out.h * l->out.w;
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

/* Images per chunk so that the col buffer stays near CONV_CHUNK_FLOATS. */
static int conv_chunk(const struct cnn_layer *l, int n) {
    const size_t per = (size_t)l->in.c * l->ia[K] * l->ia[K] * l->out.h * l->out.w;
    size_t m = CONV_CHUNK_FLOATS / (per ? per : 1);
    if (m < 1) m = 1;
    return m < (size_t)n ? (int)m : n;
}

static size_t conv_ws_size(const struct cnn_layer *l, int n) {
    const size_t ohw = (size_t)l->out.h * l->out.w;
    const size_t ckk = (size_t)l->in.c * l->ia[K] * l->ia[K];
    return (size_t)conv_chunk(l, n) * ohw * (ckk + (size_t)l->out.c);
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
                    for (int ox = ox0; ox < ox1; ox++) row[ox * s + off] += src[ox];
                }
            }
        }
    }
}

static void conv_forward(const struct cnn_layer *l, const struct cnn_fwd *f) {
    const int c = l->in.c, h = l->in.h, w = l->in.w, oc = l->out.c, k = l->ia[K];
    const int oh = l->out.h, ow = l->out.w, ckk = c * k * k;
    const size_t ohw = (size_t)oh * ow, chw = (size_t)c * h * w;
    const int chunk = conv_chunk(l, f->n);
    float *t = f->ws + (size_t)chunk * ohw * ckk;
    const float *wt = f->p, *bias = f->p + l->n_decay;
    for (int i0 = 0; i0 < f->n; i0 += chunk) {
        const int m = f->n - i0 < chunk ? f->n - i0 : chunk;
        const int ncol = m * (int)ohw;
        float *col = f->tcache ? f->tcache + (size_t)i0 * ohw * ckk : f->ws;
        im2col(f->x + i0 * chw, col, m, c, h, w, k, l->ia[STRIDE], l->ia[PAD], oh, ow);
        cnn_gemm(0, 0, oc, ncol, ckk, 1.0f, wt, ckk, col, ncol, 0.0f, t, ncol);
#pragma omp parallel for schedule(static) if ((size_t)m * oc * ohw >= CNN_OMP_MIN_WORK)
        for (int jo = 0; jo < m * oc; jo++) {
            const int j = jo / oc, o = jo % oc;
            float *dst = f->y + ((size_t)(i0 + j) * oc + o) * ohw;
            const float *src = t + (size_t)o * ncol + (size_t)j * ohw;
            const float bo = bias[o];
            for (size_t q = 0; q < ohw; q++) dst[q] = src[q] + bo;
        }
    }
}

static void conv_backward(const struct cnn_layer *l, const struct cnn_bwd *b) {
    const int c = l->in.c, h = l->in.h, w = l->in.w, oc = l->out.c, k = l->ia[K];
    const int oh = l->out.h, ow = l->out.w, ckk = c * k * k;
    const size_t ohw = (size_t)oh * ow, chw = (size_t)c * h * w;
    const int chunk = conv_chunk(l, b->n);
    float *dt = b->ws + (size_t)chunk * ohw * ckk;
    float *dw = b->dp, *db = b->dp + l->n_decay;
    for (int i0 = 0; i0 < b->n; i0 += chunk) {
        const int m = b->n - i0 < chunk ? b->n - i0 : chunk;
        const int ncol = m * (int)ohw;
        float *col = b->tcache ? b->tcache + (size_t)i0 * ohw * ckk : b->ws;
#pragma omp parallel for schedule(static) if ((size_t)m * oc * ohw >= CNN_OMP_MIN_WORK)
        for (int o = 0; o < oc; o++) {
            float sum = 0.0f;
            for (int j = 0; j < m; j++) {
                const float *src = b->dy + ((size_t)(i0 + j) * oc + o) * ohw;
                float *dst = dt + (size_t)o * ncol + (size_t)j * ohw;
                for (size_t q = 0; q < ohw; q++) {
                    dst[q] = src[q];
                    sum += src[q];
                }
            }
            db[o] += sum;
        }
        if (!b->tcache)
            im2col(b->x + i0 * chw, col, m, c, h, w, k, l->ia[STRIDE], l->ia[PAD], oh, ow);
        cnn_gemm(0, 1, oc, ckk, ncol, 1.0f, dt, ncol, col, ncol, 1.0f, dw, ckk);
        if (b->dx) {
            cnn_gemm(1, 0, ckk, ncol, oc, 1.0f, b->p, ckk, dt, ncol, 0.0f, col, ncol);
            col2im(col, b->dx + i0 * chw, m, c, h, w, k, l->ia[STRIDE], l->ia[PAD], oh, ow);
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
