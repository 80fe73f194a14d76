/*
 * query.c - queries on top of the index: neighbours of words, vectors and
 * expressions, similarities, analogies (3CosAdd and 3CosMul) with an
 * explanation, odd one out and rank.
 *
 * Semantics follow gensim 4.2 KeyedVectors so that answers can be checked
 * against it: a combination is the weighted mean of the terms' unit vectors
 * (raw vectors as given), normalised (most_similar); 3CosMul multiplies
 * cosines shifted to [0, 1] over the positive terms and divides by the
 * product over the negative ones plus 1e-6 (most_similar_cosmul). Where
 * gensim would silently drop a missing word or divide by zero, we fail
 * with a message instead: a missing word is never a zero vector.
 *
 * Invariants: outputs are written only on success (info is the exception:
 * it tells which words were missing). Ties between equal scores go to the
 * lower row, as in the index, so answers are deterministic.
 *
 * Threads: everything here only reads the model and the index; any number
 * of threads may query at once. Scratch space is per call.
 */
#include "semd.h"

#include "linalg.h"
#include "query.h"
#include "topk.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */

void
query_unit_row(const struct semd_model *m, uint64_t row, float *out)
{
    uint32_t d = semd_model_dims(m);
    const float *v = semd_model_row(m, row);
    float n = semd_model_norms(m)[row];
    float inv = n > 0 ? 1.0f / n : 0.0f;
    for (uint32_t i = 0; i < d; i++)
        out[i] = v[i] * inv;
}

/* Resolves every word term into info. On a miss, err lists every missing
 * word: "unknown words: \"foo\", \"bar\"". */
static int
resolve_all(const struct semd_model *m, const struct semd_term *t, size_t n,
            struct semd_term_info *info, struct semd_err *err)
{
    uint32_t dims = semd_model_dims(m);
    size_t missing = 0;
    char list[SEMD_ERR_MSG - 32];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        info[i].row = UINT64_MAX;
        info[i].n_tokens = 0;
        if (!t[i].word && !t[i].vec) {
            info[i].prov = SEMD_PROV_MISSING;
            return semd_err_set(err, SEMD_EINVAL,
                                "term %zu has neither a word nor a vector", i);
        }
        if (!t[i].word) {
            info[i].prov = SEMD_PROV_VECTOR;
            for (uint32_t j = 0; j < dims; j++)
                if (!isfinite(t[i].vec[j]))
                    return semd_err_set(err, SEMD_EINVAL,
                                        "component %u of vector term %zu is "
                                        "not finite (%g)",
                                        j, i, (double)t[i].vec[j]);
            continue;
        }
        if (semd_resolve_word(m, t[i].word, t[i].len, &info[i]) == 0)
            continue;
        if (missing++ == 0 || used + 8 < sizeof list) {
            int w = snprintf(list + used, sizeof list - used, "%s\"%.*s\"",
                             missing > 1 ? ", " : "",
                             (int)(t[i].len > 100 ? 100 : t[i].len),
                             t[i].word);
            if (w > 0)
                used = used + (size_t)w < sizeof list ? used + (size_t)w
                                                      : sizeof list - 1;
        }
    }
    if (missing)
        return semd_err_set(err, SEMD_ENOWORD, "unknown word%s: %s",
                            missing > 1 ? "s" : "", list);
    return 0;
}

/* Raw vector of a resolved term, in double: its row, the vector given,
 * or the mean of its tokens' rows. */
static void
term_raw(const struct semd_model *m, const struct semd_term *t,
         const struct semd_term_info *ti, double *out)
{
    uint32_t d = semd_model_dims(m);
    if (ti->prov == SEMD_PROV_TOKEN_MEAN) {
        memset(out, 0, d * sizeof *out);
        for (uint32_t k = 0; k < ti->n_tokens; k++) {
            const float *v = semd_model_row(m, ti->token_rows[k]);
            for (uint32_t j = 0; j < d; j++)
                out[j] += v[j];
        }
        for (uint32_t j = 0; j < d; j++)
            out[j] /= ti->n_tokens;
        return;
    }
    const float *v = ti->row != UINT64_MAX ? semd_model_row(m, ti->row)
                                           : t->vec;
    for (uint32_t j = 0; j < d; j++)
        out[j] = v[j];
}

