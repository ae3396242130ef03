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
    int orientation;   /* 2..8: stored turned as a phone does, with this EXIF tag (JPEG) */
    double keystone;   /* perspective: the page's top edge this much narrower than its bottom,
                        * the desk showing beside it */
    int ruled;         /* 1: lined paper, 2: squared paper (light blue lines under the ink) */
    double tilt;       /* ... the lines turned by this slope (0: level with the picture) */
    int pencil;        /* graphite on grey paper: about a third of the contrast of ink */
    double spot;       /* uneven light: a lamp at a random place, this much darker at the
                        * far corner (quadratic fall-off) */
};

/* ---- EXIF orientation, as cameras write it ------------------------------------------------ */

/* Where the picture's pixel (X,Y) is stored, for EXIF orientation o (1..8) of a picture of
 * pw x ph: *a, *b (column, row) in the stored image, which is ph x pw for o >= 5. Written from
 * the specification's words for each value ("the 0th row is the visual ..., the 0th column is
 * the visual ..."). */
static void exif_stored_at(int o, int X, int Y, int pw, int ph, int *a, int *b) {
    switch (o) {
    case 2: *a = pw - 1 - X, *b = Y; break;          /* row 0 top, column 0 right */
    case 3: *a = pw - 1 - X, *b = ph - 1 - Y; break; /* row 0 bottom, column 0 right */
    case 4: *a = X, *b = ph - 1 - Y; break;          /* row 0 bottom, column 0 left */
    case 5: *a = Y, *b = X; break;                   /* row 0 left, column 0 top */
    case 6: *a = Y, *b = pw - 1 - X; break;          /* row 0 right, column 0 top */
    case 7: *a = ph - 1 - Y, *b = pw - 1 - X; break; /* row 0 right, column 0 bottom */
    case 8: *a = ph - 1 - Y, *b = X; break;          /* row 0 left, column 0 bottom */
    default: *a = X, *b = Y; break;                  /* 1: row 0 top, column 0 left */
    }
}

/* A picture px (ph, pw, c channels) as a camera with orientation o stores it: a new buffer
 * (*sh, *sw, c). */
static uint8_t *exif_store(const uint8_t *px, int pw, int ph, int c, int o, int *sw, int *sh) {
    *sw = o >= 5 ? ph : pw, *sh = o >= 5 ? pw : ph;
    uint8_t *st = malloc((size_t)pw * ph * c);
    RENDER_CHECK(st);
    for (int Y = 0; Y < ph; Y++)
        for (int X = 0; X < pw; X++) {
            int a, b;
            exif_stored_at(o, X, Y, pw, ph, &a, &b);
            memcpy(st + ((size_t)b * *sw + a) * c, px + ((size_t)Y * pw + X) * c, (size_t)c);
        }
    return st;
}

/* v as a size-byte unsigned integer at f, big-endian or little-endian. */
static void put_uint(uint8_t *f, uint32_t v, int size, int big) {
    for (int i = 0; i < size; i++) f[i] = (uint8_t)(v >> (8 * (big ? size - 1 - i : i)));
}

/* A JPEG APP1 segment holding EXIF with one tag, Orientation = o: FF E1, its length, "Exif\0\0",
 * a TIFF header in Motorola (big) or Intel byte order, IFD0 with the one entry (SHORT, count 1),
 * no next IFD. 36 bytes; the TIFF part (an eXIf chunk's content) starts at byte 10. */
static void exif_app1(uint8_t seg[36], int o, int big) {
    memset(seg, 0, 36);
    seg[0] = 0xff, seg[1] = 0xe1, seg[3] = 34; /* the length counts itself, not the marker */
    memcpy(seg + 4, "Exif\0\0", 6);
    uint8_t *tiff = seg + 10;
    memcpy(tiff, big ? "MM" : "II", 2);
    put_uint(tiff + 2, 42, 2, big);
    put_uint(tiff + 4, 8, 4, big); /* IFD0 right after the header */
    uint8_t *ifd = tiff + 8;
    put_uint(ifd, 1, 2, big);          /* one entry: */
    put_uint(ifd + 2, 0x0112, 2, big); /*   tag Orientation */
    put_uint(ifd + 4, 3, 2, big);      /*   type SHORT */
    put_uint(ifd + 6, 1, 4, big);      /*   count 1 */
    put_uint(ifd + 10, (uint32_t)o, 2, big); /* value, in the first 2 of 4 bytes; next IFD 0 */
}

/* m (a JPEG) with an EXIF APP1 segment for orientation o inserted after its SOI marker. */
static void jpeg_add_exif(struct mem *m, int o, int big) {
    uint8_t seg[36];
    exif_app1(seg, o, big);
    RENDER_CHECK(m->len >= 2 && m->p[0] == 0xff && m->p[1] == 0xd8);
    struct mem n = {0};
    mem_put(&n, m->p, 2);
    mem_put(&n, seg, 36);
    mem_put(&n, m->p + 2, (int)(m->len - 2));
    free(m->p);
    *m = n;
}

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

