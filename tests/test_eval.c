/*
 * test_eval.c - the analogy test and word-pair correlations: gensim's
 * rules on small hand-made models and files, and gensim's own numbers on
 * the GloVe fixture (tests/data/gensim-reference.json, made by
 * tests/gensim/reference.py from the same vectors).
 */
#include "test.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ------------------------------------------------- hand-made analogies */

#define D 16

static void
unitv(float *v)
{
    double s = 0;
    for (int i = 0; i < D; i++)
        s += (double)v[i] * v[i];
    for (int i = 0; i < D; i++)
        v[i] = (float)(v[i] / sqrt(s));
}

/*
 * Rows: a b c (random), then "A" (a case variant of the input a, placed
 * exactly on the answer vector b - a + c), "Dd" (the most frequent
 * spelling of DD, random), "dd" (near the answer), then filler. For the
 * question "A B C DD", gensim's rules give: top hit "A" is skipped (its
 * upper-case form is an input), the next, "dd", upper-cases to DD: correct.
 */
static const char *
analogy_model(void)
{
    const char *path = t_path("analogy.semd");
    struct semd_writer *w;
    struct semd_err err = {0};
    struct semd_writer_opts o = {"test", "analogy", 0};
    if (semd_writer_open(&w, path, D, &o, &err))
        fail_msg("%s", err.msg);
    uint64_t seed = 1234;
    float v[6][D], x[D];
    for (int r = 0; r < 3; r++) {
        for (int i = 0; i < D; i++)
            v[r][i] = t_rand(&seed);
        unitv(v[r]);
    }
    for (int i = 0; i < D; i++)
        x[i] = v[1][i] - v[0][i] + v[2][i];
    unitv(x);
    const char *names[] = {"a", "b", "c", "A", "Dd", "dd"};
    for (int r = 0; r < 3; r++)
        assert_int_equal(semd_writer_add(w, names[r], 1, v[r], 100 - r, &err),
                         0);
    assert_int_equal(semd_writer_add(w, "A", 1, x, 90, &err), 0);
    float dd[D], rnd[D];
    for (int i = 0; i < D; i++) {
        rnd[i] = t_rand(&seed);
        dd[i] = x[i] + 0.05f * t_rand(&seed);
    }
    assert_int_equal(semd_writer_add(w, "Dd", 2, rnd, 80, &err), 0);
    assert_int_equal(semd_writer_add(w, "dd", 2, dd, 70, &err), 0);
    for (int r = 0; r < 200; r++) {
        char name[16];
        int n = snprintf(name, sizeof name, "f%d", r);
        for (int i = 0; i < D; i++)
            rnd[i] = t_rand(&seed);
        assert_int_equal(semd_writer_add(w, name, (size_t)n, rnd,
                                         (uint64_t)(60 - r / 4), &err),
                         0);
    }
    assert_int_equal(semd_writer_finish(w, &err), 0);
    return path;
}

