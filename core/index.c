/*
 * index.c - nearest rows by cosine: exact search over the mapped model, and
 * approximate FAISS indexes. The only file that includes FAISS headers.
 *
 * Exact search never copies the matrix: it scores the mapped raw rows and
 * divides by the stored norms (scores are cosines with the unit query).
 * Ties are broken by the lower row, so results are deterministic.
 *
 * Approximate indexes are FAISS indexes made by a factory string over the
 * unit rows with inner product (so scores are cosines), built with every
 * core, saved beside the model with a sidecar naming the model's checksum
 * and the factory, and loaded without a rebuild while both match. Limits:
 * restrict_rows and exclusions are applied after FAISS answers, over more
 * candidates than k (see approx_fetch); a heavily restricted search may
 * return fewer than k hits. Scores are FAISS's inner products unless the
 * search asks to rerank, which rescores the candidates exactly.
 *
 * Threads: an index is immutable once open; searches may run from any
 * number of threads at once. Each search allocates its own scratch space.
 * FAISS keeps efSearch and nprobe in the index, so approximate searches
 * asking for other values than the running ones wait for those to finish.
 *
 * A delta index (semd_index_open_delta) serves a model that differs from
 * an older one in a few rows while only the older one has an approximate
 * index, as the online trainer's versions do until their own index is
 * built: the older index's candidates are mapped to this model's rows
 * (changed rows dropped), the changed and new rows are scanned exactly,
 * and both are rescored against this model and merged. It holds a
 * reference to the older snapshot, so the FAISS index it borrows lives
 * as long as it does.
 */
#include "semd.h"

#include "index.h"
#include "linalg.h"
#include "topk.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

struct semd_index {
    const struct semd_model *m;
    char *factory;
    uint64_t rows;
    uint32_t dims;
    const float *matrix;
    float *inv_norms; /* 1 / norm of each row, 0 for a zero row */
    const int8_t *q8codes; /* the model's 8-bit unit rows (see semd.h) */
    const float *q8aux;
    int exact;
    int simd; /* nonzero: the AVX2 kernels (checked at open) */

    /* approximate indexes only */
    FaissIndex *fi;
    FaissParameterSpace *ps;
    char *path;      /* the saved index */
    int loaded;      /* read from path, not built */
    char note[SEMD_ERR_MSG]; /* why it was (re)built, or "" */
    uint32_t def_ef, def_nprobe; /* 0: the index has no such parameter */
    /* The search parameters live in the FAISS index itself, so searches
     * with other parameters than the running ones wait until those end
     * (see gate_enter). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int active, waiting;
    uint32_t cur_ef, cur_nprobe;

    /* delta indexes only (base != NULL) */
    struct semd_snapshot *base_snap;
    const struct semd_index *base;
    uint64_t *base_map;   /* base row -> row here, UINT64_MAX: changed */
    uint64_t *delta;      /* rows here scored by scan, ascending */
    uint64_t n_delta;
};

/* ------------------------------------------------ FAISS inner product */

/*
 * Debian's FAISS is built for baseline x86-64 (no SSE3), so its
 * faiss::fvec_inner_product, which every HNSW and flat inner-product
 * distance goes through, is the scalar reference loop: 70% of a served
 * HNSW search. This definition replaces it (the build links a copy of
 * libfaiss.a in which FAISS's own is weak, see the Makefile; a shared
 * libfaiss resolves to it as well) with eight-wide AVX2 FMA sums when the
 * processor has them. Same products, another summation order: the scores
 * differ from the reference loop's by float rounding only.
 */
float semd_faiss_inner_product(const float *x, const float *y, size_t d)
    __asm__("_ZN5faiss18fvec_inner_productEPKfS1_m");

