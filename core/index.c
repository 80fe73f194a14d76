/*
 * index.c - nearest rows by cosine: exact search over the mapped model, and
 * approximate FAISS indexes. The only file that includes FAISS headers.
 *
 * Exact search never copies the matrix: it scores the mapped raw rows and
 * divides by the stored norms (scores are cosines with the unit query).
 * Ties are broken by the lower row, so results are deterministic.
 *
 * Threads: an index is immutable once open; searches may run from any
 * number of threads at once. Each search allocates its own scratch space.
 */
#include "semd.h"

#include "index.h"
#include "linalg.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct semd_index {
    const struct semd_model *m;
    char *factory;
    uint64_t rows;
    uint32_t dims;
    const float *matrix;
    float *inv_norms; /* 1 / norm of each row, 0 for a zero row */
    int exact;
};

/* ------------------------------------------------------------- top k */

/* A bounded min-heap of the best hits so far: the root is the worst kept
 * hit, so a candidate only has to beat the root. "Better" means a higher
 * score, or the same score and a lower row. */
struct topk {
    struct semd_hit *h;
    uint32_t n, k;
};

static int
worse(const struct semd_hit *a, const struct semd_hit *b)
{
    return a->score < b->score || (a->score == b->score && a->row > b->row);
}

static void
sift_down(struct topk *t, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < t->n && worse(&t->h[l], &t->h[w]))
            w = l;
        if (r < t->n && worse(&t->h[r], &t->h[w]))
            w = r;
        if (w == i)
            return;
        struct semd_hit tmp = t->h[i];
        t->h[i] = t->h[w];
        t->h[w] = tmp;
        i = w;
    }
}

static void
topk_push(struct topk *t, uint64_t row, float score)
{
    struct semd_hit c = {row, score};
    if (t->n < t->k) {
        uint32_t i = t->n++;
        t->h[i] = c;
        while (i > 0) {
            uint32_t p = (i - 1) / 2;
            if (!worse(&t->h[i], &t->h[p]))
                break;
            struct semd_hit tmp = t->h[i];
            t->h[i] = t->h[p];
            t->h[p] = tmp;
            i = p;
        }
        return;
    }
    if (!worse(&t->h[0], &c))
        return;
    t->h[0] = c;
    sift_down(t, 0);
}

/* The score a candidate must reach to enter: -inf until the heap is full. */
static float
topk_floor(const struct topk *t)
{
    return t->n < t->k ? -INFINITY : t->h[0].score;
}

static int
cmp_hit(const void *a, const void *b)
{
    const struct semd_hit *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* Sorts the kept hits best first into out; returns how many. */
static uint32_t
topk_finish(struct topk *t, struct semd_hit *out)
{
    qsort(t->h, t->n, sizeof *t->h, cmp_hit);
    if (out != t->h)
        memcpy(out, t->h, t->n * sizeof *out);
    return t->n;
}

/* ------------------------------------------------------ exclusions */

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* A sorted copy of a search's excluded rows, for binary search. */
struct excl {
    uint64_t *rows;
    size_t n;
};

static int
excl_init(struct excl *e, const struct semd_search *s)
{
    e->rows = NULL;
    e->n = 0;
    if (s->n_exclude == 0)
        return 0;
    e->rows = malloc(s->n_exclude * sizeof *e->rows);
    if (!e->rows)
        return SEMD_ENOMEM;
    memcpy(e->rows, s->exclude, s->n_exclude * sizeof *e->rows);
    qsort(e->rows, s->n_exclude, sizeof *e->rows, cmp_u64);
    e->n = s->n_exclude;
    return 0;
}

static int
excl_has(const struct excl *e, uint64_t row)
{
    size_t lo = 0, hi = e->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e->rows[mid] < row)
            lo = mid + 1;
        else if (e->rows[mid] > row)
            hi = mid;
        else
            return 1;
    }
    return 0;
}

/* ------------------------------------------------------- arguments */

static int
check_search(const struct semd_index *ix, const struct semd_search *s,
             struct semd_err *err)
{
    if (!s)
        return semd_err_set(err, SEMD_EINVAL, "search parameters missing");
    if (s->k < 1)
        return semd_err_set(err, SEMD_EINVAL, "k must be at least 1, got %u",
                            s->k);
    if (s->n_exclude > 0 && !s->exclude)
        return semd_err_set(err, SEMD_EINVAL,
                            "%zu excluded rows announced but none given",
                            s->n_exclude);
    if (s->use_min_similarity && isnan(s->min_similarity))
        return semd_err_set(err, SEMD_EINVAL, "min_similarity is not a number");
    (void)ix;
    return 0;
}

/* Copies query scaled to unit length into unit; fails on a zero or
 * non-finite vector. */
static int
unit_query(const struct semd_index *ix, const float *query, float *unit,
           struct semd_err *err)
{
    if (!query)
        return semd_err_set(err, SEMD_EINVAL, "query vector missing");
    for (uint32_t i = 0; i < ix->dims; i++)
        if (!isfinite(query[i]))
            return semd_err_set(err, SEMD_EINVAL,
                                "query component %u is not finite (%g)", i,
                                (double)query[i]);
    double n = linalg_norm(query, ix->dims);
    if (n == 0)
        return semd_err_set(err, SEMD_EINVAL, "query vector has length zero");
    if (!isfinite(n))
        return semd_err_set(err, SEMD_EINVAL, "query vector is too long");
    for (uint32_t i = 0; i < ix->dims; i++)
        unit[i] = (float)(query[i] / n);
    return 0;
}

