/*
 * net.c - the network: spec parsing, shape inference, parameter layout, the activation arena,
 * and the forward/backward loops over the layers. Knows nothing about any particular layer
 * kind: everything kind-specific is reached through cnn_layer_table (generated from
 * layers.def).
 *
 * Memory (STYLE 7): params, grads and state are flat buffers; a layer owns a slice of each.
 * Activations, their gradients, per-layer caches and one shared scratch area live in a single
 * arena sized by cnn_net_reserve for the largest batch, so a training step never allocates.
 * Gradients of activations and the per-image caches exist only once the net has been
 * reserved for training (cnn_net_reserve_mode(..., 1), done by cnn_net_train_batch). An
 * inference-only net needs no activation after the next layer has read it, so it keeps two
 * buffers of the largest layer output and the layers use them in turn: a few MB, like a
 * framework that frees tensors as it goes.
 *
 * Threads (STYLE: the layers stay plain loops): a batch of at least one image per thread runs
 * as a team. Each thread takes a contiguous slice of the images through every layer, with
 * single-threaded sgemm and its own scratch; the only meetings are batch norm's statistics
 * (cnn_team_sum) and, after backward, adding the threads' gradient buffers in thread order.
 * A single image (latency) instead runs on one thread and lets cnn_gemm and the layers' own
 * OpenMP loops split it. Activations are fused into the layer before them where it can apply
 * them (cnn_net_set_fusion): one pass over the largest tensors less each way.
 *
 * Backward writes (assigns) dx rather than accumulating into it: in a sequential net every
 * activation has exactly one consumer, so zeroing dx first would only add memory traffic.
 * Parameter gradients do accumulate, and cnn_net_zero_grad clears them once per step.
 */
#include <assert.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"

#define SPEC_MAX_LEN 4096
/* 32M parameters (128 MB, times three with gradients and the decay mask): two orders of
 * magnitude above any sensible network for 28x28 digits, and small enough that no spec,
 * typed or forged, can make us allocate gigabytes. */
#define CNN_NET_MAX_PARAMS ((size_t)1 << 25)
#define SPEC_MAX_LAYERS 128

const struct cnn_layer_ops *const cnn_layer_table[CNN_LAYER_COUNT] = {
#define CNN_LAYER(id, ops) [CNN_LAYER_##id] = &ops,
#include "layers.def"
#undef CNN_LAYER
};
#define CNN_LAYER(id, ops) +1
_Static_assert(0
#include "layers.def"
                   == CNN_LAYER_COUNT,
               "layers.def rows and the enum disagree");
#undef CNN_LAYER

/* ---- threads ------------------------------------------------------------------------------ */

void cnn_set_threads(int n) {
#ifdef _OPENMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#else
    if (n <= 0) n = 1;
#endif
    openblas_set_num_threads(1); /* we split the work ourselves (gemm.c, team mode) */
}

int cnn_get_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---- spec items --------------------------------------------------------------------------- */

static int item_error(const struct cnn_spec_item *it, const char *what) {
    return cnn_fail(CNN_ERR_SPEC, "layer %d '%s': %s", it->index, it->text, what);
}

int cnn_spec_int(const struct cnn_spec_item *it, int i, const char *what, int lo, int hi,
                 int *out) {
    char msg[128];
    if (i >= it->n_pos) {
        snprintf(msg, sizeof msg, "missing %s", what);
        return item_error(it, msg);
    }
    const double v = it->pos[i];
    if (v != floor(v) || v < lo || v > hi) {
        snprintf(msg, sizeof msg, "%s %g must be a whole number in [%d, %d]", what, v, lo, hi);
        return item_error(it, msg);
    }
    *out = (int)v;
    return CNN_OK;
}

int cnn_spec_float_opt(const struct cnn_spec_item *it, int i, const char *what, double lo,
                       double hi, float *out) {
    if (i >= it->n_pos) return CNN_OK;
    const double v = it->pos[i];
    if (!(v >= lo && v <= hi)) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s %g must be in [%g, %g]", what, v, lo, hi);
        return item_error(it, msg);
    }
    *out = (float)v;
    return CNN_OK;
}

