/*
 * test_model_io.c - model files: the save/load round trip, atomic writes, and hostile input.
 *
 * The fixture is a small trained net ("conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.25,
 * dense 10" on 1x12x12, a few Adam steps so batch-norm running statistics are not at their
 * initial values), saved once into a mkdtemp directory. Every corrupt-file case below starts
 * from those bytes, breaks one thing, and checks four things: the status code, that
 * cnn_errmsg() names the file and the problem, that *out stays NULL, and (under ASan) that
 * nothing leaks. Forged files get a recomputed CRC-32 (zlib) so that only the check under
 * test can catch them.
 *
 * File layout (src/model_io.c): "CNNMODEL" u32 version u32 flags, sections
 * {u32 tag, u64 length, bytes}, an "END " section of length 0, then u32 crc32 of all before.
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

#include "cnn.h"
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

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A non-NULL value that must be overwritten with NULL by a failing load. */
static char sentinel;
#define SENTINEL_NET ((struct cnn_net *)(void *)&sentinel)

/* cnn_model_load(path) must fail with `want`, name the path and every word, leave *out NULL. */
static void expect_load_words(const char *path, int want, const char *const *words) {
    struct cnn_net *net = SENTINEL_NET;
    struct cnn_meta meta;
    const int rc = cnn_model_load(path, &net, &meta);
    if (rc == CNN_OK) {
        cnn_net_free(net);
        fail_msg("%s: loaded, expected status %d (%s)", path, want, cnn_status_str(want));
    }
    check_error(rc, want, path);
    check_error_words(rc, want, words);
    assert_null(net);
    /* the in-memory parser agrees, and names what it was given */
    if (want == CNN_ERR_FORMAT) {
        size_t n;
        uint8_t *buf = read_all(path, &n);
        net = SENTINEL_NET;
        const int prc = cnn_model_parse(buf, n, "in-memory copy", &net, NULL);
        free(buf);
        check_error(prc, want, "in-memory copy");
        check_error_words(prc, want, words);
        assert_null(net);
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

/* ---- the fixture net ----------------------------------------------------------------------- */

static void random_pixels(uint8_t *px, size_t n, struct cnn_rng *rng) {
    for (size_t i = 0; i < n; i++) px[i] = (uint8_t)(cnn_rng_u64(rng) >> 56);
}

/* Build SPEC on 1x12x12 (or a given spec), init with a seeded rng, then `steps` Adam steps on
 * random batches of 16 so that parameters and bn running statistics move off their initial
 * values. Sets a non-default normalisation. */
static struct cnn_net *make_net(const char *spec, int steps, uint64_t seed) {
    struct cnn_net *net;
    if (cnn_net_new(spec, IN_C, IN_H, IN_W, &net) != CNN_OK) fail_msg("%s", cnn_errmsg());
    struct cnn_rng rng;
    cnn_rng_seed(&rng, seed);
    cnn_net_init_params(net, &rng);
    struct cnn_optim_cfg oc;
    cnn_optim_cfg_default(&oc, CNN_OPT_ADAM);
    struct cnn_optim *opt;
    assert_int_equal(cnn_optim_new(net, &oc, &opt), CNN_OK);
    enum { B = 16, PIX = IN_C * IN_H * IN_W };
    float x[B * PIX];
    uint8_t labels[B];
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < B * PIX; i++) x[i] = 2.0f * cnn_rng_uniform(&rng) - 0.5f;
        for (int i = 0; i < B; i++) labels[i] = (uint8_t)((i + s) % 10);
        float loss;
        assert_int_equal(cnn_net_train_batch(net, x, labels, B, 0.1f, &rng, &loss, NULL), CNN_OK);
        assert_true(isfinite(loss));
        cnn_optim_step(opt, net, 1e-2f);
    }
    cnn_optim_free(opt);
    cnn_net_set_norm(net, 0.1307f, 0.3081f);
    return net;
}

static const struct cnn_meta fixture_meta = {
    .dataset = "mnist-unit",
    .date = "2024-01-02T03:04:05Z",
    .epochs = 7,
    .val_acc = 0.9875f, /* exact in binary and in %.6f text */
    .train_images = 55000,
};

