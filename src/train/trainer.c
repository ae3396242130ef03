/*
 * trainer.c - a trainer you can step: one optimizer step on a batch, one epoch over a dataset
 * (validation split, shuffling, batches, augmentation, the learning-rate schedule,
 * validation), and the run of all epochs with its hooks. Checkpoints are checkpoint.c's.
 *
 * Reproducibility is by construction rather than by saving generator state: every random
 * choice is drawn from a generator seeded by a hash of (seed, epoch, batch), so
 *   - the validation split uses a fixed seed of its own (the same images whatever --seed),
 *   - epoch e's shuffle depends only on (seed, e),
 *   - batch b's augmentation and dropout depend only on (seed, e, b).
 * A checkpoint therefore needs only the parameters, batch-norm state, optimizer moments,
 * the step counters and the position (epoch, batch), and a resumed run ends with the same
 * weights, bit for bit, as one that never stopped (same seed and thread count).
 *
 * Sizes: the batches of an epoch come from one plan (epoch_plan) and the trainer's context is
 * sized from it (ensure_ctx), so no batch, validation chunk or final check can be larger than
 * the buffers it is written into. A last batch of one image is merged into the one before it
 * (batch norm cannot learn from one image), so the largest batch can be B + 1.
 *
 * Data parallel (cnn_trainer_set_ranks): every process runs this same code on the same data
 * and seed, so all draw the same split, shuffle and augmentation. Process r of R computes
 * only its share of each batch, images [n*r/R, n*(r+1)/R) (the share a thread of a team of R
 * gets in ctx.c), and the reducer sums what the whole batch needs: batch-norm statistics,
 * gradients, the step's loss and accuracy, and validation. A last batch smaller than R is
 * merged into the one before it, so every process has an image of every batch.
 * The library never prints and never names a file: progress and checkpoints leave through
 * the caller's hooks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "train/trainer.h"

#define VAL_SPLIT_SEED 0x76616c5f73706c74ULL /* "val_splt": fixed, independent of --seed */

void cnn_train_cfg_default(struct cnn_train_cfg *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->size = sizeof *cfg;
    cfg->epochs = 10;
    cfg->batch = 128;
    cnn_optim_cfg_default(&cfg->optim, CNN_OPT_ADAM);
    cfg->sched.kind = CNN_SCHED_CONST;
    cfg->sched.lr = 1e-3f;
    cfg->sched.gamma = 0.1f;
    cfg->sched.step_epochs = 1;
    cfg->sched.warmup = 0.2f;
    cfg->seed = 1;
    cfg->val = 5000;
}

static uint64_t mix(uint64_t a, uint64_t b) {
    struct cnn_rng r = {a ^ (b * 0xd1342543de82ef95ULL)};
    return cnn_rng_u64(&r);
}

int cnn_train_cfg_check(const struct cnn_train_cfg *c) {
    if (c->epochs < 1 || c->epochs > 100000)
        return cnn_fail(CNN_ERR_ARG, "epochs %d out of range [1, 100000]", c->epochs);
    if (c->batch < 1 || c->batch > 65536)
        return cnn_fail(CNN_ERR_ARG, "batch size %d out of range [1, 65536]", c->batch);
    if (!(c->sched.lr > 0.0f && c->sched.lr < 100.0f))
        return cnn_fail(CNN_ERR_ARG, "learning rate %g out of range (0, 100)", (double)c->sched.lr);
    if (c->sched.kind < CNN_SCHED_CONST || c->sched.kind > CNN_SCHED_ONECYCLE)
        return cnn_fail(CNN_ERR_ARG, "unknown schedule %d", c->sched.kind);
    if (!(c->label_smoothing >= 0.0f && c->label_smoothing < 1.0f))
        return cnn_fail(CNN_ERR_ARG, "label smoothing %g out of range [0, 1)",
                        (double)c->label_smoothing);
    if (c->augment < 0 || c->augment >= CNN_AUG_LEVELS)
        return cnn_fail(CNN_ERR_ARG, "augment level %d out of range [0, %d]", c->augment,
                        CNN_AUG_LEVELS - 1);
    if (c->val < 0) return cnn_fail(CNN_ERR_ARG, "validation size %d is negative", c->val);
    if (c->limit < 0) return cnn_fail(CNN_ERR_ARG, "image limit %d is negative", c->limit);
    if (!(c->ema >= 0.0f && c->ema < 1.0f))
        return cnn_fail(CNN_ERR_ARG, "weight average decay %g out of range [0, 1)", (double)c->ema);
    if (c->threads < 0 || c->threads > 1024)
        return cnn_fail(CNN_ERR_ARG, "thread count %d out of range [0, 1024]", c->threads);
    return cnn_optim_check(&c->optim);
}

/* A caller's struct of `size` bytes into a full one: the fields it knows, defaults for the
 * rest (a program built against an older cnn.h). A larger size is a newer header. */
