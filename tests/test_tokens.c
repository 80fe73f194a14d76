/*
 * test_tokens.c - LLM token matrices end to end: a safetensors file of
 * GPT-2's real shape (50,257 x 768, f16, fixed-seed random rows with
 * planted anomalies) converted with GPT-2's own tokenizer files; the
 * tokenizer kept in the model with rows in token id order; words resolved
 * as tokens (" king" first, then "king", then a mean of tokens) with their
 * provenance; decoded tokens for display; the health report finding what
 * was planted.
 */
#include "test.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 50257
#define DIMS 768
#define VOCAB "gpt2/encoder.json"
#define MERGES "gpt2/vocab.bpe"

/* planted rows: not tokens the other tests look at */
#define ROW_SCALED 31000 /* 50 times its norm */
#define ROW_DUP_A 40000  /* ROW_DUP_B is a copy of it */
#define ROW_DUP_B 40001
#define ROW_ZERO 45000

static const char *model_path;
static struct semd_model *model;
static struct semd_index *index_;

static char *
data(const char *name)
{
    static char buf[4][512];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, 512, "%s/%s", t_datadir(), name);
    return b;
}

/* f32 to f16 by truncation, flushing what f16 cannot hold as a normal to
 * zero: enough for values of a known range. */
static uint16_t
to_f16(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    uint16_t sign = (uint16_t)((b >> 16) & 0x8000);
    int e = (int)((b >> 23) & 0xFF) - 127 + 15;
    if (e <= 0)
        return sign;
    return (uint16_t)(sign | (e << 10) | ((b >> 13) & 0x3FF));
}

static float
from_f16(uint16_t h)
{
    if ((h & 0x7FFF) == 0)
        return 0.0f;
    uint32_t b = ((uint32_t)(h & 0x8000) << 16) |
                 ((uint32_t)(((h >> 10) & 0x1F) - 15 + 127) << 23) |
                 ((uint32_t)(h & 0x3FF) << 13);
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* The row the generator makes for r, as f16. */
static void
gen_row(uint64_t r, uint16_t *out)
{
    uint64_t s = 0x5EED0000ull + (r == ROW_DUP_B ? ROW_DUP_A : r);
    float scale = r == ROW_SCALED ? 50.0f : r == ROW_ZERO ? 0.0f : 1.0f;
    for (uint32_t i = 0; i < DIMS; i++)
        out[i] = to_f16(scale * t_rand(&s));
}

static void
write_model_file(const char *path)
{
    char hdr[256];
    int n = snprintf(hdr, sizeof hdr,
                     "{\"__metadata__\":{\"format\":\"pt\"},\"wte.weight\":"
                     "{\"dtype\":\"F16\",\"shape\":[%d,%d],\"data_offsets\":"
                     "[0,%llu]}}",
                     ROWS, DIMS, (unsigned long long)ROWS * DIMS * 2);
    while (n % 8)
        hdr[n++] = ' ';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t len = (uint64_t)n;
    unsigned char lb[8];
    for (int i = 0; i < 8; i++)
        lb[i] = (unsigned char)(len >> (8 * i));
    assert_int_equal(fwrite(lb, 1, 8, f), 8);
    assert_int_equal(fwrite(hdr, 1, (size_t)n, f), (size_t)n);
    uint16_t *rows = malloc(1024 * DIMS * sizeof *rows);
    for (uint64_t r0 = 0; r0 < ROWS; r0 += 1024) {
        size_t nb = ROWS - r0 < 1024 ? ROWS - r0 : 1024;
        for (size_t i = 0; i < nb; i++)
            gen_row(r0 + i, rows + i * DIMS);
        assert_int_equal(fwrite(rows, 2 * DIMS, nb, f), nb);
    }
    free(rows);
    assert_int_equal(fclose(f), 0);
}

static int
setup(void **state)
{
    (void)state;
    const char *st = t_path("gpt2.safetensors");
    write_model_file(st);
    static char out[512];
    snprintf(out, sizeof out, "%s", t_path("gpt2.semd"));
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s convert '%s' '%s' --tensor wte.weight --vocab '%s' "
             "--merges '%s' 2>&1",
             t_semd(), st, out, data(VOCAB), data(MERGES));
    char *msg = NULL;
    int rc = t_run(cmd, &msg);
    if (rc != 0) {
        fprintf(stderr, "convert failed (%d): %s\n", rc, msg);
        free(msg);
        return -1;
    }
    free(msg);
    remove(st);
    model_path = out;
    struct semd_err err = {0};
    if (semd_model_open(&model, model_path, &err) != 0 ||
        semd_index_open(&index_, model, NULL, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    semd_index_close(index_);
    semd_model_close(model);
    return 0;
}

/* ------------------------------------------------------------ convert */

static void
test_convert_keeps_tokenizer(void **state)
{
    (void)state;
    assert_int_equal(semd_model_rows(model), ROWS);
    assert_int_equal(semd_model_dims(model), DIMS);
    const struct semd_tokenizer *t = semd_model_tokenizer(model);
    assert_non_null(t);
    assert_int_equal(semd_tokenizer_size(t), ROWS);
    assert_int_equal(semd_tokenizer_merges(t), 50000);
    /* row == id, and the row is named by its token */
    static const uint32_t ids[] = {0, 5822, 11241, 1634, 50256, ROW_SCALED};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        size_t tl;
        const char *tok = semd_tokenizer_token(t, ids[i], &tl);
        assert_non_null(tok);
        assert_string_equal(semd_model_word(model, ids[i], NULL), tok);
    }
    assert_string_equal(semd_model_word(model, 5822, NULL), "\xC4\xA0king");
    assert_string_equal(semd_model_word(model, 50256, NULL),
                        "<|endoftext|>");
    /* the rows are the tensor's rows, f16 widened exactly */
    uint16_t h[DIMS];
    static const uint64_t rows[] = {0, 5822, ROW_SCALED, ROWS - 1};
    for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
        gen_row(rows[k], h);
        const float *v = semd_model_row(model, rows[k]);
        for (uint32_t i = 0; i < DIMS; i++)
            assert_true(v[i] == from_f16(h[i]));
    }
    struct semd_model_info info;
    semd_model_get_info(model, &info);
    assert_string_equal(info.source_format, "safetensors-f16");
}

