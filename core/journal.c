/*
 * journal.c - the append-only, durable journal of posted text.
 *
 * A journal is a directory of segment files journal-<firstseq>.log (the
 * sequence number of the first record the segment was opened for, twenty
 * decimal digits so names sort in order). A segment is a run of records:
 *
 *   u32 magic "SJR1"  u32 len  u64 seq  u32 crc32c  len bytes of payload
 *
 * little-endian; the CRC-32C covers the first 16 header bytes and the
 * payload. Sequence numbers start at 1 and only grow; corrupt records that
 * are skipped leave gaps, nothing else does.
 *
 * Invariants:
 *  - Every byte below a segment's committed size has been written and
 *    fdatasync'ed; appends go to the end of the last segment only.
 *  - A torn or corrupt tail found at open is truncated away before the
 *    first append, so damage never sits between good records. A damaged
 *    record in the middle of a segment (a flipped byte) is skipped by
 *    finding the next record whose checksum holds and whose sequence number
 *    is larger; open and the reader use the same rule, so they agree.
 *  - The last segment is never deleted: it fixes the next sequence number.
 *
 * Threads: append, backlog, consume, trim and the reader may be called from
 * any threads at once. One mutex serialises appends (write + fdatasync
 * under the lock: records land in sequence order) and guards the segment
 * table; readers copy what they need under it and read without it.
 */
#include "semd.h"

#include "crc32c.h"
#include "fileio.h"
#include "model.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REC_MAGIC 0x31524a53u /* "SJR1" little-endian */
#define REC_HDR 20u
#define DEFAULT_SEGMENT (64ull << 20)
#define SCAN_CHUNK (1u << 16)

struct segment {
    uint64_t first_seq; /* from the file name */
    uint64_t last_seq;  /* 0 while the segment holds no record */
    uint64_t size;      /* committed bytes */
};

/* Sequence number and cumulative payload bytes (from open) of a record,
 * kept for records not yet consumed so the backlog is exact. */
struct pending {
    uint64_t seq;
    uint64_t cum;
};

struct semd_journal {
    char *dir;
    uint64_t segment_bytes;
    pthread_mutex_t lock;

    struct segment *segs;
    size_t n_segs, cap_segs;
    int fd; /* the last segment, opened for appending */

    uint64_t next_seq;
    uint64_t appended_bytes; /* payload bytes, cumulative since open */

    struct pending *pend; /* records with seq > consumed */
    size_t pend_head, pend_len, pend_cap;
    uint64_t consumed_seq;
    uint64_t consumed_cum;
};

struct semd_journal_reader {
    struct semd_journal *j;
    uint64_t from_seq;  /* next record wanted */
    uint64_t seg_first; /* segment being read, 0: none yet */
    int fd;
    uint64_t off;
    uint64_t last_seq; /* last record returned from this segment */
    unsigned char *buf;
    size_t cap;
};

static int
sys_fail(struct semd_err *err, const char *what, const char *path)
{
    return semd_err_set(err, SEMD_EIO, "%s: %s: %s", path, what,
                        strerror(errno));
}

static void
seg_name(char *buf, size_t n, const char *dir, uint64_t first)
{
    snprintf(buf, n, "%s/journal-%020" PRIu64 ".log", dir, first);
}

/*
 * Checks the record at off in a segment whose readable end is end. On
 * success fills *seq and *len and, when payload is not NULL, reads the
 * payload into a buffer grown as needed. Returns 1 valid, 0 not a valid
 * record, -1 read error.
 */
static int
check_record(int fd, uint64_t off, uint64_t end, uint64_t *seq,
             uint32_t *len, unsigned char **buf, size_t *cap)
{
    unsigned char h[REC_HDR];
    if (end < off || end - off < REC_HDR)
        return 0;
    if (fio_pread_full(fd, h, REC_HDR, off) != 0)
        return -1;
    if (rd32(h) != REC_MAGIC)
        return 0;
    uint32_t n = rd32(h + 4);
    if (n > SEMD_JOURNAL_MAX_RECORD || end - off - REC_HDR < n)
        return 0;
    unsigned char *tmp = NULL;
    unsigned char *p;
    if (buf) {
        if (*cap < n + 1u) {
            size_t c = *cap ? *cap : 4096;
            while (c < n + 1u)
                c *= 2;
            unsigned char *nb = realloc(*buf, c);
            if (!nb)
                return -1;
            *buf = nb;
            *cap = c;
        }
        p = *buf;
    } else {
        p = tmp = malloc(n ? n : 1);
        if (!p)
            return -1;
    }
    if (n && fio_pread_full(fd, p, n, off + REC_HDR) != 0) {
        free(tmp);
        return -1;
    }
    uint32_t crc = crc32c(crc32c(0, h, 16), p, n);
    free(tmp);
    if (crc != rd32(h + 16))
        return 0;
    if (buf)
        (*buf)[n] = '\0';
    *seq = rd64(h + 8);
    *len = n;
    return 1;
}

