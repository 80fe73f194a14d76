/*
 * test_query.c - expressions, term resolution, and every query checked
 * against a double-precision brute force on small generated models; error
 * cases; real semantics on the GloVe fixture.
 */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */

struct env {
    struct semd_model *m;
    struct semd_index *ix;
};

static struct env
open_env(const char *path)
{
    struct env e = {0};
    struct semd_err err = {0};
    if (semd_model_open(&e.m, path, &err) != 0)
        fail_msg("open %s: %s", path, err.msg);
    if (semd_index_open(&e.ix, e.m, NULL, &err) != 0)
        fail_msg("index %s: %s", path, err.msg);
    return e;
}

static void
close_env(struct env *e)
{
    semd_index_close(e->ix);
    semd_model_close(e->m);
}

/* A model with the given words and fixed-seed random vectors. */
static const char *
words_model(const char *name, const char *const *words, size_t n,
            uint32_t dims, uint64_t seed)
{
    const char *path = t_path(name);
    struct semd_writer *w;
    struct semd_err err = {0};
    struct semd_writer_opts o = {"test", name, SEMD_MODEL_COUNTS_ARE_RANKS};
    if (semd_writer_open(&w, path, dims, &o, &err) != 0)
        fail_msg("writer_open: %s", err.msg);
    float v[64];
    for (size_t r = 0; r < n; r++) {
        for (uint32_t i = 0; i < dims; i++)
            v[i] = t_rand(&seed);
        if (semd_writer_add(w, words[r], strlen(words[r]), v, 0, &err) != 0)
            fail_msg("writer_add: %s", err.msg);
    }
    if (semd_writer_finish(w, &err) != 0)
        fail_msg("writer_finish: %s", err.msg);
    return path;
}

static struct semd_term
word(const char *w, float weight)
{
    return (struct semd_term){w, strlen(w), NULL, weight};
}

/* unit vector of a row, in double */
static void
unit(const struct semd_model *m, uint64_t row, double *out)
{
    uint32_t d = semd_model_dims(m);
    const float *v = semd_model_row(m, row);
    double s = 0;
    for (uint32_t i = 0; i < d; i++)
        s += (double)v[i] * v[i];
    for (uint32_t i = 0; i < d; i++)
        out[i] = v[i] / sqrt(s);
}

static double
dotd(const double *a, const double *b, uint32_t d)
{
    double s = 0;
    for (uint32_t i = 0; i < d; i++)
        s += a[i] * b[i];
    return s;
}

static uint64_t
row_of(const struct semd_model *m, const char *w)
{
    uint64_t r;
    if (semd_model_lookup(m, w, strlen(w), &r) != 0)
        fail_msg("word %s not in the test model", w);
    return r;
}

/* The brute-force scores of every row; method 0: cosine with the unit
 * weighted mean of unit word vectors; 1: 3CosMul. */
static double *
brute_scores(const struct semd_model *m, const struct semd_term *t, size_t n,
             int method)
{
    uint32_t d = semd_model_dims(m);
    uint64_t rows = semd_model_rows(m);
    double *u = calloc((n + 2) * d, sizeof *u), *mean = u + n * d;
    double *r = u + (n + 1) * d;
    for (size_t i = 0; i < n; i++) {
        unit(m, row_of(m, t[i].word), u + i * d);
        for (uint32_t j = 0; j < d; j++)
            mean[j] += t[i].weight * u[i * d + j];
    }
    double mn = sqrt(dotd(mean, mean, d));
    double *sc = malloc(rows * sizeof *sc);
    for (uint64_t row = 0; row < rows; row++) {
        unit(m, row, r);
        if (method == 0) {
            sc[row] = dotd(r, mean, d) / mn;
        } else {
            double num = 1, den = 1;
            for (size_t i = 0; i < n; i++) {
                double c = (1 + dotd(r, u + i * d, d)) / 2;
                if (t[i].weight > 0)
                    num *= c;
                else
                    den *= c;
            }
            sc[row] = num / (den + 1e-6);
        }
    }
    free(u);
    return sc;
}

/* Checks hits against brute-force scores: each score matches, order is
 * descending, and every row left out scores no higher than the last hit
 * (within float error), excluded rows never appear. */
