/*
 * mnist.c - main(): dispatch to the subcommands. See `mnist help`.
 */
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fputs("usage: mnist COMMAND [OPTIONS]\n"
          "\n"
          "commands:\n"
          "  train     train a network on MNIST (or any IDX set of the same shape)\n"
          "  eval      accuracy, per-class metrics, confusion matrix, worst mistakes\n"
          "  predict   classify your own digit images (PNG, JPEG, BMP, GIF, TGA, PGM)\n"
          "  info      describe IDX files, model files, or a network spec (--arch)\n"
          "  bench     training and inference speed of a network on this machine\n"
          "  serve     a page to draw digits on and a JSON API, over HTTP\n"
          "  export    a model as ONNX or as C source, for other runtimes\n"
          "  report    one HTML page on a model: curves, confusion, mistakes, filters\n"
          "  compare   train and rank several architectures; leaderboard and cost plot\n"
          "\n"
          "`mnist COMMAND --help` shows a command's options.\n",
          f);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict")) return cmd_predict(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "export")) return cmd_export(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "compare")) return cmd_compare(argc - 1, argv + 1);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    cli_err("unknown command '%s'; `mnist help` lists them", cmd);
    return 2;
}
