/*
 * cmd_tokens.c - `semd tokens-report`: the health report of a model's
 * rows (outlying norms, near-duplicate rows, tokens the tokenizer never
 * produces; see semd_tokens_report in semd.h) as a table or as JSON. The
 * JSON comes from tokens_json.c, as GET /v1/tokens/report serves it. One
 * thread.
 */
#include "semd.h"

#include "commands.h"
#include "serve.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: semd tokens-report MODEL [--json] [--exact] [--max N]\n"
    "                          [--z Z] [--cosine C]\n"
    "\n"
    "Reports rows whose norm stands out (robust z-score of the log norm:\n"
    "median and median absolute deviation), zero rows, pairs of rows with\n"
    "cosine >= C (near-duplicates) and, when the model carries a "
    "tokenizer,\n"
    "tokens that tokenizing their own text does not give back "
    "(unreachable).\n"
    "\n"
    "  --json      one JSON object\n"
    "  --exact     near-duplicates by exact search of every row's nearest\n"
    "              (slow: rows^2 x dims) instead of hashing\n"
    "  --max N     entries listed per list (default 100; counts are "
    "complete)\n"
    "  --z Z       flag norms with |z| > Z (default 3.5)\n"
    "  --cosine C  near-duplicates from cosine C (default 0.99)\n"
    "\n"
    "semd serve answers GET /v1/tokens/report?max=N&z=Z&cosine=C with the\n"
    "same JSON.\n";

/* Room for any row shown by semd_model_display_word. */
#define SHOWN_MAX (3 * SEMD_MAX_WORD + 1)

/* A row for people: "#id \" king\"" on a tokenizer model, else the word. */
static void
print_row(const struct semd_model *m, uint64_t row)
{
    char text[SHOWN_MAX];
    uint32_t id = UINT32_MAX;
    if (semd_model_display_word(m, row, text, sizeof text, &id) != 0) {
        printf("row %llu", (unsigned long long)row);
        return;
    }
    json_t *q = json_string(text);
    char *qs = q ? json_dumps(q, JSON_ENCODE_ANY) : NULL;
    if (id != UINT32_MAX)
        printf("#%u %s", id, qs ? qs : text);
    else
        printf("%s (row %llu)", qs ? qs : text, (unsigned long long)row);
    free(qs);
    json_decref(q);
}

static void
print_norms(const struct semd_model *m, const char *what,
            const struct semd_norm_flag *f, size_t n, uint64_t count)
{
    printf("\n%s: %llu\n", what, (unsigned long long)count);
    for (size_t i = 0; i < n; i++) {
        printf("  norm %-10.4g z %8.2f  ", (double)f[i].norm,
               (double)f[i].z);
        print_row(m, f[i].row);
        printf("\n");
    }
    if (n < count)
        printf("  ... %llu more\n", (unsigned long long)(count - n));
}

