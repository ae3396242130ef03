/*
 * make_seeds.c - writes the seed corpora under fuzz/corpus/{idx,model,image,spec}/.
 *
 * Run once from the repository root (`make fuzz-seeds`); the output is committed, so the
 * fuzzers never depend on this program. Every seed is small (< 4 KiB) and valid, and is checked
 * by the library's own parser before it is kept: fuzzers mutate from valid inputs, and a seed
 * that does not parse only wastes time. Deterministic: same library, same bytes.
 * What it is not: a test. The regression inputs live in fuzz/regressions/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <stb/stb_image_write.h>

#include "cnn.h"
#include "internal.h" /* m->state: the seeds' batch-norm statistics are written directly */

static const char *dir = "fuzz/corpus";

static void die(const char *what) {
    fprintf(stderr, "make_seeds: %s: %s\n", what, cnn_errmsg());
    exit(1);
}

static void put(const char *sub, const char *name, const void *buf, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    if (len > 4096) {
        fprintf(stderr, "make_seeds: %s is %zu bytes, over 4 KiB\n", path, len);
        exit(1);
    }
}

static uint8_t *gzip(const uint8_t *src, size_t n, size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(1);
    const size_t cap = deflateBound(&zs, (uLong)n) + 32;
    uint8_t *dst = malloc(cap);
    zs.next_in = (Bytef *)(uintptr_t)src;
    zs.avail_in = (uInt)n;
    zs.next_out = dst;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) exit(1);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return dst;
}

/* ---- a tiny "digit": a 7-like stroke, light on dark, h x w ---------------------------------- */
static void draw_digit(uint8_t *g, int w, int h) {
    memset(g, 0, (size_t)w * (size_t)h);
    for (int x = w / 4; x < 3 * w / 4; x++) g[(h / 5) * w + x] = 255, g[(h / 5 + 1) * w + x] = 200;
    for (int y = h / 5; y < 4 * h / 5; y++) {
        const int x = 3 * w / 4 - 1 - (y - h / 5) * (w / 3) / (3 * h / 5);
        g[y * w + x] = 255;
        if (x + 1 < w) g[y * w + x + 1] = 180;
    }
}

/* ---- IDX -------------------------------------------------------------------------------------- */
static void idx_seeds(void) {
    uint8_t buf[4096];
    /* images: n x h x w, then labels: n */
    const int shapes[][3] = {{3, 4, 4}, {1, 28, 28}, {2, 1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s][0], h = shapes[s][1], w = shapes[s][2];
        const uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, (uint8_t)n, 0, 0, 0, (uint8_t)h,
                                 0, 0, 0, (uint8_t)w};
        memcpy(buf, hdr, 16);
        for (int i = 0; i < n; i++) draw_digit(buf + 16 + (size_t)i * h * w, w, h);
        const size_t len = 16 + (size_t)n * h * w;
        char name[64];
        snprintf(name, sizeof name, "images-%dx%dx%d.idx3", n, h, w);
        put("idx", name, buf, len);
        size_t glen;
        uint8_t *gz = gzip(buf, len, &glen);
        snprintf(name, sizeof name, "images-%dx%dx%d.idx3.gz", n, h, w);
        put("idx", name, gz, glen);
        struct cnn_idx idx;
        if (cnn_idx_parse(gz, glen, name, &idx)) die(name);
        cnn_idx_free(&idx);
        free(gz);
    }
    const uint8_t labels[] = {0, 0, 8, 1, 0, 0, 0, 10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    put("idx", "labels-10.idx1", labels, sizeof labels);
    size_t glen;
    uint8_t *gz = gzip(labels, sizeof labels, &glen);
    put("idx", "labels-10.idx1.gz", gz, glen);
    free(gz);
    const uint8_t one[] = {0, 0, 8, 1, 0, 0, 0, 1, 7};
    put("idx", "labels-1.idx1", one, sizeof one);
}