static int group_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_model_io.XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    struct cnn_net *net = make_net(SPEC, 3, 42);
    char path[256];
    snprintf(path, sizeof path, "%s/base.model", tmpdir);
    const int rc = cnn_model_save(net, &fixture_meta, path);
    cnn_net_free(net);
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

static void assert_same_net(struct cnn_net *a, struct cnn_net *b) {
    assert_string_equal(cnn_net_spec(a), cnn_net_spec(b));
    int ac, ah, aw, bc, bh, bw;
    cnn_net_input_shape(a, &ac, &ah, &aw);
    cnn_net_input_shape(b, &bc, &bh, &bw);
    assert_int_equal(ac, bc);
    assert_int_equal(ah, bh);
    assert_int_equal(aw, bw);
    assert_int_equal(cnn_net_n_classes(a), cnn_net_n_classes(b));
    assert_int_equal(cnn_net_n_layers(a), cnn_net_n_layers(b));
    assert_int_equal(cnn_net_n_params(a), cnn_net_n_params(b));
    assert_int_equal(cnn_net_n_state(a), cnn_net_n_state(b));
    assert_memory_equal(cnn_net_params(a), cnn_net_params(b), cnn_net_n_params(a) * sizeof(float));
    assert_memory_equal(cnn_net_state(a), cnn_net_state(b), cnn_net_n_state(a) * sizeof(float));
    float am, as, bm, bs;
    cnn_net_get_norm(a, &am, &as);
    cnn_net_get_norm(b, &bm, &bs);
    assert_memory_equal(&am, &bm, sizeof am);
    assert_memory_equal(&as, &bs, sizeof as);
    /* predictions from raw pixels: bit-identical */
    enum { N = 7 };
    const size_t pix = (size_t)ac * ah * aw;
    uint8_t *px = malloc(N * pix);
    float *pa = malloc(N * 10 * sizeof(float)), *pb = malloc(N * 10 * sizeof(float));
    assert_non_null(px);
    assert_non_null(pa);
    assert_non_null(pb);
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 7);
    random_pixels(px, N * pix, &rng);
    assert_int_equal(cnn_net_predict_u8(a, px, N, pa), CNN_OK);
    assert_int_equal(cnn_net_predict_u8(b, px, N, pb), CNN_OK);
    assert_memory_equal(pa, pb, N * 10 * sizeof(float));
    for (int i = 0; i < N * 10; i++) assert_true(isfinite(pa[i]));
    free(px);
    free(pa);
    free(pb);
}