/*
 * After a bad record at bad, finds the next offset below end that starts a
 * valid record with a sequence number above after_seq. *found = 0 if there
 * is none. Returns -1 on a read error.
 */
static int
resync(int fd, uint64_t bad, uint64_t end, uint64_t after_seq,
       uint64_t *found_off, int *found)
{
    unsigned char chunk[SCAN_CHUNK + 3];
    *found = 0;
    for (uint64_t base = bad + 1; base + REC_HDR <= end; base += SCAN_CHUNK) {
        size_t n = (size_t)(end - base < SCAN_CHUNK + 3 ? end - base
                                                        : SCAN_CHUNK + 3);
        if (fio_pread_full(fd, chunk, n, base) != 0)
            return -1;
        for (size_t i = 0; i + 4 <= n && i < SCAN_CHUNK; i++) {
            if (rd32(chunk + i) != REC_MAGIC)
                continue;
            uint64_t seq;
            uint32_t len;
            int v = check_record(fd, base + i, end, &seq, &len, NULL, NULL);
            if (v < 0)
                return -1;
            if (v == 1 && seq > after_seq) {
                *found_off = base + i;
                *found = 1;
                return 0;
            }
        }
    }
    return 0;
}

static int
add_segment(struct semd_journal *j, uint64_t first)
{
    if (j->n_segs == j->cap_segs) {
        size_t c = j->cap_segs ? j->cap_segs * 2 : 8;
        struct segment *s = realloc(j->segs, c * sizeof *s);
        if (!s)
            return -1;
        j->segs = s;
        j->cap_segs = c;
    }
    j->segs[j->n_segs++] = (struct segment){first, 0, 0};
    return 0;
}

static int
push_pending(struct semd_journal *j, uint64_t seq, uint64_t len)
{
    if (j->pend_head + j->pend_len == j->pend_cap) {
        if (j->pend_head > j->pend_cap / 2) {
            memmove(j->pend, j->pend + j->pend_head,
                    j->pend_len * sizeof *j->pend);
            j->pend_head = 0;
        } else {
            size_t c = j->pend_cap ? j->pend_cap * 2 : 1024;
            struct pending *p = realloc(j->pend, c * sizeof *p);
            if (!p)
                return -1;
            j->pend = p;
            j->pend_cap = c;
        }
    }
    j->appended_bytes += len;
    j->pend[j->pend_head + j->pend_len++] =
        (struct pending){seq, j->appended_bytes};
    return 0;
}

static void
report_damage(struct semd_journal_report *rep, const char *path,
              uint64_t off, uint64_t bytes, int tail)
{
    if (!rep)
        return;
    rep->damaged_records++;
    rep->damaged_bytes += bytes;
    if (rep->damaged_records == 1) {
        const char *base = strrchr(path, '/');
        rep->first_damage_offset = off;
        snprintf(rep->message, sizeof rep->message,
                 "%.300s: %s of %" PRIu64 " bytes at offset %" PRIu64 " %s",
                 base ? base + 1 : path,
                 tail ? "torn or corrupt tail" : "corrupt record", bytes, off,
                 tail ? "truncated" : "skipped");
    }
}

/* Scans one segment: validates every record, skips damage in the middle,
 * truncates a damaged tail when truncate is set. */
