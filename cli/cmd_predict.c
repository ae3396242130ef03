/*
 * cmd_predict.c - `mnist predict`: classify a person's own digit images.
 * Each image is decoded and prepared the way MNIST was made (src/data/image.c), then classified.
 * One line per image (or one JSON object with --json). A bad file is reported and skipped;
 * the exit status is 1 at the end if any file failed.
 */
#include <dirent.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli.h"

#define STDIN_MAX_BYTES (256u << 20)

static void usage(FILE *f) {
    fputs("usage: mnist predict --model FILE [OPTIONS] IMAGE|DIR|- ...\n"
          "Classifies PNG, JPEG, BMP, GIF, TGA and PGM/PPM images of single digits, dark ink on\n"
          "light paper or light on dark. A directory means every image in it; - reads stdin.\n"
          "  --model FILE              a trained model (required)\n"
          "  --top K                   probabilities listed per image (default 3)\n"
          "  --json                    one JSON object per image: file, label, confidence, top,\n"
          "                            typicality, unsure, reason, digits, box\n"
          "  --min-confidence P        below this probability the answer is \"unsure\" (0..1,\n"
          "                            default 0.35); so is a picture of several digits\n"
          "  --min-typicality T        ... and below this typicality: the share of the model's\n"
          "                            validation digits less like its training digits than the\n"
          "                            picture (0..1, default 0.002; a letter is usually below)\n"
          "  --show                    print the 28x28 image the model saw, as text (on stderr\n"
          "                            with --json)\n"
          "  --save-preprocessed DIR   write those 28x28 images as PNG files, DIR/NAME.png\n"
          "                            (a NAME seen twice: NAME-2.png, NAME-3.png, ...)\n",
          f);
}

/* The files --save-preprocessed wrote in this run, so that two inputs with the same base name
 * (a/7.png and b/7.png) do not overwrite each other: the second becomes 7.png-2.png. */
struct saved_names {
    char **path;
    int n, cap;
};

struct opts {
    struct cnn_model *net;
    struct cnn_ctx *ctx; /* one image at a time */
    int top, json, show;
    float min_confidence, min_typicality;
    const char *save_dir;
    struct saved_names *saved;
};

static int was_saved(const struct saved_names *sv, const char *path) {
    for (int i = 0; i < sv->n; i++)
        if (!strcmp(sv->path[i], path)) return 1;
    return 0;
}

static int remember_saved(struct saved_names *sv, const char *path) {
    if (sv->n == sv->cap) {
        const int cap = sv->cap ? 2 * sv->cap : 16;
        char **p = realloc(sv->path, (size_t)cap * sizeof *p);
        if (!p) return -1;
        sv->path = p;
        sv->cap = cap;
    }
    return (sv->path[sv->n] = strdup(path)) ? (sv->n++, 0) : -1;
}

static int is_image_name(const char *name) {
    static const char *const ext[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif",
                                      ".tga", ".pgm", ".ppm", ".pnm"};
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (!strcasecmp(dot, ext[i])) return 1;
    return 0;
}

static void show(FILE *f, const uint8_t *px) {
    static const char ramp[] = " .:-=+*#%@";
    for (int y = 0; y < 28; y++) {
        for (int x = 0; x < 28; x++) {
            const char ch = ramp[px[y * 28 + x] * 9 / 255];
            fputc(ch, f);
            fputc(ch, f);
        }
        fputc('\n', f);
    }
}

static int save_png(const struct opts *o, const char *name, const uint8_t *px) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s.png", o->save_dir, base);
    for (int k = 2; n > 0 && (size_t)n < sizeof path && was_saved(o->saved, path); k++)
        n = snprintf(path, sizeof path, "%s/%s-%d.png", o->save_dir, base, k);
    if (n < 0 || (size_t)n >= sizeof path) {
        cli_err("%s: output path too long", name);
        return 1;
    }
    if (remember_saved(o->saved, path) != 0) {
        cli_err("%s: out of memory", name);
        return 1;
    }
    if (cnn_image_write_png(path, px, 28, 28) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    return 0;
}