static int cfg_import(const struct cnn_train_cfg *in, struct cnn_train_cfg *out) {
    cnn_train_cfg_default(out);
    if (in->size < offsetof(struct cnn_train_cfg, epochs) || in->size > sizeof *out)
        return cnn_fail(CNN_ERR_ARG,
                        "cnn_train_cfg.size is %zu, this libcnn knows sizes up to %zu (set it "
                        "with cnn_train_cfg_default)",
                        in->size, sizeof *out);
    memcpy(out, in, in->size);
    out->size = sizeof *out;
    return CNN_OK;
}

int cnn_trainer_new(struct cnn_model *m, const struct cnn_train_cfg *cfg,
                    struct cnn_trainer **out) {
    *out = NULL;
    struct cnn_trainer *t = calloc(1, sizeof *t);
    if (!t) return cnn_fail(CNN_ERR_NOMEM, "out of memory");
    int rc = cfg_import(cfg, &t->cfg);
    if (!rc) rc = cnn_train_cfg_check(&t->cfg);
    if (!rc) rc = cnn_optim_new(m, &t->cfg.optim, &t->opt);
    if (!rc && t->cfg.ema > 0.0f) {
        t->avg = malloc((m->n_params + m->n_state + 1) * sizeof(float));
        if (!t->avg)
            rc = cnn_fail(CNN_ERR_NOMEM, "out of memory");
        else {
            memcpy(t->avg, m->params, m->n_params * sizeof(float));
            memcpy(t->avg + m->n_params, m->state, m->n_state * sizeof(float));
        }
    }
    if (rc) {
        cnn_trainer_free(t);
        return rc;
    }
    t->model = m;
    t->ranks = 1;
    t->best_val = -1.0;
    t->per_epoch = 1;
    *out = t;
    return CNN_OK;
}

void cnn_trainer_free(struct cnn_trainer *t) {
    if (!t) return;
    cnn_optim_free(t->opt);
    cnn_ctx_free(t->ctx);
    free(t->train_idx);
    free(t->val_idx);
    free(t->order);
    free(t->avg);
    free(t);
}

void cnn_trainer_set_reducer(struct cnn_trainer *t, const struct cnn_reducer *r) {
    memset(&t->red, 0, sizeof t->red);
    if (r) t->red.r = *r;
}

int cnn_trainer_set_ranks(struct cnn_trainer *t, int rank, int ranks) {
    if (ranks < 1 || ranks > 65536 || rank < 0 || rank >= ranks)
        return cnn_fail(CNN_ERR_ARG, "rank %d of %d: ranks must be in [1, 65536] and the rank "
                        "in [0, ranks)", rank, ranks);
    if (t->cfg.batch < ranks)
        return cnn_fail(CNN_ERR_ARG, "batch size %d is smaller than the %d ranks sharing it",
                        t->cfg.batch, ranks);
    t->rank = rank, t->ranks = ranks;
    return CNN_OK;
}

/* Several ranks need a reducer to add up their shares. */
static int check_ranks(const struct cnn_trainer *t) {
    if (t->ranks > 1 && !t->red.r.sum)
        return cnn_fail(CNN_ERR_ARG, "%d ranks but no reducer (cnn_trainer_set_reducer)",
                        t->ranks);
    return CNN_OK;
}

/* This process's share of a batch of n: images [*i0, *i0 + the count returned). */
static int share_of(const struct cnn_trainer *t, int n, int *i0) {
    *i0 = (int)((long)n * t->rank / t->ranks);
    return (int)((long)n * (t->rank + 1) / t->ranks) - *i0;
}

/* v[0..n) summed over the ranks (nothing to do for one). */
static int reduce_f64(struct cnn_trainer *t, double *v, size_t n) {
    const int rc = t->ranks > 1 ? t->red.r.sum(v, n, CNN_F64, t->red.r.user) : 0;
    if (rc)
        return cnn_fail(CNN_ERR_REDUCE, "the reducer failed (status %d) after step %ld", rc,
                        t->step);
    return CNN_OK;
}

int cnn_trainer_epochs_done(const struct cnn_trainer *t) { return t->epoch; }
long cnn_trainer_steps_done(const struct cnn_trainer *t) { return t->step; }
double cnn_trainer_best_val(const struct cnn_trainer *t) { return t->best_val; }

int cnn_trainer_cfg(const struct cnn_trainer *t, struct cnn_train_cfg *cfg) {
    if (cfg->size < offsetof(struct cnn_train_cfg, epochs) || cfg->size > sizeof *cfg)
        return cnn_fail(CNN_ERR_ARG, "cnn_train_cfg.size is %zu: set it first", cfg->size);
    const size_t n = cfg->size;
    memcpy(cfg, &t->cfg, n);
    cfg->size = n;
    return CNN_OK;
}

