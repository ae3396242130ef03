/*
 * test_metrics.c - classification metrics and the fused softmax + cross-entropy, against
 * numbers worked out by hand.
 *
 * Every expected value below is written as the exact fraction (or closed form) from the
 * arithmetic in the comment next to it, not recomputed with the library's formulas. The
 * metrics must never produce NaN: a class that is never predicted has precision 0 (flagged in
 * never_predicted), a class with no true images has recall 0.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../src/internal.h"

#define TOL 1e-12 /* metrics: doubles from small integer ratios */

static void near(double got, double want, double tol, const char *what) {
    if (!(fabs(got - want) <= tol))
        fail_msg("%s = %.17g, expected %.17g (tolerance %g)", what, got, want, tol);
}

/* Add `count` copies of (truth, predicted). */
static void add_n(struct cnn_metrics *m, int truth, int predicted, int count) {
    for (int i = 0; i < count; i++) cnn_metrics_add(m, truth, predicted);
}

/* No field of m is NaN or Inf, for the first k classes and every average. */
static void assert_all_finite(const struct cnn_metrics *m, int k) {
    for (int c = 0; c < k; c++) {
        if (isnan(m->precision[c]) || isnan(m->recall[c]) || isnan(m->f1[c]))
            fail_msg("class %d: NaN (p %g r %g f1 %g)", c, m->precision[c], m->recall[c], m->f1[c]);
        assert_true(isfinite(m->precision[c]) && isfinite(m->recall[c]) && isfinite(m->f1[c]));
    }
    const double avg[] = {m->macro_p,    m->macro_r,     m->macro_f1, m->weighted_p,
                          m->weighted_r, m->weighted_f1, m->accuracy};
    for (size_t i = 0; i < sizeof avg / sizeof avg[0]; i++) {
        if (isnan(avg[i])) fail_msg("average %zu is NaN", i);
        assert_true(isfinite(avg[i]));
    }
}

/* ---- metrics --------------------------------------------------------------------------------- */

/*
 * Confusion matrix [true][predicted], 3 classes:
 *          p0  p1  p2   row (support)
 *     t0    5   1   0    6
 *     t1    2   3   1    6
 *     t2    0   2   8   10
 *   col     7   6   9   n = 22, correct = 5 + 3 + 8 = 16
 * precision = TP/col:  5/7, 3/6 = 1/2, 8/9
 * recall    = TP/row:  5/6, 3/6 = 1/2, 8/10 = 4/5
 * F1 = 2TP / (2TP + FP + FN) = 2TP / (row + col):  10/13, 6/12 = 1/2, 16/19
 * macro P  = (5/7 + 1/2 + 8/9) / 3 = (90 + 63 + 112)/126 / 3 = 265/378
 * macro R  = (5/6 + 1/2 + 4/5) / 3 = (25 + 15 + 24)/30 / 3 = 64/90 = 32/45
 * macro F1 = (10/13 + 1/2 + 16/19) / 3 = (380 + 247 + 416)/494 / 3 = 1043/1482
 * weighted P  = (6*5/7 + 6*1/2 + 10*8/9) / 22 = (270 + 189 + 560)/63 / 22 = 1019/1386
 * weighted R  = (5 + 3 + 8) / 22 = 16/22 (always equals accuracy)
 * weighted F1 = (6*10/13 + 6*1/2 + 10*16/19) / 22 = (1140 + 741 + 2080)/247 / 22 = 3961/5434
 * accuracy = 16/22
 */
