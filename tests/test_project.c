/*
 * test_project.c - the 2-D PCA against a plain reference (power iteration
 * with deflation on the covariance matrix, in double) on small generated
 * data, through both the covariance route (more points than dimensions)
 * and the Gram route (fewer); signs, explained variance, errors, and a
 * real neighbourhood on the GloVe fixture.
 */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Points with clearly separated variances along random directions: column
 * j of a random matrix scaled by 1/(j+1)^2, then rotated by mixing. */
static float *
make_points(size_t n, uint32_t dims, uint64_t seed)
{
    float *x = malloc(n * dims * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        for (uint32_t j = 0; j < dims; j++)
            x[i * dims + j] = t_rand(&seed) * 4.0f / (float)((j + 1) * (j + 1))
                              + 0.5f;
    return x;
}

/* The reference: covariance, power iteration for the top two
 * eigenvectors, projection, the sign rule of semd_project_pca2. */
static void
reference(const float *x, size_t n, uint32_t dims, double *xy,
          double ratio[2])
{
    double *c = calloc(n * dims, sizeof *c);
    double *cov = calloc((size_t)dims * dims, sizeof *cov);
    double *v = calloc(dims, sizeof *v), *t = calloc(dims, sizeof *t);
    double *found = calloc(2 * (size_t)dims, sizeof *found);
    for (uint32_t j = 0; j < dims; j++) {
        double m = 0;
        for (size_t i = 0; i < n; i++)
            m += x[i * dims + j];
        m /= (double)n;
        for (size_t i = 0; i < n; i++)
            c[i * dims + j] = x[i * dims + j] - m;
    }
    double total = 0;
    for (uint32_t a = 0; a < dims; a++)
        for (uint32_t b = 0; b < dims; b++) {
            double s = 0;
            for (size_t i = 0; i < n; i++)
                s += c[i * dims + a] * c[i * dims + b];
            cov[a * dims + b] = s;
        }
    for (uint32_t a = 0; a < dims; a++)
        total += cov[a * dims + a];
    for (int axis = 0; axis < 2; axis++) {
        for (uint32_t j = 0; j < dims; j++)
            v[j] = 1.0 / (j + 1.0);
        double lam = 0;
        for (int it = 0; it < 5000; it++) {
            for (uint32_t a = 0; a < dims; a++) {
                double s = 0;
                for (uint32_t b = 0; b < dims; b++)
                    s += cov[a * dims + b] * v[b];
                t[a] = s;
            }
            if (axis == 1) { /* stay orthogonal to the first */
                double d = 0;
                for (uint32_t j = 0; j < dims; j++)
                    d += t[j] * found[j];
                for (uint32_t j = 0; j < dims; j++)
                    t[j] -= d * found[j];
            }
            double nn = 0;
            for (uint32_t j = 0; j < dims; j++)
                nn += t[j] * t[j];
            lam = sqrt(nn);
            for (uint32_t j = 0; j < dims; j++)
                v[j] = t[j] / lam;
        }
        memcpy(found + (size_t)axis * dims, v, dims * sizeof *v);
        ratio[axis] = lam / total;
        double far = 0;
        for (size_t i = 0; i < n; i++) {
            double p = 0;
            for (uint32_t j = 0; j < dims; j++)
                p += c[i * dims + j] * v[j];
            xy[i * 2 + axis] = p;
            if (fabs(p) > fabs(far))
                far = p;
        }
        if (far < 0)
            for (size_t i = 0; i < n; i++)
                xy[i * 2 + axis] = -xy[i * 2 + axis];
    }
    free(c);
    free(cov);
    free(v);
    free(t);
    free(found);
}

static void
check_against_reference(size_t n, uint32_t dims, uint64_t seed)
{
    float *x = make_points(n, dims, seed);
    float *xy = malloc(n * 2 * sizeof *xy);
    double *want = malloc(n * 2 * sizeof *want);
    double ratio[2], want_ratio[2];
    struct semd_err err = {0};
    assert_int_equal(semd_project_pca2(x, n, dims, xy, ratio, &err), 0);
    reference(x, n, dims, want, want_ratio);
    double scale = 0;
    for (size_t i = 0; i < 2 * n; i++)
        scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < 2 * n; i++)
        if (fabs(xy[i] - want[i]) > 1e-3 * scale)
            fail_msg("n=%zu dims=%u coordinate %zu: got %g, want %g", n,
                     (unsigned)dims, i, (double)xy[i], want[i]);
    for (int a = 0; a < 2; a++)
        if (fabs(ratio[a] - want_ratio[a]) > 1e-4)
            fail_msg("n=%zu dims=%u ratio %d: got %g, want %g", n,
                     (unsigned)dims, a, ratio[a], want_ratio[a]);
    assert_true(ratio[0] >= ratio[1]);
    assert_true(ratio[0] + ratio[1] <= 1.0 + 1e-9);
    free(x);
    free(xy);
    free(want);
}

