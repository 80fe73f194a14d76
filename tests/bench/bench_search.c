/*
 * bench_search.c - timings of the index module on a real model, printed as
 * rows of the benchmark table (see tests/bench/run.sh):
 *
 *   bench_search MODEL single GENSIM_MS  exact single query vs gensim's
 *                                        most_similar and vs one read of
 *                                        the matrix
 *   bench_search MODEL batch             1,000 queries vs one bare SGEMM
 *   bench_search MODEL hnsw-build        builds (or loads) HNSW32 beside
 *                                        the model, with progress
 *   bench_search MODEL hnsw              HNSW32 recall@10 and latency at
 *                                        the default efSearch
 *   bench_search MODEL hnsw-batch        HNSW32 per-query time, one query
 *                                        per call vs batches
 *   bench_search MODEL rss               resident memory in exact mode
 *
 * Every figure is the median of several runs; ratios compare figures
 * measured in the same run. Meant to run on one core (taskset, one BLAS
 * thread): the caller sets that up.
 */
#include "semd.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define REPS 9

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void
row(const char *name, const char *measured, const char *reference,
    double ratio, const char *target, int ok)
{
    printf("| %s | %s | %s | %.2f | %s | %s |\n", name, measured, reference,
           ratio, target, ok ? "PASS" : "FAIL");
    fflush(stdout);
}

static void
die(const char *what, const struct semd_err *err)
{
    fprintf(stderr, "bench_search: %s: %s\n", what, err->msg);
    exit(1);
}

/* One sequential read of the matrix: the floor for any method that reads
 * every f32 row. Eight independent sums keep the loop memory-bound. */
__attribute__((target("avx2"), noinline)) static float
sum_matrix(const float *a, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
    }
    float v[8], t = 0;
    _mm256_storeu_ps(v, _mm256_add_ps(_mm256_add_ps(s0, s1),
                                      _mm256_add_ps(s2, s3)));
    for (int j = 0; j < 8; j++)
        t += v[j];
    for (; i < n; i++)
        t += a[i];
    return t;
}

static volatile float sink;

/* Query rows: frequent but not the most frequent words. */
static uint64_t
query_row(uint64_t rows, int i)
{
    uint64_t r = 100 + (uint64_t)i * 37;
    return r % rows;
}

static void
bench_single(struct semd_model *m, double gensim_ms)
{
    struct semd_err err = {0};
    struct semd_index *ix;
    struct semd_index_opts o = {0};
    if (semd_index_open(&ix, m, &o, &err))
        die("index", &err);
    uint64_t rows = semd_model_rows(m);
    uint32_t dims = semd_model_dims(m);
    const float *mat = semd_model_matrix(m);
    double t_floor[REPS], t_q[REPS];
    enum { NQ = 200 };
    struct semd_hit hits[10];
    for (int rep = 0; rep < REPS; rep++) {
        /* the first read may fault pages back in: time the second */
        sink = sum_matrix(mat, rows * dims);
        double t0 = now();
        sink = sum_matrix(mat, rows * dims);
        t_floor[rep] = (now() - t0) * 1e3;
        double per[NQ];
        for (int i = 0; i < NQ; i++) {
            uint64_t r = query_row(rows, i);
            struct semd_search s = {0};
            s.k = 10;
            s.exclude = &r;
            s.n_exclude = 1;
            uint32_t n;
            double a = now();
            if (semd_index_search(ix, semd_model_row(m, r), &s, hits, &n,
                                  &err))
                die("search", &err);
            per[i] = (now() - a) * 1e3;
        }
        t_q[rep] = median(per, NQ);
    }
    double fl = median(t_floor, REPS), q = median(t_q, REPS);
    char a[64], b[64];
    snprintf(a, sizeof a, "%.2f ms", q);
    if (gensim_ms > 0) {
        snprintf(b, sizeof b, "gensim most_similar %.2f ms", gensim_ms);
        row("exact neighbours, 1 query, vs gensim", a, b, q / gensim_ms,
            "<= 0.50", q / gensim_ms <= 0.5);
    }
    snprintf(b, sizeof b, "one read of the matrix %.2f ms", fl);
    row("exact neighbours, 1 query, vs read floor", a, b, q / fl, "<= 1.30",
        q / fl <= 1.3);
    semd_index_close(ix);
}


