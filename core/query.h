/*
 * query.h - helpers shared by expr.c (terms, case mapping), query.c
 * (queries) and eval.c (evaluation). Not part of the public API.
 */
#ifndef SEMD_QUERY_H
#define SEMD_QUERY_H

#include "semd.h"

#include <stddef.h>
#include <stdint.h>

/* Upper-cases n bytes of UTF-8 the way Python's str.upper() does for every
 * word that can become ASCII (ASCII letters, dotless i, long s and the
 * Latin ligatures, which expand), and by the simple Unicode mapping for the
 * rest. Writes at most cap bytes to out (not NUL-terminated); returns the
 * length, or SIZE_MAX if cap is too small or s is not valid UTF-8. */
size_t query_upper(const char *s, size_t n, char *out, size_t cap);

/* Lower-cases by the simple Unicode mapping; same contract as query_upper.
 * Returns the length, or SIZE_MAX. */
size_t query_lower(const char *s, size_t n, char *out, size_t cap);

/* One 3CosMul query for query_cosmul: its terms are n_terms consecutive
 * unit vectors of the term matrix, starting at first; sign[i] > 0 for a
 * positive term, < 0 for a negative one. */
struct cosmul_query {
    size_t first, n_terms;
    const int *sign;
    const uint64_t *exclude; /* rows never returned */
    size_t n_exclude;
    uint32_t k;
    int use_min;
    float min_score;
    struct semd_hit *hits; /* room for k, best first */
    uint32_t n_hits;       /* out */
};

/* Scores the first restrict_rows rows (0: all) for nq 3CosMul queries with
 * one pass over the matrix: each block of rows is multiplied with all the
 * term vectors (terms: n_terms x dims unit vectors, row-major) at once. */
int query_cosmul(const struct semd_model *m, uint64_t restrict_rows,
                 const float *terms, size_t n_terms, struct cosmul_query *q,
                 size_t nq, struct semd_err *err);

/* The unit vector of a row into out (dims floats); zero for a zero row. */
void query_unit_row(const struct semd_model *m, uint64_t row, float *out);

#endif
