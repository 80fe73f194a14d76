/*
 * semd.h - the public interface of libsemd, the core of the semd daemon.
 *
 * libsemd maps an embedding model file, looks words up, searches rows by
 * cosine similarity and answers neighbour, similarity and analogy queries.
 * It knows nothing of HTTP or JSON: server/ translates.
 *
 * Conventions (see STYLE.md):
 *  - Functions return 0 on success or a negative SEMD_E* code. Results come
 *    back through out-parameters, written only on success.
 *  - The last argument of a fallible call is an optional struct semd_err *
 *    (may be NULL) that receives a human-readable message: lowercase, no
 *    final full stop, offending values quoted.
 *  - _open/_close for things backed by files, _new/_free for heap objects.
 *    Every _close/_free accepts NULL.
 *  - Pointers into a model (words, rows) are borrowed: valid until the model
 *    is closed. Never write through them.
 *  - Everything that only reads a model or an index may be called from many
 *    threads at once.
 */
#ifndef SEMD_H
#define SEMD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

enum semd_code {
    SEMD_OK = 0,
    SEMD_EINVAL = -1,    /* invalid argument */
    SEMD_ENOMEM = -2,    /* out of memory */
    SEMD_ENOWORD = -3,   /* word not in the vocabulary */
    SEMD_EIO = -4,       /* input/output error */
    SEMD_EFORMAT = -5,   /* malformed model or input file */
    SEMD_ECORRUPT = -6,  /* checksum mismatch */
    SEMD_EINDEX = -7,    /* the index library failed */
    SEMD_EBUSY = -8,     /* resource busy (training already running) */
    SEMD_ESHUTDOWN = -9, /* shutting down */
};

#define SEMD_ERR_MSG 512

/* Caller-allocated error detail. code repeats the returned code. */
struct semd_err {
    int code;
    char msg[SEMD_ERR_MSG];
};

/* Static text for a code ("word not in vocabulary"); never NULL. */
const char *semd_strerror(int code);

/* Formats into err (if not NULL) and returns code, so callers can write
 * `return semd_err_set(err, SEMD_EINVAL, "k must be positive, got %d", k);` */
