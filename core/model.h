/*
 * model.h - the on-disk layout of a model file, shared by the reader
 * (model.c) and the writer (writer.c). The layout is described atop model.c.
 */
#ifndef SEMD_MODEL_H
#define SEMD_MODEL_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "semd model files are little-endian; this host is not"
#endif

#define MODEL_MAGIC "SEMDMODL"
#define MODEL_HEADER_SIZE 4096u
#define MODEL_ALIGN 64u
#define MODEL_MAX_SECTIONS 32u
#define MODEL_MAX_DIMS 65536u
#define MODEL_HASH_EMPTY 0xFFFFFFFFu
#define MODEL_MAX_ROWS 0xFFFFFFF0u

enum model_section {
    SEC_MATRIX = 1,  /* f32 rows x dims, at MODEL_HEADER_SIZE */
    SEC_NORMS = 2,   /* f32 rows */
    SEC_COUNTS = 3,  /* u64 rows */
    SEC_WORDOFF = 4, /* u64 rows + 1: offsets into SEC_STRINGS */
    SEC_STRINGS = 5, /* words, each followed by a NUL */
    SEC_HASH = 6,    /* u64 capacity (a power of two), then u32 slots */
    SEC_Q8CODES = 7, /* i8 rows x dims */
    SEC_Q8AUX = 8,   /* f32 rows x 2: scale, l1 */
    SEC_SORTED = 9,  /* u32 rows, the rows ordered by their words' bytes */
    SEC_REQUIRED = 10, /* kinds below this one must be present */
    SEC_TOKENIZER = 10, /* optional: a byte-level BPE tokenizer (bpe.c) */
    SEC_KINDS = 11   /* one past the last kind */
};

/* Byte offsets of header fields. */
enum {
    HDR_MAGIC = 0,
    HDR_VERSION = 8,
    HDR_HEADER_SIZE = 12,
    HDR_ROWS = 16,
    HDR_DIMS = 24,
    HDR_DTYPE = 28,
    HDR_FLAGS = 32,
    HDR_NSECTIONS = 36,
    HDR_CREATED = 40,
    HDR_FILE_SIZE = 48,
    HDR_CHECKSUM = 56,
    HDR_SOURCE_FORMAT = 64, /* char[32], NUL-padded */
    HDR_SOURCE = 96,        /* char[160], NUL-padded */
    HDR_SECTIONS = 256,     /* MODEL_MAX_SECTIONS x 32 bytes */
    HDR_CRC = MODEL_HEADER_SIZE - 4
};

/* One section table entry: u32 kind, u32 crc32c, u64 offset, u64 size,
 * u64 reserved (zero). */
#define SEC_ENTRY_SIZE 32u

static inline uint64_t
model_hash(const char *s, size_t n)
{
    /* FNV-1a, 64 bit: part of the file format, never change it. */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static inline uint32_t
rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t
rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void
wr32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static inline void
wr64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* Length of the longest valid UTF-8 prefix of s[0..n), rejecting NUL,
 * overlong forms and surrogates. Equal to n when s is valid. */
size_t model_utf8_valid_prefix(const char *s, size_t n);

/* Quantises one unit-scaled row: codes and {scale, l1} as documented in
 * semd.h for semd_model_q8. inv_norm is 1 / the row's norm (0 for a zero
 * row). */
void model_q8_row(const float *row, uint32_t dims, float inv_norm,
                  int8_t *codes, float aux[2]);

#endif
