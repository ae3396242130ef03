/*
 * cmd_bench.c - `mnist bench`: training and inference speed of any spec on this machine.
 *   training images/s: steady state over --train-batches mini-batches (after 3 warm-up
 *                      batches) of real MNIST images when --data has them, else random ones;
 *   inference images/s at --infer-batch; single-image latency (median and p90);
 *   peak RSS of the process (training, then inference on a fresh copy of the net, which is
 *   what `mnist predict` holds); GFLOP/s from the forward FLOPs (training counts 3x).
 * bench/compare runs it beside PyTorch on the same network.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: mnist bench [--arch SPEC | --preset NAME] [OPTIONS]\n"
          "  --batch N            training batch size (default 64)\n"
          "  --train-batches N    timed training batches (default 50)\n"
          "  --infer-batch N      batch size for throughput inference (default 1000)\n"
          "  --latency-iters N    single-image predictions timed (default 500)\n"
          "  --optimizer NAME     sgd | adam | adamw (default sgd, momentum 0.9)\n"
          "  --threads N          default: all cores\n"
          "  --data DIR           MNIST IDX files to use (default data/mnist; random if absent)\n"
          "  --json               one JSON object\n",
          f);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {
        {"arch", required_argument, 0, 'a'},          {"preset", required_argument, 0, 'p'},
        {"batch", required_argument, 0, 'b'},         {"train-batches", required_argument, 0, 'n'},
        {"infer-batch", required_argument, 0, 'i'},   {"latency-iters", required_argument, 0, 'l'},
        {"optimizer", required_argument, 0, 'o'},     {"threads", required_argument, 0, 't'},
        {"data", required_argument, 0, 'd'},          {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0}};
    const char *spec = NULL, *data = "data/mnist";
    int batch = 64, train_batches = 50, infer_batch = 1000, lat_iters = 500, threads = 0;
    int json = 0, kind = CNN_OPT_SGD, ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        int bad = 0;
        switch (ch) {
        case 'a': spec = optarg; break;
        case 'p': {
            const struct cli_preset *p = cli_preset_find(optarg);
            if (!p) {
                cli_err("--preset: unknown preset '%s'", optarg);
                return 2;
            }
            spec = p->spec;
            break;
        }
        case 'b': bad = cli_int("--batch", optarg, 1, 65536, &batch); break;
        case 'n': bad = cli_int("--train-batches", optarg, 1, 1000000, &train_batches); break;
        case 'i': bad = cli_int("--infer-batch", optarg, 1, 65536, &infer_batch); break;
        case 'l': bad = cli_int("--latency-iters", optarg, 1, 1000000, &lat_iters); break;
        case 't': bad = cli_int("--threads", optarg, 0, 1024, &threads); break;
        case 'o':
            if (!strcmp(optarg, "sgd")) kind = CNN_OPT_SGD;
            else if (!strcmp(optarg, "adam")) kind = CNN_OPT_ADAM;
            else if (!strcmp(optarg, "adamw")) kind = CNN_OPT_ADAMW;
            else {
                cli_err("--optimizer: unknown value '%s'", optarg);
                return 2;
            }
            break;
        case 'd': data = optarg; break;
        case 'j': json = 1; break;
        case 'h': usage(stdout); return 0;
        default: cli_bad_option(argc, argv, ch); usage(stderr); return 2;
        }
        if (bad) return 2;
    }
    if (!spec) spec = cli_preset_find("default")->spec;
    cnn_set_threads(threads);
    struct cnn_net *net;
    if (cnn_net_new(spec, 1, 28, 28, &net) != CNN_OK) {
        cli_err("--arch: %s", cnn_errmsg());
        return 2;
    }
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    cnn_net_init_params(net, &rng);
    /* images: real MNIST if present, else random pixels */
    const int n_img = infer_batch > batch ? infer_batch : batch;
    uint8_t *px = malloc((size_t)n_img * 784), *labels = malloc((size_t)n_img);
    float *x = malloc(sizeof(float) * 784 * (size_t)batch);
    float *probs = malloc(sizeof(float) * (size_t)n_img * cnn_net_n_classes(net));
    struct cnn_optim *opt = NULL;
    struct cnn_optim_cfg ocfg;
    cnn_optim_cfg_default(&ocfg, kind);
    int status = 1;
    if (!px || !labels || !x || !probs || cnn_optim_new(net, &ocfg, &opt) != CNN_OK) {
        cli_err("out of memory");
        goto done;
    }
    struct cnn_dataset ds;
    int real = 0;
    if (cnn_dataset_load_dir(data, "test", &ds) == CNN_OK && ds.n >= n_img && ds.h == 28) {
        memcpy(px, ds.images, (size_t)n_img * 784);
        memcpy(labels, ds.labels, (size_t)n_img);
        real = 1;
    }
    if (real) cnn_dataset_free(&ds);
    for (int i = 0; !real && i < n_img; i++) {
        labels[i] = (uint8_t)(cnn_rng_u64(&rng) % 10);
        for (int j = 0; j < 784; j++) px[(size_t)i * 784 + j] = (uint8_t)(cnn_rng_u64(&rng) >> 56);
    }
    for (size_t j = 0; j < (size_t)batch * 784; j++) x[j] = (px[j] / 255.0f - 0.1307f) / 0.3081f;
    double mflops = 0;
    for (int i = 0; i < cnn_net_n_layers(net); i++) {
        struct cnn_layer_info li;
        cnn_net_layer_info(net, i, &li);
        mflops += li.mflops;
    }
    /* training: 3 warm-up batches, then timed */
    double t0 = 0;
    for (int b = 0; b < train_batches + 3; b++) {
        if (b == 3) t0 = now();
        float loss;
        if (cnn_net_train_batch(net, x, labels, batch, 0.0f, &rng, &loss, NULL) != CNN_OK) {
            cli_err("%s", cnn_errmsg());
            goto done;
        }
        cnn_optim_step(opt, net, 0.01f);
    }
    const double train_ips = (double)train_batches * batch / (now() - t0);
    /* Inference on a fresh net holding the trained weights, as `mnist predict` would load it:
     * no training caches or gradients, so peak RSS is what a user of the model sees. */
    struct cnn_net *inet;
    if (cnn_net_new(spec, 1, 28, 28, &inet) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        goto done;
    }
    memcpy(cnn_net_params(inet), cnn_net_params(net), cnn_net_n_params(net) * sizeof(float));
    memcpy(cnn_net_state(inet), cnn_net_state(net), cnn_net_n_state(net) * sizeof(float));
    cnn_net_free(net);
    net = inet;
    cnn_net_set_norm(net, 0.1307f, 0.3081f);
    /* batch inference: predict walks the batch in chunks of the reserved size, 256 images,
     * which is as fast as one pass and holds far less memory */
    if (cnn_net_reserve(net, infer_batch < 256 ? infer_batch : 256) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        goto done;
    }
    cnn_net_predict_u8(net, px, infer_batch, probs);
    int reps = 0;
    t0 = now();
    do {
        cnn_net_predict_u8(net, px, infer_batch, probs);
        reps++;
    } while (now() - t0 < 2.0 && reps < 100);
    const double infer_ips = (double)reps * infer_batch / (now() - t0);
    /* single-image latency */
    double *lat = malloc(sizeof(double) * (size_t)lat_iters);
    if (!lat) goto done;
    for (int i = 0; i < lat_iters; i++) {
        const double s = now();
        cnn_net_predict_u8(net, px + (size_t)(i % n_img) * 784, 1, probs);
        lat[i] = (now() - s) * 1e6;
    }
    qsort(lat, (size_t)lat_iters, sizeof *lat, cmp_double);
    const double med = lat[lat_iters / 2], p90 = lat[(int)(lat_iters * 0.9)];
    free(lat);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const double rss_mb = (double)ru.ru_maxrss / 1024.0;
    if (json) {
        printf("{\"spec\":");
        cli_json_str(stdout, cnn_net_spec(net));
        printf(",\"threads\":%d,\"batch\":%d,\"real_data\":%s,\"mflops_per_image\":%.4f,"
               "\"train_images_per_s\":%.1f,\"infer_images_per_s\":%.1f,\"infer_batch\":%d,"
               "\"latency_us_median\":%.1f,\"latency_us_p90\":%.1f,\"peak_rss_mb\":%.1f,"
               "\"train_gflops\":%.2f,\"infer_gflops\":%.2f}\n",
               cnn_get_threads(), batch, real ? "true" : "false", mflops, train_ips, infer_ips,
               infer_batch, med, p90, rss_mb, train_ips * 3 * mflops / 1e3,
               infer_ips * mflops / 1e3);
    } else {
        printf("spec: %s\n%d threads, %.2f MFLOPs forward per image, %s data\n",
               cnn_net_spec(net), cnn_get_threads(), mflops, real ? "MNIST" : "random");
        printf("training (batch %d):       %10.0f images/s  (%.1f GFLOP/s)\n", batch, train_ips,
               train_ips * 3 * mflops / 1e3);
        printf("inference (batch %d):    %10.0f images/s  (%.1f GFLOP/s)\n", infer_batch,
               infer_ips, infer_ips * mflops / 1e3);
        printf("latency, one image:         median %.0f us, p90 %.0f us\n", med, p90);
        printf("peak RSS:                   %.1f MB\n", rss_mb);
    }
    status = 0;
done:
    cnn_optim_free(opt);
    cnn_net_free(net);
    free(px);
    free(labels);
    free(x);
    free(probs);
    return status;
}
