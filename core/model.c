/*
 * model.c - open, check and read a model file, mapped read-only.
 *
 * File layout (format version 1, all integers little-endian):
 *
 *   offset 0, 4096 bytes: header
 *       0  char[8]  magic "SEMDMODL"
 *       8  u32      format version (1)
 *      12  u32      header size (4096)
 *      16  u64      rows
 *      24  u32      dims
 *      28  u32      dtype (0: f32)
 *      32  u32      flags (1: counts are ranks)
 *      36  u32      number of sections
 *      40  u64      created, seconds since the epoch
 *      48  u64      file size in bytes
 *      56  u32      model checksum: CRC-32C of the section CRCs in table order
 *      64  char[32] source format, NUL-padded
 *      96  char[160] source name, NUL-padded
 *     256  section table, 32 bytes an entry:
 *              u32 kind, u32 CRC-32C of the section, u64 offset, u64 size,
 *              u64 reserved
 *    4092  u32      CRC-32C of bytes 0..4091
 *
 *   sections, each starting on a 64-byte boundary:
 *     MATRIX  (1) f32[rows][dims] at offset 4096 (page-aligned for mmap)
 *     NORMS   (2) f32[rows], L2 norm of each row
 *     COUNTS  (3) u64[rows], frequency, or 1-based rank (flag 1)
 *     WORDOFF (4) u64[rows + 1], start of each word in STRINGS; the last
 *                 entry is the size of STRINGS
 *     STRINGS (5) UTF-8 words, each followed by one NUL
 *     HASH    (6) u64 capacity (a power of two >= 2 x rows), then
 *                 u32[capacity] rows or 0xFFFFFFFF for empty; FNV-1a 64 of
 *                 the word's bytes, masked, then linear probing
 *     Q8CODES (7) i8[rows][dims], the unit rows quantised (see semd.h)
 *     Q8AUX   (8) f32[rows][2], scale and l1 of each quantised row
 *     SORTED  (9) u32[rows], row numbers ordered by their words' bytes
 *                 (memcmp order, shorter first on a tie): prefix look-up
 *   optional sections (kinds 10 and up; a reader ignores kinds it does not
 *   know, so older readers still open files that have them):
 *     TOKENIZER (10) the byte-level BPE tokenizer that turns text into row
 *                 numbers (token ids), laid out as described atop bpe.c;
 *                 rows are then tokens. Opening only checks its header.
 *
 * Opening checks the header, its CRC, the sizes and the bounds of every
 * section: O(1) in the vocabulary size. The section CRCs are only checked
 * by semd_model_verify, which reads everything. Word offsets are checked
 * against the strings section on every access, so a corrupted file that
 * passed open still cannot make a read go out of bounds.
 *
 * A model is immutable once open; every function here may be called from
 * any number of threads.
 */
#include "semd.h"

#include "bpe.h"
#include "crc32c.h"
#include "model.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct semd_model {
    char *path;
    const unsigned char *base;
    size_t size;
    struct semd_model_info info;
    const float *matrix;
    const float *norms;
    const uint64_t *counts;
    const uint64_t *wordoff;
    const char *strings;
    uint64_t strings_size;
    const uint32_t *slots;
    uint64_t capacity;
    const int8_t *q8codes;
    const float *q8aux;
    const uint32_t *sorted;
    struct semd_tokenizer *tokenizer; /* a view into the map, or NULL */
    struct {
        uint32_t crc;
        uint64_t offset, size;
    } sec[SEC_KINDS];
};

