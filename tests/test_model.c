/*
 * test_model.c - the model file: writing, mapping, look-up, checks.
 */
#include "test.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct semd_model *
open_ok(const char *path)
{
    struct semd_model *m = NULL;
    struct semd_err err = {0};
    if (semd_model_open(&m, path, &err) != 0)
        fail_msg("open %s: %s", path, err.msg);
    return m;
}

static void
test_roundtrip(void **state)
{
    (void)state;
    const uint64_t rows = 5000;
    const uint32_t dims = 37;
    const char *path = t_random_model("rt.semd", rows, dims, 42);
    struct semd_model *m = open_ok(path);
    struct semd_err err = {0};
    assert_int_equal(semd_model_rows(m), rows);
    assert_int_equal(semd_model_dims(m), dims);
    assert_int_equal(semd_model_verify(m, &err), 0);
    assert_true(((uintptr_t)semd_model_matrix(m) & 63) == 0);

    uint64_t seed = 42;
    float v[37];
    for (uint64_t r = 0; r < rows; r++) {
        char word[32];
        int n = snprintf(word, sizeof word, "w%llu", (unsigned long long)r);
        uint64_t got;
        assert_int_equal(semd_model_lookup(m, word, (size_t)n, &got), 0);
        assert_int_equal(got, r);
        size_t len;
        assert_string_equal(semd_model_word(m, r, &len), word);
        assert_int_equal(len, (size_t)n);
        double s = 0;
        for (uint32_t i = 0; i < dims; i++) {
            v[i] = t_rand(&seed);
            s += (double)v[i] * v[i];
        }
        assert_memory_equal(semd_model_row(m, r), v, sizeof v);
        assert_float_equal(semd_model_norms(m)[r], sqrt(s), 1e-5);
        assert_int_equal(semd_model_count(m, r), r + 1);
    }
    uint64_t row;
    assert_int_equal(semd_model_lookup(m, "nope", 4, &row), SEMD_ENOWORD);
    assert_int_equal(semd_model_lookup(m, "w1", 1, &row), SEMD_ENOWORD);
    struct semd_model_info in;
    semd_model_get_info(m, &in);
    assert_string_equal(in.source_format, "test");
    assert_true(in.flags & SEMD_MODEL_COUNTS_ARE_RANKS);
    semd_model_close(m);
}

static void
test_q8_bounds(void **state)
{
    (void)state;
    const uint32_t dims = 64;
    const char *path = t_random_model("q8.semd", 300, dims, 7);
    struct semd_model *m = open_ok(path);
    const int8_t *codes;
    const float *aux;
    semd_model_q8(m, &codes, &aux);
    for (uint64_t r = 0; r < 300; r++) {
        const float *row = semd_model_row(m, r);
        float inv = 1.0f / semd_model_norms(m)[r];
        float scale = aux[2 * r], l1 = 0;
        for (uint32_t i = 0; i < dims; i++) {
            float u = row[i] * inv, q = scale * codes[r * dims + i];
            assert_true(fabsf(u - q) <= scale / 2 + 1e-6f);
            l1 += scale * abs(codes[r * dims + i]);
        }
        assert_float_equal(aux[2 * r + 1], l1, 1e-4);
    }
    semd_model_close(m);
}

static void
expect_open_error(const char *path, int code, const char *needle)
{
    struct semd_model *m = NULL;
    struct semd_err err = {0};
    int rc = semd_model_open(&m, path, &err);
    if (rc != code || !strstr(err.msg, needle))
        fail_msg("open %s: got %d \"%s\", wanted %d with \"%s\"", path, rc,
                 err.msg, code, needle);
    assert_null(m);
}

