/*
 * bpe.c - GPT-2 byte-level BPE: loading vocab.json + merges.txt or
 * tokenizer.json, the serialised form a model file carries, tokenizing and
 * decoding.
 *
 * Exactness: the pre-tokeniser is GPT-2's pattern
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * written out by hand (next_piece), with \s as White_Space (as the Python
 * regex module, Oniguruma and Rust's regex read it; JavaScript's \s differs
 * on U+0085 and U+FEFF). Merging follows the reference loop: repeatedly
 * take the lowest-ranked adjacent pair and merge all its occurrences left to
 * right. A heap of candidate pairs does this in O(n log n) per piece; pairs
 * made by a merge enter the heap only after every occurrence of the current
 * pair has merged, so even a merge file whose ranks are not monotonic gives
 * the reference's answer.
 *
 * Serialised form (little-endian, what a model file's tokenizer section
 * holds; N tokens, M merges):
 *      0 char[8]  magic "SEMDBPE1"
 *      8 u32      N (>= 1)
 *     12 u32      M
 *     16 u32      merge table capacity MC (a power of two > M)
 *     20 u32      token table capacity TC (a power of two > N)
 *     24 u32      flags (0)
 *     28 u32      reserved (0)
 *     32 u64      S, size of the token strings
 *     40 u64      B, size of the token bytes
 *     48 u32[256] id of each single byte's token
 *   1072 u32[N+1] start of each token's string in STRINGS; the last is S
 *        u32[N+1] start of each token's bytes in BYTES; the last is B
 *        u32[M][2] the merges in file order (rank): left id, right id
 *        u32[MC][4] merge table: left, right, rank, result id; left
 *                  0xFFFFFFFF marks an empty slot. Slot of (l, r):
 *                  pair_hash below, masked, then linear probing. A pair
 *                  listed twice keeps its later rank, as the reference's
 *                  dict does.
 *        u32[TC]  token table: ids by string, 0xFFFFFFFF empty; FNV-1a 64
 *                 of the string (model_hash), masked, linear probing
 *        STRINGS  tokens in byte-level form, each followed by a NUL
 *        BYTES    the bytes each token stands for
 * Nothing is parsed when a model opens: bpe_view checks the header and the
 * sizes, and every offset and id is bounds-checked where it is used, so a
 * corrupted section cannot make a read go out of bounds; bpe_check (from
 * semd_model_verify) checks them all at once.
 *
 * Tokenizers are immutable: every function here may run in many threads.
 */
#include "bpe.h"

#include "model.h"
#include "unicode.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMPTY 0xFFFFFFFFu
#define HDR_SIZE 1072u

struct semd_tokenizer {
    unsigned char *owned; /* the blob when loaded, NULL for a view */
    const unsigned char *blob;
    size_t size;
    uint32_t n, m, mcap, tcap;
    uint64_t ssize, bsize;
    const uint32_t *byte_ids;
    const uint32_t *str_off;
    const uint32_t *byte_off;
    const uint32_t *merges;
    const uint32_t *mtab;
    const uint32_t *ttab;
    const char *strings;
    const unsigned char *bytes;
};

