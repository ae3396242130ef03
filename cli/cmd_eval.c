/*
 * cmd_eval.c - `mnist eval`: accuracy, per-class precision/recall/F1/support, macro and
 * weighted averages, the confusion matrix, the most confident mistakes, and speed.
 * Several --model flags make an ensemble: their probabilities are averaged. --split val
 * evaluates on the images the models' training held out, to choose (an ensemble, test-time
 * augmentation) without reading the test set.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report.h"

#define MAX_MODELS 16

static void usage(FILE *f) {
    fputs("usage: mnist eval --model FILE [--model FILE...] [OPTIONS]\n"
          "  --model FILE      a trained model; several average their probabilities\n"
          "  --data DIR        IDX files (default data/mnist)\n"
          "  --split NAME      test (default), train, or val: the images the models'\n"
          "                    training held out (found from their metadata)\n"
          "  --tta             test-time augmentation: average each model over views of every\n"
          "                    image (1-pixel shifts; mirrors for models trained with flip)\n"
          "  --mistakes N      list the N most confident mistakes (default 10)\n"
          "  --threads N       default: all cores\n"
          "  --limit N         only the first N images of the split\n"
          "  --probs FILE      write each image's probabilities, one line per image\n"
          "  --json            one JSON object with every figure\n",
          f);
}

struct mistake {
    int index, label, predicted;
    float confidence;
};

static int by_confidence(const void *a, const void *b) {
    const float x = ((const struct mistake *)a)->confidence;
    const float y = ((const struct mistake *)b)->confidence;
    return (x < y) - (x > y);
}

static void print_text(const struct cnn_metrics *m, const struct mistake *mk, int n_mk, double ips,
                       int n_models, int tta) {
    const int k = m->n_classes;
    printf("accuracy %.2f%% (%ld of %ld)%s%s\n\n", 100.0 * m->accuracy, m->correct, m->n,
           n_models > 1 ? " - ensemble" : "", tta ? " - test-time augmentation" : "");
    printf("class  precision  recall      f1  support\n");
    for (int c = 0; c < k; c++)
        printf("%5d  %9.4f  %6.4f  %6.4f  %7ld%s\n", c, m->precision[c], m->recall[c], m->f1[c],
               m->support[c], m->never_predicted[c] ? "  (never predicted: precision set to 0)"
                                                    : "");
    printf("macro     %6.4f  %6.4f  %6.4f  %7ld\n", m->macro_p, m->macro_r, m->macro_f1, m->n);
    printf("weighted  %6.4f  %6.4f  %6.4f  %7ld\n\n", m->weighted_p, m->weighted_r,
           m->weighted_f1, m->n);
    printf("confusion matrix (rows: true label, columns: predicted)\n      ");
    for (int c = 0; c < k; c++) printf("%6d", c);
    printf("\n");
    for (int t = 0; t < k; t++) {
        printf("%5d ", t);
        for (int c = 0; c < k; c++) printf("%6ld", m->confusion[t][c]);
        printf("\n");
    }
    if (n_mk) {
        printf("\nmost confident mistakes\n  index  true  predicted  confidence\n");
        for (int i = 0; i < n_mk; i++)
            printf("  %5d  %4d  %9d  %9.2f%%\n", mk[i].index, mk[i].label, mk[i].predicted,
                   100.0 * mk[i].confidence);
    }
    printf("\n%.0f images/s\n", ips);
}

static void print_json(const struct cnn_metrics *m, const struct mistake *mk, int n_mk, double ips,
                       char **models, int n_models, const char *split, int tta) {
    const int k = m->n_classes;
    printf("{\"split\":");
    cli_json_str(stdout, split);
    printf(",\"tta\":%s", tta ? "true" : "false");
    printf(",\"models\":[");
    for (int i = 0; i < n_models; i++) {
        if (i) printf(",");
        cli_json_str(stdout, models[i]);
    }
    printf("],\"n\":%ld,\"correct\":%ld,\"accuracy\":%.6f,\"per_class\":[", m->n, m->correct,
           m->accuracy);
    for (int c = 0; c < k; c++)
        printf("%s{\"label\":%d,\"precision\":%.6f,\"recall\":%.6f,\"f1\":%.6f,\"support\":%ld%s}",
               c ? "," : "", c, m->precision[c], m->recall[c], m->f1[c], m->support[c],
               m->never_predicted[c] ? ",\"note\":\"never predicted; precision set to 0\"" : "");
    printf("],\"macro\":{\"precision\":%.6f,\"recall\":%.6f,\"f1\":%.6f}", m->macro_p,
           m->macro_r, m->macro_f1);
    printf(",\"weighted\":{\"precision\":%.6f,\"recall\":%.6f,\"f1\":%.6f}", m->weighted_p,
           m->weighted_r, m->weighted_f1);
    printf(",\"confusion\":[");
    for (int t = 0; t < k; t++) {
        printf("%s[", t ? "," : "");
        for (int c = 0; c < k; c++) printf("%s%ld", c ? "," : "", m->confusion[t][c]);
        printf("]");
    }
    printf("],\"mistakes\":[");
    for (int i = 0; i < n_mk; i++)
        printf("%s{\"index\":%d,\"label\":%d,\"predicted\":%d,\"confidence\":%.6f}",
               i ? "," : "", mk[i].index, mk[i].label, mk[i].predicted,
               (double)mk[i].confidence);
    printf("],\"images_per_s\":%.1f}\n", ips);
}

/* One model's probabilities for every image of ds (averaged over its views with tta), in
 * batches of 256 on `threads` threads; the seconds it took are added to *secs. Prints the
 * error and returns 1 on failure. */