/* The classes of probs (k of them) by probability, most probable first, into order. */
static void rank_classes(const float *probs, int k, int *order) {
    for (int i = 0; i < k; i++) order[i] = i;
    for (int i = 0; i < k; i++) /* selection sort by probability, k is 10 */
        for (int j = i + 1; j < k; j++)
            if (probs[order[j]] > probs[order[i]]) {
                const int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
}

/* One image's answer: the best class, or "unsure" with the reason and the best guess. */
static void print_answer(const struct opts *o, const char *name, const float *probs,
                         float typicality, const int *order, int k,
                         const struct cnn_image_found *found) {
    const int top = o->top < k ? o->top : k;
    char why[96];
    const int unsure = cli_unsure(probs, k, found->objects, typicality, o->min_confidence,
                                  o->min_typicality, why, sizeof why);
    if (o->json) {
        printf("{\"file\":");
        cli_json_str(stdout, name);
        printf(",\"label\":%d,\"confidence\":%.6f,\"top\":[", order[0], (double)probs[order[0]]);
        for (int i = 0; i < top; i++)
            printf("%s{\"label\":%d,\"p\":%.6f}", i ? "," : "", order[i], (double)probs[order[i]]);
        if (typicality >= 0.0f)
            printf("],\"typicality\":%.6f", (double)typicality);
        else
            printf("],\"typicality\":null");
        printf(",\"unsure\":%s", unsure ? "true" : "false");
        if (unsure) printf(",\"reason\":\"%s\"", why);
        printf(",\"digits\":%d,\"box\":[%d,%d,%d,%d]}\n", found->objects, found->x0, found->y0,
               found->x1, found->y1);
        return;
    }
    if (unsure)
        printf("%s: unsure, %s; best guess %d (%.1f%%)  top:", name, why, order[0],
               100.0 * probs[order[0]]);
    else
        printf("%s: %d (%.1f%%)  top:", name, order[0], 100.0 * probs[order[0]]);
    for (int i = 0; i < top; i++)
        printf("%s %d %.1f%%", i ? "," : "", order[i], 100.0 * probs[order[i]]);
    printf("\n");
}

/* Classify one decoded image and print the result. Returns 0 or 1 (error). */
static int classify(const struct opts *o, const char *name, const struct cnn_image *img) {
    uint8_t px[28 * 28];
    struct cnn_image_found found = {sizeof found, 0, 0, 0, 0, 0};
    const int rc = cnn_image_to_mnist_found(img, px, &found);
    if (rc == CNN_ERR_NODIGIT) {
        if (o->json) {
            printf("{\"file\":");
            cli_json_str(stdout, name);
            printf(",\"label\":null,\"confidence\":0,\"top\":[],\"unsure\":true,"
                   "\"reason\":\"no digit found\",\"digits\":0,\"note\":\"no digit found\"}\n");
        } else {
            printf("%s: no digit found\n", name);
        }
        return 0;
    }
    if (rc != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    float probs[CNN_MAX_CLASSES] = {0}, typicality;
    if (cli_predict_one(o->net, o->ctx, px, probs, &typicality) != CNN_OK) {
        cli_err("%s: %s", name, cnn_errmsg());
        return 1;
    }
    const int k = cnn_model_n_classes(o->net) < CNN_MAX_CLASSES ? cnn_model_n_classes(o->net)
                                                              : CNN_MAX_CLASSES;
    int order[CNN_MAX_CLASSES] = {0};
    rank_classes(probs, k, order);
    print_answer(o, name, probs, typicality, order, k, &found);
    if (o->show) show(o->json ? stderr : stdout, px); /* stdout stays JSON lines with --json */
    fflush(stdout);
    return o->save_dir ? save_png(o, name, px) : 0;
}

static int predict_stdin(const struct opts *o) {
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (len == cap) {
            if (cap >= STDIN_MAX_BYTES) {
                free(buf);
                cli_err("<stdin>: more than %u MB", STDIN_MAX_BYTES >> 20);
                return 1;
            }
            uint8_t *p = realloc(buf, cap * 2);
            if (!p) break;
            buf = p;
            cap *= 2;
        }
        const size_t n = fread(buf + len, 1, cap - len, stdin);
        if (n == 0) break;
        len += n;
    }
    if (!buf) {
        cli_err("<stdin>: out of memory");
        return 1;
    }
    struct cnn_image img;
    int status = 1;
    if (cnn_image_decode(buf, len, "<stdin>", &img) == CNN_OK) {
        status = classify(o, "<stdin>", &img);
        cnn_image_free(&img);
    } else {
        cli_err("%s", cnn_errmsg());
    }
    free(buf);
    return status;
}

static int predict_file(const struct opts *o, const char *path) {
    struct cnn_image img;
    if (cnn_image_load(path, &img) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    const int status = classify(o, path, &img);
    cnn_image_free(&img);
    return status;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int predict_dir(const struct opts *o, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        cli_err("%s: cannot open directory", dir);
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int status = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || !is_image_name(e->d_name)) continue;
        if (n == cap) {
            char **p = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            if (!p) break;
            names = p;
        }
        size_t dl = strlen(dir);
        while (dl > 1 && dir[dl - 1] == '/') dl--; /* "examples/" -> "examples/x.png" */
        const size_t len = dl + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len))) break;
        snprintf(names[n++], len, "%.*s/%s", (int)dl, dir, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        status |= predict_file(o, names[i]);
        free(names[i]);
    }
    free(names);
    if (n == 0) {
        cli_err("%s: no image files in this directory", dir);
        return 1;
    }
    return status;
}