/* ---- model files ---------------------------------------------------------------------------- */
/* The metadata a trained model carries (what the trainer and the CLI write), plus the class
 * names when with_meta is 2. */
static void set_meta(struct cnn_model *m, int with_meta) {
    static const char *const kv[][2] = {
        {"dataset", "mnist"},    {"date", "2024-01-01T00:00:00Z"}, {"epochs", "3"},
        {"val_acc", "0.987000"}, {"train_images", "55000"},
    };
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (cnn_model_set_meta(m, kv[i][0], kv[i][1])) die(kv[i][0]);
    for (int i = 0; with_meta == 2 && i < cnn_model_n_classes(m); i++) {
        char key[32], value[32];
        snprintf(key, sizeof key, "class.%d", i);
        snprintf(value, sizeof value, "class %c", 'a' + i);
        if (cnn_model_set_meta(m, key, value)) die(key);
    }
}

/* A typicality fitted on 100 synthetic h x w images (class i % 10: a bright pixel at a place
 * of its own, over noise), 80 to fit and 20 to calibrate. */
static void fit_typicality(struct cnn_model *m, int h, int w) {
    struct cnn_dataset d = {100, h, w, 10, malloc((size_t)100 * h * w), malloc(100)};
    int idx[100];
    if (!d.images || !d.labels) die("out of memory");
    for (int i = 0; i < 100; i++) {
        for (int q = 0; q < h * w; q++)
            d.images[(size_t)i * h * w + q] = (uint8_t)((i * 7 + q * 13) % 50);
        d.images[(size_t)i * h * w + (i % 10) * (h * w - 1) / 9] = 255;
        d.labels[i] = (uint8_t)(i % 10), idx[i] = i;
    }
    if (cnn_typicality_fit(m, &d, idx, 80, idx + 80, 20, 1)) die("typicality");
    free(d.images);
    free(d.labels);
}

/* with_meta: 0 none, 1 the trainer's keys, 2 those and class names; 3 the trainer's keys and a
 * typicality (a TYPI section). */
static void save_model(const char *name, const char *spec, int c, int h, int w, int with_meta) {
    struct cnn_model *m;
    if (cnn_model_new(spec, c, h, w, &m)) die(spec);
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 7);
    cnn_model_init_params(m, &rng);
    for (size_t i = 0; i < m->n_state; i++) m->state[i] = 0.5f + (float)(i % 3);
    cnn_model_set_norm(m, 0.1307f, 0.3081f);
    if (with_meta) set_meta(m, with_meta == 3 ? 1 : with_meta);
    if (with_meta == 3) fit_typicality(m, h, w);
    char path[512];
    snprintf(path, sizeof path, "%s/model/%s", dir, name);
    if (cnn_model_save(m, path)) die(path);
    cnn_model_free(m);
    struct cnn_model *back;
    if (cnn_model_load(path, &back)) die(path);
    cnn_model_free(back);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    const long len = ftell(f);
    fclose(f);
    if (len > 4096) {
        fprintf(stderr, "make_seeds: %s is %ld bytes, over 4 KiB\n", path, len);
        exit(1);
    }
}

static void model_seeds(void) {
    save_model("conv-relu-maxpool-dense.model", "conv 2 3, relu, maxpool 2, dense 10", 1, 8, 8, 1);
    save_model("all-layers.model",
               "conv 2 3 stride=2 pad=1, bn, leakyrelu 0.1, avgpool 2 stride=1, dropout 0.25, "
               "flatten, dense 4, bn, relu, dense 3",
               1, 8, 8, 2);
    save_model("avgpool-dense-28.model", "avgpool 7, dense 10", 1, 28, 28, 1);
    save_model("dense-nometa.model", "dense 2", 2, 3, 3, 0);
    save_model("maxpool-stride.model", "maxpool 3 stride=2, conv 1 1, dense 2", 3, 5, 5, 1);
    save_model("typicality.model", "conv 2 3, relu, maxpool 2, dense 10", 1, 8, 8, 3);
}