/* The context holds batches of n: grown (made anew) when it does not. */
static int ensure_ctx(struct cnn_trainer *t, int n) {
    if (t->ctx && t->ctx->max_batch >= n) return CNN_OK;
    struct cnn_ctx *ctx;
    const int rc = cnn_ctx_new_train(t->model, n, t->cfg.threads, &ctx);
    if (rc) return rc;
    cnn_ctx_free(t->ctx);
    t->ctx = ctx;
    return CNN_OK;
}

/* ---- one step ----------------------------------------------------------------------------- */

static void swap_floats(float *a, float *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const float x = a[i];
        a[i] = b[i];
        b[i] = x;
    }
}

/* Exchange the model's params and state with t->avg (cfg.ema only). */
static void swap_average(struct cnn_trainer *t) {
    struct cnn_model *m = t->model;
    swap_floats(m->params, t->avg, m->n_params);
    swap_floats(m->state, t->avg + m->n_params, m->n_state);
    m->prepared = 0;
    t->swapped = !t->swapped;
}

/* a <- d a + (1 - d) w over params and state, after step k = t->step (cfg.ema in cnn.h). */
static void update_average(struct cnn_trainer *t) {
    const struct cnn_model *m = t->model;
    const float k = (float)t->step, r = (1.0f + k) / (10.0f + k);
    const float d = r < t->cfg.ema ? r : t->cfg.ema, e = 1.0f - d;
    float *a = t->avg;
    for (size_t i = 0; i < m->n_params; i++) a[i] = d * a[i] + e * m->params[i];
    a += m->n_params;
    for (size_t i = 0; i < m->n_state; i++) a[i] = d * a[i] + e * m->state[i];
}

/* Forward, loss, backward, reduce, update; x and y are the context's batch buffers or the
 * caller's, holding this rank's share (n images from i0) of a batch of n_total. seed is the
 * forward's random seed (dropout). *loss_out and *correct_out (may be NULL) are the whole
 * batch's, *lr_out (may be NULL) the rate the step was scheduled at. Runs inside
 * cnn_threads_enter. */
static int step_batch(struct cnn_trainer *t, const float *x, const uint8_t *y, int n, int i0,
                      int n_total, uint64_t seed, float *loss_out, int *correct_out,
                      double *lr_out) {
    struct cnn_model *m = t->model;
    struct cnn_ctx *ctx = t->ctx;
    float loss;
    int correct;
    if (t->swapped) swap_average(t); /* training goes on from the raw weights */
    m->prepared = 0; /* the step writes the running statistics, then the params: inference on
                      * the model works from them alone from now on */
    t->red.rc = 0;
    t->red.i0 = t->ranks > 1 ? i0 : 0;
    t->red.n_total = t->ranks > 1 ? n_total : 0;
    cnn_ctx_train_batch(ctx, m, x, y, n, t->cfg.label_smoothing, seed, &t->red, &loss,
                        &correct);
    if (!t->red.rc && t->red.r.sum)
        t->red.rc = t->red.r.sum(ctx->grads, m->n_params, CNN_F32, t->red.r.user);
    if (!t->red.rc && t->ranks > 1) { /* the whole batch's loss and accuracy */
        double s[2] = {(double)loss * n, correct};
        t->red.rc = t->red.r.sum(s, 2, CNN_F64, t->red.r.user);
        loss = (float)(s[0] / n_total);
        correct = (int)s[1];
    }
    if (t->red.rc)
        return cnn_fail(CNN_ERR_REDUCE, "the reducer failed (status %d) at step %ld", t->red.rc,
                        t->step + 1);
    if (loss_out) *loss_out = loss;
    if (correct_out) *correct_out = correct;
    const long total = t->per_epoch * t->cfg.epochs;
    const float lr = cnn_sched_lr(&t->cfg.sched, t->step, total, t->per_epoch);
    if (lr_out) *lr_out = lr;
    if (!isfinite(loss))
        return cnn_fail(CNN_ERR_NAN,
                        "loss became %s at step %ld (learning rate %g); lower the "
                        "learning rate",
                        isnan(loss) ? "NaN" : "Inf", t->step + 1, (double)lr);
    const int rc = cnn_optim_step(t->opt, m->params, ctx->grads, m->decay_mask, m->n_params, lr);
    if (rc) return rc;
    if (t->avg) update_average(t);
    t->step++;
    return CNN_OK;
}

