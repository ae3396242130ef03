/*
 * test_grad.c - every layer's backward pass against central finite differences, so that a wrong
 * gradient fails loudly here instead of showing up as a net that trains a little worse.
 *
 * Each row of `cases` is one layer kind on a tiny input (n=2, c=3, h=w=5 unless the row says
 * why not). The layer is driven directly through its cnn_layer_ops, with buffers owned here:
 *   loss(x, p) = sum_j r_j * y_j           r fixed random, y = forward(x, p), train = 1
 *   analytic:  backward with dy = r        gives dx (assigned) and dp (accumulated)
 *   numeric:   (loss(v + eps) - loss(v - eps)) / (2 eps) for every element v of x and p
 * Every element must agree to a relative error < 1e-2, with max(|a|, |b|, floor) as the
 * denominator (floor 1e-3, larger for batch norm: see its row). The loss is summed in double.
 *
 * Exact arithmetic where possible: x, p and r are multiples of 1/64 in [-1, 1] and eps is
 * 2^-10, so x +- eps, every product and every sum of conv, dense, pooling, relu and dropout is
 * exact in float. Their differences are then exact too, and any disagreement, however small,
 * is a real bug rather than rounding (those rows report 0).
 *
 * The layer struct is not filled by hand: cnn_model_new parses "<row spec>, dense 2" and we
 * copy layers[0], so parse/init are the library's own. Everything after that (forward, backward,
 * cache, workspace) runs on this file's buffers.
 *
 * Finite differences fail at kinks (ggml's test-backend-ops says so too), so relu inputs keep
 * |x| >= 1/16 = 64 eps, and maxpool inputs are a shuffled ramp with steps of 1/64 = 16 eps: no
 * window holds two values closer than that, so the argmax never moves. Dropout runs with
 * train = 1 and one fixed seed, so its mask is the same on every call and the layer is linear.
 *
 * Then: the fused softmax cross-entropy (with label smoothing) against differences of its own
 * returned loss; a random-direction check over whole nets (kann's kad_check_grad); and a
 * determinism test: same seed, same threads, bit-identical losses and parameters. The whole-net
 * tests train through a training context (cnn_ctx_new_train) of THREADS threads, so a batch is
 * split into a team and batch norm's sums over the team are covered too.
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

#include "../src/internal.h"

#define FD_EPS (1.0f / 1024) /* 2^-10, about 1e-3: keeps x +- eps on a short binary grid */
#define FD_TOL 1e-2
#define FD_FLOOR 1e-3 /* smallest denominator of a relative error */
#define FWD_SEED 0x5eedULL
#define THREADS 2 /* the whole-net tests' contexts: a team of two, not one thread */

/* ---- the table ---------------------------------------------------------------------------- */

enum input_kind {
    IN_ANY,      /* uniform in [-1, 1] */
    IN_NO_ZERO,  /* uniform in [-1, -1/16] and [1/16, 1]: no relu kink within 64 eps */
    IN_DISTINCT, /* a shuffled ramp with steps of 1/64 = 16 eps: no max ties within 8 eps */
};

struct grad_case {
    const char *spec; /* one layer, as written in a net spec */
    int n, c, h, w;
    enum input_kind input;
    double floor; /* smallest denominator of a relative error; 0 means FD_FLOOR */
};