static void
test_convert_errors(void **state)
{
    (void)state;
    char cmd[2048];
    char *out;
    /* --merges without --vocab, and with --limit: usage errors */
    snprintf(cmd, sizeof cmd, "%s convert x.safetensors '%s' --merges '%s' "
             "2>&1", t_semd(), t_path("e1.semd"), data(MERGES));
    assert_int_equal(t_run(cmd, &out), 2);
    assert_non_null(strstr(out, "--merges needs --vocab"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s convert x.safetensors '%s' --vocab '%s' "
             "--merges '%s' --limit 10 2>&1", t_semd(), t_path("e2.semd"),
             data(VOCAB), data(MERGES));
    assert_int_equal(t_run(cmd, &out), 2);
    assert_non_null(strstr(out, "--limit"));
    free(out);
    /* a tensor with fewer rows than the tokenizer has tokens */
    const char *small = t_path("small.safetensors");
    const char hdr[] = "{\"wte\":{\"dtype\":\"F32\",\"shape\":[3,2],"
                       "\"data_offsets\":[0,24]}}";
    unsigned char buf[8 + sizeof hdr - 1 + 24] = {0};
    buf[0] = (unsigned char)(sizeof hdr - 1);
    memcpy(buf + 8, hdr, sizeof hdr - 1);
    t_write_file(small, buf, sizeof buf);
    const char *vj = t_path("v3.json");
    t_write_file(vj, "{\"a\":0,\"b\":1,\"c\":2}", 19);
    snprintf(cmd, sizeof cmd, "%s convert '%s' '%s' --vocab '%s' "
             "--merges '%s' 2>&1", t_semd(), small, t_path("e3.semd"), vj,
             data(MERGES));
    assert_int_equal(t_run(cmd, &out), 1);
    free(out);
    assert_null(t_read_file(t_path("e3.semd"), NULL));
    snprintf(cmd, sizeof cmd, "%s convert '%s' '%s' --vocab '%s' "
             "--merges '%s' 2>&1", t_semd(), small, t_path("e4.semd"),
             data(VOCAB), data(MERGES));
    assert_int_equal(t_run(cmd, &out), 1);
    assert_non_null(strstr(out, "outside the tensor's 3 rows"));
    free(out);
}

/* ----------------------------------------------------------- tokenize */

static void
test_tokenize_cli(void **state)
{
    (void)state;
    char cmd[1024];
    char *out;
    snprintf(cmd, sizeof cmd, "%s tokenize '%s' 'From numbers to meaning' "
             "--json", t_semd(), model_path);
    assert_int_equal(t_run(cmd, &out), 0);
    json_error_t je;
    json_t *doc = json_loads(out, 0, &je);
    assert_non_null(doc);
    json_t *toks = json_object_get(doc, "tokens");
    static const int want[] = {4863, 3146, 284, 3616};
    static const char *const text[] = {"From", " numbers", " to",
                                       " meaning"};
    assert_int_equal(json_array_size(toks), 4);
    for (size_t i = 0; i < 4; i++) {
        json_t *o = json_array_get(toks, i);
        assert_int_equal(json_integer_value(json_object_get(o, "id")),
                         want[i]);
        assert_string_equal(json_string_value(json_object_get(o, "text")),
                            text[i]);
    }
    json_decref(doc);
    free(out);
}

/* -------------------------------------------------------- words, tokens */

static void
test_resolve_as_tokens(void **state)
{
    (void)state;
    struct semd_term_info ti;
    /* " king" first */
    assert_int_equal(semd_resolve(model, "king", 4, &ti), 0);
    assert_int_equal(ti.prov, SEMD_PROV_TOKEN_SPACE);
    assert_string_equal(semd_prov_name(ti.prov), "token_space");
    assert_int_equal(ti.row, 5822);
    assert_int_equal(ti.n_tokens, 1);
    assert_int_equal(ti.token_ids[0], 5822);
    /* no " ization" token: the bare one */
    const struct semd_tokenizer *t = semd_model_tokenizer(model);
    uint32_t id;
    assert_int_equal(semd_tokenizer_find(t, " ization", 8, &id),
                     SEMD_ENOWORD);
    assert_int_equal(semd_tokenizer_find(t, "ization", 7, &id), 0);
    assert_int_equal(semd_resolve(model, "ization", 7, &ti), 0);
    assert_int_equal(ti.prov, SEMD_PROV_TOKEN_BARE);
    assert_string_equal(semd_prov_name(ti.prov), "token_bare");
    assert_int_equal(ti.row, id);
    /* the byte-level name typed as it is */
    assert_int_equal(semd_resolve(model, "\xC4\xA0king", 6, &ti), 0);
    assert_int_equal(ti.prov, SEMD_PROV_EXACT);
    assert_int_equal(ti.row, 5822);
    /* a word of two tokens is no one row... */
    assert_int_equal(semd_resolve(model, "tokenization", 12, &ti),
                     SEMD_ENOWORD);
    /* ...but a mean for queries, of the tokens of " tokenization" */
    assert_int_equal(semd_resolve_word(model, "tokenization", 12, &ti), 0);
    assert_int_equal(ti.prov, SEMD_PROV_TOKEN_MEAN);
    assert_string_equal(semd_prov_name(ti.prov), "token_mean");
    assert_true(ti.row == UINT64_MAX);
    struct semd_token *toks;
    size_t nt;
    assert_int_equal(semd_tokenize(t, " tokenization", 13, &toks, &nt, NULL),
                     0);
    assert_int_equal(nt, 2);
    assert_int_equal(ti.n_tokens, 2);
    for (size_t i = 0; i < nt; i++) {
        assert_int_equal(ti.token_ids[i], toks[i].id);
        assert_int_equal(ti.token_rows[i], toks[i].id);
    }
    free(toks);
    /* too many tokens for one word */
    char longw[200];
    for (size_t i = 0; i < sizeof longw; i++)
        longw[i] = (char)('a' + (i * 7) % 26);
    assert_int_equal(semd_resolve_word(model, longw, sizeof longw, &ti),
                     SEMD_ENOWORD);
    assert_int_equal(ti.prov, SEMD_PROV_MISSING);
}

/* The nearest rows of a vector, excluding some, as the index gives them. */
static uint32_t
search_vec(const float *v, const uint64_t *ex, size_t nex, uint32_t k,
           struct semd_hit *hits)
{
    struct semd_search s = {.k = k, .exclude = ex, .n_exclude = nex};
    uint32_t n;
    struct semd_err err = {0};
    assert_int_equal(semd_index_search(index_, v, &s, hits, &n, &err), 0);
    return n;
}

static void
test_neighbors_of_king(void **state)
{
    (void)state;
    struct semd_term term = {.word = "king", .len = 4, .weight = 1};
    struct semd_search s = {.k = 10};
    struct semd_hit hits[10], want[10];
    uint32_t n;
    struct semd_term_info info;
    struct semd_err err = {0};
    assert_int_equal(semd_neighbors(index_, &term, 1, &s, 0, hits, &n, &info,
                                    &err),
                     0);
    assert_int_equal(info.prov, SEMD_PROV_TOKEN_SPACE);
    assert_int_equal(info.row, 5822);
    /* the neighbours of row 5822 itself, which is excluded */
    uint64_t ex = 5822;
    uint32_t nw = search_vec(semd_model_row(model, 5822), &ex, 1, 10, want);
    assert_int_equal(n, nw);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(hits[i].row, want[i].row);
        assert_true(fabsf(hits[i].score - want[i].score) < 1e-5f);
        assert_true(hits[i].row != 5822);
    }

    /* the command line shows the provenance and decoded tokens with ids */
    char cmd[1024];
    char *out;
    snprintf(cmd, sizeof cmd, "%s query '%s' king -k 3 --json", t_semd(),
             model_path);
    assert_int_equal(t_run(cmd, &out), 0);
    json_error_t je;
    json_t *doc = json_loads(out, 0, &je);
    assert_non_null(doc);
    json_t *t0 = json_array_get(json_object_get(doc, "terms"), 0);
    assert_string_equal(
        json_string_value(json_object_get(t0, "provenance")), "token_space");
    assert_string_equal(json_string_value(json_object_get(t0, "resolved")),
                        "\xC4\xA0king");
    json_t *tk = json_array_get(json_object_get(t0, "tokens"), 0);
    assert_int_equal(json_integer_value(json_object_get(tk, "id")), 5822);
    assert_string_equal(json_string_value(json_object_get(tk, "text")),
                        " king");
    json_t *nb = json_object_get(doc, "neighbors");
    assert_int_equal(json_array_size(nb), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *h = json_array_get(nb, i);
        assert_int_equal(json_integer_value(json_object_get(h, "id")),
                         want[i].row);
        char shown[3 * SEMD_MAX_WORD + 1];
        assert_int_equal(semd_model_display_word(model, want[i].row, shown,
                                                 sizeof shown, NULL),
                         0);
        assert_string_equal(json_string_value(json_object_get(h, "text")),
                            shown);
    }
    json_decref(doc);
    free(out);
    snprintf(cmd, sizeof cmd, "%s query '%s' king -k 3", t_semd(),
             model_path);
    assert_int_equal(t_run(cmd, &out), 0);
    assert_non_null(strstr(out, "(as \" king\" #5822)"));
    free(out);
}

