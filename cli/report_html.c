/*
 * report_html.c - the page of `mnist report`: the model and its training metadata, training
 * curves, the confusion matrix as heatmaps, per-class bars and table, the most confident
 * mistakes, correct examples and mean images per class, the first layer's filters. Every
 * section has an id (summary, model, curves, confusion, per-class, mistakes, examples,
 * filters) and is there even when its data is not (then a sentence says why).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "html.h"
#include "report.h"

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

static void section(FILE *f, const char *id, const char *title) {
    fprintf(f, "<h2 id=\"%s\">", id);
    html_text(f, title);
    fputs("</h2>\n", f);
}

static void para(FILE *f, const char *cls, const char *text) {
    fprintf(f, "<p class=\"%s\">", cls);
    html_text(f, text);
    fputs("</p>\n", f);
}

static double model_mflops(const struct cnn_model *m) {
    double s = 0;
    for (int i = 0; i < cnn_model_n_layers(m); i++) {
        struct cnn_layer_info li;
        cnn_model_layer_info(m, i, &li);
        s += li.mflops;
    }
    return s;
}

static void card(FILE *f, const char *value, const char *what) {
    fputs("<div class=\"card\"><b>", f);
    html_text(f, value);
    fputs("</b>", f);
    html_text(f, what);
    fputs("</div>\n", f);
}

static void summary(FILE *f, const struct report_src *r) {
    char v[64];
    section(f, "summary", "Summary");
    fputs("<div class=\"cards\">\n", f);
    if (r->ev) {
        snprintf(v, sizeof v, "%.2f%%", 100.0 * r->ev->m.accuracy);
        card(f, v, r->ev->split[0] == 't' ? "test accuracy" : "validation accuracy");
        snprintf(v, sizeof v, "%ld of %d", r->ev->m.n - r->ev->m.correct, r->ev->n);
        card(f, v, "images wrong");
    }
    const char *va = cnn_model_meta(r->model, "val_acc"), *ep = cnn_model_meta(r->model, "epochs");
    if (va && strtod(va, NULL) >= 0) {
        snprintf(v, sizeof v, "%.2f%%", 100.0 * strtod(va, NULL));
        card(f, v, "best validation accuracy in training");
    }
    if (ep) card(f, ep, "epochs trained");
    snprintf(v, sizeof v, "%zu", cnn_model_n_params(r->model));
    card(f, v, "parameters");
    snprintf(v, sizeof v, "%.2f", model_mflops(r->model));
    card(f, v, "MFLOPs per image");
    fputs("</div>\n", f);
}

static void model_section(FILE *f, const struct cnn_model *m) {
    section(f, "model", "Model");
    fputs("<p>Spec: <code>", f);
    html_text(f, cnn_model_spec(m));
    fputs("</code></p>\n<div class=\"row\"><table><tr><th>#</th><th class=\"l\">layer</th>"
          "<th>output</th><th>parameters</th><th>MFLOPs</th></tr>\n",
          f);
    for (int i = 0; i < cnn_model_n_layers(m); i++) {
        struct cnn_layer_info li;
        cnn_model_layer_info(m, i, &li);
        fprintf(f, "<tr><td>%d</td><td class=\"l\"><code>", i + 1);
        html_text(f, li.text);
        fprintf(f, "</code></td><td>%dx%dx%d</td><td>%zu</td><td>%.3f</td></tr>\n", li.c, li.h,
                li.w, li.n_params, li.mflops);
    }
    fprintf(f,
            "<tr><th></th><th class=\"l\">total</th><th></th><th>%zu</th><th>%.3f</th></tr>"
            "</table>\n<table><tr><th class=\"l\">metadata</th><th class=\"l\">value</th>"
            "</tr>\n",
            cnn_model_n_params(m), model_mflops(m));
    for (int i = 0; i < cnn_model_meta_count(m); i++) {
        const char *k, *v;
        cnn_model_meta_at(m, i, &k, &v);
        fputs("<tr><td class=\"l\">", f);
        html_text(f, k);
        fputs("</td><td class=\"l\">", f);
        html_text(f, v);
        fputs("</td></tr>\n", f);
    }
    fputs("</table></div>\n", f);
}

/* One chart of the log: up to two series of epoch against a field (fields as offsets). */
static void curve(FILE *f, const struct report_log *log, const char *title, const char *ylabel,
                  double mul, int n, const char *const *names, const char *const *keys,
                  const size_t *field, int logy) {
    double *x = malloc(sizeof(double) * (size_t)(log->n + 1) * 3);
    if (!x) return;
    double *y[2] = {x + log->n + 1, x + 2 * (log->n + 1)};
    struct svg_series s[2];
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < log->n; i++) {
            x[i] = log->e[i].epoch;
            const double v = *(const double *)((const char *)&log->e[i] + field[j]);
            y[j][i] = v < 0 ? NAN : v * mul; /* -1: no validation that epoch */
        }
        s[j] = (struct svg_series){
            names[j], keys[j], x, y[j], log->n, html_palette[j], SVG_LINE | SVG_DOTS, NULL, NULL};
    }
    const struct svg_chart c = {
        title, {"epoch", 0, 1, 0, 0, 0}, {ylabel, logy, 0, 0, 0, 0}, s, n, 0, 0};
    svg_chart(f, &c);
    free(x);
}