/* Reads the options into o and *model; returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, struct opts *o, const char **model) {
    /* clang-format off */
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"top", required_argument, 0, 'k'},
        {"json", no_argument, 0, 'j'},        {"show", no_argument, 0, 's'},
        {"save-preprocessed", required_argument, 0, 'p'},
        {"min-confidence", required_argument, 0, 'c'},
        {"min-typicality", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    /* clang-format on */
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            if (*model) {
                /* a second model would silently replace the first */
                cli_err("predict: one --model (given '%s' and '%s'); `mnist eval` averages "
                        "several",
                        *model, optarg);
                return 2;
            }
            *model = optarg;
            break;
        case 'k':
            if (cli_int("--top", optarg, 1, CNN_MAX_CLASSES, &o->top)) return 2;
            break;
        case 'j':
            o->json = 1;
            break;
        case 's':
            o->show = 1;
            break;
        case 'p':
            o->save_dir = optarg;
            break;
        case 'c':
            if (cli_float("--min-confidence", optarg, 0.0, 1.0, &o->min_confidence)) return 2;
            break;
        case 't':
            if (cli_float("--min-typicality", optarg, 0.0, 1.0, &o->min_typicality)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: cli_bad_option(argc, argv, ch); cli_usage_hint("predict"); return 2;
        }
    }
    if (!*model || optind >= argc) {
        cli_err(*model ? "predict: no image given" : "predict: --model is required");
        cli_usage_hint("predict");
        return 2;
    }
    struct stat st;
    if (o->save_dir && (stat(o->save_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        cli_err("--save-preprocessed: %s is not a directory", o->save_dir);
        return 2;
    }
    return -1;
}

/* Loads the model and a context for one image into o; 0, or 1 with the error said. */
static int open_model(const char *model, struct opts *o) {
    if (cnn_model_load(model, &o->net) != CNN_OK) {
        cli_err("%s", cnn_errmsg());
        return 1;
    }
    if (cnn_ctx_new(o->net, 1, 0, &o->ctx) != CNN_OK) {
        cli_err("%s: %s", model, cnn_errmsg());
        return 1;
    }
    int c, h, w;
    cnn_model_input_shape(o->net, &c, &h, &w);
    if (c != 1 || h != 28 || w != 28 || cnn_model_n_classes(o->net) > CNN_MAX_CLASSES) {
        cli_err("%s: expects %dx%dx%d inputs and %d classes; predict needs 1x28x28 and at most %d",
                model, c, h, w, cnn_model_n_classes(o->net), CNN_MAX_CLASSES);
        return 1;
    }
    return 0;
}

int cmd_predict(int argc, char **argv) {
    struct saved_names saved = {0};
    struct opts o = {NULL, NULL,  3, 0, 0, (float)CLI_MIN_CONFIDENCE, (float)CLI_MIN_TYPICALITY,
                     NULL, &saved};
    const char *model = NULL;
    int status = parse_options(argc, argv, &o, &model);
    if (status >= 0) return status;
    cli_reuse_heap();
    const int opened = !open_model(model, &o);
    status = !opened;
    for (int i = optind; opened && i < argc; i++) {
        struct stat st;
        if (!strcmp(argv[i], "-"))
            status |= predict_stdin(&o);
        else if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
            status |= predict_dir(&o, argv[i]);
        else
            status |= predict_file(&o, argv[i]);
    }
    cnn_ctx_free(o.ctx);
    cnn_model_free(o.net);
    for (int i = 0; i < saved.n; i++) free(saved.path[i]);
    free(saved.path);
    return status;
}