static void
test_multi_token_mean(void **state)
{
    (void)state;
    /* " tokenization" is " token" + "ization": the mean of their rows */
    const struct semd_tokenizer *t = semd_model_tokenizer(model);
    uint32_t a, b;
    assert_int_equal(semd_tokenizer_find(t, " token", 6, &a), 0);
    assert_int_equal(semd_tokenizer_find(t, "ization", 7, &b), 0);
    float mean[DIMS];
    const float *ra = semd_model_row(model, a), *rb = semd_model_row(model, b);
    for (uint32_t i = 0; i < DIMS; i++)
        mean[i] = (ra[i] + rb[i]) / 2;
    struct semd_term term = {.word = "tokenization", .len = 12, .weight = 1};
    struct semd_search s = {.k = 8};
    struct semd_hit hits[8], want[8];
    uint32_t n;
    struct semd_term_info info;
    struct semd_err err = {0};
    assert_int_equal(semd_neighbors(index_, &term, 1, &s, 0, hits, &n, &info,
                                    &err),
                     0);
    assert_int_equal(info.prov, SEMD_PROV_TOKEN_MEAN);
    assert_int_equal(info.n_tokens, 2);
    /* both tokens are inputs, so both are excluded */
    uint64_t ex[2] = {a, b};
    uint32_t nw = search_vec(mean, ex, 2, 8, want);
    assert_int_equal(n, nw);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(hits[i].row, want[i].row);
        assert_true(fabsf(hits[i].score - want[i].score) < 1e-5f);
    }
    /* the word and its mean vector are the same direction */
    struct semd_term v = {.vec = mean, .weight = 1};
    struct semd_term_info two[2];
    float sim;
    assert_int_equal(semd_similarity(model, &term, &v, &sim, two, &err), 0);
    assert_true(fabsf(sim - 1.0f) < 1e-5f);
    assert_int_equal(two[0].prov, SEMD_PROV_TOKEN_MEAN);
    assert_int_equal(two[1].prov, SEMD_PROV_VECTOR);
    /* and it takes part in analogies */
    struct semd_term an[3] = {{.word = "tokenization", .len = 12,
                               .weight = 1},
                              {.word = "token", .len = 5, .weight = -1},
                              {.word = "king", .len = 4, .weight = 1}};
    struct semd_term_info ai[3];
    assert_int_equal(semd_analogy(index_, an, 3, SEMD_3COSMUL, &s, hits, &n,
                                  NULL, ai, &err),
                     0);
    assert_int_equal(ai[0].prov, SEMD_PROV_TOKEN_MEAN);
    for (uint32_t i = 0; i < n; i++)
        assert_true(hits[i].row != a && hits[i].row != b &&
                    hits[i].row != 5822);
}

