/*
 * cmd_report.c - `mnist report`: one self-contained HTML page on a trained model (and, with
 * --json, the same data as JSON). What the page shows is report_html.c's; this file gathers
 * it: the model, its training log, and its results on the test set or on the validation images
 * its training held out. cli_report_train is the same for `mnist train --report`.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report.h"

static void usage(FILE *f) {
    fputs("usage: mnist report --model FILE [--log TRAIN.jsonl] [--data DIR] --out REPORT.html\n"
          "One HTML file, with nothing to fetch from elsewhere: the model and its training\n"
          "metadata, training curves, the confusion matrix, per-class precision, recall and F1,\n"
          "the most confident mistakes, examples and mean images per class, first-layer weights.\n"
          "  --model FILE      a trained model\n"
          "  --log FILE        the JSON log `mnist train --log` wrote, for the training curves\n"
          "                    (default: none)\n"
          "  --data DIR        IDX files (default data/mnist)\n"
          "  --split NAME      test (default): the test set of DIR; val: the validation images\n"
          "                    the training held out of DIR's training set (checked against the\n"
          "                    model's fingerprints)\n"
          "  --limit N         only the first N images of the split (default: all)\n"
          "  --mistakes N      how many of the most confident mistakes to show (default 24)\n"
          "  --threads N       (default: all cores)\n"
          "  --out FILE        the HTML page, written atomically\n"
          "  --json FILE       the same data as JSON ('-': stdout)\n"
          "At least one of --out and --json is needed.\n",
          f);
}

struct report_args {
    const char *model, *log, *data, *out, *json;
    int val, limit, mistakes, threads;
};

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct report_args *a) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"log", required_argument, 0, 'l'},
                                         {"data", required_argument, 0, 'd'},
                                         {"split", required_argument, 0, 's'},
                                         {"limit", required_argument, 0, 'n'},
                                         {"mistakes", required_argument, 0, 'k'},
                                         {"threads", required_argument, 0, 't'},
                                         {"out", required_argument, 0, 'o'},
                                         {"json", required_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->data = "data/mnist", a->mistakes = 24;
    optind = 1;
    opterr = 0;
    int ch, bad = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            a->model = optarg;
            break;
        case 'l':
            a->log = optarg;
            break;
        case 'd':
            a->data = optarg;
            break;
        case 's':
            if (strcmp(optarg, "test") && strcmp(optarg, "val")) {
                cli_err("--split: '%s' is neither 'test' nor 'val'", optarg);
                return 2;
            }
            a->val = optarg[0] == 'v';
            break;
        case 'n':
            bad |= cli_int("--limit", optarg, 1, 100000000, &a->limit);
            break;
        case 'k':
            bad |= cli_int("--mistakes", optarg, 0, 1000, &a->mistakes);
            break;
        case 't':
            bad |= cli_int("--threads", optarg, 0, 1024, &a->threads);
            break;
        case 'o':
            a->out = optarg;
            break;
        case 'j':
            a->json = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            cli_bad_option(argc, argv, ch);
            cli_usage_hint("report");
            return 2;
        }
    }
    if (bad) return 2;
    const char *missing = !a->model             ? "--model is required"
                          : !a->out && !a->json ? "give --out FILE or --json FILE"
                                                : NULL;
    if (missing || optind < argc) {
        if (missing)
            cli_err("report: %s", missing);
        else
            cli_err("report: unexpected argument '%s'", argv[optind]);
        cli_usage_hint("report");
        return 2;
    }
    if ((a->out && cli_check_replaced_output("--out", a->out)) ||
        (a->json && strcmp(a->json, "-") && cli_check_replaced_output("--json", a->json)))
        return 2;
    return -1;
}

/* The images to evaluate on: the test set, or the validation images the training held out of
 * the training set (train, or else loaded from --data). ev->split and ev->source say which.
 * Returns 0, 1 (error printed), or 2 for a model trained without validation images. */
static int load_split(const struct report_args *a, const struct cnn_model *m,
                      const struct cnn_dataset *train, struct cnn_dataset *ds, int **index,
                      struct report_eval *ev) {
    if (!a->val) {
        if (cnn_dataset_load_dir(a->data, "test", ds) != CNN_OK) {
            cli_err("%s", cnn_errmsg());
            return 1;
        }
        if (a->limit && a->limit < ds->n) ds->n = a->limit;
        ev->split = "test";
        snprintf(ev->source, sizeof ev->source,
                 "the test set in %.400s: %d images of %d\xc3\x97%d, which training never reads",
                 a->data, ds->n, ds->h, ds->w);
        return 0;
    }
    struct cnn_dataset loaded = {0};
    if (!train && cnn_dataset_load_dir(a->data, "train", &loaded) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    const int rc = report_val_split(m, a->model, train ? train : &loaded, ds, index);
    cnn_dataset_free(&loaded);
    if (rc) return rc;
    if (a->limit && a->limit < ds->n) ds->n = a->limit;
    ev->split = "validation";
    snprintf(ev->source, sizeof ev->source,
             "%d validation images of %d\xc3\x97%d, held out of the training set in %.400s: the "
             "model never trained on them",
             ds->n, ds->h, ds->w, a->data);
    return 0;
}

/* Load what the page needs and write it; train: the training set when already loaded, or
 * NULL. Returns the exit status. */
static int report_run(const struct report_args *a, const struct cnn_dataset *train) {
    struct cnn_model *m;
    if (cnn_model_load(a->model, &m) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    struct report_log log = {0};
    struct cnn_dataset ds = {0};
    int *index = NULL;
    struct report_eval ev;
    memset(&ev, 0, sizeof ev);
    struct report_src src = {m,
                             a->model,
                             a->log,
                             a->log ? &log : NULL,
                             NULL,
                             "The model was trained without validation images (--val 0), so "
                             "there is nothing held out to evaluate on; --split test uses the "
                             "test set."};
    int rc =
        a->log && report_log_load(a->log, &log) ? 1 : load_split(a, m, train, &ds, &index, &ev);
    if (rc == 0 &&
        (rc = report_eval_run(m, a->model, &ds, index, a->threads, a->mistakes, &ev)) == 0)
        src.ev = &ev;
    if (rc == 0 || rc == 2) rc = report_write(&src, a->out, a->json);
    if (rc == 0 && a->out) /* stdout is the JSON's with --json - */
        fprintf(a->json && !strcmp(a->json, "-") ? stderr : stdout, "report written to %s\n",
                a->out);
    report_eval_free(&ev);
    report_log_free(&log);
    cnn_dataset_free(&ds);
    free(index);
    cnn_model_free(m);
    return rc;
}

int cmd_report(int argc, char **argv) {
    struct report_args a;
    const int status = parse_args(argc, argv, &a);
    return status >= 0 ? status : report_run(&a, NULL);
}

int cli_report_train(const char *model_path, const struct cnn_dataset *train, const char *data_dir,
                     const char *log_path, const char *out, int threads) {
    const struct report_args a = {model_path, log_path, data_dir, out, NULL, 1, 0, 24, threads};
    return report_run(&a, train);
}