static int
scan_segment(struct semd_journal *j, struct segment *s, int truncate,
             struct semd_journal_report *rep, struct semd_err *err)
{
    char path[4096];
    seg_name(path, sizeof path, j->dir, s->first_seq);
    int fd = open(path, truncate ? O_RDWR : O_RDONLY);
    if (fd < 0)
        return sys_fail(err, "cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return sys_fail(err, "cannot stat", path);
    }
    uint64_t end = (uint64_t)st.st_size, off = 0, last = 0;
    uint64_t prev_seq = s->first_seq - 1;
    for (size_t i = 0; i < j->n_segs && &j->segs[i] != s; i++)
        if (j->segs[i].last_seq > prev_seq)
            prev_seq = j->segs[i].last_seq;
    int rc = 0;
    while (off < end) {
        uint64_t seq;
        uint32_t len;
        int v = check_record(fd, off, end, &seq, &len, NULL, NULL);
        if (v < 0) {
            rc = sys_fail(err, "cannot read", path);
            break;
        }
        if (v == 1 && seq > prev_seq) {
            if (push_pending(j, seq, len) != 0) {
                rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
                break;
            }
            prev_seq = last = seq;
            if (rep) {
                rep->records++;
                rep->bytes += len;
            }
            off += REC_HDR + len;
            continue;
        }
        uint64_t next;
        int found;
        if (resync(fd, off, end, prev_seq, &next, &found) != 0) {
            rc = sys_fail(err, "cannot read", path);
            break;
        }
        if (found) {
            report_damage(rep, path, off, next - off, 0);
            off = next;
            continue;
        }
        report_damage(rep, path, off, end - off, 1);
        if (truncate) {
            if (ftruncate(fd, (off_t)off) != 0 || fdatasync(fd) != 0) {
                rc = sys_fail(err, "cannot truncate", path);
                break;
            }
        }
        end = off;
    }
    close(fd);
    if (rc == 0) {
        s->last_seq = last;
        s->size = end;
    }
    return rc;
}

