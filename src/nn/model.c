/*
 * model.c - the model: what was trained. The spec is parsed item by item (spec.c), each layer
 * infers its output shape from its input, and the parameters and batch-norm state are laid
 * out in two flat buffers, each layer owning a slice. Knows nothing about any particular layer
 * kind: everything kind-specific is reached through cnn_layer_table (generated from
 * layers.def).
 *
 * A model is built once (cnn_model_new, or a load) and then only read by inference, so any
 * number of threads may share it; all computation happens in contexts (ctx.c). The functions
 * that change it (init_params, set_norm, set_meta, the trainer) are for its owner alone.
 *
 * Metadata is an ordered list of at most CNN_META_MAX key/value strings, checked on the way in
 * (cnn_model_set_meta is also how model_io.c reads a file's META section), so a forged file
 * cannot plant a newline, a control character or an oversized value in it.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* 32M parameters (128 MB, times three with gradients and the decay mask): two orders of
 * magnitude above any sensible network for 28x28 digits, and small enough that no spec,
 * typed or forged, can make us allocate gigabytes. */
#define CNN_MODEL_MAX_PARAMS ((size_t)1 << 25)

const struct cnn_layer_ops *const cnn_layer_table[CNN_LAYER_COUNT] = {
#define CNN_LAYER(id, ops) [CNN_LAYER_##id] = &ops,
#include "nn/layers.def"
#undef CNN_LAYER
};
#define CNN_LAYER(id, ops) +1
_Static_assert(0
#include "nn/layers.def"
                   == CNN_LAYER_COUNT,
               "layers.def rows and the enum disagree");
#undef CNN_LAYER

static int find_kind(const char *name) {
    for (int k = 0; k < CNN_LAYER_COUNT; k++)
        if (strcmp(cnn_layer_table[k]->name, name) == 0) return k;
    return -1;
}

/* "unknown layer" with the list of known ones, built with bounded appends. */
static int unknown_layer(const struct cnn_spec_item *it) {
    char known[256];
    size_t len = 0;
    known[0] = '\0';
    for (int k = 0; k < CNN_LAYER_COUNT && len < sizeof known; k++) {
        const int n = snprintf(known + len, sizeof known - len, "%s%s", k ? ", " : "",
                               cnn_layer_table[k]->name);
        if (n < 0) break;
        len += (size_t)n;
    }
    return cnn_fail(CNN_ERR_SPEC, "layer %d '%s': unknown layer '%s' (known: %s)", it->index,
                    it->text, it->name, known);
}

void cnn_model_set_fusion(struct cnn_model *m, int on) {
    for (int i = 0; i < m->n_layers; i++) {
        m->layers[i].act = 0;
        m->layers[i].fused = 0;
    }
    /* an activation between two layers, after one that can apply it */
    for (int i = 1; on && i + 1 < m->n_layers; i++) {
        struct cnn_layer *a = &m->layers[i], *p = &m->layers[i - 1];
        if (a->ops->is_act && p->ops->fuses_act && !p->fused) {
            p->act = 1;
            p->act_slope = a->cfg.act.slope;
            a->fused = 1;
        }
    }
    /* a layer that absorbs a batch norm applies, at inference, what the batch norm would */
    for (int i = 0; i + 1 < m->n_layers; i++) {
        struct cnn_layer *l = &m->layers[i];
        l->fold_act = l->folds ? l[1].act : 0;
        l->fold_slope = l->folds ? l[1].act_slope : 0.0f;
    }
}

/* Which batch norms fold into the layer before them at inference (see struct cnn_layer): not
 * where typicality reads that layer's output, which folding would change. Before lay_out: a
 * producer's prepared slice then also holds its folded params. */
static void mark_folds(struct cnn_model *m) {
    for (int i = 0; i + 1 < m->n_layers; i++) {
        struct cnn_layer *l = &m->layers[i], *next = &m->layers[i + 1];
        if (!l->ops->absorbs_affine || !next->ops->fold_into || cnn_typicality_taps(l)) continue;
        l->folds = next->folded = 1;
        l->n_prep += l->n_params;
    }
}