int cnn_spec_opt_int(struct cnn_spec_item *it, const char *key, int lo, int hi, int *out) {
    for (int j = 0; j < it->n_opt; j++) {
        if (strcmp(it->opt_key[j], key) != 0) continue;
        it->opt_used[j] = 1;
        const double v = it->opt_val[j];
        if (v != floor(v) || v < lo || v > hi) {
            char msg[128];
            snprintf(msg, sizeof msg, "%s=%g must be a whole number in [%d, %d]", key, v, lo, hi);
            return item_error(it, msg);
        }
        *out = (int)v;
    }
    return CNN_OK;
}

/* "3", "-2", "0.25", "1e-3": the whole token must be a finite number. */
static int parse_number(const char *tok, double *v) {
    char *end;
    *v = strtod(tok, &end);
    return end != tok && *end == '\0' && isfinite(*v);
}

/* Split one item ("conv 32 3 pad=1") into name, numbers and options. */
static int parse_item(const char *s, size_t len, int index, struct cnn_spec_item *it) {
    memset(it, 0, sizeof *it);
    it->index = index;
    while (len && isspace((unsigned char)*s)) s++, len--;
    while (len && isspace((unsigned char)s[len - 1])) len--;
    snprintf(it->text, sizeof it->text, "%.*s", (int)(len < 60 ? len : 60), s);
    if (len == 0) return cnn_fail(CNN_ERR_SPEC, "layer %d is empty (stray comma?)", index);
    char buf[256];
    if (len >= sizeof buf) return item_error(it, "item too long");
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *save = NULL;
    char *tok = strtok_r(buf, " \t\r\n", &save);
    if (strlen(tok) >= sizeof it->name) return item_error(it, "unknown layer");
    for (char *c = tok; *c; c++) *c = (char)tolower((unsigned char)*c);
    strcpy(it->name, tok);
    char msg[160];
    while ((tok = strtok_r(NULL, " \t\r\n", &save))) {
        char *eq = strchr(tok, '=');
        double v;
        if (!eq) {
            if (!parse_number(tok, &v)) {
                snprintf(msg, sizeof msg, "'%.40s' is not a number", tok);
                return item_error(it, msg);
            }
            if (it->n_pos == CNN_SPEC_MAX_POS) return item_error(it, "too many numbers");
            it->pos[it->n_pos++] = v;
            continue;
        }
        *eq = '\0';
        if (!parse_number(eq + 1, &v)) {
            snprintf(msg, sizeof msg, "option %.15s: '%.30s' is not a number", tok, eq + 1);
            return item_error(it, msg);
        }
        if (it->n_opt == CNN_SPEC_MAX_OPT || strlen(tok) >= sizeof it->opt_key[0])
            return item_error(it, "too many or too long options");
        strcpy(it->opt_key[it->n_opt], tok);
        it->opt_val[it->n_opt++] = v;
    }
    return CNN_OK;
}

static int find_kind(const char *name) {
    for (int k = 0; k < CNN_LAYER_COUNT; k++)
        if (strcmp(cnn_layer_table[k]->name, name) == 0) return k;
    return -1;
}

/* ---- building a net ----------------------------------------------------------------------- */

void cnn_net_set_fusion(struct cnn_net *net, int on) {
    assert(!net->arena); /* the arena's aliasing depends on it */
    for (int i = 0; i < net->n_layers; i++) {
        net->layers[i].act = 0;
        net->layers[i].fused = 0;
    }
    /* an activation between two layers, after one that can apply it */
    for (int i = 1; on && i + 1 < net->n_layers; i++) {
        struct cnn_layer *a = &net->layers[i], *p = &net->layers[i - 1];
        if (a->ops->is_act && p->ops->fuses_act && !p->fused) {
            p->act = 1;
            p->act_slope = a->fa[0];
            a->fused = 1;
        }
    }
}