static const struct grad_case cases[] = {
    {"conv 4 3 pad=1", 2, 3, 5, 5, IN_ANY, 0},
    {"conv 4 3 stride=2", 2, 3, 5, 5, IN_ANY, 0},
    {"conv 2 2", 2, 3, 5, 5, IN_ANY, 0},
    {"conv 3 3 stride=2 pad=2", 2, 3, 5, 5, IN_ANY, 0},
    {"conv 2 1", 2, 3, 5, 5, IN_ANY, 0},
    {"maxpool 2", 2, 3, 5, 5, IN_DISTINCT, 0},
    {"maxpool 3 stride=2", 2, 3, 5, 5, IN_DISTINCT, 0},
    {"avgpool 2", 2, 3, 5, 5, IN_ANY, 0},
    {"avgpool 3 stride=2", 2, 3, 5, 5, IN_ANY, 0},
    {"relu", 2, 3, 5, 5, IN_NO_ZERO, 0},
    {"leakyrelu 0.1", 2, 3, 5, 5, IN_NO_ZERO, 0},
    /* Batch norm is the one layer whose forward pass cannot be exact on the 1/64 grid:
     * rstd, gamma*rstd and the shift are rounded to float, differently at v+eps and v-eps.
     * That puts ~1e-4 of noise on each central difference (it shrinks 8x when eps grows
     * 8x: rounding, not a wrong gradient), so elements below ~1e-2 cannot be resolved to 1%.
     * Its floor is 5e-2: an absolute error of up to 5e-4 passes on small elements. */
    {"bn", 2, 3, 5, 5, IN_ANY, 5e-2},
    /* bn after a dense layer: (n, 7, 1, 1). n = 4, because with n = 2 each feature
     * normalises to exactly +-1 and the input gradient is zero up to rounding. */
    {"bn", 4, 7, 1, 1, IN_ANY, 5e-2},
    {"dropout 0.5", 2, 3, 5, 5, IN_ANY, 0},
    {"flatten", 2, 3, 5, 5, IN_ANY, 0},
    {"dense 7", 2, 3, 5, 5, IN_ANY, 0},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- helpers ------------------------------------------------------------------------------ */

static float *falloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static void fill_normal(float *v, size_t n, float scale, struct cnn_rng *rng) {
    for (size_t i = 0; i < n; i++) v[i] = scale * cnn_rng_normal(rng);
}

/* Round to a multiple of 1/64. */
static float grid(float v) {
    return roundf(v * 64.0f) / 64.0f;
}

/* k/64 with lo <= |k| <= 64, random sign. */
static float grid_uniform(int lo, struct cnn_rng *rng) {
    const int k = lo + (int)(cnn_rng_u64(rng) % (uint64_t)(65 - lo));
    return (cnn_rng_u64(rng) & 1 ? -1.0f : 1.0f) * (float)k / 64.0f;
}

static void fill_input(float *x, size_t n, enum input_kind kind, struct cnn_rng *rng) {
    switch (kind) {
    case IN_ANY:
        for (size_t i = 0; i < n; i++) x[i] = grid_uniform(0, rng);
        break;
    case IN_NO_ZERO:
        for (size_t i = 0; i < n; i++) x[i] = grid_uniform(4, rng);
        break;
    case IN_DISTINCT: {
        /* (0, 1, ..., n-1)/64 - centre, then a Fisher-Yates shuffle */
        for (size_t i = 0; i < n; i++) x[i] = ((float)i - (float)(n / 2)) / 64.0f;
        for (size_t i = n - 1; i > 0; i--) {
            const size_t j = (size_t)(cnn_rng_u64(rng) % (i + 1));
            const float t = x[i];
            x[i] = x[j];
            x[j] = t;
        }
        break;
    }
    }
}

/* The worst element of one comparison. */
struct worst {
    double floor; /* set before tracking; 0 means FD_FLOOR */
    double rel, a, num;
    size_t i, count;
    double abs; /* largest |a - num| */
};

static void track(struct worst *w, size_t i, double a, double num) {
    const double den = fmax(fmax(fabs(a), fabs(num)), w->floor > 0 ? w->floor : FD_FLOOR);
    const double rel = fabs(a - num) / den;
    w->count++;
    if (fabs(a - num) > w->abs) w->abs = fabs(a - num);
    /* a NaN anywhere must win, and must fail */
    if (rel > w->rel || rel != rel) {
        w->rel = rel != rel ? INFINITY : rel;
        w->a = a, w->num = num, w->i = i;
    }
}

/* ---- driving one layer -------------------------------------------------------------------- */

struct rig {
    struct cnn_layer l;
    int n;
    size_t nx, ny, np, ns;
    float *x, *y, *p, *s, *cache, *ws, *r, *dx, *dp;
};

/* Parse and init the layer with the library's own code: "<spec>, dense 2" on (c,h,w). */
static void rig_new(struct rig *g, const char *spec, int n, int c, int h, int w) {
    char full[128];
    snprintf(full, sizeof full, "%s, dense 2", spec);
    struct cnn_model *m = NULL;
    const int rc = cnn_model_new(full, c, h, w, &m);
    if (rc != CNN_OK) fail_msg("cnn_model_new(\"%s\"): %s", full, cnn_errmsg());
    memset(g, 0, sizeof *g);
    g->l = m->layers[0];
    cnn_model_free(m);
    const struct cnn_layer *l = &g->l;
    g->n = n;
    g->nx = (size_t)n * cnn_shape_size(l->in);
    g->ny = (size_t)n * cnn_shape_size(l->out);
    g->np = l->n_params;
    g->ns = l->n_state;
    g->x = falloc(g->nx);
    g->dx = falloc(g->nx);
    g->y = falloc(g->ny);
    g->r = falloc(g->ny);
    g->p = falloc(g->np);
    g->dp = falloc(g->np);
    g->s = falloc(g->ns);
    g->cache = falloc((size_t)n * l->cache_item + l->cache_fixed);
    g->ws = falloc(l->ops->ws_size ? l->ops->ws_size(l, n) : 0);
}

static void rig_free(struct rig *g) {
    free(g->x), free(g->dx), free(g->y), free(g->r), free(g->p), free(g->dp);
    free(g->s), free(g->cache), free(g->ws);
}

static void rig_forward(struct rig *g) {
    const struct cnn_fwd f = {
        .n = g->n,
        .train = 1,
        .x = g->x,
        .y = g->y,
        .p = g->p,
        .s = g->s,
        .s_update = g->s, /* train = 1: batch norm updates its running statistics */
        .cache = g->cache,
        .ws = g->ws,
        .seed = FWD_SEED,
    };
    g->l.ops->forward(&g->l, &f);
}

/* sum r * y, in double */
static double rig_loss(struct rig *g) {
    rig_forward(g);
    double s = 0.0;
    for (size_t j = 0; j < g->ny; j++) s += (double)g->r[j] * g->y[j];
    return s;
}

/* Central difference of the loss in v[i]; v is g->x or g->p. */
static double rig_numeric(struct rig *g, float *v, size_t i) {
    const float orig = v[i];
    v[i] = orig + FD_EPS;
    const float up = v[i];
    const double lp = rig_loss(g);
    v[i] = orig - FD_EPS;
    const float dn = v[i];
    const double lm = rig_loss(g);
    v[i] = orig;
    return (lp - lm) / ((double)up - (double)dn);
}

#define DP_PREFILL 0.25f /* backward must add to dp, not assign */

static void test_layer_grad(void **state) {
    const struct grad_case *tc = *state;
    struct rig g;
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 1234);
    rig_new(&g, tc->spec, tc->n, tc->c, tc->h, tc->w);
    fill_input(g.x, g.nx, tc->input, &rng);
    fill_input(g.r, g.ny, IN_ANY, &rng);
    /* library init, then jitter so biases and beta are not zero and gamma is not one */
    if (g.l.ops->init_params) g.l.ops->init_params(&g.l, g.p, g.s, &rng);
    for (size_t i = 0; i < g.np; i++) g.p[i] = grid(g.p[i] + 0.2f * cnn_rng_normal(&rng));

    /* analytic: dx is prefilled with NaN (backward assigns it), dp with a constant
     * (backward accumulates into it) */
    rig_forward(&g);
    for (size_t i = 0; i < g.nx; i++) g.dx[i] = NAN;
    for (size_t i = 0; i < g.np; i++) g.dp[i] = DP_PREFILL;
    const struct cnn_bwd b = {
        .n = g.n,
        .x = g.x,
        .y = g.y,
        .dy = g.r,
        .dx = g.dx,
        .p = g.p,
        .dp = g.dp,
        .cache = g.cache,
        .ws = g.ws,
    };
    g.l.ops->backward(&g.l, &b);

    struct worst wx = {.floor = tc->floor}, wp = {.floor = tc->floor};
    for (size_t i = 0; i < g.nx; i++) track(&wx, i, g.dx[i], rig_numeric(&g, g.x, i));
    for (size_t i = 0; i < g.np; i++)
        track(&wp, i, (double)g.dp[i] - DP_PREFILL, rig_numeric(&g, g.p, i));

    char shape[32];
    snprintf(shape, sizeof shape, "(%d,%d,%d,%d)", tc->n, tc->c, tc->h, tc->w);
    printf("grad  %-24s %-11s dx %4zu el rel %.2e abs %.1e", tc->spec, shape, wx.count, wx.rel,
           wx.abs);
    if (wp.count)
        printf("   dp %4zu el rel %.2e abs %.1e\n", wp.count, wp.rel, wp.abs);
    else
        printf("   (no params)\n");
    const int bad_x = !(wx.rel < FD_TOL), bad_p = !(wp.rel < FD_TOL);
    rig_free(&g);
    if (bad_x)
        fail_msg("%s: dx[%zu] analytic %.6g numeric %.6g (rel %.3g)", tc->spec, wx.i, wx.a, wx.num,
                 wx.rel);
    if (bad_p)
        fail_msg("%s: dp[%zu] analytic %.6g numeric %.6g (rel %.3g)", tc->spec, wp.i, wp.a, wp.num,
                 wp.rel);
}