/* Unit vector of a resolved term, in double. Fails on a zero vector. */
static int
term_unit(const struct semd_model *m, const struct semd_term *t,
          const struct semd_term_info *ti, size_t i, double *out,
          struct semd_err *err)
{
    uint32_t d = semd_model_dims(m);
    term_raw(m, t, ti, out);
    double s = 0;
    for (uint32_t j = 0; j < d; j++)
        s += out[j] * out[j];
    if (!(s > 0) || !isfinite(s)) {
        if (ti->prov != SEMD_PROV_VECTOR)
            return semd_err_set(err, SEMD_EINVAL,
                                "word \"%.*s\" has a zero vector",
                                (int)(t->len > 100 ? 100 : t->len), t->word);
        return semd_err_set(err, SEMD_EINVAL,
                            "vector term %zu has length zero or overflows", i);
    }
    double inv = 1.0 / sqrt(s);
    for (uint32_t j = 0; j < d; j++)
        out[j] *= inv;
    return 0;
}

static int
check_terms(const struct semd_term *terms, size_t n, struct semd_err *err)
{
    if (n == 0 || !terms)
        return semd_err_set(err, SEMD_EINVAL, "empty query: no terms");
    if (n > SEMD_MAX_TERMS)
        return semd_err_set(err, SEMD_EINVAL,
                            "too many terms: %zu, the limit is %d", n,
                            SEMD_MAX_TERMS);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(terms[i].weight))
            return semd_err_set(err, SEMD_EINVAL,
                                "weight of term %zu is not finite", i);
    return 0;
}

static int
check_k(const struct semd_model *m, const struct semd_search *s,
        struct semd_err *err)
{
    if (!s)
        return semd_err_set(err, SEMD_EINVAL, "search parameters missing");
    if (s->k < 1)
        return semd_err_set(err, SEMD_EINVAL, "k must be at least 1, got %u",
                            s->k);
    if (s->k > semd_model_rows(m))
        return semd_err_set(err, SEMD_EINVAL,
                            "k %u exceeds the vocabulary of %llu words", s->k,
                            (unsigned long long)semd_model_rows(m));
    return 0;
}

int
semd_combine(const struct semd_model *m, const struct semd_term *terms,
             size_t n_terms, float *out, struct semd_term_info *info,
             struct semd_err *err)
{
    if (!m || !out || !info)
        return semd_err_set(err, SEMD_EINVAL, "model, output or info missing");
    int rc = check_terms(terms, n_terms, err);
    if (rc)
        return rc;
    if ((rc = resolve_all(m, terms, n_terms, info, err)))
        return rc;
    uint32_t d = semd_model_dims(m);
    double *mean = calloc(2 * (size_t)d, sizeof *mean);
    if (!mean)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    double *u = mean + d, total = 0;
    for (size_t i = 0; i < n_terms; i++) {
        if ((rc = term_unit(m, &terms[i], &info[i], i, u, err)))
            goto out;
        /* raw vectors enter as given, words as unit vectors */
        const double w = terms[i].weight;
        if (info[i].prov == SEMD_PROV_VECTOR)
            for (uint32_t j = 0; j < d; j++)
                mean[j] += w * terms[i].vec[j];
        else
            for (uint32_t j = 0; j < d; j++)
                mean[j] += w * u[j];
        total += fabs(w);
    }
    if (total == 0) {
        rc = semd_err_set(err, SEMD_EINVAL,
                          "every term has weight 0: the query is empty");
        goto out;
    }
    double s = 0;
    for (uint32_t j = 0; j < d; j++)
        s += mean[j] * mean[j];
    if (!(sqrt(s) > 1e-6 * total) || !isfinite(s)) {
        rc = semd_err_set(err, SEMD_EINVAL,
                          "the terms cancel out: the query vector is zero");
        goto out;
    }
    double inv = 1.0 / sqrt(s);
    for (uint32_t j = 0; j < d; j++)
        out[j] = (float)(mean[j] * inv);
out:
    free(mean);
    return rc;
}

static size_t
add_row(uint64_t *ex, size_t k, uint64_t row)
{
    size_t j = 0;
    while (j < k && ex[j] != row)
        j++;
    if (j == k)
        ex[k++] = row;
    return k;
}

/* The caller's excluded rows plus the distinct input rows (every token of
 * a word made of tokens), in a new array (free it). */
static uint64_t *
with_inputs(const struct semd_search *s, const struct semd_term_info *info,
            size_t n_terms, int keep_inputs, size_t *n)
{
    uint64_t *ex = malloc((s->n_exclude + n_terms * SEMD_TERM_TOKENS + 1) *
                          sizeof *ex);
    if (!ex)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < s->n_exclude; i++)
        ex[k++] = s->exclude[i];
    for (size_t i = 0; i < n_terms && !keep_inputs; i++) {
        if (info[i].row != UINT64_MAX)
            k = add_row(ex, k, info[i].row);
        for (uint32_t t = 0; t < info[i].n_tokens && t < SEMD_TERM_TOKENS;
             t++)
            k = add_row(ex, k, info[i].token_rows[t]);
    }
    *n = k;
    return ex;
}