static void free_team(struct cnn_net *net) {
    if (net->tgrads)
        for (int t = 0; t + 1 < net->team_threads; t++) free(net->tgrads[t]);
    free(net->tgrads);
    free(net->team_red);
    net->tgrads = NULL;
    net->team_red = NULL;
}

void cnn_net_free(struct cnn_net *net) {
    if (!net) return;
    free(net->spec);
    free(net->layers);
    free(net->params);
    free(net->grads);
    free(net->state);
    free(net->decay_mask);
    free(net->arena);
    free(net->act);
    free(net->dact);
    free(net->cache);
    free_team(net);
    free(net);
}

/* Parse, then infer shapes layer by layer. Errors are prefixed with the layer. */
static int build_layers(struct cnn_net *net, const char *spec) {
    struct cnn_shape shape = net->in;
    const char *p = spec;
    int index = 0;
    for (;;) {
        const char *end = p + strcspn(p, ",;\n");
        struct cnn_spec_item it;
        int rc;
        index++;
        if (index > SPEC_MAX_LAYERS)
            return cnn_fail(CNN_ERR_SPEC, "more than %d layers", SPEC_MAX_LAYERS);
        if ((rc = parse_item(p, (size_t)(end - p), index, &it))) return rc;
        const int kind = find_kind(it.name);
        if (kind < 0) {
            char known[256] = "";
            for (int k = 0; k < CNN_LAYER_COUNT; k++) {
                strcat(known, k ? ", " : "");
                strcat(known, cnn_layer_table[k]->name);
            }
            return cnn_fail(CNN_ERR_SPEC, "layer %d '%s': unknown layer '%s' (known: %s)", index,
                            it.text, it.name, known);
        }
        struct cnn_layer *l = &net->layers[net->n_layers];
        memset(l, 0, sizeof *l);
        l->kind = kind;
        l->ops = cnn_layer_table[kind];
        if ((rc = l->ops->parse(l, &it))) return rc;
        for (int j = 0; j < it.n_opt; j++)
            if (!it.opt_used[j]) {
                char msg[64];
                snprintf(msg, sizeof msg, "unknown option '%s'", it.opt_key[j]);
                return item_error(&it, msg);
            }
        l->in = shape;
        if ((rc = l->ops->init(l))) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", cnn_errmsg());
            return cnn_fail(rc, "layer %d '%s': %s", index, it.text, msg);
        }
        if (l->out.c < 1 || l->out.h < 1 || l->out.w < 1 || cnn_shape_size(l->out) > 1u << 24)
            return item_error(&it, "output shape is empty or too large");
        shape = l->out;
        net->n_layers++;
        if (*end == '\0') break;
        p = end + 1;
    }
    const struct cnn_layer *last = &net->layers[net->n_layers - 1];
    if (last->out.h != 1 || last->out.w != 1 || last->out.c < 2)
        return cnn_fail(CNN_ERR_SPEC,
                        "the last layer must give class scores, e.g. 'dense 10'; it gives %dx%dx%d",
                        last->out.c, last->out.h, last->out.w);
    net->n_classes = last->out.c;
    return CNN_OK;
}

int cnn_net_new(const char *spec, int c, int h, int w, struct cnn_net **out) {
    return cnn_net_new_bounded(spec, c, h, w, CNN_NET_MAX_PARAMS, out);
}

