/*
 * bench_open.c - the cost of opening a model and looking up one word:
 * semd_model_open, semd_model_lookup, reading the row, semd_model_close,
 * repeated, the median printed in microseconds. Opening maps the file and
 * checks its structure only, so the cost should not grow with the
 * vocabulary; bench_model.sh compares the full model with the fixture.
 *
 * usage: bench_open MODEL WORD [REPEATS]
 */
#include "semd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_open MODEL WORD [REPEATS]\n");
        return 2;
    }
    const char *path = argv[1], *word = argv[2];
    int reps = argc > 3 ? atoi(argv[3]) : 2000;
    if (reps < 1)
        reps = 1;
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t)
        return 1;
    volatile float sink = 0;
    for (int i = -50; i < reps; i++) { /* 50 warm-up rounds */
        struct semd_err err = {0};
        struct semd_model *m;
        uint64_t row;
        double t0 = now_us();
        if (semd_model_open(&m, path, &err) != 0) {
            fprintf(stderr, "bench_open: %s\n", err.msg);
            return 1;
        }
        if (semd_model_lookup(m, word, strlen(word), &row) != 0) {
            fprintf(stderr, "bench_open: \"%s\" not in %s\n", word, path);
            return 1;
        }
        const float *v = semd_model_row(m, row);
        float s = 0;
        for (uint32_t d = 0; d < semd_model_dims(m); d++)
            s += v[d];
        sink += s;
        semd_model_close(m);
        if (i >= 0)
            t[i] = now_us() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    printf("%.2f\n", t[reps / 2]);
    free(t);
    (void)sink;
    return 0;
}
