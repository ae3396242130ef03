/*
 * metrics.c - classification metrics from a confusion matrix.
 *
 * confusion[t][p] counts images of true class t predicted as p. For class c:
 *   precision = TP / (TP + FP)   (column c)      recall = TP / (TP + FN)   (row c)
 *   F1 = 2 P R / (P + R)         support = images whose true class is c
 * A class that is never predicted has no precision: it is reported as 0 and flagged in
 * never_predicted (scikit-learn's zero_division=0 with a warning), never NaN. Macro averages
 * weight classes equally; weighted averages weight them by support.
 */
#include <string.h>

#include "internal.h"

void cnn_metrics_init(struct cnn_metrics *m, int n_classes) {
    memset(m, 0, sizeof *m);
    m->n_classes = n_classes < CNN_MAX_CLASSES ? n_classes : CNN_MAX_CLASSES;
}

void cnn_metrics_add(struct cnn_metrics *m, int truth, int predicted) {
    if (truth < 0 || truth >= m->n_classes || predicted < 0 || predicted >= m->n_classes) return;
    m->confusion[truth][predicted]++;
    m->n++;
    m->correct += truth == predicted;
}

void cnn_metrics_finish(struct cnn_metrics *m) {
    const int k = m->n_classes;
    m->macro_p = m->macro_r = m->macro_f1 = 0;
    m->weighted_p = m->weighted_r = m->weighted_f1 = 0;
    for (int c = 0; c < k; c++) {
        long tp = m->confusion[c][c], col = 0, row = 0;
        for (int j = 0; j < k; j++) {
            col += m->confusion[j][c];
            row += m->confusion[c][j];
        }
        m->support[c] = row;
        m->never_predicted[c] = col == 0;
        m->precision[c] = col ? (double)tp / (double)col : 0.0;
        m->recall[c] = row ? (double)tp / (double)row : 0.0;
        const double pr = m->precision[c] + m->recall[c];
        m->f1[c] = pr > 0 ? 2.0 * m->precision[c] * m->recall[c] / pr : 0.0;
        m->macro_p += m->precision[c] / k;
        m->macro_r += m->recall[c] / k;
        m->macro_f1 += m->f1[c] / k;
        if (m->n) {
            const double w = (double)row / (double)m->n;
            m->weighted_p += w * m->precision[c];
            m->weighted_r += w * m->recall[c];
            m->weighted_f1 += w * m->f1[c];
        }
    }
    m->accuracy = m->n ? (double)m->correct / (double)m->n : 0.0;
}
