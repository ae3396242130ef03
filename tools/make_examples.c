/*
 * make_examples.c - render the sample pictures in examples/ from MNIST test digits.
 *
 * The README shows `mnist predict` on pictures that look like what people really feed it:
 * a phone photo of ink on paper, a clean scan, a drawing on a dark canvas, a sticky note, a
 * page half in a shadow, a thin ballpoint stroke. Each is rendered from one t10k digit, so
 * the true label is known (it is in the file name), and each is checked on the way out: it is
 * read back with cnn_image_load, prepared with cnn_image_to_mnist, and compared with the
 * source digit (Pearson r, allowing MNIST's one-pixel centring slack). A picture that fails
 * the check, or a file over 60 KB, makes the program exit 1. Output is deterministic.
 *
 * Build and run from the repository root (needs data/mnist, e.g. `make data`):
 *   make build/libcnn.a
 *   gcc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc tools/make_examples.c \
 *       build/libcnn.a -lxsmm -ldl -lrt -L/usr/lib/$(gcc -print-multiarch)/openblas-pthread \
 *       -lopenblas -lpng -ljpeg -lexif -lz -lm -lpthread -fopenmp -o build/make_examples
 *   build/make_examples [MNIST_DIR [OUT_DIR]]        (defaults: data/mnist examples)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#endif
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "cnn.h"

#define N_TEST 10000
#define PIX 784
#define MAX_BYTES (60 * 1024)

/* ---- the scene ----------------------------------------------------------------------------- */

struct scene {
    const char *file; /* name under OUT_DIR; .png is gray PNG, .jpg is colour JPEG */
    int index, label; /* t10k index and its label (checked against the labels file) */
    int w, h;
    double scale;    /* MNIST px -> picture px */
    double cx, cy;   /* where the digit's box centre goes, as fractions of w, h */
    double paper[3]; /* paper colour in full light, 0..1 */
    double ink[3];   /* ink reflectance (dark ink) or colour (light ink), 0..1 */
    int light_ink;   /* 1: light ink on a dark ground (paper[] is the ground) */
    double ramp;     /* brightness change across the picture (left dark, right light) */
    double vignette; /* darkening at the corners */
    double shadow;   /* a soft shadow this much darker over the lower left */
    int stroke;      /* > 0: dilate by this many px (marker); < 0: thin to a pen line */
    double blur;     /* Gaussian sigma, px */
    double noise;    /* per channel sigma, levels */
    int quality;     /* JPEG quality */
};

/* clang-format off */
static const struct scene scenes[] = {
    /* file, index, label, w, h, scale, cx, cy, paper, ink, light_ink, ramp, vignette, shadow,
     * stroke, blur, noise, quality */
    {"digit-photo-7.jpg", 0, 7, 320, 240, 6.0, 0.55, 0.5, {0.96, 0.93, 0.84}, {0.15, 0.17, 0.32},
     0, 0.35, 0.35, 0, 0, 1.6, 5, 80},
    {"digit-scan-2.png", 1, 2, 240, 240, 7.0, 0.5, 0.5, {1, 1, 1}, {0.12, 0.12, 0.12},
     0, 0, 0, 0, 0, 0.8, 0, 0},
    {"digit-drawn-3.png", 30, 3, 280, 280, 8.0, 0.5, 0.5, {0, 0, 0}, {1, 1, 1},
     1, 0, 0, 0, 6, 0.6, 0, 0},
    {"digit-tinted-5.jpg", 15, 5, 300, 300, 7.0, 0.45, 0.5, {0.98, 0.92, 0.55}, {0.35, 0.35, 0.38},
     0, 0.25, 0.5, 0, 0, 1.4, 4, 80},
    {"digit-shadow-4.jpg", 6, 4, 320, 240, 5.5, 0.5, 0.5, {0.95, 0.95, 0.93}, {0.12, 0.12, 0.14},
     0, 0.2, 0.25, 0.45, 0, 1.3, 5, 80},
    {"digit-pen-9.jpg", 12, 9, 320, 320, 9.0, 0.5, 0.5, {0.97, 0.97, 0.99}, {0.1, 0.12, 0.35},
     0, 0.2, 0.3, 0, -1, 1.0, 4, 82},
};
/* clang-format on */

/* ---- small helpers ------------------------------------------------------------------------- */

