/*
 * fuzz_journal.c - the journal reader: the input becomes the segment files
 * of a journal directory, which is opened, read from the start, appended
 * to, trimmed, read again and reopened.
 *
 * The first input byte k shapes the directory: below 0x80 the rest is one
 * segment journal-1; otherwise the rest is split in two at (k & 0x3f) / 64
 * of its length, the second segment named for first sequence number
 * 2 + (k & 0x0f) * 3.
 *
 * Properties (what journal.c promises): open reports damage but does not
 * fail on it; the reader returns exactly the records open counted, none
 * past the last sequence number open reported, in
 * increasing sequence order, each followed by a NUL; an append gets a
 * sequence number past every earlier one and is read back intact; after a
 * reopen the appended record is the last and the valid records are as
 * many as before plus one (a damaged tail was cut before the append).
 */
#include "fuzz.h"

#include "semd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char payload[] = "fuzz appended record";

/* Reads records until there are none; checks order and NULs. */
static uint64_t
read_all(struct semd_journal_reader *r, uint64_t *last, const char *what)
{
    struct semd_journal_rec rec;
    struct semd_err err = {0};
    uint64_t n = 0;
    int rc;
    while ((rc = semd_journal_reader_next(r, &rec, &err)) == 1) {
        if (rec.seq <= *last)
            fuzz_fail("%s: record %llu after %llu", what,
                      (unsigned long long)rec.seq,
                      (unsigned long long)*last);
        if (rec.len > SEMD_JOURNAL_MAX_RECORD ||
            ((const char *)rec.data)[rec.len] != '\0')
            fuzz_fail("%s: record %llu of %zu bytes is not NUL-ended", what,
                      (unsigned long long)rec.seq, rec.len);
        *last = rec.seq;
        n++;
    }
    if (rc < 0 && !err.msg[0])
        fuzz_fail("%s: reader failed with %d and no message", what, rc);
    return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *dir = fuzz_path("journal");
    char d[512];
    snprintf(d, sizeof d, "%s", dir);
    fuzz_empty_dir(d);
    mkdir(d, 0700);
    unsigned k = data[0];
    data++;
    size--;
    char seg[600];
    if (k < 0x80) {
        snprintf(seg, sizeof seg, "%s/journal-%020d.log", d, 1);
        fuzz_write(seg, data, size);
    } else {
        size_t cut = size * (k & 0x3f) / 64;
        snprintf(seg, sizeof seg, "%s/journal-%020d.log", d, 1);
        fuzz_write(seg, data, cut);
        snprintf(seg, sizeof seg, "%s/journal-%020u.log", d,
                 2 + (k & 0x0f) * 3);
        fuzz_write(seg, data + cut, size - cut);
    }

    struct semd_journal_opts opts = {.segment_bytes = 512};
    struct semd_journal_report rep;
    struct semd_journal *j;
    struct semd_err err = {0};
    int rc = semd_journal_open(&j, d, &opts, &rep, &err);
    if (rc != 0) {
        if (rc >= 0 || !err.msg[0])
            fuzz_fail("open failed with %d and message '%s'", rc, err.msg);
        return 0;
    }
    if (rep.records && (rep.first_seq == 0 || rep.first_seq > rep.last_seq))
        fuzz_fail("report: records %llu from %llu to %llu",
                  (unsigned long long)rep.records,
                  (unsigned long long)rep.first_seq,
                  (unsigned long long)rep.last_seq);
    if (rep.damaged_records && !rep.message[0])
        fuzz_fail("damage reported without a message");

    struct semd_journal_reader *r;
    uint64_t last = 0, n = 0;
    if (semd_journal_reader_open(&r, j, 1, &err) == 0) {
        n = read_all(r, &last, "first read");
        /* last_seq may lie past the last valid record: a segment's name
         * reserves the numbers below it even when its records are bad */
        if (n != rep.records || last > rep.last_seq)
            fuzz_fail("open counted %llu records up to %llu, the reader "
                      "read %llu up to %llu",
                      (unsigned long long)rep.records,
                      (unsigned long long)rep.last_seq,
                      (unsigned long long)n, (unsigned long long)last);
    } else {
        r = NULL;
    }
    uint64_t before = semd_journal_last_seq(j), seq = 0;
    if (semd_journal_append(j, payload, sizeof payload - 1, &seq, &err) !=
        0) {
        /* a full disk is not the input's fault; anything else is odd but
         * must at least say why */
        if (!err.msg[0])
            fuzz_fail("append failed with no message");
        semd_journal_reader_close(r);
        semd_journal_close(j);
        return 0;
    }
    if (seq <= before || seq <= last)
        fuzz_fail("appended record %llu after %llu",
                  (unsigned long long)seq, (unsigned long long)before);
    if (r) {
        struct semd_journal_rec rec;
        rc = semd_journal_reader_next(r, &rec, &err);
        if (rc != 1 || rec.seq != seq || rec.len != sizeof payload - 1 ||
            memcmp(rec.data, payload, rec.len) != 0)
            fuzz_fail("the appended record %llu did not read back (%d: %s)",
                      (unsigned long long)seq, rc, err.msg);
        semd_journal_reader_close(r);
    }
    uint64_t recs, bytes;
    semd_journal_consume(j, seq);
    semd_journal_backlog(j, &recs, &bytes);
    if (recs != 0 || bytes != 0)
        fuzz_fail("backlog %llu records after consuming all",
                  (unsigned long long)recs);
    uint64_t removed = 0;
    if (semd_journal_trim(j, before, &removed, &err) != 0 && !err.msg[0])
        fuzz_fail("trim failed with no message");
    if (semd_journal_segments(j) < 1)
        fuzz_fail("no segment left after trimming");
    uint64_t expect = removed ? 0 : n + 1; /* trimmed: count unknown */
    semd_journal_close(j);

    struct semd_journal_report rep2;
    if (semd_journal_open(&j, d, &opts, &rep2, &err) != 0)
        fuzz_fail("reopen after append failed: %s", err.msg);
    if (rep2.last_seq != seq || (expect && rep2.records != expect))
        fuzz_fail("reopen: %llu records up to %llu, expected %llu up to "
                  "%llu (%s)", (unsigned long long)rep2.records,
                  (unsigned long long)rep2.last_seq,
                  (unsigned long long)expect, (unsigned long long)seq,
                  rep2.message);
    semd_journal_close(j);
    return 0;
}