static void
test_display_word(void **state)
{
    (void)state;
    char buf[3 * SEMD_MAX_WORD + 1];
    uint32_t id;
    assert_int_equal(semd_model_display_word(model, 5822, buf, sizeof buf,
                                             &id),
                     0);
    assert_string_equal(buf, " king");
    assert_int_equal(id, 5822);
    /* a token holding a lone byte of a character reads as U+FFFD */
    const struct semd_tokenizer *t = semd_model_tokenizer(model);
    uint32_t e3;
    assert_int_equal(semd_tokenizer_find(t, "\xE3", 1, &e3), 0);
    assert_int_equal(semd_model_display_word(model, e3, buf, sizeof buf,
                                             &id),
                     0);
    assert_string_equal(buf, "\xEF\xBF\xBD");
    /* cut to fit, whole characters only */
    char small[4];
    assert_int_equal(semd_model_display_word(model, 5822, small,
                                             sizeof small, NULL),
                     0);
    assert_string_equal(small, " ki");
    assert_int_equal(semd_model_display_word(model, ROWS, buf, sizeof buf,
                                             NULL),
                     SEMD_EINVAL);
    /* a model without a tokenizer shows its words */
    struct semd_model *plain;
    struct semd_err err = {0};
    assert_int_equal(semd_model_open(&plain,
                                     t_random_model("plain.semd", 5, 4, 3),
                                     &err),
                     0);
    assert_int_equal(semd_model_display_word(plain, 2, buf, sizeof buf, &id),
                     0);
    assert_string_equal(buf, "w2");
    assert_int_equal(id, UINT32_MAX);
    struct semd_term_info ti;
    assert_int_equal(semd_resolve_word(plain, "W3", 2, &ti), 0);
    assert_int_equal(ti.prov, SEMD_PROV_CASE_FOLDED);
    assert_int_equal(ti.n_tokens, 0);
    semd_model_close(plain);
}

