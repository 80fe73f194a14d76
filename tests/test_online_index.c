/*
 * test_online_index.c - the approximate index of trained versions: a delta
 * index (an older version's HNSW index for the rows that did not change,
 * an exact scan of the changed and new ones) against the exact index of
 * the same model, and the holder swapping a version's index in place.
 *
 * The models are generated: v1 random rows, v2 the same words with a few
 * vectors changed, two rows swapped in order (same vectors: they must
 * still be found through v1's index) and new words placed next to known
 * rows.
 */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 3000
#define DIMS 24
#define N_NEW 5
#define K 10

static const uint64_t changed[] = {5, 17, 300, 2999};
#define N_CHANGED (sizeof changed / sizeof changed[0])

static int
is_changed(uint64_t r)
{
    for (size_t i = 0; i < N_CHANGED; i++)
        if (changed[i] == r)
            return 1;
    return 0;
}

/* v2 from v1: rows 40 and 41 swap places, the changed rows get new
 * vectors, and new word i lands near v1's row 100 + i. */
static const char *
make_v2(const struct semd_model *v1)
{
    const char *path = t_path("v2.semd");
    struct semd_writer *w;
    struct semd_err err = {0};
    struct semd_writer_opts o = {"test", "v2", SEMD_MODEL_COUNTS_ARE_RANKS};
    if (semd_writer_open(&w, path, DIMS, &o, &err) != 0)
        fail_msg("writer_open: %s", err.msg);
    uint64_t seed = 99;
    float v[DIMS];
    for (uint64_t i = 0; i < ROWS; i++) {
        uint64_t r = i == 40 ? 41 : i == 41 ? 40 : i;
        size_t len;
        const char *word = semd_model_word(v1, r, &len);
        memcpy(v, semd_model_row(v1, r), sizeof v);
        if (is_changed(r))
            for (int j = 0; j < DIMS; j++)
                v[j] = t_rand(&seed);
        if (semd_writer_add(w, word, len, v, 0, &err) != 0)
            fail_msg("writer_add: %s", err.msg);
    }
    for (int i = 0; i < N_NEW; i++) {
        char word[32];
        int n = snprintf(word, sizeof word, "new%d", i);
        const float *near = semd_model_row(v1, 100 + (uint64_t)i);
        for (int j = 0; j < DIMS; j++)
            v[j] = near[j] + 0.05f * t_rand(&seed);
        if (semd_writer_add(w, word, (size_t)n, v, 0, &err) != 0)
            fail_msg("writer_add: %s", err.msg);
    }
    if (semd_writer_finish(w, &err) != 0)
        fail_msg("writer_finish: %s", err.msg);
    return path;
}

/* Version 1 with its HNSW32 index, as the trainer's builder makes it. */
static struct semd_snapshot *
base_snapshot(void)
{
    const char *p1 = t_random_model("v1.semd", ROWS, DIMS, 7);
    struct semd_model *m;
    struct semd_index *ix;
    struct semd_snapshot *s;
    struct semd_err err = {0};
    struct semd_index_opts io = {0};
    io.factory = "HNSW32";
    if (semd_model_open(&m, p1, &err) != 0 ||
        semd_index_open(&ix, m, &io, &err) != 0 ||
        semd_snapshot_new(&s, m, ix, 1, &err) != 0)
        fail_msg("base: %s", err.msg);
    return s;
}

static float
cosine(const struct semd_model *m, uint64_t r, const float *q)
{
    const float *v = semd_model_row(m, r);
    double d = 0, a = 0, b = 0;
    for (int j = 0; j < DIMS; j++) {
        d += (double)v[j] * q[j];
        a += (double)v[j] * v[j];
        b += (double)q[j] * q[j];
    }
    return (float)(d / sqrt(a * b));
}

