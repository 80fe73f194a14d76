/*
 * bench_bpe.c - tokenizer speed and the cost a tokenizer adds to opening a
 * model, for bench_bpe.sh.
 *
 * usage: bench_bpe encode VOCAB MERGES TEXT_FILE RUNS
 *            prints the median seconds to tokenize the file and its tokens
 *        bench_bpe open VOCAB MERGES DIR ROWS DIMS RUNS
 *            writes two ROWS x DIMS models (fixed-seed random rows) into DIR,
 *            one with the tokenizer and one without, and prints the median
 *            seconds to open each and tokenize one short text
 */
#include "semd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

static int
die(const char *what, const struct semd_err *err)
{
    fprintf(stderr, "bench_bpe: %s: %s\n", what, err->msg);
    return 1;
}

static int
encode(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    struct semd_err err = {0};
    struct semd_tokenizer *t;
    if (semd_tokenizer_load(&t, argv[2], argv[3], &err))
        return die("load", &err);
    FILE *f = fopen(argv[4], "rb");
    if (!f)
        return 1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    if (!text || fread(text, 1, (size_t)len, f) != (size_t)len)
        return 1;
    fclose(f);
    int runs = atoi(argv[5]);
    double *s = calloc((size_t)runs, sizeof *s);
    size_t n = 0;
    for (int r = 0; r < runs; r++) {
        struct semd_token *toks;
        double t0 = now();
        if (semd_tokenize(t, text, (size_t)len, &toks, &n, &err))
            return die("tokenize", &err);
        s[r] = now() - t0;
        free(toks);
    }
    printf("%.6f %zu\n", median(s, runs), n);
    free(s);
    free(text);
    semd_tokenizer_free(t);
    return 0;
}

static int
write_model(const char *path, const struct semd_tokenizer *t, uint64_t rows,
            uint32_t dims)
{
    struct semd_err err = {0};
    struct semd_writer *w;
    struct semd_writer_opts o = {"bench", "random", SEMD_MODEL_COUNTS_ARE_RANKS};
    if (semd_writer_open(&w, path, dims, &o, &err))
        return die("writer", &err);
    float *v = malloc(dims * sizeof *v);
    uint64_t x = 12345;
    for (uint64_t r = 0; r < rows; r++) {
        for (uint32_t i = 0; i < dims; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            v[i] = (float)((double)(x >> 40) / (double)(1ull << 24) - 0.5);
        }
        size_t len;
        const char *word = t ? semd_tokenizer_token(t, (uint32_t)r, &len)
                             : NULL;
        char buf[32];
        if (!word) {
            len = (size_t)snprintf(buf, sizeof buf, "w%llu",
                                   (unsigned long long)r);
            word = buf;
        }
        if (semd_writer_add(w, word, len, v, 0, &err))
            return die("add", &err);
    }
    free(v);
    if (t && semd_writer_set_tokenizer(w, t, &err))
        return die("set tokenizer", &err);
    if (semd_writer_finish(w, &err))
        return die("finish", &err);
    return 0;
}

static int
open_bench(int argc, char **argv)
{
    if (argc != 8)
        return 2;
    struct semd_err err = {0};
    struct semd_tokenizer *t;
    if (semd_tokenizer_load(&t, argv[2], argv[3], &err))
        return die("load", &err);
    uint64_t rows = strtoull(argv[5], NULL, 10);
    uint32_t dims = (uint32_t)atoi(argv[6]);
    int runs = atoi(argv[7]);
    if (rows > semd_tokenizer_size(t))
        rows = semd_tokenizer_size(t);
    char with[1024], without[1024];
    snprintf(with, sizeof with, "%s/bpe-with.semd", argv[4]);
    snprintf(without, sizeof without, "%s/bpe-without.semd", argv[4]);
    if (write_model(with, t, rows, dims) || write_model(without, NULL, rows,
                                                        dims))
        return 1;
    semd_tokenizer_free(t);
    double *a = calloc((size_t)runs, sizeof *a);
    double *b = calloc((size_t)runs, sizeof *b);
    const char *text = "From numbers to meaning";
    for (int r = 0; r < runs; r++) {
        for (int k = 0; k < 2; k++) {
            struct semd_model *m;
            double t0 = now();
            if (semd_model_open(&m, k ? without : with, &err))
                return die("open", &err);
            const struct semd_tokenizer *mt = semd_model_tokenizer(m);
            if (mt) {
                struct semd_token *toks;
                size_t n;
                if (semd_tokenize(mt, text, strlen(text), &toks, &n, &err))
                    return die("tokenize", &err);
                free(toks);
            }
            (k ? b : a)[r] = now() - t0;
            semd_model_close(m);
        }
    }
    printf("%.6f %.6f\n", median(a, runs), median(b, runs));
    free(a);
    free(b);
    return 0;
}

int
main(int argc, char **argv)
{
    int rc = 2;
    if (argc > 1 && !strcmp(argv[1], "encode"))
        rc = encode(argc, argv);
    else if (argc > 1 && !strcmp(argv[1], "open"))
        rc = open_bench(argc, argv);
    if (rc == 2)
        fprintf(stderr, "usage: see the comment atop tests/bench/bench_bpe.c\n");
    return rc;
}