static inline uint64_t
pair_hash(uint32_t l, uint32_t r)
{
    /* Part of the serialised form: never change it. */
    uint64_t h = ((uint64_t)l << 32 | r) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

/* ------------------------------------------------------------ the layout */

static uint64_t
blob_size(uint64_t n, uint64_t m, uint64_t mcap, uint64_t tcap, uint64_t s,
          uint64_t b)
{
    return HDR_SIZE + 8 * (n + 1) + 8 * m + 16 * mcap + 4 * tcap + s + b;
}

static void
point(struct semd_tokenizer *t)
{
    const unsigned char *p = t->blob;
    t->byte_ids = (const uint32_t *)(p + 48);
    p += HDR_SIZE;
    t->str_off = (const uint32_t *)p;
    p += 4 * ((size_t)t->n + 1);
    t->byte_off = (const uint32_t *)p;
    p += 4 * ((size_t)t->n + 1);
    t->merges = (const uint32_t *)p;
    p += 8 * (size_t)t->m;
    t->mtab = (const uint32_t *)p;
    p += 16 * (size_t)t->mcap;
    t->ttab = (const uint32_t *)p;
    p += 4 * (size_t)t->tcap;
    t->strings = (const char *)p;
    t->bytes = p + t->ssize;
}

static int
pow2(uint64_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

int
bpe_view(struct semd_tokenizer **out, const void *data, size_t size,
         struct semd_err *err)
{
    const unsigned char *p = data;
    if (size < HDR_SIZE || memcmp(p, BPE_MAGIC, 8) != 0)
        return semd_err_set(err, SEMD_EFORMAT,
                            "tokenizer: no \"%s\" magic in %zu bytes",
                            BPE_MAGIC, size);
    if (((uintptr_t)p & 3) != 0)
        return semd_err_set(err, SEMD_EINVAL, "tokenizer: misaligned data");
    uint32_t n = rd32(p + 8), m = rd32(p + 12);
    uint32_t mcap = rd32(p + 16), tcap = rd32(p + 20);
    uint64_t s = rd64(p + 32), b = rd64(p + 40);
    if (n == 0 || !pow2(mcap) || mcap <= m || !pow2(tcap) || tcap <= n ||
        s > size || b > size || s > UINT32_MAX || b > UINT32_MAX)
        return semd_err_set(err, SEMD_EFORMAT,
                            "tokenizer: bad header (%u tokens, %u merges, "
                            "tables %u and %u)",
                            n, m, mcap, tcap);
    uint64_t want = blob_size(n, m, mcap, tcap, s, b);
    if (want != size)
        return semd_err_set(err, SEMD_EFORMAT,
                            "tokenizer: %zu bytes, expected %llu", size,
                            (unsigned long long)want);
    for (int i = 0; i < 256; i++)
        if (rd32(p + 48 + 4 * i) >= n)
            return semd_err_set(err, SEMD_EFORMAT,
                                "tokenizer: byte 0x%02x has token id %u of "
                                "%u",
                                i, rd32(p + 48 + 4 * i), n);
    if (s == 0 || p[HDR_SIZE + 8 * ((size_t)n + 1) + 8 * (size_t)m +
                     16 * (size_t)mcap + 4 * (size_t)tcap + s - 1] != 0)
        return semd_err_set(err, SEMD_EFORMAT,
                            "tokenizer: strings do not end with a NUL");
    struct semd_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    t->blob = p;
    t->size = size;
    t->n = n;
    t->m = m;
    t->mcap = mcap;
    t->tcap = tcap;
    t->ssize = s;
    t->bsize = b;
    point(t);
    *out = t;
    return 0;
}

void
bpe_blob(const struct semd_tokenizer *t, const void **data, size_t *size)
{
    *data = t->blob;
    *size = t->size;
}

void
semd_tokenizer_free(struct semd_tokenizer *t)
{
    if (!t)
        return;
    free(t->owned);
    free(t);
}

uint32_t
semd_tokenizer_size(const struct semd_tokenizer *t)
{
    return t->n;
}

uint32_t
semd_tokenizer_merges(const struct semd_tokenizer *t)
{
    return t->m;
}

const char *
semd_tokenizer_token(const struct semd_tokenizer *t, uint32_t id,
                     size_t *len)
{
    if (id >= t->n)
        return NULL;
    uint32_t a = t->str_off[id], b = t->str_off[id + 1];
    if (a >= b || b > t->ssize || t->strings[b - 1] != '\0')
        return NULL; /* only a corrupted section gets here */
    if (len)
        *len = b - a - 1;
    return t->strings + a;
}

const char *
semd_tokenizer_bytes(const struct semd_tokenizer *t, uint32_t id,
                     size_t *len)
{
    if (id >= t->n)
        return NULL;
    uint32_t a = t->byte_off[id], b = t->byte_off[id + 1];
    if (a > b || b > t->bsize)
        return NULL;
    if (len)
        *len = b - a;
    return (const char *)t->bytes + a;
}

int
semd_tokenizer_lookup(const struct semd_tokenizer *t, const char *token,
                      size_t len, uint32_t *id)
{
    uint64_t mask = t->tcap - 1, i = model_hash(token, len) & mask;
    for (uint32_t probes = 0; probes < t->tcap; probes++) {
        uint32_t r = t->ttab[i];
        if (r == EMPTY)
            return SEMD_ENOWORD;
        size_t tl;
        const char *s = semd_tokenizer_token(t, r, &tl);
        if (s && tl == len && memcmp(s, token, len) == 0) {
            *id = r;
            return 0;
        }
        i = (i + 1) & mask;
    }
    return SEMD_ENOWORD;
}

/* The merge of (l, r): its rank and result, or 0 if there is none. */
static int
find_merge(const struct semd_tokenizer *t, uint32_t l, uint32_t r,
           uint32_t *rank, uint32_t *result)
{
    uint64_t mask = t->mcap - 1, i = pair_hash(l, r) & mask;
    for (uint32_t probes = 0; probes < t->mcap; probes++) {
        const uint32_t *e = t->mtab + 4 * i;
        if (e[0] == EMPTY)
            return 0;
        if (e[0] == l && e[1] == r) {
            if (e[3] >= t->n)
                return 0; /* corrupted: verify reports it */
            *rank = e[2];
            *result = e[3];
            return 1;
        }
        i = (i + 1) & mask;
    }
    return 0;
}

int
bpe_check(const struct semd_tokenizer *t, struct semd_err *err)
{
    if (t->str_off[0] != 0 || t->str_off[t->n] != t->ssize ||
        t->byte_off[0] != 0 || t->byte_off[t->n] != t->bsize)
        return semd_err_set(err, SEMD_EFORMAT,
                            "tokenizer: offsets do not span the strings");
    for (uint32_t i = 0; i < t->n; i++) {
        size_t len;
        const char *s = semd_tokenizer_token(t, i, &len);
        if (!s || memchr(s, '\0', len) || !semd_tokenizer_bytes(t, i, NULL))
            return semd_err_set(err, SEMD_EFORMAT,
                                "tokenizer: bad offsets of token %u", i);
        uint32_t id;
        if (semd_tokenizer_lookup(t, s, len, &id) != 0 || id != i)
            return semd_err_set(err, SEMD_EFORMAT,
                                "tokenizer: token %u is not in its table", i);
    }
    uint32_t used = 0;
    for (uint32_t i = 0; i < t->mcap; i++) {
        const uint32_t *e = t->mtab + 4 * i;
        if (e[0] == EMPTY)
            continue;
        used++;
        uint32_t rank, res;
        if (e[0] >= t->n || e[1] >= t->n || e[2] >= t->m || e[3] >= t->n ||
            !find_merge(t, e[0], e[1], &rank, &res) || rank != e[2] ||
            t->merges[2 * e[2]] != e[0] || t->merges[2 * e[2] + 1] != e[1])
            return semd_err_set(err, SEMD_EFORMAT,
                                "tokenizer: bad merge table entry %u", i);
    }
    if (used > t->m)
        return semd_err_set(err, SEMD_EFORMAT,
                            "tokenizer: %u merge entries for %u merges",
                            used, t->m);
    return 0;
}

/* ----------------------------------------------------- the byte alphabet */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the other 68 take the code points from U+0100 on, in byte order. */
static uint32_t
byte_char(unsigned b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    unsigned n = 0;
    for (unsigned x = 0; x < b; x++)
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) ||
              x >= 0xAE))
            n++;
    return 256 + n;
}

