/*
 * test_ref.c - the whole network against PyTorch (llm.c's test_gpt2.c, but failing loudly).
 *
 * tests/data/ref_net.bin comes from tools/gen_reference.py (PyTorch, float32, one thread):
 * the spec text, a small net using every layer kind but dropout (random), with both pools and
 * batch norm per channel and per feature; its input, labels, random parameters and batch-norm
 * state; then the results we must reproduce:
 *   - one train-mode forward: logits, label-smoothed cross-entropy, every parameter gradient,
 *     the batch-norm running statistics after it, and an eval-mode forward using them;
 *   - five steps each of SGD (Nesterov, momentum 0.9), Adam and AdamW from the same start,
 *     weight decay on conv/dense weights only: the loss before each step, the final
 *     parameters and running statistics.
 * Each tensor prints its max abs difference (per layer slice for params, grads and state)
 * and must satisfy max|got - ref| <= 1e-4 * max(1, max|ref|). Every line prints before the
 * test fails, so one run shows the whole picture. The generator has already checked that
 * PyTorch itself agrees with its float64 run to 1e-5 on every tensor, so a difference here is
 * ours, not float32 rounding (see its docstring for why no bias feeds a batch norm directly).
 * One thread (every context here is made with threads = 1), so a failure reproduces exactly.
 *
 * The fixture is read with a small bounded reader (every length checked, like the library's
 * own readers); a missing or corrupt fixture is a failure, never a skip. Paths are relative
 * to the repository root, where scripts/run-tests runs us; CNN_REF_FIXTURE overrides.
 * Needs no Python. Regenerate with: /usr/bin/python3 tools/gen_reference.py
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

#define FIXTURE_DEFAULT "tests/data/ref_net.bin"
#define REL_TOL 1e-4
#define MAX_RECORDS 64
#define MAX_NAME 64
#define MAX_NDIM 4
#define MAX_FLOATS (1u << 20)       /* per record */
#define MAX_FILE_BYTES (16u << 20)

/* ---- the fixture reader ------------------------------------------------------------------
 * "CNNREF01", then records {u32 name_len, name, u32 ndim, u32 dims[ndim], f32 data[prod]},
 * little-endian, the last one named "end" with ndim 0 and nothing after it. */

struct record {
    char name[MAX_NAME + 1];
    int ndim;
    uint32_t dims[MAX_NDIM];
    size_t n;      /* number of floats */
    float *data;   /* owned */
};
struct fixture {
    int n_records;
    struct record rec[MAX_RECORDS];
};

static void fixture_free(struct fixture *fx) {
    for (int i = 0; i < fx->n_records; i++) free(fx->rec[i].data);
    fx->n_records = 0;
}

struct reader {
    const uint8_t *p;
    size_t len, pos;
};

static int rd_bytes(struct reader *r, const uint8_t **p, size_t n) {
    if (n > r->len - r->pos) return -1;
    *p = r->p + r->pos;
    r->pos += n;
    return 0;
}