static int
fail(struct semd_err *err, int code, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefixes the message with the file's path, as every message here does. */
static int
fail(struct semd_err *err, int code, const char *path, const char *fmt, ...)
{
    char detail[SEMD_ERR_MSG - 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return semd_err_set(err, code, "%s: %s", path, detail);
}

static uint64_t
expected_size(const struct semd_model_info *in, int kind, uint64_t capacity)
{
    uint64_t r = in->rows, d = in->dims;
    switch (kind) {
    case SEC_MATRIX: return r * d * 4;
    case SEC_NORMS: return r * 4;
    case SEC_COUNTS: return r * 8;
    case SEC_WORDOFF: return (r + 1) * 8;
    case SEC_HASH: return 8 + capacity * 4;
    case SEC_Q8CODES: return r * d;
    case SEC_Q8AUX: return r * 8;
    case SEC_SORTED: return r * 4;
    }
    return UINT64_MAX; /* STRINGS: checked separately */
}

static const char *const kind_names[SEC_KINDS] = {
    "?", "matrix", "norms", "counts", "word offsets", "strings", "hash",
    "q8 codes", "q8 aux", "sorted words", "tokenizer",
};

static int
check(struct semd_model *m, struct semd_err *err)
{
    const unsigned char *h = m->base;
    const char *path = m->path;
    struct semd_model_info *in = &m->info;

    if (m->size < MODEL_HEADER_SIZE) {
        if (m->size >= 8 && memcmp(h, MODEL_MAGIC, 8) != 0)
            return fail(err, SEMD_EFORMAT, path,
                        "not a semd model file (no \"SEMDMODL\" magic at offset 0)");
        return fail(err, SEMD_EFORMAT, path,
                    "truncated: the header needs %u bytes, the file has %zu",
                    MODEL_HEADER_SIZE, m->size);
    }
    if (memcmp(h + HDR_MAGIC, MODEL_MAGIC, 8) != 0)
        return fail(err, SEMD_EFORMAT, path,
                    "not a semd model file (no \"SEMDMODL\" magic at offset 0)");
    if (rd32(h + HDR_CRC) != crc32c(0, h, HDR_CRC))
        return fail(err, SEMD_ECORRUPT, path,
                    "corrupted: header checksum mismatch at offset %d",
                    HDR_CRC);
    in->version = rd32(h + HDR_VERSION);
    if (in->version != SEMD_MODEL_FORMAT_VERSION)
        return fail(err, SEMD_EFORMAT, path,
                    "format version %u is not supported (expected %d)",
                    in->version, SEMD_MODEL_FORMAT_VERSION);
    if (rd32(h + HDR_HEADER_SIZE) != MODEL_HEADER_SIZE)
        return fail(err, SEMD_EFORMAT, path,
                    "header size %u at offset 12, expected %u",
                    rd32(h + HDR_HEADER_SIZE), MODEL_HEADER_SIZE);
    in->rows = rd64(h + HDR_ROWS);
    in->dims = rd32(h + HDR_DIMS);
    in->dtype = rd32(h + HDR_DTYPE);
    in->flags = rd32(h + HDR_FLAGS);
    in->created = rd64(h + HDR_CREATED);
    in->file_size = rd64(h + HDR_FILE_SIZE);
    in->checksum = rd32(h + HDR_CHECKSUM);
    memcpy(in->source_format, h + HDR_SOURCE_FORMAT,
           sizeof in->source_format - 1);
    memcpy(in->source, h + HDR_SOURCE, sizeof in->source - 1);

    if (in->file_size != m->size)
        return fail(err, SEMD_EFORMAT, path,
                    "%s: the header says %llu bytes, the file has %zu",
                    in->file_size > m->size ? "truncated" : "size mismatch",
                    (unsigned long long)in->file_size, m->size);
    if (in->rows == 0 || in->rows > MODEL_MAX_ROWS)
        return fail(err, SEMD_EFORMAT, path,
                    "bad row count %llu at offset 16",
                    (unsigned long long)in->rows);
    if (in->dims == 0 || in->dims > MODEL_MAX_DIMS)
        return fail(err, SEMD_EFORMAT, path,
                    "bad dimension count %u at offset 24", in->dims);
    if (in->dtype != SEMD_DTYPE_F32)
        return fail(err, SEMD_EFORMAT, path,
                    "unsupported dtype %u at offset 28", in->dtype);

    uint32_t n = rd32(h + HDR_NSECTIONS);
    if (n > MODEL_MAX_SECTIONS)
        return fail(err, SEMD_EFORMAT, path,
                    "%u sections at offset 36, at most %u", n,
                    MODEL_MAX_SECTIONS);
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *e = h + HDR_SECTIONS + i * SEC_ENTRY_SIZE;
        uint32_t kind = rd32(e);
        uint64_t off = rd64(e + 8), size = rd64(e + 16);
        if (kind == 0 || kind >= SEC_KINDS)
            continue; /* a later format's section: ignored */
        if (off % MODEL_ALIGN != 0 || off < MODEL_HEADER_SIZE ||
            off > m->size || size > m->size - off)
            return fail(err, SEMD_EFORMAT, path,
                        "%s section out of bounds (offset %llu, size %llu)",
                        kind_names[kind], (unsigned long long)off,
                        (unsigned long long)size);
        m->sec[kind].crc = rd32(e + 4);
        m->sec[kind].offset = off;
        m->sec[kind].size = size;
    }
    for (int k = 1; k < SEC_REQUIRED; k++)
        if (m->sec[k].offset == 0)
            return fail(err, SEMD_EFORMAT, path,
                        "the %s section is missing", kind_names[k]);
    if (m->sec[SEC_MATRIX].offset != MODEL_HEADER_SIZE)
        return fail(err, SEMD_EFORMAT, path,
                    "matrix section at offset %llu, expected %u",
                    (unsigned long long)m->sec[SEC_MATRIX].offset,
                    MODEL_HEADER_SIZE);
    /* The capacity is read only once the section holds it, and must fit
     * the section before 8 + 4 x capacity is computed: 2^62 slots would
     * wrap that sum to 8 and pass the size check below. */
    uint64_t hsize = m->sec[SEC_HASH].size;
    m->capacity = hsize >= 8 ? rd64(m->base + m->sec[SEC_HASH].offset) : 0;
    if (hsize < 8 || m->capacity < in->rows + 1 ||
        m->capacity > (hsize - 8) / 4 ||
        (m->capacity & (m->capacity - 1)) != 0)
        return fail(err, SEMD_EFORMAT, path,
                    "bad hash capacity %llu for %llu rows",
                    (unsigned long long)m->capacity,
                    (unsigned long long)in->rows);
    for (int k = 1; k < SEC_REQUIRED; k++) {
        uint64_t want = expected_size(in, k, m->capacity);
        if (want != UINT64_MAX && m->sec[k].size != want)
            return fail(err, SEMD_EFORMAT, path,
                        "%s section has %llu bytes, expected %llu",
                        kind_names[k], (unsigned long long)m->sec[k].size,
                        (unsigned long long)want);
    }

    m->matrix = (const float *)(m->base + m->sec[SEC_MATRIX].offset);
    m->norms = (const float *)(m->base + m->sec[SEC_NORMS].offset);
    m->counts = (const uint64_t *)(m->base + m->sec[SEC_COUNTS].offset);
    m->wordoff = (const uint64_t *)(m->base + m->sec[SEC_WORDOFF].offset);
    m->strings = (const char *)(m->base + m->sec[SEC_STRINGS].offset);
    m->strings_size = m->sec[SEC_STRINGS].size;
    m->slots = (const uint32_t *)(m->base + m->sec[SEC_HASH].offset + 8);
    m->q8codes = (const int8_t *)(m->base + m->sec[SEC_Q8CODES].offset);
    m->q8aux = (const float *)(m->base + m->sec[SEC_Q8AUX].offset);
    m->sorted = (const uint32_t *)(m->base + m->sec[SEC_SORTED].offset);

    if (m->wordoff[0] != 0 || m->wordoff[in->rows] != m->strings_size ||
        m->strings_size == 0 || m->strings[m->strings_size - 1] != '\0')
        return fail(err, SEMD_EFORMAT, path,
                    "vocabulary: word offsets do not span the strings "
                    "(%llu of %llu)",
                    (unsigned long long)m->wordoff[in->rows],
                    (unsigned long long)m->strings_size);
    if (m->sec[SEC_TOKENIZER].offset != 0) {
        struct semd_err e2 = {0};
        if (bpe_view(&m->tokenizer, m->base + m->sec[SEC_TOKENIZER].offset,
                     m->sec[SEC_TOKENIZER].size, &e2) != 0)
            return fail(err, e2.code, path, "%s (offset %llu)", e2.msg,
                        (unsigned long long)m->sec[SEC_TOKENIZER].offset);
    }
    return 0;
}

int
semd_model_open(struct semd_model **out, const char *path,
                struct semd_err *err)
{
    if (!out || !path)
        return semd_err_set(err, SEMD_EINVAL, "no model path given");
    struct semd_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
        rc = semd_err_set(err, SEMD_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = semd_err_set(err, SEMD_EIO, "%s: not a regular file", path);
        goto fail;
    }
    m->size = (size_t)st.st_size;
    if (m->size == 0) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: empty file", path);
        goto fail;
    }
    void *p = mmap(NULL, m->size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        rc = semd_err_set(err, SEMD_EIO, "%s: cannot map: %s", path,
                          strerror(errno));
        goto fail;
    }
    m->base = p;
    close(fd);
    fd = -1;
    if ((rc = check(m, err)) != 0)
        goto fail;
    *out = m;
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    semd_model_close(m);
    return rc;
}

