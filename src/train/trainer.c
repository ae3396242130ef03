/*
 * train.c - the training loop: validation split, shuffling, batches, augmentation, the
 * learning-rate schedule, validation, the best model, checkpoints and exact resume.
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
 * Checkpoints are model files (model_io.c) with two more sections: OPTM (optimizer moments)
 * and TRNS (the training configuration and position). They are written atomically, so a
 * crash at any moment leaves either the previous checkpoint or the new one.
 * The library never prints: progress goes to the caller's on_batch / on_epoch hooks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define VAL_SPLIT_SEED 0x76616c5f73706c74ULL /* "val_splt": fixed, independent of --seed */

struct cnn_trainer {
    struct cnn_net *net; /* borrowed */
    struct cnn_train_cfg cfg;
    struct cnn_optim *opt;
    int epoch;          /* epochs completed */
    int batch;          /* batches completed in the current epoch */
    long step;          /* optimizer steps in all */
    double run_loss, run_correct; /* sums over the current epoch's completed batches */
    long run_seen;
    double best_val;
    int best_epoch;
};

void cnn_train_cfg_default(struct cnn_train_cfg *cfg) {
    memset(cfg, 0, sizeof *cfg);
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
    snprintf(cfg->dataset, sizeof cfg->dataset, "mnist");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix(uint64_t a, uint64_t b) {
    struct cnn_rng r = {a ^ (b * 0xd1342543de82ef95ULL)};
    return cnn_rng_u64(&r);
}

static int check_cfg(const struct cnn_train_cfg *c) {
    if (c->epochs < 1 || c->epochs > 100000)
        return cnn_fail(CNN_ERR_ARG, "epochs %d out of range [1, 100000]", c->epochs);
    if (c->batch < 1 || c->batch > 65536)
        return cnn_fail(CNN_ERR_ARG, "batch size %d out of range [1, 65536]", c->batch);
    if (!(c->sched.lr > 0.0f && c->sched.lr < 100.0f))
        return cnn_fail(CNN_ERR_ARG, "learning rate %g out of range (0, 100)", (double)c->sched.lr);
    if (!(c->label_smoothing >= 0.0f && c->label_smoothing < 1.0f))
        return cnn_fail(CNN_ERR_ARG, "label smoothing %g out of range [0, 1)",
                        (double)c->label_smoothing);
    if (c->augment < 0 || c->augment > 2)
        return cnn_fail(CNN_ERR_ARG, "augment level %d out of range [0, 2]", c->augment);
    if (c->val < 0) return cnn_fail(CNN_ERR_ARG, "validation size %d is negative", c->val);
    if (c->limit < 0) return cnn_fail(CNN_ERR_ARG, "image limit %d is negative", c->limit);
    return CNN_OK;
}

int cnn_trainer_new(struct cnn_net *net, const struct cnn_train_cfg *cfg,
                    struct cnn_trainer **out) {
    *out = NULL;
    int rc = check_cfg(cfg);
    if (rc) return rc;
    struct cnn_trainer *t = calloc(1, sizeof *t);
    if (!t) return cnn_fail(CNN_ERR_NOMEM, "out of memory");
    t->net = net;
    t->cfg = *cfg;
    t->best_val = -1.0;
    if ((rc = cnn_optim_new(net, &cfg->optim, &t->opt))) {
        free(t);
        return rc;
    }
    *out = t;
    return CNN_OK;
}

void cnn_trainer_free(struct cnn_trainer *t) {
    if (!t) return;
    cnn_optim_free(t->opt);
    free(t);
}

int cnn_trainer_epoch(const struct cnn_trainer *t) { return t->epoch; }
double cnn_trainer_best_val(const struct cnn_trainer *t) { return t->best_val; }

/* ---- checkpoints -------------------------------------------------------------------------- */

static void put_f64(struct cnn_buf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    cnn_buf_u64(b, u);
}

static void fill_meta(const struct cnn_trainer *t, struct cnn_meta *m, long train_images) {
    memset(m, 0, sizeof *m);
    snprintf(m->dataset, sizeof m->dataset, "%s", t->cfg.dataset);
    const time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(m->date, sizeof m->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    m->epochs = t->epoch;
    m->val_acc = (float)t->best_val;
    m->train_images = train_images;
}

/* TRNS: every field of cfg and the position, in a fixed little-endian order. */
static void encode_trns(const struct cnn_trainer *t, struct cnn_buf *b) {
    const struct cnn_train_cfg *c = &t->cfg;
    cnn_buf_u32(b, (uint32_t)t->epoch);
    cnn_buf_u32(b, (uint32_t)t->batch);
    cnn_buf_u64(b, (uint64_t)t->step);
    put_f64(b, t->run_loss);
    put_f64(b, t->run_correct);
    cnn_buf_u64(b, (uint64_t)t->run_seen);
    put_f64(b, t->best_val);
    cnn_buf_u32(b, (uint32_t)t->best_epoch);
    cnn_buf_u32(b, (uint32_t)c->epochs);
    cnn_buf_u32(b, (uint32_t)c->batch);
    cnn_buf_u32(b, (uint32_t)c->optim.kind);
    cnn_buf_f32(b, c->optim.momentum);
    cnn_buf_u32(b, (uint32_t)c->optim.nesterov);
    cnn_buf_f32(b, c->optim.beta1);
    cnn_buf_f32(b, c->optim.beta2);
    cnn_buf_f32(b, c->optim.eps);
    cnn_buf_f32(b, c->optim.weight_decay);
    cnn_buf_u32(b, (uint32_t)c->optim.decay_all);
    cnn_buf_u32(b, (uint32_t)c->sched.kind);
    cnn_buf_f32(b, c->sched.lr);
    cnn_buf_f32(b, c->sched.min_lr);
    cnn_buf_f32(b, c->sched.step_epochs);
    cnn_buf_f32(b, c->sched.gamma);
    cnn_buf_f32(b, c->sched.warmup);
    cnn_buf_f32(b, c->label_smoothing);
    cnn_buf_u32(b, (uint32_t)c->augment);
    cnn_buf_u64(b, c->seed);
    cnn_buf_u32(b, (uint32_t)c->val);
    cnn_buf_u32(b, (uint32_t)c->limit);
    cnn_buf_put(b, c->out, sizeof c->out);
    cnn_buf_put(b, c->checkpoint, sizeof c->checkpoint);
    cnn_buf_put(b, c->dataset, sizeof c->dataset);
}

static int save_checkpoint(const struct cnn_trainer *t, long train_images) {
    if (!t->cfg.checkpoint[0]) return CNN_OK;
    struct cnn_meta meta;
    fill_meta(t, &meta, train_images);
    struct cnn_buf b = {0}, s = {0};
    cnn_model_encode(t->net, &meta, &b);
    cnn_buf_u32(&s, (uint32_t)t->opt->cfg.kind);
    cnn_buf_u64(&s, (uint64_t)t->opt->t);
    cnn_buf_u64(&s, t->opt->n);
    cnn_buf_f32s(&s, t->opt->m, t->opt->n);
    cnn_buf_f32s(&s, t->opt->v, t->opt->n);
    cnn_model_section(&b, "OPTM", s.p, s.len);
    b.oom |= s.oom;
    free(s.p);
    memset(&s, 0, sizeof s);
    encode_trns(t, &s);
    cnn_model_section(&b, "TRNS", s.p, s.len);
    b.oom |= s.oom;
    free(s.p);
    return cnn_model_write(&b, t->cfg.checkpoint);
}

static int get_u32i(struct cnn_rd *r, int *v) {
    uint32_t u;
    if (cnn_rd_u32(r, &u)) return CNN_ERR_FORMAT;
    *v = (int)u;
    return CNN_OK;
}

static int get_f64(struct cnn_rd *r, double *v) {
    uint64_t u;
    if (cnn_rd_u64(r, &u)) return CNN_ERR_FORMAT;
    memcpy(v, &u, 8);
    return CNN_OK;
}

static int get_str(struct cnn_rd *r, char *dst, size_t n) {
    const uint8_t *p;
    if (cnn_rd_bytes(r, &p, n)) return CNN_ERR_FORMAT;
    memcpy(dst, p, n);
    dst[n - 1] = '\0';
    return CNN_OK;
}

static int decode_trns(struct cnn_trainer *t, const uint8_t *p, size_t n) {
    struct cnn_rd r = {p, n, 0};
    struct cnn_train_cfg *c = &t->cfg;
    uint64_t step, seen, seed;
    int bad = 0;
    bad |= get_u32i(&r, &t->epoch) | get_u32i(&r, &t->batch) | cnn_rd_u64(&r, &step);
    bad |= get_f64(&r, &t->run_loss) | get_f64(&r, &t->run_correct) | cnn_rd_u64(&r, &seen);
    bad |= get_f64(&r, &t->best_val) | get_u32i(&r, &t->best_epoch);
    bad |= get_u32i(&r, &c->epochs) | get_u32i(&r, &c->batch) | get_u32i(&r, &c->optim.kind);
    bad |= cnn_rd_f32s(&r, &c->optim.momentum, 1) | get_u32i(&r, &c->optim.nesterov);
    bad |= cnn_rd_f32s(&r, &c->optim.beta1, 1) | cnn_rd_f32s(&r, &c->optim.beta2, 1);
    bad |= cnn_rd_f32s(&r, &c->optim.eps, 1) | cnn_rd_f32s(&r, &c->optim.weight_decay, 1);
    bad |= get_u32i(&r, &c->optim.decay_all) | get_u32i(&r, &c->sched.kind);
    bad |= cnn_rd_f32s(&r, &c->sched.lr, 1) | cnn_rd_f32s(&r, &c->sched.min_lr, 1);
    bad |= cnn_rd_f32s(&r, &c->sched.step_epochs, 1) | cnn_rd_f32s(&r, &c->sched.gamma, 1);
    bad |= cnn_rd_f32s(&r, &c->sched.warmup, 1) | cnn_rd_f32s(&r, &c->label_smoothing, 1);
    bad |= get_u32i(&r, &c->augment) | cnn_rd_u64(&r, &seed) | get_u32i(&r, &c->val);
    bad |= get_u32i(&r, &c->limit);
    bad |= get_str(&r, c->out, sizeof c->out) | get_str(&r, c->checkpoint, sizeof c->checkpoint);
    bad |= get_str(&r, c->dataset, sizeof c->dataset);
    if (bad || r.pos != r.len) return CNN_ERR_FORMAT;
    t->step = (long)step;
    t->run_seen = (long)seen;
    c->seed = seed;
    if (t->epoch < 0 || t->batch < 0 || t->epoch > c->epochs) return CNN_ERR_FORMAT;
    return check_cfg(c) ? CNN_ERR_FORMAT : CNN_OK;
}

int cnn_trainer_resume(const char *path, struct cnn_net **net_out, struct cnn_train_cfg *cfg,
                       struct cnn_trainer **out) {
    *out = NULL;
    *net_out = NULL;
    uint8_t *buf = NULL;
    size_t len, n;
    struct cnn_net *net = NULL;
    struct cnn_trainer *t = NULL;
    int rc = cnn_read_file(path, CNN_MODEL_MAX_BYTES, &buf, &len);
    if (rc) return rc;
    if ((rc = cnn_model_check(buf, len, path))) goto fail;
    if ((rc = cnn_model_decode(buf, len, path, &net, NULL))) goto fail;
    rc = CNN_ERR_FORMAT;
    const uint8_t *tr = cnn_model_find(buf, len, "TRNS", &n);
    t = calloc(1, sizeof *t);
    if (!t) {
        rc = cnn_fail(CNN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!tr) {
        cnn_fail(rc, "%s: a model file, not a checkpoint (no training state)", path);
        goto fail;
    }
    if (decode_trns(t, tr, n)) {
        cnn_fail(rc, "%s: training state section is malformed", path);
        goto fail;
    }
    t->net = net;
    if ((rc = cnn_optim_new(net, &t->cfg.optim, &t->opt))) goto fail;
    rc = CNN_ERR_FORMAT;
    const uint8_t *op = cnn_model_find(buf, len, "OPTM", &n);
    struct cnn_rd r = {op, op ? n : 0, 0};
    uint32_t kind;
    uint64_t steps, count;
    if (!op || cnn_rd_u32(&r, &kind) || cnn_rd_u64(&r, &steps) || cnn_rd_u64(&r, &count) ||
        kind != (uint32_t)t->cfg.optim.kind || count != net->n_params ||
        cnn_rd_f32s(&r, t->opt->m, count) || cnn_rd_f32s(&r, t->opt->v, count) ||
        r.pos != r.len) {
        cnn_fail(rc, "%s: optimizer state is missing or does not match the network", path);
        goto fail;
    }
    t->opt->t = (long)steps;
    free(buf);
    *cfg = t->cfg;
    *net_out = net;
    *out = t;
    return CNN_OK;
fail:
    free(buf);
    cnn_trainer_free(t);
    cnn_net_free(net);
    return rc;
}

/* ---- the loop ----------------------------------------------------------------------------- */

/* Split 0..n-1 into validation (val images) and training indices, both ascending. */
static void split(int n, int val, int *train_idx, int *val_idx) {
    int *perm = train_idx; /* borrow as scratch: filled with the final list below */
    for (int i = 0; i < n; i++) perm[i] = i;
    struct cnn_rng r;
    cnn_rng_seed(&r, VAL_SPLIT_SEED);
    for (int i = n - 1; i > 0; i--) {
        const int j = (int)(cnn_rng_u64(&r) % (uint64_t)(i + 1));
        const int tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    /* mark the last `val` of the permutation as validation */
    char *is_val = calloc((size_t)n, 1);
    if (is_val) {
        for (int i = n - val; i < n; i++) is_val[perm[i]] = 1;
        int a = 0, b = 0;
        for (int i = 0; i < n; i++) {
            if (is_val[i])
                val_idx[b++] = i;
            else
                train_idx[a++] = i;
        }
    }
    free(is_val);
}

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

/* Gather and normalise (or augment) images idx[0..m) into x, labels into y. */
static void make_batch(const struct cnn_trainer *t, const struct cnn_dataset *d, const int *idx,
                       int m, int augment, uint64_t seed, float *x, uint8_t *y) {
    const int hw = d->h * d->w;
    float mean, std;
    cnn_net_get_norm(t->net, &mean, &std);
    struct cnn_augment aug;
    cnn_augment_default(&aug, t->cfg.augment == 2);
    const float scale = 1.0f / (255.0f * std), shift = mean / std;
#pragma omp parallel for schedule(static) if ((size_t)m * hw * (augment ? 32 : 1) >= CNN_OMP_MIN_WORK)
    for (int j = 0; j < m; j++) {
        const uint8_t *src = d->images + (size_t)idx[j] * hw;
        float *dst = x + (size_t)j * hw;
        if (augment) {
            struct cnn_rng r;
            cnn_rng_seed(&r, mix(seed, (uint64_t)j));
            cnn_augment_image(&aug, src, dst, d->h, d->w, mean, std, &r);
        } else {
            for (int q = 0; q < hw; q++) dst[q] = src[q] * scale - shift;
        }
    }
    for (int j = 0; j < m; j++) y[j] = d->labels[idx[j]];
}

/* Mean loss and accuracy on idx[0..n) in inference mode. */
static void evaluate(const struct cnn_trainer *t, const struct cnn_dataset *d, const int *idx, int n,
                     float *x, uint8_t *y, double *loss, double *acc) {
    struct cnn_net *net = t->net;
    const int k = net->n_classes;
    double ls = 0.0;
    long correct = 0;
    for (int i0 = 0; i0 < n; i0 += net->max_batch) {
        const int m = n - i0 < net->max_batch ? n - i0 : net->max_batch;
        make_batch(t, d, idx + i0, m, 0, 0, x, y);
        const float *logits = cnn_net_forward(net, x, m, 0, 0);
        ls += (double)cnn_softmax_xent(logits, y, m, k, 0.0f, net->probs, NULL) * m;
        for (int j = 0; j < m; j++) {
            const float *p = net->probs + (size_t)j * k;
            int best = 0;
            for (int c = 1; c < k; c++) best = p[c] > p[best] ? c : best;
            correct += best == y[j];
        }
    }
    *loss = ls / n;
    *acc = (double)correct / n;
}

int cnn_trainer_run(struct cnn_trainer *t, const struct cnn_dataset *data,
                    const struct cnn_train_hooks *hooks) {
    struct cnn_net *net = t->net;
    const struct cnn_train_cfg *c = &t->cfg;
    struct cnn_dataset limited = *data;
    if (c->limit > 0 && c->limit < data->n) limited.n = c->limit;
    const struct cnn_dataset *d = &limited;
    int rc;
    if (d->h != net->in.h || d->w != net->in.w || net->in.c != 1)
        return cnn_fail(CNN_ERR_ARG, "images are %dx%d but the network expects %dx%dx%d", d->h,
                        d->w, net->in.c, net->in.h, net->in.w);
    if (d->n_classes != net->n_classes)
        return cnn_fail(CNN_ERR_ARG, "the data has %d classes but the network outputs %d",
                        d->n_classes, net->n_classes);
    if (c->val >= d->n)
        return cnn_fail(CNN_ERR_ARG, "validation size %d leaves no training images (of %d)",
                        c->val, d->n);
    const int n_train = d->n - c->val, B = c->batch;
    int batches = (n_train + B - 1) / B;
    if (batches > 1 && n_train % B == 1) batches--; /* never a batch of one (batch norm) */
    if ((rc = cnn_net_reserve_mode(net, B, 1))) return rc;
    const size_t hw = (size_t)d->h * d->w;
    int *train_idx = malloc(sizeof(int) * (size_t)d->n);
    int *val_idx = malloc(sizeof(int) * (size_t)(c->val + 1));
    int *order = malloc(sizeof(int) * (size_t)n_train);
    float *x = malloc(sizeof(float) * hw * (size_t)B);
    uint8_t *y = malloc((size_t)B);
    if (!train_idx || !val_idx || !order || !x || !y) {
        rc = cnn_fail(CNN_ERR_NOMEM, "out of memory for the training buffers");
        goto done;
    }
    split(d->n, c->val, train_idx, val_idx);
    if (t->epoch == 0 && t->batch == 0 && t->step == 0) {
        /* fresh run: input normalisation from the training images */
        double sum = 0.0, sq = 0.0;
        for (int i = 0; i < n_train; i++) {
            const uint8_t *p = d->images + (size_t)train_idx[i] * hw;
            for (size_t q = 0; q < hw; q++) sum += p[q], sq += (double)p[q] * p[q];
        }
        const double cnt = (double)n_train * (double)hw, mean = sum / cnt / 255.0;
        const double var = sq / cnt / (255.0 * 255.0) - mean * mean;
        cnn_net_set_norm(net, (float)mean, (float)sqrt(var > 1e-12 ? var : 1.0));
    }
    const long total_steps = (long)batches * c->epochs;
    rc = CNN_OK;
    while (t->epoch < c->epochs) {
        const int e = t->epoch;
        memcpy(order, train_idx, sizeof(int) * (size_t)n_train);
        shuffle(order, n_train, mix(c->seed, (uint64_t)e));
        const double t0 = now_s();
        long seen_now = 0, batches_now = 0;
        double lr = 0.0;
        while (t->batch < batches) {
            const int b = t->batch;
            const int m = b == batches - 1 ? n_train - b * B : B;
            const uint64_t bseed = mix(mix(c->seed, (uint64_t)e), (uint64_t)b + 1);
            make_batch(t, d, order + (size_t)b * B, m, c->augment, bseed, x, y);
            struct cnn_rng r;
            cnn_rng_seed(&r, bseed);
            float loss;
            int correct;
            if ((rc = cnn_net_train_batch(net, x, y, m, c->label_smoothing, &r, &loss, &correct)))
                goto done;
            if (!isfinite(loss)) {
                rc = cnn_fail(CNN_ERR_NAN,
                              "loss became %s at epoch %d, batch %d (learning rate %g); lower "
                              "the learning rate",
                              isnan(loss) ? "NaN" : "Inf", e + 1, b + 1,
                              (double)cnn_sched_lr(&c->sched, t->step, total_steps, batches));
                goto done;
            }
            lr = cnn_sched_lr(&c->sched, t->step, total_steps, batches);
            cnn_optim_step(t->opt, net, (float)lr);
            t->step++;
            t->batch++;
            t->run_loss += (double)loss * m;
            t->run_correct += correct;
            t->run_seen += m;
            seen_now += m;
            batches_now++;
            if (hooks && hooks->on_batch) {
                const double el = now_s() - t0;
                const struct cnn_batch_stats s = {
                    .epoch = e + 1, .epochs = c->epochs, .batch = b + 1, .batches = batches,
                    .loss = t->run_loss / (double)t->run_seen,
                    .acc = t->run_correct / (double)t->run_seen,
                    .images_per_s = el > 0 ? seen_now / el : 0.0,
                    .eta_s = el / (double)batches_now * (batches - t->batch),
                    .lr = lr,
                };
                hooks->on_batch(&s, hooks->user);
            }
            if (hooks && hooks->stop && *hooks->stop && t->batch < batches) {
                if ((rc = save_checkpoint(t, n_train))) goto done;
                rc = cnn_fail(CNN_ERR_INTERRUPTED, "interrupted at epoch %d, batch %d of %d",
                              e + 1, t->batch, batches);
                goto done;
            }
        }
        struct cnn_epoch_stats es = {
            .epoch = e + 1,
            .epochs = c->epochs,
            .train_loss = t->run_loss / (double)(t->run_seen ? t->run_seen : 1),
            .train_acc = t->run_correct / (double)(t->run_seen ? t->run_seen : 1),
            .val_loss = -1.0,
            .val_acc = -1.0,
            .lr = lr,
        };
        const double train_s = now_s() - t0;
        /* The loss is checked before each step, so the epoch's last update is not: check the
         * weights it produced on that batch (inference mode, no state changes) and on the
         * validation set before anything is saved, so the last checkpoint is always usable. */
        {
            const int m = n_train - (batches - 1) * B;
            make_batch(t, d, order + (size_t)(batches - 1) * B, m, 0, 0, x, y);
            const float *logits = cnn_net_forward(net, x, m, 0, 0);
            const float l = cnn_softmax_xent(logits, y, m, net->n_classes, 0.0f, net->probs, NULL);
            if (c->val > 0) evaluate(t, d, val_idx, c->val, x, y, &es.val_loss, &es.val_acc);
            if (!isfinite(l) || (c->val > 0 && !isfinite(es.val_loss))) {
                rc = cnn_fail(CNN_ERR_NAN,
                              "loss became non-finite after the last step of epoch %d "
                              "(learning rate %g); lower the learning rate",
                              e + 1, lr);
                goto done;
            }
        }
        es.seconds = now_s() - t0;
        es.images_per_s = train_s > 0 ? seen_now / train_s : 0.0;
        t->epoch++;
        t->batch = 0;
        t->run_loss = t->run_correct = 0.0;
        t->run_seen = 0;
        /* without a validation set the latest model counts as the best */
        const double score = c->val > 0 ? es.val_acc : (double)t->epoch;
        if (score > t->best_val || c->val == 0) {
            t->best_val = c->val > 0 ? es.val_acc : -1.0;
            t->best_epoch = t->epoch;
            es.improved = 1;
            if (c->out[0]) {
                struct cnn_meta meta;
                fill_meta(t, &meta, n_train);
                if ((rc = cnn_model_save(net, &meta, c->out))) goto done;
            }
        }
        if ((rc = save_checkpoint(t, n_train))) goto done;
        if (hooks && hooks->on_epoch) hooks->on_epoch(&es, hooks->user);
        if (hooks && hooks->stop && *hooks->stop && t->epoch < c->epochs) {
            rc = cnn_fail(CNN_ERR_INTERRUPTED, "interrupted after epoch %d", t->epoch);
            goto done;
        }
    }
done:
    free(train_idx);
    free(val_idx);
    free(order);
    free(x);
    free(y);
    return rc;
}