static int predict_model(const struct cnn_model *m, const char *path, const struct cnn_dataset *ds,
                         int threads, int tta, float *probs, double *secs) {
    struct cnn_ctx *ctx = NULL;
    int c, h, w, status = 1;
    cnn_model_input_shape(m, &c, &h, &w);
    if (c != 1 || h != ds->h || w != ds->w || cnn_model_n_classes(m) != ds->n_classes)
        cli_err("%s: expects %dx%dx%d inputs and %d classes; the data is 1x%dx%d with %d", path, c,
                h, w, cnn_model_n_classes(m), ds->h, ds->w, ds->n_classes);
    else if (cnn_ctx_new(m, 256, threads, &ctx))
        cli_err("%s: %s", path, cnn_errmsg());
    else {
        const double t0 = cli_now();
        if ((tta ? cnn_predict_u8_tta : cnn_predict_u8)(m, ctx, ds->images, ds->n, probs))
            cli_err("%s: %s", path, cnn_errmsg());
        else
            status = 0;
        *secs += cli_now() - t0;
    }
    cnn_ctx_free(ctx);
    return status;
}

struct eval_args {
    char *models[MAX_MODELS];
    int n_models, json, n_mistakes, threads, limit, tta;
    const char *data, *split, *probs_path;
};

/* One line per image: its probabilities (the models' mean), space-separated, to 9 digits, so
 * another runtime's output can be compared to ours. Written atomically. */
static int write_probs(const char *path, const float *p, int n, int k) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        cli_err("--probs: out of memory");
        return 1;
    }
    for (int i = 0; i < n; i++)
        for (int c = 0; c < k; c++)
            fprintf(f, "%.9g%c", (double)p[(size_t)i * k + c], c + 1 < k ? ' ' : '\n');
    const int rc = fclose(f) == 0 ? cli_write_atomic(path, text, len) : -1;
    free(text);
    if (rc != 0) cli_err("--probs: %s: cannot write: %s", path, strerror(errno));
    return rc != 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct eval_args *a) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"data", required_argument, 0, 'd'},
                                         {"split", required_argument, 0, 's'},
                                         {"mistakes", required_argument, 0, 'k'},
                                         {"threads", required_argument, 0, 't'},
                                         {"json", no_argument, 0, 'j'},
                                         {"limit", required_argument, 0, 'n'},
                                         {"probs", required_argument, 0, 'p'},
                                         {"tta", no_argument, 0, 'a'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int ch;
    memset(a, 0, sizeof *a);
    a->n_mistakes = 10;
    a->data = "data/mnist", a->split = "test";
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            if (a->n_models == MAX_MODELS) {
                cli_err("eval: at most %d models", MAX_MODELS);
                return 2;
            }
            a->models[a->n_models++] = optarg;
            break;
        case 'd': a->data = optarg; break;
        case 's':
            if (strcmp(optarg, "test") && strcmp(optarg, "train") && strcmp(optarg, "val")) {
                cli_err("--split: '%s' is not 'test', 'train' or 'val'", optarg);
                return 2;
            }
            a->split = optarg;
            break;
        case 'k':
            if (cli_int("--mistakes", optarg, 0, 100000, &a->n_mistakes)) return 2;
            break;
        case 't':
            if (cli_int("--threads", optarg, 0, 1024, &a->threads)) return 2;
            break;
        case 'j': a->json = 1; break;
        case 'a':
            a->tta = 1;
            break;
        case 'n':
            if (cli_int("--limit", optarg, 1, 100000000, &a->limit)) return 2;
            break;
        case 'p':
            if (cli_check_replaced_output("--probs", optarg)) return 2;
            a->probs_path = optarg;
            break;
        case 'h': usage(stdout); return 0;
        default: cli_bad_option(argc, argv, ch); cli_usage_hint("eval"); return 2;
        }
    }
    if (!a->n_models || optind < argc) {
        cli_err(a->n_models ? "eval: unexpected argument '%s'" : "eval: --model is required%s",
                a->n_models ? argv[optind] : "");
        cli_usage_hint("eval");
        return 2;
    }
    return -1;
}