static void
test_bad_files(void **state)
{
    (void)state;
    const char *path = t_random_model("good.semd", 100, 8, 1);
    size_t n;
    char *buf = t_read_file(path, &n);
    assert_non_null(buf);

    const char *p = t_path("truncated.semd");
    t_write_file(p, buf, n - 100);
    expect_open_error(p, SEMD_EFORMAT, "truncated");
    t_write_file(p, buf, 1000);
    expect_open_error(p, SEMD_EFORMAT, "truncated");

    p = t_path("foreign.semd");
    t_write_file(p, "3 2\nthe 0.1 0.2\n", 16);
    expect_open_error(p, SEMD_EFORMAT, "not a semd model file");
    t_write_file(p, "", 0);
    expect_open_error(p, SEMD_EFORMAT, "empty");
    expect_open_error(t_path("missing.semd"), SEMD_EIO, "missing.semd");

    /* A flipped header byte: caught at open by the header checksum. */
    p = t_path("hdr.semd");
    buf[20] ^= 1;
    t_write_file(p, buf, n);
    expect_open_error(p, SEMD_ECORRUPT, "header checksum");
    buf[20] ^= 1;

    /* A hash capacity of 2^62 in a section of 8 bytes: 8 + 4 x 2^62
     * wraps to 8, so a size check alone would pass it and look-ups would
     * read far outside the file. Found by fuzz_model. */
    char *bad = malloc(n);
    memcpy(bad, buf, n);
    uint32_t nsec;
    memcpy(&nsec, bad + 36, 4);
    for (uint32_t i = 0; i < nsec; i++) {
        char *e = bad + 256 + 32 * i;
        uint32_t kind;
        uint64_t off, eight = 8, cap = 1ull << 62;
        memcpy(&kind, e, 4);
        memcpy(&off, e + 8, 8);
        if (kind == 6) { /* the hash section */
            memcpy(e + 16, &eight, 8);
            memcpy(bad + off, &cap, 8);
        }
    }
    /* the header checksum (CRC-32C of bytes 0..4091) must hold for open
     * to reach the capacity */
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < 4092; i++) {
        crc ^= (unsigned char)bad[i];
        for (int b = 0; b < 8; b++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
    }
    crc = ~crc;
    memcpy(bad + 4092, &crc, 4);
    p = t_path("hash.semd");
    t_write_file(p, bad, n);
    expect_open_error(p, SEMD_EFORMAT, "bad hash capacity");
    free(bad);

    /* A flipped matrix byte: open succeeds (O(1)), verify catches it. */
    buf[4096 + 13] ^= 0x40;
    t_write_file(p, buf, n);
    struct semd_model *m = open_ok(p);
    struct semd_err err = {0};
    assert_int_equal(semd_model_verify(m, &err), SEMD_ECORRUPT);
    assert_non_null(strstr(err.msg, "matrix section is corrupted"));
    semd_model_close(m);
    free(buf);
}

static void
test_writer_errors(void **state)
{
    (void)state;
    struct semd_writer *w;
    struct semd_err err = {0};
    const char *path = t_path("bad.semd");
    float v[3] = {1, 2, 3};
    assert_int_equal(semd_writer_open(&w, path, 3, NULL, &err), 0);
    assert_int_equal(semd_writer_add(w, "a", 1, v, 5, &err), 0);
    assert_int_equal(semd_writer_add(w, "a", 1, v, 5, &err), SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "duplicate word \"a\""));
    assert_int_equal(semd_writer_add(w, "\xff", 1, v, 5, &err), SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "invalid UTF-8"));
    assert_int_equal(semd_writer_add(w, "\xed\xa0\x80", 3, v, 5, &err),
                     SEMD_EINVAL); /* a surrogate */
    assert_int_equal(semd_writer_add(w, "", 0, v, 5, &err), SEMD_EINVAL);
    v[1] = NAN;
    assert_int_equal(semd_writer_add(w, "b", 1, v, 5, &err), SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "NaN value in dimension 2 of \"b\""));
    v[1] = INFINITY;
    assert_int_equal(semd_writer_add(w, "b", 1, v, 5, &err), SEMD_EINVAL);
    v[1] = 2;
    /* rejected rows left no trace: "b" is still free */
    assert_int_equal(semd_writer_add(w, "b", 1, NULL, 7, &err), 0);
    assert_int_equal(semd_writer_rows(w), 2);
    /* a row never filled fails the finish and leaves nothing behind */
    assert_int_equal(semd_writer_finish(w, &err), SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "no vector for \"b\""));
    assert_int_not_equal(access(path, F_OK), 0);

    assert_int_equal(semd_writer_open(&w, path, 3, NULL, &err), 0);
    assert_int_equal(semd_writer_add(w, "x", 1, NULL, 9, &err), 0);
    assert_int_equal(semd_writer_add(w, "y", 1, v, 8, &err), 0);
    assert_int_equal(semd_writer_set_row(w, 0, v, &err), 0);
    assert_int_equal(semd_writer_set_row(w, 2, v, &err), SEMD_EINVAL);
    assert_int_equal(semd_writer_finish(w, &err), 0);
    struct semd_model *m = open_ok(path);
    assert_int_equal(semd_model_count(m, 0), 9);
    assert_memory_equal(semd_model_row(m, 0), v, sizeof v);
    semd_model_close(m);

    assert_int_equal(semd_writer_open(&w, path, 3, NULL, &err), 0);
    assert_int_equal(semd_writer_finish(w, &err), SEMD_EINVAL);
    /* a link is never replaced */
    const char *link = t_path("link.semd");
    unlink(link);
    if (symlink(path, link) != 0)
        fail_msg("symlink %s -> %s: %s", link, path, strerror(errno));
    assert_int_equal(semd_writer_open(&w, link, 3, NULL, &err), SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    /* the earlier file is untouched */
    m = open_ok(path);
    assert_int_equal(semd_model_rows(m), 2);
    semd_model_close(m);
}

