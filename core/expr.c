/*
 * expr.c - query terms: parsing expressions such as "king - man + woman",
 * resolving words (exact, else lower-cased; on a model carrying a
 * tokenizer, by its tokens) and the case mappings that resolution and
 * evaluation need.
 *
 * Grammar (bytes; whitespace is space, tab, CR, LF, VT, FF):
 *     expr   := ws* [sign ws*] term (sep term)* ws*
 *     sep    := ws+ | ws* sign ws*          whitespace alone means +
 *     sign   := '+' | '-'
 *     term   := [number ws* '*' ws*] word
 *     word   := bare | '"' (char | '\"' | '\\')* '"'
 *     bare   := one or more bytes other than whitespace, + - * " and NUL
 * A bare word followed by '*' must be a finite number: the term's weight
 * factor. Every error names the byte offset where it was found.
 *
 * Words as tokens: on a model with a tokenizer, rows are named by tokens
 * in byte-level form ("\u0120king" is " king"). A query word is meant as a
 * word of running text, which follows a space, so " king" is tried first,
 * then "king", then the name as typed; a word that is no single token is
 * the mean of its tokens' rows. Token ids go to rows by the token's name,
 * not by assuming row == id, so a model missing some rows still answers
 * for the rest.
 *
 * Case mapping uses the C library's wide-character tables of a UTF-8
 * locale object made once (never the process locale, which belongs to the
 * program); without one, only ASCII letters change case.
 *
 * Thread-safe: parsing touches only its arguments; the locale object is
 * created once under pthread_once and never changed.
 */
#include "semd.h"

#include "model.h"
#include "query.h"

#include <ctype.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

const char *
semd_prov_name(int prov)
{
    switch (prov) {
    case SEMD_PROV_EXACT: return "exact";
    case SEMD_PROV_CASE_FOLDED: return "case_folded";
    case SEMD_PROV_MISSING: return "missing";
    case SEMD_PROV_VECTOR: return "vector";
    case SEMD_PROV_TOKEN_SPACE: return "token_space";
    case SEMD_PROV_TOKEN_BARE: return "token_bare";
    case SEMD_PROV_TOKEN_MEAN: return "token_mean";
    }
    return "unknown";
}

/* ------------------------------------------------------------ case maps */

static pthread_once_t loc_once = PTHREAD_ONCE_INIT;
static locale_t utf8_loc = (locale_t)0;

static void
loc_init(void)
{
    static const char *const names[] = {"C.UTF-8", "C.utf8", "en_US.UTF-8"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !utf8_loc; i++)
        utf8_loc = newlocale(LC_CTYPE_MASK, names[i], (locale_t)0);
}

