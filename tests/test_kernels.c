/*
 * test_kernels.c - every optimised path against its _naive reference: the plain version is the
 * specification, the fast one must agree with it.
 *
 *   cnn_gemm (libxsmm, OpenBLAS) vs cnn_gemm_naive             all four transpose pairs
 *   conv forward (im2col+gemm)  vs cnn_conv2d_forward_naive    through cnn_conv2d_ops, with a
 *   conv backward (dx, dw, db)  vs cnn_conv2d_backward_naive   workspace of exactly ws_size
 *   conv forward in channel parts vs cnn_conv2d_forward_naive  one image split between threads
 *   cnn_predict on a batch      vs the same images one at a time (eval mode is per image)
 *   fused activations, teams    vs one thread, every layer on its own (a training step)
 *
 * Thread counts: a context has its own (cnn_ctx_new's `threads`); the layer kernels called
 * directly here run on whatever cnn_threads_enter set for the calling thread.
 *
 * Tolerance: float sums run in a different order from the references (which sum in double),
 * so each element may differ by 1e-5 of its magnitude, the same formula on absolute values:
 * sum |a||b| for a product, sum |w||x| + |b| for a conv output. The magnitude is computed by
 * the reference itself on |inputs|. Padding of strided matrices and the outputs are prefilled
 * with NaN where the contract says they are not read, so a stray read or a missing write
 * fails rather than passing by luck.
 *
 * Instruction sets: libxsmm makes the small products with the best the processor has;
 * tests/test_gemm_targets.sh runs this program again with LIBXSMM_TARGET set to AVX2, SSE and
 * "generic" (no libxsmm: OpenBLAS makes every product), and test_gemm prints which it ran. The
 * Winograd transforms take AVX2 loops where the processor has it: test_transform_targets checks
 * that they give the generic loops' bits, and the convolution tests run a second time with the
 * generic loops ("generic transforms").
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libxsmm.h>

#include "../src/internal.h"

#define REL_TOL 1e-5

/* ---- helpers ------------------------------------------------------------------------------ */

static float *falloc(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

static void fill_normal(float *v, size_t n, struct cnn_rng *rng) {
    for (size_t i = 0; i < n; i++) v[i] = cnn_rng_normal(rng);
}

static void fill_value(float *v, size_t n, float x) {
    for (size_t i = 0; i < n; i++) v[i] = x;
}

static float *abs_copy(const float *v, size_t n) {
    float *a = falloc(n);
    for (size_t i = 0; i < n; i++) a[i] = fabsf(v[i]);
    return a;
}

/* Largest difference seen, absolute and as a fraction of the element's magnitude. */
struct cmp {
    double max_abs, max_rel;
    size_t n, bad;
    size_t worst_i;
    double worst_got, worst_ref, worst_mag;
};

static void compare(struct cmp *c, const float *got, const float *ref, const float *mag, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - (double)ref[i]), m = mag[i];
        const int ok = d <= REL_TOL * m; /* false for NaN */
        const double rel = d != d ? INFINITY : m > 0 ? d / m : d > 0 ? INFINITY : 0.0;
        c->n++;
        c->bad += !ok;
        if (d > c->max_abs) c->max_abs = d;
        if (rel > c->max_rel || (!ok && c->bad == 1)) {
            c->max_rel = rel > c->max_rel ? rel : c->max_rel;
            c->worst_i = i, c->worst_got = got[i], c->worst_ref = ref[i], c->worst_mag = m;
        }
    }
}

static void check_cmp(const struct cmp *c, const char *what) {
    if (c->bad)
        fail_msg("%s: %zu of %zu elements off; worst [%zu] got %.9g want %.9g (magnitude %.3g)",
                 what, c->bad, c->n, c->worst_i, c->worst_got, c->worst_ref, c->worst_mag);
}

/* ---- gemm --------------------------------------------------------------------------------- */

struct gemm_stats {
    int cases;
    struct cmp c;
};

/*
 * One product. pad adds columns to every stored matrix (lda > its width); the padding is
 * NaN for A and B (never read) and a sentinel for C (never written).
 */
static void gemm_case(struct gemm_stats *st, int ta, int tb, int m, int n, int k, float alpha,
                      float beta, int pad, int nan_c, struct cnn_rng *rng) {
    const int ar = ta ? k : m, ac = ta ? m : k; /* A as stored: ar rows of ac */
    const int br = tb ? n : k, bc = tb ? k : n;
    const int lda = ac + pad, ldb = bc + pad, ldc = n + pad;
    const size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)m * ldc;
    float *a = falloc(na), *b = falloc(nb), *c0 = falloc(nc), *c1 = falloc(nc), *c2 = falloc(nc);
    fill_value(a, na, NAN);
    fill_value(b, nb, NAN);
    for (int i = 0; i < ar; i++) fill_normal(a + (size_t)i * lda, (size_t)ac, rng);
    for (int i = 0; i < br; i++) fill_normal(b + (size_t)i * ldb, (size_t)bc, rng);
    const float sentinel = 12345.0f;
    fill_value(c0, nc, sentinel);
    for (int i = 0; i < m; i++) {
        float *row = c0 + (size_t)i * ldc;
        if (nan_c)
            fill_value(row, (size_t)n, NAN); /* beta = 0: C must not be read */
        else
            fill_normal(row, (size_t)n, rng);
    }
    memcpy(c1, c0, nc * sizeof(float));
    memcpy(c2, c0, nc * sizeof(float));
    cnn_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
    cnn_gemm_naive(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);
    /* magnitude: the same product on absolute values */
    float *aa = abs_copy(a, na), *ab = abs_copy(b, nb), *mag = abs_copy(c0, nc);
    cnn_gemm_naive(ta, tb, m, n, k, fabsf(alpha), aa, lda, ab, ldb, fabsf(beta), mag, ldc);
    struct cmp c = {0};
    for (int i = 0; i < m; i++) {
        const size_t o = (size_t)i * ldc;
        compare(&c, c1 + o, c2 + o, mag + o, (size_t)n);
        for (int j = n; j < ldc; j++)
            if (c1[o + j] != sentinel) fail_msg("cnn_gemm wrote C padding at (%d,%d)", i, j);
    }
    char what[160];
    snprintf(what, sizeof what, "gemm ta=%d tb=%d m=%d n=%d k=%d alpha=%g beta=%g pad=%d%s", ta, tb,
             m, n, k, (double)alpha, (double)beta, pad, nan_c ? " C=NaN" : "");
    free(a), free(b), free(c0), free(c1), free(c2), free(aa), free(ab), free(mag);
    check_cmp(&c, what);
    st->cases++;
    st->c.n += c.n;
    if (c.max_abs > st->c.max_abs) st->c.max_abs = c.max_abs;
    if (c.max_rel > st->c.max_rel) st->c.max_rel = c.max_rel;
}

