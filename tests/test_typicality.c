/*
 * test_typicality.c - typicality (src/nn/typicality.c): which features are tapped, that the
 * forward pass taps them right, that the fitted Gaussian is the Mahalanobis distance computed
 * directly, calibration, the model file's TYPI section (round trip and forged sections), and
 * the trainer's fit.
 *
 * The data is synthetic, 12x12: class c is a bright 3x3 block at one of ten places plus noise,
 * so that ten classes exist and their features differ. The networks are randomly initialised:
 * typicality is a property of features, not of a trained network, for every check here.
 * The direct computation (mean, covariance with the same ridge, Gaussian elimination, all in
 * double) shares nothing with typicality.c but the definition.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "../src/internal.h"
#include "testutil.h"

#define SIDE 12
#define N_IMG 1200

/* typicality.c's ridge: S_jj += 1e-3 S_jj + 1e-6 mean(diag S) */
#define RIDGE 1e-3
#define FLOOR 1e-6

static struct cnn_dataset data;

static void make_data(void) {
    data.n = N_IMG, data.h = SIDE, data.w = SIDE, data.n_classes = 10;
    data.images = malloc((size_t)N_IMG * SIDE * SIDE);
    data.labels = malloc(N_IMG);
    struct cnn_rng r;
    cnn_rng_seed(&r, 5);
    for (int i = 0; i < N_IMG; i++) {
        const int c = i % 10, bx = 1 + (c % 5) * 2, by = c < 5 ? 2 : 7;
        uint8_t *p = data.images + (size_t)i * SIDE * SIDE;
        for (int q = 0; q < SIDE * SIDE; q++) p[q] = (uint8_t)(cnn_rng_uniform(&r) * 60);
        for (int y = by; y < by + 3; y++)
            for (int x = bx; x < bx + 3; x++)
                p[y * SIDE + x] = (uint8_t)(180 + cnn_rng_uniform(&r) * 75);
        data.labels[i] = (uint8_t)c;
    }
}

static struct cnn_model *random_model(const char *spec, uint64_t seed) {
    struct cnn_model *m = NULL;
    assert_int_equal(cnn_model_new(spec, 1, SIDE, SIDE, &m), CNN_OK);
    struct cnn_rng r;
    cnn_rng_seed(&r, seed);
    cnn_model_init_params(m, &r);
    for (size_t i = 0; i < m->n_state; i++) m->state[i] = 0.5f + 0.1f * (float)(i % 7); /* bn */
    cnn_model_prepare(m); /* which folds that state into the convolutions before */
    cnn_model_set_norm(m, 0.2f, 0.3f);
    return m;
}

static int *range(int from, int n) {
    int *idx = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) idx[i] = from + i;
    return idx;
}

/* ---- the layout ----------------------------------------------------------------------------- */