/* ---- the loss ----------------------------------------------------------------------------- */

/* dlogits from cnn_softmax_xent against differences of the loss it returns. */
static void check_xent(int n, int k, float smoothing) {
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 99);
    float *z = falloc((size_t)n * k), *probs = falloc((size_t)n * k);
    float *dz = falloc((size_t)n * k);
    uint8_t labels[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < (size_t)n * k; i++) z[i] = 2.0f * cnn_rng_uniform(&rng) - 1.0f;
    for (int i = 0; i < n; i++) labels[i] = (uint8_t)(cnn_rng_u64(&rng) % (uint64_t)k);
    cnn_softmax_xent(z, labels, n, k, smoothing, probs, dz);
    struct worst w = {0};
    for (size_t i = 0; i < (size_t)n * k; i++) {
        const float orig = z[i];
        z[i] = orig + FD_EPS;
        const float up = z[i];
        const double lp = cnn_softmax_xent(z, labels, n, k, smoothing, probs, NULL);
        z[i] = orig - FD_EPS;
        const float dn = z[i];
        const double lm = cnn_softmax_xent(z, labels, n, k, smoothing, probs, NULL);
        z[i] = orig;
        track(&w, i, dz[i], (lp - lm) / ((double)up - (double)dn));
    }
    char shape[32];
    snprintf(shape, sizeof shape, "(%d,%d)", n, k);
    printf("grad  softmax_xent smooth=%-4g %-11s dz %4zu el rel %.2e abs %.1e\n", (double)smoothing,
           shape, w.count, w.rel, w.abs);
    free(z), free(probs), free(dz);
    if (!(w.rel < FD_TOL))
        fail_msg("softmax_xent eps=%g: dlogits[%zu] analytic %.6g numeric %.6g (rel %.3g)",
                 (double)smoothing, w.i, w.a, w.num, w.rel);
}