/* ---- images --------------------------------------------------------------------------------- */
static uint8_t wbuf[8192];
static size_t wlen;
static void wcb(void *ctx, void *data, int size) {
    (void)ctx;
    if (wlen + (size_t)size > sizeof wbuf) exit(1);
    memcpy(wbuf + wlen, data, (size_t)size);
    wlen += (size_t)size;
}

static void keep_image(const char *name) {
    struct cnn_image img;
    if (cnn_image_decode(wbuf, wlen, name, &img)) die(name);
    uint8_t out[28 * 28];
    const int rc = cnn_image_to_mnist(&img, out);
    if (rc != CNN_OK && rc != CNN_ERR_NODIGIT) die(name);
    cnn_image_free(&img);
    put("image", name, wbuf, wlen);
}

/* A GIF of gray (h,w) in 4 gray levels; LZW with a clear code after every 2 literals, so the
 * code size stays at 3 bits in every decoder. */
static void gif(const uint8_t *g, int w, int h) {
    wlen = 0;
    uint8_t hdr[] = {'G', 'I', 'F', '8', '9', 'a', (uint8_t)w, 0, (uint8_t)h, 0, 0xf1, 0, 0};
    wcb(NULL, hdr, sizeof hdr);
    const uint8_t pal[12] = {0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255};
    wcb(NULL, (void *)pal, sizeof pal);
    const uint8_t desc[] = {0x2c, 0, 0, 0, 0, (uint8_t)w, 0, (uint8_t)h, 0, 0, 2};
    wcb(NULL, (void *)desc, sizeof desc);
    uint8_t data[2048];
    size_t nb = 0;
    uint32_t acc = 0;
    int bits = 0;
#define EMIT(code)                                                                                 \
    do {                                                                                           \
        acc |= (uint32_t)(code) << bits;                                                           \
        bits += 3;                                                                                 \
        while (bits >= 8) data[nb++] = (uint8_t)acc, acc >>= 8, bits -= 8;                         \
    } while (0)
    const int n = w * h;
    for (int i = 0; i < n; i++) {
        if (i % 2 == 0) EMIT(4); /* clear */
        EMIT(g[i] >> 6);
    }
    EMIT(5); /* end of information */
    if (bits) data[nb++] = (uint8_t)acc;
#undef EMIT
    for (size_t off = 0; off < nb; off += 255) {
        const uint8_t blk = (uint8_t)(nb - off < 255 ? nb - off : 255);
        wcb(NULL, (void *)&blk, 1);
        wcb(NULL, data + off, blk);
    }
    const uint8_t tail[] = {0, 0x3b};
    wcb(NULL, (void *)tail, sizeof tail);
}

