/*
 * fuzz_expr.c - the expression parser (semd_expr_parse) on any bytes, and
 * resolution of the words it yields (exact, else lower-cased) against a
 * small model written at start-up with ASCII, accented and multi-byte
 * words.
 *
 * Properties checked: a parse either fails with SEMD_EINVAL and a message,
 * or gives 1..SEMD_MAX_TERMS terms, each a non-empty word inside the
 * expression's own copy with a finite weight; resolving a word either
 * finds a row below the model's row count or says SEMD_ENOWORD.
 */
#include "fuzz.h"

#include "semd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct semd_model *model;

static void
make_model(void)
{
    static const char *const words[] = {
        "king", "Man", "woman", "paris", "Berlin", "e-mail", "caf\xc3\xa9",
        ("stra\xc3\x9f" "e"), "\xce\xb1\xce\xb2\xce\xb3",
        "\xd0\x9c\xd0\xb8\xd1\x80", "x*y", "\"q\"", "a b", "0.5"};
    const char *path = fuzz_path("expr.semd");
    struct semd_writer_opts o = {"fuzz", "expr", SEMD_MODEL_COUNTS_ARE_RANKS};
    struct semd_writer *w;
    struct semd_err err = {0};
    float v[4];
    if (semd_writer_open(&w, path, 4, &o, &err) != 0)
        fuzz_fail("writer: %s", err.msg);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        for (int d = 0; d < 4; d++)
            v[d] = (float)((i * 7 + (size_t)d * 3) % 11) - 5.0f;
        if (semd_writer_add(w, words[i], strlen(words[i]), v, 0, &err) != 0)
            fuzz_fail("writer: %s", err.msg);
    }
    if (semd_writer_finish(w, &err) != 0 ||
        semd_model_open(&model, path, &err) != 0)
        fuzz_fail("model: %s", err.msg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!model)
        make_model();
    struct semd_expr e;
    struct semd_err err = {0};
    int rc = semd_expr_parse(&e, (const char *)data, size, &err);
    if (rc != 0) {
        if (rc != SEMD_EINVAL || !err.msg[0])
            fuzz_fail("parse failed with %d and message '%s'", rc, err.msg);
        return 0;
    }
    if (e.n_terms < 1 || e.n_terms > SEMD_MAX_TERMS)
        fuzz_fail("%zu terms", e.n_terms);
    uint64_t rows = semd_model_rows(model);
    for (size_t i = 0; i < e.n_terms; i++) {
        const struct semd_term *t = &e.terms[i];
        if (!t->word || t->vec || t->len == 0 || t->word < e.text ||
            t->word + t->len > e.text + size)
            fuzz_fail("term %zu lies outside the expression", i);
        if (memchr(t->word, '\0', t->len))
            fuzz_fail("term %zu holds a NUL", i);
        if (!isfinite(t->weight))
            fuzz_fail("term %zu has weight %g", i, (double)t->weight);
        struct semd_term_info info;
        int r = semd_resolve(model, t->word, t->len, &info);
        if (r == 0 && (info.row >= rows || (info.prov != SEMD_PROV_EXACT &&
                                           info.prov != SEMD_PROV_CASE_FOLDED)))
            fuzz_fail("term %zu resolved to row %llu (%s)", i,
                      (unsigned long long)info.row,
                      semd_prov_name(info.prov));
        if (r != 0 && r != SEMD_ENOWORD)
            fuzz_fail("resolve returned %d", r);
    }
    semd_expr_release(&e);
    return 0;
}
