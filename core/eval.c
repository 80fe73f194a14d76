/*
 * eval.c - how good are these vectors: the analogy test (questions-words
 * format) and word-pair similarity correlations (WordSim-353 format),
 * computed as gensim 4.2 computes them so the numbers can be compared.
 *
 * gensim's rules, kept here on purpose:
 *  - case_insensitive: every word is upper-cased (Python's str.upper) and
 *    looked up among the upper-cased first N words, where the most frequent
 *    spelling wins;
 *  - analogies: a line of other than 4 words is skipped and not counted; a
 *    question with a word outside the first N is counted but not
 *    evaluated; the answer is the first of the top 5 (inputs excluded)
 *    whose upper-cased word is not an upper-cased input, else the fifth;
 *  - pairs: fields split on tabs (a line without a tab is split on spaces
 *    here, where gensim would skip it), "#" starts a comment line; Spearman
 *    with average ranks for ties, as scipy.stats.spearmanr.
 * The 3CosMul variant uses most_similar_cosmul over the same first N rows.
 *
 * Questions are answered in batches (one matrix product per batch where
 * the index is exact), so the whole Google set takes seconds.
 *
 * Threads: only reads the model and index; any number may run at once.
 */
#include "semd.h"

#include "model.h"
#include "query.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -------------------------------------------------------------- files */