/* Decodes one UTF-8 character at s[0..n), n >= 1: its code point and
 * length; an invalid sequence gives U+FFFD with length 1. */
static uint32_t
utf8_next(const unsigned char *s, size_t n, size_t *len)
{
    unsigned c = s[0];
    *len = 1;
    if (c < 0x80)
        return c;
    size_t need;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0)
        need = 1, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
        need = 2, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
        need = 3, cp = c & 0x07, min = 0x10000;
    else
        return 0xFFFD;
    if (need >= n)
        return 0xFFFD;
    for (size_t k = 1; k <= need; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0xFFFD;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0xFFFD;
    *len = need + 1;
    return cp;
}

static int
put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* ------------------------------------------------ look-ups for queries */

int
semd_tokenizer_find(const struct semd_tokenizer *t, const char *bytes,
                    size_t len, uint32_t *id)
{
    /* each byte is one character of at most 2 bytes in byte-level form */
    char s[2 * SEMD_MAX_WORD];
    if (len == 0 || len > SEMD_MAX_WORD)
        return SEMD_ENOWORD;
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += (size_t)put_utf8(s + n, byte_char((unsigned char)bytes[i]));
    return semd_tokenizer_lookup(t, s, n, id);
}

int
semd_tokenizer_merge(const struct semd_tokenizer *t, uint32_t rank,
                     uint32_t *left, uint32_t *right, uint32_t *result)
{
    if (rank >= t->m)
        return SEMD_EINVAL;
    uint32_t l = t->merges[2 * (size_t)rank];
    uint32_t r = t->merges[2 * (size_t)rank + 1];
    uint32_t k, res;
    /* a pair listed twice keeps its later rank: the earlier one is dead */
    if (l >= t->n || r >= t->n || !find_merge(t, l, r, &k, &res) || k != rank)
        return SEMD_ENOWORD;
    *left = l;
    *right = r;
    *result = res;
    return 0;
}

/* ------------------------------------------------------------- building */

/* A growable byte buffer. */
struct buf {
    char *p;
    size_t len, cap;
};