static void test_layout(void **state) {
    (void)state;
    struct {
        const char *spec;
        int dim, taps[12]; /* tap_off per layer */
    } cases[] = {
        /* pools shrink: their outputs, 4 and 6 channels, then the logits */
        {"conv 4 3 pad=1, bn, relu, maxpool 2, conv 6 3 pad=1, relu, maxpool 2, dense 10",
         20,
         {-1, -1, -1, 0, -1, -1, 4, -1}},
        /* a strided conv shrinks: tapped after the relu that follows (fused or not) */
        {"conv 4 3 stride=2, relu, conv 6 3, dense 10", 20, {-1, 0, 4, -1}},
        /* pool, then relu: the tap moves past the activation */
        {"conv 5 3 pad=1, maxpool 2, relu, dense 10", 15, {-1, -1, 0, -1}},
        /* nothing spatial shrinks: the logits alone; a pool to 1x1 is not spatial */
        {"flatten, dense 32, relu, dense 10", 10, {-1, -1, -1, -1}},
        {"conv 3 3 pad=1, maxpool 12, dense 10", 10, {-1, -1, -1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct cnn_model *m = random_model(cases[c].spec, 1);
        int tap[16];
        assert_int_equal(cnn_typicality_layout(m, tap), cases[c].dim);
        for (int i = 0; i < m->n_layers; i++) assert_int_equal(tap[i], cases[c].taps[i]);
        cnn_model_free(m);
    }
}

/* ---- the forward pass taps the right numbers ------------------------------------------------- */

/* Features of n images the plain way: every activation kept (a training context, no fusion,
 * one thread), channel means in double, then the logits. */
static void features_naive(const struct cnn_model *m, const float *x, int n, double *out) {
    struct cnn_model *u = NULL;
    assert_int_equal(cnn_model_new(m->spec, 1, SIDE, SIDE, &u), CNN_OK);
    cnn_model_set_fusion(u, 0);
    memcpy(u->params, m->params, m->n_params * sizeof(float));
    memcpy(u->state, m->state, m->n_state * sizeof(float));
    struct cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_new_train(u, n, 1, &ctx), CNN_OK);
    const float *logits = cnn_ctx_forward(ctx, u, x, n, NULL, 0, NULL);
    int tap[16];
    const int dim = cnn_typicality_layout(u, tap), k = u->n_classes;
    for (int t = 0; t < u->n_layers; t++) {
        if (tap[t] < 0) continue;
        const struct cnn_shape s = u->layers[t].out;
        const size_t hw = (size_t)s.h * s.w;
        for (int j = 0; j < n; j++)
            for (int c = 0; c < s.c; c++) {
                double sum = 0.0;
                for (size_t q = 0; q < hw; q++)
                    sum += ctx->act[t + 1][(size_t)j * s.c * hw + c * hw + q];
                out[(size_t)j * dim + tap[t] + c] = sum / (double)hw;
            }
    }
    for (int j = 0; j < n; j++)
        for (int c = 0; c < k; c++) out[(size_t)j * dim + dim - k + c] = logits[j * k + c];
    cnn_ctx_free(ctx);
    cnn_model_free(u);
}

static void test_features_match_naive(void **state) {
    (void)state;
    const char *specs[] = {
        "conv 4 3 pad=1, bn, relu, maxpool 2, conv 6 3 pad=1, relu, maxpool 2, dense 10",
        "conv 4 3 stride=2, relu, conv 6 3, dense 10", "conv 5 3 pad=1, maxpool 2, relu, dense 10"};
    const int n = 7; /* batches of 5 on 2 threads: a remainder of 2, teams of unequal size */
    float x[7 * SIDE * SIDE], probs[7 * 10], feat[7 * 32];
    double ref[7 * 32];
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        struct cnn_model *m = random_model(specs[s], 3 + s);
        for (int i = 0; i < n * SIDE * SIDE; i++) x[i] = (data.images[i] / 255.0f - 0.2f) / 0.3f;
        for (int threads = 1; threads <= 2; threads++) {
            struct cnn_ctx *ctx = NULL;
            assert_int_equal(cnn_ctx_new(m, 5, threads, &ctx), CNN_OK);
            assert_int_equal(cnn_predict_features(m, ctx, x, NULL, n, probs, feat), CNN_OK);
            features_naive(m, x, n, ref);
            const int dim = ctx->tap_dim;
            for (int i = 0; i < n * dim; i++)
                assert_true(fabs(feat[i] - ref[i]) <= 1e-4 * (1.0 + fabs(ref[i])));
            cnn_ctx_free(ctx);
        }
        cnn_model_free(m);
    }
}

/* ---- the fit is the Mahalanobis distance ------------------------------------------------------
 */

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Solve A z = b (d x d, A overwritten) by Gaussian elimination with partial pivoting. */
static void solve(double *A, double *b, int d) {
    for (int c = 0; c < d; c++) {
        int p = c;
        for (int r = c + 1; r < d; r++)
            if (fabs(A[r * d + c]) > fabs(A[p * d + c])) p = r;
        for (int j = 0; j < d; j++) {
            const double t = A[c * d + j];
            A[c * d + j] = A[p * d + j], A[p * d + j] = t;
        }
        const double t = b[c];
        b[c] = b[p], b[p] = t;
        for (int r = c + 1; r < d; r++) {
            const double f = A[r * d + c] / A[c * d + c];
            for (int j = c; j < d; j++) A[r * d + j] -= f * A[c * d + j];
            b[r] -= f * b[c];
        }
    }
    for (int r = d - 1; r >= 0; r--) {
        for (int j = r + 1; j < d; j++) b[r] -= A[r * d + j] * b[j];
        b[r] /= A[r * d + r];
    }
}