/* Canvas pixel (x, y)'s centre on the page, across: with a keystone the page narrows linearly
 * towards the top, around the canvas's middle. */
static double page_x(const struct photo *ph, int x, int y) {
    if (ph->keystone <= 0) return x + 0.5;
    const double row = 1 - ph->keystone * (1 - (y + 0.5) / ph->h); /* the row's scale */
    return ph->w / 2.0 + (x + 0.5 - ph->w / 2.0) / row;
}

/* Coverage (0..1) of a 1.2 px ruled line, lines every `pitch` px from offset 0. */
static double ruling(double at, double pitch) {
    const double d = fabs(at - pitch * floor(at / pitch + 0.5)); /* to the nearest line */
    return d < 0.6 ? 0.8 : d < 1.2 ? 0.8 * (1.2 - d) / 0.6 : 0;
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
            const double u = bx0 + (page_x(ph, x, y) - px) / s - 0.5;
            const double v = by0 + (y + 0.5 - py) / s - 0.5;
            ink[y * w + x] = (float)sample(d, u, v);
        }
    if (ph->speck) { /* 3x3 speck, as dark as the ink, in the corner farthest from the digit */
        const int sx = px + span_x / 2 < w / 2.0 ? w - 8 : 5;
        const int sy = py + span_y / 2 < h / 2.0 ? h - 8 : 5;
        for (int y = sy; y < sy + 3; y++)
            for (int x = sx; x < sx + 3; x++) ink[y * w + x] = 1.0f;
    }
    blur_plane(ink, w, h, ph->blur);
    /* paper: tint (R,G,B) * brightness; ink: dark blue; desk: dark gray. Pencil: grey paper,
     * graphite. Ruled lines: light blue, about two across the digit's height. */
    const double tint_ink[3] = {1.0, 0.96, 0.86}, inkc_ink[3] = {0.18, 0.2, 0.35};
    const double tint_pencil[3] = {0.8, 0.8, 0.78}, inkc_pencil[3] = {0.62, 0.62, 0.64};
    const double *tint = ph->pencil ? tint_pencil : tint_ink;
    const double *inkc = ph->pencil ? inkc_pencil : inkc_ink;
    const double linec[3] = {0.62, 0.75, 0.95}, pitch = span_y * 0.45;
    const double gx = (unif() - 0.5) * 2 * ph->ramp, gy = (unif() - 0.5) * 2 * ph->ramp;
    double lamp_x = 0, lamp_y = 0;
    if (ph->spot > 0) lamp_x = unif() * w, lamp_y = unif() * h;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    RENDER_CHECK(rgb);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double light = 0.82 * (1 + gx * (x - w / 2.0) / w + gy * (y - h / 2.0) / h);
            light *= 1 - ph->shadow / (1 + exp(-(x + 0.3 * y - 0.55 * w) / 3.0));
            if (ph->spot > 0) {
                const double fx = fmax(lamp_x, w - lamp_x), fy = fmax(lamp_y, h - lamp_y);
                const double dx = x - lamp_x, dy = y - lamp_y;
                light *= 1 - ph->spot * (dx * dx + dy * dy) / (fx * fx + fy * fy);
            }
            const double xs = page_x(ph, x, y) - 0.5; /* x itself without a keystone */
            const int page = xs >= ph->desk * w && xs < w - ph->desk * w && y >= ph->desk * h &&
                             y < h - ph->desk * h && (ph->keystone <= 0 || (xs >= 0 && xs < w));
            double line = 0; /* how much of a ruled line covers this pixel */
            const double across = ph->tilt * (xs - w / 2.0), down = ph->tilt * (y - h / 2.0);
            if (ph->ruled) line = fmax(line, ruling(y + 0.5 - py + across, pitch));
            if (ph->ruled == 2) line = fmax(line, ruling(xs + 0.5 - px - down, pitch));
            const double a = ink[y * w + x] > 1 ? 1 : ink[y * w + x];
            for (int c = 0; c < 3; c++) {
                double val;
                const double paper = tint[c] * (1 - line + line * linec[c]);
                if (ph->light_on_dark)
                    val = 255 * (0.08 + 0.85 * a);
                else if (!page)
                    val = 255 * light * 0.2;
                else
                    val = 255 * light * paper * (1 - a + a * inkc[c]);
                val += ph->noise * gauss();
                rgb[((size_t)y * w + x) * 3 + c] = (uint8_t)(val < 0     ? 0
                                                             : val > 255 ? 255
                                                                         : val + 0.5);
            }
        }
    struct mem m = {0};
    if (ph->quality > 0 && ph->orientation > 1) {
        int sw, sh;
        uint8_t *st = exif_store(rgb, w, h, 3, ph->orientation, &sw, &sh);
        RENDER_CHECK(stbi_write_jpg_to_func(mem_put, &m, sw, sh, 3, st, ph->quality));
        jpeg_add_exif(&m, ph->orientation, ph->orientation & 1);
        free(st);
    } else if (ph->quality > 0) {
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

/* ---- pen strokes ------------------------------------------------------------------------- */

/* A glyph: up to 8 straight strokes, (x0, y0, x1, y1) each, in a unit box (0,0 top left). */
struct glyph {
    const char *name;
    int n;
    double seg[8][4];
};
static const struct glyph glyphs[] = {
    {"7", 2, {{0.15, 0.1, 0.85, 0.1}, {0.85, 0.1, 0.4, 0.9}}},
    {"1", 2, {{0.55, 0.1, 0.55, 0.9}, {0.55, 0.1, 0.35, 0.3}}},
    {"4", 3, {{0.65, 0.9, 0.65, 0.1}, {0.65, 0.1, 0.2, 0.65}, {0.2, 0.65, 0.85, 0.65}}},
    {"X", 2, {{0.15, 0.1, 0.85, 0.9}, {0.85, 0.1, 0.15, 0.9}}},
    {"A", 3, {{0.15, 0.9, 0.5, 0.1}, {0.5, 0.1, 0.85, 0.9}, {0.3, 0.58, 0.7, 0.58}}},
    {"H", 3, {{0.2, 0.1, 0.2, 0.9}, {0.8, 0.1, 0.8, 0.9}, {0.2, 0.5, 0.8, 0.5}}},
    {"K", 3, {{0.25, 0.1, 0.25, 0.9}, {0.8, 0.1, 0.25, 0.55}, {0.4, 0.45, 0.8, 0.9}}},
    {"M", 4, {{0.15, 0.9, 0.15, 0.1}, {0.15, 0.1, 0.5, 0.6}, {0.5, 0.6, 0.85, 0.1}, {0.85, 0.1, 0.85, 0.9}}},
    {"W", 4, {{0.1, 0.1, 0.3, 0.9}, {0.3, 0.9, 0.5, 0.35}, {0.5, 0.35, 0.7, 0.9}, {0.7, 0.9, 0.9, 0.1}}},
    {"E", 4, {{0.25, 0.1, 0.25, 0.9}, {0.25, 0.1, 0.8, 0.1}, {0.25, 0.5, 0.7, 0.5}, {0.25, 0.9, 0.8, 0.9}}},
};

/* Distance from (x,y) to the segment (x0,y0)-(x1,y1). */
static double segment_distance(double x, double y, const double s[4]) {
    const double dx = s[2] - s[0], dy = s[3] - s[1], len2 = dx * dx + dy * dy;
    double t = len2 > 0 ? ((x - s[0]) * dx + (y - s[1]) * dy) / len2 : 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    const double ex = s[0] + t * dx - x, ey = s[1] + t * dy - y;
    return sqrt(ex * ex + ey * ey);
}

/* Draw glyph g with a pen `width` px wide into the box (bx, by, bw, bh) of a gray canvas
 * (h, w): coverage = clamp(width/2 + 0.5 - distance, 0, 1), so a 1 px pen covers one pixel
 * across. Ink is black on white, or white on black with light_on_dark; strokes only darken
 * (or lighten) what is there, so several glyphs can share a canvas. */
static void draw_glyph(uint8_t *canvas, int w, int h, const struct glyph *g, double bx,
                       double by, double bw, double bh, double width, int light_on_dark) {
    const double r = width / 2 + 0.5;
    for (int k = 0; k < g->n; k++) {
        const double s[4] = {bx + g->seg[k][0] * bw, by + g->seg[k][1] * bh,
                             bx + g->seg[k][2] * bw, by + g->seg[k][3] * bh};
        const int x0 = (int)fmax(0, floor(fmin(s[0], s[2]) - r - 1));
        const int x1 = (int)fmin(w - 1, ceil(fmax(s[0], s[2]) + r + 1));
        const int y0 = (int)fmax(0, floor(fmin(s[1], s[3]) - r - 1));
        const int y1 = (int)fmin(h - 1, ceil(fmax(s[1], s[3]) + r + 1));
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                double cov = r - segment_distance(x + 0.5, y + 0.5, s);
                cov = cov < 0 ? 0 : cov > 1 ? 1 : cov;
                uint8_t *p = &canvas[(size_t)y * w + x];
                const int v = light_on_dark ? (int)lround(255 * cov) : (int)lround(255 * (1 - cov));
                if (light_on_dark ? v > *p : v < *p) *p = (uint8_t)v;
            }
    }
}

/* A blank canvas (h, w): white, or black with light_on_dark. */
static uint8_t *blank_canvas(int w, int h, int light_on_dark) {
    uint8_t *c = malloc((size_t)w * h);
    RENDER_CHECK(c);
    memset(c, light_on_dark ? 0 : 255, (size_t)w * h);
    return c;
}

#pragma GCC diagnostic pop
#endif