static int
buf_add(struct buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* What the loaders collect before the blob is laid out. */
struct build {
    const char *path; /* for messages */
    uint32_t n;
    const char **tok; /* n token strings (borrowed from the parsed JSON) */
    size_t *tlen;
    struct buf merges; /* u32 pairs */
    uint32_t m;
    /* a scratch table of ids by string, for the merges */
    uint32_t *tab;
    uint64_t tcap;
};

static int
build_lookup(const struct build *bd, const char *s, size_t len, uint32_t *id)
{
    uint64_t mask = bd->tcap - 1, i = model_hash(s, len) & mask;
    for (;;) {
        uint32_t r = bd->tab[i];
        if (r == EMPTY)
            return -1;
        if (bd->tlen[r] == len && memcmp(bd->tok[r], s, len) == 0) {
            *id = r;
            return 0;
        }
        i = (i + 1) & mask;
    }
}

/* Adds the merge of left and right (byte-level strings). */
static int
build_merge(struct build *bd, const char *l, size_t ll, const char *r,
            size_t rl, const char *where, struct semd_err *err)
{
    uint32_t ids[2];
    if (build_lookup(bd, l, ll, &ids[0]) != 0)
        return semd_err_set(err, SEMD_EFORMAT,
                            "%s: %s: \"%.*s\" is not in the vocabulary",
                            bd->path, where, (int)(ll > 100 ? 100 : ll), l);
    if (build_lookup(bd, r, rl, &ids[1]) != 0)
        return semd_err_set(err, SEMD_EFORMAT,
                            "%s: %s: \"%.*s\" is not in the vocabulary",
                            bd->path, where, (int)(rl > 100 ? 100 : rl), r);
    if (bd->m == UINT32_MAX - 1 || buf_add(&bd->merges, ids, sizeof ids))
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    bd->m++;
    return 0;
}

/* Lays out the blob from the collected tokens and merges. */
static int
build_blob(struct build *bd, struct semd_tokenizer **out,
           struct semd_err *err)
{
    int rc = SEMD_ENOMEM;
    struct buf strs = {0}, bytes = {0};
    uint32_t *soff = malloc(((size_t)bd->n + 1) * 4);
    uint32_t *boff = malloc(((size_t)bd->n + 1) * 4);
    unsigned char *blob = NULL;
    int16_t rev[0x144]; /* byte-level character to byte */
    memset(rev, 0xFF, sizeof rev);
    for (unsigned b = 0; b < 256; b++)
        rev[byte_char(b)] = (int16_t)b;
    if (!soff || !boff)
        goto nomem;
    for (uint32_t i = 0; i < bd->n; i++) {
        soff[i] = (uint32_t)strs.len;
        boff[i] = (uint32_t)bytes.len;
        const unsigned char *s = (const unsigned char *)bd->tok[i];
        size_t len = bd->tlen[i];
        if (buf_add(&strs, s, len) || buf_add(&strs, "", 1))
            goto nomem;
        /* A token made only of byte-level characters stands for their
         * bytes; any other (an added token such as a control word) stands
         * for its own UTF-8. */
        size_t start = bytes.len, k = 0;
        int bytelevel = 1;
        while (k < len) {
            size_t cl;
            uint32_t cp = utf8_next(s + k, len - k, &cl);
            if (cp >= 0x144 || rev[cp] < 0) {
                bytelevel = 0;
                break;
            }
            unsigned char b = (unsigned char)rev[cp];
            if (buf_add(&bytes, &b, 1))
                goto nomem;
            k += cl;
        }
        if (!bytelevel) {
            bytes.len = start;
            if (buf_add(&bytes, s, len))
                goto nomem;
        }
        if (strs.len > UINT32_MAX || bytes.len > UINT32_MAX) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s: the vocabulary is too large", bd->path);
            goto fail;
        }
    }
    soff[bd->n] = (uint32_t)strs.len;
    boff[bd->n] = (uint32_t)bytes.len;

    uint64_t mcap = 16, tcap = 16;
    while (mcap < 2 * (uint64_t)bd->m + 1)
        mcap *= 2;
    while (tcap < 2 * (uint64_t)bd->n + 1)
        tcap *= 2;
    if (mcap > UINT32_MAX || tcap > UINT32_MAX) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: too many tokens or merges",
                          bd->path);
        goto fail;
    }
    uint64_t size = blob_size(bd->n, bd->m, mcap, tcap, strs.len, bytes.len);
    blob = calloc(1, size);
    if (!blob)
        goto nomem;
    unsigned char *p = blob;
    memcpy(p, BPE_MAGIC, 8);
    wr32(p + 8, bd->n);
    wr32(p + 12, bd->m);
    wr32(p + 16, (uint32_t)mcap);
    wr32(p + 20, (uint32_t)tcap);
    wr64(p + 32, strs.len);
    wr64(p + 40, bytes.len);
    struct semd_tokenizer t = {.blob = blob, .size = size, .n = bd->n,
                               .m = bd->m, .mcap = (uint32_t)mcap,
                               .tcap = (uint32_t)tcap, .ssize = strs.len,
                               .bsize = bytes.len};
    point(&t);
    memcpy((void *)t.str_off, soff, ((size_t)bd->n + 1) * 4);
    memcpy((void *)t.byte_off, boff, ((size_t)bd->n + 1) * 4);
    memcpy((void *)t.merges, bd->merges.p, (size_t)bd->m * 8);
    memset((void *)t.mtab, 0xFF, mcap * 16);
    memset((void *)t.ttab, 0xFF, tcap * 4);
    memcpy((void *)t.strings, strs.p, strs.len);
    memcpy((void *)t.bytes, bytes.p, bytes.len);
    uint32_t *ttab = (uint32_t *)t.ttab, *mtab = (uint32_t *)t.mtab;
    for (uint32_t i = 0; i < bd->n; i++) {
        uint64_t j = model_hash(bd->tok[i], bd->tlen[i]) & (tcap - 1);
        while (ttab[j] != EMPTY)
            j = (j + 1) & (tcap - 1);
        ttab[j] = i;
    }
    for (unsigned b = 0; b < 256; b++) {
        char s[4];
        int len = put_utf8(s, byte_char(b));
        uint32_t id;
        if (semd_tokenizer_lookup(&t, s, (size_t)len, &id) != 0) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s: the vocabulary lacks the token \"%.*s\" "
                              "of byte 0x%02x",
                              bd->path, len, s, b);
            goto fail;
        }
        wr32(p + 48 + 4 * b, id);
    }
    const uint32_t *mp = (const uint32_t *)bd->merges.p;
    struct buf cat = {0};
    for (uint32_t r = 0; r < bd->m; r++) {
        uint32_t l = mp[2 * r], rr = mp[2 * r + 1], res;
        cat.len = 0;
        if (buf_add(&cat, bd->tok[l], bd->tlen[l]) ||
            buf_add(&cat, bd->tok[rr], bd->tlen[rr])) {
            free(cat.p);
            goto nomem;
        }
        if (semd_tokenizer_lookup(&t, cat.p, cat.len, &res) != 0) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s: merge %u makes \"%.*s\", which is not in "
                              "the vocabulary",
                              bd->path, r + 1,
                              (int)(cat.len > 100 ? 100 : cat.len), cat.p);
            free(cat.p);
            goto fail;
        }
        uint64_t j = pair_hash(l, rr) & (mcap - 1);
        while (mtab[4 * j] != EMPTY &&
               !(mtab[4 * j] == l && mtab[4 * j + 1] == rr))
            j = (j + 1) & (mcap - 1);
        mtab[4 * j] = l;
        mtab[4 * j + 1] = rr;
        mtab[4 * j + 2] = r; /* a repeated pair keeps its later rank */
        mtab[4 * j + 3] = res;
    }
    free(cat.p);
    struct semd_tokenizer *tk = malloc(sizeof *tk);
    if (!tk)
        goto nomem;
    *tk = t;
    tk->owned = blob;
    *out = tk;
    rc = 0;
    blob = NULL;
    goto fail;