static uint64_t rng = 0x243f6a8885a308d3u;
static double unif(void) { /* splitmix64 */
    uint64_t z = (rng += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}
static double gauss(void) {
    return (unif() + unif() + unif() + unif() - 2.0) * sqrt(3.0);
}

static uint8_t *read_all(const char *path, size_t skip, size_t len) {
    FILE *f = fopen(path, "rb");
    uint8_t *p = malloc(len);
    if (!f || !p || fseek(f, (long)skip, SEEK_SET) != 0 || fread(p, 1, len, f) != len) {
        fprintf(stderr, "make_examples: cannot read %zu bytes from %s\n", len, path);
        exit(1);
    }
    fclose(f);
    return p;
}

/* Bilinear sample of a 28x28 digit at (u,v), pixel centres at integers; 0 outside. */
static double sample(const uint8_t *d, double u, double v) {
    const int x0 = (int)floor(u), y0 = (int)floor(v);
    double acc = 0;
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < 2; i++) {
            const int x = x0 + i, y = y0 + j;
            if (x < 0 || x >= 28 || y < 0 || y >= 28) continue;
            acc += d[y * 28 + x] * (i ? u - x0 : 1 - (u - x0)) * (j ? v - y0 : 1 - (v - y0));
        }
    return acc / 255.0;
}

/* Grey-scale dilation (r > 0) or erosion (r < 0) of p (h,w) with a (2|r|+1)^2 square. */
static void morph(float *p, int w, int h, int r) {
    const int k = abs(r);
    float *t = malloc((size_t)w * h * sizeof *t);
    if (!t) exit(1);
    for (int pass = 0; pass < 2; pass++) {
        const float *src = pass ? t : p;
        float *dst = pass ? p : t;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float acc = src[y * w + x];
                for (int i = -k; i <= k; i++) {
                    const int xx = pass ? x : x + i, yy = pass ? y + i : y;
                    if (xx < 0 || xx >= w || yy < 0 || yy >= h) continue;
                    const float q = src[yy * w + xx];
                    acc = r > 0 ? fmaxf(acc, q) : fminf(acc, q);
                }
                dst[y * w + x] = acc;
            }
    }
    free(t);
}

static void blur(float *p, int w, int h, double sigma) {
    if (sigma <= 0) return;
    const int r = (int)ceil(3 * sigma);
    double k[64], sum = 0;
    for (int i = -r; i <= r; i++) sum += k[i + r] = exp(-0.5 * i * i / (sigma * sigma));
    float *t = malloc((size_t)w * h * sizeof *t);
    if (!t) exit(1);
    for (int pass = 0; pass < 2; pass++) {
        const float *src = pass ? t : p;
        float *dst = pass ? p : t;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double a = 0;
                for (int i = -r; i <= r; i++) {
                    int xx = pass ? x : x + i, yy = pass ? y + i : y;
                    xx = xx < 0 ? 0 : xx >= w ? w - 1 : xx;
                    yy = yy < 0 ? 0 : yy >= h ? h - 1 : yy;
                    a += k[i + r] / sum * src[yy * w + xx];
                }
                dst[y * w + x] = (float)a;
            }
    }
    free(t);
}

static double pearson(const uint8_t *a, const uint8_t *b) {
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < PIX; i++) ma += a[i] / (double)PIX, mb += b[i] / (double)PIX;
    for (int i = 0; i < PIX; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
}

/* Best r of a against b moved by up to one pixel (MNIST centres to whole pixels). */
static double pearson_shift1(const uint8_t *a, const uint8_t *b) {
    double best = -1;
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
            uint8_t t[PIX] = {0};
            for (int y = 0; y < 28; y++)
                for (int x = 0; x < 28; x++)
                    if (y + dy >= 0 && y + dy < 28 && x + dx >= 0 && x + dx < 28)
                        t[y * 28 + x] = b[(y + dy) * 28 + x + dx];
            best = fmax(best, pearson(a, t));
        }
    return best;
}

/* ---- rendering ----------------------------------------------------------------------------- */

/* The picture (h,w,3) of scene s with digit d: coverage a in [0,1] from the upscaled digit
 * (optionally made bolder or thinner), then paper * light * (1 - a + a * ink) for dark ink,
 * or ground + a * (ink - ground) for light ink, then noise. */