static float
ip_scalar(const float *x, const float *y, size_t d)
{
    float s = 0;
    for (size_t i = 0; i < d; i++)
        s += x[i] * y[i];
    return s;
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2,fma"))) static float
ip_avx2(const float *x, const float *y, size_t d)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= d; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i),
                             a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8),
                             _mm256_loadu_ps(y + i + 8), a1);
    }
    if (i + 8 <= d) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i),
                             a0);
        i += 8;
    }
    a0 = _mm256_add_ps(a0, a1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(a0),
                          _mm256_extractf128_ps(a0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float s = _mm_cvtss_f32(h);
    for (; i < d; i++)
        s += x[i] * y[i];
    return s;
}

float
semd_faiss_inner_product(const float *x, const float *y, size_t d)
{
    /* a read of a value libgcc sets once at start-up */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return ip_avx2(x, y, d);
    return ip_scalar(x, y, d);
}
#else
float
semd_faiss_inner_product(const float *x, const float *y, size_t d)
{
    return ip_scalar(x, y, d);
}
#endif

/* ------------------------------------------------------------- top k */

/* The best hits so far (topk.h): h has room for k. */
struct topk {
    struct semd_hit *h;
    uint32_t n, k;
};

static void
topk_push(struct topk *t, uint64_t row, float score)
{
    topk_heap_push(t->h, &t->n, t->k, row, score);
}

/* The score a candidate must reach to enter: -inf until the heap is full. */
static float
topk_floor(const struct topk *t)
{
    return t->n < t->k ? -INFINITY : t->h[0].score;
}

/* Sorts the kept hits best first into out; returns how many. */
static uint32_t
topk_finish(struct topk *t, struct semd_hit *out)
{
    qsort(t->h, t->n, sizeof *t->h, topk_best_first);
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

/* ------------------------------------------------------ FAISS edge */

/* Every FAISS call goes through here: the last-error text is per thread
 * and lives only until the next call, so it is copied at once. */
static int
fcheck(int rc, struct semd_err *err, const char *what)
{
    if (rc == 0)
        return 0;
    const char *e = faiss_get_last_error();
    char msg[SEMD_ERR_MSG - 64];
    snprintf(msg, sizeof msg, "%s", e ? e : "unknown error");
    for (char *c = msg; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    return semd_err_set(err, SEMD_EINDEX, "%s: %s", what, msg);
}

/* Default efSearch: measured on GloVe 6B 100-d (341k rows, HNSW32 built
 * with FAISS's efConstruction 40) over 2,048 queries, recall@10 against
 * exact search is, for rows spread over the whole vocabulary (mostly rare
 * words), 0.929 at 64, 0.951 at 96, 0.962 at 128, 0.970 at 160 and 0.976
 * at 192; for the 30,000 most frequent words 0.993, 0.996, 0.997, 0.998
 * and 0.998. A search costs about its efSearch (it is bound by fetching
 * the rows it scores from memory), so 128 is a fifth cheaper than 160 and
 * still above the 0.95 we promise for any query. */
/* ADD_CHUNK rows go into a building index between two checks of its
 * cancel callback: small enough that a stop or a reload waits a fraction
 * of a second, large enough that FAISS's threads share each chunk. */
enum { DEFAULT_EF = 128, DEFAULT_NPROBE = 16, ADD_CHUNK = 4096,
       TRAIN_MAX = 131072, FETCH_MAX = 16384 };

/* Waits until the index runs with (ef, nprobe), switching it when no
 * search is running. Searches that agree with the running values go
 * straight in unless another search is waiting to switch, so none
 * starves. */
static int
gate_enter(struct semd_index *ix, uint32_t ef, uint32_t np,
           struct semd_err *err)
{
    int rc = 0;
    pthread_mutex_lock(&ix->mu);
    int same = ix->cur_ef == ef && ix->cur_nprobe == np;
    if (!same || ix->waiting) {
        ix->waiting++;
        while (ix->active > 0 && !(ix->cur_ef == ef && ix->cur_nprobe == np
                                   && ix->waiting == 1))
            pthread_cond_wait(&ix->cv, &ix->mu);
        ix->waiting--;
    }
    if (ix->cur_ef != ef) {
        rc = fcheck(faiss_ParameterSpace_set_index_parameter(
                        ix->ps, ix->fi, "efSearch", ef),
                    err, "setting efSearch");
        if (!rc)
            ix->cur_ef = ef;
    }
    if (!rc && ix->cur_nprobe != np) {
        rc = fcheck(faiss_ParameterSpace_set_index_parameter(
                        ix->ps, ix->fi, "nprobe", np),
                    err, "setting nprobe");
        if (!rc)
            ix->cur_nprobe = np;
    }
    if (!rc)
        ix->active++;
    pthread_cond_broadcast(&ix->cv);
    pthread_mutex_unlock(&ix->mu);
    return rc;
}

static void
gate_leave(struct semd_index *ix)
{
    pthread_mutex_lock(&ix->mu);
    ix->active--;
    pthread_cond_broadcast(&ix->cv);
    pthread_mutex_unlock(&ix->mu);
}

/* How many candidates to ask FAISS for: enough to survive exclusions and
 * the restriction to the first rows, four times k when reranking. */
static uint64_t
approx_fetch(const struct semd_index *ix, const struct semd_search *s)
{
    uint64_t n = (uint64_t)s->k;
    if (s->rerank)
        n *= 4;
    if (s->restrict_rows && s->restrict_rows < ix->rows) {
        uint64_t f = ix->rows / s->restrict_rows + 1;
        n *= f < 64 ? f : 64;
    }
    if (n > FETCH_MAX)
        n = FETCH_MAX > s->k ? FETCH_MAX : s->k;
    n += s->n_exclude;
    return n < ix->rows ? n : ix->rows;
}

/* One query's hits from the kk answers FAISS gave for it (best first):
 * rows past the restriction and excluded rows are dropped, and the rest
 * rescored exactly when the search asks to rerank. */
static uint32_t
approx_collect(const struct semd_index *ix, const float *unit,
               const struct semd_search *s, const struct excl *ex,
               const float *d, const idx_t *lab, uint64_t kk,
               struct semd_hit *hits)
{
    uint64_t lim = scan_rows(ix, s);
    struct topk t = {hits, 0, s->k};
    for (uint64_t i = 0; i < kk; i++) {
        if (lab[i] < 0 || (uint64_t)lab[i] >= lim)
            continue;
        uint64_t r = (uint64_t)lab[i];
        if (ex->n && excl_has(ex, r))
            continue;
        float v = s->rerank ? linalg_dot(ix->matrix + r * ix->dims, unit,
                                         ix->dims) * ix->inv_norms[r]
                            : d[i];
        if (s->use_min_similarity && v < s->min_similarity)
            continue;
        topk_push(&t, r, v);
    }
    return topk_finish(&t, hits);
}

static void
approx_params(const struct semd_index *ix, const struct semd_search *s,
              uint32_t *ef, uint32_t *np)
{
    *ef = ix->def_ef ? (s->ef_search ? s->ef_search : ix->def_ef) : 0;
    *np = ix->def_nprobe ? (s->nprobe ? s->nprobe : ix->def_nprobe) : 0;
}

/* n queries (unit rows, n x dims) in one FAISS call, kk answers each. */
static int
approx_call(const struct semd_index *ix, const float *units, size_t n,
            uint64_t kk, uint32_t ef, uint32_t np, float *d, idx_t *lab,
            struct semd_err *err)
{
    /* the gate mutates only the lock and FAISS's parameters */
    struct semd_index *mix = (struct semd_index *)ix;
    int rc = gate_enter(mix, ef, np, err);
    if (rc)
        return rc;
    rc = fcheck(faiss_Index_search(ix->fi, (idx_t)n, units, (idx_t)kk, d,
                                   lab),
                err, "search");
    gate_leave(mix);
    return rc;
}

static int
approx_search(const struct semd_index *ix, const float *unit,
              const struct semd_search *s, const struct excl *ex,
              struct semd_hit *hits, uint32_t *n_hits, struct semd_err *err)
{
    uint64_t kk = approx_fetch(ix, s);
    float *d = malloc(kk * sizeof *d);
    idx_t *lab = malloc(kk * sizeof *lab);
    int rc = 0;
    if (!d || !lab) {
        rc = semd_err_set(err, SEMD_ENOMEM, "no memory for %llu candidates",
                          (unsigned long long)kk);
        goto out;
    }
    uint32_t ef, np;
    approx_params(ix, s, &ef, &np);
    if ((rc = approx_call(ix, unit, 1, kk, ef, np, d, lab, err)) == 0)
        *n_hits = approx_collect(ix, unit, s, ex, d, lab, kk, hits);
out:
    free(d);
    free(lab);
    return rc;
}

/*
 * Several approximate queries: those that share efSearch and nprobe go to
 * FAISS together, in groups of at most APPROX_GROUP answers, one call per
 * group. FAISS sets up its search state once per call (for HNSW a visited
 * table of one byte per row, zeroed, and a distance computer, then an
 * OpenMP region) and spreads a group over its OpenMP threads. On one
 * thread that saves little: measured on GloVe 6B 100-d with HNSW32, a
 * batch costs within 3% of one call per query, as the search itself,
 * bound by fetching rows from memory, dominates (bench_search
 * hnsw-batch). Each query takes, of the answers fetched for its group,
 * the first as many as it fetches alone. HNSW explores max(efSearch,
 * answers fetched) candidates, so queries fetching no more than efSearch
 * share a group (they explore efSearch whatever the group fetches) and
 * the others group only with queries fetching as many: every query gets
 * the answers it gets alone.
 */
enum { APPROX_GROUP = 1 << 16 };

/* Queries of one class may share a FAISS call (see above); ef is 0 for
 * indexes without efSearch, whose answers do not depend on the count. */
static uint64_t
fetch_class(uint32_t ef, uint64_t fetch)
{
    return ef && fetch > ef ? fetch : 0;
}

static int
approx_multi(const struct semd_index *ix, const float *queries, size_t nq,
             const struct semd_search *s, struct semd_hit *hits,
             uint32_t *n_hits, uint32_t kmax, struct semd_err *err)
{
    const uint32_t dims = ix->dims;
    float *unit = malloc(nq * dims * sizeof *unit);
    float *gu = malloc(nq * dims * sizeof *gu);
    struct excl *ex = calloc(nq, sizeof *ex);
    size_t *g = malloc(nq * sizeof *g);
    char *done = calloc(nq, 1);
    float *d = NULL;
    idx_t *lab = NULL;
    size_t ready = 0;
    int rc = 0;
    if (!unit || !gu || !ex || !g || !done) {
        rc = semd_err_set(err, SEMD_ENOMEM, "no memory for %zu queries", nq);
        goto out;
    }
    for (; ready < nq; ready++) {
        struct semd_err qe = {0};
        rc = unit_query(ix, queries + ready * dims, unit + ready * dims, &qe);
        if (rc) {
            semd_err_set(err, rc, "query %zu: %s", ready, qe.msg);
            goto out;
        }
        if (excl_init(&ex[ready], &s[ready])) {
            rc = semd_err_set(err, SEMD_ENOMEM, "no memory for exclusions");
            goto out;
        }
    }
    for (size_t first = 0; first < nq; first++) {
        if (done[first])
            continue;
        uint32_t ef, np;
        approx_params(ix, &s[first], &ef, &np);
        uint64_t cls = fetch_class(ef, approx_fetch(ix, &s[first]));
        /* the group: the queries left with these parameters, as many as
         * fit APPROX_GROUP answers */
        size_t n = 0;
        uint64_t kk = 0;
        for (size_t q = first; q < nq; q++) {
            uint32_t e, p;
            approx_params(ix, &s[q], &e, &p);
            uint64_t f = approx_fetch(ix, &s[q]);
            if (done[q] || e != ef || p != np || fetch_class(e, f) != cls)
                continue;
            uint64_t k2 = f > kk ? f : kk;
            if (n > 0 && (n + 1) * k2 > APPROX_GROUP)
                continue;
            kk = k2;
            g[n++] = q;
            done[q] = 1;
        }
        free(d);
        free(lab);
        d = malloc(n * kk * sizeof *d);
        lab = malloc(n * kk * sizeof *lab);
        if (!d || !lab) {
            rc = semd_err_set(err, SEMD_ENOMEM, "no memory for %llu "
                              "candidates", (unsigned long long)(n * kk));
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            memcpy(gu + i * dims, unit + g[i] * dims, dims * sizeof *gu);
        if ((rc = approx_call(ix, gu, n, kk, ef, np, d, lab, err)))
            goto out;
        for (size_t i = 0; i < n; i++) {
            size_t q = g[i];
            n_hits[q] = approx_collect(ix, unit + q * dims, &s[q], &ex[q],
                                       d + i * kk, lab + i * kk,
                                       approx_fetch(ix, &s[q]),
                                       hits + q * kmax);
        }
    }
out:
    for (size_t q = 0; ex && q < ready; q++)
        free(ex[q].rows);
    free(unit);
    free(gu);
    free(ex);
    free(g);
    free(done);
    free(d);
    free(lab);
    return rc;
}

/* The saved index's name: MODEL.<factory with every character outside
 * [A-Za-z0-9] turned into '_'>.faiss */
static char *
default_path(const struct semd_model *m, const char *factory)
{
    const char *mp = semd_model_path(m);
    size_t n = strlen(mp) + strlen(factory) + 16;
    char *p = malloc(n);
    if (!p)
        return NULL;
    int len = snprintf(p, n, "%s.", mp);
    for (const char *c = factory; *c; c++) {
        int ok = (*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z')
                 || (*c >= '0' && *c <= '9');
        p[len++] = ok ? *c : '_';
    }
    snprintf(p + len, n - (size_t)len, ".faiss");
    return p;
}

static void
sidecar_text(const struct semd_index *ix, char *buf, size_t n)
{
    struct semd_model_info in;
    semd_model_get_info(ix->m, &in);
    snprintf(buf, n,
             "semd-index 1\nfactory %s\nmodel-checksum %08x\nrows %llu\n"
             "dims %u\n",
             ix->factory, in.checksum, (unsigned long long)in.rows, in.dims);
}

/* 1 when the sidecar beside path names this model and factory; otherwise
 * 0 with the reason in ix->note. */
static int
sidecar_matches(struct semd_index *ix, const char *meta)
{
    char want[512], got[512];
    sidecar_text(ix, want, sizeof want);
    FILE *f = fopen(meta, "r");
    if (!f) {
        snprintf(ix->note, sizeof ix->note, "no saved index at \"%s\"",
                 ix->path);
        return 0;
    }
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    got[n] = 0;
    if (strcmp(want, got) != 0) {
        snprintf(ix->note, sizeof ix->note,
                 "saved index \"%s\" was built for another model or factory",
                 ix->path);
        return 0;
    }
    return 1;
}

static void
progress(const struct semd_index_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
progress(const struct semd_index_opts *o, const char *fmt, ...)
{
    if (!o || !o->progress)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Unit rows [r0, r0 + n) into buf (n x dims). */
static void
unit_rows(const struct semd_index *ix, uint64_t r0, uint64_t n, uint64_t step,
          float *buf)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t r = r0 + i * step;
        const float *v = ix->matrix + r * ix->dims;
        float inv = ix->inv_norms[r];
        for (uint32_t j = 0; j < ix->dims; j++)
            buf[i * ix->dims + j] = v[j] * inv;
    }
}

static int
write_file(const char *path, const char *text, struct semd_err *err)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        int e = errno;
        if (f)
            fclose(f);
        return semd_err_set(err, SEMD_EIO, "cannot write \"%s\": %s", path,
                            strerror(e));
    }
    if (fclose(f) != 0)
        return semd_err_set(err, SEMD_EIO, "cannot write \"%s\": %s", path,
                            strerror(errno));
    return 0;
}

/* Writes the index, then the sidecar (the sidecar last, so a crash in
 * between leaves no sidecar and the next start rebuilds), each to a
 * temporary name renamed into place. */
static int
save_index(struct semd_index *ix, struct semd_err *err)
{
    size_t n = strlen(ix->path) + 16;
    char *tmp = malloc(n), *meta = malloc(n), *mtmp = malloc(n);
    char text[512];
    int rc = 0;
    if (!tmp || !meta || !mtmp) {
        rc = semd_err_set(err, SEMD_ENOMEM, "no memory");
        goto out;
    }
    snprintf(tmp, n, "%s.tmp", ix->path);
    snprintf(meta, n, "%s.meta", ix->path);
    snprintf(mtmp, n, "%s.meta.tmp", ix->path);
    unlink(meta);
    if ((rc = fcheck(faiss_write_index_fname(ix->fi, tmp), err,
                     "saving the index")))
        goto out;
    if (rename(tmp, ix->path) != 0) {
        rc = semd_err_set(err, SEMD_EIO, "cannot rename \"%s\": %s", tmp,
                          strerror(errno));
        goto out;
    }
    sidecar_text(ix, text, sizeof text);
    if ((rc = write_file(mtmp, text, err)))
        goto out;
    if (rename(mtmp, meta) != 0)
        rc = semd_err_set(err, SEMD_EIO, "cannot rename \"%s\": %s", mtmp,
                          strerror(errno));
out:
    if (rc && tmp) {
        unlink(tmp);
        unlink(mtmp);
    }
    free(tmp);
    free(meta);
    free(mtmp);
    return rc;
}

static int
build_index(struct semd_index *ix, const struct semd_index_opts *o,
            struct semd_err *err)
{
    const uint32_t dims = ix->dims;
    int rc = fcheck(faiss_index_factory(&ix->fi, (int)dims, ix->factory,
                                        METRIC_INNER_PRODUCT),
                    err, "index factory");
    if (rc) {
        /* keep the factory string in the message: FAISS may not */
        char m[SEMD_ERR_MSG];
        snprintf(m, sizeof m, "%s", err ? err->msg : "");
        return semd_err_set(err, SEMD_EINDEX, "factory \"%s\" for %u dims: %s",
                            ix->factory, dims, m);
    }
    /* 0: OpenMP's own count, which is every core unless OMP_NUM_THREADS
     * (or semd_set_threads) says otherwise */
    int saved = omp_get_max_threads();
    int threads = o && o->threads > 0 ? o->threads : saved;
    omp_set_num_threads(threads);
    float *buf = NULL;
    if (!faiss_Index_is_trained(ix->fi)) {
        uint64_t n = ix->rows < TRAIN_MAX ? ix->rows : TRAIN_MAX;
        uint64_t step = ix->rows / n;
        progress(o, "index %s: training on %llu of %llu rows, %d threads",
                 ix->factory, (unsigned long long)n,
                 (unsigned long long)ix->rows, threads);
        buf = malloc(n * dims * sizeof *buf);
        if (!buf) {
            rc = semd_err_set(err, SEMD_ENOMEM, "no memory to train");
            goto out;
        }
        unit_rows(ix, 0, n, step, buf);
        if ((rc = fcheck(faiss_Index_train(ix->fi, (idx_t)n, buf), err,
                         "training the index")))
            goto out;
        free(buf);
    }
    buf = malloc((size_t)ADD_CHUNK * dims * sizeof *buf);
    if (!buf) {
        rc = semd_err_set(err, SEMD_ENOMEM, "no memory to build");
        goto out;
    }
    int last = -1;
    for (uint64_t r0 = 0; r0 < ix->rows; r0 += ADD_CHUNK) {
        uint64_t n = ix->rows - r0 < ADD_CHUNK ? ix->rows - r0 : ADD_CHUNK;
        if (o && o->cancel && o->cancel(o->cancel_arg)) {
            rc = semd_err_set(err, SEMD_ESHUTDOWN, "index %s: build "
                              "cancelled", ix->factory);
            goto out;
        }
        unit_rows(ix, r0, n, 1, buf);
        if ((rc = fcheck(faiss_Index_add(ix->fi, (idx_t)n, buf), err,
                         "adding rows to the index")))
            goto out;
        int pct = (int)(100 * (r0 + n) / ix->rows);
        if (pct / 10 != last / 10 || r0 + n == ix->rows) {
            progress(o, "index %s: %llu of %llu rows added (%d%%)",
                     ix->factory, (unsigned long long)(r0 + n),
                     (unsigned long long)ix->rows, pct);
            last = pct;
        }
    }
out:
    free(buf);
    omp_set_num_threads(saved);
    return rc;
}

/* Sets the defaults of the parameters this kind of index has: FAISS's own
 * default efSearch (16) and nprobe (1) give poor recall. */
static int
set_defaults(struct semd_index *ix, struct semd_err *err)
{
    int rc = fcheck(faiss_ParameterSpace_new(&ix->ps), err,
                    "parameter space");
    if (rc)
        return rc;
    if (strstr(ix->factory, "HNSW")) {
        rc = fcheck(faiss_ParameterSpace_set_index_parameter(
                        ix->ps, ix->fi, "efSearch", DEFAULT_EF),
                    err, "setting efSearch");
        if (rc)
            return rc;
        ix->def_ef = ix->cur_ef = DEFAULT_EF;
    }
    if (strstr(ix->factory, "IVF")) {
        rc = fcheck(faiss_ParameterSpace_set_index_parameter(
                        ix->ps, ix->fi, "nprobe", DEFAULT_NPROBE),
                    err, "setting nprobe");
        if (rc)
            return rc;
        ix->def_nprobe = ix->cur_nprobe = DEFAULT_NPROBE;
    }
    return 0;
}

static int
open_approx(struct semd_index *ix, const struct semd_index_opts *o,
            struct semd_err *err)
{
    if (strlen(ix->factory) > 200)
        return semd_err_set(err, SEMD_EINVAL, "factory string too long "
                            "(%zu bytes)", strlen(ix->factory));
    ix->path = o->path ? strdup(o->path) : default_path(ix->m, ix->factory);
    char *meta = ix->path ? malloc(strlen(ix->path) + 8) : NULL;
    if (!meta)
        return semd_err_set(err, SEMD_ENOMEM, "no memory for an index");
    sprintf(meta, "%s.meta", ix->path);
    int rc = 0;
    if (o->rebuild)
        snprintf(ix->note, sizeof ix->note, "rebuild requested");
    else if (sidecar_matches(ix, meta)) {
        rc = fcheck(faiss_read_index_fname(ix->path, 0, &ix->fi), err,
                    "reading the saved index");
        if (rc)
            goto out;
        if ((uint32_t)faiss_Index_d(ix->fi) != ix->dims
            || (uint64_t)faiss_Index_ntotal(ix->fi) != ix->rows) {
            rc = semd_err_set(err, SEMD_EINDEX,
                              "saved index \"%s\" has %d dimensions and %lld "
                              "rows, the model %u and %llu",
                              ix->path, faiss_Index_d(ix->fi),
                              (long long)faiss_Index_ntotal(ix->fi), ix->dims,
                              (unsigned long long)ix->rows);
            goto out;
        }
        ix->loaded = 1;
    }
    if (!ix->loaded) {
        progress(o, "index %s: %s; building", ix->factory, ix->note);
        if ((rc = build_index(ix, o, err)))
            goto out;
        struct semd_err se = {0};
        if (save_index(ix, &se) != 0) {
            size_t l = strlen(ix->note);
            snprintf(ix->note + l, sizeof ix->note - l,
                     "; not saved: %s", se.msg);
            progress(o, "index %s: not saved: %s", ix->factory, se.msg);
        }
    }
    rc = set_defaults(ix, err);
out:
    free(meta);
    return rc;
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
    if (!sc)
        return semd_err_set(err, SEMD_ENOMEM, "no memory for %llu scores",
                            (unsigned long long)n);
    linalg_gemv(ix->matrix, n, ix->dims, unit, sc);
    struct topk t = {hits, 0, s->k}; /* the caller's room for k hits */
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
    return 0;
}


/* ------------------------------------------------ exact search over Q8 */

/*
 * The model carries an 8-bit copy of the unit rows: u ~ s_r * c_r with
 * |u_i - s_r c_ri| <= s_r / 2 and l1_r = s_r * sum |c_ri|. The unit query x
 * is quantised the same way with its own step t: x ~ t * q. Then
 *
 *   u.x - s_r t (c_r . q) = sum_i (u_i - s_r c_ri) x_i
 *                           + s_r sum_i c_ri (x_i - t q_i)
 *
 * so |u.x - s_r t (c_r . q)| <= s_r/2 * ||x||_1 + l1_r * t/2 (plus float
 * rounding, covered by SLACK). The integer dot c_r . q is exact. A scan
 * over the codes (a quarter of the matrix's bytes) gives every row an
 * interval [lb, ub] holding its exact cosine. The (k + excluded)-th best
 * lower bound T is a score that at least k admissible rows reach, so a row
 * whose upper bound is below T cannot be in the answer; every other row is
 * rescored exactly from the raw matrix. The answer is therefore the exact
 * top k (ties at T included), with one read of the codes and a few hundred
 * raw rows instead of one read of the whole matrix.
 */

/* Absolute allowance for float rounding in the bound and in the exact
 * rescoring (a few ulps per term of a dims-long dot product). */
static float
slack(uint32_t dims)
{
    return 1e-4f + 8.0f * (float)dims * FLT_EPSILON;
}

/* A bounded min-heap of lower bounds: the root is the kk-th best. */
struct lbheap {
    float *v;
    size_t n, k;
};

static void
lb_push(struct lbheap *h, float x)
{
    if (h->n < h->k) {
        size_t i = h->n++;
        h->v[i] = x;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (h->v[p] <= h->v[i])
                break;
            float t = h->v[p];
            h->v[p] = h->v[i];
            h->v[i] = t;
            i = p;
        }
        return;
    }
    if (x <= h->v[0])
        return;
    h->v[0] = x;
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < h->n && h->v[l] < h->v[w])
            w = l;
        if (r < h->n && h->v[r] < h->v[w])
            w = r;
        if (w == i)
            break;
        float t = h->v[i];
        h->v[i] = h->v[w];
        h->v[w] = t;
        i = w;
    }
}