/* ------------------------------------------------------------- report */

static int
in_norms(const struct semd_norm_flag *f, size_t n, uint64_t row)
{
    for (size_t i = 0; i < n; i++)
        if (f[i].row == row)
            return 1;
    return 0;
}

static void
test_report_finds_planted(void **state)
{
    (void)state;
    struct semd_tokens_report r;
    struct semd_tokens_report_opts o = {.max_list = 1000};
    struct semd_err err = {0};
    assert_int_equal(semd_tokens_report(index_, &o, &r, &err), 0);
    assert_int_equal(r.rows, ROWS);
    /* the 50x row tops the high norms, far out */
    assert_true(r.n_high >= 1);
    assert_int_equal(r.high[0].row, ROW_SCALED);
    assert_true(r.high[0].z > 50);
    assert_true(fabsf(r.high[0].norm / (float)r.norm_median - 50) < 5);
    /* the zero row is listed as such, not as a low norm */
    assert_int_equal(r.n_zero, 1);
    assert_int_equal(r.zero[0].row, ROW_ZERO);
    assert_false(in_norms(r.low, r.low_listed, ROW_ZERO));
    /* random rows are not far out: only a few cross 3.5 */
    assert_true(r.n_low + r.n_high < 100);
    /* the copy is the one near-duplicate pair */
    assert_int_equal(r.dup_exact, 0);
    assert_int_equal(r.n_dups, 1);
    assert_int_equal(r.dups[0].a, ROW_DUP_A);
    assert_int_equal(r.dups[0].b, ROW_DUP_B);
    assert_true(r.dups[0].cosine > 0.9999f);

    /* unreachable: <|endoftext|> is made by no merge; every listed token
     * fails to come back from its own bytes, and a sample of the others
     * does come back */
    const struct semd_tokenizer *t = semd_model_tokenizer(model);
    assert_int_equal(r.has_tokenizer, 1);
    assert_int_equal(r.tokens, ROWS);
    assert_int_equal(r.n_no_row, 0);
    assert_true(r.n_unreachable >= 1 && r.n_unreachable <= 1000);
    assert_int_equal(r.unreachable_listed, r.n_unreachable);
    int eot = 0;
    unsigned char *listed = calloc(ROWS, 1);
    for (size_t i = 0; i < r.unreachable_listed; i++) {
        const struct semd_unreachable *u = &r.unreachable[i];
        listed[u->id] = 1;
        if (u->id == 50256) {
            eot = 1;
            assert_int_equal(u->reason, SEMD_UNREACH_NO_MERGE);
        }
        size_t bl;
        const char *bytes = semd_tokenizer_bytes(t, u->id, &bl);
        struct semd_token *toks;
        size_t nt;
        assert_int_equal(semd_tokenize(t, bytes, bl, &toks, &nt, NULL), 0);
        assert_false(nt == 1 && toks[0].id == u->id);
        assert_int_equal(u->n_ids, nt);
        assert_int_equal(u->ids[0], toks[0].id);
        free(toks);
    }
    assert_true(eot);
    for (uint32_t id = 0; id < ROWS; id += 25) {
        if (listed[id])
            continue;
        size_t bl;
        const char *bytes = semd_tokenizer_bytes(t, id, &bl);
        struct semd_token *toks;
        size_t nt;
        assert_int_equal(semd_tokenize(t, bytes, bl, &toks, &nt, NULL), 0);
        assert_int_equal(nt, 1);
        assert_int_equal(toks[0].id, id);
        free(toks);
    }
    free(listed);
    semd_tokens_report_release(&r);

    /* lists are cut, counts are not */
    o.max_list = 1;
    assert_int_equal(semd_tokens_report(index_, &o, &r, &err), 0);
    assert_int_equal(r.high_listed, 1);
    assert_true(r.unreachable_listed == 1 && r.n_unreachable >= 1);
    semd_tokens_report_release(&r);
    o.dup_cosine = 1.5;
    assert_int_equal(semd_tokens_report(index_, &o, &r, &err), SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "1.5"));
}

