/*
 * test_index.c - the index module: exact search against a brute-force
 * double-precision reference, the search options, the batch path, and
 * approximate FAISS indexes.
 */
#include "test.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "index.h"

static struct semd_model *
open_model(const char *path)
{
    struct semd_model *m = NULL;
    struct semd_err err = {0};
    if (semd_model_open(&m, path, &err) != 0)
        fail_msg("open %s: %s", path, err.msg);
    return m;
}

static struct semd_index *
open_index(const struct semd_model *m, const char *factory)
{
    struct semd_index *ix = NULL;
    struct semd_err err = {0};
    struct semd_index_opts o = {0};
    o.factory = factory;
    if (semd_index_open(&ix, m, &o, &err) != 0)
        fail_msg("index_open %s: %s", factory ? factory : "Flat", err.msg);
    return ix;
}

struct ref {
    uint64_t row;
    double score;
};

static int
cmp_ref(const void *a, const void *b)
{
    const struct ref *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* Cosine of every eligible row with q in double precision, sorted best
 * first; returns how many are eligible. */
static uint64_t
reference(const struct semd_model *m, const float *q,
          const struct semd_search *s, struct ref *out)
{
    uint64_t rows = semd_model_rows(m);
    uint32_t dims = semd_model_dims(m);
    uint64_t lim = s->restrict_rows && s->restrict_rows < rows
                       ? s->restrict_rows : rows;
    double qn = 0;
    for (uint32_t i = 0; i < dims; i++)
        qn += (double)q[i] * q[i];
    qn = sqrt(qn);
    uint64_t n = 0;
    for (uint64_t r = 0; r < lim; r++) {
        int skip = 0;
        for (size_t e = 0; e < s->n_exclude; e++)
            skip |= s->exclude[e] == r;
        if (skip)
            continue;
        const float *v = semd_model_row(m, r);
        double d = 0, vn = 0;
        for (uint32_t i = 0; i < dims; i++) {
            d += (double)v[i] * q[i];
            vn += (double)v[i] * v[i];
        }
        double c = vn > 0 ? d / (sqrt(vn) * qn) : 0;
        if (s->use_min_similarity && c < s->min_similarity)
            continue;
        out[n].row = r;
        out[n].score = c;
        n++;
    }
    qsort(out, n, sizeof *out, cmp_ref);
    return n;
}

/* The hits equal the reference's top k, allowing rows to swap only where
 * their scores are within float rounding of each other. */
static void
check_hits(const struct semd_model *m, const float *q,
           const struct semd_search *s, const struct semd_hit *hits,
           uint32_t n_hits, double tol)
{
    struct ref *ref = malloc(semd_model_rows(m) * sizeof *ref);
    uint64_t n = reference(m, q, s, ref);
    uint64_t want = n < s->k ? n : s->k;
    if (n_hits != want) {
        /* min_similarity on the boundary may keep one more or less */
        assert_true(s->use_min_similarity);
        assert_true(n_hits + 1 >= want && n_hits <= want + 1);
    }
    for (uint32_t i = 0; i < n_hits && i < want; i++) {
        if (fabs(hits[i].score - ref[i].score) > tol)
            fail_msg("hit %u: row %llu score %.7f, reference row %llu %.7f",
                     i, (unsigned long long)hits[i].row, hits[i].score,
                     (unsigned long long)ref[i].row, ref[i].score);
        if (i > 0)
            assert_true(hits[i].score <= hits[i - 1].score);
        /* the row's own score matches the reference */
        const float *v = semd_model_row(m, hits[i].row);
        uint64_t j;
        for (j = 0; j < n && ref[j].row != hits[i].row; j++)
            ;
        assert_true(j < n);
        assert_true(fabs(ref[j].score - hits[i].score) <= tol);
        (void)v;
    }
    free(ref);
}

static void
random_query(float *q, uint32_t dims, uint64_t *seed)
{
    for (uint32_t i = 0; i < dims; i++)
        q[i] = t_rand(seed);
}

static void
test_exact_random(void **state)
{
    (void)state;
    const uint32_t dims = 37;
    struct semd_model *m = open_model(t_random_model("ex.semd", 3000, dims, 7));
    struct semd_index *ix = open_index(m, NULL);
    assert_true(semd_index_is_exact(ix));
    assert_string_equal(semd_index_factory(ix), "Flat");
    assert_ptr_equal(semd_index_model(ix), m);
    uint64_t seed = 99;
    float q[37];
    struct semd_hit hits[64];
    for (int t = 0; t < 50; t++) {
        random_query(q, dims, &seed);
        struct semd_search s = {0};
        s.k = 1 + (uint32_t)(t % 40);
        uint32_t n = 0;
        struct semd_err err = {0};
        assert_int_equal(semd_index_search(ix, q, &s, hits, &n, &err), 0);
        check_hits(m, q, &s, hits, n, 1e-5);
    }
    /* a model row as the query finds itself first */
    struct semd_search s = {0};
    s.k = 5;
    uint32_t n = 0;
    assert_int_equal(semd_index_search(ix, semd_model_row(m, 1234), &s, hits,
                                       &n, NULL), 0);
    assert_int_equal(n, 5);
    assert_int_equal(hits[0].row, 1234);
    assert_float_equal(hits[0].score, 1.0, 1e-5);
    semd_index_close(ix);
    semd_model_close(m);
}

static void
test_exact_options(void **state)
{
    (void)state;
    const uint32_t dims = 16;
    struct semd_model *m = open_model(t_random_model("opt.semd", 500, dims, 3));
    struct semd_index *ix = open_index(m, "Flat");
    uint64_t seed = 5;
    float q[16];
    struct semd_hit *hits = malloc(600 * sizeof *hits);
    uint64_t excl[20];
    for (int t = 0; t < 30; t++) {
        random_query(q, dims, &seed);
        struct semd_search s = {0};
        s.k = 10;
        if (t % 3 == 0)
            s.restrict_rows = 50 + (uint64_t)t;
        if (t % 2 == 0) {
            for (int e = 0; e < 20; e++)
                excl[e] = (uint64_t)(e * 7 + t) % 60;
            s.exclude = excl;
            s.n_exclude = 20;
        }
        if (t % 5 == 0) {
            s.use_min_similarity = 1;
            s.min_similarity = 0.3f;
        }
        uint32_t n = 0;
        struct semd_err err = {0};
        assert_int_equal(semd_index_search(ix, q, &s, hits, &n, &err), 0);
        check_hits(m, q, &s, hits, n, 1e-5);
        for (uint32_t i = 0; i < n; i++) {
            for (size_t e = 0; e < s.n_exclude; e++)
                assert_true(hits[i].row != excl[e]);
            if (s.restrict_rows)
                assert_true(hits[i].row < s.restrict_rows);
            if (s.use_min_similarity)
                assert_true(hits[i].score >= s.min_similarity);
        }
    }
    /* k beyond the rows returns every row */
    struct semd_search s = {0};
    s.k = 600;
    uint32_t n = 0;
    assert_int_equal(semd_index_search(ix, q, &s, hits, &n, NULL), 0);
    assert_int_equal(n, 500);
    check_hits(m, q, &s, hits, n, 1e-5);
    s.restrict_rows = 7;
    assert_int_equal(semd_index_search(ix, q, &s, hits, &n, NULL), 0);
    assert_int_equal(n, 7);
    /* min_similarity above every score: nothing */
    s.restrict_rows = 0;
    s.use_min_similarity = 1;
    s.min_similarity = 1.5f;
    assert_int_equal(semd_index_search(ix, q, &s, hits, &n, NULL), 0);
    assert_int_equal(n, 0);
    free(hits);
    semd_index_close(ix);
    semd_model_close(m);
}


/* Rows that stress the 8-bit bound: zero rows, rows with one huge
 * component, exact duplicates (ties), tiny rows, near-copies of the query
 * direction. */
static const char *
adversarial_model(const char *name, uint64_t rows, uint32_t dims)
{
    const char *path = t_path(name);
    struct semd_writer *w;
    struct semd_err err = {0};
    struct semd_writer_opts o = {"test", name, SEMD_MODEL_COUNTS_ARE_RANKS};
    if (semd_writer_open(&w, path, dims, &o, &err) != 0)
        fail_msg("writer_open: %s", err.msg);
    float *v = malloc(dims * sizeof *v), *dup = malloc(dims * sizeof *v);
    uint64_t seed = 11;
    for (uint32_t i = 0; i < dims; i++)
        dup[i] = t_rand(&seed);
    for (uint64_t r = 0; r < rows; r++) {
        for (uint32_t i = 0; i < dims; i++)
            v[i] = t_rand(&seed);
        switch (r % 7) {
        case 0: /* zero row */
            memset(v, 0, dims * sizeof *v);
            break;
        case 1: /* one huge component */
            v[r % dims] = 1e6f;
            break;
        case 2: /* the same row again and again: ties */
            memcpy(v, dup, dims * sizeof *v);
            break;
        case 3: /* tiny */
            for (uint32_t i = 0; i < dims; i++)
                v[i] *= 1e-30f;
            break;
        case 4: /* the shared direction, slightly perturbed */
            for (uint32_t i = 0; i < dims; i++)
                v[i] = dup[i] + 1e-2f * v[i];
            break;
        }
        char word[32];
        int n = snprintf(word, sizeof word, "a%llu", (unsigned long long)r);
        if (semd_writer_add(w, word, (size_t)n, v, 0, &err) != 0)
            fail_msg("writer_add: %s", err.msg);
    }
    free(v);
    free(dup);
    if (semd_writer_finish(w, &err) != 0)
        fail_msg("writer_finish: %s", err.msg);
    return path;
}

static void
test_exact_adversarial(void **state)
{
    (void)state;
    const uint32_t dims = 45; /* not a multiple of 32: tails in the kernel */
    struct semd_model *m = open_model(adversarial_model("adv.semd", 2001,
                                                        dims));
    struct semd_index *ix = open_index(m, NULL);
    float q[45];
    struct semd_hit hits[40], hits2[40];
    uint64_t seed = 17;
    for (int simd = 1; simd >= 0; simd--) {
        index_set_simd(ix, simd);
        for (int t = 0; t < 40; t++) {
            if (t % 4 == 0)
                memcpy(q, semd_model_row(m, 2), sizeof q); /* the dup row */
            else if (t % 4 == 1)
                memcpy(q, semd_model_row(m, 1 + 7 * (uint64_t)t), sizeof q);
            else
                random_query(q, dims, &seed);
            struct semd_search s = {0};
            s.k = 1 + (uint32_t)t % 37;
            uint32_t n = 0;
            assert_int_equal(semd_index_search(ix, q, &s, hits, &n, NULL), 0);
            check_hits(m, q, &s, hits, n, 1e-5);
            /* duplicated rows tie exactly: lower row first */
            for (uint32_t i = 1; i < n; i++)
                if (hits[i].score == hits[i - 1].score)
                    assert_true(hits[i].row > hits[i - 1].row);
            if (t % 4 == 0) {
                assert_true(n >= 1);
                assert_int_equal(hits[0].row, 2);
                if (n >= 2)
                    assert_int_equal(hits[1].row, 9);
            }
        }
    }
    /* both kernels give the same answer */
    index_set_simd(ix, 1);
    for (int t = 0; t < 10; t++) {
        random_query(q, dims, &seed);
        struct semd_search s = {0};
        s.k = 25;
        uint32_t n1 = 0, n2 = 0;
        index_set_simd(ix, 1);
        assert_int_equal(semd_index_search(ix, q, &s, hits, &n1, NULL), 0);
        index_set_simd(ix, 0);
        assert_int_equal(semd_index_search(ix, q, &s, hits2, &n2, NULL), 0);
        assert_int_equal(n1, n2);
        for (uint32_t i = 0; i < n1; i++) {
            assert_int_equal(hits[i].row, hits2[i].row);
            assert_true(hits[i].score == hits2[i].score);
        }
    }
    semd_index_close(ix);
    semd_model_close(m);
}


/* The batch path (one SGEMM) agrees with single searches and the
 * reference, with per-query options. */
static void
test_batch(void **state)
{
    (void)state;
    const uint32_t dims = 29;
    struct semd_model *m = open_model(t_random_model("batch.semd", 2500,
                                                     dims, 8));
    struct semd_index *ix = open_index(m, NULL);
    enum { NQ = 300, KMAX = 30 };
    float *q = malloc(NQ * dims * sizeof *q);
    struct semd_search *s = calloc(NQ, sizeof *s);
    struct semd_hit *hits = malloc(NQ * KMAX * sizeof *hits), one[KMAX];
    uint32_t *n = calloc(NQ, sizeof *n);
    uint64_t excl[NQ];
    uint64_t seed = 23;
    for (int simd = 1; simd >= 0; simd--) {
        index_set_simd(ix, simd);
        for (size_t i = 0; i < NQ; i++) {
            random_query(q + i * dims, dims, &seed);
            memset(&s[i], 0, sizeof s[i]);
            s[i].k = 1 + (uint32_t)(i % KMAX);
            if (i % 3 == 1)
                s[i].restrict_rows = 100 + i;
            if (i % 4 == 2) {
                excl[i] = i % 50;
                s[i].exclude = &excl[i];
                s[i].n_exclude = 1;
            }
            if (i % 5 == 3) {
                s[i].use_min_similarity = 1;
                s[i].min_similarity = 0.4f;
            }
        }
        struct semd_err err = {0};
        assert_int_equal(semd_index_search_batch(ix, q, NQ, s, hits, n, &err),
                         0);
        for (size_t i = 0; i < NQ; i++) {
            check_hits(m, q + i * dims, &s[i], hits + i * KMAX, n[i], 1e-5);
            uint32_t n1 = 0;
            assert_int_equal(semd_index_search(ix, q + i * dims, &s[i], one,
                                               &n1, NULL), 0);
            assert_true(n1 + 1 >= n[i] && n[i] + 1 >= n1);
            for (uint32_t j = 0; j < n1 && j < n[i]; j++)
                assert_true(fabsf(one[j].score - hits[i * KMAX + j].score)
                            <= 1e-5f);
        }
        /* a small batch takes the single-query path */
        assert_int_equal(semd_index_search_batch(ix, q, 5, s, hits, n, &err),
                         0);
        for (size_t i = 0; i < 5; i++)
            check_hits(m, q + i * dims, &s[i], hits + i * KMAX, n[i], 1e-5);
        /* a bad query names itself */
        memset(q + 77 * dims, 0, dims * sizeof *q);
        assert_int_equal(semd_index_search_batch(ix, q, NQ, s, hits, n, &err),
                         SEMD_EINVAL);
        assert_non_null(strstr(err.msg, "query 77"));
    }
    free(q);
    free(s);
    free(hits);
    free(n);
    semd_index_close(ix);
    semd_model_close(m);
}


/* Small batches (2 .. 15 queries, one shared scan of the 8-bit rows) give
 * exactly the single searches' answers, on random models of awkward sizes
 * and on the fixture, with the scalar and AVX2 kernels. */
static void
check_small_batches(struct semd_index *ix, const float *q, size_t nq_all,
                    struct semd_search *s)
{
    enum { KMAX = 30 };
    uint32_t dims = semd_model_dims(semd_index_model(ix));
    struct semd_hit *hits = malloc(15 * KMAX * sizeof *hits), one[KMAX];
    uint32_t n[15];
    for (size_t nq = 2; nq <= 15; nq++) {
        for (size_t q0 = 0; q0 + nq <= nq_all; q0 += 17) {
            struct semd_err err = {0};
            assert_int_equal(semd_index_search_batch(ix, q + q0 * dims, nq,
                                                     s + q0, hits, n, &err),
                             0);
            uint32_t kmax = 0;
            for (size_t i = 0; i < nq; i++)
                kmax = s[q0 + i].k > kmax ? s[q0 + i].k : kmax;
            for (size_t i = 0; i < nq; i++) {
                uint32_t n1 = 0;
                assert_int_equal(semd_index_search(ix, q + (q0 + i) * dims,
                                                   &s[q0 + i], one, &n1, NULL),
                                 0);
                check_hits(semd_index_model(ix), q + (q0 + i) * dims,
                           &s[q0 + i], hits + i * kmax, n[i], 1e-5);
                assert_int_equal(n[i], n1);
                for (uint32_t j = 0; j < n1; j++) {
                    assert_int_equal(hits[i * kmax + j].row, one[j].row);
                    assert_true(hits[i * kmax + j].score == one[j].score);
                }
            }
        }
    }
    free(hits);
}

static void
test_small_batch(void **state)
{
    (void)state;
    const uint32_t dims_list[] = {29, 100};
    const uint64_t rows_list[] = {2503, 1029};
    enum { NQ = 60 };
    for (int t = 0; t < 2; t++) {
        uint32_t dims = dims_list[t];
        char name[32];
        snprintf(name, sizeof name, "small%d.semd", t);
        struct semd_model *m = open_model(t_random_model(name, rows_list[t],
                                                         dims, 40 + t));
        struct semd_index *ix = open_index(m, NULL);
        float *q = malloc(NQ * dims * sizeof *q);
        struct semd_search s[NQ];
        uint64_t excl[NQ][2];
        uint64_t seed = 91 + t;
        memset(s, 0, sizeof s);
        for (size_t i = 0; i < NQ; i++) {
            random_query(q + i * dims, dims, &seed);
            s[i].k = 1 + (uint32_t)(i * 7 % 30);
            if (i % 3 == 1)
                s[i].restrict_rows = 100 + 13 * i;
            if (i % 4 == 2) {
                excl[i][0] = i % 50;
                excl[i][1] = 3 * i;
                s[i].exclude = excl[i];
                s[i].n_exclude = 2;
            }
            if (i % 5 == 3) {
                s[i].use_min_similarity = 1;
                s[i].min_similarity = 0.3f;
            }
        }
        for (int simd = 1; simd >= 0; simd--) {
            index_set_simd(ix, simd);
            check_small_batches(ix, q, NQ, s);
        }
        /* a bad query in a small batch names itself */
        memset(q + 3 * dims, 0, dims * sizeof *q);
        struct semd_hit hits[8 * 30];
        uint32_t n[8];
        struct semd_err err = {0};
        assert_int_equal(semd_index_search_batch(ix, q, 8, s, hits, n, &err),
                         SEMD_EINVAL);
        assert_non_null(strstr(err.msg, "query 3"));
        free(q);
        semd_index_close(ix);
        semd_model_close(m);
    }
    /* the fixture: words' own rows as queries, themselves excluded */
    struct semd_model *m = open_model(t_fixture());
    struct semd_index *ix = open_index(m, NULL);
    uint32_t dims = semd_model_dims(m);
    enum { NF = 40 };
    float *q = malloc(NF * dims * sizeof *q);
    struct semd_search s[NF];
    uint64_t qrow[NF];
    memset(s, 0, sizeof s);
    for (int i = 0; i < NF; i++) {
        qrow[i] = (uint64_t)(i * 487 + 11) % semd_model_rows(m);
        memcpy(q + i * dims, semd_model_row(m, qrow[i]), dims * sizeof *q);
        s[i].k = 10;
        s[i].exclude = &qrow[i];
        s[i].n_exclude = 1;
    }
    check_small_batches(ix, q, NF, s);
    free(q);
    semd_index_close(ix);
    semd_model_close(m);
}

/* Recall@k of hits against the exact top k. */
static double
recall(const struct semd_hit *exact, uint32_t ne, const struct semd_hit *got,
       uint32_t ng)
{
    uint32_t found = 0;
    for (uint32_t i = 0; i < ne; i++)
        for (uint32_t j = 0; j < ng; j++)
            if (got[j].row == exact[i].row) {
                found++;
                break;
            }
    return ne ? (double)found / ne : 1.0;
}

static double
mean_recall(struct semd_index *ex, struct semd_index *ap,
            const struct semd_model *m, const struct semd_search *base,
            int nq)
{
    uint32_t dims = semd_model_dims(m);
    float *q = malloc(dims * sizeof *q);
    uint64_t seed = 31;
    double sum = 0;
    for (int t = 0; t < nq; t++) {
        random_query(q, dims, &seed);
        struct semd_hit a[10], b[10];
        uint32_t na = 0, nb = 0;
        struct semd_search s = *base;
        struct semd_err err = {0};
        assert_int_equal(semd_index_search(ex, q, &s, a, &na, &err), 0);
        if (semd_index_search(ap, q, &s, b, &nb, &err) != 0)
            fail_msg("approximate search: %s", err.msg);
        for (uint32_t i = 0; i < nb; i++) {
            assert_true(s.restrict_rows == 0 || b[i].row < s.restrict_rows);
            for (size_t e = 0; e < s.n_exclude; e++)
                assert_true(b[i].row != s.exclude[e]);
        }
        sum += recall(a, na, b, nb);
    }
    free(q);
    return sum / nq;
}

static struct semd_index *
open_approx(const struct semd_model *m, const char *factory, int rebuild)
{
    struct semd_index *ix = NULL;
    struct semd_err err = {0};
    struct semd_index_opts o = {0};
    o.factory = factory;
    o.rebuild = rebuild;
    if (semd_index_open(&ix, m, &o, &err) != 0)
        fail_msg("index_open %s: %s", factory, err.msg);
    return ix;
}

static void
check_approx(const char *factory, const char *file)
{
    const uint32_t dims = 24;
    const char *path = t_random_model("ap.semd", 4000, dims, 12);
    struct semd_model *m = open_model(path);
    struct semd_index *ex = open_index(m, NULL);
    struct semd_index *ap = open_approx(m, factory, 0);
    assert_false(semd_index_is_exact(ap));
    assert_string_equal(semd_index_factory(ap), factory);
    assert_false(semd_index_loaded(ap));
    assert_non_null(strstr(semd_index_note(ap), "no saved index"));
    /* saved beside the model, named after the factory */
    char want[512];
    snprintf(want, sizeof want, "%s.%s", path, file);
    assert_string_equal(semd_index_path(ap), want);
    struct stat st1, st2;
    assert_int_equal(stat(want, &st1), 0);

    struct semd_search s = {0};
    s.k = 10;
    double r = mean_recall(ex, ap, m, &s, 50);
    assert_true(r >= 0.9);
    /* reranked scores are the exact cosines */
    s.rerank = 1;
    float q[24];
    uint64_t seed = 4;
    random_query(q, dims, &seed);
    struct semd_hit a[10], b[10];
    uint32_t na, nb;
    assert_int_equal(semd_index_search(ex, q, &s, a, &na, NULL), 0);
    assert_int_equal(semd_index_search(ap, q, &s, b, &nb, NULL), 0);
    for (uint32_t i = 0; i < nb; i++)
        for (uint32_t j = 0; j < na; j++)
            if (a[j].row == b[i].row)
                assert_true(fabsf(a[j].score - b[i].score) <= 1e-6f);
    /* restrict and exclusions are honoured */
    uint64_t excl[3] = {a[0].row, a[1].row, 5};
    s.exclude = excl;
    s.n_exclude = 3;
    s.restrict_rows = 1000;
    r = mean_recall(ex, ap, m, &s, 30);
    assert_true(r >= 0.6);
    /* search parameters per query */
    s.n_exclude = 0;
    s.restrict_rows = 0;
    s.ef_search = 256;
    s.nprobe = 64;
    assert_true(mean_recall(ex, ap, m, &s, 20) >= 0.9);
    semd_index_close(ap);

    /* reopened: loaded, not rebuilt, file untouched */
    ap = open_approx(m, factory, 0);
    assert_true(semd_index_loaded(ap));
    assert_string_equal(semd_index_note(ap), "");
    assert_int_equal(stat(want, &st2), 0);
    assert_true(st1.st_mtim.tv_sec == st2.st_mtim.tv_sec
                && st1.st_mtim.tv_nsec == st2.st_mtim.tv_nsec);
    s.ef_search = 0;
    s.nprobe = 0;
    s.rerank = 0;
    assert_true(mean_recall(ex, ap, m, &s, 50) >= 0.9);
    semd_index_close(ap);

    /* asked to rebuild */
    ap = open_approx(m, factory, 1);
    assert_false(semd_index_loaded(ap));
    assert_non_null(strstr(semd_index_note(ap), "rebuild requested"));
    semd_index_close(ap);
    semd_index_close(ex);
    semd_model_close(m);

    /* another model at the same path: the saved index no longer matches */
    path = t_random_model("ap.semd", 3000, dims, 13);
    m = open_model(path);
    ap = open_approx(m, factory, 0);
    assert_false(semd_index_loaded(ap));
    assert_non_null(strstr(semd_index_note(ap), "another model"));
    semd_index_close(ap);
    semd_model_close(m);
}

static void
test_hnsw(void **state)
{
    (void)state;
    check_approx("HNSW32", "HNSW32.faiss");
}

static void
test_ivf(void **state)
{
    (void)state;
    check_approx("IVF16,Flat", "IVF16_Flat.faiss");
}

struct worker {
    struct semd_index *ix;
    const float *q;
    uint32_t dims;
    const struct semd_hit *want; /* [3][nq][10] */
    int nq, bad;
};

static void *
search_worker(void *arg)
{
    struct worker *w = arg;
    static const uint32_t efs[3] = {16, 40, 128};
    for (int it = 0; it < 3 * w->nq; it++) {
        int e = (it + w->nq) % 3, i = it % w->nq;
        struct semd_search s = {0};
        s.k = 10;
        s.ef_search = efs[e];
        struct semd_hit h[10];
        uint32_t n = 0;
        if (semd_index_search(w->ix, w->q + (size_t)i * w->dims, &s, h, &n,
                              NULL) != 0) {
            w->bad++;
            continue;
        }
        const struct semd_hit *ref = w->want + ((size_t)e * w->nq + i) * 10;
        for (uint32_t j = 0; j < n; j++)
            if (h[j].row != ref[j].row)
                w->bad++;
    }
    return NULL;
}

/* Threads searching one HNSW index with different efSearch values get the
 * answers each value gives alone. */
static void
test_concurrent_params(void **state)
{
    (void)state;
    const uint32_t dims = 16;
    struct semd_model *m = open_model(t_random_model("cc.semd", 3000, dims,
                                                     21));
    struct semd_index *ap = open_approx(m, "HNSW16", 0);
    enum { NQ = 40 };
    float *q = malloc(NQ * dims * sizeof *q);
    struct semd_hit *want = malloc(3 * NQ * 10 * sizeof *want);
    uint64_t seed = 8;
    for (int i = 0; i < NQ; i++)
        random_query(q + i * dims, dims, &seed);
    static const uint32_t efs[3] = {16, 40, 128};
    for (int e = 0; e < 3; e++)
        for (int i = 0; i < NQ; i++) {
            struct semd_search s = {0};
            s.k = 10;
            s.ef_search = efs[e];
            uint32_t n;
            assert_int_equal(semd_index_search(ap, q + i * dims, &s,
                                               want + (e * NQ + i) * 10, &n,
                                               NULL), 0);
            assert_int_equal(n, 10);
        }
    pthread_t th[4];
    struct worker w[4];
    for (int t = 0; t < 4; t++) {
        w[t] = (struct worker){ap, q, dims, want, NQ, 0};
        assert_int_equal(pthread_create(&th[t], NULL, search_worker, &w[t]),
                         0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(w[t].bad, 0);
    }
    free(q);
    free(want);
    semd_index_close(ap);
    semd_model_close(m);
}

/* A batch of approximate queries with mixed k, efSearch, nprobe,
 * exclusions, restriction and reranking gets, query by query, the answers
 * each gives alone (the batch groups queries into shared FAISS calls). */
static void
check_approx_batch(const char *factory)
{
    const uint32_t dims = 16;
    struct semd_model *m = open_model(t_random_model("ab.semd", 3000, dims,
                                                     23));
    struct semd_index *ap = open_approx(m, factory, 0);
    enum { NQ = 37, K = 10 };
    static const uint32_t efs[3] = {16, 0, 128};
    float *q = malloc(NQ * dims * sizeof *q);
    struct semd_search s[NQ];
    uint64_t excl[NQ][2];
    struct semd_hit one[K], *hits = malloc(NQ * K * sizeof *hits);
    uint32_t n[NQ], n1;
    uint64_t seed = 9;
    memset(s, 0, sizeof s);
    for (int i = 0; i < NQ; i++) {
        random_query(q + i * dims, dims, &seed);
        s[i].k = i % 4 == 1 ? 5 : K;
        s[i].ef_search = efs[i % 3];
        s[i].nprobe = efs[(i + 1) % 3] / 8;
        if (i % 5 == 2) {
            excl[i][0] = (uint64_t)i * 7;
            excl[i][1] = (uint64_t)i * 11;
            s[i].exclude = excl[i];
            s[i].n_exclude = 2;
        }
        if (i % 3 == 2 && i % 2)
            s[i].restrict_rows = 1500;
        s[i].rerank = i % 7 == 3;
    }
    assert_int_equal(semd_index_search_batch(ap, q, NQ, s, hits, n, NULL),
                     0);
    for (int i = 0; i < NQ; i++) {
        assert_int_equal(semd_index_search(ap, q + i * dims, &s[i], one, &n1,
                                           NULL), 0);
        assert_int_equal(n[i], n1);
        assert_int_equal(n1, s[i].k);
        for (uint32_t j = 0; j < n1; j++) {
            assert_int_equal(hits[i * K + j].row, one[j].row);
            assert_true(hits[i * K + j].score == one[j].score);
            if (s[i].restrict_rows)
                assert_true(one[j].row < s[i].restrict_rows);
            for (size_t x = 0; x < s[i].n_exclude; x++)
                assert_true(one[j].row != s[i].exclude[x]);
        }
    }
    /* a bad query fails the batch and names itself */
    struct semd_err err = {0};
    memset(q + 4 * dims, 0, dims * sizeof *q);
    assert_int_equal(semd_index_search_batch(ap, q, NQ, s, hits, n, &err),
                     SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "query 4"));
    free(q);
    free(hits);
    semd_index_close(ap);
    semd_model_close(m);
}

static void
test_approx_batch(void **state)
{
    (void)state;
    check_approx_batch("HNSW16");
    check_approx_batch("IVF16,Flat");
}

static void
test_approx_errors(void **state)
{
    (void)state;
    const uint32_t dims = 24;
    const char *path = t_random_model("err.semd", 500, dims, 2);
    struct semd_model *m = open_model(path);
    struct semd_index *ix = NULL;
    struct semd_err err = {0};
    struct semd_index_opts o = {0};

    o.factory = "NoSuchIndex99";
    assert_int_equal(semd_index_open(&ix, m, &o, &err), SEMD_EINDEX);
    assert_int_equal(err.code, SEMD_EINDEX);
    assert_non_null(strstr(err.msg, "NoSuchIndex99"));
    assert_null(ix);

    /* PQ7 needs dims divisible by 7 */
    o.factory = "IVF4,PQ7";
    assert_int_equal(semd_index_open(&ix, m, &o, &err), SEMD_EINDEX);
    assert_non_null(strstr(err.msg, "24 dims"));

    /* a saved index whose sidecar matches but whose content does not */
    o.factory = "HNSW8";
    assert_int_equal(semd_index_open(&ix, m, &o, &err), 0);
    char saved[512];
    snprintf(saved, sizeof saved, "%s", semd_index_path(ix));
    semd_index_close(ix);
    struct semd_model *m2 = open_model(t_random_model("err2.semd", 300, 12,
                                                      3));
    struct semd_index_opts o2 = {0};
    o2.factory = "HNSW8";
    o2.path = t_path("other.faiss");
    assert_int_equal(semd_index_open(&ix, m2, &o2, &err), 0);
    semd_index_close(ix);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", t_path("other.faiss"), saved);
    assert_int_equal(t_run(cmd, NULL), 0);
    ix = NULL;
    assert_int_equal(semd_index_open(&ix, m, &o, &err), SEMD_EINDEX);
    assert_non_null(strstr(err.msg, "12 dimensions"));
    assert_null(ix);
    semd_model_close(m2);

    /* a corrupt saved index is an error, not a crash */
    t_write_file(saved, "garbage", 7);
    assert_int_equal(semd_index_open(&ix, m, &o, &err), SEMD_EINDEX);
    assert_non_null(strstr(err.msg, "reading the saved index"));

    /* an unwritable place: built, usable, and the note says why unsaved */
    o.path = "/nonexistent-dir/x.faiss";
    assert_int_equal(semd_index_open(&ix, m, &o, &err), 0);
    assert_non_null(strstr(semd_index_note(ix), "not saved"));
    float q[24] = {1};
    struct semd_search s = {0};
    s.k = 3;
    struct semd_hit h[3];
    uint32_t n = 0;
    assert_int_equal(semd_index_search(ix, q, &s, h, &n, NULL), 0);
    assert_int_equal(n, 3);
    semd_index_close(ix);
    semd_model_close(m);
}


/* The real fixture (20k GloVe words): exact search equals the reference,
 * batch equals single, and the neighbours make sense. */
static void
test_fixture(void **state)
{
    (void)state;
    struct semd_model *m = open_model(t_fixture());
    struct semd_index *ix = open_index(m, NULL);
    uint32_t dims = semd_model_dims(m);
    uint64_t rows = semd_model_rows(m);
    enum { NQ = 40 };
    float *q = malloc(NQ * dims * sizeof *q);
    struct semd_search s[NQ];
    struct semd_hit hits[NQ * 10], one[10];
    uint32_t n[NQ];
    uint64_t qrow[NQ];
    memset(s, 0, sizeof s);
    for (int i = 0; i < NQ; i++) {
        qrow[i] = (uint64_t)(i * 491 + 7) % rows;
        memcpy(q + i * dims, semd_model_row(m, qrow[i]), dims * sizeof *q);
        s[i].k = 10;
        s[i].exclude = &qrow[i];
        s[i].n_exclude = 1;
        if (i % 2)
            s[i].restrict_rows = 5000;
    }
    assert_int_equal(semd_index_search_batch(ix, q, NQ, s, hits, n, NULL), 0);
    for (int i = 0; i < NQ; i++) {
        uint32_t n1 = 0;
        assert_int_equal(semd_index_search(ix, q + i * dims, &s[i], one, &n1,
                                           NULL), 0);
        check_hits(m, q + i * dims, &s[i], one, n1, 1e-5);
        check_hits(m, q + i * dims, &s[i], hits + i * 10, n[i], 1e-5);
    }
    uint64_t cat, dog;
    assert_int_equal(semd_model_lookup(m, "cat", 3, &cat), 0);
    assert_int_equal(semd_model_lookup(m, "dog", 3, &dog), 0);
    struct semd_search c = {0};
    c.k = 10;
    c.exclude = &cat;
    c.n_exclude = 1;
    uint32_t nc = 0;
    assert_int_equal(semd_index_search(ix, semd_model_row(m, cat), &c, one,
                                       &nc, NULL), 0);
    int found = 0;
    for (uint32_t i = 0; i < nc; i++)
        found |= one[i].row == dog;
    assert_true(found);
    free(q);
    semd_index_close(ix);
    semd_model_close(m);
}

static void
test_bad_arguments(void **state)
{
    (void)state;
    struct semd_model *m = open_model(t_random_model("bad.semd", 100, 8, 1));
    struct semd_index *ix = open_index(m, NULL);
    float q[8] = {0};
    struct semd_hit hits[4];
    uint32_t n = 0;
    struct semd_search s = {0};
    struct semd_err err = {0};
    s.k = 0;
    q[0] = 1;
    assert_int_equal(semd_index_search(ix, q, &s, hits, &n, &err),
                     SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "k must be"));
    s.k = 4;
    q[0] = 0;
    assert_int_equal(semd_index_search(ix, q, &s, hits, &n, &err),
                     SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "zero"));
    q[3] = NAN;
    assert_int_equal(semd_index_search(ix, q, &s, hits, &n, &err),
                     SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "component 3"));
    q[3] = 1;
    s.n_exclude = 3;
    assert_int_equal(semd_index_search(ix, q, &s, hits, &n, &err),
                     SEMD_EINVAL);
    semd_index_close(ix);
    semd_model_close(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_random),
        cmocka_unit_test(test_exact_options),
        cmocka_unit_test(test_exact_adversarial),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_small_batch),
        cmocka_unit_test(test_hnsw),
        cmocka_unit_test(test_ivf),
        cmocka_unit_test(test_concurrent_params),
        cmocka_unit_test(test_approx_batch),
        cmocka_unit_test(test_approx_errors),
        cmocka_unit_test(test_fixture),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