nomem:
    rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
fail:
    free(blob);
    free(soff);
    free(boff);
    free(strs.p);
    free(bytes.p);
    return rc;
}

/* Collects the vocabulary from a JSON object token -> id. */
static int
build_vocab(struct build *bd, json_t *vocab, struct semd_err *err)
{
    size_t n = json_object_size(vocab);
    if (n == 0 || n >= UINT32_MAX / 2)
        return semd_err_set(err, SEMD_EFORMAT,
                            "%s: the vocabulary has %zu tokens", bd->path, n);
    bd->n = (uint32_t)n;
    bd->tok = calloc(n, sizeof *bd->tok);
    bd->tlen = calloc(n, sizeof *bd->tlen);
    bd->tcap = 16;
    while (bd->tcap < 2 * n + 1)
        bd->tcap *= 2;
    bd->tab = malloc(bd->tcap * sizeof *bd->tab);
    if (!bd->tok || !bd->tlen || !bd->tab)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    memset(bd->tab, 0xFF, bd->tcap * sizeof *bd->tab);
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) >= n)
            return semd_err_set(err, SEMD_EFORMAT,
                                "%s: token \"%.100s\" has id %s; ids must be "
                                "0..%zu",
                                bd->path, key,
                                json_is_integer(v) ? "out of range"
                                                   : "that is not an integer",
                                n - 1);
        uint32_t id = (uint32_t)json_integer_value(v);
        if (bd->tok[id])
            return semd_err_set(err, SEMD_EFORMAT,
                                "%s: tokens \"%.100s\" and \"%.100s\" share "
                                "id %u",
                                bd->path, bd->tok[id], key, id);
        size_t len = strlen(key);
        if (len == 0)
            return semd_err_set(err, SEMD_EFORMAT,
                                "%s: empty token with id %u", bd->path, id);
        bd->tok[id] = key;
        bd->tlen[id] = len;
        uint64_t j = model_hash(key, len) & (bd->tcap - 1);
        while (bd->tab[j] != EMPTY)
            j = (j + 1) & (bd->tcap - 1);
        bd->tab[j] = id;
    }
    return 0;
}

