/*
 * render_digits.c - render MNIST test digits as a person would photograph them, for
 * measuring `mnist predict` on user-like images (bench/predict_accuracy, tests/test_predict.sh).
 *
 * Usage: build/tools/render_digits MNIST_DIR OUT_DIR N [FIRST [ORIENTATION [KINDS]]]
 * Writes OUT_DIR/t10k-IIIII.{jpg,ppm} for t10k digits FIRST .. FIRST+N-1 and
 * OUT_DIR/labels.txt ("file label kind" per line). The kinds cycle through: a phone photo of
 * ink on tinted, unevenly lit paper (JPEG), the same with a hard shadow, a page on a dark desk,
 * light strokes on a dark canvas (a drawing app), and a clean flat scan (lossless PPM) - each at
 * a random size and place on a larger canvas, with noise and blur (tests/render.h). With KINDS
 * "all" five more follow them: a page photographed at a strong slant (keystone), lined paper,
 * squared paper, a pencil on grey paper, and a lamp's uneven light; KINDS "classic" (the
 * default) is the first five.
 * With ORIENTATION (1..8), every JPEG is stored turned as a camera with that EXIF Orientation
 * stores it, and carries the tag (6: a phone held upright); the PPM scans stay upright.
 * Deterministic: the same arguments give the same files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "../tests/render.h"

static const char *const kinds[] = {"photo",   "shadow", "desk",    "canvas", "scan",
                                    "slanted", "lined",  "squared", "pencil", "lamp"};

/* The photo of kind `kind` (an index into kinds), drawn from the shared random stream. */
static struct photo photo_of_kind(int kind, int orientation) {
    struct photo ph = {.w = 200,
                       .h = 160,
                       .scale = 3 + 2 * unif(),
                       .noise = 6,
                       .blur = 1.0 + 0.5 * unif(),
                       .quality = 70 + (int)(20 * unif()),
                       .ramp = 0.4};
    if (kind == 1) ph.shadow = 0.4, ph.ramp = 0.6;
    if (kind == 2) ph.desk = 0.1, ph.w = 240, ph.h = 190;
    if (kind == 3) ph.light_on_dark = 1;
    if (kind == 4) ph.quality = 0, ph.noise = 2, ph.ramp = 0.1; /* a scan, written as PPM */
    if (kind == 5) ph.keystone = 0.35, ph.w = 240, ph.h = 190;
    if (kind == 6) ph.ruled = 1;
    if (kind == 7) ph.ruled = 2;
    if (kind == 8) ph.pencil = 1, ph.blur += 0.3;
    if (kind == 9) ph.spot = 0.6, ph.ramp = 0.2;
    ph.orientation = orientation;
    return ph;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: render_digits MNIST_DIR OUT_DIR N [FIRST [ORIENTATION [KINDS]]]\n");
        return 2;
    }
    const char *out = argv[2];
    const int n = atoi(argv[3]), first = argc > 4 ? atoi(argv[4]) : 0;
    const int orientation = argc > 5 ? atoi(argv[5]) : 1;
    if (orientation < 1 || orientation > 8) {
        fprintf(stderr, "render_digits: ORIENTATION %s is not 1..8\n", argv[5]);
        return 2;
    }
    const char *which = argc > 6 ? argv[6] : "classic";
    if (strcmp(which, "classic") && strcmp(which, "all")) {
        fprintf(stderr, "render_digits: KINDS %s is not classic or all\n", which);
        return 2;
    }
    const int n_kinds = strcmp(which, "all") ? 5 : 10;
    struct cnn_dataset ds;
    if (cnn_dataset_load_dir(argv[1], "test", &ds) != CNN_OK) {
        fprintf(stderr, "render_digits: %s\n", cnn_errmsg());
        return 1;
    }
    if (n < 1 || first < 0 || first + n > ds.n) {
        fprintf(stderr, "render_digits: digits %d..%d are not all in the test set (%d)\n", first,
                first + n - 1, ds.n);
        cnn_dataset_free(&ds);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/labels.txt", out);
    FILE *labels = fopen(path, "w");
    if (!labels) {
        fprintf(stderr, "render_digits: cannot write %s\n", path);
        cnn_dataset_free(&ds);
        return 1;
    }
    int status = 0;
    for (int k = 0; k < n; k++) {
        const int i = first + k;
        rng_state = 0x5eed0000u + (uint64_t)i;
        const int kind = k % n_kinds;
        struct photo ph = photo_of_kind(kind, orientation);
        struct mem m = render_photo(ds.images + (size_t)i * 784, &ph);
        const char *ext = ph.quality ? "jpg" : "ppm";
        snprintf(path, sizeof path, "%s/t10k-%05d.%s", out, i, ext);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(m.p, 1, m.len, f) != m.len || fclose(f) != 0) {
            fprintf(stderr, "render_digits: cannot write %s\n", path);
            status = 1;
        } else {
            fprintf(labels, "%s %d %s\n", path, ds.labels[i], kinds[kind]);
        }
        free(m.p);
    }
    fclose(labels);
    cnn_dataset_free(&ds);
    return status;
}
