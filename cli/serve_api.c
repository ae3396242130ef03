/*
 * serve_api.c - what `mnist serve` reads from a request and writes in its replies, without
 * any HTTP: the models being served, the JSON pixel body, the prediction, the error body.
 *
 * JSON is parsed with jansson (strict RFC 8259, duplicate keys refused, depth bounded). The
 * replies are written by hand into one growing buffer: a prediction carries 794 numbers and
 * is built thousands of times a second, and every string in it (class names, the
 * fingerprint) is escaped once, when the models are loaded.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "serve.h"

/* ---- a growing output buffer ---------------------------------------------------------------- */

struct buf {
    char *p;
    size_t n, cap;
    int oom;
};

static void buf_reserve(struct buf *b, size_t more) {
    if (b->oom || b->n + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void buf_put(struct buf *b, const char *s, size_t n) {
    buf_reserve(b, n);
    if (b->oom) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void buf_puts(struct buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...) {
    for (int pass = 0; pass < 2 && !b->oom; pass++) {
        buf_reserve(b, 64);
        if (b->oom) return;
        const size_t room = b->cap - b->n;
        va_list ap;
        va_start(ap, fmt);
        const int n = vsnprintf(b->p + b->n, room, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if ((size_t)n < room) {
            b->n += (size_t)n;
            return;
        }
        buf_reserve(b, (size_t)n); /* too long for the room left: grow, then write again */
    }
}

/* A byte in decimal, without printf: 784 of them per reply. */
static void buf_u8(struct buf *b, unsigned v) {
    char t[3];
    int n = 0;
    if (v >= 100) t[n++] = (char)('0' + v / 100);
    if (v >= 10) t[n++] = (char)('0' + v / 10 % 10);
    t[n++] = (char)('0' + v % 10);
    buf_put(b, t, (size_t)n);
}

static char *buf_finish(struct buf *b, size_t *len) {
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    if (len) *len = b->n;
    return b->p;
}

/* s as a JSON string literal, through cli_json_str. malloc'd; NULL when out of memory. */
static char *json_literal(const char *s) {
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f) return NULL;
    cli_json_str(f, s);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- the models ----------------------------------------------------------------------------- */

static void model_json_write(FILE *f, const struct serve_models *s) {
    const struct cnn_model *m0 = s->m[0];
    fputs("{\"spec\":", f);
    cli_json_str(f, cnn_model_spec(m0));
    fprintf(f, ",\"parameters\":%zu,\"classes\":[", cnn_model_n_params(m0));
    for (int k = 0; k < s->n_classes; k++) fprintf(f, "%s%s", k ? "," : "", s->class_json[k]);
    fprintf(f, "],\"input\":[1,28,28],\"fingerprint\":\"%s\",\"models\":[", s->fingerprint);
    for (int i = 0; i < s->n; i++) {
        fprintf(f, "%s{\"fingerprint\":\"%08lx\",\"network\":", i ? "," : "",
                cli_model_fingerprint(s->m[i]));
        cli_json_summary(f, s->m[i]);
        fputs(",\"meta\":", f);
        cli_json_meta(f, s->m[i]);
        fprintf(f, ",\"typicality\":%s}", cnn_model_has_typicality(s->m[i]) ? "true" : "false");
    }
    fputs("]}", f);
}

/* Everything the replies need that does not change: escaped class names, the fingerprint, the
 * body of GET /api/model. */
static int models_describe(struct serve_models *s, char *err, size_t errlen) {
    size_t off = 0;
    for (int i = 0; i < s->n; i++)
        off += (size_t)snprintf(s->fingerprint + off, sizeof s->fingerprint - off, "%s%08lx",
                                i ? "+" : "", cli_model_fingerprint(s->m[i]));
    for (int k = 0; k < s->n_classes; k++)
        if (!(s->class_json[k] = json_literal(cnn_model_class_name(s->m[0], k)))) goto oom;
    FILE *f = open_memstream(&s->model_json, &s->model_json_len);
    if (!f) goto oom;
    model_json_write(f, s);
    if (fclose(f) == 0) return 0;
oom:
    snprintf(err, errlen, "out of memory describing the models");
    return -1;
}

int serve_models_load(struct serve_models *s, const char *const *paths, int n, char *err,
                      size_t errlen) {
    memset(s, 0, sizeof *s);
    if (n < 1 || n > SERVE_MAX_MODELS) {
        snprintf(err, errlen, "--model: give 1 to %d models, not %d", SERVE_MAX_MODELS, n);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        s->path[i] = paths[i];
        if (cnn_model_load(paths[i], &s->m[i]) != CNN_OK) {
            snprintf(err, errlen, "%s", cnn_errmsg());
            serve_models_free(s);
            return -1;
        }
        s->n = i + 1;
        int c, h, w;
        cnn_model_input_shape(s->m[i], &c, &h, &w);
        if (c != 1 || h != 28 || w != 28) {
            snprintf(err, errlen, "%s: takes %dx%dx%d images; serve needs 1x28x28", paths[i], c,
                     h, w);
            serve_models_free(s);
            return -1;
        }
        const int k = cnn_model_n_classes(s->m[i]);
        if (i > 0 && k != s->n_classes) {
            snprintf(err, errlen, "%s: %d classes, but %s has %d; an ensemble needs the same",
                     paths[i], k, paths[0], s->n_classes);
            serve_models_free(s);
            return -1;
        }
        s->n_classes = k;
    }
    if (models_describe(s, err, errlen) != 0) {
        serve_models_free(s);
        return -1;
    }
    return 0;
}

void serve_models_free(struct serve_models *s) {
    for (int i = 0; i < s->n; i++) cnn_model_free(s->m[i]);
    for (int k = 0; k < 10; k++) free(s->class_json[k]);
    free(s->model_json);
    memset(s, 0, sizeof *s);
}

/* ---- requests ------------------------------------------------------------------------------- */

int serve_parse_pixels(const char *body, size_t len, uint8_t px[SERVE_PIXELS], char *err,
                       size_t errlen) {
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "malformed JSON at line %d, column %d: %s", je.line, je.column,
                 je.text);
        /* jansson quotes the text near the error, newlines and all: keep the message one line */
        for (char *p = err; *p; p++)
            if ((unsigned char)*p < 0x20) *p = ' ';
        return -1;
    }
    int rc = -1;
    const json_t *arr = json_is_object(root) ? json_object_get(root, "pixels") : NULL;
    if (!arr || !json_is_array(arr)) {
        snprintf(err, errlen, "expected a JSON object with \"pixels\": an array of %d integers",
                 SERVE_PIXELS);
        goto done;
    }
    if (json_array_size(arr) != SERVE_PIXELS) {
        snprintf(err, errlen, "\"pixels\" has %zu values; expected %d (28x28, row-major)",
                 json_array_size(arr), SERVE_PIXELS);
        goto done;
    }
    for (size_t i = 0; i < SERVE_PIXELS; i++) {
        const json_t *v = json_array_get(arr, i);
        const json_int_t x = json_is_integer(v) ? json_integer_value(v) : -1;
        if (x < 0 || x > 255) {
            snprintf(err, errlen, "\"pixels\"[%zu] is not an integer from 0 to 255", i);
            goto done;
        }
        px[i] = (uint8_t)x;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* ---- replies -------------------------------------------------------------------------------- */

/* The k most probable classes, most probable first (ties: the lower class). */
static int top_classes(const float *probs, int n, int k, int *out) {
    if (k > n) k = n;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int c = 0; c < n; c++) {
            int taken = 0;
            for (int q = 0; q < j; q++) taken |= out[q] == c;
            if (!taken && (best < 0 || probs[c] > probs[best])) best = c;
        }
        out[j] = best;
    }
    return k;
}

char *serve_predict_json(const struct serve_models *s, const float *probs, float typicality,
                         const uint8_t px[SERVE_PIXELS], const char *unsure, int objects,
                         size_t *len) {
    int top[3];
    const int nt = top_classes(probs, s->n_classes, 3, top);
    struct buf b = {0};
    buf_reserve(&b, 4096);
    buf_printf(&b, "{\"label\":%d,\"class\":", top[0]);
    buf_puts(&b, s->class_json[top[0]]);
    buf_printf(&b, ",\"confidence\":%.6g,\"top\":[", (double)probs[top[0]]);
    for (int j = 0; j < nt; j++) {
        buf_printf(&b, "%s{\"label\":%d,\"class\":", j ? "," : "", top[j]);
        buf_puts(&b, s->class_json[top[j]]);
        buf_printf(&b, ",\"p\":%.6g}", (double)probs[top[j]]);
    }
    buf_puts(&b, "],\"probs\":[");
    for (int c = 0; c < s->n_classes; c++) buf_printf(&b, "%s%.6g", c ? "," : "", (double)probs[c]);
    buf_puts(&b, "],\"input\":[");
    for (int i = 0; i < SERVE_PIXELS; i++) {
        if (i) buf_put(&b, ",", 1);
        buf_u8(&b, px[i]);
    }
    if (typicality >= 0.0f)
        buf_printf(&b, "],\"typicality\":%.6g", (double)typicality);
    else
        buf_puts(&b, "],\"typicality\":null");
    buf_printf(&b, ",\"unsure\":%s", unsure ? "true" : "false");
    if (unsure) buf_printf(&b, ",\"reason\":\"%s\"", unsure); /* cli_unsure: plain ASCII */
    buf_printf(&b, ",\"digits\":%d,\"model\":\"%s\"}\n", objects, s->fingerprint);
    return buf_finish(&b, len);
}

char *serve_error_json(const char *msg, size_t *len) {
    char *lit = json_literal(msg); /* invalid UTF-8 (a client's path) becomes U+FFFD */
    if (!lit) return NULL;
    struct buf b = {0};
    buf_puts(&b, "{\"error\":");
    buf_puts(&b, lit);
    buf_puts(&b, "}\n");
    free(lit);
    return buf_finish(&b, len);
}