static int has_val(const struct report_log *log) {
    for (int i = 0; i < log->n; i++)
        if (log->e[i].val_acc >= 0) return 1;
    return 0;
}

static void curves(FILE *f, const struct report_src *r) {
    section(f, "curves", "Training curves");
    if (!r->log) {
        para(f, "note",
             "No training log was given: `mnist train --log FILE` writes one, and "
             "`mnist report --log FILE` draws it here.");
        return;
    }
    const struct report_log *log = r->log;
    fputs("<p class=\"note\">From ", f);
    html_textf(f, "%s: %d epoch%s. ", r->log_path, log->n, log->n == 1 ? "" : "s");
    html_text(f, "Training loss and accuracy are running means over each epoch, with "
                 "dropout, augmentation and label smoothing as the recipe has them; validation "
                 "ones are measured after each epoch, without them.");
    fputs("</p>\n", f);
    if (log->n == 0) {
        para(f, "note", "The log holds no epochs yet.");
        return;
    }
    static const char *const names[] = {"train", "validation"};
    static const char *const lk[] = {"train_loss", "val_loss"}, *const ak[] = {"train_acc",
                                                                               "val_acc"};
    const size_t lf[] = {offsetof(struct report_epoch, train_loss),
                         offsetof(struct report_epoch, val_loss)};
    const size_t af[] = {offsetof(struct report_epoch, train_acc),
                         offsetof(struct report_epoch, val_acc)};
    const size_t rf[] = {offsetof(struct report_epoch, lr)};
    static const char *const rn[] = {"learning rate"}, *const rk[] = {"lr"};
    const int nv = has_val(log) ? 2 : 1;
    fputs("<div class=\"row\">\n", f);
    curve(f, log, "Loss per epoch", "cross-entropy loss", 1, nv, names, lk, lf, 0);
    curve(f, log, "Accuracy per epoch", "accuracy (%)", 100, nv, names, ak, af, 0);
    curve(f, log, "Learning rate per epoch", "learning rate", 1, 1, rn, rk, rf, 0);
    fputs("</div>\n", f);
    int best = -1;
    for (int i = 0; i < log->n; i++)
        if (log->e[i].best) best = i;
    if (best >= 0 && log->e[best].val_acc >= 0)
        fprintf(f,
                "<p>The model kept is the one of epoch %d, the best by validation accuracy "
                "(%.2f%%).</p>\n",
                log->e[best].epoch, 100.0 * log->e[best].val_acc);
}

/* White to dark blue; t in [0, 1]. */
static void shade(double t, char out[8]) {
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    snprintf(out, 8, "#%02x%02x%02x", (int)lround(255 - t * (255 - 8)),
             (int)lround(255 - t * (255 - 48)), (int)lround(255 - t * (255 - 107)));
}