static int
read_all(const char *path, char **buf, size_t *len, struct semd_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return semd_err_set(err, SEMD_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
        }
        size_t got = fread(b + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (!b)
        return semd_err_set(err, SEMD_ENOMEM, "%s: out of memory", path);
    if (bad) {
        free(b);
        return semd_err_set(err, SEMD_EIO, "%s: read error", path);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

/* Python's str.split() whitespace, for ASCII. */
static int
is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* ------------------------------------------------ upper-cased vocabulary */

/* Maps upper-cased words (the ones a test file uses) to the most frequent
 * row among the first N whose upper-cased form they are. Keys are named by
 * their index in keys[], which stays valid while the table grows. */
struct ukey {
    char *s;
    size_t len;
    uint64_t row; /* UINT64_MAX: not among the first N rows */
};

struct uvocab {
    struct ukey *keys;
    size_t n, capk;
    size_t *slots; /* key index + 1; 0 is empty */
    size_t cap;    /* a power of two, > 2 n */
};

static void
uvocab_free(struct uvocab *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->keys[i].s);
    free(v->keys);
    free(v->slots);
}

/* The slot of s: holding it, or the empty one where it would go. */
static size_t
uvocab_slot(const struct uvocab *v, const char *s, size_t len)
{
    size_t i = (size_t)model_hash(s, len) & (v->cap - 1);
    while (v->slots[i]) {
        const struct ukey *k = &v->keys[v->slots[i] - 1];
        if (k->len == len && memcmp(k->s, s, len) == 0)
            break;
        i = (i + 1) & (v->cap - 1);
    }
    return i;
}

/* Adds a key (already upper-cased) unless present; returns its index, or
 * SIZE_MAX when out of memory. */
static size_t
uvocab_add(struct uvocab *v, const char *s, size_t len)
{
    if (v->cap <= 2 * (v->n + 1)) {
        size_t ncap = v->cap ? v->cap * 2 : 1024;
        size_t *ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return SIZE_MAX;
        free(v->slots);
        v->slots = ns;
        v->cap = ncap;
        for (size_t k = 0; k < v->n; k++)
            ns[uvocab_slot(v, v->keys[k].s, v->keys[k].len)] = k + 1;
    }
    size_t i = uvocab_slot(v, s, len);
    if (v->slots[i])
        return v->slots[i] - 1;
    if (v->n == v->capk) {
        size_t nc = v->capk ? v->capk * 2 : 1024;
        struct ukey *nk = realloc(v->keys, nc * sizeof *nk);
        if (!nk)
            return SIZE_MAX;
        v->keys = nk;
        v->capk = nc;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return SIZE_MAX;
    memcpy(copy, s, len);
    copy[len] = '\0';
    v->keys[v->n] = (struct ukey){copy, len, UINT64_MAX};
    v->slots[i] = ++v->n;
    return v->n - 1;
}

/* Fills each key's row with the first of rows [0, n) whose upper-cased
 * word equals it. Stops early once every key is found. */
static void
uvocab_fill(struct uvocab *v, const struct semd_model *m, uint64_t n)
{
    size_t left = v->n;
    char up[SEMD_MAX_WORD * 3];
    for (uint64_t r = 0; r < n && left; r++) {
        size_t len;
        const char *w = semd_model_word(m, r, &len);
        size_t ul = query_upper(w, len, up, sizeof up);
        if (ul == SIZE_MAX)
            continue;
        size_t i = uvocab_slot(v, up, ul);
        if (v->slots[i] && v->keys[v->slots[i] - 1].row == UINT64_MAX) {
            v->keys[v->slots[i] - 1].row = r;
            left--;
        }
    }
}

/* Upper-cases a word of the test file into the table; returns its index,
 * SIZE_MAX when out of memory. A word that cannot be upper-cased (too
 * long) gets an entry that no row matches. */
static size_t
add_word(struct uvocab *v, const char *w, size_t len)
{
    char up[SEMD_MAX_WORD * 3];
    size_t ul = len <= SEMD_MAX_WORD ? query_upper(w, len, up, sizeof up)
                                     : SIZE_MAX;
    if (ul == SIZE_MAX) /* upper-cased words never hold control bytes */
        return uvocab_add(v, "\x01", 1);
    return uvocab_add(v, up, ul);
}

static uint64_t
clamp_rows(const struct semd_model *m, uint64_t restrict_rows)
{
    uint64_t rows = semd_model_rows(m);
    return restrict_rows && restrict_rows < rows ? restrict_rows : rows;
}

/* ------------------------------------------------------------ analogies */

struct question {
    uint32_t section;
    uint64_t ra, rb, rc;
    /* upper-cased words, owned by the table (each key its own string) */
    const char *ua, *ub, *uc, *ue;
    size_t la, lb, lc, le;
};

void
semd_eval_analogies_release(struct semd_eval_analogies *r)
{
    if (!r)
        return;
    free(r->sections);
    r->sections = NULL;
    r->n_sections = 0;
}

/* Python's line.lstrip(': ').strip() */
static void
section_name(const char *s, size_t n, char *out, size_t cap)
{
    size_t i = 0;
    while (i < n && (s[i] == ':' || s[i] == ' '))
        i++;
    while (i < n && is_space((unsigned char)s[i]))
        i++;
    while (n > i && is_space((unsigned char)s[n - 1]))
        n--;
    size_t len = n - i < cap - 1 ? n - i : cap - 1;
    memcpy(out, s + i, len);
    out[len] = '\0';
}

static int
eq_key(const char *a, size_t la, const char *b, size_t lb)
{
    return la == lb && memcmp(a, b, la) == 0;
}

/* gensim's choice among the top hits, then the comparison. */
static int
judge(const struct semd_model *m, const struct question *q,
      const struct semd_hit *hits, uint32_t n)
{
    char up[SEMD_MAX_WORD * 3];
    size_t ul = SIZE_MAX;
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        const char *w = semd_model_word(m, hits[i].row, &len);
        ul = query_upper(w, len, up, sizeof up);
        if (ul == SIZE_MAX)
            continue;
        if (!eq_key(up, ul, q->ua, q->la) && !eq_key(up, ul, q->ub, q->lb) &&
            !eq_key(up, ul, q->uc, q->lc))
            break;
    }
    return ul != SIZE_MAX && eq_key(up, ul, q->ue, q->le);
}

#define EVAL_TOPN 5
#define EVAL_BATCH 256

static int
answer_cosadd(const struct semd_index *ix, const struct question *qs,
              size_t nq, uint64_t n, int *correct, struct semd_err *err)
{
    const struct semd_model *m = semd_index_model(ix);
    uint32_t d = semd_model_dims(m);
    float *vecs = malloc(EVAL_BATCH * d * sizeof *vecs);
    float *u = malloc(3 * d * sizeof *u);
    struct semd_search *ss = calloc(EVAL_BATCH, sizeof *ss);
    uint64_t *ex = malloc(EVAL_BATCH * 3 * sizeof *ex);
    struct semd_hit *hits = malloc(EVAL_BATCH * EVAL_TOPN * sizeof *hits);
    uint32_t *nh = malloc(EVAL_BATCH * sizeof *nh);
    int rc = 0;
    if (!vecs || !u || !ss || !ex || !hits || !nh) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t b0 = 0; b0 < nq && !rc; b0 += EVAL_BATCH) {
        size_t nb = nq - b0 < EVAL_BATCH ? nq - b0 : EVAL_BATCH;
        for (size_t j = 0; j < nb; j++) {
            const struct question *q = &qs[b0 + j];
            /* most_similar(positive=[b, c], negative=[a]) */
            query_unit_row(m, q->rb, u);
            query_unit_row(m, q->rc, u + d);
            query_unit_row(m, q->ra, u + 2 * d);
            double s = 0;
            float *v = vecs + j * d;
            for (uint32_t i = 0; i < d; i++) {
                double x = (double)u[i] + u[d + i] - u[2 * d + i];
                v[i] = (float)x;
                s += x * x;
            }
            if (!(s > 0)) /* the inputs cancel: gensim finds nothing */
                v[0] = 1.0f;
            ex[3 * j] = q->ra;
            ex[3 * j + 1] = q->rb;
            ex[3 * j + 2] = q->rc;
            ss[j] = (struct semd_search){.k = EVAL_TOPN,
                                         .restrict_rows = n,
                                         .exclude = ex + 3 * j,
                                         .n_exclude = 3};
        }
        rc = semd_index_search_batch(ix, vecs, nb, ss, hits, nh, err);
        for (size_t j = 0; j < nb && !rc; j++)
            correct[b0 + j] =
                judge(m, &qs[b0 + j], hits + j * EVAL_TOPN, nh[j]);
    }
out:
    free(nh);
    free(hits);
    free(ex);
    free(ss);
    free(u);
    free(vecs);
    return rc;
}

static int
answer_cosmul(const struct semd_model *m, const struct question *qs,
              size_t nq, uint64_t n, int *correct, struct semd_err *err)
{
    uint32_t d = semd_model_dims(m);
    static const int sign[3] = {1, 1, -1};
    float *terms = malloc(EVAL_BATCH * 3 * d * sizeof *terms);
    struct cosmul_query *cq = calloc(EVAL_BATCH, sizeof *cq);
    uint64_t *ex = malloc(EVAL_BATCH * 3 * sizeof *ex);
    struct semd_hit *hits = malloc(EVAL_BATCH * EVAL_TOPN * sizeof *hits);
    int rc = 0;
    if (!terms || !cq || !ex || !hits) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t b0 = 0; b0 < nq && !rc; b0 += EVAL_BATCH) {
        size_t nb = nq - b0 < EVAL_BATCH ? nq - b0 : EVAL_BATCH;
        for (size_t j = 0; j < nb; j++) {
            const struct question *q = &qs[b0 + j];
            /* most_similar_cosmul(positive=[b, c], negative=[a]) */
            query_unit_row(m, q->rb, terms + (3 * j) * d);
            query_unit_row(m, q->rc, terms + (3 * j + 1) * d);
            query_unit_row(m, q->ra, terms + (3 * j + 2) * d);
            ex[3 * j] = q->ra;
            ex[3 * j + 1] = q->rb;
            ex[3 * j + 2] = q->rc;
            cq[j] = (struct cosmul_query){.first = 3 * j,
                                          .n_terms = 3,
                                          .sign = sign,
                                          .exclude = ex + 3 * j,
                                          .n_exclude = 3,
                                          .k = EVAL_TOPN,
                                          .hits = hits + j * EVAL_TOPN};
        }
        rc = query_cosmul(m, n, terms, 3 * nb, cq, nb, err);
        for (size_t j = 0; j < nb && !rc; j++)
            correct[b0 + j] = judge(m, &qs[b0 + j], cq[j].hits, cq[j].n_hits);
    }
out:
    free(hits);
    free(ex);
    free(cq);
    free(terms);
    return rc;
}