/* Decodes one code point of valid UTF-8 at s; *len gets its byte count. */
static uint32_t
decode(const unsigned char *s, size_t *len)
{
    if (s[0] < 0x80) {
        *len = 1;
        return s[0];
    }
    if ((s[0] & 0xE0) == 0xC0) {
        *len = 2;
        return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if ((s[0] & 0xF0) == 0xE0) {
        *len = 3;
        return ((uint32_t)(s[0] & 0x0F) << 12) |
               ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
}

static size_t
encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Python's full upper-case mappings that have no simple one; a word made
 * of these and ASCII letters can equal an ASCII word once upper-cased, so
 * evaluation must expand them as Python does. */
static const struct {
    uint32_t cp;
    const char *up;
} special_upper[] = {
    {0x00DF, "SS"},          /* sharp s */
    {0x0149, "\xCA\xBC" "N"}, /* n preceded by apostrophe */
    {0xFB00, "FF"},  {0xFB01, "FI"},  {0xFB02, "FL"}, {0xFB03, "FFI"},
    {0xFB04, "FFL"}, {0xFB05, "ST"},  {0xFB06, "ST"},
};

static size_t
map_case(const char *s, size_t n, char *out, size_t cap, int upper)
{
    if (model_utf8_valid_prefix(s, n) != n)
        return SIZE_MAX;
    pthread_once(&loc_once, loc_init);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len;
        uint32_t cp = decode((const unsigned char *)s + i, &len);
        i += len;
        const char *exp = NULL;
        if (upper && cp >= 0xDF)
            for (size_t k = 0; k < sizeof special_upper /
                                       sizeof special_upper[0]; k++)
                if (special_upper[k].cp == cp)
                    exp = special_upper[k].up;
        if (exp) {
            size_t el = strlen(exp);
            if (o + el > cap)
                return SIZE_MAX;
            memcpy(out + o, exp, el);
            o += el;
            continue;
        }
        uint32_t to = cp;
        if (cp < 0x80) {
            if (upper && cp >= 'a' && cp <= 'z')
                to = cp - 32;
            else if (!upper && cp >= 'A' && cp <= 'Z')
                to = cp + 32;
        } else if (utf8_loc) {
            wint_t w = upper ? towupper_l((wint_t)cp, utf8_loc)
                             : towlower_l((wint_t)cp, utf8_loc);
            /* never map into NUL, ASCII controls or surrogates */
            if (w >= 0x80 && w <= 0x10FFFF && !(w >= 0xD800 && w <= 0xDFFF))
                to = (uint32_t)w;
            else if (w > 0x20 && w < 0x7F)
                to = (uint32_t)w;
        }
        if (o + 4 > cap) {
            char tmp[4];
            size_t el = encode(to, tmp);
            if (o + el > cap)
                return SIZE_MAX;
            memcpy(out + o, tmp, el);
            o += el;
        } else {
            o += encode(to, out + o);
        }
    }
    return o;
}

size_t
query_upper(const char *s, size_t n, char *out, size_t cap)
{
    return map_case(s, n, out, cap, 1);
}

size_t
query_lower(const char *s, size_t n, char *out, size_t cap)
{
    return map_case(s, n, out, cap, 0);
}

/* ------------------------------------------------------------ resolving */

/* The row named by token id, or UINT64_MAX when the model has none. */
static uint64_t
token_row(const struct semd_model *m, const struct semd_tokenizer *t,
          uint32_t id)
{
    size_t tl;
    const char *s = semd_tokenizer_token(t, id, &tl);
    uint64_t row;
    if (!s || tl == 0 || tl > SEMD_MAX_WORD ||
        semd_model_lookup(m, s, tl, &row) != 0)
        return UINT64_MAX;
    return row;
}

/* The one token of exactly these bytes, with its row. */
static int
one_token(const struct semd_model *m, const struct semd_tokenizer *t,
          const char *bytes, size_t len, int prov,
          struct semd_term_info *out)
{
    uint32_t id;
    if (semd_tokenizer_find(t, bytes, len, &id) != 0)
        return SEMD_ENOWORD;
    uint64_t row = token_row(m, t, id);
    if (row == UINT64_MAX)
        return SEMD_ENOWORD;
    out->row = row;
    out->prov = prov;
    out->n_tokens = 1;
    out->token_ids[0] = id;
    out->token_rows[0] = row;
    return 0;
}

static int
resolve_token(const struct semd_model *m, const struct semd_tokenizer *t,
              const char *word, size_t len, struct semd_term_info *out)
{
    char sp[SEMD_MAX_WORD + 1];
    uint64_t row;
    if (len < SEMD_MAX_WORD) {
        sp[0] = ' ';
        memcpy(sp + 1, word, len);
        if (one_token(m, t, sp, len + 1, SEMD_PROV_TOKEN_SPACE, out) == 0)
            return 0;
    }
    if (one_token(m, t, word, len, SEMD_PROV_TOKEN_BARE, out) == 0)
        return 0;
    if (semd_model_lookup(m, word, len, &row) == 0) {
        uint32_t id;
        out->row = row;
        out->prov = SEMD_PROV_EXACT;
        out->n_tokens = 0;
        if (semd_tokenizer_lookup(t, word, len, &id) == 0) {
            out->n_tokens = 1;
            out->token_ids[0] = id;
            out->token_rows[0] = row;
        }
        return 0;
    }
    return SEMD_ENOWORD;
}

int
semd_resolve(const struct semd_model *m, const char *word, size_t len,
             struct semd_term_info *out)
{
    uint64_t row;
    out->n_tokens = 0;
    const struct semd_tokenizer *tok = semd_model_tokenizer(m);
    if (tok && len > 0 && len <= SEMD_MAX_WORD &&
        resolve_token(m, tok, word, len, out) == 0)
        return 0;
    if (tok) {
        out->row = UINT64_MAX;
        out->prov = SEMD_PROV_MISSING;
        out->n_tokens = 0;
        return SEMD_ENOWORD;
    }
    if (len > 0 && len <= SEMD_MAX_WORD &&
        semd_model_lookup(m, word, len, &row) == 0) {
        out->row = row;
        out->prov = SEMD_PROV_EXACT;
        return 0;
    }
    /* A lower-cased form can be longer (a few capitals grow a byte). */
    char low[SEMD_MAX_WORD * 2];
    size_t n = len > 0 && len <= SEMD_MAX_WORD
                   ? query_lower(word, len, low, sizeof low)
                   : SIZE_MAX;
    if (n != SIZE_MAX && n <= SEMD_MAX_WORD &&
        (n != len || memcmp(low, word, n) != 0) &&
        semd_model_lookup(m, low, n, &row) == 0) {
        out->row = row;
        out->prov = SEMD_PROV_CASE_FOLDED;
        return 0;
    }
    out->row = UINT64_MAX;
    out->prov = SEMD_PROV_MISSING;
    return SEMD_ENOWORD;
}

int
semd_resolve_word(const struct semd_model *m, const char *word, size_t len,
                  struct semd_term_info *out)
{
    if (semd_resolve(m, word, len, out) == 0)
        return 0;
    const struct semd_tokenizer *t = semd_model_tokenizer(m);
    if (!t || len == 0 || len > SEMD_MAX_WORD)
        return SEMD_ENOWORD;
    /* as the word reads after a space, unless it brings its own */
    char sp[SEMD_MAX_WORD + 1];
    size_t n = 0;
    if (!isspace((unsigned char)word[0]))
        sp[n++] = ' ';
    memcpy(sp + n, word, len);
    n += len;
    struct semd_token *toks = NULL;
    size_t nt = 0;
    if (semd_tokenize(t, sp, n, &toks, &nt, NULL) != 0 || nt == 0 ||
        nt > SEMD_TERM_TOKENS) {
        free(toks);
        return SEMD_ENOWORD;
    }
    for (size_t i = 0; i < nt; i++) {
        uint64_t row = token_row(m, t, toks[i].id);
        if (row == UINT64_MAX) {
            free(toks);
            return SEMD_ENOWORD;
        }
        out->token_ids[i] = toks[i].id;
        out->token_rows[i] = row;
    }
    free(toks);
    out->row = UINT64_MAX;
    out->prov = SEMD_PROV_TOKEN_MEAN;
    out->n_tokens = (uint32_t)nt;
    return 0;
}

/* Appends s[0..n) to buf with each byte outside valid UTF-8 as U+FFFD,
 * whole characters only, keeping room for the NUL. */
static size_t
put_lossy(char *buf, size_t o, size_t cap, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        int ok = len <= n - i && model_utf8_valid_prefix(s + i, len) == len;
        const char *from = ok ? s + i : "\xEF\xBF\xBD";
        if (!ok)
            len = 3;
        if (o + len + 1 > cap)
            break;
        memcpy(buf + o, from, len);
        o += len;
        i += ok ? len : 1;
    }
    return o;
}

