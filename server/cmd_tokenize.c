/*
 * cmd_tokenize.c - `semd tokenize`: the tokens of a text, by the tokenizer
 * inside a model file or by a bare vocab.json + merges.txt (or
 * tokenizer.json). One thread; everything it allocates is freed before it
 * returns.
 */
#include "semd.h"

#include "commands.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: semd tokenize MODEL [TEXT] [--json]\n"
    "       semd tokenize --vocab VOCAB [--merges MERGES] [TEXT] [--json]\n"
    "\n"
    "Splits TEXT (or standard input) into GPT-2 byte-level BPE tokens: id,\n"
    "byte offsets and the text of each. MODEL must carry a tokenizer (semd\n"
    "convert --vocab/--merges). VOCAB is a vocab.json with MERGES a\n"
    "merges.txt, or a tokenizer.json alone.\n"
    "  --json   {\"tokens\":[{\"id\":..,\"text\":..,\"token\":..,"
    "\"start\":..,\"end\":..}]}\n";

/* Copies s[0..n) to b with each invalid UTF-8 byte replaced by U+FFFD, so
 * that a token holding part of a character still prints. */
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

static int
print_tokens(const struct semd_tokenizer *t, const char *text, size_t len,
             int json)
{
    struct semd_token *toks;
    size_t n;
    struct semd_err err = {0};
    if (semd_tokenize(t, text, len, &toks, &n, &err) != 0) {
        fprintf(stderr, "semd tokenize: %s\n", err.msg);
        return 1;
    }
    json_t *arr = json ? json_array() : NULL;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t blen, tlen;
        const char *b = semd_tokenizer_bytes(t, toks[i].id, &blen);
        const char *tok = semd_tokenizer_token(t, toks[i].id, &tlen);
        char *shown = b ? lossy_utf8(b, blen) : NULL;
        if (!shown || !tok) {
            fprintf(stderr, "semd tokenize: %s\n",
                    shown ? "corrupted tokenizer" : "out of memory");
            rc = 1;
        } else if (json) {
            json_t *o = json_pack("{s:I, s:s, s:s%, s:I, s:I}", "id",
                                  (json_int_t)toks[i].id, "text", shown,
                                  "token", tok, tlen, "start",
                                  (json_int_t)toks[i].start, "end",
                                  (json_int_t)toks[i].end);
            if (!o || json_array_append_new(arr, o) != 0)
                rc = 1;
        } else {
            json_t *q = json_string(shown);
            char *qs = q ? json_dumps(q, JSON_ENCODE_ANY) : NULL;
            printf("%6u  %6zu %6zu  %s\n", toks[i].id, toks[i].start,
                   toks[i].end, qs ? qs : shown);
            free(qs);
            json_decref(q);
        }
        free(shown);
    }
    if (json && rc == 0) {
        json_t *doc = json_pack("{s:o}", "tokens", arr);
        char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER)
                      : NULL;
        if (s)
            puts(s);
        else
            rc = 1;
        free(s);
        json_decref(doc);
    } else {
        json_decref(arr);
    }
    free(toks);
    return rc;
}

int
cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *vocab = NULL, *merges = NULL, *text = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            json = 1;
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
        rc = print_tokens(t, text, strlen(text), json);
    } else {
        size_t len;
        char *in = read_stdin(&len);
        if (!in) {
            fprintf(stderr, "semd tokenize: out of memory\n");
            rc = 1;
        } else {
            rc = print_tokens(t, in, len, json);
        }
        free(in);
    }
    semd_tokenizer_free(own);
    semd_model_close(m);
    return rc;
}