static void test_three_classes(void **state) {
    (void)state;
    struct cnn_metrics m;
    cnn_metrics_init(&m, 3);
    /* interleave the adds: the order must not matter */
    add_n(&m, 2, 2, 4);
    add_n(&m, 0, 0, 5);
    add_n(&m, 1, 0, 2);
    add_n(&m, 2, 1, 2);
    add_n(&m, 0, 1, 1);
    add_n(&m, 1, 1, 3);
    add_n(&m, 1, 2, 1);
    add_n(&m, 2, 2, 4);
    cnn_metrics_finish(&m);
    static const long conf[3][3] = {{5, 1, 0}, {2, 3, 1}, {0, 2, 8}};
    for (int t = 0; t < 3; t++)
        for (int p = 0; p < 3; p++) assert_int_equal(m.confusion[t][p], conf[t][p]);
    assert_int_equal(m.n_classes, 3);
    assert_int_equal(m.n, 22);
    assert_int_equal(m.correct, 16);
    assert_int_equal(m.support[0], 6);
    assert_int_equal(m.support[1], 6);
    assert_int_equal(m.support[2], 10);
    near(m.precision[0], 5.0 / 7, TOL, "precision[0]");
    near(m.precision[1], 1.0 / 2, TOL, "precision[1]");
    near(m.precision[2], 8.0 / 9, TOL, "precision[2]");
    near(m.recall[0], 5.0 / 6, TOL, "recall[0]");
    near(m.recall[1], 1.0 / 2, TOL, "recall[1]");
    near(m.recall[2], 4.0 / 5, TOL, "recall[2]");
    near(m.f1[0], 10.0 / 13, TOL, "f1[0]");
    near(m.f1[1], 1.0 / 2, TOL, "f1[1]");
    near(m.f1[2], 16.0 / 19, TOL, "f1[2]");
    near(m.macro_p, 265.0 / 378, TOL, "macro_p");
    near(m.macro_r, 32.0 / 45, TOL, "macro_r");
    near(m.macro_f1, 1043.0 / 1482, TOL, "macro_f1");
    near(m.weighted_p, 1019.0 / 1386, TOL, "weighted_p");
    near(m.weighted_r, 16.0 / 22, TOL, "weighted_r");
    near(m.weighted_f1, 3961.0 / 5434, TOL, "weighted_f1");
    near(m.accuracy, 16.0 / 22, TOL, "accuracy");
    for (int c = 0; c < 3; c++) assert_int_equal(m.never_predicted[c], 0);
    assert_all_finite(&m, 3);
}

/*
 * Class 2 is never predicted:
 *          p0  p1  p2   row
 *     t0    4   1   0    5
 *     t1    0   3   0    3
 *     t2    1   2   0    3
 *   col     5   6   0   n = 11, correct 7
 * precision: 4/5, 3/6 = 1/2, 0 (0/0 -> 0, flagged)
 * recall:    4/5, 3/3 = 1,   0/3 = 0
 * F1 = 2TP/(row+col): 8/10 = 4/5, 6/9 = 2/3, 0/3 = 0
 * macro P = (4/5 + 1/2 + 0)/3 = 13/30;  macro R = (4/5 + 1 + 0)/3 = 3/5
 * macro F1 = (4/5 + 2/3 + 0)/3 = 22/45
 * weighted P = (5*4/5 + 3*1/2 + 3*0)/11 = 5.5/11 = 1/2;  weighted R = 7/11
 * weighted F1 = (5*4/5 + 3*2/3 + 0)/11 = 6/11;  accuracy 7/11
 */
