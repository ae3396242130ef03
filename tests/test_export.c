/*
 * test_export.c - the exporters' contracts that need the library's insides (the equality of
 * exported models with libcnn is tests/test_export.sh):
 *   - every layer kind of layers.def has an export entry in its ops table;
 *   - a layer kind without one (registered here by copying a kind's ops without the entry)
 *     is refused by both exporters with CNN_ERR_ARG naming the layer, and no file is written;
 *   - the ONNX file starts as a ModelProto does (ir_version 7) and holds the spec;
 *   - batch norm's affine form equals what the layer computes at inference.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "testutil.h"

static void test_every_kind_exports(void **state) {
    (void)state;
    for (int k = 0; k < CNN_LAYER_COUNT; k++)
        if (!cnn_layer_table[k]->export_op)
            fail_msg("layer kind '%s' has no export_op", cnn_layer_table[k]->name);
}

static struct cnn_model *model(const char *spec) {
    struct cnn_model *m = NULL;
    assert_int_equal(cnn_model_new(spec, 1, 28, 28, &m), CNN_OK);
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 7);
    cnn_model_init_params(m, &rng);
    return m;
}

static void test_kind_without_export_refused(void **state) {
    (void)state;
    struct cnn_model *m = model("conv 4 3, relu, maxpool 2, dense 10");
    struct cnn_layer_ops no_export = *m->layers[2].ops;
    no_export.export_op = NULL;
    const struct cnn_layer_ops *was = m->layers[2].ops;
    m->layers[2].ops = &no_export;
    check_error(cnn_model_export_onnx(m, tpath("x.onnx"), 0), CNN_ERR_ARG, "layer 3",
                "maxpool 2", "cannot be exported");
    check_error(cnn_model_export_c(m, tpath("x_model")), CNN_ERR_ARG, "layer 3", "maxpool 2",
                "cannot be exported");
    struct stat st;
    assert_int_not_equal(stat(tpath("x.onnx"), &st), 0);
    assert_int_not_equal(stat(tpath("x_model.h"), &st), 0);
    assert_int_not_equal(stat(tpath("x_model.c"), &st), 0);
    m->layers[2].ops = was;
    assert_int_equal(cnn_model_export_onnx(m, tpath("x.onnx"), CNN_ONNX_FOLD_BN), CNN_OK);
    assert_int_equal(cnn_model_export_c(m, tpath("x_model")), CNN_OK);
    assert_int_equal(stat(tpath("x_model.h"), &st), 0);
    assert_int_equal(stat(tpath("x_model.c"), &st), 0);
    cnn_model_free(m);
}

/* Whether needle occurs in buf[0..n). */
static int contains(const char *buf, size_t n, const char *needle) {
    const size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(buf + i, needle, k) == 0) return 1;
    return 0;
}

static void test_onnx_header_and_spec(void **state) {
    (void)state;
    struct cnn_model *m = model("conv 4 3 pad=1, bn, relu, maxpool 2, dropout 0.5, dense 10");
    assert_int_equal(cnn_model_export_onnx(m, tpath("h.onnx"), 0), CNN_OK);
    FILE *f = fopen(tpath("h.onnx"), "rb");
    assert_non_null(f);
    static char buf[1 << 20];
    const size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(n > 16);
    assert_int_equal((unsigned char)buf[0], 0x08); /* field 1 (ir_version), varint */
    assert_int_equal(buf[1], 7);
    const char *spec = cnn_model_spec(m);
    assert_true(contains(buf, n, spec));
    assert_true(contains(buf, n, "BatchNormalization"));
    assert_false(contains(buf, n, "Dropout"));
    assert_int_equal(cnn_model_export_onnx(m, tpath("h.onnx"), 99), CNN_ERR_ARG);
    cnn_model_free(m);
}

/* Batch norm as a x + shift, against the layer's own inference on random statistics. */
static void test_bn_affine_matches_layer(void **state) {
    (void)state;
    struct cnn_model *m = model("bn, dense 10");
    const int c = 1;
    float *p = m->params + m->layers[0].p_off, *s = m->state + m->layers[0].s_off;
    p[0] = 1.7f, p[1] = -0.3f, s[0] = 0.21f, s[1] = 0.093f;
    struct cnn_export_op ops[2];
    assert_int_equal(cnn_export_walk(m, ops), CNN_OK);
    assert_int_equal(ops[0].kind, CNN_EXPORT_BATCHNORM);
    assert_int_equal(ops[1].kind, CNN_EXPORT_DENSE);
    float a, shift;
    cnn_export_bn_affine(&ops[0], c, &a, &shift);
    /* the layer's forward at inference on a few values */
    float x[784], y[784], ws[16] = {0}, cache[16] = {0};
    for (int i = 0; i < 784; i++) x[i] = (float)i / 100.0f - 3.0f;
    const struct cnn_fwd f = {.n = 1, .x = x, .y = y, .p = p, .s = s, .ws = ws, .cache = cache};
    m->layers[0].ops->forward(&m->layers[0], &f);
    for (int i = 0; i < 784; i++) assert_true(y[i] == x[i] * a + shift);
    cnn_model_free(m);
}

static int group_setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_export.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    rm_tree(tmpdir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_exports),
        cmocka_unit_test(test_kind_without_export_refused),
        cmocka_unit_test(test_onnx_header_and_spec),
        cmocka_unit_test(test_bn_affine_matches_layer),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