/* A k x k heatmap; colour = sqrt(v / vmax), so small counts off the diagonal still show. */
static void heatmap(FILE *f, const struct cnn_model *m, double (*v)[CNN_MAX_CLASSES], int k,
                    double vmax, int percent, const char *title) {
    const int cell = 32, left = 48, top = 40, w = left + k * cell + 86, h = top + k * cell + 12;
    fprintf(f,
            "<svg class=\"chart heatmap\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 "
            "%d %d\" width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"",
            w, h, w, h);
    html_text(f, title);
    fputs("\">\n<title>", f);
    html_text(f, title);
    fprintf(f,
            "</title>\n<text x=\"%d\" y=\"14\" text-anchor=\"middle\">predicted</text>\n"
            "<text transform=\"translate(14 %d) rotate(-90)\" text-anchor=\"middle\">true"
            "</text>\n",
            left + k * cell / 2, top + k * cell / 2);
    for (int i = 0; i < k; i++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", left + i * cell + cell / 2,
                top - 6);
        html_text(f, cnn_model_class_name(m, i));
        fprintf(f,
                "</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\" "
                "dominant-baseline=\"middle\">",
                left - 6, top + i * cell + cell / 2);
        html_text(f, cnn_model_class_name(m, i));
        fputs("</text>\n", f);
    }
    for (int t = 0; t < k; t++)
        for (int p = 0; p < k; p++) {
            const double s = vmax > 0 ? sqrt(v[t][p] / vmax) : 0;
            char fill[8];
            shade(s, fill);
            fprintf(f,
                    "<rect class=\"cell\" data-true=\"%d\" data-pred=\"%d\" x=\"%d\" y=\"%d\" "
                    "width=\"%d\" height=\"%d\" fill=\"%s\" stroke=\"#fff\"/>",
                    t, p, left + p * cell, top + t * cell, cell, cell, fill);
            if (v[t][p] > 0)
                fprintf(f,
                        "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" "
                        "dominant-baseline=\"middle\" style=\"fill:%s;font-size:11px\">"
                        "%.*f</text>",
                        left + p * cell + cell / 2, top + t * cell + cell / 2,
                        s > 0.55 ? "#fff" : "#222", percent && v[t][p] < 99.95 ? 1 : 0, v[t][p]);
            fputc('\n', f);
        }
    /* the legend: the scale from 0 to vmax, ticks where sqrt puts them */
    const int lx = left + k * cell + 14;
    for (int i = 0; i < 20; i++) {
        char fill[8];
        shade(1.0 - (i + 0.5) / 20, fill);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"%d\" fill=\"%s\"/>", lx,
                top + i * k * cell / 20, k * cell / 20 + 1, fill);
    }
    static const double marks[] = {1, 0.25, 0.05, 0.01, 0};
    for (int i = 0; i < 5; i++)
        fprintf(f,
                "\n<text class=\"legend\" x=\"%d\" y=\"%.1f\" dominant-baseline=\"middle\">"
                "%.*f%s</text>",
                lx + 18, top + (1 - sqrt(marks[i])) * k * cell, percent && marks[i] > 0 ? 1 : 0,
                vmax * marks[i], percent ? "%" : "");
    fputs("\n</svg>\n", f);
}

/* The five largest cells off the diagonal, in words. */
static void confused_pairs(FILE *f, const struct cnn_model *model, const struct cnn_metrics *mt) {
    long done[CNN_MAX_CLASSES][CNN_MAX_CLASSES] = {{0}};
    fputs("<p>Most frequent confusions (true &#x2192; predicted):", f);
    for (int j = 0, any = 0; j < 5; j++) {
        int bt = -1, bp = -1;
        for (int t = 0; t < mt->n_classes; t++)
            for (int p = 0; p < mt->n_classes; p++)
                if (t != p && !done[t][p] && mt->confusion[t][p] > 0 &&
                    (bt < 0 || mt->confusion[t][p] > mt->confusion[bt][bp]))
                    bt = t, bp = p;
        if (bt < 0) {
            if (!any) fputs(" none", f);
            break;
        }
        done[bt][bp] = 1, any = 1;
        html_textf(f, "%s %s \xe2\x86\x92 %s %ld time%s", j ? "," : "",
                   cnn_model_class_name(model, bt), cnn_model_class_name(model, bp),
                   mt->confusion[bt][bp], mt->confusion[bt][bp] == 1 ? "" : "s");
    }
    fputs(".</p>\n", f);
}