/* ----------------------------------------------------------- neighbours */

int
semd_neighbors(const struct semd_index *ix, const struct semd_term *terms,
               size_t n_terms, const struct semd_search *s, int keep_inputs,
               struct semd_hit *hits, uint32_t *n_hits,
               struct semd_term_info *info, struct semd_err *err)
{
    if (!ix || !hits || !n_hits || !info)
        return semd_err_set(err, SEMD_EINVAL, "index, hits or info missing");
    const struct semd_model *m = semd_index_model(ix);
    int rc = check_k(m, s, err);
    if (rc)
        return rc;
    float *q = malloc(semd_model_dims(m) * sizeof *q);
    if (!q)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    if ((rc = semd_combine(m, terms, n_terms, q, info, err))) {
        free(q);
        return rc;
    }
    size_t nex;
    uint64_t *ex = with_inputs(s, info, n_terms, keep_inputs, &nex);
    if (!ex) {
        free(q);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    struct semd_search s2 = *s;
    s2.exclude = ex;
    s2.n_exclude = nex;
    rc = semd_index_search(ix, q, &s2, hits, n_hits, err);
    free(ex);
    free(q);
    return rc;
}

int
semd_neighbors_batch(const struct semd_index *ix, struct semd_nquery *q,
                     size_t nq, struct semd_err *err)
{
    if (!ix || (nq && !q))
        return semd_err_set(err, SEMD_EINVAL, "index or queries missing");
    if (nq == 0)
        return 0;
    const struct semd_model *m = semd_index_model(ix);
    uint32_t d = semd_model_dims(m);
    float *vecs = malloc(nq * d * sizeof *vecs);
    struct semd_search *ss = calloc(nq, sizeof *ss);
    size_t *which = malloc(nq * sizeof *which);
    uint64_t **ex = calloc(nq, sizeof *ex);
    uint32_t *nh = malloc(nq * sizeof *nh);
    struct semd_hit *hits = NULL;
    int rc = 0;
    if (!vecs || !ss || !which || !ex || !nh) {
        rc = semd_err_set(err, SEMD_ENOMEM, "no memory for %zu queries", nq);
        goto out;
    }
    size_t nok = 0;
    uint32_t kmax = 1;
    for (size_t i = 0; i < nq; i++) {
        struct semd_nquery *x = &q[i];
        x->n_hits = 0;
        x->err.code = 0;
        x->err.msg[0] = '\0';
        if (!x->hits || !x->info) {
            x->rc = semd_err_set(&x->err, SEMD_EINVAL,
                                 "hits or info missing");
            continue;
        }
        if ((x->rc = check_k(m, &x->search, &x->err)))
            continue;
        if ((x->rc = semd_combine(m, x->terms, x->n_terms, vecs + nok * d,
                                  x->info, &x->err)))
            continue;
        size_t nex;
        ex[nok] = with_inputs(&x->search, x->info, x->n_terms,
                              x->keep_inputs, &nex);
        if (!ex[nok]) {
            x->rc = semd_err_set(&x->err, SEMD_ENOMEM, "out of memory");
            continue;
        }
        ss[nok] = x->search;
        ss[nok].exclude = ex[nok];
        ss[nok].n_exclude = nex;
        if (x->search.k > kmax)
            kmax = x->search.k;
        which[nok++] = i;
    }
    if (nok == 0)
        goto out;
    hits = malloc(nok * kmax * sizeof *hits);
    if (!hits) {
        rc = semd_err_set(err, SEMD_ENOMEM, "no memory for %zu x %u hits",
                          nok, kmax);
        goto out;
    }
    rc = semd_index_search_batch(ix, vecs, nok, ss, hits, nh, err);
    if (rc)
        goto out;
    for (size_t j = 0; j < nok; j++) {
        struct semd_nquery *x = &q[which[j]];
        memcpy(x->hits, hits + j * kmax, nh[j] * sizeof *hits);
        x->n_hits = nh[j];
    }
out:
    if (ex)
        for (size_t i = 0; i < nq; i++)
            free(ex[i]);
    free(ex);
    free(hits);
    free(nh);
    free(which);
    free(ss);
    free(vecs);
    return rc;
}

/* --------------------------------------------------------- similarities */

static double
dot_d(const double *a, const double *b, uint32_t d)
{
    double s = 0;
    for (uint32_t i = 0; i < d; i++)
        s += a[i] * b[i];
    return s;
}

int
semd_similarity(const struct semd_model *m, const struct semd_term *a,
                const struct semd_term *b, float *out,
                struct semd_term_info *info, struct semd_err *err)
{
    if (!m || !a || !b || !out || !info)
        return semd_err_set(err, SEMD_EINVAL, "model, terms or output missing");
    struct semd_term t[2] = {*a, *b};
    int rc = resolve_all(m, t, 2, info, err);
    if (rc)
        return rc;
    uint32_t d = semd_model_dims(m);
    double *u = malloc(2 * (size_t)d * sizeof *u);
    if (!u)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    if (!(rc = term_unit(m, &t[0], &info[0], 0, u, err)) &&
        !(rc = term_unit(m, &t[1], &info[1], 1, u + d, err)))
        *out = (float)dot_d(u, u + d, d);
    free(u);
    return rc;
}

/* Sum of the raw vectors of a term set (gensim get_mean_vector with
 * pre_normalize=False; the division by the count cancels out). */
static void
raw_sum(const struct semd_model *m, const struct semd_term *t,
        const struct semd_term_info *info, size_t n, double *out,
        double *scratch)
{
    uint32_t d = semd_model_dims(m);
    memset(out, 0, d * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        term_raw(m, &t[i], &info[i], scratch);
        for (uint32_t j = 0; j < d; j++)
            out[j] += scratch[j];
    }
}

int
semd_n_similarity(const struct semd_model *m, const struct semd_term *a,
                  size_t na, const struct semd_term *b, size_t nb, float *out,
                  struct semd_term_info *info, struct semd_err *err)
{
    if (!m || !out || !info)
        return semd_err_set(err, SEMD_EINVAL, "model, output or info missing");
    if (na == 0 || nb == 0 || !a || !b)
        return semd_err_set(err, SEMD_EINVAL,
                            "both word sets need at least one term (got %zu "
                            "and %zu)",
                            na, nb);
    if (na > SEMD_MAX_TERMS || nb > SEMD_MAX_TERMS)
        return semd_err_set(err, SEMD_EINVAL,
                            "too many terms: the limit is %d a set",
                            SEMD_MAX_TERMS);
    /* resolve both sets before failing, so every missing word is named */
    struct semd_term all[2 * SEMD_MAX_TERMS];
    memcpy(all, a, na * sizeof *a);
    memcpy(all + na, b, nb * sizeof *b);
    int rc = resolve_all(m, all, na + nb, info, err);
    if (rc)
        return rc;
    uint32_t d = semd_model_dims(m);
    double *s = malloc(3 * (size_t)d * sizeof *s);
    if (!s)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    raw_sum(m, a, info, na, s, s + 2 * d);
    raw_sum(m, b, info + na, nb, s + d, s + 2 * d);
    double n1 = sqrt(dot_d(s, s, d)), n2 = sqrt(dot_d(s + d, s + d, d));
    if (!(n1 > 0) || !(n2 > 0))
        rc = semd_err_set(err, SEMD_EINVAL,
                          "the %s word set sums to a zero vector",
                          n1 > 0 ? "second" : "first");
    else
        *out = (float)(dot_d(s, s + d, d) / (n1 * n2));
    free(s);
    return rc;
}

int
semd_odd_one_out(const struct semd_model *m, const struct semd_term *terms,
                 size_t n_terms, size_t *odd, float *sims,
                 struct semd_term_info *info, struct semd_err *err)
{
    if (!m || !odd || !info)
        return semd_err_set(err, SEMD_EINVAL, "model, output or info missing");
    int rc = check_terms(terms, n_terms, err);
    if (rc)
        return rc;
    if (n_terms < 2)
        return semd_err_set(err, SEMD_EINVAL,
                            "odd one out needs at least 2 terms, got %zu",
                            n_terms);
    if ((rc = resolve_all(m, terms, n_terms, info, err)))
        return rc;
    uint32_t d = semd_model_dims(m);
    double *u = malloc((n_terms + 1) * d * sizeof *u);
    double *c = malloc(n_terms * sizeof *c);
    if (!u || !c) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    double *mean = u + n_terms * d;
    memset(mean, 0, d * sizeof *mean);
    for (size_t i = 0; i < n_terms; i++) {
        if ((rc = term_unit(m, &terms[i], &info[i], i, u + i * d, err)))
            goto out;
        for (uint32_t j = 0; j < d; j++)
            mean[j] += u[i * d + j];
    }
    double mn = sqrt(dot_d(mean, mean, d));
    if (!(mn > 0)) {
        rc = semd_err_set(err, SEMD_EINVAL,
                          "the terms cancel out: their mean is zero");
        goto out;
    }
    /* gensim sorts (cosine, word) pairs and takes the last: the lowest
     * cosine, and among equal ones the smallest word */
    size_t best = 0;
    for (size_t i = 0; i < n_terms; i++) {
        c[i] = dot_d(u + i * d, mean, d) / mn;
        if (i == 0 || c[i] < c[best])
            best = i;
        else if (c[i] == c[best] && terms[i].word && terms[best].word) {
            size_t la = terms[i].len, lb = terms[best].len;
            int k = memcmp(terms[i].word, terms[best].word, la < lb ? la : lb);
            if (k < 0 || (k == 0 && la < lb))
                best = i;
        }
    }
    *odd = best;
    if (sims)
        for (size_t i = 0; i < n_terms; i++)
            sims[i] = (float)c[i];
out:
    free(c);
    free(u);
    return rc;
}

int
semd_rank(const struct semd_model *m, const struct semd_term *a,
          const struct semd_term *b, uint64_t *rank,
          struct semd_term_info *info, struct semd_err *err)
{
    if (!m || !a || !b || !rank || !info)
        return semd_err_set(err, SEMD_EINVAL, "model, terms or output missing");
    struct semd_term t[2] = {*a, *b};
    int rc = resolve_all(m, t, 2, info, err);
    if (rc)
        return rc;
    uint32_t d = semd_model_dims(m);
    uint64_t rows = semd_model_rows(m);
    const size_t block = 4096;
    double *ud = malloc(2 * (size_t)d * sizeof *ud);
    float *ua = malloc(d * sizeof *ua);
    float *sc = malloc(block * sizeof *sc);
    if (!ud || !ua || !sc) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = term_unit(m, &t[0], &info[0], 0, ud, err)) ||
        (rc = term_unit(m, &t[1], &info[1], 1, ud + d, err)))
        goto out;
    for (uint32_t j = 0; j < d; j++)
        ua[j] = (float)ud[j];
    /* b's cosine comes from the same computation as every other row's
     * when b is a word, so b never counts as closer than itself */
    const float *norms = semd_model_norms(m);
    const float *mat = semd_model_matrix(m);
    float cb;
    if (info[1].row != UINT64_MAX) {
        uint64_t rb = info[1].row;
        linalg_gemv(mat + rb * d, 1, d, ua, &cb);
        cb = cb / norms[rb];
    } else {
        cb = (float)dot_d(ud, ud + d, d);
    }
    uint64_t closer = 0;
    for (uint64_t r0 = 0; r0 < rows; r0 += block) {
        size_t nb = rows - r0 < block ? (size_t)(rows - r0) : block;
        linalg_gemv(mat + r0 * d, nb, d, ua, sc);
        for (size_t i = 0; i < nb; i++) {
            uint64_t r = r0 + i;
            if (norms[r] > 0 && sc[i] / norms[r] > cb && r != info[0].row)
                closer++;
        }
    }
    *rank = closer + 1;