int
semd_eval_analogies(const struct semd_index *ix, const char *path,
                    uint64_t restrict_rows, int method,
                    struct semd_eval_analogies *out, struct semd_err *err)
{
    if (!ix || !path || !out)
        return semd_err_set(err, SEMD_EINVAL, "index, path or output missing");
    if (method != SEMD_3COSADD && method != SEMD_3COSMUL)
        return semd_err_set(err, SEMD_EINVAL,
                            "unknown analogy method %d (3cosadd or 3cosmul)",
                            method);
    const struct semd_model *m = semd_index_model(ix);
    uint64_t n = clamp_rows(m, restrict_rows);
    char *buf;
    size_t len;
    int rc = read_all(path, &buf, &len, err);
    if (rc)
        return rc;
    struct uvocab v = {0};
    struct semd_eval_section *secs = NULL;
    size_t nsec = 0, capsec = 0;
    struct question *qs = NULL;
    size_t nq = 0, capq = 0;
    struct qraw {
        uint32_t section;
        size_t w[4]; /* key indices */
    } *raw = NULL;
    int *correct = NULL;
    uint64_t lineno = 0;
    for (size_t p = 0; p < len;) {
        const char *line = buf + p;
        const char *nl = memchr(line, '\n', len - p);
        size_t ll = nl ? (size_t)(nl - line) : len - p;
        p += ll + 1;
        lineno++;
        if (model_utf8_valid_prefix(line, ll) != ll) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s:%llu: invalid UTF-8 or a NUL byte", path,
                              (unsigned long long)lineno);
            goto out;
        }
        if (ll >= 2 && line[0] == ':' && line[1] == ' ') {
            if (nsec == capsec) {
                capsec = capsec ? capsec * 2 : 16;
                void *ns = realloc(secs, capsec * sizeof *secs);
                if (!ns)
                    goto nomem;
                secs = ns;
            }
            memset(&secs[nsec], 0, sizeof secs[nsec]);
            section_name(line, ll, secs[nsec].name, sizeof secs[nsec].name);
            nsec++;
            continue;
        }
        if (nsec == 0) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s:%llu: missing section header (\": name\") "
                              "before the first question",
                              path, (unsigned long long)lineno);
            goto out;
        }
        const char *tok[5];
        size_t tl[5];
        int nt = 0;
        for (size_t i = 0; i < ll && nt < 5;) {
            while (i < ll && is_space((unsigned char)line[i]))
                i++;
            if (i == ll)
                break;
            size_t st = i;
            while (i < ll && !is_space((unsigned char)line[i]))
                i++;
            tok[nt] = line + st;
            tl[nt++] = i - st;
        }
        if (nt != 4)
            continue; /* gensim skips such lines without counting them */
        secs[nsec - 1].questions++;
        if (nq == capq) {
            capq = capq ? capq * 2 : 4096;
            void *nr = realloc(raw, capq * sizeof *raw);
            if (!nr)
                goto nomem;
            raw = nr;
        }
        raw[nq].section = (uint32_t)(nsec - 1);
        for (int t = 0; t < 4; t++)
            if ((raw[nq].w[t] = add_word(&v, tok[t], tl[t])) == SIZE_MAX)
                goto nomem;
        nq++;
    }
    uvocab_fill(&v, m, n);
    if (nq && !(qs = malloc(nq * sizeof *qs)))
        goto nomem;
    size_t ne = 0;
    for (size_t i = 0; i < nq; i++) {
        const struct ukey *a = &v.keys[raw[i].w[0]], *b = &v.keys[raw[i].w[1]];
        const struct ukey *c = &v.keys[raw[i].w[2]], *e = &v.keys[raw[i].w[3]];
        if (a->row == UINT64_MAX || b->row == UINT64_MAX ||
            c->row == UINT64_MAX || e->row == UINT64_MAX)
            continue; /* counted, not evaluated */
        qs[ne++] = (struct question){raw[i].section, a->row, b->row, c->row,
                                     a->s, b->s, c->s, e->s,
                                     a->len, b->len, c->len, e->len};
    }
    if (ne && !(correct = calloc(ne, sizeof *correct)))
        goto nomem;
    if (ne)
        rc = method == SEMD_3COSADD
                 ? answer_cosadd(ix, qs, ne, n, correct, err)
                 : answer_cosmul(m, qs, ne, n, correct, err);
    if (rc)
        goto out;
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < ne; i++) {
        secs[qs[i].section].evaluated++;
        secs[qs[i].section].correct += correct[i] != 0;
    }
    for (size_t i = 0; i < nsec; i++) {
        out->correct += secs[i].correct;
        out->evaluated += secs[i].evaluated;
        out->questions += secs[i].questions;
    }
    out->sections = secs;
    out->n_sections = nsec;
    secs = NULL;
    goto out;
