/*
 * conv2d.c - 2-D convolution layer: "conv OC K [stride=S] [pad=P]".
 *
 * Cross-correlation without kernel flip, exactly PyTorch's Conv2d (kann flips; we do not).
 *   x (n,c,h,w) in; w (oc,c,k,k); b (oc); y (n,oc,oh,ow) out,
 *   y[i,o,oy,ox] = b[o] + sum_{ci,ky,kx} w[o,ci,ky,kx] * x[i,ci,oy*s-p+ky,ox*s-p+kx]
 *   with oh = (h + 2p - k)/s + 1 and zero padding.
 *
 * Fast path: im2col + sgemm, one image at a time, straight into NCHW (darknet's approach).
 * (Direct loops for the one-channel first layer were tried: without AVX2 in a portable build
 * they were 20% slower on LeNet-5 than im2col + OpenBLAS's AVX2 kernel.)
 *   col (c*k*k, oh*ow) = im2col(x[i])
 *   y[i] (oc, oh*ow)   = w (oc, c*k*k) @ col,  then + b[o] and the fused activation, if any
 * Backward, per image (col is rebuilt: it is still in cache when it is used, where a copy kept
 * from forward would be 0.6 MB per image to stream back from memory):
 *   dy[i]               *= act'(y[i])        when an activation is fused (in place)
 *   dw (oc, c*k*k)     += dy[i] @ col^T;  db[o] += sum dy[i, o, :]
 *   dcol (c*k*k, oh*ow) = w^T @ dy[i];     dx[i] = col2im(dcol)
 * 3x3 and 5x5 stride-1 layers with 8 or more input channels take Winograd instead
 * (winograd.c) for forward and, where the products are large enough, for dx and dw. Their
 * transformed kernels are prepared with the model (ops->prepare) for inference, and made per
 * call in training, where the params change every step. A batch norm right after the layer is
 * folded into its prepared params for inference (model.c; conv_use).
 * A team thread (ctx.c) runs this on its own images with one-threaded sgemm. One thread alone
 * with the whole batch lets cnn_gemm, im2col and col2im split each image across threads. A
 * single image at inference is split by output channels instead (conv_forward_part).
 * Parameters: w then b; weight decay applies to w only.
 * The _naive functions are direct loops in double, the reference for tests.
 */
#include <stdio.h>
#include <math.h>
#include <string.h>

#include "internal.h"


static int conv_parse(struct cnn_layer *l, struct cnn_spec_item *it) {
    int rc;
    l->cfg.conv.stride = 1;
    l->cfg.conv.pad = 0;
    if ((rc = cnn_spec_int(it, 0, "filters", 1, 65536, &l->cfg.conv.filters))) return rc;
    if ((rc = cnn_spec_int(it, 1, "kernel size", 1, 256, &l->cfg.conv.k))) return rc;
    if ((rc = cnn_spec_opt_int(it, "stride", 1, 256, &l->cfg.conv.stride))) return rc;
    return cnn_spec_opt_int(it, "pad", 0, 256, &l->cfg.conv.pad);
}

/* Winograd (winograd.c) for 3x3 and 5x5 stride-1 layers with at least this many input channels
 * (with fewer, its a*a products have too short a k to run well). */
#define WINO_MIN_C 8
static int use_winograd(const struct cnn_layer *l) {
    return cnn_wino_supports(l->cfg.conv.k) && l->cfg.conv.stride == 1 && l->in.c >= WINO_MIN_C;
}

/* Transformed kernels (a*a, oc, c): for a batch's m x m tiles (cnn_wino_m); for one image
 * split between threads, a second set where its tiles differ (cnn_wino_part_m: 4x4 against a
 * batch's 2x2 for 5x5 layers, 2x2 against 4x4 for 3x3 ones). And the weight gradient's sums,
 * (a*a, oc, c) with a = k + 1. */
static size_t wino_u_size(const struct cnn_layer *l) {
    const int k = l->cfg.conv.k;
    return cnn_wino_u_floats(l->out.c, l->in.c, k, cnn_wino_m(k));
}

static size_t wino_part_u_size(const struct cnn_layer *l) {
    const int k = l->cfg.conv.k, m = cnn_wino_part_m(k);
    return cnn_wino_m(k) == m ? 0 : cnn_wino_u_floats(l->out.c, l->in.c, k, m);
}

static size_t wino_du_size(const struct cnn_layer *l) {
    return cnn_wino_du_floats(l->out.c, l->in.c, l->cfg.conv.k);
}

