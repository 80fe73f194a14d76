/*
 * test_journal.c - the journal of posted text: append and read back,
 * reopen, torn tails at every byte, flipped bytes, concurrent appenders,
 * trimming and the backlog.
 */
#include "test.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct semd_journal *
open_ok(const char *dir, uint64_t seg, struct semd_journal_report *rep)
{
    struct semd_journal *j = NULL;
    struct semd_err err = {0};
    struct semd_journal_opts o = {seg};
    if (semd_journal_open(&j, dir, &o, rep, &err) != 0)
        fail_msg("journal_open %s: %s", dir, err.msg);
    return j;
}

/* Text of record i: varying lengths, including empty. */
static size_t
payload(uint64_t i, char *buf, size_t cap)
{
    size_t n = (size_t)((i * 37) % 200);
    if (n + 1 > cap)
        n = cap - 1;
    for (size_t k = 0; k < n; k++)
        buf[k] = (char)('a' + (i + k) % 26);
    buf[n] = '\0';
    return n;
}

static uint64_t
append_ok(struct semd_journal *j, const void *data, size_t len)
{
    uint64_t seq = 0;
    struct semd_err err = {0};
    if (semd_journal_append(j, data, len, &seq, &err) != 0)
        fail_msg("append: %s", err.msg);
    return seq;
}

/* Reads every record from from_seq; checks each against payload(seq)
 * and returns how many, with the sequence numbers in seqs (if not NULL). */
static uint64_t
read_all(struct semd_journal *j, uint64_t from, uint64_t *seqs)
{
    struct semd_journal_reader *r;
    struct semd_err err = {0};
    if (semd_journal_reader_open(&r, j, from, &err) != 0)
        fail_msg("reader_open: %s", err.msg);
    struct semd_journal_rec rec;
    uint64_t n = 0, prev = 0;
    int rc;
    char want[256];
    while ((rc = semd_journal_reader_next(r, &rec, &err)) == 1) {
        assert_true(rec.seq > prev);
        assert_true(rec.seq >= from);
        size_t len = payload(rec.seq, want, sizeof want);
        assert_int_equal(rec.len, len);
        assert_memory_equal(rec.data, want, len);
        assert_int_equal(((const char *)rec.data)[len], '\0');
        if (seqs)
            seqs[n] = rec.seq;
        prev = rec.seq;
        n++;
    }
    if (rc != 0)
        fail_msg("reader_next: %s", err.msg);
    semd_journal_reader_close(r);
    return n;
}

static void
fill(struct semd_journal *j, uint64_t first, uint64_t last)
{
    char buf[256];
    for (uint64_t i = first; i <= last; i++) {
        size_t n = payload(i, buf, sizeof buf);
        assert_int_equal(append_ok(j, buf, n), i);
    }
}

static void
test_append_read_reopen(void **state)
{
    (void)state;
    const char *dir = t_path("j-basic");
    struct semd_journal_report rep;
    struct semd_journal *j = open_ok(dir, 0, &rep);
    assert_int_equal(rep.records, 0);
    assert_int_equal(semd_journal_last_seq(j), 0);
    fill(j, 1, 50);
    assert_int_equal(read_all(j, 1, NULL), 50);
    assert_int_equal(read_all(j, 31, NULL), 20);
    assert_int_equal(read_all(j, 51, NULL), 0);

    /* a reader at the end sees records appended later */
    struct semd_journal_reader *r;
    struct semd_err err = {0};
    assert_int_equal(semd_journal_reader_open(&r, j, 51, &err), 0);
    struct semd_journal_rec rec;
    assert_int_equal(semd_journal_reader_next(r, &rec, &err), 0);
    fill(j, 51, 52);
    assert_int_equal(semd_journal_reader_next(r, &rec, &err), 1);
    assert_int_equal(rec.seq, 51);
    assert_int_equal(semd_journal_reader_next(r, &rec, &err), 1);
    assert_int_equal(rec.seq, 52);
    assert_int_equal(semd_journal_reader_next(r, &rec, &err), 0);
    semd_journal_reader_close(r);
    semd_journal_close(j);

    j = open_ok(dir, 0, &rep);
    assert_int_equal(rep.records, 52);
    assert_int_equal(rep.first_seq, 1);
    assert_int_equal(rep.last_seq, 52);
    assert_int_equal(rep.damaged_records, 0);
    assert_string_equal(rep.message, "");
    assert_int_equal(semd_journal_last_seq(j), 52);
    fill(j, 53, 60);
    assert_int_equal(read_all(j, 1, NULL), 60);
    semd_journal_close(j);
}

