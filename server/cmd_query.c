/*
 * cmd_query.c - `semd query` (neighbours and analogies from the command
 * line, one-shot or one query per line of stdin like word2vec's
 * `distance`) and `semd eval` (the analogy test and word-pair
 * correlations, gensim's numbers).
 *
 * Output is an aligned table for people, or JSON with --json. On a model
 * carrying a tokenizer, words are tokens: they show as the text they stand
 * for, quoted (spaces matter: " king"), with their ids. The model and the
 * index are opened once per process; single-threaded.
 */
#include "semd.h"

#include "commands.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

static int
parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int
parse_method(const char *s, int *out)
{
    if (!s)
        return -1;
    if (!strcmp(s, "3cosadd"))
        *out = SEMD_3COSADD;
    else if (!strcmp(s, "3cosmul"))
        *out = SEMD_3COSMUL;
    else
        return -1;
    return 0;
}

static const char *
method_name(int m)
{
    return m == SEMD_3COSMUL ? "3cosmul" : "3cosadd";
}

/* Display width of UTF-8 text: code points, not bytes. */
static int
width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* Room for any row shown by semd_model_display_word. */
#define SHOWN_MAX (3 * SEMD_MAX_WORD + 1)

/* A row as people read it: its word, or on a tokenizer model its token's
 * text, JSON-quoted so that spaces show, and its id: "\" king\" #3364". */
static const char *
show(const struct semd_model *m, uint64_t row, char *buf, size_t cap)
{
    if (!semd_model_tokenizer(m))
        return semd_model_word(m, row, NULL);
    char text[SHOWN_MAX];
    uint32_t id;
    if (semd_model_display_word(m, row, text, sizeof text, &id) != 0)
        return semd_model_word(m, row, NULL);
    json_t *q = json_string(text);
    char *qs = q ? json_dumps(q, JSON_ENCODE_ANY) : NULL;
    if (id == UINT32_MAX)
        snprintf(buf, cap, "%s", qs ? qs : text);
    else
        snprintf(buf, cap, "%s #%u", qs ? qs : text, id);
    free(qs);
    json_decref(q);
    return buf;
}

/* Adds "id" and "text" of a row's token to o on a tokenizer model. */
static void
add_token_json(const struct semd_model *m, uint64_t row, json_t *o)
{
    char text[SHOWN_MAX];
    uint32_t id;
    if (!semd_model_tokenizer(m) ||
        semd_model_display_word(m, row, text, sizeof text, &id) != 0 ||
        id == UINT32_MAX)
        return;
    json_object_set_new(o, "id", json_integer(id));
    json_object_set_new(o, "text", json_string(text));
}

static void
print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
                              JSON_REAL_PRECISION(8));
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(o);
    fflush(stdout);
}

/* Opens the model and the index, reporting errors as `semd CMD: ...`. */
static int
open_all(const char *cmd, const char *path, const char *factory,
         struct semd_model **m, struct semd_index **ix)
{
    struct semd_err err = {0};
    if (semd_model_open(m, path, &err) != 0) {
        fprintf(stderr, "semd %s: %s\n", cmd, err.msg);
        return 1;
    }
    struct semd_index_opts o = {.factory = factory, .progress = isatty(2)};
    if (semd_index_open(ix, *m, &o, &err) != 0) {
        fprintf(stderr, "semd %s: %s\n", cmd, err.msg);
        semd_model_close(*m);
        *m = NULL;
        return 1;
    }
    return 0;
}

/* --------------------------------------------------------------- query */

struct qopts {
    uint32_t k;
    uint64_t restrict_rows;
    int method; /* -1: neighbours unless the expression is an analogy */
    int json;
};

static const char query_usage[] =
    "usage: semd query MODEL [QUERY...] [-k N] [--restrict N]\n"
    "                  [--method 3cosadd|3cosmul] [--index FACTORY] "
    "[--json]\n\n"
    "Prints the nearest words of QUERY: a word, or an expression such as\n"
    "\"king - man + woman\" or \"0.5*paris + berlin\" (whitespace between "
    "terms\n"
    "means +; quote words holding + - * with double quotes). Several QUERY\n"
    "arguments are joined with spaces. Without QUERY, reads one query a "
    "line\n"
    "from stdin. Expressions of several terms are answered as analogies "
    "(input\n"
    "words excluded) with an explanation; --method picks 3CosAdd (default) "
    "or\n"
    "3CosMul.\n\n"
    "  -k N            neighbours to show (default 10)\n"
    "  --restrict N    search only the N most frequent words\n"
    "  --index F       FAISS factory string, e.g. HNSW32 (default: exact)\n"
    "  --json          {\"query\":...,\"neighbors\":[{\"word\":...,"
    "\"score\":...}]}\n"
    "                  (a tokenizer model's rows add \"id\" and \"text\": "
    "\" king\")\n";

