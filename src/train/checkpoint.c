/*
 * checkpoint.c - saving a trainer and resuming it.
 *
 * A checkpoint is a model file (model_io.c) with two more sections: OPTM (optimizer moments)
 * and TRNS (the training configuration and position). It is written atomically, so a crash at
 * any moment leaves either the previous checkpoint or the new one. Every random choice of a
 * run derives from (seed, epoch, batch) (trainer.c), so this is all a resumed run needs to end
 * with the same weights, bit for bit, as one that never stopped.
 *
 * TRNS, little-endian: u32 epoch, u32 batch, u64 step, f64 run_loss, f64 run_correct,
 * u64 run_seen, f64 best_val, u32 best_epoch, then the configuration: u32 epochs, u32 batch,
 * the optimizer (u32 kind, f32 momentum, u32 nesterov, f32 beta1, beta2, eps, weight_decay,
 * u32 decay_all), the schedule (u32 kind, f32 lr, min_lr, step_epochs, gamma, warmup),
 * f32 label_smoothing, u32 augment, u64 seed, u32 val, u32 limit, and f32 ema where it is not
 * 0 (older files end before it). With ema, EMAW holds the weight average: u32 swapped (1: the
 * model sections hold the average and EMAW the raw weights), u64 count, f32 (count) values,
 * count = the params and state of the model. Format version 1 files
 * followed this with three NUL-padded strings (512, 512 and 64 bytes: the model and checkpoint
 * paths and the dataset name); they are read and dropped: a path from a file is never used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/trainer.h"

#define TRNS_V1_STRINGS (512 + 512 + 64)

static void put_f64(struct cnn_buf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    cnn_buf_u64(b, u);
}

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
    if (c->ema > 0.0f) cnn_buf_f32(b, c->ema);
}

int cnn_trainer_save(const struct cnn_trainer *t, const char *path) {
    struct cnn_buf b = {0}, s = {0};
    cnn_model_encode(t->model, &b);
    cnn_buf_u32(&s, (uint32_t)t->opt->cfg.kind);
    cnn_buf_u64(&s, (uint64_t)t->opt->t);
    cnn_buf_u64(&s, t->opt->n);
    cnn_buf_f32s(&s, t->opt->m, t->opt->n);
    cnn_buf_f32s(&s, t->opt->v, t->opt->n);
    cnn_model_section(&b, "OPTM", &s);
    if (t->avg) {
        const size_t count = t->model->n_params + t->model->n_state;
        cnn_buf_u32(&s, (uint32_t)t->swapped);
        cnn_buf_u64(&s, count);
        cnn_buf_f32s(&s, t->avg, count);
        cnn_model_section(&b, "EMAW", &s);
    }
    encode_trns(t, &s);
    cnn_model_section(&b, "TRNS", &s);
    return cnn_model_write(&b, path);
}

static int get_u32i(struct cnn_rd *r, int *v) {
    uint32_t u;
    if (cnn_rd_u32(r, &u) || u > 0x7fffffffu) return CNN_ERR_FORMAT;
    *v = (int)u;
    return CNN_OK;
}

static int get_f64(struct cnn_rd *r, double *v) {
    uint64_t u;
    if (cnn_rd_u64(r, &u)) return CNN_ERR_FORMAT;
    memcpy(v, &u, 8);
    return CNN_OK;
}

/* The position and configuration; the caller checks the ranges. */
static int decode_trns(struct cnn_trainer *t, struct cnn_train_cfg *c, struct cnn_rd *r) {
    uint64_t step, seen;
    int bad = 0;
    bad |= get_u32i(r, &t->epoch) | get_u32i(r, &t->batch) | cnn_rd_u64(r, &step);
    bad |= get_f64(r, &t->run_loss) | get_f64(r, &t->run_correct) | cnn_rd_u64(r, &seen);
    bad |= get_f64(r, &t->best_val) | get_u32i(r, &t->best_epoch);
    bad |= get_u32i(r, &c->epochs) | get_u32i(r, &c->batch) | get_u32i(r, &c->optim.kind);
    bad |= cnn_rd_f32s(r, &c->optim.momentum, 1) | get_u32i(r, &c->optim.nesterov);
    bad |= cnn_rd_f32s(r, &c->optim.beta1, 1) | cnn_rd_f32s(r, &c->optim.beta2, 1);
    bad |= cnn_rd_f32s(r, &c->optim.eps, 1) | cnn_rd_f32s(r, &c->optim.weight_decay, 1);
    bad |= get_u32i(r, &c->optim.decay_all) | get_u32i(r, &c->sched.kind);
    bad |= cnn_rd_f32s(r, &c->sched.lr, 1) | cnn_rd_f32s(r, &c->sched.min_lr, 1);
    bad |= cnn_rd_f32s(r, &c->sched.step_epochs, 1) | cnn_rd_f32s(r, &c->sched.gamma, 1);
    bad |= cnn_rd_f32s(r, &c->sched.warmup, 1) | cnn_rd_f32s(r, &c->label_smoothing, 1);
    bad |= get_u32i(r, &c->augment) | cnn_rd_u64(r, &c->seed) | get_u32i(r, &c->val);
    bad |= get_u32i(r, &c->limit);
    if (bad || step > (uint64_t)1 << 40 || seen > (uint64_t)1 << 40) return CNN_ERR_FORMAT;
    t->step = (long)step;
    t->run_seen = (long)seen;
    return CNN_OK;
}