/* Hashing finds what exact search finds: near-duplicates planted in a
 * small model (a copy with a little noise, cosine about 0.995). */
static void
test_report_hashing_vs_exact(void **state)
{
    (void)state;
    const uint32_t d = 64;
    const uint64_t rows = 3000;
    const char *path = t_path("dups.semd");
    struct semd_writer *w;
    struct semd_err err = {0};
    struct semd_writer_opts wo = {"test", "dups", SEMD_MODEL_COUNTS_ARE_RANKS};
    assert_int_equal(semd_writer_open(&w, path, d, &wo, &err), 0);
    float v[64], keepv[64];
    uint64_t seed = 11;
    for (uint64_t r = 0; r < rows; r++) {
        for (uint32_t i = 0; i < d; i++)
            v[i] = t_rand(&seed);
        if (r % 300 == 1) /* a near copy of the row before */
            for (uint32_t i = 0; i < d; i++)
                v[i] = keepv[i] + 0.05f * t_rand(&seed);
        memcpy(keepv, v, sizeof v);
        char word[16];
        int n = snprintf(word, sizeof word, "r%llu", (unsigned long long)r);
        assert_int_equal(semd_writer_add(w, word, (size_t)n, v, 0, &err), 0);
    }
    assert_int_equal(semd_writer_finish(w, &err), 0);
    struct semd_model *m;
    struct semd_index *ix;
    assert_int_equal(semd_model_open(&m, path, &err), 0);
    assert_int_equal(semd_index_open(&ix, m, NULL, &err), 0);
    struct semd_tokens_report h, e;
    struct semd_tokens_report_opts o = {.max_list = 100};
    assert_int_equal(semd_tokens_report(ix, &o, &h, &err), 0);
    o.exact = 1;
    assert_int_equal(semd_tokens_report(ix, &o, &e, &err), 0);
    assert_int_equal(e.dup_exact, 1);
    assert_int_equal(e.n_dups, 10);
    assert_int_equal(h.n_dups, e.n_dups);
    for (size_t i = 0; i < e.dups_listed; i++) {
        assert_int_equal(h.dups[i].a, e.dups[i].a);
        assert_int_equal(h.dups[i].b, e.dups[i].b);
        assert_int_equal(h.dups[i].b, h.dups[i].a + 1);
        assert_true(h.dups[i].a % 300 == 0);
        assert_true(fabsf(h.dups[i].cosine - e.dups[i].cosine) < 1e-5f);
    }
    /* hashing scored a small share of the rows^2 / 2 pairs */
    assert_true(h.dup_scored < rows * (rows - 1) / 2 / 20);
    assert_int_equal(h.has_tokenizer, 0);
    semd_tokens_report_release(&h);
    semd_tokens_report_release(&e);
    semd_index_close(ix);
    semd_model_close(m);
}

