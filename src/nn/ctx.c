/*
 * ctx.c - contexts: the memory and threads one computation needs, and the forward/backward
 * loops over a model's layers.
 *
 * Memory: every buffer of a context is sized in one place, ctx_layout(), from the model's
 * layers, max_batch and the thread count, and cut from one arena, so a step never allocates
 * and no caller sizes a buffer the context later writes. Activations, their gradients,
 * per-layer caches and scratch live in the arena. Gradients of activations and the per-image
 * caches exist only in a training context. An inference context needs no activation after the
 * next layer has read it, so it keeps two buffers of the largest layer output and the layers
 * use them in turn: a few MB, like a framework that frees tensors as it goes.
 *
 * Threads: a context has its own thread count. For the length of each call the calling
 * thread's OpenMP count is set to it and then put back (cnn_threads_enter/leave), so the
 * layers' parallel loops and cnn_gemm use that many threads and nothing outlives the call.
 * A batch of at least one image per thread runs as a team: each thread takes a contiguous
 * slice of the images through every layer, with single-threaded sgemm and its own scratch;
 * the only meetings are batch norm's statistics (cnn_batch_sum) and, after backward, adding
 * the threads' gradient buffers in thread order. A single image at inference (latency) is
 * split instead: each thread computes a part of every layer's output (split_forward below).
 * Activations are fused into the layer before them where it can apply them, and at inference a
 * batch norm into the convolution before it (model.c).
 *
 * Backward writes (assigns) dx rather than accumulating into it: in a sequential net every
 * activation has exactly one consumer, so zeroing dx first would only add memory traffic.
 * Parameter gradients do accumulate, and cnn_ctx_zero_grad clears them once per step.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"

#define CTX_MAX_BATCH 65536
#define CTX_MAX_THREADS 1024

/* ---- threads ------------------------------------------------------------------------------ */

int cnn_threads_enter(int threads) {
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    return saved;
#else
    (void)threads;
    return 1;
#endif
}

void cnn_threads_leave(int saved) {
#ifdef _OPENMP
    omp_set_num_threads(saved);
#else
    (void)saved;
#endif
}

int cnn_threads_now(void) {
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

int cnn_default_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---- layout ------------------------------------------------------------------------------- */

/* Round a float count up to whole 64-byte lines, so each thread's scratch starts on its own
 * cache line and can hold doubles. */
static size_t round_line(size_t floats) { return (floats + 15) & ~(size_t)15; }

/* What the layers need: the largest output, scratch per call, doubles to reduce. */
struct layer_needs {
    size_t maxout, ws, red;
};

static struct layer_needs layer_needs(const struct cnn_model *m, int max_batch) {
    struct layer_needs nd = {0, 0, 1};
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        const size_t out = cnn_shape_size(l->out);
        assert(!(l->cache_item && l->cache_fixed));
        nd.maxout = out > nd.maxout ? out : nd.maxout;
        nd.red = l->team_red > nd.red ? l->team_red : nd.red;
        /* each team thread's slice may hold up to the whole batch if the runtime gives fewer
         * threads than asked, so every thread's scratch is sized for max_batch */
        const size_t s = l->ops->ws_size ? l->ops->ws_size(l, max_batch) : 0;
        nd.ws = s > nd.ws ? s : nd.ws;
    }
    nd.ws = round_line(nd.ws);
    return nd;
}

/* Layer l writes into its input's buffer: a fused activation, which the layer before applies,
 * or, in an inference context, a batch norm folded into the layer before (struct cnn_layer),
 * which is then skipped or, on an unprepared model, runs in place. */
static int in_place(const struct cnn_layer *l, int train) {
    return l->fused || (l->folded && !train);
}

/* Floats of the labels buffer (bytes) for batches of nb, in whole cache lines. */
static size_t label_floats(size_t nb) { return round_line((nb + 3) / 4); }

/* Floats of arena before the scratch: what place_activations, xbuf and probs take (ctx_layout
 * asserts that they agree). The labels go after the scratch: placed between probs and the
 * scratch they moved it by 256 bytes, and im2col's share of inference went from 9% to 13% of
 * the time (perf, the default network on one thread), likely 4 KB aliasing between the
 * padded image and the columns it is copied into. */
