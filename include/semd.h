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
    uint32_t checksum;    /* CRC-32C of section checksums; names the content */
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

/* Words starting with prefix (len bytes; case-sensitive), most frequent
 * first: up to cap rows into rows, *n how many. O(log rows + matches). */
int semd_model_prefix(const struct semd_model *m, const char *prefix,
                      size_t len, uint64_t *rows, size_t cap, size_t *n);

/* ---------------------------------------------------------- model writer */

/*
 * Writes a model file row by row with memory proportional to the vocabulary
 * strings, not the matrix: rows go straight to a temporary file beside the
 * destination, which is renamed into place by semd_writer_finish. Rows must
 * be added most frequent first.
 */
struct semd_writer;

/* A writer flag, not stored in the file: finish renames the file into
 * place without fsync (of the file or its directory); the caller makes
 * it durable later, e.g. when it persists it. */
#define SEMD_WRITER_NO_SYNC 0x80000000u

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
    /* not NULL: asked between chunks of rows while building; nonzero
     * stops the build (SEMD_ESHUTDOWN) */
    int (*cancel)(void *arg);
    void *cancel_arg;
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

/* The model an index searches; borrowed. */
const struct semd_model *semd_index_model(const struct semd_index *ix);

/* Nonzero when an approximate index was read from its saved file rather
 * than built. */
int semd_index_loaded(const struct semd_index *ix);

/* Why an approximate index was built instead of loaded ("no saved index at
 * ...", "... built for another model or factory", "rebuild requested"),
 * and whether saving it failed; "" for the exact index or a loaded one.
 * Borrowed, for the log. */
const char *semd_index_note(const struct semd_index *ix);

/* Where an approximate index is saved; NULL for the exact index. */
const char *semd_index_path(const struct semd_index *ix);

/*
 * A delta index answers for a model that differs from an older one in a
 * few rows, while the older one's approximate index is all there is: a
 * row of m whose word base's model has with a bit-identical vector is
 * found through base's approximate index; every other row of m (changed
 * or new) is scored exactly, by a scan. Both lists are scored exactly
 * against m and merged, so changed and new rows are never missed and
 * never scored with a stale vector. Its factory is the base's with
 * "+exact-delta" appended; it is not exact. Building it reads every row
 * of m once (a look-up and a comparison per row).
 */
struct semd_snapshot;

/* A delta index of m over base, whose index must be approximate (not
 * exact, not itself a delta: SEMD_EINVAL) with m's dimensions. Takes a
 * reference to base, dropped by semd_index_close; m must outlive the
 * index. */
int semd_index_open_delta(struct semd_index **out, const struct semd_model *m,
                          struct semd_snapshot *base, struct semd_err *err);
/* Rows a delta index scores by scan (changed or new); 0 for other
 * indexes. */
uint64_t semd_index_delta_rows(const struct semd_index *ix);
/* The snapshot a delta index uses; NULL for other indexes. Borrowed. */
const struct semd_snapshot *semd_index_delta_base(const struct semd_index *ix);

/*
 * Thread policy, process-wide; call once at start before any search.
 * blas: threads one OpenBLAS call may use (1 when the caller runs its own
 * pool of query threads); omp: OpenMP threads for FAISS searches. 0 leaves
 * a setting as it is. Building an index uses semd_index_opts.threads.
 */
void semd_set_threads(int blas, int omp);

/* ---------------------------------------------------------------- queries */

/*
 * Queries work on terms: a word (resolved exactly, then lower-cased; on a
 * model carrying a tokenizer, as tokens: see semd_resolve_word), or a raw
 * vector, each with a weight (+1 positive, -1 negative, or any). Words are
 * combined as gensim does: the weighted mean of their unit vectors (raw
 * vectors enter as given), normalised. Input words (every token of a word
 * made of tokens) are excluded from the answers unless asked otherwise.
 */

/* How a term was resolved. */
enum semd_prov {
    SEMD_PROV_EXACT = 0,       /* found as given */
    SEMD_PROV_CASE_FOLDED = 1, /* found only lower-cased */
    SEMD_PROV_MISSING = 2,     /* not found: the query fails, naming it */
    SEMD_PROV_VECTOR = 3,      /* a raw vector, not a word */
    /* On a model carrying a tokenizer (rows named by tokens): */
    SEMD_PROV_TOKEN_SPACE = 4, /* the token of " " + word: "king" is
                                  "\u0120king", the word after a space */
    SEMD_PROV_TOKEN_BARE = 5,  /* the token of the word's own bytes */
    SEMD_PROV_TOKEN_MEAN = 6,  /* no one token: the mean of the raw rows of
                                  the tokens of " " + word */
};

/* Name of a provenance: "exact", "case_folded", "missing", "vector",
 * "token_space", "token_bare", "token_mean". */