int cnn_trainer_step(struct cnn_trainer *t, const float *x, const uint8_t *labels, int n,
                     float *loss, int *correct) {
    if (n < t->ranks || n > 65536)
        return cnn_fail(CNN_ERR_ARG, "batch of %d images%s", n,
                        n > 0 && n < t->ranks ? ": fewer than the ranks sharing it" : "");
    for (int i = 0; i < n; i++)
        if (labels[i] >= t->model->n_classes)
            return cnn_fail(CNN_ERR_ARG, "label %d of image %d is not below %d", labels[i], i,
                            t->model->n_classes);
    int i0, rc = check_ranks(t);
    const int mine = share_of(t, n, &i0);
    if (!rc) rc = ensure_ctx(t, mine);
    if (rc) return rc;
    const int saved = cnn_threads_enter(t->ctx->threads);
    rc = step_batch(t, x + (size_t)i0 * cnn_shape_size(t->model->in), labels + i0, mine, i0, n,
                    mix(t->cfg.seed ^ 0x73746570ULL, (uint64_t)t->step), loss, correct, NULL);
    cnn_threads_leave(saved);
    return rc;
}

/* ---- the data of an epoch ----------------------------------------------------------------- */

/* Batches of one epoch over n_train images with batch size B; batch b holds images
 * [b * B, b * B + batch_size(b)). A last batch smaller than min_last is merged into the one
 * before it. */
struct epoch_plan {
    int n_train, B, batches, max_batch;
};

static struct epoch_plan epoch_plan(int n_train, int B, int min_last) {
    struct epoch_plan p = {n_train, B, (n_train + B - 1) / B, 0};
    const int rest = n_train % B;
    if (p.batches > 1 && rest > 0 && rest < min_last) p.batches--;
    const int last = n_train - (p.batches - 1) * B; /* up to B + min_last - 1 after a merge */
    p.max_batch = p.batches == 1 ? n_train : last > B ? last : B;
    return p;
}

static int batch_size(const struct epoch_plan *p, int b) {
    return b == p->batches - 1 ? p->n_train - b * p->B : p->B;
}

/* Shuffle idx[0..n) with a generator seeded by seed (Fisher-Yates). */
static void shuffle(int *idx, int n, uint64_t seed) {
    struct cnn_rng r;
    cnn_rng_seed(&r, seed);
    for (int i = n - 1; i > 0; i--) {
        const int j = (int)(cnn_rng_u64(&r) % (uint64_t)(i + 1));
        const int tmp = idx[i];
        idx[i] = idx[j];
        idx[j] = tmp;
    }
}

int cnn_val_split(int n, int n_val, int *val_idx, int *train_idx) {
    if (n < 1 || n_val < 0 || n_val >= n)
        return cnn_fail(CNN_ERR_ARG, "cannot hold out %d of %d images", n_val, n);
    int *perm = malloc(sizeof(int) * (size_t)n);
    char *is_val = calloc((size_t)n, 1);
    if (!perm || !is_val) {
        free(perm), free(is_val);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory splitting %d images", n);
    }
    for (int i = 0; i < n; i++) perm[i] = i;
    shuffle(perm, n, VAL_SPLIT_SEED);
    for (int i = n - n_val; i < n; i++) is_val[perm[i]] = 1; /* the last n_val of it */
    for (int i = 0, a = 0, b = 0; i < n; i++) {
        if (is_val[i])
            val_idx[b++] = i;
        else if (train_idx)
            train_idx[a++] = i;
    }
    free(perm), free(is_val);
    return CNN_OK;
}

/* This run's split of 0..n-1 (cnn_val_split), and room for the epoch's order. */
static int split(struct cnn_trainer *t, int n) {
    free(t->train_idx), free(t->val_idx), free(t->order);
    t->n_val = t->cfg.val, t->n_train = n - t->cfg.val;
    t->train_idx = malloc(sizeof(int) * (size_t)n);
    t->val_idx = malloc(sizeof(int) * (size_t)(t->n_val + 1));
    t->order = malloc(sizeof(int) * (size_t)n);
    const int rc = !t->train_idx || !t->val_idx || !t->order
                       ? cnn_fail(CNN_ERR_NOMEM, "out of memory splitting %d images", n)
                       : cnn_val_split(n, t->n_val, t->val_idx, t->train_idx);
    if (rc) t->split_of = NULL;
    return rc;
}

void cnn_split_fingerprints(const struct cnn_dataset *d, int n, const int *val_idx, int n_val,
                            char data_fp[24], char val_fp[24]) {
    const size_t hw = (size_t)d->h * d->w;
    uLong ci = crc32(0L, Z_NULL, 0), cl = ci, cv = ci, cvl = ci;
    for (size_t off = 0, total = (size_t)n * hw; off < total;) { /* uInt-sized pieces */
        const size_t piece = total - off < (1u << 30) ? total - off : (1u << 30);
        ci = crc32(ci, d->images + off, (uInt)piece);
        off += piece;
    }
    cl = crc32(cl, d->labels, (uInt)n);
    for (int i = 0; i < n_val; i++) {
        const uint32_t v = (uint32_t)val_idx[i];
        const uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
        cv = crc32(cv, le, 4);
        cvl = crc32(cvl, d->labels + val_idx[i], 1);
    }
    snprintf(data_fp, 24, "%08lx%08lx", ci & 0xffffffffUL, cl & 0xffffffffUL);
    snprintf(val_fp, 24, "%08lx%08lx", cv & 0xffffffffUL, cvl & 0xffffffffUL);
}