static void
test_backlog(void **state)
{
    (void)state;
    const char *dir = t_path("j-backlog");
    struct semd_journal *j = open_ok(dir, 0, NULL);
    uint64_t recs, bytes, want = 0;
    char buf[256];
    for (uint64_t i = 1; i <= 10; i++) {
        size_t n = payload(i, buf, sizeof buf);
        append_ok(j, buf, n);
        if (i > 4)
            want += n;
    }
    semd_journal_consume(j, 4);
    semd_journal_backlog(j, &recs, &bytes);
    assert_int_equal(recs, 6);
    assert_int_equal(bytes, want);
    semd_journal_consume(j, 10);
    semd_journal_backlog(j, &recs, &bytes);
    assert_int_equal(recs, 0);
    assert_int_equal(bytes, 0);
    semd_journal_close(j);

    /* after a reopen the backlog is everything until consume is told */
    j = open_ok(dir, 0, NULL);
    semd_journal_backlog(j, &recs, &bytes);
    assert_int_equal(recs, 10);
    semd_journal_consume(j, 7);
    semd_journal_backlog(j, &recs, &bytes);
    assert_int_equal(recs, 3);
    semd_journal_close(j);

    struct semd_err err = {0};
    uint64_t seq;
    assert_int_equal(semd_journal_open(&j, "", NULL, NULL, &err),
                     SEMD_EINVAL);
    j = open_ok(dir, 0, NULL);
    assert_int_equal(semd_journal_append(j, NULL, 5, &seq, &err),
                     SEMD_EINVAL);
    semd_journal_close(j);
}

static const char *
only_segment(const char *dir)
{
    static char path[512];
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s/journal-*.log", dir);
    char *out;
    assert_int_equal(t_run(cmd, &out), 0);
    out[strcspn(out, "\n")] = '\0';
    snprintf(path, sizeof path, "%s", out);
    free(out);
    return path;
}

static void
copy_prefix(const char *src, const char *dst, size_t n)
{
    size_t len;
    char *data = t_read_file(src, &len);
    assert_non_null(data);
    assert_true(n <= len);
    t_write_file(dst, data, n);
    free(data);
}

static void
test_torn_tail_every_offset(void **state)
{
    (void)state;
    const char *dir = t_path("j-torn");
    struct semd_journal *j = open_ok(dir, 0, NULL);
    fill(j, 1, 5);
    char buf[256];
    size_t last_len = payload(6, buf, sizeof buf);
    assert_true(last_len > 8); /* 22 bytes: a short loop */
    append_ok(j, buf, last_len);
    semd_journal_close(j);

    char seg[512];
    snprintf(seg, sizeof seg, "%s", only_segment(dir));
    size_t full;
    free(t_read_file(seg, &full));
    size_t rec_size = 20 + last_len;
    size_t start = full - rec_size;
    const char *tdir = t_path("j-torn-cut");
    for (size_t cut = start; cut < full; cut++) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", tdir, tdir);
        assert_int_equal(t_run(cmd, NULL), 0);
        char dst[600];
        snprintf(dst, sizeof dst, "%s/%s", tdir, strrchr(seg, '/') + 1);
        copy_prefix(seg, dst, cut);

        struct semd_journal_report rep;
        j = open_ok(tdir, 0, &rep);
        assert_int_equal(rep.records, 5);
        assert_int_equal(rep.last_seq, 5);
        if (cut > start) {
            assert_int_equal(rep.damaged_records, 1);
            assert_int_equal(rep.damaged_bytes, cut - start);
            assert_int_equal(rep.first_damage_offset, start);
            assert_non_null(strstr(rep.message, "torn"));
        } else {
            assert_int_equal(rep.damaged_records, 0);
        }
        /* never a partial record; the tail is gone before new appends */
        assert_int_equal(read_all(j, 1, NULL), 5);
        assert_int_equal(append_ok(j, buf, payload(6, buf, sizeof buf)),
                         6);
        assert_int_equal(read_all(j, 1, NULL), 6);
        semd_journal_close(j);
        j = open_ok(tdir, 0, &rep);
        assert_int_equal(rep.damaged_records, 0);
        assert_int_equal(rep.records, 6);
        semd_journal_close(j);
    }
}

