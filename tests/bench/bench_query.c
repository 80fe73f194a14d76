/*
 * bench_query.c - timing of one 3CosMul analogy (semd_analogy, no
 * explanation) on a real model, printed as a row of the benchmark table
 * (see tests/bench/run.sh):
 *
 *   bench_query MODEL QUESTIONS GENSIM_MS
 *
 * The questions are the analogy lines of a questions-words file, lower-
 * cased, whose four words are all in the model; 200 of them spread evenly
 * (bench_query.sh picks the same ones for gensim). The figure is the
 * median over several runs of the median query time. Meant to run on one
 * core with one BLAS thread: the caller sets that up.
 */
#include "semd.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPS 7
#define NQ 200

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int
cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct q {
    char w[4][64];
};

int
main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: bench_query MODEL QUESTIONS GENSIM_MS\n");
        return 2;
    }
    struct semd_err err = {0};
    struct semd_model *m;
    struct semd_index *ix;
    if (semd_model_open(&m, argv[1], &err) ||
        semd_index_open(&ix, m, NULL, &err)) {
        fprintf(stderr, "bench_query: %s\n", err.msg);
        return 1;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    size_t n = 0, cap = 1024;
    struct q *all = malloc(cap * sizeof *all);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == ':')
            continue;
        struct q x;
        int k = 0, ok = 1;
        const char *sep = " \t\r\n";
        for (char *t = strtok(line, sep); t; t = strtok(NULL, sep)) {
            if (k == 4 || strlen(t) >= sizeof x.w[0]) {
                ok = 0;
                break;
            }
            for (char *c = t; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            strcpy(x.w[k++], t);
        }
        uint64_t row;
        for (int i = 0; ok && i < 4; i++)
            ok = semd_model_lookup(m, x.w[i], strlen(x.w[i]), &row) == 0;
        if (!ok || k != 4)
            continue;
        if (n == cap)
            all = realloc(all, (cap *= 2) * sizeof *all);
        all[n++] = x;
    }
    fclose(f);
    if (n < NQ) {
        fprintf(stderr, "bench_query: only %zu usable questions\n", n);
        return 1;
    }
    double reps[REPS], t[NQ];
    struct semd_hit hits[10];
    uint32_t nh;
    struct semd_term_info info[3];
    struct semd_search s = {.k = 10};
    for (int rep = -1; rep < REPS; rep++) {
        for (int i = 0; i < NQ; i++) {
            const struct q *x = &all[(size_t)i * n / NQ];
            /* most_similar_cosmul(positive=[b, c], negative=[a]) */
            struct semd_term terms[3] = {
                {x->w[1], strlen(x->w[1]), NULL, 1},
                {x->w[2], strlen(x->w[2]), NULL, 1},
                {x->w[0], strlen(x->w[0]), NULL, -1},
            };
            double t0 = now();
            if (semd_analogy(ix, terms, 3, SEMD_3COSMUL, &s, hits, &nh, NULL,
                             info, &err)) {
                fprintf(stderr, "bench_query: %s\n", err.msg);
                return 1;
            }
            t[i] = now() - t0;
        }
        if (rep >= 0)
            reps[rep] = median(t, NQ);
    }
    double ms = 1e3 * median(reps, REPS);
    double g = atof(argv[3]);
    char meas[64], ref[64];
    snprintf(meas, sizeof meas, "%.2f ms", ms);
    if (g > 0) {
        snprintf(ref, sizeof ref, "gensim most_similar_cosmul %.2f ms", g);
        printf("| 3CosMul analogy, one query, k=10 | %s | %s | %.2f | "
               "<= 0.50 | %s |\n",
               meas, ref, ms / g, ms / g <= 0.5 ? "PASS" : "FAIL");
    } else {
        printf("| 3CosMul analogy, one query, k=10 | %s | gensim missing | "
               "- | <= 0.50 | FAIL |\n",
               meas);
    }
    semd_index_close(ix);
    semd_model_close(m);
    free(all);
    return 0;
}
