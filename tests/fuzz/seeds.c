/*
 * seeds.c - writes the binary seed inputs of the fuzz targets (models,
 * journal segments, word2vec binary and safetensors files) into
 * tests/fuzz/corpus/<target>/ through the library's own writers, so the
 * seeds are valid files the fuzzer then mutates. `make fuzz-seeds` runs
 * it; the text seeds are committed as they are. Usage: seeds CORPUSDIR.
 * Single-threaded.
 */
#include "semd.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *corpus;
static char tmp[512];

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("seeds: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static unsigned char *
slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len)
        die("%s: cannot read", path);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* Writes corpus/target/name from parts (pointer, length pairs, NULL-ended). */
static void
seed(const char *target, const char *name, ...)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", corpus, target);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/%s", corpus, target, name);
    FILE *f = fopen(p, "wb");
    if (!f)
        die("%s: %s", p, strerror(errno));
    va_list ap;
    va_start(ap, name);
    const void *d;
    while ((d = va_arg(ap, const void *)) != NULL) {
        size_t n = va_arg(ap, size_t);
        if (fwrite(d, 1, n, f) != n)
            die("%s: cannot write", p);
    }
    va_end(ap);
    if (fclose(f) != 0)
        die("%s: cannot write", p);
}

static const char *
tpath(const char *name)
{
    static char b[4][768];
    static int i;
    char *p = b[i++ % 4];
    snprintf(p, sizeof b[0], "%s/%s", tmp, name);
    return p;
}

/* ------------------------------------------------------------ models */

static void
model(const char *name, const char *const *words, size_t n, uint32_t dims,
      const struct semd_tokenizer *tok)
{
    const char *path = tpath(name);
    struct semd_writer_opts o = {"seed", name, 0};
    struct semd_writer *w;
    struct semd_err err = {0};
    float v[8];
    if (semd_writer_open(&w, path, dims, &o, &err) != 0)
        die("%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        for (uint32_t d = 0; d < dims; d++)
            v[d] = (float)((i * 5 + d * 3) % 7) - 3.0f + 0.25f * (float)d;
        if (semd_writer_add(w, words[i], strlen(words[i]), v, 100 - i,
                            &err) != 0)
            die("%s", err.msg);
    }
    if (tok && semd_writer_set_tokenizer(w, tok, &err) != 0)
        die("%s", err.msg);
    if (semd_writer_finish(w, &err) != 0)
        die("%s", err.msg);
    size_t len;
    unsigned char *b = slurp(path, &len);
    seed("fuzz_model", name, b, len, NULL);
    free(b);
}

/* GPT-2's map from bytes to printable characters, as UTF-8. */
static void
byte_char(unsigned b, char *out)
{
    unsigned cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
        cp = b;
    } else {
        unsigned k = 0;
        for (unsigned x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) ||
                  x >= 174))
                k++;
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
}

/* A small tokenizer: the 256 byte tokens and a few merges. */
static struct semd_tokenizer *
small_tokenizer(char ***tokens, size_t *ntok)
{
    static const char *const merges[][2] = {
        {"\xc4\xa0", "t"}, {"h", "e"}, {"\xc4\xa0t", "he"}, {"i", "n"},
        {"in", "g"},       {"e", "r"}, {"\xc4\xa0", "a"},
    };
    size_t nm = sizeof merges / sizeof merges[0];
    char **t = calloc(256 + nm, sizeof *t);
    for (unsigned b = 0; b < 256; b++) {
        t[b] = malloc(4);
        byte_char(b, t[b]);
    }
    for (size_t i = 0; i < nm; i++) {
        t[256 + i] = malloc(strlen(merges[i][0]) + strlen(merges[i][1]) + 1);
        strcpy(t[256 + i], merges[i][0]);
        strcat(t[256 + i], merges[i][1]);
    }
    FILE *v = fopen(tpath("vocab.json"), "w");
    FILE *m = fopen(tpath("merges.txt"), "w");
    if (!v || !m)
        die("cannot write the small tokenizer");
    fputc('{', v);
    for (size_t i = 0; i < 256 + nm; i++) {
        const char *s = t[i];
        fprintf(v, "%s\"%s%s\": %zu", i ? ", " : "",
                (!strcmp(s, "\"") || !strcmp(s, "\\")) ? "\\" : "", s, i);
    }
    fputs("}\n", v);
    fputs("#version: 0.2\n", m);
    for (size_t i = 0; i < nm; i++)
        fprintf(m, "%s %s\n", merges[i][0], merges[i][1]);
    fclose(v);
    fclose(m);
    struct semd_tokenizer *tok;
    struct semd_err err = {0};
    if (semd_tokenizer_load(&tok, tpath("vocab.json"), tpath("merges.txt"),
                            &err) != 0)
        die("small tokenizer: %s", err.msg);
    *tokens = t;
    *ntok = 256 + nm;
    return tok;
}

static void
models(void)
{
    static const char *const words[] = {"the", "king", "queen", "man",
                                        "woman", "caf\xc3\xa9", "Paris"};
    model("plain.semd", words, 7, 4, NULL);
    model("one-row.semd", words, 1, 1, NULL);
    char **toks;
    size_t nt;
    struct semd_tokenizer *tok = small_tokenizer(&toks, &nt);
    model("tokenizer.semd", (const char *const *)toks, nt, 2, tok);
    semd_tokenizer_free(tok);
    for (size_t i = 0; i < nt; i++)
        free(toks[i]);
    free(toks);
}