static float
lb_floor(const struct lbheap *h)
{
    return h->n < h->k ? -INFINITY : h->v[0];
}

struct cand {
    uint64_t row;
    float ub;
};

/* State of one scan over the codes. */
struct q8scan {
    const struct semd_index *ix;
    const int8_t *q;  /* the quantised query, padded with zeros */
    uint32_t dpad;    /* dims rounded up to 32 */
    float st, hx, ht, eps; /* t, ||x||_1 / 2, t / 2, slack */
    float floor0;     /* min_similarity or -inf */
    struct lbheap lb;
    struct cand *c;
    size_t nc, cap;
    int oom;
};

static float
cand_floor(const struct q8scan *sc)
{
    float t = lb_floor(&sc->lb);
    return t > sc->floor0 ? t : sc->floor0;
}

/* Records one row's bounds: its lower bound may raise the threshold, its
 * upper bound may make it a candidate. */
static void
q8_note(struct q8scan *sc, uint64_t r, float lbv, float ubv)
{
    if (lbv > lb_floor(&sc->lb))
        lb_push(&sc->lb, lbv);
    if (ubv >= cand_floor(sc)) {
        if (sc->nc == sc->cap) {
            size_t cap = sc->cap ? 2 * sc->cap : 1024;
            struct cand *c = realloc(sc->c, cap * sizeof *c);
            if (!c) {
                sc->oom = 1;
                return;
            }
            sc->c = c;
            sc->cap = cap;
        }
        sc->c[sc->nc].row = r;
        sc->c[sc->nc].ub = ubv;
        sc->nc++;
    }
}

