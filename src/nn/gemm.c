/*
 * gemm.c - the one place matrix products happen: small ones by libxsmm's JIT kernels, the rest
 * by CBLAS sgemm (OpenBLAS), plus the plain triple loop they are tested against.
 *
 * Row-major throughout: C (m,n) = alpha * op(A) (m,k) * op(B) (k,n) + beta * C.
 * op(X) is X when t == 0 and X^T when t == 1; lda/ldb/ldc are row strides as stored.
 *
 * Threads: OpenBLAS itself always runs on one thread. Its thread count is process-wide, so it is
 * set here, once, before the first product (blas_one_thread), and nowhere else. Inside a parallel
 * region (a team of threads each running the net on its own images, net.c) every thread calls
 * sgemm for itself. Outside one, a large product is cut into one block of C per thread, along
 * its longer side, and the blocks run in parallel. The cut never splits k, so every element
 * of C is the same sum, in the same order, whatever the number of threads.
 *
 * Small products: the Winograd products of a layer (winograd.c) are a*a = 16 or 36 products
 * such as (32, 32) @ (32, 49) for one image. OpenBLAS 0.3.21 packs both operands of each and
 * takes its buffer under a mutex, which two threads then queue on (Haswell kernels, 2 threads:
 * 85-95 us for 36 of those against 52 us alone). libxsmm generates a kernel for each shape at
 * run time, for the instruction set the processor has (AVX-512, AVX2, SSE; LIBXSMM_TARGET
 * chooses a lower one), that reads the operands where they lie: the same 36 took 25 us on one
 * thread and 27 us on each of two (2026-12-02). It takes C = A B and C = A^T B with alpha 1 and
 * beta 0 or 1, up to SMALL_MAX multiply-adds: its kernels do not block for the caches, and on
 * a product of 256 x 128 x 3136 OpenBLAS's AVX-512 kernels were 25% faster. Where it has no
 * kernel (another shape, a processor it does not know) OpenBLAS does the product.
 * Whether it may is decided on the whole product, before a cut, so that the blocks of a cut
 * product take the same path as the whole (same sums, same order).
 */
#include <pthread.h>
#include <string.h>

#include <cblas.h>
#include <immintrin.h>
#include <libxsmm.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"

/* Below this many multiply-adds one thread is quicker than waking the others. */
#define GEMM_SPLIT_MIN (1 << 16)

#define SMALL_MAX (1 << 21) /* 128^3: 2.5x the default network's largest Winograd product */

/* Whether libxsmm may take the product (its own rules above; the size of the whole). */
static int small_ok(int tb, int m, int n, int k, float alpha, float beta) {
    return !tb && alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && (double)m * n * k <= SMALL_MAX;
}

/* libxsmm's AVX kernels leave the upper halves of the vector registers set, and the rest of
 * the library, built for any x86-64, runs SSE code, which runs slower (each instruction waits
 * on them) until they are cleared: the transforms around the products took 2.5x as long. */
__attribute__((target("avx"))) static void clear_upper(void) {
    _mm256_zeroupper();
}

/* The product by libxsmm; 0 where it has no kernel. Row-major C = op(A) B is column-major
 * C^T = B^T op(A)^T: libxsmm's (m, n, k) are our (n, m, k), its A our B, its B our A, read
 * transposed when ta. Each thread keeps the answers for the last shapes it asked about, kernel
 * or none: a layer's a*a products share one shape, and a lookup in libxsmm's registry costs a
 * tenth of a small product. */
struct small_shape {
    int m, n, k, lda, ldb, ldc, ta, beta; /* ints only: compared with memcmp */
};

struct small_kernel {
    struct small_shape shape;
    int known;
    libxsmm_smmfunction f; /* NULL: libxsmm has none for the shape */
};

#define SMALL_KEPT 4