void cnn_model_free(struct cnn_model *m) {
    if (!m) return;
    free(m->spec);
    free(m->layers);
    free(m->params);
    free(m->state);
    free(m->prep);
    free(m->decay_mask);
    cnn_typicality_free(m->typicality);
    free(m);
}

/* One item into the next layer: parse, check options, infer the shape from `in`. */
static int build_layer(struct cnn_layer *l, struct cnn_spec_item *it, struct cnn_shape in) {
    const int kind = find_kind(it->name);
    if (kind < 0) return unknown_layer(it);
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->ops = cnn_layer_table[kind];
    int rc = l->ops->parse(l, it);
    if (rc) return rc;
    if (it->n_pos > it->pos_used) { /* "conv 32 5 2": the 2 would otherwise vanish */
        char msg[96];
        if (it->pos_used == 0)
            snprintf(msg, sizeof msg, "unexpected number %g: %s takes none", it->pos[0], it->name);
        else
            snprintf(msg, sizeof msg, "unexpected number %g: %s takes at most %d",
                     it->pos[it->pos_used], it->name, it->pos_used);
        return cnn_spec_item_error(it, msg);
    }
    for (int j = 0; j < it->n_opt; j++)
        if (!it->opt_used[j]) {
            char msg[64];
            snprintf(msg, sizeof msg, "unknown option '%s'", it->opt_key[j]);
            return cnn_spec_item_error(it, msg);
        }
    l->in = in;
    if ((rc = l->ops->init(l))) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", cnn_errmsg());
        return cnn_fail(rc, "layer %d '%s': %s", it->index, it->text, msg);
    }
    if (l->out.c < 1 || l->out.h < 1 || l->out.w < 1 || cnn_shape_size(l->out) > 1u << 24)
        return cnn_spec_item_error(it, "output shape is empty or too large");
    return CNN_OK;
}

/* Parse, then infer shapes layer by layer. Errors are prefixed with the layer. */
static int build_layers(struct cnn_model *m, const char *spec) {
    struct cnn_shape shape = m->in;
    const char *p = spec;
    for (int index = 1;; index++) {
        const char *end = p + strcspn(p, ",;\n");
        struct cnn_spec_item it;
        int rc;
        if (index > CNN_SPEC_MAX_LAYERS)
            return cnn_fail(CNN_ERR_SPEC, "more than %d layers", CNN_SPEC_MAX_LAYERS);
        if ((rc = cnn_spec_item_parse(p, (size_t)(end - p), index, &it))) return rc;
        if ((rc = build_layer(&m->layers[m->n_layers], &it, shape))) return rc;
        shape = m->layers[m->n_layers].out;
        m->n_layers++;
        if (*end == '\0') break;
        p = end + 1;
    }
    const struct cnn_layer *last = &m->layers[m->n_layers - 1];
    if (last->out.h != 1 || last->out.w != 1 || last->out.c < 2 ||
        last->out.c > CNN_MAX_CLASSES)
        return cnn_fail(CNN_ERR_SPEC,
                        "the last layer must give 2 to %d class scores, e.g. 'dense 10'; it "
                        "gives %dx%dx%d",
                        CNN_MAX_CLASSES, last->out.c, last->out.h, last->out.w);
    m->n_classes = last->out.c;
    return CNN_OK;
}

/* The flat buffers, the decay mask, and the normalised spec text. */
static int lay_out(struct cnn_model *m, size_t max_params) {
    for (int i = 0; i < m->n_layers; i++) {
        struct cnn_layer *l = &m->layers[i];
        l->p_off = m->n_params;
        l->s_off = m->n_state;
        l->q_off = m->n_prep;
        m->n_params += l->n_params;
        m->n_state += l->n_state;
        m->n_prep += l->n_prep;
    }
    if (m->n_params > max_params)
        return cnn_fail(CNN_ERR_LIMIT, "the spec needs %zu parameters, more than the %zu allowed",
                        m->n_params, max_params);
    m->params = calloc(m->n_params + 1, sizeof(float));
    m->decay_mask = calloc(m->n_params + 1, sizeof(float));
    m->state = calloc(m->n_state + 1, sizeof(float));
    m->prep = calloc(m->n_prep + 1, sizeof(float));
    const size_t cap = (size_t)m->n_layers * 66 + 1;
    m->spec = malloc(cap);
    if (!m->params || !m->decay_mask || !m->state || !m->prep || !m->spec)
        return cnn_fail(CNN_ERR_NOMEM, "out of memory building the network");
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        for (size_t j = 0; j < l->n_decay; j++) m->decay_mask[l->p_off + j] = 1.0f;
    }
    size_t len = 0;
    m->spec[0] = '\0';
    for (int i = 0; i < m->n_layers; i++) {
        char d[64];
        m->layers[i].ops->describe(&m->layers[i], d, sizeof d);
        len += (size_t)snprintf(m->spec + len, cap - len, "%s%s", i ? ", " : "", d);
    }
    return CNN_OK;
}