static void test_roundtrip(void **state) {
    (void)state;
    struct cnn_net *net = make_net(SPEC, 3, 42);
    /* the fixture really has trained bn statistics: running mean moved off 0, var off 1 */
    const float *st = cnn_net_state(net);
    /* conv 4*9+4, bn 2*4, dense 144*10+10: the counts the forged-file tests rely on */
    assert_int_equal(cnn_net_n_params(net), 40 + 8 + 1450);
    assert_int_equal(cnn_net_n_state(net), 8); /* bn over 4 channels: mean(4), var(4) */
    int moved = 0;
    for (int i = 0; i < 4; i++) moved += st[i] != 0.0f && st[4 + i] != 1.0f;
    assert_int_equal(moved, 4);

    const char *path = tpath("roundtrip.model");
    assert_int_equal(cnn_model_save(net, &fixture_meta, path), CNN_OK);
    struct cnn_net *back = SENTINEL_NET;
    struct cnn_meta meta;
    memset(&meta, 0xAB, sizeof meta);
    if (cnn_model_load(path, &back, &meta) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_non_null(back);
    assert_string_equal(cnn_net_spec(back), SPEC);
    assert_same_net(net, back);
    assert_string_equal(meta.dataset, fixture_meta.dataset);
    assert_string_equal(meta.date, fixture_meta.date);
    assert_int_equal(meta.epochs, fixture_meta.epochs);
    assert_true(meta.val_acc == fixture_meta.val_acc);
    assert_int_equal(meta.train_images, fixture_meta.train_images);

    /* saving what was loaded gives the same bytes */
    const char *again = tpath("roundtrip-again.model");
    assert_int_equal(cnn_model_save(back, &fixture_meta, again), CNN_OK);
    size_t n1;
    uint8_t *b1 = read_all(path, &n1);
    assert_true(same_file_bytes(again, b1, n1));
    free(b1);
    /* and the fixture made in group_setup the same way is byte-identical too */
    assert_true(same_file_bytes(path, base, base_len));
    cnn_net_free(net);
    cnn_net_free(back);
    assert_int_equal(count_tmp_files(tmpdir), 0);
}

/* A 28x28 net with two bn layers (one after dense) and no metadata. */
static void test_roundtrip_28x28_no_meta(void **state) {
    (void)state;
    struct cnn_net *net;
    const char *spec = "conv 6 5 stride=2 pad=2, bn, relu, avgpool 2, flatten, dense 32, bn, "
                       "leakyrelu 0.1, dropout 0.5, dense 10";
    assert_int_equal(cnn_net_new(spec, 1, 28, 28, &net), CNN_OK);
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 3);
    cnn_net_init_params(net, &rng);
    float *x = malloc(8 * 784 * sizeof(float));
    assert_non_null(x);
    const uint8_t labels[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 8 * 784; i++) x[i] = cnn_rng_normal(&rng);
        assert_int_equal(cnn_net_train_batch(net, x, labels, 8, 0.0f, &rng, NULL, NULL), CNN_OK);
    }
    free(x);
    cnn_net_set_norm(net, 0.5f, 0.25f);
    const char *path = tpath("no-meta.model");
    assert_int_equal(cnn_model_save(net, NULL, path), CNN_OK);
    struct cnn_net *back;
    struct cnn_meta meta;
    memset(&meta, 0xAB, sizeof meta);
    if (cnn_model_load(path, &back, &meta) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_same_net(net, back);
    /* no META section: empty strings, zero counts, val_acc -1 (unknown) */
    assert_string_equal(meta.dataset, "");
    assert_string_equal(meta.date, "");
    assert_int_equal(meta.epochs, 0);
    assert_true(meta.val_acc == -1.0f);
    assert_int_equal(meta.train_images, 0);
    cnn_net_free(net);
    cnn_net_free(back);
}