static int
cmp_seg(const void *a, const void *b)
{
    const struct segment *x = a, *y = b;
    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

/* Creates an empty segment for next_seq and makes it the append target. */
static int
new_segment(struct semd_journal *j, struct semd_err *err)
{
    char path[4096];
    seg_name(path, sizeof path, j->dir, j->next_seq);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sys_fail(err, "cannot create", path);
    if (fsync(fd) != 0 || fio_fsync_dir(j->dir) != 0) {
        int rc = sys_fail(err, "cannot sync", path);
        close(fd);
        return rc;
    }
    if (add_segment(j, j->next_seq) != 0) {
        close(fd);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    if (j->fd >= 0)
        close(j->fd);
    j->fd = fd;
    return 0;
}

void
semd_journal_close(struct semd_journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    pthread_mutex_destroy(&j->lock);
    free(j->segs);
    free(j->pend);
    free(j->dir);
    free(j);
}

int
semd_journal_open(struct semd_journal **out, const char *dir,
                  const struct semd_journal_opts *opts,
                  struct semd_journal_report *report, struct semd_err *err)
{
    if (!out || !dir || !*dir)
        return semd_err_set(err, SEMD_EINVAL, "journal directory missing");
    if (report)
        memset(report, 0, sizeof *report);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return sys_fail(err, "cannot create directory", dir);
    struct semd_journal *j = calloc(1, sizeof *j);
    if (!j || !(j->dir = strdup(dir))) {
        free(j);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    j->fd = -1;
    pthread_mutex_init(&j->lock, NULL);
    j->segment_bytes = opts && opts->segment_bytes ? opts->segment_bytes
                                                    : DEFAULT_SEGMENT;
    int rc = 0;
    DIR *d = opendir(dir);
    if (!d) {
        rc = sys_fail(err, "cannot list", dir);
        goto fail;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        char *endp;
        if (strncmp(e->d_name, "journal-", 8) != 0)
            continue;
        unsigned long long first = strtoull(e->d_name + 8, &endp, 10);
        if (endp != e->d_name + 28 || strcmp(endp, ".log") != 0 || !first)
            continue;
        if (add_segment(j, first) != 0) {
            closedir(d);
            rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
            goto fail;
        }
    }
    closedir(d);
    if (j->n_segs > 1)
        qsort(j->segs, j->n_segs, sizeof *j->segs, cmp_seg);

    j->next_seq = 1;
    for (size_t i = 0; i < j->n_segs; i++) {
        struct segment *s = &j->segs[i];
        if ((rc = scan_segment(j, s, 1, report, err)) != 0)
            goto fail;
        if (s->last_seq >= j->next_seq)
            j->next_seq = s->last_seq + 1;
        if (s->first_seq > j->next_seq)
            j->next_seq = s->first_seq;
    }
    if (j->pend_len)
        j->consumed_seq = j->pend[j->pend_head].seq - 1;
    else
        j->consumed_seq = j->next_seq - 1;
    if (report) {
        report->segments = j->n_segs;
        report->first_seq = j->pend_len ? j->pend[j->pend_head].seq : 0;
        report->last_seq = j->next_seq - 1;
    }

    if (j->n_segs == 0) {
        rc = new_segment(j, err);
    } else {
        char path[4096];
        struct segment *s = &j->segs[j->n_segs - 1];
        seg_name(path, sizeof path, j->dir, s->first_seq);
        j->fd = open(path, O_RDWR | O_CLOEXEC);
        if (j->fd < 0)
            rc = sys_fail(err, "cannot open", path);
    }
    if (rc != 0)
        goto fail;
    *out = j;
    return 0;
fail:
    semd_journal_close(j);
    return rc;
}

int
semd_journal_append(struct semd_journal *j, const void *data, size_t len,
                    uint64_t *seq, struct semd_err *err)
{
    if (!j || (!data && len))
        return semd_err_set(err, SEMD_EINVAL, "no journal or no data");
    if (len > SEMD_JOURNAL_MAX_RECORD)
        return semd_err_set(err, SEMD_EINVAL,
                            "record of %zu bytes over the limit of %u", len,
                            (unsigned)SEMD_JOURNAL_MAX_RECORD);
    unsigned char h[REC_HDR];
    pthread_mutex_lock(&j->lock);
    int rc = 0;
    struct segment *s = &j->segs[j->n_segs - 1];
    if (s->size >= j->segment_bytes && s->last_seq) {
        if ((rc = new_segment(j, err)) != 0)
            goto out;
        s = &j->segs[j->n_segs - 1];
    }
    uint64_t q = j->next_seq;
    wr32(h, REC_MAGIC);
    wr32(h + 4, (uint32_t)len);
    wr64(h + 8, q);
    wr32(h + 16, crc32c(crc32c(0, h, 16), data, len));

    struct iovec_like {
        const void *p;
        size_t n;
    } parts[2] = {{h, REC_HDR}, {data, len}};
    uint64_t off = s->size;
    for (int i = 0; i < 2 && rc == 0; i++) {
        const unsigned char *p = parts[i].p;
        size_t n = parts[i].n;
        while (n > 0) {
            ssize_t k = pwrite(j->fd, p, n, (off_t)off);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0) {
                rc = -1;
                break;
            }
            p += k;
            n -= (size_t)k;
            off += (uint64_t)k;
        }
    }
    if (rc == 0 && fdatasync(j->fd) != 0)
        rc = -1;
    if (rc != 0) {
        char path[4096];
        seg_name(path, sizeof path, j->dir, s->first_seq);
        rc = sys_fail(err, "cannot append", path);
        /* never leave a partial record before the next append */
        if (ftruncate(j->fd, (off_t)s->size) != 0)
            rc = sys_fail(err, "cannot undo a partial append", path);
        goto out;
    }
    if (push_pending(j, q, len) != 0) {
        /* the record is durable; only the backlog figure would be wrong */
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    s->size = off;
    s->last_seq = q;
    j->next_seq = q + 1;
    if (rc == 0)
        *seq = q;
out:
    pthread_mutex_unlock(&j->lock);
    return rc;
}

uint64_t
semd_journal_last_seq(struct semd_journal *j)
{
    pthread_mutex_lock(&j->lock);
    uint64_t s = j->next_seq - 1;
    pthread_mutex_unlock(&j->lock);
    return s;
}

void
semd_journal_backlog(struct semd_journal *j, uint64_t *records,
                     uint64_t *bytes)
{
    pthread_mutex_lock(&j->lock);
    if (records)
        *records = j->pend_len;
    if (bytes)
        *bytes = j->appended_bytes - j->consumed_cum;
    pthread_mutex_unlock(&j->lock);
}

void
semd_journal_consume(struct semd_journal *j, uint64_t seq)
{
    pthread_mutex_lock(&j->lock);
    while (j->pend_len && j->pend[j->pend_head].seq <= seq) {
        j->consumed_cum = j->pend[j->pend_head].cum;
        j->pend_head++;
        j->pend_len--;
    }
    if (!j->pend_len)
        j->pend_head = 0;
    if (seq > j->consumed_seq)
        j->consumed_seq = seq;
    pthread_mutex_unlock(&j->lock);
}

int
semd_journal_trim(struct semd_journal *j, uint64_t persisted_seq,
                  uint64_t *removed, struct semd_err *err)
{
    pthread_mutex_lock(&j->lock);
    size_t k = 0;
    int rc = 0;
    /* segment i holds only records below segs[i + 1].first_seq */
    while (k + 1 < j->n_segs && j->segs[k + 1].first_seq - 1 <= persisted_seq) {
        char path[4096];
        seg_name(path, sizeof path, j->dir, j->segs[k].first_seq);
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = sys_fail(err, "cannot remove", path);
            break;
        }
        k++;
    }
    if (k) {
        memmove(j->segs, j->segs + k, (j->n_segs - k) * sizeof *j->segs);
        j->n_segs -= k;
        if (rc == 0 && fio_fsync_dir(j->dir) != 0)
            rc = sys_fail(err, "cannot sync", j->dir);
    }
    pthread_mutex_unlock(&j->lock);
    if (removed)
        *removed = k;
    return rc;
}

size_t
semd_journal_segments(struct semd_journal *j)
{
    pthread_mutex_lock(&j->lock);
    size_t n = j->n_segs;
    pthread_mutex_unlock(&j->lock);
    return n;
}

int
semd_journal_reader_open(struct semd_journal_reader **out,
                         struct semd_journal *j, uint64_t from_seq,
                         struct semd_err *err)
{
    if (!out || !j)
        return semd_err_set(err, SEMD_EINVAL, "no journal");
    pthread_mutex_lock(&j->lock);
    uint64_t oldest = j->segs[0].first_seq;
    pthread_mutex_unlock(&j->lock);
    if (from_seq == 0)
        from_seq = 1;
    if (from_seq < oldest)
        return semd_err_set(err, SEMD_EINVAL,
                            "journal record %" PRIu64
                            " was trimmed (oldest segment starts at %" PRIu64
                            ")",
                            from_seq, oldest);
    struct semd_journal_reader *r = calloc(1, sizeof *r);
    if (!r)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    r->j = j;
    r->from_seq = from_seq;
    r->fd = -1;
    *out = r;
    return 0;
}

void
semd_journal_reader_close(struct semd_journal_reader *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->buf);
    free(r);
}

/* The segment to read for from_seq: the last one starting at or below
 * it, or the first after the current one when that is exhausted. */
static int
reader_locate(struct semd_journal_reader *r, uint64_t *size, int *has_next,
              struct semd_err *err)
{
    struct semd_journal *j = r->j;
    pthread_mutex_lock(&j->lock);
    size_t i = 0;
    if (r->seg_first) {
        while (i < j->n_segs && j->segs[i].first_seq != r->seg_first)
            i++;
        if (i == j->n_segs) {
            pthread_mutex_unlock(&j->lock);
            return semd_err_set(err, SEMD_EINVAL,
                                "journal segment %" PRIu64
                                " was trimmed while being read",
                                r->seg_first);
        }
    } else {
        while (i + 1 < j->n_segs && j->segs[i + 1].first_seq <= r->from_seq)
            i++;
    }
    uint64_t first = j->segs[i].first_seq;
    *size = j->segs[i].size;
    *has_next = i + 1 < j->n_segs;
    pthread_mutex_unlock(&j->lock);
    if (first != r->seg_first || r->fd < 0) {
        char path[4096];
        seg_name(path, sizeof path, j->dir, first);
        if (r->fd >= 0)
            close(r->fd);
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0)
            return sys_fail(err, "cannot open", path);
        r->seg_first = first;
        r->off = 0;
        r->last_seq = first - 1;
    }
    return 0;
}