static void
check_hits(const double *sc, uint64_t rows, const struct semd_hit *h,
           uint32_t n, uint32_t k, const uint64_t *ex, size_t nex,
           double tol)
{
    assert_int_equal(n, k);
    char *in = calloc(rows, 1);
    for (uint32_t i = 0; i < n; i++) {
        assert_true(h[i].row < rows);
        if (fabs(h[i].score - sc[h[i].row]) > tol)
            fail_msg("hit %u row %llu: score %.7f, brute force %.7f", i,
                     (unsigned long long)h[i].row, (double)h[i].score,
                     sc[h[i].row]);
        if (i > 0)
            assert_true(h[i].score <= h[i - 1].score);
        for (size_t j = 0; j < nex; j++)
            assert_true(h[i].row != ex[j]);
        in[h[i].row] = 1;
    }
    for (size_t j = 0; j < nex; j++)
        in[ex[j]] = 1;
    for (uint64_t r = 0; r < rows; r++)
        if (!in[r] && sc[r] > h[n - 1].score + tol)
            fail_msg("row %llu (%.7f) missing, beats the last hit %.7f",
                     (unsigned long long)r, sc[r], (double)h[n - 1].score);
    free(in);
}

/* --------------------------------------------------------- expressions */

static void
expect_terms(const char *text, size_t n, const char *const *words,
             const float *weights)
{
    struct semd_expr e;
    struct semd_err err = {0};
    if (semd_expr_parse(&e, text, strlen(text), &err) != 0)
        fail_msg("parse \"%s\": %s", text, err.msg);
    if (e.n_terms != n)
        fail_msg("\"%s\": %zu terms, expected %zu", text, e.n_terms, n);
    for (size_t i = 0; i < n; i++) {
        if (e.terms[i].len != strlen(words[i]) ||
            memcmp(e.terms[i].word, words[i], e.terms[i].len) != 0)
            fail_msg("\"%s\": term %zu is \"%.*s\", expected \"%s\"", text, i,
                     (int)e.terms[i].len, e.terms[i].word, words[i]);
        assert_float_equal(e.terms[i].weight, weights[i], 1e-6);
        assert_null(e.terms[i].vec);
    }
    semd_expr_release(&e);
}

static void
test_expr_good(void **state)
{
    (void)state;
    expect_terms("king - man + woman", 3,
                 (const char *[]){"king", "man", "woman"},
                 (float[]){1, -1, 1});
    expect_terms("0.5*paris + berlin", 2,
                 (const char *[]){"paris", "berlin"}, (float[]){0.5f, 1});
    /* whitespace means +, as a URL's + becomes a space */
    expect_terms("king-man woman", 3,
                 (const char *[]){"king", "man", "woman"},
                 (float[]){1, -1, 1});
    expect_terms("\"e-mail\" - mail", 2, (const char *[]){"e-mail", "mail"},
                 (float[]){1, -1});
    expect_terms("  -king\t", 1, (const char *[]){"king"}, (float[]){-1});
    expect_terms("2 * a - 0.25*b", 2, (const char *[]){"a", "b"},
                 (float[]){2, -0.25f});
    expect_terms("\"say \\\"hi\\\"\"+x", 2,
                 (const char *[]){"say \"hi\"", "x"}, (float[]){1, 1});
    expect_terms("caf\xc3\xa9 na\xc3\xafve", 2,
                 (const char *[]){"caf\xc3\xa9", "na\xc3\xafve"},
                 (float[]){1, 1});
    expect_terms("3d", 1, (const char *[]){"3d"}, (float[]){1});

    char big[SEMD_MAX_TERMS * 3 + 1];
    size_t o = 0;
    for (int i = 0; i < SEMD_MAX_TERMS; i++) {
        big[o++] = (char)('a' + i % 26);
        big[o++] = ' ';
    }
    big[o] = '\0';
    struct semd_expr e;
    assert_int_equal(semd_expr_parse(&e, big, o, NULL), 0);
    assert_int_equal(e.n_terms, SEMD_MAX_TERMS);
    semd_expr_release(&e);
    semd_expr_release(NULL);
}

static void
expect_bad(const char *text, size_t len, const char *needle)
{
    struct semd_expr e = {0};
    struct semd_err err = {0};
    int rc = semd_expr_parse(&e, text, len, &err);
    if (rc != SEMD_EINVAL)
        fail_msg("\"%.*s\": rc %d, expected SEMD_EINVAL", (int)len, text, rc);
    if (!strstr(err.msg, needle))
        fail_msg("\"%.*s\": message \"%s\" lacks \"%s\"", (int)len, text,
                 err.msg, needle);
    assert_null(e.terms);
}