static int rd_u32(struct reader *r, uint32_t *v) {
    const uint8_t *b;
    if (rd_bytes(r, &b, 4)) return -1;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

/* Parse buf into fx. Returns 0, or -1 with a reason in err. fx is empty on failure. */
static int fixture_parse(const uint8_t *buf, size_t len, struct fixture *fx, char *err,
                         size_t errlen) {
    struct reader r = {buf, len, 0};
    const uint8_t *magic;
    memset(fx, 0, sizeof *fx);
    if (rd_bytes(&r, &magic, 8) || memcmp(magic, "CNNREF01", 8) != 0) {
        snprintf(err, errlen, "no CNNREF01 magic");
        goto fail;
    }
    for (;;) {
        uint32_t name_len, ndim;
        const uint8_t *name;
        if (rd_u32(&r, &name_len) || name_len < 1 || name_len > MAX_NAME ||
            rd_bytes(&r, &name, name_len)) {
            snprintf(err, errlen, "record %d: bad or truncated name at byte %zu", fx->n_records,
                     r.pos);
            goto fail;
        }
        for (uint32_t i = 0; i < name_len; i++)
            if (name[i] < 0x21 || name[i] > 0x7e) {
                snprintf(err, errlen, "record %d: name is not printable ASCII", fx->n_records);
                goto fail;
            }
        const int is_end = name_len == 3 && memcmp(name, "end", 3) == 0;
        if (rd_u32(&r, &ndim) || ndim > MAX_NDIM || (ndim == 0) != is_end) {
            snprintf(err, errlen, "record '%.*s': bad or truncated ndim", (int)name_len, name);
            goto fail;
        }
        if (is_end) break;
        if (fx->n_records == MAX_RECORDS) {
            snprintf(err, errlen, "more than %d records", MAX_RECORDS);
            goto fail;
        }
        struct record *rec = &fx->rec[fx->n_records];
        memcpy(rec->name, name, name_len);
        rec->name[name_len] = '\0';
        for (int i = 0; i < fx->n_records; i++)
            if (strcmp(fx->rec[i].name, rec->name) == 0) {
                snprintf(err, errlen, "record '%s' appears twice", rec->name);
                goto fail;
            }
        rec->ndim = (int)ndim;
        size_t n = 1;
        for (uint32_t i = 0; i < ndim; i++) {
            if (rd_u32(&r, &rec->dims[i]) || rec->dims[i] < 1 || rec->dims[i] > MAX_FLOATS ||
                n * rec->dims[i] > MAX_FLOATS) {
                snprintf(err, errlen, "record '%s': bad or truncated dims", rec->name);
                goto fail;
            }
            n *= rec->dims[i];
        }
        const uint8_t *d;
        if (rd_bytes(&r, &d, n * 4)) {
            snprintf(err, errlen, "record '%s': %zu floats, but only %zu bytes left", rec->name,
                     n, r.len - r.pos);
            goto fail;
        }
        rec->n = n;
        rec->data = malloc(n * sizeof(float));
        if (!rec->data) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        fx->n_records++;
        for (size_t i = 0; i < n; i++) {
            const uint32_t u = (uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 |
                               (uint32_t)d[4 * i + 2] << 16 | (uint32_t)d[4 * i + 3] << 24;
            memcpy(&rec->data[i], &u, 4);
        }
    }
    if (r.pos != r.len) {
        snprintf(err, errlen, "%zu bytes after the end record", r.len - r.pos);
        goto fail;
    }
    return 0;
fail:
    fixture_free(fx);
    return -1;
}

static int fixture_load(const char *path, struct fixture *fx, char *err, size_t errlen) {
    memset(fx, 0, sizeof *fx);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open (run from the repository root; regenerate with "
                              "/usr/bin/python3 tools/gen_reference.py)");
        return -1;
    }
    uint8_t *buf = malloc(MAX_FILE_BYTES + 1);
    const size_t len = buf ? fread(buf, 1, MAX_FILE_BYTES + 1, f) : 0;
    const int bad = !buf || ferror(f) || len > MAX_FILE_BYTES;
    fclose(f);
    int rc = -1;
    if (bad)
        snprintf(err, errlen, "cannot read, or larger than %u bytes", MAX_FILE_BYTES);
    else
        rc = fixture_parse(buf, len, fx, err, errlen);
    free(buf);
    return rc;
}

static const struct record *fixture_find(const struct fixture *fx, const char *name) {
    for (int i = 0; i < fx->n_records; i++)
        if (strcmp(fx->rec[i].name, name) == 0) return &fx->rec[i];
    return NULL;
}

/* The record's data, which must hold exactly n floats (n = 0: any count, stored in *count). */
static const float *get(const struct fixture *fx, const char *name, size_t n, size_t *count) {
    const struct record *rec = fixture_find(fx, name);
    if (!rec) fail_msg("fixture has no record '%s'", name);
    if (n && rec->n != n)
        fail_msg("fixture record '%s' has %zu floats, expected %zu", name, rec->n, n);
    if (count) *count = rec->n;
    return rec->data;
}

/* ---- the shared fixture ------------------------------------------------------------------- */

static struct fixture fx;
static int fx_ok;
static char fx_err[256];
static const char *fx_path = FIXTURE_DEFAULT;

/* hparams, in tools/gen_reference.py's HPARAM_NAMES order */
enum {
    HP_N, HP_C, HP_H, HP_W, HP_CLASSES, HP_SMOOTHING, HP_STEPS, HP_SGD_LR, HP_SGD_MOMENTUM,
    HP_SGD_WD, HP_ADAM_LR, HP_ADAM_WD, HP_ADAMW_LR, HP_ADAMW_WD, HP_BETA1, HP_BETA2, HP_EPS,
    HP_COUNT
};

struct setup {
    const float *hp;
    int n, c, h, w, k, steps;
    char spec[512];
    uint8_t labels[256];
    const float *x;
};

static void require_fixture(struct setup *s) {
    if (!fx_ok) fail_msg("fixture %s: %s", fx_path, fx_err);
    s->hp = get(&fx, "hparams", HP_COUNT, NULL);
    const float *hp = s->hp;
    for (int i = 0; i < HP_COUNT; i++)
        if (!isfinite(hp[i])) fail_msg("fixture hparams[%d] is not finite", i);
    s->n = (int)hp[HP_N], s->c = (int)hp[HP_C], s->h = (int)hp[HP_H], s->w = (int)hp[HP_W];
    s->k = (int)hp[HP_CLASSES], s->steps = (int)hp[HP_STEPS];
    if (s->n < 1 || s->n > 256 || s->c < 1 || s->c > 64 || s->h < 1 || s->h > 256 ||
        s->w < 1 || s->w > 256 || s->k < 2 || s->k > 256 || s->steps < 1 || s->steps > 1000)
        fail_msg("fixture hparams out of range");
    size_t len;
    const float *sp = get(&fx, "spec", 0, &len);
    if (len >= sizeof s->spec) fail_msg("fixture spec too long");
    for (size_t i = 0; i < len; i++) {
        if (!(sp[i] >= 32 && sp[i] < 127)) fail_msg("fixture spec is not ASCII");
        s->spec[i] = (char)sp[i];
    }
    s->spec[len] = '\0';
    const float *lab = get(&fx, "labels", (size_t)s->n, NULL);
    for (int i = 0; i < s->n; i++) {
        if (!(lab[i] >= 0 && lab[i] < s->k && lab[i] == floorf(lab[i])))
            fail_msg("fixture label %d is %g", i, (double)lab[i]);
        s->labels[i] = (uint8_t)lab[i];
    }
    s->x = get(&fx, "x", (size_t)s->n * s->c * s->h * s->w, NULL);
}

/* A model built from the fixture's spec, with its initial params and state, and a training
 * context for the fixture's batch on one thread. */
static struct cnn_model *build_model(const struct setup *s, struct cnn_ctx **ctx) {
    struct cnn_model *m = NULL;
    const int rc = cnn_model_new(s->spec, s->c, s->h, s->w, &m);
    if (rc != CNN_OK) fail_msg("cnn_model_new(\"%s\"): %s", s->spec, cnn_errmsg());
    assert_int_equal(cnn_model_n_classes(m), s->k);
    memcpy(m->params, get(&fx, "params", m->n_params, NULL), m->n_params * sizeof(float));
    memcpy(m->state, get(&fx, "state", m->n_state, NULL), m->n_state * sizeof(float));
    assert_int_equal(cnn_ctx_new_train(m, s->n, 1, ctx), CNN_OK);
    return m;
}

/* One training forward + backward (gradients into ctx->grads), its forward seed drawn from rng
 * as the trainer draws it. */
static int train_batch(struct cnn_ctx *ctx, struct cnn_model *m, const struct setup *s,
                       float smoothing, struct cnn_rng *rng, float *loss) {
    const int saved = cnn_threads_enter(ctx->threads);
    const int rc = cnn_ctx_train_batch(ctx, m, s->x, s->labels, s->n, smoothing, cnn_rng_u64(rng),
                                       NULL, loss, NULL);
    cnn_threads_leave(saved);
    return rc;
}

static int group_setup(void **state) {
    (void)state;
    const char *env = getenv("CNN_REF_FIXTURE");
    if (env && *env) fx_path = env;
    fx_ok = fixture_load(fx_path, &fx, fx_err, sizeof fx_err) == 0;
    if (!fx_ok) fprintf(stderr, "test_ref: fixture %s: %s\n", fx_path, fx_err);
    return 0; /* each test fails on its own when the fixture is bad */
}

static int group_teardown(void **state) {
    (void)state;
    fixture_free(&fx);
    return 0;
}

/* ---- comparison --------------------------------------------------------------------------- */

static double worst_rel;      /* max over tensors of maxdiff / max(1, max|ref|) */
static char worst_name[96];

/* Print one line and return 1 if max|got-ref| <= REL_TOL * max(1, max|ref|). */
static int compare(const char *what, const float *got, const float *ref, size_t n) {
    double maxdiff = 0.0, maxref = 0.0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) finite = 0;
        const double d = fabs((double)got[i] - (double)ref[i]);
        maxdiff = d > maxdiff ? d : maxdiff;
        maxref = fabs(ref[i]) > maxref ? fabs(ref[i]) : maxref;
    }
    const double rel = maxdiff / (maxref > 1.0 ? maxref : 1.0);
    const int ok = finite && rel <= REL_TOL;
    if (rel > worst_rel || !finite) {
        worst_rel = finite ? rel : INFINITY;
        snprintf(worst_name, sizeof worst_name, "%s", what);
    }
    printf("  %-28s n %4zu  max abs diff %.3e  max |ref| %.3e  rel %.2e  %s\n", what, n, maxdiff,
           maxref, rel, ok ? "ok" : (finite ? "MISMATCH" : "NOT FINITE"));
    return ok;
}