void
semd_model_close(struct semd_model *m)
{
    if (!m)
        return;
    semd_tokenizer_free(m->tokenizer);
    if (m->base)
        munmap((void *)m->base, m->size);
    free(m->path);
    free(m);
}

void
semd_model_get_info(const struct semd_model *m, struct semd_model_info *out)
{
    *out = m->info;
}

uint64_t
semd_model_rows(const struct semd_model *m)
{
    return m->info.rows;
}

uint32_t
semd_model_dims(const struct semd_model *m)
{
    return m->info.dims;
}

const char *
semd_model_path(const struct semd_model *m)
{
    return m->path;
}

int
semd_model_verify(const struct semd_model *m, struct semd_err *err)
{
    uint32_t all = 0;
    const unsigned char *h = m->base;
    uint32_t n = rd32(h + HDR_NSECTIONS);
    for (uint32_t i = 0; i < n; i++) {
        const unsigned char *e = h + HDR_SECTIONS + i * SEC_ENTRY_SIZE;
        uint32_t kind = rd32(e), want = rd32(e + 4);
        uint64_t off = rd64(e + 8), size = rd64(e + 16);
        if (off > m->size || size > m->size - off)
            return fail(err, SEMD_EFORMAT, m->path,
                        "a section is out of bounds (offset %llu, size %llu)",
                        (unsigned long long)off, (unsigned long long)size);
        uint32_t got = crc32c(0, m->base + off, size);
        if (got != want)
            return fail(err, SEMD_ECORRUPT, m->path,
                        "%s section is corrupted (checksum mismatch, "
                        "offset %llu, size %llu)",
                        kind < SEC_KINDS ? kind_names[kind] : "unknown",
                        (unsigned long long)off, (unsigned long long)size);
        all = crc32c(all, &got, 4);
    }
    if (all != m->info.checksum)
        return fail(err, SEMD_ECORRUPT, m->path,
                    "model checksum mismatch at offset %d", HDR_CHECKSUM);
    /* Structural checks open skips because they cost O(rows). */
    for (uint64_t r = 0; r < m->info.rows; r++) {
        uint64_t a = m->wordoff[r], b = m->wordoff[r + 1];
        if (a >= b || b > m->strings_size || m->strings[b - 1] != '\0' ||
            memchr(m->strings + a, '\0', b - a - 1) != NULL)
            return fail(err, SEMD_EFORMAT, m->path,
                        "vocabulary: bad word offsets at row %llu (offset %llu)",
                        (unsigned long long)r, (unsigned long long)a);
    }
    if (m->tokenizer) {
        struct semd_err e2 = {0};
        if (bpe_check(m->tokenizer, &e2) != 0)
            return fail(err, e2.code, m->path, "%s", e2.msg);
    }
    return 0;
}

