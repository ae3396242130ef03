/*
 * report_json.c - the data of the report page as one JSON object (`mnist report --json`), and
 * the atomic writing of both.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report.h"

void report_json_num(FILE *f, const char *key, double v) {
    fprintf(f, ",\"%s\":", key);
    if (isfinite(v) && v >= 0)
        fprintf(f, "%.6g", v);
    else
        fputs("null", f); /* -1 or NaN: not known */
}

static void json_log(FILE *f, const struct report_src *r) {
    if (!r->log) {
        fputs("null", f);
        return;
    }
    fputs("{\"path\":", f);
    cli_json_str(f, r->log_path);
    fputs(",\"epochs\":[", f);
    for (int i = 0; i < r->log->n; i++) {
        const struct report_epoch *e = &r->log->e[i];
        fprintf(f, "%s{\"epoch\":%d,\"train_loss\":%.6g,\"train_acc\":%.6g,\"lr\":%.6g",
                i ? "," : "", e->epoch, e->train_loss, e->train_acc, e->lr);
        report_json_num(f, "val_loss", e->val_loss);
        report_json_num(f, "val_acc", e->val_acc);
        report_json_num(f, "seconds", e->seconds);
        fprintf(f, ",\"best\":%s}", e->best ? "true" : "false");
    }
    fputs("]}", f);
}

static void json_image(FILE *f, const uint8_t *p, size_t n) {
    fputc('[', f);
    for (size_t q = 0; q < n; q++) fprintf(f, "%s%d", q ? "," : "", p[q]);
    fputc(']', f);
}

static void json_classes(FILE *f, const struct report_eval *ev) {
    const struct cnn_metrics *m = &ev->m;
    fputs(",\"confusion\":[", f);
    for (int t = 0; t < m->n_classes; t++) {
        fprintf(f, "%s[", t ? "," : "");
        for (int p = 0; p < m->n_classes; p++)
            fprintf(f, "%s%ld", p ? "," : "", m->confusion[t][p]);
        fputc(']', f);
    }
    fputs("],\"per_class\":[", f);
    for (int c = 0; c < m->n_classes; c++) {
        fprintf(f,
                "%s{\"precision\":%.6f,\"recall\":%.6f,\"f1\":%.6f,\"support\":%ld,"
                "\"examples\":[",
                c ? "," : "", m->precision[c], m->recall[c], m->f1[c], m->support[c]);
        for (int j = 0; j < ev->n_examples[c]; j++)
            fprintf(f, "%s%d", j ? "," : "", ev->examples[c][j]);
        fputs("],\"mean_image\":", f);
        json_image(f, ev->mean + (size_t)c * ev->h * ev->w, (size_t)ev->h * ev->w);
        fputc('}', f);
    }
    fprintf(f, "],\"macro_f1\":%.6f,\"weighted_f1\":%.6f", m->macro_f1, m->weighted_f1);
}

static void json_eval(FILE *f, const struct report_eval *ev) {
    if (!ev) {
        fputs("null", f);
        return;
    }
    fputs("{\"split\":", f);
    cli_json_str(f, ev->split);
    fputs(",\"source\":", f);
    cli_json_str(f, ev->source);
    fprintf(f,
            ",\"n\":%d,\"image_h\":%d,\"image_w\":%d,\"correct\":%ld,\"accuracy\":%.6f,"
            "\"mean_loss\":%.6f,\"images_per_s\":%.1f",
            ev->n, ev->h, ev->w, ev->m.correct, ev->m.accuracy, ev->mean_loss, ev->images_per_s);
    json_classes(f, ev);
    fputs(",\"mistakes\":[", f);
    for (int i = 0; i < ev->n_mistakes; i++)
        fprintf(f, "%s{\"index\":%d,\"label\":%d,\"predicted\":%d,\"confidence\":%.6f}",
                i ? "," : "", ev->mistakes[i].index, ev->mistakes[i].label,
                ev->mistakes[i].predicted, (double)ev->mistakes[i].confidence);
    fputs("]}", f);
}

static void json_filters(FILE *f, const struct cnn_model *m) {
    int n, w, h;
    const char *kind;
    uint8_t *img = report_first_filters(m, &n, &w, &h, &kind);
    if (!img) {
        fputs("null", f);
        return;
    }
    fprintf(f, "{\"layer\":\"%s\",\"w\":%d,\"h\":%d,\"images\":[", kind, w, h);
    for (int i = 0; i < n; i++) {
        if (i) fputc(',', f);
        json_image(f, img + (size_t)i * w * h, (size_t)w * h);
    }
    fputs("]}", f);
    free(img);
}

void report_json(FILE *f, const struct report_src *r) {
    fputs("{\"model\":", f);
    cli_json_str(f, r->model_path);
    fputs(",\"network\":", f);
    cli_json_summary(f, r->model);
    fputs(",\"meta\":", f);
    cli_json_meta(f, r->model);
    fputs(",\"log\":", f);
    json_log(f, r);
    fputs(",\"evaluation\":", f);
    json_eval(f, r->ev);
    if (!r->ev) {
        fputs(",\"no_evaluation\":", f);
        cli_json_str(f, r->no_eval_reason);
    }
    fputs(",\"first_layer\":", f);
    json_filters(f, r->model);
    fputs("}\n", f);
}

int report_write_file(const char *flag, const char *path, void (*write)(FILE *, const void *),
                      const void *arg) {
    if (!strcmp(path, "-")) {
        write(stdout, arg);
        return fflush(stdout) == 0 ? 0 : (cli_err("%s: stdout: write failed", flag), 1);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        cli_err("%s: out of memory", flag);
        return 1;
    }
    write(f, arg);
    int rc = fclose(f) == 0 ? cli_write_atomic(path, text, len) : (errno = ENOMEM, -1);
    free(text);
    if (rc) cli_err("%s: %s: cannot write: %s", flag, path, strerror(errno));
    return rc != 0;
}

static void html_of(FILE *f, const void *r) {
    report_html(f, r);
}
static void json_of(FILE *f, const void *r) {
    report_json(f, r);
}

int report_write(const struct report_src *r, const char *out, const char *json_path) {
    if (out && report_write_file("--out", out, html_of, r)) return 1;
    return json_path && report_write_file("--json", json_path, json_of, r);
}
