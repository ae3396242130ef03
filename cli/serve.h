/*
 * serve.h - the parts of `mnist serve`:
 *   serve_api.c      what a request means and what the reply says: the JSON pixel body, the
 *                    prediction, the model description, errors. No HTTP, so the fuzzer and the
 *                    tests can call it directly (fuzz/fuzz_request.c).
 *   serve_metrics.c  counters and the latency histogram, in the Prometheus text format.
 *   serve_page.c     web/index.html, assembled into the binary.
 *   cmd_serve.c      options, libmicrohttpd, routing, limits, the workers' contexts, signals.
 */
#ifndef MNIST_SERVE_H
#define MNIST_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "cnn.h"

#define SERVE_PIXELS (28 * 28)
#define SERVE_MAX_MODELS 16

/* What is served: one model, or an ensemble whose probabilities are averaged. Built once at
 * start and only read afterwards, by every worker at once. */
struct serve_models {
    int n;                                   /* 1..SERVE_MAX_MODELS */
    struct cnn_model *m[SERVE_MAX_MODELS];   /* all 1x28x28 in, n_classes out */
    const char *path[SERVE_MAX_MODELS];
    int n_classes;
    char fingerprint[SERVE_MAX_MODELS * 9];  /* crc32 hex of each model, joined by '+' */
    char *class_json[10];                    /* class names, as JSON string literals */
    char *model_json;                        /* the body of GET /api/model */
    size_t model_json_len;
};

/* Loads the models (paths[0..n-1]) and checks that they can be served together. On failure
 * prints nothing, returns -1 and puts a one-line message in err. */
int serve_models_load(struct serve_models *s, const char *const *paths, int n, char *err,
                      size_t errlen);
void serve_models_free(struct serve_models *s);

/* A JSON body {"pixels": [784 integers 0..255]}, row-major 28x28, light ink on dark. Other keys
 * are ignored. Returns 0, or -1 with a one-line message in err (malformed JSON, wrong count, a
 * value that is not an integer in range). */
int serve_parse_pixels(const char *body, size_t len, uint8_t px[SERVE_PIXELS], char *err,
                       size_t errlen);

/* The reply to a prediction: label, class, confidence, top (3), probs, input (px), model,
 * typicality (null when < 0: no member has one), unsure (with its reason when unsure is not
 * NULL) and digits (objects found).
 * Returns a malloc'd string and its length in *len, or NULL when out of memory. */
char *serve_predict_json(const struct serve_models *s, const float *probs, float typicality,
                         const uint8_t px[SERVE_PIXELS], const char *unsure, int objects,
                         size_t *len);
/* {"error": msg}, msg escaped. malloc'd; NULL when out of memory. */
char *serve_error_json(const char *msg, size_t *len);

/* ---- metrics (serve_metrics.c): safe to call from every worker at once ---- */
void serve_metrics_record(int status, double seconds);
void serve_metrics_predicted(void);
/* The Prometheus text exposition of everything recorded, plus the gauges given. malloc'd. */
char *serve_metrics_text(int workers, long in_flight, size_t *len);

/* ---- the page (serve_page.c) ---- */
extern const char serve_page_html[];
extern const size_t serve_page_html_len;

#endif