static int conv_init(struct cnn_layer *l) {
    const int k = l->cfg.conv.k, s = l->cfg.conv.stride, p = l->cfg.conv.pad;
    if (k > l->in.h + 2 * p || k > l->in.w + 2 * p)
        return cnn_fail(CNN_ERR_SPEC, "kernel %d larger than its input %dx%d (pad %d)", k, l->in.h,
                        l->in.w, p);
    if (p >= k) return cnn_fail(CNN_ERR_SPEC, "padding %d must be smaller than kernel %d", p, k);
    l->out.c = l->cfg.conv.filters;
    l->out.h = (l->in.h + 2 * p - k) / s + 1;
    l->out.w = (l->in.w + 2 * p - k) / s + 1;
    const size_t ckk = (size_t)l->in.c * k * k;
    l->n_decay = (size_t)l->out.c * ckk;
    l->n_params = l->n_decay + (size_t)l->out.c;
    l->flops = 2.0 * (double)ckk * l->out.c * l->out.h * l->out.w;
    l->n_prep = use_winograd(l) ? wino_u_size(l) + wino_part_u_size(l) : 0;
    return CNN_OK;
}

/* He/Kaiming normal, fan_in = c*k*k, gain sqrt(2) for relu. */
static void conv_init_params(const struct cnn_layer *l, float *p, float *s,
                             struct cnn_rng *rng) {
    (void)s;
    const size_t ckk = (size_t)l->in.c * l->cfg.conv.k * l->cfg.conv.k;
    const float std = sqrtf(2.0f / (float)ckk);
    for (size_t i = 0; i < l->n_decay; i++) p[i] = std * cnn_rng_normal(rng);
    memset(p + l->n_decay, 0, (size_t)l->out.c * sizeof(float));
}

static size_t wino_ws_size(const struct cnn_layer *l) {
    return cnn_wino_ws_size(l->in.c, l->in.h, l->in.w, l->out.c, l->cfg.conv.k, l->cfg.conv.pad);
}

/* The input gradient of a k x k stride-1 layer is itself a k x k convolution: of dy (oc, oh, ow)
 * with the kernels turned 180 degrees and input/output channels swapped, padded by k - 1 - p
 * (p < k, so never negative). */
static struct cnn_layer dx_layer(const struct cnn_layer *l) {
    struct cnn_layer t = *l;
    t.in = l->out;
    t.out = l->in;
    t.cfg.conv.filters = l->in.c;
    t.cfg.conv.pad = l->cfg.conv.k - 1 - l->cfg.conv.pad;
    return t;
}
/* Only where each of the a*a products has enough multiply-adds (c * oc * tiles). For 3x3,
 * 2^17: with the fast preset's 16 * 32 * 49, training measured 20% slower than with im2col,
 * with the best preset's 64 * 64 * 49 and pytorch/examples' 32 * 64 * 169 faster. For 5x5,
 * which saves more, 2^15: the default preset's 32 * 64 * 49 trained 6% faster by it (2,137-2,184
 * against 2,287-2,311 images/s on 2 threads, 2026-12-01). */
static int use_winograd_dx(const struct cnn_layer *l) {
    if (!cnn_wino_supports(l->cfg.conv.k) || l->cfg.conv.stride != 1) return 0;
    const long tiles = (long)((l->in.h + 1) / 2) * ((l->in.w + 1) / 2);
    const long least = l->cfg.conv.k == 5 ? 1L << 15 : 1L << 17;
    const struct cnn_layer t = dx_layer(l);
    return use_winograd(&t) && (long)l->in.c * l->out.c * tiles >= least;
}

/* The weight gradient by Winograd (cnn_wino_dw) where the forward may take it, with at least
 * 8 output channels and 25 tiles. One thread, backward per image, 2026-12-01: pytorch/examples'
 * 32 -> 64 at 26x26 368-445 us against 450-470 with im2col; the default preset's 5x5 32 -> 64
 * at 14x14 302-390 against 474-477; the fast preset's 16 -> 32 at 14x14 47-58 against 58-59.
 * At 7x7 (16 tiles, a quarter of their outputs past the edge) it was 5-10% slower. */
static int use_winograd_dw(const struct cnn_layer *l) {
    const long tiles = (long)((l->out.h + 1) / 2) * ((l->out.w + 1) / 2);
    return use_winograd(l) && l->out.c >= WINO_MIN_C && tiles >= 25;
}

/* Winograd only when each thread has whole images to itself (a team, or one thread). When one
 * image is shared by the threads (latency), im2col's single large product splits better than
 * a*a small ones. */
static int owns_images(const struct cnn_team *team) {
    return team || cnn_threads_now() == 1;
}

static size_t max2(size_t a, size_t b) {
    return a > b ? a : b;
}