static void test_gemm(void **state) {
    (void)state;
    /* m = 1 and n = 1 take sgemv; libxsmm takes alpha 1, beta 0 or 1, B not transposed, up to
     * 2^21 multiply-adds (Winograd's shapes: 16 x 147 x 32, 32 x 49 x 32), OpenBLAS the rest;
     * from 2^16 multiply-adds cnn_gemm cuts C into one block per thread, by rows when m > n
     * (the last four: by columns, rows, rows, rows of one column; 300 x 130 x 64 is above
     * libxsmm's bound, so its blocks, below it, still go to OpenBLAS) */
    static const int sizes[][3] = {{1, 1, 1},    {7, 5, 3},     {64, 33, 17},   {3, 70, 129},
                                   {33, 1, 64},  {1, 70, 129},  {1, 300, 1000}, {16, 147, 32},
                                   {32, 49, 32}, {40, 300, 32}, {300, 40, 32},  {300, 130, 64},
                                   {600, 1, 500}};
    static const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.75f, -1.5f}, {-2.0f, 0.5f}};
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 7);
    struct gemm_stats st = {0};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
                for (size_t q = 0; q < sizeof ab / sizeof ab[0]; q++)
                    for (int pad = 0; pad <= 3; pad += 3) {
                        const int m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
                        gemm_case(&st, ta, tb, m, n, k, ab[q][0], ab[q][1], pad, 0, &rng);
                        if (ab[q][1] == 0.0f)
                            gemm_case(&st, ta, tb, m, n, k, ab[q][0], 0.0f, pad, 1, &rng);
                    }
    printf("gemm  %d cases, %zu elements: max |diff| %.2e, max diff/magnitude %.2e"
           " (libxsmm target %s)\n",
           st.cases, st.c.n, st.c.max_abs, st.c.max_rel, libxsmm_get_target_arch());
}

/* ---- conv --------------------------------------------------------------------------------- */

struct conv_cfg {
    int n, c, h, w, oc, k, stride, pad;
};

/* The conv layer exactly as a model builds it: parse and init by cnn_model_new. */
static struct cnn_layer conv_layer(const struct conv_cfg *g) {
    char spec[96];
    snprintf(spec, sizeof spec, "conv %d %d stride=%d pad=%d, dense 2", g->oc, g->k, g->stride,
             g->pad);
    struct cnn_model *m = NULL;
    if (cnn_model_new(spec, g->c, g->h, g->w, &m) != CNN_OK)
        fail_msg("cnn_model_new(\"%s\", %d,%d,%d): %s", spec, g->c, g->h, g->w, cnn_errmsg());
    const struct cnn_layer l = m->layers[0];
    cnn_model_free(m);
    return l;
}

struct conv_stats {
    int cases;
    struct cmp y, dx, dw, db;
};

static void merge(struct cmp *into, const struct cmp *c) {
    into->n += c->n;
    if (c->max_abs > into->max_abs) into->max_abs = c->max_abs;
    if (c->max_rel > into->max_rel) into->max_rel = c->max_rel;
}

/* Forward and backward of one configuration against the references. */
static void conv_case(struct conv_stats *st, const struct conv_cfg *g, struct cnn_rng *rng) {
    const struct cnn_layer l = conv_layer(g);
    const int oh = l.out.h, ow = l.out.w;
    assert_int_equal(oh, (g->h + 2 * g->pad - g->k) / g->stride + 1);
    assert_int_equal(ow, (g->w + 2 * g->pad - g->k) / g->stride + 1);
    const size_t nx = (size_t)g->n * g->c * g->h * g->w, ny = (size_t)g->n * g->oc * oh * ow;
    const size_t nw = (size_t)g->oc * g->c * g->k * g->k, np = l.n_params;
    assert_int_equal(np, nw + (size_t)g->oc);
    const size_t nws = l.ops->ws_size(&l, g->n);
    float *x = falloc(nx), *p = falloc(np), *y = falloc(ny), *yr = falloc(ny);
    float *dy = falloc(ny), *dx = falloc(nx), *dxr = falloc(nx);
    float *dp0 = falloc(np), *dp = falloc(np), *dpr = falloc(np), *ws = falloc(nws);
    fill_normal(x, nx, rng);
    fill_normal(p, np, rng);
    fill_normal(dy, ny, rng);
    fill_normal(dp0, np, rng); /* backward accumulates into whatever is there */
    memcpy(dp, dp0, np * sizeof(float));
    memcpy(dpr, dp0, np * sizeof(float));
    fill_value(y, ny, NAN);   /* forward assigns every output */
    fill_value(dx, nx, NAN);  /* backward assigns every input gradient */
    fill_value(ws, nws, NAN); /* scratch carries nothing in */

    const struct cnn_fwd f = {.n = g->n, .train = 1, .x = x, .y = y, .p = p, .ws = ws};
    l.ops->forward(&l, &f);
    cnn_conv2d_forward_naive(x, p, p + nw, yr, g->n, g->c, g->h, g->w, g->oc, g->k, g->stride,
                             g->pad);
    fill_value(ws, nws, NAN);
    const struct cnn_bwd b = {
        .n = g->n, .x = x, .y = y, .dy = dy, .dx = dx, .p = p, .dp = dp, .ws = ws};
    l.ops->backward(&l, &b);
    cnn_conv2d_backward_naive(x, p, dy, dxr, dpr, dpr + nw, g->n, g->c, g->h, g->w, g->oc, g->k,
                              g->stride, g->pad);

    /* magnitudes: the references on absolute values (|dp0| + sum |dy||x| for dw, db) */
    float *ax = abs_copy(x, nx), *ap = abs_copy(p, np), *ady = abs_copy(dy, ny);
    float *my = falloc(ny), *mdx = falloc(nx), *mdp = abs_copy(dp0, np);
    cnn_conv2d_forward_naive(ax, ap, ap + nw, my, g->n, g->c, g->h, g->w, g->oc, g->k, g->stride,
                             g->pad);
    cnn_conv2d_backward_naive(ax, ap, ady, mdx, mdp, mdp + nw, g->n, g->c, g->h, g->w, g->oc, g->k,
                              g->stride, g->pad);
    struct cmp cy = {0}, cdx = {0}, cdw = {0}, cdb = {0};
    compare(&cy, y, yr, my, ny);
    compare(&cdx, dx, dxr, mdx, nx);
    compare(&cdw, dp, dpr, mdp, nw);
    compare(&cdb, dp + nw, dpr + nw, mdp + nw, (size_t)g->oc);
    free(ax), free(ap), free(ady), free(my), free(mdx), free(mdp);
    free(x), free(p), free(y), free(yr), free(dy), free(dx), free(dxr);
    free(dp0), free(dp), free(dpr), free(ws);

    char what[160];
    snprintf(what, sizeof what, "conv n=%d c=%d h=%d w=%d oc=%d k=%d stride=%d pad=%d", g->n, g->c,
             g->h, g->w, g->oc, g->k, g->stride, g->pad);
    char part[200];
    snprintf(part, sizeof part, "%s forward y", what);
    check_cmp(&cy, part);
    snprintf(part, sizeof part, "%s backward dx", what);
    check_cmp(&cdx, part);
    snprintf(part, sizeof part, "%s backward dw", what);
    check_cmp(&cdw, part);
    snprintf(part, sizeof part, "%s backward db", what);
    check_cmp(&cdb, part);
    merge(&st->y, &cy), merge(&st->dx, &cdx), merge(&st->dw, &cdw), merge(&st->db, &cdb);
    st->cases++;
}

