/*
 * cmd_bench.c - `mnist bench`: training and inference speed of any spec on this machine.
 *   training images/s: steady state over --train-batches mini-batches (after 3 warm-up
 *                      batches) of real MNIST images when --data has them, else random ones;
 *   inference images/s at --infer-batch; single-image latency (median and p90);
 *   peak RSS of the process (inference first, on a fresh model as `mnist predict` holds it,
 *   then training); GFLOP/s from the forward FLOPs (training counts 3x).
 *   --latency-only: the latency alone (after the same warm-up), in about a second.
 * bench/compare runs it beside PyTorch on the same network, and the latency alone in rounds
 * that alternate with PyTorch's.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: mnist bench [--arch SPEC | --preset NAME] [OPTIONS]\n"
          "  --batch N            training batch size (default 64)\n"
          "  --train-batches N    timed training batches (default 50)\n"
          "  --infer-batch N      batch size for throughput inference (default 1000)\n"
          "  --latency-iters N    single-image predictions timed (default 500)\n"
          "  --latency-only       measure the single-image latency alone\n"
          "  --optimizer NAME     sgd | adam | adamw (default sgd, momentum 0.9)\n"
          "  --threads N          default: all cores\n"
          "  --data DIR           MNIST IDX files to use (default data/mnist; random if absent)\n"
          "  --json               one JSON object\n",
          f);
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct bench_args {
    const char *spec, *data;
    int batch, train_batches, infer_batch, lat_iters, threads, json, kind, latency_only;
};

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct bench_args *a) {
    static const struct option opts[] = {{"arch", required_argument, 0, 'a'},
                                         {"preset", required_argument, 0, 'p'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"train-batches", required_argument, 0, 'n'},
                                         {"infer-batch", required_argument, 0, 'i'},
                                         {"latency-iters", required_argument, 0, 'l'},
                                         {"optimizer", required_argument, 0, 'o'},
                                         {"threads", required_argument, 0, 't'},
                                         {"data", required_argument, 0, 'd'},
                                         {"json", no_argument, 0, 'j'},
                                         {"latency-only", no_argument, 0, 'L'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    static const char *const optim_names[] = {"sgd", "adam", "adamw"};
    *a = (struct bench_args){NULL, "data/mnist", 64, 50, 1000, 500, 0, 0, CNN_OPT_SGD, 0};
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        int bad = 0;
        const struct cli_preset *p;
        switch (ch) {
        case 'a': a->spec = optarg; break;
        case 'p':
            if (!(p = cli_preset_find(optarg))) {
                cli_err("--preset: unknown preset '%s'", optarg);
                return 2;
            }
            a->spec = p->spec;
            break;
        case 'b': bad = cli_int("--batch", optarg, 1, 65536, &a->batch); break;
        case 'n': bad = cli_int("--train-batches", optarg, 1, 1000000, &a->train_batches); break;
        case 'i': bad = cli_int("--infer-batch", optarg, 1, 65536, &a->infer_batch); break;
        case 'l': bad = cli_int("--latency-iters", optarg, 1, 1000000, &a->lat_iters); break;
        case 't': bad = cli_int("--threads", optarg, 0, 1024, &a->threads); break;
        case 'o':
            a->kind = -1;
            for (int k = 0; k < 3; k++)
                if (!strcmp(optarg, optim_names[k])) a->kind = k;
            if (a->kind < 0) {
                cli_err("--optimizer: unknown value '%s'", optarg);
                return 2;
            }
            break;
        case 'd': a->data = optarg; break;
        case 'j': a->json = 1; break;
        case 'L':
            a->latency_only = 1;
            break;
        case 'h': usage(stdout); return 0;
        default: cli_bad_option(argc, argv, ch); cli_usage_hint("bench"); return 2;
        }
        if (bad) return 2;
    }
    if (!a->spec) a->spec = cli_preset_find("default")->spec;
    return -1;
}

/* n images and labels: real MNIST test images if --data has them, else random pixels. */
static int bench_images(const struct bench_args *a, int n, uint8_t *px, uint8_t *labels) {
    struct cnn_dataset ds;
    if (cnn_dataset_load_dir(a->data, "test", &ds) == CNN_OK) {
        const int real = ds.n >= n && ds.h == 28 && ds.w == 28;
        if (real) {
            memcpy(px, ds.images, (size_t)n * 784);
            memcpy(labels, ds.labels, (size_t)n);
        }
        cnn_dataset_free(&ds);
        if (real) return 1;
    }
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    for (int i = 0; i < n; i++) {
        labels[i] = (uint8_t)(cnn_rng_u64(&rng) % 10);
        for (int j = 0; j < 784; j++) px[(size_t)i * 784 + j] = (uint8_t)(cnn_rng_u64(&rng) >> 56);
    }
    return 0;
}

