/*
 * tokens_report.c - the health report of a model's rows (semd.h, "token
 * health"): outlying norms, near-duplicate rows and, on a model carrying
 * a tokenizer, tokens that text never turns into.
 *
 * Near-duplicates by hashing: each row gets, per table, the signs of its
 * dot products with 16 random Gaussian directions (random-hyperplane LSH:
 * two rows at angle t agree on one sign with probability 1 - t / pi).
 * Rows are sorted by code per table and every pair inside a bucket is
 * scored exactly, so no pair is ever reported above the threshold that is
 * not; hashing can only miss pairs (identical rows never). The projections
 * are one matrix product per block of rows.
 *
 * Invariants: the report's lists are sorted worst first and hold at most
 * max_list entries; the counts are complete. Outputs are written only on
 * success.
 *
 * Threads: reads the model, the index and the tokenizer only; any number
 * of reports may run at once. Scratch space is per call.
 */
#include "semd.h"

#include "linalg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LSH_TABLES 12
#define LSH_BITS 16
#define BLOCK 4096

/* ---------------------------------------------------------------- norms */

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int
cmp_low(const void *a, const void *b)
{
    const struct semd_norm_flag *x = a, *y = b;
    if (x->z != y->z)
        return x->z < y->z ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

static int
cmp_high(const void *a, const void *b)
{
    const struct semd_norm_flag *x = a, *y = b;
    if (x->z != y->z)
        return x->z > y->z ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* Median of n sorted values. */
static double
median(const double *v, size_t n)
{
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Sorts a list worst first and keeps max entries. */
static void
keep(struct semd_norm_flag *l, uint64_t n, size_t max, size_t *listed,
     int (*cmp)(const void *, const void *))
{
    if (n > 1) /* an empty list may have no array: qsort wants one */
        qsort(l, (size_t)n, sizeof *l, cmp);
    *listed = n < max ? (size_t)n : max;
}

static int
norms(const struct semd_model *m, double zlim, size_t max,
      struct semd_tokens_report *r, struct semd_err *err)
{
    uint64_t rows = semd_model_rows(m);
    const float *nv = semd_model_norms(m);
    double *lg = malloc(rows * sizeof *lg);
    r->zero = malloc(rows * sizeof *r->zero);
    r->low = malloc(rows * sizeof *r->low);
    r->high = malloc(rows * sizeof *r->high);
    if (!lg || !r->zero || !r->low || !r->high) {
        free(lg);
        return semd_err_set(err, SEMD_ENOMEM, "no memory for %llu norms",
                            (unsigned long long)rows);
    }
    size_t n = 0;
    r->norm_min = INFINITY;
    r->norm_max = 0;
    for (uint64_t i = 0; i < rows; i++) {
        if (!(nv[i] > 0)) {
            r->zero[r->n_zero++] = (struct semd_norm_flag){i, 0.0f, 0.0f};
            continue;
        }
        lg[n++] = log(nv[i]);
        r->norm_min = nv[i] < r->norm_min ? nv[i] : r->norm_min;
        r->norm_max = nv[i] > r->norm_max ? nv[i] : r->norm_max;
    }
    if (n == 0) {
        r->norm_min = 0;
        free(lg);
        keep(r->zero, r->n_zero, max, &r->zero_listed, cmp_low);
        return 0;
    }
    qsort(lg, n, sizeof *lg, cmp_double);
    double med = median(lg, n);
    for (size_t i = 0; i < n; i++)
        lg[i] = fabs(lg[i] - med);
    qsort(lg, n, sizeof *lg, cmp_double);
    double mad = median(lg, n);
    free(lg);
    r->norm_median = exp(med);
    r->log_norm_mad = mad;
    /* all norms (nearly) equal: any other norm is infinitely far out;
     * keep z finite so that it stays a number in JSON */
    double sd = 1.4826 * (mad > 1e-12 ? mad : 1e-12);
    for (uint64_t i = 0; i < rows; i++) {
        if (!(nv[i] > 0))
            continue;
        double z = (log(nv[i]) - med) / sd;
        struct semd_norm_flag f = {i, nv[i], (float)z};
        if (z < -zlim)
            r->low[r->n_low++] = f;
        else if (z > zlim)
            r->high[r->n_high++] = f;
    }
    keep(r->zero, r->n_zero, max, &r->zero_listed, cmp_low);
    keep(r->low, r->n_low, max, &r->low_listed, cmp_low);
    keep(r->high, r->n_high, max, &r->high_listed, cmp_high);
    return 0;
}

/* ------------------------------------------------------- near-duplicates */

struct pairs {
    struct semd_dup_pair *p;
    size_t n, cap;
};

static int
pair_add(struct pairs *ps, uint64_t a, uint64_t b, float c)
{
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? 2 * ps->cap : 256;
        struct semd_dup_pair *q = realloc(ps->p, cap * sizeof *q);
        if (!q)
            return SEMD_ENOMEM;
        ps->p = q;
        ps->cap = cap;
    }
    if (a > b) {
        uint64_t t = a;
        a = b;
        b = t;
    }
    ps->p[ps->n++] = (struct semd_dup_pair){a, b, c > 1.0f ? 1.0f : c};
    return 0;
}

static int
cmp_pair_rows(const void *x, const void *y)
{
    const struct semd_dup_pair *a = x, *b = y;
    if (a->a != b->a)
        return a->a < b->a ? -1 : 1;
    return a->b < b->b ? -1 : a->b > b->b;
}

static int
cmp_pair_worst(const void *x, const void *y)
{
    const struct semd_dup_pair *a = x, *b = y;
    if (a->cosine != b->cosine)
        return a->cosine > b->cosine ? -1 : 1;
    return cmp_pair_rows(x, y);
}

/* splitmix64, and a standard normal from two of its draws (Box-Muller) */
static uint64_t
next64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float
gauss(uint64_t *s)
{
    double u = ((double)(next64(s) >> 11) + 0.5) / 9007199254740992.0;
    double v = (double)(next64(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v));
}

struct coded {
    uint32_t code;
    uint64_t row;
};

static int
cmp_coded(const void *x, const void *y)
{
    const struct coded *a = x, *b = y;
    if (a->code != b->code)
        return a->code < b->code ? -1 : 1;
    return a->row < b->row ? -1 : a->row > b->row;
}

static int
dups_hashed(const struct semd_model *m, double thr, uint64_t seed,
            struct pairs *ps, uint64_t *scored, struct semd_err *err)
{
    uint64_t rows = semd_model_rows(m);
    uint32_t d = semd_model_dims(m);
    const size_t np = LSH_TABLES * LSH_BITS;
    const float *mat = semd_model_matrix(m);
    const float *nv = semd_model_norms(m);
    float *proj = malloc(np * d * sizeof *proj);
    float *out = malloc((size_t)BLOCK * np * sizeof *out);
    uint16_t *codes = malloc(rows * LSH_TABLES * sizeof *codes);
    struct coded *tab = malloc(rows * sizeof *tab);
    int rc = 0;
    if (!proj || !out || !codes || !tab) {
        rc = semd_err_set(err, SEMD_ENOMEM, "no memory to hash %llu rows",
                          (unsigned long long)rows);
        goto out;
    }
    uint64_t st = seed;
    for (size_t i = 0; i < np * d; i++)
        proj[i] = gauss(&st);
    for (uint64_t r0 = 0; r0 < rows; r0 += BLOCK) {
        size_t nb = rows - r0 < BLOCK ? (size_t)(rows - r0) : BLOCK;
        linalg_gemm_nt(mat + r0 * d, nb, proj, np, d, out, np);
        for (size_t i = 0; i < nb; i++)
            for (size_t t = 0; t < LSH_TABLES; t++) {
                uint16_t c = 0;
                for (size_t b = 0; b < LSH_BITS; b++)
                    c = (uint16_t)(c << 1 |
                                   (out[i * np + t * LSH_BITS + b] > 0));
                codes[(r0 + i) * LSH_TABLES + t] = c;
            }
    }
    for (size_t t = 0; t < LSH_TABLES; t++) {
        size_t n = 0;
        for (uint64_t r = 0; r < rows; r++)
            if (nv[r] > 0)
                tab[n++] = (struct coded){codes[r * LSH_TABLES + t], r};
        qsort(tab, n, sizeof *tab, cmp_coded);
        for (size_t i = 0; i < n;) {
            size_t j = i + 1;
            while (j < n && tab[j].code == tab[i].code)
                j++;
            for (size_t a = i; a < j; a++) {
                uint64_t ra = tab[a].row;
                const float *va = mat + ra * d;
                for (size_t b = a + 1; b < j; b++) {
                    uint64_t rb = tab[b].row;
                    float c = linalg_dot(va, mat + rb * d, d) / nv[ra] /
                              nv[rb];
                    (*scored)++;
                    if (c >= thr && pair_add(ps, ra, rb, c)) {
                        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
                        goto out;
                    }
                }
            }
            i = j;
        }
    }
out:
    free(tab);
    free(codes);
    free(out);
    free(proj);
    return rc;
}

static int
dups_exact(const struct semd_index *ix, double thr, struct pairs *ps,
           uint64_t *scored, struct semd_err *err)
{
    const struct semd_model *m = semd_index_model(ix);
    uint64_t rows = semd_model_rows(m);
    uint32_t d = semd_model_dims(m);
    const float *mat = semd_model_matrix(m);
    const float *nv = semd_model_norms(m);
    if (rows < 2)
        return 0;
    uint64_t *self = malloc(BLOCK * sizeof *self);
    float *q = malloc((size_t)BLOCK * d * sizeof *q);
    struct semd_search *s = calloc(BLOCK, sizeof *s);
    struct semd_hit *hits = malloc(BLOCK * sizeof *hits);
    uint32_t *nh = malloc(BLOCK * sizeof *nh);
    int rc = 0;
    if (!self || !q || !s || !hits || !nh) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    for (uint64_t r0 = 0; r0 < rows && !rc; r0 += BLOCK) {
        size_t n = 0;
        for (uint64_t r = r0; r < rows && r < r0 + BLOCK; r++) {
            if (!(nv[r] > 0))
                continue; /* a zero row has no direction */
            self[n] = r;
            memcpy(q + n * d, mat + r * d, d * sizeof *q);
            s[n] = (struct semd_search){.k = 1, .exclude = &self[n],
                                        .n_exclude = 1};
            n++;
        }
        if (n && (rc = semd_index_search_batch(ix, q, n, s, hits, nh, err)))
            break;
        *scored += n * (rows - 1);
        for (size_t i = 0; i < n; i++)
            if (nh[i] == 1 && hits[i].score >= thr &&
                pair_add(ps, self[i], hits[i].row, hits[i].score))
                rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
out:
    free(nh);
    free(hits);
    free(s);
    free(q);
    free(self);
    return rc;
}

/* ---------------------------------------------------------- unreachable */

static int
unreachable(const struct semd_model *m, const struct semd_tokenizer *t,
            size_t max, struct semd_tokens_report *r, struct semd_err *err)
{
    uint32_t n = semd_tokenizer_size(t), nm = semd_tokenizer_merges(t);
    unsigned char *made = calloc(n, 1);
    r->unreachable = malloc((max ? max : 1) * sizeof *r->unreachable);
    if (!made || !r->unreachable) {
        free(made);
        return semd_err_set(err, SEMD_ENOMEM, "no memory for %u tokens", n);
    }
    for (unsigned b = 0; b < 256; b++) {
        char c = (char)b;
        uint32_t id;
        if (semd_tokenizer_find(t, &c, 1, &id) == 0)
            made[id] = 1;
    }
    for (uint32_t k = 0; k < nm; k++) {
        uint32_t a, b, res;
        if (semd_tokenizer_merge(t, k, &a, &b, &res) == 0 && res < n)
            made[res] = 1;
    }
    int rc = 0;
    for (uint32_t id = 0; id < n; id++) {
        size_t tl, bl;
        const char *name = semd_tokenizer_token(t, id, &tl);
        const char *bytes = semd_tokenizer_bytes(t, id, &bl);
        uint64_t row;
        if (!name || !bytes) {
            rc = semd_err_set(err, SEMD_ECORRUPT,
                              "tokenizer: token %u is damaged", id);
            break;
        }
        if (tl == 0 || tl > SEMD_MAX_WORD ||
            semd_model_lookup(m, name, tl, &row) != 0) {
            row = UINT64_MAX;
            r->n_no_row++;
        }
        struct semd_token *toks = NULL;
        size_t nt = 0;
        if ((rc = semd_tokenize(t, bytes, bl, &toks, &nt, err)) != 0)
            break;
        int ok = nt == 1 && toks[0].id == id;
        if (!ok) {
            struct semd_unreachable u = {
                .id = id,
                .row = row,
                .reason = made[id] ? SEMD_UNREACH_SPLIT
                                   : SEMD_UNREACH_NO_MERGE,
                .n_ids = (uint32_t)nt,
            };
            for (size_t i = 0; i < nt && i < SEMD_UNREACH_IDS; i++)
                u.ids[i] = toks[i].id;
            if (r->unreachable_listed < max)
                r->unreachable[r->unreachable_listed++] = u;
            r->n_unreachable++;
            r->n_no_merge += !made[id];
        }
        free(toks);
    }
    free(made);
    return rc;
}

/* --------------------------------------------------------------- report */

void
semd_tokens_report_release(struct semd_tokens_report *r)
{
    if (!r)
        return;
    free(r->zero);
    free(r->low);
    free(r->high);
    free(r->dups);
    free(r->unreachable);
    memset(r, 0, sizeof *r);
}

int
semd_tokens_report(const struct semd_index *ix,
                   const struct semd_tokens_report_opts *opts,
                   struct semd_tokens_report *out, struct semd_err *err)
{
    if (!ix || !out)
        return semd_err_set(err, SEMD_EINVAL, "index or report missing");
    struct semd_tokens_report_opts o = {0};
    if (opts)
        o = *opts;
    if (o.z_limit == 0)
        o.z_limit = 3.5;
    if (o.dup_cosine == 0)
        o.dup_cosine = 0.99;
    if (o.max_list == 0)
        o.max_list = 100;
    if (o.seed == 0)
        o.seed = 1;
    if (!(o.z_limit > 0) || !isfinite(o.z_limit))
        return semd_err_set(err, SEMD_EINVAL,
                            "z limit must be positive, got %g", o.z_limit);
    if (!(o.dup_cosine > 0 && o.dup_cosine <= 1))
        return semd_err_set(err, SEMD_EINVAL,
                            "duplicate cosine must be in (0, 1], got %g",
                            o.dup_cosine);
    const struct semd_model *m = semd_index_model(ix);
    struct semd_tokens_report r = {0};
    r.rows = semd_model_rows(m);
    r.dims = semd_model_dims(m);
    r.z_limit = o.z_limit;
    r.dup_cosine = o.dup_cosine;
    r.dup_exact = o.exact != 0;
    struct pairs ps = {0};
    int rc = norms(m, o.z_limit, o.max_list, &r, err);
    if (rc)
        goto fail;
    if (o.exact)
        rc = dups_exact(ix, o.dup_cosine, &ps, &r.dup_scored, err);
    else
        rc = dups_hashed(m, o.dup_cosine, o.seed, &ps, &r.dup_scored, err);
    if (rc)
        goto fail;
    /* a pair found in several tables (or from both ends) counts once; no
     * pair, no array (qsort must not be given NULL) */
    if (ps.n > 1)
        qsort(ps.p, ps.n, sizeof *ps.p, cmp_pair_rows);
    size_t u = 0;
    for (size_t i = 0; i < ps.n; i++)
        if (u == 0 || cmp_pair_rows(&ps.p[i], &ps.p[u - 1]) != 0)
            ps.p[u++] = ps.p[i];
    if (u > 1)
        qsort(ps.p, u, sizeof *ps.p, cmp_pair_worst);
    r.n_dups = u;
    r.dups_listed = u < o.max_list ? u : o.max_list;
    r.dups = ps.p;
    ps.p = NULL;
    const struct semd_tokenizer *t = semd_model_tokenizer(m);
    if (t) {
        r.has_tokenizer = 1;
        r.tokens = semd_tokenizer_size(t);
        if ((rc = unreachable(m, t, o.max_list, &r, err)))
            goto fail;
    }
    *out = r;
    return 0;
fail:
    free(ps.p);
    semd_tokens_report_release(&r);
    return rc;
}