const char *semd_prov_name(int prov);

struct semd_term {
    const char *word; /* borrowed; len bytes, need not be NUL-terminated */
    size_t len;
    const float *vec; /* instead of a word: dims floats; borrowed */
    float weight;
};

#define SEMD_TERM_TOKENS 16 /* tokens one word may resolve to */

/* What a term resolved to. row is UINT64_MAX for a vector, a miss or a
 * mean of tokens. */
struct semd_term_info {
    uint64_t row;
    int prov; /* enum semd_prov */
    /* The tokens of a token provenance (1 for TOKEN_SPACE and TOKEN_BARE,
     * 2..SEMD_TERM_TOKENS for TOKEN_MEAN): their ids and rows. n_tokens is
     * 0 for every other provenance. Inputs excluded from answers are
     * these rows. */
    uint32_t n_tokens;
    uint32_t token_ids[SEMD_TERM_TOKENS];
    uint64_t token_rows[SEMD_TERM_TOKENS];
};

/* Resolves a word to one row. On a model without a tokenizer: exact, else
 * its lower-cased form (ASCII and UTF-8 letters that have a simple lower
 * case). On a model with one: the token of " " + word, else of the word's
 * own bytes, else the row named exactly as given ("\u0120king" typed in
 * byte-level form). SEMD_ENOWORD if none. */
int semd_resolve(const struct semd_model *m, const char *word, size_t len,
                 struct semd_term_info *out);

/* As semd_resolve, and then, on a model with a tokenizer, a word that is
 * no single token resolves to the mean of the raw rows of the tokens of
 * " " + word (of the word alone when it starts with whitespace), as it
 * would be tokenized after a space in running text: prov
 * SEMD_PROV_TOKEN_MEAN, row UINT64_MAX. SEMD_ENOWORD when it needs more
 * than SEMD_TERM_TOKENS tokens or a token has no row. What queries use. */
int semd_resolve_word(const struct semd_model *m, const char *word,
                      size_t len, struct semd_term_info *out);

/* How a row reads, into buf (cap >= 1 bytes, NUL-terminated): on a model
 * with a tokenizer, the text of its token (" king" for "\u0120king"),
 * each byte that is not part of valid UTF-8 (a token may hold part of a
 * character) shown as U+FFFD; otherwise the row's word. Cut at a character
 * boundary if buf is short: 3 * SEMD_MAX_WORD + 1 bytes always suffice.
 * *token (may be NULL) gets the token id, UINT32_MAX when the row is no
 * token. SEMD_EINVAL if row is out of range. */
int semd_model_display_word(const struct semd_model *m, uint64_t row,
                            char *buf, size_t cap, uint32_t *token);

/*
 * An expression is text such as "king - man + woman", "0.5*paris + berlin"
 * or "king-man woman" (whitespace between terms means +, as a URL's + turns
 * into a space). A word containing operator characters is written in double
 * quotes: "\"e-mail\" - mail". Parsing only splits the text; words are
 * resolved by the query that uses the terms.
 */
struct semd_expr {
    struct semd_term *terms; /* words point into text */
    size_t n_terms;
    char *text;              /* the expression's own copy */
};

#define SEMD_MAX_TERMS 64
#define SEMD_MAX_EXPR 4096 /* bytes in one expression */

/* Parses len bytes of text into *out, released with semd_expr_release.
 * SEMD_EINVAL with the byte offset of the error. */
int semd_expr_parse(struct semd_expr *out, const char *text, size_t len,
                    struct semd_err *err);
void semd_expr_release(struct semd_expr *e);

/* Combines terms into one unit query vector (dims floats into out). info
 * (n_terms entries) is filled even on failure: on SEMD_ENOWORD every
 * missing word has prov SEMD_PROV_MISSING and err names them all. */
int semd_combine(const struct semd_model *m, const struct semd_term *terms,
                 size_t n_terms, float *out, struct semd_term_info *info,
                 struct semd_err *err);

/* Nearest neighbours of the combination of terms. s->k hits into hits;
 * the input words are added to the excluded rows unless keep_inputs. info
 * as for semd_combine. */
int semd_neighbors(const struct semd_index *ix, const struct semd_term *terms,
                   size_t n_terms, const struct semd_search *s,
                   int keep_inputs, struct semd_hit *hits, uint32_t *n_hits,
                   struct semd_term_info *info, struct semd_err *err);

/* One query of a batch: inputs, then outputs written by the call. */
struct semd_nquery {
    const struct semd_term *terms;
    size_t n_terms;
    struct semd_search search;
    int keep_inputs;
    struct semd_hit *hits;       /* room for search.k; caller's */
    struct semd_term_info *info; /* n_terms entries; caller's */
    uint32_t n_hits;             /* out */
    int rc;                      /* out: 0 or this query's error */
    struct semd_err err;         /* out: detail when rc != 0 */
};