/* Steady-state training images/s: 3 warm-up steps, then train_batches timed ones, all on the
 * same batch. -1 on error (printed). */
static double bench_train(const struct bench_args *a, struct cnn_model *m, const uint8_t *px,
                          const uint8_t *labels) {
    struct cnn_train_cfg cfg;
    cnn_train_cfg_default(&cfg);
    cfg.batch = a->batch;
    cfg.threads = a->threads;
    cnn_optim_cfg_default(&cfg.optim, a->kind);
    cfg.sched.lr = 0.01f;
    struct cnn_trainer *tr = NULL;
    float *x = malloc(sizeof(float) * 784 * (size_t)a->batch);
    double ips = -1.0, t0 = 0.0;
    if (!x || cnn_trainer_new(m, &cfg, &tr) != CNN_OK) {
        cli_err("%s", x ? cnn_errmsg() : "out of memory");
        goto done;
    }
    for (size_t j = 0; j < (size_t)a->batch * 784; j++) x[j] = (px[j] / 255.0f - 0.1307f) / 0.3081f;
    for (int b = 0; b < a->train_batches + 3; b++) {
        if (b == 3) t0 = cli_now();
        if (cnn_trainer_step(tr, x, labels, a->batch, NULL, NULL) != CNN_OK) {
            cli_err("%s", cnn_errmsg());
            goto done;
        }
    }
    ips = (double)a->train_batches * a->batch / (cli_now() - t0);
done:
    cnn_trainer_free(tr); /* the training buffers go before inference is measured */
    free(x);
    return ips;
}

/* Batch throughput (chunks of 256, as predict does; not with --latency-only: 0), then
 * single-image latency (median, p90) on a context like `mnist predict` holds. 0 or 1
 * (printed). */
static int bench_infer(const struct bench_args *a, const struct cnn_model *m, const uint8_t *px,
                       int n_img, double out[3]) {
    struct cnn_ctx *ctx = NULL;
    float *probs = malloc(sizeof(float) * (size_t)n_img * cnn_model_n_classes(m));
    double *lat = malloc(sizeof(double) * (size_t)a->lat_iters);
    int status = 1, reps = 0;
    if (!probs || !lat ||
        cnn_ctx_new(m, a->infer_batch < 256 ? a->infer_batch : 256, a->threads, &ctx)) {
        cli_err("%s", probs && lat ? cnn_errmsg() : "out of memory");
        goto done;
    }
    /* half a second of warm-up: the threads, the caches and the clock speed settle, as they
     * would after training (which ran first until inference moved to the front) */
    double t0 = cli_now();
    do cnn_predict_u8(m, ctx, px, a->infer_batch, probs);
    while (cli_now() - t0 < 0.5);
    out[0] = 0.0;
    if (!a->latency_only) {
        t0 = cli_now();
        do {
            cnn_predict_u8(m, ctx, px, a->infer_batch, probs);
            reps++;
        } while (cli_now() - t0 < 2.0 && reps < 100);
        out[0] = (double)reps * a->infer_batch / (cli_now() - t0);
    }
    for (int i = 0; i < a->lat_iters; i++) {
        const double s = cli_now();
        cnn_predict_u8(m, ctx, px + (size_t)(i % n_img) * 784, 1, probs);
        lat[i] = (cli_now() - s) * 1e6;
    }
    qsort(lat, (size_t)a->lat_iters, sizeof *lat, cmp_double);
    out[1] = lat[a->lat_iters / 2];
    out[2] = lat[(int)(a->lat_iters * 0.9)];
    status = 0;
done:
    cnn_ctx_free(ctx);
    free(probs);
    free(lat);
    return status;
}