const struct semd_tokenizer *
semd_model_tokenizer(const struct semd_model *m)
{
    return m->tokenizer;
}

int
semd_model_lookup(const struct semd_model *m, const char *word, size_t len,
                  uint64_t *row)
{
    uint64_t mask = m->capacity - 1;
    uint64_t i = model_hash(word, len) & mask;
    for (uint64_t probes = 0; probes < m->capacity; probes++) {
        uint32_t r = m->slots[i];
        if (r == MODEL_HASH_EMPTY)
            return SEMD_ENOWORD;
        if (r < m->info.rows) {
            size_t wl;
            const char *w = semd_model_word(m, r, &wl);
            if (wl == len && memcmp(w, word, len) == 0) {
                *row = r;
                return 0;
            }
        }
        i = (i + 1) & mask;
    }
    return SEMD_ENOWORD;
}

const char *
semd_model_word(const struct semd_model *m, uint64_t row, size_t *len)
{
    uint64_t a = m->wordoff[row], b = m->wordoff[row + 1];
    if (a >= b || b > m->strings_size) {
        /* Only a corrupted file gets here; verify reports it. */
        if (len)
            *len = 0;
        return "";
    }
    if (len)
        *len = b - a - 1;
    return m->strings + a;
}

const float *
semd_model_row(const struct semd_model *m, uint64_t row)
{
    return m->matrix + row * m->info.dims;
}

