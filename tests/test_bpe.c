/*
 * test_bpe.c - the GPT-2 byte-level BPE tokenizer: equality with two
 * independent JavaScript implementations on tests/data/bpe-corpus.txt,
 * round trips and offsets, the pre-tokenisation rules, the loaders and their
 * errors, the tokenizer section of a model file, `semd tokenize`.
 */
#include "test.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB "tests/data/gpt2/encoder.json"
#define MERGES "tests/data/gpt2/vocab.bpe"

static struct semd_tokenizer *gpt2;

static int
setup(void **state)
{
    (void)state;
    struct semd_err err = {0};
    if (semd_tokenizer_load(&gpt2, VOCAB, MERGES, &err) != 0) {
        fprintf(stderr, "load: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    semd_tokenizer_free(gpt2);
    return 0;
}

/* Tokenizes and checks that the spans tile the text and that each token's
 * bytes are the bytes it covers. Returns the ids (free()) and their count. */
static uint32_t *
encode(const struct semd_tokenizer *t, const char *s, size_t len, size_t *n)
{
    struct semd_token *toks;
    struct semd_err err = {0};
    if (semd_tokenize(t, s, len, &toks, n, &err) != 0)
        fail_msg("tokenize: %s", err.msg);
    uint32_t *ids = malloc((*n + 1) * sizeof *ids);
    size_t at = 0;
    for (size_t i = 0; i < *n; i++) {
        assert_int_equal(toks[i].start, at);
        assert_true(toks[i].end > toks[i].start);
        size_t bl;
        const char *b = semd_tokenizer_bytes(t, toks[i].id, &bl);
        assert_non_null(b);
        assert_int_equal(bl, toks[i].end - toks[i].start);
        assert_memory_equal(b, s + toks[i].start, bl);
        at = toks[i].end;
        ids[i] = toks[i].id;
    }
    assert_int_equal(at, len);
    free(toks);
    char *back;
    size_t blen;
    assert_int_equal(semd_detokenize(t, ids, *n, &back, &blen, &err), 0);
    assert_int_equal(blen, len);
    assert_memory_equal(back, s, len);
    free(back);
    return ids;
}

static void
assert_ids(const char *text, const uint32_t *want, size_t nwant)
{
    size_t n;
    uint32_t *ids = encode(gpt2, text, strlen(text), &n);
    if (n != nwant || memcmp(ids, want, n * sizeof *ids) != 0) {
        fprintf(stderr, "\"%s\":", text);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %u", ids[i]);
        fprintf(stderr, "\n");
        free(ids);
        fail_msg("ids differ for \"%s\"", text);
    }
    free(ids);
}

/* The ids of a JSON array into out; the count, or SIZE_MAX if not an
 * array. */
static size_t
json_ids(json_t *arr, uint32_t *out, size_t cap)
{
    if (!json_is_array(arr))
        return SIZE_MAX;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        assert_true(i < cap);
        out[i] = (uint32_t)json_integer_value(v);
    }
    return json_array_size(arr);
}

static void
test_reference_corpus(void **state)
{
    (void)state;
    const char *corpus = "tests/data/bpe-corpus.txt";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bash tests/bpe/reference.sh %s %s", corpus,
             t_path("ref.jsonl"));
    int rc = t_run(cmd, NULL);
    if (rc == 77) {
        fprintf(stderr, "SKIPPED: node/npm are not installed, so the "
                        "reference tokenizers cannot run "
                        "(deploy/setup.sh --with-node)\n");
        skip();
    }
    assert_int_equal(rc, 0);
    size_t clen, rlen;
    char *text = t_read_file(corpus, &clen);
    char *ref = t_read_file(t_path("ref.jsonl"), &rlen);
    assert_non_null(text);
    assert_non_null(ref);
    size_t lines = 0;
    for (size_t i = 0; i < clen; i++)
        lines += text[i] == '\n';

    /* one JSON line per text: the corpus's lines, runs of lines, the
     * whole file (encode.js) */
    uint32_t *want = malloc(clen * sizeof *want);
    uint32_t *want2 = malloc(clen * sizeof *want2);
    size_t cases = 0, bad = 0, bad2 = 0, whole = 0;
    for (char *r = ref, *nl; (nl = memchr(r, '\n', (size_t)(ref + rlen - r)));
         r = nl + 1) {
        json_error_t je;
        json_t *o = json_loadb(r, (size_t)(nl - r), JSON_ALLOW_NUL, &je);
        if (!o)
            fail_msg("reference line %zu: %s", cases + 1, je.text);
        json_t *jt = json_object_get(o, "text");
        const char *s = json_string_value(jt);
        size_t len = json_string_length(jt);
        assert_non_null(s);
        size_t na = json_ids(json_object_get(o, "a"), want, clen);
        size_t nb = json_ids(json_object_get(o, "b"), want2, clen);
        assert_true(na != SIZE_MAX);
        size_t n;
        uint32_t *got = encode(gpt2, s, len, &n);
        if (n != na || memcmp(got, want, n * 4) != 0) {
            if (bad++ < 5)
                fprintf(stderr, "text %zu differs from gpt-tokenizer: "
                                "\"%.*s\"\n",
                        cases + 1, (int)(len > 200 ? 200 : len), s);
        }
        if (nb != SIZE_MAX && (n != nb || memcmp(got, want2, n * 4) != 0)) {
            if (bad2++ < 5)
                fprintf(stderr, "text %zu differs from gpt-3-encoder: "
                                "\"%.*s\"\n",
                        cases + 1, (int)(len > 200 ? 200 : len), s);
        }
        whole += len == clen && memcmp(s, text, clen) == 0;
        free(got);
        json_decref(o);
        cases++;
    }
    fprintf(stderr, "bpe: %zu texts (the %zu corpus lines, runs of lines, "
                    "the whole %zu bytes): %zu differ from gpt-tokenizer, "
                    "%zu from gpt-3-encoder\n",
            cases, lines, clen, bad, bad2);
    assert_true(lines >= 1000);
    assert_true(cases > lines);
    assert_int_equal(whole, 1);
    assert_int_equal(bad, 0);
    assert_int_equal(bad2, 0);
    free(want);
    free(want2);
    free(text);
    free(ref);
}