static void print_conv_stats(const char *title, const struct conv_stats *st) {
    printf("conv  %-28s %3d cases  max diff/magnitude: y %.1e  dx %.1e  dw %.1e  db %.1e"
           "  (max |diff| %.1e)\n",
           title, st->cases, st->y.max_rel, st->dx.max_rel, st->dw.max_rel, st->db.max_rel,
           fmax(fmax(st->y.max_abs, st->dx.max_abs), fmax(st->dw.max_abs, st->db.max_abs)));
}

/* Max pooling, inference (the vectorised 2x2 path, and forward_part) and training (the argmax
 * path) against cnn_maxpool_forward_naive, to the bit: inputs on a coarse grid so that windows
 * hold ties, some NaN, odd sizes whose last row and column no window covers. */
static void test_maxpool(void **state) {
    (void)state;
    static const int shapes[][4] = {{28, 28, 2, 2}, {14, 14, 2, 2}, {7, 7, 2, 2}, {5, 6, 2, 2},
                                    {7, 9, 3, 2},   {6, 6, 2, 1},   {9, 8, 3, 3}};
    enum { N = 3, C = 4 };
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 47);
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int h = shapes[t][0], w = shapes[t][1], k = shapes[t][2], st = shapes[t][3];
        char spec[64];
        snprintf(spec, sizeof spec, "maxpool %d stride=%d, dense 10", k, st);
        struct cnn_model *m = NULL;
        if (cnn_model_new(spec, C, h, w, &m) != CNN_OK) fail_msg("%s", cnn_errmsg());
        const struct cnn_layer *l = &m->layers[0];
        const size_t in = (size_t)N * C * h * w, out = (size_t)N * cnn_shape_size(l->out);
        float *x = malloc(in * sizeof(float)), *ref = malloc(out * sizeof(float));
        float *got = malloc(out * sizeof(float));
        int32_t *arg = malloc(out * sizeof(int32_t));
        assert_non_null(x), assert_non_null(ref), assert_non_null(got), assert_non_null(arg);
        for (size_t j = 0; j < in; j++) x[j] = (float)(int)(4.0f * cnn_rng_normal(&rng)) / 4.0f;
        for (size_t j = 0; j < in; j += 37) x[j] = NAN;
        cnn_maxpool_forward_naive(x, ref, N, C, h, w, k, st);
        for (int train = 0; train <= 1; train++) {
            struct cnn_fwd f = {.n = N, .train = train, .x = x, .y = got};
            f.cache = (float *)arg;
            memset(got, 0, out * sizeof(float));
            l->ops->forward(l, &f);
            assert_memory_equal(got, ref, out * sizeof(float));
        }
        const size_t img = cnn_shape_size(l->out); /* one image, its channels in two parts */
        struct cnn_fwd f = {.n = 1, .x = x, .y = got};
        memset(got, 0, out * sizeof(float));
        l->ops->forward_part(l, &f, 0, 1);
        l->ops->forward_part(l, &f, 1, C);
        assert_memory_equal(got, ref, img * sizeof(float));
        printf("maxpool %dx%d k=%d s=%d: inference, training and parts equal the reference\n", h, w,
               k, st);
        free(x), free(ref), free(got), free(arg);
        cnn_model_free(m);
    }
}

/* k 1,3,5 x stride 1,2 x pad 0..2 (< k) x c 1,3 x oc 1,4 x n 1,3, with (h, w) cycling
 * through square and non-square sizes from 5 to 9. */
static void test_conv_grid(void **state) {
    (void)state;
    static const int hw[][2] = {{5, 5}, {5, 9}, {9, 6}, {7, 7}, {8, 5}, {6, 8}, {9, 9}};
    const int n_hw = (int)(sizeof hw / sizeof hw[0]);
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 11);
    struct conv_stats st = {0};
    int idx = 0;
    for (int k = 1; k <= 5; k += 2)
        for (int stride = 1; stride <= 2; stride++)
            for (int pad = 0; pad <= 2 && pad < k; pad++)
                for (int c = 1; c <= 3; c += 2)
                    for (int oc = 1; oc <= 4; oc += 3)
                        for (int n = 1; n <= 3; n += 2) {
                            const struct conv_cfg g = {
                                n, c, hw[idx % n_hw][0], hw[idx % n_hw][1], oc, k, stride, pad};
                            idx++;
                            conv_case(&st, &g, &rng);
                        }
    print_conv_stats("grid", &st);
    assert_int_equal(st.cases, 112);
}

/* Batches of several images through conv forward/backward: each image gets its own im2col and
 * padded copy in the same workspace, so a stale value from the previous image would show. */
static void test_conv_batches(void **state) {
    (void)state;
    static const struct conv_cfg cfgs[] = {
        {12, 16, 28, 28, 4, 5, 1, 0},
        {14, 16, 28, 28, 4, 5, 1, 2},
        {7, 64, 14, 14, 3, 3, 2, 1},
        {10, 1, 28, 28, 6, 5, 1, 2}, /* one input channel, as a first layer */
        {5, 1, 28, 28, 32, 3, 2, 0},
        /* 3x3, stride 1, c >= 8: the Winograd forward; odd output sizes clip the last tiles */
        {5, 32, 26, 26, 64, 3, 1, 0}, /* pytorch/examples' second layer; groups of 3 and 2 */
        {4, 16, 14, 14, 8, 3, 1, 1},
        {2, 8, 7, 10, 5, 3, 1, 0},
        {2, 9, 5, 5, 3, 3, 1, 2},
        /* c * oc * tiles >= 2^17 with oc >= 8: dx by Winograd too (pad 2 - p) */
        {2, 32, 16, 16, 64, 3, 1, 1},
        {2, 40, 17, 18, 48, 3, 1, 2},
        /* 5x5, stride 1, c >= 8: F(2x2, 5x5) forward */
        {5, 32, 14, 14, 64, 5, 1, 2}, /* the default preset's second layer */
        {2, 8, 7, 10, 5, 5, 1, 0},
        {3, 9, 9, 6, 3, 5, 1, 4},
        {2, 16, 13, 11, 9, 5, 1, 1},
        /* c * oc * tiles >= 2^15 with oc >= 8: dx by Winograd too (pad 4 - p) */
        {2, 48, 16, 16, 64, 5, 1, 2},
        {2, 40, 17, 18, 48, 5, 1, 3},
        /* wider than 32 tiles and taller than a band: the transforms go in pieces, and the
         * last row and column of tiles are clipped */
        {1, 8, 41, 71, 8, 5, 1, 2},
        {1, 8, 41, 71, 8, 3, 1, 1},
        {1, 8, 70, 9, 8, 5, 1, 2},
        /* dw by Winograd (25 tiles or more, oc >= 8) puts the tiles of 256 / tiles images in
         * one product: here groups of 11 + 2 and 9 + 2 images */
        {13, 8, 10, 10, 8, 3, 1, 1},
        {11, 8, 11, 9, 12, 5, 1, 2},
    };
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 13);
    /* One thread owning the batch takes the Winograd path where it applies (as each thread of
     * a team does); two threads sharing each image take im2col with split products. The layer
     * is called directly, so the thread count is set as a context sets it for one call. A
     * build without OpenMP has one thread only. */
