/*
 * report.h - what `mnist report` shows, shared by its parts: the training log (report_log.c),
 * a model's results on a set of images (report_eval.c), and the page and JSON written from
 * them (report_html.c). The command itself is cmd_report.c.
 */
#ifndef MNIST_REPORT_H
#define MNIST_REPORT_H

#include <stdio.h>

#include "cnn.h"

/* ---- the JSON log of `mnist train --log`, one object per epoch ---------------------------- */
struct report_epoch {
    int epoch;
    double train_loss, train_acc, val_loss, val_acc; /* val_*: -1 without validation */
    double lr, seconds, images_per_s;                /* seconds, images_per_s: -1 if absent */
    int best;
};
struct report_log {
    struct report_epoch *e; /* by epoch, ascending; a later line for an epoch replaces one
                             * before it (a resumed run appends to the same log) */
    int n;
};
/* Read path. On a bad line prints "mnist: PATH:LINE: ..." naming the line and the problem and
 * returns -1; 0 otherwise (an empty file gives n = 0). */
int report_log_load(const char *path, struct report_log *out);
void report_log_free(struct report_log *log);

/* ---- a model on a set of images ----------------------------------------------------------- */
#define REPORT_EXAMPLES 6 /* correct examples shown per class */
struct report_mistake {
    int index, label, predicted; /* index: the image's number in its IDX file */
    float confidence;
};
struct report_eval {
    const char *split; /* "test" or "validation" */
    char source[600];  /* where the images came from, in words */
    int n;
    struct cnn_metrics m;
    double mean_loss, images_per_s;
    struct report_mistake *mistakes; /* the most confident first */
    int n_mistakes;
    int examples[CNN_MAX_CLASSES][REPORT_EXAMPLES]; /* file indices of correct ones */
    int n_examples[CNN_MAX_CLASSES];
    int h, w;        /* the images' size */
    uint8_t *images; /* (mistakes + examples, h, w): the kept mistakes', then the examples' */
    uint8_t *mean;   /* (classes, h, w): each class's mean image */
};
/* Classify ds (images of any size, that of the model's input; index[i] is image i's number in
 * its file, NULL: i) with the model (read from model_path, which errors name) on `threads`
 * threads, keeping the max_mistakes most confident mistakes. *out is zeroed by the caller,
 * who may have set split and source. Returns 0, or 1 after printing the error. */
int report_eval_run(const struct cnn_model *m, const char *model_path, const struct cnn_dataset *ds,
                    const int *index, int threads, int max_mistakes, struct report_eval *out);
void report_eval_free(struct report_eval *ev);

/* The validation images a training run held out of `train` (the training data it read), found
 * again from the model's metadata (train_images, recipe.val) and checked against its
 * data_fingerprint and val_fingerprint, so they are the very images the run validated on. A
 * new dataset in *out, and each image's number in `train` in *index (malloc'd). Returns 0,
 * 1 after printing the error, or 2 when the model was trained without validation images. */
int report_val_split(const struct cnn_model *m, const char *model_path,
                     const struct cnn_dataset *train, struct cnn_dataset *out, int **index);

/* ---- the page ----------------------------------------------------------------------------- */
struct report_src {
    const struct cnn_model *model;
    const char *model_path;
    const char *log_path;         /* NULL: no log */
    const struct report_log *log; /* NULL: no log */
    const struct report_eval *ev; /* NULL: no images to evaluate on (a note says why) */
    const char *no_eval_reason;   /* used when ev is NULL */
};
void report_html(FILE *f, const struct report_src *r);
void report_json(FILE *f, const struct report_src *r);
/* Write the page (and, if json_path, the JSON) atomically. Returns 0, or 1 after printing
 * the error. */
int report_write(const struct report_src *r, const char *out, const char *json_path);
/* ,"key":v in JSON, or ,"key":null when v is not known (negative or not finite). */
void report_json_num(FILE *f, const char *key, double v);
/* What write(f, arg) prints, into path atomically ("-": stdout); flag names the option in
 * errors. Returns 0, or 1 after printing the error. */
int report_write_file(const char *flag, const char *path, void (*write)(FILE *, const void *),
                      const void *arg);

/* The weights of the first convolution (or dense) layer as gray images, for the page:
 * *n images of *w x *h, in one malloc'd buffer, each scaled to 0..255 by its own range; NULL
 * when the model has no such layer (or the images would be too many or too big). */
uint8_t *report_first_filters(const struct cnn_model *m, int *n, int *w, int *h, const char **kind);

/* ---- `mnist compare`: entries, their runs, the leaderboard ------------------------------- */
struct compare_entry {
    char name[48]; /* [A-Za-z0-9._-]: also names its model files */
    char spec[1024];
    char options[512];        /* the entry's own training options, as written */
    struct cnn_train_cfg cfg; /* its recipe: defaults < the file's recipe < its options < flags */
    char key[1700];           /* spec, recipe and data in one line: a run counts while equal */
};
struct compare_run { /* one trained model: an entry with one seed */
    int entry;
    unsigned long long seed;
    size_t params;
    double mflops;            /* forward, per image */
    double train_flops;       /* about 3 x forward FLOPs per training image seen */
    double seconds;           /* wall time of the training; -1 unknown */
    double images_per_s;      /* inference on the test set */
    double val_acc, test_acc; /* val: best epoch's, used for every choice; test: information */
    char model[1100];
};
struct compare_page {
    const struct compare_entry *entries;
    int n_entries;
    const struct compare_run *runs;
    int n_runs;
    int x_seconds;    /* the plot's cost axis: training seconds, else training FLOPs */
    char source[700]; /* the data, in words */
    char recipe[700]; /* the shared recipe, in words ("" for trained models) */
};
void compare_html(FILE *f, const void *page);
/* A recipe in words: "2 epochs, batch 128, Adam lr 0.003 (one-cycle), ...". */
void compare_recipe_text(const struct cnn_train_cfg *c, char *buf, size_t n);
void compare_json(FILE *f, const void *page);

#endif
