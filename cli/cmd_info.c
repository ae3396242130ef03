/*
 * cmd_info.c - `mnist info`: describe IDX files, model files, or a network spec.
 *   mnist info FILE... [--json]        IDX images/labels (raw or .gz) or a model file
 *   mnist info --arch SPEC [--json]    the layer table of a spec for 1x28x28 inputs
 * With --json, one JSON object per line per file.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: mnist info FILE... [--json]\n"
          "       mnist info --arch SPEC [--json]\n"
          "Describes IDX image/label files (raw or gzip), model files, or a network spec.\n"
          "  --arch SPEC   show the layers of SPEC for 1x28x28 inputs\n"
          "  --json        machine-readable output, one object per line\n",
          f);
}

static int is_model_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[8] = {0};
    const size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    return n == 8 && memcmp(magic, "CNNMODEL", 8) == 0;
}

static int info_model(const char *path, int json) {
    struct cnn_net *net;
    struct cnn_meta meta;
    if (cnn_model_load(path, &net, &meta) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    float mean, std;
    cnn_net_get_norm(net, &mean, &std);
    /* a fingerprint of the weights: equal models have equal values */
    const uLong fp = crc32(crc32(0L, (const Bytef *)cnn_net_params(net),
                                 (uInt)(cnn_net_n_params(net) * sizeof(float))),
                           (const Bytef *)cnn_net_state(net),
                           (uInt)(cnn_net_n_state(net) * sizeof(float)));
    if (json) {
        printf("{\"file\":");
        cli_json_str(stdout, path);
        printf(",\"kind\":\"model\",\"network\":");
        cli_json_summary(stdout, net);
        printf(",\"norm\":{\"mean\":%.6f,\"std\":%.6f},\"meta\":{\"dataset\":", (double)mean,
               (double)std);
        cli_json_str(stdout, meta.dataset);
        printf(",\"date\":");
        cli_json_str(stdout, meta.date);
        printf(",\"epochs\":%d,\"val_acc\":%.6f,\"train_images\":%ld},\"weights_crc32\":\"%08lx\"}\n",
               meta.epochs, (double)meta.val_acc, meta.train_images, (unsigned long)fp);
    } else {
        printf("%s: model\n  spec: %s\n", path, cnn_net_spec(net));
        printf("  trained on %s (%ld images), %d epochs, validation accuracy %.2f%%, %s\n",
               meta.dataset[0] ? meta.dataset : "?", meta.train_images, meta.epochs,
               100.0 * meta.val_acc, meta.date[0] ? meta.date : "date unknown");
        printf("  input normalisation: (pixel/255 - %.4f) / %.4f\n", (double)mean, (double)std);
        printf("  weights fingerprint (crc32): %08lx\n", (unsigned long)fp);
        cli_print_summary(stdout, net);
    }
    cnn_net_free(net);
    return 0;
}

static int info_idx(const char *path, int json) {
    struct cnn_idx idx;
    if (cnn_idx_load(path, &idx) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    if (idx.ndim == 1) {
        long counts[256] = {0};
        int maxv = 0;
        for (size_t i = 0; i < idx.size; i++) {
            counts[idx.data[i]]++;
            maxv = idx.data[i] > maxv ? idx.data[i] : maxv;
        }
        if (json) {
            printf("{\"file\":");
            cli_json_str(stdout, path);
            printf(",\"kind\":\"labels\",\"shape\":[%d],\"counts\":[", idx.dims[0]);
            for (int v = 0; v <= maxv; v++) printf("%s%ld", v ? "," : "", counts[v]);
            printf("]}\n");
        } else {
            printf("%s: labels, %d items, values 0..%d\n  per class:", path, idx.dims[0], maxv);
            for (int v = 0; v <= maxv; v++) printf(" %d:%ld", v, counts[v]);
            printf("\n");
        }
    } else {
        double sum = 0;
        for (size_t i = 0; i < idx.size; i++) sum += idx.data[i];
        const double mean = idx.size ? sum / (double)idx.size / 255.0 : 0;
        if (json) {
            printf("{\"file\":");
            cli_json_str(stdout, path);
            printf(",\"kind\":\"images\",\"shape\":[%d,%d,%d],\"mean\":%.6f}\n", idx.dims[0],
                   idx.dims[1], idx.dims[2], mean);
        } else {
            printf("%s: images, %d x %d x %d (u8), mean intensity %.4f\n", path, idx.dims[0],
                   idx.dims[1], idx.dims[2], mean);
        }
    }
    cnn_idx_free(&idx);
    return 0;
}

int cmd_info(int argc, char **argv) {
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"arch", required_argument, 0, 'a'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int json = 0, ch;
    const char *arch = NULL;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":ha:", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': json = 1; break;
        case 'a': arch = optarg; break;
        case 'h': usage(stdout); return 0;
        default: cli_bad_option(argc, argv, ch); usage(stderr); return 2;
        }
    }
    if (arch) {
        struct cnn_net *net;
        if (cnn_net_new(arch, 1, 28, 28, &net) != CNN_OK) {
            cli_err("--arch: %s", cnn_errmsg());
            return 2;
        }
        if (json) {
            cli_json_summary(stdout, net);
            printf("\n");
        } else {
            printf("spec: %s\n", cnn_net_spec(net));
            cli_print_summary(stdout, net);
        }
        cnn_net_free(net);
        return 0;
    }
    if (optind >= argc) {
        cli_err("info: no file given");
        usage(stderr);
        return 2;
    }
    int status = 0;
    for (int i = optind; i < argc; i++) {
        const int r = is_model_file(argv[i]) ? info_model(argv[i], json) : info_idx(argv[i], json);
        status = r ? r : status;
    }
    return status;
}