int
semd_model_display_word(const struct semd_model *m, uint64_t row, char *buf,
                        size_t cap, uint32_t *token)
{
    if (!m || !buf || cap == 0 || row >= semd_model_rows(m))
        return SEMD_EINVAL;
    size_t wl;
    const char *w = semd_model_word(m, row, &wl);
    const struct semd_tokenizer *t = semd_model_tokenizer(m);
    uint32_t id = UINT32_MAX;
    const char *b = NULL;
    size_t bl = 0;
    if (t && semd_tokenizer_lookup(t, w, wl, &id) == 0)
        b = semd_tokenizer_bytes(t, id, &bl);
    if (!b) {
        id = UINT32_MAX;
        b = w;
        bl = wl;
    }
    size_t o = put_lossy(buf, 0, cap, b, bl);
    buf[o] = '\0';
    if (token)
        *token = id;
    return 0;
}

/* ---------------------------------------------------------- expressions */

static int
is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
           c == '\f';
}

static int
is_bare(char c)
{
    return c != '\0' && !is_ws(c) && c != '+' && c != '-' && c != '*' &&
           c != '"';
}

/* Shows the text around an error position, for messages. */
static int
snippet_len(size_t len, size_t at)
{
    size_t left = len - at;
    return (int)(left > 40 ? 40 : left);
}

static int
perr(struct semd_err *err, const char *text, size_t len, size_t at,
     const char *what)
{
    if (at >= len)
        return semd_err_set(err, SEMD_EINVAL,
                            "malformed expression: %s at byte %zu (end of "
                            "input)",
                            what, at);
    return semd_err_set(err, SEMD_EINVAL,
                        "malformed expression: %s at byte %zu (\"%.*s\")",
                        what, at, snippet_len(len, at), text + at);
}

void
semd_expr_release(struct semd_expr *e)
{
    if (!e)
        return;
    free(e->terms);
    free(e->text);
    e->terms = NULL;
    e->text = NULL;
    e->n_terms = 0;
}

int
semd_expr_parse(struct semd_expr *out, const char *text, size_t len,
                struct semd_err *err)
{
    if (!out || (!text && len))
        return semd_err_set(err, SEMD_EINVAL, "no expression given");
    if (len > SEMD_MAX_EXPR)
        return semd_err_set(err, SEMD_EINVAL,
                            "expression too long: %zu bytes, the limit is %d",
                            len, SEMD_MAX_EXPR);
    const void *nul = len ? memchr(text, '\0', len) : NULL;
    if (nul)
        return perr(err, text, len, (size_t)((const char *)nul - text),
                    "NUL byte");
    size_t valid = model_utf8_valid_prefix(text, len);
    if (valid != len)
        return perr(err, text, len, valid, "invalid UTF-8");