int cnn_model_new(const char *spec, int c, int h, int w, struct cnn_model **out) {
    return cnn_model_new_bounded(spec, c, h, w, CNN_MODEL_MAX_PARAMS, out);
}

int cnn_model_new_bounded(const char *spec, int c, int h, int w, size_t max_params,
                          struct cnn_model **out) {
    *out = NULL;
    if (!spec || !*spec) return cnn_fail(CNN_ERR_SPEC, "empty network spec");
    if (strlen(spec) > CNN_SPEC_MAX_LEN)
        return cnn_fail(CNN_ERR_SPEC, "network spec longer than %d characters",
                        CNN_SPEC_MAX_LEN);
    if (c < 1 || h < 1 || w < 1 || c > 64 || h > 4096 || w > 4096)
        return cnn_fail(CNN_ERR_ARG, "input shape %dx%dx%d out of range", c, h, w);
    struct cnn_model *m = calloc(1, sizeof *m);
    if (!m) return cnn_fail(CNN_ERR_NOMEM, "out of memory");
    m->in = (struct cnn_shape){c, h, w};
    m->norm_mean = 0.0f;
    m->norm_std = 1.0f;
    for (int i = 0; i < CNN_MAX_CLASSES; i++)
        snprintf(m->class_digit[i], sizeof m->class_digit[i], "%d", i);
    int rc = CNN_ERR_NOMEM;
    m->layers = calloc(CNN_SPEC_MAX_LAYERS, sizeof *m->layers);
    if (!m->layers) {
        cnn_fail(rc, "out of memory building the network");
        goto fail;
    }
    if ((rc = build_layers(m, spec))) goto fail;
    mark_folds(m);
    cnn_model_set_fusion(m, 1);
    if ((rc = lay_out(m, max_params))) goto fail;
    *out = m;
    return CNN_OK;
fail:
    cnn_model_free(m);
    return rc;
}

void cnn_model_init_params(struct cnn_model *m, struct cnn_rng *rng) {
    memset(m->params, 0, m->n_params * sizeof(float));
    memset(m->state, 0, m->n_state * sizeof(float));
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        if (l->ops->init_params)
            l->ops->init_params(l, m->params + l->p_off, m->state + l->s_off, rng);
    }
    cnn_model_prepare(m);
}

void cnn_model_prepare(struct cnn_model *m) {
    for (int i = 0; i < m->n_layers; i++) {
        const struct cnn_layer *l = &m->layers[i];
        const float *p = m->params + l->p_off;
        float *q = m->prep + l->q_off;
        size_t own = l->n_prep; /* what ops->prepare derives, after any folded params */
        if (l->folds) {
            const struct cnn_layer *bn = l + 1;
            memcpy(q, p, l->n_params * sizeof(float));
            bn->ops->fold_into(bn, m->params + bn->p_off, m->state + bn->s_off, q,
                               l->n_decay / (size_t)l->out.c, q + l->n_decay);
            p = q, q += l->n_params, own -= l->n_params;
        }
        if (own) l->ops->prepare(l, p, q);
    }
    m->prepared = 1;
}

/* ---- accessors ---------------------------------------------------------------------------- */

const char *cnn_model_spec(const struct cnn_model *m) { return m->spec; }
size_t cnn_model_n_params(const struct cnn_model *m) { return m->n_params; }
size_t cnn_model_n_state(const struct cnn_model *m) { return m->n_state; }
int cnn_model_n_classes(const struct cnn_model *m) { return m->n_classes; }
int cnn_model_n_layers(const struct cnn_model *m) { return m->n_layers; }
const float *cnn_model_params(const struct cnn_model *m) { return m->params; }
const float *cnn_model_state(const struct cnn_model *m) { return m->state; }