static void test_softmax_xent(void **state) {
    (void)state;
    check_xent(2, 10, 0.1f);
    check_xent(2, 10, 0.0f);
    check_xent(3, 4, 0.3f);
}

/* ---- whole nets, along random directions (kann's kad_check_grad) --------------------------- */

/* One training forward + backward on a batch, with the context's threads: the gradients are left
 * in ctx->grads. The forward seed is the rng's next draw. */
static int train_batch(struct cnn_ctx *ctx, struct cnn_model *m, const float *x,
                       const uint8_t *labels, int n, float smoothing, struct cnn_rng *rng,
                       float *loss) {
    const int saved = cnn_threads_enter(ctx->threads);
    const int rc =
        cnn_ctx_train_batch(ctx, m, x, labels, n, smoothing, cnn_rng_u64(rng), NULL, loss, NULL);
    cnn_threads_leave(saved);
    return rc;
}

/* Loss of one training step on a fixed batch; the rng is reseeded, so dropout masks repeat. */
static double net_loss(struct cnn_ctx *ctx, struct cnn_model *m, const float *x,
                       const uint8_t *labels, int n) {
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 777);
    float loss = NAN;
    const int rc = train_batch(ctx, m, x, labels, n, 0.1f, &rng, &loss);
    if (rc != CNN_OK) fail_msg("cnn_ctx_train_batch: %s", cnn_errmsg());
    return loss;
}