static size_t arena_floats(const struct cnn_model *m, const struct layer_needs *nd, size_t nb,
                           int train, int split) {
    size_t total = nb * cnn_shape_size(m->in) + nb * (size_t)m->n_classes; /* xbuf, probs */
    for (int i = 0; split && i < m->n_layers; i++)
        if (!in_place(&m->layers[i], train)) total += cnn_shape_size(m->layers[i].out);
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        total += l->cache_fixed;
        if (train && !in_place(l, train))
            total += nb * (2 * cnn_shape_size(l->out) + l->cache_item);
    }
    if (!train) total += 2 * nb * nd->maxout + nb * (size_t)m->n_classes; /* + the logits */
    return round_line(total);
}

/* Point act/dact/cache into the arena. Layer i reads act[i] and writes act[i+1]. */
static float *place_activations(struct cnn_ctx *ctx, const struct cnn_model *m,
                                const struct layer_needs *nd, float *p) {
    const int L = m->n_layers;
    const size_t nb = (size_t)ctx->max_batch;
    float *pingpong[2] = {NULL, NULL};
    int next = 0; /* the ping-pong buffer the next layer writes */
    if (!ctx->train) {
        pingpong[0] = p, p += nb * nd->maxout;
        pingpong[1] = p, p += nb * nd->maxout;
    }
    for (int i = 0; i < L; i++) {
        const struct cnn_layer *l = &m->layers[i];
        const size_t out = cnn_shape_size(l->out);
        if (in_place(l, ctx->train)) { /* same buffers as layer i-1 */
            ctx->act[i + 1] = ctx->act[i];
            ctx->dact[i + 1] = ctx->dact[i];
            ctx->cache[i] = p, p += l->cache_fixed;
        } else if (ctx->train) {
            ctx->act[i + 1] = p, p += nb * out;
            ctx->dact[i + 1] = p, p += nb * out;
            ctx->cache[i] = p, p += nb * l->cache_item + l->cache_fixed;
        } else {
            /* Image j of any layer starts at j * maxout (pp_stride), so a team's slices never
             * overlap. The logits get a buffer of their own, (n, n_classes). */
            ctx->act[i + 1] = i + 1 < L ? pingpong[next] : p;
            if (i + 1 == L) p += nb * (size_t)m->n_classes;
            next ^= 1;
            ctx->cache[i] = p, p += l->cache_fixed;
        }
    }
    ctx->pp_stride = ctx->train ? 0 : nd->maxout;
    return p;
}

/* ---- one image split between threads -----------------------------------------------------
 * A single image on a context of T > 1 threads runs as a team in which every thread computes
 * its share of each layer's output channels (a dense layer's units), and the threads meet only
 * before a layer that reads channels another thread wrote: a convolution or a dense layer,
 * which read all of their input. Batch norm, activations, pooling and dropout keep the cut of
 * the layer before, so each thread goes on with the channels it made. Every thread repeats
 * the input's im2col or Winograd transform for itself, which costs less than one core reading
 * what the other wrote. Each layer writes a buffer of its own, so no thread overwrites what
 * another may still be reading. The cuts and meetings are planned once, here. */

void cnn_part_same(const struct cnn_layer *l, int lo, int hi, int *in_lo, int *in_hi) {
    (void)l;
    *in_lo = lo, *in_hi = hi;
}

/* The cut of the layer before (prev, over prev_c channels) scaled to l's output, if it divides
 * evenly and each of l's parts reads only the same thread's part of its input. */
static int inherit_cut(const struct cnn_layer *l, const int *prev, int prev_c, int T, int *cut) {
    if (!l->ops->part_needs) return 0;
    for (int t = 0; t <= T; t++) {
        if ((long)prev[t] * l->out.c % prev_c) return 0;
        cut[t] = (int)((long)prev[t] * l->out.c / prev_c);
    }
    for (int t = 0; t < T; t++) {
        int lo, hi;
        if (cut[t] == cut[t + 1]) continue;
        l->ops->part_needs(l, cut[t], cut[t + 1], &lo, &hi);
        if (lo < prev[t] || hi > prev[t + 1]) return 0;
    }
    return 1;
}

