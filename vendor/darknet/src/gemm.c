/* Single-precision GEMM: a real BLAS when built with one, else a portable loop. */
#include "internal.h"

#if defined(DN_BLAS_SCIPY_OPENBLAS)
#include <cblas.h>
#define DN_CBLAS_SGEMM scipy_cblas_sgemm
#elif defined(DN_BLAS_CBLAS)
#include <cblas.h>
#define DN_CBLAS_SGEMM cblas_sgemm
#endif

#if defined(DN_BLAS_SCIPY_OPENBLAS)
void scipy_openblas_set_num_threads(int threads);
#elif defined(DN_BLAS_CBLAS)
/* OpenBLAS's call, when the cblas library is OpenBLAS (weak: absent elsewhere) */
void openblas_set_num_threads(int threads) __attribute__((weak));
#endif

void dn_gemm_single_threaded(void)
{
#if defined(DN_BLAS_SCIPY_OPENBLAS)
    scipy_openblas_set_num_threads(1);
#elif defined(DN_BLAS_CBLAS)
    if (openblas_set_num_threads) openblas_set_num_threads(1);
#endif
}

#ifdef DN_CBLAS_SGEMM
void dn_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc)
{
    DN_CBLAS_SGEMM(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                   m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#else
/* Used only when no BLAS is linked (DARKNET_PY_BLAS=none): correct, not fast. */
void dn_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc)
{
    for (int i = 0; i < m; ++i) {
        float *row = c + (size_t)i * ldc;
        for (int j = 0; j < n; ++j) row[j] = beta == 0 ? 0 : row[j] * beta;
        for (int p = 0; p < k; ++p) {
            float av = alpha * (trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]);
            if (av == 0) continue;
            if (trans_b) {
                for (int j = 0; j < n; ++j) row[j] += av * b[(size_t)j * ldb + p];
            } else {
                const float *brow = b + (size_t)p * ldb;
                for (int j = 0; j < n; ++j) row[j] += av * brow[j];
            }
        }
    }
}
#endif
