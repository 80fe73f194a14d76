/*
 * linalg.c - dense products over OpenBLAS: the only file that includes
 * cblas.h, so the rest of the core does not depend on one BLAS's header.
 *
 * Invariants: every product is row-major single precision. The thread
 * count of OpenBLAS is process-wide: server/main.c sets it once through
 * semd_set_threads before any query runs; the functions here may then be
 * called from any number of threads at once.
 */
#include "linalg.h"

#include <cblas.h>
#include <math.h>

void
linalg_set_threads(int n)
{
    openblas_set_num_threads(n < 1 ? 1 : n);
}

void
linalg_gemv(const float *m, size_t rows, uint32_t dims, const float *x,
            float *y)
{
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)rows, (blasint)dims,
                1.0f, m, (blasint)dims, x, 1, 0.0f, y, 1);
}

void
linalg_gemm_nt(const float *a, size_t na, const float *b, size_t nb,
               uint32_t dims, float *c, size_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)na,
                (blasint)nb, (blasint)dims, 1.0f, a, (blasint)dims, b,
                (blasint)dims, 0.0f, c, (blasint)ldc);
}

float
linalg_dot(const float *a, const float *b, uint32_t n)
{
    /* Eight independent sums: a single chain of additions would be bound
     * by the adder's latency, not its throughput. */
    float s[8] = {0};
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += a[i + j] * b[i + j];
    float t = 0;
    for (; i < n; i++)
        t += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
           + t;
}

double
linalg_norm(const float *a, uint32_t n)
{
    double s = 0;
    for (uint32_t i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return sqrt(s);
}