/* Many neighbour queries scored together (one matrix product where the
 * index is exact). Returns 0 when the batch ran, even if single queries
 * failed: each has its own rc. */
int semd_neighbors_batch(const struct semd_index *ix, struct semd_nquery *q,
                         size_t nq, struct semd_err *err);

/* Cosine similarity of two terms. info has 2 entries. */
int semd_similarity(const struct semd_model *m, const struct semd_term *a,
                    const struct semd_term *b, float *out,
                    struct semd_term_info *info, struct semd_err *err);

/* Cosine of the means of the raw vectors of two term sets, as gensim's
 * n_similarity computes it; weights are ignored. info has na + nb
 * entries. */
int semd_n_similarity(const struct semd_model *m, const struct semd_term *a,
                      size_t na, const struct semd_term *b, size_t nb,
                      float *out, struct semd_term_info *info,
                      struct semd_err *err);

enum semd_analogy_method {
    SEMD_3COSADD = 0, /* cos(x, b) - cos(x, a) + cos(x, c), via the mean */
    SEMD_3COSMUL = 1, /* gensim most_similar_cosmul: cosines shifted to
                         [0, 1], product of positives over product of
                         negatives plus 1e-6 */
};

/* Why the answer is the answer: filled for the best hit. */
struct semd_explain {
    float term_cos[SEMD_MAX_TERMS]; /* each term's cosine with the answer */
    uint64_t rank_with_inputs;      /* 1-based rank of the answer had the
                                       inputs not been excluded */
    float margin;                   /* score of the answer - runner-up */
    int methods_agree;              /* 3CosAdd and 3CosMul agree on top */
    uint64_t other_row;             /* the other method's top answer */
    float other_score;
};

/* Analogy over weighted terms (positive weight: positive, negative:
 * negative), e.g. king(+1) man(-1) woman(+1). Scores are the method's
 * (cosines for 3CosAdd). explain may be NULL. */
int semd_analogy(const struct semd_index *ix, const struct semd_term *terms,
                 size_t n_terms, int method, const struct semd_search *s,
                 struct semd_hit *hits, uint32_t *n_hits,
                 struct semd_explain *explain, struct semd_term_info *info,
                 struct semd_err *err);

/* The term that does not belong (gensim doesnt_match): *odd gets its index
 * in terms; sims (n_terms entries, may be NULL) each term's cosine with the
 * mean of all. Needs at least 2 terms. */
int semd_odd_one_out(const struct semd_model *m, const struct semd_term *terms,
                     size_t n_terms, size_t *odd, float *sims,
                     struct semd_term_info *info, struct semd_err *err);

/* 1-based rank of b among the neighbours of a (gensim rank): 1 + how many
 * words are closer to a than b is. */
int semd_rank(const struct semd_model *m, const struct semd_term *a,
              const struct semd_term *b, uint64_t *rank,
              struct semd_term_info *info, struct semd_err *err);

/* -------------------------------------------------------------- snapshots */

/*
 * A snapshot is an immutable bundle of a model, an index of it, a version
 * number and the time it was made. Readers hold a reference for the length
 * of one request; the last release closes the index and the model. A
 * holder names the current snapshot: publishing swaps it atomically, and
 * readers never block on a search or see half an update. See the comment
 * atop core/snapshot.c. All functions here are thread-safe.
 */
struct semd_snapshot;
struct semd_holder;

/* Bundles m and ix (an index of m) with one reference, the caller's. On
 * success the snapshot owns both; on failure the caller still does. */
int semd_snapshot_new(struct semd_snapshot **out, struct semd_model *m,
                      struct semd_index *ix, uint64_t version,
                      struct semd_err *err);
/* Takes one more reference; returns s (NULL stays NULL). */
struct semd_snapshot *semd_snapshot_acquire(struct semd_snapshot *s);
/* Drops one reference; the last one frees. Accepts NULL. */
void semd_snapshot_release(struct semd_snapshot *s);
/* Borrowed, valid while the caller holds a reference. */
const struct semd_model *semd_snapshot_model(const struct semd_snapshot *s);
const struct semd_index *semd_snapshot_index(const struct semd_snapshot *s);
uint64_t semd_snapshot_version(const struct semd_snapshot *s);
/* Seconds since the epoch when the snapshot was made. */
double semd_snapshot_loaded_at(const struct semd_snapshot *s);

/* An empty holder; freed with semd_holder_free, which drops the current
 * snapshot. */
int semd_holder_new(struct semd_holder **out, struct semd_err *err);
void semd_holder_free(struct semd_holder *h);
/* A new reference to the current snapshot (release it), or NULL when none
 * has been published yet. */
