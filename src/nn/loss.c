/*
 * loss.c - fused softmax + cross-entropy with optional label smoothing.
 *
 *   logits (n,k) in; probs (n,k) out; dlogits (n,k) out;
 *   p = softmax(logits) (max subtracted first, so exp never overflows)
 *   target = (1 - eps) * onehot(label) + eps / k         (PyTorch CrossEntropyLoss semantics)
 *   loss = mean_n( -sum_k target * log p )
 *   dlogits = (p - target) / n                            (the fused gradient; llm.c style)
 * log p is computed as (logit - max) - log(sum exp), never as log(p), so a confident wrong
 * prediction gives a large finite loss rather than inf.
 */
#include <math.h>

#include "internal.h"

/* One row: max logit and log(sum exp(z - max)), the stable log-sum-exp. */
static void row_lse(const float *z, int k, float *mx, double *lse) {
    float m = z[0];
    for (int j = 1; j < k; j++) m = z[j] > m ? z[j] : m;
    double sum = 0.0;
    for (int j = 0; j < k; j++) sum += exp((double)z[j] - m);
    *mx = m;
    *lse = log(sum);
}

void cnn_softmax(const float *logits, int n, int k, float *probs) {
#pragma omp parallel for schedule(static) if ((size_t)n * k * 8 >= CNN_OMP_MIN_WORK)
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        float *p = probs + (size_t)i * k;
        float mx;
        double lse;
        row_lse(z, k, &mx, &lse);
        for (int j = 0; j < k; j++) p[j] = (float)exp((double)z[j] - mx - lse);
    }
}

float cnn_softmax_xent(const float *logits, const uint8_t *labels, int n, int k, float eps,
                       float *probs, float *dlogits) {
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        float *p = probs + (size_t)i * k;
        float mx;
        double lse;
        row_lse(z, k, &mx, &lse);
        double li = 0.0;
        for (int j = 0; j < k; j++) {
            const double logp = (double)z[j] - mx - lse;
            const double t = (j == labels[i] ? 1.0 - eps : 0.0) + (double)eps / k;
            p[j] = (float)exp(logp);
            li -= t * logp;
            if (dlogits) dlogits[(size_t)i * k + j] = (float)((exp(logp) - t) / n);
        }
        total += li;
    }
    return (float)(total / n);
}

int cnn_argmax(const float *v, int n) {
    int best = 0;
    for (int j = 1; j < n; j++) best = v[j] > v[best] ? j : best;
    return best;
}
