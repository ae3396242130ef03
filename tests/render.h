/*
 * render.h - renders MNIST digits the way a person would photograph them, for the image
 * tests (tests/test_image.c) and the predict-accuracy tool (tools/render_digits.c).
 *
 * Header-only, static functions, its own deterministic generator (rng_state): tests set the
 * state, render, and get the same picture every run. Failure to allocate aborts: this is
 * test scaffolding, not library code.
 */
#ifndef CNN_TEST_RENDER_H
#define CNN_TEST_RENDER_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_image_write.h>

#define RENDER_CHECK(x) \
    do { \
        if (!(x)) { \
            fprintf(stderr, "render.h:%d: %s failed\n", __LINE__, #x); \
            abort(); \
        } \
    } while (0)

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void) { /* splitmix64: this test's own, deterministic per run */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}
static double unif(void) {
    return (double)(rnd() >> 11) / 9007199254740992.0;
}
static double gauss(void) { /* Irwin-Hall(4), rescaled: unit variance, bounded tails */
    return (unif() + unif() + unif() + unif() - 2.0) * sqrt(3.0);
}

/* Growable memory sink for stbi_write_*_to_func. */
struct mem {
    uint8_t *p;
    size_t len, cap;
};
static void mem_put(void *ctx, void *data, int size) {
    struct mem *m = ctx;
    if (m->len + (size_t)size > m->cap) {
        m->cap = (m->len + (size_t)size) * 2;
        m->p = realloc(m->p, m->cap);
        RENDER_CHECK(m->p);
    }
    memcpy(m->p + m->len, data, (size_t)size);
    m->len += (size_t)size;
}

/* ---- the photo renderer ------------------------------------------------------------------- */

struct photo {
    int w, h;
    double scale;      /* MNIST px -> canvas px */
    double noise;      /* sensor noise sigma, gray levels */
    double blur;       /* Gaussian sigma in canvas px */
    int quality;       /* JPEG quality, 0 = keep raw RGB (PPM) */
    double ramp;       /* lighting: brightness changes by up to +-ramp/2 across the page */
    double shadow;     /* a shadow this much darker over the right part, 3 px soft edge */
    double desk;       /* a dark desk this fraction of the width/height around the page */
    int speck;         /* add a 3x3 ink speck in the corner farthest from the digit */
    int light_on_dark; /* 1: light ink on dark (a canvas drawing); 0: dark ink on paper */
};

/* Bilinear sample of a 28x28 digit at (u,v) in MNIST pixel units, 0 outside. */
static double sample(const uint8_t *d, double u, double v) {
    const int x0 = (int)floor(u), y0 = (int)floor(v);
    const double tx = u - x0, ty = v - y0;
    double acc = 0;
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < 2; i++) {
            const int x = x0 + i, y = y0 + j;
            if (x < 0 || x >= 28 || y < 0 || y >= 28) continue;
            acc += d[y * 28 + x] * (i ? tx : 1 - tx) * (j ? ty : 1 - ty);
        }
    return acc / 255.0;
}

/* Separable Gaussian blur of a float plane (h,w) in place. */
static void blur_plane(float *p, int w, int h, double sigma) {
    if (sigma <= 0) return;
    const int r = (int)ceil(3 * sigma);
    double k[64];
    double sum = 0;
    for (int i = -r; i <= r; i++) sum += k[i + r] = exp(-0.5 * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * r; i++) k[i] /= sum;
    float *t = malloc((size_t)w * h * sizeof *t);
    RENDER_CHECK(t);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double a = 0;
            for (int i = -r; i <= r; i++) {
                const int xx = x + i < 0 ? 0 : x + i >= w ? w - 1 : x + i;
                a += k[i + r] * p[y * w + xx];
            }
            t[y * w + x] = (float)a;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double a = 0;
            for (int i = -r; i <= r; i++) {
                const int yy = y + i < 0 ? 0 : y + i >= h ? h - 1 : y + i;
                a += k[i + r] * t[yy * w + x];
            }
            p[y * w + x] = (float)a;
        }
    free(t);
}