static void
test_covariance_route(void **state)
{
    (void)state;
    check_against_reference(50, 6, 1);
    check_against_reference(200, 17, 2);
}

static void
test_gram_route(void **state)
{
    (void)state;
    check_against_reference(5, 30, 3);
    check_against_reference(12, 100, 4);
}

/* Known geometry: points on a line along (1,1,0) with a small spread on
 * (0,0,1) project to x = signed distance along the line, y = the spread. */
static void
test_known_geometry(void **state)
{
    (void)state;
    float x[5 * 3];
    float t[5] = {-2, -1, 0, 1, 3};
    float z[5] = {0.1f, -0.2f, 0.1f, 0.0f, 0.0f}; /* orthogonal to t */
    for (int i = 0; i < 5; i++) {
        x[i * 3] = x[i * 3 + 1] = t[i] / sqrtf(2.0f);
        x[i * 3 + 2] = z[i];
    }
    float xy[10];
    double ratio[2];
    assert_int_equal(semd_project_pca2(x, 5, 3, xy, ratio, NULL), 0);
    /* mean of t is 0.2; the farthest point (t=3) is on the positive side */
    for (int i = 0; i < 5; i++)
        assert_float_equal(xy[i * 2], t[i] - 0.2f, 1e-5);
    assert_true(ratio[0] > 0.99);
    assert_true(ratio[1] > 0 && ratio[1] < 0.01);
    assert_float_equal(ratio[0] + ratio[1], 1.0, 1e-9);
}

static void
test_errors(void **state)
{
    (void)state;
    float x[4 * 3] = {0};
    float xy[8];
    double ratio[2];
    struct semd_err err = {0};
    assert_int_equal(semd_project_pca2(x, 2, 3, xy, ratio, &err),
                     SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "at least 3 points"));
    assert_int_equal(semd_project_pca2(x, 4, 1, xy, ratio, &err),
                     SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "2 dimensions"));
    x[5] = NAN;
    assert_int_equal(semd_project_pca2(x, 4, 3, xy, ratio, &err),
                     SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "point 1"));
    /* all points equal: zeros, not NaN */
    x[5] = 0;
    for (int i = 0; i < 12; i++)
        x[i] = 2.5f;
    assert_int_equal(semd_project_pca2(x, 4, 3, xy, ratio, &err), 0);
    for (int i = 0; i < 8; i++)
        assert_float_equal(xy[i], 0, 0);
    assert_float_equal(ratio[0], 0, 0);
}

/* Real data: king's neighbourhood on the fixture, the same twice. */
static void
test_fixture_neighbourhood(void **state)
{
    (void)state;
    struct semd_model *m;
    struct semd_err err = {0};
    if (semd_model_open(&m, t_fixture(), &err) != 0)
        fail_msg("open fixture: %s", err.msg);
    const char *words[] = {"king", "queen", "prince", "man", "woman",
                           "paris", "london", "berlin", "france"};
    size_t n = sizeof words / sizeof words[0];
    uint32_t d = semd_model_dims(m);
    float *x = malloc(n * d * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        uint64_t r;
        assert_int_equal(semd_model_lookup(m, words[i], strlen(words[i]), &r),
                         0);
        memcpy(x + i * d, semd_model_row(m, r), d * sizeof *x);
    }
    float a[18], b[18];
    double ra[2], rb[2];
    assert_int_equal(semd_project_pca2(x, n, d, a, ra, &err), 0);
    assert_int_equal(semd_project_pca2(x, n, d, b, rb, &err), 0);
    assert_memory_equal(a, b, sizeof a);
    assert_true(ra[0] > 0.1 && ra[0] >= ra[1]);
    /* the first axis parts royalty from capitals: king and paris apart
     * by more than king and queen */
    double kq = hypot(a[0] - a[2], a[1] - a[3]);
    double kp = hypot(a[0] - a[10], a[1] - a[11]);
    assert_true(kp > kq);
    free(x);
    semd_model_close(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_covariance_route),
        cmocka_unit_test(test_gram_route),
        cmocka_unit_test(test_known_geometry),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_fixture_neighbourhood),
    };
    return cmocka_run_group_tests_name("project", tests, NULL, NULL);
}
