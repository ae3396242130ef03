/*
 * test_concurrent.c - one model shared by many threads: several pthreads each hold their own
 * context and predict with the same const model at the same time; every result must equal,
 * byte for byte, what one context gives alone. Readers of the model (save, metadata, layer
 * info) run beside them. `make tsan` builds this under ThreadSanitizer (without OpenMP, whose
 * libgomp is not built for TSan), so a data race on the model or any shared state fails it.
 *
 * Uses only cnn.h: this is what a server with a pool of workers does.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cnn.h"
#include "testutil.h"

#define WORKERS 6
#define IMAGES 64
#define ROUNDS 12

/* bn, dropout (off in inference), both pools, padding, a fused and an unfused activation */
static const char *const SPECS[] = {
    "conv 8 3 pad=1, bn, relu, maxpool 2, conv 16 3 pad=1, bn, leakyrelu 0.1, avgpool 2, "
    "dropout 0.3, dense 32, relu, dense 10",
    "conv 4 5, relu, maxpool 2, flatten, dense 10",
};

static uint8_t pixels[IMAGES * 784];

struct worker {
    const struct cnn_model *m;
    int threads, id;
    const float *want; /* (ROUNDS, IMAGES, 10): each round's call in one context alone */
    int mismatches, errors;
    char path[600];
};

/* Round r of worker id: n images from `first`. Batch sizes of every kind in turn (1, 7, the
 * whole set). A result depends on how images are batched (a single image takes matrix-vector
 * products), so the reference is the same call, made alone. */
static void round_call(int id, int r, int *first, int *n) {
    static const int sizes[] = {1, 7, IMAGES};
    *n = sizes[(r + id) % 3];
    *first = (r * 5 + id) % (IMAGES - *n + 1);
}

static void *work(void *arg) {
    struct worker *w = arg;
    struct cnn_ctx *ctx;
    if (cnn_ctx_new(w->m, 16, w->threads, &ctx) != CNN_OK) {
        w->errors++;
        return NULL;
    }
    float probs[IMAGES * 10];
    for (int r = 0; r < ROUNDS; r++) {
        int first, n;
        round_call(w->id, r, &first, &n);
        if (cnn_predict_u8(w->m, ctx, pixels + (size_t)first * 784, n, probs) != CNN_OK) {
            w->errors++;
            continue;
        }
        const float *want = w->want + (size_t)r * IMAGES * 10;
        w->mismatches += memcmp(probs, want, sizeof(float) * n * 10) != 0;
        /* readers of the same model at the same time */
        if (cnn_model_meta(w->m, "dataset") == NULL || cnn_model_class_name(w->m, 3) == NULL)
            w->errors++;
        struct cnn_layer_info li;
        if (cnn_model_layer_info(w->m, r % cnn_model_n_layers(w->m), &li) != CNN_OK) w->errors++;
        if (r == ROUNDS / 2 && cnn_model_save(w->m, w->path) != CNN_OK) w->errors++;
    }
    cnn_ctx_free(ctx);
    return NULL;
}

static struct cnn_model *make_model(const char *spec) {
    struct cnn_model *m;
    if (cnn_model_new(spec, 1, 28, 28, &m) != CNN_OK) fail_msg("%s", cnn_errmsg());
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 42);
    cnn_model_init_params(m, &rng);
    cnn_model_set_norm(m, 0.13f, 0.31f);
    assert_int_equal(cnn_model_set_meta(m, "dataset", "mnist"), CNN_OK);
    return m;
}