static void
q8_row_scalar(struct q8scan *sc, uint64_t r)
{
    const struct semd_index *ix = sc->ix;
    const int8_t *c = ix->q8codes + r * ix->dims;
    int32_t d = 0;
    for (uint32_t i = 0; i < ix->dims; i++)
        d += (int32_t)c[i] * sc->q[i];
    float scale = ix->q8aux[2 * r], l1 = ix->q8aux[2 * r + 1];
    float a = scale * sc->st * (float)d;
    float b = scale * sc->hx + l1 * sc->ht + sc->eps;
    q8_note(sc, r, a - b, a + b);
}

static void
q8_scan_scalar(struct q8scan *sc, uint64_t r0, uint64_t r1)
{
    for (uint64_t r = r0; r < r1; r++)
        q8_row_scalar(sc, r);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_AVX2_KERNEL 1

/* Rows [r0, r1) in groups of 8; r1 - r0 is a multiple of 8 and every row
 * may be read dpad bytes long (the caller keeps the last rows for the
 * scalar loop). The signed codes times the signed query go through
 * maddubs as |c| (unsigned) times sign(q, c): pairs of products stay
 * within 2 * 127 * 127 < 32767, so nothing saturates. */
__attribute__((target("avx2"))) static void
q8_scan_avx2(struct q8scan *sc, uint64_t r0, uint64_t r1)
{
    const struct semd_index *ix = sc->ix;
    const uint32_t dims = ix->dims, nch = sc->dpad / 32;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256 vst = _mm256_set1_ps(sc->st), vhx = _mm256_set1_ps(sc->hx);
    const __m256 vht = _mm256_set1_ps(sc->ht), veps = _mm256_set1_ps(sc->eps);
    for (uint64_t r = r0; r < r1; r += 8) {
        const int8_t *base = ix->q8codes + r * dims;
        __m256i acc[8];
        for (int j = 0; j < 8; j++)
            acc[j] = _mm256_setzero_si256();
        for (uint32_t ch = 0; ch < nch; ch++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(sc->q + 32 * ch));
            for (int j = 0; j < 8; j++) {
                __m256i c = _mm256_loadu_si256(
                    (const __m256i *)(base + (size_t)j * dims + 32 * ch));
                __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(c),
                                                 _mm256_sign_epi8(q, c));
                acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(p, ones));
            }
        }
        __m256i s01 = _mm256_hadd_epi32(acc[0], acc[1]);
        __m256i s23 = _mm256_hadd_epi32(acc[2], acc[3]);
        __m256i s45 = _mm256_hadd_epi32(acc[4], acc[5]);
        __m256i s67 = _mm256_hadd_epi32(acc[6], acc[7]);
        __m256i s03 = _mm256_hadd_epi32(s01, s23);
        __m256i s47 = _mm256_hadd_epi32(s45, s67);
        __m256i dot = _mm256_add_epi32(_mm256_permute2x128_si256(s03, s47, 0x20),
                                       _mm256_permute2x128_si256(s03, s47, 0x31));
        /* aux holds {scale, l1} pairs: split them into two vectors */
        __m256 a0 = _mm256_loadu_ps(ix->q8aux + 2 * r);
        __m256 a1 = _mm256_loadu_ps(ix->q8aux + 2 * r + 8);
        __m256 scale = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(a0, a1, 0x88)), 0xd8));
        __m256 l1 = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(_mm256_shuffle_ps(a0, a1, 0xdd)), 0xd8));
        __m256 approx = _mm256_mul_ps(_mm256_mul_ps(scale, vst),
                                      _mm256_cvtepi32_ps(dot));
        __m256 bound = _mm256_add_ps(
            _mm256_add_ps(_mm256_mul_ps(scale, vhx), _mm256_mul_ps(l1, vht)),
            veps);
        __m256 lbv = _mm256_sub_ps(approx, bound);
        __m256 ubv = _mm256_add_ps(approx, bound);
        int m = _mm256_movemask_ps(
                    _mm256_cmp_ps(lbv, _mm256_set1_ps(lb_floor(&sc->lb)),
                                  _CMP_GT_OQ))
                | _mm256_movemask_ps(
                    _mm256_cmp_ps(ubv, _mm256_set1_ps(cand_floor(sc)),
                                  _CMP_GE_OQ));
        if (m) {
            float l[8], u[8];
            _mm256_storeu_ps(l, lbv);
            _mm256_storeu_ps(u, ubv);
            for (int j = 0; j < 8; j++)
                if (m & (1 << j))
                    q8_note(sc, r + (uint64_t)j, l[j], u[j]);
        }
    }
}
#else
#define HAVE_AVX2_KERNEL 0
#endif