static void test_never_predicted(void **state) {
    (void)state;
    struct cnn_metrics m;
    cnn_metrics_init(&m, 3);
    add_n(&m, 0, 0, 4);
    add_n(&m, 0, 1, 1);
    add_n(&m, 1, 1, 3);
    add_n(&m, 2, 0, 1);
    add_n(&m, 2, 1, 2);
    cnn_metrics_finish(&m);
    assert_all_finite(&m, 3);
    assert_int_equal(m.never_predicted[0], 0);
    assert_int_equal(m.never_predicted[1], 0);
    assert_int_equal(m.never_predicted[2], 1);
    assert_true(m.precision[2] == 0.0); /* exactly */
    assert_true(m.recall[2] == 0.0);
    assert_true(m.f1[2] == 0.0);
    assert_int_equal(m.support[2], 3);
    near(m.precision[0], 4.0 / 5, TOL, "precision[0]");
    near(m.precision[1], 1.0 / 2, TOL, "precision[1]");
    near(m.recall[0], 4.0 / 5, TOL, "recall[0]");
    near(m.recall[1], 1.0, TOL, "recall[1]");
    near(m.f1[0], 4.0 / 5, TOL, "f1[0]");
    near(m.f1[1], 2.0 / 3, TOL, "f1[1]");
    near(m.macro_p, 13.0 / 30, TOL, "macro_p");
    near(m.macro_r, 3.0 / 5, TOL, "macro_r");
    near(m.macro_f1, 22.0 / 45, TOL, "macro_f1");
    near(m.weighted_p, 1.0 / 2, TOL, "weighted_p");
    near(m.weighted_r, 7.0 / 11, TOL, "weighted_r");
    near(m.weighted_f1, 6.0 / 11, TOL, "weighted_f1");
    near(m.accuracy, 7.0 / 11, TOL, "accuracy");
}

/*
 * 4 classes; class 2 has no true images but is predicted (wrongly) twice; class 3 never
 * occurs at all.
 *          p0  p1  p2  p3   row
 *     t0    3   0   1   0    4
 *     t1    0   2   1   0    3
 *     t2    0   0   0   0    0
 *     t3    0   0   0   0    0
 *   col     3   2   2   0   n = 7, correct 5
 * precision: 3/3 = 1, 2/2 = 1, 0/2 = 0 (predicted, so NOT flagged), 0 (flagged)
 * recall:    3/4, 2/3, 0 (0/0, zero support), 0 (0/0)
 * F1 = 2TP/(row+col): 6/7, 4/5, 0/2 = 0, 0
 * macro P = (1 + 1)/4 = 1/2;  macro R = (3/4 + 2/3)/4 = 17/48;  macro F1 = (6/7 + 4/5)/4 = 29/70
 * weighted P = (4*1 + 3*1)/7 = 1;  weighted R = (3 + 2)/7 = 5/7
 * weighted F1 = (4*6/7 + 3*4/5)/7 = (120 + 84)/35 / 7 = 204/245;  accuracy 5/7
 */
static void test_zero_support(void **state) {
    (void)state;
    struct cnn_metrics m;
    cnn_metrics_init(&m, 4);
    add_n(&m, 0, 0, 3);
    add_n(&m, 0, 2, 1);
    add_n(&m, 1, 1, 2);
    add_n(&m, 1, 2, 1);
    cnn_metrics_finish(&m);
    assert_all_finite(&m, 4);
    assert_int_equal(m.support[2], 0);
    assert_int_equal(m.support[3], 0);
    assert_true(m.recall[2] == 0.0);
    assert_true(m.recall[3] == 0.0);
    assert_true(m.precision[2] == 0.0);
    assert_int_equal(m.never_predicted[2], 0);
    assert_int_equal(m.never_predicted[3], 1);
    assert_true(m.f1[2] == 0.0 && m.f1[3] == 0.0);
    near(m.precision[0], 1.0, TOL, "precision[0]");
    near(m.precision[1], 1.0, TOL, "precision[1]");
    near(m.recall[0], 3.0 / 4, TOL, "recall[0]");
    near(m.recall[1], 2.0 / 3, TOL, "recall[1]");
    near(m.f1[0], 6.0 / 7, TOL, "f1[0]");
    near(m.f1[1], 4.0 / 5, TOL, "f1[1]");
    near(m.macro_p, 1.0 / 2, TOL, "macro_p");
    near(m.macro_r, 17.0 / 48, TOL, "macro_r");
    near(m.macro_f1, 29.0 / 70, TOL, "macro_f1");
    near(m.weighted_p, 1.0, TOL, "weighted_p");
    near(m.weighted_r, 5.0 / 7, TOL, "weighted_r");
    near(m.weighted_f1, 204.0 / 245, TOL, "weighted_f1");
    near(m.accuracy, 5.0 / 7, TOL, "accuracy");
}

