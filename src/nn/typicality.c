/*
 * typicality.c - how much an input looks like the images a model was trained on.
 *
 * A softmax is confident far from its data: a letter X or H drawn on the serve page reads as a
 * 4 at 85-98%. So beside the probabilities, the model keeps a class-conditional Gaussian with
 * one shared covariance (the "Mahalanobis" out-of-distribution score of Lee et al., 2018) over
 * features the forward pass computes anyway:
 *
 *   f (dim)  = the channel means of every layer that shrinks the picture (a pool or a strided
 *              conv whose output is still spatial; after the activation that follows it, if
 *              any), then the logits (k). The default network: 32 + 64 + 10 = 106.
 *   score(f) = min over classes c of (f - mu_c)^T S^-1 (f - mu_c)
 *            = min_c |W f - W mu_c|^2,   W = L^-1 where L L^T = S (Cholesky, LAPACK)
 *   typicality(f) = the fraction of calibration images (the validation split: digits the
 *              network never trained on) whose score is >= score(f). Digits like the
 *              training digits get values spread over (0, 1]; a letter gets ~0.
 *
 * Fitting: mu_c and S from up to FIT_MAX training images (inference mode, no augmentation);
 * S's diagonal grows by RIDGE of itself, and by a floor so that a channel that never fires on
 * the training data does not make any activation of it infinitely atypical.
 * Stored: W (dim, dim) lower triangular, W mu (k, dim), and up to CAL_MAX calibration scores
 * in ascending order (model_io.c's TYPI section).
 */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Training images the Gaussian is fitted on. 10,000 against 20,000 (2026-12-02, `fast` and
 * `best` models): the same flags to within 1.2 points on MNIST's test digits, Fashion-MNIST,
 * inverted digits and digits wrapped 7 pixels round, and 0.4 s less at the end of a `fast`
 * run (its fit is 25,000 inferences at 20,000 images/s). */
#define FIT_MAX 10000
#define FIT_CHUNK 256 /* images per forward pass while fitting */
#define RIDGE 1e-3    /* S_jj += RIDGE * S_jj + FLOOR * mean(diag S) */
#define FLOOR 1e-6

/* LAPACK's Cholesky factorisation, in OpenBLAS (which has no lapacke.h in Debian's package). */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);

static int is_spatial(struct cnn_shape s) {
    return s.h * s.w > 1;
}

int cnn_typicality_taps(const struct cnn_layer *l) {
    return is_spatial(l->out) && (size_t)l->out.h * l->out.w < (size_t)l->in.h * l->in.w;
}

int cnn_typicality_layout(const struct cnn_model *m, int *tap_off) {
    int dim = 0;
    for (int i = 0; i < m->n_layers; i++) tap_off[i] = -1;
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        if (!cnn_typicality_taps(l)) continue;
        int t = i; /* past the activations that follow, so fusion never changes what is read */
        while (t + 1 < m->n_layers && m->layers[t + 1].ops->is_act) t++;
        tap_off[t] = dim;
        dim += l->out.c;
    }
    return dim + m->n_classes;
}

void cnn_typicality_free(struct cnn_typicality *ty) {
    if (!ty) return;
    free(ty->w);
    free(ty->wmu);
    free(ty->cal);
    free(ty);
}

struct cnn_typicality *cnn_typicality_alloc(int dim, int k, int n_cal) {
    struct cnn_typicality *ty = calloc(1, sizeof *ty);
    if (!ty) return NULL;
    ty->dim = dim, ty->k = k, ty->n_cal = n_cal;
    ty->w = malloc((size_t)dim * dim * sizeof(float));
    ty->wmu = malloc((size_t)k * dim * sizeof(float));
    ty->cal = malloc((size_t)(n_cal > 0 ? n_cal : 1) * sizeof(float));
    if (!ty->w || !ty->wmu || !ty->cal) {
        cnn_typicality_free(ty);
        return NULL;
    }
    return ty;
}

/* min_c |W f - W mu_c|^2. f (dim); wf (dim) scratch. */
float cnn_typicality_score(const struct cnn_typicality *ty, const float *f, float *wf) {
    const int d = ty->dim;
    memcpy(wf, f, (size_t)d * sizeof(float));
    cblas_strmv(CblasRowMajor, CblasLower, CblasNoTrans, CblasNonUnit, d, ty->w, d, wf, 1);
    float best = INFINITY;
    for (int c = 0; c < ty->k; c++) {
        const float *wm = ty->wmu + (size_t)c * d;
        float s = 0.0f;
        for (int j = 0; j < d; j++) s += (wf[j] - wm[j]) * (wf[j] - wm[j]);
        if (s < best) best = s;
    }
    return best;
}