/* 1,000 queries through the batch path against one bare SGEMM of the same
 * shape (queries x rows x dims) writing every score. */
static void
bench_batch(struct semd_model *m)
{
    struct semd_err err = {0};
    struct semd_index *ix;
    struct semd_index_opts o = {0};
    if (semd_index_open(&ix, m, &o, &err))
        die("index", &err);
    enum { NQ = 1000, K = 10, R = 3 };
    uint64_t rows = semd_model_rows(m);
    uint32_t dims = semd_model_dims(m);
    float *q = malloc((size_t)NQ * dims * sizeof *q);
    float *c = malloc((size_t)NQ * rows * sizeof *c);
    struct semd_search *s = calloc(NQ, sizeof *s);
    struct semd_hit *hits = malloc((size_t)NQ * K * sizeof *hits);
    uint32_t *n = malloc(NQ * sizeof *n);
    uint64_t *ex = malloc(NQ * sizeof *ex);
    if (!q || !c || !s || !hits || !n || !ex) {
        fprintf(stderr, "bench_search: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < NQ; i++) {
        ex[i] = query_row(rows, i);
        memcpy(q + (size_t)i * dims, semd_model_row(m, ex[i]),
               dims * sizeof *q);
        s[i].k = K;
        s[i].exclude = &ex[i];
        s[i].n_exclude = 1;
    }
    memset(c, 0, (size_t)NQ * rows * sizeof *c); /* fault the pages in */
    double tb[R], tg[R];
    for (int rep = 0; rep < R; rep++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, NQ, (int)rows,
                    (int)dims, 1.0f, q, (int)dims, semd_model_matrix(m),
                    (int)dims, 0.0f, c, (int)rows);
        tg[rep] = now() - t0;
        t0 = now();
        if (semd_index_search_batch(ix, q, NQ, s, hits, n, &err))
            die("batch", &err);
        tb[rep] = now() - t0;
    }
    double b = median(tb, R), g = median(tg, R);
    char x[64], y[64];
    snprintf(x, sizeof x, "%.0f queries/s", NQ / b);
    snprintf(y, sizeof y, "bare SGEMM %.0f queries/s", NQ / g);
    row("exact neighbours, batch of 1000, vs SGEMM", x, y, g / b, ">= 0.80",
        g / b >= 0.8);
    free(q);
    free(c);
    free(s);
    free(hits);
    free(n);
    free(ex);
    semd_index_close(ix);
}


static void
open_hnsw(struct semd_model *m, struct semd_index **ix, int progress)
{
    struct semd_err err = {0};
    struct semd_index_opts o = {0};
    o.factory = "HNSW32";
    o.progress = progress;
    if (semd_index_open(ix, m, &o, &err))
        die("HNSW32", &err);
}

/* Recall@10 of HNSW32 at its default efSearch against exact search, and
 * its latency against the exact single query, on random unit directions
 * taken from model rows (the query row itself excluded). */
