/*
 * bench_gemm.c - the machine's SGEMM peak as bench/compare sees it: OpenBLAS cblas_sgemm
 * GFLOP/s at a large square size, best of several repetitions, with a given thread count.
 * It links the same OpenBLAS as build/mnist (the pthread build), here running on T threads of
 * its own: the ceiling for our convolutions and dense layers, which are sgemm calls (mnist
 * runs one single-threaded sgemm per thread).
 *
 * Build (bench/compare does this):
 *   cc -O2 bench/bench_gemm.c -I/usr/include/x86_64-linux-gnu/openblas-pthread \
 *      -L/usr/lib/x86_64-linux-gnu/openblas-pthread \
 *      -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas -fopenmp \
 *      -o build/bench_gemm
 * Usage: build/bench_gemm [--size N] [--reps R] [--threads T]
 *   defaults: N 2048, R 5, T all cores. Prints one JSON object:
 *   {"size", "threads", "reps", "gflops" (best), "gflops_median", "seconds_best",
 *    "check_max_err", "corename", "config"}.
 * Before timing, the fast result is checked against a plain triple loop (accumulating in
 * double) on small odd sizes, for every transpose combination; a mismatch exits 1.
 * OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in the environment apply as they do to mnist.
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* uniform in [-1, 1), xorshift64 */
static float frand(unsigned long long *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Row-major C (m,n) = alpha op(A) op(B) + beta C, accumulated in double. */
static void gemm_naive(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int p = 0; p < k; p++) {
                const float av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                const float bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += (double)av * bv;
            }
            float *cij = &c[(size_t)i * ldc + j];
            *cij = (float)(alpha * s + (double)beta * *cij);
        }
}

/* Largest |fast - naive| / (1 + |naive|) over the four transpose combinations. */
static double check(void) {
    const int m = 67, n = 45, k = 131;
    unsigned long long s = 42;
    const size_t sz = (size_t)(m > n ? m : n) * (size_t)k;
    float *a = malloc(sizeof(float) * sz), *b = malloc(sizeof(float) * sz);
    float *c0 = malloc(sizeof(float) * (size_t)m * n), *c1 = malloc(sizeof(float) * (size_t)m * n);
    float *c2 = malloc(sizeof(float) * (size_t)m * n);
    if (!a || !b || !c0 || !c1 || !c2) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < sz; i++) a[i] = frand(&s), b[i] = frand(&s);
    for (int i = 0; i < m * n; i++) c0[i] = frand(&s);
    double worst = 0.0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            const int lda = ta ? m : k, ldb = tb ? k : n;
            memcpy(c1, c0, sizeof(float) * (size_t)m * n);
            memcpy(c2, c0, sizeof(float) * (size_t)m * n);
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                        tb ? CblasTrans : CblasNoTrans, m, n, k, 0.75f, a, lda, b, ldb, 0.5f, c1,
                        n);
            gemm_naive(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, 0.5f, c2, n);
            for (int i = 0; i < m * n; i++) {
                const double e = fabs((double)c1[i] - c2[i]) / (1.0 + fabs((double)c2[i]));
                if (!(e <= worst)) worst = e; /* NaN counts as worst */
            }
        }
    free(a), free(b), free(c0), free(c1), free(c2);
    return worst;
}

static int arg_int(const char *flag, const char *v, int lo, int hi) {
    char *end;
    const long x = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || x < lo || x > hi) {
        fprintf(stderr, "bench_gemm: %s wants an integer in [%d, %d]\n", flag, lo, hi);
        exit(2);
    }
    return (int)x;
}

int main(int argc, char **argv) {
    int size = 2048, reps = 5, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--size")) size = arg_int("--size", argv[++i], 16, 16384);
        else if (!strcmp(argv[i], "--reps")) reps = arg_int("--reps", argv[++i], 1, 1000);
        else if (!strcmp(argv[i], "--threads")) threads = arg_int("--threads", argv[++i], 0, 1024);
        else {
            fprintf(stderr, "usage: bench_gemm [--size N] [--reps R] [--threads T]\n");
            return 2;
        }
    }
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_num_procs();
    omp_set_num_threads(threads);
#else
    if (threads <= 0) threads = 1;
#endif
    openblas_set_num_threads(threads);

    const double err = check();
    if (!(err < 1e-4)) {
        fprintf(stderr, "bench_gemm: cblas_sgemm disagrees with the naive reference (%.3g)\n",
                err);
        return 1;
    }

    const size_t nn = (size_t)size * size;
    float *a = malloc(sizeof(float) * nn), *b = malloc(sizeof(float) * nn);
    float *c = malloc(sizeof(float) * nn);
    double *t = malloc(sizeof(double) * (size_t)reps);
    if (!a || !b || !c || !t) {
        fprintf(stderr, "bench_gemm: out of memory for %d x %d\n", size, size);
        return 1;
    }
    unsigned long long s = 7;
    for (size_t i = 0; i < nn; i++) a[i] = frand(&s), b[i] = frand(&s), c[i] = 0.0f;
    /* one untimed call: thread start-up, page faults */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, size, size, size, 1.0f, a, size, b,
                size, 0.0f, c, size);
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, size, size, size, 1.0f, a, size,
                    b, size, 0.0f, c, size);
        t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    const double flops = 2.0 * size * (double)size * size;
    printf("{\"size\":%d,\"threads\":%d,\"reps\":%d,\"gflops\":%.2f,\"gflops_median\":%.2f,"
           "\"seconds_best\":%.4f,\"check_max_err\":%.3g,\"corename\":\"%s\",\"config\":\"%s\"}\n",
           size, openblas_get_num_threads(), reps, flops / t[0] / 1e9,
           flops / t[reps / 2] / 1e9, t[0], err, openblas_get_corename(), openblas_get_config());
    free(a), free(b), free(c), free(t);
    return 0;
}