static uint8_t *render(const struct scene *s, const uint8_t *d) {
    const int w = s->w, h = s->h;
    float *a = malloc((size_t)w * h * sizeof *a);
    uint8_t *rgb = malloc((size_t)w * h * 3);
    if (!a || !rgb) exit(1);
    /* MNIST digits are centred by mass in 28x28; place the 28x28 frame's centre. */
    const double ox = s->cx * w - 14 * s->scale, oy = s->cy * h - 14 * s->scale;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            a[y * w + x] =
                (float)sample(d, (x + 0.5 - ox) / s->scale - 0.5, (y + 0.5 - oy) / s->scale - 0.5);
    if (s->stroke > 0) morph(a, w, h, s->stroke);
    if (s->stroke < 0) { /* a pen line: keep only the core of the stroke, then thin it */
        for (int i = 0; i < w * h; i++) a[i] = a[i] > 0.75f ? 1.0f : 0.0f;
        morph(a, w, h, -(int)(s->scale / 3));
    }
    blur(a, w, h, s->blur);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const double u = (double)x / w - 0.5, v = (double)y / h - 0.5;
            double light = (1 + s->ramp * u) * (1 - s->vignette * (u * u + v * v) * 2);
            /* a soft shadow over the lower left, its edge running through the middle */
            light *= 1 - s->shadow / (1 + exp(-((0.8 * (v + 0.5) - 0.4) - u) * 40));
            const double c = a[y * w + x] > 1 ? 1 : a[y * w + x];
            for (int k = 0; k < 3; k++) {
                double val = s->light_ink ? s->paper[k] + c * (s->ink[k] - s->paper[k])
                                          : s->paper[k] * light * (1 - c + c * s->ink[k]);
                val = 255 * val + s->noise * gauss();
                rgb[((size_t)y * w + x) * 3 + k] = (uint8_t)(val < 0     ? 0
                                                             : val > 255 ? 255
                                                                         : val + 0.5);
            }
        }
    free(a);
    return rgb;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "data/mnist", *out = argc > 2 ? argv[2] : "examples";
    char path[1024];
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    uint8_t *images = read_all(path, 16, (size_t)N_TEST * PIX);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", dir);
    uint8_t *labels = read_all(path, 8, N_TEST);
    mkdir(out, 0755);
    int bad = 0;
    for (size_t k = 0; k < sizeof scenes / sizeof scenes[0]; k++) {
        const struct scene *s = &scenes[k];
        const uint8_t *d = images + (size_t)s->index * PIX;
        if (labels[s->index] != s->label) {
            fprintf(stderr, "make_examples: t10k #%d is a %d, not a %d\n", s->index,
                    labels[s->index], s->label);
            return 1;
        }
        uint8_t *rgb = render(s, d);
        snprintf(path, sizeof path, "%s/%s", out, s->file);
        int ok;
        if (strstr(s->file, ".png")) { /* gray: luminance of the RGB */
            uint8_t *g = malloc((size_t)s->w * s->h);
            if (!g) return 1;
            for (int i = 0; i < s->w * s->h; i++)
                g[i] = (uint8_t)((299 * rgb[3 * i] + 587 * rgb[3 * i + 1] + 114 * rgb[3 * i + 2] +
                                  500) /
                                 1000);
            ok = stbi_write_png(path, s->w, s->h, 1, g, s->w);
            free(g);
        } else {
            ok = stbi_write_jpg(path, s->w, s->h, 3, rgb, s->quality);
        }
        free(rgb);
        if (!ok) {
            fprintf(stderr, "make_examples: cannot write %s\n", path);
            return 1;
        }
        /* The check: read it back the way `mnist predict` does. */
        struct stat st;
        struct cnn_image img;
        uint8_t prep[PIX];
        int rc = cnn_image_load(path, &img);
        if (rc == CNN_OK) rc = cnn_image_to_mnist(&img, prep);
        cnn_image_free(&img);
        if (rc != CNN_OK || stat(path, &st) != 0) {
            fprintf(stderr, "make_examples: %s: %s\n", path, cnn_errmsg());
            return 1;
        }
        const double r = pearson_shift1(prep, d);
        const int fail = r < 0.8 || st.st_size > MAX_BYTES;
        bad += fail;
        printf("%-22s t10k #%-4d label %d  %dx%d  %6lld bytes  r %.3f%s\n", s->file, s->index,
               s->label, s->w, s->h, (long long)st.st_size, r, fail ? "  FAILED" : "");
    }
    free(images);
    free(labels);
    return bad ? 1 : 0;
}
