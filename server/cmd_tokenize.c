/*
 * cmd_tokenize.c - `semd tokenize`: the tokens of a text, by the tokenizer
 * inside a model file or by a bare vocab.json + merges.txt (or
 * tokenizer.json). One thread; everything it allocates is freed before it
 * returns.
 */
#include "semd.h"

#include "commands.h"
#include "serve.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: semd tokenize MODEL [TEXT] [--json] [--norms]\n"
    "       semd tokenize --vocab VOCAB [--merges MERGES] [TEXT] [--json]\n"
    "\n"
    "Splits TEXT (or standard input) into GPT-2 byte-level BPE tokens: id,\n"
    "byte offsets and the text of each. MODEL must carry a tokenizer (semd\n"
    "convert --vocab/--merges). VOCAB is a vocab.json with MERGES a\n"
    "merges.txt, or a tokenizer.json alone.\n"
    "  --json   {\"tokens\":[{\"id\":..,\"text\":..,\"token\":..,"
    "\"start\":..,\"end\":..}],\"count\":..},\n"
    "           as POST /v1/tokenize answers\n"
    "  --norms  each token's row norm too (MODEL only)\n";

static char *
read_stdin(size_t *len)
{
    size_t cap = 65536, n = 0, k;
    char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += k;
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) {
                free(buf);
                return NULL;
            }
            buf = b;
        }
    }
    *len = n;
    return buf;
}

/* Prints the tokens of text: the JSON of tokens_json (as POST
 * /v1/tokenize answers it), or a table made from it. m (NULL: none) adds
 * each token's row norm. */
static int
print_tokens(const struct semd_tokenizer *t, const struct semd_model *m,
             const char *text, size_t len, int json)
{
    json_t *doc;
    struct semd_err err = {0};
    if (tokens_json(t, m, text, len, &doc, &err) != 0) {
        fprintf(stderr, "semd tokenize: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (json) {
        char *s = json_dumps(doc, TOKENS_JSON_FLAGS);
        if (s)
            puts(s);
        else
            rc = 1;
        free(s);
    } else {
        size_t i;
        json_t *o;
        json_array_foreach(json_object_get(doc, "tokens"), i, o) {
            char *qs = json_dumps(json_object_get(o, "text"),
                                  JSON_ENCODE_ANY);
            printf("%6lld  %6lld %6lld  %s",
                   (long long)json_integer_value(json_object_get(o, "id")),
                   (long long)json_integer_value(json_object_get(o, "start")),
                   (long long)json_integer_value(json_object_get(o, "end")),
                   qs ? qs : "?");
            json_t *norm = json_object_get(o, "norm");
            if (json_is_number(norm))
                printf("  norm %.6g", json_number_value(norm));
            else if (norm)
                printf("  norm -");
            printf("\n");
            free(qs);
        }
    }
    if (rc)
        fprintf(stderr, "semd tokenize: out of memory\n");
    json_decref(doc);
    return rc;
}

int
cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *vocab = NULL, *merges = NULL, *text = NULL;
    int json = 0, norms = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--norms")) {
            norms = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        } else if ((!strcmp(a, "--vocab") || !strcmp(a, "--merges")) &&
                   i + 1 < argc) {
            *(a[2] == 'v' ? &vocab : &merges) = argv[++i];
        } else if (!strcmp(a, "--")) {
            if (i + 1 < argc && !text)
                text = argv[++i];
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "semd tokenize: unknown option '%s'\n", a);
            return 2;
        } else if (!model && !vocab) {
            model = a;
        } else if (!text) {
            text = a;
        } else {
            fprintf(stderr, "semd tokenize: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if ((!model && !vocab) || (model && vocab) || (merges && !vocab)) {
        fputs(usage_text, stderr);
        return 2;
    }
    if (norms && !model) {
        fprintf(stderr, "semd tokenize: --norms needs a MODEL (a bare "
                "tokenizer has no rows)\n");
        return 2;
    }
    struct semd_err err = {0};
    struct semd_model *m = NULL;
    struct semd_tokenizer *own = NULL;
    const struct semd_tokenizer *t;
    if (model) {
        if (semd_model_open(&m, model, &err) != 0) {
            fprintf(stderr, "semd tokenize: %s\n", err.msg);
            return 1;
        }
        t = semd_model_tokenizer(m);
        if (!t) {
            fprintf(stderr,
                    "semd tokenize: %s: the model has no tokenizer (convert "
                    "it with --vocab and --merges)\n",
                    model);
            semd_model_close(m);
            return 1;
        }
    } else {
        if (semd_tokenizer_load(&own, vocab, merges, &err) != 0) {
            fprintf(stderr, "semd tokenize: %s\n", err.msg);
            return 1;
        }
        t = own;
    }
    int rc;
    if (text) {
        rc = print_tokens(t, norms ? m : NULL, text, strlen(text), json);
    } else {
        size_t len;
        char *in = read_stdin(&len);
        if (!in) {
            fprintf(stderr, "semd tokenize: out of memory\n");
            rc = 1;
        } else {
            rc = print_tokens(t, norms ? m : NULL, in, len, json);
        }
        free(in);
    }
    semd_tokenizer_free(own);
    semd_model_close(m);
    return rc;
}