struct semd_snapshot *semd_holder_acquire(struct semd_holder *h);
/* Makes s current, taking over the caller's reference to it (also on
 * failure, when s is released), and drops the holder's reference to the
 * previous one. SEMD_EINVAL if s is not newer than the current version. */
int semd_holder_publish(struct semd_holder *h, struct semd_snapshot *s,
                        struct semd_err *err);
/* Makes s current in place of the current snapshot of the same version
 * (the same model with another index), taking over the caller's
 * reference (also on failure, when s is released). SEMD_EBUSY when the
 * current version is not s's (a newer one was published). */
int semd_holder_replace(struct semd_holder *h, struct semd_snapshot *s,
                        struct semd_err *err);
/* Version of the current snapshot, 0 before the first publish. */
uint64_t semd_holder_version(struct semd_holder *h);

/* ------------------------------------------------------------- evaluation */

struct semd_eval_section {
    char name[64];
    uint64_t correct, evaluated, questions;
};

struct semd_eval_analogies {
    uint64_t correct, evaluated, questions; /* totals */
    size_t n_sections;
    struct semd_eval_section *sections;
};

/* gensim evaluate_word_analogies(case_insensitive=True) on a
 * questions-words file: words upper-cased for look-up (the most frequent
 * variant wins), questions with a word outside the first restrict_rows
 * (0: all) skipped and counted. Release with semd_eval_analogies_release. */
int semd_eval_analogies(const struct semd_index *ix, const char *path,
                        uint64_t restrict_rows, int method,
                        struct semd_eval_analogies *out, struct semd_err *err);
void semd_eval_analogies_release(struct semd_eval_analogies *r);

struct semd_eval_pairs {
    double spearman, pearson, oov_ratio; /* oov_ratio in percent */
    uint64_t pairs, oov;
};

/* gensim evaluate_word_pairs(case_insensitive=True) on a tab- or
 * space-separated "word word score" file with # comments. */
int semd_eval_pairs(const struct semd_model *m, const char *path,
                    uint64_t restrict_rows, struct semd_eval_pairs *out,
                    struct semd_err *err);

/* --------------------------------------------------------------- journal */

/*
 * The journal keeps text posted for training, durably and in order, until a
 * persisted snapshot includes it. It lives in a directory of segment files
 * (journal-<first sequence number>.log); each record is length-prefixed and
 * CRC-32C checksummed and gets the next sequence number (1, 2, ...). Damage
 * found at open (a torn tail after a crash, a flipped byte) is reported and
 * skipped; a damaged tail is truncated so new records never follow it.
 *
 * Every function may be called from any thread; appends are serialised
 * inside. A reader belongs to one thread.
 */
struct semd_journal;
struct semd_journal_reader;

#define SEMD_JOURNAL_MAX_RECORD (256u << 20) /* bytes of one record */

struct semd_journal_opts {
    uint64_t segment_bytes; /* start a new segment past this size;
                               0: 64 MiB */
};

/* What semd_journal_open found. */
struct semd_journal_report {
    uint64_t segments;
    uint64_t records, bytes;      /* valid records and their payload bytes */
    uint64_t first_seq;           /* of the oldest valid record; 0: none */
    /* The last sequence number taken; the next append gets one more. It is
     * the newest valid record's or, when larger, one less than the number
     * the newest segment's file name starts at (its records lost to damage,
     * older ones trimmed away), so it can lie past the last valid record,
     * even when there is none. 0 when no number was ever taken. */
    uint64_t last_seq;
    uint64_t damaged_records;     /* damaged regions skipped or truncated */
    uint64_t damaged_bytes;
    uint64_t first_damage_offset; /* in the segment named in message */
    char message[512];            /* the first damage, "" when none */
};

/* Opens (creating if needed) the journal in dir. report (may be NULL)
 * receives what was found, including damage, which is not an error. */
int semd_journal_open(struct semd_journal **out, const char *dir,
                      const struct semd_journal_opts *opts,
                      struct semd_journal_report *report,
                      struct semd_err *err);
void semd_journal_close(struct semd_journal *j);

/* Appends len bytes (at most SEMD_JOURNAL_MAX_RECORD) and returns only
 * once they are on disk (fdatasync): *seq gets the record's number. */
int semd_journal_append(struct semd_journal *j, const void *data, size_t len,
                        uint64_t *seq, struct semd_err *err);

/* The last sequence number taken, as semd_journal_report.last_seq (0 if
 * none ever); after an append, that record's. */
uint64_t semd_journal_last_seq(struct semd_journal *j);

/* Records after the consumed position, and their payload bytes: the
 * backlog a server bounds before answering 429. */
void semd_journal_backlog(struct semd_journal *j, uint64_t *records,
                          uint64_t *bytes);

