/*
 * project.c - 2-D principal component analysis of a small set of points,
 * for drawing a neighbourhood: centre, form the smaller of the covariance
 * (dims x dims) and Gram (n x n) matrices with BLAS, take its top two
 * eigenpairs with LAPACK (linalg.c), then project.
 *
 * Both routes give the same picture: with centred X, an eigenvector v of
 * X^T X gives coordinates X v, and the matching eigenvector u of X X^T
 * gives X v = u sqrt(lambda). Work is in double precision; the inputs
 * are a few hundred rows at most, so the copies cost nothing.
 *
 * Invariants: no shared state; any thread may call it at any time.
 */
#include "semd.h"

#include "linalg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int
semd_project_pca2(const float *x, size_t n, uint32_t dims, float *xy,
                  double ratio[2], struct semd_err *err)
{
    if (!x || !xy || !ratio)
        return semd_err_set(err, SEMD_EINVAL, "null argument");
    if (n < 3)
        return semd_err_set(err, SEMD_EINVAL,
                            "need at least 3 points to project, got %zu", n);
    if (dims < 2)
        return semd_err_set(err, SEMD_EINVAL,
                            "need at least 2 dimensions, got %u",
                            (unsigned)dims);
    if (n > 100000)
        return semd_err_set(err, SEMD_EINVAL,
                            "%zu points is over the limit of 100000", n);
    int outer = n < dims; /* the Gram matrix is the smaller one */
    size_t k = outer ? n : dims;
    double *c = malloc(n * dims * sizeof *c);
    double *a = malloc(k * k * sizeof *a);
    double *v = malloc(2 * k * sizeof *v);
    int rc = 0;
    if (!c || !a || !v) {
        rc = semd_err_set(err, SEMD_ENOMEM,
                          "out of memory projecting %zu points", n);
        goto out;
    }
    /* centre; the total variance is the trace, summed directly */
    double total = 0;
    for (uint32_t j = 0; j < dims; j++) {
        double mean = 0;
        for (size_t i = 0; i < n; i++) {
            double e = x[i * dims + j];
            if (!isfinite(e)) {
                rc = semd_err_set(err, SEMD_EINVAL,
                                  "point %zu has a non-finite value", i);
                goto out;
            }
            mean += e;
        }
        mean /= (double)n;
        for (size_t i = 0; i < n; i++) {
            double e = x[i * dims + j] - mean;
            c[i * dims + j] = e;
            total += e * e;
        }
    }
    if (!(total > 0)) {
        /* every point the same: nothing to spread out */
        memset(xy, 0, n * 2 * sizeof *xy);
        ratio[0] = ratio[1] = 0;
        goto out;
    }
    linalg_dsyrk(c, n, dims, outer, a);
    double w[2];
    if (linalg_dsyev_top2(a, k, w, v) != 0) {
        rc = semd_err_set(err, SEMD_ENOMEM,
                          "eigen-decomposition of %zu points failed (out of "
                          "memory)", n);
        goto out;
    }
    for (int axis = 0; axis < 2; axis++) {
        double lam = w[axis] > 0 ? w[axis] : 0;
        double s = sqrt(lam);
        const double *u = v + (size_t)axis * k;
        double far = 0;
        for (size_t i = 0; i < n; i++) {
            double p;
            if (outer) {
                p = u[i] * s;
            } else {
                p = 0;
                for (uint32_t j = 0; j < dims; j++)
                    p += c[i * dims + j] * u[j];
            }
            xy[i * 2 + axis] = (float)p;
            if (fabs(p) > fabs(far))
                far = p;
        }
        if (far < 0)
            for (size_t i = 0; i < n; i++)
                xy[i * 2 + axis] = -xy[i * 2 + axis];
        ratio[axis] = lam / total;
    }
out:
    free(c);
    free(a);
    free(v);
    return rc;
}