/* One image's im2col matrix (reused for dcol in backward), then its padded copy; or, if
 * larger, what the Winograd forward needs. Backward: the dx kernels and the dw sums in the
 * transformed domain where Winograd makes them, then scratch for each step in turn. */
static size_t conv_ws_size(const struct cnn_layer *l, int n) {
    (void)n;
    const size_t p = (size_t)l->cfg.conv.pad, k = (size_t)l->cfg.conv.k;
    const size_t im = (size_t)l->in.c * k * k * l->out.h * l->out.w +
                      (p ? (size_t)l->in.c * (l->in.h + 2 * p) * (l->in.w + 2 * p) : 0);
    const size_t fwd = max2(im, use_winograd(l) ? wino_u_size(l) + wino_ws_size(l) : 0);
    size_t kept = 0, scratch = 0;
    if (use_winograd_dx(l)) {
        const struct cnn_layer t = dx_layer(l);
        kept += wino_u_size(l);
        scratch = wino_ws_size(&t);
    }
    if (use_winograd_dw(l)) {
        kept += wino_du_size(l);
        scratch = max2(scratch, cnn_wino_dw_ws_size(l->in.c, l->in.h, l->in.w, l->out.c,
                                                    l->cfg.conv.k, l->cfg.conv.pad));
    }
    scratch = max2(scratch, im); /* im2col for whichever of dw and dx does not take Winograd */
    return max2(fwd, kept + scratch);
}

/* x (c,h,w) as the kernels below read it: x itself, or a copy in pad (c, hp, wp) at (p, p)
 * with zeros around it, so that no copy loop has bounds to test (MNIST rows are 2 to 28
 * floats: the tests would cost more than the copies). im2col's plane is (h+2p, w+2p);
 * Winograd's may be a row and a column larger, to hold whole tiles. */
const float *cnn_pad_planes(const float *restrict x, float *restrict pad, int c, int h, int w,
                            int p, int hp, int wp) {
    if (p == 0 && hp == h && wp == w) return x;
    for (int ci = 0; ci < c; ci++) {
        float *pl = pad + (size_t)ci * hp * wp;
        for (int y = 0; y < hp * wp; y++) pl[y] = 0.0f;
        for (int y = 0; y < h; y++) {
            const float *restrict in = x + ((size_t)ci * h + y) * w;
            float *restrict out = pl + (size_t)(y + p) * wp + p;
            for (int q = 0; q < w; q++) out[q] = in[q];
        }
    }
    return pad;
}

/* x (c,h,w) -> col (c*k*k, oh*ow), one image. Row r = (ci,ky,kx); column oy*ow + ox. */
static void im2col(const float *restrict x, float *restrict col, float *restrict pad, int c,
                   int h, int w, int k, int s, int p, int oh, int ow) {
    const int hp = h + 2 * p, wp = w + 2 * p;
    const float *src = cnn_pad_planes(x, pad, c, h, w, p, hp, wp);
    const size_t ohw = (size_t)oh * ow;
    const int rows = c * k * k;
#pragma omp parallel for schedule(static) if ((size_t)rows * ohw >= CNN_OMP_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        const int ci = r / (k * k), ky = (r / k) % k, kx = r % k;
        const float *plane = src + (size_t)ci * hp * wp + (size_t)ky * wp + kx;
        float *dst = col + (size_t)r * ohw;
        for (int oy = 0; oy < oh; oy++) {
            const float *restrict in = plane + (size_t)oy * s * wp;
            float *restrict out = dst + (size_t)oy * ow;
            if (s == 1)
                for (int ox = 0; ox < ow; ox++) out[ox] = in[ox];
            else
                for (int ox = 0; ox < ow; ox++) out[ox] = in[ox * s];
        }
    }
}

/* col (c*k*k, oh*ow) -> dx (c,h,w), assigned: the transpose of im2col, summing overlaps.
 * With padding the sums go to pad (c, h+2p, w+2p) and its inside is copied to dx. Parallel
 * over channels, so no two threads write the same element. */