/* Which side of every kink the last forward pass was on: the sign of each relu/leakyrelu
 * input and each maxpool argmax. Writes up to `cap` ints to out; returns how many there are. */
static size_t kink_pattern(const struct cnn_model *m, const struct cnn_ctx *ctx, int n,
                           int32_t *out, size_t cap) {
    size_t len = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        const size_t in = (size_t)n * cnn_shape_size(l->in),
                     out_n = (size_t)n * cnn_shape_size(l->out);
        if ((l->kind == CNN_LAYER_RELU || l->kind == CNN_LAYER_LEAKYRELU) && i > 0) {
            for (size_t j = 0; j < in; j++, len++)
                if (len < cap) out[len] = ctx->act[i][j] > 0.0f;
        } else if (l->kind == CNN_LAYER_MAXPOOL) {
            const int32_t *arg = (const int32_t *)ctx->cache[i];
            for (size_t j = 0; j < out_n; j++, len++)
                if (len < cap) out[len] = arg[j];
        }
    }
    return len;
}

/*
 * d/dt loss(p + t d) at t = 0, by central difference, against grads . d, for random normal
 * directions d over all parameters at once. A relu input or a maxpool argmax that flips between
 * p - eps d and p + eps d puts a kink inside the difference and makes it meaningless (the
 * error is then of the order of one element's share, ~10%), so such directions are counted and
 * skipped; DIR_WANT clean directions must be found. eps is 1e-4 here: with ~700 parameters
 * moving at once, 1e-3 crosses a kink in most directions, and the float loss still resolves
 * a step of 1e-4 to ~1e-3 absolute.
 */
#define DIR_EPS 1e-4f
#define DIR_WANT 3
#define DIR_TRIES 20

static void check_net_direction(const char *spec, int n, int c, int h, int w) {
    struct cnn_model *m = NULL;
    if (cnn_model_new(spec, c, h, w, &m) != CNN_OK) fail_msg("%s: %s", spec, cnn_errmsg());
    struct cnn_ctx *ctx = NULL;
    if (cnn_ctx_new_train(m, n, THREADS, &ctx) != CNN_OK)
        fail_msg("%s: cnn_ctx_new_train: %s", spec, cnn_errmsg());
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 4321);
    cnn_model_init_params(m, &rng);
    const size_t np = cnn_model_n_params(m), nx = (size_t)n * c * h * w;
    float *x = falloc(nx), *g = falloc(np), *p0 = falloc(np), *d = falloc(np);
    float *pp = falloc(np), *pm = falloc(np);
    uint8_t labels[16];
    assert_true(n <= 16);
    fill_normal(x, nx, 1.0f, &rng);
    for (int i = 0; i < n; i++)
        labels[i] = (uint8_t)(cnn_rng_u64(&rng) % (uint64_t)cnn_model_n_classes(m));
    float *params = m->params; /* written: the model is this test's alone */
    memcpy(p0, params, np * sizeof(float));
    net_loss(ctx, m, x, labels, n);
    memcpy(g, ctx->grads, np * sizeof(float));
    const size_t nk = kink_pattern(m, ctx, n, NULL, 0);
    int32_t *k0 = calloc(nk + 1, sizeof *k0), *k1 = calloc(nk + 1, sizeof *k1);
    assert_true(k0 && k1);
    kink_pattern(m, ctx, n, k0, nk);

    double worst = 0.0;
    int clean = 0, tries = 0;
    for (; clean < DIR_WANT && tries < DIR_TRIES; tries++) {
        fill_normal(d, np, 1.0f, &rng);
        for (size_t i = 0; i < np; i++) {
            pp[i] = p0[i] + DIR_EPS * d[i];
            pm[i] = p0[i] - DIR_EPS * d[i];
        }
        int crossed = 0;
        memcpy(params, pp, np * sizeof(float));
        const double lp = net_loss(ctx, m, x, labels, n);
        kink_pattern(m, ctx, n, k1, nk);
        crossed |= memcmp(k0, k1, nk * sizeof *k0) != 0;
        memcpy(params, pm, np * sizeof(float));
        const double lm = net_loss(ctx, m, x, labels, n);
        kink_pattern(m, ctx, n, k1, nk);
        crossed |= memcmp(k0, k1, nk * sizeof *k0) != 0;
        memcpy(params, p0, np * sizeof(float));
        if (crossed) continue;
        /* the step actually taken, element by element, after rounding to float */
        double gd = 0.0;
        for (size_t i = 0; i < np; i++) gd += (double)g[i] * ((double)pp[i] - pm[i]);
        const double fd = lp - lm;
        const double rel = fabs(fd - gd) / fmax(fmax(fabs(fd), fabs(gd)), FD_FLOOR * 2 * DIR_EPS);
        printf("dir   %-52s n=%d  d%d: g.d %+.6f  fd %+.6f  rel %.2e\n", spec, n, tries,
               gd / (2 * DIR_EPS), fd / (2 * DIR_EPS), rel);
        worst = rel > worst || rel != rel ? (rel != rel ? INFINITY : rel) : worst;
        clean++;
    }
    printf("dir   %-52s %d clean directions, %d skipped (kink crossed)\n", spec, clean,
           tries - clean);
    free(x), free(g), free(p0), free(d), free(pp), free(pm), free(k0), free(k1);
    cnn_ctx_free(ctx);
    cnn_model_free(m);
    if (clean < DIR_WANT) fail_msg("%s: only %d of %d directions avoid kinks", spec, clean, tries);
    if (!(worst < FD_TOL)) fail_msg("%s: directional derivative rel error %.3g", spec, worst);
}