int cnn_net_new_bounded(const char *spec, int c, int h, int w, size_t max_params,
                        struct cnn_net **out) {
    *out = NULL;
    if (!spec || !*spec) return cnn_fail(CNN_ERR_SPEC, "empty network spec");
    if (strlen(spec) > SPEC_MAX_LEN)
        return cnn_fail(CNN_ERR_SPEC, "network spec longer than %d characters", SPEC_MAX_LEN);
    if (c < 1 || h < 1 || w < 1 || c > 64 || h > 4096 || w > 4096)
        return cnn_fail(CNN_ERR_ARG, "input shape %dx%dx%d out of range", c, h, w);
    int rc = CNN_ERR_NOMEM;
    struct cnn_net *net = calloc(1, sizeof *net);
    if (!net) return cnn_fail(CNN_ERR_NOMEM, "out of memory");
    net->in = (struct cnn_shape){c, h, w};
    net->norm_mean = 0.0f;
    net->norm_std = 1.0f;
    net->layers = calloc(SPEC_MAX_LAYERS, sizeof *net->layers);
    if (!net->layers) goto fail;
    if ((rc = build_layers(net, spec))) goto fail;
    cnn_net_set_fusion(net, 1);
    /* lay out the flat buffers */
    for (int i = 0; i < net->n_layers; i++) {
        struct cnn_layer *l = &net->layers[i];
        l->p_off = net->n_params;
        l->s_off = net->n_state;
        net->n_params += l->n_params;
        net->n_state += l->n_state;
    }
    if (net->n_params > max_params) {
        rc = cnn_fail(CNN_ERR_LIMIT, "the spec needs %zu parameters, more than the %zu allowed",
                      net->n_params, max_params);
        goto fail;
    }
    rc = CNN_ERR_NOMEM;
    net->params = calloc(net->n_params + 1, sizeof(float));
    net->grads = calloc(net->n_params + 1, sizeof(float));
    net->decay_mask = calloc(net->n_params + 1, sizeof(float));
    net->state = calloc(net->n_state + 1, sizeof(float));
    if (!net->params || !net->grads || !net->decay_mask || !net->state) goto fail;
    for (int i = 0; i < net->n_layers; i++) {
        const struct cnn_layer *l = &net->layers[i];
        for (size_t j = 0; j < l->n_decay; j++) net->decay_mask[l->p_off + j] = 1.0f;
    }
    /* the normalised spec: each layer described the way it would be written */
    size_t cap = (size_t)net->n_layers * 66 + 1, len = 0;
    net->spec = malloc(cap);
    if (!net->spec) goto fail;
    net->spec[0] = '\0';
    for (int i = 0; i < net->n_layers; i++) {
        char d[64];
        net->layers[i].ops->describe(&net->layers[i], d, sizeof d);
        len += (size_t)snprintf(net->spec + len, cap - len, "%s%s", i ? ", " : "", d);
    }
    *out = net;
    return CNN_OK;
fail:
    if (rc == CNN_ERR_NOMEM) cnn_fail(rc, "out of memory building the network");
    cnn_net_free(net);
    return rc;
}

void cnn_net_init_params(struct cnn_net *net, struct cnn_rng *rng) {
    memset(net->params, 0, net->n_params * sizeof(float));
    memset(net->state, 0, net->n_state * sizeof(float));
    for (int i = 0; i < net->n_layers; i++) {
        const struct cnn_layer *l = &net->layers[i];
        if (l->ops->init_params)
            l->ops->init_params(l, net->params + l->p_off, net->state + l->s_off, rng);
    }
}

int cnn_net_reserve(struct cnn_net *net, int max_batch) {
    return cnn_net_reserve_mode(net, max_batch, 0);
}

/* Round a float count up to whole 64-byte lines, so each thread's scratch starts on its own
 * cache line and can hold doubles. */
static size_t round_line(size_t floats) { return (floats + 15) & ~(size_t)15; }

