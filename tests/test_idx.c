/*
 * test_idx.c - the IDX reader and dataset loader on good and hostile input.
 *
 * Fixtures are made here, in a mkdtemp directory removed at the end: tiny raw and gzip IDX
 * files, then one broken file per failure mode. Every bad case checks the status code AND that
 * cnn_errmsg() names the file and says what was wrong. The last tests read the real MNIST from
 * data/mnist (relative to the repo root, where scripts/run-tests runs us); they fail when it is
 * missing, because `make test` fetches it first, unless CNN_SKIP_MNIST=1.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "cnn.h"
#include "testutil.h"

/* ---- fixture helpers ---------------------------------------------------------------------- */


static int group_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_idx.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    rm_tree(tmpdir);
    return 0;
}

/* Write n bytes to tmpdir/name; returns the full path. */
static const char *write_file(const char *name, const void *p, size_t n) {
    const char *path = tpath(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void make_subdir(const char *name) {
    assert_int_equal(mkdir(tpath(name), 0755), 0);
}

/* The pixel / label pattern of fixture item i: labels cycle 0..9, pixels a fixed hash. */
static uint8_t pattern(int ndim, size_t i) {
    return ndim == 1 ? (uint8_t)(i % 10) : (uint8_t)(i * 31u + 7u);
}

/* An IDX file in memory: magic 00 00 type ndim, `ndim` big-endian dims, then `payload` bytes
 * of pattern() (payload may differ from what the dims imply, for broken fixtures).
 * Returns a malloc'd buffer of *len bytes. */
static uint8_t *idx_custom(uint8_t type, int ndim, const uint32_t *dims, size_t payload,
                           size_t *len) {
    const size_t hb = 4 + 4 * (size_t)ndim;
    uint8_t *p = malloc(hb + payload + 1);
    assert_non_null(p);
    p[0] = 0;
    p[1] = 0;
    p[2] = type;
    p[3] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++) {
        p[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        p[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        p[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        p[7 + 4 * i] = (uint8_t)dims[i];
    }
    for (size_t i = 0; i < payload; i++) p[hb + i] = pattern(ndim, i);
    *len = hb + payload;
    return p;
}

/* A valid u8 IDX file: 1-D labels (n) or 3-D images (n, h, w). */
static uint8_t *idx_valid(int ndim, const uint32_t *dims, size_t *len) {
    size_t payload = 1;
    for (int i = 0; i < ndim; i++) payload *= dims[i];
    return idx_custom(0x08, ndim, dims, payload, len);
}

/* gzip (RFC 1952) of n bytes, with zlib's deflate and window bits 16+15. */
static uint8_t *gzip_bytes(const void *in, size_t n, size_t *out_n) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    const size_t cap = deflateBound(&zs, n) + 64;
    uint8_t *out = malloc(cap + 16); /* room for tests that append junk */
    assert_non_null(out);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_n = zs.total_out;
    deflateEnd(&zs);
    return out;
}

/* Deterministic "random" bytes that do not compress. */
static void fill_noise(uint8_t *p, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = (uint8_t)(s >> 24);
    }
}

/* Load `path` as IDX, expect failure with `want`, and that *out stays zeroed. */
static void expect_load_error(const char *path, int want, const char *word) {
    struct cnn_idx idx;
    memset(&idx, 0xAB, sizeof idx);
    const int rc = cnn_idx_load(path, &idx);
    check_error(rc, want, path, word);
    assert_null(idx.data);
    assert_int_equal(idx.ndim, 0);
    assert_int_equal(idx.size, 0);
}

/* Write bytes to tmpdir/name and expect cnn_idx_load to fail as above; frees buf. */
static void expect_bytes_error(const char *name, uint8_t *buf, size_t n, int want,
                               const char *word) {
    const char *path = write_file(name, buf, n);
    free(buf);
    expect_load_error(path, want, word);
}

/* ---- good input ---------------------------------------------------------------------------- */

static void test_raw_images_roundtrip(void **state) {
    (void)state;
    const uint32_t dims[3] = {3, 5, 4};
    size_t n;
    uint8_t *buf = idx_valid(3, dims, &n);
    const char *path = write_file("img-raw", buf, n);
    struct cnn_idx idx;
    assert_int_equal(cnn_idx_load(path, &idx), CNN_OK);
    assert_int_equal(idx.ndim, 3);
    assert_int_equal(idx.dims[0], 3);
    assert_int_equal(idx.dims[1], 5);
    assert_int_equal(idx.dims[2], 4);
    assert_int_equal(idx.size, 60);
    assert_memory_equal(idx.data, buf + 16, 60);
    free(buf);
    cnn_idx_free(&idx);
    assert_null(idx.data);
    assert_int_equal(idx.size, 0);
}

static void test_raw_labels_roundtrip(void **state) {
    (void)state;
    const uint32_t dims[1] = {7};
    size_t n;
    uint8_t *buf = idx_valid(1, dims, &n);
    const char *path = write_file("lab-raw", buf, n);
    struct cnn_idx idx;
    assert_int_equal(cnn_idx_load(path, &idx), CNN_OK);
    assert_int_equal(idx.ndim, 1);
    assert_int_equal(idx.dims[0], 7);
    assert_int_equal(idx.size, 7);
    assert_memory_equal(idx.data, buf + 8, 7);
    free(buf);
    cnn_idx_free(&idx);
}

static void test_gzip_images_roundtrip(void **state) {
    (void)state;
    const uint32_t dims[3] = {50, 28, 28};
    size_t n, gn;
    uint8_t *buf = idx_valid(3, dims, &n);
    fill_noise(buf + 16, n - 16, 1); /* incompressible: several deflate blocks */
    uint8_t *gz = gzip_bytes(buf, n, &gn);
    const char *path = write_file("img.gz", gz, gn);
    free(gz);
    struct cnn_idx idx;
    assert_int_equal(cnn_idx_load(path, &idx), CNN_OK);
    assert_int_equal(idx.ndim, 3);
    assert_int_equal(idx.dims[0], 50);
    assert_int_equal(idx.dims[1], 28);
    assert_int_equal(idx.dims[2], 28);
    assert_int_equal(idx.size, 50 * 28 * 28);
    assert_memory_equal(idx.data, buf + 16, idx.size);
    free(buf);
    cnn_idx_free(&idx);
}

static void test_gzip_labels_roundtrip(void **state) {
    (void)state;
    const uint32_t dims[1] = {1}; /* a 9-byte file: shorter than the largest header */
    size_t n, gn;
    uint8_t *buf = idx_valid(1, dims, &n);
    uint8_t *gz = gzip_bytes(buf, n, &gn);
    const char *path = write_file("lab1.gz", gz, gn);
    free(gz);
    free(buf);
    struct cnn_idx idx;
    assert_int_equal(cnn_idx_load(path, &idx), CNN_OK);
    assert_int_equal(idx.ndim, 1);
    assert_int_equal(idx.dims[0], 1);
    assert_int_equal(idx.size, 1);
    assert_int_equal(idx.data[0], 0);
    cnn_idx_free(&idx);
}

/* The content decides: gzip named without .gz is inflated, raw named .gz is read as is. */
static void test_gzip_detected_by_content(void **state) {
    (void)state;
    const uint32_t dims[3] = {2, 3, 3};
    size_t n, gn;
    uint8_t *buf = idx_valid(3, dims, &n);
    uint8_t *gz = gzip_bytes(buf, n, &gn);
    const char *gz_plain = write_file("gzip-named-plain-idx3-ubyte", gz, gn);
    const char *raw_gz = write_file("raw-named-idx3-ubyte.gz", buf, n);
    free(gz);
    struct cnn_idx a, b;
    assert_int_equal(cnn_idx_load(gz_plain, &a), CNN_OK);
    assert_int_equal(cnn_idx_load(raw_gz, &b), CNN_OK);
    assert_int_equal(a.size, 18);
    assert_int_equal(b.size, 18);
    assert_memory_equal(a.data, buf + 16, 18);
    assert_memory_equal(b.data, buf + 16, 18);
    free(buf);
    cnn_idx_free(&a);
    cnn_idx_free(&b);
}

static void test_parse_from_memory(void **state) {
    (void)state;
    const uint32_t dims[1] = {4};
    size_t n;
    uint8_t *buf = idx_valid(1, dims, &n);
    struct cnn_idx idx;
    assert_int_equal(cnn_idx_parse(buf, n, "mem-labels", &idx), CNN_OK);
    assert_int_equal(idx.size, 4);
    cnn_idx_free(&idx);
    /* errors name the given name, or "<memory>" without one */
    check_error(cnn_idx_parse(buf, n - 1, "mem-labels", &idx), CNN_ERR_FORMAT, "mem-labels",
                "truncated");
    check_error(cnn_idx_parse(buf, 0, NULL, &idx), CNN_ERR_FORMAT, "<memory>", "empty");
    check_error(cnn_idx_parse(NULL, 5, "nul", &idx), CNN_ERR_ARG, "nul");
    free(buf);
}

static void test_free_null_and_twice(void **state) {
    (void)state;
    cnn_idx_free(NULL);
    cnn_dataset_free(NULL);
    struct cnn_idx idx;
    memset(&idx, 0, sizeof idx);
    cnn_idx_free(&idx);
    cnn_idx_free(&idx);
    struct cnn_dataset ds;
    memset(&ds, 0, sizeof ds);
    cnn_dataset_free(&ds);
    cnn_dataset_free(&ds);
}

/* A matching images/labels pair of n items of h x w, written under tmpdir. */
static void write_pair(const char *img_name, const char *lab_name, uint32_t n, uint32_t h,
                       uint32_t w, int gz) {
    const uint32_t idims[3] = {n, h, w}, ldims[1] = {n};
    size_t in, ln;
    uint8_t *ib = idx_valid(3, idims, &in), *lb = idx_valid(1, ldims, &ln);
    if (gz) {
        size_t gn;
        uint8_t *g = gzip_bytes(ib, in, &gn);
        write_file(img_name, g, gn);
        free(g);
        g = gzip_bytes(lb, ln, &gn);
        write_file(lab_name, g, gn);
        free(g);
    } else {
        write_file(img_name, ib, in);
        write_file(lab_name, lb, ln);
    }
    free(ib);
    free(lb);
}

static void check_pair(const struct cnn_dataset *ds, int n, int h, int w) {
    assert_int_equal(ds->n, n);
    assert_int_equal(ds->h, h);
    assert_int_equal(ds->w, w);
    assert_int_equal(ds->n_classes, 10);
    for (int i = 0; i < n; i++) assert_int_equal(ds->labels[i], i % 10);
    for (size_t i = 0; i < (size_t)n * (size_t)(h * w); i++)
        assert_int_equal(ds->images[i], pattern(3, i));
}

static void test_dataset_load(void **state) {
    (void)state;
    write_pair("ds-img", "ds-lab", 12, 4, 3, 0);
    struct cnn_dataset ds;
    assert_int_equal(cnn_dataset_load(tpath("ds-img"), tpath("ds-lab"), &ds), CNN_OK);
    check_pair(&ds, 12, 4, 3);
    cnn_dataset_free(&ds);
    assert_null(ds.images);
    assert_null(ds.labels);
    assert_int_equal(ds.n, 0);
}

static void test_dataset_load_dir(void **state) {
    (void)state;
    make_subdir("dir");
    /* train only as .gz, test plain */
    write_pair("dir/train-images-idx3-ubyte.gz", "dir/train-labels-idx1-ubyte.gz", 11, 6, 5, 1);
    write_pair("dir/t10k-images-idx3-ubyte", "dir/t10k-labels-idx1-ubyte", 3, 6, 5, 0);
    struct cnn_dataset ds;
    assert_int_equal(cnn_dataset_load_dir(tpath("dir"), "train", &ds), CNN_OK);
    check_pair(&ds, 11, 6, 5);
    cnn_dataset_free(&ds);
    assert_int_equal(cnn_dataset_load_dir(tpath("dir"), "test", &ds), CNN_OK);
    check_pair(&ds, 3, 6, 5);
    cnn_dataset_free(&ds);
}

/* With both names present the plain one is read (here the .gz is junk and must be ignored). */
static void test_dataset_load_dir_prefers_plain(void **state) {
    (void)state;
    make_subdir("both");
    write_pair("both/t10k-images-idx3-ubyte", "both/t10k-labels-idx1-ubyte", 4, 2, 2, 0);
    write_file("both/t10k-images-idx3-ubyte.gz", "junk", 4);
    write_file("both/t10k-labels-idx1-ubyte.gz", "junk", 4);
    struct cnn_dataset ds;
    assert_int_equal(cnn_dataset_load_dir(tpath("both"), "test", &ds), CNN_OK);
    check_pair(&ds, 4, 2, 2);
    cnn_dataset_free(&ds);
}

/* ---- hostile input: one test per failure mode ------------------------------------------------ */

static void test_truncated_data(void **state) {
    (void)state;
    const uint32_t dims[3] = {4, 5, 5};
    size_t n;
    uint8_t *buf = idx_custom(0x08, 3, dims, 90, &n); /* 100 implied */
    expect_bytes_error("trunc-data", buf, n, CNN_ERR_FORMAT, "truncated");
    assert_true(contains_ci(cnn_errmsg(), "106 bytes")); /* actual */
    assert_true(contains_ci(cnn_errmsg(), "116"));       /* expected */
}

static void test_header_count_larger_than_data(void **state) {
    (void)state;
    const uint32_t dims[1] = {100};
    size_t n;
    uint8_t *buf = idx_custom(0x08, 1, dims, 60, &n);
    expect_bytes_error("count-too-big", buf, n, CNN_ERR_FORMAT, "implies 108");
    assert_true(contains_ci(cnn_errmsg(), "68 bytes"));
}

static void test_file_longer_than_header(void **state) {
    (void)state;
    const uint32_t dims[3] = {2, 3, 3};
    size_t n;
    uint8_t *buf = idx_custom(0x08, 3, dims, 18 + 5, &n);
    expect_bytes_error("too-long", buf, n, CNN_ERR_FORMAT, "trailing");
    assert_true(contains_ci(cnn_errmsg(), "39 bytes"));
    assert_true(contains_ci(cnn_errmsg(), "implies 34"));
}

/* 0xFFFFFFFF^3 would overflow any naive product; it must be refused before any allocation
 * (under ASan an absurd malloc would abort the test). */
static void test_huge_dims(void **state) {
    (void)state;
    const uint32_t dims[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    size_t n;
    uint8_t *buf = idx_custom(0x08, 3, dims, 16, &n);
    expect_bytes_error("huge-dims", buf, n, CNN_ERR_FORMAT, "4294967295");
}

static void test_huge_dims_gzip(void **state) {
    (void)state;
    const uint32_t dims[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    size_t n, gn;
    uint8_t *buf = idx_custom(0x08, 3, dims, 16, &n);
    uint8_t *gz = gzip_bytes(buf, n, &gn);
    free(buf);
    expect_bytes_error("huge-dims.gz", gz, gn, CNN_ERR_FORMAT, "4294967295");
}

/* Each dimension within its bound, but the product (78 GB) over the 1 GiB limit. */
static void test_over_size_limit(void **state) {
    (void)state;
    const uint32_t dims[3] = {100000000u, 28, 28};
    size_t n;
    uint8_t *buf = idx_custom(0x08, 3, dims, 16, &n);
    expect_bytes_error("over-limit", buf, n, CNN_ERR_LIMIT, "limit");
}

/* The same as a small .gz (a "zip bomb" header): refused before allocating or inflating. */
static void test_over_size_limit_gzip(void **state) {
    (void)state;
    const uint32_t dims[3] = {100000000u, 28, 28};
    size_t n, gn;
    uint8_t *buf = idx_custom(0x08, 3, dims, 4096, &n);
    uint8_t *gz = gzip_bytes(buf, n, &gn);
    free(buf);
    expect_bytes_error("over-limit.gz", gz, gn, CNN_ERR_LIMIT, "limit");
}

static void test_side_too_large(void **state) {
    (void)state;
    const uint32_t dims[3] = {2, 5000, 28};
    size_t n;
    uint8_t *buf = idx_custom(0x08, 3, dims, 16, &n);
    expect_bytes_error("too-tall", buf, n, CNN_ERR_FORMAT, "height");
    assert_true(contains_ci(cnn_errmsg(), "4096"));
}

static void test_zero_dimension(void **state) {
    (void)state;
    const uint32_t dims[3] = {3, 28, 0};
    size_t n;
    uint8_t *buf = idx_custom(0x08, 3, dims, 0, &n);
    expect_bytes_error("zero-width", buf, n, CNN_ERR_FORMAT, "width");
    assert_true(contains_ci(cnn_errmsg(), "is 0"));
}

static void test_zero_count(void **state) {
    (void)state;
    const uint32_t dims[1] = {0};
    size_t n;
    uint8_t *buf = idx_custom(0x08, 1, dims, 0, &n);
    expect_bytes_error("zero-count", buf, n, CNN_ERR_FORMAT, "item count");
}

static void test_not_idx_text(void **state) {
    (void)state;
    static const char text[] = "label,pixel0,pixel1\n5,0,0\n";
    const char *path = write_file("mnist.csv", text, sizeof text - 1);
    expect_load_error(path, CNN_ERR_FORMAT, "not an IDX file");
    assert_true(contains_ci(cnn_errmsg(), "magic 0x6c616265")); /* "labe" */
}

static void test_not_idx_png(void **state) {
    (void)state;
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0,  0, 0,
                                  13,   'I', 'H', 'D', 'R',  0,    0,    0,    28, 0, 0,
                                  0,    28,  8,   0,   0,    0,    0,    0,    0,  0, 0};
    const char *path = write_file("digit.png", png, sizeof png);
    expect_load_error(path, CNN_ERR_FORMAT, "magic 0x89504e47");
}

static void test_empty_file(void **state) {
    (void)state;
    const char *path = write_file("empty", "", 0);
    expect_load_error(path, CNN_ERR_FORMAT, "empty");
}

static void test_short_magic(void **state) {
    (void)state;
    const char *path = write_file("three-bytes", "\0\0\x08", 3);
    expect_load_error(path, CNN_ERR_FORMAT, "shorter");
}

static void test_short_header(void **state) {
    (void)state;
    static const uint8_t b[] = {0, 0, 8, 3, 0, 0, 0, 5, 0, 0}; /* 10 of 16 header bytes */
    const char *path = write_file("short-header", b, sizeof b);
    expect_load_error(path, CNN_ERR_FORMAT, "16-byte header");
}

static void test_wrong_type_float(void **state) {
    (void)state;
    const uint32_t dims[3] = {1, 2, 2};
    size_t n;
    uint8_t *buf = idx_custom(0x0D, 3, dims, 16, &n); /* 4 floats */
    expect_bytes_error("floats", buf, n, CNN_ERR_FORMAT, "data type 0x0d");
    assert_true(contains_ci(cnn_errmsg(), "expected 0x08"));
}

static void test_wrong_ndim_2(void **state) {
    (void)state;
    const uint32_t dims[2] = {28, 28};
    size_t n;
    uint8_t *buf = idx_custom(0x08, 2, dims, 28 * 28, &n);
    expect_bytes_error("ndim2", buf, n, CNN_ERR_FORMAT, "2 dimensions");
    assert_true(contains_ci(cnn_errmsg(), "expected 1"));
}

static void test_wrong_ndim_4(void **state) {
    (void)state;
    const uint32_t dims[4] = {2, 1, 3, 3};
    size_t n;
    uint8_t *buf = idx_custom(0x08, 4, dims, 18, &n);
    expect_bytes_error("ndim4", buf, n, CNN_ERR_FORMAT, "4 dimensions");
}

static void test_gz_truncated(void **state) {
    (void)state;
    const uint32_t dims[3] = {20, 28, 28};
    size_t n, gn;
    uint8_t *buf = idx_valid(3, dims, &n);
    fill_noise(buf + 16, n - 16, 2);
    uint8_t *gz = gzip_bytes(buf, n, &gn);
    free(buf);
    expect_bytes_error("cut-in-half.gz", gz, gn / 2, CNN_ERR_FORMAT, "gzip stream truncated");
}

/* Cut inside the 10-byte gzip header: nothing decompresses at all. */
static void test_gz_truncated_header(void **state) {
    (void)state;
    static const uint8_t b[] = {0x1f, 0x8b, 0x08, 0, 0, 0};
    const char *path = write_file("cut-header.gz", b, sizeof b);
    expect_load_error(path, CNN_ERR_FORMAT, "gzip stream truncated after 0");
}

/* Valid gzip of random bytes: inflates fine, but what comes out is no IDX header. */
static void test_gz_of_garbage(void **state) {
    (void)state;
    uint8_t junk[1000];
    fill_noise(junk, sizeof junk, 3);
    junk[0] = 0x5a; /* make sure the first byte is not 0 */
    size_t gn;
    uint8_t *gz = gzip_bytes(junk, sizeof junk, &gn);
    expect_bytes_error("garbage.gz", gz, gn, CNN_ERR_FORMAT, "gunzipped");
    assert_true(contains_ci(cnn_errmsg(), "not an IDX file"));
}

static void test_gz_bad_crc(void **state) {
    (void)state;
    const uint32_t dims[1] = {50};
    size_t n, gn;
    uint8_t *buf = idx_valid(1, dims, &n);
    uint8_t *gz = gzip_bytes(buf, n, &gn);
    free(buf);
    gz[gn - 8] ^= 0xFF; /* the trailer: CRC-32 (4 bytes), then ISIZE (4 bytes) */
    expect_bytes_error("bad-crc.gz", gz, gn, CNN_ERR_FORMAT, "CRC");
}

static void test_gz_trailing_garbage(void **state) {
    (void)state;
    const uint32_t dims[1] = {50};
    size_t n, gn;
    uint8_t *buf = idx_valid(1, dims, &n);
    uint8_t *gz = gzip_bytes(buf, n, &gn);
    free(buf);
    memcpy(gz + gn, "JUNK", 4);
    expect_bytes_error("trailing-junk.gz", gz, gn + 4, CNN_ERR_FORMAT, "4 bytes of trailing");
}

/* A valid gzip whose content is longer than its IDX header implies. */
static void test_gz_content_too_long(void **state) {
    (void)state;
    const uint32_t dims[3] = {2, 4, 4};
    size_t n, gn;
    uint8_t *buf = idx_custom(0x08, 3, dims, 32 + 1, &n);
    uint8_t *gz = gzip_bytes(buf, n, &gn);
    free(buf);
    expect_bytes_error("long-content.gz", gz, gn, CNN_ERR_FORMAT, "trailing data");
    assert_true(contains_ci(cnn_errmsg(), "48 bytes"));
}

/* A valid gzip whose content is shorter than its IDX header implies. */
static void test_gz_content_too_short(void **state) {
    (void)state;
    const uint32_t dims[3] = {2, 4, 4};
    size_t n, gn;
    uint8_t *buf = idx_custom(0x08, 3, dims, 32 - 7, &n);
    uint8_t *gz = gzip_bytes(buf, n, &gn);
    free(buf);
    expect_bytes_error("short-content.gz", gz, gn, CNN_ERR_FORMAT, "truncated");
    assert_true(contains_ci(cnn_errmsg(), "41 bytes"));
}

/* gzip magic, then an unknown compression method: zlib refuses the gzip header. */
static void test_gz_bad_header(void **state) {
    (void)state;
    static const uint8_t b[] = {0x1f, 0x8b, 0x07, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8};
    const char *path = write_file("bad-gz-header", b, sizeof b);
    expect_load_error(path, CNN_ERR_FORMAT, "corrupt gzip");
}

static void test_gz_empty_content(void **state) {
    (void)state;
    size_t gn;
    uint8_t *gz = gzip_bytes("", 0, &gn);
    expect_bytes_error("empty-content.gz", gz, gn, CNN_ERR_FORMAT, "empty");
}

static void test_label_value_10(void **state) {
    (void)state;
    const uint32_t idims[3] = {5, 2, 2}, ldims[1] = {5};
    size_t in, ln;
    uint8_t *ib = idx_valid(3, idims, &in), *lb = idx_valid(1, ldims, &ln);
    lb[8 + 3] = 10;
    const char *ip = write_file("bad-label-img", ib, in);
    const char *lp = write_file("bad-label-lab", lb, ln);
    free(ib);
    free(lb);
    struct cnn_dataset ds;
    memset(&ds, 0xAB, sizeof ds);
    check_error(cnn_dataset_load(ip, lp, &ds), CNN_ERR_FORMAT, lp, "label 3 is 10",
                "expected 0..9");
    assert_null(ds.images);
    assert_null(ds.labels);
}

static void test_count_mismatch(void **state) {
    (void)state;
    const uint32_t idims[3] = {5, 2, 2}, ldims[1] = {4};
    size_t in, ln;
    uint8_t *ib = idx_valid(3, idims, &in), *lb = idx_valid(1, ldims, &ln);
    const char *ip = write_file("mismatch-img", ib, in);
    const char *lp = write_file("mismatch-lab", lb, ln);
    free(ib);
    free(lb);
    struct cnn_dataset ds;
    check_error(cnn_dataset_load(ip, lp, &ds), CNN_ERR_FORMAT, ip, lp, "5 images", "4 labels");
    assert_null(ds.images);
}

/* Labels passed as images, and images passed as labels. */
static void test_dataset_wrong_rank(void **state) {
    (void)state;
    write_pair("rank-img", "rank-lab", 3, 2, 2, 0);
    struct cnn_dataset ds;
    check_error(cnn_dataset_load(tpath("rank-lab"), tpath("rank-lab"), &ds), CNN_ERR_FORMAT,
                tpath("rank-lab"), "expected 3-D images");
    check_error(cnn_dataset_load(tpath("rank-img"), tpath("rank-img"), &ds), CNN_ERR_FORMAT,
                tpath("rank-img"), "expected 1-D labels");
    assert_null(ds.images);
}

static void test_missing_file(void **state) {
    (void)state;
    expect_load_error(tpath("no-such-file"), CNN_ERR_IO, "cannot open");
    write_pair("present-img", "present-lab", 2, 2, 2, 0);
    struct cnn_dataset ds;
    check_error(cnn_dataset_load(tpath("present-img"), tpath("absent-lab"), &ds), CNN_ERR_IO,
                tpath("absent-lab"));
    assert_null(ds.images);
}

static void test_not_a_regular_file(void **state) {
    (void)state;
    make_subdir("a-directory");
    expect_load_error(tpath("a-directory"), CNN_ERR_IO, "not a regular file");
}

static void test_load_dir_missing(void **state) {
    (void)state;
    make_subdir("nothing");
    struct cnn_dataset ds;
    check_error(cnn_dataset_load_dir(tpath("nothing"), "train", &ds), CNN_ERR_IO,
                tpath("nothing/train-images-idx3-ubyte"),
                tpath("nothing/train-images-idx3-ubyte.gz"));
    /* images present, labels missing: the labels paths are named */
    make_subdir("half");
    write_pair("half/t10k-images-idx3-ubyte", "half/stray", 2, 2, 2, 0);
    check_error(cnn_dataset_load_dir(tpath("half"), "test", &ds), CNN_ERR_IO,
                tpath("half/t10k-labels-idx1-ubyte"), tpath("half/t10k-labels-idx1-ubyte.gz"));
}

static void test_load_dir_bad_split(void **state) {
    (void)state;
    struct cnn_dataset ds;
    check_error(cnn_dataset_load_dir(tmpdir, "validation", &ds), CNN_ERR_ARG, "validation",
                "expected 'train' or 'test'");
}

/* ---- the real MNIST ---------------------------------------------------------------------------
 * Known facts of the official files: sizes, the per-digit label counts, the first label, and
 * the mean pixel (0.1307 train, 0.1325 test, the constants everyone normalises with). */

static void check_mnist(const char *split, int n, const int counts[10], int first_label,
                        double mean_lo, double mean_hi) {
    const char *skip_env = getenv("CNN_SKIP_MNIST");
    if (skip_env && strcmp(skip_env, "1") == 0) skip();
    struct cnn_dataset ds;
    const int rc = cnn_dataset_load_dir("data/mnist", split, &ds);
    if (rc != CNN_OK)
        fail_msg("real MNIST %s set not loaded: %s (run scripts/fetch-data, or set "
                 "CNN_SKIP_MNIST=1 to skip)",
                 split, cnn_errmsg());
    int got[10] = {0};
    for (int i = 0; i < ds.n; i++) got[ds.labels[i]]++;
    double sum = 0;
    const size_t npix = (size_t)ds.n * (size_t)ds.h * (size_t)ds.w;
    for (size_t i = 0; i < npix; i++) sum += ds.images[i];
    const double mean = sum / ((double)npix * 255.0);
    const struct cnn_dataset copy = ds;
    const int first = ds.n > 0 ? ds.labels[0] : -1;
    cnn_dataset_free(&ds);
    assert_int_equal(copy.n, n);
    assert_int_equal(copy.h, 28);
    assert_int_equal(copy.w, 28);
    assert_int_equal(copy.n_classes, 10);
    for (int d = 0; d < 10; d++)
        if (got[d] != counts[d])
            fail_msg("%s: %d labels of digit %d, expected %d", split, got[d], d, counts[d]);
    assert_int_equal(first, first_label);
    if (mean < mean_lo || mean > mean_hi)
        fail_msg("%s: mean pixel %.5f, expected in [%.4f, %.4f]", split, mean, mean_lo, mean_hi);
}

static void test_mnist_train(void **state) {
    (void)state;
    static const int counts[10] = {5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949};
    check_mnist("train", 60000, counts, 5, 0.1306, 0.1308);
}

static void test_mnist_test(void **state) {
    (void)state;
    static const int counts[10] = {980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009};
    check_mnist("test", 10000, counts, 7, 0.1324, 0.1326);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_images_roundtrip),
        cmocka_unit_test(test_raw_labels_roundtrip),
        cmocka_unit_test(test_gzip_images_roundtrip),
        cmocka_unit_test(test_gzip_labels_roundtrip),
        cmocka_unit_test(test_gzip_detected_by_content),
        cmocka_unit_test(test_parse_from_memory),
        cmocka_unit_test(test_free_null_and_twice),
        cmocka_unit_test(test_dataset_load),
        cmocka_unit_test(test_dataset_load_dir),
        cmocka_unit_test(test_dataset_load_dir_prefers_plain),
        cmocka_unit_test(test_truncated_data),
        cmocka_unit_test(test_header_count_larger_than_data),
        cmocka_unit_test(test_file_longer_than_header),
        cmocka_unit_test(test_huge_dims),
        cmocka_unit_test(test_huge_dims_gzip),
        cmocka_unit_test(test_over_size_limit),
        cmocka_unit_test(test_over_size_limit_gzip),
        cmocka_unit_test(test_side_too_large),
        cmocka_unit_test(test_zero_dimension),
        cmocka_unit_test(test_zero_count),
        cmocka_unit_test(test_not_idx_text),
        cmocka_unit_test(test_not_idx_png),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_short_magic),
        cmocka_unit_test(test_short_header),
        cmocka_unit_test(test_wrong_type_float),
        cmocka_unit_test(test_wrong_ndim_2),
        cmocka_unit_test(test_wrong_ndim_4),
        cmocka_unit_test(test_gz_truncated),
        cmocka_unit_test(test_gz_truncated_header),
        cmocka_unit_test(test_gz_of_garbage),
        cmocka_unit_test(test_gz_bad_crc),
        cmocka_unit_test(test_gz_trailing_garbage),
        cmocka_unit_test(test_gz_content_too_long),
        cmocka_unit_test(test_gz_content_too_short),
        cmocka_unit_test(test_gz_bad_header),
        cmocka_unit_test(test_gz_empty_content),
        cmocka_unit_test(test_label_value_10),
        cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_dataset_wrong_rank),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_not_a_regular_file),
        cmocka_unit_test(test_load_dir_missing),
        cmocka_unit_test(test_load_dir_bad_split),
        cmocka_unit_test(test_mnist_train),
        cmocka_unit_test(test_mnist_test),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