out:
    free(sc);
    free(ua);
    free(ud);
    return rc;
}

/* -------------------------------------------------------------- 3CosMul */

static int
excluded(const uint64_t *ex, size_t n, uint64_t row)
{
    for (size_t i = 0; i < n; i++)
        if (ex[i] == row)
            return 1;
    return 0;
}

/* Rows per block: small enough that the block's scores stay in cache. */
#define COSMUL_BLOCK 1024

/*
 * Dot products of a block of rows with a few term vectors, reading each
 * row once: out[i * nt + t] = rows[i] . terms[t]. One BLAS SGEMM with so
 * few columns would pack (copy) every row first, and one SGEMV per term
 * would read the matrix once per term; this pass is bound by one read of
 * the rows. terms is nt x dp floats, dp = dims rounded up to 8, zero-padded.
 */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx2,fma"))) static float
hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
                          _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Four rows at a time against three terms at a time: twelve independent
 * accumulators keep the FMA units busy while rows stream in. */
__attribute__((target("avx2,fma"))) static void
dots_avx2(const float *rows, size_t nr, uint32_t d, const float *terms,
          size_t nt, uint32_t dp, float *out)
{
    uint32_t full = d / 8, tail = d % 8;
    __m256i mask = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)tail), mask);
    for (size_t t0 = 0; t0 < nt; t0 += 3) {
        size_t g = nt - t0 < 3 ? nt - t0 : 3;
        const float *u0 = terms + t0 * dp;
        const float *u1 = g > 1 ? u0 + dp : u0;
        const float *u2 = g > 2 ? u0 + 2 * dp : u0;
        size_t i = 0;
        for (; i + 4 <= nr; i += 4) {
            /* twelve named accumulators: an array would live in memory */
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00;
            __m256 a10 = a00, a11 = a00, a12 = a00;
            __m256 a20 = a00, a21 = a00, a22 = a00;
            __m256 a30 = a00, a31 = a00, a32 = a00;
            const float *x0 = rows + i * d, *x1 = x0 + d, *x2 = x1 + d;
            const float *x3 = x2 + d;
#define ROW4(LOAD, c)                                                         \
    do {                                                                      \
        __m256 w0 = _mm256_loadu_ps(u0 + 8 * (c));                            \
        __m256 w1 = _mm256_loadu_ps(u1 + 8 * (c));                            \
        __m256 w2 = _mm256_loadu_ps(u2 + 8 * (c));                            \
        __m256 v0 = LOAD(x0 + 8 * (c)), v1 = LOAD(x1 + 8 * (c));              \
        __m256 v2 = LOAD(x2 + 8 * (c)), v3 = LOAD(x3 + 8 * (c));              \
        a00 = _mm256_fmadd_ps(v0, w0, a00);                                   \
        a01 = _mm256_fmadd_ps(v0, w1, a01);                                   \
        a02 = _mm256_fmadd_ps(v0, w2, a02);                                   \
        a10 = _mm256_fmadd_ps(v1, w0, a10);                                   \
        a11 = _mm256_fmadd_ps(v1, w1, a11);                                   \
        a12 = _mm256_fmadd_ps(v1, w2, a12);                                   \
        a20 = _mm256_fmadd_ps(v2, w0, a20);                                   \
        a21 = _mm256_fmadd_ps(v2, w1, a21);                                   \
        a22 = _mm256_fmadd_ps(v2, w2, a22);                                   \
        a30 = _mm256_fmadd_ps(v3, w0, a30);                                   \
        a31 = _mm256_fmadd_ps(v3, w1, a31);                                   \
        a32 = _mm256_fmadd_ps(v3, w2, a32);                                   \
    } while (0)
#define LOADU(p) _mm256_loadu_ps(p)
#define LOADM(p) _mm256_maskload_ps((p), mask)
            for (uint32_t c = 0; c < full; c++)
                ROW4(LOADU, c);
            if (tail)
                ROW4(LOADM, full);
#undef ROW4
#undef LOADU
#undef LOADM
            float s[4][3] = {{hsum8(a00), hsum8(a01), hsum8(a02)},
                             {hsum8(a10), hsum8(a11), hsum8(a12)},
                             {hsum8(a20), hsum8(a21), hsum8(a22)},
                             {hsum8(a30), hsum8(a31), hsum8(a32)}};
            for (int r = 0; r < 4; r++)
                for (size_t t = 0; t < g; t++)
                    out[(i + (size_t)r) * nt + t0 + t] = s[r][t];
        }
        for (; i < nr; i++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0;
            const float *x = rows + i * d;
            for (uint32_t c = 0; c <= full; c++) {
                if (c == full && !tail)
                    break;
                __m256 v = c < full ? _mm256_loadu_ps(x + 8 * c)
                                    : _mm256_maskload_ps(x + 8 * c, mask);
                a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(u0 + 8 * c), a0);
                a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(u1 + 8 * c), a1);
                a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(u2 + 8 * c), a2);
            }
            float s3[3] = {hsum8(a0), hsum8(a1), hsum8(a2)};
            for (size_t t = 0; t < g; t++)
                out[i * nt + t0 + t] = s3[t];
        }
    }
}