/* cnn_model_parse on the bytes gives what cnn_model_load gives; meta may be NULL. */
static void test_parse_matches_load(void **state) {
    (void)state;
    struct cnn_net *a, *b;
    struct cnn_meta ma, mb;
    if (cnn_model_load(tpath("base.model"), &a, &ma) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_model_parse(base, base_len, "mem", &b, &mb), CNN_OK);
    assert_same_net(a, b);
    assert_memory_equal(&ma, &mb, sizeof ma);
    cnn_net_free(b);
    assert_int_equal(cnn_model_parse(base, base_len, "mem", &b, NULL), CNN_OK);
    assert_same_net(a, b);
    cnn_net_free(a);
    cnn_net_free(b);
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
    struct cnn_net *a, *b;
    if (cnn_model_load(path, &a, NULL) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_int_equal(cnn_model_parse(base, base_len, "base", &b, NULL), CNN_OK);
    assert_same_net(a, b);
    cnn_net_free(a);
    cnn_net_free(b);
}

/* ---- atomic writes --------------------------------------------------------------------------- */

static void test_save_missing_dir(void **state) {
    (void)state;
    struct cnn_net *net = make_net(SPEC, 0, 1);
    const char *path = tpath("no-such-dir/sub/m.model");
    check_error(cnn_model_save(net, NULL, path), CNN_ERR_IO, path, "No such file");
    cnn_net_free(net);
    struct stat st;
    assert_int_not_equal(stat(tpath("no-such-dir"), &st), 0);
    assert_int_equal(count_tmp_files(tmpdir), 0);
}

/* A larger model overwritten by a smaller one: the file is exactly the new one, no tail. */
static void test_save_replaces_fully(void **state) {
    (void)state;
    struct cnn_net *big =
        make_net("conv 8 3 pad=1, relu, maxpool 2, dense 64, relu, dense 10", 1, 5);
    struct cnn_net *small = make_net("maxpool 2, dense 10", 1, 6);
    const char *path = tpath("replace.model"), *ref = tpath("replace-ref.model");
    assert_int_equal(cnn_model_save(big, &fixture_meta, path), CNN_OK);
    assert_int_equal(cnn_model_save(small, &fixture_meta, path), CNN_OK);
    assert_int_equal(cnn_model_save(small, &fixture_meta, ref), CNN_OK);
    size_t n;
    uint8_t *want = read_all(ref, &n);
    assert_true(same_file_bytes(path, want, n));
    free(want);
    struct cnn_net *back;
    if (cnn_model_load(path, &back, NULL) != CNN_OK) fail_msg("%s", cnn_errmsg());
    assert_same_net(small, back);
    cnn_net_free(back);
    cnn_net_free(big);
    cnn_net_free(small);
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
    struct cnn_net *net = make_net("maxpool 2, dense 10", 1, 7);
    assert_int_equal(cnn_model_save(net, &fixture_meta, tpath("stale.model")), CNN_OK);
    cnn_net_free(net);
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
    struct cnn_net *net = make_net(SPEC, 0, 1);
    const char *path = tpath("dir.model");
    check_error(cnn_model_save(net, NULL, path), CNN_ERR_IO, path);
    cnn_net_free(net);
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
    struct cnn_net *net = make_net(SPEC, 0, 1);
    check_error(cnn_model_save(net, NULL, path), CNN_ERR_IO, path);
    cnn_net_free(net);
    assert_true(same_file_bytes(file, base, base_len));
    assert_int_equal(count_tmp_files(tmpdir), 0);
}

/* The write itself fails part-way (RLIMIT_FSIZE: EFBIG even for root): the model already at
 * the path keeps its old bytes and the temporary is removed. */
static void test_save_write_fails_keeps_old(void **state) {
    (void)state;
    const char *path = write_file("keep-old.model", base, base_len);
    struct cnn_net *net = make_net("conv 8 3 pad=1, relu, dense 10", 1, 9); /* a bigger file */
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old;
    lim.rlim_cur = 100; /* bytes: the new file cannot be written */
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    const int rc = cnn_model_save(net, &fixture_meta, path);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    check_error(rc, CNN_ERR_IO, path, "write failed");
    cnn_net_free(net);
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
    p[8] ^= 0x02; /* version 1 -> 3 */
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

static void test_wrong_version(void **state) {
    (void)state;
    uint8_t *p = base_copy();
    put_u32(p + 8, 2);
    fix_crc(p, base_len);
    expect_bytes_error("version-2.model", p, base_len, CNN_ERR_FORMAT, "version 2",
                       "reads version 1");
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

/* "dense 1000000" needs ~145M parameters (580 MB) that the file cannot hold: refused from
 * the spec alone, before allocating, so it is fast (well under a second even under ASan). */
static void test_spec_huge_network(void **state) {
    (void)state;
    static const char text[] = "conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.25, dense 1000000";
    size_t n;
    uint8_t *p = forge_spec(1, 12, 12, text, sizeof text - 1, &n);
    const double t0 = now_s();
    expect_bytes_error("huge-spec.model", p, n, CNN_ERR_FORMAT, "stored spec");
    const double dt = now_s() - t0;
    print_message("huge forged spec refused in %.3f ms\n", dt * 1e3);
    assert_true(dt < 0.5);
}

/* The input shape is the other way to inflate a spec: 1 x 4096 x 4096 is in range, and a
 * dense layer on it would need 16.7M parameters per unit. */
static void test_spec_huge_input(void **state) {
    (void)state;
    static const char text[] = "dense 10";
    size_t n;
    uint8_t *p = forge_spec(1, 4096, 4096, text, sizeof text - 1, &n);
    const double t0 = now_s();
    expect_bytes_error("huge-input.model", p, n, CNN_ERR_FORMAT, "stored spec");
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_roundtrip_28x28_no_meta),
        cmocka_unit_test(test_parse_matches_load),
        cmocka_unit_test(test_unknown_section_skipped),
        cmocka_unit_test(test_save_missing_dir),
        cmocka_unit_test(test_save_replaces_fully),
        cmocka_unit_test(test_save_removes_stale_temps),
        cmocka_unit_test(test_save_onto_directory),
        cmocka_unit_test(test_save_under_a_file),
        cmocka_unit_test(test_save_write_fails_keeps_old),
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
        cmocka_unit_test(test_nonexistent),
        cmocka_unit_test(test_idx_file),
        cmocka_unit_test(test_over_size_limit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