/* Marks every record up to seq as consumed (trained). Consumption is not
 * persisted: after a restart, call it with the persisted position. */
void semd_journal_consume(struct semd_journal *j, uint64_t seq);

/* Deletes whole segments whose records are all <= persisted_seq (never the
 * newest segment); *removed (may be NULL) gets how many. */
int semd_journal_trim(struct semd_journal *j, uint64_t persisted_seq,
                      uint64_t *removed, struct semd_err *err);

/* Number of segment files. */
size_t semd_journal_segments(struct semd_journal *j);

/* One record, borrowed from the reader until its next call. data is
 * followed by a NUL byte (not counted in len). */
struct semd_journal_rec {
    uint64_t seq;
    const void *data;
    size_t len;
};

/* A reader returning records with seq >= from_seq in order, then those
 * appended later. SEMD_EINVAL if from_seq was trimmed away. j must
 * outlive the reader. */
int semd_journal_reader_open(struct semd_journal_reader **out,
                             struct semd_journal *j, uint64_t from_seq,
                             struct semd_err *err);
/* 1 with a record in *rec, 0 when there is none yet, or a negative code. */
int semd_journal_reader_next(struct semd_journal_reader *r,
                             struct semd_journal_rec *rec,
                             struct semd_err *err);
void semd_journal_reader_close(struct semd_journal_reader *r);

/* ------------------------------------------------------------- tokenizer */

/*
 * A byte-level BPE tokenizer as GPT-2 has it: text is split by GPT-2's
 * pre-tokenisation pattern ('s 't 're 've 'm 'll 'd, then runs of letters,
 * of numbers, of other characters, each with an optional leading space,
 * then whitespace runs), each piece's bytes become symbols and adjacent
 * symbols merge by rank. Letters, numbers and whitespace are Unicode's
 * general categories L* and N* and property White_Space.
 *
 * Input may be any bytes. A byte that does not start a valid UTF-8
 * sequence (overlong forms, surrogates and code points past U+10FFFF are
 * invalid) counts as one character of the "other" class, as U+FFFD would,
 * and keeps its own byte: decoding the ids gives back the input exactly.
 *
 * A tokenizer is immutable: any number of threads may use one at once.
 */
struct semd_tokenizer;

/* One token of a text: its id and the bytes [start, end) it covers. */
struct semd_token {
    uint32_t id;
    size_t start, end;
};

/* Loads a tokenizer from vocab_path and merges_path: a vocab.json (token to
 * id, ids 0..n-1) with a merges.txt ("a b" lines, an optional "#version"
 * first line), or, with merges_path NULL, a Hugging Face tokenizer.json
 * (model.vocab and model.merges, merges as "a b" strings or [a, b] pairs).
 * Tokens are in byte-level form ("\u0120king" for " king"); every byte's
 * token must be present and every merge's parts and result must be tokens.
 * Freed with semd_tokenizer_free. */
int semd_tokenizer_load(struct semd_tokenizer **out, const char *vocab_path,
                        const char *merges_path, struct semd_err *err);
void semd_tokenizer_free(struct semd_tokenizer *t);

/* Number of tokens (ids are 0..size-1) and of merges. */
uint32_t semd_tokenizer_size(const struct semd_tokenizer *t);
uint32_t semd_tokenizer_merges(const struct semd_tokenizer *t);

/* The token of id in byte-level form ("\u0120king"), NUL-terminated and
 * borrowed; *len its length. NULL when id is out of range. */
const char *semd_tokenizer_token(const struct semd_tokenizer *t, uint32_t id,
                                 size_t *len);

/* The bytes id stands for (" king"), borrowed, not NUL-terminated and not
 * always valid UTF-8 (a token may hold part of a character). NULL when id
 * is out of range. */
const char *semd_tokenizer_bytes(const struct semd_tokenizer *t, uint32_t id,
                                 size_t *len);

/* Id of a token in byte-level form; SEMD_ENOWORD if absent. */
int semd_tokenizer_lookup(const struct semd_tokenizer *t, const char *token,
                          size_t len, uint32_t *id);

/* Id of the token standing for exactly these bytes (" king" gives the id
 * of "\u0120king"), whether or not tokenizing them would produce it;
 * SEMD_ENOWORD if no token does. */
int semd_tokenizer_find(const struct semd_tokenizer *t, const char *bytes,
                        size_t len, uint32_t *id);

/* The merge of rank (0 .. semd_tokenizer_merges - 1): left + right ->
 * result. SEMD_EINVAL when rank is out of range; SEMD_ENOWORD for a pair
 * listed again at a later rank, whose later rank is the one that counts. */
int semd_tokenizer_merge(const struct semd_tokenizer *t, uint32_t rank,
                         uint32_t *left, uint32_t *right, uint32_t *result);

