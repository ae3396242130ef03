/*
 * test_model_io.c - model files: the save/load round trip, metadata, atomic writes, the
 * previous release's files, and hostile input.
 *
 * The fixture is a small trained model ("conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.25,
 * dense 10" on 1x12x12, a few Adam steps so batch-norm running statistics are not at their
 * initial values, and five metadata keys), saved once into a mkdtemp directory. Every
 * corrupt-file case below starts from those bytes, breaks one thing, and checks four things:
 * the status code, that cnn_errmsg() names the file and the problem, that *out stays NULL, and
 * (under ASan) that nothing leaks. Forged files get a recomputed CRC-32 (zlib) so that only
 * the check under test can catch them.
 *
 * File layout (src/io/model_io.c): "CNNMODEL" u32 version u32 flags, sections
 * {u32 tag, u64 length, bytes}, an "END " section of length 0, then u32 crc32 of all before.
 * Version 2 (CNN_MODEL_VERSION) is written; versions 1 and 2 load. META is key=value lines,
 * each checked as cnn_model_set_meta checks what a caller sets.
 *
 * tests/data/v1.model was written by the previous release (format version 1): spec "conv 4 3,
 * bn, relu, maxpool 2, dense 10", trained on 1800 MNIST images. It must still load and
 * classify the MNIST test set exactly as that release did.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "../src/internal.h"
#include "testutil.h"

#define SPEC "conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dense 10"
#define IN_C 1
#define IN_H 12
#define IN_W 12
#define HEADER_BYTES 16u

/* ---- fixture helpers ---------------------------------------------------------------------- */

static uint8_t *base; /* the saved fixture model, bytes */
static size_t base_len;

/* Write n bytes to tmpdir/name; returns the full path. */
static const char *write_file(const char *name, const void *p, size_t n) {
    const char *path = tpath(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* Read a whole file into a malloc'd buffer. */
static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    const long sz = ftell(f);
    assert_true(sz >= 0);
    rewind(f);
    uint8_t *p = malloc((size_t)sz + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return p;
}

static int same_file_bytes(const char *path, const uint8_t *p, size_t n) {
    size_t m;
    uint8_t *q = read_all(path, &m);
    const int same = m == n && memcmp(p, q, n) == 0;
    free(q);
    return same;
}

/* A non-NULL value that must be overwritten with NULL by a failing load. */
static char sentinel;
#define SENTINEL_MODEL ((struct cnn_model *)(void *)&sentinel)

/* cnn_model_load(path) must fail with `want`, name the path and every word, leave *out NULL. */
static void expect_load_words(const char *path, int want, const char *const *words) {
    struct cnn_model *m = SENTINEL_MODEL;
    const int rc = cnn_model_load(path, &m);
    if (rc == CNN_OK) {
        cnn_model_free(m);
        fail_msg("%s: loaded, expected status %d (%s)", path, want, cnn_status_str(want));
    }
    check_error(rc, want, path);
    check_error_words(rc, want, words);
    assert_null(m);
    /* the in-memory parser agrees, and names what it was given */
    if (want == CNN_ERR_FORMAT) {
        size_t n;
        uint8_t *buf = read_all(path, &n);
        m = SENTINEL_MODEL;
        const int prc = cnn_model_parse(buf, n, "in-memory copy", &m);
        free(buf);
        check_error(prc, want, "in-memory copy");
        check_error_words(prc, want, words);
        assert_null(m);
    }
}
#define expect_load_error(path, want, ...)                                                         \
    expect_load_words((path), (want), (const char *const[]){__VA_ARGS__, NULL})

/* ---- byte surgery on model files ----------------------------------------------------------- */

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) {
    return get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}
static void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16),
    p[3] = (uint8_t)(v >> 24);
}
static void put_u64(uint8_t *p, uint64_t v) {
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

/* Recompute the trailing CRC-32 so that only the check under test can object. */
static void fix_crc(uint8_t *p, size_t n) {
    put_u32(p + n - 4, (uint32_t)crc32(0L, p, (uInt)(n - 4)));
}

/* Offset of the 12-byte header of section `tag` in a well-formed file; its payload length
 * in *plen. Fails the test if absent. */
static size_t find_sec(const uint8_t *p, size_t n, const char *tag, size_t *plen) {
    size_t off = HEADER_BYTES;
    while (off + 12 <= n - 4) {
        const uint64_t len = get_u64(p + off + 4);
        if (memcmp(p + off, tag, 4) == 0) {
            *plen = (size_t)len;
            return off;
        }
        if (memcmp(p + off, "END ", 4) == 0) break;
        off += 12 + (size_t)len;
    }
    fail_msg("fixture has no %s section", tag);
    return 0;
}

/* A copy of base with section `tag`'s payload replaced by repl (rn bytes), or the whole
 * section removed when remove is set, the CRC recomputed. Returns malloc'd bytes. */
static uint8_t *splice(const char *tag, const void *repl, size_t rn, int remove, size_t *out_n) {
    size_t plen;
    const size_t off = find_sec(base, base_len, tag, &plen);
    const size_t tail = off + 12 + plen;
    const size_t n = remove ? base_len - 12 - plen : base_len - plen + rn;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    memcpy(p, base, off);
    size_t w = off;
    if (!remove) {
        memcpy(p + w, base + off, 4);
        put_u64(p + w + 4, rn);
        if (rn) memcpy(p + w + 12, repl, rn);
        w += 12 + rn;
    }
    memcpy(p + w, base + tail, base_len - tail);
    fix_crc(p, n);
    *out_n = n;
    return p;
}

static uint8_t *base_copy(void) {
    uint8_t *p = malloc(base_len);
    assert_non_null(p);
    memcpy(p, base, base_len);
    return p;
}

/* Write bytes as tmpdir/name and expect the load to fail; frees buf. */
static void expect_bytes_words(const char *name, uint8_t *buf, size_t n, int want,
                               const char *const *words) {
    const char *path = write_file(name, buf, n);
    free(buf);
    expect_load_words(path, want, words);
}
#define expect_bytes_error(name, buf, n, want, ...)                                                \
    expect_bytes_words((name), (buf), (n), (want), (const char *const[]){__VA_ARGS__, NULL})
/* ---- the fixture model --------------------------------------------------------------------- */

static void random_pixels(uint8_t *px, size_t n, struct cnn_rng *rng) {
    for (size_t i = 0; i < n; i++) px[i] = (uint8_t)(cnn_rng_u64(rng) >> 56);
}

/* One training forward + backward on a training context, as the previous cnn_net_train_batch
 * did it: the forward seed drawn from rng, the gradients left in ctx->grads. */
static void train_step(struct cnn_ctx *ctx, struct cnn_model *m, const float *x,
                       const uint8_t *labels, int n, float ls, struct cnn_rng *rng, float *loss) {
    const int saved = cnn_threads_enter(ctx->threads);
    const int rc = cnn_ctx_train_batch(ctx, m, x, labels, n, ls, cnn_rng_u64(rng), NULL, loss,
                                       NULL);
    cnn_threads_leave(saved);
    if (rc != CNN_OK) fail_msg("train batch: %s", cnn_errmsg());
}

/* Build SPEC on 1x12x12 (or a given spec), init with a seeded rng, then `steps` Adam steps on
 * random batches of 16 so that parameters and bn running statistics move off their initial
 * values (one thread, so the bytes do not depend on the machine). Sets a non-default
 * normalisation. */
static struct cnn_model *make_model(const char *spec, int steps, uint64_t seed) {
    struct cnn_model *m;
    if (cnn_model_new(spec, IN_C, IN_H, IN_W, &m) != CNN_OK) fail_msg("%s", cnn_errmsg());
    struct cnn_rng rng;
    cnn_rng_seed(&rng, seed);
    cnn_model_init_params(m, &rng);
    struct cnn_optim_cfg oc;
    cnn_optim_cfg_default(&oc, CNN_OPT_ADAM);
    struct cnn_optim *opt;
    assert_int_equal(cnn_optim_new(m, &oc, &opt), CNN_OK);
    enum { B = 16, PIX = IN_C * IN_H * IN_W };
    struct cnn_ctx *ctx;
    if (cnn_ctx_new_train(m, B, 1, &ctx) != CNN_OK) fail_msg("%s", cnn_errmsg());
    float x[B * PIX];
    uint8_t labels[B];
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < B * PIX; i++) x[i] = 2.0f * cnn_rng_uniform(&rng) - 0.5f;
        for (int i = 0; i < B; i++) labels[i] = (uint8_t)((i + s) % 10);
        float loss;
        train_step(ctx, m, x, labels, B, 0.1f, &rng, &loss);
        assert_true(isfinite(loss));
        assert_int_equal(
            cnn_optim_step(opt, m->params, ctx->grads, m->decay_mask, m->n_params, 1e-2f),
            CNN_OK);
    }
    cnn_ctx_free(ctx);
    cnn_optim_free(opt);
    cnn_model_set_norm(m, 0.1307f, 0.3081f);
    cnn_model_prepare(m); /* the steps above wrote params and state behind the trainer's back */
    return m;
}

/* The fixture's metadata, in the order it is set (and saved). */
static const char *const fixture_meta[][2] = {
    {"dataset", "mnist-unit"},
    {"date", "2024-01-02T03:04:05Z"},
    {"epochs", "7"},
    {"val_acc", "0.987500"}, /* 0.9875: exact in binary and in %.6f text */
    {"train_images", "55000"},
};
#define N_FIXTURE_META (sizeof fixture_meta / sizeof fixture_meta[0])

static void set_fixture_meta(struct cnn_model *m) {
    for (size_t i = 0; i < N_FIXTURE_META; i++)
        if (cnn_model_set_meta(m, fixture_meta[i][0], fixture_meta[i][1]) != CNN_OK)
            fail_msg("set_meta %s: %s", fixture_meta[i][0], cnn_errmsg());
}