static void col2im(const float *restrict col, float *restrict dx, float *restrict pad, int c,
                   int h, int w, int k, int s, int p, int oh, int ow) {
    const int hp = h + 2 * p, wp = w + 2 * p;
    const size_t ohw = (size_t)oh * ow;
    float *dst = p > 0 ? pad : dx;
#pragma omp parallel for schedule(static) if ((size_t)c * k * k * ohw >= CNN_OMP_MIN_WORK)
    for (int ci = 0; ci < c; ci++) {
        float *pl = dst + (size_t)ci * hp * wp;
        for (int y = 0; y < hp * wp; y++) pl[y] = 0.0f;
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const float *src = col + ((size_t)(ci * k + ky) * k + kx) * ohw;
                float *base = pl + (size_t)ky * wp + kx;
                for (int oy = 0; oy < oh; oy++) {
                    float *restrict out = base + (size_t)oy * s * wp;
                    const float *restrict in = src + (size_t)oy * ow;
                    if (s == 1)
                        for (int ox = 0; ox < ow; ox++) out[ox] += in[ox];
                    else
                        for (int ox = 0; ox < ow; ox++) out[ox * s] += in[ox];
                }
            }
        if (p > 0)
            for (int y = 0; y < h; y++) {
                const float *restrict in = pl + (size_t)(y + p) * wp + p;
                float *restrict out = dx + ((size_t)ci * h + y) * w;
                for (int q = 0; q < w; q++) out[q] = in[q];
            }
    }
}

/* What a forward computes with: the layer's params, its fused activation and, prepared with
 * the model, the Winograd kernels for a batch (u) and for one split image (u_part; NULL where
 * there are none). On a model whose batch norm after this layer is folded in (l->folds), the
 * prepared slice holds the folded params first, the kernels made from them after, and the
 * batch norm's activation is applied here. */
struct conv_use {
    const float *w, *b, *u, *u_part;
    int act;
    float slope;
};

static struct conv_use conv_use(const struct cnn_layer *l, const struct cnn_fwd *f) {
    struct conv_use cu = {f->p, f->p + l->n_decay, f->prep, NULL, l->act, l->act_slope};
    if (l->folds && f->prep)
        cu = (struct conv_use){
            f->prep, f->prep + l->n_decay, use_winograd(l) ? f->prep + l->n_params : NULL,
            NULL,    l->fold_act,          l->fold_slope};
    if (cu.u) cu.u_part = wino_part_u_size(l) ? cu.u + wino_u_size(l) : cu.u;
    return cu;
}

static void conv_forward(const struct cnn_layer *l, const struct cnn_fwd *f) {
    const int c = l->in.c, h = l->in.h, w = l->in.w, oc = l->out.c, k = l->cfg.conv.k;
    const int oh = l->out.h, ow = l->out.w, ohw = oh * ow, ckk = c * k * k;
    const size_t chw = (size_t)c * h * w;
    const struct conv_use cu = conv_use(l, f);
    float *pad = f->ws + (size_t)ckk * ohw;
    const int s = l->cfg.conv.stride, p = l->cfg.conv.pad;
    const int wino = use_winograd(l) && (owns_images(f->team) || f->prep);
    /* the transformed kernels: prepared with the model, or made here for this call */
    const float *u = cu.u;
    float *wws = f->ws;
    if (wino && !u) {
        cnn_wino_weights(cu.w, f->ws, oc, c, k, cnn_wino_m(k), 0);
        u = f->ws;
        wws = f->ws + wino_u_size(l);
    }
    if (wino) cnn_wino_conv(f->x, f->n, u, f->y, wws, c, h, w, oc, k, p);
    for (int i = 0; i < f->n; i++) {
        float *y = f->y + (size_t)i * oc * ohw;
        if (!wino) {
            im2col(f->x + i * chw, f->ws, pad, c, h, w, k, s, p, oh, ow);
            cnn_gemm(0, 0, oc, ohw, ckk, 1.0f, cu.w, ckk, f->ws, ohw, 0.0f, y, ohw);
        }
        cnn_bias_act(cu.act, cu.slope, y, ohw, cu.b, oc, ohw);
    }
}

/* Output channels [lo, hi) of one image: the whole input's im2col or Winograd transform, then
 * only those channels' kernels (ops->forward_part). */
static void conv_forward_part(const struct cnn_layer *l, const struct cnn_fwd *f, int lo, int hi) {
    const int c = l->in.c, h = l->in.h, w = l->in.w, k = l->cfg.conv.k, ckk = c * k * k;
    const int oh = l->out.h, ow = l->out.w, ohw = oh * ow;
    const struct conv_use cu = conv_use(l, f);
    float *y = f->y + (size_t)lo * ohw;
    if (use_winograd(l) && cu.u_part) {
        cnn_wino_conv_part(f->x, cu.u_part, f->y, f->ws, c, h, w, l->out.c, k, l->cfg.conv.pad, lo,
                           hi);
    } else {
        im2col(f->x, f->ws, f->ws + (size_t)ckk * ohw, c, h, w, k, l->cfg.conv.stride,
               l->cfg.conv.pad, oh, ow);
        cnn_gemm(0, 0, hi - lo, ohw, ckk, 1.0f, cu.w + (size_t)lo * ckk, ckk, f->ws, ohw, 0.0f, y,
                 ohw);
    }
    cnn_bias_act(cu.act, cu.slope, y, ohw, cu.b + lo, hi - lo, ohw);
}