static int
simd_available(void)
{
#if HAVE_AVX2_KERNEL
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

/* Quantises the unit query and sizes the bound heap: sc is ready to scan.
 * q gets dpad bytes (the caller frees it, and sc->lb.v). */
static int
q8_prepare(struct q8scan *sc, const struct semd_index *ix, const float *unit,
           const struct semd_search *s, const struct excl *ex,
           struct semd_err *err)
{
    const uint32_t dims = ix->dims;
    memset(sc, 0, sizeof *sc);
    sc->ix = ix;
    sc->dpad = (dims + 31) / 32 * 32;
    sc->eps = slack(dims);
    sc->floor0 = s->use_min_similarity ? s->min_similarity : -INFINITY;
    sc->lb.k = (size_t)s->k + ex->n;
    int8_t *q = calloc(sc->dpad, 1);
    sc->q = q;
    sc->lb.v = malloc(sc->lb.k * sizeof *sc->lb.v);
    if (!q || !sc->lb.v)
        return semd_err_set(err, SEMD_ENOMEM, "no memory to search");
    float mx = 0, l1 = 0;
    for (uint32_t i = 0; i < dims; i++) {
        float a = fabsf(unit[i]);
        l1 += a;
        mx = a > mx ? a : mx;
    }
    float t = mx / 127.0f, inv = 127.0f / mx;
    for (uint32_t i = 0; i < dims; i++) {
        long v = lrintf(unit[i] * inv);
        q[i] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    sc->st = t;
    sc->hx = 0.5f * l1 * (1.0f + 1e-6f);
    sc->ht = 0.5f * t;
    return 0;
}

/* Rows the AVX2 kernel may scan from 0: it reads dpad bytes from each
 * row's start, so it stops where that would pass the end of the codes. */
static uint64_t
q8_simd_rows(const struct semd_index *ix, uint64_t n, uint32_t dpad)
{
    uint64_t nsimd = 0;
    if (ix->simd && n >= 8) {
        uint64_t total = ix->rows * ix->dims;
        nsimd = n / 8 * 8;
        while (nsimd > 0 && (nsimd - 1) * ix->dims + dpad > total)
            nsimd -= 8;
    }
    return nsimd;
}

/* Scores rows [r0, r1) of the codes for one query; r0 is a multiple of
 * 8 and the AVX2 kernel takes whole groups of 8 below nsimd. */
static void
q8_scan(struct q8scan *sc, uint64_t r0, uint64_t r1, uint64_t nsimd)
{
#if HAVE_AVX2_KERNEL
    uint64_t e = (r1 < nsimd ? r1 : nsimd) / 8 * 8;
    if (r0 < e) {
        q8_scan_avx2(sc, r0, e);
        r0 = e;
    }
#else
    (void)nsimd;
#endif
    q8_scan_scalar(sc, r0, r1);
}

/* Rescores the candidates of a finished scan from the raw rows. */
static int
q8_finish(struct q8scan *sc, const float *unit, const struct semd_search *s,
          const struct excl *ex, struct semd_hit *hits, uint32_t *n_hits,
          struct semd_err *err)
{
    const struct semd_index *ix = sc->ix;
    const uint32_t dims = ix->dims;
    if (sc->oom)
        return semd_err_set(err, SEMD_ENOMEM, "no memory for %zu candidates",
                            sc->nc);
    float floor = cand_floor(sc);
    struct topk tk = {hits, 0, s->k};
    for (size_t i = 0; i < sc->nc; i++) {
        const struct cand *c = &sc->c[i];
        if (c->ub < floor || c->ub < topk_floor(&tk))
            continue;
        if (ex->n && excl_has(ex, c->row))
            continue;
        float v = linalg_dot(ix->matrix + c->row * dims, unit, dims)
                  * ix->inv_norms[c->row];
        if (s->use_min_similarity && v < s->min_similarity)
            continue;
        topk_push(&tk, c->row, v);
    }
    *n_hits = topk_finish(&tk, hits);
    return 0;
}

static void
q8_free(struct q8scan *sc)
{
    free((void *)sc->q);
    free(sc->lb.v);
    free(sc->c);
}

static int
exact_q8(const struct semd_index *ix, const float *unit,
         const struct semd_search *s, const struct excl *ex,
         struct semd_hit *hits, uint32_t *n_hits, struct semd_err *err)
{
    uint64_t n = scan_rows(ix, s);
    struct q8scan sc;
    int rc = q8_prepare(&sc, ix, unit, s, ex, err);
    if (rc == 0) {
        q8_scan(&sc, 0, n, q8_simd_rows(ix, n, sc.dpad));
        rc = q8_finish(&sc, unit, s, ex, hits, n_hits, err);
    }
    q8_free(&sc);
    return rc;
}

/*
 * A few queries at once (2 .. BATCH_MIN - 1, what micro-batching gathers
 * at low concurrency): the scan is bound by reading the codes from memory,
 * so the rows go block by block, small enough to stay in the L2 cache,
 * and each block is scored for every query before the next is read. The
 * codes cross the memory bus once for all queries; each query keeps its
 * own bounds and candidates, so every answer is exactly exact_q8's.
 * Measured on a 400k x 100 model the AVX2 kernel is near its arithmetic
 * limit (about 2 ms a query on one core), so this saves memory traffic
 * (both cores scanning at once) more than time per query.
 */
enum { Q8_BLOCK = 1024 };

static int
exact_q8_multi(const struct semd_index *ix, const float *queries, size_t nq,
               const struct semd_search *s, struct semd_hit *hits,
               uint32_t *n_hits, uint32_t kmax, struct semd_err *err)
{
    const uint32_t dims = ix->dims;
    struct q8scan *sc = calloc(nq, sizeof *sc);
    struct excl *ex = calloc(nq, sizeof *ex);
    float *unit = malloc(nq * dims * sizeof *unit);
    uint64_t *lim = calloc(nq, sizeof *lim);
    size_t ready = 0;
    int rc = 0;
    if (!sc || !ex || !unit || !lim) {
        rc = semd_err_set(err, SEMD_ENOMEM, "no memory for %zu queries", nq);
        goto out;
    }
    uint64_t all = 0;
    for (; ready < nq; ready++) {
        size_t q = ready;
        struct semd_err qe = {0};
        rc = unit_query(ix, queries + q * dims, unit + q * dims, &qe);
        if (rc) {
            semd_err_set(err, rc, "query %zu: %s", q, qe.msg);
            goto out;
        }
        if (excl_init(&ex[q], &s[q])) {
            rc = semd_err_set(err, SEMD_ENOMEM, "no memory for exclusions");
            goto out;
        }
        if ((rc = q8_prepare(&sc[q], ix, unit + q * dims, &s[q], &ex[q],
                             err)) != 0) {
            ready++; /* its scan state is freed below */
            goto out;
        }
        lim[q] = scan_rows(ix, &s[q]);
        all = lim[q] > all ? lim[q] : all;
    }
    uint64_t nsimd = q8_simd_rows(ix, all, sc[0].dpad);
    for (uint64_t r0 = 0; r0 < all; r0 += Q8_BLOCK) {
        uint64_t r1 = all - r0 < Q8_BLOCK ? all : r0 + Q8_BLOCK;
        for (size_t q = 0; q < nq; q++) {
            uint64_t e = r1 < lim[q] ? r1 : lim[q];
            if (r0 < e)
                q8_scan(&sc[q], r0, e, nsimd);
        }
    }
    for (size_t q = 0; q < nq && rc == 0; q++)
        rc = q8_finish(&sc[q], unit + q * dims, &s[q], &ex[q],
                       hits + q * kmax, &n_hits[q], err);
out:
    for (size_t q = 0; q < ready; q++) {
        q8_free(&sc[q]);
        free(ex[q].rows);
    }
    free(sc);
    free(ex);
    free(unit);
    free(lim);
    return rc;
}

/* ------------------------------------------------------- exact batch */

/*
 * Many queries: one SGEMM per block of rows and queries, sized so that
 * the block of scores stays in the cache, then a pass over the scores
 * that compares eight at a time with each query's current k-th best and
 * only touches its heap when one beats it. Below BATCH_MIN queries the
 * 8-bit single-query path reads less memory and wins.
 */
enum { BATCH_MIN = 16, BATCH_QB = 256, BATCH_RB = 1024 };

struct bquery {
    struct topk t;
    struct excl ex;
    uint64_t lim; /* rows searched */
    float lo;     /* min_similarity or -inf */
};

static float
bq_floor(const struct bquery *b)
{
    float f = topk_floor(&b->t);
    return f > b->lo ? f : b->lo;
}

static void
bq_offer(struct bquery *b, uint64_t row, float v)
{
    if (v < bq_floor(b))
        return;
    if (b->ex.n && excl_has(&b->ex, row))
        return;
    topk_push(&b->t, row, v);
}

static void
bq_scan_scalar(struct bquery *b, const float *c, const float *inv,
               uint64_t r0, size_t n)
{
    for (size_t j = 0; j < n; j++)
        bq_offer(b, r0 + j, c[j] * inv[j]);
}

#if HAVE_AVX2_KERNEL
__attribute__((target("avx2"))) static void
bq_scan_avx2(struct bquery *b, const float *c, const float *inv, uint64_t r0,
             size_t n)
{
    size_t j = 0;
    __m256 fl = _mm256_set1_ps(bq_floor(b));
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(c + j),
                                 _mm256_loadu_ps(inv + j));
        int m = _mm256_movemask_ps(_mm256_cmp_ps(v, fl, _CMP_GE_OQ));
        if (m) {
            float w[8];
            _mm256_storeu_ps(w, v);
            for (int i = 0; i < 8; i++)
                if (m & (1 << i))
                    bq_offer(b, r0 + j + (uint64_t)i, w[i]);
            fl = _mm256_set1_ps(bq_floor(b));
        }
    }
    bq_scan_scalar(b, c + j, inv + j, r0 + j, n - j);
}
#endif