static void test_net_direction(void **state) {
    (void)state;
    check_net_direction("conv 4 3 pad=1, bn, relu, maxpool 2, dense 10", 2, 1, 8, 8);
    check_net_direction("conv 3 2, bn, leakyrelu 0.1, avgpool 2, dropout 0.3, flatten, "
                        "dense 6, bn, relu, dense 10",
                        4, 2, 9, 9);
}

/* ---- determinism -------------------------------------------------------------------------- */

#define DET_STEPS 10
#define DET_N 8

struct det_run {
    float losses[DET_STEPS];
    float *params, *state;
    size_t np, ns;
};

/* 10 training steps on a fixed batch; `seed` drives init and dropout. */
static void det_train(int optim_kind, uint64_t seed, struct det_run *out) {
    const char *spec = "conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dense 16, relu, "
                       "dense 10";
    struct cnn_model *m = NULL;
    if (cnn_model_new(spec, 1, 8, 8, &m) != CNN_OK) fail_msg("%s", cnn_errmsg());
    struct cnn_ctx *ctx = NULL;
    if (cnn_ctx_new_train(m, DET_N, THREADS, &ctx) != CNN_OK) fail_msg("%s", cnn_errmsg());
    struct cnn_rng data, rng;
    cnn_rng_seed(&data, 2024); /* the batch is the same for every seed */
    float x[DET_N * 64];
    uint8_t labels[DET_N];
    fill_normal(x, DET_N * 64, 1.0f, &data);
    for (int i = 0; i < DET_N; i++) labels[i] = (uint8_t)(cnn_rng_u64(&data) % 10);
    cnn_rng_seed(&rng, seed);
    cnn_model_init_params(m, &rng);
    struct cnn_optim_cfg cfg;
    cnn_optim_cfg_default(&cfg, optim_kind);
    cfg.weight_decay = 1e-4f;
    struct cnn_optim *opt = NULL;
    if (cnn_optim_new(m, &cfg, &opt) != CNN_OK) fail_msg("%s", cnn_errmsg());
    const float lr = optim_kind == CNN_OPT_SGD ? 0.05f : 1e-3f;
    for (int s = 0; s < DET_STEPS; s++) {
        if (train_batch(ctx, m, x, labels, DET_N, 0.05f, &rng, &out->losses[s]))
            fail_msg("train step %d: %s", s, cnn_errmsg());
        if (cnn_optim_step(opt, m->params, ctx->grads, m->decay_mask, m->n_params, lr))
            fail_msg("optimizer step %d: %s", s, cnn_errmsg());
    }
    out->np = cnn_model_n_params(m);
    out->ns = cnn_model_n_state(m);
    out->params = falloc(out->np);
    out->state = falloc(out->ns);
    memcpy(out->params, cnn_model_params(m), out->np * sizeof(float));
    memcpy(out->state, cnn_model_state(m), out->ns * sizeof(float));
    cnn_optim_free(opt);
    cnn_ctx_free(ctx);
    cnn_model_free(m);
}