/* Fills cut and sync (see struct cnn_ctx); 0 when a layer cannot split an image. */
static int split_plan(const struct cnn_model *m, int T, int *cut, unsigned char *sync) {
    const int *prev = NULL;
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        int *c = cut + (size_t)i * (T + 1);
        sync[i] = 0;
        if (in_place(l, 0)) { /* in its producer's buffer, on its producer's channels */
            memcpy(c, prev, (size_t)(T + 1) * sizeof(int));
            continue;
        }
        if (!l->ops->forward_part) return 0;
        if (!prev || !inherit_cut(l, prev, l->in.c, T, c)) {
            for (int t = 0; t <= T; t++) c[t] = (int)((long)l->out.c * t / T);
            sync[i] = prev != NULL; /* the first layer reads the caller's input */
        }
        prev = c;
    }
    return 1;
}

static int split_new(struct cnn_ctx *ctx, const struct cnn_model *m) {
    const int T = ctx->threads, L = m->n_layers;
    if (ctx->train || T < 2) return CNN_OK;
    ctx->split_cut = malloc((size_t)L * (T + 1) * sizeof(int));
    ctx->split_sync = malloc((size_t)L);
    ctx->split_act = calloc((size_t)L + 1, sizeof(float *));
    if (!ctx->split_cut || !ctx->split_sync || !ctx->split_act)
        return cnn_fail(CNN_ERR_NOMEM, "out of memory");
    if (split_plan(m, T, ctx->split_cut, ctx->split_sync)) return CNN_OK;
    free(ctx->split_cut), free(ctx->split_sync), free(ctx->split_act);
    ctx->split_cut = NULL, ctx->split_sync = NULL, ctx->split_act = NULL;
    return CNN_OK;
}

static float *place_split(struct cnn_ctx *ctx, const struct cnn_model *m, float *p) {
    for (int i = 0; ctx->split_cut && i < m->n_layers; i++) {
        if (in_place(&m->layers[i], 0)) {
            ctx->split_act[i + 1] = ctx->split_act[i];
            continue;
        }
        ctx->split_act[i + 1] = p;
        p += cnn_shape_size(m->layers[i].out);
    }
    return p;
}

/* The one place a context's sizes are decided. */
static int ctx_layout(struct cnn_ctx *ctx, const struct cnn_model *m) {
    const int T = ctx->threads, L = m->n_layers;
    const size_t nb = (size_t)ctx->max_batch;
    const struct layer_needs nd = layer_needs(m, ctx->max_batch);
    const size_t ws = T > 1 ? (size_t)T * nd.ws : nd.ws;
    const int rc = split_new(ctx, m);
    if (rc) return rc;
    const size_t front = arena_floats(m, &nd, nb, ctx->train, ctx->split_cut != NULL);
    const size_t total = front + ws + label_floats(nb);
    if (total > ((size_t)1 << 28))
        return cnn_fail(CNN_ERR_LIMIT, "batch %d would need %zu MB of activations (limit 1024)",
                        ctx->max_batch, total * sizeof(float) >> 20);
    ctx->arena = cnn_alloc_large(total * sizeof(float));
    ctx->act = calloc((size_t)L + 1, sizeof *ctx->act);
    ctx->dact = calloc((size_t)L + 1, sizeof *ctx->dact);
    ctx->cache = calloc((size_t)L, sizeof *ctx->cache);
    ctx->team_red = malloc(((size_t)T + 1) * nd.red * sizeof(double));
    ctx->tap_off = malloc((size_t)L * sizeof(int));
    ctx->tap_dim = ctx->tap_off ? cnn_typicality_layout(m, ctx->tap_off) : 0;
    ctx->taps = malloc(nb * (size_t)ctx->tap_dim * sizeof(float) + 1);
    int ok = ctx->arena && ctx->act && ctx->dact && ctx->cache && ctx->team_red &&
             ctx->tap_off && ctx->taps;
    if (ok && ctx->train) {
        ctx->grads = calloc(m->n_params + 1, sizeof(float));
        ctx->tgrads = T > 1 ? calloc((size_t)T - 1, sizeof *ctx->tgrads) : NULL;
        ok = ctx->grads && (T == 1 || ctx->tgrads);
        for (int t = 0; ok && T > 1 && t < T - 1; t++)
            ok = (ctx->tgrads[t] = malloc((m->n_params + 1) * sizeof(float))) != NULL;
    }
    if (!ok)
        return cnn_fail(CNN_ERR_NOMEM, "cannot allocate %zu MB of activations for batch %d",
                        total * sizeof(float) >> 20, ctx->max_batch);
    ctx->team_stride = nd.red;
    float *p = place_activations(ctx, m, &nd, ctx->arena);
    ctx->xbuf = p, p += nb * cnn_shape_size(m->in);
    ctx->probs = p, p += nb * (size_t)m->n_classes;
    p = place_split(ctx, m, p);
    ctx->ws = ctx->arena + round_line((size_t)(p - ctx->arena));
    ctx->labels = (uint8_t *)(ctx->ws + ws);
    ctx->ws_thread = nd.ws;
    assert((size_t)(ctx->ws - ctx->arena) == front);
    return CNN_OK;
}