/* WORKERS pthreads on one model, contexts of `threads` threads each. */
static void run_workers(const char *spec, int threads) {
    struct cnn_model *m = make_model(spec);
    const size_t per = (size_t)ROUNDS * IMAGES * 10;
    float *want = malloc(sizeof(float) * per * WORKERS);
    assert_non_null(want);
    struct cnn_ctx *ctx;
    assert_int_equal(cnn_ctx_new(m, 16, threads, &ctx), CNN_OK);
    for (int id = 0; id < WORKERS; id++)
        for (int r = 0; r < ROUNDS; r++) {
            int first, n;
            round_call(id, r, &first, &n);
            float *out = want + per * id + (size_t)r * IMAGES * 10;
            assert_int_equal(cnn_predict_u8(m, ctx, pixels + (size_t)first * 784, n, out), CNN_OK);
        }
    cnn_ctx_free(ctx);
    struct worker w[WORKERS];
    pthread_t tid[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (struct worker){m, threads, i, want + per * i, 0, 0, ""};
        snprintf(w[i].path, sizeof w[i].path, "%s/w%d.model", tmpdir, i);
        assert_int_equal(pthread_create(&tid[i], NULL, work, &w[i]), 0);
    }
    int mismatches = 0, errors = 0;
    for (int i = 0; i < WORKERS; i++) {
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        mismatches += w[i].mismatches;
        errors += w[i].errors;
    }
    printf("%d workers x %d rounds, contexts of %d thread(s): %d mismatches, %d errors\n",
           WORKERS, ROUNDS, threads, mismatches, errors);
    assert_int_equal(errors, 0);
    assert_int_equal(mismatches, 0);
    /* what each worker saved while the others computed is the model, exactly */
    for (int i = 0; i < WORKERS; i++) {
        struct cnn_model *back;
        if (cnn_model_load(w[i].path, &back) != CNN_OK) fail_msg("%s", cnn_errmsg());
        assert_memory_equal(cnn_model_params(back), cnn_model_params(m),
                            cnn_model_n_params(m) * sizeof(float));
        cnn_model_free(back);
    }
    free(want);
    cnn_model_free(m);
}

static void test_shared_model_one_thread_each(void **state) {
    (void)state;
    for (size_t s = 0; s < sizeof SPECS / sizeof SPECS[0]; s++) run_workers(SPECS[s], 1);
}

/* Contexts that each run a team of two threads: still the same bytes as one such context. */
static void test_shared_model_two_threads_each(void **state) {
    (void)state;
    for (size_t s = 0; s < sizeof SPECS / sizeof SPECS[0]; s++) run_workers(SPECS[s], 2);
}

/* A context made for one layout refuses a model of another. */
static void test_context_of_another_model(void **state) {
    (void)state;
    struct cnn_model *a = make_model(SPECS[0]), *b = make_model(SPECS[1]), *c = make_model(SPECS[1]);
    struct cnn_ctx *ctx;
    assert_int_equal(cnn_ctx_new(b, 4, 1, &ctx), CNN_OK);
    float probs[10];
    check_error(cnn_predict_u8(a, ctx, pixels, 1, probs), CNN_ERR_ARG, "context was made for");
    /* an ensemble member of the same layout may share it */
    assert_int_equal(cnn_predict_u8(c, ctx, pixels, 1, probs), CNN_OK);
    check_error(cnn_predict_u8(b, ctx, pixels, -1, probs), CNN_ERR_ARG, "negative");
    assert_int_equal(cnn_predict_u8(b, ctx, pixels, 0, probs), CNN_OK);
    cnn_ctx_free(ctx);
    struct cnn_ctx *bad = (struct cnn_ctx *)(void *)&ctx;
    check_error(cnn_ctx_new(b, 0, 1, &bad), CNN_ERR_ARG, "batch size");
    assert_null(bad);
    check_error(cnn_ctx_new(b, 1, -1, &bad), CNN_ERR_ARG, "thread count");
    check_error(cnn_ctx_new(b, 1, 1025, &bad), CNN_ERR_ARG, "thread count");
    /* the limit itself is accepted (not run: it would start 1024 threads) */
    assert_int_equal(cnn_ctx_new(b, 1, 1024, &ctx), CNN_OK);
    assert_int_equal(cnn_ctx_threads(ctx), 1024);
    cnn_ctx_free(ctx);
    check_error(cnn_ctx_new(b, 65537, 1, &bad), CNN_ERR_ARG, "batch size");
    cnn_ctx_free(NULL);
    cnn_model_free(a);
    cnn_model_free(b);
    cnn_model_free(c);
}

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cnn_test_concurrent.XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    struct cnn_rng rng;
    cnn_rng_seed(&rng, 7);
    for (size_t i = 0; i < sizeof pixels; i++)
        pixels[i] = (uint8_t)(cnn_rng_uniform(&rng) < 0.8f ? 0 : cnn_rng_u64(&rng) >> 56);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    rm_tree(tmpdir);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_model_one_thread_each),
        cmocka_unit_test(test_shared_model_two_threads_each),
        cmocka_unit_test(test_context_of_another_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
