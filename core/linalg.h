/*
 * linalg.h - the few dense linear-algebra operations the core needs, over
 * OpenBLAS. linalg.c is the only file that includes cblas.h.
 */
#ifndef SEMD_LINALG_H
#define SEMD_LINALG_H

#include <stddef.h>
#include <stdint.h>

/* Threads OpenBLAS may use for one call (>= 1). Process-wide; call once at
 * start, before any thread searches. */
void linalg_set_threads(int n);

/* y[rows] = m[rows x dims] . x[dims] */
void linalg_gemv(const float *m, size_t rows, uint32_t dims, const float *x,
                 float *y);

/* c[na x nb] = a[na x dims] . b[nb x dims]^T, both row-major; ldc is the
 * row stride of c in floats (>= nb). */
void linalg_gemm_nt(const float *a, size_t na, const float *b, size_t nb,
                    uint32_t dims, float *c, size_t ldc);

/* Dot product of n floats with independent partial sums (so the compiler
 * can keep several additions in flight). */
float linalg_dot(const float *a, const float *b, uint32_t n);

/* Euclidean norm, accumulated in double. */
double linalg_norm(const float *a, uint32_t n);

/* ---- symmetric eigenproblems (double precision, for projections) */

/* c[k x k] = x^T x when outer is 0 (x is n x k, k = d), or x x^T when
 * outer is 1 (k = n); x is row-major n x d. The whole of c is filled. */
void linalg_dsyrk(const double *x, size_t n, size_t d, int outer, double *c);

/* The two largest eigenvalues of the symmetric k x k matrix a (k >= 2;
 * destroyed) with LAPACK's dsyevr: w[0] >= w[1], and their unit
 * eigenvectors v[0..k) and v[k..2k). Returns 0, or -1 when LAPACK fails
 * or is out of memory. */
int linalg_dsyev_top2(double *a, size_t k, double w[2], double *v);

#endif