void cnn_ctx_free(struct cnn_ctx *ctx) {
    if (!ctx) return;
    if (ctx->tgrads)
        for (int t = 0; t + 1 < ctx->threads; t++) free(ctx->tgrads[t]);
    free(ctx->tgrads);
    free(ctx->grads);
    free(ctx->team_red);
    free(ctx->arena);
    free(ctx->act);
    free(ctx->dact);
    free(ctx->cache);
    free(ctx->tap_off);
    free(ctx->taps);
    free(ctx->split_cut);
    free(ctx->split_sync);
    free(ctx->split_act);
    free(ctx->spec);
    free(ctx);
}

static int ctx_new(const struct cnn_model *m, int max_batch, int threads, int train,
                   struct cnn_ctx **out) {
    *out = NULL;
    if (max_batch < 1 || max_batch > CTX_MAX_BATCH)
        return cnn_fail(CNN_ERR_ARG, "batch size %d out of range [1, %d]", max_batch,
                        CTX_MAX_BATCH);
    if (threads < 0 || threads > CTX_MAX_THREADS)
        return cnn_fail(CNN_ERR_ARG, "thread count %d out of range [0, %d]", threads,
                        CTX_MAX_THREADS);
    struct cnn_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return cnn_fail(CNN_ERR_NOMEM, "out of memory");
    ctx->threads = threads ? threads : cnn_default_threads();
    ctx->max_batch = max_batch;
    ctx->train = train;
    ctx->in = m->in;
    ctx->n_layers = m->n_layers;
    ctx->n_classes = m->n_classes;
    ctx->n_params = m->n_params;
    ctx->spec = malloc(strlen(m->spec) + 1);
    int rc = ctx->spec ? CNN_OK : cnn_fail(CNN_ERR_NOMEM, "out of memory");
    if (!rc) {
        strcpy(ctx->spec, m->spec);
        rc = ctx_layout(ctx, m);
    }
    if (rc) {
        cnn_ctx_free(ctx);
        return rc;
    }
    *out = ctx;
    return CNN_OK;
}

int cnn_ctx_new(const struct cnn_model *m, int max_batch, int threads, struct cnn_ctx **out) {
    return ctx_new(m, max_batch, threads, 0, out);
}

int cnn_ctx_new_train(const struct cnn_model *m, int max_batch, int threads,
                      struct cnn_ctx **out) {
    return ctx_new(m, max_batch, threads, 1, out);
}

int cnn_ctx_threads(const struct cnn_ctx *ctx) { return ctx->threads; }
int cnn_ctx_max_batch(const struct cnn_ctx *ctx) { return ctx->max_batch; }

int cnn_ctx_check(const struct cnn_ctx *ctx, const struct cnn_model *m) {
    if (ctx->n_layers == m->n_layers && ctx->n_params == m->n_params &&
        ctx->in.c == m->in.c && ctx->in.h == m->in.h && ctx->in.w == m->in.w &&
        !strcmp(ctx->spec, m->spec))
        return CNN_OK;
    return cnn_fail(CNN_ERR_ARG, "the context was made for '%.150s' (%dx%dx%d), not '%.150s'",
                    ctx->spec, ctx->in.c, ctx->in.h, ctx->in.w, m->spec);
}

/* ---- teams (see struct cnn_team in internal.h) ------------------------------------------- */