static int
have_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static int
have_avx2(void)
{
    return 0;
}
#endif

/* Portable: independent partial sums so additions overlap. */
static void
dots_plain(const float *rows, size_t nr, uint32_t d, const float *terms,
           size_t nt, uint32_t dp, float *out)
{
    for (size_t i = 0; i < nr; i++)
        for (size_t t = 0; t < nt; t++)
            out[i * nt + t] = linalg_dot(rows + i * d, terms + t * dp, d);
}

/* Term counts up to this use the one-read kernel; more use SGEMM, which
 * then does more work per byte of the matrix than the kernel would. */
#define FUSED_MAX_TERMS 12

int
query_cosmul(const struct semd_model *m, uint64_t restrict_rows,
             const float *terms, size_t n_terms, struct cosmul_query *q,
             size_t nq, struct semd_err *err)
{
    uint64_t rows = semd_model_rows(m);
    uint64_t n = restrict_rows && restrict_rows < rows ? restrict_rows : rows;
    uint32_t d = semd_model_dims(m);
    uint32_t dp = (d + 7) / 8 * 8;
    int fused = n_terms <= FUSED_MAX_TERMS;
    int avx2 = fused && have_avx2();
    float *sc = malloc((size_t)COSMUL_BLOCK * n_terms * sizeof *sc);
    float *tp = fused ? calloc(n_terms * dp, sizeof *tp) : NULL;
    if (!sc || (fused && !tp)) {
        free(sc);
        free(tp);
        return semd_err_set(err, SEMD_ENOMEM,
                            "no memory for %zu term scores", n_terms);
    }
    for (size_t t = 0; fused && t < n_terms; t++)
        memcpy(tp + t * dp, terms + t * d, d * sizeof *tp);
    for (size_t i = 0; i < nq; i++)
        q[i].n_hits = 0;
    const float *mat = semd_model_matrix(m);
    const float *norms = semd_model_norms(m);
    for (uint64_t r0 = 0; r0 < n; r0 += COSMUL_BLOCK) {
        size_t nb = n - r0 < COSMUL_BLOCK ? (size_t)(n - r0) : COSMUL_BLOCK;
        const float *blk = mat + r0 * d;
#if defined(__x86_64__) || defined(__i386__)
        if (avx2)
            dots_avx2(blk, nb, d, tp, n_terms, dp, sc);
        else
#endif
        if (fused)
            dots_plain(blk, nb, d, tp, n_terms, dp, sc);
        else
            linalg_gemm_nt(blk, nb, terms, n_terms, d, sc, n_terms);
        for (size_t i = 0; i < nb; i++) {
            uint64_t r = r0 + i;
            float nr = norms[r];
            if (!(nr > 0))
                continue; /* gensim: 0/0, never a winner */
            float inv = 1.0f / nr;
            const float *c = sc + i * n_terms;
            for (size_t j = 0; j < nq; j++) {
                struct cosmul_query *x = &q[j];
                float num = 1.0f, den = 1.0f;
                for (size_t t = 0; t < x->n_terms; t++) {
                    float v = (1.0f + c[x->first + t] * inv) / 2.0f;
                    if (x->sign[t] > 0)
                        num *= v;
                    else
                        den *= v;
                }
                float s = num / (den + 0.000001f);
                if (x->use_min && !(s >= x->min_score))
                    continue;
                if (x->n_hits == x->k &&
                    !topk_worse(&x->hits[0], &(struct semd_hit){r, s}))
                    continue;
                if (excluded(x->exclude, x->n_exclude, r))
                    continue;
                topk_heap_push(x->hits, &x->n_hits, x->k, r, s);
            }
        }
    }
    for (size_t j = 0; j < nq; j++)
        qsort(q[j].hits, q[j].n_hits, sizeof *q[j].hits,
              topk_best_first);
    free(tp);
    free(sc);
    return 0;
}

