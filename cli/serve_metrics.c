/*
 * serve_metrics.c - what `mnist serve` counts, for GET /metrics in the Prometheus text format
 * (version 0.0.4): requests by status code, predictions, and a histogram of the time from a
 * request's headers to its reply. Relaxed C11 atomics: every worker records at once, and a
 * scrape may see one request counted in the total a moment before its bucket.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "serve.h"

static const int status_codes[] = {200, 400, 404, 405, 413, 415, 500, 503};
#define N_CODES (int)(sizeof status_codes / sizeof status_codes[0])
static const double bucket_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                   0.05,   0.1,   0.25,   0.5,   1.0,  2.5};
#define N_BUCKETS (int)(sizeof bucket_le / sizeof bucket_le[0])

static atomic_ulong requests[N_CODES + 1]; /* the last: any other code */
static atomic_ulong buckets[N_BUCKETS + 1]; /* not cumulative here; the last is +Inf */
static atomic_ulong latency_us_sum;
static atomic_ulong predictions;

void serve_metrics_record(int status, double seconds) {
    int i = 0;
    while (i < N_CODES && status_codes[i] != status) i++;
    atomic_fetch_add_explicit(&requests[i], 1, memory_order_relaxed);
    int b = 0;
    while (b < N_BUCKETS && seconds > bucket_le[b]) b++;
    atomic_fetch_add_explicit(&buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&latency_us_sum, (unsigned long)(seconds * 1e6 + 0.5),
                              memory_order_relaxed);
}

void serve_metrics_predicted(void) {
    atomic_fetch_add_explicit(&predictions, 1, memory_order_relaxed);
}

static unsigned long load(atomic_ulong *v) {
    return atomic_load_explicit(v, memory_order_relaxed);
}

char *serve_metrics_text(int workers, long in_flight, size_t *len) {
    char *out = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&out, &n);
    if (!f) return NULL;
    fputs("# HELP mnist_http_requests_total HTTP requests answered, by status code.\n"
          "# TYPE mnist_http_requests_total counter\n",
          f);
    for (int i = 0; i <= N_CODES; i++) {
        const unsigned long v = load(&requests[i]);
        if (i < N_CODES)
            fprintf(f, "mnist_http_requests_total{code=\"%d\"} %lu\n", status_codes[i], v);
        else
            fprintf(f, "mnist_http_requests_total{code=\"other\"} %lu\n", v);
    }
    fputs("# HELP mnist_http_request_duration_seconds From a request's headers to its reply.\n"
          "# TYPE mnist_http_request_duration_seconds histogram\n",
          f);
    unsigned long cum = 0;
    for (int b = 0; b <= N_BUCKETS; b++) {
        cum += load(&buckets[b]);
        if (b < N_BUCKETS)
            fprintf(f, "mnist_http_request_duration_seconds_bucket{le=\"%g\"} %lu\n",
                    bucket_le[b], cum);
        else
            fprintf(f, "mnist_http_request_duration_seconds_bucket{le=\"+Inf\"} %lu\n", cum);
    }
    fprintf(f, "mnist_http_request_duration_seconds_sum %.6f\n",
            (double)load(&latency_us_sum) * 1e-6);
    fprintf(f, "mnist_http_request_duration_seconds_count %lu\n", cum);
    fprintf(f, "# HELP mnist_predictions_total Images classified.\n"
               "# TYPE mnist_predictions_total counter\n"
               "mnist_predictions_total %lu\n"
               "# HELP mnist_requests_in_flight Requests received and not yet answered.\n"
               "# TYPE mnist_requests_in_flight gauge\n"
               "mnist_requests_in_flight %ld\n"
               "# HELP mnist_workers Request workers, each with its own context.\n"
               "# TYPE mnist_workers gauge\n"
               "mnist_workers %d\n",
            load(&predictions), in_flight, workers);
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    *len = n;
    return out;
}