static void
bench_hnsw(struct semd_model *m)
{
    struct semd_err err = {0};
    struct semd_index *ex, *ap;
    struct semd_index_opts o = {0};
    if (semd_index_open(&ex, m, &o, &err))
        die("index", &err);
    open_hnsw(m, &ap, 0);
    if (!semd_index_loaded(ap))
        fprintf(stderr, "bench_search: HNSW32 was built: %s\n",
                semd_index_note(ap));
    enum { NQ = 500 };
    uint64_t rows = semd_model_rows(m);
    double rsum = 0, te[NQ], ta[NQ];
    for (int i = 0; i < NQ; i++) {
        uint64_t r = (uint64_t)(i * 677 + 13) % rows;
        struct semd_search s = {0};
        s.k = 10;
        s.exclude = &r;
        s.n_exclude = 1;
        struct semd_hit a[10], b[10];
        uint32_t na, nb;
        double t0 = now();
        if (semd_index_search(ex, semd_model_row(m, r), &s, a, &na, &err))
            die("exact", &err);
        te[i] = (now() - t0) * 1e3;
        t0 = now();
        if (semd_index_search(ap, semd_model_row(m, r), &s, b, &nb, &err))
            die("hnsw", &err);
        ta[i] = (now() - t0) * 1e3;
        int found = 0;
        for (uint32_t x = 0; x < na; x++)
            for (uint32_t y = 0; y < nb; y++)
                if (a[x].row == b[y].row) {
                    found++;
                    break;
                }
        rsum += na ? (double)found / na : 1;
    }
    double rec = rsum / NQ, e = median(te, NQ), a = median(ta, NQ);
    char x[64], y[64];
    snprintf(x, sizeof x, "%.3f", rec);
    row("HNSW32 recall@10, default efSearch", x, "exact search", rec / 1.0,
        ">= 0.95", rec >= 0.95);
    snprintf(x, sizeof x, "%.3f ms", a);
    snprintf(y, sizeof y, "exact %.2f ms", e);
    row("HNSW32 latency, default efSearch, vs exact", x, y, a / e, "< 1",
        a < e);
    semd_index_close(ap);
    semd_index_close(ex);
}

static double
cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* HNSW32 per-query cost through semd_index_search (one FAISS call each)
 * against semd_index_search_batch with batches of 4, 16 and 64 (shared
 * FAISS calls), the same queries and k, one thread, the passes
 * interleaved; and whether the batched answers equal the single ones.
 * Thread CPU time, not wall time: on a shared machine the time waiting
 * for a core would swamp a difference of a few percent. */
