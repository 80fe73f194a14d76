/*
 * cmd_train.c - `semd train CORPUS -o MODEL`: the trainer, offline. Reads a
 * text file (a sentence per line), trains skip-gram with negative sampling
 * and writes a model file. Progress (percent, words/s, loss, learning rate)
 * goes to stderr when it is a terminal or with --progress; the last line
 * always says how many words were trained at what rate.
 *
 * Threads: the main thread trains (the trainer starts its workers); a
 * reporter thread reads the trainer's counters once a second.
 */
#include "semd.h"

#include "commands.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: semd train CORPUS -o MODEL [--init MODEL] [--dim 100]\n"
    "                  [--window 5] [--negative 5] [--sample 1e-3]\n"
    "                  [--min-count 5] [--alpha 0.025] [--epochs 1]\n"
    "                  [--threads N] [--seed 1] [--no-lowercase]\n"
    "                  [--punct split|drop|keep] [--context zero|scaled]\n"
    "                  [--progress]\n\n"
    "Trains skip-gram with negative sampling (word2vec's algorithm and\n"
    "option names) on CORPUS, one sentence per line, and writes MODEL.\n"
    "--init starts from a model's words and vectors (its dimension wins);\n"
    "--threads defaults to the number of cores. Progress goes to stderr\n"
    "when it is a terminal or with --progress.\n";

struct reporter {
    struct semd_trainer *t;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
};

static void
print_progress(struct semd_trainer *t, const char *end)
{
    struct semd_train_stats st;
    semd_trainer_stats(t, &st);
    double pct = st.run_planned
                     ? 100.0 * (double)st.run_done / (double)st.run_planned
                     : 0;
    fprintf(stderr,
            "\rtrain: %5.1f%%  %9.0f words/s  loss %.4f  alpha %.6f%s", pct,
            st.words_per_sec, st.loss, st.alpha, end);
}