static uint64_t
scan_rows(const struct semd_index *ix, const struct semd_search *s)
{
    if (s->restrict_rows == 0 || s->restrict_rows > ix->rows)
        return ix->rows;
    return s->restrict_rows;
}

/* ------------------------------------------------------- exact search */

/* Scores every row in [0, n) with one sgemv and keeps the top k. */
static int
exact_blas(const struct semd_index *ix, const float *unit,
           const struct semd_search *s, const struct excl *ex,
           struct semd_hit *hits, uint32_t *n_hits, struct semd_err *err)
{
    uint64_t n = scan_rows(ix, s);
    float *sc = malloc(n * sizeof *sc);
    struct semd_hit *heap = malloc(s->k * sizeof *heap);
    if (!sc || !heap) {
        free(sc);
        free(heap);
        return semd_err_set(err, SEMD_ENOMEM, "no memory for %llu scores",
                            (unsigned long long)n);
    }
    linalg_gemv(ix->matrix, n, ix->dims, unit, sc);
    struct topk t = {heap, 0, s->k};
    float lo = s->use_min_similarity ? s->min_similarity : -INFINITY;
    for (uint64_t r = 0; r < n; r++) {
        float v = sc[r] * ix->inv_norms[r];
        if (v < lo || v < topk_floor(&t))
            continue;
        if (ex->n && excl_has(ex, r))
            continue;
        topk_push(&t, r, v);
    }
    *n_hits = topk_finish(&t, hits);
    free(sc);
    free(heap);
    return 0;
}

int
semd_index_search(const struct semd_index *ix, const float *query,
                  const struct semd_search *s, struct semd_hit *hits,
                  uint32_t *n_hits, struct semd_err *err)
{
    if (!ix || !hits || !n_hits)
        return semd_err_set(err, SEMD_EINVAL, "index, hits or n_hits missing");
    int rc = check_search(ix, s, err);
    if (rc)
        return rc;
    float unit[ix->dims];
    if ((rc = unit_query(ix, query, unit, err)))
        return rc;
    struct excl ex;
    if (excl_init(&ex, s))
        return semd_err_set(err, SEMD_ENOMEM, "no memory for %zu exclusions",
                            s->n_exclude);
    rc = exact_blas(ix, unit, s, &ex, hits, n_hits, err);
    free(ex.rows);
    return rc;
}

int
semd_index_search_batch(const struct semd_index *ix, const float *queries,
                        size_t nq, const struct semd_search *s,
                        struct semd_hit *hits, uint32_t *n_hits,
                        struct semd_err *err)
{
    if (!ix || (nq && (!queries || !s || !hits || !n_hits)))
        return semd_err_set(err, SEMD_EINVAL,
                            "index, queries, parameters or hits missing");
    uint32_t kmax = 0;
    for (size_t q = 0; q < nq; q++) {
        int rc = check_search(ix, &s[q], err);
        if (rc)
            return rc;
        if (s[q].k > kmax)
            kmax = s[q].k;
    }
    for (size_t q = 0; q < nq; q++) {
        int rc = semd_index_search(ix, queries + q * ix->dims, &s[q],
                                   hits + q * kmax, &n_hits[q], err);
        if (rc)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------- life cycle */

static int
is_flat(const char *factory)
{
    return !factory || !*factory || strcmp(factory, "Flat") == 0;
}

int
semd_index_open(struct semd_index **out, const struct semd_model *m,
                const struct semd_index_opts *opts, struct semd_err *err)
{
    if (!out || !m)
        return semd_err_set(err, SEMD_EINVAL, "index or model missing");
    const char *factory = opts ? opts->factory : NULL;
    if (!is_flat(factory))
        return semd_err_set(err, SEMD_EINDEX,
                            "approximate index \"%s\" not available", factory);
    struct semd_index *ix = calloc(1, sizeof *ix);
    if (!ix)
        return semd_err_set(err, SEMD_ENOMEM, "no memory for an index");
    ix->m = m;
    ix->rows = semd_model_rows(m);
    ix->dims = semd_model_dims(m);
    ix->matrix = semd_model_matrix(m);
    ix->factory = strdup("Flat");
    ix->exact = 1;
    ix->inv_norms = malloc((ix->rows ? ix->rows : 1) * sizeof *ix->inv_norms);
    if (!ix->factory || !ix->inv_norms) {
        semd_index_close(ix);
        return semd_err_set(err, SEMD_ENOMEM, "no memory for an index");
    }
    const float *norms = semd_model_norms(m);
    for (uint64_t r = 0; r < ix->rows; r++)
        ix->inv_norms[r] = norms[r] > 0 ? 1.0f / norms[r] : 0.0f;
    *out = ix;
    return 0;
}

void
semd_index_close(struct semd_index *ix)
{
    if (!ix)
        return;
    free(ix->factory);
    free(ix->inv_norms);
    free(ix);
}

const char *
semd_index_factory(const struct semd_index *ix)
{
    return ix->factory;
}

int
semd_index_is_exact(const struct semd_index *ix)
{
    return ix->exact;
}

const struct semd_model *
semd_index_model(const struct semd_index *ix)
{
    return ix->m;
}