/* 10 classes, class c has c+1 images, all right: every score is exactly 1, n = 55. */
static void test_all_correct(void **state) {
    (void)state;
    struct cnn_metrics m;
    cnn_metrics_init(&m, 10);
    for (int c = 0; c < 10; c++) add_n(&m, c, c, c + 1);
    cnn_metrics_finish(&m);
    assert_all_finite(&m, 10);
    assert_int_equal(m.n, 55);
    assert_int_equal(m.correct, 55);
    for (int c = 0; c < 10; c++) {
        assert_int_equal(m.support[c], c + 1);
        assert_int_equal(m.never_predicted[c], 0);
        assert_true(m.precision[c] == 1.0 && m.recall[c] == 1.0 && m.f1[c] == 1.0);
    }
    near(m.macro_p, 1.0, TOL, "macro_p");
    near(m.macro_r, 1.0, TOL, "macro_r");
    near(m.macro_f1, 1.0, TOL, "macro_f1");
    near(m.weighted_p, 1.0, TOL, "weighted_p");
    near(m.weighted_r, 1.0, TOL, "weighted_r");
    near(m.weighted_f1, 1.0, TOL, "weighted_f1");
    assert_true(m.accuracy == 1.0);
}

/* Labels outside [0, n_classes) on either side are ignored: not counted in n, not stored. */
static void test_out_of_range_ignored(void **state) {
    (void)state;
    struct cnn_metrics m;
    cnn_metrics_init(&m, 3);
    cnn_metrics_add(&m, -1, 0);
    cnn_metrics_add(&m, 3, 0);
    cnn_metrics_add(&m, 0, 3);
    cnn_metrics_add(&m, 0, -1);
    cnn_metrics_add(&m, 3, 3);
    cnn_metrics_add(&m, 9, 9); /* inside the 10x10 array, outside the 3 classes */
    cnn_metrics_add(&m, 1000, 1000);
    assert_int_equal(m.n, 0);
    assert_int_equal(m.correct, 0);
    add_n(&m, 0, 0, 2); /* then two good ones: accuracy 2/2 */
    add_n(&m, 1, 2, 1); /* and one wrong: 2/3 */
    cnn_metrics_finish(&m);
    assert_int_equal(m.n, 3);
    assert_int_equal(m.correct, 2);
    long total = 0;
    for (int t = 0; t < CNN_MAX_CLASSES; t++)
        for (int p = 0; p < CNN_MAX_CLASSES; p++) total += m.confusion[t][p];
    assert_int_equal(total, 3);
    assert_int_equal(m.confusion[9][9], 0);
    near(m.accuracy, 2.0 / 3, TOL, "accuracy");
    assert_all_finite(&m, 3);
}

/* Nothing added: everything 0, nothing NaN; more than CNN_MAX_CLASSES is clamped. */
static void test_empty_and_clamped(void **state) {
    (void)state;
    struct cnn_metrics m;
    cnn_metrics_init(&m, 12);
    assert_int_equal(m.n_classes, CNN_MAX_CLASSES);
    cnn_metrics_add(&m, 11, 11); /* beyond the clamp: ignored, no out-of-bounds write */
    cnn_metrics_finish(&m);
    assert_int_equal(m.n, 0);
    assert_all_finite(&m, CNN_MAX_CLASSES);
    assert_true(m.accuracy == 0.0);
    for (int c = 0; c < CNN_MAX_CLASSES; c++) {
        assert_int_equal(m.never_predicted[c], 1);
        assert_int_equal(m.support[c], 0);
    }
}