#ifdef _OPENMP
    const int most = 2;
#else
    const int most = 1;
#endif
    for (int threads = 1; threads <= most; threads++) {
        const int saved = cnn_threads_enter(threads);
        assert_int_equal(cnn_threads_now(), threads);
        for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
            const struct conv_cfg *g = &cfgs[i];
            struct conv_stats st = {0};
            conv_case(&st, g, &rng);
            char title[64];
            snprintf(title, sizeof title, "n=%d c=%d %dx%d k=%d s=%d p=%d, %d thr", g->n, g->c,
                     g->h, g->w, g->k, g->stride, g->pad, threads);
            print_conv_stats(title, &st);
        }
        cnn_threads_leave(saved);
        assert_int_equal(cnn_threads_now(), saved);
    }
}

/* ---- fusion and teams against the plain path ------------------------------------------------
 * One training step (forward, loss, backward) and one prediction on the same batch, four ways:
 * one thread without fusion (the reference: every layer on its own, over the whole batch), one
 * thread with each activation fused into the layer before it, and a team of two threads (each
 * running the model on its own images, batch norm summing over both) with and without fusion.
 * One thread is a context made with threads = 1, a team one made with threads = 2.
 * The batch of 9 splits unevenly (4 + 5). Gradients, loss, running statistics and
 * probabilities must agree to 1e-5 of the largest gradient / to 1e-5 absolute. */
struct step_result {
    float loss;
    float *grads, *state, *probs;
};

static void run_step(const char *spec, int threads, int fuse, const float *x,
                     const uint8_t *labels, int n, struct step_result *r) {
    struct cnn_model *m = NULL;
    if (cnn_model_new(spec, 1, 14, 14, &m) != CNN_OK) fail_msg("%s", cnn_errmsg());
    cnn_model_set_fusion(m, fuse); /* before any context exists */
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 5);
    cnn_model_init_params(m, &rng);
    cnn_rng_seed(&rng, 6); /* the dropout seed */
    struct cnn_ctx *tctx = NULL, *ictx = NULL;
    if (cnn_ctx_new_train(m, n, threads, &tctx) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_ctx_threads(tctx), threads);
    const int saved = cnn_threads_enter(tctx->threads);
    const int rc = cnn_ctx_train_batch(tctx, m, x, labels, n, 0.1f, cnn_rng_u64(&rng), NULL,
                                       &r->loss, NULL);
    cnn_threads_leave(saved);
    assert_int_equal(rc, CNN_OK);
    r->grads = falloc(m->n_params);
    r->state = falloc(m->n_state);
    r->probs = falloc((size_t)n * 10);
    memcpy(r->grads, tctx->grads, m->n_params * sizeof(float));
    memcpy(r->state, m->state, m->n_state * sizeof(float));
    cnn_ctx_free(tctx);
    if (cnn_ctx_new(m, n, threads, &ictx) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_ctx_threads(ictx), threads);
    assert_int_equal(cnn_predict(m, ictx, x, n, r->probs), CNN_OK);
    cnn_ctx_free(ictx);
    cnn_model_free(m);
}

/* The largest |a[i] - b[i]|, in double. */
static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0.0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static void test_team_and_fusion(void **state) {
    (void)state;
    const char *spec = "conv 8 3 pad=1, relu, conv 8 3, bn, leakyrelu 0.1, maxpool 2, "
                       "dropout 0.3, dense 32, relu, dense 24, bn, relu, dense 10";
    enum { N = 9, IN = 14 * 14 };
    struct cnn_model *probe = NULL;
    assert_int_equal(cnn_model_new(spec, 1, 14, 14, &probe), CNN_OK);
    int fused = 0;
    for (int i = 0; i < probe->n_layers; i++) fused += probe->layers[i].fused;
    const size_t np = probe->n_params, ns = probe->n_state;
    /* and set_fusion(0) undoes it all, (1) does it again */
    cnn_model_set_fusion(probe, 0);
    for (int i = 0; i < probe->n_layers; i++)
        assert_int_equal(probe->layers[i].fused + probe->layers[i].act, 0);
    cnn_model_set_fusion(probe, 1);
    int again = 0;
    for (int i = 0; i < probe->n_layers; i++) again += probe->layers[i].fused;
    assert_int_equal(again, fused);
    cnn_model_free(probe);
    assert_int_equal(fused, 4); /* every activation here has a producer that can fuse it */

    static float x[N * IN];
    uint8_t labels[N];
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 21);
    fill_normal(x, N * IN, &rng);
    for (int i = 0; i < N; i++) labels[i] = (uint8_t)(i % 10);

    struct step_result ref, r;
    run_step(spec, 1, 0, x, labels, N, &ref);
    double gmax = 0.0;
    for (size_t j = 0; j < np; j++) gmax = fmax(gmax, fabs(ref.grads[j]));
    static const struct { int threads, fuse; const char *name; } ways[] = {
        {1, 1, "1 thread, fused"}, {2, 0, "team of 2"}, {2, 1, "team of 2, fused"}};
    for (size_t w = 0; w < sizeof ways / sizeof ways[0]; w++) {
        run_step(spec, ways[w].threads, ways[w].fuse, x, labels, N, &r);
        const double dg = max_diff(r.grads, ref.grads, np), ds = max_diff(r.state, ref.state, ns);
        const double dp = max_diff(r.probs, ref.probs, (size_t)N * 10);
        printf("team  %-18s vs 1 thread unfused: loss %.2e, grads %.1e of max %.2f, bn state "
               "%.1e, probs %.1e\n",
               ways[w].name, fabs((double)r.loss - ref.loss), dg / gmax, gmax, ds, dp);
        if (!(fabs((double)r.loss - ref.loss) <= REL_TOL * fabs(ref.loss)))
            fail_msg("%s: loss %g vs %g", ways[w].name, r.loss, ref.loss);
        if (!(dg <= REL_TOL * gmax)) fail_msg("%s: gradients differ by %g", ways[w].name, dg);
        if (!(ds <= REL_TOL)) fail_msg("%s: bn running state differs by %g", ways[w].name, ds);
        if (!(dp <= REL_TOL)) fail_msg("%s: probabilities differ by %g", ways[w].name, dp);
        free(r.grads), free(r.state), free(r.probs);
    }
    free(ref.grads), free(ref.state), free(ref.probs);
}

/* ---- prepared kernels ----------------------------------------------------------------------
 * A model prepares its Winograd kernels once (init, load); inference then uses them, on one
 * thread, in a team, and where two threads share one image. The same predictions must come
 * from the unprepared model (kernels made per call, or im2col where two threads share an
 * image), and a trainer's step must drop the prepared kernels, not predict from stale ones. */
/* probs (n, 10) and, unless NULL, the typicality features (n, tap_dim) of n images on a new
 * inference context: as one batch, or one image at a time. */
static void predict_all(struct cnn_model *m, int threads, int per_image, const float *x, int n,
                        int in, float *probs, float *features) {
    struct cnn_ctx *ctx = NULL;
    if (cnn_ctx_new(m, n, threads, &ctx) != CNN_OK) fail_msg("%s", cnn_errmsg());
    const int d = ctx->tap_dim, b = per_image ? 1 : n;
    for (int i = 0; i < n; i += b)
        assert_int_equal(cnn_predict_features(m, ctx, x + (size_t)i * in, NULL, b, probs + i * 10,
                                              features ? features + (size_t)i * d : NULL),
                         CNN_OK);
    cnn_ctx_free(ctx);
}