/* ----------------------------------------------------------- journals */

static void
journal(const char *name, const char *const *recs, size_t n, size_t tear)
{
    char dir[768];
    snprintf(dir, sizeof dir, "%s/j-%s", tmp, name);
    struct semd_journal *j;
    struct semd_err err = {0};
    if (semd_journal_open(&j, dir, NULL, NULL, &err) != 0)
        die("%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        uint64_t seq;
        if (semd_journal_append(j, recs[i], strlen(recs[i]), &seq, &err) !=
            0)
            die("%s", err.msg);
    }
    semd_journal_close(j);
    char seg[1024];
    snprintf(seg, sizeof seg, "%s/journal-%020d.log", dir, 1);
    size_t len;
    unsigned char *b = slurp(seg, &len);
    /* one byte first: below 0x80, one segment (see fuzz_journal.c) */
    unsigned char k = 0;
    seed("fuzz_journal", name, &k, (size_t)1, b,
         tear && tear < len ? len - tear : len, NULL);
    /* the same bytes as two segments, cut in half */
    char two[64];
    snprintf(two, sizeof two, "%s-split", name);
    k = 0x80 | 32 | 1;
    seed("fuzz_journal", two, &k, (size_t)1, b, len, NULL);
    free(b);
    unlink(seg);
    rmdir(dir);
}

static void
journals(void)
{
    static const char *const recs[] = {
        "the quick brown fox jumps over the lazy dog",
        "", "king queen man woman\n", "a second line\nand a third"};
    journal("three", recs, 3, 0);
    journal("four-torn", recs, 4, 5);
}

/* ------------------------------------------------- word2vec binary */

static void
w2vbin(void)
{
    static const char *const words[] = {"the", "king", "queen"};
    char hdr[32];
    int hl = snprintf(hdr, sizeof hdr, "3 4\n");
    FILE *f = fopen(tpath("w2v.bin"), "wb");
    fwrite(hdr, 1, (size_t)hl, f);
    for (int i = 0; i < 3; i++) {
        float v[4] = {0.5f * (float)i, -1.0f, 0.25f, (float)i - 1.0f};
        fprintf(f, "%s ", words[i]);
        fwrite(v, sizeof v, 1, f);
        fputc('\n', f);
    }
    fclose(f);
    size_t len;
    unsigned char *b = slurp(tpath("w2v.bin"), &len);
    seed("fuzz_convert_w2vbin", "three.bin", b, len, NULL);
    free(b);
}

/* --------------------------------------------------------- safetensors */

static void
safetensors(const char *name, const char *dtype, size_t esize,
            const char *vocab)
{
    char js[256];
    size_t rows = 3, dims = 4, nbytes = rows * dims * esize;
    int jl = snprintf(js, sizeof js,
                      "{\"__metadata__\":{\"format\":\"pt\"},\"emb\":{"
                      "\"dtype\":\"%s\",\"shape\":[%zu,%zu],"
                      "\"data_offsets\":[0,%zu]}}",
                      dtype, rows, dims, nbytes);
    while (jl % 8)
        js[jl++] = ' ';
    unsigned char hlen[8] = {0};
    for (int i = 0; i < 8; i++)
        hlen[i] = (unsigned char)((uint64_t)jl >> (8 * i));
    unsigned char data[3 * 4 * 4];
    for (size_t i = 0; i < nbytes; i++)
        data[i] = (unsigned char)(esize == 4 ? (i % 4 == 3 ? 0x3f : 0)
                                             : (i % 2 ? 0x3c : 0x10 + i));
    size_t vl = strlen(vocab);
    unsigned char vlen[2] = {(unsigned char)vl, (unsigned char)(vl >> 8)};
    seed("fuzz_convert_safetensors", name, vlen, (size_t)2, vocab, vl, hlen,
         (size_t)8, js, (size_t)jl, data, nbytes, NULL);
}

int
main(int argc, char **argv)
{
    if (argc != 2)
        die("usage: seeds CORPUSDIR");
    corpus = argv[1];
    const char *base = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/semd-seeds-XXXXXX",
             base && *base ? base : "/tmp");
    if (!mkdtemp(tmp))
        die("mkdtemp: %s", strerror(errno));
    models();
    journals();
    w2vbin();
    safetensors("f32-lines", "F32", 4, "the\nking\nqueen\n");
    safetensors("f16-vocab-json", "F16", 2,
                "{\"the\": 0, \"king\": 1, \"queen\": 2}");
    safetensors("bf16-tokenizer-json", "BF16", 2,
                "{\"model\": {\"vocab\": {\"the\": 0, \"king\": 1, "
                "\"queen\": 2}}, \"added_tokens\": [{\"id\": 2, "
                "\"content\": \"queen\"}]}");
    safetensors("f32-unigram", "F32", 4,
                "{\"model\": {\"vocab\": [[\"the\", -1.0], [\"king\", -2.5],"
                " [\"queen\", -3.0]]}}");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) == 0 ? 0 : 1;
}