/* Tokenizes len bytes of text: *toks (malloc'd, free() it; NULL when *n is
 * 0) gets *n tokens in text order, their spans covering the text without
 * gaps. */
int semd_tokenize(const struct semd_tokenizer *t, const char *text,
                  size_t len, struct semd_token **toks, size_t *n,
                  struct semd_err *err);

/* The bytes of n ids, concatenated: *out is malloc'd and NUL-terminated
 * (free() it), *len its length without the NUL. SEMD_EINVAL names an id out
 * of range. */
int semd_detokenize(const struct semd_tokenizer *t, const uint32_t *ids,
                    size_t n, char **out, size_t *len, struct semd_err *err);

/* The tokenizer a model file carries, or NULL when it has none. Borrowed:
 * valid until the model is closed. */
const struct semd_tokenizer *semd_model_tokenizer(const struct semd_model *m);

/* Stores a copy of t in the model file being written (replacing one set
 * before). */
int semd_writer_set_tokenizer(struct semd_writer *w,
                              const struct semd_tokenizer *t,
                              struct semd_err *err);

/* ---------------------------------------------------------- token health */

/*
 * A health report of a model's rows, meant for an LLM's token-embedding
 * matrix (any model works; the tokenizer part needs one):
 *
 *  - Norms. Rows whose norm stands out, by a robust z-score of the log
 *    norm over the non-zero rows: z = (ln norm - median) / (1.4826 MAD),
 *    MAD the median absolute deviation (1.4826 MAD estimates the standard
 *    deviation of a normal distribution, as in Iglewicz and Hoaglin's
 *    modified z-score). The log makes "ten times smaller" as far out as
 *    "ten times larger". Zero rows are listed apart.
 *  - Near-duplicates: pairs of rows with cosine >= dup_cosine. By default
 *    candidates come from random-hyperplane hashing (12 tables of 16 sign
 *    bits) and are scored exactly: identical rows always share every
 *    bucket, and a pair at cosine 0.99 is missed with probability below
 *    1e-3. With exact set, every row is searched for its nearest other row
 *    through the index (semd_index_search_batch, k = 1, itself excluded):
 *    exact, but O(rows^2 dims), and it lists each row's nearest only.
 *  - Unreachable tokens: a token is unreachable when tokenizing its own
 *    bytes does not give back that one token. Such a token either is made
 *    by no merge and is no single byte (BPE can never output it: reason
 *    SEMD_UNREACH_NO_MERGE, e.g. special tokens such as "<|endoftext|>"),
 *    or its bytes merge along another path (SEMD_UNREACH_SPLIT; it could
 *    still appear inside longer text in rare cases, so this flags it as a
 *    candidate). A token that passes is reachable: its own text yields it.
 *    Tokens that text never produces get no gradient in training, which is
 *    a known source of under-trained tokens in LLMs; their rows then also
 *    tend to have outlying norms.
 */
struct semd_tokens_report_opts {
    double z_limit;    /* flag rows with |z| above; 0: 3.5 */
    double dup_cosine; /* near-duplicates from this cosine; 0: 0.99 */
    size_t max_list;   /* entries kept per list, worst first; 0: 100.
                          Counts are always complete. */
    int exact;         /* nonzero: duplicates by exact search */
    uint64_t seed;     /* of the hashing; 0: 1 */
};

struct semd_norm_flag {
    uint64_t row;
    float norm;
    float z; /* 0 for a zero row */
};

struct semd_dup_pair {
    uint64_t a, b; /* rows, a < b */
    float cosine;
};

enum semd_unreach_reason {
    SEMD_UNREACH_NO_MERGE = 1, /* no merge makes it and it is no byte */
    SEMD_UNREACH_SPLIT = 2,    /* its bytes tokenize to other tokens */
};

#define SEMD_UNREACH_IDS 8

struct semd_unreachable {
    uint32_t id;
    uint64_t row;   /* UINT64_MAX when the model has no row for it */
    int reason;     /* enum semd_unreach_reason */
    uint32_t n_ids; /* tokens its bytes give (all of them, counted) */
    uint32_t ids[SEMD_UNREACH_IDS]; /* the first of them */
};

struct semd_tokens_report {
    uint64_t rows;
    uint32_t dims;
    double z_limit, dup_cosine;        /* as used */
    double norm_median, log_norm_mad;  /* over non-zero rows */
    float norm_min, norm_max;          /* over non-zero rows */
    /* rows by |z|, worst first; n_* are the totals, *_listed the kept */
    uint64_t n_zero, n_low, n_high;
    size_t zero_listed, low_listed, high_listed;
    struct semd_norm_flag *zero, *low, *high;
    /* near-duplicate pairs, highest cosine first */
    int dup_exact;            /* how they were found */
    uint64_t dup_scored;      /* pairs scored exactly */
    uint64_t n_dups;
    size_t dups_listed;
    struct semd_dup_pair *dups;
    /* tokenizer (all zero when the model has none), by id */
    int has_tokenizer;
    uint32_t tokens;
    uint64_t n_no_row;        /* token ids without a row */
    uint64_t n_unreachable, n_no_merge;
    size_t unreachable_listed;
    struct semd_unreachable *unreachable;
};