const double *cnn_batch_sum(const struct cnn_team *t, struct cnn_reduce *red, double *v,
                            int len) {
    double *total = v;
    if (t && t->nthreads > 1) {
        total = t->red + (size_t)t->nthreads * t->stride;
        memcpy(t->red + (size_t)t->tid * t->stride, v, (size_t)len * sizeof(double));
#pragma omp barrier
#pragma omp for schedule(static)
        for (int j = 0; j < len; j++) {
            double s = 0.0;
            for (int k = 0; k < t->nthreads; k++) s += t->red[(size_t)k * t->stride + j];
            total[j] = s;
        }
        /* the worksharing loop ends with a barrier: every total is written */
    }
    if (red && red->r.sum) {
        if (!t || t->tid == 0) {
            const int rc = red->r.sum(total, (size_t)len, CNN_F64, red->r.user);
            if (rc && !red->rc) red->rc = rc;
        }
        if (t && t->nthreads > 1) {
#pragma omp barrier
        }
    }
    return total;
}

/* Threads for a batch of n: a team when every thread gets at least one image (and we are not
 * already inside a parallel region), else 1 and the layers parallelise inside themselves. */
static int team_size(const struct cnn_ctx *ctx, int n) {
#ifdef _OPENMP
    const int T = ctx->threads;
    return T > 1 && n >= T && !omp_in_parallel() ? T : 1;
#else
    (void)ctx, (void)n;
    return 1;
#endif
}

/* This thread's share of a batch of n: images [i0, i0 + count). */
static struct cnn_team team_member(const struct cnn_ctx *ctx, int n, int *count) {
    struct cnn_team t = {.tid = 0, .nthreads = 1, .n_total = n, .red = ctx->team_red,
                         .stride = ctx->team_stride};
#ifdef _OPENMP
    t.tid = omp_get_thread_num();
    t.nthreads = omp_get_num_threads();
#endif
    t.i0 = (int)((long)n * t.tid / t.nthreads);
    *count = (int)((long)n * (t.tid + 1) / t.nthreads) - t.i0;
    return t;
}

/* Image i0 of the input of layer i: act[i] is (n, in) in training; between layers of an
 * inference context, images are pp_stride apart (place_activations). */
static size_t act_off(const struct cnn_ctx *ctx, const struct cnn_model *m, int i, size_t i0) {
    const struct cnn_shape s = i < m->n_layers ? m->layers[i].in : m->layers[i - 1].out;
    const size_t per = ctx->pp_stride && i > 0 && i < m->n_layers ? ctx->pp_stride
                                                                 : cnn_shape_size(s);
    return i0 * per;
}

/* What one thread runs: images [i0, i0 + n) of the batch (team NULL: all of it). */
struct pass {
    const struct cnn_model *m;
    const float *x;
    float *taps; /* (n, ctx->tap_dim): typicality features wanted, else NULL */
    float *state; /* training: the model's state to update; NULL: inference */
    uint64_t seed;
    struct cnn_reduce *red;
};

/* taps (n, tap_dim) at offset off += the channel means of y (n images, shape s, images
 * stride floats apart). */
static void tap_channel_means(const float *y, size_t stride, struct cnn_shape s, int n,
                              float *taps, int tap_dim, int off) {
    const size_t hw = (size_t)s.h * s.w;
    for (int j = 0; j < n; j++)
        for (int c = 0; c < s.c; c++) {
            const float *p = y + (size_t)j * stride + (size_t)c * hw;
            taps[(size_t)j * tap_dim + off + c] = cnn_sum8(p, hw) / (float)hw;
        }
}

/* After layer i ran: the features of layer i and of the activations fused into it; act is
 * ctx->act, or ctx->split_act for a split image (i0 0). */
static void tap_layer(struct cnn_ctx *ctx, const struct pass *ps, float *const *act, int i, int n,
                      size_t i0) {
    const struct cnn_model *m = ps->m;
    for (int t = i; t < m->n_layers && (t == i || m->layers[t].fused); t++) {
        if (ctx->tap_off[t] < 0) continue;
        const size_t stride = cnn_shape_size(m->layers[t].out); /* within a thread's slice */
        tap_channel_means(act[t + 1] + act_off(ctx, m, t + 1, i0), stride, m->layers[t].out, n,
                          ps->taps + i0 * ctx->tap_dim, ctx->tap_dim, ctx->tap_off[t]);
    }
}

/* What an inference pass may use of the layer's prepared slice: NULL when the model has none
 * (a training pass works from the params alone). */
static const float *layer_prep(const struct pass *ps, const struct cnn_layer *l) {
    return !ps->state && ps->m->prepared && l->n_prep ? ps->m->prep + l->q_off : NULL;
}