nomem:
    rc = semd_err_set(err, SEMD_ENOMEM, "out of memory evaluating %s", path);
out:
    free(correct);
    free(qs);
    free(raw);
    free(secs);
    uvocab_free(&v);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- pairs */

/* Average ranks (1-based) of x, ties sharing the mean of their ranks. */
static int
avg_ranks(const double *x, size_t n, double *rank)
{
    size_t *ix = malloc(n * sizeof *ix);
    if (!ix)
        return -1;
    for (size_t i = 0; i < n; i++)
        ix[i] = i;
    /* insertion sort would be quadratic on large files: shell sort by gaps */
    for (size_t gap = n / 2; gap > 0; gap /= 2)
        for (size_t i = gap; i < n; i++)
            for (size_t j = i; j >= gap && x[ix[j - gap]] > x[ix[j]];
                 j -= gap) {
                size_t t = ix[j];
                ix[j] = ix[j - gap];
                ix[j - gap] = t;
            }
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && x[ix[j + 1]] == x[ix[i]])
            j++;
        double r = (double)(i + j) / 2.0 + 1.0;
        for (size_t k = i; k <= j; k++)
            rank[ix[k]] = r;
        i = j + 1;
    }
    free(ix);
    return 0;
}

static double
pearson(const double *x, const double *y, size_t n)
{
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        double a = x[i] - mx, b = y[i] - my;
        sxy += a * b;
        sxx += a * a;
        syy += b * b;
    }
    return sxy / sqrt(sxx * syy);
}

