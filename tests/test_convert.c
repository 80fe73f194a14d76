/*
 * test_convert.c - `semd convert` and `semd export`: every input format
 * from tiny generated files, format detection, every kind of bad input
 * (message checked, nothing left behind), round trips bit for bit, the
 * 20k-word GloVe fixture, and gensim reading our export when it is there.
 *
 * The tests run the built binary (t_semd()) on files in a temporary
 * directory and open the results with libsemd.
 */
#include "test.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers */

/* Runs `semd ARGS` with stderr joined to stdout; *out (may be NULL) gets
 * the output. */
static int
semd(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
semd(char **out, const char *fmt, ...)
{
    char args[2048], cmd[2600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", t_semd(), args);
    return t_run(cmd, out);
}

static struct semd_model *
open_ok(const char *path)
{
    struct semd_model *m = NULL;
    struct semd_err err = {0};
    if (semd_model_open(&m, path, &err) != 0)
        fail_msg("open %s: %s", path, err.msg);
    return m;
}

/* Converts in (written from text) to out; fails the test on error. */
static struct semd_model *
convert_ok(const char *in, const char *out, const char *extra)
{
    char *msg;
    int st = semd(&msg, "convert '%s' '%s' %s", in, out, extra ? extra : "");
    if (st != 0)
        fail_msg("convert %s failed (%d): %s", in, st, msg);
    free(msg);
    return open_ok(out);
}

/* Nothing named prefix* in the temporary directory. */
static void
assert_nothing_named(const char *prefix)
{
    DIR *d = opendir(t_tmpdir());
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (!strncmp(e->d_name, prefix, strlen(prefix)))
            fail_msg("left behind: %s", e->d_name);
    closedir(d);
}

/* Converting name (holding n bytes of data) fails with a message
 * containing want, and leaves no output or temporary file. */
static void
convert_fails(const char *name, const void *data, size_t n,
              const char *extra, const char *want)
{
    const char *in = t_path(name);
    t_write_file(in, data, n);
    char *msg;
    int st = semd(&msg, "convert '%s' '%s' %s", in, t_path("bad.semd"),
                  extra ? extra : "");
    if (st != 1 || !strstr(msg, want))
        fail_msg("convert %s: status %d, message \"%s\"; wanted status 1 "
                 "and \"%s\"", name, st, msg, want);
    free(msg);
    assert_nothing_named("bad.semd");
}

static void
assert_row(const struct semd_model *m, const char *word, const float *want,
           uint32_t dims)
{
    uint64_t row;
    if (semd_model_lookup(m, word, strlen(word), &row) != 0)
        fail_msg("\"%s\" not found", word);
    assert_memory_equal(semd_model_row(m, row), want, dims * 4);
}

static const char *
source_format(const struct semd_model *m)
{
    static struct semd_model_info in;
    semd_model_get_info(m, &in);
    return in.source_format;
}

/* ------------------------------------------------------------ formats */

static void
test_glove_text(void **state)
{
    (void)state;
    const char *in = t_path("g.txt");
    const char *text = "the 0.1 -0.2 3e-2\n"
                       "cat\t1.5 2 -0.000001\n"
                       "\n"
                       "caf\xC3\xA9 7 8 9\n";
    t_write_file(in, text, strlen(text));
    struct semd_model *m = convert_ok(in, t_path("g.semd"), NULL);
    assert_int_equal(semd_model_rows(m), 3);
    assert_int_equal(semd_model_dims(m), 3);
    assert_string_equal(source_format(m), "glove-text");
    float the[3] = {strtof("0.1", NULL), strtof("-0.2", NULL),
                    strtof("3e-2", NULL)};
    float cat[3] = {1.5f, 2.0f, strtof("-0.000001", NULL)};
    float cafe[3] = {7, 8, 9};
    assert_row(m, "the", the, 3);
    assert_row(m, "cat", cat, 3);
    assert_row(m, "caf\xC3\xA9", cafe, 3);
    assert_string_equal(semd_model_word(m, 0, NULL), "the");
    assert_int_equal(semd_model_count(m, 2), 3); /* a rank */
    semd_model_close(m);

    /* a byte order mark is not part of the first word */
    const char *bom = t_path("bom.txt");
    const char *bom_text = "\xEF\xBB\xBFthe 1 2\ncat 3 4\n";
    t_write_file(bom, bom_text, strlen(bom_text));
    m = convert_ok(bom, t_path("bom.semd"), NULL);
    assert_string_equal(source_format(m), "glove-text");
    assert_string_equal(semd_model_word(m, 0, NULL), "the");
    semd_model_close(m);
}

static void
test_word2vec_text_and_vec(void **state)
{
    (void)state;
    const char *text = "3 2\r\n"
                       "a 1 2 \r\n"
                       "b -1.25 0.5 \r\n"
                       "c 3.4028235e38 -1e-45 \r\n";
    const char *in = t_path("w.txt");
    t_write_file(in, text, strlen(text));
    struct semd_model *m = convert_ok(in, t_path("w.semd"), NULL);
    assert_string_equal(source_format(m), "word2vec-text");
    assert_int_equal(semd_model_rows(m), 3);
    float c[2] = {strtof("3.4028235e38", NULL), strtof("-1e-45", NULL)};
    assert_row(m, "c", c, 2);
    semd_model_close(m);

    const char *vec = t_path("w.vec");
    t_write_file(vec, text, strlen(text));
    m = convert_ok(vec, t_path("v.semd"), NULL);
    assert_string_equal(source_format(m), "fasttext-vec");
    float b[2] = {-1.25f, 0.5f};
    assert_row(m, "b", b, 2);
    semd_model_close(m);
}

/* A word2vec binary file; newline: "\n" after each vector (word2vec.c)
 * or not (gensim). */
static size_t
make_w2v_bin(char *buf, const char *const *words, const float *vecs,
             int rows, int dims, int newline, int header_rows)
{
    size_t n = (size_t)sprintf(buf, "%d %d\n", header_rows, dims);
    for (int r = 0; r < rows; r++) {
        n += (size_t)sprintf(buf + n, "%s ", words[r]);
        memcpy(buf + n, vecs + r * dims, (size_t)dims * 4);
        n += (size_t)dims * 4;
        if (newline)
            buf[n++] = '\n';
    }
    return n;
}

static void
test_word2vec_binary(void **state)
{
    (void)state;
    const char *words[] = {"alpha", "beta", "\xE2\x82\xAC"};
    float vecs[12] = {1, -0.0f, 1e-40f, 3.1415927f, 10, 20, 30, 40,
                      -1, 0.1f, 0.2f, 0.3f};
    char buf[512];
    for (int nl = 0; nl < 2; nl++) {
        size_t n = make_w2v_bin(buf, words, vecs, 3, 4, nl, 3);
        const char *in = t_path(nl ? "b1.bin" : "b0.bin");
        t_write_file(in, buf, n);
        struct semd_model *m = convert_ok(in, t_path("b.semd"), NULL);
        assert_string_equal(source_format(m), "word2vec-binary");
        assert_int_equal(semd_model_rows(m), 3);
        assert_int_equal(semd_model_dims(m), 4);
        assert_memory_equal(semd_model_matrix(m), vecs, sizeof vecs);
        assert_string_equal(semd_model_word(m, 2, NULL), "\xE2\x82\xAC");
        semd_model_close(m);
    }
}

static void
test_wink_json(void **state)
{
    (void)state;
    const char *json =
        "{\"precision\":8,\"l2NormIndex\":2,\"wordIndex\":3,\"size\":3,"
        "\"dimensions\":2,\"extra\":{\"nested\":[1,[2],{\"x\":null}]},"
        "\"words\":[\"the\",\"\\\"\",\"caf\\u00e9\\ud83d\\ude00\"],"
        "\"vectors\":{"
        "\"caf\\u00e9\\ud83d\\ude00\":[0.5,-0.25,0.559,2],"
        "\"the\":[0.1,0.2,0.2236,0],"
        "\"\\\"\":[-1e-3,4e1,40.00001,1]},"
        "\"unkVector\":[0,0,0,-1]}\n";
    const char *in = t_path("w.json");
    t_write_file(in, json, strlen(json));
    struct semd_model *m = convert_ok(in, t_path("j.semd"), NULL);
    assert_string_equal(source_format(m), "wink-json");
    assert_int_equal(semd_model_rows(m), 3);
    assert_int_equal(semd_model_dims(m), 2);
    assert_string_equal(semd_model_word(m, 0, NULL), "the");
    assert_string_equal(semd_model_word(m, 1, NULL), "\"");
    assert_string_equal(semd_model_word(m, 2, NULL),
                        "caf\xC3\xA9\xF0\x9F\x98\x80");
    float v0[2] = {strtof("0.1", NULL), strtof("0.2", NULL)};
    float v1[2] = {strtof("-1e-3", NULL), 40};
    float v2[2] = {0.5f, -0.25f};
    assert_memory_equal(semd_model_row(m, 0), v0, 8);
    assert_memory_equal(semd_model_row(m, 1), v1, 8);
    assert_memory_equal(semd_model_row(m, 2), v2, 8);
    semd_model_close(m);

    /* --limit keeps the first rows; vectors of later rows are skipped */
    m = convert_ok(in, t_path("j2.semd"), "--limit 2");
    assert_int_equal(semd_model_rows(m), 2);
    assert_memory_equal(semd_model_row(m, 1), v1, 8);
    semd_model_close(m);
}

/* Writes a safetensors file with the tensors given as header JSON (data
 * offsets inside) and the data blob. */
static void
write_safetensors(const char *path, const char *header, const void *data,
                  size_t n)
{
    size_t hl = strlen(header);
    char *buf = malloc(8 + hl + n);
    uint64_t len = hl;
    memcpy(buf, &len, 8);
    memcpy(buf + 8, header, hl);
    memcpy(buf + 8 + hl, data, n);
    t_write_file(path, buf, 8 + hl + n);
    free(buf);
}

static void
test_safetensors_f16_bf16(void **state)
{
    (void)state;
    /* f16: 1, -2, 0.5, 65504, 2^-24 (subnormal), -0 */
    uint16_t f16[6] = {0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x8000};
    float f16_want[6] = {1, -2, 0.5f, 65504, 5.9604645e-8f, -0.0f};
    /* bf16: 1, -3, 0.15625, 2^-126 (smallest normal), 1e10ish, 0 */
    uint16_t bf16[6] = {0x3F80, 0xC040, 0x3E20, 0x0080, 0x5015, 0x0000};
    float bf16_want[6];
    for (int i = 0; i < 6; i++) {
        uint32_t b = (uint32_t)bf16[i] << 16;
        memcpy(&bf16_want[i], &b, 4);
    }
    assert_true(bf16_want[0] == 1 && bf16_want[1] == -3 &&
                bf16_want[2] == 0.15625f);
    const char *vocab = t_path("vocab.txt");
    t_write_file(vocab, "hello\nworld\n", 12);

    const char *p = t_path("e16.safetensors");
    write_safetensors(p, "{\"__metadata__\":{\"format\":\"pt\"},"
                         "\"wte\":{\"dtype\":\"F16\",\"shape\":[2,3],"
                         "\"data_offsets\":[0,12]}}", f16, sizeof f16);
    char extra[600];
    snprintf(extra, sizeof extra, "--vocab '%s'", vocab);
    struct semd_model *m = convert_ok(p, t_path("e16.semd"), extra);
    assert_string_equal(source_format(m), "safetensors-f16");
    assert_int_equal(semd_model_rows(m), 2);
    assert_int_equal(semd_model_dims(m), 3);
    assert_memory_equal(semd_model_matrix(m), f16_want, sizeof f16_want);
    assert_string_equal(semd_model_word(m, 1, NULL), "world");
    semd_model_close(m);

    p = t_path("e_bf.safetensors");
    write_safetensors(p, "{\"emb\":{\"dtype\":\"BF16\",\"shape\":[2,3],"
                         "\"data_offsets\":[0,12]}}", bf16, sizeof bf16);
    m = convert_ok(p, t_path("ebf.semd"), extra);
    assert_string_equal(source_format(m), "safetensors-bf16");
    assert_memory_equal(semd_model_matrix(m), bf16_want, sizeof bf16_want);
    semd_model_close(m);
}

static void
test_safetensors_f32_vocabs(void **state)
{
    (void)state;
    /* two tensors: the 4x2 one is chosen with --tensor; row 3 is padding */
    float data[8 + 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9};
    const char *p = t_path("m.safetensors");
    write_safetensors(p, "{\"bias\":{\"dtype\":\"F32\",\"shape\":[3,1],"
                         "\"data_offsets\":[32,44]},"
                         "\"tok\":{\"dtype\":\"F32\",\"shape\":[4,2],"
                         "\"data_offsets\":[0,32]}}", data, sizeof data);
    const char *tj = t_path("tokenizer.json");
    const char *tokenizer =
        "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":2,\"content\":"
        "\"<eos>\",\"special\":true}],\"model\":{\"type\":\"BPE\","
        "\"vocab\":{\"\\u0120the\":1,\"a\":0,\"<eos>\":2}}}";
    t_write_file(tj, tokenizer, strlen(tokenizer));
    char *msg;
    /* without --tensor: two 2-D tensors, named in the message */
    int st = semd(&msg, "convert '%s' '%s' --vocab '%s'", p,
                  t_path("m.semd"), tj);
    assert_int_equal(st, 1);
    assert_non_null(strstr(msg, "choose one with --tensor"));
    assert_non_null(strstr(msg, "tok"));
    free(msg);
    assert_nothing_named("m.semd");

    char extra[600];
    snprintf(extra, sizeof extra, "--tensor tok --vocab '%s'", tj);
    struct semd_model *m = convert_ok(p, t_path("m.semd"), extra);
    assert_int_equal(semd_model_rows(m), 3); /* padding row left out */
    assert_string_equal(semd_model_word(m, 1, NULL), "\xC4\xA0the");
    assert_string_equal(semd_model_word(m, 2, NULL), "<eos>");
    assert_memory_equal(semd_model_matrix(m), data, 6 * 4);
    semd_model_close(m);

    const char *vj = t_path("vocab.json");
    /* GPT-2's vocab.json holds the token "model": not a tokenizer.json */
    const char *vocab = "{\"x\":3,\"model\":0,\"z\":1,\"w\":2}";
    t_write_file(vj, vocab, strlen(vocab));
    snprintf(extra, sizeof extra, "--from safetensors --tensor tok "
             "--vocab '%s'", vj);
    m = convert_ok(p, t_path("m2.semd"), extra);
    assert_int_equal(semd_model_rows(m), 4);
    assert_string_equal(semd_model_word(m, 3, NULL), "x");
    assert_string_equal(semd_model_word(m, 0, NULL), "model");
    assert_memory_equal(semd_model_matrix(m), data, 8 * 4);
    semd_model_close(m);

    /* a token id beyond the tensor's rows */
    const char *bad = "{\"x\":4}";
    t_write_file(vj, bad, strlen(bad));
    st = semd(&msg, "convert '%s' '%s' --tensor tok --vocab '%s'", p,
              t_path("m3.semd"), vj);
    assert_int_equal(st, 1);
    assert_non_null(strstr(msg, "id 4, outside the tensor's 4 rows"));
    free(msg);
    assert_nothing_named("m3.semd");
}

static void
test_detection_errors(void **state)
{
    (void)state;
    convert_fails("empty.txt", "", 0, NULL, "empty.txt: empty file");
    unsigned char png[64] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    for (int i = 8; i < 64; i++)
        png[i] = (unsigned char)(i * 37);
    convert_fails("pic.png", png, sizeof png, NULL,
                  "pic.png: cannot tell the format");
    const char *model = t_random_model("already.semd", 10, 4, 1);
    char *msg;
    assert_int_equal(semd(&msg, "convert '%s' '%s'", model,
                          t_path("bad.semd")), 1);
    assert_non_null(strstr(msg, "already a semd model file"));
    free(msg);
    assert_int_equal(semd(&msg, "convert '%s' '%s' --from yaml", model,
                          t_path("bad.semd")), 2);
    assert_non_null(strstr(msg, "unknown format 'yaml'"));
    free(msg);
    assert_int_equal(semd(&msg, "convert '%s' '%s'", t_path("missing.txt"),
                          t_path("bad.semd")), 1);
    assert_non_null(strstr(msg, "missing.txt: cannot open"));
    free(msg);
    assert_nothing_named("bad.semd");
}

static void
test_text_errors(void **state)
{
    (void)state;
    const char *s;
    s = "the 1 2 3\ncat 1 2\n";
    convert_fails("g1.txt", s, strlen(s), NULL,
                  "g1.txt:2: expected 3 values after \"cat\", found 2");
    s = "the 1 2 3\ncat 1 2 3 4\n";
    convert_fails("g2.txt", s, strlen(s), NULL,
                  "g2.txt:2: expected 3 values after \"cat\", found 4");
    s = "the 1 2 3\ncat 1 x2 3\n";
    convert_fails("g3.txt", s, strlen(s), NULL,
                  "g3.txt:2: expected a number after \"cat\", found \"x2\"");
    s = "the 1 2 3\ncat 1 2 3\nthe 4 5 6\n";
    convert_fails("g4.txt", s, strlen(s), NULL,
                  "g4.txt:3: duplicate word \"the\"");
    s = "the 1 2 3\ncat 1 nan 3\n";
    convert_fails("g5.txt", s, strlen(s), NULL,
                  "g5.txt:2: NaN value in dimension 2 of \"cat\"");
    s = "the 1 2 3\ncat 1 2 1e39\n";
    convert_fails("g6.txt", s, strlen(s), NULL,
                  "g6.txt:2: infinite value in dimension 3 of \"cat\"");
    s = "the 1 2 3\nc\xC3\x28t 1 2 3\n";
    convert_fails("g7.txt", s, strlen(s), NULL, "g7.txt:2: invalid UTF-8");
    s = "3 2\na 1 2\nb 3 4\n";
    convert_fails("h1.txt", s, strlen(s), NULL,
                  "h1.txt: the header announces 3 rows, found 2");
    s = "1 2\na 1 2\nb 3 4\n";
    convert_fails("h2.txt", s, strlen(s), NULL,
                  "h2.txt:3: more rows than the 1 the header announces");
    s = "2 2\na 1 2\nb 3\n";
    convert_fails("h3.vec", s, strlen(s), NULL,
                  "h3.vec:3: expected 2 values after \"b\", found 1");
    s = "a b c\n";
    convert_fails("h4.txt", s, strlen(s), "--from word2vec-text",
                  "h4.txt:1: expected a header \"ROWS DIMS\"");
    convert_fails("h5.txt", s, strlen(s), "--from glove-text",
                  "h5.txt:1: expected a word followed by numbers");
}

static void
test_binary_errors(void **state)
{
    (void)state;
    const char *words[] = {"a", "b", "a"};
    float vecs[6] = {1, 2, 3, 4, 5, 6};
    char buf[256];
    size_t n = make_w2v_bin(buf, words, vecs, 2, 2, 1, 2);
    /* cut inside the second vector */
    convert_fails("t1.bin", buf, n - 3, "--from word2vec-binary",
                  "t1.bin: the header announces 2 rows of 2 floats");
    /* a header announcing fewer rows than there are */
    n = make_w2v_bin(buf, words, vecs, 2, 2, 1, 1);
    convert_fails("t2.bin", buf, n, NULL,
                  "data after the 1 rows the header announces");
    /* duplicate word */
    n = make_w2v_bin(buf, words, vecs, 3, 2, 0, 3);
    convert_fails("t3.bin", buf, n, NULL, "duplicate word \"a\"");
    /* a NaN */
    float nan_vecs[4] = {1, NAN, 3, 4};
    n = make_w2v_bin(buf, words, nan_vecs, 2, 2, 1, 2);
    convert_fails("t4.bin", buf, n, NULL,
                  "NaN value in dimension 2 of \"a\"");
    /* cut inside the last vector, where the size check still passes */
    const char *longw[] = {"aaaaaaaaaa", "b"};
    n = make_w2v_bin(buf, longw, vecs, 2, 2, 0, 2);
    convert_fails("t5.bin", buf, n - 5, "--from word2vec-binary",
                  "unexpected end of file at byte 28: expected 2 floats "
                  "for \"b\" (row 2 of 2) (truncated?)");
}

static void
test_json_errors(void **state)
{
    (void)state;
    const char *head = "{\"dimensions\":2,\"words\":[\"a\",\"b\"],"
                       "\"vectors\":{";
    char s[512];
    snprintf(s, sizeof s, "%s\"a\":[1,2,2.2,0],\"b\":[3,4,5", head);
    convert_fails("j1.json", s, strlen(s), NULL,
                  "j1.json: unexpected end of file at byte 71");
    snprintf(s, sizeof s, "%s\"a\":[1,2,2.2,0],\"b\":[3,5,1]}}", head);
    convert_fails("j2.json", s, strlen(s), NULL,
                  "expected 4 values for \"b\" (2 dimensions, the norm, "
                  "the row), found 3");
    snprintf(s, sizeof s, "%s\"a\":[1,2,2.2,0]}}", head);
    convert_fails("j3.json", s, strlen(s), NULL,
                  "j3.json: no vector for \"b\" (word 2 of \"words\")");
    snprintf(s, sizeof s, "%s\"a\":[1,2,2.2,1],\"b\":[3,4,5,0]}}", head);
    convert_fails("j4.json", s, strlen(s), NULL,
                  "the vector of \"a\" names row 1, which is \"b\"");
    snprintf(s, sizeof s, "{\"dimensions\":2,\"words\":[\"a\",\"a\"]}");
    convert_fails("j5.json", s, strlen(s), NULL, "duplicate word \"a\"");
    snprintf(s, sizeof s, "%s\"a\":[1,2,2.2,0],\"b\":[3,4,5,1]}} x", head);
    convert_fails("j6.json", s, strlen(s), NULL, "byte 77: unexpected \"x\" (not JSON?)");
    snprintf(s, sizeof s, "%s\"a\":[1,2,2.2,0],\"a\":[3,4,5,0]}}", head);
    convert_fails("j7.json", s, strlen(s), NULL,
                  "a second vector for \"a\"");
    snprintf(s, sizeof s, "{\"words\":[\"a\"]}");
    convert_fails("j8.json", s, strlen(s), NULL,
                  "byte 1: expected \"dimensions\" before \"words\"");
    snprintf(s, sizeof s, "{\"dimensions\":1,\"words\":[\"\\xff\"]}");
    convert_fails("j9.json", s, strlen(s), NULL, "bad escape in a string");
    snprintf(s, sizeof s, "{\"dimensions\":1,\"words\":[\"\xff\"]}");
    convert_fails("j10.json", s, strlen(s), NULL, "invalid UTF-8");
}

static void
test_safetensors_errors(void **state)
{
    (void)state;
    float data[4] = {1, 2, 3, 4};
    const char *vocab = t_path("v2.txt");
    t_write_file(vocab, "a\nb\n", 4);
    char extra[600];
    snprintf(extra, sizeof extra, "--vocab '%s'", vocab);
    const char *p = t_path("s1.safetensors");
    /* data_offsets past the end of the file */
    write_safetensors(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                         "\"data_offsets\":[0,16]}}", data, 12);
    char *msg;
    assert_int_equal(semd(&msg, "convert '%s' '%s' %s", p,
                          t_path("bad.semd"), extra), 1);
    assert_non_null(strstr(msg, "(truncated?)"));
    free(msg);
    write_safetensors(p, "{\"t\":{\"dtype\":\"I64\",\"shape\":[2,1],"
                         "\"data_offsets\":[0,16]}}", data, 16);
    assert_int_equal(semd(&msg, "convert '%s' '%s' %s", p,
                          t_path("bad.semd"), extra), 1);
    assert_non_null(strstr(msg, "dtype \"I64\"; expected F32, F16 or BF16"));
    free(msg);
    float inf[4] = {1, INFINITY, 3, 4};
    write_safetensors(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                         "\"data_offsets\":[0,16]}}", inf, 16);
    assert_int_equal(semd(&msg, "convert '%s' '%s' %s", p,
                          t_path("bad.semd"), extra), 1);
    assert_non_null(strstr(msg, "row 0: infinite value in dimension 2 of "
                                "\"a\""));
    free(msg);
    write_safetensors(p, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                         "\"data_offsets\":[0,16]}}", data, 16);
    assert_int_equal(semd(&msg, "convert '%s' '%s'", p, t_path("bad.semd")),
                     1);
    assert_non_null(strstr(msg, "needs its vocabulary: --vocab FILE"));
    free(msg);
    t_write_file(vocab, "a\na\n", 4);
    assert_int_equal(semd(&msg, "convert '%s' '%s' %s", p,
                          t_path("bad.semd"), extra), 1);
    assert_non_null(strstr(msg, "duplicate word \"a\""));
    free(msg);
    assert_nothing_named("bad.semd");
}

/* ------------------------------------------------------------ round trips */

static void
assert_same_model(const char *a, const char *b)
{
    struct semd_model *ma = open_ok(a), *mb = open_ok(b);
    assert_int_equal(semd_model_rows(ma), semd_model_rows(mb));
    assert_int_equal(semd_model_dims(ma), semd_model_dims(mb));
    uint64_t rows = semd_model_rows(ma);
    assert_memory_equal(semd_model_matrix(ma), semd_model_matrix(mb),
                        rows * semd_model_dims(ma) * 4);
    for (uint64_t r = 0; r < rows; r++)
        assert_string_equal(semd_model_word(ma, r, NULL),
                            semd_model_word(mb, r, NULL));
    semd_model_close(ma);
    semd_model_close(mb);
}

static void
test_round_trips(void **state)
{
    (void)state;
    const char *orig = t_random_model("rt.semd", 3000, 23, 99);
    char *msg;
    for (int bin = 0; bin < 2; bin++) {
        const char *to = bin ? "word2vec-binary" : "word2vec-text";
        const char *f1 = t_path(bin ? "rt1.bin" : "rt1.txt");
        const char *f2 = t_path(bin ? "rt2.bin" : "rt2.txt");
        const char *m1 = t_path("rt1.semd");
        assert_int_equal(semd(&msg, "export '%s' '%s' --to %s", orig, f1,
                              to), 0);
        free(msg);
        struct semd_model *m = convert_ok(f1, m1, NULL);
        semd_model_close(m);
        assert_same_model(orig, m1);
        /* and once more: the exported files are identical */
        assert_int_equal(semd(&msg, "export '%s' '%s' --to %s", m1, f2, to),
                         0);
        free(msg);
        size_t n1, n2;
        char *b1 = t_read_file(f1, &n1), *b2 = t_read_file(f2, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(b1, b2, n1);
        free(b1);
        free(b2);
    }
    /* --limit on export */
    const char *lim = t_path("lim.txt");
    assert_int_equal(semd(&msg, "export '%s' '%s' --to word2vec-text "
                          "--limit 10", orig, lim), 0);
    free(msg);
    struct semd_model *m = convert_ok(lim, t_path("lim.semd"), NULL);
    assert_int_equal(semd_model_rows(m), 10);
    semd_model_close(m);
    assert_nothing_named("rt1.bin.tmp");
    assert_nothing_named("rt1.txt.tmp");
}

/* Converting over a model that is open replaces the file; the open map
 * keeps the old content and a reopen sees the new one. */
static void
test_convert_twice_reopen(void **state)
{
    (void)state;
    const char *in = t_path("twice.txt");
    const char *out = t_path("twice.semd");
    t_write_file(in, "a 1 2\nb 3 4\n", 12);
    struct semd_model *m1 = convert_ok(in, out, NULL);
    t_write_file(in, "x 5 6\ny 7 8\nz 9 10\n", 19);
    struct semd_model *m2 = convert_ok(in, out, NULL);
    assert_int_equal(semd_model_rows(m1), 2);
    assert_string_equal(semd_model_word(m1, 0, NULL), "a");
    assert_int_equal(semd_model_rows(m2), 3);
    float z[2] = {9, 10};
    assert_row(m2, "z", z, 2);
    struct semd_err err = {0};
    assert_int_equal(semd_model_verify(m2, &err), 0);
    semd_model_close(m1);
    semd_model_close(m2);
    assert_nothing_named("twice.semd.tmp");
    char *msg;
    assert_int_equal(semd(&msg, "convert '%s' '%s'", out, out), 2);
    assert_non_null(strstr(msg, "the output is the input"));
    free(msg);
}

/* ------------------------------------------------------------ fixture */

static void
test_fixture(void **state)
{
    (void)state;
    char bin[512];
    snprintf(bin, sizeof bin, "%s/glove-20k.bin", t_datadir());
    size_t n;
    char *raw = t_read_file(bin, &n);
    assert_non_null(raw);
    struct semd_model *m = open_ok(t_fixture());
    assert_int_equal(semd_model_rows(m), 20000);
    assert_int_equal(semd_model_dims(m), 100);
    uint64_t king;
    assert_int_equal(semd_model_lookup(m, "king", 4, &king), 0);
    assert_true(king < 1000);
    assert_string_equal(semd_model_word(m, 0, NULL), "the");
    /* every row equals the .bin's floats, word for word */
    char *p = strchr(raw, '\n') + 1;
    for (uint64_t r = 0; r < 20000; r++) {
        char *sp = memchr(p, ' ', 64);
        assert_non_null(sp);
        size_t len;
        const char *w = semd_model_word(m, r, &len);
        assert_int_equal(len, (size_t)(sp - p));
        assert_memory_equal(w, p, len);
        assert_memory_equal(semd_model_row(m, r), sp + 1, 400);
        p = sp + 1 + 400 + 1;
    }
    assert_true(p == raw + n);
    semd_model_close(m);
    /* exporting the fixture gives the committed file back, byte for byte */
    char *msg;
    const char *out = t_path("fx.bin");
    assert_int_equal(semd(&msg, "export '%s' '%s' --to word2vec-binary",
                          t_fixture(), out), 0);
    free(msg);
    size_t n2;
    char *again = t_read_file(out, &n2);
    assert_int_equal(n, n2);
    assert_memory_equal(raw, again, n);
    free(again);
    free(raw);
}

/* A python3 that can import gensim, or NULL. */
static const char *
gensim_python(void)
{
    static const char *const cands[] = {"python3", "/usr/bin/python3"};
    for (size_t i = 0; i < 2; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "%s -c 'import gensim' >/dev/null 2>&1",
                 cands[i]);
        if (t_run(cmd, NULL) == 0)
            return cands[i];
    }
    return NULL;
}

static void
test_gensim_reads_export(void **state)
{
    (void)state;
    const char *py = gensim_python();
    if (!py) {
        print_message("skipped: no python3 with gensim (benchmarks install "
                      "python3-gensim)\n");
        skip();
    }
    char *msg;
    const char *bin = t_path("gx.bin"), *txt = t_path("gx.txt");
    assert_int_equal(semd(&msg, "export '%s' '%s' --to word2vec-binary",
                          t_fixture(), bin), 0);
    free(msg);
    assert_int_equal(semd(&msg, "export '%s' '%s' --to word2vec-text",
                          t_fixture(), txt), 0);
    free(msg);
    const char *script = t_path("load.py");
    const char *code =
        "import sys\n"
        "from gensim.models import KeyedVectors\n"
        "for path, binary, out in ((sys.argv[1], True, sys.argv[3]),\n"
        "                          (sys.argv[2], False, sys.argv[4])):\n"
        "    kv = KeyedVectors.load_word2vec_format(path, binary=binary)\n"
        "    open(out, 'wb').write(kv.vectors.astype('float32').tobytes())\n"
        "    open(out + '.words', 'w', encoding='utf-8').write(\n"
        "        '\\n'.join(kv.index_to_key))\n";
    t_write_file(script, code, strlen(code));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s' '%s' '%s' '%s' '%s' 2>&1", py, script,
             bin, txt, t_path("gb.f32"), t_path("gt.f32"));
    int st = t_run(cmd, &msg);
    if (st != 0)
        fail_msg("gensim failed: %s", msg);
    free(msg);
    struct semd_model *m = open_ok(t_fixture());
    size_t want = 20000 * 100 * 4;
    const char *outs[2] = {"gb.f32", "gt.f32"};
    for (int i = 0; i < 2; i++) {
        size_t n;
        char *f = t_read_file(t_path(outs[i]), &n);
        assert_int_equal(n, want);
        assert_memory_equal(f, semd_model_matrix(m), want);
        free(f);
        char wname[64];
        snprintf(wname, sizeof wname, "%s.words", outs[i]);
        char *words = t_read_file(t_path(wname), NULL);
        char *save = NULL, *w = strtok_r(words, "\n", &save);
        for (uint64_t r = 0; r < 20000; r++, w = strtok_r(NULL, "\n", &save))
            assert_string_equal(w, semd_model_word(m, r, NULL));
        free(words);
    }
    semd_model_close(m);
}

static void
test_help_and_progress(void **state)
{
    (void)state;
    char *msg;
    assert_int_equal(semd(&msg, "convert --help"), 0);
    assert_non_null(strstr(msg, "wink-json"));
    assert_non_null(strstr(msg, "--vocab FILE"));
    free(msg);
    assert_int_equal(semd(&msg, "export --help"), 0);
    assert_non_null(strstr(msg, "OUT may be - for standard output"));
    assert_non_null(strstr(msg, "word2vec-binary"));
    free(msg);
    const char *in = t_path("p.txt");
    t_write_file(in, "a 1\nb 2\n", 8);
    assert_int_equal(semd(&msg, "convert '%s' '%s' --progress", in,
                          t_path("p.semd")), 0);
    assert_non_null(strstr(msg, "converting: 2 rows in"));
    free(msg);
    /* "-" exports to standard output */
    assert_int_equal(semd(&msg, "export '%s' - --to word2vec-text",
                          t_path("p.semd")), 0);
    assert_string_equal(msg, "2 1\na 1\nb 2\n");
    free(msg);
    /* the result is renamed into place: never over a link or a device */
    const char *link = t_path("link.semd");
    assert_int_equal(symlink(t_path("p.semd"), link), 0);
    assert_int_equal(semd(&msg, "convert '%s' '%s'", in, link), 2);
    assert_non_null(strstr(msg, "link.semd: exists and is not a regular "
                                "file"));
    free(msg);
    assert_int_equal(semd(&msg, "export '%s' '%s' --to word2vec-text",
                          t_path("p.semd"), link), 2);
    assert_non_null(strstr(msg, "link.semd: exists and is not a regular "
                                "file"));
    free(msg);
    assert_int_equal(semd(&msg, "export '%s' /dev/null --to word2vec-text",
                          t_path("p.semd")), 2);
    free(msg);
    struct semd_model *m = open_ok(link); /* the link still points there */
    assert_int_equal(semd_model_rows(m), 2);
    semd_model_close(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_glove_text),
        cmocka_unit_test(test_word2vec_text_and_vec),
        cmocka_unit_test(test_word2vec_binary),
        cmocka_unit_test(test_wink_json),
        cmocka_unit_test(test_safetensors_f16_bf16),
        cmocka_unit_test(test_safetensors_f32_vocabs),
        cmocka_unit_test(test_detection_errors),
        cmocka_unit_test(test_text_errors),
        cmocka_unit_test(test_binary_errors),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_safetensors_errors),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_convert_twice_reopen),
        cmocka_unit_test(test_fixture),
        cmocka_unit_test(test_gensim_reads_export),
        cmocka_unit_test(test_help_and_progress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
