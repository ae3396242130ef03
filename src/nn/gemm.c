/*
 * gemm.c - the one place matrix products happen: a thin wrapper over CBLAS sgemm (OpenBLAS),
 * plus the plain triple loop it is tested against.
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
 */
#include <pthread.h>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"

/* Below this many multiply-adds one thread is quicker than waking the others. */
#define GEMM_SPLIT_MIN (1 << 16)

/* One thread's product. A single row or column of C is a matrix-vector product: OpenBLAS
 * 0.3.21's sgemm would still pack the whole matrix first (for a dense layer and one image,
 * 4.7 MB of weights copied to multiply them once). */
static void sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc) {
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
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_one_thread(void) { openblas_set_num_threads(1); }

void cnn_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    pthread_once(&blas_once, blas_one_thread);
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
                sgemm(ta, tb, j1 - j0, n, k, alpha, ta ? a + j0 : a + (size_t)j0 * lda, lda, b,
                      ldb, beta, c + (size_t)j0 * ldc, ldc);
            else if (j1 > j0)
                sgemm(ta, tb, m, j1 - j0, k, alpha, a, lda, tb ? b + (size_t)j0 * ldb : b + j0,
                      ldb, beta, c + j0, ldc);
        }
        return;
    }
#endif
    sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