static double
cosine_rows(const struct semd_model *m, uint64_t a, uint64_t b)
{
    uint32_t d = semd_model_dims(m);
    const float *x = semd_model_row(m, a), *y = semd_model_row(m, b);
    double s = 0, nx = 0, ny = 0;
    for (uint32_t i = 0; i < d; i++) {
        s += (double)x[i] * y[i];
        nx += (double)x[i] * x[i];
        ny += (double)y[i] * y[i];
    }
    return nx > 0 && ny > 0 ? s / sqrt(nx * ny) : 0.0;
}

/* Splits a pair line into 3 fields: on tabs when there is one (as gensim
 * does, fields kept as they are), else on runs of spaces. */
static int
pair_fields(const char *line, size_t ll, const char **f, size_t *fl)
{
    if (memchr(line, '\t', ll)) {
        int nf = 0;
        size_t st = 0;
        for (size_t i = 0; i <= ll; i++) {
            if (i == ll || line[i] == '\t') {
                if (nf == 3)
                    return -1;
                f[nf] = line + st;
                fl[nf++] = i - st;
                st = i + 1;
            }
        }
        return nf == 3 ? 0 : -1;
    }
    int nf = 0;
    for (size_t i = 0; i < ll;) {
        while (i < ll && line[i] == ' ')
            i++;
        if (i == ll)
            break;
        if (nf == 3)
            return -1;
        size_t st = i;
        while (i < ll && line[i] != ' ')
            i++;
        f[nf] = line + st;
        fl[nf++] = i - st;
    }
    return nf == 3 ? 0 : -1;
}