/* Input normalisation from the training images (a fresh run only). */
static void set_norm_from(struct cnn_trainer *t, const struct cnn_dataset *d) {
    const size_t hw = (size_t)d->h * d->w;
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < t->n_train; i++) {
        const uint8_t *p = d->images + (size_t)t->train_idx[i] * hw;
        for (size_t q = 0; q < hw; q++) sum += p[q], sq += (double)p[q] * p[q];
    }
    const double cnt = (double)t->n_train * (double)hw, mean = sum / cnt / 255.0;
    const double var = sq / cnt / (255.0 * 255.0) - mean * mean;
    cnn_model_set_norm(t->model, (float)mean, (float)sqrt(var > 1e-12 ? var : 1.0));
}

/* t's configuration becomes c, checked, if t has not taken a step; `what` names the change. */
static int change_before_start(struct cnn_trainer *t, const struct cnn_train_cfg *c,
                               const char *what) {
    if (t->step || t->epoch || t->batch)
        return cnn_fail(CNN_ERR_ARG, "the %s of a run that has taken steps is fixed", what);
    const int rc = cnn_train_cfg_check(c);
    if (rc == CNN_OK) t->cfg = *c;
    return rc;
}

int cnn_trainer_set_augment(struct cnn_trainer *t, int augment) {
    struct cnn_train_cfg c = t->cfg;
    c.augment = augment;
    return change_before_start(t, &c, "augmentation");
}

int cnn_trainer_set_epochs(struct cnn_trainer *t, int epochs) {
    struct cnn_train_cfg c = t->cfg;
    c.epochs = epochs;
    return change_before_start(t, &c, "number of epochs");
}

int cnn_trainer_fit_typicality(const struct cnn_trainer *t, const struct cnn_dataset *data,
                               struct cnn_model *m) {
    if (t->split_of != data || !t->train_idx)
        return cnn_fail(CNN_ERR_ARG, "typicality is fitted on the data the run trained on");
    if (t->n_val >= 500)
        return cnn_typicality_fit(m, data, t->train_idx, t->n_train, t->val_idx, t->n_val,
                                  t->cfg.threads);
    /* too few validation images: calibrate on every fifth training image, fit on the rest */
    int *fit = malloc(sizeof(int) * (size_t)t->n_train), *cal = fit, n_fit = 0, n_cal = 0;
    if (!fit) return cnn_fail(CNN_ERR_NOMEM, "out of memory fitting typicality");
    for (int i = 0; i < t->n_train; i++)
        if (i % 5 != 4) fit[n_fit++] = t->train_idx[i];
    cal = fit + n_fit;
    for (int i = 4; i < t->n_train; i += 5) cal[n_cal++] = t->train_idx[i];
    const int rc = cnn_typicality_fit(m, data, fit, n_fit, cal, n_cal, t->cfg.threads);
    free(fit);
    return rc;
}

/* Check data against the model and this run, split it (once per dataset), plan the epoch and
 * size the context for it. */
static int prepare(struct cnn_trainer *t, const struct cnn_dataset *data, struct epoch_plan *p) {
    const struct cnn_model *m = t->model;
    const int n = t->cfg.limit > 0 && t->cfg.limit < data->n ? t->cfg.limit : data->n;
    if (data->h != m->in.h || data->w != m->in.w || m->in.c != 1)
        return cnn_fail(CNN_ERR_ARG, "images are %dx%d but the network expects %dx%dx%d",
                        data->h, data->w, m->in.c, m->in.h, m->in.w);
    if (data->n_classes != m->n_classes)
        return cnn_fail(CNN_ERR_ARG, "the data has %d classes but the network outputs %d",
                        data->n_classes, m->n_classes);
    if (t->cfg.val >= n)
        return cnn_fail(CNN_ERR_ARG, "validation size %d leaves no training images (of %d)",
                        t->cfg.val, n);
    if (t->epoch >= t->cfg.epochs)
        return cnn_fail(CNN_ERR_ARG, "all %d epochs are done", t->cfg.epochs);
    if (n - t->cfg.val < t->ranks || t->cfg.batch < t->ranks)
        return cnn_fail(CNN_ERR_ARG, "%d training images in batches of %d cannot be shared by "
                        "%d ranks", n - t->cfg.val, t->cfg.batch, t->ranks);
    int rc = check_ranks(t);
    if (rc) return rc;
    if (t->split_of != data || t->split_n != n) {
        if ((rc = split(t, n))) return rc;
        char dfp[24], vfp[24];
        cnn_split_fingerprints(data, n, t->val_idx, t->n_val, dfp, vfp);
        if (t->data_fp[0] && strcmp(dfp, t->data_fp))
            return cnn_fail(CNN_ERR_ARG,
                            "the training data differs from the data this run started on "
                            "(fingerprint %s, expected %s)",
                            dfp, t->data_fp);
        snprintf(t->data_fp, sizeof t->data_fp, "%s", dfp);
        snprintf(t->val_fp, sizeof t->val_fp, "%s", vfp);
        t->split_of = data, t->split_n = n;
        if (t->epoch == 0 && t->batch == 0 && t->step == 0) set_norm_from(t, data);
    }
    /* never a last batch of one (batch norm), nor one some rank has no image of */
    *p = epoch_plan(t->n_train, t->cfg.batch, t->ranks > 2 ? t->ranks : 2);
    t->per_epoch = p->batches;
    return ensure_ctx(t, (p->max_batch + t->ranks - 1) / t->ranks); /* the largest share */
}