static void
test_delta_matches_exact(void **state)
{
    (void)state;
    struct semd_snapshot *base = base_snapshot();
    struct semd_model *m2;
    struct semd_index *dx, *ex;
    struct semd_err err = {0};
    assert_int_equal(semd_model_open(&m2, make_v2(semd_snapshot_model(base)),
                                     &err), 0);
    assert_int_equal(semd_index_open_delta(&dx, m2, base, &err), 0);
    assert_int_equal(semd_index_open(&ex, m2, NULL, &err), 0);
    /* the delta index keeps its own reference to the base */
    semd_snapshot_release(base);

    assert_string_equal(semd_index_factory(dx), "HNSW32+exact-delta");
    assert_false(semd_index_is_exact(dx));
    assert_non_null(semd_index_delta_base(dx));
    /* changed and new rows only: the swapped rows are found by word */
    assert_int_equal(semd_index_delta_rows(dx), N_CHANGED + N_NEW);
    assert_int_equal(semd_index_delta_rows(ex), 0);
    assert_null(semd_index_delta_base(ex));

    /* queries: every changed and new row, and some unchanged ones */
    uint64_t queries[N_CHANGED + N_NEW + 20];
    size_t nq = 0;
    for (size_t i = 0; i < N_CHANGED; i++) {
        char word[32];
        int n = snprintf(word, sizeof word, "w%llu",
                         (unsigned long long)changed[i]);
        assert_int_equal(semd_model_lookup(m2, word, (size_t)n,
                                           &queries[nq]), 0);
        nq++;
    }
    for (int i = 0; i < N_NEW; i++) {
        char word[32];
        int n = snprintf(word, sizeof word, "new%d", i);
        assert_int_equal(semd_model_lookup(m2, word, (size_t)n,
                                           &queries[nq]), 0);
        nq++;
    }
    for (int i = 0; i < 20; i++)
        queries[nq++] = 40 + (uint64_t)i * 97;

    size_t found = 0, wanted = 0;
    for (size_t q = 0; q < nq; q++) {
        const float *qv = semd_model_row(m2, queries[q]);
        struct semd_search s = {0};
        s.k = K;
        struct semd_hit dh[K], eh[K];
        uint32_t nd = 0, ne = 0;
        assert_int_equal(semd_index_search(dx, qv, &s, dh, &nd, &err), 0);
        assert_int_equal(semd_index_search(ex, qv, &s, eh, &ne, &err), 0);
        assert_int_equal(nd, K);
        assert_int_equal(ne, K);
        /* every answer is scored exactly against the new vectors */
        for (uint32_t i = 0; i < nd; i++) {
            float c = cosine(m2, dh[i].row, qv);
            if (fabsf(c - dh[i].score) > 1e-5f)
                fail_msg("query %zu hit %u: row %llu scored %f, cosine %f",
                         q, i, (unsigned long long)dh[i].row,
                         (double)dh[i].score, (double)c);
            if (i)
                assert_true(dh[i - 1].score >= dh[i].score);
        }
        /* a changed or new row in the exact top k is never missed */
        for (uint32_t i = 0; i < ne; i++) {
            int in = 0;
            for (uint32_t j = 0; j < nd; j++)
                in |= dh[j].row == eh[i].row;
            found += (size_t)in;
            wanted++;
            size_t len;
            const char *w = semd_model_word(m2, eh[i].row, &len);
            int delta = !strncmp(w, "new", 3) ||
                        is_changed(strtoull(w + 1, NULL, 10));
            if (delta && !in)
                fail_msg("query %zu: changed or new row \"%s\" missed", q,
                         w);
        }
        /* the query's own row comes first */
        assert_int_equal(dh[0].row, queries[q]);
    }
    /* HNSW32 at its default efSearch on 3,000 rows */
    if (found * 100 < wanted * 95)
        fail_msg("recall %zu of %zu", found, wanted);

    /* new words: their neighbours are the rows they were placed by */
    for (int i = 0; i < N_NEW; i++) {
        char word[32];
        int n = snprintf(word, sizeof word, "new%d", i);
        uint64_t row, near;
        assert_int_equal(semd_model_lookup(m2, word, (size_t)n, &row), 0);
        n = snprintf(word, sizeof word, "w%d", 100 + i);
        assert_int_equal(semd_model_lookup(m2, word, (size_t)n, &near), 0);
        struct semd_search s = {0};
        s.k = 1;
        s.exclude = &row;
        s.n_exclude = 1;
        struct semd_hit h;
        uint32_t nh = 0;
        assert_int_equal(semd_index_search(dx, semd_model_row(m2, row), &s,
                                           &h, &nh, &err), 0);
        assert_int_equal(nh, 1);
        assert_int_equal(h.row, near);
    }

    /* restrict_rows and min_similarity hold for both parts */
    struct semd_search s = {0};
    s.k = K;
    s.restrict_rows = 200;
    s.use_min_similarity = 1;
    s.min_similarity = -1;
    struct semd_hit h[K];
    uint32_t nh = 0;
    uint64_t r17;
    assert_int_equal(semd_model_lookup(m2, "w17", 3, &r17), 0);
    assert_int_equal(semd_index_search(dx, semd_model_row(m2, r17), &s, h,
                                       &nh, &err), 0);
    assert_true(nh > 0);
    assert_int_equal(h[0].row, r17);
    for (uint32_t i = 0; i < nh; i++)
        assert_true(h[i].row < 200);
    s.restrict_rows = 0;
    s.min_similarity = 0.999f;
    assert_int_equal(semd_index_search(dx, semd_model_row(m2, r17), &s, h,
                                       &nh, &err), 0);
    assert_int_equal(nh, 1);
    assert_int_equal(h[0].row, r17);

    /* the batch entry point agrees with single searches */
    float qs[2 * DIMS];
    memcpy(qs, semd_model_row(m2, queries[0]), sizeof(float) * DIMS);
    memcpy(qs + DIMS, semd_model_row(m2, queries[N_CHANGED]),
           sizeof(float) * DIMS);
    struct semd_search bs[2] = {{0}, {0}};
    bs[0].k = bs[1].k = K;
    struct semd_hit bh[2 * K];
    uint32_t bn[2];
    assert_int_equal(semd_index_search_batch(dx, qs, 2, bs, bh, bn, &err), 0);
    assert_int_equal(bh[0].row, queries[0]);
    assert_int_equal(bh[K].row, queries[N_CHANGED]);

    semd_index_close(dx);
    semd_index_close(ex);
    semd_model_close(m2);
}

