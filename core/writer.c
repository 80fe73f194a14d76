/*
 * writer.c - write a model file (layout atop model.c) row by row.
 *
 * Memory stays proportional to the vocabulary, not the matrix: rows are
 * written to a temporary file beside the destination as they arrive
 * (buffered when sequential, positioned when filled later), and the
 * per-row sections (norms, counts, word offsets, hash) are small. At finish
 * the matrix is read back in chunks to checksum it and to derive the 8-bit
 * copy, the header is written last, the file is fsynced and renamed over
 * the destination, and the directory is fsynced: a reader sees the old file
 * or the complete new one, never a half-written one.
 *
 * A writer belongs to one thread.
 */
#include "semd.h"

#include "bpe.h"
#include "crc32c.h"
#include "fileio.h"
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WBUF_SIZE (1u << 20)
#define CHUNK_ROWS 4096u

struct semd_writer {
    char *path;
    char *tmp;
    int fd;
    uint32_t dims;
    uint32_t flags;
    int no_sync; /* SEMD_WRITER_NO_SYNC: the caller syncs later */
    char source_format[32];
    char source[160];

    uint64_t rows, cap_rows;
    uint64_t *wordoff; /* rows + 1 */
    uint64_t *counts;
    float *norms;
    unsigned char *filled;

    char *strings;
    uint64_t strings_len, strings_cap;

    uint32_t *slots;
    uint64_t capacity;

    void *tokenizer; /* serialised tokenizer section, or NULL */
    size_t tokenizer_size;

    unsigned char *wbuf; /* pending sequential rows */
    size_t wbuf_len;
    uint64_t wbuf_row; /* first row in wbuf */
};

static int
sys_fail(struct semd_err *err, const char *what, const char *path)
{
    return semd_err_set(err, SEMD_EIO, "%s: %s: %s", path, what,
                        strerror(errno));
}