/* Per layer: conv/dense "weight"/"bias", bn "gamma"/"beta". Names count layers of a kind from
 * 1 (conv1, conv2, bn1, ...). which: 'p' params/grads, 's' state. */
static int compare_slices(const struct cnn_model *m, const char *prefix, const float *got,
                          const float *ref, char which) {
    int ok = 1, count[CNN_LAYER_COUNT] = {0};
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        const int idx = ++count[l->kind];
        const size_t off = which == 'p' ? l->p_off : l->s_off;
        const size_t len = which == 'p' ? l->n_params : l->n_state;
        if (len == 0) continue;
        const char *a = "gamma", *b = "beta";
        size_t split = len / 2;
        if (which == 's') {
            a = "running_mean", b = "running_var";
        } else if (l->n_decay) {
            a = "weight", b = "bias", split = l->n_decay;
        }
        char name[96];
        snprintf(name, sizeof name, "%s %s%d.%s", prefix, l->ops->name, idx, a);
        ok &= compare(name, got + off, ref + off, split);
        snprintf(name, sizeof name, "%s %s%d.%s", prefix, l->ops->name, idx, b);
        ok &= compare(name, got + off + split, ref + off + split, len - split);
    }
    return ok;
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Logits, loss, every gradient, running statistics, eval logits. */
static void test_forward_backward(void **state) {
    (void)state;
    struct setup s;
    require_fixture(&s);
    struct cnn_ctx *ctx = NULL;
    struct cnn_model *m = build_model(&s, &ctx);
    const size_t nk = (size_t)s.n * s.k;
    const float eps = s.hp[HP_SMOOTHING];
    printf("spec: %s\n  (%zu params, %zu state, batch %d, label smoothing %g)\n", m->spec,
           m->n_params, m->n_state, s.n, (double)eps);
    int ok = 1;

    const int saved = cnn_threads_enter(ctx->threads);
    const float *logits = cnn_ctx_forward(ctx, m, s.x, s.n, m->state, 0, NULL);
    ok &= compare("logits (train)", logits, get(&fx, "logits", nk, NULL), nk);
    const float loss =
        cnn_softmax_xent(logits, s.labels, s.n, s.k, eps, ctx->probs, ctx->dact[m->n_layers]);
    ok &= compare("loss", &loss, get(&fx, "loss", 1, NULL), 1);
    cnn_ctx_zero_grad(ctx);
    cnn_ctx_backward(ctx, m, s.x, s.n, NULL);
    const float *grads = get(&fx, "grads", m->n_params, NULL);
    ok &= compare_slices(m, "grad", ctx->grads, grads, 'p');
    ok &= compare("grad (all)", ctx->grads, grads, m->n_params);
    ok &=
        compare_slices(m, "state after", m->state, get(&fx, "state_after", m->n_state, NULL), 's');

    const float *eval = cnn_ctx_forward(ctx, m, s.x, s.n, NULL, 0, NULL);
    ok &= compare("logits (eval)", eval, get(&fx, "eval_logits", nk, NULL), nk);
    cnn_threads_leave(saved);

    /* cnn_ctx_train_batch must be the same computation as the steps above */
    memcpy(m->state, get(&fx, "state", m->n_state, NULL), m->n_state * sizeof(float));
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    float tb_loss;
    assert_int_equal(train_batch(ctx, m, &s, eps, &rng, &tb_loss), CNN_OK);
    ok &= compare("train_batch loss", &tb_loss, get(&fx, "loss", 1, NULL), 1);
    ok &= compare("train_batch grad (all)", ctx->grads, grads, m->n_params);

    printf("  worst rel %.2e (%s), tolerance %.0e\n", worst_rel, worst_name, REL_TOL);
    cnn_ctx_free(ctx);
    cnn_model_free(m);
    if (!ok) fail_msg("forward/backward differs from PyTorch beyond %g relative", REL_TOL);
}