/* Turn x (h,w) left for right. */
static void mirror(float *x, int h, int w) {
    for (int y = 0; y < h; y++)
        for (int i = 0, j = w - 1; i < j; i++, j--) {
            const float t = x[y * w + i];
            x[y * w + i] = x[y * w + j], x[y * w + j] = t;
        }
}

/* Gather and normalise (or augment) images idx[0..m) into the context's xbuf and labels; they
 * are images j0.. of their batch (the augmentation is drawn by that number). */
static void make_batch(const struct cnn_trainer *t, const struct cnn_dataset *d, const int *idx,
                       int m, int j0, int augment, uint64_t seed) {
    const int hw = d->h * d->w;
    float mean, std;
    cnn_model_get_norm(t->model, &mean, &std);
    struct cnn_augment aug;
    cnn_augment_default(&aug, t->cfg.augment == CNN_AUG_ELASTIC);
    const float scale = 1.0f / (255.0f * std), shift = mean / std;
    float *x = t->ctx->xbuf;
    if (m > t->ctx->max_batch) abort(); /* cannot happen: prepare sized the context */
#pragma omp parallel for schedule(static) if ((size_t)m * hw * (augment ? 32 : 1) >= CNN_OMP_MIN_WORK)
    for (int j = 0; j < m; j++) {
        const uint8_t *src = d->images + (size_t)idx[j] * hw;
        float *dst = x + (size_t)j * hw;
        struct cnn_rng r;
        cnn_rng_seed(&r, mix(seed, (uint64_t)j0 + (uint64_t)j));
        if (augment == CNN_AUG_AFFINE || augment == CNN_AUG_ELASTIC) {
            /* sizes, std and sigma were checked before: it cannot fail */
            (void)cnn_augment_image(&aug, src, dst, d->h, d->w, mean, std, &r);
        } else {
            for (int q = 0; q < hw; q++) dst[q] = src[q] * scale - shift;
            if (augment == CNN_AUG_FLIP && cnn_rng_uniform(&r) < 0.5f) mirror(dst, d->h, d->w);
        }
    }
    for (int j = 0; j < m; j++) t->ctx->labels[j] = d->labels[idx[j]];
}

/* Summed loss and correct answers on idx[0..n) in inference mode, in chunks of the context. */
static void evaluate(struct cnn_trainer *t, const struct cnn_dataset *d, const int *idx, int n,
                     double *loss, double *correct_out) {
    struct cnn_ctx *ctx = t->ctx;
    const int k = t->model->n_classes;
    double ls = 0.0;
    long correct = 0;
    for (int i0 = 0; i0 < n; i0 += ctx->max_batch) {
        const int m = n - i0 < ctx->max_batch ? n - i0 : ctx->max_batch;
        make_batch(t, d, idx + i0, m, 0, 0, 0);
        const float *logits = cnn_ctx_forward(ctx, t->model, ctx->xbuf, m, NULL, 0, NULL);
        ls += (double)cnn_softmax_xent(logits, ctx->labels, m, k, 0.0f, ctx->probs, NULL) * m;
        for (int j = 0; j < m; j++)
            correct += cnn_argmax(ctx->probs + (size_t)j * k, k) == ctx->labels[j];
    }
    *loss = ls;
    *correct_out = (double)correct;
}

/* ---- one epoch ---------------------------------------------------------------------------- */

