/*
 * fmt_w2vbin.c - reads word2vec binary: a text line "rows dims", then for
 * each row the word, one space, and dims little-endian float32 values,
 * optionally followed by "\n" (word2vec.c writes it, gensim does not).
 *
 * The float32 values are stored as they are, bit for bit. The header's row
 * count is checked before reading (the file must be large enough) and
 * after (no data may follow the last row). Single-threaded.
 */
#include "convert.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
fmt_w2vbin_convert(struct src *s, const struct conv_opts *o,
                   struct semd_err *err)
{
    struct semd_writer *w = NULL;
    float *vec = NULL;
    char *word = NULL;
    char *line;
    size_t len;
    uint64_t hrows, dims, rows = 0;
    struct progress prog;
    int rc;

    progress_start(&prog, o->progress, s->size);
    if ((rc = src_line(s, &line, &len, err)) < 0)
        goto out;
    if (rc == 0) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: empty file", s->path);
        goto out;
    }
    if ((rc = conv_header(s, line, len, &hrows, &dims, err)) != 0)
        goto out;
    uint64_t want = o->limit && o->limit < hrows ? o->limit : hrows;
    /* Each row needs at least a 1-byte word, a space and its floats. */
    uint64_t need = src_offset(s) + hrows * (dims * 4 + 2);
    if (s->size && hrows < UINT64_MAX / (dims * 4 + 2) && need > s->size) {
        rc = semd_err_set(err, SEMD_EFORMAT,
                          "%s: the header announces %" PRIu64 " rows of %"
                          PRIu64 " floats, which need at least %" PRIu64
                          " bytes; the file has %" PRIu64 " (truncated?)",
                          s->path, hrows, dims, need, s->size);
        goto out;
    }
    if ((rc = conv_writer_open(&w, o, (uint32_t)dims, "word2vec-binary",
                               SEMD_MODEL_COUNTS_ARE_RANKS, err)) != 0)
        goto out;
    vec = malloc(dims * sizeof *vec);
    word = malloc(SEMD_MAX_WORD + 1);
    if (!vec || !word) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    for (rows = 0; rows < want; rows++) {
        int c;
        while ((c = src_getc(s)) == '\n')
            ;
        uint64_t at = src_offset(s) - (c >= 0);
        size_t n = 0;
        while (c >= 0 && c != ' ') {
            if (n == SEMD_MAX_WORD) {
                rc = semd_err_set(err, SEMD_EFORMAT,
                                  "%s: byte %" PRIu64 ": row %" PRIu64 ": "
                                  "no space within %d bytes: expected a "
                                  "word (not word2vec binary?)", s->path, at,
                                  rows + 1, SEMD_MAX_WORD);
                goto out;
            }
            word[n++] = (char)c;
            c = src_getc(s);
        }
        if (c < 0) {
            char what[96];
            snprintf(what, sizeof what, "row %" PRIu64 " of %" PRIu64,
                     rows + 1, hrows);
            rc = src_eof_error(s, err, what);
            goto out;
        }
        if (src_read(s, vec, dims * 4) != dims * 4) {
            char what[128];
            snprintf(what, sizeof what, "%" PRIu64 " floats for \"%.*s\" "
                     "(row %" PRIu64 " of %" PRIu64 ")", dims,
                     SHOWN(n, 60), word, rows + 1, hrows);
            rc = src_eof_error(s, err, what);
            goto out;
        }
        if ((rc = semd_writer_add(w, word, n, vec, 0, err)) != 0) {
            rc = conv_wrap(err, rc, "%s: byte %" PRIu64, s->path, at);
            goto out;
        }
        progress_update(&prog, rows + 1, src_offset(s));
    }
    if (want == hrows) {
        int c;
        while ((c = src_getc(s)) == '\n' || c == '\r')
            ;
        if (c >= 0) {
            rc = semd_err_set(err, SEMD_EFORMAT,
                              "%s: byte %" PRIu64 ": data after the %" PRIu64
                              " rows the header announces", s->path,
                              src_offset(s) - 1, hrows);
            goto out;
        }
        if (s->ioerr) {
            rc = src_eof_error(s, err, NULL);
            goto out;
        }
    }
    rc = 0;
out:
    free(vec);
    free(word);
    return conv_end(w, &prog, rows, rc, err);
}