static void conv_backward(const struct cnn_layer *l, const struct cnn_bwd *b) {
    const int c = l->in.c, h = l->in.h, w = l->in.w, oc = l->out.c, k = l->cfg.conv.k;
    const int oh = l->out.h, ow = l->out.w, ohw = oh * ow, ckk = c * k * k;
    const size_t chw = (size_t)c * h * w;
    const int s = l->cfg.conv.stride, p = l->cfg.conv.pad;
    /* dw and dx by Winograd under the same rule as forward; dx's kernels and dw's sums kept
     * at the start of ws */
    const int own = owns_images(b->team);
    const int wdx = b->dx && use_winograd_dx(l) && own, wdw = use_winograd_dw(l) && own;
    const struct cnn_layer dl = dx_layer(l);
    float *u = b->ws, *du = b->ws, *rest = b->ws;
    if (wdx) {
        cnn_wino_weights(b->p, u, oc, c, k, cnn_wino_m(k), 1);
        du = rest = u + wino_u_size(l);
    }
    if (wdw) {
        memset(du, 0, wino_du_size(l) * sizeof(float));
        rest = du + wino_du_size(l);
    }
    float *dw = b->dp, *db = b->dp + l->n_decay, *col = rest, *pad = col + (size_t)ckk * ohw;
    for (int i = 0; i < b->n; i++) {
        float *dy = b->dy + (size_t)i * oc * ohw; /* masked in place when act is fused */
        cnn_act_grad_sum(l, dy, b->y + (size_t)i * oc * ohw, db, oc, ohw);
        if (!wdw) {
            im2col(b->x + i * chw, col, pad, c, h, w, k, s, p, oh, ow);
            cnn_gemm(0, 1, oc, ckk, ohw, 1.0f, dy, ohw, col, ohw, 1.0f, dw, ckk);
        }
        if (b->dx && !wdx) {
            cnn_gemm(1, 0, ckk, ohw, oc, 1.0f, b->p, ckk, dy, ohw, 0.0f, col, ohw);
            col2im(col, b->dx + i * chw, pad, c, h, w, k, s, p, oh, ow);
        }
    }
    /* over the whole batch, its dy all masked by now; rest is free again */
    if (wdx) cnn_wino_conv(b->dy, b->n, u, b->dx, rest, oc, oh, ow, c, k, dl.cfg.conv.pad);
    if (wdw) {
        cnn_wino_dw(b->x, b->dy, du, rest, b->n, c, h, w, oc, k, p);
        cnn_wino_dw_finish(du, dw, oc, c, k);
    }
}

static void conv_prepare(const struct cnn_layer *l, const float *p, float *prep) {
    const int k = l->cfg.conv.k;
    cnn_wino_weights(p, prep, l->out.c, l->in.c, k, cnn_wino_m(k), 0);
    if (wino_part_u_size(l))
        cnn_wino_weights(p, prep + wino_u_size(l), l->out.c, l->in.c, k, cnn_wino_part_m(k), 0);
}

static void conv_describe(const struct cnn_layer *l, char *buf, size_t len) {
    int n = snprintf(buf, len, "conv %d %d", l->cfg.conv.filters, l->cfg.conv.k);
    if (n > 0 && (size_t)n < len && l->cfg.conv.stride != 1)
        n += snprintf(buf + n, len - (size_t)n, " stride=%d", l->cfg.conv.stride);
    if (n > 0 && (size_t)n < len && l->cfg.conv.pad != 0)
        snprintf(buf + n, len - (size_t)n, " pad=%d", l->cfg.conv.pad);
}

static void conv_export(const struct cnn_layer *l, const float *p, const float *s,
                        struct cnn_export_op *op) {
    (void)s;
    op->kind = CNN_EXPORT_CONV;
    op->k = l->cfg.conv.k;
    op->stride = l->cfg.conv.stride;
    op->pad = l->cfg.conv.pad;
    op->w = p;
    op->b = p + l->n_decay;
}

const struct cnn_layer_ops cnn_conv2d_ops = {
    .name = "conv",
    .parse = conv_parse,
    .init = conv_init,
    .init_params = conv_init_params,
    .forward = conv_forward,
    .backward = conv_backward,
    .forward_part = conv_forward_part,
    .prepare = conv_prepare,
    .ws_size = conv_ws_size,
    .describe = conv_describe,
    .export_op = conv_export,
    .absorbs_affine = 1,
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