/* merges.txt: an optional "#version" first line, then "left right" lines. */
static int
build_merges_txt(struct build *bd, const char *path, struct semd_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return semd_err_set(err, SEMD_EIO, "%s: %s", path, strerror(errno));
    const char *saved = bd->path;
    bd->path = path;
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    unsigned long lineno = 0;
    int rc = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || (lineno == 1 && line[0] == '#'))
            continue;
        char *sp = memchr(line, ' ', len);
        char where[48];
        snprintf(where, sizeof where, "line %lu", lineno);
        if (!sp || sp == line || sp == line + len - 1 ||
            memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line))) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s: line %lu: expected \"left right\", got "
                              "\"%.100s\"",
                              path, lineno, line);
            break;
        }
        if ((rc = build_merge(bd, line, (size_t)(sp - line), sp + 1,
                              len - (size_t)(sp + 1 - line), where, err)))
            break;
    }
    if (rc == 0 && ferror(f))
        rc = semd_err_set(err, SEMD_EIO, "%s: read error", path);
    free(line);
    fclose(f);
    bd->path = saved;
    return rc;
}

/* tokenizer.json's model.merges: "a b" strings or [a, b] pairs. */
static int
build_merges_json(struct build *bd, json_t *merges, struct semd_err *err)
{
    size_t i;
    json_t *e;
    json_array_foreach(merges, i, e) {
        char where[48];
        snprintf(where, sizeof where, "merge %zu", i + 1);
        const char *l, *r;
        size_t ll, rl;
        if (json_is_string(e)) {
            const char *s = json_string_value(e);
            size_t len = json_string_length(e);
            const char *sp = memchr(s, ' ', len);
            if (!sp || sp == s || sp == s + len - 1 ||
                memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s)))
                return semd_err_set(err, SEMD_EFORMAT,
                                    "%s: merge %zu: expected \"left right\", "
                                    "got \"%.100s\"",
                                    bd->path, i + 1, s);
            l = s, ll = (size_t)(sp - s);
            r = sp + 1, rl = len - ll - 1;
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            l = json_string_value(json_array_get(e, 0));
            ll = json_string_length(json_array_get(e, 0));
            r = json_string_value(json_array_get(e, 1));
            rl = json_string_length(json_array_get(e, 1));
        } else {
            return semd_err_set(err, SEMD_EFORMAT,
                                "%s: merge %zu is neither \"left right\" nor "
                                "[left, right]",
                                bd->path, i + 1);
        }
        int rc = build_merge(bd, l, ll, r, rl, where, err);
        if (rc)
            return rc;
    }
    return 0;
}

int
semd_tokenizer_load(struct semd_tokenizer **out, const char *vocab_path,
                    const char *merges_path, struct semd_err *err)
{
    if (!out || !vocab_path)
        return semd_err_set(err, SEMD_EINVAL, "no vocabulary path given");
    json_error_t je;
    json_t *doc = json_load_file(vocab_path, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        FILE *f = fopen(vocab_path, "r");
        if (!f)
            return semd_err_set(err, SEMD_EIO, "%s: %s", vocab_path,
                                strerror(errno));
        fclose(f);
        return semd_err_set(err, SEMD_EFORMAT, "%s: line %d: %s", vocab_path,
                            je.line, je.text);
    }
    struct build bd = {.path = vocab_path};
    int rc;
    json_t *vocab = doc, *merges = NULL;
    if (!merges_path) {
        json_t *model = json_object_get(doc, "model");
        json_t *type = json_object_get(model, "type");
        vocab = json_object_get(model, "vocab");
        merges = json_object_get(model, "merges");
        if (type && !(json_is_string(type) &&
                      strcmp(json_string_value(type), "BPE") == 0)) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s: model.type is \"%s\", not \"BPE\"",
                              vocab_path,
                              json_is_string(type) ? json_string_value(type)
                                                   : "?");
            goto out;
        }
        if (!json_is_object(vocab) || !json_is_array(merges)) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s: no model.vocab object and model.merges "
                              "array (a tokenizer.json; or give a merges "
                              "file)",
                              vocab_path);
            goto out;
        }
    } else if (!json_is_object(doc)) {
        rc = semd_err_set(err, SEMD_EFORMAT,
                          "%s: expected a JSON object of token: id",
                          vocab_path);
        goto out;
    }
    if ((rc = build_vocab(&bd, vocab, err)) != 0)
        goto out;
    rc = merges_path ? build_merges_txt(&bd, merges_path, err)
                     : build_merges_json(&bd, merges, err);
    if (rc == 0)
        rc = build_blob(&bd, out, err);
out:
    free(bd.tok);
    free(bd.tlen);
    free(bd.tab);
    free(bd.merges.p);
    json_decref(doc);
    return rc;
}

/* ---------------------------------------------------------- tokenizing */