/* The same in double with plain loops and W applied in full: the reference tests compare. */
double cnn_typicality_score_naive(const struct cnn_typicality *ty, const float *f) {
    const int d = ty->dim;
    double best = INFINITY;
    for (int c = 0; c < ty->k; c++) {
        double s = 0.0;
        for (int j = 0; j < d; j++) {
            double v = 0.0;
            for (int l = 0; l < d; l++) v += (double)ty->w[(size_t)j * d + l] * f[l];
            v -= ty->wmu[(size_t)c * d + j];
            s += v * v;
        }
        if (s < best) best = s;
    }
    return best;
}

float cnn_typicality_of_score(const struct cnn_typicality *ty, float score) {
    if (!(score == score)) return 0.0f; /* NaN features: nothing like the training data */
    int lo = 0, hi = ty->n_cal;         /* the first calibration score >= score */
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (ty->cal[mid] < score)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (float)(ty->n_cal - lo) / (float)ty->n_cal;
}

/* Features (n, dim) of the images idx[0..n) of data. */
static int features_of(const struct cnn_model *m, struct cnn_ctx *ctx, const struct cnn_dataset *d,
                       const int *idx, int n, int dim, float *out) {
    const size_t in = (size_t)d->h * d->w;
    uint8_t *px = malloc((size_t)FIT_CHUNK * in);
    float *probs = malloc((size_t)FIT_CHUNK * m->n_classes * sizeof(float));
    int rc = px && probs ? CNN_OK : cnn_fail(CNN_ERR_NOMEM, "out of memory fitting typicality");
    for (int i0 = 0; !rc && i0 < n; i0 += FIT_CHUNK) {
        const int b = n - i0 < FIT_CHUNK ? n - i0 : FIT_CHUNK;
        for (int j = 0; j < b; j++) memcpy(px + j * in, d->images + (size_t)idx[i0 + j] * in, in);
        rc = cnn_predict_features(m, ctx, NULL, px, b, probs, out + (size_t)i0 * dim);
    }
    free(px);
    free(probs);
    return rc;
}

/* Class means (k, dim) and the shared covariance S (dim, dim) of f (n, dim), in double. */
static int gaussian_of(const float *f, const uint8_t *labels, int n, int dim, int k, double *mu,
                       double *S) {
    long count[CNN_MAX_CLASSES] = {0};
    memset(mu, 0, (size_t)k * dim * sizeof(double));
    for (int i = 0; i < n; i++) {
        count[labels[i]]++;
        for (int j = 0; j < dim; j++) mu[(size_t)labels[i] * dim + j] += f[(size_t)i * dim + j];
    }
    for (int c = 0; c < k; c++) {
        if (count[c] < 2)
            return cnn_fail(CNN_ERR_ARG, "class %d has %ld training images: too few to model", c,
                            count[c]);
        for (int j = 0; j < dim; j++) mu[(size_t)c * dim + j] /= (double)count[c];
    }
    double *v = malloc((size_t)FIT_CHUNK * dim * sizeof(double));
    if (!v) return cnn_fail(CNN_ERR_NOMEM, "out of memory fitting typicality");
    memset(S, 0, (size_t)dim * dim * sizeof(double));
    for (int i0 = 0; i0 < n; i0 += FIT_CHUNK) {
        const int b = n - i0 < FIT_CHUNK ? n - i0 : FIT_CHUNK;
        for (int r = 0; r < b; r++)
            for (int j = 0; j < dim; j++)
                v[(size_t)r * dim + j] =
                    f[(size_t)(i0 + r) * dim + j] - mu[(size_t)labels[i0 + r] * dim + j];
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, dim, b, 1.0 / n, v, dim, 1.0, S, dim);
    }
    free(v);
    /* features differ in scale by 10^4 (channel means against logits): the ridge is each
     * feature's own, with a floor for a channel that never fires */
    double tr = 0.0;
    for (int j = 0; j < dim; j++) tr += S[(size_t)j * dim + j];
    const double floor = FLOOR * (tr > 0 ? tr / dim : 1.0);
    for (int j = 0; j < dim; j++) S[(size_t)j * dim + j] += RIDGE * S[(size_t)j * dim + j] + floor;
    return CNN_OK;
}