/* steps x {train_batch; record loss; optimizer step}, then losses, params, state. */
static void run_optimizer(const char *name, int kind, float lr, float wd) {
    struct setup s;
    require_fixture(&s);
    struct cnn_ctx *ctx = NULL;
    struct cnn_model *m = build_model(&s, &ctx);
    struct cnn_optim_cfg cfg;
    cnn_optim_cfg_default(&cfg, kind);
    cfg.momentum = s.hp[HP_SGD_MOMENTUM];
    cfg.nesterov = 1;
    cfg.beta1 = s.hp[HP_BETA1];
    cfg.beta2 = s.hp[HP_BETA2];
    cfg.eps = s.hp[HP_EPS];
    cfg.weight_decay = wd;
    cfg.decay_all = 0;
    struct cnn_optim *opt;
    if (cnn_optim_new(m, &cfg, &opt) != CNN_OK) fail_msg("cnn_optim_new: %s", cnn_errmsg());
    float losses[1000];
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    for (int t = 0; t < s.steps; t++) {
        const int rc = train_batch(ctx, m, &s, s.hp[HP_SMOOTHING], &rng, &losses[t]);
        if (rc != CNN_OK) fail_msg("cnn_ctx_train_batch: %s", cnn_errmsg());
        if (cnn_optim_step(opt, m->params, ctx->grads, m->decay_mask, m->n_params, lr) != CNN_OK)
            fail_msg("cnn_optim_step: %s", cnn_errmsg());
    }
    char key[64], what[64];
    printf("%s: lr %g, weight decay %g, %d steps\n", name, (double)lr, (double)wd, s.steps);
    printf("  losses:");
    const float *ref_losses = get(&fx, (snprintf(key, sizeof key, "%s_losses", name), key),
                                  (size_t)s.steps, NULL);
    for (int t = 0; t < s.steps; t++) printf(" %.6f/%.6f", losses[t], ref_losses[t]);
    printf("  (ours/PyTorch)\n");
    int ok = 1;
    snprintf(what, sizeof what, "%s losses", name);
    ok &= compare(what, losses, ref_losses, (size_t)s.steps);
    snprintf(key, sizeof key, "%s_params_final", name);
    const float *pf = get(&fx, key, m->n_params, NULL);
    snprintf(what, sizeof what, "%s final", name);
    ok &= compare_slices(m, what, m->params, pf, 'p');
    snprintf(what, sizeof what, "%s final params (all)", name);
    ok &= compare(what, m->params, pf, m->n_params);
    snprintf(key, sizeof key, "%s_state_final", name);
    snprintf(what, sizeof what, "%s final", name);
    ok &= compare_slices(m, what, m->state, get(&fx, key, m->n_state, NULL), 's');
    printf("  worst rel so far %.2e (%s)\n", worst_rel, worst_name);
    cnn_optim_free(opt);
    cnn_ctx_free(ctx);
    cnn_model_free(m);
    if (!ok) fail_msg("%s differs from PyTorch beyond %g relative", name, REL_TOL);
}