/* The class of the character at s[0..n) and its length. */
static int
char_class(const unsigned char *s, size_t n, size_t *len)
{
    if (s[0] < 0x80) {
        *len = 1;
        unsigned c = s[0];
        if (c == ' ' || (c >= 9 && c <= 13))
            return UC_SPACE;
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
            return UC_LETTER;
        if (c >= '0' && c <= '9')
            return UC_NUMBER;
        return UC_OTHER;
    }
    uint32_t cp = utf8_next(s, n, len);
    return cp == 0xFFFD ? UC_OTHER : uc_class(cp);
}

/* End of the pre-tokenisation piece starting at s[i], i < n: the first of
 * the pattern's alternatives that matches, as a backtracking regex engine
 * would find it. */
static size_t
next_piece(const unsigned char *s, size_t n, size_t i)
{
    if (s[i] == '\'' && i + 1 < n) {
        unsigned c = s[i + 1];
        if (c == 's' || c == 't' || c == 'm' || c == 'd')
            return i + 2;
        if (i + 2 < n && ((c == 'r' && s[i + 2] == 'e') ||
                          (c == 'v' && s[i + 2] == 'e') ||
                          (c == 'l' && s[i + 2] == 'l')))
            return i + 3;
    }
    size_t len;
    int cls = char_class(s + i, n - i, &len);
    size_t j = i;
    if (s[i] == ' ' && i + 1 < n) {
        /* " ?X+": the space joins a following run of letters, numbers or
         * other characters */
        size_t l1;
        int c1 = char_class(s + i + 1, n - i - 1, &l1);
        if (c1 != UC_SPACE) {
            cls = c1;
            j = i + 1;
            len = l1;
        }
    }
    if (cls != UC_SPACE) {
        j += len;
        while (j < n) {
            size_t l;
            if (char_class(s + j, n - j, &l) != cls)
                break;
            j += l;
        }
        return j;
    }
    /* "\s+(?!\S)|\s+": a whitespace run, less its last character when a
     * non-space follows and the run has more than one */
    size_t last = i;
    j = i + len;
    while (j < n) {
        size_t l;
        if (char_class(s + j, n - j, &l) != UC_SPACE)
            break;
        last = j;
        j += l;
    }
    if (j < n && last > i)
        return last;
    return j;
}

/* Per-call scratch for merging one piece. */
struct sym {
    uint32_t id;
    uint32_t prev, next; /* EMPTY at the ends */
    size_t start;
    int alive;
};

struct cand {
    uint32_t rank, pos; /* pos: the left symbol */
    uint32_t left, right, result;
};

struct work {
    struct sym *sym;
    struct cand *heap, *pend;
    size_t cap, nheap, npend, hcap, pcap;
};

static int
cand_less(const struct cand *a, const struct cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void
heap_push(struct work *w, struct cand c)
{
    size_t i = w->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &w->heap[p]))
            break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
}