/* finish twice gives the same numbers (the averages are reset, not accumulated). */
static void test_finish_idempotent(void **state) {
    (void)state;
    struct cnn_metrics a, b;
    cnn_metrics_init(&a, 3);
    add_n(&a, 0, 0, 3);
    add_n(&a, 1, 0, 1);
    add_n(&a, 2, 2, 2);
    cnn_metrics_finish(&a);
    b = a;
    cnn_metrics_finish(&b);
    assert_memory_equal(&a, &b, sizeof a);
}

/* ---- softmax + cross-entropy ---------------------------------------------------------------- */

#define FTOL 2e-6 /* float logits such as ln 3 are rounded; results are float */

/* logits [0, ln 3]: exp -> [1, 3], sum 4, p = [1/4, 3/4].
 * label 1: loss = -ln(3/4) = ln(4/3) = 0.28768207245178...; dlogits = p - onehot = [1/4, -1/4]
 * label 0: loss = -ln(1/4) = ln 4 = 1.38629436111989...; dlogits = [-3/4, 3/4] */
static void test_xent_two_classes(void **state) {
    (void)state;
    const float logits[2] = {0.0f, (float)log(3.0)};
    float probs[2], d[2];
    uint8_t label = 1;
    float loss = cnn_softmax_xent(logits, &label, 1, 2, 0.0f, probs, d);
    near(probs[0], 0.25, FTOL, "p0");
    near(probs[1], 0.75, FTOL, "p1");
    near(loss, log(4.0 / 3.0), FTOL, "loss, label 1");
    near(d[0], 0.25, FTOL, "dlogit 0");
    near(d[1], -0.25, FTOL, "dlogit 1");
    label = 0;
    loss = cnn_softmax_xent(logits, &label, 1, 2, 0.0f, probs, d);
    near(loss, log(4.0), FTOL, "loss, label 0");
    near(d[0], -0.75, FTOL, "dlogit 0");
    near(d[1], 0.75, FTOL, "dlogit 1");
    /* dlogits may be NULL */
    loss = cnn_softmax_xent(logits, &label, 1, 2, 0.0f, probs, NULL);
    near(loss, log(4.0), FTOL, "loss without dlogits");
}

/* A batch of both rows above: the loss is the mean, (ln 4 + ln 4/3)/2 = ln(16/3)/2, and the
 * gradient is divided by n = 2. */
static void test_xent_batch_mean(void **state) {
    (void)state;
    const float l3 = (float)log(3.0);
    const float logits[4] = {0.0f, l3, 0.0f, l3};
    const uint8_t labels[2] = {1, 0};
    float probs[4], d[4];
    const float loss = cnn_softmax_xent(logits, labels, 2, 2, 0.0f, probs, d);
    near(loss, log(16.0 / 3.0) / 2, FTOL, "mean loss");
    near(d[0], 0.25 / 2, FTOL, "d[0]");
    near(d[1], -0.25 / 2, FTOL, "d[1]");
    near(d[2], -0.75 / 2, FTOL, "d[2]");
    near(d[3], 0.75 / 2, FTOL, "d[3]");
}

/* Label smoothing eps = 0.1, k = 2, label 1: target = 0.9*[0,1] + 0.05 = [0.05, 0.95].
 * loss = -(0.05 ln 1/4 + 0.95 ln 3/4) = 0.05 ln 4 + 0.95 ln 4/3 = 0.34261268713...
 * dlogits = p - target = [0.25 - 0.05, 0.75 - 0.95] = [0.2, -0.2] */
static void test_xent_label_smoothing(void **state) {
    (void)state;
    const float logits[2] = {0.0f, (float)log(3.0)};
    const uint8_t label = 1;
    float probs[2], d[2];
    const float loss = cnn_softmax_xent(logits, &label, 1, 2, 0.1f, probs, d);
    near(loss, 0.05 * log(4.0) + 0.95 * log(4.0 / 3.0), FTOL, "smoothed loss");
    near(d[0], 0.2, FTOL, "d[0]");
    near(d[1], -0.2, FTOL, "d[1]");
}