/* Python's float(): surrounding whitespace allowed, nothing else. */
static int
parse_score(const char *s, size_t n, double *out)
{
    char tmp[64];
    while (n && is_space((unsigned char)*s))
        s++, n--;
    while (n && is_space((unsigned char)s[n - 1]))
        n--;
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end != tmp + n || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int
semd_eval_pairs(const struct semd_model *m, const char *path,
                uint64_t restrict_rows, struct semd_eval_pairs *out,
                struct semd_err *err)
{
    if (!m || !path || !out)
        return semd_err_set(err, SEMD_EINVAL, "model, path or output missing");
    char *buf;
    size_t len;
    int rc = read_all(path, &buf, &len, err);
    if (rc)
        return rc;
    struct uvocab v = {0};
    struct pair {
        size_t a, b; /* key indices */
        double gold;
    } *pairs = NULL;
    size_t np = 0, cap = 0;
    double *gold = NULL, *model = NULL, *rg = NULL, *rm = NULL;
    uint64_t lineno = 0;
    for (size_t p = 0; p < len;) {
        const char *line = buf + p;
        const char *nl = memchr(line, '\n', len - p);
        size_t ll = nl ? (size_t)(nl - line) : len - p;
        p += ll + 1;
        lineno++;
        if (ll && line[ll - 1] == '\r') /* text mode: \r\n is \n */
            ll--;
        if (model_utf8_valid_prefix(line, ll) != ll) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s:%llu: invalid UTF-8 or a NUL byte", path,
                              (unsigned long long)lineno);
            goto out;
        }
        if (ll && line[0] == '#')
            continue;
        const char *f[3];
        size_t fl[3];
        double g;
        if (pair_fields(line, ll, f, fl) || parse_score(f[2], fl[2], &g))
            continue; /* gensim skips invalid lines */
        size_t ka = add_word(&v, f[0], fl[0]), kb = add_word(&v, f[1], fl[1]);
        if (ka == SIZE_MAX || kb == SIZE_MAX)
            goto nomem;
        if (np == cap) {
            cap = cap ? cap * 2 : 1024;
            void *n2 = realloc(pairs, cap * sizeof *pairs);
            if (!n2)
                goto nomem;
            pairs = n2;
        }
        pairs[np++] = (struct pair){ka, kb, g};
    }
    uvocab_fill(&v, m, clamp_rows(m, restrict_rows));
    gold = malloc((np + 1) * sizeof *gold);
    model = malloc((np + 1) * sizeof *model);
    rg = malloc((np + 1) * sizeof *rg);
    rm = malloc((np + 1) * sizeof *rm);
    if (!gold || !model || !rg || !rm)
        goto nomem;
    size_t n = 0;
    uint64_t oov = 0;
    for (size_t i = 0; i < np; i++) {
        const struct ukey *a = &v.keys[pairs[i].a], *b = &v.keys[pairs[i].b];
        if (a->row == UINT64_MAX || b->row == UINT64_MAX) {
            oov++;
            continue;
        }
        gold[n] = pairs[i].gold;
        model[n++] = (float)cosine_rows(m, a->row, b->row);
    }
    if (n < 2) {
        rc = semd_err_set(err, SEMD_EFORMAT,
                          "%s: %zu valid pairs in the vocabulary, need at "
                          "least 2 (%llu out of it)",
                          path, n, (unsigned long long)oov);
        goto out;
    }
    if (avg_ranks(gold, n, rg) || avg_ranks(model, n, rm))
        goto nomem;
    out->spearman = pearson(rg, rm, n);
    out->pearson = pearson(gold, model, n);
    out->pairs = n;
    out->oov = oov;
    out->oov_ratio = (double)oov / (double)(n + oov) * 100.0;
    goto out;
nomem:
    rc = semd_err_set(err, SEMD_ENOMEM, "out of memory evaluating %s", path);
out:
    free(rm);
    free(rg);
    free(model);
    free(gold);
    free(pairs);
    uvocab_free(&v);
    free(buf);
    return rc;
}