static void *
reporter_main(void *arg)
{
    struct reporter *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&r->cond, &r->lock, &ts);
        if (!r->stop)
            print_progress(r->t, "");
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static int
parse_u64(const char *name, const char *s, uint64_t lo, uint64_t hi,
          uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr,
                "semd train: %s wants an integer in %llu..%llu, got '%s'\n",
                name, (unsigned long long)lo, (unsigned long long)hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int
parse_double(const char *name, const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) {
        fprintf(stderr, "semd train: %s wants a number, got '%s'\n", name, s);
        return -1;
    }
    *out = v;
    return 0;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int
cmd_train(int argc, char **argv)
{
    struct semd_train_opts o;
    semd_train_opts_init(&o);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = cores > 0 ? (uint32_t)cores : 1;
    const char *corpus = NULL, *out = NULL, *init_path = NULL;
    int progress = isatty(2);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u;
        int takes = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--progress")) {
            progress = 1;
            takes = 0;
        } else if (!strcmp(a, "--no-lowercase")) {
            o.lowercase = 0;
            takes = 0;
        } else if (a[0] != '-' || !a[1]) {
            if (corpus) {
                fprintf(stderr, "semd train: unexpected argument '%s'\n", a);
                return 2;
            }
            corpus = a;
            takes = 0;
        }
        if (!takes)
            continue;
        if (!v) {
            fprintf(stderr, "semd train: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            out = v;
        } else if (!strcmp(a, "--init")) {
            init_path = v;
        } else if (!strcmp(a, "--dim") || !strcmp(a, "--size")) {
            if (parse_u64(a, v, 1, 65536, &u))
                return 2;
            o.dim = (uint32_t)u;
        } else if (!strcmp(a, "--window")) {
            if (parse_u64(a, v, 1, 1000, &u))
                return 2;
            o.window = (uint32_t)u;
        } else if (!strcmp(a, "--negative")) {
            if (parse_u64(a, v, 0, 1000, &u))
                return 2;
            o.negative = (uint32_t)u;
        } else if (!strcmp(a, "--min-count")) {
            if (parse_u64(a, v, 1, UINT64_MAX, &u))
                return 2;
            o.min_count = u;
        } else if (!strcmp(a, "--epochs") || !strcmp(a, "--iter")) {
            if (parse_u64(a, v, 1, 10000, &u))
                return 2;
            o.epochs = (uint32_t)u;
        } else if (!strcmp(a, "--threads")) {
            if (parse_u64(a, v, 1, 1024, &u))
                return 2;
            o.threads = (uint32_t)u;
        } else if (!strcmp(a, "--seed")) {
            if (parse_u64(a, v, 0, UINT64_MAX, &u))
                return 2;
            o.seed = u;
        } else if (!strcmp(a, "--sample")) {
            if (parse_double(a, v, &o.sample))
                return 2;
        } else if (!strcmp(a, "--alpha")) {
            if (parse_double(a, v, &o.alpha))
                return 2;
        } else if (!strcmp(a, "--punct")) {
            if (!strcmp(v, "split"))
                o.punct = SEMD_PUNCT_SPLIT;
            else if (!strcmp(v, "drop"))
                o.punct = SEMD_PUNCT_DROP;
            else if (!strcmp(v, "keep"))
                o.punct = SEMD_PUNCT_KEEP;
            else {
                fprintf(stderr, "semd train: --punct wants split, drop or "
                                "keep, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--context")) {
            if (!strcmp(v, "zero"))
                o.ctx_init = SEMD_CTX_ZERO;
            else if (!strcmp(v, "scaled"))
                o.ctx_init = SEMD_CTX_SCALED;
            else {
                fprintf(stderr, "semd train: --context wants zero or "
                                "scaled, got '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "semd train: unknown option '%s'\n\n%s", a,
                    usage_text);
            return 2;
        }
    }
    if (!corpus || !out) {
        fputs(usage_text, stderr);
        return 2;
    }

    struct semd_err err = {0};
    struct semd_model *init = NULL;
    if (init_path && semd_model_open(&init, init_path, &err) != 0) {
        fprintf(stderr, "semd train: %s\n", err.msg);
        return 1;
    }
    struct semd_trainer *t;
    int rc = semd_trainer_new(&t, &o, init, &err);
    semd_model_close(init);
    if (rc != 0) {
        fprintf(stderr, "semd train: %s\n", err.msg);
        return 1;
    }

    struct reporter rep = {.t = t};
    pthread_t th;
    int reporting = 0;
    if (progress) {
        pthread_mutex_init(&rep.lock, NULL);
        pthread_cond_init(&rep.cond, NULL);
        reporting = pthread_create(&th, NULL, reporter_main, &rep) == 0;
    }
    double t0 = now_s();
    rc = semd_trainer_train_file(t, corpus, &err);
    double t1 = now_s();
    if (reporting) {
        pthread_mutex_lock(&rep.lock);
        rep.stop = 1;
        pthread_cond_signal(&rep.cond);
        pthread_mutex_unlock(&rep.lock);
        pthread_join(th, NULL);
        print_progress(t, "\n");
    }
    if (rc != 0) {
        fprintf(stderr, "semd train: %s\n", err.msg);
        semd_trainer_free(t);
        return 1;
    }
    struct semd_train_stats st;
    semd_trainer_stats(t, &st);
    const char *base = strrchr(corpus, '/');
    struct semd_writer_opts wo = {"semd-train", base ? base + 1 : corpus, 0};
    rc = semd_trainer_write(t, out, &wo, &err);
    double t2 = now_s();
    if (rc != 0) {
        fprintf(stderr, "semd train: %s\n", err.msg);
        semd_trainer_free(t);
        return 1;
    }
    double train_s = st.run_done && st.words_per_sec > 0
                         ? (double)st.run_done / st.words_per_sec
                         : 0;
    fprintf(stderr,
            "semd train: %llu rows (%llu new), %llu words in %.2f s of "
            "training (%.0f words/s, %u threads), loss %.4f; counting "
            "%.2f s, writing %.2f s; wrote %s\n",
            (unsigned long long)st.rows, (unsigned long long)st.new_rows,
            (unsigned long long)st.run_done, train_s, st.words_per_sec,
            o.threads, st.loss, (t1 - t0) - train_s, t2 - t1, out);
    semd_trainer_free(t);
    return 0;
}