static json_t *
terms_json(const struct semd_model *m, const struct semd_expr *e,
           const struct semd_term_info *info)
{
    json_t *a = json_array();
    for (size_t i = 0; i < e->n_terms; i++) {
        json_t *t = json_pack("{s:s%, s:f, s:s}", "word", e->terms[i].word,
                              e->terms[i].len, "weight",
                              (double)e->terms[i].weight, "provenance",
                              semd_prov_name(info[i].prov));
        if (info[i].row != UINT64_MAX)
            json_object_set_new(t, "resolved",
                                json_string(semd_model_word(m, info[i].row,
                                                            NULL)));
        if (info[i].n_tokens) {
            json_t *toks = json_array();
            for (uint32_t k = 0; k < info[i].n_tokens; k++) {
                json_t *x = json_object();
                add_token_json(m, info[i].token_rows[k], x);
                json_array_append_new(toks, x);
            }
            json_object_set_new(t, "tokens", toks);
        }
        json_array_append_new(a, t);
    }
    return a;
}

/* Runs one query; prints its answer or its error. 0 on success. */
static int
run_query(const struct semd_index *ix, const char *text, size_t len,
          const struct qopts *o)
{
    const struct semd_model *m = semd_index_model(ix);
    struct semd_err err = {0};
    struct semd_expr e = {0};
    struct semd_term_info info[SEMD_MAX_TERMS];
    struct semd_explain ex;
    struct semd_hit *hits = NULL;
    uint32_t n = 0;
    char sb[SHOWN_MAX + 32];
    int rc = semd_expr_parse(&e, text, len, &err);
    if (rc)
        goto fail;
    int analogy = o->method >= 0 || e.n_terms > 1;
    int method = o->method >= 0 ? o->method : SEMD_3COSADD;
    struct semd_search s = {.k = o->k, .restrict_rows = o->restrict_rows};
    hits = malloc((o->k ? o->k : 1) * sizeof *hits);
    if (!hits) {
        rc = semd_err_set(&err, SEMD_ENOMEM, "out of memory");
        goto fail;
    }
    if (analogy)
        rc = semd_analogy(ix, e.terms, e.n_terms, method, &s, hits, &n, &ex,
                          info, &err);
    else
        rc = semd_neighbors(ix, e.terms, e.n_terms, &s, 0, hits, &n, info,
                            &err);
    if (rc)
        goto fail;
    if (o->json) {
        json_t *nb = json_array();
        for (uint32_t i = 0; i < n; i++) {
            json_t *x = json_pack("{s:s, s:f}", "word",
                                  semd_model_word(m, hits[i].row, NULL),
                                  "score", (double)hits[i].score);
            add_token_json(m, hits[i].row, x);
            json_array_append_new(nb, x);
        }
        json_t *out = json_pack("{s:s%, s:s, s:o, s:o}", "query", text, len,
                                "method",
                                analogy ? method_name(method) : "neighbors",
                                "terms", terms_json(m, &e, info),
                                "neighbors", nb);
        if (analogy && n > 0) {
            json_t *tc = json_array();
            for (size_t i = 0; i < e.n_terms; i++)
                json_array_append_new(tc, json_real(ex.term_cos[i]));
            json_t *x = json_pack(
                "{s:s, s:o, s:I, s:f, s:b}", "answer",
                semd_model_word(m, hits[0].row, NULL), "term_cosines", tc,
                "rank_with_inputs", (json_int_t)ex.rank_with_inputs, "margin",
                (double)ex.margin, "methods_agree", ex.methods_agree);
            if (ex.other_row != UINT64_MAX) {
                json_object_set_new(
                    x, "other_method",
                    json_string(method_name(method == SEMD_3COSADD
                                                ? SEMD_3COSMUL
                                                : SEMD_3COSADD)));
                json_object_set_new(
                    x, "other_answer",
                    json_string(semd_model_word(m, ex.other_row, NULL)));
                json_object_set_new(x, "other_score",
                                    json_real(ex.other_score));
            }
            json_object_set_new(out, "explanation", x);
        }
        print_json(out);
    } else {
        printf("query: %.*s", (int)len, text);
        if (analogy)
            printf("   (%s)", method_name(method));
        printf("\nterms:");
        for (size_t i = 0; i < e.n_terms; i++) {
            printf(" %s%.*s", e.terms[i].weight < 0 ? "-" : "+",
                   (int)e.terms[i].len, e.terms[i].word);
            if (e.terms[i].weight != 1 && e.terms[i].weight != -1)
                printf("*%g", (double)(e.terms[i].weight < 0
                                           ? -e.terms[i].weight
                                           : e.terms[i].weight));
            if (info[i].prov == SEMD_PROV_CASE_FOLDED)
                printf(" (as \"%s\")", semd_model_word(m, info[i].row, NULL));
            if (info[i].n_tokens && info[i].prov != SEMD_PROV_EXACT) {
                printf(" (%s", info[i].prov == SEMD_PROV_TOKEN_MEAN
                                   ? "mean of"
                                   : "as");
                for (uint32_t k = 0; k < info[i].n_tokens; k++)
                    printf(" %s", show(m, info[i].token_rows[k], sb,
                                       sizeof sb));
                printf(")");
            }
        }
        int w = 4;
        for (uint32_t i = 0; i < n; i++) {
            int ww = width(show(m, hits[i].row, sb, sizeof sb));
            w = ww > w ? ww : w;
        }
        printf("\n\n  rank  %-*s  score\n", w,
               semd_model_tokenizer(m) ? "token" : "word");
        for (uint32_t i = 0; i < n; i++) {
            const char *word = show(m, hits[i].row, sb, sizeof sb);
            printf("  %4u  %s%*s  %.4f\n", i + 1, word,
                   w - width(word), "", (double)hits[i].score);
        }
        if (analogy && n > 0) {
            printf("\nwhy %s:", show(m, hits[0].row, sb, sizeof sb));
            for (size_t i = 0; i < e.n_terms; i++)
                printf(" cos(%.*s)=%.4f", (int)e.terms[i].len,
                       e.terms[i].word, (double)ex.term_cos[i]);
            printf("\n  rank %llu if the input words were allowed; "
                   "margin %.4f over the runner-up\n",
                   (unsigned long long)ex.rank_with_inputs,
                   (double)ex.margin);
            if (ex.other_row != UINT64_MAX)
                printf("  %s %s (%s answers %s)\n",
                       method_name(method == SEMD_3COSADD ? SEMD_3COSMUL
                                                          : SEMD_3COSADD),
                       ex.methods_agree ? "agrees" : "disagrees",
                       method_name(method == SEMD_3COSADD ? SEMD_3COSMUL
                                                          : SEMD_3COSADD),
                       show(m, ex.other_row, sb, sizeof sb));
        }
        printf("\n");
        fflush(stdout);
    }
    free(hits);
    semd_expr_release(&e);
    return 0;
fail:
    if (o->json) {
        json_t *words = json_array();
        for (size_t i = 0; rc == SEMD_ENOWORD && i < e.n_terms; i++)
            if (info[i].prov == SEMD_PROV_MISSING)
                json_array_append_new(words,
                                      json_stringn(e.terms[i].word,
                                                   e.terms[i].len));
        json_t *x = json_pack("{s:s, s:s}", "code",
                              rc == SEMD_ENOWORD ? "unknown_word"
                                                 : "bad_request",
                              "message", err.msg);
        if (json_array_size(words))
            json_object_set(x, "words", words);
        json_decref(words);
        json_t *out = json_pack("{s:s%, s:o}", "query", text ? text : "",
                                text ? len : 0, "error", x);
        print_json(out);
    }
    fprintf(stderr, "semd query: %s\n", err.msg);
    free(hits);
    semd_expr_release(&e);
    return 1;
}