static void
report_text(const struct semd_model *m, const struct semd_tokens_report *r)
{
    printf("rows %llu, dims %u\n", (unsigned long long)r->rows, r->dims);
    printf("norms: median %.4g, min %.4g, max %.4g; flagged when the "
           "robust z of the\nlog norm (MAD %.4g) is beyond +-%g\n",
           r->norm_median, (double)r->norm_min, (double)r->norm_max,
           r->log_norm_mad, r->z_limit);
    print_norms(m, "zero rows", r->zero, r->zero_listed, r->n_zero);
    print_norms(m, "low norms", r->low, r->low_listed, r->n_low);
    print_norms(m, "high norms", r->high, r->high_listed, r->n_high);
    printf("\nnear-duplicate pairs (cosine >= %g, %s, %llu pairs scored): "
           "%llu\n",
           r->dup_cosine, r->dup_exact ? "exact" : "hashing",
           (unsigned long long)r->dup_scored, (unsigned long long)r->n_dups);
    for (size_t i = 0; i < r->dups_listed; i++) {
        printf("  %.6f  ", (double)r->dups[i].cosine);
        print_row(m, r->dups[i].a);
        printf("  ~  ");
        print_row(m, r->dups[i].b);
        printf("\n");
    }
    if (r->dups_listed < r->n_dups)
        printf("  ... %llu more\n",
               (unsigned long long)(r->n_dups - r->dups_listed));
    if (!r->has_tokenizer) {
        printf("\nunreachable tokens: the model has no tokenizer\n");
        return;
    }
    const struct semd_tokenizer *t = semd_model_tokenizer(m);
    printf("\nunreachable tokens (tokenizing the token's own bytes does not "
           "give it): %llu of %u\n  %llu made by no merge, %llu without a "
           "row in the model\n",
           (unsigned long long)r->n_unreachable, r->tokens,
           (unsigned long long)r->n_no_merge,
           (unsigned long long)r->n_no_row);
    for (size_t i = 0; i < r->unreachable_listed; i++) {
        const struct semd_unreachable *u = &r->unreachable[i];
        const char *tok = semd_tokenizer_token(t, u->id, NULL);
        json_t *q = json_string(tok ? tok : "");
        char *qs = q ? json_dumps(q, JSON_ENCODE_ANY) : NULL;
        printf("  #%-6u %-9s %s ->", u->id, tokens_unreach_reason(u->reason),
               qs ? qs : "?");
        for (uint32_t k = 0; k < u->n_ids && k < SEMD_UNREACH_IDS; k++)
            printf(" %u", u->ids[k]);
        if (u->n_ids > SEMD_UNREACH_IDS)
            printf(" ...");
        printf("\n");
        free(qs);
        json_decref(q);
    }
    if (r->unreachable_listed < r->n_unreachable)
        printf("  ... %llu more\n",
               (unsigned long long)(r->n_unreachable -
                                    r->unreachable_listed));
}

static int
parse_double(const char *s, double *out)
{
    char *end;
    if (!s || !*s)
        return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int
cmd_tokens_report(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    struct semd_tokens_report_opts o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--exact")) {
            o.exact = 1;
        } else if (!strcmp(a, "--max")) {
            if (parse_double(v, &x) || x < 1 || x > 1e9 || x != (size_t)x) {
                fprintf(stderr, "semd tokens-report: --max needs a positive "
                        "whole number, got '%s'\n", v ? v : "");
                return 2;
            }
            o.max_list = (size_t)x;
            i++;
        } else if (!strcmp(a, "--z")) {
            if (parse_double(v, &x) || !(x > 0) || x > 1e6) {
                fprintf(stderr, "semd tokens-report: --z needs a positive "
                        "number, got '%s'\n", v ? v : "");
                return 2;
            }
            o.z_limit = x;
            i++;
        } else if (!strcmp(a, "--cosine")) {
            if (parse_double(v, &x) || !(x > 0 && x <= 1)) {
                fprintf(stderr, "semd tokens-report: --cosine needs a "
                        "number in (0, 1], got '%s'\n", v ? v : "");
                return 2;
            }
            o.dup_cosine = x;
            i++;
        } else if (a[0] == '-' || path) {
            fprintf(stderr, "semd tokens-report: unexpected argument "
                    "'%s'\n\n%s", a, usage_text);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path) {
        fputs(usage_text, stderr);
        return 2;
    }
    struct semd_err err = {0};
    struct semd_model *m = NULL;
    struct semd_index *ix = NULL;
    struct semd_tokens_report r = {0};
    int status = 1;
    if (semd_model_open(&m, path, &err) != 0 ||
        semd_index_open(&ix, m, NULL, &err) != 0 ||
        semd_tokens_report(ix, &o, &r, &err) != 0) {
        fprintf(stderr, "semd tokens-report: %s\n", err.msg);
        goto out;
    }
    if (json) {
        json_t *doc = tokens_report_json(m, &r);
        char *s = doc ? json_dumps(doc, TOKENS_JSON_FLAGS) : NULL;
        if (!s) {
            fprintf(stderr, "semd tokens-report: out of memory\n");
            json_decref(doc);
            goto out;
        }
        puts(s);
        free(s);
        json_decref(doc);
    } else {
        report_text(m, &r);
    }
    status = 0;
out:
    semd_tokens_report_release(&r);
    semd_index_close(ix);
    semd_model_close(m);
    return status;
}
