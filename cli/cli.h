/*
 * cli.h - shared pieces of the `mnist` command line: the subcommands, option parsing
 * helpers, presets and JSON output. Only cli/ prints or exits; it reaches the library
 * through include/cnn.h alone.
 * Exit codes: 0 success, 1 runtime error, 2 bad usage (130 after Ctrl-C and 143 after SIGTERM
 * in train).
 */
#ifndef MNIST_CLI_H
#define MNIST_CLI_H

#include <stdio.h>

#include "cnn.h"

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_compare(int argc, char **argv);

/* The HTML report of a finished training run (`mnist train --report FILE`), as `mnist report
 * --split val` writes it: the model saved at model_path, evaluated on the validation images
 * the run held out of train (the training set it read from data_dir, which names it on the
 * page), with curves from log_path (NULL: none). Written atomically to out. Returns 0, or 1
 * after printing the error. */
int cli_report_train(const char *model_path, const struct cnn_dataset *train,
                     const char *data_dir, const char *log_path, const char *out, int threads);

/* "mnist: " + message on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* After a usage error's one line: where the options are described (one more line). */
void cli_usage_hint(const char *cmd);
/* Parse a whole-string number in [lo, hi]; on failure print "mnist: FLAG: ..." and return -1. */
int cli_int(const char *flag, const char *s, long lo, long hi, int *out);
int cli_u64(const char *flag, const char *s, unsigned long long *out);
int cli_float(const char *flag, const char *s, double lo, double hi, float *out);
/* After getopt_long (optstring starting with ':', opterr 0) returned ch ('?' or ':'):
 * one "mnist: ..." line naming the bad option. */
void cli_bad_option(int argc, char **argv, int ch);
/* Exit-early check that the directory of an output path exists and is writable. */
int cli_check_output(const char *flag, const char *path);
/* The same, for a file written atomically (a temporary renamed over it): it must also not be
 * a device, FIFO or socket, which the rename would replace. */
int cli_check_replaced_output(const char *flag, const char *path);
/* A log file opened for writing (append: at its end, else truncated) without waiting on a
 * FIFO that nobody reads (then NULL with errno ENXIO). NULL with errno on failure. */
FILE *cli_open_log(const char *path, int append);
/* Whether path starts with a model file's magic; never waits on a FIFO. */
int cli_is_model_file(const char *path);
/* cnn_model_new(spec) for 1 x h x w images. On failure prints "FROM: the error", followed, for
 * a size other than 28x28, by " (for the HxW images of DATA)" (data NULL: " (for HxW
 * images)"), and returns the error code. */
int cli_model_for_size(const char *spec, int h, int w, const char *from, const char *data,
                       struct cnn_model **out);
/* Write buf to path through a temporary beside it and a rename: path is the old file or the
 * new one, never half of it. 0, or -1 with errno. */
int cli_write_atomic(const char *path, const void *buf, size_t len);
/* Whether argv[1..argc) holds flag before any "--". */
int cli_has_flag(int argc, char **argv, const char *flag);
/* Seconds on the monotonic clock. */
double cli_now(void);
/* Write s as a JSON string literal. */
void cli_json_str(FILE *f, const char *s);
/* A prediction is "unsure" below this probability of its best class (`--min-confidence`):
 * with the default preset's model, 0.12% of the MNIST test digits and 0.2% of them rendered
 * as photos are below it (README, "Prediction on your own images"). */
#define CLI_MIN_CONFIDENCE 0.35
/* ... or below this typicality (`--min-typicality`; cnn_predict_typicality): the share of the
 * model's own validation digits that look less like its training digits than this picture. */
#define CLI_MIN_TYPICALITY 0.002
/* --augment's names, by enum cnn_augment_level. */
extern const char *const cli_augment_names[CNN_AUG_LEVELS];
/* Keep freed image buffers in the heap instead of returning them to the system: preparing a
 * picture allocates a few hundred kB to 15 MB, and glibc would otherwise map and fault in fresh
 * pages for every image (a 280x280 canvas: 0.72 ms to prepare, 0.55 ms with this). For the
 * commands that prepare many pictures in one process (predict, serve). */
void cli_reuse_heap(void);
/* Probabilities and typicality of one 28x28 image: *typicality is -1 when the model has none.
 * Returns a cnn status. */
int cli_predict_one(const struct cnn_model *m, struct cnn_ctx *ctx, const uint8_t *px,
                    float *probs, float *typicality);
/* Why a prediction over n classes is not to be trusted, written into why (len bytes), or 0
 * when it is: the picture holds several digits (objects > 1: "more than one digit found"),
 * its typicality (when >= 0) is below min_typicality, or the best class is below
 * min_confidence. Returns 1 when unsure. */
int cli_unsure(const float *probs, int n, int objects, float typicality, double min_confidence,
               double min_typicality, char *why, size_t len);
/* Keras-like table of a network: layer, output shape, parameters, MFLOPs, totals. */
void cli_print_summary(FILE *f, const struct cnn_model *net);
void cli_json_summary(FILE *f, const struct cnn_model *net);
/* The model's key/value metadata as one JSON object. */
void cli_json_meta(FILE *f, const struct cnn_model *m);
/* crc32 of the weights and batch-norm statistics: equal models have equal values. */
unsigned long cli_model_fingerprint(const struct cnn_model *m);

struct cli_preset {
    const char *name, *about, *spec;
    int epochs, batch, optimizer, schedule, augment;
    float lr, weight_decay, label_smoothing;
    int nesterov; /* SGD only */
    float ema;    /* cnn_train_cfg.ema: 0, no weight average */
    /* On Fashion-MNIST (recognised by content; cmd_train.c), unless --augment or --epochs say
     * otherwise: this augmentation, and this many epochs (0: the same). */
    int fashion_augment, fashion_epochs;
};
const struct cli_preset *cli_preset_find(const char *name);
void cli_preset_list(FILE *f);

#endif