/* Builds the report for the model ix indexes (opts may be NULL).
 * Released with semd_tokens_report_release. Reads the whole matrix a few
 * times; may be called from any thread. */
int semd_tokens_report(const struct semd_index *ix,
                       const struct semd_tokens_report_opts *opts,
                       struct semd_tokens_report *out, struct semd_err *err);
void semd_tokens_report_release(struct semd_tokens_report *r);

/* -------------------------------------------------------------- training */

/*
 * The trainer: skip-gram with negative sampling as word2vec.c does it
 * (noise words drawn from unigram^0.75, sub-sampling of frequent words, a
 * reduced window drawn per centre word, learning rate decaying linearly
 * from alpha to alpha * 1e-4, a sigmoid table of 1000 entries over [-6, 6],
 * Hogwild over threads, word2vec's per-thread random generator). The same
 * trainer serves `semd train` (a corpus file, several epochs) and the
 * daemon's trainer thread (text fed as it arrives).
 *
 * Rows are in trainer order: an init model's rows first, in its order,
 * then words as they join. Text is split into words by semd_train_split.
 *
 * A trainer belongs to one thread (it starts and joins its own workers
 * inside each call); only semd_trainer_stats may be called from other
 * threads while training runs.
 */
struct semd_trainer;

/* How punctuation is treated when splitting text into words. */
enum semd_punct {
    SEMD_PUNCT_SPLIT = 0, /* each ASCII punctuation mark is its own word */
    SEMD_PUNCT_DROP = 1,  /* punctuation marks are dropped */
    SEMD_PUNCT_KEEP = 2,  /* split on whitespace only */
};

/* How context vectors start when training from a pre-trained model, which
 * carries none. */
enum semd_ctx_init {
    SEMD_CTX_ZERO = 0,   /* zeros, as word2vec starts them */
    SEMD_CTX_SCALED = 1, /* a copy of the input vectors, scaled down */
};

struct semd_train_opts {
    uint32_t dim;       /* vector size; taken from the init model */
    uint32_t window;    /* max distance of a context word */
    uint32_t negative;  /* noise words per positive pair */
    double sample;      /* sub-sampling threshold; 0: off */
    double alpha;       /* starting learning rate */
    uint64_t min_count; /* a word joins once seen this often */
    uint32_t epochs;    /* passes over a corpus file */
    uint32_t threads;   /* worker threads, >= 1 */
    uint64_t seed;      /* random seed; same seed, one thread: same model */
    int lowercase;      /* nonzero: lower-case ASCII and Latin-1 letters */
    int punct;          /* enum semd_punct */
    int ctx_init;       /* enum semd_ctx_init */
};

/* word2vec's defaults: dim 100, window 5, negative 5, sample 1e-3, alpha
 * 0.025, min_count 5, epochs 1, threads 1, seed 1, lower-case on,
 * punctuation split, context vectors zero. */
void semd_train_opts_init(struct semd_train_opts *o);

/*
 * Splits len bytes of text into words as the trainer does: whitespace
 * separates words and a line break also ends a sentence; ASCII and Latin-1
 * capitals are lower-cased when o->lowercase; with SEMD_PUNCT_SPLIT each
 * ASCII punctuation mark becomes a word of its own, except a hyphen
 * between letters or digits ("e-mail"), a point or comma between digits
 * ("3.14", "1,000") and the English clitics GloVe splits off ("don't" ->
 * "do" "n't", "it's" -> "it" "'s"). Words that are not valid UTF-8 are
 * dropped; words longer than SEMD_MAX_WORD bytes are cut. emit gets each
 * word (not NUL-terminated, borrowed for the call) and len 0 at the end of
 * each sentence.
 */
void semd_train_split(const struct semd_train_opts *o, const char *text,
                      size_t len,
                      void (*emit)(void *arg, const char *word, size_t len),
                      void *arg);

/* A new trainer. init (may be NULL) gives the starting vocabulary, counts
 * and input vectors (copied: init may be closed afterwards); a model whose
 * counts are ranks gets Zipf estimates (count = 10^8 / rank). Freed with
 * semd_trainer_free. */
int semd_trainer_new(struct semd_trainer **out,
                     const struct semd_train_opts *opts,
                     const struct semd_model *init, struct semd_err *err);
void semd_trainer_free(struct semd_trainer *t);