static struct cand
heap_pop(struct work *w)
{
    struct cand top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && cand_less(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!cand_less(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0)
        w->heap[i] = last;
    return top;
}

static int
work_reserve(struct work *w, size_t n)
{
    if (n <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 64;
    while (cap < n)
        cap *= 2;
    struct sym *s = realloc(w->sym, cap * sizeof *s);
    if (!s)
        return -1;
    w->sym = s;
    /* every merge adds at most two candidates, each position one at the
     * start: 3n bounds what the heap and the pending list hold */
    struct cand *h = realloc(w->heap, 3 * cap * sizeof *h);
    if (!h)
        return -1;
    w->heap = h;
    struct cand *p = realloc(w->pend, 3 * cap * sizeof *p);
    if (!p)
        return -1;
    w->pend = p;
    w->cap = cap;
    return 0;
}

/* Queues the pair at symbol i and its successor, if they merge. */
static void
offer(const struct semd_tokenizer *t, struct work *w, uint32_t i,
      int pending)
{
    uint32_t j = w->sym[i].next;
    if (j == EMPTY)
        return;
    struct cand c = {.pos = i, .left = w->sym[i].id, .right = w->sym[j].id};
    if (!find_merge(t, c.left, c.right, &c.rank, &c.result))
        return;
    if (pending)
        w->pend[w->npend++] = c;
    else
        heap_push(w, c);
}

/* Merges the symbols of one piece s[0..n) and appends its tokens. */
static void
merge_piece(const struct semd_tokenizer *t, struct work *w,
            const unsigned char *s, size_t n, size_t base,
            struct semd_token *out, size_t *nout)
{
    if (n == 1) {
        out[(*nout)++] = (struct semd_token){t->byte_ids[s[0]], base,
                                             base + 1};
        return;
    }
    for (size_t i = 0; i < n; i++)
        w->sym[i] = (struct sym){t->byte_ids[s[i]],
                                 i ? (uint32_t)i - 1 : EMPTY,
                                 i + 1 < n ? (uint32_t)i + 1 : EMPTY,
                                 base + i, 1};
    w->nheap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        offer(t, w, (uint32_t)i, 0);
    while (w->nheap > 0) {
        uint32_t rank = w->heap[0].rank;
        /* one round of the reference loop: every occurrence of the
         * lowest-ranked pair, left to right; pairs it makes wait */
        w->npend = 0;
        while (w->nheap > 0 && w->heap[0].rank == rank) {
            struct cand c = heap_pop(w);
            struct sym *a = &w->sym[c.pos];
            if (!a->alive || a->id != c.left || a->next == EMPTY ||
                w->sym[a->next].id != c.right)
                continue;
            struct sym *b = &w->sym[a->next];
            a->id = c.result;
            a->next = b->next;
            b->alive = 0;
            if (b->next != EMPTY)
                w->sym[b->next].prev = c.pos;
            if (a->prev != EMPTY)
                offer(t, w, a->prev, 1);
            offer(t, w, c.pos, 1);
        }
        for (size_t k = 0; k < w->npend; k++)
            heap_push(w, w->pend[k]);
    }
    for (uint32_t i = 0; i != EMPTY; i = w->sym[i].next) {
        uint32_t nx = w->sym[i].next;
        out[(*nout)++] = (struct semd_token){
            w->sym[i].id, w->sym[i].start,
            nx == EMPTY ? base + n : w->sym[nx].start};
    }
}

#define CACHE_MAX_SLOTS 65536u
#define CACHE_MAX_PIECE 64u

struct seen {
    size_t start;   /* where the piece first occurred */
    uint32_t len;   /* 0: empty slot */
    size_t first;   /* its tokens: out[first .. first + count) */
    uint32_t count;
};

int
semd_tokenize(const struct semd_tokenizer *t, const char *text, size_t len,
              struct semd_token **toks, size_t *n, struct semd_err *err)
{
    if (!t || (!text && len) || !toks || !n)
        return semd_err_set(err, SEMD_EINVAL, "no tokenizer or text given");
    if (len > UINT32_MAX / 4)
        return semd_err_set(err, SEMD_EINVAL,
                            "text of %zu bytes is too long to tokenize", len);
    if (len == 0) {
        *toks = NULL;
        *n = 0;
        return 0;
    }
    /* every token covers at least one byte */
    struct semd_token *out = malloc(len * sizeof *out);
    struct work w = {0};
    if (!out) {
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    /* Words repeat: a direct-mapped cache of short pieces points at the
     * tokens their first occurrence produced, which are copied with their
     * offsets moved. */
    size_t slots = 64;
    while (slots < len / 4 && slots < CACHE_MAX_SLOTS)
        slots *= 2;
    struct seen *cache = calloc(slots, sizeof *cache);
    const unsigned char *s = (const unsigned char *)text;
    size_t count = 0;
    for (size_t i = 0; i < len;) {
        size_t e = next_piece(s, len, i), pl = e - i;
        struct seen *c = NULL;
        if (cache && pl > 1 && pl <= CACHE_MAX_PIECE) {
            c = &cache[model_hash(text + i, pl) & (slots - 1)];
            if (c->len == pl && memcmp(s + c->start, s + i, pl) == 0) {
                for (uint32_t k = 0; k < c->count; k++) {
                    struct semd_token tk = out[c->first + k];
                    tk.start = tk.start - c->start + i;
                    tk.end = tk.end - c->start + i;
                    out[count++] = tk;
                }
                i = e;
                continue;
            }
        }
        if (work_reserve(&w, pl)) {
            free(out);
            free(cache);
            free(w.sym);
            free(w.heap);
            free(w.pend);
            return semd_err_set(err, SEMD_ENOMEM, "out of memory");
        }
        size_t first = count;
        merge_piece(t, &w, s + i, pl, i, out, &count);
        if (c)
            *c = (struct seen){i, (uint32_t)pl, first,
                               (uint32_t)(count - first)};
        i = e;
    }
    free(cache);
    free(w.sym);
    free(w.heap);
    free(w.pend);
    struct semd_token *shrunk = realloc(out, count * sizeof *out);
    *toks = shrunk ? shrunk : out;
    *n = count;
    return 0;
}

int
semd_detokenize(const struct semd_tokenizer *t, const uint32_t *ids,
                size_t n, char **out, size_t *len, struct semd_err *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        if (!semd_tokenizer_bytes(t, ids[i], &l))
            return semd_err_set(err, SEMD_EINVAL,
                                "token id %u out of range (%u tokens)",
                                ids[i], t->n);
        total += l;
    }
    char *p = malloc(total + 1);
    if (!p)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = 0;
        const char *b = semd_tokenizer_bytes(t, ids[i], &l);
        memcpy(p + at, b, l);
        at += l;
    }
    p[at] = '\0';
    *out = p;
    if (len)
        *len = at;
    return 0;
}