/* ------------------------------------------------------------- analogy */

/* Everything one analogy needs, resolved once. */
struct analogy {
    const struct semd_model *m;
    uint32_t d;
    size_t n;
    float *units; /* n x d unit vectors of the terms */
    int *sign;
    float *mean; /* the 3CosAdd query: unit combination */
};

static int
cosmul_run(const struct analogy *a, const struct semd_search *s,
           const uint64_t *ex, size_t nex, uint32_t k, struct semd_hit *hits,
           uint32_t *n_hits, struct semd_err *err)
{
    struct cosmul_query q = {
        .first = 0,
        .n_terms = a->n,
        .sign = a->sign,
        .exclude = ex,
        .n_exclude = nex,
        .k = k,
        .use_min = s->use_min_similarity,
        .min_score = s->min_similarity,
        .hits = hits,
    };
    int rc = query_cosmul(a->m, s->restrict_rows, a->units, a->n, &q, 1, err);
    if (rc == 0)
        *n_hits = q.n_hits;
    return rc;
}

/* The method's score of one row, as the search computes it. */
static float
score_row(const struct analogy *a, int method, uint64_t row)
{
    const float *v = semd_model_row(a->m, row);
    float nr = semd_model_norms(a->m)[row];
    if (!(nr > 0))
        return -INFINITY;
    if (method == SEMD_3COSADD)
        return linalg_dot(v, a->mean, a->d) / nr;
    float num = 1.0f, den = 1.0f;
    for (size_t t = 0; t < a->n; t++) {
        float c = (1.0f + linalg_dot(v, a->units + t * a->d, a->d) / nr) / 2;
        if (a->sign[t] > 0)
            num *= c;
        else
            den *= c;
    }
    return num / (den + 0.000001f);
}