int
cmd_query(int argc, char **argv)
{
    struct qopts o = {.k = 10, .method = -1};
    const char *path = NULL, *factory = NULL;
    char *text = NULL;
    size_t tlen = 0;
    int status = 2, ended = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u;
        if (!ended && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            fputs(query_usage, stdout);
            status = 0;
            goto out;
        } else if (!ended && !strcmp(a, "--")) {
            ended = 1;
        } else if (!ended && !strcmp(a, "--json")) {
            o.json = 1;
        } else if (!ended && (!strcmp(a, "-k") || !strcmp(a, "--k"))) {
            if (parse_u64(v, &u) || u < 1 || u > 1000000) {
                fprintf(stderr, "semd query: -k needs a number from 1 to "
                                "1000000, got '%s'\n",
                        v ? v : "");
                goto out;
            }
            o.k = (uint32_t)u;
            i++;
        } else if (!ended && !strcmp(a, "--restrict")) {
            if (parse_u64(v, &u) || u < 1) {
                fprintf(stderr, "semd query: --restrict needs a positive "
                                "number, got '%s'\n",
                        v ? v : "");
                goto out;
            }
            o.restrict_rows = u;
            i++;
        } else if (!ended && !strcmp(a, "--method")) {
            if (parse_method(v, &o.method)) {
                fprintf(stderr, "semd query: --method is 3cosadd or "
                                "3cosmul, got '%s'\n",
                        v ? v : "");
                goto out;
            }
            i++;
        } else if (!ended && !strcmp(a, "--index")) {
            if (!v) {
                fprintf(stderr, "semd query: --index needs a factory "
                                "string\n");
                goto out;
            }
            factory = v;
            i++;
        } else if (!ended && a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "semd query: unknown option '%s'\n\n%s", a,
                    query_usage);
            goto out;
        } else if (!path) {
            path = a;
        } else {
            size_t al = strlen(a);
            char *nt = realloc(text, tlen + al + 2);
            if (!nt) {
                fprintf(stderr, "semd query: out of memory\n");
                status = 1;
                goto out;
            }
            text = nt;
            if (tlen)
                text[tlen++] = ' ';
            memcpy(text + tlen, a, al + 1);
            tlen += al;
        }
    }
    if (!path) {
        fputs(query_usage, stderr);
        goto out;
    }
    struct semd_model *m = NULL;
    struct semd_index *ix = NULL;
    if (open_all("query", path, factory, &m, &ix)) {
        status = 1;
        goto out;
    }
    if (o.k > semd_model_rows(m)) {
        fprintf(stderr, "semd query: -k %u exceeds the vocabulary of %llu "
                        "words\n",
                o.k, (unsigned long long)semd_model_rows(m));
        status = 2;
    } else if (text) {
        status = run_query(ix, text, tlen, &o);
    } else {
        /* one query a line, like word2vec's distance */
        int tty = isatty(0), failed = 0;
        char *line = NULL;
        size_t cap = 0;
        ssize_t got;
        for (;;) {
            if (tty) {
                fputs("Enter word or expression (EXIT to break): ", stdout);
                fflush(stdout);
            }
            if ((got = getline(&line, &cap, stdin)) < 0)
                break;
            while (got > 0 &&
                   (line[got - 1] == '\n' || line[got - 1] == '\r'))
                line[--got] = '\0';
            if (!strcmp(line, "EXIT"))
                break;
            size_t j = 0;
            while (j < (size_t)got && (line[j] == ' ' || line[j] == '\t'))
                j++;
            if (j == (size_t)got)
                continue; /* blank lines are not queries */
            failed |= run_query(ix, line, (size_t)got, &o);
        }
        free(line);
        status = failed ? 1 : 0;
    }
    semd_index_close(ix);
    semd_model_close(m);