int cnn_net_reserve_mode(struct cnn_net *net, int max_batch, int train) {
    if (max_batch < 1 || max_batch > 1 << 16)
        return cnn_fail(CNN_ERR_ARG, "batch size %d out of range [1, 65536]", max_batch);
    train |= net->train_reserved;
    openblas_set_num_threads(1); /* also for programs that never call cnn_set_threads */
    const int T = cnn_get_threads();
    if (max_batch <= net->max_batch && train == net->train_reserved && T <= net->team_threads)
        return CNN_OK;
    if (max_batch < net->max_batch) max_batch = net->max_batch;
    const int L = net->n_layers;
    const size_t nb = (size_t)max_batch;
    size_t total = nb * cnn_shape_size(net->in) + nb * (size_t)net->n_classes;
    size_t ws = 0, ws_thread = 0, maxout = 0, red = 1;
    for (int i = 0; i < L; i++) {
        const struct cnn_layer *l = &net->layers[i];
        const size_t out = cnn_shape_size(l->out);
        assert(!(l->cache_item && l->cache_fixed));
        maxout = out > maxout ? out : maxout;
        red = l->team_red > red ? l->team_red : red;
        total += l->cache_fixed;
        if (train) total += nb * (2 * out + l->cache_item);
        if (l->ops->ws_size) { /* each team thread's slice may hold up to the whole batch
                                 * if the runtime gives fewer threads than asked */
            const size_t s = l->ops->ws_size(l, max_batch);
            ws = s > ws ? s : ws;
            ws_thread = s > ws_thread ? s : ws_thread;
        }
    }
    ws_thread = round_line(ws_thread);
    if (T > 1 && (size_t)T * ws_thread > ws) ws = (size_t)T * ws_thread;
    if (!train) total += 2 * nb * maxout + nb * (size_t)net->n_classes; /* see below */
    total = round_line(total) + ws;
    if (total > ((size_t)1 << 28))
        return cnn_fail(CNN_ERR_LIMIT, "batch %d would need %zu MB of activations (limit 1024)",
                        max_batch, total * sizeof(float) >> 20);
    float *arena = malloc(total * sizeof(float));
    float **act = calloc((size_t)L + 1, sizeof *act);
    float **dact = calloc((size_t)L + 1, sizeof *dact);
    float **cache = calloc((size_t)L, sizeof *cache);
    double *team_red = malloc(((size_t)T + 1) * red * sizeof(double));
    float **tgrads = train && T > 1 ? calloc((size_t)T - 1, sizeof *tgrads) : NULL;
    int ok = arena && act && dact && cache && team_red && (tgrads || !train || T == 1);
    for (int t = 0; ok && tgrads && t < T - 1; t++)
        ok = (tgrads[t] = malloc(net->n_params * sizeof(float))) != NULL;
    if (!ok) {
        for (int t = 0; tgrads && t < T - 1; t++) free(tgrads[t]);
        free(arena), free(act), free(dact), free(cache), free(team_red);
        free(tgrads);
        return cnn_fail(CNN_ERR_NOMEM, "cannot allocate %zu MB of activations for batch %d",
                        total * sizeof(float) >> 20, max_batch);
    }
    free(net->arena), free(net->act), free(net->dact), free(net->cache);
    free_team(net);
    net->arena = arena, net->act = act, net->dact = dact, net->cache = cache;
    net->team_red = team_red, net->team_stride = red, net->tgrads = tgrads;
    net->team_threads = T;
    float *p = arena;
    float *pingpong[2] = {NULL, NULL};
    int next = 0; /* the ping-pong buffer the next layer writes */
    if (!train) {
        pingpong[0] = p, p += nb * maxout;
        pingpong[1] = p, p += nb * maxout;
    }
    for (int i = 0; i < L; i++) {
        const struct cnn_layer *l = &net->layers[i];
        const size_t out = cnn_shape_size(l->out);
        if (l->fused) { /* done in place by layer i-1: same buffers */
            act[i + 1] = act[i];
            dact[i + 1] = dact[i];
            cache[i] = p;
        } else if (train) {
            act[i + 1] = p, p += nb * out;
            dact[i + 1] = p, p += nb * out;
            cache[i] = p, p += nb * l->cache_item + l->cache_fixed;
        } else {
            /* Layer i reads act[i] and writes act[i+1]: never the same buffer. Image j of any
             * layer starts at j * maxout (pp_stride), so a team's slices never overlap. The
             * logits get a buffer of their own, (n, n_classes) like in training. */
            act[i + 1] = i + 1 < L ? pingpong[next] : p;
            if (i + 1 == L) p += nb * (size_t)net->n_classes;
            next ^= 1;
            cache[i] = p, p += l->cache_fixed;
        }
    }
    net->pp_stride = train ? 0 : maxout;
    net->xbuf = p, p += nb * cnn_shape_size(net->in);
    net->probs = p, p += nb * (size_t)net->n_classes;
    net->ws = arena + round_line((size_t)(p - arena));
    net->ws_thread = ws_thread;
    net->max_batch = max_batch;
    net->train_reserved = train;
    return CNN_OK;
}