static void
test_expr_bad(void **state)
{
    (void)state;
    expect_bad("", 0, "empty");
    expect_bad("   ", 3, "empty");
    expect_bad("king -", 6, "byte 5");
    expect_bad("king + + man", 12, "byte 7");
    expect_bad("*king", 5, "byte 0");
    expect_bad("0.5*", 4, "byte 4");
    expect_bad("abc*king", 8, "number");
    expect_bad("nan*king", 8, "number");
    expect_bad("\"unterminated", 13, "unterminated quote at byte 0");
    expect_bad("a \"\"", 4, "empty quoted word at byte 2");
    expect_bad("a\"b\"", 4, "byte 1");
    expect_bad("\"a\"b", 4, "byte 3");
    expect_bad("2*3*x", 5, "'*'");
    expect_bad("ab\0cd", 5, "NUL byte at byte 2");
    expect_bad("ok \xff\xfe", 5, "invalid UTF-8 at byte 3");

    char big[SEMD_MAX_TERMS * 2 + 3];
    size_t o = 0;
    for (int i = 0; i <= SEMD_MAX_TERMS; i++) {
        big[o++] = 'x';
        big[o++] = ' ';
    }
    expect_bad(big, o, "too many terms");
    char *huge = malloc(SEMD_MAX_EXPR + 2);
    memset(huge, 'a', SEMD_MAX_EXPR + 1);
    expect_bad(huge, SEMD_MAX_EXPR + 1, "too long");
    char *longw = malloc(SEMD_MAX_WORD + 10);
    memset(longw, 'w', SEMD_MAX_WORD + 5);
    expect_bad(longw, SEMD_MAX_WORD + 5, "longer than");
    free(longw);
    free(huge);
}

/* ---------------------------------------------------------- resolution */

static const char *const names[] = {
    "the",   "paris", "Paris", "berlin", "London", "\xc3\xa9" "cole",
    "Apple", "apple", "APPLE", "e-mail", "mail",   "zero",
};

