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
#include <stdlib.h>
#include <string.h>

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

/* ---- symmetric eigenproblems: the Gram or covariance matrix of a few
 * hundred points for a 2-D projection. Double precision: these matrices
 * are small and the eigenvalues of nearly flat spectra need the digits. */

/* LAPACK's Fortran entry point as OpenBLAS exports it (Debian's
 * libopenblas-dev ships no lapacke.h). The trailing lengths are the hidden
 * character-argument lengths gfortran passes. */
extern void dsyevr_(const char *jobz, const char *range, const char *uplo,
                    const int *n, double *a, const int *lda, const double *vl,
                    const double *vu, const int *il, const int *iu,
                    const double *abstol, int *m, double *w, double *z,
                    const int *ldz, int *isuppz, double *work,
                    const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t range_len,
                    size_t uplo_len);

void
linalg_dsyrk(const double *x, size_t n, size_t d, int outer, double *c)
{
    size_t k = outer ? n : d;
    cblas_dsyrk(CblasRowMajor, CblasUpper, outer ? CblasNoTrans : CblasTrans,
                (blasint)k, (blasint)(outer ? d : n), 1.0, x, (blasint)d, 0.0,
                c, (blasint)k);
    /* dsyrk writes one triangle; callers want the whole matrix */
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < i; j++)
            c[i * k + j] = c[j * k + i];
}

int
linalg_dsyev_top2(double *a, size_t k, double w[2], double *v)
{
    int n = (int)k, il = n - 1, iu = n, m = 0, info = 0;
    double vl = 0, vu = 0, abstol = 0, wq[2], wopt = 0;
    int iopt = 0, lwork = -1, liwork = -1;
    int *isuppz = malloc(4 * sizeof *isuppz);
    double *z = malloc(2 * k * sizeof *z);
    if (!isuppz || !z) {
        free(isuppz);
        free(z);
        return -1;
    }
    /* a is symmetric and whole, so row- or column-major reads the same */
    dsyevr_("V", "I", "U", &n, a, &n, &vl, &vu, &il, &iu, &abstol, &m, wq, z,
            &n, isuppz, &wopt, &lwork, &iopt, &liwork, &info, 1, 1,
            1);
    lwork = (int)wopt;
    liwork = iopt;
    double *work = info == 0 ? malloc((size_t)lwork * sizeof *work) : NULL;
    int *iwork = work ? malloc((size_t)liwork * sizeof *iwork) : NULL;
    int rc = -1;
    if (iwork) {
        dsyevr_("V", "I", "U", &n, a, &n, &vl, &vu, &il, &iu, &abstol, &m,
                wq, z, &n, isuppz, work, &lwork, iwork, &liwork, &info, 1,
                1, 1);
        if (info == 0 && m == 2) {
            /* ascending order from LAPACK: the largest comes second */
            w[0] = wq[1];
            w[1] = wq[0];
            memcpy(v, z + k, k * sizeof *v);
            memcpy(v + k, z, k * sizeof *v);
            rc = 0;
        }
    }
    free(work);
    free(iwork);
    free(isuppz);
    free(z);
    return rc;
}