static void print_results(const struct bench_args *a, const struct cnn_model *m, int real,
                          double mflops, double train_ips, const double inf[3]) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double rss_mb = (double)ru.ru_maxrss / 1024.0;
    const int threads = a->threads ? a->threads : cnn_default_threads();
    if (a->latency_only) {
        if (a->json) {
            printf("{\"spec\":");
            cli_json_str(stdout, cnn_model_spec(m));
            printf(",\"threads\":%d,\"latency_iters\":%d,\"latency_us_median\":%.1f,"
                   "\"latency_us_p90\":%.1f}\n",
                   threads, a->lat_iters, inf[1], inf[2]);
        } else {
            printf("spec: %s\n%d threads\n", cnn_model_spec(m), threads);
            printf("latency, one image:         median %.0f us, p90 %.0f us\n", inf[1], inf[2]);
        }
        return;
    }
    if (a->json) {
        printf("{\"spec\":");
        cli_json_str(stdout, cnn_model_spec(m));
        printf(",\"threads\":%d,\"batch\":%d,\"real_data\":%s,\"mflops_per_image\":%.4f,"
               "\"train_images_per_s\":%.1f,\"infer_images_per_s\":%.1f,\"infer_batch\":%d,"
               "\"latency_us_median\":%.1f,\"latency_us_p90\":%.1f,\"peak_rss_mb\":%.1f,"
               "\"train_gflops\":%.2f,\"infer_gflops\":%.2f}\n",
               threads, a->batch, real ? "true" : "false", mflops, train_ips, inf[0],
               a->infer_batch, inf[1], inf[2], rss_mb, train_ips * 3 * mflops / 1e3,
               inf[0] * mflops / 1e3);
        return;
    }
    printf("spec: %s\n%d threads, %.2f MFLOPs forward per image, %s data\n", cnn_model_spec(m),
           threads, mflops, real ? "MNIST" : "random");
    printf("training (batch %d):       %10.0f images/s  (%.1f GFLOP/s)\n", a->batch, train_ips,
           train_ips * 3 * mflops / 1e3);
    printf("inference (batch %d):    %10.0f images/s  (%.1f GFLOP/s)\n", a->infer_batch, inf[0],
           inf[0] * mflops / 1e3);
    printf("latency, one image:         median %.0f us, p90 %.0f us\n", inf[1], inf[2]);
    printf("peak RSS:                   %.1f MB\n", rss_mb);
}

int cmd_bench(int argc, char **argv) {
    struct bench_args a;
    int status = parse_args(argc, argv, &a);
    if (status >= 0) return status;
    struct cnn_model *m;
    if (cnn_model_new(a.spec, 1, 28, 28, &m) != CNN_OK) {
        cli_err("--arch: %s", cnn_errmsg());
        return 2;
    }
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    cnn_model_init_params(m, &rng);
    cnn_model_set_norm(m, 0.1307f, 0.3081f);
    const int n_img = a.infer_batch > a.batch ? a.infer_batch : a.batch;
    uint8_t *px = malloc((size_t)n_img * 784), *labels = malloc((size_t)n_img);
    status = 1;
    if (!px || !labels) {
        cli_err("out of memory");
        goto done;
    }
    const int real = bench_images(&a, n_img, px, labels);
    double mflops = 0, inf[3];
    for (int i = 0; i < cnn_model_n_layers(m); i++) {
        struct cnn_layer_info li;
        cnn_model_layer_info(m, i, &li);
        mflops += li.mflops;
    }
    /* Inference first, from a fresh process as `mnist predict` runs it: measured after
     * training, the allocator's state from the freed training buffers (glibc raises its mmap
     * threshold when they go) added 4-14 MB to the peak. Speed does not depend on the weights. */
    if (bench_infer(&a, m, px, n_img, inf)) goto done;
    const double train_ips = a.latency_only ? 0.0 : bench_train(&a, m, px, labels);
    if (train_ips < 0) goto done;
    print_results(&a, m, real, mflops, train_ips, inf);
    status = 0;
done:
    cnn_model_free(m);
    free(px);
    free(labels);
    return status;
}