static void
test_resolve(void **state)
{
    (void)state;
    struct env e = open_env(words_model("names.semd", names,
                                        sizeof names / sizeof names[0], 8,
                                        3));
    struct semd_term_info ti;
    struct {
        const char *w;
        int prov;
        const char *as;
    } cases[] = {
        {"paris", SEMD_PROV_EXACT, "paris"},
        {"Paris", SEMD_PROV_EXACT, "Paris"},
        {"PARIS", SEMD_PROV_CASE_FOLDED, "paris"},
        {"Berlin", SEMD_PROV_CASE_FOLDED, "berlin"},
        {"London", SEMD_PROV_EXACT, "London"},
        {"london", SEMD_PROV_MISSING, NULL},
        {"\xc3\x89" "COLE", SEMD_PROV_CASE_FOLDED, "\xc3\xa9" "cole"},
        {"APPLE", SEMD_PROV_EXACT, "APPLE"},
        {"aPPLE", SEMD_PROV_CASE_FOLDED, "apple"},
        {"nope", SEMD_PROV_MISSING, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = semd_resolve(e.m, cases[i].w, strlen(cases[i].w), &ti);
        if (ti.prov != cases[i].prov)
            fail_msg("%s: provenance %s, expected %s", cases[i].w,
                     semd_prov_name(ti.prov), semd_prov_name(cases[i].prov));
        if (cases[i].as) {
            assert_int_equal(rc, 0);
            assert_string_equal(semd_model_word(e.m, ti.row, NULL),
                                cases[i].as);
        } else {
            assert_int_equal(rc, SEMD_ENOWORD);
            assert_int_equal(ti.row, UINT64_MAX);
        }
    }
    assert_int_equal(semd_resolve(e.m, "", 0, &ti), SEMD_ENOWORD);
    assert_string_equal(semd_prov_name(SEMD_PROV_EXACT), "exact");
    assert_string_equal(semd_prov_name(SEMD_PROV_CASE_FOLDED), "case_folded");
    assert_string_equal(semd_prov_name(SEMD_PROV_MISSING), "missing");
    assert_string_equal(semd_prov_name(SEMD_PROV_VECTOR), "vector");

    /* every missing word is named, provenance filled for all */
    struct semd_term t[4] = {word("PARIS", 1), word("foo", 1),
                             word("mail", -1), word("bar baz", 1)};
    struct semd_term_info info[4];
    struct semd_err err = {0};
    float out[8];
    assert_int_equal(semd_combine(e.m, t, 4, out, info, &err), SEMD_ENOWORD);
    assert_non_null(strstr(err.msg, "\"foo\""));
    assert_non_null(strstr(err.msg, "\"bar baz\""));
    assert_int_equal(info[0].prov, SEMD_PROV_CASE_FOLDED);
    assert_int_equal(info[1].prov, SEMD_PROV_MISSING);
    assert_int_equal(info[2].prov, SEMD_PROV_EXACT);
    assert_int_equal(info[3].prov, SEMD_PROV_MISSING);

    /* a quoted word with an operator character resolves */
    struct semd_expr x;
    assert_int_equal(semd_expr_parse(&x, "\"e-mail\" - mail", 15, &err), 0);
    assert_int_equal(semd_combine(e.m, x.terms, x.n_terms, out, info, &err),
                     0);
    assert_int_equal(info[0].row, 9);
    semd_expr_release(&x);
    close_env(&e);
}

/* ----------------------------------------------- queries, brute force */

static const char *rand_path;

static int
setup_rand(void **state)
{
    (void)state;
    if (!rand_path)
        rand_path = t_random_model("rand.semd", 3001, 23, 11);
    return 0;
}

static char wbuf[64][24];

static struct semd_term
rword(uint64_t *seed, uint64_t rows, int slot, float weight)
{
    uint64_t r = (uint64_t)((t_rand(seed) + 1) / 2 * (double)rows) % rows;
    snprintf(wbuf[slot], sizeof wbuf[slot], "w%llu", (unsigned long long)r);
    return word(wbuf[slot], weight);
}

static void
test_neighbors_brute(void **state)
{
    (void)state;
    struct env e = open_env(rand_path);
    uint64_t rows = semd_model_rows(e.m), seed = 5;
    for (int trial = 0; trial < 40; trial++) {
        size_t n = 1 + (size_t)trial % 3;
        struct semd_term t[3];
        static const float w[3] = {1, -1, 0.5f};
        for (size_t i = 0; i < n; i++)
            t[i] = rword(&seed, rows, (int)i, w[i]);
        struct semd_search s = {.k = 1 + (uint32_t)trial % 12};
        if (trial % 4 == 1)
            s.restrict_rows = 500;
        uint64_t extra = 7;
        if (trial % 5 == 2) {
            s.exclude = &extra;
            s.n_exclude = 1;
        }
        int keep = trial % 7 == 3;
        struct semd_hit hits[12];
        struct semd_term_info info[3];
        uint32_t nh;
        struct semd_err err = {0};
        if (semd_neighbors(e.ix, t, n, &s, keep, hits, &nh, info, &err))
            fail_msg("neighbors: %s", err.msg);
        double *sc = brute_scores(e.m, t, n, 0);
        uint64_t scan = s.restrict_rows ? s.restrict_rows : rows;
        uint64_t ex[4];
        size_t nex = 0;
        if (s.n_exclude)
            ex[nex++] = extra;
        for (size_t i = 0; i < n && !keep; i++)
            ex[nex++] = info[i].row;
        for (uint64_t r = scan; r < rows; r++)
            sc[r] = -INFINITY; /* outside the restriction */
        check_hits(sc, rows, hits, nh, s.k, ex, nex, 2e-5);
        if (keep && n == 1)
            assert_int_equal(hits[0].row, info[0].row);
        free(sc);
    }
    close_env(&e);
}

static void
test_neighbors_batch(void **state)
{
    (void)state;
    struct env e = open_env(rand_path);
    uint64_t rows = semd_model_rows(e.m), seed = 9;
    struct semd_nquery q[6];
    struct semd_term t[6][2];
    char words[6][2][24];
    struct semd_hit hits[6][8];
    struct semd_term_info info[6][2];
    memset(q, 0, sizeof q);
    for (int i = 0; i < 6; i++) {
        for (int j = 0; j < 2; j++) {
            struct semd_term x = rword(&seed, rows, 0, j ? -1.0f : 1.0f);
            strcpy(words[i][j], x.word);
            t[i][j] = word(words[i][j], x.weight);
        }
        q[i].terms = t[i];
        q[i].n_terms = 2;
        q[i].search.k = (uint32_t)(3 + i);
        q[i].hits = hits[i];
        q[i].info = info[i];
    }
    t[3][1] = word("missing-word", -1);  /* fails alone */
    q[4].search.k = 0;                   /* fails alone */
    struct semd_err err = {0};
    assert_int_equal(semd_neighbors_batch(e.ix, q, 6, &err), 0);
    for (int i = 0; i < 6; i++) {
        if (i == 3) {
            assert_int_equal(q[i].rc, SEMD_ENOWORD);
            assert_non_null(strstr(q[i].err.msg, "missing-word"));
            continue;
        }
        if (i == 4) {
            assert_int_equal(q[i].rc, SEMD_EINVAL);
            continue;
        }
        assert_int_equal(q[i].rc, 0);
        struct semd_hit one[8];
        struct semd_term_info oi[2];
        uint32_t n1;
        assert_int_equal(semd_neighbors(e.ix, t[i], 2, &q[i].search, 0, one,
                                        &n1, oi, &err),
                         0);
        assert_int_equal(n1, q[i].n_hits);
        for (uint32_t h = 0; h < n1; h++) {
            assert_int_equal(one[h].row, hits[i][h].row);
            assert_float_equal(one[h].score, hits[i][h].score, 1e-6);
        }
    }
    close_env(&e);
}

static void
test_similarities_brute(void **state)
{
    (void)state;
    struct env e = open_env(rand_path);
    uint32_t d = semd_model_dims(e.m);
    double a[24], b[24], m1[24] = {0}, m2[24] = {0};
    struct semd_term_info info[6];
    struct semd_err err = {0};
    float out;

    struct semd_term x = word("w10", 1), y = word("w2000", 1);
    assert_int_equal(semd_similarity(e.m, &x, &y, &out, info, &err), 0);
    unit(e.m, 10, a);
    unit(e.m, 2000, b);
    assert_float_equal(out, dotd(a, b, d), 1e-6);

    /* a raw vector term: scale does not matter */
    float raw[24];
    for (uint32_t i = 0; i < d; i++)
        raw[i] = 3.0f * semd_model_row(e.m, 10)[i];
    struct semd_term v = {NULL, 0, raw, 1};
    assert_int_equal(semd_similarity(e.m, &v, &y, &out, info, &err), 0);
    assert_int_equal(info[0].prov, SEMD_PROV_VECTOR);
    assert_float_equal(out, dotd(a, b, d), 1e-6);

    /* n_similarity: cosine of the raw means (gensim) */
    struct semd_term s1[2] = {word("w1", 1), word("w2", 1)};
    struct semd_term s2[3] = {word("w3", 1), word("w4", 1), word("w5", 1)};
    assert_int_equal(semd_n_similarity(e.m, s1, 2, s2, 3, &out, info, &err),
                     0);
    for (int r = 1; r <= 5; r++)
        for (uint32_t i = 0; i < d; i++)
            (r <= 2 ? m1 : m2)[i] += semd_model_row(e.m, (uint64_t)r)[i];
    assert_float_equal(out,
                       dotd(m1, m2, d) /
                           sqrt(dotd(m1, m1, d) * dotd(m2, m2, d)),
                       1e-6);

    /* odd one out: lowest cosine with the mean of the unit vectors */
    struct semd_term oo[4] = {word("w7", 1), word("w8", 1), word("w9", 1),
                              word("w10", 1)};
    size_t odd;
    float sims[4];
    assert_int_equal(semd_odd_one_out(e.m, oo, 4, &odd, sims, info, &err), 0);
    double u[4][24], mean[24] = {0};
    for (int i = 0; i < 4; i++) {
        unit(e.m, (uint64_t)(7 + i), u[i]);
        for (uint32_t j = 0; j < d; j++)
            mean[j] += u[i][j];
    }
    double mn = sqrt(dotd(mean, mean, d));
    size_t best = 0;
    for (size_t i = 0; i < 4; i++) {
        double c = dotd(u[i], mean, d) / mn;
        assert_float_equal(sims[i], c, 1e-6);
        if (c < dotd(u[best], mean, d) / mn)
            best = i;
    }
    assert_int_equal(odd, best);

    /* rank: 1 + rows (other than a) closer to a than b is */
    uint64_t rank;
    struct semd_term ra = word("w33", 1), rb = word("w1234", 1);
    assert_int_equal(semd_rank(e.m, &ra, &rb, &rank, info, &err), 0);
    unit(e.m, 33, a);
    unit(e.m, 1234, b);
    double cb = dotd(a, b, d);
    uint64_t closer = 0;
    for (uint64_t r = 0; r < semd_model_rows(e.m); r++) {
        double c[24];
        unit(e.m, r, c);
        closer += r != 33 && dotd(a, c, d) > cb;
    }
    assert_int_equal(rank, closer + 1);
    struct semd_term self = word("w33", 1);
    assert_int_equal(semd_rank(e.m, &ra, &self, &rank, info, &err), 0);
    assert_int_equal(rank, 1);
    close_env(&e);
}

static int
is_in(const uint64_t *v, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

static void
test_analogy_brute(void **state)
{
    (void)state;
    struct env e = open_env(rand_path);
    uint64_t rows = semd_model_rows(e.m), seed = 77;
    uint32_t d = semd_model_dims(e.m);
    for (int trial = 0; trial < 36; trial++) {
        int method = trial % 2;
        /* 2 to 4 terms: the scoring kernel takes terms three at a time */
        size_t n = 2 + (size_t)(trial / 2) % 3;
        static const float sg[4] = {1, -1, 1, -1};
        struct semd_term t[4];
        int dup = 0;
        for (size_t i = 0; i < n; i++) {
            t[i] = rword(&seed, rows, (int)i, sg[i]);
            for (size_t j = 0; j < i; j++)
                dup |= !strcmp(t[i].word, t[j].word);
        }
        if (dup)
            continue;
        struct semd_search s = {.k = 1 + (uint32_t)trial % 6};
        struct semd_hit hits[6];
        uint32_t nh;
        struct semd_explain ex;
        struct semd_term_info info[4];
        struct semd_err err = {0};
        if (semd_analogy(e.ix, t, n, method, &s, hits, &nh, &ex, info, &err))
            fail_msg("analogy: %s", err.msg);
        double *sc = brute_scores(e.m, t, n, method);
        uint64_t in[4];
        for (size_t i = 0; i < n; i++)
            in[i] = info[i].row;
        check_hits(sc, rows, hits, nh, s.k, in, n, 2e-5);

        /* the explanation */
        double ua[24], ut[24];
        unit(e.m, hits[0].row, ua);
        for (size_t i = 0; i < n; i++) {
            unit(e.m, in[i], ut);
            assert_float_equal(ex.term_cos[i], dotd(ua, ut, d), 1e-5);
        }
        uint64_t above = 0;
        for (size_t i = 0; i < n; i++)
            above += sc[in[i]] > sc[hits[0].row];
        assert_int_equal(ex.rank_with_inputs, above + 1);
        double second = -INFINITY;
        for (uint64_t r = 0; r < rows; r++)
            if (r != hits[0].row && !is_in(in, n, r) && sc[r] > second)
                second = sc[r];
        assert_float_equal(ex.margin, sc[hits[0].row] - second, 2e-5);
        double *so = brute_scores(e.m, t, n, !method);
        uint64_t ob = UINT64_MAX;
        for (uint64_t r = 0; r < rows; r++)
            if (!is_in(in, n, r) && (ob == UINT64_MAX || so[r] > so[ob]))
                ob = r;
        assert_int_equal(ex.other_row, ob);
        assert_float_equal(ex.other_score, so[ob], 2e-5);
        assert_int_equal(ex.methods_agree, ob == hits[0].row);
        free(so);
        free(sc);

        /* 3CosAdd is the neighbours of the combination */
        if (method == SEMD_3COSADD) {
            struct semd_hit nb[6];
            uint32_t nn;
            assert_int_equal(semd_neighbors(e.ix, t, n, &s, 0, nb, &nn, info,
                                            &err),
                             0);
            assert_int_equal(nn, nh);
            for (uint32_t i = 0; i < nn; i++)
                assert_int_equal(nb[i].row, hits[i].row);
        }
    }
    close_env(&e);
}

/* --------------------------------------------------------------- errors */

static void
expect_err(int rc, int want, const struct semd_err *err, const char *needle)
{
    if (rc != want)
        fail_msg("rc %d (%s), expected %d", rc, err->msg, want);
    if (!strstr(err->msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
}

static void
test_errors(void **state)
{
    (void)state;
    struct env e = open_env(rand_path);
    struct semd_hit hits[8];
    uint32_t nh;
    struct semd_term_info info[4];
    struct semd_err err = {0};
    struct semd_search s = {.k = 5};
    struct semd_term t[3] = {word("w1", 1), word("zzz", -1),
                             word("yyy", 1)};

    expect_err(semd_neighbors(e.ix, t, 3, &s, 0, hits, &nh, info, &err),
               SEMD_ENOWORD, &err, "unknown words: \"zzz\", \"yyy\"");
    expect_err(semd_neighbors(e.ix, t, 0, &s, 0, hits, &nh, info, &err),
               SEMD_EINVAL, &err, "empty");
    s.k = 0;
    expect_err(semd_neighbors(e.ix, t, 1, &s, 0, hits, &nh, info, &err),
               SEMD_EINVAL, &err, "k must be at least 1");
    s.k = 3002;
    expect_err(semd_neighbors(e.ix, t, 1, &s, 0, hits, &nh, info, &err),
               SEMD_EINVAL, &err, "exceeds the vocabulary");
    s.k = 5;
    struct semd_term c[2] = {word("w1", 1), word("w1", -1)};
    expect_err(semd_neighbors(e.ix, c, 2, &s, 0, hits, &nh, info, &err),
               SEMD_EINVAL, &err, "cancel");
    struct semd_term z = word("w1", 0);
    expect_err(semd_neighbors(e.ix, &z, 1, &s, 0, hits, &nh, info, &err),
               SEMD_EINVAL, &err, "weight 0");
    float bad[24] = {0};
    bad[3] = NAN;
    struct semd_term v = {NULL, 0, bad, 1};
    expect_err(semd_neighbors(e.ix, &v, 1, &s, 0, hits, &nh, info, &err),
               SEMD_EINVAL, &err, "not finite");
    float zero[24] = {0};
    struct semd_term vz = {NULL, 0, zero, 1};
    expect_err(semd_neighbors(e.ix, &vz, 1, &s, 0, hits, &nh, info, &err),
               SEMD_EINVAL, &err, "length zero");
    struct semd_term none = {NULL, 0, NULL, 1};
    expect_err(semd_neighbors(e.ix, &none, 1, &s, 0, hits, &nh, info, &err),
               SEMD_EINVAL, &err, "neither");
    struct semd_term neg[2] = {word("w1", -1), word("w2", -1)};
    expect_err(semd_analogy(e.ix, neg, 2, SEMD_3COSMUL, &s, hits, &nh, NULL,
                            info, &err),
               SEMD_EINVAL, &err, "positive");
    expect_err(semd_analogy(e.ix, t, 1, 7, &s, hits, &nh, NULL, info, &err),
               SEMD_EINVAL, &err, "unknown analogy method");
    expect_err(semd_analogy(e.ix, t, 3, SEMD_3COSMUL, &s, hits, &nh, NULL,
                            info, &err),
               SEMD_ENOWORD, &err, "\"zzz\"");
    size_t odd;
    expect_err(semd_odd_one_out(e.m, t, 1, &odd, NULL, info, &err),
               SEMD_EINVAL, &err, "at least 2");
    float out;
    expect_err(semd_n_similarity(e.m, t, 1, t, 0, &out, info, &err),
               SEMD_EINVAL, &err, "at least one");
    expect_err(semd_similarity(e.m, &t[0], &t[1], &out, info, &err),
               SEMD_ENOWORD, &err, "\"zzz\"");
    uint64_t rank;
    expect_err(semd_rank(e.m, &t[2], &t[0], &rank, info, &err), SEMD_ENOWORD,
               &err, "\"yyy\"");
    struct semd_term many[SEMD_MAX_TERMS + 1];
    for (int i = 0; i <= SEMD_MAX_TERMS; i++)
        many[i] = word("w1", 1);
    expect_err(semd_neighbors(e.ix, many, SEMD_MAX_TERMS + 1, &s, 0, hits,
                              &nh, info, &err),
               SEMD_EINVAL, &err, "too many terms");
    close_env(&e);
}

/* ------------------------------------------------------------- fixture */

static void
test_fixture_semantics(void **state)
{
    (void)state;
    struct env e = open_env(t_fixture());
    struct semd_err err = {0};
    struct semd_expr x;
    const char *q = "king - man + woman";
    assert_int_equal(semd_expr_parse(&x, q, strlen(q), &err), 0);
    struct semd_hit hits[10];
    uint32_t nh;
    struct semd_term_info info[4];
    struct semd_explain ex;
    struct semd_search s = {.k = 10};
    assert_int_equal(semd_analogy(e.ix, x.terms, x.n_terms, SEMD_3COSADD, &s,
                                  hits, &nh, &ex, info, &err),
                     0);
    assert_int_equal(nh, 10);
    assert_string_equal(semd_model_word(e.m, hits[0].row, NULL), "queen");
    /* the explanation: queen is nearer king and woman than man */
    assert_true(ex.term_cos[0] > ex.term_cos[1]);
    assert_true(ex.term_cos[2] > ex.term_cos[1]);
    assert_true(ex.margin > 0 && ex.margin == hits[0].score - hits[1].score);
    /* king itself beats queen once inputs are allowed */
    assert_true(ex.rank_with_inputs >= 2 && ex.rank_with_inputs <= 4);
    assert_int_equal(ex.methods_agree, 1);
    assert_string_equal(semd_model_word(e.m, ex.other_row, NULL), "queen");

    assert_int_equal(semd_analogy(e.ix, x.terms, x.n_terms, SEMD_3COSMUL, &s,
                                  hits, &nh, &ex, info, &err),
                     0);
    assert_string_equal(semd_model_word(e.m, hits[0].row, NULL), "queen");
    assert_true(hits[0].score > 0.8f && hits[0].score < 1.2f);
    semd_expr_release(&x);

    struct semd_term cat = word("Cat", 1);
    int dog = 0;
    assert_int_equal(semd_neighbors(e.ix, &cat, 1, &s, 0, hits, &nh, info,
                                    &err),
                     0);
    assert_int_equal(info[0].prov, SEMD_PROV_CASE_FOLDED);
    for (uint32_t i = 0; i < nh; i++)
        dog |= !strcmp(semd_model_word(e.m, hits[i].row, NULL), "dog");
    assert_true(dog);

    struct semd_term odd4[4] = {word("breakfast", 1), word("lunch", 1),
                                word("dinner", 1), word("car", 1)};
    size_t odd;
    assert_int_equal(semd_odd_one_out(e.m, odd4, 4, &odd, NULL, info, &err),
                     0);
    assert_int_equal(odd, 3);
    float sim;
    struct semd_term a = word("car", 1), b = word("automobile", 1);
    assert_int_equal(semd_similarity(e.m, &a, &b, &sim, info, &err), 0);
    assert_true(sim > 0.5f);
    close_env(&e);
}

/* The CLI on the fixture: the table, JSON, stdin, errors. */
static void
test_cli(void **state)
{
    (void)state;
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, "%s query %s 'king - man + woman' -k 3",
             t_semd(), t_fixture());
    assert_int_equal(t_run(cmd, &out), 0);
    assert_non_null(strstr(out, "     1  queen"));
    assert_non_null(strstr(out, "why queen"));
    free(out);
    snprintf(cmd, sizeof cmd,
             "printf 'cat\\n\\nking-man woman\\n' | %s query %s --json -k 5",
             t_semd(), t_fixture());
    assert_int_equal(t_run(cmd, &out), 0);
    assert_non_null(strstr(out, "{\"query\":\"cat\",\"method\":"));
    assert_non_null(strstr(out, "\"neighbors\":[{\"word\":\"dog\""));
    assert_non_null(strstr(out, "{\"query\":\"king-man woman\""));
    assert_non_null(strstr(out, "\"explanation\":{\"answer\":\"queen\""));
    free(out);
    snprintf(cmd, sizeof cmd, "%s query %s 'king - qqqxz' 2>&1", t_semd(),
             t_fixture());
    assert_int_equal(t_run(cmd, &out), 1);
    assert_non_null(strstr(out, "unknown word: \"qqqxz\""));
    free(out);
    snprintf(cmd, sizeof cmd, "%s query %s 'king -' 2>&1", t_semd(),
             t_fixture());
    assert_int_equal(t_run(cmd, &out), 1);
    assert_non_null(strstr(out, "byte 5"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s query %s king -k 0 2>&1", t_semd(),
             t_fixture());
    assert_int_equal(t_run(cmd, &out), 2);
    free(out);
    snprintf(cmd, sizeof cmd, "%s query %s king -k 999999 2>&1", t_semd(),
             t_fixture());
    assert_int_equal(t_run(cmd, &out), 2);
    assert_non_null(strstr(out, "exceeds the vocabulary"));
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expr_good),
        cmocka_unit_test(test_expr_bad),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test_setup(test_neighbors_brute, setup_rand),
        cmocka_unit_test_setup(test_neighbors_batch, setup_rand),
        cmocka_unit_test_setup(test_similarities_brute, setup_rand),
        cmocka_unit_test_setup(test_analogy_brute, setup_rand),
        cmocka_unit_test_setup(test_errors, setup_rand),
        cmocka_unit_test(test_fixture_semantics),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