static void det_free(struct det_run *r) {
    free(r->params);
    free(r->state);
}

static void check_determinism(int optim_kind, const char *name) {
    struct det_run a, b, c;
    det_train(optim_kind, 11, &a);
    det_train(optim_kind, 11, &b);
    det_train(optim_kind, 12, &c);
    printf("det   %-5s seed 11: loss %.6f -> %.6f   seed 12: loss %.6f -> %.6f\n", name,
           (double)a.losses[0], (double)a.losses[DET_STEPS - 1], (double)c.losses[0],
           (double)c.losses[DET_STEPS - 1]);
    const int same_loss = memcmp(a.losses, b.losses, sizeof a.losses) == 0;
    const int same_params = memcmp(a.params, b.params, a.np * sizeof(float)) == 0;
    const int same_state = memcmp(a.state, b.state, a.ns * sizeof(float)) == 0;
    const int diff_loss = memcmp(a.losses, c.losses, sizeof a.losses) != 0;
    const int diff_params = memcmp(a.params, c.params, a.np * sizeof(float)) != 0;
    int finite = 1;
    for (int s = 0; s < DET_STEPS; s++) finite &= isfinite(a.losses[s]);
    const int learned = a.losses[DET_STEPS - 1] < a.losses[0];
    det_free(&a), det_free(&b), det_free(&c);
    if (!same_loss) fail_msg("%s: same seed, different loss logs", name);
    if (!same_params) fail_msg("%s: same seed, different parameters", name);
    if (!same_state) fail_msg("%s: same seed, different batch-norm state", name);
    if (!diff_loss || !diff_params) fail_msg("%s: a different seed gave the same run", name);
    if (!finite) fail_msg("%s: non-finite loss", name);
    if (!learned) fail_msg("%s: 10 steps on one batch did not lower the loss", name);
}

static void test_determinism_sgd(void **state) {
    (void)state;
    check_determinism(CNN_OPT_SGD, "sgd");
}

static void test_determinism_adam(void **state) {
    (void)state;
    check_determinism(CNN_OPT_ADAM, "adam");
}

/* ---- main --------------------------------------------------------------------------------- */

int main(void) {
    struct CMUnitTest tests[N_CASES + 4];
    for (int i = 0; i < N_CASES; i++) {
        static char names[N_CASES][64];
        snprintf(names[i], sizeof names[i], "grad %s (%d,%d,%d,%d)", cases[i].spec, cases[i].n,
                 cases[i].c, cases[i].h, cases[i].w);
        tests[i] = (struct CMUnitTest){names[i], test_layer_grad, NULL, NULL, (void *)&cases[i]};
    }
    tests[N_CASES + 0] = (struct CMUnitTest)cmocka_unit_test(test_softmax_xent);
    tests[N_CASES + 1] = (struct CMUnitTest)cmocka_unit_test(test_net_direction);
    tests[N_CASES + 2] = (struct CMUnitTest)cmocka_unit_test(test_determinism_sgd);
    tests[N_CASES + 3] = (struct CMUnitTest)cmocka_unit_test(test_determinism_adam);
    /* Every layer kind in src/nn/layers.def must have a row: a kind added without one would
     * otherwise ship with a backward pass nothing has checked. */
    for (int k = 0; k < CNN_LAYER_COUNT; k++) {
        int found = 0;
        for (int i = 0; i < N_CASES; i++) {
            const size_t len = strlen(cnn_layer_table[k]->name);
            found |= strncmp(cases[i].spec, cnn_layer_table[k]->name, len) == 0 &&
                     (cases[i].spec[len] == ' ' || cases[i].spec[len] == '\0');
        }
        if (!found) {
            fprintf(stderr, "test_grad: layer kind '%s' has no row in the table\n",
                    cnn_layer_table[k]->name);
            return 1;
        }
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
