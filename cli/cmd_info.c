/*
 * cmd_info.c - `mnist info`: describe IDX files, model files, or a network spec.
 *   mnist info FILE... [--json]        IDX images/labels (raw or .gz) or a model file
 *   mnist info --arch SPEC [--input HxW] [--json]
 *                                      the layer table of a spec (for 1x28x28 inputs)
 * With --json, one JSON object per line per file.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: mnist info FILE... [--json]\n"
          "       mnist info --arch SPEC [--input HxW] [--json]\n"
          "Describes IDX image/label files (raw or gzip), model files, or a network spec.\n"
          "  --arch SPEC   show the layers of SPEC for one-channel images\n"
          "  --input HxW   their height and width, as `mnist train --data` would\n"
          "                build it for such images (default 28x28)\n"
          "  --json        machine-readable output, one object per line\n",
          f);
}

static void print_meta_text(const struct cnn_model *m) {
    const char *ds = cnn_model_meta(m, "dataset"), *n = cnn_model_meta(m, "train_images");
    const char *ep = cnn_model_meta(m, "epochs"), *va = cnn_model_meta(m, "val_acc");
    const char *date = cnn_model_meta(m, "date");
    const double acc = va ? strtod(va, NULL) : -1.0;
    printf("  trained on %s (%s images), %s epochs, ", ds ? ds : "?", n ? n : "?", ep ? ep : "?");
    if (acc >= 0)
        printf("validation accuracy %.2f%%, %s\n", 100.0 * acc, date ? date : "date unknown");
    else
        printf("no validation, %s\n", date ? date : "date unknown");
    printf("  classes:");
    for (int i = 0; i < cnn_model_n_classes(m); i++) printf(" %s", cnn_model_class_name(m, i));
    printf("\n  metadata:\n");
    for (int i = 0; i < cnn_model_meta_count(m); i++) {
        const char *k, *v;
        cnn_model_meta_at(m, i, &k, &v);
        printf("    %s = %s\n", k, v);
    }
}

/* The n characters at s as a side of 1..4096 (the IDX loader's bound): digits only. */
static int parse_side(const char *s, size_t n, int *out) {
    int v = 0;
    if (n < 1 || n > 4) return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = 10 * v + (s[i] - '0');
    }
    if (v < 1 || v > 4096) return -1;
    *out = v;
    return 0;
}

/* "HxW" into *h, *w. 0, or -1 after the error. */
static int parse_input_size(const char *s, int *h, int *w) {
    const char *x = strchr(s, 'x');
    if (x && !parse_side(s, (size_t)(x - s), h) && !parse_side(x + 1, strlen(x + 1), w)) return 0;
    cli_err("--input: '%s' is not HEIGHTxWIDTH with each side in [1, 4096], e.g. 28x28", s);
    return -1;
}

/* The layer table of spec for 1 x h x w inputs. 0, or 2 after the error. */
static int info_arch(const char *spec, int h, int w, int json) {
    struct cnn_model *net;
    if (cli_model_for_size(spec, h, w, "--arch", NULL, &net) != CNN_OK) return 2;
    if (json) {
        cli_json_summary(stdout, net);
        printf("\n");
    } else {
        printf("spec: %s\n", cnn_model_spec(net));
        cli_print_summary(stdout, net);
    }
    cnn_model_free(net);
    return 0;
}

static int info_model(const char *path, int json) {
    struct cnn_model *net;
    if (cnn_model_load(path, &net) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    float mean, std;
    cnn_model_get_norm(net, &mean, &std);
    const unsigned long fp = cli_model_fingerprint(net);
    if (json) {
        printf("{\"file\":");
        cli_json_str(stdout, path);
        printf(",\"kind\":\"model\",\"network\":");
        cli_json_summary(stdout, net);
        printf(",\"norm\":{\"mean\":%.6f,\"std\":%.6f},\"classes\":[", (double)mean,
               (double)std);
        for (int i = 0; i < cnn_model_n_classes(net); i++) {
            printf("%s", i ? "," : "");
            cli_json_str(stdout, cnn_model_class_name(net, i));
        }
        printf("],\"meta\":");
        cli_json_meta(stdout, net);
        printf(",\"weights_crc32\":\"%08lx\",\"typicality\":%s}\n", fp,
               cnn_model_has_typicality(net) ? "true" : "false");
    } else {
        printf("%s: model\n  spec: %s\n", path, cnn_model_spec(net));
        print_meta_text(net);
        printf("  input normalisation: (pixel/255 - %.4f) / %.4f\n", (double)mean, (double)std);
        printf("  weights fingerprint (crc32): %08lx\n", fp);
        printf("  typicality: %s\n",
               cnn_model_has_typicality(net)
                   ? "yes (predict and serve call letters and scribbles unsure)"
                   : "none (confidence alone decides \"unsure\")");
        cli_print_summary(stdout, net);
    }
    cnn_model_free(net);
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
                                         {"input", required_argument, 0, 'i'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int json = 0, ch, h = 28, w = 28;
    const char *arch = NULL, *input = NULL;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":ha:", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': json = 1; break;
        case 'a': arch = optarg; break;
        case 'i':
            if (parse_input_size(optarg, &h, &w)) return 2;
            input = optarg;
            break;
        case 'h': usage(stdout); return 0;
        default: cli_bad_option(argc, argv, ch); cli_usage_hint("info"); return 2;
        }
    }
    if (arch) return info_arch(arch, h, w, json);
    if (input) {
        cli_err("--input: goes with --arch (a file says its own size)");
        cli_usage_hint("info");
        return 2;
    }
    if (optind >= argc) {
        cli_err("info: no file given");
        cli_usage_hint("info");
        return 2;
    }
    int status = 0;
    for (int i = optind; i < argc; i++) {
        const int r =
            cli_is_model_file(argv[i]) ? info_model(argv[i], json) : info_idx(argv[i], json);
        status = r ? r : status;
    }
    return status;
}
