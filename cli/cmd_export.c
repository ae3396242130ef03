/*
 * cmd_export.c - `mnist export`: a trained model for other runtimes.
 *   mnist export --model FILE --format onnx --out model.onnx [--no-fold-bn]
 *   mnist export --model FILE --format c --out DIR/NAME          (DIR/NAME.h, DIR/NAME.c)
 * The library writes the files (cnn_model_export_onnx, cnn_model_export_c); this reads the
 * flags, checks the output's directory first, and reports.
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: mnist export --model FILE --format onnx|c --out PATH [--no-fold-bn]\n"
          "Writes a trained model for other runtimes. Both take raw pixels 0..255 and give\n"
          "the class probabilities.\n"
          "  --model FILE     a trained model (required)\n"
          "  --format onnx    ONNX (opset 13): input \"pixels\" (N,1,28,28), outputs \"logits\"\n"
          "                   and \"probs\" (N,classes); for ONNX Runtime, Netron, TensorRT...\n"
          "  --format c       C99 source PATH.h and PATH.c (the last part of PATH, a C\n"
          "                   identifier, names the function NAME_predict); no malloc, no\n"
          "                   libraries, batch norm folded in: for microcontrollers\n"
          "  --out PATH       the file (onnx) or the path without extension (c) (required)\n"
          "  --no-fold-bn     onnx: keep batch norm as BatchNormalization nodes instead of\n"
          "                   folding it into the convolution or dense layer before it\n",
          f);
}

int cmd_export(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"format", required_argument, 0, 'f'},
        {"out", required_argument, 0, 'o'},   {"no-fold-bn", no_argument, 0, 'n'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *model = NULL, *format = NULL, *out = NULL;
    int fold = 1, ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model = optarg; break;
        case 'f': format = optarg; break;
        case 'o': out = optarg; break;
        case 'n': fold = 0; break;
        case 'h': usage(stdout); return 0;
        default: cli_bad_option(argc, argv, ch); cli_usage_hint("export"); return 2;
        }
    }
    if (optind < argc) {
        cli_err("export: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!model || !format || !out) {
        cli_err("export: --model, --format and --out are required");
        cli_usage_hint("export");
        return 2;
    }
    const int onnx = !strcmp(format, "onnx");
    if (!onnx && strcmp(format, "c") != 0) {
        cli_err("--format: '%s' is neither 'onnx' nor 'c'", format);
        return 2;
    }
    if (!onnx && !fold) {
        cli_err("--no-fold-bn: only for --format onnx (C source always folds batch norm)");
        return 2;
    }
    if (cli_check_replaced_output("--out", out)) return 2;
    struct cnn_model *m;
    if (cnn_model_load(model, &m) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    const int rc = onnx ? cnn_model_export_onnx(m, out, fold ? CNN_ONNX_FOLD_BN : 0)
                        : cnn_model_export_c(m, out);
    cnn_model_free(m);
    if (rc != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    if (onnx)
        printf("%s: ONNX, opset 13, batch norm %s\n", out, fold ? "folded" : "as nodes");
    else
        printf("%s.h, %s.c: C99 source\n", out, out);
    return 0;
}