static void test_prepared_kernels(void **state) {
    (void)state;
    const char *spec = "conv 8 5 pad=2, relu, conv 12 5 pad=2, bn, relu, maxpool 2, "
                       "conv 16 3 pad=1, relu, conv 9 5, dense 10";
    enum { N = 5, IN = 15 * 15 };
    struct cnn_model *m = NULL;
    if (cnn_model_new(spec, 1, 15, 15, &m) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_false(m->prepared); /* nothing to prepare from before init or load */
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 31);
    cnn_model_init_params(m, &rng);
    assert_true(m->prepared);
    size_t layers_prepared = 0;
    for (int i = 0; i < m->n_layers; i++) layers_prepared += m->layers[i].n_prep > 0;
    assert_int_equal(layers_prepared, 3); /* 12 5x5 over 8, 16 3x3 over 12, 9 5x5 over 16 */
    static float x[N * IN], ref[N * 10], got[N * 10];
    fill_normal(x, N * IN, &rng);
    m->prepared = 0; /* the reference: each call on its own, im2col for shared images */
    predict_all(m, 2, 1, x, N, IN, ref, NULL);
    static const struct {
        int prepared, threads, per_image;
        const char *name;
    } ways[] = {{0, 1, 1, "unprepared, 1 thread"},
                {0, 2, 0, "unprepared, team of 2"},
                {1, 1, 1, "prepared, 1 thread"},
                {1, 2, 0, "prepared, team of 2"},
                {1, 2, 1, "prepared, 2 threads on one image"}};
    for (size_t w = 0; w < sizeof ways / sizeof ways[0]; w++) {
        if (ways[w].prepared)
            cnn_model_prepare(m);
        else
            m->prepared = 0;
        predict_all(m, ways[w].threads, ways[w].per_image, x, N, IN, got, NULL);
        const double d = max_diff(got, ref, (size_t)N * 10);
        printf("prep  %-34s vs im2col: max |diff| %.1e\n", ways[w].name, d);
        if (!(d <= REL_TOL)) fail_msg("%s: probabilities differ by %g", ways[w].name, d);
    }

    /* a trainer's step changes the params: inference must follow them at once */
    cnn_model_prepare(m);
    struct cnn_train_cfg cfg;
    cnn_train_cfg_default(&cfg);
    cfg.batch = N;
    cfg.threads = 1;
    struct cnn_trainer *t = NULL;
    if (cnn_trainer_new(m, &cfg, &t) != CNN_OK) fail_msg("%s", cnn_errmsg());
    const uint8_t labels[N] = {1, 2, 3, 4, 5};
    assert_int_equal(cnn_trainer_step(t, x, labels, N, NULL, NULL), CNN_OK);
    predict_all(m, 1, 1, x, N, IN, got, NULL);
    cnn_model_prepare(m); /* from the new params: what the step's predictions must equal */
    predict_all(m, 1, 1, x, N, IN, ref, NULL);
    const double d = max_diff(got, ref, (size_t)N * 10);
    printf("prep  after a trainer step: max |diff| %.1e against kernels prepared afresh\n", d);
    if (!(d <= REL_TOL)) fail_msg("after a step, stale kernels: probabilities differ by %g", d);
    cnn_trainer_free(t);
    cnn_model_free(m);
}

/* Winograd rounds an m x m tile's outputs together, from the tile's whole input patch: an
 * output at a zero-padded edge, with few terms of its own, carries the rounding of its larger
 * neighbours. mag (planes, oh, ow) becomes, for each output, the largest magnitude in its tile
 * (with F(4x4, 5x5) and libxsmm's SSE kernels, a corner of a 9x6 image padded by 4 was 1.0e-5
 * of its own magnitude off; against their tiles' magnitudes all cases are within 1.1e-6). */
static void tile_magnitudes(float *mag, int planes, int oh, int ow, int m) {
    for (int pl = 0; pl < planes; pl++)
        for (int ty = 0; ty < oh; ty += m)
            for (int tx = 0; tx < ow; tx += m) {
                float *t = mag + ((size_t)pl * oh + ty) * ow + tx, big = 0.0f;
                for (int y = 0; y < m && ty + y < oh; y++)
                    for (int x = 0; x < m && tx + x < ow; x++) big = fmaxf(big, t[y * ow + x]);
                for (int y = 0; y < m && ty + y < oh; y++)
                    for (int x = 0; x < m && tx + x < ow; x++) t[y * ow + x] = big;
            }
}

/* One image split between threads computes each thread's output channels with forward_part,
 * from the kernels prepared with the model; 5x5 layers by F(4x4, 5x5), which batches do not
 * take (cnn_wino_part_m), 3x3 by F(2x2, 3x3). Each configuration in three parts, the middle one
 * of a single channel, against the reference over all of them, within REL_TOL of each tile's
 * largest magnitude (tile_magnitudes). */
static void test_conv_parts(void **state) {
    (void)state;
    static const struct conv_cfg cfgs[] = {
        {1, 32, 14, 14, 64, 5, 1, 2}, {1, 8, 15, 15, 12, 5, 1, 2}, {1, 9, 9, 6, 10, 5, 1, 4},
        {1, 16, 7, 7, 9, 5, 1, 0},    {1, 8, 13, 11, 7, 5, 1, 1},  {1, 16, 14, 14, 32, 3, 1, 1},
        {1, 9, 5, 7, 5, 3, 1, 2}};
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 43);
    struct cmp all = {0};
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        const struct conv_cfg *g = &cfgs[i];
        const struct cnn_layer l = conv_layer(g);
        assert_true(l.n_prep > 0); /* a Winograd layer */
        const size_t nx = (size_t)g->c * g->h * g->w, ny = (size_t)g->oc * l.out.h * l.out.w;
        const size_t nw = (size_t)g->oc * g->c * g->k * g->k, nws = l.ops->ws_size(&l, 1);
        float *x = falloc(nx), *p = falloc(l.n_params), *prep = falloc(l.n_prep);
        float *y = falloc(ny), *yr = falloc(ny), *my = falloc(ny), *ws = falloc(nws);
        fill_normal(x, nx, &rng);
        fill_normal(p, l.n_params, &rng);
        fill_value(y, ny, NAN);
        l.ops->prepare(&l, p, prep);
        const struct cnn_fwd f = {.n = 1, .x = x, .y = y, .p = p, .prep = prep, .ws = ws};
        const int cut[] = {0, g->oc / 2, g->oc / 2 + 1, g->oc};
        for (int t = 0; t < 3; t++) {
            fill_value(ws, nws, NAN); /* scratch carries nothing in */
            l.ops->forward_part(&l, &f, cut[t], cut[t + 1]);
        }
        cnn_conv2d_forward_naive(x, p, p + nw, yr, 1, g->c, g->h, g->w, g->oc, g->k, 1, g->pad);
        float *ax = abs_copy(x, nx), *ap = abs_copy(p, l.n_params);
        cnn_conv2d_forward_naive(ax, ap, ap + nw, my, 1, g->c, g->h, g->w, g->oc, g->k, 1, g->pad);
        tile_magnitudes(my, g->oc, l.out.h, l.out.w, cnn_wino_part_m(g->k));
        struct cmp c = {0};
        compare(&c, y, yr, my, ny);
        char what[160];
        snprintf(what, sizeof what, "conv parts c=%d %dx%d oc=%d k=%d pad=%d", g->c, g->h, g->w,
                 g->oc, g->k, g->pad);
        check_cmp(&c, what);
        merge(&all, &c);
        free(x), free(p), free(prep), free(y), free(yr), free(my), free(ws), free(ax), free(ap);
    }
    printf("conv  one image in parts, %zu cases: max diff/magnitude %.1e (max |diff| %.1e)\n",
           sizeof cfgs / sizeof cfgs[0], all.max_rel, all.max_abs);
}