/* Trains on a corpus file (one sentence per line): counts its words, adds
 * those seen min_count times to the vocabulary (most frequent first),
 * then trains opts.epochs passes over threads slices of it. */
int semd_trainer_train_file(struct semd_trainer *t, const char *path,
                            struct semd_err *err);

/* Trains one pass over text as it arrives (the online trainer): counts
 * persist across calls; a word whose count reaches min_count joins the
 * vocabulary with a fresh small random vector (cost in proportion to the
 * new words) and all its occurrences in this text are trained. The
 * learning rate decays from alpha over this text, as gensim's train()
 * does per call. */
int semd_trainer_feed(struct semd_trainer *t, const char *text, size_t len,
                      struct semd_err *err);

struct semd_train_stats {
    uint64_t rows;          /* vocabulary size */
    uint64_t new_rows;      /* rows added beyond the init model */
    uint64_t words_trained; /* corpus words processed, all calls */
    uint64_t run_done;      /* words processed in the current or last call */
    uint64_t run_planned;   /* words the current or last call will process */
    double words_per_sec;   /* over the current or last call */
    double loss;            /* running mean negative log-likelihood of the
                               SGNS objective per (word, context) pair,
                               over roughly the last 100,000 words */
    double alpha;           /* current learning rate */
    uint64_t pairs;         /* (word, context) pairs trained, all calls */
};

/* A consistent copy of the counters; any thread, any time. */
void semd_trainer_stats(struct semd_trainer *t, struct semd_train_stats *out);

uint64_t semd_trainer_rows(const struct semd_trainer *t);
uint32_t semd_trainer_dims(const struct semd_trainer *t);
/* The word of a row, NUL-terminated, borrowed until the next call that
 * trains; *len (may be NULL) its length. */
const char *semd_trainer_word(const struct semd_trainer *t, uint64_t row,
                              size_t *len);
uint64_t semd_trainer_count(const struct semd_trainer *t, uint64_t row);
/* Row of a word, SEMD_ENOWORD if it has none (yet). */
int semd_trainer_lookup(const struct semd_trainer *t, const char *word,
                        size_t len, uint64_t *row);

/* Copies n input vectors from row first into dst (n x dims floats): what a
 * snapshot publishes. Call between training calls. */
int semd_trainer_copy_rows(const struct semd_trainer *t, uint64_t first,
                           uint64_t n, float *dst, struct semd_err *err);

/* Writes the vocabulary (most frequent first; counts are the real
 * frequencies, no rank flag) and input vectors as a model file through the
 * model writer. opts may be NULL ("semd-train"). */
int semd_trainer_write(const struct semd_trainer *t, const char *path,
                       const struct semd_writer_opts *opts,
                       struct semd_err *err);

/*
 * What a model file does not hold of a trainer, for resuming training
 * where it stopped: the context (output) vectors, which make fine-tuning
 * stable (starting them again at zero throws away what they learnt), and
 * the counts of words seen fewer than min_count times, so that a word's
 * sightings add up across restarts. The file (layout atop the end of
 * core/train.c) names the model file's checksum, which binds the two.
 */

/* Writes the state beside the model file just written by
 * semd_trainer_write, with no training in between (its rows are written
 * in that file's row order); model_checksum is that file's
 * (semd_model_info.checksum). Atomic: a temporary file, fsync, rename,
 * directory fsync. */
int semd_trainer_write_state(const struct semd_trainer *t, const char *path,
                             uint32_t model_checksum, struct semd_err *err);

/* Restores a state into a trainer just made from its model file (that
 * file as init, nothing trained yet). SEMD_ENOWORD when path does not
 * exist; SEMD_EFORMAT or SEMD_ECORRUPT when it is damaged; SEMD_EINVAL
 * when it belongs to another model or the trainer has trained. On
 * failure the trainer is as before. */
int semd_trainer_read_state(struct semd_trainer *t, const char *path,
                            uint32_t model_checksum, struct semd_err *err);

/* ------------------------------------------------------- 2-D projection */

/* Principal component analysis of n points in dims dimensions down to two:
 * the points are centred, the top two eigenvectors of their covariance (or,
 * with fewer points than dimensions, of their Gram matrix) found with
 * LAPACK, and each point's coordinates along them written to xy (n x 2
 * floats, x then y). ratio[0..1] get the share of the total variance each
 * component explains (0 when all points coincide). The sign of each axis
 * is fixed so that the point farthest along it lies on the positive side,
 * so equal input gives equal pictures. x is n x dims, row-major, finite;
 * n >= 3 and dims >= 2, else SEMD_EINVAL. Any thread; no shared state. */
int semd_project_pca2(const float *x, size_t n, uint32_t dims, float *xy,
                      double ratio[2], struct semd_err *err);

#ifdef __cplusplus
}
#endif

#endif /* SEMD_H */