static void confusion(FILE *f, const struct report_src *r) {
    section(f, "confusion", "Confusion matrix");
    if (!r->ev) {
        para(f, "note", r->no_eval_reason);
        return;
    }
    const struct cnn_metrics *mt = &r->ev->m;
    const int k = mt->n_classes;
    double counts[CNN_MAX_CLASSES][CNN_MAX_CLASSES], rows[CNN_MAX_CLASSES][CNN_MAX_CLASSES];
    double cmax = 0;
    for (int t = 0; t < k; t++)
        for (int p = 0; p < k; p++) {
            counts[t][p] = (double)mt->confusion[t][p];
            rows[t][p] = mt->support[t] ? 100.0 * counts[t][p] / mt->support[t] : 0;
            if (counts[t][p] > cmax) cmax = counts[t][p];
        }
    para(f, "note",
         "Rows are the true class, columns the prediction; the diagonal is what the "
         "model got right. Left: counts. Right: each row as a percentage of its "
         "class, so classes of different sizes compare. Colours follow the square "
         "root of the value, so that rare confusions still show.");
    fputs("<div class=\"row\">\n", f);
    heatmap(f, r->model, counts, k, cmax, 0, "Confusion matrix, counts");
    heatmap(f, r->model, rows, k, 100, 1, "Confusion matrix, percent of each true class");
    fputs("</div>\n", f);
    confused_pairs(f, r->model, mt);
}

/* Precision, recall and F1 of each class as horizontal bars, from lo (below the smallest
 * value, a round number) to 1. */
static void class_bars(FILE *f, const struct cnn_model *model, const struct cnn_metrics *mt) {
    const int k = mt->n_classes, row = 34, left = 50, top = 30, pw = 380;
    const int w = left + pw + 20, h = top + k * row + 30;
    double mn = 1;
    for (int c = 0; c < k; c++) {
        const double v[3] = {mt->precision[c], mt->recall[c], mt->f1[c]};
        for (int j = 0; j < 3; j++) mn = v[j] < mn ? v[j] : mn;
    }
    const double step = mn > 0.9 ? 0.01 : mn > 0.5 ? 0.1 : 0.2;
    const double lo = fmax(0, floor((mn - step / 2) / step) * step);
    fprintf(f,
            "<svg class=\"chart bars\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d "
            "%d\" width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"Precision, recall and "
            "F1 per class\">\n<title>Precision, recall and F1 per class</title>\n",
            w, h, w, h);
    static const char *const names[3] = {"precision", "recall", "F1"};
    for (int j = 0; j < 3; j++)
        fprintf(f,
                "<rect x=\"%d\" y=\"8\" width=\"12\" height=\"12\" fill=\"%s\"/><text "
                "class=\"legend\" x=\"%d\" y=\"18\">%s</text>\n",
                left + j * 110, html_palette[j], left + j * 110 + 16, names[j]);
    for (double t = lo; t <= 1 + 1e-9; t += step) {
        const double x = left + (t - lo) / (1 - lo) * pw;
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#e5e5e5\"/>"
                "<text class=\"xtick\" data-v=\"%.2f\" x=\"%.1f\" y=\"%d\" "
                "text-anchor=\"middle\">%.2f</text>\n",
                x, x, top, top + k * row, t, x, top + k * row + 16, t);
    }
    for (int c = 0; c < k; c++) {
        const double v[3] = {mt->precision[c], mt->recall[c], mt->f1[c]};
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" dominant-baseline=\"middle\">",
                left - 8, top + c * row + row / 2);
        html_text(f, cnn_model_class_name(model, c));
        fputs("</text>\n", f);
        for (int j = 0; j < 3; j++)
            fprintf(f,
                    "<rect data-class=\"%d\" data-v=\"%.6f\" x=\"%d\" y=\"%d\" width=\"%.2f\" "
                    "height=\"9\" fill=\"%s\"><title>%s %.4f</title></rect>\n",
                    c, v[j], left, top + c * row + 3 + j * 9, fmax(0, (v[j] - lo) / (1 - lo) * pw),
                    html_palette[j], names[j], v[j]);
    }
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">(the axis starts at %.2f)</text>\n"
            "</svg>\n",
            left + pw / 2, h - 2, lo);
}