/* ---- the transforms' two instruction sets give the same bits ----------------------------- */

/* A batch's forward and backward through a Winograd layer, and its first image in two channel
 * parts, all into out (y, dx, dp, the parts' y, in that order). */
static void wino_outputs(const struct conv_cfg *g, const float *x, const float *p, const float *dy,
                         float *out) {
    const struct cnn_layer l = conv_layer(g);
    const size_t nx = (size_t)g->n * g->c * g->h * g->w;
    const size_t ny = (size_t)g->n * g->oc * l.out.h * l.out.w;
    const size_t nws = l.ops->ws_size(&l, g->n);
    float *ws = falloc(nws), *prep = falloc(l.n_prep), *dyc = falloc(ny);
    float *y = out, *dx = y + ny, *dp = dx + nx, *yp = dp + l.n_params;
    memcpy(dyc, dy, ny * sizeof(float));
    memset(dp, 0, l.n_params * sizeof(float));
    const struct cnn_fwd f = {.n = g->n, .train = 1, .x = x, .y = y, .p = p, .ws = ws};
    l.ops->forward(&l, &f);
    const struct cnn_bwd b = {
        .n = g->n, .x = x, .y = y, .dy = dyc, .dx = dx, .p = p, .dp = dp, .ws = ws};
    l.ops->backward(&l, &b);
    l.ops->prepare(&l, p, prep);
    const struct cnn_fwd f1 = {.n = 1, .x = x, .y = yp, .p = p, .prep = prep, .ws = ws};
    l.ops->forward_part(&l, &f1, 0, g->oc / 2);
    l.ops->forward_part(&l, &f1, g->oc / 2, g->oc);
    free(ws), free(prep), free(dyc);
}

static void test_transform_targets(void **state) {
    (void)state;
    static const struct conv_cfg cfgs[] = {{5, 32, 14, 14, 64, 5, 1, 2},
                                           {3, 16, 28, 28, 32, 3, 1, 1},
                                           {4, 9, 13, 11, 10, 5, 1, 1},
                                           {3, 8, 9, 17, 12, 3, 1, 2},
                                           {2, 12, 40, 37, 8, 3, 1, 1}};
    const int was = cnn_wino_set_avx2(1);
    if (!cnn_wino_set_avx2(1)) {
        cnn_wino_set_avx2(was);
        printf("transforms: this processor has no AVX2; the generic loops ran everywhere\n");
        return;
    }
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 47);
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        const struct conv_cfg *g = &cfgs[i];
        const struct cnn_layer l = conv_layer(g);
        const size_t nx = (size_t)g->n * g->c * g->h * g->w;
        const size_t ny = (size_t)g->n * g->oc * l.out.h * l.out.w;
        const size_t nout = ny + nx + l.n_params + ny / g->n;
        float *x = falloc(nx), *p = falloc(l.n_params), *dy = falloc(ny);
        float *wide = falloc(nout), *generic = falloc(nout);
        fill_normal(x, nx, &rng);
        fill_normal(p, l.n_params, &rng);
        fill_normal(dy, ny, &rng);
        cnn_wino_set_avx2(1);
        wino_outputs(g, x, p, dy, wide);
        cnn_wino_set_avx2(0);
        wino_outputs(g, x, p, dy, generic);
        if (memcmp(wide, generic, nout * sizeof(float)) != 0)
            fail_msg("c=%d %dx%d oc=%d k=%d: AVX2 and generic transforms differ", g->c, g->h, g->w,
                     g->oc, g->k);
        free(x), free(p), free(dy), free(wide), free(generic);
    }
    cnn_wino_set_avx2(was);
    printf("transforms: AVX2 and generic loops bit for bit on %zu layers (forward, backward, "
           "split image)\n",
           sizeof cfgs / sizeof cfgs[0]);
}

/* Running statistics away from 0 and 1 for every batch norm: a mean, then a variance > 0 (the
 * model's own state, written directly: cnn_model_state is a read-only view). */
static void randomize_state(struct cnn_model *m, struct cnn_rng *rng) {
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        const size_t half = l->n_state / 2;
        for (size_t j = 0; j < half; j++) {
            m->state[l->s_off + j] = 0.3f * cnn_rng_normal(rng);
            m->state[l->s_off + half + j] = 0.5f + cnn_rng_uniform(rng);
        }
    }
    cnn_model_prepare(m); /* the state is folded into the convolutions' prepared weights */
}

/* A model of spec on 1 x h x w inputs with random weights, biases, batch-norm gammas and betas
 * away from 0 and 1, and random running statistics. */
static struct cnn_model *random_net(const char *spec, int h, int w, struct cnn_rng *rng) {
    struct cnn_model *m = NULL;
    if (cnn_model_new(spec, 1, h, w, &m) != CNN_OK) fail_msg("%s", cnn_errmsg());
    cnn_model_init_params(m, rng);
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        for (size_t j = l->n_decay; j < l->n_params; j++)
            m->params[l->p_off + j] += 0.5f * cnn_rng_normal(rng);
    }
    randomize_state(m, rng);
    return m;
}

/* ---- predict: eval mode treats every image on its own -------------------------------------- */

