/*
 * report_compare.c - the page and the JSON of `mnist compare`: the leaderboard (each entry's
 * runs over its seeds as mean and standard deviation), the plot of validation error against
 * training cost on log scales with the Pareto front, the entries and every run.
 *
 * Validation accuracy alone ranks the entries and decides the Pareto front: an entry is on the
 * front when no other entry is at most as costly with at least as high a validation accuracy
 * (and better in one of the two). Test accuracy is drawn and listed beside it, for information.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "html.h"
#include "report.h"

void compare_recipe_text(const struct cnn_train_cfg *c, char *buf, size_t n) {
    static const char *const optim[] = {"SGD", "Adam", "AdamW"};
    static const char *const sched[] = {"constant", "step", "cosine", "one-cycle"};
    snprintf(buf, n,
             "%d epoch%s, batch %d, %s%s lr %g (%s), weight decay %g, label smoothing "
             "%g, augmentation %s",
             c->epochs, c->epochs == 1 ? "" : "s", c->batch, optim[c->optim.kind],
             c->optim.kind == CNN_OPT_SGD && c->optim.nesterov ? " (Nesterov)" : "",
             (double)c->sched.lr, sched[c->sched.kind], (double)c->optim.weight_decay,
             (double)c->label_smoothing, cli_augment_names[c->augment]);
    const size_t len = strlen(buf);
    if (c->ema > 0.0f && len < n)
        snprintf(buf + len, n - len, ", weight average %g", (double)c->ema);
}

struct board_row {
    int entry, runs, pareto;
    double val_mean, val_std, test_mean, test_std;
    double seconds, images_per_s, train_flops, mflops, cost;
    size_t params;
};

static void mean_std(const double *v, int n, double *mean, double *std) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = n ? s / n : NAN;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *std = n > 1 ? sqrt(q / (n - 1)) : 0; /* sample standard deviation */
}

/* Entry e's runs into one row. */
static void board_entry(const struct compare_page *p, int e, struct board_row *b) {
    double val[128], test[128], secs = 0, ips = 0;
    int n = 0, timed = 0;
    memset(b, 0, sizeof *b);
    b->entry = e;
    for (int i = 0; i < p->n_runs && n < 128; i++) {
        const struct compare_run *r = &p->runs[i];
        if (r->entry != e) continue;
        val[n] = r->val_acc, test[n] = r->test_acc;
        if (r->seconds >= 0) secs += r->seconds, timed++;
        ips += r->images_per_s;
        b->params = r->params, b->mflops = r->mflops, b->train_flops = r->train_flops;
        n++;
    }
    b->runs = n;
    mean_std(val, n, &b->val_mean, &b->val_std);
    mean_std(test, n, &b->test_mean, &b->test_std);
    b->seconds = timed == n && n ? secs / n : NAN;
    b->images_per_s = n ? ips / n : NAN;
    b->cost = p->x_seconds ? b->seconds : b->train_flops;
}

static int by_val(const void *a, const void *b) {
    const double x = ((const struct board_row *)a)->val_mean;
    const double y = ((const struct board_row *)b)->val_mean;
    return (x < y) - (x > y);
}

/* The leaderboard: entries with at least one run, best validation accuracy first, the
 * Pareto front marked. Returns the number of rows. */
static int board(const struct compare_page *p, struct board_row *rows) {
    int n = 0;
    for (int e = 0; e < p->n_entries; e++) {
        board_entry(p, e, &rows[n]);
        if (rows[n].runs > 0) n++;
    }
    qsort(rows, (size_t)n, sizeof *rows, by_val);
    for (int i = 0; i < n; i++) {
        rows[i].pareto = isfinite(rows[i].cost) && rows[i].val_mean >= 0; /* -1: unknown */
        for (int j = 0; j < n && rows[i].pareto; j++)
            if (j != i && isfinite(rows[j].cost) && rows[j].cost <= rows[i].cost &&
                rows[j].val_mean >= rows[i].val_mean &&
                (rows[j].cost < rows[i].cost || rows[j].val_mean > rows[i].val_mean))
                rows[i].pareto = 0;
    }
    return n;
}

/* A count with SI prefix: 1.2M, 35G. */
static void si(double v, char *buf, size_t n) {
    static const char prefix[] = " kMGTPE";
    int p = 0;
    if (!isfinite(v)) {
        snprintf(buf, n, "-");
        return;
    }
    while (fabs(v) >= 1000 && p < 6) v /= 1000, p++;
    snprintf(buf, n, p ? "%.3g%c" : "%.3g", v, prefix[p]);
}

static void acc_cell(FILE *f, double mean, double std, int runs) {
    if (!(mean >= 0))
        fputs("<td>-</td>", f); /* a model that records no validation accuracy */
    else if (runs > 1)
        fprintf(f, "<td>%.2f%% &#xB1; %.2f</td>", 100.0 * mean, 100.0 * std);
    else
        fprintf(f, "<td>%.2f%%</td>", 100.0 * mean);
}

