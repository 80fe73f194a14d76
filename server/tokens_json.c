/*
 * tokens_json.c - the JSON of token matrices, one function per document,
 * shared by the command line and the HTTP routes so both give the same
 * answer: the tokens of a text (`semd tokenize --json`, POST /v1/tokenize)
 * and the token health report (`semd tokens-report --json`, GET
 * /v1/tokens/report); and the "id" and "text" that every listed row of a
 * tokenizer model carries (neighbours, answers, word look-up).
 *
 * Pure functions of their arguments (the model and tokenizer are only
 * read): called from any thread.
 */
#include "serve.h"

#include <stdlib.h>
#include <string.h>

/* Room for any row shown by semd_model_display_word. */
#define SHOWN_MAX (3 * SEMD_MAX_WORD + 1)

/* Copies s[0..n) with each byte that does not belong to a valid UTF-8
 * character replaced by U+FFFD: a token may hold part of a character, and
 * JSON strings are UTF-8. NUL becomes U+FFFD too. malloc'd, NUL-ended. */
static char *
lossy_utf8(const char *s, size_t n)
{
    char *out = malloc(3 * n + 1);
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t need = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1
                                   : (c & 0xF0) == 0xE0 ? 2
                                   : (c & 0xF8) == 0xF0 ? 3 : 9;
        int ok = need != 9 && i + need < n && c != 0;
        uint32_t cp = need == 0 ? c : need == 1 ? c & 0x1F
                                    : need == 2 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; ok && k <= need; k++) {
            ok = (p[i + k] & 0xC0) == 0x80;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        static const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
        if (ok && (cp < min[need] || cp > 0x10FFFF ||
                   (cp >= 0xD800 && cp <= 0xDFFF)))
            ok = 0;
        if (ok) {
            memcpy(out + o, p + i, need + 1);
            o += need + 1;
            i += need + 1;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

/* {"id", "text", "token", "start", "end"} and, with m, "norm": the norm of
 * the row the model names by this token (null when it has none). */
static json_t *
token_json(const struct semd_tokenizer *t, const struct semd_model *m,
           const struct semd_token *tk)
{
    size_t blen, tlen;
    const char *b = semd_tokenizer_bytes(t, tk->id, &blen);
    const char *tok = semd_tokenizer_token(t, tk->id, &tlen);
    if (!b || !tok)
        return NULL;
    char *shown = lossy_utf8(b, blen);
    if (!shown)
        return NULL;
    json_t *o = json_pack("{s:I, s:s, s:s%, s:I, s:I}", "id",
                          (json_int_t)tk->id, "text", shown, "token", tok,
                          tlen, "start", (json_int_t)tk->start, "end",
                          (json_int_t)tk->end);
    free(shown);
    if (o && m) {
        uint64_t row;
        json_t *norm = semd_model_lookup(m, tok, tlen, &row) == 0
                           ? json_real(semd_model_norms(m)[row])
                           : json_null();
        if (json_object_set_new(o, "norm", norm) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    return o;
}

int
tokens_json(const struct semd_tokenizer *t, const struct semd_model *m,
            const char *text, size_t len, json_t **out,
            struct semd_err *err)
{
    struct semd_token *toks = NULL;
    size_t n = 0;
    int rc = semd_tokenize(t, text, len, &toks, &n, err);
    if (rc != 0)
        return rc;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        json_t *o = token_json(t, m, &toks[i]);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    free(toks);
    json_t *doc = arr ? json_pack("{s:o, s:I}", "tokens", arr, "count",
                                  (json_int_t)n)
                      : NULL;
    if (!doc)
        return semd_err_set(err, SEMD_ENOMEM,
                            "out of memory for %zu tokens", n);
    *out = doc;
    return 0;
}

int
tokens_row_fields(const struct semd_model *m, uint64_t row, json_t *o)
{
    char text[SHOWN_MAX];
    uint32_t id;
    if (!o || !semd_model_tokenizer(m) ||
        semd_model_display_word(m, row, text, sizeof text, &id) != 0 ||
        id == UINT32_MAX)
        return 0;
    /* the text is valid UTF-8 by construction, so json_string cannot
     * fail for that reason; a NULL here is out of memory */
    if (json_object_set_new(o, "id", json_integer(id)) != 0 ||
        json_object_set_new(o, "text", json_string(text)) != 0)
        return -1;
    return 0;
}

/* {"row", "word", and on a tokenizer model "id" and "text"} */
static json_t *
row_json(const struct semd_model *m, uint64_t row)
{
    json_t *o = json_pack("{s:I, s:s}", "row", (json_int_t)row, "word",
                          semd_model_word(m, row, NULL));
    if (o && tokens_row_fields(m, row, o) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *
norm_list(const struct semd_model *m, const struct semd_norm_flag *f,
          size_t n, uint64_t count, int with_z)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        json_t *o = row_json(m, f[i].row);
        if (!o) {
            json_decref(a);
            return NULL;
        }
        json_object_set_new(o, "norm", json_real(f[i].norm));
        if (with_z)
            json_object_set_new(o, "z", json_real(f[i].z));
        json_array_append_new(a, o);
    }
    return json_pack("{s:I, s:o}", "count", (json_int_t)count, "rows", a);
}

const char *
tokens_unreach_reason(int reason)
{
    return reason == SEMD_UNREACH_NO_MERGE ? "no_merge" : "split";
}

static json_t *
unreachable_json(const struct semd_model *m,
                 const struct semd_tokens_report *r)
{
    const struct semd_tokenizer *t = semd_model_tokenizer(m);
    json_t *list = json_array();
    for (size_t i = 0; list && i < r->unreachable_listed; i++) {
        const struct semd_unreachable *u = &r->unreachable[i];
        size_t tl;
        const char *tok = semd_tokenizer_token(t, u->id, &tl);
        json_t *ids = json_array();
        for (uint32_t k = 0; k < u->n_ids && k < SEMD_UNREACH_IDS; k++)
            json_array_append_new(ids, json_integer(u->ids[k]));
        json_t *o = json_pack("{s:i, s:s%, s:s, s:I, s:o}", "id", (int)u->id,
                              "token", tok ? tok : "", tok ? tl : 0,
                              "reason", tokens_unreach_reason(u->reason),
                              "n_ids", (json_int_t)u->n_ids, "encodes_to",
                              ids);
        if (!o) {
            json_decref(list);
            return NULL;
        }
        if (u->row != UINT64_MAX) {
            char text[SHOWN_MAX];
            json_object_set_new(o, "row", json_integer((json_int_t)u->row));
            if (semd_model_display_word(m, u->row, text, sizeof text,
                                        NULL) == 0)
                json_object_set_new(o, "text", json_string(text));
        }
        json_array_append_new(list, o);
    }
    return json_pack("{s:s, s:i, s:I, s:I, s:I, s:o}", "definition",
                     "tokenizing the token's own bytes does not give that "
                     "token",
                     "tokens", (int)r->tokens, "count",
                     (json_int_t)r->n_unreachable, "no_merge",
                     (json_int_t)r->n_no_merge, "no_row",
                     (json_int_t)r->n_no_row, "list", list);
}

json_t *
tokens_report_json(const struct semd_model *m,
                   const struct semd_tokens_report *r)
{
    /* json_pack's "o" takes over its argument and fails on NULL, so a
     * part that ran out of memory fails the whole document */
    json_t *norms = json_pack(
        "{s:s, s:f, s:f, s:f, s:f, s:f, s:o, s:o, s:o}", "method",
        "robust_z_of_log_norm", "z_limit", r->z_limit, "median",
        r->norm_median, "log_mad", r->log_norm_mad, "min",
        (double)r->norm_min, "max", (double)r->norm_max, "zero",
        norm_list(m, r->zero, r->zero_listed, r->n_zero, 0), "low",
        norm_list(m, r->low, r->low_listed, r->n_low, 1), "high",
        norm_list(m, r->high, r->high_listed, r->n_high, 1));
    json_t *pairs = json_array();
    for (size_t i = 0; pairs && i < r->dups_listed; i++) {
        json_t *p = json_pack("{s:o, s:o, s:f}", "a",
                              row_json(m, r->dups[i].a), "b",
                              row_json(m, r->dups[i].b), "cosine",
                              (double)r->dups[i].cosine);
        if (!p || json_array_append_new(pairs, p) != 0) {
            json_decref(pairs);
            pairs = NULL;
        }
    }
    json_t *dups = json_pack("{s:s, s:f, s:I, s:I, s:o}", "method",
                             r->dup_exact ? "exact" : "hashing", "min_cosine",
                             r->dup_cosine, "scored",
                             (json_int_t)r->dup_scored, "count",
                             (json_int_t)r->n_dups, "pairs", pairs);
    json_t *out = json_pack("{s:I, s:i, s:o, s:o}", "rows",
                            (json_int_t)r->rows, "dims", (int)r->dims,
                            "norms", norms, "duplicates", dups);
    if (!out)
        return NULL;
    json_t *un = r->has_tokenizer ? unreachable_json(m, r) : json_null();
    if (!un || json_object_set_new(out, "unreachable", un) != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}