static void test_sgd_nesterov(void **state) {
    (void)state;
    if (!fx_ok) fail_msg("fixture %s: %s", fx_path, fx_err);
    const float *hp = get(&fx, "hparams", HP_COUNT, NULL);
    run_optimizer("sgd", CNN_OPT_SGD, hp[HP_SGD_LR], hp[HP_SGD_WD]);
}

static void test_adam(void **state) {
    (void)state;
    if (!fx_ok) fail_msg("fixture %s: %s", fx_path, fx_err);
    const float *hp = get(&fx, "hparams", HP_COUNT, NULL);
    run_optimizer("adam", CNN_OPT_ADAM, hp[HP_ADAM_LR], hp[HP_ADAM_WD]);
}

static void test_adamw(void **state) {
    (void)state;
    if (!fx_ok) fail_msg("fixture %s: %s", fx_path, fx_err);
    const float *hp = get(&fx, "hparams", HP_COUNT, NULL);
    run_optimizer("adamw", CNN_OPT_ADAMW, hp[HP_ADAMW_LR], hp[HP_ADAMW_WD]);
}

/* The reader itself: a missing file and every kind of damage are refused, never trusted. */
static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void expect_reject(const uint8_t *buf, size_t len, const char *what) {
    struct fixture bad;
    char err[256] = "";
    if (fixture_parse(buf, len, &bad, err, sizeof err) == 0) {
        fixture_free(&bad);
        fail_msg("corrupt fixture accepted: %s", what);
    }
    assert_int_equal(bad.n_records, 0);
    assert_true(err[0] != '\0');
}