/* k = 3, logits [0, ln 2, ln 5]: exp [1, 2, 5], sum 8, p = [1/8, 1/4, 5/8].
 * label 2, eps 0: loss = -ln(5/8) = ln 1.6 = 0.47000362924573...
 * eps 0.3: target = 0.7*[0,0,1] + 0.1 = [0.1, 0.1, 0.8]
 *   loss = 0.1 ln 8 + 0.1 ln 4 + 0.8 ln 1.6 = 0.72257649359...
 *   dlogits = p - t = [0.025, 0.15, -0.175] */
static void test_xent_three_classes(void **state) {
    (void)state;
    const float logits[3] = {0.0f, (float)log(2.0), (float)log(5.0)};
    const uint8_t label = 2;
    float probs[3], d[3];
    float loss = cnn_softmax_xent(logits, &label, 1, 3, 0.0f, probs, d);
    near(probs[0], 0.125, FTOL, "p0");
    near(probs[1], 0.25, FTOL, "p1");
    near(probs[2], 0.625, FTOL, "p2");
    near(loss, log(1.6), FTOL, "loss");
    loss = cnn_softmax_xent(logits, &label, 1, 3, 0.3f, probs, d);
    near(loss, 0.1 * log(8.0) + 0.1 * log(4.0) + 0.8 * log(1.6), FTOL, "smoothed loss");
    near(d[0], 0.025, FTOL, "d[0]");
    near(d[1], 0.15, FTOL, "d[1]");
    near(d[2], -0.175, FTOL, "d[2]");
}

static void assert_finite_floats(const float *v, int n, const char *what) {
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) fail_msg("%s[%d] = %g", what, i, (double)v[i]);
}

/* Extreme logits: the max is subtracted before exp, and log p is (z - max) - lse, so
 *   [1e4, -1e4], label 1: loss = 2e4 exactly (finite), p = [1, 0], dlogits = [1, -1]
 *   [1e4, -1e4], label 0: loss = 0
 *   [1e4, 1e4, 1e4]: p uniform, loss ln 3
 *   [-1e4, -1e4]: p uniform, loss ln 2 */
static void test_xent_extreme_logits(void **state) {
    (void)state;
    float probs[3], d[3];
    const float a[2] = {1e4f, -1e4f};
    uint8_t label = 1;
    float loss = cnn_softmax_xent(a, &label, 1, 2, 0.0f, probs, d);
    assert_true(isfinite(loss));
    near(loss, 2e4, 1e-2, "confidently wrong");
    near(probs[0], 1.0, FTOL, "p0");
    near(probs[1], 0.0, FTOL, "p1");
    near(d[0], 1.0, FTOL, "d[0]");
    near(d[1], -1.0, FTOL, "d[1]");
    assert_finite_floats(probs, 2, "probs");
    assert_finite_floats(d, 2, "dlogits");
    label = 0;
    loss = cnn_softmax_xent(a, &label, 1, 2, 0.0f, probs, d);
    near(loss, 0.0, FTOL, "confidently right");
    /* with smoothing the wrong class's target is eps/k, so even the right answer costs
     * eps/k * 2e4 = 0.05 * 2e4 = 1000 */
    loss = cnn_softmax_xent(a, &label, 1, 2, 0.1f, probs, d);
    assert_true(isfinite(loss));
    near(loss, 1000.0, 1e-2, "smoothed, extreme");
    const float b[3] = {1e4f, 1e4f, 1e4f};
    label = 2;
    loss = cnn_softmax_xent(b, &label, 1, 3, 0.0f, probs, d);
    near(loss, log(3.0), FTOL, "equal huge logits");
    for (int j = 0; j < 3; j++) near(probs[j], 1.0 / 3, FTOL, "uniform p");
    const float c[2] = {-1e4f, -1e4f};
    label = 0;
    loss = cnn_softmax_xent(c, &label, 1, 2, 0.0f, probs, d);
    near(loss, log(2.0), FTOL, "equal very negative logits");
    assert_finite_floats(probs, 2, "probs");
    assert_finite_floats(d, 2, "dlogits");
}