static void leaderboard(FILE *f, const struct compare_page *p, const struct board_row *rows,
                        int n) {
    fputs("<table class=\"leaderboard\"><tr><th>#</th><th class=\"l\">entry</th>"
          "<th>parameters</th><th>MFLOPs per image</th><th>training FLOPs</th>"
          "<th>training time</th><th>images/s</th><th>validation accuracy</th>"
          "<th>test accuracy (information)</th><th>Pareto front</th></tr>\n",
          f);
    for (int i = 0; i < n; i++) {
        const struct board_row *b = &rows[i];
        char fl[16], ps[16], ips[16];
        si(b->train_flops, fl, sizeof fl);
        si((double)b->params, ps, sizeof ps);
        si(b->images_per_s, ips, sizeof ips);
        fputs("<tr data-entry=\"", f);
        html_text(f, p->entries[b->entry].name);
        fprintf(f, "\"%s><td>%d</td><td class=\"l\">", i == 0 ? " class=\"best\"" : "", i + 1);
        html_text(f, p->entries[b->entry].name);
        fprintf(f, "</td><td>%s</td><td>%.3f</td><td>%s</td>", ps, b->mflops, fl);
        if (isfinite(b->seconds))
            fprintf(f, "<td>%.1f s</td>", b->seconds);
        else
            fputs("<td>-</td>", f);
        fprintf(f, "<td>%s</td>", ips);
        acc_cell(f, b->val_mean, b->val_std, b->runs);
        acc_cell(f, b->test_mean, b->test_std, b->runs);
        fprintf(f, "<td class=\"front\">%s</td></tr>\n", b->pareto ? "&#x2713;" : "");
    }
    fputs("</table>\n", f);
}

/* Validation error against cost, log-log: every entry, the front, and test error hollow. */
static void cost_plot(FILE *f, const struct compare_page *p, const struct board_row *rows, int n) {
    double *v = malloc(sizeof(double) * (size_t)(n + 1) * 5);
    char(*tip)[200] = malloc(sizeof *tip * (size_t)(n + 1));
    const char **tips = malloc(sizeof *tips * (size_t)(n + 1) * 2);
    if (!v || !tip || !tips) goto done;
    double *x = v, *val = v + n + 1, *test = v + 2 * (n + 1), *fx = v + 3 * (n + 1),
           *fy = v + 4 * (n + 1);
    const char **labels = tips + n + 1;
    int nf = 0;
    for (int i = 0; i < n; i++) { /* rows are by accuracy; the front is drawn by cost */
        x[i] = rows[i].cost;
        val[i] = rows[i].val_mean >= 0 ? 100.0 * (1 - rows[i].val_mean) : NAN;
        test[i] = 100.0 * (1 - rows[i].test_mean);
        labels[i] = p->entries[rows[i].entry].name;
        snprintf(tip[i], sizeof tip[i], "%s: validation error %.2f%%, test error %.2f%%", labels[i],
                 val[i], test[i]);
        tips[i] = tip[i];
    }
    for (int i = 0; i < n; i++) {
        if (!rows[i].pareto) continue;
        int at = nf++;
        while (at > 0 && fx[at - 1] > x[i]) fx[at] = fx[at - 1], fy[at] = fy[at - 1], at--;
        fx[at] = x[i], fy[at] = val[i];
    }
    const struct svg_series s[3] = {
        {"Pareto front (validation)", "front", fx, fy, nf, html_palette[3], SVG_LINE | SVG_DASHED,
         NULL, NULL},
        {"test error (information only)", "test", x, test, n, html_palette[6], SVG_HOLLOW, tips,
         NULL},
        {"validation error", "val", x, val, n, html_palette[0], SVG_DOTS, tips, labels},
    };
    const struct svg_chart c = {
        "Validation error against training cost",
        {p->x_seconds ? "training time (s)" : "training FLOPs", 1, 0, !p->x_seconds, 0, 0},
        {"error (%)", 1, 0, 0, 0, 0},
        s,
        3,
        760,
        420};
    svg_chart(f, &c);
done:
    free(v);
    free(tip);
    free(tips);
}