static void image_seeds(void) {
    enum { W = 16, H = 16 };
    uint8_t g[W * H], dark[W * H], rgb[W * H * 3], rgba[W * H * 4], ga[W * H * 2];
    draw_digit(g, W, H);
    for (int i = 0; i < W * H; i++) {
        dark[i] = (uint8_t)(255 - g[i]); /* dark ink on light paper, like a photo */
        rgb[3 * i] = dark[i], rgb[3 * i + 1] = (uint8_t)(dark[i] * 9 / 10),
        rgb[3 * i + 2] = (uint8_t)(dark[i] * 8 / 10);
        rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = 0;
        rgba[4 * i + 3] = g[i]; /* black ink, transparent paper */
        ga[2 * i] = dark[i], ga[2 * i + 1] = 255;
    }
    wlen = 0, stbi_write_png_to_func(wcb, NULL, W, H, 1, g, W), keep_image("gray.png");
    wlen = 0, stbi_write_png_to_func(wcb, NULL, W, H, 3, rgb, W * 3), keep_image("rgb.png");
    wlen = 0, stbi_write_png_to_func(wcb, NULL, W, H, 4, rgba, W * 4), keep_image("rgba.png");
    wlen = 0, stbi_write_png_to_func(wcb, NULL, W, H, 2, ga, W * 2), keep_image("gray-alpha.png");
    wlen = 0, stbi_write_bmp_to_func(wcb, NULL, W, H, 3, rgb), keep_image("rgb.bmp");
    wlen = 0, stbi_write_bmp_to_func(wcb, NULL, W, H, 4, rgba), keep_image("rgba.bmp");
    stbi_write_tga_with_rle = 0;
    wlen = 0, stbi_write_tga_to_func(wcb, NULL, W, H, 1, dark), keep_image("gray.tga");
    stbi_write_tga_with_rle = 1;
    wlen = 0, stbi_write_tga_to_func(wcb, NULL, W, H, 3, rgb), keep_image("rgb-rle.tga");
    wlen = 0, stbi_write_jpg_to_func(wcb, NULL, W, H, 1, dark, 90), keep_image("gray.jpg");
    wlen = 0, stbi_write_jpg_to_func(wcb, NULL, W, H, 3, rgb, 50), keep_image("rgb.jpg");
    /* PGM (P5), PPM (P6), 16-bit PGM */
    wlen = (size_t)snprintf((char *)wbuf, sizeof wbuf, "P5\n# digit\n%d %d\n255\n", W, H);
    memcpy(wbuf + wlen, dark, sizeof dark), wlen += sizeof dark, keep_image("gray.pgm");
    wlen = (size_t)snprintf((char *)wbuf, sizeof wbuf, "P6 %d %d 255\n", W, H);
    memcpy(wbuf + wlen, rgb, sizeof rgb), wlen += sizeof rgb, keep_image("rgb.ppm");
    wlen = (size_t)snprintf((char *)wbuf, sizeof wbuf, "P5\n%d %d\n65535\n", W, H);
    for (int i = 0; i < W * H; i++) wbuf[wlen++] = g[i], wbuf[wlen++] = 0x80;
    keep_image("gray16.pgm");
    gif(g, W, H);
    keep_image("gray.gif");
}

/* ---- specs ---------------------------------------------------------------------------------- */
static void spec_seeds(void) {
    static const char *const specs[][2] = {
        {"readme-1.txt", "conv 32 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dense 10"},
        {"lenet.txt", "conv 6 5 pad=2, relu, avgpool 2, conv 16 5, relu, avgpool 2, dense 120, "
                      "relu, dense 84, relu, dense 10"},
        {"conv-stride.txt", "conv 4 3 stride=2 pad=1, leakyrelu 0.2, conv 4 3 stride=2, relu, "
                            "dense 10"},
        {"pool-stride.txt", "maxpool 3 stride=2, avgpool 2 stride=1, flatten, dense 10"},
        {"bn-dense.txt", "flatten, dense 16, bn, leakyrelu, dropout 0.5, dense 2"},
        {"tiny.txt", "dense 10"},
        {"separators.txt", "conv 2 3;relu\nmaxpool 2 ;  DENSE 10"},
        {"all-kinds.txt", "conv 3 5 stride=1 pad=2, bn, relu, maxpool 2, conv 2 3, leakyrelu "
                          "0.01, avgpool 2 stride=2, dropout 0.1, flatten, dense 8, bn, relu, "
                          "dense 10"},
        {"numbers.txt", "conv 2e0 3.0 pad=0, relu, dense 1e1"},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        struct cnn_model *m;
        if (cnn_model_new(specs[i][1], 1, 28, 28, &m)) die(specs[i][1]);
        cnn_model_free(m);
        put("spec", specs[i][0], specs[i][1], strlen(specs[i][1]));
    }
}

int main(int argc, char **argv) {
    if (argc > 1) dir = argv[1];
    idx_seeds();
    model_seeds();
    image_seeds();
    spec_seeds();
    printf("make_seeds: wrote seeds under %s/{idx,model,image,spec}\n", dir);
    return 0;
}
