/*
 * report_eval.c - what the report shows of a model on a set of images: the metrics, the most
 * confident mistakes, correct examples and mean images per class, the first layer's weights
 * as images; and the validation images a training run held out, found again.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report.h"

static int by_confidence(const void *a, const void *b) {
    const float x = ((const struct report_mistake *)a)->confidence;
    const float y = ((const struct report_mistake *)b)->confidence;
    return (x < y) - (x > y);
}

/* Probabilities of every image of ds, timed. Returns 0, or 1 after printing the error. */
static int classify(const struct cnn_model *m, const struct cnn_dataset *ds, int threads,
                    float *probs, double *images_per_s) {
    struct cnn_ctx *ctx;
    if (cnn_ctx_new(m, 256, threads, &ctx) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    const double t0 = cli_now();
    const int rc = cnn_predict_u8(m, ctx, ds->images, ds->n, probs);
    const double secs = cli_now() - t0;
    cnn_ctx_free(ctx);
    if (rc != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    *images_per_s = secs > 0 ? ds->n / secs : 0;
    return 0;
}

/* Metrics, mean loss, mistakes (all of them, most confident first), examples, mean images.
 * Returns 0, or -1 out of memory. */
static int tally(const struct cnn_dataset *ds, const int *index, const float *probs,
                 struct report_eval *ev, struct report_mistake *mk) {
    const int k = ds->n_classes;
    const size_t hw = (size_t)ds->h * ds->w;
    double loss = 0, *sum = calloc((size_t)k * hw, sizeof *sum); /* (k, h, w) */
    ev->mean = malloc((size_t)k * hw);
    if (!sum || !ev->mean) {
        free(sum);
        return -1;
    }
    cnn_metrics_init(&ev->m, k);
    ev->n_mistakes = 0;
    for (int i = 0; i < ds->n; i++) {
        const float *p = probs + (size_t)i * k;
        const int y = ds->labels[i], best = cnn_argmax(p, k);
        const int at = index ? index[i] : i;
        cnn_metrics_add(&ev->m, y, best);
        loss -= log(p[y] > 1e-12f ? (double)p[y] : 1e-12);
        if (best != y)
            mk[ev->n_mistakes++] = (struct report_mistake){at, y, best, p[best]};
        else if (ev->n_examples[y] < REPORT_EXAMPLES)
            ev->examples[y][ev->n_examples[y]++] = i; /* a row of ds; made a file index below */
        const uint8_t *img = ds->images + (size_t)i * hw;
        for (size_t q = 0; q < hw; q++) sum[(size_t)y * hw + q] += img[q];
    }
    cnn_metrics_finish(&ev->m);
    ev->mean_loss = ds->n ? loss / ds->n : 0;
    for (int c = 0; c < k; c++)
        for (size_t q = 0; q < hw; q++)
            ev->mean[(size_t)c * hw + q] =
                (uint8_t)lround(ev->m.support[c] ? sum[(size_t)c * hw + q] / ev->m.support[c] : 0);
    free(sum);
    qsort(mk, (size_t)ev->n_mistakes, sizeof *mk, by_confidence);
    return 0;
}

/* Copies of the images the page shows: the kept mistakes', then each class's examples. */
static int keep_images(const struct cnn_dataset *ds, const int *index, struct report_eval *ev) {
    const size_t hw = (size_t)ds->h * ds->w;
    int total = ev->n_mistakes;
    for (int c = 0; c < CNN_MAX_CLASSES; c++) total += ev->n_examples[c];
    ev->images = malloc(hw * (size_t)(total + 1));
    if (!ev->images) return -1;
    uint8_t *at = ev->images;
    for (int i = 0; i < ev->n_mistakes; i++, at += hw) {
        int row = ev->mistakes[i].index; /* back from a file index to a row of ds */
        if (index)
            for (row = 0; index[row] != ev->mistakes[i].index; row++) continue;
        memcpy(at, ds->images + (size_t)row * hw, hw);
    }
    for (int c = 0; c < CNN_MAX_CLASSES; c++)
        for (int j = 0; j < ev->n_examples[c]; j++, at += hw) {
            const int row = ev->examples[c][j];
            memcpy(at, ds->images + (size_t)row * hw, hw);
            ev->examples[c][j] = index ? index[row] : row;
        }
    return 0;
}

int report_eval_run(const struct cnn_model *m, const char *model_path, const struct cnn_dataset *ds,
                    const int *index, int threads, int max_mistakes, struct report_eval *out) {
    int c, h, w;
    cnn_model_input_shape(m, &c, &h, &w);
    if (c != 1 || h != ds->h || w != ds->w || cnn_model_n_classes(m) != ds->n_classes) {
        cli_err("%s: expects %dx%dx%d inputs and %d classes; the data is 1x%dx%d with %d",
                model_path, c, h, w, cnn_model_n_classes(m), ds->h, ds->w, ds->n_classes);
        return 1;
    }
    out->n = ds->n, out->h = h, out->w = w;
    float *probs = malloc(sizeof(float) * ((size_t)ds->n * ds->n_classes + 1));
    out->mistakes = malloc(sizeof *out->mistakes * ((size_t)ds->n + 1));
    if (!probs || !out->mistakes) {
        cli_err("out of memory classifying %d images", ds->n);
        goto fail;
    }
    if (classify(m, ds, threads, probs, &out->images_per_s)) goto fail;
    if (tally(ds, index, probs, out, out->mistakes)) {
        cli_err("out of memory");
        goto fail;
    }
    if (out->n_mistakes > max_mistakes) out->n_mistakes = max_mistakes;
    if (keep_images(ds, index, out)) {
        cli_err("out of memory");
        goto fail;
    }
    free(probs);
    return 0;
fail:
    free(probs);
    report_eval_free(out);
    return 1;
}

void report_eval_free(struct report_eval *ev) {
    free(ev->mistakes);
    free(ev->images);
    free(ev->mean);
    ev->mistakes = NULL;
    ev->images = NULL;
    ev->mean = NULL;
}

/* ---- the validation split ----------------------------------------------------------------- */

/* n (the images the run used) and n_val from the metadata; 0, 1 (error printed) or 2. */
static int split_sizes(const struct cnn_model *m, const char *path, int have, int *n, int *n_val) {
    const char *ti = cnn_model_meta(m, "train_images"), *rv = cnn_model_meta(m, "recipe.val");
    const char *dfp = cnn_model_meta(m, "data_fingerprint");
    const char *vfp = cnn_model_meta(m, "val_fingerprint");
    const long t = ti ? strtol(ti, NULL, 10) : -1, v = rv ? strtol(rv, NULL, 10) : -1;
    if (t < 1 || v < 0 || !dfp || !vfp) {
        cli_err("%s: the model does not record which images its training held out "
                "(metadata train_images, recipe.val and the fingerprints)",
                path);
        return 1;
    }
    if (v == 0) return 2;
    if (t + v > have) {
        cli_err("%s: its training read %ld images; the data has only %d", path, t + v, have);
        return 1;
    }
    *n = (int)(t + v), *n_val = (int)v;
    return 0;
}

int report_val_split(const struct cnn_model *m, const char *model_path,
                     const struct cnn_dataset *train, struct cnn_dataset *out, int **index) {
    int n = 0, n_val = 0, rc = split_sizes(m, model_path, train->n, &n, &n_val);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    *index = malloc(sizeof(int) * (size_t)n_val);
    out->images = malloc((size_t)n_val * train->h * train->w);
    out->labels = malloc((size_t)n_val);
    rc = 1;
    if (!*index || !out->images || !out->labels) {
        cli_err("out of memory splitting %d images", n);
        goto done;
    }
    if (cnn_val_split(n, n_val, *index, NULL)) {
        cli_err("%s: %s", model_path, cnn_errmsg());
        goto done;
    }
    char dfp[24], vfp[24];
    cnn_split_fingerprints(train, n, *index, n_val, dfp, vfp);
    if (strcmp(dfp, cnn_model_meta(m, "data_fingerprint")) ||
        strcmp(vfp, cnn_model_meta(m, "val_fingerprint"))) {
        cli_err("%s: these are not the images its training held out (fingerprints %s %s, "
                "the model records %s %s): give the --data it was trained on",
                model_path, dfp, vfp, cnn_model_meta(m, "data_fingerprint"),
                cnn_model_meta(m, "val_fingerprint"));
        goto done;
    }
    const size_t hw = (size_t)train->h * train->w;
    for (int i = 0; i < n_val; i++) {
        memcpy(out->images + i * hw, train->images + (size_t)(*index)[i] * hw, hw);
        out->labels[i] = train->labels[(*index)[i]];
    }
    out->n = n_val, out->h = train->h, out->w = train->w, out->n_classes = train->n_classes;
    rc = 0;
done:
    if (rc) {
        cnn_dataset_free(out);
        free(*index);
        *index = NULL;
    }
    return rc;
}

/* ---- first-layer weights ------------------------------------------------------------------ */

/* Each of the n images of size len in w, scaled to 0..255 by its own range (gray 128 where
 * a filter is constant). */
static void to_gray(const float *w, int n, size_t stride, size_t len, uint8_t *out) {
    for (int i = 0; i < n; i++) {
        const float *p = w + (size_t)i * stride;
        float lo = p[0], hi = p[0];
        for (size_t q = 1; q < len; q++) lo = p[q] < lo ? p[q] : lo, hi = p[q] > hi ? p[q] : hi;
        for (size_t q = 0; q < len; q++)
            out[(size_t)i * len + q] =
                (uint8_t)(hi > lo ? lround(255.0 * (p[q] - lo) / (hi - lo)) : 128);
    }
}

uint8_t *report_first_filters(const struct cnn_model *m, int *n, int *w, int *h,
                              const char **kind) {
    size_t off = 0; /* parameters are laid out layer after layer, weights before biases */
    for (int i = 0; i < cnn_model_n_layers(m); i++) {
        struct cnn_layer_info li;
        cnn_model_layer_info(m, i, &li);
        const int conv = !strcmp(li.kind, "conv"), dense = !strcmp(li.kind, "dense");
        if (!conv && !dense) {
            if (li.n_params) return NULL; /* a layer with weights before any conv or dense */
            continue;
        }
        int c, ih, iw;
        cnn_model_input_shape(m, &c, &ih, &iw);
        const int units = li.c;
        const size_t per = (li.n_params - (size_t)units) / (size_t)units;
        const int k = (int)lround(sqrt((double)per));
        if (c != 1 || units > 256) return NULL;
        if (conv && (size_t)k * k != per) return NULL;
        if (dense && (i > 0 || per != (size_t)ih * iw)) return NULL; /* only on the raw image */
        *n = units, *w = *h = conv ? k : iw, *kind = li.kind;
        uint8_t *out = malloc(per * (size_t)units);
        if (out) to_gray(cnn_model_params(m) + off, units, per, per, out);
        return out;
    }
    return NULL;
}