int
semd_journal_reader_next(struct semd_journal_reader *r,
                         struct semd_journal_rec *rec, struct semd_err *err)
{
    for (;;) {
        uint64_t size;
        int has_next, rc;
        if ((rc = reader_locate(r, &size, &has_next, err)) != 0)
            return rc;
        while (r->off < size) {
            uint64_t seq;
            uint32_t len;
            int v = check_record(r->fd, r->off, size, &seq, &len, &r->buf,
                                 &r->cap);
            if (v < 0)
                return sys_fail(err, "cannot read", "journal segment");
            if (v == 1 && seq > r->last_seq) {
                r->off += REC_HDR + len;
                r->last_seq = seq;
                if (seq < r->from_seq)
                    continue;
                r->from_seq = seq + 1;
                rec->seq = seq;
                rec->data = r->buf;
                rec->len = len;
                return 1;
            }
            /* damage in the middle, already reported at open */
            uint64_t next;
            int found;
            if (resync(r->fd, r->off, size, r->last_seq, &next, &found) != 0)
                return sys_fail(err, "cannot read", "journal segment");
            r->off = found ? next : size;
        }
        if (!has_next)
            return 0;
        /* move on to the following segment */
        struct semd_journal *j = r->j;
        pthread_mutex_lock(&j->lock);
        uint64_t nf = 0;
        for (size_t i = 0; i + 1 < j->n_segs; i++)
            if (j->segs[i].first_seq == r->seg_first)
                nf = j->segs[i + 1].first_seq;
        pthread_mutex_unlock(&j->lock);
        if (!nf)
            return semd_err_set(err, SEMD_EINVAL,
                                "journal segment %" PRIu64
                                " was trimmed while being read",
                                r->seg_first);
        close(r->fd);
        r->fd = -1;
        r->seg_first = nf;
        if (r->from_seq < nf)
            r->from_seq = nf;
    }
}