static void
test_report_cli(void **state)
{
    (void)state;
    char cmd[1024];
    char *out;
    snprintf(cmd, sizeof cmd, "%s tokens-report '%s' --json --max 3",
             t_semd(), model_path);
    assert_int_equal(t_run(cmd, &out), 0);
    json_error_t je;
    json_t *doc = json_loads(out, 0, &je);
    assert_non_null(doc);
    json_t *norms = json_object_get(doc, "norms");
    json_t *high = json_object_get(norms, "high");
    json_t *h0 = json_array_get(json_object_get(high, "rows"), 0);
    assert_int_equal(json_integer_value(json_object_get(h0, "row")),
                     ROW_SCALED);
    assert_int_equal(json_integer_value(json_object_get(h0, "id")),
                     ROW_SCALED);
    json_t *zero = json_object_get(norms, "zero");
    assert_int_equal(json_integer_value(json_object_get(zero, "count")), 1);
    json_t *dups = json_object_get(doc, "duplicates");
    assert_int_equal(json_integer_value(json_object_get(dups, "count")), 1);
    json_t *p0 = json_array_get(json_object_get(dups, "pairs"), 0);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(p0, "a"), "row")),
                     ROW_DUP_A);
    json_t *un = json_object_get(doc, "unreachable");
    assert_true(json_integer_value(json_object_get(un, "count")) >= 1);
    assert_true(json_array_size(json_object_get(un, "list")) <= 3);
    json_decref(doc);
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokens-report '%s' --cosine 2 2>&1",
             t_semd(), model_path);
    assert_int_equal(t_run(cmd, &out), 2);
    assert_non_null(strstr(out, "--cosine"));
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convert_keeps_tokenizer),
        cmocka_unit_test(test_convert_errors),
        cmocka_unit_test(test_tokenize_cli),
        cmocka_unit_test(test_resolve_as_tokens),
        cmocka_unit_test(test_neighbors_of_king),
        cmocka_unit_test(test_multi_token_mean),
        cmocka_unit_test(test_display_word),
        cmocka_unit_test(test_report_finds_planted),
        cmocka_unit_test(test_report_hashing_vs_exact),
        cmocka_unit_test(test_report_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