/* Whether layer l is folded into the layer before in this pass, which then does its work:
 * an inference pass on a prepared model (struct cnn_layer). */
static int folded_now(const struct pass *ps, const struct cnn_layer *l) {
    return l->folded && !ps->state && ps->m->prepared;
}

/* Layer i has nothing to do in this pass: fused, or folded. */
static int skipped(const struct pass *ps, int i) {
    const struct cnn_layer *l = &ps->m->layers[i];
    return l->fused || folded_now(ps, l);
}

/* The activation layer i writes: its own, or, where it folds the batch norm after it, that
 * batch norm's (in an inference context the same buffer; in a training context, the one the
 * next layer reads). */
static int out_index(const struct pass *ps, int i) {
    return i + 1 + (i + 1 < ps->m->n_layers && folded_now(ps, &ps->m->layers[i + 1]));
}

static void forward_layers(struct cnn_ctx *ctx, const struct pass *ps, int n,
                           const struct cnn_team *team, float *ws) {
    const struct cnn_model *m = ps->m;
    const size_t i0 = team ? (size_t)team->i0 : 0;
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        if (skipped(ps, i)) continue;
        const int o = out_index(ps, i);
        const struct cnn_fwd f = {
            .n = n,
            .train = ps->state != NULL,
            .x = (i ? ctx->act[i] : ps->x) + act_off(ctx, m, i, i0),
            .y = ctx->act[o] + act_off(ctx, m, o, i0),
            .p = m->params + l->p_off,
            .s = m->state + l->s_off,
            .s_update = ps->state ? ps->state + l->s_off : NULL,
            .cache = ctx->cache[i] + i0 * l->cache_item,
            .prep = layer_prep(ps, l),
            .ws = ws,
            .seed = ps->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1)),
            .team = team,
            .red = ps->red,
        };
        l->ops->forward(l, &f);
        if (ps->taps) tap_layer(ctx, ps, ctx->act, i, n, i0);
    }
}

static void backward_layers(struct cnn_ctx *ctx, const struct pass *ps, int n,
                            const struct cnn_team *team, float *ws, float *grads) {
    const struct cnn_model *m = ps->m;
    const size_t i0 = team ? (size_t)team->i0 : 0;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const struct cnn_layer *l = &m->layers[i];
        if (l->fused) continue;
        const size_t in = act_off(ctx, m, i, i0), out = act_off(ctx, m, i + 1, i0);
        const struct cnn_bwd b = {
            .n = n,
            .x = (i ? ctx->act[i] : ps->x) + in,
            .y = ctx->act[i + 1] + out,
            .dy = ctx->dact[i + 1] + out,
            .dx = i ? ctx->dact[i] + in : NULL,
            .p = m->params + l->p_off,
            .dp = grads + l->p_off,
            .cache = ctx->cache[i] + i0 * l->cache_item,
            .ws = ws,
            .team = team,
            .red = ps->red,
        };
        l->ops->backward(l, &b);
    }
}

/* One image at inference, each thread its parts of each layer (see split_plan). */
static const float *split_forward(struct cnn_ctx *ctx, const struct pass *ps) {
    const struct cnn_model *m = ps->m;
    const int T = ctx->threads;
#pragma omp parallel num_threads(T)
    {
        int tid = 0, nt = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nt = omp_get_num_threads(); /* the runtime may give fewer threads than asked */
#endif
        for (int i = 0; i < m->n_layers; i++) {
            const struct cnn_layer *l = &m->layers[i];
            if (skipped(ps, i)) continue;
            if (ctx->split_sync[i]) {
#pragma omp barrier
            }
            const struct cnn_fwd f = {
                .n = 1,
                .x = i ? ctx->split_act[i] : ps->x,
                .y = ctx->split_act[out_index(ps, i)],
                .p = m->params + l->p_off,
                .s = m->state + l->s_off,
                .cache = ctx->cache[i],
                .prep = layer_prep(ps, l),
                .ws = ctx->ws + (size_t)tid * ctx->ws_thread,
            };
            const int *cut = ctx->split_cut + (size_t)i * (T + 1);
            for (int t = tid; t < T; t += nt)
                if (cut[t] < cut[t + 1]) l->ops->forward_part(l, &f, cut[t], cut[t + 1]);
        }
    }
    for (int i = 0; ps->taps && i < m->n_layers; i++)
        if (!skipped(ps, i)) tap_layer(ctx, ps, ctx->split_act, i, 1, 0);
    return ctx->split_act[m->n_layers];
}