/* The batches from t->batch to the end of epoch t->epoch. Runs inside cnn_threads_enter. */
static int run_batches(struct cnn_trainer *t, const struct cnn_dataset *d,
                       const struct epoch_plan *p, const struct cnn_train_hooks *hooks,
                       double *lr_out, double *ips_out) {
    const struct cnn_train_cfg *c = &t->cfg;
    const int e = t->epoch;
    const double t0 = cnn_now();
    long seen = 0, batches_now = 0;
    while (t->batch < p->batches) {
        const int b = t->batch, m = batch_size(p, b);
        const uint64_t bseed = mix(mix(c->seed, (uint64_t)e), (uint64_t)b + 1);
        int i0;
        const int mine = share_of(t, m, &i0);
        make_batch(t, d, t->order + (size_t)b * p->B + i0, mine, i0, c->augment, bseed);
        struct cnn_rng r;
        cnn_rng_seed(&r, bseed);
        float loss;
        int correct;
        int rc = step_batch(t, t->ctx->xbuf, t->ctx->labels, mine, i0, m, cnn_rng_u64(&r),
                            &loss, &correct, lr_out);
        if (rc == CNN_ERR_NAN)
            return cnn_fail(rc, "loss became %s at epoch %d, batch %d (learning rate %g); "
                            "lower the learning rate", isnan(loss) ? "NaN" : "Inf", e + 1, b + 1,
                            *lr_out);
        if (rc) return rc;
        t->batch++;
        t->run_loss += (double)loss * m;
        t->run_correct += correct;
        t->run_seen += m;
        seen += m;
        batches_now++;
        if (hooks && hooks->on_batch) {
            const double el = cnn_now() - t0;
            const struct cnn_batch_stats s = {
                .epoch = e + 1, .epochs = c->epochs, .batch = b + 1, .batches = p->batches,
                .loss = t->run_loss / (double)t->run_seen,
                .acc = t->run_correct / (double)t->run_seen,
                .images_per_s = el > 0 ? seen / el : 0.0,
                .eta_s = el / (double)batches_now * (p->batches - t->batch),
                .lr = *lr_out,
            };
            hooks->on_batch(&s, hooks->user);
        }
        if (hooks && hooks->stop && *hooks->stop && t->batch < p->batches)
            return cnn_fail(CNN_ERR_INTERRUPTED, "interrupted at epoch %d, batch %d of %d", e + 1,
                            t->batch, p->batches);
    }
    const double el = cnn_now() - t0;
    *ips_out = el > 0 ? (double)seen / el : 0.0;
    return CNN_OK;
}

/* The loss is checked before each step, so the epoch's last update is not: check the weights
 * it produced on that batch (inference mode, no state changes) and on the validation set. */
static int end_of_epoch(struct cnn_trainer *t, const struct cnn_dataset *d,
                        const struct epoch_plan *p, struct cnn_epoch_stats *es) {
    const int last = p->batches - 1;
    int i0, v0;
    const int m = share_of(t, batch_size(p, last), &i0), nv = share_of(t, t->n_val, &v0);
    make_batch(t, d, t->order + (size_t)last * p->B + i0, m, 0, 0, 0);
    /* inference from here as on a loaded model: Winograd kernels and batch norms folded, so
     * the recorded validation accuracy is the one `mnist eval --split val` computes */
    cnn_model_prepare(t->model);
    const float *logits = cnn_ctx_forward(t->ctx, t->model, t->ctx->xbuf, m, NULL, 0, NULL);
    /* the last batch's loss, the validation loss and correct answers, summed over the ranks */
    double s[3] = {cnn_softmax_xent(logits, t->ctx->labels, m, t->model->n_classes, 0.0f,
                                    t->ctx->probs, NULL), 0.0, 0.0};
    if (t->avg) { /* validation, and the model until the next step, are the average's */
        swap_average(t);
        cnn_model_prepare(t->model);
    }
    evaluate(t, d, t->val_idx + v0, nv, &s[1], &s[2]);
    const int rc = reduce_f64(t, s, 3);
    if (rc) return rc;
    if (t->n_val > 0) es->val_loss = s[1] / t->n_val, es->val_acc = s[2] / t->n_val;
    if (!isfinite(s[0]) || (t->n_val > 0 && !isfinite(es->val_loss)))
        return cnn_fail(CNN_ERR_NAN,
                        "loss became non-finite after the last step of epoch %d (learning rate "
                        "%g); lower the learning rate",
                        t->epoch + 1, es->lr);
    return CNN_OK;
}

static const char *const optim_names[] = {"sgd", "adam", "adamw"};
static const char *const sched_names[] = {"constant", "step", "cosine", "onecycle"};
static const char *const augment_names[CNN_AUG_LEVELS] = {"none", "affine", "elastic", "flip"};