/* Render MNIST digit d as an RGB photo: warm-tinted paper lit unevenly (random linear ramps
 * in x and y, each up to +-ramp/2 across the page; optionally a shadow and a desk around the
 * page), bluish ink at ~75% darkness, the digit at a random place on the page (>= 4 px
 * margin), upscaled bilinearly, then blur, Gaussian-ish noise per channel and JPEG. Returns
 * the encoded bytes (JPEG, or PPM when quality is 0). Deterministic given rng_state. */
static struct mem render_photo(const uint8_t *d, const struct photo *ph) {
    const int w = ph->w, h = ph->h;
    int bx0 = 28, by0 = 28, bx1 = -1, by1 = -1; /* the digit's ink box in MNIST px */
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++)
            if (d[y * 28 + x] > 0) {
                if (x < bx0) bx0 = x;
                if (x > bx1) bx1 = x;
                if (y < by0) by0 = y;
                if (y > by1) by1 = y;
            }
    const double s = ph->scale;
    const double mx = 4 + ph->desk * w, my = 4 + ph->desk * h; /* margins */
    const double span_x = (bx1 - bx0 + 2) * s, span_y = (by1 - by0 + 2) * s;
    RENDER_CHECK(span_x + 2 * mx < w && span_y + 2 * my < h);
    /* Canvas position of MNIST pixel (bx0, by0)'s corner. */
    const double px = mx + unif() * (w - 2 * mx - span_x);
    const double py = my + unif() * (h - 2 * my - span_y);
    float *ink = calloc((size_t)w * h, sizeof *ink);
    RENDER_CHECK(ink);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            /* canvas pixel centre -> MNIST coordinates (pixel centres at integers) */
            const double u = bx0 + (x + 0.5 - px) / s - 0.5, v = by0 + (y + 0.5 - py) / s - 0.5;
            ink[y * w + x] = (float)sample(d, u, v);
        }
    if (ph->speck) { /* 3x3 speck, as dark as the ink, in the corner farthest from the digit */
        const int sx = px + span_x / 2 < w / 2.0 ? w - 8 : 5;
        const int sy = py + span_y / 2 < h / 2.0 ? h - 8 : 5;
        for (int y = sy; y < sy + 3; y++)
            for (int x = sx; x < sx + 3; x++) ink[y * w + x] = 1.0f;
    }
    blur_plane(ink, w, h, ph->blur);
    /* paper: tint (R,G,B) * brightness; ink: dark blue; desk: dark gray */
    const double tint[3] = {1.0, 0.96, 0.86}, inkc[3] = {0.18, 0.2, 0.35};
    const double gx = (unif() - 0.5) * 2 * ph->ramp, gy = (unif() - 0.5) * 2 * ph->ramp;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    RENDER_CHECK(rgb);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double light = 0.82 * (1 + gx * (x - w / 2.0) / w + gy * (y - h / 2.0) / h);
            light *= 1 - ph->shadow / (1 + exp(-(x + 0.3 * y - 0.55 * w) / 3.0));
            const int page = x >= ph->desk * w && x < w - ph->desk * w && y >= ph->desk * h &&
                             y < h - ph->desk * h;
            const double a = ink[y * w + x] > 1 ? 1 : ink[y * w + x];
            for (int c = 0; c < 3; c++) {
                double val;
                if (ph->light_on_dark)
                    val = 255 * (0.08 + 0.85 * a);
                else if (!page)
                    val = 255 * light * 0.2;
                else
                    val = 255 * light * tint[c] * (1 - a + a * inkc[c]);
                val += ph->noise * gauss();
                rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(val < 0     ? 0
                                                             : val > 255 ? 255
                                                                         : val + 0.5);
            }
        }
    struct mem m = {0};
    if (ph->quality > 0) {
        RENDER_CHECK(stbi_write_jpg_to_func(mem_put, &m, w, h, 3, rgb, ph->quality));
    } else {
        char head[64];
        const int n = snprintf(head, sizeof head, "P6\n%d %d\n255\n", w, h);
        mem_put(&m, head, n);
        mem_put(&m, rgb, w * h * 3);
    }
    free(rgb);
    free(ink);
    return m;
}

#pragma GCC diagnostic pop
#endif