static const float *forward_pass(struct cnn_ctx *ctx, const struct pass *ps, int n) {
    assert(n >= 1 && n <= ctx->max_batch);
    if (n == 1 && ctx->split_cut && !ps->state && cnn_threads_now() > 1)
        return split_forward(ctx, ps);
    const int T = team_size(ctx, n);
    if (T == 1) {
        forward_layers(ctx, ps, n, NULL, ctx->ws);
        return ctx->act[ps->m->n_layers];
    }
#pragma omp parallel num_threads(T)
    {
        int count;
        const struct cnn_team t = team_member(ctx, n, &count);
        forward_layers(ctx, ps, count, &t, ctx->ws + (size_t)t.tid * ctx->ws_thread);
    }
    return ctx->act[ps->m->n_layers];
}

const float *cnn_ctx_forward(struct cnn_ctx *ctx, const struct cnn_model *m, const float *x,
                             int n, float *state, uint64_t seed, struct cnn_reduce *red) {
    assert(!state || ctx->train); /* training caches exist only then */
    const struct pass ps = {m, x, NULL, state, seed, red};
    return forward_pass(ctx, &ps, n);
}

void cnn_ctx_backward(struct cnn_ctx *ctx, const struct cnn_model *m, const float *x, int n,
                      struct cnn_reduce *red) {
    assert(ctx->train && n >= 1 && n <= ctx->max_batch);
    const struct pass ps = {m, x, NULL, NULL, 0, red};
    const int T = team_size(ctx, n);
    if (T == 1) {
        backward_layers(ctx, &ps, n, NULL, ctx->ws, ctx->grads);
        return;
    }
    /* Thread 0 accumulates into ctx->grads, the others into zeroed buffers of their own, which
     * are then added to ctx->grads in thread order. */
#pragma omp parallel num_threads(T)
    {
        int count;
        const struct cnn_team t = team_member(ctx, n, &count);
        float *g = t.tid ? ctx->tgrads[t.tid - 1] : ctx->grads;
        if (t.tid) memset(g, 0, m->n_params * sizeof(float));
        backward_layers(ctx, &ps, count, &t, ctx->ws + (size_t)t.tid * ctx->ws_thread, g);
#pragma omp barrier
        const long np = (long)m->n_params;
#pragma omp for schedule(static)
        for (long j = 0; j < np; j++) {
            float s = 0.0f;
            for (int k = 1; k < t.nthreads; k++) s += ctx->tgrads[k - 1][j];
            ctx->grads[j] += s;
        }
    }
}

void cnn_ctx_zero_grad(struct cnn_ctx *ctx) {
    memset(ctx->grads, 0, ctx->n_params * sizeof(float));
}

int cnn_ctx_train_batch(struct cnn_ctx *ctx, struct cnn_model *m, const float *x,
                        const uint8_t *labels, int n, float label_smoothing, uint64_t seed,
                        struct cnn_reduce *red, float *loss_out, int *correct_out) {
    const int k = m->n_classes;
    const float *logits = cnn_ctx_forward(ctx, m, x, n, m->state, seed, red);
    const float loss = cnn_softmax_xent(logits, labels, n, k, label_smoothing, ctx->probs,
                                        ctx->dact[m->n_layers]);
    if (red && red->n_total > n) { /* part of a larger batch: the mean is over all of it */
        const float share = (float)((double)n / red->n_total); /* 0.5 of an even split: exact */
        float *dl = ctx->dact[m->n_layers];
        for (size_t j = 0; j < (size_t)n * k; j++) dl[j] *= share;
    }
    cnn_ctx_zero_grad(ctx);
    cnn_ctx_backward(ctx, m, x, n, red);
    int correct = 0;
    for (int i = 0; i < n; i++) correct += cnn_argmax(ctx->probs + (size_t)i * k, k) == labels[i];
    if (loss_out) *loss_out = loss;
    if (correct_out) *correct_out = correct;
    return red && red->rc ? CNN_ERR_REDUCE : CNN_OK;
}

/* ---- inference ---------------------------------------------------------------------------- */