/* EMAW into t->avg (cfg.ema > 0); non-zero when it is missing or malformed. */
static int restore_average(struct cnn_trainer *t, const uint8_t *buf, size_t len) {
    size_t n;
    const uint8_t *p = cnn_model_find(buf, len, "EMAW", &n);
    struct cnn_rd r = {p, p ? n : 0, 0};
    uint32_t swapped;
    uint64_t count;
    if (!p || cnn_rd_u32(&r, &swapped) || swapped > 1 || cnn_rd_u64(&r, &count) ||
        count != t->model->n_params + t->model->n_state || cnn_rd_f32s(&r, t->avg, count) ||
        r.pos != r.len)
        return CNN_ERR_FORMAT;
    t->swapped = (int)swapped;
    return CNN_OK;
}

/* TRNS and OPTM into a trainer over m. */
static int restore(struct cnn_trainer **out, struct cnn_model *m, const uint8_t *buf,
                   size_t len, uint32_t version, int threads, const char *path) {
    size_t n;
    const uint8_t *tr = cnn_model_find(buf, len, "TRNS", &n);
    if (!tr) return cnn_fail(CNN_ERR_FORMAT, "%s: a model file, not a checkpoint", path);
    struct cnn_trainer pos = {0};
    struct cnn_train_cfg cfg;
    cnn_train_cfg_default(&cfg);
    struct cnn_rd r = {tr, n, 0};
    const size_t extra = version == 1 ? TRNS_V1_STRINGS : 0;
    int bad = decode_trns(&pos, &cfg, &r);
    if (!bad && version != 1 && r.len - r.pos == 4) bad = cnn_rd_f32s(&r, &cfg.ema, 1);
    if (bad || r.len - r.pos != extra || pos.epoch > cfg.epochs || pos.batch > 65536 ||
        !(pos.best_val >= -1.0 && pos.best_val <= 1.0))
        return cnn_fail(CNN_ERR_FORMAT, "%s: training state section is malformed", path);
    cfg.threads = threads;
    if (cnn_train_cfg_check(&cfg)) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", cnn_errmsg());
        return cnn_fail(CNN_ERR_FORMAT, "%s: training state out of range: %s", path, msg);
    }
    struct cnn_trainer *t;
    int rc = cnn_trainer_new(m, &cfg, &t);
    if (rc) return rc;
    t->epoch = pos.epoch, t->batch = pos.batch, t->step = pos.step;
    t->run_loss = pos.run_loss, t->run_correct = pos.run_correct, t->run_seen = pos.run_seen;
    t->best_val = pos.best_val, t->best_epoch = pos.best_epoch;
    const char *fp = cnn_model_meta(m, "data_fingerprint");
    if (fp) snprintf(t->data_fp, sizeof t->data_fp, "%s", fp);
    const uint8_t *op = cnn_model_find(buf, len, "OPTM", &n);
    struct cnn_rd o = {op, op ? n : 0, 0};
    uint32_t kind;
    uint64_t steps, count;
    if (!op || cnn_rd_u32(&o, &kind) || cnn_rd_u64(&o, &steps) || cnn_rd_u64(&o, &count) ||
        kind != (uint32_t)t->cfg.optim.kind || count != m->n_params ||
        steps > (uint64_t)1 << 40 || cnn_rd_f32s(&o, t->opt->m, count) ||
        cnn_rd_f32s(&o, t->opt->v, count) || o.pos != o.len) {
        cnn_trainer_free(t);
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s: optimizer state is missing or does not match the network", path);
    }
    t->opt->t = (long)steps;
    if (t->avg && restore_average(t, buf, len)) {
        cnn_trainer_free(t);
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s: weight average is missing or does not match the network", path);
    }
    *out = t;
    return CNN_OK;
}

int cnn_trainer_resume(const char *path, int threads, struct cnn_model **model,
                       struct cnn_trainer **out) {
    *out = NULL;
    *model = NULL;
    uint8_t *buf = NULL;
    size_t len;
    uint32_t version;
    struct cnn_model *m = NULL;
    int rc = cnn_read_file(path, CNN_MODEL_MAX_BYTES, &buf, &len);
    if (!rc) rc = cnn_model_check(buf, len, path, &version);
    if (!rc) rc = cnn_model_decode(buf, len, path, &m);
    if (!rc) rc = restore(out, m, buf, len, version, threads, path);
    free(buf);
    if (rc) {
        cnn_model_free(m);
        return rc;
    }
    *model = m;
    return CNN_OK;
}