static void
flip_byte(const char *path, size_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, (off_t)off), 1);
    c ^= 0x20;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)off), 1);
    close(fd);
}

static void
test_flipped_byte(void **state)
{
    (void)state;
    char buf[256];
    /* offsets of records 1..20 */
    size_t offs[21], off = 0;
    for (uint64_t i = 1; i <= 20; i++) {
        offs[i] = off;
        off += 20 + payload(i, buf, sizeof buf);
    }
    /* in the middle (record 7, payload and header), and in the last */
    struct {
        uint64_t rec;
        size_t delta;
        uint64_t expect_records;
    } cases[] = {{7, 25, 19}, {7, 5, 19}, {7, 9, 19}, {20, 30, 19}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char name[64];
        snprintf(name, sizeof name, "j-flip-%zu", c);
        const char *dir = t_path(name);
        struct semd_journal *j = open_ok(dir, 0, NULL);
        fill(j, 1, 20);
        semd_journal_close(j);
        flip_byte(only_segment(dir), offs[cases[c].rec] + cases[c].delta);

        struct semd_journal_report rep;
        j = open_ok(dir, 0, &rep);
        assert_int_equal(rep.records, cases[c].expect_records);
        assert_int_equal(rep.damaged_records, 1);
        assert_int_equal(rep.first_damage_offset, offs[cases[c].rec]);
        assert_true(rep.message[0] != '\0');
        uint64_t seqs[32];
        assert_int_equal(read_all(j, 1, seqs), cases[c].expect_records);
        for (uint64_t k = 0; k < cases[c].expect_records; k++)
            assert_int_not_equal(seqs[k], cases[c].rec);
        /* appends continue after the highest good number */
        uint64_t want = cases[c].rec == 20 ? 20 : 21;
        assert_int_equal(append_ok(j, buf, payload(want, buf, sizeof buf)),
                         want);
        semd_journal_close(j);
        j = open_ok(dir, 0, &rep);
        /* a skipped middle record stays skipped; a bad tail is gone */
        assert_int_equal(rep.damaged_records, cases[c].rec == 20 ? 0 : 1);
        assert_int_equal(rep.records, cases[c].expect_records + 1);
        semd_journal_close(j);
    }
}

struct appender {
    struct semd_journal *j;
    int id, n;
    uint64_t *seqs;
};

static void *
appender_main(void *arg)
{
    struct appender *a = arg;
    for (int i = 0; i < a->n; i++) {
        char buf[64];
        int len = snprintf(buf, sizeof buf, "thread %d record %d", a->id, i);
        struct semd_err err = {0};
        if (semd_journal_append(a->j, buf, (size_t)len, &a->seqs[i], &err))
            a->seqs[i] = 0;
    }
    return NULL;
}

