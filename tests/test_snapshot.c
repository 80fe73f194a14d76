/*
 * test_snapshot.c - snapshots and the holder: reference counting, version
 * order, and readers running while a publisher swaps snapshots.
 */
#include "test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

static const char *model_path;

static struct semd_snapshot *
make(uint64_t version)
{
    struct semd_err err = {0};
    struct semd_model *m;
    struct semd_index *ix;
    struct semd_snapshot *s;
    if (semd_model_open(&m, model_path, &err) != 0)
        fail_msg("model_open: %s", err.msg);
    if (semd_index_open(&ix, m, NULL, &err) != 0)
        fail_msg("index_open: %s", err.msg);
    if (semd_snapshot_new(&s, m, ix, version, &err) != 0)
        fail_msg("snapshot_new: %s", err.msg);
    return s;
}

static int
setup(void **state)
{
    (void)state;
    model_path = t_random_model("snap.semd", 2000, 16, 7);
    return 0;
}

static void
test_lifecycle(void **state)
{
    (void)state;
    struct semd_err err = {0};
    struct semd_holder *h;
    assert_int_equal(semd_holder_new(&h, &err), 0);
    assert_null(semd_holder_acquire(h));
    assert_int_equal(semd_holder_version(h), 0);

    assert_int_equal(semd_holder_publish(h, make(1), &err), 0);
    struct semd_snapshot *a = semd_holder_acquire(h);
    assert_non_null(a);
    assert_int_equal(semd_snapshot_version(a), 1);
    assert_true(semd_snapshot_loaded_at(a) > 1e9);

    /* a newer snapshot replaces it; the reader's reference stays valid */
    assert_int_equal(semd_holder_publish(h, make(2), &err), 0);
    assert_int_equal(semd_holder_version(h), 2);
    const struct semd_model *m = semd_snapshot_model(a);
    assert_int_equal(semd_model_rows(m), 2000);
    assert_string_equal(semd_model_word(m, 5, NULL), "w5");
    assert_ptr_equal(semd_index_model(semd_snapshot_index(a)), m);
    semd_snapshot_release(a); /* the last reference: frees version 1 */

    /* not newer: refused, and the snapshot passed in is released */
    assert_int_equal(semd_holder_publish(h, make(2), &err), SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "not newer"));
    assert_int_equal(semd_holder_version(h), 2);

    struct semd_snapshot *b = semd_holder_acquire(h);
    assert_ptr_equal(semd_snapshot_acquire(b), b);
    semd_snapshot_release(b);
    semd_snapshot_release(b);
    semd_snapshot_release(NULL);
    semd_holder_free(h);
    semd_holder_free(NULL);
}

static void
test_mismatched_index(void **state)
{
    (void)state;
    struct semd_err err = {0};
    struct semd_model *m1, *m2;
    struct semd_index *ix;
    struct semd_snapshot *s = NULL;
    assert_int_equal(semd_model_open(&m1, model_path, &err), 0);
    assert_int_equal(semd_model_open(&m2, model_path, &err), 0);
    assert_int_equal(semd_index_open(&ix, m1, NULL, &err), 0);
    /* an index of another model: refused, the caller still owns both */
    assert_int_equal(semd_snapshot_new(&s, m2, ix, 1, &err), SEMD_EINVAL);
    assert_null(s);
    semd_index_close(ix);
    semd_model_close(m1);
    semd_model_close(m2);
}

struct reader {
    struct semd_holder *h;
    atomic_int *stop;
    atomic_int *started; /* readers that have read once */
    uint64_t reads;
    int went_back; /* saw a version lower than one seen before */
};

static void *
read_loop(void *arg)
{
    struct reader *r = arg;
    uint64_t last = 0;
    float q[16];
    for (int i = 0; i < 16; i++)
        q[i] = (float)(i + 1);
    while (!atomic_load(r->stop)) {
        struct semd_snapshot *s = semd_holder_acquire(r->h);
        uint64_t v = semd_snapshot_version(s);
        if (v < last)
            r->went_back = 1;
        last = v;
        struct semd_search sr = {0};
        sr.k = 3;
        struct semd_hit hits[3];
        uint32_t n = 0;
        if (semd_index_search(semd_snapshot_index(s), q, &sr, hits, &n,
                              NULL) != 0 || n != 3)
            r->went_back = 1;
        semd_snapshot_release(s);
        if (r->reads++ == 0)
            atomic_fetch_add(r->started, 1);
    }
    return NULL;
}

static void
test_readers_during_swaps(void **state)
{
    (void)state;
    struct semd_err err = {0};
    struct semd_holder *h;
    assert_int_equal(semd_holder_new(&h, &err), 0);
    assert_int_equal(semd_holder_publish(h, make(1), &err), 0);
    atomic_int stop = 0, started = 0;
    struct reader r[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct reader){h, &stop, &started, 0, 0};
        pthread_create(&th[i], NULL, read_loop, &r[i]);
    }
    /* On a busy machine the publishes could all finish before a reader
     * runs: start swapping only once every reader is reading. */
    while (atomic_load(&started) < 4)
        sched_yield();
    for (uint64_t v = 2; v <= 40; v++)
        assert_int_equal(semd_holder_publish(h, make(v), &err), 0);
    atomic_store(&stop, 1);
    uint64_t reads = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_false(r[i].went_back);
        reads += r[i].reads;
    }
    assert_true(reads > 0);
    assert_int_equal(semd_holder_version(h), 40);
    semd_holder_free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_mismatched_index),
        cmocka_unit_test(test_readers_during_swaps),
    };
    return cmocka_run_group_tests_name("snapshot", tests, setup, NULL);
}
