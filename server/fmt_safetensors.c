/*
 * fmt_safetensors.c - reads one 2-D tensor [rows, dims] of a safetensors
 * file (an LLM's token-embedding matrix) with its vocabulary from a
 * separate file: a tokenizer.json ("model": {"vocab": {token: id}} or a
 * list of [token, score] pairs, plus "added_tokens"), a vocab.json
 * ({token: id}), or one token per line (the line number is the id).
 *
 * safetensors: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32"|"F16"|"BF16", "shape": [rows, dims],
 * "data_offsets": [begin, end]}, "__metadata__": {...}}, then the data.
 *
 * The data is mapped and converted to float32 row by row; pages already
 * read are dropped from memory as we go, so the map never costs more than
 * a window. Rows are added in id order; rows without a token are skipped
 * (embedding matrices are often padded) and counted on stderr.
 *
 * With --merges (a vocab.json + merges.txt pair), or a tokenizer.json that
 * holds BPE merges as --vocab, the byte-level BPE tokenizer is stored in
 * the model too. Then row == token id for every token the tokenizer knows:
 * those ids must all have a row and a token string equal to the
 * tokenizer's, and only rows past the last token may be left out, so
 * queries can go from text to ids to rows. Single-threaded.
 */
#include "convert.h"

#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER (100u << 20)
#define DROP_WINDOW (16u << 20)

static float
f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) |
                   ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float
bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Token strings by id. */
struct vocab {
    char **tok;
    size_t n;   /* ids 0..n-1 */
    int merges; /* a tokenizer.json whose model holds BPE merges */
};

static void
vocab_free(struct vocab *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->tok[i]);
    free(v->tok);
}

static int
vocab_set(struct vocab *v, const char *path, const char *tok, size_t len,
          json_int_t id, uint64_t rows, struct semd_err *err)
{
    if (id < 0 || (uint64_t)id >= rows)
        return semd_err_set(err, SEMD_EFORMAT, "%s: token \"%.*s\" has id %"
                            JSON_INTEGER_FORMAT ", outside the tensor's %"
                            PRIu64 " rows", path, SHOWN(len, 100), tok, id,
                            rows);
    if (v->tok[id]) {
        if (strlen(v->tok[id]) == len && !memcmp(v->tok[id], tok, len))
            return 0; /* added_tokens repeating the vocabulary */
        return semd_err_set(err, SEMD_EFORMAT, "%s: id %" JSON_INTEGER_FORMAT
                            " is both \"%.*s\" and \"%s\"", path, id,
                            SHOWN(len, 100), tok, v->tok[id]);
    }
    if (!(v->tok[id] = malloc(len + 1)))
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    memcpy(v->tok[id], tok, len);
    v->tok[id][len] = '\0';
    return 0;
}

static int
vocab_map(struct vocab *v, const char *path, json_t *map, uint64_t rows,
          struct semd_err *err)
{
    const char *key;
    json_t *val;
    int rc;
    json_object_foreach(map, key, val) {
        if (!json_is_integer(val))
            return semd_err_set(err, SEMD_EFORMAT, "%s: the id of token "
                                "\"%.100s\" is not an integer", path, key);
        if ((rc = vocab_set(v, path, key, strlen(key),
                            json_integer_value(val), rows, err)) != 0)
            return rc;
    }
    return 0;
}

static int
vocab_json(struct vocab *v, const char *path, uint64_t rows,
           struct semd_err *err)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return semd_err_set(err, SEMD_EFORMAT, "%s:%d: %s", path, je.line,
                            je.text);
    int rc = 0;
    /* a vocab.json may well hold the token "model" (GPT-2's does) */
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model))
        model = NULL;
    json_t *vocab = model ? json_object_get(model, "vocab") : NULL;
    if (json_is_object(vocab)) { /* tokenizer.json, BPE/WordPiece */
        rc = vocab_map(v, path, vocab, rows, err);
        v->merges = json_is_array(json_object_get(model, "merges"));
    } else if (json_is_array(vocab)) { /* tokenizer.json, Unigram */
        size_t i;
        json_t *e;
        json_array_foreach(vocab, i, e) {
            json_t *t = json_array_get(e, 0);
            if (!json_is_string(t)) {
                rc = semd_err_set(err, SEMD_EFORMAT, "%s: model.vocab[%zu] "
                                  "is not [token, score]", path, i);
                break;
            }
            if ((rc = vocab_set(v, path, json_string_value(t),
                                json_string_length(t), (json_int_t)i, rows,
                                err)) != 0)
                break;
        }
    } else if (model) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: \"model\" has no "
                          "\"vocab\"", path);
    } else if (json_is_object(root)) { /* vocab.json */
        rc = vocab_map(v, path, root, rows, err);
    } else {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: expected a tokenizer.json "
                          "or a {token: id} object", path);
    }
    json_t *added = json_object_get(root, "added_tokens");
    if (!rc && json_is_array(added)) {
        size_t i;
        json_t *e;
        json_array_foreach(added, i, e) {
            json_t *c = json_object_get(e, "content");
            json_t *id = json_object_get(e, "id");
            if (!json_is_string(c) || !json_is_integer(id)) {
                rc = semd_err_set(err, SEMD_EFORMAT, "%s: added_tokens[%zu] "
                                  "lacks \"content\" or \"id\"", path, i);
                break;
            }
            if ((rc = vocab_set(v, path, json_string_value(c),
                                json_string_length(c),
                                json_integer_value(id), rows, err)) != 0)
                break;
        }
    }
    json_decref(root);
    return rc;
}