static int group_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_model_io.XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    struct cnn_model *m = make_model(SPEC, 3, 42);
    set_fixture_meta(m);
    char path[256];
    snprintf(path, sizeof path, "%s/base.model", tmpdir);
    const int rc = cnn_model_save(m, path);
    cnn_model_free(m);
    if (rc != CNN_OK) {
        fprintf(stderr, "fixture save failed: %s\n", cnn_errmsg());
        return -1;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    base_len = (size_t)ftell(f);
    rewind(f);
    base = malloc(base_len);
    const size_t got = base ? fread(base, 1, base_len, f) : 0;
    fclose(f);
    return got == base_len ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    free(base);
    rm_tree(tmpdir);
    return 0;
}

/* ---- round trip ------------------------------------------------------------------------------ */

/* The same metadata entries, in the same order. */
static void assert_same_meta(const struct cnn_model *a, const struct cnn_model *b) {
    assert_int_equal(cnn_model_meta_count(a), cnn_model_meta_count(b));
    for (int i = 0; i < cnn_model_meta_count(a); i++) {
        const char *ak, *av, *bk, *bv;
        assert_int_equal(cnn_model_meta_at(a, i, &ak, &av), CNN_OK);
        assert_int_equal(cnn_model_meta_at(b, i, &bk, &bv), CNN_OK);
        assert_string_equal(ak, bk);
        assert_string_equal(av, bv);
        assert_string_equal(cnn_model_meta(b, ak), av);
    }
}

static void assert_same_model(const struct cnn_model *a, const struct cnn_model *b) {
    assert_string_equal(cnn_model_spec(a), cnn_model_spec(b));
    int ac, ah, aw, bc, bh, bw;
    cnn_model_input_shape(a, &ac, &ah, &aw);
    cnn_model_input_shape(b, &bc, &bh, &bw);
    assert_int_equal(ac, bc);
    assert_int_equal(ah, bh);
    assert_int_equal(aw, bw);
    assert_int_equal(cnn_model_n_classes(a), cnn_model_n_classes(b));
    assert_int_equal(cnn_model_n_layers(a), cnn_model_n_layers(b));
    assert_int_equal(cnn_model_n_params(a), cnn_model_n_params(b));
    assert_int_equal(cnn_model_n_state(a), cnn_model_n_state(b));
    assert_memory_equal(cnn_model_params(a), cnn_model_params(b),
                        cnn_model_n_params(a) * sizeof(float));
    assert_memory_equal(cnn_model_state(a), cnn_model_state(b),
                        cnn_model_n_state(a) * sizeof(float));
    float am, as, bm, bs;
    cnn_model_get_norm(a, &am, &as);
    cnn_model_get_norm(b, &bm, &bs);
    assert_memory_equal(&am, &bm, sizeof am);
    assert_memory_equal(&as, &bs, sizeof as);
    /* layer by layer, and nothing past the last */
    const int L = cnn_model_n_layers(a);
    for (int i = 0; i < L; i++) {
        struct cnn_layer_info la, lb;
        assert_int_equal(cnn_model_layer_info(a, i, &la), CNN_OK);
        assert_int_equal(cnn_model_layer_info(b, i, &lb), CNN_OK);
        assert_string_equal(la.kind, lb.kind);
        assert_string_equal(la.text, lb.text);
        assert_int_equal(la.c, lb.c);
        assert_int_equal(la.h, lb.h);
        assert_int_equal(la.w, lb.w);
        assert_int_equal(la.n_params, lb.n_params);
        assert_true(la.mflops == lb.mflops);
    }
    struct cnn_layer_info li;
    check_error(cnn_model_layer_info(b, L, &li), CNN_ERR_ARG, "out of range");
    check_error(cnn_model_layer_info(b, -1, &li), CNN_ERR_ARG, "out of range");
    assert_same_meta(a, b);
    /* predictions from raw pixels: bit-identical (one context serves both: same layout) */
    enum { N = 7 };
    const int k = cnn_model_n_classes(a);
    const size_t pix = (size_t)ac * ah * aw;
    uint8_t *px = malloc(N * pix);
    float *pa = malloc((size_t)N * k * sizeof(float)), *pb = malloc((size_t)N * k * sizeof(float));
    assert_non_null(px);
    assert_non_null(pa);
    assert_non_null(pb);
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 7);
    random_pixels(px, N * pix, &rng);
    struct cnn_ctx *ctx;
    if (cnn_ctx_new(a, N, 1, &ctx) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_predict_u8(a, ctx, px, N, pa), CNN_OK);
    assert_int_equal(cnn_predict_u8(b, ctx, px, N, pb), CNN_OK);
    cnn_ctx_free(ctx);
    assert_memory_equal(pa, pb, (size_t)N * k * sizeof(float));
    for (int i = 0; i < N * k; i++) assert_true(isfinite(pa[i]));
    free(px);
    free(pa);
    free(pb);
}