static void
test_delta_refuses(void **state)
{
    (void)state;
    struct semd_err err = {0};
    struct semd_model *m1, *m2, *m3;
    struct semd_index *ix, *dx;
    struct semd_snapshot *exact;
    assert_int_equal(semd_model_open(&m1, t_random_model("r1.semd", 50, 8, 1),
                                     &err), 0);
    assert_int_equal(semd_model_open(&m2, t_random_model("r2.semd", 50, 8, 2),
                                     &err), 0);
    assert_int_equal(semd_model_open(&m3, t_random_model("r3.semd", 50, 9, 2),
                                     &err), 0);
    assert_int_equal(semd_index_open(&ix, m1, NULL, &err), 0);
    assert_int_equal(semd_snapshot_new(&exact, m1, ix, 1, &err), 0);
    assert_int_equal(semd_index_open_delta(&dx, m2, exact, &err),
                     SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "approximate"));
    semd_snapshot_release(exact);

    struct semd_model *m4;
    struct semd_snapshot *approx;
    struct semd_index_opts io = {0};
    io.factory = "HNSW8";
    assert_int_equal(semd_model_open(&m4, t_path("r1.semd"), &err), 0);
    assert_int_equal(semd_index_open(&ix, m4, &io, &err), 0);
    assert_int_equal(semd_snapshot_new(&approx, m4, ix, 1, &err), 0);
    assert_int_equal(semd_index_open_delta(&dx, m3, approx, &err),
                     SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "dimensions"));
    /* a delta of a delta is refused: the base must hold FAISS's index */
    struct semd_index *d2;
    struct semd_snapshot *ds;
    assert_int_equal(semd_index_open_delta(&dx, m2, approx, &err), 0);
    assert_int_equal(semd_snapshot_new(&ds, m2, dx, 2, &err), 0);
    assert_int_equal(semd_index_open_delta(&d2, m2, ds, &err), SEMD_EINVAL);
    semd_snapshot_release(ds);
    semd_snapshot_release(approx);
    semd_model_close(m3);
}

static void
test_holder_replace(void **state)
{
    (void)state;
    struct semd_err err = {0};
    struct semd_holder *h;
    assert_int_equal(semd_holder_new(&h, &err), 0);
    const char *p = t_random_model("h.semd", 40, 8, 3);
    struct semd_snapshot *s[4];
    for (int i = 0; i < 4; i++) {
        struct semd_model *m;
        struct semd_index *ix;
        assert_int_equal(semd_model_open(&m, p, &err), 0);
        assert_int_equal(semd_index_open(&ix, m, NULL, &err), 0);
        assert_int_equal(semd_snapshot_new(&s[i], m, ix, i < 2 ? 1 : 2,
                                           &err), 0);
    }
    /* nothing to replace yet */
    assert_int_equal(semd_holder_replace(h, s[0], &err), SEMD_EBUSY);
    assert_int_equal(semd_holder_publish(h, s[1], &err), 0);
    struct semd_snapshot *held = semd_holder_acquire(h);
    assert_ptr_equal(held, s[1]);
    /* the same version again: swapped in; the reader keeps its own */
    assert_int_equal(semd_holder_publish(h, s[2], &err), 0);
    assert_int_equal(semd_holder_replace(h, s[3], &err), 0);
    struct semd_snapshot *now = semd_holder_acquire(h);
    assert_ptr_equal(now, s[3]);
    assert_int_equal(semd_snapshot_version(now), 2);
    semd_snapshot_release(now);
    /* an older version is refused and released */
    assert_int_equal(semd_holder_replace(h, held, &err), SEMD_EBUSY);
    assert_non_null(strstr(err.msg, "no longer current"));
    semd_holder_free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delta_matches_exact),
        cmocka_unit_test(test_delta_refuses),
        cmocka_unit_test(test_holder_replace),
    };
    if (getenv("SEMD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("SEMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