/* The trainer's metadata keys (cnn.h lists them) as they stand after this epoch. */
static void set_train_meta(struct cnn_trainer *t) {
    struct cnn_model *m = t->model;
    const struct cnn_train_cfg *c = &t->cfg;
    char v[64];
    const time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(v, sizeof v, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* every key and value below is well-formed: set_meta cannot fail but past 64 keys */
#define META(key, ...) (snprintf(v, sizeof v, __VA_ARGS__), (void)cnn_model_set_meta(m, key, v))
    (void)cnn_model_set_meta(m, "date", v);
    META("epochs", "%d", t->epoch);
    META("val_acc", "%.6f", t->best_val);
    META("train_images", "%d", t->n_train);
    META("data_fingerprint", "%s", t->data_fp);
    META("val_fingerprint", "%s", t->val_fp);
    META("recipe.optimizer", "%s", optim_names[c->optim.kind]);
    META("recipe.lr", "%g", (double)c->sched.lr);
    META("recipe.schedule", "%s", sched_names[c->sched.kind]);
    META("recipe.epochs", "%d", c->epochs);
    META("recipe.batch", "%d", c->batch);
    META("recipe.augment", "%s", augment_names[c->augment]);
    META("recipe.seed", "%llu", (unsigned long long)c->seed);
    META("recipe.label_smoothing", "%g", (double)c->label_smoothing);
    META("recipe.weight_decay", "%g", (double)c->optim.weight_decay);
    META("recipe.val", "%d", c->val);
    if (c->ema > 0.0f) META("recipe.ema", "%g", (double)c->ema);
#undef META
}

/* cnn_trainer_epoch with hooks already imported (h: the library's own layout). */
static int run_epoch(struct cnn_trainer *t, const struct cnn_dataset *data,
                     const struct cnn_train_hooks *hooks, struct cnn_epoch_stats *stats) {
    struct epoch_plan p = {0, 1, 1, 1};
    int rc = prepare(t, data, &p);
    if (rc) return rc;
    const int saved = cnn_threads_enter(t->ctx->threads);
    const double t0 = cnn_now();
    memcpy(t->order, t->train_idx, sizeof(int) * (size_t)t->n_train);
    shuffle(t->order, t->n_train, mix(t->cfg.seed, (uint64_t)t->epoch));
    struct cnn_epoch_stats es = {.epoch = t->epoch + 1, .epochs = t->cfg.epochs,
                                 .val_loss = -1.0, .val_acc = -1.0};
    double ips = 0.0;
    rc = run_batches(t, data, &p, hooks, &es.lr, &ips);
    if (!rc) rc = end_of_epoch(t, data, &p, &es);
    cnn_threads_leave(saved);
    if (rc) return rc;
    const double seen = t->run_seen ? (double)t->run_seen : 1.0;
    es.train_loss = t->run_loss / seen;
    es.train_acc = t->run_correct / seen;
    es.seconds = cnn_now() - t0;
    es.images_per_s = ips;
    t->epoch++;
    t->batch = 0;
    t->run_loss = t->run_correct = 0.0;
    t->run_seen = 0;
    /* without a validation set the latest model counts as the best */
    if (t->n_val == 0 || es.val_acc > t->best_val) {
        t->best_val = t->n_val > 0 ? es.val_acc : -1.0;
        t->best_epoch = t->epoch;
        es.improved = 1;
    }
    set_train_meta(t);
    if (stats) *stats = es;
    return CNN_OK;
}

/* ---- the run ------------------------------------------------------------------------------ */

/* A caller's hooks of hooks->size bytes into the library's layout (NULL: none). */
static int hooks_import(const struct cnn_train_hooks *in, struct cnn_train_hooks *out) {
    memset(out, 0, sizeof *out);
    if (!in) return CNN_OK;
    if (in->size < sizeof(size_t) || in->size > sizeof *out)
        return cnn_fail(CNN_ERR_ARG, "cnn_train_hooks.size is %zu, this libcnn knows sizes up "
                        "to %zu", in->size, sizeof *out);
    memcpy(out, in, in->size);
    return CNN_OK;
}

int cnn_trainer_epoch(struct cnn_trainer *t, const struct cnn_dataset *data,
                      const struct cnn_train_hooks *hooks, struct cnn_epoch_stats *stats) {
    struct cnn_train_hooks h;
    const int rc = hooks_import(hooks, &h);
    return rc ? rc : run_epoch(t, data, &h, stats);
}


int cnn_trainer_run(struct cnn_trainer *t, const struct cnn_dataset *data,
                    const struct cnn_train_hooks *hooks_in) {
    struct cnn_train_hooks h;
    int rc = hooks_import(hooks_in, &h);
    while (!rc && t->epoch < t->cfg.epochs) {
        struct cnn_epoch_stats es;
        rc = run_epoch(t, data, &h, &es);
        if (rc == CNN_ERR_INTERRUPTED && h.on_checkpoint) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s", cnn_errmsg());
            const int crc = h.on_checkpoint(t, h.user);
            return crc ? crc : cnn_fail(rc, "%s", msg);
        }
        if (rc) return rc;
        if (es.improved && h.on_best && (rc = h.on_best(t->model, h.user))) return rc;
        if (h.on_checkpoint && (rc = h.on_checkpoint(t, h.user))) return rc;
        if (h.on_epoch) h.on_epoch(&es, h.user);
        if (h.stop && *h.stop && t->epoch < t->cfg.epochs)
            rc = cnn_fail(CNN_ERR_INTERRUPTED, "interrupted after epoch %d", t->epoch);
    }
    return rc;
}