static libxsmm_smmfunction small_kernel_for(const struct small_shape *s) {
    static _Thread_local struct small_kernel kept[SMALL_KEPT];
    static _Thread_local int next;
    for (int i = 0; i < SMALL_KEPT; i++)
        if (kept[i].known && !memcmp(&kept[i].shape, s, sizeof *s)) return kept[i].f;
    const float one = 1.0f, beta = s->beta ? 1.0f : 0.0f;
    const int flags = s->ta ? LIBXSMM_GEMM_FLAG_TRANS_B : LIBXSMM_GEMM_FLAG_NONE;
    const libxsmm_smmfunction f =
        libxsmm_smmdispatch(s->n, s->m, s->k, &s->ldb, &s->lda, &s->ldc, &one, &beta, &flags, NULL);
    kept[next] = (struct small_kernel){*s, 1, f};
    next = (next + 1) % SMALL_KEPT;
    return f;
}

static int small_gemm(int ta, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                      float beta, float *c, int ldc) {
    const struct small_shape shape = {m, n, k, lda, ldb, ldc, ta, beta != 0.0f};
    const libxsmm_smmfunction f = small_kernel_for(&shape);
    if (!f) return 0;
    f(b, a, c);
    if (__builtin_cpu_supports("avx")) clear_upper(); /* not on an SSE-only processor */
    return 1;
}

/* One thread's product. A single row or column of C is a matrix-vector product: OpenBLAS
 * 0.3.21's sgemm would still pack the whole matrix first (for a dense layer and one image,
 * 4.7 MB of weights copied to multiply them once). */
static void sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc, int small) {
    if (m == 1) { /* c (n) = op(B)^T a: op(B)^T is B as stored when tb, else its transpose */
        cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? n : k, tb ? k : n, alpha,
                    b, ldb, a, ta ? lda : 1, beta, c, 1);
        return;
    }
    if (n == 1) { /* c (m) = op(A) b, c with stride ldc */
        cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, ta ? k : m, ta ? m : k, alpha,
                    a, lda, b, tb ? 1 : ldb, beta, c, ldc);
        return;
    }
    if (small && small_gemm(ta, m, n, k, a, lda, b, ldb, beta, c, ldc)) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_one_thread(void) { openblas_set_num_threads(1); }

void cnn_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    pthread_once(&blas_once, blas_one_thread);
    const int small = small_ok(tb, m, n, k, alpha, beta);
#ifdef _OPENMP
    const int T = omp_get_max_threads();
    if (T > 1 && !omp_in_parallel() && (double)m * n * k >= GEMM_SPLIT_MIN) {
        const int by_rows = m > n;
        const int len = by_rows ? m : n, align = 16; /* whole vectors and cache lines */
#pragma omp parallel num_threads(T)
        {
            const int t = omp_get_thread_num(), nt = omp_get_num_threads();
            const int blocks = (len + align - 1) / align;
            const int j0 = (int)((long)blocks * t / nt) * align;
            int j1 = (int)((long)blocks * (t + 1) / nt) * align;
            j1 = j1 < len ? j1 : len;
            if (j1 > j0 && by_rows)
                sgemm(ta, tb, j1 - j0, n, k, alpha, ta ? a + j0 : a + (size_t)j0 * lda, lda, b, ldb,
                      beta, c + (size_t)j0 * ldc, ldc, small);
            else if (j1 > j0)
                sgemm(ta, tb, m, j1 - j0, k, alpha, a, lda, tb ? b + (size_t)j0 * ldb : b + j0, ldb,
                      beta, c + j0, ldc, small);
        }
        return;
    }
#endif
    sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, small);
}

/* Reference: accumulates in double so tests can tell rounding from real errors. */
void cnn_gemm_naive(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0.0;
            for (int p = 0; p < k; p++) {
                const float av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                const float bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += (double)av * bv;
            }
            float *cij = &c[(size_t)i * ldc + j];
            *cij = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *cij));
        }
    }
}