static int
vocab_lines(struct vocab *v, const char *path, uint64_t rows,
            struct semd_err *err)
{
    struct src s;
    int rc = src_open(&s, path, err);
    if (rc)
        return rc;
    char *line;
    size_t len;
    json_int_t id = 0;
    while ((rc = src_line(&s, &line, &len, err)) == 1) {
        if (len == 0) {
            rc = semd_err_set(err, SEMD_EFORMAT, "%s:%" PRIu64 ": empty "
                              "token", path, s.line);
            break;
        }
        if ((rc = vocab_set(v, path, line, len, id++, rows, err)) != 0) {
            rc = conv_wrap(err, rc, "line %" PRIu64, s.line);
            break;
        }
    }
    src_close(&s);
    return rc < 0 ? rc : 0;
}

static int
load_vocab(struct vocab *v, const char *path, uint64_t rows,
           struct semd_err *err)
{
    v->n = rows;
    if (!(v->tok = calloc(rows, sizeof *v->tok)))
        return semd_err_set(err, SEMD_ENOMEM, "out of memory");
    FILE *f = fopen(path, "rb");
    if (!f)
        return semd_err_set(err, SEMD_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t')
        ;
    fclose(f);
    if (c == EOF)
        return semd_err_set(err, SEMD_EFORMAT, "%s: empty file", path);
    return c == '{' ? vocab_json(v, path, rows, err)
                    : vocab_lines(v, path, rows, err);
}

/* Finds the tensor: by name, or the only 2-D one. */
static int
pick_tensor(json_t *hdr, const char *path, const char *want,
            const char **name, json_t **t, struct semd_err *err)
{
    if (want) {
        *t = json_object_get(hdr, want);
        if (!json_is_object(*t))
            return semd_err_set(err, SEMD_EINVAL, "%s: no tensor named "
                                "\"%s\"", path, want);
        *name = want;
        return 0;
    }
    const char *key;
    json_t *val;
    char names[256] = "";
    int found = 0;
    json_object_foreach(hdr, key, val) {
        json_t *shape = json_object_get(val, "shape");
        if (!strcmp(key, "__metadata__") || json_array_size(shape) != 2)
            continue;
        if (found++ == 0) {
            *name = key;
            *t = val;
        }
        size_t n = strlen(names);
        snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", key);
    }
    if (found == 1)
        return 0;
    if (found == 0)
        return semd_err_set(err, SEMD_EFORMAT, "%s: no 2-D tensor", path);
    return semd_err_set(err, SEMD_EINVAL, "%s: %d 2-D tensors (%s); choose "
                        "one with --tensor NAME", path, found, names);
}

/* The tokenizer to keep, or NULL: from --vocab and --merges (failure is
 * an error), or from a tokenizer.json with merges (failure only leaves it
 * out, with a note: such a file may hold a BPE that is not byte-level).
 * Checks that its ids are rows named by the same tokens. */
static int
load_tokenizer(struct semd_tokenizer **out, const struct conv_opts *o,
               const struct vocab *v, struct semd_err *err)
{
    *out = NULL;
    if (!o->merges && !v->merges)
        return 0;
    if (!o->merges && o->limit) {
        fprintf(stderr, "semd convert: %s: tokenizer left out: --limit "
                "drops rows its tokens need\n", o->vocab);
        return 0;
    }
    struct semd_tokenizer *t;
    struct semd_err e2 = {0};
    int rc = semd_tokenizer_load(&t, o->vocab, o->merges, &e2);
    if (rc) {
        if (o->merges)
            return semd_err_set(err, rc, "%s", e2.msg);
        fprintf(stderr, "semd convert: %s: tokenizer left out: %s\n",
                o->vocab, e2.msg);
        return 0;
    }
    uint32_t n = semd_tokenizer_size(t);
    if (n > v->n) {
        semd_tokenizer_free(t);
        return semd_err_set(err, SEMD_EFORMAT, "%s: the tokenizer has %u "
                            "tokens but tensor \"%s\" only %zu rows",
                            o->in, n, o->tensor ? o->tensor : "", v->n);
    }
    for (uint32_t id = 0; id < n; id++) {
        const char *s = semd_tokenizer_token(t, id, NULL);
        if (!v->tok[id] || !s || strcmp(s, v->tok[id]) != 0) {
            rc = semd_err_set(err, SEMD_EFORMAT, "%s: id %u is \"%.100s\" "
                              "in the tokenizer but \"%.100s\" in the "
                              "vocabulary", o->vocab, id, s ? s : "",
                              v->tok[id] ? v->tok[id] : "(nothing)");
            semd_tokenizer_free(t);
            return rc;
        }
    }
    *out = t;
    return 0;
}

int
fmt_safetensors_convert(const struct conv_opts *o, struct semd_err *err)
{
    const char *path = o->in;
    int fd = -1, rc;
    unsigned char *map = MAP_FAILED;
    size_t map_size = 0;
    json_t *hdr = NULL;
    struct vocab v = {0};
    struct semd_tokenizer *tok = NULL;
    struct semd_writer *w = NULL;
    float *vec = NULL;
    char *hbuf = NULL;
    struct progress prog;
    progress_start(&prog, o->progress, 0);

    if (!o->vocab)
        return semd_err_set(err, SEMD_EINVAL, "%s: safetensors input needs "
                            "its vocabulary: --vocab FILE", path);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return semd_err_set(err, SEMD_EIO, "%s: cannot open: %s", path,
                            strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = semd_err_set(err, SEMD_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    unsigned char lenbuf[8];
    if (size < 8 || pread(fd, lenbuf, 8, 0) != 8) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: %" PRIu64 " bytes: too "
                          "short for safetensors (8-byte header length)",
                          path, size);
        goto out;
    }
    uint64_t hlen = rd64(lenbuf);
    if (hlen < 2 || hlen > MAX_HEADER || hlen > size - 8) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: byte 0: header length %"
                          PRIu64 " does not fit the file of %" PRIu64
                          " bytes (not safetensors?)", path, hlen, size);
        goto out;
    }
    if (!(hbuf = malloc(hlen)) ||
        pread(fd, hbuf, hlen, 8) != (ssize_t)hlen) {
        rc = semd_err_set(err, SEMD_EIO, "%s: cannot read the header",
                          path);
        goto out;
    }
    json_error_t je;
    hdr = json_loadb(hbuf, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(hdr)) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: byte %d: bad JSON header: "
                          "%s", path, 8 + je.position, je.text);
        goto out;
    }
    const char *name = NULL;
    json_t *t = NULL;
    if ((rc = pick_tensor(hdr, path, o->tensor, &name, &t, err)) != 0)
        goto out;
    const char *dtype = json_string_value(json_object_get(t, "dtype"));
    json_t *shape = json_object_get(t, "shape");
    json_t *offs = json_object_get(t, "data_offsets");
    size_t esize = 0;
    if (dtype && !strcmp(dtype, "F32"))
        esize = 4;
    else if (dtype && (!strcmp(dtype, "F16") || !strcmp(dtype, "BF16")))
        esize = 2;
    if (!esize) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: tensor \"%s\" has dtype "
                          "\"%s\"; expected F32, F16 or BF16", path, name,
                          dtype ? dtype : "?");
        goto out;
    }
    if (json_array_size(shape) != 2 ||
        !json_is_integer(json_array_get(shape, 0)) ||
        !json_is_integer(json_array_get(shape, 1)) ||
        json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1))) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: tensor \"%s\": expected "
                          "a shape [rows, dims] and data_offsets [begin, "
                          "end]", path, name);
        goto out;
    }
    json_int_t r0 = json_integer_value(json_array_get(shape, 0));
    json_int_t d0 = json_integer_value(json_array_get(shape, 1));
    json_int_t b0 = json_integer_value(json_array_get(offs, 0));
    json_int_t e0 = json_integer_value(json_array_get(offs, 1));
    if (r0 <= 0 || d0 <= 0 || d0 > 65536 || r0 > (json_int_t)MODEL_MAX_ROWS) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: tensor \"%s\": shape [%"
                          JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
                          "] out of range", path, name, r0, d0);
        goto out;
    }
    uint64_t rows = (uint64_t)r0, dims = (uint64_t)d0;
    uint64_t data = 8 + hlen;
    if (b0 < 0 || e0 < b0 ||
        (uint64_t)(e0 - b0) != rows * dims * esize ||
        data + (uint64_t)e0 > size) {
        rc = semd_err_set(err, SEMD_EFORMAT, "%s: tensor \"%s\": "
                          "data_offsets [%" JSON_INTEGER_FORMAT ", %"
                          JSON_INTEGER_FORMAT "] do not hold %" PRIu64
                          " x %" PRIu64 " %s values within the file of %"
                          PRIu64 " bytes (truncated?)", path, name, b0, e0,
                          rows, dims, dtype, size);
        goto out;
    }
    if ((rc = load_vocab(&v, o->vocab, rows, err)) != 0 ||
        (rc = load_tokenizer(&tok, o, &v, err)) != 0)
        goto out;
    map_size = (size_t)size;
    map = mmap(NULL, map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = semd_err_set(err, SEMD_EIO, "%s: cannot map: %s", path,
                          strerror(errno));
        goto out;
    }
    madvise(map, map_size, MADV_SEQUENTIAL);
    char format[32];
    snprintf(format, sizeof format, "safetensors-%s", dtype);
    for (char *p = format; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if ((rc = conv_writer_open(&w, o, (uint32_t)dims, format,
                               SEMD_MODEL_COUNTS_ARE_RANKS, err)) != 0)
        goto out;
    if (!(vec = malloc(dims * sizeof *vec))) {
        rc = semd_err_set(err, SEMD_ENOMEM, "out of memory");
        goto out;
    }
    const unsigned char *base = map + data + (uint64_t)b0;
    uint64_t kept = 0, skipped = 0, dropped = 0;
    size_t pagesz = (size_t)sysconf(_SC_PAGESIZE);
    for (uint64_t r = 0; r < rows && !(o->limit && kept == o->limit); r++) {
        if (conv_interrupted()) {
            rc = semd_err_set(err, SEMD_EIO, "%s: interrupted at row %" PRIu64
                              "; nothing written", path, r);
            goto out;
        }
        if (!v.tok[r]) {
            skipped++;
            continue;
        }
        /* with a tokenizer, a gap would shift every later row off its
         * token id (load_tokenizer made sure its own ids have rows) */
        if (tok && skipped) {
            rc = semd_err_set(err, SEMD_EFORMAT, "%s: row %" PRIu64 " (\"%"
                              ".100s\") follows a row without a token, so "
                              "rows could not keep their token ids", path, r,
                              v.tok[r]);
            goto out;
        }
        const unsigned char *p = base + r * dims * esize;
        if (esize == 4) {
            memcpy(vec, p, dims * 4);
        } else {
            for (uint64_t i = 0; i < dims; i++) {
                uint16_t h;
                memcpy(&h, p + 2 * i, 2);
                vec[i] = dtype[0] == 'F' ? f16_to_f32(h) : bf16_to_f32(h);
            }
        }
        if ((rc = semd_writer_add(w, v.tok[r], strlen(v.tok[r]), vec, 0,
                                  err)) != 0) {
            rc = conv_wrap(err, rc, "%s: row %" PRIu64, path, r);
            goto out;
        }
        kept++;
        uint64_t done = (uint64_t)(p - map);
        if (done - dropped > DROP_WINDOW) {
            uint64_t upto = done & ~(uint64_t)(pagesz - 1);
            madvise(map + dropped, upto - dropped, MADV_DONTNEED);
            dropped = upto;
        }
        progress_update(&prog, kept, 0);
    }
    if (skipped && !(o->limit && kept == o->limit))
        fprintf(stderr, "semd convert: %s: %" PRIu64 " of %" PRIu64 " rows "
                "have no token in %s and were left out\n", path, skipped,
                rows, o->vocab);
    if (tok && (rc = semd_writer_set_tokenizer(w, tok, err)) != 0)
        goto out;
    rc = semd_writer_finish(w, err);
    w = NULL;
    if (!rc)
        progress_done(&prog, kept);
out:
    semd_writer_abort(w);
    semd_tokenizer_free(tok);
    free(vec);
    vocab_free(&v);
    json_decref(hdr);
    free(hbuf);
    if (map != MAP_FAILED)
        munmap(map, map_size);
    if (fd >= 0)
        close(fd);
    return rc;
}