static int
run_method(const struct semd_index *ix, const struct analogy *a, int method,
           const struct semd_search *s, const uint64_t *ex, size_t nex,
           uint32_t k, struct semd_hit *hits, uint32_t *n_hits,
           struct semd_err *err)
{
    if (method == SEMD_3COSMUL)
        return cosmul_run(a, s, ex, nex, k, hits, n_hits, err);
    struct semd_search s2 = *s;
    s2.k = k;
    s2.exclude = ex;
    s2.n_exclude = nex;
    return semd_index_search(ix, a->mean, &s2, hits, n_hits, err);
}

int
semd_analogy(const struct semd_index *ix, const struct semd_term *terms,
             size_t n_terms, int method, const struct semd_search *s,
             struct semd_hit *hits, uint32_t *n_hits,
             struct semd_explain *explain, struct semd_term_info *info,
             struct semd_err *err)
{
    if (!ix || !hits || !n_hits || !info)
        return semd_err_set(err, SEMD_EINVAL, "index, hits or info missing");
    if (method != SEMD_3COSADD && method != SEMD_3COSMUL)
        return semd_err_set(err, SEMD_EINVAL,
                            "unknown analogy method %d (3cosadd or 3cosmul)",
                            method);
    const struct semd_model *m = semd_index_model(ix);
    int rc = check_k(m, s, err);
    if (rc)
        return rc;
    if ((rc = check_terms(terms, n_terms, err)))
        return rc;
    struct analogy a = {m, semd_model_dims(m), n_terms, NULL, NULL, NULL};
    uint32_t d = a.d;
    uint32_t kk = s->k < 2 ? 2 : s->k; /* room for the runner-up */
    double *u = malloc(d * sizeof *u);
    a.units = malloc((n_terms + 1) * d * sizeof *a.units);
    a.sign = malloc(n_terms * sizeof *a.sign);
    struct semd_hit *tmp = malloc(kk * sizeof *tmp);
    uint64_t *ex = NULL;
    size_t nex = 0;
    if (!u || !a.units || !a.sign || !tmp) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    a.mean = a.units + n_terms * d;
    /* combine first: it resolves every word and names the missing ones */
    if ((rc = semd_combine(m, terms, n_terms, a.mean, info, err)))
        goto out;
    int positives = 0;
    for (size_t i = 0; i < n_terms; i++) {
        if ((rc = term_unit(m, &terms[i], &info[i], i, u, err)))
            goto out;
        for (uint32_t j = 0; j < d; j++)
            a.units[i * d + j] = (float)u[j];
        if (terms[i].weight == 0) {
            rc = semd_err_set(err, SEMD_EINVAL,
                              "term %zu has weight 0: an analogy term is "
                              "positive or negative",
                              i);
            goto out;
        }
        a.sign[i] = terms[i].weight > 0 ? 1 : -1;
        positives += a.sign[i] > 0;
    }
    if (method == SEMD_3COSMUL && positives == 0) {
        rc = semd_err_set(err, SEMD_EINVAL,
                          "3cosmul needs at least one positive term");
        goto out;
    }
    if (!(ex = with_inputs(s, info, n_terms, 0, &nex))) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    uint32_t got;
    if ((rc = run_method(ix, &a, method, s, ex, nex, kk, tmp, &got, err)))
        goto out;
    if (explain) {
        memset(explain, 0, sizeof *explain);
        explain->other_row = UINT64_MAX;
    }
    if (explain && got > 0) {
        uint64_t ans = tmp[0].row;
        const float *v = semd_model_row(m, ans);
        float nr = semd_model_norms(m)[ans];
        for (size_t i = 0; i < n_terms; i++)
            explain->term_cos[i] =
                nr > 0 ? linalg_dot(v, a.units + i * d, d) / nr : 0.0f;
        explain->margin = got > 1 ? tmp[0].score - tmp[1].score : 0.0f;
        /* without the exclusion of inputs, only inputs could rank above
         * the answer; count the distinct ones that would */
        uint64_t above = 0, lim = s->restrict_rows;
        for (size_t i = s->n_exclude; i < nex; i++) {
            uint64_t r = ex[i];
            if (lim && r >= lim)
                continue;
            struct semd_hit h = {r, score_row(&a, method, r)};
            if (topk_worse(&tmp[0], &h))
                above++;
        }
        explain->rank_with_inputs = above + 1;
        struct semd_hit oh;
        uint32_t on;
        int other = method == SEMD_3COSADD ? SEMD_3COSMUL : SEMD_3COSADD;
        if (other == SEMD_3COSMUL && positives == 0) {
            explain->methods_agree = 0;
        } else {
            if ((rc = run_method(ix, &a, other, s, ex, nex, 1, &oh, &on, err)))
                goto out;
            if (on == 1) {
                explain->other_row = oh.row;
                explain->other_score = oh.score;
                explain->methods_agree = oh.row == ans;
            }
        }
    }
    *n_hits = got < s->k ? got : s->k;
    memcpy(hits, tmp, *n_hits * sizeof *hits);
out:
    free(ex);
    free(tmp);
    free(a.sign);
    free(a.units);
    free(u);
    return rc;
}