/* min over classes of (f - mu_c)^T S^-1 (f - mu_c), from the fit images' features F (n, d). */
static double mahalanobis_direct(const float *F, const uint8_t *labels, int n, int d,
                                 const float *f) {
    double *mu = calloc((size_t)10 * d, sizeof(double)), *S = calloc((size_t)d * d, sizeof(double));
    double *A = malloc((size_t)d * d * sizeof(double)), *v = malloc((size_t)d * sizeof(double));
    int count[10] = {0};
    for (int i = 0; i < n; i++) {
        count[labels[i]]++;
        for (int j = 0; j < d; j++) mu[labels[i] * d + j] += F[(size_t)i * d + j];
    }
    for (int c = 0; c < 10; c++)
        for (int j = 0; j < d; j++) mu[c * d + j] /= count[c];
    for (int i = 0; i < n; i++)
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++)
                S[a * d + b] += (F[(size_t)i * d + a] - mu[labels[i] * d + a]) *
                                (F[(size_t)i * d + b] - mu[labels[i] * d + b]) / n;
    double tr = 0.0;
    for (int j = 0; j < d; j++) tr += S[j * d + j];
    for (int j = 0; j < d; j++) S[j * d + j] += RIDGE * S[j * d + j] + FLOOR * tr / d;
    double best = INFINITY;
    for (int c = 0; c < 10; c++) {
        memcpy(A, S, (size_t)d * d * sizeof(double));
        for (int j = 0; j < d; j++) v[j] = f[j] - mu[c * d + j];
        double *z = malloc((size_t)d * sizeof(double));
        memcpy(z, v, (size_t)d * sizeof(double));
        solve(A, z, d);
        double s = 0.0;
        for (int j = 0; j < d; j++) s += v[j] * z[j];
        if (s < best) best = s;
        free(z);
    }
    free(mu), free(S), free(A), free(v);
    return best;
}

static void test_fit_is_mahalanobis(void **state) {
    (void)state;
    struct cnn_model *m = random_model(
        "conv 4 3 pad=1, bn, relu, maxpool 2, conv 6 3 pad=1, relu, maxpool 2, dense 10", 9);
    const int n_fit = 600, n_cal = 300;
    int *fit = range(0, n_fit), *cal = range(n_fit, n_cal);
    assert_int_equal(cnn_typicality_fit(m, &data, fit, n_fit, cal, n_cal, 2), CNN_OK);
    const struct cnn_typicality *ty = m->typicality;
    assert_non_null(ty);
    assert_int_equal(ty->dim, 20);
    assert_int_equal(ty->n_cal, n_cal);
    for (int i = 1; i < n_cal; i++) assert_true(ty->cal[i - 1] <= ty->cal[i]);
    /* the features of the fit images, and of a few others (calibration, and inverted images) */
    struct cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_new(m, 64, 1, &ctx), CNN_OK);
    float *F = malloc((size_t)n_fit * 20 * sizeof(float)), probs[64 * 10], f[20], wf[20];
    for (int i0 = 0; i0 < n_fit; i0 += 64) {
        const int b = n_fit - i0 < 64 ? n_fit - i0 : 64;
        assert_int_equal(cnn_predict_features(m, ctx, NULL, data.images + (size_t)i0 * 144, b,
                                              probs, F + (size_t)i0 * 20),
                         CNN_OK);
    }
    uint8_t odd[144];
    for (int t = 0; t < 6; t++) {
        const uint8_t *img = data.images + (size_t)(n_fit + 37 * t) * 144;
        for (int q = 0; q < 144; q++) odd[q] = (uint8_t)(255 - img[q]); /* far from the data */
        assert_int_equal(cnn_predict_features(m, ctx, NULL, t >= 3 ? odd : img, 1, probs, f),
                         CNN_OK);
        const double direct = mahalanobis_direct(F, data.labels, n_fit, 20, f);
        const double fast = cnn_typicality_score(ty, f, wf),
                     naive = cnn_typicality_score_naive(ty, f);
        assert_true(fabs(fast - direct) <= 2e-3 * direct + 1e-3);
        assert_true(fabs(naive - direct) <= 2e-3 * direct + 1e-3);
        if (t >= 3) assert_true(cnn_typicality_of_score(ty, (float)fast) < 0.01f);
    }
    /* the calibration images' typicalities, from the public call, are their ranks among them:
     * 1/n .. n/n (within a rank or two: another batch size rounds the features differently) */
    float *pr = malloc((size_t)n_cal * 10 * sizeof(float)),
          *typ = malloc((size_t)n_cal * sizeof(float));
    uint8_t *px = malloc((size_t)n_cal * 144);
    for (int i = 0; i < n_cal; i++)
        memcpy(px + (size_t)i * 144, data.images + (size_t)cal[i] * 144, 144);
    assert_int_equal(cnn_predict_u8_typicality(m, ctx, px, n_cal, pr, typ), CNN_OK);
    qsort(typ, (size_t)n_cal, sizeof(float), cmp_float);
    for (int i = 0; i < n_cal; i++)
        assert_true(fabsf(typ[i] - (float)(i + 1) / n_cal) <= 2.0f / n_cal);
    free(pr), free(typ), free(px), free(F), free(fit), free(cal);
    cnn_ctx_free(ctx);
    cnn_model_free(m);
}