static void
test_known_ids(void **state)
{
    (void)state;
    /* ids from the reference implementations */
    assert_ids("From numbers to meaning",
               (uint32_t[]){4863, 3146, 284, 3616}, 4);
    assert_ids("hello world", (uint32_t[]){31373, 995}, 2);
    assert_ids("\",\"", (uint32_t[]){2430}, 1);
    uint32_t id;
    assert_int_equal(semd_tokenizer_lookup(gpt2, "\xc4\xa0king", 6, &id), 0);
    assert_int_equal(id, 5822);
    size_t len;
    const char *b = semd_tokenizer_bytes(gpt2, id, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(b, " king", 5);
    assert_string_equal(semd_tokenizer_token(gpt2, 50256, NULL),
                        "<|endoftext|>");
    assert_null(semd_tokenizer_token(gpt2, 50257, NULL));
    assert_null(semd_tokenizer_bytes(gpt2, 50257, NULL));
    assert_int_equal(semd_tokenizer_size(gpt2), 50257);
    assert_int_equal(semd_tokenizer_merges(gpt2), 50000);
    assert_int_equal(semd_tokenizer_lookup(gpt2, "nope nope", 9, &id),
                     SEMD_ENOWORD);
}

/* The ids of a text equal the concatenated ids of the pieces the pattern
 * should cut it into. */
static void
assert_pieces(const char *text, const char *const *pieces, size_t np)
{
    size_t n;
    uint32_t *ids = encode(gpt2, text, strlen(text), &n);
    size_t at = 0;
    for (size_t i = 0; i < np; i++) {
        size_t k;
        uint32_t *p = encode(gpt2, pieces[i], strlen(pieces[i]), &k);
        if (at + k > n || memcmp(ids + at, p, k * 4) != 0)
            fail_msg("\"%s\": piece %zu \"%s\" does not match", text, i,
                     pieces[i]);
        at += k;
        free(p);
    }
    assert_int_equal(at, n);
    free(ids);
}

static void
test_pretokenize(void **state)
{
    (void)state;
    /* contractions are lower-case only and split off even inside words */
    assert_pieces("I'm", (const char *[]){"I", "'m"}, 2);
    assert_pieces("DON'T", (const char *[]){"DON", "'", "T"}, 3);
    assert_pieces("''s", (const char *[]){"''", "s"}, 2);
    /* a space joins the run after it; a whitespace run leaves its last
     * character to the next piece */
    assert_pieces("a   b", (const char *[]){"a", "  ", " b"}, 3);
    assert_pieces("x \t\ny", (const char *[]){"x", " \t", "\n", "y"}, 4);
    assert_pieces("end   ", (const char *[]){"end", "   "}, 2);
    assert_pieces("\tfoo", (const char *[]){"\t", "foo"}, 2);
    assert_pieces("abc123 456!?", (const char *[]){"abc", "123", " 456",
                                                   "!?"},
                  4);
    /* U+0085 and U+3000 are White_Space, U+200B (Cf) is not */
    assert_pieces(" \xc2\x85x", (const char *[]){" ", "\xc2\x85", "x"}, 3);
    assert_pieces("a\xe3\x80\x80\xe3\x80\x80" "b",
                  (const char *[]){"a", "\xe3\x80\x80", "\xe3\x80\x80", "b"},
                  4);
    assert_pieces("a\xe2\x80\x8b" "b",
                  (const char *[]){"a", "\xe2\x80\x8b", "b"}, 3);
    /* letters and numbers from the table: Greek, CJK, Arabic-Indic
     * digits, superscripts and Roman numerals are numbers */
    assert_pieces("\xce\xb1\xce\xb2\xd9\xa1\xd9\xa2 \xc2\xb2\xe2\x85\xab",
                  (const char *[]){"\xce\xb1\xce\xb2", "\xd9\xa1\xd9\xa2",
                                   " \xc2\xb2\xe2\x85\xab"},
                  3);
    /* invalid UTF-8 bytes are "other" characters, one byte each */
    assert_pieces("ab\xff\xfe" "cd \xc0\x80",
                  (const char *[]){"ab", "\xff\xfe", "cd", " \xc0\x80"}, 4);
    assert_pieces("\xed\xa0\x80z", (const char *[]){"\xed\xa0\x80", "z"}, 2);
}

static void
test_roundtrip_random(void **state)
{
    (void)state;
    uint64_t seed = 7;
    char buf[2048];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = 0;
        int mode = iter % 3;
        size_t want = (size_t)((t_rand(&seed) + 1) * 300);
        while (len + 4 < want) {
            uint32_t r = (uint32_t)((t_rand(&seed) + 1) * 2147483648.0f);
            if (mode == 0) {
                /* any bytes at all */
                buf[len++] = (char)(r & 0xFF);
                continue;
            }
            uint32_t cp;
            if (mode == 1 || (r & 3) == 0)
                cp = r % 0x110000;
            else
                cp = " \t\na1'Z.\xc3"[r % 10] & 0x7F;
            if (cp >= 0xD800 && cp <= 0xDFFF)
                continue;
            if (cp < 0x80) {
                buf[len++] = (char)cp;
            } else if (cp < 0x800) {
                buf[len++] = (char)(0xC0 | cp >> 6);
                buf[len++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                buf[len++] = (char)(0xE0 | cp >> 12);
                buf[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[len++] = (char)(0x80 | (cp & 0x3F));
            } else {
                buf[len++] = (char)(0xF0 | cp >> 18);
                buf[len++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                buf[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[len++] = (char)(0x80 | (cp & 0x3F));
            }
        }
        size_t n;
        free(encode(gpt2, buf, len, &n)); /* checks spans and round trip */
    }
    /* a long run merges in one piece without quadratic cost */
    static char big[200000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = "ab"[i % 3 == 0];
    size_t n;
    free(encode(gpt2, big, sizeof big, &n));
    assert_true(n > 0 && n < sizeof big / 2);
    /* empty text */
    struct semd_token *toks = (void *)1;
    assert_int_equal(semd_tokenize(gpt2, "", 0, &toks, &n, NULL), 0);
    assert_int_equal(n, 0);
    assert_null(toks);
    uint32_t bad = 50257;
    char *out;
    struct semd_err err = {0};
    assert_int_equal(semd_detokenize(gpt2, &bad, 1, &out, NULL, &err),
                     SEMD_EINVAL);
    assert_non_null(strstr(err.msg, "50257"));
}

/* Writes a tokenizer.json holding the GPT-2 files, merges as strings or as
 * pairs. */
static const char *
write_tokenizer_json(const char *name, int pairs)
{
    json_t *vocab = json_load_file(VOCAB, 0, NULL);
    assert_non_null(vocab);
    size_t len;
    char *m = t_read_file(MERGES, &len);
    assert_non_null(m);
    json_t *merges = json_array();
    char *save, *line = strtok_r(m, "\n", &save);
    for (line = strtok_r(NULL, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        if (pairs) {
            *sp = '\0';
            json_array_append_new(merges,
                                  json_pack("[ss]", line, sp + 1));
        } else {
            json_array_append_new(merges, json_string(line));
        }
    }
    free(m);
    json_t *doc = json_pack("{s:{s:s, s:o, s:o}}", "model", "type", "BPE",
                            "vocab", vocab, "merges", merges);
    const char *path = t_path(name);
    assert_int_equal(json_dump_file(doc, path, JSON_COMPACT), 0);
    json_decref(doc);
    return path;
}

static void
test_loaders(void **state)
{
    (void)state;
    const char *text = "Loading tokenizer.json: \"merges\" as [a, b] pairs "
                       "or \"a b\" strings, 2024 \xe2\x80\x94 \xf0\x9f\x98\x80";
    size_t n0;
    uint32_t *want = encode(gpt2, text, strlen(text), &n0);
    for (int pairs = 0; pairs < 2; pairs++) {
        const char *p = write_tokenizer_json(pairs ? "tp.json" : "ts.json",
                                             pairs);
        struct semd_tokenizer *t;
        struct semd_err err = {0};
        if (semd_tokenizer_load(&t, p, NULL, &err) != 0)
            fail_msg("load %s: %s", p, err.msg);
        size_t n;
        uint32_t *got = encode(t, text, strlen(text), &n);
        assert_int_equal(n, n0);
        assert_memory_equal(got, want, n * 4);
        free(got);
        semd_tokenizer_free(t);
    }
    free(want);
}

static void
expect_error(const char *vocab, const char *merges, int code,
             const char *needle)
{
    struct semd_tokenizer *t = NULL;
    struct semd_err err = {0};
    int rc = semd_tokenizer_load(&t, vocab, merges, &err);
    if (rc != code || !strstr(err.msg, needle))
        fail_msg("expected %d with \"%s\", got %d: %s", code, needle, rc,
                 err.msg);
    assert_null(t);
}

static void
test_load_errors(void **state)
{
    (void)state;
    /* a tiny byte-level vocabulary: the 256 byte tokens and a few more */
    json_t *v = json_object();
    int id = 0;
    for (unsigned b = 0; b < 256; b++) {
        /* GPT-2's byte alphabet */
        unsigned cp = b;
        if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
              b >= 0xAE)) {
            unsigned k = 0;
            for (unsigned x = 0; x < b; x++)
                k += !((x >= 0x21 && x <= 0x7E) ||
                       (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
            cp = 256 + k;
        }
        char s[4];
        if (cp < 0x80) {
            s[0] = (char)cp, s[1] = 0;
        } else {
            s[0] = (char)(0xC0 | cp >> 6), s[1] = (char)(0x80 | (cp & 0x3F));
            s[2] = 0;
        }
        json_object_set_new(v, s, json_integer(id++));
    }
    json_object_set_new(v, "ab", json_integer(id++));
    json_object_set_new(v, "abc", json_integer(id++));
    const char *vocab = t_path("small.json");
    assert_int_equal(json_dump_file(v, vocab, 0), 0);

    const char *merges = t_path("small.txt");
    t_write_file(merges, "#version: 0.2\na b\nab c\n", 22);
    struct semd_tokenizer *t;
    struct semd_err err = {0};
    if (semd_tokenizer_load(&t, vocab, merges, &err) != 0)
        fail_msg("small: %s", err.msg);
    size_t n;
    uint32_t *ids = encode(t, "abcab", 5, &n);
    /* one piece: a b c a b -> ab c ab -> abc ab */
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 257);
    assert_int_equal(ids[1], 256);
    free(ids);
    semd_tokenizer_free(t);

    t_write_file(merges, "a b\nabc\n", 8);
    expect_error(vocab, merges, SEMD_EFORMAT, "line 2: expected \"left right\"");
    t_write_file(merges, "a b\nb c\n", 8);
    expect_error(vocab, merges, SEMD_EFORMAT, "merge 2 makes \"bc\"");
    t_write_file(merges, "a zz\n", 5);
    expect_error(vocab, merges, SEMD_EFORMAT, "\"zz\" is not in the vocab");
    expect_error(vocab, t_path("missing.txt"), SEMD_EIO, "missing.txt");
    expect_error(t_path("missing.json"), merges, SEMD_EIO, "missing.json");
    expect_error(merges, merges, SEMD_EFORMAT, "line 1");
    expect_error(vocab, NULL, SEMD_EFORMAT, "no model.vocab");

    json_object_set_new(v, "x y", json_integer(id + 5));
    assert_int_equal(json_dump_file(v, vocab, 0), 0);
    expect_error(vocab, merges, SEMD_EFORMAT, "ids must be");
    json_object_del(v, "x y");
    json_object_del(v, "!");
    json_object_set_new(v, "zz", json_integer('!'));
    assert_int_equal(json_dump_file(v, vocab, 0), 0);
    t_write_file(merges, "a b\n", 4);
    expect_error(vocab, merges, SEMD_EFORMAT, "lacks the token \"!\"");
    json_decref(v);
}

static void
test_model_section(void **state)
{
    (void)state;
    /* a plain model has no tokenizer */
    struct semd_model *m;
    struct semd_err err = {0};
    const char *plain = t_random_model("plain.semd", 300, 8, 1);
    assert_int_equal(semd_model_open(&m, plain, &err), 0);
    assert_null(semd_model_tokenizer(m));
    semd_model_close(m);

    /* one row per token, the tokenizer inside */
    const char *path = t_path("tok.semd");
    struct semd_writer *w;
    struct semd_writer_opts o = {"test", "gpt2", SEMD_MODEL_COUNTS_ARE_RANKS};
    assert_int_equal(semd_writer_open(&w, path, 4, &o, &err), 0);
    uint64_t seed = 3;
    for (uint32_t i = 0; i < semd_tokenizer_size(gpt2); i++) {
        size_t len;
        const char *tok = semd_tokenizer_token(gpt2, i, &len);
        float v[4] = {t_rand(&seed), t_rand(&seed), t_rand(&seed), 1};
        if (semd_writer_add(w, tok, len, v, 0, &err) != 0)
            fail_msg("add: %s", err.msg);
    }
    assert_int_equal(semd_writer_set_tokenizer(w, gpt2, &err), 0);
    assert_int_equal(semd_writer_finish(w, &err), 0);
    if (semd_model_open(&m, path, &err) != 0)
        fail_msg("open: %s", err.msg);
    assert_int_equal(semd_model_verify(m, &err), 0);
    const struct semd_tokenizer *t = semd_model_tokenizer(m);
    assert_non_null(t);
    const char *text = "From numbers to meaning: king \xe2\x88\x92 man";
    size_t n0, n1;
    uint32_t *a = encode(gpt2, text, strlen(text), &n0);
    uint32_t *b = encode(t, text, strlen(text), &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(a, b, n0 * 4);
    uint64_t row;
    assert_int_equal(semd_model_lookup(m, "\xc4\xa0king", 6, &row), 0);
    uint32_t id;
    assert_int_equal(semd_tokenizer_lookup(t, "\xc4\xa0king", 6, &id), 0);
    assert_int_equal(row, id);
    free(a);
    free(b);
    semd_model_close(m);

    /* a flipped byte inside the tokenizer section: verify names it */
    size_t size;
    char *data = t_read_file(path, &size);
    assert_non_null(data);
    data[size - 100] ^= 0x55; /* the section is the file's last */
    const char *bad = t_path("bad.semd");
    t_write_file(bad, data, size);
    free(data);
    assert_int_equal(semd_model_open(&m, bad, &err), 0);
    assert_int_equal(semd_model_verify(m, &err), SEMD_ECORRUPT);
    assert_non_null(strstr(err.msg, "tokenizer"));
    semd_model_close(m);
}

static void
test_cli(void **state)
{
    (void)state;
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd,
             "%s tokenize --vocab %s --merges %s --json "
             "'From numbers to meaning'",
             t_semd(), VOCAB, MERGES);
    assert_int_equal(t_run(cmd, &out), 0);
    json_error_t je;
    json_t *doc = json_loads(out, 0, &je);
    if (!doc)
        fail_msg("not JSON (%s): %s", je.text, out);
    json_t *toks = json_object_get(doc, "tokens");
    assert_int_equal(json_array_size(toks), 4);
    const uint32_t want[] = {4863, 3146, 284, 3616};
    const char *texts[] = {"From", " numbers", " to", " meaning"};
    for (size_t i = 0; i < 4; i++) {
        json_t *k = json_array_get(toks, i);
        assert_int_equal(json_integer_value(json_object_get(k, "id")),
                         want[i]);
        assert_string_equal(json_string_value(json_object_get(k, "text")),
                            texts[i]);
    }
    json_t *last = json_array_get(toks, 3);
    assert_int_equal(json_integer_value(json_object_get(last, "start")), 15);
    assert_int_equal(json_integer_value(json_object_get(last, "end")), 23);
    json_decref(doc);
    free(out);

    snprintf(cmd, sizeof cmd,
             "%s tokenize --vocab %s --merges %s 'hello world'", t_semd(),
             VOCAB, MERGES);
    assert_int_equal(t_run(cmd, &out), 0);
    assert_non_null(strstr(out, "31373"));
    assert_non_null(strstr(out, "995"));
    free(out);

    /* a model without a tokenizer, a missing file: clear errors */
    snprintf(cmd, sizeof cmd, "%s tokenize %s 'x' 2>&1", t_semd(),
             t_random_model("notok.semd", 10, 4, 2));
    assert_int_equal(t_run(cmd, &out), 1);
    assert_non_null(strstr(out, "no tokenizer"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize --vocab %s 'x' 2>&1", t_semd(),
             t_path("absent.json"));
    assert_int_equal(t_run(cmd, &out), 1);
    assert_non_null(strstr(out, "absent.json"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize 2>&1", t_semd());
    assert_int_equal(t_run(cmd, &out), 2);
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_ids),
        cmocka_unit_test(test_pretokenize),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_reference_corpus),
        cmocka_unit_test(test_loaders),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_model_section),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