/* W = L^-1 (lower) and W mu from S = L L^T, into ty. */
static int whiten(struct cnn_typicality *ty, double *S, const double *mu) {
    const int d = ty->dim;
    int info = 0;
    dpotrf_("U", &d, S, &d, &info); /* column-major "U" of row-major S: its lower triangle */
    if (info) return cnn_fail(CNN_ERR_NAN, "feature covariance is not positive definite");
    double *winv = calloc((size_t)d * d, sizeof(double));
    if (!winv) return cnn_fail(CNN_ERR_NOMEM, "out of memory fitting typicality");
    for (int j = 0; j < d; j++) winv[(size_t)j * d + j] = 1.0;
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, d, d, 1.0, S, d,
                winv, d);
    for (int a = 0; a < d; a++)
        for (int b = 0; b < d; b++)
            ty->w[(size_t)a * d + b] = b <= a ? (float)winv[(size_t)a * d + b] : 0.0f;
    for (int c = 0; c < ty->k; c++)
        for (int a = 0; a < d; a++) {
            double s = 0.0;
            for (int b = 0; b <= a; b++) s += winv[(size_t)a * d + b] * mu[(size_t)c * d + b];
            ty->wmu[(size_t)c * d + a] = (float)s;
        }
    free(winv);
    return CNN_OK;
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Evenly spaced picks of at most max of idx[0..n) into out; returns the count. */
static int spread(const int *idx, int n, int max, int *out) {
    const int c = n < max ? n : max;
    for (int i = 0; i < c; i++) out[i] = idx[(long)i * n / c];
    return c;
}

static int fit_with(struct cnn_model *m, struct cnn_ctx *ctx, const struct cnn_dataset *d,
                    const int *fit_idx, int n_fit, const int *cal_idx, int n_cal,
                    struct cnn_typicality *ty) {
    const int dim = ty->dim, k = m->n_classes, n = n_fit > n_cal ? n_fit : n_cal;
    float *f = malloc((size_t)n * dim * sizeof(float));
    uint8_t *labels = malloc((size_t)n_fit + 1);
    double *mu = malloc((size_t)k * dim * sizeof(double));
    double *S = malloc((size_t)dim * dim * sizeof(double));
    float *wf = malloc((size_t)dim * sizeof(float));
    int rc = f && labels && mu && S && wf
                 ? CNN_OK
                 : cnn_fail(CNN_ERR_NOMEM, "out of memory fitting typicality");
    if (!rc) rc = features_of(m, ctx, d, fit_idx, n_fit, dim, f);
    for (int i = 0; !rc && i < n_fit; i++) labels[i] = d->labels[fit_idx[i]];
    if (!rc) rc = gaussian_of(f, labels, n_fit, dim, k, mu, S);
    if (!rc) rc = whiten(ty, S, mu);
    if (!rc) rc = features_of(m, ctx, d, cal_idx, n_cal, dim, f);
    for (int i = 0; !rc && i < n_cal; i++)
        ty->cal[i] = cnn_typicality_score(ty, f + (size_t)i * dim, wf);
    if (!rc) qsort(ty->cal, (size_t)n_cal, sizeof(float), cmp_float);
    for (int i = 0; !rc && i < n_cal; i++)
        if (!isfinite(ty->cal[i])) rc = cnn_fail(CNN_ERR_NAN, "typicality scores are not finite");
    free(f), free(labels), free(mu), free(S), free(wf);
    return rc;
}

int cnn_typicality_fit(struct cnn_model *m, const struct cnn_dataset *d, const int *fit_idx,
                       int n_fit, const int *cal_idx, int n_cal, int threads) {
    if (n_fit < 2 || n_cal < 1)
        return cnn_fail(CNN_ERR_ARG, "typicality needs training and calibration images (%d, %d)",
                        n_fit, n_cal);
    int *tap = malloc((size_t)m->n_layers * sizeof(int));
    int *fit = malloc((size_t)FIT_MAX * sizeof(int));
    int *cal = malloc((size_t)CNN_TYPICALITY_CAL_MAX * sizeof(int));
    struct cnn_ctx *ctx = NULL;
    struct cnn_typicality *ty = NULL;
    int rc =
        tap && fit && cal ? CNN_OK : cnn_fail(CNN_ERR_NOMEM, "out of memory fitting typicality");
    if (!rc) {
        const int dim = cnn_typicality_layout(m, tap);
        n_fit = spread(fit_idx, n_fit, FIT_MAX, fit);
        n_cal = spread(cal_idx, n_cal, CNN_TYPICALITY_CAL_MAX, cal);
        if (dim > CNN_TYPICALITY_DIM_MAX)
            rc = cnn_fail(CNN_ERR_LIMIT, "typicality would model %d features (limit %d)", dim,
                          CNN_TYPICALITY_DIM_MAX);
        else if (!(ty = cnn_typicality_alloc(dim, m->n_classes, n_cal)))
            rc = cnn_fail(CNN_ERR_NOMEM, "out of memory fitting typicality");
    }
    if (!rc) rc = cnn_ctx_new(m, FIT_CHUNK, threads, &ctx);
    if (!rc) rc = fit_with(m, ctx, d, fit, n_fit, cal, n_cal, ty);
    if (!rc) {
        cnn_typicality_free(m->typicality);
        m->typicality = ty, ty = NULL;
    }
    cnn_ctx_free(ctx);
    cnn_typicality_free(ty);
    free(tap), free(fit), free(cal);
    return rc;
}

int cnn_model_has_typicality(const struct cnn_model *m) {
    return m && m->typicality != NULL;
}