static void entries_table(FILE *f, const struct compare_page *p) {
    fputs("<table><tr><th class=\"l\">entry</th><th class=\"l\">spec</th>"
          "<th class=\"l\">own options</th><th class=\"l\">recipe</th></tr>\n",
          f);
    for (int e = 0; e < p->n_entries; e++) {
        const struct compare_entry *en = &p->entries[e];
        fputs("<tr><td class=\"l\">", f);
        html_text(f, en->name);
        fputs("</td><td class=\"l\"><code>", f);
        html_text(f, en->spec);
        fputs("</code></td><td class=\"l\"><code>", f);
        html_text(f, en->options);
        fputs("</code></td><td class=\"l\">", f);
        char recipe[300];
        compare_recipe_text(&en->cfg, recipe, sizeof recipe);
        if (en->cfg.epochs > 0) html_text(f, recipe); /* trained models: their options say */
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void runs_table(FILE *f, const struct compare_page *p) {
    fputs("<table><tr><th class=\"l\">entry</th><th>seed</th><th>validation</th><th>test</th>"
          "<th>training time</th><th class=\"l\">model file</th></tr>\n",
          f);
    for (int i = 0; i < p->n_runs; i++) {
        const struct compare_run *r = &p->runs[i];
        fputs("<tr><td class=\"l\">", f);
        html_text(f, p->entries[r->entry].name);
        fprintf(f, "</td><td>%llu</td><td>%.2f%%</td><td>%.2f%%</td>", r->seed, 100.0 * r->val_acc,
                100.0 * r->test_acc);
        if (r->seconds >= 0)
            fprintf(f, "<td>%.1f s</td>", r->seconds);
        else
            fputs("<td>-</td>", f);
        fputs("<td class=\"l\"><code>", f);
        html_text(f, r->model);
        fputs("</code></td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

void compare_html(FILE *f, const void *page) {
    const struct compare_page *p = page;
    struct board_row *rows = malloc(sizeof *rows * (size_t)(p->n_entries + 1));
    if (!rows) return;
    const int n = board(p, rows);
    html_begin(f, "Architecture comparison");
    fputs("<h1>Architecture comparison</h1>\n<p class=\"sub\">", f);
    html_textf(f, "%d entries, %d runs. Data: %s.", p->n_entries, p->n_runs, p->source);
    if (p->recipe[0]) html_textf(f, " Recipe: %s.", p->recipe);
    fputs("</p>\n<p class=\"split\">Ranked by validation accuracy, which alone picks anything "
          "here (the best entry, the Pareto front). Test accuracy is shown for information: "
          "choosing by it would make it one more validation set.</p>\n",
          f);
    fputs("<h2 id=\"leaderboard\">Leaderboard</h2>\n", f);
    leaderboard(f, p, rows, n);
    fputs("<p class=\"note\">Training FLOPs: about three times the forward FLOPs per image "
          "(forward and backward), times the training images seen. Training time: wall time of "
          "the whole training, validation after each epoch included. Images/s: inference on "
          "the test set. With several seeds: mean &#xB1; sample standard deviation.</p>\n",
          f);
    fputs("<h2 id=\"plot\">Accuracy against cost</h2>\n", f);
    cost_plot(f, p, rows, n);
    fputs("<p class=\"note\">Both axes are logarithmic. The dashed line joins the Pareto front "
          "by validation error: no other entry is cheaper and better. Hollow circles are the "
          "test error of the same entries.</p>\n",
          f);
    fputs("<h2 id=\"entries\">Entries</h2>\n", f);
    entries_table(f, p);
    fputs("<h2 id=\"runs\">Runs</h2>\n", f);
    runs_table(f, p);
    html_end(f);
    free(rows);
}

void compare_json(FILE *f, const void *page) {
    const struct compare_page *p = page;
    struct board_row *rows = malloc(sizeof *rows * (size_t)(p->n_entries + 1));
    if (!rows) return;
    const int n = board(p, rows);
    fputs("{\"source\":", f);
    cli_json_str(f, p->source);
    fputs(",\"recipe\":", f);
    cli_json_str(f, p->recipe);
    fprintf(f, ",\"cost\":\"%s\",\"leaderboard\":[", p->x_seconds ? "seconds" : "flops");
    for (int i = 0; i < n; i++) {
        const struct board_row *b = &rows[i];
        fprintf(f, "%s{\"rank\":%d,\"entry\":", i ? ",\n" : "\n", i + 1);
        cli_json_str(f, p->entries[b->entry].name);
        fputs(",\"spec\":", f);
        cli_json_str(f, p->entries[b->entry].spec);
        fprintf(f, ",\"runs\":%d,\"params\":%zu", b->runs, b->params);
        report_json_num(f, "mflops", b->mflops);
        report_json_num(f, "train_flops", b->train_flops);
        report_json_num(f, "seconds", b->seconds);
        report_json_num(f, "images_per_s", b->images_per_s);
        report_json_num(f, "val_acc", b->val_mean);
        report_json_num(f, "val_acc_std", b->val_std);
        report_json_num(f, "test_acc", b->test_mean);
        report_json_num(f, "test_acc_std", b->test_std);
        fprintf(f, ",\"pareto\":%s}", b->pareto ? "true" : "false");
    }
    fputs("],\"runs\":[", f);
    for (int i = 0; i < p->n_runs; i++) {
        const struct compare_run *r = &p->runs[i];
        fprintf(f, "%s{\"entry\":", i ? ",\n" : "\n");
        cli_json_str(f, p->entries[r->entry].name);
        fprintf(f, ",\"seed\":%llu", r->seed);
        report_json_num(f, "val_acc", r->val_acc);
        report_json_num(f, "test_acc", r->test_acc);
        report_json_num(f, "seconds", r->seconds);
        fputs(",\"model\":", f);
        cli_json_str(f, r->model);
        fputc('}', f);
    }
    fputs("]}\n", f);
    free(rows);
}