static void
test_analogy_rules(void **state)
{
    (void)state;
    struct env e = open_env(analogy_model());
    const char *q = t_path("q.txt");
    const char *text = ": first\n"
                       "A B C DD\n"          /* correct, see above */
                       "a b c f7\n"          /* wrong answer */
                       "a b c\n"             /* 3 words: not counted */
                       "a b c nothere\n"     /* counted, not evaluated */
                       "\n"
                       ":   empty  \n"       /* a section without questions */
                       ": second one \r\n"
                       "a  b\tc   dD\r\n"    /* correct */
                       "a b c f150\n";      /* outside restrict 100 */
    t_write_file(q, text, strlen(text));
    struct semd_eval_analogies r;
    struct semd_err err = {0};
    if (semd_eval_analogies(e.ix, q, 100, SEMD_3COSADD, &r, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(r.n_sections, 3);
    assert_string_equal(r.sections[0].name, "first");
    assert_string_equal(r.sections[1].name, "empty");
    assert_int_equal(r.sections[1].questions, 0);
    assert_string_equal(r.sections[2].name, "second one");
    assert_int_equal(r.sections[0].questions, 3);
    assert_int_equal(r.sections[0].evaluated, 2);
    assert_int_equal(r.sections[0].correct, 1);
    assert_int_equal(r.sections[2].questions, 2);
    assert_int_equal(r.sections[2].evaluated, 1);
    assert_int_equal(r.sections[2].correct, 1);
    assert_int_equal(r.questions, 5);
    assert_int_equal(r.evaluated, 3);
    assert_int_equal(r.correct, 2);
    semd_eval_analogies_release(&r);

    /* without the restriction the last question is evaluated too (and
     * wrong: the answer is dd); 3CosMul finds the same answers here */
    assert_int_equal(semd_eval_analogies(e.ix, q, 0, SEMD_3COSMUL, &r, &err),
                     0);
    assert_int_equal(r.evaluated, 4);
    assert_int_equal(r.correct, 2);
    semd_eval_analogies_release(&r);
    semd_eval_analogies_release(NULL);

    /* errors */
    const char *nohdr = t_path("nohdr.txt");
    t_write_file(nohdr, "a b c d\n", 8);
    assert_int_equal(semd_eval_analogies(e.ix, nohdr, 0, SEMD_3COSADD, &r,
                                         &err),
                     SEMD_EFORMAT);
    assert_non_null(strstr(err.msg, ":1: missing section header"));
    const char *bad = t_path("bad.txt");
    t_write_file(bad, ": s\na b c \xff\n", 12);
    assert_int_equal(semd_eval_analogies(e.ix, bad, 0, SEMD_3COSADD, &r,
                                         &err),
                     SEMD_EFORMAT);
    assert_non_null(strstr(err.msg, ":2: invalid UTF-8"));
    assert_int_equal(semd_eval_analogies(e.ix, t_path("none.txt"), 0,
                                         SEMD_3COSADD, &r, &err),
                     SEMD_EIO);
    assert_non_null(strstr(err.msg, "none.txt"));
    assert_int_equal(semd_eval_analogies(e.ix, q, 0, 9, &r, &err),
                     SEMD_EINVAL);
    close_env(&e);
}

/* ------------------------------------------------------ word pairs */

/* Spearman by the definition: ranks as 1 + #smaller + (#equal - 1) / 2. */
static double
ref_rank(const double *x, size_t n, size_t i)
{
    double less = 0, eq = 0;
    for (size_t j = 0; j < n; j++) {
        less += x[j] < x[i];
        eq += x[j] == x[i];
    }
    return 1 + less + (eq - 1) / 2;
}

static double
ref_pearson(const double *x, const double *y, size_t n)
{
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++)
        mx += x[i] / (double)n, my += y[i] / (double)n;
    for (size_t i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
    }
    return sxy / sqrt(sxx * syy);
}

static void
test_pairs_rules(void **state)
{
    (void)state;
    const char *path = t_random_model("pairs.semd", 50, 12, 99);
    struct semd_model *m;
    struct semd_err err = {0};
    assert_int_equal(semd_model_open(&m, path, &err), 0);
    const char *f = t_path("pairs.tsv");
    const char *text = "# comment\n"
                       "W1\tw2\t7.5\n"
                       "w3\tw4\t2\n"
                       "w5 w6 2\n"           /* space separated */
                       "w7\tw8\n"            /* 2 fields: skipped */
                       "w9\tw10\tx\n"        /* bad score: skipped */
                       "w11\tw12\t 9.25 \r\n"
                       "w13\tnope\t3\n"      /* out of vocabulary */
                       "w40\tw2\t1\n"        /* outside restrict 30 */
                       "w14\tw15\t2\n";
    t_write_file(f, text, strlen(text));
    struct semd_eval_pairs r;
    assert_int_equal(semd_eval_pairs(m, f, 30, &r, &err), 0);
    assert_int_equal(r.pairs, 5);
    assert_int_equal(r.oov, 2);
    assert_float_equal(r.oov_ratio, 200.0 / 7.0, 1e-9);
    int pa[5] = {1, 3, 5, 11, 14}, pb[5] = {2, 4, 6, 12, 15};
    double gold[5] = {7.5, 2, 2, 9.25, 2}, sim[5], rg[5], rs[5];
    for (int i = 0; i < 5; i++) {
        struct semd_term a = {NULL, 0, semd_model_row(m, (uint64_t)pa[i]), 1};
        struct semd_term b = {NULL, 0, semd_model_row(m, (uint64_t)pb[i]), 1};
        struct semd_term_info ti[2];
        float s;
        assert_int_equal(semd_similarity(m, &a, &b, &s, ti, &err), 0);
        sim[i] = s;
    }
    for (size_t i = 0; i < 5; i++) {
        rg[i] = ref_rank(gold, 5, i);
        rs[i] = ref_rank(sim, 5, i);
    }
    assert_float_equal(rg[1], 2.0, 1e-12); /* three tied at ranks 1..3 */
    assert_float_equal(r.spearman, ref_pearson(rg, rs, 5), 1e-9);
    assert_float_equal(r.pearson, ref_pearson(gold, sim, 5), 1e-6);

    const char *few = t_path("few.tsv");
    const char *ftext = "w1\tw2\t3\nzz\tw1\t4\n";
    t_write_file(few, ftext, strlen(ftext));
    assert_int_equal(semd_eval_pairs(m, few, 0, &r, &err), SEMD_EFORMAT);
    assert_non_null(strstr(err.msg, "1 valid pairs"));
    semd_model_close(m);
}

/* -------------------------------------------------- gensim's numbers */

static json_t *
reference(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/gensim-reference.json", t_datadir());
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("%s: %s (line %d)", path, je.text, je.line);
    return j;
}

static void
compare_analogies(const struct semd_eval_analogies *r, json_t *ref)
{
    json_t *secs = json_object_get(ref, "sections");
    assert_non_null(secs);
    assert_int_equal(r->n_sections, json_object_size(secs));
    for (size_t i = 0; i < r->n_sections; i++) {
        const struct semd_eval_section *s = &r->sections[i];
        json_t *g = json_object_get(secs, s->name);
        if (!g)
            fail_msg("section %s not in the reference", s->name);
        uint64_t gc = (uint64_t)json_integer_value(json_object_get(g,
                                                                   "correct"));
        uint64_t ge = (uint64_t)json_integer_value(
            json_object_get(g, "evaluated"));
        uint64_t gq = (uint64_t)json_integer_value(
            json_object_get(g, "questions"));
        if (s->correct != gc || s->evaluated != ge || s->questions != gq)
            fail_msg("%s: %llu/%llu of %llu, gensim %llu/%llu of %llu",
                     s->name, (unsigned long long)s->correct,
                     (unsigned long long)s->evaluated,
                     (unsigned long long)s->questions,
                     (unsigned long long)gc, (unsigned long long)ge,
                     (unsigned long long)gq);
    }
    assert_int_equal(r->correct,
                     json_integer_value(json_object_get(ref, "correct")));
    assert_int_equal(r->evaluated,
                     json_integer_value(json_object_get(ref, "evaluated")));
    assert_int_equal(r->questions,
                     json_integer_value(json_object_get(ref, "questions")));
}

static char qpath[512], ppath[512];

static void
data_paths(void)
{
    snprintf(qpath, sizeof qpath, "%s/questions-words.txt", t_datadir());
    snprintf(ppath, sizeof ppath, "%s/wordsim353.tsv", t_datadir());
}

static void
test_gensim_3cosadd(void **state)
{
    (void)state;
    json_t *ref = reference();
    data_paths();
    struct env e = open_env(t_fixture());
    json_t *an = json_object_get(ref, "analogies");
    assert_int_equal(json_integer_value(json_object_get(an, "restrict")),
                     30000);
    struct semd_eval_analogies r;
    struct semd_err err = {0};
    if (semd_eval_analogies(e.ix, qpath, 30000, SEMD_3COSADD, &r, &err))
        fail_msg("%s", err.msg);
    compare_analogies(&r, an);
    assert_true(r.evaluated > 12000); /* most questions are in the fixture */
    semd_eval_analogies_release(&r);
    close_env(&e);
    json_decref(ref);
}

static void
test_gensim_3cosmul(void **state)
{
    (void)state;
    json_t *ref = reference();
    data_paths();
    struct env e = open_env(t_fixture());
    struct semd_eval_analogies r;
    struct semd_err err = {0};
    if (semd_eval_analogies(e.ix, qpath, 30000, SEMD_3COSMUL, &r, &err))
        fail_msg("%s", err.msg);
    compare_analogies(&r, json_object_get(ref, "analogies_3cosmul"));
    semd_eval_analogies_release(&r);
    close_env(&e);
    json_decref(ref);
}

static void
test_gensim_pairs(void **state)
{
    (void)state;
    json_t *ref = reference();
    data_paths();
    struct env e = open_env(t_fixture());
    struct semd_eval_pairs r;
    struct semd_err err = {0};
    if (semd_eval_pairs(e.m, ppath, 300000, &r, &err))
        fail_msg("%s", err.msg);
    json_t *p = json_object_get(ref, "pairs");
    assert_non_null(p);
    assert_float_equal(r.spearman,
                       json_real_value(json_object_get(p, "spearman")), 1e-4);
    assert_float_equal(r.pearson,
                       json_real_value(json_object_get(p, "pearson")), 1e-4);
    assert_float_equal(r.oov_ratio,
                       json_number_value(json_object_get(p, "oov_ratio")),
                       1e-9);
    close_env(&e);
    json_decref(ref);
}

/* The CLI prints the same numbers, as a table and as JSON. */
static void
test_cli(void **state)
{
    (void)state;
    data_paths();
    char cmd[2048], *out;
    snprintf(cmd, sizeof cmd,
             "%s eval %s --analogies %s --pairs %s --restrict 30000 --json",
             t_semd(), t_fixture(), qpath, ppath);
    assert_int_equal(t_run(cmd, &out), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    if (!j)
        fail_msg("not JSON: %s\n%s", je.text, out);
    json_t *ref = reference();
    json_t *ja = json_object_get(j, "analogies");
    json_t *ra = json_object_get(ref, "analogies");
    static const char *const keys[] = {"correct", "evaluated", "questions"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(json_integer_value(json_object_get(ja, keys[i])),
                         json_integer_value(json_object_get(ra, keys[i])));
    const char *name;
    json_t *g;
    json_object_foreach(json_object_get(ra, "sections"), name, g)
    {
        json_t *mine = json_object_get(json_object_get(ja, "sections"), name);
        if (!mine)
            fail_msg("section %s missing from the output", name);
        for (int i = 0; i < 3; i++)
            assert_int_equal(
                json_integer_value(json_object_get(mine, keys[i])),
                json_integer_value(json_object_get(g, keys[i])));
    }
    assert_float_equal(
        json_real_value(json_object_get(json_object_get(j, "pairs"),
                                        "spearman")),
        json_real_value(
            json_object_get(json_object_get(ref, "pairs"), "spearman")),
        1e-4);
    json_decref(ref);
    json_decref(j);
    free(out);
    snprintf(cmd, sizeof cmd, "%s eval %s --analogies %s --restrict 30000",
             t_semd(), t_fixture(), qpath);
    assert_int_equal(t_run(cmd, &out), 0);
    assert_non_null(strstr(out, "capital-common-countries"));
    assert_non_null(strstr(out, "  total"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s eval %s --pairs /nonexistent 2>&1",
             t_semd(), t_fixture());
    assert_int_equal(t_run(cmd, &out), 1);
    assert_non_null(strstr(out, "/nonexistent"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s eval %s 2>&1", t_semd(), t_fixture());
    assert_int_equal(t_run(cmd, &out), 2);
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_analogy_rules),
        cmocka_unit_test(test_pairs_rules),
        cmocka_unit_test(test_gensim_3cosadd),
        cmocka_unit_test(test_gensim_3cosmul),
        cmocka_unit_test(test_gensim_pairs),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
