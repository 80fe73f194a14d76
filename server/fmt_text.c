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
            goto fail;
        if (rc == 0) {
            rc = semd_err_set(err, SEMD_EFORMAT, "%s: empty file", s->path);
            goto fail;
        }
    } while (len == 0 && mode == TEXT_NO_HEADER);
    if (mode == TEXT_HEADER) {
        if (!text_parse_header(line, &hrows, &dims)) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s:%" PRIu64 ": expected a header \"ROWS "
                              "DIMS\" (two positive integers), found "
                              "\"%.*s\"", s->path, s->line,
                              SHOWN(len, 80), line);
            goto fail;
        }
        if (dims > 65536) {
            rc = semd_err_set(err, SEMD_EFORMAT, "%s:1: %" PRIu64
                              " dimensions in the header: more than 65536",
                              s->path, dims);
            goto fail;
        }
        line = NULL;
    } else {
        uint64_t found = 0;
        text_line_is_vector(line, len, 0, &found);
        if (found == 0) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s:%" PRIu64 ": expected a word followed by "
                              "numbers, found \"%.*s\"", s->path, s->line,
                              SHOWN(len, 80), line);
            goto fail;
        }
        if (found > 65536) {
            rc = semd_err_set(err, SEMD_EFORMAT, "%s:%" PRIu64 ": %" PRIu64
                              " values: more than 65536 dimensions",
                              s->path, s->line, found);
            goto fail;
        }
        dims = found;
    }
    if ((rc = conv_writer_open(&w, o, (uint32_t)dims, format,
                               SEMD_MODEL_COUNTS_ARE_RANKS, err)) != 0)
        goto fail;
    if (!(vec = malloc(dims * sizeof *vec))) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto fail;
    }
    for (;;) {
        if (!line) {
            if ((rc = src_line(s, &line, &len, err)) < 0)
                goto fail;
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
            goto fail;
        }
        char *word = p;
        while (*p && !is_sep(*p))
            p++;
        size_t wlen = (size_t)(p - word);
        if (wlen == 0) {
            rc = semd_err_set(err, SEMD_EFORMAT, "%s:%" PRIu64 ": line "
                              "starts with a space: expected a word",
                              s->path, s->line);
            goto fail;
        }
        uint64_t found;
        char *bad;
        if (parse_values(p, vec, dims, &found, &bad)) {
            size_t blen = strcspn(bad, " \t");
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s:%" PRIu64 ": expected a number after "
                              "\"%.*s\", found \"%.*s\"", s->path, s->line,
                              SHOWN(wlen, 100), word, SHOWN(blen, 40), bad);
            goto fail;
        }
        if (found != dims) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s:%" PRIu64 ": expected %" PRIu64 " values "
                              "after \"%.*s\", found %" PRIu64, s->path,
                              s->line, dims, SHOWN(wlen, 100), word, found);
            goto fail;
        }
        if ((rc = semd_writer_add(w, word, wlen, vec, 0, err)) != 0) {
            rc = conv_wrap(err, rc, "%s:%" PRIu64, s->path, s->line);
            goto fail;
        }
        rows++;
        progress_update(&prog, rows, src_offset(s));
    }
    if (rows == 0) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: no rows after the header",
                          s->path);
        goto fail;
    }
    if (hrows && rows < hrows && !(o->limit && rows == o->limit)) {
        rc = semd_err_set(err, SEMD_EFORMAT,
                          "%s: the header announces %" PRIu64 " rows, found "
                          "%" PRIu64 " (truncated?)", s->path, hrows, rows);
        goto fail;
    }
    free(vec);
    vec = NULL;
    rc = semd_writer_finish(w, err);
    w = NULL;
    if (rc)
        goto fail;
    progress_done(&prog, rows);
    return 0;
fail:
    if (prog.on)
        fputc('\n', stderr);
    free(vec);
    semd_writer_abort(w);
    return rc;
}