static void
test_hash_collisions(void **state)
{
    (void)state;
    /* Many short words that share prefixes give long probe chains at load
     * one half; every one must still be found, and absent ones not. */
    struct semd_writer *w;
    struct semd_err err = {0};
    const char *path = t_path("coll.semd");
    assert_int_equal(semd_writer_open(&w, path, 2, NULL, &err), 0);
    float v[2] = {1, 0};
    char word[8];
    int n = 0;
    for (int a = 'a'; a <= 'z'; a++)
        for (int b = 'a'; b <= 'z'; b++)
            for (int c = 'a'; c <= 'z'; c += 2, n++) {
                int len = snprintf(word, sizeof word, "%c%c%c", a, b, c);
                v[1] = (float)n;
                assert_int_equal(
                    semd_writer_add(w, word, (size_t)len, v, 1, &err), 0);
            }
    assert_int_equal(semd_writer_finish(w, &err), 0);
    struct semd_model *m = open_ok(path);
    n = 0;
    for (int a = 'a'; a <= 'z'; a++)
        for (int b = 'a'; b <= 'z'; b++)
            for (int c = 'a'; c <= 'z'; c++) {
                uint64_t row;
                snprintf(word, sizeof word, "%c%c%c", a, b, c);
                int rc = semd_model_lookup(m, word, 3, &row);
                if ((c - 'a') % 2 == 0) {
                    assert_int_equal(rc, 0);
                    assert_int_equal(row, (uint64_t)n);
                    assert_float_equal(semd_model_row(m, row)[1], n, 0);
                    n++;
                } else {
                    assert_int_equal(rc, SEMD_ENOWORD);
                }
            }
    semd_model_close(m);
}

static void
test_rewrite_reopen(void **state)
{
    (void)state;
    /* Writing the same path twice replaces the file atomically; a model
     * opened before keeps its own mapping. */
    const char *p1 = t_random_model("twice.semd", 50, 4, 1);
    struct semd_model *old = open_ok(p1);
    float before = semd_model_row(old, 3)[0];
    t_random_model("twice.semd", 60, 4, 2);
    struct semd_model *m = open_ok(p1);
    struct semd_err err = {0};
    assert_int_equal(semd_model_rows(m), 60);
    assert_int_equal(semd_model_verify(m, &err), 0);
    assert_int_equal(semd_model_rows(old), 50);
    assert_float_equal(semd_model_row(old, 3)[0], before, 0);
    assert_int_equal(semd_model_verify(old, &err), 0);
    semd_model_close(old);
    semd_model_close(m);
}

static void
test_prefix(void **state)
{
    (void)state;
    struct semd_writer *w;
    struct semd_err err = {0};
    const char *path = t_path("prefix.semd");
    const char *words[] = {"the", "then", "a", "they", "theory", "th",
                           "thé", "other", "t", "them"};
    float v[2] = {1, 1};
    assert_int_equal(semd_writer_open(&w, path, 2, NULL, &err), 0);
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        assert_int_equal(
            semd_writer_add(w, words[i], strlen(words[i]), v, 100 - i, &err),
            0);
    assert_int_equal(semd_writer_finish(w, &err), 0);
    struct semd_model *m = open_ok(path);
    uint64_t rows[8];
    size_t n;
    assert_int_equal(semd_model_prefix(m, "the", 3, rows, 8, &n), 0);
    assert_int_equal(n, 5); /* the then they theory them, by frequency */
    uint64_t want[] = {0, 1, 3, 4, 9};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rows[i], want[i]);
    assert_int_equal(semd_model_prefix(m, "the", 3, rows, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rows[1], 1);
    assert_int_equal(semd_model_prefix(m, "th\xc3", 3, rows, 8, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0], 6);
    assert_int_equal(semd_model_prefix(m, "x", 1, rows, 8, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(semd_model_prefix(m, "", 0, rows, 3, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(rows[2], 2);
    semd_model_close(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_q8_bounds),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_hash_collisions),
        cmocka_unit_test(test_rewrite_reopen),
        cmocka_unit_test(test_prefix),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