static void per_class(FILE *f, const struct report_src *r) {
    section(f, "per-class", "Per class: precision, recall, F1");
    if (!r->ev) {
        para(f, "note", r->no_eval_reason);
        return;
    }
    const struct cnn_metrics *mt = &r->ev->m;
    para(f, "note",
         "Precision: of the images predicted as the class, the share that are. "
         "Recall: of the images of the class, the share found. F1: their harmonic "
         "mean.");
    fputs("<div class=\"row\">\n", f);
    class_bars(f, r->model, mt);
    fputs("<table><tr><th class=\"l\">class</th><th>precision</th><th>recall</th><th>F1</th>"
          "<th>support</th></tr>\n",
          f);
    for (int c = 0; c < mt->n_classes; c++) {
        fputs("<tr><td class=\"l\">", f);
        html_text(f, cnn_model_class_name(r->model, c));
        fprintf(f, "</td><td>%.4f%s</td><td>%.4f</td><td>%.4f</td><td>%ld</td></tr>\n",
                mt->precision[c], mt->never_predicted[c] ? " (never predicted)" : "", mt->recall[c],
                mt->f1[c], mt->support[c]);
    }
    fprintf(f,
            "<tr><th class=\"l\">macro</th><td>%.4f</td><td>%.4f</td><td>%.4f</td><td>%ld"
            "</td></tr>\n<tr><th class=\"l\">weighted</th><td>%.4f</td><td>%.4f</td><td>%.4f"
            "</td><td>%ld</td></tr>\n</table></div>\n",
            mt->macro_p, mt->macro_r, mt->macro_f1, mt->n, mt->weighted_p, mt->weighted_r,
            mt->weighted_f1, mt->n);
}

/* An image of ev in a tile with a caption and, smaller, its title; bad marks a mistake. */
static void tile(FILE *f, const struct report_eval *ev, const uint8_t *img, const char *caption,
                 const char *title, int bad) {
    fprintf(f, "<div class=\"tile%s\">", bad ? " bad" : "");
    html_gray_img(f, img, ev->w, ev->h, 56, caption, title);
    fputs("<br/>", f);
    html_text(f, caption);
    fputs("<br/><small>", f);
    html_text(f, title);
    fputs("</small></div>\n", f);
}

static void mistakes(FILE *f, const struct report_src *r) {
    section(f, "mistakes", "Most confident mistakes");
    if (!r->ev) {
        para(f, "note", r->no_eval_reason);
        return;
    }
    const struct report_eval *ev = r->ev;
    fputs("<p class=\"note\">", f);
    html_textf(f,
               "The %d mistakes the model was surest of, out of %ld. Each is labelled true "
               "\xe2\x86\x92 predicted, with the probability the model gave its prediction; "
               "the number under it is the image's index in its file.",
               ev->n_mistakes, ev->m.n - ev->m.correct);
    fputs("</p>\n<div class=\"grid\">\n", f);
    for (int i = 0; i < ev->n_mistakes; i++) {
        const struct report_mistake *mk = &ev->mistakes[i];
        char cap[160], title[64];
        snprintf(cap, sizeof cap, "%s \xe2\x86\x92 %s %.0f%%",
                 cnn_model_class_name(r->model, mk->label),
                 cnn_model_class_name(r->model, mk->predicted), 100.0 * mk->confidence);
        snprintf(title, sizeof title, "image %d", mk->index);
        tile(f, ev, ev->images + (size_t)i * ev->h * ev->w, cap, title, 1);
    }
    if (ev->n_mistakes == 0) fputs("<p>None: every image was classified right.</p>\n", f);
    fputs("</div>\n", f);
}

