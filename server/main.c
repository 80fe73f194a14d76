/*
 * main.c - the semd binary: dispatches to a subcommand from one table.
 * The only place in semd that may exit.
 */
#include "semd.h"

#include "commands.h"

#include <stdio.h>
#include <string.h>

#ifndef SEMD_VERSION
#define SEMD_VERSION "0.1.0"
#endif

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"serve", cmd_serve, "serve a model over HTTP (JSON API, openapi.yaml)"},
    {"info", cmd_info, "show a model file's header (--json)"},
    {"verify", cmd_verify, "check every checksum of a model file"},
    {"convert", cmd_convert,
     "convert word2vec, GloVe, fastText, safetensors, wink JSON"},
    {"export", cmd_export, "write a model as word2vec text or binary"},
    {"query", cmd_query, "nearest words of a word or an expression"},
    {"tokenize", cmd_tokenize, "split text into BPE tokens (--json)"},
    {"tokens-report", cmd_tokens_report,
     "outlying norms, duplicate rows, unreachable tokens"},
    {"eval", cmd_eval, "analogy accuracy and word-pair correlations"},
    {"train", cmd_train, "train skip-gram vectors on a text file"},
};

const char *
main_thread_policy(int pool_threads)
{
    /* Requests already run on pool_threads threads: a BLAS or OpenMP
     * team inside each would oversubscribe the cores. One pool thread
     * (or a batch command) keeps the libraries' own threads. */
    if (pool_threads > 1) {
        semd_set_threads(1, 1);
        return "openblas_threads=1 omp_threads=1";
    }
    return "openblas_threads=default omp_threads=default";
}

static void
usage(FILE *f)
{
    fprintf(f, "semd %s - serve the map of meaning in an embedding matrix\n\n"
               "usage: semd COMMAND [ARGS]   (semd COMMAND --help for more)\n\n"
               "commands:\n",
            SEMD_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("semd %s\n", SEMD_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "semd: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