static void test_fixture_reader(void **state) {
    (void)state;
    struct fixture tmp;
    char err[256];
    assert_int_equal(fixture_load("tests/data/no-such-fixture.bin", &tmp, err, sizeof err), -1);
    if (!fx_ok) fail_msg("fixture %s: %s", fx_path, fx_err);

    FILE *f = fopen(fx_path, "rb");
    assert_non_null(f);
    static uint8_t good[1 << 20];
    const size_t len = fread(good, 1, sizeof good - 16, f);
    fclose(f);
    assert_true(len > 64 && len < sizeof good - 16);
    uint8_t *buf = malloc(len + 16);
    assert_non_null(buf);

    memcpy(buf, good, len);
    assert_int_equal(fixture_parse(buf, len, &tmp, err, sizeof err), 0);
    fixture_free(&tmp);

    /* truncated anywhere: every length in the header region, then a stride through the data */
    for (size_t cut = 0; cut < len; cut += cut < 256 ? 1 : 61) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", cut, len);
        expect_reject(buf, cut, what);
    }
    expect_reject(buf, len - 1, "last byte missing");
    /* trailing garbage */
    buf[len] = 0;
    expect_reject(buf, len + 1, "a byte after the end record");
    /* the first record is at offset 8: name_len, "spec", ndim, dims[0] */
    buf[0] ^= 0x20;
    expect_reject(buf, len, "bad magic");
    buf[0] ^= 0x20;
    const uint32_t bad_u32[] = {0, MAX_NAME + 1, 0xffffffffu};
    for (size_t i = 0; i < sizeof bad_u32 / sizeof *bad_u32; i++) {
        memcpy(buf, good, len);
        put_u32(buf + 8, bad_u32[i]);
        expect_reject(buf, len, "bad name_len");
        memcpy(buf, good, len);
        put_u32(buf + 16, bad_u32[i]);
        expect_reject(buf, len, "bad ndim");
        memcpy(buf, good, len);
        put_u32(buf + 20, bad_u32[i]);
        expect_reject(buf, len, "bad dims[0]");
    }
    /* dims whose product overflows the per-record limit */
    memcpy(buf, good, len);
    put_u32(buf + 16, 2);
    put_u32(buf + 20, 1u << 16);
    put_u32(buf + 24, 1u << 16);
    expect_reject(buf, len, "dims product too large");
    /* a name byte that is not printable */
    memcpy(buf, good, len);
    buf[12] = 0;
    expect_reject(buf, len, "non-printable name");
    /* the end record renamed: it then claims ndim 0 as an ordinary record */
    memcpy(buf, good, len);
    assert_memory_equal(buf + len - 7, "end", 3);
    buf[len - 5] = 'x';
    expect_reject(buf, len, "no end record");
    /* a duplicated record: the first one ("spec", ending at byte 24 + 4 * dims[0]) twice */
    {
        const size_t first = 8 + 4 + 4 + 4 + 4 + 4 * (size_t)(good[20] | good[21] << 8);
        uint8_t *dup = malloc(len + first);
        assert_non_null(dup);
        memcpy(dup, good, first);
        memcpy(dup + first, good + 8, len - 8);
        expect_reject(dup, len + first - 8, "duplicate record");
        free(dup);
    }
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_reader),
        cmocka_unit_test(test_forward_backward),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_adamw),
    };
    const int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    printf("worst rel over all tensors %.2e (%s), tolerance %.0e\n", worst_rel, worst_name,
           REL_TOL);
    return failed ? 1 : 0;
}