/* ---- running it --------------------------------------------------------------------------- */

/* ---- teams (see struct cnn_team in internal.h) ------------------------------------------- */

const double *cnn_team_sum(const struct cnn_team *t, double *v, int len) {
    if (!t || t->nthreads == 1) return v;
    double *total = t->red + (size_t)t->nthreads * t->stride;
    memcpy(t->red + (size_t)t->tid * t->stride, v, (size_t)len * sizeof(double));
#pragma omp barrier
#pragma omp for schedule(static)
    for (int j = 0; j < len; j++) {
        double s = 0.0;
        for (int k = 0; k < t->nthreads; k++) s += t->red[(size_t)k * t->stride + j];
        total[j] = s;
    }
    return total; /* the worksharing loop ends with a barrier: every total is written */
}

/* Threads for a batch of n: a team when every thread gets at least one image (and we are not
 * already inside a parallel region), else 1 and the layers parallelise inside themselves. */
static int team_size(const struct cnn_net *net, int n) {
#ifdef _OPENMP
    int T = omp_get_max_threads();
    if (T > net->team_threads) T = net->team_threads;
    return T > 1 && n >= T && !omp_in_parallel() ? T : 1;
#else
    (void)net, (void)n;
    return 1;
#endif
}

/* This thread's share of a batch of n: images [i0, i0 + count). */
static struct cnn_team team_member(const struct cnn_net *net, int n, int *count) {
    struct cnn_team t = {.tid = 0, .nthreads = 1, .n_total = n, .red = net->team_red,
                         .stride = net->team_stride};
#ifdef _OPENMP
    t.tid = omp_get_thread_num();
    t.nthreads = omp_get_num_threads();
#endif
    t.i0 = (int)((long)n * t.tid / t.nthreads);
    *count = (int)((long)n * (t.tid + 1) / t.nthreads) - t.i0;
    return t;
}

/* Image i0 of the input of layer i: act[i] is (n, in) in training; between layers of an
 * inference-only net, images are pp_stride apart (reserve). */
static size_t act_off(const struct cnn_net *net, int i, size_t i0) {
    const struct cnn_shape s = i < net->n_layers ? net->layers[i].in : net->layers[i - 1].out;
    const size_t per = net->pp_stride && i > 0 && i < net->n_layers ? net->pp_stride
                                                                   : cnn_shape_size(s);
    return i0 * per;
}

/* Layers 0..L-1 forward on images [i0, i0 + n) of the batch (team NULL: all of it). */
static void forward_layers(struct cnn_net *net, const float *x, int n, int train, uint64_t seed,
                           const struct cnn_team *team, float *ws) {
    const size_t i0 = team ? (size_t)team->i0 : 0;
    for (int i = 0; i < net->n_layers; i++) {
        const struct cnn_layer *l = &net->layers[i];
        if (l->fused) continue;
        const struct cnn_fwd f = {
            .n = n,
            .train = train,
            .x = (i ? net->act[i] : x) + act_off(net, i, i0),
            .y = net->act[i + 1] + act_off(net, i + 1, i0),
            .p = net->params + l->p_off,
            .s = net->state + l->s_off,
            .cache = net->cache[i] + i0 * l->cache_item,
            .ws = ws,
            .seed = seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1)),
            .team = team,
        };
        l->ops->forward(l, &f);
    }
}

