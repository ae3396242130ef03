/*
 * gemm.c - the one place matrix products happen: a thin wrapper over CBLAS sgemm (OpenBLAS),
 * plus the plain triple loop it is tested against.
 *
 * Row-major throughout: C (m,n) = alpha * op(A) (m,k) * op(B) (k,n) + beta * C.
 * op(X) is X when t == 0 and X^T when t == 1; lda/ldb/ldc are row strides as stored.
 */
#include <cblas.h>

#include "internal.h"

void cnn_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