static void test_predict_batch_independent(void **state) {
    (void)state;
    const char *spec = "conv 8 3 pad=1, bn, relu, maxpool 2, dropout 0.3, conv 6 3, bn, "
                       "leakyrelu 0.1, avgpool 2, flatten, dense 16, bn, relu, dense 10";
    enum { N = 9, C = 1, H = 14, W = 14, K = 10 };
    struct cnn_model *m = NULL;
    if (cnn_model_new(spec, C, H, W, &m) != CNN_OK) fail_msg("%s", cnn_errmsg());
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 17);
    cnn_model_init_params(m, &rng);
    randomize_state(m, &rng);
    static float x[N * C * H * W], p_chunked[N * K], p_batch[N * K], p_one[N * K];
    fill_normal(x, sizeof x / sizeof x[0], &rng);
    /* a context for batches of 4: predict walks the 9 images in chunks of 4, 4, 1 */
    struct cnn_ctx *c4 = NULL, *c16 = NULL;
    if (cnn_ctx_new(m, 4, 0, &c4) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_ctx_max_batch(c4), 4);
    assert_int_equal(cnn_predict(m, c4, x, N, p_chunked), CNN_OK);
    for (int i = 0; i < N; i++)
        assert_int_equal(cnn_predict(m, c4, x + (size_t)i * C * H * W, 1, p_one + i * K), CNN_OK);
    if (cnn_ctx_new(m, 16, 0, &c16) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_predict(m, c16, x, N, p_batch), CNN_OK);
    cnn_ctx_free(c4);
    cnn_ctx_free(c16);
    cnn_model_free(m);
    double d_chunk = 0.0, d_batch = 0.0;
    for (int i = 0; i < N * K; i++) {
        d_chunk = fmax(d_chunk, fabs((double)p_chunked[i] - p_one[i]));
        d_batch = fmax(d_batch, fabs((double)p_batch[i] - p_one[i]));
        if (!(p_one[i] >= 0.0f && p_one[i] <= 1.0f)) fail_msg("prob %d is %g", i, p_one[i]);
    }
    const int same = memcmp(p_batch, p_one, sizeof p_one) == 0;
    printf("pred  batch of %d vs one at a time: max |diff| %.1e (chunks of 4: %.1e)%s\n", N,
           d_batch, d_chunk, same ? ", bit-identical" : "");
    /* Not bit-identical with OpenBLAS 0.3.21: sgemm with m = 1 (the dense layers, one image)
     * rounds differently from m = 9. Probabilities are in [0,1], so 1e-5 is the same
     * relative bar as the kernels. */
    if (!(d_batch <= REL_TOL)) fail_msg("batch result differs from per-image by %g", d_batch);
    if (!(d_chunk <= REL_TOL)) fail_msg("chunked result differs from per-image by %g", d_chunk);
}

/* ---- one image split between threads ---------------------------------------------------
 * A context of T > 1 threads runs a single image with every thread computing its share of
 * each layer's channels (ctx.c, split_forward). Its probabilities and typicality features must
 * be those of one thread, for networks that take every path: im2col and Winograd convolutions
 * (stride 2, 1x1, channel counts that do not divide by T, fewer channels than threads), fused
 * and unfused activations, both pools with and without overlap, flatten, dense layers with
 * their own activations and batch norm. The threads meet only where a layer reads channels
 * another thread wrote. */
static int count_syncs(const struct cnn_ctx *ctx) {
    int n = 0;
    for (int i = 0; i < ctx->n_layers; i++) n += ctx->split_sync[i];
    return n;
}

static void test_split_image(void **state) {
    (void)state;
    static const struct {
        const char *spec;
        int fuse, syncs; /* the threads meet before each conv but the first, and each dense */
    } nets[] = {
        {"conv 32 5 pad=2, bn, relu, maxpool 2, conv 64 5 pad=2, bn, relu, maxpool 2, "
         "dropout 0.25, dense 10",
         1, 2},
        {"conv 7 3 pad=1, bn, leakyrelu 0.1, conv 12 3 pad=1, relu, maxpool 3 stride=2, "
         "conv 9 3 stride=2 pad=1, bn, relu, avgpool 2 stride=1, flatten, dense 24, bn, relu, "
         "dropout 0.4, dense 10",
         1, 4},
        {"conv 5 5, relu, avgpool 2, conv 16 1, bn, relu, conv 11 3, maxpool 2, dense 13, "
         "leakyrelu 0.2, dense 10",
         0, 4},
    };
    static const int threads[] = {2, 3, 4, 7};
    enum { N = 3, H = 18, W = 17, K = 10 };
    static float x[N * H * W], ref[N * K], got[N * K];
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 41);
    fill_normal(x, sizeof x / sizeof x[0], &rng);
    for (size_t s = 0; s < sizeof nets / sizeof nets[0]; s++) {
        struct cnn_model *m = random_net(nets[s].spec, H, W, &rng);
        cnn_model_set_fusion(m, nets[s].fuse);
        struct cnn_ctx *one = NULL;
        if (cnn_ctx_new(m, N, 1, &one) != CNN_OK) fail_msg("%s", cnn_errmsg());
        assert_null(one->split_cut); /* one thread: nothing to split */
        const int d = one->tap_dim;
        float *f_ref = calloc((size_t)N * d, sizeof(float)), *f_got = calloc(d, sizeof(float));
        assert_non_null(f_ref), assert_non_null(f_got);
        for (int i = 0; i < N; i++)
            assert_int_equal(cnn_predict_features(m, one, x + (size_t)i * H * W, NULL, 1,
                                                  ref + i * K, f_ref + (size_t)i * d),
                             CNN_OK);
        for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
            struct cnn_ctx *ctx = NULL;
            if (cnn_ctx_new(m, N, threads[t], &ctx) != CNN_OK) fail_msg("%s", cnn_errmsg());
            assert_non_null(ctx->split_cut);
            assert_int_equal(count_syncs(ctx), nets[s].syncs);
            double dp = 0.0, df = 0.0;
            for (int i = 0; i < N; i++) {
                assert_int_equal(cnn_predict_features(m, ctx, x + (size_t)i * H * W, NULL, 1,
                                                      got + i * K, f_got),
                                 CNN_OK);
                df = fmax(df, max_diff(f_got, f_ref + (size_t)i * d, (size_t)d));
            }
            dp = max_diff(got, ref, (size_t)N * K);
            printf("split net %zu, %d threads vs 1: probs %.1e, features %.1e\n", s + 1, threads[t],
                   dp, df);
            if (!(dp <= REL_TOL))
                fail_msg("net %zu, %d threads: probs differ by %g", s + 1, threads[t], dp);
            if (!(df <= 1e-4))
                fail_msg("net %zu, %d threads: features differ by %g", s + 1, threads[t], df);
            cnn_ctx_free(ctx);
        }
        /* a training context never splits: its layers keep what backward needs */
        struct cnn_ctx *tctx = NULL;
        if (cnn_ctx_new_train(m, N, 2, &tctx) != CNN_OK) fail_msg("%s", cnn_errmsg());
        assert_null(tctx->split_cut);
        cnn_ctx_free(tctx);
        cnn_ctx_free(one);
        free(f_ref), free(f_got);
        cnn_model_free(m);
    }
}

/* ---- batch norm folded into the convolution before it -------------------------------------
 * At inference on a prepared model, a bn right after a conv is folded into the conv's prepared
 * weights and skipped (model.c, ctx.c); unprepared, it runs in place in the conv's buffer. Both
 * must give what the bn as its own layer gives (the unprepared model, one thread), with every
 * way of running an image: one thread, a team, one image split between threads, fusion off,
 * and an inference pass on a training context (where the conv writes the bn's own buffer, which
 * the next layer reads). A conv whose output
 * typicality reads (it shrinks the picture) must not fold. And the fold must really be what
 * runs: after it is prepared, the bn's own state no longer matters until the next prepare. */
/* The folded batch norm's test: N images of H x W through K-class nets. */
enum { FOLD_N = 5, FOLD_H = 18, FOLD_W = 17, FOLD_IN = FOLD_H * FOLD_W, FOLD_K = 10 };

/* Net s predicted every way (folded or in place, fused or not, threads, split images) against
 * ref and its features f_ref (d per image), the batch norm run alone. */