int semd_err_set(struct semd_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ----------------------------------------------------------- model files */

/*
 * A model file holds a vocabulary and its matrix, mapped read-only. Opening
 * checks the structure only (O(1) in the vocabulary size); semd_model_verify
 * reads every byte and checks the checksums. The layout is documented atop
 * core/model.c.
 */
struct semd_model;

#define SEMD_MODEL_FORMAT_VERSION 1
#define SEMD_MAX_WORD 1024 /* bytes in one word, without the NUL */

enum semd_dtype { SEMD_DTYPE_F32 = 0 };

/* Model flags. */
#define SEMD_MODEL_COUNTS_ARE_RANKS 0x1u /* the source had no frequencies */

struct semd_model_info {
    uint64_t rows;
    uint32_t dims;
    uint32_t dtype;       /* enum semd_dtype */
    uint32_t flags;       /* SEMD_MODEL_* */
    uint32_t version;     /* format version of the file */
    uint64_t created;     /* seconds since the epoch */
    uint64_t file_size;   /* bytes */
    uint32_t checksum;    /* CRC-32C over the section checksums: names the content */
    char source_format[32]; /* "glove-text", "word2vec-binary", ... */
    char source[160];     /* base name of the converted input */
};

/* Maps path. On failure err names the file, the offset and what was
 * expected. *out is freed with semd_model_close. */
int semd_model_open(struct semd_model **out, const char *path,
                    struct semd_err *err);
void semd_model_close(struct semd_model *m);

void semd_model_get_info(const struct semd_model *m,
                         struct semd_model_info *out);
uint64_t semd_model_rows(const struct semd_model *m);
uint32_t semd_model_dims(const struct semd_model *m);
/* The path the model was opened from; borrowed. */
const char *semd_model_path(const struct semd_model *m);

/* Reads the whole file and checks every section checksum: SEMD_ECORRUPT
 * names the first bad section. */
int semd_model_verify(const struct semd_model *m, struct semd_err *err);

/* Exact, case-sensitive look-up of len bytes. SEMD_ENOWORD if absent. */
int semd_model_lookup(const struct semd_model *m, const char *word,
                      size_t len, uint64_t *row);

/* The word of a row, NUL-terminated, borrowed; *len (if not NULL) gets its
 * length. row must be < rows. */
const char *semd_model_word(const struct semd_model *m, uint64_t row,
                            size_t *len);

/* Raw (not normalised) vector of a row, dims floats, borrowed. */
const float *semd_model_row(const struct semd_model *m, uint64_t row);
/* The whole matrix, rows x dims, row-major, 64-byte aligned, borrowed. */
const float *semd_model_matrix(const struct semd_model *m);
/* L2 norm of each row, rows floats, borrowed. */
const float *semd_model_norms(const struct semd_model *m);
/* Frequency count of a row, or its 1-based rank when the model has
 * SEMD_MODEL_COUNTS_ARE_RANKS. Rows are ordered most frequent first. */
uint64_t semd_model_count(const struct semd_model *m, uint64_t row);

/*
 * The 8-bit copy of the unit-normalised rows, for fast exact search.
 * codes: rows x dims int8, q = round(127 * u_i / max_i |u_i|).
 * aux:   rows x 2 floats {scale, l1}: u_i ~ scale * q_i with
 *        |u_i - scale * q_i| <= scale / 2, and l1 = scale * sum_i |q_i|.
 * Both borrowed. A row whose norm is zero has scale 0 and zero codes.
 */
void semd_model_q8(const struct semd_model *m, const int8_t **codes,
                   const float **aux);

/* ---------------------------------------------------------- model writer */

/*
 * Writes a model file row by row with memory proportional to the vocabulary
 * strings, not the matrix: rows go straight to a temporary file beside the
 * destination, which is renamed into place by semd_writer_finish. Rows must
 * be added most frequent first.
 */
struct semd_writer;

struct semd_writer_opts {
    const char *source_format; /* e.g. "glove-text"; may be NULL */
    const char *source;        /* input name; may be NULL */
    uint32_t flags;            /* SEMD_MODEL_* */
};

int semd_writer_open(struct semd_writer **out, const char *path,
                     uint32_t dims, const struct semd_writer_opts *opts,
                     struct semd_err *err);

/* Appends a row. word must be valid UTF-8 without NUL, 1..SEMD_MAX_WORD
 * bytes, and new (SEMD_EINVAL names a duplicate). vec holds dims finite
 * floats (SEMD_EINVAL on NaN or Inf), or is NULL to fill the row later
 * with semd_writer_set_row. count is ignored (rank used) when the writer
 * has SEMD_MODEL_COUNTS_ARE_RANKS. */
int semd_writer_add(struct semd_writer *w, const char *word, size_t len,
                    const float *vec, uint64_t count, struct semd_err *err);

/* Fills (or overwrites) row, which must have been added. */
int semd_writer_set_row(struct semd_writer *w, uint64_t row,
                        const float *vec, struct semd_err *err);

uint64_t semd_writer_rows(const struct semd_writer *w);

/* Writes the remaining sections, checksums and header, fsyncs, renames the
 * temporary file to path and frees w, whatever the outcome (on failure the
 * temporary file is removed and path is untouched). Fails with SEMD_EINVAL
 * if a row was never filled or no row was added. */
int semd_writer_finish(struct semd_writer *w, struct semd_err *err);

/* Removes the temporary file and frees w. */
void semd_writer_abort(struct semd_writer *w);

/* ----------------------------------------------------------------- index */

/*
 * An index answers "which rows are most similar (by cosine) to this
 * vector". The exact index scores the mapped rows in place (no copy of the
 * matrix); approximate ones are FAISS indexes made from a factory string,
 * saved beside the model and reloaded without a rebuild.
 */
struct semd_index;

struct semd_index_opts {
    const char *factory; /* NULL or "Flat": exact; else a FAISS factory
                            string such as "HNSW32" or "IVF1024,SQ8" */
    const char *path;    /* where the approximate index is saved; NULL:
                            beside the model, named after the factory */
    int threads;         /* threads for building; 0: all cores */
    int progress;        /* nonzero: progress lines on stderr while building */
    int rebuild;         /* nonzero: ignore a saved index */
};

struct semd_hit {
    uint64_t row;
    float score; /* cosine similarity */
};

/* Parameters of one search; all-zero gives the defaults noted. */
struct semd_search {
    uint32_t k;                /* hits wanted, >= 1 */
    uint64_t restrict_rows;    /* search only the first N (most frequent)
                                  rows; 0: all */
    int use_min_similarity;    /* nonzero: drop hits scoring below */
    float min_similarity;
    const uint64_t *exclude;   /* rows never returned; borrowed */
    size_t n_exclude;
    uint32_t ef_search;        /* HNSW; 0: the index's default */
    uint32_t nprobe;           /* IVF; 0: the index's default */
    int rerank;                /* approximate: rescore candidates exactly */
};

/* Loads or builds the index for m; m must outlive it. */
int semd_index_open(struct semd_index **out, const struct semd_model *m,
                    const struct semd_index_opts *opts, struct semd_err *err);
void semd_index_close(struct semd_index *ix);

/* "Flat" for exact, else the factory string; borrowed. */
const char *semd_index_factory(const struct semd_index *ix);
int semd_index_is_exact(const struct semd_index *ix);

/* Top hits for one query of dims floats (any non-zero length; scores are
 * cosines). hits has room for s->k; *n_hits gets how many were written
 * (fewer than k when rows run out or min_similarity cuts), best first. */
int semd_index_search(const struct semd_index *ix, const float *query,
                      const struct semd_search *s, struct semd_hit *hits,
                      uint32_t *n_hits, struct semd_err *err);

/* nq queries at once (nq x dims floats, row-major), scored together with
 * one matrix product where the index is exact. s holds nq parameter sets;
 * hits has room for nq x k_max where k_max is the largest s[i].k, query i
 * writing at hits + i * k_max; n_hits has nq entries. */
int semd_index_search_batch(const struct semd_index *ix, const float *queries,
                            size_t nq, const struct semd_search *s,
                            struct semd_hit *hits, uint32_t *n_hits,
                            struct semd_err *err);

/* ---------------------------------------------------------------- queries */
/* (query.c: expressions, neighbours, similarity, analogies; see below) */

#ifdef __cplusplus
}
#endif

#endif /* SEMD_H */