/* Every model given with --split val must have held out the images the first one did. */
static int same_split(const struct cnn_model *first, const char *first_path,
                      const struct cnn_model *m, const char *path) {
    static const char *const keys[] = {"data_fingerprint", "val_fingerprint"};
    int rc = 0;
    for (int i = 0; i < 2 && !rc; i++) {
        const char *want = cnn_model_meta(first, keys[i]), *have = cnn_model_meta(m, keys[i]);
        if (!have || strcmp(want, have)) {
            cli_err("%s: its training held out other images than %s's (%s %s, not %s); "
                    "--split val needs models trained on the same data and split",
                    path, first_path, keys[i], have ? have : "missing", want);
            rc = 1;
        }
    }
    return rc;
}

/* The images --split names, into *ds. For val, the images the first of the loaded models'
 * training held out of the training set, which every other model must have held out too;
 * *index gives each one's number in the training file. Returns 0, or 1 after printing the
 * error. */
static int load_split(const struct eval_args *a, struct cnn_model *const *nets,
                      struct cnn_dataset *ds, int **index) {
    if (strcmp(a->split, "val")) {
        if (cnn_dataset_load_dir(a->data, a->split, ds) == CNN_OK) return 0;
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    struct cnn_dataset train = {0};
    int rc = 1;
    if (cnn_dataset_load_dir(a->data, "train", &train) != CNN_OK)
        cli_err("%s", cnn_errmsg());
    else if ((rc = report_val_split(nets[0], a->models[0], &train, ds, index)) == 2) {
        cli_err("%s: trained with --val 0, so it held out no images to evaluate on", a->models[0]);
        rc = 1;
    }
    for (int i = 1; !rc && i < a->n_models; i++)
        rc = same_split(nets[0], a->models[0], nets[i], a->models[i]);
    cnn_dataset_free(&train);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    struct eval_args a;
    int status = parse_args(argc, argv, &a);
    if (status >= 0) return status;
    struct cnn_dataset ds = {0};
    float *probs = NULL, *sum = NULL;
    struct mistake *mk = NULL;
    int *index = NULL; /* --split val: each image's number in the training file */
    struct cnn_model *nets[MAX_MODELS] = {0};
    status = 1;
    for (int i = 0; i < a.n_models; i++)
        if (cnn_model_load(a.models[i], &nets[i]) != CNN_OK) {
            cli_err("%s", cnn_errmsg());
            goto done;
        }
    if (load_split(&a, nets, &ds, &index)) goto done;
    if (a.limit && a.limit < ds.n) ds.n = a.limit; /* the first images; the arrays stay whole */
    const int k = ds.n_classes;
    probs = malloc(sizeof(float) * (size_t)ds.n * k);
    sum = calloc((size_t)ds.n * k, sizeof(float));
    mk = malloc(sizeof *mk * (size_t)ds.n);
    if (!probs || !sum || !mk) {
        cli_err("out of memory");
        goto done;
    }
    double secs = 0;
    for (int i = 0; i < a.n_models; i++) {
        if (predict_model(nets[i], a.models[i], &ds, a.threads, a.tta, probs, &secs)) goto done;
        for (size_t j = 0; j < (size_t)ds.n * k; j++) sum[j] += probs[j] / (float)a.n_models;
    }
    if (a.probs_path && write_probs(a.probs_path, sum, ds.n, k)) goto done;
    struct cnn_metrics m;
    cnn_metrics_init(&m, k);
    int n_mk = 0;
    for (int i = 0; i < ds.n; i++) {
        const float *p = sum + (size_t)i * k;
        const int best = cnn_argmax(p, k);
        cnn_metrics_add(&m, ds.labels[i], best);
        if (best != ds.labels[i])
            mk[n_mk++] = (struct mistake){index ? index[i] : i, ds.labels[i], best, p[best]};
    }
    cnn_metrics_finish(&m);
    qsort(mk, (size_t)n_mk, sizeof *mk, by_confidence);
    if (n_mk > a.n_mistakes) n_mk = a.n_mistakes;
    const double ips = secs > 0 ? (double)ds.n * a.n_models / secs : 0;
    if (a.json)
        print_json(&m, mk, n_mk, ips, a.models, a.n_models, a.split, a.tta);
    else
        print_text(&m, mk, n_mk, ips, a.n_models, a.tta);
    status = 0;
done:
    free(probs);
    free(sum);
    free(mk);
    free(index);
    for (int i = 0; i < a.n_models; i++) cnn_model_free(nets[i]);
    cnn_dataset_free(&ds);
    return status;
}