static void fold_every_way(struct cnn_model *m, size_t s, const float *x, const float *ref,
                           const float *f_ref, int d) {
    static const struct {
        int prepared, fuse, threads, per_image;
        const char *name;
    } ways[] = {{1, 1, 1, 1, "folded, 1 thread"},        {1, 1, 2, 0, "folded, team of 2"},
                {1, 1, 2, 1, "folded, split between 2"}, {1, 1, 3, 1, "folded, split between 3"},
                {1, 0, 2, 1, "folded, unfused, split"},  {1, 0, 1, 0, "folded, unfused, 1 thread"},
                {0, 1, 2, 0, "in place, team of 2"},     {0, 1, 2, 1, "in place, split between 2"}};
    static float got[FOLD_N * FOLD_K];
    float *f_got = calloc((size_t)FOLD_N * d, sizeof(float));
    assert_non_null(f_got);
    double f_max = 0.0;
    for (size_t j = 0; j < (size_t)FOLD_N * d; j++) f_max = fmax(f_max, fabs(f_ref[j]));
    for (size_t w = 0; w < sizeof ways / sizeof ways[0]; w++) {
        cnn_model_set_fusion(m, ways[w].fuse);
        if (ways[w].prepared)
            cnn_model_prepare(m);
        else
            m->prepared = 0;
        predict_all(m, ways[w].threads, ways[w].per_image, x, FOLD_N, FOLD_IN, got, f_got);
        const double dp = max_diff(got, ref, (size_t)FOLD_N * FOLD_K);
        const double df = max_diff(f_got, f_ref, (size_t)FOLD_N * d) / fmax(f_max, 1.0);
        printf("fold  net %zu, %-26s vs bn alone: probs %.1e, features %.1e (of %.1f)\n", s + 1,
               ways[w].name, dp, df, f_max);
        if (!(dp <= REL_TOL && df <= 1e-5))
            fail_msg("net %zu, %s: probs differ by %g, features by %g", s + 1, ways[w].name, dp,
                     df);
    }
    free(f_got);
}

/* On the prepared net s: an inference pass on a training context gives ref; and the folded
 * copy is what runs, so bn state changed behind it changes nothing for a folded bn until the
 * model is prepared again (all_folded: every bn of the net folds). */
static void fold_training_and_state(struct cnn_model *m, size_t s, const float *x, const float *ref,
                                    int all_folded) {
    static float got[FOLD_N * FOLD_K];
    struct cnn_ctx *tctx = NULL;
    if (cnn_ctx_new_train(m, FOLD_N, 1, &tctx) != CNN_OK) fail_msg("%s", cnn_errmsg());
    const float *logits = cnn_ctx_forward(tctx, m, x, FOLD_N, NULL, 0, NULL);
    cnn_softmax(logits, FOLD_N, FOLD_K, got);
    cnn_ctx_free(tctx);
    const double dt = max_diff(got, ref, (size_t)FOLD_N * FOLD_K);
    printf("fold  net %zu, %-26s vs bn alone: probs %.1e\n", s + 1, "training context", dt);
    if (!(dt <= REL_TOL)) fail_msg("net %zu, training context: probs differ by %g", s + 1, dt);

    for (size_t j = 0; j < m->n_state; j++) m->state[j] *= 1.5f;
    predict_all(m, 2, 1, x, FOLD_N, FOLD_IN, got, NULL);
    const double stale = max_diff(got, ref, (size_t)FOLD_N * FOLD_K);
    m->prepared = 0;
    predict_all(m, 2, 1, x, FOLD_N, FOLD_IN, got, NULL);
    const double fresh = max_diff(got, ref, (size_t)FOLD_N * FOLD_K);
    printf("fold  net %zu, state changed after prepare: probs %.1e folded, %.1e unprepared\n",
           s + 1, stale, fresh);
    if (!(fresh > 1e-4)) fail_msg("net %zu: the changed state changed nothing", s + 1);
    if (all_folded && !(stale <= REL_TOL))
        fail_msg("net %zu: a folded bn still ran from its state (%g)", s + 1, stale);
    if (!all_folded && !(stale > 1e-4))
        fail_msg("net %zu: an unfolded bn did not read its state (%g)", s + 1, stale);
}

static void test_folded_batchnorm(void **state) {
    (void)state;
    static const struct {
        const char *spec;
        int bns, folds; /* a dense layer's bn, and a strided conv's, stay apart */
    } nets[] = {
        {"conv 8 5 pad=2, bn, relu, maxpool 2, conv 12 3 pad=1, bn, leakyrelu 0.1, maxpool 2, "
         "dense 10",
         2, 2},
        {"conv 9 5 pad=2, bn, maxpool 2, conv 16 5 pad=2, bn, avgpool 2, flatten, dense 16, bn, "
         "relu, dense 10",
         3, 2},
        {"conv 8 3 stride=2, bn, relu, conv 10 3 pad=1, bn, relu, maxpool 2, dense 10", 2, 1},
    };
    static float x[FOLD_N * FOLD_IN], ref[FOLD_N * FOLD_K];
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 43);
    fill_normal(x, sizeof x / sizeof x[0], &rng);
    for (size_t s = 0; s < sizeof nets / sizeof nets[0]; s++) {
        struct cnn_model *m = random_net(nets[s].spec, FOLD_H, FOLD_W, &rng);
        int folds = 0;
        for (int i = 0; i < m->n_layers; i++) folds += m->layers[i].folds;
        assert_int_equal(folds, nets[s].folds);
        struct cnn_ctx *probe = NULL;
        if (cnn_ctx_new(m, 1, 1, &probe) != CNN_OK) fail_msg("%s", cnn_errmsg());
        const int d = probe->tap_dim;
        cnn_ctx_free(probe);
        float *f_ref = calloc((size_t)FOLD_N * d, sizeof(float));
        assert_non_null(f_ref);
        m->prepared = 0;
        predict_all(m, 1, 1, x, FOLD_N, FOLD_IN, ref, f_ref);
        fold_every_way(m, s, x, ref, f_ref, d);
        cnn_model_set_fusion(m, 1);
        cnn_model_prepare(m);
        fold_training_and_state(m, s, x, ref, nets[s].folds == nets[s].bns);
        free(f_ref);
        cnn_model_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_conv_grid),
        cmocka_unit_test(test_conv_batches),
        cmocka_unit_test(test_team_and_fusion),
        cmocka_unit_test(test_predict_batch_independent),
        cmocka_unit_test(test_prepared_kernels),
        cmocka_unit_test(test_conv_parts),
        cmocka_unit_test(test_split_image),
        cmocka_unit_test(test_folded_batchnorm),
        cmocka_unit_test(test_transform_targets),
    };
    /* the Winograd layers again with the transforms' generic loops (the first run took AVX2
     * where the processor has it) */
    const struct CMUnitTest generic[] = {
        cmocka_unit_test(test_conv_grid),       cmocka_unit_test(test_conv_batches),
        cmocka_unit_test(test_team_and_fusion), cmocka_unit_test(test_prepared_kernels),
        cmocka_unit_test(test_conv_parts),      cmocka_unit_test(test_split_image),
    };
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    cnn_wino_set_avx2(0);
    return failed + cmocka_run_group_tests_name("generic transforms", generic, NULL, NULL);
}