static int
exact_batch(const struct semd_index *ix, const float *queries, size_t nq,
            const struct semd_search *s, struct semd_hit *hits,
            uint32_t *n_hits, uint32_t kmax, struct semd_err *err)
{
    const uint32_t dims = ix->dims;
    float *qu = malloc(nq * dims * sizeof *qu);
    struct bquery *bq = calloc(nq, sizeof *bq);
    float *c = malloc((size_t)BATCH_QB * BATCH_RB * sizeof *c);
    int rc = 0;
    size_t ready = 0;
    if (!qu || !bq || !c) {
        rc = semd_err_set(err, SEMD_ENOMEM, "no memory for %zu queries", nq);
        goto out;
    }
    for (; ready < nq; ready++) {
        struct bquery *b = &bq[ready];
        struct semd_err qe = {0};
        rc = unit_query(ix, queries + ready * dims, qu + ready * dims, &qe);
        if (rc) {
            semd_err_set(err, rc, "query %zu: %s", ready, qe.msg);
            goto out;
        }
        if (excl_init(&b->ex, &s[ready])) {
            rc = semd_err_set(err, SEMD_ENOMEM, "no memory for exclusions");
            goto out;
        }
        b->t.h = hits + ready * kmax;
        b->t.k = s[ready].k;
        b->lim = scan_rows(ix, &s[ready]);
        b->lo = s[ready].use_min_similarity ? s[ready].min_similarity
                                            : -INFINITY;
    }
    for (size_t q0 = 0; q0 < nq; q0 += BATCH_QB) {
        size_t qn = nq - q0 < BATCH_QB ? nq - q0 : BATCH_QB;
        uint64_t lim = 0;
        for (size_t i = 0; i < qn; i++)
            lim = bq[q0 + i].lim > lim ? bq[q0 + i].lim : lim;
        for (uint64_t r0 = 0; r0 < lim; r0 += BATCH_RB) {
            size_t rn = lim - r0 < BATCH_RB ? (size_t)(lim - r0) : BATCH_RB;
            linalg_gemm_nt(qu + q0 * dims, qn, ix->matrix + r0 * dims, rn,
                           dims, c, rn);
            for (size_t i = 0; i < qn; i++) {
                struct bquery *b = &bq[q0 + i];
                if (r0 >= b->lim)
                    continue;
                size_t n = b->lim - r0 < rn ? (size_t)(b->lim - r0) : rn;
#if HAVE_AVX2_KERNEL
                if (ix->simd) {
                    bq_scan_avx2(b, c + i * rn, ix->inv_norms + r0, r0, n);
                    continue;
                }
#endif
                bq_scan_scalar(b, c + i * rn, ix->inv_norms + r0, r0, n);
            }
        }
    }
    for (size_t q = 0; q < nq; q++)
        n_hits[q] = topk_finish(&bq[q].t, hits + q * kmax);
out:
    for (size_t q = 0; bq && q < ready; q++)
        free(bq[q].ex.rows);
    free(qu);
    free(bq);
    free(c);
    return rc;
}