/* A 10-class row of alternating +-1e4 (the MNIST shape), every label: all finite. */
static void test_xent_extreme_ten_classes(void **state) {
    (void)state;
    float logits[10 * 10], probs[10 * 10], d[10 * 10];
    uint8_t labels[10];
    for (int i = 0; i < 10; i++) {
        labels[i] = (uint8_t)i;
        for (int j = 0; j < 10; j++) logits[i * 10 + j] = (i + j) % 2 ? 1e4f : -1e4f;
    }
    /* row i, class j is +1e4 when i + j is odd, so the true class (j = i) is always at -1e4
     * and five classes tie at the top: lse = 1e4 + ln 5, loss = 1e4 + 1e4 + ln 5 per row */
    const float loss = cnn_softmax_xent(logits, labels, 10, 10, 0.0f, probs, d);
    assert_true(isfinite(loss));
    near(loss, 2e4 + log(5.0), 1e-2, "loss");
    assert_finite_floats(probs, 100, "probs");
    assert_finite_floats(d, 100, "dlogits");
}

/* Adding a constant to every logit changes nothing (the max shift is exact for +1000). */
static void test_xent_shift_invariant(void **state) {
    (void)state;
    const float a[3] = {0.5f, -1.25f, 2.0f}, b[3] = {1000.5f, 998.75f, 1002.0f};
    const uint8_t label = 0;
    float pa[3], pb[3], da[3], db[3];
    const float la = cnn_softmax_xent(a, &label, 1, 3, 0.0f, pa, da);
    const float lb = cnn_softmax_xent(b, &label, 1, 3, 0.0f, pb, db);
    near(la, lb, 1e-6, "loss");
    for (int j = 0; j < 3; j++) {
        near(pa[j], pb[j], 1e-6, "p");
        near(da[j], db[j], 1e-6, "dlogits");
    }
}

/* cnn_softmax gives the same probabilities as the fused loss. */
static void test_softmax_matches(void **state) {
    (void)state;
    const float logits[6] = {0.0f, (float)log(2.0), (float)log(5.0), 1e4f, -1e4f, 0.0f};
    const uint8_t labels[2] = {0, 0};
    float p1[6], p2[6];
    cnn_softmax_xent(logits, labels, 2, 3, 0.0f, p1, NULL);
    cnn_softmax(logits, 2, 3, p2);
    near(p2[0], 0.125, FTOL, "p[0]");
    near(p2[1], 0.25, FTOL, "p[1]");
    near(p2[2], 0.625, FTOL, "p[2]");
    near(p2[3], 1.0, FTOL, "p[3]");
    assert_finite_floats(p2, 6, "softmax");
    for (int j = 0; j < 6; j++) near(p1[j], p2[j], 1e-7, "fused vs plain");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_classes),
        cmocka_unit_test(test_never_predicted),
        cmocka_unit_test(test_zero_support),
        cmocka_unit_test(test_all_correct),
        cmocka_unit_test(test_out_of_range_ignored),
        cmocka_unit_test(test_empty_and_clamped),
        cmocka_unit_test(test_finish_idempotent),
        cmocka_unit_test(test_xent_two_classes),
        cmocka_unit_test(test_xent_batch_mean),
        cmocka_unit_test(test_xent_label_smoothing),
        cmocka_unit_test(test_xent_three_classes),
        cmocka_unit_test(test_xent_extreme_logits),
        cmocka_unit_test(test_xent_extreme_ten_classes),
        cmocka_unit_test(test_xent_shift_invariant),
        cmocka_unit_test(test_softmax_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