static void test_of_score_edges(void **state) {
    (void)state;
    struct cnn_typicality *ty = cnn_typicality_alloc(2, 10, 4);
    const float cal[4] = {1.0f, 2.0f, 2.0f, 5.0f};
    memcpy(ty->cal, cal, sizeof cal);
    assert_true(cnn_typicality_of_score(ty, 0.5f) == 1.0f);
    assert_true(cnn_typicality_of_score(ty, 1.0f) == 1.0f);
    assert_true(cnn_typicality_of_score(ty, 1.5f) == 0.75f);
    assert_true(cnn_typicality_of_score(ty, 2.0f) == 0.75f);
    assert_true(cnn_typicality_of_score(ty, 4.0f) == 0.25f);
    assert_true(cnn_typicality_of_score(ty, 6.0f) == 0.0f);
    assert_true(cnn_typicality_of_score(ty, INFINITY) == 0.0f);
    assert_true(cnn_typicality_of_score(ty, NAN) == 0.0f);
    cnn_typicality_free(ty);
}

/* ---- the model file ----------------------------------------------------------------------- */

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*n);
    assert_int_equal(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

/* Offset of the TYPI section's body in a model file's bytes. */
static size_t typi_at(const uint8_t *p, size_t n) {
    for (size_t o = 16; o + 12 <= n;) {
        uint64_t len;
        memcpy(&len, p + o + 4, 8);
        if (!memcmp(p + o, "TYPI", 4)) return o + 12;
        o += 12 + (size_t)len;
    }
    fail_msg("no TYPI section");
    return 0;
}

static void expect_forged(const uint8_t *base, size_t n, size_t at, const void *bytes, size_t len) {
    uint8_t *p = malloc(n);
    memcpy(p, base, n);
    memcpy(p + at, bytes, len);
    const uint32_t crc = (uint32_t)crc32(0L, p, (uInt)(n - 4));
    memcpy(p + n - 4, &crc, 4);
    struct cnn_model *m = (struct cnn_model *)1;
    assert_int_equal(cnn_model_parse(p, n, "forged.model", &m), CNN_ERR_FORMAT);
    assert_null(m);
    assert_non_null(strstr(cnn_errmsg(), "forged.model: TYPI"));
    free(p);
}

static void test_file_roundtrip_and_forged(void **state) {
    (void)state;
    struct cnn_model *m = random_model("conv 4 3 pad=1, relu, maxpool 2, dense 10", 11);
    int *fit = range(0, 500), *cal = range(500, 200);
    struct cnn_ctx *ctx = NULL;
    assert_int_equal(cnn_ctx_new(m, 8, 1, &ctx), CNN_OK);
    float probs[80], typ[8], typ2[8];
    /* no typicality yet: refused, and a file without it loads without it */
    assert_int_equal(cnn_predict_u8_typicality(m, ctx, data.images, 8, probs, typ), CNN_ERR_ARG);
    assert_int_equal(cnn_model_save(m, tpath("plain.model")), CNN_OK);
    struct cnn_model *back = NULL;
    assert_int_equal(cnn_model_load(tpath("plain.model"), &back), CNN_OK);
    assert_false(cnn_model_has_typicality(back));
    cnn_model_free(back);

    assert_int_equal(cnn_typicality_fit(m, &data, fit, 500, cal, 200, 1), CNN_OK);
    assert_int_equal(cnn_predict_u8_typicality(m, ctx, data.images + 700 * 144, 8, probs, typ),
                     CNN_OK);
    assert_int_equal(cnn_model_save(m, tpath("typ.model")), CNN_OK);
    assert_int_equal(cnn_model_load(tpath("typ.model"), &back), CNN_OK);
    assert_true(cnn_model_has_typicality(back));
    assert_int_equal(cnn_predict_u8_typicality(back, ctx, data.images + 700 * 144, 8, probs, typ2),
                     CNN_OK);
    assert_memory_equal(typ, typ2, sizeof typ);
    cnn_model_free(back);

    size_t n;
    uint8_t *p = read_all(tpath("typ.model"), &n);
    const size_t at = typi_at(p, n), d = 4 + 10;
    const uint32_t dim = 15, k = 9, zero = 0, big = 1u << 20;
    const float nan = NAN, low = -1.0f;
    expect_forged(p, n, at, &dim, 4);              /* not this network's layout */
    expect_forged(p, n, at + 4, &k, 4);            /* classes */
    expect_forged(p, n, at + 8, &zero, 4);         /* no calibration */
    expect_forged(p, n, at + 8, &big, 4);          /* a count past the section */
    expect_forged(p, n, at + 12 + 4 * 5, &nan, 4); /* a NaN in W */
    expect_forged(p, n, at + 12 + 4 * (d * d + 10 * d + 7), &low, 4); /* calibration unsorted */
    free(p);
    free(fit), free(cal);
    cnn_ctx_free(ctx);
    cnn_model_free(m);
}

/* ---- the trainer ------------------------------------------------------------------------------
 */

static void test_trainer_fit(void **state) {
    (void)state;
    for (int val = 100; val <= 600; val += 500) { /* calibrated on training images, then on val */
        struct cnn_model *m = random_model("conv 4 3 pad=1, bn, relu, maxpool 2, dense 10", 13);
        struct cnn_train_cfg cfg;
        cnn_train_cfg_default(&cfg);
        cfg.epochs = 1, cfg.batch = 97, cfg.val = val, cfg.threads = 2;
        struct cnn_trainer *t = NULL;
        assert_int_equal(cnn_trainer_new(m, &cfg, &t), CNN_OK);
        assert_int_equal(cnn_trainer_fit_typicality(t, &data, m), CNN_ERR_ARG); /* not run yet */
        assert_int_equal(cnn_trainer_run(t, &data, NULL), CNN_OK);
        assert_int_equal(cnn_trainer_fit_typicality(t, &data, m), CNN_OK);
        assert_true(cnn_model_has_typicality(m));
        assert_int_equal(m->typicality->n_cal, val >= 500 ? val : (N_IMG - val) / 5);
        cnn_trainer_free(t);
        cnn_model_free(m);
    }
}

static int group_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_typicality.XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    make_data();
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    rm_tree(tmpdir);
    free(data.images);
    free(data.labels);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_features_match_naive),
        cmocka_unit_test(test_fit_is_mahalanobis),
        cmocka_unit_test(test_of_score_edges),
        cmocka_unit_test(test_file_roundtrip_and_forged),
        cmocka_unit_test(test_trainer_fit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