static void test_roundtrip(void **state) {
    (void)state;
    struct cnn_model *m = make_model(SPEC, 3, 42);
    /* the fixture really has trained bn statistics: running mean moved off 0, var off 1 */
    const float *st = cnn_model_state(m);
    /* conv 4*9+4, bn 2*4, dense 144*10+10: the counts the forged-file tests rely on */
    assert_int_equal(cnn_model_n_params(m), 40 + 8 + 1450);
    assert_int_equal(cnn_model_n_state(m), 8); /* bn over 4 channels: mean(4), var(4) */
    int moved = 0;
    for (int i = 0; i < 4; i++) moved += st[i] != 0.0f && st[4 + i] != 1.0f;
    assert_int_equal(moved, 4);
    /* layer info: the first layer as written, out of range refused */
    struct cnn_layer_info li;
    assert_int_equal(cnn_model_n_layers(m), 6);
    assert_int_equal(cnn_model_layer_info(m, 0, &li), CNN_OK);
    assert_string_equal(li.kind, "conv");
    assert_string_equal(li.text, "conv 4 3 pad=1");
    assert_int_equal(li.c, 4);
    assert_int_equal(li.h, 12);
    assert_int_equal(li.w, 12);
    assert_int_equal(li.n_params, 40);
    assert_int_equal(cnn_model_layer_info(m, 5, &li), CNN_OK);
    assert_string_equal(li.kind, "dense");
    assert_int_equal(li.c, 10);
    check_error(cnn_model_layer_info(m, 6, &li), CNN_ERR_ARG, "layer 6", "out of range");
    check_error(cnn_model_layer_info(m, -1, &li), CNN_ERR_ARG, "layer -1", "out of range");
    check_error(cnn_model_layer_info(m, 1000000, &li), CNN_ERR_ARG, "out of range");

    set_fixture_meta(m);
    const char *path = tpath("roundtrip.model");
    assert_int_equal(cnn_model_save(m, path), CNN_OK);
    struct cnn_model *back = SENTINEL_MODEL;
    if (cnn_model_load(path, &back) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_non_null(back);
    assert_true(back != SENTINEL_MODEL);
    assert_string_equal(cnn_model_spec(back), SPEC);
    assert_same_model(m, back);
    assert_int_equal(cnn_model_meta_count(back), (int)N_FIXTURE_META);
    assert_string_equal(cnn_model_meta(back, "dataset"), "mnist-unit");
    assert_string_equal(cnn_model_meta(back, "date"), "2024-01-02T03:04:05Z");
    assert_int_equal(atoi(cnn_model_meta(back, "epochs")), 7);
    assert_true(strtod(cnn_model_meta(back, "val_acc"), NULL) == 0.9875);
    assert_int_equal(atol(cnn_model_meta(back, "train_images")), 55000);
    assert_null(cnn_model_meta(back, "recipe.lr")); /* never set */

    /* written as the current format version */
    size_t n1;
    uint8_t *b1 = read_all(path, &n1);
    uint32_t version = 0;
    assert_int_equal(cnn_model_check(b1, n1, path, &version), CNN_OK);
    assert_int_equal(version, CNN_MODEL_VERSION);
    assert_int_equal(version, 2);
    assert_int_equal(get_u32(b1 + 8), 2);
    assert_int_equal(cnn_model_check(b1, n1, path, NULL), CNN_OK); /* version out may be NULL */
    /* saving what was loaded gives the same bytes */
    const char *again = tpath("roundtrip-again.model");
    assert_int_equal(cnn_model_save(back, again), CNN_OK);
    assert_true(same_file_bytes(again, b1, n1));
    free(b1);
    /* and the fixture made in group_setup the same way is byte-identical too */
    assert_true(same_file_bytes(path, base, base_len));
    cnn_model_free(m);
    cnn_model_free(back);
    assert_int_equal(count_tmp_files(tmpdir), 0);
}

/* A 28x28 model with two bn layers (one after dense) and no metadata. */
static void test_roundtrip_28x28_no_meta(void **state) {
    (void)state;
    struct cnn_model *m;
    const char *spec = "conv 6 5 stride=2 pad=2, bn, relu, avgpool 2, flatten, dense 32, bn, "
                       "leakyrelu 0.1, dropout 0.5, dense 10";
    assert_int_equal(cnn_model_new(spec, 1, 28, 28, &m), CNN_OK);
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 3);
    cnn_model_init_params(m, &rng);
    struct cnn_ctx *ctx;
    if (cnn_ctx_new_train(m, 8, 1, &ctx) != CNN_OK) fail_msg("%s", cnn_errmsg());
    float *x = malloc(8 * 784 * sizeof(float));
    assert_non_null(x);
    const uint8_t labels[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 8 * 784; i++) x[i] = cnn_rng_normal(&rng);
        train_step(ctx, m, x, labels, 8, 0.0f, &rng, NULL);
    }
    cnn_ctx_free(ctx);
    free(x);
    cnn_model_set_norm(m, 0.5f, 0.25f);
    const char *path = tpath("no-meta.model");
    assert_int_equal(cnn_model_save(m, path), CNN_OK);
    struct cnn_model *back;
    if (cnn_model_load(path, &back) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_same_model(m, back);
    /* no metadata: no entries, every key absent, class names are the digits */
    assert_int_equal(cnn_model_meta_count(back), 0);
    static const char *const keys[] = {"dataset", "date", "epochs", "val_acc", "train_images"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_null(cnn_model_meta(back, keys[i]));
    const char *k, *v;
    check_error(cnn_model_meta_at(back, 0, &k, &v), CNN_ERR_ARG, "out of range");
    assert_string_equal(cnn_model_class_name(back, 3), "3");
    cnn_model_free(m);
    cnn_model_free(back);
}

/* A file with no META section at all (the writer always writes one, possibly empty) loads,
 * with no metadata and everything else as in the fixture. */
static void test_no_meta_section(void **state) {
    (void)state;
    size_t n;
    uint8_t *p = splice("META", NULL, 0, 1, &n);
    struct cnn_model *a = SENTINEL_MODEL, *b;
    const int rc = cnn_model_parse(p, n, "no-meta", &a);
    free(p);
    if (rc != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_model_meta_count(a), 0);
    assert_null(cnn_model_meta(a, "dataset"));
    assert_int_equal(cnn_model_parse(base, base_len, "base", &b), CNN_OK);
    assert_memory_equal(cnn_model_params(a), cnn_model_params(b),
                        cnn_model_n_params(a) * sizeof(float));
    assert_memory_equal(cnn_model_state(a), cnn_model_state(b),
                        cnn_model_n_state(a) * sizeof(float));
    cnn_model_free(a);
    cnn_model_free(b);
}

/* cnn_model_parse on the bytes gives what cnn_model_load gives, and so do the two steps it is
 * made of, cnn_model_check then cnn_model_decode. */
static void test_parse_matches_load(void **state) {
    (void)state;
    struct cnn_model *a, *b, *c;
    if (cnn_model_load(tpath("base.model"), &a) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_model_parse(base, base_len, "mem", &b), CNN_OK);
    assert_same_model(a, b);
    uint32_t version = 0;
    assert_int_equal(cnn_model_check(base, base_len, "mem", &version), CNN_OK);
    assert_int_equal(version, CNN_MODEL_VERSION);
    c = SENTINEL_MODEL;
    assert_int_equal(cnn_model_decode(base, base_len, "mem", &c), CNN_OK);
    assert_same_model(a, c);
    cnn_model_free(a);
    cnn_model_free(b);
    cnn_model_free(c);
}

/* Readers skip sections they do not know (newer writers may add some). */
static void test_unknown_section_skipped(void **state) {
    (void)state;
    size_t plen;
    const size_t end = find_sec(base, base_len, "END ", &plen);
    const char extra[] = "future stuff";
    const size_t n = base_len + 12 + sizeof extra;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    memcpy(p, base, end);
    memcpy(p + end, "XTRA", 4);
    put_u64(p + end + 4, sizeof extra);
    memcpy(p + end + 12, extra, sizeof extra);
    memcpy(p + end + 12 + sizeof extra, base + end, base_len - end);
    fix_crc(p, n);
    const char *path = write_file("extra-section.model", p, n);
    free(p);
    struct cnn_model *a, *b;
    if (cnn_model_load(path, &a) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_model_parse(base, base_len, "base", &b), CNN_OK);
    assert_same_model(a, b);
    cnn_model_free(a);
    cnn_model_free(b);
}

/* ---- atomic writes --------------------------------------------------------------------------- */

static void test_save_missing_dir(void **state) {
    (void)state;
    struct cnn_model *m = make_model(SPEC, 0, 1);
    const char *path = tpath("no-such-dir/sub/m.model");
    check_error(cnn_model_save(m, path), CNN_ERR_IO, path, "No such file");
    cnn_model_free(m);
    struct stat st;
    assert_int_not_equal(stat(tpath("no-such-dir"), &st), 0);
    assert_int_equal(count_tmp_files(tmpdir), 0);
}

/* A larger model overwritten by a smaller one: the file is exactly the new one, no tail. */
static void test_save_replaces_fully(void **state) {
    (void)state;
    struct cnn_model *big =
        make_model("conv 8 3 pad=1, relu, maxpool 2, dense 64, relu, dense 10", 1, 5);
    struct cnn_model *small = make_model("maxpool 2, dense 10", 1, 6);
    set_fixture_meta(big);
    set_fixture_meta(small);
    const char *path = tpath("replace.model"), *ref = tpath("replace-ref.model");
    assert_int_equal(cnn_model_save(big, path), CNN_OK);
    assert_int_equal(cnn_model_save(small, path), CNN_OK);
    assert_int_equal(cnn_model_save(small, ref), CNN_OK);
    size_t n;
    uint8_t *want = read_all(ref, &n);
    assert_true(same_file_bytes(path, want, n));
    free(want);
    struct cnn_model *back;
    if (cnn_model_load(path, &back) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_same_model(small, back);
    cnn_model_free(back);
    cnn_model_free(big);
    cnn_model_free(small);
    assert_int_equal(count_tmp_files(tmpdir), 0);
}

/* A writer killed mid-write leaves NAME.tmp.PID; the next save to NAME removes those whose
 * process is gone, and nothing else: not a live process's (pid 1), not a non-number, not
 * another file's. */
static void test_save_removes_stale_temps(void **state) {
    (void)state;
    const pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) _exit(0);
    assert_int_equal(waitpid(child, NULL, 0), child); /* a pid with no process */
    char dead[64], other[64];
    snprintf(dead, sizeof dead, "stale.model.tmp.%ld", (long)child);
    snprintf(other, sizeof other, "other.model.tmp.%ld", (long)child);
    const char *keep[] = {"stale.model.tmp.1", "stale.model.tmp.12x", other};
    write_file(dead, "half a model", 12);
    for (size_t i = 0; i < 3; i++) write_file(keep[i], "x", 1);
    struct cnn_model *m = make_model("maxpool 2, dense 10", 1, 7);
    set_fixture_meta(m);
    assert_int_equal(cnn_model_save(m, tpath("stale.model")), CNN_OK);
    cnn_model_free(m);
    struct stat st;
    assert_int_not_equal(stat(tpath(dead), &st), 0);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(stat(tpath(keep[i]), &st), 0);
        unlink(tpath(keep[i]));
    }
    assert_int_equal(count_tmp_files(tmpdir), 0);
}

/* The target is a (non-empty) directory: the rename fails; the directory and its contents
 * are untouched and no temporary is left. */
static void test_save_onto_directory(void **state) {
    (void)state;
    assert_int_equal(mkdir(tpath("dir.model"), 0755), 0);
    write_file("dir.model/keep", "keep me", 7);
    struct cnn_model *m = make_model(SPEC, 0, 1);
    const char *path = tpath("dir.model");
    check_error(cnn_model_save(m, path), CNN_ERR_IO, path);
    cnn_model_free(m);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_true(same_file_bytes(tpath("dir.model/keep"), (const uint8_t *)"keep me", 7));
    assert_int_equal(count_tmp_files(tmpdir), 0);
}

/* A path "under" a regular file: the existing file is untouched. */
static void test_save_under_a_file(void **state) {
    (void)state;
    const char *file = write_file("plain.model", base, base_len);
    char path[300];
    snprintf(path, sizeof path, "%s/child.model", file);
    struct cnn_model *m = make_model(SPEC, 0, 1);
    check_error(cnn_model_save(m, path), CNN_ERR_IO, path);
    cnn_model_free(m);
    assert_true(same_file_bytes(file, base, base_len));
    assert_int_equal(count_tmp_files(tmpdir), 0);
}

/* The write itself fails part-way (RLIMIT_FSIZE: EFBIG even for root): the model already at
 * the path keeps its old bytes and the temporary is removed. */
static void test_save_write_fails_keeps_old(void **state) {
    (void)state;
    const char *path = write_file("keep-old.model", base, base_len);
    struct cnn_model *m = make_model("conv 8 3 pad=1, relu, dense 10", 1, 9); /* bigger */
    set_fixture_meta(m);
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 100; /* bytes: the new file cannot be written */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    const int rc = cnn_model_save(m, path);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    check_error(rc, CNN_ERR_IO, path, "write failed");
    cnn_model_free(m);
    assert_true(same_file_bytes(path, base, base_len));
    assert_int_equal(count_tmp_files(tmpdir), 0);
}

/* ---- hostile input: truncation ------------------------------------------------------------- */

static void truncated(const char *name, size_t keep, const char *word) {
    expect_bytes_error(name, base_copy(), keep, CNN_ERR_FORMAT, word);
}

static void test_truncated_0(void **state) {
    (void)state;
    truncated("trunc-0", 0, "0 bytes, too short");
}
static void test_truncated_7(void **state) {
    (void)state;
    truncated("trunc-7", 7, "7 bytes, too short");
}
static void test_truncated_15(void **state) {
    (void)state;
    truncated("trunc-15", 15, "15 bytes, too short");
}
/* Past the header, inside the SPEC section. */
static void test_truncated_40(void **state) {
    (void)state;
    truncated("trunc-40", 40, "checksum mismatch");
}
static void test_truncated_half(void **state) {
    (void)state;
    truncated("trunc-half", base_len / 2, "checksum mismatch");
}
/* The CRC itself cut short. */
static void test_truncated_len_minus_1(void **state) {
    (void)state;
    truncated("trunc-len-1", base_len - 1, "checksum mismatch");
}
/* No CRC at all: the END section's last 4 bytes are taken as the CRC and do not match. */
static void test_truncated_no_crc(void **state) {
    (void)state;
    truncated("trunc-no-crc", base_len - 4, "checksum mismatch");
}

