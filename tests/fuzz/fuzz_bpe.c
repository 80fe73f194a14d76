/*
 * fuzz_bpe.c - the byte-level BPE tokenizer (semd_tokenize) with GPT-2's
 * vocabulary and merges (tests/data/gpt2, or $SEMD_TEST_DATA/gpt2) on any
 * bytes.
 *
 * Properties (what semd.h promises): the tokens' spans cover the text in
 * order without gaps; each token's bytes are the bytes of its span; the
 * ids decode back to the input exactly.
 */
#include "fuzz.h"

#include "semd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct semd_tokenizer *tok;

static void
load(void)
{
    const char *d = getenv("SEMD_TEST_DATA");
    char vocab[1024], merges[1024];
    snprintf(vocab, sizeof vocab, "%s/gpt2/encoder.json",
             d && *d ? d : "tests/data");
    snprintf(merges, sizeof merges, "%s/gpt2/vocab.bpe",
             d && *d ? d : "tests/data");
    struct semd_err err = {0};
    if (semd_tokenizer_load(&tok, vocab, merges, &err) != 0)
        fuzz_fail("cannot load the GPT-2 tokenizer (run from the source "
                  "tree or set SEMD_TEST_DATA): %s", err.msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok)
        load();
    const char *text = (const char *)data;
    struct semd_token *toks = NULL;
    size_t n = 0;
    struct semd_err err = {0};
    if (semd_tokenize(tok, text, size, &toks, &n, &err) != 0)
        fuzz_fail("tokenize failed: %s", err.msg);
    if ((n == 0) != (size == 0))
        fuzz_fail("%zu tokens for %zu bytes", n, size);
    uint32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (toks[i].start != at || toks[i].end <= at || toks[i].end > size)
            fuzz_fail("token %zu spans [%zu, %zu) after byte %zu", i,
                      toks[i].start, toks[i].end, at);
        size_t bl;
        const char *b = semd_tokenizer_bytes(tok, toks[i].id, &bl);
        if (!b || bl != toks[i].end - toks[i].start ||
            memcmp(b, text + at, bl) != 0)
            fuzz_fail("token %zu (id %u) is not the bytes of its span", i,
                      toks[i].id);
        ids[i] = toks[i].id;
        at = toks[i].end;
    }
    if (at != size)
        fuzz_fail("tokens cover %zu of %zu bytes", at, size);
    char *out = NULL;
    size_t ol = 0;
    if (semd_detokenize(tok, ids, n, &out, &ol, &err) != 0)
        fuzz_fail("detokenize failed: %s", err.msg);
    if (ol != size || memcmp(out, text, size) != 0 || out[ol] != '\0')
        fuzz_fail("decoding gives %zu bytes, not the %zu of the input", ol,
                  size);
    free(out);
    free(ids);
    free(toks);
    return 0;
}