/* A delta index's search: the base's candidates that map to unchanged
 * rows, and every changed or new row, all scored exactly here. */
static int
delta_search(const struct semd_index *ix, const float *unit,
             const struct semd_search *s, const struct excl *ex,
             struct semd_hit *hits, uint32_t *n_hits, struct semd_err *err)
{
    const struct semd_index *b = ix->base;
    /* the gate mutates only the lock and FAISS's parameters */
    struct semd_index *mb = (struct semd_index *)b;
    uint64_t lim = scan_rows(ix, s);
    /* changed rows among the base's answers are dropped: fetch more */
    uint64_t kk = approx_fetch(ix, s) + (ix->n_delta < s->k ? ix->n_delta
                                                            : s->k);
    if (kk > b->rows)
        kk = b->rows;
    float *d = malloc((kk ? kk : 1) * sizeof *d);
    idx_t *lab = malloc((kk ? kk : 1) * sizeof *lab);
    int rc = 0;
    if (!d || !lab) {
        rc = semd_err_set(err, SEMD_ENOMEM, "no memory for %llu candidates",
                          (unsigned long long)kk);
        goto out;
    }
    uint32_t ef = b->def_ef ? (s->ef_search ? s->ef_search : b->def_ef) : 0;
    uint32_t np = b->def_nprobe ? (s->nprobe ? s->nprobe : b->def_nprobe)
                                : 0;
    if (kk) {
        if ((rc = gate_enter(mb, ef, np, err)))
            goto out;
        rc = fcheck(faiss_Index_search(b->fi, 1, unit, (idx_t)kk, d, lab),
                    err, "search");
        gate_leave(mb);
        if (rc)
            goto out;
    }
    struct topk t = {hits, 0, s->k};
    for (uint64_t i = 0; i < kk; i++) {
        if (lab[i] < 0 || (uint64_t)lab[i] >= b->rows)
            continue;
        uint64_t r = ix->base_map[lab[i]];
        if (r >= lim || (ex->n && excl_has(ex, r)))
            continue;
        float v = linalg_dot(ix->matrix + r * ix->dims, unit, ix->dims) *
                  ix->inv_norms[r];
        if (s->use_min_similarity && v < s->min_similarity)
            continue;
        topk_push(&t, r, v);
    }
    for (uint64_t i = 0; i < ix->n_delta && ix->delta[i] < lim; i++) {
        uint64_t r = ix->delta[i];
        if (ex->n && excl_has(ex, r))
            continue;
        float v = linalg_dot(ix->matrix + r * ix->dims, unit, ix->dims) *
                  ix->inv_norms[r];
        if (s->use_min_similarity && v < s->min_similarity)
            continue;
        topk_push(&t, r, v);
    }
    *n_hits = topk_finish(&t, hits);
out:
    free(d);
    free(lab);
    return rc;
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
    float *unit = malloc(ix->dims * sizeof *unit);
    if (!unit)
        return semd_err_set(err, SEMD_ENOMEM, "no memory for a query");
    struct excl ex;
    if ((rc = unit_query(ix, query, unit, err)) || (rc = excl_init(&ex, s))) {
        free(unit);
        return rc == SEMD_ENOMEM ? semd_err_set(err, rc, "no memory for %zu "
                                                "exclusions", s->n_exclude)
                                 : rc;
    }
    if (ix->base)
        rc = delta_search(ix, unit, s, &ex, hits, n_hits, err);
    else if (!ix->exact)
        rc = approx_search(ix, unit, s, &ex, hits, n_hits, err);
    else if (ix->q8codes && (uint64_t)s->k + ex.n < scan_rows(ix, s))
        rc = exact_q8(ix, unit, s, &ex, hits, n_hits, err);
    else
        rc = exact_blas(ix, unit, s, &ex, hits, n_hits, err);
    free(ex.rows);
    free(unit);
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
    if (ix->exact && nq >= BATCH_MIN)
        return exact_batch(ix, queries, nq, s, hits, n_hits, kmax, err);
    int q8all = ix->exact && ix->q8codes && nq >= 2;
    for (size_t q = 0; q8all && q < nq; q++)
        q8all = (uint64_t)s[q].k + s[q].n_exclude < scan_rows(ix, &s[q]);
    if (q8all)
        return exact_q8_multi(ix, queries, nq, s, hits, n_hits, kmax, err);
    if (!ix->exact && !ix->base && nq >= 2)
        return approx_multi(ix, queries, nq, s, hits, n_hits, kmax, err);
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
    struct semd_index_opts none = {0};
    const struct semd_index_opts *o = opts ? opts : &none;
    struct semd_index *ix = calloc(1, sizeof *ix);
    if (!ix)
        return semd_err_set(err, SEMD_ENOMEM, "no memory for an index");
    pthread_mutex_init(&ix->mu, NULL);
    pthread_cond_init(&ix->cv, NULL);
    ix->m = m;
    ix->rows = semd_model_rows(m);
    ix->dims = semd_model_dims(m);
    ix->matrix = semd_model_matrix(m);
    ix->exact = is_flat(o->factory);
    ix->factory = strdup(ix->exact ? "Flat" : o->factory);
    ix->inv_norms = malloc((ix->rows ? ix->rows : 1) * sizeof *ix->inv_norms);
    if (!ix->factory || !ix->inv_norms) {
        semd_index_close(ix);
        return semd_err_set(err, SEMD_ENOMEM, "no memory for an index");
    }
    semd_model_q8(m, &ix->q8codes, &ix->q8aux);
    ix->simd = simd_available();
    const float *norms = semd_model_norms(m);
    for (uint64_t r = 0; r < ix->rows; r++)
        ix->inv_norms[r] = norms[r] > 0 ? 1.0f / norms[r] : 0.0f;
    if (!ix->exact) {
        int rc = open_approx(ix, o, err);
        if (rc) {
            semd_index_close(ix);
            return rc;
        }
    }
    *out = ix;
    return 0;
}