int
semd_writer_open(struct semd_writer **out, const char *path, uint32_t dims,
                 const struct semd_writer_opts *opts, struct semd_err *err)
{
    if (!out || !path || !*path)
        return semd_err_set(err, SEMD_EINVAL, "no output path given");
    if (dims == 0 || dims > MODEL_MAX_DIMS)
        return semd_err_set(err, SEMD_EINVAL,
                            "dimension count %u out of range (1..%u)", dims,
                            MODEL_MAX_DIMS);
    /* The file is replaced by a rename at the end: a link or a device
     * there would be replaced, not written through. */
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return semd_err_set(err, SEMD_EINVAL,
                            "%s: exists and is not a regular file; refusing "
                            "to replace it",
                            path);
    struct semd_writer *w = calloc(1, sizeof *w);
    if (!w)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    w->fd = -1;
    w->dims = dims;
    if (opts) {
        w->flags = opts->flags & ~SEMD_WRITER_NO_SYNC;
        w->no_sync = (opts->flags & SEMD_WRITER_NO_SYNC) != 0;
        if (opts->source_format)
            snprintf(w->source_format, sizeof w->source_format, "%s",
                     opts->source_format);
        if (opts->source)
            snprintf(w->source, sizeof w->source, "%s", opts->source);
    }
    size_t n = strlen(path);
    w->path = strdup(path);
    w->tmp = malloc(n + 16);
    w->wbuf = malloc(WBUF_SIZE);
    w->capacity = 1024;
    w->slots = malloc(w->capacity * sizeof *w->slots);
    w->wordoff = calloc(1, sizeof *w->wordoff);
    if (!w->path || !w->tmp || !w->wbuf || !w->slots || !w->wordoff) {
        semd_writer_abort(w);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    memset(w->slots, 0xFF, w->capacity * sizeof *w->slots);
    snprintf(w->tmp, n + 16, "%s.tmp.XXXXXX", path);
    w->fd = mkstemp(w->tmp);
    if (w->fd < 0) {
        int rc = sys_fail(err, "cannot create temporary file", w->tmp);
        free(w->tmp);
        w->tmp = NULL; /* nothing to remove */
        semd_writer_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

void
semd_writer_abort(struct semd_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp)
        unlink(w->tmp);
    free(w->path);
    free(w->tmp);
    free(w->wordoff);
    free(w->counts);
    free(w->norms);
    free(w->filled);
    free(w->strings);
    free(w->slots);
    free(w->wbuf);
    free(w->tokenizer);
    free(w);
}

int
semd_writer_set_tokenizer(struct semd_writer *w,
                          const struct semd_tokenizer *t,
                          struct semd_err *err)
{
    const void *data;
    size_t size;
    bpe_blob(t, &data, &size);
    void *copy = malloc(size);
    if (!copy)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    memcpy(copy, data, size);
    free(w->tokenizer);
    w->tokenizer = copy;
    w->tokenizer_size = size;
    return 0;
}

uint64_t
semd_writer_rows(const struct semd_writer *w)
{
    return w->rows;
}

static uint64_t
row_offset(const struct semd_writer *w, uint64_t row)
{
    return MODEL_HEADER_SIZE + row * (uint64_t)w->dims * 4;
}

static int
flush(struct semd_writer *w, struct semd_err *err)
{
    if (w->wbuf_len == 0)
        return 0;
    if (fio_pwrite_full(w->fd, w->wbuf, w->wbuf_len,
                        row_offset(w, w->wbuf_row)))
        return sys_fail(err, "write failed", w->tmp);
    w->wbuf_len = 0;
    return 0;
}

static const char *
word_at(const struct semd_writer *w, uint64_t row, size_t *len)
{
    *len = w->wordoff[row + 1] - w->wordoff[row] - 1;
    return w->strings + w->wordoff[row];
}

/* Finds word: its slot, and whether it is there. */
static uint64_t
probe(const struct semd_writer *w, const uint32_t *slots, uint64_t cap,
      const char *word, size_t len, int *found)
{
    uint64_t mask = cap - 1, i = model_hash(word, len) & mask;
    *found = 0;
    for (;;) {
        uint32_t r = slots[i];
        if (r == MODEL_HASH_EMPTY)
            return i;
        size_t wl;
        const char *s = word_at(w, r, &wl);
        if (wl == len && memcmp(s, word, len) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

/* Rebuilds the table with cap slots (a power of two > rows). */
static int
rehash(struct semd_writer *w, uint64_t cap)
{
    uint32_t *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return -1;
    memset(slots, 0xFF, cap * sizeof *slots);
    for (uint64_t r = 0; r < w->rows; r++) {
        size_t len;
        const char *s = word_at(w, r, &len);
        int found;
        slots[probe(w, slots, cap, s, len, &found)] = (uint32_t)r;
    }
    free(w->slots);
    w->slots = slots;
    w->capacity = cap;
    return 0;
}

static int
grow_rows(struct semd_writer *w)
{
    uint64_t cap = w->cap_rows ? w->cap_rows * 2 : 4096;
    uint64_t *wo = realloc(w->wordoff, (cap + 1) * sizeof *wo);
    if (!wo)
        return -1;
    w->wordoff = wo;
    uint64_t *c = realloc(w->counts, cap * sizeof *c);
    if (!c)
        return -1;
    w->counts = c;
    float *nr = realloc(w->norms, cap * sizeof *nr);
    if (!nr)
        return -1;
    w->norms = nr;
    unsigned char *f = realloc(w->filled, cap);
    if (!f)
        return -1;
    w->filled = f;
    w->cap_rows = cap;
    return 0;
}

static int
check_vec(const struct semd_writer *w, const float *vec, const char *word,
          size_t len, double *norm, struct semd_err *err)
{
    double s = 0;
    for (uint32_t i = 0; i < w->dims; i++) {
        if (!isfinite(vec[i]))
            return semd_err_set(err, SEMD_EINVAL,
                                "%s value in dimension %u of \"%.*s\"",
                                isnan(vec[i]) ? "NaN" : "infinite", i + 1,
                                (int)(len > 200 ? 200 : len), word);
        s += (double)vec[i] * vec[i];
    }
    *norm = sqrt(s);
    return 0;
}

/* Writes a checked row. */
static int
store_row(struct semd_writer *w, uint64_t row, const float *vec, double norm,
          struct semd_err *err)
{
    int rc;
    size_t bytes = (size_t)w->dims * 4;
    if (w->wbuf_len > 0 &&
        row == w->wbuf_row + w->wbuf_len / bytes &&
        w->wbuf_len + bytes <= WBUF_SIZE) {
        memcpy(w->wbuf + w->wbuf_len, vec, bytes);
        w->wbuf_len += bytes;
    } else {
        if ((rc = flush(w, err)) != 0)
            return rc;
        if (bytes <= WBUF_SIZE) {
            memcpy(w->wbuf, vec, bytes);
            w->wbuf_len = bytes;
            w->wbuf_row = row;
        } else if (fio_pwrite_full(w->fd, vec, bytes, row_offset(w, row))) {
            return sys_fail(err, "write failed", w->tmp);
        }
    }
    w->norms[row] = (float)norm;
    w->filled[row] = 1;
    return 0;
}

int
semd_writer_add(struct semd_writer *w, const char *word, size_t len,
                const float *vec, uint64_t count, struct semd_err *err)
{
    if (len == 0)
        return semd_err_set(err, SEMD_EINVAL, "empty word");
    if (len > SEMD_MAX_WORD)
        return semd_err_set(err, SEMD_EINVAL,
                            "word of %zu bytes is longer than %d: \"%.40s...\"",
                            len, SEMD_MAX_WORD, word);
    size_t ok = model_utf8_valid_prefix(word, len);
    if (ok != len)
        return semd_err_set(err, SEMD_EINVAL,
                            "invalid UTF-8 at byte %zu of the word after "
                            "\"%.*s\"",
                            ok, (int)(ok > 200 ? 200 : ok), word);
    if (w->rows >= MODEL_MAX_ROWS)
        return semd_err_set(err, SEMD_EINVAL, "too many rows");
    if (w->rows == w->cap_rows && grow_rows(w))
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    if (w->strings_len + len + 1 > w->strings_cap) {
        uint64_t cap = w->strings_cap ? w->strings_cap * 2 : 65536;
        while (cap < w->strings_len + len + 1)
            cap *= 2;
        char *s = realloc(w->strings, cap);
        if (!s)
            return semd_err_set(err, SEMD_ENOMEM, "out of memory");
        w->strings = s;
        w->strings_cap = cap;
    }
    double norm = 0;
    int rc;
    if (vec && (rc = check_vec(w, vec, word, len, &norm, err)) != 0)
        return rc;
    /* The word's bytes must be in the arena for probe() to compare them;
     * they only count once strings_len moves past them. */
    uint64_t row = w->rows;
    memcpy(w->strings + w->strings_len, word, len);
    w->strings[w->strings_len + len] = '\0';
    w->wordoff[row] = w->strings_len;
    w->wordoff[row + 1] = w->strings_len + len + 1;
    int found;
    uint64_t slot = probe(w, w->slots, w->capacity, word, len, &found);
    if (found)
        return semd_err_set(err, SEMD_EINVAL,
                            "duplicate word \"%.*s\" (first at row %u, "
                            "again at row %llu)",
                            (int)(len > 200 ? 200 : len), word,
                            w->slots[slot] + 1, (unsigned long long)row + 1);
    w->counts[row] = (w->flags & SEMD_MODEL_COUNTS_ARE_RANKS) ? row + 1
                                                                : count;
    w->filled[row] = 0;
    w->norms[row] = 0;
    if (vec && (rc = store_row(w, row, vec, norm, err)) != 0)
        return rc;
    w->slots[slot] = (uint32_t)row;
    w->strings_len += len + 1;
    w->rows++;
    if (w->rows * 2 > w->capacity && rehash(w, w->capacity * 2))
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    return 0;
}

int
semd_writer_set_row(struct semd_writer *w, uint64_t row, const float *vec,
                    struct semd_err *err)
{
    if (row >= w->rows)
        return semd_err_set(err, SEMD_EINVAL,
                            "row %llu out of range (%llu rows)",
                            (unsigned long long)row,
                            (unsigned long long)w->rows);
    size_t len;
    const char *word = word_at(w, row, &len);
    double norm;
    int rc = check_vec(w, vec, word, len, &norm, err);
    return rc ? rc : store_row(w, row, vec, norm, err);
}

void
model_q8_row(const float *row, uint32_t dims, float inv_norm, int8_t *codes,
             float aux[2])
{
    float mx = 0;
    for (uint32_t i = 0; i < dims; i++) {
        float a = fabsf(row[i] * inv_norm);
        if (a > mx)
            mx = a;
    }
    if (mx == 0) {
        memset(codes, 0, dims);
        aux[0] = aux[1] = 0;
        return;
    }
    float scale = mx / 127.0f, inv = 127.0f / mx;
    int32_t l1 = 0;
    for (uint32_t i = 0; i < dims; i++) {
        long q = lrintf(row[i] * inv_norm * inv);
        if (q > 127)
            q = 127;
        if (q < -127)
            q = -127;
        codes[i] = (int8_t)q;
        l1 += q < 0 ? -q : q;
    }
    aux[0] = scale;
    aux[1] = scale * (float)l1;
}

struct section {
    uint32_t kind;
    uint32_t crc;
    uint64_t offset;
    uint64_t size;
};

static uint64_t
align_up(uint64_t x)
{
    return (x + MODEL_ALIGN - 1) & ~(uint64_t)(MODEL_ALIGN - 1);
}

/* Appends a section from memory at *end and advances *end. */
static int
put_section(struct semd_writer *w, struct section *sec, uint32_t kind,
            const void *data, uint64_t size, uint64_t *end,
            struct semd_err *err)
{
    sec->kind = kind;
    sec->offset = align_up(*end);
    sec->size = size;
    sec->crc = crc32c(0, data, size);
    if (fio_pwrite_full(w->fd, data, size, sec->offset))
        return sys_fail(err, "write failed", w->tmp);
    *end = sec->offset + size;
    return 0;
}

/* Reads the matrix back in chunks: its checksum and the 8-bit sections. */
static int
put_derived(struct semd_writer *w, struct section *mat, struct section *codes,
            struct section *aux, uint64_t *end, struct semd_err *err)
{
    uint64_t rows = w->rows, dims = w->dims;
    float *buf = malloc(CHUNK_ROWS * dims * 4);
    int8_t *cbuf = malloc(CHUNK_ROWS * dims);
    float *abuf = malloc(CHUNK_ROWS * 2 * sizeof(float));
    int rc = 0;
    if (!buf || !cbuf || !abuf) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    *mat = (struct section){SEC_MATRIX, 0, MODEL_HEADER_SIZE, rows * dims * 4};
    codes->kind = SEC_Q8CODES;
    codes->offset = align_up(MODEL_HEADER_SIZE + mat->size);
    codes->size = rows * dims;
    aux->kind = SEC_Q8AUX;
    aux->offset = align_up(codes->offset + codes->size);
    aux->size = rows * 8;
    uint32_t crc_m = 0, crc_c = 0, crc_a = 0;
    for (uint64_t r0 = 0; r0 < rows; r0 += CHUNK_ROWS) {
        uint64_t n = rows - r0 < CHUNK_ROWS ? rows - r0 : CHUNK_ROWS;
        if (fio_pread_full(w->fd, buf, n * dims * 4, row_offset(w, r0))) {
            rc = sys_fail(err, "read back failed", w->tmp);
            goto out;
        }
        crc_m = crc32c(crc_m, buf, n * dims * 4);
        for (uint64_t i = 0; i < n; i++) {
            float nrm = w->norms[r0 + i];
            model_q8_row(buf + i * dims, w->dims, nrm > 0 ? 1.0f / nrm : 0,
                         cbuf + i * dims, abuf + i * 2);
        }
        crc_c = crc32c(crc_c, cbuf, n * dims);
        crc_a = crc32c(crc_a, abuf, n * 8);
        if (fio_pwrite_full(w->fd, cbuf, n * dims,
                            codes->offset + r0 * dims) ||
            fio_pwrite_full(w->fd, abuf, n * 8, aux->offset + r0 * 8)) {
            rc = sys_fail(err, "write failed", w->tmp);
            goto out;
        }
    }
    mat->crc = crc_m;
    codes->crc = crc_c;
    aux->crc = crc_a;
    *end = aux->offset + aux->size;
out:
    free(buf);
    free(cbuf);
    free(abuf);
    return rc;
}

/* qsort has no context argument: the arena being sorted is passed through
 * a thread-local. */
static _Thread_local const struct semd_writer *sorting;

static int
cmp_rows(const void *a, const void *b)
{
    size_t la, lb;
    const char *wa = word_at(sorting, *(const uint32_t *)a, &la);
    const char *wb = word_at(sorting, *(const uint32_t *)b, &lb);
    int c = memcmp(wa, wb, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

static int
put_sorted(struct semd_writer *w, struct section *sec, uint64_t *end,
           struct semd_err *err)
{
    uint32_t *order = malloc(w->rows * sizeof *order);
    if (!order)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    for (uint64_t r = 0; r < w->rows; r++)
        order[r] = (uint32_t)r;
    sorting = w;
    qsort(order, w->rows, sizeof *order, cmp_rows);
    sorting = NULL;
    int rc = put_section(w, sec, SEC_SORTED, order, w->rows * 4, end, err);
    free(order);
    return rc;
}

static int
fsync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return -1;
    int rc = fio_fsync_dir(dirname(copy));
    free(copy);
    return rc;
}

int
semd_writer_finish(struct semd_writer *w, struct semd_err *err)
{
    int rc;
    struct section sec[SEC_KINDS - 1];
    unsigned nsec = SEC_REQUIRED - 1;
    unsigned char *hdr = NULL;
    uint32_t *hash = NULL;
    uint64_t end = 0;

    if (w->rows == 0) {
        rc = semd_err_set(err, SEMD_EINVAL, "no rows to write");
        goto fail;
    }
    for (uint64_t r = 0; r < w->rows; r++) {
        if (!w->filled[r]) {
            size_t len;
            const char *word = word_at(w, r, &len);
            rc = semd_err_set(err, SEMD_EINVAL, "no vector for \"%.*s\"",
                              (int)(len > 200 ? 200 : len), word);
            goto fail;
        }
    }
    if ((rc = flush(w, err)) != 0)
        goto fail;
    /* Load factor at most one half keeps probes short. */
    uint64_t cap = 1024;
    while (cap < w->rows * 2)
        cap *= 2;
    if (cap != w->capacity && rehash(w, cap)) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = put_derived(w, &sec[0], &sec[6], &sec[7], &end, err)) != 0)
        goto fail;
    if ((rc = put_section(w, &sec[1], SEC_NORMS, w->norms, w->rows * 4, &end,
                          err)) ||
        (rc = put_section(w, &sec[2], SEC_COUNTS, w->counts, w->rows * 8,
                          &end, err)) ||
        (rc = put_section(w, &sec[3], SEC_WORDOFF, w->wordoff,
                          (w->rows + 1) * 8, &end, err)) ||
        (rc = put_section(w, &sec[4], SEC_STRINGS, w->strings,
                          w->strings_len, &end, err)))
        goto fail;
    hash = malloc(8 + w->capacity * 4);
    if (!hash) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto fail;
    }
    wr64((unsigned char *)hash, w->capacity);
    memcpy((unsigned char *)hash + 8, w->slots, w->capacity * 4);
    if ((rc = put_section(w, &sec[5], SEC_HASH, hash, 8 + w->capacity * 4,
                          &end, err)) ||
        (rc = put_sorted(w, &sec[8], &end, err)))
        goto fail;
    if (w->tokenizer &&
        (rc = put_section(w, &sec[nsec++], SEC_TOKENIZER, w->tokenizer,
                          w->tokenizer_size, &end, err)))
        goto fail;

    hdr = calloc(1, MODEL_HEADER_SIZE);
    if (!hdr) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(hdr + HDR_MAGIC, MODEL_MAGIC, 8);
    wr32(hdr + HDR_VERSION, SEMD_MODEL_FORMAT_VERSION);
    wr32(hdr + HDR_HEADER_SIZE, MODEL_HEADER_SIZE);
    wr64(hdr + HDR_ROWS, w->rows);
    wr32(hdr + HDR_DIMS, w->dims);
    wr32(hdr + HDR_DTYPE, SEMD_DTYPE_F32);
    wr32(hdr + HDR_FLAGS, w->flags);
    wr32(hdr + HDR_NSECTIONS, nsec);
    wr64(hdr + HDR_CREATED, (uint64_t)time(NULL));
    wr64(hdr + HDR_FILE_SIZE, end);
    memcpy(hdr + HDR_SOURCE_FORMAT, w->source_format,
           strnlen(w->source_format, 31));
    memcpy(hdr + HDR_SOURCE, w->source, strnlen(w->source, 159));
    uint32_t all = 0;
    for (unsigned i = 0; i < nsec; i++) {
        unsigned char *e = hdr + HDR_SECTIONS + i * SEC_ENTRY_SIZE;
        wr32(e, sec[i].kind);
        wr32(e + 4, sec[i].crc);
        wr64(e + 8, sec[i].offset);
        wr64(e + 16, sec[i].size);
        all = crc32c(all, &sec[i].crc, 4);
    }
    wr32(hdr + HDR_CHECKSUM, all);
    wr32(hdr + HDR_CRC, crc32c(0, hdr, HDR_CRC));
    if (ftruncate(w->fd, (off_t)end) != 0 ||
        fio_pwrite_full(w->fd, hdr, MODEL_HEADER_SIZE, 0) != 0) {
        rc = sys_fail(err, "write failed", w->tmp);
        goto fail;
    }
    if (fchmod(w->fd, 0644) != 0 || (!w->no_sync && fsync(w->fd) != 0)) {
        rc = sys_fail(err, "fsync failed", w->tmp);
        goto fail;
    }
    if (rename(w->tmp, w->path) != 0) {
        rc = sys_fail(err, "cannot rename into place", w->path);
        goto fail;
    }
    free(w->tmp);
    w->tmp = NULL; /* renamed: abort must not remove it */
    if (!w->no_sync)
        fsync_dir(w->path);
    free(hdr);
    free(hash);
    semd_writer_abort(w);
    return 0;
fail:
    free(hdr);
    free(hash);
    semd_writer_abort(w);
    return rc;
}
