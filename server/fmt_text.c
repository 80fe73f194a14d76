/*
 * fmt_text.c - reads embeddings as text lines "word v1 v2 ... vD":
 * word2vec text and fastText .vec (a first line "rows dims"), and GloVe
 * text (no header: the first line's value count gives the dimensions).
 *
 * Fields are separated by spaces or tabs; a trailing space (fastText) and
 * "\r\n" line ends are accepted; blank lines are skipped. Values are
 * parsed with strtof, so each stored float is the float32 nearest to the
 * source's digits. The header's row count is checked against the lines
 * that follow, both ways. Single-threaded.
 */
#include "convert.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
is_sep(char c)
{
    return c == ' ' || c == '\t';
}

/* Parses the values after the word into vec (up to dims of them); *found
 * gets how many values the line holds. On a bad value, *bad points at it. */
static int
parse_values(char *p, float *vec, uint64_t dims, uint64_t *found,
             char **bad)
{
    uint64_t n = 0;
    for (;;) {
        while (is_sep(*p))
            p++;
        if (*p == '\0')
            break;
        char *end;
        float v = strtof(p, &end);
        if (end == p || (*end != '\0' && !is_sep(*end))) {
            *bad = p;
            return -1;
        }
        if (n < dims)
            vec[n] = v;
        n++;
        p = end;
    }
    *found = n;
    return 0;
}

int
fmt_text_convert(struct src *s, const struct conv_opts *o,
                 enum text_mode mode, const char *format,
                 struct semd_err *err)
{
    struct semd_writer *w = NULL;
    float *vec = NULL;
    char *line;
    size_t len;
    uint64_t hrows = 0, dims = 0, rows = 0;
    struct progress prog;
    int rc;

    progress_start(&prog, o->progress, s->size);
    do {
        if ((rc = src_line(s, &line, &len, err)) < 0)
            goto out;
        if (rc == 0) {
            rc = semd_err_set(err, SEMD_EFORMAT, "%s: empty file", s->path);
            goto out;
        }
    } while (len == 0 && mode == TEXT_NO_HEADER);
    if (mode == TEXT_HEADER) {
        if ((rc = conv_header(s, line, len, &hrows, &dims, err)) != 0)
            goto out;
        line = NULL;
    } else {
        uint64_t found = 0;
        text_line_is_vector(line, len, 0, &found);
        if (found == 0) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s:%" PRIu64 ": expected a word followed by "
                              "numbers, found \"%.*s\"", s->path, s->line,
                              SHOWN(len, 80), line);
            goto out;
        }
        if (found > CONV_MAX_DIMS) {
            rc = semd_err_set(err, SEMD_EFORMAT, "%s:%" PRIu64 ": %" PRIu64
                              " values: more than 65536 dimensions",
                              s->path, s->line, found);
            goto out;
        }
        dims = found;
    }
    if ((rc = conv_writer_open(&w, o, (uint32_t)dims, format,
                               SEMD_MODEL_COUNTS_ARE_RANKS, err)) != 0)
        goto out;
    if (!(vec = malloc(dims * sizeof *vec))) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        if (!line) {
            if ((rc = src_line(s, &line, &len, err)) < 0)
                goto out;
            if (rc == 0)
                break;
        }
        char *p = line;
        line = NULL;
        if (len == 0)
            continue;
        if (o->limit && rows == o->limit)
            break;
        if (hrows && rows == hrows) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s:%" PRIu64 ": more rows than the %" PRIu64
                              " the header announces", s->path, s->line,
                              hrows);
            goto out;
        }
        char *word = p;
        while (*p && !is_sep(*p))
            p++;
        size_t wlen = (size_t)(p - word);
        if (wlen == 0) {
            rc = semd_err_set(err, SEMD_EFORMAT, "%s:%" PRIu64 ": line "
                              "starts with a space: expected a word",
                              s->path, s->line);
            goto out;
        }
        uint64_t found;
        char *bad;
        if (parse_values(p, vec, dims, &found, &bad)) {
            size_t blen = strcspn(bad, " \t");
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s:%" PRIu64 ": expected a number after "
                              "\"%.*s\", found \"%.*s\"", s->path, s->line,
                              SHOWN(wlen, 100), word, SHOWN(blen, 40), bad);
            goto out;
        }
        if (found != dims) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s:%" PRIu64 ": expected %" PRIu64 " values "
                              "after \"%.*s\", found %" PRIu64, s->path,
                              s->line, dims, SHOWN(wlen, 100), word, found);
            goto out;
        }
        if ((rc = semd_writer_add(w, word, wlen, vec, 0, err)) != 0) {
            rc = conv_wrap(err, rc, "%s:%" PRIu64, s->path, s->line);
            goto out;
        }
        rows++;
        progress_update(&prog, rows, src_offset(s));
    }
    if (rows == 0) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: no rows after the header",
                          s->path);
        goto out;
    }
    if (hrows && rows < hrows && !(o->limit && rows == o->limit)) {
        rc = semd_err_set(err, SEMD_EFORMAT,
                          "%s: the header announces %" PRIu64 " rows, found "
                          "%" PRIu64 " (truncated?)", s->path, hrows, rows);
        goto out;
    }
    rc = 0;
out:
    free(vec);
    return conv_end(w, &prog, rows, rc, err);
}
