/*
 * convert.h - what the input format readers of `semd convert` share: a
 * buffered input that knows its byte offset and line, progress lines on a
 * terminal, error messages with the file and position, and the options.
 *
 * Each reader turns one format into a model file through the writer of
 * libsemd (temporary file renamed at the end), streaming: memory is the
 * writer's per-row arrays plus a buffer, never the whole input.
 */
#ifndef SEMD_CONVERT_H
#define SEMD_CONVERT_H

#include "semd.h"

#include <stddef.h>
#include <stdint.h>

struct conv_opts {
    const char *in;      /* input path, as given (used in messages) */
    const char *out;     /* output model path */
    const char *from;    /* format name, NULL: detected */
    const char *tensor;  /* safetensors: tensor name, NULL: the only 2-D one */
    const char *vocab;   /* safetensors: vocabulary file */
    const char *merges;  /* safetensors: BPE merges.txt; with it (or a
                            tokenizer.json holding merges as vocab) the
                            tokenizer goes into the model */
    uint64_t limit;      /* keep the first N rows; 0: all */
    int progress;        /* nonzero: progress lines on stderr */
};

/* ------------------------------------------------------------ input */

struct src {
    const char *path;
    int fd;
    unsigned char *buf;
    size_t cap;       /* bytes allocated in buf */
    size_t pos, len;  /* next byte, end of valid bytes */
    uint64_t base;    /* file offset of buf[0] */
    uint64_t size;    /* file size in bytes */
    uint64_t line;    /* 1-based line of the last line returned */
    int eof;          /* read() returned 0 */
    int ioerr;        /* errno of a failed read, 0 if none */
};

int src_open(struct src *s, const char *path, struct semd_err *err);
void src_close(struct src *s);

/* Reads more bytes after the unread ones; 0 at end of file or error. */
int src_more(struct src *s);

static inline int
src_getc(struct src *s)
{
    if (s->pos < s->len || src_more(s))
        return s->buf[s->pos++];
    return -1;
}

static inline int
src_peekc(struct src *s)
{
    if (s->pos < s->len || src_more(s))
        return s->buf[s->pos];
    return -1;
}

/* File offset of the next unread byte. */
static inline uint64_t
src_offset(const struct src *s)
{
    return s->base + s->pos;
}

/* The next line without its "\n" or "\r\n", NUL-terminated in place
 * (*line stays valid until the next call). Returns 1 for a line, 0 at the
 * end of the file, or a negative code (a line longer than 64 MB, a read
 * error) with err set. */
int src_line(struct src *s, char **line, size_t *len, struct semd_err *err);

/* Copies n bytes; returns the number copied (< n at the end of file). */
size_t src_read(struct src *s, void *dst, size_t n);

/* SEMD_EIO naming the read error, or SEMD_EFORMAT "unexpected end of file"
 * with what was expected. */
int src_eof_error(const struct src *s, struct semd_err *err,
                  const char *expected);

/* ------------------------------------------------------------ progress */

struct progress {
    int on;
    uint64_t total_bytes; /* 0: unknown */
    double t0, last;
};

void progress_start(struct progress *p, int on, uint64_t total_bytes);
/* Cheap to call for every row: looks at the clock every 4096 rows. */
void progress_update(struct progress *p, uint64_t rows, uint64_t bytes);
void progress_done(struct progress *p, uint64_t rows);

/* ------------------------------------------------------------ interrupts */

/* Catches SIGINT and SIGTERM: from then on conv_interrupted() is nonzero
 * after one, and reads fail, so a conversion stops and cleans up. */
void conv_catch_signals(void);
int conv_interrupted(void);

/* ------------------------------------------------------------ messages */

/* Prefixes err's message (as set by the writer) with a position such as
 * "glove.txt:17" and returns rc. */
int conv_wrap(struct semd_err *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Shows at most max bytes of s in messages. */
#define SHOWN(len, max) ((int)((len) > (max) ? (max) : (len)))

/* The input's base name, for the model's "source" field. */
const char *conv_basename(const char *path);

/* Opens the writer for a reader. */
int conv_writer_open(struct semd_writer **w, const struct conv_opts *o,
                     uint32_t dims, const char *format, uint32_t flags,
                     struct semd_err *err);

/* Checks line (len bytes, the line s just returned) as a header "ROWS
 * DIMS" of at most CONV_MAX_DIMS dimensions; fills *rows and *dims, or
 * returns SEMD_EFORMAT quoting what it found. */
#define CONV_MAX_DIMS 65536
int conv_header(const struct src *s, const char *line, size_t len,
                uint64_t *rows, uint64_t *dims, struct semd_err *err);

/* Ends a reader, whose result so far is rc: when 0, finishes the writer
 * (the model file takes its name) and the progress line; otherwise, or if
 * finishing fails, ends the progress line and drops the temporary file.
 * Returns 0 or the failure's code; w is gone either way. */
int conv_end(struct semd_writer *w, struct progress *p, uint64_t rows,
             int rc, struct semd_err *err);

/* ------------------------------------------------------------ readers */

enum text_mode {
    TEXT_HEADER,    /* word2vec text, fastText .vec: "rows dims" first */
    TEXT_NO_HEADER, /* GloVe text */
};

int fmt_text_convert(struct src *s, const struct conv_opts *o,
                     enum text_mode mode, const char *format,
                     struct semd_err *err);
int fmt_w2vbin_convert(struct src *s, const struct conv_opts *o,
                       struct semd_err *err);
int fmt_wink_convert(struct src *s, const struct conv_opts *o,
                     struct semd_err *err);
int fmt_safetensors_convert(const struct conv_opts *o, struct semd_err *err);

/* Detection helpers. */
/* 1 if the line is two positive integers "rows dims"; fills them. */
int text_parse_header(const char *line, uint64_t *rows, uint64_t *dims);
/* 1 if the line is a word followed by exactly dims (any count when dims is
 * 0) numbers; *found gets the count. */
int text_line_is_vector(const char *line, size_t len, uint64_t dims,
                        uint64_t *found);

#endif