void cnn_model_input_shape(const struct cnn_model *m, int *c, int *h, int *w) {
    *c = m->in.c, *h = m->in.h, *w = m->in.w;
}

void cnn_model_set_norm(struct cnn_model *m, float mean, float std) {
    m->norm_mean = mean;
    m->norm_std = std > 0.0f ? std : 1.0f;
}

void cnn_model_get_norm(const struct cnn_model *m, float *mean, float *std) {
    *mean = m->norm_mean, *std = m->norm_std;
}

int cnn_model_layer_info(const struct cnn_model *m, int i, struct cnn_layer_info *out) {
    if (i < 0 || i >= m->n_layers)
        return cnn_fail(CNN_ERR_ARG, "layer %d out of range [0, %d)", i, m->n_layers);
    const struct cnn_layer *l = &m->layers[i];
    out->kind = l->ops->name;
    l->ops->describe(l, out->text, sizeof out->text);
    out->c = l->out.c, out->h = l->out.h, out->w = l->out.w;
    out->n_params = l->n_params;
    out->mflops = l->flops / 1e6;
    return CNN_OK;
}

/* ---- metadata ----------------------------------------------------------------------------- */

static int meta_key_ok(const char *k) {
    const size_t n = strlen(k);
    if (n < 1 || n >= CNN_META_KEY) return 0;
    for (const char *p = k; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("._-", *p)))
            return 0;
    return 1;
}

static int meta_value_ok(const char *v) {
    if (strlen(v) >= CNN_META_VALUE) return 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return 0; /* UTF-8 above 0x7f is allowed */
    return 1;
}

static int meta_find(const struct cnn_model *m, const char *key) {
    for (int i = 0; i < m->n_meta; i++)
        if (!strcmp(m->meta[i].key, key)) return i;
    return -1;
}

const char *cnn_model_meta(const struct cnn_model *m, const char *key) {
    const int i = key ? meta_find(m, key) : -1;
    return i < 0 ? NULL : m->meta[i].value;
}

int cnn_model_set_meta(struct cnn_model *m, const char *key, const char *value) {
    if (!key || !meta_key_ok(key))
        return cnn_fail(CNN_ERR_ARG, "metadata key '%.60s' is not 1-%d characters of [a-z0-9._-]",
                        key ? key : "(null)", CNN_META_KEY - 1);
    const int i = meta_find(m, key);
    if (!value) { /* remove, keeping the order of the rest */
        if (i >= 0) {
            memmove(&m->meta[i], &m->meta[i + 1], (size_t)(m->n_meta - i - 1) * sizeof *m->meta);
            m->n_meta--;
        }
        return CNN_OK;
    }
    if (!meta_value_ok(value))
        return cnn_fail(CNN_ERR_ARG,
                        "metadata %s: the value is longer than %d characters or holds a "
                        "control character",
                        key, CNN_META_VALUE - 1);
    if (i < 0 && m->n_meta == CNN_META_MAX)
        return cnn_fail(CNN_ERR_LIMIT, "metadata %s: more than %d keys", key, CNN_META_MAX);
    struct cnn_meta_kv *kv = &m->meta[i < 0 ? m->n_meta++ : i];
    snprintf(kv->key, sizeof kv->key, "%s", key);
    snprintf(kv->value, sizeof kv->value, "%s", value);
    return CNN_OK;
}

int cnn_model_meta_count(const struct cnn_model *m) { return m->n_meta; }

int cnn_model_meta_at(const struct cnn_model *m, int i, const char **key, const char **value) {
    if (i < 0 || i >= m->n_meta)
        return cnn_fail(CNN_ERR_ARG, "metadata entry %d out of range [0, %d)", i, m->n_meta);
    *key = m->meta[i].key;
    *value = m->meta[i].value;
    return CNN_OK;
}

const char *cnn_model_class_name(const struct cnn_model *m, int i) {
    if (i < 0 || i >= m->n_classes) return NULL;
    char key[24];
    snprintf(key, sizeof key, "class.%d", i);
    const char *v = cnn_model_meta(m, key);
    return v && *v ? v : m->class_digit[i];
}