int
semd_index_open_delta(struct semd_index **out, const struct semd_model *m,
                      struct semd_snapshot *base, struct semd_err *err)
{
    if (!out || !m || !base)
        return semd_err_set(err, SEMD_EINVAL, "index, model or base missing");
    const struct semd_index *b = semd_snapshot_index(base);
    const struct semd_model *bm = semd_snapshot_model(base);
    if (b->exact || b->base || !b->fi)
        return semd_err_set(err, SEMD_EINVAL, "the base of a delta index "
                            "must be approximate, not \"%s\"", b->factory);
    if (b->dims != semd_model_dims(m))
        return semd_err_set(err, SEMD_EINVAL, "the base has %u dimensions, "
                            "the model %u", b->dims, semd_model_dims(m));
    struct semd_index_opts o = {0}; /* exact: the common fields */
    struct semd_index *ix;
    int rc = semd_index_open(&ix, m, &o, err);
    if (rc)
        return rc;
    size_t fl = strlen(b->factory) + sizeof "+exact-delta";
    char *f = malloc(fl);
    ix->base_map = malloc((b->rows ? b->rows : 1) * sizeof *ix->base_map);
    ix->delta = malloc((ix->rows ? ix->rows : 1) * sizeof *ix->delta);
    if (!f || !ix->base_map || !ix->delta) {
        free(f);
        semd_index_close(ix);
        return semd_err_set(err, SEMD_ENOMEM, "no memory for a delta index");
    }
    snprintf(f, fl, "%s+exact-delta", b->factory);
    free(ix->factory);
    ix->factory = f;
    ix->exact = 0;
    for (uint64_t r = 0; r < b->rows; r++)
        ix->base_map[r] = UINT64_MAX;
    size_t vb = ix->dims * sizeof(float);
    for (uint64_t r = 0; r < ix->rows; r++) {
        size_t len;
        const char *w = semd_model_word(m, r, &len);
        uint64_t br;
        if (semd_model_lookup(bm, w, len, &br) == 0 &&
            ix->base_map[br] == UINT64_MAX &&
            memcmp(semd_model_row(m, r), semd_model_row(bm, br), vb) == 0)
            ix->base_map[br] = r;
        else
            ix->delta[ix->n_delta++] = r;
    }
    ix->base = b;
    ix->base_snap = semd_snapshot_acquire(base);
    *out = ix;
    return 0;
}

uint64_t
semd_index_delta_rows(const struct semd_index *ix)
{
    return ix->base ? ix->n_delta : 0;
}

const struct semd_snapshot *
semd_index_delta_base(const struct semd_index *ix)
{
    return ix->base_snap;
}

void
semd_index_close(struct semd_index *ix)
{
    if (!ix)
        return;
    free(ix->base_map);
    free(ix->delta);
    semd_snapshot_release(ix->base_snap);
    if (ix->fi)
        faiss_Index_free(ix->fi);
    if (ix->ps)
        faiss_ParameterSpace_free(ix->ps);
    pthread_mutex_destroy(&ix->mu);
    pthread_cond_destroy(&ix->cv);
    free(ix->factory);
    free(ix->path);
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

void
index_set_simd(struct semd_index *ix, int on)
{
    ix->simd = on && simd_available();
}

int
semd_index_loaded(const struct semd_index *ix)
{
    return ix->loaded;
}

const char *
semd_index_note(const struct semd_index *ix)
{
    return ix->note;
}

const char *
semd_index_path(const struct semd_index *ix)
{
    return ix->path;
}

void
semd_set_threads(int blas, int omp)
{
    if (blas > 0)
        linalg_set_threads(blas);
    if (omp > 0)
        omp_set_num_threads(omp);
}
