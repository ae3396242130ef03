/*
 * optim.c - optimizers and learning-rate schedules over the flat parameter vector.
 *
 * One loop over n_params each (llm.c gpt2_update). decay_mask (1 for conv/dense weights, 0 for
 * biases and batch-norm parameters unless cfg.decay_all) selects what weight decay touches.
 * Formulas follow PyTorch's torch.optim exactly, so tests can compare step by step:
 *   SGD:   g = grad + wd*p;  m = mu*m + g;  p -= lr * (nesterov ? g + mu*m : m)
 *   Adam:  g = grad + wd*p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *          p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 *   AdamW: p *= 1 - lr*wd, then Adam with no wd in g (decoupled decay, Loshchilov & Hutter).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void cnn_optim_cfg_default(struct cnn_optim_cfg *cfg, int kind) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->momentum = 0.9f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
}

int cnn_optim_check(const struct cnn_optim_cfg *cfg) {
    if (cfg->kind < CNN_OPT_SGD || cfg->kind > CNN_OPT_ADAMW)
        return cnn_fail(CNN_ERR_ARG, "unknown optimizer %d", cfg->kind);
    if (!(cfg->momentum >= 0 && cfg->momentum < 1) || !(cfg->beta1 >= 0 && cfg->beta1 < 1) ||
        !(cfg->beta2 >= 0 && cfg->beta2 < 1) || !(cfg->eps > 0) ||
        !(cfg->weight_decay >= 0 && cfg->weight_decay <= 1))
        return cnn_fail(CNN_ERR_ARG, "optimizer settings out of range");
    return CNN_OK;
}

int cnn_optim_new(const struct cnn_model *model, const struct cnn_optim_cfg *cfg,
                  struct cnn_optim **out) {
    *out = NULL;
    const int rc = cnn_optim_check(cfg);
    if (rc) return rc;
    struct cnn_optim *o = calloc(1, sizeof *o);
    if (!o) return cnn_fail(CNN_ERR_NOMEM, "out of memory");
    o->cfg = *cfg;
    o->n = model->n_params;
    o->m = calloc(o->n + 1, sizeof(float));
    o->v = calloc(o->n + 1, sizeof(float));
    if (!o->m || !o->v) {
        cnn_optim_free(o);
        return cnn_fail(CNN_ERR_NOMEM, "out of memory for optimizer state");
    }
    *out = o;
    return CNN_OK;
}

void cnn_optim_free(struct cnn_optim *o) {
    if (!o) return;
    free(o->m);
    free(o->v);
    free(o);
}

int cnn_optim_step(struct cnn_optim *o, float *params, const float *grads, const float *mask_,
                   size_t n_params, float lr) {
    if (n_params != o->n)
        return cnn_fail(CNN_ERR_ARG, "optimizer state holds %zu parameters, the model %zu", o->n,
                        n_params);
    const struct cnn_optim_cfg *c = &o->cfg;
    float *restrict p = params, *restrict m = o->m, *restrict v = o->v;
    const float *restrict g = grads;
    const float *restrict mask = mask_;
    const long n = (long)o->n;
    const float wd = c->weight_decay, all = c->decay_all ? 1.0f : 0.0f;
    o->t++;
    if (c->kind == CNN_OPT_SGD) {
        const float mu = c->momentum;
#pragma omp parallel for schedule(static) if ((size_t)n >= CNN_OMP_MIN_WORK)
        for (long i = 0; i < n; i++) {
            float gi = g[i] + wd * (mask[i] + all - mask[i] * all) * p[i];
            if (mu > 0.0f) {
                m[i] = mu * m[i] + gi;
                gi = c->nesterov ? gi + mu * m[i] : m[i];
            }
            p[i] -= lr * gi;
        }
        return CNN_OK;
    }
    const float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    const double bc1 = 1.0 - pow(b1, (double)o->t), bc2 = 1.0 - pow(b2, (double)o->t);
    const float step = (float)(lr / bc1), sbc2 = (float)sqrt(bc2);
    const int decoupled = c->kind == CNN_OPT_ADAMW;
#pragma omp parallel for schedule(static) if ((size_t)n >= CNN_OMP_MIN_WORK)
    for (long i = 0; i < n; i++) {
        const float dm = mask[i] + all - mask[i] * all; /* mask OR decay_all */
        float gi = g[i];
        if (decoupled)
            p[i] *= 1.0f - lr * wd * dm;
        else
            gi += wd * dm * p[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] -= step * m[i] / (sqrtf(v[i]) / sbc2 + eps);
    }
    return CNN_OK;
}

float cnn_sched_lr(const struct cnn_sched *s, long step, long total, long per_epoch) {
    const double pi = 3.14159265358979323846;
    if (total < 1) total = 1;
    if (per_epoch < 1) per_epoch = 1;
    const double frac = (double)step / (double)total;
    switch (s->kind) {
    case CNN_SCHED_STEP: {
        const double every = s->step_epochs > 0 ? s->step_epochs : 1.0;
        const double epoch = (double)step / (double)per_epoch;
        return (float)(s->lr * pow(s->gamma, floor(epoch / every)));
    }
    case CNN_SCHED_COSINE:
        return (float)(s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(pi * frac)));
    case CNN_SCHED_ONECYCLE: {
        /* linear warm-up from lr/25 to lr, then cosine down to min_lr */
        const double w = s->warmup > 0 && s->warmup < 1 ? s->warmup : 0.0;
        if (frac < w) return (float)(s->lr / 25.0 + (s->lr - s->lr / 25.0) * frac / w);
        const double r = w < 1 ? (frac - w) / (1.0 - w) : 1.0;
        return (float)(s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(pi * r)));
    }
    default:
        return s->lr;
    }
}