static void backward_layers(struct cnn_net *net, const float *x, int n,
                            const struct cnn_team *team, float *ws, float *grads) {
    const size_t i0 = team ? (size_t)team->i0 : 0;
    for (int i = net->n_layers - 1; i >= 0; i--) {
        const struct cnn_layer *l = &net->layers[i];
        if (l->fused) continue;
        const size_t in = act_off(net, i, i0), out = act_off(net, i + 1, i0);
        const struct cnn_bwd b = {
            .n = n,
            .x = (i ? net->act[i] : x) + in,
            .y = net->act[i + 1] + out,
            .dy = net->dact[i + 1] + out,
            .dx = i ? net->dact[i] + in : NULL,
            .p = net->params + l->p_off,
            .dp = grads + l->p_off,
            .cache = net->cache[i] + i0 * l->cache_item,
            .ws = ws,
            .team = team,
        };
        l->ops->backward(l, &b);
    }
}

const float *cnn_net_forward(struct cnn_net *net, const float *x, int n, int train,
                             uint64_t seed) {
    assert(!train || net->train_reserved); /* training caches exist only then */
    assert(n <= net->max_batch);
    const int T = team_size(net, n);
    if (T == 1) {
        forward_layers(net, x, n, train, seed, NULL, net->ws);
        return net->act[net->n_layers];
    }
#pragma omp parallel num_threads(T)
    {
        int count;
        const struct cnn_team t = team_member(net, n, &count);
        forward_layers(net, x, count, train, seed, &t, net->ws + (size_t)t.tid * net->ws_thread);
    }
    return net->act[net->n_layers];
}

void cnn_net_backward(struct cnn_net *net, const float *x, int n) {
    const int T = team_size(net, n);
    if (T == 1) {
        backward_layers(net, x, n, NULL, net->ws, net->grads);
        return;
    }
    /* Thread 0 accumulates into net->grads, the others into zeroed buffers of their own, which
     * are then added to net->grads in thread order. */
#pragma omp parallel num_threads(T)
    {
        int count;
        const struct cnn_team t = team_member(net, n, &count);
        float *g = t.tid ? net->tgrads[t.tid - 1] : net->grads;
        if (t.tid) memset(g, 0, net->n_params * sizeof(float));
        backward_layers(net, x, count, &t, net->ws + (size_t)t.tid * net->ws_thread, g);
#pragma omp barrier
        const long np = (long)net->n_params;
#pragma omp for schedule(static)
        for (long j = 0; j < np; j++) {
            float s = 0.0f;
            for (int k = 1; k < t.nthreads; k++) s += net->tgrads[k - 1][j];
            net->grads[j] += s;
        }
    }
}

void cnn_net_zero_grad(struct cnn_net *net) {
    memset(net->grads, 0, net->n_params * sizeof(float));
}

int cnn_net_train_batch(struct cnn_net *net, const float *x, const uint8_t *labels, int n,
                        float label_smoothing, struct cnn_rng *rng, float *loss, int *correct) {
    int rc;
    if (n < 1) return cnn_fail(CNN_ERR_ARG, "empty batch");
    if (!(label_smoothing >= 0.0f && label_smoothing < 1.0f))
        return cnn_fail(CNN_ERR_ARG, "label smoothing %g must be in [0, 1)",
                        (double)label_smoothing);
    if ((n > net->max_batch || !net->train_reserved) && (rc = cnn_net_reserve_mode(net, n, 1)))
        return rc;
    const int k = net->n_classes;
    for (int i = 0; i < n; i++)
        if (labels[i] >= k)
            return cnn_fail(CNN_ERR_ARG, "label %d of image %d is not below %d", labels[i], i, k);
    const float *logits = cnn_net_forward(net, x, n, 1, cnn_rng_u64(rng));
    const float l = cnn_softmax_xent(logits, labels, n, k, label_smoothing, net->probs,
                                     net->dact[net->n_layers]);
    cnn_net_zero_grad(net);
    cnn_net_backward(net, x, n);
    if (loss) *loss = l;
    if (correct) {
        int c = 0;
        for (int i = 0; i < n; i++) {
            const float *p = net->probs + (size_t)i * k;
            int best = 0;
            for (int j = 1; j < k; j++) best = p[j] > p[best] ? j : best;
            c += best == labels[i];
        }
        *correct = c;
    }
    return CNN_OK;
}

