/*
 * fuzz_model.c - opening a model file: the input is written to a file,
 * opened, every accessor is touched for the first and last rows, words
 * are looked up and completed by prefix, the tokenizer (if any) is used,
 * and the file is verified.
 *
 * A model file's header and sections carry CRC-32C checksums, which random
 * bytes never match; so that the fuzzer reaches the checks behind them the
 * target writes correct checksums (and the true file size) into its copy
 * of the input, unless the first byte of the stored header checksum says
 * otherwise: bit 0 keeps every field as given, bit 1 keeps the file size,
 * bit 2 keeps the section checksums.
 *
 * Properties: open either fails with a message or gives a model whose
 * words are found again by look-up (at the row of that word or of an
 * identical one); a model that verifies has well-formed word offsets.
 */
#include "fuzz.h"

#include "crc32c.h"
#include "model.h"
#include "semd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EDGE_ROWS 48 /* rows touched at each end */

static void
fix_checksums(unsigned char *b, size_t n)
{
    if (n < MODEL_HEADER_SIZE || memcmp(b, MODEL_MAGIC, 8) != 0)
        return;
    unsigned sel = b[HDR_CRC];
    if (sel & 1)
        return;
    if (!(sel & 2))
        wr64(b + HDR_FILE_SIZE, n);
    if (!(sel & 4)) {
        uint32_t ns = rd32(b + HDR_NSECTIONS), all = 0;
        for (uint32_t i = 0; i < ns && i < MODEL_MAX_SECTIONS; i++) {
            unsigned char *e = b + HDR_SECTIONS + i * SEC_ENTRY_SIZE;
            uint64_t off = rd64(e + 8), size = rd64(e + 16);
            if (off > n || size > n - off)
                break;
            uint32_t c = crc32c(0, b + off, size);
            wr32(e + 4, c);
            all = crc32c(all, &c, 4);
        }
        wr32(b + HDR_CHECKSUM, all);
    }
    wr32(b + HDR_CRC, crc32c(0, b, HDR_CRC));
}

static volatile float sink;

static void
touch_row(const struct semd_model *m, uint64_t r)
{
    uint64_t rows = semd_model_rows(m);
    uint32_t dims = semd_model_dims(m);
    size_t len;
    const char *w = semd_model_word(m, r, &len);
    if (!w)
        fuzz_fail("row %llu has no word", (unsigned long long)r);
    /* the word is NUL-terminated somewhere: strlen must stay in bounds */
    volatile size_t sl = strlen(w);
    (void)sl;
    const float *v = semd_model_row(m, r);
    float s = semd_model_norms(m)[r] + (float)semd_model_count(m, r);
    for (uint32_t d = 0; d < dims; d++)
        s += v[d];
    const int8_t *codes;
    const float *aux;
    semd_model_q8(m, &codes, &aux);
    for (uint32_t d = 0; d < dims; d++)
        s += codes[r * dims + d];
    s += aux[2 * r] + aux[2 * r + 1];
    sink = s;

    uint64_t found;
    if (len > 0 && semd_model_lookup(m, w, len, &found) == 0) {
        size_t fl;
        const char *fw = found < rows ? semd_model_word(m, found, &fl) : NULL;
        if (!fw || fl != len || memcmp(fw, w, len) != 0)
            fuzz_fail("look-up of row %llu's word gave row %llu",
                      (unsigned long long)r, (unsigned long long)found);
    }
    uint64_t pre[8];
    size_t np = 0;
    size_t pl = len < 3 ? len : 3;
    if (semd_model_prefix(m, w, pl, pre, 8, &np) != 0 || np > 8)
        fuzz_fail("prefix look-up gave %zu rows", np);
    for (size_t i = 0; i < np; i++)
        if (pre[i] >= rows)
            fuzz_fail("prefix look-up gave row %llu of %llu",
                      (unsigned long long)pre[i], (unsigned long long)rows);
}

static void
touch_tokenizer(const struct semd_tokenizer *t)
{
    static const char text[] =
        "The quick brown fox, caf\xc3\xa9 \xe2\x82\xac 42!";
    uint32_t n = semd_tokenizer_size(t);
    (void)semd_tokenizer_merges(t);
    for (uint32_t id = 0; id < n && id < 300; id++) {
        size_t len;
        const char *tok = semd_tokenizer_token(t, id, &len);
        if (tok) {
            uint32_t back;
            (void)semd_tokenizer_lookup(t, tok, len, &back);
        }
        (void)semd_tokenizer_bytes(t, id, &len);
    }
    struct semd_token *toks = NULL;
    size_t nt = 0;
    struct semd_err err = {0};
    if (semd_tokenize(t, text, sizeof text - 1, &toks, &nt, &err) == 0) {
        uint32_t *ids = malloc((nt + 1) * sizeof *ids);
        for (size_t i = 0; i < nt; i++)
            ids[i] = toks[i].id;
        char *out = NULL;
        size_t ol;
        if (semd_detokenize(t, ids, nt, &out, &ol, &err) == 0)
            free(out);
        free(ids);
    }
    free(toks);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *b = malloc(size ? size : 1);
    if (!b)
        return 0;
    memcpy(b, data, size);
    fix_checksums(b, size);
    const char *path = fuzz_path("model.semd");
    fuzz_write(path, b, size);
    free(b);

    struct semd_model *m;
    struct semd_err err = {0};
    int rc = semd_model_open(&m, path, &err);
    if (rc != 0) {
        if (rc >= 0 || !err.msg[0])
            fuzz_fail("open failed with %d and message '%s'", rc, err.msg);
        return 0;
    }
    struct semd_model_info info;
    semd_model_get_info(m, &info);
    if (info.rows != semd_model_rows(m) || info.dims != semd_model_dims(m) ||
        strcmp(semd_model_path(m), path) != 0)
        fuzz_fail("info disagrees with the accessors");
    sink = semd_model_matrix(m)[0];
    uint64_t rows = info.rows;
    for (uint64_t r = 0; r < rows && r < EDGE_ROWS; r++)
        touch_row(m, r);
    for (uint64_t r = rows > EDGE_ROWS ? rows - EDGE_ROWS : rows; r < rows;
         r++)
        touch_row(m, r);
    uint64_t row;
    (void)semd_model_lookup(m, "the", 3, &row);
    (void)semd_model_lookup(m, "", 0, &row);
    uint64_t pre[4];
    size_t np;
    (void)semd_model_prefix(m, "", 0, pre, 4, &np);
    (void)semd_model_prefix(m, "\xff\xff", 2, pre, 4, &np);
    if (semd_model_tokenizer(m))
        touch_tokenizer(semd_model_tokenizer(m));

    rc = semd_model_verify(m, &err);
    if (rc == 0) {
        /* verify promises well-formed words in every row */
        for (uint64_t r = 0; r < rows; r++) {
            size_t len;
            const char *w = semd_model_word(m, r, &len);
            if (len == 0 || strlen(w) != len)
                fuzz_fail("verified model has a bad word at row %llu",
                          (unsigned long long)r);
        }
    } else if (!err.msg[0]) {
        fuzz_fail("verify failed with %d and no message", rc);
    }
    semd_model_close(m);
    return 0;
}