/* A valid-CRC file that ends before END: every section fits, then the walk runs out. */
static void test_missing_end(void **state) {
    (void)state;
    size_t plen;
    const size_t end = find_sec(base, base_len, "END ", &plen);
    uint8_t *p = base_copy();
    const size_t n = end + 4;
    fix_crc(p, n);
    expect_bytes_error("no-end.model", p, n, CNN_ERR_FORMAT, "cut short");
}

/* ---- hostile input: flipped bits ------------------------------------------------------------ */

static void test_bitflip_params(void **state) {
    (void)state;
    size_t plen;
    const size_t off = find_sec(base, base_len, "PARM", &plen);
    uint8_t *p = base_copy();
    p[off + 12 + 8 + 4 * 17 + 2] ^= 0x10; /* parameter 17, a mantissa bit */
    expect_bytes_error("flip-params.model", p, base_len, CNN_ERR_FORMAT, "checksum mismatch");
}

static void test_bitflip_state(void **state) {
    (void)state;
    size_t plen;
    const size_t off = find_sec(base, base_len, "STAT", &plen);
    uint8_t *p = base_copy();
    p[off + 12 + 8 + 3] ^= 0x01; /* running mean 0, the sign/exponent byte */
    expect_bytes_error("flip-state.model", p, base_len, CNN_ERR_FORMAT, "checksum mismatch");
}

static void test_bitflip_magic(void **state) {
    (void)state;
    uint8_t *p = base_copy();
    p[3] ^= 0x20; /* "CNNmODEL" */
    expect_bytes_error("flip-magic.model", p, base_len, CNN_ERR_FORMAT, "not a model file",
                       "magic");
}

/* The flags word is covered only by the CRC. */
static void test_bitflip_header_flags(void **state) {
    (void)state;
    uint8_t *p = base_copy();
    p[13] ^= 0x04;
    expect_bytes_error("flip-flags.model", p, base_len, CNN_ERR_FORMAT, "checksum mismatch");
}

/* A flipped version bit is reported as the version, which is checked first. */
static void test_bitflip_header_version(void **state) {
    (void)state;
    uint8_t *p = base_copy();
    assert_int_equal(p[8], CNN_MODEL_VERSION);
    p[8] ^= 0x01; /* version 2 -> 3 */
    expect_bytes_error("flip-version.model", p, base_len, CNN_ERR_FORMAT, "version 3");
}

static void test_bitflip_spec(void **state) {
    (void)state;
    size_t plen;
    const size_t off = find_sec(base, base_len, "SPEC", &plen);
    uint8_t *p = base_copy();
    assert_int_equal(p[off + 12 + 12 + 5], '4'); /* "conv 4 3 ..." */
    p[off + 12 + 12 + 5] ^= 0x01;                /* -> "conv 5 3 ..." */
    expect_bytes_error("flip-spec.model", p, base_len, CNN_ERR_FORMAT, "checksum mismatch");
}

static void test_bitflip_crc(void **state) {
    (void)state;
    uint8_t *p = base_copy();
    p[base_len - 1] ^= 0x80;
    expect_bytes_error("flip-crc.model", p, base_len, CNN_ERR_FORMAT, "checksum mismatch");
}

/* ---- hostile input: forged files with a valid CRC -------------------------------------------- */

/* Versions 1 and 2 load; 3 (a newer writer) and 0 are refused, even with a valid CRC. */
static void test_wrong_version(void **state) {
    (void)state;
    uint8_t *p = base_copy();
    put_u32(p + 8, 3);
    fix_crc(p, base_len);
    expect_bytes_error("version-3.model", p, base_len, CNN_ERR_FORMAT, "version 3",
                       "reads versions 1 to 2");
    p = base_copy();
    put_u32(p + 8, 0);
    fix_crc(p, base_len);
    expect_bytes_error("version-0.model", p, base_len, CNN_ERR_FORMAT, "version 0",
                       "reads versions 1 to 2");
    p = base_copy();
    put_u32(p + 8, 0x80000002u);
    fix_crc(p, base_len);
    expect_bytes_error("version-huge.model", p, base_len, CNN_ERR_FORMAT, "version 2147483650");
    /* cnn_model_check alone refuses it too */
    p = base_copy();
    put_u32(p + 8, 3);
    fix_crc(p, base_len);
    uint32_t version = 0;
    check_error(cnn_model_check(p, base_len, "v3", &version), CNN_ERR_FORMAT, "v3", "version 3");
    free(p);
}

/* The fixture's bytes relabelled as version 1 (the two differ only in which metadata keys and
 * checkpoint fields their writers set): check reports 1, it loads as the same model, and
 * saving it writes version 2 and otherwise the same bytes. */