static void
test_concurrent_appenders(void **state)
{
    (void)state;
    enum { THREADS = 4, EACH = 60 };
    const char *dir = t_path("j-threads");
    /* small segments so appends rotate while racing */
    struct semd_journal *j = open_ok(dir, 1024, NULL);
    pthread_t th[THREADS];
    struct appender a[THREADS];
    uint64_t seqs[THREADS][EACH];
    for (int t = 0; t < THREADS; t++) {
        a[t] = (struct appender){j, t, EACH, seqs[t]};
        assert_int_equal(pthread_create(&th[t], NULL, appender_main, &a[t]),
                         0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    /* every number 1..N used exactly once, each with its own text */
    static char seen[THREADS * EACH + 1];
    static char text[THREADS * EACH + 1][64];
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < EACH; i++) {
            uint64_t s = seqs[t][i];
            assert_true(s >= 1 && s <= THREADS * EACH);
            assert_false(seen[s]);
            seen[s] = 1;
            snprintf(text[s], 64, "thread %d record %d", t, i);
            if (i > 0)
                assert_true(s > seqs[t][i - 1]);
        }
    assert_true(semd_journal_segments(j) > 1);
    semd_journal_close(j);

    j = open_ok(dir, 1024, NULL);
    struct semd_journal_reader *r;
    struct semd_err err = {0};
    assert_int_equal(semd_journal_reader_open(&r, j, 1, &err), 0);
    struct semd_journal_rec rec;
    uint64_t n = 0;
    while (semd_journal_reader_next(r, &rec, &err) == 1) {
        n++;
        assert_int_equal(rec.seq, n);
        assert_int_equal(rec.len, strlen(text[n]));
        assert_memory_equal(rec.data, text[n], rec.len);
    }
    assert_int_equal(n, THREADS * EACH);
    semd_journal_reader_close(r);
    semd_journal_close(j);
}

static void
test_trim(void **state)
{
    (void)state;
    const char *dir = t_path("j-trim");
    struct semd_journal *j = open_ok(dir, 2000, NULL);
    fill(j, 1, 100);
    size_t segs = semd_journal_segments(j);
    assert_true(segs >= 4);
    uint64_t removed;
    struct semd_err err = {0};
    assert_int_equal(semd_journal_trim(j, 0, &removed, &err), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(semd_journal_trim(j, 60, &removed, &err), 0);
    assert_true(removed >= 1);
    assert_int_equal(semd_journal_segments(j), segs - removed);
    /* everything after the persisted position is still there */
    uint64_t seqs[100];
    uint64_t n = read_all(j, 61, seqs);
    assert_int_equal(n, 40);
    assert_int_equal(seqs[0], 61);
    /* and what was trimmed is refused, not silently skipped */
    struct semd_journal_reader *r;
    assert_int_equal(semd_journal_reader_open(&r, j, 1, &err), SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "trimmed"));
    semd_journal_close(j);

    struct semd_journal_report rep;
    j = open_ok(dir, 2000, &rep);
    assert_int_equal(rep.last_seq, 100);
    assert_true(rep.first_seq <= 61);
    assert_int_equal(rep.damaged_records, 0);
    /* trimming everything keeps the newest segment and the numbering */
    assert_int_equal(semd_journal_trim(j, 100, &removed, &err), 0);
    assert_int_equal(semd_journal_segments(j), 1);
    semd_journal_close(j);
    j = open_ok(dir, 2000, &rep);
    assert_int_equal(semd_journal_last_seq(j), 100);
    char buf[256];
    assert_int_equal(append_ok(j, buf, payload(101, buf, sizeof buf)), 101);
    semd_journal_close(j);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_read_reopen),
        cmocka_unit_test(test_backlog),
        cmocka_unit_test(test_torn_tail_every_offset),
        cmocka_unit_test(test_flipped_byte),
        cmocka_unit_test(test_concurrent_appenders),
        cmocka_unit_test(test_trim),
    };
    return cmocka_run_group_tests_name("journal", tests, NULL, NULL);
}