    /* Words point into our copy; quoted words are unescaped in place,
     * which only ever shortens them. */
    char *s = malloc(len + 1);
    struct semd_term *terms = calloc(SEMD_MAX_TERMS, sizeof *terms);
    if (!s || !terms) {
        free(s);
        free(terms);
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    if (len)
        memcpy(s, text, len);
    s[len] = '\0';
    size_t n = 0, i = 0;
    int rc = 0;
    while (i < len && is_ws(s[i]))
        i++;
    if (i == len) {
        rc = semd_err_set(err, SEMD_EINVAL, "empty expression");
        goto fail;
    }
    while (i < len) {
        /* separator: whitespace, at most one sign (none before the first
         * term means +) */
        float sign = 1.0f;
        size_t op_at = i;
        if (s[i] == '+' || s[i] == '-') {
            sign = s[i] == '-' ? -1.0f : 1.0f;
            i++;
            while (i < len && is_ws(s[i]))
                i++;
        }
        if (i == len) {
            rc = perr(err, text, len, op_at,
                      "expected a word after the operator");
            goto fail;
        }
        if (s[i] == '+' || s[i] == '-') {
            rc = perr(err, text, len, i, "two operators in a row");
            goto fail;
        }
        if (n == SEMD_MAX_TERMS) {
            rc = semd_err_set(err, SEMD_EINVAL,
                              "too many terms: the limit is %d (at byte %zu)",
                              SEMD_MAX_TERMS, i);
            goto fail;
        }
        float factor = 1.0f;
        size_t word_at = i, wlen = 0;
        char *word = NULL;
        for (int pass = 0; pass < 2; pass++) {
            word_at = i;
            if (s[i] == '*') {
                rc = perr(err, text, len, i, "'*' without a number before it");
                goto fail;
            }
            if (s[i] == '"') {
                size_t o = i + 1, r = i + 1;
                while (r < len && s[r] != '"') {
                    if (s[r] == '\\' && r + 1 < len &&
                        (s[r + 1] == '"' || s[r + 1] == '\\'))
                        r++;
                    s[o++] = s[r++];
                }
                if (r >= len) {
                    rc = perr(err, text, len, i, "unterminated quote");
                    goto fail;
                }
                word = s + i + 1;
                wlen = o - (i + 1);
                i = r + 1;
                if (wlen == 0) {
                    rc = perr(err, text, len, word_at, "empty quoted word");
                    goto fail;
                }
                if (i < len && !is_ws(s[i]) && s[i] != '+' && s[i] != '-') {
                    rc = perr(err, text, len, i,
                              "expected an operator or a space after the "
                              "quoted word");
                    goto fail;
                }
                break;
            }
            size_t start = i;
            while (i < len && is_bare(s[i]))
                i++;
            word = s + start;
            wlen = i - start;
            /* a number followed by '*' is a weight factor */
            size_t j = i;
            while (j < len && is_ws(s[j]))
                j++;
            if (j < len && s[j] == '*') {
                if (pass == 1) {
                    rc = perr(err, text, len, j, "a second '*' in one term");
                    goto fail;
                }
                char num[64];
                char *end = NULL;
                if (wlen == 0 || wlen >= sizeof num) {
                    rc = perr(err, text, len, start,
                              "expected a number before '*'");
                    goto fail;
                }
                memcpy(num, word, wlen);
                num[wlen] = '\0';
                double v = strtod(num, &end);
                if (end != num + wlen || !isfinite(v) || fabs(v) > 1e30) {
                    rc = perr(err, text, len, start,
                              "expected a finite number before '*'");
                    goto fail;
                }
                factor = (float)v;
                i = j + 1;
                while (i < len && is_ws(s[i]))
                    i++;
                if (i == len || s[i] == '+' || s[i] == '-') {
                    rc = perr(err, text, len, i, "expected a word after '*'");
                    goto fail;
                }
                continue;
            }
            if (s[i] == '"') {
                rc = perr(err, text, len, i,
                          "a quote inside a word (quote the whole word)");
                goto fail;
            }
            break;
        }
        if (wlen > SEMD_MAX_WORD) {
            rc = perr(err, text, len, word_at, "word longer than 1024 bytes");
            goto fail;
        }
        terms[n].word = word;
        terms[n].len = wlen;
        terms[n].vec = NULL;
        terms[n].weight = sign * factor;
        n++;
        while (i < len && is_ws(s[i]))
            i++;
    }
    out->terms = terms;
    out->n_terms = n;
    out->text = s;
    return 0;
fail:
    free(s);
    free(terms);
    return rc;
}