static void examples(FILE *f, const struct report_src *r) {
    section(f, "examples", "Correct examples and mean image per class");
    if (!r->ev) {
        para(f, "note", r->no_eval_reason);
        return;
    }
    const struct report_eval *ev = r->ev;
    para(f, "note",
         "Per class: the mean of all its images (first, on the left), then the first "
         "images of the class that the model classified right.");
    const size_t hw = (size_t)ev->h * ev->w;
    const uint8_t *at = ev->images + (size_t)ev->n_mistakes * hw;
    for (int c = 0; c < ev->m.n_classes; c++) {
        fputs("<div class=\"cls\"><span>", f);
        html_text(f, cnn_model_class_name(r->model, c));
        fputs("</span>", f);
        html_gray_img(f, ev->mean + (size_t)c * hw, ev->w, ev->h, 48, "mean image",
                      "mean of the class");
        fputs(" ", f);
        for (int j = 0; j < ev->n_examples[c]; j++) {
            char title[32];
            snprintf(title, sizeof title, "image %d", ev->examples[c][j]);
            html_gray_img(f, at, ev->w, ev->h, 48, "example", title);
            at += hw;
        }
        fputs("</div>\n", f);
    }
}

static void filters(FILE *f, const struct cnn_model *m) {
    section(f, "filters", "First-layer weights");
    int n, w, h;
    const char *kind = NULL;
    uint8_t *img = report_first_filters(m, &n, &w, &h, &kind);
    if (!img) {
        para(f, "note",
             "The first layer with weights is neither a convolution on the image nor "
             "a dense layer on its pixels (or has too many units to show).");
        return;
    }
    fputs("<p class=\"note\">", f);
    if (!strcmp(kind, "conv"))
        html_textf(f, "The %d filters of the first convolution layer", n);
    else
        html_textf(f, "The weights of each of the %d units of the first dense layer, as images", n);
    html_text(f, ", each scaled from its own smallest weight (black) to its largest (white).");
    fputs("</p>\n<div class=\"grid\">", f);
    for (int i = 0; i < n; i++) {
        char title[32];
        snprintf(title, sizeof title, "%s %d", !strcmp(kind, "conv") ? "filter" : "unit", i);
        html_gray_img(f, img + (size_t)i * w * h, w, h, w < 10 ? 40 : 56, title, title);
    }
    fputs("</div>\n", f);
    free(img);
}

void report_html(FILE *f, const struct report_src *r) {
    char title[300];
    snprintf(title, sizeof title, "Report: %s", base_name(r->model_path));
    html_begin(f, title);
    fputs("<h1>", f);
    html_text(f, title);
    fputs("</h1>\n<p class=\"sub\">Model file <code>", f);
    html_text(f, r->model_path);
    fputs("</code></p>\n<p class=\"split\">", f);
    if (r->ev)
        html_textf(f, "Evaluated on %s.", r->ev->source);
    else
        html_text(f, r->no_eval_reason);
    fputs("</p>\n<div class=\"nav\"><a href=\"#summary\">summary</a><a href=\"#model\">model</a>"
          "<a href=\"#curves\">curves</a><a href=\"#confusion\">confusion</a>"
          "<a href=\"#per-class\">per class</a><a href=\"#mistakes\">mistakes</a>"
          "<a href=\"#examples\">examples</a><a href=\"#filters\">filters</a></div>\n",
          f);
    summary(f, r);
    model_section(f, r->model);
    curves(f, r);
    confusion(f, r);
    per_class(f, r);
    mistakes(f, r);
    examples(f, r);
    filters(f, r->model);
    html_end(f);
}