/* Inference in chunks of the reserved batch (256 if nothing was reserved yet). */
int cnn_net_predict(struct cnn_net *net, const float *x, int n, float *probs) {
    int rc;
    if (n < 0) return cnn_fail(CNN_ERR_ARG, "negative image count");
    if (net->max_batch == 0 && (rc = cnn_net_reserve(net, n < 256 ? (n ? n : 1) : 256)))
        return rc;
    const size_t in = cnn_shape_size(net->in);
    for (int i0 = 0; i0 < n; i0 += net->max_batch) {
        const int m = n - i0 < net->max_batch ? n - i0 : net->max_batch;
        const float *logits = cnn_net_forward(net, x + (size_t)i0 * in, m, 0, 0);
        cnn_softmax(logits, m, net->n_classes, probs + (size_t)i0 * net->n_classes);
    }
    return CNN_OK;
}

int cnn_net_predict_u8(struct cnn_net *net, const uint8_t *pixels, int n, float *probs) {
    int rc;
    if (n < 0) return cnn_fail(CNN_ERR_ARG, "negative image count");
    if (net->max_batch == 0 && (rc = cnn_net_reserve(net, n < 256 ? (n ? n : 1) : 256)))
        return rc;
    const size_t in = cnn_shape_size(net->in);
    const float scale = 1.0f / (255.0f * net->norm_std), shift = net->norm_mean / net->norm_std;
    for (int i0 = 0; i0 < n; i0 += net->max_batch) {
        const int m = n - i0 < net->max_batch ? n - i0 : net->max_batch;
        const uint8_t *src = pixels + (size_t)i0 * in;
        for (size_t j = 0; j < (size_t)m * in; j++) net->xbuf[j] = src[j] * scale - shift;
        const float *logits = cnn_net_forward(net, net->xbuf, m, 0, 0);
        cnn_softmax(logits, m, net->n_classes, probs + (size_t)i0 * net->n_classes);
    }
    return CNN_OK;
}

/* ---- accessors ---------------------------------------------------------------------------- */

const char *cnn_net_spec(const struct cnn_net *net) { return net->spec; }
size_t cnn_net_n_params(const struct cnn_net *net) { return net->n_params; }
size_t cnn_net_n_state(const struct cnn_net *net) { return net->n_state; }
int cnn_net_n_classes(const struct cnn_net *net) { return net->n_classes; }
int cnn_net_n_layers(const struct cnn_net *net) { return net->n_layers; }
float *cnn_net_params(struct cnn_net *net) { return net->params; }
float *cnn_net_grads(struct cnn_net *net) { return net->grads; }
float *cnn_net_state(struct cnn_net *net) { return net->state; }

void cnn_net_input_shape(const struct cnn_net *net, int *c, int *h, int *w) {
    *c = net->in.c, *h = net->in.h, *w = net->in.w;
}

void cnn_net_set_norm(struct cnn_net *net, float mean, float std) {
    net->norm_mean = mean;
    net->norm_std = std > 0.0f ? std : 1.0f;
}

void cnn_net_get_norm(const struct cnn_net *net, float *mean, float *std) {
    *mean = net->norm_mean, *std = net->norm_std;
}

void cnn_net_layer_info(const struct cnn_net *net, int i, struct cnn_layer_info *out) {
    const struct cnn_layer *l = &net->layers[i];
    out->kind = l->ops->name;
    l->ops->describe(l, out->text, sizeof out->text);
    out->c = l->out.c, out->h = l->out.h, out->w = l->out.w;
    out->n_params = l->n_params;
    out->mflops = l->flops / 1e6;
}