/* Chunks of at most max_batch images: x (n, in), or pixels (n, in) normalised into xbuf. */
int cnn_predict_features(const struct cnn_model *m, struct cnn_ctx *ctx, const float *x,
                         const uint8_t *pixels, int n, float *probs, float *features) {
    if (n < 0) return cnn_fail(CNN_ERR_ARG, "negative image count %d", n);
    int rc = cnn_ctx_check(ctx, m);
    if (rc) return rc;
    const size_t in = cnn_shape_size(m->in);
    const float scale = 1.0f / (255.0f * m->norm_std), shift = m->norm_mean / m->norm_std;
    const int saved = cnn_threads_enter(ctx->threads);
    for (int i0 = 0; i0 < n; i0 += ctx->max_batch) {
        const int b = n - i0 < ctx->max_batch ? n - i0 : ctx->max_batch;
        const float *xb = x ? x + (size_t)i0 * in : ctx->xbuf;
        if (pixels) {
            const uint8_t *src = pixels + (size_t)i0 * in;
            for (size_t j = 0; j < (size_t)b * in; j++) ctx->xbuf[j] = src[j] * scale - shift;
        }
        const struct pass ps = {m, xb, features ? ctx->taps : NULL, NULL, 0, NULL};
        const float *logits = forward_pass(ctx, &ps, b);
        cnn_softmax(logits, b, m->n_classes, probs + (size_t)i0 * m->n_classes);
        if (features) { /* the logits are the last k features */
            const int d = ctx->tap_dim, k = m->n_classes;
            for (int j = 0; j < b; j++) {
                memcpy(ctx->taps + (size_t)j * d + d - k, logits + (size_t)j * k,
                       (size_t)k * sizeof(float));
            }
            memcpy(features + (size_t)i0 * d, ctx->taps, (size_t)b * d * sizeof(float));
        }
    }
    cnn_threads_leave(saved);
    return CNN_OK;
}

int cnn_predict(const struct cnn_model *m, struct cnn_ctx *ctx, const float *x, int n,
                float *probs) {
    return cnn_predict_features(m, ctx, x, NULL, n, probs, NULL);
}

int cnn_predict_u8(const struct cnn_model *m, struct cnn_ctx *ctx, const uint8_t *pixels, int n,
                   float *probs) {
    return cnn_predict_features(m, ctx, NULL, pixels, n, probs, NULL);
}

/* Typicality of each image from its features, a context's batch at a time. */
static int predict_typicality(const struct cnn_model *m, struct cnn_ctx *ctx, const float *x,
                              const uint8_t *pixels, int n, float *probs, float *typicality) {
    if (!m->typicality)
        return cnn_fail(CNN_ERR_ARG, "this model has no typicality (it was trained before "
                                     "typicality existed, or with too little data)");
    const int d = ctx->tap_dim, B = ctx->max_batch;
    float *f = malloc(((size_t)B + 1) * d * sizeof(float)), *wf = f + (size_t)B * d;
    if (!f) return cnn_fail(CNN_ERR_NOMEM, "out of memory");
    const size_t in = cnn_shape_size(m->in);
    int rc = CNN_OK;
    for (int i0 = 0; !rc && i0 < n; i0 += B) {
        const int b = n - i0 < B ? n - i0 : B;
        rc = cnn_predict_features(m, ctx, x ? x + (size_t)i0 * in : NULL,
                                  pixels ? pixels + (size_t)i0 * in : NULL, b,
                                  probs + (size_t)i0 * m->n_classes, f);
        for (int j = 0; !rc && j < b; j++) {
            const float score = cnn_typicality_score(m->typicality, f + (size_t)j * d, wf);
            typicality[i0 + j] = cnn_typicality_of_score(m->typicality, score);
        }
    }
    free(f);
    return rc;
}

int cnn_predict_typicality(const struct cnn_model *m, struct cnn_ctx *ctx, const float *x, int n,
                           float *probs, float *typicality) {
    return predict_typicality(m, ctx, x, NULL, n, probs, typicality);
}

int cnn_predict_u8_typicality(const struct cnn_model *m, struct cnn_ctx *ctx,
                              const uint8_t *pixels, int n, float *probs, float *typicality) {
    return predict_typicality(m, ctx, NULL, pixels, n, probs, typicality);
}