out:
    free(text);
    return status;
}

/* ---------------------------------------------------------------- eval */

static const char eval_usage[] =
    "usage: semd eval MODEL [--analogies FILE] [--pairs FILE] [--restrict N]"
    "\n                 [--pairs-restrict N] [--method 3cosadd|3cosmul] "
    "[--index F]\n"
    "                 [--json]\n\n"
    "Scores the model as gensim's evaluate_word_analogies and\n"
    "evaluate_word_pairs do (case-insensitive): accuracy per section of a\n"
    "questions-words file, and Spearman and Pearson correlations with the\n"
    "human scores of a word-pair file (tab or space separated, # comments).\n"
    "\n"
    "  --restrict N        analogies use the N most frequent words "
    "(default 300000)\n"
    "  --pairs-restrict N  word pairs likewise (default 300000)\n"
    "  --method M          3cosadd (default) or 3cosmul\n";

static double
ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0.0;
}

int
cmd_eval(int argc, char **argv)
{
    const char *path = NULL, *analogies = NULL, *pairs = NULL;
    const char *factory = NULL;
    uint64_t restrict_rows = 300000, pairs_restrict = 300000;
    int method = SEMD_3COSADD, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(eval_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--analogies") || !strcmp(a, "--pairs") ||
                   !strcmp(a, "--index")) {
            if (!v) {
                fprintf(stderr, "semd eval: %s needs a value\n", a);
                return 2;
            }
            *(a[2] == 'a' ? &analogies : a[2] == 'p' ? &pairs : &factory) =
                v;
            i++;
        } else if (!strcmp(a, "--restrict") ||
                   !strcmp(a, "--pairs-restrict")) {
            uint64_t u;
            if (parse_u64(v, &u) || u < 1) {
                fprintf(stderr, "semd eval: %s needs a positive number, got "
                                "'%s'\n",
                        a, v ? v : "");
                return 2;
            }
            *(a[2] == 'r' ? &restrict_rows : &pairs_restrict) = u;
            i++;
        } else if (!strcmp(a, "--method")) {
            if (parse_method(v, &method)) {
                fprintf(stderr, "semd eval: --method is 3cosadd or 3cosmul, "
                                "got '%s'\n",
                        v ? v : "");
                return 2;
            }
            i++;
        } else if (a[0] == '-' || path) {
            fprintf(stderr, "semd eval: unexpected argument '%s'\n\n%s", a,
                    eval_usage);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path || (!analogies && !pairs)) {
        fputs(eval_usage, stderr);
        return 2;
    }
    struct semd_model *m = NULL;
    struct semd_index *ix = NULL;
    if (open_all("eval", path, factory, &m, &ix))
        return 1;
    struct semd_err err = {0};
    struct semd_eval_analogies an = {0};
    struct semd_eval_pairs pr = {0};
    int status = 0;
    json_t *out = json_object();
    if (analogies) {
        if (semd_eval_analogies(ix, analogies, restrict_rows, method, &an,
                                &err) != 0) {
            fprintf(stderr, "semd eval: %s\n", err.msg);
            status = 1;
            goto done;
        }
        if (json) {
            json_t *secs = json_object();
            for (size_t i = 0; i < an.n_sections; i++) {
                const struct semd_eval_section *s = &an.sections[i];
                json_object_set_new(
                    secs, s->name,
                    json_pack("{s:I, s:I, s:I, s:f}", "correct",
                              (json_int_t)s->correct, "evaluated",
                              (json_int_t)s->evaluated, "questions",
                              (json_int_t)s->questions, "accuracy",
                              ratio(s->correct, s->evaluated)));
            }
            json_object_set_new(
                out, "analogies",
                json_pack("{s:s, s:I, s:I, s:I, s:I, s:f, s:o}", "method",
                          method_name(method), "restrict",
                          (json_int_t)restrict_rows, "correct",
                          (json_int_t)an.correct, "evaluated",
                          (json_int_t)an.evaluated, "questions",
                          (json_int_t)an.questions, "accuracy",
                          ratio(an.correct, an.evaluated), "sections", secs));
        } else {
            int w = 5;
            for (size_t i = 0; i < an.n_sections; i++) {
                int ww = width(an.sections[i].name);
                w = ww > w ? ww : w;
            }
            printf("analogies: %s (%s, the %llu most frequent words)\n\n",
                   analogies, method_name(method),
                   (unsigned long long)restrict_rows);
            printf("  %-*s  %8s  %9s  %9s  %8s\n", w, "section", "correct",
                   "evaluated", "questions", "accuracy");
            for (size_t i = 0; i < an.n_sections; i++) {
                const struct semd_eval_section *s = &an.sections[i];
                printf("  %s%*s  %8llu  %9llu  %9llu  %7.1f%%\n", s->name,
                       w - width(s->name), "",
                       (unsigned long long)s->correct,
                       (unsigned long long)s->evaluated,
                       (unsigned long long)s->questions,
                       100 * ratio(s->correct, s->evaluated));
            }
            printf("  %-*s  %8llu  %9llu  %9llu  %7.1f%%\n\n", w, "total",
                   (unsigned long long)an.correct,
                   (unsigned long long)an.evaluated,
                   (unsigned long long)an.questions,
                   100 * ratio(an.correct, an.evaluated));
        }
    }
    if (pairs) {
        if (semd_eval_pairs(m, pairs, pairs_restrict, &pr, &err) != 0) {
            fprintf(stderr, "semd eval: %s\n", err.msg);
            status = 1;
            goto done;
        }
        if (json)
            json_object_set_new(
                out, "pairs",
                json_pack("{s:f, s:f, s:f, s:I, s:I}", "spearman",
                          pr.spearman, "pearson", pr.pearson, "oov_ratio",
                          pr.oov_ratio, "pairs", (json_int_t)pr.pairs, "oov",
                          (json_int_t)pr.oov));
        else
            printf("pairs: %s\n\n  spearman %.4f  pearson %.4f  "
                   "out of vocabulary %.1f%% (%llu of %llu pairs)\n",
                   pairs, pr.spearman, pr.pearson, pr.oov_ratio,
                   (unsigned long long)pr.oov,
                   (unsigned long long)(pr.oov + pr.pairs));
    }
    if (json) {
        print_json(out);
        out = NULL;
    }
done:
    json_decref(out);
    semd_eval_analogies_release(&an);
    semd_index_close(ix);
    semd_model_close(m);
    return status;
}