const float *
semd_model_matrix(const struct semd_model *m)
{
    return m->matrix;
}

const float *
semd_model_norms(const struct semd_model *m)
{
    return m->norms;
}

uint64_t
semd_model_count(const struct semd_model *m, uint64_t row)
{
    return m->counts[row];
}

void
semd_model_q8(const struct semd_model *m, const int8_t **codes,
              const float **aux)
{
    *codes = m->q8codes;
    *aux = m->q8aux;
}

/* memcmp order of a row's word against key[0..n), comparing at most the
 * key's length: 0 means the word starts with key. */
static int
cmp_prefix(const struct semd_model *m, uint32_t row, const char *key,
           size_t n)
{
    size_t wl;
    const char *w = semd_model_word(m, row, &wl);
    int c = memcmp(w, key, wl < n ? wl : n);
    if (c != 0)
        return c;
    return wl < n ? -1 : 0;
}

int
semd_model_prefix(const struct semd_model *m, const char *prefix, size_t len,
                  uint64_t *rows, size_t cap, size_t *n)
{
    /* The sorted section gives the range of words that start with prefix;
     * the lowest row numbers in it are the most frequent words. */
    uint64_t lo = 0, hi = m->info.rows;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint32_t r = m->sorted[mid];
        if (r >= m->info.rows || cmp_prefix(m, r, prefix, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t got = 0;
    for (uint64_t i = lo; i < m->info.rows; i++) {
        uint32_t r = m->sorted[i];
        if (r >= m->info.rows || cmp_prefix(m, r, prefix, len) != 0)
            break;
        /* keep the cap smallest rows, in order: insertion into a short
         * sorted list */
        if (got == cap && (cap == 0 || r >= rows[cap - 1]))
            continue;
        size_t j = got < cap ? got++ : cap - 1;
        while (j > 0 && rows[j - 1] > r) {
            rows[j] = rows[j - 1];
            j--;
        }
        rows[j] = r;
    }
    *n = got;
    return 0;
}

size_t
model_utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c == 0)
            return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            need = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (i + need >= n)
            return i;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += need + 1;
    }
    return i;
}