static void
bench_hnsw_batch(struct semd_model *m)
{
    struct semd_err err = {0};
    struct semd_index *ap;
    open_hnsw(m, &ap, 0);
    enum { NQ = 1024, K = 10, R = 5, NS = 3 };
    static const size_t sizes[NS] = {4, 16, 64};
    uint64_t rows = semd_model_rows(m);
    uint32_t dims = semd_model_dims(m);
    float *q = malloc((size_t)NQ * dims * sizeof *q);
    struct semd_search *s = calloc(NQ, sizeof *s);
    struct semd_hit *h1 = malloc((size_t)NQ * K * sizeof *h1);
    struct semd_hit *hb = malloc((size_t)NS * NQ * K * sizeof *hb);
    uint32_t *n1 = malloc(NQ * sizeof *n1);
    uint32_t *nb = malloc((size_t)NS * NQ * sizeof *nb);
    uint64_t *ex = malloc(NQ * sizeof *ex);
    if (!q || !s || !h1 || !hb || !n1 || !nb || !ex) {
        fprintf(stderr, "bench_search: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < NQ; i++) {
        ex[i] = (uint64_t)(i * 677 + 13) % rows;
        memcpy(q + (size_t)i * dims, semd_model_row(m, ex[i]),
               dims * sizeof *q);
        s[i].k = K;
        s[i].exclude = &ex[i];
        s[i].n_exclude = 1;
    }
    double t1[R], tb[NS][R];
    for (int rep = 0; rep < R; rep++) {
        double t0 = cpu_now();
        for (int i = 0; i < NQ; i++)
            if (semd_index_search(ap, q + (size_t)i * dims, &s[i],
                                  h1 + (size_t)i * K, &n1[i], &err))
                die("hnsw", &err);
        t1[rep] = (cpu_now() - t0) * 1e6 / NQ;
        for (int z = 0; z < NS; z++) {
            size_t bs = sizes[z];
            struct semd_hit *h = hb + (size_t)z * NQ * K;
            t0 = cpu_now();
            for (size_t i = 0; i < NQ; i += bs)
                if (semd_index_search_batch(ap, q + i * dims, bs, s + i,
                                            h + i * K,
                                            nb + (size_t)z * NQ + i, &err))
                    die("hnsw batch", &err);
            tb[z][rep] = (cpu_now() - t0) * 1e6 / NQ;
        }
    }
    double one = median(t1, R);
    char y[64];
    snprintf(y, sizeof y, "one query per call %.0f us", one);
    for (int z = 0; z < NS; z++) {
        const struct semd_hit *h = hb + (size_t)z * NQ * K;
        const uint32_t *n = nb + (size_t)z * NQ;
        int same = 1;
        for (int i = 0; i < NQ && same; i++) {
            same = n1[i] == n[i];
            for (uint32_t j = 0; same && j < n1[i]; j++)
                same = h1[(size_t)i * K + j].row == h[(size_t)i * K + j].row;
        }
        double b = median(tb[z], R);
        char name[128];
        snprintf(name, sizeof name,
                 "HNSW32 CPU per query, batches of %zu, vs one per call%s",
                 sizes[z], same ? "" : " (answers differ)");
        /* information: whether FAISS amortises anything over a batch;
         * only answers that differ fail */
        printf("| %s | %.0f us | %s | %.2f | equal answers | %s |\n", name, b,
               y, b / one, same ? "-" : "FAIL");
        fflush(stdout);
    }
    free(q);
    free(s);
    free(h1);
    free(hb);
    free(n1);
    free(nb);
    free(ex);
    semd_index_close(ap);
}

static long
rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* Resident memory in exact mode after single queries and a batch (which
 * reads every row), against the model file's size. */
static void
bench_rss(struct semd_model *m)
{
    struct semd_err err = {0};
    struct semd_index *ix;
    struct semd_index_opts o = {0};
    if (semd_index_open(&ix, m, &o, &err))
        die("index", &err);
    uint64_t rows = semd_model_rows(m);
    uint32_t dims = semd_model_dims(m);
    enum { NQ = 64 };
    float *q = malloc((size_t)NQ * dims * sizeof *q);
    struct semd_search s[NQ];
    struct semd_hit hits[NQ * 10];
    uint32_t n[NQ];
    memset(s, 0, sizeof s);
    for (int i = 0; i < NQ; i++) {
        memcpy(q + (size_t)i * dims, semd_model_row(m, query_row(rows, i)),
               dims * sizeof *q);
        s[i].k = 10;
        if (semd_index_search(ix, q + (size_t)i * dims, &s[i], hits, &n[i],
                              &err))
            die("search", &err);
    }
    if (semd_index_search_batch(ix, q, NQ, s, hits, n, &err))
        die("batch", &err);
    sink = sum_matrix(semd_model_matrix(m), rows * dims);
    struct semd_model_info in;
    semd_model_get_info(m, &in);
    double mb = rss_kb() / 1024.0, fmb = in.file_size / 1048576.0;
    char x[64], y[64];
    snprintf(x, sizeof x, "%.0f MB", mb);
    snprintf(y, sizeof y, "model file %.0f MB", fmb);
    row("resident memory, exact mode, vs model file", x, y, mb / fmb,
        "<= 1.10", mb / fmb <= 1.1);
    free(q);
    semd_index_close(ix);
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_search MODEL "
                        "single|batch|hnsw-build|hnsw|hnsw-batch|rss "
                        "[GENSIM_MS]\n");
        return 2;
    }
    struct semd_err err = {0};
    struct semd_model *m;
    if (semd_model_open(&m, argv[1], &err))
        die("model", &err);
    if (strcmp(argv[2], "single") == 0)
        bench_single(m, argc > 3 ? atof(argv[3]) : 0);
    else if (strcmp(argv[2], "batch") == 0)
        bench_batch(m);
    else if (strcmp(argv[2], "hnsw-build") == 0) {
        struct semd_index *ix;
        open_hnsw(m, &ix, 1);
        semd_index_close(ix);
    } else if (strcmp(argv[2], "hnsw") == 0)
        bench_hnsw(m);
    else if (strcmp(argv[2], "hnsw-batch") == 0)
        bench_hnsw_batch(m);
    else if (strcmp(argv[2], "rss") == 0)
        bench_rss(m);
    semd_model_close(m);
    return 0;
}