static void test_version_1_loads(void **state) {
    (void)state;
    uint8_t *p = base_copy();
    put_u32(p + 8, 1);
    fix_crc(p, base_len);
    uint32_t version = 0;
    if (cnn_model_check(p, base_len, "v1", &version) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(version, 1);
    const char *path = write_file("version-1.model", p, base_len);
    free(p);
    struct cnn_model *a, *b;
    if (cnn_model_load(path, &a) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_model_parse(base, base_len, "base", &b), CNN_OK);
    assert_same_model(a, b);
    const char *resaved = tpath("version-1-resaved.model");
    assert_int_equal(cnn_model_save(a, resaved), CNN_OK);
    assert_true(same_file_bytes(resaved, base, base_len));
    cnn_model_free(a);
    cnn_model_free(b);
}

static void test_section_claims_2_40_bytes(void **state) {
    (void)state;
    size_t plen;
    const size_t off = find_sec(base, base_len, "PARM", &plen);
    uint8_t *p = base_copy();
    put_u64(p + off + 4, (uint64_t)1 << 40);
    fix_crc(p, base_len);
    expect_bytes_error("parm-2-40.model", p, base_len, CNN_ERR_FORMAT, "1099511627776 bytes",
                       "remain");
}

/* The section length is honest but the count inside says 2^40 floats. */
static void test_parm_count_2_40(void **state) {
    (void)state;
    size_t plen;
    const size_t off = find_sec(base, base_len, "PARM", &plen);
    uint8_t *p = base_copy();
    put_u64(p + off + 12, (uint64_t)1 << 40);
    fix_crc(p, base_len);
    expect_bytes_error("parm-count-2-40.model", p, base_len, CNN_ERR_FORMAT, "PARM",
                       "the spec needs");
}

/* One parameter short: count and length agree with each other, not with the spec. */
static void test_parm_count_mismatch(void **state) {
    (void)state;
    size_t plen;
    const size_t off = find_sec(base, base_len, "PARM", &plen);
    const uint64_t count = get_u64(base + off + 12);
    uint8_t *payload = malloc(plen);
    assert_non_null(payload);
    memcpy(payload, base + off + 12, plen - 4);
    put_u64(payload, count - 1);
    size_t n;
    uint8_t *p = splice("PARM", payload, plen - 4, 0, &n);
    free(payload);
    char need[64];
    snprintf(need, sizeof need, "needs %llu values", (unsigned long long)count);
    expect_bytes_error("parm-short.model", p, n, CNN_ERR_FORMAT, "PARM", need);
}

static void test_stat_count_mismatch(void **state) {
    (void)state;
    size_t plen;
    const size_t off = find_sec(base, base_len, "STAT", &plen);
    uint8_t *payload = malloc(plen + 4);
    assert_non_null(payload);
    memcpy(payload, base + off + 12, plen);
    put_u64(payload, get_u64(base + off + 12) + 1);
    memset(payload + plen, 0, 4);
    size_t n;
    uint8_t *p = splice("STAT", payload, plen + 4, 0, &n);
    free(payload);
    expect_bytes_error("stat-long.model", p, n, CNN_ERR_FORMAT, "STAT", "needs 8 values");
}

/* The PARM section renamed to a tag readers skip: the file keeps its size, so only the
 * presence check can catch it. */
static void test_missing_parm(void **state) {
    (void)state;
    size_t plen;
    const size_t off = find_sec(base, base_len, "PARM", &plen);
    uint8_t *p = base_copy();
    memcpy(p + off, "PARX", 4);
    fix_crc(p, base_len);
    expect_bytes_error("no-parm.model", p, base_len, CNN_ERR_FORMAT, "missing PARM section");
}

/* The PARM section cut out: the file is now too small for the spec's parameters. */
static void test_removed_parm(void **state) {
    (void)state;
    size_t n;
    uint8_t *p = splice("PARM", NULL, 0, 1, &n);
    expect_bytes_error("removed-parm.model", p, n, CNN_ERR_FORMAT, "more parameters than the file holds");
}

static void test_missing_spec(void **state) {
    (void)state;
    size_t n;
    uint8_t *p = splice("SPEC", NULL, 0, 1, &n);
    expect_bytes_error("no-spec.model", p, n, CNN_ERR_FORMAT, "SPEC");
}

/* SPEC payload: u32 c, h, w, then the text. */
static uint8_t *forge_spec(uint32_t c, uint32_t h, uint32_t w, const char *text, size_t tn,
                           size_t *n) {
    uint8_t *payload = malloc(12 + tn);
    assert_non_null(payload);
    put_u32(payload, c);
    put_u32(payload + 4, h);
    put_u32(payload + 8, w);
    memcpy(payload + 12, text, tn);
    uint8_t *p = splice("SPEC", payload, 12 + tn, 0, n);
    free(payload);
    return p;
}

/* A spec far larger than its file, refused from the spec alone, before allocating, so it is
 * fast (well under a second even under ASan). "dense 100000" (then "dense 10", as the last
 * layer must give 2 to 10 class scores) needs ~15.5M parameters (62 MB): within every limit of
 * the library, but not within the file, so the file-size bound catches it. "dense 1000000"
 * (~155M, 620 MB) is past the dense layer's own limit as well. */
static void test_spec_huge_network(void **state) {
    (void)state;
    static const char text[] =
        "conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dense 100000, dense 10";
    size_t n;
    uint8_t *p = forge_spec(1, 12, 12, text, sizeof text - 1, &n);
    double t0 = now_s();
    expect_bytes_error("huge-spec.model", p, n, CNN_ERR_FORMAT, "stored spec",
                       "more parameters than the file holds");
    double dt = now_s() - t0;
    print_message("huge forged spec refused in %.3f ms\n", dt * 1e3);
    assert_true(dt < 0.5);
    static const char text2[] =
        "conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dense 1000000, dense 10";
    p = forge_spec(1, 12, 12, text2, sizeof text2 - 1, &n);
    t0 = now_s();
    expect_bytes_error("huger-spec.model", p, n, CNN_ERR_FORMAT, "stored spec");
    dt = now_s() - t0;
    assert_true(dt < 0.5);
}

/* The input shape is the other way to inflate a spec: 1 x 4096 x 4096 is in range, and a
 * dense layer on it would need 16.7M parameters per unit. 1 x 1024 x 1024 (10.5M for dense 10)
 * is within the dense layer's limit, so there the file-size bound refuses it. */
static void test_spec_huge_input(void **state) {
    (void)state;
    static const char text[] = "dense 10";
    size_t n;
    uint8_t *p = forge_spec(1, 4096, 4096, text, sizeof text - 1, &n);
    double t0 = now_s();
    expect_bytes_error("huge-input.model", p, n, CNN_ERR_FORMAT, "stored spec");
    assert_true(now_s() - t0 < 0.5);
    p = forge_spec(1, 1024, 1024, text, sizeof text - 1, &n);
    t0 = now_s();
    expect_bytes_error("big-input.model", p, n, CNN_ERR_FORMAT, "stored spec",
                       "more parameters than the file holds");
    assert_true(now_s() - t0 < 0.5);
}

static void test_spec_shape_out_of_range(void **state) {
    (void)state;
    size_t n;
    uint8_t *p = forge_spec(1, 0xFFFFFFFFu, 12, SPEC, sizeof SPEC - 1, &n);
    expect_bytes_error("bad-shape.model", p, n, CNN_ERR_FORMAT, "input shape", "out of range");
}

static void test_spec_invalid_text(void **state) {
    (void)state;
    static const char text[] = "conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dens 10";
    size_t n;
    uint8_t *p = forge_spec(1, 12, 12, text, sizeof text - 1, &n);
    expect_bytes_error("bad-spec.model", p, n, CNN_ERR_FORMAT, "stored spec is invalid",
                       "unknown layer 'dens'");
}

static void test_spec_with_nul(void **state) {
    (void)state;
    static const char text[] = "dense 10\0, dense 5";
    size_t n;
    uint8_t *p = forge_spec(1, 12, 12, text, sizeof text - 1, &n);
    expect_bytes_error("nul-spec.model", p, n, CNN_ERR_FORMAT, "NUL");
}

/* A spec edited to need a few more parameters than PARM holds (a bn after the last dense:
 * +20), small enough to pass the file-size bound, caught by the PARM count check. */
static void test_spec_needs_more_params(void **state) {
    (void)state;
    static const char text[] = "conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dense 10, bn";
    size_t n;
    uint8_t *p = forge_spec(1, 12, 12, text, sizeof text - 1, &n);
    expect_bytes_error("spec-more.model", p, n, CNN_ERR_FORMAT, "PARM", "needs 1518 values");
}

/* ... and one needing fewer (dense 9: 1498 - 145). */
static void test_spec_needs_fewer_params(void **state) {
    (void)state;
    static const char text[] = "conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dense 9";
    size_t n;
    uint8_t *p = forge_spec(1, 12, 12, text, sizeof text - 1, &n);
    expect_bytes_error("spec-fewer.model", p, n, CNN_ERR_FORMAT, "PARM", "needs 1353 values");
}

static void test_stray_byte_after_end(void **state) {
    (void)state;
    const size_t n = base_len + 1;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    memcpy(p, base, base_len - 4);
    p[base_len - 4] = 0x5A; /* between END and the CRC */
    fix_crc(p, n);
    expect_bytes_error("stray-byte.model", p, n, CNN_ERR_FORMAT, "1 stray bytes");
}

/* A byte after the CRC: then the last four bytes are no longer the CRC. */
static void test_stray_byte_after_crc(void **state) {
    (void)state;
    uint8_t *p = malloc(base_len + 1);
    assert_non_null(p);
    memcpy(p, base, base_len);
    p[base_len] = 0;
    expect_bytes_error("stray-after-crc.model", p, base_len + 1, CNN_ERR_FORMAT, "checksum");
}

static uint8_t *forge_norm(float mean, float std, size_t *n) {
    uint8_t payload[8];
    uint32_t u;
    memcpy(&u, &mean, 4);
    put_u32(payload, u);
    memcpy(&u, &std, 4);
    put_u32(payload + 4, u);
    return splice("NORM", payload, 8, 0, n);
}

static void test_norm_nan_std(void **state) {
    (void)state;
    size_t n;
    uint8_t *p = forge_norm(0.1307f, NAN, &n);
    expect_bytes_error("nan-std.model", p, n, CNN_ERR_FORMAT, "normalisation");
}

static void test_norm_zero_std(void **state) {
    (void)state;
    size_t n;
    uint8_t *p = forge_norm(0.1307f, 0.0f, &n);
    expect_bytes_error("zero-std.model", p, n, CNN_ERR_FORMAT, "normalisation");
}

static void test_norm_nan_mean(void **state) {
    (void)state;
    size_t n;
    uint8_t *p = forge_norm(NAN, 0.3f, &n);
    expect_bytes_error("nan-mean.model", p, n, CNN_ERR_FORMAT, "normalisation");
}

/* Inf is as wrong as NaN: std = Inf turns every input into 0 (all predictions equal), mean =
 * Inf turns it into -Inf (NaN probabilities). */
static void test_norm_inf_std(void **state) {
    (void)state;
    size_t n;
    uint8_t *p = forge_norm(0.1307f, INFINITY, &n);
    expect_bytes_error("inf-std.model", p, n, CNN_ERR_FORMAT, "normalisation");
}

static void test_norm_inf_mean(void **state) {
    (void)state;
    size_t n;
    uint8_t *p = forge_norm(INFINITY, 0.3f, &n);
    expect_bytes_error("inf-mean.model", p, n, CNN_ERR_FORMAT, "normalisation");
}

/* ---- hostile input: not model files at all --------------------------------------------------- */

static void test_empty_file(void **state) {
    (void)state;
    const char *path = write_file("empty.model", "", 0);
    expect_load_error(path, CNN_ERR_FORMAT, "0 bytes");
}

static void test_directory(void **state) {
    (void)state;
    assert_int_equal(mkdir(tpath("a-directory"), 0755), 0);
    expect_load_error(tpath("a-directory"), CNN_ERR_IO, "not a regular file");
}

/* A FIFO with no writer: open() would wait forever; it is refused at once instead. */
static void test_fifo(void **state) {
    (void)state;
    assert_int_equal(mkfifo(tpath("a-fifo.model"), 0644), 0);
    expect_load_error(tpath("a-fifo.model"), CNN_ERR_IO, "not a regular file");
}

/* Saving over a FIFO (or a device node, as root) must not replace it with a regular file. */
static void test_save_over_non_regular_refused(void **state) {
    (void)state;
    struct cnn_model *m = make_model(SPEC, 3, 42);
    assert_int_equal(mkfifo(tpath("out-fifo.model"), 0644), 0);
    check_error(cnn_model_save(m, tpath("out-fifo.model")), CNN_ERR_IO, "not a regular file");
    struct stat st;
    assert_int_equal(lstat(tpath("out-fifo.model"), &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    check_error(cnn_model_save(m, "/dev/null"), CNN_ERR_IO, "/dev/null", "not a regular file");
    assert_int_equal(stat("/dev/null", &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    cnn_model_free(m);
}

static void test_nonexistent(void **state) {
    (void)state;
    expect_load_error(tpath("no-such.model"), CNN_ERR_IO, "cannot open", "No such file");
}

/* An IDX label file (the other binary format around here) is not a model. */
static void test_idx_file(void **state) {
    (void)state;
    uint8_t idx[8 + 60] = {0, 0, 8, 1, 0, 0, 0, 60};
    for (int i = 0; i < 60; i++) idx[8 + i] = (uint8_t)(i % 10);
    const char *path = write_file("labels-idx1-ubyte", idx, sizeof idx);
    expect_load_error(path, CNN_ERR_FORMAT, "not a model file");
}

/* Over the 1 GiB limit (a sparse file): refused from its size, before reading. */
static void test_over_size_limit(void **state) {
    (void)state;
    const char *path = write_file("huge.model", base, 64);
    assert_int_equal(truncate(path, ((off_t)1 << 30) + 1), 0);
    const double t0 = now_s();
    expect_load_error(path, CNN_ERR_LIMIT, "limit");
    assert_true(now_s() - t0 < 0.5);
    unlink(path);
}

/* ---- metadata ------------------------------------------------------------------------------ */

/* Forged META sections: every line is checked as cnn_model_set_meta checks what a caller
 * sets, and a bad one is refused as a format error naming the file and the line. */
static void expect_meta_words(const char *name, const char *text, size_t len,
                              const char *const *words) {
    size_t n;
    uint8_t *p = splice("META", text, len, 0, &n);
    expect_bytes_words(name, p, n, CNN_ERR_FORMAT, words);
}
#define expect_meta_error(name, text, ...)                                                         \
    expect_meta_words((name), (text), sizeof(text) - 1, (const char *const[]){__VA_ARGS__, NULL})

static void test_meta_line_no_equals(void **state) {
    (void)state;
    expect_meta_error("meta-no-eq.model", "dataset=mnist\nepochs 7\n", "metadata line 2",
                      "no '='");
    /* an empty line has no '=' either */
    expect_meta_error("meta-empty-line.model", "dataset=mnist\n\nepochs=7\n", "metadata line 2",
                      "no '='");
}

static void test_meta_line_control_char(void **state) {
    (void)state;
    expect_meta_error("meta-ctrl.model", "dataset=mnist\ndate=2024\x01-01\n", "metadata line 2",
                      "control character");
    expect_meta_error("meta-esc.model", "dataset=\x1b[2Jmnist\n", "metadata line 1",
                      "control character");
    expect_meta_error("meta-tab.model", "epochs=7\ndataset=mn\tist\n", "metadata line 2",
                      "control character");
    expect_meta_error("meta-del.model", "dataset=mnist\x7f\n", "metadata line 1",
                      "control character");
    /* CRLF line ends leave a carriage return in the value */
    expect_meta_error("meta-crlf.model", "dataset=mnist\r\nepochs=7\r\n", "metadata line 1",
                      "control character");
    /* a NUL inside a line */
    expect_meta_error("meta-nul.model", "dataset=mnist\nepochs=7\0\n", "metadata line 2", "NUL");
}

static void test_meta_line_too_long(void **state) {
    (void)state;
    /* a value of 256 characters: one more than allowed */
    char text[1200];
    int len = snprintf(text, sizeof text, "epochs=7\nval_acc=");
    memset(text + len, '9', 256);
    len += 256;
    text[len++] = '\n';
    expect_meta_words("meta-long-value.model", text, (size_t)len,
                      (const char *const[]){"metadata line 2", "longer than 255", NULL});
    /* 255 is fine */
    len = snprintf(text, sizeof text, "epochs=7\nval_acc=");
    memset(text + len, '9', 255);
    len += 255;
    text[len++] = '\n';
    size_t n;
    uint8_t *p = splice("META", text, (size_t)len, 0, &n);
    struct cnn_model *m;
    const int rc = cnn_model_parse(p, n, "meta-255", &m);
    free(p);
    if (rc != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(strlen(cnn_model_meta(m, "val_acc")), 255);
    cnn_model_free(m);
    /* a line of 1000 characters, far past any key and value */
    len = snprintf(text, sizeof text, "dataset=mnist\ndate=");
    memset(text + len, 'x', 1000);
    len += 1000;
    expect_meta_words("meta-long-line.model", text, (size_t)len,
                      (const char *const[]){"metadata line 2", "too long", NULL});
}

static void test_meta_line_bad_key(void **state) {
    (void)state;
    expect_meta_error("meta-upper-key.model", "Dataset=mnist\n", "metadata line 1",
                      "[a-z0-9._-]");
    expect_meta_error("meta-space-key.model", "dataset=mnist\ntrain images=1800\n",
                      "metadata line 2", "[a-z0-9._-]");
    expect_meta_error("meta-empty-key.model", "dataset=mnist\nepochs=7\n=7\n", "metadata line 3",
                      "[a-z0-9._-]");
    expect_meta_error("meta-slash-key.model", "../../etc/passwd=x\n", "metadata line 1",
                      "[a-z0-9._-]");
    expect_meta_error("meta-utf8-key.model", "caf\xc3\xa9=1\n", "metadata line 1", "[a-z0-9._-]");
    /* 48 characters: one too many */
    expect_meta_error("meta-48-key.model", "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijkl=1\n",
                      "metadata line 1", "[a-z0-9._-]");
}

/* The 65th key in a file: the same limit as cnn_model_set_meta, as a format error. */
static void test_meta_too_many_keys(void **state) {
    (void)state;
    char text[65 * 16];
    size_t len = 0;
    for (int i = 0; i < 65; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "key.%d=%d\n", i, i);
    expect_meta_words("meta-65-keys.model", text, len,
                      (const char *const[]){"metadata line 65", "more than 64 keys", NULL});
    /* 64 load */
    size_t n;
    uint8_t *p = splice("META", text, len - strlen("key.64=64\n"), 0, &n);
    struct cnn_model *m;
    const int rc = cnn_model_parse(p, n, "meta-64", &m);
    free(p);
    if (rc != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_model_meta_count(m), 64);
    assert_string_equal(cnn_model_meta(m, "key.63"), "63");
    cnn_model_free(m);
}

/* What the checks allow: an empty section, a last line without '\n', '=' inside a value, an
 * empty value, UTF-8 in a value, every character a key may hold. */
static void test_meta_valid_forms(void **state) {
    (void)state;
    static const char text[] = "dataset=mnist\nnote=a=b\nempty=\nclass.0=z\xc3\xa9ro\n"
                               "a-b_c.9=x\ndate=2024-01-02T03:04:05Z";
    size_t n;
    uint8_t *p = splice("META", text, sizeof text - 1, 0, &n);
    struct cnn_model *m;
    int rc = cnn_model_parse(p, n, "meta-valid", &m);
    free(p);
    if (rc != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_model_meta_count(m), 6);
    assert_string_equal(cnn_model_meta(m, "dataset"), "mnist");
    assert_string_equal(cnn_model_meta(m, "note"), "a=b");
    assert_string_equal(cnn_model_meta(m, "empty"), "");
    assert_string_equal(cnn_model_meta(m, "class.0"), "z\xc3\xa9ro");
    assert_string_equal(cnn_model_class_name(m, 0), "z\xc3\xa9ro");
    assert_string_equal(cnn_model_meta(m, "a-b_c.9"), "x");
    assert_string_equal(cnn_model_meta(m, "date"), "2024-01-02T03:04:05Z");
    const char *k, *v;
    assert_int_equal(cnn_model_meta_at(m, 5, &k, &v), CNN_OK);
    assert_string_equal(k, "date");
    cnn_model_free(m);
    p = splice("META", "", 0, 0, &n);
    rc = cnn_model_parse(p, n, "meta-empty", &m);
    free(p);
    if (rc != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_model_meta_count(m), 0);
    cnn_model_free(m);
}

static const char *const class_names[10] = {
    "zero", "one", "two", "three", "four", "five", "six", "seven (7)", "huit", "neun \xc3\xa4"};

/* Metadata with class names survives save and load, in order; unset names are the digits. */
static void test_meta_class_names_roundtrip(void **state) {
    (void)state;
    struct cnn_model *m = make_model("maxpool 2, dense 10", 0, 3);
    assert_int_equal(cnn_model_meta_count(m), 0);
    assert_string_equal(cnn_model_class_name(m, 7), "7");
    assert_string_equal(cnn_model_class_name(m, 0), "0");
    assert_string_equal(cnn_model_class_name(m, 9), "9");
    assert_null(cnn_model_class_name(m, -1));
    assert_null(cnn_model_class_name(m, 10));
    assert_int_equal(cnn_model_set_meta(m, "dataset", "mnist"), CNN_OK);
    for (int i = 0; i < 10; i++) {
        char key[16];
        snprintf(key, sizeof key, "class.%d", i);
        assert_int_equal(cnn_model_set_meta(m, key, class_names[i]), CNN_OK);
    }
    assert_int_equal(cnn_model_set_meta(m, "epochs", "3"), CNN_OK);
    assert_int_equal(cnn_model_set_meta(m, "epochs", "4"), CNN_OK); /* replaced in place */
    assert_int_equal(cnn_model_meta_count(m), 12);
    const char *path = tpath("class-names.model");
    assert_int_equal(cnn_model_save(m, path), CNN_OK);
    struct cnn_model *back;
    if (cnn_model_load(path, &back) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_same_model(m, back);
    assert_int_equal(cnn_model_meta_count(back), 12);
    assert_string_equal(cnn_model_meta(back, "dataset"), "mnist");
    assert_string_equal(cnn_model_meta(back, "epochs"), "4");
    for (int i = 0; i < 10; i++) assert_string_equal(cnn_model_class_name(back, i), class_names[i]);
    assert_null(cnn_model_class_name(back, 10));
    /* the order they were first set: dataset, class.0 .. class.9, epochs */
    const char *k, *v;
    assert_int_equal(cnn_model_meta_at(back, 0, &k, &v), CNN_OK);
    assert_string_equal(k, "dataset");
    assert_int_equal(cnn_model_meta_at(back, 8, &k, &v), CNN_OK);
    assert_string_equal(k, "class.7");
    assert_string_equal(v, "seven (7)");
    assert_int_equal(cnn_model_meta_at(back, 11, &k, &v), CNN_OK);
    assert_string_equal(k, "epochs");
    check_error(cnn_model_meta_at(back, 12, &k, &v), CNN_ERR_ARG, "out of range");
    check_error(cnn_model_meta_at(back, -1, &k, &v), CNN_ERR_ARG, "out of range");
    /* removing class.7 brings back the digit and keeps the others' order */
    assert_int_equal(cnn_model_set_meta(back, "class.7", NULL), CNN_OK);
    assert_null(cnn_model_meta(back, "class.7"));
    assert_string_equal(cnn_model_class_name(back, 7), "7");
    assert_string_equal(cnn_model_class_name(back, 8), "huit");
    assert_int_equal(cnn_model_meta_count(back), 11);
    assert_int_equal(cnn_model_meta_at(back, 8, &k, &v), CNN_OK);
    assert_string_equal(k, "class.8");
    /* removing a key that is not there does nothing */
    assert_int_equal(cnn_model_set_meta(back, "no.such.key", NULL), CNN_OK);
    assert_int_equal(cnn_model_meta_count(back), 11);
    cnn_model_free(back);
    cnn_model_free(m);
    /* a model with 3 classes has 3 names */
    struct cnn_model *m3;
    assert_int_equal(cnn_model_new("dense 3", 1, 4, 4, &m3), CNN_OK);
    assert_int_equal(cnn_model_set_meta(m3, "class.2", "cat"), CNN_OK);
    assert_string_equal(cnn_model_class_name(m3, 2), "cat");
    assert_string_equal(cnn_model_class_name(m3, 1), "1");
    assert_null(cnn_model_class_name(m3, 3));
    cnn_model_free(m3);
}

/* cnn_model_set_meta refuses a bad key or value (CNN_ERR_ARG) and a 65th key (CNN_ERR_LIMIT),
 * and a refused call changes nothing. */
static void test_meta_set_refused(void **state) {
    (void)state;
    struct cnn_model *m;
    assert_int_equal(cnn_model_new("dense 10", 1, 4, 4, &m), CNN_OK);
    assert_int_equal(cnn_model_set_meta(m, "dataset", "mnist"), CNN_OK);
    /* keys */
    static const char *const bad_keys[] = {
        "",          "Dataset", "data set", "key=x", "a/b", "tab\tkey", "caf\xc3\xa9",
        "dataset\n", "x:y",
        "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijkl", /* 48 characters */
    };
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++)
        check_error(cnn_model_set_meta(m, bad_keys[i], "v"), CNN_ERR_ARG, "[a-z0-9._-]");
    check_error(cnn_model_set_meta(m, NULL, "v"), CNN_ERR_ARG, "[a-z0-9._-]");
    check_error(cnn_model_set_meta(m, "", NULL), CNN_ERR_ARG, "key"); /* even to remove */
    assert_int_equal(cnn_model_set_meta(m, "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijk", "47"),
                     CNN_OK);
    assert_int_equal(cnn_model_set_meta(m, "0.9_-z", "ok"), CNN_OK);
    /* values */
    check_error(cnn_model_set_meta(m, "dataset", "two\nlines"), CNN_ERR_ARG, "dataset",
                "control character");
    check_error(cnn_model_set_meta(m, "dataset", "cr\r"), CNN_ERR_ARG, "control character");
    check_error(cnn_model_set_meta(m, "dataset", "bell\a"), CNN_ERR_ARG, "control character");
    check_error(cnn_model_set_meta(m, "dataset", "del\x7f"), CNN_ERR_ARG, "control character");
    char v256[257], v255[256];
    memset(v256, 'v', 256);
    v256[256] = '\0';
    memset(v255, 'v', 255);
    v255[255] = '\0';
    check_error(cnn_model_set_meta(m, "dataset", v256), CNN_ERR_ARG, "dataset",
                "longer than 255");
    check_error(cnn_model_set_meta(m, "note", v256), CNN_ERR_ARG, "longer than 255");
    /* the refusals changed nothing */
    assert_string_equal(cnn_model_meta(m, "dataset"), "mnist");
    assert_null(cnn_model_meta(m, "note"));
    assert_int_equal(cnn_model_meta_count(m), 3);
    assert_int_equal(cnn_model_set_meta(m, "note", v255), CNN_OK);
    assert_string_equal(cnn_model_meta(m, "note"), v255);
    assert_null(cnn_model_meta(m, NULL));
    /* 64 keys, then the 65th is refused; replacing one is still fine; removing one frees a place */
    for (int i = cnn_model_meta_count(m); i < CNN_META_MAX; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(cnn_model_set_meta(m, key, "x"), CNN_OK);
    }
    assert_int_equal(cnn_model_meta_count(m), 64);
    check_error(cnn_model_set_meta(m, "one.more", "x"), CNN_ERR_LIMIT, "one.more", "64 keys");
    assert_null(cnn_model_meta(m, "one.more"));
    assert_int_equal(cnn_model_meta_count(m), 64);
    assert_int_equal(cnn_model_set_meta(m, "dataset", "fashion"), CNN_OK);
    assert_string_equal(cnn_model_meta(m, "dataset"), "fashion");
    assert_int_equal(cnn_model_set_meta(m, "note", NULL), CNN_OK);
    assert_null(cnn_model_meta(m, "note"));
    assert_int_equal(cnn_model_meta_count(m), 63);
    assert_int_equal(cnn_model_set_meta(m, "one.more", "x"), CNN_OK);
    assert_int_equal(cnn_model_meta_count(m), 64);
    /* and a model with 64 keys saves and loads whole */
    const char *path = tpath("meta-64.model");
    assert_int_equal(cnn_model_save(m, path), CNN_OK);
    struct cnn_model *back;
    if (cnn_model_load(path, &back) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_same_meta(m, back);
    cnn_model_free(back);
    cnn_model_free(m);
}

/* ---- the previous release's file ------------------------------------------------------------ */

#define V1_MODEL "tests/data/v1.model"

/* tests/data/v1.model (format version 1, written by the previous release) loads with its
 * metadata and classifies the 10,000 MNIST test images exactly as that release did: 6141
 * right, class 0's confusion row {734, 0, 18, 36, 7, 59, 122, 1, 2, 1}. */
static void test_v1_fixture_mnist(void **state) {
    (void)state;
    size_t n;
    uint8_t *buf = read_all(V1_MODEL, &n);
    uint32_t version = 0;
    if (cnn_model_check(buf, n, V1_MODEL, &version) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(version, 1);
    free(buf);
    struct cnn_model *m = SENTINEL_MODEL;
    if (cnn_model_load(V1_MODEL, &m) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_string_equal(cnn_model_spec(m), "conv 4 3, bn, relu, maxpool 2, dense 10");
    int c, h, w;
    cnn_model_input_shape(m, &c, &h, &w);
    assert_int_equal(c, 1);
    assert_int_equal(h, 28);
    assert_int_equal(w, 28);
    assert_int_equal(cnn_model_n_classes(m), 10);
    assert_string_equal(cnn_model_meta(m, "dataset"), "mnist");
    assert_string_equal(cnn_model_meta(m, "epochs"), "1");
    assert_string_equal(cnn_model_meta(m, "train_images"), "1800");
    assert_string_equal(cnn_model_meta(m, "val_acc"), "0.615000");
    assert_non_null(cnn_model_meta(m, "date"));
    assert_int_equal(cnn_model_meta_count(m), 5);
    assert_string_equal(cnn_model_class_name(m, 4), "4");

    struct cnn_dataset ds;
    if (cnn_dataset_load_dir("data/mnist", "test", &ds) != CNN_OK)
        fail_msg("%s (run scripts/fetch-data --dataset mnist)", cnn_errmsg());
    assert_int_equal(ds.n, 10000);
    assert_int_equal(ds.h, 28);
    assert_int_equal(ds.w, 28);
    struct cnn_ctx *ctx;
    if (cnn_ctx_new(m, 256, 1, &ctx) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_ctx_threads(ctx), 1);
    float *probs = malloc((size_t)ds.n * 10 * sizeof(float));
    assert_non_null(probs);
    assert_int_equal(cnn_predict_u8(m, ctx, ds.images, ds.n, probs), CNN_OK);
    struct cnn_metrics mt;
    cnn_metrics_init(&mt, 10);
    for (int i = 0; i < ds.n; i++) cnn_metrics_add(&mt, ds.labels[i], cnn_argmax(probs + i * 10, 10));
    cnn_metrics_finish(&mt);
    print_message("v1.model on the MNIST test set: %ld of %ld right\n", mt.correct, mt.n);
    assert_int_equal(mt.n, 10000);
    assert_int_equal(mt.correct, 6141);
    static const long row0[10] = {734, 0, 18, 36, 7, 59, 122, 1, 2, 1};
    for (int j = 0; j < 10; j++)
        if (mt.confusion[0][j] != row0[j])
            fail_msg("confusion[0][%d] = %ld, the previous release had %ld", j,
                     mt.confusion[0][j], row0[j]);

    /* saved again it becomes a version 2 file with the same contents */
    const char *path = tpath("v1-resaved.model");
    assert_int_equal(cnn_model_save(m, path), CNN_OK);
    buf = read_all(path, &n);
    assert_int_equal(cnn_model_check(buf, n, path, &version), CNN_OK);
    assert_int_equal(version, 2);
    free(buf);
    struct cnn_model *back;
    if (cnn_model_load(path, &back) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_same_model(m, back);
    float *again = malloc((size_t)ds.n * 10 * sizeof(float));
    assert_non_null(again);
    assert_int_equal(cnn_predict_u8(back, ctx, ds.images, ds.n, again), CNN_OK);
    assert_memory_equal(probs, again, (size_t)ds.n * 10 * sizeof(float));
    free(again);
    cnn_model_free(back);
    free(probs);
    cnn_ctx_free(ctx);
    cnn_dataset_free(&ds);
    cnn_model_free(m);
}

/* ---- temporary files ------------------------------------------------------------------------ */

/* Someone plants PATH.tmp.<our pid> as a symlink to a file of theirs (or to a name not yet
 * made) before we save PATH: the save must not write through it. The library opens its
 * temporary with O_EXCL | O_NOFOLLOW, removing a stale one first. */
static void test_save_tmp_symlink(void **state) {
    (void)state;
    const char *victim = write_file("victim.txt", "precious data", 13);
    char victim_path[256], path[256], tmp[300], absent[256];
    snprintf(victim_path, sizeof victim_path, "%s", victim);
    snprintf(path, sizeof path, "%s", tpath("linked.model"));
    snprintf(absent, sizeof absent, "%s", tpath("never-made.txt"));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    assert_int_equal(symlink(victim_path, tmp), 0);
    struct cnn_model *m = make_model(SPEC, 1, 11);
    set_fixture_meta(m);
    if (cnn_model_save(m, path) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_true(same_file_bytes(victim_path, (const uint8_t *)"precious data", 13));
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode)); /* the model itself, not a link */
    assert_int_not_equal(lstat(tmp, &st), 0);
    struct cnn_model *back;
    if (cnn_model_load(path, &back) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_same_model(m, back);
    cnn_model_free(back);
    /* a dangling link: its target must not be created */
    assert_int_equal(symlink(absent, tmp), 0);
    if (cnn_model_save(m, path) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_not_equal(lstat(absent, &st), 0);
    assert_int_not_equal(lstat(tmp, &st), 0);
    assert_true(same_file_bytes(victim_path, (const uint8_t *)"precious data", 13));
    cnn_model_free(m);
    unlink(victim_path);
    assert_int_equal(count_tmp_files(tmpdir), 0);
}

/* ---- the optimizer --------------------------------------------------------------------------- */

/* cnn_optim_step refuses a parameter count that is not the optimizer's, and changes nothing. */
static void test_optim_size_refused(void **state) {
    (void)state;
    static const int kinds[] = {CNN_OPT_SGD, CNN_OPT_ADAM, CNN_OPT_ADAMW};
    for (size_t q = 0; q < sizeof kinds / sizeof kinds[0]; q++) {
        struct cnn_model *m = make_model("maxpool 2, dense 10", 0, 4);
        const size_t np = m->n_params;
        assert_int_equal(np, 36 * 10 + 10);
        struct cnn_optim_cfg oc;
        cnn_optim_cfg_default(&oc, kinds[q]);
        oc.weight_decay = 0.01f;
        struct cnn_optim *o;
        assert_int_equal(cnn_optim_new(m, &oc, &o), CNN_OK);
        float *g = malloc((np + 1) * sizeof(float)), *before = malloc(np * sizeof(float));
        assert_non_null(g);
        assert_non_null(before);
        for (size_t i = 0; i <= np; i++) g[i] = 0.5f;
        memcpy(before, m->params, np * sizeof(float));
        static const size_t deltas[] = {(size_t)-1, 1, 0};
        for (size_t d = 0; d < 2; d++) {
            const size_t n = np + deltas[d];
            char words[2][48];
            snprintf(words[0], sizeof words[0], "%zu", np);
            snprintf(words[1], sizeof words[1], "%zu", n);
            check_error(cnn_optim_step(o, m->params, g, m->decay_mask, n, 0.1f), CNN_ERR_ARG,
                        "optimizer", words[0], words[1]);
        }
        check_error(cnn_optim_step(o, m->params, g, m->decay_mask, 0, 0.1f), CNN_ERR_ARG,
                    "optimizer");
        assert_int_equal(o->t, 0);
        assert_memory_equal(m->params, before, np * sizeof(float));
        /* the right size steps */
        assert_int_equal(cnn_optim_step(o, m->params, g, m->decay_mask, np, 0.1f), CNN_OK);
        assert_int_equal(o->t, 1);
        assert_true(memcmp(m->params, before, np * sizeof(float)) != 0);
        free(g);
        free(before);
        cnn_optim_free(o);
        cnn_model_free(m);
    }
}

/* ---- spec items that say more than the kind takes ---------------------------------------------- */

/* Extra numbers and repeated options are refused, naming the item, never silently dropped. */
static void test_spec_extra_numbers_refused(void **state) {
    (void)state;
    static const struct {
        const char *spec, *word;
    } bad[] = {
        {"conv 32 5 2, dense 10", "unexpected number 2"},
        {"maxpool 2 1, dense 10", "unexpected number 1"},
        {"dense 10 20", "unexpected number 20"},
        {"dropout 0.5 0.7, dense 10", "unexpected number 0.7"},
        {"relu 5, dense 10", "takes none"},
        {"leakyrelu 0.1 0.2, dense 10", "unexpected number 0.2"},
        {"conv 8 3 pad=1 pad=2, dense 10", "given twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cnn_model *m = SENTINEL_MODEL;
        check_error(cnn_model_new(bad[i].spec, IN_C, IN_H, IN_W, &m), CNN_ERR_SPEC, "layer 1",
                    bad[i].word);
        assert_null(m);
    }
    /* what the kinds do take still builds */
    struct cnn_model *m;
    assert_int_equal(cnn_model_new("conv 4 3 stride=1 pad=1, leakyrelu 0.1, maxpool 2 stride=2, "
                                   "dropout 0.5, dense 10",
                                   IN_C, IN_H, IN_W, &m),
                     CNN_OK);
    cnn_model_free(m);
}

/* ---- class count ------------------------------------------------------------------------------ */

/* The last layer must give 2 to 10 class scores, from a spec and from a file. */
static void test_last_layer_classes(void **state) {
    (void)state;
    static const char *const bad[] = {"dense 11", "dense 1", "conv 4 3 pad=1, relu",
                                      "dense 20, relu", "maxpool 2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cnn_model *m = SENTINEL_MODEL;
        check_error(cnn_model_new(bad[i], IN_C, IN_H, IN_W, &m), CNN_ERR_SPEC,
                    "2 to 10 class scores");
        assert_null(m);
    }
    for (int k = 2; k <= 10; k++) {
        char spec[32];
        snprintf(spec, sizeof spec, "conv 2 3, dense %d", k);
        struct cnn_model *m;
        if (cnn_model_new(spec, IN_C, IN_H, IN_W, &m) != CNN_OK) fail_msg("%s", cnn_errmsg());
        assert_int_equal(cnn_model_n_classes(m), k);
        cnn_model_free(m);
    }
    static const char text[] = "conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dense 11";
    size_t n;
    uint8_t *p = forge_spec(1, 12, 12, text, sizeof text - 1, &n);
    expect_bytes_error("eleven-classes.model", p, n, CNN_ERR_FORMAT, "stored spec is invalid",
                       "2 to 10 class scores");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_roundtrip_28x28_no_meta),
        cmocka_unit_test(test_no_meta_section),
        cmocka_unit_test(test_parse_matches_load),
        cmocka_unit_test(test_unknown_section_skipped),
        cmocka_unit_test(test_meta_line_no_equals),
        cmocka_unit_test(test_meta_line_control_char),
        cmocka_unit_test(test_meta_line_too_long),
        cmocka_unit_test(test_meta_line_bad_key),
        cmocka_unit_test(test_meta_too_many_keys),
        cmocka_unit_test(test_meta_valid_forms),
        cmocka_unit_test(test_meta_class_names_roundtrip),
        cmocka_unit_test(test_meta_set_refused),
        cmocka_unit_test(test_v1_fixture_mnist),
        cmocka_unit_test(test_optim_size_refused),
        cmocka_unit_test(test_last_layer_classes),
        cmocka_unit_test(test_save_missing_dir),
        cmocka_unit_test(test_save_replaces_fully),
        cmocka_unit_test(test_save_removes_stale_temps),
        cmocka_unit_test(test_save_onto_directory),
        cmocka_unit_test(test_save_under_a_file),
        cmocka_unit_test(test_save_write_fails_keeps_old),
        cmocka_unit_test(test_save_tmp_symlink),
        cmocka_unit_test(test_truncated_0),
        cmocka_unit_test(test_truncated_7),
        cmocka_unit_test(test_truncated_15),
        cmocka_unit_test(test_truncated_40),
        cmocka_unit_test(test_truncated_half),
        cmocka_unit_test(test_truncated_len_minus_1),
        cmocka_unit_test(test_truncated_no_crc),
        cmocka_unit_test(test_missing_end),
        cmocka_unit_test(test_bitflip_params),
        cmocka_unit_test(test_bitflip_state),
        cmocka_unit_test(test_bitflip_magic),
        cmocka_unit_test(test_bitflip_header_flags),
        cmocka_unit_test(test_bitflip_header_version),
        cmocka_unit_test(test_bitflip_spec),
        cmocka_unit_test(test_bitflip_crc),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_version_1_loads),
        cmocka_unit_test(test_section_claims_2_40_bytes),
        cmocka_unit_test(test_parm_count_2_40),
        cmocka_unit_test(test_parm_count_mismatch),
        cmocka_unit_test(test_stat_count_mismatch),
        cmocka_unit_test(test_missing_parm),
        cmocka_unit_test(test_removed_parm),
        cmocka_unit_test(test_missing_spec),
        cmocka_unit_test(test_spec_huge_network),
        cmocka_unit_test(test_spec_huge_input),
        cmocka_unit_test(test_spec_shape_out_of_range),
        cmocka_unit_test(test_spec_invalid_text),
        cmocka_unit_test(test_spec_with_nul),
        cmocka_unit_test(test_spec_needs_more_params),
        cmocka_unit_test(test_spec_needs_fewer_params),
        cmocka_unit_test(test_stray_byte_after_end),
        cmocka_unit_test(test_stray_byte_after_crc),
        cmocka_unit_test(test_norm_nan_std),
        cmocka_unit_test(test_norm_zero_std),
        cmocka_unit_test(test_norm_nan_mean),
        cmocka_unit_test(test_norm_inf_std),
        cmocka_unit_test(test_norm_inf_mean),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_save_over_non_regular_refused),
        cmocka_unit_test(test_spec_extra_numbers_refused),
        cmocka_unit_test(test_nonexistent),
        cmocka_unit_test(test_idx_file),
        cmocka_unit_test(test_over_size_limit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
