/*
 * cmd_export.c - `semd export MODEL OUT --to word2vec-text|word2vec-binary
 * [--limit N]`: writes a model's rows back out in word2vec's formats.
 *
 * Binary holds the stored float32 values bit for bit (followed by "\n" as
 * word2vec.c writes it). Text writes each value with the fewest significant
 * digits (6 to 9) that strtof reads back to the same float32, so a text
 * round trip is exact too. Output goes to a temporary file beside OUT,
 * fsynced and renamed at the end; on failure it is removed and OUT is
 * untouched. Single-threaded.
 */
#include "semd.h"

#include "commands.h"
#include "convert.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The shortest "%.Ng" (N from 6 to 9) that reads back as v. */
static int
format_float(char *buf, size_t n, float v)
{
    int k = 0;
    for (int prec = 6; prec <= 9; prec++) {
        k = snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    return k;
}

static void
export_usage(FILE *f)
{
    fprintf(f, "usage: semd export MODEL OUT --to word2vec-text|"
               "word2vec-binary [--limit N]\n\n"
               "OUT may be - for standard output. "
               "Writes the model's rows (most frequent first) in word2vec's "
               "text or binary\nformat; --limit keeps the first N rows. The "
               "binary format holds the float32\nvalues bit for bit; the "
               "text format as many digits as reading them back exactly\n"
               "needs.\n");
}

/* Writes rows to f; 0, or -1 with msg set. */
static int
write_rows(FILE *f, const struct semd_model *m, uint64_t rows, int binary,
           char *msg, size_t msglen)
{
    uint32_t dims = semd_model_dims(m);
    fprintf(f, "%" PRIu64 " %u\n", rows, dims);
    for (uint64_t r = 0; r < rows; r++) {
        if (conv_interrupted()) {
            snprintf(msg, msglen, "interrupted at row %" PRIu64 "; nothing "
                     "written", r);
            return -1;
        }
        size_t len;
        const char *word = semd_model_word(m, r, &len);
        if (strpbrk(word, " \t\n\r")) {
            snprintf(msg, msglen, "row %" PRIu64 ": the word \"%.*s\" holds "
                     "whitespace, which word2vec formats cannot represent",
                     r, (int)(len > 100 ? 100 : len), word);
            return -1;
        }
        const float *v = semd_model_row(m, r);
        fwrite(word, 1, len, f);
        if (binary) {
            fputc(' ', f);
            fwrite(v, 4, dims, f);
        } else {
            char num[32];
            for (uint32_t i = 0; i < dims; i++) {
                fputc(' ', f);
                fwrite(num, 1, (size_t)format_float(num, sizeof num, v[i]),
                       f);
            }
        }
        fputc('\n', f);
    }
    return 0;
}

int
cmd_export(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *to = NULL;
    uint64_t limit = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            export_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--to") && i + 1 < argc) {
            to = argv[++i];
        } else if (!strcmp(a, "--limit") && i + 1 < argc) {
            char *end;
            const char *s = argv[++i];
            errno = 0;
            limit = strtoull(s, &end, 10);
            if (*s < '0' || *s > '9' || *end || errno || limit == 0) {
                fprintf(stderr, "semd export: --limit wants a positive "
                        "number, got '%s'\n", s);
                return 2;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "semd export: unknown option or missing value: "
                    "'%s'\n", a);
            return 2;
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            fprintf(stderr, "semd export: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!in || !out || !to) {
        export_usage(stderr);
        return 2;
    }
    int binary;
    if (!strcmp(to, "word2vec-binary")) {
        binary = 1;
    } else if (!strcmp(to, "word2vec-text")) {
        binary = 0;
    } else {
        fprintf(stderr, "semd export: unknown format '%s' (word2vec-text or "
                "word2vec-binary)\n", to);
        return 2;
    }

    /* The result replaces OUT by a rename: never do that to a device, a
     * pipe, a directory or a symbolic link ("-" writes to standard
     * output instead). */
    struct stat st;
    int to_stdout = !strcmp(out, "-");
    if (!to_stdout && lstat(out, &st) == 0 && !S_ISREG(st.st_mode)) {
        fprintf(stderr, "semd export: %s: exists and is not a regular file "
                "(use - for standard output)\n", out);
        return 2;
    }
    conv_catch_signals();
    struct semd_err err = {0};
    struct semd_model *m;
    if (semd_model_open(&m, in, &err) != 0) {
        fprintf(stderr, "semd export: %s\n", err.msg);
        return 1;
    }
    uint64_t rows = semd_model_rows(m);
    if (limit && limit < rows)
        rows = limit;
    char msg[SEMD_ERR_MSG] = "";
    if (to_stdout) {
        int rc = write_rows(stdout, m, rows, binary, msg, sizeof msg);
        if (rc == 0 && fflush(stdout) != 0) {
            snprintf(msg, sizeof msg, "write to standard output failed: %s",
                     strerror(errno));
            rc = -1;
        }
        if (rc != 0)
            fprintf(stderr, "semd export: %s: %s\n", in, msg);
        semd_model_close(m);
        return rc ? 1 : 0;
    }

    size_t n = strlen(out) + 16;
    char *tmp = malloc(n);
    if (!tmp) {
        semd_model_close(m);
        fprintf(stderr, "semd export: out of memory\n");
        return 1;
    }
    snprintf(tmp, n, "%s.tmp.XXXXXX", out);
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        fprintf(stderr, "semd export: %s: cannot create: %s\n", tmp,
                strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        free(tmp);
        semd_model_close(m);
        return 1;
    }
    /* mkstemp makes the file private; an export is an ordinary file */
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um);
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    int rc = write_rows(f, m, rows, binary, msg, sizeof msg);
    if (rc == 0 && (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0)) {
        snprintf(msg, sizeof msg, "%s: write failed: %s", tmp,
                 strerror(errno));
        rc = -1;
    }
    if (fclose(f) != 0 && rc == 0) {
        snprintf(msg, sizeof msg, "%s: write failed: %s", tmp,
                 strerror(errno));
        rc = -1;
    }
    if (rc == 0 && rename(tmp, out) != 0) {
        snprintf(msg, sizeof msg, "%s: cannot rename to %s: %s", tmp, out,
                 strerror(errno));
        rc = -1;
    }
    if (rc != 0) {
        unlink(tmp);
        fprintf(stderr, "semd export: %s: %s\n", in, msg);
    }
    free(tmp);
    semd_model_close(m);
    return rc ? 1 : 0;
}
